"""The fast integer CPU graph: 8-bit tensors and ONNX Runtime's int32 conv kernels, still exact.

Same interface and the same integers as :func:`.onnx_int.build_int_onnx` (whose module doc
describes the float-exact lowering this one starts from), built for ONNX Runtime's CPU provider
only (it uses the ``com.microsoft`` contrib ``QLinearConv`` with ``channels_last``), so it is
built from the program when a session is created rather than stored in the artifact:

- Tensors that 8-bit convs read or write live as NHWC uint8 ``(1, H, W, C)`` holding the value
  plus a zero point (0 for ``u8``, 128 for ``s8``); concat, slice, shuffle and the deferred
  upsamples move them as bytes. Other tensors keep the float-exact layouts.
- A conv whose weights fit the u8 x s8 kernel without int16 saturation (``|w| <= 64``: the AVX2
  kernel adds two u8*s8 products in int16), whose output is an 8-bit kind with its full clamp
  range, and whose requantisation :func:`.qlinear.qlinear_scales` proves exact, is one
  ``QLinearConv`` (int32 accumulation, requantisation fused), or two and an element-wise ``Max``
  (the dual form, for ``s8`` outputs). Other convs (the int8 stem, the 1-channel offset convs)
  keep the float-exact form.
- The per-pixel dilation gathers the 9 taps of every pixel as bytes into a ``(1, H*W, 9, C)``
  tensor, which a depthwise 1x9 ``QLinearConv`` reduces; tap indices as in the float-exact graph.
- A conv read only by max-pools is pooled before its requantisation (monotonic, so it commutes):
  the int8 stem requantises a quarter of the values.
"""

from __future__ import annotations

import functools
from typing import Dict, List, Optional, Set, Tuple

import numpy as np
import onnx
from onnx import TensorProto, helper

from codenet_pynq.golden import conv_accumulate
from codenet_pynq.intmath import kind_range
from codenet_pynq.program import Layer, Program

from .onnx_int import (
    IR_VERSION,
    NCHW,
    OPSET,
    ROWS,
    TAPS,
    _Graph,
    _is_pointwise,
    _Lowering,
    _multiplier,
    requantised_in_float32,
)
from .qlinear import qlinear_requantize, qlinear_scales, zero_point

__all__ = ["build_fast_int_onnx", "runtime_self_test", "MS_DOMAIN", "SATURATION_FREE_WEIGHT"]

MS_DOMAIN = "com.microsoft"
Q8 = "q8"  # NHWC uint8 (1, H, W, C), value + zero point
#: largest |weight| for which two u8 * s8 products always fit int16 (2 * 255 * 64 < 2**15)
SATURATION_FREE_WEIGHT = 64
#: channel block of ONNX Runtime's u8 depthwise kernel (see _FastLowering._plan_channel_padding)
CHANNEL_BLOCK = 16
#: pixels per tile of the per-pixel dilation: 4096 pixels of 128 channels gather 4.7 MB of taps,
#: which stay in cache for the conv that reduces them (a 1x9 QLinearConv over 16384 x 9 x 128
#: bytes took 6.7 ms in one call, 2.8 ms in four calls of 4096 pixels; 1024 pixels: 3.0 ms)
TAP_TILE_PIXELS = 4096

Scales = Tuple[np.ndarray, Optional[np.ndarray]]


class _FastLowering(_Lowering):
    """:class:`.onnx_int._Lowering` with 8-bit tensors and ``QLinearConv`` where exact."""

    def __init__(self, program: Program) -> None:
        program.validate()
        self.qplan: Dict[str, Scales] = {}  # layer -> QLinearConv scales
        self.mmi: Set[str] = set()  # 1x1 convs as MatMulInteger + float-exact requantisation
        for layer, sc in self._plan(program):
            if _is_pointwise(layer) and (sc is None or sc[1] is not None) and layer.arrays["weight"].shape[3] >= 16:
                self.mmi.add(layer.name)  # a second conv costs more than requantising in float
            elif sc is not None:
                self.qplan[layer.name] = sc
        self.consumers: Dict[str, List[Layer]] = {}
        for layer in program.layers:
            for t in layer.inputs:
                self.consumers.setdefault(t, []).append(layer)
        self.channels = self._plan_channel_padding(program)
        self.row_index: Dict[Tuple[str, int], str] = {}
        self.tiles: Dict[str, List[str]] = {}  # tiled per-pixel dilation output -> its tiles (1, n, 1, C)
        super().__init__(program, exact=True)

    # ---------------------------------------------------------------- planning
    @staticmethod
    def _plan(p: Program):
        """(layer, QLinearConv scales or None) of every conv with 8-bit input and weights that
        the int8 kernels can take."""
        for layer in p.layers:
            if layer.op != "conv":
                continue
            a = layer.attrs
            src, out = p.tensors[layer.inputs[0]], p.tensors[layer.output]
            if src.kind not in ("u8", "s8"):
                continue
            if np.abs(layer.arrays["weight"].astype(np.int64)).max(initial=0) > SATURATION_FREE_WEIGHT:
                continue
            klo, khi = kind_range(out.kind, p.max_offset)
            lo, hi = int(a.get("lo", klo)), int(a.get("hi", khi))
            sc = None
            if zero_point(lo, hi) == zero_point(*kind_range(out.kind)) and (layer.offset is None or out.kind == "u8"):
                sc = qlinear_scales(layer.arrays["M"], layer.arrays["S"], lo, hi)
            if sc is not None or _is_pointwise(layer):
                yield layer, sc

    def _plan_channel_padding(self, p: Program) -> Dict[str, int]:
        """tensor -> channels it is stored with, for the tensors around a depthwise QLinearConv
        whose channel count is not a multiple of :data:`CHANNEL_BLOCK`.

        ONNX Runtime's u8 depthwise kernel is about twice as fast on whole blocks of 16 channels
        (measured: 3x3 at 32 x 32, 116 channels 0.16 ms, 112 or 128 channels 0.09 ms; 64 x 64 x 58
        0.36 ms, 64 channels 0.20 ms). Where the depthwise conv reads a pointwise ``QLinearConv``
        and only pointwise 8-bit convs read it (ShuffleNet's branch), the three convs run on
        padded channels: the extra channels get zero weights and bias, so they hold the zero
        point and add nothing downstream; the pointwise convs cost the same or less."""
        producer = {layer.output: layer for layer in p.layers}
        outputs = set(p.outputs.values())
        upsampled: Set[str] = set()  # deferred upsamples and the pointwise convs on them (coarse)
        for layer in p.layers:
            if layer.op == "upsample" or (_is_pointwise(layer) and layer.inputs[0] in upsampled):
                upsampled.add(layer.output)
        padded: Dict[str, int] = {}
        for layer in p.layers:
            c = int(p.tensors[layer.output].shape[2])
            if (layer.name not in self.qplan or layer.offset is not None or int(layer.attrs.get("groups", 1)) != c
                    or c % CHANNEL_BLOCK == 0 or int(layer.attrs["k"]) == 1):
                continue
            x = layer.inputs[0]
            src = producer.get(x)
            readers = self.consumers.get(layer.output, [])
            if (src is None or src.name not in self.qplan or not _is_pointwise(src) or x in upsampled
                    or x in outputs or layer.output in outputs or len(self.consumers[x]) != 1 or not readers
                    or any(not _is_pointwise(r) or r.name not in self.qplan and r.name not in self.mmi
                           or r.inputs[0] in upsampled for r in readers)):
                continue
            padded[x] = padded[layer.output] = -(-c // CHANNEL_BLOCK) * CHANNEL_BLOCK
        return padded

    def _input_needs(self, layer: Layer) -> Optional[str]:
        if layer.op == "conv" and (layer.name in self.qplan or layer.name in self.mmi):
            return Q8
        return super()._input_needs(layer)

    def _pools_first(self, layer: Layer) -> List[Layer]:
        users = self.consumers.get(layer.output, [])
        if (layer.output in self.p.outputs.values() or not users or any(u.op != "maxpool" for u in users)):
            return []
        return users

    # ---------------------------------------------------------------- values and layouts
    def _kind_zp(self, tensor: str) -> int:
        """Zero point of a tensor's bytes: 128 for ``s8``, else 0 (coarse values: ``<tensor>/<f>``)."""
        info = self.p.tensors.get(tensor) or self.p.tensors[tensor.rsplit("/", 1)[0]]
        return 128 if info.kind == "s8" else 0

    def any_layout(self, tensor: str) -> str:
        """A float layout the tensor has or gets cheaply (the float-exact convs' inputs)."""
        lay = super().any_layout(tensor)
        return ROWS if lay == Q8 else lay

    def _choose(self, tensor: str, fallback: str) -> str:
        lay = super()._choose(tensor, fallback)  # float-exact producers never write bytes
        return fallback if lay == Q8 else lay

    def _convert(self, tensor: str, layout: str) -> str:
        g = self.g
        h, w, c = self.shape(tensor)
        if self._unjoined(tensor):  # join the tiles of a per-pixel dilation
            y = g.op("Concat", self.tiles[tensor], tensor, axis=1)
            self.vals[(tensor, Q8)] = g.op("Reshape", [y, g.const([1, h, w, self.channels.get(tensor, c)], np.int64)],
                                           tensor)
            if layout == Q8:
                return self.vals[(tensor, Q8)]
        if tensor == self.p.input and layout == Q8:
            v = "image"  # raw NHWC uint8, kind u8
        elif layout == Q8:  # float (integers) -> bytes + zero point
            lay = self.home[tensor]
            src = self.vals[(tensor, lay)]
            zp = self._kind_zp(tensor)
            if zp:
                src = g.op("Add", [src, g.const(float(zp))], tensor)
            v = g.op("Cast", [src], tensor, to=TensorProto.UINT8)
            v = (g.op("Transpose", [v], tensor, perm=[0, 2, 3, 1]) if lay == NCHW
                 else g.op("Reshape", [v, g.const([1, h, w, c], np.int64)], tensor))
        elif self.home.get(tensor) == Q8:  # bytes -> float integers
            src = self.vals[(tensor, Q8)]
            src = (g.op("Transpose", [src], tensor, perm=[0, 3, 1, 2]) if layout == NCHW and c > 1
                   else g.op("Reshape", [src, g.const([1, c, h, w] if layout == NCHW else [h * w, c], np.int64)],
                             tensor))
            v = g.op("Cast", [src], tensor, to=TensorProto.FLOAT)
            zp = self._kind_zp(tensor)
            if zp:
                v = g.op("Sub", [v, g.const(float(zp))], tensor)
        else:
            v = super()._convert(tensor, layout)
        return v

    def _upsample(self, src: str, shape: Tuple[int, int, int], f: int, layout: str, hint: str) -> str:
        if layout != Q8:
            return super()._upsample(src, shape, f, layout, hint)
        g = self.g
        h, w, c = shape
        t = g.op("Reshape", [src, g.const([1, h, 1, w, 1, c], np.int64)], hint)
        t = g.op("Expand", [t, g.const([1, h, f, w, f, c], np.int64)], hint)
        return g.op("Reshape", [t, g.const([1, f * h, f * w, c], np.int64)], hint)

    # ---------------------------------------------------------------- convs
    def _conv(self, layer: Layer) -> None:
        if layer.name in self.mmi:
            self._mmi(layer)
        elif layer.name not in self.qplan:
            super()._conv(layer)
        elif layer.offset is not None:
            self._qoffset_dw(layer)
        else:
            self._qconv(layer)

    def _qlinear(self, x: str, layer: Layer, weight: np.ndarray, zp_in: int, zp_out: int, hint: str,
                 **attrs) -> str:
        """QLinearConv (NHWC) with the layer's bias and planned scales; the dual form's two
        convs and their ``Max`` when there are two scale sets."""
        g = self.g
        o = weight.shape[0]  # (padded) output channels: the extra ones get bias 0, scale 1
        extra = o - len(layer.arrays["bias"])
        w = g.const(weight.astype(np.int8), np.int8, f"{hint}.w")
        common = [g.const(1.0), g.const(zp_in, np.uint8), w]
        tail = [g.const(np.zeros(o), np.int8), g.const(1.0), g.const(zp_out, np.uint8),
                g.const(np.pad(layer.arrays["bias"].astype(np.int32), (0, extra)), np.int32, f"{hint}.b")]
        outs = [g.op("QLinearConv", [x] + common + [g.const(np.pad(sc, (0, extra), constant_values=1.0), np.float32,
                                                             f"{hint}.scale")] + tail, hint,
                     domain=MS_DOMAIN, channels_last=1, **attrs)
                for sc in self.qplan[layer.name] if sc is not None]
        return outs[0] if len(outs) == 1 else g.op("Max", outs, hint)

    def _mmi(self, layer: Layer) -> None:
        """1x1 conv as ``MatMulInteger`` (u8 rows x s8, int32) and the float-exact requantisation:
        in float32 (``acc * M 2**-S + (bias * M + 2**(S-1)) 2**-S`` exact where the layer's
        multipliers fit, as in the folded convs) or else in float64 (:meth:`_requantize`).

        On the output of a tiled per-pixel dilation it runs per tile (the tile is still in
        cache) and the requantised tiles are joined."""
        g = self.g
        x = layer.inputs[0]
        base, f = self._coarse_of(x)
        hb, wb, _ = self.shape(base)
        cin = self.channels.get(base, layer.arrays["weight"].shape[3])  # padded channels: zero weights
        w2 = np.ascontiguousarray(layer.arrays["weight"][:, 0, 0, :].T)
        w2 = g.const(np.pad(w2, ((0, cin - w2.shape[0]), (0, 0))).astype(np.int8), np.int8, f"{layer.name}.w")
        tiles = self.tiles[base] if self._unjoined(base) else [self.get(base, Q8)]
        form = self._mmi_form(layer)
        ys = []
        for tile in tiles:
            src = g.op("Reshape", [tile, g.const([-1, cin], np.int64)], layer.name)
            acc = g.op("MatMulInteger", [src, w2, g.const(self._kind_zp(x), np.uint8)], layer.name)
            y, layout = self._mmi_requantize(layer, acc, form)
            ys.append(y)
        y = ys[0] if len(ys) == 1 else g.op("Concat", ys, layer.name, axis=0)
        if layout == Q8:
            y = g.op("Reshape", [y, g.const([1, hb, wb, layer.arrays["weight"].shape[0]], np.int64)], layer.name)
        self._put_conv(layer, base, f, layout, y)

    def _mmi_form(self, layer: Layer) -> str:
        """How :meth:`_mmi` requantises: ``"float64"`` (:meth:`_requantize`), or in float32 with the
        rounding left to ``QuantizeLinear`` into bytes (``"round-bytes"``) or into the graph output's
        own integers (``"round-output"``), or with ``Floor`` into bytes (``"floor-bytes"``) or float
        integers (``"floor-rows"``)."""
        if not requantised_in_float32(self.p, layer):
            return "float64"
        klo, khi = kind_range(self.p.tensors[layer.output].kind, self.p.max_offset)
        full = zero_point(int(layer.attrs.get("lo", klo)), int(layer.attrs.get("hi", khi))) == self._kind_zp(layer.output)
        out = layer.output in self.p.outputs.values() and not self.consumers.get(layer.output)
        if full and (out or self._bytes_only(layer.output)) and _rounds_in_quantize(layer):
            return "round-output" if out else "round-bytes"
        return "floor-bytes" if full and self._bytes_only(layer.output) else "floor-rows"

    def _mmi_requantize(self, layer: Layer, acc: str, form: str) -> Tuple[str, str]:
        """``(rows, layout)``: the int32 rows ``acc`` of :meth:`_mmi` requantised in ``form``
        (:meth:`_mmi_form`), as bytes (Q8, still to be shaped), as the output's own integers, or
        as float integers (ROWS)."""
        g = self.g
        klo, khi = kind_range(self.p.tensors[layer.output].kind, self.p.max_offset)
        lo, hi = int(layer.attrs.get("lo", klo)), int(layer.attrs.get("hi", khi))
        if form == "float64":
            return self._requantize(layer, [acc], lo, hi), ROWS
        scale = _multiplier(layer)
        zp = self._kind_zp(layer.output)
        # round-*: QuantizeLinear(u, 1, zp) = saturate(rint(u) + zp) with u = v - 1/2 + 2**-(S+1): rint(u)
        # is floor(v) (u is never a half) and saturation is the clamp (see _rounds_in_quantize)
        half = np.ldexp(1.0, -layer.arrays["S"].astype(np.int64) - 1) if form.startswith("round") else 0.5
        v = self._scale(g.op("Cast", [acc], layer.name, to=TensorProto.FLOAT), scale, layer.name,
                        layer.arrays["bias"] * scale + half)
        if form == "round-output":  # the output's own integers (int8 for s8), rows: the graph output transposes them
            return g.op("QuantizeLinear", [v, g.const(1.0), g.const(0, np.int8 if zp else np.uint8)], layer.name), ROWS
        if form == "round-bytes":
            return g.op("QuantizeLinear", [v, g.const(1.0), g.const(zp, np.uint8)], layer.name), Q8
        if form == "floor-bytes":
            # straight to bytes: QuantizeLinear(x, 1, zp) saturates x + zp to [0, 255], which on
            # integers is the clamp to [lo, hi] plus the zero point (one op for Clip, Add, Cast)
            return g.op("QuantizeLinear", [g.op("Floor", [v], layer.name), g.const(1.0), g.const(zp, np.uint8)],
                        layer.name), Q8
        return g.op("Floor", [g.op("Clip", [v, g.const(lo), g.const(hi)], layer.name)], layer.name), ROWS

    def _unjoined(self, tensor: str) -> bool:
        """Whether ``tensor`` is a tiled per-pixel dilation output whose tiles nobody joined yet."""
        return tensor in self.tiles and (tensor, Q8) not in self.vals

    def _bytes_only(self, tensor: str) -> bool:
        """Whether every consumer of ``tensor`` reads it as bytes (and it is not a graph output)."""
        return self.demand[tensor] == {Q8} and tensor not in self.p.outputs.values()

    def _put_conv(self, layer: Layer, base: str, f: int, layout: str, y: str) -> None:
        """Store a conv's output; a 1x1 conv on a deferred upsample keeps it coarse."""
        if f > 1:
            coarse = f"{layer.output}/{f}"
            self.coarse_shapes[coarse] = self.shape(base)[:2] + (layer.arrays["weight"].shape[0],)
            self.coarse[layer.output] = (coarse, f)
            self.put(coarse, layout, y)
        else:
            self.put(layer.output, layout, y)

    def _qconv(self, layer: Layer) -> None:
        a = layer.attrs
        x = layer.inputs[0]
        k = int(a["k"])
        base, f = self._coarse_of(x) if _is_pointwise(layer) else (x, 1)  # 1x1 convs run on the coarse map
        w = layer.arrays["weight"]
        groups = int(a.get("groups", 1))
        out_c = self.channels.get(layer.output, w.shape[0])
        in_c = w.shape[3] if groups > 1 else self.channels.get(x, w.shape[3])  # padded channels: zero weights
        groups += out_c - w.shape[0] if groups > 1 else 0  # a padded depthwise conv: one group per channel
        w = np.pad(w, ((0, out_c - w.shape[0]), (0, 0), (0, 0), (0, in_c - w.shape[3])))
        y = self._qlinear(self.get(base, Q8), layer, np.transpose(w, (0, 3, 1, 2)), self._kind_zp(x),  # OIHW
                          self._kind_zp(layer.output), layer.name,
                          kernel_shape=[k, k], strides=[int(a.get("stride", 1))] * 2,
                          pads=[int(a.get("pad", k // 2))] * 4, dilations=[int(a.get("dilation", 1))] * 2,
                          group=groups)
        self._put_conv(layer, base, f, Q8, y)

    def _qoffset_dw(self, layer: Layer) -> None:
        """Per-pixel dilation: the 9 taps of each pixel gathered as bytes from the source's rows
        padded with zero bytes (:meth:`_tap_rows`), reduced by a 1x9 depthwise QLinearConv
        (channels_last), in pixel tiles of :data:`TAP_TILE_PIXELS` so that a tile's taps are
        still in cache when its conv reads them."""
        g = self.g
        x = layer.inputs[0]
        h, wd, cin = self.shape(x)
        w = layer.arrays["weight"]
        o = w.shape[0]
        base, f = self._coarse_of(x)  # taps read the coarse rows directly
        hb, wb, _ = self.shape(base)
        zp = self._kind_zp(x)
        pad = _tap_padding(self.p.max_offset, f)
        src = self.get(base, Q8)
        if o != cin:  # channel multiplier: output o reads input o // (o / cin)
            src = g.op("Gather", [src, g.const(np.arange(o) // (o // cin), np.int64)], layer.name, axis=3)
        src = g.op("Pad", [src, g.const([0, pad, pad, 0] * 2, np.int64), g.const(zp, np.uint8)], layer.name)
        src = g.op("Reshape", [src, g.const([(hb + 2 * pad) * (wb + 2 * pad), o], np.int64)], layer.name)
        wq = w[..., 0].reshape(o, 1, 1, 9)  # (O, 1, 1, 9), taps in TAPS order
        rows = self._tap_rows(layer.offset, f)
        n = _tiles(h * wd)
        parts = [rows] if n == 1 else g.op("Split", [rows, g.const([h * wd * 9 // n] * n, np.int64)], layer.name,
                                           n_out=n, axis=0)
        ys = []
        for part in parts:
            taps = g.op("Gather", [src, part], layer.name, axis=0)
            taps = g.op("Reshape", [taps, g.const([1, h * wd // n, 9, o], np.int64)], layer.name)
            ys.append(self._qlinear(taps, layer, wq, zp, 0, layer.name, kernel_shape=[1, 9], group=o))
        if n == 1:
            self.put(layer.output, Q8, g.op("Reshape", [ys[0], g.const([1, h, wd, o], np.int64)], layer.name))
        else:  # a 1x1 conv reading it runs per tile (_mmi); other readers get the joined map (_convert)
            self.tiles[layer.output] = ys
            self.home[layer.output] = Q8

    def _tap_rows(self, off: str, f: int) -> str:
        """int32 (H*W*9,) row indices, pixel-major and tap-minor, of the per-pixel dilation into
        the rows of a source held ``f`` times coarser and padded by :func:`_tap_padding` pixels
        of zero bytes on every side.

        A tap outside the map lands in the padding (fine row ``y'`` is inside exactly when its
        coarse row ``floor(y' / f)`` is), so a row index is the pixel's own padded row plus a
        shift that depends only on the pixel's offset and its position within its coarse pixel:
        one ``Gather`` from a table of shifts and one ``Add``. Where the offsets are held at
        least as coarse (the square blocks after an upsample), both run once per coarse pixel
        over its f*f pixels' taps, and a transpose puts the rows in pixel order; otherwise once
        per pixel (an offset map that is a deferred upsample upsampled here, int32)."""
        key = (off, f)
        if key in self.row_index:
            return self.row_index[key]
        g = self.g
        h, w, _ = self.p.tensors[off].shape
        shifts, own = _tap_shifts(h, w, f, self.p.max_offset)
        base, fo = self._coarse_of(off)
        hb, wb, _ = self.shape(base)
        d = g.op("Cast", [g.op("Reshape", [self.get(base, ROWS), g.const([hb, 1, wb, 1], np.int64)], off)], off,
                 to=TensorProto.INT32)
        if f > 1 and fo % f == 0:  # per coarse pixel (f x f pixels of one offset)
            hc, wc = h // f, w // f
            if fo > f:
                d = g.op("Expand", [d, g.const([hb, fo // f, wb, fo // f], np.int64)], off)
            d = g.op("Reshape", [d, g.const([hc * wc], np.int64)], off)
            table = g.const(shifts.reshape(-1, f * f * 9), np.int32, f"{off}.shifts")  # offset -> (a, b, tap)
            idx = g.op("Gather", [table, d], off, axis=0)  # (coarse pixel, a, b, tap)
            own_c = own.reshape(hc, f, wc, f)[:, 0, :, 0].reshape(-1, 1)
            idx = g.op("Add", [idx, g.const(own_c, np.int32, f"{off}.own")], off)
            idx = g.op("Transpose", [g.op("Reshape", [idx, g.const([hc, wc, f, f * 9], np.int64)], off)], off,
                       perm=[0, 2, 1, 3])  # -> (y, x) pixel order
        else:
            if f > 1:
                d = g.op("Mul", [d, g.const(f * f, np.int32)], off)
            if fo > 1:  # fine pixel -> its coarse pixel's offset
                d = g.op("Expand", [d, g.const([hb, fo, wb, fo], np.int64)], off)
            d = g.op("Reshape", [d, g.const([h * w], np.int64)], off)
            if f > 1:  # + the pixel's position within its coarse pixel
                yy, xx = np.divmod(np.arange(h * w), w)
                d = g.op("Add", [d, g.const((yy % f) * f + xx % f, np.int32, f"{off}.sub")], off)
            idx = g.op("Gather", [g.const(shifts, np.int32, f"{off}.shifts"), d], off, axis=0)  # (HW, 9)
            idx = g.op("Add", [idx, g.const(own[:, None], np.int32, f"{off}.own")], off)
        idx = g.op("Reshape", [idx, g.const([h * w * 9], np.int64)], off)
        self.row_index[key] = idx
        return idx

    # ---------------------------------------------------------------- data movement
    def _move(self, layer: Layer) -> None:
        op, x = layer.op, layer.inputs[0]
        if op in ("maxpool", "upsample"):
            return super()._move(layer)
        # (data movement keeps the kind, Program.validate: the zero point stays)
        if not (self.home.get(x) == Q8 or self.demand[layer.output] == {Q8}):
            return super()._move(layer)
        g = self.g
        h, w, c = self.shape(x)
        if op == "concat":
            y = g.op("Concat", [self.get(t, Q8) for t in layer.inputs], layer.name, axis=3)
        elif op == "slice":
            y = g.op("Slice", [self.get(x, Q8), g.const([int(layer.attrs["c0"])], np.int64),
                               g.const([int(layer.attrs["c1"])], np.int64), g.const([3], np.int64)], layer.name)
        else:  # shuffle: channel rows of the transposed map reordered by a Gather (see _shuffle_bytes)
            y = self._shuffle_bytes(self.get(x, Q8), (h, w, c), int(layer.attrs["groups"]), layer.name)
        self.put(layer.output, Q8, y)


    def _shuffle_bytes(self, x: str, shape: Tuple[int, int, int], k: int, hint: str) -> str:
        """Channel shuffle of NHWC bytes as two 2-D transposes around a row ``Gather``.

        The direct form (a transpose of the two innermost axes) moves single bytes and runs 3 to
        5 times slower with 2 intra-op threads than with 1 in ONNX Runtime (measured); 2-D
        transposes and whole-row gathers do not, and the Gather keeps the runtime's transpose
        optimiser from merging the two transposes back into the slow one."""
        g = self.g
        h, w, c = shape
        order = np.arange(c).reshape(k, c // k).T.reshape(-1)  # output channel i reads order[i]
        t = g.op("Transpose", [g.op("Reshape", [x, g.const([h * w, c], np.int64)], hint)], hint, perm=[1, 0])
        t = g.op("Gather", [t, g.const(order, np.int64, f"{hint}.order")], hint, axis=0)
        t = g.op("Transpose", [t], hint, perm=[1, 0])
        return g.op("Reshape", [t, g.const([1, h, w, c], np.int64)], hint)



def _rounds_in_quantize(layer: Layer) -> bool:
    """Whether a float32-requantised 1x1 conv may leave its rounding to ``QuantizeLinear``.

    The requantised value is ``v = acc * M 2**-S + (bias * M + 2**(S-1)) 2**-S``, a multiple of
    ``2**-S``; ``u = v - 1/2 + 2**-(S+1)`` is a multiple of ``2**-(S+1)`` that is never a half, so
    round-to-nearest gives ``floor(v)``. ``BatchNormalization`` computes ``u`` as ``acc * scale + c``:
    the product is exact (:func:`.onnx_int.requantised_in_float32`), ``c = (2 bias M + 1) 2**-(S+1)``
    is exact when ``|2 bias M + 1| <= 2**24``, and their rounded sum is ``u`` itself wherever
    ``|u| < 256`` when ``S + 1 <= 16`` (float32 spacing there is at most ``2**-16``); elsewhere
    rounding is monotonic, so it stays at or beyond +-256 and saturates like the clamp."""
    m = layer.arrays["M"].astype(np.int64)
    s = layer.arrays["S"].astype(np.int64)
    return int(s.max(initial=0)) <= 15 and bool((np.abs(2 * layer.arrays["bias"].astype(np.int64) * m + 1)
                                                 <= 1 << 24).all())


def _tap_padding(max_offset: int, f: int) -> int:
    """Zero pixels around a source held ``f`` times coarser that every tap of the per-pixel
    dilation (dilation up to ``max_offset + 1``) stays within: ``ceil((B+1) / f)``."""
    return -(-(max_offset + 1) // f)


def _tap_shifts(h: int, w: int, f: int, max_offset: int) -> Tuple[np.ndarray, np.ndarray]:
    """``(shifts, own)`` of :meth:`_FastLowering._tap_rows` for an H x W map read from a source
    ``f`` times coarser, padded by :func:`_tap_padding`: ``shifts[o * f*f + a * f + b, t]`` is the
    row shift of tap ``t`` at offset ``o`` (dilation ``1 + o``) for a pixel at ``(a, b)`` within
    its coarse pixel; ``own[p]`` is pixel ``p``'s own padded coarse row."""
    pad = _tap_padding(max_offset, f)
    wp = w // f + 2 * pad
    dil = np.arange(1, max_offset + 2)[:, None, None, None]
    a = np.arange(f)[None, :, None, None]
    b = np.arange(f)[None, None, :, None]
    ky = np.array([t[0] for t in TAPS])[None, None, None, :]
    kx = np.array([t[1] for t in TAPS])[None, None, None, :]
    shifts = ((a + dil * ky) // f) * wp + (b + dil * kx) // f  # floor division: taps above or left
    yy, xx = np.divmod(np.arange(h * w), w)
    own = (yy // f + pad) * wp + xx // f + pad
    return shifts.reshape(-1, 9).astype(np.int32), own.astype(np.int32)


def _tiles(pixels: int) -> int:
    """Number of equal pixel tiles of the per-pixel dilation (1 when the map is small or does
    not split evenly)."""
    n = -(-pixels // TAP_TILE_PIXELS)
    return n if n > 1 and pixels % n == 0 else 1


def _probe_model(x_shape: Tuple[int, ...], w: np.ndarray, bias: np.ndarray, scales: np.ndarray, zp_in: int,
                 zp_out: int, **attrs) -> bytes:
    g = _Graph()
    o = w.shape[0]
    g.op("QLinearConv", ["x", g.const(1.0), g.const(zp_in, np.uint8), g.const(w, np.int8),
                         g.const(scales, np.float32), g.const(np.zeros(o), np.int8), g.const(1.0),
                         g.const(zp_out, np.uint8), g.const(bias, np.int32)], "probe", domain=MS_DOMAIN,
         channels_last=1, **attrs)
    g.nodes[-1].output[0] = "y"
    graph = helper.make_graph(g.nodes, "probe", [helper.make_tensor_value_info("x", TensorProto.UINT8, list(x_shape))],
                              [helper.make_tensor_value_info("y", TensorProto.UINT8, None)], g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid(MS_DOMAIN, 1)])
    model.ir_version = IR_VERSION
    return model.SerializeToString()


@functools.lru_cache(maxsize=1)
def runtime_self_test() -> bool:
    """Whether this ONNX Runtime's ``QLinearConv`` requantises as :func:`.qlinear.qlinear_requantize`
    models it (the premise of every scale :func:`.qlinear.qlinear_scales` proves exact).

    Probes the conv shapes the fast graph uses (1x1, 3x3 depthwise with padding and stride 2,
    1x9 depthwise over gathered taps, a depthwise conv whose channels are not a multiple of 16,
    which the runtime runs with another kernel) with both zero points, scales a few float32
    steps around ``M 2**-S`` with small M (so that many accumulators fall exactly on halves),
    and compares every output with the model. Cached per process; False if anything fails.
    """
    import onnxruntime as ort

    rng = np.random.default_rng(15)
    k = 48
    m = rng.integers(3, 400, k)
    s = rng.integers(6, 13, k)
    scales = _steps_from((m * np.ldexp(1.0, -s)).astype(np.float32), rng.integers(-2, 3, k))

    def square(stride: int, pad: int):
        return lambda x, w: conv_accumulate(x, np.transpose(w, (0, 2, 3, 1)), stride=stride, pad=pad,
                                            groups=w.shape[0] if w.shape[1] == 1 and x.shape[2] > 1 else 1)

    def taps(x, w):  # 1x9 depthwise over (N, 9, C) rows of gathered taps
        return np.einsum("ntc,ct->nc", x, w[:, 0, 0, :].astype(np.int64))[:, None, :]

    cases = [  # (input NHWC, weight OIHW, bias, attrs, reference accumulator)
        # 1x1 over 256 consecutive accumulators per channel (weight 1), centred on 0: every half
        (np.arange(256, dtype=np.uint8).reshape(1, 1, 256, 1), np.ones((k, 1, 1, 1), np.int8),
         -np.round(128 * np.ldexp(1.0, s) / m).astype(np.int64), dict(kernel_shape=[1, 1]), square(1, 0)),
        (rng.integers(0, 256, (1, 13, 11, k), dtype=np.uint8), rng.integers(-7, 8, (k, 1, 3, 3)).astype(np.int8),
         rng.integers(-3000, 3000, k), dict(kernel_shape=[3, 3], group=k, pads=[1] * 4, strides=[2, 2]), square(2, 1)),
        (rng.integers(0, 256, (1, 64, 9, k), dtype=np.uint8), rng.integers(-7, 8, (k, 1, 1, 9)).astype(np.int8),
         rng.integers(-3000, 3000, k), dict(kernel_shape=[1, 9], group=k), taps),
        # channels not a multiple of 16: the runtime's other depthwise kernel
        (rng.integers(0, 256, (1, 9, 7, k - 6), dtype=np.uint8), rng.integers(-7, 8, (k - 6, 1, 3, 3)).astype(np.int8),
         rng.integers(-3000, 3000, k - 6), dict(kernel_shape=[3, 3], group=k - 6, pads=[1] * 4), square(1, 1)),
    ]
    try:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        for x, w, b, attrs, reference in cases:
            for zp_in in (0, 128):
                acc = reference(x[0].astype(np.int64) - zp_in, w) + b
                sc = scales[:w.shape[0]]
                for zp_out in (0, 128):
                    model = _probe_model(x.shape, w, b, sc, zp_in, zp_out, **attrs)
                    sess = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
                    if not np.array_equal(sess.run(None, {"x": x})[0][0], qlinear_requantize(acc, sc, zp_out)):
                        return False
    except Exception:  # a runtime without the contrib op (or with another signature) fails the probe
        return False
    return True


def _steps_from(base: np.ndarray, k: np.ndarray) -> np.ndarray:
    """``base`` moved ``k`` float32 steps (per element, either sign)."""
    out = base.copy()
    for i, n in enumerate(k):
        for _ in range(abs(int(n))):
            out[i] = np.nextafter(out[i], np.float32(np.inf if n > 0 else -np.inf), dtype=np.float32)
    return out


def build_fast_int_onnx(program: Program) -> onnx.ModelProto:
    """The fast integer graph of ``program`` for ONNX Runtime's CPU provider (see module doc):
    same input, outputs and metadata as :func:`.onnx_int.build_int_onnx`, same integers."""
    return _FastLowering(program).build()
