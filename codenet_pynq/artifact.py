"""The deployable model file (``.codenet``): a zip of a JSON manifest and its payload files.

Members: ``manifest.json`` (format, version, model config, class names, input size,
preprocessing, decode defaults, statistics, the sha256 and size of every other member),
``model_float.onnx`` (float graph), and for a quantized model ``model_int.onnx`` (integer-exact
graph), ``program.json`` + ``program.npz`` (the integer layer program). No pickle anywhere:
JSON, ONNX protobuf and ``.npz`` read with ``allow_pickle=False``.

Loading checks the zip, the manifest schema and version, every checksum, and the hardware
parameters, and raises :class:`~codenet_pynq.errors.ArtifactError` saying what is wrong with
which file and what to do.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import io
import json
import os
import zipfile
from dataclasses import dataclass, field
from typing import Any, Dict, Optional

from .errors import ArtifactError, format_message

FORMAT = "codenet-artifact"
VERSION = 1
MANIFEST = "manifest.json"
FLOAT_GRAPH = "model_float.onnx"
INT_GRAPH = "model_int.onnx"
PROGRAM_JSON = "program.json"
PROGRAM_NPZ = "program.npz"
#: Upper bound on the unpacked size of all members (a guard against zip bombs).
MAX_UNPACKED_BYTES = 2 * 2**30
REQUIRED = ("format", "version", "model", "class_names", "input_size", "down_ratio", "preprocess", "files")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class Artifact:
    """A loaded, verified artifact: the manifest and the raw bytes of each member."""

    path: str
    manifest: Dict[str, Any]
    files: Dict[str, bytes] = field(repr=False, default_factory=dict)

    @property
    def class_names(self):
        return list(self.manifest["class_names"])

    @property
    def input_size(self) -> int:
        return int(self.manifest["input_size"])

    @property
    def down_ratio(self) -> int:
        return int(self.manifest["down_ratio"])

    @property
    def quantized(self) -> bool:
        return bool(self.manifest.get("quantized", False))

    def graph(self, kind: str = "auto") -> bytes:
        """ONNX bytes: ``int`` (integer-exact), ``float``, or ``auto`` (int when quantized)."""
        if kind == "auto":
            kind = "int" if self.quantized else "float"
        name = INT_GRAPH if kind == "int" else FLOAT_GRAPH
        if name not in self.files:
            raise ArtifactError(f"{self.path}: has no {kind} graph ({name}); re-export the model with "
                                f"{'quantization' if kind == 'int' else 'a float graph'}")
        return self.files[name]

    def program(self):
        """The integer layer program (quantized artifacts only)."""
        from .program import Program, ProgramError

        if PROGRAM_JSON not in self.files:
            raise ArtifactError(f"{self.path}: no integer program: this is a float model; export it with "
                                "quantization (see docs/quantization.md) to run it on the accelerator")
        try:
            return Program.from_bytes(self.files[PROGRAM_JSON], self.files[PROGRAM_NPZ], f"{self.path}:{PROGRAM_JSON}")
        except ProgramError as e:
            raise ArtifactError(str(e)) from e

    def summary(self) -> Dict[str, Any]:
        m = self.manifest
        return {"path": self.path, "format_version": m["version"], "created": m.get("created"),
                "producer": m.get("producer"), "quantized": self.quantized, "classes": self.class_names,
                "input_size": self.input_size, "variant": m["model"].get("variant"),
                "width": m["model"].get("width"), **m.get("stats", {}),
                "files": {k: v["size"] for k, v in m["files"].items()}}


def write_artifact(path: str, manifest: Dict[str, Any], files: Dict[str, bytes]) -> str:
    """Write an artifact atomically (temp file + rename); fills ``files`` checksums in the manifest."""
    from . import __version__

    man = dict(manifest)
    man.setdefault("format", FORMAT)
    man.setdefault("version", VERSION)
    man.setdefault("created", _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    man.setdefault("producer", f"codenet-pynq {__version__}")
    man["files"] = {name: {"sha256": sha256(data), "size": len(data)} for name, data in sorted(files.items())}
    missing = [k for k in REQUIRED if k not in man]
    if missing:
        raise ValueError(f"manifest is missing {missing}")
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    tmp = os.path.join(d, f".{os.path.basename(path)}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            with zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_DEFLATED) as z:
                z.writestr(MANIFEST, json.dumps(man, indent=1, sort_keys=True))
                for name, data in sorted(files.items()):
                    z.writestr(name, data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def _fail(path: str, problem: str, hint: str) -> ArtifactError:
    return ArtifactError(format_message(path, problem, hint))


def load_artifact(path: str, verify: bool = True) -> Artifact:
    """Read and verify an artifact; raises ArtifactError naming the file and the problem."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise _fail(path, "no such file", "Check the path, or run `codenet-pynq info` on a shipped model "
                    "(codenet_pynq/models/)")
    if os.path.isdir(path):
        raise _fail(path, "is a folder, not a .codenet file", "Pass the artifact file itself")
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise _fail(path, f"cannot be read ({e.strerror})", "Check its permissions") from e
    if not raw:
        raise _fail(path, "is empty", "Re-export or re-download the artifact")
    try:
        z = zipfile.ZipFile(io.BytesIO(raw))
        names = set(z.namelist())
        unpacked = sum(i.file_size for i in z.infolist())
        if unpacked > MAX_UNPACKED_BYTES:
            raise _fail(path, f"its members would unpack to {unpacked / 2**30:.1f} GiB, more than the "
                        f"{MAX_UNPACKED_BYTES / 2**30:g} GiB an artifact may hold", "This is not a "
                        "codenet-pynq artifact (or a damaged one); re-export it")
        files = {n: z.read(n) for n in names}
    except (zipfile.BadZipFile, EOFError, zlib_error(), KeyError, OSError, NotImplementedError,
            RuntimeError) as e:  # NotImplementedError: unknown compression; RuntimeError: encrypted
        raise _fail(path, f"is not a readable .codenet artifact (truncated or corrupt zip: {e})",
                    "Re-export or copy the file again") from e
    if MANIFEST not in files:
        raise _fail(path, f"has no {MANIFEST}", "This is not a codenet-pynq artifact; export one with "
                    "`python -m codenet_pynq.training.export`")
    try:
        man = json.loads(files.pop(MANIFEST).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise _fail(path, f"{MANIFEST} is not valid JSON ({e})", "The file is damaged; re-export it") from e
    if not isinstance(man, dict):
        raise _fail(path, f"{MANIFEST} must be a JSON object", "The file is damaged; re-export it")
    if man.get("format") != FORMAT:
        raise _fail(path, f"{MANIFEST}: format is {man.get('format')!r}, not {FORMAT!r}", "This is not a "
                    "codenet-pynq artifact")
    missing = [k for k in REQUIRED if k not in man]
    if missing:
        raise _fail(path, f"{MANIFEST} lacks field(s) {missing}", "The file is damaged or from an unknown "
                    "tool; re-export it")
    if not isinstance(man["version"], int) or isinstance(man["version"], bool):
        raise _fail(path, f"{MANIFEST}: version {man['version']!r} is not an integer", "The file is damaged "
                    "or from an unknown tool; re-export it")
    if man["version"] > VERSION:
        raise _fail(path, f"artifact version {man['version']} is newer than this codenet-pynq reads ({VERSION})",
                    "Upgrade codenet-pynq (pip install -U codenet-pynq)")
    if man["version"] < VERSION:
        raise _fail(path, f"artifact version {man['version']} is older than {VERSION}",
                    "Re-export the model with this codenet-pynq")
    listed = man["files"]
    if not isinstance(listed, dict):
        raise _fail(path, f"{MANIFEST}: 'files' must map names to checksums", "Re-export the artifact")
    for name, entry in listed.items():
        if name not in files:
            raise _fail(path, f"member {name} listed in the manifest is missing", "The file is incomplete; "
                        "copy or export it again")
        if verify and (not isinstance(entry, dict) or sha256(files[name]) != entry.get("sha256")):
            raise _fail(path, f"checksum mismatch for {name}: the file was modified or damaged",
                        "Re-export or copy the artifact again; never edit it by hand")
    extra = sorted(set(files) - set(listed))
    if extra:
        raise _fail(path, f"unlisted member(s) {extra}", "The artifact was tampered with; re-export it")
    if FLOAT_GRAPH not in files and INT_GRAPH not in files:
        raise _fail(path, "contains no ONNX graph", "Re-export the artifact")
    if not isinstance(man["class_names"], list) or not man["class_names"]:
        raise _fail(path, f"{MANIFEST}: class_names must be a non-empty list", "Re-export the artifact")
    if not isinstance(man["input_size"], int) or man["input_size"] <= 0 or man["input_size"] % 32:
        raise _fail(path, f"{MANIFEST}: input_size {man['input_size']!r} must be a positive multiple of 32",
                    "Re-export the artifact")
    return Artifact(path=path, manifest=man, files=files)


def zlib_error():
    import zlib

    return zlib.error


def default_model_path() -> Optional[str]:
    """The shipped default model inside the package, or None when not installed."""
    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "models")
    for name in ("shapes_default.codenet", "shapes_default_float.codenet"):
        p = os.path.join(here, name)
        if os.path.isfile(p):
            return p
    return None
