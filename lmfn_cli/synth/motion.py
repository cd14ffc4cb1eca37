"""Camera motion: real phone gyro recordings (Lai et al. 2016) and smooth random 6-D camera paths,
as uniform kernels or as per-pixel (spatially varying) blur via homographies."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ConfigError, FileProblem
from .kernels import _check_kernel_size, _dihedral, _reach, trajectory_kernel

log = logging.getLogger(__name__)


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
# Homographies on a window of the image (for synthesize_pair)
# --------------------------------------------------------------------------------------------


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
