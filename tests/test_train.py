import dataclasses
import json
import math
import re

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from safetensors.torch import load_file

from conftest import TINY, natural_like
from lmfn_cli import load_model, read_weights
from lmfn_cli.cli import main
from lmfn_cli.images import write_image
from lmfn_cli.train import (
    BatchSource,
    PairedImages,
    TrainConfig,
    TrainError,
    build_batches,
    export_weights,
    find_pairs,
    learning_rate,
    load_checkpoint,
    tensors_sha256,
    train,
)


def _box_blur(img: np.ndarray) -> np.ndarray:
    k = 5
    pad = np.pad(img.astype(np.float32), ((k // 2, k // 2), (0, 0), (0, 0)), mode="edge")
    out = sum(pad[i : i + img.shape[0]] for i in range(k)) / k  # vertical motion blur
    return np.rint(out).astype(np.uint8)


@pytest.fixture
def pairs_dir(tmp_path):
    root = tmp_path / "pairs"
    for i in range(4):
        sharp = natural_like(72, 80, seed=i)
        write_image(root / "sharp" / f"{i}.png", sharp)
        write_image(root / "blur" / f"{i}.png", _box_blur(sharp))
    return root


def tiny_cfg(pairs_dir, **kw) -> TrainConfig:
    base = dict(model=TINY, paired=(str(pairs_dir),), val=str(pairs_dir), val_crop=64, steps=8, batch=2,
                patch=32, val_every=4, log_every=2, lr=1e-3)
    base.update(kw)
    return TrainConfig(**base)


def test_training_runs_end_to_end_and_writes_its_files(tmp_path, pairs_dir):
    run = tmp_path / "run"
    state = train(tiny_cfg(pairs_dir), run)
    assert state.step == 8
    assert {"checkpoint.pt", "best.safetensors", "log.jsonl", "curve.png"} <= {p.name for p in run.iterdir()}
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in log if "val_psnr" in e] == [0, 4, 8]
    assert [e["step"] for e in log if "loss" in e] == [2, 4, 6, 8]
    assert all(math.isfinite(e["loss"]) for e in log if "loss" in e)
    assert all(e["steps_per_s"] > 0 for e in log if "loss" in e)  # printed as steps/s
    assert Image.open(run / "curve.png").size == (900, 600)
    assert load_model(run / "best.safetensors").config == TINY


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_resume_continues_exactly(tmp_path, pairs_dir, precision):
    cfg = tiny_cfg(pairs_dir, val=None)
    train(cfg, tmp_path / "straight", precision=precision)
    train(dataclasses.replace(cfg, steps=4), tmp_path / "split", precision=precision)
    state = train(None, tmp_path / "split", resume=True, steps=8)  # the run's recorded precision
    assert state.step == 8
    a = load_checkpoint(tmp_path / "straight" / "checkpoint.pt")
    b = load_checkpoint(tmp_path / "split" / "checkpoint.pt")
    assert a["precision"] == b["precision"] == precision and a["channels_last"] is b["channels_last"] is True
    a, b = a["model"], b["model"]
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def _force_probe(monkeypatch, choice: str) -> list:
    """A CPU with native bf16 whose timing probe makes ``auto`` choose ``choice``; returns the
    list of the dtypes probed (the probe's calls)."""
    from lmfn_cli import precision as prec

    calls = []

    def probe_step_seconds(model, batch, dtype, channels_last, steps=20, warmup=2):
        calls.append(dtype)
        return 0.1 if (dtype is None) == (choice == "fp32") else 0.2

    monkeypatch.setattr(prec, "cpu_has_native_bf16", lambda: True)
    monkeypatch.setattr(prec, "probe_step_seconds", probe_step_seconds)
    return calls


@pytest.mark.parametrize("first, later", [("bf16", "fp32"), ("fp32", "bf16")])
def test_auto_precision_is_chosen_once_per_run_and_kept_on_resume(tmp_path, pairs_dir, monkeypatch, first, later):
    """The probe's timing noise (it chose bf16 in one process and fp32 in the next) must not
    change the arithmetic of a resumed run: the straight run and the split run end equal."""
    cfg = tiny_cfg(pairs_dir, val=None)
    calls = _force_probe(monkeypatch, first)
    train(cfg, tmp_path / "straight")
    train(dataclasses.replace(cfg, steps=4), tmp_path / "split")
    assert len(calls) == 4  # each new run probed both precisions once
    calls = _force_probe(monkeypatch, later)  # the probe now says the opposite
    train(None, tmp_path / "split", resume=True, steps=8)
    assert calls == []  # a resume does not probe: it uses the recorded choice
    a = load_checkpoint(tmp_path / "straight" / "checkpoint.pt")
    b = load_checkpoint(tmp_path / "split" / "checkpoint.pt")
    assert a["precision"] == b["precision"] == first
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k


def test_a_resume_given_another_precision_uses_it_and_says_so(tmp_path, pairs_dir, caplog):
    cfg = tiny_cfg(pairs_dir, val=None, steps=2)
    train(cfg, tmp_path / "run", precision="fp32")
    with caplog.at_level("WARNING", logger="lmfn_cli.train"):
        train(None, tmp_path / "run", resume=True, steps=4, precision="bf16")
    assert "does not continue bit-exactly" in caplog.text
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["precision"] == "bf16"


def test_a_checkpoint_from_another_device_chooses_precision_anew(tmp_path, pairs_dir, monkeypatch):
    cfg = tiny_cfg(pairs_dir, val=None, steps=2)
    train(cfg, tmp_path / "run", precision="bf16")
    path = tmp_path / "run" / "checkpoint.pt"
    ckpt = load_checkpoint(path)
    ckpt["device_type"], ckpt["precision"] = "cuda", "fp16"  # as a GPU run would have left it
    torch.save(ckpt, path)
    calls = _force_probe(monkeypatch, "fp32")
    train(None, tmp_path / "run", resume=True, steps=4)
    assert calls and load_checkpoint(path)["precision"] == "fp32"


def test_a_new_run_never_replaces_an_old_one(tmp_path, pairs_dir):
    cfg = tiny_cfg(pairs_dir, steps=2, val=None)
    train(cfg, tmp_path / "run")
    with pytest.raises(TrainError, match="--resume"):
        train(cfg, tmp_path / "run")


def test_max_minutes_zero_stops_before_training_with_a_checkpoint(tmp_path, pairs_dir):
    state = train(tiny_cfg(pairs_dir, val=None), tmp_path / "run", max_minutes=0)
    assert state.step == 0 and load_checkpoint(tmp_path / "run" / "checkpoint.pt")["step"] == 0


def test_batches_are_a_function_of_seed_and_step(pairs_dir):
    cfg = tiny_cfg(pairs_dir)
    source = build_batches(cfg)
    b1, s1 = source[5]
    b2, s2 = source[5]
    assert torch.equal(b1, b2) and torch.equal(s1, s2)
    assert b1.shape == (2, 3, 32, 32) and b1.dtype == torch.float32 and 0 <= b1.min() and b1.max() <= 1
    assert not torch.equal(source[6][0], b1)
    other = BatchSource(dataclasses.replace(cfg, seed=1), PairedImages(cfg.paired), None, [])
    assert not torch.equal(other[5][0], b1)


@pytest.mark.parametrize("fraction, expected", [(None, 4 / 7), (0.0, 0.0), (0.25, 0.25), (1.0, 1.0)])
def test_paired_fraction_sets_the_mixture(pairs_dir, fraction, expected):
    cfg = tiny_cfg(pairs_dir, paired_fraction=fraction)
    sharp = [natural_like(80, 80, seed=9 + i) for i in range(3)]
    source = BatchSource(cfg, PairedImages(cfg.paired), lambda img, rng: (img, img, None), sharp)
    assert source.p_paired == pytest.approx(expected)
    # Paired blur is a vertical box blur; the stand-in synth returns blur == sharp.
    rng = np.random.default_rng(0)
    drawn = [not np.array_equal(*source.sample(rng)) for _ in range(400)]
    assert np.mean(drawn) == pytest.approx(expected, abs=0.08)


def test_paired_fraction_out_of_range_is_refused(pairs_dir):
    with pytest.raises(TrainError, match="paired_fraction"):
        tiny_cfg(pairs_dir, paired_fraction=1.5)


def test_export_records_config_summary_and_hash(tmp_path, pairs_dir):
    run = tmp_path / "run"
    train(tiny_cfg(pairs_dir), run)
    path = export_weights(run, tmp_path / "out.safetensors", fp16=True)
    cfg, tensors, meta = read_weights(path)
    assert cfg == TINY
    summary = json.loads(meta["training"])
    assert summary["best_val"]["psnr"] > 0 and summary["loss"] == "mse"
    assert meta["tensors_sha256"] == tensors_sha256(load_file(path))
    assert all(t.dtype == torch.float16 for t in load_file(path).values())


def test_find_pairs_layouts(tmp_path):
    for seq in ("GOPR0001", "GOPR0002"):
        for kind in ("blur", "sharp", "blur_gamma"):
            write_image(tmp_path / "gopro" / seq / kind / "000001.png", natural_like(8, 8))
    write_image(tmp_path / "gopro" / "GOPR0002" / "sharp" / "000002.png", natural_like(8, 8))
    pairs = find_pairs(tmp_path / "gopro")
    assert [(b.parent.parent.name, b.parent.name, s.parent.name) for b, s in pairs] == [
        ("GOPR0001", "blur", "sharp"), ("GOPR0002", "blur", "sharp")]
    with pytest.raises(TrainError, match="no blur"):
        find_pairs(tmp_path / "gopro" / "GOPR0001" / "sharp")


def test_learning_rate_schedules():
    step = TrainConfig(lr=1e-4, schedule="step", step_size=10, gamma=0.1)
    assert learning_rate(step, 9) == pytest.approx(1e-4) and learning_rate(step, 10) == pytest.approx(1e-5)
    cos = TrainConfig(lr=1e-3, min_lr=0.0, schedule="cosine", warmup=10, steps=110)
    assert learning_rate(cos, 0) == pytest.approx(1e-4)
    assert learning_rate(cos, 10) == pytest.approx(1e-3)
    assert learning_rate(cos, 60) == pytest.approx(5e-4)
    assert learning_rate(cos, 110) == pytest.approx(0.0, abs=1e-12)


def test_paper_recipe_is_the_default():
    cfg = TrainConfig()
    assert (cfg.loss, cfg.lr, cfg.weight_decay, cfg.betas, cfg.schedule, cfg.step_size, cfg.gamma) == (
        "mse", 1e-4, 1e-4, (0.9, 0.999), "step", 500_000, 0.1)
    assert TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_cli_train_resume_and_export(tmp_path, pairs_dir):
    run, out = tmp_path / "run", tmp_path / "w.safetensors"
    common = ["--val-crop", "64", "--batch", "2", "--patch", "32", "--val-every", "2", "--variant", "lmfn-rfdb1"]
    r = CliRunner().invoke(main, ["train", str(run), "--paired", str(pairs_dir), "--val", str(pairs_dir), "--steps", "2", *common])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["step"] == 2
    assert re.search(r"step +2  loss [0-9.]+  lr \S+  \d+s  [0-9.]+ steps/s", r.stderr), r.stderr
    r = CliRunner().invoke(main, ["train", str(run), "--resume", "--steps", "3", "--export", str(out), "--export-which", "last"])
    assert r.exit_code == 0, r.output
    assert r.stdout.splitlines()[-1] == str(out)
    assert load_model(out).config.num_blocks == 1
    r = CliRunner().invoke(main, ["train", str(tmp_path / "new"), "--steps", "2"])
    assert r.exit_code == 1 and "no training data" in r.stderr


def test_sharp_photos_are_blurred_on_the_fly_reproducibly(tmp_path, pairs_dir):
    cfg = tiny_cfg(pairs_dir, paired=(), sharp=(str(pairs_dir / "sharp"),), val=None, steps=3, patch=40)
    source = build_batches(cfg)
    blur, sharp = source[1]
    assert blur.shape == sharp.shape == (2, 3, 40, 40)
    assert not torch.equal(blur, sharp)
    assert torch.equal(source[1][0], blur)
    assert train(cfg, tmp_path / "run", workers=1).step == 3


def test_should_stop_ends_the_run_cleanly_with_a_checkpoint(tmp_path, pairs_dir):
    calls = iter(range(100))
    state = train(tiny_cfg(pairs_dir, val=None), tmp_path / "run", should_stop=lambda: next(calls) >= 3)
    assert state.step == 3
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["step"] == 3
    assert train(None, tmp_path / "run", resume=True).step == 8


def test_sigterm_stops_the_cli_cleanly(tmp_path, pairs_dir):
    import os
    import signal as sig
    import subprocess
    import sys
    import time

    run = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "lmfn_cli", "train", str(run), "--paired", str(pairs_dir), "--variant", "lmfn-rfdb1",
         "--batch", "1", "--patch", "32", "--steps", "100000", "--log-every", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.time() + 120
    while time.time() < deadline and not (run / "log.jsonl").exists():
        time.sleep(0.2)
    os.kill(proc.pid, sig.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    step = json.loads(out)["step"]
    assert 0 < step < 100000
    assert load_checkpoint(run / "checkpoint.pt")["step"] == step


def test_bf16_channels_last_training_runs_and_resumes_in_fp32(tmp_path, pairs_dir):
    run = tmp_path / "run"
    cfg = tiny_cfg(pairs_dir, val=None, steps=2)
    assert train(cfg, run, precision="bf16", channels_last=True).step == 2
    state = train(None, run, resume=True, steps=3, precision="fp32", channels_last=False)
    assert state.step == 3
    ckpt = load_checkpoint(run / "checkpoint.pt")
    assert all(v.dtype == torch.float32 for v in ckpt["model"].values() if v.is_floating_point())
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())


def test_fp16_on_the_cpu_is_refused_before_training(tmp_path, pairs_dir):
    from lmfn_cli.errors import ConfigError

    with pytest.raises(ConfigError, match="fp16"):
        train(tiny_cfg(pairs_dir, val=None), tmp_path / "run", precision="fp16", device="cpu")
    r = CliRunner().invoke(main, ["train", str(tmp_path / "cli"), "--paired", str(pairs_dir), "--variant", "lmfn-rfdb1",
                                  "--steps", "1", "--precision", "fp16", "--device", "cpu"])
    assert r.exit_code == 1 and "fp16" in r.stderr


def test_channels_last_training_matches_contiguous_training(tmp_path, pairs_dir):
    cfg = tiny_cfg(pairs_dir, val=None, steps=2)
    train(cfg, tmp_path / "a", precision="fp32", channels_last=False)
    train(cfg, tmp_path / "b", precision="fp32", channels_last=True)
    a = load_checkpoint(tmp_path / "a" / "checkpoint.pt")["model"]
    b = load_checkpoint(tmp_path / "b" / "checkpoint.pt")["model"]
    assert max((a[k].float() - b[k].float()).abs().max().item() for k in a) < 1e-4


def test_several_validation_sets_are_scored_each_and_best_is_their_mean(tmp_path, pairs_dir):
    other = tmp_path / "other"
    for i in range(2):
        sharp = natural_like(64, 64, seed=10 + i)
        write_image(other / "sharp" / f"{i}.png", sharp)
        write_image(other / "blur" / f"{i}.png", _box_blur(sharp))
    run = tmp_path / "run"
    train(tiny_cfg(pairs_dir, val=(str(pairs_dir), str(other)), steps=4), run)
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    vals = [e for e in log if "val_psnr" in e]
    assert {"val_pairs/psnr", "val_other/psnr", "val_pairs/input_psnr", "val_other/input_psnr"} <= set(vals[0])
    for e in vals:
        assert e["val_psnr"] == pytest.approx((e["val_pairs/psnr"] + e["val_other/psnr"]) / 2, abs=2e-4)
    best = max(vals, key=lambda e: e["val_psnr"])
    assert load_checkpoint(run / "checkpoint.pt")["best"]["step"] == best["step"]


def test_old_configs_with_one_val_folder_still_load():
    cfg = TrainConfig.from_dict({**TrainConfig().to_dict(), "val": "some/folder"})
    assert cfg.val == ("some/folder",)
    assert TrainConfig.from_dict({**TrainConfig().to_dict(), "val": None}).val == ()


def test_training_kernel_split_leaves_out_the_validation_kernels():
    from lmfn_cli import synth

    mats = [np.full((5, 5), 1 / 25, np.float32) for _ in range(12)]
    bank = synth.KernelBank(usrnet=tuple(mats), usrnet_ids=tuple(range(12)))
    assert bank.split("train").usrnet_ids == tuple(range(8))
    assert bank.split("val").usrnet_ids == synth.HELD_OUT_USRNET
    assert bank.split("all") is bank
    with pytest.raises(TrainError, match="kernel_split"):
        TrainConfig(kernel_split="val")


def test_psnr_loss_is_minus_the_mean_psnr_scaled():
    from lmfn_cli.train import loss_fn

    cfg = TrainConfig(loss="psnr")
    target = torch.rand(2, 3, 16, 16)
    near, far = target + 0.01, target + 0.1
    assert loss_fn(cfg, near, target) < loss_fn(cfg, far, target)
    # 10 log10(1e-4) = -40 dB -> 0.005 * -40
    assert loss_fn(cfg, near, target).item() == pytest.approx(-0.2, abs=1e-3)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_ema_is_the_moving_average_of_the_weights_and_resumes_exactly(tmp_path, pairs_dir, precision):
    cfg = tiny_cfg(pairs_dir, ema=0.9, steps=1, val=None)
    train(cfg, tmp_path / "one", precision=precision)
    init = load_checkpoint(tmp_path / "one" / "checkpoint.pt")
    # after one step from the seeded start, ema = 0.9 * start + 0.1 * weights
    torch.manual_seed(cfg.seed)
    from lmfn_cli.model import LMFN

    start = LMFN(TINY).state_dict()
    for k, w in init["model"].items():
        if w.is_floating_point():
            assert torch.allclose(init["ema"][k], 0.9 * start[k] + 0.1 * w, atol=1e-6), k
    assert any(not torch.equal(init["ema"][k], init["model"][k]) for k in init["model"])

    cfg = dataclasses.replace(cfg, steps=8)
    train(cfg, tmp_path / "straight", precision=precision)
    train(dataclasses.replace(cfg, steps=4), tmp_path / "split", precision=precision)
    train(None, tmp_path / "split", resume=True, steps=8)
    a = load_checkpoint(tmp_path / "straight" / "checkpoint.pt")["ema"]
    b = load_checkpoint(tmp_path / "split" / "checkpoint.pt")["ema"]
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_ema_is_validated_and_exported(tmp_path, pairs_dir):
    run = tmp_path / "run"
    train(tiny_cfg(pairs_dir, ema=0.5, val=(str(pairs_dir), str(pairs_dir))), run)  # two sets: per-set keys
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    vals = [e for e in log if "val_psnr" in e]
    assert all("val_ema_psnr" in e and "val_ema_ssim" in e for e in vals)
    assert vals[0]["val_ema_psnr"] == vals[0]["val_psnr"]  # both are the starting weights
    assert (run / "curve.png").exists()
    path = export_weights(run, tmp_path / "ema.safetensors", which="ema")
    _, tensors, meta = read_weights(path)
    ema = load_checkpoint(run / "checkpoint.pt")["ema"]
    assert all(torch.equal(tensors[k], ema[k].float()) for k in tensors)
    assert json.loads(meta["training"])["which"] == "ema"


def test_exporting_ema_from_a_run_without_it_is_a_clear_error(tmp_path, pairs_dir):
    train(tiny_cfg(pairs_dir, steps=2, val=None), tmp_path / "run")
    with pytest.raises(TrainError, match="moving average"):
        export_weights(tmp_path / "run", tmp_path / "x.safetensors", which="ema")
    with pytest.raises(TrainError, match="ema"):
        tiny_cfg(pairs_dir, ema=1.0)


def test_the_on_the_fly_mixture_follows_the_config():
    from lmfn_cli.train_data import synth_config

    old = synth_config(TrainConfig())
    assert (old.w_none, old.w_small, old.srgb_blur_prob, old.degradation.noise_model) == (0, 0, 0, "clipped-linear")
    assert old.degradation.clip_prob == 0.25  # runs before highlight_prob existed boosted a quarter
    new = synth_config(TrainConfig(noise_model="zero-mean", w_none=0.25, w_small=0.125, srgb_blur_prob=0.5,
                                   noise_prob=0.7, jpeg_prob=0.2, highlight_prob=0.05, none_target="input"))
    assert (old.none_target, new.none_target) == ("clean", "input")
    assert (new.w_none, new.w_small, new.srgb_blur_prob) == (0.25, 0.125, 0.5)
    assert (new.degradation.noise_model, new.degradation.noise_prob, new.degradation.jpeg_prob) == ("zero-mean", 0.7, 0.2)
    assert new.degradation.clip_prob == 0.05
    # a checkpoint's config from before the field reads back with the old behaviour
    saved = TrainConfig().to_dict()
    del saved["highlight_prob"]
    assert TrainConfig.from_dict(saved).highlight_prob == 0.25
    for bad in (dict(noise_model="poisson"), dict(w_none=-1.0), dict(srgb_blur_prob=1.5), dict(highlight_prob=-0.1),
                dict(none_target="noisy")):
        with pytest.raises(TrainError):
            TrainConfig(**bad)


def test_unblurred_validation_pairs_log_finite_figures(tmp_path):
    """The yardstick's identity set as --val: input == target would be an infinite PSNR."""
    root = tmp_path / "identity"
    for i in range(2):
        img = natural_like(64, 64, seed=i)
        write_image(root / "blur" / f"{i}.png", img)
        write_image(root / "sharp" / f"{i}.png", img)
    run = tmp_path / "run"
    train(tiny_cfg(root, steps=2, val_every=2, val=(str(root),)), run, precision="fp32")
    for line in (run / "log.jsonl").read_text().splitlines():
        entry = json.loads(line, parse_constant=lambda c: pytest.fail(f"{c} in the log"))  # strict JSON
        if "val_psnr" in entry:
            assert entry["val_input_psnr"] == 100.0 and math.isfinite(entry["val_psnr"])


def test_until_step_stops_without_touching_the_schedule(tmp_path, pairs_dir):
    """Stopped at step 4 of 8 and resumed, a run ends where the straight run ends: the
    schedule (cosine over 8) was the same all along, unlike --steps 4 then --steps 8."""
    cfg = tiny_cfg(pairs_dir, val=None, schedule="cosine")
    train(cfg, tmp_path / "straight", precision="fp32")
    state = train(cfg, tmp_path / "split", precision="fp32", until_step=4)
    assert state.step == 4 and load_checkpoint(tmp_path / "split" / "checkpoint.pt")["config"]["steps"] == 8
    train(None, tmp_path / "split", resume=True)
    a = load_checkpoint(tmp_path / "straight" / "checkpoint.pt")["model"]
    b = load_checkpoint(tmp_path / "split" / "checkpoint.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
