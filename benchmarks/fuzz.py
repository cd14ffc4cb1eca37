"""A seeded mutation fuzzer for what lmfn reads: every case through ``read_picture``, some
through the real ``lmfn deblur`` process.

    python benchmarks/fuzz.py --cases 10000 [--seed 1] [--cli 300] [--save-crashes DIR]

Seeds are valid files of every kind we read, made here: 8- and 16-bit PNG with iCCP, eXIf, pHYs
and tRNS, palette, gray + alpha and 1-bit PNG, APNG, JPEG with EXIF orientation and ICC, CMYK and
progressive JPEG, 8- and 16-bit TIFF (LZW, Deflate, tiled, multi-page, LAB), WebP (lossy, and
lossless with alpha), 24- and 32-bit BMP, and an animated GIF (a format we refuse). Each case is
a seed with one to three mutations: bit flips, interesting byte values, truncation anywhere or at
a chunk/marker boundary, chunk lengths and CRCs that lie, header dimensions up to 2^32-1, a
slice duplicated. Structured cases are added once each: an IDAT zlib bomb, a 60000x60000 header
on a 100-byte file, an oversized eXIf chunk, an iCCP zlib bomb, malformed EXIF.

Cases run in a separate worker process (a crash of a C decoder would kill it: that is counted,
and the worker restarted), one at a time with a timeout. A case passes when ``read_picture``
returns a picture or raises ``ImageError``; anything else (another exception, a dead worker, a
timeout) is a crash. The report (stdout) gives cases by seed format and outcome, crashes, the
worker's peak RSS and the slowest case. ``--cli N`` also writes N cases to a folder and runs
``lmfn deblur`` on it: no traceback, one ``lmfn: error:`` line per bad file naming it, exit
code 1 when any failed, and an output for every case ``read_picture`` accepted.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from collections import Counter, defaultdict
from multiprocessing import Pipe, Process
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SUFFIX = {"png": ".png", "jpg": ".jpg", "tiff": ".tif", "webp": ".webp", "bmp": ".bmp", "gif": ".gif"}


# --------------------------------------------------------------------------------------------
# Seeds: valid files of every kind we read
# --------------------------------------------------------------------------------------------


def _pixels(h: int, w: int, c: int, dtype=np.uint8, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    top = 255 if dtype == np.uint8 else 65535
    y, x = np.mgrid[0:h, 0:w]
    base = (x * top // max(1, w - 1) + y * 7) % (top + 1)
    img = np.stack([base, base[::-1], (base + top // 3) % (top + 1)][:c] + [np.full_like(base, top * 3 // 4)] * max(0, c - 3), -1)
    img = img + rng.integers(0, max(2, top // 50), img.shape)
    return np.clip(img, 0, top).astype(dtype)


def _srgb_icc() -> bytes:
    from PIL import ImageCms

    icc = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    icc[24:36] = struct.pack(">6H", 2026, 1, 1, 0, 0, 0)  # the creation date, fixed: seeds stay the same bytes
    return bytes(icc)


def _exif(orientation: int) -> bytes:
    from PIL import Image

    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "lmfn fuzz"
    return exif.tobytes()


def seeds() -> dict[str, tuple[str, bytes]]:
    """{seed name: (format, file bytes)}, all valid and small (at most 48x40 pixels)."""
    import imagecodecs
    import tifffile
    from PIL import Image

    from lmfn_cli.images import Picture, encode_picture

    icc = _srgb_icc()
    out: dict[str, tuple[str, bytes]] = {}

    def pil(name: str, fmt: str, img, **kw) -> None:
        buf = io.BytesIO()
        img.save(buf, format={"jpg": "JPEG", "png": "PNG", "tiff": "TIFF", "webp": "WEBP", "bmp": "BMP",
                              "gif": "GIF"}[fmt], **kw)
        out[name] = (fmt, buf.getvalue())

    rgb = _pixels(40, 48, 3)
    out["png8-rgb-iccp-exif-phys"] = ("png", encode_picture(Picture(rgb, "png", icc, _exif(6), (300.0, 300.0)), "png"))
    out["png16-rgba-iccp-exif-phys"] = ("png", encode_picture(
        Picture(_pixels(40, 48, 4, np.uint16), "png", icc, _exif(3), (72.0, 72.0)), "png"))
    out["png16-gray"] = ("png", encode_picture(Picture(_pixels(40, 48, 1, np.uint16)[..., 0], "png"), "png"))
    pal = Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    pil("png-palette-trns", "png", pal, transparency=3)
    pil("png-gray-alpha", "png", Image.fromarray(_pixels(40, 48, 2)[..., :2], "LA"))
    pil("png-1bit", "png", Image.fromarray(rgb[..., 0] > 128))
    pil("png-rgb-trns", "png", Image.fromarray(rgb), transparency=(10, 20, 30))
    frames = [Image.fromarray(np.roll(rgb, k, axis=1)) for k in (0, 5, 10)]
    pil("apng-3-frames", "png", frames[0], save_all=True, append_images=frames[1:], duration=40)
    pil("jpeg-exif-icc", "jpg", Image.fromarray(rgb), quality=90, exif=_exif(8), icc_profile=icc)
    pil("jpeg-cmyk", "jpg", Image.fromarray(rgb).convert("CMYK"), quality=85)
    pil("jpeg-progressive-gray", "jpg", Image.fromarray(rgb[..., 1]), quality=80, progressive=True)
    pil("tiff8-rgb-lzw", "tiff", Image.fromarray(rgb), compression="tiff_lzw")
    pil("tiff8-lab", "tiff", Image.frombytes("LAB", (48, 40), rgb.tobytes()))
    for name, kw in {"tiff16-rgb-deflate": dict(compression="zlib"), "tiff16-rgb-tiled": dict(tile=(16, 16)),
                     "tiff16-rgb-lzw": dict(compression="lzw")}.items():
        buf = io.BytesIO()
        tifffile.imwrite(buf, _pixels(40, 48, 3, np.uint16), photometric="rgb", metadata=None, **kw)
        out[name] = ("tiff", buf.getvalue())
    buf = io.BytesIO()
    with tifffile.TiffWriter(buf) as tw:
        for k in range(2):
            tw.write(_pixels(40, 48, 3, np.uint16, seed=k), photometric="rgb", metadata=None)
    out["tiff16-multipage"] = ("tiff", buf.getvalue())
    pil("webp-lossy", "webp", Image.fromarray(rgb), quality=80)
    pil("webp-lossless-alpha", "webp", Image.fromarray(_pixels(40, 48, 4)), lossless=True)
    pil("bmp24", "bmp", Image.fromarray(rgb))
    out["bmp32-alpha"] = ("bmp", imagecodecs.bmp_encode(_pixels(40, 48, 4)))
    pil("gif-animated", "gif", frames[0], save_all=True, append_images=frames[1:], duration=40)
    return out


# --------------------------------------------------------------------------------------------
# Structure: where the chunks, markers and dimensions are
# --------------------------------------------------------------------------------------------


def png_chunks(data: bytes) -> list[tuple[int, int, bytes]]:
    """[(offset of the length field, declared length, type)] of a PNG's chunks, as far as they parse."""
    out, pos = [], 8
    while pos + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, pos)
        out.append((pos, length, kind))
        pos += 12 + length
    return out


def jpeg_markers(data: bytes) -> list[int]:
    return [i for i in range(len(data) - 1) if data[i] == 0xFF and data[i + 1] not in (0x00, 0xFF)]


def boundaries(fmt: str, data: bytes) -> list[int]:
    if fmt == "png" and data[:4] == b"\x89PNG":
        cuts = [8]
        for pos, length, _ in png_chunks(data):
            cuts += [pos, pos + 8, pos + 8 + length, pos + 12 + length]
        return [c for c in cuts if 0 < c < len(data)]
    if fmt == "jpg":
        return jpeg_markers(data)
    return [len(data) * k // 16 for k in range(1, 16)]


def _tiff_dimension_fields(data: bytes) -> list[tuple[int, str]]:
    """(offset, struct format) of the first IFD's ImageWidth/ImageLength values (classic TIFF)."""
    if data[:4] not in (b"II*\0", b"MM\0*"):
        return []
    e = "<" if data[:2] == b"II" else ">"
    (ifd,) = struct.unpack_from(e + "I", data, 4)
    if ifd + 2 > len(data):
        return []
    (n,) = struct.unpack_from(e + "H", data, ifd)
    fields = []
    for k in range(min(n, 64)):
        at = ifd + 2 + 12 * k
        if at + 12 > len(data):
            break
        tag, typ = struct.unpack_from(e + "HH", data, at)
        if tag in (256, 257):
            fields.append((at + 8, e + ("H" if typ == 3 else "I")))
    return fields


def dimension_fields(fmt: str, data: bytes) -> list[tuple[int, str]]:
    """(offset, struct format) of the fields that hold the image's width and height."""
    if fmt == "png" and data[:4] == b"\x89PNG":
        return [(16, ">I"), (20, ">I")]
    if fmt == "jpg":
        for i in jpeg_markers(data):
            if data[i + 1] in (0xC0, 0xC1, 0xC2) and i + 9 <= len(data):
                return [(i + 5, ">H"), (i + 7, ">H")]
        return []
    if fmt == "bmp":
        return [(18, "<i"), (22, "<i")]
    if fmt == "tiff":
        return _tiff_dimension_fields(data)
    return []


# --------------------------------------------------------------------------------------------
# Mutations
# --------------------------------------------------------------------------------------------

INTERESTING = (0x00, 0x01, 0x7F, 0x80, 0xFF, 0xFE, 0x10, 0x20, 0x40)
HUGE = (0, 1, 65535, 65536, 60000, 2**31 - 1, 2**31, 2**32 - 1)


def mutate(fmt: str, data: bytes, rng: random.Random) -> tuple[str, bytes]:
    """One mutation of ``data`` (a ``fmt`` file); returns (its kind, the new bytes)."""
    b = bytearray(data)
    kinds = ["bitflip", "bytes", "truncate", "truncate-boundary", "duplicate", "dimensions"]
    if fmt == "png" and data[:4] == b"\x89PNG" and png_chunks(data):
        kinds += ["chunk-length", "chunk-crc"]
    kind = rng.choice(kinds)
    if not b:
        return "empty", b""
    if kind == "bitflip":
        for _ in range(rng.randint(1, 8)):
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
    elif kind == "bytes":
        for _ in range(rng.randint(1, 4)):
            b[rng.randrange(len(b))] = rng.choice(INTERESTING)
    elif kind == "truncate":
        b = b[: rng.randrange(len(b))]
    elif kind == "truncate-boundary":
        cuts = boundaries(fmt, data) or [len(b) // 2]
        b = b[: rng.choice(cuts)]
    elif kind == "duplicate":
        i, j = sorted(rng.randrange(len(b)) for _ in range(2))
        k = rng.randrange(len(b))
        b[k:k] = b[i : j + 1][:4096]
    elif kind == "dimensions":
        fields = dimension_fields(fmt, data)
        if not fields:
            return mutate(fmt, data, rng)
        for at, f in rng.sample(fields, rng.randint(1, len(fields))):
            size = struct.calcsize(f)
            top = 2 ** (8 * size) - 1
            value = rng.choice([v for v in HUGE if v <= top] + [rng.randint(0, top)])
            if f.endswith("i"):
                value = value - 2**32 if value >= 2**31 else value
            if at + size <= len(b):
                struct.pack_into(f, b, at, value)
    elif kind == "chunk-length":
        pos, length, _ = rng.choice(png_chunks(data))
        lie = rng.choice([length + 1, length - 1, 2**31 - 1, 2**32 - 1, 0, rng.randint(0, 2**32 - 1)])
        struct.pack_into(">I", b, pos, lie % 2**32)
    elif kind == "chunk-crc":
        pos, length, _ = rng.choice(png_chunks(data))
        at = pos + 8 + length
        if at + 4 <= len(b):
            struct.pack_into(">I", b, at, rng.randint(0, 2**32 - 1))
    return kind, bytes(b)


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def _png(width: int, height: int, idat: bytes, extra: bytes = b"", depth: int = 8, colour: int = 0) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + extra + _png_chunk(b"IDAT", idat)
            + _png_chunk(b"IEND", b""))


def structured() -> dict[str, tuple[str, bytes]]:
    """Hand-made hostile files, each run once: bombs, lying headers, oversized metadata."""
    row = 9000
    bomb = zlib.compress(b"\0" * ((row + 1) * 2000), 9)  # 2000 rows of 9000 gray pixels, ~18 MB
    icc_bomb = zlib.compress(b"\0" * 200_000_000, 9)  # 200 MB of ICC profile, ~200 KB
    tiny = _png(60000, 60000, zlib.compress(b"\0" * 16))
    return {
        "idat-zlib-bomb-under-the-limit": ("png", _png(row, 2000, bomb)),
        "idat-zlib-bomb-claims-60000x60000": ("png", _png(60000, 60000, bomb)),
        "100-byte-file-claims-60000x60000": ("png", tiny),
        "png16-claims-60000x60000": ("png", _png(60000, 60000, zlib.compress(b"\0" * 16), depth=16, colour=2)),
        "exif-chunk-4mb": ("png", _png(8, 8, zlib.compress(b"\0" * 72), _png_chunk(b"eXIf", b"MM\0*" + random.Random(0).randbytes(4 << 20)))),
        "exif-malformed": ("png", _png(8, 8, zlib.compress(b"\0" * 72), _png_chunk(b"eXIf", b"II*\0\xff\xff\xff\xff" + b"\x01" * 64))),
        "iccp-zlib-bomb": ("png", _png(8, 8, zlib.compress(b"\0" * 72), _png_chunk(b"iCCP", b"icc\0\0" + icc_bomb))),
        "iccp-zlib-bomb-16bit": ("png", _png(8, 8, zlib.compress(b"\0" * (8 * (1 + 8 * 6))), _png_chunk(b"iCCP", b"icc\0\0" + icc_bomb),
                                             depth=16, colour=2)),
        "jpeg-only-soi": ("jpg", b"\xff\xd8"),
        "tiff-only-header": ("tiff", b"II*\0\x08\0\0\0"),
        "bmp-only-header": ("bmp", b"BM" + b"\0" * 52),
    }


# --------------------------------------------------------------------------------------------
# Running cases in a worker process
# --------------------------------------------------------------------------------------------


def _worker(conn, memory_limit: int) -> None:
    import resource

    if memory_limit:  # a safety net for the machine; peak RSS is measured and reported anyway
        resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))
    # The decoders' own warnings (libpng writes to fd 2, tifffile logs) would drown the report;
    # what reaches a user is checked through the real command (cli_check) instead.
    import logging

    logging.disable(logging.CRITICAL)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    from lmfn_cli.errors import ImageError
    from lmfn_cli.images import read_picture

    while True:
        data = conn.recv_bytes()
        start = time.perf_counter()
        try:
            pic = read_picture(data, name="case")
            outcome, detail = "ok", f"{pic.pixels.shape} {pic.pixels.dtype}"
        except ImageError as exc:
            outcome, detail = "refused", exc.problem
        except BaseException as exc:  # what must never happen: reported as a crash
            outcome, detail = "crash", f"{type(exc).__name__}: {exc}"[:300]
        rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        conn.send((outcome, detail, time.perf_counter() - start, rss_kb))


class Runner:
    """One worker process, restarted when a case kills it or runs past ``timeout`` seconds."""

    def __init__(self, timeout: float = 20.0, memory_limit: int = 8 << 30):
        self.timeout, self.memory_limit = timeout, memory_limit
        self.proc = None
        self.base_rss_kb = 0

    def _start(self) -> None:
        self.conn, child = Pipe()
        self.proc = Process(target=_worker, args=(child, self.memory_limit), daemon=True)
        self.proc.start()
        child.close()
        self.conn.send_bytes(b"")  # an empty case: the worker's own footprint, before any decoding
        self.base_rss_kb = self.conn.recv()[3]

    def run(self, data: bytes) -> tuple[str, str, float, int]:
        """(outcome, detail, seconds, worker peak RSS KiB); outcome ok/refused/crash/timeout/died."""
        if self.proc is None or not self.proc.is_alive():
            self._start()
        start = time.perf_counter()
        try:
            self.conn.send_bytes(data)
            if self.conn.poll(self.timeout):
                return self.conn.recv()
            outcome, detail = "timeout", f"no answer in {self.timeout:.0f} s"
        except (EOFError, BrokenPipeError, ConnectionResetError):
            outcome, detail = "died", "the worker process died"
        self.proc.join(0.1)
        code = self.proc.exitcode
        self.close()
        if code is not None and code < 0:
            detail += f" (signal {-code})"
        return outcome, detail, time.perf_counter() - start, 0

    def close(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.join()
            self.proc = None


def cases(n: int, seed: int) -> list[tuple[str, str, str, bytes]]:
    """``n`` seeded cases (seed name, format, mutations, bytes) plus every structured case."""
    rng = random.Random(seed)
    pool = seeds()
    out = [(name, fmt, "structured", data) for name, (fmt, data) in structured().items()]
    names = sorted(pool)
    for _ in range(n):
        name = rng.choice(names)
        fmt, data = pool[name]
        kinds = []
        for _ in range(rng.choice((1, 1, 1, 2, 3))):
            kind, data = mutate(fmt, data, rng)
            kinds.append(kind)
        out.append((name, fmt, "+".join(kinds), data))
    return out


def campaign(all_cases: list[tuple[str, str, str, bytes]], timeout: float = 20.0,
             on_case=None) -> dict:
    """Run every case; the figures of the report (and the crashing cases' bytes under ``crashes``)."""
    runner = Runner(timeout)
    by_format: dict[str, Counter] = defaultdict(Counter)
    crashes, slowest, peak = [], (0.0, ""), (0, "")
    outcomes = []
    try:
        for i, (name, fmt, kinds, data) in enumerate(all_cases):
            outcome, detail, seconds, rss = runner.run(data)
            outcomes.append(outcome)
            by_format[fmt][outcome] += 1
            label = f"{name} [{kinds}] ({len(data)} bytes)"
            if outcome not in ("ok", "refused"):
                crashes.append({"case": i, "seed": name, "mutations": kinds, "outcome": outcome, "detail": detail,
                                "bytes": data})
            if seconds > slowest[0]:
                slowest = (seconds, label)
            if rss > peak[0]:
                peak = (rss, label)
            if on_case:
                on_case(i, outcome)
        base = runner.base_rss_kb
    finally:
        runner.close()
    return {"cases": len(all_cases), "by_format": {k: dict(v) for k, v in sorted(by_format.items())},
            "crashes": crashes, "slowest_s": round(slowest[0], 3), "slowest_case": slowest[1],
            "peak_rss_mib": round(peak[0] / 1024, 1), "peak_rss_case": peak[1],
            "worker_base_rss_mib": round(base / 1024, 1), "outcomes": outcomes}


# --------------------------------------------------------------------------------------------
# Through the real command
# --------------------------------------------------------------------------------------------


def tiny_weights(folder: Path) -> Path:
    """A small random LMFN (the command's behaviour, not the network, is under test)."""
    from lmfn_cli import LMFN, LMFNConfig, save_weights

    net = LMFN(LMFNConfig(enc_channels=8, dec_channels=8, esa_channels=4, num_blocks=2))
    return save_weights(net, folder / "tiny.safetensors", variant="fuzz")


def cli_check(sample: list[tuple[str, str, str, bytes]], accepted: list[bool], work: Path) -> dict:
    """Write the cases as files and run ``lmfn deblur`` on the folder; what the process did."""
    src, out = work / "in", work / "out"
    src.mkdir(parents=True)
    names = []
    for i, (_, fmt, _, data) in enumerate(sample):
        name = f"case{i:05d}{SUFFIX[fmt]}"
        (src / name).write_bytes(data)
        names.append(name)
    weights = tiny_weights(work)
    cmd = [sys.executable, "-m", "lmfn_cli", "deblur", str(src), "-o", str(out), "-w", str(weights), "--device", "cpu",
           "--threads", "1", "--tile", "0", "-q"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    lines = proc.stderr.splitlines()
    errors = [line for line in lines if line.startswith("lmfn: error:")]
    other = [line for line in lines if not line.startswith("lmfn: ")]  # ours: errors, warnings, notes, the summary
    written = {p.name.rsplit(".", 1)[0] for p in out.iterdir()} if out.exists() else set()
    expected_ok = {n.rsplit(".", 1)[0] for n, ok in zip(names, accepted) if ok}
    named = all(any(n in e for n in names) for e in errors)
    leftovers = [p.name for p in out.iterdir() if p.name.startswith(".")] if out.exists() else []
    return {
        "files": len(sample), "exit_code": proc.returncode, "seconds": round(time.perf_counter() - start, 1),
        "error_lines": len(errors), "traceback": "Traceback" in proc.stderr, "other_stderr_line_count": len(other),
        "other_stderr_lines": sorted(set(other))[:10],
        "every_error_names_its_file": named, "outputs": len(written), "accepted_by_read_picture": len(expected_ok),
        "outputs_match_accepted": written == expected_ok, "temporary_files_left": leftovers,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=int, default=1000, help="mutated cases (the structured ones are added)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=20.0, help="seconds per case before it counts as a hang")
    ap.add_argument("--cli", type=int, default=0, help="also run this many cases through lmfn deblur (-1: all)")
    ap.add_argument("--save-crashes", type=Path, help="write each crashing case's bytes here")
    ap.add_argument("--json", type=Path, help="write the figures as JSON")
    args = ap.parse_args()
    t0 = time.perf_counter()
    all_cases = cases(args.cases, args.seed)

    def progress(i: int, outcome: str) -> None:
        if (i + 1) % 1000 == 0:
            print(f"{i + 1} cases, {time.perf_counter() - t0:.0f} s", file=sys.stderr)

    res = campaign(all_cases, args.timeout, progress)
    res["wall_s"] = round(time.perf_counter() - t0, 1)
    print(f"# fuzz: {res['cases']} cases ({args.cases} mutated, seed {args.seed}, "
          f"{len(all_cases) - args.cases} structured) in {res['wall_s']} s\n")
    print("| seed format | ok | refused (ImageError) | crash | timeout | died |\n|---|---|---|---|---|---|")
    for fmt, c in res["by_format"].items():
        print(f"| {fmt} | {c.get('ok', 0)} | {c.get('refused', 0)} | {c.get('crash', 0)} | {c.get('timeout', 0)} | "
              f"{c.get('died', 0)} |")
    print(f"\ncrashes: {len(res['crashes'])}")
    for c in res["crashes"][:20]:
        print(f"- case {c['case']}: {c['seed']} [{c['mutations']}]: {c['outcome']}: {c['detail']}")
    print(f"peak RSS of the worker: {res['peak_rss_mib']} MiB (its own footprint before any case "
          f"{res['worker_base_rss_mib']} MiB), at {res['peak_rss_case']}")
    print(f"slowest case: {res['slowest_s']} s, {res['slowest_case']}")
    if args.save_crashes and res["crashes"]:
        args.save_crashes.mkdir(parents=True, exist_ok=True)
        for c in res["crashes"]:
            (args.save_crashes / f"case{c['case']:05d}-{c['seed']}.bin").write_bytes(c["bytes"])
    if args.cli:
        rng = random.Random(args.seed + 1)
        n = len(all_cases) if args.cli < 0 else min(args.cli, len(all_cases))
        picks = sorted(rng.sample(range(len(all_cases)), n))
        sample = [all_cases[i] for i in picks]
        accepted = [res["outcomes"][i] == "ok" for i in picks]
        with tempfile.TemporaryDirectory() as tmp:
            res["cli"] = cli_check(sample, accepted, Path(tmp))
        print("\nthrough `lmfn deblur`: " + json.dumps(res["cli"]))
    if args.json:
        slim = {k: v for k, v in res.items() if k != "outcomes"}
        slim["crashes"] = [{k: v for k, v in c.items() if k != "bytes"} for c in res["crashes"]]
        args.json.write_text(json.dumps(slim, indent=2) + "\n")
    ok = not res["crashes"] and (not args.cli or (not res["cli"]["traceback"] and res["cli"]["outputs_match_accepted"]
                                                  and not res["cli"]["other_stderr_line_count"]))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
