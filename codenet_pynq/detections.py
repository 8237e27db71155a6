"""The result of detecting objects in one image."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

__all__ = ["Detections", "TIMING_STAGES"]

#: Timing keys a detector fills in (milliseconds).
TIMING_STAGES: Tuple[str, ...] = ("preprocess", "inference", "decode", "total")


def _name_for(label: int, classes: Optional[Sequence[str]]) -> str:
    if classes is not None and 0 <= label < len(classes):
        return str(classes[label])
    return f"class_{label}"


@dataclass(eq=False)
class Detections:
    """Detections of one image, in its original pixel coordinates.

    ``boxes`` float32 (n, 4) ``x1, y1, x2, y2``; ``scores`` float32 (n,); ``labels`` int64 (n,),
    0-based class indices; ``class_names`` one name per detection; ``timings`` stage -> ms
    (``preprocess``, ``inference``, ``decode``, ``total``); ``image_size`` ``(h, w)``.
    Detections are kept in the order given (the decoder gives score descending).
    """

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    class_names: List[str] = field(default_factory=list)
    timings: Dict[str, float] = field(default_factory=dict)
    image_size: Tuple[int, int] = (0, 0)

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4)
        self.scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)
        self.labels = np.asarray(self.labels).reshape(-1).astype(np.int64)
        n = self.boxes.shape[0]
        if self.scores.shape[0] != n or self.labels.shape[0] != n:
            raise ValueError(f"Detections: boxes ({n}), scores ({self.scores.shape[0]}) and labels "
                             f"({self.labels.shape[0]}) must have the same length")
        self.class_names = [str(c) for c in self.class_names]
        if not self.class_names and n:
            self.class_names = [_name_for(int(lab), None) for lab in self.labels]
        if len(self.class_names) != n:
            raise ValueError(f"Detections: {len(self.class_names)} class_names for {n} detections; "
                             "give one name per detection (or use Detections.from_labels)")
        self.timings = {str(k): float(v) for k, v in self.timings.items()}
        self.image_size = (int(self.image_size[0]), int(self.image_size[1]))

    @classmethod
    def from_labels(cls, boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray,
                    classes: Optional[Sequence[str]] = None, timings: Optional[Mapping[str, float]] = None,
                    image_size: Tuple[int, int] = (0, 0)) -> Detections:
        """Build from arrays and the model's class table (``classes[label]``; unknown -> ``class_<i>``)."""
        labs = np.asarray(labels).reshape(-1)
        names = [_name_for(int(lab), classes) for lab in labs]
        return cls(boxes, scores, labs, names, dict(timings or {}), image_size)

    @classmethod
    def empty(cls, image_size: Tuple[int, int] = (0, 0), timings: Optional[Mapping[str, float]] = None
              ) -> Detections:
        """No detections."""
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64), [],
                   dict(timings or {}), image_size)

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    def __getitem__(self, index: Union[int, slice, np.ndarray, Sequence[int]]) -> Detections:
        """Select detections by position, slice, index array or boolean mask (a new object)."""
        idx = np.arange(len(self))[index]
        idx = np.atleast_1d(idx)
        return Detections(self.boxes[idx], self.scores[idx], self.labels[idx],
                          [self.class_names[i] for i in idx.tolist()], dict(self.timings), self.image_size)

    def __iter__(self) -> Iterator[Dict[str, Any]]:
        """Iterate over detections as plain dicts (see :meth:`to_dict`)."""
        return iter(self._items())

    def filter(self, min_score: float) -> Detections:
        """A new :class:`Detections` with only ``score >= min_score``."""
        return self[self.scores >= np.float32(min_score)]

    @property
    def fps(self) -> Optional[float]:
        """Frames per second implied by ``timings["total"]`` (None when unknown or zero)."""
        total = self.timings.get("total")
        return 1000.0 / total if total else None

    def _items(self) -> List[Dict[str, Any]]:
        return [{"box": [float(v) for v in self.boxes[i]], "score": float(self.scores[i]),
                 "label": int(self.labels[i]), "class_name": self.class_names[i]}
                for i in range(len(self))]

    def to_dict(self) -> Dict[str, Any]:
        """JSON-serialisable dict: ``image_size``, ``timings``, ``detections`` (list of dicts)."""
        return {"image_size": list(self.image_size), "timings": dict(self.timings),
                "detections": self._items()}

    def to_json(self, **kwargs: Any) -> str:
        """``json.dumps(self.to_dict(), **kwargs)``."""
        return json.dumps(self.to_dict(), **kwargs)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Detections:
        """Inverse of :meth:`to_dict`."""
        items = list(d.get("detections", []))
        if not items:
            return cls.empty(tuple(d.get("image_size", (0, 0))), d.get("timings"))  # type: ignore[arg-type]
        return cls(np.array([it["box"] for it in items], np.float32),
                   np.array([it["score"] for it in items], np.float32),
                   np.array([it["label"] for it in items], np.int64),
                   [str(it.get("class_name", f"class_{it['label']}")) for it in items],
                   dict(d.get("timings", {})), tuple(d.get("image_size", (0, 0))))  # type: ignore[arg-type]

    def __repr__(self) -> str:
        h, w = self.image_size
        parts = [f"{n} {s:.2f}" for n, s in zip(self.class_names[:5], self.scores[:5].tolist())]
        more = ", ..." if len(self) > 5 else ""
        t = f", total {self.timings['total']:.1f} ms" if "total" in self.timings else ""
        return f"Detections({len(self)} in {w}x{h}: [{', '.join(parts)}{more}]{t})"
