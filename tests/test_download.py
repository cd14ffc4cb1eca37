"""Named weights: registry, cache, verified downloads from a local HTTP server with injected faults."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import TINY, natural_like
from lmfn_cli import weights as W
from lmfn_cli.cli import main
from lmfn_cli.errors import DownloadError, NoWeightsError, UnknownWeightsError, WeightsError
from lmfn_cli.images import write_image

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def server_path() -> str:
    """The local file server (conftest.py) serves its files under /weights/."""
    return "/weights/"


@pytest.fixture
def entry(tiny_weights) -> W.WeightsEntry:
    data = tiny_weights.read_bytes()
    return W.WeightsEntry(name="tiny-test", filename="tiny-test.safetensors", sha256=hashlib.sha256(data).hexdigest(),
                          size=len(data), licence="test", training_data="none", config=TINY, description="a test")


@pytest.fixture
def env(monkeypatch, tmp_path, server, entry, tiny_weights):
    """A cache in tmp_path, the registry holding only the test entry, served by the local server."""
    server.files[entry.filename] = tiny_weights.read_bytes()
    cache = tmp_path / "cache"
    monkeypatch.setenv("LMFN_CACHE_DIR", str(cache))
    monkeypatch.setenv("LMFN_WEIGHTS_URL", server.base_url)
    monkeypatch.delenv("LMFN_OFFLINE", raising=False)
    monkeypatch.setattr(W, "REGISTRY", {entry.name: entry})
    monkeypatch.setattr(W, "DEFAULT_NAME", entry.name)
    return cache


def _download(entry, dest, server, **kw):
    return W.download(entry, dest, base_url=server.base_url, backoff=0, **kw)


# --- the registry ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(W.REGISTRY))
def test_registry_entries_match_the_files_in_weights(name):
    from lmfn_cli import read_weights

    entry = W.REGISTRY[name]
    path = ROOT / "weights" / entry.filename
    assert entry.sha256 == W.file_sha256(path)
    assert entry.size == path.stat().st_size
    config, _, meta = read_weights(path)
    assert entry.config == config
    assert meta["variant"] == "lmfn-residual"
    assert entry.licence and entry.training_data
    assert W.url_for(entry, "https://example.org/x") == "https://example.org/x/" + entry.filename


def test_the_defaults_are_in_the_registry_and_in_setup_py():
    from lmfn_cli.kernel_method import NONBLIND_NAME

    setup_py, manifest = (ROOT / "setup.py").read_text(), (ROOT / "MANIFEST.in").read_text()
    bundled = setup_py.split("BUNDLED_WEIGHTS = (", 1)[1].split(")", 1)[0]
    for name in (W.DEFAULT_NAME, NONBLIND_NAME):  # the blind default and the kernel method's stage
        assert name in W.REGISTRY
        assert f'"{W.REGISTRY[name].filename}"' in bundled
        assert f"include weights/{W.REGISTRY[name].filename}" in manifest
        W.check_file(W.REGISTRY[name], ROOT / "weights" / W.REGISTRY[name].filename)


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(UnknownWeightsError, match=W.DEFAULT_NAME):
        W.get_entry("no-such-weights")


def test_cache_dir_and_base_url_come_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("LMFN_CACHE_DIR", raising=False)
    monkeypatch.delenv("LMFN_WEIGHTS_URL", raising=False)
    from platformdirs import user_cache_path

    assert W.cache_dir() == user_cache_path("lmfn", appauthor=False) / "weights"
    assert W.base_url() == W.DEFAULT_BASE_URL
    monkeypatch.setenv("LMFN_CACHE_DIR", str(tmp_path / "c"))
    monkeypatch.setenv("LMFN_WEIGHTS_URL", "http://mirror.invalid/lmfn")
    assert W.cache_dir() == tmp_path / "c"
    entry = W.REGISTRY[W.DEFAULT_NAME]
    assert W.cached_path(entry) == tmp_path / "c" / entry.filename
    assert W.url_for(entry) == "http://mirror.invalid/lmfn/" + entry.filename


# --- downloads -----------------------------------------------------------------------------------


def test_download_streams_verifies_and_renames(server, entry, tiny_weights, tmp_path):
    server.files[entry.filename] = tiny_weights.read_bytes()
    seen = []
    path = _download(entry, tmp_path / "c", server, on_progress=lambda done, total: seen.append((done, total)))
    assert path == tmp_path / "c" / entry.filename
    assert path.read_bytes() == tiny_weights.read_bytes()
    assert [p.name for p in path.parent.iterdir()] == [entry.filename]  # no .part left
    assert seen[-1] == (entry.size, entry.size)
    assert len(server.requests) == 1 and "range" not in server.requests[0]
    assert server.requests[0]["path"] == "/weights/" + entry.filename


def test_a_500_is_retried(server, entry, tiny_weights, tmp_path):
    server.files[entry.filename] = tiny_weights.read_bytes()
    server.faults = ["500", "500"]
    path = _download(entry, tmp_path, server)
    assert path.read_bytes() == tiny_weights.read_bytes()
    assert len(server.requests) == 3


def test_too_many_500s_give_up_with_a_clear_error(server, entry, tiny_weights, tmp_path):
    server.files[entry.filename] = tiny_weights.read_bytes()
    server.faults = ["500"] * 5
    with pytest.raises(DownloadError, match="gave up after 3 attempts: HTTP 500"):
        _download(entry, tmp_path, server, retries=2)
    assert not (tmp_path / entry.filename).exists()


def test_a_dropped_connection_resumes_with_range(server, entry, tiny_weights, tmp_path):
    server.files[entry.filename] = tiny_weights.read_bytes()
    assert entry.size > W.CHUNK_SIZE + 10_000
    server.faults = [("drop", W.CHUNK_SIZE + 10_000)]  # the first chunk arrives whole, the second does not
    path = _download(entry, tmp_path, server)
    assert path.read_bytes() == tiny_weights.read_bytes()
    assert len(server.requests) == 2
    assert "range" not in server.requests[0] and server.requests[1]["range"] == f"bytes={W.CHUNK_SIZE}-"


def test_a_truncated_body_is_resumed(server, entry, tiny_weights, tmp_path):
    server.files[entry.filename] = tiny_weights.read_bytes()
    server.faults = [("short", 700), ("short", 300)]  # well-formed responses, each too short
    path = _download(entry, tmp_path, server)
    assert path.read_bytes() == tiny_weights.read_bytes()
    assert [r.get("range") for r in server.requests] == [None, "bytes=700-", "bytes=1000-"]


def test_a_body_that_stays_short_fails_and_nothing_is_cached(server, entry, tiny_weights, tmp_path):
    server.files[entry.filename] = tiny_weights.read_bytes()[:-10]  # the server's copy is truncated
    with pytest.raises(DownloadError, match=f"ended after {entry.size - 10} of {entry.size} bytes"):
        _download(entry, tmp_path, server, retries=2)
    assert not (tmp_path / entry.filename).exists()


def test_a_partial_file_from_an_earlier_run_is_resumed(server, entry, tiny_weights, tmp_path):
    data = tiny_weights.read_bytes()
    server.files[entry.filename] = data
    (tmp_path / f"{entry.filename}.part").write_bytes(data[:1234])
    path = _download(entry, tmp_path, server)
    assert path.read_bytes() == data
    assert server.requests[0]["range"] == "bytes=1234-"


def test_a_hash_mismatch_leaves_nothing_behind(server, entry, tiny_weights, tmp_path):
    server.files[entry.filename] = tiny_weights.read_bytes()
    wrong = replace(entry, sha256="0" * 64)
    with pytest.raises(DownloadError) as info:
        _download(wrong, tmp_path / "c", server)
    message = str(info.value)
    assert "SHA-256 mismatch" in message and "0" * 64 in message and entry.sha256 in message
    assert server.base_url + entry.filename in message
    assert list((tmp_path / "c").iterdir()) == []


def test_a_404_names_the_url(server, entry, tmp_path):
    with pytest.raises(DownloadError, match="404") as info:
        _download(entry, tmp_path / "c", server)
    assert server.base_url + entry.filename in str(info.value)
    assert list((tmp_path / "c").iterdir()) == []
    assert len(server.requests) == 1  # a 404 is not retried


def test_a_server_that_ignores_range_is_a_clear_error(server, entry, tiny_weights, tmp_path):
    server.files[entry.filename] = tiny_weights.read_bytes()
    server.faults = [("short", 1000), "ignore-range"]
    with pytest.raises(DownloadError, match="ignores HTTP Range"):
        _download(entry, tmp_path / "c", server)
    assert list((tmp_path / "c").iterdir()) == []  # the partial file is deleted, so the next run starts clean
    assert server.requests[1]["range"] == "bytes=1000-"


def test_a_server_that_sends_too_much_is_stopped(server, entry, tiny_weights, tmp_path):
    server.files[entry.filename] = tiny_weights.read_bytes() + b"x" * 100_000
    with pytest.raises(DownloadError, match="more than the expected"):
        _download(entry, tmp_path / "c", server)
    assert list((tmp_path / "c").iterdir()) == []


def test_a_file_that_is_not_weights_is_not_cached(server, tmp_path):
    data = b"\x00" * 500
    entry = W.WeightsEntry(name="junk", filename="junk.safetensors", sha256=hashlib.sha256(data).hexdigest(),
                           size=len(data), licence="", training_data="", config=TINY, description="")
    server.files[entry.filename] = data
    with pytest.raises(DownloadError, match="not usable LMFN weights"):
        _download(entry, tmp_path, server)
    assert list(tmp_path.iterdir()) == []


def test_offline_makes_no_request_and_names_the_path(env, server, entry, monkeypatch):
    monkeypatch.setenv("LMFN_OFFLINE", "1")
    with pytest.raises(NoWeightsError) as info:
        W.fetch(entry.name)
    assert str(env / entry.filename) in str(info.value)
    assert server.base_url + entry.filename in str(info.value)
    with pytest.raises(NoWeightsError):
        W.resolve_weights(name=entry.name)
    assert server.requests == []


# --- fetch and resolution --------------------------------------------------------------------------


def test_fetch_uses_a_verified_cache_and_replaces_a_bad_one(env, server, entry, tiny_weights):
    path = W.fetch(entry.name)
    assert path == env / entry.filename and len(server.requests) == 1
    assert W.fetch(entry.name) == path and len(server.requests) == 1  # no network
    path.write_bytes(b"garbage")
    assert W.fetch(entry.name).read_bytes() == tiny_weights.read_bytes()
    assert len(server.requests) == 2
    W.fetch(entry.name, force=True)
    assert len(server.requests) == 3


def test_resolution_order_and_what_is_logged(env, server, entry, tiny_weights, monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="lmfn_cli.weights")
    assert W.resolve_weights(tiny_weights) == tiny_weights
    assert f"weights: {tiny_weights} (--weights)" in caplog.text
    with pytest.raises(Exception, match="not both"):
        W.resolve_weights(tiny_weights, entry.name)
    assert W.resolve_weights(name=entry.name) == env / entry.filename  # downloaded
    assert f"weights: {entry.name} from the cache ({env / entry.filename})" in caplog.text
    with pytest.raises(UnknownWeightsError):
        W.resolve_weights(name="nope")
    # Neither given: the bundled default; without one, the cached default; else a clear error.
    monkeypatch.setattr(W, "bundled_path", lambda e=None: tiny_weights)
    assert W.resolve_weights() == tiny_weights
    assert f"weights: bundled default {entry.name} ({tiny_weights})" in caplog.text
    monkeypatch.setattr(W, "bundled_path", lambda e=None: None)
    assert W.resolve_weights() == env / entry.filename
    (env / entry.filename).unlink()
    with pytest.raises(NoWeightsError, match="download-weights"):
        W.resolve_weights()


def test_the_bundled_default_is_found_and_verified():
    entry = W.REGISTRY[W.DEFAULT_NAME]
    path = W.bundled_path()
    assert path is not None and path.name == entry.filename
    W.check_file(entry, path)
    assert W.resolve_weights() == path


def test_check_file_refuses_a_tampered_file(tmp_path, entry, tiny_weights):
    W.check_file(entry, tiny_weights)
    data = bytearray(tiny_weights.read_bytes())
    data[-1] ^= 1
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="does not match"):
        W.check_file(entry, bad)
    bad.write_bytes(bytes(data[:-1]))
    with pytest.raises(WeightsError, match="bytes"):
        W.check_file(entry, bad)


# --- the command line ------------------------------------------------------------------------------


@pytest.fixture
def runner():
    return CliRunner()


def test_new_commands_have_examples(runner):
    for cmd in (["download-weights"], ["weights"], ["weights", "list"], ["weights", "path"], ["weights", "verify"]):
        result = runner.invoke(main, [*cmd, "--help"])
        assert result.exit_code == 0 and "Example" in result.output, cmd


def test_cli_download_weights_end_to_end(runner, env, server, entry):
    result = runner.invoke(main, ["download-weights"])  # no names: the default
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(env / entry.filename)
    assert "downloaded tiny-test" in result.stderr and len(server.requests) == 1
    result = runner.invoke(main, ["download-weights", entry.name])
    assert result.exit_code == 0 and "in the cache already" in result.stderr and len(server.requests) == 1
    result = runner.invoke(main, ["download-weights", entry.name, "--force"])
    assert result.exit_code == 0 and len(server.requests) == 2
    assert result.stdout.strip() == str(env / entry.filename)


def test_cli_download_errors(runner, env, server, entry, monkeypatch):
    result = runner.invoke(main, ["download-weights", "nope"])
    assert result.exit_code == 2 and "tiny-test" in result.stderr
    monkeypatch.setattr(W, "REGISTRY", {entry.name: replace(entry, sha256="f" * 64)})
    result = runner.invoke(main, ["download-weights"])
    assert result.exit_code == 3 and "SHA-256 mismatch" in result.stderr
    assert not (env / entry.filename).exists()
    monkeypatch.setenv("LMFN_OFFLINE", "1")
    n = len(server.requests)
    result = runner.invoke(main, ["download-weights"])
    assert result.exit_code == 3 and str(env / entry.filename) in result.stderr
    assert len(server.requests) == n


def test_cli_weights_list_path_verify(runner, env, server, entry):
    rows = [json.loads(line) for line in runner.invoke(main, ["weights", "list", "--json"]).stdout.splitlines()]
    assert [(r["name"], r["size"], r["cached"], r["default"], r["bundled"]) for r in rows] == [
        (entry.name, entry.size, None, True, None)]
    assert rows[0]["url"] == server.base_url + entry.filename and rows[0]["sha256"] == entry.sha256
    result = runner.invoke(main, ["weights", "path", entry.name])
    assert result.exit_code == 3 and f"lmfn download-weights {entry.name}" in result.stderr
    assert runner.invoke(main, ["weights", "verify", entry.name]).exit_code == 3
    assert runner.invoke(main, ["download-weights", "-q"]).exit_code == 0
    table = runner.invoke(main, ["weights", "list"])
    assert table.exit_code == 0 and entry.name in table.stdout
    rows = [json.loads(line) for line in runner.invoke(main, ["weights", "list", "--json"]).stdout.splitlines()]
    assert rows[0]["cached"] == str(env / entry.filename)
    result = runner.invoke(main, ["weights", "path"])
    assert result.exit_code == 0 and result.stdout.strip() == str(env / entry.filename)
    result = runner.invoke(main, ["weights", "verify"])
    assert result.exit_code == 0 and result.stdout.strip() == f"ok {entry.name} {env / entry.filename}"
    (env / entry.filename).write_bytes(b"x" * entry.size)
    result = runner.invoke(main, ["weights", "verify"])
    assert result.exit_code == 1 and result.stdout.startswith(f"bad {entry.name}") and "SHA-256" in result.stdout
    assert runner.invoke(main, ["weights", "path", "nope"]).exit_code == 2


def test_deblur_with_a_name_downloads_then_uses_the_cache(runner, env, server, entry, tmp_path):
    write_image(tmp_path / "a.png", natural_like(24, 30))
    args = ["-v", "deblur", str(tmp_path / "a.png"), "-o", str(tmp_path / "out"), "-m", entry.name, "--device", "cpu"]
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "a.png").exists() and len(server.requests) == 1
    assert f"weights: {entry.name} from the cache ({env / entry.filename})" in result.stderr
    result = runner.invoke(main, [*args, "--overwrite"])
    assert result.exit_code == 0 and len(server.requests) == 1
    result = runner.invoke(main, [*args[1:], "--overwrite", "-w", str(env / entry.filename)])
    assert result.exit_code == 2 and "not both" in result.stderr
    result = runner.invoke(main, [*args[1:4], "-o", str(tmp_path / "o2"), "-m", "nope"])
    assert result.exit_code == 2 and entry.name in result.stderr


def test_deblur_with_a_name_offline_and_not_cached_exits_3(runner, env, server, entry, tmp_path, monkeypatch):
    monkeypatch.setenv("LMFN_OFFLINE", "1")
    write_image(tmp_path / "a.png", natural_like(24, 30))
    result = runner.invoke(main, ["deblur", str(tmp_path / "a.png"), "-o", str(tmp_path / "out"), "-m", entry.name])
    assert result.exit_code == 3 and str(env / entry.filename) in result.stderr
    assert server.requests == [] and not (tmp_path / "out" / "a.png").exists()


def test_the_default_name_uses_the_bundled_copy_without_network(monkeypatch, tmp_path, caplog):
    monkeypatch.setenv("LMFN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("LMFN_WEIGHTS_URL", "http://127.0.0.1:9/unreachable/")  # any request would fail
    caplog.set_level(logging.INFO, logger="lmfn_cli.weights")
    path = W.resolve_weights(name=W.DEFAULT_NAME)
    assert path == W.bundled_path() and f"weights: {W.DEFAULT_NAME}, bundled ({path})" in caplog.text
    assert not (tmp_path / "cache").exists()


def test_a_truncated_cache_entry_is_replaced_only_by_a_verified_download(runner, env, server, entry, tiny_weights, tmp_path):
    env.mkdir(parents=True)
    cached = env / entry.filename
    cached.write_bytes(tiny_weights.read_bytes()[:100])  # truncated by a crash or a full disk
    server.files[entry.filename] = b"x" * entry.size  # the server now serves something wrong
    from conftest import natural_like
    from lmfn_cli.images import write_image

    write_image(tmp_path / "x.png", natural_like(16, 16, seed=0))
    result = runner.invoke(main, ["deblur", str(tmp_path / "x.png"), "-o", str(tmp_path / "o"), "-m", entry.name])
    assert result.exit_code == 3 and str(cached) in result.stderr  # the bad entry is named
    assert cached.read_bytes() == tiny_weights.read_bytes()[:100]  # not replaced by a bad download
    assert not (tmp_path / "o" / "x.png").exists()
    server.files[entry.filename] = tiny_weights.read_bytes()
    Path(f"{cached}.part").unlink(missing_ok=True)
    result = runner.invoke(main, ["download-weights", entry.name])
    assert result.exit_code == 0 and "downloading it again" in result.stderr and str(cached) in result.stderr
    assert cached.read_bytes() == tiny_weights.read_bytes()


def test_an_unwritable_cache_is_a_clear_error_naming_it(runner, env, server, entry, tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv("LMFN_CACHE_DIR", str(blocker / "cache"))
    result = runner.invoke(main, ["download-weights", entry.name])
    assert result.exit_code == 3, result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("lmfn: error:")]
    assert len(lines) == 1 and str(blocker) in lines[0] and "Traceback" not in result.output
