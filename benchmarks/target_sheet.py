"""AP50 of the shipped model on camera-simulated photographs of the printable target sheet.

``python benchmarks/target_sheet.py [--n 120] [--seed 1000]``

Each held-out frame (640x480) shows ``codenet_pynq/assets/target_sheet.png`` as a camera would:
the sheet under a random perspective (tilt, rotation, 60-110 % of the frame width, partly out of
the frame at times) over a cluttered background (the shapes generator's backgrounds), then
lighting (gain, offset, a brightness gradient, a colour cast), blur (Gaussian or motion), sensor
noise and JPEG compression. Ground truth: the sheet's polygons (``target_sheet.json``) through the
same homography, boxes of their visible part. Three sets of the same sheets and seeds: perspective
only, perspective + lighting, everything. CPU backend (bit-exact with the accelerator).
Evaluation: Pascal VOC AP50 (codenet_pynq.training.eval.voc). Written to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Dict, List, Tuple

import cv2
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from report import command, machine, table, write_section  # noqa: E402

from codenet_pynq import Detector  # noqa: E402
from codenet_pynq.training.data.camera import card_homography, degrade, lighting, place_card, visible_boxes  # noqa: E402
from codenet_pynq.training.data.shapes import STYLES, _background  # noqa: E402
from codenet_pynq.training.eval.results import save_results_json  # noqa: E402
from codenet_pynq.training.eval.voc import voc_evaluate  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ASSETS = os.path.join(ROOT, "codenet_pynq", "assets")
W, H = 640, 480
LEVELS = ("perspective", "perspective + lighting", "camera: all effects")


def render(sheet: np.ndarray, shapes: List[Dict], seed: int, level: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One camera frame of the sheet at effect ``level`` (0..2): (image, boxes, labels)."""
    rng = np.random.default_rng([seed, 7])
    sh, sw = sheet.shape[:2]
    m = card_homography(rng, sw, sh, W, H)
    frame = _background(rng, W, H, STYLES["hard"])
    place_card(frame, sheet, m, cv2.INTER_AREA)
    boxes, kept = visible_boxes([s["polygon"] for s in shapes], m, W, H)
    labels = np.asarray([int(shapes[i]["label"]) for i in kept], np.int64)
    light_rng = np.random.default_rng([seed, 8])
    if level >= 1:
        frame = lighting(light_rng, frame)
    if level >= 2:
        frame = degrade(np.random.default_rng([seed, 9]), frame)
    return frame, boxes, labels


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=120)
    p.add_argument("--seed", type=int, default=1000, help="first seed (held out: the sheet is never trained on)")
    p.add_argument("--model", help="artifact to evaluate (default: the shipped default model)")
    p.add_argument("--json", help="also write the AP50 of every set here (JSON)")
    p.add_argument("--no-write", action="store_true", help="print the table, leave docs/benchmarks.md alone")
    a = p.parse_args()
    head = machine()
    sheet = cv2.imread(os.path.join(ASSETS, "target_sheet.png"), cv2.IMREAD_COLOR)
    with open(os.path.join(ASSETS, "target_sheet.json"), encoding="utf-8") as f:
        shapes = json.load(f)["shapes"]
    rows = []
    with Detector.load(a.model, backend="cpu") as det:
        names = det.class_names
        flat = det.detect(sheet, score_threshold=0.01)
        flat_ap = voc_evaluate([{"image_id": 0, "boxes": np.array([[*np.min(s["polygon"], 0), *np.max(s["polygon"], 0)]
                                                                   for s in shapes], np.float32),
                                 "labels": np.array([s["label"] for s in shapes])}],
                               [{"image_id": 0, "boxes": flat.boxes, "scores": flat.scores, "labels": flat.labels}],
                               names)["AP50"]
        rows.append(["the sheet itself (flat, no camera)", 1, len(shapes), f"{flat_ap:.1f}", "", ""])
        for level, name in enumerate(LEVELS):
            recs, dets, hits = [], [], 0
            for i in range(a.n):
                img, boxes, labels = render(sheet, shapes, a.seed + i, level)
                recs.append({"image_id": i, "boxes": boxes, "labels": labels})
                r = det.detect(img, score_threshold=0.01)
                dets.append({"image_id": i, "boxes": r.boxes, "scores": r.scores, "labels": r.labels})
                shown = r.scores >= det.score_threshold
                hits += int(shown.sum())
            ev = voc_evaluate(recs, dets, names)
            per = ev.get("per_class_AP50", {})
            worst = min(per.items(), key=lambda kv: kv[1]) if isinstance(per, dict) and per else None
            rows.append([name, a.n, sum(len(r["boxes"]) for r in recs), f"{ev['AP50']:.1f}",
                         f"{hits / a.n:.1f}", f"{worst[0]} {worst[1]:.1f}" if worst else ""])
    meta = det.artifact.manifest.get("metrics", {})
    body = "\n".join([
        "## Shipped model on camera-simulated photos of the target sheet",
        "",
        f"Machine: {head}. Command: `{command()}`. Model: {os.path.basename(det.artifact.path)} "
        f"({'W4A8' if det.artifact.quantized else 'float'}) on the CPU backend "
        "(bit-exact with the accelerator). Frames: 640x480, the sheet `codenet_pynq/assets/target_sheet.png` "
        "(rendered by `scripts/make_target_sheet.py` from the shapes generator) under a random perspective over "
        "the generator's cluttered backgrounds; then lighting (gain 0.55-1.25, offset, gradient, colour cast); "
        "then blur (Gaussian sigma 0.5-2 or motion 3-9 px), noise (sigma 2-10) and JPEG (quality 35-89). "
        f"Held-out seeds {a.seed}..{a.seed + a.n - 1}. Pascal VOC AP50 (score threshold 0.01). Measured here.",
        "",
        table(["set", "frames", "shapes", "AP50", f"shown per frame (score >= {det.score_threshold:g})",
               "worst class AP50"], rows),
    ] + ([
        "",
        f"For reference, the artifact records VOC AP50 {meta['voc_AP50']:.1f} on "
        f"{meta.get('eval_set', 'its validation set')} (synthetic shapes, the easy style).",
    ] if "voc_AP50" in meta else []))
    if a.json:
        save_results_json({str(r[0]): float(r[3]) for r in rows}, a.json)
    if not a.no_write:
        write_section("target_sheet", body)
    print(body)


if __name__ == "__main__":
    main()
