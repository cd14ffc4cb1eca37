"""Which of the check's two kernels to deconvolve by? (issue 29)

    python benchmarks/kernel_pick_study.py 16 1                     # N photos, first photo
    python benchmarks/kernel_pick_study.py 16 4 identity,lines-srgb-3,shake-gyro04

On a 256 px crop `estimate_kernel` searches one square twice, from a horizontal and from a
vertical start, and compares the two kernels (`KernelEstimate.agreement`). It used to return
the first search's kernel; this measures the alternatives on BSDS500 *training* photos (every
7th from the given one; never validation photos), 256 px centre crops, sharp (``identity``) or
blurred as `benchmarks/kernel_method.py` blurs them. Each crop's two kernels are deconvolved by
the default network stage and scored by the gain over the blurry crop (best integer shift
within 3 px; identity: whether it was deconvolved at all). Per row it prints what
``--method kernel`` would gain (the kernel used where its extent reaches
`EstimationSettings.min_extent` and the agreement `KERNEL_MIN_AGREEMENT`, else the crop
unchanged, gain 0), and with ``auto``'s 0.9, for three choices: the first search's kernel, the
more compact of the two (the smaller `kernel_extent`), the second search's.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import kernel_method as km  # noqa: E402
from lmfn_cli import load_model  # noqa: E402
from lmfn_cli import yardstick as ys  # noqa: E402
from lmfn_cli.deconvolution import kernel_extent  # noqa: E402
from lmfn_cli.kernel_estimation import (EstimationSettings, _estimate_on, kernel_agreement, luminance,  # noqa: E402
                                        textured_regions)
from lmfn_cli.kernel_method import KERNEL_MIN_AGREEMENT, KernelOptions  # noqa: E402

CROP = 256
DEFAULT_ROWS = ("identity", "lines-srgb-3", "lines-linear-3", "lines-srgb-5", "lines-linear-5", "shake-gyro04")
CHOICES = {"first": lambda c: 0, "compact": lambda c: 0 if c["extent"][0] <= c["extent"][1] else 1,
           "second": lambda c: 1}


def rows_of(photos: list[np.ndarray]) -> dict:
    crops = [km.centre_crop(p, CROP) for p in photos]
    rows = {"identity": lambda: [(c, c, None) for c in crops],
            "shake-usrnet": lambda: km.shake_pairs(photos, "usrnet", CROP),
            "shake-gyro04": lambda: km.shake_pairs(photos, "gyro", CROP)}
    for mode in ys.MODES:
        for length in (3, 5, 9, 15):
            rows[f"lines-{mode}-{length}"] = lambda m=mode, n=length: km.lines_pairs(photos, m, float(n))
    return rows


def measure(blurry: np.ndarray, sharp: np.ndarray, kernel: np.ndarray | None, model, options: KernelOptions) -> dict:
    """Both searches' kernels of ``blurry``'s one square, their extents, agreement and scores."""
    s = options.estimation
    luma = luminance(blurry / 255.0)
    (t, l, side), = textured_regions(luma, min(s.region, *luma.shape), 1)
    square = luma[t:t + side, l:l + side]
    kernels = [_estimate_on(square, s, lambda: None, vertical=v).float().numpy() for v in (False, True)]
    shift = 0 if kernel is None else km.SHIFT
    blurry_sse = km.aligned_sse(blurry, sharp, shift)
    scores = []
    for k in kernels:
        sse = km.aligned_sse(km.deconvolve_by(blurry, k, model, options), sharp, shift)
        scores.append(None if kernel is None else 10 * math.log10(blurry_sse / sse))
    return {"extent": [kernel_extent(k) for k in kernels], "agreement": kernel_agreement(*kernels), "gain": scores}


def main() -> None:
    torch.set_num_threads(2)
    n, start = int(sys.argv[1]), int(sys.argv[2])
    files = sorted((km.SHARED / "data/sharp/bsds500/train").glob("*.jpg"))[start::7][:n]
    photos = [ys._photo_u8(p) for p in files]
    rows = rows_of(photos)
    wanted = sys.argv[3].split(",") if len(sys.argv) > 3 else list(DEFAULT_ROWS)
    model = load_model()
    options = KernelOptions(method="kernel", deconvolution="network")
    min_extent = options.estimation.min_extent
    summary = []
    for name in wanted:
        crops = []
        for i, (blurry, sharp, kernel) in enumerate(rows[name]()):
            c = measure(blurry, sharp, kernel, model, options)
            crops.append(c)
            gains = "  ".join("sharp" if g is None else f"{g:+7.2f}" for g in c["gain"])
            print(f"{name:16s} {i:2d}  gain first / second {gains}  extent {c['extent'][0]:5.2f} / "
                  f"{c['extent'][1]:5.2f} px  agreement {c['agreement']:.3f}", flush=True)
        summary.append((name, crops))
    print()
    for threshold in (KERNEL_MIN_AGREEMENT, EstimationSettings().min_agreement):
        print(f"agreement >= {threshold:g} (else unchanged); mean gain dB (crops deconvolved), or sharp crops deconvolved")
        for choice, pick in CHOICES.items():
            cells = []
            for name, crops in summary:
                used, gains = 0, []
                for c in crops:
                    p = pick(c)
                    use = c["extent"][p] >= min_extent and c["agreement"] >= threshold
                    used += use
                    gains.append((c["gain"][p] or 0.0) if use else 0.0)
                cells.append(f"{name} {used}/{len(crops)}" if name == "identity"
                             else f"{name} {np.mean(gains):+.2f} ({used})")
            print(f"  {choice:8s} " + " | ".join(cells))


if __name__ == "__main__":
    main()
