"""Tests of the published-engine model (benchmarks/published_model.py) and of the counted
performance report of this engine (benchmarks/perf_model.py, small network)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import published_model as pm  # noqa: E402

# ---------------------------------------------------------------- layer enumeration


def _layer(**kw) -> pm.Layer:
    base = dict(name="x", op="conv", section="t", h_in=16, w_in=16, c_in=32, h_out=16, w_out=16, c_out=64)
    base.update(kw)
    return pm.Layer(**base)


def test_macs_of_simple_layers_by_hand():
    pw = _layer()
    assert pw.macs == 16 * 16 * 64 * 32
    assert pw.params == 64 * 32 and pw.weight_bytes == 64 * 32 / 2
    dw = _layer(h_in=32, w_in=32, c_in=58, c_out=58, h_out=16, w_out=16, k=3, stride=2, groups=58)
    assert dw.depthwise and dw.macs == 16 * 16 * 58 * 9 and dw.params == 58 * 9
    stem = _layer(h_in=512, w_in=512, c_in=3, h_out=128, w_out=128, c_out=24, k=3, stride=4, weight_bits=8)
    assert stem.macs == 128 * 128 * 24 * 27 and stem.weight_bytes == 24 * 27
    up = _layer(op="upsample", c_in=64, c_out=64, h_out=32, w_out=32)
    assert up.macs == 0 and up.act_out_bytes == 32 * 32 * 64 and up.act_in_bytes == 16 * 16 * 64


def test_enumeration_shapes_and_data_ops():
    layers = pm.enumerate_layers(pm.named_config("c"))
    names = [la.name for la in layers]
    assert len(set(names)) == len(names)
    stem = next(la for la in layers if la.role == "stem")
    assert (stem.h_out, stem.c_out, stem.stride) == (128, 24, 4)
    conv5 = next(la for la in layers if la.name == "conv5")
    assert (conv5.h_in, conv5.c_in, conv5.c_out) == (16, 464, 1024)
    heads = [la for la in layers if la.role == "head_out"]
    assert [(h.h_out, h.c_out) for h in heads] == [(128, 20), (128, 2), (128, 2)]
    ops = {la.op for la in layers}
    assert {"split", "concat", "shuffle", "upsample", "layout"} <= ops
    assert sum(la.op == "shuffle" for la in layers) == sum(pm.SHUFFLENET_REPEATS)
    assert sum(la.op == "split" for la in layers) == sum(pm.SHUFFLENET_REPEATS) - 3
    ups = [la for la in layers if la.op == "upsample"]
    assert [(u.h_in, u.h_out, u.c_out) for u in ups] == [(16, 32, 256), (32, 64, 128), (64, 128, 64)]
    dws = [la for la in layers if la.deformable]
    assert len(dws) == 6 and all(la.depthwise for la in dws)
    # every input name refers to an earlier layer
    seen = set()
    for la in layers:
        assert set(la.inputs) <= seen
        seen.add(la.name)


def test_maxpool_stem_variant():
    layers = pm.enumerate_layers(pm.named_config("e"))
    pool = next(la for la in layers if la.op == "maxpool")
    stem = next(la for la in layers if la.role == "stem")
    assert (stem.h_out, pool.h_out) == (256, 128)


@pytest.mark.parametrize("name", ["a", "b", "c", "d", "e"])
def test_totals_close_to_published(name):
    tot = pm.network_totals(pm.enumerate_layers(pm.named_config(name)))
    pub = pm.PUBLISHED_TABLE[name]
    assert tot.gmacs == pytest.approx(pub["gmacs"], rel=0.05)
    assert tot.params_mib == pytest.approx(pub["params_mb"], rel=0.05)


@pytest.mark.parametrize("width,official_mmacs", [(0.5, 41), (1.0, 146), (1.5, 299), (2.0, 591)])
def test_backbone_matches_shufflenetv2_flops(width, official_mmacs):
    """ImageNet ShuffleNetV2 at 224 (stem s2 + maxpool) plus its FC layer: published FLOPs."""
    layers = pm.enumerate_layers(pm.ModelConfig("x", width, 224, "conv_s2_maxpool"))
    backbone = sum(la.macs for la in layers if la.section in ("stem", "stage2", "stage3", "stage4", "conv5"))
    fc = pm.SHUFFLENET_CHANNELS[width][4] * 1000
    assert (backbone + fc) / 1e6 == pytest.approx(official_mmacs, rel=0.02)


@pytest.mark.parametrize("name,gop", [("a", 0.57302), ("c", 2.29208), ("d", 6.64141)])
def test_notebook_graph_reproduces_published_op_count(name, gop):
    """The notebook graph gives exactly the operation count the published notebook reported."""
    calls = pm.published_calls(pm.enumerate_layers(pm.named_config(name, graph="notebook")))
    assert pm.notebook_gop(calls) == pytest.approx(gop, rel=2e-3)


def test_layers_from_program():
    prog = [
        {"op": "conv", "in": (64, 64, 3), "out": (16, 16, 24), "k": 3, "stride": 4},
        {"op": "pw", "in": (16, 16, 24), "out": (16, 16, 64)},
        {"op": "offset", "in": (16, 16, 64), "out": (16, 16, 1)},
        {"op": "dw", "in": (16, 16, 64), "out": (16, 16, 64), "has_offset": True, "inputs": ["L1", "L2"]},
        {"op": "upsample", "in": (16, 16, 64), "out": (32, 32, 64)},
    ]
    layers = pm.layers_from_program(prog)
    assert [la.role for la in layers] == ["stem", "pw", "offset", "dw", ""]
    assert layers[0].weight_bits == 8 and layers[0].macs == 16 * 16 * 24 * 27
    assert layers[3].depthwise and layers[3].deformable and layers[3].inputs == ("L1", "L2")
    for eng in (pm.PUBLISHED_ENGINE,):
        rep = pm.estimate(layers, eng, "prog")
        assert rep.total_ms > 0 and rep.macs == sum(la.macs for la in layers)


# ---------------------------------------------------------------- published engine validation


@pytest.mark.parametrize("name", ["a", "c"])
def test_published_configs_within_25_percent(name):
    row = pm.published_validation()[name]
    assert row["model_fps"] == pytest.approx(row["pub_fps"], rel=0.25)
    assert row["model_timed_fps"] == pytest.approx(row["pub_timed_fps"], rel=0.25)
    for stage in ("first_layer", "conv", "shuffle", "upsample"):
        assert row[f"model_{stage}"] == pytest.approx(row[f"pub_{stage}"], rel=0.25), stage


def test_published_all_configs_fps_within_25_percent():
    for name, row in pm.published_validation().items():
        assert row["model_fps"] == pytest.approx(row["pub_fps"], rel=0.25), name
        assert row["model_conv"] == pytest.approx(row["pub_conv"], rel=0.25), name


def test_published_per_call_within_25_percent():
    for shape, pub_us, model_us in pm.published_call_check():
        assert model_us == pytest.approx(pub_us, rel=0.25), shape


def test_published_splits_wide_layers():
    calls = pm.published_calls(pm.enumerate_layers(pm.named_config("c")))
    assert all(c.oc <= 512 and (c.pw or c.ic <= 512) for c in calls)
    conv5 = [c for c in calls if c.name.startswith("conv5")]
    assert len(conv5) == 2
    # deformable depthwise runs alone (its offsets come from a separate call)
    assert all(not c.pw for c in calls if c.deform)


# ---------------------------------------------------------------- our engine


# ---------------------------------------------------------------- report and CLI


def test_markdown_renders():
    layers = pm.enumerate_layers(pm.named_config("a"))
    for eng in (pm.PUBLISHED_ENGINE,):
        rep = pm.estimate(layers, eng, "a")
        md = rep.to_markdown()
        assert md.startswith("### a on ")
        assert "| total ms | fps |" in md and not re.search(r"\b(nan|inf)\b", md)
        table_rows = [ln for ln in md.splitlines() if ln.startswith("| ") and ln[2:3].isdigit()]
        assert len(table_rows) >= len(rep.rows)
        assert len(rep.to_markdown(per_row=False)) < len(md)
        assert sum(rep.by_category().values()) == pytest.approx(rep.total_ms)
        assert sum(rep.by_section().values()) == pytest.approx(rep.total_ms)


def test_cli_prints_report(capsys):
    assert pm.main(["--config", "a", "--summary"]) == 0
    out = capsys.readouterr().out
    assert "a-notebook on published" in out and "GMACs" in out


def test_fitted_parameters_are_listed_with_their_data():
    assert len(pm.FITTED_PARAMETERS) == 10
    for k in pm.FITTED_PARAMETERS:
        assert hasattr(pm.PUBLISHED_ENGINE, k)


# ---------------------------------------------------------------- counted report (this engine)
def test_account_of_a_small_network_follows_the_dataflow_structure():
    """The per-descriptor time is the maximum of the overlapped stages plus serial parts, never
    less than any stage's loop cycles, and the bursts are what the row loops make."""
    from codenet_pynq.accel import emulib
    from codenet_pynq.accel.compile import compile_program
    from codenet_pynq.synthetic import codenet_like_program

    rng = np.random.default_rng(0)
    prog = codenet_like_program(rng, input_size=64, stage_channels=(8, 16, 32, 64, 96), decoder=(32, 16, 16),
                                head=16, num_classes=3, stage_repeats=(2, 3, 2), stem="conv_s4")
    cp = compile_program(prog)
    acc = emulib.account(cp, rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    assert len(acc) == cp.n_layers
    for a in acc:
        c = a["cycles"][250.0]
        assert c >= max(a["loops"][k] for k in ("load", "mac", "dw", "store"))
        assert a["cycles"][200.0] <= c + 1e-6  # DDR is relatively faster at a slower clock
        assert a["bursts"]["act_rd"] <= a["beats"]["act_rd"]
        if a["beats"]["act_wr"]:
            assert a["bursts"]["act_wr"] >= 1
    # whole-row writes: a row of the output buffer is one burst (at most 256 beats, 4 KB aligned)
    head = [a for a, inf in zip(acc, cp.info) if inf.layers[0] == "head.hm.out"][0]
    assert head["beats"]["act_wr"] / head["bursts"]["act_wr"] >= 8
    assert sum(a["macs"] for a in acc) >= prog.macs()
