"""Builders of hostile inputs for the bad-input suite and benchmarks/bad_input_memory.py.

Decompression bombs are built in bounded memory (deflate streams fed with zero rows), so that
making them never costs what decoding them would.
"""

from __future__ import annotations

import hashlib
import io
import json
import struct
import zipfile
import zlib
from pathlib import Path
from typing import Dict, Iterable, Optional, Union

import numpy as np

CHUNK = 1 << 20


def _deflate_zeros(n: int, row: Optional[bytes] = None, wbits: int = 15) -> bytes:
    """zlib (wbits 15) or raw deflate (-15) of ``n`` zero bytes, or of ``row`` repeated to ``n`` bytes."""
    c = zlib.compressobj(9, zlib.DEFLATED, wbits)
    out = []
    block = (row * max(1, CHUNK // len(row))) if row else bytes(CHUNK)
    left = n
    while left > 0:
        take = min(left, len(block))
        out.append(c.compress(block[:take]))
        left -= take
    out.append(c.flush())
    return b"".join(out)


def png_bomb(path: Path, width: int, height: int) -> Path:
    """A valid grayscale PNG of width x height zero pixels (tiny file, huge image)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = _deflate_zeros((width + 1) * height)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


def tiff_bomb(path: Path, width: int, height: int) -> Path:
    """A valid deflate-compressed 8-bit grayscale TIFF (one strip) of width x height zeros."""
    data = _deflate_zeros(width * height)
    tags = [(256, 4, width), (257, 4, height), (258, 3, 8), (259, 3, 8), (262, 3, 1), (273, 4, 0),
            (277, 3, 1), (278, 4, height), (279, 4, len(data))]
    ifd_size = 2 + 12 * len(tags) + 4
    data_offset = 8 + ifd_size
    ifd = struct.pack("<H", len(tags))
    for tag, typ, value in tags:
        value = data_offset if tag == 273 else value
        packed = struct.pack("<HI", value, 0)[:4] if typ == 3 else struct.pack("<I", value)
        ifd += struct.pack("<HHI", tag, typ, 1) + packed
    ifd += struct.pack("<I", 0)
    path.write_bytes(b"II*\x00" + struct.pack("<I", 8) + ifd + data)
    return path


def webp_bomb(path: Path, side: int = 16383) -> Path:
    """A lossless WebP of one colour whose header is patched to side x side (it still decodes)."""
    import cv2

    ok, enc = cv2.imencode(".webp", np.zeros((64, 64, 3), np.uint8), [cv2.IMWRITE_WEBP_QUALITY, 101])
    data = bytearray(enc.tobytes())
    i = data.find(b"VP8L") + 9  # chunk tag, chunk size, signature byte 0x2f, then 14 + 14 bits
    bits = int.from_bytes(data[i:i + 4], "little")
    bits = (bits & ~((1 << 28) - 1)) | (side - 1) | ((side - 1) << 14)
    data[i:i + 4] = bits.to_bytes(4, "little")
    path.write_bytes(bytes(data))
    return path


def gif_huge_screen(path: Path) -> Path:
    """A GIF whose logical screen is 65535 x 65535 with a 1 x 1 frame."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("P", (1, 1)).save(buf, "GIF")
    data = bytearray(buf.getvalue())
    data[6:10] = struct.pack("<HH", 65535, 65535)
    path.write_bytes(bytes(data))
    return path


def jpeg_huge_sof(path: Path) -> Path:
    """A small JPEG whose frame header (SOF0) claims 65000 x 65000 pixels."""
    import cv2

    data = bytearray(cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))[1].tobytes())
    i = data.find(b"\xff\xc0")
    data[i + 5:i + 9] = struct.pack(">HH", 65000, 65000)
    path.write_bytes(bytes(data))
    return path


def gif_image(path: Path) -> Path:
    """An ordinary 40 x 30 GIF."""
    from PIL import Image

    Image.fromarray((np.arange(40 * 30 * 3) % 251).astype(np.uint8).reshape(30, 40, 3)).save(path, "GIF")
    return path


# ------------------------------------------------------------------------------------ zips
def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_zip(path: Path, members: Dict[str, bytes], manifest: Union[bytes, Dict, None] = None,
              compression: int = zipfile.ZIP_DEFLATED) -> Path:
    """A .codenet-like zip: ``manifest`` (raw bytes as given, or a dict whose ``files`` entry is filled
    with the members' checksums) followed by ``members``."""
    if isinstance(manifest, dict):
        manifest = dict(manifest)
        manifest["files"] = {n: {"sha256": sha256(d), "size": len(d)} for n, d in members.items()}
        manifest = json.dumps(manifest).encode()
    with zipfile.ZipFile(path, "w", compression) as z:
        if manifest is not None:
            z.writestr("manifest.json", manifest)
        for name, data in members.items():
            z.writestr(name, data)
    return path


def zip_bomb_member(path: Path, manifest: Dict, member: str, declared: int, others: Dict[str, bytes]) -> Path:
    """An artifact whose ``member`` is ``declared`` zero bytes (deflated: about declared / 1000),
    listed in the manifest with its true checksum, so only the size budget can refuse it."""
    h = hashlib.sha256()
    zero = bytes(CHUNK)
    for _ in range(declared // CHUNK):
        h.update(zero)
    h.update(bytes(declared % CHUNK))
    man = dict(manifest)
    man["files"] = {n: {"sha256": sha256(d), "size": len(d)} for n, d in others.items()}
    man["files"][member] = {"sha256": h.hexdigest(), "size": declared}
    deflated = _deflate_zeros(declared, wbits=-15)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("manifest.json", json.dumps(man))
        for name, data in others.items():
            z.writestr(name, data)
        info = zipfile.ZipInfo(member, date_time=(2026, 1, 1, 0, 0, 0))
        info.compress_type = zipfile.ZIP_DEFLATED
        _write_precompressed(z, info, deflated, declared, _crc_zeros(declared))
    return path


def _crc_zeros(n: int) -> int:
    crc = 0
    zero = bytes(CHUNK)
    for _ in range(n // CHUNK):
        crc = zlib.crc32(zero, crc)
    return zlib.crc32(bytes(n % CHUNK), crc)


def _write_precompressed(z: zipfile.ZipFile, info: zipfile.ZipInfo, deflated: bytes, size: int, crc: int) -> None:
    """Add a member whose deflate stream is already made (zipfile would need the raw bytes)."""
    info.file_size, info.compress_size, info.CRC = size, len(deflated), crc
    info.header_offset = z.fp.tell()
    z.fp.write(info.FileHeader(zip64=size > 0x7FFFFFFF))
    z.fp.write(deflated)
    z.filelist.append(info)
    z.NameToInfo[info.filename] = info
    z.start_dir = z.fp.tell()


def patch_declared_size(path: Path, member: str, declared: int) -> Path:
    """Rewrite the uncompressed size a member declares (local header and central directory)."""
    data = bytearray(path.read_bytes())
    name = member.encode()
    for sig, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        i = 0
        while True:
            i = data.find(sig, i)
            if i < 0:
                break
            name_at = i + (30 if sig == b"PK\x03\x04" else 46)
            if data[name_at:name_at + len(name)] == name:
                data[i + offset:i + offset + 4] = struct.pack("<I", declared)
            i += 4
    path.write_bytes(bytes(data))
    return path


def npy_bytes(header: Dict, payload: bytes = b"") -> bytes:
    """A .npy (version 1.0) with the given header dict and payload, for crafted arrays."""
    text = repr(header).encode("latin1")
    pad = 64 - (10 + len(text) + 1) % 64
    text += b" " * pad + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text + payload


def npz_bytes(arrays: Dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in arrays.items():
            z.writestr(name if name.endswith(".npy") else name + ".npy", data)
    return buf.getvalue()


def nested_json(depth: int) -> str:
    return "[" * depth + "]" * depth


def names(items: Iterable[str]) -> str:
    return ", ".join(items)
