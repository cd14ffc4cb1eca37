"""From command-line inputs to jobs, and deblurring one job: read, restore, write atomically.
Videos (``video.VIDEO_EXTENSIONS``) are jobs too, run by ``video.deblur_video``.

Inputs are files, folders (their images; ``recursive`` walks sub-folders and keeps the
structure under the output folder) and glob patterns (expanded by ``inputs.expand_inputs``, so
quoted patterns work on every shell, ``**`` included). Hidden files are skipped in folders; an
odd entry (a broken link, a FIFO named like an image...) is one problem. Inputs, ``--gt`` and the
output folder may also be URIs (``s3://bucket/in/``; ``uris.URI``): images are read and written
through their pyarrow filesystem, with the same naming and the same temporary-then-move rule.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import ConfigError, ImageError, LMFNError, NothingToDoError, OutputExistsError, one_line
from .evaluation import Protocol, score_pair, to_tensor
from .files import remove_stale_temporaries
from .images import DEFAULT_MAX_PIXELS, EXTENSION, Picture, read_picture
from .deconvolution import kernel_extent
from .inference import restore
from .inputs import expand_inputs, real_path
from .kernel_files import kernel_path_for, write_kernel
from .kernel_method import KernelOptions, restore_with_method
from .model import LMFN
from .report import RecordLog, ReportOptions, now, write_html_report
from .tiling import DEFAULT_OVERLAP
from .uris import URI, location, read_picture_at, write_picture_at
from .uris import remove_stale_temporaries as remove_stale_objects
from .video import VIDEO_FORMATS, VideoSettings, deblur_video, is_video

log = logging.getLogger(__name__)

__all__ = ["Batch", "BatchEvents", "BatchOptions", "BatchSummary", "Job", "Record", "Settings", "attach_truth", "deblur_file",
           "deblur_files", "deblur_picture", "plan_jobs", "run_batch", "score_result"]


@dataclass(frozen=True)
class Job:
    src: Path | URI
    dst: Path | URI
    truth: Path | URI | None = None  # ground truth to score the result against (lmfn deblur --gt)


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
    video: VideoSettings = VideoSettings()  # how videos are encoded (crf, codec)
    kernel: KernelOptions = KernelOptions()  # blind network, or deblurring by a (given or estimated) blur kernel
    save_kernel: bool = False  # write each image's kernel beside its output (NAME.kernel.png)


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
    frames: int | None = None  # videos: frames written, and frames per second achieved
    fps: float | None = None
    method: str | None = None  # --method kernel/auto: the method used (blind or kernel), and why
    method_why: str | None = None
    kernel: str | None = None  # the kernel file written (--save-kernel)
    kernel_size: int | None = None  # the kernel's side (px), its extent (px) and the agreement of its check (0-1) ...
    kernel_extent: float | None = None
    kernel_agreement: float | None = None
    kernel_check: str | None = None  # ... made on two regions ("regions") or one region from two starts ("starts")


def output_name(rel: Path, fmt: str, suffix: str) -> Path:
    """``photo.JPG`` + fmt ``png`` + suffix ``-sharp`` -> ``photo-sharp.png`` (same folder part).

    An image format (png, jpg, ...) applies to images and a video format (mp4, mkv, ...) to
    videos; the other kind keeps its own extension."""
    video = is_video(rel)
    if video and fmt in VIDEO_FORMATS:
        ext = VIDEO_FORMATS[fmt]
    elif not video and fmt in EXTENSION:
        ext = EXTENSION[fmt]
    else:
        ext = rel.suffix
    return rel.with_name(f"{rel.stem}{suffix}{ext}")


def plan_jobs(inputs: list[str], out_dir: Path | URI, *, recursive: bool = False, fmt: str = "same",
              suffix: str = "") -> tuple[list[Job], list[ImageError]]:
    """Jobs for every input image, and the problems found (missing inputs, empty folders, two
    inputs with one output name, an output that would replace an input)."""
    found, problems = expand_inputs(inputs, recursive=recursive, exclude=real_path(out_dir))
    sources = {real_path(src) for src, _ in found}
    jobs: list[Job] = []
    seen: dict[Path, Path] = {}
    planned: set[Path] = set()
    for src, rel in found:
        if real_path(src) in planned:
            continue  # the same file named twice (e.g. a file and its folder): do it once
        planned.add(real_path(src))
        dst = out_dir / output_name(rel, fmt, suffix)
        real_dst = real_path(dst)  # real_path, not resolve(): never raises on a link loop
        if real_dst in sources:
            problems.append(ImageError(src, f"output {dst} would replace an input; choose another -o or a --suffix"))
        elif real_dst in seen:
            problems.append(ImageError(src, f"same output {dst} as {seen[real_dst]}; skipped (use -r to keep folders apart)"))
        else:
            seen[real_dst] = src
            jobs.append(Job(src, dst))
    return jobs, problems


def deblur_picture(model: LMFN, picture: Picture, settings: Settings,
                   on_tile: Callable[[int, int], None] | None = None) -> tuple[Picture, Record]:
    """Deblur a decoded picture; metadata is carried over. The record has no input/output yet."""
    result, record, _ = _deblur_picture(model, picture, settings, on_tile)
    return result, record


def _deblur_picture(model: LMFN, picture: Picture, settings: Settings, on_tile: Callable[[int, int], None] | None = None,
                    on_estimate: Callable[[int, int], None] | None = None):
    """`deblur_picture`, plus the kernel used or estimated ((k,k) float32, or None)."""
    start = time.perf_counter()
    options = settings.kernel
    h, w = picture.pixels.shape[:2]
    kernel = None
    extra: dict = {}
    if options.method == "blind" and options.kernel is None:
        done = restore(model, picture.pixels, tile=settings.tile, overlap=settings.overlap, precision=settings.precision,
                       on_tile=on_tile)
    else:
        outcome = restore_with_method(model, picture.pixels, options, tile=settings.tile, overlap=settings.overlap,
                                      precision=settings.precision, on_tile=on_tile, on_estimate=on_estimate)
        done, kernel = outcome.restored, outcome.kernel
        extra = {"method": outcome.method, "method_why": outcome.why}
        if kernel is not None:
            est = outcome.estimate
            extent = est.extent if est is not None else kernel_extent(kernel)
            extra.update(kernel_size=int(kernel.shape[0]), kernel_extent=round(extent, 2),
                         kernel_agreement=None if est is None or est.agreement is None else round(est.agreement, 3),
                         kernel_check=None if est is None else est.checked)
    record = Record("", None, "ok", (w, h), round(time.perf_counter() - start, 3), done.tile, done.device, done.precision,
                    **extra)
    return Picture(done.pixels, picture.format, picture.icc_profile, picture.exif, picture.dpi), record, kernel


class _Video:
    """A video job, loaded: videos are decoded by ``video.deblur_video`` while they run."""


def _load(job: Job, settings: Settings, data: bytes | None = None) -> Picture | Record | _Video:
    """The decoded input (from ``data``, the file's bytes, when given), or the record of a job
    that needs no work (``--skip-existing``)."""
    if job.dst.exists():
        if settings.skip_existing:
            return Record(str(job.src), str(job.dst), "skipped")
        if not settings.overwrite:  # checked before the slow part too, not only at write time
            raise OutputExistsError(job.dst, "output exists already (use --overwrite to replace it, or --skip-existing)")
    if is_video(job.src):
        if job.truth is not None:
            raise ImageError(job.src, "videos cannot be scored against ground truth (--gt takes images)")
        return _Video()
    if data is not None:
        picture = read_picture(data, name=job.src, max_pixels=settings.max_pixels)
    else:
        picture = read_picture_at(job.src, max_pixels=settings.max_pixels)
    log.debug("%s: %s %s", job.src, picture.pixels.shape, picture.pixels.dtype)
    return picture


def _compute(model: LMFN, job: Job, picture: Picture, settings: Settings,
             on_tile: Callable[[int, int], None] | None,
             on_estimate: Callable[[int, int], None] | None = None) -> tuple[Picture, Record, np.ndarray | None]:
    try:
        result, record, kernel = _deblur_picture(model, picture, settings, on_tile, on_estimate)
    except ImageError as exc:
        raise ImageError(job.src, exc.problem) from None
    scored = {}
    if job.truth is not None:  # scored before writing: a bad ground truth fails the image, not half of it
        scored = score_result(result, job, settings.protocol, model)
    if not settings.save_kernel:
        kernel = None
    elif kernel is not None:
        scored["kernel"] = str(kernel_path_for(job.dst))
    return result, dataclasses.replace(record, input=str(job.src), output=str(job.dst), **scored), kernel


def _write(job: Job, result: Picture, settings: Settings, kernel: np.ndarray | None = None) -> None:
    """Write ``result`` (and ``kernel`` beside it, ``--save-kernel``) atomically."""
    if kernel is not None:  # first, so that an image is never written without the kernel it was asked with
        write_kernel(kernel, kernel_path_for(job.dst), overwrite=settings.overwrite)
    write_picture_at(job.dst, result, quality=settings.quality, strip_metadata=settings.strip_metadata,
                     overwrite=settings.overwrite)


def _run_video(model: LMFN, job: Job, settings: Settings, on_frame: Callable[[int, int | None], None] | None) -> Record:
    if isinstance(job.src, URI) or isinstance(job.dst, URI):
        raise ImageError(job.src, "videos are read and written as local files only, not through URIs")
    if settings.kernel.kernel is not None or settings.kernel.method == "kernel":
        # one kernel per frame is not what a video's blur is; auto runs videos blind
        raise ImageError(job.src, "videos are deblurred by the blind network only (--method kernel and --kernel take images)")
    try:
        done = deblur_video(model, job.src, job.dst, settings.video, tile=settings.tile, overlap=settings.overlap,
                            precision=settings.precision, overwrite=settings.overwrite, on_frame=on_frame)
    except OutputExistsError as exc:
        outcome = _skipped_if_asked(job, exc, settings)
        if isinstance(outcome, OutputExistsError):
            raise
        return outcome
    except ConfigError as exc:  # no PyAV: this video's error, named, and the batch goes on
        raise ImageError(job.src, str(exc)) from None
    extra = {"method": "blind", "method_why": "a video: blind network"} if settings.kernel.method == "auto" else {}
    return Record(str(job.src), str(job.dst), "ok", done.size, done.seconds, done.tile, done.device, done.precision,
                  frames=done.frames, fps=done.fps, **extra)


def deblur_file(model: LMFN, job: Job, settings: Settings, on_tile: Callable[[int, int], None] | None = None,
                on_frame: Callable[[int, int | None], None] | None = None, *, data: bytes | None = None,
                on_estimate: Callable[[int, int], None] | None = None) -> Record:
    """Read, deblur and atomically write one image or video. Raises ``ImageError`` naming the
    file. ``data``: the image file's bytes, read already (an engine's read tasks).
    ``on_estimate(done, total)``: a kernel estimation's progress (``--method kernel|auto``)."""
    loaded = _load(job, settings, data)
    if isinstance(loaded, Record):
        return loaded
    if isinstance(loaded, _Video):
        return _run_video(model, job, settings, on_frame)
    result, record, kernel = _compute(model, job, loaded, settings, on_tile, on_estimate)
    try:
        _write(job, result, settings, kernel)
    except OutputExistsError as exc:
        outcome = _skipped_if_asked(job, exc, settings)
        if isinstance(outcome, OutputExistsError):
            raise
        return outcome
    return record


def deblur_files(model: LMFN, jobs: list[Job], settings: Settings,
                 on_tile: Callable[[int, int], None] | None = None,
                 on_frame: Callable[[int, int | None], None] | None = None,
                 on_estimate: Callable[[int, int], None] | None = None) -> Iterator[tuple[Job, Record | LMFNError]]:
    """Deblur ``jobs`` in order like `deblur_file`, yielding ``(job, record)`` or, for a job
    that failed, ``(job, error)`` as each finishes.

    The next image is decoded and the previous result encoded and written in two background
    threads while the network runs, so a batch costs little more than its compute. Results
    are still written atomically and in order; on an exception in the caller's thread (Ctrl-C)
    the write in progress is completed, and nothing further is read or written. A video runs
    in its turn, after the previous image is written, with ``on_frame(done, total)``.
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
                    elif isinstance(loaded, _Video):
                        if pending is not None:  # the previous image is written before the video starts
                            yield _finish(*pending, settings)
                            pending = None
                        outcome = _run_video(model, job, settings, on_frame)
                    else:
                        result, record, kernel = _compute(model, job, loaded, settings, on_tile, on_estimate)
                        del loaded
                except LMFNError as exc:
                    outcome = exc
                if pending is not None:  # one write in flight at a time: results come out in order
                    yield _finish(*pending, settings)
                    pending = None
                if outcome is not None:
                    yield job, outcome
                else:
                    pending = (job, record, writer.submit(_write, job, result, settings, kernel))
                    del result, kernel
            if pending is not None:
                yield _finish(*pending, settings)
                pending = None
        finally:
            if next_load is not None:
                next_load.cancel()


def _finish(job: Job, record: Record, writing: Future, settings: Settings) -> tuple[Job, Record | LMFNError]:
    try:
        writing.result()
    except OutputExistsError as exc:
        return job, _skipped_if_asked(job, exc, settings)
    except LMFNError as exc:
        return job, exc
    return job, record


def _skipped_if_asked(job: Job, exc: OutputExistsError, settings: Settings) -> Record | OutputExistsError:
    """An output that appeared while its image ran (another run writing the same folder) is
    left as it is; with ``skip_existing`` that is a skip, not a failure."""
    return Record(str(job.src), str(job.dst), "skipped") if settings.skip_existing else exc


def score_result(result: Picture, job: Job, protocol: Protocol, model: LMFN) -> dict:
    """{truth, psnr, ssim} of a deblurred picture against ``job.truth`` (read with the same
    orientation handling as inputs), on the model's device. PSNR is the full-precision result's,
    before any lossy encoding of the output (JPEG/WebP)."""
    device = next(model.parameters()).device
    try:
        truth = read_picture_at(job.truth, max_pixels=DEFAULT_MAX_PIXELS).pixels
    except ImageError as exc:
        raise ImageError(job.src, f"ground truth {job.truth}: {exc.problem}") from None
    try:
        s = score_pair(to_tensor(result.pixels, device), to_tensor(truth, device), protocol)
    except ImageError as exc:
        raise ImageError(job.src, f"against ground truth {job.truth}: {exc.problem}") from None
    value = None if s.psnr == float("inf") else round(s.psnr, 4)
    return {"truth": str(job.truth), "psnr": value, "ssim": round(s.ssim, 6)}


# --------------------------------------------------------------------------------------------
# A whole batch, as the CLI (and later the video and Ray engines) run it
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchOptions:
    """What a batch does besides running each image (``settings``): where outputs go and how
    they are scored. ``gt_dir``: score each result against the image of the same stem
    (``pair_by="stem"``) or the same place in sorted order (``"order"``) in that folder, and
    write ``report`` (``.json``/``.csv``) at the end."""

    recursive: bool = False
    fmt: str = "same"
    suffix: str = ""
    settings: Settings = Settings()
    gt_dir: Path | None = None
    pair_by: str = "stem"
    report: Path | None = None
    html: Path | None = None  # write the before/after HTML report here (``report.write_html_report``)
    html_max_images: int = 50
    command: str | None = None  # the command line, for the records log and the HTML report's header
    records_log: Path | None = None  # append the batch's records here (JSON lines; ``report.records_log_path``)

    def __post_init__(self) -> None:
        # folders and files may be given as strings, as on the command line
        for name in ("report", "html", "records_log"):
            if isinstance(getattr(self, name), str):
                object.__setattr__(self, name, Path(getattr(self, name)))
        if isinstance(self.gt_dir, str):
            object.__setattr__(self, "gt_dir", location(self.gt_dir))


class BatchEvents:
    """How a batch reports progress. Every method does nothing: subclass and override what you
    show (the CLI draws a progress bar). Problems also go to the ``lmfn_cli.batch`` logger as
    warnings only where no event carries them (inputs without ground truth, unused ground truth)."""

    def planned(self, jobs: list[Job], problems: list[ImageError]) -> None:
        """Inputs are expanded: ``jobs`` will run; ``problems`` are inputs that will not."""

    def image_started(self, index: int, job: Job) -> None:
        """``jobs[index]`` is next."""

    def tile(self, done: int, total: int) -> None:
        """Within the current image: ``done`` of ``total`` tiles."""

    def estimate(self, done: int, total: int) -> None:
        """A kernel estimation's progress (scales done of total), ``--method kernel|auto``."""

    def frame(self, done: int, total: int | None) -> None:
        """Within the current video: ``done`` frames of ``total`` (None: the file does not say)."""

    def image_done(self, record: Record, error: LMFNError | None) -> None:
        """An image finished: ok, skipped, or failed with ``error`` (``record.error`` is its problem)."""


@dataclass
class BatchSummary:
    """The end of a batch: counts, wall time, and with ground truth the mean scores
    (``evaluation.summarise``: ``images``, ``psnr``, ``ssim``, ``seconds``, ``infinite_psnr``)."""

    ok: int
    skipped: int
    failed: int
    seconds: float
    scores: dict | None = None
    report: Path | None = None
    html: Path | None = None

    @property
    def all_done(self) -> bool:
        return self.failed == 0


def attach_truth(jobs: list[Job], gt_dir: Path | URI, pair_by: str = "stem", *, recursive: bool = False) -> list[Job]:
    """``jobs`` with ``truth`` set from ``gt_dir`` (jobs without a match keep ``None``).

    Raises NothingToDoError when ``gt_dir`` holds no images, ConfigError when pairing by stem is
    ambiguous; warns about inputs without ground truth and ground truth no input matches.
    """
    from .evaluation import pair_by_order, pair_by_stem

    found, problems = expand_inputs([str(gt_dir)], recursive=recursive)
    truths = [t for t, _ in found]
    for problem in problems:  # a broken link, a FIFO named like an image...: no job fails for it
        log.warning("ground truth left out: %s", problem)
    if not truths:
        raise NothingToDoError(f"{gt_dir}: no ground-truth images")
    pairing = pair_by_stem if pair_by == "stem" else pair_by_order
    found, lonely, unused = pairing([j.src for j in jobs], truths)
    for src in lonely:
        log.warning("%s: no ground truth in %s; not scored", one_line(src), one_line(gt_dir))
    if unused:
        shown = ", ".join(one_line(t.name) for t in unused[:5]) + (", ..." if len(unused) > 5 else "")
        log.warning("%d ground-truth file(s) match no input: %s", len(unused), shown)
    return [dataclasses.replace(j, truth=found.get(j.src)) for j in jobs]


class Batch:
    """A batch of images to deblur into ``out_dir``; iterate it to run it, one ``Record`` per
    input (failed inputs included, in input order after the ones that could not be planned).

    ``model`` is the network, or a function returning ``(model, info)`` called once the batch
    is planned (so that a batch with nothing to do never loads or downloads weights); ``info``
    names the weights in the report (name, file, sha256, parameters). ``engine`` runs the planned
    jobs: ``deblur_files`` here (the default), or e.g. ``engines.ray.RayEngine`` on a cluster. Planning raises
    NothingToDoError (no image at all, or no ground truth) and ConfigError (ambiguous pairing)
    before any image runs. After the iteration, ``summary`` holds the counts and mean scores,
    and the report has been written (ImageError if it cannot be).
    """

    def __init__(self, inputs: list[str], out_dir: str | Path, options: BatchOptions = BatchOptions(), *,
                 model: LMFN | Callable[[], tuple[LMFN, dict]], events: BatchEvents | None = None,
                 model_info: dict | None = None, engine: Callable | None = None) -> None:
        self.inputs, self.out_dir, self.options = list(inputs), location(out_dir), options
        self.engine = engine or deblur_files  # same signature: (model, jobs, settings, on_tile, on_frame, *, on_estimate)
        self.events = events or BatchEvents()
        self._model, self.model_info = model, model_info or {}
        self.records: list[Record] = []
        self.summary: BatchSummary | None = None

    def __iter__(self) -> Iterator[Record]:
        opts, events = self.options, self.events
        started = time.perf_counter()
        jobs, problems = plan_jobs(self.inputs, self.out_dir, recursive=opts.recursive, fmt=opts.fmt, suffix=opts.suffix)
        events.planned(jobs, problems)
        for p in problems:
            record = Record(str(p.path), None, "failed", error=p.problem)
            self.records.append(record)
            yield record
        if not jobs:
            raise NothingToDoError("no images to deblur")
        # left by a run that was killed (kill -9)
        remove_stale_temporaries([j.dst for j in jobs if isinstance(j.dst, Path)])
        object_dests = [j.dst for j in jobs if isinstance(j.dst, URI)]
        if object_dests:  # pyarrow is an extra: a local batch must not need it
            remove_stale_objects(object_dests)
        if opts.gt_dir is not None:
            jobs = attach_truth(jobs, opts.gt_dir, opts.pair_by, recursive=opts.recursive)
        model = self._model
        if not isinstance(model, LMFN) and callable(model):
            model, info = model()
            self.model_info = {**info, **self.model_info}
        from . import __version__

        self.header = {"model": self.model_info, "version": __version__, "command": opts.command, "started": now(),
                       "out": str(self.out_dir)}
        records_log = RecordLog(opts.records_log, self.header) if opts.records_log else None  # for `lmfn report OUT`
        if records_log:
            for record in self.records:  # the inputs that could not be planned
                records_log.add(dataclasses.asdict(record))
        if jobs:
            events.image_started(0, jobs[0])
        for i, (job, outcome) in enumerate(self.engine(model, jobs, opts.settings, events.tile, events.frame,
                                                       on_estimate=events.estimate)):
            if isinstance(outcome, LMFNError):
                record = Record(str(job.src), str(job.dst), "failed", error=getattr(outcome, "problem", str(outcome)))
                events.image_done(record, outcome)
            else:
                record = outcome
                events.image_done(record, None)
            self.records.append(record)
            if records_log:
                records_log.add(dataclasses.asdict(record))
            yield record
            if i + 1 < len(jobs):
                events.image_started(i + 1, jobs[i + 1])
        counts = {s: sum(r.status == s for r in self.records) for s in ("ok", "skipped", "failed")}
        summary = BatchSummary(**counts, seconds=round(time.perf_counter() - started, 3))
        if opts.gt_dir is not None:
            summary.scores, summary.report = self._score_summary()
        if opts.html is not None:
            summary.html = self._html_report()
        self.summary = summary

    def _html_report(self) -> Path | None:
        opts = self.options
        try:
            return write_html_report(opts.html, [dataclasses.asdict(r) for r in self.records], self.header,
                                     options=ReportOptions(max_images=opts.html_max_images, protocol=opts.settings.protocol))
        except NothingToDoError as exc:
            log.warning("no HTML report: %s", exc)
            return None
        except OSError as exc:
            raise ImageError(opts.html, f"cannot write the HTML report: {exc}") from None

    def _score_summary(self) -> tuple[dict, Path | None]:
        """The mean scores and, with ``options.report``, the report written."""
        from . import __version__
        from .evaluation import Report, Score, summarise, write_report

        opts = self.options
        scores = [Score(r.output or r.input, float("inf") if r.psnr is None else r.psnr, r.ssim, r.seconds)
                  for r in self.records if r.status == "ok" and r.ssim is not None]
        mean = summarise(scores)
        if not scores:
            log.warning("no image was scored against ground truth")
        if opts.report is None:
            return mean, None
        ran = [r for r in self.records if r.status == "ok" and r.device]
        tiles = sorted({r.tile for r in ran})
        run = {"device": ran[0].device if ran else None, "precision": ran[0].precision if ran else None,
               "tile": tiles[0] if len(tiles) == 1 else tiles, "overlap": opts.settings.overlap,
               "ground_truth": str(opts.gt_dir), "pair_by": opts.pair_by, "version": __version__}
        report = Report("deblur", opts.settings.protocol.as_dict(), self.model_info, run, scores, mean)
        try:
            write_report(opts.report, report)
        except (LMFNError, OSError) as exc:
            raise ImageError(opts.report, f"cannot write the report: {exc}") from None
        return mean, opts.report


def run_batch(inputs: list[str], out_dir: str | Path, options: BatchOptions = BatchOptions(), *,
              model: LMFN | Callable[[], tuple[LMFN, dict]], events: BatchEvents | None = None,
              model_info: dict | None = None, engine: Callable | None = None) -> Batch:
    """A ``Batch`` (iterate it to run it; then read ``.summary``). Example, a scored batch::

        batch = run_batch(["blur/"], "out/", BatchOptions(gt_dir="sharp/", report="s.csv"), model=load_model())
        for record in batch:
            print(record.output, record.psnr, record.ssim)
        print(batch.summary.scores["psnr"])
    """
    return Batch(inputs, out_dir, options, model=model, events=events, model_info=model_info, engine=engine)
