"""Does fitting the kernel window to the blur help estimation? (issue 29's "kernel size automatic")

    python benchmarks/kernel_size_study.py 8 fixed31,autohalf,autofull
    python benchmarks/kernel_size_study.py 8 fixed31,fixed21
    python benchmarks/kernel_size_study.py 8 fixed31 5     # every 7th training photo from the 6th

On 8 BSDS500 *training* photos (every 7th from the 4th; never validation photos), 256 px crops
blurred as `benchmarks/kernel_method.py` blurs them (lines in sRGB values and in linear light,
USRNet motion kernels 8-11, the held-out gyro_04 recording), the kernel is estimated on the most
textured square (one region, no check) by:

- ``fixedN``: `estimate_kernel`'s coarse-to-fine search with an N px window;
- ``autofull``: a first search with 31 px, then a second from scratch with the window fitted to
  the first kernel's support (radius r of its non-zero pixels: 2 (ceil(1.25 r) + 2) + 1, in 9-31);
- ``autohalf``: the same, the first search on the square downscaled 2x with a 15 px window.

Each estimate is scored by the Levin et al. error ratio (TV deconvolution by the estimated kernel
over that by the true kernel, squared error after the best integer shift) and by the TV
deconvolution's gain over the blurry crop. Prints one line per row and mode.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import kernel_method as km  # noqa: E402
from lmfn_cli import yardstick as ys  # noqa: E402
from lmfn_cli.kernel_estimation import EstimationSettings, _estimate_on, _resize, luminance, textured_regions  # noqa: E402
from lmfn_cli.kernel_method import TV_PRIOR, deblur_by_kernel  # noqa: E402


def radius(k: np.ndarray) -> int:
    """Largest distance (px, per axis) of a non-zero kernel pixel from the centre."""
    c = k.shape[0] // 2
    ys_, xs = np.nonzero(k > 0)
    return int(max(np.abs(ys_ - c).max(), np.abs(xs - c).max()))


def estimate(blurry: np.ndarray, mode: str) -> tuple[np.ndarray, int]:
    """(kernel, the window of the last search; 0 for fixedN) of one blurry u8 crop."""
    luma = luminance(blurry / 255.0)
    t, l, side = textured_regions(luma, 256, 1)[0]
    sq = luma[t:t + side, l:l + side]

    def tick() -> None:
        return None

    if mode.startswith("fixed"):
        return _estimate_on(sq, EstimationSettings(kernel_size=int(mode[5:])), tick).numpy(), 0
    if mode == "autofull":
        r = radius(_estimate_on(sq, EstimationSettings(kernel_size=31), tick).numpy())
    elif mode == "autohalf":
        half = _resize(torch.from_numpy(np.ascontiguousarray(sq)).double(), (side // 2, side // 2)).numpy()
        r = 2 * radius(_estimate_on(half, EstimationSettings(kernel_size=15, region=128), tick).numpy()) + 1
    else:
        raise SystemExit(f"unknown mode {mode}")
    size = min(31, max(9, 2 * (math.ceil(r * 1.25) + 2) + 1))
    return _estimate_on(sq, EstimationSettings(kernel_size=size), tick).numpy(), size


def main() -> None:
    torch.set_num_threads(2)
    n, modes = int(sys.argv[1]), sys.argv[2].split(",")
    start = int(sys.argv[3]) if len(sys.argv) > 3 else 3  # another start picks other training photos
    files = sorted((km.SHARED / "data/sharp/bsds500/train").glob("*.jpg"))[start::7][:n]
    photos = [ys._photo_u8(p) for p in files]
    rows = {"lines-srgb-3": km.lines_pairs(photos, "srgb", 3.0), "lines-srgb-5": km.lines_pairs(photos, "srgb", 5.0),
            "lines-linear-9": km.lines_pairs(photos, "linear", 9.0),
            "lines-linear-15": km.lines_pairs(photos, "linear", 15.0),
            "lines-linear-21": km.lines_pairs(photos, "linear", 21.0),
            "shake-usrnet": km.shake_pairs(photos, "usrnet", 256), "shake-gyro04": km.shake_pairs(photos, "gyro", 256)}
    for name, pairs in rows.items():
        for mode in modes:
            ratios, gains, seconds, sizes = [], [], 0.0, []
            for blurry, sharp, kernel in pairs:
                start = time.perf_counter()
                k, size = estimate(blurry, mode)
                seconds += time.perf_counter() - start
                sizes.append(size)
                by_est = deblur_by_kernel(blurry, k, prior=TV_PRIOR, method="tv")
                by_true = deblur_by_kernel(blurry, kernel, prior=TV_PRIOR, method="tv")
                e_est, e_true, e_blurry = (km.aligned_sse(x, sharp) for x in (by_est, by_true, blurry))
                ratios.append(e_est / e_true)
                gains.append(10 * math.log10(e_blurry / e_est))
            r = np.array(ratios)
            print(f"{name:16s} {mode:9s}: ratio<=3 {np.mean(r <= 3) * 100:3.0f}%  median {np.median(r):.2f}  "
                  f"gain {np.mean(gains):+.2f}  {seconds / len(pairs):.1f}s  windows {sizes}", flush=True)


if __name__ == "__main__":
    main()
