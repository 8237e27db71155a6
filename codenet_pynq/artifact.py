"""The deployable model file (``.codenet``): a zip of a JSON manifest and its payload files.

Members: ``manifest.json`` (format, version, model config, class names, input size,
preprocessing, decode defaults, statistics, the sha256 and size of every other member),
``model_float.onnx`` (float graph), and for a quantized model ``model_int.onnx`` (integer-exact
graph), ``program.json`` + ``program.npz`` (the integer layer program). No pickle anywhere:
JSON, ONNX protobuf and ``.npz`` read with ``allow_pickle=False``.

Loading checks, in this order and before anything large is allocated: that the path is a
regular file of at most :data:`MAX_FILE_BYTES`; the zip's directory (at most
:data:`MAX_MEMBERS` members, no duplicates, no encryption, stored or deflated, declared sizes
within a budget of :data:`MAX_RATIO` x the file size + :data:`RATIO_SLACK` and at most
:data:`MAX_UNPACKED_BYTES` in all, so a zip bomb is refused before it is decompressed); the
manifest (bounded JSON, then its schema: :mod:`codenet_pynq.manifest`); that the members are
exactly those listed, with the listed sizes, then their checksums; for a quantized model the
``.npy`` headers of ``program.npz`` (dtype, shape and size before any array is allocated), the
integer program and its agreement with the manifest; the input size, output shapes and output
scales of each ONNX graph. The accelerator members (descriptor table, weight blob) are checked
by size and checksum only. Every failure is an :class:`~codenet_pynq.errors.ArtifactError`
naming the file, the member and the field, and saying what to do.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import io
import json
import math
import os
import zipfile
import zlib
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import numpy as np

from .errors import ArtifactError, format_message
from .files import atomic_open, read_regular_file

FORMAT = "codenet-artifact"
VERSION = 1
MANIFEST = "manifest.json"
FLOAT_GRAPH = "model_float.onnx"
INT_GRAPH = "model_int.onnx"
PROGRAM_JSON = "program.json"
PROGRAM_NPZ = "program.npz"
#: Upper bound on the size of a .codenet file.
MAX_FILE_BYTES = 1 << 30
#: Upper bound on the unpacked size of all members together (a guard against zip bombs).
MAX_UNPACKED_BYTES = 1 << 30
#: The members of an artifact (and the arrays of program.npz) may declare at most MAX_RATIO times
#: the size of the file that holds them, plus RATIO_SLACK (deflate reaches ~1000x on crafted data;
#: real models compress 1.2x to 4x).
MAX_RATIO = 32
RATIO_SLACK = 1 << 20
#: Upper bound on the number of members of an artifact and of arrays in program.npz.
MAX_MEMBERS = 64
MAX_ARRAYS = 4096
#: Upper bounds of the JSON members.
MAX_MANIFEST_BYTES = 1 << 20
MAX_PROGRAM_JSON_BYTES = 16 << 20
#: dtypes program.npz may hold (no object arrays, nothing wider than 8 bytes).
NPZ_KINDS = "iuf"
REQUIRED = ("format", "version", "model", "class_names", "input_size", "down_ratio", "preprocess", "files")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class Artifact:
    """A loaded, verified artifact: the manifest and the raw bytes of each member."""

    path: str
    manifest: Dict[str, Any]
    files: Dict[str, bytes] = field(repr=False, default_factory=dict)
    #: the integer program, built and checked by load_artifact (quantized models)
    loaded_program: Any = field(repr=False, default=None, compare=False)

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

        if self.loaded_program is not None:
            return self.loaded_program
        if PROGRAM_JSON not in self.files or PROGRAM_NPZ not in self.files:
            raise ArtifactError(f"{self.path}: no integer program: this is a float model; export it with "
                                "quantization (see docs/quantization.md) to run it on the accelerator")
        check_npz(self.files[PROGRAM_NPZ], f"{self.path}: {PROGRAM_NPZ}")
        try:
            self.loaded_program = Program.from_bytes(self.files[PROGRAM_JSON], self.files[PROGRAM_NPZ],
                                                     f"{self.path}: {PROGRAM_JSON}")
        except ProgramError as e:
            text = str(e)
            hint = None if "re-export" in text.lower() else "re-export the model with codenet-pynq"
            raise ArtifactError(format_message(None, text, hint)) from e
        except (RecursionError, MemoryError, OverflowError, zipfile.BadZipFile, zlib.error, EOFError) as e:
            raise ArtifactError(format_message(f"{self.path}: {PROGRAM_JSON}", f"malformed integer program "
                                               f"({type(e).__name__}: {e})", "re-export the model")) from e
        return self.loaded_program

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
    with atomic_open(path) as fh:
        with zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_DEFLATED) as z:
            z.writestr(MANIFEST, json.dumps(man, indent=1, sort_keys=True))
            for name, data in sorted(files.items()):
                z.writestr(name, data)
    return path


def _fail(path: str, problem: str, hint: str) -> ArtifactError:
    return ArtifactError(format_message(path, problem, hint))


def _size(n: int) -> str:
    """Bytes for people: 512 B, 3.2 KiB, 64.0 MiB, 1.0 GiB."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def _zip_budget(infos: List[zipfile.ZipInfo], container_bytes: int, source: str, what: str,
                max_members: int) -> None:
    """Refuse a zip whose directory declares too much, before any member is decompressed."""
    if len(infos) > max_members:
        raise _fail(source, f"has {len(infos)} {what}s, more than the {max_members} allowed",
                    "this is not a codenet-pynq model file (or a damaged one); re-export it")
    names = [i.filename for i in infos]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})[:3]
        raise _fail(source, f"holds {what}s with the same name ({dup})", "the file was tampered with; "
                    "re-export it")
    budget = min(MAX_UNPACKED_BYTES, MAX_RATIO * container_bytes + RATIO_SLACK)
    total = 0
    for info in infos:
        if info.flag_bits & 0x1:
            raise _fail(source, f"{what} {info.filename[:80]} is encrypted", "re-export the model")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise _fail(source, f"{what} {info.filename[:80]} uses compression method {info.compress_type} "
                        "(only stored and deflate are read)", "re-export the model with codenet-pynq")
        total += info.file_size
        if total > budget:
            raise _fail(source, f"its {what}s declare {_size(total)} or more unpacked from "
                        f"{_size(container_bytes)}, more than the {_size(budget)} budget "
                        f"({MAX_RATIO} x the size + {RATIO_SLACK // 2**20} MiB, at most "
                        f"{MAX_UNPACKED_BYTES / 2**30:g} GiB): a zip bomb or a damaged file",
                        "this is not a model codenet-pynq exported; re-export it")


def _read_member(z: zipfile.ZipFile, info: zipfile.ZipInfo, source: str) -> bytes:
    """The bytes of one member; zipfile stops at the declared size and checks the CRC."""
    try:
        data = z.read(info)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError, RuntimeError,
            ValueError) as e:
        raise _fail(source, f"member {info.filename[:80]} cannot be unpacked ({type(e).__name__}: {e})",
                    "the file is truncated or corrupt; re-export or copy it again") from e
    if len(data) != info.file_size:
        raise _fail(source, f"member {info.filename[:80]} unpacks to {len(data)} bytes, not the "
                    f"{info.file_size} its header declares", "the file is corrupt; re-export it")
    return data


def check_npz(data: bytes, source: str) -> None:
    """Check every ``.npy`` header of ``program.npz`` before any array is allocated.

    Each member must be a ``.npy`` of an integer or float dtype (no objects, no pickle) whose
    shape x item size is exactly the member's size; the members' declared sizes are held to the
    same budget as an artifact's. Raises ArtifactError naming ``source`` and the array.
    """
    try:
        z = zipfile.ZipFile(io.BytesIO(data))
        infos = z.infolist()
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, NotImplementedError) as e:
        raise _fail(source, f"is not a readable .npz archive ({type(e).__name__}: {e})",
                    "the file is damaged; re-export the model") from e
    _zip_budget(infos, len(data), source, "array", MAX_ARRAYS)
    for info in infos:
        name = info.filename
        where = f"array {name[:80]}"
        if not name.endswith(".npy"):
            raise _fail(source, f"{where}: not a .npy member", "re-export the model")
        try:
            with z.open(info) as fh:
                version = np.lib.format.read_magic(fh)
                if version == (1, 0):
                    shape, _fortran, dtype = np.lib.format.read_array_header_1_0(fh)
                elif version in ((2, 0), (3, 0)):
                    shape, _fortran, dtype = np.lib.format.read_array_header_2_0(fh)
                else:
                    raise ValueError(f"unsupported .npy format version {version}")
                header = fh.tell()
        except (ValueError, TypeError, SyntaxError, EOFError, OSError, zipfile.BadZipFile, zlib.error,
                RuntimeError, NotImplementedError) as e:
            raise _fail(source, f"{where}: unreadable .npy header ({type(e).__name__}: {e})",
                        "the file is damaged; re-export the model") from e
        if dtype.hasobject or dtype.kind not in NPZ_KINDS or dtype.itemsize > 8 or dtype.fields is not None:
            raise _fail(source, f"{where}: dtype {dtype} is not a plain integer or float type",
                        "the file is damaged or unsafe; re-export the model")
        if len(shape) > 8 or not all(isinstance(d, int) and d >= 0 for d in shape):
            raise _fail(source, f"{where}: shape {shape} is invalid", "re-export the model")
        nbytes = math.prod(shape) * dtype.itemsize
        if header + nbytes != info.file_size:
            raise _fail(source, f"{where}: its header declares {list(shape)} {dtype} = {nbytes:,} bytes, but the "
                        f"member holds {info.file_size - header:,} bytes of data",
                        "the file is damaged; re-export the model")


def load_artifact(path: str, verify: bool = True) -> Artifact:
    """Read and verify an artifact; raises ArtifactError naming the file, member and field.

    ``verify=False`` skips the sha256 checksums only; every structural check still runs.
    """
    from .manifest import check_graph, check_manifest, check_program, load_json
    from .onnx_io import graph_io

    path = os.fspath(path)
    raw = read_regular_file(path, ArtifactError, max_bytes=MAX_FILE_BYTES, what="a .codenet model file",
                            dir_hint="pass the artifact file itself")
    if not raw:
        raise _fail(path, "is empty", "Re-export or re-download the artifact")
    try:
        z = zipfile.ZipFile(io.BytesIO(raw))
        infos = {i.filename: i for i in z.infolist()}
    except (zipfile.BadZipFile, EOFError, zlib.error, OSError, NotImplementedError, ValueError) as e:
        raise _fail(path, f"is not a readable .codenet artifact (truncated or corrupt zip: {e})",
                    "Re-export or copy the file again") from e
    _zip_budget(z.infolist(), len(raw), path, "member", MAX_MEMBERS)
    if MANIFEST not in infos:
        raise _fail(path, f"has no {MANIFEST}", "This is not a codenet-pynq artifact; export one with "
                    "`python -m codenet_pynq.training.export`")
    source = f"{path}: {MANIFEST}"
    if infos[MANIFEST].file_size > MAX_MANIFEST_BYTES:
        raise _fail(source, f"declares {infos[MANIFEST].file_size:,} bytes, more than the "
                    f"{MAX_MANIFEST_BYTES:,} allowed", "The file is damaged; re-export it")
    man = load_json(_read_member(z, infos[MANIFEST], path), source, MAX_MANIFEST_BYTES)
    members = sorted(set(infos) - {MANIFEST})
    check_manifest(man, source, FORMAT, VERSION, members)
    listed = man["files"]
    for name in listed:
        if name not in infos:
            raise _fail(path, f"member {name[:80]} listed in the manifest is missing", "The file is incomplete; "
                        "copy or export it again")
    extra = sorted(set(members) - set(listed))
    if extra:
        raise _fail(path, f"unlisted member(s) {[e[:80] for e in extra[:5]]}", "The artifact was tampered with; "
                    "re-export it")
    for name in members:
        if infos[name].file_size != listed[name]["size"]:
            raise _fail(source, f"files.{name}.size is {listed[name]['size']:,} but the zip member declares "
                        f"{infos[name].file_size:,} bytes", "the file was modified or damaged; re-export it")
    files = {}
    for name in members:
        files[name] = _read_member(z, infos[name], path)
        if verify and sha256(files[name]) != listed[name]["sha256"]:
            raise _fail(path, f"checksum mismatch for {name}: the file was modified or damaged",
                        "Re-export or copy the artifact again; never edit it by hand")
    if FLOAT_GRAPH not in files and INT_GRAPH not in files:
        raise _fail(path, "contains no ONNX graph", "Re-export the artifact")
    art = Artifact(path=path, manifest=man, files=files)
    program = None
    if art.quantized:
        for name in (INT_GRAPH, PROGRAM_JSON, PROGRAM_NPZ):
            if name not in files:
                raise _fail(source, f"quantized is true but the file has no {name}", "Re-export the artifact")
        load_json(files[PROGRAM_JSON], f"{path}: {PROGRAM_JSON}", MAX_PROGRAM_JSON_BYTES)
        program = art.program()
        check_program(program, man, f"{path}: {PROGRAM_JSON}")
    for name in (INT_GRAPH, FLOAT_GRAPH):
        if name in files:
            try:
                io_ = graph_io(files[name])
            except (ValueError, UnicodeDecodeError) as e:
                raise _fail(f"{path}: {name}", f"is not a readable ONNX model ({e})",
                            "Re-export the artifact") from e
            check_graph(io_, man, f"{path}: {name}", program if name == INT_GRAPH else None)
    return art


def default_model_path() -> Optional[str]:
    """The shipped default model inside the package, or None when not installed."""
    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "models")
    for name in ("shapes_default.codenet", "shapes_default_float.codenet"):
        p = os.path.join(here, name)
        if os.path.isfile(p):
            return p
    return None
