"""lmfn_cli.yardstick: the straight-line kernel, sRGB vs linear-light blur, the identity and lines
sets (built from a small fake shared tree), the mean level shift, infinities, the tables and the
ship rule. Real data only in the last tests, which skip without ../shared."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import natural_like, requires_shared
from lmfn_cli import validation as val
from lmfn_cli import yardstick as ys
from lmfn_cli.errors import ConfigError, FileProblem
from lmfn_cli.images import read_image, write_image
from lmfn_cli.metrics import psnr
from lmfn_cli.train_data import find_pairs, load_val_set

FAKE_PHOTOS = ("kodak24/kodim01.png", "mcmaster18/3.tif", "bsds500-val/1001.jpg")
CROP = 32


@pytest.fixture(scope="module")
def fake_shared(tmp_path_factory) -> Path:
    """shared/data with 3 eval photos (PNG, TIFF, JPEG) and a folder of 2 real-looking pairs."""
    root = tmp_path_factory.mktemp("shared")
    for i, rel in enumerate(FAKE_PHOTOS):
        write_image(root / "data" / "eval-sharp" / rel, natural_like(60, 70, seed=i))
    for i in range(2):
        img = natural_like(24, 32, seed=20 + i)
        write_image(root / "data" / "pairs" / "REAL" / "sharp" / f"{i:06d}.jpg", img)
        write_image(root / "data" / "pairs" / "REAL" / "blur" / f"{i:06d}.jpg", np.roll(img, 1, axis=1))
    return root


def small_sets(**kw) -> dict:
    sets: dict = ys.yardstick_sets(**{"photos": FAKE_PHOTOS, "crop": CROP, "lengths": (3, 9), **kw})
    sets["gopro-unseen"] = ys.RealSet("gopro-unseen", "two fake real pairs", "REAL", 2, "never train on it")
    return sets


# --------------------------------------------------------------------------------------------
# the kernel and the blur
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("length", [3, 5, 9, 15, 21, 2.5])
@pytest.mark.parametrize("angle", [0.0, 17.0, 45.0, 90.0, 133.3])
def test_line_kernel_is_normalised_centred_and_symmetric(length, angle):
    k = ys.line_kernel(length, angle)
    r = k.shape[0] // 2
    assert k.shape[0] == k.shape[1] == 2 * (math.ceil(length / 2) + 1) + 1
    assert k.min() >= 0 and k.sum() == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(k, k[::-1, ::-1], atol=1e-12)  # point-symmetric about the centre
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    assert (k * xx).sum() == pytest.approx(0, abs=1e-9) and (k * yy).sum() == pytest.approx(0, abs=1e-9)


def test_horizontal_and_vertical_lines():
    k = ys.line_kernel(5, 0.0)
    r = k.shape[0] // 2
    assert k[r].sum() == pytest.approx(1.0)  # all in the centre row
    assert k[r, r - 2:r + 3].sum() > 0.94  # over ~5 px (the ends' splat reaches one more on each side)
    assert np.count_nonzero(k[r] > 1e-12) <= 7
    np.testing.assert_allclose(k[r, r - 2:r + 3], 0.2, atol=0.03)  # flat along the line
    np.testing.assert_allclose(ys.line_kernel(5, 90.0), k.T, atol=1e-12)


def test_45_degree_lines_lie_on_the_diagonal():
    k = ys.line_kernel(9, 45.0)  # up and to the right as displayed: row falls as column rises
    n = k.shape[0]
    anti = np.fliplr(k)
    assert np.trace(anti) > 0.6
    assert sum(np.trace(anti, offset=o) for o in (-1, 0, 1)) == pytest.approx(1.0)
    np.testing.assert_allclose(k, k[::-1, ::-1].T, atol=1e-12)  # mirror-symmetric about its line
    assert np.trace(ys.line_kernel(9, 135.0)) > 0.6 and n == 2 * (5 + 1) + 1


@pytest.mark.parametrize("length", [5, 9, 21])
@pytest.mark.parametrize("angle", [0.0, 30.0, 60.0, 120.0, 165.0])
def test_line_kernel_length_and_orientation(length, angle):
    k = ys.line_kernel(length, angle)
    r = k.shape[0] // 2
    rows, cols = np.mgrid[0:k.shape[0], 0:k.shape[1]]
    x, y = cols - r, r - rows  # y up, as the angle is measured
    cov = np.array([[(k * x * x).sum(), (k * x * y).sum()], [(k * x * y).sum(), (k * y * y).sum()]])
    w, v = np.linalg.eigh(cov)
    found = math.degrees(math.atan2(v[1, 1], v[0, 1])) % 180
    assert min(abs(found - angle), 180 - abs(found - angle)) < 0.5
    # a segment of length L has variance L^2/12 along it; the bilinear splat adds about 1/6
    assert math.sqrt(12 * (w[1] - 1 / 6)) == pytest.approx(length, rel=0.03)
    assert w[0] < 0.35
    with pytest.raises(ConfigError):
        ys.line_kernel(0, angle)


def test_srgb_curve():
    x = np.linspace(0, 1, 1001)
    np.testing.assert_allclose(ys.linear_to_srgb(ys.srgb_to_linear(x)), x, atol=1e-12)
    assert ys.srgb_to_linear(np.array(0.5)) == pytest.approx(0.21404, abs=1e-5)
    assert ys.linear_to_srgb(np.array(0.5)) == pytest.approx(0.73536, abs=1e-5)
    assert ys.srgb_to_linear(np.array(0.04)) == pytest.approx(0.04 / 12.92)


def test_linear_light_blur_of_an_edge_is_brighter_than_srgb():
    photo = np.zeros((30, 40, 3), np.uint8)
    photo[:, 20:] = 255  # black | white, edge between columns 19 and 20
    k = ys.line_kernel(5, 0.0)
    srgb, lin = ys.blur_crop(photo, 16, k, "srgb"), ys.blur_crop(photo, 16, k, "linear")
    assert srgb.shape == lin.shape == (16, 16, 3)
    c0 = (40 - 16) // 2  # crop column 0 is photo column 12
    mid = slice(20 - 3 - c0, 20 + 3 - c0)  # the blurred columns
    assert np.all(lin[:, mid] >= srgb[:, mid] - 1e-12) and np.all((lin - srgb)[:, mid].max(axis=1) > 0.15)
    assert srgb[0, 19 - c0, 0] == pytest.approx(k[k.shape[0] // 2, :k.shape[0] // 2].sum(), abs=1e-9)  # its light share
    for out in (srgb, lin):  # flat parts stay what they were, values rise monotonically
        assert np.all(out[:, :4] == 0) and np.allclose(out[:, -4:], 1.0)
        assert np.all(np.diff(out[0, :, 0]) >= -1e-12)
    with pytest.raises(ConfigError):
        ys.blur_crop(photo, 28, k, "srgb")  # no margin of real pixels around the crop
    with pytest.raises(ConfigError):
        ys.blur_crop(photo, 16, k, "gamma")


def test_blur_uses_the_real_pixels_around_the_crop():
    photo = natural_like(50, 60, seed=3)
    k = ys.line_kernel(9, 33.0)
    r = k.shape[0] // 2
    out = ys.blur_crop(photo, 20, k, "srgb")
    # a direct convolution of the whole photo, then the centre crop
    full = photo.astype(np.float64) / 255
    ref = np.zeros_like(full)
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            ref += k[dy + r, dx + r] * np.roll(full, (dy, dx), axis=(0, 1))
    cy, cx = (50 - 20) // 2, (60 - 20) // 2
    np.testing.assert_allclose(out, ref[cy:cy + 20, cx:cx + 20], atol=1e-12)


def test_blur_of_a_large_kernel_runs_in_bands_with_the_same_result(monkeypatch):
    # float64 conv2d unfolds K^2 values per output pixel: a large kernel runs in bands of rows
    photo = natural_like(60, 60, seed=4)
    k = ys.line_kernel(15, 70.0)
    whole = ys.blur_crop(photo, 30, k, "linear")
    monkeypatch.setattr(ys, "_CONV_BUDGET", 8 * 3 * k.shape[0] ** 2 * 30 * 7)  # bands of 7 rows, the last of 2
    np.testing.assert_array_equal(ys.blur_crop(photo, 30, k, "linear"), whole)
    monkeypatch.setattr(ys, "_CONV_BUDGET", 1)  # one row at a time
    np.testing.assert_array_equal(ys.blur_crop(photo, 30, k, "linear"), whole)


# --------------------------------------------------------------------------------------------
# definitions and building
# --------------------------------------------------------------------------------------------


def test_project_sets_are_what_they_claim():
    sets = ys.YARDSTICK_SETS
    assert list(sets) == ["identity", *(f"lines-{m}-{n}" for m in ("srgb", "linear") for n in (3, 5, 9, 15, 21))]
    for s in sets.values():
        assert s.photos == val.PHOTOS and s.crop == val.CROP == 256 and s.seed == ys.LINES_SEED
    assert sets["identity"].blur == "none" and sets["identity"].noise == 0
    assert sets["lines-linear-15"].blur == "linear" and sets["lines-srgb-3"].noise == 1 / 255
    assert sets["lines-srgb-9"].folder_name == "lines-srgb-9-v1-seed20260520"
    assert len({s.folder_name for s in sets.values()} | {s.folder_name for s in val.SETS.values()}) == 15
    assert ys.expand(["lines-srgb", "motion-clean", "lines-srgb-3", "identity"]) == [
        *ys.GROUPS["lines-srgb"], "motion-clean", "identity"]
    assert len(ys.DEFAULT_ROWS) == 16 and ys.DEFAULT_ROWS[-1] == "gopro-unseen"
    assert set(ys.DEFINITIONS) == set(ys.DEFAULT_ROWS)
    assert "never train" in ys.DEFINITIONS["gopro-unseen"].caveat
    with pytest.raises(ConfigError):
        ys.PhotoSet("x", "", 1, ("a.png",), 8, "srgb")  # no length
    with pytest.raises(ConfigError):
        ys.PhotoSet("x", "", 1, ("a.png",), 8, "none", noise=0.1)


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_build_writes_pairs_that_training_reads_and_never_rewrites(fake_shared, tmp_path, monkeypatch):
    sets = small_sets()
    built = ys.build_yardstick(fake_shared, tmp_path / "a", ["identity", "lines-srgb", "lines-linear", "gopro-unseen"],
                               sets=sets)
    assert list(built) == ["identity", "lines-srgb-3", "lines-srgb-9", "lines-linear-3", "lines-linear-9",
                           "gopro-unseen"]
    assert built["lines-srgb-9"].name == "lines-srgb-9-v1-seed20260520"
    assert built["gopro-unseen"] == fake_shared / "data" / "pairs" / "REAL"
    photos = {Path(p).stem: np.asarray(read_image(fake_shared / "data" / "eval-sharp" / p)) for p in FAKE_PHOTOS}
    identity = dict(zip(sorted(photos), load_val_set(built["identity"])))  # find_pairs: sorted by name
    for stem, (blur, sharp) in identity.items():
        assert np.array_equal(blur, sharp)  # the input is the target
        cy, cx = (60 - CROP) // 2, (70 - CROP) // 2
        assert np.array_equal(sharp, photos[stem][cy:cy + CROP, cx:cx + CROP])
    angles = None
    for name in ("lines-srgb-3", "lines-srgb-9", "lines-linear-3", "lines-linear-9"):
        pairs = find_pairs(built[name])
        assert len(pairs) == 3 and all(b.parent.name == "blur" and s.parent.name == "sharp" for b, s in pairs)
        for (blur, sharp), (_, ident) in zip(load_val_set(built[name]), identity.values()):
            assert np.array_equal(sharp, ident) and blur.shape == (CROP, CROP, 3) and not np.array_equal(blur, sharp)
        meta = json.loads((built[name] / "set.json").read_text())
        assert meta["definition"] == sets[name].to_dict() and meta["pairs"] == 3
        angles = angles or meta["angles"]
        assert meta["angles"] == angles  # one angle per photo for every length and mode
    assert len(set(angles.values())) == 3 and all(0 <= a < 180 for a in angles.values())
    # deterministic: a second cache gets the same bytes
    again = ys.build_yardstick(fake_shared, tmp_path / "b", ["identity", "lines-linear-9"], sets=sets)
    for name, folder in again.items():
        assert _files(folder) == _files(built[name])
    # cached: reused, nothing rewritten
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "a").rglob("*")}
    monkeypatch.setattr(ys, "make_pair", lambda *a, **k: pytest.fail("rebuilt a cached set"))
    assert ys.build_yardstick(fake_shared, tmp_path / "a", ["identity", "lines-srgb"], sets=sets) == {
        k: built[k] for k in ("identity", "lines-srgb-3", "lines-srgb-9")}
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "a").rglob("*")} == before
    assert not [p for p in (tmp_path / "a").iterdir() if p.name.startswith(".")]  # no temporary left


def test_build_refuses_another_definition_and_bad_inputs(fake_shared, tmp_path):
    sets = small_sets()
    ys.build_yardstick(fake_shared, tmp_path, ["lines-srgb-3"], sets=sets)
    other = small_sets(photos=FAKE_PHOTOS[:2])
    with pytest.raises(FileProblem, match="different definition"):
        ys.build_yardstick(fake_shared, tmp_path, ["lines-srgb-3"], sets=other)
    with pytest.raises(ConfigError):
        ys.build_yardstick(fake_shared, tmp_path, ["lines-srgb-4"], sets=sets)
    with pytest.raises(FileProblem, match="not found"):
        ys.build_yardstick(fake_shared, tmp_path / "x", ["identity"], sets=small_sets(photos=("kodak24/nope.png",)))
    with pytest.raises(FileProblem, match="margin"):  # a 60 px photo cannot give a 56 px crop with real pixels around
        ys.build_yardstick(fake_shared, tmp_path / "y", ["lines-srgb-9"], sets=small_sets(crop=56))
    wrong = {"gopro-unseen": ys.RealSet("gopro-unseen", "", "REAL", 3)}
    with pytest.raises(FileProblem, match="holds 2 pairs"):
        ys.build_yardstick(fake_shared, tmp_path, ["gopro-unseen"], sets=wrong)


# --------------------------------------------------------------------------------------------
# scoring: the mean shift and infinities
# --------------------------------------------------------------------------------------------


class _Offset(torch.nn.Module):
    """Adds ``levels`` 8-bit levels to every pixel (0: the identity)."""

    def __init__(self, levels: float):
        super().__init__()
        self.p = torch.nn.Parameter(torch.zeros(()))
        self.levels = levels

    def forward(self, x):
        return x + self.p + self.levels / 255


def test_identity_row_shift_and_infinities(fake_shared, tmp_path):
    built = ys.build_yardstick(fake_shared, tmp_path, ["identity", "lines-srgb-3"], sets=small_sets())
    models = {"shipped": _Offset(0), "darker": _Offset(-2)}
    rows = val.validation_table(models, built, baseline_models=["shipped"], usm=(1.0, 0.5))
    ident, lines = rows
    s = ident.scores
    assert s["blurry"].psnr == math.inf and s["blurry"].shift == 0 and s["blurry"].ssim == pytest.approx(1.0)
    assert s["shipped"].psnr == math.inf and s["shipped"].shift == 0
    assert s["darker"].shift == pytest.approx(-2.0) and s["darker"].psnr == pytest.approx(20 * math.log10(255 / 2))
    assert math.isfinite(s["usm"].psnr) and abs(s["usm"].shift) < 1
    # the blurry input (= the target) is no baseline here: models are compared with USM and each other
    assert ident.gains["shipped"].over == "usm" and ident.gains["shipped"].psnr == math.inf
    assert ident.gains["darker"].over == "shipped" and ident.gains["darker"].psnr == -math.inf
    assert lines.gains["shipped"].over in ("blurry", "usm") and lines.scores["darker"].shift == pytest.approx(-2.0)
    assert lines.scores["blurry"].shift == 0 and math.isfinite(lines.scores["blurry"].psnr)
    md = ys.format_identity([ident])
    assert "| identity | 3 | ∞ / 1.0000 / +0.00 |" in md and "/ -2.00 |" in md
    assert "+∞ dB vs USM, wins 3/3" in md and "-∞ dB vs shipped, wins 0/3" in md
    assert "nan" not in ys.format_yardstick(rows).lower()
    text = json.dumps(ys.jsonable([r.to_dict() for r in rows]), allow_nan=False)
    assert json.loads(text)[0]["scores"]["blurry"]["psnr"] == "inf"


def test_db_and_gains_with_infinities():
    assert (val.db(math.inf), val.db(math.inf, "+"), val.db(-math.inf, "+"), val.db(1.234, "+"), val.db(-0.5)) == (
        "∞", "+∞", "-∞", "+1.23", "-0.50")
    inf = val.Score(math.inf, 1.0, (math.inf, math.inf))
    scores = {"blurry": inf, "usm": val.Score(40.0, 0.99, (39.0, 41.0)), "a": inf,
              "b": val.Score(42.0, 0.99, (41.0, 43.0))}
    g = val.gains(scores, ["a", "b"], ["blurry", "usm", "a"])
    assert g["a"].over == "usm" and g["a"].psnr == math.inf and g["a"].wins == 2
    assert g["b"].over == "a" and g["b"].psnr == -math.inf and g["b"].wins == 0
    g = val.gains({"blurry": inf, "a": inf}, ["a"], ["blurry"])
    assert g == {}  # nothing left to compare with
    g = val.gains({"usm": inf, "a": inf}, ["a"], ["usm"])
    assert g["a"].psnr == 0.0  # inf - inf: a tie, not nan


# --------------------------------------------------------------------------------------------
# tables and the ship rule on synthetic rows
# --------------------------------------------------------------------------------------------


def _row(name: str, psnrs: dict[str, float], shifts: dict[str, float] | None = None, n: int = 2) -> val.Row:
    shifts = shifts or {}
    scores = {m: val.Score(p, 0.9, (p,) * n, 0.0, shifts.get(m, 0.0)) for m, p in psnrs.items()}
    models = ("v2 (shipped)", "cand")
    baselines = ("blurry", "usm", "v2 (shipped)")
    return val.Row(name, n, scores, baselines, val.gains(scores, models, baselines), (3.0, 0.1), models)


def _full(cand_delta: float = 0.1, identity: float = 50.0, shift: float = 0.1) -> list[val.Row]:
    rows = [_row(n, {"blurry": 25.0, "usm": 25.1, "v2 (shipped)": 26.0, "cand": 26.0 + cand_delta})
            for n in ys.DEFAULT_ROWS if n != "identity"]
    rows.insert(4, _row("identity", {"blurry": math.inf, "usm": 44.0, "v2 (shipped)": 33.0, "cand": identity},
                        {"v2 (shipped)": -2.5, "cand": shift}))
    return rows


def test_ship_rule():
    assert ys.ship_rule(_full(), "cand", "v2 (shipped)") == []
    fails = ys.ship_rule(_full(cand_delta=0.0), "cand", "v2 (shipped)")
    assert len(fails) == 15 and all("does not beat" in f for f in fails)  # a tie is no win
    rows = _full()
    rows[6] = _row("lines-srgb-5", {"blurry": 30.0, "usm": 30.0, "v2 (shipped)": 29.0, "cand": 28.9})
    assert ys.ship_rule(rows, "cand", "v2 (shipped)") == [
        "lines-srgb-5: 28.90 dB does not beat v2 (shipped)'s 29.00 dB (-0.10 dB)"]
    fails = ys.ship_rule(_full(identity=44.9, shift=-0.31), "cand", "v2 (shipped)")
    assert [f.split(":")[0] for f in fails] == ["identity", "identity"]
    assert "44.90 dB < 45 dB" in fails[0] and "-0.31" in fails[1]
    assert ys.ship_rule(_full(identity=45.0, shift=0.3), "cand", "v2 (shipped)") == []
    # an untouched identity image is infinite (so is the mean); capped at 100 dB it cannot hide the others
    rows = _full()
    rows[4].scores["cand"] = val.Score(math.inf, 0.9, (math.inf, 30.0, 30.0))  # capped mean 53.3 dB
    assert ys.ship_rule(rows, "cand", "v2 (shipped)") == []
    rows[4].scores["cand"] = val.Score(math.inf, 0.9, (math.inf, 20.0, 20.0, 20.0))  # capped mean 40 dB
    assert ys.ship_rule(rows, "cand", "v2 (shipped)") == [
        "identity: 40.00 dB < 45 dB (PSNR against the unblurred input)"]
    # missing rows and models
    fails = ys.ship_rule(_full()[:3], "cand", "v2 (shipped)")
    assert fails == ["not measured: gopro-style, identity, " + ", ".join(ys.DEFAULT_ROWS[5:])]
    assert ys.ship_rule(_full()[:3], "cand", "v2 (shipped)", required=()) == []
    assert ys.ship_rule(_full()[:1], "other", "v2 (shipped)", required=()) == ["motion-clean: other not scored"]


def test_lines_and_whole_tables():
    rows = _full()
    rows[5] = _row("lines-srgb-3", {"blurry": 30.0, "usm": 30.25, "v2 (shipped)": 28.49, "cand": 31.0})
    md = ys.format_yardstick(rows)
    plain, ident, lines = md.split("\n\n| ")[0], md.split("\n\n| ")[1], md.split("\n\n| ")[2]
    assert plain.startswith("| set | images | blurry |")
    assert [ln.split(" | ")[0] for ln in plain.splitlines()[2:7]] == [
        "| motion-clean", "| motion-noisy", "| spatially-varying", "| gopro-style", "| gopro-unseen"]
    assert ident.startswith("set | images | blurry") and "| identity | 2 | ∞ / 0.9000 / +0.00 |" in ident
    table = ("| " + lines).splitlines()
    assert table[0] == "| set | method | 3 px | 5 px | 9 px | 15 px | 21 px |"
    assert table[1] == "|---|---|" + "---|" * 5
    assert table[2].startswith("| lines-srgb | blurry | 30.00 | 25.00 |")
    assert table[3].startswith("| lines-srgb | USM (σ 3, amount 0.1) | 30.25 (+0.25) | 25.10 (+0.10) |")
    assert table[4].startswith("| lines-srgb | v2 (shipped) | 28.49 (-1.51) |")
    assert table[6].startswith("| lines-srgb | v2 (shipped): gain over best baseline | -1.76 vs USM | +0.90 vs USM |")
    assert table[7].startswith("| lines-srgb | cand: gain over best baseline | +0.75 vs USM | +0.10 vs v2 (shipped) |")
    assert table[8].startswith("| lines-linear | blurry |") and len([t for t in table if t.startswith("| lines")]) == 12
    assert ys.format_lines([r for r in rows if r.set == "lines-srgb-9"]).count("\n| lines-srgb |") == 6
    assert ys.format_lines(rows[:2]) == "" and ys.format_identity([]) == ""


# --------------------------------------------------------------------------------------------
# the real shared data (skipped where ../shared is absent)
# --------------------------------------------------------------------------------------------


def test_real_identity_and_lines_from_two_photos(tmp_path):
    eval_sharp = requires_shared("data", "eval-sharp")
    from PIL import Image

    margin = ys.line_kernel(max(ys.LENGTHS), 45.0).shape[0] // 2
    for rel in val.PHOTOS:  # every photo has real pixels around its crop for the longest line
        with Image.open(eval_sharp / rel) as im:
            assert min(im.size) >= val.CROP + 2 * margin, rel
    sets = ys.yardstick_sets(photos=(val.PHOTOS[0], val.PHOTOS[20]), lengths=(21,))
    built = ys.build_yardstick(eval_sharp.parents[1], tmp_path, ["identity", "lines-linear-21"], sets=sets)
    ident, lines = load_val_set(built["identity"]), load_val_set(built["lines-linear-21"])
    assert len(ident) == len(lines) == 2
    for (b, s), (lb, ls) in zip(ident, lines):
        assert b.shape == (256, 256, 3) and np.array_equal(b, s) and np.array_equal(ls, s)
        assert 15 < psnr(torch.from_numpy(lb).permute(2, 0, 1), torch.from_numpy(s).permute(2, 0, 1)).item() < 35


def test_real_gopro_unseen_is_read_in_place(tmp_path):
    folder = requires_shared("data", "pairs", ys.GOPRO_UNSEEN)
    built = ys.build_yardstick(folder.parents[2], tmp_path, ["gopro-unseen"])
    assert built == {"gopro-unseen": folder} and not list(tmp_path.iterdir())
    assert len(find_pairs(folder)) == ys.GOPRO_UNSEEN_PAIRS == 83
    (blur, sharp), = load_val_set(folder, limit=1)
    assert blur.shape == sharp.shape == (720, 1280, 3)
