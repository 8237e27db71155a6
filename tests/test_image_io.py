"""Robust image reading: every kind of input gives BGR uint8 H x W x 3 or a clear ImageReadError."""

from __future__ import annotations

import os
import struct

import cv2
import numpy as np
import pytest

from codenet_pynq.errors import CodenetError, ImageReadError, ImageWriteError
from codenet_pynq.image_io import decode_image, list_images, read_image, to_bgr_u8, write_image


def _encode(img: np.ndarray, ext: str) -> bytes:
    ok, buf = cv2.imencode(ext, img)
    assert ok
    return buf.tobytes()


@pytest.fixture
def color_img() -> np.ndarray:
    rng = np.random.default_rng(0)
    img = np.zeros((30, 50, 3), np.uint8)
    img[5:20, 10:40] = (255, 0, 0)  # blue rectangle (BGR)
    img[20:, :, 2] = rng.integers(0, 255, (10, 50), dtype=np.uint8)
    return img


def _check_bgr(img: np.ndarray, h: int, w: int) -> None:
    assert img.dtype == np.uint8 and img.shape == (h, w, 3) and img.flags["C_CONTIGUOUS"]


def test_png_roundtrip_exact(tmp_path, color_img):
    p = tmp_path / "a.png"
    p.write_bytes(_encode(color_img, ".png"))
    img = read_image(p)
    _check_bgr(img, 30, 50)
    np.testing.assert_array_equal(img, color_img)


def test_jpeg_and_str_path(tmp_path, color_img):
    p = tmp_path / "photo ü.JPG"  # non-ASCII name, upper-case extension
    p.write_bytes(_encode(color_img, ".jpg"))
    img = read_image(str(p))
    _check_bgr(img, 30, 50)
    assert np.abs(img[:20].astype(int) - color_img[:20].astype(int)).mean() < 8  # smooth part
    assert img[12, 25, 0] > 200 and img[12, 25, 2] < 60  # still blue


def test_grayscale_becomes_three_channels(tmp_path):
    gray = np.arange(12 * 7, dtype=np.uint8).reshape(12, 7)
    p = tmp_path / "g.png"
    p.write_bytes(_encode(gray, ".png"))
    img = read_image(p)
    _check_bgr(img, 12, 7)
    for c in range(3):
        np.testing.assert_array_equal(img[:, :, c], gray)


def test_rgba_is_composited_over_black(tmp_path):
    bgra = np.zeros((4, 5, 4), np.uint8)
    bgra[..., :3] = (10, 200, 250)
    bgra[0, :, 3] = 255  # opaque row
    bgra[1, :, 3] = 0  # transparent row -> black
    bgra[2, :, 3] = 128  # half
    bgra[3, :, 3] = 51
    p = tmp_path / "rgba.png"
    p.write_bytes(_encode(bgra, ".png"))
    img = read_image(p)
    _check_bgr(img, 4, 5)
    np.testing.assert_array_equal(img[0, 0], [10, 200, 250])
    np.testing.assert_array_equal(img[1, 0], [0, 0, 0])
    np.testing.assert_array_equal(img[2, 0], np.round(np.array([10, 200, 250]) * 128 / 255))
    np.testing.assert_array_equal(img[3, 0], [2, 40, 50])


def test_16bit_keeps_high_byte(tmp_path):
    img16 = np.zeros((3, 4, 3), np.uint16)
    img16[..., 0] = 65535
    img16[..., 1] = 0x1234
    img16[..., 2] = 255  # below one 8-bit step -> 0
    p = tmp_path / "deep.png"
    p.write_bytes(_encode(img16, ".png"))
    img = read_image(p)
    _check_bgr(img, 3, 4)
    np.testing.assert_array_equal(img[0, 0], [255, 0x12, 0])


def test_float_and_gray_alpha_conversion():
    f = np.array([[[-0.5, 0.5, 2.0]], [[np.nan, 1.0, 0.0]]], np.float32)
    np.testing.assert_array_equal(to_bgr_u8(f)[:, 0], [[0, 128, 255], [0, 255, 0]])
    ga = np.array([[[200, 255], [200, 0]]], np.uint8)
    np.testing.assert_array_equal(to_bgr_u8(ga)[0], [[200] * 3, [0] * 3])
    with pytest.raises(ValueError):
        to_bgr_u8(np.zeros((2, 2, 3), np.int32))


def test_one_pixel_image(tmp_path):
    p = tmp_path / "dot.png"
    p.write_bytes(_encode(np.array([[[1, 2, 3]]], np.uint8), ".png"))
    img = read_image(p)
    _check_bgr(img, 1, 1)
    np.testing.assert_array_equal(img[0, 0], [1, 2, 3])


def test_jpeg_exif_orientation_is_applied(color_img):
    data = _encode(color_img, ".jpg")
    tiff = b"II*\x00" + struct.pack("<IHHHIHH", 8, 1, 0x0112, 3, 1, 6, 0) + struct.pack("<I", 0)
    app1 = b"Exif\x00\x00" + tiff
    data = data[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + data[2:]
    img = decode_image(data, name="rotated.jpg")
    _check_bgr(img, 50, 30)  # orientation 6: rotated 90 degrees clockwise


def _assert_error(exc_info, path, *words):
    msg = str(exc_info.value)
    assert str(path) in msg, msg
    for w in words:
        assert w in msg.lower(), msg
    assert isinstance(exc_info.value, (CodenetError, ValueError))


def test_missing_file(tmp_path):
    p = tmp_path / "nope.jpg"
    with pytest.raises(ImageReadError) as ei:
        read_image(p)
    _assert_error(ei, p, "no such file", "check")


def test_folder_is_refused(tmp_path):
    with pytest.raises(ImageReadError) as ei:
        read_image(tmp_path)
    _assert_error(ei, tmp_path, "folder")


def test_empty_file(tmp_path):
    p = tmp_path / "empty.png"
    p.write_bytes(b"")
    with pytest.raises(ImageReadError) as ei:
        read_image(p)
    _assert_error(ei, p, "empty", "again")


def test_truncated_jpeg(tmp_path, color_img):
    data = _encode(color_img, ".jpg")
    for cut in (len(data) // 2, len(data) - 2, 40):
        p = tmp_path / f"cut{cut}.jpg"
        p.write_bytes(data[:cut])
        with pytest.raises(ImageReadError) as ei:
            read_image(p)
        _assert_error(ei, p, "truncated")


def test_truncated_png(tmp_path, color_img):
    data = _encode(color_img, ".png")
    p = tmp_path / "cut.png"
    p.write_bytes(data[: len(data) - 12])  # IEND chunk missing
    with pytest.raises(ImageReadError) as ei:
        read_image(p)
    _assert_error(ei, p, "truncated")


def test_text_file_named_jpg(tmp_path):
    p = tmp_path / "page.jpg"
    p.write_text("<!DOCTYPE html><html><body>404 not found</body></html>")
    with pytest.raises(ImageReadError) as ei:
        read_image(p)
    _assert_error(ei, p, "cannot be decoded", "html")


def test_garbage_bytes(tmp_path):
    p = tmp_path / "noise.png"
    p.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(ImageReadError) as ei:
        read_image(p)
    _assert_error(ei, p, "cannot be decoded")


@pytest.mark.parametrize("ext", [".png", ".jpg", ".bmp", ".tiff"])
def test_pixel_limit(tmp_path, color_img, ext):
    p = tmp_path / f"big{ext}"
    p.write_bytes(_encode(color_img, ext))
    assert read_image(p, max_pixels=30 * 50).shape == (30, 50, 3)
    assert read_image(p, max_pixels=None).shape == (30, 50, 3)
    with pytest.raises(ImageReadError) as ei:
        read_image(p, max_pixels=30 * 50 - 1)
    _assert_error(ei, p, "megapixels", "max_pixels")


def test_header_size_checked_before_decoding():
    # a PNG header claiming 100000 x 100000 pixels, with no image data behind it
    import zlib

    ihdr = b"IHDR" + struct.pack(">II", 100000, 100000) + b"\x08\x02\x00\x00\x00"
    head = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + ihdr + struct.pack(">I", zlib.crc32(ihdr))
    iend = struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND"))
    with pytest.raises(ImageReadError, match="megapixels"):
        decode_image(head + iend, name="bomb.png")


def test_list_images(tmp_path, color_img):
    png = _encode(color_img, ".png")
    (tmp_path / "sub").mkdir()
    (tmp_path / ".hidden").mkdir()
    for name in ["b.png", "a.JPG", "c.txt", "._a.jpg", "sub/d.png", ".hidden/e.png"]:
        (tmp_path / name).write_bytes(png)
    assert [p.name for p in list_images(tmp_path)] == ["a.JPG", "b.png"]
    assert [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path, recursive=True)] == [
        "a.JPG", "b.png", "sub/d.png"]
    assert [p.name for p in list_images(tmp_path, extensions=["png"])] == ["b.png"]
    with pytest.raises(ImageReadError, match="does not exist"):
        list_images(tmp_path / "missing")


def test_write_image_atomic_roundtrip(tmp_path, color_img):
    p = write_image(tmp_path / "out" / "x.png", color_img)
    np.testing.assert_array_equal(read_image(p), color_img)
    write_image(p, color_img[:, ::-1])  # overwrite in place
    np.testing.assert_array_equal(read_image(p), color_img[:, ::-1])
    assert sorted(os.listdir(p.parent)) == ["x.png"]  # no temp files left behind
    with pytest.raises(ImageWriteError, match="extension"):
        write_image(tmp_path / "noext", color_img)
    with pytest.raises(ImageWriteError):
        write_image(tmp_path / "bad.unknownformat", color_img)
    assert sorted(os.listdir(tmp_path)) == ["out"]


def _encode_any(img: np.ndarray, ext: str) -> bytes:
    """``img`` in the format of ``ext`` (OpenCV, else Pillow); None when neither can write it here."""
    import io as _io

    from PIL import Image

    src = img[:, :, 0] if ext in (".pbm", ".pgm") else img
    try:
        ok, enc = cv2.imencode(ext, src)
        if ok and cv2.imdecode(enc, cv2.IMREAD_UNCHANGED) is not None:
            return enc.tobytes()
    except cv2.error:
        pass
    fmt = {".gif": "GIF", ".jp2": "JPEG2000", ".j2k": "JPEG2000"}.get(ext)
    if fmt is None:
        return None
    buf = _io.BytesIO()
    Image.fromarray(img[:, :, ::-1].copy()).save(buf, fmt, **({"no_jp2": True} if ext == ".j2k" else {}))
    return buf.getvalue()


def test_formats_same_for_files_and_folders(tmp_path):
    """Every extension a folder is searched for is a format read_image decodes, and no other."""
    from codenet_pynq.image_io import FORMATS, IMAGE_EXTENSIONS, image_header

    img = np.zeros((24, 32, 3), np.uint8)
    img[4:20, 6:26] = (30, 160, 250)
    written = []
    for fmt, exts in FORMATS.items():
        for ext in exts:
            data = _encode_any(img, ext)
            if data is None:  # no encoder for it in this environment (e.g. AVIF)
                continue
            assert image_header(data)[0] == fmt, ext
            p = tmp_path / f"x{ext}"
            p.write_bytes(data)
            written.append(p)
    assert {".gif", ".jpg", ".png", ".tif", ".webp", ".bmp"} <= {p.suffix for p in written}
    assert sorted(list_images(tmp_path)) == sorted(written)
    for p in written:
        assert read_image(p).shape == (24, 32, 3), p.suffix
    assert set(IMAGE_EXTENSIONS) == {e for exts in FORMATS.values() for e in exts}
    # a format outside the table is refused even when OpenCV could decode it
    pfm = tmp_path / "x.pfm"
    pfm.write_bytes(cv2.imencode(".pfm", img.astype(np.float32))[1].tobytes())
    assert pfm not in list_images(tmp_path)
    with pytest.raises(ImageReadError, match="supported format"):
        read_image(pfm)
