"""Integer-exact ONNX graph of an integer layer program (the CPU fallback of the quantized model).

ONNX Runtime has no integer conv that follows our requantisation, so the graph computes the
integer program with float arithmetic that is *provably exact* (opset 19, standard ops only):

- Activations travel as float32 tensors holding integers in [-128, 255].
- Folded layers (multipliers that pass :func:`codenet_pynq.intmath.requant_fits_float32`,
  which the exporter arranges where it can, see ``choose_multipliers``): weights ``w * M
  2**-S`` and bias ``(bias * M + 2**(S-1)) 2**-S`` go into the float32 conv, which then yields
  ``v = ((acc + bias) * M + 2**(S-1)) / 2**S`` exactly (every intermediate is a multiple of
  2**-S below 2**(24-S)); ``Clip`` (fused into the conv by ONNX Runtime) and ``Floor`` finish.
  In the per-pixel dilation the bias rides on the first tap (every output pixel gathers one
  row for it, a real row or the zero row, which then holds the bias too).
- Other layers: convs (``Conv``, ``MatMul``/``Gemm`` for 1x1, gather + multiply-add for the per-pixel
  dilation) run in float32 on integer weights, without bias. Every product ``w * x`` and every
  partial sum is an integer bounded by the layer's accumulator bound
  (:func:`codenet_pynq.golden.conv_accumulator_bound`); below 2**24 all of them are exact in
  float32, whatever the summation order, blocking or FMA use of the kernel. A layer whose bound
  reaches 2**24 is split into input-channel chunks that each stay below it, and the chunks are
  added in float64 (exact below 2**53).
- Their requantisation in float64 (one ``BatchNormalization`` used as ``x * scale + bias``):
  ``v = acc * M 2**-S + (bias * M + 2**(S-1)) 2**-S``. ``M 2**-S`` is exact (M < 2**15),
  ``|acc * M|`` and ``|(acc + bias) * M|`` stay below 2**47 (the validator guarantees
  ``|acc + bias| < 2**31``), so the product and the sum are exact multiples of 2**-S that fit
  the 53-bit significand, and ``floor(v)`` is exactly ``((acc + bias) * M + 2**(S-1)) >> S``.
  For layers with ``S <= 28`` (:data:`ROUNDING_CAST_MAX_SHIFT`) the bias also carries
  ``-1/2 + 2**-(S+1) + K`` (K = 2**23 + 128): the exact value is never halfway between two
  integers and sits in [2**23, 2**24) where float32 has spacing 1, so the round-to-nearest
  ``Cast`` to float32 gives ``floor(v) + K``; ``Clip`` to ``[lo + K, hi + K]`` and ``Sub K``
  finish (rounding is monotonic, so clamping after it is clamping before it). Other layers use
  ``Floor`` in float64, ``Cast`` to float32 (exact on the clamp range, monotonic elsewhere) and
  ``Clip``.
- Casts only ever convert integer values that the target type holds exactly, so the
  float-to-integer rounding mode of ``Cast`` (unspecified by ONNX) never matters.
- Per-pixel dilation (square deformable depthwise conv): the input is laid out as rows
  (H*W x C) with an extra all-zero row; for each of the 9 taps an index map ``y' * W + x'``
  (or the zero row when the tap falls outside the map) is looked up from the offset tensor in a
  table over (offset, tap, pixel) that ONNX Runtime computes at load (constant folding), and
  ``Gather``, a per-channel scale (``BatchNormalization``, exact on integers) and ``Add``
  accumulate the taps in float32 (bound 9 * 127 * 255).
- Nearest upsamples are deferred: the 1x1 convs after one (and their requantisation, and the
  offset conv) act on each pixel alone, so they run on the coarse map (4x fewer pixels per x2
  upsample), and the per-pixel dilation gathers its taps straight from the coarse rows (tap
  index ``(y' / f) * (W / f) + x' / f``), each tap's per-channel weight applied to the coarse
  rows before the gather. Only a consumer that needs the full map (a 3x3 conv, a
  concat, an output) gets the upsample materialised. In CoDeNet every upsample feeds a square
  block or the heads, so no feature map is ever upsampled (measured at 512, main variant: about
  20 % off the integer graph).
- Tensors live as NCHW (1, C, H, W) where ``Conv``/``MaxPool`` need it and as rows (H*W, C)
  around the per-pixel dilation; 1x1 convs switch layout for free (``Gemm`` with a transposed
  operand), so explicit transposes are rare (input image, and where a tensor is needed in both).

Graph interface (what the runtime reads):

- input ``image``: uint8 [1, H, W, 3], BGR, NHWC (the letterboxed raw pixels);
- outputs ``<role>_q`` for each head role (``hm_q``, ``wh_q``, ``reg_q``): int8 (``s8``
  kind; uint8 for ``u8``) [1, C, H/4, W/4], NCHW, the raw integers;
- ``metadata_props["codenet_int"]``: JSON ``{"format": 1, "input": {...}, "outputs": {role:
  {"name", "scale", "kind", "layout"}}}``; the real value is ``int * scale`` (zero point 0).
"""

from __future__ import annotations

import json
from typing import Any, Dict, List, Mapping, Optional, Sequence, Set, Tuple, Union

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from codenet_pynq.golden import conv_accumulator_bound, storage_dtype
from codenet_pynq.intmath import FLOAT32_EXACT, channel_bounds, kind_range, requant_fits_float32
from codenet_pynq.program import Layer, Program, ProgramError

__all__ = [
    "build_int_onnx",
    "build_float_onnx",
    "onnx_int_outputs",
    "requantised_in_float32",
    "read_int_metadata",
    "OPSET",
    "METADATA_KEY",
    "FLOAT32_EXACT",
]

OPSET = 19
IR_VERSION = 9
METADATA_KEY = "codenet_int"
FORMAT_VERSION = 1
FLOAT64_EXACT = 1 << 53
#: layers whose shifts are all <= this use the rounding-cast requantisation (see module doc)
ROUNDING_CAST_MAX_SHIFT = 28
ROUNDING_OFFSET = 2.0 ** 23 + 128

NCHW, ROWS = "nchw", "rows"
TAPS = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]


def _is_pointwise(layer: Layer) -> bool:
    a = layer.attrs
    return (layer.op == "conv" and int(a["k"]) == 1 and int(a.get("stride", 1)) == 1
            and int(a.get("groups", 1)) == 1 and int(a.get("pad", 0)) == 0 and layer.offset is None)


def _multiplier(layer: Layer) -> np.ndarray:
    """Real requantisation multiplier M * 2**-S per output channel."""
    return layer.arrays["M"].astype(np.float64) * np.ldexp(1.0, -layer.arrays["S"].astype(np.int64))


def requantised_in_float32(program: Program, layer: Layer) -> bool:
    """Whether the integer graph folds this conv's requantisation into the conv in float32
    (every channel passes :func:`codenet_pynq.intmath.requant_fits_float32`); otherwise it
    requantises in float64."""
    w = layer.arrays["weight"]
    bound = channel_bounds(w, program.tensors[layer.inputs[0]].kind, program.max_offset)
    return bool(requant_fits_float32(bound, layer.arrays["bias"], layer.arrays["M"], layer.arrays["S"]).all())


def _input_needs(layer: Layer) -> Optional[str]:
    """Layout a layer needs for its (first) input, or None when any layout works."""
    if layer.op == "conv":
        if layer.offset is not None:
            return ROWS
        return None if _is_pointwise(layer) else NCHW
    if layer.op == "maxpool":
        return NCHW
    return None


class _Graph:
    """Small helper around onnx.helper: unique names, constants, nodes."""

    def __init__(self) -> None:
        self.nodes: List[onnx.NodeProto] = []
        self.inits: List[onnx.TensorProto] = []
        self._count = 0
        self._consts: Dict[Tuple[str, bytes, Tuple[int, ...]], str] = {}

    def fresh(self, hint: str) -> str:
        self._count += 1
        return f"{hint}__{self._count}"

    def const(self, value: Any, dtype: Any = np.float32, hint: str = "c") -> str:
        arr = np.asarray(value, dtype=dtype)
        key = (arr.dtype.str, arr.tobytes(), arr.shape)
        if key in self._consts and arr.size <= 64:
            return self._consts[key]
        name = self.fresh(hint)
        self.inits.append(numpy_helper.from_array(arr, name))
        if arr.size <= 64:
            self._consts[key] = name
        return name

    def weight(self, value: np.ndarray, hint: str, scale: Optional[np.ndarray] = None) -> str:
        """float32 weight tensor from integer weights, optionally times ``scale`` (broadcast
        against them; M 2**-S per output channel, the product exact in float32). Stored as int8
        and cast (and scaled) in the graph; ONNX Runtime folds that at load."""
        arr = np.asarray(value)
        if arr.size <= 64:
            return self.const(arr if scale is None else arr * scale, np.float32, hint)
        w = self.op("Cast", [self.const(arr.astype(np.int8), np.int8, hint)], hint, to=TensorProto.FLOAT)
        return w if scale is None else self.op("Mul", [w, self.const(scale, np.float32, hint)], hint)

    def op(self, op_type: str, inputs: Sequence[str], hint: str = "t", n_out: int = 1, domain: str = "",
           **attrs: Any):
        outs = [self.fresh(f"{hint}.{op_type}") for _ in range(n_out)]
        self.nodes.append(helper.make_node(op_type, list(inputs), outs, name=outs[0], domain=domain or None, **attrs))
        return outs[0] if n_out == 1 else outs


class _Lowering:
    """Lowers a validated program to ONNX nodes (``exact``: integer graph; else float twin)."""

    def __init__(self, program: Program, exact: bool = True) -> None:
        program.validate()
        self.p = program
        self.exact = exact
        self.g = _Graph()
        self.vals: Dict[Tuple[str, str], str] = {}   # (tensor, layout) -> onnx value
        self.home: Dict[str, str] = {}               # tensor -> layout it was produced in
        self.tap_index: Dict[Tuple[str, int], List[str]] = {}  # (offset, factor) -> 9 index vectors
        self.tap_tables: Dict[Tuple[int, int, int], str] = {}  # (H, W, factor) -> row-index table
        # nearest upsamples are deferred: tensor -> (coarse tensor holding it, factor); see _coarse_of
        self.coarse: Dict[str, Tuple[str, int]] = {}
        self.coarse_shapes: Dict[str, Tuple[int, int, int]] = {}
        self.demand = self._plan_demand()

    # ---------------------------------------------------------------- layout planning
    def _plan_demand(self) -> Dict[str, Set[str]]:
        """Layouts that the consumers of each tensor need (data movement passes demand back)."""
        demand: Dict[str, Set[str]] = {t: set() for t in self.p.tensors}
        for name in self.p.outputs.values():
            demand[name].add(NCHW)
        for layer in reversed(self.p.layers):
            for i, t in enumerate(layer.inputs):
                if layer.op in ("upsample", "concat", "slice", "shuffle"):
                    demand[t] |= demand[layer.output]
                elif i == 0:
                    need = self._input_needs(layer)
                    if need:
                        demand[t].add(need)
        return demand

    def _input_needs(self, layer: Layer) -> Optional[str]:
        return _input_needs(layer)

    def _choose(self, tensor: str, fallback: str) -> str:
        d = self.demand[tensor]
        return next(iter(d)) if len(d) == 1 else fallback

    # ---------------------------------------------------------------- values and layouts
    def shape(self, tensor: str) -> Tuple[int, int, int]:
        if tensor in self.coarse_shapes:
            return self.coarse_shapes[tensor]
        h, w, c = self.p.tensors[tensor].shape
        return int(h), int(w), int(c)

    def get(self, tensor: str, layout: str) -> str:
        """ONNX value of ``tensor`` in ``layout``, converting (once) if needed."""
        key = (tensor, layout)
        if key in self.vals:
            return self.vals[key]
        if tensor in self.coarse:  # a deferred nearest upsample, materialised for this consumer
            base, f = self.coarse[tensor]
            v = self._upsample(self.get(base, layout), self.shape(base), f, layout, tensor)
        else:
            v = self._convert(tensor, layout)
        self.vals[key] = v
        return v

    def _convert(self, tensor: str, layout: str) -> str:
        """ONNX value of ``tensor`` (not a deferred upsample) in ``layout``, from its home layout."""
        g = self.g
        h, w, c = self.shape(tensor)
        if tensor == self.p.input:  # raw NHWC uint8 image
            img = "image"
            if layout == NCHW:
                img = g.op("Transpose", [img], "image", perm=[0, 3, 1, 2])
            else:
                img = g.op("Reshape", [img, g.const([h * w, c], np.int64)], "image")
            v = g.op("Cast", [img], "image", to=TensorProto.FLOAT)
        else:
            src = self.vals[(tensor, self.home[tensor])]
            if c == 1:
                shp = [1, 1, h, w] if layout == NCHW else [h * w, 1]
                v = g.op("Reshape", [src, g.const(shp, np.int64)], tensor)
            elif layout == ROWS:
                t = g.op("Reshape", [src, g.const([c, h * w], np.int64)], tensor)
                v = g.op("Transpose", [t], tensor, perm=[1, 0])
            else:
                t = g.op("Transpose", [src], tensor, perm=[1, 0])
                v = g.op("Reshape", [t, g.const([1, c, h, w], np.int64)], tensor)
        return v

    def put(self, tensor: str, layout: str, value: str) -> None:
        self.vals[(tensor, layout)] = value
        self.home[tensor] = layout

    def _upsample(self, src: str, shape: Tuple[int, int, int], f: int, layout: str, hint: str) -> str:
        """Nearest upsample by ``f`` of the value ``src`` (``shape`` h, w, c) in ``layout``."""
        g = self.g
        h, w, c = shape
        shp = [1, c, h, 1, w, 1] if layout == NCHW else [h, 1, w, 1, c]
        big = [1, c, h, f, w, f] if layout == NCHW else [h, f, w, f, c]
        out = [1, c, f * h, f * w] if layout == NCHW else [f * f * h * w, c]
        t = g.op("Reshape", [src, g.const(shp, np.int64)], hint)
        t = g.op("Expand", [t, g.const(big, np.int64)], hint)
        return g.op("Reshape", [t, g.const(out, np.int64)], hint)

    def _coarse_of(self, tensor: str) -> Tuple[str, int]:
        """``(coarse tensor, factor)`` holding ``tensor``: itself and 1 unless it is a deferred upsample.

        Nearest upsamples are not computed where the program has them. Every per-pixel op after
        one (1x1 convs, their requantisation, the offset conv) runs on the coarse map, f*f times
        fewer pixels, and the per-pixel dilation gathers its taps straight from the coarse rows;
        any other consumer materialises the upsample (:meth:`get`). Same integers either way.
        """
        return self.coarse.get(tensor, (tensor, 1))

    def any_layout(self, tensor: str) -> str:
        return self.home.get(tensor, ROWS if tensor == self.p.input else NCHW)

    # ---------------------------------------------------------------- conv
    def _chunks(self, w: np.ndarray, in_kind: str) -> List[Tuple[int, int]]:
        """Input-channel ranges whose float32 partial sums stay below 2**24."""
        if conv_accumulator_bound(w, in_kind, self.p.max_offset) < FLOAT32_EXACT:
            return [(0, w.shape[3])]
        lo, hi = kind_range(in_kind, self.p.max_offset)
        amp = max(abs(lo), abs(hi))
        per_ch = (np.abs(w.astype(np.int64)).sum(axis=(1, 2)) * amp).max(axis=0)  # per input channel
        if per_ch.max() >= FLOAT32_EXACT:
            raise ProgramError("a single input channel exceeds the float32-exact accumulator bound")
        chunks, start, total = [], 0, 0
        for i, v in enumerate(per_ch):
            if total + v >= FLOAT32_EXACT:
                chunks.append((start, i))
                start, total = i, 0
            total += v
        chunks.append((start, w.shape[3]))
        return chunks

    def _pointwise(self, name: str, src: str, in_layout: str, hw: Tuple[int, int], w2: np.ndarray,
                   out_layout: str, scale: Optional[np.ndarray] = None, bias: Optional[np.ndarray] = None) -> str:
        """1x1 conv (w2: O x I integers, times ``scale`` per output channel, plus ``bias``) of
        the value ``src`` from ``in_layout`` to ``out_layout``."""
        g = self.g
        h, wd = hw
        o, i = w2.shape
        rows_out = out_layout == ROWS
        sc = None if scale is None else (scale[None, :] if rows_out else scale[:, None])
        b = [] if bias is None else [g.const(bias if rows_out or in_layout == NCHW else bias[:, None], hint=f"{name}.b")]
        if in_layout == NCHW and out_layout == NCHW:
            return g.op("Conv", [src, g.weight(w2[:, :, None, None], f"{name}.w",
                                               None if sc is None else sc[:, :, None, None])] + b, name)
        wname = g.weight(w2.T if rows_out else w2, f"{name}.w", sc)
        if in_layout == ROWS and out_layout == ROWS:
            return g.op("Gemm", [src, wname] + b, name) if b else g.op("MatMul", [src, wname], name)
        if in_layout == NCHW:  # -> rows: (C, HW)^T @ W^T
            flat = g.op("Reshape", [src, g.const([i, h * wd], np.int64)], name)
            return g.op("Gemm", [flat, wname] + b, name, transA=1)
        y = g.op("Gemm", [wname, src] + b, name, transB=1)  # rows -> nchw: W @ X^T
        return g.op("Reshape", [y, g.const([1, o, h, wd], np.int64)], name)

    def _tap_table(self, h: int, w: int, f: int) -> str:
        """int32 table (B+1, 9, H*W) of every tap's row index: entry ``[o, t, p]`` is the row
        that tap ``t`` of pixel ``p`` reads at offset ``o`` (0..B) from zero-padded rows held
        ``f`` times coarser, or the zero row (index (H/f)*(W/f)) when the tap is outside.

        Built in the graph from scalars, so ONNX Runtime computes it once at load (constant
        folding) and the model file stays small."""
        key = (h, w, f)
        if key in self.tap_tables:
            return self.tap_tables[key]
        g = self.g
        hint = f"taps{h}x{w}/{f}"
        i32 = np.int32  # row indices below 2**31
        p = g.op("Range", [g.const(0, i32), g.const(h * w, i32), g.const(1, i32)], hint)  # (HW,)
        yy = g.op("Div", [p, g.const(w, i32)], hint)
        xx = g.op("Sub", [p, g.op("Mul", [yy, g.const(w, i32)], hint)], hint)
        d = g.const(np.arange(1, self.p.max_offset + 2).reshape(-1, 1, 1), i32)  # dilation 1 + o
        dy = g.const(np.array([t[0] for t in TAPS]).reshape(1, 9, 1), i32)
        dx = g.const(np.array([t[1] for t in TAPS]).reshape(1, 9, 1), i32)
        ty = g.op("Add", [g.op("Mul", [d, dy], hint), yy], hint)  # (B+1, 9, HW)
        tx = g.op("Add", [g.op("Mul", [d, dx], hint), xx], hint)
        zero = g.const(0, i32)
        inside = g.op("And", [
            g.op("And", [g.op("GreaterOrEqual", [ty, zero], hint), g.op("Less", [ty, g.const(h, i32)], hint)], hint),
            g.op("And", [g.op("GreaterOrEqual", [tx, zero], hint), g.op("Less", [tx, g.const(w, i32)], hint)], hint),
        ], hint)
        if f > 1:  # Div truncates; it only matters where the tap is inside (ty, tx >= 0)
            fc = g.const(f, i32)
            ty, tx = g.op("Div", [ty, fc], hint), g.op("Div", [tx, fc], hint)
        lin = g.op("Add", [g.op("Mul", [ty, g.const(w // f, i32)], hint), tx], hint)
        idx = g.op("Where", [inside, lin, g.const((h // f) * (w // f), i32)], hint)
        self.tap_tables[key] = idx
        return idx

    def _offset_taps(self, off: str, f: int = 1) -> List[str]:
        """9 int32 index vectors (H*W) for the per-pixel dilation into the zero-padded rows of a
        source held ``f`` times coarser (its zero row is the last, index (H/f)*(W/f)): one
        ``GatherElements`` from :meth:`_tap_table` at ``[off[p], t, p]``."""
        if (off, f) in self.tap_index:
            return self.tap_index[(off, f)]
        g = self.g
        h, w, _ = self.p.tensors[off].shape
        hw = h * w
        o = g.op("Reshape", [self.get(off, ROWS), g.const([1, 1, hw], np.int64)], off)
        o = g.op("Expand", [g.op("Cast", [o], off, to=TensorProto.INT32), g.const([1, 9, hw], np.int64)], off)
        idx = g.op("GatherElements", [self._tap_table(h, w, f), o], off, axis=0)  # (1, 9, HW)
        taps = g.op("Split", [g.op("Reshape", [idx, g.const([9, hw], np.int64)], off)], off, n_out=9, axis=0,
                    num_outputs=9)
        self.tap_index[(off, f)] = taps
        return taps

    def _offset_dw(self, layer: Layer, w: np.ndarray, scale: Optional[np.ndarray] = None,
                   bias: Optional[np.ndarray] = None) -> str:
        """3x3 depthwise conv with per-pixel dilation, rows in and rows out (weights times
        ``scale`` per channel; ``bias`` rides on the first tap: every output pixel gathers exactly
        one row for it, a real one or the zero row, which then holds the bias too)."""
        g = self.g
        x = layer.inputs[0]
        h, wd, cin = self.shape(x)
        o = w.shape[0]
        base, f = self._coarse_of(x)  # taps read the coarse rows directly
        src = self.get(base, ROWS)
        if o != cin:  # channel multiplier: output o reads input o // (o / cin)
            src = g.op("Gather", [src, g.const(np.arange(o) // (o // cin), np.int64)], layer.name, axis=1)
        padded = g.op("Concat", [src, g.const(np.zeros((1, o), np.float32))], layer.name, axis=0)
        taps = self._offset_taps(layer.offset, f)
        acc = None
        for t, (dy, dx) in enumerate(TAPS):
            # scale, then gather: on a coarse source the scale pass sees f*f times fewer rows
            wt = w[:, dy + 1, dx + 1, 0] * (1.0 if scale is None else scale)
            bt = bias if t == 0 else None
            if dy == 0 and dx == 0 and f == 1:
                term = self._scale(src, wt, layer.name, bt)
            else:
                term = g.op("Reshape", [g.op("Gather", [self._scale(padded, wt, layer.name, bt), taps[t]], layer.name,
                                             axis=0), g.const([h * wd, o], np.int64)], layer.name)
            acc = term if acc is None else g.op("Add", [acc, term], layer.name)
        return acc

    def _conv(self, layer: Layer) -> None:
        g = self.g
        a = layer.attrs
        x = layer.inputs[0]
        src_info = self.p.tensors[x]
        w = layer.arrays["weight"]
        o = w.shape[0]
        # folded: weights times M 2**-S and the rounding bias inside the conv (exact in float32
        # where the layer's multipliers allow it, see module doc); the float twin always folds
        fold = not self.exact or requantised_in_float32(self.p, layer)
        scale = bias = None
        if fold:
            scale = _multiplier(layer)
            bias = layer.arrays["bias"] * scale + (0.5 if self.exact else 0.0)  # (b M + 2**(S-1)) 2**-S
        chunks = [(0, w.shape[3])] if fold else self._chunks(w, src_info.kind)
        base, f = x, 1  # a 1x1 conv on a deferred upsample runs on its coarse map (f > 1)
        if layer.offset is not None:
            out_layout, accs = ROWS, [self._offset_dw(layer, w, scale, bias)]
        elif _is_pointwise(layer):
            base, f = self._coarse_of(x)
            in_layout = self.any_layout(base)
            out_layout = self._choose(layer.output, in_layout)
            src = self.get(base, in_layout)
            w2 = w[:, 0, 0, :].astype(np.float32)
            accs = []
            for c0, c1 in chunks:
                part = src if len(chunks) == 1 else g.op(
                    "Slice", [src, g.const([c0], np.int64), g.const([c1], np.int64), g.const([1], np.int64)],
                    layer.name)
                accs.append(self._pointwise(layer.name, part, in_layout, self.shape(base)[:2], w2[:, c0:c1],
                                            out_layout, scale, bias))
        else:
            out_layout = NCHW
            k, groups = int(a["k"]), int(a.get("groups", 1))
            if len(chunks) > 1 and groups != 1:
                raise ProgramError(f"{layer.name}: grouped conv exceeds the float32-exact accumulator bound")
            attrs = dict(kernel_shape=[k, k], strides=[int(a.get("stride", 1))] * 2,
                         pads=[int(a.get("pad", k // 2))] * 4, dilations=[int(a.get("dilation", 1))] * 2,
                         group=groups)
            src = self.get(x, NCHW)
            wt = np.transpose(w, (0, 3, 1, 2))  # OHWI -> OIHW
            accs = []
            for c0, c1 in chunks:
                part = src if len(chunks) == 1 else g.op(
                    "Slice", [src, g.const([c0], np.int64), g.const([c1], np.int64), g.const([1], np.int64)],
                    layer.name)
                ins = [part, g.weight(wt[:, c0:c1], f"{layer.name}.w",
                                      None if scale is None else scale[:, None, None, None])]
                accs.append(g.op("Conv", ins + ([] if bias is None else [g.const(bias, hint=f"{layer.name}.b")]),
                                 layer.name, **attrs))
        pools = self._pools_first(layer) if out_layout == NCHW and len(accs) == 1 and f == 1 else []
        if pools:  # max-pool the accumulators: requantisation is monotonic, so it commutes
            accs = [g.op("MaxPool", accs, layer.name, kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])]
        out = self.p.tensors[layer.output]
        klo, khi = kind_range(out.kind, self.p.max_offset)
        lo, hi = int(a.get("lo", klo)), int(a.get("hi", khi))
        if not fold:
            y = self._requantize(layer, accs, lo, hi)
        else:  # clamp (fused into the conv by ONNX Runtime), then floor: Floor(Clip(v)) = Clip(Floor(v))
            y = g.op("Clip", [accs[0], g.const(lo), g.const(hi)], layer.name)
            if self.exact or out.kind == "off":  # the float twin rounds only the offsets
                y = g.op("Floor" if self.exact else "Round", [y], layer.name)
        if pools:
            for pool in pools:
                self.put(pool.output, NCHW, y)
        elif f > 1:  # the output stays coarse too: the upsample moves past this layer
            coarse = f"{layer.output}/{f}"
            self.coarse_shapes[coarse] = self.shape(base)[:2] + (o,)
            self.coarse[layer.output] = (coarse, f)
            self.put(coarse, out_layout, y)
        else:
            self.put(layer.output, out_layout, y)

    def _pools_first(self, layer: Layer) -> List[Layer]:
        """Max-pool layers that take this conv's accumulators before the requantisation (their
        outputs are then produced by the conv); none in the standard graph."""
        return []

    def _scale(self, x: str, scale: np.ndarray, hint: str, bias: Optional[np.ndarray] = None,
               dtype: Any = np.float32) -> str:
        """Per-channel ``x * scale + bias`` (channel axis 1) in one pass.

        Written as an inference BatchNormalization with mean 0 and variance ``1 - eps``: the
        spec's ``(x - 0) / sqrt((1 - eps) + eps) * scale + bias`` is ``x * scale + bias``
        exactly (``1 - eps`` and the sum ``1`` are exact for eps = 2**-20), and it is faster in
        ONNX Runtime than a broadcast Mul + Add.
        """
        g = self.g
        n = len(scale)
        eps = 2.0 ** -20
        b = np.zeros(n) if bias is None else bias
        return g.op("BatchNormalization", [x, g.const(scale, dtype, hint=f"{hint}.scale"),
                                           g.const(b, dtype, hint=f"{hint}.bias"), g.const(np.zeros(n), dtype),
                                           g.const(np.full(n, 1.0 - eps), dtype)], hint, epsilon=eps)

    def _requantize(self, layer: Layer, accs: List[str], lo: int, hi: int) -> str:
        """float64 ``clamp(floor(acc * M 2**-S + (bias * M + 2**(S-1)) 2**-S), lo, hi)`` -> float32."""
        g = self.g
        m = layer.arrays["M"].astype(np.float64)
        s = layer.arrays["S"].astype(np.int64)
        b = layer.arrays["bias"].astype(np.float64)
        scale = np.ldexp(1.0, -s)  # 2**-S, exact
        r = m * scale
        c = (b * m + np.ldexp(1.0, s - 1)) * scale
        assert np.all(np.abs(b * m) < 2.0 ** 52), "bias * M not exact in float64"
        acc64 = [g.op("Cast", [a], layer.name, to=TensorProto.DOUBLE) for a in accs]
        acc = acc64[0] if len(acc64) == 1 else g.op("Sum", acc64, layer.name)
        assert ROUNDING_CAST_MAX_SHIFT <= 28, "beyond S = 28 the rounding-cast form is not exact"
        if int(s.max()) <= ROUNDING_CAST_MAX_SHIFT:
            # u = v - 1/2 + 2**-(S+1) + K (exact); float32 spacing is 1 on [2**23, 2**24), so the
            # round-to-nearest Cast gives floor(v) + K (u is never halfway between integers)
            cm = b * m * scale + np.ldexp(1.0, -(s + 1)) + ROUNDING_OFFSET
            u = self._scale(acc, r, layer.name, cm, np.float64)
            f = g.op("Cast", [u], layer.name, to=TensorProto.FLOAT)
            f = g.op("Clip", [f, g.const(lo + ROUNDING_OFFSET), g.const(hi + ROUNDING_OFFSET)], layer.name)
            return g.op("Sub", [f, g.const(ROUNDING_OFFSET)], layer.name)
        v = self._scale(acc, r, layer.name, c, np.float64)
        f = g.op("Cast", [g.op("Floor", [v], layer.name)], layer.name, to=TensorProto.FLOAT)
        return g.op("Clip", [f, g.const(lo), g.const(hi)], layer.name)

    # ---------------------------------------------------------------- data movement
    def _move(self, layer: Layer) -> None:
        g = self.g
        op, x = layer.op, layer.inputs[0]
        h, w, c = self.shape(x)
        if op == "maxpool":
            y = g.op("MaxPool", [self.get(x, NCHW)], layer.name, kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
            self.put(layer.output, NCHW, y)
            return
        lay = self._choose(layer.output, self.any_layout(x))
        if op == "concat":
            y = g.op("Concat", [self.get(t, lay) for t in layer.inputs], layer.name, axis=1)
        elif op == "slice":
            y = g.op("Slice", [self.get(x, lay), g.const([int(layer.attrs["c0"])], np.int64),
                               g.const([int(layer.attrs["c1"])], np.int64), g.const([1], np.int64)], layer.name)
        elif op == "upsample":  # deferred (see _coarse_of); get() materialises it where needed
            base, f = self._coarse_of(x)
            self.coarse[layer.output] = (base, 2 * f)
            return
        elif op == "shuffle":
            k = int(layer.attrs["groups"])
            if lay == NCHW:
                t = g.op("Reshape", [self.get(x, lay), g.const([1, k, c // k, h * w], np.int64)], layer.name)
                t = g.op("Transpose", [t], layer.name, perm=[0, 2, 1, 3])
                y = g.op("Reshape", [t, g.const([1, c, h, w], np.int64)], layer.name)
            else:
                t = g.op("Reshape", [self.get(x, lay), g.const([h * w, k, c // k], np.int64)], layer.name)
                t = g.op("Transpose", [t], layer.name, perm=[0, 2, 1])
                y = g.op("Reshape", [t, g.const([h * w, c], np.int64)], layer.name)
        else:
            raise ProgramError(f"unknown op {op!r}")
        self.put(layer.output, lay, y)

    # ---------------------------------------------------------------- whole graph
    def build(self) -> onnx.ModelProto:
        g = self.g
        h, w, c = self.shape(self.p.input)
        for layer in self.p.layers:
            if layer.op == "conv":
                self._conv(layer)
            elif layer.output not in self.home:  # (a max-pool already done by its conv)
                self._move(layer)
        outputs, meta_out = [], {}
        for role, tensor in self.p.outputs.items():
            info = self.p.tensors[tensor]
            th, tw, tc = self.shape(tensor)
            v = self.get(tensor, NCHW)
            if self.exact:
                name = f"{role}_q"
                dtype = TensorProto.INT8 if storage_dtype(info.kind) == np.int8 else TensorProto.UINT8
                g.nodes.append(helper.make_node("Cast", [v], [name], to=dtype))
            else:
                name, dtype = role, TensorProto.FLOAT
                g.nodes.append(helper.make_node("Mul", [v, g.const(info.scale)], [name]))
            outputs.append(helper.make_tensor_value_info(name, dtype, [1, tc, th, tw]))
            meta_out[role] = {"name": name, "scale": info.scale, "kind": info.kind, "layout": "NCHW"}
        graph = helper.make_graph(
            g.nodes, "codenet_int" if self.exact else "codenet_float_twin",
            [helper.make_tensor_value_info("image", TensorProto.UINT8, [1, h, w, c])], outputs, g.inits)
        opsets = [helper.make_opsetid("", OPSET)] + [helper.make_opsetid(d, 1) for d in
                                                      sorted({n.domain for n in g.nodes if n.domain})]
        model = helper.make_model(graph, opset_imports=opsets,
                                  producer_name="codenet-pynq")
        model.ir_version = IR_VERSION
        meta = {"format": FORMAT_VERSION, "exact": self.exact,
                "input": {"name": "image", "dtype": "uint8", "layout": "NHWC", "channels": "BGR",
                          "shape": [1, h, w, c]},
                "outputs": meta_out, "max_offset": self.p.max_offset}
        helper.set_model_props(model, {METADATA_KEY: json.dumps(meta, sort_keys=True)})
        return model


def build_int_onnx(program: Program) -> onnx.ModelProto:
    """ONNX model (opset 19) computing ``program`` bit-exactly; see the module doc for its interface."""
    return _Lowering(program, exact=True).build()


def build_float_onnx(program: Program) -> onnx.ModelProto:
    """Float twin for latency comparisons: same topology and layouts, no requantisation.

    It is the dequantised model with BN folded (weights and bias times ``M * 2**-S``, the clamp
    as a float activation, offsets rounded), in "output integer" units; its outputs
    ``<role>`` (float32 [1, C, H, W], times the output scale) follow the integer model only
    loosely (no rounding), so use it for timing, not for accuracy.
    """
    return _Lowering(program, exact=False).build()


def read_int_metadata(model_or_props: Union[onnx.ModelProto, Mapping[str, str]]) -> Dict[str, Any]:
    """The ``codenet_int`` metadata of a model (or of ``session.get_modelmeta().custom_metadata_map``)."""
    if isinstance(model_or_props, onnx.ModelProto):
        props = {p.key: p.value for p in model_or_props.metadata_props}
    else:
        props = dict(model_or_props)
    if METADATA_KEY not in props:
        raise ValueError(f"the ONNX model has no {METADATA_KEY!r} metadata: it is not an integer CoDeNet graph")
    return json.loads(props[METADATA_KEY])


def onnx_int_outputs(session_outputs: Union[Sequence[np.ndarray], Mapping[str, np.ndarray]],
                     program: Program) -> Dict[str, np.ndarray]:
    """role -> H x W x C integer array (golden layout and dtype) from the integer graph's outputs.

    ``session_outputs`` is either a dict output name -> array or the list that
    ``session.run(None, ...)`` returns (outputs in the order of ``program.outputs``).
    """
    if not isinstance(session_outputs, Mapping):
        session_outputs = {f"{role}_q": v for role, v in zip(program.outputs, session_outputs)}
    res = {}
    for role, tensor in program.outputs.items():
        arr = np.asarray(session_outputs[f"{role}_q"])
        res[role] = np.ascontiguousarray(arr[0].transpose(1, 2, 0)).astype(storage_dtype(program.tensors[tensor].kind))
    return res


def _benchmark(argv: Optional[Sequence[str]] = None) -> None:
    """``python -m codenet_pynq.training.quant.onnx_int --size 256``: int vs float twin latency."""
    import argparse
    import time

    import onnxruntime as ort

    from codenet_pynq.golden import run_program
    from codenet_pynq.synthetic import codenet_like_program

    ap = argparse.ArgumentParser(description=_benchmark.__doc__)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--width", type=float, default=1.0)
    ap.add_argument("--threads", type=int, default=0, help="ORT intra-op threads (0: ORT default)")
    ap.add_argument("--runs", type=int, default=20)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    prog = codenet_like_program(rng, args.size, width=args.width)
    image = rng.integers(0, 256, (args.size, args.size, 3), dtype=np.uint8)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.threads
    sessions = {kind: ort.InferenceSession(build(prog).SerializeToString(), opts, providers=["CPUExecutionProvider"])
                for kind, build in (("int", build_int_onnx), ("float", build_float_onnx))}
    feed = {"image": image[None]}
    got = onnx_int_outputs(sessions["int"].run(None, feed), prog)
    gold = run_program(prog, image)
    exact = all(np.array_equal(got[r], gold[r]) for r in gold)
    times: Dict[str, List[float]] = {k: [] for k in sessions}
    for _ in range(args.runs):  # interleaved, so that machine load hits both alike
        for kind, sess in sessions.items():
            t0 = time.perf_counter()
            sess.run(None, feed)
            times[kind].append(time.perf_counter() - t0)
    best = {k: min(v) * 1e3 for k, v in times.items()}
    med = {k: float(np.median(v)) * 1e3 for k, v in times.items()}
    print(f"{args.size}x{args.size} width {args.width}: {prog.macs() / 1e9:.2f} GMAC, exact={exact}")
    for k in sessions:
        print(f"  {k:5s}  min {best[k]:7.1f} ms  median {med[k]:7.1f} ms")
    print(f"  int / float: {best['int'] / best['float']:.2f} (min), {med['int'] / med['float']:.2f} (median)")


if __name__ == "__main__":
    _benchmark()
