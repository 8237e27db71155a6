"""The user-facing API: ``Detector.load(path, backend="auto").detect(image)``."""

from __future__ import annotations

import importlib
import os
import time
from typing import Any, Dict, Iterable, Iterator, Optional, Tuple, Union

import numpy as np

from .artifact import Artifact, default_model_path, load_artifact
from .decode import decode
from .deps import cv2 as _cv2  # noqa: F401 - a clear message when OpenCV is missing
from .detections import Detections
from .errors import ArtifactError, BackendError
from .image_io import read_image, to_bgr_u8
from .transforms import boxes_to_image, preprocess

BACKENDS = ("auto", "fpga", "emulator", "cpu")
#: backend options of the fpga backend that ``auto`` drops when it falls back to the CPU
_ACCEL_ONLY_OPTIONS = ("overlay", "timeout_s", "download", "pynq_module", "platform")
ImageLike = Union[np.ndarray, str, os.PathLike]


def explain_auto(artifact: Artifact, overlay: Optional[str] = None) -> Tuple[str, str]:
    """Which backend ``auto`` picks for ``artifact`` and why, without starting it.

    Returns ``(name, reason)``: ``("fpga", "FPGA: ...")`` when a board and a matching overlay are
    present, else ``("cpu", "CPU fallback: ...")``. ``overlay``: the .bit the fpga backend would load
    (default: see :func:`codenet_pynq.backends.fpga.find_overlay`).
    """
    if not artifact.quantized:
        return "cpu", "CPU fallback: the artifact is a float model (the accelerator runs quantized models only)"
    try:
        from .backends.fpga import fpga_available
    except ImportError as e:
        return "cpu", f"CPU fallback: FPGA backend unavailable ({e})"
    try:
        ok, why = fpga_available(artifact, overlay=overlay)
    except BackendError as e:
        return "cpu", f"CPU fallback: cannot probe the FPGA ({e})"
    return ("fpga", f"FPGA: {why}") if ok else ("cpu", f"CPU fallback: {why}")


def _backend_class(name: str) -> Any:
    """Import a backend class lazily; a missing module or dependency becomes a BackendError."""
    module, cls = {"cpu": ("cpu", "CpuBackend"), "emulator": ("emulator", "EmulatorBackend"),
                   "fpga": ("fpga", "FpgaBackend")}[name]
    try:
        mod = importlib.import_module(f"{__package__}.backends.{module}")
    except ImportError as e:
        raise BackendError(f"the {name} backend is not available in this installation ({e}); "
                           "use --backend cpu (backend='cpu') or install what it needs") from e
    return getattr(mod, cls)


def _make_backend(artifact: Artifact, backend: str, **kw) -> Tuple[Any, str]:
    """Construct the backend; returns (backend, reason it was chosen)."""
    if backend not in BACKENDS:
        raise BackendError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend != "auto":
        return _backend_class(backend)(artifact, **kw), "requested"
    # auto: the FPGA when a board and a matching overlay are present, else the CPU
    name, reason = explain_auto(artifact, overlay=kw.get("overlay"))
    if name == "fpga":
        try:
            return _backend_class("fpga")(artifact, **kw), reason
        except BackendError as e:
            reason = f"CPU fallback: FPGA backend failed to start ({e})"
    # options meant for the accelerator (overlay, timeout_s, ...) do not apply to the fallback
    cpu_kw = {k: v for k, v in kw.items() if k not in _ACCEL_ONLY_OPTIONS}
    return _backend_class("cpu")(artifact, **cpu_kw), reason


class Detector:
    """A loaded model bound to a backend.

    >>> det = Detector.load("model.codenet")           # doctest: +SKIP
    >>> dets = det.detect("street.jpg")                 # doctest: +SKIP
    >>> dets.boxes, dets.scores, dets.class_names, dets.timings   # doctest: +SKIP
    """

    def __init__(self, artifact: Artifact, backend: Any, reason: str = ""):
        self.artifact = artifact
        self.backend = backend
        self.backend_reason = reason
        dec = artifact.manifest.get("decode", {})
        self.top_k = int(dec.get("top_k", 100))
        self.score_threshold = float(dec.get("score_threshold", 0.3))
        self._buf = np.zeros((artifact.input_size, artifact.input_size, 3), np.uint8)

    @classmethod
    def load(cls, path: Optional[str] = None, backend: str = "auto", **backend_kw) -> Detector:
        """Load an artifact (default: the shipped model) on ``backend`` (auto, fpga, emulator, cpu)."""
        if path is None:
            path = default_model_path()
            if path is None:
                raise ArtifactError("no model given and no shipped default model found in codenet_pynq/models/; "
                                    "pass the path of a .codenet file")
        art = load_artifact(path)
        be, reason = _make_backend(art, backend, **backend_kw)
        return cls(art, be, reason)

    @property
    def class_names(self):
        return self.artifact.class_names

    @property
    def input_size(self) -> int:
        return self.artifact.input_size

    @property
    def backend_name(self) -> str:
        return self.backend.name

    def describe(self) -> str:
        why = f" [{self.backend_reason}]" if self.backend_reason else ""
        return f"{self.backend.describe()}{why}"

    def detect(self, image: ImageLike, score_threshold: Optional[float] = None, top_k: Optional[int] = None) -> Detections:
        """Detect objects in a BGR image (array or file path); boxes in original image pixels."""
        t0 = time.perf_counter()
        image, pixels, meta = self.prepare(image, out=self._buf)
        t1 = time.perf_counter()
        heads = self.backend.run(pixels)
        t2 = time.perf_counter()
        dets = self.finish(heads, meta, image.shape[:2], score_threshold, top_k)
        t3 = time.perf_counter()
        dets.timings = {"preprocess": (t1 - t0) * 1e3, "inference": (t2 - t1) * 1e3, "decode": (t3 - t2) * 1e3,
                        "total": (t3 - t0) * 1e3}
        return dets

    def prepare(self, image: ImageLike, out: Optional[np.ndarray] = None) -> Tuple[np.ndarray, np.ndarray, Any]:
        """Stage 1 of :meth:`detect`: ``(BGR image, letterboxed pixels, meta)`` (pixels written into ``out``)."""
        if isinstance(image, (str, os.PathLike)):
            image = read_image(image)
        else:
            image = to_bgr_u8(np.asarray(image))
        pixels, meta = preprocess(image, self.input_size, out=out)
        return image, pixels, meta

    def finish(self, heads: Dict[str, np.ndarray], meta: Any, image_hw: Tuple[int, int],
               score_threshold: Optional[float] = None, top_k: Optional[int] = None) -> Detections:
        """Stage 3 of :meth:`detect`: decode head maps into Detections in image pixels (no timings)."""
        thr = self.score_threshold if score_threshold is None else float(score_threshold)
        k = self.top_k if top_k is None else int(top_k)
        boxes, scores, labels = decode(heads["hm"], heads["wh"], heads.get("reg"), k=k, score_threshold=thr)
        boxes = boxes_to_image(boxes * self.artifact.down_ratio, meta)
        return Detections.from_labels(boxes, scores, labels, self.class_names, {}, tuple(image_hw))

    def stream(self, frames: Iterable[ImageLike], score_threshold: Optional[float] = None,
               top_k: Optional[int] = None, depth: int = 2, errors: str = "raise") -> Iterator[Any]:
        """Detections of ``frames``, in order, with preprocessing, the backend and decoding overlapped.

        Frame n+1 is letterboxed and frame n-1 decoded while the backend runs frame n (three
        threads, bounded queues of ``depth``). ``errors="raise"`` (default): a frame that fails
        raises its error (a :class:`~codenet_pynq.stream.FrameError`) after the frames before it
        were yielded, and the pipeline stops; ``errors="yield"``: the FrameError is yielded in
        that frame's place and the stream goes on. Closing the generator (or leaving a ``for``
        loop early) stops and joins the threads. See :mod:`codenet_pynq.stream`.
        """
        from .stream import stream_detections

        return stream_detections(self, frames, score_threshold=score_threshold, top_k=top_k, depth=depth,
                                 errors=errors)

    def heads(self, image: np.ndarray) -> Dict[str, np.ndarray]:
        """Raw dequantized head maps for a BGR image (for tests and debugging)."""
        pixels, _ = preprocess(to_bgr_u8(np.asarray(image)), self.input_size)
        return self.backend.run(pixels)

    def info(self) -> Dict[str, Any]:
        return {**self.artifact.summary(), "backend": self.describe()}

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> Detector:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

