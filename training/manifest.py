"""The artifact manifest fields every exporter writes (float and quantized)."""

from __future__ import annotations

from typing import Any, Dict

from codenet_pynq.artifact import FLOAT_GRAPH

from .config import ExperimentConfig
from .models import CoDeNet, conv_macs, count_parameters


def decode_section(score_threshold: float = 0.3) -> Dict[str, Any]:
    """The manifest's ``decode`` entry: defaults the runtime's Detector reads."""
    return {"top_k": 100, "score_threshold": float(score_threshold),
            "outputs": {"hm": "logits", "wh": "pixels@stride4", "reg": "pixels@stride4"}}


def base_manifest(cfg: ExperimentConfig, model: CoDeNet) -> Dict[str, Any]:
    m = cfg.model
    return {
        "model": m.to_dict(),
        "class_names": list(m.class_names),
        "input_size": m.input_size,
        "down_ratio": m.down_ratio,
        "preprocess": {"type": "center_affine_letterbox", "color": "BGR", "layout": "NHWC", "dtype": "uint8",
                       "pixel_mean": list(m.pixel_mean), "pixel_std": list(m.pixel_std),
                       "normalisation": "inside the graph"},
        "decode": decode_section(),
        "graphs": {"float": FLOAT_GRAPH},
        "quantized": False,
        "stats": {"parameters": count_parameters(model), "macs": conv_macs(model, m.input_size),
                  "float_bytes": 4 * count_parameters(model)},
        "training": {"dataset": cfg.data.dataset, "output_dir": cfg.output_dir,
                     # the generated data's style and sizes: evaluation data is made the same way
                     **({"generate_shapes": dict(cfg.data.generate_shapes)} if cfg.data.generate_shapes else {})},
    }
