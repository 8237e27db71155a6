"""The accelerator's Python side: hardware parameters, program compiler, test vectors, emulator binding.

- :mod:`.params`  -- ``hls_src/codenet_params.h`` parsed (``load_params()``)
- :mod:`.compile` -- integer program -> descriptor table + weight blob + activation plan
- :mod:`.vectors` -- vector folders for the C-simulation testbench
- :mod:`.emulib`  -- ctypes binding of ``hls_src/build/libcodenet_emu.so`` (``make -C hls_src lib``)

Importing this package needs numpy only; the emulation library is loaded on first use.
"""

from .compile import CompiledProgram, TensorPlacement, compile_program
from .params import HwParams, load_params

__all__ = ["CompiledProgram", "TensorPlacement", "compile_program", "HwParams", "load_params"]
