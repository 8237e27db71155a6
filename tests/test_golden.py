"""Golden executor: every op against naive loops; program (de)serialisation and validation."""

from __future__ import annotations

import io
import json
import time

import numpy as np
import pytest

from codenet_pynq.golden import conv_accumulate, dequantize_outputs, run_layer, run_program
from codenet_pynq.intmath import kind_range, requantize
from codenet_pynq.program import Layer, Program, ProgramError, TensorInfo
from codenet_pynq.synthetic import codenet_like_program, random_program


# ----------------------------------------------------------------------------- naive references
def naive_requant(acc: int, bias: int, m: int, s: int, lo: int, hi: int) -> int:
    v = (acc + bias) * m + (1 << (s - 1))
    return min(max(v >> s, lo), hi)  # Python >> on ints is a floor shift


def naive_conv(x, w, bias, m, s, lo, hi, stride=1, pad=None, groups=1, dilation=1, off=None):
    """Direct definition, one output element at a time (off: per-pixel dilation 1 + off)."""
    h, wd, cin = x.shape
    o, k, _, cpg = w.shape
    pad = k // 2 if pad is None else pad
    if off is not None:
        ho, wo = h, wd
    else:
        ho = (h + 2 * pad - dilation * (k - 1) - 1) // stride + 1
        wo = (wd + 2 * pad - dilation * (k - 1) - 1) // stride + 1
    og = o // groups
    out = np.zeros((ho, wo, o), np.int64)
    for i in range(ho):
        for j in range(wo):
            for oc in range(o):
                g = oc // og
                acc = 0
                for ky in range(k):
                    for kx in range(k):
                        if off is not None:
                            d = 1 + int(off[i, j])
                            y, xx = i + d * (ky - 1), j + d * (kx - 1)
                        else:
                            y, xx = i * stride - pad + ky * dilation, j * stride - pad + kx * dilation
                        if not (0 <= y < h and 0 <= xx < wd):
                            continue  # outside the map reads 0
                        for ci in range(cpg):
                            acc += int(w[oc, ky, kx, ci]) * int(x[y, xx, g * cpg + ci])
                out[i, j, oc] = naive_requant(acc, int(bias[oc]), int(m[oc]), int(s[oc]), lo, hi)
    return out


def naive_maxpool(x):
    h, w, c = x.shape
    ho, wo = (h - 1) // 2 + 1, (w - 1) // 2 + 1
    out = np.zeros((ho, wo, c), np.int64)
    for i in range(ho):
        for j in range(wo):
            for ch in range(c):
                vals = [int(x[y, xx, ch]) for y in range(2 * i - 1, 2 * i + 2) for xx in range(2 * j - 1, 2 * j + 2)
                        if 0 <= y < h and 0 <= xx < w]
                out[i, j, ch] = max(vals)
    return out


def naive_layer(prog: Program, layer: Layer, env):
    x = env[layer.inputs[0]]
    a = layer.attrs
    if layer.op == "conv":
        ar = layer.arrays
        klo, khi = kind_range(prog.tensors[layer.output].kind, prog.max_offset)
        off = env[layer.offset][..., 0] if layer.offset else None
        return naive_conv(x, ar["weight"], ar["bias"], ar["M"], ar["S"], int(a.get("lo", klo)), int(a.get("hi", khi)),
                          int(a.get("stride", 1)), int(a.get("pad", a["k"] // 2)), int(a.get("groups", 1)),
                          int(a.get("dilation", 1)), off)
    if layer.op == "maxpool":
        return naive_maxpool(x)
    if layer.op == "upsample":
        h, w, c = x.shape
        return np.array([[x[i // 2, j // 2] for j in range(2 * w)] for i in range(2 * h)])
    if layer.op == "concat":
        return np.concatenate([env[t] for t in layer.inputs], axis=2)
    if layer.op == "slice":
        return x[:, :, a["c0"]:a["c1"]]
    if layer.op == "shuffle":
        g, c = a["groups"], x.shape[2]
        perm = [(i % g) * (c // g) + i // g for i in range(c)]  # output channel i <- input perm[i]
        return x[:, :, perm]
    raise AssertionError(layer.op)


# ----------------------------------------------------------------------------- single ops
def _rand_conv(rng, cin, cout, k, groups, bits=4):
    q = 7 if bits == 4 else 127
    w = rng.integers(-q, q + 1, (cout, k, k, cin // groups)).astype(np.int8)
    b = rng.integers(-300, 300, cout).astype(np.int32)
    m = rng.integers(1 << 14, 1 << 15, cout).astype(np.int32)
    s = rng.integers(18, 24, cout).astype(np.int32)
    return w, b, m, s


@pytest.mark.parametrize("k,stride,pad,groups,dilation", [
    (1, 1, 0, 1, 1), (1, 2, 0, 1, 1), (3, 1, 1, 1, 1), (3, 2, 1, 1, 1), (3, 1, 0, 1, 1),
    (3, 1, 1, 6, 1), (3, 2, 1, 6, 1), (3, 1, 2, 6, 2), (3, 1, 1, 2, 1), (3, 1, 3, 1, 3),
])
@pytest.mark.parametrize("kind", ["u8", "s8"])
def test_conv_matches_naive(k, stride, pad, groups, dilation, kind):
    rng = np.random.default_rng(k * 100 + stride * 10 + groups + dilation)
    lo, hi = kind_range(kind)
    x = rng.integers(lo, hi + 1, (7, 6, 6))
    w, b, m, s = _rand_conv(rng, 6, 6, k, groups)
    acc = conv_accumulate(x, w, stride=stride, pad=pad, groups=groups, dilation=dilation)
    s[:] = np.round(np.log2(m * (acc.std(axis=(0, 1)) + 1) / 40)).astype(np.int32)  # ~ +-100 outputs
    y = naive_conv(x, w, b, m, s, -128, 127, stride, pad, groups, dilation)
    assert np.array_equal(requantize(acc, b, m, s, -128, 127), y)
    assert len(np.unique(y)) > 10  # not all saturated


def test_per_pixel_dilation_matches_naive():
    rng = np.random.default_rng(7)
    h, w, c = 9, 11, 4
    x = rng.integers(0, 256, (h, w, c))
    off = rng.integers(0, 6, (h, w))
    wt, b, m, s = _rand_conv(rng, c, c, 3, c)
    acc = conv_accumulate(x, wt, groups=c, offset=off)
    s[:] = np.round(np.log2(m * (acc.std(axis=(0, 1)) + 1) / 60)).astype(np.int32)
    y = requantize(acc, b, m, s, 0, 255)
    assert np.array_equal(y, naive_conv(x, wt, b, m, s, 0, 255, groups=c, off=off))
    # off = 0 everywhere is the plain 3x3 depthwise conv
    zero = conv_accumulate(x, wt, groups=c, offset=np.zeros((h, w), int))
    assert np.array_equal(zero, conv_accumulate(x, wt, groups=c, pad=1))
    # a huge offset reads only the centre tap
    far = conv_accumulate(x, wt, groups=c, offset=np.full((h, w), 50))
    assert np.array_equal(far, x * wt[:, 1, 1, 0].astype(np.int64))


def test_conv_accumulate_rejects_bad_shapes():
    x = np.zeros((4, 4, 6), np.int64)
    with pytest.raises(ProgramError):
        conv_accumulate(x, np.zeros((3, 3, 3, 5), np.int8))
    with pytest.raises(ProgramError):
        conv_accumulate(x, np.zeros((6, 1, 1, 6), np.int8), offset=np.zeros((4, 4), int))


@pytest.mark.parametrize("seed", range(4))
def test_random_program_every_layer_matches_naive(seed):
    rng = np.random.default_rng(100 + seed)
    hw = tuple(int(v) for v in rng.integers(12, 24, 2))
    prog = random_program(rng, hw)
    ops = {layer.op for layer in prog.layers}
    assert ops == {"conv", "maxpool", "upsample", "concat", "slice", "shuffle"}
    kinds = {t.kind for t in prog.tensors.values()}
    assert kinds == {"u8", "s8", "off"}
    assert any(layer.offset for layer in prog.layers)
    image = rng.integers(0, 256, hw + (3,), dtype=np.uint8)
    env = run_program(prog, image, return_all=True)
    for layer in prog.layers:
        want = naive_layer(prog, layer, env)
        got = env[layer.output]
        assert got.shape == prog.tensors[layer.output].shape
        assert np.array_equal(got.astype(np.int64), want.astype(np.int64)), layer.name
    assert set(env) >= set(prog.tensors) | set(prog.outputs)
    offs = [env[t] for t, info in prog.tensors.items() if info.kind == "off"]
    assert max(int(o.max()) for o in offs) > 1  # the dilation really varies


def test_run_program_outputs_and_dequantize():
    rng = np.random.default_rng(5)
    prog = random_program(rng, (20, 20), num_classes=4)
    image = rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)
    outs = run_program(prog, image)
    assert set(outs) == {"hm", "wh", "reg"}
    for role, name in prog.outputs.items():
        assert outs[role].shape == prog.tensors[name].shape and outs[role].dtype == np.int8
    assert outs["hm"].shape[2] == 4
    real = dequantize_outputs(prog, outs)
    for role, q in outs.items():
        scale = prog.tensors[prog.outputs[role]].scale
        assert real[role].dtype == np.float32 and real[role].shape == (q.shape[2],) + q.shape[:2]
        np.testing.assert_allclose(real[role], np.transpose(q, (2, 0, 1)) * scale, rtol=1e-6)
    with pytest.raises(ValueError):
        run_program(prog, image[:10])
    with pytest.raises(ValueError):
        run_program(prog, image.astype(np.float32))


def test_run_layer_rejects_offset_beyond_max():
    rng = np.random.default_rng(6)
    prog = random_program(rng, (16, 16), max_offset=2)
    image = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    env = run_program(prog, image, return_all=True)
    layer = next(la for la in prog.layers if la.offset)
    env[layer.offset] = np.full_like(env[layer.offset], 3)
    with pytest.raises(ProgramError):
        run_layer(prog, layer, env)


def test_codenet_like_small_topology():
    rng = np.random.default_rng(8)
    prog = codenet_like_program(rng, 64, stage_channels=(8, 16, 32, 64, 64), stage_repeats=(2, 2, 2),
                                decoder=(32, 16, 16), head=16, num_classes=3)
    outs = run_program(prog, rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    assert outs["hm"].shape == (16, 16, 3) and outs["wh"].shape == (16, 16, 2) and outs["reg"].shape == (16, 16, 2)
    assert sum(layer.offset is not None for layer in prog.layers) == 6
    assert len(np.unique(outs["hm"])) > 20


@pytest.mark.slow
def test_golden_speed_512():
    rng = np.random.default_rng(9)
    prog = codenet_like_program(rng, 512)
    image = rng.integers(0, 256, (512, 512, 3), dtype=np.uint8)
    t0 = time.perf_counter()
    run_program(prog, image)
    assert time.perf_counter() - t0 < 10.0


# ----------------------------------------------------------------------------- serialisation
@pytest.fixture(scope="module")
def small_program() -> Program:
    return random_program(np.random.default_rng(11), (16, 16))


def test_roundtrip_bytes(small_program):
    doc, npz = small_program.to_bytes()
    back = Program.from_bytes(doc, npz)
    image = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    a, b = run_program(small_program, image), run_program(back, image)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert back.outputs == small_program.outputs and back.max_offset == small_program.max_offset
    for la, lb in zip(small_program.layers, back.layers):
        assert la.op == lb.op and la.attrs == lb.attrs
        assert all(np.array_equal(la.arrays[k], lb.arrays[k]) and la.arrays[k].dtype == lb.arrays[k].dtype
                   for k in la.arrays)


def _tampered(prog: Program, edit_doc=None, edit_arrays=None):
    doc, npz = prog.to_bytes()
    d = json.loads(doc)
    if edit_doc:
        edit_doc(d)
    arrays = dict(np.load(io.BytesIO(npz), allow_pickle=False))
    if edit_arrays:
        edit_arrays(arrays)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return json.dumps(d).encode(), buf.getvalue()


def _conv_index(d, offset=False):
    return next(i for i, la in enumerate(d["layers"]) if la["op"] == "conv" and (("offset" in la["attrs"]) == offset))


def _set(d, path, value):
    *head, last = path
    for p in head:
        d = d[p]
    d[last] = value


TAMPER_DOC = {
    "version": lambda d: d.update(version=99),
    "no_layers_key": lambda d: d.pop("layers"),
    "unknown_op": lambda d: d["layers"][0].update(op="gelu"),
    "missing_k": lambda d: d["layers"][_conv_index(d)]["attrs"].pop("k"),
    "bad_k": lambda d: d["layers"][_conv_index(d)]["attrs"].update(k=5),
    "stride_3": lambda d: d["layers"][_conv_index(d)]["attrs"].update(stride=3),
    "unknown_input": lambda d: d["layers"][1].update(inputs=["nope"]),
    "no_inputs": lambda d: d["layers"][1].update(inputs=[]),
    "wrong_shape": lambda d: d["tensors"][1].update(shape=[3, 3, 3]),
    "bad_kind": lambda d: d["tensors"][1].update(kind="u16"),
    "output_unknown": lambda d: d["outputs"].update(hm="nope"),
    "slice_range": lambda d: next(la for la in d["layers"] if la["op"] == "slice")["attrs"].update(c1=999),
    "shuffle_groups": lambda d: next(la for la in d["layers"] if la["op"] == "shuffle")["attrs"].update(groups=7),
    "clamp_outside_kind": lambda d: d["layers"][_conv_index(d)]["attrs"].update(hi=300),
    "offset_wrong_tensor": lambda d: d["layers"][_conv_index(d, True)]["attrs"].update(
        offset=d["layers"][_conv_index(d, True)]["inputs"][0]),
    "offset_pad": lambda d: d["layers"][_conv_index(d, True)]["attrs"].update(pad=2),
    "concat_scale": lambda d: [t.update(scale=t["scale"] * 2) for t in d["tensors"]
                               if t["name"] == next(la for la in d["layers"] if la["op"] == "concat")["inputs"][1]],
    "weight_bits": lambda d: d["layers"][_conv_index(d)]["attrs"].update(weight_bits=2),
    "array_key_missing": lambda d: d["layers"][_conv_index(d)]["arrays"].update(weight="l999.weight"),
    "attrs_not_dict": lambda d: d["layers"][0].update(attrs=[1, 2]),
}


@pytest.mark.parametrize("case", sorted(TAMPER_DOC))
def test_tampered_document_raises_program_error(small_program, case):
    doc, npz = _tampered(small_program, edit_doc=TAMPER_DOC[case])
    with pytest.raises(ProgramError):
        Program.from_bytes(doc, npz, source="model.codenet")


def _first_conv_key(arrays, name):
    return sorted(k for k in arrays if k.endswith("." + name))[0]


TAMPER_ARRAYS = {
    "weight_range": lambda a: a.update({_first_conv_key(a, "weight"): np.full_like(a[_first_conv_key(a, "weight")], -128)}),
    "weight_dtype": lambda a: a.update({_first_conv_key(a, "weight"): a[_first_conv_key(a, "weight")].astype(np.int32)}),
    "weight_shape": lambda a: a.update({_first_conv_key(a, "weight"): a[_first_conv_key(a, "weight")][:, :, :, :1]}),
    "m_zero": lambda a: a.update({_first_conv_key(a, "M"): np.zeros_like(a[_first_conv_key(a, "M")])}),
    "s_large": lambda a: a.update({_first_conv_key(a, "S"): np.full_like(a[_first_conv_key(a, "S")], 60)}),
    "bias_len": lambda a: a.update({_first_conv_key(a, "bias"): a[_first_conv_key(a, "bias")][:1]}),
    "bias_float": lambda a: a.update({_first_conv_key(a, "bias"): a[_first_conv_key(a, "bias")].astype(np.float32)}),
    "bias_overflow": lambda a: a.update({_first_conv_key(a, "bias"): np.full(a[_first_conv_key(a, "bias")].shape,
                                                                             2 ** 31 - 1, np.int64)}),
    "missing_array": lambda a: a.pop(_first_conv_key(a, "S")),
}


@pytest.mark.parametrize("case", sorted(TAMPER_ARRAYS))
def test_tampered_arrays_raise_program_error(small_program, case):
    doc, npz = _tampered(small_program, edit_arrays=TAMPER_ARRAYS[case])
    with pytest.raises(ProgramError):
        Program.from_bytes(doc, npz)


@pytest.mark.parametrize("doc,npz", [(b"{not json", None), (None, b"not a zip"), (b"\xff\xfe", None), (b"[]", None)])
def test_garbage_bytes_raise_program_error(small_program, doc, npz):
    good_doc, good_npz = small_program.to_bytes()
    with pytest.raises(ProgramError):
        Program.from_bytes(doc if doc is not None else good_doc, npz if npz is not None else good_npz)


def test_pickled_array_is_refused(small_program):
    doc, npz = small_program.to_bytes()
    arrays = dict(np.load(io.BytesIO(npz), allow_pickle=False))
    key = _first_conv_key(arrays, "weight")
    arrays[key] = np.array([{"evil": 1}], dtype=object)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    with pytest.raises(ProgramError):
        Program.from_bytes(doc, buf.getvalue())


def test_validate_names_the_layer():
    t = {"image": TensorInfo("image", (8, 8, 3), "u8", 1.0), "y": TensorInfo("y", (8, 8, 2), "u8", 0.1)}
    w = np.zeros((2, 1, 1, 3), np.int8)
    layer = Layer("conv", ["image"], "y", {"k": 1, "pad": 0},
                  {"weight": w, "bias": np.zeros(2, np.int32), "M": np.ones(2, np.int32), "S": np.full(2, 50, np.int32)},
                  name="stem")
    with pytest.raises(ProgramError, match="stem"):
        Program("image", t, [layer], {"hm": "y"}).validate()
