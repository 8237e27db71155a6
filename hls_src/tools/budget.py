#!/usr/bin/env python3
"""Resource budget of the CoDeNet engine for the ZU3EG: DSP, BRAM36, LUT and FF estimates.

Usage::

    python hls_src/tools/budget.py [--resources hls_src/resources.json] [--params hls_src/codenet_params.h]
                                   [--sources hls_src/codenet_top.cpp ...] [--no-source-check]

Reads the engine parameters (``codenet_params.h``, parsed by codenet_pynq.accel.params) and the
declared arrays and compute units (``resources.json``: expressions over CN_* names), prints one
row per entry and the totals against the device, and exits 1 when DSP or BRAM36 exceed the limit
(90 % by default) or when the declared arrays drift from the source (every array declared in an
engine function above the LUTRAM threshold must be listed with the same element width and shape).
Exit 2 on bad input.  Rules and blind spots: docs/hls_tools.md.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent))
_REPO = Path(__file__).resolve().parent.parent.parent
if str(_REPO) not in sys.path:
    sys.path.append(str(_REPO))

import cn_expr  # noqa: E402
import resource_rules as rr  # noqa: E402

from codenet_pynq.accel.params import ParamsError, load_params  # noqa: E402

HLS_DIR = Path(__file__).resolve().parent.parent
DEFAULT_RESOURCES = HLS_DIR / "resources.json"
ZU3EG = {"name": "ZU3EG", "dsp": 360, "bram36": 216, "lut": 70560, "ff": 141120}


class BudgetError(Exception):
    """A bad resources.json or parameter header (message names the file and field)."""


@dataclass
class Row:
    kind: str
    name: str
    detail: str
    dsp: float = 0.0
    bram36: float = 0.0
    lut: int = 0
    ff: int = 0
    notes: List[str] = field(default_factory=list)


@dataclass
class ArraySpec:
    """A declared array after evaluating its expressions."""

    name: str
    function: str
    width: int
    dims: List[int]
    copies: int
    partitions: List[Tuple[str, int, int, bool]]
    impl: str
    tdp: bool
    kind: str


@dataclass
class Budget:
    rows: List[Row]
    device: Dict[str, Any]
    limit_pct: float
    arrays: List[ArraySpec]

    def total(self, key: str) -> float:
        return sum(getattr(r, key) for r in self.rows)

    def over(self) -> List[str]:
        out = []
        for key in ("dsp", "bram36"):
            used, avail = self.total(key), self.device[key]
            if used > avail * self.limit_pct / 100.0:
                out.append(f"{key.upper()} {used:g} > {self.limit_pct:g}% of {avail} ({100.0 * used / avail:.1f}%)")
        return out


# ------------------------------------------------------------------------------------ loading
def _names(params: Mapping[str, int], defaults: Mapping[str, Any], src: str) -> Dict[str, int]:
    names = {f"CN_{k}": int(v) for k, v in params.items()}
    for k, v in defaults.items():
        if not isinstance(v, int) or isinstance(v, bool):
            raise BudgetError(f"{src}: defaults.{k}: must be an integer, got {v!r}. Give a plain integer.")
        names.setdefault(k, v)
    return names


def _ev(expr: Any, names: Mapping[str, int], where: str) -> int:
    try:
        return cn_expr.eval_int(expr, names)
    except cn_expr.ExprError as exc:
        raise BudgetError(f"{where}: {exc}. Use integers and CN_* names of codenet_params.h "
                          "(or add the name to \"defaults\").") from None


def _parts(entry: Mapping[str, Any], names, where: str) -> List[Tuple[str, int, int, bool]]:
    out = []
    for key, reshape in (("partition", False), ("reshape", True)):
        specs = entry.get(key, [])
        specs = [specs] if isinstance(specs, dict) else specs
        if not isinstance(specs, list):
            raise BudgetError(f"{where}.{key}: must be an object or a list of objects")
        for i, p in enumerate(specs):
            w = f"{where}.{key}[{i}]"
            if not isinstance(p, dict):
                raise BudgetError(f"{w}: must be an object like {{\"kind\": \"cyclic\", \"factor\": 16, \"dim\": 1}}")
            kind = p.get("kind", "none")
            if kind == "none":
                continue
            if kind not in ("complete", "cyclic", "block"):
                raise BudgetError(f"{w}.kind: {kind!r} is not one of none, complete, cyclic, block")
            factor = _ev(p.get("factor", 0), names, f"{w}.factor") if kind != "complete" else 0
            if kind != "complete" and factor < 1:
                raise BudgetError(f"{w}.factor: {kind} partitioning needs a factor >= 1")
            dim = p.get("dim", 1)
            if not isinstance(dim, int) or dim < 0:
                raise BudgetError(f"{w}.dim: must be a non-negative integer (1-based; 0 = all dimensions)")
            out.append((kind, factor, dim, reshape))
    return out


def load_arrays(doc: Mapping[str, Any], names: Mapping[str, int], src: str) -> List[ArraySpec]:
    out = []
    for i, a in enumerate(doc.get("arrays", [])):
        where = f"{src}: arrays[{i}]"
        if not isinstance(a, dict) or "name" not in a:
            raise BudgetError(f"{where}: each array needs at least \"name\", \"width_bits\" and \"dims\" or \"depth\"")
        where = f"{src}: arrays[{i}] ({a['name']})"
        if "dims" in a:
            if not isinstance(a["dims"], list) or not a["dims"]:
                raise BudgetError(f"{where}.dims: must be a non-empty list of expressions")
            dims = [_ev(d, names, f"{where}.dims") for d in a["dims"]]
        elif "depth" in a:
            dims = [_ev(a["depth"], names, f"{where}.depth")]
        else:
            raise BudgetError(f"{where}: give \"dims\" (list) or \"depth\"")
        width = _ev(a.get("width_bits"), names, f"{where}.width_bits")
        if width < 1 or min(dims) < 1:
            raise BudgetError(f"{where}: width and every dimension must be >= 1 (got {width} x {dims})")
        copies = _ev(a.get("copies", 1), names, f"{where}.copies")
        impl = a.get("impl", "auto")
        if impl not in ("auto", "bram", "lutram", "ff"):
            raise BudgetError(f"{where}.impl: {impl!r} is not one of auto, bram, lutram, ff")
        ports = a.get("ports", "sdp")
        if ports not in ("sdp", "tdp"):
            raise BudgetError(f"{where}.ports: {ports!r} is not sdp or tdp")
        kind = a.get("kind", "array")
        if kind not in ("array", "fifo"):
            raise BudgetError(f"{where}.kind: {kind!r} is not array or fifo")
        out.append(ArraySpec(str(a["name"]), str(a.get("function", "")), width, dims, copies,
                             _parts(a, names, where), impl, ports == "tdp", kind))
    return out


def load(resources: Path, params_h: Optional[Path] = None) -> Tuple[Dict[str, Any], Dict[str, int]]:
    """(resources document, expression names) from the JSON and the parameter header."""
    try:
        doc = json.loads(Path(resources).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BudgetError(f"{resources}: not found. Pass --resources or write hls_src/resources.json.") from None
    except json.JSONDecodeError as exc:
        raise BudgetError(f"{resources}: not valid JSON ({exc}). Fix the syntax.") from None
    if not isinstance(doc, dict):
        raise BudgetError(f"{resources}: top level must be an object with \"arrays\" and \"units\"")
    try:
        params = load_params(params_h)
    except ParamsError as exc:
        raise BudgetError(str(exc)) from None
    defaults = doc.get("defaults", {})
    if not isinstance(defaults, dict):
        raise BudgetError(f"{resources}: defaults: must be an object of NAME: integer")
    return doc, _names(params, defaults, str(resources))


# ------------------------------------------------------------------------------------ estimate
def estimate(doc: Mapping[str, Any], names: Mapping[str, int], src: str = "resources.json") -> Budget:
    """Evaluate every declared array, unit, logic block and interface allowance."""
    device = dict(ZU3EG)
    dev = doc.get("device", {})
    if not isinstance(dev, dict):
        raise BudgetError(f"{src}: device: must be an object like {json.dumps(ZU3EG)}")
    device.update(dev)
    for key in ("dsp", "bram36", "lut", "ff"):
        if not isinstance(device[key], int) or isinstance(device[key], bool) or device[key] <= 0:
            raise BudgetError(f"{src}: device.{key}: must be a positive integer, got {device[key]!r}")
    limit = doc.get("limit_pct", 90)
    if not isinstance(limit, (int, float)) or isinstance(limit, bool) or not 0 < limit <= 100:
        raise BudgetError(f"{src}: limit_pct: must be a number in (0, 100], got {limit!r}")
    for key in ("arrays", "units", "logic"):
        if not isinstance(doc.get(key, []), list):
            raise BudgetError(f"{src}: {key}: must be a list of objects")
    if not isinstance(doc.get("interfaces", {}), dict):
        raise BudgetError(f"{src}: interfaces: must be an object like {{\"m_axi_ports\": 4, \"axilite_regs\": 12}}")
    rows: List[Row] = []
    arrays = load_arrays(doc, names, src)
    for a in arrays:
        try:
            n, bw, bd = rr.banks(a.width, a.dims, a.partitions)
            cost = rr.bank_cost(bw, bd, a.impl, a.tdp)
        except ValueError as exc:
            raise BudgetError(f"{src}: arrays ({a.name}): {exc}") from None
        total = n * a.copies
        detail = f"{a.width}b x {'x'.join(map(str, a.dims))}"
        if a.copies > 1:
            detail += f" x{a.copies} copies"
        detail += f" -> {total} bank(s) {bw}b x {bd} {cost.impl}"
        rows.append(Row(a.kind, a.name, detail, 0.0, cost.bram36 * total, cost.lut * total, cost.ff * total))
    for i, u in enumerate(doc.get("units", [])):
        where = f"{src}: units[{i}] ({u.get('name', '?') if isinstance(u, dict) else '?'})"
        if not isinstance(u, dict) or "name" not in u:
            raise BudgetError(f"{where}: each unit needs \"name\", \"count\", \"a_bits\", \"b_bits\", \"impl\"")
        count = _ev(u.get("count"), names, f"{where}.count")
        a_bits = _ev(u.get("a_bits"), names, f"{where}.a_bits")
        b_bits = _ev(u.get("b_bits"), names, f"{where}.b_bits")
        acc = _ev(u.get("acc_bits", a_bits + b_bits + 4), names, f"{where}.acc_bits")
        impl = u.get("impl", "dsp")
        try:
            dsp, lut, ff, notes = rr.unit_cost(impl, count, a_bits, b_bits, acc)
        except ValueError as exc:
            raise BudgetError(f"{where}: {exc}") from None
        lut += count * _ev(u.get("extra_lut", 0), names, f"{where}.extra_lut")
        ff += count * _ev(u.get("extra_ff", 0), names, f"{where}.extra_ff")
        rows.append(Row("unit", str(u["name"]), f"{count} x {a_bits}x{b_bits} {impl}", dsp, 0.0, lut, ff, notes))
    for i, g in enumerate(doc.get("logic", [])):
        where = f"{src}: logic[{i}]"
        if not isinstance(g, dict) or "name" not in g:
            raise BudgetError(f"{where}: each logic entry needs \"name\" and \"lut\" (and optional \"ff\")")
        rows.append(Row("logic", str(g["name"]), str(g.get("note", "declared allowance")), 0.0, 0.0,
                        _ev(g.get("lut", 0), names, f"{where}.lut"), _ev(g.get("ff", 0), names, f"{where}.ff")))
    itf = doc.get("interfaces", {})
    n_maxi = _ev(itf.get("m_axi_ports", 0), names, f"{src}: interfaces.m_axi_ports")
    n_regs = _ev(itf.get("axilite_regs", 0), names, f"{src}: interfaces.axilite_regs")
    if n_maxi:
        rows.append(Row("iface", "m_axi adapters", f"{n_maxi} port(s), fixed allowance", 0.0,
                        n_maxi * rr.MAXI_PORT_BRAM36, n_maxi * rr.MAXI_PORT_LUT, n_maxi * rr.MAXI_PORT_FF))
    if n_regs:
        rows.append(Row("iface", "s_axilite control", f"{n_regs} register(s), fixed allowance", 0.0, 0.0,
                        rr.AXILITE_BASE_LUT + n_regs * rr.AXILITE_REG_LUT, rr.AXILITE_BASE_FF + n_regs * rr.AXILITE_REG_FF))
    return Budget(rows, device, float(limit), arrays)


def format_table(b: Budget) -> str:
    """The per-entry table and the totals against the device."""
    head = f"{'kind':<6} {'name':<22} {'DSP':>7} {'BRAM36':>7} {'LUT':>8} {'FF':>8}  detail"
    lines = [head, "-" * len(head)]
    for r in b.rows:
        note = f"  ({'; '.join(r.notes)})" if r.notes else ""
        lines.append(f"{r.kind:<6} {r.name:<22} {r.dsp:>7g} {r.bram36:>7g} {r.lut:>8d} {r.ff:>8d}  {r.detail}{note}")
    lines.append("-" * len(head))
    tot = {k: b.total(k) for k in ("dsp", "bram36", "lut", "ff")}
    lines.append(f"{'total':<29} {tot['dsp']:>7g} {tot['bram36']:>7g} {tot['lut']:>8d} {tot['ff']:>8d}")
    dev = b.device
    lines.append(f"{dev['name']:<29} {dev['dsp']:>7d} {dev['bram36']:>7d} {dev['lut']:>8d} {dev['ff']:>8d}")
    pct = {k: 100.0 * tot[k] / dev[k] for k in tot}
    lines.append(f"{'used %':<29} {pct['dsp']:>6.1f}% {pct['bram36']:>6.1f}% {pct['lut']:>7.1f}% {pct['ff']:>7.1f}%")
    lines.append(f"limit: {b.limit_pct:g}% of DSP and BRAM36 (LUT/FF are rough estimates, reported only)")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------ source check
def _source_partitions(s, names: Mapping[str, int]) -> Optional[List[Tuple[str, int, int, bool]]]:
    """The source pragmas of an array as (kind, factor, dim, reshape); None if one cannot be evaluated."""
    out = []
    for kind, factor, dim, reshape in s.partitions:
        try:
            f = 0 if kind == "complete" else cn_expr.eval_int(factor or "1", names)
            d = cn_expr.eval_int(dim, names)
        except cn_expr.ExprError:
            return None
        out.append((kind, f, d, reshape))
    return sorted(out)


def _parts_text(parts: Sequence[Tuple[str, int, int, bool]]) -> str:
    if not parts:
        return "not at all"
    return ", ".join(f"{'reshape ' if r else ''}{k}{'' if k == 'complete' else ' ' + str(f)} dim {d}"
                     for k, f, d, r in parts)


def check_source(arrays: Sequence[ArraySpec], sources: Sequence[str], include: Sequence[str],
                 declared_in: str = "resources.json", names: Optional[Mapping[str, int]] = None) -> List[str]:
    """Findings where declared arrays and the arrays of the engine source differ (element width,
    shape, and, when ``names`` are given to evaluate pragma factors, partitioning/reshaping)."""
    import source_arrays  # libclang only when the source check runs

    found = source_arrays.collect(sources, include)
    findings: List[str] = []
    declared = {(a.function, a.name): a for a in arrays if a.kind == "array"}
    seen = set()
    for s in found:
        bits = s.width * math.prod(s.dims)
        if bits < rr.LUTRAM_MAX_BITS or math.prod(s.dims) < rr.LUTRAM_MAX_DEPTH:
            continue
        key = (s.function, s.name)
        seen.add(key)
        where = f"{s.file}:{s.line}"
        d = declared.get(key)
        if d is None:
            findings.append(f"{where}: undeclared array '{s.name}' in {s.function}() ({s.width}b x "
                            f"{'x'.join(map(str, s.dims))}): add it to {declared_in}")
            continue
        if d.width != s.width:
            findings.append(f"{where}: array '{s.name}' in {s.function}() has {s.width}-bit elements, "
                            f"{declared_in} says {d.width}")
        if math.prod(d.dims) != math.prod(s.dims) or (len(d.dims) == len(s.dims) and list(d.dims) != list(s.dims)):
            findings.append(f"{where}: array '{s.name}' in {s.function}() has shape {'x'.join(map(str, s.dims))}, "
                            f"{declared_in} says {'x'.join(map(str, d.dims))}")
        if names is not None:
            src_parts = _source_partitions(s, names)
            decl = sorted((k, 0 if k == "complete" else f, dim, r) for k, f, dim, r in d.partitions)
            if src_parts is None:
                findings.append(f"{where}: cannot evaluate the partition pragma of '{s.name}' (use literals or "
                                "CN_* names in factor/dim)")
            elif src_parts != decl:
                findings.append(f"{where}: array '{s.name}' in {s.function}() is partitioned {_parts_text(src_parts)} "
                                f"in the source, {declared_in} says {_parts_text(decl)}")
    for key, d in declared.items():
        if key not in seen and not any((s.function, s.name) == key for s in found):
            findings.append(f"{declared_in}: array '{d.name}' of {d.function}() is not in the engine source "
                            "(renamed or removed? update it)")
    return findings


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--resources", default=str(DEFAULT_RESOURCES), help="declared arrays and units (JSON)")
    ap.add_argument("--params", default=None, help="codenet_params.h (default: the project header)")
    ap.add_argument("--sources", nargs="*", default=None, help="engine sources for the drift check")
    ap.add_argument("-I", dest="include", action="append", default=[], help="include directory (default: hls_src)")
    ap.add_argument("--no-source-check", action="store_true", help="skip the source cross-check (no libclang)")
    args = ap.parse_args(argv)
    try:
        doc, names = load(Path(args.resources), Path(args.params) if args.params else None)
        budget = estimate(doc, names, args.resources)
    except BudgetError as exc:
        print(f"budget: {exc}", file=sys.stderr)
        return 2
    print(format_table(budget))
    status = 0
    over = budget.over()
    for o in over:
        print(f"budget: over the limit: {o}")
        status = 1
    if not args.no_source_check:
        sources = args.sources or [str(HLS_DIR / "codenet_top.cpp"), str(HLS_DIR / "cn_desc.cpp")]
        try:
            findings = check_source(budget.arrays, sources, args.include or [str(HLS_DIR)], args.resources, names)
        except (Exception, SystemExit) as exc:  # ToolError from the parser; SystemExit: libclang missing
            print(f"budget: source check failed: {exc}", file=sys.stderr)
            return 2
        for f in findings:
            print(f"budget: drift: {f}")
        if findings:
            status = 1
    if status == 0:
        print("budget: within limits")
    return status


if __name__ == "__main__":
    sys.exit(main())
