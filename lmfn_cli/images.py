"""Reading and writing images as numpy arrays without losing bits, orientation or colour profile.

Formats: PNG, JPEG, WebP, TIFF and BMP. Pixels are ``(H,W)`` gray, ``(H,W,2)`` gray + alpha,
``(H,W,3)`` RGB or ``(H,W,4)`` RGBA, ``uint8`` (0..255) or ``uint16`` (0..65535), upright (the
EXIF orientation applied). Bit depth comes from the file's header, never from pixel values.

Which library does what, and why:

- 16-bit PNG (gray, gray + alpha, RGB, RGBA): ``imagecodecs.png_decode``/``png_encode``, because
  Pillow reads 16-bit colour PNG as 8-bit without a word and cannot write it. The iCCP, eXIf and
  pHYs chunks are read and written here (a chunk is length, type, data, CRC32).
- 16-bit TIFF: ``tifffile`` (imagecodecs as its codecs: LZW, Deflate...), because Pillow reads
  16-bit RGB TIFF as 8-bit. Written with Deflate and a predictor: lossless.
- BMP: written with ``imagecodecs.bmp_encode``, whose 32-bit files carry an alpha mask (Pillow's
  do not, so their alpha is lost on reading).
- Everything else (8-bit PNG/JPEG/WebP/TIFF, reading BMP): Pillow.

Metadata: the ICC profile and EXIF (orientation reset to 1, as the pixels are upright) are read,
and written back to PNG, JPEG, WebP and TIFF unless ``strip_metadata``; so is the resolution
(dpi) where the format has it. Limits (each logged as a warning when it bites): EXIF is not
written to 16-bit TIFF (tifffile cannot write an EXIF IFD), and of 8-bit TIFF only the main IFD's
tags (make, model, software, date...) are written, not the EXIF and GPS sub-IFDs (Pillow's libtiff
writer cannot). BMP stores neither ICC nor EXIF. In 16-bit PNG, EXIF is read from the eXIf chunk
only, not from ImageMagick's "Raw profile type exif" text. XMP is not kept.

Where an output format cannot hold the data: 16-bit to JPEG/WebP/BMP is rounded to 8 bits (with a
warning), gray to WebP becomes RGB, gray + alpha to WebP or BMP becomes RGBA, and alpha to JPEG
is an error. Multi-frame files give their first frame.

Every failure is an ``ImageError`` naming the file, never a library's own exception; what the
decoders log or warn meanwhile goes to DEBUG naming it (``decoder_logs``). Writes are
atomic (``files.atomic_path``): the whole file is encoded first, then appears under its name
at once, or not at all.
"""

from __future__ import annotations

import io
import logging
import struct
import warnings
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import imagecodecs
import numpy as np
import tifffile
from PIL import Image, ImageOps, UnidentifiedImageError

from .decoder_logs import decoding
from .errors import ImageError, OutputExistsError
from .files import atomic_path

__all__ = [
    "IMAGE_EXTENSIONS",
    "FORMATS",
    "EXTENSION",
    "DEFAULT_MAX_PIXELS",
    "Picture",
    "format_of",
    "apply_orientation",
    "read_picture",
    "encode_picture",
    "write_picture",
    "read_image",
    "write_image",
]

log = logging.getLogger(__name__)

FORMATS: tuple[str, ...] = ("png", "jpg", "webp", "tiff", "bmp")
EXTENSION = {"png": ".png", "jpg": ".jpg", "webp": ".webp", "tiff": ".tif", "bmp": ".bmp"}
_SUFFIX_FORMAT = {".png": "png", ".jpg": "jpg", ".jpeg": "jpg", ".tif": "tiff", ".tiff": "tiff",
                  ".webp": "webp", ".bmp": "bmp"}
IMAGE_EXTENSIONS = frozenset(_SUFFIX_FORMAT)
DEFAULT_MAX_PIXELS = 89_478_485  # Pillow's default Image.MAX_IMAGE_PIXELS

_PILLOW_OPENERS = ("PNG", "JPEG", "WEBP", "TIFF", "BMP")  # JPEG's opener also gives camera MPO files
_PILLOW_FORMAT = {"PNG": "png", "JPEG": "jpg", "MPO": "jpg", "WEBP": "webp", "TIFF": "tiff", "BMP": "bmp"}
# Pillow modes we turn into one of ours ("P" depends on transparency; I;16* are handled apart).
_PILLOW_MODE = {"1": "L", "L": "L", "LA": "LA", "La": "LA", "RGB": "RGB", "RGBX": "RGB", "RGBA": "RGBA",
                "RGBa": "RGBA", "PA": "RGBA", "CMYK": "RGB", "YCbCr": "RGB", "LAB": "RGB", "HSV": "RGB"}
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_TIFF_MAGIC = (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+")
_ORIENTATION = 0x0112
# EXIF tags kept from a TIFF's first IFD, which also holds its layout (strips, bits, ...).
_TIFF_EXIF_TAGS = frozenset({270, 271, 272, _ORIENTATION, 305, 306, 315, 316, 33432, 34665, 34853})
_SUB_IFDS = frozenset({34665, 34853})  # EXIF, GPS
_MAX_ICC_BYTES = 1 << 24
# zlib level for PNG. Measured on photos (Pillow, one core): level 3 encodes in 88 ms/MP at
# 1.01 MB/MP; Pillow's default 6 takes 291 ms/MP for 0.94 MB/MP, and 1 58 ms/MP for 1.07. In a
# batch on a 2-core CPU encoding competes with the network for the cores, so 7% smaller files
# are not worth 3.3x the time. The pixels are the same at every level.
_PNG_LEVEL = 3


@dataclass(frozen=True, eq=False)  # eq=False: comparing arrays with == is ambiguous
class Picture:
    """Pixels plus what a faithful copy needs.

    ``pixels``: (H,W), (H,W,2), (H,W,3) or (H,W,4); uint8 or uint16; upright. ``format``: one of
    ``FORMATS``, the source's. ``exif``: as ``PIL.Image.Exif.tobytes()`` gives it (orientation 1).
    ``dpi``: (x, y) dots per inch, if the file says.
    """

    pixels: np.ndarray
    format: str
    icc_profile: bytes | None = None
    exif: bytes | None = None
    dpi: tuple[float, float] | None = None

    @property
    def bits(self) -> int:
        return 16 if self.pixels.dtype == np.uint16 else 8


def format_of(path: str | Path) -> str:
    """The format ``path``'s suffix names, one of ``FORMATS`` (.jpeg -> jpg, .tif -> tiff)."""
    suffix = Path(str(path)).suffix.lower()  # str(): a URI (uris.URI) too
    if suffix not in _SUFFIX_FORMAT:
        raise ImageError(path, f"unknown image format {suffix!r} (use {', '.join(sorted(IMAGE_EXTENSIONS))})")
    return _SUFFIX_FORMAT[suffix]


def apply_orientation(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """Turn ``pixels`` (H,W[,C]) stored with EXIF ``orientation`` 1..8 upright, as Pillow's
    ``ImageOps.exif_transpose`` does; other values leave it as it is."""
    if orientation == 2:
        pixels = pixels[:, ::-1]
    elif orientation == 3:
        pixels = pixels[::-1, ::-1]
    elif orientation == 4:
        pixels = pixels[::-1]
    elif orientation == 5:
        pixels = pixels.swapaxes(0, 1)
    elif orientation == 6:
        pixels = np.rot90(pixels, -1)
    elif orientation == 7:
        pixels = pixels[::-1, ::-1].swapaxes(0, 1)
    elif orientation == 8:
        pixels = np.rot90(pixels)
    return np.ascontiguousarray(pixels)


# ----------------------------------------------------------------------------------------- reading


def read_picture(
    source: str | Path | bytes,
    *,
    name: str | Path | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> Picture:
    """Read an image file, or its encoded bytes (stdin), into a ``Picture``.

    ``name`` is what errors are reported against (default: the path, or "<stdin>"). Images of more
    than ``max_pixels`` pixels (None or 0: no limit) are refused before their pixels are decoded.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        name = "<stdin>" if name is None else name
        data = bytes(source)
    else:
        name = source if name is None else name
        data = _read_file(Path(source), name)
    if not data:
        raise ImageError(name, "is empty (0 bytes)")
    try:
        with decoding(name):  # what the decoders log or warn meanwhile goes to DEBUG, naming the file
            return _checked(_decode(data, name, max_pixels), name)
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(name, "not an image (or not PNG, JPEG, WebP, TIFF or BMP)") from None
    except MemoryError:
        raise ImageError(name, "not enough memory to decode it") from None
    except Exception as exc:  # the three libraries raise many types for truncated or corrupt data
        raise ImageError(name, f"cannot decode ({_one_line(exc)})") from None


def _checked(picture: Picture, name: str | Path) -> Picture:
    """Refuse what a decoder returned without being an image: no pixels (a damaged header can
    decode to an empty array), or a shape that is not (H,W) or (H,W,C) with C in 1..4."""
    px = picture.pixels
    if px.ndim not in (2, 3) or px.ndim == 3 and not 1 <= px.shape[2] <= 4:
        raise ImageError(name, f"damaged: decodes to an array of shape {px.shape}, not an image")
    if px.shape[0] == 0 or px.shape[1] == 0:
        raise ImageError(name, f"damaged: decodes to {px.shape[1]}x{px.shape[0]} pixels")
    return picture


def read_image(path: str | Path) -> np.ndarray:
    """``read_picture(path).pixels``: (H,W[,C]) uint8 or uint16, upright."""
    return read_picture(path).pixels


def _read_file(path: Path, name: str | Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ImageError(name, "no such file") from None
    except IsADirectoryError:
        raise ImageError(name, "is a directory, not an image") from None
    except PermissionError:
        raise ImageError(name, "permission denied") from None
    except OSError as exc:
        raise ImageError(name, f"cannot read ({exc.strerror or exc})") from None


def _decode(data: bytes, name: str | Path, max_pixels: int | None) -> Picture:
    if data[:8] == _PNG_SIGNATURE and len(data) > 24 and data[24] == 16:  # IHDR bit depth
        return _read_png16(data, name, max_pixels)
    if data[:4] in _TIFF_MAGIC:
        with tifffile.TiffFile(io.BytesIO(data)) as tif:
            if tif.pages.first.bitspersample == 16:
                return _read_tiff16(tif, data, name, max_pixels)
    return _read_pillow(data, name, max_pixels)


def _check_size(name: str | Path, width: int, height: int, max_pixels: int | None) -> None:
    # A malformed TIFF tag can make tifffile report a dimension as a tuple of values, and an int
    # times a tuple is a tuple that long (found by benchmarks/fuzz_atheris.py: 11 GB from 1,920 bytes).
    if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in (width, height)):
        raise ImageError(name, "malformed header: its width or height is not one number")
    if max_pixels and width * height > max_pixels:
        raise ImageError(name, f"{width}x{height} = {width * height} pixels is more than the limit of "
                               f"{max_pixels} (raise it with --max-pixels)")


@contextmanager
def _pillow_pixel_limit(max_pixels: int | None) -> Iterator[None]:
    """Point Pillow's decompression-bomb guard at our limit (None or 0: off), quietly. The guard
    is a global: two threads reading at once with different limits would race."""
    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = max_pixels or None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            yield
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def _read_pillow(data: bytes, name: str | Path, max_pixels: int | None) -> Picture:
    # Opening parses only the header; with Pillow's guard off there, _check_size reports the size.
    with _pillow_pixel_limit(None):
        img = Image.open(io.BytesIO(data), formats=_PILLOW_OPENERS)
    with img, _pillow_pixel_limit(max_pixels):
        _check_size(name, *img.size, max_pixels)
        img.load()
        fmt = _PILLOW_FORMAT[img.format]
        ImageOps.exif_transpose(img, in_place=True)  # also drops the orientation tag
        exif = _exif_bytes(img.getexif(), tiff=fmt == "tiff")
        icc, dpi = img.info.get("icc_profile"), img.info.get("dpi")
        mode = img.mode
        if mode.startswith("I;16"):
            pixels = np.asarray(img).astype(np.uint16)  # I;16B is big-endian: make it native
        elif mode in ("I", "F") or mode.startswith("I;32"):
            raise ImageError(name, f"unsupported pixel mode {mode} (32-bit)")
        else:
            target = ("RGBA" if img.has_transparency_data else "RGB") if mode == "P" else _PILLOW_MODE.get(mode)
            if target is None:
                raise ImageError(name, f"unsupported pixel mode {mode}")
            pixels = np.asarray(img if target == mode else img.convert(target))
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    return Picture(pixels, fmt, _fitting_icc(icc, channels, name), exif, _dpi(dpi))


def _read_png16(data: bytes, name: str | Path, max_pixels: int | None) -> Picture:
    width, height = struct.unpack_from(">II", data, 16)
    _check_size(name, width, height, max_pixels)
    pixels = imagecodecs.png_decode(data)  # a tRNS colour key comes back as an alpha channel
    icc = exif = dpi = None
    orientation = 1
    for kind, body in _png_chunks(data):
        if kind == b"iCCP":  # profile name, NUL, compression method 0, zlib data
            icc = _inflate_icc(body[bytes(body[:80]).index(0) + 2 :], name)
        elif kind == b"eXIf":
            loaded = _load_exif(bytes(body))
            orientation = loaded.get(_ORIENTATION, 1)
            exif = _exif_bytes(loaded)
        elif kind == b"pHYs" and body[8] == 1:  # pixels per metre
            dpi = tuple(v * 0.0254 for v in struct.unpack(">II", body[:8]))
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    return Picture(apply_orientation(pixels, orientation), "png", _fitting_icc(icc, channels, name), exif, _dpi(dpi))


def _png_chunks(data: bytes) -> Iterator[tuple[bytes, memoryview]]:
    view, pos = memoryview(data), 8
    while pos + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, pos)
        yield kind, view[pos + 8 : pos + 8 + length]
        pos += 12 + length


def _inflate_icc(compressed: bytes, name: str | Path) -> bytes | None:
    inflater = zlib.decompressobj()
    icc = inflater.decompress(compressed, _MAX_ICC_BYTES)
    if inflater.unconsumed_tail:
        log.warning("%s: ignoring an ICC profile of more than %d bytes", name, _MAX_ICC_BYTES)
        return None
    return icc


def _read_tiff16(tif: tifffile.TiffFile, data: bytes, name: str | Path, max_pixels: int | None) -> Picture:
    page = tif.pages.first
    _check_size(name, page.imagewidth, page.imagelength, max_pixels)
    if page.sampleformat != tifffile.SAMPLEFORMAT.UINT:
        raise ImageError(name, f"unsupported 16-bit TIFF sample format {page.sampleformat.name}")
    channels, photometric = page.samplesperpixel, page.photometric
    if not (photometric == tifffile.PHOTOMETRIC.MINISBLACK and channels in (1, 2)
            or photometric == tifffile.PHOTOMETRIC.RGB and channels in (3, 4)) or page.axes not in ("YX", "YXS", "SYX"):
        raise ImageError(name, f"unsupported 16-bit TIFF layout ({photometric.name}, {channels} samples, {page.axes})")
    if tifffile.EXTRASAMPLE.ASSOCALPHA in page.extrasamples:
        log.warning("%s: premultiplied alpha is read as straight alpha", name)
    pixels = page.asarray()
    if page.axes == "SYX":  # planar: one plane per sample
        pixels = np.moveaxis(pixels, 0, -1)
    pixels = apply_orientation(pixels.astype(np.uint16, copy=False), page.tags.valueof(274, 1))
    # Pillow parses the EXIF of a classic TIFF's first IFD, as it does for the 8-bit ones.
    exif = None if tif.is_bigtiff else _exif_bytes(_load_exif(data), tiff=True)
    dpi = None
    if page.resolutionunit in (tifffile.RESUNIT.INCH, tifffile.RESUNIT.CENTIMETER):
        dpi = page.get_resolution(tifffile.RESUNIT.INCH)
    icc = _fitting_icc(page.tags.valueof(34675), channels, name)
    return Picture(pixels, "tiff", icc, exif, _dpi(dpi))


def _load_exif(data: bytes) -> Image.Exif:
    exif = Image.Exif()
    exif.load(data)
    return exif


def _exif_bytes(exif: Image.Exif, *, tiff: bool = False) -> bytes | None:
    """``exif`` with orientation 1 (the pixels are upright now) as bytes; None if it is empty.
    ``tiff``: it is a TIFF's first IFD, so keep only its EXIF tags, not its layout."""
    if tiff:
        for tag in set(exif) - _TIFF_EXIF_TAGS:
            del exif[tag]
    if not len(exif):
        return None
    exif[_ORIENTATION] = 1
    return exif.tobytes()


def _fitting_icc(icc: bytes | None, channels: int, name: str | Path | None) -> bytes | None:
    """``icc`` if its colour space (header bytes 16..20) is that of the pixels, else None: a
    CMYK profile no longer describes pixels converted to RGB, a gray one does not describe RGB."""
    if not icc:
        return None
    space = b"GRAY" if channels <= 2 else b"RGB "
    if icc[16:20] != space:
        log.warning("%s: dropping the ICC profile: it is for %s, the pixels are %s",
                    name or "image", icc[16:20].decode("latin-1").strip(), space.decode().strip())
        return None
    return bytes(icc)


def _dpi(dpi: tuple | None) -> tuple[float, float] | None:
    return (float(dpi[0]), float(dpi[1])) if dpi and all(dpi) else None


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


# ----------------------------------------------------------------------------------------- writing


def encode_picture(picture: Picture, fmt: str, *, quality: int = 95, strip_metadata: bool = False,
                   name: str | Path | None = None) -> bytes:
    """Encode ``picture`` as ``fmt`` (one of ``FORMATS``) and return the file's bytes.

    ``quality`` (1..100) is for JPEG and WebP; WebP at 100 is lossless. PNG, TIFF and BMP are
    lossless, PNG and TIFF at 8 or 16 bits. ``strip_metadata`` writes neither ICC nor EXIF.
    Raises ``ImageError`` without a path (``write_picture`` adds it); ``name`` (the output) only
    prefixes the warnings logged about what the format cannot hold.
    """
    where = f"{name}: " if name is not None else ""
    if fmt not in FORMATS:
        raise ImageError(None, f"unknown image format {fmt!r} (use {', '.join(FORMATS)})")
    px = np.asarray(picture.pixels)
    if px.dtype not in (np.uint8, np.uint16) or not (px.ndim == 2 or px.ndim == 3 and px.shape[2] in (2, 3, 4)):
        raise ImageError(None, f"cannot write a {px.dtype} image of shape {px.shape} "
                               "(need uint8 or uint16, (H,W), (H,W,2), (H,W,3) or (H,W,4))")
    if fmt == "jpg" and px.ndim == 3 and px.shape[2] in (2, 4):
        raise ImageError(None, "JPEG cannot store an alpha channel; use png, webp or tiff")
    if px.dtype == np.uint16 and fmt in ("jpg", "webp", "bmp"):
        log.warning("%s%s stores 8 bits per channel: rounding the 16-bit pixels to 8 bits", where, fmt.upper())
        px = ((px.astype(np.uint32) + 128) // 257).astype(np.uint8)  # round(v * 255 / 65535)
    if fmt == "webp" or (fmt == "bmp" and px.ndim == 3 and px.shape[2] == 2):
        px = _gray_to_rgb(px)  # WebP has no gray; BMP no gray + alpha

    icc = exif = None
    if not strip_metadata:
        icc = _fitting_icc(picture.icc_profile, 1 if px.ndim == 2 else px.shape[2], None)
        exif = picture.exif
    if fmt == "bmp" and (icc or exif):
        log.debug("BMP stores neither an ICC profile nor EXIF: dropped")
    if fmt == "tiff" and px.dtype == np.uint16 and exif:
        log.warning("%sEXIF is not written to 16-bit TIFF (tifffile cannot write an EXIF IFD)", where)
    try:
        if fmt == "bmp":
            ppm = round(picture.dpi[0] / 0.0254) if picture.dpi else None
            return imagecodecs.bmp_encode(px, ppm=ppm)
        if px.dtype == np.uint16 and fmt == "png":
            return _encode_png16(px, icc, exif, picture.dpi)
        if px.dtype == np.uint16 and fmt == "tiff":
            return _encode_tiff16(px, icc, picture.dpi)
        return _encode_pillow(px, fmt, quality, icc, exif, picture.dpi, where)
    except Exception as exc:  # an encoder's own error type; MemoryError included
        raise ImageError(None, f"cannot encode {fmt} ({_one_line(exc)})") from None


def write_picture(
    path: str | Path,
    picture: Picture,
    fmt: str | None = None,
    *,
    quality: int = 95,
    strip_metadata: bool = False,
    overwrite: bool = False,
) -> Path:
    """Encode ``picture`` (format ``fmt``, default from ``path``'s suffix), then write it atomically.

    An existing file is replaced only with ``overwrite`` (else ``OutputExistsError``); a failure
    leaves neither a partial output nor a temporary file. Returns ``path``.
    """
    path = Path(path)
    fmt = format_of(path) if fmt is None else fmt
    if not overwrite and path.exists():  # fail before encoding; atomic_path checks again, atomically
        raise OutputExistsError(path, "output exists already (use --overwrite to replace it)")
    try:
        data = encode_picture(picture, fmt, quality=quality, strip_metadata=strip_metadata, name=path)
    except ImageError as exc:
        raise ImageError(path, exc.problem) from None
    try:
        with atomic_path(path, overwrite=overwrite) as tmp:
            tmp.write_bytes(data)
    except OSError as exc:
        raise ImageError(path, f"cannot write ({exc.strerror or exc})") from None
    return path


def write_image(path: str | Path, image: np.ndarray, *, overwrite: bool = False, quality: int = 95) -> Path:
    """Write ``image`` ((H,W[,C]) uint8 or uint16, as ``Picture.pixels``) to ``path``, format from
    the suffix, without metadata. See ``write_picture``."""
    return write_picture(path, Picture(np.asarray(image), format_of(path)), quality=quality, overwrite=overwrite)


def _gray_to_rgb(px: np.ndarray) -> np.ndarray:
    """(H,W) -> (H,W,3) and (H,W,2) -> (H,W,4); colour images as they are."""
    if px.ndim == 2:
        return np.dstack([px] * 3)
    if px.shape[2] == 2:
        return np.dstack([px[..., :1]] * 3 + [px[..., 1:]])
    return px


def _encode_pillow(px: np.ndarray, fmt: str, quality: int, icc: bytes | None, exif: bytes | None,
                   dpi: tuple[float, float] | None, where: str = "") -> bytes:
    img = Image.fromarray(px)  # mode from shape and dtype: L, LA, RGB, RGBA, I;16
    if fmt == "tiff" and exif:
        # The tags go into the TIFF's own IFD, so none may describe a layout; and Pillow's libtiff
        # writer, which compression needs, cannot write the EXIF and GPS sub-IFDs.
        tags = _load_exif(exif)
        if sub_ifds := tags.keys() & _SUB_IFDS:
            log.warning("%sthe EXIF and GPS sub-IFDs (exposure, date taken, location) are not written to TIFF", where)
            for tag in sub_ifds:
                del tags[tag]
        exif = _exif_bytes(tags, tiff=True)
    meta = {key: value for key, value in (("icc_profile", icc), ("exif", exif), ("dpi", dpi)) if value}
    buf = io.BytesIO()
    if fmt == "png":
        img.save(buf, "PNG", compress_level=_PNG_LEVEL, **meta)
    elif fmt == "jpg":
        # 4:4:4: keep the colour detail deblurring restored
        img.save(buf, "JPEG", quality=quality, subsampling=0, **meta)
    elif fmt == "webp":
        # exact: keep the colour under transparent pixels (alpha untouched)
        img.save(buf, "WEBP", quality=quality, lossless=quality == 100, exact=True, **meta)
    else:
        img.save(buf, "TIFF", compression="tiff_deflate", **meta)
    return buf.getvalue()


def _encode_png16(px: np.ndarray, icc: bytes | None, exif: bytes | None,
                  dpi: tuple[float, float] | None) -> bytes:
    png = imagecodecs.png_encode(np.ascontiguousarray(px), level=_PNG_LEVEL)  # libpng needs C order
    extra = b""
    if icc:
        extra += _png_chunk(b"iCCP", b"ICC Profile\0\0" + zlib.compress(icc))
    if exif:
        extra += _png_chunk(b"eXIf", exif.removeprefix(b"Exif\0\0"))
    if dpi:
        extra += _png_chunk(b"pHYs", struct.pack(">IIB", round(dpi[0] / 0.0254), round(dpi[1] / 0.0254), 1))
    return png[:33] + extra + png[33:]  # after the 13-byte IHDR, which comes first: before IDAT


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _encode_tiff16(px: np.ndarray, icc: bytes | None, dpi: tuple[float, float] | None) -> bytes:
    channels = 1 if px.ndim == 2 else px.shape[2]
    buf = io.BytesIO()
    tifffile.imwrite(
        buf,
        px,
        photometric="rgb" if channels >= 3 else "minisblack",
        planarconfig="contig" if px.ndim == 3 else None,
        extrasamples=["unassalpha"] if channels in (2, 4) else None,
        compression="zlib",
        predictor=True,  # horizontal differencing: smaller, still lossless
        iccprofile=icc,
        resolution=dpi,
        resolutionunit="INCH" if dpi else None,
        metadata=None,  # no tifffile JSON description
        software=False,
    )
    return buf.getvalue()
