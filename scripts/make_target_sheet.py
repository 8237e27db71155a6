"""Render the printable target sheet for the webcam demo from the shapes generator's geometry.

``python scripts/make_target_sheet.py [--out codenet_pynq/assets]`` writes

- ``target_sheet.png`` (A4 landscape at 150 dpi) and ``target_sheet.pdf`` (vector, A4 landscape):
  one shape of each class of the shipped model (circle, square, triangle, star, cross) plus a
  second star, as the generator draws them (its unit polygons and rasteriser, solid fills of
  colours that stand out on the flat background, as in the ``easy`` style), with the class name
  printed small under each;
- ``target_sheet.json``: the polygons (PNG pixels) and class of each shape, the ground truth of
  ``benchmarks/target_sheet.py``.

Run at build time: the runtime only reads the files (it never imports the training package).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path
from typing import Dict, List, Tuple

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from codenet_pynq.training.data.shapes import SHAPES_CLASSES, _rasterize, unit_shape  # noqa: E402

DPI = 150
A4_MM = (297.0, 210.0)  # landscape
#: (class, fill colour BGR, rotation degrees) per cell, row by row (3 x 2)
CELLS: List[Tuple[str, Tuple[int, int, int], float]] = [
    ("circle", (40, 60, 210), 0.0), ("square", (170, 90, 20), 12.0), ("triangle", (30, 150, 40), 0.0),
    ("star", (20, 140, 230), -10.0), ("cross", (140, 40, 150), 8.0), ("star", (90, 90, 90), 20.0),
]
BACKGROUND = (235, 235, 235)


def sheet_geometry() -> Tuple[Tuple[int, int], List[Dict]]:
    """((width, height) in pixels, [{"class", "polygon" (n x 2 pixels), "color"}]) of the sheet."""
    w, h = (round(mm / 25.4 * DPI) for mm in A4_MM)
    margin = 0.06 * h
    cols, rows = 3, 2
    cw, ch = (w - 2 * margin) / cols, (h - 2 * margin) / rows
    side = 0.8 * min(cw, ch)
    shapes = []
    for k, (name, color, deg) in enumerate(CELLS):
        r, c = divmod(k, cols)
        pts = unit_shape(name, math.radians(deg))
        centre = np.array([margin + (c + 0.5) * cw, margin + (r + 0.44) * ch])
        shapes.append({"class": name, "label": SHAPES_CLASSES.index(name), "color": list(color),
                       "polygon": (pts * side + centre).round(2).tolist()})
    return (w, h), shapes


def render_png(size: Tuple[int, int], shapes: List[Dict]) -> np.ndarray:
    w, h = size
    img = np.empty((h, w, 3), np.uint8)
    img[:] = BACKGROUND
    for s in shapes:
        poly = np.asarray(s["polygon"])
        mask, x0, y0 = _rasterize(poly, w, h)
        roi = img[y0:y0 + mask.shape[0], x0:x0 + mask.shape[1]]
        roi[mask.astype(bool)] = s["color"]
        x, y = poly[:, 0].mean(), poly[:, 1].max() + 0.05 * h
        cv2.putText(img, s["class"], (int(x - 40), int(y)), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (80, 80, 80), 2, cv2.LINE_AA)
    cv2.putText(img, "codenet-pynq target sheet: hold it in front of the camera (shipped model: synthetic shapes)",
                (int(0.03 * w), int(0.98 * h)), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (120, 120, 120), 1, cv2.LINE_AA)
    return img


def render_pdf(path: Path, size: Tuple[int, int], shapes: List[Dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Polygon

    w, h = size
    fig = plt.figure(figsize=(A4_MM[0] / 25.4, A4_MM[1] / 25.4))
    ax = fig.add_axes([0, 0, 1, 1])
    ax.set_xlim(0, w)
    ax.set_ylim(h, 0)
    ax.axis("off")
    ax.add_patch(plt.Rectangle((0, 0), w, h, color=np.array(BACKGROUND[::-1]) / 255))
    for s in shapes:
        poly = np.asarray(s["polygon"])
        ax.add_patch(Polygon(poly, closed=True, color=np.array(s["color"][::-1]) / 255, lw=0))
        ax.text(poly[:, 0].mean(), poly[:, 1].max() + 0.03 * h, s["class"], ha="center", va="center", fontsize=12,
                color="0.3")
    ax.text(0.03 * w, 0.975 * h, "codenet-pynq target sheet: hold it in front of the camera "
            "(shipped model: synthetic shapes)", fontsize=8, color="0.45")
    tmp = path.with_name(path.name + ".tmp")
    fig.savefig(tmp, format="pdf", metadata={"CreationDate": None, "Creator": "codenet-pynq"})
    plt.close(fig)
    os.replace(tmp, path)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default=str(ROOT / "codenet_pynq" / "assets"))
    out = Path(p.parse_args().out)
    out.mkdir(parents=True, exist_ok=True)
    size, shapes = sheet_geometry()
    ok, buf = cv2.imencode(".png", render_png(size, shapes))
    if not ok:
        raise RuntimeError("OpenCV cannot encode the PNG")
    for name, data in (("target_sheet.png", buf.tobytes()),
                       ("target_sheet.json", json.dumps({"size": list(size), "dpi": DPI, "shapes": shapes},
                                                        indent=1).encode())):
        tmp = out / f".{name}.tmp"
        tmp.write_bytes(data)
        os.replace(tmp, out / name)
    render_pdf(out / "target_sheet.pdf", size, shapes)
    print(f"wrote {out}/target_sheet.png, .pdf, .json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
