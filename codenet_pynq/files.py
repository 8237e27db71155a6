"""Safe file access for the whole package: atomic writes and bounded reads of regular files.

:func:`atomic_open` / :func:`atomic_write` are the one way codenet-pynq writes a file: the data
goes to a temporary file in the destination folder, is flushed to disk, and is moved over the
destination with ``os.replace``, so a reader sees the old file or the new one, never a part.
File modes are those of a plain ``open()``: a new file gets ``0o666 & ~umask`` (0644 with the
usual umask 022) whatever its kind (JSON, image, model, checkpoint); a file that is replaced
keeps its permission bits.

:func:`read_regular_file` reads a file only when ``stat`` says it is a regular file (named pipes,
devices, sockets and folders are refused before opening, so nothing blocks or reads forever), at
most ``max_bytes`` long, and turns every ``OSError`` into a one-line message saying which file,
what is wrong (no such file, broken link, symbolic link loop, permission denied, ...) and what
to do.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from pathlib import Path
from typing import IO, Iterator, Optional, Type, Union

from .errors import CodenetError, format_message

__all__ = ["atomic_open", "atomic_write", "read_regular_file", "file_problem"]

PathLike = Union[str, "os.PathLike[str]"]

#: Longest destination name kept in the temporary file's name (NAME_MAX is 255 on Linux).
_TMP_NAME_KEEP = 200


def _fsync_dir(folder: Path) -> None:
    """Make the rename durable; silently skipped where folders cannot be opened (Windows)."""
    try:
        fd = os.open(str(folder), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_open(path: PathLike, text: bool = False, encoding: str = "utf-8",
                keep_previous: Optional[PathLike] = None) -> Iterator[IO]:
    """Open a temporary file beside ``path`` for writing; on a clean exit it replaces ``path``.

    Missing parent folders are created. On an exception the temporary file is removed and
    ``path`` is left as it was. ``keep_previous``: the file being replaced is first moved to this
    path (a crash between the two renames leaves it there). Raises ``OSError`` (callers turn it
    into their own error).
    """
    p = Path(os.fspath(path))
    p.parent.mkdir(parents=True, exist_ok=True)
    try:
        st = os.stat(p)
        keep_mode: Optional[int] = stat.S_IMODE(st.st_mode) if stat.S_ISREG(st.st_mode) else None
    except OSError:
        keep_mode = None
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    while True:
        tmp = p.parent / f".{p.name[:_TMP_NAME_KEEP]}.{secrets.token_hex(4)}.tmp"
        try:
            fd = os.open(str(tmp), flags, 0o666)  # the kernel applies the umask, as open() does
            break
        except FileExistsError:
            continue
    try:
        with os.fdopen(fd, "w" if text else "wb", **({"encoding": encoding, "newline": ""} if text else {})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        if keep_mode is not None:
            os.chmod(tmp, keep_mode)
        if keep_previous is not None and p.is_file():
            os.replace(p, os.fspath(keep_previous))
        os.replace(tmp, p)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(p.parent)


def atomic_write(path: PathLike, data: Union[bytes, bytearray, memoryview, str], encoding: str = "utf-8") -> Path:
    """Write ``data`` (bytes, or text encoded with ``encoding``) to ``path`` atomically; returns the path."""
    with atomic_open(path, text=isinstance(data, str), encoding=encoding) as f:
        f.write(data)
    return Path(os.fspath(path))


_KIND = ((stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISCHR, "a character device"),
         (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def file_problem(path: PathLike, exc: OSError) -> str:
    """What ``exc`` (from stat/open/read of ``path``) means, in words, without the hint."""
    code = exc.errno
    if code == errno.ENOENT:
        if os.path.islink(path):
            return f"is a broken symbolic link (it points to {os.readlink(path)!r}, which does not exist)"
        return "no such file"
    if code == errno.ELOOP:
        return "is a symbolic link loop (a link that points back to itself, directly or through others)"
    if code in (errno.EACCES, errno.EPERM):
        return "permission denied (the file, or a folder on its path, may not be read by this user)"
    if code == errno.ENOTDIR:
        return "a part of the path that should be a folder is a file"
    if code == errno.ENAMETOOLONG:
        return "the path is too long for the file system"
    return f"cannot be read ({exc.strerror or exc})"


def _hint(problem: str) -> str:
    if "permission" in problem:
        return "check the permissions (ls -l) or run as a user who may read it"
    if "symbolic link" in problem:
        return "fix or remove the link, or pass the file it should point to"
    if problem == "no such file":
        return f"check the path (relative paths are resolved from {os.getcwd()})"
    return "check the path and that the disk is readable"


def read_regular_file(path: PathLike, error: Type[CodenetError], max_bytes: Optional[int] = None,
                      what: str = "file", dir_hint: str = "pass a file, not a folder") -> bytes:
    """The bytes of the regular file ``path``; anything else raises ``error`` naming the file.

    ``stat`` is checked before opening (a FIFO or device is never opened) and the opened file is
    checked again with ``fstat`` (the path may have been swapped in between). ``max_bytes``
    bounds the size read (``None``: no bound). ``what`` names the expected content in messages.
    """
    name = os.fspath(path)

    def fail(problem: str, hint: str) -> CodenetError:
        return error(format_message(name, problem, hint))

    def check(st: os.stat_result) -> None:
        if stat.S_ISDIR(st.st_mode):
            raise fail(f"is a folder, not {what}", dir_hint)
        if not stat.S_ISREG(st.st_mode):
            kind = next((k for test, k in _KIND if test(st.st_mode)), "not a regular file")
            raise fail(f"is {kind}, not {what}", f"only regular files are read; save the data to a file "
                       f"first (e.g. cat {name} > copy) and pass that")
        if max_bytes is not None and st.st_size > max_bytes:
            raise fail(f"is {st.st_size:,} bytes, more than the {max_bytes / 2**20:g} MiB limit "
                       f"({max_bytes:,} bytes) for {what}", "this is not what it should be, or it is far "
                       "larger than needed; check the file")

    try:
        check(os.stat(name))
        fd = os.open(name, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
                     | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0))
    except OSError as exc:
        problem = file_problem(name, exc)
        raise fail(problem, _hint(problem)) from exc
    try:
        with os.fdopen(fd, "rb") as f:
            check(os.fstat(f.fileno()))
            data = f.read() if max_bytes is None else f.read(max_bytes + 1)
    except OSError as exc:
        problem = file_problem(name, exc)
        raise fail(problem, _hint(problem)) from exc
    if max_bytes is not None and len(data) > max_bytes:  # grew after fstat
        raise fail(f"is more than the {max_bytes / 2**20:g} MiB limit for {what}", "check the file")
    return data
