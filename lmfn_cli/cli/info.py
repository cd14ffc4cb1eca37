"""lmfn info (and lmfn models): the model variants, their sizes and costs."""

from __future__ import annotations

import json
from dataclasses import asdict

import click
from rich.console import Console
from rich.table import Table

from .. import __version__
from . import main


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
    from ..info import variant_infos

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
