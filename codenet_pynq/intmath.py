"""The integer contract: every rounding and clamp of the quantized model lives here.

Every implementation (numpy golden, integer ONNX graph, HLS C++, PyTorch fake-quant) follows
these definitions; `docs/quantization.md` states them in prose.

- Tensors are NHWC, 8-bit, zero point 0. Kind ``u8`` holds 0..255 (after ReLU), ``s8`` holds
  -128..127, ``off`` holds whole-pixel square offsets 0..B (stored as u8).
- Weights are symmetric per output channel: int4 in [-7, 7] (int8 in [-127, 127] for the first
  layer). Bias is int32 in accumulator units.
- Requantisation per output channel c, in 64-bit integers::

      y = clamp(((acc + bias[c]) * M[c] + (1 << (S[c] - 1))) >> S[c], lo, hi)

  ``>>`` is an arithmetic (floor) shift, so the rounding is "round half up" (towards +inf).
  ``1 <= M[c] < 2**15`` and ``1 <= S[c] <= MAX_SHIFT``.
- Multiplier precision (an export policy inside the contract, see :func:`choose_multipliers`):
  a layer's M get as many bits (up to 15, at least :data:`FLOAT32_REQUANT_MIN_BITS`) as keep
  ``(acc + bias) * M + 2**(S-1)`` and all its partial sums within 2**24, so that a float32
  engine can requantise exactly inside the conv; a layer that cannot have that keeps 15 bits.
"""

from __future__ import annotations

import math
from typing import Tuple

import numpy as np

M_BITS = 15
MAX_SHIFT = 47
ACC_BITS = 32
FLOAT32_EXACT = 1 << 24  # every integer of magnitude <= 2**24 is exact in float32
FLOAT32_REQUANT_MIN_BITS = 6  # fewer bits of M than this: keep 15 and requantise in float64

KIND_RANGES = {"u8": (0, 255), "s8": (-128, 127)}
WEIGHT_QMAX = {4: 7, 8: 127}


def kind_range(kind: str, max_offset: int = 0) -> Tuple[int, int]:
    """Clamp range (lo, hi) of a tensor kind; ``off`` is [0, max_offset]."""
    if kind == "off":
        return 0, int(max_offset)
    try:
        return KIND_RANGES[kind]
    except KeyError:
        raise ValueError(f"unknown tensor kind {kind!r}: expected 'u8', 's8' or 'off'") from None


def quantize_multiplier(real: float, bits: int = M_BITS) -> Tuple[int, int]:
    """Return (M, S) with M / 2**S closest to ``real``, M < 2**bits as large as possible.

    ``real`` must be positive; S is at least 1 (the rounding term needs it) and at most
    MAX_SHIFT; ``bits`` is at most M_BITS. Raises ValueError when ``real`` cannot be represented.
    """
    if not 1 <= bits <= M_BITS:
        raise ValueError(f"multiplier bits must be in [1, {M_BITS}], got {bits}")
    if not (real > 0.0 and math.isfinite(real)):
        raise ValueError(f"requantisation multiplier must be positive and finite, got {real!r}")
    # choose S so that real * 2**S lies in [2**(bits-1), 2**bits)
    shift = bits - 1 - math.floor(math.log2(real))
    shift = min(max(shift, 1), MAX_SHIFT)
    m = int(round(real * (1 << shift)))
    if m >= (1 << bits):  # rounding pushed it over: one bit less
        shift -= 1
        m = int(round(real * (1 << shift)))
    if shift < 1 or m >= (1 << bits):
        raise ValueError(f"multiplier {real:g} too large for M < 2**{bits} with S >= 1")
    if m < 1:
        raise ValueError(f"multiplier {real:g} too small for S <= {MAX_SHIFT}")
    return m, shift


def quantize_multipliers(real: np.ndarray, bits: int = M_BITS) -> Tuple[np.ndarray, np.ndarray]:
    """Vectorised :func:`quantize_multiplier` -> (M int32, S int32)."""
    pairs = [quantize_multiplier(float(r), bits) for r in np.asarray(real, dtype=np.float64).ravel()]
    m = np.array([p[0] for p in pairs], dtype=np.int32)
    s = np.array([p[1] for p in pairs], dtype=np.int32)
    return m, s


def requant_fits_float32(bound: np.ndarray, bias: np.ndarray, m: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Per channel: can a float32 engine compute ``(acc + bias) * M + 2**(S-1)`` exactly?

    ``bound`` is the channel's accumulator bound without bias (:func:`channel_bounds`). With the
    weights pre-multiplied by M and everything in units of 2**-S, every product, every partial
    sum and the rounded-bias term are integers of magnitude at most
    ``bound * M + |bias * M + 2**(S-1)|``; at most 2**24 they are all exact in float32, in any
    summation order.
    """
    m64 = np.asarray(m, dtype=np.int64)
    s64 = np.asarray(s, dtype=np.int64)
    top = np.asarray(bound, dtype=np.int64) * m64 + np.abs(np.asarray(bias, dtype=np.int64) * m64
                                                           + (np.int64(1) << (s64 - 1)))
    return top <= FLOAT32_EXACT


def choose_multipliers(real: np.ndarray, bound: np.ndarray, bias: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """The exporter's (M, S) for one layer: each channel's M gets the most bits (<= 15) with
    which :func:`requant_fits_float32` holds; if some channel would get fewer than
    FLOAT32_REQUANT_MIN_BITS the whole layer keeps 15-bit multipliers (requantised in float64
    on the CPU). Costs at most 2**-6 relative error per channel's scale (docs/quantization.md)."""
    real = np.asarray(real, dtype=np.float64).ravel()
    bound, bias = np.asarray(bound), np.asarray(bias)
    full_m, full_s = quantize_multipliers(real)
    m_out, s_out = full_m.copy(), full_s.copy()
    done = requant_fits_float32(bound, bias, m_out, s_out)
    for bits in range(M_BITS - 1, FLOAT32_REQUANT_MIN_BITS - 1, -1):
        if done.all():
            break
        m, s = quantize_multipliers(real[~done], bits)
        fits = requant_fits_float32(bound[~done], bias[~done], m, s)
        idx = np.flatnonzero(~done)[fits]
        m_out[idx], s_out[idx] = m[fits], s[fits]
        done[idx] = True
    return (m_out, s_out) if done.all() else (full_m, full_s)


def requantize(acc: np.ndarray, bias: np.ndarray, m: np.ndarray, s: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """Requantise int accumulators (channel last) to ``[lo, hi]``; returns int32.

    ``bias``, ``m``, ``s`` broadcast along the last axis (one value per output channel).
    """
    a = np.asarray(acc, dtype=np.int64) + np.asarray(bias, dtype=np.int64)
    s64 = np.asarray(s, dtype=np.int64)
    y = (a * np.asarray(m, dtype=np.int64) + (np.int64(1) << (s64 - 1))) >> s64
    return np.clip(y, lo, hi).astype(np.int32)


def quantize_weights(w: np.ndarray, bits: int, axis: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    """Symmetric per-output-channel weight quantisation -> (int8 values, float scales).

    Values are in [-qmax, qmax] with qmax = 7 (4-bit) or 127 (8-bit); an all-zero channel gets
    scale 1 so that nothing divides by zero.
    """
    qmax = WEIGHT_QMAX[bits]
    w = np.asarray(w, dtype=np.float64)
    red = tuple(i for i in range(w.ndim) if i != axis)
    amax = np.max(np.abs(w), axis=red, keepdims=True)
    scale = np.where(amax > 0, amax / qmax, 1.0)
    q = np.clip(np.floor(w / scale + 0.5), -qmax, qmax).astype(np.int8)
    return q, scale.reshape(-1)


def round_half_up(x: np.ndarray) -> np.ndarray:
    """The contract's rounding of real values to integers: floor(x + 0.5)."""
    return np.floor(np.asarray(x, dtype=np.float64) + 0.5)


def _extremes(weight: np.ndarray, in_kind: str, max_offset: int) -> Tuple[np.ndarray, np.ndarray]:
    """Per output channel, the largest and smallest acc for any input of ``in_kind`` (OHWI)."""
    lo, hi = kind_range(in_kind, max_offset)
    w = np.asarray(weight, dtype=np.int64).reshape(weight.shape[0], -1)
    pos = np.where(w > 0, w, 0).sum(axis=1)
    neg = np.where(w < 0, w, 0).sum(axis=1)
    return pos * hi + neg * lo, pos * lo + neg * hi


def accumulator_bound(weight: np.ndarray, in_kind: str, bias: np.ndarray, max_offset: int = 0) -> int:
    """Largest |acc + bias| a layer can reach for any input of ``in_kind`` (weights OHWI)."""
    top, bottom = _extremes(weight, in_kind, max_offset)
    b = np.asarray(bias, dtype=np.int64)
    return int(max(np.max(np.abs(top + b)), np.max(np.abs(bottom + b))))


def channel_bounds(weight: np.ndarray, in_kind: str, max_offset: int = 0) -> np.ndarray:
    """Per output channel, the bound on |acc| and on every partial sum of it (bias excluded):
    each product ``w * x`` lies between 0 and its extreme (0 is in every kind's range)."""
    top, bottom = _extremes(weight, in_kind, max_offset)
    return np.maximum(np.abs(top), np.abs(bottom))


def bits_for(bound: int) -> int:
    """Signed two's-complement width that holds every value in [-bound, bound]."""
    return int(bound).bit_length() + 1
