"""The on-board self-test through the emulator, and the notebooks' structure (not executed)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from quant_fixtures import ROOT

from codenet_pynq import selftest
from codenet_pynq.accel import emulib
from codenet_pynq.platform import EmulatedPlatform

NOTEBOOKS = sorted(p.name for p in (ROOT / "codenet_pynq" / "notebooks").glob("*.ipynb"))
#: notebooks for a host (they train): the only ones that may import torch
HOST_ONLY = {"05_train_your_own.ipynb"}


def test_selftest_passes_on_emulator(emu_lib: Path, quant_artifact: str) -> None:
    rep = selftest.run_selftest(quant_artifact, "emulator", n_random=3, n_synthetic=2, frames=3, lib_path=str(emu_lib))
    assert rep.ok and rep.mismatches == 0
    assert rep.counts() == {"random": (3, 3), "model": (2, 2)}
    assert all("vs cpu 0" in r.detail and "identical" in r.detail for r in rep.results if r.check == "model")
    assert rep.timing["frames"] == 3 and rep.timing["fps"] > 0 and rep.timing["cycles"] > 0 and "cpu_ms" in rep.timing
    table = rep.table()
    assert "PASS: random 3/3, model 2/2; 0 mismatching elements" in table and "counted cycles" in table and "not measured on a board" in table
    json.dumps(rep.to_dict(), default=float)


def test_random_programs_on_platform(emu_lib: Path) -> None:
    res = selftest.check_random_programs(EmulatedPlatform(emulib.load_library(emu_lib)), 2, seed=5)
    assert [r.ok for r in res] == [True, True] and all(r.check == "random" for r in res)


def test_cli_exit_codes(emu_lib: Path, quant_artifact: str, tmp_path: Path, capsys: pytest.CaptureFixture,
                        monkeypatch: pytest.MonkeyPatch) -> None:
    out_json = tmp_path / "report.json"
    args = [quant_artifact, "--backend", "emulator", "--random", "1", "--synthetic", "1", "--frames", "2",
            "--lib", str(emu_lib)]
    assert selftest.main(args + ["--json", str(out_json)]) == 0
    out = capsys.readouterr().out
    assert "PASS" in out and "synthetic #0" in out
    assert json.loads(out_json.read_text())["ok"] is True
    # a wrong golden answer is a mismatch: exit 1 and a FAIL line
    real = selftest.run_program

    def off_by_one(program, image, return_all=False):
        outs = {k: v.copy() for k, v in real(program, image, return_all).items()}
        role = next(iter(program.outputs))
        outs[role].flat[0] = outs[role].flat[0] ^ 1
        return outs

    monkeypatch.setattr(selftest, "run_program", off_by_one)
    assert selftest.main(args + ["--no-cpu", "--frames", "0"]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "mismatching elements" in out
    monkeypatch.undo()
    # cannot run: a missing model, a missing library
    assert selftest.main([str(tmp_path / "missing.codenet")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert selftest.main([quant_artifact, "--lib", str(tmp_path / "nope.so"), "--frames", "0"]) == 2
    assert "make -C hls_src lib" in capsys.readouterr().err


def test_python_dash_m(emu_lib: Path, quant_artifact: str) -> None:
    r = subprocess.run([sys.executable, "-m", "codenet_pynq.selftest", quant_artifact, "--random", "1",
                        "--synthetic", "1", "--frames", "0", "--no-cpu", "--lib", str(emu_lib)],
                       capture_output=True, text=True, timeout=120, cwd=str(ROOT))
    assert r.returncode == 0, r.stderr
    assert "codenet-pynq self-test" in r.stdout and "PASS" in r.stdout


def test_synthetic_images_are_deterministic() -> None:
    a, b = selftest.synthetic_images(2, seed=3), selftest.synthetic_images(2, seed=3)
    assert [n for n, _ in a] == [n for n, _ in b]
    assert all(x.dtype == np.uint8 and x.ndim == 3 and np.array_equal(x, y) for (_, x), (_, y) in zip(a, b))


# --------------------------------------------------------------------------- notebooks
def _code(src: str) -> str:
    """Cell source without IPython magics / shell escapes, for ast.parse."""
    return "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in src.splitlines())


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_structure(name: str) -> None:
    path = ROOT / "codenet_pynq" / "notebooks" / name
    nb = json.loads(path.read_text(encoding="utf-8"))
    assert nb["nbformat"] == 4 and nb["nbformat_minor"] >= 4
    assert nb["metadata"]["kernelspec"]["language"] == "python"
    cells = nb["cells"]
    assert cells and cells[0]["cell_type"] == "markdown"
    ids = [c.get("id") for c in cells]
    assert len(set(ids)) == len(ids) and all(ids)
    code = []
    for c in cells:
        assert c["cell_type"] in ("markdown", "code") and isinstance(c["source"], list)
        assert all(isinstance(s, str) for s in c["source"]) and isinstance(c["metadata"], dict)
        if c["cell_type"] == "code":
            assert c["outputs"] == [] and c["execution_count"] is None, "clear the outputs before committing"
            src = "".join(c["source"])
            ast.parse(_code(src), filename=f"{name} cell {c['id']}")
            code.append(src)
    text = "\n".join(code)
    if name not in HOST_ONLY:
        assert "torch" not in text, "notebooks run on the board, where torch is not installed"
    if name == "02_webcam.ipynb":
        for needed in ("live.start", "live.stop", "target_sheet"):
            assert needed in text, needed
    else:
        assert "Detector.load" in text or "run_selftest" in text
