"""Recover float model weights from a float artifact's ONNX graph (how the shipped ``.npz`` was made).

``python -m codenet_pynq.training.weights_from_onnx ARTIFACT.codenet OUT.npz``

The exporter folds every BatchNorm into the conv before it (``do_constant_folding``), so the graph
holds ``w * g / sqrt(v + eps)`` and ``b - m * g / sqrt(v + eps)`` instead of the BN parameters; the
original split between conv and BN cannot be recovered. The recovered state puts the folded
weight in the conv and the folded bias in the BN, with the BN an identity (weight 1, mean 0,
variance ``1 - eps``): the same function up to float rounding. Which initializer belongs to which
parameter is found by exporting a model of the same config whose parameters are distinct random
"tags" and matching the tags by graph position. The result is checked: the recovered model's
float graph must give the artifact's outputs (the largest difference is printed).
"""

from __future__ import annotations

import argparse
import sys
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from codenet_pynq.artifact import load_artifact

from .export import float_onnx_bytes
from .models import ModelConfig, build_model
from .weights import save_weights


def _conv_params(graph: onnx.GraphProto) -> List[Tuple[np.ndarray, Optional[np.ndarray]]]:
    """(weight, bias or None) of every Conv node whose weight is an initializer, in node order."""
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    consts = {n.output[0]: numpy_helper.to_array(n.attribute[0].t) for n in graph.node
              if n.op_type == "Constant" and n.attribute and n.attribute[0].type == onnx.AttributeProto.TENSOR}
    table = {**consts, **inits}
    out = []
    for n in graph.node:
        if n.op_type == "Conv" and n.input[1] in table:
            bias = table.get(n.input[2]) if len(n.input) > 2 and n.input[2] else None
            out.append((table[n.input[1]], bias))
    return out


def recover_state(artifact: str) -> Tuple[Dict[str, torch.Tensor], ModelConfig, float]:
    """(state dict, model config, largest output difference against the artifact's graph)."""
    art = load_artifact(artifact)
    mcfg = ModelConfig.from_dict(dict(art.manifest["model"]))
    shipped = onnx.load_from_string(art.files[art.manifest["graphs"]["float"]])
    torch.manual_seed(0)
    probe = build_model(mcfg).eval()
    tags: Dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for name, p in probe.named_parameters():
            p.copy_(torch.rand_like(p) + 1.0)  # positive, distinct
            tags[name] = p.detach().clone()
        for m in probe.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.fill_(1.0)
                m.running_mean.zero_()
                m.running_var.fill_(1.0 - m.eps)
    ours = onnx.load_from_string(float_onnx_bytes(probe, mcfg.input_size))
    mine, theirs = _conv_params(ours.graph), _conv_params(shipped.graph)
    if [w.shape for w, _ in mine] != [w.shape for w, _ in theirs]:
        raise ValueError(f"{artifact}: the float graph's convolutions do not line up with this code's export")
    bn_of = {}  # conv weight name -> BN bias name whose tag shows up as that conv's folded bias
    flat = {k: v.numpy().ravel() for k, v in tags.items()}
    state = {k: v.clone() for k, v in probe.state_dict().items()}

    def find(values: np.ndarray) -> Optional[str]:
        for k, v in flat.items():
            if v.shape == values.ravel().shape and np.allclose(v, values.ravel(), rtol=1e-5, atol=1e-6):
                return k
        return None

    for (w_probe, b_probe), (w_real, b_real) in zip(mine, theirs):
        wname = find(w_probe)
        if wname is None and np.array_equal(w_probe, w_real):
            continue  # a constant of the export formulation (the decoder's penalty broadcast), not a weight
        if wname is None:
            raise ValueError(f"{artifact}: a conv weight of shape {w_probe.shape} matches no parameter")
        state[wname] = torch.from_numpy(np.array(w_real)).reshape(state[wname].shape)
        if b_probe is not None:
            bname = find(b_probe)
            if bname is None:
                raise ValueError(f"{artifact}: the bias of {wname} matches no parameter")
            bn_of[wname] = bname
            state[bname] = torch.from_numpy(np.array(b_real)).reshape(state[bname].shape)
    recovered = build_model(mcfg).eval()
    recovered.load_state_dict(state)
    diff = _max_output_diff(recovered, mcfg.input_size, art.files[art.manifest["graphs"]["float"]])
    return recovered.state_dict(), mcfg, diff


def _max_output_diff(model: torch.nn.Module, size: int, onnx_bytes: bytes) -> float:
    import onnxruntime as ort

    img = np.random.default_rng(0).integers(0, 256, size=(1, size, size, 3), dtype=np.uint8)
    sess = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    ref = sess.run(None, {"image": img})
    with torch.no_grad():
        out = model(torch.from_numpy(img).permute(0, 3, 1, 2).float())
    return max(float(np.abs(out[k].numpy() - r).max()) for k, r in zip(("hm", "wh", "reg"), ref))


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("artifact", help="a float .codenet artifact")
    p.add_argument("out", help="the .npz weights file to write")
    a = p.parse_args(argv)
    state, mcfg, diff = recover_state(a.artifact)
    save_weights(a.out, state, mcfg.to_dict())
    print(f"wrote {a.out}: {len(state)} entries; largest output difference against {a.artifact}: {diff:.3g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
