"""CPU backend: which graph it runs (fast integer graph built at load, stored graphs) and that all
integer graphs give the same integers."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from codenet_pynq.artifact import load_artifact  # noqa: E402
from codenet_pynq.backends.cpu import CpuBackend  # noqa: E402
from codenet_pynq.detector import Detector  # noqa: E402
from codenet_pynq.errors import BackendError  # noqa: E402
from codenet_pynq.golden import run_program  # noqa: E402
from codenet_pynq.training.quant import onnx_fast  # noqa: E402


def pixels(size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def test_auto_runs_the_fast_graph_with_the_golden_integers(quant_artifact: str) -> None:
    art = load_artifact(quant_artifact)
    fast, stored = CpuBackend(art, threads=1), CpuBackend(art, graph="int", threads=1)
    assert fast.graph_kind == "fast" and stored.graph_kind == "int"
    assert "fast graph" in fast.describe()
    prog = art.program()
    x = pixels(art.input_size)
    want = run_program(prog, x)
    a, b = fast.run_raw(x), stored.run_raw(x)
    for role in ("hm", "wh", "reg"):
        assert np.array_equal(a[f"{role}_q"], b[f"{role}_q"])
        assert np.array_equal(a[f"{role}_q"][0].transpose(1, 2, 0), want[role])
    ra, rb = fast.run(x), stored.run(x)
    assert all(np.array_equal(ra[k], rb[k]) for k in ra)


def test_auto_falls_back_to_the_stored_graph_when_the_probe_fails(quant_artifact: str, monkeypatch) -> None:
    monkeypatch.setattr(onnx_fast, "runtime_self_test", lambda: False)
    art = load_artifact(quant_artifact)
    be = CpuBackend(art, threads=1)
    assert be.graph_kind == "int" and "probe" in be.describe()
    with pytest.raises(BackendError, match="probe"):
        CpuBackend(art, graph="fast")


def test_graph_choice_errors(quant_artifact: str, tiny_artifact: str) -> None:
    with pytest.raises(BackendError, match="quantized"):
        CpuBackend(load_artifact(tiny_artifact), graph="fast")
    with pytest.raises(BackendError, match="unknown graph"):
        CpuBackend(load_artifact(quant_artifact), graph="fastest")
    assert CpuBackend(load_artifact(tiny_artifact)).graph_kind == "float"


def test_detector_auto_picks_the_cpu_fast_graph_without_a_board(quant_artifact: str) -> None:
    det = Detector.load(quant_artifact, "auto")
    assert det.backend_name == "cpu" and "fast graph" in det.describe()
    det.detect(pixels(det.input_size, 1))


def test_spin_setting(quant_artifact: str, monkeypatch) -> None:
    art = load_artifact(quant_artifact)
    key = "session.intra_op.allow_spinning"

    def spinning(be: CpuBackend) -> bool:
        try:
            return be.session.get_session_options().get_session_config_entry(key) != "0"
        except RuntimeError:  # not set: ONNX Runtime's default, spinning
            return True

    assert spinning(CpuBackend(art, graph="int"))  # ONNX Runtime's default
    assert not spinning(CpuBackend(art, graph="int", spin=False))
    monkeypatch.setenv("CODENET_SPIN", "0")
    assert not spinning(CpuBackend(art, graph="int"))
    assert spinning(CpuBackend(art, graph="int", spin=True))


# ---------------------------------------------------------------- frames in flight (Detector.stream)
def test_submit_collect_runs_frames_on_stream_sessions_in_order():
    """Two stream sessions of one thread each run two frames at once; collect() returns them
    in submission order, each equal to run(); a failed frame raises at its own collect()."""
    from codenet_pynq.artifact import default_model_path

    art = load_artifact(default_model_path())
    be = CpuBackend(art, threads=2, streams=2)
    size = art.program().tensors[art.program().input].shape[0]
    rng = np.random.default_rng(3)
    frames = [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(4)]
    want = [be.run(f) for f in frames]
    assert be._pool is None  # stream sessions only once a frame is submitted
    be.submit(frames[0])
    be.submit(frames[1])
    be.submit(np.zeros((3, 3, 3), np.uint8))  # wrong shape: ONNX Runtime refuses it
    be.submit(frames[2])
    assert len(be._stream_sessions) == 2 and be._stream_threads == 1
    for k in (0, 1):
        got = be.collect()
        assert all(np.array_equal(got[r], want[k][r]) for r in ("hm", "wh", "reg"))
    with pytest.raises(BackendError, match=r"failed on a frame of shape \(3, 3, 3\)"):
        be.collect()
    got = be.collect()
    assert all(np.array_equal(got[r], want[2][r]) for r in ("hm", "wh", "reg"))
    with pytest.raises(BackendError, match="no frame in flight"):
        be.collect()
    be.submit(frames[3])
    be.close()  # drains the frame in flight, stops the workers
    assert be._pool is None and not be._pending
