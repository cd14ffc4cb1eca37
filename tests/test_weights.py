import pytest
import torch
from safetensors.torch import save_file

from conftest import TINY
from lmfn_cli import LMFN, load_model, read_weights, save_weights
from lmfn_cli.errors import NoWeightsError, WeightsError


def test_round_trip_gives_the_same_network(tmp_path, tiny_model):
    path = save_weights(tiny_model, tmp_path / "w.safetensors", variant="tiny", metadata={"note": "x"})
    loaded = load_model(path)
    assert loaded.config == TINY
    assert not loaded.training
    x = torch.rand(1, 3, 50, 70)
    with torch.no_grad():
        assert torch.equal(loaded(x), tiny_model(x))
    _, _, meta = read_weights(path)
    assert meta["variant"] == "tiny" and meta["note"] == "x" and meta["format"] == "lmfn-weights/1"


def test_fp16_storage_loads_as_fp32(tmp_path, tiny_model):
    path = save_weights(tiny_model, tmp_path / "h.safetensors", dtype=torch.float16)
    loaded = load_model(path)
    assert next(loaded.parameters()).dtype == torch.float32
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(loaded(x), tiny_model(x), atol=1e-2)


def test_save_is_atomic_and_leaves_no_temporary_files(tmp_path, tiny_model):
    save_weights(tiny_model, tmp_path / "a.safetensors")
    assert [p.name for p in tmp_path.iterdir()] == ["a.safetensors"]


def test_pickle_checkpoints_are_refused(tmp_path, tiny_model):
    path = tmp_path / "model.pth"
    torch.save(tiny_model.state_dict(), path)
    with pytest.raises(WeightsError, match="pickle") as info:
        load_model(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("cut", [0, 5, 200])
def test_truncated_or_empty_files_are_refused(tmp_path, tiny_weights, cut):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(tiny_weights.read_bytes()[:cut])
    with pytest.raises(WeightsError) as info:
        load_model(bad)
    assert str(bad) in str(info.value)


def test_a_file_that_is_not_lmfn_weights_is_refused(tmp_path):
    other = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(3)}, other)
    with pytest.raises(WeightsError, match="no LMFN config"):
        load_model(other)


def test_tensors_that_do_not_match_the_config_are_refused(tmp_path, tiny_model):
    state = {k: v.contiguous() for k, v in tiny_model.state_dict().items()}
    big_cfg = LMFN(TINY.__class__(enc_channels=16, dec_channels=8, esa_channels=4, num_blocks=2)).config
    path = tmp_path / "mismatch.safetensors"
    save_file(state, path, metadata={"config": big_cfg.to_json()})
    with pytest.raises(WeightsError, match="do not match"):
        load_model(path)
    state.pop("reconstruct.0.bias")
    save_file(state, path, metadata={"config": TINY.to_json()})
    with pytest.raises(WeightsError, match="missing 1 tensors"):
        load_model(path)


def test_invalid_config_metadata_is_refused(tmp_path, tiny_model):
    path = tmp_path / "badcfg.safetensors"
    save_file({k: v.contiguous() for k, v in tiny_model.state_dict().items()}, path, metadata={"config": "{not json"})
    with pytest.raises(WeightsError, match="invalid LMFN config"):
        load_model(path)


def test_missing_file_and_no_default(tmp_path, monkeypatch):
    from lmfn_cli import weights

    with pytest.raises(WeightsError, match="no such weights file"):
        load_model(tmp_path / "nope.safetensors")
    # An installation without its bundled file and an empty cache: the error says what to do.
    monkeypatch.setattr(weights, "bundled_path", lambda entry=None: None)
    monkeypatch.setenv("LMFN_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(NoWeightsError, match="download-weights.*--weights") as info:
        load_model(None)
    assert str(tmp_path / "cache") in str(info.value)


def test_no_path_means_the_bundled_default():
    model = load_model(None)
    assert model.config.global_residual and model.config.num_blocks == 4


def test_a_header_length_that_looks_like_a_pickle_byte_still_loads(tmp_path, tiny_model):
    # The first byte of a safetensors file is the low byte of its header length: it can be 0x80.
    for pad in range(300):
        path = save_weights(tiny_model, tmp_path / "w.safetensors", metadata={"pad": "x" * pad})
        if path.read_bytes()[0] == 0x80:
            break
    else:
        pytest.fail("no padding gave a 0x80 first byte")
    assert load_model(path).config == TINY
