"""Driver faults (issue 14, "driver faults" group): timeout, busy accelerator, done without a run.

The emulated IP runs the engine in a worker thread started by ``ap_start``, so the driver's
``timeout_s`` holds for the emulator. A slow engine is injected (a callable with the signature
of ``EmuLibrary.run_ports``, wrapping the real one so that results stay checkable):

- a frame past ``timeout_s`` raises AcceleratorTimeout quickly; the abandoned run finishes in
  the background and the process stays usable: the next frame waits for it (within its own
  ``timeout_s``) and succeeds with exact outputs, or refuses with "accelerator busy";
- an ``ap_done`` without a finished run (no ``ap_vld`` on status/cycles, also when a stale
  ``ap_vld`` of an abandoned run is left in the IP) raises instead of returning stale outputs;
- two emulated IPs never run the engine at the same time (it has static state);
- an engine that raises ends the run with a status error, not a silent hang.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List

import numpy as np
import pytest
from conftest import make_image

from codenet_pynq.accel import emulib
from codenet_pynq.accel.params import load_params
from codenet_pynq.artifact import load_artifact
from codenet_pynq.backends.emulator import EmulatorBackend
from codenet_pynq.errors import AcceleratorTimeout, BackendError
from codenet_pynq.golden import run_program
from codenet_pynq.platform import AP_START, EmulatedPlatform
from codenet_pynq.transforms import preprocess

P = load_params()


class SlowEngine:
    """The real engine after ``delays[i]`` seconds on call i (0 once the list is used up); counts overlap."""

    def __init__(self, lib: Any, delays: List[float]) -> None:
        self.lib, self.delays = lib, list(delays)
        self.calls = self.active = self.max_active = 0
        self._lock = threading.Lock()

    def __call__(self, desc: np.ndarray, n_layers: int, wgt: np.ndarray, act: np.ndarray):
        with self._lock:
            delay = self.delays[self.calls] if self.calls < len(self.delays) else 0.0
            self.calls += 1
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            time.sleep(delay)
            return self.lib.run_ports(desc, n_layers, wgt, act)
        finally:
            with self._lock:
                self.active -= 1


def _backend(lib_path: Path, art: str, engine: Callable, timeout_s: float, **kw: Any) -> EmulatorBackend:
    lib = emulib.load_library(lib_path)
    plat = EmulatedPlatform(lib, engine=engine, **kw)
    return EmulatorBackend(load_artifact(art), timeout_s=timeout_s, platform=plat)


def _pixels(art: str, seed: int = 0) -> np.ndarray:
    return preprocess(make_image(120, 160, seed=seed), load_artifact(art).input_size)[0]


def _golden(art: str, x: np.ndarray) -> Dict[str, np.ndarray]:
    return run_program(load_artifact(art).program(), x)


def test_timeout_then_next_frame_waits_and_is_exact(emu_lib: Path, quant_artifact: str) -> None:
    engine = SlowEngine(emulib.load_library(emu_lib), [2.0])
    be = _backend(emu_lib, quant_artifact, engine, timeout_s=0.6)
    try:
        reads: List[int] = []
        real_read = be.ip.read
        be.ip.read = lambda off=0: reads.append(off) or real_read(off)
        x = _pixels(quant_artifact)
        t0 = time.perf_counter()
        with pytest.raises(AcceleratorTimeout) as ei:
            be.accelerator.run_int(x)
        dt = time.perf_counter() - t0
        assert 0.6 <= dt < 1.5, dt  # well before the 2 s run ends: the register write returned at once
        assert "0.6 s timeout" in str(ei.value) and "timeout_s" in str(ei.value)
        assert len(reads) < 700, "the wait must sleep between polls (1 ms at most between reads)"
        assert be.ip.busy  # the abandoned run goes on in the background
        # the next frame waits for it (about 1.4 s left) within its own timeout, then runs
        be.accelerator.timeout_s = 5.0
        got = be.accelerator.run_int(x)
        for role, want in _golden(quant_artifact, x).items():
            np.testing.assert_array_equal(got[role], want, err_msg=role)
        assert engine.calls == 2 and engine.max_active == 1 and be.ip.starts == 2
    finally:
        be.close()


def test_busy_refused_then_usable(emu_lib: Path, quant_artifact: str) -> None:
    engine = SlowEngine(emulib.load_library(emu_lib), [1.5])
    be = _backend(emu_lib, quant_artifact, engine, timeout_s=0.2)
    try:
        x = _pixels(quant_artifact, 1)
        with pytest.raises(AcceleratorTimeout):
            be.run(x)
        t0 = time.perf_counter()
        with pytest.raises(BackendError, match=r"accelerator busy: .*still busy with an earlier start") as ei:
            be.run(x)
        assert not isinstance(ei.value, AcceleratorTimeout) and time.perf_counter() - t0 < 1.2
        assert "larger timeout_s" in str(ei.value)
        assert be.ip.join(5)  # the abandoned run ends by itself
        got = be.accelerator.run_int(x)
        for role, want in _golden(quant_artifact, x).items():
            np.testing.assert_array_equal(got[role], want, err_msg=role)
    finally:
        be.close()


def test_done_without_a_run(emu_lib: Path, quant_artifact: str) -> None:
    be = EmulatorBackend(load_artifact(quant_artifact), lib_path=emu_lib, timeout_s=2.0, fault="done")
    try:
        x = _pixels(quant_artifact)
        with pytest.raises(BackendError, match=r"ap_done without a finished run: .*status and cycles") as ei:
            be.run(x)
        assert not isinstance(ei.value, AcceleratorTimeout) and "stale" in str(ei.value)
        be.ip.fault = None
        assert be.run(x)["hm"].shape[0] == 5
    finally:
        be.close()


def test_stale_valid_bits_of_an_abandoned_run_do_not_count(emu_lib: Path, quant_artifact: str) -> None:
    """The abandoned run ends and sets ap_vld; a later spurious done must still be caught."""
    engine = SlowEngine(emulib.load_library(emu_lib), [0.5])
    be = _backend(emu_lib, quant_artifact, engine, timeout_s=0.2)
    try:
        x = _pixels(quant_artifact)
        with pytest.raises(AcceleratorTimeout):
            be.run(x)
        assert be.ip.join(5)
        assert be.ip.regs[P.REG_STATUS_CTRL] & 1 and be.ip.regs[P.REG_CYCLES_CTRL] & 1
        be.ip.fault = "done"
        with pytest.raises(BackendError, match="ap_done without a finished run"):
            be.run(x)
    finally:
        be.close()


def test_engine_never_runs_twice_at_once(emu_lib: Path) -> None:
    lib = emulib.load_library(emu_lib)
    engine = SlowEngine(lib, [0.3, 0.3])
    plats = [EmulatedPlatform(lib, engine=engine) for _ in range(2)]
    for plat in plats:
        bufs = [plat.allocate((4096,), np.uint8) for _ in range(3)]
        for reg, b in zip((P.REG_DESC, P.REG_WGT, P.REG_ACT_RD, P.REG_ACT_WR), bufs + [bufs[2]]):
            plat.ip.write(reg, b.physical_address & 0xFFFFFFFF)
            plat.ip.write(reg + 4, b.physical_address >> 32)
    t0 = time.perf_counter()
    for plat in plats + plats[:1]:  # two IPs; a second start while the first IP runs changes nothing
        plat.ip.write(P.REG_AP_CTRL, AP_START)
    assert time.perf_counter() - t0 < 0.25  # the writes returned at once
    assert all(plat.ip.join(5) for plat in plats)
    assert time.perf_counter() - t0 >= 0.6  # one after the other
    assert engine.calls == 2 and engine.max_active == 1
    assert [plat.ip.starts for plat in plats] == [1, 1]


def test_failing_engine_ends_the_run(emu_lib: Path, quant_artifact: str) -> None:
    def broken(desc: np.ndarray, n_layers: int, wgt: np.ndarray, act: np.ndarray):
        raise RuntimeError("engine exploded")

    be = _backend(emu_lib, quant_artifact, broken, timeout_s=2.0)
    try:
        with pytest.raises(BackendError, match="exception in the emulated engine") as ei:
            be.run(_pixels(quant_artifact))
        assert not isinstance(ei.value, AcceleratorTimeout)
        assert isinstance(be.ip.worker_error, RuntimeError)
    finally:
        be.close()


def test_reset_discards_an_abandoned_run(emu_lib: Path, quant_artifact: str) -> None:
    engine = SlowEngine(emulib.load_library(emu_lib), [0.4])
    be = _backend(emu_lib, quant_artifact, engine, timeout_s=0.1)
    try:
        x = _pixels(quant_artifact)
        with pytest.raises(AcceleratorTimeout):
            be.run(x)
        be.ip.reset()  # a re-downloaded overlay: the running start is gone
        assert be.ip.join(5) and be.ip.regs[P.REG_STATUS_CTRL] == 0  # its results were discarded
        be.accelerator.timeout_s = 5.0
        assert be.run(x)["hm"].shape[0] == 5
    finally:
        be.close()
