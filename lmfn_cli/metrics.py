"""Image quality metrics for deblurring: PSNR, SSIM (two conventions) and the Köhler et al. score.

Conventions shared by `psnr` and `ssim`
---------------------------------------
* Inputs are torch tensors, ``(B,C,H,W)`` or ``(C,H,W)``, with ``C = 3`` (RGB) or ``C = 1`` (grey),
  floats in ``[0,1]``. They are quantised to 8-bit levels first, ``round(clamp(x,0,1) * 255)``
  (the multiplication is done in the input's dtype, as lmfn's own image writer does), because
  published deblurring results are computed on saved 8-bit images. ``uint8`` tensors are taken
  as 8-bit levels as they are.
* Everything after the quantisation is float64 on the inputs' device (CPU or CUDA): no numpy
  round trip.
* The result is a ``(B,)`` float64 tensor, one value per image. A data set's score (GoPro, HIDE:
  the mean over images of the per-image PSNR / SSIM) is the caller's mean of these.
* ``y_channel=True`` compares the ITU-R BT.601 luma instead of RGB (see `rgb_to_y`);
  ``crop_border=N`` drops N pixels on each side of the image before anything else.

`kohler_psnr` scores a restored image on the Köhler et al. (ECCV 2012) real camera-shake
benchmark against the sharp frames of the recorded trajectory; see its docstring.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["psnr", "ssim", "rgb_to_y", "kohler_psnr", "kohler_align", "KohlerScore"]

# SSIM constants of Wang et al. 2004, used by both SSIM variants.
_SIGMA = 1.5
_RADIUS = 5  # 11 taps: skimage (truncate=3.5 -> int(3.5*1.5+0.5)) and MATLAB (ceil(3*1.5)) agree
_K1, _K2, _L = 0.01, 0.03, 255.0


# ---------------------------------------------------------------------------------------------
# Input handling
# ---------------------------------------------------------------------------------------------


def _levels(x: torch.Tensor, name: str) -> torch.Tensor:
    """(B,C,H,W) or (C,H,W) image in [0,1] (or uint8 levels) -> (B,C,H,W) float64 levels 0..255."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    if x.dim() == 3:
        x = x.unsqueeze(0)
    if x.dim() != 4:
        raise ValueError(f"{name}: expected shape (B,C,H,W) or (C,H,W), got {tuple(x.shape)}")
    if x.dtype == torch.uint8:
        return x.double()
    if not x.is_floating_point():
        raise TypeError(f"{name}: expected a float tensor in [0,1] or uint8, got {x.dtype}")
    return torch.round(x.clamp(0, 1) * 255.0).double()


def rgb_to_y(x: torch.Tensor) -> torch.Tensor:
    """ITU-R BT.601 luma of RGB levels, as BasicSR computes it: (B,3,H,W) 0..255 -> (B,1,H,W).

    ``Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255`` with R, G, B in 0..255, so Y lies in
    [16, 235]. This is BasicSR's ``rgb2ycbcr(..., y_only=True)`` as used by its
    ``to_y_channel`` (basicsr/metrics/metric_util.py; the same coefficients as MATLAB's
    ``rgb2ycbcr``). Y is **not rounded**: BasicSR's ``to_y_channel`` returns it unrounded
    ("float type without round"), and rounding would add its own quantisation error to the
    comparison. MATLAB's ``rgb2ycbcr`` on a uint8 image rounds Y to uint8, so scores from MATLAB
    scripts that do that differ slightly (typically by hundredths of a dB). BasicSR computes in
    float32; this is float64. One-channel input is returned unchanged.
    """
    if x.shape[1] == 1:
        return x
    if x.shape[1] != 3:
        raise ValueError(f"y_channel needs 1 or 3 channels, got {x.shape[1]}")
    r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    return 16.0 + (65.481 * r + 128.553 * g + 24.966 * b) / 255.0


def _prepare(pred: torch.Tensor, target: torch.Tensor, y_channel: bool, crop_border: int):
    """Quantise, check shapes, crop the border, optionally take luma: two (B,C,H,W) float64."""
    a, b = _levels(pred, "pred"), _levels(target, "target")
    if a.shape != b.shape:
        raise ValueError(f"pred and target shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    b = b.to(a.device)
    n = int(crop_border)
    if n != crop_border or n < 0:
        raise ValueError(f"crop_border must be a non-negative integer, got {crop_border!r}")
    if n:
        h, w = a.shape[-2:]
        if 2 * n >= h or 2 * n >= w:
            raise ValueError(f"crop_border={n} leaves nothing of a {h}x{w} image")
        a, b = a[..., n:-n, n:-n], b[..., n:-n, n:-n]
    if y_channel:
        a, b = rgb_to_y(a), rgb_to_y(b)
    return a, b


# ---------------------------------------------------------------------------------------------
# PSNR
# ---------------------------------------------------------------------------------------------


def psnr(pred: torch.Tensor, target: torch.Tensor, *, y_channel: bool = False,
         crop_border: int = 0) -> torch.Tensor:
    """PSNR in dB per image, ``(B,)`` float64: ``10 log10(255^2 / MSE)`` on 8-bit levels.

    pred, target: (B,C,H,W) or (C,H,W), C = 3 or 1, floats in [0,1] (quantised to 8-bit levels
    first) or uint8. The MSE is the mean over all channels and pixels of one image (after
    ``crop_border`` and, with ``y_channel``, over the BT.601 luma of `rgb_to_y` instead of RGB).
    Identical images give ``inf``. This is the per-image PSNR of the GoPro/HIDE evaluations
    (MATLAB ``psnr(uint8, uint8)``, BasicSR ``calculate_psnr``); a data set's PSNR is the mean of
    these over its images.
    """
    a, b = _prepare(pred, target, y_channel, crop_border)
    mse = (a - b).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(_L**2 / mse)


# ---------------------------------------------------------------------------------------------
# SSIM
# ---------------------------------------------------------------------------------------------


def _gaussian_taps() -> list[float]:
    """Normalised 1-D Gaussian, sigma 1.5, 11 taps (x = -5..5), as Python floats."""
    g = [math.exp(-(x * x) / (2 * _SIGMA**2)) for x in range(-_RADIUS, _RADIUS + 1)]
    return [v / sum(g) for v in g]


_TAPS = _gaussian_taps()


def _correlate_valid(x: torch.Tensor, dim: int) -> torch.Tensor:
    """'Valid' correlation of x with the 11 taps along `dim`: a weighted sum of shifted views.

    (Cheaper in memory than conv2d, whose float64 CPU path unfolds the input 11-fold.)
    """
    n = x.shape[dim] - len(_TAPS) + 1
    out = x.narrow(dim, 0, n) * _TAPS[0]
    for i, t in enumerate(_TAPS[1:], start=1):
        out.add_(x.narrow(dim, i, n), alpha=t)
    return out


def _blur_valid(x: torch.Tensor) -> torch.Tensor:
    """(N,C,H,W) -> (N,C,H-10,W-10): separable 11x11 Gaussian over the valid region only."""
    return _correlate_valid(_correlate_valid(x, -2), -1)


def _blur_replicate(x: torch.Tensor) -> torch.Tensor:
    """(N,C,H,W) -> (N,C,H,W): the C slices taken as a volume, separable 11x11x11 Gaussian,
    edges replicated in all three dimensions (MATLAB's imfilter(..., 'replicate')).

    Along the short channel axis the replicated edges are folded into a CxC matrix (row k holds
    the weights of the C slices in output slice k: with C = 3 the first and last slices also
    carry the taps that fall on the 5 replicated copies beyond them), which avoids building a
    (C+10)-deep padded volume; H and W are edge-padded by 5 and filtered 'valid'.
    """
    c, r = x.shape[1], _RADIUS
    src = (torch.arange(c)[:, None] + torch.arange(-r, r + 1)[None, :]).clamp(0, c - 1)
    fold = torch.zeros(c, c, dtype=torch.float64).scatter_add_(
        1, src, torch.tensor(_TAPS, dtype=torch.float64).expand(c, -1))
    x = torch.einsum("kc,nchw->nkhw", fold.to(x.device), x)
    return _blur_valid(F.pad(x, (r, r, r, r), mode="replicate"))


def _ssim_map(a: torch.Tensor, b: torch.Tensor, blur) -> torch.Tensor:
    """Wang et al. eq. 13 from local Gaussian-weighted statistics; a, b: (B,C,H,W) levels."""
    n = a.shape[0]
    stats = blur(torch.cat([a, b, a * a, b * b, a * b]))  # one pass for the five local means
    mu_a, mu_b, e_aa, e_bb, e_ab = stats.split(n)
    var_a = e_aa - mu_a**2
    var_b = e_bb - mu_b**2
    cov = e_ab - mu_a * mu_b
    c1, c2 = (_K1 * _L) ** 2, (_K2 * _L) ** 2
    return ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))


def ssim(pred: torch.Tensor, target: torch.Tensor, *, variant: str = "gaussian",
         y_channel: bool = False, crop_border: int = 0) -> torch.Tensor:
    """SSIM per image, ``(B,)`` float64, in one of two published conventions.

    pred, target: (B,C,H,W) or (C,H,W), C = 3 or 1, floats in [0,1] (quantised to 8-bit levels
    first) or uint8. Both variants use Wang et al. 2004's eq. 13 with a Gaussian window of
    sigma 1.5 and 11 taps, K1 = 0.01, K2 = 0.03, L = 255 (C1 = 6.5025, C2 = 58.5225) and
    population (not sample) local variances. ``crop_border`` and ``y_channel`` (BT.601 luma of
    `rgb_to_y`, unrounded) are applied first, as in `psnr`.

    ``variant="gaussian"`` (default; the value lmfn's training log reports): each channel on its
    own, 2-D 11x11 window, SSIM map over the *valid* region only (the window never leaves the
    image: an HxW image gives an (H-10)x(W-10) map), its mean, then the mean over channels. This
    is scikit-image's ``structural_similarity(a, b, channel_axis=-1, gaussian_weights=True,
    sigma=1.5, use_sample_covariance=False, data_range=255)``: skimage filters the whole image
    (scipy ``gaussian_filter``, truncate 3.5, mode 'reflect') and then drops a 5-pixel border
    (``pad = (win_size-1)//2``) before the mean; on that cropped region the 11-tap window never
    reaches the reflected padding, so it equals this valid-only filtering exactly. It is also
    BasicSR's ``calculate_ssim`` (cv2 11x11 Gaussian, map cropped by 5). Needs H, W >= 11 after
    the crop.

    ``variant="matlab"``: MATLAB's ``ssim(A, ref)`` (Image Processing Toolbox) as the GoPro/HIDE
    evaluation scripts call it on the uint8 RGB images (e.g. MPRNet's
    ``Deblurring/evaluate_PSNR_SSIM.m``: ``ssim(input, gt)``). MATLAB treats an HxWx3 array as a
    3-D *volume*: the local statistics come from a 3-D Gaussian, sigma 1.5 and filter size
    ``2*ceil(3*sigma)+1 = 11`` in every dimension, applied with 'replicate' padding in x, y and
    across the channel slices. Source: ssim.m of 2013-2014 (a copy is in rwenqi/GFN-dehazing)
    builds the 11x11x11 kernel with ``ndgrid`` (normalised, entries below eps*max zeroed: none at
    this size) and calls ``imfilter(..., 'conv', 'replicate')``; later releases are said to call
    ``imgaussfilt3`` with the same filter size, sigma and 'replicate' padding (not checked against
    their source here); a normalised separable Gaussian either way. The
    SSIM map has the full HxWx3 size and the score is its mean. Here: the volume is padded by 5
    with edge replication in all three dimensions (along a 3-slice channel axis that repeats the
    first and last channel five times) and convolved with the normalised 11-tap Gaussian along
    each. One-channel input (grey, or ``y_channel=True``) is MATLAB's 2-D case: 11x11
    ``fspecial('gaussian')`` window, 'replicate' padding, mean over the full HxW map. The
    reference here is the ssim.m source (no MATLAB output was available to compare with).
    """
    if variant not in ("gaussian", "matlab"):
        raise ValueError(f"variant must be 'gaussian' or 'matlab', got {variant!r}")
    a, b = _prepare(pred, target, y_channel, crop_border)
    if variant == "gaussian":
        h, w = a.shape[-2:]
        if h < 2 * _RADIUS + 1 or w < 2 * _RADIUS + 1:
            raise ValueError(f"gaussian SSIM needs images of at least 11x11, got {h}x{w}")
        s = _ssim_map(a, b, _blur_valid)  # (B,C,H-10,W-10)
    else:
        # One channel (grey, or y_channel) is left unchanged by the replicate-padded channel
        # filter, which makes it MATLAB's 2-D case.
        s = _ssim_map(a, b, _blur_replicate)  # (B,C,H,W)
    return s.flatten(1).mean(1)


# ---------------------------------------------------------------------------------------------
# Köhler et al. 2012 benchmark score
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KohlerScore:
    """Result of `kohler_psnr`.

    psnr: the score in dB, the best over the ground-truth frames.
    frame: 0-based index (into ``frames``) of the frame that gave it.
    shift: (dy, dx), the integer translation applied to the gain-corrected restored image to
        line it up with that frame: ``aligned[y, x] = gain * restored[y - dy, x - dx]`` (zero
        where ``y - dy`` or ``x - dx`` falls outside the image). Positive dy moves content down.
    gain: the least-squares intensity gain for that frame, ``gain * restored ~ frame``.
    frame_psnrs: the PSNR against every frame, in order.
    """

    psnr: float
    frame: int
    shift: tuple[int, int]
    gain: float
    frame_psnrs: tuple[float, ...]


def _kohler_image(x: torch.Tensor, name: str, quantize: bool, device) -> torch.Tensor:
    """(3,H,W) in [0,1] (or uint8 levels) -> (3,H,W) float64 in 0..255 on `device`."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 3 or x.shape[0] != 3:
        raise ValueError(f"{name}: expected an RGB image of shape (3,H,W), got {tuple(x.shape)}")
    x = x.to(device)
    if x.dtype == torch.uint8:
        return x.double()
    if not x.is_floating_point():
        raise TypeError(f"{name}: expected a float tensor in [0,1] or uint8, got {x.dtype}")
    if quantize:
        return torch.round(x.clamp(0, 1) * 255.0).double()
    return x.double() * 255.0


def _shift_zero_fill(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """out[..., y, x] = x[..., y - dy, x - dx], zero outside: imshift(x, [dy dx], 'same')."""
    out = torch.zeros_like(x)
    h, w = x.shape[-2:]
    if abs(dy) >= h or abs(dx) >= w:
        return out
    out[..., max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        x[..., max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
    return out


def _luma601(x: torch.Tensor) -> torch.Tensor:
    """(3,H,W) -> (H,W): 0.299 R + 0.587 G + 0.114 B (MeTriX MuX's preprocessing)."""
    return 0.299 * x[0] + 0.587 * x[1] + 0.114 * x[2]


def kohler_psnr(restored: torch.Tensor, frames: Iterable[torch.Tensor], *,
                max_shift: int | None = None, quantize: bool = True) -> KohlerScore:
    """Score a restored image on the Köhler et al. benchmark: the best PSNR over the trajectory.

    restored: (3,H,W) RGB float tensor in [0,1] (or uint8 levels); the computation runs in
        float64 on its device (CPU or CUDA).
    frames: the ground-truth sharp frames recorded along the camera-shake trajectory, each a
        (3,H,W) tensor in [0,1] (or uint8), same size as restored; any iterable (a list, or an
        (N,3,H,W) tensor). They are scaled to 0..255 and *not* quantised.
    max_shift: None (default) searches every translation, as the benchmark does; an integer
        restricts the registration to |dy|, |dx| <= max_shift (guards against a spurious
        wrap-around correlation peak on small or flat images; not part of the benchmark).
    quantize: True (default) rounds restored to 8-bit levels first, as the benchmark only
        accepts uint8 deblurred images ("Input image has to be a color image of type uint8!").

    The protocol is the benchmark's own ``eval_image.m`` (Michael Hirsch and Rolf Koehler, 2012;
    copies ship in public repositories, e.g. codeslake/PVDNet
    ``evaluation/evaluation_code/eval_image.m`` with ``dftregistration.m``, ``imshift.m`` and
    MeTriX MuX), with z the restored image and x a frame, both 0..255 float:

    1. gain ``g = sum(x*z) / sum(z*z)`` over all pixels and channels (the least-squares gain
       minimising ||g z - x||^2; computed on the unaligned images, as there) and ``zs = g z``;
    2. integer translation by DFT cross-correlation (Guizar-Sicairos ``dftregistration`` with
       usfac 1) of the channel means ``mean(x, 3)`` and ``mean(zs, 3)``: the peak of
       ``|ifft2(fft2(x_grey) .* conj(fft2(zs_grey)))|`` (first maximum in MATLAB's column-major
       order), mapped to a signed shift in [-ceil(N/2), floor(N/2)-1] (MATLAB's
       ``if loc > fix(N/2), loc - N - 1``);
    3. zs is shifted by it with zero fill (``imshift(zs, shift, 'same')``) and x is multiplied by
       the equally shifted all-ones mask, so both are zero where the shift left no data;
    4. both are converted to luma ``Y = 0.299 R + 0.587 G + 0.114 B`` (MeTriX MuX's
       ``preprocess_metrix_mux``) and ``PSNR = 10 log10(255^2 / MSE)`` (``metrix_psnr``) where
       **the MSE is the mean over the whole HxW image**, masked pixels included as zero error,
       exactly as ``metrix_mse`` does on the masked images (not the mean over the valid region
       only; a larger shift therefore slightly raises the PSNR, as in the benchmark);
    5. the score is the maximum over frames (``get_best_metric_value2``: ``max(score(:))``).

    Deviations, none of which change a result on real data: an all-zero restored image gets
    gain 0 (MATLAB's 0/0 gives NaN); frames are indexed from 0. Pure function: no I/O.
    """
    if max_shift is not None and (int(max_shift) != max_shift or max_shift < 0):
        raise ValueError(f"max_shift must be None or a non-negative integer, got {max_shift!r}")
    device = restored.device if isinstance(restored, torch.Tensor) else None
    z = _kohler_image(restored, "restored", quantize, device)
    h, w = z.shape[-2:]
    # Signed shift of each correlation index: MATLAB's "if loc > fix(N/2), loc - N - 1".
    sy = torch.arange(h, device=device)
    sy = torch.where(sy >= h // 2, sy - h, sy)
    sx = torch.arange(w, device=device)
    sx = torch.where(sx >= w // 2, sx - w, sx)
    if max_shift is not None:
        allowed = (sy.abs() <= max_shift)[:, None] & (sx.abs() <= max_shift)[None, :]
    zz = (z * z).sum()
    results: list[tuple[float, tuple[int, int], float]] = []
    for i, frame in enumerate(frames):
        x = _kohler_image(frame, f"frames[{i}]", False, device)
        if x.shape != z.shape:
            raise ValueError(f"frames[{i}] has shape {tuple(x.shape)}, restored {tuple(z.shape)}")
        g = ((x * z).sum() / zz) if zz > 0 else torch.zeros((), dtype=torch.float64, device=device)
        zs = g * z
        cc = torch.fft.ifft2(torch.fft.fft2(x.mean(0)) * torch.fft.fft2(zs.mean(0)).conj()).abs()
        if max_shift is not None:
            cc = torch.where(allowed, cc, torch.full_like(cc, -1.0))
        k = int(torch.argmax(cc.t().reshape(-1)))  # column-major: MATLAB's first maximum
        dy, dx = int(sy[k % h]), int(sx[k // h])
        zr = _shift_zero_fill(zs, dy, dx)
        xr = x * _shift_zero_fill(torch.ones_like(x[:1]), dy, dx)
        mse = (_luma601(xr) - _luma601(zr)).pow(2).mean()
        value = 10 * math.log10(_L**2 / float(mse)) if float(mse) > 0 else math.inf
        results.append((value, (dy, dx), float(g)))
    if not results:
        raise ValueError("frames is empty")
    best = max(range(len(results)), key=lambda j: (results[j][0], -j))  # first of equal maxima
    value, shift, gain = results[best]
    return KohlerScore(psnr=value, frame=best, shift=shift, gain=gain,
                       frame_psnrs=tuple(r[0] for r in results))


def kohler_align(restored: torch.Tensor, frame: torch.Tensor, shift: tuple[int, int], gain: float, *,
                 quantize: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """The pair `kohler_psnr` compared for one frame, for further metrics (e.g. SSIM).

    restored, frame: (3,H,W) in [0,1] (or uint8), as for `kohler_psnr`; shift, gain: from its
    `KohlerScore`. Returns (aligned, reference): (1,H,W) float64 luma in [0,1] (clamped), the
    gain-corrected restored image shifted with zero fill, and the frame under the same mask.
    """
    device = restored.device
    z = _kohler_image(restored, "restored", quantize, device)
    x = _kohler_image(frame, "frame", False, device)
    dy, dx = shift
    zr = _shift_zero_fill(gain * z, dy, dx)
    xr = x * _shift_zero_fill(torch.ones_like(x[:1]), dy, dx)
    return ((_luma601(zr) / _L).clamp(0, 1).unsqueeze(0), (_luma601(xr) / _L).clamp(0, 1).unsqueeze(0))
