"""ShuffleNetV2 backbone, local pretrained weights, CoDeNet variants, and the float ONNX export."""

from __future__ import annotations

import copy
import re

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn as nn  # noqa: E402

from codenet_pynq.training.models import VARIANTS, ModelConfig, build_model, conv_macs, count_parameters  # noqa: E402
from codenet_pynq.training.models.blocks import DeformConv  # noqa: E402
from codenet_pynq.training.models.shufflenetv2 import (  # noqa: E402
    STAGE_CHANNELS,
    STAGE_REPEATS,
    ShuffleNetV2,
    ShuffleUnit,
    channel_shuffle,
    load_backbone_weights,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# small decoder/heads keep the variant sweeps fast; the main configuration is tested separately
SMALL = dict(width="0.5x", decoder_channels=(64, 32, 32), head_channels=32, num_classes=3)


def _randomize_bn(model: nn.Module, seed: int = 0) -> None:
    """Non-trivial BN statistics and affine parameters (eval mode then does real work)."""
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=gen) * 0.1)


# ----------------------------------------------------------------------------- ShuffleNetV2


@pytest.mark.parametrize("width", list(STAGE_CHANNELS))
def test_backbone_output_shape_every_width(width):
    net = ShuffleNetV2(width).eval()
    with torch.no_grad():
        out = net(torch.rand(2, 3, 64, 96) * 255)
    assert out.shape == (2, STAGE_CHANNELS[width][4], 2, 3)
    assert net.out_channels == STAGE_CHANNELS[width][4]


def test_backbone_rejects_unknown_width_and_layout():
    with pytest.raises(ValueError, match="width"):
        ShuffleNetV2("3.0x")
    with pytest.raises(ValueError, match="layout"):
        ShuffleNetV2("1.0x", layout="caffe")


def test_channel_shuffle_semantics():
    x = torch.arange(6.0).view(1, 6, 1, 1)
    assert channel_shuffle(x, 2).flatten().tolist() == [0.0, 3.0, 1.0, 4.0, 2.0, 5.0]
    assert channel_shuffle(x, 3).flatten().tolist() == [0.0, 2.0, 4.0, 1.0, 3.0, 5.0]
    y = torch.randn(2, 8, 3, 4)
    torch.testing.assert_close(channel_shuffle(y, 2)[:, 1::2], y[:, 4:])  # inverse is a reshape, exact


def test_unit_layouts_split_and_shuffle():
    """torchvision: chunk halves, concat, shuffle. megvii: even/odd split, concat, no shuffle."""
    torch.manual_seed(0)
    tv = ShuffleUnit(8, 8, 1, "torchvision").eval()
    mg = ShuffleUnit(8, 8, 1, "megvii").eval()
    _randomize_bn(tv)
    mg.load_state_dict(tv.state_dict())
    x = torch.randn(2, 8, 5, 5)
    with torch.no_grad():
        want_tv = channel_shuffle(torch.cat((x[:, :4], tv.branch2(x[:, 4:])), 1), 2)
        want_mg = torch.cat((x[:, 0::2], mg.branch2(x[:, 1::2])), 1)
        torch.testing.assert_close(tv(x), want_tv)
        torch.testing.assert_close(mg(x), want_mg)
        assert not torch.allclose(tv(x), mg(x))
    for layout in ("torchvision", "megvii"):  # stride 2: both branches see the whole input
        u = ShuffleUnit(8, 16, 2, layout).eval()
        with torch.no_grad():
            cat = torch.cat((u.branch1(x), u.branch2(x)), 1)
            torch.testing.assert_close(u(x), cat if layout == "megvii" else channel_shuffle(cat, 2))


# ----------------------------------------------------------------------------- backbone weights


def _fresh(width: str = "0.5x", layout: str = "torchvision", seed: int = 0) -> ShuffleNetV2:
    torch.manual_seed(seed)
    net = ShuffleNetV2(width, layout)
    _randomize_bn(net, seed)
    return net.eval()


def _to_megvii_key(key: str) -> str:
    """Inverse of the loader's megvii -> torchvision key mapping."""
    if key.startswith("conv1."):
        return "first_conv." + key[len("conv1."):]
    if key.startswith("conv5."):
        return "conv_last." + key[len("conv5."):]
    m = re.match(r"stage(\d)\.(\d+)\.branch([12])\.(.+)", key)
    assert m, key
    stage, unit, branch, rest = int(m.group(1)) - 2, int(m.group(2)), m.group(3), m.group(4)
    idx = sum(STAGE_REPEATS[:stage]) + unit
    return f"features.{idx}.{'branch_main' if branch == '2' else 'branch_proj'}.{rest}"


def _same_outputs(a: ShuffleNetV2, b: ShuffleNetV2) -> None:
    x = torch.rand(1, 3, 64, 64) * 255
    with torch.no_grad():
        torch.testing.assert_close(a(x), b(x), rtol=0, atol=0)


def test_load_torchvision_layout_file(tmp_path):
    src, dst = _fresh(seed=1), _fresh(seed=2)
    path = tmp_path / "tv.pth"
    torch.save({"state_dict": src.state_dict()}, path)  # wrapped form is accepted too
    missing = load_backbone_weights(dst, str(path))
    assert missing == []
    _same_outputs(src, dst.eval())


def test_load_megvii_layout_file(tmp_path):
    src, dst = _fresh(layout="megvii", seed=3), _fresh(layout="megvii", seed=4)
    state = {"module." + _to_megvii_key(k): v for k, v in src.state_dict().items() if not k.startswith("pixel_")}
    state["classifier.0.weight"] = torch.zeros(10, 1024)  # not a backbone key: ignored
    assert any(k.startswith("module.features.15.branch_main") for k in state)
    path = tmp_path / "megvii.pth"
    torch.save(state, path)
    assert load_backbone_weights(dst, str(path)) == []
    _same_outputs(src, dst.eval())


def test_load_wrong_width_names_file_and_key(tmp_path):
    path = tmp_path / "half.pth"
    torch.save(_fresh("0.5x").state_dict(), path)
    with pytest.raises(ValueError) as e:
        load_backbone_weights(_fresh("1.0x"), str(path))
    msg = str(e.value)
    assert str(path) in msg
    assert re.search(r"stage\d\.\d+\.branch\d\.\d+\.\w+", msg), msg
    assert "width" in msg


def test_load_wrong_layout_is_a_clear_error(tmp_path):
    tv_path, mg_path = tmp_path / "tv.pth", tmp_path / "mg.pth"
    torch.save(_fresh().state_dict(), tv_path)
    torch.save({_to_megvii_key(k): v for k, v in _fresh(layout="megvii").state_dict().items()
                if not k.startswith("pixel_")}, mg_path)
    with pytest.raises(ValueError, match="backbone_layout='megvii'"):
        load_backbone_weights(_fresh(layout="torchvision"), str(mg_path))
    with pytest.raises(ValueError, match="backbone_layout='torchvision'"):
        load_backbone_weights(_fresh(layout="megvii"), str(tv_path))


def test_load_missing_file_says_nothing_is_downloaded(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing is downloaded"):
        load_backbone_weights(_fresh(), str(tmp_path / "absent.pth"))


def test_build_model_loads_backbone_weights(tmp_path):
    src = _fresh("0.5x", seed=5)
    path = tmp_path / "bb.pth"
    torch.save(src.state_dict(), path)
    model = build_model(ModelConfig(**SMALL), backbone_weights=str(path)).eval()
    _same_outputs(src, model.backbone)


# ----------------------------------------------------------------------------- CoDeNet


@pytest.mark.parametrize("variant", VARIANTS)
def test_codenet_output_shapes(variant):
    model = build_model(ModelConfig(variant=variant, **SMALL)).eval()
    for size in (64, 96):
        with torch.no_grad():
            out = model(torch.rand(1, 3, size, size) * 255)
        assert set(out) == {"hm", "wh", "reg"}
        assert out["hm"].shape == (1, 3, size // 4, size // 4)
        assert out["wh"].shape == (1, 2, size // 4, size // 4)
        assert out["reg"].shape == (1, 2, size // 4, size // 4)


def test_main_variant_default_config_shapes_and_heatmap_prior():
    cfg = ModelConfig(input_size=64)
    assert cfg.variant == "deform_square_depthwise_hw" and cfg.decoder_channels == (512, 256, 128)
    model = build_model(cfg).eval()
    with torch.no_grad():
        assert model(torch.rand(1, 3, 96, 96) * 255)["reg"].shape == (1, 2, 24, 24)
        out = model(torch.rand(1, 3, 64, 64) * 255)
    assert out["hm"].shape == (1, 20, 16, 16)
    # heatmap bias prior 0.01: untrained logits sit near log(0.01 / 0.99)
    assert abs(float(out["hm"].mean()) - np.log(0.01 / 0.99)) < 0.1


@pytest.mark.parametrize("kwargs, match", [
    (dict(variant="k5"), "variant"),
    (dict(width="0.75x"), "width"),
    (dict(input_size=100), "multiple of 32"),
    (dict(decoder_channels=(256, 128)), "3 decoder_channels"),
    (dict(num_classes=2, class_names=("a", "b", "c")), "class_names"),
])
def test_model_config_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ModelConfig(**kwargs)


def test_model_config_dict_round_trip_and_unknown_field():
    cfg = ModelConfig(num_classes=2, class_names=("cat", "dog"), decoder_channels=[64, 32, 16])
    d = cfg.to_dict()
    assert d["decoder_channels"] == [64, 32, 16] and d["class_names"] == ["cat", "dog"]
    assert ModelConfig.from_dict(d) == cfg
    with pytest.raises(ValueError, match="unknown model config field"):
        ModelConfig.from_dict({**d, "dropout": 0.5})


def test_parameter_and_mac_counts():
    main = build_model(ModelConfig())
    assert count_parameters(main) == sum(p.numel() for p in main.parameters())
    assert 2_000_000 < count_parameters(main) < 10_000_000
    main.train()
    macs = conv_macs(main, 128)
    assert main.training  # mode restored
    assert conv_macs(main, 64) * 4 == macs  # fully convolutional: exactly quadratic in the side
    assert 1.9e9 < 16 * macs < 2.3e9  # ~2.1 GMACs at 512
    # the hardware block adds only the 1x1 offset conv (out -> 1) to k3dw
    k3dw = build_model(ModelConfig(variant="k3dw"))
    assert macs - conv_macs(k3dw, 128) == sum(
        (128 // s) ** 2 * c for s, c in ((32, 512), (16, 256), (8, 128), (4, 128), (4, 128), (4, 128)))
    small = {v: build_model(ModelConfig(variant=v, **SMALL)) for v in ("k3", "k3dw", "deform_square")}
    assert conv_macs(small["k3"], 64) > 2 * conv_macs(small["k3dw"], 64)
    assert count_parameters(small["deform_square"]) > count_parameters(small["k3"])  # + offset convs


# ----------------------------------------------------------------------------- float ONNX export


def _images(seed: int, n: int, size: int) -> np.ndarray:
    """``n`` smooth random uint8 NHWC images (blobs plus a little noise), like letterboxed photos."""
    gen = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, 5, 5, generator=gen) * 255
    img = nn.functional.interpolate(low, size=(size, size), mode="bicubic", align_corners=False)
    img = img + torch.randn(img.shape, generator=gen) * 8
    return img.clamp(0, 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def _calibrate_bn(model: nn.Module, x: torch.Tensor) -> None:
    """BN running statistics := the statistics of batch ``x`` (one train-mode pass)."""
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the passes since the reset: here one batch
    model.train()
    model(x)
    for m in bns:
        m.momentum = 0.1
    model.eval()


def _calibrated(cfg: ModelConfig, seed: int, x: torch.Tensor) -> nn.Module:
    """A model with BN statistics of the batch ``x``, O(1) outputs and spread offsets.

    Calibrating on the batch that is evaluated keeps every BN well conditioned (a channel that
    is near-constant on unrelated calibration data would amplify float rounding by up to 300x).
    """
    torch.manual_seed(seed)
    model = build_model(cfg)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, DeformConv):
                nn.init.normal_(m.offset.weight, std=0.5)
        for head in (model.hm, model.wh, model.reg):
            nn.init.normal_(head.out.weight, std=0.01)
        _calibrate_bn(model, x)
        # offset convs: hardware offsets spread over about -1 .. B + 1 on this data (clamped to
        # 0 .. B, every rounded value occurs); bilinear square offsets around 2 +- 0.5 and free
        # (dy, dx) offsets around 0 +- 0.5: a continuous offset amplifies the float32 rounding of
        # its features by its gain, and a larger gain would put even eager float32 further than
        # 1e-4 from float64 on this randomly initialised net
        acts = {}
        hooks = [m.register_forward_hook(lambda mod, i, o: acts.__setitem__(mod, i[0]))
                 for m in model.modules() if isinstance(m, DeformConv)]
        model(x)
        for h in hooks:
            h.remove()
        for m, a in acts.items():
            raw = nn.functional.conv2d(a, m.offset.weight, padding=m.offset.padding)
            mean, std = {"square_hw": (m.max_offset / 2, (m.max_offset + 2) / 4), "square": (2.0, 0.5)}.get(
                m.mode, (0.0, 0.5))
            scale = std / float(raw.std().clamp_min(1e-6))
            m.offset.weight.mul_(scale)
            m.offset.bias.fill_(mean - float(raw.mean()) * scale)
        _calibrate_bn(model, x)
    return model


def _raw_hw_offsets(model: nn.Module, x: torch.Tensor) -> list:
    """The clamped, not yet rounded offsets of every hardware block."""
    raws = []

    def hook(mod, inp, out):
        if mod.mode == "square_hw":
            raws.append(torch.clamp(mod.offset(inp[0]), 0, mod.max_offset).double())

    hooks = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, DeformConv)]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return raws


def _tie_safe(model: nn.Module, exact: nn.Module, x: torch.Tensor) -> bool:
    """No hardware offset within 3x its float32 rounding noise of a rounding tie (k + 0.5).

    Rounding is discontinuous: two float32 implementations may round such an offset apart.
    """
    for r32, r64 in zip(_raw_hw_offsets(model, x), _raw_hw_offsets(exact, x.double())):
        noise = float((r32 - r64).abs().max())
        if float((r64 - torch.floor(r64) - 0.5).abs().min()) < 3 * noise + 1e-6:
            return False
    return True


def _export_and_compare(cfg: ModelConfig, optimize: bool = True) -> None:
    ort = pytest.importorskip("onnxruntime")
    from codenet_pynq.training.export import float_onnx_bytes

    size = cfg.input_size
    for seed in range(8):
        batch = _images(seed, 4, size)
        model = _calibrated(cfg, seed, torch.from_numpy(batch).permute(0, 3, 1, 2).float())
        pixels = batch[:1]
        x = torch.from_numpy(pixels).permute(0, 3, 1, 2).float()
        exact = copy.deepcopy(model).double()
        with torch.no_grad():
            ref, ref64 = model(x), exact(x.double())
        live = float(ref["wh"].abs().max()) > 0.02  # not a net whose ReLUs all died
        # a random net on which eager float32 itself is within 5e-5 of float64 (some random nets
        # amplify rounding ~10x more), so that a 1e-4 gap would be the export's; and no hardware
        # offset on a rounding tie, where any float difference flips the dilation
        noise = max(float((ref[k].double() - ref64[k]).abs().max()) for k in ref)
        if live and noise < 5e-5 and _tie_safe(model, exact, x):
            break
    else:
        pytest.fail(f"no well-conditioned random {cfg.variant} net in 8 seeds")
    model.train()  # the export must evaluate in eval mode and restore the mode
    onnx_bytes = float_onnx_bytes(model, size, optimize=optimize)
    assert model.training
    model.eval()
    sess = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["image"]
    outs = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {"image": pixels})))
    for name in ("hm", "wh", "reg"):
        r = ref[name].numpy()
        assert outs[name].shape == r.shape
        # magnitudes: hm logits -4.6 (prior) +- ~0.3, |wh|, |reg| up to ~0.05..0.3; float32
        # through this randomly initialised net differs from float64 by ~1e-5 even for k3dw
        assert (4.0 < np.abs(r).max() < 6.0) if name == "hm" else (0.02 < np.abs(r).max() < 2.0), (name, np.abs(r).max())
        np.testing.assert_allclose(outs[name], r, rtol=0, atol=1e-4, err_msg=f"{cfg.variant} {name}")


# one export takes seconds: the default run covers the main variant, the rest runs with -m slow
FAST_EXPORT = ("deform_square_depthwise_hw",)


@pytest.mark.parametrize("variant", [v if v in FAST_EXPORT else pytest.param(v, marks=pytest.mark.slow)
                                     for v in VARIANTS])
def test_float_onnx_matches_pytorch_every_variant(variant):
    _export_and_compare(ModelConfig(variant=variant, input_size=64, **SMALL))


@pytest.mark.slow
def test_float_onnx_matches_pytorch_main_variant():
    """The shipped configuration (decoder 512-256-128, head 128, 20 classes) at input 64."""
    _export_and_compare(ModelConfig(input_size=64))


@pytest.mark.slow
def test_float_onnx_main_variant_96():
    """Heads at 24 x 24: all nine dilation branches distinct; decoder at 3 x 3: branches merged."""
    _export_and_compare(ModelConfig(input_size=96))


@pytest.mark.slow
def test_float_onnx_literal_export_matches_too():
    _export_and_compare(ModelConfig(input_size=64, **SMALL), optimize=False)


# ----------------------------------------------------------------------------- export formulation


def test_dilation_branches_merge_centre_only_dilations():
    from codenet_pynq.training.onnx_opt import dilation_branches

    assert dilation_branches(128, 128, 8) == list(range(9))
    assert dilation_branches(16, 16, 8) == list(range(9))
    assert dilation_branches(8, 8, 8) == list(range(8))  # dilation 8 and 9: centre tap only
    assert dilation_branches(2, 2, 8) == [0, 1]
    assert dilation_branches(1, 1, 8) == [0]
    assert dilation_branches(2, 6, 8) == list(range(6))  # taps along the long side still land


@pytest.mark.parametrize("size, small", [(32, True), (64, True), (96, False)])
def test_export_graph_equals_eager_in_float64(size, small):
    """The export formulation is the eager model's function (float64: no rounding noise)."""
    from codenet_pynq.training.onnx_opt import ExportGraph

    cfg = ModelConfig(input_size=size, **(SMALL if small else {}))
    batch = torch.from_numpy(_images(size, 2, size)).permute(0, 3, 1, 2).float()
    model = _calibrated(cfg, 0, batch).double()
    x = batch.double()
    with torch.no_grad():
        want, got = model(x), ExportGraph(model)(x)
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=1e-12, atol=1e-10)
    offsets = torch.cat([r.flatten() for r in _raw_hw_offsets(model, x)])
    assert len(torch.unique(torch.floor(offsets + 0.5))) >= (6 if size >= 64 else 2)  # dilations occur


def test_export_graph_mixed_blocks_apply_the_pending_upsample():
    """A head that is not a hardware square block gets the decoder's upsample applied first."""
    from codenet_pynq.training.onnx_opt import ExportGraph

    cfg = ModelConfig(input_size=32, **SMALL)
    batch = torch.from_numpy(_images(32, 2, 32)).permute(0, 3, 1, 2).float()
    model = _calibrated(cfg, 0, batch).double()
    c_in, c_mid = model.hm.conv[0][0].in_channels, model.hm.bn.num_features
    model.hm.conv = torch.nn.Conv2d(c_in, c_mid, 3, padding=1).double()
    x = batch.double()
    with torch.no_grad():
        want, got = model(x), ExportGraph(model)(x)
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=1e-12, atol=1e-10)


def test_export_graph_is_the_model_for_other_variants():
    from codenet_pynq.training.onnx_opt import ExportGraph, hw_square_block

    model = build_model(ModelConfig(variant="deform_square_depthwise", **SMALL)).eval()
    assert all(hw_square_block(s.conv) is None for s in model.decoder)
    x = torch.rand(1, 3, 64, 64) * 255
    with torch.no_grad():
        for k, v in ExportGraph(model)(x).items():
            assert torch.equal(v, model(x)[k])


def test_float_graph_has_no_straight_through_terms():
    """Exported without autograd: no zero-valued gradient plumbing (s - s.detach()) * diff."""
    onnx = pytest.importorskip("onnx")
    from codenet_pynq.training.export import float_onnx_bytes

    model = build_model(ModelConfig(input_size=64, **SMALL))
    graph = onnx.load_from_string(float_onnx_bytes(model, 64)).graph
    ops = [n.op_type for n in graph.node]
    assert ops.count("Sub") == 1  # only the pixel mean
    literal = onnx.load_from_string(float_onnx_bytes(model, 64, optimize=False)).graph
    assert [n.op_type for n in literal.node].count("Sub") == 1


@pytest.mark.slow
def test_optimized_graph_equals_literal_graph_at_512():
    """At the deployed size the export formulation and the literal export agree (both in ORT).

    (Against eager PyTorch, a random net at 512 has offsets within ~1e-5 of a rounding tie, which
    float32 evaluation order alone may round apart; the two ORT graphs share the backbone bits.)
    """
    ort = pytest.importorskip("onnxruntime")
    from codenet_pynq.training.export import float_onnx_bytes

    batch = _images(0, 4, 512)
    model = _calibrated(ModelConfig(input_size=512), 0, torch.from_numpy(batch).permute(0, 3, 1, 2).float())
    outs = [ort.InferenceSession(float_onnx_bytes(model, 512, optimize=opt)).run(None, {"image": batch[:1]})
            for opt in (True, False)]
    for a, b in zip(*outs):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)
