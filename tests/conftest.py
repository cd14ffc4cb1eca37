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
def photos(tmp_path) -> tuple[Path, Path]:
    """``(in/, sharp/)``: four blurred 8-bit pictures and their sharp originals (p0-p3.png), a
    16-bit picture without a sharp one (deep.png) and a file that is not a picture (broken.png)."""
    from lmfn_cli.images import write_image

    blur, sharp = tmp_path / "in", tmp_path / "sharp"
    for i in range(4):
        img = natural_like(40 + 8 * i, 48, seed=i)
        write_image(sharp / f"p{i}.png", img)
        write_image(blur / f"p{i}.png", ((img.astype(np.uint16) + np.roll(img, 2, axis=0)) // 2).astype(np.uint8))
    write_image(blur / "deep.png", natural_like(32, 40).astype(np.uint16) * 257)  # 16 bits survive the trip
    (blur / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return blur, sharp


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


@pytest.fixture(scope="session")
def s3_store() -> Iterator[str]:
    """An S3-compatible store on 127.0.0.1 (moto's server, in its own process: pyarrow's S3
    client holds the GIL in places, so an in-process Python server could deadlock), with the
    ``AWS_*`` variables pointing every later process at it; yields a fresh bucket's name.
    Start it before Ray so that Ray's workers inherit the variables."""
    pytest.importorskip("moto")
    pytest.importorskip("pyarrow.fs")
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(endpoint + "/moto-api/", timeout=2).close()
            break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail("moto's S3 server did not start")
            time.sleep(0.2)
    env = {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        req = urllib.request.Request(f"{endpoint}/lmfn-test", method="PUT")  # CreateBucket
        urllib.request.urlopen(req, timeout=10).close()
        try:
            yield "lmfn-test"
        finally:
            proc.terminate()
            proc.wait(10)
