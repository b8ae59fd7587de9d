"""Which GPUs this machine offers to trials, and how concurrent trials share them."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
from typing import Sequence

from scaletune.errors import ScaletuneError
from scaletune.workloads._base import Resources


def detect_devices(explicit: Sequence[str] | None = None) -> list[str]:
    """GPU ids available to trials, first match wins: ``explicit`` (the study's ``[resources] devices``),
    ``CUDA_VISIBLE_DEVICES`` (as CUDA reads it: up to the first invalid entry), ``nvidia-smi -L``, then
    ``torch.cuda.device_count()`` when torch is installed. [] when there is no GPU."""
    if explicit is not None:
        return [str(d) for d in explicit]
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        out = []
        for entry in (e.strip() for e in visible.split(",")):
            if not entry or entry.startswith("-"):
                break  # CUDA ignores everything from the first invalid id on
            out.append(entry)
        return out
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            listing = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=30, check=False).stdout
            return [str(i) for i, _ in enumerate(x for x in listing.splitlines() if x.startswith("GPU "))]
        except (OSError, subprocess.SubprocessError):
            pass
    if importlib.util.find_spec("torch") is not None:
        import torch

        return [str(i) for i in range(torch.cuda.device_count())]
    return []


def device_groups(resources: Resources) -> list[tuple[str, ...]] | None:
    """Disjoint sets of ``resources.gpus`` GPU ids, one per concurrent trial on this machine; None when
    trials need no GPU. Raises `ScaletuneError` when one trial needs more GPUs than the machine has."""
    if resources.gpus == 0:
        return None
    devices = detect_devices(resources.devices)
    if resources.gpus > len(devices):
        found = f"{len(devices)} (ids {', '.join(devices)})" if devices else "none"
        raise ScaletuneError(
            f"resources.gpus_per_trial = {resources.gpus} but the GPUs on this machine are "
            f"{found}: from [resources] devices, else CUDA_VISIBLE_DEVICES, else nvidia-smi"
        )
    k = resources.gpus
    return [tuple(devices[i * k : (i + 1) * k]) for i in range(len(devices) // k)]
