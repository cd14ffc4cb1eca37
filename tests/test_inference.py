import numpy as np
import pytest
import torch
from torch import nn

from conftest import natural_like
from lmfn_cli import deblur, resolve_device
from lmfn_cli.inference import resolve_precision, restore
from lmfn_cli.errors import ImageError


class Shift(nn.Module):
    """Stands in for a network: adds a constant, so rounding can be checked exactly."""

    def __init__(self, delta: float):
        super().__init__()
        self.delta = nn.Parameter(torch.tensor(delta))

    def forward(self, x):
        return x + self.delta


def test_uint8_rgb_is_rounded_not_truncated():
    img = natural_like(20, 30)
    out = deblur(Shift(0.6 / 255), img)  # +0.6 of a level rounds up everywhere below 255
    assert out.dtype == np.uint8 and out.shape == img.shape
    assert np.array_equal(out, np.minimum(img.astype(int) + 1, 255))


def test_uint16_keeps_its_depth():
    img = (natural_like(16, 16).astype(np.uint16) * 257) + 3
    out = deblur(Shift(0.0), img)
    assert out.dtype == np.uint16
    assert np.array_equal(out, img)


def test_float_images_are_clamped_to_unit_range():
    img = np.full((8, 8, 3), 0.9, np.float32)
    out = deblur(Shift(0.5), img)
    assert out.dtype == np.float32 and out.max() == 1.0


def test_alpha_passes_through_untouched_and_gray_stays_gray():
    rgba = np.dstack([natural_like(12, 12), np.arange(144, dtype=np.uint8).reshape(12, 12)])
    out = deblur(Shift(0.0), rgba)
    assert out.shape == (12, 12, 4) and np.array_equal(out[..., 3], rgba[..., 3])
    gray = natural_like(12, 12)[..., 0]
    out = deblur(Shift(0.0), gray)
    assert out.shape == gray.shape and np.array_equal(out, gray)


def test_real_model_output_has_the_input_shape(tiny_model):
    img = natural_like(33, 47)
    out = deblur(tiny_model, img)
    assert out.shape == img.shape and out.dtype == np.uint8


@pytest.mark.parametrize("bad", [np.zeros((4, 4, 5), np.uint8), np.zeros((4, 4, 3), np.int32), np.zeros((0, 4, 3), np.uint8)])
def test_unsupported_arrays_raise_image_error(bad):
    with pytest.raises(ImageError):
        deblur(Shift(0.0), bad)


def test_device_resolution():
    assert resolve_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        assert resolve_device("auto").type == "cpu"
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")
    with pytest.raises(ValueError, match="unknown device"):
        resolve_device("toaster")


def test_gray_with_alpha_stays_two_channels():
    la = np.dstack([natural_like(10, 14)[..., 0], np.full((10, 14), 7, np.uint8)])
    out = deblur(Shift(1 / 255), la)
    assert out.shape == (10, 14, 2)
    assert np.array_equal(out[..., 1], la[..., 1])
    assert np.array_equal(out[..., 0], np.minimum(la[..., 0].astype(int) + 1, 255))


class OOMAbove(nn.Module):
    """Identity that runs out of memory on inputs wider than ``limit`` (like a small GPU)."""

    def __init__(self, limit: int):
        super().__init__()
        self.limit = limit
        self.widths: list[int] = []
        self.w = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        self.widths.append(x.shape[-1])
        if x.shape[-1] > self.limit:
            raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 123 bytes")
        return x + self.w


def test_out_of_memory_halves_the_tile_and_retries():
    img = natural_like(150, 200)
    model = OOMAbove(128)
    done = restore(model, img, tile=0)
    assert np.array_equal(done.pixels, img)
    assert done.tile == 112  # whole image -> half the long side, rounded up to a multiple of 16
    assert model.widths[0] == 200 and max(model.widths[1:]) <= 112


def test_out_of_memory_on_the_cpu_at_the_smallest_tile_is_an_image_error():
    with pytest.raises(ImageError, match="out of memory"):
        restore(OOMAbove(10), natural_like(100, 100), tile=0)


def test_other_errors_are_not_mistaken_for_out_of_memory():
    class Broken(Shift):
        def forward(self, x):
            raise RuntimeError("shape mismatch")

    with pytest.raises(RuntimeError, match="shape mismatch"):
        restore(Broken(0.0), natural_like(20, 20), tile=0)


class InfUnderAutocast(Shift):
    """Overflows (inf) whenever autocast is on, as a half-precision network can."""

    def forward(self, x):
        if torch.is_autocast_enabled("cpu"):
            return x * float("inf")
        return x + self.delta


def test_a_tile_that_overflows_in_half_precision_is_redone_in_fp32():
    img = natural_like(20, 30)
    done = restore(InfUnderAutocast(0.0), img, precision="bf16", tile=0)
    assert done.precision == "bf16"
    assert np.array_equal(done.pixels, img)


def test_precision_resolution(monkeypatch):
    from lmfn_cli import inference

    monkeypatch.setattr(inference, "cpu_has_native_bf16", lambda: False)
    assert resolve_precision("auto", torch.device("cpu")) == "fp32"
    monkeypatch.setattr(inference, "_cuda_bf16", lambda device: False)
    assert resolve_precision("auto", torch.device("cuda")) == "fp16"  # a GPU before Ampere
    monkeypatch.setattr(inference, "_cuda_bf16", lambda device: True)
    assert resolve_precision("auto", torch.device("cuda")) == "bf16"  # no overflow, as fast as fp16 there
    assert resolve_precision("auto", torch.device("mps")) == "fp32"
    assert resolve_precision("bf16", torch.device("cpu")) == "bf16"
    with pytest.raises(ValueError):
        resolve_precision("fp8", torch.device("cpu"))


@pytest.mark.parametrize("native,fused,expected,why", [
    (True, True, "bf16", "computes bf16 natively: amx_bf16"),
    (False, True, "fp32", "no native bf16"),
    (True, False, "fp32", "lacks oneDNN's fused ops"),
])
def test_cpu_auto_precision_follows_the_cpus_features(monkeypatch, caplog, native, fused, expected, why):
    """bf16 only where the CPU computes it natively and the fused bf16 graph can run; decided from
    the CPU's flags (no timing probe, so every run on a machine decides alike), and -v says why."""
    import logging

    from lmfn_cli import inference

    monkeypatch.setattr(inference, "cpu_has_native_bf16", lambda: native)
    monkeypatch.setattr(inference, "native_bf16_flags", lambda: ["amx_bf16"] if native else [])
    monkeypatch.setattr(inference, "fused_ops_available", lambda: fused)
    monkeypatch.setattr(inference, "_SAID", set())  # said once per process: forget earlier tests
    with caplog.at_level(logging.INFO, logger="lmfn_cli.inference"):
        assert resolve_precision("auto", torch.device("cpu")) == expected
    assert why in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="lmfn_cli.inference"):
        resolve_precision("auto", torch.device("cpu"))
    assert why not in caplog.text  # once, not once per image
    assert resolve_precision("fp32", torch.device("cpu")) == "fp32"  # an explicit choice is kept


def test_tiled_restore_matches_whole_image_for_a_pointwise_model():
    img = natural_like(97, 131)
    whole = restore(Shift(10 / 255), img, tile=0)  # whole levels: blending error cannot flip a rounding
    tiled = restore(Shift(10 / 255), img, tile=64, overlap=16)
    assert tiled.tile == 64 and whole.tile == 0
    assert np.array_equal(whole.pixels, tiled.pixels)


def test_cuda_out_of_memory_falls_back_to_the_cpu(monkeypatch, caplog):
    """Simulated: every CUDA forward runs out of memory, so tiles shrink, then the CPU takes over."""
    from lmfn_cli import inference

    calls = []

    def fake_forward(model, device, precision):
        def forward(tile):
            calls.append((device.type, precision, tile.shape[-1]))
            if device.type == "cuda":
                raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
            return tile
        return forward

    class Mover(Shift):
        def to(self, device):
            self.moves.append(torch.device(device).type)
            return self

    model = Mover(0.0)
    model.moves = []
    monkeypatch.setattr(inference, "_forward", fake_forward)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    x = torch.rand(1, 3, 150, 200)
    y, tile, device, precision = inference._run(model, x, torch.device("cuda"), "fp16", 0, 16, None)
    assert torch.equal(y, x)
    assert device.type == "cpu" and precision == "fp32"
    assert [c[2] for c in calls if c[0] == "cuda"] == [200, 112, 64]  # whole, then halved tiles, each failing at once
    assert model.moves == ["cpu", "cuda"]  # the model goes back to the GPU for the next image
    assert "running this image on the CPU" in caplog.text


def test_an_overlap_too_large_for_the_tile_is_reduced_not_an_error():
    img = natural_like(150, 200)
    done = restore(Shift(10 / 255), img, tile=64, overlap=200)
    assert done.tile == 64
    assert np.array_equal(done.pixels, restore(Shift(10 / 255), img, tile=0).pixels)
