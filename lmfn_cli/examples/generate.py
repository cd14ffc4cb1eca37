"""Make the bundled example images: three scenes drawn by code, and their motion-blurred copies.

    python -m lmfn_cli.examples.generate [OUT_DIR]     (default: this folder)

Writes ``sharp/NAME.png`` and ``blur/NAME.png`` (320x240, 8-bit RGB). Everything is drawn
here from a fixed seed, so the images are the project's own work (see LICENSE beside this file).
The blur is a camera-shake-like path (a smooth random walk) (about 9 px long) rendered into a 25x25 kernel,
applied in linear light, plus mild noise: enough to show what deblurring does, not a benchmark.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

SIZE = (320, 240)  # width, height
SEED = 20261124


def _font(size: int) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def scene_text(rng: np.random.Generator) -> Image.Image:
    """A printed page: a coloured title bar, lines of text in several sizes, a small table."""
    img = Image.new("RGB", SIZE, (246, 243, 236))
    d = ImageDraw.Draw(img)
    d.rectangle([0, 0, SIZE[0], 38], fill=(32, 74, 135))
    d.text((12, 6), "LMFN deblurring", font=_font(24), fill=(255, 255, 255))
    words = "sharp edges fine print shaky hands motion blur lightweight fusion network camera".split()
    y = 48
    for size in (16, 14, 12, 11, 10, 9):
        line = " ".join(rng.choice(words, size=8))
        d.text((12, y), line, font=_font(size), fill=(20, 20, 20))
        y += size + 7
    for row in range(4):
        for col in range(5):
            x0, y0 = 12 + col * 60, 160 + row * 18
            d.rectangle([x0, y0, x0 + 58, y0 + 16], outline=(90, 90, 90))
            d.text((x0 + 4, y0 + 2), f"{rng.integers(0, 1000):03d}", font=_font(11), fill=(150, 30, 30))
    return img


def scene_chart(rng: np.random.Generator) -> Image.Image:
    """A resolution chart: a Siemens star, bar groups of falling period, colour patches."""
    w, h = SIZE
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    sky = np.stack([200 - yy / 3, 215 - yy / 4, 240 - yy / 6], axis=2)
    img = Image.fromarray(np.clip(sky, 0, 255).astype(np.uint8))
    d = ImageDraw.Draw(img)
    cx, cy, r = 90, 120, 80
    for k in range(36):  # Siemens star, 36 spokes
        a0, a1 = 2 * np.pi * k / 36, 2 * np.pi * (k + 0.5) / 36
        d.polygon([(cx, cy), (cx + r * np.cos(a0), cy + r * np.sin(a0)), (cx + r * np.cos(a1), cy + r * np.sin(a1))], fill=(15, 15, 15))
    x = 190
    for period in (12, 8, 6, 4, 3):  # bar groups
        for i in range(4):
            d.rectangle([x + i * period, 20, x + i * period + period // 2 - 1, 110], fill=(10, 10, 10))
        x += 4 * period + 6
    colours = rng.integers(30, 255, size=(8, 3))
    for i, c in enumerate(colours):
        x0, y0 = 190 + (i % 4) * 30, 130 + (i // 4) * 30
        d.rectangle([x0, y0, x0 + 26, y0 + 26], fill=tuple(int(v) for v in c), outline=(0, 0, 0))
    d.ellipse([200, 200, 230, 230], fill=(250, 250, 250), outline=(0, 0, 0))  # a bright highlight
    return img


def scene_city(rng: np.random.Generator) -> Image.Image:
    """Buildings with window grids against an evening sky (straight edges, repeated detail)."""
    w, h = SIZE
    yy = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    sky = (1 - yy) * np.array([70, 110, 170]) + yy * np.array([240, 170, 120])
    img = Image.fromarray(np.broadcast_to(sky, (h, w, 3)).astype(np.uint8))
    d = ImageDraw.Draw(img)
    x = 0
    while x < w:
        bw, bh = int(rng.integers(40, 80)), int(rng.integers(80, 210))
        shade = int(rng.integers(40, 110))
        d.rectangle([x, h - bh, x + bw, h], fill=(shade, shade - 10, shade + 15))
        for wy in range(h - bh + 8, h - 10, 14):
            for wx in range(x + 6, x + bw - 8, 11):
                lit = rng.random() < 0.45
                d.rectangle([wx, wy, wx + 5, wy + 7], fill=(255, 220, 130) if lit else (25, 30, 45))
        x += bw + int(rng.integers(2, 8))
    return img


def shake_kernel(rng: np.random.Generator, size: int = 25, length: float = 9.0) -> np.ndarray:
    """A smooth random-walk camera path of about ``length`` px, drawn sub-pixel into a kernel."""
    steps = 400
    angle = rng.uniform(0, 2 * np.pi)
    turn = np.cumsum(rng.normal(0, 0.02, steps))  # slowly bending direction
    path = np.cumsum(np.stack([np.cos(angle + turn), np.sin(angle + turn)], 1), 0) * (length / steps)
    path -= path.mean(0)
    k = np.zeros((size, size), np.float64)
    for px, py in path + size // 2:  # bilinear splat of each path sample
        x0, y0 = int(np.floor(px)), int(np.floor(py))
        fx, fy = px - x0, py - y0
        k[y0, x0] += (1 - fx) * (1 - fy)
        k[y0, x0 + 1] += fx * (1 - fy)
        k[y0 + 1, x0] += (1 - fx) * fy
        k[y0 + 1, x0 + 1] += fx * fy
    return k / k.sum()


def blur(img: np.ndarray, kernel: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Convolve (H,W,3) uint8 sRGB with ``kernel`` in linear light, add noise, round to uint8."""
    lin = (img / 255.0) ** 2.2
    h, w = lin.shape[:2]
    p = kernel.shape[0] // 2
    padded = np.pad(lin, ((p, p), (p, p), (0, 0)), mode="reflect")
    kpad = np.zeros(padded.shape[:2])
    kpad[: kernel.shape[0], : kernel.shape[1]] = kernel
    kpad = np.roll(kpad, (-p, -p), axis=(0, 1))
    kf = np.fft.rfft2(kpad)
    out = np.stack([np.fft.irfft2(np.fft.rfft2(padded[..., c]) * kf, s=padded.shape[:2]) for c in range(3)], 2)
    out = np.clip(out[p : p + h, p : p + w], 0, 1) ** (1 / 2.2)
    out = out + rng.normal(0, 1.5 / 255, out.shape)
    return np.clip(np.rint(out * 255), 0, 255).astype(np.uint8)


def main(out_dir: Path) -> None:
    rng = np.random.default_rng(SEED)
    (out_dir / "sharp").mkdir(parents=True, exist_ok=True)
    (out_dir / "blur").mkdir(parents=True, exist_ok=True)
    for name, scene in (("text", scene_text), ("chart", scene_chart), ("city", scene_city)):
        sharp = np.asarray(scene(rng))
        blurry = blur(sharp, shake_kernel(rng), rng)
        Image.fromarray(sharp).save(out_dir / "sharp" / f"{name}.png", optimize=True)
        Image.fromarray(blurry).save(out_dir / "blur" / f"{name}.png", optimize=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent)
