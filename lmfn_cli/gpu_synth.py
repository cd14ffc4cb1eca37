"""Blur synthesis in torch, batched, on any device: (blurry, sharp) training batches made where
the network trains (CUDA on a GPU machine, the CPU in tests), from sharp photos held as uint8
tensors on that device.

It follows ``lmfn_cli.synth.synthesize_pair`` for the *uniform* blur sources, in the same order:

    sharp sRGB crop (patch + k - 1 px: the blur sees real pixels, never padding)
    -> random flip / rotation (one of 8)
    -> linear light
    -> sometimes: highlights scaled above 1 (``synth.boost_highlights``)
    -> blur by a kernel from a bank, in a random one of its 8 orientations
       (valid region only: the output is the patch, each pixel blurred from real pixels)
    -> Poisson-Gaussian noise in linear light, per-sample gain and read noise
    -> clip to [0,1] -> sRGB (-> 8-bit levels)

The kernel bank (``build_kernel_bank``) is drawn once, on the CPU, by ``synth``'s own numpy
generators (random camera-shake trajectories, USRNet kernels, real gyro recordings), in
``SynthConfig``'s proportions of those three sources, renormalised; ``load_or_build_kernel_bank``
caches it in a ``.npz`` file with the parameters it was drawn with.

What this leaves out, compared with ``synth.synthesize_pair``:

- the spatially varying sources (``gyro_homography``, ``camera_path``: 35% of ``synth``'s
  default mixture): every pair here is blurred by one uniform kernel;
- JPEG: there is no JPEG encoder on a GPU, so no blurry image here carries JPEG artefacts
  (``synth`` gives half of its pairs some). Mix in pairs made by ``lmfn synth`` if that matters.

Only the training share of the measured kernels may go into a training bank:
``synth.KernelBank.split('train')`` leaves out USRNet's motion kernels 8-11 and the gyro
recording gyro_04, which blur the validation sets.

Images are float32 (B,3,H,W) in [0,1] unless a docstring says otherwise; kernels (B,1,k,k)
float32, k odd, >= 0, summing to 1, centred on the middle pixel.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from . import synth
from .errors import ConfigError, FileProblem
from .files import atomic_path

log = logging.getLogger(__name__)

__all__ = [
    "UNIFORM_SOURCES",
    "srgb_to_linear",
    "linear_to_srgb",
    "add_zero_mean_noise",
    "uniform_source_weights",
    "build_kernel_bank",
    "kernel_bank_params",
    "KernelBankFile",
    "load_kernel_bank",
    "load_or_build_kernel_bank",
    "dihedral",
    "random_dihedral",
    "blur_batch",
    "add_noise",
    "boost_highlights",
    "make_batch",
]

UNIFORM_SOURCES = ("trajectory", "usrnet", "gyro", "none")
"""The blur sources of ``synth.SOURCES`` that are one kernel for the whole image."""

BANK_FORMAT = "lmfn-kernel-bank/1"


# --------------------------------------------------------------------------------------------
# sRGB transfer curves (the same formulas as synth.srgb_to_linear / linear_to_srgb)
# --------------------------------------------------------------------------------------------


def srgb_to_linear(x: torch.Tensor) -> torch.Tensor:
    """sRGB-encoded values -> linear light (IEC 61966-2-1), any shape, float in, same dtype out.

    As ``synth.srgb_to_linear``: values above 1 follow the power law, below 0 the linear toe.
    """
    curve = ((torch.clamp(x, min=0.04045) + 0.055) / 1.055) ** 2.4
    return torch.where(x <= 0.04045, x / 12.92, curve)


def linear_to_srgb(x: torch.Tensor) -> torch.Tensor:
    """Linear light -> sRGB-encoded values, the inverse of ``srgb_to_linear``."""
    curve = 1.055 * torch.clamp(x, min=0.0031308) ** (1 / 2.4) - 0.055
    return torch.where(x <= 0.0031308, 12.92 * x, curve)


# --------------------------------------------------------------------------------------------
# The kernel bank
# --------------------------------------------------------------------------------------------


def uniform_source_weights(cfg: synth.SynthConfig, bank: synth.KernelBank | None) -> dict[str, float]:
    """``cfg``'s weights of the uniform sources, without those ``bank`` has no data for,
    renormalised to sum to 1. Raises ``ConfigError`` when none is left, and for what this batched
    synthesis does not do yet: barely blurred pairs (``w_small``), blur in sRGB values
    (``srgb_blur_prob``) and unblurred pairs as exact identities (``none_target``) are
    ``synth.synthesize_pair``'s only (the CPU path of ``lmfn train``)."""
    if cfg.w_small > 0 or cfg.srgb_blur_prob > 0 or cfg.none_target != "clean":
        raise ConfigError("w_small, srgb_blur_prob and none_target are not in the GPU batch synthesis yet: "
                          "train with pairs made on the CPU (lmfn train --sharp, or lmfn synth)")
    weights = {s: cfg.source_weights()[s] for s in UNIFORM_SOURCES}
    if bank is None or not bank.usrnet:
        weights["usrnet"] = 0.0
    if bank is None or not bank.gyro:
        weights["gyro"] = 0.0
    total = sum(weights.values())
    if total <= 0:
        raise ConfigError("no uniform blur source is available (trajectory, usrnet, gyro, none all off)")
    return {s: w / total for s, w in weights.items()}


def _fit(kernel: np.ndarray, size: int) -> np.ndarray:
    """Zero-pad (or, if larger, centre-crop and renormalise) a square odd kernel to size x size."""
    k = np.asarray(kernel, dtype=np.float32)
    n = k.shape[0]
    if n > size:
        c = (n - size) // 2
        log.warning("a %dx%d kernel cropped to %dx%d", n, n, size, size)
        k = k[c : c + size, c : c + size]
        return (k / k.sum()).astype(np.float32)
    p = (size - n) // 2
    return np.pad(k, p)


def _bank_fingerprint(bank: synth.KernelBank | None) -> dict:
    """What identifies a KernelBank's data: USRNet ids and a SHA-256 of the kernels and gyro data."""
    if bank is None:
        return {"usrnet_ids": [], "gyro": [], "sha256": None}
    h = hashlib.sha256()
    for k in bank.usrnet:
        h.update(np.ascontiguousarray(k, dtype=np.float32).tobytes())
    for g in bank.gyro:
        h.update(g.name.encode())
        h.update(np.ascontiguousarray(g.time_s).tobytes())
        h.update(np.ascontiguousarray(g.angular_velocity).tobytes())
        h.update(repr(g.exposure_s).encode())
    ids = list(bank.usrnet_ids or range(len(bank.usrnet)))
    return {"usrnet_ids": ids, "gyro": [g.name for g in bank.gyro], "sha256": h.hexdigest()}


def kernel_bank_params(
    n: int,
    size: int,
    seed: int,
    bank: synth.KernelBank | None,
    split: Literal["train", "val", "all"] = "train",
    *,
    cfg: synth.SynthConfig | None = None,
    nominal_side: int = 512,
) -> dict:
    """The parameters a bank is drawn with, JSON-able; a cached bank is reused only if they match.

    Includes the mixture weights, the ranges that shape the kernels and a fingerprint of the
    measured data after ``split``.
    """
    cfg = cfg or synth.SynthConfig()
    part = bank.split(split) if bank is not None else None
    return {
        "format": BANK_FORMAT,
        "n": int(n),
        "size": int(size),
        "seed": int(seed),
        "split": split,
        "weights": uniform_source_weights(cfg, part),
        "min_extent": float(cfg.min_extent),
        "focal_rel": list(cfg.focal_rel),
        "gyro_exposure_s": list(cfg.gyro_exposure_s),
        "nominal_side": int(nominal_side),
        "data": _bank_fingerprint(part),
    }


def _draw_bank(
    n: int, size: int, seed: int, bank: synth.KernelBank | None, split: str, cfg: synth.SynthConfig, nominal_side: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(kernels (n,size,size) float32, source index into UNIFORM_SOURCES (n,) int8, detail (n,)
    int16: the USRNet kernel's id in the .mat file or the gyro recording's index in the split
    bank, -1 otherwise). Kernel i is drawn with ``np.random.default_rng([seed, i])``."""
    if n < 1:
        raise ConfigError(f"a kernel bank needs n >= 1, got {n}")
    synth._check_kernel_size(size)
    if size < 5:
        raise ConfigError(f"kernel size must be >= 5, got {size}")
    part = bank.split(split) if bank is not None else None
    weights = uniform_source_weights(cfg, part)
    probs = np.array([weights[s] for s in UNIFORM_SOURCES])
    ids = list(part.usrnet_ids or range(len(part.usrnet))) if part is not None else []
    kernels = np.zeros((n, size, size), dtype=np.float32)
    sources = np.zeros(n, dtype=np.int8)
    detail = np.full(n, -1, dtype=np.int16)
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        s = int(rng.choice(len(UNIFORM_SOURCES), p=probs))
        name = UNIFORM_SOURCES[s]
        if name == "trajectory":
            k = synth.random_kernel(rng, size, None, min_extent=min(cfg.min_extent, size - 2))
        elif name == "usrnet":
            j = int(rng.integers(len(part.usrnet)))
            k, detail[i] = _fit(part.usrnet[j], size), ids[j]
        elif name == "gyro":
            j = int(rng.integers(len(part.gyro)))
            focal = float(rng.uniform(*cfg.focal_rel)) * nominal_side
            exposure = float(rng.uniform(*cfg.gyro_exposure_s))
            k = synth.gyro_kernel(
                part.gyro[j], rng, focal_px=focal, size=size, exposure_s=exposure, random_orientation=False
            )
            detail[i] = j
        else:
            k = np.zeros((size, size), dtype=np.float32)
            k[size // 2, size // 2] = 1.0
        kernels[i], sources[i] = k, s
    counts = {name: int((sources == j).sum()) for j, name in enumerate(UNIFORM_SOURCES)}
    log.info("drew %d %dx%d kernels (%s split): %s", n, size, size, split, counts)
    return kernels, sources, detail


def build_kernel_bank(
    n: int,
    size: int = 31,
    seed: int = 0,
    bank: synth.KernelBank | None = None,
    split: Literal["train", "val", "all"] = "train",
    *,
    cfg: synth.SynthConfig | None = None,
    nominal_side: int = 512,
) -> torch.Tensor:
    """Draw ``n`` uniform blur kernels with ``synth``'s generators: (n,1,size,size) float32 CPU.

    Each kernel comes from one source, drawn in ``cfg``'s proportions (``uniform_source_weights``):
    a random camera-shake trajectory (``synth.random_kernel``, extent U(min_extent, size - 2));
    one of ``bank.split(split)``'s USRNet kernels, zero-padded to ``size``; or a real gyro
    recording of that split (``synth.gyro_kernel``, focal length ``U(cfg.focal_rel)`` times
    ``nominal_side`` px, the longer side of a typical training photo, exposure
    ``U(cfg.gyro_exposure_s)``). Kernels are stored in one orientation; ``make_batch`` draws one
    of 8 per use. Sources with no data in ``bank`` are left out. Kernel i depends only on
    ``(seed, i)`` and the parameters. Training banks must use ``split='train'``.
    """
    cfg = cfg or synth.SynthConfig()
    kernels, _, _ = _draw_bank(n, size, seed, bank, split, cfg, nominal_side)
    return torch.from_numpy(kernels)[:, None]


@dataclass(frozen=True)
class KernelBankFile:
    """A kernel bank as stored: ``kernels`` (n,1,k,k) float32 CPU; ``sources`` (n,) int8 index into
    ``UNIFORM_SOURCES``; ``detail`` (n,) int16 (USRNet id, gyro index into
    ``params['data']['gyro']``, or -1); ``params`` as from ``kernel_bank_params``."""

    kernels: torch.Tensor
    sources: np.ndarray
    detail: np.ndarray
    params: dict

    def source_counts(self) -> dict[str, int]:
        return {name: int((self.sources == j).sum()) for j, name in enumerate(UNIFORM_SOURCES)}


def load_kernel_bank(path: str | Path) -> KernelBankFile:
    """Read a bank written by ``load_or_build_kernel_bank`` (no pickle). Raises ``FileProblem``."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            params = json.loads(bytes(z["params"]).decode("utf-8"))
            kernels = np.asarray(z["kernels"], dtype=np.float32)
            sources, detail = np.asarray(z["sources"]), np.asarray(z["detail"])
    except FileNotFoundError:
        raise FileProblem(path, "no such kernel bank") from None
    except (OSError, ValueError, KeyError, UnicodeDecodeError) as exc:
        raise FileProblem(path, f"not a readable kernel bank ({exc})") from exc
    if not isinstance(params, dict) or params.get("format") != BANK_FORMAT:
        raise FileProblem(path, f"not an {BANK_FORMAT} file")
    if kernels.ndim != 3 or kernels.shape[1] != kernels.shape[2] or len(sources) != len(kernels):
        raise FileProblem(path, f"kernel array of shape {kernels.shape} is not (n,k,k)")
    return KernelBankFile(torch.from_numpy(kernels)[:, None], sources, detail, params)


def load_or_build_kernel_bank(
    path: str | Path,
    n: int,
    size: int = 31,
    seed: int = 0,
    bank: synth.KernelBank | None = None,
    split: Literal["train", "val", "all"] = "train",
    *,
    cfg: synth.SynthConfig | None = None,
    nominal_side: int = 512,
) -> torch.Tensor:
    """``build_kernel_bank``, cached in ``path`` (.npz): reused when its stored parameters
    (``kernel_bank_params``) equal these, else drawn again and the file replaced (atomically).
    Returns (n,1,size,size) float32 CPU."""
    path = Path(path)
    cfg = cfg or synth.SynthConfig()
    params = kernel_bank_params(n, size, seed, bank, split, cfg=cfg, nominal_side=nominal_side)
    if path.exists():
        try:
            stored = load_kernel_bank(path)
        except FileProblem as exc:
            log.warning("%s; drawing the kernel bank again", exc)
        else:
            if stored.params == json.loads(json.dumps(params)):
                log.info("kernel bank loaded from %s", path)
                return stored.kernels
            log.info("%s was drawn with other parameters; drawing it again", path)
    kernels, sources, detail = _draw_bank(n, size, seed, bank, split, cfg, nominal_side)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:  # a file object: numpy would append .npz to a name
            np.savez_compressed(
                fh,
                kernels=kernels,
                sources=sources,
                detail=detail,
                params=np.frombuffer(json.dumps(params, sort_keys=True).encode("utf-8"), dtype=np.uint8),
            )
    log.info("kernel bank written to %s", path)
    return torch.from_numpy(kernels)[:, None]


# --------------------------------------------------------------------------------------------
# Orientation, blur, noise, highlights
# --------------------------------------------------------------------------------------------


def dihedral(x: torch.Tensor, k: int) -> torch.Tensor:
    """One of the 8 rotations/reflections of the last two (square) dims, as ``synth._dihedral``:
    ``k % 4`` quarter turns (counter-clockwise, ``np.rot90``), then a left-right flip if k >= 4."""
    x = torch.rot90(x, k % 4, dims=(-2, -1))
    return torch.flip(x, dims=(-1,)) if k >= 4 else x


def _flag_table() -> list[tuple[bool, bool, bool]]:
    """For k in 0..7, the (transpose, flip rows, flip columns) that, applied in that order, equal
    ``dihedral(., k)``: found by trying all 8 combinations on a test array."""
    a = torch.arange(9).reshape(3, 3)
    table = []
    for k in range(8):
        target = dihedral(a, k)
        for t in (False, True):
            for fr in (False, True):
                for fc in (False, True):
                    b = a.transpose(-2, -1) if t else a
                    b = b.flip(-2) if fr else b
                    b = b.flip(-1) if fc else b
                    if torch.equal(b, target) and len(table) == k:
                        table.append((t, fr, fc))
    return table


_FLAGS = torch.tensor(_flag_table(), dtype=torch.bool)  # (8, 3)


def random_dihedral(x: torch.Tensor, orientation: torch.Tensor | Sequence[int]) -> torch.Tensor:
    """Sample i of ``x`` (B,...,S,S) in orientation ``orientation[i]`` (0..7, as ``dihedral``).

    Done as an optional transpose, row flip and column flip of the whole batch, each kept per
    sample by ``torch.where``: no per-sample ops, and no host-device synchronisation (a CPU
    ``orientation`` travels to the device in one non-blocking copy).
    """
    orient = torch.as_tensor(orientation, dtype=torch.int64)
    if orient.shape != (x.shape[0],):
        raise ConfigError(f"need one orientation per sample, got {tuple(orient.shape)} for {x.shape[0]}")
    if x.shape[-1] != x.shape[-2]:
        raise ConfigError(f"dihedral orientations need square images, got {tuple(x.shape[-2:])}")
    flags = _FLAGS.to(orient.device)[orient].to(x.device, non_blocking=True)
    shape = (-1,) + (1,) * (x.dim() - 1)
    x = torch.where(flags[:, 0].view(shape), x.transpose(-2, -1), x)
    x = torch.where(flags[:, 1].view(shape), x.flip(-2), x)
    return torch.where(flags[:, 2].view(shape), x.flip(-1), x)


def _fast_len(n: int) -> int:
    """The smallest m >= n whose only prime factors are 2, 3 and 5 (quick FFT sizes)."""
    m = n
    while True:
        r = m
        for p in (2, 3, 5):
            while r % p == 0:
                r //= p
        if r == 1:
            return m
        m += 1


def blur_batch(
    sharp_linear: torch.Tensor, kernels: torch.Tensor, *, method: Literal["fft", "conv"] = "fft"
) -> torch.Tensor:
    """Blur sample i of ``sharp_linear`` (B,C,H,W) by ``kernels[i]`` (B,1,kh,kw); valid region only.

    Returns (B,C,H-kh+1,W-kw+1) float32: output pixel (y, x) is input pixel (y + kh//2, x + kw//2)
    blurred, by true convolution with the kernel centre at (kh//2, kw//2), the convention of
    ``synth.blur_with_kernel`` (a delta below the centre moves content down), with no padding:
    every output pixel sees only real input pixels. Call it on linear light.

    ``fft``: one real FFT per image at a 2-3-5 size >= H, W (circular wrap falls outside the
    valid region); the faster on a 2-core CPU for 31 px kernels and 160 px outputs, and on a GPU
    (cuFFT) far cheaper than a 31x31 depthwise conv. ``conv``: a grouped ``conv2d`` with the
    flipped kernels. Both run in float32 whatever the input dtype.
    """
    if sharp_linear.dim() != 4 or kernels.dim() != 4 or kernels.shape[1] != 1:
        raise ConfigError(
            f"need images (B,C,H,W) and kernels (B,1,kh,kw), got {tuple(sharp_linear.shape)} and {tuple(kernels.shape)}"
        )
    b, c, h, w = sharp_linear.shape
    kh, kw = kernels.shape[-2:]
    if kernels.shape[0] != b or kh > h or kw > w:
        raise ConfigError(f"{kernels.shape[0]} kernels of {kh}x{kw} for {b} images of {h}x{w}")
    x = sharp_linear.float()
    k = kernels.to(device=x.device, dtype=torch.float32)
    if method == "conv":
        weight = torch.flip(k, dims=(-2, -1)).repeat_interleave(c, dim=0)
        out = F.conv2d(x.reshape(1, b * c, h, w), weight, groups=b * c)
        return out.reshape(b, c, h - kh + 1, w - kw + 1)
    if method != "fft":
        raise ConfigError(f"method must be fft or conv, got {method!r}")
    n1, n2 = _fast_len(h), _fast_len(w)
    spec = torch.fft.rfft2(x, s=(n1, n2)) * torch.fft.rfft2(k, s=(n1, n2))
    return torch.fft.irfft2(spec, s=(n1, n2))[..., kh - 1 : h, kw - 1 : w]


def add_noise(
    linear: torch.Tensor, gain: torch.Tensor, read_sigma: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Sensor noise in linear light per sample: ``gain * Poisson(x / gain) + N(0, read^2)``.

    ``linear`` (B,C,H,W); ``gain``, ``read_sigma`` (B,) >= 0 (gain 0: no shot noise), as
    ``synth.add_poisson_gaussian_noise``; negatives in x count as 0 photons. ``generator`` must
    be on ``linear``'s device. Returns float32, unclipped.
    """
    x = torch.clamp(linear.float(), min=0)
    g = gain.to(x.device, torch.float32).view(-1, 1, 1, 1)
    r = read_sigma.to(x.device, torch.float32).view(-1, 1, 1, 1)
    shot = g > 0
    safe = torch.where(shot, g, torch.ones_like(g))
    photons = torch.poisson(x / safe, generator=generator)
    out = torch.where(shot, photons * safe, x)
    return out + r * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


def add_zero_mean_noise(
    linear: torch.Tensor, gain: torch.Tensor, read_sigma: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """``synth.add_zero_mean_noise`` per sample: the sRGB values of ``linear`` (B,C,H,W, clipped
    to [0, 1]) plus normal noise of deviation ``sqrt(gain * x + read^2)`` times the sRGB curve's
    slope, truncated symmetrically about each value to stay in [0, 1] (so zero-mean). ``gain``,
    ``read_sigma`` (B,) >= 0 (both 0: no noise). Returns float32 sRGB values in [0, 1]."""
    x = torch.clamp(linear.float(), 0, 1)
    g = gain.to(x.device, torch.float32).view(-1, 1, 1, 1)
    r = read_sigma.to(x.device, torch.float32).view(-1, 1, 1, 1)
    v = linear_to_srgb(x)
    slope = torch.where(x <= 0.0031308, torch.full_like(x, 12.92),
                        (1.055 / 2.4) * torch.clamp(x, min=0.0031308) ** (1 / 2.4 - 1))
    n = torch.sqrt(g * x + r * r) * slope * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    room = torch.minimum(v, 1 - v)
    return torch.clamp(v + torch.maximum(torch.minimum(n, room), -room), 0, 1)


def boost_highlights(linear: torch.Tensor, scale: torch.Tensor, threshold: float) -> torch.Tensor:
    """``synth.boost_highlights`` per sample: ``linear`` (B,3,H,W), ``scale`` (B,) >= 1 (1: none).

    A pixel's factor rises smoothly from 1, where its brightest channel is ``threshold``, to
    ``scale`` at 1; pixels below stay exactly as they were. Returns float32, may exceed 1.
    """
    m = linear.amax(dim=1, keepdim=True)
    w = torch.clamp((m - threshold) / (1 - threshold), 0, 1)
    w = w * w * (3 - 2 * w)
    s = scale.to(linear.device, linear.dtype).view(-1, 1, 1, 1)
    return linear * (1 + (s - 1) * w)


def _log_uniform(u: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    """Map U(0,1) draws to log-uniform on [lo, hi] (uniform where lo is 0 or lo == hi), as synth."""
    if lo <= 0 or lo == hi:
        return lo + (hi - lo) * u
    return torch.exp(math.log(lo) + (math.log(hi) - math.log(lo)) * u)


# --------------------------------------------------------------------------------------------
# Batches
# --------------------------------------------------------------------------------------------


def make_batch(
    photos: Sequence[torch.Tensor],
    batch: int,
    patch: int,
    generator: torch.Generator,
    kernel_bank: torch.Tensor,
    *,
    degradation: synth.Degradation | None = None,
    highlights: bool = True,
    quantize: bool = True,
    method: Literal["fft", "conv"] = "fft",
) -> tuple[torch.Tensor, torch.Tensor]:
    """A synthetic training batch: (blurry, sharp), each (B,3,patch,patch) float32 in [0,1].

    ``photos``: sharp sRGB photos, uint8 (3,H,W) tensors on one device (each side >= patch + k - 1),
    picked uniformly. ``kernel_bank`` (n,1,k,k) on that device (or the CPU: moved). Sample i: a
    random (patch + k - 1)-px square crop, a random flip/rotation, sometimes highlights
    (``degradation.clip_prob``), a random bank kernel in a random orientation, blur (valid region),
    noise with probability ``degradation.noise_prob`` (gain and read noise drawn log-uniformly
    from its ranges; ``degradation.noise_model`` as in ``synth``), clip, sRGB, and with ``quantize`` rounding to 8-bit levels as a saved photo
    would be. ``sharp`` is the same crop's centre, the blur's valid region, untouched (or, where
    highlights were boosted, clipped at white as the camera would have). No JPEG (see the module
    docstring; ``degradation.jpeg_*`` are ignored).

    ``generator`` is a CPU ``torch.Generator``: every draw comes from it (the per-pixel noise from
    a device generator seeded by it), so a batch is a pure function of its state; on CUDA it
    needs no host-device synchronisation.
    """
    deg = degradation or synth.Degradation()
    if not photos:
        raise ConfigError("make_batch needs at least one photo")
    if generator.device.type != "cpu":
        raise ConfigError("make_batch's generator must be a CPU torch.Generator")
    if batch < 1 or patch < 1:
        raise ConfigError(f"batch and patch must be >= 1, got {batch} and {patch}")
    if kernel_bank.dim() != 4 or kernel_bank.shape[1] != 1 or kernel_bank.shape[2] != kernel_bank.shape[3]:
        raise ConfigError(f"kernel bank must be (n,1,k,k), got {tuple(kernel_bank.shape)}")
    device = photos[0].device
    k = int(kernel_bank.shape[-1])
    crop = patch + k - 1
    for i, p in enumerate(photos):
        if p.dtype != torch.uint8 or p.dim() != 3 or p.shape[0] != 3:
            raise ConfigError(f"photo {i} must be a uint8 (3,H,W) tensor, got {p.dtype} {tuple(p.shape)}")
        if min(p.shape[1:]) < crop:
            raise ConfigError(f"photo {i} ({p.shape[1]}x{p.shape[2]}) is smaller than the {crop} px crop")

    def rand(n: int = batch) -> torch.Tensor:
        return torch.rand(n, generator=generator, dtype=torch.float64)

    which = torch.randint(len(photos), (batch,), generator=generator).tolist()
    u_y, u_x = rand().tolist(), rand().tolist()
    crops = []
    for i, j in enumerate(which):
        h, w = photos[j].shape[1:]
        y, x = int(u_y[i] * (h - crop + 1)), int(u_x[i] * (w - crop + 1))
        crops.append(photos[j][:, y : y + crop, x : x + crop])
    sharp_u8 = random_dihedral(torch.stack(crops), torch.randint(8, (batch,), generator=generator))
    kidx = torch.randint(kernel_bank.shape[0], (batch,), generator=generator)
    korient = torch.randint(8, (batch,), generator=generator)
    boost = (rand() < deg.clip_prob) if highlights else torch.zeros(batch, dtype=torch.bool)
    scale = torch.where(boost, deg.clip_scale[0] + (deg.clip_scale[1] - deg.clip_scale[0]) * rand(), 1.0)
    noisy = rand() < deg.noise_prob
    gain = torch.where(noisy, _log_uniform(rand(), *deg.shot_gain), 0.0)
    read = torch.where(noisy, _log_uniform(rand(), *deg.read_sigma), 0.0)
    noise_seed = int(torch.randint(2**62, (1,), generator=generator))
    device_gen = torch.Generator(device=device).manual_seed(noise_seed)
    # every per-sample number travels in one non-blocking copy: nothing here waits for the GPU
    params = torch.stack([scale, gain, read]).float().to(device, non_blocking=True)
    kidx = kidx.to(kernel_bank.device, non_blocking=True)

    sharp_srgb = sharp_u8.float() / 255
    linear = srgb_to_linear(sharp_srgb)
    hdr = boost_highlights(linear, params[0], deg.clip_threshold) if bool(boost.any()) else linear
    kernels = random_dihedral(kernel_bank.index_select(0, kidx).to(device, non_blocking=True), korient)
    blurred = blur_batch(hdr, kernels, method=method)
    if bool(noisy.any()) and deg.noise_model == "zero-mean":
        blurry = add_zero_mean_noise(blurred, params[1], params[2], device_gen)
    else:
        if bool(noisy.any()):
            blurred = add_noise(blurred, params[1], params[2], device_gen)
        blurry = linear_to_srgb(torch.clamp(blurred, 0, 1))
    if quantize:
        blurry = torch.round(blurry * 255) / 255
    r = k // 2
    sharp = sharp_srgb[..., r : r + patch, r : r + patch]
    if bool(boost.any()):
        hdr_c = hdr[..., r : r + patch, r : r + patch]
        changed = (hdr_c != linear[..., r : r + patch, r : r + patch]).any(dim=1, keepdim=True)
        sharp = torch.where(changed, linear_to_srgb(torch.clamp(hdr_c, 0, 1)), sharp)
    return blurry.clamp(0, 1).contiguous(), sharp.contiguous()

