"""FPGA backend: the CoDeNet accelerator (``codenet_top``) on a PYNQ board.

Two layers, so that the same driver runs on a board and, without one, over an emulated platform
(:mod:`codenet_pynq.platform`, used by the ``emulator`` backend and the tests):

- :class:`CodenetAccelerator` -- the driver. Construction compiles the artifact's integer
  program for the engine's parameters (after checking that the artifact was exported for
  them), allocates three DRAM buffers once (descriptor table, weights, activations) and uploads
  the table and the weights. Per frame (:meth:`~CodenetAccelerator.run`): the letterboxed image
  goes into the input placement of the activation buffer, ``sync_to_device``, the address
  registers and ``n_layers`` are written (at the offsets of ``platform.regs``), ``ap_start``; the
  driver polls ``ap_done`` with a growing sleep until a deadline
  (:class:`~codenet_pynq.errors.AcceleratorTimeout` past it), requires the ``ap_vld`` bits of
  ``status`` and ``cycles`` (cleared before the start: an ``ap_done`` without them is a done
  without a finished run and raises instead of returning stale outputs), reads ``status``
  (non-zero: :class:`~codenet_pynq.errors.BackendError` naming the failing descriptor and its
  layers), ``sync_from_device``, gathers the three head tensors and dequantises them with the
  program's output scales. A frame that finds the IP still busy (a run abandoned by an earlier
  timeout) waits for it up to ``timeout_s`` before touching the buffers, then refuses with
  "accelerator busy".
- :class:`PynqPlatform` / :class:`FpgaBackend` -- the board: ``pynq.Overlay`` of
  ``codenet.bit`` + ``.hwh``, the IP found by VLNV (``*:hls:codenet_top:*``, exported by
  ``hls_src/scripts/run_hls.tcl`` as ``codenet:hls:codenet_top:1.0``) and bound to a
  ``pynq.DefaultIP`` subclass, its register map (PYNQ's ``ip_dict``, else read from the .hwh)
  checked register by register against ``codenet_params.h``
  (:func:`~codenet_pynq.registers.checked_register_map`), buffers from ``pynq.allocate``.

``pynq`` is optional: it is imported only when an FPGA backend is created (or probed by
:func:`fpga_available`, which never raises). Without it every entry point says so and points
at the CPU fallback.
"""

from __future__ import annotations

import fnmatch
import functools
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..accel.compile import CompiledProgram, compile_program
from ..accel.emulib import STATUS_TEXT
from ..accel.params import HwParams, ParamsError, load_params
from ..artifact import Artifact
from ..boards import board_name  # $BOARD / $PYNQ_BOARD / the device; no silent default
from ..errors import AcceleratorTimeout, ArtifactError, BackendError, format_message
from ..platform import STATUS_ENGINE_ERROR, Platform
from ..program import Program, ProgramError
from ..registers import AP_DONE, AP_IDLE, AP_START, checked_register_map, find_module, parse_hwh
from .base import Backend

__all__ = ["CodenetAccelerator", "PynqPlatform", "FpgaBackend", "fpga_available", "find_overlay",
           "check_hardware", "hardware_mismatches", "IP_VLNV", "IP_VLNV_PATTERN"]

#: VLNV of the IP exported by hls_src/scripts/run_hls.tcl (the DefaultIP subclass binds to it)
IP_VLNV = "codenet:hls:codenet_top:1.0"
#: what the driver accepts when it looks for the IP in an overlay (any vendor / version)
IP_VLNV_PATTERN = "*:hls:codenet_top:*"
OVERLAY_NAME = "codenet.bit"
_PKG_DIR = Path(__file__).resolve().parents[1]
_REPO_DIR = _PKG_DIR.parent

_STATUS_TEXT = {**STATUS_TEXT,
                STATUS_ENGINE_ERROR: "an exception in the emulated engine (see the emulated IP's worker_error)"}
_NO_PYNQ_HINT = ("the CPU fallback runs the same integer model bit-exactly: use backend='cpu' (or 'auto', "
                 "which picks it), or backend='emulator' for the accelerator's own C++ on this machine")

Model = Union[Artifact, Program]


# =========================================================================== hardware parameters
#: recorded parameters that are no property of a model: the register map is the IP's interface to
#: the driver (checked against the overlay's .hwh), not something a compiled program depends on
_NOT_MODEL = ("REG_",)


def hardware_mismatches(recorded: Any, params: HwParams) -> List[Tuple[str, Any, Any]]:
    """(name, value in the artifact, value of the engine) for every recorded parameter that differs.

    Register offsets (``REG_*``) are skipped: a model does not depend on them.
    """
    if not isinstance(recorded, dict):
        return [("hardware", recorded, "a dict of codenet_params.h values")]
    out = []
    for key in sorted(recorded):
        if str(key).startswith(_NOT_MODEL):
            continue
        mine = params.get(key)
        if mine is None or recorded[key] != mine:
            out.append((key, recorded[key], mine))
    return out


def check_hardware(artifact: Artifact, params: HwParams, where: str) -> None:
    """Raise unless ``artifact`` was exported for the engine parameters ``params`` (built into ``where``).

    ArtifactError when the manifest records no parameters, BackendError when they differ.
    """
    hw = artifact.manifest.get("hardware")
    if not isinstance(hw, dict) or not hw:
        raise ArtifactError(format_message(
            artifact.path, "the manifest records no accelerator parameters ('hardware')",
            "re-export the model with this codenet-pynq (python -m codenet_pynq.training.export with a "
            "quantized config), or use backend='cpu'"))
    bad = hardware_mismatches(hw, params)
    if bad:
        shown = ", ".join(f"{k} {a!r} (model) vs {b!r} (engine)" for k, a, b in bad[:6])
        more = f" and {len(bad) - 6} more" if len(bad) > 6 else ""
        raise BackendError(format_message(
            artifact.path, f"exported for other accelerator parameters than {where} was built with "
                           f"({params.source}): {shown}{more}",
            "re-export the model against the codenet_params.h of this engine, or rebuild the engine from the "
            "parameters the model records (overlays/build.sh for the overlay, `make -C hls_src lib` for the "
            "emulator); backend='cpu' runs the model meanwhile"))


def _status_text(status: int) -> Tuple[int, int, str]:
    code, index = status & 0xFFFF, status >> 16
    return code, index, _STATUS_TEXT.get(code, f"status code {code}")


# =========================================================================== the driver


def require_quantized(artifact: Artifact) -> Artifact:
    """The artifact itself, or BackendError when it is a float model (no integer program)."""
    if not artifact.quantized:
        raise BackendError(format_message(
            artifact.path, "is a float model; the accelerator (and its emulator) runs quantized (W4A8) models only",
            "export it with quantization (docs/quantization.md) or use backend='cpu'"))
    return artifact


class AcceleratorBackend(Backend):
    """A backend whose work is done by a :class:`CodenetAccelerator` (``self.accelerator``)."""

    accelerator: CodenetAccelerator
    frames_in_flight = 2  # the driver's two activation regions

    def run(self, pixels: np.ndarray) -> Dict[str, np.ndarray]:
        return self.accelerator.run(pixels)

    # double-buffered frames (Detector.stream): see CodenetAccelerator.submit
    def submit(self, pixels: np.ndarray) -> None:
        self.accelerator.submit(pixels)

    def collect(self) -> Dict[str, np.ndarray]:
        return self.accelerator.collect()

    def drain(self) -> None:
        self.accelerator.drain()

    @property
    def last_timings(self) -> Dict[str, float]:
        return self.accelerator.last_timings

    def close(self) -> None:
        self.accelerator.close()

    def describe(self) -> str:
        return f"{self.name} ({self.accelerator.describe()})"


class CodenetAccelerator:
    """Driver of one ``codenet_top`` on a :class:`~codenet_pynq.platform.Platform`.

    ``model``: a quantized :class:`~codenet_pynq.artifact.Artifact` (its ``hardware`` record
    is checked against ``platform.params``) or an integer :class:`~codenet_pynq.program.Program`.
    ``timeout_s``: the longest wait for ``ap_done`` of one frame (and for an earlier run still
    in progress to end before a new frame starts).
    """

    #: sleep between ap_done polls: starts short, doubles, capped (no bare spin)
    POLL_FIRST_S = 2e-5
    POLL_MAX_S = 1e-3

    def __init__(self, platform: Platform, model: Model, timeout_s: float = 2.0) -> None:
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s!r}")
        self.platform = platform
        self.params: HwParams = platform.params
        self.regs = platform.regs
        self.timeout_s = float(timeout_s)
        self.last_cycles: Optional[int] = None
        if isinstance(model, Artifact):
            if not model.quantized:
                raise BackendError(format_message(
                    model.path, "is a float model; the accelerator runs quantized (W4A8) models only",
                    "export it with quantization (docs/quantization.md) or use backend='cpu'"))
            check_hardware(model, self.params, platform.name)
            program = model.program()
            self.source = model.path
        elif isinstance(model, Program):
            program = model
            self.source = f"program ({len(program.layers)} layers)"
        else:
            raise TypeError(f"model must be an Artifact or a Program, got {type(model).__name__}")
        self.program = program
        try:
            self.compiled: CompiledProgram = compile_program(program, self.params)
        except ProgramError as e:
            raise BackendError(format_message(self.source, f"the accelerator cannot run this model ({e})",
                                              "re-export it for this engine, or use backend='cpu'")) from e
        self._lock = threading.RLock()
        self._closed = False
        self._running: Optional[int] = None  # double-buffered frames: the slot the engine runs
        self._finished: List[Tuple[int, Optional[BaseException]]] = []  # ended, not yet collected
        self._next_slot = 0
        self._submit_ms: List[float] = []
        self.buffers: Dict[str, Any] = {}
        self.frames = 0
        self.last_timings: Dict[str, float] = {}
        self._allocate_and_upload()
        self._plan_io()

    # ------------------------------------------------------------------ setup
    def _allocate_and_upload(self) -> None:
        cp = self.compiled
        sizes = {"desc": cp.n_layers * self.params.DESC_WORDS * 4, "wgt": int(cp.weights.size), "act": int(cp.act_size)}
        try:
            for name, size in sizes.items():
                self.buffers[name] = self.platform.allocate((max(size, 1),), np.uint8)
        except BackendError:
            self.close()
            raise
        except Exception as e:  # pynq raises plain RuntimeError / MemoryError when CMA is exhausted
            self.close()
            raise BackendError(format_message(
                self.platform.name, f"cannot allocate {sum(sizes.values()) / 2**20:.1f} MiB of contiguous DMA "
                                    f"memory ({type(e).__name__}: {e})",
                "close other detectors or notebooks that hold buffers (restart their kernels) and retry")) from e
        self.buffers["desc"][:sizes["desc"]] = cp.desc_bytes()
        self.buffers["wgt"][:] = cp.weights
        self.buffers["act"][:] = 0
        for b in self.buffers.values():
            b.sync_to_device()
        self.addresses = {name: self._address(b) for name, b in self.buffers.items()}

    @staticmethod
    def _address(buf: Any) -> int:
        for attr in ("device_address", "physical_address"):
            a = getattr(buf, attr, None)
            if a is not None:
                return int(a)
        raise BackendError("the platform's buffers have no device_address/physical_address; "
                           "use pynq.allocate (pynq 2.7 or newer)")

    @staticmethod
    def _word_view(pl: Any) -> Optional[Tuple[int, int]]:
        """(base, pixel stride) when a tensor's channels are lanes 0..C-1 of words at a constant
        pixel stride (every buffer the compiler makes: NHWC in 16-channel words), else None."""
        c = pl.shape[2]
        base, pix = int(pl.addr[0]), int(pl.pix[0])
        if np.all(pl.pix == pix) and np.array_equal(pl.addr, base + np.arange(c)) and pix >= c:
            return base, pix
        return None

    def _plan_io(self) -> None:
        """Precompute where the image goes and where the head outputs are read: strided views of
        the activation region where the layout allows it (no index arrays per frame)."""
        cp = self.compiled
        pl = cp.input
        h, w, c = pl.shape
        self._in_view = self._word_view(pl)
        self._outputs: Dict[str, Tuple[Any, np.dtype, np.float32]] = {}
        for role, name in cp.outputs.items():
            t = cp.placements[name]
            oh, ow, oc = t.shape
            view = self._word_view(t)
            if view is not None:
                where: Any = (view, (oh, ow, oc))
            else:
                pix = np.arange(oh * ow, dtype=np.int64).reshape(1, oh, ow)
                where = t.addr.reshape(oc, 1, 1) + pix * t.pix.reshape(oc, 1, 1)  # C x H x W indices
            dtype = np.dtype(np.int8) if t.kind == "s8" else np.dtype(np.uint8)
            scale = np.float32(self.program.tensors[name].scale)
            self._outputs[role] = (where, dtype, scale)

    # ------------------------------------------------------------------ registers
    def _write64(self, reg: int, value: int) -> None:
        self.platform.ip.write(reg, value & 0xFFFFFFFF)
        self.platform.ip.write(reg + 4, (value >> 32) & 0xFFFFFFFF)

    def _ctrl_text(self, ctrl: int) -> str:
        bits = [n for b, n in ((AP_START, "start"), (AP_DONE, "done"), (AP_IDLE, "idle")) if ctrl & b]
        return f"ap_ctrl=0x{ctrl:02x} ({', '.join(bits) or 'busy'})"

    def _poll(self, finished: Callable[[int], bool]) -> Tuple[bool, int]:
        """Read ap_ctrl until ``finished(ctrl)`` or ``timeout_s``; sleeps 20 us doubling to 1 ms between reads."""
        ip, reg = self.platform.ip, self.regs["AP_CTRL"]
        deadline = time.perf_counter() + self.timeout_s
        delay = self.POLL_FIRST_S
        while True:
            ctrl = int(ip.read(reg))
            if finished(ctrl):
                return True, ctrl
            now = time.perf_counter()
            if now >= deadline:
                return False, ctrl
            time.sleep(min(delay, deadline - now))
            delay = min(delay * 2.0, self.POLL_MAX_S)

    def _wait_idle(self) -> None:
        """Before a frame touches the buffers: an earlier start still running must end first."""
        ok, ctrl = self._poll(lambda c: not c & AP_START)
        if not ok:
            raise BackendError(format_message(
                self.platform.name, f"accelerator busy: the accelerator is still busy with an earlier start after "
                                    f"waiting {self.timeout_s:g} s ({self._ctrl_text(ctrl)})",
                "it probably hung on a previous frame: create the backend again (this re-downloads the "
                "overlay) or power-cycle the board; for a very large model pass a larger timeout_s"))

    def _start(self, act: str = "act") -> None:
        r, ip = self.regs, self.platform.ip
        for reg in ("STATUS_CTRL", "CYCLES_CTRL"):  # clear stale ap_vld bits (clear on read)
            ip.read(r[reg])
        self._write64(r["DESC"], self.addresses["desc"])
        ip.write(r["N_LAYERS"], self.compiled.n_layers)
        self._write64(r["WGT"], self.addresses["wgt"])
        self._write64(r["ACT_RD"], self.addresses[act])
        self._write64(r["ACT_WR"], self.addresses[act])
        ip.write(r["AP_CTRL"], AP_START)

    def _wait(self) -> int:
        """Poll ap_done (or idle without a pending start) until the deadline; sleeps between polls."""
        ok, ctrl = self._poll(lambda c: bool(c & AP_DONE or (c & AP_IDLE and not c & AP_START)))
        if not ok:
            raise AcceleratorTimeout(format_message(
                self.platform.name,
                f"no ap_done from the accelerator within the {self.timeout_s:g} s timeout "
                f"({self._ctrl_text(ctrl)}, {self.compiled.n_layers} descriptors of {self.source})",
                "the IP is hung, too slow for this timeout, or the overlay does not match this codenet-pynq: "
                "create the backend again (re-downloads the overlay), power-cycle the board if it persists, "
                "rebuild the overlay from this hls_src (overlays/build.sh); for a very large model (or the "
                "emulator) pass a larger timeout_s"))
        return ctrl

    def _check_status(self) -> None:
        """Read status and cycles of the run that just ended; raise on a done without a run or an error."""
        r, ip = self.regs, self.platform.ip
        valid = [bool(int(ip.read(r[reg])) & 1) for reg in ("STATUS_CTRL", "CYCLES_CTRL")]
        if not all(valid):
            missing = " and ".join(n for n, v in zip(("status", "cycles"), valid) if not v)
            raise BackendError(format_message(
                self.platform.name, f"ap_done without a finished run: the accelerator signalled done but never "
                                    f"wrote {missing} (ap_vld clear), so this frame's outputs would be stale",
                "the overlay was probably re-downloaded or reset during the run, or it is not the CoDeNet IP "
                "this driver expects: create the backend again, and rebuild the overlay (overlays/build.sh) if "
                "it persists"))
        status = int(ip.read(r["STATUS"]))
        self.last_cycles = int(ip.read(r["CYCLES"]))
        if status == 0:
            return
        code, index, text = _status_text(status)
        info = self.compiled.info[index] if index < len(self.compiled.info) else None
        what = f"descriptor {index}" + (f" ({info.op}: {'+'.join(info.layers)})" if info is not None else "")
        raise BackendError(format_message(
            self.platform.name, f"the engine stopped at {what}: {text} (status register 0x{status:08x})",
            "the descriptor table does not match this engine: rebuild the overlay / emulation library from this "
            "codenet-pynq's hls_src (`make -C hls_src lib`), re-export the model, or create the backend again "
            "if the table in DRAM was overwritten"))

    def cycles(self) -> int:
        """Counted cycles of the last finished run (the engine's ``cycles`` output: the C-sim account,
        0 from synthesised hardware); 0 before any run."""
        return int(self.last_cycles or 0)

    # ------------------------------------------------------------------ per frame
    def _write_image(self, pixels: np.ndarray, act_name: str = "act") -> None:
        img = np.asarray(pixels)
        shape = tuple(self.compiled.input.shape)
        if img.dtype != np.uint8 or img.shape != shape:
            raise ValueError(f"the accelerator expects a letterboxed uint8 image of shape {shape}, got "
                             f"{img.dtype} {img.shape}; use codenet_pynq.transforms.preprocess")
        act = self.buffers[act_name]
        if self._in_view is not None:
            base, pix = self._in_view
            n = shape[0] * shape[1]
            np.asarray(act)[base:base + n * pix].reshape(n, pix)[:, :shape[2]] = img.reshape(n, shape[2])
        else:
            self.compiled.write_input(act, img)

    def _execute(self, pixels: np.ndarray) -> Dict[str, float]:
        if self._closed:
            raise BackendError(f"{self.platform.name}: the accelerator driver was closed; create the backend again")
        self.drain()
        act = self.buffers["act"]
        self._wait_idle()
        t0 = time.perf_counter()
        self._write_image(pixels)
        act.sync_to_device()
        t1 = time.perf_counter()
        self._start()
        self._wait()
        self._check_status()
        t2 = time.perf_counter()
        act.sync_from_device()
        self.frames += 1
        return {"input": (t1 - t0) * 1e3, "accelerator": (t2 - t1) * 1e3, "_t": time.perf_counter()}

    def _gather(self, act_name: str) -> Dict[str, np.ndarray]:
        """Dequantised head maps, C x H x W float32."""
        act = np.asarray(self.buffers[act_name])
        out = {}
        for role, (where, dtype, scale) in self._outputs.items():
            if isinstance(where, tuple):
                (base, pix), (oh, ow, oc) = where
                q = act[base:base + oh * ow * pix].view(dtype).reshape(oh, ow, pix)[:, :, :oc].transpose(2, 0, 1)
            else:
                q = act[where].view(dtype)
            out[role] = q.astype(np.float32) * scale
        return out

    # ------------------------------------------------------------------ double-buffered frames
    # Two activation regions ("act", "act1"): the image of frame n+1 is written into one while the
    # engine runs frame n in the other, and frame n's outputs are gathered while the engine runs
    # frame n+1.  submit() writes and starts, collect() returns the oldest frame's outputs; at most
    # two frames are in flight.  Detector.stream uses it; run() first drains it.
    @staticmethod
    def _slot_name(slot: int) -> str:
        return "act" if slot == 0 else "act1"

    def _ensure_second_slot(self) -> None:
        if "act1" in self.buffers:
            return
        try:
            self.buffers["act1"] = self.platform.allocate((max(int(self.compiled.act_size), 1),), np.uint8)
        except Exception as e:  # pynq raises plain errors when CMA is exhausted
            raise BackendError(format_message(
                self.platform.name, f"cannot allocate a second activation region of "
                                    f"{self.compiled.act_size / 2**20:.1f} MiB for double buffering ({e})",
                "close other detectors, or use Detector.detect frame by frame")) from e
        self.buffers["act1"][:] = 0
        self.buffers["act1"].sync_to_device()
        self.addresses["act1"] = self._address(self.buffers["act1"])

    def _finish_running(self) -> None:
        """Wait for the frame the engine runs, check it, bring its region back; a failure is kept
        with that frame (collect() raises it in order) and raised here too."""
        slot = self._running
        self._running = None
        try:
            self._wait()
            self._check_status()
            self.buffers[self._slot_name(slot)].sync_from_device()
        except Exception as e:
            self._finished.append((slot, e))
            raise
        self._finished.append((slot, None))
        self.frames += 1

    def submit(self, pixels: np.ndarray) -> None:
        """Write a frame into a free activation region (while the engine may run the other one),
        then start it once the engine is free; collect() returns its outputs later."""
        with self._lock:
            if self._closed:
                raise BackendError(f"{self.platform.name}: the accelerator driver was closed; create the backend again")
            self._ensure_second_slot()
            busy = {f[0] for f in self._finished} | ({self._running} if self._running is not None else set())
            free = [sl for sl in (self._next_slot, 1 - self._next_slot) if sl not in busy]
            if not free:
                raise BackendError(format_message(self.platform.name, "two frames are already in flight",
                                                  "call collect() before submitting another frame"))
            slot = free[0]
            self._next_slot = 1 - slot
            t0 = time.perf_counter()
            if self._running is None and not self._finished:
                self._wait_idle()
            self._write_image(pixels, self._slot_name(slot))
            self.buffers[self._slot_name(slot)].sync_to_device()
            t1 = time.perf_counter()
            if self._running is not None:
                try:
                    self._finish_running()
                except Exception as e:  # the earlier frame failed: this one is not started
                    raise BackendError(format_message(
                        self.platform.name, f"frame not started: the frame before it failed ({type(e).__name__})",
                        "see that frame's error")) from e
            self._start(self._slot_name(slot))
            self._running = slot
            self._submit_ms.append((t1 - t0) * 1e3)

    def collect(self) -> Dict[str, np.ndarray]:
        """Outputs of the oldest submitted frame (waiting for the engine if it still runs it)."""
        with self._lock:
            if not self._finished:
                if self._running is None:
                    raise BackendError(format_message(self.platform.name, "no frame in flight",
                                                      "submit() a frame before collect()"))
                self._finish_running()
            slot, error = self._finished.pop(0)
            submit_ms = self._submit_ms.pop(0) if self._submit_ms else 0.0
            if error is not None:
                raise error
            t0 = time.perf_counter()
            out = self._gather(self._slot_name(slot))
            self.last_timings = {"input": submit_ms, "output": (time.perf_counter() - t0) * 1e3}
            return out

    def drain(self) -> None:
        """Finish and discard every frame in flight (a stream that was abandoned)."""
        with self._lock:
            if self._running is None and not self._finished:
                return
            try:
                if self._running is not None:
                    self._finish_running()
            except Exception:  # nobody collects it; the next frame's own checks report a hung engine
                pass
            finally:
                self._finished.clear()
                self._submit_ms.clear()
                self._running = None

    def run(self, pixels: np.ndarray) -> Dict[str, np.ndarray]:
        """One frame: letterboxed uint8 (S, S, 3) BGR -> ``{"hm", "wh", "reg"}`` float32 C x H x W."""
        with self._lock:
            tm = self._execute(pixels)
            out = self._gather("act")
            t3 = time.perf_counter()
            tm["output"] = (t3 - tm.pop("_t")) * 1e3
            tm["total"] = tm["input"] + tm["accelerator"] + tm["output"]
            self.last_timings = tm
            return out

    def run_int(self, pixels: np.ndarray) -> Dict[str, np.ndarray]:
        """One frame; the head tensors as integers, H x W x C (int8 for s8): the golden layout."""
        with self._lock:
            self._execute(pixels)
            return self.compiled.read_outputs(np.asarray(self.buffers["act"]))

    def throughput_test(self, n: int = 50, pixels: Optional[np.ndarray] = None, warmup: int = 2,
                        clock_mhz: float = 250.0) -> Dict[str, Any]:
        """Run ``n`` frames back to back: measured fps and mean per-stage milliseconds, plus the
        engine's counted cycles when it reports them.

        Stages: ``input`` (image into DRAM + sync), ``accelerator`` (registers, start, wait, status),
        ``output`` (sync back, gather, dequantise).  ``fps`` is wall time measured here:
        ``fps_source`` says whether on a board or on this host through the emulated engine.
        ``counted_*`` come from the engine's ``cycles`` output, which only the C simulation and the
        emulation library fill (the cycle and burst account of hls_src/cn_account.h, DDR model at
        250 MHz); synthesised hardware reports 0 and the ``counted_*`` values are then absent.
        """
        if n < 1:
            raise ValueError("n must be >= 1")
        if pixels is None:
            pixels = np.random.default_rng(0).integers(0, 256, self.compiled.input.shape, dtype=np.uint8)
        for _ in range(max(0, warmup)):
            self.run(pixels)
        sums: Dict[str, float] = {}
        t0 = time.perf_counter()
        for _ in range(n):
            self.run(pixels)
            for k, v in self.last_timings.items():
                sums[k] = sums.get(k, 0.0) + v
        dt = time.perf_counter() - t0
        cycles = self.cycles()
        emulated = bool(getattr(self.platform, "emulated", False))
        out: Dict[str, Any] = {
            "frames": n, "seconds": dt, "fps": n / dt if dt > 0 else float("inf"),
            "fps_source": "measured on this host (emulated engine)" if emulated else "measured on the board",
            "stage_ms": {k: v / n for k, v in sums.items()}, "cycles": cycles, "clock_mhz": clock_mhz}
        if cycles:
            out.update({"counted_cycles": cycles, "counted_ms": cycles / (clock_mhz * 1e3),
                        "counted_fps": clock_mhz * 1e6 / cycles,
                        "cycles_source": "counted (C-sim cycle and burst account, hls_src/cn_account.h)"})
        return out

    # ------------------------------------------------------------------ misc
    def describe(self) -> str:
        cp = self.compiled
        return (f"{cp.n_layers} descriptors, weights {cp.weights.size / 1024:.0f} KiB, activations "
                f"{cp.act_size / 1024:.0f} KiB on {self.platform.describe()}")

    def close(self) -> None:
        """Free the DRAM buffers (idempotent)."""
        self._closed = True
        for buf in self.buffers.values():
            try:
                self.platform.free(buf)
            except Exception:  # freeing is best effort
                pass
        self.buffers = {}

    def __enter__(self) -> CodenetAccelerator:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


# =========================================================================== overlay files
def _board_or(placeholder: str) -> str:
    """The detected board for a message, else ``placeholder`` (a message must not raise)."""
    try:
        return board_name()
    except BackendError:
        return placeholder


def overlay_candidates(overlay: Optional[Union[str, os.PathLike]] = None) -> List[Path]:
    """Where the .bit is looked for: the argument, $CODENET_OVERLAY, the package, the source tree."""
    out: List[Path] = []
    for given in (overlay, os.environ.get("CODENET_OVERLAY") or None):
        if given:
            p = Path(given).expanduser()
            out.append(p / OVERLAY_NAME if p.is_dir() else p.with_suffix(".bit"))
            if overlay is not None:
                return out  # an explicit overlay is the only candidate
    board = board_name()
    out += [_PKG_DIR / "overlays" / board / OVERLAY_NAME, _PKG_DIR / "overlays" / OVERLAY_NAME,
            _REPO_DIR / "overlays" / board / OVERLAY_NAME]
    return out


def find_overlay(overlay: Optional[Union[str, os.PathLike]] = None) -> Tuple[Path, Path]:
    """(bit, hwh) of the CoDeNet overlay; BackendError naming what is missing and how to build it."""
    cands = overlay_candidates(overlay)
    for bit in cands:
        hwh = bit.with_suffix(".hwh")
        if bit.is_file() and hwh.is_file():
            return bit, hwh
    half = [b for b in cands if b.is_file() != b.with_suffix(".hwh").is_file()]
    if half:
        b = half[0]
        missing = b.with_suffix(".hwh") if b.is_file() else b
        problem = f"overlay {b.with_suffix('')}.bit/.hwh is incomplete: {missing} is missing"
    else:
        problem = f"no CoDeNet overlay (codenet.bit + codenet.hwh) found; looked in {', '.join(map(str, cands))}"
    raise BackendError(format_message(
        "fpga backend", problem,
        f"build it with `overlays/build.sh {_board_or('BOARD')}` (Vivado/Vitis HLS 2022.2+, see "
        f"overlays/{_board_or('BOARD')}/README.md), copy codenet.bit and codenet.hwh to the board, and pass "
        "overlay='path/to/codenet.bit' (or set CODENET_OVERLAY)"))


def overlay_params(bit: Path) -> HwParams:
    """Parameters the overlay was built with: ``codenet_params.h`` next to the .bit, else the package header."""
    beside = bit.parent / "codenet_params.h"
    try:
        return load_params(beside) if beside.is_file() else load_params()
    except ParamsError as e:
        raise BackendError(str(e)) from e


# =========================================================================== pynq
def _import_pynq(pynq_module: Any = None) -> Any:
    if pynq_module is not None:
        return pynq_module
    try:
        import pynq  # optional dependency, only on a board
    except ModuleNotFoundError as e:
        if e.name not in (None, "pynq"):  # pynq is there but one of its own dependencies is not
            raise BackendError(format_message(
                "fpga backend", f"pynq cannot be imported: it needs the missing module {e.name!r}",
                f"repair the PYNQ installation; {_NO_PYNQ_HINT}")) from e
        raise BackendError(format_message(
            "fpga backend", "no PYNQ board: pynq is not installed",
            f"the fpga backend runs on a PYNQ board image (or `pip install codenet-pynq[board]` there); "
            f"{_NO_PYNQ_HINT}")) from e
    except Exception as e:  # pynq raises all sorts when the board support is broken
        raise BackendError(format_message("fpga backend", f"pynq cannot be imported ({type(e).__name__}: {e})",
                                          f"check the PYNQ installation; {_NO_PYNQ_HINT}")) from e
    return pynq


_DRIVERS: Dict[type, type] = {}


def ip_driver_class(pynq: Any) -> type:
    """A ``pynq.DefaultIP`` subclass bound (``bindto``) to the CoDeNet IP's VLNV (made once per pynq)."""
    base = pynq.DefaultIP
    if base not in _DRIVERS:

        class CodenetTopIP(base):  # type: ignore[misc, valid-type]
            """Register access of codenet_top (the driver logic lives in CodenetAccelerator)."""

            bindto = [IP_VLNV]

            def __init__(self, description: Dict[str, Any]) -> None:
                super().__init__(description)

        _DRIVERS[base] = CodenetTopIP
    return _DRIVERS[base]


def _devices(pynq: Any) -> Sequence[Any]:
    dev = getattr(pynq, "Device", None)
    if dev is None:
        return []
    devices = getattr(dev, "devices", None)
    return list(devices) if devices else []


class PynqPlatform(Platform):
    """The board: ``pynq.Overlay`` + the ``codenet_top`` IP + ``pynq.allocate``.

    ``pynq_module`` replaces ``import pynq`` (tests pass a pynq-like fake).
    """

    def __init__(self, overlay: Optional[Union[str, os.PathLike]] = None, download: bool = True,
                 pynq_module: Any = None, params: Optional[HwParams] = None) -> None:
        pynq = _import_pynq(pynq_module)
        self._pynq = pynq
        self.bit, self.hwh = find_overlay(overlay)
        self.params = params if params is not None else overlay_params(self.bit)
        ip_driver_class(pynq)  # register the bindto driver before the overlay is parsed
        try:
            self.overlay = pynq.Overlay(str(self.bit), download=download)
        except Exception as e:  # pynq's own errors
            raise BackendError(format_message(
                str(self.bit), f"pynq cannot load the overlay ({type(e).__name__}: {e})",
                "check that the .bit/.hwh pair was built for this board (overlays/build.sh) and that no other "
                "process holds the FPGA")) from e
        ip_dict = dict(getattr(self.overlay, "ip_dict", {}) or {})
        names = [n for n, d in ip_dict.items() if fnmatch.fnmatch(str(d.get("type", "")), IP_VLNV_PATTERN)]
        if not names:
            found = sorted({str(d.get("type", "?")) for d in ip_dict.values()})
            raise BackendError(format_message(
                str(self.bit), f"the overlay has no CoDeNet IP (VLNV {IP_VLNV_PATTERN}); it holds {found or 'no IP'}",
                "load the CoDeNet overlay built by overlays/build.sh, not another design"))
        self.ip_name = sorted(names)[0]
        self.vlnv = str(ip_dict[self.ip_name].get("type"))
        self.regs = checked_register_map(self._registers(ip_dict[self.ip_name]), self.params, str(self.hwh))
        self.ip = functools.reduce(getattr, self.ip_name.split("/"), self.overlay)
        self.name = f"overlay {self.bit}, IP {self.ip_name} ({self.vlnv})"

    def _registers(self, entry: Dict[str, Any]) -> Dict[str, Any]:
        """The IP's register description: PYNQ's ``ip_dict`` entry, else read from the .hwh itself."""
        regs = entry.get("registers")
        if regs:
            return dict(regs)
        try:
            modules = parse_hwh(self.hwh.read_text(encoding="utf-8", errors="replace"), str(self.hwh))
        except OSError as e:
            raise BackendError(format_message(str(self.hwh), f"cannot be read ({e})",
                                              "copy the codenet.hwh built with the overlay next to codenet.bit")) from e
        mod = modules.get(self.ip_name)
        if mod is None:
            try:
                _, mod = find_module(modules, IP_VLNV_PATTERN)
            except KeyError:
                return {}
        return dict(mod.get("registers") or {})

    def allocate(self, shape: Any, dtype: Any = np.uint8) -> np.ndarray:
        return self._pynq.allocate(shape=shape, dtype=dtype)

    def close(self) -> None:
        """Nothing to release: the overlay stays loaded for the next user."""

    def describe(self) -> str:
        return f"FPGA {_board_or('(board not detected)')}: {self.name}"


def fpga_available(artifact: Optional[Artifact] = None, overlay: Optional[Union[str, os.PathLike]] = None,
                   pynq_module: Any = None) -> Tuple[bool, str]:
    """Can the fpga backend run ``artifact`` here? ``(True, what)`` or ``(False, why not)``; never raises."""
    try:
        if artifact is not None and not artifact.quantized:
            return False, "the artifact is a float model (the accelerator runs quantized models only)"
        try:
            pynq = _import_pynq(pynq_module)
        except BackendError as e:
            msg = str(e)
            if "not installed" in msg:
                return False, "no PYNQ board: pynq is not installed"
            return False, msg
        try:
            devices = _devices(pynq)
        except Exception as e:  # pynq raises when no FPGA manager exists
            return False, f"no PYNQ board: pynq found no FPGA device ({type(e).__name__}: {e})"
        if not devices:
            return False, "no PYNQ board: pynq found no FPGA device"
        try:
            bit, _ = find_overlay(overlay)
        except BackendError as e:
            return False, str(e)
        if artifact is not None:
            if not artifact.manifest.get("hardware"):
                return False, f"{artifact.path} records no accelerator parameters; re-export it"
            try:
                bad = hardware_mismatches(artifact.manifest["hardware"], overlay_params(bit))
            except BackendError as e:
                return False, str(e)
            if bad:
                k, a, b = bad[0]
                return False, (f"the overlay {bit} was built with other accelerator parameters than the model "
                               f"({k}: {b!r} vs {a!r}{f' and {len(bad) - 1} more' if len(bad) > 1 else ''})")
        return True, f"PYNQ board {_board_or('(board not detected)')} with overlay {bit}"
    except Exception as e:  # a probe must never raise
        return False, f"cannot probe the FPGA ({type(e).__name__}: {e})"


# =========================================================================== the backend
class FpgaBackend(AcceleratorBackend):
    """The accelerator on a PYNQ board. See the module doc for the data path.

    ``overlay``: path of ``codenet.bit`` (with ``codenet.hwh`` beside it) or its folder; default
    ``$CODENET_OVERLAY``, ``codenet_pynq/overlays/<board>/``, ``overlays/<board>/``.
    ``platform``: an already opened :class:`~codenet_pynq.platform.Platform` (reuse one overlay).
    """

    name = "fpga"

    def __init__(self, artifact: Artifact, overlay: Optional[Union[str, os.PathLike]] = None,
                 timeout_s: float = 2.0, download: bool = True, pynq_module: Any = None,
                 platform: Optional[Platform] = None) -> None:
        self.artifact = require_quantized(artifact)
        self.platform = platform if platform is not None else PynqPlatform(overlay, download, pynq_module)
        self.accelerator = CodenetAccelerator(self.platform, artifact, timeout_s)

