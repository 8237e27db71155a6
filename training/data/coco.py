"""COCO JSON loader and writer (ground-truth files that pycocotools accepts)."""

import json
import logging
import math
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from codenet_pynq.errors import format_message

from .records import AnnotationError, Record, atomic_write_bytes, make_record, validate_record

log = logging.getLogger(__name__)


_COCO_FIX = "fix the file, or export it again from the annotation tool"


def _bad(problem: str) -> AnnotationError:
    """An AnnotationError whose message (already naming file and field) ends with what to do."""
    return AnnotationError(format_message(None, problem, _COCO_FIX))


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _list_field(data: Dict[str, Any], key: str, source: str) -> List[Any]:
    value = data.get(key)
    if not isinstance(value, list):
        raise _bad(f"{source}: '{key}' must be a list")
    return value


def _categories(data: Dict[str, Any], source: str, class_names: Optional[Sequence[str]], unknown: str = "error"):
    """Return (class_names, {category_id: label}); with ``unknown="skip"`` categories whose name is
    not in ``class_names`` are left out of the mapping (their boxes are skipped and counted)."""
    cats = _list_field(data, "categories", source)
    seen: Dict[int, str] = {}
    for i, cat in enumerate(cats):
        if not isinstance(cat, dict) or not _is_int(cat.get("id")):
            raise _bad(f"{source}: categories[{i}].id must be an integer")
        if not isinstance(cat.get("name"), str) or not cat["name"]:
            raise _bad(f"{source}: categories[{i}].name must be a non-empty string")
        if cat["id"] in seen:
            raise _bad(f"{source}: categories[{i}].id {cat['id']} is duplicated")
        seen[cat["id"]] = cat["name"]
    ordered = sorted(seen)
    if class_names is None:
        names = [seen[c] for c in ordered]
        return names, {c: i for i, c in enumerate(ordered)}
    index = {n: i for i, n in enumerate(class_names)}
    mapping = {}
    for i, cat in enumerate(cats):
        if cat["name"] not in index:
            if unknown == "skip":
                continue
            raise AnnotationError(format_message(
                source, f"categories[{i}].name '{cat['name']}' is not one of the config's class names "
                f"({', '.join(class_names)})", "add it to model.class_names (and model.num_classes), or set "
                "data.unknown_classes: skip to leave its boxes out"))
        mapping[cat["id"]] = index[cat["name"]]
    return list(class_names), mapping


def load_coco(
    json_path: str, image_root: str, class_names: Optional[Sequence[str]] = None, unknown: str = "error",
    counts: Optional[Dict[str, int]] = None,
) -> Tuple[List[Record], List[str]]:
    """Load a COCO detection JSON -> (records, class_names).

    Labels are contiguous 0-based: category ids sorted ascending, or the positions of the
    category names in ``class_names`` when given. Crowd boxes (iscrowd=1) are left out, boxes
    are clipped to the image, and boxes of zero size after clipping are skipped (logged).
    Every image is kept, with or without boxes. Errors name the file and the field.
    ``unknown="skip"``: boxes of categories not in ``class_names`` are left out and counted in
    ``counts["unknown:<category id>"]``.
    """
    source = str(json_path)
    counts = {} if counts is None else counts
    if not os.path.isfile(json_path):
        raise AnnotationError(format_message(source, "annotation file not found",
                                             "check data.train_json / data.val_json"))
    try:
        with open(json_path, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise AnnotationError(format_message(source, f"not valid JSON ({e})", "fix or re-export the file")) from None
    except UnicodeDecodeError as e:
        raise AnnotationError(format_message(source, f"is not UTF-8 text ({e.reason} at byte {e.start})",
                                             "re-export the file as UTF-8 JSON")) from None
    except RecursionError:
        raise AnnotationError(format_message(source, "the JSON is nested too deeply",
                                             "this is not a COCO annotation file")) from None
    if not isinstance(data, dict):
        raise _bad(f"{source}: top level must be an object")
    names, cat_to_label = _categories(data, source, class_names, unknown)
    known_cats = {c.get("id") for c in data["categories"] if isinstance(c, dict)}

    images: Dict[int, Dict[str, Any]] = {}
    order: List[int] = []
    for i, img in enumerate(_list_field(data, "images", source)):
        where = f"images[{i}]"
        if not isinstance(img, dict) or not _is_int(img.get("id")):
            raise _bad(f"{source}: {where}.id must be an integer")
        if not isinstance(img.get("file_name"), str) or not img["file_name"]:
            raise _bad(f"{source}: {where}.file_name must be a non-empty string")
        for key in ("width", "height"):
            if not _is_int(img.get(key)) or img[key] <= 0:
                raise _bad(f"{source}: {where}.{key} must be a positive integer")
        if img["id"] in images:
            raise _bad(f"{source}: {where}.id {img['id']} is duplicated")
        images[img["id"]] = {"img": img, "boxes": [], "labels": [], "difficult": []}
        order.append(img["id"])

    skipped = 0
    for i, ann in enumerate(_list_field(data, "annotations", source)):
        where = f"annotations[{i}]"
        if not isinstance(ann, dict):
            raise _bad(f"{source}: {where} must be an object")
        if not _is_int(ann.get("image_id")) or ann["image_id"] not in images:
            raise _bad(f"{source}: {where}.image_id {ann.get('image_id')!r} is not in 'images'")
        if not _is_int(ann.get("category_id")) or ann["category_id"] not in known_cats:
            raise _bad(f"{source}: {where}.category_id {ann.get('category_id')!r} is not in 'categories'")
        bbox = ann.get("bbox")
        if not isinstance(bbox, list) or len(bbox) != 4 or not all(_is_number(v) for v in bbox):
            raise _bad(f"{source}: {where}.bbox must be 4 numbers")
        if bbox[2] < 0 or bbox[3] < 0:
            raise _bad(f"{source}: {where}.bbox has a negative width or height: {bbox}")
        if ann.get("iscrowd", 0):
            continue
        if ann["category_id"] not in cat_to_label:
            key = f"unknown:{ann['category_id']}"
            counts[key] = counts.get(key, 0) + 1
            continue
        entry = images[ann["image_id"]]
        w, h = entry["img"]["width"], entry["img"]["height"]
        x, y, bw, bh = (float(v) for v in bbox)
        box = [max(x, 0.0), max(y, 0.0), min(x + bw, float(w)), min(y + bh, float(h))]
        if box[2] <= box[0] or box[3] <= box[1]:
            skipped += 1
            continue
        entry["boxes"].append(box)
        entry["labels"].append(cat_to_label[ann["category_id"]])
        entry["difficult"].append(bool(ann.get("difficult", False)))
    if skipped:
        log.info("%s: skipped %d boxes of zero size inside their image", source, skipped)

    records = []
    for image_id in order:
        entry = images[image_id]
        img = entry["img"]
        rec = make_record(
            os.path.join(image_root, img["file_name"]),
            image_id,
            img["width"],
            img["height"],
            entry["boxes"],
            entry["labels"],
            entry["difficult"],
        )
        records.append(validate_record(rec, f"{source}: image id {image_id}", num_classes=len(names)))
    return records, names


def _f(v: float) -> float:
    """Shortest decimal that round-trips through float32 (keeps the JSON readable)."""
    return float(str(np.float32(v)))


def coco_dict(records: Sequence[Record], class_names: Sequence[str], image_root: Optional[str] = None) -> Dict:
    """Build a COCO ground-truth dict from records (category id = label + 1).

    ``file_name`` is the record's path relative to ``image_root``, or its basename when None.
    Difficult boxes are written with iscrowd=0 and an extra ``difficult: 1`` field.
    """
    images, annotations = [], []
    ann_id = 1
    for rec in records:
        validate_record(rec, str(rec.get("file", "record")), num_classes=len(class_names))
        path = rec["file"]
        file_name = os.path.relpath(path, image_root) if image_root else os.path.basename(path)
        images.append(
            {"id": rec["image_id"], "file_name": file_name.replace(os.sep, "/"),
             "width": rec["width"], "height": rec["height"]}
        )  # fmt: skip
        for box, label, diff in zip(rec["boxes"], rec["labels"], rec["difficult"]):
            w = np.float32(box[2]) - np.float32(box[0])
            h = np.float32(box[3]) - np.float32(box[1])
            ann = {
                "id": ann_id,
                "image_id": rec["image_id"],
                "category_id": int(label) + 1,
                "bbox": [_f(box[0]), _f(box[1]), _f(w), _f(h)],
                "area": _f(w * h),
                "iscrowd": 0,
            }
            if diff:
                ann["difficult"] = 1
            annotations.append(ann)
            ann_id += 1
    categories = [{"id": i + 1, "name": n, "supercategory": "object"} for i, n in enumerate(class_names)]
    return {
        "info": {"description": "codenet-pynq ground truth"},
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": categories,
    }


def write_coco_json(
    records: Sequence[Record], class_names: Sequence[str], path: str, image_root: Optional[str] = None
) -> str:
    """Write records as a COCO ground-truth JSON file (atomically); return ``path``."""
    data = coco_dict(records, class_names, image_root)
    atomic_write_bytes(path, json.dumps(data, separators=(",", ":")).encode("utf-8"))
    return path
