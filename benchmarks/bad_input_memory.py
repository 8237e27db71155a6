"""Peak memory of refusing the largest hostile images and models (issue 14), and of the largest accepted image.

Each measurement runs in a fresh Python process that imports the runtime, notes its resident
memory, handles one input and reports its peak resident memory (``VmHWM``); the median of
``--runs`` processes is kept. For comparison, the same bombs handed to the decoders without the
checks (``cv2.imdecode``, ``zipfile.read``: what the runtime used to do) are measured the same way.
Writes the ``bad_input_memory`` section of docs/benchmarks.md.

    python benchmarks/bad_input_memory.py [--runs 3] [--no-write]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the bomb builders are shared with the bad-input suite
sys.path.insert(0, str(ROOT / "benchmarks"))

import bad_input_files as B  # noqa: E402
from report import command, machine, table, write_section  # noqa: E402

_CHILD = r"""
import json, sys, time
import cv2, numpy, zipfile
from PIL import Image
import codenet_pynq.image_io, codenet_pynq.artifact
from codenet_pynq.errors import CodenetError
def peak_kib():  # VmHWM: ru_maxrss survives exec and would start at the parent's peak
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
base = peak_kib()
t = time.perf_counter()
outcome = "ok"
try:
    exec(sys.argv[1], {"path": sys.argv[2], "cv2": cv2, "numpy": numpy, "zipfile": zipfile,
                       "io": codenet_pynq.image_io, "art": codenet_pynq.artifact})
except CodenetError as e:
    outcome = "refused: " + str(e)[:160]
except Exception as e:
    outcome = "error: " + type(e).__name__
print(json.dumps({"base_kib": base, "peak_kib": peak_kib(),
                  "seconds": time.perf_counter() - t, "outcome": outcome}))
"""

READ = "io.read_image(path)"
DECODE_UNCHECKED = "cv2.imdecode(numpy.fromfile(path, numpy.uint8), cv2.IMREAD_UNCHANGED)"
LOAD = "art.load_artifact(path)"
UNZIP_UNCHECKED = "z = zipfile.ZipFile(path); [z.read(n) for n in z.namelist()]"


def measure(code: str, path: Path, runs: int) -> Dict[str, object]:
    recs = []
    for _ in range(runs):
        r = subprocess.run([sys.executable, "-c", _CHILD, code, str(path)], capture_output=True, text=True,
                           timeout=600)
        if r.returncode != 0:
            raise RuntimeError(r.stderr[-2000:])
        recs.append(json.loads(r.stdout.strip().splitlines()[-1]))
    return {"peak": statistics.median(x["peak_kib"] for x in recs) / 1024,
            "base": statistics.median(x["base_kib"] for x in recs) / 1024,
            "seconds": statistics.median(x["seconds"] for x in recs), "outcome": recs[-1]["outcome"]}


def build(d: Path) -> Dict[str, Path]:
    from codenet_pynq.artifact import MAX_UNPACKED_BYTES

    files = {
        "tiff": B.tiff_bomb(d / "bomb.tif", 12000, 12000),
        "png": B.png_bomb(d / "bomb.png", 12000, 12000),
        "webp": B.webp_bomb(d / "bomb.webp"),
        "largest_ok": B.png_bomb(d / "largest_ok.png", 10000, 10000),
    }
    man = {"format": "codenet-artifact", "version": 1, "model": {}, "class_names": ["a"], "input_size": 64,
           "down_ratio": 4, "preprocess": {}}
    declared = MAX_UNPACKED_BYTES - (1 << 20)  # just under the absolute cap
    files["zip"] = B.zip_bomb_member(d / "bomb.codenet", man, "model_float.onnx", declared, {})
    return files


def main(argv: List[str] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--no-write", action="store_true", help="print the table only")
    args = ap.parse_args(argv)
    start_machine = machine()
    with tempfile.TemporaryDirectory() as tmp:
        f = build(Path(tmp))
        size = {k: p.stat().st_size for k, p in f.items()}
        rows_spec = [
            ("TIFF bomb 12000 x 12000 (deflate)", "tiff", READ, DECODE_UNCHECKED),
            ("PNG bomb 12000 x 12000", "png", READ, DECODE_UNCHECKED),
            ("WebP header 16383 x 16383", "webp", READ, None),
            ("largest accepted image: PNG 10000 x 10000 gray (100 MP)", "largest_ok", READ, None),
            ("model zip bomb: one member of 1023 MiB (just under the cap)", "zip", LOAD, UNZIP_UNCHECKED),
        ]
        rows = []
        for label, key, code, unchecked in rows_spec:
            m = measure(code, f[key], args.runs)
            u = measure(unchecked, f[key], args.runs) if unchecked else None
            rows.append([label, f"{size[key] / 1024:.0f} KiB", m["outcome"].split(":")[0],
                         f"{m['peak']:.0f}", f"{m['peak'] - m['base']:.0f}", f"{m['seconds']:.2f}",
                         f"{u['peak']:.0f} ({u['peak'] - u['base']:.0f} above imports)" if u else "-",
                         f"{m['peak'] / u['peak']:.2f}" if u else "-"])
            print(rows[-1], flush=True)
    body = "\n".join([
        "## Memory of refusing hostile inputs (issue 14)",
        "",
        f"Measured here: {start_machine}. Command: `{command()}`. Peak resident memory (VmHWM) of a",
        f"fresh process that imports the runtime and handles one input, median of {args.runs} processes;",
        "\"above imports\" subtracts the process's peak right after the imports (about the same in every row).",
        "The unchecked column hands the same file to the decoder directly (`cv2.imdecode`, `zipfile.read`:",
        "what an unchecked runtime pays); the ratio is checked / unchecked peak, measured in the same run.",
        "",
        table(["input", "file", "outcome", "peak MiB", "above imports MiB", "time s", "unchecked peak MiB",
               "ratio"], rows),
        "",
        "Notes: the bombs are refused from their headers (Pillow's parsers for images, the zip",
        "directory for models) before a pixel or a member is decompressed, so refusing costs the",
        "imports plus the file's bytes. The largest accepted image row is the bound stated in",
        "codenet_pynq/image_io.py (file + decoded pixels + BGR result); the WebP row's header is",
        "patched, so it has no unchecked decode to compare with. The machine was shared with other",
        "agents (load average above); memory figures do not depend on load, times do.",
    ])
    print(body)
    if not args.no_write:
        write_section("bad_input_memory", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
