"""A yardstick that ``lmfn_cli.synth`` did not make: identity, straight lines, an unseen real scene; the ship rule.

The four sets of ``lmfn_cli.validation`` come from the synthesizer that made the training data,
so a bias of that synthesizer (a brightness shift, a kind of blur it never makes) is invisible
to them. These rows are made without it:

``identity``
    The 32 validation photos (``validation.PHOTOS``, the same ``validation.CROP`` px centre
    crops), unblurred and without noise: the input *is* the target. A method's PSNR is that of
    its output against its own input (the blurry input scores ``inf``); ``Score.shift`` is its
    mean level shift, output minus input in 8-bit levels (< 0: it darkens). A deblurrer should
    leave a sharp photo alone.
``lines-srgb-L``, ``lines-linear-L`` for L in ``LENGTHS`` (3, 5, 9, 15, 21 px)
    The same crops blurred by a straight line of L px (``line_kernel``, written here in a few
    lines of numpy, not ``synth``'s kernels) at one angle per photo, uniform in [0, 180) degrees
    from ``default_rng([seed, i])``, the same angle for every length and both modes so that the
    columns compare. ``srgb``: the [0,1] sRGB values are convolved directly; ``linear``: sRGB ->
    linear light (IEC 61966-2-1), convolve, -> sRGB. The blur is computed on a window of the
    photo's real pixels around the crop (no border artefacts), then Gaussian noise of sigma
    1/255 in sRGB values (the same noise field per photo, drawn after the angle) is added, and
    the result clipped to [0,1] and rounded to 8 bits.
``gopro-unseen``
    All 83 real blurry/sharp pairs of GoPro sequence GOPR0372_07_00 (frames 47-129, 1280x720
    JPEG q95, whole frames) in ``shared/data/pairs/gopro_GOPR0372_07_00``, read in place: real
    blur of a scene that training never sees. It must never be trained on, nor used alone to
    pick a checkpoint (83 frames of one scene: choosing by it fits that scene).

``identity`` and the lines sets are built like ``validation``'s sets (``build_yardstick``, one
folder of ``blur/``, ``sharp/`` 8-bit PNG pairs with a ``set.json`` per set, e.g.
``lines-srgb-9-v1-seed20260520``, written once and never rewritten), so they can also be given to
``lmfn train --val``. They are scored by ``validation.validation_table`` like the other rows;
``format_yardstick`` prints the ordinary rows, the identity row (with the shift) and one lines
table with a column per length. ``ship_rule`` is the condition a candidate must meet to replace
the shipped weights.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import validation as val
from .errors import ConfigError, FileProblem
from .images import read_image, write_image
from .train_data import find_pairs

log = logging.getLogger(__name__)

__all__ = ["YARDSTICK_VERSION", "LINES_SEED", "LENGTHS", "MODES", "NOISE_SIGMA", "GOPRO_UNSEEN", "GOPRO_UNSEEN_SET",
           "GROUPS", "GROUP_NAMES", "DEFAULT_ROWS", "PhotoSet", "RealSet", "srgb_to_linear", "linear_to_srgb",
           "line_kernel", "blur_crop", "make_pair", "yardstick_sets", "YARDSTICK_SETS", "DEFINITIONS", "expand",
           "build_yardstick", "format_identity", "format_lines", "format_yardstick", "ship_rule",
           "SHIP_IDENTITY_PSNR", "SHIP_IDENTITY_SHIFT", "jsonable"]

YARDSTICK_VERSION = 1  # in every folder name: raise it whenever a definition, line_kernel or the curve changes
LINES_SEED = 20260520
LENGTHS: tuple[int, ...] = (3, 5, 9, 15, 21)
MODES: tuple[str, ...] = ("srgb", "linear")
NOISE_SIGMA = 1 / 255
SAMPLES_PER_PX = 32  # points per pixel of line length splatted by line_kernel

GOPRO_UNSEEN = "gopro_GOPR0372_07_00"
GOPRO_UNSEEN_PAIRS = 83
GOPRO_UNSEEN_CAVEAT = (
    "real blur of a scene training never sees (GoPro GOPR0372_07_00, frames 47-129, whole 1280x720 "
    "frames): never train on it, and never pick a checkpoint by it alone (one scene, 83 neighbouring frames)"
)

SHIP_IDENTITY_PSNR = 45.0  # dB, mean over the identity images (each capped at PSNR_CAP)
SHIP_IDENTITY_SHIFT = 0.3  # 8-bit levels, |mean shift| on identity
PSNR_CAP = 100.0  # one level off in one channel of one pixel of a 256x256 image is 100.9 dB


# --------------------------------------------------------------------------------------------
# Definitions
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PhotoSet:
    """A yardstick set made from sharp photos without ``lmfn_cli.synth``; ``to_dict`` is stored with it.

    ``photos`` (relative to ``shared/data/eval-sharp``), centre crops of ``crop`` px. ``blur``:
    ``"none"`` (identity: the input is the target, no noise), ``"srgb"`` or ``"linear"``: a
    ``line_kernel`` of ``length`` px convolved in sRGB values or in linear light, at the angle
    of photo i drawn from ``default_rng([seed, i])``, then Gaussian noise of sigma ``noise``
    (in [0,1] sRGB values).
    """

    name: str
    description: str
    seed: int
    photos: tuple[str, ...]
    crop: int
    blur: str = "none"
    length: float = 0.0
    noise: float = 0.0
    samples_per_px: int = SAMPLES_PER_PX
    caveat: str = ""
    version: int = YARDSTICK_VERSION

    def __post_init__(self) -> None:
        if self.blur not in ("none", *MODES):
            raise ConfigError(f"set {self.name}: blur must be none, srgb or linear, got {self.blur!r}")
        if not self.photos or self.crop < 1:
            raise ConfigError(f"set {self.name}: needs photos and a crop >= 1")
        if (self.blur == "none") != (self.length == 0) or self.length < 0 or self.noise < 0:
            raise ConfigError(f"set {self.name}: a blurred set needs a length > 0, identity none")
        if self.blur == "none" and self.noise:
            raise ConfigError(f"set {self.name}: identity has no noise (its input is its target)")

    @property
    def folder_name(self) -> str:
        return f"{self.name}-v{self.version}-seed{self.seed}"

    @property
    def size(self) -> int:
        return len(self.photos)

    def to_dict(self) -> dict:
        return json.loads(json.dumps(dataclasses.asdict(self)))  # tuples as lists, as stored


@dataclass(frozen=True)
class RealSet:
    """Real pairs read in place from ``shared/data/pairs/<pairs_folder>`` (``blur/``, ``sharp/``), ``pairs`` of them."""

    name: str
    description: str
    pairs_folder: str
    pairs: int
    caveat: str = ""

    @property
    def size(self) -> int:
        return self.pairs

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def yardstick_sets(
    *,
    photos: Sequence[str] = val.PHOTOS,
    crop: int = val.CROP,
    lengths: Sequence[float] = LENGTHS,
    seed: int = LINES_SEED,
) -> dict[str, PhotoSet]:
    """``identity`` and ``lines-<mode>-<length>`` for each mode and length (the defaults are the
    project's sets, ``YARDSTICK_SETS``); smaller ones for tests."""
    photos = tuple(photos)
    out = {"identity": PhotoSet(
        "identity", f"the {len(photos)} validation photos' {crop} px centre crops unblurred, no noise: the input "
        "is the target (PSNR of the output against its input, mean level shift)", seed, photos, crop)}
    how = {"srgb": "convolved in sRGB values", "linear": "convolved in linear light (IEC 61966-2-1 curve)"}
    for mode in MODES:
        for length in lengths:
            name = f"lines-{mode}-{length:g}"
            out[name] = PhotoSet(
                name, f"straight motion blur of {length:g} px (yardstick.line_kernel) at one angle per photo, "
                f"uniform in [0, 180) degrees, the same for every length and mode, {how[mode]}, real pixels around "
                f"the {crop} px centre crop; Gaussian noise sigma 1/255 in sRGB values (the same per photo), "
                "clipped, rounded to 8 bits", seed, photos, crop, mode, float(length), NOISE_SIGMA)
    return out


YARDSTICK_SETS: dict[str, PhotoSet] = yardstick_sets()
GOPRO_UNSEEN_SET = RealSet(
    "gopro-unseen", f"all {GOPRO_UNSEEN_PAIRS} real blurry/sharp pairs of GoPro GOPR0372_07_00 (frames 47-129), "
    "whole 1280x720 JPEG q95 frames, read in place", GOPRO_UNSEEN, GOPRO_UNSEEN_PAIRS, GOPRO_UNSEEN_CAVEAT)
GROUPS: dict[str, tuple[str, ...]] = {
    "identity": ("identity",),
    **{f"lines-{mode}": tuple(f"lines-{mode}-{n:g}" for n in LENGTHS) for mode in MODES},
    "gopro-unseen": ("gopro-unseen",),
}
"""What each ``benchmarks/validation.py --sets`` choice of this module expands to (set names)."""
GROUP_NAMES: tuple[str, ...] = tuple(GROUPS)
DEFINITIONS: dict[str, val.ValSet | PhotoSet | RealSet] = {
    **val.SETS, **YARDSTICK_SETS, "gopro-unseen": GOPRO_UNSEEN_SET}
"""Every row's definition by set name: ``validation.SETS``, ``YARDSTICK_SETS``, gopro-unseen."""
DEFAULT_ROWS: tuple[str, ...] = (*val.SET_NAMES, *(n for g in GROUP_NAMES for n in GROUPS[g]))
"""Every row of the full table, in order: the rows ``ship_rule`` requires."""


_LINES = re.compile(r"^(lines-[a-z]+)-(\d+(?:\.\d+)?)$")


def expand(names: Sequence[str], known: Iterable[str] | None = None) -> list[str]:
    """Set names for ``names`` (set names, or groups: ``lines-srgb`` is every ``lines-srgb-<length>``
    of ``known``, default ``DEFINITIONS``, as ``GROUPS`` lists them), in order, once each."""
    known = list(DEFINITIONS if known is None else known)
    out: list[str] = []
    for n in names:
        members = [n] if n in known else [k for k in known if (m := _LINES.match(k)) and m.group(1) == n] or [n]
        out += [k for k in members if k not in out]
    return out


# --------------------------------------------------------------------------------------------
# The blur, written here (not lmfn_cli.synth's) so that a bias of the synthesizer cannot hide in it
# --------------------------------------------------------------------------------------------


def srgb_to_linear(x: np.ndarray) -> np.ndarray:
    """IEC 61966-2-1 sRGB decoding: values in [0,1] -> linear light in [0,1], float64, same shape."""
    x = np.asarray(x, dtype=np.float64)
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(x: np.ndarray) -> np.ndarray:
    """IEC 61966-2-1 sRGB encoding: linear light in [0,1] -> sRGB values in [0,1], float64 (clipped to [0,1] first)."""
    x = np.clip(np.asarray(x, dtype=np.float64), 0.0, 1.0)
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * x ** (1 / 2.4) - 0.055)


def line_kernel(length: float, angle: float, *, samples_per_px: int = SAMPLES_PER_PX) -> np.ndarray:
    """A straight motion-blur kernel: a segment of ``length`` px through the kernel's centre.

    ``angle``: degrees counter-clockwise from the x axis as an image is displayed (rows grow
    downwards; 0 horizontal, 90 vertical). ``ceil(length * samples_per_px)`` points evenly
    spaced along the segment (symmetric about the centre) are splatted bilinearly, which
    anti-aliases it. Returns (K,K) float64, K = 2 (ceil(length/2) + 1) + 1, non-negative,
    summing to 1, point-symmetric about the centre pixel (K//2, K//2).
    """
    if not length > 0 or not math.isfinite(length):
        raise ConfigError(f"a line kernel needs a length > 0 px, got {length!r}")
    r = math.ceil(length / 2) + 1
    k = np.zeros((2 * r + 1, 2 * r + 1))
    n = max(2, math.ceil(length * samples_per_px))
    t = ((np.arange(n) + 0.5) / n - 0.5) * length
    x, y = r + t * math.cos(math.radians(angle)), r - t * math.sin(math.radians(angle))
    x0, y0 = np.floor(x), np.floor(y)
    fx, fy = x - x0, y - y0
    for dy, dx, w in ((0, 0, (1 - fx) * (1 - fy)), (0, 1, fx * (1 - fy)), (1, 0, (1 - fx) * fy), (1, 1, fx * fy)):
        np.add.at(k, (y0.astype(int) + dy, x0.astype(int) + dx), w)
    return k / k.sum()


def _centre_box(shape: tuple[int, ...], crop: int) -> tuple[int, int]:
    """Top-left corner of the centre crop, as ``synth.synthesize_pair`` and ``validation``'s sets place it."""
    return (shape[0] - crop) // 2, (shape[1] - crop) // 2


_CONV_BUDGET = 1 << 30
"""Bytes `blur_crop`'s convolution may unfold at once: 3 x K^2 x rows x crop float64 values (kernels
up to 25 px on a 256 px crop, the yardstick's, run in a single call; on a 640 px crop up to 9 px)."""


def blur_crop(photo: np.ndarray, crop: int, kernel: np.ndarray, mode: str) -> np.ndarray:
    """The centre ``crop`` x ``crop`` of ``photo`` blurred by ``kernel`` (a true convolution).

    ``photo``: (H,W,3) uint8 sRGB; ``kernel``: (K,K), K odd, summing to 1; ``mode``: ``"srgb"``
    (convolve the [0,1] sRGB values) or ``"linear"`` (sRGB -> linear light, convolve -> sRGB).
    The convolution reads the photo's real pixels within K//2 of the crop, so the photo must
    extend that far around it (``ConfigError`` otherwise). Returns (crop,crop,3) float64 sRGB in [0,1].
    """
    if mode not in MODES:
        raise ConfigError(f"mode must be srgb or linear, got {mode!r}")
    kh, kw = kernel.shape
    if kh != kw or kh % 2 == 0:
        raise ConfigError(f"the kernel must be square with odd sides, got {kernel.shape}")
    r = kh // 2
    cy, cx = _centre_box(photo.shape, crop)
    if cy < r or cx < r:
        raise ConfigError(f"a {photo.shape[0]}x{photo.shape[1]} photo has no {r} px margin around a {crop} px "
                          "centre crop")
    window = photo[cy - r:cy + crop + r, cx - r:cx + crop + r].astype(np.float64) / 255
    src = srgb_to_linear(window) if mode == "linear" else window
    x = torch.from_numpy(np.ascontiguousarray(src.transpose(2, 0, 1)))[:, None]  # (3,1,h,w)
    w = torch.from_numpy(np.ascontiguousarray(kernel[::-1, ::-1], dtype=np.float64))[None, None]  # flipped: convolution
    # float64 conv2d unfolds K^2 values per output pixel (a 59 px kernel on a 640 px crop: 34 GB),
    # so large ones run in bands of output rows that fit the budget; small ones in one call, as before
    rows = max(1, min(crop, _CONV_BUDGET // (8 * 3 * kh * kh * crop)))
    out = torch.cat([F.conv2d(x[:, :, top:top + rows + 2 * r], w) for top in range(0, crop, rows)], dim=2)
    out = out[:, 0].numpy().transpose(1, 2, 0)
    return linear_to_srgb(out) if mode == "linear" else np.clip(out, 0.0, 1.0)


def _angle_and_noise(seed: int, index: int, crop: int) -> tuple[float, np.ndarray]:
    """Photo ``index``'s line angle (degrees in [0,180)) and its (crop,crop,3) standard normal noise field."""
    rng = np.random.default_rng([seed, index])
    return float(rng.uniform(0.0, 180.0)), rng.standard_normal((crop, crop, 3))


def _photo_u8(path: Path) -> np.ndarray:
    """(H,W,3) uint8 RGB of a photo (16-bit scaled down, gray repeated, alpha dropped)."""
    img = np.asarray(read_image(path))
    if img.dtype != np.uint8:
        img = np.rint(img / 257.0).astype(np.uint8)
    if img.ndim == 2:
        img = img[..., None]
    if img.shape[2] in (1, 2):
        img = np.repeat(img[..., :1], 3, axis=2)
    return np.ascontiguousarray(img[..., :3])


def make_pair(photo: np.ndarray, index: int, ps: PhotoSet) -> tuple[np.ndarray, np.ndarray, dict]:
    """Photo ``index`` of set ``ps``: (blurry, sharp) (crop,crop,3) uint8 and its info (angle, kernel size)."""
    cy, cx = _centre_box(photo.shape, ps.crop)
    if cy < 0 or cx < 0:
        raise ConfigError(f"a {photo.shape[0]}x{photo.shape[1]} photo is smaller than the crop {ps.crop}")
    sharp = photo[cy:cy + ps.crop, cx:cx + ps.crop].copy()
    if ps.blur == "none":
        return sharp, sharp.copy(), {}
    angle, noise = _angle_and_noise(ps.seed, index, ps.crop)
    kernel = line_kernel(ps.length, angle, samples_per_px=ps.samples_per_px)
    blurry = blur_crop(photo, ps.crop, kernel, ps.blur) + ps.noise * noise
    info = {"angle": angle, "kernel_size": len(kernel)}
    return np.rint(np.clip(blurry, 0.0, 1.0) * 255).astype(np.uint8), sharp, info


def _build_photo_set(ps: PhotoSet, shared: Path, out: Path) -> dict:
    """Write ``ps``'s pairs (``blur/NAME.png``, ``sharp/NAME.png``, ``pairs.jsonl``) into ``out``; set.json's extras."""
    paths = [shared / "data" / "eval-sharp" / p for p in ps.photos]
    stems = [p.stem for p in paths]
    if len(set(stems)) != len(stems):
        raise ConfigError(f"set {ps.name}: two photos share a file name; their pairs would collide")
    lines, angles = [], {}
    for i, path in enumerate(paths):
        if not path.is_file():
            raise FileProblem(path, f"photo of set {ps.name} not found")
        try:
            blurry, sharp, info = make_pair(_photo_u8(path), i, ps)
        except ConfigError as exc:
            raise FileProblem(path, str(exc)) from None
        name = path.stem + ".png"
        write_image(out / "blur" / name, blurry)
        write_image(out / "sharp" / name, sharp)
        lines.append(json.dumps({"name": name, "input": str(path), "index": i, "seed": ps.seed, **info}))
        if "angle" in info:
            angles[name] = round(info["angle"], 4)
    (out / "pairs.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return {"pairs": len(lines), **({"angles": angles} if angles else {})}


def build_yardstick(
    shared: str | Path,
    cache: str | Path,
    names: Sequence[str] = GROUP_NAMES,
    *,
    sets: Mapping[str, PhotoSet | RealSet] | None = None,
) -> dict[str, Path]:
    """Make the named yardstick sets under ``cache`` where missing; returns {set name: folder of pairs}.

    ``names``: set names or groups (``GROUPS``: ``lines-srgb`` is its five lengths). A
    ``PhotoSet`` is built with ``validation.build_cached`` into ``cache/<name>-v<version>-seed<seed>``
    (``blur/``, ``sharp/`` 8-bit PNG, ``pairs.jsonl``, ``set.json``), written once in a temporary
    folder and never rewritten; a cached folder with another definition raises ``FileProblem``.
    A ``RealSet`` (gopro-unseen) is read in place from ``shared/data/pairs``; ``FileProblem`` if
    it does not hold its number of pairs. ``sets`` defaults to ``YARDSTICK_SETS`` and gopro-unseen.
    """
    shared, cache = Path(shared), Path(cache)
    sets = {**YARDSTICK_SETS, "gopro-unseen": GOPRO_UNSEEN_SET} if sets is None else sets
    wanted = expand(names, sets)
    unknown = [n for n in wanted if n not in sets]
    if unknown:
        raise ConfigError(f"unknown yardstick set(s) {', '.join(unknown)} (known: {', '.join(sets)})")
    out: dict[str, Path] = {}
    for name in wanted:
        s = sets[name]
        if isinstance(s, RealSet):
            folder = shared / "data" / "pairs" / s.pairs_folder
            if not folder.is_dir():
                raise FileProblem(folder, f"no such folder (the real pairs of set {name})")
            found = len(find_pairs(folder))
            if found != s.pairs:
                raise FileProblem(folder, f"holds {found} pairs, set {name} has {s.pairs}")
            out[name] = folder
        else:
            out[name] = val.build_cached(s, cache, lambda tmp, s=s: _build_photo_set(s, shared, tmp))
    return out


# --------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------


def _label(method: str, row: val.Row) -> str:
    return f"USM (σ {row.usm[0]:g}, amount {row.usm[1]:g})" if method == "usm" else method


def _short(method: str) -> str:
    return "USM" if method == "usm" else method


def format_identity(rows: Sequence[val.Row]) -> str:
    """A Markdown table of identity rows: per method ``PSNR / SSIM / shift`` (PSNR against the
    unblurred input, ``∞`` where identical; shift in 8-bit levels) and each model's PSNR gain
    over the best other baseline (the blurry input, identical to the target, left out), then a legend."""
    if not rows:
        return ""
    first = rows[0]
    methods = ["blurry", "usm", *first.models]
    head = ["set", "images", *(_label(m, first) for m in methods), *(f"{m}: gain" for m in first.models)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [row.set, str(row.images)]
        for m in methods:
            s = row.scores.get(m)
            cells.append(f"{val.db(s.psnr)} / {s.ssim:.4f} / {s.shift:+.2f}" if s else "–")
        for m in first.models:
            g = row.gains.get(m)
            cells.append(f"{val.db(g.psnr, '+')} dB vs {_short(g.over)}, wins {g.wins}/{g.images}" if g else "–")
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "identity: PSNR (dB, against the unblurred input, which is the target: ∞ = unchanged) / SSIM / "
              "mean level shift (output − input, 8-bit levels, < 0 darker). Gains are over the best of USM and the "
              "shipped weights."]
    return "\n".join(lines) + "\n"


def format_lines(rows: Sequence[val.Row]) -> str:
    """A Markdown table of the ``lines-<mode>-<length>`` rows: per mode one line per method, one
    column per length, cells ``PSNR (gain over blurry)``, then per model a line of its gain over
    the best other baseline of each length (``+dB vs NAME``), then a legend."""
    cells: dict[str, dict[str, dict[float, str]]] = {}
    lengths: list[float] = []
    first = None
    for row in rows:
        m = _LINES.match(row.set)
        if not m:
            continue
        first = first or row
        mode, length = m.group(1), float(m.group(2))
        lengths += [length] if length not in lengths else []
        by = cells.setdefault(mode, {})
        blurry = row.scores.get("blurry")
        for method in ("blurry", "usm", *row.models):
            s = row.scores.get(method)
            if s:
                gain = "" if method == "blurry" or not blurry else f" ({val.db(s.psnr - blurry.psnr, '+')})"
                by.setdefault(_label(method, row), {})[length] = f"{val.db(s.psnr)}{gain}"
        for method in row.models:
            g = row.gains.get(method)
            if g:
                cell = f"{val.db(g.psnr, '+')} vs {_short(g.over)}"
                by.setdefault(f"{method}: gain over best baseline", {})[length] = cell
    if first is None:
        return ""
    lengths.sort()
    lines = ["| set | method | " + " | ".join(f"{n:g} px" for n in lengths) + " |", "|---|---|" + "---|" * len(lengths)]
    for mode, by in cells.items():
        for method, per in by.items():
            lines.append(f"| {mode} | {method} | " + " | ".join(per.get(n, "–") for n in lengths) + " |")
    lines += ["", f"lines: straight motion blur of each length, one angle per photo, blurred in sRGB values (srgb) or "
              f"linear light (linear), noise 1/255; {first.images} images. Cells: PSNR dB (gain over the blurry "
              "input); a model's gain is over the best other baseline of that length."]
    return "\n".join(lines) + "\n"


def format_yardstick(rows: Sequence[val.Row]) -> str:
    """The whole table: the ordinary rows (``validation.format_markdown``: the four sets and
    gopro-unseen), then the identity table, then the lines table; empty parts left out."""
    plain = [r for r in rows if r.set != "identity" and not _LINES.match(r.set)]
    parts = [val.format_markdown(plain), format_identity([r for r in rows if r.set == "identity"]),
             format_lines(rows)]
    return "\n".join(p for p in parts if p)


# --------------------------------------------------------------------------------------------
# The ship rule
# --------------------------------------------------------------------------------------------


def ship_rule(
    rows: Sequence[val.Row],
    candidate: str,
    shipped: str,
    *,
    required: Sequence[str] = DEFAULT_ROWS,
) -> list[str]:
    """What keeps ``candidate`` from replacing ``shipped``: an empty list if it may ship.

    The rule: on every row of ``rows`` (each length of the lines sets is a row) the candidate's
    mean PSNR beats the shipped weights' (strictly; both ``inf`` counts as a tie it passes), every
    row named in ``required`` was measured (default: the full table, ``DEFAULT_ROWS``), and on
    ``identity`` the candidate reaches ``SHIP_IDENTITY_PSNR`` (45 dB, mean of per-image PSNRs each
    capped at 100 dB so that one untouched image cannot make it infinite) with a mean level shift
    within +-``SHIP_IDENTITY_SHIFT`` (0.3 levels). Returns one line per failed condition.
    """
    missing = [name for name in required if name not in {r.set for r in rows}]
    fails = [f"not measured: {', '.join(missing)}"] if missing else []
    for row in rows:
        c, s = row.scores.get(candidate), row.scores.get(shipped)
        if c is None or s is None:
            fails.append(f"{row.set}: {candidate if c is None else shipped} not scored")
            continue
        if not (c.psnr > s.psnr or math.isinf(c.psnr) and c.psnr == s.psnr):
            fails.append(f"{row.set}: {val.db(c.psnr)} dB does not beat {shipped}'s {val.db(s.psnr)} dB "
                         f"({val.db(c.psnr - s.psnr if c.psnr != s.psnr else 0.0, '+')} dB)")
        if row.set == "identity":
            capped = sum(min(p, PSNR_CAP) for p in c.per_image_psnr) / max(1, len(c.per_image_psnr))
            if not capped >= SHIP_IDENTITY_PSNR:
                fails.append(f"identity: {capped:.2f} dB < {SHIP_IDENTITY_PSNR:g} dB "
                             "(PSNR against the unblurred input)")
            if not abs(c.shift) <= SHIP_IDENTITY_SHIFT:
                fails.append(f"identity: mean level shift {c.shift:+.2f} outside ±{SHIP_IDENTITY_SHIFT:g} levels")
    return fails


def jsonable(obj: object) -> object:
    """``obj`` with non-finite floats as the strings ``"inf"``, ``"-inf"``, ``"nan"`` (strict JSON
    has no infinities; the identity row's blurry PSNR is one); dataclasses as dicts, tuples as lists."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        obj = dataclasses.asdict(obj)
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if isinstance(obj, Mapping):
        return {k: jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    return obj
