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
    "FUSED_BYTES_PER_PIXEL",
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
# conv buffers beside it. That is the plain forward (CUDA, and CPUs in half precision); the
# fused CPU graph (`lmfn_cli.fused`), which never holds that map whole, measured 187-202 B/px
# (144 at 2048^2), rounded up ~9% too.
FORWARD_BYTES_PER_PIXEL: float = 640.0
FUSED_BYTES_PER_PIXEL: float = 220.0

# What `auto` picks on a CPU (2 cores, fp32, fused graph, balanced tiles; `python
# benchmarks/cpu_speed.py` and the same runs by hand): 1920x1080 takes 2.00-2.13 s whole,
# 2.06-2.20 s in 1024 px tiles and 2.30-2.42 s in 512; 6000x4000 takes 30.6 s in tiles of 512,
# 26.2 s in 768 and 24.7 s in 1024 (less overlap recomputed). Whole images are exact (no seams),
# so `auto` runs up to 2.1 MP whole (Full HD: ~0.45 GB) and tiles larger ones at 1024 px (~0.23
# GB per forward). (The earlier channels-last path, at 588 B/px, was no faster in big tiles and
# used 512 px tiles and 1 MP whole.)
CPU_MAX_TILE: int = 1024
CPU_MAX_WHOLE: int = 1 << 21  # pixels (padded): 1920x1080 (1920x1088) runs whole

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


def balanced_tile(length: int, tile: int, overlap: int, *, align: int = ALIGN) -> int:
    """The smallest tile size, a multiple of ``align`` and at most ``tile``, that covers
    ``length`` with as few tiles as ``tile`` itself needs.

    Tiles of the full ``tile`` size waste work when the image is not a near multiple of it:
    1080 rows in 1024 px tiles are two tiles of 1024 rows (2048 rows computed), in balanced
    tiles two of 560 (1120 rows). ``tile >= length`` gives ``length``.
    """
    if tile >= length:
        return length
    n = len(tile_starts(length, tile, overlap, align=align))
    size = min(tile, _round_up(-(-(length + (n - 1) * overlap) // n), align))
    while size < tile and len(tile_starts(length, size, overlap, align=align)) > n:
        size += align  # alignment of the starts can need a little more than the even share
    return size


def _spans(length: int, tile: int, overlap: int, align: int) -> list[tuple[int, int]]:
    """(start, size) of each tile along one axis, tiles balanced (`balanced_tile`); only the
    last may be shorter than the others."""
    size = balanced_tile(length, tile, overlap, align=align)
    return [(s, min(size, length - s)) for s in tile_starts(length, size, overlap, align=align)]


def _groups(cols: list[tuple[int, int]], batch: int) -> list[list[int]]:
    """Indices of ``cols`` in runs of at most ``batch`` neighbours of equal width."""
    groups: list[list[int]] = []
    for k, (_, w) in enumerate(cols):
        if groups and len(groups[-1]) < batch and cols[groups[-1][0]][1] == w:
            groups[-1].append(k)
        else:
            groups.append([k])
    return groups


def run_tiled(
    forward: Callable[[torch.Tensor], torch.Tensor],
    image: torch.Tensor,
    *,
    tile: int,
    overlap: int = DEFAULT_OVERLAP,
    on_tile: Callable[[int, int], None] | None = None,
    align: int = ALIGN,
    scale: float = 1.0,
    out: torch.Tensor | None = None,
    batch: int = 1,
) -> torch.Tensor:
    """Apply ``forward`` to ``image`` whole or in feathered, overlapping tiles.

    ``image``: ``(1,C,H,W)`` CPU tensor, any layout: float32 in [0,1], or integer levels with
    ``scale`` (255 for uint8, 65535 for uint16) -- only the tile being run is converted to
    float32 ``[0,1]``, so an 8-bit image costs no full-size float copy. ``forward`` maps a
    ``(1,C,h,w)`` float32 CPU tensor to a ``(1,C,h,w)`` tensor on any device and floating dtype
    (it moves its input to its own device; run it under ``torch.inference_mode()``, as its
    result is detached here anyway).

    Returns ``out``: by default a new ``(1,C,H,W)`` float32 CPU tensor, not clamped. Given
    ``out`` (``(1,C,H,W)``, any layout, e.g. a view of the caller's (H,W,C) array), the result
    is written there: as it is for a float ``out``; clamped to [0,1], times ``scale`` and
    rounded for an integer one.

    ``tile == 0`` or ``tile >= max(H, W)``: a single call on the whole image. Otherwise tiles
    of at most ``min(tile, H) x min(tile, W)`` pixels, shrunk per axis to the smallest size that
    needs no more tiles (:func:`balanced_tile`, so tiles may be rectangular), laid out by
    :func:`tile_starts` (offsets multiples of ``align``, overlapping by at least ``overlap``;
    the last row and column end at the image border and may be up to ``align - 1`` px shorter,
    which the model pads back exactly as it pads the whole image), blended with the outer
    product of their two :func:`feather` weights. Tiles run row by row, and the blend is
    accumulated in float32 for one row of tiles at a time: the rows no later tile touches are
    finished into ``out`` and their accumulator freed, so memory beyond ``image`` and ``out``
    is about two tile-rows, whatever the image size. The whole image is never passed to
    ``forward`` when tiling. ``on_tile(done, total)`` is called after every tile (once,
    ``(1, 1)``, for a whole-image call). ``batch > 1``: up to ``batch`` neighbouring tiles of
    one tile row that have the same size go to ``forward`` in one ``(n,C,h,w)`` call (a GPU
    runs a few tiles at once faster than one by one; ``forward`` must treat the images of a
    batch independently, as LMFN does); the result is the same. Exceptions from ``forward`` (out-of-memory above all)
    propagate unchanged. ``ValueError`` for a bad image or ``out`` shape, ``tile < 0``, an
    overlap :func:`tile_starts` refuses, or a ``forward`` result of the wrong shape.
    """
    if image.dim() != 4 or image.shape[0] != 1:
        raise ValueError(f"image must be (1,C,H,W), got shape {tuple(image.shape)}")
    if tile < 0:
        raise ValueError(f"tile must be >= 0 (0: whole image), got {tile}")
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    if out is not None and tuple(out.shape) != tuple(image.shape):
        raise ValueError(f"out must have the image's shape {tuple(image.shape)}, got {tuple(out.shape)}")
    _, channels, height, width = image.shape
    if out is None:
        out = torch.empty((1, channels, height, width), dtype=torch.float32)

    def call(x: torch.Tensor) -> torch.Tensor:
        x = x.to(torch.float32) * (1.0 / scale) if scale != 1.0 else x.to(torch.float32)  # not in place: x may be the caller's
        y = forward(x.contiguous())
        if tuple(y.shape) != tuple(x.shape):
            raise ValueError(f"forward returned shape {tuple(y.shape)} for input {tuple(x.shape)}")
        return y.detach().to("cpu", torch.float32)

    def store(y0: int, values: torch.Tensor) -> None:
        """Write finished rows ``values`` (C,h,W) float32 at row ``y0`` of ``out``."""
        target = out[0, :, y0 : y0 + values.shape[1]]
        if out.is_floating_point():
            target.copy_(values)
        else:
            target.copy_(values.clamp(0.0, 1.0).mul_(scale).round_())  # not in place: may be an inference tensor

    if tile == 0 or tile >= max(height, width):
        store(0, call(image)[0])
        if on_tile is not None:
            on_tile(1, 1)
        return out

    rows = _spans(height, min(tile, height), overlap, align)
    cols = _spans(width, min(tile, width), overlap, align)
    col_w = [feather(width, x, w, overlap) for x, w in cols]
    total, done = len(rows) * len(cols), 0
    # Accumulators cover rows [top, top + acc.shape[1]): the current tile row and what the
    # previous one left unfinished. They never hold more than two tile rows.
    top = 0
    acc = torch.zeros((channels, 0, width), dtype=torch.float32)
    wsum = torch.zeros((1, 0, width), dtype=torch.float32)
    for i, (y, h) in enumerate(rows):
        bottom = y + h
        if bottom > top + acc.shape[1]:  # grow to cover this tile row
            grow = bottom - (top + acc.shape[1])
            acc = torch.cat([acc, torch.zeros((channels, grow, width), dtype=torch.float32)], dim=1)
            wsum = torch.cat([wsum, torch.zeros((1, grow, width), dtype=torch.float32)], dim=1)
        fy = feather(height, y, h, overlap)
        for group in _groups(cols, batch):
            crops = [image[:, :, y : y + h, cols[k][0] : cols[k][0] + cols[k][1]] for k in group]
            results = call(crops[0] if len(crops) == 1 else torch.cat(crops))
            for k, result in zip(group, results):
                (x, w), fx = cols[k], col_w[k]
                weight = fy[:, None] * fx[None, :]
                acc[:, y - top : bottom - top, x : x + w].addcmul_(result, weight)
                wsum[:, y - top : bottom - top, x : x + w].add_(weight)
                done += 1
                if on_tile is not None:
                    on_tile(done, total)
        # Rows above the next tile row's start are final: write them out and drop them.
        final = (rows[i + 1][0] if i + 1 < len(rows) else height) - top
        store(top, acc[:, :final].div_(wsum[:, :final]))
        acc, wsum = acc[:, final:].clone(), wsum[:, final:].clone()
        top += final
    return out


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
