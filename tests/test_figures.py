"""benchmarks/figures.py: the examples figure and the real-photo crops, with a tiny model."""

import importlib.util
from pathlib import Path

import numpy as np
from PIL import Image

from lmfn_cli.images import write_image

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("figures", ROOT / "benchmarks" / "figures.py")
figures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(figures)


def test_examples_figure_layout_and_scores(tiny_weights):
    fig, table = figures.examples_figure([tiny_weights, tiny_weights])
    blurs = sorted((figures.EXAMPLES / "blur").glob("*.png"))
    h, w = figures.rgb8(blurs[0]).shape[:2]
    # one row per scene; columns: blurry, two models, sharp
    assert fig.shape == (h * len(blurs), w * 4, 3) and fig.dtype == np.uint8
    assert len(table) == len(blurs) and all(len(r) == 3 for r in table)
    # the same weights twice give the same scores; the blurry column is the input's own PSNR
    assert all(r[1] == r[2] for r in table)
    sharp = figures.rgb8(figures.EXAMPLES / "sharp" / blurs[0].name)
    want = float(figures.psnr(figures.to_tensor(figures.rgb8(blurs[0])), figures.to_tensor(sharp)))
    assert abs(table[0][0] - want) < 1e-9
    # the sharp column is the sharp image below its label strip
    assert np.array_equal(fig[h - 20:h, 3 * w:, :], sharp[h - 20:, :, :])


def test_real_figures_crop_at_full_size(tmp_path, tiny_weights):
    rng = np.random.default_rng(0)
    shared = tmp_path / "shared"
    for name, (hh, ww) in {"a/x.png": (50, 70), "b/y.jpg": (300, 500)}.items():
        p = shared / "data" / "real-blurry" / name
        p.parent.mkdir(parents=True)
        write_image(p, rng.integers(0, 256, (hh, ww, 3), dtype=np.uint8))
    out = tmp_path / "out"
    assert figures.real_figures([tiny_weights], out, shared, (200, 100)) == 2
    small = np.asarray(Image.open(out / "a--x.png"))
    big = np.asarray(Image.open(out / "b--y.png"))
    assert small.shape == (50, 70 * 2, 3)      # smaller than the crop: the whole photo, not scaled
    assert big.shape == (100, 200 * 2, 3)      # crop at 100%
    assert figures.real_figures([tiny_weights], tmp_path / "o2", shared, (200, 100), only=["b/"]) == 1


def test_real_figures_add_one_kernel_column_per_deconvolution(tmp_path, tiny_weights, capsys):
    rng = np.random.default_rng(1)
    shared = tmp_path / "shared"
    p = shared / "data" / "real-blurry" / "b" / "y.png"
    p.parent.mkdir(parents=True)
    write_image(p, rng.integers(0, 256, (300, 500, 3), dtype=np.uint8))
    out = tmp_path / "out"
    assert figures.real_figures([tiny_weights], out, shared, (200, 100), kernel=("tv", "wiener")) == 1
    assert np.asarray(Image.open(out / "b--y.png")).shape == (100, 200 * 4, 3)  # blurry, network, tv, wiener
    said = capsys.readouterr().out
    assert "--deconvolution tv used" in said and "--deconvolution wiener used" in said
