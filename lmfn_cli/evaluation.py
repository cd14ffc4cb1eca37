"""Scoring restored images against ground truth, and the reports that record how.

Used by ``lmfn deblur --gt`` and ``lmfn bench``. A `Protocol` names every choice that moves a
published figure (which SSIM, RGB or luma, border crop, the Köhler registration), and is written
into every report, so two numbers can be checked for comparability before they are compared.

Pixels come in as the numpy arrays `lmfn_cli.images` reads and `lmfn_cli.inference` returns:
(H,W,C) uint8 or uint16, C in 1..4; alpha is dropped (scores are on colour or gray only) and
16-bit images are scaled to [0,1] before the metrics quantise to 8 bits, as saved 8-bit results
are scored everywhere in the literature.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from .errors import ConfigError, ImageError, one_line
from .files import atomic_path
from .inference import LEVEL_SCALE
from .metrics import kohler_align, kohler_psnr, psnr, ssim

log = logging.getLogger(__name__)

__all__ = ["Protocol", "Score", "Report", "score_pair", "score_kohler", "pair_by_stem", "pair_by_order",
           "to_tensor", "write_report", "summarise", "SSIM_VARIANTS", "stem_key"]

SSIM_VARIANTS = ("gaussian", "matlab")
PROTOCOLS = ("pairs", "kohler")


@dataclass(frozen=True)
class Protocol:
    """How images are scored. ``name``: ``pairs`` (one ground truth per image: GoPro, HIDE, any
    folder of pairs) or ``kohler`` (the Köhler et al. 2012 benchmark: best of the trajectory's
    frames after gain and shift correction, on luma; see `lmfn_cli.metrics.kohler_psnr`)."""

    name: str = "pairs"
    ssim: str = "gaussian"
    y_channel: bool = False
    crop_border: int = 0

    def __post_init__(self) -> None:
        if self.name not in PROTOCOLS:
            raise ConfigError(f"unknown protocol {self.name!r} (choose from {', '.join(PROTOCOLS)})")
        if self.ssim not in SSIM_VARIANTS:
            raise ConfigError(f"unknown SSIM variant {self.ssim!r} (choose from {', '.join(SSIM_VARIANTS)})")
        if self.crop_border < 0:
            raise ConfigError("crop_border must be >= 0")
        if self.name == "kohler" and (self.y_channel or self.crop_border):
            raise ConfigError("the Köhler protocol fixes its own channel (luma) and border handling")

    def describe(self) -> str:
        """One line, e.g. ``PSNR: RGB 8-bit, peak 255, mean of per-image values; SSIM: matlab``."""
        if self.name == "kohler":
            return ("Köhler et al. 2012: per image the best PSNR over the trajectory's sharp frames after a "
                    "least-squares gain and integer DFT registration, zero-filled shift with the same mask "
                    f"on the frame, luma 0.299R+0.587G+0.114B, peak 255; SSIM ({self.ssim}) on the same "
                    "registered luma pair (not part of the benchmark); means over images")
        channel = "Y (BT.601)" if self.y_channel else "RGB"
        crop = f", {self.crop_border} px border cropped" if self.crop_border else ""
        how = {"gaussian": "Wang et al. 11x11 Gaussian, per channel (scikit-image compatible)",
               "matlab": "MATLAB ssim, an RGB image as one 3-D volume" if not self.y_channel else "MATLAB ssim"}
        return f"PSNR on {channel} 8-bit, peak 255{crop}; SSIM {self.ssim}: {how[self.ssim]}; means of per-image values"

    def as_dict(self) -> dict:
        return {**asdict(self), "description": self.describe()}


def to_tensor(pixels: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """(H,W), (H,W,C) uint8/uint16/float image -> (C,H,W) float32 in [0,1] on ``device``, alpha
    dropped (C becomes 1 or 3)."""
    pixels = np.asarray(pixels)
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    if pixels.shape[2] in (2, 4):
        pixels = pixels[..., :-1]
    if pixels.dtype in LEVEL_SCALE:
        scale = LEVEL_SCALE[pixels.dtype]
    elif np.issubdtype(pixels.dtype, np.floating):
        scale = 1.0
    else:
        raise ImageError(None, f"cannot score pixels of type {pixels.dtype}")
    if not pixels.flags.writeable or not pixels.flags.c_contiguous:  # torch wants its own writable copy
        pixels = np.array(pixels, order="C")
    t = torch.from_numpy(pixels).to(device)
    return (t.permute(2, 0, 1).float() / scale).clamp(0, 1)


@dataclass(frozen=True)
class Score:
    """One image's score. Köhler scores also say which frame, shift (dy, dx) and gain won."""

    name: str
    psnr: float
    ssim: float
    seconds: float | None = None
    frame: int | None = None
    shift: tuple[int, int] | None = None
    gain: float | None = None


def _match_channels(a: torch.Tensor, b: torch.Tensor, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    if a.shape[1:] != b.shape[1:]:
        raise ImageError(name, f"size {a.shape[2]}x{a.shape[1]} differs from its ground truth's {b.shape[2]}x{b.shape[1]}")
    if a.shape[0] != b.shape[0]:  # gray against colour: compare in colour
        a, b = a.expand(3, -1, -1), b.expand(3, -1, -1)
    return a, b


def score_pair(restored: torch.Tensor, truth: torch.Tensor, protocol: Protocol, name: str = "") -> Score:
    """PSNR/SSIM of ``restored`` against ``truth``, both (C,H,W) in [0,1] on one device."""
    a, b = _match_channels(restored, truth, name)
    kw = {"y_channel": protocol.y_channel and a.shape[0] == 3, "crop_border": protocol.crop_border}
    if protocol.crop_border * 2 >= min(a.shape[1:]):
        raise ImageError(name, f"border crop {protocol.crop_border} leaves nothing of a {a.shape[2]}x{a.shape[1]} image")
    side = min(a.shape[1:]) - 2 * protocol.crop_border
    if protocol.ssim == "gaussian" and side < 11:
        raise ImageError(name, f"too small to score: SSIM's 11x11 window needs at least 11x11 pixels, "
                               f"got {a.shape[2]}x{a.shape[1]}")
    return Score(name, float(psnr(a, b, **kw)[0]), float(ssim(a, b, variant=protocol.ssim, **kw)[0]))


def score_kohler(restored: torch.Tensor, frames: Sequence[torch.Tensor], protocol: Protocol, name: str = "") -> Score:
    """The Köhler benchmark score of ``restored`` (3,H,W) against the trajectory's ``frames``."""
    if restored.shape[0] != 3:
        raise ImageError(name, "the Köhler benchmark scores colour images")
    try:
        s = kohler_psnr(restored, frames)
    except ValueError as exc:  # a frame of another size
        raise ImageError(name, str(exc)) from None
    aligned, reference = kohler_align(restored, frames[s.frame], s.shift, s.gain)  # (1,H,W) luma in [0,1]
    value = float(ssim(aligned, reference, variant=protocol.ssim)[0])
    return Score(name, s.psnr, value, frame=s.frame, shift=tuple(s.shift), gain=s.gain)


# --- pairing outputs with ground truth --------------------------------------------------------


def stem_key(path: Path) -> str:
    """``Photo_01.PNG`` -> ``photo_01``: stems match case- and extension-insensitively."""
    return path.stem.lower()


def pair_by_stem(inputs: Sequence[Path], truths: Sequence[Path]) -> tuple[dict[Path, Path], list[Path], list[Path]]:
    """{input: ground truth} by stem, inputs without one, ground-truth files nobody used.
    Two ground-truth files with one stem (``a.png``, ``a.jpg``) are an error: which is meant?"""
    index: dict[str, Path] = {}
    for t in truths:
        key = stem_key(t)
        if key in index:
            raise ConfigError(f"ground truth {index[key]} and {t} have the same name; pairing by stem is ambiguous "
                              "(remove one, or use --pair-by order)")
        index[key] = t
    pairs = {i: index[stem_key(i)] for i in inputs if stem_key(i) in index}
    used = set(pairs.values())
    return pairs, [i for i in inputs if i not in pairs], [t for t in truths if t not in used]


def _natural(path: Path) -> list:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", str(path))]


def pair_by_order(inputs: Sequence[Path], truths: Sequence[Path]) -> tuple[dict[Path, Path], list[Path], list[Path]]:
    """The i-th input (in natural order: 2 before 10) with the i-th ground truth."""
    a, b = sorted(inputs, key=_natural), sorted(truths, key=_natural)
    n = min(len(a), len(b))
    return dict(zip(a[:n], b[:n])), a[n:], b[n:]


# --- reports ---------------------------------------------------------------------------------


def _mean(values: list[float]) -> float | None:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    # An identical pair has infinite PSNR; a mean with it would be inf and hide everything else.
    return sum(finite) / len(finite) if finite else None


def summarise(scores: Sequence[Score]) -> dict:
    """Means over images: ``{"images": n, "psnr": dB, "ssim": x, "seconds": s or None,
    "infinite_psnr": k}`` (identical pairs, PSNR inf, are left out of the PSNR mean and counted)."""
    times = [s.seconds for s in scores if s.seconds is not None]
    return {
        "images": len(scores),
        "psnr": _mean([s.psnr for s in scores]),
        "ssim": _mean([s.ssim for s in scores]),
        "seconds": sum(times) / len(times) if times else None,
        "infinite_psnr": sum(1 for s in scores if math.isinf(s.psnr)),
    }


@dataclass
class Report:
    """Everything needed to judge a set of figures: what was scored, how, and by which model."""

    command: str
    protocol: dict
    model: dict  # name, file, sha256, parameters
    run: dict  # device, precision, tile, overlap, version, (dataset, blur_variant, ...)
    images: list[Score]
    mean: dict = field(default_factory=dict)
    baseline: list[Score] = field(default_factory=list)
    baseline_mean: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        def row(s: Score) -> dict:
            d = asdict(s)
            return {k: (None if isinstance(v, float) and math.isinf(v) else v) for k, v in d.items()} | (
                {"psnr_infinite": True} if math.isinf(s.psnr) else {})

        out = {"command": self.command, "protocol": self.protocol, "model": self.model, "run": self.run,
               "mean": self.mean, "images": [row(s) for s in self.images]}
        if self.baseline:
            out["baseline_mean"] = self.baseline_mean
            out["baseline"] = [row(s) for s in self.baseline]
        return out


CSV_COLUMNS = ("name", "psnr", "ssim", "seconds", "frame", "shift_y", "shift_x", "gain", "input_psnr", "input_ssim")


def _csv(report: Report) -> str:
    """Per-image rows, then a ``MEAN`` row; the protocol and model as ``# key: value`` lines on top
    (``pandas.read_csv(f, comment="#")`` reads it)."""
    buf = io.StringIO()
    for key, value in (("command", report.command), ("protocol", report.protocol["description"]),
                       *((f"model.{k}", v) for k, v in report.model.items()), *((f"run.{k}", v) for k, v in report.run.items())):
        buf.write(f"# {key}: {one_line(value)}\n")
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    base = {s.name: s for s in report.baseline}

    def fmt(v):
        if isinstance(v, str):
            # a name that starts like a formula would run as one in a spreadsheet: quote it
            return "'" + v if v[:1] in ("=", "+", "-", "@", "\t", "\r") else v
        return "" if v is None else (f"{v:.6f}" if isinstance(v, float) else v)

    for s in report.images:
        b = base.get(s.name)
        dy, dx = s.shift if s.shift else (None, None)
        w.writerow([fmt(v) for v in (s.name, s.psnr, s.ssim, s.seconds, s.frame, dy, dx, s.gain,
                                      b.psnr if b else None, b.ssim if b else None)])
    m, bm = report.mean, report.baseline_mean
    w.writerow([fmt(v) for v in ("MEAN", m.get("psnr"), m.get("ssim"), m.get("seconds"), None, None, None, None,
                                  bm.get("psnr"), bm.get("ssim"))])
    return buf.getvalue()


def write_report(path: Path, report: Report, *, overwrite: bool = True) -> None:
    """Write ``report`` as JSON (``.json``) or CSV (``.csv``), atomically."""
    suffix = path.suffix.lower()
    if suffix == ".json":
        text = json.dumps(report.as_dict(), indent=2, allow_nan=False) + "\n"
    elif suffix == ".csv":
        text = _csv(report)
    else:
        raise ConfigError(f"{path}: a report must end in .json or .csv")
    with atomic_path(path, overwrite=overwrite) as tmp:
        # errors: a file name that is not UTF-8 keeps its bytes (its CSV cell names the file exactly)
        Path(tmp).write_text(text, encoding="utf-8", errors="surrogateescape")
