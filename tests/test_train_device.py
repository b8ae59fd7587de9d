"""Device choice, the precision rule per device, and torch.compile, on a CPU-only machine."""

import pytest
import torch

from scaletune.errors import ScaletuneError
from scaletune.train import run_lm
from scaletune.train.device import autocast_settings, resolve_device
from scaletune.train.trainer import RunConfig

TINY = {"width": 32, "depth": 2, "tokens": 8 * 1024, "lr": 1e-2, "batch_size": 1024, "seq_len": 64, "eval_tokens": 2048}


def available(monkeypatch, cuda: int, mps: bool):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: cuda)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)


@pytest.mark.parametrize("cuda, mps, want", [(1, True, "cuda"), (0, True, "mps"), (0, False, "cpu")])
def test_auto_prefers_cuda_then_mps_then_cpu(monkeypatch, cuda, mps, want):
    available(monkeypatch, cuda, mps)
    assert resolve_device("auto") == torch.device(want)
    assert resolve_device("cpu") == torch.device("cpu")


def test_explicit_devices_must_exist(monkeypatch):
    available(monkeypatch, 2, False)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(ScaletuneError, match="cuda:2"):
        resolve_device("cuda:2")
    with pytest.raises(ScaletuneError, match="mps"):
        resolve_device("mps")
    available(monkeypatch, 0, False)
    with pytest.raises(ScaletuneError, match="'cuda'"):
        resolve_device("cuda")
    with pytest.raises(ScaletuneError, match="gpu"):
        RunConfig.from_dict({**TINY, "device": "gpu"})
    RunConfig.from_dict({**TINY, "device": "cuda:0"})  # planned on a machine without one: fine until it runs


@pytest.mark.parametrize(
    "device, precision, width, enabled",
    [
        ("cuda", "auto", 32, True),
        ("cuda", "fp32", 1024, False),
        ("cuda", "bf16", 32, True),
        ("cpu", "auto", 64, False),
        ("cpu", "auto", 128, True),
        ("cpu", "fp32", 256, False),
        ("cpu", "bf16", 32, True),
        ("mps", "auto", 1024, False),
        ("mps", "bf16", 64, True),
    ],
)
def test_autocast_rule(device, precision, width, enabled):
    assert autocast_settings(device, precision, width) == (torch.bfloat16, enabled)
    assert RunConfig.from_dict({**TINY, "width": width, "precision": precision}).autocast(device) == {
        "device_type": device,
        "dtype": torch.bfloat16,
        "enabled": enabled,
    }


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_run_on_cpu_and_a_missing_gpu():
    auto, cpu = run_lm(TINY), run_lm({**TINY, "device": "cpu"})
    assert auto["device"] == cpu["device"] == "cpu" and auto["loss"] == cpu["loss"]
    with pytest.raises(ScaletuneError, match="cuda"):
        run_lm({**TINY, "device": "cuda"})


@pytest.mark.slow
def test_compiled_run_matches_eager():
    """torch.compile (inductor, C++ on CPU) fuses kernels, so the loss agrees to float tolerance, not bits."""
    small = {**TINY, "depth": 1}  # compile time grows with depth; one block exercises the same path
    eager, compiled = run_lm(small), run_lm({**small, "compile": True})
    assert compiled["status"] == "ok"
    assert compiled["loss"] == pytest.approx(eager["loss"], abs=1e-3)
    assert compiled["curve"][0]["attn_logit_max"] == pytest.approx(eager["curve"][0]["attn_logit_max"], rel=1e-4)
