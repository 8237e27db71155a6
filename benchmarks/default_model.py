"""Accuracy of the shipped default model, float and W4A8, through the exported artifacts.

``python benchmarks/default_model.py --float F.codenet --int Q.codenet``: evaluates both
artifacts on the held-out shapes validation split through the runtime's CPU backend (COCO
metrics by pycocotools, VOC-protocol AP50 as a second opinion), reads the training time from
the runs' metrics logs, and writes the "default model" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from report import machine, table, write_section  # noqa: E402

from codenet_pynq.training.config import load_config  # noqa: E402
from codenet_pynq.training.data.build import load_records  # noqa: E402
from codenet_pynq.training.eval.results import save_results_json  # noqa: E402
from codenet_pynq.training.evaluate import compute_metrics, predict_artifact  # noqa: E402


def train_minutes(run_dir: str) -> tuple:
    lines = [json.loads(x) for x in open(os.path.join(run_dir, "metrics.jsonl"), encoding="utf-8")]
    timed = [r for r in lines if "time" in r and "images_per_s" in r]
    its = max(r["iteration"] for r in timed)
    # the run may have been resumed: sum the gaps between consecutive log lines, skipping restarts
    total = 0.0
    for a, b in zip(timed, timed[1:]):
        if b["iteration"] > a["iteration"] and 0 < b["time"] - a["time"] < 600:
            total += b["time"] - a["time"]
    return its, total / 60.0


def plot_curves(runs, path: str) -> None:
    """Training loss (and its parts) per iteration of each run, plus the periodic validation AP
    of the first run, one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(runs) + 1, figsize=(5.5 * (len(runs) + 1), 4), squeeze=False)
    for ax, (title, run_dir) in zip(axes[0], runs):
        recs = [json.loads(x) for x in open(os.path.join(run_dir, "metrics.jsonl"), encoding="utf-8")]
        recs = sorted({r["iteration"]: r for r in recs if "loss" in r}.values(), key=lambda r: r["iteration"])
        it = [r["iteration"] for r in recs]
        for key in ("loss", "hm", "wh", "reg"):
            ax.plot(it, [r[key] * (0.1 if key == "wh" else 1) for r in recs], label=key if key != "wh" else "0.1 wh")
        ax.set_title(title)
        ax.set_xlabel("iteration")
        ax.set_yscale("log")
        ax.grid(True, alpha=0.3)
        ax.legend()
    ax = axes[0][-1]
    recs = [json.loads(x) for x in open(os.path.join(runs[0][1], "metrics.jsonl"), encoding="utf-8")]
    evals = sorted({r["iteration"]: r for r in recs if "val/AP" in r}.values(), key=lambda r: r["iteration"])
    for key in ("val/AP50", "val/AP", "val/AP75"):
        ax.plot([r["iteration"] for r in evals], [r[key] for r in evals], marker="o", label=key[4:])
    ax.set_title(f"{runs[0][0]}: validation (PyTorch, every eval_period)")
    ax.set_xlabel("iteration")
    ax.set_ylim(0, 100)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--float", dest="float_path", required=True)
    p.add_argument("--int", dest="int_path", required=True)
    p.add_argument("--config", default="configs/shapes_default.yaml", help="the float model's training config")
    p.add_argument("--int-config", default="configs/shapes_default_w4a8.yaml", help="the QAT config")
    p.add_argument("--float-run", default="runs/shapes_default")
    p.add_argument("--int-run", default="runs/shapes_default_w4a8")
    p.add_argument("--out", default="runs/default_model_eval.json")
    p.add_argument("--metrics-dir", metavar="DIR",
                   help="also write metrics_float.json / metrics_W4A8.json here, the records that "
                        "`training.export --metrics` puts in the artifacts' manifests")
    p.add_argument("--extra-val", metavar="JSON",
                   help="also evaluate on this COCO json (e.g. the hard shapes style), reported separately")
    a = p.parse_args()
    cfg = load_config(a.config)
    records, names = load_records(cfg.data, "val")
    rows, extra_rows, results = [], [], {}
    sets = [("", records, rows)]
    if a.extra_val:
        extra, _ = load_records(dataclasses.replace(cfg.data, val_json=a.extra_val, val_images=""), "val")
        sets.append((" (extra)", extra, extra_rows))
    for label, path in (("float", a.float_path), ("W4A8", a.int_path)):
        for suffix, recs, out_rows in sets:
            dets = predict_artifact(path, recs, "cpu", cfg.eval_topk, progress=True)
            coco = compute_metrics(recs, dets, names, "coco")
            voc = compute_metrics(recs, dets, names, "voc")
            results[label + suffix] = {"coco": coco, "voc": voc}
            out_rows.append([label, os.path.basename(path), os.path.getsize(path), f"{coco['AP']:.1f}",
                             f"{coco['AP50']:.1f}", f"{coco['AP75']:.1f}", f"{voc['AP50']:.1f}"])
            print(suffix, out_rows[-1], flush=True)
    save_results_json(results, a.out)
    if a.metrics_dir:
        for k in ("float", "W4A8"):
            m = {f"coco_{n}": results[k]["coco"][n] for n in ("AP", "AP50", "AP75")}
            m["voc_AP50"] = results[k]["voc"]["AP50"]
            m["eval_set"] = f"shapes val ({len(records)} held-out images)"
            save_results_json(m, os.path.join(a.metrics_dir, f"metrics_{k}.json"))
    img = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "img",
                       "default_training_curve.png")
    plot_curves([("float training", a.float_run), ("W4A8 QAT", a.int_run)], img)
    f_it, f_min = train_minutes(a.float_run)
    q_it, q_min = train_minutes(a.int_run)
    drop50 = results["float"]["coco"]["AP50"] - results["W4A8"]["coco"]["AP50"]
    drop = results["float"]["coco"]["AP"] - results["W4A8"]["coco"]["AP"]
    body = (f"## Default model (shapes, main variant, input {cfg.model.input_size})\n\n"
            f"Machine: {machine()}. Held-out set: the shapes `val` split (`{cfg.data.val_json}`, style "
            f"{cfg.data.generate_shapes.get('style', 'hard')}, {len(records)} images, never trained on), "
            "evaluated through the exported artifacts on the runtime's CPU backend (COCO metrics by pycocotools, "
            "VOC-protocol area AP50 as a second opinion).\n\n"
            "Training commands:\n\n```bash\n"
            f"python -m codenet_pynq.training.train --config {a.config}\n"
            f"python -m codenet_pynq.training.train --config {a.int_config}\n"
            f"python -m codenet_pynq.training.export --config {a.config} "
            f"--weights {a.float_run}/model_final.pth --out shapes_default_float.codenet\n"
            f"python -m codenet_pynq.training.export --config {a.int_config} "
            f"--weights {a.int_run}/model_final.pth --out shapes_default.codenet\n```\n\n"
            + (f"The float run fine-tunes `{cfg.init_weights}` (`init_weights` in {a.config}).\n\n"
               if cfg.init_weights else "")
            + f"Float training: {f_it} iterations of batch {cfg.solver.batch_size} in {f_min:.0f} min; W4A8 QAT: "
            f"{q_it} iterations in {q_min:.0f} min (2-core CPU shared with other work during the run).\n\n"
            + table(["model", "artifact", "bytes", "AP", "AP50", "AP75", "VOC AP50"], rows)
            + "\n\n![training curves](img/default_training_curve.png)"
            + f"\n\nW4A8 vs float: AP50 drop {drop50:.2f} points, AP drop {drop:.2f} points "
            "(targets: <= 1.0 and <= 2.0). Targets for the float model: AP50 >= 95, AP >= 70.\n")
    if extra_rows:
        body += (f"\nThe same artifacts on `{a.extra_val}` ({len(sets[1][1])} images of another shapes style, "
                 "for reference; no target):\n\n"
                 + table(["model", "artifact", "bytes", "AP", "AP50", "AP75", "VOC AP50"], extra_rows) + "\n")
    write_section("default_model", body)


if __name__ == "__main__":
    main()
