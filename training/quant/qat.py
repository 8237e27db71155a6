"""Quantization-aware training entry points used by the trainer, evaluator and exporter."""

from __future__ import annotations

import logging
from typing import Iterable

import torch

from ..checkpoint import load_checkpoint, load_state_into
from ..models.centernet import CoDeNet
from .qgraph import QGraph, build_qgraph

log = logging.getLogger(__name__)


def prepare_qat(model: CoDeNet, cfg, load_init: bool = True) -> QGraph:
    """Load the float checkpoint ``quant.init`` (when ``load_init``), fold it into a QGraph.

    The QGraph still needs :meth:`QGraph.calibrate` unless a QAT checkpoint is loaded next.
    """
    if load_init:
        if not cfg.quant.init:
            raise ValueError("quant.enabled needs quant.init: the float checkpoint to start QAT from "
                             "(e.g. runs/shapes_default/model_final.pth)")
        load_state_into(model, load_checkpoint(cfg.quant.init)["model"], cfg.quant.init,
                        "quant.init must be a float checkpoint of this model config (same classes and sizes)")
    model.eval()
    graph = build_qgraph(model, cfg.quant.weight_bits, cfg.quant.first_layer_bits)
    graph.cfg = model.cfg
    return graph


def calibrate_from_loader(graph: QGraph, batches: Iterable, num_batches: int, device: torch.device) -> None:
    """Calibrate activation scales on ``num_batches`` image batches of a (train) loader."""

    def images():
        for i, batch in enumerate(batches):
            if i >= num_batches:
                return
            yield (batch[0] if isinstance(batch, (tuple, list)) else batch).to(device)

    graph.calibrate(images())
    log.info("calibrated %d activation scale groups on %d batches", len(graph.group_index), num_batches)
