"""Can a photo too small for two regions still check its kernel? (issue 29)

    python benchmarks/kernel_check_study.py 8 5                     # N photos, first photo
    python benchmarks/kernel_check_study.py 8 3 identity,shake-usrnet

A 256 px crop has no room for two squares of 8x the kernel, so `estimate_kernel` checks its
kernel by searching the same square a second time from a vertical start instead of a
horizontal one (`KernelEstimate.checked` ``"starts"``): an estimate that depends on where the
search starts is not trusted. This measures whether that agreement tells good kernels from bad:
on BSDS500 *training* photos (every 7th from the given one; never validation photos), 256 px
centre crops, sharp (``identity``) or blurred as `benchmarks/kernel_method.py` blurs them, each
kernel is scored by the TV deconvolution's gain over the blurry crop and by the Levin et al.
error ratio (squared error with the estimated kernel over that with the true one, best integer
shift). Prints one line per image, then per row the mean gain of deconvolving where the kernel
looks wider than `min_extent` and the agreement reaches each threshold (else the crop unchanged,
gain 0), with how many crops were deconvolved.
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
from lmfn_cli import yardstick as ys  # noqa: E402
from lmfn_cli.kernel_estimation import EstimationSettings, estimate_kernel  # noqa: E402
from lmfn_cli.kernel_method import KERNEL_MIN_AGREEMENT, TV_PRIOR, deblur_by_kernel  # noqa: E402

CROP = 256
DEFAULT_ROWS = ("identity", "lines-srgb-3", "lines-srgb-9", "lines-linear-15", "shake-usrnet", "shake-gyro04")
THRESHOLDS = (0.0, 0.6, KERNEL_MIN_AGREEMENT, 0.8, EstimationSettings().min_agreement)


def sharp_crops(photos: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray, None]]:
    return [(crop, crop, None) for crop in (km.centre_crop(p, CROP) for p in photos)]


def main() -> None:
    torch.set_num_threads(2)
    n, start = int(sys.argv[1]), int(sys.argv[2])
    files = sorted((km.SHARED / "data/sharp/bsds500/train").glob("*.jpg"))[start::7][:n]
    photos = [ys._photo_u8(p) for p in files]
    rows = {"identity": lambda: sharp_crops(photos), **km.study_rows(photos)}
    wanted = sys.argv[3].split(",") if len(sys.argv) > 3 else list(DEFAULT_ROWS)
    settings = EstimationSettings()
    summary = []
    for name in wanted:
        scored = []
        for i, (blurry, sharp, kernel) in enumerate(rows[name]()):
            est = estimate_kernel(blurry / 255.0, settings)
            assert est.checked == "starts", est.checked
            out = deblur_by_kernel(blurry, est.kernel, prior=TV_PRIOR, method="tv")
            e_out, e_blurry = km.aligned_sse(out, sharp), km.aligned_sse(blurry, sharp)
            if kernel is None:  # identity: the PSNR of the deconvolved crop (an unchanged one is perfect)
                gain, ratio = km.psnr_of(e_out, sharp), None
            else:
                gain = 10 * math.log10(e_blurry / e_out)
                ratio = e_out / km.aligned_sse(deblur_by_kernel(blurry, kernel, prior=TV_PRIOR, method="tv"), sharp)
            scored.append((gain, est.agreement, est.extent, ratio))
            said = "-" if ratio is None else f"{ratio:.2f}"
            print(f"{name:16s} {i}  {'PSNR' if kernel is None else 'gain'} {gain:+7.2f}  ratio {said:>6s}  "
                  f"agreement {est.agreement:.3f}  extent {est.extent:4.1f} px", flush=True)
        summary.append((name, scored))
    print()
    for name, scored in summary:
        cells = []
        for t in THRESHOLDS:
            used = [s[2] >= settings.min_extent and s[1] >= t for s in scored]
            if name == "identity":
                cells.append(f">= {t:g}: {sum(used)} deconvolved")
            else:
                gains = [s[0] if u else 0.0 for s, u in zip(scored, used)]
                cells.append(f">= {t:g}: {np.mean(gains):+.2f} dB ({sum(used)}/{len(used)})")
        print(f"{name:16s} " + "   ".join(cells))


if __name__ == "__main__":
    main()
