"""`pip install .` alone: no extra may be needed on the default paths (issue 26).

The test environment has every extra installed, so each command here runs in a subprocess
whose import system refuses the extras' packages, as a newcomer's environment would.
"""

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import natural_like
from lmfn_cli.images import write_image

ROOT = Path(__file__).resolve().parents[1]
EXTRAS = ("pyarrow", "ray", "av", "onnxruntime", "onnx", "moto", "playwright", "atheris", "hypothesis")

BLOCK_EXTRAS = f"""
import sys
class _NoExtras:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {EXTRAS!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}} (an extra, not installed)", name=name)
        return None
sys.meta_path.insert(0, _NoExtras())
from lmfn_cli.cli import main
sys.exit(main())
"""


def lmfn_without_extras(*args, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCK_EXTRAS, *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=300)


def test_the_blocker_really_blocks_the_extras(tmp_path):
    done = subprocess.run([sys.executable, "-c", BLOCK_EXTRAS.replace("from lmfn_cli.cli import main", "import pyarrow")],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "an extra, not installed" in done.stderr


@pytest.fixture
def folder(tmp_path) -> Path:
    for i in range(2):
        write_image(tmp_path / "in" / f"p{i}.png", natural_like(40, 48, seed=i))
    return tmp_path


def test_a_local_batch_and_its_report_need_no_extra(folder, tiny_weights):
    done = lmfn_without_extras("deblur", "in", "-o", "out", "-w", tiny_weights, "--html", "report.html", cwd=folder)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (folder / "out").iterdir()) == ["p0.png", "p1.png"]
    assert (folder / "report.html").stat().st_size > 0
    assert "pip install" not in done.stderr
    done = lmfn_without_extras("report", "out", "-o", "again.html", cwd=folder)
    assert done.returncode == 0, done.stderr


def test_the_quick_start_command_needs_no_extra(tmp_path):
    """The README's quick start, with the bundled default weights, on the bundled examples."""
    done = lmfn_without_extras("deblur", ROOT / "lmfn_cli" / "examples" / "blur", "-o", "deblurred", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert len(list((tmp_path / "deblurred").glob("*.png"))) == 3


def test_a_uri_without_pyarrow_is_one_line_naming_the_extra(folder, tiny_weights):
    done = lmfn_without_extras("deblur", "s3://bucket/in/", "-o", "out", "-w", tiny_weights, cwd=folder)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "pip install 'lmfn[cloud]'" in done.stderr
