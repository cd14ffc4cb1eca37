"""CPU speed and memory of LMFN inference: the plain eager forward against the tool's path.

    python benchmarks/cpu_speed.py [--threads N] [--skip-big] [--skip-batch] [--batch 50]

Prints, in one run (figures for issue 7 and the README):

- seconds per 1280x720 frame, side by side: eager fp32 (``torch.no_grad``, default layout), the
  same forward channels-last, eager bf16 autocast, the fused CPU graph of ``lmfn_cli.fused`` in
  fp32 and its bf16 twin (``lmfn_cli.restore`` with ``precision="fp32"`` / ``"bf16"``), 5 runs
  each in turn after a warm-up (median, min, max), megapixels per second, the CPU and which
  precision ``--precision auto`` chose, and how far bf16 is from fp32; ONNX Runtime too when
  ``lmfn[onnx]`` is installed;
- whole image against tiles: throughput for 1920x1080 whole and in 1024 / 512 px tiles, and
  for 3000x2000 whole and in 1024 / 512 px tiles;
- peak RSS of ``lmfn deblur`` on a 1280x720, a 3000x2000, a 6000x4000 and a 9000x6000 PNG (a fresh process:
  decode, the default auto tiling, encode, write; model and torch included);
- a batch of ``--batch`` 1280x720 PNG files through ``lmfn deblur`` (decode, deblur, encode,
  write) against the pure compute time of the same number of frames.

The images are synthetic (smooth shapes plus noise): speed does not depend on content. Pause
other work on the machine while it runs; the figures are one machine's.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from lmfn_cli import load_model, restore
from lmfn_cli.inference import resolve_precision, use_channels_last
from lmfn_cli.precision import native_bf16_flags
from lmfn_cli.images import write_image


def synthetic(h: int, w: int, seed: int = 0) -> np.ndarray:
    """(h,w,3) uint8: smooth colour gradients and noise, like a photo to a convolution."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([np.sin(xx / 37.0), np.cos(yy / 23.0), np.sin((xx + yy) / 51.0)], axis=2)
    img = 127.5 + 90 * base + rng.normal(0, 12, (h, w, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def best_of(fn, n: int = 3) -> tuple[float, object]:
    out = fn()  # warm-up
    times = []
    for _ in range(n):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return min(times), out


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def forward_speed(rounds: int = 5) -> float:
    """Every CPU path run in turn (after a warm-up of each), so drifts in the machine's speed hit
    all alike; medians compared: the plain eager forward (fp32 NCHW), the same channels-last, eager
    bf16 autocast, the fused graph in fp32 and its bf16 twin (``restore(precision=...)``)."""
    image = synthetic(720, 1280)
    x = torch.from_numpy(image).permute(2, 0, 1).unsqueeze(0).float() / 255
    plain = load_model(device="cpu")  # a fresh model: default (NCHW) layout
    nhwc = use_channels_last(load_model(device="cpu"))
    x_nhwc = x.contiguous(memory_format=torch.channels_last)
    tool = load_model(device="cpu")
    f32 = image.astype(np.float32) / 255  # a float image comes back as float: compare unrounded
    auto = resolve_precision("auto", torch.device("cpu"))

    def eager():
        with torch.no_grad():
            return plain(x).clamp(0, 1)

    def channels_last():
        with torch.inference_mode():
            return nhwc(x_nhwc).clamp(0, 1)

    def eager_bf16():
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            return nhwc(x_nhwc).float().clamp(0, 1)

    def fused_fp32():
        return restore(tool, f32, tile=0, precision="fp32").pixels

    def fused_bf16():
        return restore(tool, f32, tile=0, precision="bf16").pixels

    paths = {"eager": eager, "nhwc": channels_last, "eager-bf16": eager_bf16, "fp32": fused_fp32, "bf16": fused_bf16}
    outputs = {name: fn() for name, fn in paths.items()}
    times = {name: [] for name in paths}
    for _ in range(rounds):
        for name, fn in paths.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    med = {name: float(np.median(t)) for name, t in times.items()}
    ref = outputs["eager"][0].permute(1, 2, 0).numpy()
    mp = 1280 * 720 / 1e6
    labels = {"eager": "eager fp32 (no_grad, NCHW)",
              "nhwc": "eager fp32 channels-last (inference_mode)",
              "eager-bf16": "eager bf16 autocast, channels-last",
              "fp32": "fused fp32 (restore --precision fp32: lmfn_cli.fused)",
              "bf16": "fused bf16 (restore --precision bf16: the fused graph's bf16 twin)"}
    print(f"CPU: {cpu_name()}; native bf16 flags: {', '.join(native_bf16_flags()) or 'none'}; "
          f"--precision auto chose {auto}\n")
    print(f"| path ({rounds} runs each, in turn) | median s per 1280x720 frame | min | max | MP/s | vs fused fp32 |")
    print("|---|---|---|---|---|---|")
    for name, label in labels.items():
        t = times[name]
        print(f"| {label}{' (auto)' if name == auto else ''} | {med[name]:.3f} | {min(t):.3f} | {max(t):.3f} | "
              f"{mp / med[name]:.2f} | {med['fp32'] / med[name]:.2f}x |")
    diff = float(np.abs(ref - outputs["fp32"]).max())
    a8, b8 = (np.rint(np.clip(outputs[k], 0, 1) * 255) for k in ("fp32", "bf16"))
    within = float((np.abs(a8 - b8) <= 1).mean())
    mse = float(((np.clip(outputs["fp32"], 0, 1) - np.clip(outputs["bf16"], 0, 1)) ** 2).mean())
    print(f"fused fp32 vs eager: max |difference| {diff:.2e}; fused bf16 vs fused fp32 on this synthetic frame: "
          f"{within:.4%} of values within 1 level, {10 * np.log10(1 / max(mse, 1e-20)):.1f} dB "
          f"(tests/test_fused.py holds a photo to >= 99.9 % and >= 50 dB)")
    print(f"auto ({auto}) vs fused fp32: {med['fp32'] / med[auto]:.2f}x faster (medians)")
    fast = fused_bf16 if auto == "bf16" else fused_fp32
    try:
        import onnxruntime  # noqa: F401
        import onnx  # noqa: F401
    except ImportError:
        print("(ONNX Runtime path skipped: pip install 'lmfn[onnx]')\n")
        return med[auto]
    from lmfn_cli.onnxrt import OnnxLMFN, export_onnx

    with tempfile.TemporaryDirectory() as tmp:
        ort = OnnxLMFN(export_onnx(tool, Path(tmp) / "lmfn.onnx"))
        y_ort = restore(ort, f32, tile=0).pixels
        t_ort, t_tool = [], []
        for _ in range(rounds):  # in turn with the tool's path again: the two are close
            for fn, sink in ((lambda: restore(ort, f32, tile=0), t_ort), (fast, t_tool)):
                start = time.perf_counter()
                fn()
                sink.append(time.perf_counter() - start)
    o, t = float(np.median(t_ort)), float(np.median(t_tool))
    print(f"ONNX Runtime (`lmfn export --onnx`, then -w FILE.onnx): median {o:.3f} s, {mp / o:.2f} MP/s, "
          f"against the tool's {t:.3f} s in turn with it; max |difference| to eager "
          f"{float(np.abs(y_ort - ref).max()):.2e}\n")
    return med[auto]


def tiling_speed() -> None:
    """Best of 2 runs each (after a warm-up), whole image against the tile sizes."""
    model = load_model(device="cpu")
    print("| image | tiles | s | MP/s | throughput vs whole |")
    print("|---|---|---|---|---|")
    for (h, w), tiles in (((1080, 1920), (0, 1024, 512)), ((2000, 3000), (0, 1024, 512))):
        image = synthetic(h, w, seed=1)
        mp = h * w / 1e6
        rows = [(tile, best_of(lambda: restore(model, image, tile=tile), n=2)[0]) for tile in tiles]
        whole = rows[0][1]
        for tile, t in rows:
            print(f"| {w}x{h} | {'whole' if tile == 0 else f'{tile} px'} | {t:.2f} | {mp / t:.2f} | {whole / t:.0%} |")
    print()


# Runs `lmfn` and records the process's own peak RSS (VmHWM: per address space, so unlike
# ru_maxrss it does not include the benchmark's memory inherited across fork/exec).
_HWM_WRAPPER = """
import atexit, os, sys
def _hwm():
    with open("/proc/self/status") as f, open(os.environ["LMFN_HWM_FILE"], "w") as out:
        out.write(next(line for line in f if line.startswith("VmHWM")).split()[1])
atexit.register(_hwm)
from lmfn_cli.cli import main
sys.argv = ["lmfn", *sys.argv[1:]]
main()
"""


def peak_rss(threads: int, sizes: list[tuple[int, int]]) -> None:
    """Peak RSS of ``lmfn deblur IMAGE.png -o DIR`` in a fresh process (decode, auto tiling,
    encode, write; the model and torch included)."""
    print("| image (PNG file through lmfn deblur) | peak RSS | wall |")
    print("|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for h, w in sizes:
            src = Path(tmp) / f"{w}x{h}.png"
            write_image(src, synthetic(h, w))
            hwm = Path(tmp) / "hwm"
            cmd = [sys.executable, "-c", _HWM_WRAPPER, "deblur", str(src), "-o", str(Path(tmp) / "out"), "-q",
                   "--device", "cpu", "--threads", str(threads), "--overwrite"]
            start = time.perf_counter()
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env={**os.environ, "LMFN_HWM_FILE": str(hwm)})
            wall = time.perf_counter() - start
            print(f"| {w}x{h} | {int(hwm.read_text()) / 2**20:.2f} GiB | {wall:.1f} s |")
    print()


def batch_speed(n: int, per_frame: float, threads: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in"
        src.mkdir()
        for i in range(n):
            write_image(src / f"frame{i:03d}.png", synthetic(720, 1280, seed=100 + i))
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "lmfn_cli", "deblur", str(src), "-o", str(Path(tmp) / "out"), "-q",
                        "--device", "cpu", "--threads", str(threads)], check=True, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - start
    compute = n * per_frame
    print(f"batch of {n} 1280x720 PNGs through `lmfn deblur` (start-up, decode, deblur, encode, write): "
          f"{wall:.1f} s = {wall / n:.2f} s per image; pure compute {compute:.1f} s; ratio {wall / compute:.2f}\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--skip-big", action="store_true", help="no 3000x2000 / 6000x4000 RSS runs")
    ap.add_argument("--skip-batch", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs\n")
    per_frame = forward_speed()
    tiling_speed()
    sizes = [(720, 1280)] + ([] if args.skip_big else [(2000, 3000), (4000, 6000), (6000, 9000)])
    peak_rss(args.threads, sizes)
    if not args.skip_batch:
        batch_speed(args.batch, per_frame, args.threads)
    print(json.dumps({"per_frame_s": round(per_frame, 3)}))


if __name__ == "__main__":
    main()
