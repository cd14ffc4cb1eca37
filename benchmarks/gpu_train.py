"""Train LMFN on a lent GPU for a fixed number of minutes, blur made on the GPU itself.

Two halves, run on two machines:

    # HERE, on the CPU machine with ../shared: a compact pack of training data (ignored by git)
    python benchmarks/gpu_train.py --pack                       # -> scratch/gpu-pack/, prints its size

    # THERE, on the GPU (carry scratch/gpu-pack): train, checkpoints and weights into $OUT
    python benchmarks/gpu_train.py --train --pack-dir scratch/gpu-pack \\
        --init weights/lmfn-synthblur-v2.safetensors --minutes 9 --out $OUT

The pack (``--pack``, ``benchmarks/gpu_pack.py``): ``pack.safetensors`` holds the sharp photos as compressed bytes in uint8
arrays (BSDS500 train+test as they are, Urban100 downscaled to ``--max-side`` and re-encoded as
JPEG q95) and GoPro-style (blurry, sharp) pairs, averages of 7-13 consecutive 240 fps frames of
GOPR0477_11_00's frames 0-249 made by ``synth.make_frame_pairs`` (lossless WebP); ``kernels.npz``
a bank of uniform blur kernels drawn by ``lmfn_cli.gpu_synth`` from the *training* share of the
measured kernels (``KernelBank.split('train')``). Pairs are added only while the pack stays
under ``--max-mib`` (52 by default: the working tree, ~9.5 MiB, travels with it inside 64 MiB).

Training (``--train``): the photos are decoded once onto the device; every step's batch is made
there (``gpu_synth.make_batch``: crops, flips, kernels, blur, noise; no JPEG) with a share
``--paired-share`` of GoPro-style pair crops, as a pure function of (seed, step). LMFN (the init
weights' config) trains with ``lmfn_cli.train``'s ``TrainConfig``, ``loss_fn`` and
``learning_rate`` (warm-up + cosine), Adam, bf16 autocast where the GPU has it, channels-last
where the model takes it. ``--steps 0`` sizes the cosine schedule to the minutes left from the
speed measured over the first steps. ``--minutes`` counts from the start of this script. Every
``--ckpt-minutes``, and at the end (also on SIGTERM/SIGINT), it writes ``$OUT/checkpoint.pt``
(``lmfn-checkpoint/1``, resumable with ``--resume FILE``) and ``$OUT/last.safetensors`` (fp16
inference weights, loadable by ``lmfn_cli.load_model``); ``$OUT/log.jsonl`` gets one JSON line
per ``--log-every`` steps: loss, lr, steps/s, pixels/s, the GPU's busy share (NVML's
utilisation: the share of time a kernel was running) and the share of GPU time spent making data.

It runs on a CPU too (``--device cpu``, tiny sizes): that is how the tests check it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import signal
import sys
import threading
import time
import types
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
try:  # the GPU machine's image has no imagecodecs; nothing here reads 16-bit PNG, TIFF or BMP
    import imagecodecs  # noqa: F401
except ImportError:
    sys.modules["imagecodecs"] = types.ModuleType("imagecodecs")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.gpu_pack import MiB, SHARED, decode, make_pack, read_pack  # noqa: E402
from lmfn_cli import __version__, gpu_synth, synth  # noqa: E402
from lmfn_cli.files import atomic_path  # noqa: E402
from lmfn_cli.model import LMFN, variant_config  # noqa: E402
from lmfn_cli.revive import revive  # noqa: E402
from lmfn_cli.train import (TrainConfig, learning_rate, load_checkpoint, load_optimizer_state, loss_fn,  # noqa: E402
                             make_optimizer, tensors_sha256)
from lmfn_cli.weights import read_weights, save_weights  # noqa: E402

log = logging.getLogger("gpu_train")


# --------------------------------------------------------------------------------------------
# Training (run on the GPU machine)
# --------------------------------------------------------------------------------------------


def _step_seed(seed: int, step: int) -> int:
    """The seed of step ``step``'s batch generator: batches are a pure function of (seed, step)."""
    return int(np.random.SeedSequence([seed, step]).generate_state(1, dtype=np.uint64)[0])


def paired_crops(blur: list[torch.Tensor], sharp: list[torch.Tensor], n: int, patch: int,
                 generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` random patch crops of uint8 (3,H,W) pairs, one random orientation each -> float [0,1]."""
    which = torch.randint(len(blur), (n,), generator=generator).tolist()
    u = torch.rand(n, 2, generator=generator, dtype=torch.float64).tolist()
    bs, ss = [], []
    for i, j in enumerate(which):
        h, w = blur[j].shape[1:]
        y, x = int(u[i][0] * (h - patch + 1)), int(u[i][1] * (w - patch + 1))
        bs.append(blur[j][:, y : y + patch, x : x + patch])
        ss.append(sharp[j][:, y : y + patch, x : x + patch])
    orient = torch.randint(8, (n,), generator=generator)
    b = gpu_synth.random_dihedral(torch.stack(bs), orient).float() / 255
    s = gpu_synth.random_dihedral(torch.stack(ss), orient).float() / 255
    return b, s


class UtilSampler:
    """Samples the GPU's utilisation (NVML's share of time a kernel ran: ``torch.cuda.utilization``,
    else ``nvidia-smi``) in a thread, twice a second."""

    def __init__(self, device: torch.device):
        self.device, self.samples, self.stop = device, [], threading.Event()
        self.read = None
        if device.type == "cuda":
            for read in (self._torch, self._smi):
                try:
                    read()
                    self.read = read
                    break
                except Exception as exc:  # no pynvml, no NVML, no nvidia-smi
                    log.info("no GPU utilisation readings from %s (%s)", read.__name__, exc)
        self.ok = self.read is not None
        if self.ok:
            threading.Thread(target=self._run, daemon=True).start()

    def _torch(self) -> float:
        return float(torch.cuda.utilization(self.device))

    def _smi(self) -> float:
        import subprocess

        index = self.device.index if self.device.index is not None else torch.cuda.current_device()
        out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits",
                              "-i", str(index)], capture_output=True, text=True, timeout=5, check=True)
        return float(out.stdout.strip().splitlines()[0])

    def _run(self) -> None:
        while not self.stop.wait(0.5):
            try:
                self.samples.append(self.read())
            except Exception:
                return

    def take(self) -> float | None:
        if not self.samples:
            return None
        values, self.samples = self.samples, []
        return sum(values) / len(values) / 100


class Meter:
    """Loss and speed between two log lines: GPU time by CUDA events (data vs training), CPU time
    by the clock, NVML utilisation from ``UtilSampler``."""

    def __init__(self, device: torch.device, pixels_per_step: int, util: "UtilSampler"):
        self.device, self.pixels, self.util = device, pixels_per_step, util
        self.reset()

    def reset(self) -> None:
        self.loss = torch.zeros((), device=self.device)
        self.n, self.events, self.data_s, self.comp_s, self.t = 0, [], 0.0, 0.0, time.monotonic()

    def add(self, loss: torch.Tensor, events: tuple | None, data_s: float, comp_s: float) -> None:
        self.loss += loss
        self.n += 1
        if events is not None:
            self.events.append(events)
        self.data_s, self.comp_s = self.data_s + data_s, self.comp_s + comp_s

    def entry(self, step: int, lr: float, elapsed: float, pred: torch.Tensor, blurry: torch.Tensor,
              sharp: torch.Tensor) -> dict:
        """The log line (synchronises the device); resets the counters."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        wall = max(1e-9, time.monotonic() - self.t)
        mean_loss = float(self.loss) / max(1, self.n)
        if not math.isfinite(mean_loss):
            raise SystemExit(f"loss became {mean_loss} by step {step}; lower --lr or set --grad-clip")
        data_s, comp_s = self.data_s, self.comp_s
        if self.events:
            data_s = sum(a.elapsed_time(b) for a, b, _ in self.events) / 1e3
            comp_s = sum(b.elapsed_time(c) for _, b, c in self.events) / 1e3
        with torch.no_grad():
            mse = (pred.float().clamp(0, 1) - sharp).pow(2).flatten(1).mean(1).clamp_min(1e-10)
            mse_in = (blurry - sharp).pow(2).flatten(1).mean(1).clamp_min(1e-10)
        rate = self.n / wall
        entry = {"step": step, "loss": mean_loss, "lr": lr, "elapsed": round(elapsed, 1),
                 "steps_per_s": round(rate, 3), "pixels_per_s": round(rate * self.pixels),
                 "gpu_busy": self.util.take() if self.util.ok else None,
                 "compute_share": round(comp_s / wall, 3) if self.device.type == "cpu" else None,
                 "data_share": round(data_s / max(1e-9, data_s + comp_s), 3),
                 "batch_psnr": round(float((-10 * torch.log10(mse)).mean()), 3),
                 "batch_input_psnr": round(float((-10 * torch.log10(mse_in)).mean()), 3)}
        if self.device.type == "cuda":
            entry["max_mem_gib"] = round(torch.cuda.max_memory_allocated(self.device) / 2**30, 2)
        self.reset()
        return entry


def _train_config(args: argparse.Namespace, model_cfg, variant: str) -> TrainConfig:
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    fields = dict(model=model_cfg, variant=variant, kernel_split="train", loss=args.loss, fft_weight=args.fft_weight,
                  lr=args.lr, min_lr=args.min_lr, schedule="cosine", warmup=args.warmup,
                  steps=args.steps or 1_000_000, batch=args.batch, patch=args.patch, grad_clip=args.grad_clip,
                  seed=args.seed, log_every=args.log_every, ckpt_minutes=args.ckpt_minutes,
                  noise_prob=synth.Degradation().noise_prob, jpeg_prob=0.0)
    return TrainConfig(**{k: v for k, v in fields.items() if k in known})


def run_training(args: argparse.Namespace, t0: float) -> dict:
    """The training half; returns the final summary (also written to OUT/summary.json)."""
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if args.threads:
        torch.set_num_threads(args.threads)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if (out / "checkpoint.pt").exists() and not args.resume:
        raise SystemExit(f"{out} holds a checkpoint already: use --resume or another --out")
    stop = {"flag": False}

    def on_signal(signum, frame):  # stop cleanly, with a checkpoint
        stop["flag"] = True

    old_handlers = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        return _run(args, t0, device, out, stop)
    finally:
        for s, h in old_handlers.items():
            signal.signal(s, h)


def _run(args: argparse.Namespace, t0: float, device: torch.device, out: Path, stop: dict) -> dict:

    # data: decoded once, onto the device
    pack_dir = Path(args.pack_dir)
    photo_blobs, pair_blobs, pack_meta = read_pack(pack_dir)
    with ThreadPoolExecutor(max(1, min(16, os.cpu_count() or 1))) as pool:
        photos_np = list(pool.map(decode, photo_blobs))
        pairs_np = list(pool.map(lambda p: (decode(p[0]), decode(p[1])), pair_blobs))

    def to_dev(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(a).permute(2, 0, 1).contiguous().to(device)

    photos = [to_dev(a) for a in photos_np]
    pair_blur = [to_dev(b) for b, _ in pairs_np]
    pair_sharp = [to_dev(s) for _, s in pairs_np]
    bank_file = gpu_synth.load_kernel_bank(pack_dir / "kernels.npz")
    if bank_file.params.get("split") != "train":
        raise SystemExit(f"{pack_dir / 'kernels.npz'}: drawn from the {bank_file.params.get('split')!r} kernels, "
                         "not the training split")
    kernels = bank_file.kernels.to(device)
    log.info("data on %s: %d photos, %d pairs, %d kernels %s in %.1f s", device, len(photos), len(pair_blur),
             len(kernels), bank_file.source_counts(), time.monotonic() - t0)

    # model, config, optimizer
    ckpt = load_checkpoint(args.resume) if args.resume else None
    if ckpt is not None:
        cfg = TrainConfig.from_dict(ckpt["config"])
        if args.steps:
            cfg = dataclasses.replace(cfg, steps=args.steps)
        init = ckpt.get("init")
    elif args.init:
        model_cfg, state, meta = read_weights(args.init)
        cfg = _train_config(args, model_cfg, meta.get("variant", "custom"))
        init = str(args.init)
    else:
        cfg = _train_config(args, variant_config(args.variant), args.variant)
        init = None
    torch.manual_seed(cfg.seed)
    model = LMFN(cfg.model).to(device)
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
    elif args.init:
        model.load_state_dict(state)
        if cfg.revive:
            revive(model, seed=cfg.seed)  # as lmfn_cli.train: dead units back, same output
    channels_last = False
    if args.channels_last != "off" and (args.channels_last == "on" or device.type == "cuda"):
        try:
            model.to(memory_format=torch.channels_last)
            channels_last = True
        except (RuntimeError, ValueError) as exc:
            log.info("channels-last refused (%s); contiguous layout", exc)
            model.to(memory_format=torch.contiguous_format)
    optimizer = make_optimizer(model, cfg)
    step, elapsed_before = 0, 0.0
    if ckpt is not None:
        load_optimizer_state(optimizer, ckpt["optimizer"])
        step, elapsed_before = int(ckpt["step"]), float(ckpt.get("elapsed", 0.0))
        log.info("resumed %s at step %d", args.resume, step)
        if step >= cfg.steps:
            log.warning("the checkpoint's schedule ended at step %d: give --steps (a new total) to train on", cfg.steps)
    bf16 = args.precision == "bf16" or (args.precision == "auto" and device.type == "cuda"
                                        and torch.cuda.is_bf16_supported())
    net = torch.compile(model) if args.compile else model
    B, P = cfg.batch, cfg.patch
    n_pair = round(args.paired_share * B) if pair_blur else 0

    def blur_choice() -> str:
        if args.blur != "auto":
            return args.blur
        gen = torch.Generator().manual_seed(0)
        times = {}
        for method in ("fft", "conv", "fft", "conv"):
            sync()
            t = time.perf_counter()
            gpu_synth.make_batch(photos, B - n_pair or 1, P, gen, kernels, method=method)
            sync()
            times[method] = min(times.get(method, math.inf), time.perf_counter() - t)
        log.info("blur: fft %.1f ms, conv %.1f ms per batch", 1e3 * times["fft"], 1e3 * times["conv"])
        return min(times, key=times.get)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    blur_method = blur_choice()

    def batch_at(s: int) -> tuple[torch.Tensor, torch.Tensor]:
        gen = torch.Generator().manual_seed(_step_seed(cfg.seed, s))
        parts = []
        if B - n_pair:
            parts.append(gpu_synth.make_batch(photos, B - n_pair, P, gen, kernels, method=blur_method))
        if n_pair:
            parts.append(paired_crops(pair_blur, pair_sharp, n_pair, P, gen))
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])

    def train_step(blurry: torch.Tensor, sharp: torch.Tensor, lr: float) -> tuple[torch.Tensor, torch.Tensor]:
        for group in optimizer.param_groups:
            group["lr"] = lr
        x = blurry.contiguous(memory_format=torch.channels_last) if channels_last else blurry
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            pred = net(x)
        loss = loss_fn(cfg, pred, sharp)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        return loss.detach(), pred.detach()

    log_path, ckpt_path, weights_path = out / "log.jsonl", out / "checkpoint.pt", out / "last.safetensors"
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    setup = {"event": "start", "device": name, "torch": torch.__version__, "step": step, "batch": B, "patch": P,
             "paired_per_batch": n_pair, "blur": blur_method, "precision": "bf16" if bf16 else "fp32",
             "channels_last": channels_last, "compile": bool(args.compile), "init": init,
             "resume": str(args.resume) if args.resume else None, "startup_s": round(time.monotonic() - t0, 1)}

    def write_log(entry: dict) -> None:
        with log_path.open("a") as fh:
            fh.write(json.dumps(entry) + "\n")

    summary: dict = {}

    def save(final: bool) -> None:
        sync()
        now = time.monotonic()
        extra = {"pack": {"photos": len(photos), "pairs": len(pair_blur), "kernels": len(kernels),
                          "kernel_sources": bank_file.source_counts(), "max_side": pack_meta.get("max_side")},
                 "paired_share": args.paired_share, "blur": blur_method, "device": name}
        elapsed = elapsed_before + now - session_start
        ckpt_obj = {"format": "lmfn-checkpoint/1", "config": cfg.to_dict(), "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(), "scaler": {}, "step": step, "elapsed": elapsed, "best": {},
                    "lmfn_version": __version__, "gpu_train": extra, **({"init": init} if init else {})}
        with atomic_path(ckpt_path) as tmp:
            torch.save(ckpt_obj, tmp)
        info = {"which": "last", "step": step, "seconds": round(elapsed, 1), "loss": cfg.loss,
                "fft_weight": cfg.fft_weight, "lr": cfg.lr, "schedule": cfg.schedule, "warmup": cfg.warmup,
                "steps": cfg.steps, "batch": B, "patch": P, "seed": cfg.seed, "init": init, "data": extra,
                "made_by": "benchmarks/gpu_train.py", "lmfn_version": __version__}
        stored = {k: v.to(torch.float16) if v.is_floating_point() else v for k, v in model.state_dict().items()}
        save_weights(model, weights_path, variant=cfg.variant, dtype=torch.float16,
                     metadata={"training": json.dumps(info), "tensors_sha256": tensors_sha256(stored)})
        size = ckpt_path.stat().st_size
        if size > 16 * MiB:
            log.warning("%s is %.1f MiB: over the 16 MiB a file may have to come back from $OUT", ckpt_path, size / MiB)
        log.info("%s at step %d (%.1f MiB) and %s", "final checkpoint" if final else "checkpoint", step, size / MiB,
                 weights_path.name)

    # the loop
    util = UtilSampler(device)
    auto_steps = not args.steps and ckpt is None
    start_step = step
    measure_from, measure_to = step + 3, step + 13
    session_start = last_ckpt = time.monotonic()
    first = True
    meter = Meter(device, B * P * P, util)
    timing_start = None

    def emit(at: int, lr: float, pred: torch.Tensor, blurry: torch.Tensor, sharp: torch.Tensor) -> dict:
        entry = meter.entry(at, lr, elapsed_before + time.monotonic() - session_start, pred, blurry, sharp)
        write_log(entry)
        print(json.dumps(entry), flush=True)
        return entry

    stopped_by = "steps"
    write_log(setup)
    print(json.dumps(setup), flush=True)
    while step < cfg.steps:
        now = time.monotonic()
        if stop["flag"]:
            stopped_by = "signal"
            break
        if now - t0 >= args.minutes * 60:
            stopped_by = "minutes"
            break
        if args.max_steps and step - start_step >= args.max_steps:
            stopped_by = "max_steps"
            break
        lr = learning_rate(cfg, step)
        if device.type == "cuda":
            e = [torch.cuda.Event(enable_timing=True) for _ in range(3)]
            e[0].record()
        t_a = time.perf_counter()
        blurry, sharp = batch_at(step)
        if device.type == "cuda":
            e[1].record()
        t_b = time.perf_counter()
        if first:  # the first step finds out what this machine and model can run
            try:
                loss, pred = train_step(blurry, sharp, lr)
            except (RuntimeError, NotImplementedError) as exc:
                if "out of memory" in str(exc).lower():
                    raise SystemExit(f"out of GPU memory at batch {B} x {P}: lower --batch") from exc
                log.warning("first step failed (%s); retrying in fp32, contiguous, eager", str(exc).splitlines()[0])
                bf16, net, channels_last = False, model, False
                setup.update(precision="fp32", channels_last=False, compile=False, fallback=str(exc).splitlines()[0])
                write_log({**setup, "event": "fallback"})
                model.to(memory_format=torch.contiguous_format)
                loss, pred = train_step(blurry, sharp, lr)
            first = False
        else:
            loss, pred = train_step(blurry, sharp, lr)
        if device.type == "cuda":
            e[2].record()
            meter.add(loss, tuple(e), 0.0, 0.0)
        else:
            meter.add(loss, None, t_b - t_a, time.perf_counter() - t_b)
        step += 1
        if auto_steps and step in (measure_from, measure_to):
            sync()
            if step == measure_from:
                timing_start = time.monotonic()
            else:
                rate = (measure_to - measure_from) / (time.monotonic() - timing_start)
                left = args.minutes * 60 - (time.monotonic() - t0) - 5
                cfg = dataclasses.replace(cfg, steps=max(step + 1, step + int(rate * left)))
                if cfg.warmup > cfg.steps // 10:  # a warm-up that would fill the run: a tenth of it
                    log.warning("warm-up %d steps cut to %d (a tenth of the %d-step schedule)", cfg.warmup,
                                cfg.steps // 10, cfg.steps)
                    cfg = dataclasses.replace(cfg, warmup=cfg.steps // 10)
                write_log({"event": "schedule", "step": step, "steps_per_s": round(rate, 3), "steps": cfg.steps})
                log.info("%.2f steps/s measured: cosine schedule over %d steps", rate, cfg.steps)
        now = time.monotonic()
        if step % cfg.log_every == 0 or step == cfg.steps:
            summary = emit(step, lr, pred, blurry, sharp)
            now = time.monotonic()
        if now - last_ckpt >= args.ckpt_minutes * 60:
            save(final=False)
            last_ckpt = time.monotonic()
    if meter.n:
        summary = emit(step, lr, pred, blurry, sharp)
    if auto_steps and step < measure_to:  # stopped before the speed was measured: the schedule ends here
        cfg = dataclasses.replace(cfg, steps=max(1, step))
    util.stop.set()
    save(final=True)
    try:
        from lmfn_cli.train import plot_curve

        plot_curve(log_path, out / "curve.png")
    except Exception as exc:  # a picture is not worth failing a run for
        log.info("no curve.png (%s)", exc)
    total = time.monotonic() - t0
    summary = {"event": "end", "step": step, "stopped_by": stopped_by, "schedule_steps": cfg.steps,
               "session_s": round(total, 1), "last": summary, **{k: setup[k] for k in
               ("device", "batch", "patch", "blur", "precision", "channels_last")}}
    write_log(summary)
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps(summary), flush=True)
    return summary



# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--pack", action="store_true", help="write the data pack (on the CPU machine)")
    mode.add_argument("--train", action="store_true", help="train from a pack (on the GPU machine)")
    ap.add_argument("--pack-dir", default=str(REPO / "scratch/gpu-pack"))
    ap.add_argument("--seed", type=int, default=0)
    g = ap.add_argument_group("--pack")
    g.add_argument("--shared", default=str(SHARED), help="the shared data folder (default ../shared)")
    g.add_argument("--photos", action="append", help="photo folders (default BSDS500 train+test, Urban100)")
    g.add_argument("--max-side", type=int, default=512, help="photos larger than this are downscaled (px)")
    g.add_argument("--jpeg-quality", type=int, default=95)
    g.add_argument("--kernels", help="folder with usrnet_kernels_12.mat and lai2016_gyro/ (default shared's)")
    g.add_argument("--kernel-count", type=int, default=4096)
    g.add_argument("--kernel-size", type=int, default=31)
    g.add_argument("--frames", help="a 240 fps frame folder (default shared's GOPR0477_11_00)")
    g.add_argument("--gopro-pairs", type=int, default=160, help="GoPro-style pairs to make (0: none)")
    g.add_argument("--gopro-stop", type=int, default=250, help="frames from this index on are held out")
    g.add_argument("--gopro-crop", type=int, default=256)
    g.add_argument("--pairs-dir", help="take pairs (blur/ + sharp/) from this folder instead of making them")
    g.add_argument("--max-mib", type=float, default=52.0, help="pairs are added while the pack stays under this")
    g = ap.add_argument_group("--train")
    g.add_argument("--out", help="output folder ($OUT on the GPU machine)")
    g.add_argument("--init", help="start from these weights (their config is the model)")
    g.add_argument("--variant", default="lmfn-residual", help="the model without --init")
    g.add_argument("--resume", help="continue from this checkpoint file (its config; --steps may change it)")
    g.add_argument("--device", help="cuda (default when there is one) or cpu")
    g.add_argument("--minutes", type=float, default=9.0, help="wall time from this script's start")
    g.add_argument("--max-steps", type=int, default=0, help="stop after this many steps this session (0: no limit)")
    g.add_argument("--ckpt-minutes", type=float, default=2.0)
    g.add_argument("--batch", type=int, default=64)
    g.add_argument("--patch", type=int, default=128)
    g.add_argument("--paired-share", type=float, default=0.2, help="share of each batch from the GoPro-style pairs")
    g.add_argument("--lr", type=float, default=5e-4)
    g.add_argument("--min-lr", type=float, default=1e-6)
    g.add_argument("--warmup", type=int, default=300)
    g.add_argument("--loss", default="charbonnier", choices=("mse", "l1", "charbonnier", "psnr"))
    g.add_argument("--fft-weight", type=float, default=0.05)
    g.add_argument("--grad-clip", type=float, default=0.0)
    g.add_argument("--steps", type=int, default=0, help="cosine schedule length (0: fitted to --minutes)")
    g.add_argument("--log-every", type=int, default=50)
    g.add_argument("--precision", default="auto", choices=("auto", "bf16", "fp32"))
    g.add_argument("--channels-last", default="auto", choices=("auto", "on", "off"))
    g.add_argument("--compile", action="store_true", help="torch.compile the model (minutes of compiling)")
    g.add_argument("--blur", default="auto", choices=("auto", "fft", "conv"), help="auto: time both, keep the faster")
    g.add_argument("--threads", type=int, default=0)
    args = ap.parse_args(argv)
    if args.train and not args.out:
        ap.error("--train needs --out")
    if not 0 <= args.paired_share <= 1:
        ap.error("--paired-share must be in [0, 1]")
    return args


def main(argv: list[str] | None = None) -> int:
    t0 = time.monotonic()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S")
    args = parse_args(argv)
    if args.pack:
        make_pack(args)
    else:
        run_training(args, t0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
