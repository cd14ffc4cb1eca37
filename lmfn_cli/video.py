"""Deblurring videos frame by frame, keeping what a video is besides its pixels.

Kept: every frame with its exact presentation timestamp (variable frame rate included: pts and
time base are copied, never an averaged rate), audio, subtitle and other streams (copied packet
for packet, not re-encoded), the rotation (display matrix), colour primaries, transfer, matrix
and range, the sample aspect ratio, the exact width and height, 10-bit depth where the encoder
has a 10-bit format, and the container's and streams' metadata (creation time, language).

Frames are decoded in one thread, deblurred in the caller's, encoded and muxed in a third, so
decoding and encoding hide behind the network. On CUDA, frames run through the network in
batches. The output is written to a temporary file and renamed; a video that breaks part-way
(corrupt, truncated) has the frames before the break deblurred into ``<name>.partial<ext>`` and
raises ``VideoError`` saying where it broke. Needs PyAV (``pip install 'lmfn[video]'``).
"""

from __future__ import annotations

import logging
import queue
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from .errors import ConfigError, ImageError, LMFNError, OutputExistsError
from .files import new_temporary, publish
from .inference import restore, restore_batch
from .model import LMFN

log = logging.getLogger(__name__)

__all__ = ["VIDEO_EXTENSIONS", "VIDEO_FORMATS", "VideoError", "VideoResult", "VideoSettings", "deblur_video",
           "is_video", "output_pix_fmt", "partial_name", "require_av"]

VIDEO_EXTENSIONS = frozenset({".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v"})
VIDEO_FORMATS = {"mp4": ".mp4", "mkv": ".mkv", "mov": ".mov", "webm": ".webm"}
"""``-f`` choices for videos -> their file extension."""
_MUXER = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm", ".avi": "avi"}
_DEFAULT_CODEC = {".webm": "libvpx-vp9"}  # every other container: libx264
_CRF = {"libx264", "libx265", "libvpx-vp9", "libvpx", "libsvtav1", "libaom-av1"}  # encoders with a crf option
_QUEUE = 4  # items in flight between two threads
_FULL_RANGE = 2  # AVCOL_RANGE_JPEG: the network sees full-range RGB


class VideoError(ImageError):
    """A video that cannot be read, encoded or written; names the file and the problem."""


def is_video(path: str | Path) -> bool:
    return Path(str(path)).suffix.lower() in VIDEO_EXTENSIONS  # str(): a URI (uris.URI) too


def partial_name(dst: Path) -> Path:
    """Where the frames before a break go: ``out/clip.mp4`` -> ``out/clip.partial.mp4``."""
    return dst.with_name(f"{dst.stem}.partial{dst.suffix}")


def require_av():
    """The ``av`` module, or ConfigError naming the extra that installs it."""
    try:
        import av
    except ImportError:
        raise ConfigError("videos need PyAV: pip install 'lmfn[video]' (or pip install av)") from None
    return av


@dataclass(frozen=True)
class VideoSettings:
    """How videos are encoded. ``codec`` None: libx264 (libvpx-vp9 for .webm); ``crf``: the
    encoder's constant-quality level (18: visually lossless for x264)."""

    crf: int = 18
    codec: str | None = None
    batch: int = 4  # frames per network call on CUDA (1 on the CPU, where batching gains nothing)


@dataclass(frozen=True)
class VideoResult:
    """One deblurred video: frames written, wall seconds, frames per second achieved, and the
    seconds spent in the network (the rest is decoding, encoding and waiting on them)."""

    frames: int
    seconds: float
    fps: float
    model_seconds: float
    size: tuple[int, int]  # (width, height)
    codec: str
    pix_fmt: str
    tile: int | None
    device: str
    precision: str


# --------------------------------------------------------------------------------------------
# Choosing the output stream
# --------------------------------------------------------------------------------------------


def _is_deep(fmt) -> bool:
    return any(c.bits > 8 for c in fmt.components)


def output_pix_fmt(in_fmt, supported: set[str], width: int, height: int) -> str:
    """The encoder's pixel format closest to ``in_fmt`` (a PyAV VideoFormat): the same one where
    the encoder has it and the size allows (4:2:0 and 4:2:2 need an even width, 4:2:0 an even
    height), else 4:2:0 (4:4:4 for an odd size) at 10 bits for deep inputs, 8 bits otherwise."""
    name = in_fmt.name
    odd_w, odd_h = width % 2, height % 2
    sub_w = "420" in name or "422" in name or name.startswith("nv")
    sub_h = "420" in name or name in ("nv12", "nv21")
    if name in supported and not (odd_w and sub_w) and not (odd_h and sub_h):
        return name
    deep = _is_deep(in_fmt)
    chroma = "444" if odd_w or odd_h else "420"
    for candidate in (f"yuv{chroma}p10le" if deep else f"yuv{chroma}p", f"yuv{chroma}p", "yuv444p", "yuv420p"):
        if candidate in supported:
            return candidate
    return sorted(supported)[0]


def _display_matrix(frame) -> list[int] | None:
    """The rotation/flip of a decoded frame as the 9 int32 of its display matrix, if any."""
    side = frame.side_data
    for item in side:
        # PyAV < 18.1.1 iterates the side data themselves; 18.1.1 iterates their types, as a mapping
        data = item if hasattr(item, "type") else side[item]
        if getattr(data.type, "name", "") == "DISPLAYMATRIX":
            return list(struct.unpack("<9i", bytes(data)[:36]))
    return None


def _message(exc: BaseException) -> str:
    return " ".join(str(getattr(exc, "strerror", None) or exc).split())


# --------------------------------------------------------------------------------------------
# The three threads: decode, deblur (the caller's), encode
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Colour:
    matrix: int  # swscale colorspace for YUV <-> RGB: the input's own where it says one
    yuv_range: int  # 1 limited (MPEG), 2 full (JPEG)
    rgb: str  # rgb24, or rgb48le for inputs deeper than 8 bits


@dataclass(frozen=True)
class _Frame:
    index: int
    pts: int
    pixels: object  # (H,W,3) uint8 or uint16
    matrix: list[int] | None = None  # display matrix, read from the first frame only


@dataclass(frozen=True)
class _Packet:
    packet: object


@dataclass(frozen=True)
class _Broken:
    problem: str


_END = object()


class _Pipe:
    """A bounded queue between two threads that gives up when ``stop`` is set."""

    def __init__(self, stop: threading.Event):
        self.q: queue.Queue = queue.Queue(_QUEUE)
        self.stop = stop

    def put(self, item) -> bool:
        while not self.stop.is_set():
            try:
                self.q.put(item, timeout=0.1)
                return True
            except queue.Full:
                pass
        return False

    def get(self):
        while not self.stop.is_set():
            try:
                return self.q.get(timeout=0.1)
            except queue.Empty:
                pass
        return _END


def _decode(container, stream, colour: _Colour, out: _Pipe) -> None:
    """Demux the file: frames of ``stream`` (as RGB arrays) and the other streams' packets go to
    ``out`` in file order, then ``_END``, or a ``_Broken`` saying where decoding stopped."""
    index, last_pts, seen = 0, None, 0.0
    step = 1
    rate = stream.average_rate or stream.guessed_rate
    if rate and stream.time_base:
        step = max(1, round(1 / (rate * stream.time_base)))

    def frames(packet):
        nonlocal index, last_pts, seen
        for frame in stream.decode(packet):
            pts = frame.pts if frame.pts is not None else (0 if last_pts is None else last_pts + step)
            last_pts = pts
            seen = float(pts * stream.time_base) if stream.time_base else seen
            pixels = frame.reformat(format=colour.rgb, src_colorspace=colour.matrix, src_color_range=colour.yuv_range,
                                    dst_color_range=_FULL_RANGE).to_ndarray()
            yield _Frame(index, pts, pixels, _display_matrix(frame) if index == 0 else None)
            index += 1

    try:
        for packet in container.demux():
            if packet.stream.index == stream.index:
                for item in frames(packet):
                    if not out.put(item):
                        return
            elif packet.dts is not None and not out.put(_Packet(packet)):  # dts None: demuxer's flush packet
                return
        try:
            for item in frames(None):  # the decoder's delayed frames, if demux's last packet left any
                if not out.put(item):
                    return
        except EOFError:  # av.error.EOFError: the decoder was flushed already
            pass
        declared = _declared_seconds(container, stream)
        interval = float(1 / rate) if rate else 0.1
        if stream.frames and index < stream.frames:
            out.put(_Broken(f"truncated: {index} of the {stream.frames} frames its header lists decode "
                            f"(it breaks after {seen:.2f} s)"))
        elif declared and index and seen + interval < declared - (2 * interval + 0.05):
            out.put(_Broken(f"truncated: frames decode up to {seen:.2f} s of the {declared:.2f} s its header gives"))
        else:
            out.put(_END)
    except Exception as exc:  # av.error.FFmpegError, or whatever a damaged stream makes of it
        out.put(_Broken(f"breaks at frame {index} (after {seen:.2f} s): {_message(exc)}"))


def _declared_seconds(container, stream) -> float | None:
    """How long the file says its video stream is (a Matroska file cut short keeps this)."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    tag = stream.metadata.get("DURATION") or stream.metadata.get("duration")
    if tag:  # Matroska: "00:00:01.200000000"
        try:
            h, m, sec = tag.split(":")
            return int(h) * 3600 + int(m) * 60 + float(sec)
        except ValueError:
            pass
    return container.duration / 1e6 if container.duration else None


def _encode(container, vout, mapped: dict, pix_fmt: str, colour: _Colour, time_base, jobs: _Pipe,
            errors: list[BaseException]) -> None:
    """Encode frames and mux them with the copied packets, in the order they come."""
    import av

    try:
        while (item := jobs.get()) is not _END:
            if isinstance(item, _Packet):
                item.packet.stream = mapped[item.packet.stream.index]
                container.mux(item.packet)
                continue
            frame = av.VideoFrame.from_ndarray(item.pixels, format=colour.rgb)
            frame = frame.reformat(format=pix_fmt, src_color_range=_FULL_RANGE, dst_colorspace=colour.matrix,
                                   dst_color_range=colour.yuv_range)
            frame.pts, frame.time_base = item.pts, time_base
            container.mux(vout.encode(frame))
        container.mux(vout.encode(None))
    except BaseException as exc:  # raised again in the caller's thread
        errors.append(exc)
        jobs.stop.set()


def deblur_video(model: LMFN, src: str | Path, dst: str | Path, video: VideoSettings = VideoSettings(), *,
                 tile: int | None = None, overlap: int | None = None, precision: str = "auto",
                 overwrite: bool = False, on_frame: Callable[[int, int | None], None] | None = None) -> VideoResult:
    """Deblur every frame of ``src`` into ``dst`` (the container from ``dst``'s extension).

    ``on_frame(done, total)`` after every frame (``total`` None where the file does not say).
    Raises ``VideoError`` naming ``src``: not a video, no video stream, an encoder this FFmpeg
    lacks, or a break part-way (the frames before it are then in ``partial_name(dst)``);
    ``OutputExistsError`` for an existing ``dst`` without ``overwrite``; ConfigError without
    PyAV. Interrupted (Ctrl-C), nothing is left under ``dst`` or its partial name.
    """
    av = require_av()
    src, dst = Path(src), Path(dst)
    muxer = _MUXER.get(dst.suffix.lower())
    if muxer is None:
        raise VideoError(src, f"cannot write a video as {dst.suffix or 'a file without extension'} "
                              "(mp4, mov, m4v, mkv, webm or avi)")
    codec = video.codec or _DEFAULT_CODEC.get(dst.suffix.lower(), "libx264")
    try:
        encoder = av.codec.Codec(codec, "w")
    except Exception:
        raise VideoError(src, f"encoder {codec!r} is not in this FFmpeg build (try libx264, libx265 or libvpx-vp9)") from None
    if encoder.type != "video":
        raise VideoError(src, f"{codec!r} is not a video encoder")
    if dst.exists() and not overwrite:
        raise OutputExistsError(dst, "output exists already (use --overwrite to replace it, or --skip-existing)")
    try:
        container = av.open(str(src), metadata_errors="replace")
    except Exception as exc:
        raise VideoError(src, f"cannot be opened as a video: {_message(exc)}") from None
    try:
        return _Job(model, container, src, dst, muxer, encoder, video, tile, overlap, precision, on_frame).run(overwrite)
    finally:
        container.close()


class _Job:
    """One video through the three threads."""

    def __init__(self, model, container, src: Path, dst: Path, muxer: str, encoder, video: VideoSettings, tile,
                 overlap, precision: str, on_frame):
        if not container.streams.video:
            raise VideoError(src, "has no video stream")
        self.model, self.container, self.src, self.dst, self.muxer, self.encoder = model, container, src, dst, muxer, encoder
        self.video, self.tile, self.overlap, self.precision, self.on_frame = video, tile, overlap, precision, on_frame
        self.vin = container.streams.video[0]
        ctx = self.vin.codec_context
        if not ctx.width or not ctx.height or ctx.format is None:
            raise VideoError(src, "its video stream has no size or pixel format (a damaged header?)")
        self.vin.thread_type = "AUTO"
        matrix = ctx.colorspace if ctx.colorspace not in (0, 2, None) else 5  # unspecified: swscale's own, BT.601
        yuv_range = ctx.color_range if ctx.color_range in (1, 2) else (2 if ctx.format.name.startswith("yuvj") else 1)
        self.colour = _Colour(matrix, yuv_range, "rgb48le" if _is_deep(ctx.format) else "rgb24")
        self.pix_fmt = output_pix_fmt(ctx.format, {f.name for f in (encoder.video_formats or [])}, ctx.width, ctx.height)
        self.frames, self.model_seconds = 0, 0.0
        self.ran: tuple = (None, "cpu", "fp32")

    def run(self, overwrite: bool) -> VideoResult:
        import av

        stop = threading.Event()
        decoded, to_encode = _Pipe(stop), _Pipe(stop)
        reader = threading.Thread(target=_decode, args=(self.container, self.vin, self.colour, decoded),
                                  name="lmfn-video-read", daemon=True)
        writer: threading.Thread | None = None
        errors: list[BaseException] = []
        started = time.perf_counter()
        reader.start()
        tmp = new_temporary(self.dst)
        try:
            # Packets of other streams that come before the first frame wait for it: the display
            # matrix (read from that frame) must be set before anything is written.
            waiting, item = [], decoded.get()
            while isinstance(item, _Packet):
                waiting.append(item)
                item = decoded.get()
            if not isinstance(item, _Frame):
                problem = item.problem if isinstance(item, _Broken) else "has no frames that decode"
                raise VideoError(self.src, problem)
            out = av.open(str(tmp), "w", format=self.muxer)
            try:
                vout, mapped = self._streams(out, item.matrix)
                writer = threading.Thread(target=_encode, args=(out, vout, mapped, self.pix_fmt, self.colour,
                                                                self.vin.time_base, to_encode, errors),
                                          name="lmfn-video-write", daemon=True)
                writer.start()
                for packet in waiting:
                    self._send(to_encode, packet, mapped, errors)
                broken = self._deblur_all(item, decoded, to_encode, mapped, errors)
                self._send(to_encode, _END, {}, errors)
                writer.join()
                if errors:
                    raise errors[0]
            finally:
                stop.set()
                if writer is not None:
                    writer.join()
                out.close()
            if broken is not None:
                kept = partial_name(self.dst)
                publish(tmp, kept, overwrite=overwrite)
                raise VideoError(self.src, f"{broken.problem}; the {self.frames} frames before it are in {kept}")
            publish(tmp, self.dst, overwrite=overwrite)
        except (LMFNError, KeyboardInterrupt):
            raise
        except Exception as exc:
            raise VideoError(self.src, f"cannot write {self.dst}: {_message(exc)}") from None
        finally:
            stop.set()
            reader.join(timeout=10)
            tmp.unlink(missing_ok=True)
        seconds = time.perf_counter() - started
        w, h = self.vin.codec_context.width, self.vin.codec_context.height
        return VideoResult(self.frames, round(seconds, 3), round(self.frames / seconds, 3), round(self.model_seconds, 3),
                           (w, h), self.encoder.name, self.pix_fmt, self.ran[0], str(self.ran[1]), self.ran[2])

    def _streams(self, out, display_matrix: list[int] | None):
        """The output's encoded video stream and {input index: copied stream} for the others."""
        vin, ctx = self.vin, self.vin.codec_context
        out.metadata.update(self.container.metadata)
        vout = out.add_stream(self.encoder.name, rate=vin.average_rate or vin.guessed_rate or Fraction(30))
        vout.width, vout.height, vout.pix_fmt = ctx.width, ctx.height, self.pix_fmt
        vout.time_base = vin.time_base  # the input's pts are written as they are
        oc = vout.codec_context
        oc.time_base = vin.time_base
        for name in ("color_primaries", "color_trc", "colorspace", "color_range"):
            setattr(oc, name, getattr(ctx, name))
        if ctx.sample_aspect_ratio:
            oc.sample_aspect_ratio = ctx.sample_aspect_ratio
        if self.encoder.name in _CRF:
            vout.options = {"crf": str(self.video.crf), **({"b:v": "0"} if "vpx" in self.encoder.name else {})}
        vout.metadata.update({k: v for k, v in vin.metadata.items() if k not in ("encoder", "rotate")})
        if display_matrix:
            vout.set_display_matrix(display_matrix)
        mapped = {}
        for s in self.container.streams:
            if s.index == vin.index:
                continue
            try:
                mapped[s.index] = out.add_stream_from_template(s)
            except Exception as exc:
                log.warning("%s: stream %d (%s) cannot go into %s; left out: %s", self.src, s.index, s.type,
                            self.muxer, _message(exc))
        return vout, mapped

    def _send(self, pipe: _Pipe, item, mapped: dict, errors: list) -> None:
        if isinstance(item, _Packet) and item.packet.stream.index not in mapped:
            return
        if not pipe.put(item) and errors:
            raise errors[0]

    def _deblur_all(self, item, decoded: _Pipe, to_encode: _Pipe, mapped: dict, errors: list) -> _Broken | None:
        """Run every frame through the network, in batches on CUDA; returns where it broke."""
        per_call = max(1, self.video.batch) if next(self.model.parameters()).device.type == "cuda" else 1
        total = self.vin.frames or None
        pending: list = []  # frames and packets in file order; sent once the frames have run

        def flush() -> None:
            frames = [f for f in pending if isinstance(f, _Frame)]
            if frames:
                t0 = time.perf_counter()
                if len(frames) == 1:
                    done = restore(self.model, frames[0].pixels, tile=self.tile, precision=self.precision,
                                   **({} if self.overlap is None else {"overlap": self.overlap}))
                    results, self.ran = [done.pixels], (done.tile, done.device, done.precision)
                else:
                    results, self.ran = restore_batch(self.model, [f.pixels for f in frames], precision=self.precision)
                self.model_seconds += time.perf_counter() - t0
                restored = {f.index: pixels for f, pixels in zip(frames, results)}
            for entry in pending:
                if isinstance(entry, _Frame):
                    self._send(to_encode, _Frame(entry.index, entry.pts, restored[entry.index]), mapped, errors)
                    self.frames += 1
                    if self.on_frame:
                        self.on_frame(self.frames, total)
                else:
                    self._send(to_encode, entry, mapped, errors)
            pending.clear()

        waiting = 0
        while True:
            if isinstance(item, (_Frame, _Packet)):
                pending.append(item)
                waiting += isinstance(item, _Frame)
                if waiting >= per_call:
                    flush()
                    waiting = 0
            else:
                flush()
                if errors:
                    raise errors[0]
                return item if isinstance(item, _Broken) else None
            item = decoded.get()
