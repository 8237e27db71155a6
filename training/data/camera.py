"""What a camera adds to an image: perspective, lighting, blur, sensor noise, JPEG.

Used as a training augmentation (``data.aug_camera``: the probability per sample, default 0), by
the card renders of :mod:`.cards` (training data) and by ``benchmarks/target_sheet.py`` to render
camera-simulated photos of the printable target sheet, so the evaluation set and the training
data share one implementation (:func:`card_homography`, :func:`visible_boxes`).
"""

from __future__ import annotations

import math
from typing import Sequence, Tuple

import cv2
import numpy as np

__all__ = ["camera_augment", "card_homography", "degrade", "lighting", "perspective", "place_card",
           "visible_boxes"]


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


def card_homography(rng: np.random.Generator, sw: int, sh: int, frame_w: int, frame_h: int,
                    width: Tuple[float, float] = (0.6, 1.1), max_deg: float = 15.0, max_tilt: float = 0.25,
                    shift: float = 0.2) -> np.ndarray:
    """A random homography of a flat ``sw x sh`` card (a printed sheet) into a ``frame_w x frame_h``
    camera frame: its width ``width`` times the frame's, rotated by up to ``max_deg`` degrees,
    tilted (the corners of one side drawn together by up to ``max_tilt / 2``), its centre moved
    by up to ``shift`` of the frame from the middle."""
    s = rng.uniform(*width) * frame_w / sw
    a = math.radians(rng.uniform(-max_deg, max_deg))
    corners = np.array([[0, 0], [sw, 0], [sw, sh], [0, sh]], np.float64) - [sw / 2, sh / 2]
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    pts = corners @ rot.T * s
    tx, ty = rng.uniform(-max_tilt, max_tilt, size=2)
    pts[:, 0] *= 1 + tx * np.sign(pts[:, 1]) * 0.5
    pts[:, 1] *= 1 + ty * np.sign(pts[:, 0]) * 0.5
    centre = np.array([frame_w / 2, frame_h / 2]) + rng.uniform(-shift, shift, size=2) * [frame_w, frame_h]
    dst = (pts + centre).astype(np.float32)
    src = (corners + [sw / 2, sh / 2]).astype(np.float32)
    return cv2.getPerspectiveTransform(src, dst)


def place_card(frame: np.ndarray, card: np.ndarray, m: np.ndarray, interpolation: int = cv2.INTER_LINEAR) -> None:
    """Paint ``card`` (uint8 BGR) through homography ``m`` over ``frame`` (in place)."""
    fh, fw = frame.shape[:2]
    ch, cw = card.shape[:2]
    warped = cv2.warpPerspective(card, m, (fw, fh), flags=interpolation)
    mask = cv2.warpPerspective(np.full((ch, cw), 255, np.uint8), m, (fw, fh), flags=cv2.INTER_NEAREST)
    frame[mask > 0] = warped[mask > 0]


def visible_boxes(polygons: Sequence[np.ndarray], m: np.ndarray, frame_w: int, frame_h: int,
                  min_visible: float = 0.6) -> Tuple[np.ndarray, np.ndarray]:
    """Polygons (card pixels) through homography ``m``: (x1 y1 x2 y2 boxes of their vertices
    clipped to the frame, kept indices). A polygon whose clipped outline keeps less than
    ``min_visible`` of its area is left out (mostly outside the frame)."""
    boxes, kept = [], []
    for i, poly in enumerate(polygons):
        q = cv2.perspectiveTransform(np.asarray(poly, np.float32)[None], m)[0]
        area = abs(cv2.contourArea(q))
        clipped = np.clip(q, [0, 0], [frame_w, frame_h]).astype(np.float32)
        if area <= 0 or abs(cv2.contourArea(clipped)) < min_visible * area:
            continue
        boxes.append([*clipped.min(axis=0), *clipped.max(axis=0)])
        kept.append(i)
    return np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(kept, np.int64)


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
