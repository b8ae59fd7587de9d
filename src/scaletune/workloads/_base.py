"""The workload interface: what a study needs to know about the thing a trial runs."""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Protocol

from scaletune.errors import ScaletuneError


class Report(Protocol):
    """``report(step, loss, **metrics) -> bool``: record an intermediate validation loss (and other metrics
    of that step, e.g. tokens, lr); True when the trial must stop (the pruner said so)."""

    def __call__(self, step: int, value: float, /, **metrics: Any) -> bool: ...


@dataclass(frozen=True)
class Resources:
    """What one trial needs: ``cpus`` (cores reserved; also Ray's num_cpus), ``gpus`` (GPUs, given to the
    trial through CUDA_VISIBLE_DEVICES; Ray's num_gpus) and, optionally, ``devices``: the GPU ids this
    machine offers to trials (default: detected, see `detect_devices`)."""

    cpus: int = 1
    gpus: int = 0
    devices: tuple[str, ...] | None = None


class Workload(ABC):
    """What a trial runs. A study calls only these members; subclasses: `LMWorkload` (the built-in LM),
    `FunctionWorkload` (``package.module:function``) and `CommandWorkload` (any program).

    Every method receives the trial's config: the rung's scale variables (``D`` tokens, ``N`` where known,
    ``width``, ...), the study's ``[fixed]`` values, the hyperparameters, ``seed`` and ``threads``.
    """

    resources: Resources = Resources()

    @property
    @abstractmethod
    def name(self) -> str:
        """Short description for messages and the stored study: ``lm``, ``package.module:function``, ``command``."""

    def __str__(self) -> str:
        return self.name

    def validate(self, configs: Iterable[Mapping[str, Any]]) -> None:
        """Raise `ScaletuneError` for the first config this workload cannot run (called before any trial
        with every config a trial can receive: each range end and each choice at each rung)."""

    def count_params(self, scale: Mapping[str, Any]) -> float | None:
        """N at a rung (``scale`` holds the scale variables and the [fixed] values), or None if unknown."""
        return None

    @abstractmethod
    def run(self, config: dict, report: Report, label: str = "trial") -> dict:
        """Run one trial; returns run-table columns (loss, status ok|diverged|pruned|failed, N, D, C, ...),
        optionally ``curve`` (a list of {step, tokens, lr, train_loss, val_loss}) and, for a failed run,
        ``error``. ``label`` names the trial (rung, slot, attempt) for files the workload keeps."""

    def schedule_spec(self, config: Mapping[str, Any]) -> str | None:
        """The trial's full learning-rate schedule spec (for pruners that predict the rest of a curve): by
        default a ``schedule`` value that already names its steps and lr (a ``free:`` or ``table:`` spec names
        them through its knots), else None."""
        spec = config.get("schedule")
        if not isinstance(spec, str):
            return None
        return spec if spec.startswith(("free:", "table:")) or ("steps=" in spec and "lr=" in spec) else None


def import_function(spec: str, what: str) -> Callable:
    """Import ``package.module:function``; ``what`` names the study-file key for the error message."""
    module_name, sep, fn_name = spec.partition(":")
    if not sep or not module_name or not fn_name:
        raise ScaletuneError(f"{what}: expected 'package.module:function', got {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ScaletuneError(f"{what}: cannot import module {module_name!r} ({exc})") from None
    fn = getattr(module, fn_name, None)
    if not callable(fn):
        raise ScaletuneError(f"{what}: module {module_name!r} has no function {fn_name!r}")
    return fn
