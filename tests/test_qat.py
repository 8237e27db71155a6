"""QAT graph: float mode equals the float model, exact mode equals the golden, QAT within tolerance."""

import numpy as np
import pytest
import torch

from codenet_pynq.golden import run_program
from codenet_pynq.training.config import load_config
from codenet_pynq.training.models import build_model
from codenet_pynq.training.quant.qgraph import QuantizationError, build_qgraph

TINY = ["model.input_size=64", "model.width=0.5x", "model.decoder_channels=[32,32,32]", "model.head_channels=16"]


def tiny_model(variant: str = "deform_square_depthwise_hw", seed: int = 0, layout: str = "torchvision"):
    torch.manual_seed(seed)
    cfg = load_config("configs/shapes_default.yaml", TINY + [f"model.variant={variant}",
                                                              f"model.backbone_layout={layout}"])
    model = build_model(cfg.model).train()
    with torch.no_grad():
        for mod in model.modules():  # offsets spread over 0..B so every dilation is used
            if hasattr(mod, "offset") and isinstance(mod.offset, torch.nn.Conv2d):
                torch.nn.init.normal_(mod.offset.weight, std=0.1)
                torch.nn.init.uniform_(mod.offset.bias, 0.0, 7.0)
        for _ in range(3):  # realistic BN statistics
            model(torch.rand(4, 3, 64, 64) * 255)
    return model.eval()


@pytest.fixture(scope="module")
def calibrated():
    model = tiny_model()
    graph = build_qgraph(model)
    images = torch.randint(0, 256, (4, 3, 64, 64)).float()
    graph.calibrate([images])
    return model, graph, images


@pytest.mark.parametrize("variant", ["deform_square_depthwise_hw", "k3dw"])
def test_float_mode_equals_float_model(variant):
    model = tiny_model(variant)
    graph = build_qgraph(model)
    graph.mode = "float"
    x = torch.randint(0, 256, (2, 3, 64, 64)).float()
    with torch.no_grad():
        a, b = graph(x), model(x)
    for k in ("hm", "wh", "reg"):
        assert torch.allclose(a[k], b[k], atol=1e-4, rtol=1e-4), k


def test_exact_mode_equals_golden_bit_for_bit(calibrated):
    _, graph, images = calibrated
    program = graph.to_program()
    graph.mode = "exact"
    with torch.no_grad():
        out = graph(images[:2])
    graph.mode = "qat"
    for i in range(2):
        gold = run_program(program, images[i].permute(1, 2, 0).numpy().astype(np.uint8))
        for role, name in graph.outputs.items():
            q = (out[role][i].double() / graph.scale(name)).round().permute(1, 2, 0).numpy()
            assert np.array_equal(q, gold[role].astype(np.float64)), role


def _qat_vs_golden(graph, images, program) -> dict:
    """Per head role, |QAT forward - golden| in output LSB over two images."""
    graph.mode = "qat"
    with torch.no_grad():
        out = graph(images[:2])
    diffs = {}
    for role, name in graph.outputs.items():
        d = []
        for i in range(2):
            gold = run_program(program, images[i].permute(1, 2, 0).numpy().astype(np.uint8))[role]
            q = (out[role][i].double() / graph.scale(name)).round().permute(1, 2, 0).numpy()
            d.append(np.abs(q - gold.astype(np.float64)))
        diffs[role] = np.stack(d)
    return diffs


def test_qat_forward_equals_golden(calibrated):
    """In eval mode the fake-quant forward uses the contract's integers with the deployed
    multipliers (M / 2^S, round half up): equal to the golden on every head element
    (tolerance 0) while conv sums stay below 2^24."""
    _, graph, images = calibrated
    program = graph.to_program()
    graph.eval()
    for role, d in _qat_vs_golden(graph, images, program).items():
        assert d.max() == 0, role


def test_qat_training_forward_uses_15_bit_multipliers(calibrated):
    """Training steps use 15-bit multipliers; the deployed ones are coarser where float32 allows.
    Tolerance of the training forward vs the golden (stated in docs/quantization.md): mean
    |difference| at most 1.5 LSB per head element (this tiny random model: 0.5-0.9; the shipped
    model: 1.0)."""
    _, graph, images = calibrated
    program = graph.to_program()
    convs = [m for m in graph.ops if hasattr(m, "weight")]
    s = {n: float(graph.scale(n)) for n in graph.tensors}
    trained = [c.requant_params(s[c.inp], s[c.out], deployed=False)[1] for c in convs]
    deployed = [c.requant_params(s[c.inp], s[c.out])[1] for c in convs]
    assert all(int(m.max()).bit_length() == 15 for m in trained)
    assert any(int(m.max()).bit_length() < 15 for m in deployed)
    assert all(np.array_equal(p.arrays["M"], m) for p, m in zip(program.conv_layers(), deployed))
    graph.train()
    try:
        diffs = _qat_vs_golden(graph, images, program)
    finally:
        graph.eval()
    total = sum(d.size for d in diffs.values())
    assert sum(float(d.sum()) for d in diffs.values()) / total <= 1.5  # mean |difference| in LSB


def test_qat_trains_offsets_and_weights(calibrated):
    _, graph, images = calibrated
    graph.mode = "qat"
    graph.train()
    out = graph(images[:2])
    sum(v.float().pow(2).mean() for v in out.values()).backward()
    convs = [m for m in graph.ops if hasattr(m, "weight")]
    assert all(m.weight.grad is not None for m in convs)
    offsets = [m for m in convs if m.kind == "off"]
    assert offsets and any(float(m.weight.grad.abs().sum()) > 0 for m in offsets)
    graph.zero_grad()
    graph.eval()


def test_program_is_valid_and_sized(calibrated):
    _, graph, _ = calibrated
    program = graph.to_program()
    kinds = {program.tensors[t].kind for t in program.tensors}
    assert kinds == {"u8", "s8", "off"}
    first = program.conv_layers()[0]
    assert first.attrs["weight_bits"] == 8 and first.arrays["weight"].shape[-1] == 3
    assert all(layer.attrs["weight_bits"] == 4 for layer in program.conv_layers()[1:])
    assert 0 < program.weight_bytes() < 2_000_000


def test_uncalibrated_graph_refuses_quantized_forward():
    graph = build_qgraph(tiny_model())
    with pytest.raises(QuantizationError, match="calibrat"):
        graph(torch.zeros(1, 3, 64, 64))
    with pytest.raises(QuantizationError, match="calibrate"):
        graph.to_program()


@pytest.mark.parametrize("variant", ["deform_square_depthwise", "k3", "deform_original_depthwise"])
def test_unsupported_variants_are_refused(variant):
    with pytest.raises(QuantizationError, match="cannot be quantized"):
        build_qgraph(tiny_model(variant))


def test_megvii_layout_is_refused():
    with pytest.raises(QuantizationError, match="torchvision"):
        build_qgraph(tiny_model(layout="megvii"))
