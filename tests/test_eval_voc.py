"""Pascal VOC protocol evaluation on hand-made cases with answers worked out by hand."""

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
    # The top detection hits a difficult box: ignored, so the list is just one TP -> AP 100.
    # Were it counted as FP, AP would be 50 (test_one_fp_above_one_tp).
    gts = [rec(1, [G2, G1], [0, 0], difficult=[True, False])]
    dets = [det(1, [G2, G1], [0.9, 0.8], [0, 0])]
    m = voc_evaluate(gts, dets, ["cat"])
    assert m["num_gt"] == {"cat": 1}
    assert m["AP50"] == pytest.approx(100.0) and m["AP"] == pytest.approx(100.0)
    pr = voc_class_pr(gts, dets, 0, 1)
    assert pr["npos"] == 1 and len(pr["recall"]) == 1  # the ignored detection is not a point
    # A second detection of the difficult box is ignored too (never a duplicate FP).
    dets2 = [det(1, [G2, G2, G1], [0.9, 0.85, 0.8], [0, 0, 0])]
    assert voc_evaluate(gts, dets2, ["cat"])["AP50"] == pytest.approx(100.0)
    # A class whose only boxes are difficult has no positives: NaN, left out of the mean.
    m = voc_evaluate([rec(1, [G1, G2], [0, 1], [False, True])], [det(1, [G1], [0.9], [0])], NAMES)
    assert math.isnan(m["per_class_AP50"]["dog"]) and m["AP50"] == pytest.approx(100.0)


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


def test_devkit_assignment_vs_unmatched_greedy():
    # d2 overlaps G1 most (IoU 80/120) but G1 is taken by d1; it also overlaps free g2 (70/130 > .5).
    g2 = [5, 0, 15, 10]
    gts = [rec(1, [G1, g2], [0, 0])]
    dets = [det(1, [G1, [2, 0, 12, 10]], [0.9, 0.8], [0, 0])]
    # devkit: d2 is a duplicate of G1 -> TP, FP: recall .5 .5, precision 1 .5 -> 11-point 6/11.
    assert voc_evaluate(gts, dets, ["cat"])["AP50"] == pytest.approx(100 * 6 / 11)
    # unmatched greedy: d2 takes g2 -> 100.
    assert voc_evaluate(gts, dets, ["cat"], match="unmatched")["AP50"] == pytest.approx(100.0)
    with pytest.raises(ValueError):
        voc_evaluate(gts, dets, ["cat"], match="bogus")


def test_class_without_gt_and_class_without_detections():
    gts = [rec(1, [G1], [0])]
    dets = [det(1, [G1, G2], [0.9, 0.8], [0, 1])]  # a "dog" detection, but there are no dogs
    m = voc_evaluate(gts, dets, NAMES)
    assert math.isnan(m["per_class_AP50"]["dog"]) and math.isnan(m["per_class_AP"]["dog"])
    assert m["num_gt"]["dog"] == 0
    assert m["AP50"] == pytest.approx(100.0) and m["AP"] == pytest.approx(100.0)  # mean over "cat" only
    # Ground truth but no detections at all: AP 0.
    m = voc_evaluate([rec(1, [G1, G2], [0, 1])], [det(1, [G1], [0.9], [0])], NAMES)
    assert m["per_class_AP50"] == pytest.approx({"cat": 100.0, "dog": 0.0})
    assert m["AP50"] == pytest.approx(50.0)
    assert voc_evaluate([rec(1, [G1], [0])], [], ["cat"])["AP"] == 0.0


def test_iou_exactly_at_threshold():
    gts = [rec(1, [G1], [0])]
    # IoU = 100 / 200 = 0.5 exactly: a hit at 0.5 (devkit tests ov >= threshold), a miss at 0.55.
    m = voc_evaluate(gts, [det(1, [[0, 0, 10, 20]], [0.9], [0])], ["cat"])
    assert m["AP50"] == pytest.approx(100.0)
    assert m["mAP_per_threshold"]["0.55"] == 0.0
    assert m["AP"] == pytest.approx(10.0)  # a hit at 1 of the 10 thresholds
    # IoU 0.75 exactly (75 / 100): hit at np.arange's 0.7500000000000001, looked up as 0.75.
    m = voc_evaluate(gts, [det(1, [[0, 0, 10, 7.5]], [0.9], [0])], ["cat"])
    assert m["AP75"] == pytest.approx(100.0) and m["mAP_per_threshold"]["0.80"] == 0.0
    # Just under 0.5: a miss.
    m = voc_evaluate(gts, [det(1, [[0, 0, 10, 20.01]], [0.9], [0])], ["cat"], iou_thresholds=[0.5])
    assert m["AP50"] == 0.0 and m["AP75"] == 0.0 and m["iou_thresholds"] == [0.5]


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
    m = voc_evaluate(gts, dets, NAMES)
    out = tmp_path / "sub" / "metrics.json"
    save_results_json(m, out)
    loaded = json.loads(out.read_text())
    assert loaded["per_class_AP50"]["dog"] is None  # NaN -> null, strict JSON
    assert loaded["AP50"] == pytest.approx(m["AP50"])
    assert [p.name for p in out.parent.iterdir()] == ["metrics.json"]  # no temp file left
    png = tmp_path / "pr.png"
    plot_pr_curves(voc_pr_curves(gts, dets, NAMES), png, title="test")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
