"""`lmfn bench` and `lmfn deblur --gt`, end to end with a tiny model on tiny images.

Every score the CLI prints is checked against an independent computation: PSNR in plain numpy on
the uint8 images (the model's outputs written by `lmfn deblur`), gaussian SSIM against the
scikit-image values written down in test_metrics.py, MATLAB SSIM and the Köhler benchmark score
against the plain-numpy transcriptions of ssim.m and eval_image.m there. Also: pairing (case- and
extension-insensitive, natural order), warnings, one-line errors and exit codes, and the reports
(JSON, CSV). No network: the mini Köhler benchmark is served on 127.0.0.1.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from conftest import natural_like
from test_datasets import _png, _zip
from test_metrics import FRAME_OFFSETS, IMAGES, SKIMAGE_SSIM, _eval_image_reference, _kohler_scene
from test_metrics import H as KH
from test_metrics import W as KW
from test_metrics import _matlab_ssim_reference

import lmfn_cli
from lmfn_cli import datasets as D
from lmfn_cli.bench import PAPER
from lmfn_cli.cli import main
from lmfn_cli.errors import ConfigError
from lmfn_cli.evaluation import Protocol, Report, Score, pair_by_order, pair_by_stem, summarise, write_report

H, W = 40, 48  # every test image is 48x40 (IMAGES from test_metrics too)


# --- helpers ---------------------------------------------------------------------------------------


def lmfn(*args, weights: Path):
    """Run ``lmfn ARGS -w WEIGHTS --device cpu --tile 0 --threads 1`` in-process (stdout and stderr
    apart). One thread: these images are tiny, and two threads stall next to any other busy process."""
    return CliRunner().invoke(main, [*map(str, args), "-w", str(weights), "--device", "cpu", "--tile", "0",
                                     "--threads", "1"])


def save(path: Path, img: np.ndarray, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path, **kw)
    return path


def load(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def np_psnr(a: np.ndarray, b: np.ndarray) -> float:
    """The textbook PSNR of two uint8 images: float64 MSE, peak 255."""
    assert a.dtype == b.dtype == np.uint8 and a.shape == b.shape
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / mse))


def box_blur(img: np.ndarray, r: int) -> np.ndarray:
    h, w = img.shape[:2]
    pad = np.pad(img.astype(np.float64), ((r, r), (r, r), (0, 0)), mode="edge")
    n = 2 * r + 1
    return np.round(sum(pad[i:i + h, j:j + w] for i in range(n) for j in range(n)) / n**2).astype(np.uint8)


def sharp_image(seed: int) -> np.ndarray:
    return natural_like(H, W, seed=seed)


def stderr_lines(result, text: str) -> list[str]:
    return [line for line in result.stderr.splitlines() if text in line]


@pytest.fixture
def pairs(tmp_path) -> Path:
    """pairs/blur/{a.png, B.PNG, c.png} + pairs/sharp/{a.png, b.png, c.jpg}: upper-case extension,
    a JPEG ground truth. ``a`` is test_metrics' sharp/blurred pair (scikit-image SSIM known)."""
    root = tmp_path / "pairs"
    save(root / "blur" / "a.png", IMAGES["blurred"])
    save(root / "sharp" / "a.png", IMAGES["sharp"])
    save(root / "blur" / "B.PNG", box_blur(sharp_image(1), 1))
    save(root / "sharp" / "b.png", sharp_image(1))
    save(root / "blur" / "c.png", box_blur(sharp_image(2), 2))
    save(root / "sharp" / "c.jpg", sharp_image(2), quality=90)
    return root


PAIRS = {"a": ("a.png", "a.png"), "B": ("B.PNG", "b.png"), "c": ("c.png", "c.jpg")}  # name: (blurry, sharp)


def deblurred(folder: Path, out: Path, weights: Path) -> Path:
    """The model's results for ``folder``'s images, written by ``lmfn deblur`` (PNG in, PNG out)."""
    result = lmfn("deblur", folder, "-o", out, "-q", weights=weights)
    assert result.exit_code == 0, result.output
    return out


# --- lmfn bench on a folder of pairs ---------------------------------------------------------------


def test_bench_on_pairs_agrees_with_numpy_on_the_deblur_outputs(pairs, tmp_path, tiny_weights):
    result = lmfn("bench", "--dataset", pairs, "--json", weights=tiny_weights)
    assert result.exit_code == 0, result.output
    rep = json.loads(result.stdout)
    assert rep["command"] == "bench" and rep["protocol"]["name"] == "pairs" and rep["protocol"]["ssim"] == "gaussian"
    assert [s["name"] for s in rep["images"]] == list(PAIRS)  # B.PNG paired with b.png, c.png with c.jpg
    assert rep["mean"]["images"] == 3 and rep["mean"]["infinite_psnr"] == 0
    assert all(s["seconds"] > 0 for s in rep["images"])

    out = deblurred(pairs / "blur", tmp_path / "out", tiny_weights)
    ours, base = [], []
    for s, b, (name, (blurry, sharp)) in zip(rep["images"], rep["baseline"], PAIRS.items()):
        truth = load(pairs / "sharp" / sharp)
        ours.append(np_psnr(load(out / blurry), truth))
        base.append(np_psnr(load(pairs / "blur" / blurry), truth))
        assert s["psnr"] == pytest.approx(ours[-1], abs=0.01), name
        assert b["name"] == name and b["psnr"] == pytest.approx(base[-1], abs=0.01), name
        assert 0 < s["ssim"] <= 1 and b["seconds"] is None
    assert rep["mean"]["psnr"] == pytest.approx(np.mean(ours), abs=0.01)
    assert rep["baseline_mean"]["psnr"] == pytest.approx(np.mean(base), abs=0.01)
    # the blurry input's gaussian SSIM against scikit-image's value for the same uint8 pair
    assert rep["baseline"][0]["ssim"] == pytest.approx(SKIMAGE_SSIM[("sharp", "blurred")], abs=1e-6)


def test_bench_takes_input_target_folders_too(pairs, tmp_path, tiny_weights):
    other = tmp_path / "other"
    other.mkdir()
    (pairs / "blur").rename(other / "input")
    (pairs / "sharp").rename(other / "target")
    result = lmfn("bench", "--dataset", other, "--json", "--no-baseline", weights=tiny_weights)
    assert result.exit_code == 0, result.output
    rep = json.loads(result.stdout)
    assert [s["name"] for s in rep["images"]] == list(PAIRS) and "baseline" not in rep
    truth = load(other / "target" / "a.png")
    out = deblurred(other / "input", tmp_path / "out", tiny_weights)
    assert rep["images"][0]["psnr"] == pytest.approx(np_psnr(load(out / "a.png"), truth), abs=0.01)


def test_unpaired_files_are_warned_about_and_not_scored(pairs, tiny_weights):
    save(pairs / "blur" / "d.png", IMAGES["blurred"])
    save(pairs / "sharp" / "e.png", IMAGES["sharp"])
    result = lmfn("bench", "--dataset", pairs, "--json", weights=tiny_weights)
    assert result.exit_code == 0, result.output
    assert [s["name"] for s in json.loads(result.stdout)["images"]] == list(PAIRS)
    [d] = stderr_lines(result, "d.png")
    [e] = stderr_lines(result, "e.png")
    assert d.startswith("lmfn: warning:") and "no ground truth" in d and "not scored" in d
    assert e.startswith("lmfn: warning:") and "no blurry image" in e


def test_reports_in_csv_and_json(pairs, tmp_path, tiny_weights):
    sha = hashlib.sha256(tiny_weights.read_bytes()).hexdigest()
    result = lmfn("bench", "--dataset", pairs, "--report", tmp_path / "r.json", weights=tiny_weights)
    assert result.exit_code == 0, result.output
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["model"]["sha256"] == sha and rep["model"]["file"] == str(tiny_weights)
    assert rep["model"]["name"] == "tiny" and rep["model"]["parameters"] > 0
    assert rep["run"]["device"] == "cpu" and rep["run"]["version"] == lmfn_cli.__version__
    assert rep["run"]["dataset"] == "pairs" and rep["run"]["root"] == str(pairs) and rep["run"]["failed"] == []
    assert "PSNR on RGB 8-bit, peak 255" in rep["protocol"]["description"]
    assert "gaussian" in rep["protocol"]["description"]
    assert [s["name"] for s in rep["images"]] == [s["name"] for s in rep["baseline"]] == list(PAIRS)
    # the table on stdout: our row and the blurry input, with the report's means
    table = result.stdout.splitlines()
    assert table[0].split()[:3] == ["method", "PSNR", "SSIM"]
    assert table[1].split()[:4] == ["blurry", "input", f"{rep['baseline_mean']['psnr']:.2f}",
                                    f"{rep['baseline_mean']['ssim']:.4f}"]
    assert table[2].split()[:3] == ["tiny", f"{rep['mean']['psnr']:.2f}", f"{rep['mean']['ssim']:.4f}"]
    assert table[2].split()[-1] == "cpu" and len(table) == 3

    result = lmfn("bench", "--dataset", pairs, "--report", tmp_path / "r.csv", "-q", weights=tiny_weights)
    assert result.exit_code == 0, result.output
    text = (tmp_path / "r.csv").read_text()
    meta = dict(line[2:].split(": ", 1) for line in text.splitlines() if line.startswith("#"))
    assert meta["command"] == "bench" and meta["model.sha256"] == sha and meta["run.device"] == "cpu"
    assert meta["run.version"] == lmfn_cli.__version__ and meta["protocol"] == rep["protocol"]["description"]
    rows = list(csv.DictReader(line for line in io.StringIO(text) if not line.startswith("#")))
    assert [r["name"] for r in rows] == [*PAIRS, "MEAN"]
    for row, s, b in zip(rows, rep["images"], rep["baseline"]):  # same weights, same images, same scores
        assert float(row["psnr"]) == pytest.approx(s["psnr"], abs=1e-5)
        assert float(row["ssim"]) == pytest.approx(s["ssim"], abs=1e-5)
        assert float(row["input_psnr"]) == pytest.approx(b["psnr"], abs=1e-5)
        assert row["frame"] == row["shift_y"] == row["gain"] == ""
    assert float(rows[-1]["psnr"]) == pytest.approx(rep["mean"]["psnr"], abs=1e-5)
    assert float(rows[-1]["input_ssim"]) == pytest.approx(rep["baseline_mean"]["ssim"], abs=1e-5)


def test_a_report_with_another_extension_is_refused_before_any_work(pairs, tmp_path, tiny_weights):
    for command in (["bench", "--dataset", pairs], ["deblur", pairs / "blur", "-o", tmp_path / "out",
                                                    "--gt", pairs / "sharp"]):
        result = lmfn(*command, "--report", tmp_path / "r.txt", weights=tiny_weights)
        assert result.exit_code == 2, result.output
        assert ".json or .csv" in result.stderr and "r.txt" in result.stderr
        assert result.stdout == "" and not (tmp_path / "out").exists() and not (tmp_path / "r.txt").exists()
    result = lmfn("bench", "--dataset", pairs, "--report", tmp_path / "R.JSON", "-q", weights=tiny_weights)
    assert result.exit_code == 0 and json.loads((tmp_path / "R.JSON").read_text())["command"] == "bench"


def test_limit_scores_only_the_first_images(pairs, tiny_weights):
    result = lmfn("bench", "--dataset", pairs, "--limit", 1, "--json", weights=tiny_weights)
    assert result.exit_code == 0, result.output
    rep = json.loads(result.stdout)
    assert [s["name"] for s in rep["images"]] == ["a"] and rep["mean"]["images"] == 1
    assert rep["baseline_mean"]["images"] == 1 and rep["run"]["limit"] == 1
    assert lmfn("bench", "--dataset", pairs, "--limit", 0, weights=tiny_weights).exit_code == 2


def test_a_corrupt_image_fails_alone_with_one_line(pairs, tmp_path, tiny_weights):
    (pairs / "blur" / "B.PNG").write_bytes(b"\x89PNG garbage, not an image")
    result = lmfn("bench", "--dataset", pairs, "--json", "--report", tmp_path / "r.json", weights=tiny_weights)
    assert result.exit_code == 1, result.output
    [line] = stderr_lines(result, "B.PNG")
    assert line.startswith("lmfn: error: ") and str(pairs / "blur" / "B.PNG") in line
    assert result.stderr.splitlines()[-1] == "lmfn: error: 1 of 3 images failed"
    for rep in (json.loads(result.stdout), json.loads((tmp_path / "r.json").read_text())):
        assert [s["name"] for s in rep["images"]] == [s["name"] for s in rep["baseline"]] == ["a", "c"]
        assert rep["run"]["failed"] == ["B"] and rep["mean"]["images"] == 2
    # the others are scored as without the broken one (the warm-up moved to the next image)
    out = deblurred(pairs / "blur" / "c.png", tmp_path / "out", tiny_weights)
    assert json.loads(result.stdout)["images"][1]["psnr"] == pytest.approx(
        np_psnr(load(out / "c.png"), load(pairs / "sharp" / "c.jpg")), abs=0.01)


def test_usage_errors(pairs, tmp_path, tiny_weights, monkeypatch):
    monkeypatch.setenv("LMFN_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LMFN_OFFLINE", "1")
    result = lmfn("bench", "--dataset", pairs, "--compare-paper", weights=tiny_weights)
    assert result.exit_code == 2 and "--compare-paper needs --dataset kohler or gopro" in result.stderr
    result = lmfn("bench", "--dataset", "kohler", "--y-channel", weights=tiny_weights)
    assert result.exit_code == 2 and "Köhler protocol" in result.stderr
    result = lmfn("bench", "--dataset", tmp_path / "nope", weights=tiny_weights)
    assert result.exit_code == 2 and "not kohler, gopro or a folder" in result.stderr
    assert not (tmp_path / "data").exists()


# --- Köhler, downloaded from a local server ------------------------------------------------------

SHIFT = (2, -3)  # Blurry1_2[i, j] = frame 4's view of the scene at [i + 2, j - 3], times GAIN
GAIN = 0.9


def _u8(x: np.ndarray) -> np.ndarray:
    """(3,H,W) float in [0,1] -> (H,W,3) uint8."""
    return np.clip(np.rint(x * 255), 0, 255).astype(np.uint8).transpose(1, 2, 0)


def mini_kohler() -> tuple[dict[str, bytes], dict[int, list[np.ndarray]], dict[int, np.ndarray]]:
    """Archives in the benchmark's layout (image 1, trajectories 1 and 2), the frames and the blurry
    photos, from test_metrics' scene: five views of one smooth scene, each with its own noise, so
    only one frame matches. Blurry1_1 *is* frame 2 (index 1; infinite PSNR); Blurry1_2 is frame 4
    (index 3) moved by SHIFT and scaled by GAIN."""
    noisy, views = _kohler_scene(seed=1)
    frames = {1: [_u8(v) for v in views], 2: [_u8(v) for v in views[:4]]}
    (oy, ox), (dy, dx) = FRAME_OFFSETS[3], SHIFT
    blurry = {1: frames[1][1].copy(), 2: _u8(GAIN * noisy[3][:, oy + dy:oy + dy + KH, ox + dx:ox + dx + KW])}
    gt = {f"Image1/Kernel{j}/GroundTruth1_{j}_{k}.png": _png(f)
          for j, fs in frames.items() for k, f in enumerate(fs, 1)}
    files = {"GroundTruth_pngs_Image1.zip": _zip(gt),
             "BlurryImages.zip": _zip({f"Blurry1_{j}.png": _png(b) for j, b in blurry.items()})}
    return files, frames, blurry


@pytest.fixture
def kohler_server(server, tmp_path, monkeypatch):
    """The mini Köhler archives on the local file server (conftest.py), LMFN_KOHLER_URL pointing
    there, the registry's checksums replaced by theirs, LMFN_DATA_DIR in tmp_path. Returns (frames,
    blurry, requests): the server's request log."""
    files, frames, blurry = mini_kohler()
    server.files.update(files)
    monkeypatch.setenv("LMFN_KOHLER_URL", server.base_url)
    monkeypatch.setenv("LMFN_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.delenv("LMFN_OFFLINE", raising=False)
    archives = tuple(D.Archive(name, md5=hashlib.md5(data).hexdigest()) for name, data in files.items())
    monkeypatch.setattr(D, "KOHLER", replace(D.KOHLER, archives=archives))
    return frames, blurry, server.requests


def _reference(restored: np.ndarray, frames: list[np.ndarray]) -> tuple[float, int, tuple[int, int], float]:
    """(psnr, frame, shift, gain) of the best frame, by the numpy transcription of eval_image.m."""
    scores = _eval_image_reference(restored.astype(np.float64), [f.astype(np.float64) for f in frames])
    best = max(range(len(scores)), key=lambda k: scores[k][0])
    return scores[best][0], best, scores[best][1], scores[best][2]


def test_bench_kohler_downloads_scores_like_eval_image_and_compares_with_the_paper(kohler_server, tmp_path,
                                                                                 tiny_weights):
    frames, blurry, requests = kohler_server
    result = lmfn("bench", "--dataset", "kohler", "--json", weights=tiny_weights)
    assert result.exit_code == 0, result.output
    assert sorted(r["path"] for r in requests) == ["/BlurryImages.zip", "/GroundTruth_pngs_Image1.zip"]
    rep = json.loads(result.stdout)
    assert rep["protocol"]["name"] == "kohler" and rep["protocol"]["ssim"] == "gaussian"
    assert "Köhler" in rep["protocol"]["description"] and rep["run"]["dataset"] == "kohler"
    assert rep["run"]["root"] == str(tmp_path / "data" / "kohler")
    assert [s["name"] for s in rep["images"]] == ["Blurry1_1", "Blurry1_2"]

    # the blurry inputs: Blurry1_1 is frame index 1 exactly; Blurry1_2 is frame index 3, shifted
    exact, shifted = rep["baseline"]
    assert exact["frame"] == 1 and exact["shift"] == [0, 0] and exact["gain"] == pytest.approx(1.0, abs=1e-6)
    assert exact["psnr"] is None and exact["psnr_infinite"] is True and exact["ssim"] == pytest.approx(1.0, abs=1e-9)
    value, frame, shift, gain = _reference(blurry[2], frames[2])
    assert (frame, tuple(shift)) == (3, SHIFT) and gain == pytest.approx(1 / GAIN, rel=0.02)
    assert shifted["frame"] == frame and tuple(shifted["shift"]) == SHIFT
    assert shifted["psnr"] == pytest.approx(value, abs=0.01) and shifted["gain"] == pytest.approx(gain, rel=1e-6)
    assert rep["baseline_mean"]["infinite_psnr"] == 1
    assert rep["baseline_mean"]["psnr"] == pytest.approx(value, abs=0.01)  # inf left out of the mean

    # the model's results, written by lmfn deblur and scored by the transcription
    root = tmp_path / "data" / "kohler"
    out = tmp_path / "out"
    for j in (1, 2):
        deblurred(root / f"Blurry1_{j}.png", out, tiny_weights)
    values = []
    for j, s in zip((1, 2), rep["images"]):
        value, frame, shift, gain = _reference(load(out / f"Blurry1_{j}.png"), frames[j])
        values.append(value)
        assert s["psnr"] == pytest.approx(value, abs=0.01) and s["frame"] == frame
        assert tuple(s["shift"]) == tuple(shift) and s["gain"] == pytest.approx(gain, rel=1e-6)
        assert 0 < s["ssim"] <= 1
    assert rep["mean"]["psnr"] == pytest.approx(np.mean(values), abs=0.01)

    # cached now: no second download; the paper's Table 2 above our rows
    result = lmfn("bench", "--dataset", "kohler", "--compare-paper", "--report", tmp_path / "k.csv",
                  weights=tiny_weights)
    assert result.exit_code == 0, result.output
    assert len(requests) == 2
    rows = [line.split("  ") for line in result.stdout.splitlines()]
    cells = [[c.strip() for c in row if c.strip()] for row in rows]
    assert cells[0][:3] == ["method", "PSNR", "SSIM"]
    assert [c[0] for c in cells[1:-2]] == [r.method for r in PAPER["kohler"]]
    assert ["LMFN (paper)", "30.94", "0.9027", "1.25M", "0.019s", "2080Ti (paper)"] in cells
    assert cells[-2][:2] == ["blurry input", f"{rep['baseline_mean']['psnr']:.2f}"]
    assert cells[-1][:2] == ["tiny", f"{rep['mean']['psnr']:.2f}"] and cells[-1][-1] == "cpu"
    assert not any("DMPHN" in line for line in result.stdout.splitlines())  # GoPro's table only
    csv_rows = list(csv.DictReader(line for line in (tmp_path / "k.csv").read_text().splitlines()
                                   if not line.startswith("#")))
    assert [r["name"] for r in csv_rows] == ["Blurry1_1", "Blurry1_2", "MEAN"]
    assert csv_rows[0]["input_psnr"] == "inf" and int(csv_rows[0]["frame"]) == rep["images"][0]["frame"]
    assert (int(csv_rows[1]["shift_y"]), int(csv_rows[1]["shift_x"])) == tuple(rep["images"][1]["shift"])


# --- GoPro from a local copy -----------------------------------------------------------------------


GOPRO_NAMES = ["GOPR0001_11_00/000001", "GOPR0001_11_00/000002", "GOPR0002_11_00/000001"]


@pytest.fixture
def gopro(tmp_path) -> Path:
    """mini/GOPRO_Large/test/SEQ/{blur,blur_gamma,sharp}/FRAME.png for GOPRO_NAMES (blur_gamma is
    blurrier, so its scores differ), and a train/ split that must not be read."""
    mini = tmp_path / "mini"
    for seed, name in enumerate(GOPRO_NAMES, 20):
        seq, frame = name.split("/")
        base, sharp = mini / "GOPRO_Large" / "test" / seq, sharp_image(seed)
        save(base / "sharp" / f"{frame}.png", sharp)
        save(base / "blur" / f"{frame}.png", box_blur(sharp, 1))
        save(base / "blur_gamma" / f"{frame}.png", box_blur(sharp, 3))
    for variant in ("blur", "blur_gamma", "sharp"):
        save(mini / "GOPRO_Large" / "train" / "GOPR9999_00_00" / variant / "000001.png", sharp_image(99))
    return mini


def test_bench_gopro_blur_variants_and_matlab_ssim(gopro, tiny_weights):
    reps = {}
    for variant in ("blur", "blur_gamma"):
        extra = ["--blur-variant", variant] if variant != "blur" else []
        result = lmfn("bench", "--dataset", "gopro", "--root", gopro, *extra, "--json", "-q", weights=tiny_weights)
        assert result.exit_code == 0, result.output
        reps[variant] = rep = json.loads(result.stdout)
        assert rep["run"]["blur_variant"] == variant and rep["run"]["dataset"] == "gopro"
        assert rep["protocol"]["ssim"] == "matlab" and "MATLAB ssim" in rep["protocol"]["description"]
        assert [s["name"] for s in rep["images"]] == GOPRO_NAMES
        for b in rep["baseline"]:
            seq, frame = b["name"].split("/")
            folder = gopro / "GOPRO_Large" / "test" / seq
            expected = np_psnr(load(folder / variant / f"{frame}.png"), load(folder / "sharp" / f"{frame}.png"))
            assert b["psnr"] == pytest.approx(expected, abs=0.01), (variant, b["name"])
    for a, b in zip(reps["blur"]["baseline"], reps["blur_gamma"]["baseline"]):
        assert a["psnr"] > b["psnr"] + 1  # the blurrier blur_gamma images were read
    # the images are the same, so the model's scores differ only through its input
    assert reps["blur"]["mean"]["psnr"] != reps["blur_gamma"]["mean"]["psnr"]
    # MATLAB's SSIM (3-D volume), not the gaussian one, by the numpy transcription of ssim.m
    folder = gopro / "GOPRO_Large" / "test" / "GOPR0002_11_00"
    blurry, sharp = load(folder / "blur" / "000001.png"), load(folder / "sharp" / "000001.png")
    assert reps["blur"]["baseline"][2]["ssim"] == pytest.approx(_matlab_ssim_reference(blurry, sharp), abs=1e-6)

    result = lmfn("bench", "--dataset", "gopro", "--root", gopro / "GOPRO_Large" / "test", "--ssim", "gaussian",
                  "--limit", 1, "--json", "-q", weights=tiny_weights)
    assert result.exit_code == 0, result.output
    rep = json.loads(result.stdout)
    assert rep["protocol"]["ssim"] == "gaussian" and rep["run"]["blur_variant"] == "blur"
    assert rep["baseline"][0]["psnr"] == reps["blur"]["baseline"][0]["psnr"]
    assert rep["baseline"][0]["ssim"] != pytest.approx(reps["blur"]["baseline"][0]["ssim"], abs=1e-3)


# --- lmfn deblur --gt ---------------------------------------------------------------------------------


@pytest.fixture
def scored(tmp_path) -> tuple[Path, Path]:
    """in/{A.PNG, b.png, c.png}, gt/{a.png, B.jpg, z.png}: A and b have ground truth (other case and
    extension), c has none, z matches no input."""
    inp, gt = tmp_path / "in", tmp_path / "gt"
    save(inp / "A.PNG", IMAGES["blurred"])
    save(gt / "a.png", IMAGES["sharp"])
    save(inp / "b.png", box_blur(sharp_image(1), 1))
    save(gt / "B.jpg", sharp_image(1), quality=90)
    save(inp / "c.png", box_blur(sharp_image(2), 1))
    save(gt / "z.png", sharp_image(3))
    return inp, gt


def test_deblur_gt_scores_the_outputs_like_numpy(scored, tmp_path, tiny_weights):
    inp, gt = scored
    out = tmp_path / "out"
    result = lmfn("deblur", inp, "-o", out, "--gt", gt, "--report", tmp_path / "r.json", weights=tiny_weights)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 4
    expected = {}
    for line, (name, truth) in zip(lines, (("A.PNG", "a.png"), ("b.png", "B.jpg"))):
        output, value, ssim_value = line.split("\t")
        assert output == str(out / name)
        expected[output] = np_psnr(load(out / name), load(gt / truth))
        assert float(value) == pytest.approx(expected[output], abs=0.01)
        assert 0 < float(ssim_value) <= 1
    assert lines[2] == str(out / "c.png")  # written, not scored
    label, value, ssim_value = lines[3].split("\t")
    assert label == "mean (2 images)" and float(value) == pytest.approx(np.mean(list(expected.values())), abs=0.01)
    assert load(out / "c.png").shape == (H, W, 3)
    [c] = stderr_lines(result, "c.png")
    assert c.startswith("lmfn: warning:") and "no ground truth" in c and "not scored" in c
    [z] = stderr_lines(result, "z.png")
    assert z.startswith("lmfn: warning:") and "1 ground-truth file(s) match no input" in z

    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["command"] == "deblur" and rep["run"]["pair_by"] == "stem"
    assert rep["run"]["ground_truth"] == str(gt) and rep["run"]["device"] == "cpu"
    assert rep["model"]["sha256"] == hashlib.sha256(tiny_weights.read_bytes()).hexdigest()
    assert rep["protocol"]["name"] == "pairs" and rep["protocol"]["ssim"] == "gaussian"
    assert [s["name"] for s in rep["images"]] == list(expected)
    for s in rep["images"]:
        assert s["psnr"] == pytest.approx(expected[s["name"]], abs=0.01)
    assert rep["mean"]["images"] == 2 and rep["mean"]["psnr"] == pytest.approx(float(value), abs=0.005)
    assert "baseline" not in rep


def test_deblur_gt_json_lines(scored, tmp_path, tiny_weights):
    inp, gt = scored
    out = tmp_path / "out"
    result = lmfn("deblur", inp, "-o", out, "--gt", gt, "--json", "--ssim", "matlab", weights=tiny_weights)
    assert result.exit_code == 0, result.output
    records = {Path(r["input"]).name: r for r in map(json.loads, result.stdout.splitlines())}
    assert sorted(records) == ["A.PNG", "b.png", "c.png"]  # no mean line with --json
    a, b, c = records["A.PNG"], records["b.png"], records["c.png"]
    assert a["truth"] == str(gt / "a.png") and b["truth"] == str(gt / "B.jpg")
    assert a["psnr"] == pytest.approx(np_psnr(load(out / "A.PNG"), IMAGES["sharp"]), abs=0.01)
    assert b["psnr"] == pytest.approx(np_psnr(load(out / "b.png"), load(gt / "B.jpg")), abs=0.01)
    assert a["ssim"] == pytest.approx(_matlab_ssim_reference(load(out / "A.PNG"), IMAGES["sharp"]), abs=1e-5)
    assert c["status"] == "ok" and c["truth"] is None and c["psnr"] is None and c["ssim"] is None


def test_deblur_gt_pair_by_order_is_natural(tmp_path, tiny_weights):
    """img2 with x (the first ground truth), img10 with y: by name (img10 < img2) it would be the reverse."""
    inp, gt, out = tmp_path / "in", tmp_path / "gt", tmp_path / "out"
    save(inp / "img2.png", box_blur(sharp_image(4), 1))
    save(gt / "x.png", sharp_image(4))
    save(inp / "img10.png", box_blur(sharp_image(5), 1))
    save(gt / "y.png", sharp_image(5))
    result = lmfn("deblur", inp, "-o", out, "--gt", gt, "--pair-by", "order", "--json", "--report",
                  tmp_path / "r.json", weights=tiny_weights)
    assert result.exit_code == 0, result.output
    records = {Path(r["input"]).name: r for r in map(json.loads, result.stdout.splitlines())}
    assert records["img2.png"]["truth"] == str(gt / "x.png") and records["img10.png"]["truth"] == str(gt / "y.png")
    for name, truth in (("img2.png", "x.png"), ("img10.png", "y.png")):
        assert records[name]["psnr"] == pytest.approx(np_psnr(load(out / name), load(gt / truth)), abs=0.01)
    assert json.loads((tmp_path / "r.json").read_text())["run"]["pair_by"] == "order"

    result = lmfn("deblur", inp, "-o", out, "--gt", gt, "--overwrite", weights=tiny_weights)  # by stem: nothing
    assert result.exit_code == 0, result.output
    assert "no image was scored" in result.stderr and "mean" not in result.stdout
    assert sorted(result.stdout.split()) == sorted([str(out / "img10.png"), str(out / "img2.png")])


def test_deblur_gt_of_another_size_fails_that_image_only(tmp_path, tiny_weights):
    inp, gt, out = tmp_path / "in", tmp_path / "gt", tmp_path / "out"
    save(inp / "a.png", IMAGES["blurred"])
    save(gt / "a.png", IMAGES["sharp"][:32, :36])
    save(inp / "b.png", box_blur(sharp_image(1), 1))
    save(gt / "b.png", sharp_image(1))
    result = lmfn("deblur", inp, "-o", out, "--gt", gt, weights=tiny_weights)
    assert result.exit_code == 1, result.output
    [line] = stderr_lines(result, "a.png")
    assert line.startswith(f"lmfn: error: {inp / 'a.png'}: ") and str(gt / "a.png") in line
    assert "48x40" in line and "36x32" in line
    assert not (out / "a.png").exists()  # scored before writing: the failed image is not written
    lines = result.stdout.splitlines()
    assert len(lines) == 2 and lines[0].split("\t")[0] == str(out / "b.png")
    value = np_psnr(load(out / "b.png"), sharp_image(1))
    assert float(lines[0].split("\t")[1]) == pytest.approx(value, abs=0.01)
    assert lines[1].startswith("mean (1 images)\t")


def test_deblur_scoring_options_need_gt(scored, tmp_path, tiny_weights):
    inp, gt = scored
    for extra in (["--report", tmp_path / "r.json"], ["--pair-by", "order"], ["--ssim", "matlab"]):
        result = lmfn("deblur", inp, "-o", tmp_path / "out", *extra, weights=tiny_weights)
        assert result.exit_code == 2 and "need --gt DIR" in result.stderr, extra
    assert not (tmp_path / "out").exists() and not (tmp_path / "r.json").exists()
    (gt / "A.jpg").write_bytes((gt / "a.png").read_bytes())
    result = lmfn("deblur", inp, "-o", tmp_path / "out", "--gt", gt, weights=tiny_weights)
    assert result.exit_code == 2 and "ambiguous" in result.stderr and not (tmp_path / "out").exists()


# --- the library: summaries, reports, pairing, protocols ------------------------------------------------


def test_summarise_leaves_infinite_psnr_out_of_the_mean_and_counts_it():
    scores = [Score("a", 30.0, 0.9, 0.5), Score("b", math.inf, 1.0, 0.25), Score("c", 20.0, 0.7, None)]
    mean = summarise(scores)
    assert mean == {"images": 3, "psnr": 25.0, "ssim": pytest.approx(0.8666666666666667), "seconds": 0.375,
                    "infinite_psnr": 1}
    assert summarise([Score("x", math.inf, 1.0)])["psnr"] is None
    assert summarise([]) == {"images": 0, "psnr": None, "ssim": None, "seconds": None, "infinite_psnr": 0}


def test_report_with_infinite_psnr_is_strict_json_and_csv(tmp_path):
    scores = [Score("a", 30.0, 0.9, 0.5), Score("b", math.inf, 1.0, 0.25, frame=3, shift=(1, -2), gain=0.98)]
    base = [Score("a", 25.0, 0.8), Score("b", math.inf, 1.0)]
    rep = Report("bench", Protocol().as_dict(), {"name": "m", "sha256": "0" * 64}, {"device": "cpu"},
                 scores, summarise(scores), base, summarise(base))
    text = json.dumps(rep.as_dict(), allow_nan=False)
    back = json.loads(text)
    assert back["images"][1] == {"name": "b", "psnr": None, "ssim": 1.0, "seconds": 0.25, "frame": 3,
                                 "shift": [1, -2], "gain": 0.98, "psnr_infinite": True}
    assert "psnr_infinite" not in back["images"][0] and back["mean"]["psnr"] == 30.0
    assert back["baseline"][1]["psnr"] is None and back["baseline_mean"]["infinite_psnr"] == 1
    write_report(tmp_path / "r.json", rep)
    assert json.loads((tmp_path / "r.json").read_text()) == back
    write_report(tmp_path / "r.csv", rep)
    rows = list(csv.DictReader(line for line in (tmp_path / "r.csv").read_text().splitlines()
                               if not line.startswith("#")))
    assert [(r["name"], r["psnr"], r["input_psnr"]) for r in rows] == [
        ("a", "30.000000", "25.000000"), ("b", "inf", "inf"), ("MEAN", "30.000000", "25.000000")]
    assert (rows[1]["frame"], rows[1]["shift_y"], rows[1]["shift_x"]) == ("3", "1", "-2")
    with pytest.raises(ConfigError, match=r"\.json or \.csv"):
        write_report(tmp_path / "r.txt", rep)
    assert not (tmp_path / "r.txt").exists()


def test_pair_by_stem_ignores_case_and_extension_and_refuses_ambiguity():
    inputs = [Path("in/A.PNG"), Path("in/b.jpg"), Path("in/c.png")]
    truths = [Path("gt/a.png"), Path("gt/B.tif"), Path("gt/z.png")]
    pairs, lonely, unused = pair_by_stem(inputs, truths)
    assert pairs == {Path("in/A.PNG"): Path("gt/a.png"), Path("in/b.jpg"): Path("gt/B.tif")}
    assert lonely == [Path("in/c.png")] and unused == [Path("gt/z.png")]
    with pytest.raises(ConfigError, match="ambiguous") as info:
        pair_by_stem(inputs, [Path("gt/a.png"), Path("gt/A.jpg")])
    assert "gt/a.png" in str(info.value) and "gt/A.jpg" in str(info.value)


def test_pair_by_order_is_natural():
    inputs = [Path("p10.png"), Path("p2.png"), Path("p1.png")]
    truths = [Path("T2.png"), Path("t10.png"), Path("t1.png"), Path("t3.png")]
    pairs, lonely, unused = pair_by_order(inputs, truths)
    assert list(pairs.items()) == [(Path("p1.png"), Path("t1.png")), (Path("p2.png"), Path("T2.png")),
                                   (Path("p10.png"), Path("t3.png"))]
    assert lonely == [] and unused == [Path("t10.png")]
    pairs, lonely, unused = pair_by_order(inputs, truths[:2])
    assert list(pairs.values()) == [Path("T2.png"), Path("t10.png")] and lonely == [Path("p10.png")] and unused == []


@pytest.mark.parametrize("kwargs, message", [
    ({"name": "gopro"}, "unknown protocol 'gopro'"),
    ({"ssim": "skimage"}, "unknown SSIM variant 'skimage'"),
    ({"crop_border": -1}, "crop_border must be >= 0"),
    ({"name": "kohler", "y_channel": True}, "Köhler protocol"),
    ({"name": "kohler", "crop_border": 4}, "Köhler protocol"),
])
def test_protocol_validation(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        Protocol(**kwargs)


def test_protocol_descriptions_name_every_choice():
    assert Protocol("pairs", "matlab", True, 4).as_dict() == {
        "name": "pairs", "ssim": "matlab", "y_channel": True, "crop_border": 4,
        "description": "PSNR on Y (BT.601) 8-bit, peak 255, 4 px border cropped; SSIM matlab: MATLAB ssim; "
                       "means of per-image values"}
    assert "RGB 8-bit" in Protocol().describe() and "scikit-image" in Protocol().describe()
    assert "luma 0.299R+0.587G+0.114B" in Protocol("kohler").describe()
