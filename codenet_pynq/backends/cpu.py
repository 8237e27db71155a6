"""CPU backend: ONNX Runtime on the artifact's graph (integer-exact graph when quantized).

Graphs (``graph=``): ``fast`` is the fast integer graph built from the artifact's program when
the session starts (:mod:`codenet_pynq.training.quant.onnx_fast`: 8-bit tensors and ONNX
Runtime's int32 conv kernels; needs the ``onnx`` package, and its requantisation model of the
runtime must pass a probe on this machine, :func:`~codenet_pynq.training.quant.onnx_fast.runtime_self_test`);
``int`` is the stored integer-exact graph (float arithmetic, any ONNX runtime); ``float`` the
stored float graph. ``auto``: ``fast`` for a quantized model when it can be built and the probe
passes, else ``int``; ``float`` for a float model. All integer graphs give the golden's integers.
"""

from __future__ import annotations

import os
from typing import Dict, Optional, Tuple

import numpy as np

from ..artifact import Artifact
from ..errors import BackendError
from .base import Backend


def _ort():
    try:
        import onnxruntime as ort
    except ImportError as e:  # pragma: no cover - depends on the install
        raise BackendError("the cpu backend needs onnxruntime: pip install onnxruntime") from e
    return ort


GRAPHS = ("auto", "fast", "int", "float")


def _fast_graph(artifact: Artifact, required: bool) -> Tuple[Optional[bytes], str]:
    """(serialized fast integer graph, "") or (None, why not); raises when ``required``."""
    try:
        from ..training.quant.onnx_fast import build_fast_int_onnx, runtime_self_test
    except ImportError as e:  # the onnx package is an optional dependency of the runtime
        why = f"fast integer graph unavailable: {e}; pip install onnx"
    else:
        if runtime_self_test():
            return build_fast_int_onnx(artifact.program()).SerializeToString(), ""
        why = "fast integer graph disabled: this ONNX Runtime failed its requantisation probe"
    if required:
        raise BackendError(f"{artifact.path}: {why}")
    return None, why


class CpuBackend(Backend):
    """ONNX Runtime, CPU execution provider. ``graph``: 'auto' | 'fast' | 'int' | 'float'.

    ``threads``: intra-op threads (default ``CODENET_THREADS`` or ONNX Runtime's choice);
    ``spin``: whether idle pool threads spin while waiting for work (default, as ONNX Runtime
    does: fastest on an otherwise idle machine) or sleep (``False`` or ``CODENET_SPIN=0``: on a
    machine whose cores other processes keep busy, spinning threads wait on each other and a
    2-thread run can take 2x longer; docs/benchmarks.md).
    """

    name = "cpu"

    def __init__(self, artifact: Artifact, graph: str = "auto", threads: Optional[int] = None,
                 spin: Optional[bool] = None):
        ort = _ort()
        if graph not in GRAPHS:
            raise BackendError(f"cpu backend: unknown graph {graph!r}; expected one of {', '.join(GRAPHS)}")
        self.artifact = artifact
        self.note = ""
        model = None
        if graph == "fast" and not artifact.quantized:
            raise BackendError(f"{artifact.path}: the fast integer graph needs a quantized model; use graph='float'")
        if graph in ("auto", "fast") and artifact.quantized:
            model, self.note = _fast_graph(artifact, required=graph == "fast")
        self.graph_kind = ("fast" if model is not None else "int" if artifact.quantized else "float") \
            if graph == "auto" else graph
        if model is None:
            model = artifact.graph(self.graph_kind)
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        n = threads if threads is not None else int(os.environ.get("CODENET_THREADS", "0"))
        if n:
            so.intra_op_num_threads = n
        if not (spin if spin is not None else os.environ.get("CODENET_SPIN", "1") != "0"):
            so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types
            raise BackendError(f"{artifact.path}: ONNX Runtime cannot load the {self.graph_kind} graph ({e}); "
                               "re-export the artifact or upgrade onnxruntime (>= 1.16)") from e
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.scales = self._scales()

    def _scales(self) -> Dict[str, float]:
        """Head output scales of the integer graph (metadata ``codenet_int``, see docs/quantization.md)."""
        if self.graph_kind == "float":
            return {}
        import json

        meta = self.session.get_modelmeta().custom_metadata_map
        try:
            outs = json.loads(meta["codenet_int"])["outputs"]
            return {role: float(outs[role]["scale"]) for role in ("hm", "wh", "reg")}
        except (KeyError, ValueError, TypeError) as e:
            raise BackendError(f"{self.artifact.path}: the integer graph lacks valid 'codenet_int' metadata "
                               f"({e}); re-export the artifact") from e

    def run_raw(self, pixels: np.ndarray) -> Dict[str, np.ndarray]:
        """Graph outputs by name, unchanged (integers for the integer graph)."""
        x = np.ascontiguousarray(pixels, dtype=np.uint8)[None]
        return dict(zip(self.output_names, self.session.run(None, {self.input_name: x})))

    def run(self, pixels: np.ndarray) -> Dict[str, np.ndarray]:
        raw = self.run_raw(pixels)
        if self.graph_kind == "float":
            return {k: raw[k][0].astype(np.float32, copy=False) for k in ("hm", "wh", "reg")}
        return {role: raw[f"{role}_q"][0].astype(np.float32) * np.float32(self.scales[role])
                for role in ("hm", "wh", "reg")}

    def describe(self) -> str:
        note = f"; {self.note}" if self.note else ""
        return f"cpu (ONNX Runtime {_ort().__version__}, {self.graph_kind} graph{note})"
