"""Blur kernels: random camera-shake trajectories (Boracchi & Foi 2012) rendered into kernels,
centring, and the 8 rotations/reflections of a kernel."""

from __future__ import annotations

import cmath
import math

import numpy as np

from ..errors import ConfigError


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
    rng: np.random.Generator, size: int, max_len: float | None, min_extent: float,
    max_extent: float | None = None,
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
        top = size - 2 if max_extent is None else min(max_extent, size - 2)
        target = float(rng.uniform(min(min_extent, top), top))
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
