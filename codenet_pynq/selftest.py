"""On-board (or emulated) self-test of the accelerator: exactness against the golden reference.

Three checks, usable on a PYNQ board (``--backend fpga``) and on any machine through the
emulator (``--backend emulator``):

a. **random programs** (:func:`codenet_pynq.synthetic.random_program`: every op, both activation
   kinds, square offsets) run through the accelerator driver and the numpy golden executor;
   every head element must be equal;
b. **the model** on images (given files, or synthetic ones): accelerator vs golden vs the CPU
   backend's integer ONNX graph, head tensors element by element and the final detections
   (boxes, scores, labels) exactly;
c. **timing**: frames per second and per-stage milliseconds of the driver, the engine's
   counted cycles (the engine's cycle and burst account), and the CPU backend's latency.

Command line::

    python -m codenet_pynq.selftest [MODEL] --backend emulator|fpga --random N [--images a.jpg ...]

prints a table and exits 0 when everything matches, 1 on any mismatch or failed check, 2 when
the test cannot run (no model, no board, no emulation library).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .artifact import Artifact, default_model_path, load_artifact
from .errors import CodenetError
from .golden import run_program, storage_dtype
from .platform import Platform
from .synthetic import random_program

__all__ = ["CheckResult", "SelftestReport", "check_random_programs", "check_model", "timing_summary",
           "open_platform", "run_selftest", "synthetic_images", "main"]

BACKENDS = ("emulator", "fpga")


@dataclass
class CheckResult:
    """One line of the report."""

    check: str  # "random", "model", "timing"
    item: str
    ok: bool
    mismatches: int = 0
    detail: str = ""


@dataclass
class SelftestReport:
    backend: str
    results: List[CheckResult] = field(default_factory=list)
    timing: Dict[str, Any] = field(default_factory=dict)
    notes: List[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    @property
    def mismatches(self) -> int:
        return sum(r.mismatches for r in self.results)

    def counts(self) -> Dict[str, Tuple[int, int]]:
        """check -> (passed, total)."""
        out: Dict[str, Tuple[int, int]] = {}
        for r in self.results:
            a, b = out.get(r.check, (0, 0))
            out[r.check] = (a + int(r.ok), b + 1)
        return out

    def table(self) -> str:
        """The report as a plain-text table."""
        rows = [(r.check, r.item, "ok" if r.ok else "FAIL", str(r.mismatches), r.detail) for r in self.results]
        head = ("check", "item", "result", "mismatches", "detail")
        widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(head[:4])]
        fmt = "  ".join(f"{{:{w}}}" for w in widths) + "  {}"
        lines = [f"codenet-pynq self-test, backend {self.backend}", fmt.format(*head),
                 fmt.format(*("-" * w for w in widths), "-" * 6)]
        lines += [fmt.format(*row) for row in rows]
        if self.timing:
            t = self.timing
            stages = ", ".join(f"{k} {v:.2f} ms" for k, v in t.get("stage_ms", {}).items())
            lines.append("")
            lines.append(f"timing ({t.get('frames', 0)} frames): {t.get('fps', float('nan')):.1f} fps through the "
                         f"driver, {t.get('fps_source', 'measured')} ({stages})")
            if t.get("counted_cycles"):
                lines.append(f"  engine: {t['counted_cycles']} counted cycles = {t['counted_ms']:.2f} ms at "
                             f"{t['clock_mhz']:g} MHz ({t['counted_fps']:.1f} fps, counted from the engine's loops "
                             "and bursts in C simulation; not measured on a board)")
            if "cpu_ms" in t:
                lines.append(f"  cpu backend: {t['cpu_ms']:.2f} ms per frame ({1e3 / t['cpu_ms']:.1f} fps)")
        for n in self.notes:
            lines.append(f"note: {n}")
        summary = ", ".join(f"{k} {a}/{b}" for k, (a, b) in self.counts().items())
        lines.append(f"{'PASS' if self.ok else 'FAIL'}: {summary or 'no checks'}; {self.mismatches} mismatching elements")
        return "\n".join(lines)

    def to_dict(self) -> Dict[str, Any]:
        return {"backend": self.backend, "ok": self.ok, "mismatches": self.mismatches,
                "results": [asdict(r) for r in self.results], "timing": self.timing, "notes": list(self.notes)}


# =========================================================================== inputs
def synthetic_images(n: int = 3, seed: int = 0) -> List[Tuple[str, np.ndarray]]:
    """``n`` BGR test images of different sizes: noise, gradients and filled shapes."""
    import cv2

    sizes = [(480, 640), (300, 300), (200, 500), (640, 360), (96, 128)]
    out = []
    for i in range(n):
        rng = np.random.default_rng(seed + i)
        h, w = sizes[i % len(sizes)]
        img = rng.integers(0, 80, (h, w, 3), dtype=np.uint8)
        img[:] = np.clip(img + np.linspace(0, 90, w, dtype=np.float32)[None, :, None], 0, 255).astype(np.uint8)
        for _ in range(4):
            color = tuple(int(c) for c in rng.integers(60, 256, 3))
            cx, cy, r = int(rng.integers(0, w)), int(rng.integers(0, h)), int(rng.integers(8, max(9, min(h, w) // 4)))
            if rng.random() < 0.5:
                cv2.circle(img, (cx, cy), r, color, -1)
            else:
                cv2.rectangle(img, (cx - r, cy - r), (cx + r, cy + r), color, -1)
        out.append((f"synthetic #{i} {h}x{w}", img))
    return out


def _int_heads_from_cpu(cpu: Any, pixels: np.ndarray, program: Any) -> Dict[str, np.ndarray]:
    """The CPU backend's integer graph outputs in the golden layout (H x W x C, storage dtype)."""
    raw = cpu.run_raw(pixels)
    return {role: np.ascontiguousarray(np.asarray(raw[f"{role}_q"])[0].transpose(1, 2, 0))
            .astype(storage_dtype(program.tensors[name].kind)) for role, name in program.outputs.items()}


def _diff(a: Dict[str, np.ndarray], b: Dict[str, np.ndarray]) -> int:
    n = 0
    for role in b:
        if role not in a or a[role].shape != b[role].shape:
            n += int(b[role].size)
        else:
            n += int(np.count_nonzero(a[role].astype(np.int32) != b[role].astype(np.int32)))
    return n


# =========================================================================== checks
def open_platform(backend: str, overlay: Optional[str] = None, lib_path: Optional[str] = None) -> Platform:
    """An accelerator platform without a model: the board (``fpga``) or the emulation (``emulator``)."""
    if backend == "fpga":
        from .backends.fpga import PynqPlatform

        return PynqPlatform(overlay)
    if backend == "emulator":
        from .accel.emulib import load_library
        from .platform import EmulatedPlatform

        return EmulatedPlatform(load_library(lib_path))
    raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")


def check_random_programs(platform: Platform, n: int, seed: int = 0, timeout_s: float = 30.0) -> List[CheckResult]:
    """(a) ``n`` random programs through the accelerator vs the golden executor."""
    from .backends.fpga import CodenetAccelerator

    results = []
    max_off = int(min(4, platform.params.MAX_OFFSET))
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        h, w = int(rng.integers(12, 49)), int(rng.integers(12, 49))
        item = f"#{i} {h}x{w}"
        try:
            prog = random_program(rng, (h, w), max_offset=max_off, num_classes=int(rng.integers(1, 6)))
            img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            gold = run_program(prog, img)
            with CodenetAccelerator(platform, prog, timeout_s) as acc:
                got = acc.run_int(img)
                n_desc = acc.compiled.n_layers
            bad = _diff(got, gold)
            total = sum(int(v.size) for v in gold.values())
            results.append(CheckResult("random", item, bad == 0, bad,
                                       f"{len(prog.layers)} layers -> {n_desc} descriptors, {total} head elements"))
        except (CodenetError, ValueError) as e:  # ValueError: ProgramError of a program the engine refuses
            results.append(CheckResult("random", item, False, 0, f"error: {e}"))
    return results


def check_model(backend: Any, artifact: Artifact, images: Sequence[Tuple[str, np.ndarray]],
                cpu: Any = None) -> List[CheckResult]:
    """(b) the artifact's program on ``images``: accelerator vs golden vs CPU integer graph, and detections."""
    from .detector import Detector
    from .transforms import preprocess

    program = artifact.program()
    acc = backend.accelerator
    det_acc = Detector(artifact, backend, "self-test")
    det_cpu = Detector(artifact, cpu, "self-test") if cpu is not None else None
    results = []
    for name, img in images:
        try:
            pixels, _ = preprocess(img, artifact.input_size)
            got = acc.run_int(pixels)
            gold = run_program(program, pixels)
            bad = _diff(got, gold)
            parts = [f"heads vs golden {bad}"]
            if cpu is not None:
                bad_cpu = _diff(got, _int_heads_from_cpu(cpu, pixels, program))
                bad += bad_cpu
                parts.append(f"vs cpu {bad_cpu}")
                a, b = det_acc.detect(img), det_cpu.detect(img)
                same = (np.array_equal(a.boxes, b.boxes) and np.array_equal(a.scores, b.scores)
                        and np.array_equal(a.labels, b.labels))
                parts.append(f"{len(a.boxes)} detections {'identical' if same else 'DIFFER'}")
                if not same:
                    bad += max(1, abs(len(a.boxes) - len(b.boxes)))
            results.append(CheckResult("model", name, bad == 0, bad, ", ".join(parts)))
        except (CodenetError, ValueError) as e:
            results.append(CheckResult("model", name, False, 0, f"error: {e}"))
    return results


def timing_summary(backend: Any, frames: int = 20, cpu: Any = None, clock_mhz: float = 250.0) -> Dict[str, Any]:
    """(c) driver throughput, per-stage ms, counted cycles; CPU backend latency when given."""
    acc = backend.accelerator
    pixels = np.random.default_rng(0).integers(0, 256, acc.compiled.input.shape, dtype=np.uint8)
    t = acc.throughput_test(frames, pixels, clock_mhz=clock_mhz)
    if cpu is not None:
        cpu.run(pixels)
        n = max(1, frames // 2)
        t0 = time.perf_counter()
        for _ in range(n):
            cpu.run(pixels)
        t["cpu_ms"] = (time.perf_counter() - t0) * 1e3 / n
    return t


# =========================================================================== driver
def _make_backend(backend: str, artifact: Artifact, overlay: Optional[str], lib_path: Optional[str],
                  timeout_s: Optional[float]) -> Any:
    kw: Dict[str, Any] = {} if timeout_s is None else {"timeout_s": timeout_s}
    if backend == "fpga":
        from .backends.fpga import FpgaBackend

        return FpgaBackend(artifact, overlay=overlay, **kw)
    from .backends.emulator import EmulatorBackend

    return EmulatorBackend(artifact, lib_path=lib_path, **kw)


def run_selftest(model: Optional[str] = None, backend: str = "emulator", n_random: int = 8,
                 images: Optional[Sequence[str]] = None, n_synthetic: int = 3, frames: int = 20, seed: int = 0,
                 overlay: Optional[str] = None, lib_path: Optional[str] = None,
                 timeout_s: Optional[float] = None, use_cpu: bool = True) -> SelftestReport:
    """Run the checks (module doc); raises CodenetError when they cannot run at all.

    ``model``: a quantized artifact (default: the shipped model, if quantized; without one only
    the random programs run). ``images``: image files for check (b), else ``n_synthetic``
    synthetic images.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    report = SelftestReport(backend)
    artifact = None
    if model is None:
        path = default_model_path()
        if path is not None:
            art = load_artifact(path)
            if art.quantized:
                artifact = art
            else:
                report.notes.append(f"the shipped model {path} is a float model: only random programs were run")
        else:
            report.notes.append("no model given and none shipped: only random programs were run")
    else:
        artifact = load_artifact(model)
        if not artifact.quantized:
            raise CodenetError(f"{model}: is a float model; the self-test of the accelerator needs a quantized one")
    be = None
    cpu = None
    try:
        if artifact is not None:
            be = _make_backend(backend, artifact, overlay, lib_path, timeout_s)
            platform = be.platform
            report.backend = be.describe()
        else:
            platform = open_platform(backend, overlay, lib_path)
            report.backend = f"{backend} ({platform.describe()})"
        report.results += check_random_programs(platform, n_random, seed,
                                                timeout_s if timeout_s is not None else 60.0)
        if be is not None:
            if use_cpu:
                try:
                    from .backends.cpu import CpuBackend

                    cpu = CpuBackend(artifact)
                except CodenetError as e:
                    report.notes.append(f"CPU backend unavailable, its comparison was skipped ({e})")
            if images:
                from .image_io import read_image

                imgs = [(os.path.basename(str(p)), read_image(p)) for p in images]
            else:
                imgs = synthetic_images(n_synthetic, seed)
            report.results += check_model(be, artifact, imgs, cpu)
            if frames > 0:
                report.timing = timing_summary(be, frames, cpu)
    finally:
        if be is not None:
            be.close()
        if cpu is not None:
            cpu.close()
    return report


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m codenet_pynq.selftest", description=__doc__.split("\n\n")[0],
                                epilog="exit codes: 0 all checks pass; 1 a mismatch or a failed check; "
                                       "2 the test cannot run (model, board, emulation library)")
    p.add_argument("model", nargs="?", help="quantized .codenet artifact (default: the shipped model)")
    p.add_argument("--backend", choices=BACKENDS, default="emulator",
                   help="fpga (a PYNQ board with the CoDeNet overlay) or emulator (the HLS C++ on this "
                        "machine; build it with `make -C hls_src lib`)")
    p.add_argument("--random", type=int, default=8, metavar="N", help="random programs to check (default 8)")
    p.add_argument("--images", nargs="*", default=None, help="image files for the model check (default: synthetic)")
    p.add_argument("--synthetic", type=int, default=3, metavar="N", help="synthetic images when --images is not given")
    p.add_argument("--frames", type=int, default=20, help="frames for the timing summary (0: skip)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overlay", help="codenet.bit for --backend fpga (default: $CODENET_OVERLAY, overlays/<board>/)")
    p.add_argument("--lib", help="libcodenet_emu.so for --backend emulator")
    p.add_argument("--timeout", type=float, default=None, help="seconds to wait for ap_done per frame")
    p.add_argument("--no-cpu", action="store_true", help="skip the comparison with the CPU backend")
    p.add_argument("--json", metavar="PATH", help="also write the report as JSON")
    args = p.parse_args(argv)
    try:
        report = run_selftest(args.model, args.backend, args.random, args.images, args.synthetic, args.frames,
                              args.seed, args.overlay, args.lib, args.timeout, not args.no_cpu)
    except (CodenetError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(report.table())
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(report.to_dict(), f, indent=1, default=float)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
