"""Pascal VOC evaluation (the reference voc_eval rules) on hand-made cases with answers worked out by hand."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from codenet_pynq.training.eval import (
    box_iou,
    plot_pr_curves,
    save_results_json,
    voc_ap,
    voc_class_pr,
    voc_evaluate,
    voc_pr_curves,
)

NAMES = ["cat", "dog"]


def rec(image_id, boxes, labels, difficult=None):
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    labels = np.asarray(labels, np.int64)
    difficult = np.zeros(len(labels), bool) if difficult is None else np.asarray(difficult, bool)
    return {"image_id": image_id, "width": 100, "height": 100, "boxes": boxes, "labels": labels,
            "difficult": difficult}


def det(image_id, boxes, scores, labels):
    return {"image_id": image_id, "boxes": np.asarray(boxes, np.float32).reshape(-1, 4),
            "scores": np.asarray(scores, np.float32), "labels": np.asarray(labels, np.int64)}


G1 = [0, 0, 10, 10]
G2 = [50, 50, 70, 80]
FAR = [80, 0, 95, 15]  # overlaps nothing


def test_box_iou_matches_devkit_plus_one_areas():
    # Devkit boxes, 1-based inclusive pixels; IoU computed the devkit way (+1 on every extent).
    a, b = (1, 1, 10, 10), (6, 3, 20, 12)
    iw = min(a[2], b[2]) - max(a[0], b[0]) + 1
    ih = min(a[3], b[3]) - max(a[1], b[1]) + 1
    area = lambda r: (r[2] - r[0] + 1) * (r[3] - r[1] + 1)  # noqa: E731
    devkit = iw * ih / (area(a) + area(b) - iw * ih)
    # Our records store (xmin - 1, ymin - 1, xmax, ymax): continuous IoU is the same number.
    ours = box_iou(np.array([[0, 0, 10, 10]]), np.array([[5, 2, 20, 12]]))[0, 0]
    assert ours == pytest.approx(devkit, abs=1e-12)
    assert box_iou(np.zeros((0, 4)), np.array([G1])).shape == (0, 1)
    assert box_iou(np.array([[1, 1, 1, 1]]), np.array([[1, 1, 1, 1]]))[0, 0] == 0.0  # empty boxes


def test_voc_ap_by_hand():
    # Ranked TP, FP, TP with 2 positives: recall .5 .5 1, precision 1 .5 2/3.
    r, p = np.array([0.5, 0.5, 1.0]), np.array([1.0, 0.5, 2 / 3])
    # 11-point: levels 0..0.5 (6 of them) see max precision 1, levels 0.6..1 (5) see 2/3.
    assert voc_ap(r, p, True) == pytest.approx((6 * 1 + 5 * 2 / 3) / 11)
    # Area: envelope is 1 on recall (0, .5] and 2/3 on (.5, 1] -> .5 + .5 * 2/3.
    assert voc_ap(r, p, False) == pytest.approx(0.5 + 0.5 * 2 / 3)
    assert voc_ap(np.zeros(0), np.zeros(0), True) == 0.0


@pytest.mark.parametrize("use07", [True, False])
def test_perfect_detections_give_100(use07):
    gts = [rec(1, [G1, G2], [0, 1]), rec(2, [G2], [0])]
    dets = [det(1, [G1, G2], [0.9, 0.8], [0, 1]), det(2, [G2], [0.7], [0])]
    m = voc_evaluate(gts, dets, NAMES, use_07_metric=use07)
    assert m["AP"] == pytest.approx(100.0)
    assert m["AP50"] == pytest.approx(100.0) and m["AP75"] == pytest.approx(100.0)
    assert m["per_class_AP50"] == pytest.approx({"cat": 100.0, "dog": 100.0})
    assert list(m["mAP_per_threshold"]) == [f"{t:.2f}" for t in np.arange(0.5, 0.96, 0.05)]
    assert m["num_gt"] == {"cat": 2, "dog": 1} and m["num_detections"] == 3


def test_one_fp_above_one_tp():
    # One positive; ranked FP then TP: recall 0 1, precision 0 .5.
    # 11-point: every level 0..1 has the point (1, .5) at recall >= level -> .5.
    # Area: envelope .5 over recall (0, 1] -> .5.
    gts = [rec(1, [G1], [0])]
    dets = [det(1, [FAR, G1], [0.9, 0.8], [0, 0])]
    for use07 in (True, False):
        m = voc_evaluate(gts, dets, ["cat"], use_07_metric=use07)
        assert m["AP50"] == pytest.approx(50.0)
        assert m["AP"] == pytest.approx(50.0)


def test_tp_fp_tp_07_and_area_metrics_differ():
    gts = [rec(1, [G1, G2], [0, 0])]
    dets = [det(1, [G1, FAR, G2], [0.9, 0.8, 0.7], [0, 0, 0])]
    # Same ranking as test_voc_ap_by_hand: 11-point (6 + 5 * 2/3) / 11, area .5 + .5 * 2/3.
    m07 = voc_evaluate(gts, dets, ["cat"], use_07_metric=True)
    m10 = voc_evaluate(gts, dets, ["cat"], use_07_metric=False)
    assert m07["AP50"] == pytest.approx(100 * (6 + 5 * 2 / 3) / 11)  # 84.848...
    assert m10["AP50"] == pytest.approx(100 * (0.5 + 0.5 * 2 / 3))  # 83.333...
    assert m07["metric"] == "voc07_11point" and m10["metric"] == "voc_area"


def test_difficult_match_is_ignored():
    # The top detection hits a difficult box: neither TP nor FP, it stays in the list as the point
    # (recall 0, precision 0 / eps = 0); then one TP (1, 1): AP 100 with both metrics.
    # Were it counted as FP, AP would be 50 (test_one_fp_above_one_tp).
    gts = [rec(1, [G2, G1], [0, 0], difficult=[True, False])]
    dets = [det(1, [G2, G1], [0.9, 0.8], [0, 0])]
    for use07 in (True, False):
        m = voc_evaluate(gts, dets, ["cat"], use_07_metric=use07)
        assert m["num_gt"] == {"cat": 1}
        assert m["AP50"] == pytest.approx(100.0) and m["AP"] == pytest.approx(100.0)
    pr = voc_class_pr(gts, dets, 0, 1)
    assert pr["npos"] == 1
    np.testing.assert_array_equal(pr["recall"], [0.0, 1.0])
    np.testing.assert_array_equal(pr["precision"], [0.0, 1.0])
    # A second detection of the difficult box is ignored too (never a duplicate FP).
    dets2 = [det(1, [G2, G2, G1], [0.9, 0.85, 0.8], [0, 0, 0])]
    assert voc_evaluate(gts, dets2, ["cat"])["AP50"] == pytest.approx(100.0)


def test_duplicate_detection_is_fp():
    # G1 found twice (0.9, 0.8), G2 once (0.7): the duplicate ranks like the FP of
    # test_tp_fp_tp_07_and_area_metrics_differ, so the same hand-computed APs.
    gts = [rec(1, [G1, G2], [0, 0])]
    dup = [1, 0, 10, 10]  # IoU .9 with G1
    dets = [det(1, [G1, dup, G2], [0.9, 0.8, 0.7], [0, 0, 0])]
    assert voc_evaluate(gts, dets, ["cat"])["AP50"] == pytest.approx(100 * (6 + 5 * 2 / 3) / 11)
    pr = voc_class_pr(gts, dets, 0, 1, use_07_metric=False)
    np.testing.assert_allclose(pr["recall"], [0.5, 0.5, 1.0])
    np.testing.assert_allclose(pr["precision"], [1.0, 0.5, 2 / 3])
    assert pr["ap"] == pytest.approx(0.5 + 0.5 * 2 / 3)


def test_best_box_is_assigned_even_when_claimed():
    # d2 overlaps G1 most (IoU 80/120) but G1 is taken by d1; it also overlaps free g2 (70/130 > .5).
    # The reference assigns d2 to G1 anyway: a duplicate -> TP, FP: recall .5 .5, precision 1 .5.
    # 11-point: levels 0 .. 0.5 see precision 1 (6 of 11), the others nothing -> 6/11.
    g2 = [5, 0, 15, 10]
    gts = [rec(1, [G1, g2], [0, 0])]
    dets = [det(1, [G1, [2, 0, 12, 10]], [0.9, 0.8], [0, 0])]
    assert voc_evaluate(gts, dets, ["cat"])["AP50"] == pytest.approx(100 * 6 / 11)


def ten_boxes_found(k):
    """10 separate cat boxes in one image; the k best-scored detections hit k of them, nothing else."""
    boxes = [[20 * i, 0, 20 * i + 10, 10] for i in range(10)]
    return [rec(1, boxes, [0] * 10)], [det(1, boxes[:k], [0.9 - 0.01 * i for i in range(k)], [0] * k)]


@pytest.mark.parametrize("k, levels", [(3, 3), (6, 6), (7, 7), (5, 6), (10, 11)])
def test_recall_exactly_on_a_level_follows_the_float_grid(k, levels):
    # Recall ends at k/10 with precision 1. The reference's levels are np.arange(0, 1.1, 0.1):
    # 0.30000000000000004, 0.6000000000000001 and 0.7000000000000001 lie just above 3/10, 6/10 and
    # 7/10, so recall exactly 0.3 reaches levels 0, .1, .2 only: 3/11 (exact i/10 levels: 4/11).
    # 0.5 and 1.0 are exact on the grid: recall 0.5 reaches 6 levels, recall 1 all 11.
    gts, dets = ten_boxes_found(k)
    m = voc_evaluate(gts, dets, ["cat"], use_07_metric=True)
    assert m["AP50"] == pytest.approx(100 * levels / 11, abs=1e-9)
    # area metric: envelope 1 up to recall k/10
    assert voc_evaluate(gts, dets, ["cat"], use_07_metric=False)["AP50"] == pytest.approx(10 * k)


def test_iou_equal_to_the_threshold_is_a_miss():
    gts = [rec(1, [G1], [0])]
    # Devkit boxes (1, 1, 10, 10) and (1, 1, 10, 20): IoU = 100 / 200 = 0.5 exactly, not > 0.5.
    half = [det(1, [[0, 0, 10, 20]], [0.9], [0])]
    m = voc_evaluate(gts, half, ["cat"], iou_thresholds=[0.45, 0.5])
    assert m["mAP_per_threshold"] == {"0.45": pytest.approx(100.0), "0.50": 0.0}
    assert m["AP50"] == 0.0 and m["AP"] == pytest.approx(50.0)
    # IoU 0.75 exactly (10 x 7.5 inside 10 x 10): a hit at 0.70, a miss at 0.75.
    m = voc_evaluate(gts, [det(1, [[0, 0, 10, 7.5]], [0.9], [0])], ["cat"])
    assert m["mAP_per_threshold"]["0.70"] == pytest.approx(100.0) and m["AP75"] == 0.0
    assert m["AP50"] == pytest.approx(100.0) and m["AP"] == pytest.approx(50.0)  # 0.50 .. 0.70: 5 of 10
    # default thresholds are k / 100.0, the reference's range(50, 100, 5)
    assert m["iou_thresholds"] == [k / 100.0 for k in range(50, 100, 5)]


def test_class_without_ground_truth_enters_the_mean_as_the_reference():
    gts = [rec(1, [G1], [0])]
    dets = [det(1, [G1, G2], [0.9, 0.8], [0, 1])]  # a "dog" detection, but there are no dogs
    # 11-point: recall 0/0 = NaN never reaches a level -> dog AP 0, mean (100 + 0) / 2.
    m = voc_evaluate(gts, dets, NAMES, use_07_metric=True)
    assert m["per_class_AP50"] == {"cat": pytest.approx(100.0), "dog": 0.0}
    assert m["num_gt"]["dog"] == 0 and m["AP50"] == pytest.approx(50.0) and m["AP"] == pytest.approx(50.0)
    # area: the NaN recall makes dog's area NaN, and np.mean over the classes NaN too.
    m = voc_evaluate(gts, dets, NAMES, use_07_metric=False)
    assert math.isnan(m["per_class_AP50"]["dog"]) and math.isnan(m["AP50"]) and math.isnan(m["AP"])
    # No ground truth and no detections: AP 0 with both metrics (empty curve between the sentinels).
    for use07 in (True, False):
        m = voc_evaluate(gts, [det(1, [G1], [0.9], [0])], NAMES, use_07_metric=use07)
        assert m["per_class_AP50"] == {"cat": pytest.approx(100.0), "dog": 0.0} and m["AP50"] == pytest.approx(50.0)
    # Ground truth but no detections at all: AP 0.
    assert voc_evaluate([rec(1, [G1], [0])], [], ["cat"])["AP"] == 0.0


def test_box_outside_the_image_is_not_clipped():
    # The 100 x 100 image's ground truth reaches out to 120 (devkit (81, 81, 120, 120), 40 x 40).
    gts = [rec(1, [[80, 80, 120, 120]], [0])]
    inside = det(1, [[80, 80, 100, 100]], [0.9], [0])  # the part inside the image: IoU 400 / 1600
    assert voc_evaluate(gts, [inside], ["cat"])["AP50"] == 0.0  # clipped ground truth would give 100
    m = voc_evaluate(gts, [inside], ["cat"], iou_thresholds=[0.2])
    assert m["mAP_per_threshold"]["0.20"] == pytest.approx(100.0)
    # a detection reaching out of the image as far is a perfect match
    assert voc_evaluate(gts, [det(1, [[80, 80, 120, 120]], [0.9], [0])], ["cat"])["AP"] == pytest.approx(100.0)


def test_result_file_rounding_of_scores_like_the_reference():
    # Scores 0.90049 (a miss) and 0.9004 (a hit) are both written as 0.900 by the reference: a tie,
    # which numpy's sort leaves in the given order (hit first) -> AP 100; unrounded the miss ranks
    # first -> 50.
    gts = [rec(1, [G1], [0])]
    dets = [{"image_id": 1, "boxes": np.array([G1, FAR], np.float32), "scores": np.array([0.9004, 0.90049]),
             "labels": np.array([0, 0])}]
    assert voc_evaluate(gts, dets, ["cat"])["AP50"] == pytest.approx(100.0)
    assert voc_evaluate(gts, dets, ["cat"], reference_rounding=False)["AP50"] == pytest.approx(50.0)


def test_detections_on_unknown_image_are_fp_and_bad_input_raises():
    gts = [rec(1, [G1], [0])]
    dets = [det(2, [G1], [0.95], [0]), det(1, [G1], [0.9], [0])]
    assert voc_evaluate(gts, dets, ["cat"])["AP50"] == pytest.approx(50.0)
    with pytest.raises(ValueError):
        voc_evaluate(gts, [det(1, [G1], [0.9], [3])], ["cat"])
    with pytest.raises(ValueError):
        voc_evaluate(gts + gts, [], ["cat"])


def test_save_json_and_plot(tmp_path):
    gts = [rec(1, [G1, G2], [0, 0])]
    dets = [det(1, [G1, FAR, G2], [0.9, 0.8, 0.7], [0, 0, 0])]
    m = voc_evaluate(gts, dets + [det(1, [G2], [0.5], [1])], NAMES, use_07_metric=False)  # dog: NaN
    out = tmp_path / "sub" / "metrics.json"
    save_results_json(m, out)
    loaded = json.loads(out.read_text())
    assert loaded["per_class_AP50"]["dog"] is None  # NaN -> null, strict JSON
    assert loaded["AP50"] is None and loaded["per_class_AP50"]["cat"] == pytest.approx(m["per_class_AP50"]["cat"])
    assert [p.name for p in out.parent.iterdir()] == ["metrics.json"]  # no temp file left
    png = tmp_path / "pr.png"
    plot_pr_curves(voc_pr_curves(gts, dets, NAMES), png, title="test")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
