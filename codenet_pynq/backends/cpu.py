"""CPU backend: ONNX Runtime on the artifact's graph (integer-exact graph when quantized)."""

from __future__ import annotations

import os
from typing import Dict, Optional

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


class CpuBackend(Backend):
    """ONNX Runtime, CPU execution provider. ``graph``: 'auto' | 'int' | 'float'."""

    name = "cpu"

    def __init__(self, artifact: Artifact, graph: str = "auto", threads: Optional[int] = None):
        ort = _ort()
        self.artifact = artifact
        self.graph_kind = ("int" if artifact.quantized else "float") if graph == "auto" else graph
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        n = threads if threads is not None else int(os.environ.get("CODENET_THREADS", "0"))
        if n:
            so.intra_op_num_threads = n
        try:
            self.session = ort.InferenceSession(artifact.graph(self.graph_kind), so, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types
            raise BackendError(f"{artifact.path}: ONNX Runtime cannot load the {self.graph_kind} graph ({e}); "
                               "re-export the artifact or upgrade onnxruntime (>= 1.16)") from e
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.scales = self._scales()

    def _scales(self) -> Dict[str, float]:
        """Head output scales of the integer graph (metadata ``codenet_int``, see docs/quantization.md)."""
        if self.graph_kind != "int":
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
        if self.graph_kind != "int":
            return {k: raw[k][0].astype(np.float32, copy=False) for k in ("hm", "wh", "reg")}
        return {role: raw[f"{role}_q"][0].astype(np.float32) * np.float32(self.scales[role])
                for role in ("hm", "wh", "reg")}

    def describe(self) -> str:
        return f"cpu (ONNX Runtime {_ort().__version__}, {self.graph_kind} graph)"
