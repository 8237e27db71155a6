"""The .codenet artifact: write / load roundtrip, and a clear ArtifactError for every kind of damage."""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path
from typing import Callable, Dict

import pytest
from onnx_fixtures import tiny_graph

from codenet_pynq import artifact as A
from codenet_pynq.errors import ArtifactError, CodenetError

GRAPH = tiny_graph(64)


def _manifest(**over) -> Dict:
    m = {"model": {"variant": "k3", "width": "1.0x"}, "class_names": ["a", "b"], "input_size": 64,
         "down_ratio": 4, "preprocess": {"type": "center_affine_letterbox"}, "quantized": False,
         "stats": {"parameters": 10, "macs": 100}}
    m.update(over)
    return m


@pytest.fixture
def art_path(tmp_path: Path) -> Path:
    """A small valid float artifact (a tiny real ONNX graph: load_artifact reads its input shape)."""
    return Path(A.write_artifact(str(tmp_path / "m.codenet"), _manifest(), {A.FLOAT_GRAPH: GRAPH}))


def _members(path: Path) -> Dict[str, bytes]:
    with zipfile.ZipFile(path) as z:
        return {n: z.read(n) for n in z.namelist()}


def _rezip(path: Path, members: Dict[str, bytes]) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    path.write_bytes(buf.getvalue())


def _edit_manifest(path: Path, fn: Callable[[Dict], None]) -> None:
    members = _members(path)
    man = json.loads(members[A.MANIFEST])
    fn(man)
    members[A.MANIFEST] = json.dumps(man).encode()
    _rezip(path, members)


def _expect(path: Path, *words: str) -> ArtifactError:
    with pytest.raises(ArtifactError) as ei:
        A.load_artifact(str(path))
    msg = str(ei.value)
    assert str(path) in msg, msg
    for w in words:
        assert w.lower() in msg.lower(), f"{w!r} not in {msg!r}"
    return ei.value


def test_roundtrip(art_path: Path) -> None:
    art = A.load_artifact(str(art_path))
    assert art.path == str(art_path)
    assert art.class_names == ["a", "b"] and art.input_size == 64 and art.down_ratio == 4
    assert not art.quantized
    assert art.graph() == GRAPH and art.graph("float") == GRAPH
    m = art.manifest
    assert m["format"] == A.FORMAT and m["version"] == A.VERSION
    assert m["files"] == {A.FLOAT_GRAPH: {"sha256": A.sha256(GRAPH), "size": len(GRAPH)}}
    assert "created" in m and m["producer"].startswith("codenet-pynq")
    s = art.summary()
    assert s["classes"] == ["a", "b"] and s["parameters"] == 10 and s["files"] == {A.FLOAT_GRAPH: len(GRAPH)}
    # a float artifact has neither an integer graph nor a program, and says so
    with pytest.raises(ArtifactError, match="no int graph"):
        art.graph("int")
    with pytest.raises(ArtifactError, match="float model"):
        art.program()


def test_roundtrip_real_model(tiny_artifact: str) -> None:
    art = A.load_artifact(tiny_artifact)
    assert len(art.class_names) == 5 and art.input_size == 64
    assert art.graph()[:2] == _members(Path(tiny_artifact))[A.FLOAT_GRAPH][:2]
    assert art.manifest["metrics"]["coco_ap"] == pytest.approx(0.123)
    assert art.manifest["stats"]["parameters"] > 0


def test_errors_are_value_errors() -> None:
    assert issubclass(ArtifactError, CodenetError) and issubclass(ArtifactError, ValueError)


def test_missing_file(tmp_path: Path) -> None:
    _expect(tmp_path / "nope.codenet", "no such file")


def test_empty_file(tmp_path: Path) -> None:
    p = tmp_path / "empty.codenet"
    p.write_bytes(b"")
    _expect(p, "empty")


def test_folder(tmp_path: Path) -> None:
    d = tmp_path / "dir.codenet"
    d.mkdir()
    _expect(d, "folder")


def test_truncated(art_path: Path) -> None:
    data = art_path.read_bytes()
    art_path.write_bytes(data[: len(data) // 2])
    _expect(art_path, "truncated or corrupt")


def test_random_bytes(tmp_path: Path) -> None:
    p = tmp_path / "rand.codenet"
    p.write_bytes(os.urandom(4096))
    _expect(p, "not a readable")


def test_corrupt_member_data(art_path: Path) -> None:
    # flip bytes inside the compressed data: the zip CRC (or inflate) catches it
    data = bytearray(art_path.read_bytes())
    members = _members(art_path)
    with zipfile.ZipFile(art_path) as z:
        info = z.getinfo(A.FLOAT_GRAPH)
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    for i in range(start, start + min(8, info.compress_size)):
        data[i] ^= 0xFF
    art_path.write_bytes(bytes(data))
    assert members  # the original was fine
    _expect(art_path, "corrupt")


def test_zip_without_manifest(art_path: Path) -> None:
    _rezip(art_path, {A.FLOAT_GRAPH: GRAPH})
    _expect(art_path, "has no manifest.json")


def test_manifest_not_json(art_path: Path) -> None:
    _rezip(art_path, {A.MANIFEST: b"{not json", A.FLOAT_GRAPH: GRAPH})
    _expect(art_path, "not valid JSON")


def test_manifest_not_object(art_path: Path) -> None:
    _rezip(art_path, {A.MANIFEST: b"[1, 2]", A.FLOAT_GRAPH: GRAPH})
    _expect(art_path, "JSON object")


def test_wrong_format(art_path: Path) -> None:
    _edit_manifest(art_path, lambda m: m.update(format="something-else"))
    _expect(art_path, "format", "something-else", "not a codenet-pynq artifact")


def test_missing_field(art_path: Path) -> None:
    _edit_manifest(art_path, lambda m: m.pop("class_names"))
    _expect(art_path, "class_names")


@pytest.mark.parametrize("version, words", [
    (A.VERSION + 1, ("newer", "upgrade")),
    (A.VERSION - 1, ("older", "re-export")),
    ("1", ("not an integer",)),
    (None, ("not an integer",)),
])
def test_version(art_path: Path, version, words) -> None:
    _edit_manifest(art_path, lambda m: m.update(version=version))
    _expect(art_path, "version", *words)


def test_tampered_member(art_path: Path) -> None:
    members = _members(art_path)
    members[A.FLOAT_GRAPH] = members[A.FLOAT_GRAPH][:-1] + b"X"  # manifest kept as it was
    _rezip(art_path, members)
    _expect(art_path, "checksum mismatch", A.FLOAT_GRAPH)
    # verify=False skips the checksums (for inspection tools)
    assert A.load_artifact(str(art_path), verify=False).graph()[-1:] == b"X"


def test_extra_unlisted_member(art_path: Path) -> None:
    members = _members(art_path)
    members["evil.py"] = b"print('hi')"
    _rezip(art_path, members)
    _expect(art_path, "unlisted", "evil.py")


def test_missing_listed_member(art_path: Path) -> None:
    members = _members(art_path)
    del members[A.FLOAT_GRAPH]
    _rezip(art_path, members)
    _expect(art_path, A.FLOAT_GRAPH, "missing")


def test_no_graph(tmp_path: Path) -> None:
    p = Path(A.write_artifact(str(tmp_path / "g.codenet"), _manifest(), {"notes.txt": b"x"}))
    _expect(p, "no ONNX graph")


@pytest.mark.parametrize("field, value, words", [
    ("class_names", [], ("class_names",)),
    ("class_names", "a,b", ("class_names",)),
    ("input_size", 50, ("input_size", "multiple of 32")),
    ("input_size", "64", ("input_size",)),
])
def test_bad_fields(tmp_path: Path, field, value, words) -> None:
    p = Path(A.write_artifact(str(tmp_path / "f.codenet"), _manifest(**{field: value}), {A.FLOAT_GRAPH: GRAPH}))
    _expect(p, *words)


def test_files_not_a_mapping(art_path: Path) -> None:
    _edit_manifest(art_path, lambda m: m.update(files=["model_float.onnx"]))
    _expect(art_path, "files")


def test_unpacked_size_limit(art_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(A, "MAX_UNPACKED_BYTES", 100)
    _expect(art_path, "unpack")


def _leftovers(folder: Path) -> list:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".") or "tmp" in p.name)


def test_atomic_write_leaves_no_temp(tmp_path: Path) -> None:
    A.write_artifact(str(tmp_path / "a.codenet"), _manifest(), {A.FLOAT_GRAPH: GRAPH})
    A.write_artifact(str(tmp_path / "a.codenet"), _manifest(class_names=["x"]), {A.FLOAT_GRAPH: GRAPH})
    assert _leftovers(tmp_path) == []
    assert A.load_artifact(str(tmp_path / "a.codenet")).class_names == ["x"]  # replaced


def test_failed_write_keeps_old_file(art_path: Path) -> None:
    before = art_path.read_bytes()
    bad = _manifest(model={"not json": object()})  # fails while the zip is being written
    with pytest.raises(TypeError):
        A.write_artifact(str(art_path), bad, {A.FLOAT_GRAPH: b"other"})
    assert art_path.read_bytes() == before
    assert _leftovers(art_path.parent) == []
    with pytest.raises(ValueError, match="missing"):
        A.write_artifact(str(art_path), {"model": {}}, {A.FLOAT_GRAPH: b"other"})
    assert art_path.read_bytes() == before


def test_write_creates_folder(tmp_path: Path) -> None:
    p = tmp_path / "new" / "sub" / "m.codenet"
    A.write_artifact(str(p), _manifest(), {A.FLOAT_GRAPH: GRAPH})
    assert A.load_artifact(str(p)).input_size == 64


def test_default_model_path() -> None:
    p = A.default_model_path()
    assert p is None or (os.path.isfile(p) and p.endswith(".codenet"))
