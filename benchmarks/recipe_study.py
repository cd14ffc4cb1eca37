"""A recipe study: short training runs, one factor at a time from a base recipe, same budget.

    python benchmarks/recipe_study.py --base recipes/study-base.toml --steps 400 \\
        --val scratch/val/motion-clean --val scratch/val/gopro-style [--arms base,lr-2e-3] [--seeds 0,1]

Every arm is the base recipe with the overrides in ``ARMS`` (a full schedule of ``--steps``
steps, warm-up and cosine included, so every arm gets the same budget), trained with
``lmfn_cli.train.train`` into ``--out/ARM-sSEED``; a finished arm is not run again and an
interrupted one resumes, so the study can be stopped and restarted. It is scored on the
validation folders given (the training-time ``--val`` rows: ``motion-clean`` and ``gopro-style``
from ``benchmarks/validation.py --build-only``), and prints one Markdown row per arm: the PSNR gain
over the blurry input on each set at the end, and the change against ``base`` with the same seed.

Validation photos are never trained on; the study picks a recipe by them, so the final weights
must be judged on the full table (``benchmarks/validation.py``), not on these rows alone.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import torch

from lmfn_cli.recipes import read_recipe, resolve_init
from lmfn_cli.train import TrainConfig, load_checkpoint, read_log, train

ARMS: dict[str, dict] = {
    "base": {},
    "lr-2e-4": {"lr": 2e-4},
    "lr-1.5e-3": {"lr": 1.5e-3},
    "beta2-0.99": {"betas": (0.9, 0.99)},
    "no-weight-decay": {"weight_decay": 0.0},
    "charbonnier+fft": {"loss": "charbonnier", "fft_weight": 0.05},
    "l1+fft": {"fft_weight": 0.05},
    "psnr-loss": {"loss": "psnr"},
    "mse": {"loss": "mse"},
    "patch-192x4": {"patch": 192, "batch": 4},
    "patch-64x32": {"patch": 64, "batch": 32},
    "clean-synth": {"noise_prob": 0.3, "jpeg_prob": 0.1},
    "no-gopro-pairs": {"paired": ()},
}
"""Arm name -> TrainConfig overrides of the base recipe (one factor each)."""


def run_arm(base: TrainConfig, name: str, seed: int, steps: int, val: tuple[str, ...], out: Path,
            init: str | None, precision: str) -> dict:
    """Train one arm (or resume it) and return its last validation entry."""
    cfg = dataclasses.replace(base, **ARMS[name], seed=seed, steps=steps, val=val,
                              val_every=max(1, steps // 2), ckpt_minutes=3.0)
    run = out / f"{name}-s{seed}"
    done = (run / "checkpoint.pt").exists() and load_checkpoint(run / "checkpoint.pt")["step"] >= steps
    if not done:
        resume = (run / "checkpoint.pt").exists()
        t = time.time()
        train(None if resume else cfg, run, resume=resume, init_weights=None if resume else init,
              precision=precision)
        print(f"{name} seed {seed}: {time.time() - t:.0f} s", file=sys.stderr, flush=True)
    vals = [e for e in read_log(run / "log.jsonl") if "val_psnr" in e]
    return {"first": vals[0], "last": vals[-1]}


def gains(entry: dict) -> dict[str, float]:
    """Per-set PSNR gain over the blurry input from a log entry (one set: key ``all``)."""
    sets = sorted({k[4:-5] for k in entry if k.startswith("val_") and k.endswith("/psnr")})
    if not sets:
        return {"all": entry["val_psnr"] - entry["val_input_psnr"]}
    return {s: entry[f"val_{s}/psnr"] - entry[f"val_{s}/input_psnr"] for s in sets}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", type=Path, required=True, help="Base recipe (TOML).")
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--val", action="append", required=True, help="Validation folder (repeatable).")
    ap.add_argument("--arms", default=",".join(ARMS), help="Comma-separated arm names (default: all).")
    ap.add_argument("--seeds", default="0", help="Comma-separated seeds.")
    ap.add_argument("--out", type=Path, default=Path("scratch/study"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, help="Also write the results here.")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    recipe = read_recipe(args.base)
    base = recipe.config()
    init = str(resolve_init(recipe.init)) if recipe.init else None
    arms = [a for a in args.arms.split(",") if a]
    unknown = [a for a in arms if a not in ARMS]
    if unknown:
        ap.error(f"unknown arms: {', '.join(unknown)}; known: {', '.join(ARMS)}")
    seeds = [int(s) for s in args.seeds.split(",")]
    results: dict[str, dict[int, dict]] = {}
    for seed in seeds:
        for name in arms:
            results.setdefault(name, {})[seed] = run_arm(base, name, seed, args.steps, tuple(args.val), args.out,
                                                         init, recipe.precision or "auto")
    sets = list(gains(next(iter(results.values()))[seeds[0]]["last"]))
    print(f"base: {args.base}, {args.steps} steps per arm, seeds {args.seeds}\n")
    print("| arm | overrides | seed | " + " | ".join(f"{s} gain dB" for s in sets) + " | mean gain | vs base |")
    print("|---|---|---|" + "---|" * (len(sets) + 2))
    for name, by_seed in results.items():
        for seed, res in by_seed.items():
            g = gains(res["last"])
            mean = sum(g.values()) / len(g)
            ref = results.get("base", {}).get(seed)
            delta = ""
            if ref is not None:
                rg = gains(ref["last"])
                delta = f"{mean - sum(rg.values()) / len(rg):+.3f}"
            over = ", ".join(f"{k}={v}" for k, v in ARMS[name].items()) or "-"
            print(f"| {name} | {over} | {seed} | " + " | ".join(f"{g[s]:+.3f}" for s in sets) + f" | {mean:+.3f} | {delta} |")
    start = gains(next(iter(results.values()))[seeds[0]]["first"])
    print("\nstep 0 (the init weights): " + ", ".join(f"{s} {v:+.3f} dB" for s, v in start.items()))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
