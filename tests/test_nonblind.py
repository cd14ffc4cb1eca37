"""The kernel method's non-blind stage: its training pairs, its training task, loading it, and
deconvolving through it (``--deconvolution network``)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from conftest import TINY, natural_like
from lmfn_cli.cli import main
from lmfn_cli.deconvolution import deconvolve, kernel_extent
from lmfn_cli.errors import WeightsError
from lmfn_cli.images import read_image, write_image
from lmfn_cli.kernel_method import (KernelOptions, deblur_by_kernel, deconvolve_with_network, load_nonblind,
                                    restore_with_method)
from lmfn_cli.model import LMFN
from lmfn_cli.synth.nonblind import NonblindConfig, nonblind_kernel, nonblind_pair, perturb_kernel
from lmfn_cli.train import TrainConfig, TrainError, export_weights, train
from lmfn_cli.weights import read_weights, save_weights

from test_kernel_method import line_kernel, shapes


def _centroid(k: np.ndarray) -> tuple[float, float]:
    yy, xx = np.mgrid[: k.shape[0], : k.shape[1]]
    return float((k * yy).sum() / k.sum()), float((k * xx).sum() / k.sum())


# ---- training pairs ----------------------------------------------------------------------------

def test_perturbed_kernels_are_kernels_and_differ():
    k = line_kernel(11, 0.4, 31).astype(np.float32)
    rng = np.random.default_rng(3)
    seen = []
    for _ in range(6):
        p = perturb_kernel(k, rng)
        assert p.shape == k.shape and p.min() >= 0 and abs(p.sum() - 1) < 1e-5
        cy, cx = _centroid(p)
        assert abs(cy - 15) <= 1 and abs(cx - 15) <= 1  # re-centred: a shift is not an error to learn
        seen.append(float(np.abs(p - k).sum()))
    assert min(seen) > 0.05  # every draw changes the kernel
    assert max(abs(kernel_extent(perturb_kernel(k, rng)) - kernel_extent(k)) for _ in range(6)) < 8


def test_nonblind_kernels_and_pairs():
    rng = np.random.default_rng(0)
    delta = nonblind_kernel(rng, NonblindConfig(delta_prob=1.0), None, 256)
    assert delta.max() == pytest.approx(1.0) and delta.sum() == pytest.approx(1.0)
    sharp = natural_like(96, 96, seed=1).astype(np.float32) / 255
    deconvolved, target, kernel = nonblind_pair(sharp, rng, NonblindConfig(delta_prob=0.0), None, margin=16)
    assert deconvolved.shape == target.shape == (64, 64, 3) and deconvolved.dtype == np.float32
    assert 0 <= deconvolved.min() and deconvolved.max() <= 1
    np.testing.assert_array_equal(target, sharp[16:-16, 16:-16])
    assert kernel.sum() == pytest.approx(1.0, abs=1e-5) and kernel_extent(kernel) > 1


def test_nonblind_task_is_checked():
    with pytest.raises(TrainError, match="task"):
        TrainConfig(model=TINY, sharp=("x",), task="magic")
    with pytest.raises(TrainError, match="sharp photos"):
        TrainConfig(model=TINY, paired=("x",), task="nonblind")
    with pytest.raises(TrainError, match="nonblind_prior"):
        TrainConfig(model=TINY, sharp=("x",), task="nonblind", nonblind_prior=0)


def test_nonblind_training_exports_a_stage_the_kernel_method_loads(tmp_path):
    for i in range(3):
        write_image(tmp_path / "sharp" / f"{i}.png", natural_like(80, 80, seed=i))
    cfg = TrainConfig(model=TINY, sharp=(str(tmp_path / "sharp"),), task="nonblind", nonblind_prior=4e-3,
                      steps=2, batch=2, patch=32, val_every=2, log_every=1, lr=1e-3)
    train(cfg, tmp_path / "run")
    path = export_weights(tmp_path / "run", tmp_path / "stage.safetensors")
    _, _, meta = read_weights(path)
    assert meta["task"] == "nonblind" and float(meta["wiener_prior"]) == 4e-3
    stage = load_nonblind(path)
    assert stage.prior == 4e-3 and stage.source == path and stage.model.config == TINY
    assert load_nonblind(path) is stage  # loaded once per process


# ---- kernels as the estimator returns them ----------------------------------------------------

FAST = dict(kernel_size=9, region=48, iterations=2, refine_rounds=1, check=False)


def _photos(n: int = 3, side: int = 64) -> list[np.ndarray]:
    return [natural_like(side, side + 8 * i, seed=20 + i) for i in range(n)]


def test_estimated_kernel_bank_builds_resumes_and_loads(tmp_path):
    from lmfn_cli.errors import KernelError
    from lmfn_cli.kernel_estimation import EstimationSettings
    from lmfn_cli.synth.estimated import EstimatedKernels, build_estimated_kernels

    settings = EstimationSettings(**FAST)
    path = tmp_path / "bank.npz"
    first = build_estimated_kernels(_photos(), path, 3, seed=5, settings=settings, crop=48, save_every=2)
    assert len(first) == 3 and first.true.shape == first.estimated.shape == (3, 9, 9)
    for t, e in zip(first.true, first.estimated):
        assert t.min() >= 0 and e.min() >= 0 and t.sum() == pytest.approx(1, abs=1e-5)
        assert e.sum() == pytest.approx(1, abs=1e-5) and t.max() < 1  # never a delta
    seen = []
    resumed = build_estimated_kernels(_photos(), path, 5, seed=5, settings=settings, crop=48,
                                      on_progress=lambda d, t: seen.append(d))
    assert seen == [4, 5]  # the three it had were not estimated again
    fresh = build_estimated_kernels(_photos(), tmp_path / "fresh.npz", 5, seed=5, settings=settings, crop=48)
    np.testing.assert_array_equal(resumed.estimated, fresh.estimated)  # pair i depends on (seed, i) only
    loaded = EstimatedKernels.load(path)
    np.testing.assert_array_equal(loaded.true, fresh.true)
    np.testing.assert_array_equal(loaded.extent, fresh.extent)
    assert len(loaded.usable(min_extent=0)) == 5 and len(loaded.usable(min_extent=1e9)) == 0
    (tmp_path / "other.npz").write_bytes(b"not a bank")
    for bad in (tmp_path / "other.npz", tmp_path / "missing.npz"):
        with pytest.raises(KernelError, match=bad.name):
            EstimatedKernels.load(bad)
    np.savez(tmp_path / "plain.npz", true=np.zeros((1, 3, 3)))
    with pytest.raises(KernelError, match="not an estimated-kernel bank"):
        EstimatedKernels.load(tmp_path / "plain.npz")
    with pytest.raises(ValueError, match="at least 48 px"):
        build_estimated_kernels([natural_like(40, 40, seed=1)], tmp_path / "x.npz", 1, seed=0, settings=settings, crop=48)


def test_nonblind_pair_blurs_by_the_true_kernel_and_deconvolves_by_the_estimate():
    from lmfn_cli.synth.blur import blur_with_kernel
    from lmfn_cli.synth.estimated import EstimatedKernels

    true = line_kernel(9, 0.3, 15).astype(np.float32)
    true[7, 9] += 0.2  # no symmetry: each of the 8 orientations is a different array
    true /= true.sum()
    est = line_kernel(7, 0.5, 15).astype(np.float32)
    bank = EstimatedKernels(true[None], est[None], np.array([3.0], np.float32))
    cfg = NonblindConfig(delta_prob=0.0, estimated_prob=1.0, perturb_prob=1.0, srgb_blur_prob=1.0, noise_prob=0.0,
                         jpeg_prob=0.0, kernel_size=15)
    sharp = natural_like(64, 64, seed=4).astype(np.float32) / 255
    for seed in range(4):
        deconvolved, _, kernel = nonblind_pair(sharp, np.random.default_rng(seed), cfg, None, margin=8, estimated=bank)
        turns = [(r, f) for r in range(4) for f in (False, True)
                 if np.array_equal(kernel, _orient(true, r, f))]
        assert len(turns) == 1  # the bank's true kernel, turned or flipped
        blurred = np.rint(np.clip(blur_with_kernel(sharp, kernel), 0, 1) * 255) / 255
        expected = deconvolve(blurred, _orient(est, *turns[0]), prior=cfg.prior, method="wiener")[8:-8, 8:-8]
        np.testing.assert_allclose(deconvolved, expected, atol=1e-5)  # by the estimate, not a perturbation
    delta = nonblind_pair(sharp, np.random.default_rng(0), dataclasses.replace(cfg, delta_prob=1.0), None,
                          margin=8, estimated=bank)[2]
    assert delta.max() == pytest.approx(1.0)  # an unblurred pair stays unblurred


def _orient(k: np.ndarray, turns: int, flip: bool) -> np.ndarray:
    k = np.rot90(k, turns)
    return np.ascontiguousarray(k[:, ::-1] if flip else k)


def test_nonblind_training_takes_a_bank_of_estimated_kernels(tmp_path):
    from lmfn_cli.kernel_estimation import EstimationSettings
    from lmfn_cli.synth.estimated import build_estimated_kernels

    with pytest.raises(TrainError, match="estimated_kernels is for task nonblind"):
        TrainConfig(model=TINY, sharp=("x",), estimated_kernels="bank.npz")
    with pytest.raises(TrainError, match="estimated_prob"):
        TrainConfig(model=TINY, sharp=("x",), task="nonblind", estimated_prob=1.5)
    for i in range(2):
        write_image(tmp_path / "sharp" / f"{i}.png", natural_like(80, 80, seed=i))
    build_estimated_kernels(_photos(2), tmp_path / "bank.npz", 2, seed=1,
                            settings=EstimationSettings(**{**FAST, "kernel_size": 31, "region": 64}), crop=64)
    cfg = TrainConfig(model=TINY, sharp=(str(tmp_path / "sharp"),), task="nonblind", steps=2, batch=2, patch=32,
                      val_every=2, log_every=1, estimated_kernels=str(tmp_path / "bank.npz"), estimated_prob=1.0)
    train(cfg, tmp_path / "run")
    assert (tmp_path / "run" / "checkpoint.pt").exists()
    missing = dataclasses.replace(cfg, estimated_kernels=str(tmp_path / "none.npz"))
    with pytest.raises(TrainError, match="none.npz: no such file"):
        train(missing, tmp_path / "run2")


def test_synth_estimated_kernels_command(tmp_path):
    write_image(tmp_path / "photos" / "a.png", natural_like(256, 300, seed=3))
    res = CliRunner().invoke(main, ["synth", str(tmp_path / "photos"), "-o", str(tmp_path / "banks"), "--seed", "2",
                                    "--estimated-kernels", "1"])
    assert res.exit_code == 0, res.output
    assert "1 kernel pairs" in res.stdout and (tmp_path / "banks" / "estimated-kernels.npz").exists()
    small = CliRunner().invoke(main, ["synth", str(tmp_path / "banks"), "-o", str(tmp_path / "b2"), "--seed", "2",
                                      "--estimated-kernels", "1"])
    assert small.exit_code == 2 and "at least 256 px" in small.output  # no photo big enough (none at all)


# ---- loading and running the stage -------------------------------------------------------------

def _identity_stage(tmp_path, prior: float = 5e-3):
    """A residual tiny network whose every weight is zero: it returns its input."""
    model = LMFN(dataclasses.replace(TINY, global_residual=True))
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    path = save_weights(model, tmp_path / "identity-stage.safetensors",
                        metadata={"task": "nonblind", "wiener_prior": repr(prior)})
    return load_nonblind(path)


def test_load_nonblind_refuses_what_is_not_a_stage(tmp_path, tiny_weights):
    with pytest.raises(WeightsError, match="not a non-blind stage"):
        load_nonblind(tiny_weights)  # blind weights: no task=nonblind
    with pytest.raises(WeightsError, match="does not exist"):
        load_nonblind(tmp_path / "missing.safetensors")
    bad = save_weights(LMFN(TINY), tmp_path / "bad.safetensors", metadata={"task": "nonblind", "wiener_prior": "x"})
    with pytest.raises(WeightsError, match="invalid Wiener prior"):
        load_nonblind(bad)


def test_network_deconvolution_is_the_wiener_filter_then_the_network(tmp_path):
    stage = _identity_stage(tmp_path, prior=3e-3)
    k = line_kernel(7, 0.3, 11)
    img = np.dstack([(shapes(64, 64) * 255).astype(np.uint8), np.full((64, 64), 200, np.uint8)])  # RGBA
    done = deconvolve_with_network(img, k, stage, tile=0, precision="fp32")
    assert done.pixels.shape == img.shape and done.pixels.dtype == np.uint8
    np.testing.assert_array_equal(done.pixels[..., 3], img[..., 3])  # alpha untouched
    wiener = deblur_by_kernel(img, k, prior=3e-3, method="wiener")  # the stage's own prior, not the options'
    assert np.abs(done.pixels.astype(int) - wiener.astype(int)).max() <= 1
    grey = (shapes(48, 48)[..., 0] * 65535).astype(np.uint16)
    out = deconvolve_with_network(grey, k, stage, tile=0, precision="fp32").pixels
    assert out.shape == grey.shape and out.dtype == np.uint16
    expected = deconvolve(grey.astype(np.float64) / 65535, k, prior=3e-3, method="wiener")
    assert np.abs(out / 65535 - expected).max() < 2e-3


def test_restore_with_method_uses_the_network_stage(tmp_path, tiny_model):
    stage = _identity_stage(tmp_path)
    img = (shapes(48, 48) * 255).astype(np.uint8)
    k = line_kernel(5, 0.0, 7)
    options = KernelOptions(kernel=k, deconvolution="network", nonblind=str(stage.source))
    done = restore_with_method(tiny_model, img, options)
    assert done.method == "kernel" and done.restored.precision != "fp64"  # went through a network
    tv = restore_with_method(tiny_model, img, dataclasses.replace(options, deconvolution="tv"))
    assert tv.restored.precision == "fp64" and not np.array_equal(tv.restored.pixels, done.restored.pixels)
    with pytest.raises(ValueError, match="deconvolution"):
        KernelOptions(deconvolution="magic")


# ---- the command line --------------------------------------------------------------------------

def test_cli_deconvolution_options(tmp_path, tiny_weights):
    runner = CliRunner()
    stage = _identity_stage(tmp_path)
    write_image(tmp_path / "in" / "a.png", (shapes(64, 64) * 255).astype(np.uint8))
    k = tmp_path / "k.npy"
    np.save(k, line_kernel(5, 0.7, 7))
    args = ["deblur", str(tmp_path / "in"), "-w", str(tiny_weights), "--kernel", str(k), "--json"]
    result = runner.invoke(main, args + ["-o", str(tmp_path / "net"), "--deconvolution", "network", "--nonblind-weights", str(stage.source)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.splitlines()[0])["method"] == "kernel"
    wiener = deblur_by_kernel(read_image(tmp_path / "in" / "a.png"), np.load(k) / np.load(k).sum(),
                              prior=stage.prior, method="wiener")
    assert np.abs(read_image(tmp_path / "net" / "a.png").astype(int) - wiener.astype(int)).max() <= 1
    # blind weights given as the stage: one clear error before any image, exit 3
    result = runner.invoke(main, args + ["-o", str(tmp_path / "bad"), "--deconvolution", "network", "--nonblind-weights", str(tiny_weights)])
    assert result.exit_code == 3 and "not a non-blind stage" in result.stderr
    assert not (tmp_path / "bad" / "a.png").exists()
    result = runner.invoke(main, args + ["-o", str(tmp_path / "tv"), "--deconvolution", "tv",
                                         "--nonblind-weights", str(tiny_weights)])  # not needed by tv
    assert result.exit_code == 0, result.output
