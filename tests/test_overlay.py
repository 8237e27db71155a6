"""CodenetOverlay over a pynq-like fake whose IP is the emulated engine: the PYNQ idiom end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from test_backends_emulator import FakePynq

from codenet_pynq import Detector
from codenet_pynq.accel import emulib
from codenet_pynq.backends.fpga import IP_VLNV
from codenet_pynq.overlay import overlay_class
from codenet_pynq.platform import EmulatedPlatform
from codenet_pynq.selftest import synthetic_images


def test_codenet_overlay_detector_reuses_the_loaded_overlay(emu_lib: Path, quant_artifact: str, tmp_path: Path) -> None:
    fake = FakePynq(EmulatedPlatform(emulib.load_library(emu_lib)))
    bit = tmp_path / "codenet.bit"
    bit.write_bytes(b"bit")
    (tmp_path / "codenet.hwh").write_text("<hwh/>")
    ol = overlay_class(fake)(bit)
    assert fake.loaded == [str(bit)] and IP_VLNV in fake.bound  # driver registered before the overlay was parsed
    assert type(ol.codenet_top_0).__name__ == "CodenetTopIP"
    img = synthetic_images(1)[0][1]
    with ol.detector(quant_artifact) as det, Detector.load(quant_artifact, backend="cpu") as cpu:
        assert fake.loaded == [str(bit)]  # the detector reuses this overlay: no second download
        got, ref = det.detect(img), cpu.detect(img)
        assert det.backend_name == "fpga" and fake.platform.ip.starts == 1
    for k in ("boxes", "scores", "labels"):
        np.testing.assert_array_equal(getattr(got, k), getattr(ref, k))
