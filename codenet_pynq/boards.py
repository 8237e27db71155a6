"""Which PYNQ board this is, where its overlay lives in the package, and published bitstreams.

Board detection (:func:`detect_board`): ``$BOARD`` (set by PYNQ images), then ``$PYNQ_BOARD``,
then the PYNQ device (``pynq.Device.active_device.name``) and the device tree model
(``/proc/device-tree/model``). A board that is not supported, or no board at all, is an error
that lists the supported boards: there is no silent default.

Overlays ship as package data under ``codenet_pynq/overlays/<board>/``. A maintainer who
publishes a built bitstream adds ``codenet.link`` there, a JSON file
``{"<board>": {"url": ..., "sha256": ..., "md5sum": ...}}`` (``md5sum`` is the field PYNQ's own
``.link`` files use). :func:`fetch_overlay` downloads the files it names -- only when the user
asks for it (``python -m codenet_pynq.boards fetch``) -- and verifies every checksum before the
file is put in place. Write a link with :func:`write_link` (``scripts/publish_overlay.py``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from .errors import BackendError, CodenetError, format_message
from .files import atomic_write

__all__ = ["SUPPORTED_BOARDS", "BoardError", "normalize", "detect_board", "board_name", "overlay_dir",
           "read_link", "write_link", "fetch_overlay", "LINK_NAME", "OVERLAY_FILES"]

#: boards with a block design in overlays/<board>/ (the names PYNQ images export as $BOARD, normalised)
SUPPORTED_BOARDS: Tuple[str, ...] = ("ultra96v2",)
#: other spellings that mean a supported board (normalised)
_ALIASES: Dict[str, str] = {"ultra96": "ultra96v2", "avnetultra96v2": "ultra96v2"}
LINK_NAME = "codenet.link"
#: files of one overlay (the .bit, its .hwh, and the engine parameters it was built with)
OVERLAY_FILES = ("codenet.bit", "codenet.hwh", "codenet_params.h")
PACKAGE_OVERLAYS = Path(__file__).resolve().parent / "overlays"
_CHECKSUMS = ("sha256", "md5sum")


class BoardError(BackendError):
    """The board is unknown or unsupported, or a published overlay cannot be resolved or verified."""


def normalize(name: str) -> str:
    """Lower case, letters and digits only (``Ultra96-V2`` -> ``ultra96v2``)."""
    return "".join(ch for ch in str(name).lower() if ch.isalnum())


def _match(raw: str) -> Optional[str]:
    key = normalize(raw)
    if key in SUPPORTED_BOARDS:
        return key
    if key in _ALIASES:
        return _ALIASES[key]
    for board in SUPPORTED_BOARDS:  # e.g. a device tree model "Avnet Ultra96-V2 Rev1"
        if board in key:
            return board
    return None


def _unsupported(raw: str, source: str) -> BoardError:
    return BoardError(format_message(
        source, f"board {raw!r} is not supported; supported boards: {', '.join(SUPPORTED_BOARDS)}",
        "set BOARD to one of them if this is one under another name, or build an overlay for your board "
        "(overlays/build.sh, see overlays/README.md) and pass overlay='path/to/codenet.bit'"))


def _device_names(pynq_module: Any = None) -> List[Tuple[str, str]]:
    """(name, where it came from) of the PYNQ device and the device tree; never raises."""
    out: List[Tuple[str, str]] = []
    pynq = pynq_module
    if pynq is None:
        try:
            import pynq  # optional: only on a board
        except Exception:
            pynq = None
    if pynq is not None:
        try:
            name = getattr(pynq.Device.active_device, "name", None)
            if name:
                out.append((str(name), "the PYNQ device"))
        except Exception:  # pynq raises when there is no FPGA manager
            pass
    model = Path("/proc/device-tree/model")
    try:
        if model.is_file():
            out.append((model.read_text(errors="replace").strip("\x00\n "), str(model)))
    except OSError:
        pass
    return out


def detect_board(env: Optional[Dict[str, str]] = None, pynq_module: Any = None,
                 device_names: Optional[Sequence[Tuple[str, str]]] = None) -> str:
    """The supported board this runs on (normalised name); :class:`BoardError` if none or unsupported.

    ``env`` replaces ``os.environ``, ``device_names`` the device probe (both for tests).
    """
    env = os.environ if env is None else env
    for var in ("BOARD", "PYNQ_BOARD"):
        raw = env.get(var, "").strip()
        if raw:
            board = _match(raw)
            if board is None:
                raise _unsupported(raw, f"${var}")
            return board
    names = list(device_names) if device_names is not None else _device_names(pynq_module)
    for raw, _ in names:
        board = _match(raw)
        if board is not None:
            return board
    seen = "; ".join(f"{src} says {raw!r}" for raw, src in names) or "no PYNQ device found"
    raise BoardError(format_message(
        "board detection", f"cannot tell which board this is (BOARD and PYNQ_BOARD are not set; {seen}); "
                           f"supported boards: {', '.join(SUPPORTED_BOARDS)}",
        "set BOARD (e.g. `export BOARD=ultra96v2`) or pass the overlay path explicitly"))


def board_name() -> str:
    """:func:`detect_board` with the environment and the device of this machine."""
    return detect_board()


def overlay_dir(board: str) -> Path:
    """``codenet_pynq/overlays/<board>/`` of a supported board."""
    b = _match(board)
    if b is None:
        raise _unsupported(board, "overlay_dir")
    return PACKAGE_OVERLAYS / b


# =========================================================================== .link files
def read_link(path: Path, board: str) -> Dict[str, Dict[str, str]]:
    """``{file name: {"url", "sha256"/"md5sum"}}`` for ``board`` from a ``.link`` file; BoardError if bad.

    Accepted forms: ``{"<board>": {"url", "sha256", ...}}`` (one file, the .bit; its .hwh and
    parameters as ``"hwh"`` / ``"params"`` entries of the same shape) or a flat ``{"url", ...}``.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise BoardError(format_message(str(path), f"cannot read the overlay link ({e})",
                                        "reinstall codenet-pynq or fix the JSON")) from e
    if not isinstance(data, dict):
        raise BoardError(format_message(str(path), "an overlay link must be a JSON object",
                                        "see codenet_pynq/boards.py for the format"))
    entry = data.get(board, data if "url" in data else None)
    if not isinstance(entry, dict):
        raise BoardError(format_message(str(path), f"no entry for board {board!r} (it has {sorted(data)})",
                                        "no bitstream is published for this board: build one with overlays/build.sh"))
    files: Dict[str, Dict[str, str]] = {}
    for key, name in (("", "codenet.bit"), ("hwh", "codenet.hwh"), ("params", "codenet_params.h")):
        item = entry if not key else entry.get(key)
        if item is None and key:
            continue
        if not isinstance(item, dict) or not isinstance(item.get("url"), str):
            raise BoardError(format_message(str(path), f"entry {board}{'.' + key if key else ''} has no 'url' string",
                                            "fix the link file"))
        sums = {k: str(item[k]).lower() for k in _CHECKSUMS if item.get(k)}
        if not sums:
            raise BoardError(format_message(str(path), f"entry {board}{'.' + key if key else ''} has no checksum "
                                                       f"({' or '.join(_CHECKSUMS)})",
                                            "a published overlay must carry its sha256 so that a download is verified"))
        files[name] = {"url": item["url"], **sums}
    if "codenet.hwh" not in files:
        raise BoardError(format_message(str(path), f"entry {board} names no .hwh ('hwh': {{url, sha256}})",
                                        "PYNQ needs the .hwh next to the .bit: publish both"))
    return files


def _digest(data: bytes) -> Dict[str, str]:
    return {"sha256": hashlib.sha256(data).hexdigest(), "md5sum": hashlib.md5(data).hexdigest()}


def write_link(board: str, bit: Path, hwh: Path, base_url: str, params: Optional[Path] = None,
               out: Optional[Path] = None) -> Path:
    """Write ``codenet.link`` for a built overlay published under ``base_url`` (checksums of the local files)."""
    b = _match(board)
    if b is None:
        raise _unsupported(board, "write_link")
    url = base_url.rstrip("/")

    def item(p: Path) -> Dict[str, str]:
        return {"url": f"{url}/{Path(p).name}", **_digest(Path(p).read_bytes())}

    entry: Dict[str, Any] = item(bit)
    entry["hwh"] = item(hwh)
    if params is not None:
        entry["params"] = item(params)
    target = Path(out) if out is not None else overlay_dir(b) / LINK_NAME
    atomic_write(target, (json.dumps({b: entry}, indent=1) + "\n").encode("utf-8"))
    return target


def _urlopen_bytes(url: str) -> bytes:
    from urllib.request import urlopen

    with urlopen(url, timeout=60) as r:  # noqa: S310 - the URL comes from the package's own .link file
        return r.read()


def fetch_overlay(board: Optional[str] = None, dest: Optional[Path] = None, link: Optional[Path] = None,
                  fetch: Callable[[str], bytes] = _urlopen_bytes, force: bool = False) -> Path:
    """Download the overlay a ``.link`` names, verify its checksums, put it in ``dest``; returns the .bit.

    ``board``: default :func:`detect_board`; ``link``: default the package's
    ``overlays/<board>/codenet.link``; ``dest``: default the folder of the link. Files already
    there with the right checksum are kept (``force`` downloads again). A checksum mismatch
    leaves nothing behind and raises :class:`BoardError`.
    """
    b = detect_board() if board is None else (_match(board) or "")
    if not b:
        raise _unsupported(str(board), "fetch_overlay")
    link = Path(link) if link is not None else overlay_dir(b) / LINK_NAME
    if not link.is_file():
        raise BoardError(format_message(
            str(link), f"no bitstream has been published for {b} (no overlay link)",
            f"build the overlay with `overlays/build.sh {b}` and copy codenet.bit and codenet.hwh into {link.parent}"))
    files = read_link(link, b)
    dest = Path(dest) if dest is not None else link.parent
    for name, item in files.items():
        target = dest / name
        if not force and target.is_file() and _verified(target.read_bytes(), item):
            continue
        try:
            data = fetch(item["url"])
        except Exception as e:  # network errors of any kind
            raise BoardError(format_message(item["url"], f"download failed ({type(e).__name__}: {e})",
                                            "check the network connection of the board and retry")) from e
        if not _verified(data, item):
            got = _digest(data)
            which = next(k for k in _CHECKSUMS if k in item and item[k] != got[k])
            raise BoardError(format_message(
                item["url"], f"checksum mismatch for {name}: {which} {got[which]} (downloaded) vs {item[which]} "
                             f"({link})", "the download is corrupt or the link is stale: retry, or tell the maintainer"))
        atomic_write(target, data)
    return dest / "codenet.bit"


def _verified(data: bytes, item: Dict[str, str]) -> bool:
    got = _digest(data)
    return all(item[k] == got[k] for k in _CHECKSUMS if k in item)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m codenet_pynq.boards detect|fetch [--board B] [--dest DIR] [--force]``."""
    p = argparse.ArgumentParser(prog="python -m codenet_pynq.boards", description=__doc__.split("\n")[0])
    p.add_argument("command", choices=("detect", "fetch"))
    p.add_argument("--board", help=f"one of {', '.join(SUPPORTED_BOARDS)} (default: detected)")
    p.add_argument("--dest", help="folder for the overlay files (default: the package's overlays/<board>/)")
    p.add_argument("--force", action="store_true", help="download again even when the files verify")
    args = p.parse_args(argv)
    try:
        if args.command == "detect":
            print(detect_board() if args.board is None else overlay_dir(args.board).name)
        else:
            print(fetch_overlay(args.board, args.dest, force=args.force))
    except CodenetError as e:
        print(f"error: {e}")
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
