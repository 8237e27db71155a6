"""Overlay and HLS scripts: CHEAP STRUCTURAL TESTS, not a Vivado run.

No Xilinx tool is installed here, so nothing proves the Tcl works in Vivado / Vitis HLS. These
tests only guard the checks the scripts must contain (issue 11, item 9):

1. text checks: missing board files stop the build with install instructions; WNS/WHS of the
   routed design are read and negative slack is an error; success is not judged by
   ``PROGRESS``; the PL clock is set by the PS frequency property and connected by pin name (no
   "(250 MHz)" label); both scripts target the Ultra96-V2 part of the Avnet board files;
   co-simulation only behind its flag;
2. control-flow checks (when ``tclsh`` exists): the scripts run under tclsh with every Vivado /
   Vitis HLS command replaced by a stub (recorded, with canned property values), to see that
   each failure path really stops before a bitstream is copied, and the success path copies it.
   The stubs know nothing of real tool behaviour beyond the values given here.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Dict, Optional

import pytest

ROOT = Path(__file__).resolve().parents[1]
BD = ROOT / "overlays" / "ultra96v2" / "codenet_bd.tcl"
HLS = ROOT / "hls_src" / "scripts" / "run_hls.tcl"
BUILD = ROOT / "overlays" / "build.sh"
PART = "xczu3eg-sbva484-1-i"  # Avnet bdf ultra96v2/1.2 and 1.3 board.xml part_name


def _code(path: Path) -> str:
    """The script without comment lines (so a comment cannot satisfy a check)."""
    return "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith("#"))


# --------------------------------------------------------------------------- 1. text checks
def test_bd_requires_board_files() -> None:
    code = _code(BD)
    assert re.search(r"get_board_parts\b.*\*ultra96v2\*", code)
    m = re.search(r'if \{\$board eq ""\} \{\s*error "([^"]*)"', code)
    assert m, "a missing board part must be an error, not skipped"
    for text in ("board files are not installed", "github.com/Avnet/bdf", "CODENET_BOARD_REPO", "board_files"):
        assert text in m.group(1), text
    assert "apply_board_preset" in code and "if {$board ne \"\"}" not in code


def test_bd_checks_timing_not_progress() -> None:
    code = _code(BD)
    assert "PROGRESS" not in code
    assert re.search(r"get_timing_paths[^\n]*-setup", code) and re.search(r"get_timing_paths[^\n]*-hold", code)
    assert re.search(r"set wns \[get_property SLACK", code) and re.search(r"set whs \[get_property SLACK", code)
    assert re.search(r"if \{\$wns < 0 \|\| \$whs < 0[^\n]*\{\s*error", code)
    assert "report_timing_summary" in code and "write_bitstream Complete" in code
    # the bitstream is copied only after the checks
    assert code.index("$wns < 0") < code.index("file copy")


def test_bd_clock_by_property_and_pin() -> None:
    code = _code(BD)
    assert "MHz)" not in code and "Clk_master" not in code and "Clk_slave" not in code
    assert "CONFIG.PSU__CRL_APB__PL0_REF_CTRL__FREQMHZ $clock_mhz" in code
    assert "get_bd_pins zynq_ultra_ps_e_0/pl_clk0" in code and "CONFIG.FREQ_HZ" in code
    for pin in ("codenet_top_0/ap_clk", "maxihpm0_fpd_aclk", "saxihp${hp}_fpd_aclk", "rst_pl_clk0/slowest_sync_clk"):
        assert pin in code, pin


def test_part_is_the_ultra96v2_part() -> None:
    for path in (BD, HLS):
        parts = set(re.findall(r"xczu3eg-sbva484-\d-[a-z]", _code(path)))
        assert parts == {PART}, (path.name, parts)
    assert PART in (ROOT / "overlays" / "README.md").read_text()


def test_hls_cosim_behind_flag() -> None:
    code = _code(HLS)
    assert code.count("cosim_design") == 1
    block = re.search(r"^if \{\$cosim\} \{\n(.*?)^\}", code, re.S | re.M)
    assert block and "cosim_design" in block.group(1)
    assert re.search(r"cosim_design -rtl verilog[^\n]*-argv \$vectors", code)
    assert re.search(r'if \{\$cosim && \$vectors eq ""\} \{\s*error', code)
    assert "-m_axi_addr64=true" in code


def test_build_sh_fails_loudly() -> None:
    code = _code(BUILD)
    assert "set -euo pipefail" in code and "CODENET_BOARD_REPO" in code
    assert re.search(r'rm -f "\$out/codenet\.bit"', code)  # no stale pair survives a failed build
    assert re.search(r"if ! vivado ", code)


# --------------------------------------------------------------------------- 2. control flow under stubs
TCLSH = shutil.which("tclsh")
needs_tclsh = pytest.mark.skipif(TCLSH is None, reason="tclsh not installed")

STUBS = r"""
# stubs of Vivado / Vitis HLS commands: record the call, answer from ::fake
array set ::fake $::env(FAKE)
proc unknown {args} { puts "CALL: $args"; return "" }
proc get_board_parts {args} { return $::fake(board) }
proc get_ipdefs {args} { return codenet:hls:codenet_top:1.0 }
proc get_runs {args} { return impl_1 }
proc current_project {args} { return proj }
proc get_bd_pins {args} { return [lindex $args end] }
proc get_timing_paths {args} {
    if {"-hold" in $args} { return $::fake(hold_paths) }
    return $::fake(setup_paths)
}
proc get_property {args} {
    set args [lsearch -all -inline -not -glob $args -*]
    set name [lindex $args 0]
    set obj [lindex $args end]
    if {[info exists ::fake($name,$obj)]} { return $::fake($name,$obj) }
    if {[info exists ::fake($name)]} { return $::fake($name) }
    return ""
}
rename exit _exit
proc exit {args} { puts "CALL: exit" }
set argv $::env(FAKE_ARGV)
if {[catch {source $::env(SCRIPT)} msg]} { puts "SCRIPT-ERROR: $msg"; _exit 1 }
puts "SCRIPT-OK"
"""

BD_OK = {"board": "avnet.com:ultra96v2:part0:1.2", "PART": PART, "CONFIG.FREQ_HZ": "249997498",
         "STATUS": "write_bitstream Complete!", "setup_paths": "p_setup", "hold_paths": "p_hold",
         "SLACK,p_setup": "0.112", "SLACK,p_hold": "0.010", "STATS.WPWS": "0.498"}


def _run_tcl(script: Path, fake: Dict[str, str], argv: str, tmp: Path, env: Optional[Dict[str, str]] = None):
    stub = tmp / "stubs.tcl"
    stub.write_text(STUBS)
    flat = " ".join(f"{{{k}}} {{{v}}}" for k, v in fake.items())
    full_env = {"PATH": os.environ.get("PATH", ""), "FAKE": flat, "FAKE_ARGV": argv, "SCRIPT": str(script),
                **(env or {})}
    return subprocess.run([TCLSH, str(stub)], capture_output=True, text=True, env=full_env, timeout=60)


def _bd_dirs(tmp: Path) -> Path:
    out = tmp / "out"
    runs = out / "vivado_codenet" / "codenet.runs" / "impl_1"
    handoff = out / "vivado_codenet" / "codenet.gen" / "sources_1" / "bd" / "codenet" / "hw_handoff"
    runs.mkdir(parents=True)
    handoff.mkdir(parents=True)
    (runs / "codenet_wrapper.bit").write_bytes(b"bit")
    (handoff / "codenet.hwh").write_text("<hwh/>")
    return out


BD_CASES = {
    "ok": ({}, None),
    "no board files": ({"board": ""}, "board files are not installed"),
    "setup": ({"SLACK,p_setup": "-0.215"}, r"timing not met at 250 MHz \(WNS -0.215 ns"),
    "hold": ({"SLACK,p_hold": "-0.004"}, r"timing not met .*WHS -0.004 ns"),
    "pulse width": ({"STATS.WPWS": "-0.1"}, r"timing not met .*WPWS -0.1 ns"),
    "no bitstream": ({"STATUS": "route_design ERROR"}, r"did not produce a bitstream \(status 'route_design ERROR'\)"),
    "clock": ({"CONFIG.FREQ_HZ": "214285714"}, r"the PS makes '214285714' Hz on pl_clk0, not 250 MHz"),
    "other part": ({"PART": "xczu3eg-sbva484-1-e"}, r"board files say the Ultra96-V2 part is xczu3eg-sbva484-1-e"),
    "no paths": ({"setup_paths": ""}, "no timed paths"),
}


@needs_tclsh
@pytest.mark.parametrize("case", sorted(BD_CASES))
def test_bd_control_flow(case: str, tmp_path: Path) -> None:
    change, error = BD_CASES[case]
    out = _bd_dirs(tmp_path)
    res = _run_tcl(BD, {**BD_OK, **change}, f"{tmp_path / 'ip'} {out}", tmp_path)
    copied = (out / "codenet.bit").exists()
    if error is None:
        assert res.returncode == 0 and "SCRIPT-OK" in res.stdout, res.stdout + res.stderr
        assert copied and (out / "codenet.hwh").read_text() == "<hwh/>"
        assert re.search(r"timing: WNS 0.112 ns, WHS 0.010 ns", res.stdout)
        assert "CALL: connect_bd_net zynq_ultra_ps_e_0/pl_clk0 codenet_top_0/ap_clk" in res.stdout
    else:
        assert res.returncode == 1 and re.search(error, res.stdout), res.stdout + res.stderr
        assert not copied, "a failed build must not leave a bitstream"


def _hls_tree(tmp: Path, bram: int = 300, driver_header: Optional[str] = None) -> Path:
    scripts = tmp / "hls_src" / "scripts"
    scripts.mkdir(parents=True)
    shutil.copy(HLS, scripts / "run_hls.tcl")
    shutil.copy(ROOT / "hls_src" / "codenet_params.h", tmp / "hls_src" / "codenet_params.h")
    drv = tmp / "hls_src" / "codenet_hls" / "ultra96v2" / "impl" / "misc" / "drivers" / "codenet_top_v1_0" / "src"
    drv.mkdir(parents=True)
    hw_h = (ROOT / "tests" / "data" / "xcodenet_top_hw.h").read_text()
    (drv / "xcodenet_top_hw.h").write_text(driver_header if driver_header is not None else hw_h)
    rep = tmp / "hls_src" / "codenet_hls" / "ultra96v2" / "syn" / "report"
    rep.mkdir(parents=True)
    (rep / "codenet_top_csynth.xml").write_text(
        "<profile><SummaryOfTimingAnalysis><unit>ns</unit><EstimatedClockPeriod>3.650</EstimatedClockPeriod>"
        f"</SummaryOfTimingAnalysis><AreaEstimates><Resources><BRAM_18K>{bram}</BRAM_18K><DSP>300</DSP>"
        "<FF>50000</FF><LUT>40000</LUT><URAM>0</URAM></Resources><AvailableResources><BRAM_18K>432</BRAM_18K>"
        "<DSP>360</DSP><FF>141120</FF><LUT>70560</LUT><URAM>0</URAM></AvailableResources></AreaEstimates></profile>")
    (tmp / "vec").mkdir()
    return scripts / "run_hls.tcl"


@needs_tclsh
def test_hls_control_flow(tmp_path: Path) -> None:
    script = _hls_tree(tmp_path)
    res = _run_tcl(script, {}, "", tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "CALL: csynth_design" in res.stdout and "cosim_design" not in res.stdout
    assert f"CALL: set_part {PART}" in res.stdout and "CALL: export_design" in res.stdout
    assert re.search(r"csynth: BRAM_18K\s+300 of\s+432", res.stdout)
    assert "xcodenet_top_hw.h matches CN_REG_*" in res.stdout
    vec = str(tmp_path / "vec")
    res = _run_tcl(script, {}, "", tmp_path, {"CODENET_COSIM": "1", "CODENET_CSIM_VECTORS": vec})
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"CALL: csim_design -argv {vec}" in res.stdout
    assert f"CALL: cosim_design -rtl verilog -tool xsim -trace_level none -argv {vec}" in res.stdout
    res = _run_tcl(script, {}, "", tmp_path, {"CODENET_COSIM": "1"})
    assert res.returncode == 1 and "CODENET_COSIM=1 needs CODENET_CSIM_VECTORS" in res.stdout


@needs_tclsh
def test_hls_refuses_an_engine_that_does_not_fit(tmp_path: Path) -> None:
    res = _run_tcl(_hls_tree(tmp_path, bram=500), {}, "", tmp_path)
    assert res.returncode == 1 and "does not fit" in res.stdout and "BRAM_18K 500 > 432" in res.stdout
    assert "CALL: export_design" not in res.stdout


@needs_tclsh
def test_hls_refuses_a_generated_map_that_differs(tmp_path: Path) -> None:
    """The pre-fix layout (cycles right after status) in the generated header stops the flow."""
    hw_h = (ROOT / "tests" / "data" / "xcodenet_top_hw.h").read_text()
    old = hw_h.replace("ADDR_CYCLES_DATA   0x58", "ADDR_CYCLES_DATA   0x50")
    assert old != hw_h
    res = _run_tcl(_hls_tree(tmp_path, driver_header=old), {}, "", tmp_path)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "differs from CN_REG_*" in res.stdout and "CYCLES: generated 0x50, codenet_params.h 0x58" in res.stdout
