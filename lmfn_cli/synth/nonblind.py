"""Training pairs for the kernel method's non-blind stage: a Wiener deconvolution and its target.

The kernel method (``lmfn_cli.kernel_method``) deconvolves a photo by a kernel it estimated
(or the user gave) with a Wiener filter, and a network trained for that job removes what the
filter leaves: ringing, amplified noise, the blur the prior keeps, and the errors of a kernel
that is a little wrong. `nonblind_pair` makes one training pair for that network:

    sharp sRGB crop (with a margin) -> a centred uniform kernel (random trajectory, or a measured
    one of the training split) -> blur in linear light (sometimes in sRGB values) -> noise ->
    8-bit -> sometimes JPEG -> the kernel PERTURBED the way estimation errs (`perturb_kernel`)
    -> Wiener deconvolution by the perturbed kernel in sRGB values (as the kernel method does)
    -> (deconvolved, sharp), both cropped to the patch.

Estimated kernels are centred (`deconvolution.centre_kernel`), so the blur kernel is centred too:
deconvolved and sharp stay aligned. The Wiener prior of the pairs is the one the network is used
with: it is saved in the exported weights' metadata.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from ..deconvolution import centre_kernel, deconvolve
from .blur import blur_with_kernel
from .color import linear_to_srgb, srgb_to_linear
from .degrade import jpeg_roundtrip
from .kernels import random_kernel
from .motion import _gyro_kernel
from .pairs import KernelBank

if TYPE_CHECKING:
    from .estimated import EstimatedKernels

__all__ = ["NonblindConfig", "perturb_kernel", "nonblind_kernel", "degrade", "nonblind_pair"]

KERNEL_SIZE = 31
"""Side of the kernels (the estimator's default `EstimationSettings.kernel_size`)."""


@dataclass(frozen=True)
class NonblindConfig:
    """How `nonblind_pair` degrades: Wiener ``prior``, share of kernels perturbed, blur in
    sRGB values, noise (Gaussian in sRGB values, sigma up to ``max_noise`` levels of 255), JPEG,
    and unblurred pairs (a delta kernel: a sharp photo deconvolved by a small wrong kernel);
    ``estimated_prob``: with a bank of estimated kernels, the share of blurred pairs taken from it."""

    prior: float = 5e-3
    perturb_prob: float = 0.8
    srgb_blur_prob: float = 0.3
    noise_prob: float = 0.9
    max_noise: float = 3.0
    jpeg_prob: float = 0.3
    delta_prob: float = 0.05
    kernel_size: int = KERNEL_SIZE
    estimated_prob: float = 0.5


def _as_torch(kernel: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(kernel, dtype=np.float64))


def _gaussian_blur(k: torch.Tensor, sigma: float) -> torch.Tensor:
    r = max(1, int(math.ceil(3 * sigma)))
    t = torch.arange(-r, r + 1, dtype=torch.float64)
    g = torch.exp(-0.5 * (t / sigma) ** 2)
    g = g / g.sum()
    x = k[None, None]
    x = F.conv2d(F.pad(x, (r, r, 0, 0)), g.view(1, 1, 1, -1))
    x = F.conv2d(F.pad(x, (0, 0, r, r)), g.view(1, 1, -1, 1))
    return x[0, 0]


def _warp(k: torch.Tensor, scale: float, angle_deg: float) -> torch.Tensor:
    """``k`` scaled about its middle by ``scale`` and rotated by ``angle_deg`` (bilinear)."""
    a = math.radians(angle_deg)
    c, s = math.cos(a) / scale, math.sin(a) / scale
    theta = torch.tensor([[c, -s, 0.0], [s, c, 0.0]], dtype=torch.float64)[None]
    grid = F.affine_grid(theta, [1, 1, *k.shape], align_corners=False)
    return F.grid_sample(k[None, None], grid, mode="bilinear", padding_mode="zeros", align_corners=False)[0, 0]


def perturb_kernel(kernel: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``kernel`` ((k,k), centred, summing to 1) made wrong the ways blind estimation errs: a
    path a little too long or short (scale 0.8-1.2), turned (up to 8 degrees), thicker (a
    Gaussian of sigma 0.3-1.2 px: coarse scales smooth it), faint parts lost (values under
    5-20% of the peak cleared) or stray specks added (5-15% of the mass near the path). Each
    happens with probability 0.3-0.5, at least one always. Returns (k,k) float32, centred, >= 0,
    summing to 1."""
    k = _as_torch(kernel)
    n = k.shape[0]
    steps = [rng.random() < p for p in (0.5, 0.3, 0.5, 0.3, 0.3)]
    if not any(steps):
        steps[int(rng.integers(len(steps)))] = True
    scale_it, turn, thicken, thin, speck = steps
    if scale_it or turn:
        scale = float(rng.uniform(0.8, 1.2)) if scale_it else 1.0
        angle = float(rng.uniform(-8, 8)) if turn else 0.0
        k = _warp(k, scale, angle).clamp(min=0)
    if thicken:
        k = _gaussian_blur(k, float(rng.uniform(0.3, 1.2)))
    if thin:
        k = torch.where(k < float(rng.uniform(0.05, 0.2)) * k.max(), torch.zeros_like(k), k)
    if speck:
        near = _gaussian_blur((k > 0.02 * k.max()).double(), 2.0) > 2e-3  # within ~3 px of the path
        idx = torch.nonzero(near.flatten()).flatten()
        count = int(rng.integers(2, 7))
        picks = idx[torch.from_numpy(rng.integers(0, len(idx), size=count))]
        share = float(rng.uniform(0.05, 0.15))
        add = torch.zeros(n * n, dtype=torch.float64)
        add[picks] = torch.from_numpy(rng.dirichlet(np.ones(count)))
        k = k / k.sum() * (1 - share) + share * add.view(n, n)
    if float(k.sum()) <= 0:
        k = _as_torch(kernel)
    return centre_kernel(k).numpy().astype(np.float32)


def _pad_to(kernel: np.ndarray, size: int) -> np.ndarray:
    k = np.asarray(kernel, dtype=np.float32)
    if k.shape[0] >= size:
        return k
    p = (size - k.shape[0]) // 2
    return np.pad(k, p)


def nonblind_kernel(rng: np.random.Generator, cfg: NonblindConfig, bank: KernelBank | None,
                    full_side: int) -> np.ndarray:
    """One centred blur kernel ((size,size) float32): a delta (``cfg.delta_prob``), a random
    camera-shake trajectory (60% of the rest, extent 3 to size - 2 px), a training-split gyro
    recording (30%, for a focal length of 0.7-2.0 x ``full_side``, the photo's longer side) or a
    training-split USRNet kernel (10%, randomly turned)."""
    size = cfg.kernel_size
    if rng.random() < cfg.delta_prob:
        k = np.zeros((size, size), np.float32)
        k[size // 2, size // 2] = 1
        return k
    u = rng.random()
    if bank is not None and bank.gyro and u < 0.3:
        rec = bank.gyro[int(rng.integers(len(bank.gyro)))]
        focal = float(rng.uniform(0.7, 2.0)) * full_side
        k = _gyro_kernel(rec, rng, focal, size, None, True)[0]
    elif bank is not None and bank.usrnet and u < 0.4:
        k = np.rot90(bank.usrnet[int(rng.integers(len(bank.usrnet)))], int(rng.integers(4)))
    else:
        k = random_kernel(rng, size)
    return centre_kernel(_pad_to(k, size)).numpy().astype(np.float32)


def degrade(sharp: np.ndarray, kernel: np.ndarray, rng: np.random.Generator, cfg: NonblindConfig) -> np.ndarray:
    """``sharp`` ((H,W,3) float32 sRGB in [0,1]) blurred by ``kernel`` in linear light (or, a
    ``cfg.srgb_blur_prob`` share, in sRGB values), with noise, rounded to 8 bits, sometimes JPEG:
    (H,W,3) float32 in [0,1]."""
    if rng.random() < cfg.srgb_blur_prob:
        blurred = blur_with_kernel(sharp, kernel)
    else:
        blurred = linear_to_srgb(np.clip(blur_with_kernel(srgb_to_linear(sharp), kernel), 0, 1))
    if rng.random() < cfg.noise_prob:
        sigma = float(rng.uniform(0, cfg.max_noise)) / 255
        blurred = blurred + sigma * rng.standard_normal(blurred.shape, dtype=np.float32)
    blurred = np.rint(np.clip(blurred, 0, 1) * 255) / 255
    if rng.random() < cfg.jpeg_prob:
        blurred = jpeg_roundtrip(blurred, int(rng.integers(70, 96)))
    return blurred


def nonblind_pair(sharp: np.ndarray, rng: np.random.Generator, cfg: NonblindConfig, bank: KernelBank | None = None,
                  *, margin: int = 16, full_side: int | None = None,
                  estimated: EstimatedKernels | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A (deconvolved, sharp) training pair from ``sharp`` ((H,W,3) float32 sRGB in [0,1], a
    crop with ``margin`` px of real pixels on every side), and the kernel it was blurred with.
    With ``estimated`` (a bank of what the estimator returned for known kernels), a
    ``cfg.estimated_prob`` share of the blurred pairs is blurred by a bank pair's true kernel and
    deconvolved by its estimate, instead of a drawn kernel and its perturbation.
    Returns float32 (H-2m, W-2m, 3) arrays in [0,1] and the (k,k) kernel."""
    sharp = np.asarray(sharp, dtype=np.float32)
    kernel = nonblind_kernel(rng, cfg, bank, full_side or max(sharp.shape[:2]))
    used = None
    if estimated is not None and len(estimated) and kernel.max() < 1 and rng.random() < cfg.estimated_prob:  # not a delta
        kernel, used = estimated.draw(rng, cfg.kernel_size)
    blurred = degrade(sharp, kernel, rng, cfg)
    if used is None:
        used = perturb_kernel(kernel, rng) if rng.random() < cfg.perturb_prob else kernel
    deconvolved = deconvolve(blurred, used, prior=cfg.prior, method="wiener")
    h, w = sharp.shape[:2]
    inner = (slice(margin, h - margin), slice(margin, w - margin))
    return (deconvolved[inner].astype(np.float32), np.ascontiguousarray(sharp[inner]), kernel)
