"""Pascal VOC-format loader (VOCdevkit or a labelImg folder): XML annotations -> annotation records.

Class names come from the caller (the config's ``model.class_names``); an object whose name is not
among them is an error naming the file and the name, or is skipped and counted when
``unknown="skip"``. Images are found by id with any common extension in any letter case
(``JPEGImages/<id>.jpg``, ``.JPG``, ``.jpeg``, ``.png``, ...); a missing or unreadable image is an
error, or a counted skip with ``bad_images="skip"``, never replaced by another image. Boxes are
brought into the frame of the pixels the model sees (EXIF orientation, see
:mod:`.imagefiles`) and are not clipped (as in the reference VOC evaluation).
"""

import logging
import os
import xml.etree.ElementTree as ET
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from codenet_pynq.errors import format_message

from .imagefiles import ImageFolder, image_info, oriented_boxes
from .records import AnnotationError, Record, make_record, validate_record

log = logging.getLogger(__name__)

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)  # fmt: skip

_COORDS = ("xmin", "ymin", "xmax", "ymax")


def _find_devkit(root: str, year: str) -> str:
    """Return the VOC<year> folder under ``root`` (a VOCdevkit folder or its parent); ``root``
    itself when ``year`` is empty (an own dataset: ``root/Annotations``, ``root/JPEGImages``)."""
    if not year:
        if os.path.isdir(os.path.join(root, "Annotations")):
            return root
        raise FileNotFoundError(format_message(root, "no Annotations folder", "point data.voc_root at the folder "
                                               "that holds Annotations/ (and JPEGImages/)"))
    for cand in (os.path.join(root, f"VOC{year}"), os.path.join(root, "VOCdevkit", f"VOC{year}")):
        if os.path.isdir(cand):
            return cand
    raise FileNotFoundError(format_message(root, f"no VOC{year} folder (looked in {root} and {root}/VOCdevkit)",
                                           "check data.voc_root and the years in data.voc_*_sets"))


def _text(elem: ET.Element, tag: str, where: str, source: str) -> str:
    child = elem.find(tag)
    if child is None or child.text is None or not child.text.strip():
        raise AnnotationError(format_message(source, f"{where}<{tag}> is missing or empty",
                                             "fix the file in an annotation tool (e.g. labelImg) or remove it"))
    return child.text.strip()


def _number(elem: ET.Element, tag: str, where: str, source: str) -> float:
    text = _text(elem, tag, where, source)
    try:
        value = float(text)
    except ValueError:
        raise AnnotationError(format_message(source, f"{where}<{tag}> is not a number: {text[:40]!r}",
                                             "fix the value in the file")) from None
    if not np.isfinite(value):
        raise AnnotationError(format_message(source, f"{where}<{tag}> is not a finite number: {text[:40]!r}",
                                             "fix the value in the file"))
    return value


_FIX = "fix the file in an annotation tool (e.g. labelImg) or remove it from the image set"


def _read_xml_root(xml_path: str, source: str) -> ET.Element:
    try:
        with open(xml_path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise AnnotationError(format_message(source, f"cannot be read ({e.strerror or e})",
                                             "check the file's permissions")) from None
    if not data.strip():
        raise AnnotationError(format_message(source, "the annotation file is empty", _FIX))
    if b"<!DOCTYPE" in data[:4096] or b"<!ENTITY" in data[:4096]:
        raise AnnotationError(format_message(source, "DTD/entity declarations are not accepted in annotations", _FIX))
    try:
        root = ET.fromstring(data)
    except ET.ParseError as e:
        raise AnnotationError(format_message(source, f"malformed XML ({e})", _FIX)) from None
    except RecursionError:
        raise AnnotationError(format_message(source, "the XML is nested too deeply", _FIX)) from None
    if root.tag != "annotation":
        raise AnnotationError(format_message(source, f"the root element is <{root.tag}>, not <annotation>",
                                             "pass a Pascal VOC annotation file"))
    return root


def parse_voc_xml(
    xml_path: str,
    class_names: Sequence[str] = VOC_CLASSES,
    keep_difficult: bool = True,
    source: Optional[str] = None,
    unknown: str = "error",
    counts: Optional[Dict[str, int]] = None,
) -> Tuple[int, int, np.ndarray, np.ndarray, np.ndarray]:
    """Parse one VOC annotation file -> (width, height, boxes, labels, difficult).

    VOC's 1-based inclusive pixel boxes become 0-based inclusive-exclusive:
    (xmin - 1, ymin - 1, xmax, ymax), not clipped. ``unknown``: ``error`` or ``skip`` (objects of
    other classes are left out and counted in ``counts["unknown:<name>"]``). Errors name ``source``
    (default: the path), the object and the field.
    """
    if unknown not in ("error", "skip"):
        raise ValueError(f"data.unknown_classes must be 'error' or 'skip', got {unknown!r}")
    source = source or xml_path
    root = _read_xml_root(xml_path, source)
    size = root.find("size")
    if size is None:
        raise AnnotationError(format_message(source, "<size> is missing", _FIX))
    width = _number(size, "width", "<size>", source)
    height = _number(size, "height", "<size>", source)
    if width < 1 or height < 1 or width != int(width) or height != int(height):
        raise AnnotationError(format_message(source, f"<size> must be positive integers, got {width:g} x {height:g}",
                                             _FIX))
    name_to_label = {n: i for i, n in enumerate(class_names)}
    boxes, labels, difficult = [], [], []
    for k, obj in enumerate(root.findall("object"), start=1):
        where = f"object {k} "
        name = _text(obj, "name", where, source)
        if name not in name_to_label:
            if unknown == "skip":
                if counts is not None:
                    counts[f"unknown:{name}"] = counts.get(f"unknown:{name}", 0) + 1
                continue
            shown = ", ".join(class_names) if len(class_names) <= 25 else f"{len(class_names)} names"
            raise AnnotationError(format_message(
                source, f"{where}<name> '{name}' is not one of the config's class names ({shown})",
                "add it to model.class_names (and model.num_classes), fix the name, or set "
                "data.unknown_classes: skip to leave such objects out"))
        diff_elem = obj.find("difficult")
        is_difficult = False
        if diff_elem is not None and diff_elem.text is not None and diff_elem.text.strip():
            if diff_elem.text.strip() not in ("0", "1"):
                raise AnnotationError(format_message(
                    source, f"{where}<difficult> must be 0 or 1, got {diff_elem.text.strip()[:20]!r}", _FIX))
            is_difficult = diff_elem.text.strip() == "1"
        bnd = obj.find("bndbox")
        if bnd is None:
            raise AnnotationError(format_message(source, f"{where}<bndbox> is missing", _FIX))
        x1, y1, x2, y2 = (_number(bnd, t, where + "<bndbox>", source) for t in _COORDS)
        box = [x1 - 1.0, y1 - 1.0, x2, y2]
        if box[2] <= box[0] or box[3] <= box[1]:
            raise AnnotationError(format_message(
                source, f"{where}<bndbox> ({x1:g}, {y1:g}, {x2:g}, {y2:g}) is inverted or empty "
                "(needs xmin <= xmax and ymin <= ymax)", _FIX))
        if box[2] <= 0 or box[3] <= 0 or box[0] >= width or box[1] >= height:
            raise AnnotationError(format_message(
                source, f"{where}<bndbox> ({x1:g}, {y1:g}, {x2:g}, {y2:g}) lies outside the "
                f"{width:g} x {height:g} image", _FIX))
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


def read_image_set(set_file: str) -> List[str]:
    """Ids listed in an ``ImageSets/Main/<set>.txt`` file (first word of each non-empty line)."""
    if not os.path.isfile(set_file):
        raise FileNotFoundError(format_message(
            set_file, "image set file not found",
            "write the splits with `codenet-pynq-data split ROOT` (or list the ids by hand, one per line)"))
    try:
        with open(set_file, encoding="utf-8") as f:
            return [line.split()[0] for line in f if line.strip()]
    except UnicodeDecodeError:
        raise AnnotationError(format_message(set_file, "is not UTF-8 text", "write one image id per line")) from None


def _numeric_ids(names: List[str]) -> Optional[List[int]]:
    """'000005' -> 5, '2008_000008' -> 2008000008; None when not all numeric and unique."""
    ids = []
    for name in names:
        digits = name.replace("_", "")
        if not digits.isdigit():
            return None
        ids.append(int(digits))
    return ids if len(set(ids)) == len(ids) else None


def image_folders(year_dir: str) -> List[str]:
    """Where images of a VOC-format folder are looked up: ``JPEGImages/``, then next to the XML files."""
    return [os.path.join(year_dir, "JPEGImages"), os.path.join(year_dir, "Annotations")]


def voc_names_in_ids(year_dir: str, ids: Sequence[str]) -> List[str]:
    """Sorted object names found in ``year_dir/Annotations/<id>.xml`` (unreadable files ignored)."""
    names = set()
    for name in ids:
        try:
            root_elem = ET.parse(os.path.join(year_dir, "Annotations", f"{name}.xml")).getroot()
        except (ET.ParseError, OSError, RecursionError):
            continue
        names.update((o.findtext("name") or "").strip() for o in root_elem.findall("object"))
    return sorted(n for n in names if n)


def voc_names_in_sets(root: str, year_sets: Sequence[Tuple[str, str]]) -> List[str]:
    """Sorted object names found in the annotations of the image sets."""
    names = set()
    for year, image_set in year_sets:
        year_dir = _find_devkit(root, str(year))
        names.update(voc_names_in_ids(year_dir, read_image_set(os.path.join(year_dir, "ImageSets", "Main",
                                                                             f"{image_set}.txt"))))
    return sorted(names)


def load_voc(
    root: str,
    year_sets: Sequence[Tuple[str, str]] = (("2007", "trainval"),),
    class_names: Sequence[str] = VOC_CLASSES,
    keep_difficult: bool = True,
    unknown: str = "error",
    bad_images: str = "error",
    exif_boxes: str = "auto",
    counts: Optional[Dict[str, int]] = None,
) -> List[Record]:
    """Load VOC records for e.g. ``[("2007", "trainval"), ("2012", "trainval")]`` or ``[("", "train")]``.

    ``root`` is the VOCdevkit folder (or its parent), or with an empty year the dataset folder
    itself. Image ids come from the file names ('000005' -> 5, '2008_000008' -> 2008000008), or
    are sequential when those are not unique. ``bad_images``: ``error`` or ``skip`` (missing or
    unreadable images are left out and counted in ``counts["bad_images"]``). ``counts`` also
    receives the unknown-class objects skipped (see :func:`parse_voc_xml`).
    """
    if bad_images not in ("error", "skip"):
        raise ValueError(f"data.bad_images must be 'error' or 'skip', got {bad_images!r}")
    counts = {} if counts is None else counts
    entries = []  # (year folder, name)
    folders: Dict[str, ImageFolder] = {}
    for year, image_set in year_sets:
        year_dir = _find_devkit(root, str(year))
        folders.setdefault(year_dir, ImageFolder(image_folders(year_dir)))
        for name in read_image_set(os.path.join(year_dir, "ImageSets", "Main", f"{image_set}.txt")):
            entries.append((year_dir, name))
    ids = _numeric_ids([name for _, name in entries]) or list(range(len(entries)))
    records = []
    for (year_dir, name), image_id in zip(entries, ids):
        xml_path = os.path.join(year_dir, "Annotations", f"{name}.xml")
        if not os.path.isfile(xml_path):
            raise AnnotationError(format_message(
                xml_path, "annotation file not found (its id is listed in the image set)",
                "add the annotation or rewrite the splits with `codenet-pynq-data split`"))
        width, height, boxes, labels, difficult = parse_voc_xml(xml_path, class_names, keep_difficult,
                                                                unknown=unknown, counts=counts)
        try:
            image = folders[year_dir].find(name, xml_path)
            info = image_info(image, xml_path)
        except AnnotationError as e:
            if bad_images == "error":
                raise
            counts["bad_images"] = counts.get("bad_images", 0) + 1
            log.warning("skipped: %s", e)
            continue
        boxes, (width, height) = oriented_boxes(boxes, info, (width, height), exif_boxes, xml_path)
        rec = make_record(image, image_id, width, height, boxes, labels, difficult)
        records.append(validate_record(rec, xml_path, num_classes=len(class_names)))
    return records
