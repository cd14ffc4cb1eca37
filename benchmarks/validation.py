"""Validation figures for a weights file: PSNR/SSIM of the blurry input and of the model.

    python benchmarks/validation.py --weights weights/lmfn-synth-cpu.safetensors [--shared ../shared]

Builds (once, cached) the project's fixed validation sets from ``shared/data/eval-sharp`` with
``lmfn_cli.synth`` and a fixed seed -- Kodak24, McMaster18, CSet14, BSDS500-val -- plus
GoPro-style frame averages from the held-out end (frames 250-299) of the shared 240 fps
sequence, then prints a Markdown table (whole images, 8-bit RGB PSNR, Gaussian SSIM).
``--build-only`` just writes the sets (e.g. for ``lmfn train --val``).

These photos are never trained on. The seed and the synthesizer's defaults define the sets:
change either and the figures are no longer comparable with the model card.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from lmfn_cli import load_model
from lmfn_cli import synth
from lmfn_cli.images import IMAGE_EXTENSIONS
from lmfn_cli.train import evaluate, load_val_set

SEED = 20261124
SETS = ("kodak24", "mcmaster18", "cset14", "bsds500-val")
FRAMES = "GOPR0477_11_00"
HELD_OUT = (250, 299)  # frame indices never used for training
N_FRAME_PAIRS = 8


def build_sets(shared: Path, cache: Path) -> dict[str, Path]:
    """The validation pair folders, made if missing. Returns {set name: folder}."""
    bank = synth.KernelBank.from_dir(shared / "data" / "kernels")
    out = {}
    for name in SETS:
        folder = cache / f"{name}-seed{SEED}"
        if not (folder / "pairs.jsonl").exists():
            src = shared / "data" / "eval-sharp" / name
            paths = sorted(p for p in src.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
            synth.make_pairs(paths, folder, seed=SEED, bank=bank)
        out[name] = folder
    folder = cache / f"gopro-heldout-seed{SEED}"
    if not (folder / "pairs.jsonl").exists():
        frames = shared / "data" / "frames" / FRAMES
        synth.make_frame_pairs(frames, folder, seed=SEED, count=N_FRAME_PAIRS, start=HELD_OUT[0], stop=HELD_OUT[1])
    out["gopro-heldout"] = folder
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", type=Path)
    ap.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared")
    ap.add_argument("--cache", type=Path, default=Path(__file__).resolve().parents[1] / "scratch" / "val")
    ap.add_argument("--build-only", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    sets = build_sets(args.shared, args.cache)
    if args.build_only:
        for name, folder in sets.items():
            print(f"{name}\t{folder}")
        return 0
    if args.weights is None:
        ap.error("--weights is required unless --build-only")
    model = load_model(args.weights)
    print(f"weights: {args.weights}\n")
    print("| set | images | blurry PSNR | blurry SSIM | LMFN PSNR | LMFN SSIM | gain dB |")
    print("|---|---|---|---|---|---|---|")
    for name, folder in sets.items():
        pairs = load_val_set(folder)
        t = time.time()
        m = evaluate(model, pairs)
        print(f"| {name} | {len(pairs)} | {m['input_psnr']:.2f} | {m['input_ssim']:.4f} | {m['psnr']:.2f} | "
              f"{m['ssim']:.4f} | {m['psnr'] - m['input_psnr']:+.2f} |", flush=True)
        print(f"{name}: {time.time() - t:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
