"""Every shipped notebook runs headless on the host (CPU / emulator backend, sample-image camera).

Each notebook runs in its own Python process, in a temporary folder: its code cells are executed
in order in one namespace (shell and magic lines skipped); the values below replace the
assignments of the cell tagged ``parameters`` right after it runs (small sizes, a fake camera).
A cell that raises fails the test with the notebook's traceback; each notebook has a time budget.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

NB_DIR = Path(__file__).resolve().parents[1] / "codenet_pynq" / "notebooks"

RUNNER = r"""
import json, os, sys, time
path, overrides = sys.argv[1], json.loads(sys.argv[2])
nb = json.load(open(path, encoding="utf-8"))
ns = {"__name__": "__main__"}
for i, cell in enumerate(nb["cells"]):
    if cell["cell_type"] != "code":
        continue
    lines = "".join(cell["source"]).splitlines()
    src = "\n".join(ln for ln in lines if not ln.lstrip().startswith(("%", "!")))
    t = time.perf_counter()
    try:
        exec(compile(src, f"{os.path.basename(path)}, cell {i}", "exec"), ns)
    except BaseException:
        print(f"NOTEBOOK CELL {i} RAISED", file=sys.stderr)
        raise
    if "parameters" in cell.get("metadata", {}).get("tags", []):
        ns.update(overrides)
    print(f"cell {i}: {time.perf_counter() - t:.1f} s", flush=True)
"""

#: notebook -> (parameter overrides, time budget in seconds)
CASES = {
    "01_detect_image.ipynb": ({"BACKEND": "emulator"}, 120),  # runs the driver's throughput_test too
    "02_webcam.ipynb": ({"CAMERA": "samples", "BACKEND": "cpu", "MAX_SECONDS": 4, "WAIT_S": 8,
                         "RECORD": "demo.avi"}, 120),
    "03_accuracy_and_selftest.ipynb": ({"N_IMAGES": 6, "N_RANDOM": 2, "FRAMES": 2}, 240),
    "04_benchmark.ipynb": ({"BACKEND": "emulator", "N_FRAMES": 4, "SIZES": [[320, 240], [640, 480]]}, 120),
    "05_train_your_own.ipynb": ({"FLOAT_ITERS": 30, "QAT_ITERS": 8, "THREADS": 1}, 300),
}


def test_every_notebook_has_a_case_and_a_parameters_cell():
    shipped = sorted(p.name for p in NB_DIR.glob("*.ipynb"))
    assert shipped == sorted(CASES)
    for name in shipped:
        cells = json.loads((NB_DIR / name).read_text(encoding="utf-8"))["cells"]
        tagged = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
        assert len(tagged) == 1, name
        for key in CASES[name][0]:
            assert f"{key} = " in "".join(tagged[0]["source"]), (name, key)


@pytest.mark.parametrize("name", sorted(CASES))
def test_notebook_runs(name: str, tmp_path: Path, emu_lib: Path) -> None:
    overrides, budget = CASES[name]
    t = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "-c", RUNNER, str(NB_DIR / name), json.dumps(overrides)],
                              cwd=tmp_path, capture_output=True, text=True, timeout=budget,
                              env={**_env(), "MPLBACKEND": "Agg", "CODENET_EMU_LIB": str(emu_lib)})
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"{name} ran past its {budget} s budget; output so far:\n{e.stdout}")
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    assert time.perf_counter() - t < budget
    if name == "02_webcam.ipynb":
        assert "stopped after" in proc.stdout and (tmp_path / "demo.avi").stat().st_size > 0
    if name == "03_accuracy_and_selftest.ipynb":
        assert "AP50" in proc.stdout and "style 'easy'" in proc.stdout
    if name == "01_detect_image.ipynb":  # the emulator's driver stages and counted cycles, labelled
        assert "measured on this host" in proc.stdout and "counted, not measured on a board" in proc.stdout
    if name == "04_benchmark.ipynb":
        assert "energy per frame: unavailable" in proc.stdout and "Detector.stream" in proc.stdout
        assert "engine, counted" in proc.stdout
    if name == "05_train_your_own.ipynb":
        assert (tmp_path / "codenet_tiny" / "tiny.codenet").is_file()


def _env():
    import os

    return dict(os.environ)
