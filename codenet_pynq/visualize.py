"""Drawing detections: OpenCV (for files, video and webcams) and matplotlib (for notebooks).

matplotlib is imported only when :func:`show_detections` is called.
"""

from __future__ import annotations

import colorsys
import math
from typing import Any, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

from .detections import Detections

__all__ = ["class_color", "draw_detections", "show_detections", "overlay_fps"]

Color = Tuple[int, int, int]
DetsLike = Union[Detections, Tuple[np.ndarray, np.ndarray, np.ndarray]]

_GOLDEN = 0.618033988749895


def class_color(label: int) -> Color:
    """A distinct, stable BGR colour for a class index (hues spaced by the golden ratio)."""
    hue = (0.05 + int(label) * _GOLDEN) % 1.0
    sat = 0.85 if (int(label) // 7) % 2 == 0 else 0.6
    r, g, b = colorsys.hsv_to_rgb(hue, sat, 0.95)
    return int(round(b * 255)), int(round(g * 255)), int(round(r * 255))


def _text_color(bg: Color) -> Color:
    b, g, r = bg
    return (0, 0, 0) if 0.299 * r + 0.587 * g + 0.114 * b > 140 else (255, 255, 255)


def _unpack(dets: DetsLike, class_names: Optional[Sequence[str]]):
    if isinstance(dets, Detections):
        boxes, scores, labels = dets.boxes, dets.scores, dets.labels
        names = list(dets.class_names)
    else:
        boxes, scores, labels = (np.asarray(a) for a in dets)
        names = []
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    labels = np.asarray(labels).reshape(-1).astype(np.int64)
    if class_names is not None:
        names = [str(class_names[lab]) if 0 <= lab < len(class_names) else f"class_{lab}"
                 for lab in labels.tolist()]
    elif len(names) != len(labels):
        names = [f"class_{lab}" for lab in labels.tolist()]
    return boxes, scores, labels, names


def _as_bgr(image: np.ndarray) -> np.ndarray:
    img = np.asarray(image)
    if img.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {img.dtype}")
    if img.ndim == 2 or (img.ndim == 3 and img.shape[2] == 1):
        return cv2.cvtColor(img.reshape(img.shape[0], img.shape[1]), cv2.COLOR_GRAY2BGR)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected a BGR H x W x 3 (or grayscale) image, got shape {img.shape}")
    return img.copy()


def _auto_sizes(h: int, w: int) -> Tuple[int, float]:
    side = min(h, w)
    thickness = max(1, int(round(side / 300.0)))
    font_scale = max(0.35, side / 1000.0)
    return thickness, font_scale


def draw_detections(image_bgr: np.ndarray, dets: DetsLike, class_names: Optional[Sequence[str]] = None,
                    min_score: float = 0.0, thickness: Optional[int] = None,
                    font_scale: Optional[float] = None, show_scores: bool = True) -> np.ndarray:
    """Return a copy of ``image_bgr`` with boxes and ``"name score"`` labels drawn.

    ``dets`` is a :class:`Detections` or ``(boxes, scores, labels)`` in image pixels;
    ``class_names`` (indexed by label) overrides the names carried by ``dets``.  Line thickness
    and font size follow the image size unless given.  Each class has its own colour
    (:func:`class_color`).  The input image is never modified.
    """
    out = _as_bgr(image_bgr)
    h, w = out.shape[:2]
    boxes, scores, labels, names = _unpack(dets, class_names)
    auto_t, auto_f = _auto_sizes(h, w)
    t = int(thickness) if thickness else auto_t
    fs = float(font_scale) if font_scale else auto_f
    text_t = max(1, t // 2)
    font = cv2.FONT_HERSHEY_SIMPLEX
    # draw low scores first so the best detections end up on top
    for i in np.argsort(scores, kind="stable"):
        if scores[i] < min_score or not np.all(np.isfinite(boxes[i])):
            continue
        x1, y1, x2, y2 = (int(round(float(np.clip(v, -1e6, 1e6)))) for v in boxes[i])
        color = class_color(int(labels[i]))
        # axis-aligned: no anti-aliasing, so the outline has exactly the class colour
        cv2.rectangle(out, (x1, y1), (x2 - 1 if x2 > x1 else x2, y2 - 1 if y2 > y1 else y2), color, t)
        text = f"{names[i]} {scores[i]:.2f}" if show_scores else names[i]
        (tw, th), base = cv2.getTextSize(text, font, fs, text_t)
        pad = max(1, t)
        lx = min(max(x1, 0), max(w - tw - 2 * pad, 0))
        top = y1 - th - base - 2 * pad
        if top < 0:  # no room above the box: put the label inside it, at its top
            top = max(y1, 0)
        cv2.rectangle(out, (lx, top), (lx + tw + 2 * pad, top + th + base + 2 * pad), color, -1)
        cv2.putText(out, text, (lx + pad, top + pad + th), font, fs, _text_color(color), text_t,
                    lineType=cv2.LINE_AA)
    return out


def show_detections(image: np.ndarray, dets: DetsLike, ax: Optional[Any] = None,
                    class_names: Optional[Sequence[str]] = None, min_score: float = 0.0,
                    title: Optional[str] = None) -> Any:
    """Show a BGR image with detections on a matplotlib axes (created when ``ax`` is None); returns it."""
    import matplotlib.pyplot as plt  # lazy: matplotlib is optional
    from matplotlib.patches import Rectangle

    img = _as_bgr(image)
    h, w = img.shape[:2]
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 8 * h / max(w, 1)))
    ax.imshow(img[:, :, ::-1])
    boxes, scores, labels, names = _unpack(dets, class_names)
    for i in range(len(scores)):
        if scores[i] < min_score or not np.all(np.isfinite(boxes[i])):
            continue
        b, g, r = class_color(int(labels[i]))
        rgb = (r / 255.0, g / 255.0, b / 255.0)
        x1, y1, x2, y2 = (float(v) for v in boxes[i])
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=rgb, linewidth=2))
        ax.text(x1, y1, f"{names[i]} {scores[i]:.2f}", fontsize=9, va="bottom",
                color="black" if sum(rgb) > 1.6 else "white",
                bbox={"facecolor": rgb, "edgecolor": "none", "pad": 1.5, "alpha": 0.85})
    ax.set_xlim(0, w)
    ax.set_ylim(h, 0)
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return ax


def overlay_fps(image: np.ndarray, fps: Optional[float], inplace: bool = False,
                label: str = "fps") -> np.ndarray:
    """Write ``"<fps> fps"`` in the top-left corner; a copy unless ``inplace`` (then ``image`` itself)."""
    out = image if inplace else _as_bgr(image)
    if inplace and (out.dtype != np.uint8 or out.ndim != 3 or out.shape[2] != 3):
        raise ValueError(f"inplace overlay needs a BGR uint8 H x W x 3 image, got {out.dtype} {out.shape}")
    h, w = out.shape[:2]
    t, fs = _auto_sizes(h, w)
    text_t = max(1, t // 2)
    text = f"{fps:.1f} {label}" if fps is not None and math.isfinite(fps) else f"-- {label}"
    font = cv2.FONT_HERSHEY_SIMPLEX
    (tw, th), base = cv2.getTextSize(text, font, fs, text_t)
    pad = 2 * t
    cv2.rectangle(out, (0, 0), (tw + 2 * pad, th + base + 2 * pad), (0, 0, 0), -1)
    cv2.putText(out, text, (pad, pad + th), font, fs, (255, 255, 255), text_t, lineType=cv2.LINE_AA)
    return out
