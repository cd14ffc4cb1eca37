"""lmfn report: the before/after HTML report of the batches run into a folder, from their records log."""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import LMFNError, one_line
from . import main
from .options import EXIT_FAILED, FolderType, fail, html_max_images_option, protocol_options


@main.command()
@click.argument("out_dir", type=FolderType())
@click.option("-o", "--output", "html_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              metavar="FILE.html", help="Where the report goes [default: OUT/report.html].")
@html_max_images_option
@protocol_options
def report(out_dir: Path, html_path: Path | None, html_max_images: int, ssim_variant: str | None, y_channel: bool,
           crop_border: int) -> None:
    """Write the before/after HTML report of the batches run into OUT_DIR.

    Every lmfn deblur batch logs its results in a file of your state folder named for OUT_DIR
    (LMFN_STATE_DIR, else e.g. ~/.local/state/lmfn/batches/); this reads the latest result of
    each output (the inputs, outputs and ground truth must still be where they were) and writes
    one self-contained HTML file: a before/after divider, a heat map of what changed and the
    crops that changed most for each image, and with ground truth a PSNR/SSIM table sorted by
    gain. It opens offline in any browser and loads nothing.

    \b
    Example:
      lmfn deblur shaky/ -o sharp/ --gt truth/ && lmfn report sharp/
      lmfn report sharp/ -o ~/Desktop/sharp.html --html-max-images 10
    """
    from ..evaluation import Protocol
    from ..report import ReportOptions, read_record_log, write_html_report

    protocol = Protocol("pairs", ssim_variant or "gaussian", y_channel, crop_border)
    try:
        header, records = read_record_log(out_dir)
        path = write_html_report(html_path or out_dir / "report.html", records, header,
                                 options=ReportOptions(max_images=html_max_images, protocol=protocol))
    except LMFNError as exc:  # no records (NothingToDoError), files gone, a report that cannot be written
        raise fail(str(exc), EXIT_FAILED) from None
    click.echo(one_line(path))
