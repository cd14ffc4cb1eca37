"""Dead units (lmfn_cli.revive) and the decoupled weight decay that stops them dying."""

from pathlib import Path

import pytest
import torch

from conftest import TINY
from lmfn_cli.model import LMFN
from lmfn_cli.revive import dead_units, revive, zero_fraction
from lmfn_cli.train import TrainConfig, build_model_and_optimizer
from lmfn_cli.weights import load_model, save_weights

REPO = Path(__file__).resolve().parents[1]


def _kill_decoder(model: LMFN) -> LMFN:
    """What coupled weight decay left in the shipped weights: every RFDB conv, ALFM's reduction
    and the fusion conv's weights at zero (the fusion conv keeps its bias: it joins the live path)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            dead = name.startswith("decoder.blocks.") or name.startswith("decoder.alfm.reduce.")
            if dead or name == "decoder.fuse.weight":
                p.zero_()
    return model


def _loss(model: LMFN) -> torch.Tensor:
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    return (model(x) - x.flip(-1)).abs().mean()


def test_dead_decoder_gets_no_gradient_until_revived():
    model = _kill_decoder(LMFN(TINY))
    assert set(dead_units(model)) >= {"decoder.blocks.0.distil.0", "decoder.alfm.reduce"}
    assert "decoder.fuse" not in dead_units(model)  # its bias is alive
    _loss(model).backward()
    # the saddle: zero weights fed by zero channels get exactly zero gradient
    assert float(model.decoder.fuse.weight.grad.abs().max()) == 0
    assert float(model.decoder.blocks[0].distil[0].weight.grad.abs().max()) == 0

    model.zero_grad()
    report = revive(model, seed=1)
    assert report.revived and report.units > 0 and not dead_units(model)
    _loss(model).backward()
    assert float(model.decoder.fuse.weight.grad.abs().max()) > 0


def test_revive_leaves_the_output_unchanged():
    model = _kill_decoder(LMFN(TINY)).eval()
    x = torch.rand(1, 3, 80, 72, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        before = model(x)
    report = revive(model)
    with torch.no_grad():
        after = model(x)
    assert report.revived and report.max_change <= 1e-5
    assert torch.allclose(before, after, atol=1e-6)
    assert report.describe().startswith("revived")


def test_revive_refuses_a_unit_whose_consumer_is_alive():
    # the reconstruction conv's output channels feed the picture directly: bringing them back
    # would change the output, so revive puts the weights back and says so
    model = LMFN(TINY).eval()
    with torch.no_grad():
        model.reconstruct[0].weight[:4].zero_()
        model.reconstruct[0].bias[:4].zero_()
    report = revive(model)
    assert not report.revived and report.max_change > 1e-5
    assert "NOT revived" in report.describe()
    assert "reconstruct.0" in dead_units(model)


def test_a_healthy_network_has_nothing_to_revive():
    model = LMFN(TINY)
    assert not dead_units(model) and revive(model).units == 0 and zero_fraction(model) < 0.01


def test_shipped_default_weights_revive_without_changing_their_output():
    model = load_model(REPO / "weights" / "lmfn-synthblur-v2.safetensors").eval()
    assert zero_fraction(model) > 0.7  # the dead decoder this module is about
    report = revive(model)
    assert report.revived and report.units > 2000 and report.max_change <= 1e-5


def _cfg(**kw) -> TrainConfig:
    return TrainConfig(model=TINY, paired=("unused",), steps=10, lr=0.01, **kw)


def test_weight_decay_is_decoupled():
    # with no gradient, decoupled decay multiplies a weight by (1 - lr * wd); Adam's coupled
    # L2 term would move it by about lr whatever its size (how the decoder died)
    cfg = _cfg(weight_decay=0.1)
    model, optimizer, _ = build_model_and_optimizer(cfg, torch.device("cpu"), None, None)
    w = model.decoder.blocks[0].distil[0].weight
    before = w.detach().clone()
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()
    assert torch.allclose(w.detach(), before * (1 - 0.01 * 0.1), rtol=1e-6, atol=1e-9)


def test_a_resumed_optimizer_from_before_decays_decoupled():
    cfg = _cfg(weight_decay=0.1)
    model, optimizer, _ = build_model_and_optimizer(cfg, torch.device("cpu"), None, None)
    old = optimizer.state_dict()
    for group in old["param_groups"]:
        group["decoupled_weight_decay"] = False  # as checkpoints before 2026-12-07 recorded it
    ckpt = {"model": model.state_dict(), "optimizer": old, "step": 3}
    _, resumed, state = build_model_and_optimizer(cfg, torch.device("cpu"), None, ckpt)
    assert state.step == 3 and all(g["decoupled_weight_decay"] for g in resumed.param_groups)


@pytest.mark.parametrize("on", [True, False])
def test_init_weights_are_revived_unless_the_config_says_not(tmp_path, on):
    path = save_weights(_kill_decoder(LMFN(TINY)), tmp_path / "dead.safetensors")
    model, _, _ = build_model_and_optimizer(_cfg(revive=on), torch.device("cpu"), path, None)
    assert bool(dead_units(model)) is not on
