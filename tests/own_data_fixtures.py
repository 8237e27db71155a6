"""A tiny labelImg-style VOC dataset written by the tests: 2 custom classes, mixed image files.

``write_dataset(root)`` writes ``root/Annotations/*.xml`` and ``root/JPEGImages`` with ``.jpg``,
``.JPG`` and ``.png`` files and one phone photo stored sideways with EXIF orientation 6, annotated
on its stored pixels (as labelImg does). No ImageSets: the tests write them with the split command.
"""

from __future__ import annotations

import os
from typing import Dict, List, Tuple

import cv2
import numpy as np

CLASSES = ["kayak", "heron"]
COLORS = {"kayak": (0, 140, 255), "heron": (255, 255, 255)}
ROTATED_ID = "img_005"

Box = Tuple[str, int, int, int, int]  # name, xmin, ymin, xmax, ymax (VOC, 1-based inclusive)


def voc_xml(filename: str, size: Tuple[int, int], objects: List[Box], path: str = "") -> str:
    """A labelImg-like annotation (Windows path included)."""
    objs = "".join(
        f"<object><name>{n}</name><pose>Unspecified</pose><truncated>0</truncated><difficult>0</difficult>"
        f"<bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>"
        for n, x1, y1, x2, y2 in objects)
    w, h = size
    path = path or "C:\\Users\\me\\data\\" + filename
    return (f"<annotation><folder>JPEGImages</folder><filename>{filename}</filename>"
            f"<path>{path}</path><source><database>Unknown</database></source>"
            f"<size><width>{w}</width><height>{h}</height><depth>3</depth></size><segmented>0</segmented>"
            f"{objs}</annotation>")


def _draw(size: Tuple[int, int], objects: List[Box]) -> np.ndarray:
    w, h = size
    img = np.full((h, w, 3), 60, np.uint8)
    for n, x1, y1, x2, y2 in objects:
        cv2.rectangle(img, (x1 - 1, y1 - 1), (x2 - 1, y2 - 1), COLORS[n], -1)
    return img


def write_exif_jpeg(path: str, img: np.ndarray, orientation: int) -> None:
    """Write ``img`` (BGR, stored pixels) as a JPEG whose EXIF says ``orientation``."""
    from PIL import Image

    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(img[:, :, ::-1]).save(path, format="JPEG", quality=95, exif=exif.tobytes())


def write_dataset(root: str, n: int = 12) -> Dict[str, List[Box]]:
    """Write the dataset; returns ``{image id: objects}``."""
    os.makedirs(os.path.join(root, "Annotations"), exist_ok=True)
    os.makedirs(os.path.join(root, "JPEGImages"), exist_ok=True)
    rng = np.random.default_rng(0)
    out = {}
    for i in range(n):
        image_id = f"img_{i:03d}"
        size = (64, 48)
        objects: List[Box] = []
        for k in range(1 + i % 2):
            name = CLASSES[(i + k) % 2]
            x1, y1 = int(rng.integers(1, 30)), int(rng.integers(1, 20))
            objects.append((name, x1, y1, x1 + int(rng.integers(12, 30)), y1 + int(rng.integers(10, 26))))
        img = _draw(size, objects)
        ext = (".jpg", ".JPG", ".png")[i % 3]
        if image_id == ROTATED_ID:
            write_exif_jpeg(os.path.join(root, "JPEGImages", image_id + ".jpg"), img, 6)
            ext = ".jpg"
        elif ext == ".png":
            cv2.imwrite(os.path.join(root, "JPEGImages", image_id + ext), img)
        else:
            ok, enc = cv2.imencode(".jpg", img)
            with open(os.path.join(root, "JPEGImages", image_id + ext), "wb") as f:
                f.write(enc.tobytes())
        with open(os.path.join(root, "Annotations", image_id + ".xml"), "w", encoding="utf-8") as f:
            f.write(voc_xml(image_id + ext, size, objects))
        out[image_id] = objects
    return out
