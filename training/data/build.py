"""Build train/val datasets from a DataConfig (shapes, COCO json or Pascal VOC)."""

from __future__ import annotations

import os
from typing import List, Sequence, Tuple

from .coco import load_coco
from .dataset import DetectionDataset
from .records import Record
from .shapes import SHAPES_CLASSES, generate_shapes
from .transforms import AugmentConfig
from .voc import VOC_CLASSES, load_voc


def ensure_shapes(cfg) -> None:
    """Generate the shapes dataset described by ``data.generate_shapes`` when it is missing."""
    g = dict(cfg.generate_shapes or {})
    if not g:
        return
    out = g.get("out") or os.path.dirname(cfg.train_json) or "data/shapes"
    size = g.get("size_range", [192, 320])
    spec = ((size[0], size[1]), (size[0], size[1]))
    for split, n, json_path in (("train", g.get("train", 2000), cfg.train_json), ("val", g.get("val", 500), cfg.val_json)):
        if n and json_path and not os.path.isfile(json_path):
            generate_shapes(out, int(n), spec, int(g.get("seed", 0)), split, progress=True,
                            style=str(g.get("style", "hard")))


def load_records(cfg, split: str) -> Tuple[List[Record], List[str]]:
    """Records and class names of ``split`` ('train' or 'val')."""
    if cfg.dataset in ("shapes", "coco"):
        if cfg.dataset == "shapes":
            ensure_shapes(cfg)
        js, root = (cfg.train_json, cfg.train_images) if split == "train" else (cfg.val_json, cfg.val_images)
        if not js:
            raise ValueError(f"data.{split}_json is empty: give the COCO annotation file of the {split} split")
        names = SHAPES_CLASSES if cfg.dataset == "shapes" else None
        records, names = load_coco(js, root or os.path.dirname(js), names)
        return records, list(names)
    if cfg.dataset == "voc":
        sets: Sequence = cfg.voc_train_sets if split == "train" else cfg.voc_val_sets
        return load_voc(cfg.voc_root, [tuple(s) for s in sets], VOC_CLASSES), list(VOC_CLASSES)
    raise ValueError(f"data.dataset {cfg.dataset!r} unknown: 'shapes', 'coco' or 'voc'")


def build_dataset(cfg, model_cfg, split: str, train: bool) -> DetectionDataset:
    """A DetectionDataset for ``split``; ``train`` enables augmentation (when data.augment)."""
    records, names = load_records(cfg, split)
    if train:  # difficult VOC objects are evaluated as "ignore", never trained on
        records = [_drop_difficult(r) for r in records]
    aug = AugmentConfig(scale_range=(1 - cfg.aug_scale, 1 + cfg.aug_scale), shift=cfg.aug_shift,
                        flip_prob=cfg.aug_flip, color=cfg.aug_color)
    return DetectionDataset(records, names, model_cfg.input_size, model_cfg.down_ratio, cfg.max_objs, train=train,
                            augment=train and cfg.augment, keep_empty=cfg.keep_empty, augment_config=aug)


def _drop_difficult(rec: Record) -> Record:
    d = rec.get("difficult")
    if d is None or not d.any():
        return rec
    keep = ~d
    out = dict(rec)
    out.update(boxes=rec["boxes"][keep], labels=rec["labels"][keep], difficult=d[keep])
    return out
