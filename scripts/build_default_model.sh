#!/usr/bin/env bash
# Rebuild the shipped default model from scratch on a CPU (about two hours on 2 cores):
# float training, W4A8 QAT, export, evaluation through the artifacts, re-export with metrics.
# Steps already done are skipped (each run resumes), so it can be re-run after a kill.
set -euo pipefail
cd "$(dirname "$0")/.."
MODELS=codenet_pynq/models
mkdir -p "$MODELS"
python -m codenet_pynq.training.train --config configs/shapes_default.yaml --resume
python -m codenet_pynq.training.train --config configs/shapes_default_w4a8.yaml --resume
python -m codenet_pynq.training.export --config configs/shapes_default.yaml \
    --weights runs/shapes_default/model_final.pth --out "$MODELS/shapes_default_float.codenet"
python -m codenet_pynq.training.export --config configs/shapes_default_w4a8.yaml \
    --weights runs/shapes_default_w4a8/model_final.pth --out "$MODELS/shapes_default.codenet"
# reference: the same artifacts on the hard shapes style (generated on demand, never trained on)
[ -f data/shapes/val.json ] || python -m codenet_pynq.training.data.shapes --out data/shapes --train 0 --val 500
python benchmarks/default_model.py --float "$MODELS/shapes_default_float.codenet" \
    --int "$MODELS/shapes_default.codenet" --out runs/default_model_eval.json --extra-val data/shapes/val.json --metrics-dir runs
python -m codenet_pynq.training.export --config configs/shapes_default.yaml \
    --weights runs/shapes_default/model_final.pth --out "$MODELS/shapes_default_float.codenet" --metrics runs/metrics_float.json --score-threshold "${SCORE:-0.3}"
python -m codenet_pynq.training.export --config configs/shapes_default_w4a8.yaml \
    --weights runs/shapes_default_w4a8/model_final.pth --out "$MODELS/shapes_default.codenet" --metrics runs/metrics_W4A8.json --score-threshold "${SCORE:-0.3}"
# sample images for the README demo: easy style, a split of their own (not in train or val),
# the first six with at least two shapes
python - <<'PY'
import json, os, shutil, tempfile
from codenet_pynq.training.data.shapes import generate_shapes
tmp = tempfile.mkdtemp()
d = json.load(open(generate_shapes(tmp, 24, ((256, 384), (192, 320)), seed=0, split_name="samples", style="easy")))
count = {}
for a in d["annotations"]:
    count[a["image_id"]] = count.get(a["image_id"], 0) + 1
keep = [im for im in d["images"] if count.get(im["id"], 0) >= 2][:6]
for i, im in enumerate(keep):
    shutil.copyfile(os.path.join(tmp, im["file_name"]), f"codenet_pynq/samples/shapes_{i:03d}.jpg")
shutil.rmtree(tmp)
PY
ls -la "$MODELS"
