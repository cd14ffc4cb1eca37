"""Shared fixtures: a tiny LMFN, its weights file, small generated images, a local HTTP file server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from http_server import Server, serve
from lmfn_cli import LMFN, LMFNConfig, save_weights

SHARED = Path(__file__).resolve().parents[1].parent / "shared"

# Same structure as the paper's model, a few hundred times smaller: fast on a 2-core CPU.
TINY = LMFNConfig(enc_channels=8, dec_channels=8, esa_channels=4, num_blocks=2)


@pytest.fixture(autouse=True)
def _few_threads():
    torch.set_num_threads(2)
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _state_dir(tmp_path_factory, monkeypatch):
    """lmfn deblur logs batches in the user's state folder: a fresh one per test, never ~."""
    monkeypatch.setenv("LMFN_STATE_DIR", str(tmp_path_factory.mktemp("state")))


@pytest.fixture
def tiny_model() -> LMFN:
    torch.manual_seed(0)
    return LMFN(TINY).eval()


@pytest.fixture
def tiny_weights(tmp_path, tiny_model) -> Path:
    return save_weights(tiny_model, tmp_path / "tiny.safetensors", variant="tiny-test")


@pytest.fixture
def server_path() -> str:
    """The URL path ``server`` serves its files under; a test module may override this fixture."""
    return "/"


@pytest.fixture
def server(server_path) -> Iterator[Server]:
    """A file server on 127.0.0.1 with Range support, fault injection and a request log
    (see http_server.py)."""
    with serve(server_path) as state:
        yield state


def natural_like(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth-plus-edges RGB uint8 image (gradients, a disc, noise), deterministic."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    img = np.stack([0.2 + 0.6 * xx, 0.3 + 0.5 * yy, 0.5 + 0.3 * np.sin(6 * xx * yy)], axis=2)
    disc = (yy - 0.4) ** 2 + (xx - 0.5) ** 2 < 0.05
    img[disc] = [0.9, 0.2, 0.1]
    img += rng.normal(0, 0.02, img.shape)
    return np.clip(np.rint(img * 255), 0, 255).astype(np.uint8)


def requires_shared(*parts: str) -> Path:
    """A path under ../shared, or skip the test when it is absent (a user's clone)."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} not available")
    return path
