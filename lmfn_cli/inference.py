"""Run a loaded LMFN on numpy images: device and precision choice, tiling, out-of-memory recovery.

``deblur`` is the one-call API (numpy in, numpy out). ``restore`` does the same and also says
how the image was run (tile size, device, precision), which the CLI reports with ``--json``.

Out of memory is never fatal: the tile is halved (``tiling.halve``) and the image redone; on
CUDA, when even the smallest tile fails, the image is redone on the CPU in fp32.

On a CPU an `LMFN` runs as its fused graph (`fused`); on CUDA channels-last with cuDNN
autotuning, each input shape captured once as a CUDA graph and replayed (`cuda_graphs`), and
tiles of one size run a few at a time.
"""

from __future__ import annotations

import logging
import os
import weakref
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch

from .cuda_graphs import GraphBackend, GraphCache, graphs_enabled
from .errors import ImageError
from .fused import FusedLMFN, fused_ops_available
from .model import LMFN
from .precision import cpu_has_native_bf16, native_bf16_flags
from .tiling import (ALIGN, CPU_MAX_TILE, CPU_MAX_WHOLE, DEFAULT_OVERLAP, FORWARD_BYTES_PER_PIXEL, FUSED_BYTES_PER_PIXEL,
                     choose_tile, halve, run_tiled)

log = logging.getLogger(__name__)

__all__ = ["PRECISIONS", "Restored", "available_memory", "deblur", "resolve_device", "resolve_precision", "restore", "restore_batch",
           "use_channels_last"]

PRECISIONS = ("auto", "fp32", "fp16", "bf16")
_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
LEVEL_SCALE = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}  # integer pixels -> [0,1]
MAX_TILE_BATCH = 8  # tiles per network call on CUDA, at most


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cpu``, ``cuda``, ``cuda:N``, ``mps``.

    Asking for a device that is not there raises ``ValueError`` rather than silently using
    another one.
    """
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        log.info("no CUDA device found; running on the CPU")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ValueError(f"unknown device {name!r}") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for, but CUDA is not available")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"device {name!r} asked for, but only {torch.cuda.device_count()} CUDA devices exist")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError("device 'mps' asked for, but MPS is not available")
    return device


def resolve_precision(name: str, device: torch.device) -> str:
    """``auto`` -> on CUDA ``bf16`` where the GPU computes it natively (compute capability 8.0 and
    up: no overflow, as fast as fp16 there), else ``fp16``; on a CPU ``bf16`` where it computes bf16 natively (AVX512-BF16
    or AMX, per /proc/cpuinfo) and oneDNN's fused ops run the bf16 graph, else ``fp32``; ``fp32``
    on other devices.

    The CPU choice is made from the CPU's features alone, never from a timing probe, so it is the
    same for every image of a batch and every run on one machine. Measured on a 2-core Xeon with
    AMX: the fused bf16 graph takes about half the time of the fused fp32 one at 1280x720
    (``python benchmarks/cpu_speed.py``); without native bf16, oneDNN emulates bf16, slower than fp32.
    """
    if name not in PRECISIONS:
        raise ValueError(f"unknown precision {name!r} (choose from {', '.join(PRECISIONS)})")
    if name != "auto":
        return name
    if device.type == "cuda":
        return "bf16" if _cuda_bf16(device) else "fp16"
    if device.type != "cpu":
        return "fp32"
    if not cpu_has_native_bf16():
        choice, why = "fp32", "this CPU has no native bf16: no avx512_bf16 or amx_bf16 flag"
    elif not fused_ops_available():
        choice, why = "fp32", "this torch build lacks oneDNN's fused ops, which the bf16 graph needs"
    else:
        choice, why = "bf16", f"this CPU computes bf16 natively: {', '.join(native_bf16_flags())}"
    _say_once(f"precision auto: {choice} ({why})")
    return choice


def _cuda_bf16(device: torch.device) -> bool:
    """Whether this GPU computes bf16 natively (not emulated): Ampere (8.0) and later."""
    try:
        return torch.cuda.is_bf16_supported(including_emulation=False)
    except TypeError:  # an older torch without the keyword
        return torch.cuda.get_device_capability(device)[0] >= 8


_SAID: set[str] = set()


def _say_once(message: str) -> None:
    """Log ``message`` at INFO the first time only: `resolve_precision` runs for every image."""
    if message not in _SAID:
        _SAID.add(message)
        log.info("%s", message)


def _precision_for(model: torch.nn.Module, name: str, device: torch.device) -> str:
    """`resolve_precision` for this model: ``auto``'s CPU bf16 is the fused LMFN graph's; any other
    module on the CPU (an ONNX Runtime session, a stand-in) keeps fp32 under ``auto``."""
    if name == "auto" and device.type == "cpu" and not isinstance(model, LMFN):
        return "fp32"
    return resolve_precision(name, device)


def available_memory(device: torch.device) -> int:
    """Bytes free for activations: CUDA's ``mem_get_info``, else the system's available RAM."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:  # other Unixes
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 2 << 30  # unknown (e.g. Windows, macOS): assume 2 GiB; an OOM still halves the tile


def _is_oom(exc: BaseException) -> bool:
    if isinstance(exc, torch.cuda.OutOfMemoryError | MemoryError):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


def use_channels_last(model: LMFN) -> LMFN:
    """Store the 2-D convolution weights channels-last (NHWC), in place; returns ``model``.

    With NHWC activations too, oneDNN runs LMFN's convolutions without layout reorders: a
    1280x720 frame on 2 CPU cores takes 1.19-1.24 s instead of 1.51-1.54 s (medians), same
    results to 2e-7 (``python benchmarks/cpu_speed.py``). The weights' values and
    ``state_dict`` are unchanged.
    """
    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d) and not module.weight.is_contiguous(memory_format=torch.channels_last):
            module.weight.data = module.weight.data.contiguous(memory_format=torch.channels_last)
    return model


def _fuses(model: LMFN, device: torch.device, precision: str) -> bool:
    """Whether ``model`` runs as its fused CPU graph (`fused.FusedLMFN`, fp32 or its bf16 twin) here."""
    return device.type == "cpu" and precision in ("fp32", "bf16") and isinstance(model, LMFN) and fused_ops_available()


# model -> {"weights": their addresses, precision: GraphCache}: kept while the model lives, so
# every image and video frame replays the graphs; not on the model, so copies do not share them.
_GRAPHS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _graph_cache(model: torch.nn.Module, precision: str, network: Callable[[torch.Tensor], torch.Tensor],
                 backend: GraphBackend | None) -> GraphCache:
    """The model's CUDA graphs for ``precision``. A graph holds the addresses of the weights it
    was captured with: when the weights move (``model.to``, new tensors assigned), all are dropped."""
    weights = tuple(p.data_ptr() for p in model.parameters())
    store = _GRAPHS.setdefault(model, {})
    if store.get("weights") != weights:
        store.clear()
        store["weights"] = weights
    if precision not in store:
        store[precision] = GraphCache(network, backend=backend)
    return store[precision]


def _cuda_forward(model: torch.nn.Module, device: torch.device, precision: str,
                  backend: GraphBackend | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
    """A tile function on CUDA: channels-last weights and inputs, cuDNN autotuning (the fastest
    algorithm for each shape, found once), autocast for fp16/bf16, and for an `LMFN` its CUDA
    graph per input shape (`cuda_graphs`; off with ``LMFN_CUDA_GRAPHS=0``). ``backend`` replaces
    `cuda_graphs.CudaGraphBackend` (tests run this path on a CPU with a stand-in)."""
    torch.backends.cudnn.benchmark = True
    if isinstance(model, LMFN):
        use_channels_last(model)
    dtype = _DTYPES[precision]
    ref = weakref.ref(model)  # the cached graph's function must not keep the model alive

    def network(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode(), torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            return ref()(x)

    run = _graph_cache(model, precision, network, backend) if isinstance(model, LMFN) and graphs_enabled() else network

    def forward(tile: torch.Tensor) -> torch.Tensor:
        x = tile.to(device).contiguous(memory_format=torch.channels_last)
        y = run(x)
        with torch.inference_mode():
            if precision != "fp32" and not torch.isfinite(y).all():
                log.info("a %dx%d tile overflowed in %s; recomputed in fp32", x.shape[-1], x.shape[-2], precision)
                y = model(x.float())
            return y.float().clamp_(0.0, 1.0).cpu()

    return forward


def _forward(model: LMFN, device: torch.device, precision: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """A tile function for ``run_tiled``: CPU float tile in, CPU float32 result in [0,1] out.

    On a CPU in fp32 an `LMFN` runs as its fused inference graph (`fused.FusedLMFN`: 1280x720 in
    ~0.85 s on 2 cores against ~1.5 s for the plain eager forward and ~1.2 s channels-last,
    ``python benchmarks/cpu_speed.py``), in bf16 as its bf16 twin (no autocast: the graph is bf16
    throughout, with the few fp32 parts `fused` names); it is rebuilt for every image (~5 ms), so
    a model still being trained is always seen with its current weights.
    """
    if device.type == "cuda":
        return _cuda_forward(model, device, precision)
    dtype = _DTYPES[precision]
    nhwc = device.type == "cpu"  # measured on CPUs; mps keeps the default layout
    net: torch.nn.Module = model
    if _fuses(model, device, precision):
        net = FusedLMFN.from_model(model, dtype)
        dtype = torch.float32  # the graph holds its own precision: no autocast around it
    elif nhwc:
        use_channels_last(model)

    def forward(tile: torch.Tensor) -> torch.Tensor:
        x = tile.to(device)
        if nhwc:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            amp = torch.autocast(device.type, dtype=dtype) if dtype != torch.float32 else nullcontext()
            with amp:
                y = net(x)
            if precision != "fp32" and not torch.isfinite(y).all():
                log.info("a %dx%d tile overflowed in %s; recomputed in fp32", x.shape[-1], x.shape[-2], precision)
                y = (FusedLMFN.from_model(model) if isinstance(net, FusedLMFN) else net)(x.float())
            return y.float().clamp_(0.0, 1.0).cpu()

    return forward


@dataclass(frozen=True)
class Restored:
    """A deblurred image and how it was computed. ``tile`` 0 means the whole image at once."""

    pixels: np.ndarray
    tile: int
    device: str
    precision: str


def level_scale(dtype: np.dtype) -> float:
    """What a pixel of ``dtype`` is divided by to lie in [0,1]: 255, 65535, or 1 for floats."""
    if dtype in LEVEL_SCALE:
        return LEVEL_SCALE[dtype]
    if dtype.kind == "f":
        return 1.0
    raise ImageError(None, f"unsupported pixel type {dtype} (need uint8, uint16 or float)")


def _to_tensor(image: np.ndarray) -> tuple[torch.Tensor, float]:
    """(H,W,C) array -> (1,3,H,W) CPU tensor of its colour channels and the scale of its levels.

    Integer images stay integer (a view where possible: ``run_tiled`` converts one tile at a
    time, so a big 8-bit image never gets a full-size float copy); float images become float32.
    """
    scale = level_scale(image.dtype)
    colour = image[..., :3] if image.shape[2] >= 3 else np.repeat(image[..., :1], 3, axis=2)
    if scale == 1.0:
        colour = np.ascontiguousarray(colour, dtype=np.float32)
    elif not colour.flags.writeable:
        colour = colour.copy()  # torch.from_numpy wants a writable array (it is only read)
    return torch.from_numpy(colour).permute(2, 0, 1).unsqueeze(0), scale


def _run(model: LMFN, x: torch.Tensor, device: torch.device, precision: str, tile: int | None, overlap: int,
         on_tile: Callable[[int, int], None] | None, scale: float = 1.0,
         out: torch.Tensor | None = None) -> tuple[torch.Tensor, int, torch.device, str]:
    """Run with tile-halving on out-of-memory and, on CUDA, a final fall back to the CPU."""
    h, w = x.shape[-2:]
    if tile and tile >= max(h, w):
        tile = 0  # one tile covers the image: report it as a whole-image run
    if tile is None:  # auto
        cpu = device.type == "cpu"
        if _fuses(model, device, precision):
            per_pixel = FUSED_BYTES_PER_PIXEL
        else:
            per_pixel = FORWARD_BYTES_PER_PIXEL * (0.6 if precision != "fp32" else 1.0)
        # On a CPU, whole images up to a size and tiles up to a size: see tiling.CPU_MAX_TILE.
        tile = choose_tile(h, w, free_bytes=available_memory(device), bytes_per_pixel=per_pixel,
                           max_tile=CPU_MAX_TILE if cpu else None, max_whole=CPU_MAX_WHOLE if cpu else None)
        log.debug("auto tile for %dx%d on %s: %s", w, h, device, tile or "whole image")
    batch = _tile_batch(model, device, precision, tile)
    while True:
        # A small tile (a user's, or one halved after out-of-memory) cannot keep a large overlap.
        fitting = min(overlap, max(0, tile - ALIGN)) if tile else overlap
        try:
            y = run_tiled(_forward(model, device, precision), x, tile=tile, overlap=fitting, on_tile=on_tile,
                          scale=scale, out=out, batch=batch)
            return y, tile, device, precision
        except Exception as exc:
            if not _is_oom(exc):
                raise
            if device.type == "cuda":
                _GRAPHS.pop(model, None)  # captured graphs hold memory of their own
                torch.cuda.empty_cache()
            if batch > 1:  # first run the tiles one at a time, then smaller ones
                log.info("out of memory on %s with %d tiles at once; running them one by one", device, batch)
                batch = 1
                continue
            smaller = halve(tile, h, w)
            if smaller is not None:
                log.warning("out of memory on %s with %s; retrying with %d px tiles", device, f"{tile} px tiles" if tile else "the whole image", smaller)
                tile = smaller
                continue
            if device.type == "cpu":
                raise ImageError(None, f"out of memory on the CPU even with {tile} px tiles") from exc
            log.warning("out of memory on %s even with %d px tiles; running this image on the CPU", device, tile)
            cpu = torch.device("cpu")
            model.to(cpu)
            try:
                return _run(model, x, cpu, "fp32", None, overlap, on_tile, scale, out)
            finally:
                model.to(device)


def _tile_batch(model: torch.nn.Module, device: torch.device, precision: str, tile: int) -> int:
    """Tiles per network call: on CUDA as many as free memory holds (at most `MAX_TILE_BATCH`),
    elsewhere 1 (a CPU's cores are busy with one tile already)."""
    if device.type != "cuda" or not tile:
        return 1
    per_pixel = FORWARD_BYTES_PER_PIXEL * (0.6 if precision != "fp32" else 1.0)
    return int(max(1, min(MAX_TILE_BATCH, available_memory(device) // (tile * tile * per_pixel))))


def restore(model: LMFN, image: np.ndarray, *, tile: int | None = None, overlap: int = DEFAULT_OVERLAP,
            precision: str = "auto", on_tile: Callable[[int, int], None] | None = None) -> Restored:
    """Deblur one image with ``model`` on whatever device the model is.

    ``image``: (H,W) or (H,W,1) grayscale, (H,W,2) grayscale + alpha, (H,W,3) RGB or (H,W,4)
    RGBA; uint8, uint16, or float in [0,1]. The result has the same shape and dtype. Integer
    outputs are rounded (not truncated) from the clamped float result; alpha is returned
    untouched; grayscale goes through the network as R=G=B and comes back as the channel mean.

    ``tile``: None picks a tile from free memory (0 if the whole image fits), 0 runs the whole
    image at once, N uses N x N tiles overlapping by ``overlap`` pixels with feathered blending.
    ``precision``: auto (bf16 on a GPU or CPU that computes it natively, fp16 on older GPUs, else fp32), fp32, fp16 or
    bf16 (see `resolve_precision`); a half-precision tile
    that overflows is recomputed in fp32. ``on_tile(done, total)`` reports progress.
    """
    image = np.asarray(image)
    shape = image.shape
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[2] not in (1, 2, 3, 4) or min(image.shape[:2]) < 1:
        raise ImageError(None, f"unsupported image shape {shape} (need HxW or HxWxC with C in 1..4)")
    if tile is not None and tile < 0:
        raise ValueError(f"tile must be None (auto), 0 (whole image) or positive, not {tile}")
    device = next(model.parameters()).device
    precision = _precision_for(model, precision, device)

    x, scale = _to_tensor(image)
    channels = image.shape[2]
    h, w = image.shape[:2]
    # Colour integer images are rounded straight into the result array; grey ones are averaged
    # over the three network channels first, and float ones are returned as float: both go
    # through a float32 result.
    direct = channels >= 3 and scale != 1.0
    result = np.empty((h, w, 3), dtype=image.dtype if direct else np.float32)
    target = torch.from_numpy(result).permute(2, 0, 1).unsqueeze(0)
    _, used_tile, used_device, used_precision = _run(model, x, device, precision, tile, overlap, on_tile, scale, target)
    del x, target
    out = result
    if not direct:
        if channels <= 2:
            out = out.mean(axis=2, keepdims=True)
        if scale != 1.0:
            out *= scale
            np.rint(out, out=out)
        out = out.astype(image.dtype, order="C", copy=False)
    if channels in (2, 4):
        out = np.concatenate([out, image[..., -1:]], axis=2)
    return Restored(out.reshape(shape), used_tile, str(used_device), used_precision)


def restore_batch(model: LMFN, images: list[np.ndarray], *, precision: str = "auto") -> tuple[list[np.ndarray], tuple]:
    """Deblur same-sized (H,W,3) uint8 or uint16 images (video frames) in one network call.

    Returns the results (same shape and dtype, rounded) and ``(tile, device, precision)`` as
    ``restore`` reports them. The whole batch runs at once (tile 0); where it does not fit
    (out of memory), each image goes through ``restore`` with its tiling and fall-backs.
    """
    first = images[0]
    if any(i.shape != first.shape or i.dtype != first.dtype for i in images) or first.ndim != 3 or first.shape[2] != 3:
        raise ValueError("restore_batch takes same-sized (H,W,3) images of one dtype")
    if first.dtype not in LEVEL_SCALE:
        raise ValueError(f"restore_batch takes uint8 or uint16 images, not {first.dtype}")
    device = next(model.parameters()).device
    precision = _precision_for(model, precision, device)
    scale = LEVEL_SCALE[first.dtype]
    try:
        x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).to(torch.float32).mul_(1.0 / scale)
        y = _forward(model, device, precision)(x)
    except Exception as exc:
        if not _is_oom(exc):
            raise
        if device.type == "cuda":
            torch.cuda.empty_cache()
        log.info("a batch of %d frames did not fit on %s; running them one by one", len(images), device)
        done = [restore(model, image, precision=precision) for image in images]
        return [d.pixels for d in done], (done[-1].tile, done[-1].device, done[-1].precision)
    out = (y * scale).round().permute(0, 2, 3, 1).numpy().astype(first.dtype)
    return list(out), (0, str(device), precision)


def deblur(model: LMFN, image: np.ndarray, **options) -> np.ndarray:
    """Deblur one image; same arguments as ``restore``, returns only the pixels."""
    return restore(model, image, **options).pixels
