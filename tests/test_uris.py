"""Inputs, ground truth and outputs named by URI: file:// on the local disk, s3:// on a local
S3-compatible store (moto's server, the ``s3_store`` fixture). Outputs must be byte-identical to
those of local paths, and nothing partial may ever appear under an output's name."""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path, PurePosixPath

import numpy as np
import pytest
from click.testing import CliRunner

from lmfn_cli import uris
from lmfn_cli.batch import BatchOptions, run_batch
from lmfn_cli.cli import main
from lmfn_cli.errors import ConfigError, NothingToDoError, OutputExistsError
from lmfn_cli.uris import URI, is_uri, location

pafs = pytest.importorskip("pyarrow.fs")


# -- names ----------------------------------------------------------------------------------------


def test_a_uri_has_the_names_of_a_path():
    u = URI("s3://bucket/in//photos/./a.tar.png/")
    assert str(u) == "s3://bucket/in/photos/a.tar.png"
    assert (u.name, u.stem, u.suffix) == ("a.tar.png", "a.tar", ".png")
    assert str(u.parent) == "s3://bucket/in/photos" and str(u.parent.parent.parent) == "s3://bucket/"
    assert str(u.with_name("b.jpg")) == "s3://bucket/in/photos/b.jpg"
    assert str(URI("s3://bucket/out") / PurePosixPath("sub/x.png")) == "s3://bucket/out/sub/x.png"
    assert u.relative_to(URI("s3://bucket/in")) == PurePosixPath("photos/a.tar.png")
    assert u.is_relative_to(URI("s3://bucket/in")) and not u.is_relative_to(URI("s3://other/in"))
    assert not URI("s3://bucket/input").is_relative_to(URI("s3://bucket/in"))
    assert u == URI("S3://bucket/in/photos/a.tar.png") and hash(u) == hash(URI("s3://bucket/in/photos/a.tar.png"))
    assert URI("file:///tmp/x").filesystem()[1] == "/tmp/x"
    with pytest.raises(ConfigError, match=r"'\.\.'"):
        URI("s3://bucket/in/../secret")
    with pytest.raises(ConfigError, match="query"):
        URI("s3://bucket/in?endpoint_override=x")


@pytest.mark.parametrize("text, expected", [("s3://b/k", True), ("gs://b", True), ("file:///tmp/a.png", True),
                                            ("hdfs://nn:8020/x", True), ("C://x", False), ("C:\\x.png", False),
                                            ("photos/a.png", False), ("./s3:/b", False), ("-", False)])
def test_is_uri(text, expected):
    assert is_uri(text) is expected
    assert isinstance(location(text), URI if expected else Path)


def test_an_unknown_scheme_fails_its_input_with_one_line(tmp_path, tiny_model):
    batch = run_batch(["nosuch://host/in/a.png"], tmp_path / "out", BatchOptions(), model=tiny_model)
    with pytest.raises(NothingToDoError):
        list(batch)  # after the record of the input that failed
    [record] = batch.records
    assert record.status == "failed" and "no filesystem for this URI" in record.error


def test_without_pyarrow_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow.fs", None)
    monkeypatch.setattr(uris, "_filesystems", {})
    with pytest.raises(ConfigError, match=r"lmfn\[cloud\]"):
        URI("s3://bucket/x").exists()


# -- file:// on the local engine ----------------------------------------------------------------


def test_file_uris_give_the_bytes_of_local_paths(tmp_path, photos, tiny_model):
    blur, sharp = photos
    local = list(run_batch([str(blur)], tmp_path / "local", BatchOptions(gt_dir=sharp), model=tiny_model))
    batch = run_batch([f"file://{blur}"], f"file://{tmp_path}/by-uri", BatchOptions(gt_dir=f"file://{sharp}"),
                      model=tiny_model)
    by_uri = list(batch)
    assert [(Path(r.input).name, r.status, r.psnr, r.ssim) for r in local] == \
           [(PurePosixPath(r.input).name, r.status, r.psnr, r.ssim) for r in by_uri]
    assert by_uri[0].input == f"file://{blur}/broken.png" and by_uri[0].status == "failed"
    assert all(r.output.startswith(f"file://{tmp_path}/by-uri/") for r in by_uri if r.status == "ok")
    assert sorted(p.name for p in (tmp_path / "by-uri").iterdir()) == sorted(p.name for p in (tmp_path / "local").iterdir())
    for out in (tmp_path / "local").iterdir():
        assert (tmp_path / "by-uri" / out.name).read_bytes() == out.read_bytes(), out.name
    assert batch.summary.scores["psnr"] == pytest.approx(
        np.mean([r.psnr for r in local if r.status == "ok" and r.psnr is not None]), abs=1e-3)


# -- s3:// on a local S3 store --------------------------------------------------------------------


def _put(uri: str, data: bytes) -> None:
    fs, path = URI(uri).filesystem()
    with fs.open_output_stream(path) as f:
        f.write(data)


def _listing(uri: str) -> dict[str, bytes]:
    fs, path = URI(uri).filesystem()
    infos = fs.get_file_info(pafs.FileSelector(path, recursive=True, allow_not_found=True))
    out = {}
    for i in infos:
        if i.type.name == "File":
            with fs.open_input_stream(i.path) as f:
                out[i.path[len(path) + 1:]] = f.read()
    return out


@pytest.fixture
def s3_photos(s3_store, photos, request) -> str:
    """``photos`` uploaded under a prefix of their own: ``s3://BUCKET/TEST/in/`` and ``.../sharp/``."""
    blur, sharp = photos
    prefix = f"s3://{s3_store}/{request.node.name[:40]}-{os.getpid()}"
    for folder, name in ((blur, "in"), (sharp, "sharp")):
        for p in folder.iterdir():
            _put(f"{prefix}/{name}/{p.name}", p.read_bytes())
    return prefix


def test_s3_command_outputs_records_and_reruns(tmp_path, photos, s3_photos, tiny_weights):
    blur, sharp = photos
    runner = CliRunner()
    local = runner.invoke(main, ["deblur", str(blur), "-o", str(tmp_path / "local"), "-w", str(tiny_weights),
                                 "--gt", str(sharp), "--json"])
    res = runner.invoke(main, ["deblur", f"{s3_photos}/in/", "-o", f"{s3_photos}/out/", "-w", str(tiny_weights),
                               "--gt", f"{s3_photos}/sharp", "--json", "--html", str(tmp_path / "r.html")])
    assert res.exit_code == 1 == local.exit_code, res.output
    records = [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
    broken = [r for r in records if r["status"] == "failed"]
    assert [r["input"] for r in broken] == [f"{s3_photos}/in/broken.png"]
    assert f"{s3_photos}/in/broken.png" in res.stderr
    ok = {r["input"].rsplit("/", 1)[1]: r for r in records if r["status"] == "ok"}
    local_ok = {Path(r["input"]).name: r for r in map(json.loads, local.stdout.splitlines()) if r.get("status") == "ok"}
    assert {k: (r["psnr"], r["ssim"]) for k, r in ok.items()} == {k: (r["psnr"], r["ssim"]) for k, r in local_ok.items()}
    stored = _listing(f"{s3_photos}/out")
    assert stored == {p.name: p.read_bytes() for p in (tmp_path / "local").iterdir()}  # no temporary left
    assert (tmp_path / "r.html").stat().st_size > 1000

    # a rerun: outputs are never replaced without --overwrite, and --skip-existing skips them
    _put(f"{s3_photos}/out/p1.png", b"mine")
    again = runner.invoke(main, ["deblur", f"{s3_photos}/in/p1.png", "-o", f"{s3_photos}/out", "-w", str(tiny_weights)])
    assert again.exit_code == 1 and "output exists already" in again.stderr
    assert _listing(f"{s3_photos}/out")["p1.png"] == b"mine"
    skip = runner.invoke(main, ["deblur", f"{s3_photos}/in/p*.png", "-o", f"{s3_photos}/out", "-w", str(tiny_weights),
                                "--skip-existing", "--json"])
    assert skip.exit_code == 0, skip.output
    assert [json.loads(line)["status"] for line in skip.stdout.splitlines() if line.startswith("{")] == ["skipped"] * 4


def test_s3_missing_input_and_pattern_are_one_line_each(s3_photos, tmp_path, tiny_weights):
    res = CliRunner().invoke(main, ["deblur", f"{s3_photos}/in/nothere.png", f"{s3_photos}/in/q*.png",
                                    f"{s3_photos}/in/p0.png", "-o", f"{s3_photos}/o2", "-w", str(tiny_weights)])
    assert res.exit_code == 1
    assert f"{s3_photos}/in/nothere.png: no such file or folder" in res.stderr
    assert f"{s3_photos}/in/q*.png: no files match this pattern" in res.stderr
    assert list(_listing(f"{s3_photos}/o2")) == ["p0.png"]


class _FailingMove:
    """A filesystem whose ``move`` fails after the temporary is written (a crash between the two)."""

    def __init__(self, fs, exc: BaseException):
        self._fs, self._exc = fs, exc

    def move(self, src, dst):
        raise self._exc

    def __getattr__(self, name):
        return getattr(self._fs, name)


@pytest.mark.parametrize("exc", [OSError("the store said no"), KeyboardInterrupt()])
def test_a_write_that_fails_leaves_neither_output_nor_temporary(s3_store, monkeypatch, exc):
    dest = URI(f"s3://{s3_store}/fail-{type(exc).__name__}/a.png")
    fs, prefix = uris._filesystem(dest.root)
    monkeypatch.setitem(uris._filesystems, dest.root, (_FailingMove(fs, exc), prefix))
    with pytest.raises(type(exc)):
        uris.write_bytes(dest, b"data")
    monkeypatch.undo()
    assert not dest.exists() and _listing(str(dest.parent)) == {}


def test_write_bytes_refuses_to_replace_unless_asked(s3_store):
    dest = URI(f"s3://{s3_store}/replace/a.png")
    uris.write_bytes(dest, b"first")
    with pytest.raises(OutputExistsError):
        uris.write_bytes(dest, b"second")
    assert dest.read_bytes() == b"first"
    uris.write_bytes(dest, b"second", overwrite=True)
    assert _listing(str(dest.parent)) == {"a.png": b"second"}


def test_temporaries_of_dead_runs_are_removed_and_live_ones_kept(s3_store):
    from lmfn_cli.files import _host

    folder = URI(f"s3://{s3_store}/stale")
    dead = folder / f".a.png.lmfn-{_host()}-999999999.ab12.part"
    live = folder / f".a.png.lmfn-{_host()}-{os.getpid()}.cd34.part"
    other_host = folder / f".a.png.lmfn-not-{socket.gethostname()[:10]}x-999999999.ef56.part"
    for u in (dead, live, other_host):
        _put(str(u), b"half")
    assert uris.remove_stale_temporaries([folder / "a.png"]) == [dead]
    assert sorted(_listing(str(folder))) == sorted([live.name, other_host.name])
