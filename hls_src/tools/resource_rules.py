"""Resource rules of the budget estimator: BRAM/LUTRAM mapping of arrays, DSP48E2 use of multipliers.

All numbers are estimates of what Vitis HLS / Vivado do on UltraScale+ (docs/hls_tools.md states
them and their limits).  Units: BRAM36 (a BRAM18 counts 0.5), DSP48E2, LUT6, FF.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Sequence, Tuple

# ---- block RAM aspect ratios (depth, width).  SDP = simple dual port (1 read + 1 write port),
# TDP = true dual port (2 read/write ports, narrower maximum width).
BRAM18_SDP: Tuple[Tuple[int, int], ...] = ((16384, 1), (8192, 2), (4096, 4), (2048, 9), (1024, 18), (512, 36))
BRAM36_SDP: Tuple[Tuple[int, int], ...] = ((32768, 1), (16384, 2), (8192, 4), (4096, 9), (2048, 18), (1024, 36),
                                           (512, 72))
BRAM18_TDP: Tuple[Tuple[int, int], ...] = BRAM18_SDP[:-1]
BRAM36_TDP: Tuple[Tuple[int, int], ...] = BRAM36_SDP[:-1]

#: a bank with fewer bits than this, or fewer words than LUTRAM_MAX_DEPTH, goes to LUTRAM
LUTRAM_MAX_BITS = 1024
LUTRAM_MAX_DEPTH = 64
#: a bank of at most this many words is registers (flip-flops), e.g. after complete partitioning
FF_MAX_DEPTH = 1

# ---- DSP48E2: 27 x 18 two's-complement multiplier
DSP_A_BITS = 27
DSP_B_BITS = 18
#: dsp_pack2: two products a*w0, a*w1 in one DSP when the weights have at most this many bits
PACK2_MAX_W_BITS = 4
PACK2_MAX_A_BITS = 9      # the shared activation (u8 needs 9 signed bits)
PACK2_FIX_LUT = 10        # fabric LUTs per DSP for the sign correction / unpacking of the low product

# ---- fixed allowances (per interface), from typical Vitis HLS 2022.x utilisation reports
MAXI_PORT_BRAM36 = 1.0    # burst data FIFO (max_read/write_burst_length x outstanding x 128 bit)
MAXI_PORT_LUT = 1500
MAXI_PORT_FF = 2000
AXILITE_BASE_LUT = 150
AXILITE_BASE_FF = 100
AXILITE_REG_LUT = 20      # per 32-bit register (address decode + read mux)
AXILITE_REG_FF = 32


@dataclass(frozen=True)
class BankCost:
    """Cost of one memory bank: where it lives and what it takes."""

    impl: str          # 'bram', 'lutram' or 'ff'
    bram36: float
    lut: int
    ff: int


def bram18_units(width: int, depth: int, tdp: bool = False) -> int:
    """Fewest BRAM18 halves for a (width, depth) memory using one aspect ratio for the whole bank."""
    b18 = BRAM18_TDP if tdp else BRAM18_SDP
    b36 = BRAM36_TDP if tdp else BRAM36_SDP
    best = min(math.ceil(depth / d) * math.ceil(width / w) for d, w in b18)
    best36 = min(math.ceil(depth / d) * math.ceil(width / w) for d, w in b36)
    return min(best, 2 * best36)


def lutram_luts(width: int, depth: int) -> int:
    """LUT6 as distributed RAM (simple dual port): RAM32M = 32 x 6 bits, RAM64M = 64 x 3 bits per 4 LUTs."""
    if depth <= 32:
        return 4 * math.ceil(width / 6)
    return 4 * math.ceil(depth / 64) * math.ceil(width / 3)


def bank_cost(width: int, depth: int, impl: str = "auto", tdp: bool = False) -> BankCost:
    """Cost of one bank; impl 'auto' applies the LUTRAM / register thresholds above."""
    if width <= 0 or depth <= 0:
        raise ValueError(f"memory bank must have positive width and depth, got {width} x {depth}")
    if impl == "auto":
        if depth <= FF_MAX_DEPTH:
            impl = "ff"
        elif width * depth < LUTRAM_MAX_BITS or depth < LUTRAM_MAX_DEPTH:
            impl = "lutram"
        else:
            impl = "bram"
    if impl == "ff":
        return BankCost("ff", 0.0, 0, width * depth)
    if impl == "lutram":
        return BankCost("lutram", 0.0, lutram_luts(width, depth), 0)
    if impl == "bram":
        return BankCost("bram", bram18_units(width, depth, tdp) / 2.0, 0, 0)
    raise ValueError(f"unknown memory implementation {impl!r} (use auto, bram, lutram or ff)")


def banks(width: int, dims: Sequence[int], partitions: Sequence[Tuple[str, int, int, bool]]) -> Tuple[int, int, int]:
    """(banks, bank width, bank depth) after partitioning/reshaping.

    partitions: (kind, factor, dim 1-based (0 = all), reshape) with kind complete/cyclic/block.
    """
    dims = list(dims)
    n_banks = 1
    for kind, factor, dim, reshape in partitions:
        targets = range(len(dims)) if dim == 0 else [dim - 1]
        for d in targets:
            if d >= len(dims):
                raise ValueError(f"partition dim {dim} but the array has {len(dims)} dimension(s)")
            size = dims[d]
            n = size if kind == "complete" else min(max(factor, 1), size)
            if reshape:
                width *= n
            else:
                n_banks *= n
            dims[d] = math.ceil(size / n)
    return n_banks, width, math.prod(dims)


def dsp_per_mult(a_bits: int, b_bits: int) -> int:
    """DSP48E2 slices for one a x b signed product (wider products are split into 27x18 pieces)."""
    return min(math.ceil(a_bits / DSP_A_BITS) * math.ceil(b_bits / DSP_B_BITS),
               math.ceil(a_bits / DSP_B_BITS) * math.ceil(b_bits / DSP_A_BITS))


def unit_cost(impl: str, count: int, a_bits: int, b_bits: int, acc_bits: int) -> Tuple[float, int, int, List[str]]:
    """(DSP, LUT, FF, notes) of `count` multiply(-accumulate) units.

    LUT: a LUT-mapped a x b multiplier ~ a*b/2 LUT6; every product is added into an adder tree or
    accumulator of acc_bits (~1 LUT per bit); dsp_pack2 adds PACK2_FIX_LUT per DSP.  FF: one
    pipeline register per operand and result bit.  Rough figures: see docs/hls_tools.md.
    """
    notes: List[str] = []
    ff = count * (a_bits + b_bits + acc_bits)
    add_lut = count * acc_bits
    if impl == "lut":
        return 0.0, count * math.ceil(a_bits * b_bits / 2) + add_lut, ff, notes
    if impl == "dsp":
        return float(count * dsp_per_mult(a_bits, b_bits)), add_lut, ff, notes
    if impl == "dsp_pack2":
        w, a = min(a_bits, b_bits), max(a_bits, b_bits)
        if w > PACK2_MAX_W_BITS or a > PACK2_MAX_A_BITS:
            raise ValueError(f"dsp_pack2 needs weights of <= {PACK2_MAX_W_BITS} bits and a shared activation "
                             f"of <= {PACK2_MAX_A_BITS} bits, got {a_bits} x {b_bits}")
        dsp = math.ceil(count / 2)
        if count % 2:
            notes.append("odd count: one DSP carries a single product")
        return float(dsp), add_lut + dsp * PACK2_FIX_LUT, ff, notes
    raise ValueError(f"unknown unit implementation {impl!r} (use dsp, dsp_pack2 or lut)")
