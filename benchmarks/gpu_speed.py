"""Seconds per 1280x720 frame on a GPU in fp32, fp16 and bf16, beside the paper's 0.019 s.

    python benchmarks/gpu_speed.py                  # CUDA, the default weights
    python benchmarks/gpu_speed.py --device cpu --rounds 3   # the same script on a CPU (a check)

For each precision, after warm-up runs, it times ``--rounds`` runs (median, min, max) of:

- the network alone: ``model(x)`` on a tensor already on the device, under ``torch.inference_mode``
  and, for fp16/bf16, ``torch.autocast`` (as ``lmfn deblur --precision`` runs it), with
  ``torch.cuda.synchronize`` before each clock reading;
- the tool's path: ``lmfn_cli.restore`` on a uint8 numpy frame (host->device copy, forward,
  clamp, device->host copy, rounding), what ``lmfn deblur`` costs per image besides decode/encode;

and the largest difference from the fp32 network output in 8-bit levels. The paper reports
0.019 s per GoPro image (1280x720) for LMFN on an NVIDIA 2080 Ti (its section 4.1): a different
GPU, so the comparison is one of magnitude only. The images are synthetic: speed does not
depend on content.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from lmfn_cli import load_model, restore
from lmfn_cli.inference import _DTYPES

PAPER_SECONDS = 0.019  # Tables 1 and 2, "Time", NVIDIA 2080 Ti


def timed(fn, device: torch.device, rounds: int, warmup: int = 3) -> list[float]:
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--weights", default=None, help="a weights file (default: the bundled default)")
    args = ap.parse_args()
    device = torch.device(args.device)
    model = load_model(args.weights, device=str(device))
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (720, 1280, 3), dtype=np.uint8)
    x = torch.from_numpy(frame).permute(2, 0, 1)[None].float().div(255).to(device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"torch {torch.__version__}, {name}; paper: {PAPER_SECONDS} s per 1280x720 frame on a 2080 Ti\n")
    print("| precision | network alone: median s (min-max) | tool's path (restore, uint8 in/out): median s | "
          "max difference from fp32 (8-bit levels) |")
    print("|---|---|---|---|")
    with torch.inference_mode():
        reference = model(x).clamp(0, 1)
    for precision in ("fp32", "fp16", "bf16"):
        dtype = _DTYPES[precision]

        def network():
            with torch.inference_mode(), torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
                return model(x)

        try:
            net_times = timed(network, device, args.rounds)
            tool_times = timed(lambda: restore(model, frame, tile=0, precision=precision), device, args.rounds)
        except RuntimeError as exc:  # e.g. a dtype this device cannot run
            print(f"| {precision} | not run: {str(exc).splitlines()[0]} | | |")
            continue
        with torch.inference_mode():
            diff = float((network().float().clamp(0, 1) - reference).abs().max()) * 255
        print(f"| {precision} | {np.median(net_times):.4f} ({min(net_times):.4f}-{max(net_times):.4f}) | "
              f"{np.median(tool_times):.4f} | {diff:.2f} |")


if __name__ == "__main__":
    main()
