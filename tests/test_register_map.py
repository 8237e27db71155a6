"""The AXI-Lite register map: Vitis HLS layout, the .hwh check of the driver, the emulated IP.

- The layout rule of Vitis HLS 2020.2+ (registers from 0x10 in argument order; an input of w bits
  takes 4 * ceil(w / 32) + 4 bytes; an output scalar with ap_vld 16 bytes) is first checked
  against three generated driver headers published in other projects (their offsets copied
  below as data), then applied to the signature of codenet_top: it must give CN_REG_*.
- ``tests/data/xcodenet_top_hw.h`` and ``tests/data/codenet_overlay.hwh`` are fixtures in the
  generated formats; the .hwh is read the way PYNQ reads it and the driver must accept it, and
  refuse it (naming the register) when a register is missing, unknown, moved or of another width.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Dict, List, Tuple

import numpy as np
import pytest

from codenet_pynq.accel.params import load_params
from codenet_pynq.errors import BackendError
from codenet_pynq.platform import (
    AP_DONE,
    AP_IDLE,
    AP_INTERRUPT,
    AP_READY,
    AP_START,
    EmulatedIP,
    EmulatedPlatform,
    MemoryMap,
)
from codenet_pynq.registers import (
    RegisterMap,
    checked_register_map,
    expected_registers,
    find_module,
    parse_hwh,
)

P = load_params()
DATA = Path(__file__).parent / "data"
HWH = DATA / "codenet_overlay.hwh"
VLNV = "*:hls:codenet_top:*"


# --------------------------------------------------------------------------- the layout rule
def vitis_layout(args: List[Tuple[str, str, int]]) -> Dict[str, int]:
    """Offsets Vitis HLS gives s_axilite arguments: (name, "in" | "out", bits) -> data (and ctrl) offset."""
    out, off = {}, 0x10
    for name, kind, bits in args:
        out[name] = off
        if kind == "out":  # data word, ap_vld control word, two reserved words
            out[f"{name}_ctrl"] = off + 4
            off += 16
        else:  # ceil(bits / 32) data words and one reserved word
            off += 4 * -(-bits // 32) + 4
    return out


# Offsets of generated xNAME_hw.h files (data only, copied as numbers):
PUBLISHED = {
    # CTSRD-CHERI/cheri-hls examples/spmv_crs/bare_metal_cpu_hls_fg/xhls_top_hw.h (Vitis HLS 2023.1)
    "cheri-hls spmv_crs (2023.1)": (
        [("size", "in", 32), ("xval", "in", 64), ("xcols", "in", 64), ("xrowDelimiters", "in", 64),
         ("xvec", "in", 64), ("xout", "in", 64), ("flag", "out", 32), ("cap", "in", 64)],
        {"size": 0x10, "xval": 0x18, "xcols": 0x24, "xrowDelimiters": 0x30, "xvec": 0x3C, "xout": 0x48,
         "flag": 0x54, "flag_ctrl": 0x58, "cap": 0x64}),
    # metr0jw/Event-Driven-Spiking-Neural-Network-Accelerator-for-FPGA
    #   hardware/hls/hls_output/hls/impl/misc/drivers/snn_top_hls_v1_0/src/xsnn_top_hls_hw.h (Vitis HLS 2025.2)
    "snn_top_hls (2025.2)": (
        [("ctrl_reg", "in", 32), ("config_reg", "in", 32), ("learning_params", "in", 144),
         ("status_reg", "out", 32), ("spike_count_reg", "out", 32), ("weight_sum_reg", "out", 32),
         ("version_reg", "out", 32), ("reward_signal", "in", 8)],
        {"ctrl_reg": 0x10, "config_reg": 0x18, "learning_params": 0x20, "status_reg": 0x38,
         "status_reg_ctrl": 0x3C, "spike_count_reg": 0x48, "weight_sum_reg": 0x58, "weight_sum_reg_ctrl": 0x5C,
         "version_reg": 0x68, "reward_signal": 0x78}),
    # UCLA-VAST/TAPA-CS apps/vadd/VecAdd_1/.autopilot/db/driver/src/xvecadd_1_hw.h (Vitis HLS 2022.1)
    "TAPA-CS vecadd (2022.1)": (
        [("a", "in", 64), ("b", "in", 64), ("c", "in", 64), ("n", "in", 64)],
        {"a": 0x10, "b": 0x1C, "c": 0x28, "n": 0x34}),
}

CODENET_TOP = [("desc", "in", 64), ("n_layers", "in", 32), ("wgt", "in", 64), ("act_rd", "in", 64),
               ("act_wr", "in", 64), ("status", "out", 32), ("cycles", "out", 32)]


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_layout_rule_matches_generated_headers(name: str) -> None:
    args, offsets = PUBLISHED[name]
    got = vitis_layout(args)
    assert {k: got[k] for k in offsets} == offsets


def test_header_follows_the_rule_for_codenet_top() -> None:
    lay = vitis_layout(CODENET_TOP)
    want = {"DESC": lay["desc"], "N_LAYERS": lay["n_layers"], "WGT": lay["wgt"], "ACT_RD": lay["act_rd"],
            "ACT_WR": lay["act_wr"], "STATUS": lay["status"], "STATUS_CTRL": lay["status_ctrl"],
            "CYCLES": lay["cycles"], "CYCLES_CTRL": lay["cycles_ctrl"], "AP_CTRL": 0, "GIE": 4, "IER": 8, "ISR": 0xC}
    assert dict(RegisterMap.from_params(P)) == want
    assert (P.REG_CYCLES, P.REG_CYCLES_CTRL) == (0x58, 0x5C)
    assert 1 << P.REG_ADDR_BITS > lay["cycles"] + 12  # the last reserved word is inside the window


def test_generated_driver_header_fixture() -> None:
    """The xcodenet_top_hw.h-style fixture: every ADDR define equals the header's offset."""
    text = (DATA / "xcodenet_top_hw.h").read_text()
    defs = {m.group(1): int(m.group(2), 16) for m in
            re.finditer(r"#define XCODENET_TOP_CONTROL_ADDR_(\w+)\s+(0x[0-9a-fA-F]+)", text)}
    rename = {"AP_CTRL": "AP_CTRL", "GIE": "GIE", "IER": "IER", "ISR": "ISR", "DESC_DATA": "DESC",
              "N_LAYERS_DATA": "N_LAYERS", "WGT_DATA": "WGT", "ACT_RD_DATA": "ACT_RD", "ACT_WR_DATA": "ACT_WR",
              "STATUS_DATA": "STATUS", "STATUS_CTRL": "STATUS_CTRL", "CYCLES_DATA": "CYCLES",
              "CYCLES_CTRL": "CYCLES_CTRL"}
    assert set(defs) == set(rename)
    for define, key in rename.items():
        assert defs[define] == P[f"REG_{key}"], define


# --------------------------------------------------------------------------- the .hwh
def pynq_style_registers(text: str, instance: str) -> Dict[str, Any]:
    """The same queries PYNQ's hwh_parser makes (REGISTERS/*[@NAME] and PROPERTY[@NAME=...] lookups)."""
    root = ET.fromstring(text)
    mod = next(m for m in root.iter("MODULE") if m.get("INSTANCE") == instance)

    def prop(e: ET.Element, name: str) -> str:
        return e.find(f'./PROPERTY/[@NAME="{name}"]').get("VALUE")

    def num(v: str) -> int:
        return int(v, 16 if v.startswith("0x") else 10)

    return {r.get("NAME"): {"address_offset": num(prop(r, "ADDRESS_OFFSET")), "size": num(prop(r, "SIZE")),
                            "access": prop(r, "ACCESS"),
                            "fields": {f.get("NAME"): (num(prop(f, "BIT_OFFSET")), num(prop(f, "BIT_WIDTH")))
                                       for f in r.findall("./FIELDS/FIELD/[@NAME]")}}
            for r in mod.findall(".//REGISTERS/*[@NAME]")}


def fixture_modules() -> Dict[str, Any]:
    return parse_hwh(HWH.read_text(), str(HWH))


def fixture_registers() -> Dict[str, Any]:
    return dict(find_module(fixture_modules(), VLNV)[1]["registers"])


def test_hwh_parsed_like_pynq() -> None:
    mods = fixture_modules()
    path, mod = find_module(mods, VLNV)
    assert path == "codenet_top_0" and mod["type"] == "codenet:hls:codenet_top:1.0"
    assert mods["zynq_ultra_ps_e_0"]["registers"] == {}
    ref = pynq_style_registers(HWH.read_text(), "codenet_top_0")
    regs = mod["registers"]
    assert set(regs) == set(ref) and len(regs) == 17
    for name, r in ref.items():
        got = regs[name]
        assert (got["address_offset"], got["size"], got["access"]) == (r["address_offset"], r["size"], r["access"])
        assert {k: (f["bit_offset"], f["bit_width"]) for k, f in got["fields"].items()} == r["fields"]


def test_driver_accepts_the_generated_map() -> None:
    regmap = checked_register_map(fixture_registers(), P, str(HWH))
    assert dict(regmap) == dict(RegisterMap.from_params(P)) and "checked" in regmap.source
    assert regmap.span == 0x80


def _mutated(edit) -> Dict[str, Any]:
    """Registers of the fixture after ``edit(root)`` changed its XML."""
    root = ET.fromstring(HWH.read_text())
    edit(root)
    return dict(find_module(parse_hwh(ET.tostring(root, encoding="unicode")), VLNV)[1]["registers"])


def _reg(root: ET.Element, name: str) -> ET.Element:
    return next(r for r in root.iter("REGISTER") if r.get("NAME") == name)


def _set(elem: ET.Element, prop: str, value: str) -> None:
    next(p for p in elem.findall("./PROPERTY") if p.get("NAME") == prop).set("VALUE", value)


def _remove(root: ET.Element, name: str) -> None:
    for regs in root.iter("REGISTERS"):
        for r in list(regs):
            if r.get("NAME") == name:
                regs.remove(r)


def _field(root: ET.Element, reg: str, field: str) -> ET.Element:
    return next(f for f in _reg(root, reg).iter("FIELD") if f.get("NAME") == field)


def _old_layout(root: ET.Element) -> None:  # the pre-fix map: cycles right after status (8-byte slot)
    _set(_reg(root, "cycles"), "ADDRESS_OFFSET", "80")
    _set(_reg(root, "cycles_ctrl"), "ADDRESS_OFFSET", "84")


def _addr32(root: ET.Element) -> None:  # desc exported with a 32-bit address: one register "desc"
    _remove(root, "desc_2")
    _reg(root, "desc_1").set("NAME", "desc")


REFUSALS = {
    "missing": (lambda r: _remove(r, "cycles_ctrl"), [r"register cycles_ctrl \(CN_REG_CYCLES_CTRL\) is missing"]),
    "offset": (_old_layout, [r"register cycles is at 0x50 in the \.hwh, at 0x58", "cycles_ctrl is at 0x54"]),
    "width": (lambda r: _set(_field(r, "n_layers", "n_layers"), "BIT_WIDTH", "16"),
              [r"register n_layers holds 16 data bits, 32 expected"]),
    "size": (lambda r: _set(_reg(r, "status"), "SIZE", "64"), [r"register status is 64 bits wide"]),
    "unknown": (lambda r: ET.SubElement(next(r.iter("REGISTERS")), "REGISTER", NAME="debug_out"),
                [r"unexpected register debug_out"]),
    "addr32": (_addr32, ["register desc_1 .* is missing", "register desc_2 .* is missing",
                         "unexpected register desc at 0x10 .*m_axi_addr64"]),
    "ctrl bit": (lambda r: _set(_field(r, "CTRL", "AP_DONE"), "BIT_OFFSET", "2"),
                 [r"field CTRL\.AP_DONE is bit 2, bit 1 expected"]),
    "no ap_vld": (lambda r: _field(r, "status_ctrl", "status_ap_vld").set("NAME", "status_valid"),
                  ["register status_ctrl has no field status_ap_vld"]),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_driver_refuses_a_different_map(case: str) -> None:
    edit, patterns = REFUSALS[case]
    with pytest.raises(BackendError) as ei:
        checked_register_map(_mutated(edit), P, str(HWH))
    msg = str(ei.value)
    assert msg.startswith(str(HWH)) and "differs from codenet_params.h" in msg and "overlays/build.sh" in msg
    for pat in patterns:
        assert re.search(pat, msg), (pat, msg)


def test_empty_or_broken_hwh() -> None:
    with pytest.raises(BackendError, match="no register description"):
        checked_register_map({}, P, "x.hwh")
    with pytest.raises(BackendError, match=r"x\.hwh: is not a readable \.hwh file"):
        parse_hwh("<EDKSYSTEM><MODULE", "x.hwh")


def test_expected_registers_cover_the_window() -> None:
    specs = expected_registers(P)
    offsets = sorted(s.offset for s in specs)
    assert len(offsets) == len(set(offsets)) == 17
    assert offsets[-1] < 1 << P.REG_ADDR_BITS


# --------------------------------------------------------------------------- the emulated IP
def _ip(engine=lambda d, n, w, a: (0, 77)) -> Tuple[EmulatedIP, MemoryMap]:
    plat = EmulatedPlatform(params=P, engine=engine)
    return plat.ip, plat.memory


def _run(ip: EmulatedIP, mem: MemoryMap) -> None:
    bufs = [mem.allocate((4096,), np.uint8) for _ in range(3)]
    for reg, b in zip((P.REG_DESC, P.REG_WGT, P.REG_ACT_RD, P.REG_ACT_WR), bufs + [bufs[2]]):
        ip.write(reg, b.physical_address & 0xFFFFFFFF)
        ip.write(reg + 4, b.physical_address >> 32)
    ip.write(P.REG_AP_CTRL, AP_START)
    assert ip.join(10)


def test_emulated_ctrl_semantics() -> None:
    ip, mem = _ip()
    assert ip.read(P.REG_AP_CTRL) == AP_IDLE and ip.span == 0x80
    with pytest.raises(ValueError, match="outside the AXI-Lite map"):
        ip.read(0x80)
    with pytest.raises(ValueError, match="word aligned"):
        ip.write(0x11, 1)
    # reserved words read 0 and ignore writes; outputs are read-only
    for off in (0x18, 0x20, 0x2C, 0x50, 0x54, 0x60, 0x64, 0x7C):
        ip.write(off, 0xFFFF)
        assert ip.read(off) == 0, hex(off)
    ip.write(P.REG_STATUS, 5)
    assert ip.read(P.REG_STATUS) == 0
    ip.write(P.REG_N_LAYERS, 3)
    assert ip.read(P.REG_N_LAYERS) == 3
    ip.write(P.REG_IER, 0x3)
    _run(ip, mem)
    ctrl = ip.read(P.REG_AP_CTRL)
    assert ctrl & (AP_DONE | AP_IDLE | AP_READY) == AP_DONE | AP_IDLE | AP_READY and not ctrl & AP_START
    assert not ctrl & AP_INTERRUPT  # GIE off: no interrupt output
    assert ip.read(P.REG_AP_CTRL) == AP_IDLE  # done and ready cleared on read
    assert ip.read(P.REG_STATUS_CTRL) == 1 and ip.read(P.REG_STATUS_CTRL) == 0  # ap_vld cleared on read
    assert ip.read(P.REG_CYCLES_CTRL) == 1 and ip.read(P.REG_CYCLES) == 77 and ip.read(P.REG_CYCLES) == 77
    assert ip.read(P.REG_ISR) == 0x3  # done and ready events latched (IER set)
    ip.write(P.REG_GIE, 1)
    assert ip.read(P.REG_AP_CTRL) & AP_INTERRUPT
    ip.write(P.REG_ISR, 0x1)  # toggle on write
    assert ip.read(P.REG_ISR) == 0x2
    ip.write(P.REG_ISR, 0x2)
    assert ip.read(P.REG_ISR) == 0 and not ip.read(P.REG_AP_CTRL) & AP_INTERRUPT
    ip.write(P.REG_IER, 0)
    _run(ip, mem)
    assert ip.read(P.REG_ISR) == 0  # events masked by IER do not latch
    assert ip.starts == 2


def test_header_without_a_register_is_refused() -> None:
    from codenet_pynq.accel.params import ParamsError, find_params_header, parse_params

    text = find_params_header().read_text()
    cut = "\n".join(line for line in text.splitlines() if not line.startswith("#define CN_REG_CYCLES_CTRL"))
    with pytest.raises(ParamsError, match="lacks CN_REG_CYCLES_CTRL"):
        parse_params(cut, "old.h")
