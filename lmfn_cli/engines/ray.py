"""The Ray engine: a planned batch fanned out over a Ray cluster (``lmfn deblur --engine ray``).

The driver (this process) plans the jobs exactly as the local engine does (``batch.plan_jobs``:
same names, ``--skip-existing``, ``--gt`` pairing), and answers ``--skip-existing`` itself.
The rest goes through Ray Data: ``read_binary_files(include_paths=True)`` reads the inputs in
read tasks (bytes as they are: ``read_images`` would drop EXIF, ICC and 16 bits), and
``map_batches`` hands them to ``workers`` actors, each with the network loaded once (its
weights sent through the object store), which decode, deblur, score and write each output with
``batch.deblur_file``: the same code as the local engine, so the same temporary file and rename,
and byte-identical outputs. Records stream back to the driver in input order.

Paths must be on storage every node sees: a local path on a one-machine cluster, NFS or another
shared mount on a real one, or URIs of one pyarrow filesystem (``s3://bucket/in/`` with ``-o
s3://bucket/out/``; ``uris.URI``), which Ray Data reads and the actors write through a temporary
object and a move. Before anything runs, a small task on every node checks that it sees the
first input and can write to ``OUT`` (for a URI: writes and removes a small object there).

Safe defaults: Ray started here (no address, or ``local``) binds no dashboard and sends no usage
statistics; the actors leave CPU for the read tasks (otherwise Ray Data can wait forever:
ray-project/ray#44687), and asking for GPUs a cluster does not have is an error, not a hang.
A file that fails fails its record, never the job; an actor that dies is restarted by Ray and
its batch retried. Needs ``pip install 'lmfn[ray]'``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ..batch import Job, Record, Settings, deblur_file
from ..errors import ConfigError, ImageError, LMFNError
from ..model import LMFN, LMFNConfig
from ..uris import URI, can_write
from ..video import is_video

log = logging.getLogger(__name__)

__all__ = ["Deblurrer", "RayEngine", "RayOptions", "require_ray"]

_READ_CPUS = 0.25  # what each read task asks for; the actors leave at least this much free


@dataclass(frozen=True)
class RayOptions:
    """``address``: a running cluster (``auto``: the one ``ray start`` made on this machine, or
    ``ray://HOST:10001``); None or ``local``: start Ray in this process for the run.
    ``workers``: actors, each with its own copy of the network; per-worker CPUs and GPUs as
    Ray resources. ``num_cpus``: the CPUs of a Ray started here (None: all)."""

    address: str | None = None
    workers: int = 1
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    num_cpus: int | None = None

    def __post_init__(self) -> None:
        if self.workers < 1 or self.cpus_per_worker <= 0 or self.gpus_per_worker < 0:
            raise ConfigError("--workers >= 1, --cpus-per-worker > 0 and --gpus-per-worker >= 0 are required")


def require_ray():
    """The ``ray`` module (usage statistics off), or ConfigError naming the extra."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise ConfigError("--engine ray needs Ray: pip install 'lmfn[ray]'") from None
    return ray


class Deblurrer:
    """The Ray Data actor: one network per worker, one output written per row."""

    def __init__(self, config: dict, state_ref, jobs: dict, settings: Settings, device: str):
        import ray
        import torch

        from ..inference import resolve_device

        state = ray.get(state_ref[0])  # a list around the reference, so that Ray does not resolve it for us
        self.model = LMFN(LMFNConfig.from_dict(config)).eval()
        self.model.load_state_dict(state)
        self.model.to(resolve_device(device if device != "auto" or torch.cuda.is_available() else "cpu"))
        self.jobs, self.settings = jobs, settings

    def __call__(self, rows: dict) -> dict:
        out: dict[str, list] = {"record": []}
        for path, data in zip(rows["path"], rows["bytes"]):
            job = self.jobs[_key(path)]  # a local path, or a URI's path on its filesystem
            try:
                record = deblur_file(self.model, job, self.settings, data=bytes(data))
            except LMFNError as exc:
                record = Record(str(job.src), str(job.dst), "failed", error=getattr(exc, "problem", str(exc)))
            out["record"].append(json.dumps(dataclasses.asdict(record)))  # text: one Arrow type for every row
        return out


def _key(path: str) -> str:
    """Absolute local paths and a filesystem's paths (``bucket/in/a.png``) as Ray names them back."""
    return os.path.normpath(path)


def _read_path(src: Path | URI) -> str:
    """What the read tasks are given for ``src``, and what they name it back: the absolute path,
    or the URI's path on its filesystem (``bucket/in/a.png`` for S3)."""
    return src.filesystem()[1] if isinstance(src, URI) else str(src.resolve())


class RayEngine:
    """A ``batch`` engine: call it as ``deblur_files`` is called (``Batch(engine=RayEngine(...))``)."""

    def __init__(self, options: RayOptions = RayOptions(), *, device: str = "auto", actor_class: type | None = None):
        """``actor_class``: the Ray Data actor (``Deblurrer`` or a subclass of it)."""
        self.options, self.device = options, device
        self.actor_class = actor_class or Deblurrer
        self.started_here = False

    # -- the cluster ------------------------------------------------------------------------

    def connect(self):
        ray = require_ray()
        opts = self.options
        logging.getLogger("ray").setLevel(logging.WARNING)  # Ray's INFO lines are not for the user's stderr
        logging.getLogger("ray.data").setLevel(logging.ERROR)
        if not ray.is_initialized():
            if opts.address in (None, "local"):
                ray.init(num_cpus=opts.num_cpus, include_dashboard=False, log_to_driver=False,
                         logging_level=logging.WARNING, configure_logging=False)
                self.started_here = True
            else:
                ray.init(address=opts.address, include_dashboard=False, log_to_driver=False,
                         logging_level=logging.WARNING, configure_logging=False)
        return ray

    def check_resources(self, ray) -> None:
        """ConfigError when the workers cannot all run (GPUs the cluster lacks, no CPU left for
        the read tasks), instead of a job that waits forever."""
        opts = self.options
        total = ray.cluster_resources()
        gpus, cpus = total.get("GPU", 0.0), total.get("CPU", 0.0)
        if opts.gpus_per_worker and gpus < opts.workers * opts.gpus_per_worker:
            raise ConfigError(f"--workers {opts.workers} x --gpus-per-worker {opts.gpus_per_worker:g} needs "
                              f"{opts.workers * opts.gpus_per_worker:g} GPUs; the cluster has {gpus:g}")
        if opts.workers * opts.cpus_per_worker > cpus - _READ_CPUS:
            raise ConfigError(f"--workers {opts.workers} x --cpus-per-worker {opts.cpus_per_worker:g} leaves no CPU "
                              f"for reading files on a cluster of {cpus:g} CPUs (Ray Data would wait forever); "
                              f"use fewer workers or a smaller --cpus-per-worker")

    def check_paths(self, ray, jobs: list[Job]) -> None:
        """Every alive node must see the first input and be able to write into OUT's folder."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        first = jobs[0].src.resolve()
        out = jobs[0].dst.resolve().parent

        @ray.remote(num_cpus=0)
        def sees(path: Path | URI, folder: Path | URI) -> tuple[bool, bool, str]:
            import socket

            try:
                seen = path.exists()
            except OSError:  # a store that refuses this node
                seen = False
            if isinstance(folder, URI):
                return seen, can_write(folder), socket.gethostname()
            parent = folder
            while not parent.exists() and parent != parent.parent:
                parent = parent.parent
            return seen, os.access(parent, os.W_OK), socket.gethostname()

        nodes = [n for n in ray.nodes() if n.get("Alive")]
        checks = [sees.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False))
                  .remote(first, out) for n in nodes]
        for ok_read, ok_write, host in ray.get(checks):
            if not ok_read and isinstance(first, URI):
                raise ConfigError(f"node {host} cannot read {first}: check that node's credentials for the store")
            if not ok_read:
                raise ConfigError(f"node {host} does not see {first}: inputs must be on storage every node "
                                  "mounts at the same path (NFS, another shared filesystem, or a URI such as s3://)")
            if not ok_write:
                raise ConfigError(f"node {host} cannot write to {out}: OUT must be shared and writable")

    # -- the engine -------------------------------------------------------------------------

    def __call__(self, model: LMFN, jobs: list[Job], settings: Settings,
                 on_tile: Callable | None = None, on_frame: Callable | None = None,
                 on_estimate: Callable | None = None) -> Iterator[tuple[Job, Record | LMFNError]]:
        """Run ``jobs`` on the cluster, yielding ``(job, record)`` in job order (the workers'
        tile, frame and kernel-estimation progress is not reported back)."""
        if not jobs:
            return
        roots = {j.src.root if isinstance(j.src, URI) else "local files" for j in jobs}
        if len(roots) > 1:
            raise ConfigError(f"the Ray engine reads inputs from one filesystem at a time, not from {' and '.join(sorted(roots))}")
        if not isinstance(model, LMFN):
            raise ConfigError("the Ray engine runs PyTorch weights (.safetensors), not ONNX files")
        videos = [j for j in jobs if is_video(j.src)]
        if videos:
            raise ConfigError(f"{videos[0].src}: the Ray engine takes images; run videos with the local engine")
        ray = self.connect()
        try:
            yield from self._run(ray, model, jobs, settings)
        finally:
            if self.started_here:
                ray.shutdown()
                self.started_here = False

    def _run(self, ray, model: LMFN, jobs: list[Job], settings: Settings) -> Iterator[tuple[Job, Record | LMFNError]]:
        self.check_resources(ray)
        # Answered here, as the local engine answers them at read time: no file is read for them.
        todo, done = [], {}
        for job in jobs:
            if job.dst.exists() and settings.skip_existing:
                done[job] = Record(str(job.src), str(job.dst), "skipped")
            else:
                todo.append(job)
        if todo:
            self.check_paths(ray, todo)
        results = self._records(ray, model, todo, settings) if todo else iter(())
        pending = {}
        order = iter(jobs)
        want = next(order, None)
        for job, record in results:
            pending[job] = record
            while want is not None and (want in done or want in pending):
                yield want, (done.pop(want, None) or pending.pop(want))
                want = next(order, None)
        while want is not None:  # inputs no read task returned: gone before they were read
            record = done.pop(want, None) or pending.pop(want, None)
            if record is None:
                yield want, ImageError(want.src, "no such file (removed before it was read)")
            else:
                yield want, record
            want = next(order, None)

    def _records(self, ray, model: LMFN, jobs: list[Job], settings: Settings) -> Iterator[tuple[Job, Record | LMFNError]]:
        import ray.data

        opts = self.options
        ctx = ray.data.DataContext.get_current()
        ctx.execution_options.preserve_order = True
        ctx.enable_progress_bars = False
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        state_ref = [ray.put(state)]  # in a list: Ray would otherwise hand the actors the value itself
        table = {_key(_read_path(j.src)): j for j in jobs}
        by_input = {str(j.src): j for j in jobs}  # what each record names as its input
        filesystem = jobs[0].src.filesystem()[0] if isinstance(jobs[0].src, URI) else None
        ds = ray.data.read_binary_files(list(table), include_paths=True, filesystem=filesystem,
                                        ignore_missing_paths=True, override_num_blocks=min(len(jobs), 64 * opts.workers),
                                        num_cpus=_READ_CPUS)
        ds = ds.map_batches(
            self.actor_class, fn_constructor_args=(dataclasses.asdict(model.config), state_ref, table, settings, self.device),
            batch_size=1, compute=ray.data.ActorPoolStrategy(size=opts.workers), num_cpus=opts.cpus_per_worker,
            num_gpus=opts.gpus_per_worker or None)  # Ray Data restarts a dead actor and retries its rows
        for row in ds.iter_rows():
            fields = json.loads(row["record"])
            record = Record(**{k: (tuple(v) if k == "size" and v is not None else v) for k, v in fields.items()})
            job = by_input[record.input]
            yield job, ImageError(job.src, record.error or "failed") if record.status == "failed" else record
