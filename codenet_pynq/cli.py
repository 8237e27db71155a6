"""The ``codenet-pynq`` command: ``detect``, ``info`` and ``benchmark``.

Also runs as ``python -m codenet_pynq``. Exit codes: 0 success; 1 ``detect`` could not process
any input image; 2 an error to fix (model, image, backend, command line), explained on stderr;
3 an unexpected internal error (a bug: rerun with ``--debug`` and report the traceback);
4 ``detect`` finished some images but failed on others (each failure is listed in the JSON);
130 interrupted with Ctrl-C.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Set, Tuple

import numpy as np

from . import __version__
from .errors import CodenetError, format_message

__all__ = ["main", "build_parser"]

PROG = "codenet-pynq"
EXIT_OK, EXIT_NOTHING_DONE, EXIT_ERROR, EXIT_INTERNAL, EXIT_SOME_FAILED, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 130
BACKEND_CHOICES = ("auto", "fpga", "emulator", "cpu")
#: Extensions the annotated copy keeps; any other input format is written as PNG.
WRITABLE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
#: From this many images on, ``detect`` shows a progress bar (when stderr is a terminal).
PROGRESS_MIN_IMAGES = 10
#: ``detect`` rewrites its JSON (atomically) at most this often while it runs, and at the end.
JSON_EVERY_S = 2.0
STAGES = ("preprocess", "inference", "decode", "total")

_MODEL_HELP = ("the .codenet model file (default: the model shipped in codenet_pynq/models/, "
               "when installed)")


# --------------------------------------------------------------------------------------------
# helpers


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _is_model_path(text: str) -> bool:
    return text.lower().endswith(".codenet")


def _resolve_model(model: Optional[str], command: str) -> str:
    """The model path given, else the shipped default; CodenetError when there is none."""
    if model:
        return model
    from .artifact import default_model_path

    path = default_model_path()
    if path is None:
        example = {"detect": "detect model.codenet photo.jpg"}.get(command, f"{command} model.codenet")
        raise CodenetError(format_message(
            None, "no model given, and no default model is installed (codenet_pynq/models/"
            "shapes_default.codenet is missing from this installation)",
            f"pass the path of a .codenet file, e.g. `{PROG} {example}`"))
    return path


def _write_json_atomic(path: Path, obj: Any) -> Path:
    """Write JSON to ``path`` atomically (:func:`codenet_pynq.files.atomic_write`)."""
    from .files import atomic_write

    try:
        atomic_write(path, json.dumps(obj, indent=1) + "\n")
    except OSError as e:
        raise CodenetError(format_message(str(path), f"cannot be written ({e.strerror or e})",
                                          "check that the folder exists and is writable, or choose "
                                          "another file with --json")) from e
    return path


def _fmt_bytes(n: Optional[float]) -> str:
    if n is None:
        return "unknown"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024.0
    return f"{n} B"  # pragma: no cover


def _fmt_count(n: Optional[float], unit: str = "") -> str:
    if n is None:
        return "unknown"
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= scale:
            return f"{n / scale:.2f} {suffix}{unit} ({int(n):,})"
    return f"{int(n)} {unit}".rstrip()


def _fmt_value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _flatten(d: Dict[str, Any], prefix: str = "") -> List[Tuple[str, Any]]:
    out: List[Tuple[str, Any]] = []
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.extend(_flatten(v, key + "."))
        else:
            out.append((key, v))
    return out


def _stage_stats(values: Sequence[float]) -> Dict[str, float]:
    a = np.asarray(values, dtype=np.float64)
    return {"median": float(np.median(a)), "mean": float(a.mean()), "p90": float(np.percentile(a, 90)),
            "min": float(a.min()), "max": float(a.max())}


def _synthetic_image(h: int = 480, w: int = 640) -> np.ndarray:
    """A deterministic BGR test picture (gradient background and a few filled shapes)."""
    import cv2

    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([(xx * 255 // max(w - 1, 1)), (yy * 255 // max(h - 1, 1)),
                    np.full((h, w), 96)], axis=2).astype(np.uint8)
    s = min(h, w)
    cv2.circle(img, (w // 4, h // 3), s // 8, (40, 200, 240), -1)
    cv2.rectangle(img, (w // 2, h // 2), (w // 2 + s // 5, h // 2 + s // 5), (220, 60, 30), -1)
    tri = np.array([[3 * w // 4, h // 6], [3 * w // 4 - s // 8, h // 6 + s // 5],
                    [3 * w // 4 + s // 8, h // 6 + s // 5]], np.int32)
    cv2.fillPoly(img, [tri], (60, 220, 60))
    return img


def _sample_image() -> Tuple[np.ndarray, str]:
    """The first image shipped in codenet_pynq/samples/, else a synthetic 640 x 480 picture."""
    from .image_io import list_images, read_image

    folder = Path(__file__).resolve().parent / "samples"
    if folder.is_dir():
        for p in list_images(folder):
            try:
                return read_image(p), str(p)
            except CodenetError:
                continue
    return _synthetic_image(), "synthetic 640x480 test picture"


class _Console:
    """Prints results on stdout and warnings on stderr without breaking a progress bar."""

    def __init__(self, quiet: bool = False):
        self.quiet = quiet
        self.bar: Any = None

    def _write(self, text: str, file: Any) -> None:
        if self.bar is not None:
            self.bar.write(text, file=file)
        else:
            print(text, file=file, flush=True)

    def line(self, text: str) -> None:
        if not self.quiet:
            self._write(text, sys.stdout)

    def result(self, text: str) -> None:
        self._write(text, sys.stdout)

    def warn(self, text: str) -> None:
        self._write(f"warning: {text}", sys.stderr)


# --------------------------------------------------------------------------------------------
# detect


@dataclass
class _Input:
    path: Path  # as given / found
    rel: Path  # name of the annotated copy, relative to --out


def _real(path: Path) -> Path:
    """The absolute path with links resolved as far as they go (never raises, even on a link loop)."""
    return Path(os.path.realpath(path))


def _inside(path: Path, folder: Optional[Path]) -> bool:
    if folder is None:
        return False
    try:
        _real(path).relative_to(folder)
        return True
    except ValueError:
        return False


def _collect_inputs(inputs: Sequence[str], recursive: bool, exclude: Optional[Path], console: _Console
                    ) -> Tuple[List[_Input], List[Dict[str, str]]]:
    """Expand files and folders into image files; returns (images, skipped with reasons)."""
    from .image_io import IMAGE_EXTENSIONS, list_images

    found: List[_Input] = []
    skipped: List[Dict[str, str]] = []
    seen: Set[Path] = set()

    def add(p: Path, rel: Path) -> None:
        key = _real(p)
        if key not in seen:
            seen.add(key)
            found.append(_Input(p, rel))

    for text in inputs:
        p = Path(text)
        if p.is_dir():
            images = [f for f in list_images(p, recursive=recursive) if not _inside(f, exclude)]
            others = _non_images(p, recursive, IMAGE_EXTENSIONS, exclude)
            if others:
                names = ", ".join(str(o.relative_to(p)) for o in others[:5])
                more = f" and {len(others) - 5} more" if len(others) > 5 else ""
                console.warn(f"{p}: skipping {len(others)} file(s) that are not images (by extension): "
                             f"{names}{more}")
                skipped.extend({"file": str(o), "reason": f"not an image file (extension "
                                f"'{o.suffix or '(none)'}')"} for o in others)
            if not images:
                hint = "" if recursive else " (add --recursive to search its sub-folders)"
                console.warn(f"{p}: no image files found{hint}")
            for f in images:
                add(f, f.relative_to(p))
        elif os.path.lexists(p):  # a file, or a link / pipe / device that read_image explains
            add(p, Path(p.name))
        else:
            reason = "no such file or folder"
            console.warn(f"{p}: {reason}; skipped")
            skipped.append({"file": str(p), "reason": reason})
    return found, skipped


def _non_images(folder: Path, recursive: bool, exts: Sequence[str], exclude: Optional[Path]) -> List[Path]:
    """Visible files in ``folder`` whose extension is not an image extension."""
    exts_l = {e.lower() for e in exts}
    out: List[Path] = []
    if recursive:
        for dirpath, dirnames, filenames in os.walk(folder):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")
                                 and not _inside(Path(dirpath) / d, exclude))
            out.extend(Path(dirpath) / f for f in sorted(filenames)
                       if not f.startswith(".") and os.path.splitext(f)[1].lower() not in exts_l)
    else:
        out = sorted(e for e in folder.iterdir()
                     if not e.name.startswith(".") and e.is_file() and e.suffix.lower() not in exts_l)
    return out


def _output_path(out_dir: Path, item: _Input, used: Set[Path], inputs: Set[Path]) -> Path:
    """Where the annotated copy of ``item`` goes: its relative name in ``out_dir``, made unique.

    Never one of the ``inputs`` (resolved paths), nor a path ``used`` before in this run.
    """
    rel = item.rel
    if rel.suffix.lower() not in WRITABLE_EXTENSIONS:
        rel = rel.with_suffix(".png")
    cand = out_dir / rel
    if _real(cand) in inputs:
        cand = cand.with_name(f"{cand.stem}_detections{cand.suffix}")
    base, n = cand, 2
    while _real(cand) in used or _real(cand) in inputs:
        cand = base.with_name(f"{base.stem}_{n}{base.suffix}")
        n += 1
    used.add(_real(cand))
    return cand


def _describe_dets(dets: Any, limit: int = 3) -> str:
    n = len(dets)
    if n == 0:
        return "no detections"
    parts = [f"{name} {score:.2f}" for name, score in zip(dets.class_names[:limit], dets.scores[:limit].tolist())]
    more = f", +{n - limit} more" if n > limit else ""
    return f"{n} detection{'s' if n != 1 else ''}: {', '.join(parts)}{more}"


def _split_model_and_inputs(args: argparse.Namespace, parser: argparse.ArgumentParser
                            ) -> Tuple[Optional[str], List[str]]:
    paths = list(args.paths)
    model = args.model
    if paths and _is_model_path(paths[0]):
        if model:
            parser.error(f"two models given: --model {model} and {paths[0]}; pass one")
        model = paths.pop(0)
    if not paths:
        parser.error("no INPUT given: pass image files and/or folders after the model")
    return model, paths


class _DetectReport:
    """The detections JSON of one ``detect`` run: finished images, failures, skipped files.

    :meth:`save` rewrites the whole file atomically, at most every :data:`JSON_EVERY_S` seconds
    unless ``final``, so the file always holds every image finished up to its last write.
    """

    def __init__(self, path: Path, head: Dict[str, Any], skipped: List[Dict[str, str]], console: _Console):
        self.path = path
        self.head = head
        self.records: List[Dict[str, Any]] = []
        self.failures: List[Dict[str, Any]] = []
        self.skipped = skipped
        self.console = console
        self.start = time.perf_counter()
        self._last_save = 0.0
        self._warned = False

    def fail(self, item: _Input, stage: str, exc: BaseException, debug: bool) -> str:
        """Record that ``item`` failed at ``stage`` (read, detect, write); returns the message."""
        if isinstance(exc, CodenetError):
            msg = str(exc)
        else:  # a bug, or an error of a library that escaped its module: keep going, say so
            msg = (f"{item.path}: internal error while {stage}ing: {type(exc).__name__}: {exc}. This is a "
                   "bug in codenet-pynq; rerun with --debug to see the traceback and report it")
            if debug:
                traceback.print_exception(type(exc), exc, exc.__traceback__)
        self.failures.append({"file": str(item.path), "stage": stage, "error": type(exc).__name__,
                              "reason": msg})
        return msg

    def document(self, finished: bool, interrupted: bool) -> Dict[str, Any]:
        records = self.records
        n_det = sum(len(r["detections"]) for r in records)
        stages = ("read",) + STAGES
        mean_ms = {s: float(np.mean([r["timings"][s] for r in records])) for s in stages} if records else {}
        fps = 1000.0 / mean_ms["total"] if records and mean_ms["total"] > 0 else None
        failed_files = {f["file"] for f in self.failures}
        summary = {"images": len(records), "failed": len(failed_files), "skipped": len(self.skipped),
                   "detections": n_det, "mean_ms": mean_ms, "fps": fps,
                   "wall_s": time.perf_counter() - self.start}
        return {**self.head, "images": records, "failures": self.failures, "skipped": self.skipped,
                "summary": summary, "finished": finished, "interrupted": interrupted}

    def save(self, final: bool = False, interrupted: bool = False, now: bool = False) -> None:
        """Write the JSON now (``final`` or ``now``: errors raise) or when the last write is older
        than JSON_EVERY_S (errors warn once: the final write tries again)."""
        t = time.perf_counter()
        if not (final or now) and t - self._last_save < JSON_EVERY_S:
            return
        self._last_save = t
        try:
            _write_json_atomic(self.path, self.document(final and not interrupted, interrupted))
        except CodenetError as e:
            if final or now:
                raise
            if not self._warned:
                self.console.warn(f"{e} (will try again at the end of the run)")
                self._warned = True


def _detect_one(det: Any, item: _Input, args: argparse.Namespace, report: _DetectReport, write_images: bool,
                out_dir: Path, used: Set[Path], input_paths: Set[Path], index: int, total: int) -> None:
    """Read, detect and write one image; every failure is recorded in ``report``, never raised."""
    from .image_io import read_image, write_image
    from .visualize import draw_detections

    console, debug = report.console, bool(getattr(args, "debug", False))
    stage = "read"
    try:
        t0 = time.perf_counter()
        image = read_image(item.path)
        read_ms = (time.perf_counter() - t0) * 1e3
        stage = "detect"
        dets = det.detect(image, score_threshold=args.score_threshold, top_k=args.top_k)
    except Exception as e:  # noqa: BLE001 - any per-image failure is reported and the run goes on
        console.warn(f"failed: {report.fail(item, stage, e, debug)}")
        return
    h, w = image.shape[:2]
    record = {"file": str(item.path), "output": None, "width": w, "height": h, "image_size": [h, w],
              "timings": {"read": read_ms, **dets.timings}, "detections": dets.to_dict()["detections"]}
    report.records.append(record)  # the detections are kept even when the annotated copy fails
    if write_images:
        try:
            out_file = _output_path(out_dir, item, used, input_paths)
            write_image(out_file, draw_detections(image, dets))
            record["output"] = str(out_file)
        except Exception as e:  # noqa: BLE001
            msg = report.fail(item, "write", e, debug)
            record["output_error"] = msg
            console.warn(f"annotated copy not written (detections kept in the JSON): {msg}")
    console.line(f"[{index}/{total}] {item.path}  {w}x{h}  {_describe_dets(dets)}  "
                 f"({dets.timings['total']:.1f} ms)")


def cmd_detect(args: argparse.Namespace) -> int:
    """``detect``: run the detector on images and folders, write annotated copies and JSON.

    A failure on one image (unreadable file, backend error or timeout, unwritable output, even
    an internal error) is reported and the run goes on; the JSON is written before the first
    image, rewritten as images finish, and written at the end whatever happened.
    """
    from .detector import Detector

    model, inputs = _split_model_and_inputs(args, args._parser)
    console = _Console(args.quiet)
    out_dir = Path(args.out)
    json_path = Path(args.json) if args.json else out_dir / "detections.json"
    write_images = not args.no_images
    exclude = _real(out_dir) if write_images else None
    items, skipped = _collect_inputs(inputs, args.recursive, exclude, console)
    if not items:
        print(f"{PROG}: error: no image to process in {', '.join(inputs)}. Pass image files (.jpg, .png, ...) "
              "or folders that contain some", file=sys.stderr)
        return EXIT_NOTHING_DONE

    det = Detector.load(_resolve_model(model, "detect"), backend=args.backend, **_backend_kw(args))
    used: Set[Path] = set()
    input_paths = {_real(it.path) for it in items}
    interrupted = False
    with det:
        head = {"tool": f"{PROG} {__version__}", "created": _now(),
                "model": {"path": det.artifact.path, "classes": det.class_names, "input_size": det.input_size},
                "backend": det.describe(), "backend_name": det.backend_name,
                "score_threshold": det.score_threshold if args.score_threshold is None else args.score_threshold,
                "top_k": det.top_k if args.top_k is None else args.top_k}
        report = _DetectReport(json_path, head, skipped, console)
        report.save(now=True)  # an unwritable --json fails here, before any work is done
        console.line(f"model {det.artifact.path}: {len(det.class_names)} classes, input {det.input_size}; "
                     f"backend {det.describe()}")
        try:
            det.backend.run(np.zeros((det.input_size, det.input_size, 3), np.uint8))  # warm-up, not timed
        except Exception as e:  # noqa: BLE001 - each image will say what goes wrong
            if getattr(args, "debug", False):
                traceback.print_exc()
            console.warn(f"the warm-up run failed ({type(e).__name__}: {e}); trying each image anyway")
        show_bar = len(items) >= PROGRESS_MIN_IMAGES
        try:
            from tqdm import tqdm

            console.bar = tqdm(total=len(items), unit="img", file=sys.stderr, disable=None if show_bar else True,
                               dynamic_ncols=True)
        except ImportError:  # pragma: no cover - tqdm is a dependency
            console.bar = None
        try:
            for i, item in enumerate(items, 1):
                _detect_one(det, item, args, report, write_images, out_dir, used, input_paths, i, len(items))
                if console.bar is not None:
                    console.bar.update(1)
                report.save()
        except KeyboardInterrupt:
            interrupted = True
        finally:
            if console.bar is not None:
                console.bar.close()
                console.bar = None
            report.save(final=True, interrupted=interrupted)

    doc = report.document(not interrupted, interrupted)
    summary, records, failures = doc["summary"], report.records, report.failures
    if records:
        stage_text = ", ".join(f"{s} {summary['mean_ms'][s]:.1f}" for s in ("read",) + STAGES)
        console.result(f"done: {len(records)} image(s), {summary['detections']} detection(s), "
                       f"{summary['failed']} failed, {len(skipped)} skipped; mean ms: {stage_text}; "
                       f"{summary['fps']:.1f} fps (detector total, without file I/O); wall {summary['wall_s']:.2f} s")
        where = f"annotated images in {out_dir}/, " if write_images else ""
        console.result(f"wrote {where}detections JSON {json_path}")
    if interrupted:
        print(f"{PROG}: interrupted after {len(records)} image(s); partial results in {json_path}",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    if not records:
        print(f"{PROG}: error: none of the {len(items)} input image(s) could be processed (see the warnings "
              f"above; details in {json_path}). Check that the files are images that open in an image viewer",
              file=sys.stderr)
        return EXIT_NOTHING_DONE
    if failures:
        print(f"{PROG}: {summary['failed']} of {len(items)} image(s) failed (listed under 'failures' in "
              f"{json_path}); the other results are complete", file=sys.stderr)
        return EXIT_SOME_FAILED
    return EXIT_OK


# --------------------------------------------------------------------------------------------
# info


def _model_from_args(args: argparse.Namespace) -> Optional[str]:
    if args.model_pos and args.model:
        args._parser.error(f"two models given: --model {args.model} and {args.model_pos}; pass one")
    return args.model_pos or args.model


def model_info(path: str) -> Dict[str, Any]:
    """Everything ``info`` reports about an artifact, as a JSON-serialisable dict."""
    from .artifact import MANIFEST, load_artifact, sha256
    from .detector import explain_auto

    art = load_artifact(path)  # checks the zip, the manifest and every checksum
    m = art.manifest
    stats = dict(m.get("stats", {}))
    model_cfg = m.get("model", {})
    auto_name, auto_reason = explain_auto(art)
    files = [{"name": name, "size": len(art.files[name]), "sha256": sha256(art.files[name]), "verified": True}
             for name in sorted(m["files"])]
    quant = m.get("quantization") if isinstance(m.get("quantization"), dict) else {}
    return {
        "path": art.path, "file_bytes": os.path.getsize(art.path),
        "format": m.get("format"), "format_version": m.get("version"),
        "created": m.get("created"), "producer": m.get("producer"),
        "classes": art.class_names, "num_classes": len(art.class_names),
        "input_size": art.input_size, "down_ratio": art.down_ratio,
        "variant": model_cfg.get("variant"), "width": model_cfg.get("width"),
        "decoder_channels": model_cfg.get("decoder_channels"), "head_channels": model_cfg.get("head_channels"),
        "quantized": art.quantized, "quantization": quant,
        "program": m.get("program"), "hardware": m.get("hardware"),
        "parameters": stats.get("parameters"), "macs": stats.get("macs"),
        "weight_bytes": {k: v for k, v in stats.items() if k.endswith("_bytes")},
        "stats": stats, "decode": m.get("decode", {}), "metrics": m.get("metrics"),
        "files": files, "checksums_verified": True, "manifest_member": MANIFEST,
        "auto_backend": {"backend": auto_name, "reason": auto_reason},
    }


def cmd_info(args: argparse.Namespace) -> int:
    """``info``: summary of an artifact."""
    info = model_info(_resolve_model(_model_from_args(args), "info"))
    if args.json:
        print(json.dumps(info, indent=1))
        return EXIT_OK
    rows: List[Tuple[str, str]] = []
    rows.append(("model", info["path"]))
    rows.append(("format", f"{info['format']} version {info['format_version']}, created {info['created']} "
                           f"by {info['producer']}"))
    rows.append(("classes", f"{info['num_classes']}: {', '.join(info['classes'])}"))
    rows.append(("input", f"{info['input_size']} x {info['input_size']} BGR uint8 (letterboxed), output "
                          f"stride {info['down_ratio']}"))
    arch = [f"variant {info['variant']}", f"width {info['width']}"]
    if info["decoder_channels"]:
        arch.append(f"decoder {info['decoder_channels']}")
    if info["head_channels"]:
        arch.append(f"head {info['head_channels']}")
    rows.append(("architecture", ", ".join(arch)))
    if info["quantized"]:
        rows.append(("precision", "quantized: integer layer program (accelerator) + integer-exact ONNX graph (cpu)"))
        q = info["quantization"]
        for key in ("weights", "activations"):
            if isinstance(q.get(key), str):
                rows.append(("", f"{key}: {q[key]}"))
        prog = info["program"]
        if isinstance(prog, dict) and "layers" in prog:
            rows.append(("program", f"{prog['layers']} layers"))
        hw = info["hardware"]
        if isinstance(hw, dict) and hw:
            key = [k for k in ("PA", "PE", "DW_PE", "MAX_OFFSET", "LB_ROWS", "ACC_BITS", "MAX_W", "MAX_C") if k in hw]
            shown = [(k, hw[k]) for k in key] or [kv for kv in _flatten(hw) if not isinstance(kv[1], (list, tuple))]
            rows.append(("hardware", ", ".join(f"{k} {_fmt_value(v)}" for k, v in shown)
                         + (" (all parameters: --json)" if key else "")))
    else:
        rows.append(("precision", "float32 (not quantized: runs on the cpu backend; the accelerator needs a "
                                  "quantized export)"))
    rows.append(("parameters", _fmt_count(info["parameters"])))
    rows.append(("MACs", _fmt_count(info["macs"]) + " per image" if info["macs"] is not None else "unknown"))
    labels = {"float_bytes": "float32", "weight_bytes": "integer (packed for the accelerator)"}
    weights = ", ".join(f"{labels.get(k, k[:-6])} {_fmt_bytes(v)}" for k, v in info["weight_bytes"].items()
                        if isinstance(v, (int, float))) or "unknown"
    rows.append(("size", f"file {_fmt_bytes(info['file_bytes'])} ({info['file_bytes']:,} bytes); weights: {weights}"))
    other = {k: v for k, v in info["stats"].items()
             if k not in ("parameters", "macs") and not k.endswith("_bytes")}
    if other:
        rows.append(("statistics", ", ".join(f"{k} {_fmt_value(v)}" for k, v in _flatten(other))))
    for i, f in enumerate(info["files"]):
        rows.append(("files" if i == 0 else "", f"{f['name']}  {_fmt_bytes(f['size'])}  sha256 {f['sha256'][:16]}...  ok"))
    rows.append(("checksums", f"all {len(info['files'])} member(s) verified (sha256)"))
    if info["metrics"]:
        metrics = info["metrics"] if isinstance(info["metrics"], dict) else {"value": info["metrics"]}
        rows.append(("metrics", ", ".join(f"{k} {_fmt_value(v)}" for k, v in _flatten(metrics))))
    else:
        rows.append(("metrics", "none recorded in the manifest"))
    dec = info["decode"]
    if dec:
        rows.append(("decode", f"top-k {dec.get('top_k', '?')}, score threshold {dec.get('score_threshold', '?')}"))
    rows.append(("auto backend", f"{info['auto_backend']['backend']} -- {info['auto_backend']['reason']}"))
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    return EXIT_OK


# --------------------------------------------------------------------------------------------
# benchmark


def cmd_benchmark(args: argparse.Namespace) -> int:
    """``benchmark``: per-stage latency and throughput of one backend."""
    from .detector import Detector
    from .image_io import read_image

    if args.image:
        image, source = read_image(args.image), args.image
    else:
        image, source = _sample_image()
    det = Detector.load(_resolve_model(_model_from_args(args), "benchmark"), backend=args.backend,
                        **_backend_kw(args))
    times: Dict[str, List[float]] = {s: [] for s in STAGES}
    with det:
        print(f"model {det.artifact.path} (input {det.input_size}) on {det.describe()}")
        print(f"image {source} ({image.shape[1]}x{image.shape[0]}); {args.warmup} warm-up + {args.runs} "
              f"timed runs")
        for _ in range(args.warmup):
            det.detect(image)
        n_det = 0
        for _ in range(args.runs):
            dets = det.detect(image)
            n_det = len(dets)
            for s in STAGES:
                times[s].append(dets.timings[s])
        backend, backend_name = det.describe(), det.backend_name
        acc = getattr(det.backend, "accelerator", None)
        counted = int(acc.cycles()) if acc is not None else 0
    stats = {s: _stage_stats(v) for s, v in times.items()}
    fps = {"median": 1000.0 / stats["total"]["median"], "mean": 1000.0 / stats["total"]["mean"]}
    print()
    print(f"{'stage (ms)':<12}{'median':>10}{'mean':>10}{'p90':>10}{'min':>10}{'max':>10}")
    for s in STAGES:
        st = stats[s]
        print(f"{s:<12}" + "".join(f"{st[k]:>10.2f}" for k in ("median", "mean", "p90", "min", "max")))
    where = {"fpga": "measured on the board", "emulator": "measured on this host, emulated accelerator",
             "cpu": "measured on this host"}.get(backend_name, "measured")
    print(f"\nthroughput: {fps['median']:.1f} fps (1000 / median total), {fps['mean']:.1f} fps (mean), {where}; "
          f"{n_det} detection(s) per run")
    if counted:
        fps["counted_accelerator"] = 250e6 / counted
        print(f"accelerator alone: {counted} cycles = {counted / 250e3:.2f} ms at 250 MHz "
              f"({250e6 / counted:.1f} fps), counted by the engine's C-simulation account, not measured on a board")
    if args.json:
        report = {"tool": f"{PROG} {__version__}", "created": _now(), "model": det.artifact.path,
                  "backend": backend, "backend_name": backend_name,
                  "image": {"source": source, "width": int(image.shape[1]), "height": int(image.shape[0])},
                  "warmup": args.warmup, "runs": args.runs, "stages_ms": stats, "fps": fps,
                  "detections": n_det, "samples_ms": times,
                  "host": {"machine": platform.machine(), "python": platform.python_version(),
                           "system": platform.system()}}
        _write_json_atomic(Path(args.json), report)
        print(f"wrote {args.json}")
    return EXIT_OK


# --------------------------------------------------------------------------------------------
# parser


def _checked_number(text: str, cast, ok, kind: str, rule: str):
    """Parse ``text`` with ``cast`` and check ``ok``; argparse errors name the rule broken."""
    try:
        v = cast(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {kind}") from None
    if not ok(v):
        raise argparse.ArgumentTypeError(f"{v} must be {rule}")
    return v


def _positive_int(text: str) -> int:
    return _checked_number(text, int, lambda v: v >= 1, "an integer", "at least 1")


def _non_negative_int(text: str) -> int:
    return _checked_number(text, int, lambda v: v >= 0, "an integer", "0 or more")


def _probability(text: str) -> float:
    return _checked_number(text, float, lambda v: 0.0 <= v <= 1.0, "a number", "between 0 and 1")


_MAIN_EPILOG = f"""\
examples:
  {PROG} detect photo.jpg                      # shipped default model, results in detections/
  {PROG} detect model.codenet photos/ --out results/
  {PROG} info model.codenet
  {PROG} benchmark model.codenet --backend cpu --runs 100

Run '{PROG} COMMAND --help' for the options of each command.
exit codes: 0 ok; 1 detect processed no image; 2 error to fix (model, image, backend, command
line); 3 internal error (rerun with --debug and report it); 4 detect failed on some images (the
others are done; failures listed in the JSON); 130 interrupted.
"""

_DETECT_DESC = """\
Detect objects in images and folders of images.

Positional arguments: an optional MODEL (a path ending in .codenet, case-insensitive) followed by
one or more INPUTs (image files or folders). Without a model path (and without --model) the model
shipped with codenet-pynq is used. A folder is searched for images by extension (.jpg, .png,
.bmp, .tif, .webp, .gif, ...; add --recursive for sub-folders); other files in it are skipped with
a warning. A failure on one image (unreadable file, backend error or timeout, unwritable output)
is reported and the run goes on; the exit code is 0 when every image was processed, 4 when some
failed (listed in the JSON), 1 when none could be processed.

Outputs: an annotated copy of each image in --out (same relative name; formats OpenCV cannot
write become .png), and one JSON file (default OUT/detections.json, written atomically) with,
per image: file, output, width, height, detections (box x1 y1 x2 y2 in image pixels, score,
label, class_name) and timings in ms (read, preprocess, inference, decode, total); plus the
failures and skipped files with their reasons and a summary. The JSON is rewritten as images
finish, so it always holds every finished image.
"""

_DETECT_EPILOG = f"""\
examples:
  {PROG} detect photo.jpg
  {PROG} detect model.codenet photo.jpg street.png --score-threshold 0.5
  {PROG} detect --model model.codenet photos/ --recursive --out results/
  {PROG} detect photos/ --no-images --json detections.json --backend cpu

environment: CODENET_THREADS=N limits the threads ONNX Runtime uses on the cpu backend;
CODENET_SPIN=0 lets idle threads sleep; CODENET_STREAMS=N frames in flight for Detector.stream.
"""

_INFO_EPILOG = f"""\
examples:
  {PROG} info                       # the shipped default model
  {PROG} info model.codenet
  {PROG} info model.codenet --json > model_info.json
"""

_BENCH_EPILOG = f"""\
examples:
  {PROG} benchmark model.codenet
  {PROG} benchmark model.codenet --backend cpu --runs 200 --warmup 20
  {PROG} benchmark --image photo.jpg --json bench.json

'total' is preprocess + inference + decode of an image already in memory (file reading
excluded); fps = 1000 / total. Without --image a shipped sample (or a synthetic 640x480
picture) is used: preprocessing time depends on the image size.
"""


def _add_backend(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", default="auto", choices=BACKEND_CHOICES,
                   help="where the network runs: auto (the FPGA when a board and a matching overlay are "
                        "present and the model is quantized, else cpu), fpga, emulator (the accelerator's "
                        "C++ on the host), cpu (ONNX Runtime). Default: %(default)s")
    p.add_argument("--overlay", metavar="BIT", default=None,
                   help="the overlay's .bit file for the fpga backend (its .hwh and codenet_params.h beside it); "
                        "default: $CODENET_OVERLAY, then overlays/<board>/codenet.bit")


def _backend_kw(args: argparse.Namespace) -> dict:
    use = getattr(args, "overlay", None) and args.backend in ("fpga", "auto")
    return {"overlay": args.overlay} if use else {}


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    """The argument parser of the ``codenet-pynq`` command."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the full traceback of errors")
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog=prog, formatter_class=fmt, parents=[common], epilog=_MAIN_EPILOG,
        description="CoDeNet object detection on Zynq FPGAs (PYNQ), with a CPU fallback.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")

    d = sub.add_parser("detect", parents=[common], formatter_class=fmt, description=_DETECT_DESC,
                       epilog=_DETECT_EPILOG, help="detect objects in images and folders",
                       usage=f"{prog} detect [options] [MODEL.codenet] INPUT [INPUT ...]")
    d.add_argument("paths", nargs="+", metavar="[MODEL.codenet] INPUT",
                   help="optional model (ends with .codenet), then image files and/or folders")
    d.add_argument("--model", "-m", help=_MODEL_HELP + "; the same as a first positional ending in .codenet")
    d.add_argument("--out", "-o", default="detections", help="folder for annotated images and the JSON "
                   "(created; default: %(default)s)")
    _add_backend(d)
    d.add_argument("--score-threshold", type=_probability, default=None, metavar="S",
                   help="keep detections with score >= S, 0..1 (default: the model's, usually 0.3)")
    d.add_argument("--top-k", type=_positive_int, default=None, metavar="K",
                   help="at most K detections per image (default: the model's, usually 100)")
    d.add_argument("--json", metavar="FILE", help="write the detections JSON here (default: OUT/detections.json)")
    d.add_argument("--no-images", action="store_true", help="do not write annotated images (JSON only)")
    d.add_argument("--recursive", "-r", action="store_true", help="also search sub-folders of INPUT folders")
    d.add_argument("--quiet", "-q", action="store_true", help="no per-image lines (the summary is still printed)")
    d.set_defaults(func=cmd_detect, _parser=d)

    i = sub.add_parser("info", parents=[common], formatter_class=fmt, epilog=_INFO_EPILOG,
                       help="describe a .codenet model and verify its checksums",
                       description="Describe a .codenet model: classes, input size, architecture, precision,\n"
                                   "parameters, size, MACs, member files (all checksums are verified), metrics\n"
                                   "recorded at export, and which backend 'auto' would pick and why.")
    i.add_argument("model_pos", nargs="?", metavar="MODEL", help=_MODEL_HELP)
    i.add_argument("--model", "-m", help="the same as MODEL")
    i.add_argument("--json", action="store_true", help="print the information as JSON")
    i.set_defaults(func=cmd_info, _parser=i)

    b = sub.add_parser("benchmark", parents=[common], formatter_class=fmt, epilog=_BENCH_EPILOG,
                       help="measure latency per stage and frames per second",
                       description="Measure the latency of each stage (preprocess, inference, decode, total:\n"
                                   "median, mean, p90, min, max) and the frames per second of a backend.")
    b.add_argument("model_pos", nargs="?", metavar="MODEL", help=_MODEL_HELP)
    b.add_argument("--model", "-m", help="the same as MODEL")
    _add_backend(b)
    b.add_argument("--runs", type=_positive_int, default=50, metavar="N", help="timed runs (default: %(default)s)")
    b.add_argument("--warmup", type=_non_negative_int, default=5, metavar="N",
                   help="untimed runs first (default: %(default)s)")
    b.add_argument("--image", metavar="PATH", help="image to run on (default: a shipped sample or a synthetic "
                   "640x480 picture)")
    b.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    b.set_defaults(func=cmd_benchmark, _parser=b)
    return parser


def _code(code: Any) -> int:
    if code is None:
        return EXIT_OK
    return code if isinstance(code, int) else EXIT_ERROR


def main(argv: Optional[Sequence[str]] = None, prog: str = PROG) -> int:
    """Entry point of ``codenet-pynq``; returns the exit code."""
    parser = build_parser(prog)
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version, usage errors
        return _code(e.code)
    if getattr(args, "command", None) is None:
        parser.print_help(sys.stderr)
        return EXIT_ERROR
    debug = bool(getattr(args, "debug", False))
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except SystemExit as e:  # parser.error() inside a command
        return _code(e.code)
    except CodenetError as e:
        if debug:
            traceback.print_exc()
        print(f"{prog}: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as e:  # a bug: say so briefly, the traceback with --debug
        if debug:
            traceback.print_exc()
        print(f"{prog}: internal error: {type(e).__name__}: {e}. This is a bug in codenet-pynq; rerun with "
              "--debug to see the traceback and report it", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
