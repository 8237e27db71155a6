"""CenterNet letterbox affine: forward/inverse consistency and boxes mapped back on real pixels."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from codenet_pynq.transforms import (
    affine_transform_points,
    boxes_to_image,
    get_affine_transform,
    letterbox_meta,
    preprocess,
)


def _three_point_reference(center, scale, out_wh, rot=0.0, inv=False):
    """CenterNet's construction: three matching point pairs fed to cv2.getAffineTransform."""
    c = np.asarray(center, np.float64)
    dw, dh = out_wh
    r = np.deg2rad(rot)
    v = np.array([0.0, -0.5 * scale])
    src_dir = np.array([v[0] * np.cos(r) - v[1] * np.sin(r), v[0] * np.sin(r) + v[1] * np.cos(r)])
    dst_dir = np.array([0.0, -0.5 * dw])

    def third(a, b):
        d = a - b
        return b + np.array([-d[1], d[0]])

    src = np.stack([c, c + src_dir, third(c, c + src_dir)]).astype(np.float32)
    d0 = np.array([dw * 0.5, dh * 0.5])
    dst = np.stack([d0, d0 + dst_dir, third(d0, d0 + dst_dir)]).astype(np.float32)
    return cv2.getAffineTransform(dst, src) if inv else cv2.getAffineTransform(src, dst)


@pytest.mark.parametrize("rot", [0.0, 30.0])
@pytest.mark.parametrize("inv", [False, True])
def test_matches_three_point_construction(rot, inv):
    m = get_affine_transform((321.0, 123.5), 640.0, (512, 512), inv=inv, rot=rot)
    assert m.shape == (2, 3) and m.dtype == np.float64
    ref = _three_point_reference((321.0, 123.5), 640.0, (512, 512), rot=rot, inv=inv)
    np.testing.assert_allclose(m, ref, atol=1e-3)


def test_forward_inverse_roundtrip():
    fwd = get_affine_transform((100.0, 60.0), 200.0, 128, rot=15.0)
    inv = get_affine_transform((100.0, 60.0), 200.0, 128, rot=15.0, inv=True)
    pts = np.array([[0.0, 0.0], [199.0, 119.0], [37.5, 80.25]])
    np.testing.assert_allclose(affine_transform_points(affine_transform_points(pts, fwd), inv), pts,
                               atol=1e-9)
    # the centre goes to the middle of the output, the scale's square spans its width
    np.testing.assert_allclose(affine_transform_points([[100.0, 60.0]], fwd), [[64.0, 64.0]])


def test_letterbox_meta_and_validation():
    meta = letterbox_meta(300, 500, 256)
    assert meta.center == (250.0, 150.0) and meta.scale == 500.0 and meta.image_size == (300, 500)
    assert meta.to_dict() == {"center": [250.0, 150.0], "scale": 500.0, "input_size": 256,
                              "image_size": [300, 500]}
    with pytest.raises(ValueError):
        letterbox_meta(0, 10, 256)
    with pytest.raises(ValueError):
        preprocess(np.zeros((4, 4), np.uint8), 32)


def _found_box(mask: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float64)


@pytest.mark.parametrize("hw, rect, size", [
    ((240, 400), (50, 30, 330, 200), 128),   # wide, downscaled
    ((360, 150), (20, 100, 140, 350), 128),  # tall, downscaled
    ((60, 90), (10, 5, 70, 50), 256),        # upscaled
])
def test_boxes_map_back_on_non_square_images(hw, rect, size):
    h, w = hw
    x1, y1, x2, y2 = rect
    img = np.full((h, w, 3), 40, np.uint8)
    img[y1:y2, x1:x2] = (0, 255, 255)
    pixels, meta = preprocess(img, size)
    assert pixels.shape == (size, size, 3) and pixels.dtype == np.uint8 and pixels.flags["C_CONTIGUOUS"]
    # the letterbox border is zero and the image is centred along its short side
    f = size / max(h, w)
    blend = max(f, 1.0)  # bilinear blending with the border reaches one source pixel out
    if w > h:
        band = int(np.floor(size / 2 - f * h / 2 - blend))
        assert band > 0 and not pixels[:band].any() and not pixels[-band:].any()
    else:
        band = int(np.floor(size / 2 - f * w / 2 - blend))
        assert band > 0 and not pixels[:, :band].any() and not pixels[:, -band:].any()
    found = _found_box(pixels[:, :, 2] > 128)  # red channel only where the rectangle is
    back = boxes_to_image(found[None], meta)[0]
    assert back.dtype == np.float32
    # one input pixel is 1/f image pixels; CenterNet's half-pixel convention adds < 1 pixel
    np.testing.assert_allclose(back, rect, atol=1.0 / f + 1.0)


def test_boxes_are_clipped_to_the_image():
    meta = letterbox_meta(100, 200, 64)
    out = boxes_to_image(np.array([[-10.0, -10.0, 80.0, 80.0], [10.0, 20.0, 30.0, 40.0]]), meta)
    np.testing.assert_allclose(out[0], [0, 0, 200, 100])
    np.testing.assert_allclose(out[1], [31.25, 12.5, 93.75, 75.0])
    assert boxes_to_image(np.zeros((0, 4)), meta).shape == (0, 4)
    np.testing.assert_allclose(boxes_to_image(np.array([[-10.0, 0, 8, 8]]), meta, clip=False)[0, 0],
                               -31.25)


def test_preprocess_into_given_buffer():
    img = np.random.default_rng(1).integers(0, 255, (50, 70, 3), dtype=np.uint8)
    ref, meta = preprocess(img, 64)
    buf = np.full((64, 64, 3), 7, np.uint8)
    res, meta2 = preprocess(img, 64, out=buf)
    assert res is buf and meta2 == meta
    np.testing.assert_array_equal(buf, ref)
    with pytest.raises(ValueError, match="out must be"):
        preprocess(img, 64, out=np.zeros((64, 64, 3), np.float32))
