"""Bad-input suite, group ``driver``: faults of the accelerator as the driver meets them -- a hung
engine (timeout, the process stays usable), a done without a finished run, an engine that fails,
a missing overlay.  Registered into tests/bad_input_cases.py's table by import.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from bad_input_cases import case, refused


def _backend(engine, timeout_s: float, **kw):
    from codenet_pynq.accel import emulib
    from codenet_pynq.artifact import default_model_path, load_artifact
    from codenet_pynq.backends.emulator import EmulatorBackend
    from codenet_pynq.platform import EmulatedPlatform

    lib = emulib.load_library()
    plat = EmulatedPlatform(lib, engine=engine(lib) if engine else None, **kw)
    return EmulatorBackend(load_artifact(default_model_path()), timeout_s=timeout_s, platform=plat)


def _pixels(be) -> np.ndarray:
    return np.zeros(be.accelerator.compiled.input.shape, np.uint8)


@case("driver")
def hung_accelerator_times_out_and_recovers(d: Path):
    from codenet_pynq.errors import AcceleratorTimeout

    calls = []

    def slow(lib):
        def run(desc, n, wgt, act):
            calls.append(1)
            time.sleep(2.0 if len(calls) == 1 else 0.0)
            return lib.run_ports(desc, n, wgt, act)
        return run

    be = _backend(slow, timeout_s=0.5)
    try:
        t0 = time.perf_counter()
        try:
            be.run(_pixels(be))
            raise AssertionError("a 2 s engine run did not time out at 0.5 s")
        except AcceleratorTimeout as e:
            assert "timeout" in str(e).lower() or "did not finish" in str(e).lower(), str(e)
        assert time.perf_counter() - t0 < 1.5
        time.sleep(1.8)
        be.run(_pixels(be))  # usable again after the abandoned run finished
    finally:
        be.close()


@case("driver")
def done_without_a_finished_run(d: Path):
    be = _backend(None, timeout_s=5.0, fault="done")
    try:
        refused(lambda: be.run(_pixels(be)), "without a finished run")
    finally:
        be.close()


@case("driver")
def engine_that_fails(d: Path):
    def failing(lib):
        def run(desc, n, wgt, act):
            raise RuntimeError("engine exploded")
        return run

    be = _backend(failing, timeout_s=5.0)
    try:
        refused(lambda: be.run(_pixels(be)))
    finally:
        be.close()


@case("driver")
def missing_overlay(d: Path):
    from codenet_pynq.backends.fpga import find_overlay

    refused(lambda: find_overlay(str(d / "nope.bit")), "nope.bit")
