"""Kernels as the estimator returns them, for training the kernel method's non-blind stage.

`perturb_kernel` imitates how blind estimation errs (a path too long or short, turned, thick,
faint parts lost, specks); the estimator's own errors are not those. This module makes a bank of
(true, estimated) kernel pairs by running `kernel_estimation.estimate_kernel` on training crops
blurred by known kernels, the way ``lmfn deblur --method kernel`` runs it on a small photo (one
256 px square, no check). ``synth.nonblind.nonblind_pair`` then blurs a *different* training crop
by a pair's true kernel and deconvolves it by the pair's estimate, so the network learns the
errors it will see. Estimation is content dependent; using a pair's estimate on another photo
keeps the kernel's error but not the photo's, the same simplification `perturb_kernel` makes.

The bank is an ``.npz`` file: ``true`` and ``estimated`` (N,k,k) float32, both centred and
summing to 1, and ``extent`` (N,) the estimate's extent in px (the kernel method deconvolves only
by estimates of at least ``min_extent``: `EstimatedKernels.usable`). Pair ``i`` is a pure
function of ``(seed, i)``, so a build resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
import io
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..deconvolution import centre_kernel
from ..errors import KernelError
from ..files import atomic_path
from .nonblind import NonblindConfig, _pad_to, degrade, nonblind_kernel
from .pairs import KernelBank

__all__ = ["EstimatedKernels", "estimated_kernel_pair", "build_estimated_kernels"]

log = logging.getLogger(__name__)

BANK_FORMAT = "lmfn-estimated-kernels/1"


@dataclass(frozen=True)
class EstimatedKernels:
    """(true, estimated) kernel pairs: ``true``, ``estimated`` (N,k,k) float32, centred, >= 0,
    summing to 1; ``extent`` (N,) float32, the estimate's extent in px."""

    true: np.ndarray
    estimated: np.ndarray
    extent: np.ndarray

    def __len__(self) -> int:
        return len(self.true)

    def usable(self, min_extent: float | None = None) -> EstimatedKernels:
        """The pairs whose estimate the kernel method would deconvolve by: extent at least
        ``min_extent`` (default: `EstimationSettings.min_extent`; smaller ones look sharp)."""
        from ..kernel_estimation import EstimationSettings

        keep = self.extent >= (EstimationSettings().min_extent if min_extent is None else min_extent)
        return EstimatedKernels(self.true[keep], self.estimated[keep], self.extent[keep])

    def draw(self, rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
        """A random pair, both turned and flipped the same way (8 orientations), padded to
        ``size``: (true, estimated), (size,size) float32."""
        i = int(rng.integers(len(self)))
        turns, flip = int(rng.integers(4)), bool(rng.integers(2))

        def orient(k: np.ndarray) -> np.ndarray:
            k = np.rot90(k, turns)
            return np.ascontiguousarray(_pad_to(k[:, ::-1] if flip else k, size))

        return orient(self.true[i]), orient(self.estimated[i])

    def save(self, path: str | Path) -> None:
        """Write the bank to ``path`` (.npz) through a temporary file and a rename."""
        buf = io.BytesIO()
        np.savez_compressed(buf, format=np.array(BANK_FORMAT), true=self.true.astype(np.float32),
                            estimated=self.estimated.astype(np.float32), extent=self.extent.astype(np.float32))
        with atomic_path(path) as tmp:
            Path(tmp).write_bytes(buf.getvalue())

    @classmethod
    def load(cls, path: str | Path) -> EstimatedKernels:
        """Read a bank written by `save`; ``KernelError`` naming the file if it is not one."""
        try:
            with np.load(path, allow_pickle=False) as f:
                if "format" not in f or str(f["format"]) != BANK_FORMAT:
                    raise KernelError(path, f"not an estimated-kernel bank ({BANK_FORMAT})")
                true, est, extent = f["true"], f["estimated"], f["extent"]
        except FileNotFoundError:
            raise KernelError(path, "no such file") from None
        except (OSError, ValueError, KeyError) as exc:
            raise KernelError(path, f"not an estimated-kernel bank: {exc}") from None
        if true.ndim != 3 or true.shape != est.shape or extent.shape != (len(true),):
            raise KernelError(path, f"true {true.shape}, estimated {est.shape} and extent {extent.shape} do not match")
        return cls(true.astype(np.float32), est.astype(np.float32), extent.astype(np.float32))


def _random_crop(image: np.ndarray, side: int, rng: np.random.Generator) -> np.ndarray:
    h, w = image.shape[:2]
    y, x = int(rng.integers(h - side + 1)), int(rng.integers(w - side + 1))
    return image[y : y + side, x : x + side]


def estimated_kernel_pair(images: Sequence[np.ndarray], rng: np.random.Generator, cfg: NonblindConfig,
                          bank: KernelBank | None = None, settings=None, *, crop: int = 256,
                          full_side: int = 640) -> tuple[np.ndarray, np.ndarray, float]:
    """Blur a random ``crop`` px square of one of ``images`` ((H,W,3) uint8, each at least
    ``crop`` px on both sides) by a kernel drawn as `nonblind_kernel` draws them (never a
    delta), degrade it as `nonblind_pair` does, and estimate its kernel with ``settings``
    (`EstimationSettings`; default: the kernel method's, without the check). Returns (true,
    estimated) (k,k) float32 kernels, both centred, and the estimate's extent in px."""
    from ..kernel_estimation import EstimationSettings, estimate_kernel

    s = settings or EstimationSettings(check=False)
    image = images[int(rng.integers(len(images)))]
    sharp = _random_crop(image, crop, rng).astype(np.float32) / 255
    true = nonblind_kernel(rng, dataclasses.replace(cfg, delta_prob=0.0, kernel_size=s.kernel_size), bank, full_side)
    blurred = degrade(sharp, true, rng, cfg)
    estimate = estimate_kernel(blurred, s)
    estimated = centre_kernel(estimate.kernel).numpy().astype(np.float32)
    return true, estimated, float(estimate.extent)


def build_estimated_kernels(images: Sequence[np.ndarray], path: str | Path, count: int, seed: int,
                            cfg: NonblindConfig = NonblindConfig(), bank: KernelBank | None = None, settings=None,
                            *, crop: int = 256, save_every: int = 10,
                            on_progress: Callable[[int, int], None] | None = None) -> EstimatedKernels:
    """A bank of ``count`` pairs (`estimated_kernel_pair`, pair ``i`` drawn with the generator of
    ``(seed, i)``) written to ``path`` every ``save_every`` pairs and at the end. An existing bank
    at ``path`` is continued from its length, so an interrupted build resumes.
    ``on_progress(done, count)`` after each pair."""
    path = Path(path)
    images = [im for im in images if min(im.shape[:2]) >= crop]
    if not images:
        raise ValueError(f"no training photo is at least {crop} px on both sides")
    have = EstimatedKernels.load(path) if path.exists() else None
    true = list(have.true) if have else []
    est = list(have.estimated) if have else []
    extent = list(have.extent) if have else []
    if have:
        log.info("%s: %d pairs already, continuing", path, len(have))

    def current() -> EstimatedKernels:
        return EstimatedKernels(np.stack(true), np.stack(est), np.asarray(extent, np.float32))

    for i in range(len(true), count):
        t, e, x = estimated_kernel_pair(images, np.random.default_rng([seed, i]), cfg, bank, settings, crop=crop)
        true.append(t)
        est.append(e)
        extent.append(x)
        if (i + 1) % save_every == 0 or i + 1 == count:
            current().save(path)
        if on_progress is not None:
            on_progress(i + 1, count)
    return current()
