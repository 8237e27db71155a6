"""codenet_pynq/files.py: the one atomic-write helper and the bounded regular-file reader."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from codenet_pynq.errors import ArtifactError, ImageReadError
from codenet_pynq.files import atomic_open, atomic_write, read_regular_file


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def _umask() -> int:
    old = os.umask(0)
    os.umask(old)
    return old


def test_new_files_get_open_mode_and_replaced_files_keep_theirs(tmp_path: Path) -> None:
    p = atomic_write(tmp_path / "sub" / "a.json", "{}\n")
    assert p.read_text() == "{}\n" and _mode(p) == 0o666 & ~_umask()
    os.chmod(p, 0o600)
    atomic_write(p, b"new")
    assert p.read_bytes() == b"new" and _mode(p) == 0o600
    assert sorted(x.name for x in p.parent.iterdir()) == ["a.json"]  # no temporary left


def test_failure_keeps_the_old_file(tmp_path: Path) -> None:
    p = atomic_write(tmp_path / "a.bin", b"old")
    with pytest.raises(ZeroDivisionError):
        with atomic_open(p) as f:
            f.write(b"half")
            raise ZeroDivisionError("while writing")
    assert p.read_bytes() == b"old" and [x.name for x in tmp_path.iterdir()] == ["a.bin"]


def test_long_names_and_text_newlines(tmp_path: Path) -> None:
    name = "x" * 250 + ".txt"  # the temporary name must stay within NAME_MAX
    p = atomic_write(tmp_path / name, "a\nb\n")
    assert p.read_bytes() == b"a\nb\n"


def test_unwritable_destination_raises_oserror(tmp_path: Path) -> None:
    (tmp_path / "dir.png").mkdir()
    with pytest.raises(OSError):
        atomic_write(tmp_path / "dir.png", b"x")
    assert [x.name for x in tmp_path.iterdir()] == ["dir.png"]


def test_read_regular_file(tmp_path: Path) -> None:
    p = tmp_path / "f.bin"
    p.write_bytes(b"12345")
    assert read_regular_file(p, ImageReadError) == b"12345"
    with pytest.raises(ArtifactError, match="5 bytes, more than the .* limit .*for a model"):
        read_regular_file(p, ArtifactError, max_bytes=4, what="a model")
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(ImageReadError, match="named pipe"):
        read_regular_file(fifo, ImageReadError)
    with pytest.raises(ImageReadError, match="no such file"):
        read_regular_file(tmp_path / "missing", ImageReadError)
    with pytest.raises(ImageReadError, match="folder"):
        read_regular_file(tmp_path, ImageReadError)
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    with pytest.raises(ImageReadError, match="symbolic link loop"):
        read_regular_file(tmp_path / "loop", ImageReadError)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ImageReadError, match="should be a folder is a file"):
        read_regular_file(tmp_path / "file" / "x.png", ImageReadError)
