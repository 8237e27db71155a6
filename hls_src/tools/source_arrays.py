"""The on-chip arrays an engine source declares, for the budget's drift check (libclang).

Every variable of array type declared inside a project function (static or local, not a
parameter) is one entry; a struct variable contributes one entry per array field, named
``var.field``.  Element widths: ap_[u]int<N> -> N, structs -> the sum of their fields.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Sequence

import hls_ast as ha

K = ha.K


@dataclass(frozen=True)
class SourceArray:
    file: str
    line: int
    function: str
    name: str
    width: int
    dims: tuple


def _arrays_of(func: ha.ci.Cursor) -> List[SourceArray]:
    out: List[SourceArray] = []
    for c in func.walk_preorder():
        if c.kind != K.VAR_DECL:
            continue
        dims, el = ha.type_dims(c.type)
        loc = c.location
        if dims:
            out.append(SourceArray(ha.display_path(loc.file.name), loc.line, func.spelling, c.spelling, ha.bit_width(el), tuple(dims)))
            continue
        t = c.type.get_canonical()
        if t.kind == ha.ci.TypeKind.RECORD and "hls::stream" not in t.spelling:
            for f in t.get_declaration().get_children():
                if f.kind == K.FIELD_DECL:
                    fd, fel = ha.type_dims(f.type)
                    if fd:
                        out.append(SourceArray(ha.display_path(loc.file.name), loc.line, func.spelling, f"{c.spelling}.{f.spelling}",
                                               ha.bit_width(fel), tuple(fd)))
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
