"""Speed and memory of `lmfn deblur` on the CPU: seconds per 1280x720 image, peak RSS for a
6000x4000 image run in tiles.

Each measurement runs in a fresh subprocess (so peak RSS is that run's alone) through the same
code path as the command line (`lmfn_cli.batch.deblur_file`: decode, deblur, encode, atomic
write). The images are generated (smooth gradients, edges and noise), so the script needs no
data; the network's cost does not depend on the content.

    python benchmarks/deblur_speed.py                       # the README figures
    python benchmarks/deblur_speed.py --threads 2 --repeats 5 --big 4000x3000 --tile 1024
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_WEIGHTS = ROOT / "weights" / "lmfn-synthblur-v0.safetensors"

CHILD = r"""
import json, resource, sys, time
from pathlib import Path
import torch
from lmfn_cli.batch import Job, Settings, deblur_file
from lmfn_cli.weights import load_model

args = json.loads(sys.argv[1])
if args["threads"]:
    torch.set_num_threads(args["threads"])
tmp = Path(args["tmp"])
src = tmp / "in.png"
model = load_model(args["weights"], device="cpu")
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
settings = Settings(tile=args["tile"], overwrite=True)
times = []
for i in range(args["repeats"]):
    t = time.perf_counter()
    record = deblur_file(model, Job(src, tmp / "out.png"), settings)
    times.append(time.perf_counter() - t)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"times": times, "tile": record.tile, "peak_rss": peak, "rss_before": base, "threads": torch.get_num_threads()}))
"""


def make_image(path: Path, size: tuple[int, int]) -> None:
    """Smooth gradients, a pattern and noise, as an 8-bit PNG (made here, so the child's peak
    RSS is the deblurring alone)."""
    import numpy as np

    from lmfn_cli.images import write_image

    w, h = size
    rng = np.random.default_rng(0)
    img = np.empty((h, w, 3), np.uint8)
    x = np.arange(w, dtype=np.float32)
    for y0 in range(0, h, 500):  # in bands, to keep this process small too
        yy = np.arange(y0, min(h, y0 + 500), dtype=np.float32)[:, None]
        band = np.stack([np.broadcast_to(x / w, (len(yy), w)), np.broadcast_to(yy / h, (len(yy), w)),
                         0.5 + 0.4 * np.sin(x / 37.0) * np.cos(yy / 23.0)], axis=2)
        band += rng.normal(0, 0.02, band.shape).astype(np.float32)
        img[y0:y0 + len(yy)] = np.clip(np.rint(band * 255), 0, 255)
    write_image(path, img)


def measure(size: tuple[int, int], tile: int | None, repeats: int, weights: Path, threads: int | None) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        make_image(Path(tmp) / "in.png", size)
        args = {"size": size, "tile": tile, "repeats": repeats, "weights": str(weights), "threads": threads, "tmp": tmp}
        proc = subprocess.run([sys.executable, "-c", CHILD, json.dumps(args)], capture_output=True, text=True, cwd=ROOT)
        if proc.returncode != 0:
            sys.exit(f"benchmark child failed:\n{proc.stderr}")
        return json.loads(proc.stdout.strip().splitlines()[-1])


def parse_size(text: str) -> tuple[int, int]:
    w, h = text.lower().split("x")
    return int(w), int(h)


def parse_tile(text: str) -> int | None:
    return None if text == "auto" else int(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of the 1280x720 image (the first is a warm-up)")
    parser.add_argument("--big", type=parse_size, default=(6000, 4000), help="size of the tiled image, WxH")
    parser.add_argument("--tile", type=parse_tile, default=None, help="tile for the big image: auto or N")
    args = parser.parse_args()

    cpu = platform.processor() or platform.machine()
    print(f"CPU: {cpu}, {os.cpu_count()} logical cores; python {platform.python_version()}")
    hd = measure((1280, 720), 0, args.repeats + 1, args.weights, args.threads)
    timed = sorted(hd["times"][1:])
    median = timed[len(timed) // 2]
    print(f"1280x720, whole image, fp32, {hd['threads']} threads: {median:.2f} s/image "
          f"(median of {len(timed)}; min {timed[0]:.2f}, max {timed[-1]:.2f}; decode + deblur + PNG encode + write)")
    for tile in (0, 1024):  # why `auto` runs images up to ~2 MP whole on a CPU
        fhd = measure((1920, 1080), tile, 1, args.weights, args.threads)
        print(f"1920x1080, {'whole image' if tile == 0 else f'tile {tile}'}: {fhd['times'][0]:.2f} s")
    big = measure(args.big, args.tile, 1, args.weights, args.threads)
    w, h = args.big
    print(f"{w}x{h}, tile {big['tile'] or 'whole'} ({'auto' if args.tile is None else 'fixed'}), fp32, {big['threads']} threads: "
          f"{big['times'][0]:.1f} s, peak RSS {big['peak_rss'] / 2**30:.2f} GiB "
          f"({big['rss_before'] / 2**30:.2f} GiB with the model loaded; the decoded image alone is {w * h * 3 / 2**20:.0f} MiB)")


if __name__ == "__main__":
    main()
