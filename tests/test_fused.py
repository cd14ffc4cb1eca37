"""The fused CPU inference graph computes the same function as the model, for every variant."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from conftest import TINY, natural_like
from lmfn_cli import LMFN, LMFNConfig, load_model, restore
from lmfn_cli import fused as fused_mod
from lmfn_cli import inference
from lmfn_cli.fused import Conv, FusedLMFN, conv1x1_concat, fused_ops_available, strided_stem

needs_onednn = pytest.mark.skipif(not fused_ops_available(), reason="this torch build has no oneDNN fused ops")

VARIANTS = {
    "default": TINY,
    "paper-softmax": dataclasses.replace(TINY, alfm_softmax="paper"),
    "plain-encoder": dataclasses.replace(TINY, encoder="plain", plain_resblocks=1),
    "resblock-decoder": dataclasses.replace(TINY, decoder_block="resblock"),
    "concat-fusion": dataclasses.replace(TINY, fusion="concat", num_blocks=3),
    "global-residual": dataclasses.replace(TINY, global_residual=True, num_blocks=1),
}


def trained_like(config: LMFNConfig, seed: int = 0) -> LMFN:
    """A model whose every part matters: fresh inits leave ALFM/ACFM off (theta = alpha = 0)
    and the resblocks near identity, which would hide a wrong fold."""
    torch.manual_seed(seed)
    model = LMFN(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("theta"):
                p.fill_(0.7)
            elif name.endswith("alpha"):
                p.fill_(-0.6)
            elif ".rb" in name or ".out." in name or ".body." in name:
                p.mul_(5.0)  # resblocks start at 0.1x their init: make them count
            elif p.dim() == 1:
                p.uniform_(-0.2, 0.2)
    return model


def image(h: int, w: int, b: int = 1, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, h, w, generator=g)


@needs_onednn
@pytest.mark.parametrize("name", sorted(VARIANTS))
@pytest.mark.parametrize("size", [(37, 50), (64, 64), (150, 90)])
def test_fused_equals_model(name, size):
    model = trained_like(VARIANTS[name])
    x = image(*size)
    with torch.inference_mode():
        ref = model(x)
        fused = FusedLMFN.from_model(model)
        got = fused(x.contiguous(memory_format=torch.channels_last))
    assert got.shape == ref.shape == x.shape
    assert ref.abs().max() > 0.1  # a real signal, not a vanishing one
    torch.testing.assert_close(got, ref, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_plain_op_graph_equals_model(name):
    """The same graph on plain torch ops (used where oneDNN is missing and for tracing)."""
    model = trained_like(VARIANTS[name], seed=1)
    x = image(72, 96, b=2, seed=1)
    with torch.inference_mode():
        ref = model(x)
        got = FusedLMFN.from_model(model).core(model.pad(x), fused=False)[..., :72, :96]
    torch.testing.assert_close(got, ref, atol=1e-4, rtol=1e-4)


@needs_onednn
def test_batch_and_nchw_input():
    model = trained_like(TINY, seed=2)
    x = image(70, 81, b=3, seed=2)
    with torch.inference_mode():
        torch.testing.assert_close(FusedLMFN.from_model(model)(x), model(x), atol=1e-4, rtol=1e-4)


@needs_onednn
@pytest.mark.parametrize("rows", [1, 3, 8, 1000])
@pytest.mark.parametrize("height", [16, 35, 64, 98])
def test_stem_strips_match_layer_by_layer(monkeypatch, rows, height):
    """Strips of any height, a last strip shorter than the rest, and images of one strip."""
    torch.manual_seed(3)
    layers = tuple(Conv(torch.randn(c_out, c_in, 3, 3).contiguous(memory_format=torch.channels_last) * 0.3,
                        torch.randn(c_out) * 0.1, stride, 1)
                   for c_in, c_out, stride in ((3, 8, 1), (8, 8, 2), (8, 6, 2)))
    x = torch.rand(2, 3, height, 44).contiguous(memory_format=torch.channels_last)
    monkeypatch.setattr(fused_mod, "STRIP_ROWS", rows)
    with torch.inference_mode():
        want = strided_stem(x, layers, 0.1, fused=False)
        got = strided_stem(x, layers, 0.1, fused=True)
    assert got.shape == want.shape == (2, 6, -(-height // 4), 11)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


@needs_onednn
def test_conv1x1_concat_matches_concatenation():
    torch.manual_seed(4)
    parts = [torch.randn(2, k, 9, 13).contiguous(memory_format=torch.channels_last) for k in (3, 5, 4)]
    c = Conv(torch.randn(7, 12, 1, 1).contiguous(memory_format=torch.channels_last), torch.randn(7), 1, 0)
    with torch.inference_mode():
        want = conv1x1_concat(parts, c, fused=False)
        got = conv1x1_concat(parts, c, fused=True)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_weights_are_copied():
    """Built once per image: later training steps must not leak into a running graph, nor the
    graph into the model."""
    model = trained_like(TINY, seed=5)
    fused = FusedLMFN.from_model(model)
    x = image(64, 64, seed=5)
    with torch.inference_mode():
        before = fused(x)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.5)
        after = fused(x)
    torch.testing.assert_close(before, after)


def test_cpu_only():
    with pytest.raises(ValueError, match="CPU"):
        FusedLMFN.from_model(trained_like(TINY)).to("meta")


def test_restore_uses_the_fused_graph_on_cpu_fp32(monkeypatch):
    """restore() on the CPU gives the model's result whether or not the fused ops exist."""
    model = trained_like(TINY, seed=6)
    rng = np.random.default_rng(6)
    img = rng.random((45, 70, 3), dtype=np.float32)
    built = []
    real = FusedLMFN.from_model
    monkeypatch.setattr(inference.FusedLMFN, "from_model", lambda m, *a: built.append(m) or real(m, *a))
    with torch.inference_mode():
        ref = model(torch.from_numpy(img).permute(2, 0, 1)[None]).clamp(0, 1)[0].permute(1, 2, 0).numpy()
    got = restore(model, img, tile=0, precision="fp32").pixels
    assert len(built) == (1 if fused_ops_available() else 0)
    np.testing.assert_allclose(got, ref, atol=1e-4)
    monkeypatch.setattr(inference, "fused_ops_available", lambda: False)
    np.testing.assert_allclose(restore(model, img, tile=0, precision="fp32").pixels, ref, atol=1e-4)
    assert len(built) == (1 if fused_ops_available() else 0)


@needs_onednn
def test_shipped_weights_fused_match_eager():
    """The default weights: fused and eager agree on a photo-sized input (the benchmark checks 1280x720)."""
    model = load_model(device="cpu")
    x = image(200, 328, seed=7)
    with torch.inference_mode():
        torch.testing.assert_close(FusedLMFN.from_model(model)(x), model(x), atol=1e-4, rtol=1e-4)


def test_auto_tile_budgets_the_fused_graphs_memory(monkeypatch):
    """`auto` sizes CPU tiles by the fused graph's bytes per pixel (a third of the plain
    forward's), and by the plain forward's where the fused graph does not run."""
    from lmfn_cli.tiling import FORWARD_BYTES_PER_PIXEL, FUSED_BYTES_PER_PIXEL, choose_tile

    model = trained_like(TINY, seed=8)
    free = 400 * 400 * FUSED_BYTES_PER_PIXEL  # room for a ~400 px fused tile, a ~230 px plain one
    monkeypatch.setattr(inference, "available_memory", lambda device: free)
    img = np.zeros((700, 900, 3), np.uint8)
    expect = choose_tile(700, 900, free_bytes=free, bytes_per_pixel=FUSED_BYTES_PER_PIXEL, max_tile=512)
    if fused_ops_available():
        assert restore(model, img).tile == expect
    monkeypatch.setattr(inference, "fused_ops_available", lambda: False)
    plain = choose_tile(700, 900, free_bytes=free, bytes_per_pixel=FORWARD_BYTES_PER_PIXEL, max_tile=512)
    assert plain < expect
    assert restore(model, img).tile == plain


# -- the bf16 twin ------------------------------------------------------------------------------


def levels(y: torch.Tensor) -> torch.Tensor:
    return (y.clamp(0, 1) * 255).round()


def assert_within_a_level(got: torch.Tensor, want: torch.Tensor) -> None:
    """The issue's bar for bf16: >= 99.9 % of pixels within 1 level of fp32, >= 50 dB between them."""
    share = (levels(got) - levels(want)).abs().le(1).float().mean().item()
    mse = (got.clamp(0, 1) - want.clamp(0, 1)).pow(2).mean().item()
    assert share >= 0.999, share
    assert mse <= 1e-5, f"{10 * np.log10(1 / mse):.1f} dB"  # 1e-5 is 50 dB


def photo(h: int = 96, w: int = 130) -> torch.Tensor:
    return torch.from_numpy(natural_like(h, w, seed=9)).permute(2, 0, 1)[None].float() / 255


@needs_onednn
@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_bf16_twin_is_within_a_level_of_fp32(name):
    model = trained_like(VARIANTS[name], seed=9)
    x = photo()
    with torch.inference_mode():
        want = FusedLMFN.from_model(model)(x)
        twin = FusedLMFN.from_model(model, torch.bfloat16)
        got = twin(x)
    assert twin.head.weight.dtype == torch.bfloat16 and twin.reconstruct.weight.dtype == torch.float32
    assert got.dtype == torch.float32 and got.shape == x.shape
    assert not torch.equal(got, want)  # it really computed in bf16
    assert_within_a_level(got, want)


@pytest.mark.parametrize("name", ["default", "concat-fusion"])
def test_bf16_twin_on_plain_ops(name):
    """Where oneDNN's fused ops are missing (or while tracing), the bf16 graph runs on plain ops."""
    model = trained_like(VARIANTS[name], seed=10)
    x = photo(64, 80)
    with torch.inference_mode():
        want = FusedLMFN.from_model(model).core(model.pad(x), fused=False)
        got = FusedLMFN.from_model(model, torch.bfloat16).core(model.pad(x), fused=False)
    assert got.dtype == torch.float32
    assert_within_a_level(got, want)


def test_bf16_twin_uses_plain_ops_where_onednn_has_no_bf16(monkeypatch):
    """On CPUs without AVX512 BW/VL/DQ (this AMD EPYC) oneDNN's bf16 convolution raises; the
    twin must then take plain ops, and give what the plain-ops graph gives."""
    import lmfn_cli.fused as fused_mod

    model = trained_like(VARIANTS["default"], seed=11)
    x = photo(48, 64)
    twin = FusedLMFN.from_model(model, torch.bfloat16)
    monkeypatch.setattr(fused_mod, "fused_bf16_available", lambda: False)
    with torch.inference_mode():
        got = twin(x)
        want = twin.core(model.pad(x), fused=False)[..., :48, :64]
    assert torch.equal(got, want)


def test_only_fp32_and_bf16():
    with pytest.raises(ValueError, match="float32 or bfloat16"):
        FusedLMFN.from_model(trained_like(TINY), torch.float16)


@needs_onednn
def test_shipped_weights_bf16_within_a_level_on_a_photo():
    """The default weights on a real photo (the bundled city example), through restore() as users run it."""
    from lmfn_cli.images import read_image
    from importlib.resources import files

    model = load_model(device="cpu")
    img = read_image(str(files("lmfn_cli.examples") / "blur" / "city.png"))[..., :3]
    fp32 = restore(model, img, precision="fp32", tile=0)
    bf16 = restore(model, img, precision="bf16", tile=0)
    assert (fp32.precision, bf16.precision) == ("fp32", "bf16")
    diff = np.abs(fp32.pixels.astype(int) - bf16.pixels.astype(int))
    assert (diff <= 1).mean() >= 0.999 and diff.any()
    mse = ((fp32.pixels / 255.0 - bf16.pixels / 255.0) ** 2).mean()
    assert 10 * np.log10(1 / mse) >= 50


def test_restore_in_bf16_builds_the_bf16_graph(monkeypatch):
    model = trained_like(TINY, seed=11)
    built = []
    real = FusedLMFN.from_model
    monkeypatch.setattr(inference.FusedLMFN, "from_model", lambda m, *a: built.append(a) or real(m, *a))
    img = natural_like(40, 52)
    done = restore(model, img, precision="bf16", tile=0)
    assert done.precision == "bf16"
    assert built == ([(torch.bfloat16,)] if fused_ops_available() else [])
