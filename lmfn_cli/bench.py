"""``lmfn bench``: the paper's evaluation, reproducible with one command.

A benchmark is a list of `Item` (a blurry image and its ground truth: one sharp image, or the
Köhler benchmark's frames along the camera trajectory), a `Protocol`, and a model. `run` deblurs
each item, scores it (and, with ``baseline``, the blurry input) and times the network alone
(decoding and scoring excluded; one untimed warm-up image first, so CUDA start-up and cuDNN
autotuning are not charged to the first image). `table` lays the result out like the paper's
Tables 1-2, optionally under the paper's own rows (`PAPER`).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import __version__
from .errors import ConfigError, LMFNError
from .evaluation import Protocol, Report, Score, score_kohler, score_pair, summarise, to_tensor
from .images import read_picture
from .inference import restore
from .model import LMFN
from .tiling import DEFAULT_OVERLAP

log = logging.getLogger(__name__)

__all__ = ["Item", "PaperRow", "PAPER", "DEFAULT_SSIM", "items_for", "run", "table"]


@dataclass(frozen=True)
class Item:
    """One benchmark image: ``truth`` holds one sharp image, or every Köhler frame in order."""

    name: str
    blurry: Path
    truth: tuple[Path, ...]


@dataclass(frozen=True)
class PaperRow:
    method: str
    psnr: float
    ssim: float
    size: str  # parameters, as the paper prints them
    time: str  # seconds per image on the authors' hardware (NVIDIA 2080Ti for LMFN)


# Tables 1 (GoPro) and 2 (Köhler) of the LMFN paper (../shared/paper/lmfn-paper.md), verbatim.
PAPER: dict[str, tuple[PaperRow, ...]] = {
    "gopro": (
        PaperRow("DeepDeblur", 29.08, 0.9135, "303.6M", "15s"),
        PaperRow("Tao et al.", 30.10, 0.9323, "33.6M", "1.6s"),
        PaperRow("Gao et al.", 30.92, 0.9421, "2.84M", "1.6s"),
        PaperRow("DMPHN", 30.21, 0.9345, "21.7M", "0.03s"),
        PaperRow("Zhang et al.", 29.19, 0.9306, "37.1M", "1.4s"),
        PaperRow("DeblurGAN", 28.70, 0.927, "37.1M", "0.85s"),
        PaperRow("DeblurGANv2", 29.55, 0.934, "15M", "0.35s"),
        PaperRow("SIS", 30.28, 0.912, "36.54M", "0.303s"),
        PaperRow("Yuan et al.", 29.81, 0.9368, "3.1M", "0.01s"),
        PaperRow("LMFN (paper)", 31.54, 0.923, "1.25M", "0.019s"),
    ),
    "kohler": (
        PaperRow("DeepDeblur", 26.48, 0.807, "303.6M", "15s"),
        PaperRow("Tao et al.", 26.57, 0.8373, "33.6M", "1.6s"),
        PaperRow("Zhang et al.", 24.21, 0.7562, "37.1M", "1.4s"),
        PaperRow("DeblurGAN", 26.10, 0.807, "37.1M", "0.85s"),
        PaperRow("DeblurGANv2", 26.97, 0.830, "15M", "0.35s"),
        PaperRow("Sun et al.", 25.22, 0.773, "54.1M", "1,200s"),
        PaperRow("Xu et al.", 27.47, 0.811, "N/A", "13.41s"),
        PaperRow("LMFN (paper)", 30.94, 0.9027, "1.25M", "0.019s"),
    ),
}

# The SSIM each benchmark's published figures use: the GoPro/HIDE evaluation scripts call MATLAB's
# ssim on RGB arrays; for plain folders, the common Python (skimage-compatible) Gaussian SSIM.
DEFAULT_SSIM = {"gopro": "matlab", "kohler": "gaussian", "pairs": "gaussian"}


def items_for(dataset: str, root: Path, *, blur_variant: str = "blur") -> tuple[list[Item], list[str]]:
    """The benchmark's items under ``root`` and warnings (unpaired files). ``dataset``: kohler,
    gopro (``root`` = GOPRO_Large or its test/ folder) or pairs (blur/+sharp/, input/+target/)."""
    from . import datasets

    if dataset == "kohler":
        found = datasets.kohler_items(root)
        return [Item(k.name, k.blurry, tuple(k.sharp)) for k in found], []
    if dataset == "gopro":
        pairs = datasets.gopro_items(root, blur_variant=blur_variant)
    elif dataset == "pairs":
        pairs = datasets.pair_items(root)
    else:
        raise ConfigError(f"unknown dataset {dataset!r}")
    warnings = [f"{p}: no ground truth with this name; not scored" for p in pairs.unpaired_blurry]
    warnings += [f"{p}: ground truth with no blurry image; ignored" for p in pairs.unpaired_sharp]
    return [Item(p.name, p.blurry, (p.sharp,)) for p in pairs], warnings


def _read(path: Path):
    return read_picture(path).pixels


class _Frames(Sequence):
    """Köhler frames (about 200 per image) read one at a time, not all held in memory."""

    def __init__(self, paths: tuple[Path, ...], device: torch.device):
        self.paths, self.device = paths, device

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i):
        pixels = _read(self.paths[i])
        if pixels.dtype == np.uint8 and pixels.ndim == 3 and pixels.shape[2] in (3, 4):
            # Exact 8-bit levels, as eval_image.m reads the frames: a float32 copy in [0,1] is off
            # by rounding once scaled back to 0..255 (a frame identical to the image scored 165 dB,
            # not inf, and that went into the mean).
            return torch.from_numpy(np.array(pixels[..., :3], order="C")).permute(2, 0, 1).to(self.device)
        return to_tensor(pixels, self.device)


def _score(protocol: Protocol, image: torch.Tensor, truths: list[torch.Tensor], name: str) -> Score:
    if protocol.name == "kohler":
        return score_kohler(image, truths, protocol, name)
    return score_pair(image, truths[0], protocol, name)


def run(model: LMFN, items: Sequence[Item], protocol: Protocol, *, tile: int | None = None,
        overlap: int = DEFAULT_OVERLAP, precision: str = "auto", baseline: bool = False,
        on_item: Callable[[Score, Score | None], None] | None = None,
        on_error: Callable[[Item, LMFNError], None] | None = None) -> tuple[list[Score], list[Score], dict]:
    """Deblur and score every item. Returns (scores, baseline scores or [], run facts: device,
    precision, tile). Scoring runs on the model's device. ``on_item(score, baseline_score)``
    after each image. An image that fails (unreadable, size mismatch) is passed to
    ``on_error(item, error)`` and left out; without ``on_error`` the error propagates."""
    device = next(model.parameters()).device
    scores: list[Score] = []
    base: list[Score] = []
    facts: dict = {"tiles": set()}
    warm = False
    for item in items:
        try:
            s, b = _one(model, item, protocol, device, tile, overlap, precision, baseline, warm, facts)
        except LMFNError as exc:
            if on_error is None:
                raise
            on_error(item, exc)
            continue
        warm = True
        scores.append(s)
        if b is not None:
            base.append(b)
        if on_item:
            on_item(s, b)
    tiles = sorted(facts.pop("tiles"))
    facts["tile"] = tiles[0] if len(tiles) == 1 else tiles
    return scores, base, facts


def _one(model, item, protocol, device, tile, overlap, precision, baseline, warm, facts) -> tuple[Score, Score | None]:
    blurry = _read(item.blurry)
    if protocol.name == "kohler":
        truths = _Frames(item.truth, device)
    else:
        truths = [to_tensor(_read(p), device) for p in item.truth]
    if not warm:  # untimed warm-up on the first image
        restore(model, blurry, tile=tile, overlap=overlap, precision=precision)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    done = restore(model, blurry, tile=tile, overlap=overlap, precision=precision)
    seconds = time.perf_counter() - start  # restore() returns host memory: the GPU is done
    facts.update(device=done.device, precision=done.precision)
    facts["tiles"].add(done.tile)
    s = _score(protocol, to_tensor(done.pixels, device), truths, item.name)
    s = dataclasses.replace(s, seconds=round(seconds, 4))
    b = _score(protocol, to_tensor(blurry, device), truths, item.name) if baseline else None
    log.debug("%s: %.3f dB, SSIM %.4f, %.3f s", item.name, s.psnr, s.ssim, seconds)
    return s, b


def report(dataset: str, protocol: Protocol, model_info: dict, facts: dict, scores: list[Score],
           base: list[Score], **extra) -> Report:
    """A `Report` of a bench run (``extra``: dataset root, blur variant, limit, overlap)."""
    return Report("bench", protocol.as_dict(), model_info,
                  {"dataset": dataset, **extra, **facts, "version": __version__},
                  scores, summarise(scores), base, summarise(base) if base else {})


def table(rep: Report, *, compare_paper: str | None = None) -> list[tuple[str, str, str, str, str, str]]:
    """Rows (method, PSNR, SSIM, model size, time per image, device) in the paper's layout:
    the paper's rows for ``compare_paper`` (gopro, kohler) first, then the blurry input if
    scored, then this run."""
    rows = []
    if compare_paper:
        rows += [(r.method, f"{r.psnr:.2f}", f"{r.ssim:.4f}", r.size, r.time, "2080Ti (paper)") for r in PAPER[compare_paper]]

    def fmt(v, spec):
        return "-" if v is None else format(v, spec)

    if rep.baseline_mean:
        m = rep.baseline_mean
        rows.append(("blurry input", fmt(m["psnr"], ".2f"), fmt(m["ssim"], ".4f"), "-", "-", "-"))
    m = rep.mean
    params = rep.model.get("parameters")
    size = f"{params / 1e6:.2f}M" if params else "-"
    secs = m.get("seconds")
    rows.append((rep.model.get("name") or "lmfn", fmt(m["psnr"], ".2f"), fmt(m["ssim"], ".4f"), size,
                 "-" if secs is None else f"{secs:.3f}s", str(rep.run.get("device", "-"))))
    return rows
