"""LMFN through ONNX Runtime (optional, ``pip install lmfn[onnx]``): for deploying the network
where ONNX runs; on our CPU no faster than the default fused torch graph (`lmfn_cli.fused`).

``export_onnx`` writes the network without its padding and cropping (those depend on the image
size, and a traced graph would freeze them) and with dynamic height and width, so one file
serves every image and tile size. ``OnnxLMFN`` loads such a file into an ONNX Runtime CPU
session and behaves like `LMFN` for `lmfn_cli.inference.restore`: (B,3,H,W) float in [0,1]
in, the same shape out, padding inside ``forward``. On the 2-core CI machine a 1280x720 frame
takes 0.88-0.97 s, against 0.86-1.00 s for the fused torch graph in turn with it and 1.6-1.9 s
for PyTorch's plain eager forward, same output to 6e-8 (``python benchmarks/cpu_speed.py``).

The export uses torch's TorchScript-based exporter (``dynamo=False``: deprecated since torch 2.9,
with a DeprecationWarning, but it needs no onnxscript); the graph has no size-dependent
constants, which the tests check on several image sizes.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from .errors import ConfigError, WeightsError
from .files import atomic_path
from .model import LMFN, pad_to_multiple

log = logging.getLogger(__name__)

__all__ = ["OnnxLMFN", "export_onnx", "onnxruntime_available"]

OPSET = 17


def onnxruntime_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


class _Core(nn.Module):
    """LMFN on an input that is already padded (multiple of 16, at least 64 per side)."""

    def __init__(self, net: LMFN):
        super().__init__()
        self.net = net

    def forward(self, inp: torch.Tensor) -> torch.Tensor:
        n = self.net
        out = n.reconstruct(n.decoder(n.encoder(inp - n.rgb_mean)))
        return out + (inp if n.config.global_residual else n.rgb_mean)


def export_onnx(model: LMFN, path: str | Path, *, overwrite: bool = False) -> Path:
    """Write ``model`` as an ONNX graph (opset 17, float32, dynamic H and W) to ``path``,
    atomically; an existing file is an error unless ``overwrite``."""
    path = Path(path)
    try:
        import onnx  # noqa: F401  (torch's exporter writes through it)
    except ImportError:
        raise ConfigError("exporting to ONNX needs the onnx package (pip install 'lmfn[onnx]')") from None
    core = _Core(model).to("cpu").eval()
    example = torch.rand(1, 3, 128, 192)
    with atomic_path(path, overwrite=overwrite) as tmp, torch.no_grad():
        torch.onnx.export(core, (example,), str(tmp), dynamo=False, opset_version=OPSET,
                          input_names=["image"], output_names=["restored"],
                          dynamic_axes={"image": {0: "batch", 2: "height", 3: "width"},
                                        "restored": {0: "batch", 2: "height", 3: "width"}})
    return path


class OnnxLMFN(nn.Module):
    """An exported LMFN run by ONNX Runtime on the CPU, usable wherever `restore` takes an `LMFN`."""

    multiple = LMFN.multiple
    min_size = LMFN.min_size

    def __init__(self, path: str | Path, threads: int | None = None):
        super().__init__()
        try:
            import onnxruntime as ort
        except ImportError:
            raise WeightsError(path, "is an ONNX file; running it needs onnxruntime (pip install 'lmfn[onnx]')") from None
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise WeightsError(path, f"ONNX Runtime cannot load it: {str(exc).splitlines()[0]}") from None
        self.path = Path(path)
        # restore() asks a model's parameters for its device: ONNX Runtime here runs on the CPU.
        self.anchor = nn.Parameter(torch.zeros(0), requires_grad=False)

    def _apply(self, fn, recurse=True):
        moved = fn(torch.zeros(0))
        if moved.device.type != "cpu":
            raise WeightsError(self.path, "ONNX weights run on the CPU only; use the .safetensors weights on a GPU")
        return super()._apply(fn, recurse)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"LMFN expects a (B,3,H,W) tensor, got shape {tuple(x.shape)}")
        h, w = x.shape[-2:]
        inp = pad_to_multiple(x.float(), self.multiple, self.min_size).contiguous()
        (out,) = self.session.run(None, {"image": inp.numpy()})
        return torch.from_numpy(out)[..., :h, :w]
