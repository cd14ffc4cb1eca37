"""lmfn_cli.curves: reading a run's log, per-set validation gains, the log-steps fit, curve.png."""

import json
import math

import pytest
from PIL import Image

from lmfn_cli.curves import fit_log_steps, plot_curve, read_log, validation_gains


def _log(tmp_path, entries):
    p = tmp_path / "log.jsonl"
    p.write_text("".join(json.dumps(e) + "\n" for e in entries))
    return p


def test_validation_gains_per_set_and_single(tmp_path):
    entries = [
        {"step": 0, "val_psnr": 21.0, "val_input_psnr": 20.0,
         "val_a/psnr": 20.5, "val_a/input_psnr": 20.0, "val_b/psnr": 26.0, "val_b/input_psnr": 25.0},
        {"step": 20, "loss": 0.3, "lr": 1e-4},
        {"step": 500, "val_psnr": 21.5, "val_input_psnr": 20.0,
         "val_a/psnr": 20.75, "val_a/input_psnr": 20.0, "val_b/psnr": 26.25, "val_b/input_psnr": 25.0},
    ]
    assert read_log(_log(tmp_path, entries)) == entries
    assert validation_gains(entries) == {"a": [(0, 0.5), (500, 0.75)], "b": [(0, 1.0), (500, 1.25)]}
    single = [{"step": 100, "val_psnr": 23.0, "val_input_psnr": 22.5}]
    assert validation_gains(single) == {"val": [(100, 0.5)]}
    assert read_log(tmp_path / "missing.jsonl") == []


def test_fit_log_steps_recovers_a_log_linear_curve():
    # gain = 0.2 + 0.1 log10(1000 + step): offset 1000 steps already seen by the starting weights
    series = [(s, 0.2 + 0.1 * math.log10(1000 + s)) for s in (0, 500, 1000, 2000, 4000)]
    fit = fit_log_steps(series, offset=1000, start=500)
    assert fit.points == 4 and fit.rms < 1e-12
    assert fit.a == pytest.approx(0.2) and fit.b == pytest.approx(0.1)
    assert fit.predict(50_000) == pytest.approx(0.2 + 0.1 * math.log10(50_000))
    # without the offset the same points are not log-linear
    assert fit_log_steps(series, start=500).rms > 1e-4
    with pytest.raises(ValueError, match="two or more"):
        fit_log_steps([(0, 1.0), (10, 1.1)], start=5)


def test_plot_curve_draws_each_set(tmp_path):
    entries = [{"step": s, "loss": 0.3 / (1 + s / 100), "lr": 1e-4} for s in range(20, 1001, 20)]
    entries += [{"step": s, "val_psnr": 21 + s / 1000, "val_input_psnr": 20,
                 "val_a/psnr": 20 + s / 2000, "val_a/input_psnr": 20.0,
                 "val_b/psnr": 25 + s / 1000, "val_b/input_psnr": 25.0} for s in (0, 500, 1000)]
    png = plot_curve(_log(tmp_path, entries), tmp_path / "curve.png")
    img = Image.open(png).convert("RGB")
    assert img.size == (900, 600)
    colours = {c for _, c in img.getcolors(maxcolors=1 << 20)}
    assert (0, 100, 0) in colours and (255, 140, 0) in colours  # darkgreen (set a), darkorange (set b)
    assert plot_curve(tmp_path / "none.jsonl", tmp_path / "none.png") is None


def test_steps_fit_script_on_a_table():
    import importlib.util
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("steps_fit", root / "benchmarks" / "steps_fit.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    # gains 0.5 at 1,000 steps and 0.7 at 10,000: +0.2 dB per tenfold, 0.9 predicted at 100,000
    table = {"rows": [{"set": "s", "scores": {"blurry": {"psnr": 20.0}, "a": {"psnr": 20.5}, "b": {"psnr": 20.7}}}]}
    (row,) = mod.fits(table, mod.parse_steps(["a=1000", "b=10000"]))
    assert row["slope_db_per_10x"] == pytest.approx(0.2) and row["at_10x"] == pytest.approx(0.9)
    with pytest.raises(SystemExit, match="no column"):
        mod.fits(table, {"c": 5})
    with pytest.raises(SystemExit, match="NAME=STEPS"):
        mod.parse_steps(["a=lots"])
