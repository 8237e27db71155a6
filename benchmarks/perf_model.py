"""Accelerator performance report: this engine's counted cycles beside the published engine.

    python benchmarks/perf_model.py               # writes docs/benchmarks.md (table), docs/perf_model.md, plot
    python benchmarks/perf_model.py --calibrate   # re-run the published-engine parameter fit and print it

Our engine: *counted* -- the FPGA'21 networks (configs a, c) are compiled and run through the
engine's C++ (the emulation library), whose processes count every loop at its declared II plus its
pipeline depth per entry and every m_axi access as bursts under the documented LPDDR4 model
(hls_src/cn_account.h).  Resources: the budget estimator (hls_src/tools/budget.py).  The published
engine: the paper's fps, and a model fitted to its published timings with in-sample and
out-of-sample (leave-one-out refit) errors.  Needs the emulation library (make -C hls_src lib).
"""

from __future__ import annotations

import argparse
import io
import math
import os
import sys
from dataclasses import replace
from typing import Callable, Dict, Iterable, List, Sequence, Tuple

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import published_model as pm  # noqa: E402

from codenet_pynq.files import atomic_write  # noqa: E402

BEGIN = "<!-- BEGIN GENERATED: benchmarks/perf_model.py -->"
END = "<!-- END GENERATED -->"
CONFIGS = ("a", "b", "c", "d", "e")


def _err(model: float, pub: float) -> str:
    return f"{100 * (model / pub - 1):+.0f}%" if pub else "n/a"


def _table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> List[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return out + [""]


# ------------------------------------------------------------------------------ calibration


def _grid(objective: Callable[[pm.PublishedEngine], float], eng: pm.PublishedEngine,
          grids: Dict[str, Sequence[float]]) -> Tuple[pm.PublishedEngine, float]:
    """Exhaustive search over the product of ``grids`` (few parameters at a time)."""
    best, best_val = eng, math.inf
    keys = list(grids)

    def rec(i: int, cur: pm.PublishedEngine) -> None:
        nonlocal best, best_val
        if i == len(keys):
            val = objective(cur)
            if val < best_val:
                best, best_val = cur, val
            return
        for v in grids[keys[i]]:
            rec(i + 1, replace(cur, **{keys[i]: v}))

    rec(0, eng)
    return best, best_val


def _rms(xs: Sequence[float]) -> float:
    return math.sqrt(sum(x * x for x in xs) / len(xs))


def calibrate(eng: pm.PublishedEngine = pm.PUBLISHED_ENGINE) -> pm.PublishedEngine:
    """Fit the published engine's parameters, one group at a time, in log-error least squares."""
    graphs = {n: pm.enumerate_layers(pm.named_config(n, graph="notebook")) for n in CONFIGS}

    def cat(e: pm.PublishedEngine, n: str, c: str) -> float:
        return pm.estimate(graphs[n], e).by_category()[c]

    def accel_obj(e: pm.PublishedEngine) -> float:
        calls = [math.log(m / p) for _, p, m in pm.published_call_check(e)]
        totals = [math.log(cat(e, n, "conv") / pm.PUBLISHED_BREAKDOWN_MS[n]["conv"]) for n in ("a", "c", "d")]
        return math.hypot(_rms(calls), _rms(totals))

    eng, v = _grid(accel_obj, eng, {"call_overhead_us": range(40, 101, 2), "pw_restart_cycles": range(0, 31, 2),
                                    "lb_restart_cycles": range(10, 61, 2)})
    print(f"accelerator calls: rms log error {v:.3f}")

    def stage_obj(stage: str) -> Callable[[pm.PublishedEngine], float]:
        return lambda e: _rms([math.log(cat(e, n, stage) / pm.PUBLISHED_BREAKDOWN_MS[n][stage]) for n in CONFIGS])

    eng, v = _grid(stage_obj("split"), eng, {"cpu_op_us": [x / 2 for x in range(10, 41)]})
    print(f"split: rms {v:.3f}")
    eng, v = _grid(stage_obj("shuffle"), eng, {"cpu_strided_gbps": [x / 100 for x in range(15, 41)]})
    print(f"shuffle: rms {v:.3f}")
    eng, v = _grid(stage_obj("upsample"), eng, {"cpu_copy_l2_gbps": [x / 20 for x in range(16, 61)],
                                                "cpu_copy_gbps": [x / 20 for x in range(8, 41)]})
    print(f"upsample: rms {v:.3f}")

    def first_obj(e: pm.PublishedEngine) -> float:
        return _rms([math.log(cat(e, n, "first_layer") / pm.PUBLISHED_BREAKDOWN_MS[n]["first_layer"])
                     for n in ("a", "c")])

    eng, v = _grid(first_obj, eng, {"cpu_conv_gmacs": [x / 10 for x in range(15, 41)],
                                    "cpu_conv_fixed_us": range(0, 1501, 50)})
    print(f"first layer (a, c): rms {v:.3f}")

    def fps_obj(e: pm.PublishedEngine) -> float:
        return _rms([math.log(pm.estimate(graphs[n], e).fps / pm.PUBLISHED_TABLE[n]["fps"]) for n in CONFIGS])

    eng, v = _grid(fps_obj, eng, {"reg_write_us": [x / 10 for x in range(0, 81, 2)]})
    print(f"paper fps (host work): rms {v:.3f}")
    return eng


# ------------------------------------------------------------------------------ sections


def section_network() -> List[str]:
    rows = []
    for n in CONFIGS:
        cfg = pm.named_config(n)
        tot = pm.network_totals(pm.enumerate_layers(cfg))
        tot3 = pm.network_totals(pm.enumerate_layers(replace(cfg, offset_kernel=3)))
        nb = pm.network_totals(pm.enumerate_layers(pm.named_config(n, graph="notebook")))
        pub = pm.PUBLISHED_TABLE[n]
        rows.append((n, cfg.input_size, f"{cfg.width:g}x", cfg.stem, f"{tot.gmacs:.3f}", f"{pub['gmacs']:.2f}",
                     _err(tot.gmacs, pub["gmacs"]), f"{tot3.gmacs:.3f} ({_err(tot3.gmacs, pub['gmacs'])})",
                     f"{tot.params_mib:.3f}", f"{tot.weight_bytes / 1e6:.3f}", f"{pub['params_mb']:.2f}",
                     f"{tot.first_layer_macs / 1e6:.1f}", f"{nb.gmacs:.3f}"))
    hdr = ("config", "input", "width", "stem", "GMACs model", "GMACs published", "err",
           "GMACs, 3x3 offset convs", "weights MiB", "weights MB (1e6)", "params published", "stem MMACs",
           "notebook graph GMACs")
    return ["### Network size (deployed graph vs published)", ""] + _table(hdr, rows)


def section_calls(eng: pm.PublishedEngine) -> List[str]:
    rows = []
    for (d, ic, oc, s), pub, mod in pm.published_call_check(eng):
        cyc, bound, _ = pm.published_call_cycles(eng, d, d, ic, oc, s)
        rows.append((f"{d}x{d}", ic, oc, s, f"{pub:.0f}", f"{mod:.0f}", _err(mod, pub), f"{cyc:.0f}"))
    calls = pm.published_call_check(eng)
    worst = max(abs(m / p - 1) for _, p, m in calls)
    rms = _rms([m / p - 1 for _, p, m in calls])
    return (["### Published per-call timings vs model", "",
             "Every distinct call shape of the published per-call log (width 2.0, 64x64 into stage 2, both "
             f"stages enabled). Worst error {100 * worst:.0f}%, rms {100 * rms:.0f}%.", ""]
            + _table(("input", "IC", "OC", "stride", "published us", "model us", "err", "model cycles"), rows))


def section_validation(eng: pm.PublishedEngine) -> List[str]:
    val = pm.published_validation(eng)
    stages = ("first_layer", "conv", "shuffle", "upsample", "split")
    rows = []
    for n, r in val.items():
        cells: List[object] = [n]
        for st in stages:
            cells.append(f"{r['pub_' + st]:.2f} / {r['model_' + st]:.2f} ({_err(r['model_' + st], r['pub_' + st])})")
        cells += [f"{r['pub_timed_ms']:.1f} / {r['model_timed_ms']:.1f} ({_err(r['model_timed_ms'], r['pub_timed_ms'])})",
                  f"{r['pub_fps']:.1f} / {r['model_fps']:.2f} ({_err(r['model_fps'], r['pub_fps'])})"]
        rows.append(cells)
    hdr = ("config", "first layer ms", "conv ms", "shuffle ms", "upsample ms", "split ms",
           "notebook total ms", "paper fps / model end-to-end fps")
    return (["### Published configs a..e: per stage, published / model (error)", "",
             "Stages as the published notebook timed them (graph = `named_config(x, graph=\"notebook\")`). "
             "The last column compares the paper's fps with the model's end-to-end fps, which adds the host "
             "work the notebook's timers leave out (register writes, copy-out of each call's output).", ""]
            + _table(hdr, rows))


def section_published_deployed(eng: pm.PublishedEngine) -> List[str]:
    rows = []
    for n in CONFIGS:
        rep = pm.estimate(pm.enumerate_layers(pm.named_config(n)), eng, n)
        c = rep.by_category()
        rows.append((n, f"{rep.total_ms:.1f}", f"{rep.fps:.1f}", f"{c['conv']:.1f}", f"{c['shuffle']:.1f}",
                     f"{c['upsample']:.1f}", f"{c['first_layer']:.1f}", f"{c['host']:.1f}",
                     sum(1 for r in rep.rows if r.unit == "accel")))
    return (["### Published engine on the deployed graph (prediction)", "",
             "The same calibrated engine running the network as deployed (true channel counts, "
             "pointwise -> offset -> deformable depthwise blocks, 64-channel heads): three calls per "
             "square block because the offsets must be in DRAM before the depthwise call.", ""]
            + _table(("config", "total ms", "fps", "conv", "shuffle", "upsample", "first layer", "host", "calls"),
                     rows))


def section_parameters(eng: pm.PublishedEngine) -> List[str]:
    why = {
        "call_overhead_us": "per-call figures (us) incl. Python start + done-bit polling + HLS prologue",
        "pw_restart_cycles": "cycles per pixel per 16-channel output group",
        "lb_restart_cycles": "cycles per pixel per line-buffer loop",
        "cpu_strided_gbps": "GB/s, numpy interleaving byte copy",
        "cpu_copy_gbps": "GB/s, numpy contiguous copy, working set > L2",
        "cpu_copy_l2_gbps": "GB/s, numpy contiguous copy, working set <= 1 MiB L2",
        "cpu_op_us": "us per numpy call (view)",
        "cpu_conv_gmacs": "GMAC/s, TVM 3x3 conv 3->24 on the A53",
        "cpu_conv_fixed_us": "us per TVM call",
        "reg_write_us": "us per AXI-Lite register write from Python",
        "dram_gbps": "GB/s (not fitted; rarely binding for this engine)",
    }
    rows = [(k, getattr(eng, k), v) for k, v in why.items()]
    return ["### Calibrated parameters of the published engine (current values)", ""] + _table(
        ("parameter", "value", "unit / meaning"), rows)


# ------------------------------------------------------------------------------ fit errors


def _call_errors(eng: pm.PublishedEngine, idx: Sequence[int]) -> List[float]:
    calls = pm.published_call_check(eng)
    return [calls[i][2] / calls[i][1] - 1 for i in idx]


def _stage_errors(eng: pm.PublishedEngine, stage: str, names: Sequence[str]) -> List[float]:
    return [pm.estimate(pm.enumerate_layers(pm.named_config(n, graph="notebook")), eng).by_category()[stage]
            / pm.PUBLISHED_BREAKDOWN_MS[n][stage] - 1 for n in names]


def _fps_errors(eng: pm.PublishedEngine, names: Sequence[str]) -> List[float]:
    return [pm.estimate(pm.enumerate_layers(pm.named_config(n, graph="notebook")), eng).fps
            / pm.PUBLISHED_TABLE[n]["fps"] - 1 for n in names]


def _log_rms(errs: Sequence[float]) -> float:
    return _rms([math.log(1 + e) for e in errs])


def fit_errors(eng: pm.PublishedEngine) -> List[Tuple[str, str, int, List[float], List[float]]]:
    """(group, parameters, points, in-sample errors, out-of-sample errors) per fitted group.

    Out of sample: each point (a fold of four per-call shapes for the accelerator group) is
    predicted by a refit of that group's parameters on the other points, the other groups kept
    at their fitted values."""
    n_calls = len(pm.PUBLISHED_CALLS_US)
    out = []

    # accelerator calls: 4-fold over the per-call shapes (conv totals of a, c, d stay in the fit)
    conv_cfgs = ("a", "c", "d")
    held: List[float] = []
    for k in range(4):
        train = [i for i in range(n_calls) if i % 4 != k]
        test = [i for i in range(n_calls) if i % 4 == k]

        def obj(e: pm.PublishedEngine, train: List[int] = train) -> float:
            return math.hypot(_log_rms(_call_errors(e, train)), _log_rms(_stage_errors(e, "conv", conv_cfgs)))

        fitted, _ = _grid(obj, eng, {"call_overhead_us": range(40, 101, 4), "pw_restart_cycles": range(0, 31, 4),
                                     "lb_restart_cycles": range(10, 61, 4)})
        held += _call_errors(fitted, test)
    out.append(("accelerator calls", "call_overhead_us, pw_restart_cycles, lb_restart_cycles", n_calls,
                _call_errors(eng, range(n_calls)), held))

    def loo(stage: str, names: Sequence[str], grids: Dict[str, Sequence[float]], errors) -> List[float]:
        res = []
        for n in names:
            rest = [m for m in names if m != n]
            fitted, _ = _grid(lambda e, rest=rest: _log_rms(errors(e, rest)), eng, grids)
            res += errors(fitted, [n])
        return res

    stages = (("split", "cpu_op_us", {"cpu_op_us": [x / 2 for x in range(10, 41)]}, pm.NAMED_CONFIGS),
              ("shuffle", "cpu_strided_gbps", {"cpu_strided_gbps": [x / 100 for x in range(15, 41)]}, pm.NAMED_CONFIGS),
              ("upsample", "cpu_copy_l2_gbps, cpu_copy_gbps", {"cpu_copy_l2_gbps": [x / 10 for x in range(8, 31, 2)],
                                                                "cpu_copy_gbps": [x / 10 for x in range(4, 21, 2)]},
               pm.NAMED_CONFIGS),
              ("first_layer", "cpu_conv_gmacs, cpu_conv_fixed_us", {"cpu_conv_gmacs": [x / 10 for x in range(15, 41)],
                                                                     "cpu_conv_fixed_us": range(0, 1501, 50)}, ("a", "c")))
    for stage, params, grids, names in stages:
        names = tuple(names)

        def errs(e: pm.PublishedEngine, ns: Sequence[str], stage: str = stage) -> List[float]:
            return _stage_errors(e, stage, ns)

        out.append((f"{stage} stage", params, len(names), errs(eng, names), loo(stage, names, grids, errs)))
    names = tuple(pm.NAMED_CONFIGS)
    out.append(("paper fps", "reg_write_us", len(names), _fps_errors(eng, names),
                loo("fps", names, {"reg_write_us": [x / 10 for x in range(0, 81, 2)]}, _fps_errors)))
    return out


def section_fit(eng: pm.PublishedEngine) -> List[str]:
    rows = [(k, getattr(eng, k), v) for k, v in pm.FITTED_PARAMETERS.items()]
    lines = ["### The published-engine model: fitted parameters", "",
             f"{len(pm.FITTED_PARAMETERS)} parameters are fitted to published numbers (the rest of the model is "
             "the published design's structure: 16 x 16 MACs, 250 MHz, per-layer calls, CPU glue).", ""]
    lines += _table(("parameter", "value", "fitted to"), rows)
    rows = []
    for group, params, n, ins, oos in fit_errors(eng):
        rows.append((group, params, n, f"{100 * _rms(ins):.0f}%", f"{100 * max(map(abs, ins)):.0f}%",
                     f"{100 * _rms(oos):.0f}%", f"{100 * max(map(abs, oos)):.0f}%"))
    lines += ["In-sample errors use the fitted values on the data they were fitted to. Out-of-sample errors "
              "predict each point (each fold of 4 per-call shapes) from a refit of that group's parameters on "
              "the other points, the other groups at their fitted values; the paper-fps group has one parameter "
              "and five points, so its out-of-sample error is the honest figure for the model's fps.", ""]
    lines += _table(("data", "parameters", "points", "in-sample rms", "in-sample worst", "out-of-sample rms",
                     "out-of-sample worst"), rows)
    return lines


# ------------------------------------------------------------------------------ counted (this engine)

#: What the review in issue 11 counted for the previous engine (an instrumented copy of it, run
#: on these networks): loops at II=1 with zero memory latency, and with its forced IIs and
#: one-byte AXI transactions.  Quoted, not re-measured: that engine is gone from the tree.
OLD_ENGINE_COUNTED = {"a": ("~19", "~4-7"), "c": ("~5", "~1-2")}


def counted(name: str) -> Dict[str, object]:
    """Compile the FPGA'21 network of config ``name`` and run it through the engine's account."""
    import numpy as np

    from codenet_pynq.accel import emulib
    from codenet_pynq.accel.compile import compile_program
    from codenet_pynq.synthetic import codenet_like_program

    cfg = pm.named_config(name)
    size = cfg.input_size
    rng = np.random.default_rng(size)
    prog = codenet_like_program(rng, input_size=size, width=cfg.width, decoder=cfg.decoder_channels,
                                head=cfg.head_channels, num_classes=cfg.num_classes, stem=cfg.stem)
    cp = compile_program(prog)
    img = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    acc = emulib.account(cp, img)
    res: Dict[str, object] = {"config": name, "size": size, "descriptors": cp.n_layers, "macs": prog.macs(),
                              "records": acc, "info": cp.info}
    for f in (250.0, 200.0):
        res[f"cycles_{int(f)}"] = sum(a["cycles"][f] for a in acc)
    res["bytes"] = 16 * sum(a["beats"][p] for a in acc for p in ("params", "weights", "act_rd", "act_wr"))
    res["bursts"] = sum(a["bursts"][p] for a in acc for p in ("params", "weights", "act_rd", "act_wr"))
    # which stage bounds each descriptor (largest of the dataflow terms), cycles summed per stage
    bound: Dict[str, float] = {}
    for a in acc:
        loops = a["loops"]
        terms = {"load": loops["load"], "mac": loops["mac"], "dw": loops["dw"], "store": loops["store"],
                 "fetch": loops["fetch"]}
        k = max(terms, key=terms.get)
        bound[k] = bound.get(k, 0.0) + a["cycles"][250.0]
    res["bound"] = bound
    return res


def _budget() -> Dict[str, object]:
    """DSP / BRAM36 / LUT totals of the budget estimator (``make -C hls_src budget``)."""
    import subprocess

    hls = os.path.join(ROOT, "hls_src")
    tool = os.path.join(hls, "tools", "budget.py")
    if not os.path.exists(tool):
        return {}
    r = subprocess.run([sys.executable, tool, "--params", os.path.join(hls, "codenet_params.h"), "--resources",
                        os.path.join(hls, "resources.json"), "--sources", os.path.join(hls, "codenet_top.cpp"),
                        os.path.join(hls, "cn_desc.cpp"), "-I", hls], capture_output=True, text=True)
    for line in r.stdout.splitlines():
        cells = line.split()
        if cells[:1] == ["total"] and len(cells) >= 4:
            return {"dsp": int(float(cells[1])), "bram36": float(cells[2]), "lut": int(float(cells[3])),
                    "ok": r.returncode == 0}
    return {}


def section_counted(results: Sequence[Dict[str, object]], budget: Dict[str, object]) -> List[str]:
    dsp = f"{budget['dsp']} ({100 * budget['dsp'] / 360:.0f}%)" if budget else "n/a"
    bram = f"{budget['bram36']:g} ({100 * budget['bram36'] / 216:.0f}%)" if budget else "n/a"
    rows = []
    for r in results:
        n = str(r["config"])
        c250, c200 = float(r["cycles_250"]), float(r["cycles_200"])
        bound = r["bound"]
        top = max(bound, key=bound.get)
        old = OLD_ENGINE_COUNTED.get(n, ("", ""))
        rows.append((n, r["size"], r["descriptors"], f"{c250 / 1e6:.2f} M", f"{250e6 / c250:.1f}", f"{200e6 / c200:.1f}",
                     f"{float(r['bytes']) / 1e6:.1f}", r["bursts"], f"{float(r['bytes']) / 16 / max(1, int(r['bursts'])):.0f}",
                     dsp, bram, f"{top} ({100 * bound[top] / c250:.0f}%)", pm.PUBLISHED_TABLE[n]["fps"],
                     f"{old[0]} / {old[1]}"))
    hdr = ("config", "input", "descriptors", "counted cycles (250 MHz)", "fps 250 MHz (counted)",
           "fps 200 MHz (counted)", "DRAM MB/frame", "bursts/frame", "mean burst (beats)", "DSP (budget)",
           "BRAM36 (budget)", "bounding stage (share of cycles)", "published fps (board)",
           "previous engine fps (counted by the issue-11 review: II=1 ideal / as coded)")
    lines = ["### This engine, counted (FPGA'21 configs a and c, 1.0x, decoder 256/128/64, head 64)", "",
             "Counted: the engine's own C++ runs the network (random weights, bit-exact with the golden) and its "
             "processes count every pipelined loop at its declared II plus its pipeline depth on every entry and "
             "every m_axi access as bursts; a descriptor takes max(load, MAC, depthwise, store, weight prefetch, "
             "DDR) plus the depthwise fill (and, for the first descriptor, its serial parameter load; every "
             "other descriptor's parameters and weights are prefetched during the previous one), under the "
             "LPDDR4 model of hls_src/cn_account.h "
             "(8.5 GB/s peak, 70 % sustained, 160 ns first-beat latency, 16 outstanding bursts). "
             "Not a board measurement: pipeline depths are estimates until a csynth report replaces them. "
             "Targets (issue 11): >= 30 fps at 512 and >= 100 fps at 256 at 250 MHz within 90 % of the ZU3EG's "
             "360 DSP and 216 BRAM36.", ""]
    lines += _table(hdr, rows)
    return lines


def section_counted_breakdown(results: Sequence[Dict[str, object]]) -> List[str]:
    rows = []
    for r in results:
        per: Dict[str, float] = {}
        for a, inf in zip(r["records"], r["info"]):
            name = inf.layers[0]
            sec = ("stem" if name.startswith("stem") else name.split(".")[0] if name.startswith("stage")
                   else "conv5" if name.startswith("conv5") else "decoder" if name.startswith("decoder")
                   else "heads")
            per[sec] = per.get(sec, 0.0) + a["cycles"][250.0]
        total = sum(per.values())
        rows.append((r["config"], *(f"{per.get(k, 0.0) / 250e3:.2f}" for k in
                                    ("stem", "stage2", "stage3", "stage4", "conv5", "decoder", "heads")),
                     f"{total / 250e3:.2f}"))
    return (["Counted ms per section at 250 MHz:", ""] +
            _table(("config", "stem", "stage2", "stage3", "stage4", "conv5", "decoder", "heads", "total"), rows))


# ------------------------------------------------------------------------------ plot


def plot(results: Sequence[Dict[str, object]], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stages = ("load", "mac", "dw", "store")
    colors = {"load": "#2ca02c", "mac": "#1f77b4", "dw": "#ff7f0e", "store": "#9467bd"}
    fig, axes = plt.subplots(1, len(results), figsize=(6 * len(results), 4.2))
    for ax, r in zip(np.atleast_1d(axes), results):
        recs = r["records"]
        x = range(len(recs))
        bottom = [0.0] * len(recs)
        for st in stages:
            vals = [a["loops"][st] / 250e3 for a in recs]
            ax.bar(x, vals, bottom=bottom, color=colors[st], label=f"{st} loop cycles", width=0.8)
            bottom = [b + v for b, v in zip(bottom, vals)]
        ax.plot(list(x), [a["cycles"][250.0] / 250e3 for a in recs], "k.", label="descriptor time (counted)")
        ax.set_title(f"config {r['config']} ({r['size']}): {250e6 / float(r['cycles_250']):.0f} fps counted at 250 MHz")
        ax.set_xlabel("descriptor")
        ax.set_ylabel("ms at 250 MHz")
    np.atleast_1d(axes)[0].legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    atomic_write(path, buf.getvalue())


# ------------------------------------------------------------------------------ main


def write_doc(path: str, body: str) -> None:
    text = open(path, encoding="utf-8").read() if os.path.exists(path) else f"# Performance\n\n{BEGIN}\n{END}\n"
    if BEGIN not in text or END not in text:
        text = text.rstrip("\n") + f"\n\n{BEGIN}\n{END}\n"
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    new = f"{head}{BEGIN}\n\n{body}\n{END}{tail}"
    atomic_write(path, new)


def main(argv: Sequence[str] = ()) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calibrate", action="store_true", help="re-fit the published engine parameters and print them")
    ap.add_argument("--doc", default=os.path.join(ROOT, "docs", "perf_model.md"))
    ap.add_argument("--plot", default=os.path.join(ROOT, "docs", "img", "perf_breakdown.png"))
    ap.add_argument("--no-write", action="store_true", help="print the generated markdown only")
    args = ap.parse_args(list(argv))
    eng = pm.PUBLISHED_ENGINE
    if args.calibrate:
        fitted = calibrate()
        for k in pm.FITTED_PARAMETERS:
            print(f"  {k:20s} fitted {getattr(fitted, k):8.3f}   module default {getattr(eng, k):8.3f}")
        return 0
    results = [counted(n) for n in ("a", "c")]
    budget = _budget()
    table = section_counted(results, budget) + section_counted_breakdown(results)
    body = "\n".join(table + section_fit(eng) + section_network() + section_calls(eng) + section_validation(eng)
                     + section_published_deployed(eng) + ["![counted cycles per descriptor](img/perf_breakdown.png)", ""])
    if args.no_write:
        print(body)
        return 0
    write_doc(args.doc, body)
    from report import write_section

    summary = ["## Accelerator: counted cycles (Ultra96-V2 model) beside the published engine", "",
               "Command: `python benchmarks/perf_model.py`. Method: [perf_model.md](perf_model.md). Every figure is "
               "labelled: counted (this engine's C simulation), published (the FPGA'21 paper), or modelled (the "
               "published engine's fitted model).", ""]
    write_section("cycle_model", "\n".join(summary + table + section_fit(eng)))
    plot(results, args.plot)
    print(f"wrote {args.doc}, docs/benchmarks.md and {args.plot}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
