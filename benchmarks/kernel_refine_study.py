"""Does refining the estimated kernel by iterative support detection help? (issue 29)

    python benchmarks/kernel_refine_study.py 8 3 0,1,10,100     # N photos, first photo, weights
    python benchmarks/kernel_refine_study.py 8 5 0,10 lines-linear-15,shake-usrnet

On BSDS500 *training* photos (every 7th from the given one; never validation photos), 256 px
crops blurred as `benchmarks/kernel_method.py` blurs them, the kernel is estimated on the most
textured square (one region, no check) by the coarse-to-fine search, then refined by
`kernel_estimation._refine` with each L1 weight (0: not refined; the same search underneath, so
the comparison is paired). Each kernel is scored by the TV deconvolution's gain over the blurry
crop and by the Levin et al. error ratio (squared error with the estimated kernel over that with
the true one, after the best integer shift). Prints one block per row and the sum of the mean
gains per weight.
"""

from __future__ import annotations

import math
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
from lmfn_cli.kernel_estimation import EstimationSettings, _estimate_on, _refine, _scales, luminance, textured_regions  # noqa: E402
from lmfn_cli.kernel_method import TV_PRIOR, deblur_by_kernel  # noqa: E402


def main() -> None:
    torch.set_num_threads(2)
    n, start = int(sys.argv[1]), int(sys.argv[2])
    weights = [float(w) for w in sys.argv[3].split(",")]
    wanted = sys.argv[4].split(",") if len(sys.argv) > 4 else None
    files = sorted((km.SHARED / "data/sharp/bsds500/train").glob("*.jpg"))[start::7][:n]
    photos = [ys._photo_u8(p) for p in files]
    rows = km.study_rows(photos)
    base = EstimationSettings(refine_weight=0.0)
    lam = max(base.lam / 1.1 ** len(_scales(base.kernel_size)), 1e-4)  # where the search ends
    sums = dict.fromkeys(weights, 0.0)
    for name, make in rows.items():
        if wanted and name not in wanted:
            continue
        scores: dict[float, list[tuple[float, float]]] = {w: [] for w in weights}
        began = time.perf_counter()
        for blurry, sharp, kernel in make():
            luma = luminance(blurry / 255.0)
            t, l, side = textured_regions(luma, base.region, 1)[0]
            square = np.ascontiguousarray(luma[t:t + side, l:l + side])
            searched = _estimate_on(square, base, lambda: None)
            e_blurry = km.aligned_sse(blurry, sharp)
            e_true = km.aligned_sse(deblur_by_kernel(blurry, kernel, prior=TV_PRIOR, method="tv"), sharp)
            for w in weights:
                k = searched if w == 0 else _refine(torch.from_numpy(square).double(), searched,
                                                     replace(base, refine_weight=w), lam)
                e = km.aligned_sse(deblur_by_kernel(blurry, k.numpy(), prior=TV_PRIOR, method="tv"), sharp)
                scores[w].append((10 * math.log10(e_blurry / e), e / e_true))
        print(f"{name} ({time.perf_counter() - began:.0f} s)")
        for w, v in scores.items():
            a = np.array(v)
            sums[w] += a[:, 0].mean()
            print(f"   weight {w:<6g} gain {a[:, 0].mean():+.2f} dB  ratio <= 3 {np.mean(a[:, 1] <= 3) * 100:3.0f}%  "
                  f"median ratio {np.median(a[:, 1]):.2f}", flush=True)
    for w, total in sums.items():
        print(f"sum of mean gains, weight {w:g}: {total:+.2f} dB")


if __name__ == "__main__":
    main()
