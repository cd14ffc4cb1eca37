"""Blur-kernel estimation from one photo (blind deconvolution's first half).

A photo shaken by hand is mostly blurred by one kernel over the whole frame (Köhler et al. 2012,
Levin et al. 2009), and that kernel can be found from the photo itself. `estimate_kernel`
follows Pan, Hu, Su and Yang, "Deblurring Text Images via L0-Regularized Intensity and Gradient
Prior" (CVPR 2014), with its gradient term only, which is the L0 gradient prior of Xu, Zheng
and Jia, "Unnatural L0 Sparse Representation for Natural Image Deblurring" (CVPR 2013):

- on the luminance of the most textured square of the photo, coarse to fine (kernel sizes
  growing by sqrt(2) from 3 px to the full size, the image resized with them);
- at each scale, alternately the latent sharp image, ``min_x |k * x - y|^2 + lam |grad x|_0``,
  by half-quadratic splitting (the gradient field thresholded in closed form, then one FFT solve
  per step of a doubling penalty ``beta``), and the kernel,
  ``min_k |grad x * k - grad y|^2 + gamma |k|^2``, by conjugate gradients with FFT
  convolutions, on the latent image's salient gradients only (Cho and Lee 2009; optionally only
  where the blurry image has useful edges rather than texture finer than the blur, Xu and Jia's
  r-map, ECCV 2010, section 3.1: `EstimationSettings.edge_r`, off by default);
- the kernel kept non-negative, values under 5% of its peak and pieces holding under 10% of
  its mass cleared, summing to 1, and centred on its centre of mass between scales;
- at the finest scale, the kernel refined by iterative support detection (Xu and Jia, "Two-Phase
  Kernel Estimation for Robust Motion Deblurring", ECCV 2010, section 4.2): solved again with
  an L1 penalty on its pixels outside its detected support, which clears the streaks and specks
  that the L2 solve picks up (on BSDS500 training photos: a higher deconvolution gain on every
  row of `benchmarks/kernel_refine_study.py`, e.g. +1.66 -> +3.03 dB on USRNet motion kernels).

The L0 prior keeps only the strong edges of the latent image, which is what makes the kernel
identifiable: fine texture that blur cannot be told from is dropped.

**Confidence.** One blur over the frame is an assumption that fails for moving subjects, depth
and rolling shutter, and estimation can fail on photos with few edges. So the kernel is
estimated a second time on the most textured square that does not overlap the first, and the
two are compared (normalised cross-correlation at the best shift, 0-1): `KernelEstimate.agreement`;
the more compact of the two is the one returned (`EstimationSettings.prefer_compact`).
Each square is at least 8x the kernel; on a photo with no room for two such squares (a 256 px
crop), the one square is searched a second time from a vertical start instead of a horizontal
one, and the two kernels are compared: a search that lands on a different kernel from a
different start has found no clear optimum (`KernelEstimate.checked` says which check was made;
on BSDS500 training crops, `benchmarks/kernel_check_study.py`, it flagged the worst losses, not
all of them, and passed one sharp crop of eight). It is the weaker check: ``--method kernel``
accepts it, ``--method auto`` (`KernelEstimate.usable`) wants two regions. A sharp photo gives
a kernel of small `deconvolution.kernel_extent`. Callers deconvolve only when the two agree and
the blur is wide enough to be worth it (`KernelEstimate.usable`).

Images are float in [0,1], (H,W) or (H,W,C); kernels (k,k) float32, k odd.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .deconvolution import (_grad, _grad_adjoint, _gradient_energy, centre_kernel, kernel_extent, normalise_kernel, otf,
                            taper)

__all__ = ["EstimationSettings", "KernelEstimate", "estimate_kernel", "kernel_agreement", "textured_regions"]

log = logging.getLogger(__name__)

LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601 weights on the sRGB values


@dataclass(frozen=True)
class EstimationSettings:
    """How `estimate_kernel` searches; defaults follow Pan et al. 2014's published settings."""

    kernel_size: int = 31
    """Largest kernel side (odd, px at the photo's size): the blur's extent must fit in it."""
    region: int = 256
    """Side of the square (the photo's most textured) that the kernel is estimated on."""
    iterations: int = 5
    """Alternations of latent image and kernel per scale."""
    lam: float = 4e-3
    """Weight of the L0 gradient prior on the latent image (divided by 1.1 at each finer scale)."""
    gamma: float = 2.0
    """Tikhonov weight on the kernel in its solve."""
    beta_max: float = 1e5
    """Last penalty of the half-quadratic splitting (it doubles from 2 * lam)."""
    refine_weight: float = 10.0
    """Weight of the L1 penalty on kernel pixels outside the detected support in the final
    refinement (`_refine`, Xu and Jia's iterative support detection); 0 skips the refinement.
    Chosen on BSDS500 training photos (`benchmarks/kernel_refine_study.py`): 1, 10 and 100 all
    gained on every row over none, 10 the best or near it on two sets of photos."""
    refine_rounds: int = 2
    """Latent-image updates of that refinement, each followed by up to five kernel solves."""
    edge_r: float = 0.0
    """Xu and Jia's useful-edge threshold (`_r_map`): the kernel is solved on gradients only where
    the blurry image's gradients in a 5x5 window point the same way (r at least this), not on
    texture finer than the blur; 0 (the default): on all salient gradients. Off because it did
    harm on real blur: 0.2 (the best of 0.1, 0.2 and 0.3 on BSDS500 training photos,
    `benchmarks/kernel_settings_study.py`) gained on synthetic blur (training photos +7.83 ->
    +9.48 dB summed over four rows; validation crops, e.g. USRNet shake +1.15 -> +1.53) but lost
    Köhler's clock (a 13.6 px kernel found without it, 5.5 px with it), lost 0.04-0.08 dB on
    `gopro-unseen`, and took the real photos `--method auto` deconvolves from 3 to 0."""
    check: bool = True
    """Estimate again, on a second region (or, with no room for one, on the same region from
    another start), and report the agreement of the two."""
    prefer_compact: bool = True
    """Of the check's two kernels, use the more compact (the smaller `kernel_extent`), not
    always the first. Where a search goes wrong it mostly finds a long spurious path that
    explains texture as blur, while the other search finds the short blur it is; deconvolving by
    too short a kernel leaves some blur, by a spurious long one it draws ghosts. On BSDS500
    training crops (two sets of 16, 256 px, checked by two starts; `--method kernel`'s choice,
    network stage), it deconvolved 1 sharp crop of 32 instead of 4, took 3 px lines from -0.68 /
    -0.58 dB (sRGB / linear light) to -0.19 / -0.41 on the first set and linear light from -0.81
    to -0.14 on the second, and gyro_04 shake from +2.04 to +2.73; no row lost more than 0.14 dB
    (5 px lines in sRGB values, first set; +0.06 on the second)."""
    min_agreement: float = 0.9
    """`KernelEstimate.usable` needs at least this agreement between the two regions ..."""
    min_extent: float = 2.5
    """... and a kernel spreading a point over at least this many px (`kernel_extent`; a line
    of 5 px is 2.9). Both chosen on BSDS500 training photos: every one of 10 sharp photos fell
    below one of them (their spurious kernels reached 10 px, agreeing at 0.76-0.80)."""

    def __post_init__(self) -> None:
        if self.kernel_size < 3 or self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd and >= 3, got {self.kernel_size}")
        if self.region < 2 * self.kernel_size:
            raise ValueError(f"region ({self.region}) must be at least twice kernel_size ({self.kernel_size})")
        if self.refine_weight < 0 or self.refine_rounds < 0:
            raise ValueError(f"refine_weight and refine_rounds must be >= 0, got {self.refine_weight}, {self.refine_rounds}")


@dataclass(frozen=True)
class KernelEstimate:
    """An estimated kernel, (k,k) float32, >= 0, summing to 1, centred. ``region``: (top, left,
    side) of the square it came from; ``agreement``: 0-1 between the kernels of two squares, or
    of one square searched from two starts (``checked`` says which; None when not checked);
    ``extent``: px."""

    kernel: np.ndarray
    region: tuple[int, int, int]
    agreement: float | None
    extent: float
    min_agreement: float = 0.9
    min_extent: float = 2.5
    checked: str | None = None
    """How ``agreement`` was measured: ``"regions"`` (two squares of the photo), ``"starts"`` (one
    square searched from two starts: a photo with no room for two), or None (not checked)."""

    @property
    def usable(self) -> bool:
        """Worth deconvolving with, confidently (``--method auto``): a blur wider than
        ``min_extent`` px that two regions of the photo agree on. An estimate checked by two
        starts only (a photo too small for two regions) is not: on the validation crops that
        check let through a sharp crop and 3 px blur that the deconvolution made worse."""
        agreed = self.checked == "regions" and self.agreement is not None and self.agreement >= self.min_agreement
        return agreed and self.extent >= self.min_extent


def luminance(image: np.ndarray) -> np.ndarray:
    """(H,W) float32 luma of an (H,W) or (H,W,C) float image (BT.601 weights on RGB)."""
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 3:
        image = image[..., :3] @ np.asarray(LUMA, dtype=np.float32) if image.shape[2] >= 3 else image[..., 0]
    return image


def textured_regions(luma: np.ndarray, size: int, count: int = 2) -> list[tuple[int, int, int]]:
    """The ``size`` x ``size`` square (clipped to the image) with the most gradient energy, or
    (``count`` 2) the two non-overlapping ones with the most together (one if two do not fit),
    searched on a grid of a quarter of their side: [(top, left, side)]. ``luma``: (H,W) float."""
    h, w = luma.shape
    side = min(size, h, w)
    gy, gx = np.gradient(luma.astype(np.float64))
    energy = np.pad(np.cumsum(np.cumsum(gx * gx + gy * gy, 0), 1), ((1, 0), (1, 0)))
    step = max(1, side // 4)
    scored = []
    for top in sorted(set(range(0, h - side + 1, step)) | {h - side}):
        for left in sorted(set(range(0, w - side + 1, step)) | {w - side}):
            e = energy[top + side, left + side] - energy[top, left + side] - energy[top + side, left] + energy[top, left]
            scored.append((e, top, left))
    scored.sort(reverse=True)
    if count == 1 or len(scored) == 1:
        return [(scored[0][1], scored[0][2], side)]
    # the pair of squares that do not overlap with the most energy together (the single best
    # square may leave no room for a second one)
    best_pair, best = None, -1.0
    for i, (e1, t1, l1) in enumerate(scored):
        if e1 + scored[0][0] <= best:
            break
        for e2, t2, l2 in scored[i + 1:]:
            if e1 + e2 <= best:
                break
            if abs(t1 - t2) >= side or abs(l1 - l2) >= side:
                best_pair, best = ((t1, l1, side), (t2, l2, side)), e1 + e2
                break
    return list(best_pair) if best_pair else [(scored[0][1], scored[0][2], side)]


def _latent(y: torch.Tensor, kernel: torch.Tensor, lam: float, beta_max: float) -> torch.Tensor:
    """argmin_x |k * x - y|^2 + lam |grad x|_0 by half-quadratic splitting (Xu et al. 2011's L0
    smoothing with a blur term). ``y``: (H,W) float64 that wraps smoothly at its borders."""
    shape = (y.shape[0], y.shape[1])
    k_otf = otf(kernel, shape)
    grad_energy = _gradient_energy(shape)
    ky = k_otf.conj() * torch.fft.rfft2(y)
    kk = k_otf.abs() ** 2
    x = y.clone()
    beta = 2 * lam
    while beta < beta_max:
        gx, gy = _grad(x)
        keep = (gx * gx + gy * gy) >= lam / beta  # the closed-form L0 step: strong gradients only
        rhs = ky + beta * torch.fft.rfft2(_grad_adjoint(gx * keep, gy * keep))
        x = torch.fft.irfft2(rhs / (kk + beta * grad_energy), s=shape)
        beta *= 2
    return x


def _salient(gx: torch.Tensor, gy: torch.Tensor, size: int, margin: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The strongest gradients only, away from the padded border (``margin`` px): a magnitude
    threshold such that each of four directions keeps at least ``size ** 2`` pixels (Cho and Lee
    2009, section 4, keep r sqrt(image pixels x kernel pixels); at least as many as the kernel
    has unknowns, which on 96-192 px test squares beat Pan et al.'s 2 x size: fewer leave the
    kernel smeared). Weak gradients say little about the kernel and much about noise."""
    inner = torch.zeros_like(gx, dtype=torch.bool)
    inner[margin:-margin, margin:-margin] = True
    mag = torch.sqrt(gx * gx + gy * gy) * inner
    angle = torch.remainder(torch.atan2(gy, gx), math.pi)
    bins = torch.clamp((angle / (math.pi / 4)).long(), max=3)
    threshold = math.inf
    for b in range(4):
        values = mag[(bins == b) & inner]
        if values.numel() > 0:
            threshold = min(threshold, float(torch.topk(values, min(values.numel(), size * size)).values[-1]))
    mask = (mag >= threshold) & inner
    return gx * mask, gy * mask


def _clean(kernel: torch.Tensor) -> torch.Tensor:
    """Values under 5% of the peak cleared, then 8-connected pieces holding under 10% of the
    mass (Pan et al.'s code), then normalised."""
    k = normalise_kernel(kernel, floor=0.05)
    mask = (k > 0).numpy()
    labels = np.zeros(mask.shape, dtype=np.int32)
    n = 0
    for start in zip(*np.nonzero(mask)):
        if labels[start]:
            continue
        n += 1
        stack = [start]
        labels[start] = n
        while stack:
            y, x = stack.pop()
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    yy, xx = y + dy, x + dx
                    if 0 <= yy < mask.shape[0] and 0 <= xx < mask.shape[1] and mask[yy, xx] and not labels[yy, xx]:
                        labels[yy, xx] = n
                        stack.append((yy, xx))
    kn = k.numpy().copy()
    for i in range(1, n + 1):
        piece = labels == i
        if kn[piece].sum() < 0.1:
            kn[piece] = 0
    return normalise_kernel(kn)


def _r_map(gx: torch.Tensor, gy: torch.Tensor, window: int = 5) -> torch.Tensor:
    """Xu and Jia 2010's r = |sum of grad y over the window| / (sum of |grad y| over it + 0.5),
    from the blurry image's gradients ``gx``, ``gy`` (`_grad`): near 1 on a blurred edge, low on
    texture finer than the blur and on flat areas. (H,W)."""
    pad = window // 2

    def box(t: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(F.pad(t[None, None], (pad,) * 4, mode="replicate"), window, stride=1)[0, 0] * window**2

    return torch.sqrt(box(gx) ** 2 + box(gy) ** 2) / (box(torch.sqrt(gx * gx + gy * gy)) + 0.5)


def _normal_equations(x: torch.Tensor, y: torch.Tensor, size: int, margin: int, edge_r: float = 0.0
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """The data term of ``min_k |grad x * k - grad y|^2`` over ``size`` x ``size`` kernels, on
    ``x``'s salient gradients: the normal equations' matrix (size^2, size^2) and right-hand side
    (size, size)."""
    shape = (y.shape[0], y.shape[1])
    gx, gy = _grad(x)
    y_gx, y_gy = _grad(y)
    if edge_r > 0:
        useful = _r_map(y_gx, y_gy) >= edge_r
        gx, gy = gx * useful, gy * useful
    xx, xy = (torch.fft.rfft2(g) for g in _salient(gx, gy, size, margin))
    yx, yy = torch.fft.rfft2(y_gx), torch.fft.rfft2(y_gy)
    return _toeplitz(xx.abs() ** 2 + xy.abs() ** 2, shape, size), _crop(xx.conj() * yx + xy.conj() * yy, shape, size)


def _crop(f: torch.Tensor, shape: tuple[int, int], size: int) -> torch.Tensor:
    """Frequency (rfft2 of ``shape``) -> the ``size`` x ``size`` kernel window, its middle at size // 2."""
    half = size // 2
    return torch.roll(torch.fft.irfft2(f, s=shape), shifts=(half, half), dims=(0, 1))[:size, :size]


def _toeplitz(m: torch.Tensor, shape: tuple[int, int], size: int) -> torch.Tensor:
    """The matrix of k -> crop(irfft2(m * otf(k))) on ``size`` x ``size`` kernels (flattened), for
    ``m`` the gradients' power spectrum (rfft2 of ``shape``): entry (p, q) is their circular
    autocorrelation at offset p - q. Built once per set of normal equations (one inverse FFT), it
    makes each conjugate-gradient step a small matrix product instead of two FFTs of the image."""
    n = 2 * size - 1  # offsets -(size - 1) .. size - 1
    r = torch.roll(torch.fft.irfft2(m, s=shape), shifts=(size - 1, size - 1), dims=(0, 1))[:n, :n]
    i = torch.arange(size)
    d = i[:, None] - i[None, :] + size - 1  # (p, q) -> offset index along one axis
    return r[d[:, None, :, None], d[None, :, None, :]].reshape(size * size, size * size)


def _solve_kernel(t: torch.Tensor, b: torch.Tensor, diagonal: float | torch.Tensor, *,
                  start: torch.Tensor | None = None, cg_steps: int = 20) -> torch.Tensor:
    """argmin_k |grad x * k - grad y|^2 + sum ``diagonal`` k^2 (a weight, or one per kernel pixel)
    given `_normal_equations`' matrix ``t`` and right-hand side ``b``, by conjugate gradients from
    ``start`` (flat if None). Raw: may be negative, not normalised."""
    size = b.shape[0]

    def apply(k: torch.Tensor) -> torch.Tensor:  # the normal equations' operator
        return (t @ k.reshape(-1)).reshape(size, size) + diagonal * k

    k = torch.full((size, size), 1.0 / size**2, dtype=torch.float64) if start is None else start.clone()
    r = b - apply(k)
    p = r.clone()
    rr = float((r * r).sum())
    for _ in range(cg_steps):
        if rr < 1e-20:
            break
        ap = apply(p)
        alpha = rr / float((p * ap).sum())
        k = k + alpha * p
        r = r - alpha * ap
        rr_new = float((r * r).sum())
        p = r + (rr_new / rr) * p
        rr = rr_new
    return k


def _kernel_step(x: torch.Tensor, y: torch.Tensor, size: int, gamma: float, margin: int, edge_r: float = 0.0
                 ) -> torch.Tensor:
    """One kernel update of the coarse-to-fine search: ``min_k |grad x * k - grad y|^2 + gamma
    |k|^2`` (`_solve_kernel`), then `_clean`."""
    return _clean(_solve_kernel(*_normal_equations(x, y, size, margin, edge_r), gamma))


def _support_threshold(kernel: torch.Tensor, iteration: int) -> float:
    """Xu and Jia's "first significant jump": the kernel's values sorted, the first one followed
    by a rise of more than max / (2 size (iteration + 1)); values above it are the support."""
    v = torch.sort(kernel.flatten()).values
    jumps = torch.nonzero(v[1:] - v[:-1] > float(kernel.max()) / (2 * kernel.shape[0] * (iteration + 1)))
    return float(v[int(jumps[0])]) if len(jumps) else 0.0


def _refine(y: torch.Tensor, kernel: torch.Tensor, s: EstimationSettings, lam: float) -> torch.Tensor:
    """Iterative support detection (Xu and Jia 2010, section 4.2) at the finest scale: the kernel
    solved again, ``s.refine_rounds`` times against a fresh latent image, with an L1 penalty of
    weight ``s.refine_weight`` (by reweighted least squares) on its pixels outside its detected
    support, up to five times per round as the support grows more selective. Clears the streaks
    and specks an L2-regularised kernel picks up from edges of one direction or from noise, while
    keeping faint but connected parts of the path (a hard threshold cuts those)."""
    size = kernel.shape[0]
    k = kernel
    for _ in range(s.refine_rounds):
        padded = taper(y, k, size)
        t, b = _normal_equations(_latent(padded, k, lam, s.beta_max), padded, size, size, s.edge_r)
        for i in range(5):
            outside = k <= _support_threshold(k, i)
            weights = torch.where(outside, s.refine_weight / k.abs().clamp(min=1e-4), torch.zeros_like(k))
            new = _solve_kernel(t, b, s.gamma + weights, start=k, cg_steps=30).clamp(min=0)
            new = new / new.sum()
            change = float((new - k).norm() / k.norm())
            k = new
            if change < 1e-3:
                break
    return centre_kernel(_clean(k))


def _resize(image: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(image[None, None], size=shape, mode="bilinear", align_corners=False, antialias=True)[0, 0]


def _resize_kernel(kernel: torch.Tensor, size: int) -> torch.Tensor:
    if kernel.shape[0] == size:
        return kernel
    k = F.interpolate(kernel[None, None].float(), size=(size, size), mode="bilinear", align_corners=True)[0, 0]
    return normalise_kernel(k.double())


def _scales(kernel_size: int) -> list[int]:
    """Odd kernel sizes from 3 up to ``kernel_size``, each about sqrt(2) times the last."""
    sizes = [kernel_size]
    while sizes[-1] > 3:
        nxt = max(3, int(round(sizes[-1] / math.sqrt(2))) | 1)
        sizes.append(nxt if nxt < sizes[-1] else sizes[-1] - 2)
    return sizes[::-1]


def _estimate_on(square: np.ndarray, s: EstimationSettings, tick: Callable[[], None], *,
                 vertical: bool = False) -> torch.Tensor:
    """The kernel of one (side, side) luma square, coarse to fine, from a start of two pixels
    side by side (``vertical``: one above the other)."""
    side = square.shape[0]
    y_full = torch.from_numpy(np.ascontiguousarray(square)).to(torch.float64)
    kernel = torch.zeros(3, 3, dtype=torch.float64)
    if vertical:
        kernel[0:2, 1] = 0.5
    else:
        kernel[1, 0:2] = 0.5  # Pan et al.'s start: two pixels; the first scale finds the direction
    lam = s.lam
    for size in _scales(s.kernel_size):
        n = max(2 * size + 1, round(side * size / s.kernel_size))
        y = _resize(y_full, (n, n)) if n != side else y_full
        kernel = _resize_kernel(kernel, size)
        for _ in range(s.iterations):
            padded = taper(y, kernel, size)
            x = _latent(padded, kernel, lam, s.beta_max)
            kernel = _kernel_step(x, padded, size, s.gamma, size, s.edge_r)
        lam = max(lam / 1.1, 1e-4)
        kernel = centre_kernel(kernel)
        tick()
    if _refines(s):
        kernel = _refine(y_full, kernel, s, lam)
        tick()
    return kernel


def _refines(s: EstimationSettings) -> bool:
    return s.refine_weight > 0 and s.refine_rounds > 0


def kernel_agreement(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor) -> float:
    """Normalised cross-correlation of two same-sized kernels at their best relative shift,
    0 (nothing in common) to 1 (the same up to a shift)."""
    ka, kb = normalise_kernel(a), normalise_kernel(b)
    n = ka.shape[0]
    corr = F.conv2d(F.pad(ka[None, None], (n // 2,) * 4), kb[None, None])[0, 0]
    return float(corr.max() / (ka.norm() * kb.norm()))


def estimate_kernel(image: np.ndarray, settings: EstimationSettings | None = None, *,
                    on_progress: Callable[[int, int], None] | None = None) -> KernelEstimate:
    """Estimate the blur kernel of ``image``: (H,W) or (H,W,C) float in [0,1], at least
    ``2 * kernel_size`` px on each side (``ValueError`` otherwise). ``on_progress(done, total)``
    after each scale of each region and after its refinement."""
    s = settings or EstimationSettings()
    luma = luminance(image)
    if min(luma.shape) < 2 * s.kernel_size:
        raise ValueError(f"image {luma.shape[1]}x{luma.shape[0]} is too small for a {s.kernel_size} px kernel")
    side = min(s.region, *luma.shape)
    count = 2 if s.check else 1
    if count == 2 and max(luma.shape) < 2 * side:
        # two squares side by side, each still 8x the kernel (on 256 px crops, two squares of 128
        # pinned a 31 px kernel down far worse than one of 256); else one square and no check
        half = min(side, max(luma.shape) // 2)
        side, count = (half, 2) if half >= 8 * s.kernel_size else (side, 1)
    regions = textured_regions(luma, side, count)
    searches = 2 if s.check else len(regions)
    total = searches * (len(_scales(s.kernel_size)) + _refines(s))  # a step per scale, one to refine
    done = 0

    def tick() -> None:
        nonlocal done
        done += 1
        if on_progress is not None:
            on_progress(done, total)

    kernels = [_estimate_on(luma[t : t + n, l : l + n], s, tick) for t, l, n in regions]
    if s.check and len(regions) == 1:
        # no room for a second square: the same square searched again from the other start
        t, l, n = regions[0]
        kernels.append(_estimate_on(luma[t : t + n, l : l + n], s, tick, vertical=True))
    agreement = kernel_agreement(kernels[0], kernels[1]) if len(kernels) == 2 else None
    checked = None if agreement is None else ("regions" if len(regions) == 2 else "starts")
    extents = [kernel_extent(k) for k in kernels]
    pick = 1 if s.prefer_compact and len(kernels) == 2 and extents[1] < extents[0] else 0
    log.debug("kernel: extents %s px (using %d), agreement %s (%s) over regions %s", [round(e, 1) for e in extents],
              pick, agreement, checked, regions)
    return KernelEstimate(kernels[pick].float().numpy(), regions[pick if len(regions) == 2 else 0], agreement,
                          extents[pick], s.min_agreement, s.min_extent, checked)
