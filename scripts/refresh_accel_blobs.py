"""Recompile the accelerator blobs of a quantized artifact for the current engine parameters.

The integer program, the ONNX graph and every other member stay byte for byte; only
``accel_descriptors.bin``, ``accel_weights.bin`` and the manifest's ``hardware`` and
``accelerator`` records are rewritten (after an engine change such as a new descriptor format).

    python scripts/refresh_accel_blobs.py codenet_pynq/models/shapes_default.codenet
"""

from __future__ import annotations

import argparse
import os
import sys
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from codenet_pynq.accel.compile import compile_program  # noqa: E402
from codenet_pynq.artifact import MANIFEST, load_artifact, write_artifact  # noqa: E402


def refresh(path: str) -> str:
    art = load_artifact(path)
    if not art.quantized:
        raise SystemExit(f"{path}: a float artifact has no accelerator blobs")
    compiled = compile_program(art.program())
    manifest = dict(art.manifest)
    acc = dict(manifest.get("accelerator", {}))
    with zipfile.ZipFile(path) as z:
        files = {n: z.read(n) for n in z.namelist() if n != MANIFEST}
    files[acc.get("descriptors", "accel_descriptors.bin")] = compiled.desc_bytes().tobytes()
    files[acc.get("weights", "accel_weights.bin")] = compiled.weights.tobytes()
    acc.update({"n_layers": compiled.n_layers, "weight_bytes": int(compiled.weights.size),
                "activation_bytes": int(compiled.act_size),
                "layout": "hls_src/README.md: descriptor table (96 little-endian u32 words per layer, format "
                          f"version {compiled.params.DESC_VERSION}) and the weight blob (16 x 16 int4 blocks, low "
                          "nibble first; depthwise [tap][lane] records per 16-channel group; 8 bytes bias/M|S per "
                          "channel); produced for the 'hardware' parameters, recompiled at load for others"})
    manifest["accelerator"] = acc
    manifest["hardware"] = dict(compiled.params)
    manifest.pop("files", None)
    return write_artifact(path, manifest, files)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("artifacts", nargs="+")
    for p in ap.parse_args().artifacts:
        print("rewrote", refresh(p))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
