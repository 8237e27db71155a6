"""Hardware parameters of the accelerator, read from ``hls_src/codenet_params.h``.

The header is the single source of every number (PA, PE, line-buffer rows, maximum sizes,
descriptor format, register offsets); this module parses its ``#define CN_<NAME> <integer>``
lines so nothing is written twice.  Names are exposed without the ``CN_`` prefix::

    >>> from codenet_pynq.accel.params import load_params
    >>> p = load_params()
    >>> p.PA, p.PE, p.MAX_OFFSET, p.LB_ROWS            # doctest: +SKIP
    (16, 16, 8, 19)

The header is looked up in this order: an explicit path, ``$CODENET_PARAMS_H``, a copy shipped
next to this module (package data), and ``hls_src/codenet_params.h`` of the source checkout.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Dict, Iterator, Mapping, Optional, Tuple, Union

from ..errors import CodenetError, format_message

__all__ = ["HwParams", "ParamsError", "load_params", "find_params_header", "parse_params"]

_DEFINE = re.compile(r"^\s*#\s*define\s+CN_([A-Z0-9_]+)\s+\(?\s*(0[xX][0-9a-fA-F]+|\d+)\s*\)?\s*(?://.*)?$")

#: parameters every engine build must define (a header without them is not an engine header)
REQUIRED = ("DESC_MAGIC", "DESC_VERSION", "DESC_WORDS", "MAX_SEGS", "PA", "PE", "DW_PE", "MAX_OFFSET", "LANES",
            "LB_ROWS", "MAX_W", "MAX_C", "LB_WORDS", "SRC_WORDS", "IM2COL_WORDS", "WBUF_BLOCKS", "MAX_KT",
            "ACC_BITS", "QPARAM_BYTES",
            "MEM_ALIGN", "OP_DENSE", "OP_DWBLOCK", "OP_MAXPOOL", "OP_MOVE", "D_SEG_BASE", "D_SEG_WORDS",
            # the AXI-Lite register map the driver and the emulated IP use (codenet_pynq/registers.py)
            "REG_AP_CTRL", "REG_GIE", "REG_IER", "REG_ISR", "REG_DESC", "REG_N_LAYERS", "REG_WGT", "REG_ACT_RD",
            "REG_ACT_WR", "REG_STATUS", "REG_STATUS_CTRL", "REG_CYCLES", "REG_CYCLES_CTRL", "REG_ADDR_BITS")


class ParamsError(CodenetError, ValueError):
    """The hardware parameter header is missing or malformed."""


class HwParams(Mapping[str, int]):
    """Read-only mapping NAME -> int of the ``CN_NAME`` defines, also reachable as attributes."""

    def __init__(self, values: Mapping[str, int], source: str = "<dict>") -> None:
        self._values: Dict[str, int] = dict(values)
        self.source = source
        missing = [k for k in REQUIRED if k not in self._values]
        if missing:
            raise ParamsError(format_message(source, f"hardware parameter header lacks CN_{', CN_'.join(missing)}",
                                             "use the codenet_params.h of this codenet-pynq version"))

    def __getitem__(self, key: str) -> int:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __getattr__(self, name: str) -> int:
        values = self.__dict__.get("_values")
        if values is not None and name in values:
            return values[name]
        raise AttributeError(f"hardware parameters have no CN_{name}")

    def __repr__(self) -> str:
        keys = ("PA", "PE", "DW_PE", "MAX_OFFSET", "LB_ROWS", "MAX_W", "MAX_C", "ACC_BITS", "DESC_VERSION")
        inner = ", ".join(f"{k}={self._values[k]}" for k in keys if k in self._values)
        return f"HwParams({inner}; from {self.source})"

    def fingerprint(self) -> Tuple[Tuple[str, int], ...]:
        """Sorted (name, value) pairs: equal fingerprints mean interchangeable hardware."""
        return tuple(sorted(self._values.items()))


def parse_params(text: str, source: str = "<text>") -> HwParams:
    """Parse the ``#define CN_<NAME> <int>`` lines of a header text."""
    values: Dict[str, int] = {}
    for line in text.splitlines():
        m = _DEFINE.match(line)
        if m:
            values[m.group(1)] = int(m.group(2), 0)
    return HwParams(values, source)


def find_params_header(path: Optional[Union[str, os.PathLike]] = None) -> Path:
    """Locate codenet_params.h (see module doc for the search order)."""
    candidates = []
    if path is not None:
        candidates.append(Path(path))
    env = os.environ.get("CODENET_PARAMS_H")
    if env:
        candidates.append(Path(env))
    here = Path(__file__).resolve().parent
    candidates.append(here / "codenet_params.h")
    candidates.append(here.parent.parent / "hls_src" / "codenet_params.h")
    for c in candidates:
        if c.is_file():
            return c
    raise ParamsError(format_message(
        "codenet_params.h", f"hardware parameter header not found (looked in {', '.join(str(c) for c in candidates)})",
        "set CODENET_PARAMS_H to the hls_src/codenet_params.h of this codenet-pynq version"))


_CACHE: Dict[str, HwParams] = {}


def load_params(path: Optional[Union[str, os.PathLike]] = None) -> HwParams:
    """Parse (and cache) the hardware parameter header."""
    p = find_params_header(path)
    key = str(p)
    stamp = f"{key}:{p.stat().st_mtime_ns}"
    if stamp not in _CACHE:
        _CACHE[stamp] = parse_params(p.read_text(encoding="utf-8"), key)
    return _CACHE[stamp]
