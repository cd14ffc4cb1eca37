"""The CUDA inference path (graphs, autotuning, channels-last, batches of tiles), run on a CPU.

No GPU is available to these tests: `cuda_graphs.GraphCache` is driven by a stand-in backend
that behaves as a CUDA graph does (the captured function is re-run on the static input buffer
and writes into the static output buffer), so the cache's bookkeeping is tested; whether
`torch.cuda.CUDAGraph` itself replays correctly is for `benchmarks/gpu_speed.py` on a GPU, which
compares replayed output with the eager forward.
"""

from __future__ import annotations

import logging

import pytest
import torch
from conftest import TINY

from lmfn_cli import inference
from lmfn_cli.cuda_graphs import GraphCache, graphs_enabled
from lmfn_cli.model import LMFN
from lmfn_cli.tiling import run_tiled


class FakeGraphs:
    """Captures by running ``fn`` once; a replay re-runs it on the static input, writing the
    static output in place, as a CUDA graph does. Counts both."""

    def __init__(self, fail: BaseException | None = None):
        self.fail = fail
        self.captured: list[tuple] = []
        self.replayed = 0

    def capture(self, fn, static_input):
        if self.fail is not None:
            raise self.fail
        self.captured.append(tuple(static_input.shape))
        static_output = fn(static_input)
        return (fn, static_input, static_output), static_output

    def replay(self, graph):
        fn, static_input, static_output = graph
        self.replayed += 1
        with torch.inference_mode():  # kernels write the buffer; no autograd check on a GPU
            static_output.copy_(fn(static_input))


def tiny_lmfn() -> LMFN:
    torch.manual_seed(0)
    return LMFN(TINY).eval()


def test_each_shape_is_captured_once_and_replayed_with_the_new_input():
    backend = FakeGraphs()
    cache = GraphCache(lambda x: x * 2 + 1, backend=backend)
    for seed in range(3):
        x = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(seed))
        assert torch.equal(cache(x), x * 2 + 1)  # a stale static input would give the first result again
    y = torch.rand(2, 3, 8, 8)
    assert torch.equal(cache(y), y * 2 + 1)
    assert backend.captured == [(1, 3, 8, 8), (2, 3, 8, 8)]
    assert cache.captures == 2 and cache.replays == 4


def test_the_result_is_a_copy_not_the_static_buffer():
    cache = GraphCache(lambda x: x + 1, backend=FakeGraphs())
    first = cache(torch.zeros(1, 1, 4, 4))
    cache(torch.ones(1, 1, 4, 4))
    assert torch.equal(first, torch.ones(1, 1, 4, 4))  # not overwritten by the next replay


def test_the_least_recently_used_shape_is_dropped_beyond_capacity():
    backend = FakeGraphs()
    cache = GraphCache(lambda x: -x, capacity=2, backend=backend)
    a, b, c = (torch.rand(1, 1, n, n) for n in (4, 5, 6))
    cache(a), cache(b), cache(a), cache(c)  # b is the least recently used when c arrives
    assert backend.captured == [(1, 1, 4, 4), (1, 1, 5, 5), (1, 1, 6, 6)]
    cache(a)
    assert len(backend.captured) == 3  # a was kept
    assert torch.equal(cache(b), -b) and len(backend.captured) == 4  # b was not


def test_layouts_are_captured_apart():
    backend = FakeGraphs()
    cache = GraphCache(lambda x: x * 3, backend=backend)
    x = torch.rand(1, 3, 6, 6)
    cache(x)
    nhwc = x.contiguous(memory_format=torch.channels_last)
    assert torch.equal(cache(nhwc), x * 3)
    assert len(backend.captured) == 2


def test_a_failed_capture_runs_that_shape_eagerly_and_says_so_once(caplog):
    backend = FakeGraphs(fail=RuntimeError("operation not permitted when stream is capturing"))
    calls = []
    cache = GraphCache(lambda x: calls.append(1) or x + 1, backend=backend)
    caplog.set_level(logging.INFO, logger="lmfn_cli.cuda_graphs")
    x = torch.rand(1, 3, 4, 4)
    assert torch.equal(cache(x), x + 1)
    assert torch.equal(cache(x), x + 1)
    assert len(calls) == 2 and cache.captures == 0
    assert caplog.text.count("CUDA graph capture failed for input 1x3x4x4") == 1


def test_out_of_memory_in_a_capture_propagates_so_tiles_can_shrink():
    cache = GraphCache(lambda x: x, backend=FakeGraphs(fail=torch.cuda.OutOfMemoryError("CUDA out of memory")))
    with pytest.raises(torch.cuda.OutOfMemoryError):
        cache(torch.zeros(1, 1, 2, 2))


def test_capacity_must_be_positive():
    with pytest.raises(ValueError, match="capacity"):
        GraphCache(lambda x: x, capacity=0)


@pytest.mark.parametrize("value,enabled", [(None, True), ("1", True), ("0", False), ("off", False), ("No", False)])
def test_graphs_can_be_turned_off_from_the_environment(monkeypatch, value, enabled):
    if value is None:
        monkeypatch.delenv("LMFN_CUDA_GRAPHS", raising=False)
    else:
        monkeypatch.setenv("LMFN_CUDA_GRAPHS", value)
    assert graphs_enabled() is enabled


def test_the_cuda_path_matches_the_eager_forward_and_reuses_its_graphs(monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    model = tiny_lmfn()
    x = torch.rand(1, 3, 32, 48)
    with torch.inference_mode():
        expected = model(x).clamp(0, 1)
    backend = FakeGraphs()
    cpu = torch.device("cpu")  # the path, with its device, run where this test can run
    for _ in range(2):  # a second image: the same graph, not a new capture
        y = inference._cuda_forward(model, cpu, "fp32", backend=backend)(x)
        torch.testing.assert_close(y, expected, rtol=0, atol=1e-6)
    assert backend.captured == [(1, 3, 32, 48)] and backend.replayed == 2
    assert torch.backends.cudnn.benchmark is True  # cuDNN autotuning on
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(c.weight.is_contiguous(memory_format=torch.channels_last) for c in convs)


def test_graphs_are_dropped_when_the_weights_move(monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    model = tiny_lmfn()
    x = torch.rand(1, 3, 16, 16)
    backend = FakeGraphs()
    cpu = torch.device("cpu")
    inference._cuda_forward(model, cpu, "fp32", backend=backend)(x)
    model.to(torch.float64).to(torch.float32)  # new tensors: the graph's addresses are stale
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(0.5)
    with torch.inference_mode():
        expected = model(x).clamp(0, 1)
    y = inference._cuda_forward(model, cpu, "fp32", backend=backend)(x)
    assert len(backend.captured) == 2
    torch.testing.assert_close(y, expected, rtol=0, atol=1e-6)


def test_without_graphs_the_cuda_path_runs_eagerly(monkeypatch):
    monkeypatch.setenv("LMFN_CUDA_GRAPHS", "0")
    model = tiny_lmfn()
    backend = FakeGraphs()
    x = torch.rand(1, 3, 16, 16)
    with torch.inference_mode():
        expected = model(x).clamp(0, 1)
    torch.testing.assert_close(inference._cuda_forward(model, torch.device("cpu"), "fp32", backend=backend)(x),
                               expected, rtol=0, atol=1e-6)
    assert backend.captured == []


def test_tiles_of_one_size_run_in_batches_with_the_same_result():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 3, 5, padding=2)  # each image of a batch on its own, as LMFN
    image = torch.rand(1, 3, 100, 170)
    sizes = []

    def forward(x):
        sizes.append(x.shape[0])
        with torch.inference_mode():
            return torch.tanh(conv(x))

    one = run_tiled(forward, image, tile=48, overlap=8)
    singles = len(sizes)
    sizes.clear()
    ticks = []
    many = run_tiled(forward, image, tile=48, overlap=8, batch=3, on_tile=lambda d, t: ticks.append((d, t)))
    assert max(sizes) == 3 and sum(sizes) == singles and len(sizes) < singles
    assert ticks == [(i + 1, singles) for i in range(singles)]  # progress still per tile
    torch.testing.assert_close(many, one, rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="batch"):
        run_tiled(forward, image, tile=48, batch=0)


def test_tile_batches_follow_free_memory_on_cuda_only(monkeypatch):
    model = tiny_lmfn()
    cuda = torch.device("cuda")  # constructing the device needs no GPU
    monkeypatch.setattr(inference, "available_memory", lambda device: 1 << 40)
    assert inference._tile_batch(model, cuda, "bf16", 512) == inference.MAX_TILE_BATCH
    assert inference._tile_batch(model, torch.device("cpu"), "fp32", 512) == 1
    assert inference._tile_batch(model, cuda, "bf16", 0) == 1  # a whole image is one call anyway
    monkeypatch.setattr(inference, "available_memory", lambda device: 1)
    assert inference._tile_batch(model, cuda, "fp32", 512) == 1


def test_an_out_of_memory_batch_of_tiles_is_retried_one_tile_at_a_time(monkeypatch):
    model = tiny_lmfn()
    batches = []

    def fake_forward(model, device, precision):
        def forward(x):
            batches.append(x.shape[0])
            if x.shape[0] > 1:
                raise torch.cuda.OutOfMemoryError("CUDA out of memory")
            return x.clone()
        return forward

    monkeypatch.setattr(inference, "_forward", fake_forward)
    monkeypatch.setattr(inference, "_tile_batch", lambda *a: 4)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    inference._GRAPHS[model] = {"weights": (), "bf16": GraphCache(lambda x: x)}
    x = torch.rand(1, 3, 64, 200)
    y, tile, device, _ = inference._run(model, x, torch.device("cuda"), "bf16", 64, 8, None)
    torch.testing.assert_close(y, x)
    assert tile == 64 and device.type == "cuda"
    assert batches[0] > 1 and set(batches[1:]) == {1}
    assert model not in inference._GRAPHS  # the graphs' memory was given back with the cache
