"""Compile an integer layer program into the accelerator's DRAM image.

Output (:class:`CompiledProgram`): a descriptor table (``n x DESC_WORDS`` uint32), a weight blob
(packed int4/int8 weights + per-channel bias/M/S tables) and an activation-buffer plan (where
every materialised tensor lives, byte offsets in the activation region).  One start of the
engine runs the whole table.

What the compiler does beyond a 1:1 translation (the hardware/software co-design):

- **Fusion.** ``pointwise 1x1 -> [offset 1x1 conv (kind off)] -> 3x3 depthwise`` becomes one
  ``DWBLOCK`` descriptor when the pointwise output (and the offset map) feed nothing else: the
  pointwise rows and the offsets never leave the chip.  A plain ``pointwise -> depthwise``
  (ShuffleNet branch) fuses the same way.
- **Upsample on write.** A nearest x2 upsample whose input is produced by a descriptor and
  used by nothing else is folded into that descriptor's write (each pixel written 2 x 2).
- **Channel slice / concat / shuffle cost nothing.** They are *views*: every tensor is a list
  of (buffer, channel) per logical channel.  A consumer reads its input as up to ``MAX_SEGS``
  segments (buffer, first channel, count) that the engine's load stage packs densely on chip;
  the reading order is free for convs (their weights are permuted to it) and sets the output
  channel order of per-channel ops (depthwise, max pool, copies), which the output view records.
  A view that needs more segments, or more source rows than the load stage holds, is first
  gathered into a fresh buffer by ``MOVE`` descriptors.
- **Memory layout.** Every buffer is NHWC in 128-bit words of 16 channels (``hls_src/README.md``
  "Memory layout"); every producer writes a fresh buffer of ``ceil(C/16)`` groups, so a row of
  a buffer is one burst.
- **Memory planning.** Buffers are placed first-fit over their lifetimes (descriptor indices),
  reusing memory of dead tensors, unless ``reuse=False`` (then every materialised intermediate
  can be read back after a run, for tests).

Refused with :class:`~codenet_pynq.program.ProgramError`: anything the hardware cannot run
(dilation beyond the line buffer, widths/channels beyond the on-chip maxima, accumulators wider
than ``ACC_BITS``, conv shapes the engine has no datapath for).

Weight packing (what ``hls_src/README.md`` documents): int4 two per byte, **low nibble first**;
int8 one per byte.  Dense / pointwise: 16 x 16 blocks ``[out group][reduction word][o][i]`` of the
``O x K`` matrix, ``K = k*k*C_in`` ordered ``(ky, kx, c_in)`` with ``c_in`` in the descriptor's
read order, zero padded (one block = 128 bytes int4, 256 bytes int8).  Depthwise: per group of 16
channels one record ``[tap][lane]`` padded to whole 16-byte words (80 bytes int4, 144 int8).
Offset conv: per group one 16-byte word of 16 lane weights.  Bias/M/S: 8 bytes per output channel
(int32 bias, uint32 ``M | S << 16``, little endian) for whole groups: padding channels get
``(0, 1, 1)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..intmath import accumulator_bound, bits_for, kind_range
from ..program import Layer, Program, ProgramError
from .params import HwParams, load_params

__all__ = ["CompiledProgram", "TensorPlacement", "DescriptorInfo", "compile_program", "pack_weights",
           "pack_depthwise", "pack_lane_weights", "pack_qparams"]


# =========================================================================== data types
@dataclass
class TensorPlacement:
    """Where a materialised tensor lives: element (y, x, c) at act + addr[c] + (y*W + x)*pix[c]."""

    name: str
    shape: Tuple[int, int, int]
    kind: str
    addr: np.ndarray  # int64 (C,)
    pix: np.ndarray  # int64 (C,)

    def chanmap(self) -> np.ndarray:
        """(C, 2) int64 [addr, pix] rows, the form the C testbench reads."""
        return np.stack([self.addr, self.pix], axis=1).astype("<i8")


@dataclass
class DescriptorInfo:
    """Human-readable summary of one descriptor (for reports and debugging)."""

    index: int
    op: str
    layers: List[str]
    in_shape: Tuple[int, int, int]
    out_shape: Tuple[int, int, int]
    flags: List[str]
    n_segments: int
    macs: int


@dataclass
class CompiledProgram:
    """A program compiled for one hardware configuration."""

    program: Program
    params: HwParams
    descriptors: np.ndarray  # uint32 (n, DESC_WORDS)
    weights: np.ndarray  # uint8 blob
    act_size: int
    input: TensorPlacement
    placements: Dict[str, TensorPlacement]
    outputs: Dict[str, str]
    info: List[DescriptorInfo]
    reuse: bool = True
    # offsets of the three regions in :meth:`dram_image`
    desc_offset: int = 0
    wgt_offset: int = 0
    act_offset: int = 0

    @property
    def n_layers(self) -> int:
        return int(self.descriptors.shape[0])

    @property
    def dram_size(self) -> int:
        return self.act_offset + self.act_size

    def new_activations(self) -> np.ndarray:
        """A zeroed activation region."""
        return np.zeros(self.act_size, np.uint8)

    def write_input(self, act: np.ndarray, image: np.ndarray) -> None:
        """Place a BGR uint8 H x W x 3 image into an activation region."""
        pl = self.input
        img = np.asarray(image)
        if img.dtype != np.uint8 or tuple(img.shape) != tuple(pl.shape):
            raise ValueError(f"the compiled program expects a uint8 image of shape {pl.shape}, got "
                             f"{img.dtype} {tuple(img.shape)}; letterbox the image to the model size first")
        _scatter(act, pl, img)

    def read_tensor(self, act: np.ndarray, name: str) -> np.ndarray:
        """Read a materialised tensor (H x W x C, int8 for s8 else uint8) from an activation region."""
        if name not in self.placements:
            raise KeyError(f"tensor {name!r} is not materialised in DRAM (fused on chip or folded into a write)")
        return _gather(act, self.placements[name])

    def read_outputs(self, act: np.ndarray) -> Dict[str, np.ndarray]:
        """role -> head output tensor."""
        return {role: self.read_tensor(act, name) for role, name in self.outputs.items()}

    def dram_image(self, image: Optional[np.ndarray] = None) -> np.ndarray:
        """One DRAM image: descriptors at desc_offset, weights at wgt_offset, activations at act_offset."""
        dram = np.zeros(self.dram_size, np.uint8)
        d = self.descriptors.astype("<u4").tobytes()
        dram[self.desc_offset:self.desc_offset + len(d)] = np.frombuffer(d, np.uint8)
        dram[self.wgt_offset:self.wgt_offset + self.weights.size] = self.weights
        if image is not None:
            self.write_input(dram[self.act_offset:], image)
        return dram

    def desc_bytes(self) -> np.ndarray:
        return np.frombuffer(self.descriptors.astype("<u4").tobytes(), np.uint8)

    def summary(self) -> str:
        lines = [f"{self.n_layers} descriptors, weights {self.weights.size} B, activations {self.act_size} B "
                 f"({'reused' if self.reuse else 'no reuse'}), hardware {self.params!r}"]
        for d in self.info:
            lines.append(f"  {d.index:3d} {d.op:8s} {'x'.join(map(str, d.in_shape)):>14s} -> "
                         f"{'x'.join(map(str, d.out_shape)):<14s} segs {d.n_segments} "
                         f"{','.join(d.flags):24s} {'+'.join(d.layers)}")
        return "\n".join(lines)


def _storage(kind: str) -> np.dtype:
    return np.dtype(np.int8) if kind == "s8" else np.dtype(np.uint8)


def _index(pl: TensorPlacement) -> np.ndarray:
    h, w, c = pl.shape
    pix = np.arange(h * w, dtype=np.int64).reshape(h, w, 1)
    return pl.addr.reshape(1, 1, c) + pix * pl.pix.reshape(1, 1, c)


def _gather(act: np.ndarray, pl: TensorPlacement) -> np.ndarray:
    return np.asarray(act)[_index(pl)].view(_storage(pl.kind)).copy()


def _scatter(act: np.ndarray, pl: TensorPlacement, values: np.ndarray) -> None:
    act[_index(pl)] = np.asarray(values).view(np.uint8) if values.dtype != np.uint8 else values


# =========================================================================== weights
def _pack(values: np.ndarray, bits: int) -> np.ndarray:
    """Pack int values (already in tile order) into bytes: int8 as is, int4 low nibble first."""
    v = np.asarray(values, np.int64).ravel()
    if bits == 8:
        return (v & 0xFF).astype(np.uint8)
    if v.size % 2:
        v = np.concatenate([v, [0]])
    nib = (v & 0xF).astype(np.uint8)
    return (nib[0::2] | (nib[1::2] << 4)).astype(np.uint8)


def pack_weights(matrix: np.ndarray, bits: int, pa: int, pe: int) -> np.ndarray:
    """Pack an O x K weight matrix into PA x PE tiles ``[co_tile][k_tile][o][i]`` (zero padded)."""
    o, k = matrix.shape
    n_ct, n_kt = -(-o // pe), -(-k // pa)
    m = np.zeros((n_ct * pe, n_kt * pa), np.int64)
    m[:o, :k] = matrix
    tiles = m.reshape(n_ct, pe, n_kt, pa).transpose(0, 2, 1, 3)
    return _pack(tiles, bits)


def pack_depthwise(w9: np.ndarray, bits: int, lanes: int = 16) -> np.ndarray:
    """Pack C x 9 depthwise weights as one ``[tap][lane]`` record per group, padded to 16-byte words."""
    c = w9.shape[0]
    n_t = -(-c // lanes)
    m = np.zeros((n_t * lanes, 9), np.int64)
    m[:c] = w9
    rec_bytes = -(-9 * lanes * bits // 128) * 16
    out = np.zeros((n_t, rec_bytes), np.uint8)
    for g in range(n_t):
        b = _pack(m[g * lanes:(g + 1) * lanes].T, bits)
        out[g, :b.size] = b
    return out.ravel()


def pack_lane_weights(w: np.ndarray, bits: int, lanes: int = 16) -> np.ndarray:
    """Pack a length-C weight vector (offset conv) as one 16-byte word per group of 16 lanes."""
    c = w.shape[0]
    n_t = -(-c // lanes)
    v = np.zeros(n_t * lanes, np.int64)
    v[:c] = w
    out = np.zeros((n_t, 16), np.uint8)
    for g in range(n_t):
        b = _pack(v[g * lanes:(g + 1) * lanes], bits)
        out[g, :b.size] = b
    return out.ravel()


def pack_qparams(bias: np.ndarray, m: np.ndarray, s: np.ndarray, lanes: int = 16) -> np.ndarray:
    """Bias/M/S records for whole groups of ``lanes`` channels; padding channels get (0, 1, 1)."""
    n = len(bias)
    total = -(-n // lanes) * lanes
    b = np.zeros(total, np.int64)
    mm = np.ones(total, np.int64)
    ss = np.ones(total, np.int64)
    b[:n], mm[:n], ss[:n] = bias, m, s
    ms = mm | (ss << 16)
    rec = np.stack([b & 0xFFFFFFFF, ms], axis=1).astype("<u4")
    return np.frombuffer(rec.tobytes(), np.uint8)


class _Blob:
    def __init__(self, align: int) -> None:
        self.parts: List[np.ndarray] = []
        self.size = 0
        self.align = align

    def add(self, data: np.ndarray) -> int:
        pad = (-self.size) % self.align
        if pad:
            self.parts.append(np.zeros(pad, np.uint8))
            self.size += pad
        off = self.size
        self.parts.append(np.asarray(data, np.uint8))
        self.size += data.size
        return off

    def bytes(self) -> np.ndarray:
        pad = (-self.size) % self.align
        parts = self.parts + ([np.zeros(pad, np.uint8)] if pad else [])
        return np.concatenate(parts) if parts else np.zeros(0, np.uint8)


# =========================================================================== views and buffers
@dataclass
class _Buffer:
    id: int
    h: int
    w: int
    c: int  # channels stored (lanes past c in the last group are zero)
    name: str
    first: int = -1  # first descriptor writing it (-1: before the run, e.g. the input)
    last: int = -1  # last descriptor reading it (n: alive at the end, e.g. outputs)
    offset: int = -1

    @property
    def groups(self) -> int:
        return -(-self.c // 16)

    @property
    def pix_bytes(self) -> int:
        return 16 * self.groups

    @property
    def size(self) -> int:
        return self.h * self.w * self.pix_bytes


@dataclass
class _View:
    """A logical tensor: logical channel c lives in buffer buf[c], channel ch[c]."""

    shape: Tuple[int, int, int]
    kind: str
    buf: np.ndarray
    ch: np.ndarray


@dataclass
class _Seg:
    buf: int
    ch0: int
    count: int
    logical: np.ndarray  # logical channels of the elements (read order)


@dataclass
class _Stage:
    w_addr: int = 0
    q_addr: int = 0
    lo: int = 0
    hi: int = 0
    wbits: int = 4


@dataclass
class _Desc:
    op: int
    kind_name: str
    layers: List[str]
    flags: int
    in_hw: Tuple[int, int]
    out_hw: Tuple[int, int]
    cin: int
    cout: int
    segs: List[_Seg]
    out_buf: int
    k: int = 1
    stride: int = 1
    pad: int = 0
    dil: int = 1
    max_off: int = 0
    off_src: Optional[Tuple[int, int]] = None  # (buffer, channel) of a DRAM offset map
    main: _Stage = field(default_factory=_Stage)
    pw: _Stage = field(default_factory=_Stage)
    of: _Stage = field(default_factory=_Stage)
    macs: int = 0


def _segments(buf: np.ndarray, ch: np.ndarray) -> List[_Seg]:
    """Cover the (buf, ch) items by runs of consecutive channels of one buffer, in (buffer,
    channel) order; ``logical`` lists the view positions read by each run."""
    n = len(buf)
    order = np.lexsort((np.arange(n), ch, buf))
    segs: List[_Seg] = []
    i = 0
    while i < n:
        a = order[i]
        j = i + 1
        while (j < n and buf[order[j]] == buf[a] and ch[order[j]] == ch[order[j - 1]] + 1
               and j - i < 65535):
            j += 1
        members = order[i:j]
        segs.append(_Seg(int(buf[a]), int(ch[a]), len(members), members.astype(np.int64)))
        i = j
    return segs


# =========================================================================== compiler
class _Compiler:
    def __init__(self, program: Program, params: HwParams, reuse: bool) -> None:
        self.prog = program
        self.p = params
        self.reuse = reuse
        self.buffers: List[_Buffer] = []
        self.views: Dict[str, _View] = {}
        self.descs: List[_Desc] = []
        self.blob = _Blob(params.MEM_ALIGN)
        self.gathered: Dict[Tuple[bytes, bytes], _View] = {}

    # ------------------------------------------------------------------ helpers
    def fail(self, layer: Optional[Layer], problem: str, hint: str = "") -> ProgramError:
        where = f"layer {layer.name or layer.op!r}: " if layer is not None else ""
        return ProgramError(f"{where}{problem} on this accelerator ({self.p.source}){'; ' + hint if hint else ''}")

    def new_buffer(self, h: int, w: int, c: int, name: str) -> int:
        b = _Buffer(len(self.buffers), h, w, c, name)
        self.buffers.append(b)
        return b.id

    def identity_view(self, buf: int, shape: Tuple[int, int, int], kind: str) -> _View:
        c = shape[2]
        return _View(tuple(shape), kind, np.full(c, buf, np.int64), np.arange(c, dtype=np.int64))

    def check_size(self, layer: Optional[Layer], h: int, w: int, c: int, what: str) -> None:
        if h > self.p.MAX_W or w > self.p.MAX_W:
            raise self.fail(layer, f"{what} of {h}x{w} pixels exceeds the maximum {self.p.MAX_W} (CN_MAX_W)")
        if c > self.p.MAX_C:
            raise self.fail(layer, f"{what} has {c} channels, beyond the maximum {self.p.MAX_C} (CN_MAX_C)",
                            "split the layer or rebuild the engine with a larger CN_MAX_C")

    def check_acc(self, layer: Layer, in_kind: str) -> None:
        bound = accumulator_bound(layer.arrays["weight"], in_kind, layer.arrays["bias"], self.prog.max_offset)
        if bits_for(bound) > self.p.ACC_BITS:
            raise self.fail(layer, f"accumulator bound {bound} needs {bits_for(bound)} bits, more than the "
                                   f"{self.p.ACC_BITS}-bit hardware accumulator (CN_ACC_BITS)",
                            "retrain/requantise with smaller weights or bias, or widen CN_ACC_BITS")

    def clamp(self, layer: Layer) -> Tuple[int, int]:
        out = self.prog.tensors[layer.output]
        klo, khi = kind_range(out.kind, self.prog.max_offset)
        return int(layer.attrs.get("lo", klo)), int(layer.attrs.get("hi", khi))

    def stage(self, layer: Layer, packed: np.ndarray, qperm: Optional[np.ndarray] = None) -> _Stage:
        a = layer.arrays
        perm = np.arange(a["bias"].shape[0]) if qperm is None else qperm
        w_addr = self.blob.add(packed)
        q_addr = self.blob.add(pack_qparams(a["bias"][perm], a["M"][perm], a["S"][perm], self.p.LANES))
        lo, hi = self.clamp(layer)
        return _Stage(w_addr, q_addr, lo, hi, int(layer.attrs.get("weight_bits", 4)))

    def dense_stage(self, layer: Layer, perm: np.ndarray) -> _Stage:
        w = layer.arrays["weight"].astype(np.int64)[..., perm]  # OHWI with I in read order
        bits = int(layer.attrs.get("weight_bits", 4))
        return self.stage(layer, pack_weights(w.reshape(w.shape[0], -1), bits, self.p.PA, self.p.PE))

    def offset_stage(self, layer: Layer) -> _Stage:
        w = layer.arrays["weight"].astype(np.int64).reshape(-1)
        bits = int(layer.attrs.get("weight_bits", 4))
        return self.stage(layer, pack_lane_weights(w, bits, self.p.LANES))

    def dw_stage(self, layer: Layer, perm: np.ndarray) -> _Stage:
        w = layer.arrays["weight"].astype(np.int64)[perm, :, :, 0].reshape(len(perm), 9)
        bits = int(layer.attrs.get("weight_bits", 4))
        return self.stage(layer, pack_depthwise(w, bits, self.p.LANES), qperm=perm)

    # ------------------------------------------------------------------ reading a view
    def src_words(self, segs: Sequence[_Seg], w: int) -> int:
        """Words of one input row over the distinct source buffers (the load stage's row store)."""
        total, prev = 0, None
        for sg in segs:
            if sg.buf != prev:
                total += w * self.buffers[sg.buf].groups
                prev = sg.buf
        return total

    def readable(self, segs: Sequence[_Seg], w: int) -> bool:
        return len(segs) <= self.p.MAX_SEGS and self.src_words(segs, w) <= self.p.SRC_WORDS

    def read_segments(self, layer: Optional[Layer], view: _View) -> List[_Seg]:
        """Segments of a view for one descriptor; gathers the view into fresh buffers first (MOVE
        descriptors) when it needs more segments or source rows than the load stage holds."""
        segs = _segments(view.buf, view.ch)
        if self.readable(segs, view.shape[1]):
            return segs
        key = (view.buf.tobytes(), view.ch.tobytes())
        if key not in self.gathered:  # one copy serves every consumer of the same view
            self.gathered[key] = self.gather(view, f"{layer.name if layer else 'tensor'}.gather")
        g = self.gathered[key]
        return _segments(g.buf, g.ch)

    def gather(self, view: _View, name: str, upsample: bool = False) -> _View:
        """Copy a view into fresh buffers with MOVE descriptors, each reading what the load stage
        holds; channels keep the view's read order."""
        h, w, c = view.shape
        oh, ow = (2 * h, 2 * w) if upsample else (h, w)
        segs = _segments(view.buf, view.ch)
        bufs = np.zeros(c, np.int64)
        chans = np.zeros(c, np.int64)
        i = 0
        while i < len(segs):
            part = [segs[i]]
            j = i + 1
            while j < len(segs) and self.readable(segs[i:j + 1], w):
                part.append(segs[j])
                j += 1
            if not self.readable(part, w):
                raise self.fail(None, f"tensor {name!r} ({w} pixels wide) has a channel run whose rows do not fit "
                                      f"the load stage's row store (CN_SRC_WORDS {self.p.SRC_WORDS})")
            n = sum(sg.count for sg in part)
            out = self.new_buffer(oh, ow, n, name)
            self.emit(_Desc(self.p.OP_MOVE, "move", [name], self.p.FLAG_UPSAMPLE if upsample else 0, (h, w), (h, w),
                            n, n, part, out, macs=0), in_kind=view.kind)
            logical = np.concatenate([sg.logical for sg in part])
            bufs[logical] = out
            chans[logical] = np.arange(n)
            i = j
        return _View((oh, ow, c), view.kind, bufs, chans)

    # ------------------------------------------------------------------ emitting
    def emit(self, d: _Desc, in_kind: str) -> int:
        if in_kind == "s8":
            d.flags |= self.p.FLAG_IN_SIGNED
        idx = len(self.descs)
        self.descs.append(d)
        for s in d.segs:
            self.use(s.buf, idx)
        if d.off_src is not None:
            self.use(d.off_src[0], idx)
        b = self.buffers[d.out_buf]
        if b.first < 0:
            b.first = idx
        b.last = max(b.last, idx)
        return idx

    def use(self, buf: int, idx: int) -> None:
        b = self.buffers[buf]
        b.last = max(b.last, idx)

    def out_buffer(self, name: str, shape: Tuple[int, int, int], kind: str, layer: Optional[Layer],
                   order: Optional[np.ndarray] = None) -> int:
        """A fresh output buffer; ``order[j]`` = logical channel stored at physical channel j
        (per-channel ops store their read order), identity by default."""
        h, w, c = shape
        self.check_size(layer, h, w, c, f"output {name!r}")
        b = self.new_buffer(h, w, c, name)
        if order is None:
            self.views[name] = self.identity_view(b, shape, kind)
        else:
            ch = np.empty(c, np.int64)
            ch[order] = np.arange(c)
            self.views[name] = _View(tuple(shape), kind, np.full(c, b, np.int64), ch)
        return b

    # ------------------------------------------------------------------ plan
    def run(self) -> CompiledProgram:
        prog, p = self.prog, self.p
        prog.validate()
        if prog.max_offset > p.MAX_OFFSET:
            raise self.fail(None, f"program max_offset {prog.max_offset} (dilation {1 + prog.max_offset}) is beyond "
                                  f"the line buffer (CN_MAX_OFFSET {p.MAX_OFFSET}, {p.LB_ROWS} rows)",
                            "retrain with a smaller offset bound or rebuild the engine with a larger CN_MAX_OFFSET")
        info = prog.tensors[prog.input]
        self.check_size(None, *info.shape, what=f"input {prog.input!r}")
        ib = self.new_buffer(*info.shape, name=prog.input)
        self.views[prog.input] = self.identity_view(ib, info.shape, info.kind)

        consumers: Dict[str, List[int]] = {}
        for i, layer in enumerate(prog.layers):
            for t in layer.inputs + ([layer.offset] if layer.offset else []):
                consumers.setdefault(t, []).append(i)
        outputs = set(prog.outputs.values())

        # ---- fusion plan: dw layer index -> (pw index, offset index or None)
        fused: Dict[int, Tuple[int, Optional[int]]] = {}
        skip: set = set()
        producer = {layer.output: i for i, layer in enumerate(prog.layers)}
        for i, layer in enumerate(prog.layers):
            if not self.is_depthwise(layer):
                continue
            src = layer.inputs[0]
            j = producer.get(src)
            if j is None or not self.is_pointwise(prog.layers[j]) or src in outputs:
                continue
            off_i = None
            if layer.offset is not None:
                off_i = producer.get(layer.offset)
                if off_i is None or layer.offset in outputs or consumers.get(layer.offset) != [i]:
                    continue
                ol = prog.layers[off_i]
                if not (self.is_pointwise(ol) and ol.inputs[0] == src and ol.arrays["weight"].shape[0] == 1):
                    continue
                if sorted(consumers.get(src, [])) != sorted([off_i, i]):
                    continue
            elif consumers.get(src) != [i]:
                continue
            if not self.block_fits(prog.layers[j], layer):
                continue
            fused[i] = (j, off_i)
            skip.add(j)
            if off_i is not None:
                skip.add(off_i)

        # ---- upsample folding: producer layer index -> upsample layer index
        folds: Dict[int, int] = {}
        for i, layer in enumerate(prog.layers):
            if layer.op != "upsample":
                continue
            src = layer.inputs[0]
            j = producer.get(src)
            if j is None or src in outputs or consumers.get(src) != [i]:
                continue
            if prog.layers[j].op in ("conv", "maxpool") and j not in skip and j not in folds:
                folds[j] = i
        folded_ups = set(folds.values())

        # ---- walk the program
        for i, layer in enumerate(prog.layers):
            if i in skip or i in folded_ups:
                continue
            up = i in folds
            out_name = prog.layers[folds[i]].output if up else layer.output
            if layer.op == "conv":
                if i in fused:
                    j, off_i = fused[i]
                    self.emit_block(prog.layers[j], prog.layers[off_i] if off_i is not None else None, layer,
                                    out_name, up)
                else:
                    self.emit_conv(layer, out_name, up)
            elif layer.op == "maxpool":
                self.emit_maxpool(layer, out_name, up)
            elif layer.op == "upsample":
                v = self.views[layer.inputs[0]]
                self.check_size(layer, 2 * v.shape[0], 2 * v.shape[1], v.shape[2], "upsampled tensor")
                self.views[layer.output] = self.gather(v, layer.output, upsample=True)
            elif layer.op == "slice":
                v = self.views[layer.inputs[0]]
                c0, c1 = int(layer.attrs["c0"]), int(layer.attrs["c1"])
                t = prog.tensors[layer.output]
                self.views[layer.output] = _View(t.shape, t.kind, v.buf[c0:c1].copy(), v.ch[c0:c1].copy())
            elif layer.op == "concat":
                vs = [self.views[n] for n in layer.inputs]
                t = prog.tensors[layer.output]
                self.views[layer.output] = _View(t.shape, t.kind, np.concatenate([v.buf for v in vs]),
                                                 np.concatenate([v.ch for v in vs]))
            elif layer.op == "shuffle":
                v = self.views[layer.inputs[0]]
                g = int(layer.attrs["groups"])
                c = v.shape[2]
                if g < 1 or c % g:
                    raise self.fail(layer, f"shuffle with {g} groups does not divide {c} channels")
                idx = np.arange(c).reshape(g, c // g).T.ravel()
                t = prog.tensors[layer.output]
                self.views[layer.output] = _View(t.shape, t.kind, v.buf[idx], v.ch[idx])
            else:  # pragma: no cover - validate() rejects unknown ops
                raise self.fail(layer, f"op {layer.op!r} is not supported")

        for _role, name in prog.outputs.items():
            v = self.views[name]
            for b in set(v.buf.tolist()):
                self.buffers[b].last = len(self.descs)
        return self.finish()

    # ------------------------------------------------------------------ layer classes
    @staticmethod
    def is_pointwise(layer: Layer) -> bool:
        a = layer.attrs
        return (layer.op == "conv" and int(a["k"]) == 1 and int(a.get("groups", 1)) == 1 and
                int(a.get("stride", 1)) == 1 and int(a.get("pad", 0)) == 0 and layer.offset is None)

    def is_depthwise(self, layer: Layer) -> bool:
        if layer.op != "conv" or int(layer.attrs["k"]) != 3:
            return False
        cin = self.prog.tensors[layer.inputs[0]].shape[2]
        w = layer.arrays["weight"]
        return cin > 1 and int(layer.attrs.get("groups", 1)) == cin and w.shape[0] == cin and w.shape[3] == 1

    def block_fits(self, pw: Layer, dw: Layer) -> bool:
        """The fused block holds all mid channels of a row in the line buffer and all pointwise
        weights in the weight buffer."""
        h, w, cin = self.prog.tensors[pw.inputs[0]].shape
        cmid = pw.arrays["weight"].shape[0]
        p = self.p
        n_in, n_mid = -(-cin // p.LANES), -(-cmid // p.LANES)
        halves = 2 if int(pw.attrs.get("weight_bits", 4)) == 8 else 1
        return (w * n_mid <= p.LB_WORDS and n_mid * n_in * halves <= p.WBUF_BLOCKS and n_in <= p.MAX_KT
                and cin <= p.MAX_C and cmid <= p.MAX_C and h <= p.MAX_W and w <= p.MAX_W)

    def dw_geometry(self, layer: Layer) -> Tuple[int, int, int, int]:
        """(stride, pad, dil, max_off) of a depthwise layer, checked against the line buffer."""
        a = layer.attrs
        p = self.p
        if layer.offset is not None:
            h, w, c = self.prog.tensors[layer.inputs[0]].shape
            if tuple(self.prog.tensors[layer.output].shape) != (h, w, c):
                raise self.fail(layer, "a per-pixel-dilation conv must keep the input size")
            return 1, 1, 1, int(self.prog.max_offset)
        stride, dil = int(a.get("stride", 1)), int(a.get("dilation", 1))
        pad = int(a.get("pad", 3 // 2))
        if 2 * dil + 1 > p.LB_ROWS:
            raise self.fail(layer, f"dilation {dil} is beyond the {p.LB_ROWS}-row line buffer "
                                   f"(at most {(p.LB_ROWS - 1) // 2})")
        if pad > 2 * dil or stride not in (1, 2):
            raise self.fail(layer, f"3x3 conv with stride {stride}, pad {pad}, dilation {dil} is not supported "
                                   "(stride 1 or 2, pad <= 2 * dilation)")
        return stride, pad, dil, 0

    # ------------------------------------------------------------------ emitters
    def emit_conv(self, layer: Layer, out_name: str, up: bool) -> None:
        prog, p = self.prog, self.p
        a = layer.attrs
        src = prog.tensors[layer.inputs[0]]
        h, w, cin = src.shape
        oh, ow, cout = prog.tensors[layer.output].shape
        k, groups = int(a["k"]), int(a.get("groups", 1))
        self.check_size(layer, h, w, cin, "input")
        self.check_size(layer, oh, ow, cout, "output")
        self.check_acc(layer, src.kind)
        view = self.views[layer.inputs[0]]
        out_shape = prog.tensors[out_name].shape
        out_kind = prog.tensors[layer.output].kind
        macs = oh * ow * cout * int(np.prod(layer.arrays["weight"].shape[1:]))
        if self.is_depthwise(layer):
            stride, pad, dil, max_off = self.dw_geometry(layer)
            if w > p.LB_WORDS:
                raise self.fail(layer, f"width {w} exceeds a line-buffer row ({p.LB_WORDS} words, CN_LB_WORDS)")
            segs = self.read_segments(layer, view)
            perm = np.concatenate([s.logical for s in segs])
            off_src = None
            flags = 0
            if layer.offset is not None:
                ov = self.views[layer.offset]
                if ov.shape[2] != 1:
                    raise self.fail(layer, "the offset map must have one channel")
                off_src = (int(ov.buf[0]), int(ov.ch[0]))
                if w * self.buffers[off_src[0]].groups > p.SRC_WORDS:
                    raise self.fail(layer, "the offset map's rows do not fit the load stage's row store")
                flags |= p.FLAG_OFF_DRAM
            ob = self.out_buffer(out_name, out_shape, out_kind, layer, order=perm)
            d = _Desc(p.OP_DWBLOCK, "dw", [layer.name or layer.output], flags | (p.FLAG_UPSAMPLE if up else 0),
                      (h, w), (oh, ow), cin, cout, segs, ob, k=3, stride=stride, pad=pad, dil=dil, max_off=max_off,
                      off_src=off_src, macs=macs)
            d.main = self.dw_stage(layer, perm)
            self.emit(d, src.kind)
            return
        if groups != 1:
            raise self.fail(layer, f"grouped conv (groups {groups} of {cin} channels, weight "
                                   f"{tuple(layer.arrays['weight'].shape)}) has no datapath",
                            "use groups 1 or a depthwise conv with one output per channel")
        if layer.offset is not None:
            raise self.fail(layer, "per-pixel dilation needs a 3x3 depthwise conv")
        stride, pad, dil = int(a.get("stride", 1)), int(a.get("pad", k // 2)), int(a.get("dilation", 1))
        if k not in (1, 3) or stride not in (1, 2, 4):
            raise self.fail(layer, f"dense conv k={k} stride={stride} has no datapath (k 1 or 3, stride 1, 2 or 4)")
        n_in = -(-cin // p.LANES)
        if k == 3:
            if dil != 1:
                raise self.fail(layer, f"dense 3x3 conv with dilation {dil} has no datapath (dilation 1)")
            if pad > 2:
                raise self.fail(layer, f"pad {pad} > 2 is not supported for a dense 3x3 conv")
            if w * n_in > p.IM2COL_WORDS:
                raise self.fail(layer, f"an input row of {w} pixels x {n_in} words exceeds the im2col row "
                                       f"({p.IM2COL_WORDS} words, CN_IM2COL_WORDS)")
        elif pad != 0:
            raise self.fail(layer, f"a 1x1 conv with pad {pad} is not supported")
        kk = k * k * cin
        if -(-kk // p.LANES) > p.MAX_KT:
            raise self.fail(layer, f"reduction length {kk} exceeds {p.MAX_KT * p.LANES} (CN_MAX_KT)")
        segs = self.read_segments(layer, view)
        perm = np.concatenate([s.logical for s in segs])
        ob = self.out_buffer(out_name, out_shape, out_kind, layer)
        d = _Desc(p.OP_DENSE, f"conv{k}x{k}", [layer.name or layer.output], p.FLAG_UPSAMPLE if up else 0, (h, w),
                  (oh, ow), cin, cout, segs, ob, k=k, stride=stride, pad=pad, dil=dil, macs=macs)
        d.main = self.dense_stage(layer, perm)
        self.emit(d, src.kind)

    def emit_block(self, pw: Layer, off: Optional[Layer], dw: Layer, out_name: str, up: bool) -> None:
        prog, p = self.prog, self.p
        src = prog.tensors[pw.inputs[0]]
        h, w, cin = src.shape
        mid = prog.tensors[pw.output]
        cmid = mid.shape[2]
        oh, ow, cout = prog.tensors[dw.output].shape
        self.check_acc(pw, src.kind)
        self.check_acc(dw, mid.kind)
        stride, pad, dil, max_off = self.dw_geometry(dw)
        flags = p.FLAG_HAS_PW | (p.FLAG_UPSAMPLE if up else 0)
        if off is not None:
            self.check_acc(off, mid.kind)
            lo, hi = self.clamp(off)
            if lo < 0 or hi > p.MAX_OFFSET:
                raise self.fail(off, f"offset clamp [{lo}, {hi}] is outside [0, {p.MAX_OFFSET}] (CN_MAX_OFFSET)")
            max_off = hi
            flags |= p.FLAG_OFF_ONCHIP
        segs = self.read_segments(pw, self.views[pw.inputs[0]])
        perm = np.concatenate([s.logical for s in segs])
        ob = self.out_buffer(out_name, prog.tensors[out_name].shape, prog.tensors[dw.output].kind, dw)
        names = [x.name or x.output for x in (pw, off, dw) if x is not None]
        macs = h * w * cmid * cin + oh * ow * cout * 9 + (h * w * cmid if off is not None else 0)
        d = _Desc(p.OP_DWBLOCK, "block", names, flags, (h, w), (oh, ow), cin, cmid, segs, ob, k=3,
                  stride=stride, pad=pad, dil=dil, max_off=max_off, macs=macs)
        d.pw = self.dense_stage(pw, perm)
        if off is not None:
            d.of = self.offset_stage(off)
        d.main = self.dw_stage(dw, np.arange(cmid))
        self.emit(d, src.kind)

    def emit_maxpool(self, layer: Layer, out_name: str, up: bool) -> None:
        prog, p = self.prog, self.p
        src = prog.tensors[layer.inputs[0]]
        h, w, c = src.shape
        oh, ow, _ = prog.tensors[layer.output].shape
        self.check_size(layer, h, w, c, "input")
        if w > p.LB_WORDS:
            raise self.fail(layer, f"width {w} exceeds a line-buffer row ({p.LB_WORDS} words, CN_LB_WORDS)")
        segs = self.read_segments(layer, self.views[layer.inputs[0]])
        perm = np.concatenate([s.logical for s in segs])
        ob = self.out_buffer(out_name, prog.tensors[out_name].shape, src.kind, layer, order=perm)
        d = _Desc(p.OP_MAXPOOL, "maxpool", [layer.name or layer.output], p.FLAG_UPSAMPLE if up else 0, (h, w),
                  (oh, ow), c, c, segs, ob, k=3, stride=2, pad=1)
        self.emit(d, src.kind)

    # ------------------------------------------------------------------ finish
    def allocate(self) -> int:
        align = self.p.MEM_ALIGN
        placed: List[_Buffer] = []
        top = 0
        n = len(self.descs)
        for b in sorted(self.buffers, key=lambda b: (b.first, b.id)):
            last = b.last if b.last >= 0 else b.first
            if not self.reuse:
                off = top
            else:
                busy = sorted((q.offset, q.offset + q.size) for q in placed
                              if not (q.last < b.first or last < q.first))
                off = 0
                for s, e in busy:
                    if off + b.size <= s:
                        break
                    off = max(off, -(-e // align) * align)
            b.offset = off
            b.last = last if last >= 0 else n
            placed.append(b)
            top = max(top, -(-(off + b.size) // align) * align)
        return max(top, align)

    def encode(self, d: _Desc) -> np.ndarray:
        p = self.p
        w = np.zeros(p.DESC_WORDS, np.uint64)
        w[p.D_HEADER] = (p.DESC_MAGIC << 16) | (p.DESC_VERSION << 8) | d.op
        w[p.D_FLAGS] = d.flags
        w[p.D_IN_HW] = d.in_hw[0] | (d.in_hw[1] << 16)
        w[p.D_OUT_HW] = d.out_hw[0] | (d.out_hw[1] << 16)
        w[p.D_CH] = d.cin | (d.cout << 16)
        w[p.D_GEOM] = d.k | (d.stride << 4) | (d.pad << 8) | (d.dil << 16) | (d.max_off << 24)
        w[p.D_NSEG] = len(d.segs)
        w[p.D_OUT_ADDR] = self.buffers[d.out_buf].offset
        if d.off_src is not None:
            b = self.buffers[d.off_src[0]]
            w[p.D_OFF_ADDR] = b.offset
            w[p.D_OFF_CH] = d.off_src[1] | (b.groups << 16)
        for base, st in ((p.D_W_ADDR, d.main), (p.D_PW_W_ADDR, d.pw), (p.D_OF_W_ADDR, d.of)):
            w[base] = st.w_addr
            w[base + 1] = st.q_addr
            w[base + 2] = (st.lo & 0xFFFF) | ((st.hi & 0xFFFF) << 16)
            w[base + 3] = st.wbits
        for i, s in enumerate(d.segs):
            b = self.buffers[s.buf]
            o = p.D_SEG_BASE + i * p.D_SEG_WORDS
            w[o] = b.offset
            w[o + 1] = b.groups
            w[o + 2] = s.ch0
            w[o + 3] = s.count
        if np.any(w >= (1 << 32)):
            raise ProgramError(f"descriptor field overflow in {'+'.join(d.layers)}")
        return w.astype(np.uint32)

    def placement(self, name: str, v: _View) -> TensorPlacement:
        addr = np.array([self.buffers[b].offset + c for b, c in zip(v.buf.tolist(), v.ch.tolist())], np.int64)
        pix = np.array([self.buffers[b].pix_bytes for b in v.buf.tolist()], np.int64)
        return TensorPlacement(name, tuple(v.shape), v.kind, addr, pix)

    def finish(self) -> CompiledProgram:
        p = self.p
        if len(self.descs) > p.MAX_LAYERS:
            raise self.fail(None, f"{len(self.descs)} descriptors exceed CN_MAX_LAYERS {p.MAX_LAYERS}")
        act_size = self.allocate()
        table = np.stack([self.encode(d) for d in self.descs]) if self.descs else np.zeros((0, p.DESC_WORDS), np.uint32)
        weights = self.blob.bytes()
        if weights.size == 0:
            weights = np.zeros(p.MEM_ALIGN, np.uint8)
        opname = {p.OP_DENSE: "dense", p.OP_DWBLOCK: "dwblock", p.OP_MAXPOOL: "maxpool", p.OP_MOVE: "move"}
        flagnames = [(p.FLAG_IN_SIGNED, "s8in"), (p.FLAG_UPSAMPLE, "up2"), (p.FLAG_HAS_PW, "pw"),
                     (p.FLAG_OFF_ONCHIP, "off-chip"), (p.FLAG_OFF_DRAM, "off-dram")]
        info = [DescriptorInfo(i, f"{opname[d.op]}:{d.kind_name}" if d.op == p.OP_DENSE else opname[d.op], d.layers,
                               (d.in_hw[0], d.in_hw[1], d.cin), (d.out_hw[0], d.out_hw[1], d.cout),
                               [n for f, n in flagnames if d.flags & f], len(d.segs), d.macs)
                for i, d in enumerate(self.descs)]
        placements = {name: self.placement(name, v) for name, v in self.views.items()}
        desc_bytes = table.size * 4
        page = 4096
        wgt_off = -(-max(desc_bytes, 1) // page) * page
        act_off = wgt_off + -(-weights.size // page) * page
        return CompiledProgram(self.prog, p, table, weights, act_size, placements[self.prog.input], placements,
                               dict(self.prog.outputs), info, self.reuse, 0, wgt_off, act_off)


def compile_program(program: Program, params: Optional[HwParams] = None, reuse: bool = True,
                    verify: str = "auto") -> CompiledProgram:
    """Compile ``program`` for the accelerator described by ``params`` (default: the header).

    ``reuse=False`` gives every buffer its own memory so that all materialised intermediates
    can be read back after a run (tests, debugging).  Raises ProgramError for anything the
    hardware cannot run.  ``verify``: prove the table safe with the engine's own checker (the
    emulation library's ``codenet_check``: static limits, every DRAM extent, every M and S):
    ``"auto"`` when the library is built for these parameters, ``"always"`` (an absent library
    is an error), ``"never"``.
    """
    if verify not in ("auto", "always", "never"):
        raise ValueError(f"verify must be 'auto', 'always' or 'never', got {verify!r}")
    cp = _Compiler(program, params if params is not None else load_params(), reuse).run()
    if verify != "never":
        _verify(cp, required=verify == "always")
    return cp


def _verify(cp: CompiledProgram, required: bool) -> None:
    """Run the engine's checker on a compiled table (one checker for engine, library and compiler)."""
    from ..errors import BackendError
    from .emulib import load_library, status_message

    try:
        lib = load_library()
    except BackendError:
        if required:
            raise
        return
    if lib.params.fingerprint() != cp.params.fingerprint():
        if required:
            raise ProgramError(f"the emulation library ({lib.path}) was built for other parameters than "
                               f"{cp.params.source}; cannot verify the descriptor table")
        return
    status = lib.check(np.ascontiguousarray(cp.desc_bytes()), cp.n_layers, cp.weights, cp.act_size)
    if status:
        raise ProgramError(f"the compiled descriptor table fails the engine's checker: {status_message(status)}; "
                           "this is a compiler bug, please report it with the model")


def macs_per_descriptor(compiled: CompiledProgram) -> Sequence[int]:
    return [d.macs for d in compiled.info]
