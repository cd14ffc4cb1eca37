"""What happens besides blur: Poisson-Gaussian sensor noise, clipped highlights, the tone curve, JPEG."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image

from ..errors import ConfigError
from .color import linear_to_srgb


def _range(value: Sequence[float], name: str, lo: float, hi: float) -> tuple[float, float]:
    if len(value) != 2:
        raise ConfigError(f"{name} must be a (low, high) pair, got {value!r}")
    a, b = float(value[0]), float(value[1])
    if not lo <= a <= b <= hi:
        raise ConfigError(f"{name} must satisfy {lo} <= low <= high <= {hi}, got {value!r}")
    return a, b


def _prob(value: float, name: str) -> None:
    if not 0 <= value <= 1:
        raise ConfigError(f"{name} must be a probability in [0, 1], got {value!r}")


NOISE_MODELS = ("clipped-linear", "zero-mean")


@dataclass(frozen=True)
class Degradation:
    """What happens besides blur, with its random ranges. Defaults: a mix of clean and
    phone-like photos.

    Noise (probability ``noise_prob``) is Poisson-Gaussian in linear light, before the tone
    curve, as in a raw sensor: ``gain * Poisson(x / gain) + N(0, read_sigma^2)``, so its
    variance is ``gain * x + read_sigma^2``. ``shot_gain`` and ``read_sigma`` are drawn
    log-uniformly (uniformly where the low end is 0); values are in units of the white level.

    Highlights (probability ``clip_prob``): before blurring, pixels whose brightest channel is
    above ``clip_threshold`` (linear) are scaled up, smoothly, by up to a factor drawn from
    ``clip_scale`` at full white, standing for lights a camera clipped; after the blur everything
    is clipped at 1, so lights smear into saturated streaks as in real photos. The sharp target
    gets the same scaling and clipping, without noise.

    JPEG (probability ``jpeg_prob``), quality drawn from ``jpeg_quality`` (inclusive), 4:2:0 as
    cameras write it, applied last to the blurry image only.

    ``noise_model`` says how the noise meets the black and white levels:

    ``clipped-linear`` (the original model, kept for the validation sets and old recipes): the
    noise is added in linear light and the result clipped to [0, 1]. Clipping zero-mean noise
    at 0 makes it positive-mean in the shadows, and the sRGB curve multiplies that by up to
    12.92: a dark area comes out several levels brighter than its target. A network trained on
    it learns to darken whatever it is given (``benchmarks/synth_bias.py`` measures this).
    ``zero-mean``: the same Poisson-Gaussian standard deviation, carried to sRGB values by the
    curve's slope, drawn from a normal distribution truncated symmetrically about the pixel's
    value so that it stays inside [0, 1]. Zero-mean in the values the network sees, so noise
    teaches no brightness change; near black and white it is weaker, as a clipped sensor's is.
    """

    noise_prob: float = 0.8
    shot_gain: tuple[float, float] = (1e-4, 4e-3)
    read_sigma: tuple[float, float] = (5e-4, 5e-3)
    clip_prob: float = 0.25
    clip_scale: tuple[float, float] = (1.5, 4.0)
    clip_threshold: float = 0.6
    jpeg_prob: float = 0.5
    jpeg_quality: tuple[int, int] = (60, 95)
    noise_model: Literal["clipped-linear", "zero-mean"] = "clipped-linear"

    def __post_init__(self) -> None:
        if self.noise_model not in NOISE_MODELS:
            raise ConfigError(f"noise_model must be one of {', '.join(NOISE_MODELS)}, got {self.noise_model!r}")
        for name in ("noise_prob", "clip_prob", "jpeg_prob"):
            _prob(getattr(self, name), name)
        # JSON turns tuples into lists; keep the dataclass hashable
        object.__setattr__(self, "shot_gain", _range(self.shot_gain, "shot_gain", 0, 1))
        object.__setattr__(self, "read_sigma", _range(self.read_sigma, "read_sigma", 0, 1))
        object.__setattr__(self, "clip_scale", _range(self.clip_scale, "clip_scale", 1, 1000))
        q = _range(self.jpeg_quality, "jpeg_quality", 1, 100)
        object.__setattr__(self, "jpeg_quality", (int(q[0]), int(q[1])))
        if not 0 < self.clip_threshold < 1:
            raise ConfigError(f"clip_threshold must be in (0, 1), got {self.clip_threshold!r}")


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    if lo <= 0 or lo == hi:
        return float(rng.uniform(lo, hi))
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def add_poisson_gaussian_noise(
    linear: np.ndarray, rng: np.random.Generator, *, gain: float, read_sigma: float
) -> np.ndarray:
    """Sensor noise in linear light: ``gain * Poisson(x / gain) + N(0, read_sigma^2)``.

    Mean x, variance ``gain * x + read_sigma^2`` (negatives in x count as 0 photons). ``gain``
    is the white level's share of one photo-electron (0: no shot noise). Returns float32,
    unclipped.
    """
    x = np.maximum(np.asarray(linear, dtype=np.float32), 0)
    out = (rng.poisson(x / gain) * gain).astype(np.float32) if gain > 0 else x.copy()
    if read_sigma > 0:
        out += read_sigma * rng.standard_normal(x.shape, dtype=np.float32)
    return out


def srgb_slope(linear: np.ndarray) -> np.ndarray:
    """d sRGB / d linear of the sRGB curve at ``linear`` (>= 0): 12.92 on the toe, then the
    power law's slope (continuous at the knee, ~12.7). Float32, same shape."""
    x = np.maximum(np.asarray(linear, dtype=np.float32), 0.0031308)
    return np.where(np.asarray(linear) <= 0.0031308, np.float32(12.92),
                    (1.055 / 2.4) * x ** (1 / 2.4 - 1)).astype(np.float32)


def add_zero_mean_noise(
    linear: np.ndarray, rng: np.random.Generator, *, gain: float, read_sigma: float
) -> np.ndarray:
    """The ``zero-mean`` noise model: sRGB values of ``linear`` plus noise of the
    Poisson-Gaussian standard deviation ``sqrt(gain * x + read_sigma^2)`` (linear light, at the
    clipped value x) times the curve's slope there, truncated to +-min(v, 1 - v) about the
    pixel's sRGB value v: a symmetric truncation of a symmetric law keeps the mean at v, and the
    result needs no clipping. ``linear``: (H,W,3), any values (clipped to [0, 1] first).
    Returns float32 sRGB values in [0, 1].
    """
    x = np.clip(np.asarray(linear, dtype=np.float32), 0, 1)
    v = linear_to_srgb(x)
    sd = np.sqrt(gain * x + read_sigma**2) * srgb_slope(x)
    n = sd * rng.standard_normal(x.shape, dtype=np.float32)
    room = np.minimum(v, 1 - v)
    return np.clip(v + np.clip(n, -room, room), 0, 1).astype(np.float32)


def boost_highlights(linear: np.ndarray, scale: float, threshold: float) -> np.ndarray:
    """Scale near-white pixels up (linear light), standing for light sources a camera clipped.

    A pixel's factor rises smoothly from 1, where its brightest channel is ``threshold``, to
    ``scale`` at 1 (hue kept: all channels are scaled alike). Pixels below stay exactly as they
    were. Returns float32 (H,W,3), values may exceed 1.
    """
    m = np.asarray(linear, dtype=np.float32).max(axis=-1, keepdims=True)
    w = np.clip((m - threshold) / (1 - threshold), 0, 1)
    w = w * w * (3 - 2 * w)  # smoothstep: no visible edge where the boost starts
    return (linear * (1 + (scale - 1) * w)).astype(np.float32)


def jpeg_roundtrip(srgb: np.ndarray, quality: int) -> np.ndarray:
    """Encode (H,W,3) sRGB [0,1] as JPEG (Pillow, 4:2:0, in memory) and decode it again."""
    u8 = np.clip(np.rint(np.asarray(srgb) * 255), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(u8).save(buf, format="JPEG", quality=int(quality), subsampling="4:2:0")
    buf.seek(0)
    with Image.open(buf) as img:
        return np.asarray(img.convert("RGB"), dtype=np.float32) / 255


def apply_degradation(
    blurry_linear: np.ndarray, rng: np.random.Generator, cfg: Degradation, *, record: dict | None = None
) -> np.ndarray:
    """Noise, clipping, tone curve and JPEG for a blurred image in linear light.

    Order: Poisson-Gaussian noise in linear light (raw-like), clip to [0,1] (the sensor's
    white and black), sRGB curve, then JPEG; with ``cfg.noise_model == "zero-mean"`` the noise
    is added after the curve, zero-mean (``add_zero_mean_noise``). Highlight scaling is not here: it has to happen
    before the blur (``boost_highlights``; ``synthesize_pair`` does it with this ``cfg``).
    ``record``, if given, receives what was drawn (JSON-able). Returns float32 (H,W,3) sRGB
    in [0,1].
    """
    x = np.asarray(blurry_linear, dtype=np.float32)
    noise = None
    if rng.random() < cfg.noise_prob:
        noise = {
            "shot_gain": _log_uniform(rng, *cfg.shot_gain),
            "read_sigma": _log_uniform(rng, *cfg.read_sigma),
        }
    if noise is not None and cfg.noise_model == "zero-mean":
        out = add_zero_mean_noise(x, rng, gain=noise["shot_gain"], read_sigma=noise["read_sigma"])
    else:
        if noise is not None:
            x = add_poisson_gaussian_noise(x, rng, gain=noise["shot_gain"], read_sigma=noise["read_sigma"])
        out = linear_to_srgb(np.clip(x, 0, 1))
    quality = None
    if rng.random() < cfg.jpeg_prob:
        quality = int(rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1))
        out = jpeg_roundtrip(out, quality)
    if record is not None:
        record.update(noise=noise, jpeg_quality=quality)
    return np.clip(out, 0, 1).astype(np.float32)
