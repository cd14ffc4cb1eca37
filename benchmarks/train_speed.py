"""Training speed of LMFN in each precision and memory layout, on the machine it runs on.

    python benchmarks/train_speed.py                          # CPU: batch 8 x 128x128, lmfn-residual
    python benchmarks/train_speed.py --device cuda --steps 50 # adds fp16 rows
    python benchmarks/train_speed.py --steps 8 --warmup 2     # a quick look

A training step is what ``lmfn train`` does per batch: forward (under ``torch.autocast`` for
bf16 / fp16), L1 loss in fp32, backward, Adam step (fp16 with a ``GradScaler``). The rows are
fp32, fp32 channels-last, bf16 autocast, bf16 autocast channels-last, and on CUDA fp16 autocast
and fp16 channels-last; each has its own freshly initialised model and optimizer (same seed).
After ``--warmup`` untimed steps of each, the rows take their timed steps in turn, so drifts in
the machine's speed hit all alike; the figures are medians over the timed steps. bf16 rows are
marked ``not native`` where the hardware emulates it (a CPU without the avx512_bf16 / amx_bf16
flags, a GPU before compute capability 8.0), where it is usually slower than fp32.

The batch is random (speed does not depend on content). Pause other work on the machine while
it runs; the figures are one machine's.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from lmfn_cli.model import LMFN, variant_config
from lmfn_cli.precision import cpu_has_native_bf16

CL = torch.channels_last


@dataclass
class Row:
    """One precision and layout: its model, optimizer and timings."""

    label: str
    dtype: torch.dtype | None
    channels_last: bool
    note: str = ""
    times: list[float] = field(default_factory=list)

    def setup(self, variant: str, device: torch.device) -> None:
        torch.manual_seed(0)
        self.model = LMFN(variant_config(variant)).to(device).train()
        if self.channels_last:
            self.model.to(memory_format=CL)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-4)
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.dtype == torch.float16)

    def step(self, blur: torch.Tensor, sharp: torch.Tensor) -> None:
        if self.channels_last:
            blur = blur.contiguous(memory_format=CL)
        self.optimizer.zero_grad(set_to_none=True)
        with torch.autocast(blur.device.type, dtype=self.dtype, enabled=self.dtype is not None):
            out = self.model(blur)
        loss = F.l1_loss(out.float(), sharp)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()

    @property
    def median(self) -> float:
        return statistics.median(self.times)


def native_bf16(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.get_device_capability(device)[0] >= 8
    return cpu_has_native_bf16()


def rows_for(device: torch.device) -> list[Row]:
    bf16_note = "" if native_bf16(device) else "not native"
    rows = [
        Row("fp32", None, False),
        Row("fp32", None, True),
        Row("bf16 autocast", torch.bfloat16, False, bf16_note),
        Row("bf16 autocast", torch.bfloat16, True, bf16_note),
    ]
    if device.type == "cuda":
        rows += [Row("fp16 autocast", torch.float16, False, "GradScaler"),
                 Row("fp16 autocast", torch.float16, True, "GradScaler")]
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--patch", type=int, default=128, help="side of the square training patches (px)")
    ap.add_argument("--steps", type=int, default=20, help="timed steps per row")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps per row first")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--variant", default="lmfn-residual")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="torch CPU threads")
    args = ap.parse_args()
    if args.steps < 1 or args.batch < 1 or args.patch < 16 or args.warmup < 0:
        ap.error("need --steps >= 1, --batch >= 1, --patch >= 16, --warmup >= 0")
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        cap = ".".join(map(str, torch.cuda.get_device_capability(device)))
        where = f"{name} (compute capability {cap})"
    else:
        where = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs"
    print(f"torch {torch.__version__}, {args.device}: {where}")
    print(f"CPU native bf16 (avx512_bf16 / amx_bf16 in /proc/cpuinfo): {'yes' if cpu_has_native_bf16() else 'no'}")
    if device.type == "cuda":
        print(f"GPU native bf16: {'yes' if native_bf16(device) else 'no'}")
    print(f"variant {args.variant}, batch {args.batch} x {args.patch}x{args.patch}, "
          f"{args.warmup} warm-up + {args.steps} timed steps per row, in turn\n")

    g = torch.Generator().manual_seed(0)
    blur = torch.rand(args.batch, 3, args.patch, args.patch, generator=g).to(device)
    sharp = torch.rand(args.batch, 3, args.patch, args.patch, generator=g).to(device)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    rows = rows_for(device)
    for row in rows:
        row.setup(args.variant, device)
        for _ in range(args.warmup):
            row.step(blur, sharp)
    for _ in range(args.steps):
        for row in rows:
            sync()
            start = time.perf_counter()
            row.step(blur, sharp)
            sync()
            row.times.append(time.perf_counter() - start)

    pixels = args.batch * args.patch * args.patch
    base = rows[0].median
    print("| precision | layout | median s/step | min | max | steps/s | Mpx/s | vs fp32 | note |")
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        m = row.median
        layout = "channels-last" if row.channels_last else "contiguous"
        print(f"| {row.label} | {layout} | {m:.3f} | {min(row.times):.3f} | {max(row.times):.3f} | {1 / m:.2f} | "
              f"{pixels / m / 1e6:.3f} | {base / m:.2f}x | {row.note} |")
    print(json.dumps({f"{row.label.split()[0]}{'-cl' if row.channels_last else ''}": round(1 / row.median, 4)
                      for row in rows}))


if __name__ == "__main__":
    main()
