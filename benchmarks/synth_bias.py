"""The brightness bias of training pairs: mean (blurry - sharp) in 8-bit levels, by source and
by how bright the sharp pixel is, and what each step of the synthesizer adds to it.

    python benchmarks/synth_bias.py                   # 1,000 pairs per mixture, 300 per component
    python benchmarks/synth_bias.py --pairs 200 --component-pairs 100   # quicker

A network learns whatever its pairs teach: if blurry images are brighter than their targets on
average, it learns to darken. Part of such a bias is physics (light adds up in linear light, so
a camera's blurred texture is brighter once tone-mapped, and clipped lights smear into streaks),
part is an artefact of the synthesizer (zero-mean noise clipped at black is brighter than the
signal). This script tells them apart by switching the steps on one at a time:

- mixtures: the training mixture as runs up to v5 had it (``--old``), and the one
  ``lmfn train`` makes from the recipe given (``--recipe``), by blur source;
- components: blur alone in linear light, blur alone in sRGB values, highlights, noise in either
  model, JPEG, each on its own;
- real frame averages of GOPR0477 (training frames only), in linear light and in sRGB values.

Pairs are made as ``train_data.BatchSource`` makes them (random 160 px crops of the training
photos, blurred with a margin, centre 128 px kept), from BSDS500 train/test and Urban100, with
the training share of the measured kernels. Bins by area: each 16x16 block by its sharp mean of
R, G, B (sRGB values), dark < 0.25 <= mid < 0.75 <= bright. Markdown to stdout, timing to stderr.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from lmfn_cli import synth
from lmfn_cli.recipes import read_recipe
from lmfn_cli.train_data import _load_sharp_folder, synth_config

ROOT = Path(__file__).resolve().parents[1]
BINS = (("dark", 0.0, 0.25), ("mid", 0.25, 0.75), ("bright", 0.75, 1.01))
BLOCK = 16


class Tally:
    """Sums of (blurry - sharp) and pixel counts per bin, over all and per key."""

    def __init__(self) -> None:
        self.sums: dict[str, np.ndarray] = defaultdict(lambda: np.zeros(len(BINS) + 1))
        self.counts: dict[str, np.ndarray] = defaultdict(lambda: np.zeros(len(BINS) + 1))
        self.pairs: dict[str, int] = defaultdict(int)

    def add(self, key: str, blurry: np.ndarray, sharp: np.ndarray) -> None:
        # by area, not by pixel: blur pulls every dark pixel next to a bright one up (and the
        # bright one down) whatever the domain; over a 16x16 block that mostly cancels, and what
        # is left is the bias the network would learn for a dark, mid or bright area
        h, w = (s - s % BLOCK for s in sharp.shape[:2])
        def blocks(a: np.ndarray) -> np.ndarray:  # (h/B * w/B, B*B*3)
            a = a[:h, :w].reshape(h // BLOCK, BLOCK, w // BLOCK, BLOCK, 3).swapaxes(1, 2)
            return a.reshape(-1, BLOCK * BLOCK * 3).astype(np.float64)
        diff = (blocks(blurry) - blocks(sharp)).mean(axis=1) * 255
        luma = blocks(sharp).mean(axis=1)
        for k in (key, "all"):
            for j, (_, lo, hi) in enumerate(BINS):
                m = (luma >= lo) & (luma < hi)
                self.sums[k][j] += diff[m].sum()
                self.counts[k][j] += m.sum()
            self.sums[k][-1] += diff.sum()
            self.counts[k][-1] += diff.size
            self.pairs[k] += 1

    def rows(self) -> list[tuple[str, int, list[str]]]:
        keys = ["all"] + sorted(k for k in self.sums if k != "all")
        out = []
        for k in keys:
            means = self.sums[k] / np.maximum(self.counts[k], 1)
            cells = [f"{m:+.2f}" if c else "–" for m, c in zip(means, self.counts[k])]
            out.append((k, self.pairs[k], cells))
        return out


def table(title: str, tally: Tally) -> str:
    lines = [f"**{title}**", "", "| source | pairs | dark areas | mid areas | bright areas | all |", "|---|---|---|---|---|---|"]
    lines += [f"| {k} | {n} | " + " | ".join(cells) + " |" for k, n, cells in tally.rows()]
    return "\n".join(lines) + "\n"


def measure(photos: list[np.ndarray], cfg: synth.SynthConfig, bank: synth.KernelBank, n: int, seed: int,
            key=lambda info: info["source"]) -> Tally:
    tally = Tally()
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        img = photos[int(rng.integers(len(photos)))]
        h, w = img.shape[:2]
        y, x = int(rng.integers(h - 160 + 1)), int(rng.integers(w - 160 + 1))
        big = img[y:y + 160, x:x + 160].astype(np.float32) / 255
        blurry, sharp, info = synth.synthesize_pair(big, rng, cfg, bank)
        tally.add(key(info), blurry[16:144, 16:144], sharp[16:144, 16:144])
    return tally


def frames_bias(folder: Path, n: int, seed: int) -> Tally:
    """GoPro-style averages of 7-13 frames from the training part of the sequence (before frame 250)."""
    tally = Tally()
    for linear in (True, False):
        rng = np.random.default_rng([seed, int(linear)])
        for blurry, sharp, _ in synth.frame_sequence_pairs(folder, rng=rng, count=n, linear=linear, stop=250, crop=256):
            tally.add("frames, linear light" if linear else "frames, sRGB values", blurry, sharp)
    return tally


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    ap.add_argument("--recipe", type=Path, default=ROOT / "recipes" / "lmfn-synthblur-v6.toml",
                    help="the new training mixture, as lmfn train builds it from this recipe")
    ap.add_argument("--pairs", type=int, default=1000, help="pairs per mixture")
    ap.add_argument("--component-pairs", type=int, default=300, help="pairs per component")
    ap.add_argument("--frames", type=int, default=60, help="frame averages per domain (0: skip)")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    data = args.shared / "data"
    photos = [img for sub in ("bsds500/train", "bsds500/test", "urban100")
              for img in _load_sharp_folder(str(data / "sharp" / sub))]
    bank = synth.KernelBank.from_dir(data / "kernels").split("train")
    t = time.monotonic()

    from lmfn_cli.train_config import TrainConfig

    old = synth_config(TrainConfig())  # the fields every run up to v5 used
    new = synth_config(TrainConfig(**{k: v for k, v in read_recipe(args.recipe).fields.items()
                                      if k in ("noise_prob", "jpeg_prob", "noise_model", "w_none", "w_small",
                                               "srgb_blur_prob")}))
    print(f"Mean (blurry - sharp) in 8-bit levels; 16x16 blocks binned by their sharp brightness "
          f"(dark < 0.25 <= mid < 0.75 <= bright). `python benchmarks/synth_bias.py --pairs {args.pairs} "
          f"--component-pairs {args.component_pairs} --frames {args.frames} --seed {args.seed}`\n")
    print(table(f"The training mixture of v2-v5 ({args.pairs} pairs)", measure(photos, old, bank, args.pairs, args.seed)))
    print(table(f"The new mixture, {args.recipe.name} ({args.pairs} pairs)",
                measure(photos, new, bank, args.pairs, args.seed,
                        key=lambda i: f"{i['source']} ({i['blur_domain']})")))

    quiet = synth.Degradation(noise_prob=0.0, clip_prob=0.0, jpeg_prob=0.0)
    blur_only = dataclasses.replace(old, degradation=quiet)
    nothing = {f"w_{s}": 0.0 for s in synth.SOURCES}
    sharp_only = dict(nothing, w_none=1.0)
    components = {
        "blur only, linear light": blur_only,
        "blur only, sRGB values": dataclasses.replace(blur_only, srgb_blur_prob=1.0),
        "highlights only (clip_prob 1), blur in linear light": dataclasses.replace(
            old, degradation=dataclasses.replace(quiet, clip_prob=1.0)),
        "noise only, clipped-linear (v2-v5)": synth.SynthConfig(**sharp_only, degradation=dataclasses.replace(
            quiet, noise_prob=1.0)),
        "noise only, zero-mean (new)": synth.SynthConfig(**sharp_only, degradation=dataclasses.replace(
            quiet, noise_prob=1.0, noise_model="zero-mean")),
        "JPEG only (q60-95)": synth.SynthConfig(**sharp_only, degradation=dataclasses.replace(quiet, jpeg_prob=1.0)),
    }
    lines = ["**Each step on its own** (all sources together)", "",
             "| component | pairs | dark areas | mid areas | bright areas | all |", "|---|---|---|---|---|---|"]
    for name, cfg in components.items():
        tally = measure(photos, cfg, bank, args.component_pairs, args.seed)
        _, n, cells = tally.rows()[0]
        lines.append(f"| {name} | {n} | " + " | ".join(cells) + " |")
    print("\n".join(lines) + "\n")
    if args.frames:
        print(table(f"Real frame averages, GOPR0477_11_00 frames 0-249 ({args.frames} per domain, 256 px crops)",
                    frames_bias(data / "frames" / "GOPR0477_11_00", args.frames, args.seed)))
    print(f"synth_bias: {time.monotonic() - t:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
