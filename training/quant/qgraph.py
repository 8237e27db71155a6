"""Quantization-aware CoDeNet: the integer layer program with trainable float parameters.

:func:`build_qgraph` turns a trained float :class:`CoDeNet` into a :class:`QGraph`: BN folded
into the convs, mean/std folded into the first conv, and the network written as the same op
list as :class:`codenet_pynq.program.Program`. A QGraph runs in three modes:

``float``  real-valued activations, no quantization (calibration: it records activation ranges)
``qat``    fake-quant training: tensors carry *integer values* (q), weights are rounded to
           int4/int8 and the requantisation uses the exported M / 2^S and the contract's
           rounding floor(x + 0.5) (in float64), all with straight-through gradients: the
           forward equals the golden while the float32 conv sums stay below 2^24
``exact``  the contract bit for bit: float64 integer arithmetic with the exported M / 2^S; its
           head outputs equal the numpy golden reference exactly

Activation scales are per tensor. Tensors joined by a concat share one scale (a "scale group"),
so that concat stays pure data movement.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from codenet_pynq.intmath import (
    WEIGHT_QMAX,
    channel_bounds,
    choose_multipliers,
    kind_range,
    quantize_multipliers,
)
from codenet_pynq.program import Layer, Program, TensorInfo

from ..models.blocks import DeformConv
from ..models.centernet import CoDeNet
from ..models.deform import dilated_depthwise_select, round_ste

MODES = ("float", "qat", "exact")
SUPPORTED_VARIANTS = ("deform_square_depthwise_hw", "k3dw")


class QuantizationError(ValueError):
    """A model that the integer contract or the hardware cannot represent."""


def floor_ste(x: torch.Tensor) -> torch.Tensor:
    """floor with a straight-through gradient."""
    return x + (torch.floor(x) - x).detach()


@dataclass
class TensorSpec:
    name: str
    kind: str  # u8, s8, off
    group: str  # scale group (tensors that must share a scale)
    channels: int


class QConv(nn.Module):
    """A conv of the program: folded float weight (OIHW) and bias, requantised to ``kind``."""

    def __init__(self, name: str, inp: str, out: str, weight: torch.Tensor, bias: torch.Tensor, stride: int, pad: int,
                 groups: int, kind: str, weight_bits: int, offset: Optional[str] = None, max_offset: int = 8,
                 in_kind: str = "u8"):
        super().__init__()
        self.name, self.inp, self.out, self.offset = name, inp, out, offset
        self.stride, self.pad, self.groups, self.kind = stride, pad, groups, kind
        self.weight_bits, self.max_offset = weight_bits, max_offset
        self.in_kind = in_kind
        self.weight = nn.Parameter(weight.detach().clone().float())
        self.bias = nn.Parameter(bias.detach().clone().float())

    @property
    def k(self) -> int:
        return int(self.weight.shape[-1])

    def weight_scale(self) -> torch.Tensor:
        qmax = WEIGHT_QMAX[self.weight_bits]
        amax = self.weight.detach().abs().amax(dim=(1, 2, 3))
        return torch.where(amax > 0, amax / qmax, torch.ones_like(amax))

    def int_weight(self, ste: bool = True) -> torch.Tensor:
        qmax = WEIGHT_QMAX[self.weight_bits]
        s = self.weight_scale().view(-1, 1, 1, 1)
        w = self.weight / s
        w = round_ste(w) if ste else torch.floor(w.detach() + 0.5)
        return torch.clamp(w, -qmax, qmax)

    def _conv(self, x: torch.Tensor, w: torch.Tensor, off: Optional[torch.Tensor]) -> torch.Tensor:
        if off is not None:
            return dilated_depthwise_select(x, w, off, self.max_offset)
        return F.conv2d(x, w, None, self.stride, self.pad, 1, self.groups)

    def forward_float(self, x: torch.Tensor, off: Optional[torch.Tensor]) -> torch.Tensor:
        y = self._conv(x, self.weight, off) + self.bias.view(1, -1, 1, 1)
        if self.kind == "u8":
            return F.relu(y)
        if self.kind == "off":
            return round_ste(torch.clamp(y, 0.0, float(self.max_offset)))
        return y

    def requant_params(self, s_in: float, s_out: float, deployed: bool = True
                       ) -> Tuple[torch.Tensor, np.ndarray, np.ndarray]:
        """(bias in accumulator units, real-valued float64 with gradient; M; S) -- the one place
        where the QAT forward and the exporter derive them. ``deployed``: M with the exporter's
        precision (:func:`codenet_pynq.intmath.choose_multipliers`); else the full 15 bits,
        which QAT training steps use (see docs/quantization.md: training with the deployed
        multipliers in the loop ended 1.5 AP lower on the shapes model)."""
        acc_scale = s_in * self.weight_scale().double()
        b_real = self.bias.double() / acc_scale
        real = (acc_scale / s_out).cpu().numpy()
        if not deployed:
            return (b_real,) + quantize_multipliers(real)
        w = self.int_weight(ste=False).detach().permute(0, 2, 3, 1).cpu().numpy()
        bound = channel_bounds(w, self.in_kind, self.max_offset)
        b_int = np.floor(b_real.detach().cpu().numpy() + 0.5).astype(np.int64)
        return (b_real,) + choose_multipliers(real, bound, b_int)

    def int_params(self, s_in: float, s_out: float) -> Dict[str, np.ndarray]:
        """Integer weight (OHWI int8), bias (int32, accumulator units), M, S for export."""
        w = self.int_weight(ste=False).detach().double()
        b_real, m, s = self.requant_params(s_in, s_out)
        b = torch.floor(b_real.detach() + 0.5)
        if b.abs().max() >= 2**31:
            raise QuantizationError(f"{self.name}: bias does not fit int32 in accumulator units")
        return {"weight": w.permute(0, 2, 3, 1).numpy().astype(np.int8), "bias": b.numpy().astype(np.int32),
                "M": m, "S": s}

    def forward_quant(self, x: torch.Tensor, off: Optional[torch.Tensor], s_in: torch.Tensor, s_out: torch.Tensor,
                      exact: bool) -> torch.Tensor:
        """x: integer-valued tensor; returns the integer-valued requantised output."""
        lo, hi = kind_range(self.kind, self.max_offset)
        if exact:
            p = self.int_params(float(s_in), float(s_out))
            w = torch.from_numpy(p["weight"]).permute(0, 3, 1, 2).double()
            acc = self._conv(x.double(), w, None if off is None else off.double())
            b = torch.from_numpy(p["bias"]).double().view(1, -1, 1, 1)
            m = torch.from_numpy(p["M"]).double().view(1, -1, 1, 1)
            sh = torch.from_numpy(2.0 ** p["S"]).double().view(1, -1, 1, 1)
            y = torch.floor(((acc + b) * m + sh / 2) / sh)
            return torch.clamp(y, lo, hi).to(x.dtype if x.dtype != torch.float64 else torch.float64)
        # QAT: the contract's own integers (int weights, bias, M / 2^S, round half up) with
        # straight-through gradients. The conv runs in float32 on integer values (exact while
        # partial sums stay below 2^24); the requantisation in float64, where it is exact.
        acc = self._conv(x, self.int_weight(), off)
        b_real, m, sh = self.requant_params(float(s_in), float(s_out), deployed=not self.training)
        b = b_real + (torch.floor(b_real.detach() + 0.5) - b_real).detach()
        mult = torch.from_numpy(m.astype(np.float64) / np.exp2(sh.astype(np.float64))).to(acc.device)
        y = floor_ste((acc.double() + b.view(1, -1, 1, 1)) * mult.view(1, -1, 1, 1) + 0.5)
        return torch.clamp(y, lo, hi).float()


class QOp(nn.Module):
    """A data-movement op: maxpool, upsample, concat, slice, shuffle."""

    def __init__(self, name: str, op: str, inputs: List[str], out: str, **attrs):
        super().__init__()
        self.name, self.op, self.inputs, self.out, self.attrs = name, op, inputs, out, attrs

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        x = xs[0]
        if self.op == "maxpool":
            return F.max_pool2d(x, 3, 2, 1)
        if self.op == "upsample":
            return F.interpolate(x, scale_factor=2, mode="nearest")
        if self.op == "concat":
            return torch.cat(xs, dim=1)
        if self.op == "slice":
            return x[:, self.attrs["c0"]:self.attrs["c1"]]
        if self.op == "shuffle":
            n, c, h, w = x.shape
            g = self.attrs["groups"]
            return x.view(n, g, c // g, h, w).transpose(1, 2).reshape(n, c, h, w)
        raise QuantizationError(f"unknown op {self.op}")


class QGraph(nn.Module):
    """The quantizable network as an op list (see module doc). Input raw BGR pixels NCHW."""

    def __init__(self, ops: List[nn.Module], tensors: Dict[str, TensorSpec], outputs: Dict[str, str],
                 input_size: int, max_offset: int):
        super().__init__()
        self.ops = nn.ModuleList(ops)
        self.tensors = tensors
        self.outputs = outputs
        self.input_size, self.max_offset = input_size, max_offset
        groups = sorted({t.group for t in tensors.values()})
        self.group_index = {g: i for i, g in enumerate(groups)}
        self.register_buffer("scales", torch.ones(len(groups), dtype=torch.float64))
        self.register_buffer("calibrated", torch.zeros((), dtype=torch.bool))
        self.mode = "qat"
        self._calib: Dict[str, List[float]] = {}

    # ----------------------------------------------------------------- scales
    def scale(self, tensor: str) -> torch.Tensor:
        t = self.tensors[tensor]
        if t.kind == "off":
            return torch.ones((), dtype=torch.float64, device=self.scales.device)
        return self.scales[self.group_index[t.group]]

    def _record(self, name: str, y: torch.Tensor) -> None:
        t = self.tensors[name]
        if t.kind == "off" or name == "image":
            return
        v = y.detach().abs().flatten().float()
        if v.numel() > 200_000:
            v = v[torch.randint(v.numel(), (200_000,), device=v.device)]
        q = float(torch.quantile(v, 0.9999))
        self._calib.setdefault(t.group, []).append(q)

    def finish_calibration(self) -> None:
        """Set each group's scale from the recorded ranges (mean of per-batch 99.99th percentiles)."""
        if not self._calib:
            raise QuantizationError("calibration saw no data: run forward passes in 'float' mode first")
        for g, vals in self._calib.items():
            kinds = {t.kind for t in self.tensors.values() if t.group == g}
            qmax = 255.0 if kinds == {"u8"} else 127.0
            self.scales[self.group_index[g]] = max(float(np.mean(vals)), 1e-6) / qmax
        self.scales[self.group_index["image"]] = 1.0
        self.calibrated.fill_(True)
        self._calib = {}

    # ---------------------------------------------------------------- forward
    def forward(self, pixels: torch.Tensor) -> Dict[str, torch.Tensor]:
        mode = self.mode
        if mode not in MODES:
            raise ValueError(f"QGraph.mode must be one of {MODES}")
        if mode != "float" and not bool(self.calibrated):
            raise QuantizationError("QGraph is not calibrated: run calibrate() (quant.calib_batches) first")
        exact = mode == "exact"
        x = pixels.double() if exact else pixels.float().contiguous(memory_format=torch.channels_last)
        env: Dict[str, torch.Tensor] = {"image": x}
        for op in self.ops:
            if isinstance(op, QConv):
                off = env[op.offset] if op.offset else None
                if mode == "float":
                    y = op.forward_float(env[op.inp], off)
                    if getattr(self, "_calibrating", False):
                        self._record(op.out, y)
                else:
                    y = op.forward_quant(env[op.inp], off, self.scale(op.inp), self.scale(op.out), exact)
                env[op.out] = y
            else:
                env[op.out] = op(*[env[i] for i in op.inputs])
            if not exact:  # one memory format throughout (as the float trainer): oneDNN's dilated
                # depthwise backward, used by the per-pixel dilation, is several times faster in NHWC
                env[op.out] = env[op.out].contiguous(memory_format=torch.channels_last)
        out = {}
        for role, name in self.outputs.items():
            y = env[name]
            out[role] = y if mode == "float" else (y * self.scale(name)).float()
        return out

    @torch.no_grad()
    def calibrate(self, batches) -> None:
        """Record activation ranges over an iterable of pixel batches, then fix the scales."""
        was, mode = self.training, self.mode
        self.mode, self._calibrating = "float", True
        self.eval()
        for images in batches:
            self(images)
        self._calibrating = False
        self.mode = mode
        self.train(was)
        self.finish_calibration()

    # ----------------------------------------------------------------- export
    def to_program(self, meta: Optional[Dict] = None) -> Program:
        """The integer layer program (weights rounded, M/S derived from the current scales)."""
        if not bool(self.calibrated):
            raise QuantizationError("calibrate the QGraph before exporting it")
        shapes = self._shapes()
        tensors: Dict[str, TensorInfo] = {}
        for name, t in self.tensors.items():
            scale = 1.0 if t.kind == "off" else float(self.scale(name))
            tensors[name] = TensorInfo(name, shapes[name], "u8" if name == "image" else t.kind, scale)
        layers: List[Layer] = []
        for op in self.ops:
            if isinstance(op, QConv):
                arrays = op.int_params(float(self.scale(op.inp)), float(self.scale(op.out)))
                lo, hi = kind_range(op.kind, self.max_offset)
                attrs = {"k": op.k, "stride": op.stride, "pad": op.pad, "groups": op.groups, "lo": lo, "hi": hi,
                         "weight_bits": op.weight_bits}
                if op.offset:
                    attrs["offset"] = op.offset
                layers.append(Layer("conv", [op.inp], op.out, attrs, arrays, op.name))
            else:
                layers.append(Layer(op.op, list(op.inputs), op.out, dict(op.attrs), {}, op.name))
        prog = Program(input="image", tensors=tensors, layers=layers, outputs=dict(self.outputs),
                       max_offset=self.max_offset, meta=meta or {})
        prog.validate()
        return prog

    @torch.no_grad()
    def _shapes(self) -> Dict[str, Tuple[int, int, int]]:
        s = self.input_size
        mode, self.mode = self.mode, "float"
        shapes: Dict[str, Tuple[int, int, int]] = {"image": (s, s, 3)}
        env = {"image": torch.zeros(1, 3, s, s)}
        calib = getattr(self, "_calibrating", False)
        self._calibrating = False
        for op in self.ops:
            if isinstance(op, QConv):
                y = op.forward_float(env[op.inp], env[op.offset] if op.offset else None)
            else:
                y = op(*[env[i] for i in op.inputs])
            env[op.out] = y
            shapes[op.out] = (int(y.shape[2]), int(y.shape[3]), int(y.shape[1]))
        self.mode, self._calibrating = mode, calib
        return shapes


# --------------------------------------------------------------------- building

def fold_bn(weight: torch.Tensor, bias: Optional[torch.Tensor], bn: nn.BatchNorm2d) -> Tuple[torch.Tensor, torch.Tensor]:
    """Fold an eval-mode BN into the preceding conv: returns (weight, bias)."""
    std = torch.sqrt(bn.running_var + bn.eps)
    g = bn.weight / std
    w = weight * g.view(-1, 1, 1, 1)
    b = (bias if bias is not None else torch.zeros_like(bn.running_mean)) * g + bn.bias - bn.running_mean * g
    return w.detach(), b.detach()


class _Builder:
    def __init__(self, max_offset: int):
        self.ops: List[nn.Module] = []
        self.tensors: Dict[str, TensorSpec] = {"image": TensorSpec("image", "u8", "image", 3)}
        self.max_offset = max_offset
        self.n = 0

    def _name(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}_{self.n}"

    def conv(self, name: str, inp: str, w, b, stride=1, pad=0, groups=1, kind="u8", bits=4, group=None,
             offset=None) -> str:
        out = self._name(name)
        self.tensors[out] = TensorSpec(out, kind, group or out, int(w.shape[0]))
        in_kind = self.tensors[inp].kind
        self.ops.append(QConv(name, inp, out, w, b, stride, pad, groups, kind, bits, offset, self.max_offset, in_kind))
        return out

    def move(self, op: str, inputs: List[str], group: Optional[str] = None, channels: Optional[int] = None, **attrs) -> str:
        out = self._name(op)
        src = self.tensors[inputs[0]]
        self.tensors[out] = TensorSpec(out, src.kind, group or src.group, channels or src.channels)
        self.ops.append(QOp(out, op, inputs, out, **attrs))
        return out


def _seq_conv_bn(seq: nn.Sequential, i: int) -> Tuple[torch.Tensor, torch.Tensor, nn.Conv2d]:
    conv, bn = seq[i], seq[i + 1]
    w, b = fold_bn(conv.weight, conv.bias, bn)
    return w, b, conv


def _square_block(bld: _Builder, prefix: str, block: nn.Module, bn: nn.BatchNorm2d, x: str) -> str:
    """pointwise (+BN+ReLU) -> offset conv -> dilated depthwise (+ block BN + ReLU)."""
    pw_seq, second = block[0], block[1]
    w, b, _ = _seq_conv_bn(pw_seq, 0)
    p = bld.conv(f"{prefix}.pw", x, w, b, kind="u8")
    if isinstance(second, DeformConv):
        if second.mode != "square_hw" or not second.depthwise or second.offset_groups != 1:
            raise QuantizationError(f"{prefix}: only the hardware square depthwise block (one offset group) quantizes")
        off_conv = second.offset
        if off_conv.kernel_size != (1, 1):
            raise QuantizationError(f"{prefix}: the offset conv must be 1x1 for the accelerator")
        off = bld.conv(f"{prefix}.offset", p, off_conv.weight, off_conv.bias, kind="off")
        wd, bd = fold_bn(second.weight, None, bn)
        return bld.conv(f"{prefix}.dw", p, wd, bd, pad=1, groups=wd.shape[0], kind="u8", offset=off)
    # k3dw: plain depthwise 3x3
    wd, bd = fold_bn(second.weight, None, bn)
    return bld.conv(f"{prefix}.dw", p, wd, bd, pad=1, groups=wd.shape[0], kind="u8")


def build_qgraph(model: CoDeNet, weight_bits: int = 4, first_layer_bits: int = 8) -> QGraph:
    """Fold ``model`` (eval-mode BN statistics) into a QGraph; refuse what the contract cannot run."""
    cfg = model.cfg
    if cfg.variant not in SUPPORTED_VARIANTS:
        raise QuantizationError(f"variant {cfg.variant!r} cannot be quantized for the accelerator; use one of "
                                f"{SUPPORTED_VARIANTS}")
    bb = model.backbone
    if bb.layout != "torchvision":
        raise QuantizationError("quantization needs backbone_layout 'torchvision' (megvii's even/odd split is "
                                "not a contiguous channel slice)")
    if weight_bits != 4:
        raise QuantizationError("the accelerator packs 4-bit weights: quant.weight_bits must be 4")
    bld = _Builder(cfg.max_offset)
    # stem: fold BN and the mean/std normalisation into the first conv (raw u8 pixels in)
    w, b, _ = _seq_conv_bn(bb.conv1, 0)
    mean = bb.pixel_mean.view(1, 3, 1, 1)
    std = bb.pixel_std.view(1, 3, 1, 1)
    w_px = w / std
    b_px = b - (w_px * mean).sum(dim=(1, 2, 3))
    x = bld.conv("stem", "image", w_px, b_px, stride=2, pad=1, kind="u8", bits=first_layer_bits)
    x = bld.move("maxpool", [x])
    for si, stage in enumerate((bb.stage2, bb.stage3, bb.stage4)):
        for ui, unit in enumerate(stage):
            pre = f"stage{si + 2}.{ui}"
            c_out = 2 * unit.branch2[5].weight.shape[0]
            if unit.stride == 2:
                group = f"{pre}.out"
                w1, b1, c1 = _seq_conv_bn(unit.branch1, 0)
                t = bld.conv(f"{pre}.b1.dw", x, w1, b1, stride=2, pad=1, groups=c1.groups, kind="s8")
                w1, b1, _ = _seq_conv_bn(unit.branch1, 2)
                y1 = bld.conv(f"{pre}.b1.pw", t, w1, b1, kind="u8", group=group)
                y2 = _branch2(bld, pre, unit, x, stride=2, group=group)
                cat = bld.move("concat", [y1, y2], group=group, channels=c_out)
            else:
                c = bld.tensors[x].channels
                x1 = bld.move("slice", [x], channels=c // 2, c0=0, c1=c // 2)
                x2 = bld.move("slice", [x], channels=c - c // 2, c0=c // 2, c1=c)
                y2 = _branch2(bld, pre, unit, x2, stride=1, group=bld.tensors[x].group)
                cat = bld.move("concat", [x1, y2], channels=c_out)
            x = bld.move("shuffle", [cat], groups=2)
    w, b, _ = _seq_conv_bn(bb.conv5, 0)
    x = bld.conv("conv5", x, w, b, kind="u8")
    for i, stage in enumerate(model.decoder):
        x = _square_block(bld, f"decoder.{i}", stage.conv, stage.bn, x)
        x = bld.move("upsample", [x])
    feat = x
    outputs = {}
    for role in ("hm", "wh", "reg"):
        head = getattr(model, role)
        y = _square_block(bld, f"{role}", head.conv, head.bn, feat)
        outputs[role] = bld.conv(f"{role}.out", y, head.out.weight, head.out.bias, kind="s8")
    return QGraph(bld.ops, bld.tensors, outputs, cfg.input_size, cfg.max_offset)


def _branch2(bld: _Builder, pre: str, unit, x: str, stride: int, group: str) -> str:
    br = unit.branch2
    w, b, _ = _seq_conv_bn(br, 0)
    t = bld.conv(f"{pre}.b2.pw1", x, w, b, kind="u8")
    w, b, c = _seq_conv_bn(br, 3)
    t = bld.conv(f"{pre}.b2.dw", t, w, b, stride=stride, pad=1, groups=c.groups, kind="s8")
    w, b, _ = _seq_conv_bn(br, 5)
    return bld.conv(f"{pre}.b2.pw2", t, w, b, kind="u8", group=group)
