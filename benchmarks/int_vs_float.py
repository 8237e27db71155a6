"""Integer-exact CPU graph vs the float graph of the same model, at 512 and 256, in one run.

``python benchmarks/int_vs_float.py [--runs 10]``: builds the main variant (ShuffleNetV2 1.0x,
decoder 512/256/128, head 128, 20 classes) with calibrated random weights, exports its float
graph and, through the QAT graph and the integer program, its integer-exact graph, and times
both with ONNX Runtime (batch 1, the artifact's uint8 NHWC input). Target: int <= 1.3x float.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import onnxruntime as ort
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from report import command, machine, median_ms, table, versions, write_section  # noqa: E402

from codenet_pynq.training.config import load_config  # noqa: E402
from codenet_pynq.training.export import float_onnx_bytes  # noqa: E402
from codenet_pynq.training.models import build_model  # noqa: E402
from codenet_pynq.training.quant.onnx_int import build_int_onnx  # noqa: E402
from codenet_pynq.training.quant.qgraph import build_qgraph  # noqa: E402


def session(data: bytes, threads: int) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    return ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])


def graphs(size: int):
    cfg = load_config("configs/voc_deform_square_depthwise_hw.yaml", [f"model.input_size={size}"])
    torch.manual_seed(0)
    model = build_model(cfg.model).train()
    with torch.no_grad():
        for m in model.modules():  # realistic spread of dilations
            if hasattr(m, "offset") and isinstance(m.offset, torch.nn.Conv2d):
                torch.nn.init.normal_(m.offset.weight, std=0.02)
                torch.nn.init.uniform_(m.offset.bias, 0.0, 6.0)
        for _ in range(2):
            model(torch.rand(2, 3, size, size) * 255)
    model.eval()
    fl = float_onnx_bytes(model, size)
    g = build_qgraph(model)
    g.calibrate([torch.randint(0, 256, (2, 3, size, size)).float()])
    return fl, build_int_onnx(g.to_program()).SerializeToString()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--sizes", type=int, nargs="+", default=[512, 256])
    a = p.parse_args()
    head = machine()
    rows = []
    for size in a.sizes:
        fl, it = graphs(size)
        x = np.random.default_rng(0).integers(0, 256, (1, size, size, 3), dtype=np.uint8)
        sf, si = session(fl, a.threads), session(it, a.threads)
        tf = median_ms(lambda s=sf, x=x: s.run(None, {"image": x}), a.runs, a.warmup)
        ti = median_ms(lambda s=si, x=x: s.run(None, {"image": x}), a.runs, a.warmup)
        rows.append([size, tf, ti, f"{ti / tf:.2f}x"])
        print(rows[-1], flush=True)
    body = (f"## Integer-exact CPU graph vs float graph\n\nMachine: {head}. Versions: {versions()}.\n"
            f"Command: `{command()}` ({a.threads} ORT threads, median of {a.runs} runs after {a.warmup} warm-up).\n"
            "Main variant (ShuffleNetV2 1.0x, decoder 512/256/128, head 128, 20 classes), batch 1.\n\n"
            + table(["input", "float graph ms", "integer graph ms", "int / float"], rows)
            + "\n\nTarget: the integer graph at most 1.3x the float graph.\n")
    write_section("int_vs_float", body)


if __name__ == "__main__":
    main()
