"""Pascal VOC protocol detection evaluation (AP per class, mAP, COCO-style AP over IoU thresholds).

Implemented from the protocol definition of the VOC challenge (development kit documentation,
section "Detection task: evaluation") and reported the way the detectron2-based CoDeNet release
reports VOC: ``AP`` is the mean over IoU thresholds 0.50:0.05:0.95 of the VOC mAP, ``AP50`` and
``AP75`` are the mAP at 0.5 and 0.75, all in percent (0..100).

Protocol, per class and per IoU threshold ``t``:

- all detections of the class over the whole set are ranked by decreasing score (stable sort: ties
  keep the order in which they were given);
- each detection is compared with the ground truth boxes of the class in its own image and
  assigned to the one it overlaps most (IoU). If that IoU is below ``t`` the detection is a false
  positive. Otherwise, if the assigned box is *difficult* the detection is ignored (neither true
  nor false positive); if the box was already claimed by a higher-scored detection the detection is
  a false positive (a duplicate); else it is a true positive and claims the box. The threshold
  test is ``IoU >= t``, as in the devkit's evaluation code;
- difficult boxes do not count in the number of positives ``npos``;
- recall = cumulative TP / npos, precision = cumulative TP / (cumulative TP + FP);
- AP is the 11-point interpolated average precision (VOC2007 metric, ``use_07_metric=True``:
  mean over recall levels 0, 0.1, ..., 1 of the best precision at recall >= level) or the area
  under the monotone precision envelope (VOC2010+ metric).

The assignment above ("devkit" matching) looks at *all* ground truth boxes of the class in the
image, matched or not, so a detection whose best box is taken is a duplicate even when it also
overlaps another free box. ``match="unmatched"`` instead assigns each detection to the best box
not yet claimed (COCO-style greedy matching); it is offered for comparison, not for reporting.

Coordinates: boxes are continuous ``x1 y1 x2 y2`` with ``x2 = x + w`` (COCO convention, see
``docs/architecture.md``), so areas are ``(x2 - x1) * (y2 - y1)`` with no ``+1``. The VOC devkit
works on 1-based inclusive pixel indices and adds one pixel to every width and height. Our VOC
records store a devkit box ``(xmin, ymin, xmax, ymax)`` as ``(xmin - 1, ymin - 1, xmax, ymax)``; then
every width, height, intersection and union computed here equals the devkit's ``+1`` value, so the
continuous IoU used here *is* the devkit IoU (detectron2 does the same conversion in reverse when it
writes detections for its VOC evaluator: ``xmin + 1, ymin + 1, xmax, ymax``).

Classes with no non-difficult ground truth have no defined AP: they get NaN and are left out of the
mean over classes. Detections in images that have no record are false positives.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Sequence

import numpy as np

DEFAULT_IOU_THRESHOLDS = np.arange(0.5, 0.96, 0.05)

__all__ = [
    "DEFAULT_IOU_THRESHOLDS",
    "box_iou",
    "voc_ap",
    "voc_class_pr",
    "voc_evaluate",
    "voc_pr_curves",
]


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix ``(len(a), len(b))`` of continuous ``x1 y1 x2 y2`` boxes (no ``+1`` areas)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = np.clip(iw, 0.0, None) * np.clip(ih, 0.0, None)
    area_a = np.clip(a[:, 2] - a[:, 0], 0.0, None) * np.clip(a[:, 3] - a[:, 1], 0.0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0.0, None) * np.clip(b[:, 3] - b[:, 1], 0.0, None)
    union = area_a[:, None] + area_b[None, :] - inter
    out = np.zeros_like(inter)
    np.divide(inter, union, out=out, where=union > 0)
    return out


def voc_ap(recall: np.ndarray, precision: np.ndarray, use_07_metric: bool = True) -> float:
    """Average precision (fraction 0..1) of a ranked list's recall/precision points.

    ``use_07_metric``: 11-point interpolation; otherwise area under the precision envelope.
    """
    rec = np.asarray(recall, dtype=np.float64).ravel()
    prec = np.asarray(precision, dtype=np.float64).ravel()
    if rec.size == 0:
        return 0.0
    if use_07_metric:
        total = 0.0
        for i in range(11):
            reached = rec >= i / 10.0  # i / 10 is the correctly rounded level (0.3, not 0.30000000000000004)
            total += float(prec[reached].max()) if reached.any() else 0.0
        return total / 11.0
    # Envelope: precision at recall r becomes the best precision at any recall >= r.
    r = np.concatenate(([0.0], rec, [1.0]))
    p = np.concatenate(([0.0], prec, [0.0]))
    p = np.maximum.accumulate(p[::-1])[::-1]
    steps = np.nonzero(r[1:] != r[:-1])[0]
    return float(np.sum((r[steps + 1] - r[steps]) * p[steps + 1]))


def _as_detection_arrays(det: Mapping[str, Any]) -> tuple:
    boxes = np.asarray(det["boxes"], dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(det["scores"], dtype=np.float64).ravel()
    labels = np.asarray(det["labels"]).astype(np.int64).ravel()
    if not (len(boxes) == len(scores) == len(labels)):
        raise ValueError(f"detections for image {det.get('image_id')}: boxes/scores/labels lengths differ")
    return boxes, scores, labels


class _ClassData:
    """Per-class view of the ground truth and the ranked detections, with best-IoU assignment."""

    def __init__(self, gt_by_image: Dict[int, tuple], dets: List[tuple], class_id: int) -> None:
        self.gt_boxes: Dict[int, np.ndarray] = {}
        self.gt_difficult: Dict[int, np.ndarray] = {}
        self.npos = 0
        for image_id, (boxes, labels, difficult) in gt_by_image.items():
            keep = labels == class_id
            if keep.any():
                self.gt_boxes[image_id] = boxes[keep]
                self.gt_difficult[image_id] = difficult[keep]
                self.npos += int((~difficult[keep]).sum())

        # Per image: IoU of each detection of the class with every gt box of the class there, and the
        # devkit assignment (best box over all boxes of the image, claimed or not), which does not
        # depend on the threshold. Gt boxes get set-wide keys: offset of their image + index.
        offsets, next_offset = {}, 0
        for image_id, g in self.gt_boxes.items():
            offsets[image_id] = next_offset
            next_offset += len(g)
        image_ids, scores, rows, best_iou, best_key, best_diff = [], [], [], [], [], []
        for image_id, d_boxes, d_scores, d_labels in dets:
            keep = d_labels == class_id
            if not keep.any():
                continue
            n = int(keep.sum())
            image_ids.append(np.full(n, image_id, dtype=np.int64))
            scores.append(d_scores[keep])
            g = self.gt_boxes.get(image_id)
            if g is None:
                rows.extend([np.zeros(0)] * n)
                best_iou.append(np.zeros(n))
                best_key.append(np.full(n, -1, dtype=np.int64))
                best_diff.append(np.zeros(n, dtype=bool))
                continue
            iou = box_iou(d_boxes[keep], g)
            j = np.argmax(iou, axis=1)
            rows.extend(list(iou))
            best_iou.append(iou[np.arange(n), j])
            best_key.append(offsets[image_id] + j)
            best_diff.append(self.gt_difficult[image_id][j])
        if scores:
            sc = np.concatenate(scores)
            order = np.argsort(-sc, kind="stable")
            self.scores = sc[order]
            self.image_ids = np.concatenate(image_ids)[order]
            self.ious: List[np.ndarray] = [rows[k] for k in order.tolist()]
            self.best_iou = np.concatenate(best_iou)[order]
            self.best_key = np.concatenate(best_key).astype(np.int64)[order]
            self.best_difficult = np.concatenate(best_diff).astype(bool)[order]
        else:
            self.scores = np.zeros(0)
            self.image_ids = np.zeros(0, dtype=np.int64)
            self.ious = []
            self.best_iou = np.zeros(0)
            self.best_key = np.zeros(0, dtype=np.int64)
            self.best_difficult = np.zeros(0, dtype=bool)

    def tp_fp(self, threshold: float, match: str = "devkit") -> tuple:
        """Boolean TP and FP flags of the ranked detections at one IoU threshold."""
        n = len(self.scores)
        tp = np.zeros(n, dtype=bool)
        fp = np.zeros(n, dtype=bool)
        if match == "devkit":
            hit = (self.best_key >= 0) & (self.best_iou >= threshold)
            fp[~hit] = True
            counted = hit & ~self.best_difficult
            idx = np.nonzero(counted)[0]
            # The first (highest-ranked) detection assigned to a box claims it, the rest are duplicates.
            _, first = np.unique(self.best_key[idx], return_index=True)
            tp[idx[first]] = True
            fp[idx] = True
            fp[idx[first]] = False
            return tp, fp
        if match != "unmatched":
            raise ValueError(f"match must be 'devkit' or 'unmatched', got {match!r}")
        claimed = {image_id: np.zeros(len(g), dtype=bool) for image_id, g in self.gt_boxes.items()}
        for k, (image_id, row) in enumerate(zip(self.image_ids.tolist(), self.ious)):
            if row.size == 0:
                fp[k] = True
                continue
            free = np.where(claimed[image_id], -1.0, row)
            j = int(np.argmax(free))
            if free[j] < threshold:
                fp[k] = True
            elif self.gt_difficult[image_id][j]:
                continue  # ignored; a difficult box is never claimed
            else:
                tp[k] = True
                claimed[image_id][j] = True
        return tp, fp

    def pr(self, threshold: float, match: str = "devkit") -> tuple:
        """Recall and precision after each counted (non-ignored) ranked detection."""
        tp, fp = self.tp_fp(threshold, match)
        counted = tp | fp
        ctp = np.cumsum(tp[counted]).astype(np.float64)
        cfp = np.cumsum(fp[counted]).astype(np.float64)
        recall = ctp / self.npos if self.npos > 0 else np.full_like(ctp, np.nan)
        precision = ctp / np.maximum(ctp + cfp, np.finfo(np.float64).eps)
        return recall, precision


def _prepare(
    gt_records: Sequence[Mapping[str, Any]], detections: Sequence[Mapping[str, Any]], num_classes: int
) -> tuple:
    gt_by_image: Dict[int, tuple] = {}
    for rec in gt_records:
        image_id = int(rec["image_id"])
        if image_id in gt_by_image:
            raise ValueError(f"duplicate ground truth record for image_id {image_id}")
        boxes = np.asarray(rec["boxes"], dtype=np.float64).reshape(-1, 4)
        labels = np.asarray(rec["labels"]).astype(np.int64).ravel()
        difficult = rec.get("difficult")
        difficult = np.zeros(len(labels), dtype=bool) if difficult is None else np.asarray(difficult, bool).ravel()
        if not (len(boxes) == len(labels) == len(difficult)):
            raise ValueError(f"record for image_id {image_id}: boxes/labels/difficult lengths differ")
        gt_by_image[image_id] = (boxes, labels, difficult)
    dets = []
    for det in detections:
        boxes, scores, labels = _as_detection_arrays(det)
        if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
            raise ValueError(f"detection label out of range 0..{num_classes - 1} in image {det.get('image_id')}")
        dets.append((int(det["image_id"]), boxes, scores, labels))
    return gt_by_image, dets


def _thresholds(values: Sequence[float]) -> List[float]:
    # Rounded so that np.arange's 0.7500000000000001 is looked up (and reported) as 0.75.
    return [round(float(t), 6) for t in np.asarray(values, dtype=np.float64).ravel()]


def voc_class_pr(
    gt_records: Sequence[Mapping[str, Any]],
    detections: Sequence[Mapping[str, Any]],
    class_id: int,
    num_classes: int,
    iou_threshold: float = 0.5,
    use_07_metric: bool = True,
    match: str = "devkit",
) -> Dict[str, Any]:
    """Recall/precision curve and AP (fraction) of one class at one IoU threshold."""
    gt_by_image, dets = _prepare(gt_records, detections, num_classes)
    data = _ClassData(gt_by_image, dets, class_id)
    recall, precision = data.pr(iou_threshold, match)
    ap = voc_ap(recall, precision, use_07_metric) if data.npos > 0 else float("nan")
    return {"recall": recall, "precision": precision, "ap": ap, "npos": data.npos}


def voc_pr_curves(
    gt_records: Sequence[Mapping[str, Any]],
    detections: Sequence[Mapping[str, Any]],
    class_names: Sequence[str],
    iou_threshold: float = 0.5,
    use_07_metric: bool = True,
    match: str = "devkit",
) -> Dict[str, Dict[str, Any]]:
    """Per-class ``{name: {recall, precision, ap, npos}}`` at one IoU threshold (for plotting)."""
    gt_by_image, dets = _prepare(gt_records, detections, len(class_names))
    curves = {}
    for c, name in enumerate(class_names):
        data = _ClassData(gt_by_image, dets, c)
        recall, precision = data.pr(iou_threshold, match)
        ap = voc_ap(recall, precision, use_07_metric) if data.npos > 0 else float("nan")
        curves[name] = {"recall": recall, "precision": precision, "ap": ap, "npos": data.npos}
    return curves


def _nanmean(values: Sequence[float]) -> float:
    arr = np.asarray(values, dtype=np.float64)
    arr = arr[~np.isnan(arr)]
    return float(arr.mean()) if arr.size else float("nan")


def voc_evaluate(
    gt_records: Sequence[Mapping[str, Any]],
    detections: Sequence[Mapping[str, Any]],
    class_names: Sequence[str],
    iou_thresholds: Sequence[float] = DEFAULT_IOU_THRESHOLDS,
    use_07_metric: bool = True,
    match: str = "devkit",
) -> Dict[str, Any]:
    """Evaluate detections with the Pascal VOC protocol; every AP in percent (0..100).

    ``gt_records``: annotation records (``image_id``, ``boxes``, ``labels``, optional ``difficult``).
    ``detections``: per-image dicts ``{image_id, boxes (n, 4), scores (n,), labels (n,)}``.

    Returns ``AP`` (mean over ``iou_thresholds`` of mAP), ``AP50``, ``AP75`` (always evaluated, even
    when not among ``iou_thresholds``), ``per_class_AP50`` and ``per_class_AP`` (mean over the
    thresholds) as ``{name: AP}``, ``mAP_per_threshold`` as ``{"0.50": mAP, ...}``, ``num_gt``
    (non-difficult boxes per class), ``num_detections``, ``metric`` and ``iou_thresholds``.
    Classes without ground truth have NaN AP and are left out of the means.
    """
    thresholds = _thresholds(iou_thresholds)
    if not thresholds:
        raise ValueError("iou_thresholds is empty")
    evaluated = sorted(set(thresholds) | {0.5, 0.75})
    gt_by_image, dets = _prepare(gt_records, detections, len(class_names))

    # ap[c][t] as a fraction; NaN for classes without positives.
    ap = np.full((len(class_names), len(evaluated)), np.nan)
    num_gt = {}
    for c, name in enumerate(class_names):
        data = _ClassData(gt_by_image, dets, c)
        num_gt[name] = data.npos
        if data.npos == 0:
            continue
        for i, t in enumerate(evaluated):
            recall, precision = data.pr(t, match)
            ap[c, i] = voc_ap(recall, precision, use_07_metric)

    col = {t: i for i, t in enumerate(evaluated)}
    sel = [col[t] for t in thresholds]
    map_per_t = {f"{t:.2f}": 100.0 * _nanmean(ap[:, col[t]]) for t in thresholds}
    per_class_ap = {
        name: 100.0 * float(np.mean(ap[c, sel])) if num_gt[name] else float("nan")
        for c, name in enumerate(class_names)
    }
    return {
        "AP": float(np.mean([map_per_t[f"{t:.2f}"] for t in thresholds])),
        "AP50": 100.0 * _nanmean(ap[:, col[0.5]]),
        "AP75": 100.0 * _nanmean(ap[:, col[0.75]]),
        "per_class_AP50": {name: 100.0 * float(ap[c, col[0.5]]) for c, name in enumerate(class_names)},
        "per_class_AP": per_class_ap,
        "mAP_per_threshold": map_per_t,
        "num_gt": num_gt,
        "num_detections": int(sum(len(d[2]) for d in dets)),
        "metric": "voc07_11point" if use_07_metric else "voc_area",
        "iou_thresholds": thresholds,
    }
