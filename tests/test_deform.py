"""Deformable convolution: every mode against an independent naive loop, values and gradients.

The reference here samples each tap of each output pixel one at a time (bilinear over the four
neighbours, a neighbour outside the map reads 0) and accumulates the taps in a Python loop, in
float64, with torch.autograd providing its gradients. Nothing of ``deform.py`` is reused.
"""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

from codenet_pynq.training.models.blocks import DeformConv, make_block  # noqa: E402
from codenet_pynq.training.models.deform import (  # noqa: E402
    deform_conv2d,
    dilated_depthwise_select,
    round_ste,
    square_offsets,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


TAPS = [(i, j) for i in range(3) for j in range(3)]  # row-major 3x3, centre (1, 1)


# ----------------------------------------------------------------------------- reference


def _sample(img: torch.Tensor, py: torch.Tensor, px: torch.Tensor) -> torch.Tensor:
    """Bilinear sample of img (C, H, W) at one real position; a neighbour outside reads 0."""
    _, h, w = img.shape
    y0, x0 = math.floor(float(py.detach())), math.floor(float(px.detach()))
    fy, fx = py - y0, px - x0  # tensors: carry the gradient w.r.t. the position
    out = img.new_zeros(img.shape[0])
    for yy, wy in ((y0, 1 - fy), (y0 + 1, fy)):
        for xx, wx in ((x0, 1 - fx), (x0 + 1, fx)):
            if 0 <= yy < h and 0 <= xx < w:
                out = out + wy * wx * img[:, yy, xx]
    return out


def naive_deform(x: torch.Tensor, offset: torch.Tensor, weight: torch.Tensor, groups: int) -> torch.Tensor:
    """3x3 deformable conv, stride 1, padding 1: loops over images, pixels and taps.

    ``offset`` (N, 2*G*9, H, W): (dy, dx) per tap, tap-major within each offset group G.
    """
    n, cin, h, w = x.shape
    cout = weight.shape[0]
    og = offset.shape[1] // 18
    cin_og, cin_g, cout_g = cin // og, cin // groups, cout // groups
    rows = []
    for b in range(n):
        pix = []
        for y in range(h):
            for xx in range(w):
                # samples[c][k]: input channel c at tap k of this pixel
                cols = []
                for g in range(og):
                    chans = x[b, g * cin_og:(g + 1) * cin_og]
                    taps = []
                    for k, (i, j) in enumerate(TAPS):
                        dy = offset[b, g * 18 + 2 * k, y, xx]
                        dx = offset[b, g * 18 + 2 * k + 1, y, xx]
                        taps.append(_sample(chans, y - 1 + i + dy, xx - 1 + j + dx))
                    cols.append(torch.stack(taps, 1))  # (cin_og, 9)
                samples = torch.cat(cols, 0)  # (cin, 9)
                out = []
                for o in range(cout):
                    g = o // cout_g
                    acc = x.new_zeros(())
                    for ci in range(cin_g):
                        for k in range(9):
                            acc = acc + weight[o, ci, k // 3, k % 3] * samples[g * cin_g + ci, k]
                    out.append(acc)
                pix.append(torch.stack(out))
        rows.append(torch.stack(pix, 1).reshape(cout, h, w))
    return torch.stack(rows)


def naive_square_offsets(s: torch.Tensor) -> torch.Tensor:
    """(N, G, H, W) dilation offsets -> (N, 18G, H, W): tap (i, j) moves by s * (i - 1, j - 1)."""
    n, g, h, w = s.shape
    chans = []
    for gi in range(g):
        for i, j in TAPS:
            chans += [s[:, gi] * (i - 1), s[:, gi] * (j - 1)]
    return torch.stack(chans, 1)


def reference_block(dc: DeformConv, x: torch.Tensor) -> torch.Tensor:
    """What a DeformConv module computes, written from its documentation.

    The hardware form with one offset group on a depthwise conv takes its s-gradient as the
    finite difference out(s + 1) - out(s) (out(B) - out(B - 1) at s = B) instead of the
    bilinear derivative.
    """
    raw = F.conv2d(x, dc.offset.weight, dc.offset.bias, padding=dc.offset.padding)
    b = dc.max_offset
    if dc.mode == "original":
        off = raw
    elif dc.mode == "bound":
        off = torch.clamp(raw, -b, b)
    else:
        s = torch.clamp(raw, 0.0, b)
        if dc.mode == "square_hw":  # round half up, straight-through gradient
            s = s + (torch.floor(s + 0.5) - s).detach()
            if dc.depthwise and dc.offset_groups == 1:
                s_int = s.detach()
                with torch.no_grad():
                    hi = torch.where(s_int < b, s_int + 1, s_int)
                    lo = torch.where(s_int < b, s_int, s_int - 1)
                    diff = (naive_deform(x.detach(), naive_square_offsets(hi), dc.weight.detach(), dc.groups)
                            - naive_deform(x.detach(), naive_square_offsets(lo), dc.weight.detach(), dc.groups))
                out = naive_deform(x, naive_square_offsets(s_int), dc.weight, dc.groups)
                return out + (s - s_int) * diff
        off = naive_square_offsets(s)
    return naive_deform(x, off, dc.weight, dc.groups)


def _grads(out: torch.Tensor, g: torch.Tensor, *leaves: torch.Tensor):
    return torch.autograd.grad((out * g).sum(), leaves, allow_unused=True)


# ----------------------------------------------------------------------------- functional


@pytest.mark.parametrize("groups, og", [(1, 1), (1, 2), (4, 1), (4, 2)])
def test_deform_conv2d_matches_naive_loop(groups, og):
    gen = torch.Generator().manual_seed(10 * groups + og)
    n, c, h, w = 2, 4, 5, 4
    x = torch.randn(n, c, h, w, generator=gen, dtype=torch.float64, requires_grad=True)
    wt = torch.randn(c, c // groups, 3, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    off = (3 * torch.rand(n, 18 * og, h, w, generator=gen, dtype=torch.float64) - 1.5).requires_grad_(True)
    g = torch.randn(n, c, h, w, generator=gen, dtype=torch.float64)
    got = deform_conv2d(x, off, wt, None, 1, 1, 1, groups)
    ref = naive_deform(x, off, wt, groups)
    torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-10)
    for a, b in zip(_grads(got, g, x, wt, off), _grads(ref, g, x, wt, off)):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


def test_deform_conv2d_bias_and_bad_offset_shape():
    x = torch.randn(1, 2, 4, 4, dtype=torch.float64)
    wt = torch.randn(3, 2, 3, 3, dtype=torch.float64)
    bias = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    off = torch.zeros(1, 18, 4, 4, dtype=torch.float64)
    torch.testing.assert_close(deform_conv2d(x, off, wt, bias), F.conv2d(x, wt, bias, padding=1))
    with pytest.raises(ValueError, match="offset shape"):
        deform_conv2d(x, torch.zeros(1, 17, 4, 4, dtype=torch.float64), wt)


def test_square_offsets_layout():
    s = torch.rand(2, 2, 3, 4, dtype=torch.float64) * 4
    torch.testing.assert_close(square_offsets(s), naive_square_offsets(s))


# ----------------------------------------------------------------------------- modules


MODES = ["original", "bound", "square", "square_hw"]


@pytest.mark.parametrize("og", [1, 2])
@pytest.mark.parametrize("depthwise", [False, True])
@pytest.mark.parametrize("mode", MODES)
def test_deform_module_matches_naive_loop(mode, depthwise, og):
    """Values and gradients (input, weight, offset conv = the offsets' gradient) of every mode."""
    torch.manual_seed(8 * MODES.index(mode) + 2 * depthwise + og)
    c, h, w = 4, 5, 4
    dc = DeformConv(c, c, mode, depthwise, offset_kernel=3, offset_groups=og, max_offset=2.0).double()
    with torch.no_grad():
        dc.offset.weight.normal_(0.0, 0.4)
        dc.offset.bias.uniform_(0.3, 1.2) if mode.startswith("square") else dc.offset.bias.normal_(0.0, 0.5)
    x = torch.randn(1, c, h, w, dtype=torch.float64, requires_grad=True)
    g = torch.randn(1, c, h, w, dtype=torch.float64)
    got = dc(x)
    ref = reference_block(dc, x)
    torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-10)
    leaves = (x, dc.weight, dc.offset.weight, dc.offset.bias)
    got_g, ref_g = _grads(got, g, *leaves), _grads(ref, g, *leaves)
    names = ("input", "weight", "offset weight", "offset bias")
    for name, a, b in zip(names, got_g, ref_g):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-9, msg=lambda m, n=name: f"grad {n}: {m}")


def test_deform_module_rejects_bad_arguments():
    with pytest.raises(ValueError, match="unknown deformable mode"):
        DeformConv(4, 4, "nope", True)
    with pytest.raises(ValueError, match="in_ch == out_ch"):
        DeformConv(4, 8, "square", True)


# ----------------------------------------------------------------------------- special cases


@pytest.mark.parametrize("depthwise", [False, True])
def test_square_zero_offset_is_plain_conv(depthwise):
    x = torch.randn(2, 6, 7, 5, dtype=torch.float64)
    groups = 6 if depthwise else 1
    wt = torch.randn(6, 6 // groups, 3, 3, dtype=torch.float64)
    off = square_offsets(torch.zeros(2, 1, 7, 5, dtype=torch.float64))
    torch.testing.assert_close(deform_conv2d(x, off, wt, None, 1, 1, 1, groups), F.conv2d(x, wt, padding=1, groups=groups))


@pytest.mark.parametrize("s", [0, 1, 2, 3, 6])
@pytest.mark.parametrize("depthwise", [False, True])
def test_constant_integer_offset_is_dilated_conv(s, depthwise):
    x = torch.randn(1, 4, 9, 8, dtype=torch.float64)
    groups = 4 if depthwise else 1
    wt = torch.randn(4, 4 // groups, 3, 3, dtype=torch.float64)
    dil = F.conv2d(x, wt, padding=1 + s, dilation=1 + s, groups=groups)
    sm = torch.full((1, 1, 9, 8), float(s), dtype=torch.float64)
    torch.testing.assert_close(deform_conv2d(x, square_offsets(sm), wt, None, 1, 1, 1, groups), dil)
    if depthwise:
        torch.testing.assert_close(dilated_depthwise_select(x, wt, sm, 8), dil)


def _random_s(shape, max_offset, gen):
    return torch.randint(0, max_offset + 1, shape, generator=gen).to(torch.float64)


@pytest.mark.parametrize("all_dilations", [False, True])
def test_select_per_pixel_matches_naive_loop(all_dilations):
    gen = torch.Generator().manual_seed(5)
    b = 3
    x = torch.randn(2, 3, 6, 7, generator=gen, dtype=torch.float64, requires_grad=True)
    wt = torch.randn(3, 1, 3, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    s = _random_s((2, 1, 6, 7), b, gen)
    g = torch.randn(2, 3, 6, 7, generator=gen, dtype=torch.float64)
    got = dilated_depthwise_select(x, wt, s, b, all_dilations=all_dilations)
    ref = naive_deform(x, naive_square_offsets(s), wt, groups=3)
    torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-10)
    for a, r in zip(_grads(got, g, x, wt), _grads(ref, g, x, wt)):
        torch.testing.assert_close(a, r, rtol=1e-9, atol=1e-9)


def test_select_rounds_and_clamps_s():
    x = torch.randn(1, 2, 8, 8, dtype=torch.float64)
    wt = torch.randn(2, 1, 3, 3, dtype=torch.float64)
    s = torch.tensor([-0.4, 0.49, 0.5, 1.5, 2.7, 9.0], dtype=torch.float64).repeat(11)[:64].view(1, 1, 8, 8)
    want = torch.clamp(torch.floor(s + 0.5), 0, 3)
    torch.testing.assert_close(dilated_depthwise_select(x, wt, s, 3), dilated_depthwise_select(x, wt, want, 3))


def _dilated(x: torch.Tensor, wt: torch.Tensor, d: int) -> torch.Tensor:
    return F.conv2d(x, wt, padding=1 + d, dilation=1 + d, groups=x.shape[1])


def test_select_s_gradient_is_finite_difference():
    """d out / d s = out(s + 1) - out(s), and out(B) - out(B - 1) at s = B."""
    gen = torch.Generator().manual_seed(7)
    b = 4
    x = torch.randn(1, 3, 7, 6, generator=gen, dtype=torch.float64)
    wt = torch.randn(3, 1, 3, 3, generator=gen, dtype=torch.float64)
    s = _random_s((1, 1, 7, 6), b, gen)
    s[0, 0, 0, :3] = torch.tensor([0.0, b, b - 1.0])  # make sure both ends occur
    s.requires_grad_(True)
    g = torch.randn(1, 3, 7, 6, generator=gen, dtype=torch.float64)
    (gs,) = _grads(dilated_depthwise_select(x, wt, s, b), g, s)
    outs = [_dilated(x, wt, d) for d in range(b + 1)]
    want = torch.zeros_like(s)
    for yy in range(7):
        for xx in range(6):
            d = int(s[0, 0, yy, xx])
            lo, hi = (d, d + 1) if d < b else (b - 1, b)
            want[0, 0, yy, xx] = (g[0, :, yy, xx] * (outs[hi][0, :, yy, xx] - outs[lo][0, :, yy, xx])).sum()
    torch.testing.assert_close(gs, want, rtol=1e-10, atol=1e-10)


# ----------------------------------------------------------------------------- rounding, train/eval


def test_round_ste_forward_and_backward():
    v = torch.tensor([-1.5, -0.5, -0.49, 0.0, 0.49, 0.5, 1.5, 2.5, 7.99], dtype=torch.float64, requires_grad=True)
    out = round_ste(v)
    torch.testing.assert_close(out, torch.floor(v.detach() + 0.5))
    assert out.tolist() == [-1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 2.0, 3.0, 8.0]  # half up, not half even
    (grad,) = torch.autograd.grad((out * torch.arange(9.0, dtype=torch.float64)).sum(), v)
    torch.testing.assert_close(grad, torch.arange(9.0, dtype=torch.float64))


def _offset_spread(dc: DeformConv, x: torch.Tensor, lo: float, hi: float) -> None:
    with torch.no_grad():
        dc.offset.weight.normal_()
        raw = F.conv2d(x, dc.offset.weight, padding=dc.offset.padding)
        dc.offset.weight.mul_((hi - lo) / 4 / raw.std())
        dc.offset.bias.fill_((hi + lo) / 2)


@pytest.mark.parametrize("og", [1, 2])
def test_hardware_block_same_forward_in_train_and_eval(og):
    torch.manual_seed(og)
    x = torch.randn(2, 8, 10, 9)
    dc = DeformConv(8, 8, "square_hw", True, offset_kernel=1, offset_groups=og, max_offset=4.0)
    _offset_spread(dc, x, -1.0, 5.0)
    dc.train()
    y_train = dc(x.clone().requires_grad_(True))
    dc.eval()
    with torch.no_grad():
        y_eval = dc(x)
    torch.testing.assert_close(y_train.detach(), y_eval, rtol=0, atol=0)
    assert len(torch.unique(dc.square_offset(x))) > 2  # several dilations really occur


def test_hardware_block_train_vs_eval_full_block():
    """The whole block (pointwise + BN + deformable) with BN statistics frozen: same values."""
    torch.manual_seed(3)
    block = make_block("deform_square_depthwise_hw", 6, 8, max_offset=3.0)
    x = torch.randn(2, 6, 8, 8)
    _offset_spread(block[1], block[0](x).detach(), -1.0, 4.0)
    block.eval()
    with torch.no_grad():
        y_eval = block(x)
    block.train()
    block[0][1].eval()  # BN: use running statistics in both
    y_train = block(x.requires_grad_(True))
    torch.testing.assert_close(y_train.detach(), y_eval, rtol=0, atol=0)
