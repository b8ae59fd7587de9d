"""The plan of a study: a fixed, deterministic set of trials per rung, identified by (rung, slot).

Grid, random and QMC trials are fully planned before they run (their hyperparameters are drawn by Optuna's
samplers, seeded, into an in-memory study), so a resumed or concurrent sweep runs exactly the same set.
TPE and GP trials (and those of an Optuna sampler object given in Python) are planned as slots whose
values the rung's sampler draws when the trial starts, from the results so far. The scale-aware strategy plans a rung only when the smaller rungs are finished,
inside ranges narrowed from their results; the narrowed ranges are stored with the rung, so a resume
plans the same trials again.

Storage layout: the study ``NAME`` holds the study file and the ladder (user attributes); each rung is
an Optuna study ``NAME/rK`` holding its trials; each trial carries ``slot``, ``rung`` and ``seed``.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

import pandas as pd

from scaletune.errors import ScaletuneError
from scaletune.study.config import Rung, StudyConfig
from scaletune.workloads import import_function


def rung_study_name(name: str, rung: int) -> str:
    """Name of the Optuna study that holds the trials of one rung."""
    return f"{name}/r{rung}"


@dataclass(frozen=True)
class Slot:
    """One planned trial: its slot number in the rung, its training seed and its fixed hyperparameters
    (None where the sampler chooses them when the trial starts)."""

    slot: int
    seed: int
    params: dict[str, Any] | None


def plan_rung(config: StudyConfig, rung: Rung, ranges: dict[str, tuple[float, float]]) -> list[Slot]:
    """The trials of a rung within ``ranges`` (numeric hyperparameter -> (low, high)); deterministic."""
    import optuna

    searched = [d for d in config.space if d.kind != "fixed"]
    name = config.strategy.name
    if name == "grid":
        axes = [d.grid(*ranges.get(d.name, (None, None))) for d in searched]
        configs = [dict(zip([d.name for d in searched], combo)) for combo in itertools.product(*axes)]
    elif config.adaptive:
        return [Slot(i, config.seeds[i % len(config.seeds)], None) for i in range(config.strategy.trials)]
    else:  # random, qmc, scale-aware: Optuna's sampler, seeded, drawn ahead of time
        distributions = {d.name: d.distribution(*ranges.get(d.name, (None, None))) for d in searched}
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        scratch = optuna.create_study(sampler=config.make_sampler(rung))
        configs = []
        for _ in range(config.strategy.trials):
            trial = scratch.ask(distributions)
            configs.append(dict(trial.params))
            scratch.tell(trial, 0.0)
    # Seeds vary fastest so that an interrupted rung has whole configurations rather than whole seeds.
    return [Slot(i * len(config.seeds) + j, seed, params) for i, params in enumerate(configs) for j, seed in enumerate(config.seeds)]


def narrowed_ranges(config: StudyConfig, rung: Rung, smaller_runs: pd.DataFrame) -> dict[str, tuple[float, float]]:
    """Ranges of the numeric hyperparameters at ``rung``: as configured, or for the scale-aware strategy
    as returned by ``strategy.narrow(ranges, rung.scale, runs)`` from the finished ok runs of smaller rungs."""
    ranges = config.ranges(rung)
    if config.strategy.name != "scale-aware" or smaller_runs.empty:
        return ranges
    narrow = import_function(config.strategy.narrow, "strategy.narrow")
    out = narrow(dict(ranges), dict(rung.scale), smaller_runs)
    if not isinstance(out, dict):
        raise ScaletuneError(f"strategy.narrow {config.strategy.narrow!r} returned {type(out).__name__}, not a dict")
    result = dict(ranges)
    for key, value in out.items():
        if key not in ranges:
            raise ScaletuneError(
                f"strategy.narrow returned a range for {key!r}, which is not a numeric hyperparameter of the space ({', '.join(ranges)})"
            )
        lo, hi = (float(v) for v in value)
        dim = next(d for d in config.space if d.name == key)
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi) or ((dim.kind == "log" or dim.log) and lo <= 0):
            raise ScaletuneError(f"strategy.narrow returned an invalid range for {key!r} at {rung.label}: [{lo}, {hi}]")
        if dim.kind == "int":
            lo, hi = math.ceil(lo), math.floor(hi)
        result[key] = (lo, hi)
    return result
