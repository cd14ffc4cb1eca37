"""Deblurring by a blur kernel: ``lmfn deblur --method kernel|auto`` and ``--kernel FILE``.

`restore_with_method` runs one image through the kernel method: the kernel is the user's
(``kernel=``) or estimated from the photo (`kernel_estimation.estimate_kernel`), and the photo is
deconvolved by it per colour channel in the photo's own sRGB values. Where the estimate is not
usable (a sharp photo, or the two regions it is checked on disagree: moving subjects, depth, too
few edges), the photo is not deconvolved. The methods:

- ``blind``: the network alone (`inference.restore`); no estimation.
- ``kernel``: the estimated kernel, unless the photo looks sharp (kernel extent under
  `EstimationSettings.min_extent`, 2.5 px: the photo is returned unchanged, method ``none``) or
  the two kernels it was checked with differ (agreement under `KERNEL_MIN_AGREEMENT`, 0.75):
  those of two regions of the photo, or, on a photo under 2 x 8 x the kernel size on its long
  side (496 px for 31 px), those of one region searched from two starts
  (`KernelEstimate.checked`); an estimate that was not checked at all is not used: then the
  fallback.
- ``auto``: the same, but the kernel only when the estimate is confident
  (`KernelEstimate.usable`: two regions, agreement >= `EstimationSettings.min_agreement`, 0.9),
  else the fallback: a photo too small for two regions is never deconvolved by ``auto``.

The fallback (`KernelOptions.fallback`) is ``input`` (the default: the photo unchanged, method
``none``) or ``blind`` (the blind network). The input is the default because the blind network
does harm where there is little or no blur to remove (the shipped default darkens sharp photos:
30.5 dB on the validation photos' sharp crops, and -2.3 dB on 3 px lines blurred in sRGB values),
and the kernel method is asked for to do no harm where it cannot deblur (issue 29: identity >= 45
dB, no loss at 3 px).

The deconvolution (`KernelOptions.deconvolution`) is one of:

- ``network`` (the default: with estimated kernels it summed +10.9 dB over twelve rows of BSDS500
  training photos against TV's +7.2, and lost least where the estimate was wrong;
  ``benchmarks/results/kernel_method-train6-network-vs-tv.md``): a Wiener filter (`deconvolution.deconvolve` ``method="wiener"``) of the weight the
  non-blind network was trained with, then that network (`NonblindStage`, weights
  ``lmfn-nonblind-v2`` by default: LMFN trained by ``task = "nonblind"`` to remove the filter's
  ringing and noise and the errors of a slightly wrong kernel, `synth.nonblind`);
- ``tv``: total variation of weight `TV_PRIOR`, which rings less than a Wiener filter when the
  kernel is a little wrong;
- ``wiener``: the plain filter.

A kernel given by the user is always used (it is what they asked for).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from .deconvolution import DEFAULT_PRIOR, deconvolve, kernel_extent
from .errors import WeightsError
from .inference import Restored, level_scale, restore
from .kernel_estimation import EstimationSettings, KernelEstimate, estimate_kernel
from .model import LMFN
from .weights import REGISTRY, load_model, read_weights, resolve_weights

__all__ = ["DECONVOLUTIONS", "FALLBACKS", "KERNEL_MIN_AGREEMENT", "METHODS", "NONBLIND_NAME", "TV_PRIOR", "KernelOptions",
           "KernelRestored", "NonblindStage", "deblur_by_kernel", "decide", "deconvolve_with_network", "load_nonblind",
           "restore_with_method"]

log = logging.getLogger(__name__)

METHODS = ("blind", "kernel", "auto")
FALLBACKS = ("input", "blind")
"""What ``--method kernel|auto`` returns where it does not use a kernel: the photo unchanged, or
the blind network's result."""
DECONVOLUTIONS = ("network", "tv", "wiener")
NONBLIND_NAME = "lmfn-nonblind-v2"
"""The registry name of the default non-blind stage (``--deconvolution network``)."""
TV_PRIOR = 1.5e-3
"""Weight of the total-variation prior of the kernel method's deconvolution, chosen with the
method on 6 BSDS500 training photos (never the validation photos; `benchmarks/kernel_method.py
--photo-set train --deconvolution tv --prior P` measures one choice): with estimated kernels,
summed over ten rows, TV 1.5e-3 gained +8.5 dB, TV 5e-4 +5.3, Wiener 1e-2 +5.8 and Wiener 2e-3
(the textbook weight) -2.7: a stronger prior forgives a slightly wrong kernel."""
KERNEL_MIN_AGREEMENT = 0.75
"""``--method kernel`` takes its fallback (`KernelOptions.fallback`: the photo unchanged by
default) below this agreement of two regions."""


@dataclass(frozen=True)
class KernelOptions:
    """How an image is deblurred: ``method`` (blind, kernel or auto), a user ``kernel`` ((k,k)
    float, from `kernel_files.read_kernel`; implies the kernel method), the ``deconvolution``
    (network, tv or wiener), the ``prior`` weight of tv and wiener (the network's Wiener filter
    uses the weight it was trained with), the ``nonblind`` stage's weights (a registry name or a
    file), how kernels are estimated, and the ``fallback`` where no kernel is used (input or
    blind; `FALLBACKS`)."""

    method: str = "blind"
    kernel: np.ndarray | None = field(default=None, compare=False)
    prior: float = TV_PRIOR
    deconvolution: str = "network"
    nonblind: str = NONBLIND_NAME
    estimation: EstimationSettings = EstimationSettings()
    fallback: str = "input"

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, not {self.method!r}")
        if self.prior <= 0:
            raise ValueError(f"the deconvolution prior must be > 0, not {self.prior}")
        if self.deconvolution not in DECONVOLUTIONS:
            raise ValueError(f"deconvolution must be one of {', '.join(DECONVOLUTIONS)}, not {self.deconvolution!r}")
        if self.fallback not in FALLBACKS:
            raise ValueError(f"fallback must be one of {', '.join(FALLBACKS)}, not {self.fallback!r}")


@dataclass(frozen=True)
class KernelRestored:
    """`inference.Restored` plus what the kernel method did: ``method`` used (blind, kernel, or
    none: the photo looked sharp and is returned unchanged),
    ``kernel`` ((k,k) float32, or None when none was estimated or given), the ``estimate``
    (None for a given kernel or the blind method), and ``why`` it chose so (one line)."""

    restored: Restored
    method: str
    kernel: np.ndarray | None
    estimate: KernelEstimate | None
    why: str


def _float_colour(image: np.ndarray) -> tuple[np.ndarray, float]:
    """(H,W,C) image -> its colour channels as float64 in [0,1] (1 or 3 of them) and the scale."""
    scale = level_scale(image.dtype)
    colour = image[..., :3] if image.shape[2] >= 3 else image[..., :1]
    return colour.astype(np.float64) / scale, scale


def _on_colour(image: np.ndarray, transform: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """``image`` ((H,W) or (H,W,C), uint8, uint16 or float) with its colour channels replaced by
    ``transform`` of them ((H,W,n) float64 in [0,1] -> same shape, in [0,1]); same shape and
    dtype, integers rounded, alpha untouched."""
    image = np.asarray(image)
    flat = image.ndim == 2
    planes = image[..., None] if flat else image
    colour, scale = _float_colour(planes)
    n = colour.shape[2]
    result = np.asarray(transform(colour)).reshape(planes.shape[:2] + (n,))
    out = planes.copy()
    out[..., :n] = result.astype(out.dtype) if scale == 1.0 else np.round(result * scale).astype(out.dtype)
    return out[..., 0] if flat else out


@dataclass(frozen=True)
class NonblindStage:
    """The non-blind network: ``model`` takes the Wiener deconvolution (weight ``prior``) of a
    photo by its kernel and returns the photo deblurred; ``source`` is the weights file."""

    model: LMFN
    prior: float
    source: Path


@lru_cache(maxsize=4)
def _load_stage(weights: str, device: str) -> NonblindStage:
    path = resolve_weights(name=weights) if weights in REGISTRY else Path(weights)
    if not path.is_file():
        raise WeightsError(path, "does not exist (give a registry name such as "
                           f"{NONBLIND_NAME} or a weights file)")
    _, _, metadata = read_weights(path)
    if metadata.get("task") != "nonblind" or "wiener_prior" not in metadata:
        raise WeightsError(path, "is not a non-blind stage (its metadata has no task=nonblind and Wiener "
                           "prior: export it from a run with task = \"nonblind\")")
    try:
        prior = float(metadata["wiener_prior"])
    except ValueError:
        raise WeightsError(path, f"has an invalid Wiener prior {metadata['wiener_prior']!r}") from None
    if not prior > 0:
        raise WeightsError(path, f"has an invalid Wiener prior {prior}")
    return NonblindStage(load_model(path, device), prior, path)


def load_nonblind(weights: str | Path = NONBLIND_NAME, device: str = "cpu") -> NonblindStage:
    """The non-blind stage of ``weights`` (a registry name, bundled, cached or downloaded; or a
    weights file) on ``device``, loaded once per process. Raises ``WeightsError`` for a file
    that is missing, unreadable or not exported from a ``task = "nonblind"`` run."""
    return _load_stage(str(weights), str(device))


def deconvolve_with_network(image: np.ndarray, kernel: np.ndarray, stage: NonblindStage, *, tile: int | None = None,
                            overlap: int = 32, precision: str = "auto",
                            on_tile: Callable[[int, int], None] | None = None) -> Restored:
    """``image`` (as `deblur_by_kernel` takes it) deconvolved by ``kernel`` ((k,k)): a Wiener
    filter of the stage's weight in float, then the stage's network (``tile``, ``overlap``,
    ``precision`` and ``on_tile`` as `inference.restore`'s). Same shape and dtype; alpha kept."""
    done: list[Restored] = []

    def run(colour: np.ndarray) -> np.ndarray:
        # the network was trained on the float filter output, not on one rounded to 8 bits
        wiener = deconvolve(colour, kernel, prior=stage.prior, method="wiener").astype(np.float32)
        done.append(restore(stage.model, wiener, tile=tile, overlap=overlap, precision=precision, on_tile=on_tile))
        return done[0].pixels

    pixels = _on_colour(image, run)
    return Restored(pixels, done[0].tile, done[0].device, done[0].precision)


def deblur_by_kernel(image: np.ndarray, kernel: np.ndarray, *, prior: float = DEFAULT_PRIOR,
                     method: str = "wiener") -> np.ndarray:
    """``image`` ((H,W) or (H,W,C) uint8, uint16 or float in [0,1]; C in 1..4) deconvolved by
    ``kernel`` ((k,k), k odd); same shape and dtype, integers rounded, alpha (C = 2 or 4)
    untouched."""
    return _on_colour(image, lambda colour: deconvolve(colour, kernel, prior=prior, method=method))


def _fallback_said(fallback: str) -> str:
    return "blind network" if fallback == "blind" else "left unchanged"


def decide(estimate: KernelEstimate, method: str, fallback: str = "input") -> tuple[str, str]:
    """What ``method`` (kernel or auto) does with ``estimate``: ``"kernel"`` (deconvolve by it),
    ``"input"`` (the photo looks sharp, or no kernel is usable and ``fallback`` is input: leave
    it unchanged) or ``"blind"`` (no kernel is usable and ``fallback`` is blind: the network),
    and why (one line)."""
    if estimate.agreement is None:
        said = f"kernel extent {estimate.extent:.1f} px, unchecked"
    else:
        of = "two searches of one region" if estimate.checked == "starts" else "two regions"
        said = f"kernel extent {estimate.extent:.1f} px, agreement of {of} {estimate.agreement:.2f}"
    if estimate.extent < estimate.min_extent:
        return "input", f"looks sharp ({said}): left unchanged"
    otherwise = _fallback_said(fallback)
    if method == "kernel":
        if estimate.agreement is None:
            # measured on 256 px crops (one region, no check): a spurious kernel on 10 of 16 sharp
            # crops, and a loss on every blurred row; so no unchecked kernel is used
            return fallback, f"kernel not checked ({said}): {otherwise}"
        if estimate.agreement < KERNEL_MIN_AGREEMENT:
            doubt = "the kernel depends on where its search starts" if estimate.checked == "starts" \
                else "no kernel fits the whole photo"
            return fallback, f"{doubt} ({said}): {otherwise}"
        return "kernel", f"estimated kernel ({said})"
    if not estimate.usable:
        if estimate.checked == "starts" and estimate.extent >= estimate.min_extent:
            return fallback, f"too small to check the kernel on two regions ({said}): {otherwise}"
        return fallback, f"kernel not confident ({said}): {otherwise}"
    return "kernel", f"estimated kernel ({said})"


def restore_with_method(model: LMFN, image: np.ndarray, options: KernelOptions, *, tile: int | None = None,
                        overlap: int = 32, precision: str = "auto",
                        on_tile: Callable[[int, int], None] | None = None,
                        on_estimate: Callable[[int, int], None] | None = None) -> KernelRestored:
    """Deblur ``image`` (as `inference.restore` takes it) by ``options.method``; the blind
    network's arguments (``tile``, ``overlap``, ``precision``, ``on_tile``) as `restore`'s.
    ``on_estimate(done, total)`` reports the kernel estimation's progress (scales)."""
    def blind(why: str, kernel: np.ndarray | None = None, estimate: KernelEstimate | None = None) -> KernelRestored:
        done = restore(model, image, tile=tile, overlap=overlap, precision=precision, on_tile=on_tile)
        return KernelRestored(done, "blind", kernel, estimate, why)

    def unchanged(why: str, kernel: np.ndarray | None = None, estimate: KernelEstimate | None = None) -> KernelRestored:
        return KernelRestored(Restored(np.array(image, copy=True), 0, "cpu", "none"), "none", kernel, estimate, why)

    def by_kernel(kernel: np.ndarray) -> Restored:
        if options.deconvolution == "network":
            device = str(next(model.parameters()).device)
            stage = load_nonblind(options.nonblind, device)
            return deconvolve_with_network(image, kernel, stage, tile=tile, overlap=overlap, precision=precision,
                                           on_tile=on_tile)
        pixels = deblur_by_kernel(image, kernel, prior=options.prior, method=options.deconvolution)
        return Restored(pixels, 0, "cpu", "fp64")

    if options.kernel is not None:
        kernel = np.asarray(options.kernel, dtype=np.float32)
        why = f"given kernel ({kernel.shape[0]}x{kernel.shape[1]}, extent {kernel_extent(kernel):.1f} px)"
        return KernelRestored(by_kernel(kernel), "kernel", kernel, None, why)
    if options.method == "blind":
        return blind("blind network")
    settings = options.estimation
    if min(np.shape(image)[:2]) < 2 * settings.kernel_size:
        why = f"too small for a {settings.kernel_size} px kernel estimate: {_fallback_said(options.fallback)}"
        return blind(why) if options.fallback == "blind" else unchanged(why)
    colour, _ = _float_colour(np.asarray(image)[..., None] if np.ndim(image) == 2 else np.asarray(image))
    estimate = estimate_kernel(colour, settings, on_progress=on_estimate)
    choice, why = decide(estimate, options.method, options.fallback)
    log.info("%s", why)
    if choice == "input":
        return unchanged(why, estimate.kernel, estimate)
    if choice == "blind":
        return blind(why, estimate.kernel, estimate)
    return KernelRestored(by_kernel(estimate.kernel), "kernel", estimate.kernel, estimate, why)
