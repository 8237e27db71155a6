"""CenterNet training augmentation on BGR images: centre affine, flip, colour and PCA lighting.

The letterbox affine itself is ``codenet_pynq.transforms.get_affine_transform`` (the one
implementation shared with inference); this module only chooses its centre and scale.
"""

from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

import cv2
import numpy as np

from codenet_pynq.transforms import affine_transform_points, get_affine_transform

# ImageNet PCA of RGB pixel colours (AlexNet "lighting" noise, values as used by CenterNet),
# for pixels scaled to [0, 1]. Columns of the eigenvector matrix are the eigenvectors; rows are
# the R, G, B components, so the rows are reversed below to act on BGR images.
LIGHTING_EIGVAL = np.array([0.2141788, 0.01817699, 0.00268045], np.float64)
LIGHTING_EIGVEC_RGB = np.array(
    [
        [-0.58752847, -0.69563484, 0.41340352],
        [-0.5832747, 0.00994535, -0.81221408],
        [-0.56089297, 0.71832671, 0.44959835],
    ],
    np.float64,
)
_EIGVEC_BGR = LIGHTING_EIGVEC_RGB[::-1]
_GRAY_BGR = np.array([0.114, 0.587, 0.299], np.float32)


@dataclass
class AugmentConfig:
    """Training augmentation settings (defaults: the seed's CenterNet augmentation)."""

    scale_range: Tuple[float, float] = (0.6, 1.4)
    shift: float = 0.2
    flip_prob: float = 0.5
    color: bool = True
    color_strength: float = 0.4
    lighting_std: float = 0.1
    #: probability of a camera view per sample (perspective, lighting, blur, noise, JPEG;
    #: training/data/camera.py); 0 keeps the seed's augmentation
    camera_prob: float = 0.0


def transform_boxes(boxes: np.ndarray, M: np.ndarray) -> np.ndarray:
    """Map x1 y1 x2 y2 boxes through a 2x3 affine: all four corners, then min/max."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    corners = boxes[:, [0, 1, 2, 1, 2, 3, 0, 3]].reshape(-1, 2)
    mapped = affine_transform_points(corners, M).reshape(-1, 4, 2)
    out = np.concatenate([mapped.min(axis=1), mapped.max(axis=1)], axis=1)
    return out.astype(np.float32)


def clip_boxes(boxes: np.ndarray, width: float, height: float, min_size: float = 1.0) -> Tuple[np.ndarray, np.ndarray]:
    """Clip boxes to ``[0, width] x [0, height]``; return (clipped boxes, indices kept).

    Boxes narrower or shorter than ``min_size`` after clipping are dropped.
    """
    b = np.asarray(boxes, np.float32).reshape(-1, 4).copy()
    b[:, [0, 2]] = np.clip(b[:, [0, 2]], 0.0, width)
    b[:, [1, 3]] = np.clip(b[:, [1, 3]], 0.0, height)
    keep = np.nonzero((b[:, 2] - b[:, 0] >= min_size) & (b[:, 3] - b[:, 1] >= min_size))[0]
    return b[keep], keep


def flip_boxes(boxes: np.ndarray, width: int) -> np.ndarray:
    """Mirror boxes for a horizontally flipped image of ``width`` pixels."""
    b = np.asarray(boxes, np.float32).reshape(-1, 4).copy()
    b[:, [0, 2]] = width - b[:, [2, 0]]
    return b


def _grayscale(img: np.ndarray) -> np.ndarray:
    return img @ _GRAY_BGR


def color_augment(img: np.ndarray, rng: np.random.Generator, strength: float = 0.4, lighting_std: float = 0.1) -> np.ndarray:
    """Brightness, contrast, saturation (factors 1 +- strength, random order), then PCA lighting.

    ``img`` is float32 BGR in 0..255 (modified in place and returned, clipped to 0..255).
    """
    ops = ["brightness", "contrast", "saturation"]
    for k in rng.permutation(3):
        alpha = np.float32(1.0 + rng.uniform(-strength, strength))
        op = ops[int(k)]
        if op == "brightness":
            img *= alpha
        elif op == "contrast":
            mean = np.float32(_grayscale(img).mean())
            img *= alpha
            img += mean * (1 - alpha)
        else:
            gray = _grayscale(img)
            img *= alpha
            img += (gray * (1 - alpha))[:, :, None]
    if lighting_std > 0:
        alpha = rng.normal(0.0, lighting_std, size=3)
        img += (255.0 * (_EIGVEC_BGR @ (LIGHTING_EIGVAL * alpha))).astype(np.float32)
    np.clip(img, 0.0, 255.0, out=img)
    return img


def random_center_scale(
    rng: np.random.Generator,
    center: np.ndarray,
    scale: float,
    scale_range: Tuple[float, float] = (0.6, 1.4),
    shift: float = 0.2,
) -> Tuple[np.ndarray, float]:
    """Random scale in ``scale_range`` and a centre shift of up to ``+-shift * scale`` per axis."""
    s = float(scale) * float(rng.uniform(*scale_range))
    c = np.asarray(center, np.float64) + s * rng.uniform(-shift, shift, size=2)
    return c, s


def warp(image: np.ndarray, center: np.ndarray, scale: float, size: int) -> np.ndarray:
    """Affine-warp ``image`` to ``size x size`` (bilinear, zero border); keeps the dtype."""
    M = get_affine_transform(np.asarray(center, np.float64), float(scale), output_size=(size, size))
    return cv2.warpAffine(image, M, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def prepare_sample(
    image: np.ndarray,
    boxes: np.ndarray,
    input_size: int,
    down_ratio: int = 4,
    rng: Optional[np.random.Generator] = None,
    config: Optional[AugmentConfig] = None,
) -> Dict[str, Any]:
    """Letterbox (``rng`` None) or randomly augment one BGR uint8 image and its boxes.

    Returns ``image`` (S x S x 3 float32 BGR, 0..255, zero border), ``boxes_out`` (boxes in
    output-map pixels, clipped, those under 1 px dropped), ``keep`` (indices of the kept
    input boxes), ``center``, ``scale`` and ``flipped``.
    """
    h, w = image.shape[:2]
    center = np.array([w / 2.0, h / 2.0], np.float64)
    scale = float(max(h, w))
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    flipped = False
    keep_in = np.arange(len(boxes))
    if rng is not None:
        cfg = config or AugmentConfig()
        if cfg.camera_prob > 0 and rng.random() < cfg.camera_prob:
            from .camera import camera_augment

            image, boxes, keep_in = camera_augment(rng, np.ascontiguousarray(image, np.uint8), boxes)
        center, scale = random_center_scale(rng, center, scale, cfg.scale_range, cfg.shift)
        if rng.random() < cfg.flip_prob:
            flipped = True
            image = image[:, ::-1]
            boxes = flip_boxes(boxes, w)
            center[0] = w - center[0]
        img = np.ascontiguousarray(image, dtype=np.float32)
        if cfg.color:
            # before the warp, so that the letterbox border stays exactly 0 as at inference
            color_augment(img, rng, cfg.color_strength, cfg.lighting_std)
    else:
        img = image
    out = warp(img, center, scale, input_size).astype(np.float32, copy=False)
    out_size = input_size // down_ratio
    M_out = get_affine_transform(center, scale, output_size=(out_size, out_size))
    boxes_out, keep = clip_boxes(transform_boxes(boxes, M_out), out_size, out_size, 1.0)
    return {
        "image": out,
        "boxes_out": boxes_out,
        "keep": keep_in[keep],
        "center": center,
        "scale": scale,
        "flipped": flipped,
    }
