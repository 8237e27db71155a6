"""CenterNet training targets: class heatmaps with gaussian peaks, sizes and sub-pixel offsets."""

import math
from typing import Dict, Sequence, Tuple

import numpy as np


def gaussian_radius(h: float, w: float, min_overlap: float = 0.7) -> float:
    """Radius of the gaussian peak for an ``h x w`` box (CornerNet's three cases, as in CenterNet).

    Each case solves a quadratic for a corner displacement at which the displaced box still has
    IoU ``min_overlap`` with the original; the smallest root is returned. The roots are halved
    rather than divided by 2a, exactly as in CenterNet, so the radii match its targets.
    """
    hw, s = h * w, h + w
    # both corners move outwards
    r1 = (s + math.sqrt(s * s - 4.0 * hw * (1.0 - min_overlap) / (1.0 + min_overlap))) / 2.0
    # both corners move inwards
    b2 = 2.0 * s
    r2 = (b2 + math.sqrt(b2 * b2 - 16.0 * (1.0 - min_overlap) * hw)) / 2.0
    # one corner in, one out
    b3 = -2.0 * min_overlap * s
    r3 = (b3 + math.sqrt(b3 * b3 + 16.0 * min_overlap * (1.0 - min_overlap) * hw)) / 2.0
    return min(r1, r2, r3)


def gaussian_kernel(radius: int) -> np.ndarray:
    """``(2r+1) x (2r+1)`` float32 gaussian with peak 1 and sigma = diameter / 6."""
    d = 2 * radius + 1
    sigma = d / 6.0
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    g1 = np.exp(-(x * x) / (2.0 * sigma * sigma))
    g = np.outer(g1, g1)
    g[g < np.finfo(np.float64).eps * g.max()] = 0.0
    return g.astype(np.float32)


def draw_gaussian(heatmap: np.ndarray, center: Sequence[int], radius: int) -> np.ndarray:
    """Max-merge a gaussian of ``radius`` centred on integer ``center`` (x, y) into ``heatmap`` (H x W).

    Modifies ``heatmap`` in place (clipped at its borders) and returns it.
    """
    radius = max(int(radius), 0)
    x, y = int(center[0]), int(center[1])
    H, W = heatmap.shape
    left, right = min(x, radius), min(W - x, radius + 1)
    top, bottom = min(y, radius), min(H - y, radius + 1)
    if left + right <= 0 or top + bottom <= 0:
        return heatmap
    g = gaussian_kernel(radius)
    region = heatmap[y - top : y + bottom, x - left : x + right]
    patch = g[radius - top : radius + bottom, radius - left : radius + right]
    np.maximum(region, patch, out=region)
    return heatmap


def build_targets(
    boxes_out: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    out_size: Tuple[int, int],
    max_objs: int,
    min_overlap: float = 0.7,
) -> Dict[str, np.ndarray]:
    """CenterNet targets for boxes already in output-map pixels (x1 y1 x2 y2, clipped to the map).

    Returns ``hm`` (C, H, W) float32, ``wh`` (max_objs, 2) float32 (box w, h), ``reg``
    (max_objs, 2) float32 (centre minus its integer cell), ``ind`` (max_objs,) int64 = y*W + x,
    ``reg_mask`` (max_objs,) float32. Only the first ``max_objs`` boxes are used; boxes with no
    area are skipped.
    """
    W, H = int(out_size[0]), int(out_size[1])
    hm = np.zeros((num_classes, H, W), np.float32)
    wh = np.zeros((max_objs, 2), np.float32)
    reg = np.zeros((max_objs, 2), np.float32)
    ind = np.zeros((max_objs,), np.int64)
    reg_mask = np.zeros((max_objs,), np.float32)
    boxes_out = np.asarray(boxes_out, np.float32).reshape(-1, 4)
    labels = np.asarray(labels, np.int64).reshape(-1)
    for k in range(min(len(boxes_out), max_objs)):
        x1, y1, x2, y2 = (float(v) for v in boxes_out[k])
        bw, bh = x2 - x1, y2 - y1
        if bw <= 0 or bh <= 0:
            continue
        radius = max(0, int(gaussian_radius(math.ceil(bh), math.ceil(bw), min_overlap)))
        cx, cy = (x1 + x2) / 2.0, (y1 + y2) / 2.0
        ix = min(max(int(math.floor(cx)), 0), W - 1)
        iy = min(max(int(math.floor(cy)), 0), H - 1)
        draw_gaussian(hm[int(labels[k])], (ix, iy), radius)
        wh[k] = (bw, bh)
        reg[k] = (cx - ix, cy - iy)
        ind[k] = iy * W + ix
        reg_mask[k] = 1.0
    return {"hm": hm, "wh": wh, "reg": reg, "ind": ind, "reg_mask": reg_mask}
