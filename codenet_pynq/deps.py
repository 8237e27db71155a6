"""Optional and board-provided dependencies, imported with a message that says how to get them.

OpenCV is not an install requirement of the runtime: a PYNQ image brings its own ``cv2`` (built
with its video and camera support), and pip must not install ``opencv-python-headless`` over it.
On a host, the ``[host]`` extra installs it (``pip install "codenet-pynq[host]"``).
matplotlib and ipywidgets are used by the notebooks only (the ``[notebooks]`` extra).
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["cv2", "optional"]

_HINTS = {
    "cv2": "on a PYNQ board image OpenCV is preinstalled (use the image's Python); on a host "
           "`pip install \"codenet-pynq[host]\"` (or opencv-python-headless)",
    "matplotlib": "`pip install \"codenet-pynq[notebooks]\"` (or matplotlib); PYNQ images have it",
    "ipywidgets": "`pip install \"codenet-pynq[notebooks]\"` (or ipywidgets); PYNQ images have it",
}


def optional(module: str, purpose: str) -> Any:
    """Import ``module`` or raise ImportError naming what needs it and how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        hint = _HINTS.get(module.split(".")[0], f"pip install {module.split('.')[0]}")
        raise ImportError(f"codenet-pynq: {purpose} needs {module}, which cannot be imported ({e}); {hint}") from e


cv2 = optional("cv2", "the runtime (image reading, letterboxing, drawing)")
