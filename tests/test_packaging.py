"""The wheel carries the default weights, so `pip install .` then `lmfn deblur` needs no network."""

import shutil
import subprocess
import sys
import zipfile
from hashlib import sha256
from pathlib import Path

import pytest

from lmfn_cli.weights import BUNDLED_DIR, DEFAULT_NAME, REGISTRY

ROOT = Path(__file__).resolve().parents[1]
# pip's words when it cannot fetch the build requirements (no registry): building is impossible here.
NO_INDEX = ("No matching distribution", "Could not find a version", "NewConnectionError", "Network is unreachable",
            "Temporary failure in name resolution", "ProxyError")


def test_the_wheel_contains_the_default_weights(tmp_path):
    from lmfn_cli.kernel_method import NONBLIND_NAME

    entries = [REGISTRY[DEFAULT_NAME], REGISTRY[NONBLIND_NAME]]  # the blind default and the kernel method's stage
    # A copy of the files a clean clone has, so the build leaves nothing in the repository.
    src = tmp_path / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build")
    shutil.copytree(ROOT / "lmfn_cli", src / "lmfn_cli", ignore=ignore)
    for name in ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, src / name)
    (src / "weights").mkdir()
    for entry in entries:
        shutil.copy2(ROOT / "weights" / entry.filename, src / "weights" / entry.filename)
    shutil.rmtree(src / "lmfn_cli" / BUNDLED_DIR, ignore_errors=True)
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "-q", "-w", str(tmp_path / "dist")],
                          capture_output=True, text=True, timeout=600)
    if proc.returncode != 0 and any(s in proc.stdout + proc.stderr for s in NO_INDEX):
        pytest.skip(f"cannot build a wheel here (no package index for the build requirements): {proc.stderr[-300:]}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (wheel,) = (tmp_path / "dist").glob("lmfn-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        record = zf.read(next(n for n in zf.namelist() if n.endswith(".dist-info/RECORD"))).decode()
        for entry in entries:
            data = zf.read(f"lmfn_cli/{BUNDLED_DIR}/{entry.filename}")
            assert len(data) == entry.size and sha256(data).hexdigest() == entry.sha256
            assert f"lmfn_cli/{BUNDLED_DIR}/{entry.filename}" in record
