"""Before/after figures: the bundled examples (for the model card) and real blurry photos (to look at).

    python benchmarks/figures.py examples -o weights/lmfn-synthblur-v3-examples.png \\
        --weights weights/lmfn-synthblur-v2.safetensors --weights weights/lmfn-synthblur-v3.safetensors
    python benchmarks/figures.py real -o scratch/real --weights weights/lmfn-synthblur-v2.safetensors \\
        --weights scratch/runs/v3/last.safetensors [--crop 400x300]

``examples`` puts, for each of ``lmfn_cli/examples/blur/*.png``, the blurry input, each model's
result and the sharp original side by side, one scene per row, each column labelled with the
weights' name and the image's PSNR against the sharp original (8-bit RGB, whole image). These
images are drawn by the project (CC0), so the figure may be committed.

``report`` runs the bundled examples through ``batch.run_batch`` with their ground truth and the
first ``--weights``, writes the HTML report next to ``-o`` and saves a screenshot of it from
headless Chromium (Playwright; ``--chromium`` or ``chromium`` on PATH) as ``-o`` (the README's):

    python benchmarks/figures.py report -o benchmarks/figures/report-example.png \
        --weights weights/lmfn-synthblur-v2.safetensors

``real`` writes, for every photo under ``../shared/data/real-blurry`` (no ground truth), a PNG of
the same crop at 100% (no scaling) from the blurry photo and from each model, side by side: for
looking at ringing, halos, colour shifts and noise, never for scoring. These photos are not ours
to publish: the output belongs in ``scratch/`` (ignored by git), not in the repository.
``--kernel [network] [tv] [wiener]`` adds a column by ``lmfn deblur --method kernel`` per
deconvolution named (network when none is; its kernel, 4x, in the corner) and prints each photo's
kernel extent, agreement and the method each of kernel and auto chose.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from lmfn_cli import deblur, load_model, read_picture
from lmfn_cli.evaluation import to_tensor
from lmfn_cli.metrics import psnr

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "lmfn_cli" / "examples"
PHOTO_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp"}


def label(img: np.ndarray, text: str, size: int = 14) -> np.ndarray:
    """Write ``text`` in white on a black strip at the top left of an HxWx3 uint8 image (a copy)."""
    pil = Image.fromarray(img)
    draw = ImageDraw.Draw(pil)
    try:
        font = ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one bitmap size only
        font = ImageFont.load_default()
    box = draw.textbbox((4, 1), text, font=font)
    draw.rectangle((0, 0, box[2] + 4, box[3] + 3), fill=(0, 0, 0))
    draw.text((4, 1), text, fill=(255, 255, 255), font=font)
    return np.asarray(pil)


def rgb8(path: Path) -> np.ndarray:
    """An image file as HxWx3 uint8 (16-bit scaled down, alpha and grey handled by read_picture)."""
    px = read_picture(path).pixels
    if px.dtype == np.uint16:
        px = np.round(px / 257.0).astype(np.uint8)
    if px.ndim == 2:
        px = np.repeat(px[..., None], 3, axis=2)
    return px[..., :3]


def weights_name(path: Path) -> str:
    return path.stem


def examples_figure(weights: list[Path], threads: int | None = None) -> tuple[np.ndarray, list[list[float]]]:
    """The examples figure as HxWx3 uint8 and the PSNRs (rows: scenes; columns: blurry, each weights)."""
    models = [load_model(w, device="cpu") for w in weights]
    rows, table = [], []
    for blur_path in sorted((EXAMPLES / "blur").glob("*.png")):
        blurry, sharp = rgb8(blur_path), rgb8(EXAMPLES / "sharp" / blur_path.name)
        outs = [deblur(m, blurry) for m in models]
        scores = [float(psnr(to_tensor(x), to_tensor(sharp))) for x in [blurry, *outs]]
        tiles = [label(blurry, f"blurry input  {scores[0]:.2f} dB")]
        tiles += [label(o, f"{weights_name(w)}  {s:.2f} dB") for w, o, s in zip(weights, outs, scores[1:])]
        tiles.append(label(sharp, "sharp original"))
        rows.append(np.concatenate(tiles, axis=1))
        table.append(scores)
        print(f"{blur_path.name}: " + "  ".join(f"{s:.2f}" for s in scores), file=sys.stderr)
    return np.concatenate(rows, axis=0), table


def centre_crop(img: np.ndarray, w: int, h: int) -> np.ndarray:
    """The centre w x h of an HxWx3 image (the whole side where the image is smaller)."""
    H, W = img.shape[:2]
    top, left = max(0, (H - h) // 2), max(0, (W - w) // 2)
    return img[top:top + h, left:left + w]


def real_photos(shared: Path) -> list[Path]:
    root = shared / "data" / "real-blurry"
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in PHOTO_SUFFIXES)


def kernel_tile(blurry: np.ndarray, model, crop: tuple[int, int], path: Path, deconvolution: str = "network") -> np.ndarray:
    """The centre crop of ``--method kernel --deconvolution D``'s result, labelled with what it
    did, its kernel (magnified 4x) pasted in the corner; prints one line per photo."""
    from lmfn_cli.kernel_method import KernelOptions, decide, restore_with_method

    done = restore_with_method(model, blurry, KernelOptions(method="kernel", deconvolution=deconvolution))
    tile = centre_crop(done.restored.pixels, *crop).copy()
    est = done.estimate
    auto = decide(est, "auto")[0] if est is not None else "blind"
    if done.kernel is not None:
        k = done.kernel / max(float(done.kernel.max()), 1e-12)
        big = np.repeat(np.repeat((k * 255).astype(np.uint8), 4, 0), 4, 1)
        n = min(big.shape[0], tile.shape[0], tile.shape[1])
        tile[-n:, -n:] = big[:n, :n, None]
    agreement = "-" if est is None or est.agreement is None else f"{est.agreement:.2f}"
    extent = "-" if est is None else f"{est.extent:.1f}"
    print(f"{path.parent.name}/{path.name}: kernel extent {extent} px, agreement {agreement}; "
          f"--method kernel --deconvolution {deconvolution} used {done.method}, auto would use {auto}", flush=True)
    return label(tile, f"kernel {deconvolution}: {done.method} (extent {extent}, agree {agreement})")


def real_figures(weights: list[Path], out: Path, shared: Path, crop: tuple[int, int],
                 only: list[str] | None = None, kernel: tuple[str, ...] = ()) -> int:
    """Write one side-by-side crop PNG per real blurry photo under ``out`` (with ``kernel``, a
    column by ``--method kernel`` per deconvolution named, the first weights as its fallback);
    return how many."""
    models = [load_model(w, device="cpu") for w in weights]
    out.mkdir(parents=True, exist_ok=True)
    n = 0
    for path in real_photos(shared):
        if only and not any(o in str(path) for o in only):
            continue
        blurry = rgb8(path)
        # the whole photo through the model (as a user would run it), then the same crop of each
        tiles = [label(centre_crop(blurry, *crop), f"blurry  {path.parent.name}/{path.name}")]
        for w, m in zip(weights, models):
            tiles.append(label(centre_crop(deblur(m, blurry), *crop), weights_name(w)))
        for deconvolution in kernel:
            tiles.append(kernel_tile(blurry, models[0], crop, path, deconvolution))
        name = f"{path.parent.name}--{path.stem}.png"
        Image.fromarray(np.concatenate(tiles, axis=1)).save(out / name)
        n += 1
    return n


def report_screenshot(weights: Path, out: Path, chromium: str, width: int = 1000, height: int = 1500) -> Path:
    """The examples' HTML report (written beside ``out``) and its screenshot at ``out``."""
    import tempfile

    from playwright.sync_api import sync_playwright

    from lmfn_cli.batch import BatchOptions, run_batch
    from lmfn_cli.download import file_sha256

    import os

    html = out.resolve().with_suffix(".html")
    weights, here = weights.resolve(), Path.cwd()
    with tempfile.TemporaryDirectory() as tmp:
        # run where the names read as in the README's command: lmfn_cli/examples/blur -> out/
        os.chdir(tmp)
        try:
            (Path(tmp) / "lmfn_cli").mkdir()
            (Path(tmp) / "lmfn_cli" / "examples").symlink_to(EXAMPLES)
            options = BatchOptions(gt_dir="lmfn_cli/examples/sharp", html=html, command=(
                "lmfn deblur lmfn_cli/examples/blur -o out --gt lmfn_cli/examples/sharp --html out/report.html"))
            batch = run_batch(["lmfn_cli/examples/blur"], "out", options, model=load_model(weights),
                              model_info={"name": weights_name(weights), "sha256": file_sha256(weights)})
            list(batch)
        finally:
            os.chdir(here)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": width, "height": height})
        page.goto(html.resolve().as_uri())
        page.screenshot(path=str(out))
        browser.close()
    return html


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["examples", "real", "report"])
    ap.add_argument("--chromium", default="chromium", help="report: the browser to screenshot with")
    ap.add_argument("-o", "--out", type=Path, required=True, help="examples: a PNG file; real: a folder")
    ap.add_argument("--weights", type=Path, action="append", required=True, help="repeatable, in column order")
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    ap.add_argument("--crop", default="400x300", help="real: crop WxH at 100%% (default 400x300)")
    ap.add_argument("--only", action="append", help="real: only photos whose path contains this text (repeatable)")
    ap.add_argument("--threads", type=int, help="torch CPU threads")
    ap.add_argument("--kernel", nargs="*", choices=["network", "tv", "wiener"], default=None, metavar="DECONVOLUTION",
                    help="real: add a column by lmfn deblur --method kernel per deconvolution (none named: network)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    t = time.monotonic()
    if args.what == "examples":
        fig, table = examples_figure(args.weights)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(fig).save(args.out, optimize=True)
        cols = ["blurry"] + [weights_name(w) for w in args.weights]
        names = [p.name for p in sorted((EXAMPLES / "blur").glob("*.png"))]
        print("| image | " + " | ".join(cols) + " |\n|---|" + "---|" * len(cols))
        for name, row in zip(names, table):
            print(f"| {name} | " + " | ".join(f"{s:.2f}" for s in row) + " |")
    elif args.what == "report":
        import shutil

        args.out.parent.mkdir(parents=True, exist_ok=True)
        html = report_screenshot(args.weights[0], args.out, shutil.which(args.chromium) or args.chromium)
        print(f"{html} ({html.stat().st_size / 1024:.0f} KiB) -> {args.out}")
    else:
        w, h = (int(v) for v in args.crop.lower().split("x"))
        kernel = () if args.kernel is None else tuple(args.kernel) or ("network",)
        n = real_figures(args.weights, args.out, args.shared, (w, h), args.only, kernel)
        print(f"{n} photos -> {args.out}")
    print(f"{time.monotonic() - t:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
