"""Image quality metrics: PSNR and SSIM on RGB images, in torch.

Both take (B,3,H,W) or (3,H,W) float tensors in [0,1] and quantise to 8 bits first (round to
the nearest level), as published deblurring results are computed on saved 8-bit images.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["psnr", "ssim"]


def _as_batch_uint8_levels(x: torch.Tensor) -> torch.Tensor:
    if x.dim() == 3:
        x = x.unsqueeze(0)
    return torch.round(x.clamp(0, 1) * 255.0).double()


def psnr(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """PSNR in dB per image, (B,), peak 255 on 8-bit-quantised RGB; identical images give inf."""
    a, b = _as_batch_uint8_levels(pred), _as_batch_uint8_levels(target)
    mse = (a - b).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(255.0**2 / mse)


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    return g / g.sum()


def ssim(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """SSIM per image, (B,): Wang et al. 2004 with an 11x11 Gaussian window (sigma 1.5),
    K1=0.01, K2=0.03, data range 255, per channel and averaged, over the valid region only.
    """
    a, b = _as_batch_uint8_levels(pred), _as_batch_uint8_levels(target)
    c = a.shape[1]
    g = _gaussian_window().to(a.device)
    win_h = g.view(1, 1, -1, 1).repeat(c, 1, 1, 1)
    win_w = g.view(1, 1, 1, -1).repeat(c, 1, 1, 1)

    def blur(x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.conv2d(x, win_h, groups=c), win_w, groups=c)

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return s.flatten(1).mean(1)
