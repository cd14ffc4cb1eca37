"""lmfn_cli.validation: set definitions, cached deterministic builds, the USM baseline and its
tuner, the table's gain arithmetic and its Markdown. Sets are built from a small fake shared tree."""

from __future__ import annotations

import dataclasses
import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import TINY, natural_like, requires_shared
from lmfn_cli import LMFN, synth
from lmfn_cli import validation as val
from lmfn_cli.errors import ConfigError, FileProblem
from lmfn_cli.images import write_image
from lmfn_cli.metrics import psnr

FAKE_PHOTOS = ("kodak24/kodim01.png", "mcmaster18/3.tif", "cset14/zebra.png", "bsds500-val/1001.jpg")


def _mat_v5(kernels: list[np.ndarray]) -> bytes:
    """A minimal MATLAB v5 file with ``kernels`` as a 1xN cell of double matrices."""
    def element(kind: int, data: bytes) -> bytes:
        return struct.pack("<II", kind, len(data)) + data + b"\0" * (-len(data) % 8)

    def matrix(name: bytes, cls: int, dims: tuple, body: bytes) -> bytes:
        flags = element(6, struct.pack("<II", cls, 0))
        return element(14, flags + element(5, struct.pack(f"<{len(dims)}i", *dims)) + element(1, name) + body)

    cells = b"".join(matrix(b"", 6, k.shape, element(9, np.asarray(k, "<f8").tobytes(order="F"))) for k in kernels)
    top = matrix(b"kernels", 1, (1, len(kernels)), cells)
    return b"MATLAB 5.0 MAT-file, lmfn test".ljust(124, b" ") + struct.pack("<H", 0x0100) + b"IM" + top


def _kernels() -> list[np.ndarray]:
    """12 kernels 9x9 shaped like USRNet's: 0-7 Gaussians, 8-11 straight motion lines."""
    yy, xx = np.mgrid[-4:5, -4:5]
    gauss = [np.exp(-(xx**2 + yy**2) / (2 * s**2)) for s in (0.8, 1.2, 1.6, 2.0)]
    aniso = [np.exp(-(xx**2 / (2 * a**2) + yy**2 / 2)) for a in (1.5, 2.0, 2.5, 3.0)]
    lines = [np.eye(9), np.fliplr(np.eye(9)), np.zeros((9, 9)), np.zeros((9, 9))]
    lines[2][4, 1:8] = 1
    lines[3][2:7, 4] = 1
    return gauss + aniso + lines


@pytest.fixture(scope="module")
def fake_shared(tmp_path_factory) -> Path:
    """shared/data with 4 eval photos (PNG, TIFF, JPEG), 12 USRNet-like kernels, 4 gyro
    recordings, 20 video frames and 3 training photos."""
    root = tmp_path_factory.mktemp("shared")
    data = root / "data"
    for i, rel in enumerate(FAKE_PHOTOS):
        write_image(data / "eval-sharp" / rel, natural_like(72, 88, seed=i))
    for i in range(3):
        write_image(data / "sharp" / "bsds500" / "train" / f"{i}.jpg", natural_like(72, 80, seed=10 + i))
    kdir = data / "kernels"
    kdir.mkdir(parents=True)
    (kdir / "usrnet_kernels_12.mat").write_bytes(_mat_v5(_kernels()))
    for g in range(1, 5):
        folder = kdir / "lai2016_gyro" / f"gyro_0{g}"
        folder.mkdir(parents=True)
        t = 100 + np.arange(60) * 0.01
        omega = np.full((60, 3), [0.05 * g, 0.03, 0.02])
        np.savetxt(folder / "gyro.txt", np.column_stack([np.zeros((60, 3)), omega, t]), fmt="%.6f")
        (folder / "info.txt").write_text("100.0 0.1 100.2 100.5")
    for i in range(20):
        write_image(data / "frames" / "SEQ" / f"{i + 1:06d}.png", np.roll(natural_like(40, 48, seed=99), i, axis=1))
    return root


def small_sets(**kw) -> dict[str, val.ValSet]:
    args = dict(photos=FAKE_PHOTOS, crop=40, frames="SEQ", frame_range=(10, 20), gopro_count=2)
    return val.standard_sets(**{**args, **kw})


def tiny_model() -> LMFN:
    torch.manual_seed(0)
    return LMFN(TINY).eval()


# --------------------------------------------------------------------------------------------
# definitions
# --------------------------------------------------------------------------------------------


def test_standard_sets_are_what_they_claim():
    sets = val.SETS
    assert list(sets) == ["motion-clean", "motion-noisy", "spatially-varying", "gopro-style"]
    clean, noisy, spatial, gopro = sets.values()
    d = clean.synth.degradation
    assert d.jpeg_prob == 0 and d.clip_prob == 0 and d.noise_prob == 1
    assert d.read_sigma == (1 / 255, 1 / 255) and d.shot_gain == (0.0, 0.0)
    w = clean.synth.source_weights()
    assert {k for k, v in w.items() if v > 0} == {"trajectory", "usrnet", "gyro"}
    assert noisy.synth.source_weights() == w and noisy.seed == clean.seed and noisy.photos == clean.photos
    n = noisy.synth.degradation
    default = synth.Degradation()
    assert n.noise_prob == 1 and n.jpeg_prob == 1 and n.clip_prob == 0
    assert (n.shot_gain, n.read_sigma, n.jpeg_quality) == (default.shot_gain, default.read_sigma, (60, 95))
    assert {k for k, v in spatial.synth.source_weights().items() if v > 0} == {"camera_path", "gyro_homography"}
    assert spatial.synth.degradation == d
    for s in (clean, noisy, spatial):
        assert s.kernel_split == "val" and s.crop == 256 and len(s.photos) == 32 == len(set(s.photos))
        assert len({Path(p).stem for p in s.photos}) == 32  # make_pairs names outputs by stem
    assert gopro.frame_range == (250, 299) and gopro.frames == "GOPR0477_11_00" and "0-249" in gopro.caveat
    assert len({s.folder_name for s in sets.values()}) == 4


def test_valset_refuses_incomplete_definitions():
    with pytest.raises(ConfigError):
        val.ValSet("x", "", 1)
    with pytest.raises(ConfigError):
        val.ValSet("x", "", 1, synth=synth.SynthConfig())
    with pytest.raises(ConfigError):
        val.ValSet("x", "", 1, frames="SEQ")


# --------------------------------------------------------------------------------------------
# building
# --------------------------------------------------------------------------------------------


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_build_is_deterministic_cached_and_uses_held_out_kernels(fake_shared, tmp_path, monkeypatch):
    sets = small_sets()
    a = val.build_sets(fake_shared, tmp_path / "a", sets=sets)
    b = val.build_sets(fake_shared, tmp_path / "b", sets=sets)
    assert list(a) == list(val.SET_NAMES)
    for name in a:
        fa, fb = _files(a[name]), _files(b[name])
        assert fa == fb and len([k for k in fa if k.startswith("blur/")]) == sets[name].size
    meta = json.loads((a["motion-clean"] / "set.json").read_text())
    assert meta["definition"] == sets["motion-clean"].to_dict()
    assert meta["kernels"]["usrnet_ids"] == [8, 9, 10, 11] and meta["kernels"]["gyro"] == ["gyro_04"]
    for name in ("motion-clean", "motion-noisy", "spatially-varying"):
        for line in (a[name] / "pairs.jsonl").read_text().splitlines():
            info = json.loads(line)
            assert info["params"].get("recording", "gyro_04") == "gyro_04"
            if name == "spatially-varying":
                assert info["source"] in ("camera_path", "gyro_homography")
            else:
                assert info["source"] in ("trajectory", "usrnet", "gyro")
            noise = info["degradation"]["noise"]
            if name == "motion-noisy":
                assert info["degradation"]["jpeg_quality"] is not None
            else:
                assert info["degradation"]["jpeg_quality"] is None and info["highlights"] is None
                assert noise == {"shot_gain": 0.0, "read_sigma": pytest.approx(1 / 255)}
    # motion-noisy has motion-clean's blur, pair for pair
    clean = [json.loads(x) for x in (a["motion-clean"] / "pairs.jsonl").read_text().splitlines()]
    noisy = [json.loads(x) for x in (a["motion-noisy"] / "pairs.jsonl").read_text().splitlines()]
    assert [(c["source"], c["params"]) for c in clean] == [(n["source"], n["params"]) for n in noisy]
    for line in (a["gopro-style"] / "pairs.jsonl").read_text().splitlines():
        assert json.loads(line)["params"]["first"] >= 10
    # second call: reused, nothing rewritten
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "a").rglob("*")}
    monkeypatch.setattr(synth, "make_pairs", lambda *a, **k: pytest.fail("rebuilt a cached set"))
    monkeypatch.setattr(synth, "make_frame_pairs", lambda *a, **k: pytest.fail("rebuilt a cached set"))
    assert val.build_sets(fake_shared, tmp_path / "a", sets=sets) == a
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "a").rglob("*")} == before


def test_build_refuses_a_cache_with_another_definition(fake_shared, tmp_path):
    sets = small_sets()
    folder = val.build_sets(fake_shared, tmp_path, ["motion-clean"], sets=sets)["motion-clean"]
    changed = small_sets(crop=32)
    with pytest.raises(FileProblem, match="different definition"):
        val.build_sets(fake_shared, tmp_path, ["motion-clean"], sets=changed)
    reworded = {"motion-clean": dataclasses.replace(sets["motion-clean"], description="new words")}
    assert val.build_sets(fake_shared, tmp_path, ["motion-clean"], sets=reworded)["motion-clean"] == folder
    # a cache built before a synth field existed (here none_target and noise_model): at their
    # defaults they draw the same pairs, so it is still the same set; a value that is not the
    # default is another set
    meta = json.loads((folder / "set.json").read_text())
    del meta["definition"]["synth"]["none_target"], meta["definition"]["synth"]["degradation"]["noise_model"]
    (folder / "set.json").write_text(json.dumps(meta))
    assert val.build_sets(fake_shared, tmp_path, ["motion-clean"], sets=sets)["motion-clean"] == folder
    meta["definition"]["synth"]["none_target"] = "input"
    (folder / "set.json").write_text(json.dumps(meta))
    with pytest.raises(FileProblem, match="different definition"):
        val.build_sets(fake_shared, tmp_path, ["motion-clean"], sets=sets)
    (folder / "set.json").unlink()
    with pytest.raises(FileProblem, match="no set.json"):
        val.build_sets(fake_shared, tmp_path, ["motion-clean"], sets=sets)
    with pytest.raises(ConfigError, match="unknown"):
        val.build_sets(fake_shared, tmp_path, ["nope"], sets=sets)
    assert not list(tmp_path.glob(".*"))  # no temporary folders left behind


def test_build_refuses_missing_kernels(fake_shared, tmp_path):
    bare = tmp_path / "shared"
    (bare / "data").mkdir(parents=True)
    (bare / "data" / "eval-sharp").symlink_to(fake_shared / "data" / "eval-sharp")
    with pytest.raises(FileProblem, match="USRNet"):
        val.build_sets(bare, tmp_path / "cache", ["motion-clean"], sets=small_sets())
    assert not (tmp_path / "cache" / small_sets()["motion-clean"].folder_name).exists()


# --------------------------------------------------------------------------------------------
# unsharp mask and its tuner
# --------------------------------------------------------------------------------------------


def _edges(h: int = 64, w: int = 64) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    img = torch.stack([(xx // 8 % 2).float(), ((xx + yy) // 11 % 2).float(), (yy / h)]) * 0.6 + 0.2
    return img[None]


def test_unsharp_mask_identity_and_sharpening():
    img = _edges()
    assert torch.equal(val.unsharp_mask(img, 2.0, 0.0), img)
    blurred = val.gaussian_blur(img, 1.0)
    assert blurred.shape == img.shape and abs(blurred.mean() - img.mean()) < 1e-3
    const = torch.full((1, 3, 9, 9), 0.4)
    assert torch.allclose(val.gaussian_blur(const, 3.0), const)  # replicate padding on tiny images
    base = psnr(blurred, img).item()
    best = max(psnr(val.unsharp_mask(blurred, 1.0, a), img).item() for a in (0.25, 0.5, 1.0, 1.5))
    assert best > base + 1.0
    out = val.unsharp_mask(blurred, 1.0, 5.0)
    assert out.min() >= 0 and out.max() <= 1
    with pytest.raises(ConfigError):
        val.unsharp_mask(img, 1.0, -0.1)
    with pytest.raises(ConfigError):
        val.gaussian_blur(img, 0.0)


def test_tuner_finds_a_known_optimum():
    rng = np.random.default_rng(0)
    pairs = []
    for seed in range(3):
        blurry = natural_like(48, 56, seed=seed)
        x = torch.from_numpy(blurry).permute(2, 0, 1)[None].float() / 255
        target = val.unsharp_mask(x, 1.5, 0.6)[0].permute(1, 2, 0).numpy() * 255
        sharp = np.clip(np.rint(target + rng.integers(-1, 2, target.shape)), 0, 255).astype(np.uint8)
        pairs.append((blurry, sharp))
    record: dict = {}
    sigma, amount, best = val.tune_unsharp_mask(pairs, (0.5, 1.5, 3.0), (0.2, 0.6, 1.0), record=record)
    assert (sigma, amount) == (1.5, 0.6)
    assert best == record["grid"]["1.5,0.6"] == max(record["grid"].values())
    assert best > record["blurry_psnr"] and record["images"] == 3 and len(record["grid"]) == 9


def test_tuning_on_training_data(fake_shared):
    pairs = val.tuning_pairs(fake_shared, crop=40)
    assert len(pairs) == 3 and pairs[0][0].shape == (40, 40, 3) and pairs[0][0].dtype == np.uint8
    again = val.tuning_pairs(fake_shared, crop=40, limit=2)
    assert all(np.array_equal(x[0], y[0]) for x, y in zip(pairs, again))
    res = val.tune_usm_on_training_data(fake_shared, sigmas=(1.0,), amounts=(0.1, 0.2), crop=40)
    assert res["sigma"] == 1.0 and res["amount"] in (0.1, 0.2) and res["images"] == 3
    clean = val.tuning_pairs(fake_shared, crop=40, cfg=val.SETS["motion-clean"].synth)
    assert len(clean) == 3 and not np.array_equal(clean[0][0], pairs[0][0])


# --------------------------------------------------------------------------------------------
# the table
# --------------------------------------------------------------------------------------------


def _score(p: float, s: float, per: tuple[float, ...]) -> val.Score:
    return val.Score(p, s, per)


def test_gains_are_over_the_best_other_baseline():
    scores = {
        "blurry": _score(20.0, 0.60, (19.0, 21.0)),
        "usm": _score(21.0, 0.58, (20.0, 22.0)),
        "shipped": _score(22.0, 0.61, (23.0, 21.0)),
        "cand": _score(21.5, 0.65, (23.5, 19.5)),
    }
    g = val.gains(scores, ["shipped", "cand", "absent"], ["blurry", "usm", "shipped"])
    assert set(g) == {"shipped", "cand"}
    assert g["shipped"].over == "usm" and g["shipped"].psnr == pytest.approx(1.0)
    assert g["shipped"].over_ssim == "blurry" and g["shipped"].ssim == pytest.approx(0.01)
    assert g["shipped"].wins == 1 and g["shipped"].images == 2
    assert g["cand"].over == "shipped" and g["cand"].psnr == pytest.approx(-0.5)
    assert g["cand"].over_ssim == "shipped" and g["cand"].ssim == pytest.approx(0.04)
    assert g["cand"].wins == 1


class _Identity(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.p = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return x + self.p


def test_validation_table_and_markdown(fake_shared, tmp_path):
    sets = val.build_sets(fake_shared, tmp_path, ["motion-clean", "gopro-style"], sets=small_sets())
    models = {"shipped": _Identity(), "cand": tiny_model(), "missing": None}
    rows = val.validation_table(models, sets, baseline_models=["shipped"], usm=(1.0, 0.5))
    assert [r.set for r in rows] == ["motion-clean", "gopro-style"]
    for row in rows:
        s = row.scores
        assert set(s) == {"blurry", "usm", "shipped", "cand"} and row.images == len(s["blurry"].per_image_psnr)
        assert s["shipped"].psnr == pytest.approx(s["blurry"].psnr)  # identity = the input, to the 8-bit level
        best = max(("blurry", "usm", "shipped"), key=lambda k: s[k].psnr)
        assert row.gains["cand"].psnr == pytest.approx(s["cand"].psnr - s[best].psnr)
        assert row.gains["shipped"].psnr == pytest.approx(s["shipped"].psnr - max(s["blurry"].psnr, s["usm"].psnr))
        assert "missing" not in row.gains
        json.dumps(row.to_dict())
    md = val.format_markdown(rows)
    lines = md.splitlines()
    assert lines[0].startswith("| set | images | blurry | USM (σ 1, amount 0.5) | shipped | cand | missing |")
    assert lines[1] == "|" + "---|" * 10
    assert len([x for x in lines if x.startswith("| motion-clean")]) == 1
    cells = [c.strip() for c in lines[2].strip("|").split("|")]
    assert cells[6] == "–" and cells[9] == "–"  # the missing model
    g = rows[0].gains["cand"]
    label = {"usm": "USM (σ 1, amount 0.5)"}
    vs = label.get(g.over, g.over) + (f" (SSIM vs {label.get(g.over_ssim, g.over_ssim)})" if g.over_ssim != g.over else "")
    assert cells[8] == f"{g.psnr:+.2f} dB / {g.ssim:+.4f} vs {vs}, wins {g.wins}/{g.images}"
    assert f"{rows[0].scores['usm'].psnr:.2f} / {rows[0].scores['usm'].ssim:.4f}" == cells[3]
    assert val.format_markdown([]) == ""
    with pytest.raises(ConfigError):
        val.validation_table(models, sets, baseline_models=["nope"])


# --------------------------------------------------------------------------------------------
# the real shared data (skipped where ../shared is absent)
# --------------------------------------------------------------------------------------------


def test_real_sets_build_a_small_subset(tmp_path):
    shared = requires_shared("data", "eval-sharp").parents[1]
    requires_shared("data", "kernels", "usrnet_kernels_12.mat")
    requires_shared("data", "frames", val.GOPRO_SEQUENCE)
    for rel in val.PHOTOS:
        assert (shared / "data" / "eval-sharp" / rel).is_file(), rel
    sets = val.standard_sets(photos=val.PHOTOS[::11], crop=128, gopro_count=1, gopro_crop=128)
    built = val.build_sets(shared, tmp_path, ["motion-clean", "spatially-varying", "gopro-style"], sets=sets)
    meta = json.loads((built["motion-clean"] / "set.json").read_text())
    assert meta["kernels"] == {**meta["kernels"], "usrnet_ids": [8, 9, 10, 11], "gyro": ["gyro_04"]}
    info = json.loads((built["gopro-style"] / "pairs.jsonl").read_text().splitlines()[0])
    assert info["params"]["first"] >= 250 and info["params"]["files"][0] >= "000251.jpg"
    rows = val.validation_table({"tiny": tiny_model()}, {"motion-clean": built["motion-clean"]}, limit=2)
    assert rows[0].images == 2 and rows[0].scores["blurry"].psnr < 60
