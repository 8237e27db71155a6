"""Build train/val datasets from a DataConfig (shapes, COCO json or Pascal VOC)."""

from __future__ import annotations

import logging
import os
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from codenet_pynq.errors import format_message

from .coco import load_coco
from .dataset import DetectionDataset
from .imagefiles import image_info, oriented_boxes
from .records import AnnotationError, Record
from .shapes import SHAPES_CLASSES, generate_shapes
from .transforms import AugmentConfig
from .voc import VOC_CLASSES, load_voc, voc_names_in_sets

log = logging.getLogger(__name__)


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


def ensure_cards(cfg) -> None:
    """Generate the card photos described by ``data.generate_cards`` when they are missing."""
    g = dict(cfg.generate_cards or {})
    out, n = g.get("out") or "data/shapes_cards", int(g.get("train", 3000))
    if g and n and not os.path.isfile(os.path.join(out, "train.json")):
        from .cards import generate_cards

        generate_cards(out, n, int(g.get("seed", 0)), "train", progress=True)


def is_placeholder(names: Sequence[str]) -> bool:
    """True for the generic ``class0, class1, ...`` names a ModelConfig gets when none are configured."""
    return list(names) == [f"class{i}" for i in range(len(names))]


def configured_class_names(model_cfg) -> Optional[List[str]]:
    """The class names the config gives (``model.class_names``), or None when they are placeholders."""
    if model_cfg is None or is_placeholder(model_cfg.class_names):
        return None
    return list(model_cfg.class_names)


def check_head_count(names: Sequence[str], model_cfg, source: str) -> None:
    """The dataset's classes must match the model's heatmap channels (``model.num_classes``)."""
    if model_cfg is not None and len(names) != model_cfg.num_classes:
        shown = ", ".join(names) if len(names) <= 25 else f"{', '.join(names[:25])}, ..."
        raise AnnotationError(format_message(
            source, f"the dataset has {len(names)} classes ({shown}) but the model has "
            f"model.num_classes = {model_cfg.num_classes} heatmap channels",
            f"set model.num_classes: {len(names)} and model.class_names to the dataset's names, or list "
            "the classes to train in model.class_names (with data.unknown_classes: skip for the others)"))


def _check_images(records: List[Record], bad_images: str, exif_boxes: str, counts: Dict[str, int]) -> List[Record]:
    """COCO records: the image files must exist and be images; boxes into the pixels the model sees."""
    out = []
    for rec in records:
        source = f"{rec['file']} (image id {rec['image_id']})"
        try:
            if not os.path.isfile(rec["file"]):
                raise AnnotationError(format_message(rec["file"], f"image file of image id {rec['image_id']} not found",
                                                     "check data.*_images (the image folder) and the file_name"))
            info = image_info(rec["file"], source)
        except AnnotationError as e:
            if bad_images != "skip":
                raise
            counts["bad_images"] = counts.get("bad_images", 0) + 1
            log.warning("skipped: %s", e)
            continue
        boxes, (w, h) = oriented_boxes(rec["boxes"], info, (rec["width"], rec["height"]), exif_boxes, source)
        out.append(dict(rec, boxes=np.asarray(boxes, np.float32), width=w, height=h))
    return out


def _report_skips(counts: Dict[str, int], where: str) -> None:
    unknown = {k.split(":", 1)[1]: n for k, n in counts.items() if k.startswith("unknown:")}
    if unknown:
        log.warning("%s: skipped %d objects of classes not in model.class_names (data.unknown_classes: skip): %s",
                    where, sum(unknown.values()), ", ".join(f"{k} x{n}" for k, n in sorted(unknown.items())))
    if counts.get("bad_images"):
        log.warning("%s: skipped %d missing or unreadable images (data.bad_images: skip)", where,
                    counts["bad_images"])


def load_records(cfg, split: str, model_cfg=None, counts: Optional[Dict[str, int]] = None
                 ) -> Tuple[List[Record], List[str]]:
    """Records and class names of ``split`` ('train' or 'val').

    With ``model_cfg`` the class names come from ``model.class_names`` (COCO data: from the JSON
    when the config has none) and the count is checked against ``model.num_classes``; without it
    VOC data uses the 20 VOC names. ``counts`` receives what was skipped (see :mod:`.voc`). The
    training split also holds the records of ``data.extra_train_json``.
    """
    counts = {} if counts is None else counts
    records, names = _load_split(cfg, split, model_cfg, counts)
    if split == "train" and cfg.extra_train_json:
        records = records + _extra_train(cfg, names, counts, next_id=max((r["image_id"] for r in records), default=0) + 1)
    return records, names


def _load_split(cfg, split: str, model_cfg, counts: Dict[str, int]) -> Tuple[List[Record], List[str]]:
    """:func:`load_records` of the configured dataset alone."""
    names_cfg = configured_class_names(model_cfg)
    if cfg.dataset in ("shapes", "coco"):
        if cfg.dataset == "shapes":
            ensure_shapes(cfg)
        js, root = (cfg.train_json, cfg.train_images) if split == "train" else (cfg.val_json, cfg.val_images)
        if not js:
            raise ValueError(f"data.{split}_json is empty: give the COCO annotation file of the {split} split")
        names = SHAPES_CLASSES if cfg.dataset == "shapes" else names_cfg
        records, names = load_coco(js, root or os.path.dirname(js), names, cfg.unknown_classes, counts)
        check_head_count(names, model_cfg, js)
        if cfg.dataset == "coco":
            records = _check_images(records, cfg.bad_images, cfg.exif_boxes, counts)
        _report_skips(counts, js)
        return records, list(names)
    if cfg.dataset == "voc":
        sets: Sequence = cfg.voc_train_sets if split == "train" else cfg.voc_val_sets
        year_sets = [tuple(s) if len(s) == 2 else ("", s[0]) for s in sets]
        if names_cfg is None:
            if model_cfg is not None and model_cfg.num_classes != len(VOC_CLASSES):
                found = voc_names_in_sets(cfg.voc_root, year_sets)
                check_head_count(found, model_cfg, cfg.voc_root)
                raise AnnotationError(format_message(
                    "config", "model.class_names is not set, and VOC-format data needs the class names",
                    f"set model.class_names: [{', '.join(found)}] (the names found in the annotations, "
                    "in the order you want)"))
            names_cfg = list(VOC_CLASSES)
        records = load_voc(cfg.voc_root, year_sets, names_cfg, unknown=cfg.unknown_classes,
                           bad_images=cfg.bad_images, exif_boxes=cfg.exif_boxes, counts=counts)
        check_head_count(names_cfg, model_cfg, cfg.voc_root)
        _report_skips(counts, cfg.voc_root)
        return records, names_cfg
    raise ValueError(f"data.dataset {cfg.dataset!r} unknown: 'shapes', 'coco' or 'voc'")


def _extra_train(cfg, names: Sequence[str], counts: Dict[str, int], next_id: int) -> List[Record]:
    """The records of ``data.extra_train_json`` (classes checked against ``names``), image ids
    continuing from ``next_id``."""
    ensure_cards(cfg)
    out: List[Record] = []
    for js in cfg.extra_train_json:
        if not os.path.isfile(js):
            raise AnnotationError(format_message(js, "listed in data.extra_train_json but not found",
                                                 "generate it (data.generate_cards, or the generator's CLI) or "
                                                 "remove it from the list"))
        recs, extra_names = load_coco(js, os.path.dirname(js), names, cfg.unknown_classes, counts)
        if list(extra_names) != list(names):
            raise AnnotationError(format_message(js, f"classes {list(extra_names)} differ from the training "
                                                 f"split's {list(names)}", "use the same classes in every "
                                                 "training JSON"))
        if cfg.dataset != "shapes":  # user images: checked as the training split's own
            recs = _check_images(recs, cfg.bad_images, cfg.exif_boxes, counts)
            _report_skips(counts, js)
        for r in recs:
            out.append(dict(r, image_id=next_id))
            next_id += 1
    return out


def build_dataset(cfg, model_cfg, split: str, train: bool) -> DetectionDataset:
    """A DetectionDataset for ``split``; ``train`` enables augmentation (when data.augment)."""
    records, names = load_records(cfg, split, model_cfg)
    if train:  # difficult VOC objects are evaluated as "ignore", never trained on
        records = [_drop_difficult(r) for r in records]
    aug = AugmentConfig(scale_range=(1 - cfg.aug_scale, 1 + cfg.aug_scale), shift=cfg.aug_shift,
                        flip_prob=cfg.aug_flip, color=cfg.aug_color, camera_prob=cfg.aug_camera)
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
