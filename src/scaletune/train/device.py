"""Where the built-in LM trains: device choice and the mixed-precision rule per device.

    resolve_device("auto")                 # cuda if available, else mps, else cpu
    autocast_settings("cuda", "auto", 64)  # (torch.bfloat16, True)

Both are plain functions of their arguments (and of what torch reports as available), so the rules are
unit-tested on a CPU-only machine.
"""

from __future__ import annotations

import re

import torch

from scaletune.errors import ScaletuneError

DEVICES = ("auto", "cpu", "cuda", "cuda:N", "mps")
PRECISIONS = ("auto", "fp32", "bf16")
CPU_BF16_FROM_WIDTH = 128  # on CPU, bf16 autocast is faster than fp32 only from this width up (benchmarks/RESULTS.md)


def check_device(name: str) -> None:
    """Raise ScaletuneError unless ``name`` is one of auto, cpu, cuda, cuda:N, mps (availability is not checked)."""
    if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", name):
        raise ScaletuneError(f"device must be one of {', '.join(DEVICES)} (got {name!r})")


def resolve_device(name: str = "auto") -> torch.device:
    """The torch device for ``name``: ``auto`` takes cuda, then mps, then cpu; an explicit device that this
    machine lacks is a ScaletuneError (a run asked for a GPU should not silently train on the CPU)."""
    check_device(name)
    cuda = torch.cuda.is_available()
    mps = bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()
    if name == "auto":
        return torch.device("cuda" if cuda else "mps" if mps else "cpu")
    if name.startswith("cuda"):
        if not cuda:
            raise ScaletuneError(
                f"device {name!r} requested but torch sees no CUDA GPU (torch {torch.__version__}); use device=auto or cpu"
            )
        index = int(name.split(":")[1]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise ScaletuneError(f"device {name!r}: only {torch.cuda.device_count()} CUDA device(s) visible")
    if name == "mps" and not mps:
        raise ScaletuneError("device 'mps' requested but torch reports MPS unavailable; use device=auto or cpu")
    return torch.device(name)


def autocast_settings(device_type: str, precision: str = "auto", width: int = 0) -> tuple[torch.dtype, bool]:
    """(dtype, enabled) for ``torch.autocast(device_type, dtype=..., enabled=...)`` in training and evaluation.

    ``precision``: ``fp32`` never autocasts, ``bf16`` always does; ``auto`` = bf16 on CUDA (tensor cores;
    weights and optimizer state stay fp32), bf16 on CPU from width 128 (where it is faster; below it fp32, so
    CPU numbers of the tiny proxies stay as they were), fp32 on MPS (bf16 there needs a recent macOS).
    """
    if precision not in PRECISIONS:
        raise ScaletuneError(f"precision must be auto, fp32 or bf16 (got {precision!r})")
    if precision != "auto":
        return torch.bfloat16, precision == "bf16"
    if device_type == "cuda":
        return torch.bfloat16, True
    if device_type == "cpu":
        return torch.bfloat16, width >= CPU_BF16_FROM_WIDTH
    return torch.bfloat16, False


def configure(device: torch.device) -> None:
    """Per-device global settings: TF32 matmuls on CUDA (for what runs in fp32 outside autocast, and for
    precision=fp32 runs); nothing elsewhere. Process-wide, as torch's setting is."""
    if device.type == "cuda":
        torch.set_float32_matmul_precision("high")
