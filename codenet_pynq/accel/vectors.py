"""Test vectors for the C-simulation testbench (``hls_src/tb/tb_codenet.cpp``).

A vector folder holds one DRAM image (descriptor table, weights, activation region with the
input image placed), ``meta.txt`` (region offsets, n_layers, one ``check`` line per tensor) and,
per checked tensor, the golden values (``expect_<i>.bin``, H*W*C bytes NHWC) and its channel map
(``chanmap_<i>.bin``, C little-endian int64 pairs: address in the activation region of pixel
(0, 0), pixel stride).  ``make -C hls_src csim`` runs every folder under ``hls_src/build/vectors``.

Command line::

    python -m codenet_pynq.accel.vectors --random 8 --out hls_src/build/vectors
    python -m codenet_pynq.accel.vectors --codenet 256 --out hls_src/build/vectors
"""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path
from typing import Dict, Mapping, Optional, Sequence, Union

import numpy as np

from ..files import atomic_write
from ..golden import run_program
from ..program import Program
from .compile import CompiledProgram, compile_program
from .params import HwParams

__all__ = ["write_vectors", "write_program_vectors", "main"]


_atomic_write = atomic_write  # the package's one atomic-write helper (codenet_pynq/files.py)


def write_vectors(compiled: CompiledProgram, image: np.ndarray, expected: Mapping[str, np.ndarray],
                  out_dir: Union[str, os.PathLike]) -> Path:
    """Write one vector folder: ``expected`` maps tensor names (materialised in DRAM) to arrays."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    p = compiled.params
    _atomic_write(out / "dram.bin", compiled.dram_image(image).tobytes())
    lines = ["codenet_vectors 1", f"desc_version {p.DESC_VERSION}", "dram dram.bin",
             f"desc_addr {compiled.desc_offset}", f"n_layers {compiled.n_layers}",
             f"wgt_addr {compiled.wgt_offset}", f"act_addr {compiled.act_offset}"]
    for i, (name, arr) in enumerate(sorted(expected.items())):
        pl = compiled.placements[name]
        a = np.asarray(arr)
        if tuple(a.shape) != tuple(pl.shape):
            raise ValueError(f"expected tensor {name!r} has shape {a.shape}, the program says {pl.shape}")
        _atomic_write(out / f"expect_{i}.bin", np.ascontiguousarray(a).view(np.uint8).tobytes())
        _atomic_write(out / f"chanmap_{i}.bin", pl.chanmap().tobytes())
        label = re.sub(r"[^A-Za-z0-9_.\-]", "_", name)
        h, w, c = pl.shape
        lines.append(f"check {label} {h} {w} {c} {1 if pl.kind == 's8' else 0} expect_{i}.bin chanmap_{i}.bin")
    _atomic_write(out / "meta.txt", ("\n".join(lines) + "\n").encode())
    return out


def write_program_vectors(program: Program, image: np.ndarray, out_dir: Union[str, os.PathLike],
                          check_all: bool = True, params: Optional[HwParams] = None) -> CompiledProgram:
    """Compile ``program``, run the golden executor and write a vector folder.

    ``check_all``: check every tensor that lives in DRAM (compiled without buffer reuse), so a
    mismatch names the first wrong layer; otherwise only the head outputs.
    """
    compiled = compile_program(program, params, reuse=not check_all)
    gold = run_program(program, image, return_all=check_all)
    if check_all:
        expected: Dict[str, np.ndarray] = {n: gold[n] for n in compiled.placements if n in gold and n != program.input}
    else:
        expected = {}
    for role, name in program.outputs.items():
        expected[name] = gold[role]
    write_vectors(compiled, image, expected, out_dir)
    return compiled


def main(argv: Optional[Sequence[str]] = None) -> int:
    from ..synthetic import codenet_like_program, random_program

    ap = argparse.ArgumentParser(prog="python -m codenet_pynq.accel.vectors", description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="folder that receives one sub-folder per program")
    ap.add_argument("--random", type=int, default=0, help="number of random_program() vectors")
    ap.add_argument("--size", type=int, default=32, help="input size of the random programs")
    ap.add_argument("--codenet", type=int, nargs="*", default=[], help="codenet_like_program input sizes")
    ap.add_argument("--fpga21", type=int, nargs="*", default=[],
                    help="input sizes of the FPGA'21 network (1.0x, stride-4 stem, decoder 256/128/64, head 64)")
    ap.add_argument("--model", nargs="*", default=[], help="quantized .codenet artifacts (their integer program)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    out = Path(args.out)
    for i in range(args.random):
        rng = np.random.default_rng(args.seed + i)
        prog = random_program(rng, input_hw=(args.size, args.size))
        img = rng.integers(0, 256, (args.size, args.size, 3), dtype=np.uint8)
        write_program_vectors(prog, img, out / f"random_{args.seed + i}")
    for s in args.codenet:
        rng = np.random.default_rng(args.seed)
        prog = codenet_like_program(rng, input_size=s)
        img = rng.integers(0, 256, (s, s, 3), dtype=np.uint8)
        write_program_vectors(prog, img, out / f"codenet_{s}", check_all=False)
    for s in args.fpga21:
        rng = np.random.default_rng(args.seed)
        prog = codenet_like_program(rng, input_size=s, decoder=(256, 128, 64), head=64, stem="conv_s4")
        img = rng.integers(0, 256, (s, s, 3), dtype=np.uint8)
        write_program_vectors(prog, img, out / f"fpga21_{s}", check_all=False)
    for path in args.model:
        from ..artifact import load_artifact

        prog = load_artifact(path).program()
        shape = prog.tensors[prog.input].shape
        img = np.random.default_rng(args.seed).integers(0, 256, shape, dtype=np.uint8)
        write_program_vectors(prog, img, out / Path(path).stem, check_all=False)
    print(f"wrote vectors under {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
