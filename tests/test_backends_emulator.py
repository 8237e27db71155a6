"""The accelerator driver (CodenetAccelerator) over the emulated platform and over a fake pynq.

The emulator backend runs the HLS engine compiled for the host behind the very driver of the
board; its head outputs must equal the golden reference and the CPU backend's integer graph
exactly, and so must the detections. Failure paths: ap_done never comes (timeout), a status
error (named descriptor), other hardware parameters, a missing library, no pynq.
"""

from __future__ import annotations

import sys
import time
import types
from pathlib import Path
from typing import Any, Dict, Optional

import numpy as np
import pytest
from conftest import make_image
from quant_fixtures import rewrite_manifest

from codenet_pynq.accel import emulib
from codenet_pynq.accel.params import load_params
from codenet_pynq.artifact import load_artifact
from codenet_pynq.backends.cpu import CpuBackend
from codenet_pynq.backends.emulator import EmulatorBackend
from codenet_pynq.backends.fpga import (
    IP_VLNV,
    CodenetAccelerator,
    FpgaBackend,
    find_overlay,
    fpga_available,
    hardware_mismatches,
)
from codenet_pynq.detector import Detector, explain_auto
from codenet_pynq.errors import AcceleratorTimeout, ArtifactError, BackendError
from codenet_pynq.golden import dequantize_outputs, run_program
from codenet_pynq.platform import AP_DONE, AP_IDLE, AP_START, EmulatedPlatform
from codenet_pynq.registers import find_module, parse_hwh
from codenet_pynq.transforms import preprocess

P = load_params()
SIZES = [(120, 160), (64, 64), (300, 200), (50, 400)]
HWH = Path(__file__).parent / "data" / "codenet_overlay.hwh"


def fixture_registers() -> Dict[str, Any]:
    """The IP's registers as PYNQ's ip_dict holds them, read from the .hwh test fixture."""
    return dict(find_module(parse_hwh(HWH.read_text()), "*:hls:codenet_top:*")[1]["registers"])


@pytest.fixture(scope="session")
def emulator(emu_lib: Path, quant_artifact: str):
    be = EmulatorBackend(load_artifact(quant_artifact), lib_path=emu_lib)
    yield be
    be.close()


@pytest.fixture(scope="session")
def cpu(quant_artifact: str) -> CpuBackend:
    return CpuBackend(load_artifact(quant_artifact), threads=1)


def pixels_for(art_path: str, seed: int = 0, size=(120, 160)) -> np.ndarray:
    return preprocess(make_image(*size, seed=seed), load_artifact(art_path).input_size)[0]


# --------------------------------------------------------------------------- exactness
def test_heads_equal_golden_and_cpu(emulator: EmulatorBackend, cpu: CpuBackend, quant_artifact: str) -> None:
    program = load_artifact(quant_artifact).program()
    for seed, size in enumerate(SIZES):
        x = pixels_for(quant_artifact, seed, size)
        gold = run_program(program, x)
        got = emulator.accelerator.run_int(x)
        for role in gold:
            assert got[role].dtype == gold[role].dtype
            np.testing.assert_array_equal(got[role], gold[role], err_msg=role)
        heads, ref = emulator.run(x), cpu.run(x)
        want = dequantize_outputs(program, gold)
        for role in ("hm", "wh", "reg"):
            assert heads[role].dtype == np.float32 and heads[role].shape == ref[role].shape
            np.testing.assert_array_equal(heads[role], ref[role], err_msg=role)
            np.testing.assert_array_equal(heads[role], want[role], err_msg=role)


def test_detections_equal_cpu(emu_lib: Path, quant_artifact: str) -> None:
    with Detector.load(quant_artifact, backend="emulator", lib_path=emu_lib) as de, \
            Detector.load(quant_artifact, backend="cpu") as dc:
        assert de.backend_name == "emulator" and "emulator" in de.describe() and "descriptors" in de.describe()
        n = 0
        for seed, size in enumerate(SIZES):
            img = make_image(*size, seed=seed)
            a, b = de.detect(img), dc.detect(img)
            n += len(a.boxes)
            np.testing.assert_array_equal(a.boxes, b.boxes)
            np.testing.assert_array_equal(a.scores, b.scores)
            np.testing.assert_array_equal(a.labels, b.labels)
            assert a.class_names == b.class_names
            assert set(a.timings) >= {"preprocess", "inference", "decode", "total"}
        assert n > 0, "the tiny model should produce detections, else the comparison is empty"


def test_one_start_per_frame_and_registers(emulator: EmulatorBackend, quant_artifact: str) -> None:
    acc, ip = emulator.accelerator, emulator.ip
    x = pixels_for(quant_artifact)
    before = ip.starts
    emulator.run(x)
    emulator.run(x)
    assert ip.starts == before + 2
    regs = ip.regs
    assert regs[P.REG_N_LAYERS] == acc.compiled.n_layers
    for name, reg in (("desc", P.REG_DESC), ("wgt", P.REG_WGT), ("act", P.REG_ACT_RD), ("act", P.REG_ACT_WR)):
        addr = regs[reg] | (regs[reg + 4] << 32)
        assert addr == acc.buffers[name].physical_address
    assert ip.read(P.REG_AP_CTRL) & AP_IDLE and not ip.read(P.REG_AP_CTRL) & AP_START
    assert set(emulator.last_timings) == {"input", "accelerator", "output", "total"}


def test_throughput_and_cycles(emulator: EmulatorBackend, quant_artifact: str) -> None:
    acc = emulator.accelerator
    t = acc.throughput_test(4, warmup=1)
    assert t["frames"] == 4 and t["fps"] > 0
    assert set(t["stage_ms"]) == {"input", "accelerator", "output", "total"}
    # the cycle register holds what the engine reports for the same run
    _, stats = emulib.run_compiled(acc.compiled, pixels_for(quant_artifact), lib=emulator.platform.lib)
    assert acc.cycles() == t["cycles"] == int(stats["cycles"]) > 0
    assert t["counted_fps"] == pytest.approx(250e6 / t["counted_cycles"])
    assert t["fps_source"].startswith("measured on this host") and t["cycles_source"].startswith("counted")


def test_sync_is_required(emu_lib: Path, quant_artifact: str) -> None:
    """The emulated memory is not coherent: the engine sees only what the driver synced."""
    be = EmulatorBackend(load_artifact(quant_artifact), lib_path=emu_lib)
    try:
        x = pixels_for(quant_artifact)
        ref = be.accelerator.run_int(x)
        desc = be.accelerator.buffers["desc"]
        desc[5 * P.DESC_WORDS * 4 + 2] ^= 0xFF  # descriptor 5: break the magic, host side only
        got = be.accelerator.run_int(x)  # not synced: the engine still reads the good table
        for role in ref:
            np.testing.assert_array_equal(got[role], ref[role])
        desc.sync_to_device()
        with pytest.raises(BackendError, match=r"descriptor 5 \(.*\).*bad descriptor magic") as ei:
            be.run(x)
        assert "0x00050001" in str(ei.value) and "hls_src" in str(ei.value)
    finally:
        be.close()


# --------------------------------------------------------------------------- failures
def test_timeout_on_hang(emu_lib: Path, quant_artifact: str) -> None:
    be = EmulatorBackend(load_artifact(quant_artifact), lib_path=emu_lib, timeout_s=0.3, fault="hang")
    try:
        reads = []
        real_read = be.ip.read
        be.ip.read = lambda off=0: reads.append(off) or real_read(off)
        x = pixels_for(quant_artifact)
        t0 = time.perf_counter()
        with pytest.raises(AcceleratorTimeout) as ei:
            be.run(x)
        dt = time.perf_counter() - t0
        assert 0.3 <= dt < 1.5
        msg = str(ei.value)
        for text in ("0.3 s", "ap_done", "codenet_top", "ap_ctrl=0x01", "create the backend again", "timeout_s"):
            assert text in msg, text
        assert isinstance(ei.value, TimeoutError)
        assert len(reads) < 1000, "the wait must sleep between polls, not spin"
        # the IP still holds the start: the next frame refuses to start on top of it
        with pytest.raises(BackendError, match="still busy"):
            be.run(x)
        # after a reset (a re-downloaded overlay on a board) the same driver works again
        be.ip.fault = None
        be.ip.reset()
        assert be.run(x)["hm"].shape[0] == 5
    finally:
        be.close()


def test_status_error_names_descriptor(emu_lib: Path, quant_artifact: str) -> None:
    be = EmulatorBackend(load_artifact(quant_artifact), lib_path=emu_lib, fault="status",
                         fault_status=P.STATUS_BAD_SIZE | (7 << 16))
    try:
        layer = be.accelerator.compiled.info[7].layers[0]
        with pytest.raises(BackendError, match=r"descriptor 7 .*size beyond") as ei:
            be.run(pixels_for(quant_artifact))
        assert layer in str(ei.value) and not isinstance(ei.value, AcceleratorTimeout)
    finally:
        be.close()


def test_wrong_hardware_fingerprint(emu_lib: Path, quant_artifact: str, tmp_path: Path) -> None:
    hw = dict(load_artifact(quant_artifact).manifest["hardware"])
    other = rewrite_manifest(quant_artifact, str(tmp_path / "pa8.codenet"), hardware={**hw, "PA": 8, "LB_ROWS": 11})
    with pytest.raises(BackendError) as ei:
        EmulatorBackend(load_artifact(other), lib_path=emu_lib)
    msg = str(ei.value)
    for text in ("PA 8 (model) vs 16 (engine)", "LB_ROWS", "Re-export", "make -C hls_src lib", "codenet_params.h"):
        assert text in msg, text
    # register offsets are the IP's interface (checked against the .hwh), not a property of the model
    moved = rewrite_manifest(quant_artifact, str(tmp_path / "regs.codenet"), hardware={**hw, "REG_CYCLES": 0x50})
    assert hardware_mismatches(load_artifact(moved).manifest["hardware"], P) == []
    EmulatorBackend(load_artifact(moved), lib_path=emu_lib).close()
    bare = rewrite_manifest(quant_artifact, str(tmp_path / "nohw.codenet"), hardware=None)
    with pytest.raises(ArtifactError, match="records no accelerator parameters"):
        EmulatorBackend(load_artifact(bare), lib_path=emu_lib)


def test_missing_library(quant_artifact: str, tmp_path: Path) -> None:
    with pytest.raises(BackendError, match=r"make -C hls_src lib") as ei:
        EmulatorBackend(load_artifact(quant_artifact), lib_path=tmp_path / "nope" / "libcodenet_emu.so")
    assert "does not exist" in str(ei.value)
    with pytest.raises(BackendError, match=r"make -C hls_src lib"):
        Detector.load(quant_artifact, backend="emulator", lib_path=str(tmp_path / "missing.so"))


def test_emulated_ip_registers(emu_lib: Path) -> None:
    plat = EmulatedPlatform(emulib.load_library(emu_lib))
    ip = plat.ip
    assert ip.read(P.REG_AP_CTRL) == AP_IDLE
    with pytest.raises(ValueError, match="outside the AXI-Lite map"):
        ip.read(0x100)
    # a start with unmapped addresses ends with the host-emulation address status, ap_done once (COR)
    ip.write(P.REG_N_LAYERS, 1)
    ip.write(P.REG_AP_CTRL, AP_START)
    assert ip.join(10)  # the run happens in a worker; the register write returned at once
    assert ip.read(P.REG_STATUS) == P.STATUS_BAD_ADDR
    ctrl = ip.read(P.REG_AP_CTRL)
    assert ctrl & AP_DONE and ctrl & AP_IDLE and not ctrl & AP_START
    assert not ip.read(P.REG_AP_CTRL) & AP_DONE
    buf = plat.allocate((100,), np.uint8)
    assert buf.physical_address % 4096 == 0 and plat.memory.find(buf.physical_address + 99) == (buf, 99)
    plat.free(buf)
    assert plat.memory.find(buf.physical_address) is None


def test_driver_refuses_float_model(emu_lib: Path, quant_artifact: str, tmp_path: Path) -> None:
    flt = rewrite_manifest(quant_artifact, str(tmp_path / "f.codenet"), quantized=False)
    with pytest.raises(BackendError, match="float model"):
        EmulatorBackend(load_artifact(flt), lib_path=emu_lib)
    plat = EmulatedPlatform(emulib.load_library(emu_lib))
    with pytest.raises(BackendError, match="float model"):
        CodenetAccelerator(plat, load_artifact(flt))


# --------------------------------------------------------------------------- fpga backend without a board
def test_fpga_without_pynq(quant_artifact: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynq", None)  # import pynq -> ModuleNotFoundError
    art = load_artifact(quant_artifact)
    with pytest.raises(BackendError) as ei:
        FpgaBackend(art)
    msg = str(ei.value)
    assert "pynq is not installed" in msg and "backend='cpu'" in msg and "bit-exactly" in msg
    ok, why = fpga_available(art)
    assert ok is False and why == "no PYNQ board: pynq is not installed"
    name, reason = explain_auto(art)
    assert name == "cpu" and "pynq is not installed" in reason
    with Detector.load(quant_artifact, backend="auto") as det:
        assert det.backend_name == "cpu"
        assert det.backend_reason.startswith("CPU fallback") and "pynq is not installed" in det.backend_reason
    # options meant for the accelerator do not break the fallback
    with Detector.load(quant_artifact, backend="auto", overlay="nowhere/codenet.bit", timeout_s=1.0) as det:
        assert det.backend_name == "cpu"


class FakePynq(types.ModuleType):
    """Just enough of pynq (Overlay, DefaultIP with bindto, allocate, Device) over an emulated platform."""

    def __init__(self, platform: EmulatedPlatform, vlnv: str = IP_VLNV, devices=("fake-zu3eg",),
                 registers: Optional[Dict[str, Any]] = None) -> None:
        super().__init__("pynq")
        self.platform = platform
        self.bound: Dict[str, type] = {}
        self.loaded = []
        outer = self
        regs = registers if registers is not None else fixture_registers()

        class DefaultIP:
            def __init_subclass__(cls, **kw: Any) -> None:
                super().__init_subclass__(**kw)
                for v in getattr(cls, "bindto", []):
                    outer.bound[v] = cls

            def __init__(self, description: Dict[str, Any]) -> None:
                self.description = description

            def read(self, offset: int = 0) -> int:
                return outer.platform.ip.read(offset)

            def write(self, offset: int, value: int) -> None:
                outer.platform.ip.write(offset, value)

        class Overlay:
            def __init__(self, path: str, download: bool = True) -> None:
                outer.loaded.append(path)
                self.ip_dict = {"codenet_top_0": {"type": vlnv, "phys_addr": 0xA000_0000, "registers": regs},
                                "zynq_ultra_ps_e_0": {"type": "xilinx.com:ip:zynq_ultra_ps_e:3.4"}}

            def __getattr__(self, name: str) -> Any:
                if name in self.__dict__.get("ip_dict", {}):
                    desc = self.ip_dict[name]
                    return outer.bound.get(desc["type"], DefaultIP)(desc)
                raise AttributeError(name)

        self.DefaultIP = DefaultIP
        self.Overlay = Overlay
        self.Device = types.SimpleNamespace(devices=list(devices))

    def allocate(self, shape: Any, dtype: Any = np.uint8, **kw: Any) -> np.ndarray:
        return self.platform.allocate(shape, dtype)


@pytest.fixture
def overlay_dir(tmp_path: Path) -> Path:
    (tmp_path / "codenet.bit").write_bytes(b"bit")
    (tmp_path / "codenet.hwh").write_text("<hwh/>")
    return tmp_path


def test_fpga_backend_over_fake_pynq(emu_lib: Path, quant_artifact: str, cpu: CpuBackend,
                                     overlay_dir: Path) -> None:
    fake = FakePynq(EmulatedPlatform(emulib.load_library(emu_lib)))
    art = load_artifact(quant_artifact)
    ok, why = fpga_available(art, overlay=overlay_dir, pynq_module=fake)
    assert ok and str(overlay_dir / "codenet.bit") in why
    be = FpgaBackend(art, overlay=overlay_dir / "codenet.bit", pynq_module=fake)
    try:
        assert fake.loaded == [str(overlay_dir / "codenet.bit")]
        assert type(be.platform.ip).__name__ == "CodenetTopIP" and type(be.platform.ip).bindto == [IP_VLNV]
        assert be.platform.ip_name == "codenet_top_0" and "codenet_top_0" in be.describe()
        x = pixels_for(quant_artifact, 2, (300, 200))
        got, ref = be.run(x), cpu.run(x)
        for role in ref:
            np.testing.assert_array_equal(got[role], ref[role])
        assert fake.platform.ip.starts == 1
    finally:
        be.close()
    assert all(b.freed for b in fake.platform.memory.buffers) or not fake.platform.memory.buffers
    assert fpga_available(art, overlay=overlay_dir, pynq_module=FakePynq(fake.platform, devices=()))[1] == \
        "no PYNQ board: pynq found no FPGA device"


def test_fpga_overlay_errors(emu_lib: Path, quant_artifact: str, overlay_dir: Path, tmp_path: Path) -> None:
    art = load_artifact(quant_artifact)
    plat = EmulatedPlatform(emulib.load_library(emu_lib))
    with pytest.raises(BackendError, match=r"no CoDeNet overlay .*overlays/build.sh .*overlay=") as ei:
        find_overlay(tmp_path / "nothing_here")
    assert "CODENET_OVERLAY" in str(ei.value)
    (overlay_dir / "codenet.hwh").unlink()
    with pytest.raises(BackendError, match=r"codenet\.hwh is missing"):
        FpgaBackend(art, overlay=overlay_dir, pynq_module=FakePynq(plat))
    ok, why = fpga_available(art, overlay=overlay_dir, pynq_module=FakePynq(plat))
    assert not ok and "codenet.hwh is missing" in why
    (overlay_dir / "codenet.hwh").write_text("<hwh/>")
    with pytest.raises(BackendError, match=r"no CoDeNet IP \(VLNV \*:hls:codenet_top:\*\)"):
        FpgaBackend(art, overlay=overlay_dir, pynq_module=FakePynq(plat, vlnv="xilinx.com:hls:other:1.0"))
    bad_regs = fixture_registers()
    bad_regs["desc_1"] = dict(bad_regs["desc_1"], address_offset=P.REG_DESC + 8)
    with pytest.raises(BackendError, match=r"register map differs .*desc_1 is at 0x18 in the \.hwh, at 0x10"):
        FpgaBackend(art, overlay=overlay_dir, pynq_module=FakePynq(plat, registers=bad_regs))
    hw = dict(art.manifest["hardware"])
    other = load_artifact(rewrite_manifest(quant_artifact, str(tmp_path / "pe8.codenet"), hardware={**hw, "PE": 8}))
    ok, why = fpga_available(other, overlay=overlay_dir, pynq_module=FakePynq(plat))
    assert not ok and "other accelerator parameters" in why and "PE" in why
    with pytest.raises(BackendError, match=r"PE 8 \(model\) vs 16 \(engine\)"):
        FpgaBackend(other, overlay=overlay_dir, pynq_module=FakePynq(plat))


def test_fpga_reads_registers_from_hwh(emu_lib: Path, quant_artifact: str, overlay_dir: Path) -> None:
    """An ip_dict without registers (older pynq): the driver reads them from the .hwh beside the .bit."""
    art = load_artifact(quant_artifact)
    plat = EmulatedPlatform(emulib.load_library(emu_lib))
    with pytest.raises(BackendError, match=r"codenet\.hwh: holds no register description .*overlays/build\.sh"):
        FpgaBackend(art, overlay=overlay_dir, pynq_module=FakePynq(plat, registers={}))
    (overlay_dir / "codenet.hwh").write_text(HWH.read_text())
    be = FpgaBackend(art, overlay=overlay_dir, pynq_module=FakePynq(plat, registers={}))
    try:
        assert be.platform.regs["CYCLES"] == 0x58 and "codenet.hwh" in be.platform.regs.source
        assert be.run(pixels_for(quant_artifact))["hm"].shape[0] == 5
    finally:
        be.close()
