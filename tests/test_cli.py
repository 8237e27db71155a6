"""The codenet-pynq command line: detect, info, benchmark, help texts and error handling."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import make_image, write_png

from codenet_pynq import __version__
from codenet_pynq.cli import main


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    """A folder with 3 good images (one in a sub-folder), a corrupt one, a truncated one and non-images."""
    d = tmp_path / "photos"
    (d / "sub").mkdir(parents=True)
    write_png(d / "a.png", make_image(120, 160, seed=1))
    write_png(d / "b.jpg", make_image(200, 90, seed=2))
    write_png(d / "sub" / "c.png", make_image(64, 64, seed=3))
    (d / "corrupt.jpg").write_bytes(b"<html>404 not found</html>")
    good = (d / "a.png").read_bytes()
    (d / "cut.png").write_bytes(good[: len(good) // 2])
    (d / "notes.txt").write_text("not an image")
    (d / ".hidden.png").write_bytes(b"junk")
    return d


def run(capsys: pytest.CaptureFixture, *argv: str):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _no_temp_files(folder: Path) -> None:
    assert not [p for p in folder.rglob("*") if p.name.startswith(".") or p.suffix == ".tmp"]


def test_detect_folder(capsys, tiny_artifact: str, photos: Path, tmp_path: Path) -> None:
    out_dir = tmp_path / "out"
    code, out, err = run(capsys, "detect", tiny_artifact, photos, "--out", out_dir)
    assert code == 4, err  # some images failed, the others are done
    assert "2 of 4 image(s) failed" in err
    # warnings name each bad file and say why
    assert "corrupt.jpg" in err and "HTML" in err
    assert "cut.png" in err and "truncated" in err
    assert "notes.txt" in err and "not images" in err
    assert "Traceback" not in err
    # one line per good image and a summary
    assert "a.png" in out and "b.jpg" in out and "sub" not in out  # not recursive
    assert "done: 2 image(s)" in out and "fps" in out and "inference" in out
    # annotated copies with the original sizes
    a = cv2.imread(str(out_dir / "a.png"))
    assert a.shape == (120, 160, 3)
    assert cv2.imread(str(out_dir / "b.jpg")).shape == (200, 90, 3)
    assert not (a == cv2.imread(str(photos / "a.png"))).all()  # boxes were drawn
    # the JSON
    report = json.loads((out_dir / "detections.json").read_text())
    assert [Path(r["file"]).name for r in report["images"]] == ["a.png", "b.jpg"]
    first = report["images"][0]
    assert first["width"] == 160 and first["height"] == 120 and first["image_size"] == [120, 160]
    assert first["output"] == str(out_dir / "a.png")
    assert set(first["timings"]) >= {"read", "preprocess", "inference", "decode", "total"}
    dets = first["detections"]
    assert dets and set(dets[0]) == {"box", "score", "label", "class_name"}
    assert all(0 <= d["box"][0] <= d["box"][2] <= 160 for d in dets)
    assert all(d["score"] >= 0.3 for d in dets)
    skipped = {Path(s["file"]).name: s["reason"] for s in report["skipped"]}
    assert set(skipped) == {"notes.txt"}
    failed = {Path(f["file"]).name: f for f in report["failures"]}
    assert set(failed) == {"corrupt.jpg", "cut.png"} and {f["stage"] for f in failed.values()} == {"read"}
    assert "truncated" in failed["cut.png"]["reason"] and failed["cut.png"]["error"] == "ImageReadError"
    summary = report["summary"]
    assert summary["images"] == 2 and summary["skipped"] == 1 and summary["failed"] == 2
    assert report["finished"]
    assert summary["detections"] == sum(len(r["detections"]) for r in report["images"])
    assert summary["fps"] > 0 and set(summary["mean_ms"]) >= {"preprocess", "inference", "decode", "total"}
    assert report["backend_name"] == "cpu" and report["score_threshold"] == 0.3 and not report["interrupted"]
    _no_temp_files(out_dir)


def test_detect_recursive_options(capsys, tiny_artifact: str, photos: Path, tmp_path: Path) -> None:
    js = tmp_path / "res.json"
    code, out, err = run(capsys, "detect", "--model", tiny_artifact, photos, "-r", "--no-images", "--json", js,
                         "--score-threshold", "0.9", "--top-k", "2", "-q", "--out", tmp_path / "never")
    assert code == 4, err  # corrupt.jpg and cut.png failed
    assert not (tmp_path / "never").exists()  # --no-images with --json: nothing else written
    assert "[1/" not in out and "done: 3 image(s)" in out  # quiet: summary only
    report = json.loads(js.read_text())
    names = [Path(r["file"]).as_posix() for r in report["images"]]
    assert names[-1].endswith("sub/c.png") and all(r["output"] is None for r in report["images"])
    assert all(len(r["detections"]) <= 2 and all(d["score"] >= 0.9 for d in r["detections"])
               for r in report["images"])
    assert report["top_k"] == 2 and report["score_threshold"] == 0.9


def test_detect_files_same_name_and_in_place(capsys, tiny_artifact: str, tmp_path: Path) -> None:
    for i, sub in enumerate(("x", "y")):
        (tmp_path / sub).mkdir()
        write_png(tmp_path / sub / "img.png", make_image(seed=i))
    original = (tmp_path / "x" / "img.png").read_bytes()
    code, out, err = run(capsys, "detect", tiny_artifact, tmp_path / "x" / "img.png", tmp_path / "y" / "img.png",
                         "--out", tmp_path / "x")
    assert code == 0, err
    # the input is never overwritten, and same-named inputs get distinct outputs
    assert (tmp_path / "x" / "img.png").read_bytes() == original
    report = json.loads((tmp_path / "x" / "detections.json").read_text())
    outputs = [Path(r["output"]).name for r in report["images"]]
    assert len(set(outputs)) == 2 and "img.png" not in outputs


def test_detect_default_model(capsys, tiny_artifact: str, photos: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr("codenet_pynq.artifact.default_model_path", lambda: tiny_artifact)
    code, out, err = run(capsys, "detect", photos / "a.png", "--out", tmp_path / "o")
    assert code == 0, err
    assert (tmp_path / "o" / "a.png").is_file()


def test_no_default_model(capsys, photos: Path, monkeypatch) -> None:
    monkeypatch.setattr("codenet_pynq.artifact.default_model_path", lambda: None)
    for argv in (("detect", photos / "a.png"), ("info",), ("benchmark",)):
        code, out, err = run(capsys, *argv)
        assert code == 2
        assert "no default model is installed" in err and ".codenet" in err and "Traceback" not in err


def test_detect_all_bad(capsys, tiny_artifact: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "one.jpg").write_bytes(b"garbage")
    (bad / "two.png").write_bytes(b"")
    code, out, err = run(capsys, "detect", tiny_artifact, bad, "--out", tmp_path / "out")
    assert code == 1
    assert "one.jpg" in err and "two.png" in err and "empty" in err
    assert "none of the 2 input image(s) could be processed" in err
    report = json.loads((tmp_path / "out" / "detections.json").read_text())
    assert report["images"] == [] and len(report["failures"]) == 2 and report["skipped"] == []


def test_detect_nothing_to_do(capsys, tiny_artifact: str, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    code, out, err = run(capsys, "detect", tiny_artifact, empty, tmp_path / "missing.jpg")
    assert code == 1
    assert "no image files found" in err and "missing.jpg" in err and "no such file" in err
    assert "no image to process" in err


def test_detect_usage_errors(capsys, tiny_artifact: str, photos: Path) -> None:
    code, out, err = run(capsys, "detect", tiny_artifact)
    assert code == 2 and "no INPUT given" in err
    code, out, err = run(capsys, "detect", "--model", tiny_artifact, tiny_artifact, photos)
    assert code == 2 and "two models" in err
    code, out, err = run(capsys, "detect", photos, "--score-threshold", "1.5")
    assert code == 2 and "between 0 and 1" in err
    code, out, err = run(capsys, "detect", photos, "--top-k", "0")
    assert code == 2 and "at least 1" in err
    code, out, err = run(capsys, "detect", photos, "--backend", "gpu")
    assert code == 2 and "invalid choice" in err
    code, out, err = run(capsys)
    assert code == 2 and "detect" in err


def test_model_errors(capsys, tiny_copy: str, photos: Path, tmp_path: Path) -> None:
    missing = tmp_path / "nope.codenet"
    code, out, err = run(capsys, "detect", missing, photos)
    assert code == 2 and str(missing) in err and "no such file" in err and "Traceback" not in err
    # tamper with a member but keep the manifest
    import zipfile

    with zipfile.ZipFile(tiny_copy) as z:
        members = {n: z.read(n) for n in z.namelist()}
    members["model_float.onnx"] = members["model_float.onnx"][:-1] + bytes([members["model_float.onnx"][-1] ^ 1])
    with zipfile.ZipFile(tiny_copy, "w") as z:
        for n, data in members.items():
            z.writestr(n, data)
    for argv in (("detect", tiny_copy, photos), ("info", tiny_copy), ("benchmark", tiny_copy, "--runs", "1")):
        code, out, err = run(capsys, *argv)
        assert code == 2, argv
        assert tiny_copy in err and "checksum mismatch" in err and "Re-export" in err
        assert "Traceback" not in err
    code, out, err = run(capsys, "info", tiny_copy, "--debug")
    assert code == 2 and "Traceback" in err and "ArtifactError" in err


def test_backend_error(capsys, tiny_artifact: str, photos: Path) -> None:
    code, out, err = run(capsys, "detect", tiny_artifact, photos / "a.png", "--backend", "fpga", "--no-images",
                         "--json", photos.parent / "r.json")
    assert code == 2 and "error:" in err and "Traceback" not in err


def test_internal_error(capsys, tiny_artifact: str, monkeypatch) -> None:
    def boom(path):
        raise ZeroDivisionError("oops")

    monkeypatch.setattr("codenet_pynq.cli.model_info", boom)
    code, out, err = run(capsys, "info", tiny_artifact)
    assert code == 3 and "internal error" in err and "--debug" in err and "Traceback" not in err


def test_interrupt_keeps_partial_results(capsys, tiny_artifact: str, photos: Path, tmp_path: Path,
                                         monkeypatch) -> None:
    from codenet_pynq.detector import Detector

    real = Detector.detect
    calls = []

    def detect(self, image, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self, image, **kw)

    monkeypatch.setattr(Detector, "detect", detect)
    code, out, err = run(capsys, "detect", tiny_artifact, photos, "--out", tmp_path / "o")
    assert code == 130 and "interrupted" in err
    report = json.loads((tmp_path / "o" / "detections.json").read_text())
    assert report["interrupted"] and len(report["images"]) == 1


def test_info(capsys, tiny_artifact: str) -> None:
    code, out, err = run(capsys, "info", tiny_artifact)
    assert code == 0, err
    for text in ("circle, square, triangle, star, cross", "64 x 64", "deform_square_depthwise_hw", "0.5x",
                 "float32", "parameters", "MACs", "model_float.onnx", "verified", "coco_ap 0.123",
                 "auto backend", "float model"):
        assert text in out, text
    code, out, err = run(capsys, "info", "--model", tiny_artifact, "--json")
    assert code == 0, err
    info = json.loads(out)
    assert info["num_classes"] == 5 and info["input_size"] == 64 and info["quantized"] is False
    assert info["parameters"] > 1000 and info["macs"] > info["parameters"]
    assert info["file_bytes"] == Path(tiny_artifact).stat().st_size
    assert info["checksums_verified"] and info["files"][0]["name"] == "model_float.onnx"
    assert len(info["files"][0]["sha256"]) == 64
    assert info["metrics"] == {"coco_ap": 0.123, "voc_ap50": 0.456}
    assert info["auto_backend"]["backend"] == "cpu"


def test_benchmark(capsys, tiny_artifact: str, photos: Path, tmp_path: Path) -> None:
    js = tmp_path / "bench.json"
    code, out, err = run(capsys, "benchmark", tiny_artifact, "--runs", "2", "--warmup", "1", "--backend", "cpu",
                         "--json", js)
    assert code == 0, err
    for text in ("median", "mean", "p90", "preprocess", "inference", "decode", "total", "fps"):
        assert text in out, text
    report = json.loads(js.read_text())
    assert report["runs"] == 2 and report["warmup"] == 1 and report["backend_name"] == "cpu"
    assert set(report["stages_ms"]) == {"preprocess", "inference", "decode", "total"}
    assert len(report["samples_ms"]["total"]) == 2 and report["fps"]["median"] > 0
    source = report["image"]["source"]  # a shipped sample when there is one, else a synthetic picture
    assert "shapes_000" in source or source == "synthetic 640x480 test picture"
    code, out, err = run(capsys, "benchmark", tiny_artifact, "--runs", "2", "--warmup", "0", "--image",
                         photos / "a.png")
    assert code == 0 and "160x120" in out
    code, out, err = run(capsys, "benchmark", tiny_artifact, "--image", photos / "corrupt.jpg")
    assert code == 2 and "corrupt.jpg" in err
    code, out, err = run(capsys, "benchmark", tiny_artifact, "--runs", "0")
    assert code == 2 and "at least 1" in err


@pytest.mark.parametrize("argv", [(), ("detect",), ("info",), ("benchmark",)])
def test_help(capsys, argv) -> None:
    code, out, err = run(capsys, *argv, "--help")
    assert code == 0
    assert "usage:" in out and "examples:" in out and "codenet-pynq" in out
    if argv == ("detect",):
        assert ".codenet" in out and "--recursive" in out and "--no-images" in out


def test_python_m_and_version(tiny_artifact: str) -> None:
    r = subprocess.run([sys.executable, "-m", "codenet_pynq", "--version"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0 and __version__ in r.stdout
    code = ("import sys\n"
            "from codenet_pynq.cli import main\n"
            f"rc = main(['info', {tiny_artifact!r}])\n"
            "assert rc == 0, rc\n"
            "assert 'torch' not in sys.modules\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


def test_synthetic_image_is_deterministic() -> None:
    from codenet_pynq.cli import _synthetic_image

    a, b = _synthetic_image(), _synthetic_image()
    assert a.shape == (480, 640, 3) and a.dtype == np.uint8 and (a == b).all()


def test_info_quantized_manifest(capsys, tmp_path: Path) -> None:
    """info on a quantized artifact (a tiny real program; info does not run the graphs)."""
    from quant_fixtures import build_quant_artifact, rewrite_manifest

    from codenet_pynq.artifact import PROGRAM_JSON, PROGRAM_NPZ

    src = build_quant_artifact(str(tmp_path / "q0.codenet"))
    path = rewrite_manifest(
        src, str(tmp_path / "q.codenet"),
        model={"variant": "deform_square_depthwise_hw", "width": "1.0x"},
        program={"json": PROGRAM_JSON, "npz": PROGRAM_NPZ, "layers": 57}, hardware={"pe": 16, "pa": 8, "bits": "4/8"},
        quantization={"weights": "int4 symmetric", "activations": "u8/s8 per tensor",
                      "accumulators": [{"layer": "x", "bits": 20}]},
        stats={"parameters": 1000, "macs": 2_000_000, "float_bytes": 4000, "weight_bytes": 600})
    code, out, err = run(capsys, "info", path)
    assert code == 0, err
    for text in ("quantized", "int4 symmetric", "57 layers", "pe 16", "float32 3.91 KiB", "integer",
                 "600 B", "metrics       none", "auto backend  cpu", "3 member(s) verified"):
        assert text in out, text
    info = json.loads(run(capsys, "info", path, "--json")[1])
    assert info["quantized"] and info["program"]["layers"] == 57 and info["auto_backend"]["backend"] == "cpu"
