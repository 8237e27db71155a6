#!/usr/bin/env python3
"""HLS lint for the CoDeNet engine: burstable m_axi indices, pipelined-loop bodies, array ports.

Usage::

    python hls_src/tools/hls_lint.py [SOURCES...] [-I DIR] [--top NAME]

Rules (docs/hls_tools.md has the details and what the lint cannot see):

* ``maxi-affine``: an m_axi port accessed in a loop with an index that is not
  invariant + invariant * (innermost loop variable), or that contains a table lookup, a struct
  field read from an array, or a function call.
* ``pipeline-var-loop``: a loop nested in a pipelined loop whose bounds are not compile-time
  constants (HLS must unroll it fully).
* ``pipeline-call``: a call inside a pipelined loop to a function without ``#pragma HLS INLINE``.
* ``ports`` / ``ii``: a pipelined iteration accesses one bank of an array more than twice (2 ports
  per bank, a read or a write each; banks from ARRAY_PARTITION, wide words from ARRAY_RESHAPE);
  ``ii`` when the loop declares an II the count cannot meet.
* ``runtime-bank``: a read in a pipelined loop whose index in a partitioned dimension is not a
  compile-time function of unrolled loop variables (a runtime-selected bank).

Prints one ``file:line: rule: message`` line per finding and exits 1 if there is any.
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent))

import cn_expr  # noqa: E402
import hls_ast as ha  # noqa: E402
from hls_index import Access, Analyzer, Ctx, Lin, Loop, text_of  # noqa: E402

K = ha.K
LOOP_KINDS = (K.FOR_STMT, K.WHILE_STMT, K.DO_STMT, K.CXX_FOR_RANGE_STMT)
MAX_COMBOS = 4096
_DEFINE = re.compile(r"^\s*#\s*define\s+(\w+)\s+\(?\s*(0[xX][0-9a-fA-F]+|\d+)\s*\)?\s*(?://.*)?$")


@dataclass(frozen=True, order=True)
class Finding:
    """One lint finding."""

    file: str
    line: int
    rule: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.rule}: {self.message}"


@dataclass
class LoopParts:
    init: Optional[ha.ci.Cursor]
    cond: Optional[ha.ci.Cursor]
    inc: Optional[ha.ci.Cursor]
    body: Optional[ha.ci.Cursor]


@dataclass
class Region:
    """A pipelined loop being walked, with the array reads and writes of one iteration."""

    loop: Loop
    depth: int
    reads: List[Tuple[Access, Ctx, ha.ci.Cursor]] = field(default_factory=list)
    writes: List[Tuple[Access, Ctx, ha.ci.Cursor]] = field(default_factory=list)


@dataclass
class Partition:
    kind: str        # complete / cyclic / block
    factor: int      # banks (partition) or elements per word (reshape)
    reshape: bool


def loop_parts(loop: ha.ci.Cursor) -> LoopParts:
    """Split a loop statement into init / cond / inc / body (libclang omits empty parts)."""
    kids = list(loop.get_children())
    if loop.kind == K.WHILE_STMT:
        return LoopParts(None, kids[0] if kids else None, None, kids[-1] if len(kids) > 1 else None)
    if loop.kind == K.DO_STMT:
        return LoopParts(None, kids[-1] if len(kids) > 1 else None, None, kids[0] if kids else None)
    if loop.kind != K.FOR_STMT:
        return LoopParts(None, None, None, kids[-1] if kids else None)
    semis, depth, close = [], 0, None
    for t in loop.get_tokens():
        s = t.spelling
        if s == "(":
            depth += 1
        elif s == ")":
            depth -= 1
            if depth == 0:
                close = t.extent.start.offset
                break
        elif s == ";" and depth == 1:
            semis.append(t.extent.start.offset)
    parts = LoopParts(None, None, None, None)
    if len(semis) != 2 or close is None:
        parts.body = kids[-1] if kids else None
        return parts
    for k in kids:
        off = k.extent.start.offset
        if off < semis[0]:
            parts.init = k
        elif off < semis[1]:
            parts.cond = k
        elif off < close:
            parts.inc = k
        else:
            parts.body = k
    return parts


class Linter:
    """Walks every top function of the engine's sources (parsed units) and applies the rules."""

    def __init__(self, units: Sequence[ha.Unit], tops: Sequence[str] = ()) -> None:
        self.units = list(units)
        self.path = ", ".join(u.path for u in self.units)
        self.an = Analyzer(self.units)
        self.defs: Dict[Tuple[str, int, str], ha.ci.Cursor] = {}
        for unit in self.units:
            for k, v in ha.function_definitions(unit).items():
                self.defs.setdefault(k, v)
        # non-static functions by USR: calls into another source of the engine
        self.by_usr = {d.get_usr(): d for d in self.defs.values()
                       if d.storage_class != ha.ci.StorageClass.STATIC and d.get_usr()}
        self._pragmas: Dict[str, List[ha.Pragma]] = {}
        self.names = self._defines()
        self.findings: Dict[Tuple[str, int, str], Finding] = {}
        self._fn_pragmas: Dict[tuple, Tuple[List[ha.Pragma], Dict[int, List[ha.Pragma]]]] = {}
        self._labels: Dict[int, str] = {}
        self.contexts = 0
        self._array_pragmas: Optional[list] = None
        self.tops = [d for d in self.defs.values() if (d.spelling in tops if tops else self._is_top(d))]

    # ---- setup
    def _defines(self) -> Dict[str, int]:
        names: Dict[str, int] = {}
        files: Dict[str, Tuple[str, ...]] = {}
        for u in self.units:
            for f in [u.path] + [os.path.realpath(i.include.name) for i in u.tu.get_includes()]:
                files.setdefault(f, u.project_dirs)
        for f, dirs in sorted(files.items()):
            if f.startswith(dirs) and Path(f).is_file():
                for line in Path(f).read_text(encoding="utf-8", errors="replace").splitlines():
                    m = _DEFINE.match(line)
                    if m:
                        names[m.group(1)] = int(m.group(2), 0)
        return names

    def _is_top(self, d: ha.ci.Cursor) -> bool:
        own, _ = self.fn_pragmas(d)
        return any(p.kind == "INTERFACE" for p in own)

    def fn_pragmas(self, func: ha.ci.Cursor) -> Tuple[List[ha.Pragma], Dict[int, List[ha.Pragma]]]:
        """(function-level pragmas, loop start offset -> pragmas of that loop body) of a function."""
        key = ha.decl_key(func)
        if key in self._fn_pragmas:
            return self._fn_pragmas[key]
        file = func.location.file.name
        ext = func.extent
        real = os.path.realpath(file)
        if real not in self._pragmas:
            self._pragmas[real] = ha.read_pragmas(real) if Path(real).is_file() else []
        prag = [p for p in self._pragmas[real] if ext.start.line <= p.line <= ext.end.line]
        loops = [c for c in func.walk_preorder() if c.kind in LOOP_KINDS]
        for c in func.walk_preorder():
            if c.kind == K.LABEL_STMT:
                for k in c.get_children():
                    if k.kind in LOOP_KINDS:
                        self._labels[k.hash] = c.spelling
        bodies = [loop_parts(c).body for c in loops]
        own: List[ha.Pragma] = []
        per_loop: Dict[int, List[ha.Pragma]] = {}
        for p in prag:
            body = ha.innermost([b for b in bodies if b is not None], file, p.line)
            if body is None:
                own.append(p)
            else:
                loop = loops[[b.hash if b is not None else None for b in bodies].index(body.hash)]
                per_loop.setdefault(loop.extent.start.offset, []).append(p)
        self._fn_pragmas[key] = (own, per_loop)
        return own, per_loop

    def is_inlined(self, func: ha.ci.Cursor) -> bool:
        own, _ = self.fn_pragmas(func)
        return any(p.kind == "INLINE" and not p.has("off") for p in own)

    def add(self, cursor: ha.ci.Cursor, rule: str, message: str) -> None:
        loc = cursor.location
        self.add_at(loc.file.name if loc.file else self.path, loc.line, rule, message)

    def add_at(self, file: str, line: int, rule: str, message: str) -> None:
        file = ha.display_path(file)
        key = (file, line, rule)
        if key not in self.findings:
            self.findings[key] = Finding(file, line, rule, message)

    def loop_name(self, c: ha.ci.Cursor) -> str:
        label = self._labels.get(c.hash)
        return f"'{label}'" if label else f"at line {c.location.line}"

    # ---- walking
    def run(self) -> List[Finding]:
        if not self.tops:
            raise ha.ToolError(f"{self.path}: no top function found (no '#pragma HLS INTERFACE' in any "
                               "function). Pass --top NAME.")
        for top in self.tops:
            own, _ = self.fn_pragmas(top)
            ports = {p.arg("port") for p in own
                     if p.kind == "INTERFACE" and (p.has("m_axi") or p.arg("mode") == "m_axi")}
            params = [c for c in top.get_children() if c.kind == K.PARM_DECL]
            ctx = Ctx(top, ports=tuple((ha.decl_key(c), c.spelling) for c in params if c.spelling in ports),
                      chain=((top.location.file.name, top.location.line, top.spelling),))
            self.walk_function(top, ctx, None)
        return sorted(self.findings.values())

    def walk(self, c: ha.ci.Cursor, ctx: Ctx, region: Optional[Region]) -> None:
        kind = c.kind
        if kind in LOOP_KINDS:
            self.visit_loop(c, ctx, region)
            return
        if kind == K.ARRAY_SUBSCRIPT_EXPR:
            self.visit_subscript(c, ctx, region, write=False)
            return
        if kind in (K.BINARY_OPERATOR, K.COMPOUND_ASSIGNMENT_OPERATOR, K.UNARY_OPERATOR, K.CALL_EXPR):
            op = ha.operator(c)
            if op is not None:
                name, ops = op
                if name.endswith("=") and name not in ("==", "!=", "<=", ">=") and ops:
                    lhs = ha.strip(ops[0])
                    while lhs.kind == K.MEMBER_REF_EXPR and [k for k in lhs.get_children() if k.kind.is_expression()]:
                        lhs = ha.strip([k for k in lhs.get_children() if k.kind.is_expression()][0])
                    if lhs.kind == K.ARRAY_SUBSCRIPT_EXPR:
                        if name != "=":  # a[i] op= x reads a[i], then writes it
                            self.visit_subscript(lhs, ctx, region, write=False)
                        self.visit_subscript(lhs, ctx, region, write=True)
                    else:
                        self.walk(ops[0], ctx, region)
                    for o in ops[1:]:
                        self.walk(o, ctx, region)
                    return
                if name == "u*":
                    acc = self.an.resolve(ops[0], ctx)
                    if acc is not None and acc.kind == "port":
                        self.check_maxi(acc, ctx, c)
                if name == "u&" and ha.strip(ops[0]).kind == K.ARRAY_SUBSCRIPT_EXPR:
                    self.visit_subscript(ha.strip(ops[0]), ctx, None, write=True)  # address only (no access)
                    return
            elif kind == K.CALL_EXPR and ha.conversion_operand(c) is None:
                self.visit_call(c, ctx, region)
                return
        for k in c.get_children():
            self.walk(k, ctx, region)

    def visit_subscript(self, c: ha.ci.Cursor, ctx: Ctx, region: Optional[Region], write: bool) -> None:
        acc = self.an.resolve(c, ctx)
        if acc is None:
            for k in c.get_children():
                self.walk(k, ctx, region)
            return
        element = c.type.get_canonical().kind not in (ha.ci.TypeKind.CONSTANTARRAY, ha.ci.TypeKind.INCOMPLETEARRAY)
        if acc.kind == "port" and element:
            self.check_maxi(acc, ctx, c)
        elif acc.kind == "array" and element and region is not None and not acc.registers:
            (region.writes if write else region.reads).append((acc, ctx, c))
        for expr, ectx, _ in acc.flat():
            self.walk(expr, ectx, region)

    def visit_call(self, c: ha.ci.Cursor, ctx: Ctx, region: Optional[Region]) -> None:
        fdef = ha.definition_of(c, self.defs, self.by_usr)
        if fdef is None:
            for k in c.get_children():
                self.walk(k, ctx, region)
            return
        args = list(c.get_arguments())
        for a in args:
            self.walk(a, ctx, region)
        inlined = self.is_inlined(fdef)
        if region is not None and not inlined:
            self.add(c, "pipeline-call", f"call to '{fdef.spelling}' inside pipelined loop "
                     f"{region.loop.name} is not inlined (add '#pragma HLS INLINE' to "
                     f"'{fdef.spelling}' or move the call out of the pipelined loop)")
        ident = (fdef.location.file.name, fdef.location.line, fdef.spelling)
        if ident in ctx.chain:
            return
        self.contexts += 1
        if self.contexts > 20000:
            raise ha.ToolError(f"{self.path}: call graph too large to lint (over 20000 call contexts).")
        params = [k for k in fdef.get_children() if k.kind == K.PARM_DECL]
        bindings = tuple((ha.decl_key(p), a, ctx) for p, a in zip(params, args))
        sub = Ctx(fdef, bindings, (), ctx.loops, ctx.chain + (ident,), self._template_args(c, fdef))
        self.walk_function(fdef, sub, region if inlined else None)

    def walk_function(self, fdef: ha.ci.Cursor, ctx: Ctx, region: Optional[Region]) -> None:
        """Walk a function body; a function-level PIPELINE makes the whole body one pipelined iteration."""
        body = ha.body_of(fdef)
        if body is None:
            return
        own, _ = self.fn_pragmas(fdef)
        pipe = next((p for p in own if p.kind == "PIPELINE" and not p.has("off")), None)
        if pipe is None or region is not None:
            self.walk(body, ctx, region)
            return
        loop = Loop(body, None, f"(function {fdef.spelling})", pipelined=True, ii=self._ii(pipe))
        inner = ctx.with_loop(loop)
        reg = Region(loop, len(inner.loops) - 1)
        self.walk(body, inner, reg)
        self.check_ports(reg)

    def _ii(self, pipe: ha.Pragma) -> Optional[int]:
        """The II a PIPELINE pragma declares (None when absent or not evaluable)."""
        try:
            return cn_expr.eval_int(pipe.arg("ii"), self.names) if pipe.arg("ii") else None
        except cn_expr.ExprError:
            return None

    @staticmethod
    def _template_args(call: ha.ci.Cursor, fdef: ha.ci.Cursor) -> Tuple[Tuple[str, object], ...]:
        """Template parameter name -> argument (record cursor for types, int for values) of a call."""
        names = [k.spelling for k in fdef.get_children()
                 if k.kind in (K.TEMPLATE_TYPE_PARAMETER, K.TEMPLATE_NON_TYPE_PARAMETER)]
        ref = call.referenced
        if not names or ref is None:
            return ()
        out = []
        for i, name in enumerate(names[: max(ref.get_num_template_arguments(), 0)]):
            kind = ref.get_template_argument_kind(i)
            if kind == ha.ci.TemplateArgumentKind.INTEGRAL:
                out.append((name, int(ref.get_template_argument_value(i))))
            elif kind == ha.ci.TemplateArgumentKind.TYPE:
                decl = ref.get_template_argument_type(i).get_canonical().get_declaration()
                if decl is not None and decl.kind != K.NO_DECL_FOUND:
                    out.append((name, decl))
        return tuple(out)

    def visit_loop(self, c: ha.ci.Cursor, ctx: Ctx, region: Optional[Region]) -> None:
        parts = loop_parts(c)
        _, per_loop = self.fn_pragmas(ctx.func)
        prag = per_loop.get(c.extent.start.offset, [])
        pipe = next((p for p in prag if p.kind == "PIPELINE" and not p.has("off")), None)
        unroll = next((p for p in prag if p.kind == "UNROLL"), None)
        var = self._loop_var(parts)
        name = self.loop_name(c)
        if region is not None:
            values = self._values(parts, var, ctx)
            if values is None:
                self.add(c, "pipeline-var-loop", f"loop {name} inside pipelined loop {region.loop.name} "
                         f"has bounds that are not compile-time constants ({self._bounds_text(parts)}); HLS must "
                         "unroll it fully: give it constant bounds or move it out of the pipelined loop")
            loop = Loop(c, var, name, unrolled=True, values=tuple(values) if values else None)
        elif pipe is not None:
            loop = Loop(c, var, name, pipelined=True, ii=self._ii(pipe))
        else:
            values = self._values(parts, var, ctx) if unroll is not None else None
            loop = Loop(c, var, name, unrolled=values is not None, values=tuple(values) if values else None)
        inner = ctx.with_loop(loop)
        if parts.init is not None:
            self.walk(parts.init, ctx, region)
        for k in (parts.cond, parts.inc):
            if k is not None:
                self.walk(k, inner, region)
        if parts.body is None:
            return
        if loop.pipelined:
            reg = Region(loop, len(inner.loops) - 1)
            self.walk(parts.body, inner, reg)
            self.check_ports(reg)
        else:
            self.walk(parts.body, inner, region)

    # ---- loop bounds
    def _loop_var(self, parts: LoopParts) -> Optional[ha.ci.Cursor]:
        if parts.init is not None and parts.init.kind == K.DECL_STMT:
            for v in parts.init.get_children():
                if v.kind == K.VAR_DECL:
                    return ha.decl_key(v)
        for part in (parts.inc, parts.init):
            if part is None:
                continue
            op = ha.operator(part)
            if op is not None and op[1]:
                t = ha.strip(op[1][0])
                if t.kind == K.DECL_REF_EXPR and t.referenced is not None:
                    return ha.decl_key(t.referenced)
        return None

    def _const(self, expr: Optional[ha.ci.Cursor], ctx: Ctx) -> Optional[int]:
        if expr is None:
            return None
        lin = self.an.lin(expr, ctx, frozenset(), {}, None)
        return lin.const if lin.pure else None

    def _values(self, parts: LoopParts, var, ctx: Ctx) -> Optional[List[int]]:
        """The values a constant-bound loop variable takes, or None when the bounds are not constant."""
        if var is None or parts.cond is None or parts.inc is None:
            return None
        init = None
        if parts.init is not None and parts.init.kind == K.DECL_STMT:
            v = [k for k in parts.init.get_children() if k.kind == K.VAR_DECL]
            kids = [k for k in v[0].get_children() if k.kind.is_expression()] if v else []
            init = self._const(kids[-1], ctx) if kids else None
        elif parts.init is not None:
            op = ha.operator(parts.init)
            init = self._const(op[1][1], ctx) if op and op[0] == "=" and len(op[1]) == 2 else None
        cond = ha.operator(parts.cond)
        if init is None or cond is None or len(cond[1]) != 2:
            return None
        rel, (a, b) = cond
        if self._is_var(a, var):
            bound = self._const(b, ctx)
        elif self._is_var(b, var):
            bound = self._const(a, ctx)
            rel = {"<": ">", ">": "<", "<=": ">=", ">=": "<=", "!=": "!="}.get(rel, "?")
        else:
            return None
        inc = ha.operator(parts.inc)
        if bound is None or inc is None:
            return None
        step = {"++": 1, "--": -1}.get(inc[0])
        if step is None and inc[0] in ("+=", "-=") and len(inc[1]) == 2:
            s = self._const(inc[1][1], ctx)
            step = None if s is None else (s if inc[0] == "+=" else -s)
        if not step:
            return None
        out: List[int] = []
        i = init
        test = {"<": lambda x: x < bound, "<=": lambda x: x <= bound, ">": lambda x: x > bound,
                ">=": lambda x: x >= bound, "!=": lambda x: x != bound}.get(rel)
        if test is None:
            return None
        while test(i) and len(out) <= 1 << 16:
            out.append(i)
            i += step
        return out

    @staticmethod
    def _is_var(expr: ha.ci.Cursor, var) -> bool:
        e = ha.strip(expr)
        return e.kind == K.DECL_REF_EXPR and e.referenced is not None and ha.decl_key(e.referenced) == var

    @staticmethod
    def _bounds_text(parts: LoopParts) -> str:
        return "; ".join(text_of(p, 40).rstrip(";") for p in (parts.init, parts.cond, parts.inc) if p is not None)

    # ---- rule (a): burstable m_axi index
    def check_maxi(self, acc: Access, ctx: Ctx, site: ha.ci.Cursor) -> None:
        if not ctx.loops:
            return
        loop = ctx.loops[-1]
        focus = frozenset([loop.var]) if loop.var is not None else frozenset()
        lin = self.an.lin_sum(acc.flat(), focus, {}, loop)
        if lin.bad or lin.dirty:
            why = "; ".join(dict.fromkeys(lin.bad + lin.dirty))
            self.add(site, "maxi-affine", f"m_axi port '{acc.name}' accessed as {text_of(site)} in loop {loop.name}: "
                     f"index is not invariant + invariant * loop variable, so no burst is inferred ({why})")

    # ---- rule (c): reads per bank in one pipelined iteration
    def partitions(self, acc: Access) -> Dict[int, Partition]:
        """Partition/reshape per dimension (0-based) from pragmas naming the array or a parameter it passed."""
        if self._array_pragmas is None:
            self._array_pragmas = []
            for func in self.defs.values():
                own, per_loop = self.fn_pragmas(func)
                for p in own + [q for v in per_loop.values() for q in v]:
                    if p.kind in ("ARRAY_PARTITION", "ARRAY_RESHAPE"):
                        target = self._pragma_target(func, p.arg("variable") or "")
                        if target is None:
                            self.add_at(p.file, p.line, "pragma", f"{p.kind} variable={p.arg('variable')} names no "
                                        f"variable or parameter of {func.spelling}()")
                        self._array_pragmas.append((target, p, func))
        out: Dict[int, Partition] = {}
        for target, p, func in self._array_pragmas:
            if target is None or target not in acc.chain:
                continue
            kind = p.arg("type") or next((w for w in p.words if w in ("complete", "cyclic", "block")), "complete")
            try:
                dim = cn_expr.eval_int(p.arg("dim") or "1", self.names)
            except cn_expr.ExprError:
                self.add(func, "pragma", f"cannot evaluate dim={p.arg('dim')} of {p.kind} variable={p.arg('variable')}")
                continue
            dims = range(len(acc.dims)) if dim == 0 else [dim - 1]
            for d in dims:
                size = acc.dims[d] if d < len(acc.dims) else -1
                if kind == "complete":
                    factor = size
                else:
                    try:
                        factor = cn_expr.eval_int(p.arg("factor") or "1", self.names)
                    except cn_expr.ExprError:
                        self.add(func, "pragma", f"cannot evaluate factor={p.arg('factor')} of "
                                 f"{p.kind} variable={p.arg('variable')} (use a literal or a CN_* define)")
                        factor = 1
                out[d] = Partition(kind, max(factor, 1), p.kind == "ARRAY_RESHAPE")
        return out

    def _pragma_target(self, func: ha.ci.Cursor, name: str):
        base, _, member = name.partition(".")
        for c in func.walk_preorder():
            if c.kind in (K.VAR_DECL, K.PARM_DECL) and c.spelling == base:
                key = ha.decl_key(c)
                return (key, member) if member else key
        return None

    def check_ports(self, region: Region) -> None:
        per_array: Dict[tuple, dict] = {}
        accesses = [(a, c, s, False) for a, c, s in region.reads] + [(a, c, s, True) for a, c, s in region.writes]
        for acc, ctx, site, write in accesses:
            unrolled = [lp for lp in ctx.loops[region.depth + 1:] if lp.unrolled]
            ranges = [lp.values if lp.values else (None,) for lp in unrolled]
            n = math.prod(len(r) for r in ranges)
            part = self.partitions(acc)
            entry = per_array.setdefault(acc.key, {"name": acc.name, "banks": Counter(), "words": set(),
                                                   "part": part, "site": site, "reads": 0, "writes": 0,
                                                   "wild": 0})
            runtime_dims: Dict[int, str] = {}
            combos = itertools.product(*ranges) if n <= MAX_COMBOS else [tuple(r[0] for r in ranges)]
            weight = 1 if n <= MAX_COMBOS else n
            focus = frozenset([region.loop.var]) if region.loop.var is not None else frozenset()
            for combo in combos:
                env = {lp.var: v for lp, v in zip(unrolled, combo) if v is not None and lp.var is not None}
                bank, word = [], []
                for d, exprs in enumerate(acc.idx):
                    lin = self.an.lin_sum(exprs, focus, env, region.loop)
                    p = part.get(d)
                    b, w = self._bank(lin, p, acc.dims[d] if d < len(acc.dims) else -1)
                    if b == "R" and p is not None and not p.reshape and p.factor > 1:
                        runtime_dims[d] = "; ".join(dict.fromkeys(lin.sym + lin.bad + lin.dirty)) or "runtime index"
                    bank.append(b)
                    word.append(w)
                # identical addresses in one iteration are one read / one write (HLS shares them);
                # a write takes a port of its bank like a read (the idle half of a ping-pong buffer
                # written while the other half is read: one port each)
                if weight > 1 or (write, tuple(bank), tuple(word)) not in entry["words"]:
                    entry["words"].add((write, tuple(bank), tuple(word)))
                    if write and "R" in bank:  # a write to a runtime-selected bank holds a port of every bank
                        entry["wild"] += weight
                    else:
                        entry["banks"][tuple(bank)] += weight
                    entry["writes" if write else "reads"] += weight
            if write:  # a write to a runtime-selected bank is a write-enable decode, not a read mux
                continue
            for d, why in runtime_dims.items():
                p = part[d]
                self.add(site, "runtime-bank", f"runtime-selected bank: {text_of(site)} in pipelined loop "
                         f"{region.loop.name} indexes partitioned dim {d + 1} of '{acc.name}' ({p.kind} {p.factor}) "
                         f"with a value that is not a compile-time function of unrolled loop variables ({why}); "
                         "counted against one bank")
        target = region.loop.ii or 1
        for info in per_array.values():
            if not info["banks"] and not info["wild"]:
                continue
            worst = (info["banks"].most_common(1)[0][1] if info["banks"] else 0) + info["wild"]
            need = math.ceil(worst / 2)
            if need <= target:
                continue
            nbanks = math.prod(p.factor for p in info["part"].values() if not p.reshape) if info["part"] else 1
            rule = "ii" if region.loop.ii is not None else "ports"
            declared = f"declared II={region.loop.ii} cannot be met" if region.loop.ii is not None else "II=1 impossible"
            writes = f" and writes {info['writes']}" if info["writes"] else ""
            self.add(info["site"], rule, f"pipelined loop {region.loop.name} reads '{info['name']}' {info['reads']} "
                     f"distinct elements{writes} per iteration, {worst} from one bank ({nbanks} bank(s) x 2 ports): "
                     f"II >= {need}, {declared}; partition or reshape '{info['name']}' so the accesses of one "
                     "iteration spread over distinct banks")

    @staticmethod
    def _bank(lin: Lin, p: Optional[Partition], size: int):
        """(bank id or 'R' for runtime, word key) of one index in one dimension."""
        compile_time = not (lin.sym or lin.bad or lin.dirty)
        word = lin.signature()
        if p is None:
            return 0, word
        if p.reshape:
            if p.kind == "complete":
                return 0, (lin.signature()[1:], "w")
            if compile_time and not lin.terms:
                per = p.factor if p.kind == "cyclic" else max(size // p.factor, 1)
                return 0, (lin.const // per if p.kind == "cyclic" else lin.const % per)
            return 0, word
        if p.kind == "cyclic":
            if compile_time and all(c is not None and c % p.factor == 0 for c in lin.terms.values()):
                return lin.const % p.factor, word
            return "R", word
        if compile_time and not lin.terms:
            if p.kind == "complete":
                return lin.const, word
            return lin.const // max(math.ceil(size / p.factor), 1), word
        return "R", word


def lint(sources: Sequence[str], include_dirs: Sequence[str] = (), tops: Sequence[str] = ()) -> List[Finding]:
    """Lint engine sources; returns the findings (empty = clean)."""
    units = [ha.parse(src, include_dirs) for src in sources]  # all first: calls may cross sources
    return Linter(units, tops).run()


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("sources", nargs="*", help="engine sources (default: hls_src/codenet_top.cpp hls_src/cn_desc.cpp)")
    ap.add_argument("-I", dest="include", action="append", default=[], help="include directory (default: hls_src)")
    ap.add_argument("--top", action="append", default=[], help="top function (default: functions with INTERFACE pragmas)")
    args = ap.parse_args(argv)
    sources = args.sources or [str(ha.HLS_DIR / s) for s in ha.DEFAULT_SOURCES]
    include = args.include or [str(ha.HLS_DIR)]
    try:
        findings = lint(sources, include, args.top)
    except ha.ToolError as exc:
        print(f"hls_lint: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # an AST shape the lint does not handle: fail loudly, never pass silently
        print(f"hls_lint: internal error ({type(exc).__name__}: {exc}); please report it with the source",
              file=sys.stderr)
        return 2
    for f in findings:
        print(f)
    rules = Counter(f.rule for f in findings)
    summary = ", ".join(f"{n} {r}" for r, n in sorted(rules.items())) or "no findings"
    print(f"hls_lint: {len(sources)} source(s): {summary}", file=sys.stderr)
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
