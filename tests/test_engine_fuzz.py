"""Descriptor fuzzing of the emulation library under AddressSanitizer and UBSan (issue: the checker
proves every on-chip index and DRAM address before the engine runs).

``make -C hls_src fuzz`` builds hls_src/tb/fuzz_desc.cpp with the sanitizers and runs thousands of
mutated descriptor tables (seeded by compiled random programs) through codenet_run_ports; the
first sanitizer report aborts with a non-zero exit.  The slow variant plants a bug (the address
proof switched off) and checks the fuzzer catches it.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from codenet_pynq.accel.vectors import write_program_vectors
from codenet_pynq.synthetic import ProgramBuilder, random_program

HLS = Path(__file__).resolve().parents[1] / "hls_src"


def _seeds(tmp_path: Path) -> Path:
    out = tmp_path / "seeds"
    for seed in range(3):
        prog = random_program(np.random.default_rng(seed), input_hw=(16, 24))
        img = np.random.default_rng(seed).integers(0, 256, (16, 24, 3), dtype=np.uint8)
        write_program_vectors(prog, img, out / f"r{seed}", check_all=False)
    b = ProgramBuilder(np.random.default_rng(9), (16, 16), max_offset=4)  # a DRAM offset map
    x = b.conv("image", 8, k=1)
    p = b.conv(x, 8, k=1, kind="s8", name="pw")
    o = b.conv(p, 1, k=1, kind="off", name="off")
    prog = b.build({"hm": b.conv(p, 8, k=3, groups=8, offset=o, name="dw"), "wh": p})
    write_program_vectors(prog, np.zeros((16, 16, 3), np.uint8), out / "offdram", check_all=False)
    return out


def _fuzz(tmp_path: Path, iters: int, build: str, defs: str = "") -> subprocess.CompletedProcess:
    if shutil.which("g++") is None:
        pytest.skip("no C++ compiler")
    return subprocess.run(["make", "-C", str(HLS), "fuzz", f"VECTORS={_seeds(tmp_path)}", f"FUZZ_ITERS={iters}",
                           f"BUILD={build}", f"FUZZ_DEFS={defs}"], capture_output=True, text=True, timeout=1200)


def test_fuzzed_descriptors_give_no_sanitizer_reports(tmp_path):
    r = _fuzz(tmp_path, 3000, "build")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    line = [s for s in r.stdout.splitlines() if s.startswith("fuzz:")][-1]
    print("\n" + line)
    assert "3000 mutated descriptor tables" in line and "0 sanitizer reports" in line
    assert "status 0:" in line and "status 3:" in line  # some tables ran, some were refused


@pytest.mark.slow
def test_fuzzer_catches_a_planted_bug(tmp_path):
    r = _fuzz(tmp_path, 3000, "build/planted", "-DCN_PLANTED_BUG")
    assert r.returncode != 0
    assert "AddressSanitizer" in r.stderr or "runtime error" in r.stderr
