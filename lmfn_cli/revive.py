"""Dead units of a trained LMFN: finding them, and bringing them back without changing the output.

A unit is an output channel of a convolution whose weights and bias are all exactly zero: it
outputs zero whatever its input. When every consumer of such a channel also has zero weights on
it, the pair sits at a saddle that gradient descent cannot leave (the channel's gradient is its
consumers' weights, the consumers' gradient is the channel's output: both zero), so training
never uses it again.

How they died here: the trainer used Adam with *coupled* L2 weight decay (1e-4) until 2026-12-07.
The gradients of the decoder's inner weights are tiny (~3e-6 at initialisation, against 1e-5 for
the decay term), so Adam's normalised step followed the decay and moved each of those weights
towards zero by about the learning rate per step, whatever its size: after a few hundred steps
the four RFDBs, ALFM's reduction and the decoder's fusion conv were zero, and every weights file
since (`lmfn-synthblur-v0` on) has carried them as zero: 78% of the 1.25M parameters. The network
that did the work was the MSHF encoder, the decoder's head and tail and the reconstruction, with
the paper's RFDB/ALFM/ACFM decoder contributing a constant. The trainer now decouples weight decay
(AdamW, Loshchilov & Hutter 2019), under which a parameter without gradient decays by a factor of
(1 - lr * weight_decay) per step, not by lr.

`revive` re-initialises each dead unit from a freshly initialised network of the same config and
leaves the convolutions that join the dead part to the live one as they are (their weights on
the dead channels are zero and their bias is not, so they are not dead units): the network's
output does not change, and the joins get gradients again, so training can grow the revived part
in. `revive` checks that: if the output moved, it puts the weights back and says so.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import nn

from .model import LMFN

__all__ = ["ReviveReport", "dead_units", "zero_fraction", "revive"]

log = logging.getLogger(__name__)

OUTPUT_TOLERANCE = 1e-5
"""Largest change of the output (values in [0,1]) `revive` accepts on its check input."""


@dataclass(frozen=True)
class ReviveReport:
    """What `revive` did: ``units`` channels re-initialised in ``convs`` convolutions, holding
    ``parameters`` weights; ``max_change`` the largest change of the output on the check input;
    ``revived`` False when the output moved more than `OUTPUT_TOLERANCE` and nothing was kept."""

    units: int
    convs: int
    parameters: int
    max_change: float
    revived: bool

    def describe(self) -> str:
        if not self.units:
            return "no dead units"
        if not self.revived:
            return (f"{self.units} dead units in {self.convs} convolutions NOT revived: the output "
                    f"would change by {self.max_change:.2g}")
        return (f"revived {self.units} dead units ({self.parameters:,} weights) in {self.convs} convolutions; "
                f"output unchanged (max change {self.max_change:.1g})")


def _convs(model: nn.Module) -> dict[str, nn.Module]:
    return {name: m for name, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Conv3d))}


def dead_units(model: nn.Module) -> dict[str, torch.Tensor]:
    """``{conv name: (out_channels,) bool}`` for every convolution with at least one dead unit
    (weights and bias of the output channel all exactly zero)."""
    dead = {}
    for name, conv in _convs(model).items():
        w = conv.weight.detach()
        zero = (w.reshape(w.shape[0], -1) == 0).all(dim=1)
        if conv.bias is not None:
            zero &= conv.bias.detach() == 0
        if bool(zero.any()):
            dead[name] = zero
    return dead


def zero_fraction(model: nn.Module) -> float:
    """The share of the model's parameters that are exactly zero (0-1)."""
    total = zero = 0
    for p in model.parameters():
        total += p.numel()
        zero += int((p.detach() == 0).sum())
    return zero / max(total, 1)


def _check_input(model: LMFN) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    p = next(model.parameters())
    return torch.rand(1, 3, 96, 96, generator=gen).to(device=p.device, dtype=p.dtype)


@torch.no_grad()
def revive(model: LMFN, seed: int = 0) -> ReviveReport:
    """Re-initialise ``model``'s dead units in place (weights from a fresh network of the same
    config built under ``torch.manual_seed(seed)``, bias left at zero) when that leaves its
    output unchanged; see the module docstring. Returns what was done."""
    dead = dead_units(model)
    if not dead:
        return ReviveReport(0, 0, 0, 0.0, True)
    was_training = model.training
    model.eval()
    x = _check_input(model)
    before = model(x)
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        fresh = _convs(LMFN(model.config))
    finally:
        torch.random.set_rng_state(state)
    convs = _convs(model)
    saved = {name: convs[name].weight.detach().clone() for name in dead}
    units = parameters = 0
    for name, rows in dead.items():
        w = convs[name].weight
        w[rows] = fresh[name].weight.to(device=w.device, dtype=w.dtype)[rows]
        units += int(rows.sum())
        parameters += int(rows.sum()) * w[0].numel()
    change = float((model(x) - before).abs().max())
    ok = change <= OUTPUT_TOLERANCE
    if not ok:
        for name, weight in saved.items():
            convs[name].weight.copy_(weight)
    model.train(was_training)
    report = ReviveReport(units, len(dead), parameters, change, ok)
    (log.info if ok else log.warning)("%s", report.describe())
    return report
