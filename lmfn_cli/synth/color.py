"""Pixel values: the sRGB transfer curves, and images to and from float32 RGB in [0,1]."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import ImageError


def _float(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    return x if x.dtype in (np.float32, np.float64) else x.astype(np.float32)


def srgb_to_linear(x: np.ndarray) -> np.ndarray:
    """sRGB-encoded values -> linear light (IEC 61966-2-1). Float32 unless given float64.

    Values above 1 follow the power law; values below 0 the linear toe (no NaNs, no clipping).
    """
    x = _float(x)
    # np.maximum keeps the unused branch of np.where away from negative bases
    curve = ((np.maximum(x, 0.04045) + 0.055) / 1.055) ** 2.4
    return np.where(x <= 0.04045, x / 12.92, curve).astype(x.dtype)


def linear_to_srgb(x: np.ndarray) -> np.ndarray:
    """Linear light -> sRGB-encoded values, the inverse of ``srgb_to_linear``."""
    x = _float(x)
    curve = 1.055 * np.maximum(x, 0.0031308) ** (1 / 2.4) - 0.055
    return np.where(x <= 0.0031308, 12.92 * x, curve).astype(x.dtype)


def _to_float_rgb(img: np.ndarray, path: Path | None = None) -> np.ndarray:
    """uint8/uint16/float, RGB/RGBA/gray/gray+alpha -> float32 (H,W,3) in [0,1] (alpha dropped)."""
    img = np.asarray(img)
    if img.dtype == np.uint8:
        img = img.astype(np.float32) / 255
    elif img.dtype == np.uint16:
        img = img.astype(np.float32) / 65535
    elif img.dtype.kind == "f":
        img = img.astype(np.float32, copy=False)
    else:
        raise ImageError(path, f"unsupported pixel type {img.dtype}")
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    elif img.ndim == 3 and img.shape[2] in (1, 2):
        img = np.repeat(img[:, :, :1], 3, axis=2)
    elif img.ndim == 3 and img.shape[2] == 4:
        img = img[:, :, :3]
    elif not (img.ndim == 3 and img.shape[2] == 3):
        raise ImageError(path, f"expected an RGB, RGBA or grayscale image, got shape {img.shape}")
    return np.ascontiguousarray(img)


def _to_uint8(img: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(img * 255), 0, 255).astype(np.uint8)
