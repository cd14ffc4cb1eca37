"""Training LMFN: the loop, checkpoints that resume exactly, validation, export.

The run's config is in ``train_config``, its data in ``train_data``, recipes in ``recipes``.

A run lives in one folder::

    RUN/checkpoint.pt      latest state: model, optimizer, scheduler, step, config, and the
                           weights' moving average when the config has ``ema`` (every few min)
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

import copy
import dataclasses
import hashlib
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Literal, Mapping

import numpy as np
import torch
from torch.utils.data import DataLoader

from . import __version__
from .curves import plot_curve, read_log  # noqa: F401  (read_log: re-exported)
from .errors import LMFNError
from .files import atomic_path
from .metrics import psnr, ssim
from .model import LMFN
from .precision import precision_name
from .revive import revive
from .train_config import TrainConfig, TrainError, learning_rate
from .train_data import BatchSource, PairedImages, build_batches, find_pairs, load_val_set, load_val_sets
from .weights import read_weights, save_weights

if TYPE_CHECKING:
    from .recipes import Recipe

log = logging.getLogger(__name__)

__all__ = [
    "TrainConfig",
    "TrainError",
    "PairedImages",
    "BatchSource",
    "build_batches",
    "find_pairs",
    "learning_rate",
    "load_val_set",
    "load_val_sets",
    "loss_fn",
    "train",
    "evaluate",
    "evaluate_sets",
    "export_weights",
    "load_checkpoint",
]


# --------------------------------------------------------------------------------------------
# Loss, evaluation
# --------------------------------------------------------------------------------------------


def loss_fn(cfg: TrainConfig, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    diff = out.float() - target.float()
    if cfg.loss == "mse":
        loss = diff.pow(2).mean()
    elif cfg.loss == "l1":
        loss = diff.abs().mean()
    elif cfg.loss == "psnr":
        # 10 log10(MSE) per image (= -PSNR for a peak of 1), scaled to stay near L1's size
        mse = diff.pow(2).flatten(1).mean(1)
        loss = 0.005 * (10 * torch.log10(mse + 1e-8)).mean()
    else:
        loss = torch.sqrt(diff.pow(2) + 1e-6).mean()
    if cfg.fft_weight:
        loss = loss + cfg.fft_weight * torch.fft.rfft2(diff).abs().mean()
    return loss


def evaluate_sets(model: LMFN, sets: dict[str, list[tuple[np.ndarray, np.ndarray]]], channels_last: bool = False) -> dict[str, float]:
    """``evaluate`` on every set: the means over the sets (``psnr``, ``ssim``, ``input_psnr``,
    ``input_ssim``) and, with several sets, each set's ``<name>/psnr`` and ``<name>/input_psnr``."""
    per_set = {name: evaluate(model, pairs, channels_last) for name, pairs in sets.items()}
    out = {k: sum(m[k] for m in per_set.values()) / max(1, len(per_set)) for k in ("psnr", "ssim", "input_psnr", "input_ssim")}
    if len(per_set) > 1:
        for name, m in per_set.items():
            out[f"{name}/psnr"] = m["psnr"]
            out[f"{name}/input_psnr"] = m["input_psnr"]
    return out


VAL_PSNR_CAP = 100.0
"""dB: each image's PSNR is capped here before the mean, so a set of unblurred pairs (the
yardstick's ``identity``, where the input equals its target) logs finite figures."""


@torch.inference_mode()
def evaluate(model: LMFN, pairs: list[tuple[np.ndarray, np.ndarray]], channels_last: bool = False) -> dict[str, float]:
    """Mean PSNR/SSIM of the model's output and of the blurry input against the sharp images
    (each image's PSNR capped at ``VAL_PSNR_CAP``)."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    sums = dict(psnr=0.0, ssim=0.0, input_psnr=0.0, input_ssim=0.0)
    for blur, sharp in pairs:
        b = torch.from_numpy(blur).permute(2, 0, 1)[None].float().div(255).to(device)
        s = torch.from_numpy(sharp).permute(2, 0, 1)[None].float().div(255).to(device)
        x = b.contiguous(memory_format=torch.channels_last) if channels_last else b
        out = model(x).float().contiguous().clamp(0, 1)
        sums["psnr"] += min(psnr(out, s).item(), VAL_PSNR_CAP)
        sums["ssim"] += ssim(out, s).item()
        sums["input_psnr"] += min(psnr(b, s).item(), VAL_PSNR_CAP)
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


def export_weights(run_dir: str | Path, dest: str | Path, *, which: Literal["best", "last", "ema"] = "best", fp16: bool = False) -> Path:
    """Write inference weights of a run to ``dest``, with config, training summary and the
    tensors' SHA-256 in the metadata.

    ``which``: ``best`` (best validation PSNR; the last weights when the run has no validation),
    ``last`` (the checkpoint's weights) or ``ema`` (the checkpoint's moving average; the run's
    config must have ``ema``)."""
    run_dir = Path(run_dir)
    ckpt = load_checkpoint(run_dir / "checkpoint.pt")
    cfg = TrainConfig.from_dict(ckpt["config"])
    model = LMFN(cfg.model)
    if which == "ema":
        if "ema" not in ckpt:
            raise TrainError(f"{run_dir}: this run keeps no moving average of its weights (its config has ema = 0)")
        model.load_state_dict(ckpt["ema"])
        summary = _summary(cfg, ckpt["step"], ckpt.get("best", {}), ckpt.get("elapsed", 0.0), "ema")
    elif which == "best" and (run_dir / "best.safetensors").exists():
        _, state, best_meta = read_weights(run_dir / "best.safetensors")
        model.load_state_dict(state)
        summary = json.loads(best_meta.get("training", "{}"))
    else:
        model.load_state_dict(ckpt["model"])
        summary = _summary(cfg, ckpt["step"], ckpt.get("best", {}), ckpt.get("elapsed", 0.0), "last")
    dtype = torch.float16 if fp16 else torch.float32
    stored = {k: v.to(dtype) if v.is_floating_point() else v for k, v in model.state_dict().items()}
    meta = {"training": json.dumps(summary), "tensors_sha256": tensors_sha256(stored)}
    meta.update(_recipe_metadata(cfg, {"recipe": ckpt.get("recipe"), "init": ckpt.get("init")}))
    if cfg.task == "nonblind":  # what kernel_method.load_nonblind needs: the Wiener filter it follows
        meta.update(task="nonblind", wiener_prior=repr(cfg.nonblind_prior))
    return save_weights(model, dest, variant=cfg.variant, metadata=meta, dtype=dtype)


def _recipe_metadata(cfg: TrainConfig, provenance: dict) -> dict[str, str]:
    """Weights metadata that repeats the run: ``recipe`` (TOML of the effective config, see
    ``recipes.recipe_toml``; absent for model configs that are not a named variant) and
    ``recipe_source`` (name, SHA-256 and text of the recipe file the run was started from)."""
    from .recipes import recipe_toml

    meta = {}
    try:
        meta["recipe"] = recipe_toml(cfg, init=provenance.get("init"))
    except LMFNError:
        pass
    if provenance.get("recipe"):
        meta["recipe_source"] = json.dumps(provenance["recipe"])
    return meta


def _summary(cfg: TrainConfig, step: int, best: dict, elapsed: float, which: str) -> dict:
    return {
        "which": which,
        "step": step,
        "seconds": round(elapsed, 1),
        "best_val": best,
        "loss": cfg.loss,
        "fft_weight": cfg.fft_weight,
        "ema": cfg.ema,
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
# The loop, in named steps: open the run, build the model and optimizer, build the data, then
# one step at a time, with validation and checkpoints
# --------------------------------------------------------------------------------------------


@dataclass
class RunState:
    step: int = 0
    elapsed: float = 0.0
    best: dict = field(default_factory=dict)


def open_run(cfg: TrainConfig | None, run_dir: Path, resume: bool, steps: int | None) -> tuple[TrainConfig, dict | None]:
    """The run's config and, with ``resume``, its checkpoint; makes ``run_dir``.

    A resumed run keeps its own config (``steps`` may change the total); a new run refuses a
    folder that holds a run already.
    """
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
    return cfg, ckpt


def make_optimizer(model: LMFN, cfg: TrainConfig) -> torch.optim.Adam:
    """Adam with decoupled weight decay (``cfg.weight_decay``), none on the scalar attention scales."""
    decay, no_decay = [], []
    for p in model.parameters():
        # The attention scales theta/alpha start at 0: weight decay would pin them there.
        (no_decay if p.ndim == 1 and p.numel() == 1 else decay).append(p)
    # Decoupled: Adam's coupled L2 term outweighed the decoder's tiny gradients and zeroed its
    # inner weights in a few hundred steps (`revive`'s docstring).
    return torch.optim.Adam(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr,
        betas=cfg.betas,
        decoupled_weight_decay=True,
    )


def load_optimizer_state(optimizer: torch.optim.Adam, state: dict) -> None:
    """Load a checkpoint's optimizer state; its weight decay stays decoupled (checkpoints from
    before 2026-12-07 recorded coupled)."""
    optimizer.load_state_dict(state)
    for group in optimizer.param_groups:
        group["decoupled_weight_decay"] = True


def build_model_and_optimizer(
    cfg: TrainConfig, device: torch.device, init_weights: str | Path | None, ckpt: dict | None
) -> tuple[LMFN, torch.optim.Adam, RunState]:
    """The network (seeded by ``cfg.seed``, from ``init_weights`` or the checkpoint), its Adam
    optimizer and the run's state (step 0, or where the checkpoint left off)."""
    torch.manual_seed(cfg.seed)
    model = LMFN(cfg.model).to(device)
    if init_weights is not None and ckpt is None:
        init_cfg, weights, _ = read_weights(init_weights)
        if init_cfg != cfg.model:
            raise TrainError(f"{init_weights}: its model config differs from this run's")
        model.load_state_dict(weights)
        if cfg.revive:
            revive(model, seed=cfg.seed)
    optimizer = make_optimizer(model, cfg)
    state = RunState()
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        load_optimizer_state(optimizer, ckpt["optimizer"])
        state = RunState(ckpt["step"], ckpt.get("elapsed", 0.0), ckpt.get("best", {}))
    return model, optimizer, state


@dataclass
class TrainSession:
    """One session of a run: what it trains, on what, and its bookkeeping.

    ``step``, ``validate`` and ``checkpoint`` are the loop's steps; ``clock`` is when the
    session's not-yet-counted wall time began (``tick`` adds it to ``state.elapsed``).
    """

    cfg: TrainConfig
    run_dir: Path
    device: torch.device
    model: LMFN
    optimizer: torch.optim.Adam
    state: RunState
    provenance: dict
    val_sets: dict
    amp_dtype: torch.dtype | None
    channels_last: bool
    on_log: Callable[[dict], None] | None = None
    clock: float = field(default_factory=time.monotonic)

    ema_model: LMFN | None = None
    """With ``cfg.ema``: a copy of the network holding the moving average (fp32, never trained)."""

    def __post_init__(self) -> None:
        use_scaler = self.amp_dtype == torch.float16 and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=use_scaler)
        self.log_path = self.run_dir / "log.jsonl"
        self._ema_pairs: list[tuple[torch.Tensor, torch.Tensor]] = []
        if self.ema_model is not None:
            # state_dict tensors share storage with the modules, and the optimizer updates the
            # parameters in place, so these pairs stay valid for the whole session
            ema_state, state = self.ema_model.state_dict(), self.model.state_dict()
            self._ema_pairs = [(ema_state[k], state[k]) for k in state]

    def update_ema(self) -> None:
        """ema <- decay * ema + (1 - decay) * weights (buffers that are not floats are copied)."""
        with torch.no_grad():
            for e, p in self._ema_pairs:
                if e.is_floating_point():
                    e.lerp_(p.detach().to(e.dtype), 1.0 - self.cfg.ema)
                else:
                    e.copy_(p)

    def elapsed(self) -> float:
        return self.state.elapsed + time.monotonic() - self.clock

    def tick(self, now: float) -> None:
        self.state.elapsed += now - self.clock
        self.clock = now

    def write_log(self, entry: dict) -> None:
        with self.log_path.open("a") as fh:
            fh.write(json.dumps(entry) + "\n")
        if self.on_log:
            self.on_log(entry)

    def step(self, blur: torch.Tensor, sharp: torch.Tensor) -> tuple[float, float]:
        """One optimisation step on a batch (Bx3xHxW in [0, 1]); returns (loss, learning rate)."""
        cfg, device = self.cfg, self.device
        lr = learning_rate(cfg, self.state.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        blur, sharp = blur.to(device, non_blocking=True), sharp.to(device, non_blocking=True)
        if self.channels_last:
            blur = blur.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
            out = self.model(blur)
        loss = loss_fn(cfg, out, sharp)
        if not torch.isfinite(loss):
            raise TrainError(f"loss became {loss.item()} at step {self.state.step}; lower --lr or use --grad-clip")
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if cfg.grad_clip:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.update_ema()
        self.state.step += 1
        return loss.item(), lr

    def validate(self) -> None:
        """Score the validation sets, log them, and keep ``best.safetensors`` at the best mean PSNR."""
        if not self.val_sets:
            return
        elapsed = self.elapsed()
        metrics = evaluate_sets(self.model, self.val_sets, self.channels_last)
        state = self.state
        entry = {"step": state.step, **{f"val_{k}": round(v, 4) for k, v in metrics.items()}}
        if self.ema_model is not None:
            ema_metrics = evaluate_sets(self.ema_model, self.val_sets, self.channels_last)
            entry.update({f"val_ema_{k}": round(v, 4) for k, v in ema_metrics.items() if "input" not in k})
        self.write_log(entry)
        if metrics["psnr"] > state.best.get("psnr", -math.inf):
            state.best = {"step": state.step, **{k: round(v, 4) for k, v in metrics.items()}}
            meta = {"training": json.dumps(_summary(self.cfg, state.step, state.best, elapsed, "best"))}
            meta.update(_recipe_metadata(self.cfg, self.provenance))
            save_weights(self.model, self.run_dir / "best.safetensors", variant=self.cfg.variant, metadata=meta)

    def checkpoint(self) -> None:
        """Write ``checkpoint.pt`` atomically: everything ``--resume`` needs to continue exactly."""
        _atomic_torch_save(
            {
                "format": "lmfn-checkpoint/1",
                "config": self.cfg.to_dict(),
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scaler": self.scaler.state_dict(),
                # what this run computes in, so that a resume continues exactly (see train())
                "precision": precision_name(self.amp_dtype),
                "channels_last": self.channels_last,
                "device_type": self.device.type,
                **({"ema": self.ema_model.state_dict()} if self.ema_model is not None else {}),
                "step": self.state.step,
                "elapsed": self.state.elapsed,
                "best": self.state.best,
                "lmfn_version": __version__,
                **{k: v for k, v in self.provenance.items() if v is not None},
            },
            self.run_dir / "checkpoint.pt",
        )


def _session_numerics(ckpt: dict | None, device: torch.device, precision: str | None,
                      channels_last: bool | None) -> tuple[str, bool]:
    """The precision to resolve and the layout for this session of a run.

    A new run: ``precision`` (``None``: ``auto``) and ``channels_last`` (``None``: yes). A resumed
    run: what its checkpoint recorded, so that a timing probe cannot switch a resumed run to
    other arithmetic than the run it continues; chosen anew where the run moved to another kind
    of device, where the checkpoint predates the record, or where the caller gives a value.
    """
    recorded = ckpt.get("precision") if ckpt is not None else None
    same_device = ckpt is not None and ckpt.get("device_type") == device.type
    if recorded is not None and same_device:
        if precision is None:
            precision = recorded
        elif precision != recorded:
            log.warning("precision %s given; the run so far computed in %s, so it does not continue bit-exactly",
                        precision, recorded)
        if channels_last is None:
            channels_last = ckpt.get("channels_last", True)
    elif ckpt is not None:
        log.info("the checkpoint records no precision for a %s device: choosing anew", device.type)
    # NHWC was faster everywhere we measured: 1.15x in fp32 on a 2-core AVX2 CPU, 1.6x under
    # bf16 on an AMX CPU (benchmarks/train_speed.py); on CUDA it is what cuDNN prefers
    return precision or "auto", True if channels_last is None else channels_last


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
    precision: str | None = None,
    channels_last: bool | None = None,
    recipe: Recipe | None = None,
    on_log: Callable[[dict], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    until_step: int | None = None,
) -> RunState:
    """Train (or continue training) the run in ``run_dir``; returns where it stopped.

    ``resume``: continue from ``run_dir/checkpoint.pt`` with its config (``steps`` may raise
    the total). ``init_weights``: start a new run from a weights file (fine-tuning).
    ``max_minutes`` stops the session cleanly (with a checkpoint) after that wall time;
    ``should_stop`` is asked between steps (e.g. set by a signal handler) and stops it the same way.
    ``until_step`` stops it the same way once that many steps are done, without touching the
    schedule (``steps`` sets its length): arms of a comparison stop at equal steps, and a later
    resume continues as if there had been no stop.

    ``precision``: ``auto``, ``fp32``, ``bf16`` or ``fp16`` autocast (``lmfn_cli.precision``:
    ``auto`` is bf16 on a CPU with native bf16 when a 20-step probe shows it faster, bf16 on
    CUDA GPUs that have it, else fp32 / fp16). ``channels_last``: NHWC layout (``None``: yes, it was
    faster on every machine measured). Both are resolved once, when the run starts, and recorded
    in its checkpoint: a resume (``precision`` and ``channels_last`` left ``None``) uses the
    recorded choice, so it continues exactly whatever a timing probe would say today. They are
    chosen anew only when the run moves to another kind of device, or when given explicitly
    (a different choice is logged: from there on the run is no longer bit-exact). The weights
    are fp32 throughout. ``recipe``: the recipe the config came from, recorded in the
    checkpoint and the exported weights.
    """
    from .precision import probe_step_seconds, resolve_precision

    run_dir, device = Path(run_dir), torch.device(device)
    cfg, ckpt = open_run(cfg, run_dir, resume, steps)
    model, optimizer, state = build_model_and_optimizer(cfg, device, init_weights, ckpt)
    if ckpt is not None:
        log.info("resumed %s at step %d", run_dir, state.step)
    provenance = {
        "recipe": ckpt.get("recipe") if ckpt is not None else (recipe.provenance() if recipe else None),
        "init": ckpt.get("init") if ckpt is not None else (str(init_weights) if init_weights else None),
    }
    val_sets = load_val_sets(cfg.val, cfg.val_crop, cfg.val_max) if cfg.val else {}
    batches = build_batches(cfg)

    def probe(dtype: torch.dtype | None) -> float:
        sample = batches[state.step % len(batches)][0].to(device)
        return probe_step_seconds(model, sample, dtype, channels_last=channels_last is not False)

    precision, channels_last = _session_numerics(ckpt, device, precision, channels_last)
    amp_dtype = resolve_precision(precision, device, probe)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    ema_model = None
    if cfg.ema:
        ema_model = copy.deepcopy(model).requires_grad_(False)
        if ckpt is not None and "ema" in ckpt:
            ema_model.load_state_dict(ckpt["ema"])
    log.info("precision %s, %s layout", precision_name(amp_dtype),
             "channels-last" if channels_last else "contiguous")
    session = TrainSession(cfg, run_dir, device, model, optimizer, state, provenance, val_sets,
                           amp_dtype, channels_last, on_log, ema_model=ema_model)
    if state.step == 0 and ckpt is None:
        session.validate()  # the starting point, for the curve

    loader = DataLoader(
        torch.utils.data.Subset(batches, range(state.step, cfg.steps)),
        batch_size=None,
        shuffle=False,
        num_workers=workers,
        persistent_workers=False,
        prefetch_factor=4 if workers else None,
    )
    model.train()
    run_start = last_ckpt = session.clock = time.monotonic()
    loss_sum, loss_n = 0.0, 0
    # steps/s over the steps since the last log line: data + step time, not validation/checkpoints
    busy, busy_n, mark = 0.0, 0, time.monotonic()
    stopped_early = False
    for blur, sharp in loader:
        out_of_time = max_minutes is not None and time.monotonic() - run_start >= max_minutes * 60
        reached = until_step is not None and state.step >= until_step
        if out_of_time or reached or (should_stop is not None and should_stop()):
            stopped_early = True
            break
        loss, lr = session.step(blur, sharp)
        loss_sum, loss_n = loss_sum + loss, loss_n + 1
        now = time.monotonic()
        busy, busy_n = busy + now - mark, busy_n + 1
        last = state.step == cfg.steps
        if state.step % cfg.log_every == 0 or last:
            session.write_log({"step": state.step, "loss": loss_sum / loss_n, "lr": lr,
                               "elapsed": round(state.elapsed + now - session.clock, 1),
                               "steps_per_s": round(busy_n / max(busy, 1e-9), 3)})
            loss_sum, loss_n, busy, busy_n = 0.0, 0, 0.0, 0
        if state.step % cfg.val_every == 0 or last:
            session.validate()
        if now - last_ckpt > cfg.ckpt_minutes * 60 or last:
            session.tick(now)
            session.checkpoint()
            last_ckpt = now
        mark = time.monotonic()
    session.tick(time.monotonic())
    session.checkpoint()
    plot_curve(session.log_path, run_dir / "curve.png")
    log.info("stopped at step %d%s", state.step, " (asked to stop)" if stopped_early else "")
    return state
