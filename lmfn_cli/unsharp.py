"""The unsharp-mask baseline of the validation table: a classic sharpening filter, tuned once
on *training* pairs (`tune_usm_on_training_data`), never on validation sets.

Images are uint8 (H,W,3) arrays on the way in and out; `gaussian_blur` and `unsharp_mask` work
on (B,C,H,W) float tensors in [0,1].
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import synth
from .errors import ConfigError, FileProblem
from .images import IMAGE_EXTENSIONS, read_image
from .metrics import psnr

__all__ = ["DEFAULT_AMOUNTS", "DEFAULT_SIGMAS", "TUNE_SEED", "gaussian_blur", "tune_unsharp_mask",
           "tune_usm_on_training_data", "tuning_pairs", "u8_tensor", "unsharp_mask", "usm_u8"]

TUNE_SEED = 20260514  # the training pairs the baseline is tuned on


def gaussian_blur(img: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (B,C,H,W) float images, radius ceil(3 sigma), reflect padding
    (replicate where the image is too small to reflect). Returns the input's shape and dtype."""
    if img.dim() != 4 or not img.is_floating_point():
        raise ConfigError(f"expected a float (B,C,H,W) tensor, got {img.dtype} {tuple(img.shape)}")
    if not sigma > 0:
        raise ConfigError(f"sigma must be > 0, got {sigma!r}")
    r = max(1, math.ceil(3 * sigma))
    x = torch.arange(-r, r + 1, dtype=img.dtype, device=img.device)
    taps = torch.exp(-(x * x) / (2 * sigma * sigma))
    taps = taps / taps.sum()
    c = img.shape[1]
    mode = "reflect" if min(img.shape[-2:]) > r else "replicate"
    out = F.pad(img, (r, r, 0, 0), mode=mode)
    out = F.conv2d(out, taps.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    out = F.pad(out, (0, 0, r, r), mode=mode)
    return F.conv2d(out, taps.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def unsharp_mask(img: torch.Tensor, sigma: float, amount: float) -> torch.Tensor:
    """Classic unsharp masking: ``img + amount * (img - gaussian_blur(img, sigma))``, clamped.

    ``img``: (B,3,H,W) (any C) float in [0,1], sRGB values as stored; ``amount`` >= 0 (0 gives
    the image back exactly). Returns the same shape and dtype, clamped to [0,1].
    """
    if amount < 0:
        raise ConfigError(f"amount must be >= 0, got {amount!r}")
    if amount == 0:
        return img.clamp(0, 1)
    return (img + amount * (img - gaussian_blur(img, sigma))).clamp_(0, 1)


def _u8(img: np.ndarray) -> np.ndarray:  # float [0,1] -> uint8, rounded as make_pairs writes pairs
    return np.clip(np.rint(img * 255), 0, 255).astype(np.uint8)


def u8_tensor(u8: np.ndarray) -> torch.Tensor:
    """(H,W,3) uint8 -> (1,3,H,W) uint8 tensor (a view)."""
    return torch.from_numpy(np.ascontiguousarray(u8)).permute(2, 0, 1)[None]


def _quantise(x: torch.Tensor) -> torch.Tensor:
    """(1,3,H,W) float [0,1] -> uint8 levels, rounded as the product writes images."""
    return torch.round(x.clamp(0, 1) * 255).to(torch.uint8)


def usm_u8(blur: np.ndarray, sigma: float, amount: float) -> torch.Tensor:
    return _quantise(unsharp_mask(u8_tensor(blur).float().div(255), sigma, amount))


DEFAULT_SIGMAS = (0.5, 1.0, 1.5, 2.0, 3.0)
DEFAULT_AMOUNTS = tuple(round(0.1 * i, 1) for i in range(1, 11))


@torch.inference_mode()
def tune_unsharp_mask(
    pairs: Sequence[tuple[np.ndarray, np.ndarray]],
    sigmas: Sequence[float] = DEFAULT_SIGMAS,
    amounts: Sequence[float] = DEFAULT_AMOUNTS,
    *,
    record: dict | None = None,
) -> tuple[float, float, float]:
    """Grid search of ``unsharp_mask``'s (sigma, amount) for the best mean PSNR over ``pairs``.

    ``pairs``: (blurry, sharp) uint8 (H,W,3) arrays. Outputs are quantised to 8 bits before
    scoring (``metrics.psnr``, RGB). Ties go to the first in grid order. Returns (sigma, amount,
    mean PSNR dB); ``record``, if given, receives ``grid`` ({"sigma,amount": PSNR}),
    ``blurry_psnr`` and ``images``. Call it on training data only.
    """
    if not pairs or not sigmas or not amounts:
        raise ConfigError("tune_unsharp_mask needs pairs, sigmas and amounts")
    sums = {(float(s), float(a)): 0.0 for s in sigmas for a in amounts}
    blurry = 0.0
    for b, s in pairs:
        x, target = u8_tensor(b).float().div(255), u8_tensor(s)
        blurry += psnr(u8_tensor(b), target).item()
        for sigma in sigmas:
            detail = x - gaussian_blur(x, sigma)
            for amount in amounts:
                sums[float(sigma), float(amount)] += psnr(_quantise(x + amount * detail), target).item()
    grid = {k: v / len(pairs) for k, v in sums.items()}
    (sigma, amount), best = max(grid.items(), key=lambda kv: kv[1])  # max keeps the first of ties
    if record is not None:
        record.update(grid={f"{k[0]:g},{k[1]:g}": v for k, v in grid.items()},
                      blurry_psnr=blurry / len(pairs), images=len(pairs))
    return sigma, amount, best


def tuning_pairs(
    shared: str | Path, *, crop: int = 256, seed: int = TUNE_SEED, limit: int = 0,
    cfg: synth.SynthConfig | None = None,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Training-data pairs for tuning baselines, in memory: ``shared/data/sharp/bsds500/train``
    (sorted; the first ``limit`` if > 0), centre crops of ``crop``, blurred by ``cfg`` (default:
    the ``synth.SynthConfig()`` training mixture, noise, JPEG and highlights included) with the
    training kernels (``KernelBank.split('train')``), photo i from ``default_rng([seed, i])``. Returns
    (blurry, sharp) uint8 (crop,crop,3) arrays, rounded as ``make_pairs`` writes them."""
    data = Path(shared) / "data"
    folder = data / "sharp" / "bsds500" / "train"
    if not folder.is_dir():
        raise FileProblem(folder, "no such folder (the training photos the baseline is tuned on)")
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    paths = paths[:limit] if limit else paths
    bank = synth.KernelBank.from_dir(data / "kernels").split("train")
    cfg = dataclasses.replace(cfg or synth.SynthConfig(), crop=crop)
    out = []
    for i, p in enumerate(paths):
        img = np.asarray(read_image(p))
        blurry, sharp, _ = synth.synthesize_pair(img, np.random.default_rng([seed, i]), cfg, bank, crop_mode="center")
        out.append((_u8(blurry), _u8(sharp)))
    return out


def tune_usm_on_training_data(
    shared: str | Path,
    *,
    sigmas: Sequence[float] = DEFAULT_SIGMAS,
    amounts: Sequence[float] = DEFAULT_AMOUNTS,
    crop: int = 256,
    limit: int = 0,
    cfg: synth.SynthConfig | None = None,
) -> dict:
    """Tune the unsharp-mask baseline on ``tuning_pairs`` (``cfg`` as there); returns ``sigma``, ``amount``, ``psnr``,
    ``blurry_psnr``, ``images``, ``grid`` and ``seconds`` (what ``USM_TUNING`` records)."""
    t, record = time.monotonic(), {}
    pairs = tuning_pairs(shared, crop=crop, limit=limit, cfg=cfg)
    sigma, amount, best = tune_unsharp_mask(pairs, sigmas, amounts, record=record)
    return {"sigma": sigma, "amount": amount, "psnr": best, **record, "seconds": time.monotonic() - t}
