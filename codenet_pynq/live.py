"""The live camera demo: newest-frame grabbing, reconnects, errors shown, one demo at a time.

>>> from codenet_pynq import live                      # doctest: +SKIP
>>> demo = live.start(source=0)        # widget with the annotated frames, a status line and Stop
>>> demo.stop()                        # or run live.start again: it stops the previous demo first

Pieces (each usable alone, tested with a scripted capture in tests/test_live.py):

- :class:`FrameGrabber`: a thread that reads the camera as fast as it delivers and keeps only the
  newest frame, so that the detector always gets the current picture, not one that waited in
  the camera's buffer; frames nobody took are dropped and counted. After ``max_failures`` failed
  reads in a row the camera counts as lost: it is released and reopened with a growing back-off
  (``backoff`` seconds), and :attr:`FrameGrabber.state` says so meanwhile.
- :class:`LiveDemo`: the detection loop in a worker thread. Every error (an empty frame, an
  accelerator timeout, a read error) is caught per frame, counted and shown in the status line
  and on the picture; the loop goes on. If the worker itself ends on an unexpected error, the
  status line says so: it never dies silently. Frames carry fps and per-stage milliseconds;
  ``record`` writes them to a video file.
- :func:`start` / :func:`stop`: a module-level registry, so that re-running a notebook cell
  stops the previous demo and releases its camera and detector before a new one starts.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from .deps import cv2, optional
from .visualize import draw_detections, overlay_fps

__all__ = ["FrameGrabber", "LiveDemo", "SampleCapture", "open_source", "start", "stop", "active"]

Source = Union[int, str, Callable[[], Any]]
Sink = Callable[[np.ndarray], None]


# =========================================================================== sources
class SampleCapture:
    """A ``cv2.VideoCapture``-like source that loops over images at ``fps`` (no camera needed)."""

    def __init__(self, images: Sequence[np.ndarray], fps: float = 15.0) -> None:
        if not images:
            raise ValueError("SampleCapture needs at least one image")
        self.images = list(images)
        self.period = 1.0 / fps if fps > 0 else 0.0
        self.i = 0
        self.opened = True
        self._next = time.perf_counter()

    def isOpened(self) -> bool:  # noqa: N802 - OpenCV's spelling
        return self.opened

    def read(self) -> Tuple[bool, Optional[np.ndarray]]:
        if not self.opened:
            return False, None
        delay = self._next - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        self._next = max(self._next + self.period, time.perf_counter())
        img = self.images[self.i % len(self.images)]
        self.i += 1
        return True, img.copy()

    def release(self) -> None:
        self.opened = False


def sample_images() -> List[np.ndarray]:
    """The target sheet and the package's sample images (BGR)."""
    from .image_io import read_image

    here = Path(__file__).resolve().parent
    files = sorted((here / "assets").glob("target_sheet*.png")) + sorted((here / "samples").glob("*.jpg"))
    return [read_image(p) for p in files]


def open_source(source: Source) -> Callable[[], Any]:
    """A function that opens ``source``: a camera index or device/file path (OpenCV), ``"samples"``
    (the shipped sample images in a loop) or already such a function."""
    if callable(source):
        return source
    if source == "samples":
        images = sample_images()
        return lambda: SampleCapture(images)
    return lambda: cv2.VideoCapture(source)


# =========================================================================== grabbing
class FrameGrabber:
    """Newest-frame camera reader with loss detection and reconnects (see module doc).

    ``opener()`` returns a capture (``isOpened``, ``read``, ``release``) or raises;
    ``backoff``: seconds to wait before reconnect attempts 1, 2, ... (the last one repeats);
    ``max_failures``: failed reads in a row after which the camera counts as lost.
    """

    def __init__(self, opener: Callable[[], Any], backoff: Sequence[float] = (0.5, 1.0, 2.0, 5.0),
                 max_failures: int = 5) -> None:
        self.opener = opener
        self.backoff = tuple(backoff) or (1.0,)
        self.max_failures = max(1, int(max_failures))
        self.state = "opening camera"
        self.grabbed = 0
        self.dropped = 0
        self.read_failures = 0
        self.reconnects = 0
        self.last_error = ""
        self._cond = threading.Condition()
        self._frame: Optional[np.ndarray] = None
        self._seq = 0
        self._stop = threading.Event()
        self._cap: Any = None
        self._thread = threading.Thread(target=self._run, daemon=True, name="codenet-grab")

    def start(self) -> FrameGrabber:
        self._thread.start()
        return self

    def _open(self) -> bool:
        try:
            cap = self.opener()
            if cap is None or not cap.isOpened():
                if cap is not None:
                    cap.release()
                raise OSError("the camera cannot be opened (unplugged, or in use by another program)")
        except Exception as e:
            self.last_error = f"{type(e).__name__}: {e}"
            return False
        self._cap = cap
        return True

    def _release(self) -> None:
        cap, self._cap = self._cap, None
        if cap is not None:
            try:
                cap.release()
            except Exception:  # releasing is best effort
                pass

    def _run(self) -> None:
        attempt = 0
        failures = 0
        try:
            while not self._stop.is_set():
                if self._cap is None:
                    if self._open():
                        self.state = "live" if attempt == 0 else f"live (reconnected after {attempt} attempts)"
                        attempt = failures = 0
                        continue
                    wait = self.backoff[min(attempt, len(self.backoff) - 1)]
                    attempt += 1
                    self.state = (f"camera lost: {self.last_error}; reconnect attempt {attempt} in {wait:g} s"
                                  if self.grabbed or attempt > 1 else f"no camera: {self.last_error}; retrying in {wait:g} s")
                    self._stop.wait(wait)
                    continue
                try:
                    ok, frame = self._cap.read()
                except Exception as e:
                    ok, frame = False, None
                    self.last_error = f"read error ({type(e).__name__}: {e})"
                else:
                    if not ok or frame is None or getattr(frame, "size", 0) == 0:
                        self.last_error = "the camera delivered no frame"
                        ok = False
                if not ok:
                    failures += 1
                    self.read_failures += 1
                    if failures >= self.max_failures:
                        self._release()
                        self.reconnects += 1
                        self.state = f"camera lost after {failures} failed reads ({self.last_error}); reconnecting"
                    continue
                failures = 0
                with self._cond:
                    if self._frame is not None:
                        self.dropped += 1  # nobody took the previous frame: it is stale now
                    self._frame = frame
                    self._seq += 1
                    self.grabbed += 1
                    self._cond.notify_all()
        except BaseException as e:  # shown in the status, never silent
            self.state = f"frame grabber stopped on an error: {type(e).__name__}: {e}"
            raise
        finally:
            self._release()

    def latest(self, timeout: float = 1.0) -> Optional[np.ndarray]:
        """The newest frame not yet taken (waits up to ``timeout``), else None."""
        with self._cond:
            if self._frame is None:
                self._cond.wait(timeout)
            frame, self._frame = self._frame, None
            return frame

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread and release the camera (idempotent)."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        self._release()
        self.state = "stopped"

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()


# =========================================================================== the demo
def _text_lines(image: np.ndarray, lines: Sequence[str], color: Tuple[int, int, int] = (255, 255, 255)) -> None:
    h = image.shape[0]
    scale = max(0.4, h / 900)
    y = int(40 * scale * 2)
    for line in lines:
        (tw, th), base = cv2.getTextSize(line, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        cv2.rectangle(image, (0, y - th - 4), (tw + 8, y + base), (0, 0, 0), -1)
        cv2.putText(image, line, (4, y), cv2.FONT_HERSHEY_SIMPLEX, scale, color, 1, cv2.LINE_AA)
        y += th + base + 6


class LiveDemo:
    """Camera -> detector -> annotated frames, in a worker thread (see module doc).

    ``detector``: anything with ``detect(frame) -> Detections`` (``close()`` is called on
    :meth:`stop` when ``owns_detector``); ``sinks``: functions given each annotated BGR frame;
    ``status``: a function given the status line; ``record``: a video file (``.avi`` MJPG,
    ``.mp4`` mp4v) that gets every annotated frame; ``max_frames`` / ``max_seconds``: stop after.
    """

    def __init__(self, detector: Any, grabber: FrameGrabber, sinks: Sequence[Sink] = (),
                 status: Optional[Callable[[str], None]] = None, record: Optional[Union[str, Path]] = None,
                 record_fps: float = 10.0, max_frames: Optional[int] = None, max_seconds: Optional[float] = None,
                 owns_detector: bool = True) -> None:
        self.detector = detector
        self.grabber = grabber
        self.sinks = list(sinks)
        self._status = status
        self.record = Path(record) if record else None
        self.record_fps = record_fps
        self.max_frames = max_frames
        self.max_seconds = max_seconds
        self.owns_detector = owns_detector
        self.frames = 0
        self.errors = 0
        self.last_error = ""
        self.fps: Optional[float] = None
        self.stage_ms: Dict[str, float] = {}
        self.status_text = ""
        self._writer: Any = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="codenet-live")

    # ------------------------------------------------------------------ control
    def start(self) -> LiveDemo:
        self.grabber.start()
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the worker and the grabber, release camera, recorder and (if owned) the detector."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        self.grabber.stop()
        if self._writer is not None:
            self._writer.release()
            self._writer = None
        if self.owns_detector and self.detector is not None:
            try:
                self.detector.close()
            except Exception as e:  # shown, not raised: stopping must always complete
                self._set_status(f"stopped; closing the detector failed: {type(e).__name__}: {e}")
        self.detector = None if self.owns_detector else self.detector
        if not self.status_text.startswith("stopped"):
            last = f"; last error: {self.last_error}" if self.errors else ""
            self._set_status(f"stopped after {self.frames} frames ({self.errors} errors, "
                             f"{self.grabber.dropped} stale frames dropped){last}")

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Wait for the worker to end (max_frames / max_seconds); True if it has."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    # ------------------------------------------------------------------ worker
    def _set_status(self, text: str) -> None:
        self.status_text = text
        if self._status is not None:
            try:
                self._status(text)
            except Exception:  # a broken widget must not stop the loop
                pass

    def _emit(self, image: np.ndarray) -> None:
        for sink in self.sinks:
            sink(image)
        if self.record is not None:
            if self._writer is None:
                fourcc = "MJPG" if self.record.suffix.lower() == ".avi" else "mp4v"
                h, w = image.shape[:2]
                self._writer = cv2.VideoWriter(str(self.record), cv2.VideoWriter_fourcc(*fourcc), self.record_fps, (w, h))
                if not self._writer.isOpened():
                    self._writer = None
                    self.record = None
                    raise OSError("cannot write the recording (unsupported extension or codec: use .avi)")
            self._writer.write(image)

    def _status_line(self, n_objects: int) -> str:
        g = self.grabber
        ms = ", ".join(f"{k} {v:.1f}" for k, v in self.stage_ms.items())
        err = f"; {self.errors} errors, last: {self.last_error}" if self.errors else ""
        return (f"{g.state} | frame {self.frames}: {n_objects} objects | {self.fps or 0:.1f} fps | ms: {ms} | "
                f"dropped {g.dropped} stale frames{err}")

    def _step(self, frame: np.ndarray) -> None:
        t = time.perf_counter()
        try:
            dets = self.detector.detect(frame)
        except Exception as e:
            self.errors += 1
            self.last_error = f"{type(e).__name__}: {e}"
            shown = frame.copy() if isinstance(frame, np.ndarray) and frame.ndim == 3 else np.zeros((240, 320, 3), np.uint8)
            _text_lines(shown, [f"error on frame {self.frames}:", self.last_error[:80]], color=(0, 0, 255))
            self._emit(shown)
            self._set_status(self._status_line(0))
            return
        now = time.perf_counter()
        rate = 1.0 / max(now - self._last, 1e-6)
        self._last = now
        self.fps = rate if self.fps is None else 0.9 * self.fps + 0.1 * rate
        self.stage_ms = {k: float(dets.timings[k]) for k in ("preprocess", "inference", "decode") if k in dets.timings}
        self.stage_ms["loop"] = (now - t) * 1e3
        shown = overlay_fps(draw_detections(frame, dets), self.fps)
        _text_lines(shown, [" ".join(f"{k} {v:.1f}ms" for k, v in self.stage_ms.items()),
                            f"dropped {self.grabber.dropped}" + (f" errors {self.errors}" if self.errors else "")])
        self._emit(shown)
        self._set_status(self._status_line(len(dets.boxes)))

    def _run(self) -> None:
        t0 = self._last = time.perf_counter()
        try:
            while not self._stop.is_set():
                if self.max_frames is not None and self.frames >= self.max_frames:
                    break
                if self.max_seconds is not None and time.perf_counter() - t0 >= self.max_seconds:
                    break
                frame = self.grabber.latest(timeout=0.5)
                if frame is None:
                    self._set_status(f"{self.grabber.state} | waiting for a frame ({self.frames} shown)")
                    continue
                self._step(frame)
                self.frames += 1
        except BaseException as e:  # never silent: the status line says why the worker ended
            self.errors += 1
            self.last_error = f"{type(e).__name__}: {e}"
            self._set_status(f"worker stopped on an error: {self.last_error}")
            raise
        finally:
            self.grabber.stop()


# =========================================================================== registry
_ACTIVE: Dict[str, LiveDemo] = {}
_REGISTRY_LOCK = threading.Lock()


def active(name: str = "default") -> Optional[LiveDemo]:
    """The running (or last) demo registered as ``name``."""
    return _ACTIVE.get(name)


def stop(name: str = "default") -> None:
    """Stop the demo registered as ``name`` and release its camera and detector (no-op if none)."""
    with _REGISTRY_LOCK:
        demo = _ACTIVE.pop(name, None)
    if demo is not None:
        demo.stop()


def _widgets() -> Tuple[Any, Sink, Callable[[str], None], Any]:
    widgets = optional("ipywidgets", "the live demo's widget")
    view = widgets.Image(format="jpeg", width=640)
    label = widgets.Label(value="starting")
    button = widgets.Button(description="Stop", icon="stop")
    box = widgets.VBox([view, widgets.HBox([button, label])])

    def show(image: np.ndarray) -> None:
        ok, buf = cv2.imencode(".jpg", image)
        if ok:
            view.value = buf.tobytes()

    def status(text: str) -> None:
        label.value = text

    return box, show, status, button


def start(source: Source = 0, model: Optional[str] = None, backend: str = "auto", detector: Any = None,
          name: str = "default", widget: bool = True, sinks: Sequence[Sink] = (),
          status: Optional[Callable[[str], None]] = None, record: Optional[Union[str, Path]] = None,
          max_frames: Optional[int] = None, max_seconds: Optional[float] = None,
          backoff: Sequence[float] = (0.5, 1.0, 2.0, 5.0), max_failures: int = 5) -> LiveDemo:
    """Stop the demo registered as ``name`` (if any), then start a new one and register it.

    ``source``: see :func:`open_source`; ``detector``: an existing detector (not closed on stop),
    else ``Detector.load(model, backend)`` (closed on stop). ``widget``: show an ipywidgets view
    with a status line and a Stop button (needs ipywidgets; ``display`` is called when IPython is
    there). Other arguments: :class:`LiveDemo` and :class:`FrameGrabber`.
    """
    stop(name)
    owns = detector is None
    if owns:
        from .detector import Detector

        detector = Detector.load(model, backend=backend)
    try:
        sinks = list(sinks)
        box = None
        if widget:
            box, show, wstatus, button = _widgets()
            sinks.append(show)
            outer = status

            def status(text: str) -> None:  # noqa: F811 - the widget line, then the caller's
                wstatus(text)
                if outer is not None:
                    outer(text)

        grabber = FrameGrabber(open_source(source), backoff=backoff, max_failures=max_failures)
        demo = LiveDemo(detector, grabber, sinks=sinks, status=status, record=record, max_frames=max_frames,
                        max_seconds=max_seconds, owns_detector=owns)
    except BaseException:
        if owns:
            detector.close()
        raise
    if box is not None:
        button.on_click(lambda _: demo.stop())
        demo.widget = box
        try:
            from IPython.display import display

            display(box)
        except ImportError:
            pass
    with _REGISTRY_LOCK:
        _ACTIVE[name] = demo
    return demo.start()
