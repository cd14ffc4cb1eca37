"""Blur kernels as files: ``--kernel FILE`` reads one, ``--save-kernel`` writes one.

A kernel file is a grayscale image (PNG, or anything Pillow reads; colour is averaged) or a
2-D NumPy ``.npy`` array. Its values are relative weights: they are made to sum to 1, and the
kernel is shifted so that its centre of mass is its middle pixel (a kernel is known only up to a
shift, and a centred one leaves the photo where it was). An even side gets a zero row or column.

Kernels are written as 16-bit grayscale PNGs, the peak at 65535, at their own size (one pixel
per pixel of blur: zoom in to see the shake), through a temporary file that is renamed; such a
file can be given back with ``--kernel``.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .deconvolution import centre_kernel
from .errors import KernelError
from .images import Picture
from .uris import URI, write_picture_at

__all__ = ["MAX_KERNEL_SIDE", "kernel_path_for", "kernel_picture", "read_kernel", "write_kernel"]

MAX_KERNEL_SIDE = 255
"""Largest kernel side accepted (px): a blur wider than this is not camera shake we can undo."""


def _as_kernel(array: np.ndarray, path: Path) -> np.ndarray:
    """Validate and normalise a kernel array read from ``path``: (k,k) float32, k odd, >= 0,
    summing to 1, centred. Raises ``KernelError`` naming the file and the problem."""
    if array.ndim == 3 and array.shape[2] in (1, 3, 4):
        array = array[..., : min(3, array.shape[2])].mean(axis=2)
    if array.ndim != 2:
        raise KernelError(path, f"a kernel must be a 2-D array, not shape {array.shape}")
    if not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array):
        raise KernelError(path, f"a kernel must hold real numbers, not {array.dtype}")
    k = array.astype(np.float64)
    if not np.isfinite(k).all():
        raise KernelError(path, "the kernel holds NaN or infinite values")
    if max(k.shape) > MAX_KERNEL_SIDE:
        raise KernelError(path, f"the kernel is {k.shape[1]}x{k.shape[0]}; at most {MAX_KERNEL_SIDE} px a side")
    if k.min() < -0.01 * max(k.max(), 0.0):
        raise KernelError(path, "the kernel has negative values (a blur kernel is non-negative)")
    if k.sum() <= 0 or k.max() <= 0:
        raise KernelError(path, "the kernel is empty (its values sum to 0 or less)")
    k = np.clip(k, 0, None)
    side = max(k.shape)
    side += 1 - side % 2
    square = np.zeros((side, side))
    top, left = (side - k.shape[0]) // 2, (side - k.shape[1]) // 2
    square[top : top + k.shape[0], left : left + k.shape[1]] = k
    return centre_kernel(square).numpy().astype(np.float32)


def read_kernel(path: str | Path) -> np.ndarray:
    """The blur kernel in ``path`` (PNG or other image, or ``.npy``), validated: (k,k) float32,
    k odd, non-negative, summing to 1, centred. Raises ``KernelError``."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KernelError(path, f"cannot read the kernel file: {exc.strerror or exc}") from None
    if path.suffix.lower() == ".npy":
        try:
            array = np.load(io.BytesIO(data), allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise KernelError(path, f"not a NumPy .npy array: {exc}") from None
    else:
        try:
            with Image.open(io.BytesIO(data)) as im:
                if im.width * im.height > MAX_KERNEL_SIDE**2:
                    raise KernelError(path, f"the kernel is {im.width}x{im.height}; at most {MAX_KERNEL_SIDE} px a side")
                im.load()
                if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
                    array = np.asarray(im, dtype=np.float64)
                else:
                    array = np.asarray(im.convert("RGB" if im.mode not in ("L", "LA") else "L"), dtype=np.float64)
        except (UnidentifiedImageError, OSError, SyntaxError) as exc:
            raise KernelError(path, f"not an image or .npy array Pillow and NumPy can read ({exc})") from None
    return _as_kernel(np.asarray(array), path)


def kernel_path_for(output: Path | URI) -> Path | URI:
    """Where ``--save-kernel`` writes the kernel of ``output``: ``NAME.kernel.png`` beside it."""
    return output.with_name(f"{output.stem}.kernel.png")


def kernel_picture(kernel: np.ndarray) -> Picture:
    """``kernel`` ((k,k) float, >= 0) as a 16-bit grayscale PNG picture, its peak at 65535."""
    k = np.clip(np.asarray(kernel, dtype=np.float64), 0, None)
    peak = k.max()
    levels = np.round(k / peak * 65535).astype(np.uint16) if peak > 0 else np.zeros(k.shape, np.uint16)
    return Picture(levels, "png")


def write_kernel(kernel: np.ndarray, dest: str | Path | URI, *, overwrite: bool = False) -> Path | URI:
    """Write ``kernel`` as `kernel_picture` to a local path or URI, through a temporary file.
    Raises ``OutputExistsError`` if ``dest`` exists and not ``overwrite``. Returns ``dest``."""
    dest = Path(dest) if isinstance(dest, str) else dest
    write_picture_at(dest, kernel_picture(kernel), strip_metadata=True, overwrite=overwrite)
    return dest
