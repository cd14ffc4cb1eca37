import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from conftest import natural_like
from lmfn_cli.errors import ImageError, OutputExistsError
from lmfn_cli.images import read_image, write_image


@pytest.mark.parametrize("ext", [".png", ".tif", ".bmp", ".webp"])
def test_lossless_round_trip(tmp_path, ext):
    img = natural_like(21, 34)
    path = write_image(tmp_path / f"a{ext}", img)
    kw = {"lossless": True} if ext == ".webp" else {}
    if kw:  # WebP is lossy by default; write lossless directly to test the reader
        Image.fromarray(img).save(path, **kw)
    assert np.array_equal(read_image(path), img)


def test_jpeg_round_trip_is_close(tmp_path):
    img = natural_like(32, 32)
    out = read_image(write_image(tmp_path / "a.jpg", img))
    assert out.shape == img.shape and np.abs(out.astype(int) - img).mean() < 4


def test_16bit_gray_stays_16bit(tmp_path):
    img = (np.arange(200, dtype=np.uint16).reshape(10, 20) * 300) + 7
    path = write_image(tmp_path / "g16.png", img)
    out = read_image(path)
    assert out.dtype == np.uint16 and np.array_equal(out, img)


def _png16_rgb(path, h=4, w=5):
    raw = b"".join(b"\x00" + bytes(6 * w) for _ in range(h))
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def test_16bit_colour_png_is_refused_rather_than_truncated(tmp_path):
    path = tmp_path / "rgb16.png"
    _png16_rgb(path)
    with pytest.raises(ImageError, match="16-bit colour"):
        read_image(path)


def test_exif_orientation_is_applied(tmp_path):
    img = natural_like(10, 30)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW to display
    path = tmp_path / "rot.jpg"
    Image.fromarray(img).save(path, exif=exif, quality=100)
    assert read_image(path).shape == (30, 10, 3)


@pytest.mark.parametrize(
    "content,match",
    [(b"", "empty"), (b"hello, not an image", "not an image"), ("truncate", "cannot decode")],
)
def test_bad_files_raise_one_clear_error_naming_the_file(tmp_path, content, match):
    path = tmp_path / "bad.png"
    if content == "truncate":
        write_image(path, natural_like(64, 64))
        path.write_bytes(path.read_bytes()[:300])
    else:
        path.write_bytes(content)
    with pytest.raises(ImageError, match=match) as info:
        read_image(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(ImageError, match="no such file"):
        read_image(tmp_path / "missing.png")
    with pytest.raises(ImageError, match="directory"):
        read_image(tmp_path)


def test_write_never_overwrites_unless_asked_and_leaves_no_temp_files(tmp_path):
    path = write_image(tmp_path / "a.png", natural_like(8, 8, seed=1))
    before = path.read_bytes()
    with pytest.raises(OutputExistsError):
        write_image(path, natural_like(8, 8, seed=2))
    assert path.read_bytes() == before
    write_image(path, natural_like(8, 8, seed=2), overwrite=True)
    assert path.read_bytes() != before
    assert [p.name for p in tmp_path.iterdir()] == ["a.png"]


def test_failed_write_leaves_nothing_behind(tmp_path):
    rgba = np.zeros((8, 8, 4), np.uint8)
    with pytest.raises(ImageError, match="alpha"):
        write_image(tmp_path / "a.jpg", rgba)
    assert list(tmp_path.iterdir()) == []


def test_outputs_get_ordinary_file_permissions(tmp_path):
    import os
    import stat

    mask = os.umask(0o022)
    try:
        path = write_image(tmp_path / "a.png", natural_like(8, 8))
    finally:
        os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
