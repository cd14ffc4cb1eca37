"""Validation pairs for the kernel method's non-blind stage, and how a network scores on them.

    python benchmarks/nonblind_val.py --build scratch/val/nonblind          # write the pairs
    python benchmarks/nonblind_val.py --score scratch/val/nonblind --weights W.safetensors

The pairs are made by `synth.nonblind.nonblind_pair` (Wiener deconvolution by a kernel perturbed
the way estimation errs, 80% of them) from centre crops of the Kodak photos in
``../shared/data/eval-sharp/kodak24`` (never trained on) blurred by the VALIDATION share of the
measured kernels (USRNet motion kernels 8-11, gyro_04) or random trajectories, seed 0. ``blur/``
holds the deconvolved input, ``sharp/`` the target: a `lmfn train --val` folder. ``--score``
prints the mean PSNR of the deconvolution and of the network on it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from lmfn_cli.images import read_image, write_image
from lmfn_cli.synth import KernelBank
from lmfn_cli.synth.nonblind import NonblindConfig, nonblind_pair

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def build(dest: Path, count: int, crop: int, prior: float) -> None:
    photos = sorted((SHARED / "data/eval-sharp/kodak24").glob("*.png"))[:count]
    bank = KernelBank.from_dir(SHARED / "data/kernels").split("val")
    cfg = NonblindConfig(prior=prior, delta_prob=0.0)
    rng = np.random.default_rng(0)
    for sub in ("blur", "sharp"):
        (dest / sub).mkdir(parents=True, exist_ok=True)
    for p in photos:
        img = np.asarray(read_image(p))[..., :3].astype(np.float32) / 255
        h, w = img.shape[:2]
        side = crop + 32
        y, x = (h - side) // 2, (w - side) // 2
        deconvolved, sharp, kernel = nonblind_pair(img[y:y + side, x:x + side], rng, cfg, bank, full_side=max(h, w))
        write_image(dest / "blur" / f"{p.stem}.png", np.rint(deconvolved * 255).astype(np.uint8))
        write_image(dest / "sharp" / f"{p.stem}.png", np.rint(sharp * 255).astype(np.uint8))
    print(f"{len(photos)} pairs in {dest}")


def score(folder: Path, weights: str) -> None:
    from lmfn_cli.train import evaluate, load_val_set
    from lmfn_cli.weights import load_model

    model = load_model(weights)
    m = evaluate(model, load_val_set(folder))
    print(f"deconvolution {m['input_psnr']:.2f} dB -> network {m['psnr']:.2f} dB ({m['psnr'] - m['input_psnr']:+.2f})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", type=Path)
    ap.add_argument("--score", type=Path)
    ap.add_argument("--weights", default=None)
    ap.add_argument("--count", type=int, default=24)
    ap.add_argument("--crop", type=int, default=256)
    ap.add_argument("--prior", type=float, default=NonblindConfig.prior)
    args = ap.parse_args()
    if args.build:
        build(args.build, args.count, args.crop, args.prior)
    if args.score:
        score(args.score, args.weights)


if __name__ == "__main__":
    main()
