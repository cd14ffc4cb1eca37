"""Training LMFN: data, the loop, checkpoints that resume exactly, validation, export.

A run lives in one folder::

    RUN/checkpoint.pt      latest state: model, optimizer, scheduler, step, config (every few min)
    RUN/best.safetensors   inference weights of the best validation PSNR so far
    RUN/log.jsonl          one JSON object per logged step and per validation
    RUN/curve.png          training loss and validation PSNR against steps

Every batch is a pure function of (seed, step): batch ``s`` is drawn with
``np.random.default_rng([seed, s])``. So a resumed run sees exactly the batches it would have
seen, whatever the number of loader workers, and ``--resume`` continues exactly.

Checkpoints are written with ``torch.save`` and read with ``torch.load(weights_only=True)``,
which refuses anything but tensors and plain containers.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from . import __version__
from .config import from_dict
from .errors import LMFNError
from .files import atomic_path
from .images import IMAGE_EXTENSIONS, read_image
from .metrics import psnr, ssim
from .model import LMFN, LMFNConfig, variant_config
from .weights import read_weights, save_weights

log = logging.getLogger(__name__)

__all__ = [
    "TrainConfig",
    "TrainError",
    "PairedImages",
    "find_pairs",
    "train",
    "evaluate",
    "export_weights",
    "load_checkpoint",
]


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
    paired: tuple[str, ...] = ()
    """Folders of pairs: ``blur/`` + ``sharp/``, or GoPro-style ``*/blur`` + ``*/sharp``."""
    sharp: tuple[str, ...] = ()
    """Folders of sharp photos, blurred on the fly by ``lmfn_cli.synth``."""
    kernels: str | None = None
    """Folder with usrnet_kernels_12.mat and lai2016_gyro/ for on-the-fly synthesis."""
    val: str | None = None
    """A paired folder for validation (fixed; made with ``lmfn synth --seed``)."""
    val_crop: int = 256
    val_max: int = 24
    loss: Literal["mse", "l1", "charbonnier"] = "mse"
    fft_weight: float = 0.0
    """Weight of an L1 loss on the 2-D FFT (frequency) of output minus target (0: off)."""
    lr: float = 1e-4
    min_lr: float = 1e-6
    weight_decay: float = 1e-4
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
    seed: int = 0
    val_every: int = 500
    log_every: int = 20
    ckpt_minutes: float = 5.0

    def __post_init__(self) -> None:
        if isinstance(self.model, dict):
            object.__setattr__(self, "model", LMFNConfig.from_dict(self.model))
        for name in ("paired", "sharp"):
            object.__setattr__(self, name, tuple(str(p) for p in getattr(self, name)))
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))
        if self.loss not in ("mse", "l1", "charbonnier"):
            raise TrainError(f"loss must be mse, l1 or charbonnier, got {self.loss!r}")
        if self.schedule not in ("step", "cosine", "constant"):
            raise TrainError(f"schedule must be step, cosine or constant, got {self.schedule!r}")
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
    (random crop) and/or sharp photos blurred on the fly, mixed by how many images each has.
    """

    def __init__(self, cfg: TrainConfig, paired: PairedImages | None, synth_fn: Callable | None, sharp_images: list[np.ndarray]):
        self.cfg = cfg
        self.paired = paired
        self.synth_fn = synth_fn
        self.sharp_images = sharp_images
        n_paired = len(paired) if paired else 0
        self.p_paired = n_paired / max(1, n_paired + len(sharp_images))
        if n_paired + len(sharp_images) == 0:
            raise TrainError("no training data: give paired folders and/or sharp photo folders")

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


def _load_sharp_folder(folder: str) -> list[np.ndarray]:
    paths = [p for p in sorted(Path(folder).rglob("*")) if p.suffix.lower() in IMAGE_EXTENSIONS]
    if not paths:
        raise TrainError(f"{folder}: no images found")
    return [_rgb8(p) for p in paths]


def build_batches(cfg: TrainConfig) -> BatchSource:
    paired = PairedImages(cfg.paired) if cfg.paired else None
    sharp_images = [img for folder in cfg.sharp for img in _load_sharp_folder(folder)]
    synth_fn = None
    if sharp_images:
        from . import synth

        bank = synth.KernelBank.from_dir(cfg.kernels) if cfg.kernels else None

        def synth_fn(img: np.ndarray, rng: np.random.Generator):
            return synth.synthesize_pair(img, rng, synth.SynthConfig(), bank)

    log.info("training data: %d pairs, %d sharp photos", len(paired) if paired else 0, len(sharp_images))
    return BatchSource(cfg, paired, synth_fn, sharp_images)


# --------------------------------------------------------------------------------------------
# Loss, evaluation
# --------------------------------------------------------------------------------------------


def loss_fn(cfg: TrainConfig, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    diff = out.float() - target.float()
    if cfg.loss == "mse":
        loss = diff.pow(2).mean()
    elif cfg.loss == "l1":
        loss = diff.abs().mean()
    else:
        loss = torch.sqrt(diff.pow(2) + 1e-6).mean()
    if cfg.fft_weight:
        loss = loss + cfg.fft_weight * torch.fft.rfft2(diff).abs().mean()
    return loss


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


@torch.inference_mode()
def evaluate(model: LMFN, pairs: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
    """Mean PSNR/SSIM of the model's output and of the blurry input against the sharp images."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    sums = dict(psnr=0.0, ssim=0.0, input_psnr=0.0, input_ssim=0.0)
    for blur, sharp in pairs:
        b = torch.from_numpy(blur).permute(2, 0, 1)[None].float().div(255).to(device)
        s = torch.from_numpy(sharp).permute(2, 0, 1)[None].float().div(255).to(device)
        out = model(b).clamp(0, 1)
        sums["psnr"] += psnr(out, s).item()
        sums["ssim"] += ssim(out, s).item()
        sums["input_psnr"] += psnr(b, s).item()
        sums["input_ssim"] += ssim(b, s).item()
    model.train(was_training)
    return {k: v / max(1, len(pairs)) for k, v in sums.items()}


# --------------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------------


def _atomic_torch_save(obj: dict, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def load_checkpoint(path: str | Path) -> dict:
    """Read a training checkpoint safely (``weights_only``: no arbitrary unpickling)."""
    path = Path(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise TrainError(f"{path}: no checkpoint to resume from") from None
    except Exception as exc:  # a corrupt or foreign file: say which, keep the cause
        raise TrainError(f"{path}: not a readable lmfn checkpoint ({exc})") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != "lmfn-checkpoint/1":
        raise TrainError(f"{path}: not an lmfn training checkpoint")
    return ckpt


def tensors_sha256(tensors: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 over tensors (names, dtypes, shapes and bytes, in name order), e.g. a weights
    file's contents as stored: ``tensors_sha256(safetensors.torch.load_file(path))``."""
    h = hashlib.sha256()
    for name, t in sorted(tensors.items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def export_weights(run_dir: str | Path, dest: str | Path, *, which: Literal["best", "last"] = "best", fp16: bool = False) -> Path:
    """Write inference weights of a run to ``dest``, with config, training summary and the
    tensors' SHA-256 in the metadata."""
    run_dir = Path(run_dir)
    ckpt = load_checkpoint(run_dir / "checkpoint.pt")
    cfg = TrainConfig.from_dict(ckpt["config"])
    model = LMFN(cfg.model)
    if which == "best" and (run_dir / "best.safetensors").exists():
        _, state, best_meta = read_weights(run_dir / "best.safetensors")
        model.load_state_dict(state)
        summary = json.loads(best_meta.get("training", "{}"))
    else:
        model.load_state_dict(ckpt["model"])
        summary = _summary(cfg, ckpt["step"], ckpt.get("best", {}), ckpt.get("elapsed", 0.0), "last")
    dtype = torch.float16 if fp16 else torch.float32
    stored = {k: v.to(dtype) if v.is_floating_point() else v for k, v in model.state_dict().items()}
    meta = {"training": json.dumps(summary), "tensors_sha256": tensors_sha256(stored)}
    return save_weights(model, dest, variant=cfg.variant, metadata=meta, dtype=dtype)


def _summary(cfg: TrainConfig, step: int, best: dict, elapsed: float, which: str) -> dict:
    return {
        "which": which,
        "step": step,
        "seconds": round(elapsed, 1),
        "best_val": best,
        "loss": cfg.loss,
        "fft_weight": cfg.fft_weight,
        "lr": cfg.lr,
        "schedule": cfg.schedule,
        "batch": cfg.batch,
        "patch": cfg.patch,
        "paired": list(cfg.paired),
        "sharp": list(cfg.sharp),
        "seed": cfg.seed,
        "lmfn_version": __version__,
    }


# --------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------


@dataclass
class RunState:
    step: int = 0
    elapsed: float = 0.0
    best: dict = field(default_factory=dict)


def train(
    cfg: TrainConfig | None,
    run_dir: str | Path,
    *,
    resume: bool = False,
    init_weights: str | Path | None = None,
    device: torch.device | str = "cpu",
    max_minutes: float | None = None,
    steps: int | None = None,
    workers: int = 0,
    amp: bool = False,
    on_log: Callable[[dict], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> RunState:
    """Train (or continue training) the run in ``run_dir``; returns where it stopped.

    ``resume``: continue from ``run_dir/checkpoint.pt`` with its config (``steps`` may raise
    the total). ``init_weights``: start a new run from a weights file (fine-tuning).
    ``max_minutes`` stops the session cleanly (with a checkpoint) after that wall time;
    ``should_stop`` is asked between steps (e.g. set by a signal handler) and stops it the same way.
    """
    run_dir = Path(run_dir)
    device = torch.device(device)
    ckpt = None
    if resume:
        ckpt = load_checkpoint(run_dir / "checkpoint.pt")
        cfg = TrainConfig.from_dict(ckpt["config"])
    elif cfg is None:
        raise TrainError("a new run needs a TrainConfig")
    elif (run_dir / "checkpoint.pt").exists():
        raise TrainError(f"{run_dir} holds a run already: use --resume, or another folder")
    if steps is not None and steps != cfg.steps:
        cfg = dataclasses.replace(cfg, steps=steps)
    run_dir.mkdir(parents=True, exist_ok=True)

    torch.manual_seed(cfg.seed)
    model = LMFN(cfg.model).to(device)
    if init_weights is not None and ckpt is None:
        init_cfg, state, _ = read_weights(init_weights)
        if init_cfg != cfg.model:
            raise TrainError(f"{init_weights}: its model config differs from this run's")
        model.load_state_dict(state)
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        # The attention scales theta/alpha start at 0: weight decay would pin them there.
        (no_decay if p.ndim == 1 and p.numel() == 1 else decay).append(p)
    optimizer = torch.optim.Adam(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr,
        betas=cfg.betas,
    )
    state = RunState()
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        state = RunState(ckpt["step"], ckpt.get("elapsed", 0.0), ckpt.get("best", {}))
        log.info("resumed %s at step %d", run_dir, state.step)

    val_pairs = load_val_set(cfg.val, cfg.val_crop, cfg.val_max) if cfg.val else []
    batches = build_batches(cfg)
    use_amp = amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    log_path = run_dir / "log.jsonl"

    def write_log(entry: dict) -> None:
        with log_path.open("a") as fh:
            fh.write(json.dumps(entry) + "\n")
        if on_log:
            on_log(entry)

    def checkpoint() -> None:
        _atomic_torch_save(
            {
                "format": "lmfn-checkpoint/1",
                "config": cfg.to_dict(),
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scaler": scaler.state_dict(),
                "step": state.step,
                "elapsed": state.elapsed,
                "best": state.best,
                "lmfn_version": __version__,
            },
            run_dir / "checkpoint.pt",
        )

    def validate() -> None:
        if not val_pairs:
            return
        elapsed = state.elapsed + time.monotonic() - session_start
        metrics = evaluate(model, val_pairs)
        entry = {"step": state.step, **{f"val_{k}": round(v, 4) for k, v in metrics.items()}}
        write_log(entry)
        if metrics["psnr"] > state.best.get("psnr", -math.inf):
            state.best = {"step": state.step, **{k: round(v, 4) for k, v in metrics.items()}}
            save_weights(
                model, run_dir / "best.safetensors", variant=cfg.variant,
                metadata={"training": json.dumps(_summary(cfg, state.step, state.best, elapsed, "best"))},
            )

    session_start = time.monotonic()
    if state.step == 0 and ckpt is None:
        validate()  # the starting point, for the curve

    loader = DataLoader(
        torch.utils.data.Subset(batches, range(state.step, cfg.steps)),
        batch_size=None,
        shuffle=False,
        num_workers=workers,
        persistent_workers=False,
        prefetch_factor=4 if workers else None,
    )
    model.train()
    run_start = session_start = last_ckpt = time.monotonic()
    loss_sum, loss_n = 0.0, 0
    stopped_early = False
    for blur, sharp in loader:
        out_of_time = max_minutes is not None and time.monotonic() - run_start >= max_minutes * 60
        if out_of_time or (should_stop is not None and should_stop()):
            stopped_early = True
            break
        lr = learning_rate(cfg, state.step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        blur, sharp = blur.to(device, non_blocking=True), sharp.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
            out = model(blur)
        loss = loss_fn(cfg, out, sharp)
        if not torch.isfinite(loss):
            raise TrainError(f"loss became {loss.item()} at step {state.step}; lower --lr or use --grad-clip")
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if cfg.grad_clip:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        state.step += 1
        loss_sum, loss_n = loss_sum + loss.item(), loss_n + 1

        now = time.monotonic()
        if state.step % cfg.log_every == 0 or state.step == cfg.steps:
            write_log({"step": state.step, "loss": loss_sum / loss_n, "lr": lr, "elapsed": round(state.elapsed + now - session_start, 1)})
            loss_sum, loss_n = 0.0, 0
        if state.step % cfg.val_every == 0 or state.step == cfg.steps:
            validate()
        if now - last_ckpt > cfg.ckpt_minutes * 60 or state.step == cfg.steps:
            state.elapsed += now - session_start
            session_start = now
            checkpoint()
            last_ckpt = now
    now = time.monotonic()
    state.elapsed += now - session_start
    checkpoint()
    plot_curve(log_path, run_dir / "curve.png")
    log.info("stopped at step %d%s", state.step, " (asked to stop)" if stopped_early else "")
    return state


def read_log(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot_curve(log_path: str | Path, png_path: str | Path) -> Path | None:
    """Draw the training loss (log scale) and validation PSNR against steps into a PNG."""
    from PIL import Image, ImageDraw

    entries = read_log(log_path)
    losses = [(e["step"], e["loss"]) for e in entries if "loss" in e and e["loss"] > 0]
    vals = [(e["step"], e["val_psnr"], e["val_input_psnr"]) for e in entries if "val_psnr" in e]
    if not losses and not vals:
        return None
    W, H, M = 900, 300, 50
    img = Image.new("RGB", (W, 2 * H), "white")
    d = ImageDraw.Draw(img)
    max_step = max([s for s, _ in losses] + [v[0] for v in vals] + [1])

    def panel(top: int, series: list[tuple[list[tuple[float, float]], str]], title: str, fmt: str) -> None:
        pts = [y for line, _ in series for _, y in line]
        if not pts:
            return
        lo, hi = min(pts), max(pts)
        if hi - lo < 1e-9:
            lo, hi = lo - 1, hi + 1
        x0, y0, x1, y1 = M, top + 30, W - 20, top + H - 30
        d.rectangle([x0, y0, x1, y1], outline="black")
        d.text((x0, top + 8), title, fill="black")
        for frac in (0.0, 0.5, 1.0):
            v = lo + frac * (hi - lo)
            y = y1 - frac * (y1 - y0)
            d.text((4, y - 6), fmt.format(v), fill="black")
        d.text((x1 - 80, y1 + 6), f"step {max_step}", fill="black")
        for line, colour in series:
            xy = [(x0 + (x1 - x0) * s / max_step, y1 - (y1 - y0) * (v - lo) / (hi - lo)) for s, v in line]
            if len(xy) > 1:
                d.line(xy, fill=colour, width=2)
            for x, y in xy[-1:]:
                d.ellipse([x - 3, y - 3, x + 3, y + 3], fill=colour)

    panel(0, [([(s, math.log10(v)) for s, v in losses], "navy")], "training loss (log10)", "{:.2f}")
    panel(H, [([(s, p) for s, p, _ in vals], "darkgreen"), ([(s, i) for s, _, i in vals], "gray")],
          "validation PSNR dB (green: model, grey: blurry input)", "{:.2f}")
    png_path = Path(png_path)
    img.save(png_path)
    return png_path
