"""Validation table: blurry input, tuned unsharp mask, the shipped weights and candidates.

    python benchmarks/validation.py                                    # shipped weights only
    python benchmarks/validation.py --weights scratch/runs/x/best.safetensors [--weights ...]
    python benchmarks/validation.py --build-only [--sets motion-clean]  # just write the sets
    python benchmarks/validation.py --sets identity lines-srgb lines-linear  # some rows only
    python benchmarks/validation.py --tune-usm                         # re-tune the USM baseline

The synthesizer's sets (motion-clean, motion-noisy, spatially-varying, gopro-style) are defined
and built by ``lmfn_cli.validation``, the yardstick it did not make (identity, lines-srgb and
lines-linear at 3/5/9/15/21 px, gopro-unseen) by ``lmfn_cli.yardstick`` (read their docstrings):
once, cached under ``--cache``, never rewritten; gopro-unseen is read in place from ``--shared``.
The Markdown tables go to stdout, then the ship rule for each ``--weights`` candidate against
the shipped weights (PASS, or the failed conditions), timings to stderr; ``--json FILE`` also
writes every figure (per-image PSNRs included; infinities as "inf"). ``--build-only`` prints
each set's folder and the ``--val`` options that give them to ``lmfn train``. ``--tune-usm``
tunes the unsharp mask on *training* photos and prints the constants to paste into
lmfn_cli/validation.py; it never looks at the validation sets.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import torch

from lmfn_cli import load_model
from lmfn_cli import validation as val
from lmfn_cli import yardstick as ys

ROOT = Path(__file__).resolve().parents[1]


def tune(args: argparse.Namespace) -> int:
    t = time.monotonic()
    # "motion-clean": the motion-clean recipe (blur sources, read noise only) on the training photos
    # and training kernels: a diagnostic of what a sharpener could do on clean blur, still no peeking
    cfg = val.SETS["motion-clean"].synth if args.tune_recipe == "motion-clean" else None
    res = val.tune_usm_on_training_data(args.shared, limit=args.tune_limit, cfg=cfg)
    sigmas = sorted({float(k.split(",")[0]) for k in res["grid"]})
    amounts = sorted({float(k.split(",")[1]) for k in res["grid"]})
    print(f"USM grid, mean PSNR dB over {res['images']} training pairs (blurry input: {res['blurry_psnr']:.3f} dB)\n")
    print("| sigma \\ amount | " + " | ".join(f"{a:g}" for a in amounts) + " |")
    print("|---|" + "---|" * len(amounts))
    for s in sigmas:
        print(f"| {s:g} | " + " | ".join(f"{res['grid'][f'{s:g},{a:g}']:.3f}" for a in amounts) + " |")
    cmd = "python benchmarks/validation.py --tune-usm" + (f" --tune-limit {args.tune_limit}" if args.tune_limit else "")
    cmd += f" --tune-recipe {args.tune_recipe}" if args.tune_recipe != "training" else ""
    recipe = "SynthConfig() defaults" if cfg is None else "the motion-clean recipe"
    print(f"\n# Tuned by `{cmd}` (tune_usm_on_training_data: {res['images']} BSDS500 train photos,")
    print(f"# {val.CROP}x{val.CROP} centre crops, {recipe}, kernels split 'train', seed TUNE_SEED).")
    print(f"USM_SIGMA = {res['sigma']:g}")
    print(f"USM_AMOUNT = {res['amount']:g}")
    print(f'USM_TUNING = "{res["psnr"]:.3f} dB mean PSNR on {res["images"]} training pairs against '
          f'{res["blurry_psnr"]:.3f} dB blurry ({res["psnr"] - res["blurry_psnr"]:+.3f} dB)"')
    print(f"tuning: {time.monotonic() - t:.0f} s", file=sys.stderr)
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", type=Path, action="append", default=[], help="candidate weights (repeatable)")
    ap.add_argument("--baseline-weights", type=Path, default=ROOT / "weights" / "lmfn-synthblur-v2.safetensors",
                    help="the shipped weights, a baseline for the candidates ('none' to leave out)")
    choices = (*val.SET_NAMES, *ys.GROUP_NAMES)
    ap.add_argument("--sets", nargs="+", choices=choices, default=list(choices),
                    help="rows to build and score (default: all; lines-srgb / lines-linear are a row per length)")
    ap.add_argument("--build-only", action="store_true", help="write the sets and stop")
    ap.add_argument("--tune-usm", action="store_true", help="tune the USM baseline on training data and print it")
    ap.add_argument("--tune-limit", type=int, default=0, help="tune on the first N training photos only")
    ap.add_argument("--tune-recipe", choices=("training", "motion-clean"), default="training",
                    help="blur the tuning photos with the training mixture (the constants) or, as a "
                         "diagnostic, with the motion-clean recipe")
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    ap.add_argument("--cache", type=Path, default=ROOT / "scratch" / "val")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--limit", type=int, default=0, help="first N pairs of each set (0: all)")
    ap.add_argument("--json", type=Path, help="also write all figures to this JSON file")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    if args.tune_usm:
        return tune(args)

    t = time.monotonic()
    built_sets = val.build_sets(args.shared, args.cache, [n for n in args.sets if n in val.SETS])
    built_sets.update(ys.build_yardstick(args.shared, args.cache, [n for n in args.sets if n in ys.GROUPS]))
    sets = {n: built_sets[n] for n in ys.expand(args.sets)}  # in the order asked for
    print(f"sets ready in {time.monotonic() - t:.0f} s", file=sys.stderr)
    if args.build_only:
        for name, folder in sets.items():
            d = ys.DEFINITIONS[name]
            meta = folder / "set.json"
            has_sources = isinstance(d, val.ValSet) and meta.is_file()
            sources = f", {json.loads(meta.read_text())['sources']}" if has_sources else ""
            print(f"{name}\t{folder}\t{d.size} pairs{sources}: {d.description}")
        for name in sets:
            if ys.DEFINITIONS[name].caveat:
                print(f"\n{name}: {ys.DEFINITIONS[name].caveat}.")
        print("\nlmfn train " + " ".join(f"--val {f}" for f in sets.values()))
        return 0

    paths: dict[str, Path] = {}
    baselines = []
    if str(args.baseline_weights).lower() != "none":
        name = f"{args.baseline_weights.stem} (shipped)"
        paths[name] = args.baseline_weights
        baselines.append(name)
    for w in args.weights:
        paths[w.stem if w.stem not in paths else str(w)] = w
    models = {name: load_model(path) for name, path in paths.items()}

    def timing(row: val.Row) -> None:
        spent = ", ".join(f"{k} {s.seconds:.1f} s" for k, s in row.scores.items() if k != "blurry")
        print(f"{row.set}: {row.images} images; {spent}", file=sys.stderr, flush=True)

    t = time.monotonic()
    rows = val.validation_table(models, sets, baseline_models=baselines, limit=args.limit, on_row=timing)
    print(f"table: {time.monotonic() - t:.0f} s", file=sys.stderr)
    print("weights: " + ", ".join(f"{k} = {v}" for k, v in paths.items()) + "\n")
    print(ys.format_yardstick(rows), end="")
    for name in sets:
        if ys.DEFINITIONS[name].caveat:
            print(f"\n{name}: {ys.DEFINITIONS[name].caveat}.")
    ship: dict[str, list[str]] = {}
    note = f"; on the first {args.limit} pairs of each set only: not a ship decision" if args.limit else ""
    for cand in (n for n in models if n not in baselines):
        if not baselines:
            print(f"\nship rule: not checked for {cand} (no shipped weights: --baseline-weights none)")
            continue
        ship[cand] = ys.ship_rule(rows, cand, baselines[0])
        if ship[cand]:
            print(f"\nship rule: FAIL ({cand} against {baselines[0]}{note})")
            print("\n".join(f"- {f}" for f in ship[cand]))
        else:
            print(f"\nship rule: PASS ({cand} against {baselines[0]}: beats it on all {len(rows)} rows, identity "
                  f">= {ys.SHIP_IDENTITY_PSNR:g} dB with |shift| <= {ys.SHIP_IDENTITY_SHIFT:g} levels{note})")
    if args.json:
        args.json.write_text(json.dumps(ys.jsonable({"weights": {k: str(v) for k, v in paths.items()},
            "sets": {n: {"folder": str(f), **ys.DEFINITIONS[n].to_dict()} for n, f in sets.items()},
            "rows": [r.to_dict() for r in rows], "limit": args.limit,
            "ship_rule": {c: {"pass": not f, "failures": f} for c, f in ship.items()}}),
            indent=1, allow_nan=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
