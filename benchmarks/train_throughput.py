"""Training throughput (images/s) of the shapes default model on this CPU at 256 and 512.

``python benchmarks/train_throughput.py [--iters 6] [--batch 8]``: runs the real trainer
(data loading, augmentation, forward, backward, AdamW step) on a small generated shapes set and
reports the median images/s over the timed iterations (the first two are warm-up).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from report import command, machine, table, versions, write_section  # noqa: E402

from codenet_pynq.training.config import load_config  # noqa: E402
from codenet_pynq.training.data.shapes import generate_shapes  # noqa: E402
from codenet_pynq.training.train import Trainer  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--iters", type=int, default=6)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    head = machine()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        js = generate_shapes(tmp, 64, ((192, 320), (192, 320)), seed=0, split_name="train")
        for size in a.sizes:
            out = os.path.join(tmp, f"run{size}")
            cfg = load_config("configs/shapes_default.yaml", [
                f"model.input_size={size}", f"solver.batch_size={a.batch}", "data.generate_shapes={}",
                f"data.train_json={js}", f"data.val_json={js}", f"output_dir={out}", "solver.checkpoint_period=0",
                "solver.log_period=1", "solver.precise_bn_iters=0", "data.num_workers=1"])
            trainer = Trainer(cfg, torch.device("cpu"), progress=False)
            trainer.run(max_iter=a.iters)
            lines = [json.loads(x) for x in open(os.path.join(out, "metrics.jsonl"))]
            ts = [b["time"] - a_["time"] for a_, b in zip(lines[1:], lines[2:])]
            ips = a.batch / statistics.median(ts)
            rows.append([size, a.batch, f"{ips:.1f}", f"{statistics.median(ts):.2f}"])
            print(rows[-1], flush=True)
    body = (f"## Training throughput on the CPU\n\nMachine: {head}. Versions: {versions()}.\n"
            f"Command: `{command()}`; shapes default model (main variant, hardware form, decoder 256/128/64, "
            f"head 64), batch {a.batch}, {a.threads} threads, real data pipeline; median over iterations 3..{a.iters}.\n\n"
            + table(["input", "batch", "images/s", "s/iteration"], rows) + "\n")
    write_section("train_throughput", body)


if __name__ == "__main__":
    main()
