"""ctypes binding of the accelerator emulation library (``hls_src/build/libcodenet_emu.so``).

The library is the HLS engine compiled for the host (``make -C hls_src lib``); this module only
*locates* it (``$CODENET_EMU_LIB``, else ``hls_src/build/libcodenet_emu.so`` of the source
checkout, else a copy next to this module) and never builds it.

Its C ABI mirrors the hardware one to one (see ``hls_src/codenet_emu.h``): one buffer per AXI
master (descriptor table, weights, activations) plus ``n_layers``, returning the status register
and the counted cycle count, so an emulated PYNQ driver can hand it the very buffers it would
give the board.  :func:`account` also returns the per-descriptor cycle and burst account
(``hls_src/cn_account.h``) that the performance report is built from.
"""

from __future__ import annotations

import ctypes
import os
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

import numpy as np

from ..errors import BackendError, format_message
from .compile import CompiledProgram
from .params import HwParams, load_params

__all__ = ["AcctRecord", "EmuLibrary", "PROCS", "PORTS", "STATUS_TEXT", "account", "find_library", "load_library", "run",
           "run_compiled", "status_message"]

_LIB_NAME = "libcodenet_emu.so"
_U8P = ctypes.POINTER(ctypes.c_uint8)
#: CN_STATUS_* codes of the engine's status register, in words (the driver uses the same table)
STATUS_TEXT = {1: "bad descriptor magic or version", 2: "unsupported op or flag combination",
               3: "a size beyond the engine's static limits", 4: "n_layers out of range",
               5: "a memory access outside its buffer (host emulation)",
               6: "a requantisation multiplier or shift out of range"}

#: processes and AXI ports of the account, in the order of ``cn_account.h``
PROCS = ("desc", "params", "load", "mac", "dw", "store", "fetch")
PORTS = ("desc", "params", "weights", "act_rd", "act_wr")


class AcctRecord(ctypes.Structure):
    """Mirror of ``acct_desc_t`` (hls_src/cn_account.h): one descriptor's counted loops and bursts."""

    _fields_ = [("loop_cycles", ctypes.c_uint64 * len(PROCS)), ("beats", ctypes.c_uint64 * len(PORTS)),
                ("bursts", ctypes.c_uint64 * len(PORTS)), ("issue", ctypes.c_uint64 * len(PORTS)),
                ("entries", ctypes.c_uint64 * len(PORTS)), ("fill_rows", ctypes.c_uint64),
                ("rows", ctypes.c_uint64), ("macs", ctypes.c_uint64), ("tail_words", ctypes.c_uint64)]


def status_message(status: int) -> str:
    """Human-readable form of a status register value."""
    code, layer = status & 0xFFFF, status >> 16
    return f"{STATUS_TEXT.get(code, f'status {code}')} (descriptor {layer})" if code else "ok"


def _default_candidates() -> List[Path]:
    here = Path(__file__).resolve().parent
    return [here.parent.parent / "hls_src" / "build" / _LIB_NAME, here / _LIB_NAME]


def find_library(path: Optional[Union[str, os.PathLike]] = None) -> Path:
    """Locate the emulation library; raise BackendError saying how to build it."""
    candidates = []
    if path is not None:
        candidates.append(Path(path))
    env = os.environ.get("CODENET_EMU_LIB")
    if env:
        candidates.append(Path(env))
    candidates.extend(_default_candidates())
    for c in candidates:
        if c.is_file():
            return c
    raise BackendError(format_message(
        "accelerator emulation library", f"{_LIB_NAME} not found (looked in {', '.join(map(str, candidates))})",
        "build it with `make -C hls_src lib` in the codenet-pynq source tree (needs g++ and the ap_int "
        "headers from Vitis HLS or `pip install hls4ml`), or point CODENET_EMU_LIB at a built copy"))


def _ptr(a: np.ndarray) -> ctypes._Pointer[ctypes.c_uint8]:
    return a.ctypes.data_as(_U8P)


class EmuLibrary:
    """A loaded emulation library."""

    def __init__(self, path: Path, params: Optional[HwParams] = None) -> None:
        self.path = Path(path)
        try:
            lib = ctypes.CDLL(str(self.path))
        except OSError as e:
            raise BackendError(format_message(str(self.path), f"cannot load the emulation library ({e})",
                                              "rebuild it with `make -C hls_src clean lib`")) from e
        u32, u64 = ctypes.c_uint32, ctypes.c_uint64
        lib.codenet_desc_version.restype = u32
        lib.codenet_native_types.restype = u32
        lib.codenet_check.restype = u32
        lib.codenet_check.argtypes = [_U8P, u64, u32, _U8P, u64, u64]
        lib.codenet_run_ports.restype = u32
        lib.codenet_run_ports.argtypes = [_U8P, u64, u32, _U8P, u64, _U8P, u64, ctypes.POINTER(u32), ctypes.c_void_p,
                                          u32]
        lib.codenet_acct_record_size.restype = u32
        lib.codenet_desc_cycles.restype = ctypes.c_double
        lib.codenet_desc_cycles.argtypes = [ctypes.c_void_p, ctypes.c_double]
        lib.codenet_run.restype = u32
        lib.codenet_run.argtypes = [_U8P, u64, u64, u32, u64, u64, ctypes.POINTER(u32)]
        self._lib = lib
        self.params = params if params is not None else load_params()
        version = int(lib.codenet_desc_version())
        if version != self.params.DESC_VERSION:
            raise BackendError(format_message(
                str(self.path), f"library speaks descriptor version {version}, codenet_params.h says "
                                f"{self.params.DESC_VERSION}", "rebuild it with `make -C hls_src clean lib`"))
        self.native_types = bool(lib.codenet_native_types())
        if int(lib.codenet_acct_record_size()) != ctypes.sizeof(AcctRecord):
            raise BackendError(format_message(str(self.path), "the library's account record does not match this "
                                                              "codenet-pynq version", "rebuild it with `make -C hls_src clean lib`"))

    def check(self, desc: np.ndarray, n_layers: int, wgt: np.ndarray, act_size: int) -> int:
        """Prove a descriptor table safe for these buffers without running it; returns the status."""
        d = np.ascontiguousarray(desc, dtype=np.uint8)
        w = np.ascontiguousarray(wgt, dtype=np.uint8)
        return int(self._lib.codenet_check(_ptr(d), d.size, n_layers, _ptr(w), w.size, act_size))

    def run_ports(self, desc: np.ndarray, n_layers: int, wgt: np.ndarray, act: np.ndarray,
                  records: Optional[ctypes.Array] = None) -> Tuple[int, int]:
        """One start of the engine over three buffers (uint8 arrays; ``act`` is written in place).

        Returns (status, counted cycles at 250 MHz).  This is the call an emulated PYNQ driver
        makes with the buffers whose addresses it would write to CN_REG_DESC / CN_REG_WGT /
        CN_REG_ACT_*.  ``records`` (an ``AcctRecord`` array) receives the per-descriptor account.
        """
        for name, a in (("desc", desc), ("wgt", wgt), ("act", act)):
            if not (isinstance(a, np.ndarray) and a.dtype == np.uint8 and a.flags.c_contiguous):
                raise TypeError(f"{name} must be a C-contiguous uint8 numpy array")
        if not act.flags.writeable:
            raise TypeError("act must be writeable")
        cyc = ctypes.c_uint32(0)
        cap = len(records) if records is not None else 0
        status = self._lib.codenet_run_ports(_ptr(desc), desc.size, int(n_layers), _ptr(wgt), wgt.size, _ptr(act),
                                             act.size, ctypes.byref(cyc),
                                             ctypes.cast(records, ctypes.c_void_p) if records is not None else None,
                                             cap)
        return int(status), int(cyc.value)

    def desc_cycles(self, record: AcctRecord, f_mhz: float) -> float:
        """Counted cycles of one account record at a PL clock of ``f_mhz`` (cn_account.h)."""
        return float(self._lib.codenet_desc_cycles(ctypes.byref(record), float(f_mhz)))

    def run_dram(self, dram: np.ndarray, desc_addr: int, n_layers: int, wgt_addr: int, act_addr: int) -> Tuple[int, int]:
        """One start over a single DRAM image (addresses are byte offsets into it)."""
        if not (dram.dtype == np.uint8 and dram.flags.c_contiguous and dram.flags.writeable):
            raise TypeError("dram must be a writeable C-contiguous uint8 numpy array")
        cyc = ctypes.c_uint32(0)
        status = self._lib.codenet_run(_ptr(dram), dram.size, desc_addr, int(n_layers), wgt_addr, act_addr,
                                       ctypes.byref(cyc))
        return int(status), int(cyc.value)


_LOADED: Dict[str, EmuLibrary] = {}


def load_library(path: Optional[Union[str, os.PathLike]] = None) -> EmuLibrary:
    """Locate and load (once per path) the emulation library."""
    p = find_library(path)
    key = f"{p.resolve()}:{p.stat().st_mtime_ns}"
    if key not in _LOADED:
        _LOADED[key] = EmuLibrary(p)
    return _LOADED[key]


def run_compiled(compiled: CompiledProgram, image: np.ndarray, lib: Optional[EmuLibrary] = None,
                 act: Optional[np.ndarray] = None) -> Tuple[np.ndarray, Dict[str, float]]:
    """Run a compiled program on one image; returns (activation region, stats).

    stats: ``seconds`` (host wall time of the engine call), ``cycles`` (counted, at 250 MHz).
    """
    lib = lib if lib is not None else load_library()
    if act is None:
        act = compiled.new_activations()
    compiled.write_input(act, image)
    desc = np.ascontiguousarray(compiled.desc_bytes())
    t0 = time.perf_counter()
    status, cycles = lib.run_ports(desc, compiled.n_layers, compiled.weights, act)
    dt = time.perf_counter() - t0
    if status != 0:
        raise BackendError(format_message("accelerator emulator", f"engine stopped: {status_message(status)}",
                                          "recompile the program for this codenet_params.h"))
    return act, {"seconds": dt, "cycles": float(cycles)}


def account(compiled: CompiledProgram, image: np.ndarray, lib: Optional[EmuLibrary] = None,
            clocks_mhz: Tuple[float, ...] = (250.0, 200.0)) -> List[Dict[str, object]]:
    """Run a compiled program and return its cycle and burst account, one dict per descriptor:
    ``loops`` (process -> loop cycles), ``beats`` / ``bursts`` (port -> count), ``macs``, ``tail_words``
    (prefetched words the MAC / depthwise stage popped after its loops: the fill its loops did not
    hide), and ``cycles`` (clock MHz -> counted cycles under the DDR model of ``hls_src/cn_account.h``)."""
    lib = lib if lib is not None else load_library()
    act = compiled.new_activations()
    compiled.write_input(act, image)
    records = (AcctRecord * max(compiled.n_layers, 1))()
    status, _ = lib.run_ports(np.ascontiguousarray(compiled.desc_bytes()), compiled.n_layers, compiled.weights,
                              act, records)
    if status != 0:
        raise BackendError(format_message("accelerator emulator", f"engine stopped: {status_message(status)}",
                                          "recompile the program for this codenet_params.h"))
    out = []
    for i in range(compiled.n_layers):
        r = records[i]
        out.append({"index": i, "loops": dict(zip(PROCS, list(r.loop_cycles))), "beats": dict(zip(PORTS, list(r.beats))),
                    "bursts": dict(zip(PORTS, list(r.bursts))), "macs": int(r.macs),
                    "tail_words": int(r.tail_words),
                    "cycles": {f: lib.desc_cycles(r, f) for f in clocks_mhz}})
    return out


def run(compiled: CompiledProgram, image: np.ndarray, return_all: bool = False,
        lib: Optional[EmuLibrary] = None) -> Dict[str, np.ndarray]:
    """Run a compiled program on a BGR uint8 image; returns role -> H x W x C int array (int8 for s8).

    ``return_all`` also returns every tensor that lives in DRAM by its name (fused pointwise /
    offset tensors and pre-upsample tensors never leave the chip and are absent); it needs a
    program compiled with ``reuse=False``.
    """
    if return_all and compiled.reuse:
        raise ValueError("return_all needs a program compiled with reuse=False (buffers are reused otherwise)")
    act, _ = run_compiled(compiled, image, lib)
    outs = compiled.read_outputs(act)
    if return_all:
        res = {name: compiled.read_tensor(act, name) for name in compiled.placements}
        res.update(outs)
        return res
    return outs
