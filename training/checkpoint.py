"""Training checkpoints: pickle-free loading, durable saving, the last two kept, fall-back on corruption.

A run folder holds ``last_checkpoint.pth`` and ``previous_checkpoint.pth``. Saving writes a temp
file in the same folder, flushes and fsyncs it, moves the current last checkpoint to the previous
name, renames the temp file into place and fsyncs the folder, so a crash at any moment leaves at
least one complete checkpoint. Resuming tries the last checkpoint, then the previous one (and says
so, moving the unreadable one aside as ``last_checkpoint.pth.corrupt``); both unreadable is a :class:`CheckpointError` naming both files and what to do.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Dict, Optional, Tuple

import torch

from codenet_pynq.errors import CodenetError, format_message
from codenet_pynq.files import atomic_open

log = logging.getLogger("codenet_pynq.train")

LAST = "last_checkpoint.pth"
PREVIOUS = "previous_checkpoint.pth"
FINAL = "model_final.pth"

__all__ = ["CheckpointError", "FINAL", "LAST", "PREVIOUS", "atomic_torch_save", "load_checkpoint",
           "load_resume_checkpoint", "load_state_into", "rotate_and_save"]


class CheckpointError(CodenetError, ValueError):
    """A checkpoint is missing, unreadable (truncated, empty, foreign) or does not fit the model."""


def atomic_torch_save(obj: Any, path: str, keep_previous: Optional[str] = None) -> str:
    """Save ``obj`` durably at ``path`` (temp file, fsync, rename, fsync of the folder: the
    package's one atomic writer, :func:`codenet_pynq.files.atomic_open`).

    ``keep_previous``: move the file being replaced to this path first (a crash between the two
    renames leaves it there, and :func:`load_resume_checkpoint` falls back to it).
    """
    with atomic_open(path, keep_previous=keep_previous) as f:
        torch.save(obj, f)
    return path


def rotate_and_save(obj: Any, folder: str) -> str:
    """Save ``obj`` as ``folder/last_checkpoint.pth``, keeping the one it replaces as ``previous_checkpoint.pth``."""
    return atomic_torch_save(obj, os.path.join(folder, LAST), keep_previous=os.path.join(folder, PREVIOUS))


def load_checkpoint(path: str) -> Dict[str, Any]:
    """Load a checkpoint without pickle (``weights_only=True``); errors name the file and what to do."""
    if not os.path.isfile(path):
        raise CheckpointError(format_message(path, "checkpoint not found",
                                             "check the path (e.g. OUTPUT_DIR/model_final.pth)"))
    if os.path.getsize(path) == 0:
        raise CheckpointError(format_message(path, "the checkpoint is empty (0 bytes)",
                                             "it was cut off while being written; use another checkpoint"))
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated, foreign or pickled-object files all land here
        first = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise CheckpointError(format_message(
            path, f"not a readable codenet-pynq checkpoint ({first})",
            "it is probably truncated or not a checkpoint; use another checkpoint")) from None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("model"), dict):
        raise CheckpointError(format_message(path, "the file holds no 'model' state dict",
                                             "pass a checkpoint written by codenet-pynq-train"))
    return ckpt


def load_state_into(model: torch.nn.Module, state: Dict[str, Any], path: str, hint: str) -> None:
    """``model.load_state_dict(state)``; a mismatch becomes a CheckpointError naming ``path``."""
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        detail = lines[1] if len(lines) > 1 else (lines[0] if lines else "")
        raise CheckpointError(format_message(path, f"does not fit the model of this config ({detail[:200]})",
                                             hint)) from None


def load_resume_checkpoint(folder: str) -> Tuple[Optional[Dict[str, Any]], Optional[str]]:
    """The newest readable checkpoint of a run folder -> (checkpoint, path); (None, None) when there is none.

    A corrupt last checkpoint is reported in the log and the previous one is used instead.
    """
    last, prev = os.path.join(folder, LAST), os.path.join(folder, PREVIOUS)
    errors = []
    if not os.path.isfile(last) and os.path.isfile(prev):
        log.warning("%s is missing (a save was interrupted?); resuming from %s", last, prev)
    for path in (last, prev):
        if not os.path.isfile(path):
            continue
        try:
            ckpt = load_checkpoint(path)
        except CheckpointError as e:
            errors.append(str(e))
            log.warning("%s; trying the previous checkpoint", e)
            continue
        if errors:
            kept = f"{last}.corrupt"
            if os.path.isfile(last):  # moved aside, so that the next save cannot push out the good one
                os.replace(last, kept)
            log.warning("resuming from %s (iteration %s) instead of the unreadable %s (kept as %s)", path,
                        ckpt.get("iteration"), last, kept)
        return ckpt, path
    if errors:
        raise CheckpointError(format_message(
            folder, "no readable checkpoint to resume from (" + "; ".join(errors) + ")",
            "start a new run in another output_dir, or leave out --resume to start again here "
            "(metrics.jsonl is kept as a backup)"))
    return None, None
