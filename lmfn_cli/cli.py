"""The ``lmfn`` command line. The only module that touches click, rich or the exit code.

Exit codes: 0 all done, 1 some inputs failed, 2 usage error, 3 no usable weights (missing,
corrupt, not downloadable).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import click
from rich.console import Console
from rich.logging import RichHandler
from rich.progress import (BarColumn, DownloadColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                           TransferSpeedColumn)
from rich.table import Table

from . import __version__
from .errors import ConfigError, LMFNError, UnknownWeightsError, WeightsError
from .images import DEFAULT_MAX_PIXELS, FORMATS
from .evaluation import SSIM_VARIANTS
from .inference import PRECISIONS
from .tiling import DEFAULT_OVERLAP, MIN_TILE

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NO_WEIGHTS = 0, 1, 2, 3

stderr = Console(stderr=True)


def fail(message: str, code: int) -> "click.exceptions.Exit":
    click.echo(f"lmfn: error: {message}", err=True)
    return click.exceptions.Exit(code)


# --- shared option groups, written once --------------------------------------------------


def weights_option(f):
    f = click.option(
        "-m",
        "--model",
        "model_name",
        default=None,
        metavar="NAME",
        help="Named weights (lmfn weights list), from the cache; downloaded if missing unless LMFN_OFFLINE=1.",
    )(f)
    return click.option(
        "-w",
        "--weights",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="Weights file (.safetensors with its config in the metadata) [default: the bundled weights].",
    )(f)


def verbose_option(f):
    """-v/-vv after the command too: ``lmfn deblur -v`` says which weights were used."""

    def raise_level(ctx: click.Context, param: click.Parameter, value: int) -> int:
        if value:
            level = logging.INFO if value == 1 else logging.DEBUG
            root = logging.getLogger()
            root.setLevel(min(root.level, level))
        return value

    return click.option("-v", "--verbose", count=True, expose_value=False, callback=raise_level,
                        help="More diagnostics on stderr (-vv for debug); same as before the command.")(f)


def device_option(f):
    return click.option(
        "--device",
        default="auto",
        show_default=True,
        help="auto (CUDA if available, else CPU), cpu, cuda, cuda:N or mps.",
    )(f)


@contextmanager
def _download_progress(quiet: bool = False) -> Iterator[tuple[Callable[[int, int], None], Callable[[str], None]]]:
    """(on_progress, describe): download progress as a rich bar on stderr, only on a terminal."""
    show = not quiet and stderr.is_terminal
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
    label = ["download"]
    tasks: dict[str, int] = {}  # one bar per name, made when its first bytes arrive (not for cache hits)
    with Progress(*columns, console=stderr, disable=not show, transient=True) as progress:

        def on_progress(done: int, total: int) -> None:
            if label[0] not in tasks:
                tasks[label[0]] = progress.add_task(label[0], total=total)
            progress.update(tasks[label[0]], completed=done, total=total)

        def describe(text: str) -> None:
            label[0] = text

        yield on_progress, describe


def _load(weights: Path | None, device_name: str, quiet: bool = False, model_name: str | None = None):
    return _load_with_info(weights, device_name, quiet, model_name)[0]


def _load_with_info(weights: Path | None, device_name: str, quiet: bool = False, model_name: str | None = None):
    """(model, info): info names the weights for reports (name, file, SHA-256, parameters)."""
    from .download import file_sha256
    from .inference import resolve_device
    from .weights import load_model, resolve_weights

    if weights is not None and Path(weights).suffix.lower() == ".onnx" and device_name == "auto":
        device_name = "cpu"  # ONNX weights run on the CPU (ONNX Runtime), so auto means the CPU
    try:
        device = resolve_device(device_name)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--device") from None
    if device_name == "auto" and device.type == "cpu" and not quiet:
        click.echo("lmfn: note: no CUDA GPU found; running on the CPU (--device cpu hides this note)", err=True)
    if weights is not None and model_name is not None:
        raise click.UsageError("give -w/--weights FILE or -m/--model NAME, not both")
    try:
        with _download_progress(quiet) as (on_progress, describe):
            if model_name:
                describe(model_name)
            path = resolve_weights(weights, model_name, on_progress=on_progress)
        model = load_model(path, device=device)
    except UnknownWeightsError as exc:
        raise click.BadParameter(str(exc), param_hint="-m/--model") from None
    except WeightsError as exc:
        raise fail(str(exc), EXIT_NO_WEIGHTS) from None
    info = {"name": model_name or Path(path).stem, "file": str(path), "sha256": file_sha256(path),
            "parameters": sum(p.numel() for p in model.parameters())}
    return model, info


# --- commands -------------------------------------------------------------------------------


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="lmfn")
@click.option("-v", "--verbose", count=True, help="More diagnostics on stderr (-vv for debug).")
def main(verbose: int) -> None:
    """Remove motion blur from photos with LMFN, a 1.25M-parameter network that runs on a CPU.

    \b
    Example:
      lmfn deblur shaky/*.jpg -o sharp/
    """
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    if stderr.is_terminal:
        handler: logging.Handler = RichHandler(console=stderr, show_time=False, show_path=False)
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:  # logs, pipes: one plain line per message, like the error lines
        handler = logging.StreamHandler()
        handler.setFormatter(_PlainFormatter())
    logging.basicConfig(level=level, handlers=[handler], force=True)


class _PlainFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"lmfn: {record.levelname.lower()}: {record.getMessage()}"


class TileType(click.ParamType):
    """``auto`` -> None (pick from free memory), ``0`` -> whole image, ``N`` -> N x N tiles."""

    name = "auto|0|N"

    def convert(self, value, param, ctx):
        if value is None or isinstance(value, int) and value >= 0:
            return value
        if str(value).strip().lower() == "auto":
            return None
        try:
            tile = int(value)
        except ValueError:
            self.fail(f"{value!r} is not auto, 0 or a number of pixels", param, ctx)
        if tile != 0 and tile < MIN_TILE:
            self.fail(f"tiles must be at least {MIN_TILE} px (or 0 for the whole image)", param, ctx)
        return tile


def tile_options(f):
    f = click.option("--tile-overlap", "overlap", type=click.IntRange(0), default=DEFAULT_OVERLAP, show_default=True,
                     help="Pixels shared by neighbouring tiles, blended smoothly.")(f)
    return click.option("--tile", type=TileType(), default="auto", show_default=True, metavar="auto|0|N",
                        help="Tile size: auto (from free memory), 0 (whole image at once) or N pixels.")(f)


def precision_option(f):
    return click.option("--precision", type=click.Choice(PRECISIONS), default="auto", show_default=True,
                        help="auto: fp16 on CUDA, fp32 on CPU. Half-precision tiles that overflow are redone in fp32.")(f)


def threads_option(f):
    return click.option("--threads", type=click.IntRange(1), default=None, help="CPU threads for torch [default: torch's choice].")(f)


def model_run_options(f):
    """Which weights, and how the network runs: -w/-m, --device, --precision, --tile,
    --tile-overlap, --threads, -v (deblur, bench)."""
    for option in (verbose_option, threads_option, tile_options, precision_option, device_option, weights_option):
        f = option(f)
    return f


def protocol_options(f):
    """--ssim, --y-channel, --crop-border: how results are scored (deblur --gt, bench)."""
    f = click.option("--crop-border", type=click.IntRange(0), default=0, show_default=True,
                     help="Pixels dropped on each side before scoring.")(f)
    f = click.option("--y-channel", is_flag=True, help="Score the BT.601 luma instead of RGB.")(f)
    return click.option("--ssim", "ssim_variant", type=click.Choice(SSIM_VARIANTS), default=None,
                        help="SSIM convention: gaussian (Wang et al./scikit-image) or matlab (MATLAB ssim on the "
                             "RGB volume, as the GoPro/HIDE scripts) [default: matlab for gopro, else gaussian].")(f)


def _check_report_suffix(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path | None:
    """Refuse a report name write_report cannot write now, not after a whole benchmark has run."""
    if value is not None and value.suffix.lower() not in (".json", ".csv"):
        raise click.BadParameter(f"{value}: a report must end in .json or .csv", ctx=ctx, param=param)
    return value


def report_option(f):
    return click.option("--report", "report_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
                        metavar="FILE.json|FILE.csv", callback=_check_report_suffix,
                        help="Write per-image scores, means, protocol, model (name, SHA-256), device and version.")(f)


@main.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("-o", "--output", "out", required=True, metavar="DIR|-",
              help="Folder for the results (made if missing), or - to write the one image to stdout (needs -f).")
@click.option("-r", "--recursive", is_flag=True, help="Take images in sub-folders too, keeping the folder structure under OUT.")
@click.option("-f", "--format", "fmt", type=click.Choice(["same", *FORMATS]), default="same", show_default=True,
              help="Output format; same keeps each input's format.")
@click.option("--suffix", default="", help="Added to each output's stem: photo.jpg -> photo-sharp.jpg with --suffix -sharp.")
@click.option("--quality", type=click.IntRange(1, 100), default=95, show_default=True, help="JPEG/WebP quality (WebP 100 is lossless).")
@click.option("--strip-metadata", is_flag=True, help="Do not copy EXIF and the ICC profile to the outputs.")
@click.option("--overwrite", is_flag=True, help="Replace outputs that exist already.")
@click.option("--skip-existing", is_flag=True, help="Leave outputs that exist already alone (resume a batch).")
@model_run_options
@click.option("--max-pixels", type=click.IntRange(0), default=DEFAULT_MAX_PIXELS, show_default=True,
              help="Refuse larger images (0: no limit); the default is Pillow's decompression-bomb limit.")
@click.option("--gt", "gt_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Folder of ground-truth sharp images: score each result (PSNR/SSIM) against its match.")
@click.option("--pair-by", type=click.Choice(["stem", "order"]), default="stem", show_default=True,
              help="Match results to --gt files by name (case and extension ignored) or by sorted order.")
@protocol_options
@report_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per image on stdout instead of paths.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar, device note or summary (errors still show).")
def deblur(inputs: tuple[str, ...], out: str, recursive: bool, fmt: str, suffix: str, quality: int, strip_metadata: bool,
           overwrite: bool, skip_existing: bool, weights: Path | None, model_name: str | None, device: str, precision: str,
           tile: int | None, overlap: int, threads: int | None, max_pixels: int, gt_dir: Path | None, pair_by: str,
           ssim_variant: str | None, y_channel: bool, crop_border: int, report_path: Path | None, as_json: bool,
           quiet: bool) -> None:
    """Deblur images: files, folders (-r for sub-folders), glob patterns, or - for stdin.

    Each result is written to OUT under its input's name (plus --suffix) through a temporary
    file and a rename, so an interrupted run leaves no partial images; existing files are
    never replaced unless --overwrite. 8- and 16-bit PNG/TIFF, JPEG, WebP and BMP;
    grayscale stays grayscale, alpha is passed through, EXIF orientation is applied and
    EXIF and the ICC profile are copied. The path of each image written goes to stdout
    (or JSON with --json); progress and errors go to stderr.

    With --gt DIR each result is scored against the ground truth of the same name (PSNR on
    8-bit RGB, peak 255; SSIM per --ssim): stdout then gets "OUTPUT<TAB>PSNR<TAB>SSIM" lines
    and a final "mean" line, and --report writes them with the protocol and model to a file.

    Weights: --weights FILE, else -m NAME from the cache (downloaded if missing), else the
    default weights bundled with lmfn; -v says which were used.

    \b
    Exit codes: 0 all done, 1 some images failed, 2 usage error, 3 no usable weights,
    130/143 interrupted (Ctrl-C / SIGTERM).

    \b
    Examples:
      lmfn deblur shaky/*.jpg -o sharp/
      lmfn deblur -r holiday/ -o sharp/ --suffix -sharp --skip-existing -m lmfn-synthblur-v1
      lmfn deblur 'card/**/*.JPG' -o sharp/ -f png -w my-weights.safetensors
      cat blurry.png | lmfn deblur - -o - -f png > sharp.png
      lmfn deblur test/blur/ -o out/ --gt test/sharp/ --report scores.csv
    """
    from .batch import BatchOptions, Settings
    from .evaluation import Protocol

    if overwrite and skip_existing:
        raise click.UsageError("--overwrite and --skip-existing contradict each other")
    if out == "-" or "-" in inputs:
        if out != "-" or inputs != ("-",) and len(inputs) != 1:
            raise click.UsageError("stdin/stdout take one image: lmfn deblur - -o - -f png (or one file with -o -)")
        if fmt == "same":
            raise click.UsageError("writing to stdout needs -f/--format (png, jpg, webp, tiff or bmp)")
        if as_json:
            raise click.UsageError("--json cannot share stdout with the image; leave it out with -o -")
    if threads:
        import torch

        torch.set_num_threads(threads)
    if (report_path or ssim_variant or y_channel or crop_border or pair_by != "stem") and gt_dir is None:
        raise click.UsageError("--report, --pair-by, --ssim, --y-channel and --crop-border need --gt DIR")
    if gt_dir is not None and out == "-":
        raise click.UsageError("--gt scores a batch written to a folder, not -o -")
    protocol = Protocol("pairs", ssim_variant or "gaussian", y_channel, crop_border)
    settings = Settings(tile=tile, overlap=overlap, precision=precision, quality=quality, strip_metadata=strip_metadata,
                        overwrite=overwrite, skip_existing=skip_existing, max_pixels=max_pixels or None,
                        protocol=protocol)
    # SIGTERM (kill, a cluster's time limit) unwinds like Ctrl-C, so temporary files are removed.
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        if out == "-":
            _deblur_to_stdout(inputs[0], fmt, settings, weights, model_name, device, quiet)
        else:
            options = BatchOptions(recursive=recursive, fmt=fmt, suffix=suffix, settings=settings, gt_dir=gt_dir,
                                   pair_by=pair_by, report=report_path)
            _deblur_batch(list(inputs), Path(out), options, weights, model_name, device, as_json, quiet)
    except _Terminated:
        raise fail("terminated; finished images are complete, the one in progress was not written", 143) from None
    except KeyboardInterrupt:
        raise fail("interrupted; finished images are complete, the one in progress was not written", 130) from None
    finally:
        signal.signal(signal.SIGTERM, previous)


class _Terminated(KeyboardInterrupt):
    pass


def _raise_terminated(signum, frame):
    raise _Terminated


def _deblur_to_stdout(source: str, fmt: str, settings, weights: Path | None, model_name: str | None, device: str,
                      quiet: bool) -> None:
    from .batch import deblur_picture
    from .images import encode_picture, read_picture

    try:
        if source == "-":
            picture = read_picture(click.get_binary_stream("stdin").read(), name="<stdin>", max_pixels=settings.max_pixels)
        else:
            picture = read_picture(Path(source), max_pixels=settings.max_pixels)
    except LMFNError as exc:
        raise fail(str(exc), EXIT_FAILED) from None
    model = _load(weights, device, quiet, model_name)
    try:
        result, _ = deblur_picture(model, picture, settings)
        data = encode_picture(result, fmt, quality=settings.quality, strip_metadata=settings.strip_metadata, name="<stdout>")
    except LMFNError as exc:
        name = "<stdin>" if source == "-" else source
        raise fail(f"{name}: {getattr(exc, 'problem', exc)}", EXIT_FAILED) from None
    stream = click.get_binary_stream("stdout")
    stream.write(data)
    stream.flush()


def _score_line(record) -> str:
    value = "inf" if record.psnr is None else f"{record.psnr:.2f}"
    return f"{record.output}\t{value}\t{record.ssim:.4f}"


def _deblur_batch(inputs: list[str], out_dir: Path, options, weights: Path | None, model_name: str | None, device: str,
                  as_json: bool, quiet: bool) -> None:
    """Run ``batch.run_batch`` with a progress bar on stderr; results (paths, scores, JSON) to stdout."""
    from .batch import BatchEvents, run_batch
    from .errors import NothingToDoError

    show = not quiet and stderr.is_terminal
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=stderr, disable=not show, transient=True) as progress:

        class Events(BatchEvents):
            def planned(self, jobs, problems):
                for problem in problems:
                    click.echo(f"lmfn: error: {problem}", err=True)
                self.overall = progress.add_task("images", total=len(jobs))
                self.tiles = progress.add_task("tiles", total=None, visible=False)

            def image_started(self, index, job):
                progress.update(self.overall, description=job.src.name)

            def tile(self, done, total):
                progress.update(self.tiles, completed=done, total=total, visible=total > 1)

            def image_done(self, record, error):
                progress.update(self.tiles, completed=0, total=None, visible=False)
                progress.advance(self.overall)
                if error is not None:
                    click.echo(f"lmfn: error: {error}", err=True)

        batch = run_batch(inputs, out_dir, options, events=Events(),
                          model=lambda: _load_with_info(weights, device, quiet, model_name))
        try:
            for record in batch:
                if as_json:
                    click.echo(json.dumps(asdict(record)))
                elif record.status == "ok" and record.ssim is not None:
                    click.echo(_score_line(record))
                elif record.status == "ok":
                    click.echo(record.output)
        except NothingToDoError as exc:
            raise fail(str(exc), EXIT_FAILED) from None
        except LMFNError as exc:  # ambiguous pairing (ConfigError), a report that cannot be written
            raise fail(str(exc), EXIT_USAGE if isinstance(exc, ConfigError) else EXIT_FAILED) from None

    summary = batch.summary
    if summary.scores and summary.scores["images"] and not as_json:
        mean = summary.scores
        psnr = "inf" if mean["psnr"] is None else f"{mean['psnr']:.2f}"
        click.echo(f"mean ({mean['images']} images)\t{psnr}\t{mean['ssim']:.4f}")
    if not quiet or summary.failed:
        skipped = f", {summary.skipped} skipped (exist already)" if summary.skipped else ""
        click.echo(f"lmfn: {summary.ok} deblurred{skipped}, {summary.failed} failed in {summary.seconds:.1f} s", err=True)
    if summary.failed:
        raise click.exceptions.Exit(EXIT_FAILED)


@main.command()
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--recipe", "recipe_path", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="TOML recipe (see recipes/); options given here override its fields.")
@click.option("--variant", default="lmfn", show_default=True, help="Model variant to train (see lmfn info).")
@click.option("--global-residual/--no-global-residual", default=None, help="Add the input to the output (overrides the variant).")
@click.option("--paired", multiple=True, type=click.Path(file_okay=False, exists=True), help="Paired folder: blur/ + sharp/ or GoPro's */blur + */sharp. Repeatable.")
@click.option("--sharp", multiple=True, type=click.Path(file_okay=False, exists=True), help="Folder of sharp photos to blur on the fly. Repeatable.")
@click.option("--kernels", type=click.Path(file_okay=False, exists=True), help="Folder with usrnet_kernels_12.mat and lai2016_gyro/ for on-the-fly blur.")
@click.option("--noise-prob", default=0.8, show_default=True, help="On-the-fly blur: share of pairs given sensor noise.")
@click.option("--jpeg-prob", default=0.5, show_default=True, help="On-the-fly blur: share of pairs JPEG-compressed.")
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
@click.option("--seed", default=0, show_default=True)
@click.option("--val-every", default=500, show_default=True)
@click.option("--log-every", default=20, show_default=True)
@click.option("--ckpt-minutes", default=5.0, show_default=True, help="Checkpoint at least this often.")
@click.option("--resume", is_flag=True, help="Continue the run in RUN_DIR exactly where its checkpoint left off.")
@click.option("--init", "init_weights", type=click.Path(dir_okay=False, exists=True), help="Start a new run from these weights.")
@click.option("--max-minutes", type=float, default=None, help="Stop cleanly (with a checkpoint) after this wall time.")
@click.option("--workers", default=0, show_default=True, help="Data loader processes (0: in the training process).")
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16", "fp16"]), default="auto", show_default=True,
              help="Autocast precision. auto: bf16 on CPUs with native bf16 when a probe shows it faster, bf16 on CUDA (fp16 without it), else fp32.")
@click.option("--channels-last/--no-channels-last", default=None,
              help="NHWC layout [default: on; 1.15x faster in fp32 on a 2-core AVX2 CPU].")
@click.option("--amp/--no-amp", default=None, hidden=True, help="Deprecated: --no-amp is --precision fp32.")
@click.option("--threads", type=int, default=None, help="CPU threads for torch.")
@click.option("--export", "export_path", type=click.Path(dir_okay=False, path_type=Path), help="At the end, write the best weights here (.safetensors).")
@click.option("--export-fp16", is_flag=True, help="Store exported weights as fp16.")
@click.option("--export-which", type=click.Choice(["best", "last"]), default="best", show_default=True, help="Export the best-validating or the latest weights.")
@device_option
@click.option("-q", "--quiet", is_flag=True, help="No progress lines.")
@click.pass_context
def train(ctx: click.Context, run_dir: Path, recipe_path: Path | None, variant: str, global_residual: bool | None, resume: bool,
          init_weights: str | None, max_minutes: float | None, workers: int, precision: str, channels_last: bool | None,
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
    from .inference import resolve_device
    from .recipes import read_recipe, resolve_init
    from .train import TrainConfig, export_weights, train as run_training

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
            click.echo(f"step {entry['step']:>8d}  loss {entry['loss']:.5f}  lr {entry['lr']:.2e}  {entry['elapsed']:.0f}s", err=True)
        else:
            click.echo(f"step {entry['step']:>8d}  val PSNR {entry['val_psnr']:.2f} dB (input {entry['val_input_psnr']:.2f})  SSIM {entry['val_ssim']:.4f}", err=True)

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
                             steps=steps, workers=workers, precision=precision, channels_last=channels_last,
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
def synth(inputs: tuple[Path, ...], out_dir: Path, seed: int, kernels: str | None, kernel_split: str, crop: int | None, crop_mode: str,
          repeats: int, max_blur: int | None, frames: Path | None, count: int, start: int | None, stop: int | None) -> None:
    """Make (blurry, sharp) pairs from sharp photos, or from high-frame-rate video frames.

    Blur: random camera-shake trajectories, USRNet and real gyroscope kernels, spatially varying
    6-D camera paths, in linear light, with shot/read noise, clipped highlights and JPEG. Writes
    OUT/blur/NAME.png, OUT/sharp/NAME.png and OUT/pairs.jsonl (what each pair got). Never
    overwrites.

    \b
    Example:
      lmfn synth photos/ -o val/ --seed 1 --kernels kernels/
      lmfn synth photos/ -o train/ --seed 3 --kernels kernels/ --kernel-split train --crop 192 --crop-mode random
      lmfn synth --frames video-frames/ --count 200 --stop 250 --crop 256 -o train-frames/ --seed 2
    """
    from .images import IMAGE_EXTENSIONS
    from . import synth as sy

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
            if crop is not None and crop_mode == "random":
                cfg, crop = dataclasses.replace(cfg, crop=crop), None
            infos = sy.make_pairs(paths, out_dir, seed=seed, cfg=cfg, bank=bank, crop=crop, repeats=repeats)
    except LMFNError as exc:
        raise fail(str(exc), EXIT_FAILED) from None
    click.echo(f"{len(infos)} pairs in {out_dir}")


@main.command()
@click.option("-d", "--dataset", required=True, metavar="kohler|gopro|PATH",
              help="kohler (downloaded and cached), gopro (GOPRO_Large test split, --root or LMFN_GOPRO_URL), "
                   "or a folder of pairs: blur/ + sharp/ or input/ + target/.")
@click.option("--root", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="A local copy: the extracted Köhler benchmark, or GOPRO_Large (or its test/ folder).")
@click.option("--blur-variant", type=click.Choice(["blur", "blur_gamma"]), default="blur", show_default=True,
              help="GoPro: the blurry images to use (blur_gamma: averaged in linear light).")
@protocol_options
@click.option("--baseline/--no-baseline", default=True, show_default=True, help="Also score the blurry input.")
@click.option("--compare-paper", is_flag=True, help="Put the paper's table (GoPro: Table 1, Köhler: Table 2) above our rows.")
@click.option("--limit", type=click.IntRange(1), default=None, help="Only the first N images (a quick run).")
@report_option
@model_run_options
@click.option("--json", "as_json", is_flag=True, help="Print the whole report as one JSON object on stdout.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar or notes (errors still show).")
def bench(dataset: str, root: Path | None, blur_variant: str, ssim_variant: str | None, y_channel: bool, crop_border: int,
          baseline: bool, compare_paper: bool, limit: int | None, report_path: Path | None, weights: Path | None,
          model_name: str | None, device: str, precision: str, tile: int | None, overlap: int, threads: int | None,
          as_json: bool, quiet: bool) -> None:
    """Score the model on a benchmark with its published protocol, in the paper's table layout.

    \b
    kohler  Köhler et al. 2012, 48 real camera-shake photos: best PSNR over each trajectory's
            sharp frames after gain + shift correction, on luma (the benchmark's own protocol).
    gopro   GOPRO_Large test split (1,111 pairs): PSNR on 8-bit RGB, MATLAB SSIM.
    PATH    any folder of pairs, scored like GoPro (SSIM: gaussian unless --ssim).

    The table (stdout) has PSNR, SSIM, model size, time per image (network only, after one
    untimed warm-up image) and device; --json prints the report instead, --report writes it.

    \b
    Exit codes: 0 done, 1 some images failed (means are over the rest), 2 usage error,
    3 no usable weights.

    \b
    Examples:
      lmfn bench --dataset kohler --compare-paper
      lmfn bench --dataset gopro --root ~/data/GOPRO_Large --report gopro.json
      lmfn bench --dataset my-pairs/ --limit 10 --ssim matlab
    """
    from . import bench as bench_lib
    from . import datasets
    from .evaluation import Protocol

    if threads:
        import torch

        torch.set_num_threads(threads)
    name = dataset.lower()
    if name not in ("kohler", "gopro"):
        if not Path(dataset).is_dir():
            raise click.BadParameter(f"{dataset!r} is not kohler, gopro or a folder", param_hint="--dataset")
        root, name = Path(dataset), "pairs"
    if compare_paper and name == "pairs":
        raise click.UsageError("--compare-paper needs --dataset kohler or gopro (the paper has no table for a folder)")
    try:
        protocol = Protocol("kohler" if name == "kohler" else "pairs", ssim_variant or bench_lib.DEFAULT_SSIM[name],
                            y_channel, crop_border)
    except LMFNError as exc:
        raise click.UsageError(str(exc)) from None
    try:
        if root is None:
            with _download_progress(quiet) as (on_progress, describe):
                def progress(archive: str, done: int, total: int | None) -> None:
                    describe(archive)
                    on_progress(done, total or 0)

                root = datasets.fetch_kohler(progress) if name == "kohler" else datasets.fetch_gopro(on_progress=progress)
        items, warnings = bench_lib.items_for(name, root, blur_variant=blur_variant)
    except LMFNError as exc:
        raise fail(str(exc), EXIT_FAILED) from None
    for w in warnings:
        logging.getLogger("lmfn").warning("%s", w)
    if limit:
        items = items[:limit]
    model, model_info = _load_with_info(weights, device, quiet, model_name)

    show = not quiet and stderr.is_terminal
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    failures: list[str] = []
    with Progress(*columns, console=stderr, disable=not show, transient=True) as progress:
        task = progress.add_task(name, total=len(items))

        def on_item(score, base) -> None:
            progress.update(task, description=f"{score.name}: {score.psnr:.2f} dB")
            progress.advance(task)

        def on_error(item, exc) -> None:
            failures.append(item.name)
            click.echo(f"lmfn: error: {exc}", err=True)
            progress.advance(task)

        scores, base, facts = bench_lib.run(model, items, protocol, tile=tile, overlap=overlap, precision=precision,
                                            baseline=baseline, on_item=on_item, on_error=on_error)
    extra = {"root": str(root), "limit": limit, "overlap": overlap, "failed": failures}
    if name == "gopro":
        extra["blur_variant"] = blur_variant
    rep = bench_lib.report(name, protocol, model_info, facts, scores, base, **extra)
    if as_json:
        click.echo(json.dumps(rep.as_dict(), allow_nan=False))
    elif scores:
        rows = bench_lib.table(rep, compare_paper=name if compare_paper else None)
        header = ("method", "PSNR", "SSIM", "size", "time/img", "device")
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
        for r in [header, *rows]:
            click.echo("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip())
    if not quiet:
        click.echo(f"lmfn: {len(scores)} images, protocol: {protocol.describe()}", err=True)
    if report_path:
        from .evaluation import write_report

        try:
            write_report(report_path, rep)
        except (LMFNError, OSError) as exc:
            raise fail(f"{report_path}: cannot write the report: {exc}", EXIT_FAILED) from None
    if failures or not scores:
        raise fail(f"{len(failures)} of {len(items)} images failed", EXIT_FAILED)


@main.command("export")
@click.option("--onnx", "onnx_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Write the network here as an ONNX graph (float32, any image size).")
@weights_option
@click.option("--overwrite", is_flag=True, help="Replace the file if it exists.")
def export(onnx_path: Path, weights: Path | None, model_name: str | None, overwrite: bool) -> None:
    """Export weights for ONNX Runtime, the fastest CPU path we measured.

    Running the file needs onnxruntime (pip install 'lmfn[onnx]'); pass it to deblur or bench
    with -w. It runs on the CPU only.

    \b
    Example:
      lmfn export --onnx lmfn.onnx && lmfn deblur photos/ -o sharp/ -w lmfn.onnx
    """
    from .onnxrt import export_onnx

    if onnx_path.suffix.lower() != ".onnx":
        raise click.BadParameter("the file name must end in .onnx", param_hint="--onnx")
    if onnx_path.exists() and not overwrite:
        raise fail(f"{onnx_path}: exists already (use --overwrite to replace it)", EXIT_FAILED)
    model = _load(weights, "cpu", True, model_name)
    try:
        export_onnx(model, onnx_path, overwrite=overwrite)
    except LMFNError as exc:
        raise fail(str(exc), EXIT_FAILED) from None
    click.echo(str(onnx_path))


@main.command("info")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per variant instead of a table.")
def info(as_json: bool) -> None:
    """List the model variants with parameter counts and multiply-adds per pixel.

    Multiply-adds are counted for one forward pass at 256x256 (convolutions and ALFM's
    matrix products) and divided by the number of pixels.

    \b
    Example:
      lmfn info --json | jq .params
    """
    from .info import variant_infos

    rows = variant_infos()
    if as_json:
        for row in rows:
            click.echo(json.dumps(asdict(row)))
        return
    table = Table(title=f"LMFN variants (lmfn {__version__})")
    table.add_column("variant")
    table.add_column("params", justify="right")
    table.add_column("paper", justify="right")
    table.add_column("MACs/pixel", justify="right")
    table.add_column("what")
    for r in rows:
        paper = f"{r.paper_params_m:.2f}M" if r.paper_params_m is not None else "-"
        table.add_row(r.name, f"{r.params / 1e6:.3f}M", paper, f"{r.macs_per_pixel / 1e3:.1f}k", r.description)
    Console().print(table)


main.add_command(
    click.Command(
        "models",
        callback=info.callback,
        params=info.params,
        help="Same as 'lmfn info'.\n\n\b\nExample:\n  lmfn models",
        short_help="Same as 'lmfn info'.",
    )
)


# --- named weights: the registry, the cache, downloads -------------------------------------------


def _entries(names: tuple[str, ...]) -> list:
    """Registry entries for ``names`` (all of them when empty); an unknown name is a usage error."""
    from .weights import REGISTRY, get_entry

    try:
        return [get_entry(n) for n in names] if names else list(REGISTRY.values())
    except UnknownWeightsError as exc:
        raise click.BadParameter(str(exc), param_hint="NAME") from None


@main.command("download-weights")
@click.argument("names", nargs=-1, metavar="[NAME]...")
@click.option("--force", is_flag=True, help="Download again even if the cache holds a verified copy.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar or notes (errors still show).")
def download_weights(names: tuple[str, ...], force: bool, quiet: bool) -> None:
    """Download named weights into the cache (no NAME: the default weights).

    Each file is fetched from LMFN_WEIGHTS_URL (default: the project's release assets) into
    NAME.part, resumed after a broken connection, checked against the registry's size and
    SHA-256, and only then renamed into the cache (LMFN_CACHE_DIR, default: the user cache
    folder). A file already cached and verified is not fetched again unless --force. The path of
    each file goes to stdout. Exit code 3 when a download fails or LMFN_OFFLINE=1 forbids it.

    \b
    Example:
      lmfn download-weights
      LMFN_WEIGHTS_URL=https://mirror.example.org/lmfn/ lmfn download-weights lmfn-synthblur-v0 --force
    """
    from .weights import DEFAULT_NAME, cached_path, check_file, fetch

    for entry in _entries(names or (DEFAULT_NAME,)):
        path = cached_path(entry)
        if not force and path.is_file():
            try:
                check_file(entry, path)
            except WeightsError:
                pass  # fetch() says so and downloads it again
            else:
                if not quiet:
                    click.echo(f"lmfn: {entry.name} is in the cache already (SHA-256 verified)", err=True)
                click.echo(str(path))
                continue
        try:
            with _download_progress(quiet) as (on_progress, describe):
                describe(entry.name)
                path = fetch(entry.name, force=force, on_progress=on_progress)
        except WeightsError as exc:
            raise fail(str(exc), EXIT_NO_WEIGHTS) from None
        if not quiet:
            click.echo(f"lmfn: downloaded {entry.name} ({entry.size:,} bytes, SHA-256 verified)", err=True)
        click.echo(str(path))


@main.group("weights")
def weights_group() -> None:
    """Named weights: list them, find their files, verify them.

    \b
    Example:
      lmfn weights list
      lmfn weights path lmfn-synthblur-v0
      lmfn weights verify
    """


@weights_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per weights instead of a table.")
def weights_list(as_json: bool) -> None:
    """List the named weights: size, whether cached (where), default, bundled.

    \b
    Example:
      lmfn weights list --json | jq -r 'select(.cached == null) | .name'
    """
    from .weights import DEFAULT_NAME, REGISTRY, bundled_path, cached_path, url_for

    rows = []
    for entry in REGISTRY.values():
        cached, bundled = cached_path(entry), bundled_path(entry)
        rows.append({
            "name": entry.name, "size": entry.size, "sha256": entry.sha256,
            "cached": str(cached) if cached.is_file() else None,
            "default": entry.name == DEFAULT_NAME, "bundled": str(bundled) if bundled else None,
            "url": url_for(entry), "licence": entry.licence, "training_data": entry.training_data,
            "description": entry.description,
        })
    if as_json:
        for row in rows:
            click.echo(json.dumps(row))
        return
    table = Table(title="LMFN weights")
    for column in ("name", "size", "cached", "default", "bundled", "what"):
        table.add_column(column, justify="right" if column == "size" else "left")
    for r in rows:
        table.add_row(r["name"], f"{r['size'] / 1e6:.1f} MB", r["cached"] or "no", "yes" if r["default"] else "",
                      "yes" if r["bundled"] else "", r["description"])
    Console().print(table)


@weights_group.command("path")
@click.argument("name", required=False, metavar="[NAME]")
def weights_path(name: str | None) -> None:
    """Print the file of weights NAME (default: the default weights): cached, else bundled.

    Exit code 3 when there is neither (lmfn download-weights NAME fetches it).

    \b
    Example:
      lmfn weights path lmfn-synthblur-v0
    """
    from .weights import DEFAULT_NAME, bundled_path, cached_path

    entry = _entries((name or DEFAULT_NAME,))[0]
    cached, bundled = cached_path(entry), bundled_path(entry)
    if cached.is_file():
        click.echo(str(cached))
    elif bundled is not None:
        click.echo(str(bundled))
    else:
        raise fail(f"{entry.name} is not in the cache ({cached}) nor bundled; "
                   f"run: lmfn download-weights {entry.name}", EXIT_NO_WEIGHTS)


@weights_group.command("verify")
@click.argument("names", nargs=-1, metavar="[NAME]...")
def weights_verify(names: tuple[str, ...]) -> None:
    """Recompute the SHA-256 of cached and bundled weights and compare with the registry.

    One line per file on stdout: "ok NAME PATH" or "bad NAME PATH: problem". Exit code 1 if
    any file is bad, 3 if a NAME given is neither cached nor bundled.

    \b
    Example:
      lmfn weights verify lmfn-synthblur-v0
    """
    from .weights import bundled_path, cached_path, check_file

    bad = missing = False
    checked = 0
    for entry in _entries(names):
        found = [p for p in (cached_path(entry), bundled_path(entry)) if p is not None and p.is_file()]
        checked += len(found)
        for path in found:
            try:
                check_file(entry, path)
            except WeightsError as exc:
                bad = True
                click.echo(f"bad {entry.name} {path}: {exc.problem}")
            else:
                click.echo(f"ok {entry.name} {path}")
        if not found and names:
            missing = True
            click.echo(f"lmfn: error: {entry.name} is neither cached nor bundled "
                       f"(run: lmfn download-weights {entry.name})", err=True)
    if not checked:
        click.echo("lmfn: no cached or bundled weights to verify", err=True)
    if bad:
        raise click.exceptions.Exit(EXIT_FAILED)
    if missing:
        raise click.exceptions.Exit(EXIT_NO_WEIGHTS)
