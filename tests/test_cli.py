import json
from pathlib import Path
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import natural_like
from lmfn_cli.cli import main
from lmfn_cli.images import read_image, write_image


@pytest.fixture
def runner():
    return CliRunner()


@pytest.fixture
def photos(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for i, (h, w) in enumerate([(40, 60), (71, 33)]):
        write_image(folder / f"p{i}.png", natural_like(h, w, seed=i))
    return folder


def test_version_and_help_have_examples(runner):
    result = runner.invoke(main, ["--version"])
    assert result.exit_code == 0 and "lmfn, version" in result.output
    for cmd in ([], ["deblur"], ["info"], ["models"], ["download-weights"], ["weights"], ["weights", "list"]):
        result = runner.invoke(main, [*cmd, "--help"])
        assert result.exit_code == 0 and "Example" in result.output, cmd


def test_info_json_lists_variants_with_counts(runner):
    result = runner.invoke(main, ["info", "--json"])
    assert result.exit_code == 0
    rows = {r["name"]: r for r in map(json.loads, result.output.splitlines())}
    assert rows["lmfn"]["params"] == 1_246_316
    assert rows["lmfn-no-attention"]["params"] == 1_201_250
    assert 70_000 < rows["lmfn"]["macs_per_pixel"] < 80_000
    assert rows["lmfn-rfdb1"]["macs_per_pixel"] < rows["lmfn-rfdb6"]["macs_per_pixel"]


def test_info_table(runner):
    result = runner.invoke(main, ["info"])
    assert result.exit_code == 0 and "lmfn-rfdb6" in result.output and "1.246M" in result.output


def test_deblur_folder_writes_every_image_and_prints_paths(runner, photos, tmp_path, tiny_weights):
    out = tmp_path / "out"
    result = runner.invoke(main, ["deblur", str(photos), "-o", str(out), "-w", str(tiny_weights)])
    assert result.exit_code == 0, result.output
    written = sorted(out.iterdir())
    assert [p.name for p in written] == ["p0.png", "p1.png"]
    assert result.stdout.split() == [str(p) for p in written]
    assert read_image(out / "p1.png").shape == (71, 33, 3)


def test_bad_file_is_reported_and_the_batch_goes_on(runner, photos, tmp_path, tiny_weights):
    (photos / "broken.png").write_bytes(b"not a png")
    out = tmp_path / "out"
    result = runner.invoke(main, ["deblur", str(photos), str(tmp_path / "missing.jpg"), "-o", str(out), "-w", str(tiny_weights)])
    assert result.exit_code == 1
    assert sorted(p.name for p in out.iterdir()) == ["p0.png", "p1.png"]
    errors = [line for line in result.stderr.splitlines() if line.startswith("lmfn: error:")]
    assert len(errors) == 2
    assert any("broken.png" in e and "not an image" in e for e in errors)
    assert any("missing.jpg" in e for e in errors)
    assert "2 deblurred, 2 failed" in result.stderr


def test_existing_outputs_are_kept_unless_overwrite(runner, photos, tmp_path, tiny_weights):
    out = tmp_path / "out"
    out.mkdir()
    (out / "p0.png").write_bytes(b"precious")
    args = ["deblur", str(photos), "-o", str(out), "-w", str(tiny_weights)]
    result = runner.invoke(main, args)
    assert result.exit_code == 1 and "exists already" in result.stderr
    assert (out / "p0.png").read_bytes() == b"precious"
    assert runner.invoke(main, [*args, "--overwrite"]).exit_code == 0
    assert read_image(out / "p0.png").shape == (40, 60, 3)


def test_output_equal_to_input_is_refused(runner, photos, tiny_weights):
    before = (photos / "p0.png").read_bytes()
    result = runner.invoke(main, ["deblur", str(photos / "p0.png"), "-o", str(photos), "-w", str(tiny_weights), "--overwrite"])
    assert result.exit_code == 1 and "would replace an input" in result.stderr
    assert (photos / "p0.png").read_bytes() == before


def test_deblur_without_weights_uses_the_bundled_default(runner, photos, tmp_path, monkeypatch):
    monkeypatch.setenv("LMFN_OFFLINE", "1")  # the bundled file needs no network
    monkeypatch.setenv("LMFN_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "out"
    result = runner.invoke(main, ["deblur", str(photos / "p0.png"), "-o", str(out), "-v", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(out / "p0.png")
    assert "weights: bundled default lmfn-synthblur-v2 (" in result.stderr
    assert read_image(out / "p0.png").shape == (40, 60, 3)
    assert not (tmp_path / "cache").exists()


def test_no_or_bad_weights_exit_3(runner, photos, tmp_path, monkeypatch):
    from lmfn_cli import weights

    monkeypatch.setattr(weights, "bundled_path", lambda entry=None: None)  # an install without it
    monkeypatch.setenv("LMFN_CACHE_DIR", str(tmp_path / "cache"))
    result = runner.invoke(main, ["deblur", str(photos), "-o", str(tmp_path / "o")])
    assert result.exit_code == 3 and "--weights" in result.stderr and "lmfn download-weights" in result.stderr
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 64)
    result = runner.invoke(main, ["deblur", str(photos), "-o", str(tmp_path / "o"), "-w", str(bad)])
    assert result.exit_code == 3 and str(bad) in result.stderr
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_unknown_device_is_a_usage_error(runner, photos, tmp_path, tiny_weights):
    result = runner.invoke(main, ["deblur", str(photos), "-o", str(tmp_path / "o"), "-w", str(tiny_weights), "--device", "toaster"])
    assert result.exit_code == 2


def test_real_subprocess_python_m(tmp_path, photos, tiny_weights):
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "lmfn_cli", "deblur", str(photos / "p0.png"), "-o", str(out), "-w", str(tiny_weights), "-q"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(out / "p0.png")
    assert proc.stderr == ""  # nothing but results on stdout, and no noise on stderr either
    assert np.asarray(read_image(out / "p0.png")).shape == (40, 60, 3)


def test_installed_entry_point():
    script = Path(sys.executable).parent / "lmfn"
    if not script.exists():
        pytest.skip("lmfn is not installed in this environment (CI installs it)")
    proc = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "deblur" in proc.stdout


def test_synth_command_writes_pairs_and_refuses_to_overwrite(runner, photos, tmp_path):
    out = tmp_path / "pairs"
    args = ["synth", str(photos), "-o", str(out), "--seed", "5", "--crop", "24", "--crop-mode", "random", "--repeats", "2", "--max-blur", "9"]
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"4 pairs in {out}"
    assert sorted(p.name for p in (out / "blur").iterdir()) == ["p0-0.png", "p0-1.png", "p1-0.png", "p1-1.png"]
    infos = [json.loads(line) for line in (out / "pairs.jsonl").read_text().splitlines()]
    assert all(i.get("params", {}).get("extent_px", 0) <= 9 for i in infos)
    result = runner.invoke(main, args)
    assert result.exit_code == 1 and "exists already" in result.stderr
    assert runner.invoke(main, ["synth", "-o", str(out), "--seed", "1"]).exit_code == 2


def test_synth_kernel_split_train_never_uses_the_validation_kernels(runner, photos, tmp_path):
    from test_validation import _kernels, _mat_v5

    kernels = tmp_path / "kernels"
    kernels.mkdir()
    (kernels / "usrnet_kernels_12.mat").write_bytes(_mat_v5(_kernels()))
    used = {}
    for split in ("train", "val"):
        out = tmp_path / split
        args = ["synth", str(photos), "-o", str(out), "--seed", "3", "--kernels", str(kernels), "--kernel-split", split,
                "--repeats", "12", "--crop", "24", "--max-blur", "9"]
        result = runner.invoke(main, args)
        assert result.exit_code == 0, result.output
        infos = [json.loads(line) for line in (out / "pairs.jsonl").read_text().splitlines()]
        used[split] = {i["params"]["index"] for i in infos if i["source"] == "usrnet"}
    assert used["train"] and used["train"] <= set(range(8))
    assert used["val"] and used["val"] <= {8, 9, 10, 11}
