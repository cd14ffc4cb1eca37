"""Compare settings of the kernel estimator on training photos (issue 29).

    python benchmarks/kernel_settings_study.py 8 3 shake-usrnet,lines-srgb-9 edge_r=0 edge_r=0.2
    python benchmarks/kernel_settings_study.py 8 5 all edge_r=0 edge_r=0.2,refine_weight=1

On BSDS500 *training* photos (every 7th from the given one; never validation photos), 256 px
crops blurred as `benchmarks/kernel_method.py` blurs them, the kernel is estimated on the most
textured square (one region, no check: `kernel_estimation._estimate_on`) with each setting (a
comma-separated list of `EstimationSettings` fields; ``base`` = the defaults) and scored by the TV
deconvolution's gain over the blurry crop and the Levin et al. error ratio (squared error with
the estimated kernel over that with the true one, after the best integer shift). Prints each
row's mean gain, share of ratios <= 3, median ratio and seconds per estimate, then the sum of
the mean gains per setting.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import fields
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import kernel_method as km  # noqa: E402
from lmfn_cli import yardstick as ys  # noqa: E402
from lmfn_cli.kernel_estimation import EstimationSettings, _estimate_on, luminance, textured_regions  # noqa: E402
from lmfn_cli.kernel_method import TV_PRIOR, deblur_by_kernel  # noqa: E402


def parse(setting: str) -> EstimationSettings:
    """``base`` or ``field=value,field=value`` -> `EstimationSettings`."""
    if setting == "base":
        return EstimationSettings()
    types = {f.name: type(getattr(EstimationSettings(), f.name)) for f in fields(EstimationSettings)}
    values = {}
    for pair in setting.split(","):
        name, value = pair.split("=")
        kind = types[name]
        values[name] = bool(int(value)) if kind is bool else kind(float(value))
    return EstimationSettings(**values)


def main() -> None:
    torch.set_num_threads(2)
    n, start, wanted, settings = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4:]
    files = sorted((km.SHARED / "data/sharp/bsds500/train").glob("*.jpg"))[start::7][:n]
    photos = [ys._photo_u8(p) for p in files]
    rows = km.study_rows(photos)
    names = list(rows) if wanted == "all" else wanted.split(",")
    totals = {s: [0.0, 0, 0] for s in settings}
    for name in names:
        pairs = rows[name]()
        print(name, flush=True)
        for setting in settings:
            options, began, scores = parse(setting), time.perf_counter(), []
            for blurry, sharp, kernel in pairs:
                luma = luminance(blurry / 255.0)
                t, l, side = textured_regions(luma, options.region, 1)[0]
                k = _estimate_on(np.ascontiguousarray(luma[t:t + side, l:l + side]), options, lambda: None).numpy()
                e_blurry = km.aligned_sse(blurry, sharp)
                e_true = km.aligned_sse(deblur_by_kernel(blurry, kernel, prior=TV_PRIOR, method="tv"), sharp)
                e = km.aligned_sse(deblur_by_kernel(blurry, k, prior=TV_PRIOR, method="tv"), sharp)
                scores.append((10 * math.log10(e_blurry / e), e / e_true))
            a, seconds = np.array(scores), (time.perf_counter() - began) / len(pairs)
            totals[setting][0] += a[:, 0].mean()
            totals[setting][1] += int((a[:, 1] <= 3).sum())
            totals[setting][2] += len(a)
            print(f"   {setting:32s} gain {a[:, 0].mean():+.2f}  ratio<=3 {np.mean(a[:, 1] <= 3) * 100:3.0f}%  "
                  f"median {np.median(a[:, 1]):.2f}  {seconds:.1f}s", flush=True)
    for setting, (gain, ok, count) in totals.items():
        print(f"TOTAL {setting:32s} sum gain {gain:+.2f}  ratio<=3 {ok}/{count}")


if __name__ == "__main__":
    main()
