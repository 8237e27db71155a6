"""Detector.stream: order, overlap of the stages, per-frame errors, clean shutdown."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from codenet_pynq.stream import FrameError, stream_detections


class FakeDetector:
    """prepare / backend.run / finish that log when each stage of each frame starts and ends."""

    def __init__(self, delay: float = 0.0, fail: dict = None):
        self.log = []
        self.lock = threading.Lock()
        self.delay = delay
        self.fail = fail or {}
        self.backend = self

    def _mark(self, what, idx):
        with self.lock:
            self.log.append((what, idx, time.perf_counter()))

    def prepare(self, frame):
        idx = int(frame[0, 0, 0])
        self._mark("pre+", idx)
        if self.fail.get(idx) == "preprocess":
            raise ValueError("empty frame")
        time.sleep(self.delay)
        self._mark("pre-", idx)
        return frame, frame, idx

    def run(self, pixels):
        idx = int(pixels[0, 0, 0])
        self._mark("run+", idx)
        time.sleep(self.delay)
        if self.fail.get(idx) == "inference":
            raise TimeoutError("no ap_done")
        self._mark("run-", idx)
        return {"idx": idx}

    def finish(self, heads, meta, hw, thr, k):
        self._mark("dec+", heads["idx"])
        time.sleep(self.delay)
        return type("D", (), {"idx": heads["idx"], "timings": {}})()


def frames(n):
    for i in range(n):
        yield np.full((4, 4, 3), i, np.uint8)


def test_results_in_order_and_stages_overlap():
    det = FakeDetector(delay=0.02)
    out = list(stream_detections(det, frames(6)))
    assert [r.idx for r in out] == list(range(6))
    assert set(out[0].timings) >= {"preprocess", "inference", "decode", "total", "latency"}
    t = {(w, i): ts for w, i, ts in det.log}
    # frame 2 is preprocessed while frame 1 runs on the backend: stage overlap, not strict turns
    assert t[("pre+", 2)] < t[("run-", 1)]
    assert any(t[("dec+", i)] < t[("run-", i + 1)] for i in range(5))


def test_error_raises_after_earlier_frames_and_stops_threads():
    det = FakeDetector(fail={3: "inference"})
    before = threading.active_count()
    got = []
    with pytest.raises(FrameError, match="frame 3: inference failed.*no ap_done") as err:
        for r in stream_detections(det, frames(8)):
            got.append(r.idx)
    assert got == [0, 1, 2]
    assert isinstance(err.value.__cause__, TimeoutError) and err.value.index == 3
    time.sleep(0.2)
    assert threading.active_count() <= before


def test_errors_yield_keeps_going():
    det = FakeDetector(fail={1: "preprocess", 4: "inference"})
    out = list(stream_detections(det, frames(6), errors="yield"))
    kinds = [(type(r).__name__, getattr(r, "stage", None)) for r in out]
    assert [k[1] for k in kinds] == [None, "preprocess", None, None, "inference", None]
    assert [getattr(r, "idx", None) for r in out] == [0, None, 2, 3, None, 5]


def test_close_early_joins_the_threads_and_stops_reading():
    det = FakeDetector()
    consumed = []

    def endless():
        i = 0
        while True:
            consumed.append(i)
            yield np.full((4, 4, 3), i % 200, np.uint8)
            i += 1

    before = threading.active_count()
    gen = stream_detections(det, endless(), depth=2)
    assert next(gen).idx == 0
    gen.close()
    time.sleep(0.2)
    assert threading.active_count() <= before
    n = len(consumed)
    time.sleep(0.1)
    assert len(consumed) == n and n < 20  # bounded queues: the source was not run ahead


def test_source_error_ends_the_stream_with_it():
    def broken():
        yield np.full((4, 4, 3), 0, np.uint8)
        raise OSError("camera unplugged")

    out = []
    with pytest.raises(OSError, match="camera unplugged"):
        for r in stream_detections(FakeDetector(), broken()):
            out.append(r.idx)
    assert out == [0]


def test_detector_stream_equals_detect_on_the_cpu_backend():
    from codenet_pynq import Detector
    from codenet_pynq.selftest import synthetic_images

    imgs = [img for _, img in synthetic_images(3)]
    with Detector.load(None, backend="cpu") as det:
        seq = [det.detect(i) for i in imgs]
        got = list(det.stream(iter(imgs)))
    assert len(got) == 3
    for a, b in zip(seq, got):
        assert np.array_equal(a.boxes, b.boxes) and np.array_equal(a.labels, b.labels)
        assert np.array_equal(a.scores, b.scores)
    with pytest.raises(ValueError, match="errors must be"):
        list(Detector.stream(det, imgs, errors="ignore"))


def test_detector_stream_with_two_cpu_frames_in_flight_equals_detect(monkeypatch):
    from codenet_pynq import Detector
    from codenet_pynq.selftest import synthetic_images

    monkeypatch.setenv("CODENET_STREAMS", "2")
    imgs = [img for _, img in synthetic_images(4)]
    with Detector.load(None, backend="cpu") as det:
        assert det.backend.frames_in_flight == 2
        seq = [det.detect(i) for i in imgs]
        got = list(det.stream(iter(imgs)))
        assert len(det.backend._stream_sessions) == 2  # the frames ran on the stream sessions
    for a, b in zip(seq, got):
        assert np.array_equal(a.boxes, b.boxes) and np.array_equal(a.scores, b.scores)


# --------------------------------------------------------------------------- double-buffered driver
def _emulator_detector():
    from codenet_pynq import Detector
    from codenet_pynq.artifact import default_model_path

    return Detector.load(default_model_path(), backend="emulator")


def _frames(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (120 + 8 * i, 160, 3), dtype=np.uint8) for i in range(n)]


def test_submit_collect_uses_two_regions_and_keeps_frames_apart():
    """Two frames in flight (one written while the other runs) give each frame's own outputs."""
    det = _emulator_detector()
    acc = det.backend.accelerator
    pix = [det.prepare(f)[1] for f in _frames(3)]
    want = [acc.run(p) for p in pix]
    acc.submit(pix[0])
    acc.submit(pix[1])  # written into the second region while the engine runs frame 0
    assert "act1" in acc.buffers and acc.addresses["act1"] != acc.addresses["act"]
    got0 = acc.collect()
    acc.submit(pix[2])
    got1, got2 = acc.collect(), acc.collect()
    for w, g in zip(want, (got0, got1, got2)):
        assert all(np.array_equal(w[k], g[k]) for k in w)
    with pytest.raises(Exception, match="no frame in flight"):
        acc.collect()
    acc.submit(pix[0])
    acc.submit(pix[1])
    with pytest.raises(Exception, match="two frames are already in flight"):
        acc.submit(pix[2])
    out = acc.run(pix[2])  # run() drains the abandoned frames first
    assert all(np.array_equal(out[k], want[2][k]) for k in out)


def test_emulator_stream_is_double_buffered_and_equals_detect():
    det = _emulator_detector()
    frames = _frames(5, seed=1)
    want = [det.detect(f) for f in frames]
    got = list(det.stream(frames))
    assert "act1" in det.backend.accelerator.buffers
    for w, g in zip(want, got):
        assert np.array_equal(w.boxes, g.boxes) and np.array_equal(w.scores, g.scores)


def test_engine_error_in_a_double_buffered_stream_stays_with_its_frame():
    det = _emulator_detector()
    acc = det.backend.accelerator
    real = acc._check_status
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("injected engine error")
        return real()

    acc._check_status = flaky
    out = list(det.stream(_frames(6, seed=2), errors="yield"))
    assert len(out) == 6
    bad = [i for i, r in enumerate(out) if isinstance(r, FrameError)]
    assert bad and bad[0] == 2 and "injected engine error" in str(out[2].__cause__)
    assert not isinstance(out[-1], FrameError)  # the stream goes on after the failure
