"""The AXI-Lite register map of ``codenet_top``: names, offsets, and the check of an overlay against them.

``hls_src/codenet_params.h`` holds the offsets (``CN_REG_*``) as Vitis HLS 2020.2+ generates them
for ``codenet_top(desc, n_layers, wgt, act_rd, act_wr, status, cycles)`` (the rule and its sources
are in ``overlays/README.md``, "Register map"). This module

- names every register the way Vitis HLS names it in the IP's ``component.xml`` and hence in the
  overlay's ``.hwh`` (``CTRL``, ``GIER``, ``IP_IER``, ``IP_ISR``, ``desc_1``/``desc_2`` for the
  low/high words of a 64-bit address, ``status`` and ``status_ctrl`` for an output with
  ``ap_vld``, ...): :func:`expected_registers`;
- reads the register description of an IP out of a ``.hwh`` into the same dictionary PYNQ's
  ``ip_dict[...]["registers"]`` holds (``address_offset``, ``size``, ``access``, ``fields`` with
  ``bit_offset``/``bit_width``), without importing pynq: :func:`parse_hwh`;
- compares such a description with the header and lists every difference, naming the register:
  a missing one, an unknown one, another offset, another width, a control bit elsewhere
  (:func:`register_problems`); :func:`checked_register_map` raises on any and otherwise returns
  the :class:`RegisterMap` the driver writes to.
"""

from __future__ import annotations

import fnmatch
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Mapping, Tuple

from .errors import BackendError, format_message

__all__ = ["AP_START", "AP_DONE", "AP_IDLE", "AP_READY", "AP_AUTO_RESTART", "AP_INTERRUPT", "RegSpec",
           "RegisterMap", "expected_registers", "parse_hwh", "register_problems", "checked_register_map"]

#: bits of the CTRL register (ap_ctrl_hs): start (R/W, cleared on handshake), done (clear on read),
#: idle, ready (clear on read), auto_restart (R/W), interrupt (read-only: GIE and a pending ISR bit)
AP_START, AP_DONE, AP_IDLE, AP_READY, AP_AUTO_RESTART, AP_INTERRUPT = 0x01, 0x02, 0x04, 0x08, 0x80, 0x200

#: (header name without REG_, argument name) of the s_axilite arguments, in the order of the signature
_ARGS: Tuple[Tuple[str, str, str], ...] = (
    ("DESC", "desc", "ptr"), ("N_LAYERS", "n_layers", "in"), ("WGT", "wgt", "ptr"), ("ACT_RD", "act_rd", "ptr"),
    ("ACT_WR", "act_wr", "ptr"), ("STATUS", "status", "out"), ("CYCLES", "cycles", "out"))
#: the block-level registers: header name, .hwh name, (field, bit) pairs the driver relies on
_CONTROL: Tuple[Tuple[str, str, Tuple[Tuple[str, int], ...]], ...] = (
    ("AP_CTRL", "CTRL", (("AP_START", 0), ("AP_DONE", 1), ("AP_IDLE", 2), ("AP_READY", 3))),
    ("GIE", "GIER", (("Enable", 0),)),
    ("IER", "IP_IER", (("CHAN0_INT_EN", 0),)),
    ("ISR", "IP_ISR", (("CHAN0_INT_ST", 0),)))


@dataclass(frozen=True)
class RegSpec:
    """One 32-bit register of the map as the .hwh names it.

    ``width``: bits of its data (sum of its non-reserved fields) the driver needs, 0 = not checked
    (block-level registers, whose fields vary between tool versions); ``bits``: (field, bit offset)
    pairs that must sit where the driver expects them; ``key``: the header name (``REG_<key>``).
    """

    name: str
    offset: int
    width: int
    key: str
    bits: Tuple[Tuple[str, int], ...] = ()


def expected_registers(params: Mapping[str, int]) -> List[RegSpec]:
    """Every register of ``codenet_top``'s control bundle, with the offsets of the header ``params``."""
    out = [RegSpec(hwh, params[f"REG_{key}"], 0, key, bits) for key, hwh, bits in _CONTROL]
    for key, arg, kind in _ARGS:
        off = params[f"REG_{key}"]
        if kind == "ptr":  # 64-bit address: low word <arg>_1, high word <arg>_2
            out += [RegSpec(f"{arg}_1", off, 32, key), RegSpec(f"{arg}_2", off + 4, 32, key)]
        else:
            out.append(RegSpec(arg, off, 32, key))
        if kind == "out":  # output scalar with ap_vld: its control word
            out.append(RegSpec(f"{arg}_ctrl", params[f"REG_{key}_CTRL"], 1, f"{key}_CTRL", ((f"{arg}_ap_vld", 0),)))
    return out


class RegisterMap(Mapping[str, int]):
    """Header name (``AP_CTRL``, ``DESC``, ``STATUS_CTRL``, ...) -> byte offset the driver uses.

    ``source`` says where the offsets come from (the header, or an overlay's .hwh checked
    against it); ``span``: bytes of the control window (``1 << CN_REG_ADDR_BITS``).
    """

    def __init__(self, offsets: Mapping[str, int], span: int, source: str) -> None:
        self._offsets = dict(offsets)
        self.span = int(span)
        self.source = source

    @classmethod
    def from_params(cls, params: Mapping[str, int]) -> RegisterMap:
        """The map of the header itself (what the emulated IP implements)."""
        keys = [key for key, _, _ in _CONTROL] + [key for key, _, _ in _ARGS] + \
               [f"{key}_CTRL" for key, _, kind in _ARGS if kind == "out"]
        span = 1 << int(params.get("REG_ADDR_BITS", 7))
        return cls({k: int(params[f"REG_{k}"]) for k in keys}, span, str(getattr(params, "source", "header")))

    def __getitem__(self, key: str) -> int:
        return self._offsets[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._offsets)

    def __len__(self) -> int:
        return len(self._offsets)

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}=0x{v:02x}" for k, v in self._offsets.items())
        return f"RegisterMap({inner}; from {self.source})"


# =========================================================================== .hwh
def _props(elem: ET.Element) -> Dict[str, str]:
    return {p.get("NAME", ""): p.get("VALUE", "") for p in elem.findall("./PROPERTY")}


def _int(text: str) -> int:
    text = text.strip()
    return int(text, 16 if text.lower().startswith("0x") else 10)


def _register_dict(reg: ET.Element) -> Dict[str, Any]:
    """One ``<REGISTER>`` as PYNQ's hwh parser stores it in ``ip_dict[...]["registers"]``."""
    p = _props(reg)
    fields = {}
    for f in reg.findall("./FIELDS/FIELD"):
        fp = _props(f)
        fields[f.get("NAME", "")] = {"bit_offset": _int(fp.get("BIT_OFFSET", "0")),
                                     "bit_width": _int(fp.get("BIT_WIDTH", "0")),
                                     "access": fp.get("ACCESS", ""), "description": fp.get("DESCRIPTION", "")}
    return {"address_offset": _int(p.get("ADDRESS_OFFSET", "-1")), "size": _int(p.get("SIZE", "0")),
            "access": p.get("ACCESS", ""), "description": p.get("DESCRIPTION", ""), "fields": fields}


def parse_hwh(text: str, source: str = "<hwh>") -> Dict[str, Dict[str, Any]]:
    """``{instance path: {"type": VLNV, "registers": {...}}}`` for every MODULE of a .hwh text.

    Read the way PYNQ's ``hwh_parser`` reads it (``MODULE`` elements, their ``REGISTERS/REGISTER``
    with ``PROPERTY`` children), without pynq. BackendError naming ``source`` when it is no XML.
    """
    try:
        root = ET.fromstring(text)
    except ET.ParseError as e:
        raise BackendError(format_message(source, f"is not a readable .hwh file ({e})",
                                          "copy the codenet.hwh that overlays/build.sh wrote next to the .bit")) from e
    out: Dict[str, Dict[str, Any]] = {}
    for mod in root.iter("MODULE"):
        path = (mod.get("FULLNAME") or mod.get("INSTANCE") or "").lstrip("/")
        regs = {r.get("NAME", ""): _register_dict(r) for r in mod.findall(".//REGISTERS/REGISTER")}
        out[path] = {"type": mod.get("VLNV", ""), "registers": regs}
    return out


def find_module(modules: Mapping[str, Mapping[str, Any]], vlnv_pattern: str) -> Tuple[str, Mapping[str, Any]]:
    """(path, module) of the first module whose VLNV matches ``vlnv_pattern``; KeyError if none."""
    for path in sorted(modules):
        if fnmatch.fnmatch(str(modules[path].get("type", "")), vlnv_pattern):
            return path, modules[path]
    raise KeyError(vlnv_pattern)


# =========================================================================== the check
def _data_width(reg: Mapping[str, Any]) -> int:
    fields = reg.get("fields") or {}
    return sum(int(f.get("bit_width", 0)) for n, f in fields.items() if not str(n).upper().startswith("RESERVED"))


def register_problems(registers: Mapping[str, Any], params: Mapping[str, int]) -> List[str]:
    """Every difference between an IP's register description (PYNQ format) and the header, named."""
    problems: List[str] = []
    expected = expected_registers(params)
    names = {s.name for s in expected}
    got = {str(k): v for k, v in registers.items()}
    for spec in expected:
        reg = got.get(spec.name)
        if not isinstance(reg, Mapping):
            problems.append(f"register {spec.name} (CN_REG_{spec.key}) is missing")
            continue
        off = reg.get("address_offset")
        if off is None or int(off) != spec.offset:
            shown = "no offset" if off is None else f"0x{int(off):02x}"
            problems.append(f"register {spec.name} is at {shown} in the .hwh, at 0x{spec.offset:02x} in "
                            f"codenet_params.h (CN_REG_{spec.key})")
        size = int(reg.get("size", 32) or 32)
        if size != 32:
            problems.append(f"register {spec.name} is {size} bits wide, 32 expected")
        if spec.width and reg.get("fields"):
            width = _data_width(reg)
            if width != spec.width:
                problems.append(f"register {spec.name} holds {width} data bits, {spec.width} expected")
        fields = reg.get("fields") or {}
        for field, bit in spec.bits:
            f = fields.get(field)
            if f is None and spec.width:  # ap_vld of an output: must be there
                problems.append(f"register {spec.name} has no field {field}")
            elif f is not None and int(f.get("bit_offset", -1)) != bit:
                problems.append(f"field {spec.name}.{field} is bit {f.get('bit_offset')}, bit {bit} expected")
    for name in sorted(set(got) - names):
        off = got[name].get("address_offset") if isinstance(got[name], Mapping) else None
        where = f" at 0x{int(off):02x}" if off is not None else ""
        hint = ""
        if f"{name}_1" in names:
            hint = " (a 32-bit address: export the IP with 64-bit m_axi addresses, config_interface -m_axi_addr64)"
        problems.append(f"unexpected register {name}{where}{hint}")
    return problems


def checked_register_map(registers: Mapping[str, Any], params: Any, source: str) -> RegisterMap:
    """The offsets of an overlay's register description after checking it against the header.

    BackendError naming ``source`` and every register that is missing, unknown or differs.
    """
    if not registers:
        raise BackendError(format_message(
            source, "holds no register description for the CoDeNet IP",
            "rebuild the overlay with overlays/build.sh (Vivado 2020.2 or newer writes the registers into "
            "the .hwh) and copy the new codenet.hwh next to codenet.bit"))
    problems = register_problems(registers, params)
    if problems:
        shown = "; ".join(problems[:8]) + (f"; and {len(problems) - 8} more" if len(problems) > 8 else "")
        raise BackendError(format_message(
            source, f"the IP's register map differs from codenet_params.h ({getattr(params, 'source', 'header')}): "
                    f"{shown}",
            "rebuild the overlay from this codenet-pynq's hls_src (overlays/build.sh), or install the "
            "codenet-pynq version whose codenet_params.h the overlay was built with"))
    offsets: Dict[str, int] = {}
    for spec in expected_registers(params):  # the first word of each argument (the low word of an address)
        offsets.setdefault(spec.key, int(registers[spec.name]["address_offset"]))
    return RegisterMap(offsets, RegisterMap.from_params(params).span, f"{source} (checked against the header)")
