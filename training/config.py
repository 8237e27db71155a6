"""Experiment configuration: YAML files -> typed dataclasses (model / data / solver / loss)."""

from __future__ import annotations

import copy
import os
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Dict, List, Optional, Sequence

import yaml

from .models.centernet import ModelConfig


@dataclass
class DataConfig:
    """Where the data comes from. ``dataset``: ``shapes`` / ``coco`` (COCO json + images) or ``voc``.

    ``voc_*_sets``: ``[year, set]`` pairs under a VOCdevkit, or ``[set]`` (same as ``["", set]``) for
    an own VOC-format folder ``voc_root`` holding ``Annotations/``, ``JPEGImages/``, ``ImageSets/Main/``.
    """

    dataset: str = "shapes"
    train_json: str = ""
    train_images: str = ""
    val_json: str = ""
    val_images: str = ""
    voc_root: str = ""
    voc_train_sets: List[List[str]] = field(default_factory=lambda: [["2007", "trainval"], ["2012", "trainval"]])
    voc_val_sets: List[List[str]] = field(default_factory=lambda: [["2007", "test"]])
    unknown_classes: str = "error"  # an object of a class not in model.class_names: error, or skip (counted)
    bad_images: str = "error"  # a missing or unreadable image: error, or skip (counted)
    exif_boxes: str = "auto"  # rotated photos: boxes describe the auto (decided by <size>), stored or upright pixels
    max_objs: int = 64
    keep_empty: bool = True
    num_workers: int = 2
    augment: bool = True
    aug_scale: float = 0.4
    aug_shift: float = 0.2
    aug_flip: float = 0.5
    aug_color: bool = True
    aug_camera: float = 0.0  # probability of a camera view (perspective, lighting, blur, noise, JPEG)
    generate_shapes: Dict[str, Any] = field(default_factory=dict)
    #: more COCO JSON files (same classes, images beside each file) added to the training split
    extra_train_json: List[str] = field(default_factory=list)
    #: generate card photos when missing (training/data/cards.py): {out, train, seed}; the
    #: training JSON is then ``<out>/train.json``, to list in ``extra_train_json``
    generate_cards: Dict[str, Any] = field(default_factory=dict)


@dataclass
class SolverConfig:
    """Optimiser and schedule (detectron2-style: iterations, linear warmup, multi-step decay)."""

    optimizer: str = "sgd"
    batch_size: int = 128
    base_lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-4
    weight_decay_norm: float = 0.0
    max_iter: int = 18000
    warmup_iters: int = 1000
    warmup_factor: float = 0.001
    steps: List[int] = field(default_factory=lambda: [12000, 16000])
    gamma: float = 0.1
    amp: bool = True
    clip_grad_norm: float = 0.0
    checkpoint_period: int = 1000
    eval_period: int = 0
    log_period: int = 20
    precise_bn_iters: int = 0
    #: keep BatchNorm statistics as they are (layers in eval mode while training): for fine-tuning
    #: from weights whose BN is folded (shipped .npz: identity BN) or from few images
    freeze_bn: bool = False
    offset_lr_mult: float = 1.0  # learning-rate factor for the deformable offset convs (DCN: 0.1)


@dataclass
class LossConfig:
    hm_weight: float = 1.0
    wh_weight: float = 0.1
    reg_weight: float = 1.0
    focal_alpha: float = 2.0
    focal_gamma: float = 4.0


@dataclass
class QuantConfig:
    """Quantisation-aware training (W4A8). ``enabled``: train with fake-quant from ``init``."""

    enabled: bool = False
    init: str = ""
    calib_batches: int = 8
    weight_bits: int = 4
    first_layer_bits: int = 8
    act_bits: int = 8


@dataclass
class ExperimentConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    solver: SolverConfig = field(default_factory=SolverConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    quant: QuantConfig = field(default_factory=QuantConfig)
    output_dir: str = "runs/default"
    seed: int = 0
    backbone_weights: str = ""
    init_weights: str = ""  # fine-tune from a trained float model (.pth checkpoint or .npz weights); --init
    eval_metric: str = "coco"
    eval_topk: int = 100

    def to_dict(self) -> Dict[str, Any]:
        d = asdict(self)
        d["model"] = self.model.to_dict()
        return d


_SECTIONS = {"data": DataConfig, "solver": SolverConfig, "loss": LossConfig, "quant": QuantConfig}


def _build(cls, values: Dict[str, Any], where: str):
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {unknown}; known: {sorted(names)}")
    return cls(**values)


def config_from_dict(d: Dict[str, Any], source: str = "config") -> ExperimentConfig:
    """Build an ExperimentConfig, naming the file and field of any mistake."""
    d = copy.deepcopy(d or {})
    top = {f.name for f in fields(ExperimentConfig)}
    unknown = sorted(set(d) - top)
    if unknown:
        raise ValueError(f"{source}: unknown top-level field(s) {unknown}; known: {sorted(top)}")
    kw: Dict[str, Any] = {}
    try:
        kw["model"] = ModelConfig.from_dict(d.pop("model", {}) or {})
    except (TypeError, ValueError) as e:
        raise ValueError(f"{source}: model: {e}") from e
    for name, cls in _SECTIONS.items():
        try:
            kw[name] = _build(cls, d.pop(name, {}) or {}, f"{source}: {name}")
        except TypeError as e:
            raise ValueError(f"{source}: {name}: {e}") from e
    kw.update(d)
    return ExperimentConfig(**kw)


def _deep_update(base: Dict[str, Any], upd: Dict[str, Any]) -> Dict[str, Any]:
    for k, v in upd.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            _deep_update(base[k], v)
        else:
            base[k] = v
    return base


def load_config_dict(path: str) -> Dict[str, Any]:
    """Read a YAML config, following ``_base_`` (path relative to the file) recursively."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"config file {path!r} not found")
    with open(path, encoding="utf-8") as f:
        try:
            d = yaml.safe_load(f) or {}
        except yaml.YAMLError as e:
            raise ValueError(f"{path}: not valid YAML ({e})") from e
    if not isinstance(d, dict):
        raise ValueError(f"{path}: the top level must be a mapping")
    base = d.pop("_base_", None)
    if base:
        d = _deep_update(load_config_dict(os.path.join(os.path.dirname(path), base)), d)
    return d


def parse_overrides(opts: Sequence[str]) -> Dict[str, Any]:
    """``["solver.max_iter=10", "model.width=0.5x"]`` -> nested dict (values parsed as YAML)."""
    out: Dict[str, Any] = {}
    for opt in opts:
        if "=" not in opt:
            raise ValueError(f"override {opt!r} must look like section.field=value")
        key, val = opt.split("=", 1)
        node = out
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = yaml.safe_load(val)
    return out


def load_config(path: Optional[str], overrides: Sequence[str] = ()) -> ExperimentConfig:
    d = load_config_dict(path) if path else {}
    d = _deep_update(d, parse_overrides(overrides))
    return config_from_dict(d, path or "config")
