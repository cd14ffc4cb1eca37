"""The ``lmfn`` command line: the only package that imports click or rich or sets the exit code.

One module per command group, each registering its commands on ``main`` (defined here):

  options.py  exit codes, ``fail``, the stderr console, the shared options, loading weights
  deblur.py   lmfn deblur
  train.py    lmfn train
  synth.py    lmfn synth
  bench.py    lmfn bench
  export.py   lmfn export
  info.py     lmfn info (and its alias lmfn models)
  weights.py  lmfn download-weights, lmfn weights list/path/verify

Exit codes: 0 all done, 1 some inputs failed, 2 usage error, 3 no usable weights (missing,
corrupt, not downloadable).
"""

from __future__ import annotations

import logging

import click
from rich.logging import RichHandler

from .. import __version__
from .options import stderr


class _Lmfn(click.Group):
    """The top-level group; it keeps the arguments it was given (``options.command_line``)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta["lmfn.args"] = list(args)
        return super().parse_args(ctx, args)


@click.group(cls=_Lmfn, context_settings={"help_option_names": ["-h", "--help"]})
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


# The command modules register their commands on ``main`` when imported, so they come after it.
# The commands are re-exported, so ``from lmfn_cli.cli import deblur`` is the click command.
from .deblur import deblur  # noqa: E402, F401
from .train import train  # noqa: E402, F401
from .synth import synth  # noqa: E402, F401
from .bench import bench  # noqa: E402, F401
from .export import export  # noqa: E402, F401
from .info import info  # noqa: E402, F401
from .weights import download_weights, weights_group  # noqa: E402, F401
from .report import report  # noqa: E402, F401

__all__ = ["main", "deblur", "train", "synth", "bench", "export", "info", "download_weights", "weights_group", "report"]
