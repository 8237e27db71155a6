"""Fine-tuning start point: a trained float model's weights into a (possibly differently headed) model.

Backbone, decoder and the box heads are reused; the heatmap output layer is re-initialised when the
class count differs (its conv block is reused), and the log says so. Any other shape difference
means another architecture and is an error naming the file.
"""

from __future__ import annotations

import logging
import os
from typing import Dict, List

import torch
import torch.nn as nn

from codenet_pynq.errors import format_message

from .checkpoint import CheckpointError, load_checkpoint

log = logging.getLogger("codenet_pynq.train")

__all__ = ["CLASS_DEPENDENT", "load_init_weights", "read_float_state"]

#: State-dict entries whose shape follows the number of classes.
CLASS_DEPENDENT = ("hm.out.weight", "hm.out.bias")


def resolve_weights_path(path: str) -> str:
    """``path`` itself, or the file of that name shipped in ``codenet_pynq/models/`` when ``path`` is not a file."""
    if os.path.isfile(path):
        return path
    import codenet_pynq

    shipped = os.path.join(os.path.dirname(codenet_pynq.__file__), "models", os.path.basename(path))
    return shipped if os.path.isfile(shipped) else path


def read_float_state(path: str) -> Dict[str, torch.Tensor]:
    """The float model state of a ``.pth`` checkpoint or a ``.npz`` weights file (pickle-free both)."""
    path = resolve_weights_path(path)
    if path.lower().endswith(".npz"):
        from .weights import load_weights

        return load_weights(path)[0]
    return load_checkpoint(path)["model"]


def load_init_weights(model: nn.Module, path: str) -> List[str]:
    """Copy the weights of ``path`` into ``model``; returns the names of the re-initialised entries."""
    state = read_float_state(path)
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    if missing:
        raise CheckpointError(format_message(
            path, f"{len(missing)} weights of this model are not in the file (first: {missing[0]})",
            "--init needs a float model (not a QAT checkpoint) of the same architecture (model.width, variant, "
            "decoder and head channels); change the config to match it"))
    fresh, merged = [], {}
    for k, v in own.items():
        if state[k].shape == v.shape:
            merged[k] = state[k].to(v.dtype)
        elif k in CLASS_DEPENDENT:
            merged[k] = v
            fresh.append(k)
        else:
            raise CheckpointError(format_message(
                path, f"'{k}' has shape {tuple(state[k].shape)} in the file but {tuple(v.shape)} in this model",
                "--init needs a float model of the same architecture; change model.* in the config to match it"))
    model.load_state_dict(merged)
    if fresh:
        old = int(state[CLASS_DEPENDENT[1]].shape[0])
        log.info("--init %s: backbone, decoder and box heads reused; the heatmap head's output layer is "
                 "re-initialised (%d classes in the file, %d now)", path, old, int(own[CLASS_DEPENDENT[1]].shape[0]))
    else:
        log.info("--init %s: all weights reused (same %d classes)", path, int(own[CLASS_DEPENDENT[1]].shape[0]))
    return fresh
