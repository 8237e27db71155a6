"""Card photos (training/data/cards.py): exact polygon boxes, deterministic splits, the extra
training JSONs of a config, and the target-sheet benchmark's shared projection."""

from __future__ import annotations

import json
import os
import sys

import cv2
import numpy as np
import pytest

from codenet_pynq.training.config import load_config
from codenet_pynq.training.data.build import load_records
from codenet_pynq.training.data.camera import card_homography, place_card, visible_boxes
from codenet_pynq.training.data.cards import generate_cards, make_card, make_card_image
from codenet_pynq.training.data.records import AnnotationError
from codenet_pynq.training.data.shapes import SHAPES_CLASSES, generate_shapes


def test_boxes_are_the_warped_shapes_pixels():
    """Each box is where its shape's pixels land: the card's shape masks through the homography."""
    for seed in range(4):
        rng = np.random.default_rng(seed)
        card, polys, labels = make_card(rng)
        assert len(polys) == len(labels) and set(labels.tolist()) <= set(range(len(SHAPES_CLASSES)))
        m = card_homography(rng, card.shape[1], card.shape[0], 640, 480)
        boxes, kept = visible_boxes(polys, m, 640, 480)
        for b, k in zip(boxes, kept):
            mask = np.zeros(card.shape[:2], np.uint8)
            cv2.fillPoly(mask, [np.round(polys[k] * 16).astype(np.int32)], 255, shift=4)
            frame = np.zeros((480, 640), np.uint8)
            place_card(frame, mask, m, cv2.INTER_NEAREST)
            ys, xs = np.nonzero(frame)
            assert abs(xs.min() - b[0]) <= 2 and abs(xs.max() + 1 - b[2]) <= 2
            assert abs(ys.min() - b[1]) <= 2 and abs(ys.max() + 1 - b[3]) <= 2


def test_a_shape_mostly_outside_the_frame_is_left_out():
    square = np.array([[0, 0], [100, 0], [100, 100], [0, 100]], np.float32)
    shift = np.array([[1, 0, -70], [0, 1, 0], [0, 0, 1]], np.float64)  # 70 % of it left of the frame
    boxes, kept = visible_boxes([square, square + 200], shift, 640, 480)
    assert kept.tolist() == [1] and boxes.tolist() == [[130, 200, 230, 300]]


def test_card_photos_are_uint8_frames_with_aligned_labels():
    for seed in range(6):
        img, boxes, labels = make_card_image(np.random.default_rng(seed))
        assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
        assert boxes.shape == (len(labels), 4) and boxes.dtype == np.float32
        h, w = img.shape[:2]
        assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
        assert (boxes >= 0).all() and (boxes[:, 2] <= w).all() and (boxes[:, 3] <= h).all()


def test_splits_are_deterministic(tmp_path):
    a = json.load(open(generate_cards(str(tmp_path / "a"), 3, seed=5)))
    b = json.load(open(generate_cards(str(tmp_path / "b"), 3, seed=5)))
    assert a["annotations"] == b["annotations"] and [c["name"] for c in a["categories"]] == list(SHAPES_CLASSES)
    for im in a["images"]:
        x = cv2.imread(str(tmp_path / "a" / im["file_name"]))
        y = cv2.imread(str(tmp_path / "b" / im["file_name"]))
        assert np.array_equal(x, y)


def _cfg(tmp_path, *extra):
    train = generate_shapes(str(tmp_path / "shapes"), 4, 64, seed=1, split_name="train")
    val = generate_shapes(str(tmp_path / "shapes"), 2, 64, seed=1, split_name="val")
    return load_config("configs/shapes_default.yaml", [f"data.train_json={train}", f"data.val_json={val}",
                                                       "data.generate_shapes={}", *extra])


def test_extra_training_json_joins_the_train_split_only(tmp_path):
    cards = str(tmp_path / "cards")
    cfg = _cfg(tmp_path, f"data.extra_train_json=[{cards}/train.json]",
               f"data.generate_cards={{out: {cards}, train: 3, seed: 0}}")
    records, names = load_records(cfg.data, "train", cfg.model)  # generates the cards when missing
    assert os.path.isfile(os.path.join(cards, "train.json")) and names == list(SHAPES_CLASSES)
    assert len(records) == 7 and len({r["image_id"] for r in records}) == 7
    assert sum("cards" in r["file"] for r in records) == 3
    val, _ = load_records(cfg.data, "val", cfg.model)
    assert len(val) == 2


def test_a_missing_or_mismatched_extra_json_is_named(tmp_path):
    cfg = _cfg(tmp_path, f"data.extra_train_json=[{tmp_path}/nope.json]")
    with pytest.raises(AnnotationError, match="nope.json.*extra_train_json"):
        load_records(cfg.data, "train", cfg.model)
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"images": [], "annotations": [], "categories": [{"id": 1, "name": "cat"}]}))
    cfg = _cfg(tmp_path, f"data.extra_train_json=[{other}]")
    with pytest.raises(AnnotationError, match="other.json"):
        load_records(cfg.data, "train", cfg.model)


def test_target_sheet_ground_truth_uses_the_shared_projection():
    """benchmarks/target_sheet.py renders with the same homography and boxes as the cards."""
    root = os.path.join(os.path.dirname(__file__), "..", "benchmarks")
    sys.path.insert(0, root)
    try:
        import target_sheet
    finally:
        sys.path.remove(root)
    sheet = cv2.imread(os.path.join(target_sheet.ASSETS, "target_sheet.png"))
    shapes = json.load(open(os.path.join(target_sheet.ASSETS, "target_sheet.json")))["shapes"]
    frame, boxes, labels = target_sheet.render(sheet, shapes, 1000, 0)
    m = card_homography(np.random.default_rng([1000, 7]), sheet.shape[1], sheet.shape[0], 640, 480)
    want, kept = visible_boxes([s["polygon"] for s in shapes], m, 640, 480)
    assert np.array_equal(boxes, want) and labels.tolist() == [shapes[i]["label"] for i in kept]
    assert frame.shape == (480, 640, 3)
