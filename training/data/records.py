"""Annotation records: the one in-memory format every loader produces.

A record is a plain dict (see docs/architecture.md):

``file`` (str path), ``image_id`` (int), ``width`` / ``height`` (int pixels),
``boxes`` (float32 ``n x 4``, x1 y1 x2 y2, inclusive-exclusive like COCO),
``labels`` (int64 ``n``, 0-based), ``difficult`` (bool ``n``).
"""

from typing import Any, Dict, Optional, Sequence

import numpy as np

from codenet_pynq.errors import CodenetError
from codenet_pynq.files import atomic_write

Record = Dict[str, Any]

REQUIRED_KEYS = ("file", "image_id", "width", "height", "boxes", "labels", "difficult")


class AnnotationError(CodenetError, ValueError):
    """A malformed annotation; the message names the file and the field."""


def make_record(
    file: str,
    image_id: int,
    width: int,
    height: int,
    boxes: Any = None,
    labels: Any = None,
    difficult: Any = None,
) -> Record:
    """Build a record with the canonical dtypes (empty boxes when ``boxes`` is None)."""
    b = np.zeros((0, 4), np.float32) if boxes is None else np.asarray(boxes, np.float32).reshape(-1, 4)
    n = len(b)
    lab = np.zeros((0,), np.int64) if labels is None else np.asarray(labels, np.int64).reshape(-1)
    dif = np.zeros((n,), bool) if difficult is None else np.asarray(difficult, bool).reshape(-1)
    return {
        "file": str(file),
        "image_id": int(image_id),
        "width": int(width),
        "height": int(height),
        "boxes": b,
        "labels": lab,
        "difficult": dif,
    }


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def validate_record(rec: Record, source: str = "record", num_classes: Optional[int] = None) -> Record:
    """Check a record's keys, types, shapes and box geometry; return it unchanged.

    Raises AnnotationError("<source>: <field> ...") on the first problem found.
    """
    if not isinstance(rec, dict):
        raise AnnotationError(f"{source}: record must be a dict, got {type(rec).__name__}")
    for key in REQUIRED_KEYS:
        if key not in rec:
            raise AnnotationError(f"{source}: missing field '{key}'")
    if not isinstance(rec["file"], str) or not rec["file"]:
        raise AnnotationError(f"{source}: 'file' must be a non-empty string")
    if not _is_int(rec["image_id"]):
        raise AnnotationError(f"{source}: 'image_id' must be an integer, got {rec['image_id']!r}")
    for key in ("width", "height"):
        if not _is_int(rec[key]) or rec[key] <= 0:
            raise AnnotationError(f"{source}: '{key}' must be a positive integer, got {rec[key]!r}")
    boxes, labels, difficult = rec["boxes"], rec["labels"], rec["difficult"]
    if not isinstance(boxes, np.ndarray) or boxes.dtype != np.float32 or boxes.ndim != 2 or boxes.shape[1] != 4:
        raise AnnotationError(f"{source}: 'boxes' must be a float32 n x 4 array")
    n = len(boxes)
    if not isinstance(labels, np.ndarray) or labels.dtype != np.int64 or labels.shape != (n,):
        raise AnnotationError(f"{source}: 'labels' must be an int64 array of length {n}")
    if not isinstance(difficult, np.ndarray) or difficult.dtype != bool or difficult.shape != (n,):
        raise AnnotationError(f"{source}: 'difficult' must be a bool array of length {n}")
    if n:
        if not np.all(np.isfinite(boxes)):
            k = int(np.nonzero(~np.all(np.isfinite(boxes), axis=1))[0][0])
            raise AnnotationError(f"{source}: boxes[{k}] is not finite")
        bad = np.nonzero((boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1]))[0]
        if len(bad):
            k = int(bad[0])
            raise AnnotationError(f"{source}: boxes[{k}] {boxes[k].tolist()} is degenerate (needs x2 > x1, y2 > y1)")
        hi = np.iinfo(np.int64).max if num_classes is None else num_classes
        bad = np.nonzero((labels < 0) | (labels >= hi))[0]
        if len(bad):
            k = int(bad[0])
            raise AnnotationError(f"{source}: labels[{k}] = {int(labels[k])} is out of range")
    return rec


def validate_records(records: Sequence[Record], num_classes: Optional[int] = None) -> None:
    """Validate every record, naming each by its file."""
    for rec in records:
        validate_record(rec, source=str(rec.get("file", "record")) if isinstance(rec, dict) else "record",
                        num_classes=num_classes)


#: Write ``data`` to ``path`` atomically: the package's one helper (codenet_pynq/files.py).
atomic_write_bytes = atomic_write
