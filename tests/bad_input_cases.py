"""The bad-input table: hostile inputs by class, each with what a correct runtime must do.

Groups: ``images``, ``artifacts``, ``manifest``, ``program``, ``cli`` (filled here) and
``descriptors``, ``driver`` (hooks: a module ``tests/bad_input_cases_<topic>.py`` is imported
automatically and adds its cases with ``@case("descriptors")``, see :func:`_load_extensions`). A case is a
function of a fresh folder that raises ``AssertionError`` when the runtime misbehaves in a way
its own checks can see (accepted a bad input, an unclear message, a lost result); it may return
``{"lost": n}`` for results lost. :func:`run_group` runs a group in this process, each case
under ``signal.alarm`` and records one line per case; ``tests/test_bad_inputs.py`` runs every
group in a subprocess (``python tests/bad_input_cases.py GROUP DIR``) so that a crash or a hang
is seen too, and prints the counts.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import resource
import signal
import stat
import sys
import time
import traceback
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import bad_input_files as B
import numpy as np

GROUPS = ("images", "artifacts", "manifest", "program", "descriptors", "driver", "cli")
#: Seconds one case may take before it counts as a hang.
CASE_LIMIT_S = 30
#: How much one case may raise the process's peak resident memory (a decoded bomb costs far more).
CASE_RSS_GROWTH_MIB = 256


@dataclass
class Case:
    group: str
    name: str
    fn: Callable[[Path], Optional[Dict[str, int]]]


CASES: List[Case] = []


def case(group: str, name: Optional[str] = None):
    """Decorator: add ``fn(folder)`` to ``group`` (any of GROUPS)."""
    assert group in GROUPS, group

    def add(fn):
        CASES.append(Case(group, name or fn.__name__, fn))
        return fn
    return add


class InternalError(AssertionError):
    """The runtime reported an internal error (a bug) where it should have given a clear error."""


class TracebackSeen(AssertionError):
    """A traceback reached the user."""


def refused(fn: Callable[[], Any], *words: str) -> str:
    """Run ``fn``; it must raise a CodenetError whose message holds every word (case-insensitive)."""
    from codenet_pynq.errors import CodenetError

    try:
        fn()
    except CodenetError as e:
        msg = str(e)
        missing = [w for w in words if w.lower() not in msg.lower()]
        assert not missing, f"message lacks {missing}: {msg}"
        assert "\n" not in msg.strip() and "Traceback" not in msg, msg
        return msg
    raise AssertionError("accepted: no error raised")


# ===================================================================================== images
def _read(p: Path, *words: str) -> str:
    from codenet_pynq.image_io import read_image

    return refused(lambda: read_image(p), str(p), *words)


@case("images")
def tiff_bomb(d: Path):
    _read(B.tiff_bomb(d / "bomb.tif", 12000, 12000), "144.0 megapixels", "max_pixels")


@case("images")
def png_bomb(d: Path):
    _read(B.png_bomb(d / "bomb.png", 12000, 12000), "megapixels")


@case("images")
def webp_bomb(d: Path):
    _read(B.webp_bomb(d / "bomb.webp"), "268.4 megapixels")


@case("images")
def gif_huge_screen(d: Path):
    _read(B.gif_huge_screen(d / "bomb.gif"), "megapixels")


@case("images")
def jpeg_huge_frame(d: Path):
    _read(B.jpeg_huge_sof(d / "bomb.jpg"), "megapixels")


@case("images")
def bomb_without_extension(d: Path):
    p = d / "photo"
    B.tiff_bomb(p, 12000, 12000)
    _read(p, "megapixels")


@case("images")
def dev_zero(d: Path):
    _read(Path("/dev/zero"), "character device")


@case("images")
def broken_symlink(d: Path):
    (d / "gone.jpg").symlink_to(d / "missing.jpg")
    _read(d / "gone.jpg", "broken symbolic link")


@case("images")
def folder_as_image(d: Path):
    (d / "x.png").mkdir()
    _read(d / "x.png", "folder")


@case("images")
def permission_denied(d: Path):
    from codenet_pynq.files import file_problem

    p = d / "secret.png"
    B.gif_image(p)
    os.chmod(p, 0)
    if os.geteuid() != 0:  # root reads anything: then check the wording from the errno alone
        _read(p, "permission denied")
    import errno

    assert "permission denied" in file_problem(p, PermissionError(errno.EACCES, "Permission denied"))


@case("images")
def empty_file(d: Path):
    (d / "e.jpg").write_bytes(b"")
    _read(d / "e.jpg", "empty")


@case("images")
def html_named_jpg(d: Path):
    (d / "page.jpg").write_bytes(b"<!DOCTYPE html><html>404</html>")
    _read(d / "page.jpg", "html")


@case("images")
def truncated_png(d: Path):
    import cv2

    data = cv2.imencode(".png", np.full((40, 40, 3), 7, np.uint8))[1].tobytes()
    (d / "cut.png").write_bytes(data[:len(data) // 2])
    _read(d / "cut.png", "truncated")


@case("images")
def unsupported_format_pfm(d: Path):
    import cv2

    (d / "x.pfm").write_bytes(cv2.imencode(".pfm", np.zeros((4, 4, 3), np.float32))[1].tobytes())
    _read(d / "x.pfm", "supported format")


@case("images")
def gif_single_and_in_folder(d: Path):
    """A GIF is read as a single file and found in a folder (both, consistently)."""
    from codenet_pynq.image_io import IMAGE_EXTENSIONS, list_images, read_image

    p = B.gif_image(d / "anim.gif")
    assert read_image(p).shape == (30, 40, 3)
    assert list_images(d) == [p] and ".gif" in IMAGE_EXTENSIONS


def _special_files(group: str, prefix: str, ext: str, check: Callable[..., str], too_big: int) -> None:
    """A named pipe, a link to /dev/zero, a symbolic link loop and a too large (sparse) file."""
    def loop(p: Path) -> None:
        other = p.with_name("other" + ext)
        p.symlink_to(other)
        other.symlink_to(p)

    def sparse(p: Path) -> None:
        with open(p, "wb") as f:
            f.truncate(too_big)  # no disk used

    for name, make, words in (("named_pipe", os.mkfifo, "named pipe"),
                              ("dev_zero_link", lambda p: p.symlink_to("/dev/zero"), "character device"),
                              ("symlink_loop", loop, "symbolic link loop"),
                              ("oversized_sparse", sparse, "MiB limit")):
        def run(d: Path, make=make, words=words) -> None:
            p = d / ("input" + ext)
            make(p)
            check(p, words)
        case(group, prefix + name)(run)


_special_files("images", "", ".jpg", _read, 600 * 2**20)


# ================================================================================== artifacts
_QUANT: Dict[str, Any] = {}


def quant(d: Path) -> Dict[str, Any]:
    """A tiny quantized artifact (built once per worker): {"path", "manifest", "files"}."""
    if not _QUANT:
        from quant_fixtures import build_quant_artifact

        from codenet_pynq.artifact import load_artifact

        p = build_quant_artifact(str(d.parent / "quant.codenet"))
        art = load_artifact(p)
        _QUANT.update(path=p, manifest={k: v for k, v in art.manifest.items() if k != "files"},
                      files=dict(art.files))
    return _QUANT


def _load(p: Path, *words: str) -> str:
    from codenet_pynq.artifact import load_artifact

    return refused(lambda: load_artifact(str(p)), str(p), *words)


def _float_manifest(**over: Any) -> Dict[str, Any]:
    m = {"format": "codenet-artifact", "version": 1, "model": {"variant": "k3"}, "class_names": ["a", "b"],
         "input_size": 64, "down_ratio": 4, "preprocess": {}, "quantized": False}
    m.update(over)
    return m


def _float_members() -> Dict[str, bytes]:
    from onnx_fixtures import tiny_graph

    return {"model_float.onnx": tiny_graph(64)}


@case("artifacts")
def zip_bomb_genuine(d: Path):
    p = B.zip_bomb_member(d / "bomb.codenet", _float_manifest(), "model_float.onnx", 64 << 20, {})
    _load(p, "zip bomb", "budget")


@case("artifacts")
def zip_bomb_just_under_absolute_cap(d: Path):
    from codenet_pynq.artifact import MAX_UNPACKED_BYTES

    p = B.zip_bomb_member(d / "bomb.codenet", _float_manifest(), "model_float.onnx", 1 << 20, {})
    B.patch_declared_size(p, "model_float.onnx", MAX_UNPACKED_BYTES - 4096)
    _load(p, "budget")


_special_files("artifacts", "model_", ".codenet", lambda p, w: _load(p, w), (1 << 30) + 1)


@case("artifacts")
def random_bytes(d: Path):
    (d / "r.codenet").write_bytes(np.random.default_rng(0).bytes(5000))
    _load(d / "r.codenet", "not a readable")


@case("artifacts")
def truncated_quant(d: Path):
    data = Path(quant(d)["path"]).read_bytes()
    (d / "t.codenet").write_bytes(data[:len(data) * 2 // 3])
    _load(d / "t.codenet", "corrupt")


@case("artifacts")
def too_many_members(d: Path):
    members = {f"m{i}.bin": b"x" for i in range(100)}
    _load(B.write_zip(d / "many.codenet", {**_float_members(), **members}, _float_manifest()), "members")


@case("artifacts")
def duplicate_member(d: Path):
    p = B.write_zip(d / "dup.codenet", _float_members(), _float_manifest())
    with zipfile.ZipFile(p, "a") as z, contextlib.redirect_stderr(io.StringIO()):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            z.writestr("model_float.onnx", b"other")
    _load(p, "same name")


@case("artifacts")
def bzip2_member(d: Path):
    _load(B.write_zip(d / "bz.codenet", _float_members(), _float_manifest(), compression=zipfile.ZIP_BZIP2),
          "compression method")


@case("artifacts")
def declared_size_disagrees(d: Path):
    p = B.write_zip(d / "s.codenet", _float_members(), _float_manifest())
    n = len(_float_members()["model_float.onnx"])
    B.patch_declared_size(p, "model_float.onnx", n + 1)
    _load(p, "model_float.onnx")


@case("artifacts")
def graph_not_onnx(d: Path):
    _load(B.write_zip(d / "g.codenet", {"model_float.onnx": b"\xff" * 64}, _float_manifest()),
          "model_float.onnx", "not a readable ONNX")


@case("artifacts")
def valid_quant_loads(d: Path):
    """The control: the untouched quantized artifact loads, with its program built at load."""
    from codenet_pynq.artifact import load_artifact

    art = load_artifact(quant(d)["path"])
    assert art.loaded_program is not None


# =================================================================================== manifest
def _quant_with(d: Path, change: Callable[[Dict[str, Any]], None] = lambda m: None,
                raw: Optional[Callable[[str], str]] = None, files: Optional[Dict[str, bytes]] = None) -> Path:
    """The quantized artifact with its manifest changed (checksums of the members kept true)."""
    q = quant(d)
    man = json.loads(json.dumps(q["manifest"]))
    change(man)
    members = dict(files or q["files"])
    man["files"] = {n: {"sha256": B.sha256(v), "size": len(v)} for n, v in members.items()}
    text = json.dumps(man)
    if raw is not None:
        text = raw(text)
        assert text != json.dumps(man), "the raw edit changed nothing"
    return B.write_zip(d / "edited.codenet", members, text.encode())


def _manifest_case(name: str, change=None, raw=None, words=()):
    @case("manifest", name)
    def run(d: Path):
        _load(_quant_with(d, change or (lambda m: None), raw), *words)
    return run


_manifest_case("input_size_disagrees_with_graph_and_program",
               lambda m: (m.update(input_size=96), m["model"].update(input_size=96)),
               words=("program.json", "input_size 96"))
_manifest_case("input_size_disagrees_with_model_section", lambda m: m.update(input_size=96),
               words=("model.input_size", "96"))


@case("manifest")
def input_size_disagrees_with_float_graph(d: Path):
    _load(B.write_zip(d / "f.codenet", _float_members(), _float_manifest(input_size=96)),
          "model_float.onnx", "input_size 96")
_manifest_case("top_k_abc", lambda m: m["decode"].update(top_k="abc"), words=("decode.top_k", "abc"))
_manifest_case("top_k_zero", lambda m: m["decode"].update(top_k=0), words=("decode.top_k",))
_manifest_case("top_k_bool", lambda m: m["decode"].update(top_k=True), words=("decode.top_k",))
_manifest_case("score_threshold_nan", raw=lambda t: t.replace('"score_threshold": 0.9', '"score_threshold": NaN'),
               words=("decode.score_threshold", "nan"))
_manifest_case("score_threshold_2", lambda m: m["decode"].update(score_threshold=2), words=("score_threshold",))
_manifest_case("down_ratio_nan", raw=lambda t: t.replace('"down_ratio": 4', '"down_ratio": NaN'),
               words=("down_ratio",))
_manifest_case("down_ratio_3", lambda m: m.update(down_ratio=3), words=("down_ratio", "3"))
_manifest_case("down_ratio_infinite", raw=lambda t: t.replace('"down_ratio": 4', '"down_ratio": 1e999'),
               words=("down_ratio",))
_manifest_case("version_5000_digits", raw=lambda t: t.replace('"version": 1', '"version": ' + "9" * 5000),
               words=("version", "5000 characters"))
_manifest_case("nesting_100k_deep", raw=lambda t: t.replace('"stats": {', '"deep": ' + B.nested_json(100_000)
                                                            + ', "stats": {'), words=("levels deep",))
_manifest_case("class_names_empty", lambda m: m.update(class_names=[]), words=("class_names",))
_manifest_case("class_names_numbers", lambda m: m.update(class_names=[1, 2, 3, 4, 5]), words=("class_names",))
_manifest_case("class_count_disagrees_with_program", lambda m: m.update(class_names=["a", "b", "c"]),
               words=("hm", "3 classes"))
_manifest_case("model_num_classes_disagrees", lambda m: m["model"].update(num_classes=7),
               words=("model.num_classes",))
_manifest_case("pixel_std_zero", lambda m: m["preprocess"].update(pixel_std=[0, 1, 1]),
               words=("preprocess.pixel_std[0]",))
_manifest_case("input_size_string", lambda m: m.update(input_size="64"), words=("input_size",))
_manifest_case("format_wrong", lambda m: m.update(format="zip"), words=("format",))
_manifest_case("version_newer", lambda m: m.update(version=2), words=("version", "newer"))
_manifest_case("quantized_yes", lambda m: m.update(quantized="yes"), words=("quantized",))
_manifest_case("hardware_value_list", lambda m: m["hardware"].update(PE=[16]), words=("hardware.PE",))
_manifest_case("program_names_missing_member", lambda m: m["program"].update(npz="other.npz"),
               words=("program.npz", "other.npz"))
_manifest_case("manifest_over_1mib", lambda m: m.update(padding="x" * (1 << 20)), words=("manifest.json",))
_manifest_case("manifest_not_object", raw=lambda t: "[" + t + "]", words=("JSON object",))
_manifest_case("sha256_not_hex", raw=lambda t: t.replace('"sha256": "', '"sha256": "Z', 1), words=("sha256",))


# ==================================================================================== program
def _program_doc(d: Path) -> Dict[str, Any]:
    return json.loads(quant(d)["files"]["program.json"])


def _with_program(d: Path, doc: Optional[Dict[str, Any]] = None, npz: Optional[bytes] = None,
                  json_text: Optional[bytes] = None) -> Path:
    files = dict(quant(d)["files"])
    if doc is not None:
        files["program.json"] = json.dumps(doc).encode()
    if json_text is not None:
        files["program.json"] = json_text
    if npz is not None:
        files["program.npz"] = npz
    return _quant_with(d, files=files)


def _scale_case(role: str, value: str):
    @case("program", f"output_scale_{role}_{value}")
    def run(d: Path):
        doc = _program_doc(d)
        name = doc["outputs"][role]
        text = json.dumps(doc)
        tensor = next(t for t in doc["tensors"] if t["name"] == name)
        old = json.dumps(tensor)
        new = json.dumps({**tensor, "scale": 12345.5}).replace("12345.5", value)
        assert old in text
        _load(_with_program(d, json_text=text.replace(old, new).encode()), "scale")
    return run


for _role in ("hm", "wh", "reg"):
    for _value in ("NaN", "0", "-0.08"):
        _scale_case(_role, _value)


@case("program")
def npz_not_a_zip(d: Path):
    _load(_with_program(d, npz=b"PK\x03\x04 this is no zip at all" * 10), "program.npz", "not a readable")


@case("program")
def npz_declares_1tib_array(d: Path):
    z = zipfile.ZipFile(io.BytesIO(quant(d)["files"]["program.npz"]))
    arrays = {n: z.read(n) for n in z.namelist()}
    first = sorted(arrays)[0]
    arrays[first] = B.npy_bytes({"descr": "|i1", "fortran_order": False, "shape": (1 << 40,)}, b"\0" * 16)
    _load(_with_program(d, npz=B.npz_bytes(arrays)), "program.npz", first[:-4], "1,099,511,627,776 bytes")


@case("program")
def npz_object_array(d: Path):
    z = zipfile.ZipFile(io.BytesIO(quant(d)["files"]["program.npz"]))
    arrays = {n: z.read(n) for n in z.namelist()}
    first = sorted(arrays)[0]
    arrays[first] = B.npy_bytes({"descr": "|O", "fortran_order": False, "shape": (2,)}, b"\0" * 16)
    _load(_with_program(d, npz=B.npz_bytes(arrays)), "program.npz", "dtype")


@case("program")
def npz_bomb(d: Path):
    z = zipfile.ZipFile(io.BytesIO(quant(d)["files"]["program.npz"]))
    arrays = {n: z.read(n) for n in z.namelist()}
    first = sorted(arrays)[0]
    arrays[first] = B.npy_bytes({"descr": "|i1", "fortran_order": False, "shape": (64 << 20,)}, bytes(64 << 20))
    _load(_with_program(d, npz=B.npz_bytes(arrays)), "program.npz", "budget")


@case("program")
def npz_missing_array(d: Path):
    z = zipfile.ZipFile(io.BytesIO(quant(d)["files"]["program.npz"]))
    arrays = {n: z.read(n) for n in z.namelist()}
    arrays.pop(sorted(arrays)[0])
    _load(_with_program(d, npz=B.npz_bytes(arrays)), "program.json")


@case("program")
def weight_dtype_int32(d: Path):
    z = zipfile.ZipFile(io.BytesIO(quant(d)["files"]["program.npz"]))
    arrays = {n: np.load(io.BytesIO(z.read(n)), allow_pickle=False) for n in z.namelist()}
    key = "l0.weight.npy"
    arrays[key] = arrays[key].astype(np.int32)
    buf = {}
    for n, a in arrays.items():
        b = io.BytesIO()
        np.save(b, a, allow_pickle=False)
        buf[n] = b.getvalue()
    _load(_with_program(d, npz=B.npz_bytes(buf)), "int8")


@case("program")
def program_input_disagrees(d: Path):
    doc = _program_doc(d)
    t = next(t for t in doc["tensors"] if t["name"] == doc["input"])
    t["shape"] = [96, 96, 3]
    _load(_with_program(d, doc=doc), "program.json")


@case("program")
def program_json_nesting(d: Path):
    doc = _program_doc(d)
    doc["meta"]["deep"] = "@@"
    _load(_with_program(d, json_text=json.dumps(doc).replace('"@@"', B.nested_json(100_000)).encode()),
          "program.json", "levels deep")


@case("program")
def program_json_long_number(d: Path):
    doc = _program_doc(d)
    doc["max_offset"] = "@@"
    _load(_with_program(d, json_text=json.dumps(doc).replace('"@@"', "7" * 5000).encode()),
          "program.json", "max_offset", "5000 characters")


@case("program")
def program_json_not_json(d: Path):
    _load(_with_program(d, json_text=b"{broken"), "program.json", "not valid JSON")


@case("program")
def program_version(d: Path):
    doc = _program_doc(d)
    doc["version"] = 9
    _load(_with_program(d, doc=doc), "program.json", "version")


def _graph_scale_case(name: str, scale: Callable[[float], float], words: tuple):
    @case("program", name)
    def run(d: Path):
        from codenet_pynq.onnx_io import graph_io

        q = quant(d)
        meta = json.loads(graph_io(q["files"]["model_int.onnx"]).metadata["codenet_int"])
        old = repr(meta["outputs"]["hm"]["scale"]).encode()
        assert q["files"]["model_int.onnx"].count(old) == 1
        new = repr(scale(float(old))).encode()[:len(old)].ljust(len(old), b"0")  # same length: valid protobuf
        files = dict(q["files"], **{"model_int.onnx": q["files"]["model_int.onnx"].replace(old, new)})
        _load(_quant_with(d, files=files), "model_int.onnx", "metadata.codenet_int.outputs.hm.scale", *words)
    return run


_graph_scale_case("graph_scale_negative", lambda s: -s, ("above 0",))
_graph_scale_case("graph_scale_disagrees_with_program", lambda s: s * 1.5, ("differs from the program",))


# ======================================================================================== cli
def _cli(argv: List[str], allow_internal: bool = False) -> Dict[str, Any]:
    from codenet_pynq.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    e = err.getvalue()
    if "Traceback" in e:
        raise TracebackSeen(e[-2000:])
    if code == 3 or ("internal error" in e and not allow_internal):
        raise InternalError(e[-2000:])
    return {"code": code, "out": out.getvalue(), "err": e}


def _batch(d: Path, good: int = 3) -> Path:
    import cv2

    folder = d / "photos"
    folder.mkdir()
    for i in range(good):
        img = np.full((48 + 8 * i, 64, 3), 40 * i, np.uint8)
        cv2.circle(img, (30, 24), 12, (250, 250, 250), -1)
        cv2.imwrite(str(folder / f"good{i}.png"), img)
    return folder


def _report(path: Path, good: int) -> Dict[str, int]:
    rep = json.loads(path.read_text())
    return {"lost": good - len(rep["images"])}


@case("cli")
def batch_with_hostile_files(d: Path):
    folder = _batch(d)
    os.mkfifo(folder / "pipe.jpg")
    (folder / "zero.png").symlink_to("/dev/zero")
    (folder / "loop.jpg").symlink_to(folder / "loop.jpg")
    B.png_bomb(folder / "bomb.png", 12000, 12000)
    B.gif_image(folder / "anim.gif")
    (folder / "junk.jpg").write_bytes(b"<html>")
    r = _cli(["detect", quant(d)["path"], folder, "--out", d / "out", "--backend", "cpu"])
    assert r["code"] == 4, r
    rep = json.loads((d / "out" / "detections.json").read_text())
    failed = {Path(f["file"]).name for f in rep["failures"]}
    assert failed == {"pipe.jpg", "zero.png", "loop.jpg", "bomb.png", "junk.jpg"}, failed
    assert rep["finished"] and all(f["error"] == "ImageReadError" for f in rep["failures"])
    return _report(d / "out" / "detections.json", 4)  # 3 PNG + the GIF


@case("cli")
def unwritable_output(d: Path):
    folder = _batch(d)
    (d / "out" / "good1.png").mkdir(parents=True)  # the annotated copy cannot replace a folder
    r = _cli(["detect", quant(d)["path"], folder, "--out", d / "out", "--backend", "cpu"])
    assert r["code"] == 4 and "good1.png" in r["err"], r
    rep = json.loads((d / "out" / "detections.json").read_text())
    rec = {Path(x["file"]).name: x for x in rep["images"]}
    assert rec["good1.png"]["output"] is None and "output_error" in rec["good1.png"]
    assert [f["stage"] for f in rep["failures"]] == ["write"]
    return _report(d / "out" / "detections.json", 3)


@contextlib.contextmanager
def _detect_replaced(factory: Callable[[Callable], Callable]):
    """Detector.detect replaced by ``factory(real_detect)`` inside the block."""
    from codenet_pynq.detector import Detector

    real = Detector.detect
    Detector.detect = factory(real)
    try:
        yield
    finally:
        Detector.detect = real


def _failing(fail_on: int, exc: BaseException) -> Callable[[Callable], Callable]:
    def factory(real: Callable) -> Callable:
        calls = []

        def detect(self, image, **kw):
            calls.append(1)
            if len(calls) == fail_on:
                raise exc
            return real(self, image, **kw)
        return detect
    return factory


def _one_failure(d: Path, good: int, fail_on: int, exc: BaseException, allow_internal: bool = False
                 ) -> Dict[str, Any]:
    folder = _batch(d, good=good)
    with _detect_replaced(_failing(fail_on, exc)):
        r = _cli(["detect", quant(d)["path"], folder, "--out", d / "out", "--backend", "cpu"], allow_internal)
    assert r["code"] == 4, r
    rep = json.loads((d / "out" / "detections.json").read_text())
    assert len(rep["failures"]) == 1 and rep["failures"][0]["stage"] == "detect", rep["failures"]
    rep["lost"] = good - 1 - len(rep["images"])
    rep["err"] = r["err"]
    return rep


@case("cli")
def accelerator_timeout(d: Path):
    from codenet_pynq.errors import AcceleratorTimeout

    rep = _one_failure(d, 4, 2, AcceleratorTimeout("fpga: no ap_done within 2 s"))
    assert rep["failures"][0]["error"] == "AcceleratorTimeout"
    return {"lost": rep["lost"]}


@case("cli")
def internal_error_on_one_image(d: Path):
    rep = _one_failure(d, 3, 1, ZeroDivisionError("injected"), allow_internal=True)
    assert rep["failures"][0]["error"] == "ZeroDivisionError" and "bug" in rep["failures"][0]["reason"]
    assert "injected" in rep["err"]
    return {"lost": rep["lost"]}


@case("cli")
def json_written_as_images_finish(d: Path):
    import codenet_pynq.cli as cli

    folder = _batch(d, good=3)
    seen = []

    def factory(real: Callable) -> Callable:
        def detect(self, image, **kw):
            seen.append(len(json.loads((d / "out" / "detections.json").read_text())["images"]))
            return real(self, image, **kw)
        return detect
    every, cli.JSON_EVERY_S = cli.JSON_EVERY_S, 0.0
    try:
        with _detect_replaced(factory):
            r = _cli(["detect", quant(d)["path"], folder, "--out", d / "out", "--backend", "cpu"])
    finally:
        cli.JSON_EVERY_S = every
    assert r["code"] == 0 and seen == [0, 1, 2], (r, seen)
    return _report(d / "out" / "detections.json", 3)


@case("cli")
def file_modes_consistent(d: Path):
    folder = _batch(d, good=1)
    r = _cli(["detect", quant(d)["path"], folder, "--out", d / "out", "--backend", "cpu"])
    assert r["code"] == 0, r
    umask = os.umask(0)
    os.umask(umask)
    want = 0o666 & ~umask
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (d / "out").iterdir()}
    assert modes == {"detections.json": want, "good0.png": want}, (modes, oct(want))


@case("cli")
def unwritable_json_stops_before_work(d: Path):
    folder = _batch(d, good=1)
    (d / "file").write_text("x")
    r = _cli(["detect", quant(d)["path"], folder, "--json", d / "file" / "r.json", "--out", d / "out",
              "--backend", "cpu"])
    assert r["code"] == 2 and "r.json" in r["err"] and "cannot be written" in r["err"], r
    assert not (d / "out").exists()


@case("cli")
def bad_model_in_cli(d: Path):
    folder = _batch(d, good=1)
    p = _quant_with(d, lambda m: m["decode"].update(top_k="abc"))
    r = _cli(["detect", p, folder, "--out", d / "out", "--backend", "cpu"])
    assert r["code"] == 2 and "decode.top_k" in r["err"], r


@case("cli")
def symlink_loop_given_as_input(d: Path):
    folder = _batch(d, good=1)
    (d / "loop.jpg").symlink_to(d / "loop.jpg")
    r = _cli(["detect", quant(d)["path"], folder / "good0.png", d / "loop.jpg", "--out", d / "out",
              "--backend", "cpu"])
    assert r["code"] == 4 and "symbolic link loop" in r["err"], r
    return _report(d / "out" / "detections.json", 1)


# ==================================================================================== running
class _Hang(BaseException):
    pass


def _alarm(signum, frame):
    raise _Hang()


def _peak_mib() -> float:
    """This process's peak resident memory: VmHWM (ru_maxrss survives exec and starts at the parent's
    peak, which would count pytest's memory)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def run_group(group: str, root: Path, log: Any) -> None:
    """Run every case of ``group`` in a fresh folder under ``root``; one JSON line per case in ``log``."""
    signal.signal(signal.SIGALRM, _alarm)
    for i, c in enumerate(x for x in CASES if x.group == group):
        folder = root / f"{i:03d}_{c.name}"
        folder.mkdir(parents=True)
        log.write(json.dumps({"case": c.name, "status": "start"}) + "\n")
        log.flush()
        t0 = time.perf_counter()
        rss0 = _peak_mib()
        res: Dict[str, Any] = {"case": c.name}
        signal.alarm(CASE_LIMIT_S)
        try:
            out = c.fn(folder) or {}
            res.update(status="ok", lost=int(out.get("lost", 0)))
        except _Hang:
            res.update(status="hang")
        except InternalError as e:
            res.update(status="internal", detail=str(e)[:2000])
        except TracebackSeen as e:
            res.update(status="traceback", detail=str(e)[:2000])
        except AssertionError as e:
            res.update(status="wrong", detail=str(e)[:2000])
        except Exception as e:  # noqa: BLE001 - an exception escaping the runtime is what we count
            from codenet_pynq.errors import CodenetError

            kind = "wrong" if isinstance(e, CodenetError) else "traceback"
            res.update(status=kind, detail="".join(traceback.format_exception(type(e), e, e.__traceback__))[-3000:])
        finally:
            signal.alarm(0)
        res["seconds"] = round(time.perf_counter() - t0, 3)
        res["rss_growth_mib"] = round(_peak_mib() - rss0, 1)
        if res["status"] == "ok" and res["rss_growth_mib"] > CASE_RSS_GROWTH_MIB:
            res.update(status="memory", detail=f"peak memory grew by {res['rss_growth_mib']} MiB")
        log.write(json.dumps(res) + "\n")
        log.flush()
    log.write(json.dumps({"peak_rss_mib": _peak_mib()}) + "\n")
    log.flush()


def _load_extensions() -> None:
    """Import ``tests/bad_input_cases_*.py``: other parts of the project add their cases there
    (e.g. ``@case("descriptors")`` in ``bad_input_cases_descriptors.py``) without editing this file."""
    import importlib

    for p in sorted(Path(__file__).resolve().parent.glob("bad_input_cases_*.py")):
        importlib.import_module(p.stem)


_load_extensions()

if __name__ == "__main__":
    import bad_input_cases  # the module itself (not __main__): extensions register their cases there

    bad_input_cases.run_group(sys.argv[1], Path(sys.argv[2]), sys.stdout)
