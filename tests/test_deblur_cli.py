"""`lmfn deblur` end to end with a tiny model: inputs, outputs, fidelity, tiling, devices, shell behaviour."""

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image, ImageCms

from conftest import natural_like
from lmfn_cli.cli import main
from lmfn_cli.inference import resolve_precision
from lmfn_cli.images import read_picture, read_image, write_image


@pytest.fixture
def runner():
    return CliRunner()


@pytest.fixture
def tree(tmp_path):
    """in/a.png, in/b.jpg, in/sub/c.png, in/sub/deeper/d.png, in/.hidden.png, in/notes.txt"""
    root = tmp_path / "in"
    for rel, (h, w) in {"a.png": (40, 60), "b.jpg": (33, 47), "sub/c.png": (24, 24), "sub/deeper/d.png": (20, 30), ".hidden.png": (8, 8)}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        write_image(root / rel, natural_like(h, w, seed=len(rel)))
    (root / "notes.txt").write_text("not an image")
    return root


def run(runner, *args, weights):
    return runner.invoke(main, ["deblur", *map(str, args), "-w", str(weights), "--device", "cpu"])


def written(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


# --- inputs and output names ---------------------------------------------------------------


def test_folder_without_r_takes_only_its_own_images(runner, tree, tmp_path, tiny_weights):
    out = tmp_path / "out"
    result = run(runner, tree, "-o", out, weights=tiny_weights)
    assert result.exit_code == 0, result.output
    assert written(out) == ["a.png", "b.jpg"]  # no hidden file, no text file, no sub-folders
    assert result.stdout.split() == [str(out / "a.png"), str(out / "b.jpg")]


def test_recursive_keeps_the_folder_structure(runner, tree, tmp_path, tiny_weights):
    out = tmp_path / "out"
    result = run(runner, "-r", tree, "-o", out, weights=tiny_weights)
    assert result.exit_code == 0, result.output
    assert written(out) == ["a.png", "b.jpg", "sub/c.png", "sub/deeper/d.png"]
    assert read_image(out / "sub/deeper/d.png").shape == (20, 30, 3)


def test_output_folder_inside_the_input_is_not_read_back(runner, tree, tiny_weights):
    out = tree / "sharp"
    assert run(runner, "-r", tree, "-o", out, weights=tiny_weights).exit_code == 0
    result = run(runner, "-r", tree, "-o", out, "--skip-existing", weights=tiny_weights)
    assert result.exit_code == 0, result.output
    assert written(out) == ["a.png", "b.jpg", "sub/c.png", "sub/deeper/d.png"]


def test_quoted_globs_are_expanded_by_lmfn(runner, tree, tmp_path, tiny_weights):
    out = tmp_path / "out"
    result = run(runner, f"{tree}/*.png", f"{tree}/**/d.png", "-o", out, weights=tiny_weights)
    assert result.exit_code == 0, result.output
    assert written(out) == ["a.png", "d.png"]
    result = run(runner, f"{tree}/*.gif", "-o", out, weights=tiny_weights)
    assert result.exit_code == 1 and "no files match" in result.stderr


def test_suffix_and_format_name_the_outputs(runner, tree, tmp_path, tiny_weights):
    out = tmp_path / "out"
    result = run(runner, tree / "a.png", tree / "b.jpg", "-o", out, "-f", "webp", "--suffix", "-sharp", weights=tiny_weights)
    assert result.exit_code == 0, result.output
    assert written(out) == ["a-sharp.webp", "b-sharp.webp"]
    assert Image.open(out / "a-sharp.webp").format == "WEBP"
    result = run(runner, tree / "b.jpg", "-o", out, "-f", "tiff", weights=tiny_weights)
    assert result.exit_code == 0 and Image.open(out / "b.tif").format == "TIFF"


def test_same_output_name_twice_is_reported(runner, tree, tmp_path, tiny_weights):
    (tmp_path / "other").mkdir()
    write_image(tmp_path / "other" / "a.png", natural_like(10, 10))
    out = tmp_path / "out"
    result = run(runner, tree / "a.png", tmp_path / "other" / "a.png", "-o", out, weights=tiny_weights)
    assert result.exit_code == 1 and "same output" in result.stderr
    assert written(out) == ["a.png"]


def test_quality_changes_jpeg_size(runner, tree, tmp_path, tiny_weights):
    sizes = []
    for q in (30, 95):
        out = tmp_path / f"q{q}"
        assert run(runner, tree / "a.png", "-o", out, "-f", "jpg", "--quality", q, weights=tiny_weights).exit_code == 0
        sizes.append((out / "a.jpg").stat().st_size)
    assert sizes[0] < sizes[1]


# --- never overwrite -----------------------------------------------------------------------


def test_existing_output_is_kept_unless_overwrite_and_skip_existing_resumes(runner, tree, tmp_path, tiny_weights):
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.png").write_bytes(b"precious")
    result = run(runner, tree, "-o", out, weights=tiny_weights)
    assert result.exit_code == 1 and "exists already" in result.stderr
    assert (out / "a.png").read_bytes() == b"precious" and (out / "b.jpg").exists()

    (out / "b.jpg").unlink()
    result = run(runner, tree, "-o", out, "--skip-existing", "--json", weights=tiny_weights)
    assert result.exit_code == 0, result.output
    records = {Path(r["input"]).name: r for r in map(json.loads, result.stdout.splitlines())}
    assert records["a.png"]["status"] == "skipped" and records["b.jpg"]["status"] == "ok"
    assert (out / "a.png").read_bytes() == b"precious"

    assert run(runner, tree, "-o", out, "--overwrite", weights=tiny_weights).exit_code == 0
    assert read_image(out / "a.png").shape == (40, 60, 3)
    assert run(runner, tree, "-o", out, "--overwrite", "--skip-existing", weights=tiny_weights).exit_code == 2


def test_output_equal_to_an_input_is_refused_even_with_overwrite(runner, tree, tiny_weights):
    before = (tree / "a.png").read_bytes()
    result = run(runner, tree / "a.png", "-o", tree, "--overwrite", weights=tiny_weights)
    assert result.exit_code == 1 and "would replace an input" in result.stderr
    assert (tree / "a.png").read_bytes() == before


def test_no_temporary_files_are_left_behind(runner, tree, tmp_path, tiny_weights):
    out = tmp_path / "out"
    run(runner, "-r", tree, "-o", out, weights=tiny_weights)
    assert not [p for p in out.rglob("*") if p.name.startswith(".")]


# --- fidelity through the command ------------------------------------------------------------


def test_16bit_gray_alpha_exif_and_icc_survive_the_command(runner, tmp_path, tiny_weights):
    src = tmp_path / "src"
    src.mkdir()
    rgb16 = (natural_like(20, 28).astype(np.uint16) * 257 + 1)
    write_image(src / "deep.png", rgb16)
    write_image(src / "deep.tif", rgb16)
    write_image(src / "gray.png", natural_like(20, 28)[..., 0])
    rgba = np.dstack([natural_like(20, 28), np.arange(560, dtype=np.uint8).reshape(20, 28) % 251])
    write_image(src / "alpha.png", rgba)
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    exif[0x010F] = "lmfn-test-camera"
    Image.fromarray(natural_like(20, 28)).save(src / "rotated.jpg", exif=exif.tobytes(), icc_profile=icc, quality=95)

    out = tmp_path / "out"
    result = run(runner, src, "-o", out, weights=tiny_weights)
    assert result.exit_code == 0, result.output
    for name in ("deep.png", "deep.tif"):
        deep = read_picture(out / name).pixels
        assert deep.dtype == np.uint16 and deep.shape == (20, 28, 3)
        assert np.any(deep % 257 != 0)  # real 16-bit values, not 8-bit ones scaled up
    assert read_image(out / "gray.png").shape == (20, 28)
    alpha_out = read_image(out / "alpha.png")
    assert alpha_out.shape == (20, 28, 4) and np.array_equal(alpha_out[..., 3], rgba[..., 3])

    with Image.open(out / "rotated.jpg") as im:
        assert im.size == (20, 28)  # upright: the rotation was applied to the pixels
        assert im.getexif().get(0x0112, 1) == 1 and im.getexif()[0x010F] == "lmfn-test-camera"
        assert im.info.get("icc_profile") == icc

    stripped = tmp_path / "stripped"
    assert run(runner, src / "rotated.jpg", "-o", stripped, "--strip-metadata", weights=tiny_weights).exit_code == 0
    with Image.open(stripped / "rotated.jpg") as im:
        assert not im.info.get("icc_profile") and 0x010F not in im.getexif()


def test_bad_files_get_one_line_each_and_the_batch_goes_on(runner, tmp_path, tiny_weights):
    src = tmp_path / "src"
    src.mkdir()
    write_image(src / "good.png", natural_like(16, 16))
    (src / "empty.png").write_bytes(b"")
    (src / "text.jpg").write_text("hello")
    full = io.BytesIO()
    Image.fromarray(natural_like(64, 64)).save(full, format="PNG")
    (src / "truncated.png").write_bytes(full.getvalue()[: len(full.getvalue()) // 2])
    write_image(src / "huge.png", natural_like(50, 50))
    out = tmp_path / "out"
    result = run(runner, src, "-o", out, "--max-pixels", 2000, weights=tiny_weights)
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("lmfn: error:")]
    assert len(errors) == 4, result.stderr
    for name in ("empty.png", "text.jpg", "truncated.png", "huge.png"):
        assert sum(name in e for e in errors) == 1, (name, errors)
    assert any("more than the limit" in e for e in errors)
    assert written(out) == ["good.png"]
    assert result.stderr.splitlines()[-1].startswith("lmfn: 1 deblurred, 4 failed")


def test_json_reports_each_image(runner, tree, tmp_path, tiny_weights):
    out = tmp_path / "out"
    result = run(runner, tree / "a.png", tmp_path / "missing.png", "-o", out, "--json", "--tile", 64, weights=tiny_weights)
    assert result.exit_code == 1
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    ok = next(r for r in rows if r["status"] == "ok")
    assert ok["input"] == str(tree / "a.png") and ok["output"] == str(out / "a.png")
    auto = resolve_precision("auto", torch.device("cpu"))  # bf16 on a CPU with native bf16, else fp32
    assert ok["size"] == [60, 40] and ok["device"] == "cpu" and ok["precision"] == auto and ok["tile"] == 0
    assert ok["seconds"] >= 0
    bad = next(r for r in rows if r["status"] == "failed")
    assert "missing.png" in bad["input"] and bad["error"]


def test_what_libraries_print_to_stdout_during_a_batch_goes_to_stderr(runner, tree, tmp_path, tiny_weights, monkeypatch):
    """Ray's driver prints its cluster's errors to stdout from a thread ("(raylet) A worker died ..."),
    log_to_driver=False or not; stdout must still carry only the JSON lines."""
    import threading

    import lmfn_cli.engines.ray as ray_engine
    from lmfn_cli.batch import deblur_files

    raylet = "\x1b[33m(raylet)\x1b[0m A worker died or was killed while executing a task"

    class Chatty:  # the local engine, plus Ray's background printing
        def __init__(self, options, device="auto"):
            pass

        def __call__(self, model, jobs, settings, on_tile=None, on_frame=None, on_estimate=None):
            for job, outcome in deblur_files(model, jobs, settings, on_tile, on_frame, on_estimate=on_estimate):
                printer = threading.Thread(target=print, args=(raylet,))
                printer.start()
                printer.join()
                yield job, outcome

    monkeypatch.setattr(ray_engine, "RayEngine", Chatty)
    result = run(runner, tree / "a.png", tree / "b.jpg", "-o", tmp_path / "out", "--json", "--engine", "ray",
                 weights=tiny_weights)
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["status"] for line in result.stdout.splitlines()] == ["ok", "ok"]
    assert result.stderr.count("A worker died") == 2
    plain = run(runner, tree / "a.png", "-o", tmp_path / "plain", "--engine", "ray", weights=tiny_weights)
    assert plain.stdout.splitlines() == [str(tmp_path / "plain" / "a.png")] and "A worker died" in plain.stderr


# --- tiling, precision, devices -----------------------------------------------------------


def test_tiled_output_is_close_to_whole_image_output(runner, tmp_path, tiny_weights):
    write_image(tmp_path / "big.png", natural_like(150, 200, seed=3))
    outs = {}
    for tile in ("0", "64", "auto"):
        out = tmp_path / f"t{tile}"
        result = run(runner, tmp_path / "big.png", "-o", out, "--tile", tile, "--json", weights=tiny_weights)
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["tile"] == (64 if tile == "64" else 0)
        outs[tile] = read_image(out / "big.png").astype(float)
    assert np.array_equal(outs["0"], outs["auto"])  # a small image fits in memory whole
    mse = np.mean((outs["0"] - outs["64"]) ** 2)
    assert mse < 2.0  # tiles differ from the whole image only through the global attention


def test_bad_tile_values_are_usage_errors(runner, tree, tmp_path, tiny_weights):
    for bad in ("-5", "12", "big"):
        assert run(runner, tree, "-o", tmp_path / "o", "--tile", bad, weights=tiny_weights).exit_code == 2


def test_bf16_and_threads_on_cpu(runner, tree, tmp_path, tiny_weights):
    out = tmp_path / "out"
    result = run(runner, tree / "a.png", "-o", out, "--precision", "bf16", "--threads", 1, "--json", weights=tiny_weights)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["precision"] == "bf16"


def test_auto_device_says_it_uses_the_cpu_unless_quiet(runner, tree, tmp_path, tiny_weights):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    args = ["deblur", str(tree / "a.png"), "-w", str(tiny_weights)]
    result = runner.invoke(main, [*args, "-o", str(tmp_path / "o1")])
    assert result.exit_code == 0 and "running on the CPU" in result.stderr
    result = runner.invoke(main, [*args, "-o", str(tmp_path / "o2"), "-q"])
    assert result.exit_code == 0 and result.stderr == ""


def test_help_lists_every_option_exit_codes_and_an_example(runner):
    text = runner.invoke(main, ["deblur", "--help"]).output
    for option in ("--recursive", "--format", "--suffix", "--quality", "--overwrite", "--skip-existing", "--strip-metadata",
                   "--tile", "--tile-overlap", "--device", "--precision", "--threads", "--max-pixels", "--json", "--quiet", "--weights"):
        assert option in text, option
    assert "Exit codes:" in text and "Examples:" in text


# --- stdin / stdout and signals, in a real process ----------------------------------------


def _lmfn(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "lmfn_cli", "deblur", *map(str, args)], capture_output=True, timeout=120, **kwargs)


def test_stdin_to_stdout_pipeline(tmp_path, tiny_weights):
    buf = io.BytesIO()
    Image.fromarray(natural_like(30, 40)).save(buf, format="PNG")
    proc = _lmfn("-", "-o", "-", "-f", "png", "-w", tiny_weights, "--device", "cpu", "-q", input=buf.getvalue())
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == b""
    assert Image.open(io.BytesIO(proc.stdout)).size == (40, 30)

    proc = _lmfn("-", "-o", "-", "-w", tiny_weights, input=buf.getvalue())
    assert proc.returncode == 2 and b"-f/--format" in proc.stderr
    proc = _lmfn("-", "-o", tmp_path, "-f", "png", "-w", tiny_weights, input=buf.getvalue())
    assert proc.returncode == 2
    proc = _lmfn("-", "-o", "-", "-f", "png", "-w", tiny_weights, "--device", "cpu", input=b"garbage")
    assert proc.returncode == 1 and b"<stdin>" in proc.stderr and proc.stdout == b""


def test_plain_run_prints_paths_and_a_summary(tmp_path, tree, tiny_weights):
    out = tmp_path / "out"
    proc = _lmfn(tree / "a.png", "-o", out, "-w", tiny_weights, "--device", "cpu", text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(out / "a.png")
    lines = proc.stderr.splitlines()  # not a terminal: no progress bar, just the summary
    assert len(lines) == 1 and lines[0].startswith("lmfn: 1 deblurred, 0 failed"), proc.stderr


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_interrupted_batch_leaves_only_complete_images(tmp_path, tiny_weights, sig, code):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(40):
        write_image(src / f"{i:02d}.png", natural_like(192, 256, seed=i))
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "lmfn_cli", "deblur", str(src), "-o", str(out), "-w", str(tiny_weights),
                             "--device", "cpu", "--tile", "64"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            # a child inherits an ignored SIGINT (SIG_IGN) and Python then keeps ignoring it: give
                            # the child the default disposition, as a shell does, whatever the test runner left
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    first = proc.stdout.readline()  # wait until one image is done, so the run is mid-batch
    assert first.strip().endswith("00.png")
    time.sleep(0.05)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert "interrupted" in err or "terminated" in err
    files = list(out.iterdir())
    assert 1 <= len(files) < 40
    assert not [p for p in files if p.name.startswith(".") or p.suffix != ".png"]
    for p in files:
        assert read_image(p).shape == (192, 256, 3)  # every file there is a whole image


def test_16bit_to_jpeg_warns_naming_the_file_on_one_plain_line(runner, tmp_path, tiny_weights):
    write_image(tmp_path / "deep.png", natural_like(20, 28).astype(np.uint16) * 257)
    out = tmp_path / "out"
    result = run(runner, tmp_path / "deep.png", "-o", out, "-f", "jpg", weights=tiny_weights)
    assert result.exit_code == 0, result.output
    warning = next(line for line in result.stderr.splitlines() if "warning" in line)
    assert warning == f"lmfn: warning: {out / 'deep.jpg'}: JPG stores 8 bits per channel: rounding the 16-bit pixels to 8 bits"
    assert read_image(out / "deep.jpg").dtype == np.uint8


def test_odd_file_names_stay_one_line_in_text_and_are_exact_in_json_and_csv(runner, tmp_path, tiny_weights):
    import csv

    blur, sharp, out = tmp_path / "blur", tmp_path / "sharp", tmp_path / "out"
    blur.mkdir()
    sharp.mkdir()
    names = ["new\nline.png", "tab\there.png", "=HYPERLINK(1).png", "-dash.png", "@at.png", "plain.png"]
    for i, name in enumerate(names):
        img = natural_like(24, 32, seed=i)
        write_image(blur / name, img)
        write_image(sharp / name, img)
    (blur / "bad\nname.png").write_bytes(b"not a png")
    result = run(runner, blur, "-o", out, "--gt", sharp, "--report", tmp_path / "r.csv", weights=tiny_weights)
    assert result.exit_code == 1  # the broken file
    lines = result.stdout.splitlines()
    assert len(lines) == len(names) + 1 and lines[-1].startswith("mean (6 images)")
    assert all(len(line.split("\t")) == 3 for line in lines)  # a tab in a name cannot add a column
    assert any(line.startswith(str(out / "new\\nline.png") + "\t") for line in lines)
    errors = [line for line in result.stderr.splitlines() if line.startswith("lmfn: error:")]
    assert len(errors) == 1 and "bad\\nname.png" in errors[0]
    with open(tmp_path / "r.csv", newline="") as fh:
        rows = [r for r in csv.reader(line for line in fh if not line.startswith("#"))]
    cells = {r[0] for r in rows[1:-1]}
    assert str(out / "new\nline.png") in cells and str(out / "tab\there.png") in cells  # exact, CSV-quoted
    assert all(not c.startswith(("=", "+", "-", "@")) for c in cells)
    assert str(out / "plain.png") in cells
    # JSON keeps every name exactly
    js = run(runner, blur, "-o", tmp_path / "o2", "--json", weights=tiny_weights)
    outputs = {json.loads(line)["output"] for line in js.stdout.splitlines() if json.loads(line)["status"] == "ok"}
    assert outputs == {str(tmp_path / "o2" / n) for n in names}


def test_formula_like_names_in_csv_reports_are_quoted():
    from lmfn_cli.evaluation import Report, Score, _csv

    text = _csv(Report("deblur", {"description": "d"}, {"name": "m\nx"}, {}, [Score("=1+1", 20.0, 0.5), Score("-3", 21.0, 0.6)],
                       {"psnr": 20.5, "ssim": 0.55}))
    assert "\n'=1+1," in text and "\n'-3," in text and "# model.name: m\\nx\n" in text


def test_a_symlink_at_the_output_name_is_never_followed(runner, tmp_path, tiny_weights):
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    out.mkdir()
    write_image(src / "a.png", natural_like(24, 32, seed=1))
    write_image(src / "b.png", natural_like(24, 32, seed=2))
    precious = tmp_path / "precious.png"
    precious.write_bytes(b"the only copy")
    (out / "a.png").symlink_to(precious)
    (out / "b.png").symlink_to(tmp_path / "nowhere.png")  # dangling: still a name that exists
    result = run(runner, src, "-o", out, weights=tiny_weights)
    assert result.exit_code == 1 and result.stderr.count("exists already") == 2
    assert precious.read_bytes() == b"the only copy" and not (tmp_path / "nowhere.png").exists()
    result = run(runner, src, "-o", out, "--overwrite", weights=tiny_weights)
    assert result.exit_code == 0
    assert precious.read_bytes() == b"the only copy" and not (tmp_path / "nowhere.png").exists()
    assert not (out / "a.png").is_symlink() and read_image(out / "a.png").shape == (24, 32, 3)


def test_input_names_that_start_with_a_dash(runner, tmp_path, tiny_weights, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_image(tmp_path / "-x.png", natural_like(24, 32, seed=1))
    args = ["deblur", "-o", "out", "-w", str(tiny_weights), "--device", "cpu"]
    result = runner.invoke(main, [*args, "-x.png"])  # read as an option: a usage error, nothing written
    assert result.exit_code == 2 and not (tmp_path / "out").exists()
    result = runner.invoke(main, [*args, "--", "-x.png"])  # after --, a file name
    assert result.exit_code == 0 and result.stdout.splitlines() == ["out/-x.png"]
    assert (tmp_path / "out" / "-x.png").exists()


def test_an_image_too_small_to_score_is_one_error_and_the_batch_goes_on(runner, tmp_path, tiny_weights):
    """--gt on a 8x8 image: SSIM's 11x11 window does not fit; it was a traceback for the batch."""
    blur, sharp = tmp_path / "blur", tmp_path / "sharp"
    for name, (h, w) in {"tiny.png": (8, 8), "ok.png": (24, 32)}.items():
        img = natural_like(h, w, seed=1)
        write_image(blur / name, img)
        write_image(sharp / name, img)
    result = run(runner, blur, "-o", tmp_path / "out", "--gt", sharp, weights=tiny_weights)
    assert result.exit_code == 1 and "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("lmfn: error:")]
    assert len(errors) == 1 and "tiny.png" in errors[0] and "too small to score" in errors[0]
    assert any(line.startswith(str(tmp_path / "out" / "ok.png")) for line in result.stdout.splitlines())
