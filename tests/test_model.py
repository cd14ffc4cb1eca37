import dataclasses
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from conftest import TINY
from lmfn_cli import LMFN, LMFNConfig, VARIANTS, build_model, count_parameters, load_model
from lmfn_cli.errors import ConfigError
from lmfn_cli.model import ACFM, ALFM, variant_config

WEIGHTS = Path(__file__).resolve().parents[1] / "weights"
CL = torch.channels_last


def params(name: str) -> int:
    with torch.device("meta"):
        return count_parameters(build_model(name))


def test_default_model_has_the_papers_1_25m_parameters():
    assert params("lmfn") == pytest.approx(1.25e6, rel=0.01)


def test_no_attention_ablation_has_the_papers_1_20m_parameters():
    assert params("lmfn-no-attention") == pytest.approx(1.20e6, rel=0.01)


def test_variant_counts_are_the_ones_the_readme_reports():
    # Exact counts of our reading of the paper (README's table); a change here is a model change.
    expected = {
        "lmfn": 1_246_316,
        "lmfn-rfdb1": 955_466,
        "lmfn-rfdb2": 1_052_416,
        "lmfn-rfdb3": 1_149_366,
        "lmfn-rfdb5": 1_343_266,
        "lmfn-rfdb6": 1_440_216,
        "lmfn-no-mshf": 729_324,
        "lmfn-resblocks": 1_048_916,
        "lmfn-no-attention": 1_201_250,
    }
    assert {name: params(name) for name in expected} == expected


def test_parts_match_the_architecture_reading():
    with torch.device("meta"):
        m = build_model("lmfn")
    assert count_parameters(m.encoder) == 740_352
    assert count_parameters(m.decoder.head) == 28_850
    assert sum(count_parameters(b) for b in m.decoder.blocks) == 4 * 94_450
    assert count_parameters(m.reconstruct) == 21_648


@pytest.mark.parametrize("h,w", [(1, 1), (2, 5), (17, 9), (64, 64), (65, 130), (100, 37)])
def test_any_input_size_comes_back_the_same_size(tiny_model, h, w):
    x = torch.rand(2, 3, h, w)
    with torch.no_grad():
        y = tiny_model(x)
    assert y.shape == x.shape
    assert torch.isfinite(y).all()


def test_full_size_default_model_runs_on_odd_size():
    model = build_model("lmfn").eval()
    with torch.no_grad():
        y = model(torch.rand(1, 3, 37, 70))
    assert y.shape == (1, 3, 37, 70)


def test_all_variants_run_forward_and_backward():
    for name, v in VARIANTS.items():
        model = LMFN(dataclasses.replace(v.config, enc_channels=8, dec_channels=8, esa_channels=4))
        x = torch.rand(1, 3, 40, 48)
        model(x).square().mean().backward()
        grads = [p.grad for p in model.parameters() if p.requires_grad]
        assert all(g is not None for g in grads), name


def test_attention_scales_start_at_zero():
    m = LMFN(TINY)
    assert m.decoder.alfm.theta.item() == 0.0
    assert m.decoder.acfm.alpha.item() == 0.0


@pytest.mark.parametrize("h,w,ph,pw", [(1, 1, 64, 64), (20, 70, 64, 80), (64, 64, 64, 64), (100, 129, 112, 144)])
def test_pad_reaches_a_multiple_of_16_and_at_least_64(tiny_model, h, w, ph, pw):
    x = torch.rand(1, 3, h, w)
    padded = tiny_model.pad(x)
    assert padded.shape[-2:] == (ph, pw)
    assert torch.equal(padded[..., :h, :w], x)  # the image itself sits untouched at the top left


def test_pad_reflects_when_it_can_and_replicates_when_it_cannot(tiny_model):
    x = torch.arange(100.0).view(1, 1, 1, 100).expand(1, 3, 80, 100)
    assert tiny_model.pad(x)[0, 0, 0, 100].item() == 98.0  # reflect: ... 98 99 | 98
    tiny = torch.rand(1, 3, 3, 3)
    assert torch.equal(tiny_model.pad(tiny)[..., -1, -1], tiny[..., -1, -1])  # replicate


def test_alfm_energy_is_fp32_under_autocast():
    torch.manual_seed(0)
    alfm = ALFM(channels=8, num_blocks=2, softmax="han")
    alfm.theta.data.fill_(1.0)
    # Large activations over many positions: E = X X^T overflows half precision.
    blocks = [torch.randn(1, 8, 64, 64) * 30 for _ in range(2)]
    ref = alfm(blocks)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = alfm(blocks)
    assert torch.isfinite(out).all()
    assert torch.allclose(out.float(), ref, rtol=0.05, atol=0.5)


def test_paper_and_han_softmax_conventions_differ():
    torch.manual_seed(0)
    blocks = [torch.randn(1, 8, 16, 16) for _ in range(2)]
    han, paper = ALFM(8, 2, "han"), ALFM(8, 2, "paper")
    paper.load_state_dict(han.state_dict())
    for m in (han, paper):
        m.theta.data.fill_(1.0)
    assert not torch.allclose(han(blocks), paper(blocks))


def test_global_residual_adds_the_input():
    torch.manual_seed(0)
    plain = LMFN(TINY).eval()
    resid = LMFN(dataclasses.replace(TINY, global_residual=True)).eval()
    resid.load_state_dict(plain.state_dict())
    x = torch.rand(1, 3, 64, 80)
    with torch.no_grad():
        diff = resid(x) - plain(x)
    mean = torch.tensor(TINY.rgb_mean).view(1, 3, 1, 1)
    assert torch.allclose(diff, x - mean, atol=1e-5)


def test_config_validation_and_json_round_trip():
    cfg = variant_config("lmfn-no-mshf", num_blocks=3)
    assert LMFNConfig.from_json(cfg.to_json()) == cfg
    with pytest.raises(ConfigError):
        LMFNConfig(encoder="unet")
    with pytest.raises(ConfigError):
        LMFNConfig(num_blocks=0)
    with pytest.raises(ConfigError):
        LMFNConfig.from_dict({"num_blocks": 2, "colour": "red"})
    with pytest.raises(ConfigError):
        variant_config("lmfn-huge")


def test_wrong_input_shape_is_a_clear_error(tiny_model):
    with pytest.raises(ValueError, match=r"\(B,3,H,W\)"):
        tiny_model(torch.rand(1, 4, 32, 32))


# --------------------------------------------------------------------------------------------
# ACFM in 2-D ops (channels-last) against the paper's one-channel Conv3d form
# --------------------------------------------------------------------------------------------


def acfm_conv3d_reference(acfm: ACFM, x: torch.Tensor) -> torch.Tensor:
    """Eq. 3 as written: (B,C,h,w) seen as the one-channel volume (B,1,C,h,w), a 1x3x3 then a
    3x1x1 Conv3d (zero padding), sigmoid, x + alpha * a * x."""
    v = F.conv3d(x.unsqueeze(1), acfm.spatial.weight, acfm.spatial.bias, padding=(0, 1, 1))
    v = F.conv3d(v, acfm.channel.weight, acfm.channel.bias, padding=(1, 0, 0))
    return x + acfm.alpha * torch.sigmoid(v.squeeze(1)) * x


def random_acfm(seed: int) -> ACFM:
    """An ACFM whose every parameter matters: alpha away from 0, channel taps all different
    (a transposed or shifted band would show)."""
    torch.manual_seed(seed)
    acfm = ACFM()
    with torch.no_grad():
        for p in acfm.parameters():
            p.uniform_(-1.0, 1.0)
        acfm.alpha.fill_(0.8)
        acfm.channel.weight.copy_(torch.tensor([0.9, -0.4, 0.25]).view(1, 1, 3, 1, 1))
    return acfm


def _grads(module: torch.nn.Module, x: torch.Tensor, out: torch.Tensor, cotangent: torch.Tensor) -> dict:
    names = [n for n, _ in module.named_parameters()]
    grads = torch.autograd.grad((out * cotangent).sum(), [p for _, p in module.named_parameters()] + [x])
    return dict(zip(names + ["input"], grads))


@pytest.mark.parametrize("shape", [(2, 8, 5, 7), (1, 50, 16, 24), (3, 1, 4, 4)])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_acfm_equals_the_conv3d_reference_in_forward_and_gradients(shape, layout):
    acfm = random_acfm(seed=shape[1])
    g = torch.Generator().manual_seed(1)
    x0 = torch.randn(*shape, generator=g)
    cotangent = torch.randn(*shape, generator=g)
    x_ref = x0.clone().requires_grad_(True)
    ref = acfm_conv3d_reference(acfm, x_ref)
    ref_grads = _grads(acfm, x_ref, ref, cotangent)

    x = (x0.contiguous(memory_format=CL) if layout == "channels_last" else x0.clone()).requires_grad_(True)
    out = acfm(x)
    grads = _grads(acfm, x, out, cotangent)
    assert torch.allclose(out, ref, atol=1e-5, rtol=0), (out - ref).abs().max()
    assert grads.keys() == ref_grads.keys() == {"spatial.weight", "spatial.bias", "channel.weight",
                                                "channel.bias", "alpha", "input"}
    for name, grad in grads.items():
        assert grad.shape == ref_grads[name].shape, name
        assert torch.allclose(grad, ref_grads[name], atol=1e-5, rtol=1e-5), (name, (grad - ref_grads[name]).abs().max())
    if layout == "channels_last" and shape[1] > 1:
        assert out.is_contiguous(memory_format=CL)


def test_acfm_parameters_keep_the_conv3d_layout():
    acfm = ACFM()
    expected = {"alpha": (1,), "spatial.weight": (1, 1, 1, 3, 3), "spatial.bias": (1,),
                "channel.weight": (1, 1, 3, 1, 1), "channel.bias": (1,)}
    assert {k: tuple(v.shape) for k, v in acfm.state_dict().items()} == expected
    acfm.to(memory_format=CL)  # would raise for 5-D tensors without ACFM._apply
    assert {k: tuple(v.shape) for k, v in acfm.state_dict().items()} == expected
    assert {n: tuple(p.shape) for n, p in acfm.named_parameters()} == expected


def trained_like(config: LMFNConfig, seed: int = 0) -> LMFN:
    """A model with ALFM and ACFM switched on (a fresh model has theta = alpha = 0)."""
    torch.manual_seed(seed)
    model = LMFN(config)
    with torch.no_grad():
        model.decoder.alfm.theta.fill_(0.5)
        model.decoder.acfm.alpha.fill_(-0.7)
        model.decoder.acfm.channel.weight.copy_(torch.tensor([0.9, -0.4, 0.25]).view(1, 1, 3, 1, 1))
    return model


@pytest.mark.parametrize("size", [(64, 80), (37, 50)])
def test_whole_model_channels_last_equals_contiguous(size):
    plain = trained_like(TINY)
    nhwc = trained_like(TINY).to(memory_format=CL)
    x = torch.rand(2, 3, *size)
    y_ref = plain(x)
    y = nhwc(x.contiguous(memory_format=CL))
    assert torch.allclose(y, y_ref, atol=1e-5, rtol=0), (y - y_ref).abs().max()
    if size == (64, 80):  # no padding, no crop: the layout comes through to the output
        assert y.is_contiguous(memory_format=CL)
    # A training step in channels-last reaches the same gradients.
    y_ref.abs().mean().backward()
    y.abs().mean().backward()
    ref_grads = dict(plain.named_parameters())
    for name, p in nhwc.named_parameters():
        assert p.grad is not None, name
        assert torch.allclose(p.grad, ref_grads[name].grad, atol=1e-5, rtol=1e-4), name
    assert {k: v.shape for k, v in nhwc.state_dict().items()} == {k: v.shape for k, v in plain.state_dict().items()}


@pytest.mark.parametrize("name", ["lmfn-synthblur-v2.safetensors", "lmfn-synthblur-v7.safetensors"])
def test_shipped_weights_load_and_acfm_matches_the_reference(name):
    model = load_model(WEIGHTS / name)
    acfm = model.decoder.acfm
    assert acfm.alpha.item() != 0.0  # trained: ACFM is part of the function
    x = torch.randn(1, model.config.dec_channels, 12, 20)
    with torch.no_grad():
        assert torch.allclose(acfm(x), acfm_conv3d_reference(acfm, x), atol=1e-5, rtol=0)
        model.to(memory_format=CL)
        assert torch.allclose(acfm(x.contiguous(memory_format=CL)), acfm_conv3d_reference(acfm, x), atol=1e-5, rtol=0)
