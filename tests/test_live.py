"""The live demo core with a scripted fake camera: stale frames, disconnects, errors, restarts."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from codenet_pynq import live
from codenet_pynq.detections import Detections
from codenet_pynq.errors import AcceleratorTimeout


def frame(i: int) -> np.ndarray:
    img = np.zeros((48, 64, 3), np.uint8)
    img[0, 0, 0] = i % 256
    return img


class ScriptedCamera:
    """A cv2.VideoCapture stand-in. Script items: an int (a frame with that id), "fail" (a failed
    read), "empty" (an empty frame), "raise" (read raises), "disconnect" (every read fails until
    the camera is reopened). Opens fail while ``down`` is set."""

    def __init__(self, script, period: float = 0.0, then_idle: bool = False):
        self.script = list(script)
        self.then_idle = then_idle  # after the script: a frame with id 255 every 20 ms (else failed reads)
        self.period = period
        self.opens = 0
        self.releases = 0
        self.down = threading.Event()
        self.lost = False
        self.pos = 0

    def opener(self):
        self.opens += 1
        if self.down.is_set():
            raise OSError("no such device")
        self.lost = False
        return self

    def isOpened(self):  # noqa: N802
        return True

    def read(self):
        time.sleep(self.period)
        if self.lost:
            return False, None
        if self.pos >= len(self.script):
            time.sleep(0.02 if self.then_idle else 0.01)
            return (True, frame(255)) if self.then_idle else (False, None)
        item = self.script[self.pos]
        self.pos += 1
        if item == "fail":
            return False, None
        if item == "empty":
            return True, np.zeros((0, 0, 3), np.uint8)
        if item == "raise":
            raise OSError("select() timeout")
        if item == "disconnect":
            self.lost = True
            self.down.set()
            return False, None
        return True, frame(item)

    def release(self):
        self.releases += 1


class FakeDetector:
    def __init__(self, delay: float = 0.0, fail_on=()):
        self.delay = delay
        self.fail_on = set(fail_on)
        self.seen = []
        self.closed = False

    def detect(self, img):
        i = int(img[0, 0, 0])
        self.seen.append(i)
        time.sleep(self.delay)
        if i in self.fail_on:
            raise AcceleratorTimeout("codenet_top: no ap_done within the 2 s timeout")
        return Detections(np.array([[1, 1, 20, 20]], np.float32), np.array([0.9], np.float32), np.array([0]),
                          ["circle"], {"preprocess": 1.0, "inference": 2.0, "decode": 0.5}, img.shape[:2])

    def close(self):
        self.closed = True


def until(cond, timeout=5.0):
    t = time.perf_counter() + timeout
    while time.perf_counter() < t:
        if cond():
            return True
        time.sleep(0.01)
    return False


def test_slow_backend_gets_only_the_newest_frames():
    cam = ScriptedCamera(range(60), period=0.002)
    det = FakeDetector(delay=0.03)
    shown = []
    demo = live.LiveDemo(det, live.FrameGrabber(cam.opener), sinks=[shown.append]).start()
    assert until(lambda: cam.pos >= 60)
    demo.stop()
    assert demo.grabber.dropped > 20  # a slow detector skips stale frames...
    assert len(det.seen) < 30
    assert det.seen == sorted(det.seen) and det.seen[-1] >= 50  # ...and always takes the newest one
    assert demo.grabber.dropped + len(det.seen) <= 60
    assert len(shown) == len(det.seen) and shown[0].shape == (48, 64, 3)
    assert det.closed and cam.releases >= 1


def test_reconnect_after_a_scripted_disconnect():
    cam = ScriptedCamera([0, 1, 2, "disconnect"] + list(range(3, 10)))
    statuses = []
    grabber = live.FrameGrabber(cam.opener, backoff=(0.05, 0.1), max_failures=2)
    demo = live.LiveDemo(FakeDetector(), grabber, status=statuses.append).start()
    assert until(lambda: "reconnect attempt" in grabber.state)
    assert any("camera lost" in s for s in statuses) or "camera lost" in grabber.state
    lost_opens = cam.opens
    time.sleep(0.2)
    assert cam.opens > lost_opens  # it keeps retrying with back-off while the camera is away
    cam.down.clear()  # plugged back in
    assert until(lambda: 9 in demo.detector.seen)
    assert grabber.reconnects == 1 and grabber.state.startswith("live (reconnected")
    demo.stop()


def test_read_failures_and_empty_frames_do_not_stop_the_loop():
    cam = ScriptedCamera([0, "fail", "empty", "raise", 1, 2], then_idle=True)
    det = FakeDetector()
    demo = live.LiveDemo(det, live.FrameGrabber(cam.opener, max_failures=5)).start()
    assert until(lambda: 2 in det.seen)
    demo.stop()
    assert demo.grabber.read_failures == 3 and demo.grabber.reconnects == 0


def test_backend_error_is_shown_and_the_loop_continues():
    cam = ScriptedCamera(range(8), period=0.02)
    det = FakeDetector(fail_on={2})
    statuses, shown = [], []
    demo = live.LiveDemo(det, live.FrameGrabber(cam.opener), sinks=[shown.append], status=statuses.append).start()
    assert until(lambda: 7 in det.seen)
    demo.stop()
    assert demo.errors == 1 and "AcceleratorTimeout" in demo.last_error
    assert any("1 errors, last: AcceleratorTimeout" in s for s in statuses)
    assert demo.frames == len(det.seen) and len(shown) == len(det.seen)  # the error frame is shown too
    red = [img for img in shown if (img[..., 2] == 255).any() and (img[..., 1] == 0).any()]
    assert red, "the error text is drawn on the frame"
    assert statuses[-1].startswith("stopped after")


def test_worker_crash_is_reported_not_silent():
    class Exploding(FakeDetector):
        def detect(self, img):
            raise KeyboardInterrupt  # not an Exception: ends the worker

    statuses = []
    cam = ScriptedCamera(range(5), period=0.01)
    demo = live.LiveDemo(Exploding(), live.FrameGrabber(cam.opener), status=statuses.append)
    demo._thread.run = demo._run  # keep the BaseException out of pytest's thread-exception hook
    demo.grabber.start()
    with pytest.raises(KeyboardInterrupt):
        demo._run()
    assert "worker stopped on an error: KeyboardInterrupt" in demo.status_text
    demo.stop()


def test_second_start_stops_the_first_and_releases_it(tmp_path):
    cams = [ScriptedCamera(range(1000), period=0.005) for _ in range(2)]
    dets = [FakeDetector(), FakeDetector()]
    first = live.start(cams[0].opener, detector=dets[0], widget=False, name="t")
    assert until(lambda: len(dets[0].seen) > 2)
    second = live.start(cams[1].opener, detector=dets[1], widget=False, name="t",
                        record=tmp_path / "rec.avi", max_frames=5)
    assert not first.running and not first.grabber.alive and cams[0].releases >= 1
    assert live.active("t") is second
    assert second.wait(5) and dets[1].seen
    live.stop("t")
    assert live.active("t") is None and not second.grabber.alive
    assert (tmp_path / "rec.avi").stat().st_size > 1000  # the annotated frames were recorded


def test_start_owns_and_closes_a_loaded_detector(monkeypatch):
    import codenet_pynq.detector as detmod

    made = []

    def load(model=None, backend="auto"):
        made.append(FakeDetector())
        return made[-1]

    monkeypatch.setattr(detmod.Detector, "load", staticmethod(load))
    cam = ScriptedCamera(range(100), period=0.005)
    live.start(cam.opener, widget=False, name="own")
    live.start("samples", widget=False, name="own", max_frames=3)
    assert made[0].closed  # the first demo's detector was released by the second start
    assert until(lambda: len(made[1].seen) == 3)
    live.stop("own")
    assert made[1].closed


def test_widget_shows_frames_and_status():
    pytest.importorskip("ipywidgets")
    cam = ScriptedCamera(range(20), period=0.01)
    demo = live.start(cam.opener, detector=FakeDetector(), widget=True, name="w", max_frames=4)
    assert demo.wait(5)
    view, row = demo.widget.children
    assert view.value[:2] == b"\xff\xd8"  # a JPEG
    assert "frame" in row.children[1].value
    row.children[0].click()  # the Stop button
    assert not demo.grabber.alive
    live.stop("w")
