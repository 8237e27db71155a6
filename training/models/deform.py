"""Deformable convolution in plain PyTorch (CPU and CUDA), no torchvision.

Offsets follow the DCN / ONNX ``DeformConv`` layout: ``offset`` has shape
``(N, 2 * G * kh * kw, Ho, Wo)`` and holds ``(dy, dx)`` pairs, tap-major within each offset
group ``G``. A sample outside the input reads 0; fractional positions are bilinear over the
four neighbours, each neighbour outside the map counting as 0.
"""

from __future__ import annotations

from typing import Tuple

import torch
import torch.nn.functional as F


def _pair(v) -> Tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _bilinear_gather(x: torch.Tensor, py: torch.Tensor, px: torch.Tensor) -> torch.Tensor:
    """Sample ``x`` (N, G, Cg, H, W) at positions (N, G, L) -> (N, G, Cg, L), zero outside."""
    n, g, cg, h, w = x.shape
    flat = x.reshape(n, g, cg, h * w)
    y0 = torch.floor(py)
    x0 = torch.floor(px)
    ly, lx = py - y0, px - x0
    y0, x0 = y0.long(), x0.long()
    out = None
    for dy, wy in ((0, 1 - ly), (1, ly)):
        for dx, wx in ((0, 1 - lx), (1, lx)):
            yy, xx = y0 + dy, x0 + dx
            valid = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
            idx = (yy.clamp(0, h - 1) * w + xx.clamp(0, w - 1)).unsqueeze(2).expand(n, g, cg, -1)
            vals = torch.gather(flat, 3, idx)
            weight = (wy * wx * valid.to(x.dtype)).unsqueeze(2)
            term = vals * weight
            out = term if out is None else out + term
    return out


def deform_conv2d(
    x: torch.Tensor,
    offset: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride=1,
    padding=1,
    dilation=1,
    groups: int = 1,
) -> torch.Tensor:
    """Deformable convolution (DCNv1) with the offset layout described in the module doc.

    The number of offset groups is ``offset.shape[1] // (2 * kh * kw)``.
    """
    n, cin, h, w = x.shape
    cout, cin_g, kh, kw = weight.shape
    sh, sw = _pair(stride)
    ph, pw = _pair(padding)
    dh, dw = _pair(dilation)
    k = kh * kw
    ho = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    wo = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    og = offset.shape[1] // (2 * k)
    if offset.shape[1] != 2 * og * k or cin % og != 0 or offset.shape[2:] != (ho, wo):
        raise ValueError(f"offset shape {tuple(offset.shape)} does not fit input {tuple(x.shape)} "
                         f"and a {kh}x{kw} kernel (expected (N, 2*G*{k}, {ho}, {wo}))")
    off = offset.reshape(n, og, k, 2, ho, wo)
    dev, dt = x.device, x.dtype
    base_y = (torch.arange(ho, device=dev, dtype=dt) * sh - ph).view(1, 1, 1, ho, 1)
    base_x = (torch.arange(wo, device=dev, dtype=dt) * sw - pw).view(1, 1, 1, 1, wo)
    ky = (torch.arange(kh, device=dev, dtype=dt) * dh).repeat_interleave(kw).view(1, 1, k, 1, 1)
    kx = (torch.arange(kw, device=dev, dtype=dt) * dw).repeat(kh).view(1, 1, k, 1, 1)
    py = (base_y + ky + off[:, :, :, 0]).reshape(n, og, k * ho * wo)
    px = (base_x + kx + off[:, :, :, 1]).reshape(n, og, k * ho * wo)
    cols = _bilinear_gather(x.reshape(n, og, cin // og, h, w), py, px)  # N, G, Cg, K*L
    cols = cols.reshape(n, groups, cin // groups, k, ho * wo)
    wg = weight.reshape(groups, cout // groups, cin_g, k)
    out = torch.einsum("ngckl,gock->ngol", cols, wg).reshape(n, cout, ho, wo)
    if bias is not None:
        out = out + bias.view(1, -1, 1, 1)
    return out


def square_offsets(s: torch.Tensor, kernel_size: int = 3, dilation: int = 1) -> torch.Tensor:
    """Expand square offsets ``s`` (N, G, H, W) to DCN offsets (N, 2*G*k*k, H, W).

    Tap (i, j) of a k x k kernel with centre c moves by ``s * (i - c, j - c) * dilation``:
    the window keeps its square shape and dilates by ``1 + s``.
    """
    n, g, h, w = s.shape
    c = (kernel_size - 1) / 2
    r = (torch.arange(kernel_size, device=s.device, dtype=s.dtype) - c) * dilation
    dy = r.repeat_interleave(kernel_size)
    dx = r.repeat(kernel_size)
    d = torch.stack([dy, dx], dim=1).view(1, 1, kernel_size * kernel_size, 2, 1, 1)
    return (s.view(n, g, 1, 1, h, w) * d).reshape(n, 2 * g * kernel_size * kernel_size, h, w)


class RoundSTE(torch.autograd.Function):
    """floor(x + 0.5) forward (the contract's rounding), identity gradient backward."""

    @staticmethod
    def forward(ctx, x):  # noqa: D102
        return torch.floor(x + 0.5)

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        return grad


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """Round half up with a straight-through gradient."""
    return RoundSTE.apply(x)


def dilated_depthwise_select(x: torch.Tensor, weight: torch.Tensor, s: torch.Tensor, max_offset: int,
                             all_dilations: bool = False) -> torch.Tensor:
    """Depthwise 3x3 with per-pixel integer dilation ``1 + s``, s integer-valued in [0, B].

    Computes the depthwise conv at every dilation 1..B+1 and selects per pixel (taps outside
    the map read 0: the conv's zero padding). Exact, and fast on CPU because it only uses
    ordinary convolutions.

    Gradient with respect to ``s`` (which is the rounded offset, so this is the
    straight-through path): the finite difference ``out(s + 1) - out(s)`` (backward difference
    at s = B), i.e. how the output changes when the window grows by one pixel.
    """
    c = x.shape[1]
    s_int = torch.floor(s.detach() + 0.5).clamp(0, max_offset)
    if all_dilations or torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
        present = list(range(max_offset + 1))  # a traced graph must not depend on this input
    else:  # eager: only the dilations that occur (early in training that is one or two)
        present = sorted(int(v) for v in torch.unique(s_int).tolist())
    need = set(present)
    if s.requires_grad:  # finite differences need the neighbouring dilations too
        need |= {min(d + 1, max_offset) for d in present} | {max_offset - 1 for d in present if d == max_offset}
    convs = {d: F.conv2d(x, weight, None, 1, d + 1, d + 1, c) for d in sorted(need)}
    out = convs[present[0]]
    for d in present[1:]:
        out = torch.where(s_int == d, convs[d], out)
    if not s.requires_grad:
        return out

    def step(d: int) -> torch.Tensor:
        return convs[d + 1] - convs[d] if d < max_offset else convs[d] - convs[d - 1]

    with torch.no_grad():
        diff = step(present[0])
        for d in present[1:]:
            diff = torch.where(s_int == d, step(d), diff)
    return out + (s - s.detach()) * diff
