"""lmfn train: train LMFN from a recipe and/or options, with checkpoints, resume and export."""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path

import click

from ..errors import LMFNError
from . import main
from .options import EXIT_FAILED, device_option, fail


@main.command()
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--recipe", "recipe_path", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="TOML recipe (see recipes/); options given here override its fields.")
@click.option("--variant", default="lmfn", show_default=True, help="Model variant to train (see lmfn info).")
@click.option("--global-residual/--no-global-residual", default=None, help="Add the input to the output (overrides the variant).")
@click.option("--paired", multiple=True, type=click.Path(file_okay=False, exists=True), help="Paired folder: blur/ + sharp/ or GoPro's */blur + */sharp. Repeatable.")
@click.option("--sharp", multiple=True, type=click.Path(file_okay=False, exists=True), help="Folder of sharp photos to blur on the fly. Repeatable.")
@click.option("--paired-fraction", type=click.FloatRange(0, 1), default=None,
              help="Share of crops from --paired when --sharp is also given [default: by image count].")
@click.option("--kernels", type=click.Path(file_okay=False, exists=True), help="Folder with usrnet_kernels_12.mat and lai2016_gyro/ for on-the-fly blur.")
@click.option("--noise-prob", default=0.8, show_default=True, help="On-the-fly blur: share of pairs given sensor noise.")
@click.option("--jpeg-prob", default=0.5, show_default=True, help="On-the-fly blur: share of pairs JPEG-compressed.")
@click.option("--noise-model", type=click.Choice(["clipped-linear", "zero-mean"]), default="clipped-linear", show_default=True,
              help="On-the-fly blur: zero-mean noise teaches no brightness change; clipped-linear brightens shadows.")
@click.option("--w-none", default=0.0, show_default=True, help="On-the-fly blur: weight of unblurred pairs (the blur sources' weights sum to 1).")
@click.option("--w-small", default=0.0, show_default=True, help="On-the-fly blur: weight of barely blurred (1-2 px) pairs.")
@click.option("--srgb-blur-prob", default=0.0, show_default=True, help="On-the-fly blur: share of pairs blurred in sRGB values, not linear light.")
@click.option("--none-target", type=click.Choice(["clean", "input"]), default="clean", show_default=True,
              help="On-the-fly blur: target of unblurred pairs; input makes them exact identities (noise and JPEG kept).")
@click.option("--highlight-prob", default=0.25, show_default=True,
              help="On-the-fly blur: share of pairs with highlights boosted above white before the blur.")
@click.option("--kernel-split", type=click.Choice(["train", "all"]), default="train", show_default=True,
              help="train: leave out the kernels the validation sets use (USRNet 8-11, gyro_04).")
@click.option("--val", multiple=True, type=click.Path(file_okay=False, exists=True), help="Paired folder for validation (e.g. made by benchmarks/validation.py --build-only). Repeatable: each set is scored, the best checkpoint has the best mean.")
@click.option("--val-crop", default=256, show_default=True, help="Centre crop of validation images (0: whole).")
@click.option("--val-max", default=24, show_default=True, help="Use at most this many validation pairs (0: all).")
@click.option("--loss", type=click.Choice(["mse", "l1", "charbonnier", "psnr"]), default="mse", show_default=True, help="psnr: minus each image's PSNR.")
@click.option("--fft-weight", default=0.0, show_default=True, help="Weight of an L1 loss on the FFT of the error.")
@click.option("--lr", default=1e-4, show_default=True)
@click.option("--min-lr", default=1e-6, show_default=True, help="Final learning rate of the cosine schedule.")
@click.option("--weight-decay", default=1e-4, show_default=True)
@click.option("--schedule", type=click.Choice(["step", "cosine", "constant"]), default="step", show_default=True)
@click.option("--step-size", default=500_000, show_default=True, help="Step schedule: divide lr by --gamma every this many steps.")
@click.option("--gamma", default=0.1, show_default=True)
@click.option("--warmup", default=0, show_default=True, help="Linear warm-up steps.")
@click.option("--steps", type=int, default=None, help="Total steps of the run [default: 1000000].")
@click.option("--batch", default=8, show_default=True)
@click.option("--patch", default=128, show_default=True, help="Training crop size in pixels.")
@click.option("--augment/--no-augment", default=True, show_default=True, help="Random flips and 90-degree rotations.")
@click.option("--grad-clip", default=0.0, show_default=True, help="Clip the gradient norm (0: off).")
@click.option("--ema", type=click.FloatRange(0, 1, max_open=True), default=0.0, show_default=True,
              help="Keep a moving average of the weights with this decay, e.g. 0.999 (0: off); export it with --export-which ema.")
@click.option("--seed", default=0, show_default=True)
@click.option("--val-every", default=500, show_default=True)
@click.option("--log-every", default=20, show_default=True)
@click.option("--ckpt-minutes", default=5.0, show_default=True, help="Checkpoint at least this often.")
@click.option("--resume", is_flag=True, help="Continue the run in RUN_DIR exactly where its checkpoint left off.")
@click.option("--init", "init_weights", type=click.Path(dir_okay=False, exists=True), help="Start a new run from these weights.")
@click.option("--max-minutes", type=float, default=None, help="Stop cleanly (with a checkpoint) after this wall time.")
@click.option("--until-step", type=int, default=None,
              help="Stop cleanly (with a checkpoint) once the run has done this many steps; the schedule is unchanged (--steps sets it).")
@click.option("--workers", default=0, show_default=True, help="Data loader processes (0: in the training process).")
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16", "fp16"]), default=None,
              help="Autocast precision [default: auto for a new run; a resumed run keeps the one it recorded]. "
                   "auto: bf16 on CPUs with native bf16 when a probe shows it faster, bf16 on CUDA (fp16 without it), else fp32.")
@click.option("--channels-last/--no-channels-last", default=None,
              help="NHWC layout [default: on for a new run, 1.15x faster in fp32 on a 2-core AVX2 CPU; a resumed run keeps its own].")
@click.option("--amp/--no-amp", default=None, hidden=True, help="Deprecated: --no-amp is --precision fp32.")
@click.option("--threads", type=int, default=None, help="CPU threads for torch.")
@click.option("--export", "export_path", type=click.Path(dir_okay=False, path_type=Path), help="At the end, write the best weights here (.safetensors).")
@click.option("--export-fp16", is_flag=True, help="Store exported weights as fp16.")
@click.option("--export-which", type=click.Choice(["best", "last", "ema"]), default="best", show_default=True,
              help="Export the best-validating weights, the latest, or their moving average (runs with --ema).")
@device_option
@click.option("-q", "--quiet", is_flag=True, help="No progress lines.")
@click.pass_context
def train(ctx: click.Context, run_dir: Path, recipe_path: Path | None, variant: str, global_residual: bool | None, resume: bool,
          init_weights: str | None, max_minutes: float | None, until_step: int | None, workers: int, precision: str, channels_last: bool | None,
          amp: bool | None, threads: int | None, export_path: Path | None, export_fp16: bool, export_which: str,
          device: str, quiet: bool, **fields) -> None:
    """Train LMFN on paired folders and/or sharp photos blurred on the fly.

    The defaults are the paper's recipe (MSE, Adam 0.9/0.999, weight decay 1e-4, lr 1e-4 divided
    by 10 every 500k steps). RUN_DIR gets checkpoint.pt (every few minutes), best.safetensors,
    log.jsonl and curve.png. --resume continues exactly (the run's own config is used; --steps
    may extend it). To export without training: --resume --max-minutes 0 --export FILE.

    A recipe (--recipe recipes/NAME.toml) holds a run's settings in one file; options given
    on the command line override its fields, and it is saved in the checkpoint and the
    exported weights.

    \b
    Example:
      lmfn synth photos/ -o pairs/ --seed 1 && lmfn synth val-photos/ -o val/ --seed 2
      lmfn train runs/a --paired pairs/ --val val/ --max-minutes 60
      lmfn train runs/a --resume --max-minutes 60 --export weights/lmfn-mine.safetensors
      lmfn train runs/b --recipe recipes/lmfn-synthblur-v2-stage1.toml --max-minutes 60
    """
    from ..inference import resolve_device
    from ..recipes import read_recipe, resolve_init
    from ..train import TrainConfig, export_weights, train as run_training

    if threads:
        import torch

        torch.set_num_threads(threads)
    try:
        dev = resolve_device(device)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--device") from None
    def given(name: str) -> bool:
        return ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE

    if amp is False and not given("precision"):
        precision = "fp32"
    recipe = None
    steps = fields.pop("steps")
    if resume:
        explicit = [k for k in fields if given(k)]
        if explicit or recipe_path or global_residual is not None or given("variant"):
            click.echo(f"lmfn: note: --resume uses the run's saved config; ignoring {', '.join(explicit) or 'model options and --recipe'}", err=True)
        cfg = None
    else:
        try:
            if recipe_path is not None:
                recipe = read_recipe(recipe_path)
                # the recipe replaces the defaults; options given on the command line win
                given_fields = {k: v for k, v in fields.items() if given(k)}
                if given("variant"):
                    given_fields["variant"] = variant
                if global_residual is not None:
                    given_fields["global_residual"] = global_residual
                if steps is not None:
                    given_fields["steps"] = steps
                cfg = recipe.config(**given_fields)
                if init_weights is None and recipe.init:
                    init_weights = str(resolve_init(recipe.init))
                if not given("precision") and recipe.precision:
                    precision = recipe.precision
            else:
                overrides = {} if global_residual is None else {"global_residual": global_residual}
                for key in ("paired", "sharp", "val"):
                    fields[key] = tuple(fields[key])
                cfg = TrainConfig.for_variant(variant, model_overrides=overrides, steps=steps or 1_000_000, **fields)
        except LMFNError as exc:
            raise click.BadParameter(str(exc)) from None

    def progress(entry: dict) -> None:
        if quiet:
            return
        if "loss" in entry:
            speed = f"  {entry['steps_per_s']:.2f} steps/s" if "steps_per_s" in entry else ""
            click.echo(f"step {entry['step']:>8d}  loss {entry['loss']:.5f}  lr {entry['lr']:.2e}  {entry['elapsed']:.0f}s{speed}", err=True)
        else:
            ema = f"  EMA {entry['val_ema_psnr']:.2f} dB" if "val_ema_psnr" in entry else ""
            click.echo(f"step {entry['step']:>8d}  val PSNR {entry['val_psnr']:.2f} dB (input {entry['val_input_psnr']:.2f})  SSIM {entry['val_ssim']:.4f}{ema}", err=True)

    # Ctrl-C or SIGTERM (a cluster's time limit): finish the step, checkpoint, exit cleanly.
    stop = threading.Event()

    def ask_to_stop(signum, frame) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        click.echo("lmfn: stopping after this step (again to abort without a checkpoint)", err=True)
        stop.set()

    previous = {sig: signal.signal(sig, ask_to_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        state = run_training(cfg, run_dir, resume=resume, init_weights=init_weights, device=dev, max_minutes=max_minutes,
                             until_step=until_step, steps=steps, workers=workers, precision=precision, channels_last=channels_last,
                             recipe=recipe, on_log=progress, should_stop=stop.is_set)
        click.echo(json.dumps({"run": str(run_dir), "step": state.step, "best": state.best}))
        if export_path is not None:
            written = export_weights(run_dir, export_path, which=export_which, fp16=export_fp16)
            click.echo(str(written))
    except LMFNError as exc:
        raise fail(str(exc), EXIT_FAILED) from None
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
