"""Training augmentation: boxes stay consistent with the pixels they describe."""

import cv2
import numpy as np
import pytest

from codenet_pynq.training.data.transforms import (
    AugmentConfig,
    clip_boxes,
    color_augment,
    flip_boxes,
    prepare_sample,
    transform_boxes,
)
from codenet_pynq.transforms import get_affine_transform, preprocess

COLORS = [(255, 0, 255), (0, 255, 255)]
RECTS = [(40, 30, 100, 90), (120, 60, 170, 140)]  # x1 y1 x2 y2, x2/y2 exclusive


def _scene(w=200, h=150):
    img = np.full((h, w, 3), 128, np.uint8)
    for (x1, y1, x2, y2), c in zip(RECTS, COLORS):
        img[y1:y2, x1:x2] = c
    return img, np.array(RECTS, np.float32)


def _pixel_box(img, color):
    near = np.abs(img.astype(np.float32) - np.array(color, np.float32)).sum(axis=2) < 150
    ys, xs = np.nonzero(near)
    if len(xs) == 0:
        return None
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)


def test_transform_flip_clip_basics():
    M = np.array([[2.0, 0.0, 1.0], [0.0, 0.5, -3.0]])
    np.testing.assert_allclose(transform_boxes(np.array([[1, 2, 3, 6]]), M), [[3, -2, 7, 0]])
    # a mirror affine swaps corners: min/max keeps x1 < x2
    mirror = np.array([[-1.0, 0.0, 10.0], [0.0, 1.0, 0.0]])
    np.testing.assert_allclose(transform_boxes(np.array([[1, 2, 3, 6]]), mirror), [[7, 2, 9, 6]])
    np.testing.assert_allclose(flip_boxes(np.array([[10, 5, 30, 9]]), 100), [[70, 5, 90, 9]])
    b, keep = clip_boxes(np.array([[-5, -5, 10, 10], [20, 20, 40, 40], [31.5, 0, 50, 8]]), 32, 32)
    np.testing.assert_allclose(b, [[0, 0, 10, 10], [20, 20, 32, 32]])
    assert keep.tolist() == [0, 1]


def test_letterbox_matches_inference_preprocess():
    img, boxes = _scene()
    s = prepare_sample(img, boxes, 128, down_ratio=4)
    ref, meta = preprocess(img, 128)
    np.testing.assert_array_equal(s["image"], ref.astype(np.float32))
    assert tuple(s["center"]) == meta.center and s["scale"] == meta.scale
    # boxes at output resolution: the letterbox factor 128/200, then / 4
    f = 128 / 200 / 4
    top = (128 - 150 * 128 / 200) / 2 / 4
    expect = boxes * f + np.array([0, top, 0, top], np.float32)
    np.testing.assert_allclose(s["boxes_out"], expect, atol=1e-4)
    assert s["keep"].tolist() == [0, 1] and not s["flipped"]


@pytest.mark.parametrize("seed", range(12))
def test_augmented_boxes_match_pixels(seed):
    img, boxes = _scene()
    cfg = AugmentConfig(color=False)
    s = prepare_sample(img, boxes, 128, down_ratio=1, rng=np.random.default_rng(seed), config=cfg)
    out = s["image"]
    assert out.shape == (128, 128, 3) and out.dtype == np.float32
    kept = dict(zip(s["keep"].tolist(), s["boxes_out"]))
    for k, color in enumerate(COLORS):
        pix = _pixel_box(out, color)
        if k not in kept:  # dropped: at most a sliver of it is visible
            assert pix is None or min(pix[2] - pix[0], pix[3] - pix[1]) <= 2
            continue
        assert pix is not None
        np.testing.assert_allclose(kept[k], pix, atol=1.5, err_msg=f"seed {seed} rect {k}")


def test_flip_happens_and_is_consistent():
    img, boxes = _scene()
    cfg = AugmentConfig(color=False, flip_prob=1.0, scale_range=(1.0, 1.0), shift=0.0)
    s = prepare_sample(img, boxes, 200, down_ratio=1, rng=np.random.default_rng(0), config=cfg)
    assert s["flipped"]
    ref = prepare_sample(img[:, ::-1].copy(), flip_boxes(boxes, 200), 200, down_ratio=1)
    np.testing.assert_array_equal(s["image"], ref["image"])
    np.testing.assert_allclose(s["boxes_out"], ref["boxes_out"], atol=1e-4)
    np.testing.assert_allclose(s["boxes_out"][0], [100, 55, 160, 115], atol=1e-4)


def test_scale_and_shift_ranges():
    img, boxes = _scene()
    cfg = AugmentConfig(color=False)
    for seed in range(40):
        s = prepare_sample(img, boxes, 64, rng=np.random.default_rng(seed), config=cfg)
        assert 0.6 * 200 - 1e-9 <= s["scale"] <= 1.4 * 200 + 1e-9
        cx = 200 - s["center"][0] if s["flipped"] else s["center"][0]
        assert abs(cx - 100) <= 0.2 * s["scale"] + 1e-9
        assert abs(s["center"][1] - 75) <= 0.2 * s["scale"] + 1e-9


def test_color_augment_range_border_and_determinism():
    img, boxes = _scene()
    a = prepare_sample(img, boxes, 128, rng=np.random.default_rng(7))
    b = prepare_sample(img, boxes, 128, rng=np.random.default_rng(7))
    np.testing.assert_array_equal(a["image"], b["image"])
    out = a["image"]
    assert out.min() >= 0 and out.max() <= 255
    # the letterbox border stays exactly zero, as at inference
    M = get_affine_transform(a["center"], a["scale"], output_size=(128, 128))
    valid = cv2.warpAffine(np.ones((150, 200), np.uint8), M, (128, 128), flags=cv2.INTER_NEAREST)
    assert (valid == 0).any() and np.all(out[valid == 0] == 0)
    # the colours did change somewhere inside the image
    plain = prepare_sample(img, boxes, 128, rng=np.random.default_rng(7), config=AugmentConfig(color=False))
    assert np.abs(out - plain["image"]).max() > 1


def test_color_augment_identity_and_brightness_only():
    img = np.random.default_rng(0).uniform(0, 255, (8, 9, 3)).astype(np.float32)
    same = color_augment(img.copy(), np.random.default_rng(1), strength=0.0, lighting_std=0.0)
    np.testing.assert_allclose(same, img, atol=1e-3)
    gray = np.full((4, 4, 3), 100.0, np.float32)
    # on a gray image contrast and saturation are no-ops: only brightness scales it
    out = color_augment(gray.copy(), np.random.default_rng(3), strength=0.4, lighting_std=0.0)
    assert np.ptp(out) < 1e-3 and 60 <= out[0, 0, 0] <= 140
