"""Sizes and costs of the LMFN variants, for ``lmfn info`` and the README tables."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from .model import LMFN, VARIANTS, LMFNConfig, count_parameters

__all__ = ["VariantInfo", "macs_per_pixel", "variant_infos"]


@dataclass(frozen=True)
class VariantInfo:
    name: str
    description: str
    params: int
    paper_params_m: float | None
    macs_per_pixel: float


def macs_per_pixel(config: LMFNConfig, size: tuple[int, int] = (256, 256)) -> float:
    """Multiply-adds per output pixel of one forward pass at ``size`` (convolutions and ALFM's
    matrix products; activations, pooling and interpolation are not counted).

    Runs on the meta device, so no arithmetic is done and no memory is used.
    """
    with torch.device("meta"):
        model = LMFN(config).eval()
        x = torch.empty(1, 3, *size)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    return counter.get_total_flops() / 2 / (size[0] * size[1])


def variant_infos() -> list[VariantInfo]:
    """One row per named variant, in registration order."""
    rows = []
    for name, v in VARIANTS.items():
        with torch.device("meta"):
            params = count_parameters(LMFN(v.config))
        rows.append(VariantInfo(name, v.description, params, v.paper_params_m, macs_per_pixel(v.config)))
    return rows
