"""The bad-input suite: every group of tests/bad_input_cases.py in a subprocess, with the counts printed.

Each group runs in its own Python process (a crash or a hang cannot take pytest down and is
counted), each case under a time limit (``CASE_LIMIT_S``). The suite passes when every group
has 0 tracebacks, 0 internal errors, 0 crashes, 0 hangs, 0 lost results and 0 wrong outcomes
(a bad input accepted, or refused without naming the file and field), no case raised the peak
memory by more than ``CASE_RSS_GROWTH_MIB`` ("memory": a decompression bomb was decoded), and
the process's peak stayed under ``PEAK_RSS_LIMIT_MIB``.
The table is printed at the end of the pytest run.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import pytest
from bad_input_cases import CASE_LIMIT_S, CASES, GROUPS

HERE = Path(__file__).resolve().parent
#: Peak resident memory a group's process may reach (imports and ONNX Runtime included).
PEAK_RSS_LIMIT_MIB = 512
COUNTS = ("cases", "ok", "wrong", "tracebacks", "internal", "crashes", "hangs", "lost", "memory")
_STATUS = {"ok": "ok", "wrong": "wrong", "traceback": "tracebacks", "internal": "internal", "hang": "hangs",
           "crash": "crashes", "memory": "memory"}
RESULTS: Dict[str, Dict[str, float]] = {}


class _Summary:
    """Prints the per-group table at the end of the session."""

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if not RESULTS:
            return
        tr = terminalreporter
        tr.section("bad-input suite")
        tr.write_line(f"{'group':<12}" + "".join(f"{c:>11}" for c in COUNTS) + f"{'peak MiB':>10}{'s':>7}")
        total = {c: 0 for c in COUNTS}
        for group in GROUPS:
            if group not in RESULTS:
                continue
            r = RESULTS[group]
            for c in COUNTS:
                total[c] += int(r[c])
            tr.write_line(f"{group:<12}" + "".join(f"{int(r[c]):>11}" for c in COUNTS)
                          + f"{r['peak_rss_mib']:>10.0f}{r['seconds']:>7.1f}")
        tr.write_line(f"{'total':<12}" + "".join(f"{total[c]:>11}" for c in COUNTS))


def _run_group(group: str, tmp: Path) -> Dict[str, float]:
    cases = [c for c in CASES if c.group == group]
    counts: Dict[str, float] = {c: 0 for c in COUNTS}
    counts.update(peak_rss_mib=0.0, seconds=0.0)
    counts["cases"] = len(cases)
    if not cases:
        return counts
    timeout = CASE_LIMIT_S * len(cases) + 60
    cmd = [sys.executable, str(HERE / "bad_input_cases.py"), group, str(tmp)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=str(HERE))
        out, crashed, err = proc.stdout, proc.returncode != 0, proc.stderr
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        crashed, err = False, "group timed out"
    details: List[str] = []
    started = None
    for line in out.splitlines():
        rec = json.loads(line)
        if "peak_rss_mib" in rec:
            counts["peak_rss_mib"] = rec["peak_rss_mib"]
            continue
        if rec.get("status") == "start":
            started = rec["case"]
            continue
        started = None
        counts[_STATUS[rec["status"]]] += 1
        counts["lost"] += rec.get("lost", 0)
        counts["seconds"] += rec.get("seconds", 0.0)
        if rec["status"] != "ok":
            details.append(f"{rec['case']}: {rec['status']}: {rec.get('detail', '')}")
    if started is not None:  # the process died or was killed inside a case
        counts["crashes" if crashed else "hangs"] += 1
        details.append(f"{started}: {'crash' if crashed else 'hang'}: {err[-2000:]}")
    elif crashed:
        details.append(f"worker exit status {proc.returncode}: {err[-2000:]}")
    counts["details"] = details  # type: ignore[assignment]
    return counts


@pytest.mark.parametrize("group", GROUPS)
def test_bad_inputs(group: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    pm = request.config.pluginmanager
    if not pm.has_plugin("codenet-bad-input-summary"):
        pm.register(_Summary(), "codenet-bad-input-summary")
    r = _run_group(group, tmp_path)
    details = r.pop("details", [])
    RESULTS[group] = r
    assert not details, "\n\n".join(details)
    assert r["ok"] == r["cases"], r
    for c in ("wrong", "tracebacks", "internal", "crashes", "hangs", "lost", "memory"):
        assert r[c] == 0, (c, r)
    assert r["peak_rss_mib"] < PEAK_RSS_LIMIT_MIB, r


def test_case_table_covers_the_issue() -> None:
    """The concrete cases of issue 14 are in the table (a guard against silently dropping one)."""
    names = {c.name for c in CASES}
    for must in ("tiff_bomb", "webp_bomb", "named_pipe", "dev_zero", "symlink_loop", "gif_single_and_in_folder",
                 "zip_bomb_just_under_absolute_cap", "input_size_disagrees_with_graph_and_program", "top_k_abc",
                 "down_ratio_nan", "version_5000_digits", "nesting_100k_deep", "npz_not_a_zip",
                 "npz_declares_1tib_array", "output_scale_hm_NaN", "output_scale_hm_0", "output_scale_hm_-0.08",
                 "unwritable_output", "accelerator_timeout"):
        assert must in names, must
