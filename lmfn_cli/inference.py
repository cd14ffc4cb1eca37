"""Run a loaded LMFN on numpy images and pick the device to run it on."""

from __future__ import annotations

import logging

import numpy as np
import torch

from .errors import ImageError
from .model import LMFN

log = logging.getLogger(__name__)

__all__ = ["deblur", "resolve_device"]


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` -> CUDA when available, else CPU (logged); ``cpu``, ``cuda``, ``cuda:N``, ``mps``.

    Asking for a device that is not there raises ``ValueError`` rather than silently using
    another one.
    """
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        log.info("no CUDA device found; running on the CPU")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ValueError(f"unknown device {name!r}") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for, but CUDA is not available")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"device {name!r} asked for, but only {torch.cuda.device_count()} CUDA devices exist")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError("device 'mps' asked for, but MPS is not available")
    return device


_SCALE = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}


def deblur(model: LMFN, image: np.ndarray) -> np.ndarray:
    """Deblur one image with ``model`` (on whatever device the model is).

    ``image``: (H,W,3) RGB, (H,W,4) RGBA, (H,W) or (H,W,1) grayscale; uint8, uint16, or float
    in [0,1]. Returns an array of the same shape and dtype. Integer outputs are rounded (not
    truncated) from the clamped float result; an alpha channel is returned untouched;
    grayscale goes through the network as R=G=B and comes back as the mean of the channels.
    """
    image = np.asarray(image)
    if image.dtype in _SCALE:
        scale = _SCALE[image.dtype]
    elif image.dtype.kind == "f":
        scale = 1.0
    else:
        raise ImageError(None, f"unsupported pixel type {image.dtype} (need uint8, uint16 or float)")
    shape = image.shape
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4) or min(image.shape[:2]) < 1:
        raise ImageError(None, f"unsupported image shape {shape} (need HxW, HxWx1, HxWx3 or HxWx4)")

    channels = image.shape[2]
    colour = image[..., :3] if channels >= 3 else np.repeat(image, 3, axis=2)
    param = next(model.parameters())
    x = torch.from_numpy(np.ascontiguousarray(colour, dtype=np.float32) / np.float32(scale))
    x = x.permute(2, 0, 1).unsqueeze(0).to(param.device)
    with torch.inference_mode():
        y = model(x).clamp_(0.0, 1.0)
    out = y[0].permute(1, 2, 0).float().cpu().numpy()
    if channels == 1:
        out = out.mean(axis=2, keepdims=True)

    if scale != 1.0:
        out = np.rint(out * scale).astype(image.dtype)
    else:
        out = out.astype(image.dtype)
    if channels == 4:
        out = np.concatenate([out, image[..., 3:]], axis=2)
    return out.reshape(shape)
