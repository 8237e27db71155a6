"""COCO bbox evaluation through pycocotools (the reference implementation, not re-implemented).

Ground truth is either a COCO annotation json (path or already loaded dict) or our annotation
records plus class names. Detections are our per-image dicts ``{image_id, boxes (n, 4) x1 y1 x2 y2,
scores, labels (0-based)}``; they are converted to the COCO result format (``bbox = [x, y, w, h]``
with ``w = x2 - x1``, the same continuous convention as COCO). Label ``i`` maps to the ``i``-th
smallest category id of the ground truth (``i + 1`` for ground truth built from records).
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import warnings
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import numpy as np

__all__ = ["COCO_STAT_NAMES", "coco_evaluate", "detections_to_coco", "records_to_coco"]

# Order of COCOeval.stats for iouType="bbox".
COCO_STAT_NAMES = (
    "AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl",
)

GroundTruth = Union[str, "os.PathLike[str]", Mapping[str, Any], Sequence[Mapping[str, Any]]]


def records_to_coco(
    records: Sequence[Mapping[str, Any]], class_names: Sequence[str], difficult_as_crowd: bool = False
) -> Dict[str, Any]:
    """COCO annotation dict from annotation records; category id = label + 1.

    Difficult boxes are ordinary ground truth unless ``difficult_as_crowd``: then they are marked
    ``iscrowd=1``, which pycocotools ignores (with its crowd IoU: intersection / detection area).
    """
    images, annotations = [], []
    for rec in records:
        image_id = int(rec["image_id"])
        images.append({
            "id": image_id,
            "width": int(rec.get("width", 0)),
            "height": int(rec.get("height", 0)),
            "file_name": os.path.basename(str(rec.get("file", ""))),
        })
        boxes = np.asarray(rec["boxes"], dtype=np.float64).reshape(-1, 4)
        labels = np.asarray(rec["labels"]).astype(np.int64).ravel()
        difficult = rec.get("difficult")
        difficult = np.zeros(len(labels), bool) if difficult is None else np.asarray(difficult, bool).ravel()
        for box, label, diff in zip(boxes, labels, difficult):
            w, h = float(box[2] - box[0]), float(box[3] - box[1])
            annotations.append({
                "id": len(annotations) + 1,
                "image_id": image_id,
                "category_id": int(label) + 1,
                "bbox": [float(box[0]), float(box[1]), w, h],
                "area": w * h,
                "iscrowd": int(bool(diff) and difficult_as_crowd),
            })
    categories = [{"id": i + 1, "name": str(name)} for i, name in enumerate(class_names)]
    return {"images": images, "annotations": annotations, "categories": categories}


def detections_to_coco(
    detections: Sequence[Mapping[str, Any]], category_ids: Sequence[int]
) -> List[Dict[str, Any]]:
    """COCO result list ``[{image_id, category_id, bbox [x, y, w, h], score}]``; label i -> category_ids[i]."""
    cat = np.asarray(category_ids, dtype=np.int64)
    results = []
    for det in detections:
        boxes = np.asarray(det["boxes"], dtype=np.float64).reshape(-1, 4)
        scores = np.asarray(det["scores"], dtype=np.float64).ravel()
        labels = np.asarray(det["labels"]).astype(np.int64).ravel()
        if not (len(boxes) == len(scores) == len(labels)):
            raise ValueError(f"detections for image {det.get('image_id')}: boxes/scores/labels lengths differ")
        if labels.size and (labels.min() < 0 or labels.max() >= len(cat)):
            raise ValueError(f"detection label out of range 0..{len(cat) - 1} in image {det.get('image_id')}")
        image_id = int(det["image_id"])
        for box, score, label in zip(boxes, scores, labels):
            results.append({
                "image_id": image_id,
                "category_id": int(cat[label]),
                "bbox": [float(box[0]), float(box[1]), float(box[2] - box[0]), float(box[3] - box[1])],
                "score": float(score),
            })
    return results


def _load_gt(gt: GroundTruth, class_names: Optional[Sequence[str]], difficult_as_crowd: bool):
    from pycocotools.coco import COCO

    if isinstance(gt, (str, os.PathLike)):
        with open(gt, encoding="utf-8") as f:
            dataset = json.load(f)
    elif isinstance(gt, Mapping):
        dataset = copy.deepcopy(dict(gt))
    else:
        if class_names is None:
            raise ValueError("class_names is required when the ground truth is given as records")
        dataset = records_to_coco(gt, class_names, difficult_as_crowd)
    coco = COCO()
    coco.dataset = dataset
    coco.createIndex()
    return coco


def _zero_result(class_names: Sequence[str], reason: str) -> Dict[str, Any]:
    warnings.warn(f"coco_evaluate: {reason}; returning zero metrics", RuntimeWarning, stacklevel=3)
    out: Dict[str, Any] = {name: 0.0 for name in COCO_STAT_NAMES[:6]}
    out["stats"] = [0.0] * len(COCO_STAT_NAMES)
    out["per_class_AP"] = {str(n): 0.0 for n in class_names}
    out["num_detections"] = 0
    return out


def coco_evaluate(
    gt: GroundTruth,
    detections: Sequence[Mapping[str, Any]],
    class_names: Optional[Sequence[str]] = None,
    difficult_as_crowd: bool = False,
    verbose: bool = False,
) -> Dict[str, Any]:
    """COCO bbox metrics of ``detections`` with pycocotools ``COCOeval``; APs in percent (0..100).

    ``gt``: a COCO json path, a loaded COCO dict, or a list of annotation records (then
    ``class_names`` is required). Returns ``AP``, ``AP50``, ``AP75``, ``APs``, ``APm``, ``APl``
    (percent; NaN where COCOeval reports -1, i.e. no ground truth in that area range), ``stats`` (the
    raw 12 ``COCOeval.stats`` values, fractions, -1 kept), ``per_class_AP`` (percent, AP@[.5:.95],
    NaN for a class without ground truth) and ``num_detections``. Detections on images absent from
    the ground truth are dropped with a warning. With no detections COCOeval cannot run: zeros are
    returned with a warning. ``verbose`` lets pycocotools print its progress and summary table.
    """
    from pycocotools.cocoeval import COCOeval

    quiet = contextlib.nullcontext() if verbose else contextlib.redirect_stdout(io.StringIO())
    with quiet:
        coco_gt = _load_gt(gt, class_names, difficult_as_crowd)
    category_ids = sorted(coco_gt.getCatIds())
    if class_names is None:
        class_names = [coco_gt.cats[c].get("name", str(c)) for c in category_ids]
    elif len(class_names) != len(category_ids):
        raise ValueError(f"{len(class_names)} class names but the ground truth has {len(category_ids)} categories")

    results = detections_to_coco(detections, category_ids)
    known = set(coco_gt.getImgIds())
    dropped = sum(1 for r in results if r["image_id"] not in known)
    if dropped:
        warnings.warn(f"coco_evaluate: dropped {dropped} detections on images not in the ground truth",
                      RuntimeWarning, stacklevel=2)
        results = [r for r in results if r["image_id"] in known]
    if not results:
        return _zero_result(class_names, "no detections")

    with quiet:
        coco_dt = coco_gt.loadRes(results)
        ev = COCOeval(coco_gt, coco_dt, iouType="bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    stats = [float(s) for s in ev.stats]
    out: Dict[str, Any] = {
        name: (100.0 * s if s >= 0 else float("nan")) for name, s in zip(COCO_STAT_NAMES[:6], stats[:6])
    }
    out["stats"] = stats
    # precision: [T iou, R recall, K category, A area, M maxDets]; area "all", maxDets 100.
    precision = ev.eval["precision"][:, :, :, 0, -1]
    per_class = {}
    for k, name in enumerate(class_names):
        p = precision[:, :, k]
        p = p[p > -1]
        per_class[str(name)] = 100.0 * float(p.mean()) if p.size else float("nan")
    out["per_class_AP"] = per_class
    out["num_detections"] = len(results)
    return out
