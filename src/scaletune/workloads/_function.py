"""A Python function as the workload: ``package.module:function`` with ``fn(config, report) -> dict``."""

from __future__ import annotations

from typing import Any, Callable

from scaletune.workloads._base import Report, Resources, Workload, import_function


class FunctionWorkload(Workload):
    """Calls ``fn(config, report)`` in the worker process. ``report(step, val_loss)`` returns True when the
    trial must stop (return then with ``status = "pruned"``); the returned dict holds run-table columns
    and optionally ``curve``. The function is imported here, so a typo fails before any trial runs."""

    def __init__(self, spec: str, resources: Resources | None = None) -> None:
        self.spec, self.resources = spec, resources or Resources()
        self.fn: Callable[[dict, Callable[..., bool]], Any] = import_function(spec, "workload")

    @property
    def name(self) -> str:
        return self.spec

    def run(self, config: dict, report: Report, label: str = "trial") -> dict:
        return self.fn(config, report)
