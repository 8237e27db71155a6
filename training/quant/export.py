"""Export a QAT checkpoint as a quantized ``.codenet`` artifact (integer program + integer graph).

Before writing, the exporter checks what the hardware can run (dilation within the line
buffer, accumulator bounds, channel tiling) and that the integer ONNX graph equals the numpy
golden reference on a test image, and refuses the model otherwise.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

import numpy as np

from codenet_pynq.accel.compile import compile_program
from codenet_pynq.accel.params import load_params
from codenet_pynq.artifact import INT_GRAPH, PROGRAM_JSON, PROGRAM_NPZ, write_artifact
from codenet_pynq.golden import conv_accumulator_bound, run_program
from codenet_pynq.intmath import bits_for
from codenet_pynq.program import Program, ProgramError

from ..checkpoint import load_checkpoint, load_state_into
from ..manifest import base_manifest
from ..models import build_model
from .qat import prepare_qat
from .qgraph import QGraph, QuantizationError

ACCEL_DESC = "accel_descriptors.bin"
ACCEL_WEIGHTS = "accel_weights.bin"


def load_qgraph(cfg, weights: str) -> QGraph:
    """A QGraph with the parameters and scales of a QAT checkpoint."""
    graph = prepare_qat(build_model(cfg.model), cfg, load_init=False)
    load_state_into(graph, load_checkpoint(weights)["model"], weights,
                    "export a QAT checkpoint with the QAT config it was trained with (quant.enabled: true)")
    if not bool(graph.calibrated):
        raise QuantizationError(f"{weights}: the checkpoint holds no calibrated scales; train it with quant.enabled")
    return graph.eval()


def layer_report(program: Program) -> list:
    """Per conv layer: accumulator bound and the signed width it needs."""
    rows = []
    for layer in program.conv_layers():
        kind = program.tensors[layer.inputs[0]].kind
        bound = conv_accumulator_bound(layer.arrays["weight"], kind, program.max_offset)
        bound += int(np.abs(layer.arrays["bias"].astype(np.int64)).max(initial=0))
        rows.append({"layer": layer.name, "acc_bound": bound, "acc_bits": bits_for(bound)})
    return rows


def check_hardware(program: Program):
    """Compile for the accelerator of ``hls_src/codenet_params.h``; refuse what it cannot run."""
    params = load_params()
    try:
        return compile_program(program, params)
    except ProgramError as e:
        raise QuantizationError(f"the accelerator cannot run this model: {e}") from e


def verify_int_graph(program: Program, onnx_bytes: bytes, seed: int = 0) -> None:
    """Golden vs integer ONNX graph on a random image: every output element must be equal."""
    import onnxruntime as ort

    from .onnx_int import onnx_int_outputs

    s = program.tensors[program.input].shape
    img = np.random.default_rng(seed).integers(0, 256, size=s, dtype=np.uint8)
    gold = run_program(program, img)
    sess = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    got = onnx_int_outputs(dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {"image": img[None]}))),
                           program)
    for role in program.outputs:
        bad = int((got[role].astype(np.int64) != gold[role].astype(np.int64)).sum())
        if bad:
            raise QuantizationError(f"integer ONNX graph differs from the golden reference in {bad} elements of "
                                    f"{role}; this is a bug, please report it")


def export_quantized(cfg, weights: str, out_path: str, extra: Optional[Dict[str, Any]] = None) -> str:
    """QAT checkpoint -> quantized artifact at ``out_path``."""
    from .onnx_int import build_int_onnx

    graph = load_qgraph(cfg, weights)
    program = graph.to_program(meta={"variant": cfg.model.variant, "width": cfg.model.width})
    compiled = check_hardware(program)
    int_onnx = build_int_onnx(program).SerializeToString()
    verify_int_graph(program, int_onnx)
    pj, pn = program.to_bytes()
    model = build_model(cfg.model)
    manifest = base_manifest(cfg, model)
    manifest.update(extra or {})
    manifest["quantized"] = True
    manifest["graphs"] = {"int": INT_GRAPH}
    manifest["program"] = {"json": PROGRAM_JSON, "npz": PROGRAM_NPZ, "layers": len(program.layers)}
    manifest["hardware"] = dict(compiled.params)
    manifest["accelerator"] = {
        "descriptors": ACCEL_DESC, "weights": ACCEL_WEIGHTS, "n_layers": compiled.n_layers,
        "weight_bytes": int(compiled.weights.size), "activation_bytes": int(compiled.act_size),
        "layout": "hls_src/README.md: descriptor table (96 little-endian u32 words per layer) and the weight "
                  "blob (int4 pairs low nibble first in PA x PE tiles, depthwise per tap, 8 bytes bias/M|S "
                  "per channel); produced for the 'hardware' parameters, recompiled at load for others"}
    manifest["quantization"] = {"weights": "int4 symmetric per output channel (first layer int8)",
                                "activations": "u8/s8 per tensor, zero point 0",
                                "accumulators": layer_report(program)}
    manifest["stats"].update({"macs": program.macs(), "weight_bytes": program.weight_bytes()})
    files = {INT_GRAPH: int_onnx, PROGRAM_JSON: pj, PROGRAM_NPZ: pn,
             ACCEL_DESC: compiled.desc_bytes().tobytes(), ACCEL_WEIGHTS: compiled.weights.tobytes()}
    return write_artifact(out_path, manifest, files)
