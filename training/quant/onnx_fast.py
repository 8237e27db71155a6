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
        self.row_index: Dict[Tuple[str, int], str] = {}
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
        o = weight.shape[0]
        w = g.const(weight.astype(np.int8), np.int8, f"{hint}.w")
        common = [g.const(1.0), g.const(zp_in, np.uint8), w]
        tail = [g.const(np.zeros(o), np.int8), g.const(1.0), g.const(zp_out, np.uint8),
                g.const(layer.arrays["bias"].astype(np.int32), np.int32, f"{hint}.b")]
        outs = [g.op("QLinearConv", [x] + common + [g.const(sc, np.float32, f"{hint}.scale")] + tail, hint,
                     domain=MS_DOMAIN, channels_last=1, **attrs)
                for sc in self.qplan[layer.name] if sc is not None]
        return outs[0] if len(outs) == 1 else g.op("Max", outs, hint)

    def _mmi(self, layer: Layer) -> None:
        """1x1 conv as ``MatMulInteger`` (u8 rows x s8, int32) and the float-exact requantisation:
        in float32 (``acc * M 2**-S + (bias * M + 2**(S-1)) 2**-S`` exact where the layer's
        multipliers fit, as in the folded convs) or else in float64 (:meth:`_requantize`)."""
        g = self.g
        a = layer.attrs
        x = layer.inputs[0]
        base, f = self._coarse_of(x)
        hb, wb, cin = self.shape(base)
        src = g.op("Reshape", [self.get(base, Q8), g.const([hb * wb, cin], np.int64)], layer.name)
        w2 = np.ascontiguousarray(layer.arrays["weight"][:, 0, 0, :].T)
        acc = g.op("MatMulInteger", [src, g.const(w2.astype(np.int8), np.int8, f"{layer.name}.w"),
                                     g.const(self._kind_zp(x), np.uint8)], layer.name)
        klo, khi = kind_range(self.p.tensors[layer.output].kind, self.p.max_offset)
        lo, hi = int(a.get("lo", klo)), int(a.get("hi", khi))
        if requantised_in_float32(self.p, layer):
            scale = _multiplier(layer)
            v = self._scale(g.op("Cast", [acc], layer.name, to=TensorProto.FLOAT), scale, layer.name,
                            layer.arrays["bias"] * scale + 0.5)
            zp = self._kind_zp(layer.output)
            if self._bytes_only(layer.output) and zero_point(lo, hi) == zp:
                # straight to bytes: QuantizeLinear(x, 1, zp) saturates x + zp to [0, 255], which on
                # integers is the clamp to [lo, hi] plus the zero point (one op for Clip, Add, Cast)
                y = g.op("QuantizeLinear", [g.op("Floor", [v], layer.name), g.const(1.0), g.const(zp, np.uint8)],
                         layer.name)
                hb, wb, _ = self.shape(base)
                y = g.op("Reshape", [y, g.const([1, hb, wb, len(scale)], np.int64)], layer.name)
                return self._put_conv(layer, base, f, Q8, y)
            y = g.op("Floor", [g.op("Clip", [v, g.const(lo), g.const(hi)], layer.name)], layer.name)
        else:
            y = self._requantize(layer, [acc], lo, hi)
        self._put_conv(layer, base, f, ROWS, y)

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
        w = np.transpose(layer.arrays["weight"], (0, 3, 1, 2))  # OHWI -> OIHW
        y = self._qlinear(self.get(base, Q8), layer, w, self._kind_zp(x), self._kind_zp(layer.output), layer.name,
                          kernel_shape=[k, k], strides=[int(a.get("stride", 1))] * 2,
                          pads=[int(a.get("pad", k // 2))] * 4, dilations=[int(a.get("dilation", 1))] * 2,
                          group=int(a.get("groups", 1)))
        self._put_conv(layer, base, f, Q8, y)

    def _qoffset_dw(self, layer: Layer) -> None:
        """Per-pixel dilation: the 9 taps of each pixel gathered as bytes, reduced by a 1x9
        depthwise QLinearConv (channels_last)."""
        g = self.g
        x = layer.inputs[0]
        h, wd, cin = self.shape(x)
        w = layer.arrays["weight"]
        o = w.shape[0]
        base, f = self._coarse_of(x)  # taps read the coarse rows directly
        hb, wb, _ = self.shape(base)
        zp = self._kind_zp(x)
        src = g.op("Reshape", [self.get(base, Q8), g.const([hb * wb, cin], np.int64)], layer.name)
        if o != cin:  # channel multiplier: output o reads input o // (o / cin)
            src = g.op("Gather", [src, g.const(np.arange(o) // (o // cin), np.int64)], layer.name, axis=1)
        padded = g.op("Concat", [src, g.const(np.full((1, o), zp, np.uint8), np.uint8)], layer.name, axis=0)
        taps = g.op("Gather", [padded, self._tap_rows(layer.offset, f)], layer.name, axis=0)
        taps = g.op("Reshape", [taps, g.const([1, h * wd, 9, o], np.int64)], layer.name)
        wq = w[..., 0].reshape(o, 1, 1, 9)  # (O, 1, 1, 9), taps in TAPS order
        y = self._qlinear(taps, layer, wq, zp, 0, layer.name, kernel_shape=[1, 9], group=o)
        self.put(layer.output, Q8, g.op("Reshape", [y, g.const([1, h, wd, o], np.int64)], layer.name))

    def _tap_rows(self, off: str, f: int) -> str:
        """int32 (H*W*9,) row indices, pixel-major and tap-minor, of the per-pixel dilation into
        the zero-padded rows of a source held ``f`` times coarser: row ``p * (B+1) + off[p]`` of
        the tap table laid out (pixel, offset) x tap (folded at load). An offset map that is a
        deferred upsample is read from its coarse rows through a constant pixel map."""
        key = (off, f)
        if key in self.row_index:
            return self.row_index[key]
        g = self.g
        h, w, _ = self.p.tensors[off].shape
        hw, n_off = h * w, self.p.max_offset + 1
        table = g.op("Transpose", [self._tap_table(h, w, f)], off, perm=[2, 0, 1])  # (HW, B+1, 9)
        table = g.op("Reshape", [table, g.const([hw * n_off, 9], np.int64)], off)
        base, fo = self._coarse_of(off)
        hb, wb, _ = self.shape(base)
        o = g.op("Cast", [g.op("Reshape", [self.get(base, ROWS), g.const([hb * wb], np.int64)], off)], off,
                 to=TensorProto.INT32)
        if fo > 1:  # fine pixel -> its coarse pixel
            yy, xx = np.divmod(np.arange(hw), w)
            o = g.op("Gather", [o, g.const((yy // fo) * wb + xx // fo, np.int32, f"{off}.up")], off, axis=0)
        rows = g.op("Add", [o, g.const(np.arange(hw) * n_off, np.int32, f"{off}.rows")], off)
        idx = g.op("Gather", [table, rows], off, axis=0)  # (HW, 9)
        idx = g.op("Reshape", [idx, g.const([hw * 9], np.int64)], off)
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

    Probes the three conv shapes the fast graph uses (1x1, 3x3 depthwise with padding and
    stride 2, 1x9 depthwise over gathered taps) with both zero points, scales a few float32
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
    ]
    try:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        for x, w, b, attrs, reference in cases:
            for zp_in in (0, 128):
                acc = reference(x[0].astype(np.int64) - zp_in, w) + b
                for zp_out in (0, 128):
                    model = _probe_model(x.shape, w, b, scales, zp_in, zp_out, **attrs)
                    sess = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
                    if not np.array_equal(sess.run(None, {"x": x})[0][0], qlinear_requantize(acc, scales, zp_out)):
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
