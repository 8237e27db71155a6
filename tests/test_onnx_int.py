"""Integer ONNX graph == numpy golden, on every output element."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from codenet_pynq.golden import run_program  # noqa: E402
from codenet_pynq.program import Layer, Program, TensorInfo  # noqa: E402
from codenet_pynq.synthetic import ProgramBuilder, codenet_like_program, random_program  # noqa: E402
from codenet_pynq.training.quant import onnx_int  # noqa: E402
from codenet_pynq.training.quant.onnx_int import (  # noqa: E402
    build_float_onnx,
    build_int_onnx,
    onnx_int_outputs,
    read_int_metadata,
    requantised_in_float32,
)


def session(model, level=None):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    opts.log_severity_level = 3
    if level is not None:
        opts.graph_optimization_level = level
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def assert_exact(prog: Program, sess, images) -> None:
    for image in images:
        want = run_program(prog, image)
        got = onnx_int_outputs(sess.run(None, {"image": image[None]}), prog)
        for role in want:
            assert got[role].dtype == want[role].dtype
            assert np.array_equal(got[role], want[role]), f"{role}: {np.abs(got[role] - want[role].astype(int)).max()}"


def images_for(rng, hw, n=2):
    imgs = [rng.integers(0, 256, hw + (3,), dtype=np.uint8) for _ in range(n)]
    return imgs + [np.zeros(hw + (3,), np.uint8), np.full(hw + (3,), 255, np.uint8)]


@pytest.mark.parametrize("seed", range(12))
def test_random_programs_exact(seed):
    rng = np.random.default_rng(1000 + seed)
    hw = tuple(int(v) for v in rng.integers(9, 41, 2))
    prog = random_program(rng, hw, max_offset=int(rng.integers(1, 9)), num_classes=int(rng.integers(1, 6)))
    model = build_int_onnx(prog)
    assert_exact(prog, session(model), images_for(rng, hw))


@pytest.mark.parametrize("seed", range(4))
def test_random_programs_with_15_bit_multipliers_exact(seed):
    """Programs whose multipliers all have 15 bits (artifacts before the float32 policy): every
    layer requantises in float64."""
    rng = np.random.default_rng(1500 + seed)
    hw = tuple(int(v) for v in rng.integers(9, 41, 2))
    prog = random_program(rng, hw, max_offset=int(rng.integers(1, 9)), multipliers="full")
    assert not any(requantised_in_float32(prog, layer) for layer in prog.layers if layer.op == "conv")
    assert_exact(prog, session(build_int_onnx(prog)), images_for(rng, hw))


def _double_casts(model) -> int:
    return sum(n.op_type == "Cast" and n.attribute[0].i == onnx.TensorProto.DOUBLE for n in model.graph.node)


def test_requantisation_paths_follow_the_multipliers():
    """Layers whose multipliers fit float32 are folded into their conv (no float64 at all);
    the others (here the int8 stem and the widest 1x1 convs) requantise in float64."""
    prog = codenet_like_program(np.random.default_rng(14), 128, width=1.0, decoder=(256, 128, 64), head=64,
                                num_classes=4)
    convs = [layer for layer in prog.layers if layer.op == "conv"]
    folded = [layer.name for layer in convs if requantised_in_float32(prog, layer)]
    assert "stem" not in folded and len(convs) > len(folded) > len(convs) // 2
    model = build_int_onnx(prog)
    assert _double_casts(model) == len(convs) - len(folded)
    rng = np.random.default_rng(15)
    assert_exact(prog, session(model), images_for(rng, (128, 128), 1))


@pytest.mark.parametrize("m", [172, 173])
def test_folded_requantisation_at_the_float32_limit(m):
    """bound * M + 2**(S-1) just below 2**24 (M = 172: folded) and just above (M = 173: float64),
    on inputs that drive the accumulator to its bound, where the low bits decide the floor."""
    h, w = 5, 6
    tensors = {"image": TensorInfo("image", (h, w, 3), "u8", 1.0), "y": TensorInfo("y", (h, w, 2), "u8", 1.0)}
    weight = np.array([[127, 127, 127], [127, -3, 127]], np.int8).reshape(2, 1, 1, 3)
    arrays = {"weight": weight, "bias": np.array([0, 1], np.int32), "M": np.full(2, m, np.int32),
              "S": np.full(2, 17, np.int32)}
    layer = Layer("conv", ["image"], "y", {"k": 1, "pad": 0, "lo": 0, "hi": 255, "weight_bits": 8}, arrays, name="y")
    prog = Program("image", tensors, [layer], {"hm": "y", "wh": "y", "reg": "y"})
    top = 3 * 127 * 255 * m + (1 << 16)
    assert (top <= 1 << 24) == (m == 172) == requantised_in_float32(prog, layer)
    assert (_double_casts(build_int_onnx(prog)) == 0) == (m == 172)
    rng = np.random.default_rng(m)
    images = [np.full((h, w, 3), 255, np.uint8)] + [rng.integers(240, 256, (h, w, 3), dtype=np.uint8) for _ in range(4)]
    assert_exact(prog, session(build_int_onnx(prog)), images)
    assert 120 <= int(run_program(prog, images[0])["hm"][0, 0, 0]) <= 128  # in range: the floor matters


@pytest.mark.parametrize("seed", range(3))
def test_floor_path_exact(seed, monkeypatch):
    """Layers with S above the rounding-cast limit use Floor: force that path everywhere."""
    monkeypatch.setattr(onnx_int, "ROUNDING_CAST_MAX_SHIFT", 0)
    rng = np.random.default_rng(2000 + seed)
    prog = random_program(rng, (24, 20))
    model = build_int_onnx(prog)
    assert any(n.op_type == "Floor" for n in model.graph.node)
    assert_exact(prog, session(model), images_for(rng, (24, 20)))


def test_exact_without_graph_optimisations():
    rng = np.random.default_rng(3)
    prog = random_program(rng, (17, 23))
    model = build_int_onnx(prog)
    for level in (ort.GraphOptimizationLevel.ORT_DISABLE_ALL, ort.GraphOptimizationLevel.ORT_ENABLE_BASIC):
        assert_exact(prog, session(model, level), images_for(rng, (17, 23), 1))


def _wide_program(rng, kind: str) -> Program:
    """Int8 convs whose accumulator bound exceeds 2**24: the chunked float64 path."""
    b = ProgramBuilder(rng, (6, 5), max_offset=2)
    t = b.conv("image", 2400, k=1, bits=8, kind=kind, name="wide_in")       # 1x1 from the raw image
    t = b.conv(t, 5, k=1, bits=8, kind="u8", name="wide_pw")                # 1x1, Cin 2400, int8
    t2 = b.conv("wide_in", 4, k=3, bits=8, kind="s8", name="wide_3x3")      # 3x3, Cin 2400, int8
    return b.build({"hm": b.conv(t, 3, k=1, kind="s8", name="hm"), "wh": t2,
                    "reg": b.conv(t2, 2, k=1, kind="s8", name="reg")})


@pytest.mark.parametrize("kind", ["u8", "s8"])
def test_large_accumulator_chunks_exact(kind):
    rng = np.random.default_rng(4)
    prog = _wide_program(rng, kind)
    model = build_int_onnx(prog)
    assert sum(n.op_type == "Sum" for n in model.graph.node) >= 2  # chunked layers
    assert_exact(prog, session(model), images_for(rng, (6, 5)))


def test_chunks_with_accumulators_beyond_float32():
    """Accumulators and partial sums far above 2**24, requantised with r = 1: any float32 rounding shows."""
    h, w, cw = 3, 4, 2400
    tensors = {"image": TensorInfo("image", (h, w, 3), "u8", 1.0), "a": TensorInfo("a", (h, w, cw), "u8", 1.0),
               "y": TensorInfo("y", (h, w, 4), "u8", 1.0)}

    def conv(out, inp, weight, bias, m, s):
        o = weight.shape[0]
        arrays = {"weight": weight.astype(np.int8), "bias": np.asarray(bias, np.int32),
                  "M": np.full(o, m, np.int32), "S": np.full(o, s, np.int32)}
        return Layer("conv", [inp], out, {"k": 1, "pad": 0, "lo": 0, "hi": 255, "weight_bits": 8}, arrays, name=out)

    w1 = np.full((cw, 1, 1, 3), 127)
    w1[::7] = 50                               # a = 255 or 100 on a white image
    w2 = np.full((4, 1, 1, cw), 127)
    w2[1, :, :, 1500:] = -127                  # partial sums climb past 2**24, then come back
    w2[2, :, :, ::3] = 113
    w2[3, :, :, ::2] = -101
    layer_a = conv("a", "image", w1, np.zeros(cw), 21990, 23)  # 97155 * 21990 / 2**23 = 254.7 -> 255
    white = np.full((h, w, 3), 255, np.uint8)
    a = run_program(Program("image", {k: tensors[k] for k in ("image", "a")}, [layer_a], {"hm": "a"}), white)["hm"]
    acc = w2[:, 0, 0, :].astype(np.int64) @ a[0, 0].astype(np.int64)
    assert np.abs(acc).max() > 2 ** 25
    layer_y = conv("y", "a", w2, 100 - acc, 1 << 14, 14)    # y = acc + bias = 100 exactly
    prog = Program("image", tensors, [layer_a, layer_y], {"hm": "y", "wh": "y", "reg": "y"})
    assert np.all(run_program(prog, white)["hm"] == 100)
    rng = np.random.default_rng(12)
    assert_exact(prog, session(build_int_onnx(prog)), [white, rng.integers(250, 256, (h, w, 3), dtype=np.uint8)])


def test_interface_metadata_and_checker():
    rng = np.random.default_rng(5)
    prog = random_program(rng, (16, 24), num_classes=4)
    model = build_int_onnx(prog)
    onnx.checker.check_model(model, full_check=True)
    assert model.opset_import[0].version == onnx_int.OPSET
    (inp,) = model.graph.input
    assert inp.name == "image" and inp.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert [d.dim_value for d in inp.type.tensor_type.shape.dim] == [1, 16, 24, 3]
    outs = {o.name: o for o in model.graph.output}
    assert set(outs) == {"hm_q", "wh_q", "reg_q"}
    meta = read_int_metadata(model)
    assert meta["input"]["layout"] == "NHWC" and meta["input"]["channels"] == "BGR"
    for role, name in prog.outputs.items():
        info = prog.tensors[name]
        o = outs[f"{role}_q"]
        assert o.type.tensor_type.elem_type == onnx.TensorProto.INT8
        assert [d.dim_value for d in o.type.tensor_type.shape.dim] == [1, info.shape[2], info.shape[0], info.shape[1]]
        assert meta["outputs"][role] == {"name": f"{role}_q", "scale": info.scale, "kind": "s8", "layout": "NCHW"}
    sess = session(model)
    assert read_int_metadata(sess.get_modelmeta().custom_metadata_map) == meta
    image = rng.integers(0, 256, (16, 24, 3), dtype=np.uint8)
    raw = sess.run(None, {"image": image[None]})
    by_name = dict(zip([o.name for o in sess.get_outputs()], raw))
    a, b = onnx_int_outputs(raw, prog), onnx_int_outputs(by_name, prog)
    assert all(np.array_equal(a[r], b[r]) for r in a)
    with pytest.raises(ValueError):
        read_int_metadata({})


def test_float_twin_runs():
    rng = np.random.default_rng(6)
    prog = random_program(rng, (16, 16))
    sess = session(build_float_onnx(prog))
    outs = sess.run(None, {"image": rng.integers(0, 256, (1, 16, 16, 3), dtype=np.uint8)})
    assert [o.shape for o in outs] == [(1,) + (s[2], s[0], s[1]) for s in
                                       (prog.tensors[prog.outputs[r]].shape for r in ("hm", "wh", "reg"))]


def test_shared_output_tensor_and_u8_head():
    """Two roles naming one tensor, and a u8 head (uint8 output)."""
    rng = np.random.default_rng(7)
    b = ProgramBuilder(rng, (8, 8))
    t = b.conv("image", 4, k=3, bits=8, name="c")
    u = b.conv(t, 2, k=1, kind="u8", name="u")
    prog = b.build({"hm": t, "wh": u, "reg": u})
    model = build_int_onnx(prog)
    assert {o.type.tensor_type.elem_type for o in model.graph.output} == {onnx.TensorProto.UINT8}
    assert_exact(prog, session(model), images_for(rng, (8, 8)))


def test_channel_multiplier_offset_conv():
    """Depthwise conv with 2 outputs per input channel and per-pixel dilation (beyond the programs we export)."""
    rng = np.random.default_rng(8)
    b = ProgramBuilder(rng, (10, 12), max_offset=5)
    t = b.conv("image", 3, k=1, bits=8, name="pw")
    o = b.conv(t, 1, k=1, kind="off", name="off")
    y = b.conv(t, 6, k=3, groups=3, offset=o, name="dw")
    prog = b.build({"hm": b.conv(y, 2, k=1, kind="s8", name="hm"), "wh": y, "reg": t})
    assert_exact(prog, session(build_int_onnx(prog)), images_for(rng, (10, 12)))


@pytest.mark.parametrize("m,s", [(1 << 14, 17), (16, 7)])
def test_handmade_offset_extremes(m, s):
    """Offsets 0 and max everywhere on a hand-built program (every tap outside / inside), with
    15-bit multipliers (float64 requantisation) and 5-bit ones (folded: the bias rides on the
    first tap, also when that tap reads the zero row)."""
    rng = np.random.default_rng(9)
    h, w, c = 6, 7, 3
    tensors = {"image": TensorInfo("image", (h, w, 3), "u8", 1.0), "off": TensorInfo("off", (h, w, 1), "off", 1.0),
               "y": TensorInfo("y", (h, w, c), "u8", 0.5)}

    def conv(out, inputs, weight, lo, hi, **attrs):
        o = weight.shape[0]
        arrays = {"weight": weight.astype(np.int8), "bias": rng.integers(-50, 50, o).astype(np.int32),
                  "M": np.full(o, m, np.int32), "S": np.full(o, s, np.int32)}
        return Layer("conv", inputs, out, dict(attrs, lo=lo, hi=hi, weight_bits=8), arrays, name=out)

    for off_val in (0, 8):
        off_layer = conv("off", ["image"], np.zeros((1, 1, 1, 3)), 0, 8, k=1, pad=0)
        off_layer.arrays["bias"][:] = off_val * 8
        dw = conv("y", ["image"], rng.integers(-127, 128, (c, 3, 3, 1)), 0, 255, k=3, pad=1, groups=3, offset="off")
        prog = Program("image", tensors, [off_layer, dw], {"hm": "y", "wh": "y", "reg": "y"}, max_offset=8)
        assert requantised_in_float32(prog, dw) == (m == 16)
        assert_exact(prog, session(build_int_onnx(prog)), images_for(rng, (h, w)))


def test_codenet_like_256_exact():
    rng = np.random.default_rng(10)
    prog = codenet_like_program(rng, 256, width=1.0, decoder=(512, 256, 128), head=128, num_classes=20)
    sess = session(build_int_onnx(prog))
    image = rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)
    want = run_program(prog, image)
    got = onnx_int_outputs(sess.run(None, {"image": image[None]}), prog)
    assert got["hm"].shape == (64, 64, 20)
    for role in want:
        assert np.array_equal(got[role], want[role]), role


@pytest.mark.slow
def test_codenet_like_512_exact():
    rng = np.random.default_rng(11)
    prog = codenet_like_program(rng, 512, width=1.0, decoder=(512, 256, 128), head=128, num_classes=20)
    assert_exact(prog, session(build_int_onnx(prog)), images_for(rng, (512, 512), 1))


def _expand_channels(model) -> list:
    inferred = onnx.shape_inference.infer_shapes(model)
    dims = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in inferred.graph.value_info}
    out = []
    for n in model.graph.node:
        consumer = next((m for m in model.graph.node if n.output[0] in m.input), None)
        if n.op_type == "Expand" and consumer.op_type == "Reshape":  # an upsample (not the tap lookup)
            shp = dims[consumer.output[0]]
            out.append(shp[1] if len(shp) == 4 else shp[-1])
    return out


def test_upsample_is_deferred_past_per_pixel_layers():
    """1x1 convs after a nearest upsample run on the coarse map; the per-pixel dilation gathers from
    it; a 3x3 conv or a concat that needs the full map gets it materialised. Exact either way."""
    rng = np.random.default_rng(12)
    b = ProgramBuilder(rng, (24, 20), max_offset=6)
    t = b.conv("image", 6, k=3, stride=2, bits=8, name="stem")
    u = b.upsample(b.upsample(b.conv(t, 5, k=1, stride=2, name="s2")))  # factor 4
    q = b.square_block(u, 4, "block")
    side = b.conv(u, 3, k=3, name="full3x3")  # needs the full map
    cat = b.concat([b.upsample(t), b.upsample(t)])
    prog = b.build({"hm": b.conv(q, 2, k=1, kind="s8", name="hm"), "wh": side, "reg": b.conv(cat, 2, k=1, name="r")})
    model = build_int_onnx(prog)
    assert_exact(prog, session(model), images_for(rng, (24, 20)))
    # materialised: u for the 3x3 conv (5 channels), both upsample(t) for the concat (6), the offsets (1)
    assert sorted(_expand_channels(model)) == [1, 5, 6, 6]


def test_codenet_like_upsamples_only_offsets():
    """In the CoDeNet layout every upsample feeds a square block or the heads: no feature map is
    ever upsampled, only the 1-channel offset maps (for the tap index arithmetic)."""
    prog = codenet_like_program(np.random.default_rng(13), 128, width=0.5, decoder=(64, 32, 32), head=32, num_classes=3)
    assert set(_expand_channels(build_int_onnx(prog))) == {1}
