"""Synthetic "shapes" detection dataset: small, fast, deterministic, and hard enough to be useful.

Each image has a textured background (gradient, blotchy noise or flat, plus optional random
lines and pixel noise) and shapes of ``SHAPES_CLASSES`` with random size, aspect ratio,
rotation, colour and fill (solid, stripes, noise). Shapes may overlap and leave the image. Each
box is the pixel bounding box of the whole drawn shape (inside the image), also where a later
shape covers part of it; a shape with too little of its area visible is not drawn at all, so
every drawn shape is annotated.

How hard the images are is a :class:`ShapesStyle`; two presets (:data:`STYLES`):

- ``hard`` (the default): 0-8 shapes from 12 px up to 45 % of the short side, aspect 0.5-2,
  40 % visible at least, clutter lines in half the images, pixel noise in half.
- ``easy``: 0-5 shapes from 20 px up to 50 %, aspect 0.67-1.5, 70 % visible, clutter lines in
  a fifth of the images, lighter noise. The same factors vary, less wildly; the shipped default
  model trains on it (a 2-core CPU budget of about two hours).

CLI: ``python -m codenet_pynq.training.data.shapes --out DIR --train N --val M --seed S [--style easy]``
"""

import argparse
import math
import os
import sys
import zlib
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

from .coco import write_coco_json
from .records import Record, atomic_write_bytes, make_record

SHAPES_CLASSES = ("circle", "square", "triangle", "star", "cross")


@dataclass(frozen=True)
class ShapesStyle:
    """How hard the generated images are."""

    max_objects: int = 8  # shapes per image: 1..max_objects (or none, see empty_prob)
    empty_prob: float = 0.08  # fraction of images without shapes
    min_side: float = 12.0  # smallest longest-side of a shape, pixels
    max_side_fraction: float = 0.45  # largest longest-side, as a fraction of the image's short side
    max_aspect: float = 2.0  # aspect ratio in [1 / max_aspect, max_aspect]
    min_visible: float = 0.4  # a shape is drawn only if at least this fraction of its area is visible
    clutter_prob: float = 0.5  # fraction of images with random clutter lines
    max_clutter_lines: int = 11
    noise_prob: float = 0.5  # fraction of images with pixel noise
    max_noise: int = 15  # pixel noise amplitude, grey levels


STYLES: Dict[str, ShapesStyle] = {
    "hard": ShapesStyle(),
    "easy": ShapesStyle(max_objects=5, min_side=20.0, max_side_fraction=0.5, max_aspect=1.5, min_visible=0.7,
                        clutter_prob=0.2, max_clutter_lines=4, noise_prob=0.3, max_noise=8),
}


def shapes_style(name: str) -> ShapesStyle:
    """The preset called ``name`` (``hard`` or ``easy``)."""
    if name not in STYLES:
        raise ValueError(f"shapes style {name!r} unknown; choose one of {', '.join(STYLES)}")
    return STYLES[name]

SizeSpec = Union[int, Tuple[int, int], Tuple[Tuple[int, int], Tuple[int, int]]]


def _regular(n: int, radii: Sequence[float], start: float = -math.pi / 2) -> np.ndarray:
    ang = start + np.arange(n) * 2 * math.pi / n
    r = np.resize(np.asarray(radii, np.float64), n)
    return np.stack([r * np.cos(ang), r * np.sin(ang)], axis=1)


def _cross(t: float = 0.33) -> np.ndarray:
    return np.array(
        [(-t, -1), (t, -1), (t, -t), (1, -t), (1, t), (t, t), (t, 1), (-t, 1), (-t, t), (-1, t), (-1, -t), (-t, -t)],
        np.float64,
    )


_UNIT_SHAPES = {
    "circle": _regular(64, [1.0]),
    "square": np.array([(-1, -1), (1, -1), (1, 1), (-1, 1)], np.float64),
    "triangle": _regular(3, [1.0]),
    "star": _regular(10, [1.0, 0.42]),
    "cross": _cross(),
}


def unit_shape(name: str, angle: float = 0.0) -> np.ndarray:
    """The unit polygon of class ``name`` rotated by ``angle`` radians, centred on its bounding
    box, its longer side 1 (the aspect kept): for printed layouts (target sheet, cards)."""
    pts = _UNIT_SHAPES[name] @ np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]]).T
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    return (pts - (lo + hi) / 2) / (hi - lo).max()


def _polygon(rng: np.random.Generator, cls: int, width: int, height: int, style: ShapesStyle) -> np.ndarray:
    """Random placement of one shape: polygon vertices in continuous pixel coordinates."""
    pts = _UNIT_SHAPES[SHAPES_CLASSES[cls]]
    if SHAPES_CLASSES[cls] != "circle":
        a = rng.uniform(-math.pi / 6, math.pi / 6)
        rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
        pts = pts @ rot.T
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    pts = (pts - (lo + hi) / 2) / (hi - lo)  # bounding box exactly [-0.5, 0.5]^2
    max_side = max(style.min_side + 1, style.max_side_fraction * min(width, height))
    side = math.exp(rng.uniform(math.log(style.min_side), math.log(max_side)))
    aspect = math.exp(rng.uniform(-math.log(style.max_aspect), math.log(style.max_aspect)))
    bw, bh = (side, side / aspect) if aspect >= 1 else (side * aspect, side)
    cx = rng.uniform(0.3 * bw, width - 0.3 * bw)  # up to 20 % of a shape may leave the image
    cy = rng.uniform(0.3 * bh, height - 0.3 * bh)
    return pts * np.array([bw, bh]) + np.array([cx, cy])


def _rasterize(poly: np.ndarray, width: int, height: int):
    """Mask of a polygon inside the image: (mask uint8, x0, y0) or None when nothing is inside."""
    x0, y0 = max(int(math.floor(poly[:, 0].min())), 0), max(int(math.floor(poly[:, 1].min())), 0)
    x1, y1 = min(int(math.ceil(poly[:, 0].max())), width), min(int(math.ceil(poly[:, 1].max())), height)
    if x1 <= x0 or y1 <= y0:
        return None
    mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
    # pixel (i, j) covers [i, i+1) x [j, j+1); OpenCV puts pixel centres on integers
    fixed = np.round((poly - np.array([x0 + 0.5, y0 + 0.5])) * 16).astype(np.int32)
    cv2.fillPoly(mask, [fixed], 1, lineType=cv2.LINE_8, shift=4)
    return mask, x0, y0


def _background(rng: np.random.Generator, width: int, height: int, style: ShapesStyle) -> np.ndarray:
    kind = rng.integers(3)
    if kind == 0:  # linear gradient between two colours
        c1, c2 = rng.uniform(0, 255, size=(2, 3)).astype(np.float32)
        a = rng.uniform(0, 2 * math.pi)
        xs = np.linspace(0, 1, 9, dtype=np.float32)
        t = math.cos(a) * xs[None, :] + math.sin(a) * xs[:, None]
        t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
        small = c1 + t[:, :, None] * (c2 - c1)
        img = cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)
    elif kind == 1:  # smooth blotches
        gh, gw = rng.integers(2, 7, size=2)
        small = rng.uniform(0, 255, size=(gh, gw, 3)).astype(np.float32)
        img = cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
    else:  # flat
        img = np.empty((height, width, 3), np.float32)
        img[:] = rng.uniform(0, 255, size=3)
    img = np.clip(img, 0, 255).astype(np.uint8)
    if rng.random() < style.clutter_prob:  # random lines as clutter
        for _ in range(rng.integers(min(2, style.max_clutter_lines), style.max_clutter_lines + 1)):
            p = rng.integers(0, [width, height, width, height])
            color = tuple(int(v) for v in rng.integers(0, 256, size=3))
            cv2.line(img, (int(p[0]), int(p[1])), (int(p[2]), int(p[3])), color, int(rng.integers(1, 4)), cv2.LINE_AA)
    return img


def _fill(rng: np.random.Generator, color: np.ndarray, h: int, w: int) -> np.ndarray:
    """A ``h x w x 3`` uint8 texture: solid, stripes or noise around ``color``."""
    kind = rng.integers(3)
    if kind == 0:
        return np.broadcast_to(color.astype(np.uint8), (h, w, 3))
    if kind == 1:
        other = np.clip(color.astype(np.int16) + rng.integers(-120, 121, size=3), 0, 255).astype(np.uint8)
        a = rng.uniform(0, math.pi)
        period = rng.uniform(3.0, max(4.0, max(h, w) / 3.0))
        t = (np.arange(w, dtype=np.float32)[None, :] * math.cos(a) + np.arange(h, dtype=np.float32)[:, None] * math.sin(a))
        sel = (np.floor(t / period).astype(np.int32) & 1).astype(bool)
        return np.where(sel[:, :, None], other, color.astype(np.uint8))
    noise = rng.integers(-50, 51, size=(h, w, 3), dtype=np.int16)
    return np.clip(color.astype(np.int16) + noise, 0, 255).astype(np.uint8)


def _contrasting_color(rng: np.random.Generator, region: np.ndarray) -> np.ndarray:
    """A colour that stands out against the mean of ``region``."""
    mean = region.reshape(-1, 3).mean(axis=0)
    color = rng.integers(0, 256, size=3)
    for _ in range(8):
        if np.abs(color - mean).sum() > 150:
            break
        color = rng.integers(0, 256, size=3)
    return color


def _finish(rng: np.random.Generator, img: np.ndarray, style: ShapesStyle) -> np.ndarray:
    """Whole-image degradations: sensor-like pixel noise, slight blur."""
    if rng.random() < style.noise_prob:
        sigma = int(rng.integers(min(3, style.max_noise), style.max_noise + 1))
        noise = rng.integers(-sigma, sigma + 1, size=img.shape, dtype=np.int16)
        img = np.clip(img.astype(np.int16) + noise, 0, 255).astype(np.uint8)
    if rng.random() < 0.15:
        img = cv2.GaussianBlur(img, (3, 3), 0)
    return img


def make_shapes_image(
    rng: np.random.Generator, width: int, height: int, style: ShapesStyle = STYLES["hard"]
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw one image -> (BGR uint8 image, boxes float32 n x 4, labels int64 n)."""
    img = _background(rng, width, height, style)
    n = 0 if rng.random() < style.empty_prob else int(rng.integers(1, style.max_objects + 1))
    shapes = []
    for _ in range(n):
        cls = int(rng.integers(len(SHAPES_CLASSES)))
        poly = _polygon(rng, cls, width, height, style)
        raster = _rasterize(poly, width, height)
        x, y = poly[:, 0], poly[:, 1]
        area = 0.5 * abs(float(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))
        shapes.append((cls, raster, area))
    # topmost first: keep a shape only if enough of it is visible under the shapes kept above it
    covered = np.zeros((height, width), np.uint8)
    kept = []
    for cls, raster, area in reversed(shapes):
        if raster is None:
            continue
        mask, x0, y0 = raster
        h, w = mask.shape
        under = covered[y0 : y0 + h, x0 : x0 + w]
        visible = int(np.count_nonzero(mask > under))
        if visible < max(style.min_visible * area, 12):
            continue
        np.maximum(under, mask, out=under)
        kept.append((cls, mask, x0, y0))
    boxes, labels = [], []
    for cls, mask, x0, y0 in reversed(kept):  # draw bottom-up
        h, w = mask.shape
        roi = img[y0 : y0 + h, x0 : x0 + w]
        tex = _fill(rng, _contrasting_color(rng, roi), h, w)
        sel = mask.astype(bool)
        roi[sel] = tex[sel]
        ys, xs = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
        boxes.append([x0 + xs[0], y0 + ys[0], x0 + xs[-1] + 1, y0 + ys[-1] + 1])
        labels.append(cls)
    img = _finish(rng, img, style)
    return img, np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(labels, np.int64)


def _sample_size(rng: np.random.Generator, image_size: SizeSpec) -> Tuple[int, int]:
    if isinstance(image_size, (int, np.integer)):
        return int(image_size), int(image_size)
    a, b = image_size
    if isinstance(a, (int, np.integer)) and isinstance(b, (int, np.integer)):
        return int(a), int(b)
    (wmin, wmax), (hmin, hmax) = a, b
    return int(rng.integers(wmin, wmax + 1)), int(rng.integers(hmin, hmax + 1))


def generate_shapes(
    out_dir: str,
    num_images: int,
    image_size: SizeSpec = ((192, 320), (192, 320)),
    seed: int = 0,
    split_name: str = "train",
    ext: str = "jpg",
    progress: bool = False,
    style: Union[str, ShapesStyle] = "hard",
) -> str:
    """Write ``num_images`` images to ``out_dir/<split_name>/`` and ``out_dir/<split_name>.json``.

    ``image_size`` is an int (square), ``(w, h)``, or ``((wmin, wmax), (hmin, hmax))`` for
    random sizes per image. ``style``: a :class:`ShapesStyle` or a preset name. Image ``i``
    depends only on (seed, split_name, style, i). Returns the path of the COCO JSON (file names
    relative to ``out_dir``; load with ``load_coco(path, out_dir)``).
    """
    if isinstance(style, str):
        style = shapes_style(style)
    return write_split(out_dir, split_name, num_images, seed,
                       lambda rng: make_shapes_image(rng, *_sample_size(rng, image_size), style),
                       ext=ext, progress=progress, desc="shapes")


def write_split(out_dir: str, split_name: str, num_images: int, seed: int,
                make: Callable[[np.random.Generator], Tuple[np.ndarray, np.ndarray, np.ndarray]],
                ext: str = "jpg", progress: bool = False, desc: str = "images",
                class_names: Sequence[str] = SHAPES_CLASSES) -> str:
    """Write ``num_images`` images ``make(rng) -> (image, boxes, labels)`` to
    ``out_dir/<split_name>/`` and their COCO JSON to ``out_dir/<split_name>.json`` (atomically).
    Image ``i`` gets ``rng = default_rng([seed, crc32(split_name), i])``. Returns the JSON's path."""
    if ext not in ("jpg", "png"):
        raise ValueError(f"ext must be 'jpg' or 'png', got {ext!r}")
    from tqdm import tqdm

    split_key = zlib.crc32(split_name.encode("utf-8"))
    image_dir = os.path.join(out_dir, split_name)
    os.makedirs(image_dir, exist_ok=True)
    params = [cv2.IMWRITE_JPEG_QUALITY, 92] if ext == "jpg" else [cv2.IMWRITE_PNG_COMPRESSION, 1]
    records: List[Record] = []
    for i in tqdm(range(num_images), desc=f"{desc} {split_name}", disable=not progress, unit="img"):
        rng = np.random.default_rng([int(seed), split_key, i])
        img, boxes, labels = make(rng)
        height, width = img.shape[:2]
        path = os.path.join(image_dir, f"{i:06d}.{ext}")
        ok, buf = cv2.imencode(f".{ext}", img, params)
        if not ok:
            raise RuntimeError(f"{path}: OpenCV could not encode the image")
        atomic_write_bytes(path, buf.tobytes())
        records.append(make_record(path, i + 1, width, height, boxes, labels))
    json_path = os.path.join(out_dir, f"{split_name}.json")
    return write_coco_json(records, class_names, json_path, image_root=out_dir)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command line entry point; returns the exit status."""
    p = argparse.ArgumentParser(description="Generate the synthetic shapes detection dataset (COCO JSON).")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--train", type=int, default=2000, help="number of training images")
    p.add_argument("--val", type=int, default=500, help="number of validation images")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, nargs=2, metavar=("W", "H"), help="fixed image size")
    p.add_argument("--size-range", type=int, nargs=2, metavar=("MIN", "MAX"), default=(192, 320),
                   help="random width and height in [MIN, MAX] (default 192 320)")
    p.add_argument("--format", choices=("jpg", "png"), default="jpg")
    p.add_argument("--style", choices=sorted(STYLES), default="hard",
                   help="how hard the images are (default hard; the shipped model uses easy)")
    args = p.parse_args(argv)
    if args.train < 0 or args.val < 0:
        p.error("--train and --val must be >= 0")
    lo, hi = args.size_range
    if args.size is None and not 16 <= lo <= hi:
        p.error("--size-range needs 16 <= MIN <= MAX")
    size: SizeSpec = tuple(args.size) if args.size else ((lo, hi), (lo, hi))
    for split, n in (("train", args.train), ("val", args.val)):
        if n:
            path = generate_shapes(args.out, n, size, args.seed, split, args.format, progress=True, style=args.style)
            print(f"{split}: {n} images -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
