"""What the accelerator driver talks to: a register window and DRAM buffers with physical addresses.

:class:`Platform` is the small interface the driver
(:class:`codenet_pynq.backends.fpga.CodenetAccelerator`) needs, modelled on what PYNQ gives on a
board:

- ``ip.read(offset) -> int`` / ``ip.write(offset, value)``: the AXI-Lite ``control`` registers of
  ``codenet_top`` (offsets ``CN_REG_*`` of ``hls_src/codenet_params.h``);
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
- :class:`EmulatedIP` is the register file of the AXI-Lite map (``hls_src/README.md``), with the
  Vitis HLS ``ap_ctrl_hs`` semantics (``ap_done`` and ``ap_ready`` clear on read, the ISR toggles
  on write). Writing ``ap_start`` resolves the address registers through the memory map and
  calls the HLS engine compiled for the host (:mod:`codenet_pynq.accel.emulib`) on the device
  copies, then sets ``status``, ``cycles`` and ``ap_done | ap_idle | ap_ready``.

Fault injection for tests: ``fault="hang"`` (``ap_start`` is taken but ``ap_done`` never comes)
and ``fault="status"`` (the run stops with ``fault_status``, by default a size error at
descriptor 3).
"""

from __future__ import annotations

import time
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from .accel.params import HwParams

__all__ = ["Platform", "EmuBuffer", "MemoryMap", "EmulatedIP", "EmulatedPlatform",
           "AP_START", "AP_DONE", "AP_IDLE", "AP_READY", "AP_AUTO_RESTART", "FAULTS"]

#: bits of the ap_ctrl register (Vitis HLS ap_ctrl_hs)
AP_START, AP_DONE, AP_IDLE, AP_READY, AP_AUTO_RESTART = 0x01, 0x02, 0x04, 0x08, 0x80
#: fault modes of the emulated IP
FAULTS = (None, "hang", "status")
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
class EmulatedIP:
    """The AXI-Lite register file of ``codenet_top`` with the host-compiled engine behind ap_start."""

    def __init__(self, memory: MemoryMap, lib: Any, params: HwParams, fault: Optional[str] = None,
                 fault_status: Optional[int] = None, name: str = "codenet_top_0") -> None:
        self.memory = memory
        self.lib = lib
        self.p = params
        self.name = name
        self.fault = fault
        self.fault_status = fault_status
        self.span = params.REG_CYCLES_CTRL + 4
        self.regs: Dict[int, int] = {off: 0 for off in range(0, self.span, 4)}
        self.regs[params.REG_AP_CTRL] = AP_IDLE
        self.starts = 0
        self.last_run_s = 0.0
        self._readonly = {params.REG_STATUS, params.REG_STATUS_CTRL, params.REG_CYCLES, params.REG_CYCLES_CTRL}

    @property
    def fault(self) -> Optional[str]:
        return self._fault

    @fault.setter
    def fault(self, value: Optional[str]) -> None:
        if value not in FAULTS:
            raise ValueError(f"fault must be one of {FAULTS}, got {value!r}")
        self._fault = value

    def _check(self, offset: int) -> None:
        if offset % 4 or not 0 <= offset < self.span:
            raise ValueError(f"{self.name}: register offset 0x{offset:x} is outside the AXI-Lite map "
                             f"(0x0..0x{self.span - 4:x}, word aligned)")

    def read(self, offset: int = 0) -> int:
        self._check(offset)
        p = self.p
        value = self.regs[offset]
        if offset == p.REG_AP_CTRL:  # ap_done and ap_ready clear on read
            self.regs[offset] = value & ~(AP_DONE | AP_READY)
        elif offset in (p.REG_STATUS_CTRL, p.REG_CYCLES_CTRL):  # ap_vld clears on read
            self.regs[offset] = value & ~1
        return int(value)

    def write(self, offset: int, value: int) -> None:
        self._check(offset)
        p = self.p
        value = int(value) & 0xFFFFFFFF
        if offset in self._readonly:
            return
        if offset == p.REG_ISR:  # toggle on write
            self.regs[offset] ^= value & 0x3
            return
        if offset == p.REG_AP_CTRL:
            ctrl = self.regs[offset]
            self.regs[offset] = (ctrl & ~AP_AUTO_RESTART) | (value & AP_AUTO_RESTART)
            if value & AP_START and not ctrl & AP_START:
                self._start()
            return
        self.regs[offset] = value

    def _addr(self, reg: int) -> int:
        return self.regs[reg] | (self.regs[reg + 4] << 32)

    def _start(self) -> None:
        p = self.p
        self.starts += 1
        self.regs[p.REG_AP_CTRL] = (self.regs[p.REG_AP_CTRL] | AP_START) & ~(AP_IDLE | AP_DONE | AP_READY)
        if self.fault == "hang":  # taken, never finishes
            return
        t0 = time.perf_counter()
        cycles = 0
        n_layers = self.regs[p.REG_N_LAYERS]
        if self.fault == "status":
            status = self.fault_status if self.fault_status is not None else (p.STATUS_BAD_SIZE | (3 << 16))
        else:
            desc = self.memory.device_view(self._addr(p.REG_DESC))
            wgt = self.memory.device_view(self._addr(p.REG_WGT))
            act = self.memory.device_view(self._addr(p.REG_ACT_RD))
            if desc is None or wgt is None or act is None or self._addr(p.REG_ACT_RD) != self._addr(p.REG_ACT_WR):
                # an AXI access outside every buffer (the emulation runs gmem_rd and gmem_wr on one buffer)
                status = p.STATUS_BAD_ADDR
            else:
                status, cycles = self.lib.run_ports(desc, n_layers, wgt, act)
        self.last_run_s = time.perf_counter() - t0
        self.regs[p.REG_STATUS] = int(status) & 0xFFFFFFFF
        self.regs[p.REG_STATUS_CTRL] = 1
        self.regs[p.REG_CYCLES] = int(cycles) & 0xFFFFFFFF
        self.regs[p.REG_CYCLES_CTRL] = 1
        self.regs[p.REG_AP_CTRL] = (self.regs[p.REG_AP_CTRL] & ~AP_START) | AP_DONE | AP_IDLE | AP_READY
        if self.regs[p.REG_GIE] & 1:
            self.regs[p.REG_ISR] |= self.regs[p.REG_IER] & 0x3

    def reset(self) -> None:
        """Back to idle (what re-downloading the bitstream does on a board)."""
        for off in self.regs:
            self.regs[off] = 0
        self.regs[self.p.REG_AP_CTRL] = AP_IDLE


class EmulatedPlatform(Platform):
    """The accelerator without hardware: :class:`EmulatedIP` over a :class:`MemoryMap`.

    ``lib``: a loaded :class:`~codenet_pynq.accel.emulib.EmuLibrary` (default: located and
    loaded from ``lib_path`` / the usual places; missing -> BackendError saying how to build it).
    """

    def __init__(self, lib: Any = None, lib_path: Any = None, params: Optional[HwParams] = None,
                 coherent: bool = False, fault: Optional[str] = None, fault_status: Optional[int] = None) -> None:
        if lib is None:
            from .accel.emulib import load_library

            lib = load_library(lib_path)
        self.lib = lib
        self.params = params if params is not None else lib.params
        self.memory = MemoryMap(coherent=coherent)
        self.ip = EmulatedIP(self.memory, lib, self.params, fault=fault, fault_status=fault_status)
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
