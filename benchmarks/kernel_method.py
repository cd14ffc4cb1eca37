"""Deblurring by an estimated blur kernel (issue 29): error ratio, gains over the blurry input, time.

    python benchmarks/kernel_method.py                       # every row, all 32 validation photos
    python benchmarks/kernel_method.py --photos 8 --lengths 9 15 --no-shake --time-only
    python benchmarks/kernel_method.py --gopro 4       # real blur of an unseen scene, every 4th pair
    python benchmarks/kernel_method.py --gopro-train 12 --region 384   # real blur of a training scene
    python benchmarks/kernel_method.py --sharp 5       # what each method does with 20 sharp training photos
    python benchmarks/kernel_method.py --deconvolution network tv   # both, on the same estimates
    python benchmarks/kernel_method.py --nonblind-weights lmfn-nonblind-v1 run/ema.safetensors  # two stages

Rows (the validation photos' 256 px centre crops, as `benchmarks/validation.py` makes them):
``lines-srgb-L`` and ``lines-linear-L`` (the yardstick's own pairs, `yardstick.make_pair`), and
uniform camera shake: ``shake-usrnet`` (USRNet's motion kernels 8-11, photo i gets kernel
8 + i % 4) and ``shake-gyro04`` (the held-out gyro recording gyro_04 rendered as a kernel at a
focal length of 0.7-2x the crop), both convolved in linear light, noise sigma 1/255. None of
these kernels is used in training. Methods:

- blurry: the input;
- blind: the network (``--weights``, default: the shipped default weights);
- kernel: ``lmfn deblur --method kernel`` (estimation, its sharp-photo fallback, deconvolution);
- true kernel: deconvolution by the true kernel (what a perfect estimate would give).

Each deconvolution (``--deconvolution network tv wiener``; network: the Wiener filter and the
non-blind network, `kernel_method.deconvolve_with_network`) gets its own rows, scored on the same
estimates.

PSNR on 8-bit RGB after aligning each result to the sharp crop by the best integer shift
within +-3 px (a kernel is known only up to a shift; the Köhler protocol does the same), 16 px
left out at each border. Error ratio (Levin et al. 2009): the squared error of deconvolving by
the estimated kernel over that by the true one, both aligned; <= 3 counts as a success.
Time: the whole ``--method kernel`` path on one 1-megapixel photo (1000x1000).

Prints a markdown table; nothing here is tuned by it (the estimator's settings are Pan et al.'s, its
refinement weight was chosen on training photos by `benchmarks/kernel_refine_study.py`).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lmfn_cli import load_model  # noqa: E402
from lmfn_cli import validation as val  # noqa: E402
from lmfn_cli import yardstick as ys  # noqa: E402
from lmfn_cli.inference import restore  # noqa: E402
from lmfn_cli.kernel_estimation import EstimationSettings, estimate_kernel  # noqa: E402
from lmfn_cli.kernel_method import DECONVOLUTIONS, KernelOptions, deblur_by_kernel, decide, restore_with_method  # noqa: E402

SHARED = ROOT.parent / "shared"
BORDER = 16
SHIFT = 3
PSNR_CAP = 100.0  # identity: an unchanged image scores this


def aligned_sse(out: np.ndarray, sharp: np.ndarray, shift: int = SHIFT) -> float:
    """Smallest sum of squared errors (8-bit levels / 255) over integer shifts within +-shift."""
    a, b = out.astype(np.float64) / 255, sharp.astype(np.float64) / 255
    h, w = b.shape[:2]
    inner = b[BORDER:h - BORDER, BORDER:w - BORDER]
    best = math.inf
    for dy in range(-shift, shift + 1):
        for dx in range(-shift, shift + 1):
            cand = a[BORDER + dy:h - BORDER + dy, BORDER + dx:w - BORDER + dx]
            best = min(best, float(((cand - inner) ** 2).sum()))
    return best


def psnr_of(sse: float, sharp: np.ndarray) -> float:
    n = (sharp.shape[0] - 2 * BORDER) * (sharp.shape[1] - 2 * BORDER) * sharp.shape[2]
    return 10 * math.log10(n / max(sse, 1e-12))


def to_u8(x: np.ndarray) -> np.ndarray:
    return np.rint(np.clip(x, 0, 1) * 255).astype(np.uint8)


def centre_crop(photo: np.ndarray, crop: int) -> np.ndarray:
    """The ``crop`` x ``crop`` square at the middle of ``photo`` (H,W,...), as the rows' sharp targets."""
    cy, cx = (photo.shape[0] - crop) // 2, (photo.shape[1] - crop) // 2
    return photo[cy:cy + crop, cx:cx + crop]


def shake_pairs(photos: list[np.ndarray], which: str, crop: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(blurry u8, sharp u8, true kernel) for the uniform-shake rows, seeded per photo."""
    from lmfn_cli.synth.motion import gyro_kernel
    from lmfn_cli.synth.pairs import KernelBank

    bank = KernelBank.from_dir(SHARED / "data" / "kernels").split("val")
    out = []
    for i, photo in enumerate(photos):
        rng = np.random.default_rng([29, i, 0 if which == "usrnet" else 1])
        if which == "usrnet":
            kernel = np.asarray(bank.usrnet[i % len(bank.usrnet)], dtype=np.float64)
        else:
            kernel = np.asarray(gyro_kernel(bank.gyro[0], rng, focal_px=float(rng.uniform(0.7, 2.0)) * crop, size=31),
                                dtype=np.float64)
        kernel /= kernel.sum()
        try:
            blurry = ys.blur_crop(photo, crop, kernel, "linear")
        except Exception:  # a photo without the kernel's margin around its crop
            continue
        sharp = centre_crop(photo, crop)
        blurry = blurry + rng.normal(0, 1 / 255, blurry.shape)
        out.append((to_u8(blurry), sharp, kernel))
    return out


def lines_pairs(photos: list[np.ndarray], mode: str, length: float) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    ps = ys.yardstick_sets(lengths=(length,))[f"lines-{mode}-{length:g}"]
    out = []
    for i, photo in enumerate(photos):
        blurry, sharp, info = ys.make_pair(photo, i, ps)
        kernel = ys.line_kernel(length, info["angle"], samples_per_px=ps.samples_per_px)
        out.append((blurry, sharp, kernel))
    return out


def study_rows(photos: list[np.ndarray]) -> dict:
    """The rows the estimator studies score settings on: name -> a function making its
    (blurry, sharp, kernel) pairs from ``photos`` (256 px crops, as the table's rows)."""
    return {"lines-srgb-3": lambda: lines_pairs(photos, "srgb", 3.0),
            "lines-srgb-9": lambda: lines_pairs(photos, "srgb", 9.0),
            "lines-linear-9": lambda: lines_pairs(photos, "linear", 9.0),
            "lines-linear-15": lambda: lines_pairs(photos, "linear", 15.0),
            "shake-usrnet": lambda: shake_pairs(photos, "usrnet", 256),
            "shake-gyro04": lambda: shake_pairs(photos, "gyro", 256)}


def label(options: KernelOptions) -> str:
    """The deconvolution's name in the table: ``tv``, ``wiener``, ``network`` (the default
    weights) or ``network (NAME)`` (other non-blind weights)."""
    if options.deconvolution != "network" or options.nonblind == KernelOptions().nonblind:
        return options.deconvolution
    return f"network ({Path(options.nonblind).stem})"


def deconvolve_by(blurry: np.ndarray, kernel: np.ndarray, model, options: KernelOptions) -> np.ndarray:
    """``blurry`` deconvolved by ``kernel`` the way ``options.deconvolution`` does it."""
    if options.deconvolution == "network":
        return restore_with_method(model, blurry, replace(options, kernel=kernel)).restored.pixels
    return deblur_by_kernel(blurry, kernel, prior=options.prior, method=options.deconvolution)


def run_row(name: str, pairs, model, variants: list[KernelOptions], *, identity: bool = False) -> list[dict]:
    """Score one row for each deconvolution in ``variants`` (same estimation settings); the
    kernel is estimated once per image and every method decides on it."""
    shift = 0 if identity else SHIFT
    keys = ("blurry", "blind", "estimate", "kernel", "auto", "true kernel")
    sums = [{k: [] for k in keys} for _ in variants]
    ratios = [[] for _ in variants]
    used, unchanged, seconds = {"kernel": 0, "auto": 0}, {"kernel": 0, "auto": 0}, [0.0] * len(variants)
    for blurry, sharp, kernel in pairs:
        def score(out: np.ndarray) -> float:
            return min(PSNR_CAP, psnr_of(aligned_sse(out, sharp, shift), sharp))

        blurry_score = score(blurry)
        blind = restore(model, blurry).pixels
        blind_score = score(blind)
        start = time.perf_counter()
        est = estimate_kernel(blurry.astype(np.float64) / 255, variants[0].estimation)
        estimation_s = time.perf_counter() - start
        choices = {method: decide(est, method, variants[0].fallback)[0] for method in ("kernel", "auto")}
        for method, choice in choices.items():
            used[method] += choice == "kernel"
            unchanged[method] += choice == "input"
        for v, options in enumerate(variants):
            start = time.perf_counter()
            by_est = deconvolve_by(blurry, est.kernel, model, options)
            seconds[v] += estimation_s + time.perf_counter() - start
            row = sums[v]
            row["blurry"].append(blurry_score)
            row["blind"].append(blind_score)
            # the estimate wherever the photo does not look sharp, checked or not: the estimator's own quality
            row["estimate"].append(score(blurry if est.extent < est.min_extent else by_est))
            for method, choice in choices.items():
                row[method].append(score({"kernel": by_est, "blind": blind, "input": blurry}[choice]))
            if kernel is None:  # real blur: no true kernel
                continue
            true_out = deconvolve_by(blurry, kernel, model, options)
            row["true kernel"].append(score(true_out))
            if not identity:
                ratios[v].append(aligned_sse(by_est, sharp, shift) / max(aligned_sse(true_out, sharp, shift), 1e-12))
    rows = []
    for v, options in enumerate(variants):
        rows.append({"name": name, "images": len(pairs), "deconvolution": label(options),
                     **{k: float(np.mean(x)) if x else float("nan") for k, x in sums[v].items()},
                     "used": used, "unchanged": unchanged, "ratios": ratios[v], "seconds": seconds[v] / max(1, len(pairs))})
        print(f"{name} ({label(options)}): {len(pairs)} images, estimation + deconvolution "
              f"{rows[-1]['seconds']:.1f} s each", file=sys.stderr, flush=True)
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| row | deconvolution | images | blurry | blind | estimate unless sharp | --method kernel | --method auto | true kernel | kernel used by kernel / auto | left unchanged by kernel / auto | "
             "error ratio <= 3 | median ratio |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        b = r["blurry"]
        ratios = np.array(r["ratios"])
        share = f"{(ratios <= 3).mean() * 100:.0f}%" if len(ratios) else "-"
        median = f"{np.median(ratios):.2f}" if len(ratios) else "-"
        cells = [f"{r[m]:.2f} ({r[m] - b:+.2f})" if r["name"] != "identity" else f"{r[m]:.2f}"
                 for m in ("blind", "estimate", "kernel", "auto", "true kernel")]
        lines.append(f"| {r['name']} | {r['deconvolution']} | {r['images']} | {b:.2f} | {' | '.join(cells)} | "
                     f"{r['used']['kernel']} / {r['used']['auto']} | {r['unchanged']['kernel']} / {r['unchanged']['auto']} | {share} | {median} |")
    return "\n".join(lines)


def time_megapixel(model, options: KernelOptions, photo: np.ndarray) -> tuple[float, str]:
    from PIL import Image

    big = np.asarray(Image.fromarray(photo).resize((1000, 1000), Image.Resampling.BICUBIC))
    kernel = ys.line_kernel(15, 30.0)
    blurry = to_u8(ys.blur_crop(np.pad(big, ((12, 12), (12, 12), (0, 0)), mode="reflect"), 1000, kernel, "srgb"))
    start = time.perf_counter()
    done = restore_with_method(model, blurry, options)
    return time.perf_counter() - start, done.why


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", default=None, help="blind network's weights (default: the shipped default)")
    ap.add_argument("--photos", type=int, default=len(val.PHOTOS), help="use the first N validation photos")
    ap.add_argument("--lengths", type=float, nargs="*", default=list(ys.LENGTHS))
    ap.add_argument("--no-shake", action="store_true", help="leave out the USRNet and gyro_04 rows")
    ap.add_argument("--time-only", action="store_true", help="only time the method on a 1-megapixel photo")
    ap.add_argument("--sharp", type=int, default=0, metavar="N",
                    help="only the sharp-photo check: what each method does with every N-th sharp Urban100 training photo")
    ap.add_argument("--gopro", type=int, default=0, metavar="N",
                    help="only the gopro-unseen row: every N-th of its 83 real pairs, whole 1280x720 frames")
    ap.add_argument("--gopro-train", type=int, default=0, metavar="N",
                    help="only a gopro-train row, to choose settings on real blur: N pairs made from the training "
                         "scene's 240 fps frames (shared/data/frames/GOPR0477_11_00, 7-13 frames averaged in "
                         "linear light, the middle one sharp; seed 29), whole 1280x720 frames")
    ap.add_argument("--region", type=int, default=None, help="side of the estimation squares (default: EstimationSettings')")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--photo-set", choices=["val", "train"], default="val",
                    help="val: the validation photos (the table); train: BSDS500 training photos (to choose settings on)")
    ap.add_argument("--deconvolution", choices=list(DECONVOLUTIONS), nargs="+", default=None,
                    help="one or more (each gets its rows, on the same estimates); default: KernelOptions'")
    ap.add_argument("--nonblind-weights", nargs="+", default=None,
                    help="--deconvolution network's weights, one or more (each gets its rows, on the same estimates; "
                         "default: KernelOptions')")
    ap.add_argument("--prior", type=float, default=None, help="default: KernelOptions'")
    ap.add_argument("--min-extent", type=float, default=None, help="default: EstimationSettings'")
    ap.add_argument("--kernel-size", type=int, default=None, help="the estimation window (default: EstimationSettings')")
    ap.add_argument("--first-kernel", action="store_true",
                    help="use the first search's kernel, not the more compact of the check's two (prefer_compact off)")
    ap.add_argument("--fallback", choices=["input", "blind"], default=None,
                    help="what --method kernel|auto return where they use no kernel (default: KernelOptions')")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if not (SHARED / "data" / "eval-sharp").is_dir():
        sys.exit(f"{SHARED}/data/eval-sharp not found")
    model = load_model(args.weights) if args.weights else load_model()
    base = KernelOptions(method="kernel")
    estimation = EstimationSettings(**({"min_extent": args.min_extent} if args.min_extent is not None else {}),
                                    **({"kernel_size": args.kernel_size} if args.kernel_size is not None else {}),
                                    **({"region": args.region} if args.region is not None else {}),
                                    **({"prefer_compact": False} if args.first_kernel else {}))
    variants = [KernelOptions(method="kernel", estimation=estimation, deconvolution=d, prior=args.prior or base.prior,
                              nonblind=w, fallback=args.fallback or base.fallback)
                for d in (args.deconvolution or [base.deconvolution])
                for w in (args.nonblind_weights or [base.nonblind] if d == "network" else [base.nonblind])]
    options = variants[0]
    print(f"settings: deconvolution {', '.join(label(v) for v in variants)}, prior {options.prior:g} (tv, wiener), "
          f"non-blind weights {', '.join(args.nonblind_weights or [base.nonblind])} (network), "
          f"min extent {estimation.min_extent:g} px, kernel size {estimation.kernel_size}, "
          f"region {estimation.region}, {'compact' if estimation.prefer_compact else 'first'} kernel of two, "
          f"fallback {options.fallback}, photos: {args.photo_set}")
    if args.photo_set == "val":
        photos = [ys._photo_u8(SHARED / "data" / "eval-sharp" / p) for p in val.PHOTOS[:args.photos]]
    else:
        files = sorted((SHARED / "data" / "sharp" / "bsds500" / "train").glob("*.jpg"))[::7][:args.photos]
        photos = [ys._photo_u8(p) for p in files]
    for v in variants:
        seconds, why = time_megapixel(model, v, photos[0])
        print(f"--method kernel --deconvolution {label(v)} on a 1000x1000 photo (15 px line blur): "
              f"{seconds:.1f} s ({why}), {torch.get_num_threads()} threads")
    if args.time_only:
        return
    if args.sharp:
        from collections import Counter

        files = sorted((SHARED / "data" / "sharp" / "urban100").glob("*"))[::args.sharp][:20]
        seen: Counter = Counter()
        for path in files:
            est = estimate_kernel(ys._photo_u8(path) / 255.0, options.estimation)
            kernel, auto = decide(est, "kernel", options.fallback)[0], decide(est, "auto", options.fallback)[0]
            seen[f"kernel: {kernel}"] += 1
            seen[f"auto: {auto}"] += 1
            print(f"{path.name}: extent {est.extent:.2f} px, agreement {est.agreement}; kernel -> {kernel}, auto -> {auto}")
        print(f"{len(files)} sharp photos (kernel = deconvolved, input = left unchanged, blind = the network): "
              + ", ".join(f"{k} {v}" for k, v in sorted(seen.items())))
        return
    if args.gopro_train:
        from lmfn_cli.synth.frames import frame_sequence_pairs

        made = frame_sequence_pairs(SHARED / "data" / "frames" / "GOPR0477_11_00", rng=np.random.default_rng(29),
                                    count=args.gopro_train, linear=True)
        pairs = [(to_u8(blurry), to_u8(sharp), None) for blurry, sharp, _ in made]
        print(table(run_row("gopro-train", pairs, model, variants)))
        return
    if args.gopro:
        from lmfn_cli.images import read_image

        root = SHARED / "data" / "pairs" / ys.GOPRO_UNSEEN
        names = sorted(p.name for p in (root / "blur").iterdir())[::args.gopro]
        pairs = [(read_image(root / "blur" / n), read_image(root / "sharp" / n), None) for n in names]
        print(table(run_row("gopro-unseen", pairs, model, variants)))
        return
    crop = val.CROP
    identity = [(sharp, sharp, np.ones((1, 1))) for sharp in (centre_crop(photo, crop) for photo in photos)]
    rows = run_row("identity", identity, model, variants, identity=True)
    for mode in ys.MODES:
        for length in args.lengths:
            rows += run_row(f"lines-{mode}-{length:g}", lines_pairs(photos, mode, length), model, variants)
    if not args.no_shake:
        rows += run_row("shake-usrnet", shake_pairs(photos, "usrnet", val.CROP), model, variants)
        rows += run_row("shake-gyro04", shake_pairs(photos, "gyro", val.CROP), model, variants)
    print(table(rows))
    print("\nPSNR dB (gain over blurry), 8-bit RGB, best integer shift within +-3 px (identity: none, capped at "
          "100 dB), 16 px borders left out. estimate unless sharp: deconvolved by the estimated kernel, checked on two "
          "regions or not, unless it looked sharp. kernel used: images where each method deconvolved by the estimated kernel; "
          "left unchanged: images each method returned as they were (they looked sharp, kernel extent < 2.5 px, or fell back to the input); "
          "the others got the fallback (input: unchanged; blind: the network). Error ratio: deconvolution by the estimated over the true kernel, "
          "every image.")


if __name__ == "__main__":
    main()
