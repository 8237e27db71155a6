"""Emulator backend: the FPGA driver over an emulated platform whose ``ap_start`` runs the HLS C++.

The very driver of the board (:class:`~codenet_pynq.backends.fpga.CodenetAccelerator`: one
descriptor table, buffers allocated once, registers, ``ap_start``, ``ap_done`` with a timeout,
``status``) talks to :class:`~codenet_pynq.platform.EmulatedPlatform`, whose register file runs
the accelerator's C++ compiled for the host (``hls_src/build/libcodenet_emu.so``, built by
``make -C hls_src lib``) on the DRAM buffers. Its head outputs are bit-identical to the golden
reference and to the CPU backend's integer graph.

``timeout_s`` holds as on a board: ``ap_start`` starts the engine in a worker thread and returns,
the driver polls ``ap_done`` (sleeping between polls) and raises
:class:`~codenet_pynq.errors.AcceleratorTimeout` past the deadline. The abandoned run finishes in
the background (the engine cannot be interrupted); the next frame waits for it up to
``timeout_s`` and then runs, or raises "accelerator busy" if it is still running. The engine
never runs twice at once (it has static state).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional, Union

from ..accel.emulib import load_library
from ..artifact import Artifact
from ..errors import BackendError, format_message
from ..platform import EmulatedPlatform, Platform
from .fpga import AcceleratorBackend, CodenetAccelerator, require_quantized

__all__ = ["EmulatorBackend"]


class EmulatorBackend(AcceleratorBackend):
    """The accelerator emulated on this machine, behind the FPGA driver.

    ``lib_path``: the emulation library (default: ``$CODENET_EMU_LIB``, then
    ``hls_src/build/libcodenet_emu.so``); ``timeout_s``: the driver's ap_done timeout, per frame
    (the emulated engine is much slower than the FPGA); ``fault``: ``None``, ``"hang"``,
    ``"status"`` or ``"done"`` (fault injection, see :mod:`codenet_pynq.platform`); ``coherent``: skip the
    emulated cache (by default the engine sees only what the driver synced); ``platform``: reuse
    an :class:`~codenet_pynq.platform.EmulatedPlatform`.
    """

    name = "emulator"

    def __init__(self, artifact: Artifact, lib_path: Optional[Union[str, os.PathLike]] = None,
                 timeout_s: float = 60.0, fault: Optional[str] = None, fault_status: Optional[int] = None,
                 coherent: bool = False, platform: Optional[Platform] = None) -> None:
        self.artifact = require_quantized(artifact)
        if platform is None:
            if lib_path is not None and not Path(lib_path).is_file():
                raise BackendError(format_message(
                    "emulator backend", f"the emulation library {lib_path} does not exist",
                    "build it with `make -C hls_src lib` in the codenet-pynq source tree (needs g++ and the ap_int "
                    "headers from Vitis HLS or `pip install hls4ml`), or pass the path of a built "
                    "libcodenet_emu.so; backend='cpu' needs no build"))
            platform = EmulatedPlatform(load_library(lib_path), fault=fault, fault_status=fault_status,
                                        coherent=coherent)
        self.platform = platform
        self.accelerator = CodenetAccelerator(platform, artifact, timeout_s)

    @property
    def ip(self) -> Any:
        """The emulated register file (fault injection: ``backend.ip.fault = "hang"``)."""
        return self.platform.ip

