"""Export-time formulation of the float graph (ONNX Runtime CPU speed), same values as eager.

Only the hardware square-deformable block (``deform_square_depthwise_hw``: 1x1 pointwise, 1x1
offset conv, depthwise 3x3 with a per-pixel integer dilation ``1 + s``) is rewritten; every other
module is exported as it is. Eager PyTorch evaluates that block as one dilated depthwise conv per
dilation followed by a per-pixel select over all channels (see
:func:`~codenet_pynq.training.models.deform.dilated_depthwise_select`); exported literally, that
select is a chain of full-resolution ``Where`` ops that ONNX Runtime runs in plain NCHW, with a
layout reorder after every conv -- most of the float graph's time.

The per-pixel select commutes with everything that acts on each pixel alone: the BN after the
block (folded into the depthwise weights), the ReLU (a select of ReLUs is the ReLU of the select)
and any 1x1 conv (the select picks the same dilation for every channel of a pixel). So:

- **Heads** (block, BN, ReLU, 1x1 conv to 20/2/2 channels): each dilation branch runs
  ``depthwise conv (+BN bias) -> ReLU -> 1x1 output conv``, all convolutions that ONNX Runtime
  keeps in its blocked NCHWc layout and fuses, and the select happens on the few output channels
  (one ``GatherElements`` over the stacked branches).
- **Decoder stages** (block, BN, ReLU, nearest upsample): the next layer is spatial, so the select
  stays at the block's channels, before the upsample. It is done inside the fused NCHWc conv:
  branch ``d`` adds a penalty map that is 0 where ``s == d`` and ``-1e30`` elsewhere before its
  ReLU, so every other pixel becomes exactly 0, and the branches are summed (exactly one term is
  non-zero at each pixel).

The nearest upsample at the end of a decoder stage moves past the next block's 1x1 convs (the
pointwise conv and the offset conv act on each pixel alone): they run on the coarse map, 4x
fewer pixels, and the upsample follows them, just before the dilated depthwise branches.

Branches whose off-centre taps all fall outside the map (dilation >= the map size, small maps)
are identical; they are computed once. Everything is exact up to float summation order: the
rounded offsets ``s`` are computed by the same ops as eager, and a select / a sum with zeros does
not round. The graph's spatial size is fixed at export (the artifact's input size).

Measured on a 2-core AMD EPYC (ONNX Runtime 1.32, one thread, main variant at 512, every dilation
present): literal export ~180 ms, this formulation ~105 ms, the same network with plain depthwise
3x3 blocks (k3dw) ~52 ms; one head (128 channels, 128 x 128, 20 outputs): literal ~46 ms, this
~27 ms. Slower alternatives measured on one head-sized layer: one ONNX ``DeformConv`` with
``s * (dy, dx)`` offsets (~2x the nine conv branches), a ``Gather`` of NHWC rows + ``Mul`` +
``Add`` per tap (~1.5x), mask ``Mul`` + ``Add`` selects after the nine convs (about the Where
chain), ``GridSample`` nearest over the nine taps (~4x the Where chain); in the heads, the select at 128 channels with the decoder's penalty trick (equal
for the heatmap head, 25 % slower for wh/reg); fusing the wh and reg heads into one 256-channel
stream (no gain); ``If`` nodes that skip absent dilations (ONNX Runtime does not use its NCHWc
layout inside subgraphs: slower even with 3 of 9 dilations present); an n-ary ``Sum`` for the
decoder accumulation (slower than the ``Add`` chain).

What limits it: a static graph evaluates every dilation at every pixel, so each head runs nine
depthwise convs and nine 1x1 output convs over the whole stride-4 map, and NCHWc pads the output
convs to 16 channels (2 -> 16 for wh/reg, 20 -> 32 for the heatmap): ~1.7 GMACs of head work
instead of ~0.2 in k3dw, about 1.6-1.8x the k3dw network end to end (measured in docs/benchmarks.md).
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .models.blocks import DeformConv
from .models.centernet import CoDeNet, DecoderStage, Head

__all__ = ["ExportGraph", "hw_square_block", "dilation_branches", "head_select", "decoder_select"]

# A penalty far beyond any activation: conv + bias + PENALTY rounds to PENALTY, ReLU makes it 0.
PENALTY = -1.0e30


def hw_square_block(block: nn.Module) -> Optional[Tuple[nn.Module, DeformConv]]:
    """``(pointwise, deform)`` when ``block`` is a hardware square depthwise block, else None."""
    if not isinstance(block, nn.Sequential) or len(block) != 2:
        return None
    pw, dc = block[0], block[1]
    if (isinstance(dc, DeformConv) and dc.mode == "square_hw" and dc.depthwise and dc.offset_groups == 1
            and dc.offset.kernel_size == (1, 1)):
        return pw, dc
    return None


def dilation_branches(height: int, width: int, max_offset: int) -> List[int]:
    """Offsets ``d`` (dilation ``1 + d``) that need their own conv on an ``height x width`` map.

    Once ``1 + d >= max(height, width)`` every off-centre tap lies outside the map and the conv is
    the centre tap alone, the same for all larger ``d``: only the first such ``d`` is kept.
    """
    out = []
    for d in range(int(max_offset) + 1):
        out.append(d)
        if 1 + d >= max(height, width):
            break
    return out


def _fold_bn(weight: torch.Tensor, bn: nn.BatchNorm2d) -> Tuple[torch.Tensor, torch.Tensor]:
    """Depthwise weight and bias with the (eval-mode) BN that follows folded in."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return weight * scale.view(-1, 1, 1, 1), bn.bias - bn.running_mean * scale


def _offsets(dc: DeformConv, x: torch.Tensor) -> torch.Tensor:
    """Integer offsets s (N, 1, H, W) as float, by the same ops as the eager block."""
    return torch.floor(torch.clamp(dc.offset(x), 0.0, dc.max_offset) + 0.5)


def _branch_index(s: torch.Tensor, branches: Sequence[int]) -> torch.Tensor:
    """Index of the branch each pixel uses (branches are 0..k-1, the last also covers larger s)."""
    return torch.clamp(s, max=float(branches[-1]))


def _block_parts(block: nn.Module, bn: nn.BatchNorm2d, x: torch.Tensor, up: Optional[nn.Module] = None):
    """Pointwise output, rounded offsets, BN-folded depthwise weight and bias, channels and
    dilation branches of a hardware square block applied to ``x``, or to ``up(x)`` when the
    previous stage's nearest upsample ``up`` is still pending: the 1x1 convs act on each pixel
    alone, so they run on ``x`` (4x fewer pixels) and the upsample follows them."""
    pw, dc = hw_square_block(block)
    y = pw(x)
    s = _offsets(dc, y)
    if up is not None:
        y, s = up(y), up(s)
    w, b = _fold_bn(dc.weight, bn)
    branches = dilation_branches(int(y.shape[2]), int(y.shape[3]), int(dc.max_offset))
    return y, s, w, b, int(dc.weight.shape[0]), branches


def head_select(head: Head, x: torch.Tensor, up: Optional[nn.Module] = None) -> torch.Tensor:
    """``head(up(x))`` for a hardware square head, with the select after the output conv."""
    y, s, w, b, c, branches = _block_parts(head.conv, head.bn, x, up)
    outs = [head.out(F.relu(F.conv2d(y, w, b, 1, d + 1, d + 1, c))) for d in branches]
    if len(outs) == 1:
        return outs[0]
    stacked = torch.stack(outs, 0)                                   # (B, N, K, H, W)
    idx = _branch_index(s, branches).long().unsqueeze(0).expand(1, -1, outs[0].shape[1], -1, -1)
    return torch.gather(stacked, 0, idx)[0]


def decoder_select(stage: DecoderStage, x: torch.Tensor, up: Optional[nn.Module] = None) -> torch.Tensor:
    """``stage(up(x))`` for a hardware square decoder stage, select fused into the NCHWc convs,
    *without* the stage's own final upsample (the caller passes it on to the next consumer)."""
    y, s, w, b, c, branches = _block_parts(stage.conv, stage.bn, x, up)
    if len(branches) == 1:
        return F.relu(F.conv2d(y, w, b, 1, 1, 1, c))
    idx = _branch_index(s, branches)
    ones = y.new_ones(c, 1, 1, 1)
    zero, penalty = y.new_zeros(()), y.new_full((), PENALTY)
    total = None
    for i, d in enumerate(branches):
        # 0 where this branch is selected, PENALTY elsewhere, broadcast to all channels by a
        # 1x1 conv with a constant weight so that ONNX Runtime produces it in NCHWc directly
        pen = F.conv2d(torch.where(idx == i, zero, penalty), ones)
        term = F.relu(F.conv2d(y, w, b, 1, d + 1, d + 1, c) + pen)
        total = term if total is None else total + term
    return total


class ExportGraph(nn.Module):
    """CoDeNet forward for export: hardware square blocks rewritten, all else unchanged.

    Same values as ``model(x)`` in eval mode (up to float summation order); for any other
    variant it is exactly ``model(x)``.
    """

    def __init__(self, model: CoDeNet):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        m = self.model
        f, up = m.backbone(x), None  # up: a nearest upsample of f still to apply
        for stage in m.decoder:
            if hw_square_block(stage.conv):
                f, up = decoder_select(stage, f, up), stage.up
            else:
                f, up = stage(f if up is None else up(f)), None
        heads = (("hm", m.hm), ("wh", m.wh), ("reg", m.reg))
        if not all(hw_square_block(h.conv) for _, h in heads) and up is not None:
            f, up = up(f), None
        return {name: (head_select(h, f, up) if hw_square_block(h.conv) else h(f)) for name, h in heads}
