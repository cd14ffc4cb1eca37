"""Blurring an image in linear light: by one kernel (FFT convolution) or by homographies (per pixel)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ConfigError, ImageError


def _fast_len(n: int) -> int:
    """Smallest 2^a 3^b 5^c >= n: FFT sizes that pocketfft handles quickly."""
    best = 1 << max(0, (n - 1).bit_length())
    f5 = 1
    while f5 < best:
        f35 = f5
        while f35 < best:
            f = f35
            while f < n:
                f *= 2
            best = min(best, f)
            f35 *= 3
        f5 *= 5
    return best


def _as_hwc(img: np.ndarray) -> np.ndarray:
    img = np.asarray(img)
    if img.ndim not in (2, 3) or img.dtype.kind != "f":
        raise ImageError(None, f"expected a float (H,W) or (H,W,C) image, got {img.dtype} {img.shape}")
    return img[:, :, None] if img.ndim == 2 else img


def blur_with_kernel(linear_img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Convolve a (H,W,C) or (H,W) float image with a (k1,k2) kernel (odd sizes), per channel.

    True convolution, kernel centre at (k1//2, k2//2): a delta there returns the image, a delta
    dy rows below and dx columns right of it moves the content dy down and dx right. Borders are
    reflect-padded (no edge pixel repeated), so a constant image stays constant. Done by FFT on
    the padded image; the circular wrap only touches the padding, which is cut away. Returns
    float32 of the input's shape. Call it on linear light.
    """
    src = _as_hwc(linear_img)
    kernel = np.asarray(kernel, dtype=np.float32)
    if kernel.ndim != 2 or kernel.shape[0] % 2 == 0 or kernel.shape[1] % 2 == 0:
        raise ConfigError(f"kernel must be 2-D with odd sides, got shape {kernel.shape}")
    h, w, _ = src.shape
    r1, r2 = kernel.shape[0] // 2, kernel.shape[1] // 2
    padded = np.pad(src.astype(np.float32, copy=False), ((r1, r1), (r2, r2), (0, 0)), mode="reflect")
    n1, n2 = _fast_len(padded.shape[0]), _fast_len(padded.shape[1])
    kpad = np.zeros((n1, n2), dtype=np.float32)
    kpad[: kernel.shape[0], : kernel.shape[1]] = kernel
    kpad = np.roll(kpad, (-r1, -r2), axis=(0, 1))  # kernel centre to the origin
    spec = np.fft.rfft2(padded, s=(n1, n2), axes=(0, 1)) * np.fft.rfft2(kpad)[:, :, None]
    out = np.fft.irfft2(spec, s=(n1, n2), axes=(0, 1))[r1 : r1 + h, r2 : r2 + w]
    out = out.astype(np.float32, copy=False)
    return out.reshape(np.shape(linear_img))


def blur_with_homographies(linear_img: np.ndarray, homographies: np.ndarray) -> np.ndarray:
    """Spatially varying blur: the mean of the image warped by each (3,3) homography.

    ``H_i`` maps sharp-image pixel coordinates (x, y, 1), pixel centres at integers, to where
    that point is seen at time i; so warp i is ``out_i(y) = img(H_i^-1 y)``, sampled bilinearly,
    borders reflected (as ``blur_with_kernel``). A translation by (dx, dy) moves the content by
    (dx, dy), the same as a kernel delta at that offset. ``linear_img`` (H,W,C) or (H,W) float;
    ``homographies`` (S,3,3). Returns float32 of the input's shape. Uses torch's grid_sample on
    the CPU, in chunks so large images stay within memory; the sum runs in a fixed order, so the
    result is deterministic.
    """
    src = _as_hwc(linear_img)
    hs = np.asarray(homographies, dtype=np.float64)
    if hs.ndim != 3 or hs.shape[1:] != (3, 3) or len(hs) == 0:
        raise ConfigError(f"homographies must be (S,3,3), got shape {hs.shape}")
    h, w, c = src.shape
    # inverse maps, rows 0 and 1 pre-scaled to grid_sample's normalised coordinates
    # (align_corners=True: pixel centres 0 and W-1 become -1 and 1; the -1 comes later)
    inv = np.linalg.inv(hs)
    inv[:, 0] *= 2.0 / max(w - 1, 1)
    inv[:, 1] *= 2.0 / max(h - 1, 1)
    inv = torch.from_numpy(inv).to(torch.float32)
    x = torch.from_numpy(np.ascontiguousarray(src.transpose(2, 0, 1), dtype=np.float32))[None]
    xs = torch.arange(w, dtype=torch.float32)
    ys = torch.arange(h, dtype=torch.float32)
    acc = torch.zeros((c, h, w), dtype=torch.float32)
    chunk = max(1, 4_000_000 // (h * w))
    with torch.no_grad():
        for start in range(0, len(hs), chunk):
            m = inv[start : start + chunk]

            def row(j: int) -> torch.Tensor:  # (S,H,W) values of m[:, j] . (x, y, 1), separably
                per_row = (m[:, j, 1, None] * ys + m[:, j, 2, None])[:, :, None]
                return torch.addcmul(per_row, m[:, j, 0, None, None], xs)

            rden = row(2).reciprocal_()
            grid = torch.stack([row(0).mul_(rden).sub_(1.0), row(1).mul_(rden).sub_(1.0)], dim=-1)
            warped = F.grid_sample(
                x.expand(len(m), -1, -1, -1),
                grid,
                mode="bilinear",
                padding_mode="reflection",
                align_corners=True,
            )
            for i in range(len(m)):  # a fixed summation order: deterministic
                acc += warped[i]
    out = (acc / len(hs)).permute(1, 2, 0).numpy()
    return np.ascontiguousarray(out).reshape(np.shape(linear_img))
