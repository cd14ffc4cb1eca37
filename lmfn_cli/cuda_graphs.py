"""CUDA graphs for inference: capture the network once per input shape, replay it for the rest.

On a GPU, LMFN's forward is several hundred small kernels (ALFM's pooling, softmax and folds
between the convolutions); launched one by one from Python, their launch cost is of the order of
the arithmetic at 1280x720. A CUDA graph records the kernels of one forward for one input shape
and replays them with a single launch (PyTorch's "CUDA Graphs" notes: warm up on a side stream,
capture into static input and output buffers, copy each new input into the static one, replay).
The tiles of an image and the frames of a video share a shape, so the first is captured and the
rest replay.

`GraphCache` wraps a forward function: a few shapes are kept (each capture holds its own memory
pool, about one forward's activations), least recently used first out. Capturing is done by a
backend, `CudaGraphBackend` on a GPU; tests pass a stand-in backend, since this code cannot be
run on a machine without CUDA. A shape whose capture fails for any reason other than memory runs
eagerly from then on (logged once); an out-of-memory error propagates, so that the caller's
tile-halving still works. ``LMFN_CUDA_GRAPHS=0`` in the environment turns graphs off.
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Protocol

import torch

__all__ = ["GRAPH_CAPACITY", "CudaGraphBackend", "GraphBackend", "GraphCache", "graphs_enabled"]

log = logging.getLogger(__name__)

GRAPH_CAPACITY = 4  # input shapes kept per cache: whole images, a tile, the last row's and column's tiles
WARMUP_RUNS = 2  # forwards before a capture: cuDNN autotuning and lazy initialisation stay out of the graph

Forward = Callable[[torch.Tensor], torch.Tensor]


def graphs_enabled() -> bool:
    """False when ``LMFN_CUDA_GRAPHS`` is set to 0, no or off (any case); True otherwise."""
    return os.environ.get("LMFN_CUDA_GRAPHS", "1").strip().lower() not in ("0", "no", "off", "false")


class GraphBackend(Protocol):
    """How a graph is captured and replayed: `CudaGraphBackend`, or a stand-in in tests."""

    def capture(self, fn: Forward, static_input: torch.Tensor) -> tuple[Any, torch.Tensor]:
        """Record ``fn(static_input)``; returns the graph and its static output tensor."""

    def replay(self, graph: Any) -> None:
        """Run the recorded kernels again on the static input's current values."""


class CudaGraphBackend:
    """`torch.cuda.CUDAGraph`, as PyTorch's CUDA graph notes describe it."""

    def capture(self, fn: Forward, static_input: torch.Tensor) -> tuple[Any, torch.Tensor]:
        device = static_input.device
        side = torch.cuda.Stream(device=device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            for _ in range(WARMUP_RUNS):
                fn(static_input)
        torch.cuda.current_stream(device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_output = fn(static_input)
        return graph, static_output

    def replay(self, graph: Any) -> None:
        graph.replay()


def _is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.cuda.OutOfMemoryError | MemoryError) or "out of memory" in str(exc).lower()


class GraphCache:
    """``fn`` with its CUDA graph replayed for input shapes it has seen.

    ``fn`` maps an ``(N,C,H,W)`` tensor on the GPU to one of any shape; it must not synchronise
    with the host (no ``.item()``, no data-dependent shapes), which holds for LMFN's forward. A
    call copies its input into the shape's static buffer, replays and returns a copy of the
    static output (the next replay overwrites it). Keyed by shape, dtype, device and strides
    (the memory layout), at most ``capacity`` graphs are kept.
    """

    def __init__(self, fn: Forward, *, capacity: int = GRAPH_CAPACITY, backend: GraphBackend | None = None) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.fn = fn
        self.capacity = capacity
        self.backend = backend if backend is not None else CudaGraphBackend()
        self._graphs: OrderedDict[tuple, tuple[Any, torch.Tensor, torch.Tensor]] = OrderedDict()
        self._eager: set[tuple] = set()
        self.captures = 0  # how many graphs were recorded (a figure for benchmarks and tests)
        self.replays = 0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        key = (tuple(x.shape), x.dtype, str(x.device), x.stride())
        if key in self._eager:
            return self.fn(x)
        entry = self._graphs.get(key)
        if entry is None:
            entry = self._capture(key, x)
            if entry is None:
                return self.fn(x)
        else:
            self._graphs.move_to_end(key)
        graph, static_input, static_output = entry
        static_input.copy_(x)
        self.backend.replay(graph)
        self.replays += 1
        return static_output.clone()

    def _capture(self, key: tuple, x: torch.Tensor) -> tuple[Any, torch.Tensor, torch.Tensor] | None:
        static_input = torch.empty_strided(x.shape, x.stride(), dtype=x.dtype, device=x.device)
        static_input.copy_(x)
        try:
            graph, static_output = self.backend.capture(self.fn, static_input)
        except Exception as exc:
            if _is_oom(exc):
                raise
            log.info("CUDA graph capture failed for input %s (%s); running that shape eagerly",
                     "x".join(map(str, key[0])), str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            self._eager.add(key)
            return None
        self.captures += 1
        self._graphs[key] = (graph, static_input, static_output)
        while len(self._graphs) > self.capacity:
            self._graphs.popitem(last=False)  # the graph and its memory pool go with it
        return self._graphs[key]

    def clear(self) -> None:
        """Drop every graph (their memory with them)."""
        self._graphs.clear()
        self._eager.clear()
