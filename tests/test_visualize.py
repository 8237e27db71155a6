"""Drawing helpers and the Detections result type."""

from __future__ import annotations

import json

import numpy as np
import pytest

from codenet_pynq.detections import Detections
from codenet_pynq.visualize import class_color, draw_detections, overlay_fps, show_detections


@pytest.fixture
def dets() -> Detections:
    return Detections.from_labels(
        boxes=np.array([[10, 10, 60, 40], [0, 0, 5, 5], [30, 5, 95, 70], [1e9, 0, np.nan, 3]]),
        scores=[0.9, 0.2, 0.6, 0.5], labels=[0, 1, 2, 7], classes=["cat", "dog", "person"],
        timings={"preprocess": 1.0, "inference": 8.0, "decode": 1.0, "total": 10.0}, image_size=(80, 100))


def test_detections_basics(dets):
    assert len(dets) == 4
    assert dets.class_names == ["cat", "dog", "person", "class_7"]
    assert dets.boxes.dtype == np.float32 and dets.labels.dtype == np.int64
    kept = dets.filter(0.5)
    assert len(kept) == 3 and kept.class_names == ["cat", "person", "class_7"] and len(dets) == 4
    assert dets.fps == pytest.approx(100.0)
    assert len(dets[1:3]) == 2 and dets[0].class_names == ["cat"]
    d = dets.filter(0.55).to_dict()
    text = json.dumps(d)  # JSON-serialisable (plain Python types only)
    assert d["image_size"] == [80, 100] and d["timings"]["total"] == 10.0
    assert d["detections"][0] == {"box": [10.0, 10.0, 60.0, 40.0], "score": pytest.approx(0.9),
                                  "label": 0, "class_name": "cat"}
    back = Detections.from_dict(json.loads(text))
    np.testing.assert_array_equal(back.boxes, dets.filter(0.55).boxes)
    assert back.class_names == ["cat", "person"]
    assert len(Detections.empty((5, 5))) == 0 and "0 in 5x5" in repr(Detections.empty((5, 5)))
    with pytest.raises(ValueError, match="same length"):
        Detections(np.zeros((2, 4)), [0.5], [0])


def test_draw_returns_new_image(dets):
    img = np.full((80, 100, 3), 30, np.uint8)
    before = img.copy()
    out = draw_detections(img, dets)
    assert out is not img and out.shape == img.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(img, before)  # input untouched
    assert (out != img).any()
    # min_score hides everything -> identical to the input
    np.testing.assert_array_equal(draw_detections(img, dets, min_score=0.95), img)
    # the box outline of the best detection has its class colour (left edge, below its label)
    assert tuple(out[35, 10]) == class_color(0)
    assert tuple(out[39, 20]) == class_color(0)  # bottom edge: x2, y2 are exclusive


def test_draw_variants(dets):
    big = np.zeros((1080, 1920, 3), np.uint8)
    out = draw_detections(big, (dets.boxes * 10, dets.scores, dets.labels), class_names=["a", "b", "c"])
    assert out.shape == big.shape and out.any()
    tiny = draw_detections(np.zeros((1, 1, 3), np.uint8), dets)
    assert tiny.shape == (1, 1, 3)
    gray = draw_detections(np.zeros((80, 100), np.uint8), dets, thickness=3, font_scale=0.3,
                           show_scores=False)
    assert gray.shape == (80, 100, 3)
    empty = draw_detections(np.zeros((10, 10, 3), np.uint8), Detections.empty((10, 10)))
    assert not empty.any()


def test_class_colors_distinct():
    colors = {class_color(i) for i in range(80)}
    assert len(colors) == 80
    assert class_color(3) == class_color(3)
    assert all(0 <= v <= 255 for c in colors for v in c)


def test_overlay_fps():
    img = np.zeros((120, 160, 3), np.uint8)
    out = overlay_fps(img, 12.34)
    assert out is not img and out.any() and not img.any()
    same = overlay_fps(img, None, inplace=True)
    assert same is img and img.any()


def test_show_detections_with_agg(dets):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    img = np.full((80, 100, 3), 200, np.uint8)
    ax = show_detections(img, dets, min_score=0.3, title="test")
    assert len(ax.patches) == 2  # the NaN box is skipped, 0.2 is below min_score
    assert len(ax.texts) == 2
    fig, ax2 = plt.subplots()
    assert show_detections(img, dets, ax=ax2) is ax2
    fig.canvas.draw()
    plt.close("all")
