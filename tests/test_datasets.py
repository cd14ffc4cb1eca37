"""Benchmark datasets: verified downloads from a local HTTP server, safe extraction, layouts, pairing.

No network: tiny archives in the real layouts are built here and served on 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lmfn_cli import datasets as D
from lmfn_cli.archives import MARKER, extract_archive, is_extracted
from lmfn_cli.download import CHUNK_SIZE, download_file
from lmfn_cli.errors import ArchiveError, DatasetDownloadError, DatasetError, FetchError

@pytest.fixture
def server_path() -> str:
    """The local file server (conftest.py) serves its files under /data/."""
    return "/data/"


# --- tiny datasets in the real layouts --------------------------------------------------------------


def _png(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


FRAMES = {1: 3, 2: 10}  # trajectory -> number of sharp frames (10: frame 10 must sort after 2)


def kohler_archives() -> dict[str, bytes]:
    """A mini Köhler: image 1, trajectories 1 and 2; sharp frames are shifted, gain-scaled copies of
    one picture and the blurry photo is their mean, as in the real recording."""
    base = np.random.default_rng(0).integers(0, 200, (16, 26, 3)).astype(np.float32)
    ground_truth, blurry = {}, {}
    for j, n in FRAMES.items():
        frames = [np.clip(base[:, k : k + 16] * (1 + 0.01 * k), 0, 255).astype(np.uint8) for k in range(n)]
        for k, frame in enumerate(frames, 1):
            ground_truth[f"Image1/Kernel{j}/GroundTruth1_{j}_{k}.png"] = _png(frame)
        blurry[f"Blurry1_{j}.png"] = _png(np.mean(frames, axis=0).astype(np.uint8))
    return {"GroundTruth_pngs_Image1.zip": _zip(ground_truth), "BlurryImages.zip": _zip(blurry)}


def kohler_source(files: dict[str, bytes], **wrong: str) -> D.DatasetSource:
    """``D.KOHLER`` with the test archives: one checked by MD5 (as the real ones), one by SHA-256."""
    gt, blur = "GroundTruth_pngs_Image1.zip", "BlurryImages.zip"
    return replace(D.KOHLER, archives=(D.Archive(gt, md5=wrong.get("md5", _md5(files[gt]))),
                                       D.Archive(blur, sha256=_sha256(files[blur]))))


def gopro_zip(prefix: str = "") -> bytes:
    """A mini GOPRO_Large.zip: train/ and test/ with one sequence each, 2 frames."""
    img = np.random.default_rng(1).integers(0, 255, (8, 8, 3), dtype=np.uint8)
    members = {}
    for split, seq in (("train", "GOPR0001_11_00"), ("test", "GOPR0384_11_00")):
        for variant in ("blur", "blur_gamma", "sharp"):
            for frame in ("000001", "000002"):
                members[f"{prefix}{split}/{seq}/{variant}/{frame}.png"] = _png(img)
    return _zip(members)


@pytest.fixture
def env(monkeypatch, tmp_path, server):
    """A data dir in tmp_path; the Köhler entry points at the local server's mini archives."""
    files = kohler_archives()
    server.files.update(files)
    data = tmp_path / "data"
    monkeypatch.setenv("LMFN_DATA_DIR", str(data))
    monkeypatch.setenv("LMFN_KOHLER_URL", server.base_url)
    for var in ("LMFN_OFFLINE", "LMFN_GOPRO_URL", "LMFN_GOPRO_SHA256"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(D, "KOHLER", kohler_source(files))
    return data


def _files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if not p.is_dir()) if folder.exists() else []


# --- the data dir ------------------------------------------------------------------------------------


def test_data_dir_comes_from_the_environment(monkeypatch, tmp_path):
    from platformdirs import user_data_path

    monkeypatch.delenv("LMFN_DATA_DIR", raising=False)
    assert D.data_dir() == user_data_path("lmfn", appauthor=False) / "datasets"
    monkeypatch.setenv("LMFN_DATA_DIR", str(tmp_path / "d"))
    assert D.data_dir() == tmp_path / "d"


def test_the_kohler_registry_is_what_deepinv_publishes():
    assert [a.filename for a in D.KOHLER.archives] == [
        *(f"GroundTruth_pngs_Image{i}.zip" for i in range(1, 5)), "BlurryImages.zip"]
    assert all(a.md5 and len(a.md5) == 32 and a.sha256 is None for a in D.KOHLER.archives)
    assert D.KOHLER.url_for(D.KOHLER.archives[-1], "") == \
        "http://people.kyb.tuebingen.mpg.de/rolfk/BenchmarkECCV2012/BlurryImages.zip"


# --- Köhler: download, verify, extract, read -------------------------------------------------------


def test_fetch_kohler_downloads_verifies_extracts_and_reads(env, server, monkeypatch):
    seen = []
    root = D.fetch_kohler(on_progress=lambda name, done, total: seen.append((name, done, total)), backoff=0)
    assert root == env / "kohler" and is_extracted(root)
    assert [r["path"] for r in server.requests] == [
        "/data/GroundTruth_pngs_Image1.zip", "/data/BlurryImages.zip"]  # LMFN_KOHLER_URL was used
    sizes = {name: len(data) for name, data in server.files.items()}
    assert {(n, d, t) for n, d, t in seen if d == t} == {(n, s, s) for n, s in sizes.items()}
    assert not (env / "downloads").exists()  # archives deleted once extracted

    items = D.kohler_items(root)
    assert [(i.image, i.trajectory, len(i.sharp)) for i in items] == [(1, 1, 3), (1, 2, 10)]
    assert items[0].blurry == root / "Blurry1_1.png" and items[0].name == "Blurry1_1"
    assert [p.name for p in items[1].sharp] == [f"GroundTruth1_2_{k}.png" for k in range(1, 11)]
    assert items[1].sharp[0] == root / "Image1" / "Kernel2" / "GroundTruth1_2_1.png"
    assert items[0].middle.name == "GroundTruth1_1_2.png" and items[1].middle.name == "GroundTruth1_2_5.png"

    assert D.fetch_kohler() == root and len(server.requests) == 2  # complete: no network
    monkeypatch.setenv("LMFN_OFFLINE", "1")
    assert D.fetch_kohler() == root


def test_a_base_url_and_a_source_can_be_given(env, server, tmp_path, monkeypatch):
    monkeypatch.setenv("LMFN_KOHLER_URL", "http://127.0.0.1:9/unreachable/")
    root = D.fetch_kohler(base_url=server.base_url, source=D.KOHLER, backoff=0, keep_archives=True)
    assert len(D.kohler_items(root)) == 2
    assert sorted(p.name for p in (env / "downloads" / "kohler").iterdir()) == sorted(server.files)


def test_a_checksum_mismatch_leaves_nothing_in_the_data_dir(env, server, monkeypatch):
    monkeypatch.setattr(D, "KOHLER", kohler_source(server.files, md5="0" * 32))
    with pytest.raises(DatasetDownloadError) as info:
        D.fetch_kohler(backoff=0)
    message = str(info.value)
    assert "\n" not in message and "MD5 mismatch" in message
    assert "0" * 32 in message and _md5(server.files["GroundTruth_pngs_Image1.zip"]) in message
    assert server.base_url + "GroundTruth_pngs_Image1.zip" in message
    assert list(env.rglob("*")) == []  # no part file, no empty folders, no dataset
    assert isinstance(info.value, DatasetError) and isinstance(info.value, FetchError)


def test_a_dropped_connection_is_resumed(env, server):
    server.faults = [("drop", 100)]
    root = D.fetch_kohler(backoff=0)
    assert len(D.kohler_items(root)) == 2 and len(server.requests) == 3


def test_a_truncated_transfer_fails_clearly_and_nothing_is_extracted(env, server, tmp_path):
    server.faults = [("drop", 100)] * 10  # fewer bytes than Content-Length, then the connection closes
    with pytest.raises(DatasetDownloadError, match="gave up after 3 attempts: connection failed after") as info:
        D.fetch_kohler(backoff=0, retries=2)
    assert server.base_url + "GroundTruth_pngs_Image1.zip" in str(info.value)
    assert not (env / "kohler").exists() and list(env.glob(".kohler*")) == []
    assert [p.name for p in _files_under(env)] == ["GroundTruth_pngs_Image1.zip.part"]  # kept to resume
    server.faults = []
    assert len(D.kohler_items(D.fetch_kohler(backoff=0))) == 2  # the next run completes it
    assert list(env.iterdir()) == [env / "kohler"]


def test_an_existing_unfinished_folder_is_not_overwritten(env, server):
    (env / "kohler").mkdir(parents=True)
    (env / "kohler" / "mine.txt").write_text("keep")
    with pytest.raises(DatasetError, match="not a complete extraction"):
        D.fetch_kohler(backoff=0)
    assert server.requests == [] and (env / "kohler" / "mine.txt").read_text() == "keep"


def test_offline_names_the_folder_and_uses_archives_put_there(env, server, monkeypatch):
    monkeypatch.setenv("LMFN_OFFLINE", "1")
    with pytest.raises(DatasetError) as info:
        D.fetch_kohler()
    message = str(info.value)
    downloads = env / "downloads" / "kohler"
    assert "LMFN_OFFLINE" in message and str(downloads) in message and "BlurryImages.zip" in message
    assert server.base_url + "BlurryImages.zip" in message and "pass" in message
    assert server.requests == [] and not (env / "kohler").exists()

    downloads.mkdir(parents=True)
    (downloads / "BlurryImages.zip").write_bytes(b"not the archive")
    (downloads / "GroundTruth_pngs_Image1.zip").write_bytes(server.files["GroundTruth_pngs_Image1.zip"])
    with pytest.raises(DatasetError, match="replace it"):
        D.fetch_kohler()
    (downloads / "BlurryImages.zip").write_bytes(server.files["BlurryImages.zip"])
    root = D.fetch_kohler()
    assert len(D.kohler_items(root)) == 2 and server.requests == []


def test_a_hostile_archive_from_the_server_extracts_nothing(env, server, tmp_path, monkeypatch):
    server.files["BlurryImages.zip"] = _zip({"Blurry1_1.png": b"x", "../../evil.png": b"x"})
    monkeypatch.setattr(D, "KOHLER", kohler_source(server.files))
    with pytest.raises(ArchiveError, match="evil.png"):
        D.fetch_kohler(backoff=0)
    assert not (env / "kohler").exists() and list(env.glob(".kohler*")) == []
    assert [p for p in tmp_path.rglob("*evil*")] == []


def test_kohler_items_explains_what_is_missing(tmp_path):
    with pytest.raises(DatasetError, match="no such folder"):
        D.kohler_items(tmp_path / "nope")
    with pytest.raises(DatasetError, match="no Köhler blurry images"):
        D.kohler_items(tmp_path)
    (tmp_path / "Blurry2_3.png").write_bytes(b"")
    with pytest.raises(DatasetError, match="Blurry2_3.png has no GroundTruth2_3_K.png"):
        D.kohler_items(tmp_path)
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "Blurry2_3.png").write_bytes(b"")
    with pytest.raises(DatasetError, match="second copy"):
        D.kohler_items(tmp_path)


# --- GoPro ---------------------------------------------------------------------------------------------


def test_fetch_gopro_defaults_to_the_pinned_mirror_and_its_checksum(env, monkeypatch):
    seen = {}

    def fake_fetch(source, **kwargs):
        seen["archive"] = source.archives[0]
        return env / "gopro"

    monkeypatch.setattr(D, "fetch_dataset", fake_fetch)
    D.fetch_gopro()
    assert seen["archive"].url == D.GOPRO_URL and seen["archive"].sha256 == D.GOPRO_SHA256
    assert "/resolve/" in D.GOPRO_URL and "/main/" not in D.GOPRO_URL  # a pinned revision, not a moving branch


def test_fetch_gopro_another_url_needs_its_own_checksum(env, server, monkeypatch):
    monkeypatch.setenv("LMFN_GOPRO_URL", server.base_url + "GOPRO_Large.zip")
    with pytest.raises(DatasetError, match="LMFN_GOPRO_SHA256 is missing"):
        D.fetch_gopro()
    monkeypatch.setenv("LMFN_GOPRO_SHA256", "abc")
    with pytest.raises(DatasetError, match="not a SHA-256"):
        D.fetch_gopro()
    assert server.requests == []


def test_fetch_gopro_from_a_configured_url(env, server, monkeypatch):
    data = gopro_zip()
    server.files["GOPRO_Large.zip"] = data
    monkeypatch.setenv("LMFN_GOPRO_URL", server.base_url + "GOPRO_Large.zip")
    monkeypatch.setenv("LMFN_GOPRO_SHA256", "f" * 64)
    with pytest.raises(DatasetDownloadError, match="SHA-256 mismatch"):
        D.fetch_gopro(backoff=0)
    assert list(env.rglob("*")) == []
    monkeypatch.setenv("LMFN_GOPRO_SHA256", _sha256(data).upper())
    root = D.fetch_gopro(backoff=0)
    assert root == env / "gopro" and is_extracted(root)
    pairs = D.gopro_items(root)
    assert [p.name for p in pairs] == ["GOPR0384_11_00/000001", "GOPR0384_11_00/000002"]
    monkeypatch.setenv("LMFN_OFFLINE", "1")
    assert D.fetch_gopro() == root and len(server.requests) == 2


def test_fetch_gopro_offline_makes_no_request(env, server, monkeypatch):
    monkeypatch.setenv("LMFN_OFFLINE", "1")
    with pytest.raises(DatasetError, match="LMFN_OFFLINE"):
        D.fetch_gopro(server.base_url + "GOPRO_Large.zip", "a" * 64)
    assert server.requests == []


@pytest.fixture
def gopro_tree(tmp_path) -> Path:
    """tmp/GOPRO_Large/{train,test}/SEQ/{blur,blur_gamma,sharp}/*.png, extracted from the mini zip."""
    with zipfile.ZipFile(io.BytesIO(gopro_zip("GOPRO_Large/"))) as zf:
        zf.extractall(tmp_path)
    return tmp_path / "GOPRO_Large"


def test_gopro_items_accepts_the_dataset_its_parent_or_the_split(gopro_tree):
    expected = ["GOPR0384_11_00/000001", "GOPR0384_11_00/000002"]
    for root in (gopro_tree, gopro_tree.parent, gopro_tree / "test"):
        pairs = D.gopro_items(root)
        assert [p.name for p in pairs] == expected, root
    first = D.gopro_items(gopro_tree)[0]
    assert first.blurry == gopro_tree / "test" / "GOPR0384_11_00" / "blur" / "000001.png"
    assert first.sharp == gopro_tree / "test" / "GOPR0384_11_00" / "sharp" / "000001.png"
    gamma = D.gopro_items(gopro_tree, blur_variant="blur_gamma")
    assert gamma[0].blurry.parent.name == "blur_gamma" and gamma[0].sharp == first.sharp
    assert [p.name for p in D.gopro_items(gopro_tree, split="train")] == ["GOPR0001_11_00/000001",
                                                                          "GOPR0001_11_00/000002"]


def test_gopro_items_reports_unpaired_and_bad_layouts(gopro_tree, tmp_path):
    seq = gopro_tree / "test" / "GOPR0384_11_00"
    (seq / "sharp" / "000003.png").write_bytes((seq / "sharp" / "000001.png").read_bytes())
    pairs = D.gopro_items(gopro_tree)
    assert len(pairs) == 2 and pairs.unpaired_sharp == [seq / "sharp" / "000003.png"] and pairs.unpaired_blurry == []
    with pytest.raises(ValueError, match="blur_gamma"):
        D.gopro_items(gopro_tree, blur_variant="gamma")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no GoPro sequences"):
        D.gopro_items(tmp_path / "empty")
    with pytest.raises(DatasetError, match="no such folder"):
        D.gopro_items(tmp_path / "nope")


# --- paired folders --------------------------------------------------------------------------------


def _touch(folder: Path, *names: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(b"")


def test_pair_items_matches_names_ignoring_case_and_extension(tmp_path):
    _touch(tmp_path / "blur", "A.PNG", "b.png", ".hidden.png", "notes.txt", "c.JPG")
    _touch(tmp_path / "sharp", "a.jpg", "C.png", "d.tif")
    pairs = D.pair_items(tmp_path)
    assert [(p.name, p.blurry.name, p.sharp.name) for p in pairs] == [("A", "A.PNG", "a.jpg"), ("c", "c.JPG", "C.png")]
    assert pairs.unpaired_blurry == [tmp_path / "blur" / "b.png"]
    assert pairs.unpaired_sharp == [tmp_path / "sharp" / "d.tif"]


def test_pair_items_input_target_and_nested_layouts(tmp_path):
    _touch(tmp_path / "one" / "Input", "x.png")
    _touch(tmp_path / "one" / "Target", "x.png")
    pairs = D.pair_items(tmp_path / "one")
    assert [(p.name, p.blurry.parent.name, p.sharp.parent.name) for p in pairs] == [("x", "Input", "Target")]
    for seq in ("s2", "s1"):
        _touch(tmp_path / "nested" / seq / "blur", "f.png")
        _touch(tmp_path / "nested" / seq / "sharp", "f.png")
    _touch(tmp_path / "nested" / "s1" / "blur_gamma", "f.png")
    assert [p.name for p in D.pair_items(tmp_path / "nested")] == ["s1/f", "s2/f"]


def test_pair_items_errors_name_the_problem(tmp_path):
    with pytest.raises(DatasetError, match="no such folder"):
        D.pair_items(tmp_path / "nope")
    _touch(tmp_path / "a" / "blur", "x.png", "y.png")
    _touch(tmp_path / "a" / "sharp", "z.png")
    with pytest.raises(DatasetError, match=r"no image pairs: 2 images in blur/ and 1 in sharp/"):
        D.pair_items(tmp_path / "a")
    _touch(tmp_path / "b" / "blur", "x.png", "X.jpg")
    _touch(tmp_path / "b" / "sharp", "x.png")
    with pytest.raises(DatasetError, match="same name as"):
        D.pair_items(tmp_path / "b")
    _touch(tmp_path / "c" / "blur", "x.png")
    with pytest.raises(DatasetError, match="has blur/ but no sharp/"):
        D.pair_items(tmp_path / "c")
    _touch(tmp_path / "d" / "pictures", "x.png")
    with pytest.raises(DatasetError, match="expected blur/ \\+ sharp/, input/ \\+ target/"):
        D.pair_items(tmp_path / "d")


# --- safe extraction --------------------------------------------------------------------------------


def _tar(path: Path, members: list[tuple[str, str, str]]) -> Path:
    """A tar of (name, kind, link target or content); kinds: file, dir, sym, hard, chr, fifo."""
    types = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "sym": tarfile.SYMTYPE, "hard": tarfile.LNKTYPE,
             "chr": tarfile.CHRTYPE, "fifo": tarfile.FIFOTYPE}
    with tarfile.open(path, "w:gz") as tf:
        for name, kind, extra in members:
            info = tarfile.TarInfo(name)
            info.type = types[kind]
            data = extra.encode() if kind == "file" else b""
            if kind in ("sym", "hard"):
                info.linkname = extra
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


OK = ("ok.txt", "file", "fine")


@pytest.mark.parametrize("members, why", [
    ([OK, ("../evil.txt", "file", "x")], "'..'"),
    ([OK, ("a/../../evil.txt", "file", "x")], "'..'"),
    ([OK, ("/tmp/evil.txt", "file", "x")], "absolute"),
    ([OK, ("link", "sym", "../../evil")], "outside"),
    ([OK, ("link", "sym", "/etc/passwd")], "absolute"),
    ([OK, ("up", "sym", "."), ("up/s", "sym", ".."), ("up/s/evil.txt", "file", "x")], "through the symbolic link"),
    ([OK, ("d", "dir", ""), ("d/l", "sym", ".."), ("x", "sym", "d/l/..")], "through a symbolic link"),
    ([OK, ("ln", "sym", "ok.txt"), ("ln", "file", "x")], "replace a symbolic link"),
    ([OK, ("hard", "hard", "../evil.txt")], "outside"),
    ([OK, ("dev", "chr", "")], "device"),
    ([OK, ("pipe", "fifo", "")], "device"),
])
def test_hostile_tar_members_are_refused_and_nothing_is_left(tmp_path, members, why):
    archive = _tar(tmp_path / "hostile.tar.gz", members)
    with pytest.raises(ArchiveError, match=why) as info:
        extract_archive(archive, tmp_path / "out" / "dest")
    message = str(info.value)
    assert str(archive) in message and "\n" not in message
    assert any(repr(name) in message for name, _, _ in members[1:])  # names the refused member
    assert sorted(os.listdir(tmp_path)) == ["hostile.tar.gz", "out"] and os.listdir(tmp_path / "out") == []


def test_hostile_zip_members_are_refused_and_nothing_is_left(tmp_path):
    for i, name in enumerate(["../evil.txt", "/abs/evil.txt", "a\\..\\..\\evil.txt"]):
        archive = tmp_path / f"h{i}.zip"
        archive.write_bytes(_zip({"ok.txt": b"fine", name: b"x"}))
        with pytest.raises(ArchiveError) as info:
            extract_archive(archive, tmp_path / "out" / "dest")
        assert str(archive) in str(info.value) and repr(name) in str(info.value)
    archive = tmp_path / "link.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("ok.txt", b"fine")
        link = zipfile.ZipInfo("link")
        link.external_attr = 0o120777 << 16
        zf.writestr(link, "/etc/passwd")
    with pytest.raises(ArchiveError, match="symbolic link"):
        extract_archive(archive, tmp_path / "out" / "dest")
    assert os.listdir(tmp_path / "out") == [] and not (tmp_path / "evil.txt").exists()


def test_extraction_is_complete_marked_and_never_overwritten(tmp_path):
    good = _tar(tmp_path / "good.tgz", [("d", "dir", ""), ("d/f.txt", "file", "hello"), ("d/l", "sym", "f.txt")])
    dest = extract_archive(good, tmp_path / "dest", info={"dataset": "t"})
    assert (dest / "d" / "f.txt").read_text() == "hello" and (dest / "d" / "l").read_text() == "hello"
    assert is_extracted(dest) and '"dataset": "t"' in (dest / MARKER).read_text()
    (dest / "d" / "f.txt").write_text("changed")
    assert extract_archive(good, dest) == dest and (dest / "d" / "f.txt").read_text() == "changed"
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "mine").write_text("keep")
    with pytest.raises(DatasetError, match="not a complete extraction"):
        extract_archive(good, tmp_path / "other")
    assert os.listdir(tmp_path / "other") == ["mine"]

    def refuse(tmp: Path) -> None:
        raise DatasetError(tmp, "not the expected layout")

    with pytest.raises(DatasetError, match="not the expected layout"):
        extract_archive(good, tmp_path / "v", validate=refuse)
    corrupt = tmp_path / "corrupt.zip"
    corrupt.write_bytes(_zip({"a.txt": b"a" * 1000})[:-30])
    with pytest.raises(ArchiveError):
        extract_archive(corrupt, tmp_path / "c")
    assert sorted(os.listdir(tmp_path)) == ["corrupt.zip", "dest", "good.tgz", "other"]


# --- the shared download helper -----------------------------------------------------------------------


def test_download_file_checks_md5_and_needs_a_checksum(server, tmp_path):
    server.files["f.bin"] = data = os.urandom(5000)
    with pytest.raises(ValueError, match="checksum"):
        download_file(server.base_url + "f.bin", tmp_path / "f.bin")
    path = download_file(server.base_url + "f.bin", tmp_path / "f.bin", md5=_md5(data), backoff=0)
    assert path.read_bytes() == data and os.listdir(tmp_path) == ["f.bin"]
    with pytest.raises(FetchError, match=f"MD5 mismatch: expected {'1' * 32}, got {_md5(data)}"):
        download_file(server.base_url + "f.bin", tmp_path / "g.bin", md5="1" * 32, backoff=0)
    assert os.listdir(tmp_path) == ["f.bin"]


def test_download_file_without_a_known_size_resumes_with_range(server, tmp_path):
    server.files["big.bin"] = data = os.urandom(CHUNK_SIZE * 3)
    server.faults = [("drop", CHUNK_SIZE + 1000)]
    seen = []
    path = download_file(server.base_url + "big.bin", tmp_path / "big.bin", sha256=_sha256(data), backoff=0,
                         on_progress=lambda done, total: seen.append((done, total)))
    assert path.read_bytes() == data
    assert [r.get("range") for r in server.requests] == [None, f"bytes={CHUNK_SIZE}-"]
    assert seen[-1] == (len(data), len(data))  # the total comes from the headers
