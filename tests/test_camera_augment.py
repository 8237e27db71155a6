"""The camera augmentation (training/data/camera.py): boxes follow the perspective, appearance
changes stay uint8, and prepare_sample keeps the labels of the boxes that survive."""

from __future__ import annotations

import numpy as np

from codenet_pynq.training.data.camera import camera_augment, degrade, lighting
from codenet_pynq.training.data.transforms import AugmentConfig, prepare_sample


def _scene():
    img = np.zeros((120, 160, 3), np.uint8)
    boxes = np.array([[20, 30, 60, 70], [90, 10, 150, 50], [100, 80, 140, 115]], np.float32)
    for i, (x1, y1, x2, y2) in enumerate(boxes.astype(int)):
        img[y1:y2, x1:x2] = (60 + 60 * i, 255 - 60 * i, 128)
    return img, boxes


def test_boxes_follow_the_perspective():
    img, boxes = _scene()
    for seed in range(5):
        out, wb, keep = camera_augment(np.random.default_rng(seed), img, boxes)
        assert out.dtype == np.uint8 and out.shape == img.shape
        assert len(wb) == len(keep) and set(keep.tolist()) <= {0, 1, 2}
        for b, k in zip(wb, keep):
            # the warped rectangle (before appearance changes) fills its warped box
            mask = np.zeros(img.shape[:2], np.uint8)
            x1, y1, x2, y2 = boxes[k].astype(int)
            mask[y1:y2, x1:x2] = 255
            import cv2

            from codenet_pynq.training.data.camera import perspective

            m = perspective(np.random.default_rng(seed), 160, 120)
            wm = cv2.warpPerspective(mask, m, (160, 120), flags=cv2.INTER_NEAREST)
            ys, xs = np.nonzero(wm)
            if len(xs):
                assert abs(xs.min() - b[0]) <= 2 and abs(xs.max() + 1 - b[2]) <= 2
                assert abs(ys.min() - b[1]) <= 2 and abs(ys.max() + 1 - b[3]) <= 2


def test_appearance_changes_are_bounded_uint8():
    img, _ = _scene()
    rng = np.random.default_rng(3)
    lit, deg = lighting(rng, img), degrade(rng, img)
    assert lit.dtype == deg.dtype == np.uint8 and lit.shape == deg.shape == img.shape
    assert not np.array_equal(lit, img) and not np.array_equal(deg, img)


def test_prepare_sample_with_camera_views_keeps_labels_aligned():
    img, boxes = _scene()
    cfg = AugmentConfig(camera_prob=1.0, scale_range=(1.0, 1.0), shift=0.0, flip_prob=0.0, color=False)
    s = prepare_sample(img, boxes, 64, rng=np.random.default_rng(0), config=cfg)
    assert s["image"].shape == (64, 64, 3)
    assert len(s["keep"]) == len(s["boxes_out"]) and set(s["keep"].tolist()) <= {0, 1, 2}
    plain = prepare_sample(img, boxes, 64, rng=np.random.default_rng(0),
                           config=AugmentConfig(scale_range=(1.0, 1.0), shift=0.0, flip_prob=0.0, color=False))
    assert not np.array_equal(s["image"], plain["image"])  # the camera view changed the pixels
