"""Seconds per frame of the accelerator's C++ engine on the host (emulation library), and of the
numpy golden, for the whole 1.0x network at 256 and 512 (and the shipped default model).

``python benchmarks/emulation.py [--runs 3]`` (builds hls_src/build/libcodenet_emu.so with make
first). Also reports the engine's counted cycles at 250 MHz (the cycle and burst account of
hls_src/cn_account.h), counted from the code's loops and bursts, not a board measurement.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from report import command, machine, median_ms, table, write_section  # noqa: E402

from codenet_pynq.accel import emulib  # noqa: E402
from codenet_pynq.accel.compile import compile_program  # noqa: E402
from codenet_pynq.artifact import default_model_path, load_artifact  # noqa: E402
from codenet_pynq.golden import run_program  # noqa: E402
from codenet_pynq.synthetic import codenet_like_program  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=3)
    a = p.parse_args()
    subprocess.run(["make", "-C", os.path.join(ROOT, "hls_src"), "-j2", "lib"], check=True, capture_output=True)
    lib = emulib.load_library(os.path.join(ROOT, "hls_src", "build", "libcodenet_emu.so"))
    head = machine()
    cases = [(f"random-weight 1.0x, decoder 512/256/128, head 128, {s}x{s}",
              codenet_like_program(np.random.default_rng(s), input_size=s)) for s in (256, 512)]
    cases += [(f"random-weight 1.0x, FPGA'21 decoder 256/128/64, head 64, {s}x{s}",
               codenet_like_program(np.random.default_rng(s), input_size=s, decoder=(256, 128, 64), head=64))
              for s in (256, 512)]
    path = default_model_path()
    if path:
        cases.append((f"shipped default ({os.path.basename(path)}), {load_artifact(path).input_size}",
                      load_artifact(path).program()))
    rows = []
    for name, prog in cases:
        img = np.random.default_rng(0).integers(0, 256, prog.tensors[prog.input].shape, dtype=np.uint8)
        cp = compile_program(prog)
        t_emu = median_ms(lambda cp=cp, img=img: emulib.run_compiled(cp, img, lib), a.runs, 1)
        t_gold = median_ms(lambda prog=prog, img=img: run_program(prog, img), a.runs, 1)
        _, stats = emulib.run_compiled(cp, img, lib)
        ms = stats["cycles"] / 250e6 * 1e3
        rows.append([name, cp.n_layers, f"{t_emu / 1e3:.2f}", f"{t_gold / 1e3:.2f}", f"{ms:.1f}", f"{1e3 / ms:.0f}"])
        print(rows[-1], flush=True)
    body = (f"## Accelerator emulation on the host\n\nMachine: {head}. Command: `{command()}`, median of {a.runs}.\n\n"
            + table(["network", "descriptors", "emulation s/frame", "numpy golden s/frame",
                     "counted ms at 250 MHz", "counted fps"], rows)
            + "\n\nEmulation and golden times are measured on this host. Counted: the engine's account (every "
              "loop at its declared II plus its pipeline depth per entry, every m_axi access as bursts under the "
              "LPDDR4 model; [perf_model.md](perf_model.md)), not a board measurement.\n")
    write_section("emulation", body)


if __name__ == "__main__":
    main()
