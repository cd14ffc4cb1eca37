"""Run a network over an image in overlapping tiles and blend the tiles back together.

A tiled LMFN result is never bit-identical to a whole-image one: ALFM's attention pools over
the whole input, ESA and the 1/16-scale encoder see a couple of hundred pixels, and every
tile's convolutions zero-pad at its edges. Three things keep the difference far below what
8-bit output can show (``benchmarks/tile_overlap.py`` measures it):

* tile offsets are multiples of 16, LMFN's total stride, so every tile is computed on the
  same sampling grid as the whole image (unaligned tiles are 5-30 dB worse, and more
  overlap does not help them);
* tiles overlap by at least ``overlap`` pixels;
* overlaps are blended with raised-cosine ramps, so each tile's weakest pixels, at its edges,
  weigh least and no seam shows.

Everything here is pure: no global state, no device handling (``forward`` moves each tile
to its device itself), and exceptions from ``forward`` -- out-of-memory above all -- pass
through unchanged so the caller can retry with ``halve(tile, ...)``.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

__all__ = [
    "DEFAULT_OVERLAP",
    "MIN_TILE",
    "ALIGN",
    "FORWARD_BYTES_PER_PIXEL",
    "CPU_MAX_TILE",
    "CPU_MAX_WHOLE",
    "tile_starts",
    "feather",
    "run_tiled",
    "choose_tile",
    "halve",
]

MIN_TILE: int = 64  # the model pads every input to a multiple of 16 and at least 64 per side

# `python benchmarks/tile_overlap.py --overlap --seams` (shipped weights, 5 Urban100 + 5 Lai
# 2016 photos up to 1024 px, aligned tiles of 256): worst-photo PSNR(tiled, whole) is 46.4 dB
# at overlap 0, 57.7 at 16, 61.0 at 32. Overlap 0 already clears 40 dB over the whole image,
# but its error sits on the seams: within 8 px of tile edges the worst photo is at 38.2 dB,
# with pixels 48 levels off. 16 clears 40 dB there (55.2 dB) but leaves pixels 7 levels off
# (12 at tile 128); 32 gives 59.9 dB with at most 3 levels (4 at tile 128), for ~14% more
# tiles at 256 and less at the large tiles `auto` picks. Must stay <= MIN_TILE - ALIGN.
DEFAULT_OVERLAP: int = 32

# Peak extra RSS of one fp32 torch.inference_mode() CPU forward of the default model per input
# pixel. `python benchmarks/tile_overlap.py --memory` (torch 2.13 CPU, fresh process per size,
# 256^2 .. 2048^2) measured 588 B/px, a straight line through 0 (1 and 2 threads alike);
# rounded up ~9%. Mostly the 64-channel full-resolution head feature map (256 B/px) and the
# conv buffers beside it.
FORWARD_BYTES_PER_PIXEL: float = 640.0

# Largest tile `auto` picks on a CPU. `python benchmarks/deblur_speed.py --tile N` (6000x4000,
# 2 cores, fp32): tile 512 58.9 s / 1.23 GiB peak RSS, 1024 58.5 s / 1.76 GiB, 2048 74.3 s /
# 3.45 GiB, 4176 (all the memory allows) 134.8 s / 10.6 GiB: past ~1 MP a CPU forward gets slower
# per pixel (its feature maps leave the caches), and tiles of 1024 are 64 dB from whole images.
# Up to ~2 MP the whole image is still as fast as tiles (1920x1080: 4.5 s whole, 7.9 s in tiles
# of 1024 by the same script; 1200x900: 2.1 s whole, 3.8 s in tiles of 1024), so `auto`
# tiles only larger images on a CPU.
CPU_MAX_TILE: int = 1024
CPU_MAX_WHOLE: int = 1 << 21  # pixels (padded): 1920x1080 still runs whole

# LMFN's total stride (four stride-2 convs): tile offsets must be multiples of it to keep the
# whole image's sampling grid, and the model pads inputs to multiples of it.
ALIGN: int = 16


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def tile_starts(length: int, tile: int, overlap: int, *, align: int = ALIGN) -> list[int]:
    """Start offsets of tiles of at most ``tile`` pixels covering ``[0, length)``.

    Every start is a multiple of ``align``; the first is 0, and the last tile runs to
    ``length`` (its start is ``length - tile`` rounded *up* to a multiple of ``align``, so it
    is up to ``align - 1`` pixels shorter than ``tile``; all others are exactly ``tile``).
    Neighbouring tiles share at least ``overlap`` pixels, and the starts are spread evenly,
    using the fewest tiles that allow it. ``tile >= length`` gives ``[0]``.

    Why aligned: LMFN downsamples by 16 in all, so only tiles whose offsets are multiples of
    16 see the same sampling grid as the whole image; ``benchmarks/tile_overlap.py`` measured
    unaligned 256 px tiles at ~41 dB from the whole-image output whatever the overlap, aligned
    ones at 46-67 dB (worst photo, overlap 0-96).
    Pass ``align=1`` for the unconstrained layout (the last tile then starts at
    ``length - tile``).

    Raises ``ValueError`` for ``length < 1``, ``tile < 1``, ``overlap < 0``, ``align < 1``,
    or, when more than one tile is needed, ``tile - overlap < align`` (a tile must advance by
    at least one aligned step; silently shrinking the overlap would hide a caller's mistake).
    """
    if length < 1:
        raise ValueError(f"length must be >= 1, got {length}")
    if tile < 1:
        raise ValueError(f"tile must be >= 1, got {tile}")
    if overlap < 0:
        raise ValueError(f"overlap must be >= 0, got {overlap}")
    if align < 1:
        raise ValueError(f"align must be >= 1, got {align}")
    if tile >= length:
        return [0]  # one tile; the overlap does not matter
    step = (tile - overlap) // align  # the longest step, in units of align, keeping the overlap
    if step < 1:
        raise ValueError(
            f"overlap ({overlap}) leaves tiles of {tile} px no room to advance by {align} px; "
            f"need overlap <= tile - {align}"
        )
    last = -(-(length - tile) // align)  # the last start, in units of align
    n = 1 + -(-last // step)
    # Evenly spread: consecutive starts differ by floor/ceil of last/(n-1) <= step units.
    return [align * ((i * last + (n - 1) // 2) // (n - 1)) for i in range(n)]


def feather(length: int, start: int, size: int, overlap: int) -> torch.Tensor:
    """1-D blend weight, shape ``(size,)`` float32 in ``(0, 1]``, of the tile ``[start, start+size)``.

    On a side that touches a neighbour (``start > 0`` on the left, ``start + size < length``
    on the right) the weight rises over ``overlap`` pixels as a raised cosine,
    ``sin^2(pi * (k + 0.5) / (2 * overlap))`` for ``k = 0 .. overlap-1``; elsewhere it is 1.
    Two facing ramps sum to exactly 1, and the half-pixel offset keeps every weight > 0, so
    the normalising weight sum is never zero. ``overlap == 0`` gives all ones.
    """
    if size < 1 or start < 0 or start + size > length:
        raise ValueError(f"tile [{start}, {start + size}) does not fit in [0, {length})")
    if overlap < 0:
        raise ValueError(f"overlap must be >= 0, got {overlap}")
    weight = torch.ones(size, dtype=torch.float32)
    ramp_len = min(overlap, size)
    if ramp_len == 0:
        return weight
    k = torch.arange(ramp_len, dtype=torch.float64)
    ramp = (torch.sin(math.pi * (k + 0.5) / (2 * overlap)) ** 2).to(torch.float32)
    if start > 0:
        weight[:ramp_len] = torch.minimum(weight[:ramp_len], ramp)
    if start + size < length:
        weight[size - ramp_len :] = torch.minimum(weight[size - ramp_len :], ramp.flip(0))
    return weight


def _spans(length: int, tile: int, overlap: int, align: int) -> list[tuple[int, int]]:
    """(start, size) of each tile along one axis; only the last may be shorter than ``tile``."""
    return [(s, min(tile, length - s)) for s in tile_starts(length, tile, overlap, align=align)]


def run_tiled(
    forward: Callable[[torch.Tensor], torch.Tensor],
    image: torch.Tensor,
    *,
    tile: int,
    overlap: int = DEFAULT_OVERLAP,
    on_tile: Callable[[int, int], None] | None = None,
    align: int = ALIGN,
) -> torch.Tensor:
    """Apply ``forward`` to ``image`` whole or in feathered, overlapping tiles.

    ``image``: ``(1,C,H,W)`` float32 CPU tensor, values in [0,1]. ``forward`` maps a
    ``(1,C,h,w)`` CPU tensor to a ``(1,C,h,w)`` tensor on any device and floating dtype (it
    moves its input to its own device; run it under ``torch.inference_mode()``, as its
    result is detached here anyway). Returns ``(1,C,H,W)`` float32 on the CPU, not clamped.

    ``tile == 0`` or ``tile >= max(H, W)``: a single call on the whole image. Otherwise tiles
    of at most ``min(tile, H) x min(tile, W)`` pixels, laid out by :func:`tile_starts` (offsets
    multiples of ``align``, overlapping by at least ``overlap``; the last row and column end
    at the image border and may be up to ``align - 1`` px shorter, which the model pads back
    exactly as it pads the whole image), blended with the outer product of their two
    :func:`feather` weights. The whole image is never passed to ``forward`` when tiling.
    ``on_tile(done, total)`` is called after every tile (once, ``(1, 1)``, for a whole-image
    call). Exceptions from ``forward`` (out-of-memory above all) propagate unchanged.
    ``ValueError`` for a bad image shape, ``tile < 0``, an overlap :func:`tile_starts`
    refuses, or a ``forward`` result of the wrong shape.
    """
    if image.dim() != 4 or image.shape[0] != 1:
        raise ValueError(f"image must be (1,C,H,W), got shape {tuple(image.shape)}")
    if tile < 0:
        raise ValueError(f"tile must be >= 0 (0: whole image), got {tile}")
    _, channels, height, width = image.shape

    def call(x: torch.Tensor) -> torch.Tensor:
        y = forward(x)
        if tuple(y.shape) != tuple(x.shape):
            raise ValueError(f"forward returned shape {tuple(y.shape)} for input {tuple(x.shape)}")
        return y.detach().to("cpu", torch.float32)

    if tile == 0 or tile >= max(height, width):
        out = call(image)
        if on_tile is not None:
            on_tile(1, 1)
        return out

    rows = _spans(height, min(tile, height), overlap, align)
    cols = _spans(width, min(tile, width), overlap, align)
    row_w = [feather(height, y, h, overlap) for y, h in rows]
    col_w = [feather(width, x, w, overlap) for x, w in cols]

    # The two accumulators are the only full-size allocations: (C,H,W) + (1,H,W) float32.
    acc = torch.zeros((channels, height, width), dtype=torch.float32)
    wsum = torch.zeros((1, height, width), dtype=torch.float32)
    total, done = len(rows) * len(cols), 0
    for (y, h), fy in zip(rows, row_w):
        for (x, w), fx in zip(cols, col_w):
            out = call(image[:, :, y : y + h, x : x + w].contiguous())[0]
            weight = fy[:, None] * fx[None, :]
            acc[:, y : y + h, x : x + w].addcmul_(out, weight)
            wsum[:, y : y + h, x : x + w].add_(weight)
            done += 1
            if on_tile is not None:
                on_tile(done, total)
    return acc.div_(wsum).unsqueeze(0)


def choose_tile(
    height: int,
    width: int,
    *,
    free_bytes: int,
    bytes_per_pixel: float,
    fraction: float = 0.5,
    multiple: int = ALIGN,
    max_tile: int | None = None,
    max_whole: int | None = None,
) -> int:
    """Tile size for an ``height x width`` image given ``free_bytes`` of device memory.

    0 (whole image) when one forward pass of the padded image needs at most
    ``fraction * free_bytes`` at ``bytes_per_pixel`` (and, with ``max_whole``, has at most
    that many pixels); otherwise the largest square tile, a multiple of ``multiple``, at
    least ``MIN_TILE`` and at most ``max_tile``, that fits (``MIN_TILE`` when even that does
    not: the out-of-memory retry then reports it).
    """
    if height < 1 or width < 1:
        raise ValueError(f"image size must be positive, got {height}x{width}")
    if bytes_per_pixel <= 0 or multiple < 1 or not 0 < fraction <= 1:
        raise ValueError("bytes_per_pixel and multiple must be positive, 0 < fraction <= 1")
    budget = fraction * max(free_bytes, 0)
    # The model pads to a multiple of 16 and at least 64 per side before it allocates.
    ph = max(MIN_TILE, _round_up(height, ALIGN))
    pw = max(MIN_TILE, _round_up(width, ALIGN))
    if ph * pw * bytes_per_pixel <= budget and (max_whole is None or ph * pw <= max_whole):
        return 0
    side = int(math.isqrt(int(budget / bytes_per_pixel))) // multiple * multiple
    if max_tile is not None:
        side = min(side, max_tile)
    return max(MIN_TILE, side)


def halve(tile: int, height: int, width: int) -> int | None:
    """The next, smaller tile to try after ``tile`` ran out of memory; ``None`` when none is left.

    ``tile == 0`` (or a tile covering the whole image): half the longer side, rounded up to a
    multiple of 16. Otherwise ``tile // 2`` rounded down to a multiple of 16. A result below
    ``MIN_TILE`` becomes ``MIN_TILE`` if that is still smaller than what just failed, else
    ``None``.
    """
    if tile < 0 or height < 1 or width < 1:
        raise ValueError(f"bad tile {tile} or image size {height}x{width}")
    longer = max(height, width)
    if tile == 0 or tile >= longer:
        current = longer
        nxt = _round_up(-(-longer // 2), ALIGN)
    else:
        current = tile
        nxt = tile // 2 // ALIGN * ALIGN
    if nxt >= MIN_TILE:
        return nxt
    return MIN_TILE if MIN_TILE < current else None
