"""Float32 scales with which ONNX Runtime's ``QLinearConv`` requantises exactly like the contract.

``QLinearConv`` (ONNX Runtime, CPU) turns its int32 accumulator ``a = acc + bias`` into an 8-bit
output as ``clamp(rint(float32(a) * scale) + zp, 0, 255)``: a float32 multiply, round half to
*even*, the output zero point ``zp``. The contract (:func:`codenet_pynq.intmath.requantize`) is
``clamp(((a * M) + 2**(S-1)) >> S, lo, hi)``, round half *up*. With ``scale = M 2**-S`` the two
differ where ``a * M 2**-S`` is a half. A scale a few float32 steps *above* ``M 2**-S`` moves
the positive halves up (rounded as the contract does) but the negative ones away from zero
(one too low); a scale a few steps *below* does the opposite. Hence two forms:

- single: one scale, enough where no negative half can reach the output (u8 outputs, whose
  negative values all clamp to 0);
- dual: the conv run twice, with a scale above and one below, and the element-wise ``Max`` of
  the two outputs. Each result is never above the contract's and equals it on its own side of
  zero, so the maximum is the contract's value everywhere (``s8`` outputs, zero point 128).

Whether candidate scales work is decided by checking, not by an error bound. Both the contract
and the runtime's mapping (and the maximum of two such) are non-decreasing in ``a`` (float32
conversion, multiplication by a positive scale and rounding are all monotonic), so they agree
on every integer ``a`` once they agree at both ends of every step of the contract, i.e. at
``a_n - 1`` and ``a_n`` for each first accumulator ``a_n`` of output level ``n``; between those
points both are constant, below the first both give ``lo``, above the last both give ``hi``.
:func:`qlinear_scales` checks exactly these points (2 per output level and channel) with
numpy's IEEE float32 arithmetic, the arithmetic of the runtime's kernel.
"""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

__all__ = ["qlinear_scales", "qlinear_requantize", "zero_point", "MAX_STEPS"]

#: float32 steps away from ``M 2**-S`` tried per channel and direction
MAX_STEPS = 4


def zero_point(lo: int, hi: int) -> Optional[int]:
    """u8 zero point of an 8-bit clamp range: 0 for [0, 255], 128 for [-128, 127]; else None."""
    return {(0, 255): 0, (-128, 127): 128}.get((int(lo), int(hi)))


def qlinear_requantize(a: np.ndarray, scale: np.ndarray, zp: int) -> np.ndarray:
    """The runtime's requantisation of int32 accumulators (bias included) to u8 with zero point
    ``zp``; ``scale`` broadcasts against ``a`` (float32)."""
    v = np.asarray(a).astype(np.float32) * np.asarray(scale, np.float32)
    return np.clip(np.rint(v) + zp, 0, 255).astype(np.int64)


def _step_points(m: np.ndarray, s: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """(C, 2 * (hi - lo)) accumulators ``a_n - 1`` and ``a_n`` for every level n in (lo, hi]."""
    n = np.arange(lo + 1, hi + 1, dtype=np.int64)[None, :]
    m64, s64 = np.asarray(m, np.int64)[:, None], np.asarray(s, np.int64)[:, None]
    num = n * (np.int64(1) << s64) - (np.int64(1) << (s64 - 1))  # first a with a*M >= num
    first = -((-num) // m64)
    return np.concatenate([first - 1, first], axis=1)


def _contract(a: np.ndarray, m: np.ndarray, s: np.ndarray, lo: int, hi: int) -> np.ndarray:
    m64, s64 = np.asarray(m, np.int64)[:, None], np.asarray(s, np.int64)[:, None]
    return np.clip((a * m64 + (np.int64(1) << (s64 - 1))) >> s64, lo, hi)


def _steps(base: np.ndarray, k: int, direction: float) -> np.ndarray:
    out = base
    for _ in range(k):
        out = np.nextafter(out, np.float32(direction), dtype=np.float32)
    return out


def qlinear_scales(m: np.ndarray, s: np.ndarray, lo: int, hi: int) -> Optional[Tuple[np.ndarray, Optional[np.ndarray]]]:
    """``(scales, None)`` (single form) or ``(scales_up, scales_down)`` (dual form), float32 per
    channel, with which the runtime's requantisation equals the contract's for every int32
    accumulator; None when the clamp range is not an 8-bit one or no candidate passes."""
    zp = zero_point(lo, hi)
    m = np.asarray(m, np.int64)
    s = np.asarray(s, np.int64)
    if zp is None or len(m) == 0 or int(s.max()) > 40:
        return None
    pts = _step_points(m, s, lo, hi)
    want = _contract(pts, m, s, lo, hi) + zp
    base = (m * np.ldexp(1.0, -s)).astype(np.float32)  # exact: M < 2**15

    def ok(rows: np.ndarray, scale: np.ndarray, other: Optional[np.ndarray] = None) -> np.ndarray:
        got = qlinear_requantize(pts[rows], scale[rows, None], zp)
        if other is not None:
            got = np.maximum(got, qlinear_requantize(pts[rows], other[rows, None], zp))
        return (got == want[rows]).all(axis=1)

    ups = [_steps(base, k, np.inf) for k in range(MAX_STEPS + 1)]
    up = np.zeros(len(m), np.float32)
    todo = np.arange(len(m))
    for cand in ups:  # single form: the smallest passing scale at or above M 2**-S
        hit = ok(todo, cand)
        up[todo[hit]] = cand[todo[hit]]
        todo = todo[~hit]
    if len(todo) == 0:
        return up, None
    down = up.copy()  # channels of the single form: both convs use their one scale
    downs = [_steps(base, k, -np.inf) for k in range(1, MAX_STEPS + 1)]
    for ku in range(1, MAX_STEPS + 1):
        for cand in downs:
            hit = ok(todo, ups[ku], cand)
            up[todo[hit]], down[todo[hit]] = ups[ku][todo[hit]], cand[todo[hit]]
            todo = todo[~hit]
    return (up, down) if len(todo) == 0 else None
