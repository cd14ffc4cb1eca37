"""Compare settings of the kernel estimator on training photos (issue 29).

    python benchmarks/kernel_settings_study.py 8 3 shake-usrnet,lines-srgb-9 edge_r=0 edge_r=0.2
    python benchmarks/kernel_settings_study.py 8 5 all edge_r=0 edge_r=0.2,refine_weight=1
    python benchmarks/kernel_settings_study.py 8 3 shake-usrnet,lines-srgb-9 base luma=linear latent=network

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
from lmfn_cli import kernel_estimation as ke  # noqa: E402
from lmfn_cli.kernel_estimation import EstimationSettings, _estimate_on, luminance, textured_regions  # noqa: E402
from lmfn_cli.kernel_method import TV_PRIOR, deblur_by_kernel, deconvolve_with_network, load_nonblind  # noqa: E402
from lmfn_cli.synth.color import srgb_to_linear  # noqa: E402

STUDY_KEYS = {"luma": ("srgb", "linear"), "latent": ("l0", "network")}


def parse(setting: str) -> tuple[EstimationSettings, dict[str, str]]:
    """``base`` or ``field=value,field=value`` -> (`EstimationSettings`, the study-only keys)."""
    study = {key: values[0] for key, values in STUDY_KEYS.items()}
    if setting == "base":
        return EstimationSettings(), study
    types = {f.name: type(getattr(EstimationSettings(), f.name)) for f in fields(EstimationSettings)}
    values = {}
    for pair in setting.split(","):
        name, value = pair.split("=")
        if name in STUDY_KEYS:
            if value not in STUDY_KEYS[name]:
                sys.exit(f"{name} must be one of {', '.join(STUDY_KEYS[name])}")
            study[name] = value
            continue
        kind = types[name]
        values[name] = bool(int(value)) if kind is bool else kind(float(value))
    return EstimationSettings(**values), study


def _network_latent(l0):
    """A stand-in for `ke._latent` (``l0``): the non-blind network's deconvolution, then L0-smoothed."""
    stage = load_nonblind()
    delta = torch.zeros(3, 3, dtype=torch.float64)
    delta[1, 1] = 1

    def latent(y: torch.Tensor, kernel: torch.Tensor, lam: float, beta_max: float) -> torch.Tensor:
        out = deconvolve_with_network(y.clamp(0, 1).float().numpy(), kernel.float().numpy(), stage).pixels
        return l0(torch.from_numpy(np.asarray(out, dtype=np.float64)), delta, lam, beta_max)

    return latent


def estimate(luma: np.ndarray, options: EstimationSettings, study: dict[str, str]) -> np.ndarray:
    """The kernel of the most textured square of ``luma`` ((H,W) sRGB luma in [0,1]), one region."""
    t, l, side = textured_regions(luma, options.region, 1)[0]
    square = np.ascontiguousarray(luma[t:t + side, l:l + side])
    if study["luma"] == "linear":
        square = srgb_to_linear(square.astype(np.float64))
    refine, l0 = ke._refine, ke._latent
    if study["latent"] == "network":
        def network_refine(y, kernel, s, lam):  # the coarse-to-fine search keeps the L0 latent
            ke._latent = _network_latent(l0)
            try:
                return refine(y, kernel, s, lam)
            finally:
                ke._latent = l0
        ke._refine = network_refine
    try:
        return _estimate_on(square, options, lambda: None).numpy()
    finally:
        ke._refine, ke._latent = refine, l0


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
            (options, study), began, scores = parse(setting), time.perf_counter(), []
            for blurry, sharp, kernel in pairs:
                k = estimate(luminance(blurry / 255.0), options, study)
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
