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
import math
import os
import sys
from typing import Dict, List, Tuple

import cv2
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from report import command, machine, table, write_section  # noqa: E402

from codenet_pynq import Detector  # noqa: E402
from codenet_pynq.training.data.camera import degrade, lighting  # noqa: E402
from codenet_pynq.training.data.shapes import STYLES, _background  # noqa: E402
from codenet_pynq.training.eval.results import save_results_json  # noqa: E402
from codenet_pynq.training.eval.voc import voc_evaluate  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ASSETS = os.path.join(ROOT, "codenet_pynq", "assets")
W, H = 640, 480
LEVELS = ("perspective", "perspective + lighting", "camera: all effects")


def homography(rng: np.random.Generator, sw: int, sh: int) -> np.ndarray:
    """A random sheet -> frame homography: scale, rotation, tilt, position."""
    width = rng.uniform(0.6, 1.1) * W
    s = width / sw
    a = math.radians(rng.uniform(-15, 15))
    corners = np.array([[0, 0], [sw, 0], [sw, sh], [0, sh]], np.float64) - [sw / 2, sh / 2]
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    pts = corners @ rot.T * s
    # tilt: move the corners of one side towards each other (a sheet held at an angle)
    tx, ty = rng.uniform(-0.25, 0.25, size=2)
    pts[:, 0] *= 1 + tx * np.sign(pts[:, 1]) * 0.5
    pts[:, 1] *= 1 + ty * np.sign(pts[:, 0]) * 0.5
    centre = np.array([W / 2, H / 2]) + rng.uniform(-0.2, 0.2, size=2) * [W, H]
    dst = (pts + centre).astype(np.float32)
    src = (corners + [sw / 2, sh / 2]).astype(np.float32)
    return cv2.getPerspectiveTransform(src, dst)


def render(sheet: np.ndarray, shapes: List[Dict], seed: int, level: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One camera frame of the sheet at effect ``level`` (0..2): (image, boxes, labels)."""
    rng = np.random.default_rng([seed, 7])
    sh, sw = sheet.shape[:2]
    m = homography(rng, sw, sh)
    frame = _background(rng, W, H, STYLES["hard"])
    warped = cv2.warpPerspective(sheet, m, (W, H), flags=cv2.INTER_AREA)
    mask = cv2.warpPerspective(np.full((sh, sw), 255, np.uint8), m, (W, H), flags=cv2.INTER_NEAREST)
    frame[mask > 0] = warped[mask > 0]
    boxes, labels = [], []
    for s in shapes:
        poly = cv2.perspectiveTransform(np.asarray(s["polygon"], np.float32)[None], m)[0]
        area = abs(cv2.contourArea(poly))
        clipped = np.clip(poly, [0, 0], [W, H]).astype(np.float32)
        if area <= 0 or abs(cv2.contourArea(clipped)) < 0.6 * area:
            continue  # mostly out of the frame: neither counted nor penalised (the frame edge cuts it)
        boxes.append([*clipped.min(axis=0), *clipped.max(axis=0)])
        labels.append(int(s["label"]))
    light_rng = np.random.default_rng([seed, 8])
    if level >= 1:
        frame = lighting(light_rng, frame)
    if level >= 2:
        frame = degrade(np.random.default_rng([seed, 9]), frame)
    return frame, np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(labels, np.int64)


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
        f"Machine: {head}. Command: `{command()}`. Model: {os.path.basename(det.artifact.path)} (W4A8) on the CPU backend "
        "(bit-exact with the accelerator). Frames: 640x480, the sheet `codenet_pynq/assets/target_sheet.png` "
        "(rendered by `scripts/make_target_sheet.py` from the shapes generator) under a random perspective over "
        "the generator's cluttered backgrounds; then lighting (gain 0.55-1.25, offset, gradient, colour cast); "
        "then blur (Gaussian sigma 0.5-2 or motion 3-9 px), noise (sigma 2-10) and JPEG (quality 35-89). "
        f"Held-out seeds {a.seed}..{a.seed + a.n - 1}. Pascal VOC AP50 (score threshold 0.01). Measured here.",
        "",
        table(["set", "frames", "shapes", "AP50", f"shown per frame (score >= {det.score_threshold:g})",
               "worst class AP50"], rows),
        "",
        f"For reference, the artifact records VOC AP50 {meta.get('voc_AP50', float('nan')):.1f} on "
        f"{meta.get('eval_set', 'its validation set')} (the easy style it was trained on).",
    ])
    if a.json:
        save_results_json({str(r[0]): float(r[3]) for r in rows}, a.json)
    if not a.no_write:
        write_section("target_sheet", body)
    print(body)


if __name__ == "__main__":
    main()
