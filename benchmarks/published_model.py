"""Model of the *published* CoDeNet accelerator (FPGA'21, Ultra96), fitted to its published timings.

Benchmark-side code (not part of the runtime package): ``benchmarks/perf_model.py`` uses it to put
the published engine beside this project's counted engine.  Two parts, pure Python:

1. **Layer enumeration.** :func:`enumerate_layers` lists the layers of a CoDeNet network
   analytically from a :class:`ModelConfig` (ShuffleNetV2 width, stem, input size, decoder and
   head channels), including the pure data-movement ops (split, concat, shuffle, upsample).
2. **The published engine.** :class:`PublishedEngine` models the FPGA'21 Ultra96 design driven per
   layer from a notebook (one HLS call per layer, CPU glue in numpy).  Ten of its parameters are
   *fitted* to published numbers (:data:`FITTED_PARAMETERS` says which data each was fitted to);
   ``benchmarks/perf_model.py`` reports the in-sample errors and the out-of-sample errors of a
   leave-one-out refit.  Its predictions are a model, never a measurement of this project's engine.

Our engine has no formula here: its figures are *counted* by the C simulation (hls_src/cn_account.h,
``codenet_pynq.accel.emulib.account``).  "published" numbers are the FPGA'21 paper and its hardware
artifact notebook.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field, replace
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

# --------------------------------------------------------------------------------------------
# Network description
# --------------------------------------------------------------------------------------------

#: ShuffleNetV2 stage channels (stem, stage2, stage3, stage4, conv5) per width multiplier.
SHUFFLENET_CHANNELS: Dict[float, Tuple[int, int, int, int, int]] = {
    0.5: (24, 48, 96, 192, 1024),
    1.0: (24, 116, 232, 464, 1024),
    1.5: (24, 176, 352, 704, 1024),
    2.0: (24, 244, 488, 976, 2048),
}
#: Units per stage (the first unit of each stage has stride 2).
SHUFFLENET_REPEATS: Tuple[int, int, int] = (4, 8, 4)

#: Channels of the graph timed by the published artifact notebook (rounded up to 16 lanes).
NOTEBOOK_CHANNELS: Dict[float, Tuple[int, int, int, int, int]] = {
    1.0: (24, 128, 256, 512, 1024),
    2.0: (24, 256, 512, 1024, 2048),
}

DATA_OPS = ("split", "concat", "shuffle", "upsample", "layout")


@dataclass(frozen=True)
class Layer:
    """One layer (or data-movement op) of the network, with shapes and costs.

    ``op``: ``conv`` (any kernel; depthwise when ``groups == c_in == c_out > 1``), ``maxpool``,
    or a data-movement op: ``split`` (``c_out`` is the half a branch takes), ``concat``,
    ``shuffle``, ``upsample`` (nearest x2), ``layout`` (NCHW -> NHWC of the input image).
    ``role`` refines convs: ``stem``, ``pw``, ``dw``, ``offset`` (1x1 -> 1 square offset),
    ``head_out``. ``inputs`` names the producing layers (dataflow edges).
    """

    name: str
    op: str
    section: str
    h_in: int
    w_in: int
    c_in: int
    h_out: int
    w_out: int
    c_out: int
    k: int = 1
    stride: int = 1
    groups: int = 1
    deformable: bool = False
    role: str = ""
    inputs: Tuple[str, ...] = ()
    weight_bits: int = 4
    act_bits: int = 8
    bias: bool = False

    @property
    def is_conv(self) -> bool:
        return self.op == "conv"

    @property
    def depthwise(self) -> bool:
        return self.is_conv and self.groups > 1 and self.groups == self.c_in == self.c_out

    @property
    def pointwise(self) -> bool:
        return self.is_conv and self.k == 1

    @property
    def macs(self) -> int:
        """Multiply-accumulates (0 for data movement and pooling)."""
        if not self.is_conv:
            return 0
        return self.h_out * self.w_out * self.c_out * (self.c_in // self.groups) * self.k * self.k

    @property
    def params(self) -> int:
        """Weights (biases are not counted, as in the published parameter sizes)."""
        if not self.is_conv:
            return 0
        return self.c_out * (self.c_in // self.groups) * self.k * self.k

    @property
    def weight_bytes(self) -> float:
        return self.params * self.weight_bits / 8.0

    @property
    def act_in_bytes(self) -> int:
        return self.h_in * self.w_in * self.c_in * self.act_bits // 8

    @property
    def act_out_bytes(self) -> int:
        return self.h_out * self.w_out * self.c_out * self.act_bits // 8

    def describe(self) -> str:
        if self.op == "conv":
            kind = {"dw": "dw", "offset": "offset", "stem": "stem"}.get(self.role, "conv")
            if self.depthwise:
                kind = "dw"
            extra = " deform" if self.deformable else ""
            return (f"{kind} {self.k}x{self.k}/s{self.stride}{extra} {self.c_in}->{self.c_out} "
                    f"@{self.h_in}x{self.w_in}")
        return f"{self.op} {self.c_in}->{self.c_out} @{self.h_in}x{self.w_in}->{self.h_out}x{self.w_out}"


@dataclass(frozen=True)
class ModelConfig:
    """Analytic description of a CoDeNet network.

    ``graph="deployed"`` is the FPGA'21 network (brief: decoder 1024 -> 256 -> 128 -> 64, each stage
    a depthwise-square block then nearest x2; heads: square block then 1x1). ``graph="notebook"``
    is the graph the published artifact notebook actually timed: channels rounded to 16 lanes,
    decoder blocks "offset -> 3x3 dw deformable on the input -> 1x1" with 1024 -> 256 -> 128 -> 128,
    heads one fused 1x1 + 3x3 call 128 -> (80, 2, 2).
    """

    name: str = "c"
    width: float = 1.0
    input_size: int = 512
    stem: str = "conv_s4"  # "conv_s4" (3x3 stride 4) or "conv_s2_maxpool"
    decoder_channels: Tuple[int, ...] = (256, 128, 64)
    head_channels: int = 64
    num_classes: int = 20
    graph: str = "deployed"  # or "notebook"
    #: Kernel of the square-offset conv (1 in the hardware form; DCN-style models use 3).
    offset_kernel: int = 1

    def __post_init__(self) -> None:
        if self.width not in SHUFFLENET_CHANNELS:
            raise ValueError(f"width must be one of {sorted(SHUFFLENET_CHANNELS)}, got {self.width}")
        if self.stem not in ("conv_s4", "conv_s2_maxpool"):
            raise ValueError(f"stem must be 'conv_s4' or 'conv_s2_maxpool', got {self.stem!r}")
        if self.graph not in ("deployed", "notebook"):
            raise ValueError(f"graph must be 'deployed' or 'notebook', got {self.graph!r}")
        if self.graph == "notebook" and self.width not in NOTEBOOK_CHANNELS:
            raise ValueError("the notebook graph exists for widths 1.0 and 2.0 only")
        if self.input_size % 32:
            raise ValueError("input_size must be a multiple of 32")


#: The FPGA'21 configurations a..e (published Table: input, downsampling, width).
NAMED_CONFIGS: Dict[str, ModelConfig] = {
    "a": ModelConfig("a", 1.0, 256, "conv_s4"),
    "b": ModelConfig("b", 1.0, 256, "conv_s2_maxpool"),
    "c": ModelConfig("c", 1.0, 512, "conv_s4"),
    "d": ModelConfig("d", 2.0, 512, "conv_s4"),
    "e": ModelConfig("e", 2.0, 512, "conv_s2_maxpool"),
}


def named_config(name: str, graph: str = "deployed") -> ModelConfig:
    """Config ``a``..``e``; ``graph="notebook"`` gives the graph the published notebook timed."""
    key = name.lower()
    if key not in NAMED_CONFIGS:
        raise KeyError(f"unknown config {name!r}; choose one of {sorted(NAMED_CONFIGS)}")
    cfg = NAMED_CONFIGS[key]
    if graph == "notebook":
        cfg = replace(cfg, name=f"{key}-notebook", graph="notebook", num_classes=80,
                      decoder_channels=(256, 128, 128), head_channels=128)
    elif graph != "deployed":
        raise ValueError(f"graph must be 'deployed' or 'notebook', got {graph!r}")
    return cfg


def _conv_out(size: int, k: int, stride: int) -> int:
    """Output size of a 'same'-padded convolution (pad = k // 2)."""
    return (size + 2 * (k // 2) - k) // stride + 1


class _Builder:
    """Appends layers and keeps names unique."""

    def __init__(self) -> None:
        self.layers: List[Layer] = []

    def add(self, **kw) -> Layer:
        layer = Layer(**kw)
        self.layers.append(layer)
        return layer

    def conv(self, name: str, section: str, src: Layer, c_out: int, k: int = 1, stride: int = 1,
             groups: int = 1, role: str = "pw", deformable: bool = False,
             extra_inputs: Tuple[str, ...] = (), weight_bits: int = 4, bias: bool = False) -> Layer:
        h, w = _conv_out(src.h_out, k, stride), _conv_out(src.w_out, k, stride)
        return self.add(name=name, op="conv", section=section, h_in=src.h_out, w_in=src.w_out,
                        c_in=src.c_out, h_out=h, w_out=w, c_out=c_out, k=k, stride=stride, groups=groups,
                        deformable=deformable, role=role, inputs=(src.name,) + extra_inputs,
                        weight_bits=weight_bits, bias=bias)

    def dw(self, name: str, section: str, src: Layer, stride: int = 1, deformable: bool = False,
           extra_inputs: Tuple[str, ...] = ()) -> Layer:
        return self.conv(name, section, src, src.c_out, k=3, stride=stride, groups=src.c_out, role="dw",
                         deformable=deformable, extra_inputs=extra_inputs)

    def data(self, name: str, op: str, section: str, srcs: Sequence[Layer], c_in: int, c_out: int,
             scale: int = 1) -> Layer:
        s = srcs[0]
        return self.add(name=name, op=op, section=section, h_in=s.h_out, w_in=s.w_out, c_in=c_in,
                        h_out=s.h_out * scale, w_out=s.w_out * scale, c_out=c_out,
                        inputs=tuple(x.name for x in srcs))


def _stem(b: _Builder, cfg: ModelConfig, c0: int) -> Layer:
    s = cfg.input_size
    x = b.add(name="input", op="layout", section="stem", h_in=s, w_in=s, c_in=3, h_out=s, w_out=s, c_out=3)
    if cfg.stem == "conv_s4":
        return b.conv("stem.conv", "stem", x, c0, k=3, stride=4, role="stem", weight_bits=8)
    y = b.conv("stem.conv", "stem", x, c0, k=3, stride=2, role="stem", weight_bits=8)
    h = _conv_out(y.h_out, 3, 2)
    return b.add(name="stem.maxpool", op="maxpool", section="stem", h_in=y.h_out, w_in=y.w_out, c_in=c0,
                 h_out=h, w_out=h, c_out=c0, k=3, stride=2, inputs=(y.name,))


def _backbone(b: _Builder, x: Layer, chans: Sequence[int]) -> Layer:
    """ShuffleNetV2 stages 2-4 and conv5 (the deployed structure)."""
    for si, (c_out, reps) in enumerate(zip(chans[1:4], SHUFFLENET_REPEATS)):
        sec = f"stage{si + 2}"
        half = c_out // 2
        for u in range(reps):
            p = f"{sec}.u{u}"
            if u == 0:
                d1 = b.dw(f"{p}.b1.dw", sec, x, stride=2)
                p1 = b.conv(f"{p}.b1.pw", sec, d1, half)
                q1 = b.conv(f"{p}.b2.pw1", sec, x, half)
                d2 = b.dw(f"{p}.b2.dw", sec, q1, stride=2)
                q2 = b.conv(f"{p}.b2.pw2", sec, d2, half)
                cat = b.data(f"{p}.concat", "concat", sec, [p1, q2], 2 * half, 2 * half)
            else:
                sp = b.data(f"{p}.split", "split", sec, [x], x.c_out, half)
                q1 = b.conv(f"{p}.b2.pw1", sec, sp, half)
                d2 = b.dw(f"{p}.b2.dw", sec, q1)
                q2 = b.conv(f"{p}.b2.pw2", sec, d2, half)
                cat = b.data(f"{p}.concat", "concat", sec, [sp, q2], 2 * half, 2 * half)
            x = b.data(f"{p}.shuffle", "shuffle", sec, [cat], 2 * half, 2 * half)
    return b.conv("conv5", "conv5", x, chans[4])


def _deployed_decoder_heads(b: _Builder, x: Layer, cfg: ModelConfig) -> None:
    for i, c in enumerate(cfg.decoder_channels):
        p = f"dec{i}"
        pw = b.conv(f"{p}.pw", "decoder", x, c)
        off = b.conv(f"{p}.offset", "decoder", pw, 1, k=cfg.offset_kernel, role="offset", bias=True)
        dw = b.dw(f"{p}.dw", "decoder", pw, deformable=True, extra_inputs=(off.name,))
        x = b.data(f"{p}.up", "upsample", "decoder", [dw], c, c, scale=2)
    for head, ch in (("hm", cfg.num_classes), ("wh", 2), ("reg", 2)):
        p = f"head.{head}"
        pw = b.conv(f"{p}.pw", "head", x, cfg.head_channels)
        off = b.conv(f"{p}.offset", "head", pw, 1, k=cfg.offset_kernel, role="offset", bias=True)
        dw = b.dw(f"{p}.dw", "head", pw, deformable=True, extra_inputs=(off.name,))
        b.conv(f"{p}.out", "head", dw, ch, role="head_out", bias=True)


def _notebook_decoder_heads(b: _Builder, x: Layer, cfg: ModelConfig) -> None:
    planes = (x.c_out,) + tuple(cfg.decoder_channels[:-1])
    for i, (ic, oc) in enumerate(zip(planes, cfg.decoder_channels)):
        p = f"dec{i}"
        off = b.conv(f"{p}.offset", "decoder", x, 1, k=cfg.offset_kernel, role="offset", bias=True)
        dw = b.dw(f"{p}.dw", "decoder", x, deformable=True, extra_inputs=(off.name,))
        y = b.conv(f"{p}.pw", "decoder", dw, oc) if ic != oc else dw
        x = b.data(f"{p}.up", "upsample", "decoder", [y], oc, oc, scale=2)
    for head, ch in (("hm", cfg.num_classes), ("wh", 2), ("reg", 2)):
        pw = b.conv(f"head.{head}.pw", "head", x, ch, role="head_out", bias=True)
        b.dw(f"head.{head}.dw", "head", pw)


def enumerate_layers(cfg: ModelConfig) -> List[Layer]:
    """All layers of the network described by ``cfg``, in execution order."""
    b = _Builder()
    chans = (NOTEBOOK_CHANNELS if cfg.graph == "notebook" else SHUFFLENET_CHANNELS)[cfg.width]
    x = _stem(b, cfg, chans[0])
    x = _backbone(b, x, chans)
    if cfg.graph == "notebook":
        _notebook_decoder_heads(b, x, cfg)
    else:
        _deployed_decoder_heads(b, x, cfg)
    return b.layers


@dataclass(frozen=True)
class NetworkTotals:
    macs: int
    params: int
    weight_bytes: float
    first_layer_macs: int

    @property
    def gmacs(self) -> float:
        return self.macs / 1e9

    @property
    def params_mib(self) -> float:
        """Packed weight storage in MiB (4-bit weights, 8-bit first layer)."""
        return self.weight_bytes / 2**20


def network_totals(layers: Iterable[Layer]) -> NetworkTotals:
    layers = list(layers)
    first = sum(la.macs for la in layers if la.role == "stem")
    return NetworkTotals(sum(la.macs for la in layers), sum(la.params for la in layers),
                         sum(la.weight_bytes for la in layers), first)


def layers_from_program(program: Sequence[Mapping]) -> List[Layer]:
    """Adapt an integer layer program to :class:`Layer` records (stub for the real format).

    Expected keys of each dict:

    - ``op``: ``conv`` | ``pw`` | ``dw`` | ``offset`` | ``maxpool`` | ``split`` | ``concat`` |
      ``shuffle`` | ``upsample`` | ``layout``;
    - ``in``: ``(H, W, Cin)`` and ``out``: ``(H, W, Cout)`` (ints);
    - convs: ``k`` (default 1; 3 for ``dw``), ``stride`` (1), ``groups`` (1; ``Cin`` for ``dw``),
      ``has_offset`` (bool: square-deformable depthwise reading an offset map);
    - optional: ``name`` (default ``L<i>``), ``section`` (default ``"net"``), ``inputs`` (names of
      producers; default the previous entry), ``role`` (``stem``/``pw``/``dw``/``offset``/
      ``head_out``; inferred when absent), ``weight_bits`` (4; 8 when role is ``stem``).
    """
    out: List[Layer] = []
    for i, d in enumerate(program):
        op = str(d["op"])
        h_in, w_in, c_in = (int(v) for v in d["in"])
        h_out, w_out, c_out = (int(v) for v in d["out"])
        name = str(d.get("name", f"L{i}"))
        inputs = tuple(d.get("inputs", (out[-1].name,) if out else ()))
        kind = op
        k = int(d.get("k", 3 if op == "dw" else 1))
        groups = int(d.get("groups", c_in if op == "dw" else 1))
        if op in ("pw", "dw", "offset", "conv"):
            kind = "conv"
        role = str(d.get("role", ""))
        if not role and kind == "conv":
            if op in ("dw", "offset", "pw"):
                role = op
            elif groups > 1 and groups == c_in == c_out:
                role = "dw"
            elif c_in == 3 and k > 1:
                role = "stem"
            else:
                role = "pw"
        out.append(Layer(name=name, op=kind, section=str(d.get("section", "net")), h_in=h_in, w_in=w_in,
                         c_in=c_in, h_out=h_out, w_out=w_out, c_out=c_out, k=k,
                         stride=int(d.get("stride", 1)), groups=groups,
                         deformable=bool(d.get("has_offset", False)), role=role, inputs=inputs,
                         weight_bits=int(d.get("weight_bits", 8 if role == "stem" else 4)),
                         bias=bool(d.get("bias", role in ("offset", "head_out")))))
    return out


# --------------------------------------------------------------------------------------------
# Published data (FPGA'21 paper and its hardware artifact notebook) -- numbers to validate against
# --------------------------------------------------------------------------------------------

#: Paper table (Ultra96, W4A8, VOC): params MB, GMACs, fps.
PUBLISHED_TABLE: Dict[str, Dict[str, float]] = {
    "a": {"params_mb": 0.76, "gmacs": 0.29, "fps": 32.2},
    "b": {"params_mb": 0.76, "gmacs": 0.29, "fps": 26.9},
    "c": {"params_mb": 0.76, "gmacs": 1.14, "fps": 9.3},
    "d": {"params_mb": 2.90, "gmacs": 3.54, "fps": 5.2},
    "e": {"params_mb": 2.90, "gmacs": 3.58, "fps": 4.6},
}

#: Artifact notebook breakdown per config (ms): first layer (TVM on the A53, incl. the NCHW->NHWC
#: view), accelerator calls ("conv"), nearest upsample, channel split, concat+shuffle; the total
#: is their sum. The notebook ran random tensors; its timers exclude register writes and copies.
PUBLISHED_BREAKDOWN_MS: Dict[str, Dict[str, float]] = {
    "a": {"first_layer": 1.80, "conv": 19.726, "upsample": 0.563, "split": 0.123, "shuffle": 4.858},
    "b": {"first_layer": 7.90, "conv": 19.799, "upsample": 0.521, "split": 0.124, "shuffle": 4.867},
    "c": {"first_layer": 5.00, "conv": 65.977, "upsample": 3.505, "split": 0.142, "shuffle": 20.069},
    "d": {"first_layer": 5.00, "conv": 124.250, "upsample": 2.711, "split": 0.179, "shuffle": 40.452},
    "e": {"first_layer": 30.40, "conv": 124.005, "upsample": 2.501, "split": 0.194, "shuffle": 40.149},
}

#: Published per-call timings (an earlier run of the artifact notebook: width 2.0, 64x64 input to
#: stage 2, both kernel stages enabled in every call). (D, IC, OC, stride, n_calls, mean_us);
#: D is the square input size of the call; IC/OC are rounded up to 16 by the driver.
PUBLISHED_CALLS_US: Tuple[Tuple[int, int, int, int, int, float], ...] = (
    (64, 32, 32, 2, 1, 1028), (32, 32, 128, 1, 1, 609), (64, 32, 128, 2, 1, 1712),
    (32, 128, 128, 1, 8, 739), (32, 256, 256, 2, 2, 1858), (16, 256, 256, 1, 17, 578),
    (16, 512, 512, 2, 2, 1588), (8, 512, 512, 1, 12, 558), (8, 1024, 512, 1, 4, 840),
    (8, 2048, 1, 1, 1, 152), (8, 2048, 256, 1, 1, 800), (16, 256, 1, 1, 1, 132),
    (16, 256, 128, 1, 1, 334), (32, 128, 1, 1, 1, 374), (64, 128, 80, 1, 1, 1781),
    (64, 128, 2, 1, 2, 1314),
)

#: Published accelerator resources (Ultra96 / XCZU3EG).
ZU3EG_DSP = 360
ZU3EG_BRAM36 = 216
PUBLISHED_RESOURCES = {"dsp": 360, "bram36": 216, "lut": 34144, "ff": 41827, "clock_mhz": 250}

# --------------------------------------------------------------------------------------------
# The published engine
# --------------------------------------------------------------------------------------------

#: Parameters of :class:`PublishedEngine` fitted to published numbers, with the data each was
#: fitted to (``benchmarks/perf_model.py --calibrate`` reruns the fit, one group at a time).
FITTED_PARAMETERS: Dict[str, str] = {
    "call_overhead_us": "16 per-call timings + conv totals of a, c, d",
    "pw_restart_cycles": "16 per-call timings + conv totals of a, c, d",
    "lb_restart_cycles": "16 per-call timings + conv totals of a, c, d",
    "cpu_op_us": "split stage of a..e",
    "cpu_strided_gbps": "shuffle stage of a..e",
    "cpu_copy_l2_gbps": "upsample stage of a..e",
    "cpu_copy_gbps": "upsample stage of a..e",
    "cpu_conv_gmacs": "first-layer stage of a, c",
    "cpu_conv_fixed_us": "first-layer stage of a, c",
    "reg_write_us": "paper fps of a..e",
}


@dataclass(frozen=True)
class EngineParams:
    """Parameters common to both engine models."""

    name: str = "engine"
    clock_mhz: float = 250.0
    #: Effective DRAM bandwidth available to the accelerator, read + write together (GB/s).
    dram_gbps: float = 4.0

    @property
    def bytes_per_cycle(self) -> float:
        return self.dram_gbps * 1e9 / (self.clock_mhz * 1e6)


@dataclass(frozen=True)
class PublishedEngine(EngineParams):
    """The FPGA'21 engine, one HLS dataflow call per layer, glue on the Cortex-A53.

    Calibrated parameters (see docs/perf_model.md for the fit and why each value is plausible):
    ``call_overhead_us``, ``pw_restart_cycles``, ``lb_restart_cycles`` (accelerator calls);
    ``cpu_strided_gbps``, ``cpu_copy_gbps``, ``cpu_op_us``, ``cpu_conv_gmacs``,
    ``cpu_conv_fixed_us`` (CPU glue); ``reg_write_us`` (host work outside the notebook timers).
    """

    name: str = "published"
    pa: int = 16
    pe: int = 16
    max_channels: int = 512
    dram_gbps: float = 4.0
    #: Start write + done-bit polling in Python + per-call HLS prologue (quant/3x3 weight loads).
    call_overhead_us: float = 66.0
    #: Pipeline fill of the 1x1 inner loop, paid per pixel per 16-output-channel group.
    pw_restart_cycles: float = 12.0
    #: Pipeline fill of each line-buffer loop (read, window), paid per pixel.
    lb_restart_cycles: float = 38.0
    #: numpy strided byte copies on the A53 (concat+shuffle interleave, pooling taps), GB/s.
    cpu_strided_gbps: float = 0.24
    #: numpy contiguous copies (np.repeat upsample, concatenate, CMA buffer copy-out), GB/s,
    #: when the working set (input + output) spills the A53's L2, and when it fits in it.
    cpu_copy_gbps: float = 0.9
    cpu_copy_l2_gbps: float = 1.45
    cpu_l2_bytes: int = 1 << 20
    #: Fixed cost of one numpy call (a view such as the channel split), us.
    cpu_op_us: float = 11.5
    #: First 3x3 conv (8-bit) on the A53 with TVM: MAC rate and fixed dispatch cost.
    cpu_conv_gmacs: float = 2.5
    cpu_conv_fixed_us: float = 750.0
    #: One AXI-Lite register write from Python (16 per call, outside the notebook timer).
    reg_write_us: float = 2.4
    reg_writes_per_call: int = 16


PUBLISHED_ENGINE = PublishedEngine()

#: Parameter sets of our engine that fit the ZU3EG's 360 DSPs (see :func:`resources`).
# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------

CATEGORIES = ("first_layer", "conv", "shuffle", "split", "upsample", "host")


@dataclass
class Row:
    """One accelerator call/pass or one CPU op."""

    name: str
    section: str
    category: str  # one of CATEGORIES
    unit: str  # "accel", "cpu" or "host"
    ms: float
    cycles: float = 0.0
    bound: str = ""  # "compute", "memory", "overhead", "cpu"
    macs: int = 0
    dram_bytes: float = 0.0
    detail: str = ""


@dataclass
class Report:
    """Per-row estimates and per-frame totals for one network on one engine."""

    config: str
    engine: str
    clock_mhz: float
    rows: List[Row] = field(default_factory=list)
    macs: int = 0

    @property
    def total_ms(self) -> float:
        return sum(r.ms for r in self.rows)

    @property
    def fps(self) -> float:
        return 1000.0 / self.total_ms if self.total_ms > 0 else float("inf")

    @property
    def timed_ms(self) -> float:
        """Total without ``host`` rows (what the published notebook's timers covered)."""
        return sum(r.ms for r in self.rows if r.category != "host")

    @property
    def timed_fps(self) -> float:
        return 1000.0 / self.timed_ms

    @property
    def accel_cycles(self) -> float:
        return sum(r.cycles for r in self.rows)

    def by_category(self) -> Dict[str, float]:
        out = {c: 0.0 for c in CATEGORIES}
        for r in self.rows:
            out[r.category] = out.get(r.category, 0.0) + r.ms
        return out

    def by_section(self) -> Dict[str, float]:
        out: Dict[str, float] = {}
        for r in self.rows:
            out[r.section] = out.get(r.section, 0.0) + r.ms
        return out

    def bound_ms(self) -> Dict[str, float]:
        out: Dict[str, float] = {}
        for r in self.rows:
            out[r.bound] = out.get(r.bound, 0.0) + r.ms
        return out

    def to_markdown(self, per_row: bool = True) -> str:
        lines = [f"### {self.config} on {self.engine} @ {self.clock_mhz:g} MHz", ""]
        gops = 2 * self.macs / (self.total_ms * 1e-3) / 1e9 if self.total_ms > 0 else 0.0
        lines += ["| total ms | fps | GMACs | effective GOPS | calls/passes | DRAM MB |", "|---|---|---|---|---|---|",
                  f"| {self.total_ms:.2f} | {self.fps:.1f} | {self.macs / 1e9:.3f} | {gops:.1f} | "
                  f"{sum(1 for r in self.rows if r.unit == 'accel')} | "
                  f"{sum(r.dram_bytes for r in self.rows) / 1e6:.1f} |", ""]
        lines += ["| category | ms | share |", "|---|---|---|"]
        for cat, ms in self.by_category().items():
            if ms > 0:
                lines.append(f"| {cat} | {ms:.2f} | {100 * ms / self.total_ms:.0f}% |")
        lines += ["", "| section | ms |", "|---|---|"]
        for sec, ms in self.by_section().items():
            lines.append(f"| {sec} | {ms:.2f} |")
        if per_row:
            lines += ["", "| # | name | section | category | detail | bound | cycles | ms |",
                      "|---|---|---|---|---|---|---|---|"]
            for i, r in enumerate(self.rows):
                lines.append(f"| {i} | {r.name} | {r.section} | {r.category} | {r.detail} | {r.bound} | "
                             f"{r.cycles:.0f} | {r.ms:.3f} |")
        return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# Published engine model
# --------------------------------------------------------------------------------------------


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _pad16(c: int) -> int:
    return _ceil_div(c, 16) * 16


@dataclass(frozen=True)
class Call:
    """One invocation of the published kernel: optional 1x1 then optional 3x3 depthwise."""

    name: str
    section: str
    h: int
    w: int
    ic: int
    oc: int
    stride: int
    pw: bool
    dw: bool
    deform: bool = False
    macs: int = 0


def published_call_cycles(eng: PublishedEngine, h: int, w: int, ic: int, oc: int, stride: int,
                          pw: bool = True, dw: bool = True) -> Tuple[float, str, float]:
    """Accelerator cycles of one published call (excluding the fixed per-call overhead).

    The HLS kernel pipelines only its innermost loops, so every pixel pays a pipeline fill per
    inner-loop entry: the 1x1 stage runs ``IC/PA`` cycles per 16-channel output group plus
    ``pw_restart_cycles``; the 15-row line buffer runs a read loop per input pixel and a window
    loop per output pixel, each ``OC/16`` cycles plus ``lb_restart_cycles``. The dataflow stages
    overlap, so the slowest stage (or DRAM) sets the time; the 1x1 weights are loaded before it.
    Returns (cycles, bound, dram_bytes).
    """
    icg = _ceil_div(ic, eng.pa)
    ocg = _ceil_div(oc, eng.pe) if pw else _ceil_div(ic, eng.pe)
    pix = h * w
    pix_out = _ceil_div(h, stride) * _ceil_div(w, stride)
    pw_cyc = pix * (icg + ocg * (icg + eng.pw_restart_cycles)) if pw else pix * icg
    lb_cyc = pix * (ocg + eng.lb_restart_cycles)
    if dw:
        lb_cyc += pix_out * (ocg + eng.lb_restart_cycles)
    dram = pix * icg * eng.pa + pix_out * ocg * eng.pe
    weight_load = icg * ocg * eng.pe if pw else 0
    dram += icg * ocg * eng.pa * eng.pe if pw else 0
    mem_cyc = dram / eng.bytes_per_cycle
    body = max(pw_cyc, lb_cyc, mem_cyc)
    bound = "memory" if body == mem_cyc else "compute"
    return weight_load + body, bound, float(dram)


def published_calls(layers: Sequence[Layer], eng: PublishedEngine = PUBLISHED_ENGINE) -> List[Call]:
    """Map layers to published-kernel calls (1x1 and a following plain 3x3 dw fuse into one call;
    a deformable dw needs its offsets in DRAM first, so it runs alone; >512 channels split)."""
    calls: List[Call] = []
    convs = [la for la in layers if la.is_conv and la.role != "stem"]
    used = set()
    for i, la in enumerate(convs):
        if la.name in used:
            continue
        used.add(la.name)
        nxt = convs[i + 1] if i + 1 < len(convs) else None
        if la.depthwise:
            parts = _ceil_div(la.c_in, eng.max_channels)
            for p in range(parts):
                c = min(eng.max_channels, la.c_in - p * eng.max_channels)
                calls.append(Call(la.name + (f"#{p}" if parts > 1 else ""), la.section, la.h_in, la.w_in, c, c,
                                  la.stride, pw=False, dw=True, deform=la.deformable, macs=la.macs // parts))
            continue
        fuse = (nxt is not None and nxt.depthwise and not nxt.deformable and nxt.inputs[:1] == (la.name,))
        if fuse:
            used.add(nxt.name)
        g = la.groups
        ic_g, oc_g = la.c_in // g, la.c_out // g
        oc_parts = _ceil_div(oc_g, eng.max_channels)
        for gi in range(g):
            for p in range(oc_parts):
                oc = min(eng.max_channels, oc_g - p * eng.max_channels)
                tag = (f"#g{gi}" if g > 1 else "") + (f"#{p}" if oc_parts > 1 else "")
                macs = (la.macs + (nxt.macs if fuse else 0)) // (g * oc_parts)
                calls.append(Call(la.name + ("+dw" if fuse else "") + tag, la.section, la.h_in, la.w_in, ic_g, oc,
                                  nxt.stride if fuse else 1, pw=True, dw=fuse, macs=macs))
    return calls


def notebook_gop(calls: Sequence[Call], pa: int = 16, pe: int = 16) -> float:
    """The published notebook's own operation count (its GOPS numerator) for a call list."""
    total = 0.0
    for c in calls:
        ic = _ceil_div(c.ic, pa) * pa
        oc = _ceil_div(c.oc, pe) * pe
        s2 = c.stride * c.stride
        total += (9 * c.h * c.w * ic * 2 / s2) * c.dw + (c.h * c.w * oc * ic * 2 / s2) * c.pw
    return total / 1e9


def _cpu_copy_ms(eng: PublishedEngine, out_bytes: float, in_bytes: float) -> float:
    """A contiguous numpy copy producing ``out_bytes`` from ``in_bytes`` (L2-aware rate)."""
    gbps = eng.cpu_copy_l2_gbps if out_bytes + in_bytes <= eng.cpu_l2_bytes else eng.cpu_copy_gbps
    return out_bytes / (gbps * 1e6)


def _published_report(layers: Sequence[Layer], eng: PublishedEngine, config: str) -> Report:
    rep = Report(config=config, engine=eng.name, clock_mhz=eng.clock_mhz,
                 macs=sum(la.macs for la in layers))
    clk = eng.clock_mhz * 1e3  # cycles per ms
    by_name = {la.name: la for la in layers}
    # CPU: first layer (stem conv, maxpool, layout view) -- TVM on the A53 in the published flow.
    for la in layers:
        if la.role == "stem":
            ms = (eng.cpu_conv_fixed_us * 1e-3 + la.macs / (eng.cpu_conv_gmacs * 1e6))
            rep.rows.append(Row(la.name, la.section, "first_layer", "cpu", ms, bound="cpu", macs=la.macs,
                                detail=la.describe()))
        elif la.op == "maxpool":
            ms = 9 * la.act_out_bytes / (eng.cpu_strided_gbps * 1e6)
            rep.rows.append(Row(la.name, la.section, "first_layer", "cpu", ms, bound="cpu", detail=la.describe()))
        elif la.op == "layout":
            rep.rows.append(Row(la.name, la.section, "first_layer", "cpu", eng.cpu_op_us * 1e-3, bound="cpu",
                                detail="NCHW->NHWC (view)"))
    # Accelerator calls, in order, with the CPU glue that follows them.
    calls = published_calls(layers, eng)
    parts: Dict[str, List[Call]] = {}
    for c in calls:
        parts.setdefault(c.name.split("#")[0], []).append(c)
    for c in calls:
        cyc, bound, dram = published_call_cycles(eng, c.h, c.w, c.ic, c.oc, c.stride, c.pw, c.dw)
        ms = eng.call_overhead_us * 1e-3 + cyc / clk
        stage = "+".join(s for s, on in (("1x1", c.pw), ("dw3x3" + ("-deform" if c.deform else ""), c.dw)) if on)
        rep.rows.append(Row(c.name, c.section, "conv", "accel", ms, cycles=cyc, bound=bound, macs=c.macs,
                            dram_bytes=dram, detail=f"{stage} {c.ic}->{c.oc if c.pw else c.ic} @{c.h}x{c.w}"
                                                    f"/s{c.stride}"))
        # Host work outside the notebook timer: register writes + copy-out of the CMA buffer.
        out_bytes = _ceil_div(c.h, c.stride) * _ceil_div(c.w, c.stride) * _pad16(c.oc if c.pw else c.ic)
        host = eng.reg_writes_per_call * eng.reg_write_us * 1e-3 + _cpu_copy_ms(eng, out_bytes, out_bytes)
        rep.rows.append(Row(c.name + ".host", c.section, "host", "host", host, bound="cpu",
                            detail="16 register writes + output copy-out"))
    for base, ps in parts.items():
        if len(ps) > 1:  # np.concatenate of the >512-channel parts (inside the notebook's conv timer)
            la = by_name.get(base)
            nbytes = la.act_out_bytes if la is not None else 0
            rep.rows.append(Row(base + ".parts", ps[0].section, "conv", "cpu",
                                eng.cpu_op_us * 1e-3 + _cpu_copy_ms(eng, nbytes, nbytes), bound="cpu",
                                detail=f"concatenate {len(ps)} parts"))
    # CPU data movement.
    for la in layers:
        if la.op == "split":
            rep.rows.append(Row(la.name, la.section, "split", "cpu", eng.cpu_op_us * 1e-3, bound="cpu",
                                detail="strided view"))
        elif la.op == "shuffle":  # the notebook writes concat+shuffle as one interleaving copy
            nbytes = la.h_out * la.w_out * 2 * _pad16(la.c_out // 2)
            rep.rows.append(Row(la.name, la.section, "shuffle", "cpu",
                                eng.cpu_op_us * 1e-3 + nbytes / (eng.cpu_strided_gbps * 1e6), bound="cpu",
                                detail=f"concat+shuffle {nbytes / 1024:.0f} KiB"))
        elif la.op == "upsample":
            nbytes = la.h_out * la.w_out * _pad16(la.c_out)
            rep.rows.append(Row(la.name, la.section, "upsample", "cpu",
                                eng.cpu_op_us * 1e-3 + _cpu_copy_ms(eng, nbytes, nbytes / 4), bound="cpu",
                                detail=f"np.repeat x2 -> {nbytes / 1024:.0f} KiB"))
    return rep


def estimate(layers: Sequence[Layer], engine: PublishedEngine, config: str = "") -> Report:
    """Per-row and per-frame time of ``layers`` on the published engine model."""
    if not isinstance(engine, PublishedEngine):
        raise TypeError(f"unsupported engine type {type(engine).__name__}")
    return _published_report(layers, engine, config)


def published_validation(eng: PublishedEngine = PUBLISHED_ENGINE) -> Dict[str, Dict[str, float]]:
    """Model vs published for configs a..e on the notebook graph: per-category ms, the notebook
    total and fps, and the end-to-end fps (with host work) next to the paper's fps."""
    out: Dict[str, Dict[str, float]] = {}
    for name in NAMED_CONFIGS:
        cfg = named_config(name, graph="notebook")
        rep = estimate(enumerate_layers(cfg), eng, cfg.name)
        cats = rep.by_category()
        pub = PUBLISHED_BREAKDOWN_MS[name]
        row: Dict[str, float] = {}
        for k, v in pub.items():
            row[f"pub_{k}"] = v
            row[f"model_{k}"] = cats.get(k, 0.0)
        row["pub_timed_ms"] = sum(pub.values())
        row["model_timed_ms"] = rep.timed_ms
        row["pub_timed_fps"] = 1000.0 / row["pub_timed_ms"]
        row["model_timed_fps"] = rep.timed_fps
        row["pub_fps"] = PUBLISHED_TABLE[name]["fps"]
        row["model_fps"] = rep.fps
        out[name] = row
    return out


def published_call_check(eng: PublishedEngine = PUBLISHED_ENGINE) -> List[Tuple[Tuple[int, int, int, int], float, float]]:
    """(shape, published mean us, model us) for every published per-call measurement."""
    res = []
    for d, ic, oc, s, _n, us in PUBLISHED_CALLS_US:
        cyc, _, _ = published_call_cycles(eng, d, d, ic, oc, s, pw=True, dw=True)
        res.append(((d, ic, oc, s), us, eng.call_overhead_us + cyc / eng.clock_mhz))
    return res


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python benchmarks/published_model.py",
                                 description="Model of the published FPGA'21 engine (fitted to its published timings).")
    ap.add_argument("--config", default="c", help="a..e (FPGA'21 configs)")
    ap.add_argument("--graph", default="notebook", choices=("deployed", "notebook"),
                    help="network graph (default: the graph the published notebook timed)")
    ap.add_argument("--clock", type=float, default=250.0, help="clock in MHz")
    ap.add_argument("--summary", action="store_true", help="totals only, no per-row table")
    args = ap.parse_args(argv)
    eng = replace(PUBLISHED_ENGINE, clock_mhz=args.clock)
    cfg = named_config(args.config, graph=args.graph)
    layers = enumerate_layers(cfg)
    rep = estimate(layers, eng, cfg.name)
    print(rep.to_markdown(per_row=not args.summary))
    tot = network_totals(layers)
    print(f"network: {tot.gmacs:.3f} GMACs, {tot.params / 1e6:.3f} M weights, {tot.params_mib:.3f} MiB packed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
