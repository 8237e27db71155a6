"""Export a trained model to a deployable ``.codenet`` artifact.

``python -m codenet_pynq.training.export --config CFG --weights model_final.pth --out model.codenet``

The float graph takes raw BGR ``uint8`` pixels NHWC ``[1, S, S, 3]`` (the letterboxed image)
and returns ``hm`` (class logits), ``wh`` and ``reg`` as float32 NCHW at stride 4. With a
quantized model (``quant.enabled``) the artifact also holds the integer program and the
integer-exact graph (see :mod:`codenet_pynq.training.quant.export`).
"""

from __future__ import annotations

import argparse
import io
import sys
import warnings
from typing import Any, Dict, Optional, Sequence

import torch
import torch.nn as nn

from codenet_pynq.artifact import FLOAT_GRAPH, write_artifact

from .checkpoint import load_checkpoint, load_state_into
from .config import ExperimentConfig, load_config
from .errors import report_errors
from .manifest import base_manifest, decode_section
from .models import CoDeNet, build_model
from .onnx_opt import ExportGraph

OPSET = 19
OUTPUTS = ("hm", "wh", "reg")


class PixelsToHeads(nn.Module):
    """uint8 NHWC pixels -> (hm, wh, reg): the graph interface of every artifact.

    ``optimize``: run the model through :class:`~codenet_pynq.training.onnx_opt.ExportGraph`
    (same values, hardware square blocks in a form that ONNX Runtime runs fast).
    """

    def __init__(self, model: nn.Module, optimize: bool = True):
        super().__init__()
        self.net = ExportGraph(model) if optimize else model

    def forward(self, image: torch.Tensor):
        out = self.net(image.permute(0, 3, 1, 2).float())
        return out["hm"], out["wh"], out["reg"]


def float_onnx_bytes(model: CoDeNet, input_size: int, optimize: bool = True) -> bytes:
    """Export the float model (eval mode) to ONNX opset 19 bytes.

    Traced without autograd (the straight-through gradient terms of the hardware blocks are
    zero-valued and must not end up in the graph). ``optimize=False`` exports the eager forward
    literally (for comparisons).
    """
    was_training = model.training
    wrapper = PixelsToHeads(model, optimize).eval()  # the exporter restores the wrapper's mode afterwards
    buf = io.BytesIO()
    dummy = torch.zeros(1, input_size, input_size, 3, dtype=torch.uint8)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(wrapper, dummy, buf, opset_version=OPSET, dynamo=False,
                              input_names=["image"], output_names=list(OUTPUTS), do_constant_folding=True)
    finally:
        model.train(was_training)
    return buf.getvalue()


def export_float(model: CoDeNet, cfg: ExperimentConfig, out_path: str, extra: Optional[Dict[str, Any]] = None) -> str:
    """Write a float artifact for ``model``."""
    manifest = base_manifest(cfg, model)
    manifest.update(extra or {})
    return write_artifact(out_path, manifest, {FLOAT_GRAPH: float_onnx_bytes(model, cfg.model.input_size)})


def load_trained(cfg: ExperimentConfig, weights: str) -> CoDeNet:
    model = build_model(cfg.model)
    load_state_into(model, load_checkpoint(weights)["model"], weights,
                    "export with the config the checkpoint was trained with")
    return model.eval()


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="codenet-pynq-export", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="the experiment YAML the model was trained with")
    p.add_argument("--weights", required=True, help="checkpoint (.pth), e.g. OUTPUT_DIR/model_final.pth")
    p.add_argument("--out", required=True, help="output .codenet file")
    p.add_argument("--metrics", help="JSON of evaluation results to record in the manifest")
    p.add_argument("--score-threshold", type=float, default=0.3,
                   help="default detection score threshold recorded in the artifact (default: %(default)s)")
    p.add_argument("--debug", action="store_true", help="show the traceback of errors")
    p.add_argument("opts", nargs="*", help="config overrides")
    a = p.parse_args(argv)
    return report_errors("codenet-pynq-export", a.debug, lambda: _run(a))


def _run(a: argparse.Namespace) -> int:
    cfg = load_config(a.config, a.opts)
    extra = {"decode": decode_section(a.score_threshold)}
    if a.metrics:
        import json

        with open(a.metrics, encoding="utf-8") as f:
            extra["metrics"] = json.load(f)
    if cfg.quant.enabled:
        from .quant.export import export_quantized

        export_quantized(cfg, a.weights, a.out, extra)
    else:
        export_float(load_trained(cfg, a.weights), cfg, a.out, extra)
    print(f"wrote {a.out} (classes: {', '.join(cfg.model.class_names)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
