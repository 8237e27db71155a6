"""CenterNet decode in PyTorch, batched, for training-time evaluation.

Same semantics as the runtime's numpy :func:`codenet_pynq.decode.decode` (the two are tested
equal: identical labels and positions, values within 1e-6):

* inputs cast to float32; peak test ``value == max_pool2d(value, 3, stride=1, padding=1)``
  (the padding acts as -inf) and ``value`` strictly above its up-left, up, up-right and left
  neighbours (one peak per rectangular plateau of equal maxima), on the values as given (logits unless
  ``already_sigmoid``);
* top-K over ``C * H * W`` flat indices by value descending, ties by flat index ascending.
  ``torch.topk`` does not define the order of ties, so a *stable* descending sort of the peak
  values (gathered in ascending index order) is used instead;
* ``score = sigmoid(value)``, ``score >= score_threshold`` kept;
* ``x = idx % W + reg_x``, ``y = idx // W + reg_y``, box ``x -/+ w / 2, y -/+ h / 2`` in
  output-map pixels.
"""

from __future__ import annotations

from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F

__all__ = ["peak_mask", "decode", "decode_single"]

DecodeResult = Tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def peak_mask(heat: torch.Tensor) -> torch.Tensor:
    """Boolean mask of (N, C, H, W) positions equal to their 3 x 3 max (-inf padding) and
    strictly above their up-left, up, up-right and left neighbours (one peak per rectangular plateau)."""
    hmax = F.max_pool2d(heat, kernel_size=3, stride=1, padding=1)
    H, W = heat.shape[-2:]
    p = F.pad(heat, (1, 1, 1, 1), value=float("-inf"))
    earlier = torch.maximum(torch.maximum(p[..., 0:H, 0:W], p[..., 0:H, 1:W + 1]),
                            torch.maximum(p[..., 0:H, 2:W + 2], p[..., 1:H + 1, 0:W]))
    return (heat == hmax) & (heat > earlier)


def decode_single(hm: torch.Tensor, wh: torch.Tensor, reg: Optional[torch.Tensor], mask: torch.Tensor,
                  k: int = 100, score_threshold: float = 0.0, already_sigmoid: bool = False) -> DecodeResult:
    """Decode one image: ``hm`` (C, H, W) float32, ``wh``/``reg`` (2, H, W), ``mask`` its peak mask."""
    C, H, W = hm.shape
    flat = hm.reshape(-1)
    idx = torch.nonzero(mask.reshape(-1), as_tuple=False).reshape(-1)  # ascending
    vals = flat[idx]
    order = torch.sort(vals, descending=True, stable=True).indices[: max(int(k), 0)]
    sel = idx[order]
    vals = vals[order]
    scores = vals if already_sigmoid else torch.sigmoid(vals)
    keep = scores >= score_threshold
    sel, scores = sel[keep], scores[keep]

    labels = torch.div(sel, H * W, rounding_mode="floor")
    pos = sel % (H * W)
    ys_i = torch.div(pos, W, rounding_mode="floor")
    xs_i = pos % W
    xs = xs_i.to(torch.float32)
    ys = ys_i.to(torch.float32)
    if reg is not None:
        xs = xs + reg[0, ys_i, xs_i]
        ys = ys + reg[1, ys_i, xs_i]
    half_w = wh[0, ys_i, xs_i] / 2
    half_h = wh[1, ys_i, xs_i] / 2
    boxes = torch.stack([xs - half_w, ys - half_h, xs + half_w, ys + half_h], dim=1)
    return boxes.reshape(-1, 4), scores, labels.to(torch.int64)


@torch.no_grad()
def decode(hm: torch.Tensor, wh: torch.Tensor, reg: Optional[torch.Tensor] = None, k: int = 100,
           score_threshold: float = 0.0, already_sigmoid: bool = False) -> List[DecodeResult]:
    """Decode a batch: ``hm`` (N, C, H, W) logits, ``wh`` (N, 2, H, W), ``reg`` (N, 2, H, W) or None.

    Returns one ``(boxes (n, 4) float32 x1 y1 x2 y2 in output-map pixels, scores (n,) float32,
    labels (n,) int64)`` per image, on the input's device, at most ``k`` each, by score descending.
    """
    if hm.dim() != 4:
        raise ValueError(f"decode: hm must be (N, C, H, W), got {tuple(hm.shape)}")
    N, _, H, W = hm.shape
    for name, t in (("wh", wh), ("reg", reg)):
        if t is not None and tuple(t.shape) != (N, 2, H, W):
            raise ValueError(f"decode: {name} must be {(N, 2, H, W)}, got {tuple(t.shape)}")
    hm = hm.detach().to(torch.float32)
    wh = wh.detach().to(torch.float32)
    reg = reg.detach().to(torch.float32) if reg is not None else None
    mask = peak_mask(hm)
    return [decode_single(hm[i], wh[i], reg[i] if reg is not None else None, mask[i], k=k,
                          score_threshold=score_threshold, already_sigmoid=already_sigmoid)
            for i in range(N)]
