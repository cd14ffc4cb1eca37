"""lmfn export: write weights as an ONNX graph for ONNX Runtime."""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import LMFNError
from . import main
from .options import EXIT_FAILED, _load, fail, weights_option


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
    from ..onnxrt import export_onnx

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
