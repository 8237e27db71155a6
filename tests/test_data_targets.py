"""CenterNet target generation against hand-computed values."""

import math

import numpy as np
import pytest

from codenet_pynq.training.data.targets import build_targets, draw_gaussian, gaussian_kernel, gaussian_radius


def test_gaussian_radius_square_box_by_hand():
    # h = w = 10, overlap 0.7: the third quadratic (one corner in, one out) is the smallest:
    # b3 = -2 * 0.7 * 20 = -28, disc = 28^2 + 16 * 0.7 * 0.3 * 100 = 1120 -> (-28 + sqrt(1120)) / 2
    assert gaussian_radius(10, 10, 0.7) == pytest.approx((-28 + math.sqrt(1120)) / 2, rel=1e-12)
    assert gaussian_radius(10, 10, 0.7) == pytest.approx(2.7332, abs=1e-4)


def test_gaussian_radius_all_three_cases():
    h, w, m = 20.0, 40.0, 0.5
    r1 = (60 + math.sqrt(60**2 - 4 * 800 * 0.5 / 1.5)) / 2
    r2 = (120 + math.sqrt(120**2 - 16 * 0.5 * 800)) / 2
    r3 = (-60 + math.sqrt(60**2 + 16 * 0.5 * 0.5 * 800)) / 2
    assert gaussian_radius(h, w, m) == pytest.approx(min(r1, r2, r3), rel=1e-12)
    # symmetric in h and w, grows with the box, shrinks with a stricter overlap
    assert gaussian_radius(w, h, m) == pytest.approx(gaussian_radius(h, w, m))
    assert gaussian_radius(40, 40) > gaussian_radius(20, 20) > 0
    assert gaussian_radius(20, 20, 0.9) < gaussian_radius(20, 20, 0.7)


def test_gaussian_kernel_sigma_and_peak():
    r = 3
    g = gaussian_kernel(r)
    assert g.shape == (7, 7) and g.dtype == np.float32
    assert g[r, r] == 1.0 and g.max() == 1.0
    sigma = (2 * r + 1) / 6
    assert g[r, r + 3] == pytest.approx(math.exp(-9 / (2 * sigma**2)), rel=1e-6)
    assert g[r + 1, r + 2] == pytest.approx(math.exp(-5 / (2 * sigma**2)), rel=1e-6)
    np.testing.assert_array_equal(g, g.T)
    np.testing.assert_array_equal(g, g[::-1, ::-1])
    assert gaussian_kernel(0).tolist() == [[1.0]]


def test_draw_gaussian_peak_clipping_and_max_merge():
    hm = np.zeros((10, 12), np.float32)
    draw_gaussian(hm, (5, 4), 2)
    assert hm[4, 5] == 1.0 and hm.max() == 1.0
    assert np.count_nonzero(hm) == 25  # the whole 5x5 window
    assert np.array_equal(np.argwhere(hm == 1.0), [[4, 5]])
    # a second, overlapping peak merges by maximum, never by sum
    before = hm.copy()
    draw_gaussian(hm, (6, 4), 2)
    assert hm.max() == 1.0 and hm[4, 6] == 1.0 and hm[4, 5] == 1.0
    assert np.all(hm >= before)
    # at a corner the window is clipped without error
    corner = np.zeros((10, 12), np.float32)
    draw_gaussian(corner, (0, 0), 3)
    assert corner[0, 0] == 1.0 and np.count_nonzero(corner) == 16
    draw_gaussian(corner, (11, 9), 3)
    assert corner[9, 11] == 1.0


def test_build_targets_known_box():
    boxes = np.array([[10.2, 20.6, 30.2, 40.6]], np.float32)  # 20 x 20, centre (20.2, 30.6)
    t = build_targets(boxes, np.array([2]), num_classes=3, out_size=(64, 48), max_objs=5)
    assert t["hm"].shape == (3, 48, 64) and t["hm"].dtype == np.float32
    assert t["wh"].shape == (5, 2) and t["reg"].shape == (5, 2)
    assert t["ind"].dtype == np.int64 and t["reg_mask"].dtype == np.float32
    assert t["ind"][0] == 30 * 64 + 20
    np.testing.assert_allclose(t["reg"][0], [0.2, 0.6], atol=1e-5)
    np.testing.assert_allclose(t["wh"][0], [20, 20], atol=1e-5)
    assert t["reg_mask"].tolist() == [1, 0, 0, 0, 0]
    assert t["hm"][2, 30, 20] == 1.0
    assert t["hm"][:2].max() == 0.0
    r = int(gaussian_radius(20, 20))
    ys, xs = np.nonzero(t["hm"][2])
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (20 - r, 20 + r, 30 - r, 30 + r)


def test_build_targets_max_objs_and_empty_boxes():
    boxes = np.array([[4 * k, 4 * k, 4 * k + 3, 4 * k + 3] for k in range(5)], np.float32)
    boxes[1, 2] = boxes[1, 0]  # zero width: skipped
    t = build_targets(boxes, np.arange(5), num_classes=5, out_size=(32, 32), max_objs=3)
    assert t["reg_mask"].tolist() == [1, 0, 1]
    assert [t["hm"][c].max() for c in range(5)] == [1, 0, 1, 0, 0]  # boxes 3, 4 truncated
    empty = build_targets(np.zeros((0, 4), np.float32), np.zeros(0, np.int64), 2, (8, 8), 4)
    assert empty["hm"].sum() == 0 and empty["reg_mask"].sum() == 0


def test_build_targets_centre_on_last_cell_is_clamped():
    # centre (32, 32) lies on the map's far edge: its cell is the last one, offset 1
    t = build_targets(np.array([[31.0, 31.0, 33.0, 33.0]]), np.array([0]), 1, (32, 32), 2)
    assert t["ind"][0] == 31 * 32 + 31
    np.testing.assert_allclose(t["reg"][0], [1.0, 1.0])
    assert t["hm"][0, 31, 31] == 1.0
