"""CenterNet decode: numpy runtime == PyTorch training decode, plus hand-made cases."""

from __future__ import annotations

import numpy as np
import pytest

from codenet_pynq.decode import decode, detect_postprocess, peak_mask, sigmoid
from codenet_pynq.transforms import letterbox_meta

torch = pytest.importorskip("torch")
from codenet_pynq.training import decode_torch  # noqa: E402


def _heads(rng, n, c, h, w, quantised=False):
    hm = rng.normal(-2.0, 2.0, (n, c, h, w)).astype(np.float32)
    if quantised:  # int8-like logits with many exact ties, as the integer model produces
        hm = (np.round(hm * 4) / 4).astype(np.float32)
    wh = rng.uniform(0.5, 20.0, (n, 2, h, w)).astype(np.float32)
    reg = rng.uniform(0.0, 1.0, (n, 2, h, w)).astype(np.float32)
    return hm, wh, reg


def _compare(np_res, t_res):
    boxes, scores, labels = np_res
    tb, ts, tl = (t.numpy() for t in t_res)
    assert labels.dtype == np.int64 and boxes.dtype == np.float32 and scores.dtype == np.float32
    np.testing.assert_array_equal(labels, tl)
    np.testing.assert_array_equal(boxes, tb)  # same float32 operations -> identical bits
    np.testing.assert_allclose(scores, ts, rtol=0, atol=1e-6)


@pytest.mark.parametrize("quantised", [False, True])
@pytest.mark.parametrize("k, thr", [(100, 0.0), (7, 0.0), (50, 0.3)])
def test_numpy_equals_torch(quantised, k, thr):
    rng = np.random.default_rng(3 + k)
    hm, wh, reg = _heads(rng, 2, 5, 16, 12, quantised)
    t_out = decode_torch.decode(torch.from_numpy(hm), torch.from_numpy(wh), torch.from_numpy(reg),
                                k=k, score_threshold=thr)
    assert len(t_out) == 2
    for i in range(2):
        np_out = decode(hm[i], wh[i], reg[i], k=k, score_threshold=thr)
        assert 0 < len(np_out[1]) <= k
        _compare(np_out, t_out[i])
        # identical selected positions: recompute centres from boxes
        assert np.all(np.diff(np_out[1]) <= 0)  # score descending


def test_numpy_equals_torch_ties_and_no_reg():
    # a rectangular plateau of equal maxima is one peak, at its first pixel in raster order;
    # ties between separate peaks are ordered by flat index
    hm = np.full((3, 6, 6), -5.0, np.float32)
    hm[0, 1:3, 1:3] = 2.0
    hm[1, 4, 4] = 2.0
    hm[2, 0, 5] = 2.0
    hm[2, 3, 0:3] = 1.0
    wh = np.ones((2, 6, 6), np.float32)
    t_out = decode_torch.decode(torch.from_numpy(hm[None]), torch.from_numpy(wh[None]), None, k=4)[0]
    boxes, scores, labels = decode(hm, wh, None, k=4)
    _compare((boxes, scores, labels), t_out)
    np.testing.assert_array_equal(labels, [0, 1, 2, 2])
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    np.testing.assert_array_equal(centres, [[1, 1], [4, 4], [5, 0], [0, 3]])


@pytest.mark.parametrize("shape, first", [
    ([(2, 2), (2, 3), (3, 2), (3, 3)], (2, 2)),  # 2 x 2 block (nearest upsample)
    ([(2, 2), (2, 3)], (2, 2)),                   # horizontal pair
    ([(2, 2), (3, 2)], (2, 2)),                   # vertical pair
    ([(2, 2), (3, 3)], (2, 2)),                   # diagonal
    ([(2, 3), (3, 2)], (2, 3)),                   # anti-diagonal: the up-right neighbour counts
])
def test_plateau_is_one_peak(shape, first):
    hm = np.full((1, 6, 6), -3.0, np.float32)
    for y, x in shape:
        hm[0, y, x] = 4.0
    mask = peak_mask(hm)
    on_plateau = [(y, x) for y, x in zip(*np.nonzero(mask[0])) if hm[0, y, x] == 4.0]
    assert on_plateau == [first]
    np.testing.assert_array_equal(decode_torch.peak_mask(torch.from_numpy(hm[None]))[0].numpy(), mask)


def test_peak_mask_numpy_equals_torch_on_quantized_maps():
    # int8-like heads: few distinct values, many ties of every shape
    rng = np.random.default_rng(3)
    hm = rng.integers(-4, 4, (2, 5, 17, 23)).astype(np.float32)
    np.testing.assert_array_equal(decode_torch.peak_mask(torch.from_numpy(hm)).numpy(), peak_mask(hm))
    plain = hm == torch.nn.functional.max_pool2d(torch.from_numpy(hm), 3, 1, 1).numpy()
    assert peak_mask(hm).sum() < plain.sum()  # the tie-break removed plateau duplicates
    assert not (peak_mask(hm) & ~plain).any()  # and never adds a peak


def test_two_peaks_by_hand():
    C, H, W = 2, 8, 10
    hm = np.full((C, H, W), -10.0, np.float32)
    hm[0, 2, 3] = 3.0
    hm[0, 2, 4] = 1.0  # neighbour of the first peak: suppressed by the 3x3 test
    hm[1, 6, 7] = 0.0
    wh = np.zeros((2, H, W), np.float32)
    wh[:, 2, 3] = (4.0, 2.0)
    wh[:, 6, 7] = (6.0, 8.0)
    reg = np.zeros((2, H, W), np.float32)
    reg[:, 2, 3] = (0.25, 0.5)
    boxes, scores, labels = decode(hm, wh, reg, k=2)
    np.testing.assert_array_equal(labels, [0, 1])
    np.testing.assert_allclose(scores, [sigmoid(np.float32(3.0)), 0.5], atol=1e-7)
    np.testing.assert_allclose(boxes, [[1.25, 1.5, 5.25, 3.5], [4.0, 2.0, 10.0, 10.0]])
    # already_sigmoid: the values are taken as scores
    b2, s2, l2 = decode(sigmoid(hm), wh, reg, k=2, already_sigmoid=True)
    np.testing.assert_array_equal(l2, labels)
    np.testing.assert_allclose(s2, scores, atol=1e-7)
    # a leading batch axis of 1 is accepted
    b3, _, _ = decode(hm[None], wh[None], reg[None], k=2)
    np.testing.assert_array_equal(b3, boxes)


def test_threshold():
    hm = np.full((1, 5, 5), -20.0, np.float32)
    hm[0, 1, 1], hm[0, 3, 3] = 2.0, -1.0  # scores 0.88 and 0.27
    wh = np.ones((2, 5, 5), np.float32)
    assert len(decode(hm, wh, k=10, score_threshold=0.5)[1]) == 1
    assert len(decode(hm, wh, k=10, score_threshold=0.2)[1]) == 2
    assert len(decode(hm, wh, k=10, score_threshold=0.99)[1]) == 0
    b, s, lab = decode(hm, wh, k=10, score_threshold=0.99)
    assert b.shape == (0, 4) and s.shape == (0,) and lab.shape == (0,)


def test_k_larger_than_positions():
    rng = np.random.default_rng(0)
    hm, wh, reg = _heads(rng, 1, 2, 3, 3)
    boxes, scores, labels = decode(hm[0], wh[0], reg[0], k=1000)
    n_peaks = int(peak_mask(hm[0]).sum())
    assert len(scores) == n_peaks <= 2 * 3 * 3
    t_out = decode_torch.decode(*(torch.from_numpy(a) for a in (hm, wh, reg)), k=1000)[0]
    _compare((boxes, scores, labels), t_out)
    assert len(decode(hm[0], wh[0], reg[0], k=0)[1]) == 0


def test_peak_mask_edges_are_minus_inf_padded():
    hm = np.array([[[-100.0, -200.0], [-300.0, -400.0]]], np.float32)
    np.testing.assert_array_equal(peak_mask(hm)[0], [[True, False], [False, False]])


def test_shape_errors():
    with pytest.raises(ValueError, match="wh"):
        decode(np.zeros((2, 4, 4), np.float32), np.zeros((3, 4, 4), np.float32))
    with pytest.raises(ValueError, match="reg"):
        decode(np.zeros((2, 4, 4), np.float32), np.zeros((2, 4, 4), np.float32), np.zeros((2, 4, 5)))


def test_detect_postprocess_maps_to_image_pixels():
    # a 200 x 100 (w x h) image letterboxed to 64: factor 0.32, output map 16 x 16 (down ratio 4)
    meta = letterbox_meta(100, 200, 64)
    hm = np.full((1, 16, 16), -10.0, np.float32)
    hm[0, 8, 8] = 5.0
    wh = np.zeros((2, 16, 16), np.float32)
    wh[:, 8, 8] = (10.0, 4.0)
    boxes, scores, labels = detect_postprocess({"hm": hm, "wh": wh}, meta, down_ratio=4, k=5,
                                               score_threshold=0.5)
    # map centre (8, 8) -> input (32, 32) = image centre (100, 50); size 40 x 16 input px / 0.32
    np.testing.assert_allclose(boxes, [[100 - 62.5, 50 - 25, 100 + 62.5, 50 + 25]], atol=1e-4)
    b2, _, _ = detect_postprocess((hm, wh, np.zeros_like(wh)), meta, k=5, score_threshold=0.5)
    np.testing.assert_allclose(b2, boxes)
    with pytest.raises(ValueError, match="lack"):
        detect_postprocess({"hm": hm}, meta)
