"""Tests of the blur synthesizer: kernels, blurs, frames, noise, the mixture and make_pairs."""

from __future__ import annotations

import dataclasses
import json
import struct
import zlib

import numpy as np
import pytest

from conftest import natural_like, requires_shared
from lmfn_cli.errors import ConfigError, FileProblem, ImageError, OutputExistsError
from lmfn_cli.images import read_image, write_image
from lmfn_cli.synth import (
    SOURCES,
    Degradation,
    GyroRecording,
    KernelBank,
    SynthConfig,
    add_poisson_gaussian_noise,
    apply_degradation,
    average_frames,
    blur_with_homographies,
    blur_with_kernel,
    camera_path_homographies,
    centre_kernel,
    frame_sequence_pairs,
    gyro_homographies,
    gyro_kernel,
    linear_to_srgb,
    load_gyro,
    load_usrnet_kernels,
    make_pairs,
    random_kernel,
    random_trajectory,
    srgb_to_linear,
    synthesize_pair,
    trajectory_kernel,
)

H, W = 48, 64
CLEAN = Degradation(noise_prob=0, clip_prob=0, jpeg_prob=0)


def image(seed: int = 0) -> np.ndarray:
    return natural_like(H, W, seed).astype(np.float32) / 255


def only(source: str, **kw) -> SynthConfig:
    """A config that always uses one source."""
    weights = {f"w_{s}": float(s == source) for s in SOURCES}
    return SynthConfig(**{**weights, **kw})


def grad_energy(img: np.ndarray) -> float:
    return float((np.diff(img, axis=0) ** 2).mean() + (np.diff(img, axis=1) ** 2).mean())


def support(kernel: np.ndarray) -> tuple[int, int]:
    """(rows, cols) of the kernel's bounding box above 1% of its peak."""
    ys, xs = np.nonzero(kernel > 0.01 * kernel.max())
    return int(np.ptp(ys)) + 1, int(np.ptp(xs)) + 1


def centroid(kernel: np.ndarray) -> np.ndarray:
    yy, xx = np.mgrid[: kernel.shape[0], : kernel.shape[1]]
    return np.array([(kernel * xx).sum(), (kernel * yy).sum()]) / kernel.sum()


def assert_kernel(k: np.ndarray, size: int | None = None) -> None:
    assert k.dtype == np.float32 and k.ndim == 2 and k.shape[0] == k.shape[1] and k.shape[0] % 2 == 1
    if size is not None:
        assert k.shape == (size, size)
    assert (k >= 0).all()
    assert k.sum() == pytest.approx(1.0, abs=1e-5)


def synthetic_recording(omega=(0.5, 0.3, 0.2), seconds: float = 1.0) -> GyroRecording:
    t = np.arange(0, seconds, 0.01)
    return GyroRecording(
        name="synthetic",
        time_s=t,
        angular_velocity=np.tile(np.asarray(omega, dtype=np.float64), (len(t), 1)),
        acceleration_g=np.zeros((len(t), 3)),
        exposure_s=0.1,
    )


def synthetic_bank() -> KernelBank:
    rng = np.random.default_rng(5)
    return KernelBank(usrnet=(random_kernel(rng, 25), random_kernel(rng, 25)), gyro=(synthetic_recording(),))


# --------------------------------------------------------------------------------------------
# colour
# --------------------------------------------------------------------------------------------


def test_srgb_curves_known_values_and_round_trip():
    assert srgb_to_linear(np.array([0.5]))[0] == pytest.approx(0.21404, abs=1e-4)
    assert linear_to_srgb(np.array([0.18]))[0] == pytest.approx(0.46135, abs=1e-4)
    x = np.linspace(-0.1, 1.5, 1001).astype(np.float32)
    assert srgb_to_linear(x).dtype == np.float32
    assert np.isfinite(linear_to_srgb(x)).all()
    np.testing.assert_allclose(linear_to_srgb(srgb_to_linear(x)), x, atol=1e-5)


# --------------------------------------------------------------------------------------------
# trajectories and kernels
# --------------------------------------------------------------------------------------------


def test_random_trajectory_shape_length_and_reproducibility():
    a = random_trajectory(np.random.default_rng(1), max_len=40, steps=500)
    b = random_trajectory(np.random.default_rng(1), max_len=40, steps=500)
    c = random_trajectory(np.random.default_rng(2), max_len=40, steps=500)
    assert a.shape == (500, 2)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    np.testing.assert_allclose(a.mean(axis=0), 0, atol=1e-9)
    # constant speed: the path is exactly max_len long
    assert np.hypot(*np.diff(a, axis=0).T).sum() == pytest.approx(40, rel=1e-6)


def test_trajectory_kernel_line_is_rendered_sub_pixel_and_centred():
    line = np.stack([np.linspace(0, 10, 200), np.full(200, 0.3)], axis=1)
    k = trajectory_kernel(line, 21)
    assert_kernel(k, 21)
    assert support(k)[1] in (11, 12)  # a 10 px line covers 11 pixels (12 if it straddles)
    np.testing.assert_allclose(centroid(k), [10, 10], atol=1e-4)
    # exposure: only the first half of the path
    assert support(trajectory_kernel(line, 21, exposure=0.5))[1] in (6, 7)
    # a single point is a delta at the centre
    assert trajectory_kernel(np.array([[3.7, -1.2]]), 5)[2, 2] == pytest.approx(1.0)


def test_trajectory_kernel_refuses_even_size_and_paths_that_do_not_fit():
    line = np.stack([np.linspace(0, 30, 50), np.zeros(50)], axis=1)
    with pytest.raises(ConfigError):
        trajectory_kernel(line, 20)
    with pytest.raises(ConfigError):
        trajectory_kernel(line, 21)


def test_random_kernels_are_valid_and_centred():
    for seed in range(8):
        k = random_kernel(np.random.default_rng(seed), 31)
        assert_kernel(k, 31)
        np.testing.assert_allclose(centroid(k), [15, 15], atol=1e-3)
        assert max(support(k)) <= 31


def test_kernel_extent_grows_with_max_len():
    def mean_extent(max_len: float) -> float:
        kernels = [random_kernel(np.random.default_rng(s), 31, max_len) for s in range(10)]
        return float(np.mean([max(support(k)) for k in kernels]))

    e = [mean_extent(m) for m in (3, 10, 24)]
    assert e[0] < e[1] < e[2]
    assert e[0] <= 5


def test_centre_kernel_moves_an_off_centre_kernel():
    k = np.zeros((9, 9), dtype=np.float32)
    k[4, 6] = k[4, 7] = 0.5  # centroid 2.5 px right of the centre
    c = centre_kernel(k)
    assert_kernel(c)
    np.testing.assert_allclose(centroid(c), [(c.shape[1] - 1) / 2] * 2, atol=1e-5)


# --------------------------------------------------------------------------------------------
# blurring
# --------------------------------------------------------------------------------------------


def test_delta_kernel_is_identity_and_shifted_delta_shifts():
    img = srgb_to_linear(image())
    delta = np.zeros((7, 7), dtype=np.float32)
    delta[3, 3] = 1
    np.testing.assert_allclose(blur_with_kernel(img, delta), img, atol=1e-5)
    shifted = np.zeros((7, 7), dtype=np.float32)
    shifted[3 + 2, 3 - 1] = 1  # content moves 2 down, 1 left
    out = blur_with_kernel(img, shifted)
    np.testing.assert_allclose(out[2:, :-1], img[:-2, 1:], atol=1e-5)


def test_blur_keeps_constant_image_and_lowers_gradient_energy():
    flat = np.full((H, W, 3), 0.3, dtype=np.float32)
    k = random_kernel(np.random.default_rng(0), 15)
    np.testing.assert_allclose(blur_with_kernel(flat, k), flat, atol=1e-5)
    img = srgb_to_linear(image())
    assert grad_energy(blur_with_kernel(img, k)) < 0.7 * grad_energy(img)
    assert blur_with_kernel(img[:, :, 0], k).shape == (H, W)


def test_identity_homographies_give_the_image_back():
    img = srgb_to_linear(image())
    out = blur_with_homographies(img, np.tile(np.eye(3), (4, 1, 1)))
    assert out.dtype == np.float32 and out.shape == img.shape
    np.testing.assert_allclose(out, img, atol=1e-4)


def test_translation_homographies_match_the_equivalent_kernel():
    img = srgb_to_linear(image())
    shifts = [(0, 0), (2, 1), (-1, 3)]
    hs = np.array([[[1, 0, dx], [0, 1, dy], [0, 0, 1]] for dx, dy in shifts], dtype=np.float64)
    k = np.zeros((7, 7), dtype=np.float32)
    for dx, dy in shifts:
        k[3 + dy, 3 + dx] += 1 / 3
    a, b = blur_with_homographies(img, hs), blur_with_kernel(img, k)
    np.testing.assert_allclose(a[4:-4, 4:-4], b[4:-4, 4:-4], atol=1e-4)


def test_camera_path_homographies_are_centred_and_bounded():
    rng = np.random.default_rng(3)
    hs = camera_path_homographies(
        rng, width=W, height=H, focal_px=80, samples=16, max_rotation_deg=2, max_translation_px=3
    )
    assert hs.shape == (16, 3, 3)
    centre = np.array([(W - 1) / 2, (H - 1) / 2, 1.0])
    moved = np.einsum("sij,j->si", hs, centre)
    moved = moved[:, :2] / moved[:, 2:]
    np.testing.assert_allclose(moved.mean(axis=0), centre[:2], atol=0.05)  # mean pose: centred
    # rotation about x/y moves the centre f*theta at most, plus the translation
    bound = 80 * np.radians(2) * np.sqrt(2) + 3 * np.sqrt(2)
    assert np.abs(moved - centre[:2]).max() <= 2 * bound
    still = camera_path_homographies(
        rng, width=W, height=H, focal_px=80, max_rotation_deg=0, max_translation_px=0
    )
    np.testing.assert_allclose(still, np.tile(np.eye(3), (32, 1, 1)), atol=1e-12)


# --------------------------------------------------------------------------------------------
# gyro and USRNet kernels
# --------------------------------------------------------------------------------------------


def test_gyro_kernel_from_a_constant_rotation_is_a_line_of_the_right_length():
    rec = synthetic_recording(omega=(0.1, 0.0, 0.0))  # pitch: the image moves vertically
    rng = np.random.default_rng(0)
    k = gyro_kernel(rec, rng, focal_px=500, size=15, exposure_s=0.1, random_orientation=False)
    assert_kernel(k, 15)
    rows, cols = support(k)
    assert cols == 1 and rows in (6, 7)  # 500 px * 0.1 rad/s * 0.1 s = 5 px
    # a shake too large for the kernel is shrunk to fit, never cut
    big = gyro_kernel(synthetic_recording(), np.random.default_rng(0), focal_px=5000, size=15)
    assert_kernel(big, 15)


def test_gyro_homographies_shape_and_centre():
    rec = synthetic_recording()
    hs = gyro_homographies(rec, np.random.default_rng(1), focal_px=100, width=W, height=H, samples=9)
    assert hs.shape == (9, 3, 3)
    out = blur_with_homographies(srgb_to_linear(image()), hs)
    assert out.shape == (H, W, 3) and grad_energy(out) < grad_energy(srgb_to_linear(image()))


def test_load_gyro_reads_a_written_recording(tmp_path):
    folder = tmp_path / "gyro_09"
    folder.mkdir()
    t = 100 + np.arange(50) * 0.01
    rows = np.column_stack([np.zeros((50, 3)), np.full((50, 3), [0.1, 0.2, 0.3]), t])
    np.savetxt(folder / "gyro.txt", rows, fmt="%.6f")
    (folder / "info.txt").write_text("100.0 0.125 100.2 100.3")
    rec = load_gyro(folder)
    assert rec.name == "gyro_09" and rec.exposure_s == 0.125
    np.testing.assert_allclose(rec.angular_velocity[0], [0.1, 0.2, 0.3])
    np.testing.assert_allclose(rec.time_s, t)
    (folder / "gyro.txt").write_text("1 2 3\n")
    with pytest.raises(FileProblem, match="7 numbers"):
        load_gyro(folder)
    with pytest.raises(FileProblem):
        load_gyro(tmp_path / "missing")


def _mat_v5(kernels: list[np.ndarray], compress: bool) -> bytes:
    """A minimal MATLAB v5 file with ``kernels`` as a 1xN cell of double matrices."""
    def element(kind: int, data: bytes) -> bytes:
        return struct.pack("<II", kind, len(data)) + data + b"\0" * (-len(data) % 8)

    def matrix(name: bytes, cls: int, dims: tuple, body: bytes) -> bytes:
        flags = element(6, struct.pack("<II", cls, 0))
        return element(14, flags + element(5, struct.pack(f"<{len(dims)}i", *dims)) + element(1, name) + body)

    cells = b"".join(
        matrix(b"", 6, k.shape, element(9, np.asarray(k, "<f8").tobytes(order="F"))) for k in kernels
    )
    top = matrix(b"kernels", 1, (1, len(kernels)), cells)
    if compress:
        z = zlib.compress(top)
        top = struct.pack("<II", 15, len(z)) + z
    return b"MATLAB 5.0 MAT-file, lmfn test".ljust(124, b" ") + struct.pack("<H", 0x0100) + b"IM" + top


@pytest.mark.parametrize("compress", [False, True])
def test_usrnet_loader_reads_a_written_mat_file(tmp_path, compress):
    a = np.arange(9, dtype=np.float64).reshape(3, 3)  # not symmetric: catches row/column order
    b = np.ones((5, 5)) * 2
    path = tmp_path / "k.mat"
    path.write_bytes(_mat_v5([a, b], compress))
    ks = load_usrnet_kernels(path)
    assert len(ks) == 2
    np.testing.assert_allclose(ks[0], a / a.sum(), rtol=1e-6)
    assert_kernel(ks[1], 5)
    path.write_bytes(b"not a mat file" * 20)
    with pytest.raises(FileProblem):
        load_usrnet_kernels(path)


def test_real_usrnet_kernels():
    ks = load_usrnet_kernels(requires_shared("data", "kernels", "usrnet_kernels_12.mat"))
    assert len(ks) == 12
    for k in ks:
        assert_kernel(k, 25)
    # 0-3 isotropic Gaussians are symmetric; 8-11 motion kernels are not
    assert np.allclose(ks[0], ks[0].T, atol=1e-6) and not np.allclose(ks[8], ks[8].T, atol=1e-3)


def test_real_gyro_recordings_and_bank():
    kernels_dir = requires_shared("data", "kernels")
    rec = load_gyro(kernels_dir / "lai2016_gyro" / "gyro_01")
    assert rec.angular_velocity.shape[1] == 3 and len(rec.time_s) > 50
    assert rec.exposure_s == pytest.approx(0.134359)
    # a hand-held shake: well under 1 rad/s, and it does move
    assert 0.01 < np.abs(rec.angular_velocity).max() < 2
    bank = KernelBank.from_dir(kernels_dir)
    assert len(bank.usrnet) == 12 and len(bank.gyro) == 4
    for k in bank.usrnet:  # centred, so blur does not shift the image
        np.testing.assert_allclose(centroid(k), [(k.shape[0] - 1) / 2] * 2, atol=1e-4)
    for r in bank.gyro:
        assert_kernel(gyro_kernel(r, np.random.default_rng(0), focal_px=700, size=31), 31)


def test_kernel_bank_tolerates_missing_pieces(tmp_path, caplog):
    bank = KernelBank.from_dir(tmp_path / "nothing-here")
    assert bank.usrnet == () and bank.gyro == ()
    blurry, sharp, info = synthesize_pair(image(), np.random.default_rng(0), SynthConfig(), bank)
    assert info["source"] in ("trajectory", "camera_path")
    with pytest.raises(ConfigError):
        synthesize_pair(image(), np.random.default_rng(0), only("usrnet"), bank)


# --------------------------------------------------------------------------------------------
# frames
# --------------------------------------------------------------------------------------------


def test_average_frames():
    frame = image()
    for linear in (True, False):
        blurry, sharp = average_frames([frame] * 5, linear=linear)
        np.testing.assert_allclose(blurry, frame, atol=1e-5)
        assert np.array_equal(sharp, frame)
    black, white = np.zeros((4, 4, 3), np.float32), np.ones((4, 4, 3), np.float32)
    assert average_frames([black, white, black, white], linear=False)[0][0, 0, 0] == pytest.approx(0.5)
    mean_linear = average_frames([black, white, black, white], linear=True)[0]
    assert mean_linear[0, 0, 0] == pytest.approx(0.7354, abs=1e-3)  # sRGB of linear 0.5
    frames = [np.full((4, 4, 3), i, np.uint8) for i in range(7)]
    assert average_frames(frames, linear=False)[1][0, 0, 0] == pytest.approx(3 / 255)


def test_frame_sequence_pairs_stay_inside_their_range(tmp_path):
    for i in range(12):
        write_image(tmp_path / f"{i:06d}.png", np.full((H, W, 3), i * 20, np.uint8))
    rng = np.random.default_rng(0)
    pairs = list(frame_sequence_pairs(tmp_path, rng=rng, count=6, nframes=(3, 5), start=2, stop=9, crop=32))
    assert len(pairs) == 6
    for blurry, sharp, info in pairs:
        p = info["params"]
        assert p["nframes"] in (3, 5) and 2 <= p["first"] and p["first"] + p["nframes"] <= 9
        assert blurry.shape == sharp.shape == (32, 32, 3)
        # the sharp target is the exact middle frame
        assert sharp[0, 0, 0] == pytest.approx((p["first"] + p["nframes"] // 2) * 20 / 255)
    with pytest.raises(ConfigError):
        next(frame_sequence_pairs(tmp_path, rng=rng, count=1, nframes=(7, 7), start=0, stop=5))


def test_real_gopro_frames():
    frames_dir = requires_shared("data", "frames", "GOPR0477_11_00")
    rng = np.random.default_rng(0)
    pairs = frame_sequence_pairs(frames_dir, rng=rng, count=1, nframes=(7, 7), start=250, crop=64)
    ((blurry, sharp, info),) = list(pairs)
    assert info["params"]["first"] >= 250 and blurry.shape == (64, 64, 3)


# --------------------------------------------------------------------------------------------
# noise, highlights, JPEG
# --------------------------------------------------------------------------------------------


def test_poisson_gaussian_noise_statistics():
    rng = np.random.default_rng(0)
    flat = np.full((128, 128, 3), 0.2, np.float32)
    noisy = add_poisson_gaussian_noise(flat, rng, gain=0.002, read_sigma=0.01)
    expected = np.sqrt(0.2 * 0.002 + 0.01**2)
    assert noisy.mean() == pytest.approx(0.2, abs=1e-3)
    assert noisy.std() == pytest.approx(expected, rel=0.03)
    # the same through apply_degradation, measured back in linear light
    cfg = Degradation(noise_prob=1, shot_gain=(0.002, 0.002), read_sigma=(0.01, 0.01), jpeg_prob=0)
    record: dict = {}
    out = apply_degradation(flat, rng, cfg, record=record)
    assert srgb_to_linear(out).std() == pytest.approx(expected, rel=0.05)
    assert record["noise"] == {"shot_gain": 0.002, "read_sigma": 0.01} and record["jpeg_quality"] is None


def test_jpeg_path_runs():
    cfg = Degradation(noise_prob=0, jpeg_prob=1, jpeg_quality=(30, 30))
    record: dict = {}
    lin = srgb_to_linear(image())
    out = apply_degradation(lin, np.random.default_rng(0), cfg, record=record)
    assert record["jpeg_quality"] == 30 and out.dtype == np.float32 and out.shape == (H, W, 3)
    assert np.allclose(out * 255, np.rint(out * 255), atol=1e-3)  # decoded 8-bit values
    assert 0 < np.abs(out - image()).mean() < 0.05


def test_degradation_config_is_validated():
    with pytest.raises(ConfigError):
        Degradation(noise_prob=1.5)
    with pytest.raises(ConfigError):
        Degradation(jpeg_quality=(90, 50))
    with pytest.raises(ConfigError):
        SynthConfig(w_trajectory=-1)
    with pytest.raises(ConfigError):
        SynthConfig(kernel_size=30)


def test_highlight_clipping_is_the_same_in_blurry_and_sharp():
    img = image()
    img[10:14, 20:24] = 0.97  # a near-white patch: a light the camera clipped
    cfg = only("none", degradation=Degradation(noise_prob=0, jpeg_prob=0, clip_prob=1, clip_scale=(3, 3)))
    blurry, sharp, info = synthesize_pair(img, np.random.default_rng(0), cfg)
    assert info["highlights"]["scale"] == 3
    np.testing.assert_allclose(blurry, sharp, atol=1e-5)  # no blur: the pair is identical
    assert (sharp[10:14, 20:24] >= 1 - 1e-6).all()  # boosted and clipped
    dark = img.max(axis=2) < 0.5
    assert np.array_equal(sharp[dark], img[dark])  # the rest untouched


def test_boosted_highlights_smear_into_saturated_streaks():
    img = np.full((H, W, 3), 0.1, np.float32)
    img[22:26, 30:34] = 1.0
    base = dict(noise_prob=0, jpeg_prob=0, clip_scale=(8, 8))
    def run(clip_prob: float) -> np.ndarray:
        cfg = only("trajectory", degradation=Degradation(clip_prob=clip_prob, **base))
        return synthesize_pair(img, np.random.default_rng(4), cfg)[0]

    plain, hot = run(0), run(1)
    assert (hot >= 0.999).sum() > (plain >= 0.999).sum()


# --------------------------------------------------------------------------------------------
# the mixture
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("source", [s for s in SOURCES if s != "none"])
def test_every_source_blurs(source):
    bank = synthetic_bank()
    cfg = only(source, degradation=CLEAN, kernel_size=15, focal_rel=(2, 2), gyro_exposure_s=(0.1, 0.1))
    img = image()
    blurry, sharp, info = synthesize_pair(img, np.random.default_rng(0), cfg, bank)
    assert info["source"] == source
    assert blurry.dtype == sharp.dtype == np.float32 and blurry.shape == sharp.shape == (H, W, 3)
    assert 0 <= blurry.min() and blurry.max() <= 1
    assert np.array_equal(sharp, img)
    assert grad_energy(blurry) < 0.8 * grad_energy(sharp)
    json.dumps(info)


def test_synthesize_pair_is_reproducible():
    bank = synthetic_bank()
    img = image()
    for seed in range(6):  # covers several sources and degradations
        a = synthesize_pair(img, np.random.default_rng(seed), SynthConfig(), bank)
        b = synthesize_pair(img, np.random.default_rng(seed), SynthConfig(), bank)
        assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]
    c = synthesize_pair(img, np.random.default_rng(99), SynthConfig(), bank)
    assert not np.array_equal(a[0], c[0])


def test_crops():
    img = image()
    cfg = SynthConfig(crop=32, degradation=CLEAN)
    blurry, sharp, info = synthesize_pair(img, np.random.default_rng(1), cfg)
    y, x, h, w = info["crop"]
    assert blurry.shape == sharp.shape == (32, 32, 3) and (h, w) == (32, 32)
    assert np.array_equal(sharp, img[y : y + 32, x : x + 32])
    _, centred, info = synthesize_pair(img, np.random.default_rng(1), cfg, crop_mode="center")
    assert info["crop"][:2] == [8, 16]
    with pytest.raises(ImageError):
        synthesize_pair(img, np.random.default_rng(1), SynthConfig(crop=64))


def test_config_round_trips_through_json():
    cfg = SynthConfig(w_none=0.1, crop=128, degradation=Degradation(jpeg_quality=(70, 90)))
    again = SynthConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg
    with pytest.raises(ConfigError):
        SynthConfig.from_dict({"nonsense": 1})


# --------------------------------------------------------------------------------------------
# make_pairs
# --------------------------------------------------------------------------------------------


def test_make_pairs_writes_reproducible_pairs_and_never_overwrites(tmp_path):
    inputs = []
    for i, name in enumerate(["a.png", "b.jpg"]):
        inputs.append(write_image(tmp_path / "in" / name, natural_like(H, W, i)))
    out = tmp_path / "out"
    infos = make_pairs(inputs, out, seed=7)
    assert [i["name"] for i in infos] == ["a.png", "b.png"]
    for name in ("a.png", "b.png"):
        for sub in ("blur", "sharp"):
            img = read_image(out / sub / name)
            assert img.dtype == np.uint8 and img.shape == (H, W, 3)
    # the sharp PNG is the input, exactly (8-bit in, 8-bit out, rounded)
    if infos[0]["highlights"] is None:
        assert np.array_equal(read_image(out / "sharp" / "a.png"), read_image(inputs[0]))
    lines = [json.loads(line) for line in (out / "pairs.jsonl").read_text().splitlines()]
    assert lines == infos and lines[1]["seed"] == 7 and lines[1]["index"] == 1
    # never overwrites, and refuses before writing anything
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    with pytest.raises(OutputExistsError):
        make_pairs(inputs, out, seed=7)
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before
    # the same seed again gives the same files; pair i does not depend on the other pairs
    again = make_pairs(inputs, tmp_path / "again", seed=7)
    assert again == infos
    assert (out / "blur" / "b.png").read_bytes() == (tmp_path / "again" / "blur" / "b.png").read_bytes()
    other = write_image(tmp_path / "in2" / "c.png", natural_like(H, W, 9))
    alone = make_pairs([other, inputs[1]], tmp_path / "alone", seed=7)
    assert alone[1]["params"] == infos[1]["params"]
    assert (out / "blur" / "b.png").read_bytes() == (tmp_path / "alone" / "blur" / "b.png").read_bytes()


def test_make_pairs_centre_crop_and_name_clash(tmp_path):
    a = write_image(tmp_path / "x" / "a.png", natural_like(H, W, 1))
    cfg = dataclasses.replace(SynthConfig(), degradation=CLEAN)
    infos = make_pairs([a], tmp_path / "out", seed=0, crop=32, cfg=cfg)
    assert infos[0]["crop"] == [8, 16, 32, 32]
    assert read_image(tmp_path / "out" / "blur" / "a.png").shape == (32, 32, 3)
    b = write_image(tmp_path / "y" / "a.jpg", natural_like(H, W, 2))
    with pytest.raises(ImageError, match="same name"):
        make_pairs([a, b], tmp_path / "out2", seed=0)


def test_real_bank_mixture_on_a_real_photo():
    bank = KernelBank.from_dir(requires_shared("data", "kernels"))
    photo = next(iter(sorted(requires_shared("data", "sharp", "bsds500", "train").glob("*.jpg"))))
    img = read_image(photo)
    for source in ("usrnet", "gyro", "gyro_homography"):
        cfg = only(source, crop=96, degradation=CLEAN)
        blurry, sharp, info = synthesize_pair(img, np.random.default_rng(0), cfg, bank)
        assert info["source"] == source and blurry.shape == (96, 96, 3)
        assert grad_energy(blurry) < grad_energy(sharp)


def test_make_pairs_repeats_give_distinct_random_crops(tmp_path):
    a = write_image(tmp_path / "x" / "a.png", natural_like(H, W, 1))
    cfg = dataclasses.replace(SynthConfig(), crop=24)
    infos = make_pairs([a], tmp_path / "out", seed=3, cfg=cfg, repeats=3)
    assert [i["name"] for i in infos] == ["a-0.png", "a-1.png", "a-2.png"]
    assert len({tuple(i["crop"]) for i in infos}) > 1
    assert read_image(tmp_path / "out" / "blur" / "a-2.png").shape == (24, 24, 3)
    again = make_pairs([a], tmp_path / "again", seed=3, cfg=cfg, repeats=3)
    assert again == infos
    with pytest.raises(ConfigError):
        make_pairs([a], tmp_path / "none", seed=3, repeats=0)


def test_make_frame_pairs_from_a_video_folder(tmp_path):
    from lmfn_cli.synth import make_frame_pairs

    for i in range(12):
        write_image(tmp_path / "frames" / f"{i:06d}.png", natural_like(32, 40, seed=i))
    infos = make_frame_pairs(tmp_path / "frames", tmp_path / "out", seed=1, count=3, start=2, stop=11)
    assert [i["name"] for i in infos] == ["0000.png", "0001.png", "0002.png"]
    for info in infos:
        first, n = info["params"]["first"], info["params"]["nframes"]
        assert 2 <= first and first + n <= 11 and n % 2 == 1
    assert read_image(tmp_path / "out" / "sharp" / "0001.png").shape == (32, 40, 3)
    with pytest.raises(OutputExistsError):
        make_frame_pairs(tmp_path / "frames", tmp_path / "out", seed=1, count=3)


# --------------------------------------------------------------------------------------------
# pairs that teach deblurring, not a brightness change (issue 27)
# --------------------------------------------------------------------------------------------


def _noisy(model: str, level: float, n: int = 20000, seed: int = 0) -> np.ndarray:
    """sRGB values of a flat patch at sRGB ``level`` after noise of the given model."""
    flat = np.full((n // 100, 100, 3), srgb_to_linear(np.float32(level)), dtype=np.float32)
    cfg = Degradation(noise_prob=1.0, shot_gain=(2e-3, 2e-3), read_sigma=(4e-3, 4e-3), jpeg_prob=0.0,
                      noise_model=model)
    return apply_degradation(flat, np.random.default_rng(seed), cfg)


@pytest.mark.parametrize("level", [0.0, 0.02, 0.1, 0.5, 0.9, 1.0])
def test_zero_mean_noise_keeps_every_level_where_it_was(level):
    out = _noisy("zero-mean", level)
    assert 0 <= out.min() and out.max() <= 1
    assert out.mean() == pytest.approx(level, abs=0.15 / 255)  # within 0.15 levels
    if 0.05 < level < 0.95:
        assert out.std() > 2 / 255  # real noise, not none


def test_clipped_linear_noise_shifts_levels_and_zero_mean_does_not():
    """What the old model taught: black comes out brighter (clipped at 0), shadows darker
    (the sRGB curve's bend); the zero-mean model shifts neither."""
    assert _noisy("clipped-linear", 0.0).mean() * 255 > 3
    assert _noisy("clipped-linear", 0.1).mean() * 255 < 0.1 * 255 - 0.3
    for level in (0.0, 0.1):
        assert abs(_noisy("zero-mean", level).mean() - level) * 255 < 0.15


def test_zero_mean_noise_follows_the_poisson_gaussian_deviation():
    """Away from black and white its deviation is the linear-light one times the curve's slope."""
    level = 0.5
    x = float(srgb_to_linear(np.float32(level)))
    expected = np.sqrt(2e-3 * x + 4e-3**2) * (1.055 / 2.4) * x ** (1 / 2.4 - 1)
    assert _noisy("zero-mean", level).std() == pytest.approx(expected, rel=0.05)


def test_unknown_noise_model_is_refused():
    with pytest.raises(ConfigError, match="noise_model"):
        Degradation(noise_model="gaussian")


def test_srgb_blur_keeps_the_mean_and_linear_blur_brightens_texture():
    img = image(3)
    cfg = only("trajectory", degradation=CLEAN, kernel_size=9, min_extent=7.0)  # reach 3.5 px: the margin holds it
    lin, _, info_lin = synthesize_pair(img, np.random.default_rng(4), cfg)
    srgb, _, info_srgb = synthesize_pair(img, np.random.default_rng(4), dataclasses.replace(cfg, srgb_blur_prob=1.0))
    assert (info_lin["blur_domain"], info_srgb["blur_domain"]) == ("linear", "srgb")
    assert abs(srgb.mean() - img.mean()) * 255 < 0.1  # the image's mean level, to a tenth of a level
    assert (lin.mean() - img.mean()) * 255 > 1.0
    assert grad_energy(srgb) < 0.8 * grad_energy(img)


def test_srgb_blur_of_an_edge_is_the_average_of_its_values():
    edge = np.zeros((40, 40, 3), np.float32)
    edge[:, 20:] = 1.0
    cfg = only("usrnet", degradation=CLEAN, srgb_blur_prob=1.0)
    box = np.zeros((25, 25), np.float32)
    box[12, 10:15] = 0.2  # a horizontal 5 px box
    bank = KernelBank(usrnet=(box,))
    blurry, _, info = synthesize_pair(edge, np.random.default_rng(0), cfg, bank)
    row = blurry[20, 17:24, 0]
    assert info["blur_domain"] == "srgb"
    assert sorted(np.round(row * 5).tolist()) == np.round(row * 5).tolist()  # a ramp in steps of 1/5
    mid = blurry[20, 20, 0]
    lin, _, _ = synthesize_pair(edge, np.random.default_rng(0), dataclasses.replace(cfg, srgb_blur_prob=0.0), bank)
    assert lin[20, 20, 0] > mid + 0.1  # in linear light the same blur is much brighter there


def test_small_source_blurs_by_one_to_two_pixels():
    cfg = only("small", degradation=CLEAN)
    for seed in range(8):
        blurry, sharp, info = synthesize_pair(image(), np.random.default_rng(seed), cfg)
        assert info["source"] == "small" and 1.0 <= info["params"]["extent_px"] <= 2.0 + 1e-6
        assert 0 < np.abs(blurry - sharp).mean() < 0.05
    with pytest.raises(ConfigError, match="small_extent"):
        SynthConfig(small_extent=(2.0, 1.0))


def test_unblurred_pairs_differ_only_by_noise():
    blurry, sharp, info = synthesize_pair(image(), np.random.default_rng(0), only("none", degradation=CLEAN))
    assert info["source"] == "none" and np.abs(blurry - sharp).max() < 1e-6


def test_unblurred_pairs_can_ask_for_their_own_degraded_input():
    """none_target='input': noise and JPEG are in both halves, so the pair is exactly the identity;
    'clean' (the default) asks the network to remove them."""
    noisy = Degradation(noise_prob=1.0, jpeg_prob=1.0, clip_prob=0.0, noise_model="zero-mean")
    for seed in range(3):
        clean = synthesize_pair(image(), np.random.default_rng(seed), only("none", degradation=noisy))
        same = synthesize_pair(image(), np.random.default_rng(seed), only("none", degradation=noisy, none_target="input"))
        assert np.array_equal(clean[0], same[0])  # the same draws: only the target differs
        assert np.abs(clean[0] - clean[1]).max() > 2 / 255  # noise and JPEG to remove
        assert np.array_equal(same[0], same[1]) and same[1] is not same[0]
    blurred = synthesize_pair(image(), np.random.default_rng(0), only("trajectory", degradation=noisy, none_target="input"))
    assert np.abs(blurred[0] - blurred[1]).max() > 2 / 255  # blurred pairs keep their clean target
    with pytest.raises(ConfigError, match="none_target"):
        SynthConfig(none_target="noisy")


def test_the_original_mixture_draws_the_same_pairs_with_the_new_fields_at_zero():
    """srgb_blur_prob, w_small and the noise model at their defaults take no random numbers, so
    the validation sets and old recipes make the very pairs they made before."""
    bank = synthetic_bank()
    for seed in range(6):
        a = synthesize_pair(image(), np.random.default_rng(seed), SynthConfig(), bank)
        rng = np.random.default_rng(seed)
        b = synthesize_pair(image(), rng, SynthConfig(srgb_blur_prob=0.0, w_small=0.0), bank)
        assert np.array_equal(a[0], b[0]) and a[2]["blur_domain"] == "linear"
