"""Figures behind ``lmfn_cli.tiling``: forward memory per pixel, and the default tile overlap.

    python benchmarks/tile_overlap.py --memory            # FORWARD_BYTES_PER_PIXEL
    python benchmarks/tile_overlap.py --overlap [--shared ../shared] [--max-side 1024]
    python benchmarks/tile_overlap.py --seams     # errors near tile edges only

``--memory`` runs one fp32 ``torch.inference_mode()`` CPU forward of the default model
(``lmfn-residual``, the shipped weights' config) per size, each in a fresh subprocess, and
reads the peak resident set (``ru_maxrss``) against the resident set just before the
forward; a least-squares line over the sizes gives bytes per input pixel. It does so for the
plain forward (``LMFN.forward``, NCHW: what CUDA runs) and for the fused CPU graph the tool
runs (``lmfn_cli.fused.FusedLMFN``, channels-last).

``--overlap``: LMFN's ALFM attention is global and its ESA blocks see ~200 px, so tiled and
whole-image outputs differ. With the shipped weights, for natural photos (Urban100 sharp
photos and Lai et al. 2016 real blurry photos -- never ``data/eval-sharp``, the validation
photos), it prints PSNR(tiled, whole) (8-bit, as saved; lmfn_cli.metrics.psnr) for each
tile size and overlap, min and mean over the photos -- with tiles at offsets that are
multiples of 16 as ``run_tiled`` lays them out, and, at tile 256, with unaligned offsets
(``align=1``) for comparison -- plus the small example
``lmfn_cli/examples/blur/city.png`` at tile 128. Photos larger than ``--max-side`` are
centre-cropped to it. ``--seams`` restricts the comparison to pixels within 8 px of internal
tile edges (where a seam would show) and gives the largest error in 8-bit levels: the
whole-image PSNR dilutes an error that sits on a few seam lines.

This is a script, not a test; it prints its figures. On a 2-core machine shared with a busy
low-priority process, one torch thread is many times faster than two (OpenMP threads spin
waiting for the core the other process holds), so ``--threads`` defaults to 1.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lmfn_cli.fused import FusedLMFN  # noqa: E402
from lmfn_cli.images import read_image  # noqa: E402
from lmfn_cli.metrics import psnr  # noqa: E402
from lmfn_cli.model import build_model  # noqa: E402
from lmfn_cli.tiling import ALIGN, run_tiled, tile_starts  # noqa: E402
from lmfn_cli.weights import load_model  # noqa: E402

WEIGHTS = ROOT / "weights" / "lmfn-synthblur-v0.safetensors"
CITY = ROOT / "lmfn_cli" / "examples" / "blur" / "city.png"
MEMORY_SIZES = ((256, 256), (512, 512), (1024, 1024), (1024, 1536), (2048, 2048))
TILES = (128, 256, 512)
OVERLAPS = (0, 16, 32, 48, 64, 96)
PHOTOS = {
    "sharp/urban100": ("img_001.jpg", "img_004.jpg", "img_012.jpg", "img_024.jpg", "img_050.jpg"),
    "real-blurry/lai2016": ("building1.jpg", "street1.jpg", "night1.jpg", "car2.jpg", "text4.jpg"),
}


# ------------------------------------------------------------------------------ memory


def _rss_bytes() -> int:
    """The current resident set, from /proc (Linux)."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def memory_probe(height: int, width: int, threads: int, graph: str) -> dict:
    """One forward in this (fresh) process; peak RSS growth in bytes. ru_maxrss is in KiB."""
    torch.set_num_threads(threads)
    model = build_model("lmfn-residual").eval()
    layout = torch.contiguous_format
    if graph == "fused":
        model, layout = FusedLMFN.from_model(model), torch.channels_last
    with torch.inference_mode():
        model(torch.rand(1, 3, 64, 64))  # load kernels and libraries before measuring
        x = torch.rand(1, 3, height, width).contiguous(memory_format=layout)
        max_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        rss_before = _rss_bytes()
        model(x)
        max_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    # Peak minus the resident set just before: ru_maxrss "before" may be an older, higher peak.
    return {"h": height, "w": width, "extra": max_after - rss_before, "maxrss_delta": max_after - max_before}


def memory(threads: int) -> None:
    for graph in ("plain", "fused"):
        memory_of(graph, threads)


def memory_of(graph: str, threads: int) -> None:
    rows = []
    for h, w in MEMORY_SIZES:
        cmd = [sys.executable, __file__, "--memory-probe", str(h), str(w), "--threads", str(threads), "--graph", graph]
        rows.append(json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout))
    px = np.array([r["h"] * r["w"] for r in rows], dtype=np.float64)
    extra = np.array([r["extra"] for r in rows], dtype=np.float64)
    slope, intercept = np.polyfit(px, extra, 1)
    print(f"## fp32 CPU forward memory, lmfn-residual, {graph} graph, torch {torch.__version__}, {threads} thread(s)\n")
    print("| input | pixels | peak RSS growth (MiB) | ru_maxrss delta (MiB) | bytes/pixel |")
    print("|---|---:|---:|---:|---:|")
    for r, p in zip(rows, px):
        print(f"| {r['h']}x{r['w']} | {int(p)} | {r['extra'] / 2**20:.1f} | "
              f"{r['maxrss_delta'] / 2**20:.1f} | {r['extra'] / p:.0f} |")
    print(f"\nleast-squares fit: {slope:.1f} bytes/pixel + {intercept / 2**20:.1f} MiB")


# ------------------------------------------------------------------------------ overlap


def load_photo(path: Path, max_side: int) -> torch.Tensor:
    """(1,3,H,W) float32 in [0,1], centre-cropped so that neither side exceeds max_side."""
    img = read_image(path)[..., :3]
    h, w = img.shape[:2]
    top, left = max(0, (h - max_side) // 2), max(0, (w - max_side) // 2)
    img = img[top : top + min(h, max_side), left : left + min(w, max_side)]
    return torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)[None]


def compare(model: torch.nn.Module, image: torch.Tensor, tiles: tuple[int, ...], unaligned: tuple[int, ...] = ()) -> dict:
    """{(tile, overlap, align): PSNR(tiled, whole)} for one image; align 1 only for ``unaligned`` tiles."""
    with torch.inference_mode():
        whole = model(image).clamp_(0, 1)
        result = {}
        for tile in tiles:
            for align in (ALIGN, 1) if tile in unaligned else (ALIGN,):
                for overlap in OVERLAPS:
                    tiled = run_tiled(model, image, tile=tile, overlap=overlap, align=align).clamp_(0, 1)
                    result[(tile, overlap, align)] = float(psnr(tiled, whole)[0])
    return result


def _table(per_photo: dict[str, dict], keys: list[tuple[str, int, int]]) -> None:
    header = " | ".join(f"ov {o}" for o in OVERLAPS)
    print(f"| tile | stat | {header} |")
    print("|---|---|" + "---:|" * len(OVERLAPS))
    for label, tile, align in keys:
        for stat, fn in (("min", np.min), ("mean", np.mean)):
            vals = [fn([p[(tile, o, align)] for p in per_photo.values()]) for o in OVERLAPS]
            print(f"| {label} | {stat} | " + " | ".join(f"{v:.2f}" for v in vals) + " |")


def overlap(shared: Path, max_side: int) -> None:
    model = load_model(WEIGHTS)
    per_photo: dict[str, dict] = {}
    for folder, names in PHOTOS.items():
        for name in names:
            path = shared / "data" / folder / name
            image = load_photo(path, max_side)
            t0 = time.perf_counter()
            per_photo[f"{folder.split('/')[-1]}/{name}"] = compare(model, image, TILES, unaligned=(256,))
            print(f"{folder}/{name} {image.shape[3]}x{image.shape[2]}: {time.perf_counter() - t0:.0f} s",
                  file=sys.stderr, flush=True)
    print(f"## PSNR(tiled, whole) in dB, 8-bit, shipped weights, {len(per_photo)} photos "
          f"(centre-cropped to <= {max_side} px)\n")
    keys = [(str(t), t, ALIGN) for t in TILES] + [("256, unaligned", 256, 1)]
    _table(per_photo, keys)
    header = " | ".join(f"ov {o}" for o in OVERLAPS)
    print("\nper photo, tile 256:\n")
    print(f"| photo | {header} |")
    print("|---|" + "---:|" * len(OVERLAPS))
    for name, p in per_photo.items():
        print(f"| {name} | " + " | ".join(f"{p[(256, o, ALIGN)]:.2f}" for o in OVERLAPS) + " |")

    city = load_photo(CITY, 10**9)
    print(f"\n## {CITY.relative_to(ROOT)} ({city.shape[3]}x{city.shape[2]}), tile 128\n")
    _table({"city": compare(model, city, (128,))}, [("128", 128, ALIGN)])


def seam_band(height: int, width: int, tile: int, overlap: int, band: int = 8) -> torch.Tensor:
    """(H,W) bool: pixels within ``band`` px of an internal tile edge of run_tiled's layout."""
    mask = torch.zeros(height, width, dtype=torch.bool)
    for length, axis in ((height, 0), (width, 1)):
        for s in tile_starts(length, min(tile, length), overlap):
            for edge in (s, min(s + tile, length)):
                if 0 < edge < length:
                    sl = slice(max(0, edge - band), edge + band)
                    if axis == 0:
                        mask[sl, :] = True
                    else:
                        mask[:, sl] = True
    return mask


def seams(shared: Path, max_side: int, tiles: tuple[int, ...] = (128, 256), overlaps: tuple[int, ...] = (0, 16, 32, 48)) -> None:
    """Seam-local figures: PSNR over pixels within 8 px of internal tile edges, max error."""
    model = load_model(WEIGHTS)
    rows: dict[tuple[int, int], list[tuple[float, float, float]]] = {}
    with torch.inference_mode():
        for folder, names in PHOTOS.items():
            for name in names:
                image = load_photo(shared / "data" / folder / name, max_side)
                h, w = image.shape[-2:]
                whole = torch.round(model(image).clamp_(0, 1) * 255)
                for tile in tiles:
                    for ov in overlaps:
                        tiled = torch.round(run_tiled(model, image, tile=tile, overlap=ov).clamp_(0, 1) * 255)
                        err = (tiled - whole)[0].abs()  # (3,H,W), 8-bit levels
                        mask = seam_band(h, w, tile, ov).expand_as(err)
                        mse = err[mask].double().pow(2).mean().item()
                        band_psnr = float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)
                        share = (err >= 1).double().mean().item()
                        rows.setdefault((tile, ov), []).append((band_psnr, err.max().item(), share))
                print(f"{folder}/{name}", file=sys.stderr, flush=True)
    print(f"## Seams: pixels within 8 px of an internal tile edge, {len(next(iter(rows.values())))} photos "
          f"(<= {max_side} px), 8-bit\n")
    print("| tile | overlap | seam-band PSNR min | mean | max abs error (levels), worst photo | "
          "pixels off by >= 1 level, mean |")
    print("|---:|---:|---:|---:|---:|---:|")
    for (tile, ov), vals in rows.items():
        band, mx, share = zip(*vals)
        print(f"| {tile} | {ov} | {min(band):.2f} | {np.mean(band):.2f} | {max(mx):.0f} | {100 * np.mean(share):.3f}% |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--memory", action="store_true", help="measure forward bytes per pixel")
    ap.add_argument("--overlap", action="store_true", help="PSNR(tiled, whole) table")
    ap.add_argument("--seams", action="store_true", help="seam-local errors, tiles 128 and 256")
    ap.add_argument("--memory-probe", nargs=2, type=int, metavar=("H", "W"), help=argparse.SUPPRESS)
    ap.add_argument("--graph", choices=("plain", "fused"), default="plain", help=argparse.SUPPRESS)
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    ap.add_argument("--max-side", type=int, default=1024)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    if args.memory_probe:
        print(json.dumps(memory_probe(*args.memory_probe, args.threads, args.graph)))
        return
    torch.set_num_threads(args.threads)
    if not (args.memory or args.overlap or args.seams):
        args.memory = args.overlap = args.seams = True
    if args.memory:
        memory(args.threads)
        print()
    if args.overlap:
        overlap(args.shared, args.max_side)
        print()
    if args.seams:
        seams(args.shared, args.max_side)


if __name__ == "__main__":
    main()
