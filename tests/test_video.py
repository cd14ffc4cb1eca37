"""Videos through lmfn deblur: every frame and timestamp, audio, rotation, colour tags, size and
depth kept; broken files, interruption and a missing PyAV handled. Small videos made here."""

from __future__ import annotations

import json
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from conftest import natural_like
from lmfn_cli.batch import BatchOptions, Settings, run_batch
from lmfn_cli.cli import main
from lmfn_cli.errors import ConfigError, OutputExistsError
from lmfn_cli.images import write_image
from lmfn_cli.inference import restore, restore_batch
from lmfn_cli.video import (VideoError, VideoSettings, deblur_video, output_pix_fmt, partial_name,
                            require_av)

av = pytest.importorskip("av")  # in the test extra; `pip install 'lmfn[video]'` for users

BT709 = 1  # AVCOL_PRI/TRC/SPC_BT709
VFR_PTS = [0, 3000, 9000, 10000, 16000, 30000, 31000, 45000, 52000, 60000]  # 1/90000 s: no fixed rate


def _frames(n: int, h: int, w: int, deep: bool = False) -> list[np.ndarray]:
    base = natural_like(h, w + n * 3, seed=3)
    out = [np.ascontiguousarray(base[:, 3 * i: 3 * i + w]) for i in range(n)]  # a pan: every frame differs
    return [f.astype(np.uint16) * 257 for f in out] if deep else out


def make_video(path: Path, *, size=(66, 50), pts=VFR_PTS, time_base=Fraction(1, 90000), codec="libx264",
               pix_fmt="yuv420p", audio=True, rotation: int | None = 90, tags=True, crf=0) -> Path:
    """A small video: frames of a pan with the given pts, AAC stereo audio, rotation, BT.709."""
    w, h = size
    deep = "10" in pix_fmt
    path.parent.mkdir(parents=True, exist_ok=True)
    out = av.open(str(path), "w")
    vs = out.add_stream(codec, rate=30)
    vs.width, vs.height, vs.pix_fmt = w, h, pix_fmt
    vs.time_base = time_base
    vs.codec_context.time_base = time_base
    vs.options = {"crf": str(crf)} if codec == "libx264" else {}
    if tags:
        cc = vs.codec_context
        cc.color_primaries = cc.color_trc = cc.colorspace = BT709
        cc.color_range = 1
    if rotation is not None:
        vs.set_display_rotation(rotation)
    if audio:
        a = out.add_stream("aac", rate=48000)
        a.layout = "stereo"
    for p, img in zip(pts, _frames(len(pts), h, w, deep)):
        frame = av.VideoFrame.from_ndarray(img, format="rgb48le" if deep else "rgb24")
        frame = frame.reformat(format=pix_fmt, dst_colorspace=BT709 if tags else None, dst_color_range=1)
        frame.pts, frame.time_base = p, time_base
        out.mux(vs.encode(frame))
    out.mux(vs.encode(None))
    if audio:
        t = np.arange(int(48000 * pts[-1] * time_base) + 4800) / 48000
        for k in range(0, len(t), 1024):
            seg = (0.2 * np.sin(2 * np.pi * 440 * t[k:k + 1024])).astype(np.float32)
            af = av.AudioFrame.from_ndarray(np.stack([seg, seg]).reshape(1, -1), format="flt", layout="stereo")
            af.sample_rate, af.pts = 48000, k
            out.mux(a.encode(af))
        out.mux(a.encode(None))
    out.close()
    return path


def probe(path: Path) -> dict:
    """What a file holds: its video stream's pts, tags, size and format, its audio packets."""
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        cc = v.codec_context
        info = dict(size=(cc.width, cc.height), pix_fmt=cc.pix_fmt, time_base=v.time_base,
                    tags=(cc.color_primaries, cc.color_trc, cc.colorspace, cc.color_range),
                    streams=[s.type for s in c.streams])
        frames = list(c.decode(v))
        info["pts"] = [f.pts for f in frames]
        info["rotation"] = frames[0].rotation if frames else None
        info["rgb"] = [f.reformat(format="rgb24", src_colorspace=cc.colorspace if cc.colorspace not in (0, 2) else 5,
                                  src_color_range=1, dst_color_range=2).to_ndarray() for f in frames]
    with av.open(str(path)) as c:
        info["audio"] = [(bytes(p), p.pts) for p in c.demux(audio=0) if p.size] if c.streams.audio else []
    return info


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255 ** 2 / mse)


def through_yuv(rgb: np.ndarray, matrix: int = BT709) -> np.ndarray:
    """``rgb`` as the encoder receives it (4:2:0 at limited range) and read back."""
    f = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p", src_color_range=2,
                                                                 dst_colorspace=matrix, dst_color_range=1)
    return f.reformat(format="rgb24", src_colorspace=matrix, src_color_range=1, dst_color_range=2).to_ndarray()


@pytest.fixture
def model(tiny_model):
    torch.manual_seed(0)
    return tiny_model


def test_every_frame_timestamp_audio_packet_rotation_tag_and_the_size_are_kept(tmp_path, model):
    src = make_video(tmp_path / "clip.mp4")
    dst = tmp_path / "out" / "clip.mp4"
    seen = []
    done = deblur_video(model, src, dst, VideoSettings(crf=0), on_frame=lambda d, t: seen.append((d, t)))
    a, b = probe(src), probe(dst)
    assert done.frames == len(VFR_PTS) and seen[-1] == (len(VFR_PTS), len(VFR_PTS))
    assert b["pts"] == a["pts"] == VFR_PTS and b["time_base"] == a["time_base"]  # variable frame rate, exact
    assert b["size"] == (66, 50) and b["rotation"] == a["rotation"] == 90
    assert b["tags"] == a["tags"] == (BT709, BT709, BT709, 1) and b["pix_fmt"] == "yuv420p"
    assert b["streams"] == ["video", "audio"] and b["audio"] == a["audio"] and len(a["audio"]) > 5  # copied, not re-encoded
    # frame n of the output is the network's frame n of the input (x264 at crf 0 is lossless in YUV)
    for n, (inp, out) in enumerate(zip(a["rgb"], b["rgb"])):
        expected = through_yuv(restore(model, inp).pixels)
        assert psnr(out, expected) > 45, n
    assert not list((tmp_path / "out").glob(".*.part"))


def test_the_default_quality_is_close_to_the_lossless_reference(tmp_path, model):
    src = make_video(tmp_path / "clip.mp4", audio=False, rotation=None)
    deblur_video(model, src, tmp_path / "o.mp4")
    a, b = probe(src), probe(tmp_path / "o.mp4")
    worst = min(psnr(out, through_yuv(restore(model, inp).pixels)) for inp, out in zip(a["rgb"], b["rgb"]))
    assert worst > 30


def test_constant_rate_mkv_with_odd_size_keeps_the_size(tmp_path, model):
    # 65x49 cannot be 4:2:0: the input is 4:4:4 and the output stays so, at the same size
    src = make_video(tmp_path / "odd.mkv", size=(65, 49), pts=list(range(0, 300, 33)), time_base=Fraction(1, 1000),
                     pix_fmt="yuv444p", rotation=None)
    deblur_video(model, src, tmp_path / "odd-out.mkv")
    a, b = probe(src), probe(tmp_path / "odd-out.mkv")
    assert b["size"] == (65, 49) and b["pix_fmt"] == "yuv444p" and b["pts"] == a["pts"] and b["audio"] == a["audio"]


def test_ten_bit_input_stays_ten_bit(tmp_path, model):
    src = make_video(tmp_path / "deep.mp4", pix_fmt="yuv420p10le", audio=False, rotation=None, pts=VFR_PTS[:4])
    deblur_video(model, src, tmp_path / "deep-out.mp4")
    assert probe(tmp_path / "deep-out.mp4")["pix_fmt"] == "yuv420p10le"


def test_output_pixel_format_choice():
    fmt = av.VideoFormat
    x264 = {"yuv420p", "yuv422p", "yuv444p", "yuv420p10le", "yuv444p10le"}
    assert output_pix_fmt(fmt("yuv420p"), x264, 66, 50) == "yuv420p"
    assert output_pix_fmt(fmt("yuv420p10le"), x264, 64, 48) == "yuv420p10le"
    assert output_pix_fmt(fmt("yuv420p10le"), {"yuv420p"}, 64, 48) == "yuv420p"  # the encoder has no 10-bit
    assert output_pix_fmt(fmt("yuv420p"), x264, 65, 49) == "yuv444p"  # odd: no chroma subsampling
    assert output_pix_fmt(fmt("rgb24"), x264, 64, 48) == "yuv420p"


def test_a_truncated_video_keeps_the_frames_before_the_break_under_a_partial_name(tmp_path, model):
    src = make_video(tmp_path / "long.mkv", pts=list(range(0, 1200, 40)), time_base=Fraction(1, 1000), rotation=None)
    data = src.read_bytes()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(data[: len(data) * 6 // 10])
    dst = tmp_path / "out" / "cut.mkv"
    with pytest.raises(VideoError, match=r"cut\.mkv: .*(breaks|truncated).*frames before it are in .*cut\.partial\.mkv"):
        deblur_video(model, cut, dst)
    assert not dst.exists()
    kept = probe(partial_name(dst))
    assert 0 < len(kept["pts"]) < 30 and kept["pts"] == list(range(0, 40 * len(kept["pts"]), 40))
    assert not list((tmp_path / "out").glob(".*.part"))


def test_a_truncated_mp4_without_its_index_is_one_clear_error(tmp_path, model):
    src = make_video(tmp_path / "a.mp4", audio=False)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(src.read_bytes()[:600])  # the moov index is at the end: nothing to read
    with pytest.raises(VideoError, match=r"cut\.mp4: "):
        deblur_video(model, cut, tmp_path / "out" / "cut.mp4")
    assert not (tmp_path / "out" / "cut.mp4").exists() and not partial_name(tmp_path / "out" / "cut.mp4").exists()


def test_an_interrupted_video_leaves_nothing(tmp_path, model):
    src = make_video(tmp_path / "clip.mp4")

    def interrupt(done, total):
        if done == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        deblur_video(model, src, tmp_path / "out" / "clip.mp4", on_frame=interrupt)
    assert list((tmp_path / "out").iterdir()) == []


def test_an_existing_output_is_kept(tmp_path, model):
    src = make_video(tmp_path / "clip.mp4", audio=False)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "clip.mp4").write_bytes(b"mine")
    with pytest.raises(OutputExistsError):
        deblur_video(model, src, tmp_path / "out" / "clip.mp4")
    assert (tmp_path / "out" / "clip.mp4").read_bytes() == b"mine"


def test_an_unknown_encoder_and_a_non_video_are_clear_errors(tmp_path, model):
    src = make_video(tmp_path / "clip.mp4", audio=False)
    with pytest.raises(VideoError, match="encoder 'nonesuch' is not in this FFmpeg build"):
        deblur_video(model, src, tmp_path / "o.mp4", VideoSettings(codec="nonesuch"))
    fake = tmp_path / "fake.mp4"
    fake.write_text("not a video")
    with pytest.raises(VideoError, match=r"fake\.mp4: cannot be opened as a video"):
        deblur_video(model, fake, tmp_path / "o.mp4")


def test_batched_frames_equal_frames_one_by_one(model):
    frames = _frames(3, 40, 48)
    batched, how = restore_batch(model, frames)
    assert how[0] == 0
    for one, frame in zip(batched, frames):
        assert np.abs(one.astype(int) - restore(model, frame, tile=0).pixels.astype(int)).max() <= 1


def test_without_pyav_a_video_is_an_error_naming_the_extra(tmp_path, model, monkeypatch):
    src = make_video(tmp_path / "clip.mp4", audio=False)
    write_image(tmp_path / "in" / "p.png", natural_like(32, 40))
    monkeypatch.setitem(sys.modules, "av", None)
    with pytest.raises(ConfigError, match=r"lmfn\[video\]"):
        require_av()
    batch = run_batch([str(src), str(tmp_path / "in" / "p.png")], tmp_path / "out", model=model)
    records = {Path(r.input).name: r for r in batch}
    assert records["clip.mp4"].status == "failed" and "pip install 'lmfn[video]'" in records["clip.mp4"].error
    assert records["p.png"].status == "ok" and batch.summary.failed == 1


def test_the_command_on_a_folder_of_images_and_videos(tmp_path, tiny_weights):
    make_video(tmp_path / "in" / "clip.mp4")
    write_image(tmp_path / "in" / "photo.png", natural_like(32, 40))
    (tmp_path / "in" / "broken.mkv").write_bytes(b"\x1a\x45\xdf\xa3" + b"\0" * 50)
    res = CliRunner().invoke(main, ["deblur", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "-w", str(tiny_weights),
                                    "--json", "-f", "mkv", "--crf", "20", "--device", "cpu"])
    assert res.exit_code == 1, res.output
    lines = [json.loads(line) for line in res.stdout.splitlines()]
    by_name = {Path(r["input"]).name: r for r in lines}
    assert by_name["clip.mp4"]["output"].endswith("clip.mkv") and by_name["clip.mp4"]["frames"] == len(VFR_PTS)
    assert by_name["clip.mp4"]["fps"] > 0 and by_name["photo.png"]["output"].endswith("photo.png")  # -f mkv: videos only
    assert by_name["broken.mkv"]["status"] == "failed"
    errors = [line for line in res.stderr.splitlines() if line.startswith("lmfn: error:")]
    assert len(errors) == 1 and "broken.mkv" in errors[0] and "Traceback" not in res.stderr
    assert probe(tmp_path / "out" / "clip.mkv")["streams"] == ["video", "audio"]
    # --skip-existing resumes; stdout cannot take a video
    again = CliRunner().invoke(main, ["deblur", str(tmp_path / "in" / "clip.mp4"), "-o", str(tmp_path / "out"), "-f", "mkv",
                                      "-w", str(tiny_weights), "--skip-existing", "--device", "cpu"])
    assert again.exit_code == 0 and "1 skipped" in again.stderr
    piped = CliRunner().invoke(main, ["deblur", str(tmp_path / "in" / "clip.mp4"), "-o", "-", "-f", "png"])
    assert piped.exit_code == 2 and "videos are written to a folder" in piped.output


def test_settings_carry_the_video_encoding():
    opts = BatchOptions(settings=Settings(video=VideoSettings(crf=23, codec="libx265")))
    assert opts.settings.video.crf == 23 and opts.settings.video.codec == "libx265"


def test_subtitles_are_copied_and_a_container_that_cannot_hold_them_leaves_them_out(tmp_path, model, caplog):
    srt = tmp_path / "sub.srt"
    srt.write_text("1\n00:00:00,100 --> 00:00:00,300\nHello\n\n2\n00:00:00,200 --> 00:00:00,380\nWorld\n")
    src = tmp_path / "sub.mkv"
    with av.open(str(srt)) as text, av.open(str(src), "w") as out:  # the subtitle track muxed as it is
        vs = out.add_stream("libx264", rate=25)
        vs.width, vs.height, vs.pix_fmt = 64, 48, "yuv420p"
        ss = out.add_stream_from_template(text.streams[0])
        for i, img in enumerate(_frames(10, 48, 64)):
            f = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv420p")
            f.pts, f.time_base = i, Fraction(1, 25)
            out.mux(vs.encode(f))
        out.mux(vs.encode(None))
        for p in text.demux():
            if p.size:
                p.stream = ss
                out.mux(p)

    def subtitles(path):
        with av.open(str(path)) as c:
            return [(bytes(p), p.pts) for p in c.demux(subtitles=0) if p.size] if c.streams.subtitles else []

    deblur_video(model, src, tmp_path / "o.mkv")
    assert subtitles(tmp_path / "o.mkv") == subtitles(src) == [(b"Hello", 100), (b"World", 200)]
    deblur_video(model, src, tmp_path / "o.mp4")  # mp4 has no SubRip: a warning, the video is made
    assert "cannot go into mp4; left out" in caplog.text and len(probe(tmp_path / "o.mp4")["pts"]) == 10
