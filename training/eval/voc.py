"""Pascal VOC detection evaluation, computed exactly as the reference Python implementation.

The reference is the ``voc_eval`` / ``voc_ap`` pair that py-faster-rcnn wrote (Bharath Hariharan)
and that detectron2's ``PascalVOCDetectionEvaluator`` (used by the detectron2-based CoDeNet
release) and many other projects carry. Reported like detectron2 reports VOC: ``AP`` is the mean
over the IoU thresholds 0.50, 0.55, ..., 0.95 (``k / 100.0``) of the mAP, ``AP50`` / ``AP75`` the
mAP at 0.5 / 0.75, all in percent. See docs/own_data.md ("VOC metrics") for the same list in prose.

What "exactly" means here (each point is how the reference behaves):

- Result files: the reference writes each detection as text, ``score`` with 3 decimals and the
  box as ``xmin + 1, ymin + 1, xmax, ymax`` (1-based, the ``+ 1`` added in float32) with 1
  decimal. ``reference_rounding=True`` (default) applies the same rounding; ``False`` keeps the
  given values.
- Ranking: all detections of a class, in the order given (image after image), are ordered by
  ``np.argsort(-score)``, numpy's default (not stable) sort, as the reference does.
- Matching: a detection is compared with *every* ground truth box of its class in its image and
  assigned to the one of highest IoU (first on ties). It is a true positive when that IoU is
  strictly greater than the threshold (``>``: an IoU equal to the threshold is a miss), the box is
  not difficult and not yet claimed; a claimed box makes it a false positive (duplicate); a
  difficult box makes it neither (it stays in the ranked list with unchanged recall/precision).
  IoU uses the devkit's inclusive pixels: widths and heights are ``x2 - x1 + 1`` in 1-based
  coordinates. Records hold VOC boxes as ``(xmin - 1, ymin - 1, xmax, ymax)``, so ``x1 + 1`` is
  the devkit's ``xmin`` again. Boxes are never clipped to the image.
- ``npos`` counts the non-difficult boxes; recall = cumulative TP / npos, precision = cumulative
  TP / max(cumulative TP + FP, eps).
- 11-point AP (VOC2007): the recall levels are ``np.arange(0.0, 1.1, 0.1)``, whose 0.3, 0.6 and
  0.7 are 0.30000000000000004, 0.6000000000000001 and 0.7000000000000001: a curve that reaches
  recall exactly 0.3 does not count at that level. Each level adds ``max precision / 11.0``.
  Area AP (VOC2010+): area under the monotone precision envelope between sentinels (0, 0) and (1, 0).
- A class without ground truth: recall is 0 / 0 = NaN, so its 11-point AP is 0 and enters the
  mean as 0; its area AP is NaN when it has detections (the mean becomes NaN, as in the
  reference) and 0 when it has none. The mean over classes is ``np.mean`` over all classes.
- Detections on an image that has no record are false positives (the reference cannot have them).
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Sequence, Tuple

import numpy as np

DEFAULT_IOU_THRESHOLDS = np.array([t / 100.0 for t in range(50, 100, 5)])

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


def _devkit_overlaps(bb: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """IoU of 1-based inclusive boxes ``bb`` (n, 4) with ``gt`` (m, 4), the reference's arithmetic."""
    ixmin = np.maximum(gt[None, :, 0], bb[:, None, 0])
    iymin = np.maximum(gt[None, :, 1], bb[:, None, 1])
    ixmax = np.minimum(gt[None, :, 2], bb[:, None, 2])
    iymax = np.minimum(gt[None, :, 3], bb[:, None, 3])
    iw = np.maximum(ixmax - ixmin + 1.0, 0.0)
    ih = np.maximum(iymax - iymin + 1.0, 0.0)
    inters = iw * ih
    uni = ((bb[:, None, 2] - bb[:, None, 0] + 1.0) * (bb[:, None, 3] - bb[:, None, 1] + 1.0)
           + (gt[None, :, 2] - gt[None, :, 0] + 1.0) * (gt[None, :, 3] - gt[None, :, 1] + 1.0) - inters)
    return inters / uni


def voc_ap(recall: np.ndarray, precision: np.ndarray, use_07_metric: bool = True) -> float:
    """Average precision (fraction) of a ranked list's recall/precision points, as the reference.

    ``use_07_metric``: 11-point interpolation on the levels ``np.arange(0.0, 1.1, 0.1)``;
    otherwise the area under the precision envelope. NaN recalls (no ground truth) never reach a
    level (11-point AP 0) and make the area NaN.
    """
    rec = np.asarray(recall, dtype=np.float64).ravel()
    prec = np.asarray(precision, dtype=np.float64).ravel()
    if use_07_metric:
        ap = 0.0
        with np.errstate(invalid="ignore"):
            for t in np.arange(0.0, 1.1, 0.1):
                reached = rec >= t
                p = 0 if np.sum(reached) == 0 else np.max(prec[reached])
                ap = ap + p / 11.0
        return float(ap)
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]  # the envelope; max is exact, so equal to the reference loop
    i = np.where(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))


def _text_round(values: np.ndarray, decimals: int) -> np.ndarray:
    """``float(f"{v:.{decimals}f}")`` for every value: the rounding of a written result file."""
    return np.array([float(f"{v:.{decimals}f}") for v in values.tolist()], dtype=np.float64)


def _as_detection_arrays(det: Mapping[str, Any], reference_rounding: bool) -> Tuple[np.ndarray, ...]:
    """(1-based devkit boxes, scores, labels) of one image's detections."""
    boxes = np.asarray(det["boxes"]).reshape(-1, 4)
    scores = np.asarray(det["scores"], dtype=np.float64).ravel()
    labels = np.asarray(det["labels"]).astype(np.int64).ravel()
    if not (len(boxes) == len(scores) == len(labels)):
        raise ValueError(f"detections for image {det.get('image_id')}: boxes/scores/labels lengths differ")
    if reference_rounding:
        b32 = boxes.astype(np.float32)
        b32[:, :2] += np.float32(1.0)
        dev = _text_round(b32.astype(np.float64).ravel(), 1).reshape(-1, 4)
        scores = _text_round(scores, 3)
    else:
        dev = boxes.astype(np.float64).copy()
        dev[:, :2] += 1.0
    return dev, scores, labels


class _ClassData:
    """One class: ground truth per image and the ranked detections with their assigned box."""

    def __init__(self, gt_by_image: Dict[int, tuple], dets: List[tuple], class_id: int) -> None:
        gt_boxes: Dict[int, np.ndarray] = {}
        gt_difficult: Dict[int, np.ndarray] = {}
        offsets: Dict[int, int] = {}
        self.npos = 0
        n_keys = 0
        for image_id, (boxes, labels, difficult) in gt_by_image.items():
            keep = labels == class_id
            gt_boxes[image_id] = boxes[keep]
            gt_difficult[image_id] = difficult[keep]
            offsets[image_id] = n_keys
            n_keys += int(keep.sum())
            self.npos += int((~difficult[keep]).sum())
        image_ids, confidence, ovmax, key, diff = [], [], [], [], []
        for image_id, d_boxes, d_scores, d_labels in dets:
            keep = d_labels == class_id
            n = int(keep.sum())
            if not n:
                continue
            image_ids.append(np.full(n, image_id, dtype=np.int64))
            confidence.append(d_scores[keep])
            g = gt_boxes.get(image_id)
            if g is None or not len(g):
                ovmax.append(np.full(n, -np.inf))
                key.append(np.full(n, -1, dtype=np.int64))
                diff.append(np.zeros(n, dtype=bool))
                continue
            ov = _devkit_overlaps(d_boxes[keep], g)
            j = np.argmax(ov, axis=1)
            ovmax.append(ov[np.arange(n), j])
            key.append(offsets[image_id] + j)
            diff.append(gt_difficult[image_id][j])
        if confidence:
            conf = np.concatenate(confidence)
            order = np.argsort(-conf)  # the reference's call: numpy's default sort, ties as it leaves them
            self.scores = conf[order]
            self.image_ids = np.concatenate(image_ids)[order]
            self.ovmax = np.concatenate(ovmax)[order]
            self.key = np.concatenate(key)[order]
            self.difficult = np.concatenate(diff)[order]
        else:
            self.scores, self.ovmax = np.zeros(0), np.zeros(0)
            self.image_ids, self.key = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
            self.difficult = np.zeros(0, dtype=bool)

    def tp_fp(self, threshold: float) -> Tuple[np.ndarray, np.ndarray]:
        """TP and FP flags (float 0/1) of the ranked detections at one IoU threshold."""
        n = len(self.scores)
        tp, fp = np.zeros(n), np.zeros(n)
        hit = self.ovmax > threshold
        fp[~hit] = 1.0
        idx = np.nonzero(hit & ~self.difficult)[0]
        _, first = np.unique(self.key[idx], return_index=True)  # the first (best-ranked) claims the box
        fp[idx] = 1.0
        fp[idx[first]] = 0.0
        tp[idx[first]] = 1.0
        return tp, fp

    def pr(self, threshold: float) -> Tuple[np.ndarray, np.ndarray]:
        """Recall and precision after each ranked detection (NaN recall when npos is 0)."""
        tp, fp = self.tp_fp(threshold)
        fp, tp = np.cumsum(fp), np.cumsum(tp)
        with np.errstate(divide="ignore", invalid="ignore"):
            rec = tp / float(self.npos)
        prec = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
        return rec, prec


def _prepare(gt_records: Sequence[Mapping[str, Any]], detections: Sequence[Mapping[str, Any]], num_classes: int,
             reference_rounding: bool) -> tuple:
    gt_by_image: Dict[int, tuple] = {}
    for rec in gt_records:
        image_id = int(rec["image_id"])
        if image_id in gt_by_image:
            raise ValueError(f"duplicate ground truth record for image_id {image_id}")
        boxes = np.asarray(rec["boxes"], dtype=np.float64).reshape(-1, 4).copy()
        boxes[:, :2] += 1.0  # back to the devkit's 1-based xmin, ymin
        labels = np.asarray(rec["labels"]).astype(np.int64).ravel()
        difficult = rec.get("difficult")
        difficult = np.zeros(len(labels), dtype=bool) if difficult is None else np.asarray(difficult, bool).ravel()
        if not (len(boxes) == len(labels) == len(difficult)):
            raise ValueError(f"record for image_id {image_id}: boxes/labels/difficult lengths differ")
        gt_by_image[image_id] = (boxes, labels, difficult)
    dets = []
    for det in detections:
        boxes, scores, labels = _as_detection_arrays(det, reference_rounding)
        if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
            raise ValueError(f"detection label out of range 0..{num_classes - 1} in image {det.get('image_id')}")
        dets.append((int(det["image_id"]), boxes, scores, labels))
    return gt_by_image, dets


def _thresholds(values: Sequence[float]) -> List[float]:
    # Rounded so that np.arange's 0.6000000000000001 is used (and reported) as 0.6 = 60 / 100.0.
    return [round(float(t), 6) for t in np.asarray(values, dtype=np.float64).ravel()]


def voc_class_pr(gt_records: Sequence[Mapping[str, Any]], detections: Sequence[Mapping[str, Any]], class_id: int,
                 num_classes: int, iou_threshold: float = 0.5, use_07_metric: bool = True,
                 reference_rounding: bool = True) -> Dict[str, Any]:
    """Recall/precision curve and AP (fraction) of one class at one IoU threshold."""
    gt_by_image, dets = _prepare(gt_records, detections, num_classes, reference_rounding)
    data = _ClassData(gt_by_image, dets, class_id)
    recall, precision = data.pr(iou_threshold)
    return {"recall": recall, "precision": precision, "ap": voc_ap(recall, precision, use_07_metric),
            "npos": data.npos}


def voc_pr_curves(gt_records: Sequence[Mapping[str, Any]], detections: Sequence[Mapping[str, Any]],
                  class_names: Sequence[str], iou_threshold: float = 0.5, use_07_metric: bool = True,
                  reference_rounding: bool = True) -> Dict[str, Dict[str, Any]]:
    """Per-class ``{name: {recall, precision, ap, npos}}`` at one IoU threshold (for plotting)."""
    gt_by_image, dets = _prepare(gt_records, detections, len(class_names), reference_rounding)
    curves = {}
    for c, name in enumerate(class_names):
        data = _ClassData(gt_by_image, dets, c)
        recall, precision = data.pr(iou_threshold)
        curves[name] = {"recall": recall, "precision": precision, "ap": voc_ap(recall, precision, use_07_metric),
                        "npos": data.npos}
    return curves


def voc_evaluate(
    gt_records: Sequence[Mapping[str, Any]],
    detections: Sequence[Mapping[str, Any]],
    class_names: Sequence[str],
    iou_thresholds: Sequence[float] = DEFAULT_IOU_THRESHOLDS,
    use_07_metric: bool = True,
    reference_rounding: bool = True,
) -> Dict[str, Any]:
    """Evaluate detections with the reference VOC implementation's rules; every AP in percent.

    ``gt_records``: annotation records (``image_id``, ``boxes``, ``labels``, optional ``difficult``).
    ``detections``: per-image dicts ``{image_id, boxes (n, 4), scores (n,), labels (n,)}`` in
    dataset order. Returns ``AP`` (mean over ``iou_thresholds`` of mAP), ``AP50``, ``AP75`` (always
    evaluated), ``per_class_AP50``, ``per_class_AP`` (mean over the thresholds), ``mAP_per_threshold``,
    ``num_gt`` (non-difficult boxes per class), ``num_detections``, ``metric`` and ``iou_thresholds``.
    Every class enters every mean (see the module doc for classes without ground truth).
    """
    thresholds = _thresholds(iou_thresholds)
    if not thresholds:
        raise ValueError("iou_thresholds is empty")
    evaluated = sorted(set(thresholds) | {0.5, 0.75})
    gt_by_image, dets = _prepare(gt_records, detections, len(class_names), reference_rounding)
    ap = np.zeros((len(class_names), len(evaluated)))  # percent, as the reference appends ap * 100
    num_gt = {}
    for c, name in enumerate(class_names):
        data = _ClassData(gt_by_image, dets, c)
        num_gt[name] = data.npos
        for i, t in enumerate(evaluated):
            ap[c, i] = voc_ap(*data.pr(t), use_07_metric) * 100
    col = {t: i for i, t in enumerate(evaluated)}
    map_per_t = {f"{t:.2f}": float(np.mean(ap[:, col[t]])) for t in thresholds}
    sel = [col[t] for t in thresholds]
    return {
        "AP": float(np.mean(list(map_per_t.values()))),
        "AP50": float(np.mean(ap[:, col[0.5]])),
        "AP75": float(np.mean(ap[:, col[0.75]])),
        "per_class_AP50": {name: float(ap[c, col[0.5]]) for c, name in enumerate(class_names)},
        "per_class_AP": {name: float(np.mean(ap[c, sel])) for c, name in enumerate(class_names)},
        "mAP_per_threshold": map_per_t,
        "num_gt": num_gt,
        "num_detections": int(sum(len(d[2]) for d in dets)),
        "metric": "voc07_11point" if use_07_metric else "voc_area",
        "iou_thresholds": thresholds,
    }
