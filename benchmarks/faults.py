"""Faults: ``kill -9`` at random moments of a batch, then the next run; and a soak of many images.

    python benchmarks/faults.py kills --kills 50 [--images 12] [--seed 1]
    python benchmarks/faults.py soak --images 5000 [--size 48]

``kills``: a folder of images is deblurred by ``lmfn deblur --skip-existing`` (a small random
network: the command's behaviour is under test, not the weights), killed with SIGKILL after a
random delay (from before the model loads to mid-batch), again and again; after every kill the
script checks that ``OUT`` holds only complete, decodable images, and after the last one, a
run to completion must leave every output present and no temporary file (the run after a
kill removes the ones the killed run left). It prints how many kills landed before, during and
after writing, the temporaries left by kills and removed, and any failure.

``soak``: one batch of ``--images`` small PNGs through ``batch.run_batch`` in this process with
the default weights; the resident memory (RSS) after every 1,000 images, to show it stays flat.
"""

from __future__ import annotations

import argparse
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _image(h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([(x * 5 + y * 3) % 256, (x * 2 + seed) % 256, (y * 7) % 256], -1)
    return np.clip(base + rng.integers(0, 20, base.shape), 0, 255).astype(np.uint8)


def _rss_mib() -> float:
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[1])
    import os

    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def check_out(out: Path, names: set[str]) -> tuple[list[str], list[str]]:
    """(problems, temporaries): every visible file in ``out`` must be a planned output that decodes."""
    from lmfn_cli.errors import ImageError
    from lmfn_cli.images import read_picture

    problems, temporaries = [], []
    if not out.exists():
        return problems, temporaries
    for p in out.iterdir():
        if p.name.startswith("."):
            temporaries.append(p.name)
            continue
        if p.name not in names:
            problems.append(f"unexpected file {p.name}")
            continue
        try:
            read_picture(p)
        except ImageError as exc:
            problems.append(f"{p.name} does not decode: {exc.problem}")
    return problems, temporaries


def kills(n_kills: int, n_images: int, seed: int, work: Path) -> dict:
    from lmfn_cli import LMFN, LMFNConfig, save_weights
    from lmfn_cli.images import write_image

    rng = random.Random(seed)
    src, out = work / "in", work / "out"
    src.mkdir()
    names = set()
    for i in range(n_images):
        write_image(src / f"img{i:03d}.png", _image(240, 320, i))
        names.add(f"img{i:03d}.png")
    net = LMFN(LMFNConfig(enc_channels=16, dec_channels=16, esa_channels=8, num_blocks=3))
    weights = save_weights(net, work / "w.safetensors", variant="faults")
    cmd = [sys.executable, "-m", "lmfn_cli", "deblur", str(src), "-o", str(out), "--skip-existing", "-w", str(weights),
           "--device", "cpu", "--threads", "1", "--tile", "0", "-q"]
    # how long a whole run takes here, to spread the kills over it
    t = time.perf_counter()
    subprocess.run(cmd, capture_output=True, check=True)
    full = time.perf_counter() - t
    t = time.perf_counter()
    subprocess.run(cmd, capture_output=True, check=True)  # everything skipped: start-up and model load
    startup = time.perf_counter() - t
    stats = {"kills": 0, "landed_before_any_output": 0, "landed_mid_batch": 0, "run_had_finished": 0,
             "temporaries_left_by_kills": 0, "temporaries_after_next_run": 0, "problems": [], "full_run_s": round(full, 1),
             "startup_s": round(startup, 1)}
    for k in range(n_kills):
        for p in out.iterdir():  # start each round from a part-done folder
            if rng.random() < 0.7:
                p.unlink()
        before = len([p for p in out.iterdir() if not p.name.startswith(".")])
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        # most kills in the batch itself (reading, computing, writing), some during start-up
        time.sleep(rng.uniform(startup, full) if rng.random() < 0.8 else rng.uniform(0.05, startup))
        finished = proc.poll() is not None
        if not finished:
            proc.send_signal(signal.SIGKILL)
        proc.wait()
        stats["kills"] += 0 if finished else 1
        problems, temporaries = check_out(out, names)
        done = len([p for p in out.iterdir() if not p.name.startswith(".")])
        if finished:
            stats["run_had_finished"] += 1
        elif done == before:
            stats["landed_before_any_output"] += 1
        else:
            stats["landed_mid_batch"] += 1
        stats["temporaries_left_by_kills"] += len(temporaries)
        stats["problems"] += [f"after kill {k}: {p}" for p in problems]
    final = subprocess.run(cmd, capture_output=True, text=True)
    problems, temporaries = check_out(out, names)
    stats["temporaries_after_next_run"] = len(temporaries)
    stats["problems"] += problems
    stats["final_exit_code"] = final.returncode
    stats["outputs_after_next_run"] = len([p for p in out.iterdir() if not p.name.startswith(".")])
    stats["images"] = n_images
    return stats


def soak(n_images: int, size: int, work: Path) -> list[tuple[int, float]]:
    from lmfn_cli import load_model
    from lmfn_cli.batch import BatchEvents, BatchOptions, Settings, run_batch
    from lmfn_cli.images import write_image

    src = work / "in"
    src.mkdir()
    for i in range(n_images):
        write_image(src / f"s{i:05d}.png", _image(size, size, i))
    samples: list[tuple[int, float]] = []

    class Rss(BatchEvents):
        done = 0

        def image_done(self, record, error):
            self.done += 1
            if self.done % 1000 == 0 or self.done in (1, 100):
                samples.append((self.done, round(_rss_mib(), 1)))
                print(f"{self.done} images: RSS {samples[-1][1]} MiB", file=sys.stderr)

    batch = run_batch([str(src)], work / "out", BatchOptions(settings=Settings(tile=0)), model=load_model(),
                      events=Rss())
    for _ in batch:
        pass
    assert batch.summary.ok == n_images, batch.summary
    return samples


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["kills", "soak"])
    ap.add_argument("--kills", type=int, default=50)
    ap.add_argument("--images", type=int, default=None, help="kills: 24; soak: 5000")
    ap.add_argument("--size", type=int, default=48, help="soak: image side in pixels")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, help="soak: torch CPU threads (1 beside another busy process)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.what == "kills":
            s = kills(args.kills, args.images or 24, args.seed, Path(tmp))
            for k, v in s.items():
                print(f"{k}: {v}")
            return 0 if not s["problems"] and s["temporaries_after_next_run"] == 0 and s["final_exit_code"] == 0 \
                and s["outputs_after_next_run"] == s["images"] else 1
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        t = time.perf_counter()
        samples = soak(args.images or 5000, args.size, Path(tmp))
        print("| images done | RSS MiB |\n|---|---|")
        for n, rss in samples:
            print(f"| {n:,} | {rss} |")
        print(f"\n{args.images or 5000} images of {args.size}x{args.size} in {time.perf_counter() - t:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
