"""Helpers for tests of the accelerator backends: the emulation library and a tiny quantized artifact.

``build_emu_lib()`` builds ``hls_src/build/libcodenet_emu.so`` once (``make -C hls_src lib``; a
no-op when up to date) and skips the calling test when no C++ compiler exists.
``build_quant_artifact(path)`` writes a small quantized ``.codenet`` (random CoDeNet-topology
integer program, 64 x 64 input, 0.5x backbone, decoder 32/32/32, head 16, 5 classes) with the
integer ONNX graph for the CPU backend, in about a second.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any, Dict, Optional

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
HLS = ROOT / "hls_src"
CLASS_NAMES = ["circle", "square", "triangle", "star", "cross"]


def build_emu_lib() -> Path:
    """Path of the emulation library, built by make if needed; pytest.skip without a C++ compiler."""
    cxx = os.environ.get("CXX", "g++")
    if shutil.which(cxx) is None:
        pytest.skip(f"no C++ compiler ({cxx!r} not on PATH): the accelerator emulation library cannot be built")
    r = subprocess.run(["nice", "-n", "10", "make", "-C", str(HLS), "lib"], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.fail(f"`make -C hls_src lib` failed:\n{r.stdout}\n{r.stderr}")
    return HLS / "build" / "libcodenet_emu.so"


def tiny_program(seed: int = 0, input_size: int = 64):
    from codenet_pynq.synthetic import codenet_like_program

    return codenet_like_program(np.random.default_rng(seed), input_size=input_size, width=0.5, decoder=(32, 32, 32),
                                head=16, num_classes=len(CLASS_NAMES))


def build_quant_artifact(path: str, seed: int = 0, hardware: Optional[Dict[str, Any]] = None,
                         decode: Optional[Dict[str, Any]] = None) -> str:
    """Write a tiny quantized artifact at ``path`` (see module doc); returns the path."""
    from codenet_pynq.accel.params import load_params
    from codenet_pynq.artifact import INT_GRAPH, PROGRAM_JSON, PROGRAM_NPZ, write_artifact
    from codenet_pynq.training.quant.onnx_int import build_int_onnx

    program = tiny_program(seed)
    # the random heatmap saturates the sigmoid at its calibrated scale; a smaller (bookkeeping) scale
    # gives logits of a trained model's range, so that detections have distinct scores
    program.tensors[program.outputs["hm"]].scale = 0.03
    pj, pn = program.to_bytes()
    size = program.tensors[program.input].shape[0]
    manifest = {
        "model": {"variant": "deform_square_depthwise_hw", "width": "0.5x", "input_size": size},
        "class_names": list(CLASS_NAMES),
        "input_size": size,
        "down_ratio": 4,
        "preprocess": {"type": "center_affine_letterbox", "color": "BGR", "layout": "NHWC", "dtype": "uint8"},
        "decode": dict(decode or {"top_k": 50, "score_threshold": 0.9}),
        "quantized": True,
        "graphs": {"int": INT_GRAPH},
        "program": {"json": PROGRAM_JSON, "npz": PROGRAM_NPZ, "layers": len(program.layers)},
        "hardware": dict(load_params()) if hardware is None else hardware,
        "stats": {"macs": program.macs(), "weight_bytes": program.weight_bytes()},
    }
    files = {INT_GRAPH: build_int_onnx(program).SerializeToString(), PROGRAM_JSON: pj, PROGRAM_NPZ: pn}
    return write_artifact(path, manifest, files)


def rewrite_manifest(src: str, dst: str, **changes: Any) -> str:
    """Copy an artifact with manifest fields replaced (``None`` removes a field)."""
    from codenet_pynq.artifact import load_artifact, write_artifact

    art = load_artifact(src)
    man = {k: v for k, v in art.manifest.items() if k != "files"}
    for k, v in changes.items():
        if v is None:
            man.pop(k, None)
        else:
            man[k] = v
    return write_artifact(dst, man, dict(art.files))
