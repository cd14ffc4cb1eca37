"""Deblurring by a blur kernel: deconvolution, kernel files, estimation, the method's choice, the CLI."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from lmfn_cli.cli import main
from lmfn_cli.deconvolution import (_grad, _grad_adjoint, centre_kernel, convolve, deconvolve, kernel_extent,
                                    normalise_kernel, otf)
from lmfn_cli.errors import KernelError
from lmfn_cli.images import read_image, write_image
from lmfn_cli.kernel_estimation import (EstimationSettings, _crop, _estimate_on, _r_map, _refine, _scales, _toeplitz,
                                        estimate_kernel, kernel_agreement, luminance, textured_regions)
from lmfn_cli.kernel_files import kernel_path_for, read_kernel, write_kernel
from lmfn_cli.kernel_method import KernelOptions, deblur_by_kernel, restore_with_method


def line_kernel(length: int, angle: float, size: int) -> np.ndarray:
    """A straight motion blur of ``length`` px at ``angle`` (radians), bilinearly drawn, centred."""
    k = np.zeros((size, size))
    c = size // 2
    for t in np.linspace(-(length - 1) / 2, (length - 1) / 2, 4 * length):
        x, y = c + t * math.cos(angle), c + t * math.sin(angle)
        x0, y0 = math.floor(x), math.floor(y)
        fx, fy = x - x0, y - y0
        for dy, wy in ((0, 1 - fy), (1, fy)):
            for dx, wx in ((0, 1 - fx), (1, fx)):
                k[y0 + dy, x0 + dx] += wy * wx
    return k / k.sum()


def shapes(h: int, w: int, seed: int = 0, count: int = 40) -> np.ndarray:
    """(h,w,3) float: flat rectangles and discs of random colours, edges in every direction."""
    rng = np.random.default_rng(seed)
    img = np.full((h, w, 3), 0.5)
    yy, xx = np.mgrid[:h, :w]
    for _ in range(count):
        colour = rng.uniform(0.05, 0.95, 3)
        if rng.random() < 0.5:
            y0, x0 = rng.integers(0, h - 8), rng.integers(0, w - 8)
            img[y0 : y0 + rng.integers(6, h // 3), x0 : x0 + rng.integers(6, w // 3)] = colour
        else:
            cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(4, h / 6)
            img[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = colour
    return img


def psnr(a: np.ndarray, b: np.ndarray, border: int = 12) -> float:
    inner = (slice(border, -border), slice(border, -border))
    return 10 * math.log10(1 / float(np.mean((a[inner] - b[inner]) ** 2)))


# ---- kernels and deconvolution ---------------------------------------------------------------

def test_normalise_and_centre_kernel():
    k = np.zeros((7, 7))
    k[0, 0], k[0, 1] = 2.0, 2.0
    c = centre_kernel(k).numpy()
    assert c.sum() == pytest.approx(1.0)
    ys, xs = np.nonzero(c)
    assert (ys.mean(), xs.mean()) == pytest.approx((3.0, 3.0), abs=0.5)
    assert normalise_kernel(np.zeros((3, 3))).numpy()[1, 1] == 1.0  # empty -> a delta
    assert normalise_kernel(np.array([[0.0, -1, 0], [0, 4, 0], [0, 0, 0]])).min() >= 0
    # a view with negative strides (np.flip, k[::-1]) is taken as it is, not refused by torch
    np.testing.assert_allclose(normalise_kernel(np.flip(k)).numpy(), np.flip(k) / 4.0)
    img = shapes(32, 32)
    np.testing.assert_allclose(deblur_by_kernel(img, k[::-1, ::-1]), deblur_by_kernel(img, np.flip(k).copy()))


def test_kernel_extent_of_a_delta_and_a_line():
    delta = np.zeros((9, 9))
    delta[4, 4] = 1
    assert kernel_extent(delta) == 0.0
    assert kernel_extent(line_kernel(15, 0.3, 21)) == pytest.approx(15 / math.sqrt(3), rel=0.1)


def test_deconvolution_with_the_true_kernel_gains_and_keeps_shape_and_range():
    sharp = shapes(96, 112, seed=1)
    k = line_kernel(9, 0.7, 15)
    blurry = np.clip(convolve(sharp, k) + np.random.default_rng(0).normal(0, 1 / 255, sharp.shape), 0, 1)
    out = deconvolve(blurry, k)
    assert out.shape == sharp.shape and out.min() >= 0 and out.max() <= 1
    assert psnr(out, sharp) > psnr(blurry, sharp) + 4
    assert deconvolve(blurry[..., 0], k).shape == (96, 112)  # grayscale


def test_deconvolve_refuses_bad_kernels():
    with pytest.raises(ValueError, match="odd"):
        deconvolve(np.zeros((20, 20)), np.ones((4, 4)))
    with pytest.raises(ValueError, match="sum"):
        deconvolve(np.zeros((20, 20)), np.zeros((3, 3)))


def test_deblur_by_kernel_keeps_dtype_and_alpha():
    rgba = np.concatenate([(shapes(40, 40) * 255).astype(np.uint8), np.full((40, 40, 1), 77, np.uint8)], axis=2)
    k = line_kernel(5, 0.0, 7)
    out = deblur_by_kernel(rgba, k)
    assert out.dtype == np.uint8 and out.shape == rgba.shape
    assert (out[..., 3] == 77).all()
    grey16 = (shapes(40, 40)[..., 0] * 65535).astype(np.uint16)
    assert deblur_by_kernel(grey16, k).dtype == np.uint16


# ---- kernel files ------------------------------------------------------------------------------

def test_kernel_png_round_trip(tmp_path):
    k = line_kernel(11, 1.1, 15).astype(np.float32)
    path = write_kernel(k, tmp_path / "k.png")
    assert read_image(path).dtype == np.uint16
    back = read_kernel(path)
    assert back.shape == (15, 15) and back.sum() == pytest.approx(1.0, abs=1e-5)
    assert kernel_agreement(back, k) > 0.999
    from lmfn_cli.errors import OutputExistsError

    with pytest.raises(OutputExistsError):
        write_kernel(k, path)


def test_kernel_npy_even_sides_are_padded_and_centred(tmp_path):
    k = np.zeros((4, 6))
    k[1, 1:5] = 1
    np.save(tmp_path / "k.npy", k)
    back = read_kernel(tmp_path / "k.npy")
    assert back.shape == (7, 7) and back.sum() == pytest.approx(1.0)
    assert back[3].sum() == pytest.approx(1.0)  # the row moved to the middle


@pytest.mark.parametrize("content, problem", [
    (np.zeros((5, 5)), "empty"),
    (np.array([[0.0, -1, 0], [0, 1, 0], [0, 0, 0]]), "negative"),
    (np.ones((3, 3, 2, 2)), "2-D"),
    (np.full((3, 3), np.nan), "NaN"),
    (np.ones((300, 3)), "at most"),
])
def test_bad_kernel_arrays_give_one_clear_error(tmp_path, content, problem):
    path = tmp_path / "bad.npy"
    np.save(path, content)
    with pytest.raises(KernelError, match=problem) as exc:
        read_kernel(path)
    assert str(path) in str(exc.value) and "\n" not in str(exc.value)


def test_unreadable_kernel_files(tmp_path):
    (tmp_path / "k.png").write_bytes(b"not a picture")
    with pytest.raises(KernelError, match="not an image"):
        read_kernel(tmp_path / "k.png")
    with pytest.raises(KernelError, match="cannot read"):
        read_kernel(tmp_path / "missing.png")


def test_kernel_path_is_beside_the_output(tmp_path):
    assert kernel_path_for(tmp_path / "a.jpg") == tmp_path / "a.kernel.png"


# ---- estimation --------------------------------------------------------------------------------

def test_textured_regions_do_not_overlap():
    luma = np.zeros((100, 200))
    luma[10:40, 10:40] = np.random.default_rng(0).random((30, 30))
    first, second = textured_regions(luma, 50)
    assert first[2] == second[2] == 50
    assert first[0] <= 10 and first[1] <= 10
    assert abs(first[0] - second[0]) >= 50 or abs(first[1] - second[1]) >= 50


def aligned_psnr(a: np.ndarray, b: np.ndarray) -> float:
    return max(psnr(np.roll(a, (dy, dx), (0, 1)), b) for dy in range(-3, 4) for dx in range(-3, 4))


@pytest.mark.parametrize("length, angle", [(9, 0.4), (13, 2.0)])
def test_estimation_recovers_a_known_kernel(length, angle):
    sharp = shapes(256, 256, seed=length, count=80)
    true = line_kernel(length, angle, 15)
    blurry = np.clip(convolve(sharp, true) + np.random.default_rng(1).normal(0, 1 / 255, sharp.shape), 0, 1)
    est = estimate_kernel(blurry, EstimationSettings(kernel_size=15, region=128))
    assert est.kernel.shape == (15, 15) and est.kernel.sum() == pytest.approx(1.0, abs=1e-5)
    assert est.kernel.min() >= 0
    assert kernel_agreement(est.kernel, true) > 0.8
    assert est.extent > 3 and est.agreement is not None and est.agreement > 0.75
    # deconvolving by it beats the blurry input clearly, and comes near the true kernel's result
    by_est = aligned_psnr(deconvolve(blurry, est.kernel, method="tv", prior=1.5e-3), sharp)
    by_true = aligned_psnr(deconvolve(blurry, true, method="tv", prior=1.5e-3), sharp)
    assert by_est > psnr(blurry, sharp) + 2
    assert by_est > by_true - 10 * math.log10(3)  # Levin et al.'s success: error ratio <= 3


def test_refinement_clears_a_speck_and_keeps_the_path():
    # a kernel with a detached speck holding 20% of its mass (more than `_clean` removes): the
    # support-detection refinement clears it against the photo's evidence and keeps the line
    sharp = shapes(160, 160, seed=5, count=60)
    true = line_kernel(9, 0.7, 15)
    blurry = np.clip(convolve(sharp, true) + np.random.default_rng(2).normal(0, 1 / 255, sharp.shape), 0, 1)
    start = true * 0.8
    start[1:4, 10:13] += 0.2 / 9
    refined = _refine(torch.from_numpy(luminance(blurry)).double(), torch.from_numpy(start),
                      EstimationSettings(kernel_size=15, region=80), 1e-3).numpy()
    assert refined.min() >= 0 and refined.sum() == pytest.approx(1.0)
    assert kernel_agreement(start, true) < 0.96
    assert kernel_agreement(refined, true) > 0.98
    assert refined[:5, 8:].sum() < 0.02  # the speck's corner
    with pytest.raises(ValueError, match="refine_weight"):
        EstimationSettings(refine_weight=-1)


def test_r_map_is_high_on_a_blurred_edge_and_low_on_fine_texture_and_flat_areas():
    ramp = np.clip((np.arange(64) - 27.5) / 9 + 0.5, 0, 1)  # an edge blurred over 9 px
    edge = torch.from_numpy(np.tile(ramp, (64, 1)))
    r = _r_map(*_grad(edge))
    assert float(r[32, 27]) > 0.8 and float(r[32, 5]) == 0.0  # on the edge; on the flat side
    texture = torch.from_numpy(0.5 + 0.1 * np.random.default_rng(0).standard_normal((64, 64)))
    assert float(_r_map(*_grad(texture))[8:-8, 8:-8].median()) < 0.3  # gradients that cancel out


def test_a_photo_with_room_for_one_region_is_checked_from_two_starts():
    # 128 px: no room for two squares of 8 x 15 px, so the square is searched again from a
    # vertical start; a clear blur is found from both starts and may be used
    sharp = shapes(128, 128, seed=11, count=60)
    true = line_kernel(9, 0.4, 15)
    blurry = np.clip(convolve(sharp, true) + np.random.default_rng(3).normal(0, 1 / 255, sharp.shape), 0, 1)
    seen = []
    est = estimate_kernel(blurry, EstimationSettings(kernel_size=15, region=128), on_progress=lambda d, t: seen.append(t))
    assert est.checked == "starts" and est.region == (0, 0, 128)
    assert est.agreement > 0.9 and kernel_agreement(est.kernel, true) > 0.8
    assert seen[-1] == len(seen) == 2 * (len(_scales(15)) + 1)  # two searches, each its scales and refinement
    from lmfn_cli.kernel_method import decide

    assert decide(est, "kernel")[0] == "kernel" and "two searches of one region" in decide(est, "kernel")[1]
    # the second search really starts elsewhere: from a vertical start the coarsest scale differs
    square = luminance(blurry)
    first = _estimate_on(square, EstimationSettings(kernel_size=3, region=128, refine_weight=0), lambda: None)
    second = _estimate_on(square, EstimationSettings(kernel_size=3, region=128, refine_weight=0), lambda: None,
                          vertical=True)
    assert not torch.equal(first, second)
    unchecked = estimate_kernel(blurry, EstimationSettings(kernel_size=15, region=128, check=False))
    assert unchecked.agreement is None and unchecked.checked is None
    first_of_two = estimate_kernel(blurry, EstimationSettings(kernel_size=15, region=128, prefer_compact=False))
    np.testing.assert_array_equal(unchecked.kernel, first_of_two.kernel)  # the first search is the same


@pytest.mark.parametrize("two_regions", [False, True])
def test_the_more_compact_of_the_two_kernels_is_used(monkeypatch, two_regions):
    # a search gone wrong finds a long spurious path; the other search's short kernel is returned,
    # with its extent and (two regions) its square; prefer_compact=False keeps the first search's
    import lmfn_cli.kernel_estimation as ke

    long_path, short = line_kernel(13, 0.3, 15), line_kernel(3, 1.0, 15)
    for first, second in ((long_path, short), (short, long_path)):
        calls = iter([first, second])
        monkeypatch.setattr(ke, "_estimate_on", lambda *a, **kw: torch.from_numpy(next(calls)))
        image = shapes(128, 256 if two_regions else 128, seed=4)
        est = estimate_kernel(image, EstimationSettings(kernel_size=15, region=128))
        assert est.checked == ("regions" if two_regions else "starts")
        np.testing.assert_allclose(est.kernel, short, atol=1e-7)
        assert est.extent == pytest.approx(kernel_extent(short)) and est.extent < 2.5  # looks sharp: left unchanged
        regions = textured_regions(luminance(image), 128, 2)
        assert est.region == (regions[1 if first is long_path else 0] if two_regions else regions[0])
        calls = iter([first, second])
        kept = estimate_kernel(image, EstimationSettings(kernel_size=15, region=128, prefer_compact=False))
        np.testing.assert_allclose(kept.kernel, first, atol=1e-7)
        assert kept.agreement == pytest.approx(est.agreement)  # the check itself is the same


def test_tv_deconvolution_gains_with_the_true_kernel():
    sharp = shapes(96, 96, seed=2)
    k = line_kernel(9, 1.2, 15)
    blurry = np.clip(convolve(sharp, k) + np.random.default_rng(0).normal(0, 1 / 255, sharp.shape), 0, 1)
    assert psnr(deconvolve(blurry, k, method="tv", prior=1.5e-3), sharp) > psnr(blurry, sharp) + 4
    with pytest.raises(ValueError, match="wiener or tv"):
        deconvolve(blurry, k, method="lucy")


def test_kernel_normal_equations_matrix_is_the_fft_operator():
    # the dense matrix of the kernel solve must be the same operator as the FFT form it replaced
    rng = np.random.default_rng(3)
    shape, size = (40, 37), 7
    m = torch.fft.rfft2(torch.from_numpy(rng.normal(size=shape))).abs() ** 2
    k = torch.from_numpy(rng.normal(size=(size, size)))
    by_fft = _crop(m * otf(k, shape), shape, size)
    by_matrix = (_toeplitz(m, shape, size) @ k.reshape(-1)).reshape(size, size)
    assert torch.allclose(by_matrix, by_fft, atol=1e-9 * float(by_fft.abs().max()))


def test_gradient_adjoint_is_the_adjoint_of_the_gradient():
    rng = np.random.default_rng(4)
    x, vx, vy = (torch.from_numpy(rng.normal(size=(9, 11))) for _ in range(3))
    gx, gy = _grad(x)
    assert float((gx * vx).sum() + (gy * vy).sum()) == pytest.approx(float((x * _grad_adjoint(vx, vy)).sum()))


def test_estimation_of_a_sharp_photo_is_a_small_kernel_and_not_used():
    sharp = shapes(160, 160, seed=3)
    est = estimate_kernel(sharp, EstimationSettings(kernel_size=15, region=80))
    assert not est.usable  # too small a kernel, or two regions that disagree


def test_estimation_reports_progress_and_refuses_tiny_images():
    seen = []
    estimate_kernel(shapes(64, 64), EstimationSettings(kernel_size=7, region=32),
                    on_progress=lambda d, t: seen.append((d, t)))
    assert seen[-1][0] == seen[-1][1] and len(seen) == seen[-1][1]
    assert seen[-1][1] == 2 * (3 + 1)  # two regions, scales 3, 5 and 7 px, then the refinement
    seen.clear()
    estimate_kernel(shapes(64, 64), EstimationSettings(kernel_size=7, region=32, refine_weight=0),
                    on_progress=lambda d, t: seen.append((d, t)))
    assert [d for d, _ in seen] == list(range(1, 7)) and seen[-1][1] == 6
    with pytest.raises(ValueError, match="too small"):
        estimate_kernel(np.zeros((20, 20)), EstimationSettings(kernel_size=15, region=32))


# ---- the method's choice -----------------------------------------------------------------------

def test_sharp_photo_is_left_unchanged_or_falls_back(tiny_model):
    img = (shapes(96, 96, seed=5) * 255).astype(np.uint8)
    options = KernelOptions(method="kernel", estimation=EstimationSettings(kernel_size=9, region=48))
    done = restore_with_method(tiny_model, img, options)
    assert done.method == "none" and "left unchanged" in done.why  # looks sharp, or no kernel fits: the input
    np.testing.assert_array_equal(done.restored.pixels, img)
    blind = restore_with_method(tiny_model, img, replace(options, fallback="blind"))
    assert blind.method in ("none", "blind")  # left unchanged (looks sharp), or the network (no kernel fits)
    assert blind.restored.pixels.shape == img.shape


def test_given_kernel_is_used_and_small_images_go_blind(tiny_model):
    img = (shapes(48, 48) * 255).astype(np.uint8)
    k = line_kernel(5, 0.0, 7)
    options = KernelOptions(kernel=k, deconvolution="tv")
    done = restore_with_method(tiny_model, img, options)
    assert done.method == "kernel" and done.kernel is not None and done.estimate is None
    np.testing.assert_array_equal(done.restored.pixels,
                                  deblur_by_kernel(img, k, prior=options.prior, method=options.deconvolution))
    tiny = (shapes(24, 24) * 255).astype(np.uint8)
    done = restore_with_method(tiny_model, tiny, KernelOptions(method="auto"))
    assert done.method == "none" and "too small" in done.why and "left unchanged" in done.why
    np.testing.assert_array_equal(done.restored.pixels, tiny)
    done = restore_with_method(tiny_model, tiny, KernelOptions(method="auto", fallback="blind"))
    assert done.method == "blind" and "too small" in done.why and "blind network" in done.why


def test_auto_needs_agreement_kernel_does_not(tiny_model, monkeypatch):
    import lmfn_cli.kernel_method as km
    from lmfn_cli.kernel_estimation import KernelEstimate

    k = line_kernel(9, 0.0, 15).astype(np.float32)
    fake = KernelEstimate(k, (0, 0, 48), agreement=0.8, extent=kernel_extent(k), checked="regions")
    monkeypatch.setattr(km, "estimate_kernel", lambda *a, **kw: fake)
    img = (shapes(64, 64) * 255).astype(np.uint8)
    assert restore_with_method(tiny_model, img, KernelOptions(method="kernel")).method == "kernel"
    auto = restore_with_method(tiny_model, img, KernelOptions(method="auto", fallback="blind"))
    assert auto.method == "blind" and "not confident" in auto.why
    auto = restore_with_method(tiny_model, img, KernelOptions(method="auto"))
    assert auto.method == "none" and "not confident" in auto.why and auto.kernel is not None
    np.testing.assert_array_equal(auto.restored.pixels, img)
    fake = KernelEstimate(k, (0, 0, 48), agreement=0.95, extent=kernel_extent(k), checked="regions")
    monkeypatch.setattr(km, "estimate_kernel", lambda *a, **kw: fake)
    assert restore_with_method(tiny_model, img, KernelOptions(method="auto")).method == "kernel"
    unchecked = KernelEstimate(k, (0, 0, 48), agreement=None, extent=kernel_extent(k))
    assert not unchecked.usable  # estimated with check=False: auto cannot confirm it
    from lmfn_cli.kernel_method import decide

    assert decide(unchecked, "kernel", "blind")[0] == "blind"
    assert "kernel not checked" in decide(unchecked, "kernel", "blind")[1]
    unstable = KernelEstimate(k, (0, 0, 48), agreement=0.5, extent=kernel_extent(k), checked="starts")
    assert decide(unstable, "kernel") == ("input", decide(unstable, "kernel")[1])
    assert "depends on where its search starts" in decide(unstable, "kernel")[1]
    assert "two searches of one region 0.50" in decide(unstable, "auto")[1]
    # auto wants two regions: a kernel two starts agree on is for --method kernel only
    steady = KernelEstimate(k, (0, 0, 48), agreement=0.99, extent=kernel_extent(k), checked="starts")
    assert not steady.usable and decide(steady, "kernel")[0] == "kernel"
    assert decide(steady, "auto")[0] == "input" and "too small to check the kernel on two regions" in decide(steady, "auto")[1]
    assert KernelEstimate(k, (0, 0, 48), agreement=0.99, extent=kernel_extent(k), checked="regions").usable
    assert decide(unchecked, "kernel") == ("input", decide(unchecked, "kernel")[1])  # the default fallback
    fake = KernelEstimate(k, (0, 0, 48), agreement=0.5, extent=kernel_extent(k), checked="regions")
    monkeypatch.setattr(km, "estimate_kernel", lambda *a, **kw: fake)
    done = restore_with_method(tiny_model, img, KernelOptions(method="kernel", fallback="blind"))
    assert done.method == "blind" and "no kernel fits" in done.why
    done = restore_with_method(tiny_model, img, KernelOptions(method="kernel"))
    assert done.method == "none" and "no kernel fits" in done.why and "left unchanged" in done.why


def test_options_are_checked():
    with pytest.raises(ValueError, match="method"):
        KernelOptions(method="magic")
    with pytest.raises(ValueError, match="prior"):
        KernelOptions(prior=0)
    with pytest.raises(ValueError, match="fallback"):
        KernelOptions(fallback="guess")


# ---- the command line --------------------------------------------------------------------------

@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def test_cli_kernel_method_saves_kernels_and_records_them(runner, tmp_path, tiny_weights):
    sharp = shapes(128, 128, seed=7, count=60)
    blurry = np.clip(convolve(sharp, line_kernel(9, 0.5, 15)), 0, 1)
    write_image(tmp_path / "in" / "shaken.png", (blurry * 255).round().astype(np.uint8))
    out = tmp_path / "out"
    result = runner.invoke(main, ["deblur", str(tmp_path / "in"), "-o", str(out), "-w", str(tiny_weights),
                                  "--method", "kernel", "--kernel-size", "15", "--save-kernel", "--json",
                                  "--html", str(out / "report.html")])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout.splitlines()[0])
    # the kernel is saved whichever method ran (a fallback shows what was estimated)
    assert record["method"] in ("kernel", "none") and record["kernel"] == str(out / "shaken.kernel.png")
    assert record["kernel_size"] == 15 and record["kernel_extent"] > 2 and record["method_why"]
    assert record["kernel_check"] == "starts" and 0 <= record["kernel_agreement"] <= 1  # 128 px: room for one region
    assert read_kernel(out / "shaken.kernel.png").shape == (15, 15)
    assert read_image(out / "shaken.png").shape == (128, 128, 3)
    html = (out / "report.html").read_text()
    assert "blur kernel, 15x15 px" in html


def test_cli_given_kernel_and_bad_kernel(runner, tmp_path, tiny_weights, photos):
    k = tmp_path / "k.npy"
    np.save(k, line_kernel(3, 1.5708, 5))
    out = tmp_path / "out"
    result = runner.invoke(main, ["deblur", str(photos[0] / "p0.png"), "-o", str(out), "-w", str(tiny_weights),
                                  "--kernel", str(k), "--json"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout.splitlines()[0])
    assert record["method"] == "kernel" and record["kernel"] is None and "given kernel" in record["method_why"]
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((3, 3)))
    result = runner.invoke(main, ["deblur", str(photos[0] / "p0.png"), "-o", str(tmp_path / "o2"), "-w",
                                  str(tiny_weights), "--kernel", str(bad)])
    assert result.exit_code == 2
    assert "bad.npy" in result.stderr and "empty" in result.stderr
    assert not (tmp_path / "o2").exists()


def test_cli_kernel_options_are_checked(runner, tmp_path, tiny_weights, photos):
    args = ["deblur", str(photos[0] / "p0.png"), "-o", str(tmp_path / "o"), "-w", str(tiny_weights)]
    result = runner.invoke(main, [*args, "--save-kernel"])
    assert result.exit_code == 2 and "--save-kernel needs" in result.stderr
    result = runner.invoke(main, [*args, "--method", "kernel", "--kernel-size", "16"])
    assert result.exit_code == 2 and "odd" in result.stderr


def test_cli_fallback(runner, tmp_path, tiny_weights, photos):
    src = photos[0] / "p0.png"
    result = runner.invoke(main, ["deblur", str(src), "-o", str(tmp_path / "a"), "-w", str(tiny_weights),
                                  "--fallback", "blind"])
    assert result.exit_code == 2 and "--fallback needs --method kernel or auto" in result.output
    for fallback, method in (("input", "none"), ("blind", "blind")):
        out = tmp_path / fallback
        # too small for a 31 px kernel estimate: the fallback decides
        result = runner.invoke(main, ["deblur", str(src), "-o", str(out), "-w", str(tiny_weights), "--method", "auto",
                                      "--deconvolution", "tv", "--fallback", fallback, "--json"])
        assert result.exit_code == 0, result.output
        record = json.loads(result.stdout.splitlines()[0])
        assert record["method"] == method, record
    np.testing.assert_array_equal(read_image(tmp_path / "input" / "p0.png"), read_image(src))
