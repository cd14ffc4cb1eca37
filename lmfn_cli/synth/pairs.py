"""The blur mixture: its configuration, the measured blur data (``KernelBank``), and the
(blurry, sharp) pairs made from it; the pipeline is described in ``lmfn_cli.synth``'s docstring."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from ..config import from_dict
from ..errors import ConfigError, ImageError, OutputExistsError
from ..images import read_image, write_image
from .blur import blur_with_homographies, blur_with_kernel
from .color import _to_float_rgb, _to_uint8, linear_to_srgb, srgb_to_linear
from .degrade import Degradation, _range, apply_degradation, boost_highlights
from .kernels import _check_kernel_size, _dihedral, _random_kernel, centre_kernel
from .matfile import load_usrnet_kernels
from .motion import (
    GyroRecording,
    _camera_path_poses,
    _extent,
    _grid_points,
    _gyro_kernel,
    _gyro_rotations,
    _orient_rotvecs,
    _pose_homographies,
    _rotation_homographies,
    _to_window,
    load_gyro,
)

log = logging.getLogger(__name__)

SOURCES = ("trajectory", "usrnet", "gyro", "gyro_homography", "camera_path", "none", "small")
"""The blur sources (``small``, barely blurred, is last so that a mixture without it draws the
same sources from the same random numbers as before it existed)."""


@dataclass(frozen=True)
class SynthConfig:
    """How ``synthesize_pair`` blurs: mixture weights of the sources and their ranges.

    Weights need not sum to 1; sources whose data is missing from the ``KernelBank`` are left
    out and the rest renormalised. The defaults are a training mixture: mostly random shake,
    a quarter spatially varying, a quarter from real gyro recordings where available.

    Blur size: ``kernel_size`` (odd) caps every source's extent at ``kernel_size - 2`` px. The
    synthetic sources (trajectory, camera_path) draw their extent from U(min_extent,
    kernel_size - 2); the gyro sources keep the real recording's magnitude for a focal length
    of ``focal_rel`` times the image's longer side (0.7-2.0: 25-70 mm full-frame equivalent)
    and an exposure from ``gyro_exposure_s``, shrunk only when they exceed the cap.

    ``crop``: if set, a random ``crop`` x ``crop`` square is cut (blur computed with a margin of
    real pixels around it); ``None`` keeps the whole image.

    Teaching a network when to leave pixels alone: ``w_none`` (unblurred pairs: only noise and
    JPEG differ) and ``w_small`` (barely blurred: a random trajectory whose extent is drawn from
    ``small_extent``, 1-2 px). ``srgb_blur_prob``: the share of pairs blurred in sRGB values
    instead of linear light. Light adds up in linear light, so a camera's blur brightens
    texture once tone-mapped; but many images people bring were blurred in sRGB values (by
    software, by resizing, by datasets made that way, GoPro's among them), and a network
    taught only linear blur darkens those. ``none_target``: what an unblurred pair asks for:
    ``clean`` (the photo before noise and JPEG: such pairs teach denoising, and a network so
    taught changes the texture of clean sharp photos) or ``input`` (the degraded input itself:
    exactly the identity). The defaults (0, 0, 0, clean) are the original mixture.
    """

    w_trajectory: float = 0.40
    w_usrnet: float = 0.10
    w_gyro: float = 0.15
    w_gyro_homography: float = 0.10
    w_camera_path: float = 0.25
    w_none: float = 0.0
    w_small: float = 0.0
    small_extent: tuple[float, float] = (1.0, 2.0)
    srgb_blur_prob: float = 0.0
    none_target: Literal["clean", "input"] = "clean"
    kernel_size: int = 31
    min_extent: float = 3.0
    focal_rel: tuple[float, float] = (0.7, 2.0)
    gyro_exposure_s: tuple[float, float] = (1 / 30, 1 / 5)
    homography_samples: int = 32
    camera_max_rotation_deg: float = 1.0
    camera_max_translation_px: float = 8.0
    degradation: Degradation = field(default_factory=Degradation)
    crop: int | None = None

    def __post_init__(self) -> None:
        weights = self.source_weights()
        if any(w < 0 or not math.isfinite(w) for w in weights.values()) or sum(weights.values()) <= 0:
            raise ConfigError(f"source weights must be >= 0 and not all 0, got {weights}")
        _check_kernel_size(self.kernel_size)
        if self.kernel_size < 5:
            raise ConfigError(f"kernel_size must be >= 5, got {self.kernel_size}")
        if not 0 < self.min_extent <= self.kernel_size - 2:
            raise ConfigError(f"min_extent must be in (0, kernel_size - 2], got {self.min_extent}")
        object.__setattr__(self, "focal_rel", _range(self.focal_rel, "focal_rel", 1e-3, 1e3))
        object.__setattr__(self, "small_extent", _range(self.small_extent, "small_extent", 0.1, self.kernel_size - 2))
        if not 0 <= self.srgb_blur_prob <= 1:
            raise ConfigError(f"srgb_blur_prob must be in [0, 1], got {self.srgb_blur_prob!r}")
        if self.none_target not in ("clean", "input"):
            raise ConfigError(f"none_target must be 'clean' or 'input', got {self.none_target!r}")
        object.__setattr__(self, "gyro_exposure_s", _range(self.gyro_exposure_s, "gyro_exposure_s", 1e-4, 10))
        if self.homography_samples < 1:
            raise ConfigError(f"homography_samples must be >= 1, got {self.homography_samples}")
        if self.camera_max_rotation_deg < 0 or self.camera_max_translation_px < 0:
            raise ConfigError("camera_max_rotation_deg and camera_max_translation_px must be >= 0")
        if isinstance(self.degradation, dict):
            object.__setattr__(self, "degradation", Degradation(**self.degradation))
        if self.crop is not None and self.crop < 1:
            raise ConfigError(f"crop must be None or >= 1, got {self.crop}")

    def source_weights(self) -> dict[str, float]:
        return {name: float(getattr(self, f"w_{name}")) for name in SOURCES}

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "SynthConfig":
        return from_dict(cls, data, "synth config")


HELD_OUT_USRNET = (8, 9, 10, 11)
"""USRNet's four motion kernels: validation blur only (``KernelBank.split``)."""
HELD_OUT_GYRO = ("gyro_04",)
"""The gyro recording kept for validation blur (``KernelBank.split``)."""


@dataclass(frozen=True, eq=False)
class KernelBank:
    """Measured blur data for the mixture: USRNet kernels and gyro recordings (either may be empty).

    ``from_dir`` stores the USRNet kernels centred (``centre_kernel``), so pairs stay aligned.
    """

    usrnet: tuple[np.ndarray, ...] = ()
    gyro: tuple[GyroRecording, ...] = ()
    usrnet_ids: tuple[int, ...] = ()
    """Index of each USRNet kernel in usrnet_kernels_12.mat (empty: 0, 1, 2, ...)."""

    @classmethod
    def from_dir(cls, kernels_dir: str | Path) -> "KernelBank":
        """Load ``usrnet_kernels_12.mat`` and ``lai2016_gyro/gyro_*/`` from ``kernels_dir``.

        Missing pieces are skipped with a warning (the mixture then leaves their sources out);
        a file that is there but broken raises ``FileProblem``.
        """
        kernels_dir = Path(kernels_dir)
        usrnet: list[np.ndarray] = []
        mat = kernels_dir / "usrnet_kernels_12.mat"
        if mat.is_file():
            # the motion kernels' centroids are up to 2 px off-centre: centre them (see centre_kernel)
            usrnet = [centre_kernel(k) for k in load_usrnet_kernels(mat)]
        else:
            log.warning("%s not found; USRNet kernels left out of the blur mixture", mat)
        gyro_root = kernels_dir / "lai2016_gyro"
        folders = []
        if gyro_root.is_dir():
            folders = sorted(p for p in gyro_root.glob("gyro_*") if (p / "gyro.txt").is_file())
        if not folders:
            log.warning("no gyro recordings under %s; gyro blur left out of the mixture", gyro_root)
        bank = cls(
            usrnet=tuple(usrnet),
            gyro=tuple(load_gyro(p) for p in folders),
            usrnet_ids=tuple(range(len(usrnet))),
        )
        log.info("kernel bank: %d USRNet kernels, %d gyro recordings", len(bank.usrnet), len(bank.gyro))
        return bank

    def split(self, part: Literal["train", "val", "all"]) -> "KernelBank":
        """The training or the validation share of the measured blur (``all``: this bank).

        Validation blur must come from kernels training never sees: USRNet's motion kernels
        ``HELD_OUT_USRNET`` (8-11) and the gyro recording ``HELD_OUT_GYRO`` (gyro_04) are the
        validation share, everything else the training share. USRNet kernels keep their index
        in the .mat file (``usrnet_ids``), so a split of a split is still well defined.
        """
        if part == "all":
            return self
        if part not in ("train", "val"):
            raise ConfigError(f"part must be train, val or all, got {part!r}")
        ids = self.usrnet_ids or tuple(range(len(self.usrnet)))
        keep_val = part == "val"
        usrnet = [(i, k) for i, k in zip(ids, self.usrnet) if (i in HELD_OUT_USRNET) == keep_val]
        gyro = tuple(g for g in self.gyro if (g.name in HELD_OUT_GYRO) == keep_val)
        return KernelBank(
            usrnet=tuple(k for _, k in usrnet), gyro=gyro, usrnet_ids=tuple(i for i, _ in usrnet)
        )


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def synthesize_pair(
    sharp_srgb: np.ndarray,
    rng: np.random.Generator,
    cfg: SynthConfig = SynthConfig(),
    bank: KernelBank | None = None,
    *,
    crop_mode: Literal["random", "center"] = "random",
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Make one (blurry, sharp, info) training pair from a sharp photo (see ``lmfn_cli.synth``'s docstring).

    ``sharp_srgb``: (H,W,3) sRGB, float in [0,1] or uint8 (RGBA/gray accepted, alpha dropped).
    With ``cfg.crop`` a crop x crop square is cut, at a random place or the centre
    (``crop_mode``); the blur is computed on a margin of real pixels around it and the camera
    model (principal point, focal length) belongs to the whole photo. Returns float32
    (h,w,3) sRGB in [0,1] blurry and sharp, and ``info`` (JSON-able): ``source``, ``params``,
    ``highlights``, ``degradation``, ``crop`` ([y, x, h, w] or None). Deterministic: the same
    input and rng state give bit-identical outputs.
    """
    img = _to_float_rgb(sharp_srgb)
    full_h, full_w = img.shape[:2]
    bank = bank or KernelBank()
    weights = cfg.source_weights()
    if not bank.usrnet:
        weights["usrnet"] = 0.0
    if not bank.gyro:
        weights["gyro"] = weights["gyro_homography"] = 0.0
    total = sum(weights.values())
    if total <= 0:
        raise ConfigError(
            "no blur source is available: the configured ones need a KernelBank with their data"
        )
    source = SOURCES[int(rng.choice(len(SOURCES), p=np.array([weights[s] for s in SOURCES]) / total))]

    # crop, with a margin so the blur near the crop's border sees real pixels
    box = None
    wy0, wx0, wy1, wx1 = 0, 0, full_h, full_w
    if cfg.crop is not None:
        c = cfg.crop
        if c > min(full_h, full_w):
            raise ImageError(None, f"a {full_h}x{full_w} image is smaller than the crop {c}")
        if crop_mode == "center":
            cy, cx = (full_h - c) // 2, (full_w - c) // 2
        elif crop_mode == "random":
            cy, cx = int(rng.integers(0, full_h - c + 1)), int(rng.integers(0, full_w - c + 1))
        else:
            raise ConfigError(f"crop_mode must be 'random' or 'center', got {crop_mode!r}")
        m = cfg.kernel_size
        wy0, wx0, wy1, wx1 = max(0, cy - m), max(0, cx - m), min(full_h, cy + c + m), min(full_w, cx + c + m)
        box = [cy, cx, c, c]
    window = img[wy0:wy1, wx0:wx1]
    win_h, win_w = window.shape[:2]
    linear = srgb_to_linear(window)

    highlights = None
    hdr = linear
    if rng.random() < cfg.degradation.clip_prob:
        scale = float(rng.uniform(*cfg.degradation.clip_scale))
        hdr = boost_highlights(linear, scale, cfg.degradation.clip_threshold)
        highlights = {"scale": scale, "threshold": cfg.degradation.clip_threshold}

    size = cfg.kernel_size
    params: dict = {}
    # drawn only where asked, so the original mixture keeps its random stream
    in_srgb = cfg.srgb_blur_prob > 0 and bool(rng.random() < cfg.srgb_blur_prob)
    src = linear_to_srgb(hdr) if in_srgb else hdr  # what the blur averages: sRGB values or light
    if source == "trajectory":
        kernel, params = _random_kernel(rng, size, None, cfg.min_extent)
        blurred = blur_with_kernel(src, kernel)
    elif source == "usrnet":
        index, orientation = int(rng.integers(len(bank.usrnet))), int(rng.integers(8))
        blurred = blur_with_kernel(src, _dihedral(bank.usrnet[index], orientation))
        # the kernel's index in usrnet_kernels_12.mat, also in a split bank
        params = {"index": bank.usrnet_ids[index] if bank.usrnet_ids else index, "orientation": orientation}
    elif source == "gyro":
        rec = bank.gyro[int(rng.integers(len(bank.gyro)))]
        focal = float(rng.uniform(*cfg.focal_rel)) * max(full_h, full_w)
        exposure = float(rng.uniform(*cfg.gyro_exposure_s))
        kernel, params = _gyro_kernel(rec, rng, focal, size, exposure, True)
        blurred = blur_with_kernel(src, kernel)
    elif source in ("gyro_homography", "camera_path"):
        focal = float(rng.uniform(*cfg.focal_rel)) * max(full_h, full_w)
        cx, cy = (full_w - 1) / 2, (full_h - 1) / 2  # principal point: the photo's centre
        pts = _grid_points(wx0, wy0, win_w, win_h)
        if source == "gyro_homography":
            rec = bank.gyro[int(rng.integers(len(bank.gyro)))]
            exposure = float(rng.uniform(*cfg.gyro_exposure_s))
            rot, params = _gyro_rotations(rec, rng, exposure, cfg.homography_samples)
            orientation = int(rng.integers(8))
            rot = _orient_rotvecs(rot, orientation)

            def make(s: float) -> np.ndarray:
                return _rotation_homographies(rot * s, focal, cx, cy)

            factor = 1.0
            extent = _extent(make(1.0), pts)
            if extent > size - 2:  # a real shake too large for the cap: keep its shape, shrink it
                factor = (size - 2) / extent
            params.update(orientation=orientation)
        else:
            poses = _camera_path_poses(
                rng,
                cfg.homography_samples,
                math.radians(cfg.camera_max_rotation_deg),
                cfg.camera_max_translation_px,
            )
            half_diag = math.hypot(full_w, full_h) / 2

            def make(s: float) -> np.ndarray:
                return _pose_homographies(poses * s, focal, cx, cy, half_diag)

            # the drawn path gives the shape; its size is set to a drawn extent
            target = float(rng.uniform(cfg.min_extent, size - 2))
            extent = _extent(make(1.0), pts)
            factor = target / extent if extent > 1e-9 else 0.0
        hs = make(factor)
        params.update(focal_px=focal, scale=factor, extent_px=_extent(hs, pts))
        blurred = blur_with_homographies(src, _to_window(hs, wx0, wy0))
    elif source == "small":
        kernel, params = _random_kernel(rng, size, None, cfg.small_extent[0], cfg.small_extent[1])
        blurred = blur_with_kernel(src, kernel)
    else:
        blurred = src
    if in_srgb:
        blurred = srgb_to_linear(blurred)

    # cut the crop out of the window
    oy, ox = (box[0] - wy0, box[1] - wx0) if box else (0, 0)
    oh, ow = (box[2], box[3]) if box else (win_h, win_w)
    blurred = blurred[oy : oy + oh, ox : ox + ow]
    sharp = window[oy : oy + oh, ox : ox + ow]
    if highlights is not None:
        hdr_crop = hdr[oy : oy + oh, ox : ox + ow]
        changed = (hdr_crop != linear[oy : oy + oh, ox : ox + ow]).any(axis=-1, keepdims=True)
        # unchanged pixels keep their exact input value rather than a round trip through linear
        sharp = np.where(changed, linear_to_srgb(np.clip(hdr_crop, 0, 1)), sharp)
    sharp = np.array(sharp, dtype=np.float32, order="C")  # a copy: never the caller's own array

    degradation: dict = {}
    blurry = apply_degradation(blurred, rng, cfg.degradation, record=degradation)
    if source == "none" and cfg.none_target == "input":
        sharp = blurry.copy()  # exactly the identity: a sharp photo, noisy or JPEG'd, is left alone
    info = {
        "source": source,
        "params": params,
        "blur_domain": "srgb" if in_srgb else "linear",
        "highlights": highlights,
        "degradation": degradation,
        "crop": box,
    }
    log.debug("synthesized a %dx%d pair: %s", oh, ow, source)
    return blurry, sharp, _jsonable(info)


def make_pairs(
    sharp_paths: Sequence[str | Path],
    out_dir: str | Path,
    *,
    seed: int,
    cfg: SynthConfig = SynthConfig(),
    bank: KernelBank | None = None,
    crop: int | None = None,
    repeats: int = 1,
) -> list[dict]:
    """Write a dataset of pairs: ``out_dir/blur/NAME.png``, ``out_dir/sharp/NAME.png``, ``pairs.jsonl``.

    Image i is made with ``np.random.default_rng([seed, i])``, so each pair can be reproduced on
    its own. NAME is the input's file stem; PNGs are 8-bit, rounded. ``crop`` takes a centre
    crop (overriding ``cfg.crop``, which would take a random one). ``repeats`` > 1 makes that many
    pairs per input (NAME-0, NAME-1, ..., each from ``default_rng([seed, i, r])``), typically
    with random crops (``cfg.crop``) for training data. ``pairs.jsonl`` gets one line per pair
    as it is written (name, input, index, seed, source, params, ...).

    Nothing is overwritten: if any output exists already, ``OutputExistsError`` is raised before
    anything is written. An unreadable input raises ``ImageError`` (pairs already written stay,
    with their lines). Returns the info dicts.
    """
    if repeats < 1:
        raise ConfigError(f"repeats must be >= 1, got {repeats}")
    paths = [Path(p) for p in sharp_paths]
    out_dir = Path(out_dir)
    names: dict[str, Path] = {}
    for p in paths:
        name = p.stem + ".png"
        if name in names:
            raise ImageError(p, f"has the same name as {names[name]}; their outputs would collide")
        names[name] = p

    def outputs(name: str) -> list[tuple[str, list[int]]]:
        if repeats == 1:
            return [(name, [])]
        return [(f"{Path(name).stem}-{r}.png", [r]) for r in range(repeats)]

    jsonl = out_dir / "pairs.jsonl"
    targets = [out_dir / sub / n for name in names for n, _ in outputs(name) for sub in ("blur", "sharp")]
    for target in [jsonl] + targets:
        if target.exists():
            raise OutputExistsError(target, "output exists already")
    if crop is not None:
        cfg = dataclasses.replace(cfg, crop=crop)
    out_dir.mkdir(parents=True, exist_ok=True)
    infos = []
    with jsonl.open("x", encoding="utf-8") as fh:  # "x": never replace one made meanwhile
        for i, (name, path) in enumerate(names.items()):
            image = _to_float_rgb(read_image(path), path)
            for out_name, extra in outputs(name):
                rng = np.random.default_rng([seed, i, *extra])
                try:
                    mode = "center" if crop else "random"
                    blurry, sharp, info = synthesize_pair(image, rng, cfg, bank, crop_mode=mode)
                except ImageError as exc:
                    raise ImageError(path, exc.problem) from None
                write_image(out_dir / "blur" / out_name, _to_uint8(blurry))
                write_image(out_dir / "sharp" / out_name, _to_uint8(sharp))
                info = {"name": out_name, "input": str(path), "index": i, "seed": seed, **info}
                fh.write(json.dumps(info, sort_keys=True) + "\n")
                fh.flush()
                infos.append(info)
                log.debug("pair %s (%s)", out_name, info["source"])
    log.info("wrote %d pairs to %s", len(infos), out_dir)
    return infos
