"""Validation that tells deblurring apart from denoising, and baselines a model has to beat.

Four fixed sets, each built once into a cache folder (``build_sets``) and never overwritten:

``motion-clean``
    Uniform camera shake only: random trajectory kernels, USRNet's motion kernels 8-11 and the
    held-out gyro recording gyro_04 as a kernel (``KernelBank.split('val')``). No Gaussian
    kernels, no spatially varying blur, no JPEG, no highlight clipping; noise is only a read
    noise of sigma 1/255 in linear light (no shot noise), which the sRGB curve amplifies in the
    shadows (up to 13/255): alone it is 40.3 dB PSNR (mean, min 33.0 dB, first 16 pairs) against
    the blur's ~20 dB, so at most a few hundredths of a dB of any gain can be denoising.
``motion-noisy``
    The same photos, seed and blur as ``motion-clean`` (pair for pair: the noise is drawn after
    the blur from the same random stream), plus the training mixture's noise ranges on every
    image and JPEG q60-95 (4:2:0) on every image. Its difference from ``motion-clean`` is what a
    model gains or loses on noise and compression. That noise is mild (37.7 dB alone, min 32.8;
    weaker than motion-clean's in the darkest shadows, where shot noise vanishes).
``spatially-varying``
    Per-pixel blur from homographies: smooth random 6-D camera paths and gyro_04 with roll.
    Noise as ``motion-clean``.
``gopro-style``
    Averages of 7-13 consecutive 240 fps frames of the shared GoPro sequence, whole 1280x720
    frames, from its held-out end (``GOPRO_HELD_OUT``). Not independent of training: see
    ``GOPRO_LEAK``.

The synthetic sets use 256x256 centre crops (blur computed with real pixels around them) of
the 32 photos ``PHOTOS`` from ``shared/data/eval-sharp`` (never trained on). Trajectory kernels
and camera paths are drawn afresh from the set's seed: they are random, not a stored list, so a
change to ``lmfn_cli.synth``'s random streams changes the sets (``SET_VERSION`` then goes up).

Baselines: the blurry input itself, and an unsharp mask (``lmfn_cli.unsharp``) whose strength
``USM_SIGMA``/``USM_AMOUNT`` was tuned once on *training* photos blurred with the training
kernels (``tune_usm_on_training_data``), never on these sets. ``validation_table`` scores every
method per set (8-bit RGB PSNR and Gaussian SSIM of ``lmfn_cli.metrics``, means over images)
and gives each model's gain over the best baseline of that set. Rows the synthesizer did not
make (identity, straight lines, an unseen real scene) and the ship rule: ``lmfn_cli.yardstick``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from . import __version__, synth
from .errors import ConfigError, FileProblem, LMFNError
from .inference import restore
from .metrics import psnr, ssim
from .train_data import load_val_set
from .unsharp import (  # the baseline, re-exported: it is part of this module's table
    gaussian_blur,
    tune_unsharp_mask,
    tune_usm_on_training_data,
    tuning_pairs,
    u8_tensor,
    unsharp_mask,
    usm_u8,
)

log = logging.getLogger(__name__)

__all__ = ["SET_VERSION", "PHOTOS", "CROP", "SETS", "SET_NAMES", "GOPRO_LEAK", "USM_SIGMA", "USM_AMOUNT", "ValSet",
           "standard_sets", "build_sets", "gaussian_blur", "unsharp_mask", "tune_unsharp_mask", "tuning_pairs",
           "tune_usm_on_training_data", "Score", "Gain", "Row", "gains", "validation_table", "format_markdown",
           "build_cached", "db"]

SET_VERSION = 1  # in every set's folder name: raise it whenever a definition or the synthesizer changes

PHOTOS: tuple[str, ...] = (
    *(f"kodak24/kodim{i:02d}.png" for i in (2, 5, 8, 11, 14, 17, 20, 23)),
    *(f"mcmaster18/{i}.tif" for i in (1, 4, 7, 10, 13, 16)),
    *(f"cset14/{n}.png" for n in ("baboon", "barbara", "bridge", "flowers", "monarch", "zebra")),
    *(f"bsds500-val/{n}.jpg" for n in ("103070", "12084", "147091", "163085", "19021", "220075",
                                       "253027", "296059", "33039", "41033", "58060", "78004")),
)
"""The 32 photos of the synthetic sets, relative to ``shared/data/eval-sharp``: every third
Kodak image, every third McMaster image, the six CSet14 images at least 362 px on each side
(Lenna left out), and every eighth BSDS500-val image in name order."""

CROP = 256
MOTION_SEED = 20260511  # shared by motion-clean and motion-noisy, so both have the very same blur
SPATIAL_SEED = 20260512
GOPRO_SEED = 20260513
GOPRO_SEQUENCE = "GOPR0477_11_00"
GOPRO_HELD_OUT = (250, 299)
"""0-based frame indices [250, 299) of the sorted sequence: files 000251.jpg-000299.jpg."""
GOPRO_COUNT = 10
GOPRO_LEAK = (
    "not independent of training: the shipped weights were trained on averages of frames 0-249 "
    "(files 000001-000250) of this same 1.2 s sequence (same scene, camera and motion; a training "
    "window may end one frame before a validation window starts), so this set measures recall "
    "of a seen scene more than generalisation"
)

#: Read noise only, sigma 1/255 of white in linear light; no shot noise, clipping or JPEG.
CLEAN = synth.Degradation(noise_prob=1.0, shot_gain=(0.0, 0.0), read_sigma=(1 / 255, 1 / 255),
                          clip_prob=0.0, jpeg_prob=0.0)
#: The training defaults' noise ranges on every image, and JPEG q60-95 on every image; no clipping
#: (so the blur, drawn before the noise, stays identical to ``CLEAN``'s pair for pair).
NOISY = synth.Degradation(noise_prob=1.0, clip_prob=0.0, jpeg_prob=1.0)
_NO_SOURCES = {f"w_{s}": 0.0 for s in synth.SOURCES}
MOTION = dict(_NO_SOURCES, w_trajectory=0.5, w_usrnet=0.25, w_gyro=0.25)
SPATIAL = dict(_NO_SOURCES, w_camera_path=0.5, w_gyro_homography=0.5)

# Tuned by `python benchmarks/validation.py --tune-usm` (tune_usm_on_training_data: the 200
# BSDS500 train photos, 256x256 centre crops, synth.SynthConfig() defaults -- noise in 80%, JPEG
# in 50% -- kernels split 'train', seed unsharp.TUNE_SEED; 576 s on 2 busy cores). Every grid point,
# sigma {0.5,1,1.5,2,3} x amount {0.1..1.0}, scored below the blurry input (21.812 dB): the best,
# sigma 3 / amount 0.1, 21.809 dB; sigma 2 / amount 0.3, 21.735 dB. On the training mixture an
# unsharp mask amplifies noise and JPEG blocks more than it restores, so this baseline is close
# to the identity; it is kept as tuned rather than re-tuned on the validation sets. Diagnostic,
# `--tune-usm --tune-recipe motion-clean` (motion-clean's recipe on the same training photos and
# training kernels): best sigma 3 / amount 0.2, 22.617 dB against 22.555 dB blurry (+0.061 dB).
USM_SIGMA = 3.0
USM_AMOUNT = 0.1
USM_TUNING = "21.809 dB mean PSNR on 200 training pairs against 21.812 dB blurry (-0.003 dB)"


@dataclass(frozen=True)
class ValSet:
    """One validation set's definition; its ``to_dict`` is stored with the built pairs.

    Synthetic sets: ``photos`` (relative to ``shared/data/eval-sharp``) blurred by
    ``synth.make_pairs`` with ``synth`` and ``seed`` (pair i from ``default_rng([seed, i])``),
    centre crops of ``crop`` px, kernels from ``KernelBank.split(kernel_split)``. Frame sets:
    ``frame_count`` averages (``synth.make_frame_pairs``, 7-13 frames, half in linear light) from
    ``shared/data/frames/<frames>``, indices ``frame_range`` [start, stop), crops of
    ``frame_crop`` (None: whole frames). ``caveat``: what the figures do not show.
    """

    name: str
    description: str
    seed: int
    photos: tuple[str, ...] = ()
    synth: synth.SynthConfig | None = None
    crop: int | None = None
    kernel_split: str = "val"
    frames: str | None = None
    frame_range: tuple[int, int] | None = None
    frame_count: int = 0
    frame_crop: int | None = None
    caveat: str = ""
    version: int = SET_VERSION

    def __post_init__(self) -> None:
        if (self.synth is None) == (self.frames is None):
            raise ConfigError(f"set {self.name}: give either photos with a SynthConfig or frames")
        if (self.synth is not None and not self.photos) or (
                self.frames is not None and (self.frame_range is None or self.frame_count < 1)):
            raise ConfigError(f"set {self.name}: a synthetic set needs photos, a frame set frame_range and frame_count")
        if self.kernel_split not in ("train", "val", "all"):
            raise ConfigError(f"set {self.name}: kernel_split must be train, val or all")

    @property
    def folder_name(self) -> str:
        return f"{self.name}-v{self.version}-seed{self.seed}"

    @property
    def size(self) -> int:
        return len(self.photos) if self.synth is not None else self.frame_count

    def to_dict(self) -> dict:
        return json.loads(json.dumps(dataclasses.asdict(self)))  # tuples as lists, as stored


def standard_sets(
    *,
    photos: Sequence[str] = PHOTOS,
    crop: int = CROP,
    frames: str = GOPRO_SEQUENCE,
    frame_range: tuple[int, int] = GOPRO_HELD_OUT,
    gopro_count: int = GOPRO_COUNT,
    gopro_crop: int | None = None,
) -> dict[str, ValSet]:
    """The four sets (the defaults are the project's sets, ``SETS``); smaller ones for tests."""
    photos = tuple(photos)
    motion = synth.SynthConfig(**MOTION, degradation=CLEAN)
    return {
        "motion-clean": ValSet(
            "motion-clean", "uniform camera shake, source drawn per image with weights: random trajectory 0.5, "
            "USRNet motion kernels 8-11 0.25, gyro_04 as a kernel 0.25; read noise sigma 1/255 (linear), "
            "no JPEG, no clipping",
            MOTION_SEED, photos, motion, crop),
        "motion-noisy": ValSet(
            "motion-noisy", "motion-clean's blur, pair for pair, plus shot noise gain 1e-4..4e-3 and "
            "read noise 5e-4..5e-3 (log-uniform, linear light) and JPEG q60-95 4:2:0 on every image",
            MOTION_SEED, photos, dataclasses.replace(motion, degradation=NOISY), crop),
        "spatially-varying": ValSet(
            "spatially-varying", "per-pixel blur by homographies, drawn per image with weights: random 6-D "
            "camera path 0.5, gyro_04 with roll 0.5; read noise sigma 1/255 (linear), no JPEG, no clipping",
            SPATIAL_SEED, photos, synth.SynthConfig(**SPATIAL, degradation=CLEAN), crop),
        "gopro-style": ValSet(
            "gopro-style", f"averages of 7-13 consecutive 240 fps frames of {frames}, frames "
            f"[{frame_range[0]}, {frame_range[1]}), " + ("whole frames" if gopro_crop is None else
                                                         f"{gopro_crop} px random crops"),
            GOPRO_SEED, frames=frames, frame_range=tuple(frame_range), frame_count=gopro_count,
            frame_crop=gopro_crop, caveat=GOPRO_LEAK),
    }


SETS: dict[str, ValSet] = standard_sets()
SET_NAMES: tuple[str, ...] = tuple(SETS)


# --------------------------------------------------------------------------------------------
# Building
# --------------------------------------------------------------------------------------------


def _bank_for(vs: ValSet, kernels_dir: Path) -> synth.KernelBank:
    """The set's share of the kernels; refuses to build without the data it names (no silent mixture change)."""
    bank = synth.KernelBank.from_dir(kernels_dir).split(vs.kernel_split)
    w = vs.synth.source_weights()
    if w["usrnet"] > 0 and not bank.usrnet:
        raise FileProblem(kernels_dir, f"set {vs.name} needs USRNet kernels ({vs.kernel_split} share), none found")
    if (w["gyro"] > 0 or w["gyro_homography"] > 0) and not bank.gyro:
        raise FileProblem(kernels_dir, f"set {vs.name} needs gyro recordings ({vs.kernel_split} share), none found")
    return bank


def _build(vs: ValSet, shared: Path, tmp: Path) -> dict:
    """Write the set's pairs into ``tmp``; returns what goes into set.json besides the definition."""
    data = shared / "data"
    if vs.synth is not None:
        paths = [data / "eval-sharp" / p for p in vs.photos]
        for p in paths:
            if not p.is_file():
                raise FileProblem(p, f"photo of set {vs.name} not found")
        bank = _bank_for(vs, data / "kernels")
        infos = synth.make_pairs(paths, tmp, seed=vs.seed, cfg=vs.synth, bank=bank, crop=vs.crop)
        extra = {"kernels": {"usrnet_ids": list(bank.usrnet_ids), "gyro": [g.name for g in bank.gyro],
                             "note": "pairs.jsonl's usrnet 'index' counts within usrnet_ids"}}
    else:
        folder = data / "frames" / vs.frames
        start, stop = vs.frame_range
        infos = synth.make_frame_pairs(folder, tmp, seed=vs.seed, count=vs.frame_count, start=start,
                                       stop=stop, crop=vs.frame_crop)
        extra = {"windows": [i["params"]["files"] for i in infos]}
    extra["sources"] = dict(sorted(Counter(i["source"] for i in infos).items()))
    extra["recordings"] = sorted({i["params"]["recording"] for i in infos if "recording" in i["params"]})
    return extra


def _with_synth_defaults(definition: dict) -> dict:
    """``definition`` with its ``synth`` read back through ``SynthConfig``: a field added since the
    set was built takes its default, which draws no random numbers and makes the same pairs
    (tests/test_synth.py checks that), so it is not a new definition. Unreadable: unchanged."""
    stored = definition.get("synth")
    if not isinstance(stored, dict):
        return definition
    try:
        cfg = synth.SynthConfig(**stored)
    except (TypeError, LMFNError):
        return definition  # a field since removed, or a bad value: compared as it stands
    return {**definition, "synth": json.loads(json.dumps(dataclasses.asdict(cfg)))}


def _check_cached(vs: ValSet, folder: Path) -> None:
    meta = folder / "set.json"
    if not meta.is_file():
        raise FileProblem(folder, "exists but has no set.json: not a finished validation set; move it away")
    stored = _with_synth_defaults(json.loads(meta.read_text(encoding="utf-8")).get("definition") or {})
    wording = ("description", "caveat")  # rewording them does not change the pairs
    if {k: v for k, v in stored.items() if k not in wording} != {
            k: v for k, v in vs.to_dict().items() if k not in wording}:
        raise FileProblem(folder, f"holds a different definition of set {vs.name}; move it away or raise SET_VERSION")


def build_cached(vs: ValSet, cache: Path, make: Callable[[Path], dict]) -> Path:
    """``cache/vs.folder_name``, made by ``make(folder)`` (writes the pairs, returns set.json's other
    fields) in a temporary folder renamed when complete (an interrupted build leaves no half set),
    or reused as it is, never rewritten, if its set.json holds the same definition (``to_dict()``,
    wording aside; else ``FileProblem``). ``vs``: a ``ValSet`` or a ``yardstick.PhotoSet``."""
    folder = cache / vs.folder_name
    if folder.exists():
        _check_cached(vs, folder)
        log.info("set %s: cached in %s", vs.name, folder)
        return folder
    cache.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{vs.folder_name}.", dir=cache))
    try:
        t = time.monotonic()
        record = {"definition": vs.to_dict(), **make(tmp / "set"), "lmfn_version": __version__}
        (tmp / "set" / "set.json").write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
        try:
            os.rename(tmp / "set", folder)
        except OSError:
            if not folder.exists():
                raise
            _check_cached(vs, folder)  # another process finished it first: keep theirs
        log.info("set %s: built %d pairs in %.0f s into %s", vs.name, vs.size, time.monotonic() - t, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def build_sets(
    shared: str | Path,
    cache: str | Path,
    names: Sequence[str] = SET_NAMES,
    *,
    sets: Mapping[str, ValSet] | None = None,
) -> dict[str, Path]:
    """Make the named sets under ``cache`` where missing; returns {name: folder of pairs}.

    Each folder (``cache/<name>-v<version>-seed<seed>``) holds ``blur/``, ``sharp/`` (8-bit PNG,
    the layout ``train.find_pairs`` reads), ``pairs.jsonl`` and ``set.json`` (the definition, the
    kernels used, counts per blur source), written once and never rewritten (``build_cached``).
    ``shared`` is the shared data tree (``../shared``); ``sets`` defaults to ``SETS``.
    """
    shared, cache = Path(shared), Path(cache)
    sets = SETS if sets is None else sets
    unknown = [n for n in names if n not in sets]
    if unknown:
        raise ConfigError(f"unknown validation set(s) {', '.join(unknown)} (known: {', '.join(sets)})")
    return {name: build_cached(sets[name], cache, lambda tmp, vs=sets[name]: _build(vs, shared, tmp)) for name in names}


# --------------------------------------------------------------------------------------------
# The table
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Score:
    """One method on one set: mean PSNR (dB; ``inf`` if an image is reproduced exactly), SSIM, per-image
    PSNRs, seconds producing outputs (not scoring), ``shift``: mean of output minus input (the blurry
    image) in 8-bit levels over pixels and channels, mean over images (< 0: darker)."""

    psnr: float
    ssim: float
    per_image_psnr: tuple[float, ...]
    seconds: float = 0.0
    shift: float = 0.0


@dataclass(frozen=True)
class Gain:
    """A model against the best baseline of a set: PSNR gain (dB) over the baseline with the
    best mean PSNR (``over``), SSIM gain over the one with the best mean SSIM (``over_ssim``),
    and on how many images its PSNR beats ``over``'s (``wins`` of ``images``)."""

    over: str
    psnr: float
    over_ssim: str
    ssim: float
    wins: int
    images: int


@dataclass(frozen=True)
class Row:
    """One set: scores by method (blurry, usm, the models; unavailable ones absent), baselines, gains."""

    set: str
    images: int
    scores: dict[str, Score]
    baselines: tuple[str, ...]
    gains: dict[str, Gain]
    usm: tuple[float, float]
    models: tuple[str, ...]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def gains(scores: Mapping[str, Score], models: Sequence[str], baselines: Sequence[str]) -> dict[str, Gain]:
    """Each available model's ``Gain`` over the best of ``baselines`` other than itself (a
    shipped model is a baseline for a candidate, and is itself scored against the rest).
    Methods missing from ``scores`` are skipped; ties go to the first baseline listed. "blurry" is
    left out where its PSNR is infinite (an input equal to its target: ``yardstick``'s identity)."""
    out = {}
    for m in models:
        if m not in scores:
            continue
        cands = [b for b in baselines if b != m and b in scores and not (b == "blurry" and math.isinf(scores[b].psnr))]
        if not cands:
            continue  # nothing to compare with
        by_psnr = max(cands, key=lambda b: scores[b].psnr)
        by_ssim = max(cands, key=lambda b: scores[b].ssim)
        mine, theirs = scores[m].per_image_psnr, scores[by_psnr].per_image_psnr
        diff = 0.0 if scores[m].psnr == scores[by_psnr].psnr else scores[m].psnr - scores[by_psnr].psnr  # inf - inf: 0
        out[m] = Gain(by_psnr, diff, by_ssim,
                      scores[m].ssim - scores[by_ssim].ssim, sum(a > b for a, b in zip(mine, theirs)), len(mine))
    return out


def _scored(outputs: list[tuple[float, float, float]], seconds: float) -> Score:
    ps, ss, sh = zip(*outputs)
    return Score(sum(ps) / len(ps), sum(ss) / len(ss), ps, seconds, sum(sh) / len(sh))


@torch.inference_mode()
def validation_table(
    models: Mapping[str, torch.nn.Module | None],
    sets: Mapping[str, str | Path],
    *,
    baseline_models: Sequence[str] = (),
    usm: tuple[float, float] = (USM_SIGMA, USM_AMOUNT),
    tile: int | None = None,
    limit: int = 0,
    on_row: Callable[[Row], None] | None = None,
) -> list[Row]:
    """Score the blurry input, the unsharp mask ``usm`` (sigma, amount) and each model on each set.

    ``models``: {column name: LMFN, or None for one that is not available (left out of the
    row)}; ``baseline_models``: the names among them that count as baselines (the shipped
    weights). ``sets``: {name: folder of pairs} (``build_sets``); whole images, the first
    ``limit`` pairs if > 0. Models run as the product runs them, ``inference.restore`` on their
    device in fp32 (on a CPU: the fused graph, auto tiling unless ``tile``); its uint8 output,
    rounded from the clamped float result, is what is scored, as are the quantised USM outputs
    and the 8-bit blurry inputs. Metrics: ``metrics.psnr`` / ``metrics.ssim`` (Gaussian) on
    8-bit RGB, means over the set's images (and ``Score.shift``). ``on_row`` is called per row.
    """
    names = tuple(models)
    baselines = ("blurry", "usm", *baseline_models)
    unknown = [b for b in baseline_models if b not in models]
    if unknown:
        raise ConfigError(f"baseline model(s) {', '.join(unknown)} not among the models")
    for m in filter(None, models.values()):
        m.eval()
    rows = []
    for set_name, folder in sets.items():
        pairs = load_val_set(folder, limit=limit)
        results: dict[str, list[tuple[float, float, float]]] = {k: [] for k in ("blurry", "usm", *names)}
        seconds = dict.fromkeys(results, 0.0)
        for blur, sharp in pairs:
            target, source = u8_tensor(sharp), u8_tensor(blur).double()
            outs: dict[str, torch.Tensor] = {"blurry": u8_tensor(blur)}
            t = time.monotonic()
            outs["usm"] = usm_u8(blur, *usm)
            seconds["usm"] += time.monotonic() - t
            for name, model in models.items():
                if model is None:
                    continue
                t = time.monotonic()
                # fp32 everywhere: a table must not depend on whether this CPU has native bf16
                outs[name] = u8_tensor(restore(model, blur, tile=tile, precision="fp32").pixels)
                seconds[name] += time.monotonic() - t
            for k, out in outs.items():
                shift = (out.double() - source).mean().item()
                results[k].append((psnr(out, target).item(), ssim(out, target).item(), shift))
        scores = {k: _scored(v, seconds[k]) for k, v in results.items() if v}
        row = Row(set_name, len(pairs), scores, baselines, gains(scores, names, baselines),
                  (float(usm[0]), float(usm[1])), names)
        log.info("validation %s: %s", set_name, ", ".join(f"{k} {s.psnr:.2f} dB" for k, s in scores.items()))
        if on_row:
            on_row(row)
        rows.append(row)
    return rows


def db(x: float, sign: str = "") -> str:
    """A dB figure for tables: two decimals (``sign`` '+': signed), ``∞`` / ``+∞`` / ``-∞`` for infinities."""
    return ("-" if x < 0 else "+" if sign else "") + "∞" if math.isinf(x) else f"{x:{sign}.2f}"


def _label(method: str, row: Row) -> str:
    return f"USM (σ {row.usm[0]:g}, amount {row.usm[1]:g})" if method == "usm" else method


def format_markdown(rows: Sequence[Row]) -> str:
    """A Markdown table: per set the images, ``PSNR / SSIM`` of every method, and each model's
    gain over the set's best baseline (``+dB / +SSIM vs NAME, wins k/n``), then a legend."""
    if not rows:
        return ""
    first = rows[0]
    methods = ["blurry", "usm", *first.models]
    head = ["set", "images", *(_label(m, first) for m in methods), *(f"{m}: gain over best baseline" for m in first.models)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [row.set, str(row.images)]
        for m in methods:
            s = row.scores.get(m)
            cells.append(f"{db(s.psnr)} / {s.ssim:.4f}" if s else "–")
        for m in first.models:
            g = row.gains.get(m)
            vs = _label(g.over, row) if g else ""
            if g and g.over_ssim != g.over:
                vs += f" (SSIM vs {_label(g.over_ssim, row)})"
            cells.append(f"{db(g.psnr, '+')} dB / {g.ssim:+.4f} vs {vs}, wins {g.wins}/{g.images}" if g else "–")
        lines.append("| " + " | ".join(cells) + " |")
    base = ", ".join(_label(b, first) for b in first.baselines)
    lines += ["", f"PSNR (dB) / SSIM: 8-bit RGB, Gaussian SSIM, whole images, means over images. Baselines: {base}; "
              "a model's gain is over the best other baseline of that row (PSNR and SSIM each), wins = images "
              "where its PSNR beats that baseline's."]
    return "\n".join(lines) + "\n"
