"""A few hundred seeded fuzz cases on every CI run (benchmarks/fuzz.py runs the 10,000): every
hostile file is read into a picture or refused with one ImageError, never anything else, also
through the real ``lmfn deblur`` process; structured PNGs from hypothesis."""

from __future__ import annotations

import importlib.util
import struct
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lmfn_cli.errors import ImageError
from lmfn_cli.images import read_picture

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("fuzz", ROOT / "benchmarks" / "fuzz.py")
fuzz = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fuzz)


@pytest.fixture(scope="module")
def result():
    return fuzz.campaign(fuzz.cases(300, seed=20261202), timeout=60)


def test_every_seed_is_valid_and_read():
    for name, (fmt, data) in fuzz.seeds().items():
        if fmt == "gif":  # a format we refuse on purpose
            with pytest.raises(ImageError, match="not an image"):
                read_picture(data)
        else:
            assert read_picture(data).pixels.shape[:2] in ((40, 48), (48, 40)), name  # EXIF may rotate


def test_seeded_cases_never_crash(result):
    assert result["cases"] == 300 + len(fuzz.structured())
    assert result["crashes"] == [], [{k: v for k, v in c.items() if k != "bytes"} for c in result["crashes"]]
    refused = sum(c.get("refused", 0) for c in result["by_format"].values())
    accepted = sum(c.get("ok", 0) for c in result["by_format"].values())
    assert refused > 100 and accepted > 10  # the mutations do reach both outcomes


def test_claimed_dimensions_are_refused_before_decoding():
    # 100 bytes that claim 60000 x 60000 pixels: refused from the header, no 10 GiB buffer
    fmt, tiny = fuzz.structured()["100-byte-file-claims-60000x60000"]
    assert len(tiny) < 120
    runner = fuzz.Runner(timeout=60)
    try:
        outcome, detail, _, rss_kb = runner.run(tiny)
        base = runner.base_rss_kb
    finally:
        runner.close()
    assert outcome == "refused" and "3600000000 pixels is more than the limit" in detail
    assert rss_kb - base < 64 * 1024  # KiB: nothing near the 10.8 GB the header claims
    for name in ("idat-zlib-bomb-claims-60000x60000", "png16-claims-60000x60000"):
        with pytest.raises(ImageError, match="more than the limit"):
            read_picture(fuzz.structured()[name][1])


def test_the_real_command_on_fuzzed_files(result, tmp_path):
    picks = list(range(0, result["cases"], 10))
    all_cases = fuzz.cases(300, seed=20261202)
    sample = [all_cases[i] for i in picks]
    accepted = [result["outcomes"][i] == "ok" for i in picks]
    cli = fuzz.cli_check(sample, accepted, tmp_path)
    assert not cli["traceback"] and cli["every_error_names_its_file"], cli
    assert cli["exit_code"] == (1 if cli["error_lines"] else 0)
    assert cli["outputs_match_accepted"] and cli["temporary_files_left"] == []
    assert cli["other_stderr_line_count"] == 0, cli  # no raw warning of a decoder reaches the user


def test_decoder_warnings_never_reach_the_users_stderr(tmp_path):
    # Pillow warns "Corrupt EXIF data" on these (two raw lines, no file name, on a 10,000-case
    # run through the command); they go to the debug log now, naming the file.
    hostile = fuzz.structured()
    sample = [(name, hostile[name][0], "structured", hostile[name][1]) for name in ("exif-malformed", "exif-chunk-4mb")]
    accepted = []
    for _, _, _, data in sample:
        try:
            read_picture(data)
            accepted.append(True)
        except ImageError:
            accepted.append(False)
    cli = fuzz.cli_check(sample, accepted, tmp_path)
    assert cli["other_stderr_line_count"] == 0 and not cli["traceback"], cli
    assert cli["outputs_match_accepted"], cli


def test_libtiff_messages_never_reach_the_users_stderr(tmp_path):
    # libtiff inside Pillow printed "tempfile.tif: Using code not yet in table." straight to
    # stderr (73 such lines on the 10,000-case run through the command): its handlers now log.
    fmt, data = fuzz.seeds()["tiff8-rgb-lzw"]
    ifd = struct.unpack_from("<I", data, 4)[0]
    zeroed = data[:200] + b"\0" * (ifd - 200) + data[ifd:]  # the LZW strip wiped, the IFD kept
    with pytest.raises(ImageError, match="cannot decode"):
        read_picture(zeroed)
    cli = fuzz.cli_check([("tiff8-rgb-lzw", fmt, "zeroed strip", zeroed)], [False], tmp_path)
    assert cli["error_lines"] == 1 and cli["other_stderr_line_count"] == 0, cli


def _chunk(kind: bytes, body: bytes, good_crc: bool, length: int | None) -> bytes:
    crc = zlib.crc32(kind + body) & 0xFFFFFFFF
    return struct.pack(">I", len(body) if length is None else length) + kind + body + struct.pack(
        ">I", crc if good_crc else crc ^ 0x5A5A5A5A)


chunks = st.lists(st.tuples(
    st.sampled_from([b"IHDR", b"PLTE", b"tRNS", b"IDAT", b"iCCP", b"eXIf", b"pHYs", b"acTL", b"fcTL", b"fdAT",
                     b"zTXt", b"iTXt", b"IEND", b"\x00\x00\x00\x00"]),
    st.binary(max_size=80), st.booleans(), st.one_of(st.none(), st.integers(0, 2**32 - 1))), max_size=8)


@settings(max_examples=300, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(width=st.integers(0, 2**32 - 1), height=st.integers(0, 2**32 - 1), depth=st.sampled_from([1, 2, 4, 8, 16, 3]),
       colour=st.sampled_from([0, 2, 3, 4, 6, 1]), extra=chunks,
       pixels=st.binary(max_size=600))
def test_structured_pngs_are_read_or_refused(width, height, depth, colour, extra, pixels):
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    data = (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr, True, None)
            + b"".join(_chunk(k, b, good, n) for k, b, good, n in extra)
            + _chunk(b"IDAT", zlib.compress(pixels), True, None) + _chunk(b"IEND", b"", True, None))
    try:
        pic = read_picture(data, max_pixels=1 << 20)
    except ImageError as exc:
        assert "\n" not in str(exc)
    else:
        assert pic.pixels.ndim in (2, 3) and pic.pixels.size <= 4 << 20


def test_regression_a_tiff_whose_dimensions_lie_decodes_to_no_pixels():
    # found by this campaign (seed 20261202, case 40): tiff16-rgb-lzw with its ImageWidth/Length
    # rewritten; tifffile returned an array of shape (0,), which read_picture passed on as a
    # picture and deblurring then failed on. Made here from the seed, as the campaign made it.
    fmt, data = fuzz.seeds()["tiff16-rgb-lzw"]
    found = [d for _, f, _, d in fuzz.cases(300, seed=20261202)[40:41]]
    with pytest.raises(ImageError, match="damaged"):
        read_picture(found[0])
    b = bytearray(data)
    for at, f in fuzz.dimension_fields(fmt, data):
        struct.pack_into(f, b, at, 0)  # 0 x 0
    with pytest.raises(ImageError):
        read_picture(bytes(b))


def _tiff_with_a_dimension_of_many_values(values: list[int]) -> bytes:
    """The tiled 16-bit RGB seed with its ImageLength tag rewritten to hold ``values`` (LONGs
    appended at the end of the file) instead of one number."""
    data = bytearray(fuzz.seeds()["tiff16-rgb-tiled"][1])
    assert data[:4] == b"II*\x00"
    ifd = struct.unpack_from("<I", data, 4)[0]
    for i in range(struct.unpack_from("<H", data, ifd)[0]):
        at = ifd + 2 + 12 * i
        if struct.unpack_from("<H", data, at)[0] == 257:
            if len(values) == 1:  # one value: in the entry itself
                struct.pack_into("<HHII", data, at, 257, 4, 1, values[0])
                return bytes(data)
            struct.pack_into("<HHII", data, at, 257, 4, len(values), len(data))
    return bytes(data) + struct.pack(f"<{len(values)}I", *values)


def test_regression_a_tiff_dimension_of_many_values_is_refused_without_a_huge_allocation():
    # found by benchmarks/fuzz_atheris.py (libFuzzer seed 1, after 80,659 inputs): a 1,920-byte
    # tiled TIFF whose ImageLength tag held 257 values. tifffile reported the length as a tuple,
    # and the pixel-limit check multiplied the width (5,374,000) by it: a tuple of 1.4 billion
    # items, 11 GB of memory and 31 s before a TypeError. Made here from the tiled seed with 4
    # values (a TypeError then, a refusal now: a dimension that is not one number is refused
    # before anything is multiplied).
    data = _tiff_with_a_dimension_of_many_values([40, 1, 2, 3])
    with pytest.raises(ImageError, match="malformed header: its width or height is not one number"):
        read_picture(data)
    assert read_picture(_tiff_with_a_dimension_of_many_values([40])).pixels.shape == (40, 48, 3)  # the valid twin


# --- coverage-guided: atheris (libFuzzer) on read_picture ---------------------------------

_aspec = importlib.util.spec_from_file_location("fuzz_atheris", ROOT / "benchmarks" / "fuzz_atheris.py")
fuzz_atheris = importlib.util.module_from_spec(_aspec)
_aspec.loader.exec_module(fuzz_atheris)


@pytest.fixture
def atheris_corpus(tmp_path):
    pytest.importorskip("atheris")  # a Linux-only wheel; installed with .[test] on Linux
    corpus = tmp_path / "corpus"
    n = fuzz_atheris.write_corpus(corpus)
    return corpus, n


def test_coverage_guided_inputs_never_crash_read_picture(atheris_corpus, tmp_path):
    corpus, n_seeds = atheris_corpus
    res = fuzz_atheris.campaign(120, seed=20261202, corpus=corpus, crashes=tmp_path / "crashes",
                                timeout=20, rss_mb=3072, runs=3000)
    assert res["crashes"] == [] and res["returncode"] == 0, res["log"][-3000:]
    assert res["number_of_executed_units"] >= 3000 or res["wall_s"] >= 120, res["log"][-3000:]
    # coverage guidance works: inputs that reached new code were kept
    assert res["new_units_added"] > 0 and sum(1 for _ in corpus.iterdir()) > n_seeds


def test_the_coverage_guided_harness_reports_a_crash(atheris_corpus, tmp_path, monkeypatch):
    corpus, _ = atheris_corpus
    monkeypatch.setenv("LMFN_FUZZ_PLANTED_BUG", "1")  # the target raises on any PNG
    res = fuzz_atheris.campaign(60, seed=1, corpus=corpus, crashes=tmp_path / "crashes",
                                timeout=20, rss_mb=3072, runs=100)
    assert res["returncode"] != 0 and len(res["crashes"]) == 1 and res["crashes"][0].startswith("crash-")
    assert (tmp_path / "crashes" / res["crashes"][0]).read_bytes().startswith(b"\x89PNG")
    assert "planted bug" in res["log"]


def test_libfuzzer_statistics_are_parsed():
    log = ("#2048\tpulse  cov: 1200 ft: 2100 corp: 80/30Kb lim: 4096 exec/s: 512 rss: 300Mb\n"
           "#34757\tDONE   cov: 1797 ft: 3437 corp: 361/1Mb lim: 65536 exec/s: 569 rss: 458Mb\n"
           "stat::number_of_executed_units: 34757\nstat::peak_rss_mb:              458\n")
    assert fuzz_atheris.parse_libfuzzer(log) == dict(
        inputs=34757, event="DONE", cov=1797, ft=3437, corpus=361, corpus_size="1Mb", exec_per_s=569,
        rss_mb=458, number_of_executed_units=34757, peak_rss_mb=458)
