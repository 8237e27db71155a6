"""The integer layer program: what the quantized model *is* for every integer implementation.

A program is a list of layers over named NHWC tensors (batch 1, stored H x W x C). Each tensor
has a kind (``u8``, ``s8``, ``off``) and a float scale (real = int * scale). Ops:

``conv``      k x k conv (k in {1, 3}), stride 1 or 2 (dense convs also 4: the FPGA'21 stem), zero padding ``pad``, ``groups`` 1 or
              C (depthwise). Optional ``offset``: name of an ``off`` tensor (H x W x 1) giving a
              per-pixel integer dilation ``1 + off`` (3x3 depthwise, stride 1 only; taps outside
              the map read 0). Arrays: ``weight`` int8 OHWI (O, k, k, I/groups), ``bias`` int32
              (O), ``M`` int32 (O), ``S`` int32 (O). Attrs ``lo``/``hi`` clamp (ReLU: lo = 0),
              ``weight_bits`` 4 or 8.
``maxpool``   3x3 stride 2 pad 1 max over the window (padding never wins).
``upsample``  nearest, factor 2.
``concat``    channel concat of the inputs (they share kind and scale).
``slice``     channels [c0, c1) of the input.
``shuffle``   channel shuffle with ``groups`` (ShuffleNet: view (g, C/g) -> transpose -> flatten).

Data movement ops never change values; the accelerator may absorb them into addressing.
See :mod:`codenet_pynq.intmath` for the arithmetic.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from .intmath import ACC_BITS, accumulator_bound, bits_for, kind_range

PROGRAM_VERSION = 1
OPS = ("conv", "maxpool", "upsample", "concat", "slice", "shuffle")
HEAD_ROLES = ("hm", "wh", "reg")


class ProgramError(ValueError):
    """An integer program that is malformed or that the target cannot run."""


@dataclass
class TensorInfo:
    """A named feature map: shape (H, W, C), kind and scale."""

    name: str
    shape: Tuple[int, int, int]
    kind: str
    scale: float

    def to_json(self) -> Dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "kind": self.kind, "scale": self.scale}

    @staticmethod
    def from_json(d: Dict[str, Any]) -> TensorInfo:
        return TensorInfo(str(d["name"]), tuple(int(v) for v in d["shape"]), str(d["kind"]), float(d["scale"]))


@dataclass
class Layer:
    """One op of the program. ``arrays`` holds the conv parameters (see module doc)."""

    op: str
    inputs: List[str]
    output: str
    attrs: Dict[str, Any] = field(default_factory=dict)
    arrays: Dict[str, np.ndarray] = field(default_factory=dict)
    name: str = ""

    @property
    def offset(self) -> Optional[str]:
        return self.attrs.get("offset")


@dataclass
class Program:
    """Input tensor, layers in execution order and the head outputs (role -> tensor name)."""

    input: str
    tensors: Dict[str, TensorInfo]
    layers: List[Layer]
    outputs: Dict[str, str]
    max_offset: int = 8
    meta: Dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------ checks
    def validate(self) -> None:
        """Check names, shapes and parameter ranges; raise ProgramError naming the layer."""
        if self.input not in self.tensors:
            raise ProgramError(f"program input {self.input!r} has no tensor entry")
        if self.tensors[self.input].kind != "u8":
            raise ProgramError(f"program input {self.input!r} must be of kind 'u8' (raw pixels)")
        for t in self.tensors.values():
            if t.kind not in ("u8", "s8", "off") or len(t.shape) != 3 or min(t.shape) < 1:
                raise ProgramError(f"tensor {t.name!r}: bad kind {t.kind!r} or shape {t.shape}")
        known = {self.input}
        for i, layer in enumerate(self.layers):
            where = f"layer {i} ({layer.name or layer.op})"
            if layer.op not in OPS:
                raise ProgramError(f"{where}: unknown op {layer.op!r}; expected one of {OPS}")
            if not layer.inputs or (layer.op != "concat" and len(layer.inputs) != 1):
                raise ProgramError(f"{where}: wrong number of inputs ({len(layer.inputs)})")
            for t in layer.inputs + ([layer.offset] if layer.offset else []):
                if t not in known:
                    raise ProgramError(f"{where}: input tensor {t!r} is not produced before it")
            if layer.output not in self.tensors or layer.output in known:
                raise ProgramError(f"{where}: output tensor {layer.output!r} has no tensor entry "
                                   "or is produced twice")
            try:
                self._validate_layer(layer, where)
            except ProgramError:
                raise
            except (KeyError, IndexError, TypeError, ValueError, AttributeError) as e:
                raise ProgramError(f"{where}: malformed layer ({type(e).__name__}: {e})") from e
            known.add(layer.output)
        for role, t in self.outputs.items():
            if t not in known:
                raise ProgramError(f"output {role!r} names tensor {t!r}, which no layer produces")

    def _validate_layer(self, layer: Layer, where: str) -> None:
        shapes = [self.tensors[t].shape for t in layer.inputs]
        if layer.op == "conv":
            self._validate_conv(layer, where)
        elif layer.op == "concat":
            kinds = {(self.tensors[t].kind, self.tensors[t].scale) for t in layer.inputs}
            if len(kinds) != 1:
                raise ProgramError(f"{where}: concat inputs differ in kind/scale {sorted(kinds)}")
            if len({tuple(s[:2]) for s in shapes}) != 1:
                raise ProgramError(f"{where}: concat inputs differ in height/width {shapes}")
        elif layer.op == "slice":
            c0, c1 = int(layer.attrs["c0"]), int(layer.attrs["c1"])
            if not 0 <= c0 < c1 <= shapes[0][2]:
                raise ProgramError(f"{where}: slice [{c0}, {c1}) is outside the {shapes[0][2]} channels")
        elif layer.op == "shuffle":
            g = int(layer.attrs["groups"])
            if g < 1 or shapes[0][2] % g:
                raise ProgramError(f"{where}: shuffle groups {g} do not divide {shapes[0][2]} channels")
        out = self.tensors[layer.output]
        if layer.op != "conv" and any((self.tensors[t].kind, self.tensors[t].scale) != (out.kind, out.scale)
                                      for t in layer.inputs):
            raise ProgramError(f"{where}: data movement must keep the tensor kind and scale")
        expect = self.infer_shape(layer)
        got = self.tensors[layer.output].shape
        if tuple(expect) != tuple(got):
            raise ProgramError(f"{where}: output shape {got} but the op gives {expect}")

    def _validate_conv(self, layer: Layer, where: str) -> None:
        for key in ("weight", "bias", "M", "S"):
            if key not in layer.arrays:
                raise ProgramError(f"{where}: conv is missing array {key!r}")
        w, m, s = layer.arrays["weight"], layer.arrays["M"], layer.arrays["S"]
        a = layer.attrs
        k, g = int(a["k"]), int(a.get("groups", 1))
        cin = self.tensors[layer.inputs[0]].shape[2]
        if w.ndim != 4 or w.shape[1] != k or w.shape[2] != k or g < 1 or cin % g or w.shape[0] % g \
                or w.shape[3] * g != cin or int(a.get("stride", 1)) not in ((1, 2, 4) if g == 1 else (1, 2)):
            raise ProgramError(f"{where}: weight {w.shape} does not fit k={k}, groups={g}, "
                               f"{cin} input channels (OHWI expected; stride 1 or 2, or 4 for a dense conv)")
        for key in ("bias", "M", "S"):
            v = layer.arrays[key]
            if v.shape != (w.shape[0],) or v.dtype.kind not in "iu":
                raise ProgramError(f"{where}: {key} must be an integer vector of length {w.shape[0]}")
        out = self.tensors[layer.output]
        klo, khi = kind_range(out.kind, self.max_offset)
        lo, hi = int(a.get("lo", klo)), int(a.get("hi", khi))
        if not klo <= lo <= hi <= khi:
            raise ProgramError(f"{where}: clamp [{lo}, {hi}] is outside the {out.kind!r} range [{klo}, {khi}]")
        bits = int(layer.attrs.get("weight_bits", 4))
        if bits not in (4, 8):
            raise ProgramError(f"{where}: weight_bits must be 4 or 8, got {bits}")
        qmax = 7 if bits == 4 else 127
        if w.dtype != np.int8 or np.abs(w.astype(np.int32)).max(initial=0) > qmax:
            raise ProgramError(f"{where}: weights must be int8 within +-{qmax}")
        if np.any(m < 1) or np.any(m >= 1 << 15) or np.any(s < 1) or np.any(s > 47):
            raise ProgramError(f"{where}: M must be in [1, 2^15) and S in [1, 47]")
        in_kind = self.tensors[layer.inputs[0]].kind
        if bits_for(accumulator_bound(w, in_kind, layer.arrays["bias"], self.max_offset)) > ACC_BITS:
            raise ProgramError(f"{where}: acc + bias can overflow the {ACC_BITS}-bit accumulator")
        if layer.offset is not None:
            k, st, g = layer.attrs["k"], layer.attrs.get("stride", 1), layer.attrs.get("groups", 1)
            cin = self.tensors[layer.inputs[0]].shape[2]
            if k != 3 or st != 1 or g != cin or int(a.get("pad", 1)) != 1 or int(a.get("dilation", 1)) != 1:
                raise ProgramError(f"{where}: per-pixel dilation needs a 3x3 depthwise stride-1 conv "
                                   "(pad 1, dilation 1)")
            off = self.tensors[layer.offset]
            if off.kind != "off" or tuple(off.shape) != tuple(self.tensors[layer.inputs[0]].shape[:2]) + (1,):
                raise ProgramError(f"{where}: offset tensor {layer.offset!r} must be of kind 'off' and "
                                   "shape (H, W, 1) of the conv input")

    def infer_shape(self, layer: Layer) -> Tuple[int, int, int]:
        """Output shape (H, W, C) of ``layer`` from its input shapes."""
        h, w, c = self.tensors[layer.inputs[0]].shape
        a = layer.attrs
        if layer.op == "conv":
            k, st, pad = int(a["k"]), int(a.get("stride", 1)), int(a.get("pad", a["k"] // 2))
            d = int(a.get("dilation", 1))
            ho = (h + 2 * pad - d * (k - 1) - 1) // st + 1
            wo = (w + 2 * pad - d * (k - 1) - 1) // st + 1
            return ho, wo, int(layer.arrays["weight"].shape[0])
        if layer.op == "maxpool":
            return (h - 1) // 2 + 1, (w - 1) // 2 + 1, c
        if layer.op == "upsample":
            return 2 * h, 2 * w, c
        if layer.op == "concat":
            return h, w, sum(self.tensors[t].shape[2] for t in layer.inputs)
        if layer.op == "slice":
            return h, w, int(a["c1"]) - int(a["c0"])
        if layer.op == "shuffle":
            return h, w, c
        raise ProgramError(f"unknown op {layer.op!r}")

    # ----------------------------------------------------------- statistics
    def conv_layers(self) -> List[Layer]:
        return [layer for layer in self.layers if layer.op == "conv"]

    def macs(self) -> int:
        total = 0
        for layer in self.conv_layers():
            ho, wo, co = self.tensors[layer.output].shape
            total += ho * wo * co * int(np.prod(layer.arrays["weight"].shape[1:]))
        return total

    def weight_bytes(self) -> int:
        """Model size as deployed: packed weights (4 or 8 bit) + int32 bias/M/S per channel."""
        total = 0
        for layer in self.conv_layers():
            bits = int(layer.attrs.get("weight_bits", 4))
            total += (layer.arrays["weight"].size * bits + 7) // 8
            total += 3 * 4 * layer.arrays["weight"].shape[0]
        return total

    # ------------------------------------------------------- serialisation
    def to_bytes(self) -> Tuple[bytes, bytes]:
        """(program.json, program.npz) without pickle."""
        arrays: Dict[str, np.ndarray] = {}
        layers = []
        for i, layer in enumerate(self.layers):
            keys = {}
            for k, v in layer.arrays.items():
                key = f"l{i}.{k}"
                arrays[key] = np.ascontiguousarray(v)
                keys[k] = key
            layers.append({"op": layer.op, "name": layer.name, "inputs": layer.inputs,
                           "output": layer.output, "attrs": layer.attrs, "arrays": keys})
        doc = {"version": PROGRAM_VERSION, "input": self.input, "max_offset": self.max_offset,
               "tensors": [t.to_json() for t in self.tensors.values()], "layers": layers,
               "outputs": self.outputs, "meta": self.meta}
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        return json.dumps(doc, indent=1, sort_keys=True).encode(), buf.getvalue()

    @staticmethod
    def from_bytes(doc_bytes: bytes, npz_bytes: bytes, source: str = "program") -> Program:
        """Inverse of :meth:`to_bytes`; validates and raises ProgramError naming ``source``."""
        try:
            doc = json.loads(doc_bytes.decode())
            arrays = np.load(io.BytesIO(npz_bytes), allow_pickle=False)
            if int(doc.get("version", -1)) != PROGRAM_VERSION:
                raise ProgramError(f"{source}: program version {doc.get('version')} is not "
                                   f"{PROGRAM_VERSION}; re-export the model with this codenet-pynq")
            tensors = {t["name"]: TensorInfo.from_json(t) for t in doc["tensors"]}
            layers = [Layer(op=d["op"], name=d.get("name", ""), inputs=list(d["inputs"]), output=d["output"],
                            attrs=dict(d["attrs"]), arrays={k: arrays[v] for k, v in d["arrays"].items()})
                      for d in doc["layers"]]
            prog = Program(input=doc["input"], tensors=tensors, layers=layers, outputs=dict(doc["outputs"]),
                           max_offset=int(doc["max_offset"]), meta=dict(doc.get("meta", {})))
        except ProgramError:
            raise
        except (KeyError, IndexError, TypeError, ValueError, AttributeError, OSError) as e:
            raise ProgramError(f"{source}: malformed integer program ({type(e).__name__}: {e})") from e
        try:
            prog.validate()
        except ProgramError as e:
            raise ProgramError(f"{source}: {e}") from e
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as e:
            raise ProgramError(f"{source}: malformed integer program ({type(e).__name__}: {e})") from e
        return prog
