import io
import logging
import os
import stat
import struct
import warnings
import zlib
from pathlib import Path

import imagecodecs
import numpy as np
import pytest
import tifffile
from PIL import Image, ImageCms, ImageFile, ImageOps

from conftest import natural_like
from lmfn_cli import images
from lmfn_cli.errors import ImageError, OutputExistsError
from lmfn_cli.files import atomic_path
from lmfn_cli.images import (
    DEFAULT_MAX_PIXELS,
    EXTENSION,
    FORMATS,
    IMAGE_EXTENSIONS,
    Picture,
    apply_orientation,
    encode_picture,
    format_of,
    read_image,
    read_picture,
    write_image,
    write_picture,
)

H, W = 23, 37
CHANNELS = {"gray": None, "gray+alpha": 2, "rgb": 3, "rgba": 4}
SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def pixels(kind: str, bits: int, seed: int = 0, h: int = H, w: int = W) -> np.ndarray:
    """Random pixels over the full range; for 16 bits the first values are ones an 8-bit
    conversion would destroy (1, 257*k + 128, 65535)."""
    c = CHANNELS[kind]
    shape = (h, w) if c is None else (h, w, c)
    top = 65535 if bits == 16 else 255
    px = np.random.default_rng(seed).integers(0, top + 1, shape).astype(np.uint16 if bits == 16 else np.uint8)
    flat = px.reshape(-1)
    flat[:4] = [0, 1, top, top - 1] if bits == 8 else [0, 1, 65535, 257 * 100 + 128]
    return px


def exif_with(orientation: int | None = None, **tags: str) -> bytes:
    exif = Image.Exif()
    names = {"make": 0x010F, "software": 0x0131}
    for key, value in tags.items():
        exif[names[key]] = value
    if orientation is not None:
        exif[0x0112] = orientation
    return exif.tobytes()


def tags_of(exif_bytes: bytes) -> Image.Exif:
    exif = Image.Exif()
    exif.load(exif_bytes)
    return exif


# ------------------------------------------------------------------------------------ round trips


@pytest.mark.parametrize("kind", CHANNELS)
@pytest.mark.parametrize("bits", [8, 16])
@pytest.mark.parametrize("fmt", ["png", "tiff"])
def test_png_and_tiff_round_trip_exactly_at_8_and_16_bits(tmp_path, fmt, bits, kind):
    px = pixels(kind, bits)
    path = write_picture(tmp_path / f"a{EXTENSION[fmt]}", Picture(px, fmt))
    back = read_picture(path)
    assert back.format == fmt and back.bits == bits
    assert back.pixels.dtype == px.dtype and back.pixels.shape == px.shape  # LA stays 2-channel
    assert np.array_equal(back.pixels, px)


def test_write_image_and_read_image_keep_working_for_16bit_rgb(tmp_path):
    px = pixels("rgb", 16)
    assert np.array_equal(read_image(write_image(tmp_path / "a.png", px)), px)


def test_16bit_rgb_png_from_an_independent_encoder_reads_exactly(tmp_path):
    # written with zlib here, not imagecodecs: the decoder is checked against the PNG format itself
    px = pixels("rgb", 16, h=4, w=5)
    raw = b"".join(b"\0" + row.astype(">u2").tobytes() for row in px)
    ihdr = struct.pack(">IIBBBBB", 5, 4, 16, 2, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + images._png_chunk(b"IHDR", ihdr) + images._png_chunk(b"IDAT", zlib.compress(raw))
    (tmp_path / "rgb16.png").write_bytes(data + images._png_chunk(b"IEND", b""))
    back = read_image(tmp_path / "rgb16.png")
    assert back.dtype == np.uint16 and np.array_equal(back, px)


@pytest.mark.parametrize("kind", ["gray", "rgb", "rgba"])
def test_bmp_round_trips_exactly_alpha_included(tmp_path, kind):
    px = pixels(kind, 8)
    back = read_picture(write_picture(tmp_path / "a.bmp", Picture(px, "bmp")))
    assert back.format == "bmp" and np.array_equal(back.pixels, px)


def test_webp_quality_100_is_lossless_and_keeps_colour_under_transparent_pixels(tmp_path):
    px = pixels("rgba", 8)
    px[::2, :, 3] = 0
    back = read_picture(write_picture(tmp_path / "a.webp", Picture(px, "webp"), quality=100))
    assert back.format == "webp" and np.array_equal(back.pixels, px)


@pytest.mark.parametrize("fmt,tolerance", [("jpg", 4), ("webp", 8)])  # natural_like's noise costs most
def test_lossy_formats_are_close(tmp_path, fmt, tolerance):
    px = natural_like(32, 48)
    back = read_picture(write_picture(tmp_path / f"a{EXTENSION[fmt]}", Picture(px, fmt), quality=95))
    assert back.pixels.shape == px.shape and back.pixels.dtype == np.uint8
    assert np.abs(back.pixels.astype(int) - px).mean() < tolerance


def test_lossy_webp_keeps_alpha_exactly(tmp_path):
    px = np.dstack([natural_like(32, 48), pixels("gray", 8, h=32, w=48)])
    back = read_image(write_picture(tmp_path / "a.webp", Picture(px, "webp"), quality=80))
    assert np.array_equal(back[..., 3], px[..., 3])


def test_gray_jpeg_stays_gray(tmp_path):
    px = natural_like(32, 48)[..., 1]
    back = read_image(write_image(tmp_path / "a.jpg", px))
    assert back.shape == px.shape and np.abs(back.astype(int) - px).mean() < 4


@pytest.mark.parametrize("fmt,kind,expect", [("webp", "gray", 3), ("webp", "gray+alpha", 4), ("bmp", "gray+alpha", 4)])
def test_gray_becomes_rgb_where_the_format_has_no_gray(tmp_path, fmt, kind, expect):
    px = pixels(kind, 8)
    back = read_image(write_picture(tmp_path / f"a{EXTENSION[fmt]}", Picture(px, fmt), quality=100))
    gray = px if px.ndim == 2 else px[..., 0]
    assert back.shape == (H, W, expect)
    assert all(np.array_equal(back[..., i], gray) for i in range(3))
    if expect == 4:
        assert np.array_equal(back[..., 3], px[..., 1])


def test_16bit_is_rounded_not_truncated_to_8bit(tmp_path, caplog):
    k = np.arange(255, dtype=np.uint32)
    px = np.stack([257 * k + 128, 257 * k + 129, 257 * k]).astype(np.uint16)  # -> k, k + 1, k
    with caplog.at_level(logging.WARNING, "lmfn_cli.images"):
        back = read_image(write_image(tmp_path / "a.bmp", px))  # lossless 8-bit: exact check
    assert back.dtype == np.uint8
    assert np.array_equal(back, np.stack([k, k + 1, k]))
    assert "rounding" in caplog.text
    jpg = read_image(write_image(tmp_path / "a.jpg", np.full((16, 16, 3), 257 * 200 + 129, np.uint16), quality=100))
    assert jpg.dtype == np.uint8 and np.abs(jpg.astype(int) - 201).max() <= 1


def test_alpha_to_jpeg_is_an_error_and_leaves_nothing(tmp_path):
    with pytest.raises(ImageError, match="JPEG cannot store an alpha channel") as info:
        write_image(tmp_path / "a.jpg", pixels("rgba", 8))
    assert str(tmp_path / "a.jpg") in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_palette_with_transparency_reads_as_rgba_and_bilevel_as_gray(tmp_path):
    pal = Image.fromarray(pixels("gray", 8) % 4).convert("P")
    pal.save(tmp_path / "p.png", transparency=0)
    assert read_image(tmp_path / "p.png").shape == (H, W, 4)
    Image.fromarray(pixels("gray", 8) > 127).save(tmp_path / "b.png")
    assert read_image(tmp_path / "b.png").shape == (H, W)


@pytest.mark.parametrize("dtype", [np.float32, np.int32])
def test_32bit_tiff_is_refused(tmp_path, dtype):
    tifffile.imwrite(tmp_path / "a.tif", np.zeros((4, 5), dtype))
    with pytest.raises(ImageError, match="unsupported.*32-bit"):
        read_image(tmp_path / "a.tif")


@pytest.mark.parametrize("fmt,bits", [("png", 8), ("png", 16), ("jpg", 8), ("tiff", 8), ("tiff", 16)])
def test_dpi_is_kept(tmp_path, fmt, bits):
    path = write_picture(tmp_path / f"a{EXTENSION[fmt]}", Picture(pixels("rgb", bits), fmt, dpi=(300.0, 150.0)))
    assert read_picture(path).dpi == pytest.approx((300, 150), abs=0.05)


# ----------------------------------------------------------------------------------- orientation


def _with_orientation(px: np.ndarray, orientation: int) -> Image.Image:
    buf = io.BytesIO()
    Image.fromarray(px).save(buf, "PNG", exif=exif_with(orientation))
    return Image.open(buf)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_apply_orientation_matches_pillow(orientation):
    px = pixels("rgb", 8, h=5, w=7)
    expected = np.asarray(ImageOps.exif_transpose(_with_orientation(px, orientation)))
    assert np.array_equal(apply_orientation(px, orientation), expected)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_16bit_png_and_tiff_are_read_upright(tmp_path, orientation):
    px = pixels("rgb", 16)
    upright = apply_orientation(px, orientation)
    png = write_picture(tmp_path / "a.png", Picture(px, "png", exif=exif_with(orientation, make="Cam")))
    tifffile.imwrite(tmp_path / "a.tif", px, photometric="rgb", extratags=[(274, "H", 1, orientation, True)])
    for path in (png, tmp_path / "a.tif"):
        picture = read_picture(path)
        assert np.array_equal(picture.pixels, upright), path
    assert tags_of(read_picture(png).exif)[0x0112] == 1


@pytest.mark.parametrize("fmt", ["png", "jpg", "webp", "tiff"])
def test_exif_orientation_applied_reset_to_1_and_other_tags_kept(tmp_path, caplog, fmt):
    px = natural_like(10, 30)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW to display
    exif[0x010F] = "LMFN test camera"
    exif.get_ifd(0x8769)[0x9003] = "2024:01:02 03:04:05"  # DateTimeOriginal, in the EXIF sub-IFD
    Image.fromarray(px).save(tmp_path / "rot.jpg", exif=exif, quality=100, subsampling=0)

    picture = read_picture(tmp_path / "rot.jpg")
    assert picture.pixels.shape == (30, 10, 3)
    assert np.abs(picture.pixels.astype(int) - np.rot90(px, -1)).mean() < 2
    with caplog.at_level(logging.WARNING, "lmfn_cli.images"):
        out = read_picture(write_picture(tmp_path / f"out{EXTENSION[fmt]}", picture, quality=100))
    assert out.pixels.shape == (30, 10, 3)  # not turned a second time
    tags = tags_of(out.exif)
    assert tags[0x0112] == 1 and tags[0x010F] == "LMFN test camera"
    if fmt == "tiff":  # a documented limit, with a warning
        assert 0x8769 not in tags and "sub-IFDs" in caplog.text
    else:
        assert tags.get_ifd(0x8769)[0x9003] == "2024:01:02 03:04:05"


def test_exif_on_16bit_png_survives_and_pillow_reads_the_chunks(tmp_path):
    path = write_picture(tmp_path / "a.png", Picture(pixels("rgb", 16), "png", SRGB, exif_with(1, make="Cam")))
    assert tags_of(read_picture(path).exif)[0x010F] == "Cam"
    with Image.open(path) as img:  # an independent reader accepts our iCCP and eXIf chunks
        assert img.info["icc_profile"] == SRGB and img.getexif()[0x010F] == "Cam"


def test_exif_is_dropped_from_16bit_tiff_with_a_warning(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, "lmfn_cli.images"):
        path = write_picture(tmp_path / "a.tif", Picture(pixels("rgb", 16), "tiff", exif=exif_with(1, make="Cam")))
    assert "EXIF is not written to 16-bit TIFF" in caplog.text
    assert read_picture(path).exif is None


def test_exif_of_an_8bit_tiff_is_its_descriptive_tags_only(tmp_path):
    Image.fromarray(natural_like(8, 9)).save(tmp_path / "a.tif", exif=exif_with(3, software="Editor"))
    picture = read_picture(tmp_path / "a.tif")
    assert set(tags_of(picture.exif)) == {0x0112, 0x0131}
    assert np.array_equal(picture.pixels, natural_like(8, 9)[::-1, ::-1])


# ---------------------------------------------------------------------------------- ICC profiles


@pytest.mark.parametrize("fmt,bits", [("png", 8), ("png", 16), ("jpg", 8), ("webp", 8), ("tiff", 8), ("tiff", 16)])
def test_icc_profile_survives(tmp_path, fmt, bits):
    path = write_picture(tmp_path / f"a{EXTENSION[fmt]}", Picture(pixels("rgb", bits), fmt, SRGB))
    assert read_picture(path).icc_profile == SRGB


@pytest.mark.parametrize("fmt,bits", [("png", 8), ("png", 16), ("jpg", 8), ("webp", 8), ("tiff", 8)])
def test_strip_metadata_drops_icc_and_exif(tmp_path, fmt, bits):
    picture = Picture(pixels("rgb", bits), fmt, SRGB, exif_with(1, make="Cam"))
    path = write_picture(tmp_path / f"a{EXTENSION[fmt]}", picture, strip_metadata=True)
    back = read_picture(path)
    assert back.icc_profile is None and back.exif is None


def test_cmyk_is_read_as_rgb_without_its_cmyk_profile(tmp_path):
    cmyk_profile = SRGB[:16] + b"CMYK" + SRGB[20:]  # only the header's colour space matters here
    Image.new("CMYK", (6, 4), (0, 255, 255, 0)).save(tmp_path / "c.jpg", icc_profile=cmyk_profile, quality=100)
    picture = read_picture(tmp_path / "c.jpg")
    assert picture.pixels.shape == (4, 6, 3) and picture.icc_profile is None
    assert np.abs(picture.pixels.astype(int) - [255, 0, 0]).max() < 8


# ------------------------------------------------------------------------------------ pixel limit


def test_too_many_pixels_is_refused_with_the_size(tmp_path):
    path = write_image(tmp_path / "a.png", natural_like(100, 100))
    with pytest.raises(ImageError, match=r"100x100 = 10000 pixels is more than the limit of 5000 \(raise it") as info:
        read_picture(path, max_pixels=5000)
    assert str(path) in str(info.value)
    assert read_picture(path, max_pixels=10000).pixels.shape == (100, 100, 3)


@pytest.mark.parametrize("fmt,bits", [("png", 8), ("png", 16), ("jpg", 8), ("webp", 8), ("tiff", 8), ("tiff", 16),
                                      ("bmp", 8)])
def test_pixel_limit_is_checked_before_decoding(tmp_path, monkeypatch, fmt, bits):
    path = write_picture(tmp_path / f"a{EXTENSION[fmt]}", Picture(pixels("rgb", bits, h=100, w=100), fmt))
    decoded = []

    def spy(original):
        def wrapper(*args, **kwargs):
            decoded.append(original)
            return original(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(ImageFile.ImageFile, "load_prepare", spy(ImageFile.ImageFile.load_prepare))
    monkeypatch.setattr(imagecodecs, "png_decode", spy(imagecodecs.png_decode))
    monkeypatch.setattr(tifffile.TiffPage, "asarray", spy(tifffile.TiffPage.asarray))
    with pytest.raises(ImageError, match="more than the limit of 5000"):
        read_picture(path, max_pixels=5000)
    assert decoded == []
    read_picture(path, max_pixels=None)
    assert decoded  # the spies do see decoding


def test_a_raised_limit_beats_pillows_global_guard(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # stands in for Pillow's default
    path = write_image(tmp_path / "a.png", natural_like(100, 100))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no DecompressionBombWarning leaks out either
        assert read_picture(path, max_pixels=20000).pixels.shape == (100, 100, 3)
        assert read_picture(path, max_pixels=None).pixels.shape == (100, 100, 3)
    assert Image.MAX_IMAGE_PIXELS == 100  # restored
    assert DEFAULT_MAX_PIXELS == 89_478_485


# ------------------------------------------------------------------------------------ bad inputs


def _bad_input(tmp_path, kind: str):
    if kind == "directory":
        return tmp_path
    path = tmp_path / "bad.png"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("hello, not an image")
    elif kind.startswith("truncated"):
        _, fmt, bits = kind.split()
        path = write_picture(tmp_path / f"bad{EXTENSION[fmt]}", Picture(pixels("rgb", int(bits), h=64, w=64), fmt))
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path  # "missing": never written


@pytest.mark.parametrize(
    "kind,match",
    [
        ("truncated png 8", "cannot decode"),
        ("truncated png 16", "cannot decode"),
        ("truncated jpg 8", "cannot decode"),
        ("truncated tiff 16", "cannot decode"),
        ("empty", "is empty"),
        ("text", "not an image"),
        ("directory", "is a directory"),
        ("missing", "no such file"),
    ],
)
def test_bad_inputs_raise_one_line_errors_naming_the_file(tmp_path, kind, match):
    path = _bad_input(tmp_path, kind)
    with pytest.raises(ImageError, match=match) as info:
        read_picture(path)
    assert str(info.value).startswith(f"{path}: ") and "\n" not in str(info.value)


def test_unreadable_file(tmp_path, monkeypatch):
    def denied(self):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", denied)  # chmod 0 would not stop root
    with pytest.raises(ImageError, match="permission denied"):
        read_image(tmp_path / "a.png")


def test_bytes_from_stdin_are_read_and_errors_name_stdin(tmp_path):
    data = encode_picture(Picture(pixels("rgb", 16), "png"), "png")
    picture = read_picture(data)
    assert picture.format == "png" and np.array_equal(picture.pixels, pixels("rgb", 16))
    with pytest.raises(ImageError, match="^<stdin>: not an image"):
        read_picture(b"hello")
    with pytest.raises(ImageError, match="^-: is empty"):
        read_picture(b"", name="-")


def test_formats_and_extensions():
    assert FORMATS == ("png", "jpg", "webp", "tiff", "bmp")
    assert IMAGE_EXTENSIONS == {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".bmp"}
    assert [format_of(f"x{ext}") for ext in (".JPEG", ".jpg", ".Tif", ".tiff", ".png", ".webp", ".bmp")] == [
        "jpg", "jpg", "tiff", "tiff", "png", "webp", "bmp"]
    assert {format_of(f"x{EXTENSION[f]}") for f in FORMATS} == set(FORMATS)
    with pytest.raises(ImageError, match="unknown image format '.gif'"):
        format_of("x.gif")


def test_unwritable_arrays_are_refused(tmp_path):
    with pytest.raises(ImageError, match="cannot write a float32"):
        write_image(tmp_path / "a.png", np.zeros((4, 4, 3), np.float32))
    assert list(tmp_path.iterdir()) == []


# -------------------------------------------------------------------------------- atomic writing


def test_no_clobber_without_overwrite_and_replace_with_it(tmp_path):
    path = write_image(tmp_path / "a.png", natural_like(8, 8, seed=1))
    before = path.read_bytes()
    with pytest.raises(OutputExistsError, match="use --overwrite"):
        write_picture(path, Picture(natural_like(8, 8, seed=2), "png"))
    assert path.read_bytes() == before
    write_picture(path, Picture(natural_like(8, 8, seed=2), "png"), overwrite=True)
    assert path.read_bytes() != before
    assert [p.name for p in tmp_path.iterdir()] == ["a.png"]


@pytest.mark.parametrize("links", [True, False])
def test_atomic_path_refuses_a_file_that_appears_meanwhile(tmp_path, monkeypatch, links):
    if not links:  # a filesystem without hard links: the check-then-rename fallback
        monkeypatch.setattr(os, "link", lambda *a: (_ for _ in ()).throw(OSError(1, "Operation not permitted")))
    dest = tmp_path / "a.png"
    with pytest.raises(OutputExistsError):
        with atomic_path(dest, overwrite=False) as tmp:
            tmp.write_bytes(b"new")
            dest.write_bytes(b"someone else's")
    assert dest.read_bytes() == b"someone else's"
    assert [p.name for p in tmp_path.iterdir()] == ["a.png"]
    with atomic_path(tmp_path / "b.png", overwrite=False) as tmp:
        tmp.write_bytes(b"new")
    assert (tmp_path / "b.png").read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "b.png"]


def test_atomic_path_replaces_by_default(tmp_path):
    (tmp_path / "w.bin").write_bytes(b"old")
    with atomic_path(tmp_path / "w.bin") as tmp:
        tmp.write_bytes(b"new")
    assert (tmp_path / "w.bin").read_bytes() == b"new"


def test_an_encoder_failure_leaves_no_file_and_no_part_file(tmp_path, monkeypatch):
    def broken_save(self, *args, **kwargs):
        raise OSError("encoder error -2")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(ImageError, match="cannot encode png") as info:
        write_image(tmp_path / "a.png", natural_like(8, 8))
    assert str(info.value).startswith(str(tmp_path / "a.png"))
    assert list(tmp_path.iterdir()) == []


def test_an_interrupted_write_leaves_no_part_file(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(tmp_path / "a.png") as tmp:
            tmp.write_bytes(b"half")
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_outputs_get_ordinary_file_permissions(tmp_path):
    mask = os.umask(0o022)
    try:
        path = write_image(tmp_path / "a.png", natural_like(8, 8))
    finally:
        os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


# ---------------------------------------------------------------------------------- callers


def test_training_and_synth_loaders_take_gray_plus_alpha(tmp_path):
    from lmfn_cli.synth import _to_float_rgb
    from lmfn_cli.train_data import _rgb8

    la = pixels("gray+alpha", 8)
    rgb = _to_float_rgb(la)
    assert rgb.shape == (H, W, 3) and np.allclose(rgb[..., 2], la[..., 0] / 255)
    path = write_image(tmp_path / "la.png", la)
    assert np.array_equal(_rgb8(path), np.dstack([la[..., 0]] * 3))
