"""Numpy golden executor of an integer layer program (the reference every other path must equal).

Every op follows :mod:`codenet_pynq.program` and :mod:`codenet_pynq.intmath` literally:

- ``conv``: exact integer accumulation of ``x * w`` over the window (zero padding), then
  :func:`codenet_pynq.intmath.requantize` with the layer's bias, M, S and clamp range.
  Full and grouped convs use a float64 BLAS matmul over integer-valued arrays; this is exact
  because every product and every partial sum is an integer of magnitude at most the layer's
  accumulator bound (:func:`conv_accumulator_bound`), which is asserted to be below 2**53, where
  float64 represents all integers exactly (so the summation order of the BLAS does not matter).
  Depthwise convs accumulate directly in int64.
- per-pixel dilation (``offset``): output pixel ``p`` of the 3x3 depthwise conv reads the taps
  ``p + d * (dy, dx)`` with ``d = 1 + off[p]``; taps outside the map read 0.
- ``maxpool`` 3x3 stride 2 pad 1 (padding never wins), nearest ``upsample`` x2, ``concat``,
  ``slice`` and ``shuffle`` are pure data movement.

Tensors are H x W x C arrays of their 8-bit storage type (``u8``/``off`` -> uint8, ``s8`` ->
int8).
"""

from __future__ import annotations

from typing import Dict, Optional

import numpy as np

from .intmath import accumulator_bound, kind_range, requantize
from .program import Layer, Program, ProgramError

__all__ = [
    "run_program",
    "run_layer",
    "dequantize_outputs",
    "conv_accumulate",
    "conv_accumulator_bound",
    "storage_dtype",
]

FLOAT64_EXACT = 1 << 53


def storage_dtype(kind: str) -> np.dtype:
    """numpy storage type of a tensor kind: int8 for ``s8``, uint8 for ``u8`` and ``off``."""
    if kind == "s8":
        return np.dtype(np.int8)
    if kind in ("u8", "off"):
        return np.dtype(np.uint8)
    raise ProgramError(f"unknown tensor kind {kind!r}: expected 'u8', 's8' or 'off'")


def conv_accumulator_bound(weight: np.ndarray, in_kind: str, max_offset: int = 0) -> int:
    """Largest |acc| (bias excluded) of a conv, which also bounds every partial sum of it.

    Each product ``w * x`` lies between 0 and its extreme for the worst ``x`` of ``in_kind``
    (0 is in every kind's range), so any partial sum is bounded by the full sum of extremes.
    """
    return accumulator_bound(weight, in_kind, np.zeros(weight.shape[0], np.int64), max_offset)


# --------------------------------------------------------------------------- conv kernels
def _windows(xp: np.ndarray, k: int, stride: int, dilation: int, ho: int, wo: int):
    """Yield (ky, kx, view) with view[i, j] = xp[i*stride + ky*dil, j*stride + kx*dil]."""
    for ky in range(k):
        for kx in range(k):
            y0, x0 = ky * dilation, kx * dilation
            yield ky, kx, xp[y0:y0 + stride * (ho - 1) + 1:stride, x0:x0 + stride * (wo - 1) + 1:stride]


def _pad(x: np.ndarray, pad: int, value: int = 0) -> np.ndarray:
    if pad == 0:
        return x
    return np.pad(x, ((pad, pad), (pad, pad), (0, 0)), constant_values=value)


def _dense_conv(xp: np.ndarray, w: np.ndarray, stride: int, dilation: int, ho: int, wo: int) -> np.ndarray:
    """Groups = 1 conv of an already padded input via im2col + float64 matmul (exact, see module doc)."""
    o, k = w.shape[0], w.shape[1]
    if k == 1:
        cols = xp[:stride * (ho - 1) + 1:stride, :stride * (wo - 1) + 1:stride].astype(np.float64)
    else:
        cols = np.empty((ho, wo, k, k, xp.shape[2]), np.float64)
        for ky, kx, view in _windows(xp, k, stride, dilation, ho, wo):
            cols[:, :, ky, kx] = view
    cols = cols.reshape(ho * wo, -1)
    acc = cols @ w.reshape(o, -1).T.astype(np.float64)
    return acc.astype(np.int64).reshape(ho, wo, o)


def _depthwise_conv(xp: np.ndarray, w: np.ndarray, stride: int, dilation: int, ho: int, wo: int) -> np.ndarray:
    """groups = C_in conv (weight I dim 1) of a padded input, accumulated in int64."""
    o, k, cin = w.shape[0], w.shape[1], xp.shape[2]
    src = np.repeat(xp, o // cin, axis=2) if o != cin else xp
    wt = w[..., 0].astype(np.int64)  # (O, k, k)
    acc = np.zeros((ho, wo, o), np.int64)
    for ky, kx, view in _windows(src, k, stride, dilation, ho, wo):
        acc += view * wt[:, ky, kx]
    return acc


def _offset_depthwise_conv(x: np.ndarray, w: np.ndarray, off: np.ndarray) -> np.ndarray:
    """3x3 depthwise conv with dilation ``1 + off[p]`` at output pixel p; outside reads 0."""
    h, wd, cin = x.shape
    o = w.shape[0]
    src = np.repeat(x, o // cin, axis=2) if o != cin else x
    off = np.asarray(off).reshape(h, wd).astype(np.int64)
    reach = 1 + int(off.max(initial=0))
    xp = _pad(src, reach)
    d = 1 + off
    yy, xx = np.meshgrid(np.arange(h), np.arange(wd), indexing="ij")
    wt = w[..., 0].astype(np.int64)
    acc = np.zeros((h, wd, o), np.int64)
    for ky in range(3):
        for kx in range(3):
            rows = yy + reach + d * (ky - 1)
            cols = xx + reach + d * (kx - 1)
            acc += xp[rows, cols] * wt[:, ky, kx]
    return acc


def conv_accumulate(x: np.ndarray, weight: np.ndarray, stride: int = 1, pad: Optional[int] = None,
                    groups: int = 1, dilation: int = 1, offset: Optional[np.ndarray] = None) -> np.ndarray:
    """Exact integer accumulators (bias excluded) of a conv: x H x W x C_in, weight OHWI -> int64 Ho x Wo x O.

    ``offset`` (H x W or H x W x 1 integers >= 0) selects the per-pixel dilation form (3x3
    depthwise, stride 1; ``pad`` and ``dilation`` are then not used).
    """
    x = np.asarray(x)
    w = np.asarray(weight)
    h, wd, cin = x.shape
    o, k, k2, cpg = w.shape
    if k != k2:
        raise ProgramError(f"conv weight must be square, got kernel {k}x{k2}")
    if cin % groups or o % groups or cpg * groups != cin:
        raise ProgramError(f"conv weight {w.shape} does not match {cin} input channels in {groups} groups")
    xi = x.astype(np.int64)
    if offset is not None:
        if k != 3 or stride != 1 or groups != cin:
            raise ProgramError("per-pixel dilation needs a 3x3 depthwise stride-1 conv")
        off = np.asarray(offset)
        if off.size != h * wd or off.min(initial=0) < 0:
            raise ProgramError(f"offset map of shape {off.shape} does not fit a {h}x{wd} input or is negative")
        return _offset_depthwise_conv(xi, w, off)
    pad = k // 2 if pad is None else pad
    ho = (h + 2 * pad - dilation * (k - 1) - 1) // stride + 1
    wo = (wd + 2 * pad - dilation * (k - 1) - 1) // stride + 1
    if ho < 1 or wo < 1:
        raise ProgramError(f"conv output would be empty for a {h}x{wd} input")
    xp = _pad(xi, pad)
    if groups == 1:
        return _dense_conv(xp, w, stride, dilation, ho, wo)
    if cpg == 1:
        return _depthwise_conv(xp, w, stride, dilation, ho, wo)
    og = o // groups
    parts = [_dense_conv(xp[:, :, g * cpg:(g + 1) * cpg], w[g * og:(g + 1) * og], stride, dilation, ho, wo)
             for g in range(groups)]
    return np.concatenate(parts, axis=2)


# --------------------------------------------------------------------------- ops
def _conv(program: Program, layer: Layer, env: Dict[str, np.ndarray]) -> np.ndarray:
    a = layer.attrs
    src = program.tensors[layer.inputs[0]]
    out = program.tensors[layer.output]
    w = layer.arrays["weight"]
    bound = conv_accumulator_bound(w, src.kind, program.max_offset)
    assert bound < FLOAT64_EXACT, f"{layer.name}: accumulator bound {bound} not exact in float64"
    off = None
    if layer.offset is not None:
        off = env[layer.offset]
        if int(off.max(initial=0)) > program.max_offset:
            raise ProgramError(f"{layer.name or 'conv'}: offset {int(off.max())} exceeds max_offset "
                               f"{program.max_offset}")
    acc = conv_accumulate(env[layer.inputs[0]], w, stride=int(a.get("stride", 1)), pad=int(a.get("pad", a["k"] // 2)),
                          groups=int(a.get("groups", 1)), dilation=int(a.get("dilation", 1)), offset=off)
    klo, khi = kind_range(out.kind, program.max_offset)
    lo, hi = int(a.get("lo", klo)), int(a.get("hi", khi))
    y = requantize(acc, layer.arrays["bias"], layer.arrays["M"], layer.arrays["S"], lo, hi)
    return y.astype(storage_dtype(out.kind))


def _maxpool(x: np.ndarray) -> np.ndarray:
    h, w, _ = x.shape
    ho, wo = (h - 1) // 2 + 1, (w - 1) // 2 + 1
    xp = _pad(x.astype(np.int32), 1, value=np.iinfo(np.int32).min)  # padding never wins
    out = None
    for _, _, view in _windows(xp, 3, 2, 1, ho, wo):
        out = view.copy() if out is None else np.maximum(out, view)
    return out.astype(x.dtype)


def _shuffle(x: np.ndarray, groups: int) -> np.ndarray:
    h, w, c = x.shape
    if groups < 1 or c % groups:
        raise ProgramError(f"shuffle with {groups} groups does not divide {c} channels")
    return x.reshape(h, w, groups, c // groups).transpose(0, 1, 3, 2).reshape(h, w, c)


def run_layer(program: Program, layer: Layer, env: Dict[str, np.ndarray]) -> np.ndarray:
    """Execute one layer on the tensors in ``env`` (name -> H x W x C array) and return its output."""
    op = layer.op
    if op == "conv":
        return _conv(program, layer, env)
    x = env[layer.inputs[0]]
    if op == "maxpool":
        return _maxpool(x)
    if op == "upsample":
        return np.repeat(np.repeat(x, 2, axis=0), 2, axis=1)
    if op == "concat":
        return np.concatenate([env[t] for t in layer.inputs], axis=2)
    if op == "slice":
        return np.ascontiguousarray(x[:, :, int(layer.attrs["c0"]):int(layer.attrs["c1"])])
    if op == "shuffle":
        return _shuffle(x, int(layer.attrs["groups"]))
    raise ProgramError(f"unknown op {op!r}")


def run_program(program: Program, image: np.ndarray, return_all: bool = False) -> Dict[str, np.ndarray]:
    """Run ``program`` on a BGR uint8 H x W x 3 image; return role -> H x W x C integer array.

    Outputs keep their 8-bit storage type (int8 for ``s8``). With ``return_all`` the dict also
    holds every tensor of the program under its own name (a role key wins over a tensor that has
    the same name but is not that role's output).
    """
    program.validate()
    info = program.tensors[program.input]
    image = np.asarray(image)
    if image.dtype != np.uint8 or tuple(image.shape) != tuple(info.shape):
        raise ValueError(f"program input {program.input!r} expects a uint8 array of shape {tuple(info.shape)}, "
                         f"got {image.dtype} {tuple(image.shape)}; letterbox the image to the model size first")
    env: Dict[str, np.ndarray] = {program.input: image.astype(storage_dtype(info.kind))}
    for layer in program.layers:
        env[layer.output] = run_layer(program, layer, env)
    outs = {role: env[name] for role, name in program.outputs.items()}
    if return_all:
        merged = dict(env)
        merged.update(outs)
        return merged
    return outs


def dequantize_outputs(program: Program, outs: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """role -> float32 C x H x W real values (int * scale) of the head outputs in ``outs``."""
    res = {}
    for role, name in program.outputs.items():
        if role not in outs:
            continue
        q = np.asarray(outs[role])
        scale = np.float32(program.tensors[name].scale)
        res[role] = np.ascontiguousarray(np.transpose(q.astype(np.float32) * scale, (2, 0, 1)))
    return res
