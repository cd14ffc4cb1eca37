"""Synthetic (blurry, sharp) training pairs from sharp photos, every sample reproducible from a seed.

All images are float32 (H,W,3) RGB in [0,1] unless a docstring says otherwise; "sRGB" means
gamma-encoded pixel values as stored in files, "linear" means linear light (the sRGB curve
inverted). Kernels are float32 (k,k) arrays with k odd, non-negative, summing to 1, centred on
the middle pixel. Point coordinates are (x, y) in pixels, pixel centres at integers.

``synthesize_pair`` runs, in this order (the physically sensible one):

    sharp sRGB -> crop (with a margin of real pixels around it, so borders are not padding)
    -> linear light
    -> sometimes: highlights scaled above 1, the radiance a camera would have clipped
    -> blur in linear light (light adds up in linear light, not in sRGB), by one source of
       trajectory   random camera-shake kernel (Boracchi & Foi 2012, DeblurGAN's generator)
       usrnet       one of USRNet's 12 kernels (Gaussian and motion), randomly rotated/flipped
       gyro         a real phone gyroscope recording (Lai et al. 2016) -> uniform kernel
       gyro_homography  the same recording -> per-pixel (spatially varying) blur incl. roll
       camera_path  a smooth random 6-D camera path -> per-pixel blur via homographies
       none         no blur
    -> Poisson-Gaussian noise in linear light (where a raw sensor's noise lives)
    -> clip to [0,1] (sensor saturation) -> sRGB -> sometimes JPEG (in memory, Pillow)

The sharp target is the same crop with the same highlight scaling and clipping, no noise and
no JPEG, so the pair differs only by what a deblurring network should undo or tolerate.

Blur paths are centred (kernels by their centroid, homographies relative to the mean camera
pose), so blurry and sharp stay aligned and a network is not taught to shift images.

Paths to data are never baked in: pass a ``KernelBank`` (``KernelBank.from_dir``) for the USRNet
kernels and gyro recordings; sources whose data is absent are left out of the mixture.
"""

from __future__ import annotations

import cmath
import dataclasses
import io
import json
import logging
import math
import struct
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .config import from_dict
from .errors import ConfigError, FileProblem, ImageError, OutputExistsError
from .images import IMAGE_EXTENSIONS, read_image, write_image

log = logging.getLogger(__name__)

__all__ = [
    "SOURCES",
    "srgb_to_linear",
    "linear_to_srgb",
    "random_trajectory",
    "trajectory_kernel",
    "random_kernel",
    "centre_kernel",
    "load_usrnet_kernels",
    "GyroRecording",
    "load_gyro",
    "gyro_kernel",
    "gyro_homographies",
    "camera_path_homographies",
    "blur_with_kernel",
    "blur_with_homographies",
    "average_frames",
    "frame_sequence_pairs",
    "Degradation",
    "add_poisson_gaussian_noise",
    "boost_highlights",
    "jpeg_roundtrip",
    "apply_degradation",
    "SynthConfig",
    "KernelBank",
    "synthesize_pair",
    "make_pairs",
    "make_frame_pairs",
]

SOURCES = ("trajectory", "usrnet", "gyro", "gyro_homography", "camera_path", "none")


# --------------------------------------------------------------------------------------------
# sRGB transfer curves
# --------------------------------------------------------------------------------------------


def _float(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    return x if x.dtype in (np.float32, np.float64) else x.astype(np.float32)


def srgb_to_linear(x: np.ndarray) -> np.ndarray:
    """sRGB-encoded values -> linear light (IEC 61966-2-1). Float32 unless given float64.

    Values above 1 follow the power law; values below 0 the linear toe (no NaNs, no clipping).
    """
    x = _float(x)
    # np.maximum keeps the unused branch of np.where away from negative bases
    curve = ((np.maximum(x, 0.04045) + 0.055) / 1.055) ** 2.4
    return np.where(x <= 0.04045, x / 12.92, curve).astype(x.dtype)


def linear_to_srgb(x: np.ndarray) -> np.ndarray:
    """Linear light -> sRGB-encoded values, the inverse of ``srgb_to_linear``."""
    x = _float(x)
    curve = 1.055 * np.maximum(x, 0.0031308) ** (1 / 2.4) - 0.055
    return np.where(x <= 0.0031308, 12.92 * x, curve).astype(x.dtype)


# --------------------------------------------------------------------------------------------
# Camera-shake trajectories and kernels
# --------------------------------------------------------------------------------------------


def random_trajectory(
    rng: np.random.Generator,
    *,
    canvas: int = 64,
    max_len: float = 60,
    steps: int = 2000,
    p_explosion: float | None = None,
) -> np.ndarray:
    """A random camera-shake path, Boracchi & Foi 2012 (``createTrajectory.m``) as in DeblurGAN.

    A particle moves at constant speed (total length ``max_len`` px over ``steps`` samples); at
    each step its velocity gets a Gaussian kick and a pull back towards the start (inertia and a
    centripetal term, strengths drawn per path), and with a small probability an "explosion": an
    abrupt jerk, mostly backwards. ``p_explosion`` is the generator's ``anxiety``/``expl``
    parameter: it scales the Gaussian kicks and makes the per-step jerk probability
    ``U(0, 0.2) * p_explosion``; ``None`` draws it from U(0.001, 0.01) as DeblurGAN's script does.
    A path wider than ``canvas`` is shrunk to fit it (only possible when ``max_len > canvas``).

    Returns (steps, 2) float64 (x, y) positions in pixels, equally spaced in time, centroid at 0.
    """
    if steps < 2 or max_len <= 0 or canvas < 2:
        raise ConfigError(f"need steps >= 2, max_len > 0, canvas >= 2; got {steps}, {max_len}, {canvas}")
    p = float(rng.uniform(0.001, 0.01)) if p_explosion is None else float(p_explosion)
    centripetal = 0.7 * rng.random()
    prob_big_shake = 0.2 * rng.random()
    gaussian_shake = 10.0 * rng.random()
    angle0 = 2 * math.pi * rng.random()
    # everything random is drawn up front, so the stream does not depend on the path taken
    jerk_draw = rng.random(steps - 1)
    jerk_angle = rng.random(steps - 1) - 0.5
    kicks = rng.standard_normal((steps - 1, 2))

    step = max_len / (steps - 1)
    v = cmath.rect(1.0, angle0) * (p if p > 0 else step)
    x = 0j
    path = [0j] * steps
    jerk_threshold = prob_big_shake * p
    for t in range(steps - 1):
        dv = p * (gaussian_shake * complex(kicks[t, 0], kicks[t, 1]) - centripetal * x) * step
        if jerk_draw[t] < jerk_threshold:
            dv += 2 * v * cmath.exp(1j * (math.pi + jerk_angle[t]))
        v += dv
        speed = abs(v)
        v = v / speed * step if speed > 0 else cmath.rect(step, angle0)
        x += v
        path[t + 1] = x
    z = np.asarray(path)
    pts = np.stack([z.real, z.imag], axis=1)
    pts -= pts.mean(axis=0)
    width = float(np.ptp(pts, axis=0).max())
    if width > canvas - 1:
        pts *= (canvas - 1) / width
    return pts


def _check_kernel_size(size: int) -> int:
    if int(size) != size or size < 1 or size % 2 == 0:
        raise ConfigError(f"kernel size must be a positive odd integer (it has a centre pixel), got {size!r}")
    return int(size)


def _dense_path(points: np.ndarray, spacing: float = 0.1) -> np.ndarray:
    """Linearly interpolate a path sampled evenly in time so no step exceeds ``spacing`` px.

    Resampling is uniform in time, not in arc length: a kernel's weight at a position is the
    time the camera spent there, so slow parts of a path must stay brighter.
    """
    if len(points) < 2:
        return points
    seg = np.hypot(*np.diff(points, axis=0).T)
    k = max(1, int(math.ceil(seg.max() / spacing)))
    if k == 1:
        return points
    t = np.linspace(0.0, len(points) - 1, (len(points) - 1) * k + 1)
    idx = np.arange(len(points))
    return np.stack([np.interp(t, idx, points[:, 0]), np.interp(t, idx, points[:, 1])], axis=1)


def _exposed(points: np.ndarray, exposure: float) -> np.ndarray:
    if not 0 < exposure <= 1:
        raise ConfigError(f"exposure must be in (0, 1], got {exposure!r}")
    n = max(2, int(round(exposure * (len(points) - 1))) + 1) if len(points) > 1 else 1
    return points[:n]


def trajectory_kernel(points: np.ndarray, size: int, *, exposure: float = 1.0) -> np.ndarray:
    """Render a camera path into a blur kernel.

    ``points``: (N,2) (x, y) positions in pixels, equally spaced in time. The first
    ``exposure`` fraction of the path is resampled densely (<= 0.1 px per step, uniform in time)
    and splatted bilinearly, so sub-pixel motion is rendered faithfully; the result is shifted
    so the kernel's centroid is exactly the centre pixel (bilinear splatting preserves the
    centroid). Returns a (size, size) float32 kernel, non-negative, summing to 1. ``size`` must be
    odd; a path that does not fit in it raises ``ConfigError``.
    """
    size = _check_kernel_size(size)
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) == 0 or not np.isfinite(pts).all():
        raise ConfigError(f"points must be a finite (N,2) array, got shape {pts.shape}")
    pts = _dense_path(_exposed(pts, exposure))
    pts = pts - pts.mean(axis=0) + (size - 1) / 2
    if pts.min() < 0 or pts.max() > size - 1:
        reach = float(np.abs(pts - (size - 1) / 2).max())
        raise ConfigError(
            f"the path reaches {reach:.1f} px from its centroid; it does not fit a {size}x{size} kernel"
        )
    return _splat(pts, np.ones(len(pts)), size)


def _splat(pts: np.ndarray, weights: np.ndarray, size: int) -> np.ndarray:
    """Bilinearly splat weighted (x, y) points (all inside [0, size-1]) into a normalised kernel."""
    x0 = np.floor(pts[:, 0]).astype(np.int64)
    y0 = np.floor(pts[:, 1]).astype(np.int64)
    fx = pts[:, 0] - x0
    fy = pts[:, 1] - y0
    x1 = np.minimum(x0 + 1, size - 1)  # only reached with weight 0 (a point on the last pixel)
    y1 = np.minimum(y0 + 1, size - 1)
    idx = np.concatenate([y0 * size + x0, y0 * size + x1, y1 * size + x0, y1 * size + x1])
    w = np.concatenate([(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy]) * np.tile(weights, 4)
    k = np.bincount(idx, weights=w, minlength=size * size).reshape(size, size)
    return (k / k.sum()).astype(np.float32)


def centre_kernel(kernel: np.ndarray) -> np.ndarray:
    """Shift a kernel so its centroid is exactly its centre pixel (bilinear, sub-pixel).

    A kernel whose centroid is off-centre blurs *and shifts* the image, which would teach a
    network to shift. The kernel grows (staying square and odd) if the shifted support needs it.
    Returns float32, >= 0, summing to 1.
    """
    k = np.asarray(kernel, dtype=np.float64)
    if k.ndim != 2 or k.shape[0] != k.shape[1] or k.shape[0] % 2 == 0 or k.sum() <= 0:
        raise ConfigError(f"kernel must be square with an odd side and a positive sum, got shape {k.shape}")
    ys, xs = np.nonzero(k > 0)
    weights = k[ys, xs]
    pts = np.stack([xs, ys], axis=1).astype(np.float64)
    pts -= (weights[:, None] * pts).sum(axis=0) / weights.sum()  # centroid to 0
    size = max(k.shape[0], 2 * int(math.ceil(np.abs(pts).max() - 1e-6)) + 1)  # round-off is no reason to grow
    return _splat(np.clip(pts + (size - 1) / 2, 0, size - 1), weights, size)


def _reach(points: np.ndarray) -> float:
    """How far (px, per axis) a path gets from its centroid: what must fit in half a kernel."""
    return float(np.abs(points - points.mean(axis=0)).max())


def _random_kernel(
    rng: np.random.Generator, size: int, max_len: float | None, min_extent: float
) -> tuple[np.ndarray, dict]:
    size = _check_kernel_size(size)
    budget = (size - 1) / 2 - 1  # reach allowed from the centroid, one pixel spare for splatting
    if budget <= 0:
        raise ConfigError(f"kernel size {size} is too small for a motion kernel (need >= 5)")
    canonical = 60.0 if max_len is None else float(max_len)
    traj = random_trajectory(rng, canvas=max(64, int(math.ceil(canonical)) + 4), max_len=canonical)
    # a partial exposure of the path (Boracchi & Foi render several); adds shape variety
    exposure = float(rng.uniform(0.5, 1.0))
    part = _exposed(traj, exposure)
    extent = max(float(np.ptp(part, axis=0).max()), 1e-6)
    if max_len is None:
        target = float(rng.uniform(min(min_extent, size - 2), size - 2))
        scale = target / extent
    else:
        scale = 1.0
    scale = min(scale, budget / max(_reach(part), 1e-6))
    part = part * scale
    info = {
        "exposure": exposure,
        "length_px": float(np.hypot(*np.diff(part, axis=0).T).sum()),
        "extent_px": float(np.ptp(part, axis=0).max()),
    }
    return trajectory_kernel(part, size), info


def random_kernel(
    rng: np.random.Generator, size: int = 31, max_len: float | None = None, *, min_extent: float = 3.0
) -> np.ndarray:
    """A random camera-shake kernel: ``random_trajectory`` rendered by ``trajectory_kernel``.

    A random part (50-100%) of the path is exposed. With ``max_len=None`` the path is scaled so
    its extent (the larger side of its bounding box) is drawn from U(min_extent, size - 2) px;
    with ``max_len`` the path has that length in pixels (its extent grows with it). Either way it
    is shrunk if needed to fit the kernel. Returns (size, size) float32, >= 0, summing to 1.
    """
    return _random_kernel(rng, size, max_len, min_extent)[0]


def _dihedral(a: np.ndarray, k: int) -> np.ndarray:
    """One of the 8 rotations/reflections of a 2-D array (k in 0..7)."""
    a = np.rot90(a, k % 4)
    return np.ascontiguousarray(a[:, ::-1] if k >= 4 else a)


# --------------------------------------------------------------------------------------------
# MATLAB v5 reader (enough for numeric arrays and cells; USRNet's kernels_12.mat)
# --------------------------------------------------------------------------------------------

_MI_TYPES = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 9: "f8", 12: "i8", 13: "u8"}
_MI_MATRIX, _MI_COMPRESSED = 14, 15
_MX_CELL = 1
_MX_NUMERIC = range(6, 16)  # double, single, int8 .. uint64


class _Unsupported:
    def __init__(self, what: str):
        self.what = what


def _mat_elements(buf: bytes, order: str) -> Iterator[tuple[int, bytes]]:
    """(type, payload) of each data element in ``buf``, in the MAT v5 tag format."""
    pos = 0
    while pos + 8 <= len(buf):
        (word,) = struct.unpack_from(order + "I", buf, pos)
        if word >> 16:  # "small data element": type and size share one word, data in the next
            yield word & 0xFFFF, buf[pos + 4 : pos + 4 + (word >> 16)]
            pos += 8
            continue
        mtype, nbytes = struct.unpack_from(order + "II", buf, pos)
        start = pos + 8
        if start + nbytes > len(buf):
            raise ValueError("truncated data element")
        yield mtype, buf[start : start + nbytes]
        # elements are padded to 8 bytes, except compressed ones
        pos = start + nbytes + (0 if mtype == _MI_COMPRESSED else -nbytes % 8)


def _mat_matrix(payload: bytes, order: str) -> tuple[str, object]:
    if not payload:  # MATLAB writes an empty array as an empty miMATRIX
        return "", np.zeros((0, 0))
    els = _mat_elements(payload, order)
    flags = np.frombuffer(next(els)[1], order + "u4")[0]
    dims = tuple(int(d) for d in np.frombuffer(next(els)[1], order + "i4"))
    name = next(els)[1].decode("latin-1")
    cls = int(flags & 0xFF)
    if cls == _MX_CELL:
        cells = [_mat_matrix(p, order)[1] for t, p in els if t == _MI_MATRIX]
        if len(cells) != math.prod(dims):
            raise ValueError(f"cell {name!r} has {len(cells)} elements for dimensions {dims}")
        out = np.empty(len(cells), dtype=object)
        for i, c in enumerate(cells):
            out[i] = c
        return name, out.reshape(dims, order="F")
    if cls in _MX_NUMERIC and not flags & 0x800:  # real numeric (0x800: complex)
        mtype, data = next(els)
        if mtype not in _MI_TYPES:
            raise ValueError(f"array {name!r} stored as unknown type {mtype}")
        values = np.frombuffer(data, order + _MI_TYPES[mtype]).astype(np.float64)
        if values.size != math.prod(dims):
            raise ValueError(f"array {name!r} has {values.size} values for dimensions {dims}")
        return name, values.reshape(dims, order="F")  # MATLAB is column-major
    return name, _Unsupported(f"MATLAB class {cls}" + (" (complex)" if flags & 0x800 else ""))


def _read_mat_v5(path: Path) -> dict[str, object]:
    data = path.read_bytes()
    if data[:10] == b"MATLAB 7.3":
        raise ValueError("MATLAB v7.3 (HDF5) files are not supported; save with -v7 or -v6")
    if len(data) < 128 or not data.startswith(b"MATLAB 5.0") or data[126:128] not in (b"IM", b"MI"):
        raise ValueError("not a MATLAB v5 MAT-file")
    order = "<" if data[126:128] == b"IM" else ">"
    out: dict[str, object] = {}
    for mtype, payload in _mat_elements(data[128:], order):
        if mtype == _MI_COMPRESSED:
            inner = list(_mat_elements(zlib.decompress(payload), order))
        else:
            inner = [(mtype, payload)]
        for itype, ipayload in inner:
            if itype == _MI_MATRIX:
                name, value = _mat_matrix(ipayload, order)
                out[name] = value
    return out


def _normalised_kernel(k: np.ndarray, where: str) -> np.ndarray:
    k = np.asarray(k, dtype=np.float64)
    if k.ndim != 2 or not np.isfinite(k).all() or k.sum() <= 0:
        raise ValueError(f"{where} is not a finite 2-D kernel with positive sum")
    k = np.maximum(k, 0)  # tiny negative round-off in stored kernels is not light
    return (k / k.sum()).astype(np.float32)


def load_usrnet_kernels(path: str | Path) -> list[np.ndarray]:
    """Read USRNet/DPIR's ``kernels_12.mat``: a MATLAB v5 file whose ``kernels`` is a 1x12 cell.

    Kernels 0-3 are isotropic Gaussians, 4-7 anisotropic Gaussians, 8-11 motion blur (25x25).
    Parsed by a small built-in MAT v5 reader (numeric arrays and cells, compressed or not), so
    scipy is not needed. Returns float32 kernels, negatives set to 0, each summing to 1.
    Raises ``FileProblem`` naming the file when it is missing or not such a file.
    """
    path = Path(path)
    try:
        variables = _read_mat_v5(path)
        cell = variables.get("kernels")
        if cell is None:
            raise ValueError(f"no variable 'kernels' (has: {', '.join(sorted(variables)) or 'none'})")
        if isinstance(cell, _Unsupported):
            raise ValueError(f"'kernels' is a {cell.what}, not a cell of numeric arrays")
        arrays = cell.ravel(order="F") if cell.dtype == object else [cell]
        kernels = []
        for i, k in enumerate(arrays):
            if isinstance(k, _Unsupported):
                raise ValueError(f"kernels{{{i + 1}}} is a {k.what}")
            kernels.append(_normalised_kernel(np.squeeze(k), f"kernels{{{i + 1}}}"))
    except FileNotFoundError:
        raise FileProblem(path, "no such file") from None
    except (OSError, ValueError, KeyError, StopIteration, struct.error, zlib.error) as exc:
        raise FileProblem(path, f"cannot read USRNet kernels ({exc})") from None
    log.debug("read %d kernels from %s", len(kernels), path)
    return kernels


# --------------------------------------------------------------------------------------------
# Real camera shake: phone gyroscope recordings (Lai et al. 2016)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class GyroRecording:
    """One hand-held phone motion recording.

    ``time_s`` (N,) increasing seconds; ``angular_velocity`` (N,3) rad/s about the phone's x, y,
    z axes; ``acceleration_g`` (N,3) user acceleration in g (gravity removed; unused here: at
    photo distances, translation of a hand-held camera blurs far less than its rotation).
    ``exposure_s`` and ``capture_time_s`` come from info.txt when present.
    """

    name: str
    time_s: np.ndarray
    angular_velocity: np.ndarray
    acceleration_g: np.ndarray
    exposure_s: float | None = None
    capture_time_s: float | None = None

    @property
    def duration_s(self) -> float:
        return float(self.time_s[-1] - self.time_s[0])


def load_gyro(path: str | Path) -> GyroRecording:
    """Read one of Lai et al. 2016's recordings: a folder with gyro.txt (and info.txt).

    Which columns are what: gyro.txt rows are 7 numbers. The last is a timestamp (s; rows
    ~0.01 s apart, increasing, and info.txt's first value equals the first row's). Columns 4-6
    are the angular velocity in rad/s and columns 1-3 the accelerometer's user acceleration in g,
    because (1) the authors' own code (cvpr16_deblur_study, synthesize_nonuniform_blur.m)
    integrates columns 4:6 once over time into the rotation angles it blurs with, and multiplies
    columns 1:3 by 9.8 (g -> m/s^2) and integrates them twice into a translation; (2) columns 1-3
    average ~0 (gravity removed, as in iOS's userAcceleration, in g) and, in gyro_01 at least,
    are 5x rougher sample to sample than columns 4-6, as double-differentiated positions are
    compared with once-differentiated angles; (3) columns 4-6 integrated over each recording's
    own exposure give 0.01-0.05 rad, a typical hand-held shake (10-50 px at a 1000 px focal
    length). info.txt holds 4 numbers: first timestamp, exposure time (0.12-0.17 s), the
    capture timestamp the authors' code places the exposure by, and a later timestamp.

    ``path`` is the folder (or its gyro.txt). Raises ``FileProblem`` naming the bad file.
    """
    path = Path(path)
    folder = path.parent if path.is_file() else path
    gyro_txt = path if path.is_file() else path / "gyro.txt"
    try:
        rows = np.loadtxt(gyro_txt, dtype=np.float64, ndmin=2)
    except FileNotFoundError:
        raise FileProblem(gyro_txt, "no such file") from None
    except (OSError, ValueError) as exc:
        raise FileProblem(gyro_txt, f"cannot read gyro data ({exc})") from None
    if rows.shape[1] != 7 or len(rows) < 2:
        raise FileProblem(
            gyro_txt, f"expected rows of 7 numbers (6 values + timestamp), got shape {rows.shape}"
        )
    if not np.isfinite(rows).all() or not (np.diff(rows[:, 6]) > 0).all():
        raise FileProblem(gyro_txt, "timestamps must increase and all values be finite")
    exposure = capture = None
    info_txt = folder / "info.txt"
    if info_txt.exists():
        try:
            info = np.loadtxt(info_txt, dtype=np.float64).ravel()
        except (OSError, ValueError) as exc:
            raise FileProblem(info_txt, f"cannot read ({exc})") from None
        if len(info) >= 3 and 0 < info[1] < 10:
            exposure, capture = float(info[1]), float(info[2])
        else:
            log.warning("%s: unexpected contents, exposure time not taken from it", info_txt)
    return GyroRecording(
        name=folder.name,
        time_s=rows[:, 6].copy(),
        angular_velocity=rows[:, 3:6].copy(),
        acceleration_g=rows[:, 0:3].copy(),
        exposure_s=exposure,
        capture_time_s=capture,
    )


def _rodrigues(rotvec: np.ndarray) -> np.ndarray:
    """(..., 3) rotation vectors -> (..., 3, 3) rotation matrices."""
    theta = np.linalg.norm(rotvec, axis=-1, keepdims=True)
    axis = rotvec / np.where(theta > 0, theta, 1.0)
    x, y, z = axis[..., 0], axis[..., 1], axis[..., 2]
    zero = np.zeros_like(x)
    kx = np.stack([zero, -z, y, z, zero, -x, -y, x, zero], axis=-1).reshape(*rotvec.shape[:-1], 3, 3)
    s = np.sin(theta)[..., None]
    c = np.cos(theta)[..., None]
    return np.eye(3) + s * kx + (1 - c) * (kx @ kx)


def _intrinsics(focal_px: float, cx: float, cy: float) -> np.ndarray:
    return np.array([[focal_px, 0.0, cx], [0.0, focal_px, cy], [0.0, 0.0, 1.0]])


def _gyro_rotations(
    rec: GyroRecording, rng: np.random.Generator, exposure_s: float | None, samples: int
) -> tuple[np.ndarray, dict]:
    """Camera rotation vectors (samples, 3) over a random exposure window, relative to their mean.

    Phone axes (x right, y up, z out of the screen; rear camera looking along -z) become camera
    axes (x right, y down, z forward) by flipping y and z, a proper rotation, so the rotation
    vector flips the same way. The photo's orientation on the phone is unknown anyway; callers
    draw one of the 8 image orientations.
    """
    t = rec.time_s
    duration = exposure_s if exposure_s is not None else (rec.exposure_s or 1 / 15)
    duration = float(min(duration, rec.duration_s))
    t0 = float(rng.uniform(t[0], t[-1] - duration))
    # angle = integral of angular velocity (trapezoid rule), then sampled inside the window
    dt = np.diff(t)[:, None]
    omega = rec.angular_velocity
    angle = np.concatenate([np.zeros((1, 3)), np.cumsum(0.5 * (omega[1:] + omega[:-1]) * dt, axis=0)])
    ts = np.linspace(t0, t0 + duration, samples)
    rot = np.stack([np.interp(ts, t, angle[:, i]) for i in range(3)], axis=1)
    rot *= np.array([1.0, -1.0, -1.0])
    rot -= rot.mean(axis=0)
    info = {"recording": rec.name, "start_s": t0 - float(t[0]), "exposure_s": duration}
    return rot, info


def _rotation_homographies(rotvecs: np.ndarray, focal_px: float, cx: float, cy: float) -> np.ndarray:
    k = _intrinsics(focal_px, cx, cy)
    return k @ _rodrigues(rotvecs) @ np.linalg.inv(k)


def _map_points(hs: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """(S,3,3) homographies applied to (P,2) points -> (S,P,2)."""
    ph = np.concatenate([pts, np.ones((len(pts), 1))], axis=1)
    q = np.einsum("sij,pj->spi", hs, ph)
    return q[..., :2] / q[..., 2:3]


def _gyro_kernel(
    rec: GyroRecording,
    rng: np.random.Generator,
    focal_px: float,
    size: int,
    exposure_s: float | None,
    random_orientation: bool,
) -> tuple[np.ndarray, dict]:
    size = _check_kernel_size(size)
    rot, info = _gyro_rotations(rec, rng, exposure_s, samples=256)
    # the path of the image centre; the roll (z) leaves the centre where it is
    centre = np.zeros((1, 2))
    path = _map_points(_rotation_homographies(rot, focal_px, 0.0, 0.0), centre)[:, 0, :]
    budget = (size - 1) / 2 - 1
    reach = _reach(path)
    scale = 1.0
    if reach > budget:  # a shake too large for the kernel: keep its shape, shrink it
        scale = budget / reach
        path = _map_points(_rotation_homographies(rot * scale, focal_px, 0.0, 0.0), centre)[:, 0, :]
        log.debug("gyro path of %s scaled by %.3f to fit a %d px kernel", rec.name, scale, size)
    kernel = trajectory_kernel(path, size)
    orientation = int(rng.integers(8)) if random_orientation else 0
    extent = float(np.ptp(path, axis=0).max())
    info.update(focal_px=float(focal_px), scale=scale, extent_px=extent, orientation=orientation)
    return _dihedral(kernel, orientation), info


def gyro_kernel(
    rec: GyroRecording,
    rng: np.random.Generator,
    *,
    focal_px: float,
    size: int,
    exposure_s: float | None = None,
    random_orientation: bool = True,
) -> np.ndarray:
    """A uniform blur kernel from a real gyro recording.

    Integrates the angular velocity over a random window of ``exposure_s`` seconds (default the
    recording's own exposure time), projects the image centre through a pinhole camera of focal
    length ``focal_px`` (a rotation theta about x or y moves it by ~f*theta; the roll about the
    optical axis does not move the centre) and renders that path with ``trajectory_kernel``.
    A path too large for ``size`` is scaled down to fit (its shape kept). ``random_orientation``
    applies one of the 8 rotations/flips, since the phone's orientation is unknown.
    Returns (size, size) float32, >= 0, summing to 1.
    """
    return _gyro_kernel(rec, rng, focal_px, size, exposure_s, random_orientation)[0]


def _orientation_matrix(k: int) -> np.ndarray:
    """The 3x3 camera-frame transform of one of the 8 image orientations (about the optical axis)."""
    c, s = [(1, 0), (0, 1), (-1, 0), (0, -1)][k % 4]
    m = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]], dtype=np.float64)
    return (np.diag([-1.0, 1.0, 1.0]) @ m) if k >= 4 else m


def _orient_rotvecs(rot: np.ndarray, k: int) -> np.ndarray:
    m = _orientation_matrix(k)
    return np.linalg.det(m) * rot @ m.T  # rotation vectors are pseudovectors: a mirror flips them


def gyro_homographies(
    rec: GyroRecording,
    rng: np.random.Generator,
    *,
    focal_px: float,
    width: int,
    height: int,
    samples: int = 32,
    exposure_s: float | None = None,
    random_orientation: bool = True,
) -> np.ndarray:
    """Spatially varying blur from a real gyro recording: (samples, 3, 3) homographies.

    ``H_i = K R_i K^-1`` for the camera rotations over a random exposure window (all three axes,
    so the roll blurs the corners more than the centre), relative to the mean rotation; K has
    focal length ``focal_px`` and its principal point at the centre of a ``width`` x ``height``
    image. Each maps sharp-image pixel coordinates to where that point is seen at time i, the
    convention of ``blur_with_homographies``.
    """
    rot, _ = _gyro_rotations(rec, rng, exposure_s, samples)
    if random_orientation:
        rot = _orient_rotvecs(rot, int(rng.integers(8)))
    return _rotation_homographies(rot, focal_px, (width - 1) / 2, (height - 1) / 2)


# --------------------------------------------------------------------------------------------
# Smooth random 6-D camera paths
# --------------------------------------------------------------------------------------------


def _camera_path_poses(
    rng: np.random.Generator, samples: int, max_rotation_rad: float, max_translation_px: float
) -> np.ndarray:
    """(samples, 6) poses: 3 rotations (rad) then 3 translations (px), relative to their mean.

    Each coordinate is a sum of 3 sinusoids with random frequency (0.2-1.5 cycles per exposure),
    phase and weight (a low frequency reads as a steady drift, higher ones as tremor), scaled to
    a random amplitude up to the maximum.
    """
    t = np.linspace(0.0, 1.0, samples)[:, None, None]
    freq = rng.uniform(0.2, 1.5, size=(1, 6, 3))
    phase = rng.uniform(0, 2 * math.pi, size=(1, 6, 3))
    weight = rng.standard_normal((1, 6, 3))
    curves = (weight * np.sin(2 * math.pi * freq * t + phase)).sum(axis=2)
    curves -= curves.mean(axis=0)
    curves /= np.maximum(np.abs(curves).max(axis=0), 1e-12)
    amplitude = rng.random(6) * np.array([max_rotation_rad] * 3 + [max_translation_px] * 3)
    return curves * amplitude


def _pose_homographies(
    poses: np.ndarray, focal_px: float, cx: float, cy: float, half_diag: float
) -> np.ndarray:
    """Homographies of a planar scene facing the camera, ``K (R + t e3^T / d) K^-1``.

    Translations are given in pixels of image motion: x and y at the centre (t/d = px/f), z at
    the corners (a scale change, t/d = px/half-diagonal).
    """
    k = _intrinsics(focal_px, cx, cy)
    rel_t = poses[:, 3:] / np.array([focal_px, focal_px, half_diag])
    m = _rodrigues(poses[:, :3])
    m[:, :, 2] += rel_t
    return k @ m @ np.linalg.inv(k)


def camera_path_homographies(
    rng: np.random.Generator,
    *,
    width: int,
    height: int,
    focal_px: float,
    samples: int = 32,
    max_rotation_deg: float,
    max_translation_px: float,
) -> np.ndarray:
    """A smooth random 6-D camera path as (samples, 3, 3) homographies, for spatially varying blur.

    Three small rotations (each up to ``max_rotation_deg``) and three translations (each up to
    ``max_translation_px`` of image motion; along the optical axis as a zoom that moves the
    corners that far) seen on a fronto-parallel plane. Poses are relative to the path's mean
    pose (its centre), so each pixel's blur is centred on the sharp image to first order.
    Principal point at the image centre. Each H maps sharp-image pixel coordinates to where the
    point is seen at time i (``blur_with_homographies``'s convention).
    """
    if samples < 1 or width < 1 or height < 1 or focal_px <= 0:
        raise ConfigError("need samples, width, height >= 1 and focal_px > 0")
    poses = _camera_path_poses(rng, samples, math.radians(max_rotation_deg), max_translation_px)
    half_diag = math.hypot(width, height) / 2
    return _pose_homographies(poses, focal_px, (width - 1) / 2, (height - 1) / 2, half_diag)


# --------------------------------------------------------------------------------------------
# Blurring
# --------------------------------------------------------------------------------------------


def _fast_len(n: int) -> int:
    """Smallest 2^a 3^b 5^c >= n: FFT sizes that pocketfft handles quickly."""
    best = 1 << max(0, (n - 1).bit_length())
    f5 = 1
    while f5 < best:
        f35 = f5
        while f35 < best:
            f = f35
            while f < n:
                f *= 2
            best = min(best, f)
            f35 *= 3
        f5 *= 5
    return best


def _as_hwc(img: np.ndarray) -> np.ndarray:
    img = np.asarray(img)
    if img.ndim not in (2, 3) or img.dtype.kind != "f":
        raise ImageError(None, f"expected a float (H,W) or (H,W,C) image, got {img.dtype} {img.shape}")
    return img[:, :, None] if img.ndim == 2 else img


def blur_with_kernel(linear_img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Convolve a (H,W,C) or (H,W) float image with a (k1,k2) kernel (odd sizes), per channel.

    True convolution, kernel centre at (k1//2, k2//2): a delta there returns the image, a delta
    dy rows below and dx columns right of it moves the content dy down and dx right. Borders are
    reflect-padded (no edge pixel repeated), so a constant image stays constant. Done by FFT on
    the padded image; the circular wrap only touches the padding, which is cut away. Returns
    float32 of the input's shape. Call it on linear light.
    """
    src = _as_hwc(linear_img)
    kernel = np.asarray(kernel, dtype=np.float32)
    if kernel.ndim != 2 or kernel.shape[0] % 2 == 0 or kernel.shape[1] % 2 == 0:
        raise ConfigError(f"kernel must be 2-D with odd sides, got shape {kernel.shape}")
    h, w, _ = src.shape
    r1, r2 = kernel.shape[0] // 2, kernel.shape[1] // 2
    padded = np.pad(src.astype(np.float32, copy=False), ((r1, r1), (r2, r2), (0, 0)), mode="reflect")
    n1, n2 = _fast_len(padded.shape[0]), _fast_len(padded.shape[1])
    kpad = np.zeros((n1, n2), dtype=np.float32)
    kpad[: kernel.shape[0], : kernel.shape[1]] = kernel
    kpad = np.roll(kpad, (-r1, -r2), axis=(0, 1))  # kernel centre to the origin
    spec = np.fft.rfft2(padded, s=(n1, n2), axes=(0, 1)) * np.fft.rfft2(kpad)[:, :, None]
    out = np.fft.irfft2(spec, s=(n1, n2), axes=(0, 1))[r1 : r1 + h, r2 : r2 + w]
    out = out.astype(np.float32, copy=False)
    return out.reshape(np.shape(linear_img))


def blur_with_homographies(linear_img: np.ndarray, homographies: np.ndarray) -> np.ndarray:
    """Spatially varying blur: the mean of the image warped by each (3,3) homography.

    ``H_i`` maps sharp-image pixel coordinates (x, y, 1), pixel centres at integers, to where
    that point is seen at time i; so warp i is ``out_i(y) = img(H_i^-1 y)``, sampled bilinearly,
    borders reflected (as ``blur_with_kernel``). A translation by (dx, dy) moves the content by
    (dx, dy), the same as a kernel delta at that offset. ``linear_img`` (H,W,C) or (H,W) float;
    ``homographies`` (S,3,3). Returns float32 of the input's shape. Uses torch's grid_sample on
    the CPU, in chunks so large images stay within memory; the sum runs in a fixed order, so the
    result is deterministic.
    """
    src = _as_hwc(linear_img)
    hs = np.asarray(homographies, dtype=np.float64)
    if hs.ndim != 3 or hs.shape[1:] != (3, 3) or len(hs) == 0:
        raise ConfigError(f"homographies must be (S,3,3), got shape {hs.shape}")
    h, w, c = src.shape
    # inverse maps, rows 0 and 1 pre-scaled to grid_sample's normalised coordinates
    # (align_corners=True: pixel centres 0 and W-1 become -1 and 1; the -1 comes later)
    inv = np.linalg.inv(hs)
    inv[:, 0] *= 2.0 / max(w - 1, 1)
    inv[:, 1] *= 2.0 / max(h - 1, 1)
    inv = torch.from_numpy(inv).to(torch.float32)
    x = torch.from_numpy(np.ascontiguousarray(src.transpose(2, 0, 1), dtype=np.float32))[None]
    xs = torch.arange(w, dtype=torch.float32)
    ys = torch.arange(h, dtype=torch.float32)
    acc = torch.zeros((c, h, w), dtype=torch.float32)
    chunk = max(1, 4_000_000 // (h * w))
    with torch.no_grad():
        for start in range(0, len(hs), chunk):
            m = inv[start : start + chunk]

            def row(j: int) -> torch.Tensor:  # (S,H,W) values of m[:, j] . (x, y, 1), separably
                per_row = (m[:, j, 1, None] * ys + m[:, j, 2, None])[:, :, None]
                return torch.addcmul(per_row, m[:, j, 0, None, None], xs)

            rden = row(2).reciprocal_()
            grid = torch.stack([row(0).mul_(rden).sub_(1.0), row(1).mul_(rden).sub_(1.0)], dim=-1)
            warped = F.grid_sample(
                x.expand(len(m), -1, -1, -1),
                grid,
                mode="bilinear",
                padding_mode="reflection",
                align_corners=True,
            )
            for i in range(len(m)):  # a fixed summation order: deterministic
                acc += warped[i]
    out = (acc / len(hs)).permute(1, 2, 0).numpy()
    return np.ascontiguousarray(out).reshape(np.shape(linear_img))


# --------------------------------------------------------------------------------------------
# Real blur: averaging high-frame-rate video (GoPro dataset style)
# --------------------------------------------------------------------------------------------


def _to_float_rgb(img: np.ndarray, path: Path | None = None) -> np.ndarray:
    """uint8/uint16/float, RGB/RGBA/gray/gray+alpha -> float32 (H,W,3) in [0,1] (alpha dropped)."""
    img = np.asarray(img)
    if img.dtype == np.uint8:
        img = img.astype(np.float32) / 255
    elif img.dtype == np.uint16:
        img = img.astype(np.float32) / 65535
    elif img.dtype.kind == "f":
        img = img.astype(np.float32, copy=False)
    else:
        raise ImageError(path, f"unsupported pixel type {img.dtype}")
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    elif img.ndim == 3 and img.shape[2] in (1, 2):
        img = np.repeat(img[:, :, :1], 3, axis=2)
    elif img.ndim == 3 and img.shape[2] == 4:
        img = img[:, :, :3]
    elif not (img.ndim == 3 and img.shape[2] == 3):
        raise ImageError(path, f"expected an RGB, RGBA or grayscale image, got shape {img.shape}")
    return np.ascontiguousarray(img)


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


# --------------------------------------------------------------------------------------------
# Noise, highlights, JPEG
# --------------------------------------------------------------------------------------------


def _range(value: Sequence[float], name: str, lo: float, hi: float) -> tuple[float, float]:
    if len(value) != 2:
        raise ConfigError(f"{name} must be a (low, high) pair, got {value!r}")
    a, b = float(value[0]), float(value[1])
    if not lo <= a <= b <= hi:
        raise ConfigError(f"{name} must satisfy {lo} <= low <= high <= {hi}, got {value!r}")
    return a, b


def _prob(value: float, name: str) -> None:
    if not 0 <= value <= 1:
        raise ConfigError(f"{name} must be a probability in [0, 1], got {value!r}")


@dataclass(frozen=True)
class Degradation:
    """What happens besides blur, with its random ranges. Defaults: a mix of clean and
    phone-like photos.

    Noise (probability ``noise_prob``) is Poisson-Gaussian in linear light, before the tone
    curve, as in a raw sensor: ``gain * Poisson(x / gain) + N(0, read_sigma^2)``, so its
    variance is ``gain * x + read_sigma^2``. ``shot_gain`` and ``read_sigma`` are drawn
    log-uniformly (uniformly where the low end is 0); values are in units of the white level.

    Highlights (probability ``clip_prob``): before blurring, pixels whose brightest channel is
    above ``clip_threshold`` (linear) are scaled up, smoothly, by up to a factor drawn from
    ``clip_scale`` at full white, standing for lights a camera clipped; after the blur everything
    is clipped at 1, so lights smear into saturated streaks as in real photos. The sharp target
    gets the same scaling and clipping, without noise.

    JPEG (probability ``jpeg_prob``), quality drawn from ``jpeg_quality`` (inclusive), 4:2:0 as
    cameras write it, applied last to the blurry image only.
    """

    noise_prob: float = 0.8
    shot_gain: tuple[float, float] = (1e-4, 4e-3)
    read_sigma: tuple[float, float] = (5e-4, 5e-3)
    clip_prob: float = 0.25
    clip_scale: tuple[float, float] = (1.5, 4.0)
    clip_threshold: float = 0.6
    jpeg_prob: float = 0.5
    jpeg_quality: tuple[int, int] = (60, 95)

    def __post_init__(self) -> None:
        for name in ("noise_prob", "clip_prob", "jpeg_prob"):
            _prob(getattr(self, name), name)
        # JSON turns tuples into lists; keep the dataclass hashable
        object.__setattr__(self, "shot_gain", _range(self.shot_gain, "shot_gain", 0, 1))
        object.__setattr__(self, "read_sigma", _range(self.read_sigma, "read_sigma", 0, 1))
        object.__setattr__(self, "clip_scale", _range(self.clip_scale, "clip_scale", 1, 1000))
        q = _range(self.jpeg_quality, "jpeg_quality", 1, 100)
        object.__setattr__(self, "jpeg_quality", (int(q[0]), int(q[1])))
        if not 0 < self.clip_threshold < 1:
            raise ConfigError(f"clip_threshold must be in (0, 1), got {self.clip_threshold!r}")


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    if lo <= 0 or lo == hi:
        return float(rng.uniform(lo, hi))
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def add_poisson_gaussian_noise(
    linear: np.ndarray, rng: np.random.Generator, *, gain: float, read_sigma: float
) -> np.ndarray:
    """Sensor noise in linear light: ``gain * Poisson(x / gain) + N(0, read_sigma^2)``.

    Mean x, variance ``gain * x + read_sigma^2`` (negatives in x count as 0 photons). ``gain``
    is the white level's share of one photo-electron (0: no shot noise). Returns float32,
    unclipped.
    """
    x = np.maximum(np.asarray(linear, dtype=np.float32), 0)
    out = (rng.poisson(x / gain) * gain).astype(np.float32) if gain > 0 else x.copy()
    if read_sigma > 0:
        out += read_sigma * rng.standard_normal(x.shape, dtype=np.float32)
    return out


def boost_highlights(linear: np.ndarray, scale: float, threshold: float) -> np.ndarray:
    """Scale near-white pixels up (linear light), standing for light sources a camera clipped.

    A pixel's factor rises smoothly from 1, where its brightest channel is ``threshold``, to
    ``scale`` at 1 (hue kept: all channels are scaled alike). Pixels below stay exactly as they
    were. Returns float32 (H,W,3), values may exceed 1.
    """
    m = np.asarray(linear, dtype=np.float32).max(axis=-1, keepdims=True)
    w = np.clip((m - threshold) / (1 - threshold), 0, 1)
    w = w * w * (3 - 2 * w)  # smoothstep: no visible edge where the boost starts
    return (linear * (1 + (scale - 1) * w)).astype(np.float32)


def jpeg_roundtrip(srgb: np.ndarray, quality: int) -> np.ndarray:
    """Encode (H,W,3) sRGB [0,1] as JPEG (Pillow, 4:2:0, in memory) and decode it again."""
    u8 = np.clip(np.rint(np.asarray(srgb) * 255), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(u8).save(buf, format="JPEG", quality=int(quality), subsampling="4:2:0")
    buf.seek(0)
    with Image.open(buf) as img:
        return np.asarray(img.convert("RGB"), dtype=np.float32) / 255


def apply_degradation(
    blurry_linear: np.ndarray, rng: np.random.Generator, cfg: Degradation, *, record: dict | None = None
) -> np.ndarray:
    """Noise, clipping, tone curve and JPEG for a blurred image in linear light.

    Order: Poisson-Gaussian noise in linear light (raw-like), clip to [0,1] (the sensor's
    white and black), sRGB curve, then JPEG. Highlight scaling is not here: it has to happen
    before the blur (``boost_highlights``; ``synthesize_pair`` does it with this ``cfg``).
    ``record``, if given, receives what was drawn (JSON-able). Returns float32 (H,W,3) sRGB
    in [0,1].
    """
    x = np.asarray(blurry_linear, dtype=np.float32)
    noise = None
    if rng.random() < cfg.noise_prob:
        noise = {
            "shot_gain": _log_uniform(rng, *cfg.shot_gain),
            "read_sigma": _log_uniform(rng, *cfg.read_sigma),
        }
        x = add_poisson_gaussian_noise(x, rng, gain=noise["shot_gain"], read_sigma=noise["read_sigma"])
    out = linear_to_srgb(np.clip(x, 0, 1))
    quality = None
    if rng.random() < cfg.jpeg_prob:
        quality = int(rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1))
        out = jpeg_roundtrip(out, quality)
    if record is not None:
        record.update(noise=noise, jpeg_quality=quality)
    return np.clip(out, 0, 1).astype(np.float32)


# --------------------------------------------------------------------------------------------
# The mixture
# --------------------------------------------------------------------------------------------


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
    """

    w_trajectory: float = 0.40
    w_usrnet: float = 0.10
    w_gyro: float = 0.15
    w_gyro_homography: float = 0.10
    w_camera_path: float = 0.25
    w_none: float = 0.0
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


def _grid_points(x0: float, y0: float, w: int, h: int) -> np.ndarray:
    xs = np.array([x0, x0 + (w - 1) / 2, x0 + w - 1])
    ys = np.array([y0, y0 + (h - 1) / 2, y0 + h - 1])
    return np.stack(np.meshgrid(xs, ys), axis=-1).reshape(-1, 2)


def _extent(hs: np.ndarray, pts: np.ndarray) -> float:
    """Largest side of any of ``pts``' motion bounding boxes (px) under homographies ``hs``."""
    return float(np.ptp(_map_points(hs, pts), axis=0).max())


def _to_window(hs: np.ndarray, x0: int, y0: int) -> np.ndarray:
    """Re-express full-image homographies in the coordinates of a window at (x0, y0)."""
    t = np.array([[1.0, 0, -x0], [0, 1.0, -y0], [0, 0, 1.0]])
    return t @ hs @ np.linalg.inv(t)


def synthesize_pair(
    sharp_srgb: np.ndarray,
    rng: np.random.Generator,
    cfg: SynthConfig = SynthConfig(),
    bank: KernelBank | None = None,
    *,
    crop_mode: Literal["random", "center"] = "random",
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Make one (blurry, sharp, info) training pair from a sharp photo (see the module docstring).

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
    if source == "trajectory":
        kernel, params = _random_kernel(rng, size, None, cfg.min_extent)
        blurred = blur_with_kernel(hdr, kernel)
    elif source == "usrnet":
        index, orientation = int(rng.integers(len(bank.usrnet))), int(rng.integers(8))
        blurred = blur_with_kernel(hdr, _dihedral(bank.usrnet[index], orientation))
        # the kernel's index in usrnet_kernels_12.mat, also in a split bank
        params = {"index": bank.usrnet_ids[index] if bank.usrnet_ids else index, "orientation": orientation}
    elif source == "gyro":
        rec = bank.gyro[int(rng.integers(len(bank.gyro)))]
        focal = float(rng.uniform(*cfg.focal_rel)) * max(full_h, full_w)
        exposure = float(rng.uniform(*cfg.gyro_exposure_s))
        kernel, params = _gyro_kernel(rec, rng, focal, size, exposure, True)
        blurred = blur_with_kernel(hdr, kernel)
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
        blurred = blur_with_homographies(hdr, _to_window(hs, wx0, wy0))
    else:
        blurred = hdr

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
    info = {
        "source": source,
        "params": params,
        "highlights": highlights,
        "degradation": degradation,
        "crop": box,
    }
    log.debug("synthesized a %dx%d pair: %s", oh, ow, source)
    return blurry, sharp, _jsonable(info)


def _to_uint8(img: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(img * 255), 0, 255).astype(np.uint8)


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
