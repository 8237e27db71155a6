"""Fast integer CPU graph (8-bit tensors, QLinearConv / MatMulInteger) == numpy golden, exactly."""

from __future__ import annotations

import os

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from test_onnx_int import assert_exact, images_for  # noqa: E402

from codenet_pynq.intmath import requantize  # noqa: E402
from codenet_pynq.synthetic import ProgramBuilder, codenet_like_program, random_program  # noqa: E402
from codenet_pynq.training.quant import onnx_fast  # noqa: E402
from codenet_pynq.training.quant.onnx_fast import _FastLowering, build_fast_int_onnx  # noqa: E402
from codenet_pynq.training.quant.onnx_int import read_int_metadata  # noqa: E402
from codenet_pynq.training.quant.qlinear import qlinear_requantize, qlinear_scales  # noqa: E402

SHIPPED = os.path.join(os.path.dirname(__file__), "..", "codenet_pynq", "models", "shapes_default.codenet")


def session(model):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    opts.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def forms(prog):
    """layer name -> 'single' | 'dual' | 'mmi' | 'float' as the fast lowering plans it."""
    lw = _FastLowering(prog)
    out = {}
    for layer in prog.conv_layers():
        sc = lw.qplan.get(layer.name)
        out[layer.name] = ("mmi" if layer.name in lw.mmi else "float" if sc is None
                           else "single" if sc[1] is None else "dual")
    return out


# ---------------------------------------------------------------- the requantisation proof
@pytest.mark.parametrize("seed", range(6))
def test_qlinear_scales_match_the_contract_exhaustively(seed):
    """Every accumulator of a wide range (not only the checked step points) requantises as the
    contract does, for u8 (single form) and s8 (single or dual form) outputs."""
    rng = np.random.default_rng(seed)
    m = rng.integers(3, 2 ** 12, 24)
    s = rng.integers(6, 16, 24)
    for lo, hi in ((0, 255), (-128, 127)):
        sc = qlinear_scales(m, s, lo, hi)
        assert sc is not None
        up, down = sc
        a = np.arange(-(300 << int(s.max())) // int(m.min()) - 5, (300 << int(s.max())) // int(m.min()) + 5)[:, None]
        a = a[::max(1, len(a) // 400000)]  # every integer when the window is small, else a dense stride
        a = np.concatenate([a, np.arange(-70000, 70000)[:, None]])
        got = qlinear_requantize(a, up[None, :], -lo)
        if down is not None:
            got = np.maximum(got, qlinear_requantize(a, down[None, :], -lo))
        want = requantize(a * np.ones((1, 24), np.int64), np.zeros(24), m, s, lo, hi) - lo
        assert np.array_equal(got, want)


def test_qlinear_scales_need_the_dual_form_for_s8_halves_and_refuse_other_ranges():
    m, s = np.array([3]), np.array([2])  # r = 3a/4: halves at a = +-2, +-6, ... on both sides of 0
    up, down = qlinear_scales(m, s, -128, 127)
    assert down is not None
    single, none = qlinear_scales(m, s, 0, 255)
    assert none is None and single[0] > np.float32(0.75)  # the exact scale rounds 1.5 to 2 but 2.5 to 2
    assert qlinear_scales(m, s, 0, 8) is None  # offsets: the runtime clamps to the u8 range only
    # a 15-bit multiplier with a large shift: float32 cannot tell the steps apart, so no scale
    assert qlinear_scales(np.array([32749]), np.array([30]), -128, 127) is None


def test_runtime_self_test_passes_and_can_fail(monkeypatch):
    onnx_fast.runtime_self_test.cache_clear()
    assert onnx_fast.runtime_self_test()
    onnx_fast.runtime_self_test.cache_clear()
    half_up = lambda a, scale, zp: np.clip(np.floor(np.asarray(a).astype(np.float32) * scale + 0.5) + zp, 0, 255)  # noqa: E731
    monkeypatch.setattr(onnx_fast, "qlinear_requantize", half_up)
    assert not onnx_fast.runtime_self_test()
    onnx_fast.runtime_self_test.cache_clear()


# ---------------------------------------------------------------- whole graphs
@pytest.mark.parametrize("seed", range(8))
def test_random_programs_exact(seed):
    rng = np.random.default_rng(1000 + seed)
    hw = tuple(int(v) for v in rng.integers(9, 41, 2))
    prog = random_program(rng, hw, max_offset=int(rng.integers(1, 9)), num_classes=int(rng.integers(1, 6)))
    model = build_fast_int_onnx(prog)
    assert any(n.op_type == "QLinearConv" for n in model.graph.node)
    assert_exact(prog, session(model), images_for(rng, hw))


@pytest.mark.parametrize("seed", range(2))
def test_random_programs_with_15_bit_multipliers_exact(seed):
    rng = np.random.default_rng(1500 + seed)
    hw = tuple(int(v) for v in rng.integers(9, 41, 2))
    prog = random_program(rng, hw, max_offset=int(rng.integers(1, 9)), multipliers="full")
    assert_exact(prog, session(build_fast_int_onnx(prog)), images_for(rng, hw))


def test_codenet_like_uses_every_form_and_is_exact():
    """Single and dual QLinearConv, MatMulInteger with float32 and float64 requantisation, the
    per-pixel dilation over gathered bytes, the stem pooled before its requantisation."""
    rng = np.random.default_rng(14)
    prog = codenet_like_program(rng, 128, width=1.0, decoder=(512, 256, 64), head=64, num_classes=4)
    f = forms(prog)
    assert f["stem"] == "float" and f["conv5"] == "single" and f["head.hm.dw"] == "single"
    assert {"single", "dual", "mmi", "float"} <= set(f.values())
    mmi = [n for n, v in f.items() if v == "mmi"]
    assert any(n.startswith("decoder0") for n in mmi) and any(n.startswith("head") for n in mmi)
    lw = _FastLowering(prog)
    rounding = [layer.name for layer in prog.layers if layer.name in lw.mmi and onnx_fast._rounds_in_quantize(layer)]
    assert "head.hm.out" in rounding and "head.hm.pw" in rounding  # an output and a byte tensor without Floor
    model = build_fast_int_onnx(prog)
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("MaxPool") == 1 and "MatMulInteger" in ops
    pool = next(n for n in model.graph.node if n.op_type == "MaxPool")
    assert pool.name.startswith("stem.")  # pooled in the stem's own requantisation
    assert read_int_metadata(model)["outputs"]["hm"]["name"] == "hm_q"
    assert_exact(prog, session(model), images_for(rng, (128, 128), 1))


@pytest.mark.parametrize("seed", range(4))
def test_rounding_left_to_quantize_linear_matches_the_contract(seed):
    """The 1x1 requantisation without Floor (_rounds_in_quantize): float32 ``acc * scale + c``
    (rounded after the product, or once as a fused multiply-add), round half to even, saturate,
    equals the contract for every accumulator of layers that pass the check, including large
    ones, halves of the contract and accumulators far outside the output range."""
    from codenet_pynq.program import Layer

    rng = np.random.default_rng(300 + seed)
    checked = 0
    while checked < 6:
        s = int(rng.integers(6, 16))
        # small odd parts of M put halves inside the output range
        m = np.array([[1 << 12, 3 << 11, 5 << 9, int(rng.integers(1 << 10, 1 << 15))][checked % 4]])
        bias = rng.integers(-(1 << 18), 1 << 18, 1)
        layer = Layer("conv", ["x"], "y", arrays={"M": m, "S": np.array([s]), "bias": bias})
        if not onnx_fast._rounds_in_quantize(layer):
            continue
        checked += 1
        bound = ((1 << 24) - abs(int(bias[0] * m[0]) + (1 << (s - 1)))) // int(m[0])  # requantised_in_float32
        # both sides of every step of the contract (where a half would round the other way) and more
        n = np.arange(-300, 300)
        first = -((-(n * (1 << s) - (1 << (s - 1)))) // int(m[0])) - bias[0]
        acc = np.unique(np.concatenate([rng.integers(-bound, bound + 1, 100_000), first - 1, first]))
        acc = acc[np.abs(acc) <= bound]
        scale = np.float32(m[0] * 2.0 ** -s)
        c = np.float32(bias[0] * float(scale) + 2.0 ** (-s - 1))
        assert float(c) == bias[0] * m[0] * 2.0 ** -s + 2.0 ** (-s - 1)  # exact
        separate = acc.astype(np.float32) * scale + c
        fused = (acc.astype(np.float64) * float(scale) + float(c)).astype(np.float32)
        for lo, hi in ((-128, 127), (0, 255)):
            want = requantize(acc[:, None], bias, m, np.array([s]), lo, hi)[:, 0]
            for u in (separate, fused):
                assert np.array_equal(np.clip(np.rint(u), lo, hi), want)
    assert not onnx_fast._rounds_in_quantize(Layer("conv", ["x"], "y", arrays={
        "M": np.array([1 << 14]), "S": np.array([16]), "bias": np.array([0])}))


@pytest.mark.parametrize("seed", range(3))
def test_tiled_per_pixel_dilation_exact(monkeypatch, seed):
    """The per-pixel dilation in pixel tiles (forced small here: every square block splits)."""
    monkeypatch.setattr(onnx_fast, "TAP_TILE_PIXELS", 8)
    rng = np.random.default_rng(1700 + seed)
    hw = (int(rng.integers(8, 20)) * 2, int(rng.integers(8, 20)) * 2)
    prog = random_program(rng, hw, max_offset=int(rng.integers(1, 9)), num_classes=2)
    model = build_fast_int_onnx(prog)
    kernels = [[list(a.ints) for a in n.attribute if a.name == "kernel_shape"] for n in model.graph.node
               if n.op_type == "QLinearConv"]
    lw = _FastLowering(prog)
    planned = sum(1 for layer in prog.layers if layer.offset is not None and layer.name in lw.qplan)
    assert planned and kernels.count([[1, 9]]) > planned  # some 1x9 reductions run per tile
    assert_exact(prog, session(model), images_for(rng, hw))


def test_tiled_heads_run_their_1x1_convs_per_tile(monkeypatch):
    """A 1x1 conv reading a tiled per-pixel dilation runs per tile (the heads' output convs)."""
    monkeypatch.setattr(onnx_fast, "TAP_TILE_PIXELS", 256)
    rng = np.random.default_rng(17)
    prog = codenet_like_program(rng, 128, width=0.5, decoder=(64, 32, 32), head=32, num_classes=3)
    model = build_fast_int_onnx(prog)
    per_tile = [n for n in model.graph.node if n.op_type == "MatMulInteger" and n.name.startswith("head.hm.out.")]
    assert len(per_tile) == 4  # 32 x 32 pixels in tiles of 256
    assert_exact(prog, session(model), images_for(rng, (128, 128), 1))


def test_tap_shifts_match_the_float_exact_tap_table():
    """Padded-source row shifts (fast graph) and the float-exact graph's table name the same
    source pixel for every offset, pixel and tap (or both fall outside the map)."""
    from codenet_pynq.training.quant.onnx_int import TAPS

    for h, w, f, b in ((12, 10, 1, 5), (16, 12, 2, 8), (16, 16, 4, 3), (8, 6, 2, 1)):
        shifts, own = onnx_fast._tap_shifts(h, w, f, b)
        pad = onnx_fast._tap_padding(b, f)
        wp = w // f + 2 * pad
        yy, xx = np.divmod(np.arange(h * w), w)
        for o in range(b + 1):
            rows = own[:, None] + shifts[o * f * f + (yy % f) * f + xx % f]
            py, px = np.divmod(rows, wp)
            py, px = py - pad, px - pad
            d = 1 + o
            for t, (dy, dx) in enumerate(TAPS):
                ty, tx = yy + d * dy, xx + d * dx
                inside = (ty >= 0) & (ty < h) & (tx >= 0) & (tx < w)
                got_inside = (py[:, t] >= 0) & (py[:, t] < h // f) & (px[:, t] >= 0) & (px[:, t] < w // f)
                assert np.array_equal(inside, got_inside)
                assert np.array_equal(py[inside, t], ty[inside] // f) and np.array_equal(px[inside, t], tx[inside] // f)
                assert (rows[:, t] >= 0).all() and (rows[:, t] < (h // f + 2 * pad) * wp).all()


def test_depthwise_channels_padded_to_whole_blocks():
    """ShuffleNet 1.0x branches (58 / 116 / 232 channels) run on 64 / 128 / 240 channels."""
    rng = np.random.default_rng(8)
    prog = codenet_like_program(rng, 64, width=1.0, decoder=(64, 32, 16), head=16, num_classes=2)
    lw = _FastLowering(prog)
    assert set(lw.channels.values()) == {64, 128, 240}
    assert all(prog.tensors[t].shape[2] % 16 for t in lw.channels)
    model = build_fast_int_onnx(prog)
    inits = {i.name: i for i in model.graph.initializer}
    dw = next(n for n in model.graph.node if n.name.startswith("stage2.0.b2.dw.QLinearConv"))
    assert list(inits[dw.input[3]].dims)[0] == 64
    assert_exact(prog, session(model), images_for(rng, (64, 64), 1))


def test_s8_blocks_and_float_consumers_of_bytes_exact():
    """s8 tensors travel as bytes with zero point 128 (a concat of them, the per-pixel dilation
    reading one); a 3x3 full conv with an s8 input and a channel-multiplier dw also run."""
    rng = np.random.default_rng(21)
    b = ProgramBuilder(rng, (20, 18), max_offset=5)
    t = b.conv("image", 32, k=3, stride=2, bits=8, name="stem")
    u = b.conv(t, 24, k=1, kind="s8", name="u")
    s = b.conv(t, 24, k=1, kind="s8", out_scale=b.tensors[u].scale, name="s")
    cat = b.shuffle(b.concat([u, s]), 4)
    q = b.square_block(b.upsample(cat), 20, "block", pw_kind="s8")
    dw2 = b.conv(q, 40, k=3, groups=20, kind="s8", name="dw2")
    prog = b.build({"hm": b.conv(q, 3, k=1, kind="s8", name="hm"), "wh": b.conv(cat, 2, k=3, kind="s8", name="wh"),
                    "reg": b.conv(dw2, 2, k=1, kind="s8", name="reg")})
    f = forms(prog)
    assert f["block.dw"] in ("single", "dual") and f["dw2"] in ("single", "dual")
    assert_exact(prog, session(build_fast_int_onnx(prog)), images_for(rng, (20, 18)))


def test_shipped_model_exact():
    from codenet_pynq.artifact import load_artifact

    prog = load_artifact(SHIPPED).program()
    rng = np.random.default_rng(5)
    size = prog.tensors[prog.input].shape[0]
    assert_exact(prog, session(build_fast_int_onnx(prog)), images_for(rng, (size, size), 1))


@pytest.mark.slow
def test_codenet_like_512_exact():
    rng = np.random.default_rng(11)
    prog = codenet_like_program(rng, 512, width=1.0, decoder=(512, 256, 128), head=128, num_classes=20)
    assert_exact(prog, session(build_fast_int_onnx(prog)), images_for(rng, (512, 512), 1))
