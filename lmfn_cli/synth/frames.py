"""Real blur: averaging consecutive frames of high-frame-rate video (GoPro dataset style)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from ..errors import ConfigError, FileProblem, ImageError, OutputExistsError
from ..images import IMAGE_EXTENSIONS, read_image, write_image
from .color import _to_float_rgb, _to_uint8, linear_to_srgb, srgb_to_linear

log = logging.getLogger(__name__)


def average_frames(frames: Sequence[np.ndarray], *, linear: bool) -> tuple[np.ndarray, np.ndarray]:
    """GoPro-style blur: the mean of consecutive sRGB frames, and the middle frame as target.

    ``frames``: (H,W,3) arrays, uint8 or float in [0,1], all the same shape. With ``linear`` the
    mean is taken in linear light and encoded back to sRGB (what a long exposure records);
    without, in sRGB values (how the original GoPro dataset was made). The target is
    ``frames[len // 2]``: the exact middle for an odd count, the later of the two middle frames
    for an even one. Returns (blurry, sharp), float32 (H,W,3) in [0,1].
    """
    if len(frames) == 0:
        raise ConfigError("average_frames needs at least one frame")
    acc = None
    for f in frames:
        f = _to_float_rgb(f)
        if acc is not None and f.shape != acc.shape:
            raise ImageError(None, f"frames differ in size: {f.shape} and {acc.shape}")
        f = srgb_to_linear(f) if linear else f
        acc = f.copy() if acc is None else acc + f
    mean = acc / len(frames)
    blurry = linear_to_srgb(mean) if linear else mean
    return np.clip(blurry, 0, 1).astype(np.float32), _to_float_rgb(frames[len(frames) // 2])


def frame_sequence_pairs(
    frames_dir: str | Path,
    *,
    rng: np.random.Generator,
    count: int,
    nframes: tuple[int, int] = (7, 13),
    linear: bool | None = None,
    start: int | None = None,
    stop: int | None = None,
    crop: int | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray, dict]]:
    """Yield ``count`` (blurry, sharp, info) pairs made by ``average_frames`` from a video folder.

    Frames are the folder's images in name order; only indices in ``[start, stop)`` are used
    (each whole window lies inside), so a caller can train on the start of a sequence and hold
    out its end for validation. Each pair averages an odd number of frames (so the target is the
    exact temporal middle) drawn from ``nframes`` (inclusive); ``linear=None`` draws the
    averaging domain per pair (half in linear light). ``crop`` takes a random square crop (the
    same for all frames of a window) before averaging. Outputs float32 (H,W,3) sRGB in [0,1].
    """
    frames_dir = Path(frames_dir)
    if not frames_dir.is_dir():
        raise FileProblem(frames_dir, "no such folder")
    files = sorted(p for p in frames_dir.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    lo = 0 if start is None else start
    hi = len(files) if stop is None else min(stop, len(files))
    counts = [n for n in range(nframes[0], nframes[1] + 1) if n % 2 == 1]
    if not counts:
        raise ConfigError(f"nframes {nframes} contains no odd frame count")
    if lo < 0 or hi - lo < counts[0]:
        raise ConfigError(f"frames [{lo}, {hi}) of {frames_dir} cannot hold a window of {counts[0]} frames")
    counts = [n for n in counts if n <= hi - lo]
    for _ in range(count):
        n = int(rng.choice(counts))
        first = int(rng.integers(lo, hi - n + 1))
        lin = bool(rng.random() < 0.5) if linear is None else bool(linear)
        window = files[first : first + n]
        frames = [_to_float_rgb(read_image(p), p) for p in window]
        box = None
        if crop is not None:
            h, w = frames[0].shape[:2]
            if crop > min(h, w):
                raise ImageError(window[0], f"{h}x{w} is smaller than the crop {crop}")
            y0, x0 = int(rng.integers(0, h - crop + 1)), int(rng.integers(0, w - crop + 1))
            frames = [f[y0 : y0 + crop, x0 : x0 + crop] for f in frames]
            box = [y0, x0, crop, crop]
        blurry, sharp = average_frames(frames, linear=lin)
        info = {
            "source": "frames",
            "params": {"sequence": frames_dir.name, "first": first, "nframes": n, "linear": lin,
                       "files": [window[0].name, window[-1].name]},
            "crop": box,
        }
        yield blurry, sharp, info


def make_frame_pairs(
    frames_dir: str | Path,
    out_dir: str | Path,
    *,
    seed: int,
    count: int,
    start: int | None = None,
    stop: int | None = None,
    crop: int | None = None,
) -> list[dict]:
    """Write ``count`` GoPro-style pairs (``frame_sequence_pairs``) as ``out_dir/{blur,sharp}/NNNN.png``
    with ``pairs.jsonl``; all drawn from ``np.random.default_rng(seed)``. Never overwrites."""
    out_dir = Path(out_dir)
    jsonl = out_dir / "pairs.jsonl"
    if jsonl.exists():
        raise OutputExistsError(jsonl, "output exists already")
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    infos = []
    with jsonl.open("x", encoding="utf-8") as fh:
        pairs = frame_sequence_pairs(frames_dir, rng=rng, count=count, start=start, stop=stop, crop=crop)
        for i, (blurry, sharp, info) in enumerate(pairs):
            name = f"{i:04d}.png"
            write_image(out_dir / "blur" / name, _to_uint8(blurry))
            write_image(out_dir / "sharp" / name, _to_uint8(sharp))
            info = {"name": name, "seed": seed, **info}
            fh.write(json.dumps(info, sort_keys=True) + "\n")
            fh.flush()
            infos.append(info)
    log.info("wrote %d frame pairs to %s", len(infos), out_dir)
    return infos
