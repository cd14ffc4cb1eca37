"""lmfn_cli.metrics against independent references: scikit-image values computed once and written
down here, plain-numpy transcriptions of MATLAB's ssim.m and of the Köhler benchmark's
eval_image.m, and hand formulas for PSNR."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lmfn_cli.metrics import KohlerScore, kohler_psnr, psnr, rgb_to_y, ssim


def _make_images() -> dict[str, np.ndarray]:
    """Deterministic uint8 HxWx3 / HxW test images, numpy only (the scikit-image reference values
    below were computed by running this same function)."""
    rng = np.random.default_rng(0)
    h, w = 40, 48
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    base = np.stack([40 + 3.0 * xx + 1.5 * yy,
                     210 - 2.5 * xx + 0.5 * yy,
                     128 + 70 * np.sin(xx / 5.0) * np.cos(yy / 7.0)], axis=-1)
    sharp = np.clip(np.round(base + 60 * (rng.random((h, w, 3)) - 0.5)), 0, 255).astype(np.uint8)
    pad = np.pad(sharp.astype(np.float64), ((2, 2), (2, 2), (0, 0)), mode="edge")
    blurred = np.round(sum(pad[i:i + h, j:j + w] for i in range(5) for j in range(5)) / 25).astype(np.uint8)
    noisy = np.clip(np.round(sharp + 50 * (rng.random((h, w, 3)) - 0.5)), 0, 255).astype(np.uint8)
    return {
        "sharp": sharp,
        "blurred": blurred,
        "noisy": noisy,
        "gray_sharp": np.round(sharp.mean(axis=2)).astype(np.uint8),
        "gray_blurred": np.round(blurred.mean(axis=2)).astype(np.uint8),
    }


IMAGES = _make_images()


@pytest.fixture(autouse=True)
def _one_thread():
    """These tensors are tiny: one thread is faster, and avoids stalls next to a busy CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _t(a: np.ndarray) -> torch.Tensor:
    """HxWx3 or HxW uint8 -> (C,H,W) float64 in [0,1] (exactly on the 8-bit levels)."""
    x = torch.from_numpy(np.ascontiguousarray(a)).double() / 255
    return x.permute(2, 0, 1) if x.dim() == 3 else x[None]


def test_generated_images_are_the_ones_the_references_were_computed_on():
    sums = {k: int(v.sum()) for k, v in IMAGES.items()}
    assert sums == {"sharp": 820470, "blurred": 820541, "noisy": 820294,
                    "gray_sharp": 273497, "gray_blurred": 273495}


# --- SSIM, gaussian variant vs scikit-image ---------------------------------------------------
# Computed once with scikit-image 0.26.0 (numpy 2.4.6, scipy 1.17.1) on the uint8 arrays of
# _make_images():
#   structural_similarity(a, b, channel_axis=-1, gaussian_weights=True, sigma=1.5,
#                         use_sample_covariance=False, data_range=255)
# (channel_axis omitted for the grey pair; for "y", a and b are the float64 BT.601 luma
#  16 + (65.481 R + 128.553 G + 24.966 B)/255 of the RGB arrays; for "crop4", a[4:-4, 4:-4]).
SKIMAGE_SSIM = {
    ("sharp", "blurred"): 0.35373752572244394,
    ("sharp", "noisy"): 0.7838885333006637,
    ("blurred", "noisy"): 0.2582218777488588,
    ("gray_sharp", "gray_blurred"): 0.5009200184775664,
}
SKIMAGE_SSIM_Y_SHARP_BLURRED = 0.4237734599513054
SKIMAGE_SSIM_CROP4_SHARP_BLURRED = 0.35738462970601503


@pytest.mark.parametrize("pair", list(SKIMAGE_SSIM))
def test_gaussian_ssim_matches_skimage(pair):
    a, b = (_t(IMAGES[k]) for k in pair)
    assert ssim(a, b).item() == pytest.approx(SKIMAGE_SSIM[pair], abs=1e-8)  # brief: 1e-4
    assert ssim(a, b, variant="gaussian").item() == ssim(a, b).item()


def test_gaussian_ssim_y_channel_and_crop_border_match_skimage():
    a, b = _t(IMAGES["sharp"]), _t(IMAGES["blurred"])
    assert ssim(a, b, y_channel=True).item() == pytest.approx(SKIMAGE_SSIM_Y_SHARP_BLURRED, abs=1e-8)
    assert ssim(a, b, crop_border=4).item() == pytest.approx(SKIMAGE_SSIM_CROP4_SHARP_BLURRED, abs=1e-8)


def test_ssim_batches_float32_and_uint8_inputs():
    a, b = _t(IMAGES["sharp"]), _t(IMAGES["blurred"])
    batch = ssim(torch.stack([a, b]), torch.stack([b, b]))
    assert batch.shape == (2,) and batch.dtype == torch.float64
    assert batch[0].item() == pytest.approx(SKIMAGE_SSIM[("sharp", "blurred")], abs=1e-12)
    assert batch[1].item() == pytest.approx(1.0, abs=1e-12)
    assert ssim(a.float(), b.float()).item() == pytest.approx(batch[0].item(), abs=1e-12)
    u8 = torch.from_numpy(IMAGES["sharp"]).permute(2, 0, 1), torch.from_numpy(IMAGES["blurred"]).permute(2, 0, 1)
    assert ssim(*u8).item() == pytest.approx(batch[0].item(), abs=1e-12)


# --- SSIM, matlab variant vs a plain-numpy transcription of ssim.m ----------------------------


def _matlab_ssim_reference(a: np.ndarray, b: np.ndarray) -> float:
    """MATLAB's ssim(A, ref) for uint8 arrays, from the ssim.m source: an HxWx3 array is a 3-D
    volume filtered by an 11x11x11 Gaussian (ndgrid, sigma 1.5, normalised), an HxW image by an
    11x11 one, both with imfilter(..., 'replicate') (np.pad mode 'edge' in every dimension, the
    channel axis included); 'same'-size SSIM map; its mean. Explicit loops, no separability."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    r, sigma = 5, 1.5
    grid = np.mgrid[(slice(-r, r + 1),) * a.ndim]
    k = np.exp(-sum(g * g for g in grid) / (2 * sigma * sigma))
    k[k < np.finfo(np.float64).eps * k.max()] = 0
    k /= k.sum()

    def filt(v: np.ndarray) -> np.ndarray:
        p = np.pad(v, r, mode="edge")
        out = np.empty(v.shape)
        for idx in np.ndindex(v.shape):
            out[idx] = np.sum(p[tuple(slice(i, i + 2 * r + 1) for i in idx)] * k)
        return out

    mux, muy = filt(a), filt(b)
    sx = filt(a * a) - mux**2
    sy = filt(b * b) - muy**2
    sxy = filt(a * b) - mux * muy
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    m = ((2 * mux * muy + c1) * (2 * sxy + c2)) / ((mux**2 + muy**2 + c1) * (sx + sy + c2))
    return float(m.mean())


def _small_pair(seed: int, h: int = 12, w: int = 14):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 256, (h, w, 3)).astype(np.uint8)
    a[..., 1] = a[..., 1] // 2 + 60  # channels of different contrast: the volume filter mixes them
    b = np.clip(a.astype(np.int64) + rng.integers(-40, 41, (h, w, 3)), 0, 255).astype(np.uint8)
    return a, b


def test_matlab_ssim_matches_numpy_transcription_of_ssim_m():
    for seed in (1, 2):
        a, b = _small_pair(seed)
        ours = ssim(_t(a), _t(b), variant="matlab").item()
        assert ours == pytest.approx(_matlab_ssim_reference(a, b), abs=1e-10)


def test_matlab_ssim_grey_y_channel_and_crop_border():
    a, b = _small_pair(3, 14, 16)
    ga, gb = a[..., 0], b[..., 0]
    assert ssim(_t(ga), _t(gb), variant="matlab").item() == pytest.approx(
        _matlab_ssim_reference(ga, gb), abs=1e-10)
    ya, yb = (16 + (65.481 * v[..., 0] + 128.553 * v[..., 1] + 24.966 * v[..., 2]) / 255
              for v in (a.astype(np.float64), b.astype(np.float64)))
    assert ssim(_t(a), _t(b), variant="matlab", y_channel=True).item() == pytest.approx(
        _matlab_ssim_reference(ya, yb), abs=1e-10)
    assert ssim(_t(a), _t(b), variant="matlab", crop_border=2).item() == pytest.approx(
        _matlab_ssim_reference(a[2:-2, 2:-2], b[2:-2, 2:-2]), abs=1e-10)


def test_matlab_and_gaussian_variants_differ_on_colour_images():
    a, b = _t(IMAGES["sharp"]), _t(IMAGES["blurred"])
    g, m = ssim(a, b).item(), ssim(a, b, variant="matlab").item()
    assert abs(g - m) > 0.1  # the 3-D filter mixes channels: the variant matters
    assert ssim(a, a, variant="matlab").item() == pytest.approx(1.0, abs=1e-12)


def test_ssim_rejects_bad_arguments():
    a = _t(IMAGES["sharp"])
    with pytest.raises(ValueError, match="variant"):
        ssim(a, a, variant="skimage")
    with pytest.raises(ValueError, match="11x11"):
        ssim(a[:, :10], a[:, :10])
    with pytest.raises(ValueError, match="shapes differ"):
        ssim(a, a[:, 1:])


# --- PSNR --------------------------------------------------------------------------------------


def _np_psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / mse))


def test_psnr_rgb_y_channel_and_crop_border_against_numpy():
    a, b = IMAGES["sharp"], IMAGES["blurred"]
    ta, tb = _t(a), _t(b)
    assert psnr(ta, tb).item() == pytest.approx(_np_psnr(a, b), abs=1e-10)
    y = lambda v: 16 + (65.481 * v[..., 0] + 128.553 * v[..., 1] + 24.966 * v[..., 2]) / 255.0  # noqa: E731
    assert psnr(ta, tb, y_channel=True).item() == pytest.approx(
        _np_psnr(y(a.astype(np.float64)), y(b.astype(np.float64))), abs=1e-10)
    assert psnr(ta, tb, crop_border=3).item() == pytest.approx(_np_psnr(a[3:-3, 3:-3], b[3:-3, 3:-3]), abs=1e-10)
    ga, gb = IMAGES["gray_sharp"], IMAGES["gray_blurred"]
    assert psnr(_t(ga), _t(gb)).item() == pytest.approx(_np_psnr(ga, gb), abs=1e-10)
    assert psnr(_t(ga), _t(gb), y_channel=True).item() == psnr(_t(ga), _t(gb)).item()


def test_rgb_to_y_is_the_bt601_studio_swing_luma():
    x = torch.tensor([[0.0, 255.0], [0.0, 255.0], [0.0, 255.0]], dtype=torch.float64).view(1, 3, 1, 2)
    assert rgb_to_y(x).flatten().tolist() == pytest.approx([16.0, 235.0], abs=1e-12)


def test_psnr_identical_images_batches_and_legacy_calls():
    a, b = _t(IMAGES["sharp"]), _t(IMAGES["blurred"])
    assert math.isinf(psnr(a, a).item())
    out = psnr(torch.stack([a, a]), torch.stack([b, a]))
    assert out.shape == (2,) and out.dtype == torch.float64 and math.isinf(out[1].item())
    assert psnr(a, b).shape == (1,)
    assert psnr(a, b).item() == psnr(a, b, y_channel=False, crop_border=0).item()


def test_psnr_quantises_to_8_bit_levels():
    a, b = _t(IMAGES["sharp"]), _t(IMAGES["blurred"])
    ref = psnr(a, b).item()
    jitter = (torch.rand(a.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64) - 0.5) * 0.98 / 255
    assert psnr(a + jitter, b).item() == ref  # within half a level: the same saved image
    assert psnr((a + 0.6 / 255).float(), b).item() != ref
    assert psnr(a * 2 - 0.5, b).item() == psnr((a * 2 - 0.5).clamp(0, 1), b).item()  # clamped first


def test_psnr_rejects_bad_arguments():
    a = _t(IMAGES["sharp"])
    with pytest.raises(ValueError, match="crop_border"):
        psnr(a, a, crop_border=-1)
    with pytest.raises(ValueError, match="crop_border"):
        psnr(a, a, crop_border=20)
    with pytest.raises(ValueError, match="shape"):
        psnr(a[0], a[0])


# --- Köhler et al. benchmark score -------------------------------------------------------------

FRAME_OFFSETS = [(8, 8), (9, 6), (5, 9), (10, 11), (8, 7)]  # where each frame looks at the scene
H, W = 48, 56


def _kohler_scene(seed: int = 0):
    """A smooth, textured scene in [0, 0.7] and five 'sharp frames': views of it at FRAME_OFFSETS,
    each with its own sensor noise (so only one frame matches a restored image exactly). Smooth,
    as photographs are: the benchmark estimates the gain before aligning, which is only accurate
    when a shift of a few pixels barely changes the image."""
    rng = np.random.default_rng(seed)
    hh, ww = H + 20, W + 20
    yy, xx = np.mgrid[0:hh, 0:ww].astype(np.float64)
    base = 0.35 + 0.15 * np.sin(xx / 9.0) * np.cos(yy / 11.0) + 0.001 * (xx - yy)
    tex = np.pad(rng.random((3, hh, ww)), ((0, 0), (1, 1), (1, 1)), mode="edge")
    tex = sum(tex[:, i:i + hh, j:j + ww] for i in range(3) for j in range(3)) / 9 - 0.5
    scene = base[None] + 0.2 * tex
    noisy = [np.clip(scene + 0.04 * (rng.random(scene.shape) - 0.5), 0, 0.7) for _ in FRAME_OFFSETS]
    frames = [n[:, oy:oy + H, ox:ox + W] for n, (oy, ox) in zip(noisy, FRAME_OFFSETS)]
    return noisy, frames


def _eval_image_reference(z: np.ndarray, frames: list[np.ndarray]):
    """Plain-numpy transcription of the PSNR branch of the benchmark's eval_image.m.
    z, frames: HxWx3 float64 in 0..255. Returns [(psnr, (row_shift, col_shift), gain)]."""
    out = []
    for x in frames:
        xf = np.fft.fft2(x.mean(axis=2))
        gain = np.sum(x * z) / np.sum(z * z)
        zs = gain * z
        zf = np.fft.fft2(zs.mean(axis=2))
        cc = np.abs(np.fft.ifft2(xf * np.conj(zf)))  # MATLAB's max compares complex by abs
        m, n = cc.shape
        cloc = int(cc.max(axis=0).argmax())  # [max1,loc1] = max(CC); [max2,loc2] = max(max1)
        rloc = int(cc[:, cloc].argmax())
        rloc, cloc = rloc + 1, cloc + 1  # 1-based, as in dftregistration.m
        row = rloc - m - 1 if rloc > m // 2 else rloc - 1
        col = cloc - n - 1 if cloc > n // 2 else cloc - 1
        # imshift(v, [row col], 'same') = shiftmatrix crops, then placed in zeros: out(i) = v(i - t)
        zr, cr = np.zeros_like(zs), np.zeros(x.shape)
        for i in range(m):
            for j in range(n):
                if 0 <= i - row < m and 0 <= j - col < n:
                    zr[i, j] = zs[i - row, j - col]
                    cr[i, j] = 1.0
        xr = x * cr
        luma = lambda v: 0.299 * v[..., 0] + 0.587 * v[..., 1] + 0.114 * v[..., 2]  # noqa: E731
        mse = np.mean((luma(xr) - luma(zr)) ** 2)  # metrix_mse: the whole image
        out.append((float(10 * np.log10(255.0**2 / mse)), (row, col), float(gain)))
    return out


def test_kohler_finds_frame_shift_and_gain():
    noisy, frames = _kohler_scene()
    ry, rx = 2, -3  # restored[i, j] = frame3[i + ry, j + rx] / 0.8
    oy, ox = FRAME_OFFSETS[3]
    restored = noisy[3][:, oy + ry:oy + ry + H, ox + rx:ox + rx + W] / 0.8
    score = kohler_psnr(torch.from_numpy(restored), [torch.from_numpy(f) for f in frames])
    assert isinstance(score, KohlerScore)
    assert score.frame == 3
    assert score.shift == (ry, rx)  # aligned[y, x] = gain * restored[y - dy, x - dx]
    assert score.gain == pytest.approx(0.8, rel=0.02)  # estimated before alignment, as in eval_image.m
    assert score.psnr == max(score.frame_psnrs) == score.frame_psnrs[3]
    assert all(score.psnr > p + 3 for i, p in enumerate(score.frame_psnrs) if i != 3)


def test_kohler_exact_gain_without_shift():
    _, frames = _kohler_scene()
    restored = torch.from_numpy(frames[3] / 0.8)
    score = kohler_psnr(restored, torch.from_numpy(np.stack(frames)), quantize=False)
    assert (score.frame, score.shift) == (3, (0, 0))
    assert score.gain == pytest.approx(0.8, abs=1e-12)
    assert score.psnr > 200  # float64 rounding only


def test_kohler_matches_numpy_transcription_of_eval_image_with_noise():
    noisy, frames = _kohler_scene(seed=1)
    oy, ox = FRAME_OFFSETS[1]
    rng = np.random.default_rng(7)
    # restored[i, j] = 1.1 * frame1[i - 1, j + 2] + noise
    restored = noisy[1][:, oy - 1:oy - 1 + H, ox + 2:ox + 2 + W] * 1.1 + 0.01 * rng.standard_normal((3, H, W))
    restored = np.clip(restored, 0, 1)
    score = kohler_psnr(torch.from_numpy(restored), [torch.from_numpy(f) for f in frames], quantize=False)
    ref = _eval_image_reference(restored.transpose(1, 2, 0) * 255, [f.transpose(1, 2, 0) * 255 for f in frames])
    assert score.frame_psnrs == pytest.approx([r[0] for r in ref], abs=1e-9)
    assert score.frame == 1 and score.shift == ref[1][1] == (-1, 2)
    assert score.gain == pytest.approx(ref[1][2], abs=1e-12)
    assert score.gain == pytest.approx(1 / 1.1, rel=0.02)
    assert all(score.psnr > p + 2 for i, p in enumerate(score.frame_psnrs) if i != 1)
    # MSE over the whole image (masked pixels as zero error), i.e. the valid-region PSNR plus
    # 10 log10(H W / valid pixels):
    z = torch.from_numpy(restored).double() * 255 * score.gain
    x = torch.from_numpy(frames[1]).double() * 255
    dy, dx = score.shift
    xv = x[:, max(dy, 0):H + min(dy, 0), max(dx, 0):W + min(dx, 0)]
    zv = z[:, max(-dy, 0):H + min(-dy, 0), max(-dx, 0):W + min(-dx, 0)]
    luma = lambda v: 0.299 * v[0] + 0.587 * v[1] + 0.114 * v[2]  # noqa: E731
    valid_psnr = 10 * math.log10(255**2 / float((luma(xv) - luma(zv)).pow(2).mean()))
    assert score.psnr == pytest.approx(valid_psnr + 10 * math.log10(H * W / xv[0].numel()), abs=1e-9)


def test_kohler_max_shift_and_errors():
    noisy, frames = _kohler_scene()
    oy, ox = FRAME_OFFSETS[0]
    restored = torch.from_numpy(noisy[0][:, oy + 2:oy + 2 + H, ox:ox + W])
    fr = [torch.from_numpy(f) for f in frames]
    full = kohler_psnr(restored, fr)
    assert (full.frame, full.shift) == (0, (2, 0))
    limited = kohler_psnr(restored, fr, max_shift=1)
    assert max(abs(limited.shift[0]), abs(limited.shift[1])) <= 1
    assert kohler_psnr(restored, fr, max_shift=0).shift == (0, 0)
    with pytest.raises(ValueError, match="empty"):
        kohler_psnr(restored, [])
    with pytest.raises(ValueError, match="shape"):
        kohler_psnr(restored, [fr[0][:, 1:]])
    with pytest.raises(ValueError, match="max_shift"):
        kohler_psnr(restored, fr, max_shift=-1)


# --- CUDA --------------------------------------------------------------------------------------


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_metrics_on_cuda_match_cpu():
    a, b = _t(IMAGES["sharp"]).float(), _t(IMAGES["blurred"]).float()
    for fn in (psnr, lambda p, q: ssim(p, q), lambda p, q: ssim(p, q, variant="matlab"),
               lambda p, q: ssim(p, q, y_channel=True, crop_border=2)):
        on_gpu = fn(a.cuda(), b.cuda())
        assert on_gpu.device.type == "cuda"
        assert on_gpu.cpu().item() == pytest.approx(fn(a, b).item(), abs=1e-10)
    noisy, frames = _kohler_scene()
    restored = torch.from_numpy(noisy[3][:, 10:10 + H, 8:8 + W])
    fr = [torch.from_numpy(f) for f in frames]
    cpu, gpu = kohler_psnr(restored, fr), kohler_psnr(restored.cuda(), fr)
    assert (gpu.frame, gpu.shift) == (cpu.frame, cpu.shift)
    assert gpu.frame_psnrs == pytest.approx(cpu.frame_psnrs, abs=1e-9)
