"""Image files of an annotated dataset: lookup by id (any extension and case), header size and EXIF.

The runtime reader (:func:`codenet_pynq.image_io.read_image`) turns JPEG photos upright by their
EXIF orientation; the model therefore sees the *oriented* pixels. Annotation tools differ: labelImg
draws on the stored pixels, others on the upright image. :func:`oriented_boxes` brings the boxes
into the frame the model sees, deciding from the annotated image size which frame they describe.
"""

from __future__ import annotations

import os
from typing import Dict, List, Tuple

import numpy as np

from codenet_pynq.errors import format_message
from codenet_pynq.image_io import IMAGE_EXTENSIONS

from .records import AnnotationError

__all__ = ["ImageFolder", "ImageInfo", "image_info", "oriented_boxes", "oriented_size"]

#: Extensions looked up for an image id, in this order when a folder holds several (lower case).
LOOKUP_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".jpe")

ImageInfo = Tuple[int, int, int, bool]  # stored width, stored height, EXIF orientation (1..8), oriented on read


class ImageFolder:
    """The image files of one or more folders, indexed by file stem (extension case-insensitive)."""

    def __init__(self, folders: List[str]):
        self.folders = [f for f in folders if os.path.isdir(f)]
        self._index: Dict[str, List[str]] = {}
        for folder in self.folders:
            for name in sorted(os.listdir(folder)):
                stem, ext = os.path.splitext(name)
                if ext.lower() in IMAGE_EXTENSIONS and not name.startswith("."):
                    self._index.setdefault(stem, []).append(os.path.join(folder, name))

    def find(self, image_id: str, source: str) -> str:
        """The file of ``image_id``; AnnotationError (naming ``source``) when none or several match."""
        found = self._index.get(image_id, [])
        if not found:
            where = " or ".join(self.folders) or "(no image folder exists)"
            raise AnnotationError(format_message(
                source, f"no image file for id '{image_id}' in {where} (looked for {image_id}.jpg/.jpeg/.png/... "
                "in any letter case)", "add the image, or remove the id from the image set "
                "(or set data.bad_images: skip to leave such ids out and count them)"))
        if len(found) > 1:
            raise AnnotationError(format_message(
                source, f"several image files for id '{image_id}': {', '.join(found)}",
                "keep one image per id (rename or move the others)"))
        return found[0]


def image_info(path: str, source: str) -> ImageInfo:
    """(stored width, stored height, EXIF orientation, whether the runtime reader applies it) from the header.

    Only the header is read. AnnotationError, naming the image and ``source``, when the file is
    empty or is not an image.
    """
    from PIL import Image, UnidentifiedImageError

    if os.path.getsize(path) == 0:
        raise AnnotationError(format_message(path, f"the image file of {source} is empty (0 bytes)",
                                             "copy the image again (or set data.bad_images: skip)"))
    try:
        with Image.open(path) as im:
            w, h = im.size
            fmt = im.format
            orientation = 1
            if fmt == "JPEG":  # the runtime reader orients JPEG only (codenet_pynq.image_io)
                try:
                    orientation = int(im.getexif().get(0x0112, 1) or 1)
                except Exception:  # a damaged EXIF block: OpenCV ignores it as well
                    orientation = 1
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise AnnotationError(format_message(
            path, f"the image file of {source} cannot be read as an image ({e})",
            "check that it opens in an image viewer, or replace it (or set data.bad_images: skip)")) from None
    if orientation not in range(1, 9):
        orientation = 1
    return int(w), int(h), orientation, fmt == "JPEG"


def oriented_size(width: int, height: int, orientation: int) -> Tuple[int, int]:
    """Size of the upright image (orientations 5..8 swap width and height)."""
    return (height, width) if orientation >= 5 else (width, height)


def _map_points(x: np.ndarray, y: np.ndarray, orientation: int, w: float, h: float) -> Tuple[np.ndarray, np.ndarray]:
    """Continuous stored-image coordinates -> upright-image coordinates (EXIF orientation 1..8)."""
    if orientation == 2:
        return w - x, y
    if orientation == 3:
        return w - x, h - y
    if orientation == 4:
        return x, h - y
    if orientation == 5:
        return y, x
    if orientation == 6:
        return h - y, x
    if orientation == 7:
        return h - y, w - x
    if orientation == 8:
        return y, w - x
    return x, y


def oriented_boxes(boxes: np.ndarray, info: ImageInfo, annotated_size: Tuple[int, int], frame: str,
                   source: str) -> Tuple[np.ndarray, Tuple[int, int]]:
    """Boxes in the pixels the model sees, and that image's (width, height).

    ``annotated_size``: the annotation's (width, height). ``frame``: ``auto`` (the size decides:
    the stored size means stored pixels, the upright size upright pixels; when both agree, as for
    a 180-degree turn, the stored pixels are assumed, as labelImg draws them), ``stored`` or
    ``upright``. A size that fits neither image is an AnnotationError naming ``source``.
    """
    w, h, orientation, applied = info
    seen = oriented_size(w, h, orientation) if applied else (w, h)
    if not applied or orientation == 1:
        if tuple(annotated_size) != (w, h):
            raise AnnotationError(format_message(
                source, f"<size> says {annotated_size[0]} x {annotated_size[1]} but the image is {w} x {h}",
                "the annotation belongs to another version of the image: annotate this file again"))
        return boxes, seen
    stored_ok, upright_ok = tuple(annotated_size) == (w, h), tuple(annotated_size) == seen
    if frame == "auto":
        if not (stored_ok or upright_ok):
            raise AnnotationError(format_message(
                source, f"<size> says {annotated_size[0]} x {annotated_size[1]}, but the image is {w} x {h} as stored "
                f"and {seen[0]} x {seen[1]} upright (EXIF orientation {orientation})",
                "annotate this file again"))
        frame = "stored" if stored_ok else "upright"
    if frame == "upright":
        return boxes, seen
    if frame != "stored":
        raise ValueError(f"data.exif_boxes must be auto, stored or upright, got {frame!r}")
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    x1, y1 = _map_points(b[:, 0], b[:, 1], orientation, w, h)
    x2, y2 = _map_points(b[:, 2], b[:, 3], orientation, w, h)
    out = np.stack([np.minimum(x1, x2), np.minimum(y1, y2), np.maximum(x1, x2), np.maximum(y1, y2)], axis=1)
    return out.astype(np.float32), seen

