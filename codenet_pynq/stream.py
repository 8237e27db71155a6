"""A three-stage detection pipeline: preprocess, backend, decode in their own threads.

While the backend (the accelerator, its emulator or ONNX Runtime) runs frame n, one thread
letterboxes frame n+1 and another decodes frame n-1. The stages hand frames on through bounded
queues (``depth`` frames each), so memory stays bounded and a slow consumer slows the producer
down instead of piling frames up. The numpy, OpenCV, ONNX Runtime and emulator work of each stage
releases the GIL, so the stages really overlap; the throughput approaches that of the slowest
stage instead of the sum of the three (``benchmarks/streaming.py``).

Results come out in frame order. Errors:

- a frame whose preprocessing, backend run or decode raises becomes a :class:`FrameError`
  (frame index, stage, the original exception as ``__cause__``); with ``errors="raise"`` the
  generator raises it once the frames before it have been yielded and stops the pipeline, with
  ``errors="yield"`` it is yielded in the frame's place and the stream goes on;
- an exception of the ``frames`` iterable itself ends the stream with that exception (after the
  frames before it);
- closing the generator, breaking out of the ``for`` loop or an exception in the consumer stops
  the threads and joins them (:meth:`Pipeline.close`); the frames iterable is not consumed further.

With an accelerator backend (board or emulator) the backend stage also double-buffers the driver:
frame n's image is written into one activation region while the engine runs frame n-1 in the
other, and frame n-1's outputs are gathered while the engine runs frame n
(:meth:`codenet_pynq.backends.fpga.CodenetAccelerator.submit`).

Per-frame timings: ``preprocess``, ``inference``, ``decode`` (ms of each stage's own work),
``total`` (their sum) and ``latency`` (ms from the start of preprocessing to the end of decode,
queueing included).
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Any, Callable, Iterable, Iterator, List, Optional

from .errors import CodenetError

__all__ = ["FrameError", "Pipeline", "stream_detections"]

_END = object()
_POLL_S = 0.05


class FrameError(CodenetError, RuntimeError):
    """One frame of a stream failed; ``index`` (0-based), ``stage`` and the cause (``__cause__``)."""

    def __init__(self, index: int, stage: str, error: BaseException) -> None:
        super().__init__(f"frame {index}: {stage} failed ({type(error).__name__}: {error})")
        self.index = index
        self.stage = stage
        self.__cause__ = error


class _Item:
    __slots__ = ("index", "t0", "image", "pixels", "meta", "heads", "result", "error", "timings")

    def __init__(self, index: int) -> None:
        self.index = index
        self.t0 = time.perf_counter()
        self.image = self.pixels = self.meta = self.heads = self.result = None
        self.error: Optional[FrameError] = None
        self.timings = {}


class Pipeline:
    """Threads and queues of one stream; iterate it for the results (see module doc)."""

    def __init__(self, frames: Iterable[Any], prepare: Callable[[Any], Any], run: Callable[[Any], Any],
                 finish: Callable[[Any], Any], depth: int = 2, lagged: Optional[Any] = None) -> None:
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth!r}")
        self._stop = threading.Event()
        self._source_error: List[BaseException] = []
        q = [queue.Queue(maxsize=depth) for _ in range(3)]
        self._out = q[2]
        self._threads = [
            threading.Thread(target=self._produce, args=(iter(frames), prepare, q[0]), daemon=True,
                             name="codenet-preprocess"),
            threading.Thread(target=self._stage if lagged is None else self._lagged_stage,
                             args=("inference", run if lagged is None else lagged, q[0], q[1]), daemon=True,
                             name="codenet-backend"),
            threading.Thread(target=self._stage, args=("decode", finish, q[1], q[2]), daemon=True,
                             name="codenet-decode"),
        ]
        for t in self._threads:
            t.start()

    # ------------------------------------------------------------------ threads
    def _put(self, q: queue.Queue, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                q.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def _get(self, q: queue.Queue) -> Any:
        while not self._stop.is_set():
            try:
                return q.get(timeout=_POLL_S)
            except queue.Empty:
                continue
        return _END

    def _produce(self, frames: Iterator[Any], prepare: Callable[[Any], Any], out: queue.Queue) -> None:
        index = 0
        try:
            while not self._stop.is_set():
                try:
                    frame = next(frames)
                except StopIteration:
                    break
                except BaseException as e:  # the source failed: end the stream with its error
                    self._source_error.append(e)
                    break
                item = _Item(index)
                index += 1
                t = time.perf_counter()
                try:
                    item.image, item.pixels, item.meta = prepare(frame)
                except Exception as e:
                    item.error = FrameError(item.index, "preprocess", e)
                item.timings["preprocess"] = (time.perf_counter() - t) * 1e3
                if not self._put(out, item):
                    return
        finally:
            self._put(out, _END)

    def _stage(self, name: str, work: Callable[[Any], Any], inq: queue.Queue, out: queue.Queue) -> None:
        while True:
            item = self._get(inq)
            if item is _END:
                self._put(out, _END)
                return
            if item.error is None:
                t = time.perf_counter()
                try:
                    work(item)
                except Exception as e:
                    item.error = FrameError(item.index, name, e)
                item.timings[name] = (time.perf_counter() - t) * 1e3
            if not self._put(out, item):
                return

    def _lagged_stage(self, name: str, backend: Any, inq: queue.Queue, out: queue.Queue) -> None:
        """The backend stage over a double-buffered accelerator: frame n is submitted (its image
        written while the engine runs frame n-1) before frame n-1 is collected (its outputs
        gathered while the engine runs frame n); frames leave in order, one frame behind."""
        pending: List[_Item] = []

        def collect_one() -> bool:
            prev = pending.pop(0)
            t = time.perf_counter()
            try:
                prev.heads = backend.collect()
            except Exception as e:
                prev.error = FrameError(prev.index, name, e)
            prev.timings[name] = prev.timings.get(name, 0.0) + (time.perf_counter() - t) * 1e3
            return self._put(out, prev)

        try:
            while True:
                item = self._get(inq)
                if item is _END:
                    while pending:
                        if not collect_one():
                            return
                    self._put(out, _END)
                    return
                if item.error is None:
                    t = time.perf_counter()
                    try:
                        backend.submit(item.pixels)
                    except Exception as e:
                        item.error = FrameError(item.index, name, e)
                    item.timings[name] = (time.perf_counter() - t) * 1e3
                if item.error is not None:  # keep the order: frames in flight leave first
                    while pending:
                        if not collect_one():
                            return
                    if not self._put(out, item):
                        return
                    continue
                pending.append(item)
                if len(pending) == 2 and not collect_one():
                    return
        finally:
            backend.drain()

    # ------------------------------------------------------------------ consumer
    def __iter__(self) -> Iterator[_Item]:
        try:
            while True:
                item = self._get(self._out)
                if item is _END:
                    if self._source_error:
                        raise self._source_error[0]
                    return
                yield item
        finally:
            self.close()

    def close(self, timeout: float = 10.0) -> None:
        """Stop every stage and join the threads (idempotent)."""
        self._stop.set()
        for t in self._threads:
            if t is not threading.current_thread():
                t.join(timeout)

    @property
    def alive(self) -> bool:
        return any(t.is_alive() for t in self._threads)


def stream_detections(detector: Any, frames: Iterable[Any], score_threshold: Optional[float] = None,
                      top_k: Optional[int] = None, depth: int = 2, errors: str = "raise") -> Iterator[Any]:
    """The generator behind :meth:`codenet_pynq.detector.Detector.stream`."""
    if errors not in ("raise", "yield"):
        raise ValueError(f"errors must be 'raise' or 'yield', got {errors!r}")

    def prepare(frame: Any) -> Any:
        return detector.prepare(frame)  # a fresh buffer per frame: two frames are in flight

    def run(item: _Item) -> None:
        item.heads = detector.backend.run(item.pixels)

    def finish(item: _Item) -> None:
        item.result = detector.finish(item.heads, item.meta, item.image.shape[:2], score_threshold, top_k)
        item.heads = item.pixels = None

    backend = detector.backend
    lagged = backend if getattr(backend, "frames_in_flight", 1) > 1 else None

    def results() -> Iterator[Any]:
        pipe = Pipeline(frames, prepare, run, finish, depth=depth, lagged=lagged)
        try:
            for item in pipe:
                if item.error is not None:
                    if errors == "raise":
                        raise item.error
                    yield item.error
                    continue
                tm = item.timings
                tm["total"] = tm.get("preprocess", 0.0) + tm.get("inference", 0.0) + tm.get("decode", 0.0)
                tm["latency"] = (time.perf_counter() - item.t0) * 1e3
                item.result.timings = dict(tm)
                yield item.result
        finally:
            pipe.close()

    return results()
