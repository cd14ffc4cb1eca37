"""Turning command-line inputs into (input, output) pairs, and deblurring one file."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from .errors import ImageError
from .images import IMAGE_EXTENSIONS, read_image, write_image
from .inference import deblur
from .model import LMFN

log = logging.getLogger(__name__)

__all__ = ["Job", "plan_jobs", "deblur_file"]


@dataclass(frozen=True)
class Job:
    src: Path
    dst: Path


def plan_jobs(inputs: list[Path], out_dir: Path) -> tuple[list[Job], list[ImageError]]:
    """Files are taken as given; a directory contributes its image files (sorted, not recursive).

    Each output is ``out_dir / <input name>``. Returns the jobs and the problems found
    (missing inputs, two inputs with one output name, an output that is its input).
    """
    jobs: list[Job] = []
    problems: list[ImageError] = []
    seen: dict[Path, Path] = {}
    for item in inputs:
        if item.is_dir():
            files = sorted(p for p in item.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
            if not files:
                problems.append(ImageError(item, "directory holds no images"))
        elif item.exists():
            files = [item]
        else:
            problems.append(ImageError(item, "no such file or directory"))
            continue
        for src in files:
            dst = out_dir / src.name
            if dst.resolve() == src.resolve():
                problems.append(ImageError(src, "output would overwrite the input; choose another -o"))
            elif dst in seen:
                problems.append(ImageError(src, f"same output name as {seen[dst]}; skipped"))
            else:
                seen[dst] = src
                jobs.append(Job(src, dst))
    return jobs, problems


def deblur_file(model: LMFN, job: Job, *, overwrite: bool = False) -> Path:
    """Read, deblur and atomically write one image. Raises ``ImageError`` naming the file."""
    if job.dst.exists() and not overwrite:
        # Checked before the (slow) forward pass as well as at write time.
        raise ImageError(job.dst, "output exists already (use --overwrite to replace it)")
    image = read_image(job.src)
    log.debug("%s: %s %s", job.src, image.shape, image.dtype)
    try:
        result = deblur(model, image)
    except ImageError as exc:
        raise ImageError(job.src, exc.problem) from None
    return write_image(job.dst, result, overwrite=overwrite)
