"""The ``lmfn`` command line. The only module that touches click, rich or the exit code.

Exit codes: 0 all done, 1 some inputs failed, 2 usage error, 3 no usable weights.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path

import click
from rich.console import Console
from rich.logging import RichHandler
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from . import __version__
from .errors import LMFNError, WeightsError

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NO_WEIGHTS = 0, 1, 2, 3

stderr = Console(stderr=True)


def fail(message: str, code: int) -> "click.exceptions.Exit":
    click.echo(f"lmfn: error: {message}", err=True)
    return click.exceptions.Exit(code)


# --- shared option groups, written once --------------------------------------------------


def weights_option(f):
    return click.option(
        "-w",
        "--weights",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="Weights file (.safetensors with its config in the metadata).",
    )(f)


def device_option(f):
    return click.option(
        "--device",
        default="auto",
        show_default=True,
        help="auto (CUDA if available, else CPU), cpu, cuda, cuda:N or mps.",
    )(f)


def _load(weights: Path | None, device_name: str):
    from .inference import resolve_device
    from .weights import load_model

    try:
        device = resolve_device(device_name)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--device") from None
    try:
        return load_model(weights, device=device)
    except WeightsError as exc:
        raise fail(str(exc), EXIT_NO_WEIGHTS) from None


# --- commands -------------------------------------------------------------------------------


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="lmfn")
@click.option("-v", "--verbose", count=True, help="More diagnostics on stderr (-vv for debug).")
def main(verbose: int) -> None:
    """Remove motion blur from photos with LMFN, a 1.25M-parameter network that runs on a CPU.

    \b
    Example:
      lmfn deblur shaky/*.jpg -o sharp/ --weights weights/lmfn.safetensors
    """
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    handler = RichHandler(console=stderr, show_time=False, show_path=False)
    logging.basicConfig(level=level, handlers=[handler], format="%(message)s", force=True)


@main.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--output",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for the results (made if missing); each keeps its input's file name.",
)
@weights_option
@device_option
@click.option("--overwrite", is_flag=True, help="Replace outputs that exist already.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def deblur(inputs: tuple[Path, ...], out_dir: Path, weights: Path | None, device: str, overwrite: bool, quiet: bool) -> None:
    """Deblur image files, or every image in the folders given, into OUT.

    Each written file's path is printed on stdout; errors go to stderr, one line per file,
    and the batch goes on. Exit code: 0 all done, 1 some failed, 2 usage, 3 no weights.

    \b
    Example:
      lmfn deblur photo.jpg holiday/ -o sharp/ --weights weights/lmfn.safetensors
    """
    from .batch import deblur_file, plan_jobs

    jobs, problems = plan_jobs(list(inputs), out_dir)
    for problem in problems:
        click.echo(f"lmfn: error: {problem}", err=True)
    if not jobs:
        raise fail("nothing to do", EXIT_FAILED)
    model = _load(weights, device)

    failed = len(problems)
    show = not quiet and stderr.is_terminal
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=stderr, disable=not show, transient=True) as progress:
        task = progress.add_task("deblurring", total=len(jobs))
        for job in jobs:
            progress.update(task, description=job.src.name)
            try:
                written = deblur_file(model, job, overwrite=overwrite)
            except LMFNError as exc:
                failed += 1
                click.echo(f"lmfn: error: {exc}", err=True)
            else:
                click.echo(str(written))
            progress.advance(task)
    if failed:
        click.echo(f"lmfn: {len(jobs) + len(problems) - failed} done, {failed} failed", err=True)
        raise click.exceptions.Exit(EXIT_FAILED)


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
