"""The config of a training run (saved in its checkpoint) and its learning-rate schedule."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from .config import from_dict
from .errors import LMFNError
from .model import LMFNConfig, variant_config

__all__ = ["TrainConfig", "TrainError", "learning_rate"]


class TrainError(LMFNError):
    """A training run that cannot start or continue (bad data folder, config, checkpoint)."""


# --------------------------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run; saved in its checkpoint.

    The defaults are the paper's recipe (MSE, Adam 0.9/0.999, weight decay 1e-4, lr 1e-4
    divided by 10 every 5e5 steps) on the paper's model.
    """

    model: LMFNConfig = field(default_factory=LMFNConfig)
    variant: str = "lmfn"
    task: Literal["blind", "nonblind"] = "blind"
    """``blind``: blurry photo in, sharp out. ``nonblind``: the kernel method's second stage, a
    Wiener deconvolution (by a kernel perturbed the way estimation errs) in, sharp out
    (``synth.nonblind``); sharp photos only, no paired folders."""
    nonblind_prior: float = 5e-3
    """``nonblind``: weight of the Wiener filter's gradient prior (saved in exported weights: the
    kernel method deconvolves with it before the network)."""
    kernel_perturb_prob: float = 0.8
    """``nonblind``: share of pairs deconvolved by a perturbed kernel (the rest: the true one)."""
    estimated_kernels: str | None = None
    """``nonblind``: a bank of (true, estimated) kernel pairs (``lmfn synth --estimated-kernels``,
    ``synth.estimated``); ``estimated_prob`` of the blurred pairs are blurred by a pair's true
    kernel and deconvolved by its estimate (only estimates the kernel method would use)."""
    estimated_prob: float = 0.5
    """``nonblind`` with ``estimated_kernels``: the share of blurred pairs taken from the bank."""
    paired: tuple[str, ...] = ()
    """Folders of pairs: ``blur/`` + ``sharp/``, or GoPro-style ``*/blur`` + ``*/sharp``."""
    sharp: tuple[str, ...] = ()
    """Folders of sharp photos, blurred on the fly by ``lmfn_cli.synth``."""
    paired_fraction: float | None = None
    """Share of training crops drawn from ``paired`` when both ``paired`` and ``sharp`` are
    given, in [0, 1]. None: by image count (one sequence of 400 pairs beside 500 photos would
    then be 44% of every batch)."""
    kernels: str | None = None
    """Folder with usrnet_kernels_12.mat and lai2016_gyro/ for on-the-fly synthesis."""
    noise_prob: float = 0.8
    """On-the-fly blur: share of pairs given Poisson-Gaussian noise (``synth.Degradation``)."""
    jpeg_prob: float = 0.5
    """On-the-fly blur: share of blurry images JPEG-compressed (q60-95)."""
    noise_model: Literal["clipped-linear", "zero-mean"] = "clipped-linear"
    """On-the-fly blur: ``synth.Degradation.noise_model``. ``zero-mean`` keeps noise from
    teaching a brightness change; ``clipped-linear`` (the default, as runs before it had) brightens
    shadows by several levels (``benchmarks/synth_bias.py``)."""
    w_none: float = 0.0
    """On-the-fly blur: weight of unblurred pairs in the source mixture (``synth.SynthConfig``,
    whose other weights sum to 1.0): they teach the network to leave sharp photos alone."""
    w_small: float = 0.0
    """On-the-fly blur: weight of barely blurred pairs (1-2 px random trajectories)."""
    srgb_blur_prob: float = 0.0
    """On-the-fly blur: share of pairs blurred in sRGB values instead of linear light."""
    none_target: Literal["clean", "input"] = "clean"
    """On-the-fly blur: the target of unblurred pairs (``synth.SynthConfig.none_target``):
    ``input`` makes them exact identities, noise and JPEG included, so they teach leaving a sharp
    photo alone rather than denoising it."""
    highlight_prob: float = 0.25
    """On-the-fly blur: share of pairs whose highlights are boosted above white before the blur
    (``synth.Degradation.clip_prob``): real light sources bloom when blurred, but those pairs are
    on average 7.5 levels brighter blurry than sharp (``benchmarks/synth_bias.py``)."""
    kernel_split: Literal["train", "all"] = "train"
    """Which measured kernels on-the-fly blur may use: ``train`` leaves out the ones the
    validation sets are blurred with (``synth.KernelBank.split``); ``all`` uses every one."""
    val: tuple[str, ...] = ()
    """Paired folders for validation (fixed; made with ``lmfn synth --seed`` or
    ``benchmarks/validation.py --build-only``). Each is scored on its own; the best checkpoint
    is the one with the highest mean PSNR over them."""
    val_crop: int = 256
    val_max: int = 24
    loss: Literal["mse", "l1", "charbonnier", "psnr"] = "mse"
    """``psnr``: the negative PSNR of each image, averaged (as in HINet and NAFNet)."""
    fft_weight: float = 0.0
    """Weight of an L1 loss on the 2-D FFT (frequency) of output minus target (0: off)."""
    lr: float = 1e-4
    min_lr: float = 1e-6
    weight_decay: float = 1e-4
    """Decoupled (AdamW): each step multiplies the weights by (1 - lr * weight_decay). Until
    2026-12-07 it was Adam's coupled L2 term, which drove the decoder's inner weights to zero
    (`revive`)."""
    revive: bool = True
    """With ``--init``: re-initialise the starting weights' dead units (`revive.revive`: output
    channels that are exactly zero, left so by the old coupled weight decay) without changing
    the network's output, so that training can use them again. Recipes made before it say
    ``revive = false``, which is how they were run."""
    betas: tuple[float, float] = (0.9, 0.999)
    schedule: Literal["step", "cosine", "constant"] = "step"
    step_size: int = 500_000
    gamma: float = 0.1
    warmup: int = 0
    steps: int = 1_000_000
    batch: int = 8
    patch: int = 128
    augment: bool = True
    grad_clip: float = 0.0
    ema: float = 0.0
    """Decay of an exponential moving average of the weights, kept beside them (0: off; 0.999
    averages over about the last 1,000 steps). It starts at the initial weights, is validated
    beside the raw weights (``val_ema_*`` in the log) and exported with ``which="ema"``."""
    seed: int = 0
    val_every: int = 500
    log_every: int = 20
    ckpt_minutes: float = 5.0

    def __post_init__(self) -> None:
        if isinstance(self.model, dict):
            object.__setattr__(self, "model", LMFNConfig.from_dict(self.model))
        if self.val is None or isinstance(self.val, (str, Path)):  # one folder, as configs before 0.x had
            object.__setattr__(self, "val", () if self.val is None else (self.val,))
        for name in ("paired", "sharp", "val"):
            object.__setattr__(self, name, tuple(str(p) for p in getattr(self, name)))
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))
        if self.loss not in ("mse", "l1", "charbonnier", "psnr"):
            raise TrainError(f"loss must be mse, l1, charbonnier or psnr, got {self.loss!r}")
        if not all(0 <= p <= 1 for p in (self.noise_prob, self.jpeg_prob, self.srgb_blur_prob, self.highlight_prob)):
            raise TrainError("noise_prob, jpeg_prob, srgb_blur_prob and highlight_prob must be in [0, 1]")
        if self.none_target not in ("clean", "input"):
            raise TrainError(f"none_target must be clean or input, got {self.none_target!r}")
        if self.noise_model not in ("clipped-linear", "zero-mean"):
            raise TrainError(f"noise_model must be clipped-linear or zero-mean, got {self.noise_model!r}")
        if not (self.w_none >= 0 and self.w_small >= 0):
            raise TrainError("w_none and w_small must be >= 0")
        if self.paired_fraction is not None and not 0 <= self.paired_fraction <= 1:
            raise TrainError(f"paired_fraction must be in [0, 1], got {self.paired_fraction!r}")
        if self.task not in ("blind", "nonblind"):
            raise TrainError(f"task must be blind or nonblind, got {self.task!r}")
        if self.task == "nonblind" and (self.paired or not self.sharp):
            raise TrainError("task nonblind trains on sharp photos (sharp = [...]) only, no paired folders")
        if self.nonblind_prior <= 0 or not 0 <= self.kernel_perturb_prob <= 1 or not 0 <= self.estimated_prob <= 1:
            raise TrainError("nonblind_prior must be > 0, kernel_perturb_prob and estimated_prob in [0, 1]")
        if self.estimated_kernels and self.task != "nonblind":
            raise TrainError("estimated_kernels is for task nonblind")
        if self.kernel_split not in ("train", "all"):
            raise TrainError(f"kernel_split must be train or all, got {self.kernel_split!r}")
        if self.schedule not in ("step", "cosine", "constant"):
            raise TrainError(f"schedule must be step, cosine or constant, got {self.schedule!r}")
        if not 0 <= self.ema < 1:
            raise TrainError(f"ema must be in [0, 1), got {self.ema!r}")
        if self.batch < 1 or self.patch < 16 or self.steps < 1:
            raise TrainError("batch >= 1, patch >= 16 and steps >= 1 are required")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        return from_dict(cls, data, "training config")

    @classmethod
    def for_variant(cls, variant: str, **fields) -> "TrainConfig":
        model_overrides = fields.pop("model_overrides", {})
        return cls(model=variant_config(variant, **model_overrides), variant=variant, **fields)


def learning_rate(cfg: TrainConfig, step: int) -> float:
    """Learning rate at ``step`` (0-based): linear warm-up, then the schedule."""
    if cfg.warmup and step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    if cfg.schedule == "step":
        return cfg.lr * cfg.gamma ** (step // cfg.step_size)
    if cfg.schedule == "cosine":
        t = min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
        return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * t))
    return cfg.lr


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------
