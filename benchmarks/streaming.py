"""Throughput of ``Detector.stream`` (preprocess / backend / decode overlapped) vs the sequential
``detect`` loop, on the CPU and emulator backends, measured in one run; plus a model of the board.

``python benchmarks/streaming.py [--frames 16] [--runs 3] [--arm-factor 8]``

Frames: camera-sized 640x480 renders of the shapes generator (easy style), the shipped model
(input 256). Each run times the sequential loop and the stream on the same frames, alternating;
the table gives the median fps of ``--runs`` runs and the ratio measured in the same run.

Board model (labelled *modelled*): the ARM stages are this machine's median preprocess and decode
times multiplied by ``--arm-factor`` (an assumed Cortex-A53 / host-core slowdown, not a
measurement), the accelerator time is the engine's cycle counter of the shipped model at 250 MHz
(counted by the emulated engine) plus the driver's own input/output work measured here (times the
factor). Sequential: the sum; streamed: the slowest stage (the stages run on different cores).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Dict, List

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from report import command, machine, table, write_section  # noqa: E402

from codenet_pynq import Detector  # noqa: E402
from codenet_pynq.training.data.shapes import STYLES, make_shapes_image  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def camera_frames(n: int, seed: int = 0) -> List[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [make_shapes_image(rng, 640, 480, STYLES["easy"])[0] for _ in range(n)]


def measure(det: Detector, frames: List[np.ndarray], runs: int) -> Dict[str, float]:
    """Median fps of the sequential loop and of the stream, and median stage ms of the sequential loop."""
    det.detect(frames[0])  # warm-up
    seq, stm, ratio = [], [], []
    stages: Dict[str, List[float]] = {"preprocess": [], "inference": [], "decode": []}
    driver: Dict[str, List[float]] = {"input": [], "output": []}
    for _ in range(runs):
        t = time.perf_counter()
        for f in frames:
            d = det.detect(f)
            for k in stages:
                stages[k].append(d.timings[k])
            lt = getattr(det.backend, "last_timings", None)
            if lt:
                for k in driver:
                    driver[k].append(lt[k])
        fs = len(frames) / (time.perf_counter() - t)
        t = time.perf_counter()
        n = sum(1 for _ in det.stream(frames))
        ft = n / (time.perf_counter() - t)
        seq.append(fs)
        stm.append(ft)
        ratio.append(ft / fs)
    out = {"seq_fps": statistics.median(seq), "stream_fps": statistics.median(stm), "ratio": statistics.median(ratio)}
    out.update({f"{k}_ms": statistics.median(v) for k, v in stages.items()})
    out.update({f"driver_{k}_ms": statistics.median(v) for k, v in driver.items() if v})
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--arm-factor", type=float, default=8.0,
                   help="assumed slowdown of a Cortex-A53 core vs one core of this machine (modelled rows)")
    p.add_argument("--clock-mhz", type=float, default=250.0)
    a = p.parse_args()
    head = machine()
    frames = camera_frames(a.frames)
    rows, res = [], {}
    for backend in ("cpu", "emulator"):
        with Detector.load(None, backend=backend) as det:
            r = measure(det, frames, a.runs)
            if backend == "emulator":
                r["cycles"] = det.backend.accelerator.cycles()
        res[backend] = r
        rows.append([backend, f"{r['preprocess_ms']:.1f} / {r['inference_ms']:.1f} / {r['decode_ms']:.1f}",
                     f"{r['seq_fps']:.2f}", f"{r['stream_fps']:.2f}", f"{r['ratio']:.2f}x"])
    load_end = os.getloadavg()[0]
    emu, f = res["emulator"], a.arm_factor
    acc_ms = emu["cycles"] / (a.clock_mhz * 1e3)
    pre, dec = emu["preprocess_ms"] * f, emu["decode_ms"] * f
    io = (emu.get("driver_input_ms", 0.0) + emu.get("driver_output_ms", 0.0)) * f
    # double-buffered driver: the input copy and the output gather run while the engine runs the
    # neighbouring frame, so the backend thread is bound by the larger of the engine and that copy
    seq_ms, stream_ms = pre + acc_ms + io + dec, max(pre, acc_ms, io, dec)
    board = table(["stage (modelled, Ultra96 at 250 MHz)", "ms per frame", "source"], [
        ["preprocess 640x480 -> 256 letterbox (ARM)", f"{pre:.1f}", f"measured here x {f:g} (assumed A53 factor)"],
        ["accelerator (counted)", f"{acc_ms:.1f}", f"{emu['cycles']} cycles counted by the engine's account (C++)"],
        ["driver input copy + output gather (ARM)", f"{io:.1f}", f"measured here x {f:g}"],
        ["decode 64x64 heads (ARM)", f"{dec:.1f}", f"measured here x {f:g}"],
        ["**sequential loop**", f"{seq_ms:.1f} ({1e3 / seq_ms:.0f} fps)", "sum of the stages"],
        ["**streamed**", f"{stream_ms:.1f} ({1e3 / stream_ms:.0f} fps)",
         f"slowest stage; {seq_ms / stream_ms:.2f}x the sequential loop"],
    ])
    body = "\n".join([
        "## Streaming pipeline vs the sequential loop",
        "",
        f"Machine: {head}; load average {load_end:.1f} at the end (other agents share the 2 cores). "
        f"Command: `{command()}`. {a.frames} camera-sized 640x480 frames (shapes generator, easy style), "
        f"shipped model (input 256); median of {a.runs} runs, sequential and streamed alternating within each run, "
        "ratio per run then median. Measured here.",
        "",
        table(["backend", "stage ms (pre / backend / decode, sequential)", "sequential fps", "Detector.stream fps",
               "stream / sequential"], rows),
        "",
        "On this 2-core host the backend dominates and already takes both cores (ONNX Runtime's intra-op "
        "threads, the emulated engine), so the stream can gain at most the few per cent that preprocessing "
        "and decoding take, and its extra threads compete with the backend for the same two cores: ratios "
        "near 1 (0.9x to 1.1x over our runs: anything beyond those few per cent is the load of this shared machine changing between the timed loops, not the pipeline). On the board the accelerator runs in the PL, the "
        "ARM stages take the same order of time as the accelerator and the A53 has four cores, which is where "
        "the overlap pays:",
        "",
        board,
        "",
        "Modelled, not measured on a board. The driver is double-buffered (two activation regions): "
        "frame n+1's image is written while the engine runs frame n and frame n's outputs are gathered "
        "while it runs frame n+1, so in the stream the driver's copies leave the accelerator's critical path.",
    ])
    write_section("streaming", body)
    print(body)


if __name__ == "__main__":
    main()
