"""COCO evaluation: coco_evaluate must reproduce a direct pycocotools COCOeval run exactly."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest

from codenet_pynq.training.eval import coco_evaluate, records_to_coco

COCO = pytest.importorskip("pycocotools.coco").COCO
COCOeval = pytest.importorskip("pycocotools.cocoeval").COCOeval

CAT_IDS = [9, 2, 5]  # deliberately unsorted and non-contiguous: label i -> sorted ids [2, 5, 9][i]
NAMES = ["two", "five", "nine"]  # names in sorted-id order


def make_gt_and_dets(seed: int = 0):
    """Random COCO gt dict (sizes spanning small/medium/large) and jittered + spurious detections."""
    rng = np.random.default_rng(seed)
    images, anns, dets = [], [], []
    for image_id in range(1, 7):
        images.append({"id": image_id, "width": 400, "height": 300, "file_name": f"{image_id}.jpg"})
        boxes, labels, scores = [], [], []
        for _ in range(int(rng.integers(1, 6))):
            w, h = rng.uniform(8, 200, 2)
            x, y = rng.uniform(0, 400 - w), rng.uniform(0, 300 - h)
            cat = int(rng.choice(CAT_IDS))
            anns.append({"id": len(anns) + 1, "image_id": image_id, "category_id": cat,
                         "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0})
            if rng.random() < 0.8:  # found, with jitter proportional to the size
                j = rng.normal(0, 0.08, 4) * [w, h, w, h]
                boxes.append([x + j[0], y + j[1], x + w + j[2], y + h + j[3]])
                labels.append(sorted(CAT_IDS).index(cat))
                scores.append(rng.uniform(0.3, 1.0))
        for _ in range(int(rng.integers(0, 3))):  # spurious
            x, y = rng.uniform(0, 300), rng.uniform(0, 200)
            boxes.append([x, y, x + rng.uniform(5, 100), y + rng.uniform(5, 100)])
            labels.append(int(rng.integers(0, 3)))
            scores.append(rng.uniform(0.0, 0.8))
        dets.append({"image_id": image_id, "boxes": np.asarray(boxes, np.float32).reshape(-1, 4),
                     "scores": np.asarray(scores, np.float32), "labels": np.asarray(labels, np.int64)})
    cats = [{"id": c, "name": {2: "two", 5: "five", 9: "nine"}[c]} for c in CAT_IDS]
    return {"images": images, "annotations": anns, "categories": cats}, dets


def direct_cocoeval(gt_path, dets) -> np.ndarray:
    """Independent reference: pycocotools on the json file and a hand-built result list."""
    sorted_ids = sorted(CAT_IDS)
    results = []
    for d in dets:
        for (x1, y1, x2, y2), s, lab in zip(d["boxes"].tolist(), d["scores"].tolist(), d["labels"].tolist()):
            results.append({"image_id": d["image_id"], "category_id": sorted_ids[lab],
                            "bbox": [x1, y1, x2 - x1, y2 - y1], "score": s})
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_path))
        ev = COCOeval(gt, gt.loadRes(results), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return np.asarray(ev.stats)


def test_matches_direct_pycocotools(tmp_path):
    gt, dets = make_gt_and_dets()
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(gt))
    m = coco_evaluate(path, dets, NAMES)
    ref = direct_cocoeval(path, dets)
    assert np.array_equal(np.asarray(m["stats"]), ref)
    assert 0.0 < m["AP"] < 100.0  # not degenerate
    for k, name in enumerate(["AP", "AP50", "AP75", "APs", "APm", "APl"]):
        assert m[name] == (100.0 * ref[k] if ref[k] >= 0 else pytest.approx(float("nan"), nan_ok=True))
    assert set(m["per_class_AP"]) == set(NAMES)
    # Same answer from the loaded dict and with names taken from the json.
    assert coco_evaluate(gt, dets)["stats"] == m["stats"]


def test_records_ground_truth_perfect_detections():
    records = [
        {"image_id": 3, "width": 100, "height": 80, "file": "a/3.jpg",
         "boxes": np.array([[0, 0, 40, 50], [10, 10, 90, 70]], np.float32),
         "labels": np.array([0, 1]), "difficult": np.array([False, False])},
        {"image_id": 4, "width": 100, "height": 80, "file": "a/4.jpg",
         "boxes": np.array([[5, 5, 30, 20]], np.float32), "labels": np.array([1]),
         "difficult": np.array([False])},
    ]
    dets = [{"image_id": r["image_id"], "boxes": r["boxes"], "scores": np.ones(len(r["labels"])),
             "labels": r["labels"]} for r in records]
    m = coco_evaluate(records, dets, ["a", "b"])
    assert m["AP"] == pytest.approx(100.0) and m["AP50"] == pytest.approx(100.0)
    assert m["per_class_AP"] == pytest.approx({"a": 100.0, "b": 100.0})
    coco = records_to_coco(records, ["a", "b"])
    assert [c["id"] for c in coco["categories"]] == [1, 2]
    assert coco["annotations"][1]["bbox"] == [10.0, 10.0, 80.0, 60.0]
    with pytest.raises(ValueError):
        coco_evaluate(records, dets)  # records need class names


def test_zero_detections_and_unknown_images(tmp_path):
    gt, dets = make_gt_and_dets(1)
    with pytest.warns(RuntimeWarning, match="no detections"):
        m = coco_evaluate(gt, [], NAMES)
    assert m["AP"] == 0.0 and m["stats"] == [0.0] * 12
    with pytest.warns(RuntimeWarning, match="no detections"):
        coco_evaluate(gt, [{"image_id": 1, "boxes": np.zeros((0, 4)), "scores": [], "labels": []}], NAMES)
    stray = {"image_id": 999, "boxes": np.array([[0, 0, 5, 5]]), "scores": [0.9], "labels": [0]}
    with pytest.warns(RuntimeWarning, match="dropped 1"):
        m2 = coco_evaluate(gt, dets + [stray], NAMES)
    assert m2["stats"] == coco_evaluate(gt, dets, NAMES)["stats"]
    with pytest.raises(ValueError):
        coco_evaluate(gt, dets, NAMES[:2])
