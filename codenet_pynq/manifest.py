"""Checks of a model's description at load: bounded JSON, the manifest schema, and consistency.

Everything here raises :class:`~codenet_pynq.errors.ArtifactError` naming the artifact, the
member and the field (``model.codenet: manifest.json: decode.top_k: 'abc' is not an integer``),
so a damaged or hostile model file is refused when it is loaded, never at the first detection.

* :func:`load_json`: JSON of bounded size, nesting depth and number length (a 100k-deep
  nesting or a 5000-digit number is refused before Python's parser sees it);
* :func:`check_manifest`: types and ranges of every field the runtime reads;
* :func:`check_program`: the integer program agrees with the manifest (input size, output
  stride, number of classes) and every tensor scale is finite and positive;
* :func:`check_graph`: an ONNX graph's input size, output shapes and the integer graph's
  output scales agree with the manifest (and with the program).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Dict, Optional, Sequence, Tuple

from .errors import ArtifactError, format_message

__all__ = ["MAX_JSON_DEPTH", "MAX_NUMBER_CHARS", "load_json", "check_manifest", "check_program", "check_graph"]

#: Deepest nesting of arrays / objects accepted in a JSON member (the manifest needs 4).
MAX_JSON_DEPTH = 32
#: Longest number literal accepted in a JSON member (a float64 needs at most 24 characters).
MAX_NUMBER_CHARS = 40
#: Upper bounds of manifest values (far above any model this runtime can run).
MAX_INPUT_SIZE = 8192
MAX_CLASSES = 10_000
MAX_TOP_K = 100_000
DOWN_RATIOS = (1, 2, 4, 8, 16, 32)
HEADS = ("hm", "wh", "reg")

_REEXPORT = "the file is damaged or was edited; re-export the model with codenet-pynq"
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.S)
_BRACKET = re.compile(rb"[\[\]{}]")


class _LongNumber(str):
    """A number literal longer than MAX_NUMBER_CHARS, kept as text so that its field can be named."""


def _fail(source: str, problem: str, hint: str = _REEXPORT) -> ArtifactError:
    return ArtifactError(format_message(source, problem, hint))


def _json_depth(data: bytes, limit: int) -> int:
    """Nesting depth of JSON text, counted outside strings; stops once above ``limit``."""
    depth = deepest = 0
    for m in _BRACKET.finditer(_STRING.sub(b'""', data)):
        depth += 1 if m.group() in (b"[", b"{") else -1
        deepest = max(deepest, depth)
        if deepest > limit:
            break
    return deepest


def _number(cast):
    def parse(text: str):
        return _LongNumber(text) if len(text) > MAX_NUMBER_CHARS else cast(text)
    return parse


def _find_long(obj: Any, path: str) -> Optional[Tuple[str, str]]:
    if isinstance(obj, _LongNumber):
        return path, obj
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else ()
    for k, v in items:
        found = _find_long(v, f"{path}.{k}" if path and isinstance(k, str) else f"{path}[{k}]" if path else str(k))
        if found:
            return found
    return None


def load_json(data: bytes, source: str, max_bytes: int) -> Any:
    """Parse a JSON member of at most ``max_bytes``, MAX_JSON_DEPTH levels and MAX_NUMBER_CHARS digits."""
    if len(data) > max_bytes:
        raise _fail(source, f"is {len(data):,} bytes, more than the {max_bytes:,} allowed")
    depth = _json_depth(data, MAX_JSON_DEPTH)
    if depth > MAX_JSON_DEPTH:
        raise _fail(source, f"nests arrays/objects more than {MAX_JSON_DEPTH} levels deep")
    try:
        doc = json.loads(data.decode("utf-8"), parse_int=_number(int), parse_float=_number(float))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise _fail(source, f"is not valid JSON ({e})") from e
    long = _find_long(doc, "")
    if long:
        raise _fail(source, f"{long[0] or 'value'}: a number of {len(long[1])} characters (at most "
                            f"{MAX_NUMBER_CHARS} are accepted)")
    return doc


# ------------------------------------------------------------------------------ typed access
class _Fields:
    """Typed getters that name ``source`` and the dotted field in every error."""

    def __init__(self, source: str):
        self.source = source

    def fail(self, field: str, problem: str, hint: str = _REEXPORT) -> ArtifactError:
        return _fail(self.source, f"{field}: {problem}", hint)

    def get(self, obj: Dict[str, Any], key: str, prefix: str, kind: type, required: bool = True) -> Any:
        field = f"{prefix}{key}"
        if key not in obj:
            if required:
                raise self.fail(field, "missing")
            return None
        v = obj[key]
        ok = isinstance(v, kind) and not (kind is int and isinstance(v, bool))
        if kind is float:
            ok = isinstance(v, (int, float)) and not isinstance(v, bool)
        if not ok:
            names = {int: "an integer", float: "a number", str: "a string", bool: "true or false",
                     dict: "an object", list: "a list"}
            raise self.fail(field, f"{v!r} is not {names[kind]}"[:300])
        return v

    def integer(self, obj: Dict[str, Any], key: str, prefix: str, lo: int, hi: int,
                required: bool = True) -> Optional[int]:
        v = self.get(obj, key, prefix, int, required)
        if v is not None and not lo <= v <= hi:
            raise self.fail(f"{prefix}{key}", f"{v} is outside [{lo}, {hi}]")
        return v

    def number(self, obj: Dict[str, Any], key: str, prefix: str, lo: float, hi: float, positive: bool = False,
               required: bool = True) -> Optional[float]:
        v = self.get(obj, key, prefix, float, required)
        if v is None:
            return None
        v = float(v)
        if not math.isfinite(v) or not lo <= v <= hi or (positive and v <= 0):
            rule = f"a finite number in [{lo:g}, {hi:g}]" + (" above 0" if positive else "")
            raise self.fail(f"{prefix}{key}", f"{v!r} is not {rule}")
        return v

    def numbers(self, obj: Dict[str, Any], key: str, prefix: str, n: int, positive: bool) -> None:
        v = self.get(obj, key, prefix, list, required=False)
        if v is None:
            return
        if len(v) != n:
            raise self.fail(f"{prefix}{key}", f"has {len(v)} values, expected {n}")
        for i, x in enumerate(v):
            if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x) or (positive and x <= 0):
                raise self.fail(f"{prefix}{key}[{i}]", f"{x!r} is not a finite{' positive' if positive else ''} "
                                "number")


# ------------------------------------------------------------------------------ the manifest
def check_manifest(man: Any, source: str, fmt: str, version: int, members: Sequence[str]) -> None:
    """Types and ranges of every manifest field the runtime reads; ``members`` names the payload."""
    f = _Fields(source)
    if not isinstance(man, dict):
        raise _fail(source, "must be a JSON object")
    if man.get("format") != fmt:
        raise f.fail("format", f"{str(man.get('format'))[:80]!r} is not {fmt!r}", "this is not a codenet-pynq "
                     "artifact")
    ver = f.get(man, "version", "", int)
    if ver > version:
        raise f.fail("version", f"artifact version {ver} is newer than this codenet-pynq reads ({version})",
                     "upgrade codenet-pynq (pip install -U codenet-pynq)")
    if ver < version:
        raise f.fail("version", f"artifact version {ver} is older than {version}",
                     "re-export the model with this codenet-pynq")
    names = f.get(man, "class_names", "", list)
    if not 1 <= len(names) <= MAX_CLASSES or not all(isinstance(n, str) and n for n in names):
        raise f.fail("class_names", f"must be 1 to {MAX_CLASSES} non-empty strings")
    size = f.integer(man, "input_size", "", 32, MAX_INPUT_SIZE)
    if size % 32:
        raise f.fail("input_size", f"{size} is not a multiple of 32")
    ratio = f.get(man, "down_ratio", "", int)
    if ratio not in DOWN_RATIOS:
        raise f.fail("down_ratio", f"{ratio} is not one of {DOWN_RATIOS}")
    model = f.get(man, "model", "", dict)
    for key, want in (("input_size", size), ("down_ratio", ratio), ("num_classes", len(names))):
        got = f.get(model, key, "model.", int, required=False)
        if got is not None and got != want:
            raise f.fail(f"model.{key}", f"{got} disagrees with {want} (the manifest's own value)")
    pre = f.get(man, "preprocess", "", dict)
    f.numbers(pre, "pixel_mean", "preprocess.", 3, positive=False)
    f.numbers(pre, "pixel_std", "preprocess.", 3, positive=True)
    dec = f.get(man, "decode", "", dict, required=False) or {}
    f.integer(dec, "top_k", "decode.", 1, MAX_TOP_K, required=False)
    f.number(dec, "score_threshold", "decode.", 0.0, 1.0, required=False)
    f.get(man, "quantized", "", bool, required=False)
    for key in ("stats", "hardware", "accelerator", "program", "graphs"):
        f.get(man, key, "", dict, required=False)
    _check_files(f, f.get(man, "files", "", dict))
    for section, keys in (("graphs", ("int", "float")), ("program", ("json", "npz")),
                          ("accelerator", ("descriptors", "weights"))):
        sec = man.get(section) or {}
        for key in keys:
            name = f.get(sec, key, f"{section}.", str, required=False)
            if name is not None and name not in members:
                raise f.fail(f"{section}.{key}", f"names {name[:80]!r}, which is not in the file")
    hw = man.get("hardware") or {}
    for key, v in hw.items():  # compared with the engine's parameters: plain values only
        if not isinstance(v, (int, str)) and not (isinstance(v, float) and math.isfinite(v)):
            raise f.fail(f"hardware.{key}", f"{v!r} is not a number or a string"[:200])


def _check_files(f: _Fields, listed: Dict[str, Any]) -> None:
    for name, entry in listed.items():
        field = f"files.{name[:80]}"
        if not isinstance(entry, dict):
            raise f.fail(field, "must be an object with sha256 and size")
        digest = f.get(entry, "sha256", field + ".", str)
        if not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise f.fail(field + ".sha256", "is not 64 lower-case hex digits")
        f.integer(entry, "size", field + ".", 0, 2**40)


# ------------------------------------------------------------------------------ consistency
def _expect_shapes(man: Dict[str, Any]) -> Dict[str, Tuple[int, int, int]]:
    size, ratio, classes = man["input_size"], man["down_ratio"], len(man["class_names"])
    out = size // ratio
    return {"input": (size, size, 3), "hm": (out, out, classes), "wh": (out, out, 2), "reg": (out, out, 2)}


def check_program(program: Any, man: Dict[str, Any], source: str) -> None:
    """The integer program (a validated :class:`~codenet_pynq.program.Program`) agrees with the manifest."""
    f = _Fields(source)
    want = _expect_shapes(man)
    for t in program.tensors.values():
        if not isinstance(t.scale, float) or not math.isfinite(t.scale) or t.scale <= 0:
            raise f.fail(f"tensors[{t.name[:80]!r}].scale", f"{t.scale!r} is not a finite number above 0")
    got = tuple(program.tensors[program.input].shape)
    if got != want["input"]:
        raise f.fail(f"tensors[{program.input!r}].shape", f"the program input is {list(got)}, but the manifest's "
                     f"input_size {man['input_size']} needs {list(want['input'])}")
    for role in HEADS:
        if role not in program.outputs:
            raise f.fail("outputs", f"has no {role!r} head")
        t = program.tensors[program.outputs[role]]
        if tuple(t.shape) != want[role]:
            raise f.fail(f"tensors[{t.name!r}].shape", f"the {role} head is {list(t.shape)}, but input_size "
                         f"{man['input_size']}, down_ratio {man['down_ratio']} and {len(man['class_names'])} "
                         f"classes need {list(want[role])}")


def _dims_match(dims: Sequence[Any], want: Sequence[int]) -> bool:
    """True unless a concrete dim differs (symbolic or unknown dims match anything)."""
    return len(dims) == len(want) and all(not isinstance(d, int) or d == w for d, w in zip(dims, want))


def check_graph(io: Any, man: Dict[str, Any], source: str, program: Any = None) -> None:
    """An ONNX graph's inputs/outputs (a :class:`~codenet_pynq.onnx_io.GraphIO`) agree with the manifest.

    For the integer graph the ``codenet_int`` metadata must give finite positive output scales,
    equal to the program's (the CPU backend and the accelerator must dequantize alike).
    """
    f = _Fields(source)
    want = _expect_shapes(man)
    if not io.inputs:
        raise f.fail("graph.input", "the graph has no input")
    name, dims = io.inputs[0]
    if not _dims_match(dims, (1,) + want["input"]) and not _dims_match(dims, (1, 3) + want["input"][:2]):
        raise f.fail(f"graph.input[{name[:80]!r}]", f"the graph takes {dims}, but the manifest's input_size "
                     f"{man['input_size']} needs [1, {man['input_size']}, {man['input_size']}, 3]")
    if "codenet_int" not in io.metadata:
        return
    meta = load_json(io.metadata["codenet_int"].encode("utf-8"), f"{source}: metadata codenet_int", 1 << 20)
    outs = meta.get("outputs") if isinstance(meta, dict) else None
    if not isinstance(outs, dict):
        raise f.fail("metadata.codenet_int.outputs", "missing or not an object")
    shapes = dict(io.outputs)
    for role in HEADS:
        entry = outs.get(role)
        if not isinstance(entry, dict):
            raise f.fail(f"metadata.codenet_int.outputs.{role}", "missing or not an object")
        scale = f.number(entry, "scale", f"metadata.codenet_int.outputs.{role}.", 0.0, math.inf,
                                       positive=True)
        if program is not None and role in program.outputs:
            mine = program.tensors[program.outputs[role]].scale
            if not math.isclose(scale, mine, rel_tol=1e-6):
                raise f.fail(f"metadata.codenet_int.outputs.{role}.scale", f"{scale!r} differs from the "
                             f"program's {mine!r}: the CPU and accelerator backends would disagree")
        dims = shapes.get(entry.get("name"))
        h, w, c = want[role]
        nchw, nhwc = (1, c, h, w), (1, h, w, c)
        if dims is not None and not (_dims_match(dims, nchw if entry.get("layout", "NCHW") == "NCHW" else nhwc)):
            raise f.fail(f"graph.output[{str(entry.get('name'))[:80]!r}]", f"the {role} head is {dims}, but the "
                         f"manifest needs {list(nchw)} (NCHW) for its input size, stride and classes")
