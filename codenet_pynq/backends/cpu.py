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

import collections
import os
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Deque, Dict, List, Optional, Tuple

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

    ``streams``: frames in flight under :meth:`~codenet_pynq.detector.Detector.stream` (default
    ``CODENET_STREAMS`` or 1). With 2 or more, ``submit`` / ``collect`` run whole frames on that
    many extra sessions (created at the first ``submit``), each on its share of the threads: a
    frame's small layers do not keep two cores busy, two frames on one core each do. More frames
    per second for large inputs (1.28x for the 1.0x network at 512 on 2 cores), none for small
    ones (the shipped 256 model streams slower: docs/benchmarks.md), and each frame takes longer.
    :meth:`run` keeps the one session with all threads (the lowest latency).
    """

    name = "cpu"

    def __init__(self, artifact: Artifact, graph: str = "auto", threads: Optional[int] = None,
                 spin: Optional[bool] = None, streams: Optional[int] = None):
        _ort()  # a clear error first when onnxruntime is missing
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
        n = threads if threads is not None else int(os.environ.get("CODENET_THREADS", "0"))
        self._spin = spin if spin is not None else os.environ.get("CODENET_SPIN", "1") != "0"
        self._model = model
        self.session = self._session(n)
        cores = n or os.cpu_count() or 1
        self.streams = max(1, streams if streams is not None else int(os.environ.get("CODENET_STREAMS", "1")))
        self._stream_threads = max(1, cores // self.streams)
        self._pool: Optional[ThreadPoolExecutor] = None
        self._stream_sessions: List[Any] = []
        self._free: Deque[Any] = collections.deque()
        self._pending: Deque[Future] = collections.deque()
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.scales = self._scales()

    def _session(self, threads: int) -> Any:
        ort = _ort()
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            so.intra_op_num_threads = threads
        if not self._spin:
            so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            return ort.InferenceSession(self._model, so, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types
            raise BackendError(f"{self.artifact.path}: ONNX Runtime cannot load the {self.graph_kind} graph ({e}); "
                               "re-export the artifact or upgrade onnxruntime (>= 1.16)") from e

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
        return self._outputs(self.session, np.ascontiguousarray(pixels, dtype=np.uint8)[None])

    def _outputs(self, sess: Any, x: np.ndarray) -> Dict[str, np.ndarray]:
        return dict(zip(self.output_names, sess.run(None, {self.input_name: x})))

    def run(self, pixels: np.ndarray) -> Dict[str, np.ndarray]:
        return self._heads(self.run_raw(pixels))

    # ---------------------------------------------------------------- frames in flight
    @property
    def frames_in_flight(self) -> int:  # type: ignore[override]
        """Frames Detector.stream keeps in this backend at once (its ``streams``)."""
        return self.streams

    def submit(self, pixels: np.ndarray) -> None:
        """Start a frame on a free stream session (queued when all are busy); :meth:`collect`
        returns the outputs of the oldest one. ``pixels`` must not change until then."""
        if self._pool is None:
            self._stream_sessions = [self._session(self._stream_threads) for _ in range(self.streams)]
            self._free.extend(self._stream_sessions)
            self._pool = ThreadPoolExecutor(self.streams, thread_name_prefix="codenet-cpu")
        x = np.ascontiguousarray(pixels, dtype=np.uint8)[None]
        self._pending.append(self._pool.submit(self._run_stream, x))

    def _run_stream(self, x: np.ndarray) -> Dict[str, np.ndarray]:
        sess = self._free.popleft()  # a pool of `streams` workers: one session free per running task
        try:
            return self._outputs(sess, x)
        except Exception as e:  # onnxruntime raises its own exception types
            raise BackendError(f"{self.artifact.path}: ONNX Runtime failed on a frame of shape {x.shape[1:]} ({e})") from e
        finally:
            self._free.append(sess)

    def collect(self) -> Dict[str, np.ndarray]:
        """Outputs of the oldest submitted frame (waits for it); its error, if it failed."""
        if not self._pending:
            raise BackendError("cpu backend: no frame in flight; submit() a frame before collect()")
        return self._heads(self._pending.popleft().result())

    def drain(self) -> None:
        """Wait for and discard every frame in flight."""
        while self._pending:
            try:
                self._pending.popleft().result()
            except Exception:  # nobody collects it
                pass

    def close(self) -> None:
        self.drain()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
            self._stream_sessions, self._free = [], collections.deque()

    def _heads(self, raw: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        if self.graph_kind == "float":
            return {k: raw[k][0].astype(np.float32, copy=False) for k in ("hm", "wh", "reg")}
        return {role: raw[f"{role}_q"][0].astype(np.float32) * np.float32(self.scales[role])
                for role in ("hm", "wh", "reg")}

    def describe(self) -> str:
        note = f"; {self.note}" if self.note else ""
        return f"cpu (ONNX Runtime {_ort().__version__}, {self.graph_kind} graph{note})"
