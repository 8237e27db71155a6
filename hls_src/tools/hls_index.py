"""Index analysis for the HLS lint: linear forms of index expressions and array/port resolution.

An index expression is reduced to a :class:`Lin`: a constant, integer (or runtime) coefficients
of the *focus* loop variables, and flags for runtime-invariant parts, non-affine use of a focus
variable (``bad``) and "dirty" parts that stop a burst (table lookups, struct fields read from
arrays, function calls).  Parameters are substituted by the caller's arguments (the analysis
follows calls), locals never reassigned by their initialiser.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field, replace
from typing import Dict, FrozenSet, List, Optional, Sequence, Tuple

import hls_ast as ha

K = ha.K
Key = Tuple[str, int, int]
#: array fields of a local (non-static) struct value up to this size are registers, not memories
REGISTER_MAX_BITS = 1024
#: arrays of at most this many elements are partitioned completely by Vitis HLS
#: (config_array_partition -complete_threshold, default 4)
COMPLETE_THRESHOLD = 4


# ------------------------------------------------------------------------------------ linear forms
@dataclass
class Lin:
    """const + sum(coef * focus var) [+ runtime invariant parts]; coef None = runtime coefficient."""

    const: int = 0
    terms: Dict[Key, Optional[int]] = field(default_factory=dict)
    sym: Tuple[str, ...] = ()
    bad: Tuple[str, ...] = ()
    dirty: Tuple[str, ...] = ()
    salt: tuple = ()  # values of unrolled variables inside runtime parts (keeps their signatures apart)

    @property
    def pure(self) -> bool:
        """A compile-time constant."""
        return not (self.terms or self.sym or self.bad or self.dirty)

    @property
    def invariant(self) -> bool:
        """Does not depend on any focus variable."""
        return not self.terms and not self.bad

    def signature(self) -> tuple:
        return (self.const, tuple(sorted(self.terms.items(), key=str)), tuple(sorted(self.sym)),
                self.bad, self.dirty, self.salt)


def _add(a: Lin, b: Lin, sign: int = 1) -> Lin:
    terms = dict(a.terms)
    for k, v in b.terms.items():
        if k in terms:
            terms[k] = None if terms[k] is None or v is None else terms[k] + sign * v
        else:
            terms[k] = None if v is None else sign * v
    return Lin(a.const + sign * b.const, terms, a.sym + b.sym, a.bad + b.bad, a.dirty + b.dirty, a.salt + b.salt)


def _scale(a: Lin, k: int) -> Lin:
    return Lin(a.const * k, {t: (None if v is None else v * k) for t, v in a.terms.items()},
               a.sym, a.bad, a.dirty, a.salt)


def _runtime(parts: Sequence[Lin], text: str) -> Lin:
    """A runtime value computed from loop-invariant parts."""
    sym: Tuple[str, ...] = (text,)
    for p in parts:
        sym += p.sym
    return Lin(0, {}, sym, tuple(b for p in parts for b in p.bad), tuple(d for p in parts for d in p.dirty),
               tuple(p.signature() for p in parts))


def _c_div(a: int, b: int) -> int:
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


_PURE_OPS = {
    "/": _c_div, "%": lambda a, b: a - b * _c_div(a, b), ">>": lambda a, b: a >> b, "&": lambda a, b: a & b,
    "|": lambda a, b: a | b, "^": lambda a, b: a ^ b, "<": lambda a, b: int(a < b), ">": lambda a, b: int(a > b),
    "<=": lambda a, b: int(a <= b), ">=": lambda a, b: int(a >= b), "==": lambda a, b: int(a == b),
    "!=": lambda a, b: int(a != b), "&&": lambda a, b: int(bool(a and b)), "||": lambda a, b: int(bool(a or b)),
}


@ha.memo
def _text(cursor: ha.ci.Cursor) -> str:
    s = " ".join(t.spelling for t in cursor.get_tokens())
    s = re.sub(r"\s*([\[\]().,:>])\s*", r"\1", s)
    return re.sub(r"\s*([\[(])", r"\1", s)


def text_of(cursor: ha.ci.Cursor, limit: int = 70) -> str:
    """Compact source text of an expression, for messages."""
    s = _text(cursor)
    return s if len(s) <= limit else s[: limit - 3] + "..."


# ------------------------------------------------------------------------------------ contexts
@dataclass(frozen=True)
class Loop:
    """One loop on the current path (possibly in a caller)."""

    cursor: ha.ci.Cursor
    var: Optional[Key]
    name: str
    pipelined: bool = False
    unrolled: bool = False
    values: Optional[Tuple[int, ...]] = None
    ii: Optional[int] = None

    def contains(self, file: str, offset: int) -> bool:
        e = self.cursor.extent
        return (e.start.file is not None and os.path.realpath(e.start.file.name) == os.path.realpath(file)
                and e.start.offset <= offset <= e.end.offset)


@dataclass(frozen=True)
class Ctx:
    """Where an expression is analysed: function, argument bindings, m_axi ports, loops on the path."""

    func: ha.ci.Cursor
    bindings: Tuple[Tuple[Key, ha.ci.Cursor, Ctx], ...] = ()
    ports: Tuple[Tuple[Key, str], ...] = ()
    loops: Tuple[Loop, ...] = ()
    chain: Tuple[Tuple[str, int, str], ...] = ()
    tparams: Tuple[Tuple[str, object], ...] = ()  # template parameter -> record cursor (type) or int

    def tparam(self, name: str) -> object:
        for k, v in self.tparams:
            if k == name:
                return v
        return None

    def binding(self, key: Key) -> Optional[Tuple[ha.ci.Cursor, Ctx]]:
        for k, arg, ctx in self.bindings:
            if k == key:
                return arg, ctx
        return None

    def port(self, key: Key) -> Optional[str]:
        for k, name in self.ports:
            if k == key:
                return name
        return None

    def with_loop(self, loop: Loop) -> Ctx:
        return replace(self, loops=self.loops + (loop,))


# ------------------------------------------------------------------------------------ resolution
@dataclass
class Access:
    """A resolved memory reference: an m_axi port or an on-chip array (root declaration)."""

    kind: str                      # 'port' or 'array'
    name: str
    key: tuple
    chain: List[tuple]
    dims: List[int]
    elem: Optional[ha.ci.Type]
    idx: List[List[Tuple[ha.ci.Cursor, Ctx, int]]] = field(default_factory=list)
    pending: List[Tuple[ha.ci.Cursor, Ctx, int]] = field(default_factory=list)

    registers: bool = False  # a small array field of a local struct value (a stream element): registers

    def copy(self) -> Access:
        return Access(self.kind, self.name, self.key, list(self.chain), self.dims, self.elem,
                      [list(i) for i in self.idx], list(self.pending), self.registers)

    def flat(self) -> List[Tuple[ha.ci.Cursor, Ctx, int]]:
        return [x for dim in self.idx for x in dim] + self.pending


@ha.memo
def _expr_kids(c: ha.ci.Cursor) -> List[ha.ci.Cursor]:
    return [k for k in c.get_children() if k.kind.is_expression()]


@ha.memo
def _has_subscript(c: ha.ci.Cursor) -> bool:
    return any(k.kind == K.ARRAY_SUBSCRIPT_EXPR for k in c.walk_preorder())


def _is_pointerish(c: ha.ci.Cursor) -> bool:
    return c.type.get_canonical().kind in (ha.ci.TypeKind.POINTER, ha.ci.TypeKind.CONSTANTARRAY,
                                           ha.ci.TypeKind.INCOMPLETEARRAY)


class Analyzer:
    """Resolves accesses and reduces index expressions to linear forms for the units of one engine."""

    def __init__(self, units: Sequence[ha.Unit]) -> None:
        self.units = list(units)
        self.assigned: Dict[Key, List[Tuple[str, int]]] = {}
        self.static_consts: Dict[str, set] = {}
        self._scan()

    # ---- one pass over the project code: assignments and static constants
    def _scan(self) -> None:
        for top in (c for unit in self.units for c in ha.project_cursors(unit)):
            if top.kind == K.VAR_DECL and top.semantic_parent is not None \
                    and top.semantic_parent.kind in (K.STRUCT_DECL, K.CLASS_DECL):
                v = ha.evaluate(top)
                if v is not None:
                    self.static_consts.setdefault(top.spelling, set()).add(v)
            if top.kind not in (K.FUNCTION_DECL, K.FUNCTION_TEMPLATE, K.CXX_METHOD) or not top.is_definition():
                continue
            for c in top.walk_preorder():
                if c.kind not in (K.BINARY_OPERATOR, K.COMPOUND_ASSIGNMENT_OPERATOR, K.UNARY_OPERATOR,
                                  K.CALL_EXPR):
                    continue
                op = ha.operator(c)
                if op is None or op[0] not in ("=", "+=", "-=", "*=", "/=", "%=", "<<=", ">>=", "&=", "|=",
                                               "^=", "++", "--"):
                    continue
                target = ha.strip(op[1][0])
                if target.kind == K.DECL_REF_EXPR and target.referenced is not None:
                    self.assigned.setdefault(ha.decl_key(target.referenced), []).append(
                        (c.extent.start.file.name, c.extent.start.offset))

    def is_assigned(self, key: Key) -> bool:
        return key in self.assigned

    # ---- resolution of a base expression to a port or an array
    def resolve(self, expr: ha.ci.Cursor, ctx: Ctx, depth: int = 0) -> Optional[Access]:
        if depth > 40:
            return None
        e = ha.strip(expr)
        if e.kind == K.ARRAY_SUBSCRIPT_EXPR:
            kids = _expr_kids(e)
            if len(kids) != 2:
                return None
            r = self.resolve(kids[0], ctx, depth + 1)
            if r is None:
                return None
            r = r.copy()
            r.idx.append(r.pending + [(kids[1], ctx, 1)])
            r.pending = []
            return r
        op = ha.operator(e)
        if op is not None:
            name, ops = op
            if name in ("+", "-") and len(ops) == 2:
                p, q = (0, 1) if _is_pointerish(ha.strip(ops[0])) else (1, 0)
                if not _is_pointerish(ha.strip(ops[p])):
                    return None
                r = self.resolve(ops[p], ctx, depth + 1)
                if r is None:
                    return None
                r = r.copy()
                r.pending.append((ops[q], ctx, -1 if (name == "-" and q == 1) else 1))
                return r
            if name == "u&" and ha.strip(ops[0]).kind == K.ARRAY_SUBSCRIPT_EXPR:
                r = self.resolve(ops[0], ctx, depth + 1)
                if r is None or not r.idx:
                    return None
                r = r.copy()
                r.pending = r.idx.pop()
                return r
            return None
        if e.kind == K.DECL_REF_EXPR:
            ref = e.referenced
            if ref is None:
                return None
            key = ha.decl_key(ref)
            if ref.kind == K.PARM_DECL:
                bound = ctx.binding(key)
                if bound is not None:
                    r = self.resolve(bound[0], bound[1], depth + 1)
                    if r is not None:
                        r.chain.append(key)
                    return r
                port = ctx.port(key)
                if port is not None:
                    return Access("port", port, key, [key], [], None)
            if ref.kind in (K.PARM_DECL, K.VAR_DECL):
                dims, el = ha.type_dims(ref.type)
                if dims:
                    small = min(dims) > 0 and math.prod(dims) <= COMPLETE_THRESHOLD
                    return Access("array", ref.spelling, key, [key], dims, el, registers=small)
                if ref.kind == K.VAR_DECL and ref.type.get_canonical().kind == ha.ci.TypeKind.POINTER \
                        and not self.is_assigned(key):
                    init = _expr_kids(ref)
                    if init:
                        r = self.resolve(init[-1], ctx, depth + 1)
                        if r is not None:
                            r.chain.append(key)
                        return r
            return None
        if e.kind == K.MEMBER_REF_EXPR:
            fld = e.referenced
            if fld is None or fld.kind != K.FIELD_DECL:
                return None
            dims, el = ha.type_dims(fld.type)
            if not dims:
                return None
            base = _expr_kids(e)
            root = self.root_decl(base[0], ctx) if base else None
            if root is None:
                return None
            bname, bkey, bdecl = root
            key = (bkey, fld.spelling)
            bits = math.prod(max(d, 1) for d in dims) * ha.bit_width(el)
            value = bdecl.kind == K.VAR_DECL and bdecl.storage_class != ha.ci.StorageClass.STATIC \
                and bdecl.type.get_canonical().kind == ha.ci.TypeKind.RECORD and bits <= REGISTER_MAX_BITS
            return Access("array", f"{bname}.{fld.spelling}", key, [key], dims, el, registers=value)
        return None

    def root_decl(self, expr: ha.ci.Cursor, ctx: Ctx, depth: int = 0) -> Optional[Tuple[str, Key, ha.ci.Cursor]]:
        """(name, key, declaration) of the variable a struct expression names, following reference parameters."""
        e = ha.strip(expr)
        if e.kind != K.DECL_REF_EXPR or e.referenced is None or depth > 40:
            return None
        ref = e.referenced
        key = ha.decl_key(ref)
        if ref.kind == K.PARM_DECL:
            bound = ctx.binding(key)
            if bound is not None:
                return self.root_decl(bound[0], bound[1], depth + 1)
        return ref.spelling, key, ref

    # ---- linear forms
    def lin(self, expr: ha.ci.Cursor, ctx: Ctx, focus: FrozenSet[Key], env: Dict[Key, int],
            scope: Optional[Loop], depth: int = 0) -> Lin:
        """Reduce an integer expression to a Lin over the focus loop variables (see module doc)."""
        if depth > 60:
            return Lin(sym=("<deep expression>",))
        v = ha.evaluate(expr) if expr.kind != K.DECL_REF_EXPR else None
        if v is not None:
            return Lin(v)
        e = ha.strip(expr)
        if e is not expr and e.kind != K.DECL_REF_EXPR:
            v = ha.evaluate(e)
            if v is not None:
                return Lin(v)
        rec = lambda x, c=ctx: self.lin(x, c, focus, env, scope, depth + 1)  # noqa: E731
        kind = e.kind
        if kind in (K.INTEGER_LITERAL, K.CHARACTER_LITERAL, K.CXX_BOOL_LITERAL_EXPR):
            return Lin(ha.evaluate(e) or 0)
        if kind == K.DECL_REF_EXPR:
            return self._lin_ref(e, ctx, focus, env, scope, depth)
        if kind == K.MEMBER_REF_EXPR:
            base = _expr_kids(e)
            if base and _has_subscript(base[0]):
                return Lin(sym=(text_of(e),), dirty=(f"struct field read from an array ({text_of(e)})",))
            return Lin(sym=(text_of(e),))
        if kind == K.ARRAY_SUBSCRIPT_EXPR:
            salt = tuple(rec(k).signature() for k in _expr_kids(e)[1:])
            return Lin(sym=(text_of(e),), dirty=(f"table lookup {text_of(e)}",), salt=salt)
        if kind == K.CONDITIONAL_OPERATOR:
            parts = [rec(k) for k in _expr_kids(e)]
            if all(p.pure for p in parts) and len(parts) == 3:
                return parts[1] if parts[0].const else parts[2]
            if all(p.invariant for p in parts):
                return _runtime(parts, text_of(e))
            return Lin(bad=(f"conditional on the loop variable ({text_of(e)})",),
                       dirty=tuple(d for p in parts for d in p.dirty))
        op = ha.operator(e)
        if op is not None:
            return self._lin_op(e, op[0], op[1], ctx, rec)
        if kind == K.CALL_EXPR:
            name = e.spelling or text_of(e, 30)
            salt = tuple(rec(k).signature() for k in e.get_arguments())
            return Lin(sym=(text_of(e),), dirty=(f"function call {name}()",), salt=salt)
        return Lin(sym=(text_of(e),))


    def _lin_op(self, e, name: str, ops, ctx: Ctx, rec) -> Lin:
        if name in ("++", "--") or name.endswith("=") and name not in ("==", "!=", "<=", ">="):
            return Lin(bad=(f"side effect in index ({text_of(e)})",))
        parts = [rec(k) for k in ops]
        if len(parts) == 1:
            a = parts[0]
            if name == "u-":
                return _scale(a, -1)
            if name in ("u+",):
                return a
            if name == "u*":
                return Lin(sym=(text_of(e),), dirty=(f"load through a pointer ({text_of(e)})",))
            if a.pure and name in ("u~", "u!"):
                return Lin(~a.const if name == "u~" else int(not a.const))
            return _runtime(parts, text_of(e)) if a.invariant else Lin(bad=(f"'{name[1:]}' of the loop variable",))
        if len(parts) != 2:
            return Lin(sym=(text_of(e),), dirty=(f"call {text_of(e, 30)}",))
        a, b = parts
        if name == "+":
            return _add(a, b)
        if name == "-":
            return _add(a, b, -1)
        if name == "*":
            if a.pure:
                return _scale(b, a.const)
            if b.pure:
                return _scale(a, b.const)
            if a.invariant and b.invariant:
                return _runtime(parts, text_of(e))
            if a.invariant or b.invariant:
                var, inv = (b, a) if a.invariant else (a, b)
                return Lin(0, {t: None for t in var.terms}, var.sym + inv.sym + ((text_of(e),) if var.const else ()),
                           var.bad + inv.bad, var.dirty + inv.dirty, (var.signature(), inv.signature()))
            return Lin(bad=(f"product of loop variables ({text_of(e)})",), dirty=a.dirty + b.dirty)
        if name == "<<" and b.pure and b.const >= 0:
            return _scale(a, 1 << b.const)
        if a.pure and b.pure and name in _PURE_OPS:
            if name in ("/", "%") and b.const == 0:
                return Lin(sym=(text_of(e),))
            return Lin(_PURE_OPS[name](a.const, b.const))
        if a.invariant and b.invariant:
            return _runtime(parts, text_of(e))
        return Lin(bad=(f"'{name}' applied to the loop variable ({text_of(e)})",), dirty=a.dirty + b.dirty)

    def _lin_ref(self, e, ctx: Ctx, focus, env, scope: Optional[Loop], depth: int) -> Lin:
        ref = e.referenced
        if ref is None:
            member = ha.dependent_member(e)
            owner = ctx.tparam(next(iter(e.get_tokens())).spelling) if member else None
            if owner is not None and not isinstance(owner, int):
                for k in owner.get_children():
                    if k.kind == K.VAR_DECL and k.spelling == member:
                        v = ha.evaluate(k)
                        if v is not None:
                            return Lin(v)
            vals = self.static_consts.get(member or "", set())
            if len(vals) == 1:
                return Lin(next(iter(vals)))
            return Lin(sym=(text_of(e),))
        if ref.kind == K.ENUM_CONSTANT_DECL:
            return Lin(ref.enum_value)
        if ref.kind == K.TEMPLATE_NON_TYPE_PARAMETER:
            v = ctx.tparam(ref.spelling)
            return Lin(v) if isinstance(v, int) else Lin(sym=(ref.spelling,))
        key = ha.decl_key(ref)
        if key in env:
            return Lin(env[key])
        if key in focus:
            return Lin(0, {key: 1})
        if ref.kind == K.PARM_DECL:
            bound = ctx.binding(key)
            if bound is not None:
                value = self.lin(bound[0], bound[1], focus, env, scope, depth + 1)
                if scope is None or value.pure or self._entered_inside(scope, ctx):
                    return value
                return Lin(sym=(ref.spelling,))  # a parameter of the loop's own function: fixed before it
            return Lin(sym=(ref.spelling,))
        if ref.kind != K.VAR_DECL:
            return Lin(sym=(ref.spelling,))
        if ref.type.is_const_qualified() and not self.is_assigned(key):
            v = ha.evaluate(ref)
            if v is not None:
                return Lin(v)
        for loop in ctx.loops:
            if loop.var == key:
                return Lin(sym=(ref.spelling,))
        inside = scope is None or self._inside(ref, scope, ctx)
        if self.is_assigned(key):
            if scope is not None and (inside or any(scope.contains(f, off) for f, off in self.assigned[key])):
                return Lin(bad=(f"'{ref.spelling}' is updated inside the loop",))
            return Lin(sym=(ref.spelling,))
        init = _expr_kids(ref)
        if not init:
            return Lin(sym=(ref.spelling,))
        value = self.lin(init[-1], ctx, focus, env, scope, depth + 1)
        if inside or value.pure:
            return value
        return Lin(sym=(ref.spelling,))  # a local scalar set before the loop: invariant, whatever its value

    @staticmethod
    def _inside(ref, scope: Loop, ctx: Ctx) -> bool:
        """Is a local declared inside the scope loop, or in a function called from inside it?"""
        file = ref.location.file.name if ref.location.file else ""
        if scope.contains(file, ref.extent.start.offset):
            return True
        return Analyzer._entered_inside(scope, ctx)

    @staticmethod
    def _entered_inside(scope: Loop, ctx: Ctx) -> bool:
        """Was ctx's function entered from inside the scope loop (the loop is in a caller)?"""
        if not any(lp is scope for lp in ctx.loops):
            return False  # ctx is a caller of the loop's function: everything was set before the loop
        f = ctx.func.extent
        sf = scope.cursor.location.file
        same_func = sf is not None and f.start.file is not None and \
            os.path.realpath(f.start.file.name) == os.path.realpath(sf.name) and \
            f.start.offset <= scope.cursor.extent.start.offset <= f.end.offset
        return not same_func

    def lin_sum(self, parts: Sequence[Tuple[ha.ci.Cursor, Ctx, int]], focus, env, scope) -> Lin:
        total = Lin()
        for expr, ctx, sign in parts:
            total = _add(total, self.lin(expr, ctx, focus, env, scope), sign)
        return total
