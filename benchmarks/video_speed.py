"""Video throughput: frames per second of ``lmfn deblur`` on a 720p clip, beside images.

    python benchmarks/video_speed.py [--frames 24] [--size 1280x720] [--device auto] [--threads N]

Makes a synthetic clip (a slow pan over smooth shapes plus noise, x264 crf 18, 30 fps, with an
AAC track), then measures, with the default weights:

- the video through ``video.deblur_video`` (decode, network and encode in three threads):
  frames per second, and the share of the wall time spent in the network (the goal on a CPU
  is more than 95%: decoding and encoding hide behind it);
- the same frames as PNG files through ``batch.run_batch`` (decode, network, encode and write
  of images): images per second;
- the network alone on one frame (``restore``, median of 3 after a warm-up).

On CUDA, frames run in batches of ``--batch``. Pause other work on the machine while it runs:
the figures are one machine's.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from lmfn_cli import load_model, restore
from lmfn_cli.batch import BatchOptions, run_batch
from lmfn_cli.images import write_image
from lmfn_cli.inference import resolve_device
from lmfn_cli.video import VideoSettings, deblur_video


def synthetic_frames(n: int, w: int, h: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0: w + 4 * n].astype(np.float32)
    base = np.stack([np.sin(xx / 37) + np.cos(yy / 23), np.sin((xx + yy) / 51), np.cos(xx / 19 - yy / 41)], -1)
    base = (base - base.min()) / (base.max() - base.min()) * 200 + 20
    base += rng.normal(0, 4, base.shape)
    base = np.clip(base, 0, 255).astype(np.uint8)
    return [np.ascontiguousarray(base[:, 4 * i: 4 * i + w]) for i in range(n)]


def make_clip(path: Path, frames: list[np.ndarray]) -> None:
    import av

    h, w = frames[0].shape[:2]
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=30)
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        vs.options = {"crf": "18"}
        audio = out.add_stream("aac", rate=48000)
        audio.layout = "stereo"
        for i, img in enumerate(frames):
            f = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv420p")
            f.pts, f.time_base = i, Fraction(1, 30)
            out.mux(vs.encode(f))
        out.mux(vs.encode(None))
        samples = int(48000 * len(frames) / 30)
        for k in range(0, samples, 1024):
            seg = np.zeros((2, min(1024, samples - k)), np.float32).reshape(1, -1)
            af = av.AudioFrame.from_ndarray(seg, format="flt", layout="stereo")
            af.sample_rate, af.pts = 48000, k
            out.mux(audio.encode(af))
        out.mux(audio.encode(None))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=24)
    ap.add_argument("--size", default="1280x720")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--batch", type=int, default=4, help="frames per network call on CUDA")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    w, h = (int(v) for v in args.size.lower().split("x"))
    device = resolve_device(args.device)
    model = load_model(device=device)
    frames = synthetic_frames(args.frames, w, h)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_clip(tmp / "clip.mp4", frames)
        for f in frames[:1]:
            restore(model, f)  # warm-up
        alone = []
        for f in frames[:3]:
            t0 = time.perf_counter()
            restore(model, f)
            alone.append(time.perf_counter() - t0)
        done = deblur_video(model, tmp / "clip.mp4", tmp / "out" / "clip.mp4", VideoSettings(batch=args.batch))
        for i, f in enumerate(frames):
            write_image(tmp / "png" / f"{i:04d}.png", f)
        t0 = time.perf_counter()
        records = list(run_batch([str(tmp / "png")], tmp / "png-out", BatchOptions(), model=model))
        image_seconds = time.perf_counter() - t0
    ok = sum(r.status == "ok" for r in records)
    print(f"# video speed: {args.frames} frames of {w}x{h}, {device}, torch threads {torch.get_num_threads()}\n")
    print("| path | frames | wall s | frames/s | network share |\n|---|---|---|---|---|")
    print(f"| video (`deblur_video`, x264 crf 18, audio copied) | {done.frames} | {done.seconds:.1f} | {done.fps:.3f} | "
          f"{100 * done.model_seconds / done.seconds:.1f}% |")
    print(f"| the same frames as PNG files (`run_batch`) | {ok} | {image_seconds:.1f} | {ok / image_seconds:.3f} | |")
    print(f"| the network alone, one frame (`restore`, median of 3) | 1 | {statistics.median(alone):.2f} | "
          f"{1 / statistics.median(alone):.3f} | 100% |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
