"""From command-line inputs to jobs, and deblurring one job: read, restore, write atomically.

Inputs are files, folders (their images; ``recursive`` walks sub-folders and keeps the
structure under the output folder) and glob patterns (expanded here, so quoted patterns work
on every shell, ``**`` included). Hidden files are skipped in folders.
"""

from __future__ import annotations

import dataclasses
import glob
import logging
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from .errors import ImageError, LMFNError, OutputExistsError
from .evaluation import Protocol, score_pair, to_tensor
from .images import DEFAULT_MAX_PIXELS, EXTENSION, IMAGE_EXTENSIONS, Picture, format_of, read_picture, write_picture
from .inference import restore
from .model import LMFN
from .tiling import DEFAULT_OVERLAP

log = logging.getLogger(__name__)

__all__ = ["Job", "Record", "Settings", "deblur_file", "deblur_files", "deblur_picture", "plan_jobs", "score_result"]


@dataclass(frozen=True)
class Job:
    src: Path
    dst: Path
    truth: Path | None = None  # ground truth to score the result against (lmfn deblur --gt)


@dataclass(frozen=True)
class Settings:
    """How each image is run and written (one object per batch)."""

    tile: int | None = None  # None: auto from free memory; 0: whole image
    overlap: int = DEFAULT_OVERLAP
    precision: str = "auto"
    quality: int = 95
    strip_metadata: bool = False
    overwrite: bool = False
    skip_existing: bool = False
    max_pixels: int | None = DEFAULT_MAX_PIXELS
    protocol: Protocol = Protocol()  # how results are scored when a job has ground truth


@dataclass(frozen=True)
class Record:
    """What happened to one input; one ``--json`` line. ``status``: ok, skipped or failed."""

    input: str
    output: str | None
    status: str
    size: tuple[int, int] | None = None  # (width, height)
    seconds: float | None = None
    tile: int | None = None
    device: str | None = None
    precision: str | None = None
    error: str | None = None
    truth: str | None = None
    psnr: float | None = None  # None also for an identical pair (infinite PSNR) in JSON
    ssim: float | None = None


def _has_glob(text: str) -> bool:
    return any(ch in text for ch in "*?[")


def _images_in(folder: Path, recursive: bool, exclude: Path | None) -> list[Path]:
    walk = folder.rglob("*") if recursive else folder.iterdir()
    found = []
    for p in walk:
        rel = p.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts):
            continue
        if exclude is not None and p.resolve().is_relative_to(exclude):
            continue  # do not feed earlier results (OUT inside an input folder) back in
        if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file():
            found.append(p)
    return sorted(found)


def expand_inputs(inputs: list[str], *, recursive: bool = False, exclude: Path | None = None) -> tuple[list[tuple[Path, Path]], list[ImageError]]:
    """Inputs -> ``(file, path relative to the output folder)`` pairs and the problems found.

    A file keeps its name; a folder's images keep their path below the folder; a glob's
    matches keep their names. An existing path is never treated as a pattern.
    """
    found: list[tuple[Path, Path]] = []
    problems: list[ImageError] = []
    for text in inputs:
        item = Path(text)
        if item.exists() or not _has_glob(text):
            matches = [item]
        else:
            matches = [Path(m) for m in sorted(glob.glob(text, recursive=True))]
            if not matches:
                problems.append(ImageError(text, "no files match this pattern"))
                continue
        for path in matches:
            if path.is_dir():
                images = _images_in(path, recursive, exclude)
                if not images:
                    hint = "" if recursive else " (use -r for sub-folders)"
                    problems.append(ImageError(path, f"folder holds no images{hint}"))
                found += [(p, p.relative_to(path)) for p in images]
            elif path.exists():
                found.append((path, Path(path.name)))
            else:
                problems.append(ImageError(path, "no such file or folder"))
    return found, problems


def output_name(rel: Path, fmt: str, suffix: str) -> Path:
    """``photo.JPG`` + fmt ``png`` + suffix ``-sharp`` -> ``photo-sharp.png`` (same folder part)."""
    ext = rel.suffix if fmt == "same" else EXTENSION[fmt]
    return rel.with_name(f"{rel.stem}{suffix}{ext}")


def plan_jobs(inputs: list[str], out_dir: Path, *, recursive: bool = False, fmt: str = "same",
              suffix: str = "") -> tuple[list[Job], list[ImageError]]:
    """Jobs for every input image, and the problems found (missing inputs, empty folders, two
    inputs with one output name, an output that would replace an input)."""
    found, problems = expand_inputs(inputs, recursive=recursive, exclude=out_dir.resolve())
    sources = {src.resolve() for src, _ in found}
    jobs: list[Job] = []
    seen: dict[Path, Path] = {}
    planned: set[Path] = set()
    for src, rel in found:
        if src.resolve() in planned:
            continue  # the same file named twice (e.g. a file and its folder): do it once
        planned.add(src.resolve())
        dst = out_dir / output_name(rel, fmt, suffix)
        if dst.resolve() in sources:
            problems.append(ImageError(src, f"output {dst} would replace an input; choose another -o or a --suffix"))
        elif dst.resolve() in seen:
            problems.append(ImageError(src, f"same output {dst} as {seen[dst.resolve()]}; skipped (use -r to keep folders apart)"))
        else:
            seen[dst.resolve()] = src
            jobs.append(Job(src, dst))
    return jobs, problems


def deblur_picture(model: LMFN, picture: Picture, settings: Settings,
                   on_tile: Callable[[int, int], None] | None = None) -> tuple[Picture, Record]:
    """Deblur a decoded picture; metadata is carried over. The record has no input/output yet."""
    start = time.perf_counter()
    done = restore(model, picture.pixels, tile=settings.tile, overlap=settings.overlap, precision=settings.precision, on_tile=on_tile)
    h, w = picture.pixels.shape[:2]
    record = Record("", None, "ok", (w, h), round(time.perf_counter() - start, 3), done.tile, done.device, done.precision)
    return Picture(done.pixels, picture.format, picture.icc_profile, picture.exif, picture.dpi), record


def _load(job: Job, settings: Settings) -> Picture | Record:
    """The decoded input, or the record of a job that needs no work (``--skip-existing``)."""
    if job.dst.exists():
        if settings.skip_existing:
            return Record(str(job.src), str(job.dst), "skipped")
        if not settings.overwrite:  # checked before the slow part too, not only at write time
            raise OutputExistsError(job.dst, "output exists already (use --overwrite to replace it, or --skip-existing)")
    picture = read_picture(job.src, max_pixels=settings.max_pixels)
    log.debug("%s: %s %s", job.src, picture.pixels.shape, picture.pixels.dtype)
    return picture


def _compute(model: LMFN, job: Job, picture: Picture, settings: Settings,
             on_tile: Callable[[int, int], None] | None) -> tuple[Picture, Record]:
    try:
        result, record = deblur_picture(model, picture, settings, on_tile)
    except ImageError as exc:
        raise ImageError(job.src, exc.problem) from None
    scored = {}
    if job.truth is not None:  # scored before writing: a bad ground truth fails the image, not half of it
        scored = score_result(result, job, settings.protocol, model)
    return result, dataclasses.replace(record, input=str(job.src), output=str(job.dst), **scored)


def _write(job: Job, result: Picture, settings: Settings) -> None:
    write_picture(job.dst, result, format_of(job.dst), quality=settings.quality,
                  strip_metadata=settings.strip_metadata, overwrite=settings.overwrite)


def deblur_file(model: LMFN, job: Job, settings: Settings, on_tile: Callable[[int, int], None] | None = None) -> Record:
    """Read, deblur and atomically write one image. Raises ``ImageError`` naming the file."""
    loaded = _load(job, settings)
    if isinstance(loaded, Record):
        return loaded
    result, record = _compute(model, job, loaded, settings, on_tile)
    _write(job, result, settings)
    return record


def deblur_files(model: LMFN, jobs: list[Job], settings: Settings,
                 on_tile: Callable[[int, int], None] | None = None) -> Iterator[tuple[Job, Record | LMFNError]]:
    """Deblur ``jobs`` in order like `deblur_file`, yielding ``(job, record)`` or, for a job
    that failed, ``(job, error)`` as each finishes.

    The next image is decoded and the previous result encoded and written in two background
    threads while the network runs, so a batch costs little more than its compute. Results
    are still written atomically and in order; on an exception in the caller's thread (Ctrl-C)
    the write in progress is completed, and nothing further is read or written.
    """
    if not jobs:
        return
    with ThreadPoolExecutor(1, thread_name_prefix="lmfn-read") as reader, \
            ThreadPoolExecutor(1, thread_name_prefix="lmfn-write") as writer:
        next_load: Future = reader.submit(_load, jobs[0], settings)
        pending: tuple[Job, Record, Future] | None = None
        try:
            for i, job in enumerate(jobs):
                loading, next_load = next_load, (reader.submit(_load, jobs[i + 1], settings) if i + 1 < len(jobs) else None)
                outcome: Record | LMFNError | None = None
                try:
                    loaded = loading.result()
                    if isinstance(loaded, Record):
                        outcome = loaded
                    else:
                        result, record = _compute(model, job, loaded, settings, on_tile)
                        del loaded
                except LMFNError as exc:
                    outcome = exc
                if pending is not None:  # one write in flight at a time: results come out in order
                    yield _finish(*pending)
                    pending = None
                if outcome is not None:
                    yield job, outcome
                else:
                    pending = (job, record, writer.submit(_write, job, result, settings))
                    del result
            if pending is not None:
                yield _finish(*pending)
                pending = None
        finally:
            if next_load is not None:
                next_load.cancel()


def _finish(job: Job, record: Record, writing: Future) -> tuple[Job, Record | LMFNError]:
    try:
        writing.result()
    except LMFNError as exc:
        return job, exc
    return job, record


def score_result(result: Picture, job: Job, protocol: Protocol, model: LMFN) -> dict:
    """{truth, psnr, ssim} of a deblurred picture against ``job.truth`` (read with the same
    orientation handling as inputs), on the model's device. PSNR is the full-precision result's,
    before any lossy encoding of the output (JPEG/WebP)."""
    device = next(model.parameters()).device
    try:
        truth = read_picture(job.truth).pixels
    except ImageError as exc:
        raise ImageError(job.src, f"ground truth {job.truth}: {exc.problem}") from None
    try:
        s = score_pair(to_tensor(result.pixels, device), to_tensor(truth, device), protocol)
    except ImageError as exc:
        raise ImageError(job.src, f"against ground truth {job.truth}: {exc.problem}") from None
    value = None if s.psnr == float("inf") else round(s.psnr, 4)
    return {"truth": str(job.truth), "psnr": value, "ssim": round(s.ssim, 6)}
