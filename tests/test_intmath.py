"""The integer contract (codenet_pynq.intmath), checked against exact Python integers/fractions."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest

from codenet_pynq.intmath import (
    ACC_BITS,
    FLOAT32_EXACT,
    FLOAT32_REQUANT_MIN_BITS,
    M_BITS,
    MAX_SHIFT,
    accumulator_bound,
    bits_for,
    channel_bounds,
    choose_multipliers,
    kind_range,
    quantize_multiplier,
    quantize_multipliers,
    quantize_weights,
    requant_fits_float32,
    requantize,
    round_half_up,
)


def ref_requant(acc: int, bias: int, m: int, s: int, lo: int, hi: int) -> int:
    """floor((acc + bias) * m / 2**s + 1/2), clamped: the contract in exact rational arithmetic."""
    y = math.floor(Fraction((acc + bias) * m, 1 << s) + Fraction(1, 2))
    return min(max(y, lo), hi)


# ----------------------------------------------------------------------------- multipliers
@pytest.mark.parametrize("seed", range(3))
def test_quantize_multiplier_accuracy(seed):
    rng = np.random.default_rng(seed)
    for real in np.exp(rng.uniform(np.log(1e-9), np.log(1e4), 500)):
        m, s = quantize_multiplier(float(real))
        assert 1 <= m < 2 ** 15 and 1 <= s <= MAX_SHIFT
        if s < MAX_SHIFT and s > 1:  # M as large as possible: 15 significant bits
            assert m >= 2 ** 14 - 1
            assert abs(m / 2 ** s - real) <= 2.0 ** -s * 0.5 + 1e-12 * real
            assert abs(m / 2 ** s - real) / real <= 2.0 ** -14


def test_quantize_multiplier_exact_powers_and_edges():
    assert quantize_multiplier(0.5) == (2 ** 14, 15)
    assert quantize_multiplier(1.0) == (2 ** 14, 14)
    m, s = quantize_multiplier(2.0 ** -40)  # S saturates at MAX_SHIFT, fewer bits of M
    assert s == MAX_SHIFT and m == 2 ** 7
    m, s = quantize_multiplier(16383.0)
    assert s == 1 and m == 32766
    for bad in (0.0, -1.0, float("inf"), float("nan"), 2.0 ** 14, 1e6, 2.0 ** -50):
        with pytest.raises(ValueError):
            quantize_multiplier(bad)


def test_quantize_multipliers_vectorised():
    reals = np.array([0.001, 0.37, 1.5, 3e-6])
    m, s = quantize_multipliers(reals)
    assert m.dtype == np.int32 and s.dtype == np.int32
    assert [(int(a), int(b)) for a, b in zip(m, s)] == [quantize_multiplier(float(r)) for r in reals]


@pytest.mark.parametrize("bits", [6, 8, 11, 15])
def test_quantize_multiplier_fewer_bits(bits):
    rng = np.random.default_rng(bits)
    for real in np.exp(rng.uniform(np.log(1e-6), np.log(10.0), 300)):
        m, s = quantize_multiplier(float(real), bits)
        assert 1 <= m < 2 ** bits and 1 <= s <= MAX_SHIFT
        if 1 < s < MAX_SHIFT:
            assert m >= 2 ** (bits - 1) - 1
            assert abs(m / 2 ** s - real) / real <= 2.0 ** -(bits - 1)
    assert quantize_multiplier(0.75, 6) == (48, 6)
    with pytest.raises(ValueError):
        quantize_multiplier(0.5, M_BITS + 1)


def test_requant_fits_float32_boundary():
    # bound * M + |bias * M + 2**(S-1)| against 2**24, inclusive
    m, s = np.array([100, 100, 100]), np.array([10, 10, 10])
    bias = np.array([0, 0, -2])
    bound = np.array([(FLOAT32_EXACT - 512) // 100, (FLOAT32_EXACT - 512) // 100 + 1, (FLOAT32_EXACT - 512) // 100])
    top = bound * m + np.abs(bias * m + 512)
    assert top[0] <= FLOAT32_EXACT < top[1]
    assert requant_fits_float32(bound, bias, m, s).tolist() == [True, False, True]  # -200 + 512 < 512
    exact = np.array([FLOAT32_EXACT - 512]), np.array([0]), np.array([1]), np.array([10])
    assert requant_fits_float32(*exact).tolist() == [True]


def test_channel_bounds_match_the_layer_bound():
    rng = np.random.default_rng(5)
    w = rng.integers(-7, 8, (6, 3, 3, 5)).astype(np.int8)
    for kind in ("u8", "s8"):
        per = channel_bounds(w, kind)
        assert per.shape == (6,)
        assert int(per.max()) == accumulator_bound(w, kind, np.zeros(6, np.int64))
        brute = [max(abs(int(np.where(c > 0, c, 0).sum()) * kind_range(kind)[1] + int(np.where(c < 0, c, 0).sum())
                         * kind_range(kind)[0]),
                     abs(int(np.where(c > 0, c, 0).sum()) * kind_range(kind)[0] + int(np.where(c < 0, c, 0).sum())
                         * kind_range(kind)[1])) for c in w.reshape(6, -1).astype(np.int64)]
        assert per.tolist() == brute


def test_choose_multipliers_policy():
    rng = np.random.default_rng(9)
    real = np.exp(rng.uniform(np.log(1e-2), np.log(1e-1), 8))
    bias = rng.integers(-500, 500, 8)
    # small bounds: the full 15 bits fit, same as quantize_multipliers
    full_m, full_s = quantize_multipliers(real)
    m, s = choose_multipliers(real, np.full(8, 100), bias // 100)
    assert np.array_equal(m, full_m) and np.array_equal(s, full_s)
    # realistic 1x1 bounds: fewer bits, each channel the most that fit
    bound = rng.integers(20_000, 90_000, 8)
    m, s = choose_multipliers(real, bound, bias)
    assert requant_fits_float32(bound, bias, m, s).all()
    for c in range(8):
        bits = int(m[c]).bit_length()
        assert FLOAT32_REQUANT_MIN_BITS <= bits < M_BITS
        m1, s1 = quantize_multiplier(float(real[c]), bits + 1)
        assert not requant_fits_float32(bound[c:c + 1], bias[c:c + 1], np.array([m1]), np.array([s1]))[0]
        assert abs(m[c] / 2.0 ** s[c] - real[c]) / real[c] <= 2.0 ** -(FLOAT32_REQUANT_MIN_BITS - 1)
    # one channel without room for FLOAT32_REQUANT_MIN_BITS: the whole layer keeps 15 bits
    bound[3] = FLOAT32_EXACT >> (FLOAT32_REQUANT_MIN_BITS - 1)
    m, s = choose_multipliers(real, bound, bias)
    assert np.array_equal(m, full_m) and np.array_equal(s, full_s)
    assert not requant_fits_float32(bound, bias, m, s).all()


# ----------------------------------------------------------------------------- requantize
def test_requantize_ties_round_half_up():
    # M = 1, S = 1: y = (acc + 1) >> 1 = floor(acc / 2 + 1/2)
    acc = np.array([1, -1, 3, -3, 5, -5, 0, 2, -2])
    y = requantize(acc, 0, 1, 1, -128, 127)
    assert y.tolist() == [1, 0, 2, -1, 3, -2, 0, 1, -1]
    # exactly x.5 with a larger shift: (acc + b) * M / 2**S = 2.5 and -2.5
    m, s = 3, 4
    for acc_v, want in ((40, 8), (-40, -7)):  # 40 * 3 / 16 = 7.5 -> 8 ; -7.5 -> -7
        assert requantize(np.array([acc_v]), 0, m, s, -128, 127)[0] == want
    assert requantize(np.array([5]), np.array([-10]), 1, 1, -128, 127)[0] == -2  # -2.5 -> -2


def test_requantize_negative_accumulators_floor_shift():
    # (-5 * 1 + 2) >> 2 = -3 >> 2 = -1 (floor), a truncating shift would give 0
    assert requantize(np.array([-5]), 0, 1, 2, -128, 127)[0] == -1
    rng = np.random.default_rng(1)
    acc = rng.integers(-2 ** 20, 0, 200)
    m = rng.integers(1, 2 ** 15, 200)
    s = rng.integers(1, 40, 200)
    for a, mm, ss in zip(acc, m, s):
        got = requantize(np.array([a]), 0, np.array([mm]), np.array([ss]), -(2 ** 31), 2 ** 31)[0]
        assert got == ref_requant(int(a), 0, int(mm), int(ss), -(2 ** 31), 2 ** 31)


@pytest.mark.parametrize("kind,max_offset", [("u8", 0), ("s8", 0), ("off", 8), ("off", 3)])
def test_requantize_saturation(kind, max_offset):
    lo, hi = kind_range(kind, max_offset)
    acc = np.array([-(2 ** 30), -1000, -1, 0, 1, 1000, 2 ** 30])
    y = requantize(acc, 0, 1, 1, lo, hi)
    assert y[0] == lo and y[-1] == hi
    assert y.min() >= lo and y.max() <= hi
    assert y.dtype == np.int32


def test_requantize_random_against_fractions_per_channel():
    rng = np.random.default_rng(2)
    c = 6
    acc = rng.integers(-(2 ** 24), 2 ** 24, (50, c))
    bias = rng.integers(-(2 ** 20), 2 ** 20, c)
    m = rng.integers(1, 2 ** 15, c)
    s = rng.integers(1, MAX_SHIFT + 1, c)
    y = requantize(acc, bias, m, s, -128, 127)
    for i, j in itertools.product(range(50), range(c)):
        assert y[i, j] == ref_requant(int(acc[i, j]), int(bias[j]), int(m[j]), int(s[j]), -128, 127)


def test_requantize_extremes_no_overflow():
    # |acc + bias| < 2**31, M < 2**15: the 64-bit product must not overflow
    acc = np.array([2 ** 31 - 1, -(2 ** 31)])
    y = requantize(acc, 0, 2 ** 15 - 1, MAX_SHIFT, -(2 ** 40), 2 ** 40)
    want = [ref_requant(int(a), 0, 2 ** 15 - 1, MAX_SHIFT, -(2 ** 40), 2 ** 40) for a in acc]
    assert y.tolist() == want


# ----------------------------------------------------------------------------- kinds, bounds, helpers
def test_kind_range():
    assert kind_range("u8") == (0, 255)
    assert kind_range("s8") == (-128, 127)
    assert kind_range("off", 8) == (0, 8)
    with pytest.raises(ValueError):
        kind_range("u16")


@pytest.mark.parametrize("kind", ["u8", "s8"])
def test_accumulator_bound_brute_force(kind):
    rng = np.random.default_rng(3)
    lo, hi = kind_range(kind)
    for _ in range(20):
        w = rng.integers(-7, 8, (3, 1, 1, 5)).astype(np.int8)
        b = rng.integers(-500, 500, 3)
        best = 0
        for xs in itertools.product((lo, hi), repeat=5):  # a linear form peaks at a corner
            acc = w.reshape(3, 5).astype(np.int64) @ np.array(xs) + b
            best = max(best, int(np.abs(acc).max()))
        assert accumulator_bound(w, kind, b) == best


def test_bits_for_and_acc_bits():
    assert bits_for(0) == 1 and bits_for(127) == 8 and bits_for(128) == 9
    assert bits_for(2 ** 31 - 1) == ACC_BITS


def test_round_half_up():
    assert round_half_up(np.array([0.5, -0.5, 1.5, -1.5, 2.4, -2.6])).tolist() == [1, 0, 2, -1, 2, -3]


@pytest.mark.parametrize("bits,qmax", [(4, 7), (8, 127)])
def test_quantize_weights(bits, qmax):
    rng = np.random.default_rng(4)
    w = rng.normal(size=(4, 3, 3, 2))
    w[2] = 0.0
    q, scale = quantize_weights(w, bits)
    assert q.dtype == np.int8 and np.abs(q).max() == qmax
    assert scale.shape == (4,) and scale[2] == 1.0 and np.all(q[2] == 0)
    assert np.all(np.abs(q * scale[:, None, None, None] - w) <= scale[:, None, None, None] / 2 + 1e-12)
