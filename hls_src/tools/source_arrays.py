"""The on-chip arrays an engine source declares, for the budget's drift check (libclang).

Every variable of array type declared inside a project function (static or local, not a
parameter) is one entry; a struct variable contributes one entry per array field, named
``var.field``.  Element widths: ap_[u]int<N> -> N, structs -> the sum of their fields.  The
ARRAY_PARTITION / ARRAY_RESHAPE pragmas of the declaring function that name the array are kept
(as text: the budget evaluates them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

import hls_ast as ha

K = ha.K
PartText = Tuple[str, str, str, bool]  # kind, factor text, dim text, reshape


@dataclass(frozen=True)
class SourceArray:
    file: str
    line: int
    function: str
    name: str
    width: int
    dims: tuple
    partitions: Tuple[PartText, ...] = ()


def _partitions(func: ha.ci.Cursor) -> Dict[str, List[PartText]]:
    """variable name -> (kind, factor text, dim text, reshape) of the function's array pragmas."""
    out: Dict[str, List[PartText]] = {}
    ext = func.extent
    for p in ha.read_pragmas(func.location.file.name):
        if p.kind in ("ARRAY_PARTITION", "ARRAY_RESHAPE") and ext.start.line <= p.line <= ext.end.line:
            kind = p.arg("type") or next((w for w in p.words if w in ("complete", "cyclic", "block")), "complete")
            out.setdefault(p.arg("variable") or "", []).append(
                (kind, p.arg("factor") or "", p.arg("dim") or "1", p.kind == "ARRAY_RESHAPE"))
    return out


def _arrays_of(func: ha.ci.Cursor) -> List[SourceArray]:
    out: List[SourceArray] = []
    parts = _partitions(func)

    def add(decl: ha.ci.Cursor, name: str, width: int, dims: Sequence[int]) -> None:
        loc = decl.location
        out.append(SourceArray(ha.display_path(loc.file.name), loc.line, func.spelling, name, width, tuple(dims),
                               tuple(parts.get(name, ()))))

    for c in func.walk_preorder():
        if c.kind != K.VAR_DECL:
            continue
        dims, el = ha.type_dims(c.type)
        if dims:
            add(c, c.spelling, ha.bit_width(el), dims)
            continue
        t = c.type.get_canonical()
        if t.kind == ha.ci.TypeKind.RECORD and "hls::stream" not in t.spelling:
            for f in t.get_declaration().get_children():
                if f.kind == K.FIELD_DECL:
                    fd, fel = ha.type_dims(f.type)
                    if fd:
                        add(c, f"{c.spelling}.{f.spelling}", ha.bit_width(fel), fd)
    return out


def collect(sources: Sequence[str], include_dirs: Sequence[str] = ()) -> List[SourceArray]:
    """All arrays declared in the project functions of the given sources (deduplicated)."""
    seen = {}
    for src in sources:
        unit = ha.parse(src, include_dirs)
        for func in ha.function_definitions(unit).values():
            for a in _arrays_of(func):
                seen.setdefault((a.function, a.name), a)
    return sorted(seen.values(), key=lambda a: (a.file, a.line, a.name))
