"""The weights we ship must load and must really deblur: broken weights or loading never pass."""

import json
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file

from lmfn_cli import deblur, load_model, read_weights
from lmfn_cli.images import read_image
from lmfn_cli.train import tensors_sha256

# A clear gain: identity gives 0 dB, broken weights or loading give a loss; v0 measured +0.6 dB here.
GAIN_DB = 0.3
WEIGHTS = sorted((Path(__file__).resolve().parents[1] / "weights").glob("*.safetensors"))


def _example(kind: str, name: str) -> np.ndarray:
    with resources.as_file(resources.files("lmfn_cli.examples") / kind / f"{name}.png") as path:
        return read_image(path)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255.0**2 / np.mean((a.astype(np.float64) - b) ** 2)))


def test_weights_are_shipped():
    assert WEIGHTS, "weights/ holds no .safetensors file"


@pytest.mark.parametrize("path", WEIGHTS, ids=lambda p: p.name)
def test_shipped_weights_are_intact(path):
    _, _, meta = read_weights(path)
    assert meta["tensors_sha256"] == tensors_sha256(load_file(path))
    assert json.loads(meta["training"])["step"] > 0


@pytest.mark.parametrize("path", WEIGHTS, ids=lambda p: p.name)
def test_shipped_weights_deblur_a_synthetic_crop(path):
    model = load_model(path)
    # The bundled city example (drawn and blurred by the project, CC0), a 160x160 crop.
    blurry, sharp = _example("blur", "city")[40:200, 80:240], _example("sharp", "city")[40:200, 80:240]
    gain = _psnr(deblur(model, blurry), sharp) - _psnr(blurry, sharp)
    assert gain > GAIN_DB, f"{path.name}: only {gain:+.2f} dB over the blurry input"
