"""Conv-block variants of the CoDeNet decoder and heads (the seed's ablation table).

Every block maps ``in_ch -> out_ch`` at stride 1 and is followed, by its user, by BN + ReLU.

| variant                         | structure                                                   |
|---------------------------------|-------------------------------------------------------------|
| ``k3``                          | 3x3 conv                                                     |
| ``k3dw``                        | 1x1 conv, BN, ReLU, 3x3 depthwise                            |
| ``deform_original``             | 3x3 offset conv (18G) -> 3x3 deformable conv                 |
| ``deform_bound``                | as original, offsets clamped to [-B, B]                      |
| ``deform_square``               | 3x3 offset conv (G) -> clamp [0, B] -> square deformable 3x3 |
| ``deform_original_depthwise``   | 1x1, BN, ReLU -> 3x3 offset conv (18G) -> depthwise deform   |
| ``deform_square_depthwise``     | 1x1, BN, ReLU -> 1x1 offset conv (G) -> depthwise square     |
| ``deform_square_depthwise_hw``  | as above, s rounded to whole pixels (straight-through)       |

Square offsets: one channel ``s`` per pixel and offset group, tap (dy, dx) samples at
``p + (1 + s) * (dy, dx)``: an adaptive per-pixel dilation.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .deform import deform_conv2d, dilated_depthwise_select, round_ste, square_offsets

VARIANTS = (
    "k3",
    "k3dw",
    "deform_original",
    "deform_bound",
    "deform_square",
    "deform_original_depthwise",
    "deform_square_depthwise",
    "deform_square_depthwise_hw",
)
DEFAULT_VARIANT = "deform_square_depthwise_hw"


def pointwise(in_ch: int, out_ch: int) -> nn.Sequential:
    """1x1 conv without bias + BN + ReLU."""
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, bias=False), nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True))


class DeformConv(nn.Module):
    """3x3 deformable conv whose offsets come from a small offset conv on ``offset_from``.

    ``mode``: ``original`` (free 2-D offsets per tap), ``bound`` (clamped to [-B, B]),
    ``square`` (one dilation offset per pixel, clamped to [0, B]), ``square_hw`` (square,
    rounded to whole pixels with a straight-through gradient).
    """

    def __init__(self, in_ch: int, out_ch: int, mode: str, depthwise: bool, offset_kernel: int = 3,
                 offset_groups: int = 1, max_offset: float = 8.0):
        super().__init__()
        if mode not in ("original", "bound", "square", "square_hw"):
            raise ValueError(f"unknown deformable mode {mode!r}")
        if depthwise and in_ch != out_ch:
            raise ValueError("a depthwise deformable conv needs in_ch == out_ch")
        self.mode, self.depthwise, self.max_offset = mode, depthwise, float(max_offset)
        self.groups = in_ch if depthwise else 1
        self.offset_groups = offset_groups
        n_off = offset_groups * (18 if mode in ("original", "bound") else 1)
        self.offset = nn.Conv2d(in_ch, n_off, offset_kernel, padding=offset_kernel // 2, bias=True)
        nn.init.zeros_(self.offset.weight)
        nn.init.constant_(self.offset.bias, 1.0 if mode.startswith("square") else 0.0)
        self.weight = nn.Parameter(torch.empty(out_ch, in_ch // self.groups, 3, 3))
        nn.init.kaiming_uniform_(self.weight, a=1.0)

    def square_offset(self, x: torch.Tensor) -> torch.Tensor:
        """The per-pixel dilation offset s (N, G, H, W) after clamp (and rounding for hw)."""
        s = torch.clamp(self.offset(x), 0.0, self.max_offset)
        return round_ste(s) if self.mode == "square_hw" else s

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode in ("original", "bound"):
            off = self.offset(x)
            if self.mode == "bound":
                off = torch.clamp(off, -self.max_offset, self.max_offset)
        else:
            s = self.square_offset(x)
            if self.mode == "square_hw" and self.depthwise and self.offset_groups == 1:
                return dilated_depthwise_select(x, self.weight, s, int(self.max_offset))
            off = square_offsets(s)
        return deform_conv2d(x, off, self.weight, None, 1, 1, 1, self.groups)


def make_block(variant: str, in_ch: int, out_ch: int, max_offset: float = 8.0, offset_groups: int = 1) -> nn.Module:
    """Build the conv block ``variant`` mapping in_ch -> out_ch (no trailing BN/ReLU)."""
    if variant == "k3":
        return nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False)
    if variant == "k3dw":
        return nn.Sequential(pointwise(in_ch, out_ch), nn.Conv2d(out_ch, out_ch, 3, padding=1, groups=out_ch, bias=False))
    if variant in ("deform_original", "deform_bound", "deform_square"):
        mode = variant.split("_")[1]
        return DeformConv(in_ch, out_ch, mode, False, 3, offset_groups, max_offset)
    if variant == "deform_original_depthwise":
        return nn.Sequential(pointwise(in_ch, out_ch),
                             DeformConv(out_ch, out_ch, "original", True, 3, offset_groups, max_offset))
    if variant in ("deform_square_depthwise", "deform_square_depthwise_hw"):
        mode = "square_hw" if variant.endswith("_hw") else "square"
        return nn.Sequential(pointwise(in_ch, out_ch), DeformConv(out_ch, out_ch, mode, True, 1, offset_groups, max_offset))
    raise ValueError(f"unknown conv variant {variant!r}; choose one of {', '.join(VARIANTS)}")
