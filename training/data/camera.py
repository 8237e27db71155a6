"""What a camera adds to an image: perspective, lighting, blur, sensor noise, JPEG.

Used as a training augmentation (``data.aug_camera``: the probability per sample, default 0) and
by ``benchmarks/target_sheet.py`` to render camera-simulated photos of the printable target
sheet, so the evaluation set and the training augmentation share one implementation.
"""

from __future__ import annotations

import math
from typing import Tuple

import cv2
import numpy as np

__all__ = ["camera_augment", "degrade", "lighting", "perspective"]


def lighting(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    """Gain, offset, a colour cast and a brightness gradient across the frame (uint8 BGR in and out)."""
    h, w = img.shape[:2]
    f = img.astype(np.float32)
    gain, offset = rng.uniform(0.55, 1.25), rng.uniform(-25, 25)
    cast = rng.uniform(0.85, 1.15, size=3).astype(np.float32)
    a = rng.uniform(0, 2 * math.pi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    grad = 1 + rng.uniform(0.1, 0.4) * ((xx / w - 0.5) * math.cos(a) + (yy / h - 0.5) * math.sin(a))
    return np.clip(f * gain * cast * grad[..., None] + offset, 0, 255).astype(np.uint8)


def degrade(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    """Gaussian or motion blur, sensor noise, then JPEG compression (uint8 BGR in and out)."""
    if rng.random() < 0.5:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.5, 2.0))
    else:  # motion blur along a random direction
        k = int(rng.integers(3, 10))
        kern = np.zeros((k, k), np.float32)
        kern[k // 2, :] = 1.0 / k
        rot = cv2.getRotationMatrix2D((k / 2 - 0.5, k / 2 - 0.5), float(rng.uniform(0, 180)), 1.0)
        kern = cv2.warpAffine(kern, rot, (k, k))
        img = cv2.filter2D(img, -1, kern / max(float(kern.sum()), 1e-6))
    sigma = rng.uniform(2, 10)
    img = np.clip(img.astype(np.float32) + rng.normal(0, sigma, img.shape), 0, 255).astype(np.uint8)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(35, 90))])
    return cv2.imdecode(buf, cv2.IMREAD_COLOR) if ok else img


def perspective(rng: np.random.Generator, w: int, h: int, strength: float = 0.12) -> np.ndarray:
    """A random 3x3 homography of a w x h image onto itself: each corner moves by up to
    ``strength`` of the image size (a sheet or scene seen at an angle)."""
    src = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float32)
    jitter = rng.uniform(-strength, strength, size=(4, 2)) * [w, h]
    return cv2.getPerspectiveTransform(src, (src + jitter).astype(np.float32))


def _warp_boxes(boxes: np.ndarray, m: np.ndarray, w: int, h: int) -> Tuple[np.ndarray, np.ndarray]:
    """Boxes through a homography (corners, then min/max), clipped; (boxes, kept indices)."""
    if len(boxes) == 0:
        return boxes.reshape(0, 4), np.zeros(0, np.int64)
    x1, y1, x2, y2 = boxes.T
    corners = np.stack([np.stack([x1, y1], 1), np.stack([x2, y1], 1), np.stack([x2, y2], 1),
                        np.stack([x1, y2], 1)], 1).astype(np.float32)
    pts = cv2.perspectiveTransform(corners.reshape(-1, 1, 2), m).reshape(-1, 4, 2)
    out = np.concatenate([pts.min(1), pts.max(1)], 1)
    out[:, [0, 2]] = out[:, [0, 2]].clip(0, w)
    out[:, [1, 3]] = out[:, [1, 3]].clip(0, h)
    keep = np.flatnonzero((out[:, 2] - out[:, 0] >= 1) & (out[:, 3] - out[:, 1] >= 1))
    return out[keep].astype(np.float32), keep


def camera_augment(rng: np.random.Generator, image: np.ndarray, boxes: np.ndarray
                   ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One camera-like view of a uint8 BGR image and its x1 y1 x2 y2 boxes: (image, boxes, kept
    indices).  Perspective (boxes follow), then lighting, blur, noise and JPEG."""
    h, w = image.shape[:2]
    m = perspective(rng, w, h)
    img = cv2.warpPerspective(image, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    boxes, keep = _warp_boxes(np.asarray(boxes, np.float32).reshape(-1, 4), m, w, h)
    return degrade(rng, lighting(rng, img)), boxes, keep
