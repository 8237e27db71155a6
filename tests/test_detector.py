"""Detector on the CPU backend with the tiny float artifact."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import make_image, write_png

from codenet_pynq.artifact import load_artifact
from codenet_pynq.decode import decode
from codenet_pynq.detections import TIMING_STAGES, Detections
from codenet_pynq.detector import Detector, explain_auto
from codenet_pynq.errors import ArtifactError, BackendError, CodenetError, ImageReadError
from codenet_pynq.transforms import boxes_to_image, preprocess


@pytest.fixture(scope="module")
def det(tiny_artifact: str):
    d = Detector.load(tiny_artifact, "cpu")
    yield d
    d.close()


def _inside(dets: Detections, h: int, w: int) -> None:
    b = dets.boxes
    assert dets.image_size == (h, w)
    assert np.isfinite(b).all()
    assert (b[:, 0] >= 0).all() and (b[:, 2] <= w).all() and (b[:, 1] >= 0).all() and (b[:, 3] <= h).all()


def test_load_and_describe(det: Detector, tiny_artifact: str) -> None:
    assert det.backend_name == "cpu" and det.backend_reason == "requested"
    assert det.class_names == ["circle", "square", "triangle", "star", "cross"]
    assert det.input_size == 64
    assert "cpu" in det.describe() and "float graph" in det.describe()
    info = det.info()
    assert info["input_size"] == 64 and info["quantized"] is False and "cpu" in info["backend"]
    heads = det.heads(make_image())
    assert heads["hm"].shape == (5, 16, 16) and heads["wh"].shape == (2, 16, 16)
    assert heads["reg"].shape == (2, 16, 16) and heads["hm"].dtype == np.float32


def test_detect_array_and_path(det: Detector, tmp_path: Path) -> None:
    img = make_image(120, 160)
    a = det.detect(img)
    b = det.detect(write_png(tmp_path / "x.png", img))
    c = det.detect(str(tmp_path / "x.png"))
    assert len(a) > 0, "the tiny test model should find something at the default threshold"
    for other in (b, c):
        np.testing.assert_array_equal(a.boxes, other.boxes)
        np.testing.assert_array_equal(a.scores, other.scores)
        assert a.class_names == other.class_names
    assert a.boxes.dtype == np.float32 and a.labels.dtype == np.int64
    assert (np.diff(a.scores) <= 0).all() and (a.scores >= det.score_threshold).all()
    assert len(a) <= det.top_k
    _inside(a, 120, 160)


def test_timings(det: Detector) -> None:
    dets = det.detect(make_image())
    assert set(TIMING_STAGES) <= set(dets.timings)
    assert all(v >= 0 for v in dets.timings.values())
    parts = sum(dets.timings[s] for s in ("preprocess", "inference", "decode"))
    assert dets.timings["total"] == pytest.approx(parts, rel=1e-6, abs=1e-3)
    assert dets.fps is not None and dets.fps > 0


@pytest.mark.parametrize("h, w", [(100, 300), (300, 100), (64, 64), (1, 1), (2, 500), (3000, 4000)])
def test_sizes_map_inside_image(det: Detector, h: int, w: int) -> None:
    img = make_image(h, w) if min(h, w) >= 8 else np.full((h, w, 3), 128, np.uint8)
    _inside(det.detect(img, score_threshold=0.0), h, w)


def test_threshold_and_top_k(det: Detector) -> None:
    img = make_image(seed=3)
    all_ = det.detect(img, score_threshold=0.0, top_k=1000)
    assert len(all_) > 3
    top = det.detect(img, score_threshold=0.0, top_k=3)
    assert len(top) == 3
    np.testing.assert_array_equal(top.scores, all_.scores[:3])
    thr = float(all_.scores[len(all_) // 2])
    assert (det.detect(img, score_threshold=thr, top_k=1000).scores >= np.float32(thr)).all()


def test_image_kinds(det: Detector, tmp_path: Path) -> None:
    img = make_image(90, 110)
    ref = det.detect(img)
    gray = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    _inside(det.detect(gray), 90, 110)  # 2-D array
    _inside(det.detect(write_png(tmp_path / "g.png", gray)), 90, 110)
    # opaque RGBA: identical to the colour image
    bgra = np.dstack([img, np.full((90, 110), 255, np.uint8)])
    r = det.detect(write_png(tmp_path / "a.png", bgra))
    np.testing.assert_array_equal(r.boxes, ref.boxes)
    # 16-bit: the 8 most significant bits are used
    r16 = det.detect(write_png(tmp_path / "d.png", img.astype(np.uint16) * 257))
    np.testing.assert_array_equal(r16.boxes, ref.boxes)
    np.testing.assert_array_equal(det.detect(img.astype(np.uint16) * 257).scores, ref.scores)
    # a large JPEG file
    big = cv2.resize(img, (4000, 3000), interpolation=cv2.INTER_NEAREST)
    ok, enc = cv2.imencode(".jpg", big)
    (tmp_path / "big.jpg").write_bytes(enc.tobytes())
    _inside(det.detect(tmp_path / "big.jpg"), 3000, 4000)


def test_bad_images(det: Detector, tmp_path: Path) -> None:
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    with pytest.raises(ImageReadError, match="broken.jpg"):
        det.detect(bad)
    with pytest.raises(ImageReadError, match="missing.png"):
        det.detect(tmp_path / "missing.png")
    with pytest.raises(ValueError):
        det.detect(np.zeros((0, 5, 3), np.uint8))


def test_matches_manual_onnx_and_decode(det: Detector, tiny_artifact: str) -> None:
    import onnxruntime as ort

    art = load_artifact(tiny_artifact)
    sess = ort.InferenceSession(art.graph("float"), providers=["CPUExecutionProvider"])
    img = make_image(140, 200, seed=5)
    pixels, meta = preprocess(img, art.input_size)
    hm, wh, reg = sess.run(["hm", "wh", "reg"], {sess.get_inputs()[0].name: pixels[None]})
    dec = art.manifest["decode"]
    boxes, scores, labels = decode(hm[0], wh[0], reg[0], k=dec["top_k"], score_threshold=dec["score_threshold"])
    boxes = boxes_to_image(boxes * art.down_ratio, meta)
    got = det.detect(img)
    np.testing.assert_allclose(got.boxes, boxes, rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(got.scores, scores, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(got.labels, labels)
    assert got.class_names == [art.class_names[i] for i in labels]


def test_auto_backend_on_float_model(tiny_artifact: str) -> None:
    name, why = explain_auto(load_artifact(tiny_artifact))
    assert name == "cpu" and "float model" in why
    with Detector.load(tiny_artifact) as d:
        assert d.backend_name == "cpu"
        assert "float model" in d.backend_reason and "float model" in d.describe()


def test_backend_errors(tiny_artifact: str) -> None:
    with pytest.raises(BackendError, match="unknown backend 'gpu'"):
        Detector.load(tiny_artifact, "gpu")
    # the accelerator backends need a quantized model (or are not installed): a clear error either way
    for name in ("emulator", "fpga"):
        with pytest.raises(CodenetError):
            Detector.load(tiny_artifact, name)


def test_no_default_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("codenet_pynq.detector.default_model_path", lambda: None)
    with pytest.raises(ArtifactError, match=r"\.codenet"):
        Detector.load()


def test_runtime_does_not_import_torch(tiny_artifact: str) -> None:
    code = ("import sys, numpy as np\n"
            "from codenet_pynq.detector import Detector\n"
            "import codenet_pynq.cli, codenet_pynq.visualize\n"
            f"d = Detector.load({tiny_artifact!r}, 'cpu')\n"
            "d.detect(np.zeros((30, 40, 3), np.uint8))\n"
            "bad = [m for m in sys.modules if m == 'torch' or m.startswith('torch.')]\n"
            "assert not bad, bad\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


def test_bad_image_arrays_are_clear_codenet_errors():
    """A bad array given to detect() is an ImageReadError saying what to pass, not a bare ValueError."""
    from codenet_pynq import Detector
    from codenet_pynq.artifact import default_model_path
    from codenet_pynq.errors import ImageReadError

    det = Detector.load(default_model_path(), backend="cpu")
    for bad, words in ((np.zeros((4, 4, 7), np.uint8), "layout"), (np.zeros((0, 5, 3), np.uint8), "no pixels"),
                       (np.zeros((4, 4, 3), np.complex64), "pixel type")):
        with pytest.raises(ImageReadError, match=words):
            det.detect(bad)
