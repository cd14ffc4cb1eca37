import numpy as np
import pytest
import torch
from torch import nn

from conftest import natural_like
from lmfn_cli import deblur, resolve_device
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


@pytest.mark.parametrize("bad", [np.zeros((4, 4, 2), np.uint8), np.zeros((4, 4, 3), np.int32), np.zeros((0, 4, 3), np.uint8)])
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
