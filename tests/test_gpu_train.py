"""lmfn_cli.gpu_synth (batched blur synthesis in torch) and benchmarks/gpu_train.py (with its pack, benchmarks/gpu_pack.py), on the CPU."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from conftest import TINY, natural_like
from lmfn_cli import LMFN, load_model, save_weights, synth
from lmfn_cli import gpu_synth as gs
from lmfn_cli.errors import ConfigError
from lmfn_cli.images import write_image
from lmfn_cli.train import TrainConfig, load_checkpoint

ROOT = Path(__file__).resolve().parents[1]


def _photos(n: int, h: int, w: int) -> list[torch.Tensor]:
    return [torch.from_numpy(natural_like(h, w, seed=i)).permute(2, 0, 1).contiguous() for i in range(n)]


# --------------------------------------------------------------------------------------------
# Colour curves, blur, noise, highlights
# --------------------------------------------------------------------------------------------


def test_srgb_curves_match_synth():
    x = np.linspace(-0.2, 1.6, 20001, dtype=np.float32)
    t = torch.from_numpy(x)
    np.testing.assert_allclose(gs.srgb_to_linear(t).numpy(), synth.srgb_to_linear(x), atol=1e-6, rtol=0)
    np.testing.assert_allclose(gs.linear_to_srgb(t).numpy(), synth.linear_to_srgb(x), atol=1e-6, rtol=0)
    u = torch.rand(1000)
    assert torch.allclose(gs.linear_to_srgb(gs.srgb_to_linear(u)), u, atol=1e-6)


@pytest.mark.parametrize("method", ["fft", "conv"])
def test_blur_batch_is_synths_blur_on_the_valid_region(method):
    rng = np.random.default_rng(3)
    k1 = synth.random_kernel(rng, 15)  # asymmetric: a flipped kernel would not match
    k2 = np.zeros((15, 15), np.float32)
    k2[2, 11] = 1.0  # a pure shift, far from the centre
    imgs = [rng.random((61, 53, 3)).astype(np.float32) for _ in range(2)]
    x = torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2)
    kernels = torch.from_numpy(np.stack([k1, k2]))[:, None]
    out = gs.blur_batch(x, kernels, method=method)
    assert out.shape == (2, 3, 61 - 14, 53 - 14)
    for i, (img, k) in enumerate(zip(imgs, (k1, k2))):
        ref = synth.blur_with_kernel(img, k)[7:-7, 7:-7]
        np.testing.assert_allclose(out[i].permute(1, 2, 0).numpy(), ref, atol=1e-5, rtol=0)


@pytest.mark.parametrize("method", ["fft", "conv"])
def test_a_delta_image_shows_the_kernel_unflipped(method):
    k = np.zeros((7, 7), np.float32)
    k[1, 5], k[3, 3], k[6, 0] = 0.5, 0.3, 0.2
    img = torch.zeros(1, 1, 21, 21)
    img[0, 0, 10, 10] = 1.0
    out = gs.blur_batch(img, torch.from_numpy(k)[None, None], method=method)[0, 0]
    # output (y, x) is input (y + 3, x + 3): the delta at input (10, 10) lands at output (7, 7),
    # spread as the kernel itself (a true convolution), kernel centre on the delta
    np.testing.assert_allclose(out[4:11, 4:11].numpy(), k, atol=1e-6)
    assert float(out.sum()) == pytest.approx(1.0, abs=1e-5)


def test_blur_batch_rejects_mismatched_shapes():
    with pytest.raises(ConfigError):
        gs.blur_batch(torch.zeros(2, 3, 20, 20), torch.zeros(3, 1, 5, 5))
    with pytest.raises(ConfigError):
        gs.blur_batch(torch.zeros(1, 3, 4, 4), torch.zeros(1, 1, 5, 5))


def test_noise_has_the_poisson_gaussian_variance():
    gen = torch.Generator().manual_seed(0)
    x = torch.full((2, 3, 200, 200), 0.25)
    out = gs.add_noise(x, torch.tensor([1e-2, 0.0]), torch.tensor([1e-2, 0.0]), gen)
    assert float(out[0].mean()) == pytest.approx(0.25, abs=2e-3)
    assert float(out[0].var()) == pytest.approx(1e-2 * 0.25 + 1e-4, rel=0.05)
    assert torch.equal(out[1], x[1])  # gain 0 and read noise 0: untouched


@pytest.mark.parametrize("level", [0.0, 0.1, 0.5, 1.0])
def test_zero_mean_noise_matches_synth_in_mean_and_deviation(level):
    gen = torch.Generator().manual_seed(0)
    lin = float(synth.srgb_to_linear(np.float32(level)))
    x = torch.full((2, 3, 200, 200), lin)
    out = gs.add_zero_mean_noise(x, torch.tensor([2e-3, 0.0]), torch.tensor([4e-3, 0.0]), gen)
    ref = synth.add_zero_mean_noise(x[0].permute(1, 2, 0).numpy(), np.random.default_rng(0), gain=2e-3, read_sigma=4e-3)
    assert 0 <= float(out.min()) and float(out.max()) <= 1
    assert float(out[0].mean()) == pytest.approx(level, abs=0.15 / 255)
    assert float(out[0].std()) == pytest.approx(float(ref.std()), rel=0.05, abs=1e-4)
    assert float((out[1] - level).abs().max()) < 1e-6  # no noise asked: the value, in sRGB


def test_gpu_synthesis_refuses_what_it_does_not_do():
    for cfg in (synth.SynthConfig(w_small=0.1), synth.SynthConfig(srgb_blur_prob=0.5), synth.SynthConfig(none_target="input")):
        with pytest.raises(ConfigError, match="not in the GPU batch synthesis"):
            gs.uniform_source_weights(cfg, None)


def test_highlight_boost_matches_synth():
    rng = np.random.default_rng(0)
    img = rng.random((2, 20, 20, 3)).astype(np.float32)
    out = gs.boost_highlights(torch.from_numpy(img).permute(0, 3, 1, 2), torch.tensor([3.0, 1.0]), 0.6)
    ref = synth.boost_highlights(img[0], 3.0, 0.6)
    np.testing.assert_allclose(out[0].permute(1, 2, 0).numpy(), ref, atol=1e-6)
    assert torch.equal(out[1], torch.from_numpy(img[1]).permute(2, 0, 1))


def test_dihedral_matches_synth():
    a = np.arange(20).reshape(1, 4, 5)
    for k in range(8):
        np.testing.assert_array_equal(gs.dihedral(torch.from_numpy(a), k).numpy()[0], synth._dihedral(a[0], k))


# --------------------------------------------------------------------------------------------
# The kernel bank
# --------------------------------------------------------------------------------------------


def test_kernel_bank_is_cached_and_redrawn_when_its_parameters_change(tmp_path, monkeypatch):
    path = tmp_path / "bank.npz"
    draws = []
    real = gs._draw_bank

    def counting(*args, **kwargs):
        draws.append(args[:3])
        return real(*args, **kwargs)

    monkeypatch.setattr(gs, "_draw_bank", counting)
    first = gs.load_or_build_kernel_bank(path, 6, 15, 1)
    assert path.exists() and len(draws) == 1
    assert first.shape == (6, 1, 15, 15)
    np.testing.assert_allclose(first.sum(dim=(1, 2, 3)).numpy(), 1.0, atol=1e-5)
    again = gs.load_or_build_kernel_bank(path, 6, 15, 1)
    assert len(draws) == 1 and torch.equal(first, again)  # loaded, not drawn
    assert torch.equal(first, gs.build_kernel_bank(6, 15, 1))  # the same as a fresh draw
    other = gs.load_or_build_kernel_bank(path, 6, 15, 2)  # another seed: drawn again
    assert len(draws) == 3 and not torch.equal(first, other)
    gs.load_or_build_kernel_bank(path, 7, 15, 2)  # another count
    gs.load_or_build_kernel_bank(path, 7, 15, 2, cfg=synth.SynthConfig(min_extent=9.0))  # another range
    assert len(draws) == 5
    assert gs.load_kernel_bank(path).params["min_extent"] == 9.0


def _fake_bank() -> synth.KernelBank:
    usrnet = []
    for i in range(12):  # 12 distinct kernels: boxes of sides 1, 3, ..., 23
        k = np.zeros((25, 25), np.float32)
        k[12 - i : 13 + i, 12 - i : 13 + i] = 1.0
        usrnet.append(k / k.sum())
    t = np.linspace(0, 1, 101)
    gyro = tuple(
        synth.GyroRecording(
            name=f"gyro_0{j}", time_s=t, angular_velocity=np.stack([np.sin(5 * t + j), np.cos(3 * t), 0 * t], 1) * 0.2,
            acceleration_g=np.zeros((101, 3)), exposure_s=0.1,
        )
        for j in range(1, 5)
    )
    return synth.KernelBank(usrnet=tuple(usrnet), gyro=gyro, usrnet_ids=tuple(range(12)))


def test_kernel_bank_uses_only_the_training_split(tmp_path, monkeypatch):
    bank = _fake_bank()
    used = []
    real_gyro = synth.gyro_kernel

    def recording(rec, rng, **kwargs):
        used.append(rec.name)
        return real_gyro(rec, rng, **kwargs)

    monkeypatch.setattr(synth, "gyro_kernel", recording)
    cfg = synth.SynthConfig(w_trajectory=0.0)  # usrnet 0.10 and gyro 0.15 of the uniform sources
    path = tmp_path / "bank.npz"
    kernels = gs.load_or_build_kernel_bank(path, 300, 31, 0, bank, cfg=cfg)
    stored = gs.load_kernel_bank(path)
    counts = stored.source_counts()
    assert counts["trajectory"] == 0 and counts["usrnet"] + counts["gyro"] == 300
    assert 0.28 < counts["usrnet"] / 300 < 0.52  # 0.10 / (0.10 + 0.15) = 0.4
    assert stored.params["data"]["gyro"] == ["gyro_01", "gyro_02", "gyro_03"]
    assert stored.params["data"]["usrnet_ids"] == list(range(8))
    assert used and set(used) <= {"gyro_01", "gyro_02", "gyro_03"}
    padded = [np.pad(k, 3) for k in bank.usrnet]
    usrnet_rows = np.nonzero(stored.sources == gs.UNIFORM_SOURCES.index("usrnet"))[0]
    seen = set()
    for i in usrnet_rows:
        matches = [j for j, k in enumerate(padded) if np.array_equal(kernels[i, 0].numpy(), k)]
        assert matches == [int(stored.detail[i])]
        seen.add(matches[0])
    assert seen <= set(range(8)) and len(seen) >= 4  # never a held-out motion kernel (8-11)
    # the whole bank, or its validation split, would be another bank: never reused for training
    assert gs.kernel_bank_params(300, 31, 0, bank, "all", cfg=cfg) != stored.params


def test_trajectory_kernels_are_centred_and_normalised():
    k = gs.build_kernel_bank(20, 31, 5)
    assert k.shape == (20, 1, 31, 31) and float(k.min()) >= 0
    np.testing.assert_allclose(k.sum(dim=(1, 2, 3)).numpy(), 1.0, atol=1e-5)
    ys, xs = torch.meshgrid(torch.arange(31.0), torch.arange(31.0), indexing="ij")
    assert torch.allclose((k[:, 0] * ys).sum((1, 2)), torch.tensor(15.0), atol=1e-3)
    assert torch.allclose((k[:, 0] * xs).sum((1, 2)), torch.tensor(15.0), atol=1e-3)


# --------------------------------------------------------------------------------------------
# Batches
# --------------------------------------------------------------------------------------------


def test_make_batch_is_deterministic_and_well_formed():
    photos = _photos(3, 60, 70)
    bank = gs.build_kernel_bank(8, 9, 0)

    def batch(seed):
        return gs.make_batch(photos, 5, 24, torch.Generator().manual_seed(seed), bank)

    b1, s1 = batch(7)
    b2, s2 = batch(7)
    b3, _ = batch(8)
    assert b1.shape == s1.shape == (5, 3, 24, 24) and b1.dtype == s1.dtype == torch.float32
    assert torch.equal(b1, b2) and torch.equal(s1, s2)
    assert not torch.equal(b1, b3)
    assert 0 <= float(b1.min()) and float(b1.max()) <= 1 and 0 <= float(s1.min()) and float(s1.max()) <= 1
    assert torch.allclose(b1 * 255, torch.round(b1 * 255), atol=1e-4)  # 8-bit levels, as a saved photo
    assert not torch.allclose(b1, s1, atol=1 / 255)  # blurred and noisy


def test_make_batch_crops_are_aligned_and_come_from_the_photos():
    photo = _photos(1, 40, 46)
    delta = torch.zeros(1, 1, 9, 9)
    delta[0, 0, 4, 4] = 1.0  # no blur: with no noise and no highlights, blurry must equal sharp
    clean = synth.Degradation(noise_prob=0.0, clip_prob=0.0)
    blurry, sharp = gs.make_batch(photo, 6, 16, torch.Generator().manual_seed(1), delta, degradation=clean,
                                  quantize=False)
    assert torch.allclose(blurry, sharp, atol=1e-5)
    full = photo[0].float() / 255
    for s in sharp:  # each target is a window of the photo in one of its 8 orientations
        found = False
        for o in range(8):
            rot = gs.dihedral(full, o)
            windows = rot.unfold(1, 16, 1).unfold(2, 16, 1)  # (3, nh, nw, 16, 16)
            diff = (windows - s[:, None, None]).abs().amax(dim=(0, 3, 4))
            found |= bool((diff < 1e-6).any())
        assert found
    shift = torch.zeros(1, 1, 9, 9)
    shift[0, 0, 4, 6] = 1.0  # a shifted delta: blurry no longer equals sharp
    blurry, sharp = gs.make_batch(photo, 6, 16, torch.Generator().manual_seed(1), shift, degradation=clean,
                                  quantize=False)
    assert not torch.allclose(blurry, sharp, atol=1e-3)


def test_make_batch_rejects_bad_inputs():
    photos, bank = _photos(1, 30, 30), gs.build_kernel_bank(2, 9, 0)
    with pytest.raises(ConfigError):  # 30 px photo, 24 + 8 px crop
        gs.make_batch(photos, 2, 24, torch.Generator(), bank)
    with pytest.raises(ConfigError):
        gs.make_batch([p.float() for p in photos], 2, 8, torch.Generator(), bank)
    with pytest.raises(ConfigError):
        gs.make_batch(photos, 2, 8, torch.Generator(), bank[:, 0])


# --------------------------------------------------------------------------------------------
# benchmarks/gpu_train.py, end to end on the CPU
# --------------------------------------------------------------------------------------------


def _script():
    spec = importlib.util.spec_from_file_location("gpu_train", ROOT / "benchmarks" / "gpu_train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tiny_pack(tmp_path_factory):
    root = tmp_path_factory.mktemp("gpu")
    for i in range(3):
        write_image(root / "photos" / f"p{i}.png", natural_like(90, 110, seed=i))
        sharp = natural_like(64, 64, seed=10 + i)
        write_image(root / "pairs" / "sharp" / f"{i}.png", sharp)
        write_image(root / "pairs" / "blur" / f"{i}.png", np.roll(sharp, 2, axis=0))
    write_image(root / "photos" / "big.png", natural_like(100, 700, seed=9))  # over --max-side: downscaled
    torch.manual_seed(0)
    save_weights(LMFN(TINY), root / "tiny.safetensors", variant="tiny-test")
    _script().main(["--pack", "--pack-dir", str(root / "pack"), "--photos", str(root / "photos"),
                    "--pairs-dir", str(root / "pairs"), "--kernels", str(root / "none"), "--kernel-count", "8",
                    "--kernel-size", "9", "--max-side", "350"])
    return root


def _train(root: Path, out: str, *extra: str) -> None:
    _script().main(["--train", "--device", "cpu", "--pack-dir", str(root / "pack"), "--out", str(root / out),
                    "--batch", "2", "--patch", "32", "--steps", "20", "--warmup", "2", "--log-every", "1",
                    "--paired-share", "0.5", "--blur", "fft", "--threads", "1", *extra])


def test_pack_holds_the_photos_pairs_and_kernels(tiny_pack):
    script = _script()
    photos, pairs, meta = script.read_pack(tiny_pack / "pack")
    assert len(photos) == 4 and len(pairs) == 3
    sizes = {i["name"]: (i["h"], i["w"]) for i in meta["photos"]}
    assert sizes["p0.png"] == (90, 110) and sizes["big.png"] == (50, 350)
    names = [i["name"] for i in meta["photos"]]
    assert script.decode(photos[names.index("big.png")]).shape == (50, 350, 3)
    b, s = (script.decode(x) for x in pairs[0])
    np.testing.assert_array_equal(s, natural_like(64, 64, seed=10))  # pairs are stored losslessly
    np.testing.assert_array_equal(b, np.roll(s, 2, axis=0))
    bank = gs.load_kernel_bank(tiny_pack / "pack" / "kernels.npz")
    assert bank.kernels.shape == (8, 1, 9, 9) and bank.params["split"] == "train"


def test_pack_refuses_to_exceed_its_budget(tiny_pack):
    with pytest.raises(SystemExit):
        _script().main(["--pack", "--pack-dir", str(tiny_pack / "pack2"), "--photos", str(tiny_pack / "photos"),
                        "--kernels", str(tiny_pack / "none"), "--kernel-count", "8", "--kernel-size", "9",
                        "--gopro-pairs", "0", "--max-mib", "0.01"])


def test_training_writes_log_checkpoint_and_weights_and_resumes(tiny_pack):
    root = tiny_pack
    _train(root, "run1", "--init", str(root / "tiny.safetensors"), "--max-steps", "3")
    run1 = root / "run1"
    entries = [json.loads(line) for line in (run1 / "log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in entries if "loss" in e] == [1, 2, 3]
    assert entries[0]["event"] == "start" and entries[0]["paired_per_batch"] == 1
    assert entries[-1]["event"] == "end" and entries[-1]["stopped_by"] == "max_steps"
    assert all(np.isfinite(e["loss"]) and e["pixels_per_s"] > 0 for e in entries if "loss" in e)
    ckpt = load_checkpoint(run1 / "checkpoint.pt")
    assert ckpt["format"] == "lmfn-checkpoint/1" and ckpt["step"] == 3
    cfg = TrainConfig.from_dict(ckpt["config"])
    assert cfg.model == TINY and cfg.steps == 20 and cfg.kernel_split == "train" and cfg.batch == 2
    model = load_model(run1 / "last.safetensors")
    assert model.config == TINY
    stored = load_file(str(run1 / "last.safetensors"))
    assert all(v.dtype == torch.float16 for v in stored.values() if v.is_floating_point())
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, ckpt["model"][k].float(), atol=2e-3, rtol=1e-3)

    _train(root, "run2", "--resume", str(run1 / "checkpoint.pt"), "--max-steps", "2")
    entries = [json.loads(line) for line in (root / "run2" / "log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in entries if "loss" in e] == [4, 5]
    resumed = load_checkpoint(root / "run2" / "checkpoint.pt")
    assert resumed["step"] == 5

    # resuming is exact: the same weights as five steps in one go
    _train(root, "run3", "--init", str(root / "tiny.safetensors"), "--max-steps", "5")
    straight = load_checkpoint(root / "run3" / "checkpoint.pt")
    for k, v in straight["model"].items():
        torch.testing.assert_close(resumed["model"][k], v, atol=1e-6, rtol=1e-5)
    assert not torch.equal(straight["model"]["reconstruct.0.weight"], ckpt["model"]["reconstruct.0.weight"])


def test_training_refuses_to_overwrite_a_run(tiny_pack):
    out = tiny_pack / "run-exists"
    out.mkdir()
    (out / "checkpoint.pt").write_bytes(b"x")
    with pytest.raises(SystemExit):
        _train(tiny_pack, "run-exists", "--max-steps", "1")


def test_random_dihedral_orients_each_sample_on_its_own():
    x = torch.arange(5 * 2 * 36).reshape(5, 2, 6, 6)
    orient = [3, 0, 6, 7, 4]
    out = gs.random_dihedral(x, orient)
    for i, k in enumerate(orient):
        assert torch.equal(out[i], gs.dihedral(x[i], k))
    with pytest.raises(ConfigError):
        gs.random_dihedral(x, [1, 2])


def test_paired_crops_keep_blurry_and_sharp_together():
    sharp = _photos(2, 40, 50)
    blur = [255 - s for s in sharp]
    b, s = _script().paired_crops(blur, sharp, 6, 16, torch.Generator().manual_seed(0))
    assert b.shape == s.shape == (6, 3, 16, 16)
    assert torch.allclose(b, 1 - s, atol=1e-6)  # the same window, in the same orientation
