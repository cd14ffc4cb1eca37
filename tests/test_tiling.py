"""Tiled inference: tile layout, feathering, blending, tile-size choice, and closeness to whole."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from lmfn_cli.metrics import psnr
from lmfn_cli.tiling import (
    ALIGN,
    DEFAULT_OVERLAP,
    FORWARD_BYTES_PER_PIXEL,
    MIN_TILE,
    choose_tile,
    feather,
    halve,
    run_tiled,
    tile_starts,
)

from conftest import natural_like

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "weights" / "lmfn-synthblur-v0.safetensors"
CITY = ROOT / "lmfn_cli" / "examples" / "blur" / "city.png"


@pytest.fixture(autouse=True)
def _one_thread(_few_threads):
    # Small tiles gain nothing from a second thread, and on a 2-core machine shared with a
    # busy process, OpenMP's spinning makes two threads many times slower than one.
    torch.set_num_threads(1)


def as_tensor(img: np.ndarray) -> torch.Tensor:
    """(H,W,3) uint8 -> (1,3,H,W) float32 in [0,1]."""
    return torch.from_numpy(img.astype(np.float32) / 255.0).permute(2, 0, 1)[None].contiguous()


# ------------------------------------------------------------------------------ tile_starts

LAYOUTS = [
    (length, tile, overlap, align)
    for length in (1, 15, 16, 17, 63, 64, 65, 97, 131, 240, 320, 500, 1000, 4000, 6001)
    for tile, overlap in ((64, 0), (64, 16), (64, 48), (128, 32), (256, 48), (512, 96))
    for align in (1, 16)
]


@pytest.mark.parametrize("length,tile,overlap,align", LAYOUTS)
def test_tile_starts_cover_overlap_and_align(length, tile, overlap, align):
    starts = tile_starts(length, tile, overlap, align=align)
    ends = [min(s + tile, length) for s in starts]
    assert starts[0] == 0 and ends[-1] == length
    assert starts == sorted(set(starts))
    assert all(s % align == 0 for s in starts)
    # Every tile but the last is full-size; the last is at most align-1 px short.
    assert all(s + tile <= length for s in starts[:-1])
    assert min(tile, length) - (align - 1) <= length - starts[-1] <= tile
    if align == 1 and length > tile:
        assert starts[-1] == length - tile
    # Neighbours share at least `overlap` pixels (so every pixel is covered).
    for s, e_prev in zip(starts[1:], ends[:-1]):
        assert e_prev - s >= overlap
    covered = np.zeros(length, bool)
    for s, e in zip(starts, ends):
        covered[s:e] = True
    assert covered.all()
    # Evenly spread: steps differ by at most one aligned unit.
    steps = np.diff(starts)
    if len(steps):
        assert steps.max() - steps.min() <= align


def test_tile_starts_use_the_fewest_tiles():
    # 768 px, tile 256, overlap 32, unaligned: 3 tiles reach 704 px, so 4 are needed.
    assert tile_starts(768, 256, 32, align=1) == [0, 171, 341, 512]
    assert tile_starts(768, 256, 32) == [0, 176, 336, 512]
    assert tile_starts(704, 256, 32, align=1) == [0, 224, 448]
    assert tile_starts(97, 64, 16) == [0, 48]  # the last tile, [48, 97), is 49 px


@pytest.mark.parametrize("length,tile", [(1, 1), (1, 64), (64, 64), (63, 64), (100, 4096)])
def test_one_tile_when_it_covers_everything(length, tile):
    assert tile_starts(length, tile, 0) == [0]
    assert tile_starts(length, tile, 200) == [0]  # the overlap is irrelevant with one tile


def test_tile_starts_rejects_bad_arguments():
    with pytest.raises(ValueError):
        tile_starts(0, 64, 16)
    with pytest.raises(ValueError):
        tile_starts(100, 0, 0)
    with pytest.raises(ValueError):
        tile_starts(100, 64, -1)
    with pytest.raises(ValueError, match="overlap"):
        tile_starts(100, 64, 64, align=1)  # overlap == tile: no progress
    with pytest.raises(ValueError, match="overlap"):
        tile_starts(100, 64, 100, align=1)
    with pytest.raises(ValueError, match="overlap"):
        tile_starts(100, 64, 56)  # 64 - 56 < 16: no aligned step keeps the overlap
    assert tile_starts(100, 64, 48) == [0, 16, 32, 48]  # 64 - 48 == 16 is allowed
    assert tile_starts(100, 64, 63, align=1)[-1] == 36


# ------------------------------------------------------------------------------ feather


def test_feather_is_one_at_image_borders_and_ramps_inside():
    inner = feather(1000, 200, 256, 32)
    assert inner.shape == (256,) and inner.dtype == torch.float32
    assert (inner > 0).all() and (inner <= 1).all()
    assert (inner[32:-32] == 1).all()
    assert (torch.diff(inner[:32]) > 0).all() and (torch.diff(inner[-32:]) < 0).all()
    assert inner[0] < 0.01 and inner[-1] < 0.01
    first, last = feather(1000, 0, 256, 32), feather(1000, 744, 256, 32)
    assert first[0] == 1 and (first[:-32] == 1).all() and first[-1] < 0.01
    assert last[-1] == 1 and (last[32:] == 1).all() and last[0] < 0.01
    assert (feather(256, 0, 256, 32) == 1).all()  # a single tile is not weighted
    assert (feather(1000, 200, 256, 0) == 1).all()


def test_facing_ramps_sum_to_one():
    left, right = feather(1000, 0, 256, 32), feather(1000, 224, 256, 32)
    torch.testing.assert_close(left[-32:] + right[:32], torch.ones(32))


def test_feather_on_a_tile_shorter_than_two_ramps_stays_positive():
    w = feather(100, 20, 40, 32)
    assert (w > 0).all() and w.max() <= 1


@pytest.mark.parametrize("length,tile,overlap", [(97, 64, 16), (131, 64, 48), (1000, 256, 32), (700, 512, 96), (90, 64, 0)])
def test_weight_sum_over_tiles_is_positive_everywhere(length, tile, overlap):
    total = torch.zeros(length)
    for s in tile_starts(length, tile, overlap):
        size = min(tile, length - s)
        total[s : s + size] += feather(length, s, size, overlap)
    assert (total > 0.01).all()


# ------------------------------------------------------------------------------ run_tiled


def recording(fn):
    """A forward that records the shapes it is called with."""
    shapes: list[tuple[int, ...]] = []

    def forward(x: torch.Tensor) -> torch.Tensor:
        shapes.append(tuple(x.shape))
        return fn(x)

    return forward, shapes


@pytest.mark.parametrize("align", [1, ALIGN])
@pytest.mark.parametrize("fn", [lambda x: x.clone(), lambda x: x * 0.5 + 0.1], ids=["identity", "affine"])
def test_pointwise_forward_is_reproduced_exactly(fn, align):
    image = torch.rand(1, 3, 97, 131, generator=torch.Generator().manual_seed(0))
    forward, shapes = recording(fn)
    out = run_tiled(forward, image, tile=64, overlap=16, align=align)
    assert out.shape == image.shape and out.dtype == torch.float32
    torch.testing.assert_close(out, fn(image), atol=1e-6, rtol=0)
    assert len(shapes) > 1
    assert all(h <= 64 and w <= 64 for _, _, h, w in shapes)  # never the whole image
    assert (1, 3, 97, 131) not in shapes


def test_tiles_are_at_most_tile_and_cover_thin_images():
    image = torch.rand(1, 3, 40, 300)
    forward, shapes = recording(lambda x: x * 2)
    out = run_tiled(forward, image, tile=128, overlap=32)
    torch.testing.assert_close(out, image * 2, atol=1e-6, rtol=0)
    assert {s[2] for s in shapes} == {40} and max(s[3] for s in shapes) == 128


@pytest.mark.parametrize("tile", [0, 131, 500])
def test_whole_image_is_one_call(tile):
    image = torch.rand(1, 3, 97, 131)
    forward, shapes = recording(lambda x: x + 1)
    progress = []
    out = run_tiled(forward, image, tile=tile, on_tile=lambda d, t: progress.append((d, t)))
    assert shapes == [(1, 3, 97, 131)]
    assert progress == [(1, 1)]
    torch.testing.assert_close(out, image + 1)


def test_on_tile_counts_every_tile():
    image = torch.rand(1, 3, 97, 131)
    forward, shapes = recording(lambda x: x)
    progress = []
    run_tiled(forward, image, tile=64, overlap=16, on_tile=lambda d, t: progress.append((d, t)))
    n = len(tile_starts(97, 64, 16)) * len(tile_starts(131, 64, 16))
    assert progress == [(i, n) for i in range(1, n + 1)] and len(shapes) == n == 6


def test_result_is_cpu_float32_whatever_forward_returns():
    image = torch.rand(1, 3, 80, 100)
    out = run_tiled(lambda x: x.double(), image, tile=64, overlap=16)
    assert out.dtype == torch.float32 and out.device.type == "cpu"
    half = run_tiled(lambda x: x.half(), image, tile=64, overlap=16)
    torch.testing.assert_close(half, image, atol=1e-3, rtol=0)


def test_forward_errors_propagate_unchanged():
    class OutOfMemory(RuntimeError):
        pass

    error = OutOfMemory("CUDA out of memory")

    def forward(x):
        raise error

    for tile in (0, 64):
        with pytest.raises(OutOfMemory) as info:
            run_tiled(forward, torch.rand(1, 3, 97, 131), tile=tile, overlap=16)
        assert info.value is error


def test_run_tiled_rejects_bad_arguments():
    image = torch.rand(1, 3, 97, 131)
    with pytest.raises(ValueError):
        run_tiled(lambda x: x, image, tile=-1)
    with pytest.raises(ValueError):
        run_tiled(lambda x: x, image, tile=64, overlap=64)
    with pytest.raises(ValueError):
        run_tiled(lambda x: x, image[0], tile=64)
    with pytest.raises(ValueError, match="shape"):
        run_tiled(lambda x: x[..., :-1], image, tile=64, overlap=16)


def test_default_overlap_suits_the_smallest_tile():
    assert DEFAULT_OVERLAP % 16 == 0 and 0 <= DEFAULT_OVERLAP <= MIN_TILE - ALIGN
    tile_starts(1000, MIN_TILE, DEFAULT_OVERLAP)  # does not raise


def test_tiny_lmfn_tiled_is_close_to_whole(tiny_model):
    image = as_tensor(natural_like(97, 131, seed=1))
    with torch.inference_mode():
        whole = tiny_model(image).clamp(0, 1)
        tiled = run_tiled(tiny_model, image, tile=64, overlap=16).clamp(0, 1)
        unaligned = run_tiled(tiny_model, image, tile=64, overlap=16, align=1).clamp(0, 1)
    # Measured 51.8 dB aligned; unaligned offsets put tiles on another stride-16 grid: 20.7 dB.
    assert psnr(tiled, whole).item() >= 45
    assert psnr(unaligned, whole).item() < psnr(tiled, whole).item() - 15


@pytest.mark.skipif(not SHIPPED.exists(), reason="shipped weights not in this checkout")
def test_shipped_weights_tiled_matches_whole_on_city():
    from lmfn_cli.images import read_image
    from lmfn_cli.weights import load_model

    model = load_model(SHIPPED)
    image = as_tensor(read_image(CITY)[..., :3])
    assert image.shape[-2:] == (240, 320)
    with torch.inference_mode():
        whole = model(image).clamp(0, 1)
        tiled = run_tiled(model, image, tile=128, overlap=DEFAULT_OVERLAP).clamp(0, 1)
    assert psnr(tiled, whole).item() >= 40


# ------------------------------------------------------------------------------ choose_tile, halve


def test_choose_tile_whole_when_it_fits():
    need = 1024 * 1024 * 600  # padded 1000x1000 -> 1008x1008 < 1024^2 px at 600 B/px
    assert choose_tile(1000, 1000, free_bytes=2 * need, bytes_per_pixel=600) == 0
    # Padding counts: 1000 px pads to 1008, and a 16x16 image still costs 64x64.
    assert choose_tile(1000, 1000, free_bytes=2 * 1000 * 1000 * 600, bytes_per_pixel=600) != 0
    assert choose_tile(16, 16, free_bytes=2 * 64 * 64 * 600, bytes_per_pixel=600) == 0
    assert choose_tile(16, 16, free_bytes=2 * 63 * 64 * 600, bytes_per_pixel=600) != 0


@pytest.mark.parametrize("free_gib", [0.5, 1, 2, 8])
def test_choose_tile_is_the_largest_square_that_fits(free_gib):
    free = int(free_gib * 2**30)
    tile = choose_tile(4000, 6000, free_bytes=free, bytes_per_pixel=FORWARD_BYTES_PER_PIXEL)
    assert tile >= MIN_TILE and tile % 16 == 0
    budget = 0.5 * free
    assert tile * tile * FORWARD_BYTES_PER_PIXEL <= budget
    assert (tile + 16) ** 2 * FORWARD_BYTES_PER_PIXEL > budget


def test_choose_tile_fraction_multiple_and_floor():
    assert choose_tile(4000, 6000, free_bytes=1000 * 1000, bytes_per_pixel=1, fraction=1.0) == 992
    assert choose_tile(4000, 6000, free_bytes=1000 * 1000, bytes_per_pixel=1, fraction=1.0, multiple=100) == 1000
    assert choose_tile(4000, 6000, free_bytes=1000, bytes_per_pixel=600) == MIN_TILE  # nothing fits
    assert choose_tile(4000, 6000, free_bytes=0, bytes_per_pixel=600) == MIN_TILE
    with pytest.raises(ValueError):
        choose_tile(100, 100, free_bytes=10**9, bytes_per_pixel=0)


@pytest.mark.parametrize(
    "tile,h,w,expected",
    [
        (0, 4000, 6000, 3008),  # half the longer side, rounded up to 16
        (0, 700, 1000, 512),
        (0, 100, 70, 64),
        (0, 70, 50, 64),  # 35 -> 48 < MIN_TILE, but 64 < 70 still helps
        (0, 64, 64, None),
        (0, 40, 30, None),
        (9999, 700, 1000, 512),  # a tile covering the whole image is the whole image
        (3008, 4000, 6000, 1504),
        (512, 4000, 6000, 256),
        (200, 4000, 6000, 96),  # 100 rounded down to 16
        (128, 4000, 6000, 64),
        (96, 4000, 6000, 64),  # 48 < MIN_TILE, but 64 < 96
        (64, 4000, 6000, None),
    ],
)
def test_halve(tile, h, w, expected):
    assert halve(tile, h, w) == expected


def test_halve_sequence_ends():
    seen, tile = [], 0
    while tile is not None:
        seen.append(tile)
        tile = halve(tile, 4000, 6000)
    assert seen == [0, 3008, 1504, 752, 368, 176, 80, 64]


def test_choose_tile_respects_max_tile_and_max_whole():
    plenty = 1 << 40
    cap = dict(max_tile=1024, max_whole=1 << 21)
    assert choose_tile(1080, 1920, free_bytes=plenty, bytes_per_pixel=640, **cap) == 0  # 2.09 MP padded
    assert choose_tile(1440, 2560, free_bytes=plenty, bytes_per_pixel=640, **cap) == 1024
    assert choose_tile(4000, 6000, free_bytes=plenty, bytes_per_pixel=640, **cap) == 1024
    assert choose_tile(4000, 6000, free_bytes=plenty, bytes_per_pixel=640) == 0
    small = 512 * 512 * 640 * 2  # fraction 0.5 -> a 512 px tile fits, 1024 does not
    assert choose_tile(4000, 6000, free_bytes=small, bytes_per_pixel=640, **cap) == 512


# --- balanced tiles, integer images, row-by-row accumulation -------------------------------------


def _full_accumulation(forward, image, tile, overlap, align=16):
    """The blend computed the plain way: full-size accumulators (the reference for run_tiled)."""
    from lmfn_cli.tiling import _spans, feather

    _, c, h, w = image.shape
    acc, wsum = torch.zeros((c, h, w)), torch.zeros((1, h, w))
    for y, th in _spans(h, tile, overlap, align):
        for x, tw in _spans(w, tile, overlap, align):
            weight = feather(h, y, th, overlap)[:, None] * feather(w, x, tw, overlap)[None, :]
            acc[:, y:y + th, x:x + tw] += forward(image[:, :, y:y + th, x:x + tw])[0] * weight
            wsum[:, y:y + th, x:x + tw] += weight
    return (acc / wsum).unsqueeze(0)


def _position_dependent(x: torch.Tensor) -> torch.Tensor:
    """A forward whose output depends on the tile's content as a whole, so blending shows."""
    return x * 0.5 + x.mean() * 0.5


@pytest.mark.parametrize("h, w, tile, overlap", [(90, 130, 48, 16), (200, 70, 64, 32), (1080 // 8, 1920 // 8, 64, 16)])
def test_row_by_row_blend_equals_full_accumulation(h, w, tile, overlap):
    image = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(h))
    got = run_tiled(_position_dependent, image, tile=tile, overlap=overlap)
    want = _full_accumulation(_position_dependent, image, tile, overlap)
    assert torch.allclose(got, want, atol=1e-6)


def test_balanced_tiles_compute_little_more_than_the_image():
    from lmfn_cli.tiling import _spans, balanced_tile

    assert balanced_tile(1080, 1024, 32) == 560  # two tiles of 560 rows, not two of 1024
    assert balanced_tile(500, 1024, 32) == 500
    for length, tile in [(1080, 1024), (1920, 1024), (6000, 512), (4000, 512), (721, 256), (100, 64)]:
        spans = _spans(length, tile, 32, 16)
        assert len(spans) == len(tile_starts(length, tile, 32))  # never more tiles than the square layout
        assert all(size <= tile for _, size in spans)
        assert sum(size for _, size in spans) <= length + len(spans) * (32 + 16)  # overlap + alignment only


def test_integer_image_and_output_match_the_float_path():
    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 256, (70, 100, 3), dtype=np.uint8)
    as_int = torch.from_numpy(pixels).permute(2, 0, 1).unsqueeze(0)  # a strided view, as restore passes it
    as_float = as_int.float() * (1.0 / 255)

    def forward(x):
        return (x * 0.9 + 0.05).clamp(0, 1)

    want = run_tiled(forward, as_float, tile=48, overlap=16)
    result = np.empty_like(pixels)
    out = torch.from_numpy(result).permute(2, 0, 1).unsqueeze(0)
    run_tiled(forward, as_int, tile=48, overlap=16, scale=255.0, out=out)
    expected = np.rint(want[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    assert np.array_equal(result, expected)
    assert np.array_equal(pixels, as_int[0].permute(1, 2, 0).numpy())  # the input is not touched


def test_run_tiled_out_must_match_the_image():
    with pytest.raises(ValueError, match="out must have"):
        run_tiled(lambda x: x, torch.zeros(1, 3, 8, 8), tile=0, out=torch.zeros(1, 3, 8, 9))
