"""PYNQ packaging: the wheel's notebooks and overlay layout, the pynq.notebooks entry point, boards, .link files."""

from __future__ import annotations

import hashlib
import importlib
import json
import shutil
import subprocess
import sys
import types
import zipfile
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from codenet_pynq import boards
from codenet_pynq.boards import BoardError, detect_board, fetch_overlay, read_link, write_link
from codenet_pynq.errors import BackendError

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(p.name for p in (ROOT / "codenet_pynq" / "notebooks").glob("*.ipynb"))


def _pynq_notebook_entry_points():
    eps = entry_points()
    group = eps.select(group="pynq.notebooks") if hasattr(eps, "select") else eps.get("pynq.notebooks", [])
    return {ep.name: ep for ep in group}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built from a copy of the sources (pip wheel --no-deps, no index needed)."""
    src = tmp_path_factory.mktemp("src")
    for name in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.so", "*.pyc")
    for name in ("codenet_pynq", "training"):
        shutil.copytree(ROOT / name, src / name, ignore=ignore)
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
                    str(src), "-w", str(out)], check=True, timeout=300)
    (whl,) = out.glob("codenet_pynq-*.whl")
    return whl


def test_wheel_holds_notebooks_overlays_and_entry_point(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assert len(NOTEBOOKS) >= 5
    for nb in NOTEBOOKS:
        assert f"codenet_pynq/notebooks/{nb}" in names
    assert "codenet_pynq/notebooks/__init__.py" in names
    for board in boards.SUPPORTED_BOARDS:
        assert any(n.startswith(f"codenet_pynq/overlays/{board}/") for n in names), board
    assert {"codenet_pynq/assets/target_sheet.pdf", "codenet_pynq/assets/target_sheet.png"} <= names
    ep_txt = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(ep_txt).decode()
    assert "[pynq.notebooks]" in text and "codenet-pynq = codenet_pynq.notebooks" in text
    meta = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    requires = [ln for ln in meta.splitlines() if ln.startswith("Requires-Dist:") and "extra ==" not in ln]
    assert requires and not any("opencv" in r or "matplotlib" in r or "ipywidgets" in r for r in requires), requires


def test_get_notebooks_through_the_entry_point(tmp_path: Path) -> None:
    """What `pynq get-notebooks codenet-pynq` does: load the entry point, copy its module's folder."""
    eps = _pynq_notebook_entry_points()
    assert "codenet-pynq" in eps, "install the package (pip install -e .) to register the entry point"
    module = eps["codenet-pynq"].load()
    assert isinstance(module, types.ModuleType)
    source = Path(module.__file__).parent
    target = tmp_path / "pynq-notebooks" / "codenet-pynq"
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "__init__.py"))
    assert sorted(p.name for p in target.glob("*.ipynb")) == NOTEBOOKS
    for nb in target.glob("*.ipynb"):
        assert json.loads(nb.read_text())["nbformat"] == 4


# ----------------------------------------------------------------------------------- boards
@pytest.mark.parametrize("env,want", [({"BOARD": "Ultra96V2"}, "ultra96v2"), ({"BOARD": "Ultra96-V2"}, "ultra96v2"),
                                      ({"PYNQ_BOARD": "ultra96"}, "ultra96v2")])
def test_board_from_environment(env, want) -> None:
    assert detect_board(env=env, device_names=[]) == want


def test_unsupported_board_lists_the_supported_ones() -> None:
    with pytest.raises(BoardError, match=r"\$BOARD.*'Pynq-Z2' is not supported; supported boards: ultra96v2"):
        detect_board(env={"BOARD": "Pynq-Z2"}, device_names=[])


def test_no_board_is_an_error_not_a_default() -> None:
    with pytest.raises(BoardError, match="cannot tell which board.*supported boards: ultra96v2"):
        detect_board(env={}, device_names=[])
    assert detect_board(env={}, device_names=[("Avnet Ultra96-V2 Rev1", "dt")]) == "ultra96v2"


def test_fpga_backend_uses_board_detection(monkeypatch, tmp_path) -> None:
    from codenet_pynq.backends import fpga

    monkeypatch.delenv("BOARD", raising=False)
    monkeypatch.delenv("PYNQ_BOARD", raising=False)
    monkeypatch.delenv("CODENET_OVERLAY", raising=False)
    monkeypatch.setattr(boards, "_device_names", lambda pynq_module=None: [])
    with pytest.raises(BoardError, match="supported boards"):
        fpga.find_overlay()
    with pytest.raises(BackendError, match="no CoDeNet overlay"):  # an explicit overlay needs no board
        fpga.find_overlay(tmp_path / "codenet.bit")


# ----------------------------------------------------------------------------------- .link
def _published(tmp_path: Path, corrupt: bool = False):
    files = {"codenet.bit": b"\x00bitstream" * 100, "codenet.hwh": b"<hwh/>", "codenet_params.h": b"#define X 1\n"}
    build = tmp_path / "build"
    build.mkdir()
    for n, d in files.items():
        (build / n).write_bytes(d)
    link = write_link("Ultra96-V2", build / "codenet.bit", build / "codenet.hwh", "https://example.org/codenet/v1",
                      params=build / "codenet_params.h", out=tmp_path / "pkg" / "codenet.link")
    served = {f"https://example.org/codenet/v1/{n}": d + (b"!" if corrupt and n.endswith(".bit") else b"")
              for n, d in files.items()}
    calls = []

    def fetch(url: str) -> bytes:
        calls.append(url)
        return served[url]

    return files, link, fetch, calls


def test_link_fetch_verifies_and_places_the_files(tmp_path: Path) -> None:
    files, link, fetch, calls = _published(tmp_path)
    entry = json.loads(link.read_text())["ultra96v2"]
    assert entry["sha256"] == hashlib.sha256(files["codenet.bit"]).hexdigest()
    assert set(read_link(link, "ultra96v2")) == set(files)
    bit = fetch_overlay("ultra96v2", dest=tmp_path / "dest", link=link, fetch=fetch)
    assert bit == tmp_path / "dest" / "codenet.bit"
    for n, d in files.items():
        assert (tmp_path / "dest" / n).read_bytes() == d
    assert len(calls) == 3
    fetch_overlay("ultra96v2", dest=tmp_path / "dest", link=link, fetch=fetch)  # verified files are kept
    assert len(calls) == 3


def test_link_checksum_mismatch_leaves_nothing(tmp_path: Path) -> None:
    _, link, fetch, _ = _published(tmp_path, corrupt=True)
    with pytest.raises(BoardError, match="checksum mismatch for codenet.bit"):
        fetch_overlay("ultra96v2", dest=tmp_path / "dest", link=link, fetch=fetch)
    assert not (tmp_path / "dest" / "codenet.bit").exists()


def test_link_file_url_and_bad_links(tmp_path: Path) -> None:
    files, link, _, _ = _published(tmp_path)
    data = json.loads(link.read_text())
    entry = data["ultra96v2"]
    for item in (entry, entry["hwh"], entry["params"]):
        item["url"] = (tmp_path / "build" / item["url"].rsplit("/", 1)[1]).as_uri()
    link.write_text(json.dumps(data))
    fetch_overlay("ultra96v2", dest=tmp_path / "viafile", link=link)  # file:// through urllib, no network
    assert (tmp_path / "viafile" / "codenet.hwh").read_bytes() == files["codenet.hwh"]
    del data["ultra96v2"]["sha256"], data["ultra96v2"]["md5sum"]
    link.write_text(json.dumps(data))
    with pytest.raises(BoardError, match="no checksum"):
        read_link(link, "ultra96v2")
    with pytest.raises(BoardError, match="no bitstream has been published"):
        fetch_overlay("ultra96v2", link=tmp_path / "missing.link", fetch=lambda u: b"")


def test_package_ships_no_link_without_a_published_bitstream() -> None:
    for board in boards.SUPPORTED_BOARDS:
        link = boards.overlay_dir(board) / boards.LINK_NAME
        if link.exists():  # once a maintainer publishes one, it must parse and name .bit and .hwh
            assert {"codenet.bit", "codenet.hwh"} <= set(read_link(link, board))


# ----------------------------------------------------------------------------------- CodenetOverlay
def test_overlay_module_without_pynq_says_so(monkeypatch) -> None:
    import codenet_pynq.overlay as ov

    monkeypatch.setitem(sys.modules, "pynq", None)  # import pynq -> ImportError
    with pytest.raises(BackendError, match="pynq is not installed"):
        ov.CodenetOverlay  # noqa: B018


def test_overlay_class_registers_the_ip_driver(tmp_path: Path) -> None:
    from codenet_pynq.backends.fpga import IP_VLNV
    from codenet_pynq.overlay import overlay_class

    registered = []

    class DefaultIP:
        def __init_subclass__(cls, **kw):
            registered.extend(getattr(cls, "bindto", []))

    class Overlay:
        def __init__(self, path, download=True):
            self.path, self.download = path, download

    fake = types.SimpleNamespace(DefaultIP=DefaultIP, Overlay=Overlay)
    cls = overlay_class(fake)
    assert IP_VLNV in registered and issubclass(cls, Overlay)
    (tmp_path / "codenet.bit").write_bytes(b"b")
    (tmp_path / "codenet.hwh").write_bytes(b"h")
    ol = cls(tmp_path / "codenet.bit", download=False)
    assert ol.path == str(tmp_path / "codenet.bit") and ol.download is False
    assert overlay_class(fake) is cls


def test_runtime_says_when_opencv_is_missing(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "cv2", None)
    monkeypatch.delitem(sys.modules, "codenet_pynq.deps", raising=False)
    with pytest.raises(ImportError, match=r"needs cv2.*codenet-pynq\[host\]"):
        importlib.import_module("codenet_pynq.deps")
    monkeypatch.delitem(sys.modules, "codenet_pynq.deps", raising=False)


def test_target_sheet_is_current_and_its_truth_matches(tmp_path: Path) -> None:
    """The shipped sheet is what scripts/make_target_sheet.py renders from the shapes generator."""
    subprocess.run([sys.executable, str(ROOT / "scripts" / "make_target_sheet.py"), "--out", str(tmp_path)],
                   check=True, timeout=120, capture_output=True, env={**__import__("os").environ, "MPLBACKEND": "Agg"})
    assets = ROOT / "codenet_pynq" / "assets"
    assert json.loads((tmp_path / "target_sheet.json").read_text()) == json.loads((assets / "target_sheet.json").read_text())
    import cv2
    import numpy as np

    shipped, fresh = cv2.imread(str(assets / "target_sheet.png")), cv2.imread(str(tmp_path / "target_sheet.png"))
    assert shipped.shape == fresh.shape and np.array_equal(shipped, fresh)
    assert (assets / "target_sheet.pdf").read_bytes()[:5] == b"%PDF-"
    classes = {s["class"] for s in json.loads((assets / "target_sheet.json").read_text())["shapes"]}
    from codenet_pynq.artifact import default_model_path, load_artifact

    assert classes == set(load_artifact(default_model_path()).class_names)  # every class of the shipped model
