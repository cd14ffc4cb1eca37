"""Throughput of the Ray engine on one machine beside the local engine.

    python benchmarks/ray_speed.py [--images 24] [--size 640x480] [--threads N]

Writes ``--images`` synthetic PNGs, then deblurs them with the default weights: with the local
engine (``batch.run_batch``), and with ``engines.ray.RayEngine`` on a Ray started here with all
CPUs, with 1 worker and with 2 (each worker with ``(CPUs - 0.25) / workers`` CPUs, so the read
tasks keep room). Prints images per second, wall time including Ray's start-up, and the time
after the first image (steady state). On a 2-core machine no gain is expected from Ray: the
local engine already keeps both cores busy; the figures show the engine's overhead.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from lmfn_cli import load_model
from lmfn_cli.batch import BatchEvents, BatchOptions, run_batch
from lmfn_cli.images import write_image


class _Clock(BatchEvents):
    def __init__(self):
        self.first = None

    def image_done(self, record, error):
        if self.first is None:
            self.first = time.perf_counter()


def _run(inputs, out, model, engine=None):
    clock = _Clock()
    t0 = time.perf_counter()
    records = list(run_batch(inputs, out, BatchOptions(), model=model, events=clock, engine=engine))
    wall = time.perf_counter() - t0
    ok = sum(r.status == "ok" for r in records)
    steady = (ok - 1) / (time.perf_counter() - clock.first) if ok > 1 and clock.first else float("nan")
    return ok, wall, steady


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=24)
    ap.add_argument("--size", default="640x480")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    from lmfn_cli.engines.ray import RayEngine, RayOptions

    w, h = (int(v) for v in args.size.lower().split("x"))
    rng = np.random.default_rng(0)
    cpus = os.cpu_count() or 1
    model = load_model()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for i in range(args.images):
            write_image(tmp / "in" / f"{i:04d}.png", rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        rows.append(("local engine", *_run([str(tmp / "in")], tmp / "local", model)))
        for workers in (1, 2):
            ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False, configure_logging=False)
            try:
                engine = RayEngine(RayOptions(address="auto", workers=workers, cpus_per_worker=(cpus - 0.25) / workers))
                ok, wall, steady = _run([str(tmp / "in")], tmp / f"ray{workers}", model, engine)
            finally:
                ray.shutdown()
            rows.append((f"Ray, {workers} worker{'s' if workers > 1 else ''}", ok, wall, steady))
    print(f"# {args.images} images of {w}x{h}, default weights, {cpus} CPUs, torch threads {torch.get_num_threads()}\n")
    print("| engine | images | wall s | images/s (whole run) | images/s after the first |\n|---|---|---|---|---|")
    for name, ok, wall, steady in rows:
        print(f"| {name} | {ok} | {wall:.1f} | {ok / wall:.2f} | {steady:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
