"""The accelerator compiler (codenet_pynq.accel): parameters, packing, fusion, refusals.

Pure Python: none of these tests needs the C++ engine (tests/test_hls_csim.py runs it).
"""

from __future__ import annotations

import numpy as np
import pytest

from codenet_pynq.accel.compile import (
    compile_program,
    pack_depthwise,
    pack_lane_weights,
    pack_qparams,
    pack_weights,
)
from codenet_pynq.accel.params import HwParams, ParamsError, find_params_header, load_params, parse_params
from codenet_pynq.program import ProgramError
from codenet_pynq.synthetic import ProgramBuilder, codenet_like_program, random_program

P = load_params()


def small_codenet(seed: int = 0, size: int = 64):
    rng = np.random.default_rng(seed)
    return codenet_like_program(rng, input_size=size, stage_channels=(8, 16, 32, 64, 96), decoder=(32, 16, 16),
                                head=16, num_classes=3, stage_repeats=(2, 3, 2))


# --------------------------------------------------------------------------- parameters
def test_params_come_from_the_header():
    text = find_params_header().read_text()
    assert f"#define CN_PA {P.PA}" in text
    assert P.LB_ROWS == 2 * (P.MAX_OFFSET + 1) + 1
    assert P.D_SEG_BASE + P.MAX_SEGS * P.D_SEG_WORDS <= P.DESC_WORDS
    assert P["PE"] == P.PE and "MAX_C" in P and len(P) > 40
    with pytest.raises(AttributeError):
        _ = P.NOT_A_PARAMETER


def test_parse_params_text_and_missing_fields():
    base = find_params_header().read_text()
    p = parse_params(base.replace("#define CN_PA 16 ", "#define CN_PA (32) "), "edited")
    assert p.PA == 32 and p.PE == P.PE
    with pytest.raises(ParamsError, match="CN_PE"):
        parse_params("#define CN_PA 16\n", "tiny.h")


# --------------------------------------------------------------------------- packing
def test_pack_weights_tile_order_and_low_nibble_first():
    pa, pe = 4, 2
    m = np.arange(1, 7).reshape(2, 3) - 3  # O=2, K=3: [[-2,-1,0],[1,2,3]]
    b = pack_weights(m, 4, pa, pe)
    # one tile [o][i] of 2 x 4 values: -2 -1 0 0 | 1 2 3 0
    vals = [-2, -1, 0, 0, 1, 2, 3, 0]
    expect = [((vals[2 * i] & 15) | ((vals[2 * i + 1] & 15) << 4)) for i in range(4)]
    assert b.tolist() == expect
    b8 = pack_weights(m, 8, pa, pe)
    assert b8.view(np.int8).tolist() == vals


def test_pack_depthwise_and_qparams():
    w = np.arange(18).reshape(2, 9) % 7
    b = pack_depthwise(w, 8, 2).view(np.int8)
    assert b.size == 32  # one record per group of 2 lanes: 18 bytes padded to two 16-byte words
    assert b[:18].reshape(9, 2).T.tolist() == w.tolist()  # [tap][lane]
    assert not b[18:].any()
    b4 = pack_depthwise(np.full((16, 9), -1), 4)
    assert b4.size == 80 and b4[:72].tolist() == [0xFF] * 72 and not b4[72:].any()  # 144 nibbles -> 5 words
    q = pack_qparams(np.array([-5]), np.array([12345]), np.array([20])).view("<u4")
    assert q.size == 32  # a whole group of 16 channels
    assert q.view("<i4")[0] == -5 and q[1] == 12345 | (20 << 16)
    assert q[2] == 0 and q[3] == 1 | (1 << 16)  # padding channels requantise 0 to 0
    lw = pack_lane_weights(np.array([1, -2, 3]), 4)
    assert lw.size == 16 and lw[0] == (1 | (0xE << 4)) and lw[1] == 3


# --------------------------------------------------------------------------- structure
def test_codenet_like_compiles_to_fused_descriptors_without_copies():
    # the FPGA'21 deployment's decoder (1024 -> 256 -> 128 -> 64, head 64)
    prog = codenet_like_program(np.random.default_rng(0), input_size=128, decoder=(256, 128, 64), head=64)
    cp = compile_program(prog)
    ops = [d.op for d in cp.info]
    assert "move" not in ops, "channel split/concat/shuffle and upsample must not cost a copy"
    blocks = [d for d in cp.info if "off-chip" in d.flags]
    assert len(blocks) == 6  # 3 decoder stages + 3 heads: pointwise -> offset -> depthwise fused
    assert sum("up2" in d.flags for d in cp.info) == 3  # decoder upsamples folded into the writes
    assert all(d.n_segments <= P.MAX_SEGS for d in cp.info)
    w = cp.descriptors
    assert w.shape == (cp.n_layers, P.DESC_WORDS)
    assert np.all(w[:, P.D_HEADER] >> 16 == P.DESC_MAGIC)
    assert np.all((w[:, P.D_HEADER] >> 8) & 0xFF == P.DESC_VERSION)
    # fewer descriptors than conv layers: fusion
    assert cp.n_layers < len(prog.conv_layers())
    # buffer reuse shrinks the activation region
    assert cp.act_size < compile_program(prog, reuse=False).act_size
    assert "dwblock" in cp.summary()


def test_block_whose_weights_exceed_the_buffer_runs_unfused():
    # the seed decoder's first block (1024 -> 512 pointwise: 64 x 32 weight blocks) exceeds
    # CN_WBUF_BLOCKS: pointwise and offset conv run as dense convs, the depthwise reads DRAM offsets
    prog = codenet_like_program(np.random.default_rng(0), input_size=128)
    info = compile_program(prog).info
    assert sum("off-chip" in d.flags for d in info) == 5
    assert sum("off-dram" in d.flags for d in info) == 1


def test_dram_image_layout():
    prog = random_program(np.random.default_rng(1), input_hw=(32, 32))
    cp = compile_program(prog)
    img = np.random.default_rng(2).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    dram = cp.dram_image(img)
    assert dram.size == cp.dram_size
    assert np.frombuffer(dram[cp.desc_offset:cp.desc_offset + 4].tobytes(), "<u4")[0] >> 16 == P.DESC_MAGIC
    assert np.array_equal(dram[cp.wgt_offset:cp.wgt_offset + cp.weights.size], cp.weights)
    assert np.array_equal(cp.read_tensor(dram[cp.act_offset:], prog.input), img)
    with pytest.raises(ValueError, match="letterbox"):
        cp.write_input(cp.new_activations(), img[:16])


def test_unfusable_block_falls_back_to_dram_offsets():
    # the pointwise output is also a program output, so it must reach DRAM: no fusion
    rng = np.random.default_rng(3)
    b = ProgramBuilder(rng, (16, 16), max_offset=4)
    x = b.conv("image", 8, k=1)
    p = b.conv(x, 8, k=1, kind="s8", name="pw")
    o = b.conv(p, 1, k=1, kind="off", name="off")
    y = b.conv(p, 8, k=3, groups=8, offset=o, name="dw")
    cp = compile_program(b.build({"hm": y, "wh": p}))
    flags = [d.flags for d in cp.info]
    assert any("off-dram" in f for f in flags) and not any("off-chip" in f for f in flags)


def test_smaller_line_buffer_disables_fusion():
    rng = np.random.default_rng(0)
    prog = codenet_like_program(rng, input_size=64, stage_channels=(8, 16, 32, 64, 96), decoder=(32, 16, 16),
                                head=96, num_classes=3, stage_repeats=(2, 3, 2))
    assert sum("off-chip" in d.flags for d in compile_program(prog).info) == 6
    # 16-pixel head rows of 96 channels (6 words each) no longer fit a line-buffer row: unfused
    small = HwParams({**dict(P), "LB_WORDS": 64, "MAX_W": 64}, "test")
    cp = compile_program(prog, small)
    assert sum("off-chip" in d.flags for d in cp.info) == 3
    assert sum("off-dram" in d.flags for d in cp.info) == 3


# --------------------------------------------------------------------------- refusals
def _builder(hw=(16, 16), max_offset=4, seed=0):
    return ProgramBuilder(np.random.default_rng(seed), hw, max_offset=max_offset)


def test_refuses_offsets_beyond_the_line_buffer():
    b = _builder(max_offset=P.MAX_OFFSET + 1)
    y = b.square_block(b.conv("image", 4, k=1), 4, "blk")
    with pytest.raises(ProgramError, match="line buffer"):
        compile_program(b.build({"hm": y}))


def test_refuses_static_dilation_beyond_the_line_buffer():
    b = _builder(hw=(32, 32))
    x = b.conv("image", 4, k=1)
    d = (P.LB_ROWS - 1) // 2 + 1
    y = b.conv(x, 4, k=3, groups=4, dilation=d, name="wide")
    with pytest.raises(ProgramError, match="dilation"):
        compile_program(b.build({"hm": y}))


def test_refuses_channels_beyond_max():
    b = _builder(hw=(4, 4))
    y = b.conv("image", P.MAX_C + 8, k=1, name="huge")
    with pytest.raises(ProgramError, match="CN_MAX_C"):
        compile_program(b.build({"hm": y}))


def test_refuses_width_beyond_max():
    b = _builder(hw=(4, P.MAX_W + 16))
    y = b.conv("image", 4, k=1)
    with pytest.raises(ProgramError, match="CN_MAX_W"):
        compile_program(b.build({"hm": y}))


def test_refuses_accumulator_wider_than_hardware():
    b = _builder()
    y = b.conv("image", 4, k=1, name="big")
    prog = b.build({"hm": y})
    narrow = HwParams({**dict(P), "ACC_BITS": 20}, "narrow test accelerator")
    prog.layers[0].arrays["bias"] = np.full(4, 1 << 20, np.int32)
    compile_program(prog)  # fits the real header's accumulator
    with pytest.raises(ProgramError, match="CN_ACC_BITS"):
        compile_program(prog, narrow)


def test_refuses_grouped_conv():
    b = _builder()
    x = b.conv("image", 8, k=1)
    y = b.conv(x, 8, k=3, groups=2, name="grouped")
    with pytest.raises(ProgramError, match="grouped conv"):
        compile_program(b.build({"hm": y}))


def test_buffers_are_nhwc16_words():
    prog = random_program(np.random.default_rng(4), input_hw=(32, 32))
    cp = compile_program(prog, reuse=False)
    for pl in cp.placements.values():
        # channel c of pixel p at addr[c] + p * pix: the pixel stride is whole 16-channel words
        assert np.all(pl.pix % 16 == 0)
        assert np.all((pl.addr - pl.addr.min()) < pl.pix.max() * 1 + pl.addr.min() + 1 << 30)
    inp = cp.placements[prog.input]
    assert inp.pix.tolist() == [16, 16, 16] and (inp.addr % 16).tolist() == [0, 1, 2]
    w = cp.descriptors
    assert np.all(w[:, P.D_OUT_ADDR] % 16 == 0)
    segs = w[:, P.D_SEG_BASE:P.D_SEG_BASE + P.MAX_SEGS * P.D_SEG_WORDS].reshape(len(w), P.MAX_SEGS, 4)
    for row, n in zip(segs, w[:, P.D_NSEG]):
        assert np.all(row[:n, 0] % 16 == 0) and np.all(row[:n, 2] + row[:n, 3] <= 16 * row[:n, 1])


def test_views_too_fragmented_are_gathered_by_moves():
    # a concat of many single channels of different buffers exceeds the segment table
    b = _builder(hw=(8, 8))
    xs = [b.conv("image", 2, k=1, out_scale=0.25, name=f"c{i}") for i in range(P.MAX_SEGS + 2)]
    t = b.concat([b.slice(x, 0, 1) for x in xs])
    y = b.conv(t, 4, k=1, name="after")
    cp = compile_program(b.build({"hm": y}))
    assert any(d.op == "move" for d in cp.info)
    assert all(d.n_segments <= P.MAX_SEGS for d in cp.info)
