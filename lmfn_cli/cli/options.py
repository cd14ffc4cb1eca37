"""What the commands share: exit codes, ``fail``, the stderr console, option groups, loading weights."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

from ..errors import LMFNError, UnknownWeightsError, WeightsError
from ..evaluation import SSIM_VARIANTS
from ..inference import PRECISIONS
from ..tiling import DEFAULT_OVERLAP, MIN_TILE

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NO_WEIGHTS = 0, 1, 2, 3

stderr = Console(stderr=True)


def fail(message: str, code: int) -> "click.exceptions.Exit":
    click.echo(f"lmfn: error: {message}", err=True)
    return click.exceptions.Exit(code)


@contextmanager
def results_stream() -> Iterator:
    """The stream a command's results go to (stdout), while anything else that writes to
    ``sys.stdout`` meanwhile goes to stderr instead. Libraries print there: Ray's driver prints
    its cluster's error messages (``(raylet) A worker died ...``) to stdout from a background
    thread even with ``log_to_driver=False``, which would break ``--json`` lines in a pipeline."""
    out = sys.stdout
    previous, sys.stdout = sys.stdout, sys.stderr
    try:
        yield out
    finally:
        sys.stdout = previous


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
    from ..download import file_sha256
    from ..inference import resolve_device
    from ..weights import load_model, resolve_weights

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


class FolderType(click.ParamType):
    """An existing local folder (as a ``Path``) or a URI such as ``s3://bucket/truth/`` (as a
    ``uris.URI``, checked when the batch is planned)."""

    name = "DIR|URI"

    def convert(self, value, param, ctx):
        from ..uris import URI, is_uri

        if isinstance(value, (Path, URI)):
            return value
        if is_uri(value):
            try:
                return URI(value)
            except LMFNError as exc:
                self.fail(str(exc), param, ctx)
        return click.Path(exists=True, file_okay=False, path_type=Path).convert(value, param, ctx)


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
                        help="auto: on CUDA bf16 (fp16 on GPUs before Ampere); on a CPU bf16 where it computes bf16 natively (AVX512-BF16, AMX; "
                             "-v says which and why), else fp32. Half-precision tiles that overflow are redone in fp32.")(f)


def threads_option(f):
    return click.option("--threads", type=click.IntRange(1), default=None, help="CPU threads for torch [default: torch's choice].")(f)


def model_run_options(f):
    """Which weights, and how the network runs: -w/-m, --device, --precision, --tile,
    --tile-overlap, --threads, -v (deblur, bench)."""
    for option in (verbose_option, threads_option, tile_options, precision_option, device_option, weights_option):
        f = option(f)
    return f


def _read_kernel_option(ctx: click.Context, param: click.Parameter, value: Path | None):
    """--kernel FILE, read and checked before any image runs: one clear error for a bad file."""
    if value is None:
        return None
    from ..errors import KernelError
    from ..kernel_files import read_kernel

    try:
        return read_kernel(value)
    except KernelError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from None


def _odd_kernel_size(ctx: click.Context, param: click.Parameter, value: int) -> int:
    if value % 2 == 0:
        raise click.BadParameter(f"{value}: a kernel size must be odd", ctx=ctx, param=param)
    return value


def kernel_options(f):
    """--method, --kernel, --kernel-size, --save-kernel, --deconvolution, --nonblind-weights,
    --fallback: deblurring by a blur kernel (deblur)."""
    f = click.option("--fallback", type=click.Choice(["input", "blind"]), default="input", show_default=True,
                     help="What --method kernel|auto returns where it uses no kernel: the photo unchanged (input) "
                          "or the blind network's result.")(f)
    f = click.option("--nonblind-weights", default="lmfn-nonblind-v2", show_default=True, metavar="NAME|FILE",
                     help="--deconvolution network's weights: a registry name or a file exported from a "
                          "task = \"nonblind\" run.")(f)
    f = click.option("--deconvolution", type=click.Choice(["network", "tv", "wiener"]), default="network",
                     show_default=True,
                     help="How a kernel is undone: network (a Wiener filter, then LMFN trained to clean it up), "
                          "tv (total variation) or wiener.")(f)
    f = click.option("--save-kernel", is_flag=True,
                     help="Write each image's kernel beside its output as NAME.kernel.png (16-bit, peak white).")(f)
    f = click.option("--kernel-size", type=click.IntRange(7, 101), default=31, show_default=True,
                     callback=_odd_kernel_size, help="Largest blur (px, odd) that --method kernel|auto looks for.")(f)
    f = click.option("--kernel", "kernel", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
                     callback=_read_kernel_option, metavar="FILE",
                     help="Deblur every image by this blur kernel (grayscale PNG or .npy; made to sum to 1 and centred).")(f)
    return click.option("--method", type=click.Choice(["blind", "kernel", "auto"]), default="blind", show_default=True,
                        help="blind: the network; kernel: estimate each photo's blur kernel and deconvolve by it "
                             "(a photo that looks sharp is left unchanged, one no single kernel fits gets "
                             "--fallback); auto: the kernel only where its estimate is confident.")(f)


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


def html_max_images_option(f):
    return click.option("--html-max-images", type=click.IntRange(1), default=50, show_default=True,
                        help="Images shown in full in the HTML report (the rest only in its score table).")(f)


def command_line() -> str:
    """The command being run, as a shell would take it (for records and report headers)."""
    import shlex

    args = click.get_current_context().meta.get("lmfn.args", [])
    return shlex.join(["lmfn", *args])


def engine_options(f):
    """--engine and the Ray engine's options (lmfn deblur)."""
    f = click.option("--gpus-per-worker", type=click.FloatRange(0), default=0.0, show_default=True,
                     help="Ray: GPUs each worker holds (fractions share a GPU).")(f)
    f = click.option("--cpus-per-worker", type=click.FloatRange(0, min_open=True), default=1.0, show_default=True,
                     help="Ray: CPUs each worker holds.")(f)
    f = click.option("--workers", type=click.IntRange(1), default=1, show_default=True,
                     help="Ray: workers, each with its own copy of the network.")(f)
    f = click.option("--ray-address", default=None, metavar="auto|ADDR|local",
                     help="Ray: the cluster (auto: the one `ray start` runs here; ray://HOST:10001) "
                          "[default: start Ray in this process].")(f)
    return click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
                        help="Where images run: this process, or a Ray cluster (pip install 'lmfn[ray]').")(f)
