"""What the accelerator driver talks to: a register window and DRAM buffers with physical addresses.

:class:`Platform` is the small interface the driver
(:class:`codenet_pynq.backends.fpga.CodenetAccelerator`) needs, modelled on what PYNQ gives on a
board:

- ``ip.read(offset) -> int`` / ``ip.write(offset, value)``: the AXI-Lite ``control`` registers of
  ``codenet_top``; ``regs``: their offsets (:class:`~codenet_pynq.registers.RegisterMap`), on a
  board taken from the overlay's .hwh after checking it against ``hls_src/codenet_params.h``;
- ``allocate(shape, dtype)``: a physically contiguous buffer, a numpy array with a
  ``physical_address`` (and ``device_address``), ``sync_to_device()`` / ``sync_from_device()``
  (cache maintenance) and ``freebuffer()``;
- ``params``: the hardware parameters the engine was built with; ``name``: for messages.

On a board, :class:`codenet_pynq.backends.fpga.PynqPlatform` implements it with ``pynq``.
Here, :class:`EmulatedPlatform` implements it without hardware:

- :class:`MemoryMap` hands out :class:`EmuBuffer` arrays at made-up, page-aligned physical
  addresses. By default every buffer has a separate *device copy*: the engine only sees what was
  ``sync_to_device``'d and the host only sees results after ``sync_from_device``, like a
  non-coherent cache, so a driver that forgets a sync fails here instead of on the board.
- :class:`EmulatedIP` is the register file in the Vitis HLS layout of the header, with the
  ``ap_ctrl_hs`` semantics (see the class). Writing ``ap_start`` returns at once; a worker thread
  resolves the address registers through the memory map, runs the HLS engine compiled for the
  host (:mod:`codenet_pynq.accel.emulib`, a ctypes call that releases the GIL) on the device
  copies, then sets ``status``, ``cycles`` (with their ``ap_vld``) and ``ap_done``. So the
  driver's ``timeout_s`` holds for the emulator too, and a run abandoned by a timeout finishes
  in the background while the process stays usable.

Fault injection for tests: ``fault="hang"`` (``ap_start`` is taken but ``ap_done`` never comes),
``fault="status"`` (the run stops with ``fault_status``, by default a size error at descriptor
3), ``fault="done"`` (``ap_done`` without a run: ``status``/``cycles`` are never written);
``engine=`` replaces the C++ engine by any callable with the signature of
``EmuLibrary.run_ports`` (a slow or failing fake).
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from .accel.params import HwParams
from .registers import AP_AUTO_RESTART, AP_DONE, AP_IDLE, AP_INTERRUPT, AP_READY, AP_START, RegisterMap

__all__ = ["Platform", "EmuBuffer", "MemoryMap", "EmulatedIP", "EmulatedPlatform", "AP_START", "AP_DONE",
           "AP_IDLE", "AP_READY", "AP_AUTO_RESTART", "AP_INTERRUPT", "FAULTS", "STATUS_ENGINE_ERROR"]

#: fault modes of the emulated IP: ap_start taken but no ap_done ("hang"), a run that ends with
#: ``fault_status`` ("status"), an ap_done without a run: status/cycles never written ("done")
FAULTS = (None, "hang", "status", "done")
PAGE = 4096


class Platform:
    """Register window + DMA-able memory of one ``codenet_top`` instance (see module doc)."""

    name: str = "platform"
    params: HwParams
    ip: Any

    def allocate(self, shape: Any, dtype: Any = np.uint8) -> np.ndarray:
        """A physically contiguous buffer (numpy array with ``physical_address`` and sync methods)."""
        raise NotImplementedError

    def free(self, buf: Any) -> None:
        """Give a buffer back (idempotent)."""
        for meth in ("freebuffer", "close"):
            fn = getattr(buf, meth, None)
            if callable(fn):
                fn()
                return

    def close(self) -> None:
        """Release the platform (idempotent)."""

    def describe(self) -> str:
        return self.name

    @property
    def regs(self) -> RegisterMap:
        """Register offsets the driver writes to (default: those of the header, ``params``)."""
        regmap = self.__dict__.get("_regs")
        if regmap is None:
            regmap = self.__dict__["_regs"] = RegisterMap.from_params(self.params)
        return regmap

    @regs.setter
    def regs(self, value: RegisterMap) -> None:
        self.__dict__["_regs"] = value


# =========================================================================== emulated memory
class EmuBuffer(np.ndarray):
    """A numpy array that plays a ``pynq.allocate`` buffer: a physical address, a device copy."""

    physical_address: int
    _root: Optional[EmuBuffer]

    def __new__(cls, shape: Any, dtype: Any, address: int, coherent: bool) -> EmuBuffer:
        obj = np.zeros(shape, dtype).view(cls)
        obj.physical_address = int(address)
        obj._root = None
        obj._freed = False
        obj._coherent = bool(coherent)
        obj._device = obj.view(np.ndarray) if coherent else np.zeros(shape, dtype)
        return obj

    def __array_finalize__(self, obj: Any) -> None:
        if obj is None:
            return
        self.physical_address = getattr(obj, "physical_address", 0)
        root = getattr(obj, "_root", None)
        self._root = root if root is not None else (obj if isinstance(obj, EmuBuffer) else None)

    def _base(self) -> EmuBuffer:
        return self._root if self._root is not None else self

    @property
    def device_address(self) -> int:
        return self._base().physical_address

    @property
    def device_bytes(self) -> np.ndarray:
        """The device copy (what the engine reads and writes) as flat bytes."""
        return self._base()._device.reshape(-1).view(np.uint8)

    @property
    def nbytes_total(self) -> int:
        return int(self._base()._device.nbytes)

    @property
    def coherent(self) -> bool:
        return bool(self._base()._coherent)

    def sync_to_device(self) -> None:
        """Host -> device copy (a cache flush on a board)."""
        b = self._base()
        if not b.coherent:
            b._device[...] = b.view(np.ndarray)

    def sync_from_device(self) -> None:
        """Device -> host copy (a cache invalidate on a board)."""
        b = self._base()
        if not b.coherent:
            b.view(np.ndarray)[...] = b._device

    def freebuffer(self) -> None:
        self._base()._freed = True

    def close(self) -> None:
        self.freebuffer()

    @property
    def freed(self) -> bool:
        return bool(self._base()._freed)


class MemoryMap:
    """Buffers at page-aligned physical addresses; resolves an address to (buffer, offset)."""

    def __init__(self, base: int = 0x7000_0000, coherent: bool = False) -> None:
        self.base = int(base)
        self.coherent = bool(coherent)
        self._next = self.base
        self.buffers: List[EmuBuffer] = []

    def allocate(self, shape: Any, dtype: Any = np.uint8) -> EmuBuffer:
        buf = EmuBuffer(shape, dtype, self._next, self.coherent)
        size = max(int(buf.nbytes), 1)
        self._next += -(-size // PAGE) * PAGE + PAGE  # a guard page between buffers
        self.buffers.append(buf)
        return buf

    def find(self, address: int) -> Optional[Tuple[EmuBuffer, int]]:
        """The live buffer holding ``address`` and the byte offset in it, or None."""
        for b in self.buffers:
            if not b.freed and b.physical_address <= address < b.physical_address + b.nbytes_total:
                return b, address - b.physical_address
        return None

    def device_view(self, address: int) -> Optional[np.ndarray]:
        """Device bytes from ``address`` to the end of its buffer (None: not mapped)."""
        hit = self.find(address)
        if hit is None:
            return None
        buf, off = hit
        return buf.device_bytes[off:]

    def release_freed(self) -> None:
        self.buffers = [b for b in self.buffers if not b.freed]


# =========================================================================== emulated register file
#: one emulated engine at a time in the process: the C++ engine keeps static state (line buffer,
#: weight buffer, tables), so two runs must never overlap, whichever IP or library started them
_ENGINE_LOCK = threading.Lock()
#: status of a run whose engine call raised (emulation only; the exception is kept in ``worker_error``)
STATUS_ENGINE_ERROR = 0xFFFF
Engine = Callable[[np.ndarray, int, np.ndarray, np.ndarray], Tuple[int, int]]


class EmulatedIP:
    """The AXI-Lite register file of ``codenet_top`` with the host-compiled engine behind ap_start.

    The register layout is :class:`~codenet_pynq.registers.RegisterMap` of the header (the
    Vitis HLS layout the driver checks a board's .hwh against), with the ap_ctrl_hs semantics of
    Vitis HLS 2022+: ``ap_start`` set by a write of 1 and cleared when the run ends, ``ap_done``
    and ``ap_ready`` clear on read, ``ap_idle``, ``auto_restart`` stored (the emulation never
    restarts by itself), ``interrupt`` (bit 9) = GIE and a pending ISR bit; IER/ISR: bit 0 done,
    bit 1 ready, the ISR bit set on the event when its IER bit is set, toggled by writing 1;
    ``status``/``cycles`` read-only with their ``ap_vld`` bits (clear on read) set when the run
    writes them; reserved words read 0 and ignore writes; offsets outside the window raise.

    A write of ``ap_start`` returns at once: the engine (``engine``, default ``lib.run_ports``,
    a ctypes call that releases the GIL) runs in a worker thread on the device copies of the
    buffers the address registers point to, and sets ``status``, ``cycles`` and ``ap_done``
    when it returns. Writing ``ap_start`` while a run is in progress changes nothing (the bit is
    still set until the run ends, as in hardware). Runs never overlap, across all emulated IPs:
    a start taken while another IP's engine runs waits for it in its worker.
    """

    def __init__(self, memory: MemoryMap, lib: Any, params: HwParams, fault: Optional[str] = None,
                 fault_status: Optional[int] = None, name: str = "codenet_top_0",
                 engine: Optional[Engine] = None) -> None:
        self.memory = memory
        self.lib = lib
        self.p = params
        self.name = name
        self.fault = fault
        self.fault_status = fault_status
        self.engine: Engine = engine if engine is not None else lib.run_ports
        self.map = RegisterMap.from_params(params)
        self.span = self.map.span
        m = self.map
        self._inputs = {m["DESC"], m["DESC"] + 4, m["N_LAYERS"], m["WGT"], m["WGT"] + 4, m["ACT_RD"],
                        m["ACT_RD"] + 4, m["ACT_WR"], m["ACT_WR"] + 4}
        self.regs: Dict[int, int] = {off: 0 for off in range(0, self.span, 4)}
        self.regs[m["AP_CTRL"]] = AP_IDLE
        self.starts = 0
        self.last_run_s = 0.0
        self.worker_error: Optional[BaseException] = None
        self._lock = threading.RLock()
        self._generation = 0
        self._worker: Optional[threading.Thread] = None

    @property
    def fault(self) -> Optional[str]:
        return self._fault

    @fault.setter
    def fault(self, value: Optional[str]) -> None:
        if value not in FAULTS:
            raise ValueError(f"fault must be one of {FAULTS}, got {value!r}")
        self._fault = value

    @property
    def busy(self) -> bool:
        """True while a worker runs the engine (also one abandoned by a driver timeout)."""
        w = self._worker
        return w is not None and w.is_alive()

    def join(self, timeout: Optional[float] = None) -> bool:
        """Wait for the running worker (tests); True when none is left running."""
        w = self._worker
        if w is not None:
            w.join(timeout)
        return not self.busy

    def _check(self, offset: int) -> None:
        if offset % 4 or not 0 <= offset < self.span:
            raise ValueError(f"{self.name}: register offset 0x{offset:x} is outside the AXI-Lite map "
                             f"(0x0..0x{self.span - 4:x}, word aligned)")

    def read(self, offset: int = 0) -> int:
        self._check(offset)
        m = self.map
        with self._lock:
            value = self.regs[offset]
            if offset == m["AP_CTRL"]:  # ap_done and ap_ready clear on read
                if self.regs[m["GIE"]] & 1 and self.regs[m["ISR"]] & 0x3:
                    value |= AP_INTERRUPT
                self.regs[offset] = value & ~(AP_DONE | AP_READY | AP_INTERRUPT)
            elif offset in (m["STATUS_CTRL"], m["CYCLES_CTRL"]):  # ap_vld clears on read
                self.regs[offset] = value & ~1
            return int(value)

    def write(self, offset: int, value: int) -> None:
        self._check(offset)
        m = self.map
        value = int(value) & 0xFFFFFFFF
        with self._lock:
            if offset == m["AP_CTRL"]:
                ctrl = self.regs[offset]
                self.regs[offset] = (ctrl & ~AP_AUTO_RESTART) | (value & AP_AUTO_RESTART)
                if value & AP_START and not ctrl & AP_START:
                    self.regs[offset] |= AP_START
                    self._launch()
            elif offset == m["GIE"]:
                self.regs[offset] = value & 0x1
            elif offset == m["IER"]:
                self.regs[offset] = value & 0x3
            elif offset == m["ISR"]:  # toggle on write
                self.regs[offset] ^= value & 0x3
            elif offset in self._inputs:
                self.regs[offset] = value
            # read-only (status, cycles, their ap_vld) and reserved words ignore writes

    def _addr(self, reg: int) -> int:
        return self.regs[reg] | (self.regs[reg + 4] << 32)

    def _launch(self) -> None:
        """Take the start (lock held): snapshot the arguments, run the engine in a worker."""
        m = self.map
        self.starts += 1
        self.regs[m["AP_CTRL"]] &= ~AP_IDLE
        if self.fault == "hang":  # taken, never finishes
            return
        if self.fault == "done":  # ap_done without a run: status and cycles are never written
            self.regs[m["AP_CTRL"]] = (self.regs[m["AP_CTRL"]] & ~AP_START) | AP_DONE | AP_IDLE | AP_READY
            return
        args = (self.regs[m["N_LAYERS"]], self._addr(m["DESC"]), self._addr(m["WGT"]), self._addr(m["ACT_RD"]),
                self._addr(m["ACT_WR"]))
        views = tuple(self.memory.device_view(a) for a in args[1:4])
        self._worker = threading.Thread(target=self._work, args=(self._generation, args, views), daemon=True,
                                        name=f"{self.name}-engine")
        self._worker.start()

    def _work(self, generation: int, args: Tuple[int, ...], views: Tuple[Optional[np.ndarray], ...]) -> None:
        n_layers, _, _, act_rd, act_wr = args
        status, cycles, error = 0, 0, None
        with _ENGINE_LOCK:
            t0 = time.perf_counter()
            if self.fault == "status":
                status = self.fault_status if self.fault_status is not None else (self.p.STATUS_BAD_SIZE | (3 << 16))
            elif any(v is None for v in views) or act_rd != act_wr:
                # an AXI access outside every buffer (the emulation runs gmem_rd and gmem_wr on one buffer)
                status = self.p.STATUS_BAD_ADDR
            else:
                try:
                    status, cycles = self.engine(views[0], n_layers, views[1], views[2])
                except Exception as e:  # a broken engine must not leave the IP hanging silently
                    status, error = STATUS_ENGINE_ERROR, e
            elapsed = time.perf_counter() - t0
        self._finish(generation, int(status), int(cycles), elapsed, error)

    def _finish(self, generation: int, status: int, cycles: int, elapsed: float,
                error: Optional[BaseException]) -> None:
        m = self.map
        with self._lock:
            if generation != self._generation:  # the IP was reset meanwhile: the run's results are lost
                return
            self.last_run_s = elapsed
            self.worker_error = error
            self.regs[m["STATUS"]] = status & 0xFFFFFFFF
            self.regs[m["STATUS_CTRL"]] = 1
            self.regs[m["CYCLES"]] = cycles & 0xFFFFFFFF
            self.regs[m["CYCLES_CTRL"]] = 1
            self.regs[m["AP_CTRL"]] = (self.regs[m["AP_CTRL"]] & ~AP_START) | AP_DONE | AP_IDLE | AP_READY
            self.regs[m["ISR"]] |= self.regs[m["IER"]] & 0x3

    def reset(self) -> None:
        """Back to idle (what re-downloading the bitstream does on a board).

        A worker still running finishes in the background; its results are discarded.
        """
        with self._lock:
            self._generation += 1
            for off in self.regs:
                self.regs[off] = 0
            self.regs[self.map["AP_CTRL"]] = AP_IDLE


class EmulatedPlatform(Platform):
    """The accelerator without hardware: :class:`EmulatedIP` over a :class:`MemoryMap`.

    ``lib``: a loaded :class:`~codenet_pynq.accel.emulib.EmuLibrary` (default: located and
    loaded from ``lib_path`` / the usual places; missing -> BackendError saying how to build it).
    ``engine``: a callable replacing ``lib.run_ports`` (tests: a slow or failing engine).
    """

    #: the driver labels its wall-time figures "measured on this host", not "on the board"
    emulated = True

    def __init__(self, lib: Any = None, lib_path: Any = None, params: Optional[HwParams] = None,
                 coherent: bool = False, fault: Optional[str] = None, fault_status: Optional[int] = None,
                 engine: Optional[Engine] = None) -> None:
        if lib is None and (engine is None or params is None):
            from .accel.emulib import load_library

            lib = load_library(lib_path)
        self.lib = lib
        self.params = params if params is not None else lib.params
        self.memory = MemoryMap(coherent=coherent)
        self.ip = EmulatedIP(self.memory, lib, self.params, fault=fault, fault_status=fault_status, engine=engine)
        self.regs = self.ip.map
        self.name = f"emulated codenet_top ({getattr(lib, 'path', 'engine')})"

    def allocate(self, shape: Any, dtype: Any = np.uint8) -> EmuBuffer:
        return self.memory.allocate(shape, dtype)

    def free(self, buf: Any) -> None:
        super().free(buf)
        self.memory.release_freed()

    def close(self) -> None:
        for b in self.memory.buffers:
            b.freebuffer()
        self.memory.release_freed()

    def describe(self) -> str:
        native = getattr(self.lib, "native_types", None)
        kind = "native integer types" if native else "ap_int types" if native is not None else "engine"
        return f"emulated codenet_top: HLS engine compiled for the host ({getattr(self.lib, 'path', '?')}, {kind})"
