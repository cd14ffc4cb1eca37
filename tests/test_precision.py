"""Choosing the training precision: the cpuinfo check, the auto rules, and the step probe."""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn

from conftest import TINY
from lmfn_cli import LMFN
from lmfn_cli import precision as prec
from lmfn_cli.errors import ConfigError
from lmfn_cli.precision import cpu_has_native_bf16, probe_step_seconds, resolve_precision

CPU = torch.device("cpu")
CUDA = torch.device("cuda")  # constructing the device needs no GPU

CPUINFO_PLAIN = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Made-up CPU with avx512_bf16 in its name
flags\t\t: fpu sse2 avx2 avx512f avx512bw avx512_vnni
bugs\t\t: spectre_v1

processor\t: 1
flags\t\t: fpu sse2 avx2 avx512f avx512bw avx512_vnni
"""


def fake_cpuinfo(monkeypatch, tmp_path, text: str | None) -> None:
    """Point the cpuinfo reader at a file with ``text`` (``None``: a file that does not exist)."""
    path = tmp_path / "cpuinfo"
    if text is not None:
        path.write_text(text)
    monkeypatch.setattr(prec, "CPUINFO", path)


def native(monkeypatch, value: bool) -> None:
    monkeypatch.setattr(prec, "cpu_has_native_bf16", lambda: value)


class Probe:
    """A fake step timer: seconds per dtype, and the dtypes it was asked about."""

    def __init__(self, fp32: float, bf16: float):
        self.seconds = {None: fp32, torch.bfloat16: bf16}
        self.calls: list[torch.dtype | None] = []

    def __call__(self, dtype):
        self.calls.append(dtype)
        return self.seconds[dtype]


def never(dtype):
    raise AssertionError("the probe should not run")


# -- cpu_has_native_bf16 ---------------------------------------------------------------------


@pytest.mark.parametrize("flag", ["avx512_bf16", "amx_bf16"])
def test_native_bf16_flags_are_found(monkeypatch, tmp_path, flag):
    fake_cpuinfo(monkeypatch, tmp_path, CPUINFO_PLAIN.replace("avx512_vnni\nbugs", f"avx512_vnni {flag}\nbugs"))
    assert cpu_has_native_bf16() is True


def test_no_bf16_flag_is_not_native_even_if_the_text_mentions_it(monkeypatch, tmp_path):
    # avx512f alone, "avx512_bf16" outside the flags line, and a longer flag that merely contains it
    fake_cpuinfo(monkeypatch, tmp_path, CPUINFO_PLAIN.replace("avx512_vnni\nbugs", "avx512_vnni xavx512_bf16x\nbugs"))
    assert cpu_has_native_bf16() is False


@pytest.mark.parametrize("text", [None, "", "processor : 0\n"])
def test_unreadable_or_flagless_cpuinfo_is_not_native(monkeypatch, tmp_path, text):
    fake_cpuinfo(monkeypatch, tmp_path, text)
    assert cpu_has_native_bf16() is False


def test_this_machine_answers_with_a_bool():
    assert isinstance(cpu_has_native_bf16(), bool)


# -- resolve_precision on the CPU -------------------------------------------------------------


def test_cpu_auto_without_native_bf16_is_fp32_and_does_not_probe(monkeypatch):
    native(monkeypatch, False)
    assert resolve_precision("auto", CPU, never) is None
    assert resolve_precision("auto", "cpu") is None


def test_cpu_auto_with_native_bf16_and_no_probe_is_bf16(monkeypatch):
    native(monkeypatch, True)
    assert resolve_precision("auto", CPU) is torch.bfloat16


@pytest.mark.parametrize("fp32,bf16,expected", [(1.0, 0.6, torch.bfloat16), (0.6, 1.0, None), (0.8, 0.8, None)])
def test_cpu_auto_with_native_bf16_keeps_bf16_only_if_the_probe_is_faster(monkeypatch, fp32, bf16, expected):
    native(monkeypatch, True)
    probe = Probe(fp32=fp32, bf16=bf16)
    assert resolve_precision("auto", CPU, probe) is expected
    assert sorted(probe.calls, key=str) == sorted([None, torch.bfloat16], key=str)


def test_cpu_explicit_choices(monkeypatch, caplog):
    native(monkeypatch, True)
    assert resolve_precision("fp32", CPU, never) is None
    with caplog.at_level(logging.WARNING, logger="lmfn_cli.precision"):
        assert resolve_precision("bf16", CPU, never) is torch.bfloat16
    assert not caplog.records


def test_cpu_bf16_without_native_support_is_allowed_with_a_warning(monkeypatch, caplog):
    native(monkeypatch, False)
    with caplog.at_level(logging.WARNING, logger="lmfn_cli.precision"):
        assert resolve_precision("bf16", CPU, never) is torch.bfloat16
    assert any("emulated" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)


def test_cpu_fp16_is_a_config_error():
    with pytest.raises(ConfigError, match=r"fp16.*CUDA"):
        resolve_precision("fp16", CPU)


@pytest.mark.parametrize("bad", ["fp64", "BF16", "", "half", "amp"])
def test_unknown_precision_is_a_config_error(bad):
    with pytest.raises(ConfigError, match="precision must be one of auto, fp32, bf16, fp16"):
        resolve_precision(bad, CPU)


# -- resolve_precision on CUDA (the capability check is faked; no GPU needed) -----------------


@pytest.mark.parametrize("supported,expected", [(True, torch.bfloat16), (False, torch.float16)])
def test_cuda_auto_is_bf16_where_supported_else_fp16(monkeypatch, supported, expected):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: supported)
    native(monkeypatch, False)  # the CPU's flags do not matter on CUDA
    assert resolve_precision("auto", CUDA, never) is expected


def test_cuda_explicit_choices(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    assert resolve_precision("fp16", CUDA) is torch.float16
    assert resolve_precision("bf16", CUDA) is torch.bfloat16
    assert resolve_precision("fp32", CUDA) is None


def test_cuda_emulated_bf16_does_not_count_as_support(monkeypatch):
    # Pre-Ampere GPUs report bf16 "supported" only including emulation.
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation)
    assert resolve_precision("auto", CUDA) is torch.float16


# -- probe_step_seconds -----------------------------------------------------------------------


class Recorder(nn.Module):
    """A one-conv model that records, per forward, the autocast state and the input's layout.
    The log is a class attribute, so the probe's deep copy writes to the same list."""

    log: list[tuple[bool, torch.dtype, bool]] = []

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x):
        y = self.conv(x)
        Recorder.log.append((torch.is_autocast_enabled("cpu"), y.dtype, x.is_contiguous(memory_format=torch.channels_last)))
        return y


@pytest.fixture
def recorder():
    Recorder.log = []
    torch.manual_seed(0)
    return Recorder()


@pytest.mark.parametrize("dtype", [None, torch.bfloat16])
@pytest.mark.parametrize("channels_last", [False, True])
def test_probe_runs_the_steps_in_the_asked_precision_and_layout(recorder, dtype, channels_last):
    seconds = probe_step_seconds(recorder, torch.rand(2, 3, 16, 16), dtype, channels_last=channels_last, steps=3, warmup=1)
    assert seconds > 0
    assert len(Recorder.log) == 4
    want = (dtype is not None, dtype or torch.float32, channels_last)
    assert all(entry == want for entry in Recorder.log), Recorder.log


def test_probe_leaves_the_callers_model_and_grads_untouched():
    torch.manual_seed(0)
    model = LMFN(TINY)
    for p in model.parameters():
        p.grad = torch.full_like(p, 0.5)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    weight_format = model.encoder.head[0].weight.is_contiguous()
    batch = torch.rand(2, 3, 32, 32)
    probe_step_seconds(model, batch, torch.bfloat16, channels_last=True, steps=2, warmup=0)
    for n, p in model.named_parameters():
        assert torch.equal(p, before[n]), n
        assert torch.equal(p.grad, torch.full_like(p, 0.5)), n
    assert model.encoder.head[0].weight.is_contiguous() == weight_format
    assert batch.is_contiguous()


def test_probe_returns_the_median_of_the_timed_steps(monkeypatch, recorder):
    # Each step reads the clock twice; warm-up steps (100 s each here) must not count.
    durations = [100.0, 100.0, 1.0, 5.0, 2.0, 100.0, 3.0]
    ticks = []
    t = 0.0
    for d in durations:
        ticks += [t, t + d]
        t += d + 1
    clock = iter(ticks)
    monkeypatch.setattr(prec, "perf_counter", lambda: next(clock))
    assert probe_step_seconds(recorder, torch.rand(1, 3, 8, 8), None, channels_last=False, steps=5, warmup=2) == 3.0


def test_probe_wants_at_least_one_step(recorder):
    with pytest.raises(ValueError):
        probe_step_seconds(recorder, torch.rand(1, 3, 8, 8), None, channels_last=False, steps=0)
