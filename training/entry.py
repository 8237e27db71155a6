"""Console entry points of the training package, importable without torch.

Each one imports its module only when run, so that a missing training dependency (torch, onnx,
pyyaml, pycocotools, pillow) gives one line saying how to install the training extra instead of
``ModuleNotFoundError``.
"""

from __future__ import annotations

import importlib
import sys
from typing import Optional, Sequence

__all__ = ["data", "evaluate", "export", "train"]

TRAIN_EXTRA_MODULES = ("torch", "onnx", "yaml", "pycocotools", "PIL")
INSTALL_HINT = 'pip install "codenet-pynq[train]"'


def _main(prog: str, module: str, argv: Optional[Sequence[str]]) -> int:
    try:
        mod = importlib.import_module(f"codenet_pynq.training.{module}")
    except ModuleNotFoundError as e:
        top = (e.name or "").split(".")[0]
        if top not in TRAIN_EXTRA_MODULES:
            raise
        print(f"{prog}: error: the training tools need the training extra, and '{top}' is not installed. "
              f"Install it with: {INSTALL_HINT} (CPU-only torch: add --extra-index-url "
              "https://download.pytorch.org/whl/cpu)", file=sys.stderr)
        return 2
    return int(mod.main(argv) or 0)


def train(argv: Optional[Sequence[str]] = None) -> int:
    """``codenet-pynq-train``."""
    return _main("codenet-pynq-train", "train", argv)


def evaluate(argv: Optional[Sequence[str]] = None) -> int:
    """``codenet-pynq-eval``."""
    return _main("codenet-pynq-eval", "evaluate", argv)


def export(argv: Optional[Sequence[str]] = None) -> int:
    """``codenet-pynq-export``."""
    return _main("codenet-pynq-export", "export", argv)


def data(argv: Optional[Sequence[str]] = None) -> int:
    """``codenet-pynq-data`` (split, check)."""
    return _main("codenet-pynq-data", "datatools", argv)
