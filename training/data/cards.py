"""Camera photos of printed cards of shapes: training data for a model used in front of a camera.

The shapes model's live demo shows it a printed target sheet (``codenet_pynq/assets``). The
generator's own images (:mod:`.shapes`) put shapes straight on a textured background; a camera
sees them printed on paper, with captions, at an angle, lit unevenly, blurred and compressed.
Each card image here is such a photo, random in every respect the sheet is fixed in:

- a card (paper white to pale tint, aspect 1.0-1.6) with a grid of 1-3 rows x 1-4 columns, each
  cell holding a shape of a random class (the generator's unit polygons, rotated, solid fill in
  a colour that stands out on paper) or left empty, most with a printed caption underneath (a
  class name or other word: text is no cue) and sometimes a footer line;
- the card through a random homography into the frame (:func:`.camera.card_homography`: 40 to
  110 % of the frame width, up to 25 degrees rotated, tilted) over the generator's cluttered
  backgrounds;
- lighting, blur, noise and JPEG (:mod:`.camera`) on most frames.

Boxes are the exact ones: each shape's polygon through the same homography, clipped to the frame
(:func:`.camera.visible_boxes`, the target-sheet benchmark's ground truth too). The target sheet
itself is never drawn: its layout, colours and angles are held out for the benchmark.

CLI: ``python -m codenet_pynq.training.data.cards --out data/shapes_cards --train 3000 --val 200``
"""

from __future__ import annotations

import argparse
import math
import sys
from typing import Optional, Sequence, Tuple

import cv2
import numpy as np

from .camera import card_homography, degrade, lighting, place_card, visible_boxes
from .shapes import SHAPES_CLASSES, STYLES, _background, _rasterize, unit_shape, write_split

#: frame sizes (width, height) the photos are taken at
FRAMES = ((640, 480), (480, 360), (480, 480))
#: words printed under shapes: the class names and others, in random order (never a cue)
WORDS = SHAPES_CLASSES + ("shape", "codenet", "pynq", "target", "label", "demo")
CARD_WIDTH = 720  # card pixels before the homography (about a frame's width)


def _paper(rng: np.random.Generator) -> np.ndarray:
    """A paper colour: near white, sometimes a pale tint."""
    base = rng.uniform(200, 250)
    return np.clip(base + rng.uniform(-12, 12, size=3) * (rng.random() < 0.4), 0, 255)


def _ink(rng: np.random.Generator, paper: np.ndarray) -> np.ndarray:
    """A saturated print colour that stands out on ``paper``."""
    for _ in range(16):
        c = rng.integers(0, 256, size=3)
        if np.abs(c - paper).sum() > 180:
            return c
    return np.array([40, 40, 40])


def make_card(rng: np.random.Generator) -> Tuple[np.ndarray, list, np.ndarray]:
    """A flat card: (uint8 BGR image, polygons in card pixels, labels)."""
    cw = CARD_WIDTH
    ch = int(round(cw / rng.uniform(1.0, 1.6)))
    paper = _paper(rng)
    card = np.empty((ch, cw, 3), np.uint8)
    card[:] = paper
    rows, cols = int(rng.integers(1, 4)), int(rng.integers(1, 5))
    margin = rng.uniform(0.03, 0.08) * ch
    cell_w, cell_h = (cw - 2 * margin) / cols, (ch - 2 * margin) / rows
    polys, labels = [], []
    for r in range(rows):
        for c in range(cols):
            if rng.random() < 0.15:
                continue
            cls = int(rng.integers(len(SHAPES_CLASSES)))
            pts = unit_shape(SHAPES_CLASSES[cls], rng.uniform(-math.pi / 6, math.pi / 6))
            side = rng.uniform(0.55, 0.8) * min(cell_w, cell_h)
            centre = np.array([margin + (c + 0.5) * cell_w, margin + (r + 0.44) * cell_h])
            centre += rng.uniform(-0.05, 0.05, size=2) * [cell_w, cell_h]
            poly = pts * side + centre
            raster = _rasterize(poly, cw, ch)
            if raster is None:
                continue
            mask, x0, y0 = raster
            roi = card[y0:y0 + mask.shape[0], x0:x0 + mask.shape[1]]
            roi[mask.astype(bool)] = _ink(rng, paper)
            if rng.random() < 0.8:
                word = WORDS[int(rng.integers(len(WORDS)))]
                scale = side / 220
                ty = int(min(poly[:, 1].max() + 0.06 * cell_h + 20 * scale, ch - 2))
                cv2.putText(card, word, (int(centre[0] - 0.25 * side), ty), cv2.FONT_HERSHEY_SIMPLEX, scale,
                            tuple(int(v) for v in rng.integers(40, 140, size=3)), max(1, int(2 * scale)), cv2.LINE_AA)
            polys.append(poly)
            labels.append(cls)
    if rng.random() < 0.5:
        cv2.putText(card, "codenet-pynq card: shapes for the camera", (int(0.03 * cw), int(0.97 * ch)),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.45, (110, 110, 110), 1, cv2.LINE_AA)
    return card, polys, np.asarray(labels, np.int64)


def make_card_image(rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One camera photo of a random card -> (BGR uint8 image, boxes float32 n x 4, labels int64 n)."""
    fw, fh = FRAMES[int(rng.integers(len(FRAMES)))]
    card, polys, labels = make_card(rng)
    m = card_homography(rng, card.shape[1], card.shape[0], fw, fh, width=(0.4, 1.1), max_deg=25.0,
                        max_tilt=0.35, shift=0.25)
    frame = _background(rng, fw, fh, STYLES["hard"])
    place_card(frame, card, m, cv2.INTER_AREA)
    boxes, kept = visible_boxes(polys, m, fw, fh)
    if rng.random() < 0.8:
        frame = lighting(rng, frame)
    if rng.random() < 0.8:
        frame = degrade(rng, frame)
    return frame, boxes, labels[kept]


def generate_cards(out_dir: str, num_images: int, seed: int = 0, split_name: str = "train",
                   progress: bool = False) -> str:
    """Write ``num_images`` card photos and their COCO JSON (``out_dir/<split_name>.json``, the
    shapes classes); image ``i`` depends only on (seed, split_name, i). Returns the JSON's path."""
    return write_split(out_dir, split_name, num_images, seed, make_card_image, progress=progress, desc="cards")


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command line entry point; returns the exit status."""
    p = argparse.ArgumentParser(description="Generate camera photos of printed cards of shapes (COCO JSON).")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--train", type=int, default=3000, help="number of training images")
    p.add_argument("--val", type=int, default=200, help="number of validation images")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.train < 0 or args.val < 0:
        p.error("--train and --val must be >= 0")
    for split, n in (("train", args.train), ("val", args.val)):
        if n:
            print(f"{split}: {n} images -> {generate_cards(args.out, n, args.seed, split, progress=True)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
