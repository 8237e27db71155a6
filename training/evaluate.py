"""Evaluate a checkpoint or an exported artifact on the validation split.

``python -m codenet_pynq.training.evaluate --config CFG --weights ckpt.pth`` (PyTorch model) or
``--artifact model.codenet [--backend cpu]`` (the deployed form through the runtime).
Metrics: VOC AP computed exactly as the reference ``voc_eval`` that the seed's detectron2
evaluator uses (AP over IoU .50:.95, AP50, AP75; ``voc07`` 11-point or ``voc`` area; the rules
are listed in docs/own_data.md) and COCO through pycocotools; ``--flip-test`` averages the heatmaps
of the image and its mirror (PyTorch model only).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Dict, List, Optional, Sequence

import torch
from torch.utils.data import DataLoader

from codenet_pynq.transforms import PreprocessMeta, boxes_to_image

from .checkpoint import load_checkpoint, load_state_into
from .config import ExperimentConfig, load_config
from .data.build import build_dataset, load_records
from .data.dataset import collate_fn
from .decode_torch import decode
from .errors import report_errors
from .eval.coco import coco_evaluate
from .eval.results import save_results_json
from .eval.voc import voc_evaluate


@torch.no_grad()
def predict_model(model: torch.nn.Module, dataset, device: torch.device, k: int = 100, batch_size: int = 8,
                  flip_test: bool = False, progress: bool = False) -> List[Dict[str, Any]]:
    """Run ``model`` over ``dataset``; detections per image in original image pixels."""
    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate_fn, num_workers=0)
    if progress:
        from tqdm import tqdm

        loader = tqdm(loader, desc="eval", unit="batch", leave=False)
    ratio = dataset.down_ratio
    results: List[Dict[str, Any]] = []
    for images, tg in loader:
        out = model(images.to(device))
        hm, wh, reg = out["hm"], out["wh"], out["reg"]
        if flip_test:
            f = model(images.flip(3).to(device))
            hm = (torch.sigmoid(hm) + torch.sigmoid(f["hm"]).flip(3)) / 2
            wh = (wh + f["wh"].flip(3)) / 2
        dets = decode(hm, wh, reg, k=k, already_sigmoid=flip_test)
        for i, (boxes, scores, labels) in enumerate(dets):
            meta = PreprocessMeta(center=tuple(tg["center"][i]), scale=tg["scale"][i], input_size=dataset.input_size,
                                  image_size=(tg["height"][i], tg["width"][i]))
            b = boxes_to_image(boxes.cpu().numpy() * ratio, meta)
            results.append({"image_id": int(tg["image_id"][i]), "boxes": b, "scores": scores.cpu().numpy(),
                            "labels": labels.cpu().numpy()})
    return results


def predict_artifact(path: str, records: Sequence[Dict[str, Any]], backend: str = "cpu", k: int = 100,
                     progress: bool = False) -> List[Dict[str, Any]]:
    """Run the deployed artifact through the runtime Detector over the records' image files."""
    from codenet_pynq.detector import Detector
    from codenet_pynq.image_io import read_image

    det = Detector.load(path, backend=backend)
    it = records
    if progress:
        from tqdm import tqdm

        it = tqdm(records, desc="eval artifact", unit="img", leave=False)
    results = []
    for rec in it:
        d = det.detect(read_image(rec["file"]), score_threshold=0.0, top_k=k)
        results.append({"image_id": int(rec["image_id"]), "boxes": d.boxes, "scores": d.scores, "labels": d.labels})
    return results


def compute_metrics(records, detections, class_names: Sequence[str], metric: str) -> Dict[str, Any]:
    """``metric``: 'coco' (pycocotools), 'voc07' (11-point) or 'voc' (area)."""
    if metric == "coco":
        return coco_evaluate(list(records), detections, list(class_names))
    if metric in ("voc07", "voc"):
        return voc_evaluate(list(records), detections, list(class_names), use_07_metric=metric == "voc07")
    raise ValueError(f"eval metric {metric!r} unknown: coco, voc07 or voc")


def evaluate_model(model: torch.nn.Module, cfg: ExperimentConfig, device: torch.device, flip_test: bool = False,
                   progress: bool = False) -> Dict[str, Any]:
    dataset = build_dataset(cfg.data, cfg.model, "val", train=False)
    dets = predict_model(model, dataset, device, cfg.eval_topk, flip_test=flip_test, progress=progress)
    return compute_metrics(dataset.records, dets, dataset.class_names, cfg.eval_metric)


def load_trained_model(cfg: ExperimentConfig, weights: str) -> torch.nn.Module:
    """The model of a training checkpoint: the float network, or the QAT graph when the config
    has ``quant.enabled`` (its scales come from the checkpoint, ``quant.init`` is not read)."""
    from .models import build_model

    model = build_model(cfg.model)
    if cfg.quant.enabled:
        from .quant.qat import prepare_qat

        model = prepare_qat(model, cfg, load_init=False)
    kind = "a QAT" if cfg.quant.enabled else "a float"
    load_state_into(model, load_checkpoint(weights)["model"], weights,
                    f"this config builds {kind} model: use the config the checkpoint was trained with "
                    "(quant.enabled must match)")
    return model.eval()


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="codenet-pynq-eval", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="experiment YAML (its data.val_* split is evaluated)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--weights", help="PyTorch checkpoint (.pth)")
    src.add_argument("--artifact", help="exported .codenet artifact (evaluated through the runtime)")
    p.add_argument("--backend", default="cpu", help="runtime backend for --artifact (cpu, emulator, fpga, auto)")
    p.add_argument("--metric", choices=("coco", "voc07", "voc"), help="default: the config's eval_metric")
    p.add_argument("--flip-test", action="store_true", help="average with the mirrored image (--weights only)")
    p.add_argument("--out", help="write the metrics as JSON here")
    p.add_argument("--debug", action="store_true", help="show the traceback of errors")
    p.add_argument("opts", nargs="*", help="config overrides, e.g. data.val_json=...")
    a = p.parse_args(argv)
    return report_errors("codenet-pynq-eval", a.debug, lambda: _run(a))


def _run(a: argparse.Namespace) -> int:
    cfg = load_config(a.config, a.opts)
    metric = a.metric or cfg.eval_metric
    if a.weights:
        model = load_trained_model(cfg, a.weights)
        dataset = build_dataset(cfg.data, cfg.model, "val", train=False)
        dets = predict_model(model, dataset, torch.device("cpu"), cfg.eval_topk, flip_test=a.flip_test, progress=True)
        records, names = dataset.records, dataset.class_names
    else:
        records, names = load_records(cfg.data, "val", cfg.model)
        dets = predict_artifact(a.artifact, records, a.backend, cfg.eval_topk, progress=True)
    metrics = compute_metrics(records, dets, names, metric)
    summary = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
    print(json.dumps(summary, indent=1, default=float))
    if metrics.get("per_class_AP50"):
        print("AP50 per class: " + ", ".join(f"{n} {float(v):.2f}" for n, v in metrics["per_class_AP50"].items()))
    if a.out:
        save_results_json(metrics, a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
