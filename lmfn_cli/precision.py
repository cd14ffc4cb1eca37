"""Choosing the training precision: fp32, or bf16 / fp16 autocast, for the machine at hand.

``resolve_precision`` turns ``auto``, ``fp32``, ``bf16`` or ``fp16`` into the dtype to autocast to
(``None``: plain fp32). The weights stay fp32 whatever is chosen; only the arithmetic changes.

- CUDA: ``auto`` is bf16 on GPUs that compute it natively (compute capability 8.0 and later),
  else fp16 (which needs a ``GradScaler``; that is the trainer's business).
- CPU: bf16 pays only where the CPU has bf16 instructions (the ``avx512_bf16`` or ``amx_bf16``
  flags of /proc/cpuinfo); elsewhere oneDNN emulates it, slower than fp32. Even with them a
  small network can lose time to the conversions, so ``auto`` also times a short probe of
  training steps in both precisions (``probe_step_seconds``) and keeps bf16 only if it is
  faster. fp16 autocast is not offered on the CPU.
"""

from __future__ import annotations

import copy
import logging
import statistics
from collections.abc import Callable
from pathlib import Path
from time import perf_counter

import torch
from torch import nn

from .errors import ConfigError

__all__ = ["PRECISIONS", "precision_name", "cpu_has_native_bf16", "native_bf16_flags", "resolve_precision", "probe_step_seconds"]

log = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
CPUINFO = Path("/proc/cpuinfo")
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


def _cpu_flags() -> set[str]:
    """The CPU feature flags from /proc/cpuinfo's ``flags`` lines; empty where it cannot be read
    (not Linux, or no such file)."""
    try:
        text = CPUINFO.read_text(errors="replace")
    except OSError:
        return set()
    flags: set[str] = set()
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == "flags":
            flags.update(value.split())
    return flags


def native_bf16_flags() -> list[str]:
    """This CPU's native-bf16 flags (``amx_bf16``, ``avx512_bf16``) found in /proc/cpuinfo, sorted;
    empty where there are none or it cannot be read."""
    return sorted(_cpu_flags() & NATIVE_BF16_FLAGS)


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX-BF16), per /proc/cpuinfo.
    False where that cannot be read."""
    return bool(native_bf16_flags())


def _cuda_has_native_bf16() -> bool:
    try:
        return torch.cuda.is_bf16_supported(including_emulation=False)
    except TypeError:  # older torch: no emulation to exclude
        return torch.cuda.is_bf16_supported()


def precision_name(dtype: torch.dtype | None) -> str:
    """``None`` (no autocast) -> ``fp32``; ``torch.bfloat16`` -> ``bf16``; ``torch.float16`` -> ``fp16``."""
    return "fp32" if dtype is None else {torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]


def resolve_precision(
    precision: str,
    device: torch.device | str,
    probe: Callable[[torch.dtype | None], float] | None = None,
) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device``: ``None`` for fp32, else
    ``torch.bfloat16`` or ``torch.float16``.

    ``probe(dtype)`` gives the seconds of a training step in that precision (``None``: fp32);
    it is asked only for ``auto`` on a CPU with native bf16, and bf16 is chosen only if it is
    faster. Raises ``ConfigError`` for an unknown precision, and for fp16 on the CPU.
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    device = torch.device(device)
    if precision == "fp32":
        return None
    if device.type == "cuda":
        if precision == "auto":
            return torch.bfloat16 if _cuda_has_native_bf16() else torch.float16
        if precision == "bf16" and not _cuda_has_native_bf16():
            log.warning("bf16 on a GPU without native bf16: emulated, usually slower than fp16")
        return torch.bfloat16 if precision == "bf16" else torch.float16
    if device.type != "cpu":
        if precision == "auto":
            return None
        return torch.bfloat16 if precision == "bf16" else torch.float16
    if precision == "fp16":
        raise ConfigError("fp16 autocast is for CUDA GPUs; on the CPU use --precision bf16 or fp32")
    native = cpu_has_native_bf16()
    if precision == "bf16":
        if not native:
            log.warning("bf16 on a CPU without native bf16 (no avx512_bf16 or amx_bf16 flag): "
                        "emulated, usually slower than fp32")
        return torch.bfloat16
    if not native:
        log.info("precision auto: fp32 (this CPU has no native bf16)")
        return None
    if probe is None:
        log.info("precision auto: bf16 (native bf16 on this CPU)")
        return torch.bfloat16
    fp32_s = probe(None)
    bf16_s = probe(torch.bfloat16)
    chosen = torch.bfloat16 if bf16_s < fp32_s else None
    log.info("precision auto: %s (probe: bf16 %.3f s, fp32 %.3f s per step)", precision_name(chosen), bf16_s, fp32_s)
    return chosen


def probe_step_seconds(
    model: nn.Module,
    batch: torch.Tensor,
    dtype: torch.dtype | None,
    channels_last: bool,
    steps: int = 20,
    warmup: int = 2,
) -> float:
    """Median seconds of a training step's forward and backward (L1 loss against the input; no
    optimizer step) on ``batch``, autocast to ``dtype`` (``None``: fp32), in channels-last layout
    if asked. ``warmup`` steps run first, untimed (the first builds the kernels).

    Runs on a copy of the model: the caller's parameters, gradients and layout are untouched.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    device = batch.device
    net = copy.deepcopy(model).train()
    net.zero_grad(set_to_none=True)
    x = batch
    if channels_last:
        net.to(memory_format=torch.channels_last)
        x = batch.contiguous(memory_format=torch.channels_last)
    times = []
    with torch.enable_grad():
        for i in range(warmup + steps):
            start = perf_counter()
            with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                out = net(x)
            (out.float() - x).abs().mean().backward()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            elapsed = perf_counter() - start
            if i >= warmup:
                times.append(elapsed)
            net.zero_grad(set_to_none=True)
    return statistics.median(times)
