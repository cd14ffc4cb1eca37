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
