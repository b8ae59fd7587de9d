"""The built-in LM (`scaletune.train.run_lm`) as a workload. Imports torch only when used."""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from scaletune.errors import ScaletuneError
from scaletune.workloads._base import Report, Resources, Workload


def lm_config(config: Mapping[str, Any]) -> dict:
    """The run config `run_lm` receives: the ladder's D becomes its ``tokens``, and the study's N is
    dropped (run_lm counts its own parameters)."""
    out = dict(config)
    out.pop("N", None)
    if "D" in out:
        out["tokens"] = int(out.pop("D"))
    return out


class LMWorkload(Workload):
    """The built-in transformer LM on the bundled corpus. N = total parameters, embeddings included
    (`scaletune.train.count_params`); every config is checked by `RunConfig.from_dict` before any trial."""

    def __init__(self, resources: Resources | None = None) -> None:
        self.resources = resources or Resources()

    @property
    def name(self) -> str:
        return "lm"

    def validate(self, configs: Iterable[Mapping[str, Any]]) -> None:
        from scaletune.train import RunConfig

        for config in configs:
            RunConfig.from_dict(lm_config(config))

    def count_params(self, scale: Mapping[str, Any]) -> float:
        from scaletune.train import RunConfig, count_params

        values = {"lr": 1e-3, "tokens": 10**12, **lm_config(scale)}
        return float(count_params(RunConfig.from_dict(values).lm_config())["N"])

    def run(self, config: dict, report: Report, label: str = "trial") -> dict:
        from scaletune.train import run_lm

        return run_lm(lm_config(config), report)

    def schedule_spec(self, config: Mapping[str, Any]) -> str | None:
        from scaletune.train import RunConfig

        try:
            return RunConfig.from_dict(lm_config(config)).make_schedule().spec()
        except ScaletuneError:
            return None  # an invalid config fails when the trial runs, with the reason recorded
