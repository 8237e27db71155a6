"""Robust image reading and writing: whatever the file holds, the caller gets BGR ``uint8`` H x W x 3.

Reading is done in three steps, each bounded before the next one allocates:

1. the file is checked with ``stat``: only a regular file of at most ``max_bytes`` (default
   512 MiB) is opened (a named pipe, a device such as ``/dev/zero``, a socket or a folder is
   refused without being opened), and its bytes are read with Python (clear errors for missing
   files, broken links, symbolic link loops and permission problems; non-ASCII paths work);
2. the header is parsed with Pillow (``PIL.Image`` plugins read the header only, no pixel):
   the format must be one of :data:`FORMATS` and width x height at most ``max_pixels``
   (default 100 megapixels), so a decompression bomb (a tiny TIFF, WebP, PNG... declaring a
   huge image) is refused before any pixel is decoded;
3. the pixels are decoded with ``cv2.imdecode`` and converted as follows:

* grayscale (H x W or H x W x 1) is repeated into 3 channels;
* an alpha channel (gray+alpha, BGRA) is **composited over black**: ``bgr * alpha / max``,
  rounded.  Fully transparent pixels become black, the same value the detector's letterbox
  border has, and whatever colour an editor left under transparent pixels is ignored;
* 16-bit integer images keep their 8 most significant bits (``>> 8``), i.e. a full-range
  linear rescale of 0..65535 to 0..255 (no per-image stretching, so results do not depend on
  the image's content);
* floating point images (float TIFF, ...) are taken as 0..1, clipped, scaled by 255 and
  rounded; NaN becomes 0.

JPEG data is decoded with ``IMREAD_COLOR`` so that the EXIF orientation tag is applied (a phone
photo comes out upright); JPEG has neither alpha nor more than 8 bits in practice.  Every other
format is decoded with ``IMREAD_UNCHANGED`` and its orientation tag, if any, is ignored.

**Memory bound.** With W x H <= ``max_pixels`` and the file <= ``max_bytes``, the peak memory of
:func:`read_image` is about ``file bytes + W*H*d + W*H*3`` plus what the codec holds while
decoding, where ``d`` is the decoded size of a pixel (1 gray, 3 colour, 4 with alpha, 6 or 8 for
16-bit) and ``W*H*3`` the BGR result (none for 8-bit colour, which is returned as decoded; the
conversion runs in blocks of 1 megapixel, so its temporaries are a few MB). At the default
100 megapixels: 0.3 GB for 8-bit colour, 0.4 GB gray, 0.7 GB with alpha, 1.1 GB for 16-bit RGBA.  Refusals (too many pixels, not a
regular file, too large a file) cost no more than the file's bytes.  ``benchmarks/
bad_input_memory.py`` measures it (docs/benchmarks.md).

Refused, with :class:`~codenet_pynq.errors.ImageReadError` naming the file: a missing path, a
folder or anything that is not a regular file, an unreadable or empty file, data that is not an
image of a supported format / is corrupt / is truncated (a JPEG without its end marker, a PNG
without its ``IEND`` chunk), images with more pixels than ``max_pixels``, and unsupported pixel
types.  The formats accepted from a single file and the extensions :func:`list_images` picks
from a folder are the same table, :data:`FORMATS`.
"""

from __future__ import annotations

import io
import os
import re
import struct
import warnings
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

from .errors import ImageReadError, ImageWriteError, format_message
from .files import atomic_write, read_regular_file

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_MAX_FILE_BYTES",
    "FORMATS",
    "IMAGE_EXTENSIONS",
    "read_image",
    "decode_image",
    "image_header",
    "to_bgr_u8",
    "list_images",
    "write_image",
    "encode_image",
]

PathLike = Union[str, "os.PathLike[str]"]

#: Default upper bound on width x height accepted by :func:`read_image` (100 megapixels).
DEFAULT_MAX_PIXELS = 100_000_000

#: Default upper bound on the size of an image file read by :func:`read_image` (512 MiB).
DEFAULT_MAX_FILE_BYTES = 512 * 2**20

#: Formats read (Pillow's name for the header parser -> file extensions, lower case with the dot).
#: A single file is accepted when its header is one of these formats, whatever its name; a folder
#: is searched for exactly these extensions. All are decoded by OpenCV (GIF: first frame).
FORMATS: Dict[str, Tuple[str, ...]] = {
    "JPEG": (".jpg", ".jpeg", ".jpe"),
    "PNG": (".png",),
    "BMP": (".bmp", ".dib"),
    "TIFF": (".tif", ".tiff"),
    "WEBP": (".webp",),
    "GIF": (".gif",),
    "PPM": (".pbm", ".pgm", ".ppm", ".pnm"),
    "SUN": (".sr", ".ras"),
    "JPEG2000": (".jp2", ".j2k"),
    "AVIF": (".avif",),
}

#: File extensions (lower case, with the dot) that :func:`list_images` treats as images.
IMAGE_EXTENSIONS: Tuple[str, ...] = tuple(e for exts in FORMATS.values() for e in exts)

_JPEG_SOI = b"\xff\xd8"
_PNG_SIG = b"\x89PNG\r\n\x1a\n"


def read_image(path: PathLike, max_pixels: Optional[int] = DEFAULT_MAX_PIXELS,
               max_bytes: Optional[int] = DEFAULT_MAX_FILE_BYTES) -> np.ndarray:
    """Read an image file and return it as a contiguous BGR ``uint8`` array of shape (H, W, 3).

    ``max_pixels`` (default 100 megapixels) bounds width x height and ``max_bytes`` (default
    512 MiB) the file size; ``None`` disables a bound. Only regular files are opened.
    Raises :class:`ImageReadError` naming the file, the problem and what to do.
    """
    name = os.fspath(path)
    data = read_regular_file(name, ImageReadError, max_bytes=max_bytes, what="an image file",
                             dir_hint="pass one image file, or use list_images() to iterate over the "
                                      "images in a folder")
    return decode_image(data, name=name, max_pixels=max_pixels)


def image_header(data: Union[bytes, bytearray, memoryview], name: str = "<image bytes>",
                 max_pixels: Optional[int] = DEFAULT_MAX_PIXELS) -> Tuple[str, int, int]:
    """(format, width, height) from the header of encoded image bytes, without decoding a pixel.

    Uses Pillow's header parsers for the formats of :data:`FORMATS`. Raises :class:`ImageReadError`
    when no supported format recognises the data. Some Pillow parsers refuse sizes above twice
    ``PIL.Image.MAX_IMAGE_PIXELS`` themselves: that is an ImageReadError too, unless
    ``max_pixels`` is larger (or None), in which case the size is returned as 0 x 0 (unknown).
    """
    from PIL import Image

    Image.init()
    raw = bytes(data[:16])
    fp = io.BytesIO(data)
    for fmt in FORMATS:
        if fmt not in Image.OPEN:  # this Pillow lacks the plugin (e.g. AVIF before 11.3)
            continue
        factory, accept = Image.OPEN[fmt]
        try:
            ok = accept is None or accept(raw)
            if not ok or isinstance(ok, str):
                continue
            fp.seek(0)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                im = factory(fp, "")
            width, height = (int(v) for v in im.size)
        except Image.DecompressionBombError as e:  # Pillow's own limit, checked by some parsers
            found = re.search(r"\((\d+) pixels\)", str(e))
            pixels = int(found.group(1)) if found else 2 * int(Image.MAX_IMAGE_PIXELS or 0) + 1
            if max_pixels is not None and pixels > max_pixels:
                raise ImageReadError(format_message(
                    name, f"the {fmt} header declares {pixels / 1e6:.1f} megapixels, more than the limit of "
                    f"{max_pixels / 1e6:g} megapixels", _TOO_LARGE_HINT)) from e
            return fmt, 0, 0
        except Exception:  # noqa: BLE001 - whatever a parser raises on hostile bytes means "not this format"
            continue  # not this format (or a header too damaged to read): try the next one
        return fmt, width, height
    raise ImageReadError(format_message(
        name, f"cannot be decoded: the data is not an image of a supported format ({', '.join(FORMATS)}) "
        "or its header is damaged", _not_image_hint(raw)))


def decode_image(data: Union[bytes, bytearray, memoryview, np.ndarray], name: str = "<image bytes>",
                 max_pixels: Optional[int] = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode encoded image bytes (JPEG, PNG, ...) to BGR ``uint8`` (H, W, 3); see :func:`read_image`.

    ``name`` is used in error messages (a path, a URL, a camera id). The header is checked
    against ``max_pixels`` before any pixel is decoded.
    """
    buf = np.frombuffer(data, dtype=np.uint8) if not isinstance(data, np.ndarray) else \
        np.ascontiguousarray(data, dtype=np.uint8).reshape(-1)
    if buf.size == 0:
        raise ImageReadError(format_message(
            name, "the file is empty (0 bytes)", "the download or copy probably failed; "
            "get the image again"))
    head = bytes(buf[:64])
    fmt, width, height = image_header(memoryview(buf), name, max_pixels)
    if (width, height) == (0, 0):
        pass  # size unknown before decoding (see image_header); checked after decoding
    elif width < 1 or height < 1:
        raise ImageReadError(format_message(name, f"the {fmt} header declares a {width} x {height} image",
                                            "the file is damaged; get the image again"))
    _check_pixels(name, width, height, max_pixels)
    if fmt == "JPEG" and _jpeg_truncated(buf):
        raise ImageReadError(format_message(
            name, "the JPEG data is truncated (no end-of-image marker after the image data)",
            "the file was cut short while downloading or copying; get the image again"))
    if fmt == "PNG" and _png_truncated(buf):
        raise ImageReadError(format_message(
            name, "the PNG data is truncated (no IEND chunk at the end)",
            "the file was cut short while downloading or copying; get the image again"))
    flags = cv2.IMREAD_COLOR if fmt == "JPEG" else cv2.IMREAD_UNCHANGED
    try:
        img = cv2.imdecode(buf, flags)
    except cv2.error as exc:  # some codecs raise instead of returning None
        raise ImageReadError(format_message(
            name, f"cannot be decoded as an image (OpenCV: {str(exc).strip().splitlines()[-1]})",
            _not_image_hint(head))) from exc
    if img is None or img.size == 0:
        raise ImageReadError(format_message(
            name, f"cannot be decoded: the {fmt} data is corrupt or uses a feature OpenCV does not read",
            _not_image_hint(head)))
    _check_pixels(name, img.shape[1], img.shape[0], max_pixels)
    try:
        return to_bgr_u8(img)
    except ValueError as exc:
        raise ImageReadError(format_message(name, str(exc), "convert the image to 8-bit RGB "
                                            "(PNG or JPEG) and try again")) from exc


def to_bgr_u8(img: np.ndarray) -> np.ndarray:
    """Convert a decoded OpenCV image (any of the layouts and depths above) to BGR ``uint8`` (H, W, 3).

    Raises ``ValueError`` for layouts / pixel types it cannot convert.
    """
    img = np.asarray(img)
    if img.ndim == 2:
        img = img[:, :, None]
    if img.ndim != 3 or img.shape[2] not in (1, 2, 3, 4):
        raise ImageReadError(f"image array: unsupported layout {img.shape}; pass an H x W gray or H x W x 3 (BGR) / x 4 (BGRA) array")
    if img.shape[0] == 0 or img.shape[1] == 0:
        raise ImageReadError(f"image array: no pixels (shape {img.shape}); pass a non-empty image")
    if img.dtype == np.uint8 and img.shape[2] == 3:
        return np.ascontiguousarray(img)
    _to_u8(img[:1, :1])  # unsupported pixel types raise before the output is allocated
    out = np.empty(img.shape[:2] + (3,), np.uint8)
    rows = max(1, _BLOCK_PIXELS // img.shape[1])
    for y in range(0, img.shape[0], rows):  # in row blocks: temporaries stay a few MB at any size
        out[y:y + rows] = _block_to_bgr(img[y:y + rows])
    return out


#: Pixels converted at a time by to_bgr_u8 (bounds its temporaries, whatever the image size).
_BLOCK_PIXELS = 1 << 20


def _block_to_bgr(img: np.ndarray) -> np.ndarray:
    u8 = _to_u8(img)
    if img.shape[2] in (2, 4):
        color, alpha = u8[:, :, :-1], u8[:, :, -1:]
        # round(color * alpha / 255) in integers: exact, no float rounding surprises
        u8 = ((color.astype(np.uint16) * alpha + 127) // 255).astype(np.uint8)
    return u8  # 1 channel broadcasts into the 3 of the output


def _to_u8(img: np.ndarray) -> np.ndarray:
    if img.dtype == np.uint8:
        return img
    if img.dtype == np.uint16:
        return (img >> 8).astype(np.uint8)
    if img.dtype.kind == "f":
        f = np.nan_to_num(img.astype(np.float32), nan=0.0, posinf=1.0, neginf=0.0)
        return np.rint(np.clip(f, 0.0, 1.0) * 255.0).astype(np.uint8)
    raise ImageReadError(f"image array: unsupported pixel type {img.dtype}; convert it to uint8 (or uint16 / float in 0..1)")


def _check_pixels(name: str, width: int, height: int, max_pixels: Optional[int]) -> None:
    if max_pixels is not None and width * height > max_pixels:
        raise ImageReadError(format_message(
            name, f"the image is {width} x {height} = {width * height / 1e6:.1f} megapixels, more than "
            f"the limit of {max_pixels / 1e6:g} megapixels",
            _TOO_LARGE_HINT))


_TOO_LARGE_HINT = ("downscale the image first, or raise the limit with read_image(..., max_pixels=N) "
                   "(max_pixels=None disables it) if you have the memory")


def _not_image_hint(head: bytes) -> str:
    text = head[:16].lstrip()
    if text[:1] in (b"<", b"{", b"[") or text[:5].lower() in (b"<!doc", b"<html"):
        return ("it looks like text (HTML/JSON/XML), e.g. an error page saved instead of the image; "
                "download the image again")
    return ("check that it opens in an image viewer; if it does, re-save it as PNG or JPEG, "
            "otherwise get the image again")


# SOFn markers carry the frame size; C4 (DHT), C8 (JPG extension) and CC (DAC) are not frames.
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _jpeg_scan(buf: np.ndarray) -> Tuple[Optional[Tuple[int, int]], int, str]:
    """Walk JPEG marker segments up to the first SOS.

    Returns ((width, height) or None, SOS offset or -1, status) with status ``"sos"`` (found),
    ``"eof"`` (the data ended first: truncated) or ``"bad"`` (not a valid marker sequence).
    """
    data = memoryview(buf)
    n = len(data)
    pos = 2
    size = None
    while pos + 4 <= n:
        if data[pos] != 0xFF:
            return size, -1, "bad"
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # standalone markers
            pos += 2
            continue
        length = (data[pos + 2] << 8) | data[pos + 3]
        if length < 2:
            return size, -1, "bad"
        if marker in _SOF_MARKERS and pos + 9 <= n:
            h = (data[pos + 5] << 8) | data[pos + 6]
            w = (data[pos + 7] << 8) | data[pos + 8]
            size = (w, h)
        if marker == 0xDA:
            return size, pos, "sos"
        pos += 2 + length
    return size, -1, "eof"


def _jpeg_truncated(buf: np.ndarray) -> bool:
    """True when the data ends before the first scan, or no end-of-image marker follows it.

    Entropy-coded data never contains FF D9 (FF bytes are stuffed as FF 00), so the first FF D9
    after the first SOS is the real end marker; EXIF thumbnails (inside APP1) are skipped.
    """
    _, sos, status = _jpeg_scan(buf)
    if status == "eof":
        return True
    if status == "bad":
        return False  # corrupt rather than truncated: the decoder reports it
    return bytes(buf[sos:]).find(b"\xff\xd9") < 0


def _png_truncated(buf: np.ndarray) -> bool:
    """True when the chunk sequence ends (or a chunk is cut) before the IEND chunk."""
    data = memoryview(buf)
    n = len(data)
    pos = 8
    while pos + 8 <= n:
        length = struct.unpack(">I", data[pos:pos + 4])[0]
        if bytes(data[pos + 4:pos + 8]) == b"IEND":
            return False
        pos += 12 + length
    return True


def list_images(folder: PathLike, recursive: bool = False,
                extensions: Iterable[str] = IMAGE_EXTENSIONS) -> List[Path]:
    """Image files in ``folder`` (by extension, case-insensitive), sorted by path.

    Hidden files (name starting with ``.``, e.g. macOS ``._x.jpg``) are skipped; with
    ``recursive=True`` sub-folders are searched too (hidden folders skipped).
    """
    root = Path(os.fspath(folder))
    if not root.is_dir():
        what = "does not exist" if not root.exists() else "is not a folder"
        raise ImageReadError(format_message(str(root), what, "pass an existing folder of images"))
    exts = {e.lower() if e.startswith(".") else "." + e.lower() for e in extensions}
    found: List[Path] = []
    if recursive:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            found.extend(Path(dirpath) / f for f in filenames
                         if not f.startswith(".") and os.path.splitext(f)[1].lower() in exts)
    else:
        # not is_dir() rather than is_file(): a pipe, device or broken link named like an image is
        # listed (as os.walk lists it with recursive=True) and read_image says what it is
        found = [e for e in root.iterdir()
                 if not e.name.startswith(".") and e.suffix.lower() in exts and not e.is_dir()]
    return sorted(found, key=lambda q: q.as_posix())


def encode_image(img: np.ndarray, ext: str = ".png", params: Optional[Sequence[int]] = None) -> bytes:
    """Encode an image array with OpenCV to the format of ``ext`` (``".jpg"``, ``".png"``, ...)."""
    ext = ext if ext.startswith(".") else "." + ext
    arr = np.asarray(img)
    if arr.ndim not in (2, 3) or arr.size == 0:
        raise ImageWriteError(format_message(
            "image", f"cannot encode an array of shape {arr.shape}", "pass an H x W or H x W x C image"))
    try:
        ok, enc = cv2.imencode(ext, np.ascontiguousarray(arr), list(params or []))
    except cv2.error as exc:
        raise ImageWriteError(format_message(
            f"'{ext}'", f"OpenCV cannot encode a {arr.dtype} {arr.shape} image in this format "
            f"({str(exc).strip().splitlines()[-1]})",
            "use .png or .jpg with a uint8 BGR image")) from exc
    if not ok:
        raise ImageWriteError(format_message(
            f"'{ext}'", f"OpenCV failed to encode a {arr.dtype} {arr.shape} image",
            "use .png or .jpg with a uint8 BGR image"))
    return enc.tobytes()


def write_image(path: PathLike, img: np.ndarray, params: Optional[Sequence[int]] = None) -> Path:
    """Write ``img`` (BGR) atomically to ``path``; the format comes from the extension.

    The bytes are encoded in memory and written with :func:`codenet_pynq.files.atomic_write`
    (temporary file + ``os.replace``: a reader never sees a half-written file; a new file gets
    the mode a plain ``open()`` gives).  Missing parent folders are created.  Returns the path.
    """
    p = Path(os.fspath(path))
    if not p.suffix:
        raise ImageWriteError(format_message(
            str(p), "has no file extension, so the image format is unknown", "add .png or .jpg"))
    try:
        data = encode_image(img, p.suffix, params)
    except ImageWriteError as exc:
        raise ImageWriteError(f"{p}: {exc}") from exc
    try:
        atomic_write(p, data)
    except OSError as exc:
        raise ImageWriteError(format_message(
            str(p), f"cannot be written ({exc.strerror or exc})",
            "check that the folder is writable and the disk is not full")) from exc
    return p
