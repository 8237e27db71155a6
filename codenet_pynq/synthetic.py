"""Random but valid integer programs, for tests, benchmarks and on-board self-tests.

- :func:`random_program`: a small program that uses every op and tensor kind (stem with int8
  weights, maxpool, channel split / concat / shuffle, depthwise stride 1 and 2, a full 3x3 conv
  on an ``s8`` input, a statically dilated conv, upsample, a square-deformable block with an
  ``off`` tensor and per-pixel dilation, and the three head convs).
- :func:`codenet_like_program`: random weights in the real CoDeNet topology (ShuffleNetV2
  backbone, 3 decoder stages of square-deformable blocks + upsample, 3 heads).

Requantisation multipliers are *calibrated*: while the program is built, every layer is run by
the golden executor on a random image, and M/S are chosen so that the outputs use their 8-bit
range with only a few saturated values; offsets spread over ``[0, max_offset]``. M's precision
follows the exporter (``multipliers="exporter"``, :func:`codenet_pynq.intmath.choose_multipliers`)
or is always 15 bits (``"full"``, as in artifacts written before that policy). Tensor scales
are bookkeeping consistent with the multipliers (``M / 2**S ~ s_in * s_w[c] / s_out``).
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .golden import conv_accumulate, run_layer
from .intmath import WEIGHT_QMAX, channel_bounds, choose_multipliers, kind_range, quantize_multipliers
from .program import Layer, Program, TensorInfo

__all__ = ["random_program", "codenet_like_program", "SHUFFLENET_CHANNELS", "ProgramBuilder"]

#: ShuffleNetV2 stage output channels (stem, stage2, stage3, stage4, conv5) per width multiplier.
SHUFFLENET_CHANNELS = {
    0.5: (24, 48, 96, 192, 1024),
    1.0: (24, 116, 232, 464, 1024),
    1.5: (24, 176, 352, 704, 1024),
    2.0: (24, 244, 488, 976, 2048),
}


class ProgramBuilder:
    """Builds a program layer by layer while running it on a calibration image."""

    def __init__(self, rng: np.random.Generator, input_hw: Tuple[int, int], max_offset: int = 8,
                 image: Optional[np.ndarray] = None, multipliers: str = "exporter") -> None:
        if multipliers not in ("exporter", "full"):
            raise ValueError(f"multipliers must be 'exporter' or 'full', got {multipliers!r}")
        self.rng = rng
        self.multipliers = multipliers
        self.max_offset = int(max_offset)
        h, w = int(input_hw[0]), int(input_hw[1])
        self.input = "image"
        self.tensors: Dict[str, TensorInfo] = {"image": TensorInfo("image", (h, w, 3), "u8", 1.0)}
        self.layers: List[Layer] = []
        if image is None:
            image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        self.env: Dict[str, np.ndarray] = {"image": np.asarray(image, np.uint8)}
        self._names: Dict[str, int] = {}

    def _name(self, base: str) -> str:
        n = self._names.get(base, 0)
        self._names[base] = n + 1
        return base if n == 0 else f"{base}_{n}"

    def _program(self, outputs: Dict[str, str]) -> Program:
        return Program(input=self.input, tensors=dict(self.tensors), layers=list(self.layers),
                       outputs=dict(outputs), max_offset=self.max_offset)

    def _add(self, layer: Layer, kind: str, scale: float) -> str:
        prog = self._program({})
        self.tensors[layer.output] = TensorInfo(layer.output, prog.infer_shape(layer), kind, float(scale))
        self.layers.append(layer)
        self.env[layer.output] = run_layer(self._program({}), layer, self.env)
        return layer.output

    # ------------------------------------------------------------------ conv
    def conv(self, x: str, cout: int, k: int = 1, stride: int = 1, groups: int = 1, kind: str = "u8",
             bits: int = 4, offset: Optional[str] = None, dilation: int = 1, pad: Optional[int] = None,
             out_scale: Optional[float] = None, name: str = "conv", spread: float = 3.0) -> str:
        """Add a conv with random weights and calibrated bias/M/S; returns the output name.

        ``spread``: output range in standard deviations of the accumulator (larger: fewer
        saturated values). ``out_scale`` forces the output tensor scale (e.g. for concat).
        """
        rng = self.rng
        src = self.tensors[x]
        cin = src.shape[2]
        qmax = WEIGHT_QMAX[bits]
        w = rng.integers(-qmax, qmax + 1, (cout, k, k, cin // groups)).astype(np.int8)
        pad = (k // 2) * dilation if pad is None else pad
        off = self.env[offset] if offset is not None else None
        acc = conv_accumulate(self.env[x], w, stride=stride, pad=pad, groups=groups, dilation=dilation,
                              offset=off).reshape(-1, cout).astype(np.float64)
        mean, std = acc.mean(axis=0), acc.std(axis=0) + 1.0
        lo, hi = kind_range(kind, self.max_offset)
        if kind == "off":  # spread the 3rd..97th percentile over [0, max_offset]
            p_lo, p_hi = np.percentile(acc, [3.0, 97.0], axis=0)
            mult = np.full(cout, max(hi, 1) / (p_hi - p_lo + 1.0))
            bias = np.round(-p_lo)
        else:
            mult = max(abs(lo), hi) / (spread * std) * rng.uniform(0.7, 1.3, cout)
            shift = rng.uniform(-0.5, 1.0, cout) if kind == "u8" else rng.uniform(-0.5, 0.5, cout)
            bias = np.round(-mean + shift * std)
        if self.multipliers == "full":
            m_arr, s_arr = quantize_multipliers(mult)
        else:
            m_arr, s_arr = choose_multipliers(mult, channel_bounds(w, src.kind, self.max_offset), bias)
        if out_scale is None:
            w_guess = (0.05 if bits == 4 else 0.005) * rng.uniform(0.5, 2.0, cout)
            out_scale = 1.0 if kind == "off" else float(src.scale * np.exp(np.mean(np.log(w_guess / mult))))
        attrs = {"k": k, "stride": stride, "pad": pad, "groups": groups, "lo": lo, "hi": hi, "weight_bits": bits}
        if dilation != 1:
            attrs["dilation"] = dilation
        if offset is not None:
            attrs["offset"] = offset
        arrays = {"weight": w, "bias": bias.astype(np.int32), "M": m_arr, "S": s_arr}
        out = self._name(name)
        return self._add(Layer("conv", [x], out, attrs, arrays, name=out), kind, out_scale)

    # ------------------------------------------------------------------ data movement
    def _move(self, op: str, inputs: Sequence[str], name: str, **attrs: int) -> str:
        src = self.tensors[inputs[0]]
        out = self._name(name)
        return self._add(Layer(op, list(inputs), out, dict(attrs), {}, name=out), src.kind, src.scale)

    def maxpool(self, x: str, name: str = "maxpool") -> str:
        return self._move("maxpool", [x], name)

    def upsample(self, x: str, name: str = "upsample") -> str:
        return self._move("upsample", [x], name)

    def concat(self, xs: Sequence[str], name: str = "concat") -> str:
        return self._move("concat", xs, name)

    def slice(self, x: str, c0: int, c1: int, name: str = "slice") -> str:
        return self._move("slice", [x], name, c0=int(c0), c1=int(c1))

    def shuffle(self, x: str, groups: int = 2, name: str = "shuffle") -> str:
        return self._move("shuffle", [x], name, groups=int(groups))

    # ------------------------------------------------------------------ blocks
    def square_block(self, x: str, cout: int, name: str, pw_kind: str = "s8") -> str:
        """Depthwise square-deformable block: 1x1 pointwise, 1x1 offset conv, 3x3 dw with per-pixel dilation."""
        p = self.conv(x, cout, k=1, kind=pw_kind, name=f"{name}.pw")
        o = self.conv(p, 1, k=1, kind="off", name=f"{name}.off")
        return self.conv(p, cout, k=3, groups=cout, offset=o, kind="u8", name=f"{name}.dw")

    def build(self, outputs: Dict[str, str], meta: Optional[dict] = None) -> Program:
        prog = self._program(outputs)
        prog.meta = dict(meta or {})
        prog.validate()
        return prog


def random_program(rng: np.random.Generator, input_hw: Tuple[int, int] = (32, 32), max_offset: int = 4,
                   num_classes: int = 3, multipliers: str = "exporter") -> Program:
    """A small random program covering every op, both activation kinds and the ``off`` kind."""
    b = ProgramBuilder(rng, input_hw, max_offset, multipliers=multipliers)

    def ch(lo: int, hi: int) -> int:
        return int(rng.integers(lo, hi + 1))

    t = b.conv("image", ch(4, 12), k=3, stride=2, bits=8, name="stem")
    t = b.maxpool(t)
    # ShuffleNet-style unit: split / branch / concat / shuffle
    c = 2 * ch(2, 6)
    t = b.conv(t, c, k=1, kind="u8", name="expand")
    half = c // 2
    left, right = b.slice(t, 0, half), b.slice(t, half, c)
    mid = ch(2, 8)
    r = b.conv(right, mid, k=1, name="branch.pw1")
    r = b.conv(r, mid, k=3, groups=mid, kind="s8", name="branch.dw")
    r = b.conv(r, c - half, k=1, out_scale=b.tensors[t].scale, name="branch.pw2")
    t = b.concat([left, r])
    t = b.shuffle(t, int(rng.choice([g for g in (2, 3, 4) if c % g == 0])))
    # downsampling, a full 3x3 conv reading s8, a statically dilated depthwise conv
    d = b.conv(t, c, k=3, stride=2, groups=c, kind="s8", name="down.dw")
    c2 = ch(3, 10)
    d = b.conv(d, c2, k=3, kind=str(rng.choice(["u8", "s8"])), name="full3x3")
    d = b.conv(d, c2, k=3, groups=c2, dilation=2, kind="u8", name="dilated.dw")
    if rng.random() < 0.5:
        d = b.conv(d, c2, k=1, stride=2, kind="u8", name="pw.s2")
        d = b.upsample(d)
    u = b.upsample(d)
    q = b.square_block(u, ch(3, 10), "block", pw_kind=str(rng.choice(["s8", "u8"])))
    heads = {}
    for role, n in (("hm", num_classes), ("wh", 2), ("reg", 2)):
        src = b.square_block(q, ch(2, 6), f"{role}.block") if role == "hm" else q
        heads[role] = b.conv(src, n, k=1, kind="s8", name=f"{role}.out")
    return b.build(heads, {"generator": "random_program"})


def codenet_like_program(rng: np.random.Generator, input_size: int = 512, width: float = 1.0,
                         decoder: Sequence[int] = (512, 256, 128), head: int = 128, num_classes: int = 20,
                         max_offset: int = 8, stage_channels: Optional[Sequence[int]] = None,
                         stage_repeats: Sequence[int] = (4, 8, 4), image: Optional[np.ndarray] = None,
                         multipliers: str = "exporter", stem: str = "conv_s2_maxpool") -> Program:
    """Random weights in the CoDeNet topology (ShuffleNetV2 + square-deformable decoder and heads).

    ``stage_channels`` (stem, stage2, stage3, stage4, conv5) overrides ``width``; input is
    ``input_size`` square, outputs are at stride 4.  ``stem``: ``"conv_s2_maxpool"`` (3x3 stride-2
    conv + max pool, the seed and FPGA'21 configs b/e) or ``"conv_s4"`` (one 3x3 stride-4 conv,
    FPGA'21 configs a/c/d).
    """
    if stem not in ("conv_s2_maxpool", "conv_s4"):
        raise ValueError(f"stem must be 'conv_s2_maxpool' or 'conv_s4', got {stem!r}")
    chans = tuple(stage_channels) if stage_channels is not None else SHUFFLENET_CHANNELS[float(width)]
    b = ProgramBuilder(rng, (input_size, input_size), max_offset, image=image, multipliers=multipliers)
    if stem == "conv_s4":
        t = b.conv("image", chans[0], k=3, stride=4, bits=8, name="stem")
    else:
        t = b.conv("image", chans[0], k=3, stride=2, bits=8, name="stem")
        t = b.maxpool(t, name="stem.pool")
    for si, (cout, reps) in enumerate(zip(chans[1:4], stage_repeats)):
        for ui in range(reps):
            nm = f"stage{si + 2}.{ui}"
            cin = b.tensors[t].shape[2]
            half = cout // 2
            if ui == 0:
                b1 = b.conv(t, cin, k=3, stride=2, groups=cin, kind="s8", name=f"{nm}.b1.dw")
                b1 = b.conv(b1, half, k=1, name=f"{nm}.b1.pw")
                r = b.conv(t, cout - half, k=1, name=f"{nm}.b2.pw1")
                r = b.conv(r, cout - half, k=3, stride=2, groups=cout - half, kind="s8", name=f"{nm}.b2.dw")
                r = b.conv(r, cout - half, k=1, out_scale=b.tensors[b1].scale, name=f"{nm}.b2.pw2")
                t = b.concat([b1, r], name=f"{nm}.cat")
            else:
                x1 = b.slice(t, 0, cin // 2, name=f"{nm}.x1")
                x2 = b.slice(t, cin // 2, cin, name=f"{nm}.x2")
                c2 = cin - cin // 2
                r = b.conv(x2, c2, k=1, name=f"{nm}.b2.pw1")
                r = b.conv(r, c2, k=3, groups=c2, kind="s8", name=f"{nm}.b2.dw")
                r = b.conv(r, c2, k=1, out_scale=b.tensors[t].scale, name=f"{nm}.b2.pw2")
                t = b.concat([x1, r], name=f"{nm}.cat")
            t = b.shuffle(t, 2, name=f"{nm}.shuffle")
    t = b.conv(t, chans[4], k=1, name="conv5")
    for i, c in enumerate(decoder):
        t = b.square_block(t, c, f"decoder{i}")
        t = b.upsample(t, name=f"decoder{i}.up")
    heads = {}
    for role, n in (("hm", num_classes), ("wh", 2), ("reg", 2)):
        q = b.square_block(t, head, f"head.{role}")
        heads[role] = b.conv(q, n, k=1, kind="s8", name=f"head.{role}.out")
    meta = {"generator": "codenet_like_program", "input_size": input_size, "stage_channels": list(chans),
            "decoder": list(decoder), "head": head, "num_classes": num_classes, "stem": stem}
    return b.build(heads, meta)
