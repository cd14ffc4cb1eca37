"""The kernel method's identity row with its mean level shift (the ship rule: >= 45 dB, within +-0.3 levels).

    python benchmarks/kernel_identity_shift.py

The first 16 validation photos' sharp 256 px centre crops (as `benchmarks/kernel_method.py` makes them),
each estimated once; where ``--method kernel`` would deconvolve, both non-blind stages deconvolve by the
same estimate. Prints PSNR against the crop (capped at 100 dB) and the mean of output minus input in
8-bit levels, per stage.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]

import numpy as np  # noqa: E402
import torch  # noqa: E402

import kernel_method as km  # noqa: E402
from lmfn_cli import validation as val, yardstick as ys  # noqa: E402
from lmfn_cli.kernel_estimation import EstimationSettings, estimate_kernel  # noqa: E402
from lmfn_cli.kernel_method import decide, deconvolve_with_network, load_nonblind  # noqa: E402

STAGES = ("lmfn-nonblind-v1", "lmfn-nonblind-v2")


def main() -> None:
    torch.set_num_threads(2)
    photos = [ys._photo_u8(km.SHARED / "data" / "eval-sharp" / p) for p in val.PHOTOS[:16]]
    stages = {n: load_nonblind(n) for n in STAGES}
    shift = {n: [] for n in stages}
    psnrs = {n: [] for n in stages}
    used = 0
    for photo in photos:
        sharp = km.centre_crop(photo, val.CROP)
        est = estimate_kernel(sharp.astype(np.float32) / 255, EstimationSettings())
        deconvolve = decide(est, "kernel", "input")[0] == "kernel"
        used += deconvolve
        for name, stage in stages.items():
            out = deconvolve_with_network(sharp, est.kernel, stage).pixels if deconvolve else sharp
            shift[name].append(float(out.astype(np.float64).mean() - sharp.astype(np.float64).mean()))
            psnrs[name].append(min(km.PSNR_CAP, km.psnr_of(km.aligned_sse(out, sharp, 0), sharp)))
    print(f"{used} of {len(photos)} sharp crops deconvolved by --method kernel")
    for name in stages:
        print(f"{name}: identity {np.mean(psnrs[name]):.2f} dB, mean level shift {np.mean(shift[name]):+.3f} "
              f"(per crop {min(shift[name]):+.3f} to {max(shift[name]):+.3f})")


if __name__ == "__main__":
    main()
