"""libclang front end shared by the HLS lint and the resource budget.

Parses engine sources the way the Makefile compiles them (C++14, ``-I hls_src``, the Xilinx
ap_types headers as system headers), reads ``#pragma HLS`` lines from the source text (pragmas
are not in the clang AST) and offers the small AST helpers both tools need: operator names,
constant evaluation, declaration keys, array shapes and element widths.

Requires the ``libclang`` wheel from PyPI (``pip install libclang``; in the ``dev`` extra).
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

try:
    import clang.cindex as ci
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise SystemExit("hls tools: the Python package 'libclang' is missing. Install it with "
                     "'pip install libclang' (it is in the dev extra: pip install -e .[dev]).") from exc

K = ci.CursorKind
HLS_DIR = Path(__file__).resolve().parent.parent
DEFAULT_SOURCES = ("codenet_top.cpp", "cn_desc.cpp")

_PRAGMA = re.compile(r"^\s*#\s*pragma\s+HLS\s+(\w+)(.*)$", re.IGNORECASE)
_KV = re.compile(r"([A-Za-z_]\w*)\s*=\s*([^\s=]+)")


class ToolError(Exception):
    """A bad input to the HLS tools (missing headers, unparsable source, bad declaration file)."""


# ------------------------------------------------------------------------------------ includes
def find_ap_types() -> Optional[str]:
    """The ap_int.h directory the Makefile would use ($AP_TYPES_INC, $XILINX_HLS, hls4ml)."""
    env = os.environ.get("AP_TYPES_INC")
    if env:
        return env
    xil = os.environ.get("XILINX_HLS")
    if xil and Path(xil, "include", "ap_int.h").is_file():
        return str(Path(xil, "include"))
    spec = importlib.util.find_spec("hls4ml")
    if spec and spec.origin:
        cand = Path(spec.origin).parent / "templates" / "vivado" / "ap_types"
        if (cand / "ap_int.h").is_file():
            return str(cand)
    return None


def _builtin_include() -> Optional[str]:
    """A directory with the compiler builtin headers (stddef.h), which the libclang wheel lacks."""
    for cc in ("gcc", "clang", "cc"):
        try:
            out = subprocess.run([cc, "-print-file-name=include"], capture_output=True, text=True,
                                 timeout=20).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            continue
        if out and Path(out, "stddef.h").is_file():
            return out
    return None


def clang_args(include_dirs: Sequence[str] = ()) -> List[str]:
    """Compiler arguments: C++14, -I for each include dir, ap_types and builtins as system dirs."""
    args = ["-x", "c++", "-std=c++14", "-Wno-unknown-pragmas"]
    for d in include_dirs:
        args += ["-I", str(d)]
    ap = find_ap_types()
    if ap is None:
        raise ToolError("hls tools: Xilinx ap_int.h not found. Install Vitis HLS and set XILINX_HLS, "
                        "'pip install hls4ml' (ships hls4ml/templates/vivado/ap_types), or set AP_TYPES_INC.")
    args += ["-isystem", ap]
    builtin = _builtin_include()
    if builtin:
        args += ["-isystem", builtin]
    return args


# ------------------------------------------------------------------------------------ pragmas
@dataclass
class Pragma:
    """One ``#pragma HLS`` line: kind (upper case), key=value args, bare words, location."""

    file: str
    line: int
    kind: str
    args: Dict[str, str] = field(default_factory=dict)
    words: Tuple[str, ...] = ()

    def arg(self, key: str) -> Optional[str]:
        return self.args.get(key.lower())

    def has(self, word: str) -> bool:
        return word.lower() in self.words


def read_pragmas(path: str) -> List[Pragma]:
    """Every ``#pragma HLS`` of a file (with backslash continuations joined)."""
    out: List[Pragma] = []
    lines = Path(path).read_text(encoding="utf-8", errors="replace").splitlines()
    i = 0
    while i < len(lines):
        start = i
        text = lines[i]
        while text.endswith("\\") and i + 1 < len(lines):
            i += 1
            text = text[:-1] + " " + lines[i]
        i += 1
        m = _PRAGMA.match(text.split("//")[0])
        if not m:
            continue
        rest = m.group(2)
        args = {k.lower(): v for k, v in _KV.findall(rest)}
        words = tuple(w.lower() for w in _KV.sub(" ", rest).split())
        out.append(Pragma(str(Path(path).resolve()), start + 1, m.group(1).upper(), args, words))
    return out


# ------------------------------------------------------------------------------------ parsing
@dataclass
class Unit:
    """A parsed translation unit and the directories whose files count as project code."""

    path: str
    tu: ci.TranslationUnit
    project_dirs: Tuple[str, ...]

    def in_project(self, cursor: ci.Cursor) -> bool:
        f = cursor.location.file
        return bool(f) and os.path.realpath(f.name).startswith(self.project_dirs)


def parse(path: str, include_dirs: Sequence[str] = (), extra_args: Sequence[str] = ()) -> Unit:
    """Parse one C++ source; fails with a ToolError naming the first compile error."""
    if not Path(path).is_file():
        raise ToolError(f"{path}: source file not found. Pass existing engine sources (e.g. hls_src/*.cpp).")
    inc = list(include_dirs) or [str(Path(path).resolve().parent)]
    _MEMO.clear()  # cursor identities of a previous unit may be reused
    index = ci.Index.create()
    tu = index.parse(path, args=clang_args(inc) + list(extra_args))
    errors = [d for d in tu.diagnostics if d.severity >= ci.Diagnostic.Error]
    if errors:
        d = errors[0]
        where = f"{d.location.file.name}:{d.location.line}" if d.location.file else path
        raise ToolError(f"{where}: does not compile ({d.spelling}); fix it or the include paths "
                        f"({len(errors)} error(s) in all).")
    dirs = tuple(sorted({os.path.realpath(d) + os.sep for d in inc} | {str(Path(path).resolve().parent) + os.sep}))
    return Unit(str(Path(path).resolve()), tu, dirs)


# ------------------------------------------------------------------------------------ AST helpers
_MEMO: Dict[tuple, object] = {}


def memo(fn):
    """Cache a one-cursor function by the cursor's identity (cleared for every parsed unit)."""
    def wrapper(cursor):
        key = (fn.__name__, bytes(cursor))
        if key not in _MEMO:
            _MEMO[key] = fn(cursor)
        return _MEMO[key]
    wrapper.__name__ = fn.__name__
    wrapper.__doc__ = fn.__doc__
    return wrapper


_lib = ci.conf.lib
_lib.clang_Cursor_Evaluate.restype = ctypes.c_void_p
_lib.clang_Cursor_Evaluate.argtypes = [ci.Cursor]
_lib.clang_EvalResult_getKind.argtypes = [ctypes.c_void_p]
_lib.clang_EvalResult_getKind.restype = ctypes.c_int
_lib.clang_EvalResult_getAsLongLong.argtypes = [ctypes.c_void_p]
_lib.clang_EvalResult_getAsLongLong.restype = ctypes.c_longlong
_lib.clang_EvalResult_dispose.argtypes = [ctypes.c_void_p]


@memo
def evaluate(cursor: ci.Cursor) -> Optional[int]:
    """Integer value of a constant expression (or a const variable's initialiser), else None."""
    res = _lib.clang_Cursor_Evaluate(cursor)
    if not res:
        return None
    try:
        return int(_lib.clang_EvalResult_getAsLongLong(res)) if _lib.clang_EvalResult_getKind(res) == 1 else None
    finally:
        _lib.clang_EvalResult_dispose(res)


def display_path(path: str) -> str:
    """A path relative to the working directory when it lies below it, else absolute."""
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


def decl_key(cursor: ci.Cursor) -> Tuple[str, int, int]:
    """A stable identity for a declaration: its file, line and column."""
    loc = cursor.location
    return (loc.file.name if loc.file else "", loc.line, loc.column)


@memo
def strip(cursor: ci.Cursor) -> ci.Cursor:
    """Skip parentheses, implicit conversions and casts down to the expression that matters."""
    while True:
        kids = list(cursor.get_children())
        if cursor.kind in (K.PAREN_EXPR, K.UNEXPOSED_EXPR) and len(kids) == 1 and kids[0].kind.is_expression():
            cursor = kids[0]
        elif cursor.kind in (K.CSTYLE_CAST_EXPR, K.CXX_STATIC_CAST_EXPR, K.CXX_FUNCTIONAL_CAST_EXPR,
                             K.CXX_REINTERPRET_CAST_EXPR, K.CXX_CONST_CAST_EXPR) and kids:
            cursor = kids[-1]
        elif cursor.kind == K.CALL_EXPR and conversion_operand(cursor) is not None:
            cursor = conversion_operand(cursor)
        else:
            return cursor


@memo
def conversion_operand(cursor: ci.Cursor) -> Optional[ci.Cursor]:
    """The converted object of an implicit conversion/constructor call with one operand, else None."""
    ref = cursor.referenced
    if ref is None or ref.kind not in (K.CONVERSION_FUNCTION, K.CONSTRUCTOR):
        return None
    kids = [k for k in cursor.get_children() if k.kind.is_expression()]
    if ref.kind == K.CONVERSION_FUNCTION and len(kids) == 1 and kids[0].kind == K.MEMBER_REF_EXPR:
        inner = [k for k in kids[0].get_children() if k.kind.is_expression()]
        return inner[0] if len(inner) == 1 else None
    if ref.kind == K.CONSTRUCTOR and len(kids) == 1:
        return kids[0]
    return None


@memo
def _tokens(cursor: ci.Cursor) -> List[ci.Token]:
    return list(cursor.get_tokens())


@memo
def operator(cursor: ci.Cursor) -> Optional[Tuple[str, List[ci.Cursor]]]:
    """(operator spelling, operands) of a built-in or overloaded operator expression, else None.

    Unary operators are returned as ``'u-'``, ``'u*'``, ``'u&'``, ``'++'`` ... with one operand.
    """
    kids = [k for k in cursor.get_children() if k.kind.is_expression()]
    if cursor.kind in (K.BINARY_OPERATOR, K.COMPOUND_ASSIGNMENT_OPERATOR) and len(kids) == 2:
        end = kids[0].extent.end.offset
        for t in _tokens(cursor):
            if t.extent.start.offset >= end and t.kind == ci.TokenKind.PUNCTUATION:
                return t.spelling, kids
        return "?", kids
    if cursor.kind == K.UNARY_OPERATOR and len(kids) == 1:
        toks = _tokens(cursor)
        if not toks:
            return "u?", kids
        if toks[0].kind == ci.TokenKind.PUNCTUATION and toks[0].extent.start.offset < kids[0].extent.start.offset:
            s = toks[0].spelling
            return (s if s in ("++", "--") else "u" + s), kids
        return toks[-1].spelling, kids  # postfix ++ / --
    if cursor.kind == K.CALL_EXPR:
        name = None
        operands = []
        for k in kids:
            ref = k.referenced
            inner = [c for c in k.get_children() if c.kind == K.OVERLOADED_DECL_REF]
            cand = inner[0].spelling if inner else (ref.spelling if ref is not None else "")
            if name is None and cand.startswith("operator") and k.kind in (K.DECL_REF_EXPR, K.UNEXPOSED_EXPR,
                                                                            K.MEMBER_REF_EXPR):
                name = cand[len("operator"):].strip()
                if k.kind == K.MEMBER_REF_EXPR:  # a.operator+(b) written as member call
                    operands += [c for c in k.get_children() if c.kind.is_expression()]
                continue
            operands.append(k)
        if name and re.fullmatch(r"[^\w\s]+|\[\]|\(\)", name):
            if len(operands) == 1 and name in ("-", "+", "*", "&", "~", "!"):
                return "u" + name, operands
            return name, operands
    return None


def dependent_member(cursor: ci.Cursor) -> Optional[str]:
    """For a dependent ``C::name`` reference in a template, the member name; else None."""
    if cursor.kind != K.DECL_REF_EXPR or cursor.referenced is not None:
        return None
    toks = [t.spelling for t in _tokens(cursor)]
    if len(toks) >= 3 and toks[-2] == "::":
        return toks[-1]
    return None


def type_dims(t: ci.Type) -> Tuple[List[int], ci.Type]:
    """(dimension sizes, element type) of a (possibly decayed) array type; [] for scalars."""
    dims: List[int] = []
    t = t.get_canonical()
    if t.kind in (ci.TypeKind.POINTER,) and t.get_pointee().get_canonical().kind == ci.TypeKind.CONSTANTARRAY:
        dims.append(-1)
        t = t.get_pointee().get_canonical()
    elif t.kind in (ci.TypeKind.INCOMPLETEARRAY,):
        dims.append(-1)
        t = t.element_type.get_canonical()
    while t.kind == ci.TypeKind.CONSTANTARRAY:
        dims.append(t.get_array_size())
        t = t.element_type.get_canonical()
    return dims, t


_APW = re.compile(r"\bap_u?(?:int|fixed|ufixed)<\s*(\d+)")


def bit_width(t: ci.Type) -> int:
    """Width in bits of one element: ap_[u]int<N> -> N, structs -> sum of fields, else sizeof."""
    t = t.get_canonical()
    m = _APW.search(t.spelling)
    if m:
        return int(m.group(1))
    if t.kind == ci.TypeKind.RECORD:
        decl = t.get_declaration()
        fields = [c for c in decl.get_children() if c.kind == K.FIELD_DECL]
        if fields:
            total = 0
            for f in fields:
                dims, el = type_dims(f.type)
                n = 1
                for d in dims:
                    n *= max(d, 1)
                total += n * bit_width(el)
            return total
    if t.kind == ci.TypeKind.BOOL:
        return 1
    size = t.get_size()
    return 8 * size if size > 0 else 0


def project_cursors(unit: Unit) -> Iterator[ci.Cursor]:
    """Top-level declarations of project files, descending into namespaces, extern "C" and records."""
    stack = [c for c in unit.tu.cursor.get_children() if unit.in_project(c)]
    while stack:
        c = stack.pop(0)
        yield c
        if c.kind in (K.NAMESPACE, K.LINKAGE_SPEC, K.STRUCT_DECL, K.CLASS_DECL, K.CLASS_TEMPLATE):
            stack[0:0] = [k for k in c.get_children() if unit.in_project(k)]


def function_definitions(unit: Unit) -> Dict[Tuple[str, int, str], ci.Cursor]:
    """Project function definitions (plain and template) keyed by (file, line, name)."""
    out: Dict[Tuple[str, int, str], ci.Cursor] = {}
    for c in project_cursors(unit):
        if c.kind in (K.FUNCTION_DECL, K.FUNCTION_TEMPLATE, K.CXX_METHOD) and c.is_definition():
            out[(c.location.file.name, c.location.line, c.spelling)] = c
    return out


def definition_of(call: ci.Cursor, defs: Dict[Tuple[str, int, str], ci.Cursor],
                  by_usr: Optional[Dict[str, ci.Cursor]] = None) -> Optional[ci.Cursor]:
    """The project definition a call expression calls (template instantiations map to the template;
    a function defined in another source of the engine is found by its USR in ``by_usr``)."""
    ref = call.referenced
    if ref is None or ref.kind not in (K.FUNCTION_DECL, K.FUNCTION_TEMPLATE, K.CXX_METHOD):
        return None
    d = ref.get_definition() or ref
    if d.location.file is None:
        return None
    found = defs.get((d.location.file.name, d.location.line, d.spelling)) or \
        defs.get((ref.location.file.name, ref.location.line, ref.spelling) if ref.location.file else ("", 0, ""))
    if found is None and by_usr:
        found = by_usr.get(ref.get_usr())
    return found


def body_of(func: ci.Cursor) -> Optional[ci.Cursor]:
    for k in func.get_children():
        if k.kind == K.COMPOUND_STMT:
            return k
    return None


def innermost(cursors: Iterable[ci.Cursor], file: str, line: int) -> Optional[ci.Cursor]:
    """The cursor with the smallest extent that contains file:line."""
    best = None
    for c in cursors:
        e = c.extent
        if e.start.file is None or os.path.realpath(e.start.file.name) != os.path.realpath(file):
            continue
        if e.start.line <= line <= e.end.line:
            if best is None or (e.end.offset - e.start.offset) < (best.extent.end.offset - best.extent.start.offset):
                best = c
    return best
