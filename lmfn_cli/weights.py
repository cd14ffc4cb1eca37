"""LMFN weights: safetensors files that carry their model config in the metadata.

A weights file holds the model's tensors (fp32 or fp16) and string metadata:

    format        "lmfn-weights/1"
    config        LMFNConfig as JSON (everything needed to rebuild the network)
    variant       the variant name it was built from, if known
    lmfn_version  the version of lmfn that wrote it
    ...           anything else the writer adds (training summary, data, licence)

Pickle checkpoints (``torch.save``) are never loaded: unpickling runs arbitrary code.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Mapping

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from . import __version__
from .files import atomic_path
from .errors import ConfigError, NoWeightsError, WeightsError
from .model import LMFN, LMFNConfig

log = logging.getLogger(__name__)

FORMAT = "lmfn-weights/1"


def save_weights(
    model: LMFN,
    path: str | Path,
    *,
    variant: str | None = None,
    metadata: Mapping[str, str] | None = None,
    dtype: torch.dtype = torch.float32,
) -> Path:
    """Write ``model``'s weights and config to a safetensors file, atomically.

    ``dtype`` is the storage type (float32 or float16); loading always gives float32.
    """
    path = Path(path)
    meta = {str(k): str(v) for k, v in (metadata or {}).items()}
    meta.update(format=FORMAT, config=model.config.to_json(), lmfn_version=__version__)
    if variant:
        meta["variant"] = variant
    tensors = {
        k: v.detach().to("cpu", dtype if v.is_floating_point() else v.dtype).contiguous()
        for k, v in model.state_dict().items()
    }
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    return path


def _sniff(path: Path) -> None:
    """Reject files that are plainly not safetensors, with a message that says what they are."""
    try:
        with path.open("rb") as fh:
            head = fh.read(9)
    except FileNotFoundError:
        raise WeightsError(path, "no such weights file") from None
    except IsADirectoryError:
        raise WeightsError(path, "is a directory, not a weights file") from None
    except OSError as exc:
        raise WeightsError(path, f"cannot read: {exc.strerror or exc}") from exc
    if len(head) == 9 and head[8:9] == b"{":
        return  # an 8-byte header length, then the JSON header: safetensors
    if head.startswith(b"PK\x03\x04") or head[:1] == b"\x80":
        raise WeightsError(
            path,
            "is a PyTorch pickle checkpoint; lmfn loads only .safetensors weights "
            "(unpickling can run arbitrary code)",
        )
    raise WeightsError(path, "is not a safetensors file (empty, truncated or another format)")


def read_weights(path: str | Path) -> tuple[LMFNConfig, dict[str, torch.Tensor], dict[str, str]]:
    """Read a weights file: (config, float32 CPU state dict, metadata). Raises WeightsError."""
    path = Path(path)
    _sniff(path)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except SafetensorError as exc:
        raise WeightsError(path, f"is not a valid safetensors file (corrupt or truncated?): {exc}") from exc
    if "config" not in metadata:
        raise WeightsError(path, "has no LMFN config in its metadata (not an lmfn weights file?)")
    try:
        config = LMFNConfig.from_json(metadata["config"])
    except (ConfigError, TypeError) as exc:
        raise WeightsError(path, f"has an invalid LMFN config: {exc}") from exc
    tensors = {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}
    return config, tensors, metadata


def load_model(
    path: str | Path | None = None, device: str | torch.device = "cpu"
) -> LMFN:
    """Build the network a weights file describes, load it, and put it in eval mode on ``device``.

    ``path=None`` means the default weights; this version bundles none yet, so it raises
    ``NoWeightsError``. Any other problem raises ``WeightsError`` naming the file.
    """
    path = resolve_weights(path)
    config, tensors, metadata = read_weights(path)
    model = LMFN(config)
    try:
        result = model.load_state_dict(tensors, strict=False)
    except RuntimeError as exc:  # shape mismatches
        first = str(exc).strip().splitlines()[-1].strip()
        raise WeightsError(path, f"tensor shapes do not match its own config: {first}") from exc
    if result.missing_keys or result.unexpected_keys:
        parts = []
        if result.missing_keys:
            parts.append(f"missing {len(result.missing_keys)} tensors (e.g. {result.missing_keys[0]})")
        if result.unexpected_keys:
            parts.append(f"{len(result.unexpected_keys)} unexpected (e.g. {result.unexpected_keys[0]})")
        raise WeightsError(path, "does not match its own config: " + ", ".join(parts))
    log.info("loaded %s (%s, lmfn %s)", path, metadata.get("variant", "custom"), metadata.get("lmfn_version", "?"))
    return model.to(device).eval()


def resolve_weights(path: str | Path | None) -> Path:
    """The weights file to use: ``path`` if given, else the bundled default (none yet)."""
    if path is not None:
        return Path(path)
    raise NoWeightsError(
        None,
        "no trained weights are bundled with this version of lmfn yet; "
        "pass --weights FILE.safetensors (see weights/README.md)",
    )
