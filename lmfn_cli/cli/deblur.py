"""lmfn deblur: files, folders, globs or stdin to a folder or stdout, optionally scored against --gt."""

from __future__ import annotations

import json
import signal
from dataclasses import asdict
from pathlib import Path

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ..errors import ConfigError, LMFNError, one_line
from ..images import DEFAULT_MAX_PIXELS, FORMATS
from ..uris import location
from ..video import VIDEO_FORMATS, is_video
from . import main
from .options import (EXIT_FAILED, EXIT_NO_WEIGHTS, FolderType, EXIT_USAGE, _load, _load_with_info, command_line, engine_options, fail,
                      html_max_images_option, kernel_options, model_run_options, protocol_options, report_option, results_stream,
                      stderr)


@main.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("-o", "--output", "out", required=True, metavar="DIR|-",
              help="Folder for the results (made if missing), a URI such as s3://bucket/out/, or - to write the one "
                   "image to stdout (needs -f).")
@click.option("-r", "--recursive", is_flag=True, help="Take images in sub-folders too, keeping the folder structure under OUT.")
@click.option("-f", "--format", "fmt", type=click.Choice(["same", *FORMATS, *VIDEO_FORMATS]), default="same",
              show_default=True, help="Output format; same keeps each input's. An image format applies to images, "
                                      "a video one (mp4, mkv, mov, webm) to videos.")
@click.option("--suffix", default="", help="Added to each output's stem: photo.jpg -> photo-sharp.jpg with --suffix -sharp.")
@click.option("--quality", type=click.IntRange(1, 100), default=95, show_default=True, help="JPEG/WebP quality (WebP 100 is lossless).")
@click.option("--crf", type=click.IntRange(0, 63), default=18, show_default=True,
              help="Videos: the encoder's constant quality (lower is better; 0 is lossless for x264/x265).")
@click.option("--codec", default=None, metavar="NAME",
              help="Videos: encoder (libx264, libx265, libvpx-vp9, ...) [default: libx264; libvpx-vp9 for .webm].")
@click.option("--strip-metadata", is_flag=True, help="Do not copy EXIF and the ICC profile to the outputs.")
@click.option("--overwrite", is_flag=True, help="Replace outputs that exist already.")
@click.option("--skip-existing", is_flag=True, help="Leave outputs that exist already alone (resume a batch).")
@model_run_options
@kernel_options
@click.option("--max-pixels", type=click.IntRange(0), default=DEFAULT_MAX_PIXELS, show_default=True,
              help="Refuse larger images (0: no limit); the default is Pillow's decompression-bomb limit.")
@click.option("--gt", "gt_dir", type=FolderType(), default=None,
              help="Folder (or URI) of ground-truth sharp images: score each result (PSNR/SSIM) against its match.")
@click.option("--pair-by", type=click.Choice(["stem", "order"]), default="stem", show_default=True,
              help="Match results to --gt files by name (case and extension ignored) or by sorted order.")
@protocol_options
@report_option
@click.option("--html", "html_path", type=click.Path(dir_okay=False, path_type=Path), default=None, metavar="FILE.html",
              help="Write a self-contained before/after report of the batch (opens offline in any browser).")
@html_max_images_option
@engine_options
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per image on stdout instead of paths.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar, device note or summary (errors still show).")
def deblur(inputs: tuple[str, ...], out: str, recursive: bool, fmt: str, suffix: str, quality: int, crf: int,
           codec: str | None, strip_metadata: bool,
           overwrite: bool, skip_existing: bool, weights: Path | None, model_name: str | None, device: str, precision: str,
           tile: int | None, overlap: int, threads: int | None, method: str, kernel, kernel_size: int, save_kernel: bool,
           deconvolution: str, nonblind_weights: str, fallback: str,
           max_pixels: int, gt_dir: Path | None, pair_by: str,
           ssim_variant: str | None, y_channel: bool, crop_border: int, report_path: Path | None,
           html_path: Path | None, html_max_images: int, engine: str, ray_address: str | None, workers: int,
           cpus_per_worker: float, gpus_per_worker: float, as_json: bool, quiet: bool) -> None:
    """Deblur images: files, folders (-r for sub-folders), glob patterns, or - for stdin.

    Each result is written to OUT under its input's name (plus --suffix) through a temporary
    file and a rename, so an interrupted run leaves no partial images; existing files are
    never replaced unless --overwrite. 8- and 16-bit PNG/TIFF, JPEG, WebP and BMP;
    grayscale stays grayscale, alpha is passed through, EXIF orientation is applied and
    EXIF and the ICC profile are copied. The path of each image written goes to stdout
    (or JSON with --json); progress and errors go to stderr.

    Videos (.mp4 .mov .mkv .webm .avi .m4v; needs pip install 'lmfn[video]') keep every frame
    and its timestamp, the audio and subtitles (copied, not re-encoded), rotation, colour tags,
    size and 10-bit depth; --crf and --codec set the encoding.

    With --gt DIR each result is scored against the ground truth of the same name (PSNR on
    8-bit RGB, peak 255; SSIM per --ssim): stdout then gets "OUTPUT<TAB>PSNR<TAB>SSIM" lines
    and a final "mean" line, and --report writes them with the protocol and model to a file.

    --method kernel estimates each photo's blur kernel (camera shake: one blur over the frame)
    and deconvolves by it; a photo that looks sharp is left unchanged, and one no single kernel
    fits is too (--fallback blind: the network runs instead). --method auto uses the kernel only
    where its estimate is confident.
    --kernel FILE deblurs by a kernel you have; --save-kernel writes NAME.kernel.png beside
    each output. --deconvolution says how a kernel is undone (network: a Wiener filter cleaned
    up by the non-blind LMFN of --nonblind-weights). Videos always take the network.

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
      lmfn deblur clip.mp4 -o sharp/ --crf 16
      lmfn deblur shaky/ -o sharp/ --html sharp/report.html
      lmfn deblur shaken.jpg -o sharp/ --method kernel --save-kernel
      lmfn deblur shaken.jpg -o sharp/ --kernel shaken.kernel.png --deconvolution tv
      lmfn deblur /nfs/scans/ -o /nfs/sharp/ --engine ray --ray-address auto --workers 8 --gpus-per-worker 1
    """
    from ..batch import BatchOptions, Settings
    from ..kernel_estimation import EstimationSettings
    from ..kernel_method import KernelOptions
    from ..report import records_log_path
    from ..video import VideoSettings
    from ..evaluation import Protocol

    if overwrite and skip_existing:
        raise click.UsageError("--overwrite and --skip-existing contradict each other")
    if out == "-" or "-" in inputs:
        if out != "-" or inputs != ("-",) and len(inputs) != 1:
            raise click.UsageError("stdin/stdout take one image: lmfn deblur - -o - -f png (or one file with -o -)")
        if fmt == "same" or fmt in VIDEO_FORMATS:
            raise click.UsageError("writing to stdout needs -f/--format (png, jpg, webp, tiff or bmp)")
        if is_video(inputs[0]):
            raise click.UsageError("videos are written to a folder: lmfn deblur clip.mp4 -o OUT/")
        if as_json:
            raise click.UsageError("--json cannot share stdout with the image; leave it out with -o -")
        if html_path:
            raise click.UsageError("--html reports a batch written to a folder, not -o -")
    if threads:
        import torch

        torch.set_num_threads(threads)
    ray_given = ray_address is not None or workers != 1 or cpus_per_worker != 1.0 or gpus_per_worker
    if engine == "local" and ray_given:
        raise click.UsageError("--ray-address, --workers, --cpus-per-worker and --gpus-per-worker need --engine ray")
    if engine == "ray" and out == "-":
        raise click.UsageError("--engine ray writes to a folder, not -o -")
    if (report_path or ssim_variant or y_channel or crop_border or pair_by != "stem") and gt_dir is None:
        raise click.UsageError("--report, --pair-by, --ssim, --y-channel and --crop-border need --gt DIR")
    if gt_dir is not None and out == "-":
        raise click.UsageError("--gt scores a batch written to a folder, not -o -")
    if save_kernel and method == "blind" and kernel is None:
        raise click.UsageError("--save-kernel needs --method kernel or auto (or --kernel FILE)")
    if fallback != "input" and method == "blind":
        raise click.UsageError("--fallback needs --method kernel or auto")
    if save_kernel and out == "-":
        raise click.UsageError("--save-kernel writes beside outputs in a folder, not -o -")
    protocol = Protocol("pairs", ssim_variant or "gaussian", y_channel, crop_border)
    kernel_opts = KernelOptions(method="kernel" if kernel is not None else method, kernel=kernel,
                                deconvolution=deconvolution, nonblind=nonblind_weights, fallback=fallback,
                                estimation=EstimationSettings(kernel_size=kernel_size))
    if kernel_opts.method != "blind" and deconvolution == "network":
        _check_nonblind(nonblind_weights)
    settings = Settings(tile=tile, overlap=overlap, precision=precision, quality=quality, strip_metadata=strip_metadata,
                        overwrite=overwrite, skip_existing=skip_existing, max_pixels=max_pixels or None,
                        protocol=protocol, video=VideoSettings(crf=crf, codec=codec), kernel=kernel_opts,
                        save_kernel=save_kernel)
    # SIGTERM (kill, a cluster's time limit) unwinds like Ctrl-C, so temporary files are removed.
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        if out == "-":
            _deblur_to_stdout(inputs[0], fmt, settings, weights, model_name, device, quiet)
        else:
            options = BatchOptions(recursive=recursive, fmt=fmt, suffix=suffix, settings=settings, gt_dir=gt_dir,
                                   pair_by=pair_by, report=report_path, html=html_path, html_max_images=html_max_images,
                                   command=command_line(), records_log=records_log_path(out))
            runner = None
            if engine == "ray":
                from ..engines.ray import RayEngine, RayOptions

                try:
                    runner = RayEngine(RayOptions(ray_address, workers, cpus_per_worker, gpus_per_worker), device=device)
                except ConfigError as exc:
                    raise click.UsageError(str(exc)) from None
            _deblur_batch(list(inputs), location(out), options, weights, model_name, device, as_json, quiet, runner)
    except _Terminated:
        raise fail("terminated; finished images are complete, the one in progress was not written", 143) from None
    except KeyboardInterrupt:
        raise fail("interrupted; finished images are complete, the one in progress was not written", 130) from None
    finally:
        signal.signal(signal.SIGTERM, previous)


class _Terminated(KeyboardInterrupt):
    pass


def _check_nonblind(weights: str) -> None:
    """--deconvolution network: its weights checked (and fetched) before any image runs."""
    from ..errors import WeightsError
    from ..kernel_method import load_nonblind

    try:
        load_nonblind(weights)
    except WeightsError as exc:
        raise fail(str(exc), EXIT_NO_WEIGHTS) from None


def _raise_terminated(signum, frame):
    raise _Terminated


def _deblur_to_stdout(source: str, fmt: str, settings, weights: Path | None, model_name: str | None, device: str,
                      quiet: bool) -> None:
    from ..batch import deblur_picture
    from ..images import encode_picture, read_picture
    from ..uris import read_picture_at

    try:
        if source == "-":
            picture = read_picture(click.get_binary_stream("stdin").read(), name="<stdin>", max_pixels=settings.max_pixels)
        else:
            picture = read_picture_at(location(source), max_pixels=settings.max_pixels)
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
    return f"{one_line(record.output)}\t{value}\t{record.ssim:.4f}"


def _deblur_batch(inputs: list[str], out_dir: Path, options, weights: Path | None, model_name: str | None, device: str,
                  as_json: bool, quiet: bool, engine=None) -> None:
    """Run ``batch.run_batch`` with a progress bar on stderr; results (paths, scores, JSON) to stdout."""
    from ..batch import BatchEvents, run_batch
    from ..errors import NothingToDoError

    show = not quiet and stderr.is_terminal
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TimeRemainingColumn())
    with results_stream() as out, Progress(*columns, console=stderr, disable=not show, transient=True) as progress:

        class Events(BatchEvents):
            def planned(self, jobs, problems):
                for problem in problems:
                    click.echo(f"lmfn: error: {problem}", err=True)
                self.overall = progress.add_task("images", total=len(jobs))
                self.tiles = progress.add_task("tiles", total=None, visible=False)
                self.frames = progress.add_task("frames", total=None, visible=False)
                self.kernel = progress.add_task("estimating kernel", total=None, visible=False)

            def image_started(self, index, job):
                progress.update(self.overall, description=job.src.name)

            def tile(self, done, total):
                progress.update(self.tiles, completed=done, total=total, visible=total > 1)

            def estimate(self, done, total):
                progress.update(self.kernel, completed=done, total=total, visible=done < total)

            def frame(self, done, total):
                progress.update(self.frames, completed=done, total=total, visible=True)

            def image_done(self, record, error):
                progress.update(self.tiles, completed=0, total=None, visible=False)
                progress.update(self.frames, completed=0, total=None, visible=False)
                progress.update(self.kernel, completed=0, total=None, visible=False)
                progress.advance(self.overall)
                if error is not None:
                    click.echo(f"lmfn: error: {error}", err=True)

        batch = run_batch(inputs, out_dir, options, events=Events(), engine=engine,
                          model=lambda: _load_with_info(weights, "cpu" if engine else device, quiet, model_name))
        try:
            for record in batch:
                if as_json:
                    click.echo(json.dumps(asdict(record)), file=out)
                elif record.status == "ok" and record.ssim is not None:
                    click.echo(_score_line(record), file=out)
                elif record.status == "ok":
                    click.echo(one_line(record.output), file=out)
        except NothingToDoError as exc:
            raise fail(str(exc), EXIT_FAILED) from None
        except LMFNError as exc:  # ambiguous pairing (ConfigError), a report that cannot be written
            raise fail(str(exc), EXIT_USAGE if isinstance(exc, ConfigError) else EXIT_FAILED) from None

    summary = batch.summary
    if summary.scores and summary.scores["images"] and not as_json:
        mean = summary.scores
        psnr = "inf" if mean["psnr"] is None else f"{mean['psnr']:.2f}"
        click.echo(f"mean ({mean['images']} images)\t{psnr}\t{mean['ssim']:.4f}", file=out)
    if not quiet or summary.failed:
        skipped = f", {summary.skipped} skipped (exist already)" if summary.skipped else ""
        click.echo(f"lmfn: {summary.ok} deblurred{skipped}, {summary.failed} failed in {summary.seconds:.1f} s", err=True)
    if summary.html and not quiet:
        click.echo(f"lmfn: report: {one_line(summary.html)}", err=True)
    if summary.failed:
        raise click.exceptions.Exit(EXIT_FAILED)
