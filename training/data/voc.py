"""Pascal VOC loader: VOCdevkit XML annotations -> annotation records."""

import os
import xml.etree.ElementTree as ET
from typing import List, Optional, Sequence, Tuple

import numpy as np

from .records import AnnotationError, Record, make_record, validate_record

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)  # fmt: skip

_COORDS = ("xmin", "ymin", "xmax", "ymax")


def _find_devkit(root: str, year: str) -> str:
    """Return the VOC<year> folder under ``root`` (a VOCdevkit folder or its parent)."""
    for cand in (os.path.join(root, f"VOC{year}"), os.path.join(root, "VOCdevkit", f"VOC{year}")):
        if os.path.isdir(cand):
            return cand
    raise FileNotFoundError(f"{root}: no VOC{year} folder (looked in {root} and {root}/VOCdevkit)")


def _text(elem: ET.Element, tag: str, where: str, source: str) -> str:
    child = elem.find(tag)
    if child is None or child.text is None or not child.text.strip():
        raise AnnotationError(f"{source}: {where}<{tag}> is missing")
    return child.text.strip()


def _number(elem: ET.Element, tag: str, where: str, source: str) -> float:
    text = _text(elem, tag, where, source)
    try:
        value = float(text)
    except ValueError:
        raise AnnotationError(f"{source}: {where}<{tag}> is not a number: {text!r}") from None
    if not np.isfinite(value):
        raise AnnotationError(f"{source}: {where}<{tag}> is not a finite number: {text!r}")
    return value


def parse_voc_xml(
    xml_path: str,
    class_names: Sequence[str] = VOC_CLASSES,
    keep_difficult: bool = True,
    source: Optional[str] = None,
) -> Tuple[int, int, np.ndarray, np.ndarray, np.ndarray]:
    """Parse one VOC annotation file -> (width, height, boxes, labels, difficult).

    VOC's 1-based inclusive pixel boxes become 0-based inclusive-exclusive:
    (xmin - 1, ymin - 1, xmax, ymax). Errors name ``source`` (default: the path) and the field.
    """
    source = source or xml_path
    try:
        root = ET.parse(xml_path).getroot()
    except ET.ParseError as e:
        raise AnnotationError(f"{source}: malformed XML: {e}") from None
    size = root.find("size")
    if size is None:
        raise AnnotationError(f"{source}: <size> is missing")
    width = _number(size, "width", "<size>", source)
    height = _number(size, "height", "<size>", source)
    if width < 1 or height < 1 or width != int(width) or height != int(height):
        raise AnnotationError(f"{source}: <size> must be positive integers, got {width} x {height}")
    name_to_label = {n: i for i, n in enumerate(class_names)}
    boxes, labels, difficult = [], [], []
    for k, obj in enumerate(root.findall("object"), start=1):
        where = f"object {k} "
        name = _text(obj, "name", where, source)
        if name not in name_to_label:
            raise AnnotationError(f"{source}: {where}<name> '{name}' is not a known class")
        diff_elem = obj.find("difficult")
        is_difficult = False
        if diff_elem is not None and diff_elem.text is not None and diff_elem.text.strip():
            if diff_elem.text.strip() not in ("0", "1"):
                raise AnnotationError(f"{source}: {where}<difficult> must be 0 or 1, got {diff_elem.text!r}")
            is_difficult = diff_elem.text.strip() == "1"
        bnd = obj.find("bndbox")
        if bnd is None:
            raise AnnotationError(f"{source}: {where}<bndbox> is missing")
        x1, y1, x2, y2 = (_number(bnd, t, where + "<bndbox>", source) for t in _COORDS)
        box = [max(x1 - 1.0, 0.0), max(y1 - 1.0, 0.0), min(x2, width), min(y2, height)]
        if box[2] <= box[0] or box[3] <= box[1]:
            raise AnnotationError(
                f"{source}: {where}<bndbox> ({x1:g}, {y1:g}, {x2:g}, {y2:g}) is degenerate "
                f"inside the {width:g} x {height:g} image"
            )
        if is_difficult and not keep_difficult:
            continue
        boxes.append(box)
        labels.append(name_to_label[name])
        difficult.append(is_difficult)
    return (
        int(width),
        int(height),
        np.asarray(boxes, np.float32).reshape(-1, 4),
        np.asarray(labels, np.int64),
        np.asarray(difficult, bool),
    )


def _read_ids(set_file: str) -> List[str]:
    if not os.path.isfile(set_file):
        raise FileNotFoundError(f"{set_file}: image set file not found")
    with open(set_file, encoding="utf-8") as f:
        return [line.split()[0] for line in f if line.strip()]


def _numeric_ids(names: List[str]) -> Optional[List[int]]:
    """'000005' -> 5, '2008_000008' -> 2008000008; None when not all numeric and unique."""
    ids = []
    for name in names:
        digits = name.replace("_", "")
        if not digits.isdigit():
            return None
        ids.append(int(digits))
    return ids if len(set(ids)) == len(ids) else None


def load_voc(
    root: str,
    year_sets: Sequence[Tuple[str, str]] = (("2007", "trainval"),),
    class_names: Sequence[str] = VOC_CLASSES,
    keep_difficult: bool = True,
) -> List[Record]:
    """Load VOC records for e.g. ``[("2007", "trainval"), ("2012", "trainval")]``.

    ``root`` is the VOCdevkit folder (or its parent). Image ids come from the file names
    ('000005' -> 5, '2008_000008' -> 2008000008), or are sequential when those are not unique.
    """
    entries = []  # (year folder, name)
    for year, image_set in year_sets:
        year_dir = _find_devkit(root, str(year))
        for name in _read_ids(os.path.join(year_dir, "ImageSets", "Main", f"{image_set}.txt")):
            entries.append((year_dir, name))
    ids = _numeric_ids([name for _, name in entries]) or list(range(len(entries)))
    records = []
    for (year_dir, name), image_id in zip(entries, ids):
        xml_path = os.path.join(year_dir, "Annotations", f"{name}.xml")
        if not os.path.isfile(xml_path):
            raise FileNotFoundError(f"{xml_path}: annotation file not found")
        width, height, boxes, labels, difficult = parse_voc_xml(xml_path, class_names, keep_difficult)
        rec = make_record(
            os.path.join(year_dir, "JPEGImages", f"{name}.jpg"), image_id, width, height, boxes, labels, difficult
        )
        records.append(validate_record(rec, xml_path, num_classes=len(class_names)))
    return records
