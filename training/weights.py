"""Float model weights as a pickle-free ``.npz`` file (one array per state-dict entry + a JSON header).

``save_weights(path, state, model_config)`` writes it atomically; ``load_weights(path)`` reads it
with ``allow_pickle=False`` and returns ``(state, model_config_dict)``. Errors name the file.
"""

from __future__ import annotations

import io
import json
import zipfile
from typing import Any, Dict, Mapping, Tuple

import numpy as np
import torch

from codenet_pynq.errors import format_message

from .checkpoint import CheckpointError
from .data.records import atomic_write_bytes

__all__ = ["HEADER", "load_weights", "save_weights"]

HEADER = "__codenet_weights__"
FORMAT = "codenet-float-weights"


def save_weights(path: str, state: Mapping[str, torch.Tensor], model_config: Dict[str, Any]) -> str:
    """Write a state dict (tensors) and the model config as a compressed npz; returns ``path``."""
    arrays = {k: v.detach().cpu().numpy() for k, v in state.items()}
    header = json.dumps({"format": FORMAT, "version": 1, "model": model_config, "keys": list(arrays)})
    arrays[HEADER] = np.frombuffer(header.encode("utf-8"), dtype=np.uint8)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())
    return path


def load_weights(path: str) -> Tuple[Dict[str, torch.Tensor], Dict[str, Any]]:
    """Read a weights file (never unpickles) -> (state dict of tensors, model config dict)."""
    hint = "pass a weights file written by codenet-pynq (e.g. codenet_pynq/models/shapes_default_float.npz)"
    try:
        with np.load(path, allow_pickle=False) as z:
            if HEADER not in z.files:
                raise CheckpointError(format_message(path, f"no '{HEADER}' entry: not a codenet-pynq weights file",
                                                     hint))
            header = json.loads(bytes(z[HEADER]).decode("utf-8"))
            state = {k: torch.from_numpy(np.array(z[k])) for k in header["keys"]}
    except CheckpointError:
        raise
    except FileNotFoundError:
        raise CheckpointError(format_message(path, "weights file not found", "check the path")) from None
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError, json.JSONDecodeError,
            UnicodeDecodeError) as e:
        raise CheckpointError(format_message(path, f"not a readable weights file ({type(e).__name__}: {e})",
                                             hint)) from None
    if header.get("format") != FORMAT or not isinstance(header.get("model"), dict):
        raise CheckpointError(format_message(path, "the header is not a codenet-pynq weights header", hint))
    return state, header["model"]
