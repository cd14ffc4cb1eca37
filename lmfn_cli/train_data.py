"""Training and validation data: paired folders, sharp photos blurred on the fly, batches.

Every batch is a pure function of (seed, step): batch ``s`` is drawn with
``np.random.default_rng([seed, s])``, so a resumed run sees exactly the batches it would have seen.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.utils.data import Dataset

from .errors import LMFNError
from .images import IMAGE_EXTENSIONS, read_image
from .train_config import TrainConfig, TrainError

log = logging.getLogger(__name__)

__all__ = ["find_pairs", "load_sharp_photos", "nonblind_config", "PairedImages", "BatchSource", "synth_config", "build_batches", "load_val_set", "load_val_sets"]


def _images_in(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_EXTENSIONS}


def find_pairs(root: str | Path) -> list[tuple[Path, Path]]:
    """(blurry, sharp) paths under ``root``: ``root/blur`` + ``root/sharp``, or GoPro's
    ``root/*/blur`` + ``root/*/sharp`` (``blur_gamma`` is not used). Paired by file stem."""
    root = Path(root)
    if not root.is_dir():
        raise TrainError(f"{root}: no such folder")
    sequences = [root] if (root / "blur").is_dir() else sorted(d for d in root.iterdir() if (d / "blur").is_dir())
    pairs = []
    for seq in sequences:
        if not (seq / "sharp").is_dir():
            raise TrainError(f"{seq}: has blur/ but no sharp/")
        blur, sharp = _images_in(seq / "blur"), _images_in(seq / "sharp")
        missing = sorted(set(blur) ^ set(sharp))
        if missing:
            log.warning("%s: %d images without a partner (e.g. %s), skipped", seq, len(missing), missing[0])
        pairs += [(blur[k], sharp[k]) for k in sorted(set(blur) & set(sharp))]
    if not pairs:
        raise TrainError(f"{root}: no blur/ + sharp/ image pairs found")
    return pairs


def _rgb8(path: Path) -> np.ndarray:
    img = read_image(path)
    if img.dtype != np.uint8:
        img = np.rint(img / 257.0).astype(np.uint8)
    if img.ndim == 3 and img.shape[2] == 2:  # gray + alpha: drop alpha
        img = img[..., 0]
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    return np.array(img[..., :3])  # a writable, contiguous copy


class PairedImages:
    """All pairs of some paired folders in memory as uint8 arrays (H,W,3)."""

    def __init__(self, roots: tuple[str, ...] | list[str]):
        self.blur: list[np.ndarray] = []
        self.sharp: list[np.ndarray] = []
        for root in roots:
            for b, s in find_pairs(root):
                bi, si = _rgb8(b), _rgb8(s)
                if bi.shape != si.shape:
                    raise TrainError(f"{b}: size {bi.shape[:2]} differs from its sharp image {si.shape[:2]}")
                self.blur.append(bi)
                self.sharp.append(si)

    def __len__(self) -> int:
        return len(self.blur)


def _augment(rng: np.random.Generator, *arrays: np.ndarray) -> list[np.ndarray]:
    """The same random flip / 90-degree rotation for each array (H,W,C)."""
    k, flip = int(rng.integers(4)), bool(rng.integers(2))
    out = []
    for a in arrays:
        a = np.rot90(a, k, axes=(0, 1))
        out.append(a[:, ::-1] if flip else a)
    return out


def _crop(rng: np.random.Generator, patch: int, *arrays: np.ndarray) -> list[np.ndarray]:
    h, w = arrays[0].shape[:2]
    ph, pw = min(patch, h), min(patch, w)
    y, x = int(rng.integers(h - ph + 1)), int(rng.integers(w - pw + 1))
    return [a[y : y + ph, x : x + pw] for a in arrays]


class BatchSource(Dataset):
    """Map-style dataset whose item ``s`` is the whole training batch of step ``s``.

    Returns (blurry, sharp) float32 tensors (B,3,P,P) in [0,1]. Pairs come from paired folders
    (random crop) and/or sharp photos blurred on the fly, mixed by ``cfg.paired_fraction`` or,
    when it is None, by how many images each has.
    """

    def __init__(self, cfg: TrainConfig, paired: PairedImages | None, synth_fn: Callable | None, sharp_images: list[np.ndarray]):
        self.cfg = cfg
        self.paired = paired
        self.synth_fn = synth_fn
        self.sharp_images = sharp_images
        n_paired = len(paired) if paired else 0
        if n_paired + len(sharp_images) == 0:
            raise TrainError("no training data: give paired folders and/or sharp photo folders")
        if not n_paired or not sharp_images or cfg.paired_fraction is None:
            self.p_paired = n_paired / (n_paired + len(sharp_images))
        else:
            self.p_paired = cfg.paired_fraction

    def __len__(self) -> int:
        return self.cfg.steps

    def sample(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        p = self.cfg.patch
        if self.paired and rng.random() < self.p_paired:
            i = int(rng.integers(len(self.paired)))
            blur, sharp = _crop(rng, p, self.paired.blur[i], self.paired.sharp[i])
            blur, sharp = blur.astype(np.float32) / 255, sharp.astype(np.float32) / 255
        else:
            i = int(rng.integers(len(self.sharp_images)))
            # Crop with a margin so the blur near the patch border sees real image content.
            (big,) = _crop(rng, p + 32, self.sharp_images[i])
            blur, sharp, _ = self.synth_fn(big.astype(np.float32) / 255, rng)
            blur, sharp = blur[16 : 16 + p, 16 : 16 + p], sharp[16 : 16 + p, 16 : 16 + p]
        if self.cfg.augment:
            blur, sharp = _augment(rng, blur, sharp)
        return blur, sharp

    def __getitem__(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([self.cfg.seed, step])
        pairs = [self.sample(rng) for _ in range(self.cfg.batch)]
        # Images smaller than the patch give smaller crops: bring a batch to one size.
        h = min(b.shape[0] for b, _ in pairs)
        w = min(b.shape[1] for b, _ in pairs)

        def stack(k: int) -> torch.Tensor:
            arr = np.stack([np.ascontiguousarray(pair[k][:h, :w]) for pair in pairs])
            return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()

        return stack(0), stack(1)


def load_sharp_photos(paths: list[Path]) -> list[np.ndarray]:
    """The photos at ``paths`` as (H,W,3) uint8 RGB arrays (16-bit scaled, gray repeated, alpha dropped)."""
    return [_rgb8(Path(p)) for p in paths]


def _load_sharp_folder(folder: str) -> list[np.ndarray]:
    paths = [p for p in sorted(Path(folder).rglob("*")) if p.suffix.lower() in IMAGE_EXTENSIONS]
    if not paths:
        raise TrainError(f"{folder}: no images found")
    return [_rgb8(p) for p in paths]


def synth_config(cfg: TrainConfig):
    """The ``synth.SynthConfig`` that blurs ``cfg``'s sharp photos on the fly."""
    from . import synth

    degradation = synth.Degradation(noise_prob=cfg.noise_prob, jpeg_prob=cfg.jpeg_prob, noise_model=cfg.noise_model,
                                    clip_prob=cfg.highlight_prob)
    return synth.SynthConfig(w_none=cfg.w_none, w_small=cfg.w_small, srgb_blur_prob=cfg.srgb_blur_prob,
                             none_target=cfg.none_target,
                             degradation=degradation)


def nonblind_config(cfg: TrainConfig):
    """The ``synth.nonblind.NonblindConfig`` of a ``task = "nonblind"`` run: its Wiener prior,
    perturbed share, and the run's blur-in-sRGB, noise, JPEG and unblurred (``w_none``) shares."""
    from .synth.nonblind import NonblindConfig

    return NonblindConfig(prior=cfg.nonblind_prior, perturb_prob=cfg.kernel_perturb_prob,
                          srgb_blur_prob=cfg.srgb_blur_prob, noise_prob=cfg.noise_prob,
                          jpeg_prob=cfg.jpeg_prob, delta_prob=cfg.w_none, estimated_prob=cfg.estimated_prob)


def build_batches(cfg: TrainConfig) -> BatchSource:
    paired = PairedImages(cfg.paired) if cfg.paired else None
    sharp_images = [img for folder in cfg.sharp for img in _load_sharp_folder(folder)]
    synth_fn = None
    if sharp_images:
        from . import synth

        bank = synth.KernelBank.from_dir(cfg.kernels).split(cfg.kernel_split) if cfg.kernels else None

        if cfg.task == "nonblind":
            from .synth.nonblind import nonblind_pair

            nb_cfg = nonblind_config(cfg)
            estimated = None
            if cfg.estimated_kernels:
                from .synth.estimated import EstimatedKernels

                try:
                    estimated = EstimatedKernels.load(cfg.estimated_kernels).usable()
                except LMFNError as exc:
                    raise TrainError(str(exc)) from None
                log.info("estimated kernels: %d usable pairs from %s", len(estimated), cfg.estimated_kernels)

            def synth_fn(img: np.ndarray, rng: np.random.Generator):
                # the sample crops 16 px off each side itself: deconvolve the whole crop, keep all.
                # Gyro blur is sized for a 640 px photo (the crop does not know its photo's size).
                return nonblind_pair(img, rng, nb_cfg, bank, margin=0, full_side=640, estimated=estimated)
        else:
            synth_cfg = synth_config(cfg)

            def synth_fn(img: np.ndarray, rng: np.random.Generator):
                return synth.synthesize_pair(img, rng, synth_cfg, bank)

    log.info("training data: %d pairs, %d sharp photos", len(paired) if paired else 0, len(sharp_images))
    return BatchSource(cfg, paired, synth_fn, sharp_images)


# --------------------------------------------------------------------------------------------
# Validation pairs
# --------------------------------------------------------------------------------------------


def _centre_crop(img: np.ndarray, size: int) -> np.ndarray:
    if not size:
        return img
    h, w = img.shape[:2]
    y, x = max(0, (h - size) // 2), max(0, (w - size) // 2)
    return img[y : y + size, x : x + size]


def load_val_set(folder: str | Path, crop: int = 0, limit: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Validation pairs (blurry, sharp) uint8, centre-cropped to ``crop`` (0: whole images)."""
    pairs = find_pairs(folder)
    if limit:
        pairs = pairs[:limit]
    return [(_centre_crop(_rgb8(b), crop), _centre_crop(_rgb8(s), crop)) for b, s in pairs]


def load_val_sets(folders: tuple[str, ...], crop: int = 0, limit: int = 0) -> dict[str, list[tuple[np.ndarray, np.ndarray]]]:
    """``load_val_set`` for each folder, keyed by a short name (the folder's name, made unique)."""
    sets: dict[str, list] = {}
    for folder in folders:
        name = Path(folder).name or str(folder)
        while name in sets:
            name += "_"
        sets[name] = load_val_set(folder, crop, limit)
    return sets
