"""lmfn synth: make (blurry, sharp) training and validation pairs."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click

from ..errors import LMFNError
from . import main
from .options import EXIT_FAILED, fail


@main.command()
@click.argument("inputs", nargs=-1, type=click.Path(exists=True, path_type=Path))
@click.option("-o", "--output", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path), help="Folder for blur/, sharp/ and pairs.jsonl.")
@click.option("--seed", required=True, type=int, help="Every pair is reproducible from this seed.")
@click.option("--kernels", type=click.Path(file_okay=False, exists=True), help="Folder with usrnet_kernels_12.mat and lai2016_gyro/ (else synthetic blur only).")
@click.option("--kernel-split", type=click.Choice(["all", "train", "val"]), default="all", show_default=True,
              help="Which measured kernels: train leaves out USRNet 8-11 and gyro_04 (the validation sets' kernels); val uses only those.")
@click.option("--crop", type=int, default=None, help="Crop each pair to this square size.")
@click.option("--crop-mode", type=click.Choice(["center", "random"]), default="center", show_default=True)
@click.option("--repeats", default=1, show_default=True, help="Pairs per input photo (NAME-0, NAME-1, ...).")
@click.option("--max-blur", type=int, default=None, help="Largest blur extent in pixels [default: 29].")
@click.option("--frames", type=click.Path(file_okay=False, exists=True, path_type=Path), help="Instead of photos: average 7-13 consecutive video frames (GoPro-style).")
@click.option("--count", default=0, help="With --frames: how many pairs.")
@click.option("--start", type=int, default=None, help="With --frames: first frame index to use.")
@click.option("--stop", type=int, default=None, help="With --frames: frame index to stop before.")
@click.option("--estimated-kernels", "estimated", type=click.IntRange(1), default=None, metavar="N",
              help="Instead of pairs: N (true, estimated) kernel pairs for training the non-blind stage, "
                   "OUT/estimated-kernels.npz (resumes if it exists).")
def synth(inputs: tuple[Path, ...], out_dir: Path, seed: int, kernels: str | None, kernel_split: str, crop: int | None, crop_mode: str,
          repeats: int, max_blur: int | None, frames: Path | None, count: int, start: int | None, stop: int | None,
          estimated: int | None) -> None:
    """Make (blurry, sharp) pairs from sharp photos, or from high-frame-rate video frames.

    Blur: random camera-shake trajectories, USRNet and real gyroscope kernels, spatially varying
    6-D camera paths, in linear light, with shot/read noise, clipped highlights and JPEG. Writes
    OUT/blur/NAME.png, OUT/sharp/NAME.png and OUT/pairs.jsonl (what each pair got). Never
    overwrites.

    With --estimated-kernels N: random 256 px crops of the photos blurred by drawn kernels
    (training split with --kernel-split train), each kernel estimated as `lmfn deblur --method
    kernel` does on a small photo; the (true, estimated) pairs train the non-blind stage on the
    estimator's own errors (recipe key estimated_kernels). About 3 s a pair on 2 cores.

    \b
    Example:
      lmfn synth photos/ -o val/ --seed 1 --kernels kernels/
      lmfn synth photos/ -o train/ --seed 3 --kernels kernels/ --kernel-split train --crop 192 --crop-mode random
      lmfn synth --frames video-frames/ --count 200 --stop 250 --crop 256 -o train-frames/ --seed 2
      lmfn synth photos/ -o banks/ --seed 4 --kernels kernels/ --kernel-split train --estimated-kernels 400
    """
    from ..images import IMAGE_EXTENSIONS
    from .. import synth as sy

    try:
        if frames is not None:
            if inputs or count < 1:
                raise click.UsageError("--frames takes no photo inputs and needs --count N")
            infos = sy.make_frame_pairs(frames, out_dir, seed=seed, count=count, start=start, stop=stop, crop=crop)
        else:
            if not inputs:
                raise click.UsageError("give sharp photos or folders of them, or --frames")
            paths = []
            for item in inputs:
                paths += sorted(p for p in item.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS) if item.is_dir() else [item]
            cfg = sy.SynthConfig()
            if max_blur is not None:
                cfg = dataclasses.replace(cfg, kernel_size=max_blur + 2 + (max_blur + 1) % 2)
            bank = sy.KernelBank.from_dir(kernels).split(kernel_split) if kernels else None
            if estimated is not None:
                _estimated_kernels(paths, out_dir, estimated, seed, bank)
                return
            if crop is not None and crop_mode == "random":
                cfg, crop = dataclasses.replace(cfg, crop=crop), None
            infos = sy.make_pairs(paths, out_dir, seed=seed, cfg=cfg, bank=bank, crop=crop, repeats=repeats)
    except LMFNError as exc:
        raise fail(str(exc), EXIT_FAILED) from None
    click.echo(f"{len(infos)} pairs in {out_dir}")


def _estimated_kernels(paths: list[Path], out_dir: Path, count: int, seed: int, bank) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from ..synth.estimated import build_estimated_kernels
    from ..train_data import load_sharp_photos
    from .options import stderr

    path = out_dir / "estimated-kernels.npz"
    out_dir.mkdir(parents=True, exist_ok=True)
    with Progress(TextColumn("estimating kernels"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=stderr, disable=not stderr.is_terminal, transient=True) as progress:
        task = progress.add_task("kernels", total=count)
        try:
            built = build_estimated_kernels(load_sharp_photos(paths), path, count, seed, bank=bank,
                                            on_progress=lambda done, total: progress.update(task, completed=done))
        except ValueError as exc:
            raise click.UsageError(str(exc)) from None
    click.echo(f"{len(built)} kernel pairs ({len(built.usable())} the kernel method would use) in {path}")
