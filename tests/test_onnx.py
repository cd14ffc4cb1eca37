"""lmfn export --onnx and ONNX Runtime weights: same results as PyTorch (skipped without onnxruntime)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from lmfn_cli import restore
from lmfn_cli.cli import main
from lmfn_cli.errors import WeightsError
from lmfn_cli.images import read_image, write_image
from lmfn_cli.weights import load_model

from conftest import natural_like

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")  # torch's exporter needs it

from lmfn_cli.onnxrt import OnnxLMFN, export_onnx  # noqa: E402


@pytest.fixture
def onnx_file(tmp_path, tiny_weights):
    return export_onnx(load_model(tiny_weights), tmp_path / "tiny.onnx")


@pytest.mark.parametrize("h, w", [(64, 64), (37, 91), (130, 70)])
def test_onnx_runtime_matches_pytorch_for_any_size(onnx_file, tiny_weights, h, w):
    x = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(h))
    with torch.inference_mode():
        want = load_model(tiny_weights)(x)
    got = OnnxLMFN(onnx_file)(x)
    assert got.shape == want.shape
    assert torch.allclose(got, want, atol=1e-4)


def test_restore_with_onnx_weights_whole_and_tiled(onnx_file, tiny_weights):
    image = natural_like(96, 150).astype(np.float32) / 255
    for tile in (0, 64):
        want = restore(load_model(tiny_weights), image, tile=tile, precision="fp32").pixels  # the export is fp32
        got = restore(load_model(onnx_file), image, tile=tile)
        assert got.device == "cpu" and np.abs(got.pixels - want).max() < 1e-4
        assert got.precision == "fp32"  # auto's CPU bf16 is the fused graph's, never ONNX Runtime's


def test_onnx_weights_refuse_a_gpu(onnx_file):
    with pytest.raises(WeightsError, match="CPU only"):
        OnnxLMFN(onnx_file).to("meta")


def test_export_command_and_deblur_with_the_file(tmp_path, tiny_weights):
    runner = CliRunner()
    out = tmp_path / "m.onnx"
    result = runner.invoke(main, ["export", "--onnx", str(out), "-w", str(tiny_weights)])
    assert result.exit_code == 0, result.output
    again = runner.invoke(main, ["export", "--onnx", str(out), "-w", str(tiny_weights)])
    assert again.exit_code == 1 and "exists already" in again.output
    assert runner.invoke(main, ["export", "--onnx", str(tmp_path / "m.bin"), "-w", str(tiny_weights)]).exit_code == 2
    write_image(tmp_path / "a.png", natural_like(40, 56))
    for weights, dest in ((out, "o1"), (tiny_weights, "o2")):
        r = runner.invoke(main, ["deblur", str(tmp_path / "a.png"), "-o", str(tmp_path / dest), "-w", str(weights),
                                 "--device", "cpu", "--precision", "fp32", "-q"])
        assert r.exit_code == 0, r.output
    a, b = (read_image(tmp_path / d / "a.png").astype(int) for d in ("o1", "o2"))
    assert np.abs(a - b).max() <= 1  # equal up to the rounding of values within 1e-4
