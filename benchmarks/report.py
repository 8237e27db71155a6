"""Shared helpers of the benchmark scripts: machine description, medians, marked doc sections."""

from __future__ import annotations

import os
import platform
import re
import statistics
import sys
import time
from typing import Callable, Dict, List, Sequence

from codenet_pynq.files import atomic_write

DOC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "benchmarks.md")


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> str:
    """One line: CPU, cores, Python, load average when the run started."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{cpu_name()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"load average {load:.1f} at start")


def median_ms(fn: Callable[[], object], runs: int, warmup: int) -> float:
    """Median wall time of ``fn`` in milliseconds over ``runs`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    times: List[float] = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def blocked_ms(fns: Sequence[Callable[[], object]], runs: int, warmup: int, blocks: int = 3) -> List[List[List[float]]]:
    """Wall times (ms) of several functions, timed in alternating blocks.

    Each block runs ``warmup`` untimed calls and then ``runs // blocks`` timed calls of each
    function in turn. Back-to-back calls keep a model's weights in cache, as in deployment (the
    first call after switching models is up to 2x slower, so per-call alternation would measure
    cold starts); alternating the blocks spreads a slow phase of a shared machine over all of
    them. Returns ``times[fn][block]``.
    """
    per_block = max(1, runs // blocks)
    times: List[List[List[float]]] = [[] for _ in fns]
    for _ in range(blocks):
        for fn, ts in zip(fns, times):
            for _ in range(warmup):
                fn()
            block = []
            for _ in range(per_block):
                t = time.perf_counter()
                fn()
                block.append((time.perf_counter() - t) * 1e3)
            ts.append(block)
    return times


def command() -> str:
    return "python " + " ".join([os.path.relpath(sys.argv[0])] + sys.argv[1:])


def write_section(name: str, body: str) -> None:
    """Replace (or append) the section between ``<!-- name:begin -->`` and ``<!-- name:end -->``."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    text = open(DOC, encoding="utf-8").read() if os.path.exists(DOC) else "# Benchmarks\n"
    block = f"{begin}\n{body.rstrip()}\n{end}"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    atomic_write(DOC, text)


def table(header: List[str], rows: List[List[object]]) -> str:
    def fmt(v: object) -> str:
        return f"{v:.1f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def versions() -> Dict[str, str]:
    out = {}
    for mod in ("numpy", "torch", "onnxruntime"):
        try:
            out[mod] = __import__(mod).__version__
        except ImportError:
            pass
    return out
