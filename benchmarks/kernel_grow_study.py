"""Automatic kernel size: does growing the window where the kernel reaches its edge help?

    python benchmarks/kernel_grow_study.py                   # long blur on GoPro training frames
    python benchmarks/kernel_grow_study.py --lengths 41 --windows 63

The idea (issue 29's "kernel size automatic", a third try after `kernel_size_study.py`): search
with the default 31 px window; where the kernel holds ``EDGE_MASS`` (3%) or more of its mass on
the window's outer two rows and columns (`edge_mass`: a blur longer than the window, cut off),
search again with a 47 px window on a square as much larger (256 -> 389 px) and use that kernel.

Default: 6 sharp frames of the *training* scene GOPR0477_11_00 (every 45th from the 4th; never
validation photos), 640 px centre crops blurred by straight lines of 15, 25 and 41 px
(`yardstick.line_kernel`, convolved in linear light, angle from ``default_rng([7, i])``, noise
sigma 1/255), each kernel estimated on one region without the check by:

- ``fixed31``: the default 31 px window;
- ``grow``: that kernel, or where it reaches the edge, the 47 px window's;
- ``fixedN`` for each ``--windows N``: a fixed N px window on a region of 8N px (at most the crop).

Each is scored by TV deconvolution (prior 1.5e-3): the gain over the blurry crop and the Levin et
al. error ratio against the true kernel, both after the best integer shift within 3 px.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import kernel_method as km  # noqa: E402
from lmfn_cli import yardstick as ys  # noqa: E402
from lmfn_cli.deconvolution import kernel_extent  # noqa: E402
from lmfn_cli.deconvolution import normalise_kernel  # noqa: E402
from lmfn_cli.kernel_estimation import EstimationSettings, estimate_kernel  # noqa: E402
from lmfn_cli.kernel_method import TV_PRIOR, deblur_by_kernel  # noqa: E402

FRAMES = km.SHARED / "data" / "frames" / "GOPR0477_11_00"
EDGE_MASS = 0.03
GROWN = EstimationSettings(kernel_size=47, region=389, check=False)  # 31 x 1.5, odd; 256 x 47 / 31


def edge_mass(kernel: np.ndarray) -> float:
    """The share of ``kernel``'s mass (k,k) on its outermost two rows and columns."""
    k = normalise_kernel(kernel)
    return float(k.sum() - k[2:-2, 2:-2].sum())


def reaches_edge(kernel: np.ndarray) -> bool:
    return edge_mass(kernel) >= EDGE_MASS


def tv(blurry: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    return km.to_u8(deblur_by_kernel(blurry / 255.0, kernel, prior=TV_PRIOR, method="tv"))


def long_blur(args: argparse.Namespace) -> None:
    files = sorted(FRAMES.glob("*.jpg"))[3::45][:args.photos]
    photos = [ys._photo_u8(p) for p in files]
    base = EstimationSettings(check=False)
    modes = {"fixed31": base, "grow": None}
    for n in args.windows:
        modes[f"fixed{n}"] = replace(base, kernel_size=n, region=min(8 * n, args.crop))
    totals: dict[str, list[float]] = {m: [] for m in modes}
    grown: dict[str, list[float]] = {m: [] for m in modes}
    for length in args.lengths:
        for i, photo in enumerate(photos):
            rng = np.random.default_rng([7, i])
            kernel = ys.line_kernel(length, float(rng.uniform(0, 180)))
            kernel = kernel / kernel.sum()
            sharp = km.centre_crop(photo, args.crop)
            blurry = km.to_u8(ys.blur_crop(photo, args.crop, kernel, "linear") + rng.normal(0, 1 / 255, sharp.shape))
            base_sse = km.aligned_sse(blurry, sharp)
            true_sse = km.aligned_sse(tv(blurry, kernel), sharp)
            cells, edge, first, first_seconds = [], False, None, 0.0
            for mode, s in modes.items():
                t0 = time.time()
                if mode == "grow":  # the fixed31 kernel, or where it reaches the edge, the grown search's
                    k = estimate_kernel(blurry / 255.0, GROWN).kernel if edge else first
                    seconds = time.time() - t0 + first_seconds
                else:
                    k = estimate_kernel(blurry / 255.0, s).kernel
                    seconds = time.time() - t0
                sse = km.aligned_sse(tv(blurry, k), sharp)
                gain = km.psnr_of(sse, sharp) - km.psnr_of(base_sse, sharp)
                if mode == "fixed31":
                    edge, first, first_seconds = reaches_edge(k), k, seconds
                totals[mode].append(gain)
                if edge:
                    grown[mode].append(gain)
                cells.append(f"{mode} {k.shape[0]} px: gain {gain:+.2f} ratio {sse / true_sse:.2f} "
                             f"extent {kernel_extent(k):.1f} edge {edge_mass(k):.3f} ({seconds:.1f} s)")
            print(f"{length:g} px {files[i].name} (true kernel: gain "
                  f"{km.psnr_of(true_sse, sharp) - km.psnr_of(base_sse, sharp):+.2f}, extent {kernel_extent(kernel):.1f})"
                  f"{' 31 px reaches the edge' if edge else ''} | " + " | ".join(cells), flush=True)
    print()
    for mode in modes:
        print(f"{mode}: summed gain {sum(totals[mode]):+.2f} dB over {len(totals[mode])} crops; "
              f"on the {len(grown[mode])} whose 31 px kernel reached the edge {sum(grown[mode]):+.2f} dB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", type=int, default=6)
    ap.add_argument("--crop", type=int, default=640)
    ap.add_argument("--lengths", type=float, nargs="+", default=[15, 25, 41])
    ap.add_argument("--windows", type=int, nargs="*", default=[], help="fixed windows to compare too (odd px)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if not FRAMES.is_dir():
        sys.exit(f"{FRAMES} not found")
    long_blur(args)


if __name__ == "__main__":
    main()
