"""Reading and writing images as numpy arrays, with Pillow.

Arrays are (H,W,3) RGB, (H,W,4) RGBA or (H,W) grayscale; uint8, or uint16 for 16-bit grayscale.
Bit depth comes from the file's mode, never from pixel values. Writes are atomic: a temporary
file beside the target, then a rename, so an interrupted run leaves no partial image.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageError, OutputExistsError
from .files import atomic_path

__all__ = ["IMAGE_EXTENSIONS", "read_image", "write_image"]

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".bmp"})

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_is_16bit_colour(path: Path) -> bool:
    """True for a 16-bit RGB(A) PNG, which Pillow would silently read as 8-bit."""
    with path.open("rb") as fh:
        head = fh.read(26)
    # signature, IHDR length and type, width, height, then bit depth and colour type
    return head[:8] == _PNG_SIGNATURE and len(head) == 26 and head[24] == 16 and head[25] in (2, 6)


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file, EXIF orientation applied. Raises ``ImageError`` naming the file."""
    path = Path(path)
    try:
        if path.is_dir():
            raise ImageError(path, "is a directory, not an image")
        if path.stat().st_size == 0:
            raise ImageError(path, "is empty (0 bytes)")
        if _png_is_16bit_colour(path):
            raise ImageError(path, "16-bit colour PNG is not supported yet (it would lose precision)")
        with Image.open(path) as img:
            img.load()
            img = ImageOps.exif_transpose(img)
    except ImageError:
        raise
    except FileNotFoundError:
        raise ImageError(path, "no such file") from None
    except PermissionError:
        raise ImageError(path, "permission denied") from None
    except UnidentifiedImageError:
        raise ImageError(path, "not an image Pillow can read") from None
    except Image.DecompressionBombError as exc:
        raise ImageError(path, f"too large ({exc})") from None
    except (OSError, SyntaxError, ValueError) as exc:  # truncated or corrupt data
        raise ImageError(path, f"cannot decode ({exc})") from None

    if img.mode in ("RGB", "RGBA", "L"):
        pass
    elif img.mode.startswith("I;16"):
        return np.asarray(img, dtype=np.uint16)
    elif img.mode in ("LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
    elif img.mode in ("1", "P", "CMYK", "YCbCr", "LAB", "HSV"):
        img = img.convert("RGB")
    else:
        raise ImageError(path, f"unsupported image mode {img.mode!r}")
    return np.asarray(img)


def write_image(path: str | Path, image: np.ndarray, *, overwrite: bool = False, quality: int = 95) -> Path:
    """Write ``image`` to ``path`` (format from the extension) via a temporary file and a rename.

    Refuses to replace an existing file unless ``overwrite``. Raises ``ImageError``.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputExistsError(path, "output exists already (use --overwrite to replace it)")
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise ImageError(path, f"unknown output format {path.suffix!r}")
    image = np.asarray(image)
    if image.dtype == np.uint16 and image.ndim == 2:
        pil = Image.fromarray(image)  # mode I;16
    elif image.dtype == np.uint8:
        pil = Image.fromarray(image)
    else:
        raise ImageError(path, f"cannot write a {image.dtype} image of shape {image.shape}")
    if fmt == "JPEG" and pil.mode == "RGBA":
        raise ImageError(path, "JPEG cannot store an alpha channel; choose .png, .webp or .tiff")
    options: dict = {"quality": quality} if fmt in ("JPEG", "WEBP") else {}
    if fmt == "JPEG":
        options["subsampling"] = 0  # 4:4:4: keep the colour detail that deblurring restored

    try:
        with atomic_path(path) as tmp:
            pil.save(tmp, format=fmt, **options)
    except OSError as exc:
        raise ImageError(path, f"cannot write ({exc})") from exc
    return path
