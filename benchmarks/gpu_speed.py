"""Milliseconds per 1280x720 frame on a GPU, beside the paper's 19 ms, for each precision and path.

    python benchmarks/gpu_speed.py                  # CUDA, the default weights
    python benchmarks/gpu_speed.py --device cpu --rounds 1 --size 96x64   # a check of the script on a CPU

For fp32, fp16 and bf16, after warm-up runs, it times ``--rounds`` runs (median, min) of:

- eager: ``model(x)`` on a tensor already on the device, NCHW, ``torch.inference_mode`` and
  autocast for fp16/bf16, cuDNN autotuning off: the plain PyTorch forward;
- the tool's path without CUDA graphs (``LMFN_CUDA_GRAPHS=0``): ``lmfn_cli.restore`` on a uint8
  frame: host->device copy, channels-last, cuDNN autotuning, autocast, clamp, copy back, rounding;
- the tool's path (``restore``, CUDA graphs on: the frame's shape captured once, then replayed);
- a batch of ``--batch`` frames through ``restore_batch`` (what ``lmfn deblur`` does with a
  video's frames), per frame;

and the largest difference of the tool's output from eager fp32's, in 8-bit levels (a wrongly
replayed graph shows here). It also prints what ``--precision auto`` picks on this device. The
paper reports 0.019 s per GoPro frame (1280x720) for LMFN on an NVIDIA 2080 Ti (its section 4.1):
another GPU, so the comparison is one of magnitude. The frames are synthetic: speed does not
depend on content.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from lmfn_cli import load_model, restore
from lmfn_cli.inference import _DTYPES, resolve_precision, restore_batch

PAPER_MS = 19.0  # Tables 1 and 2, "Time", NVIDIA 2080 Ti


def timed(fn, device: torch.device, rounds: int, warmup: int = 3) -> list[float]:
    """Seconds per call of ``fn``, synchronised with the GPU around each."""

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(warmup):
        fn()
    times = []
    for _ in range(rounds):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return times


def cell(seconds: list[float], per: int = 1) -> str:
    return f"{1000 * np.median(seconds) / per:.1f} ({1000 * min(seconds) / per:.1f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--batch", type=int, default=4, help="frames per restore_batch call")
    ap.add_argument("--size", default="1280x720", help="WxH of the frames (the paper's figure is for 1280x720)")
    ap.add_argument("--weights", default=None, help="a weights file (default: the bundled default)")
    args = ap.parse_args()
    device = torch.device(args.device)
    model = load_model(args.weights, device=str(device))
    rng = np.random.default_rng(0)
    width, height = (int(v) for v in args.size.lower().split("x"))
    frames = [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(args.batch)]
    frame = frames[0]
    x = torch.from_numpy(frame).permute(2, 0, 1)[None].float().div(255).to(device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"torch {torch.__version__}, {name}; --precision auto picks {resolve_precision('auto', device)} here; "
          f"paper: {PAPER_MS:.0f} ms per 1280x720 frame on a 2080 Ti\n")
    print(f"| precision | eager (NCHW) | tool, no CUDA graphs | tool (restore) | batch of {args.batch} (per frame) | "
          "tool vs eager fp32 (max levels) |")
    print("|---|---|---|---|---|---|")
    torch.backends.cudnn.benchmark = False
    with torch.inference_mode():
        reference = (model(x).clamp(0, 1) * 255).round().permute(0, 2, 3, 1)[0].to(torch.uint8).cpu().numpy()
    for precision in ("fp32", "fp16", "bf16"):
        dtype = _DTYPES[precision]

        def eager():
            with torch.inference_mode(), torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
                return model(x)

        try:
            torch.backends.cudnn.benchmark = False
            eager_s = timed(eager, device, args.rounds)
            os.environ["LMFN_CUDA_GRAPHS"] = "0"
            plain_s = timed(lambda: restore(model, frame, tile=0, precision=precision), device, args.rounds)
            os.environ["LMFN_CUDA_GRAPHS"] = "1"
            tool_s = timed(lambda: restore(model, frame, tile=0, precision=precision), device, args.rounds)
            batch_s = timed(lambda: restore_batch(model, frames, precision=precision), device, max(2, args.rounds // 4))
            out = restore(model, frame, tile=0, precision=precision).pixels
        except RuntimeError as exc:  # e.g. a dtype this device cannot run
            print(f"| {precision} | not run: {str(exc).splitlines()[0]} | | | | |")
            continue
        diff = int(np.abs(out.astype(np.int16) - reference.astype(np.int16)).max())
        print(f"| {precision} | {cell(eager_s)} | {cell(plain_s)} | {cell(tool_s)} | {cell(batch_s, args.batch)} | {diff} |")
    print(f"\nms per {width}x{height} frame: median (fastest) of the runs; the tool's columns include the copies to and "
          "from the device and the rounding to 8 bits.")


if __name__ == "__main__":
    main()
