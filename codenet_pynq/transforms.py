"""CenterNet's affine preprocessing (letterbox to a square input) and its inverse.

Conventions (shared with training, which imports :func:`get_affine_transform`):

* an image of size ``h x w`` has centre ``c = (w / 2, h / 2)`` and scale ``s = max(h, w)``;
* the affine maps the square of side ``s`` centred at ``c`` onto the ``S x S`` network input
  with one uniform factor ``S / s`` (aspect ratio kept); the rest of the input is zero;
* coordinates are continuous pixel coordinates as OpenCV's ``warpAffine`` uses them (pixel
  ``(i, j)`` is the point ``x = j, y = i``); boxes are ``x1, y1, x2, y2`` with ``x2 = x + w``.

The same convention (including CenterNet's ``w / 2`` centre rather than ``(w - 1) / 2``) is used
in both directions, so mapping a box forward and back is exact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

__all__ = [
    "get_affine_transform",
    "affine_transform_points",
    "PreprocessMeta",
    "letterbox_meta",
    "preprocess",
    "boxes_to_image",
]

Size = Union[int, Sequence[int]]


def _size_wh(size: Size) -> Tuple[int, int]:
    flat = np.asarray(size).reshape(-1)
    if flat.size == 1:
        return int(flat[0]), int(flat[0])
    if flat.size != 2:
        raise ValueError(f"output size must be an int or (w, h), got {size!r}")
    return int(flat[0]), int(flat[1])


def get_affine_transform(center: Sequence[float], scale: Union[float, Sequence[float]],
                         output_size: Size, inv: bool = False, rot: float = 0.0,
                         shift: Sequence[float] = (0.0, 0.0)) -> np.ndarray:
    """2 x 3 float64 affine from image pixels to output pixels (or back with ``inv=True``).

    The square of side ``scale`` centred at ``center`` is mapped onto ``output_size`` (an int or
    ``(w, h)``), centred, with the uniform factor ``output_w / scale`` (CenterNet convention: the
    width sets the factor; a sequence ``scale`` uses its first element).  ``rot`` (degrees) rotates
    the source square counter-clockwise about ``center``; ``shift`` moves the source centre by
    ``shift * scale`` (used by training augmentation).  Closed form, equal to CenterNet's
    three-point ``cv2.getAffineTransform`` construction up to float rounding.
    """
    src_w = float(np.asarray(scale, dtype=np.float64).reshape(-1)[0])
    if not (src_w > 0 and math.isfinite(src_w)):
        raise ValueError(f"scale must be a positive finite number, got {scale!r}")
    dst_w, dst_h = _size_wh(output_size)
    cx = float(center[0]) + src_w * float(shift[0])
    cy = float(center[1]) + src_w * float(shift[1])
    f = dst_w / src_w
    theta = math.radians(rot)
    cos, sin = math.cos(theta), math.sin(theta)
    dx, dy = dst_w * 0.5, dst_h * 0.5
    if not inv:
        # dst = f * R(-rot) (src - c) + d
        a = np.array([[f * cos, f * sin], [-f * sin, f * cos]], dtype=np.float64)
        t = np.array([dx, dy]) - a @ np.array([cx, cy])
    else:
        # src = (1 / f) R(rot) (dst - d) + c
        a = np.array([[cos / f, -sin / f], [sin / f, cos / f]], dtype=np.float64)
        t = np.array([cx, cy]) - a @ np.array([dx, dy])
    return np.concatenate([a, t[:, None]], axis=1)


def affine_transform_points(pts: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Apply a 2 x 3 affine ``m`` to points ``pts`` of shape (n, 2); returns float64 (n, 2)."""
    p = np.asarray(pts, dtype=np.float64).reshape(-1, 2)
    m = np.asarray(m, dtype=np.float64)
    return p @ m[:, :2].T + m[:, 2]


@dataclass(frozen=True)
class PreprocessMeta:
    """What preprocessing did to one image: enough to map detections back to its pixels."""

    center: Tuple[float, float]
    scale: float
    input_size: int
    image_size: Tuple[int, int]  # original (h, w)

    @property
    def image_to_input(self) -> np.ndarray:
        """2 x 3 affine from original image pixels to network-input pixels."""
        return get_affine_transform(self.center, self.scale, self.input_size)

    @property
    def input_to_image(self) -> np.ndarray:
        """2 x 3 affine from network-input pixels to original image pixels."""
        return get_affine_transform(self.center, self.scale, self.input_size, inv=True)

    def to_dict(self) -> Dict[str, Any]:
        """JSON-serialisable form."""
        return {"center": [float(v) for v in self.center], "scale": float(self.scale),
                "input_size": int(self.input_size), "image_size": [int(v) for v in self.image_size]}


def letterbox_meta(h: int, w: int, input_size: int) -> PreprocessMeta:
    """The :class:`PreprocessMeta` of an ``h x w`` image for an ``input_size`` square input."""
    h, w, s = int(h), int(w), int(input_size)
    if h <= 0 or w <= 0 or s <= 0:
        raise ValueError(f"image size {h} x {w} and input size {s} must be positive")
    return PreprocessMeta(center=(w / 2.0, h / 2.0), scale=float(max(h, w)), input_size=s,
                          image_size=(h, w))


def preprocess(image_bgr: np.ndarray, input_size: int, out: Optional[np.ndarray] = None,
               interpolation: int = cv2.INTER_LINEAR) -> Tuple[np.ndarray, PreprocessMeta]:
    """Letterbox a BGR ``uint8`` (H, W, 3) image onto a zero ``input_size`` square.

    Returns ``(pixels, meta)``: ``pixels`` is a C-contiguous ``uint8`` (S, S, 3) array (``out``
    itself when given: a contiguous ``uint8`` (S, S, 3) buffer, e.g. a DMA buffer, written in
    place), and ``meta`` maps results back (:func:`boxes_to_image`).
    """
    img = np.asarray(image_bgr)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"preprocess expects a BGR uint8 H x W x 3 image, got {img.dtype} {img.shape}; "
                         "use codenet_pynq.image_io.read_image / to_bgr_u8 to convert")
    meta = letterbox_meta(img.shape[0], img.shape[1], input_size)
    s = meta.input_size
    m = meta.image_to_input
    if out is not None:
        if out.dtype != np.uint8 or out.shape != (s, s, 3) or not out.flags["C_CONTIGUOUS"]:
            raise ValueError(f"out must be a C-contiguous uint8 array of shape {(s, s, 3)}, "
                             f"got {out.dtype} {out.shape}")
        res = cv2.warpAffine(img, m, (s, s), dst=out, flags=interpolation,
                             borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
        if res is not out and not np.shares_memory(res, out):  # defensive: old bindings may copy
            out[...] = res
        return out, meta
    res = cv2.warpAffine(img, m, (s, s), flags=interpolation,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
    return np.ascontiguousarray(res), meta


def boxes_to_image(boxes: np.ndarray, meta: PreprocessMeta, clip: bool = True) -> np.ndarray:
    """Map boxes (n, 4) ``x1, y1, x2, y2`` in network-input pixels to original image pixels.

    With ``clip`` (default) the result is clipped to ``[0, w] x [0, h]``.  Returns float32 (n, 4).
    """
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    m = meta.input_to_image
    out = np.empty_like(b)
    out[:, 0:2] = affine_transform_points(b[:, 0:2], m)
    out[:, 2:4] = affine_transform_points(b[:, 2:4], m)
    if clip:
        h, w = meta.image_size
        np.clip(out[:, 0::2], 0.0, float(w), out=out[:, 0::2])
        np.clip(out[:, 1::2], 0.0, float(h), out=out[:, 1::2])
    return out.astype(np.float32)
