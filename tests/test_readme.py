"""README.md states commands and measured figures; these tests keep them true."""

import re
from pathlib import Path

import pytest

from lmfn_cli.info import variant_infos

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def readme() -> str:
    return (ROOT / "README.md").read_text()


def _ci_steps(marker: str, end: str | None = None) -> list[str]:
    """The command lines of .ci/run after the comment line holding ``marker`` (up to ``end``)."""
    ci = (ROOT / ".ci" / "run").read_text().split(marker, 1)[1].splitlines()[1:]
    if end is not None:
        ci = ci[: next(i for i, line in enumerate(ci) if end in line)]
    steps = [line.strip() for line in ci if line.strip() and not line.startswith("#")]
    assert steps, f"no steps after {marker!r} in .ci/run"
    return steps


def test_readme_test_command_is_what_ci_runs(readme):
    steps = _ci_steps("the README's test command, line for line")
    command = next(line for line in readme.splitlines() if line.startswith("python3 -m venv") and "pytest" in line)
    assert [s.strip() for s in command.split("&&")[2:]] == steps


def test_readme_quick_start_is_what_ci_runs_first(readme):
    """CI runs the quick start itself, in a venv with `pip install .` alone."""
    steps = _ci_steps("the README's quick start, line for line", "end of the quick start")
    command = next(line for line in readme.splitlines() if line.startswith("python3 -m venv") and "lmfn deblur" in line)
    assert [s.strip() for s in command.split("&&")[2:]] == steps
    assert "pip install ." in steps and not any("[" in s for s in steps)  # no extra


def test_readme_parameter_tables_match_the_model(readme):
    rows = re.findall(r"\| `(lmfn[\w-]*)` \| \**([\d.]+)M\** \| \**[\d.]+M\** \| \**([\d.]+)k\** \|", readme)
    assert len(rows) == 10
    measured = {r.name: r for r in variant_infos()}
    for name, params, macs in rows:
        assert f"{measured[name].params / 1e6:.3f}" == params, name
        assert f"{measured[name].macs_per_pixel / 1e3:.1f}" == macs, name


def test_readme_documents_every_deblur_option_and_the_defaults(readme):
    from lmfn_cli.cli import deblur
    from lmfn_cli.tiling import CPU_MAX_TILE, DEFAULT_OVERLAP

    section = readme.split("### `lmfn deblur INPUT... -o OUT`", 1)[1].split("### Python API", 1)[0]
    for param in deblur.params:
        for opt in param.opts:
            if opt.startswith("--"):
                assert f"`{opt}" in section or f", {opt}" in section, opt
    assert f"(default {DEFAULT_OVERLAP})" in section
    assert f"at most {CPU_MAX_TILE})" in section
    assert "**130**/**143**" in section


def test_readme_scored_batch_example_runs(readme, tmp_path, monkeypatch, tiny_model, capsys):
    import numpy as np

    from conftest import natural_like
    from lmfn_cli.images import write_image

    block = next(b for b in re.findall(r"```python\n(.*?)```", readme, re.S) if "run_batch" in b)
    assert len([line for line in block.splitlines() if line.strip()]) == 5  # "in five lines", as the README says
    for folder in ("blur", "sharp"):
        (tmp_path / folder).mkdir()
    for i in range(2):
        img = natural_like(40, 48, seed=i)
        write_image(tmp_path / "blur" / f"p{i}.png", img)
        write_image(tmp_path / "sharp" / f"p{i}.png", np.clip(img.astype(int) + 3, 0, 255).astype(np.uint8))
    monkeypatch.chdir(tmp_path)
    namespace = {"load_model": lambda *a, **k: tiny_model}
    exec(compile(block, "README.md", "exec"), namespace)
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 3 and printed[0].startswith("out/p0.png ok ")
    assert printed[-1].startswith("2 0 ")
    assert (tmp_path / "scores.csv").exists() and (tmp_path / "out" / "p1.png").exists()


def test_every_test_the_readme_names_exists(readme):
    named = set(re.findall(r"`(test_[a-z0-9_]+)`", readme))
    defined = set()
    for path in (ROOT / "tests").rglob("test_*.py"):
        defined |= set(re.findall(r"^def (test_[a-z0-9_]+)", path.read_text(), re.M))
    assert named and named <= defined, sorted(named - defined)
