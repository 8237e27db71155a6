"""Saving evaluation results: metrics json (atomic) and per-class precision/recall plots."""

from __future__ import annotations

import json
import math
import os
from typing import Any, Mapping, Optional, Union

import numpy as np

from codenet_pynq.files import atomic_open, atomic_write

__all__ = ["plot_pr_curves", "save_results_json", "to_jsonable"]

PathLike = Union[str, "os.PathLike[str]"]


def to_jsonable(value: Any) -> Any:
    """Plain-JSON copy of ``value``: numpy scalars/arrays to Python, NaN/inf to None, keys to str."""
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def save_results_json(metrics: Mapping[str, Any], path: PathLike) -> None:
    """Write ``metrics`` as indented strict JSON (NaN becomes null), atomically (temp + os.replace)."""
    text = json.dumps(to_jsonable(metrics), indent=2, sort_keys=False, allow_nan=False)
    atomic_write(path, text + "\n")


def plot_pr_curves(
    curves: Mapping[str, Mapping[str, Any]],
    path: PathLike,
    title: Optional[str] = None,
    ncols: int = 5,
) -> None:
    """Plot one precision/recall panel per class and save it to a PNG (matplotlib Agg backend).

    ``curves``: ``{class_name: {"recall": array, "precision": array, "ap": fraction}}`` as returned
    by ``voc_pr_curves``. The file is written atomically.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = list(curves)
    n = max(len(names), 1)
    ncols = max(1, min(ncols, n))
    nrows = (n + ncols - 1) // ncols
    fig = Figure(figsize=(3.0 * ncols, 2.8 * nrows))
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax in axes.ravel()[len(names):]:
        ax.set_visible(False)
    for ax, name in zip(axes.ravel(), names):
        c = curves[name]
        recall = np.asarray(c.get("recall", []), dtype=np.float64)
        precision = np.asarray(c.get("precision", []), dtype=np.float64)
        ap = c.get("ap")
        if recall.size:
            ax.plot(recall, precision, drawstyle="steps-post", linewidth=1.2)
        label = name if ap is None or not np.isfinite(ap) else f"{name}  AP={100.0 * ap:.1f}"
        ax.set_title(label, fontsize=9)
        ax.set_xlim(0.0, 1.0)
        ax.set_ylim(0.0, 1.02)
        ax.set_xlabel("recall", fontsize=8)
        ax.set_ylabel("precision", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(True, alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    with atomic_open(path) as f:
        fig.savefig(f, format="png", dpi=100)
