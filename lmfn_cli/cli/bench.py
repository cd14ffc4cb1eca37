"""lmfn bench: score the model on Köhler, GoPro or a folder of pairs with the published protocol."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ..errors import LMFNError
from . import main
from .options import (EXIT_FAILED, _download_progress, _load_with_info, fail, model_run_options, protocol_options,
                      report_option, stderr)


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
    from .. import bench as bench_lib
    from .. import datasets
    from ..evaluation import Protocol

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
        from ..evaluation import write_report

        try:
            write_report(report_path, rep)
        except (LMFNError, OSError) as exc:
            raise fail(f"{report_path}: cannot write the report: {exc}", EXIT_FAILED) from None
    if failures or not scores:
        raise fail(f"{len(failures)} of {len(items)} images failed", EXIT_FAILED)
