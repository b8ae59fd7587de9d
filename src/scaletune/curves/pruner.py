"""An Optuna pruner that stops trials whose *predicted final loss* cannot reach the near-optimal band.

A fitted curve law gives the shape of the rest of a run under its schedule: from the last reported step
``s`` to the end ``T`` the loss still falls by ``drop = L_law(T) - L_law(s)`` (negative), most of it in the
cooldown. The trial's own level is anchored on its reports: ``final = mean(obs - L_law)`` over its last two
reports ``+ L_law(T)``. The interval is ``final -/+ z * (drop_uncertainty * |drop| + noise * final)``.
A trial is pruned when even the optimistic end, ``final - z * sigma``, lies above ``best * (1 + band)``,
``best`` being the lowest final loss of the study's completed trials.

Where the law comes from: ``fit`` (a `CurveFit` or its JSON path, e.g. from earlier runs), else a fit of
``law`` (default ``annealing``: 4 parameters, fits a handful of reports) to the study's completed trials,
one shape with a level per trial, refitted as more complete. Until ``min_trials`` have completed, nothing
is pruned.

Each trial's schedule: the trial's user attribute ``schedule`` (a full spec), else the ``schedule`` option
with ``lr`` taken from ``trial.params[lr_param]`` (e.g. ``schedule="cosine:steps=400,warmup=20,final=0.1"``).
Reported steps count completed updates (as `scaletune.train.run_lm` reports them); values are losses (nats).

    >>> pruner = CurvePruner(schedule="cosine:steps=400,warmup=20,final=0.1", band=0.01)  # doctest: +SKIP
    >>> optuna.create_study(pruner=pruner)                                              # doctest: +SKIP
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import optuna

from scaletune.curves.data import Curve, curve_from_arrays
from scaletune.curves.fit import CurveFit, fit_curves
from scaletune.errors import ScaletuneError
from scaletune.schedules import Schedule, read_schedule


class CurvePruner(optuna.pruners.BasePruner):
    """Prune trials whose predicted final loss (with its interval) cannot reach the near-optimal band."""

    def __init__(
        self,
        fit: "CurveFit | str | None" = None,
        law: str = "annealing",
        schedule: str | None = None,
        lr_param: str = "lr",
        band: float = 0.01,
        z: float = 2.0,
        drop_uncertainty: float = 0.25,
        noise: float = 0.002,
        min_trials: int = 2,
        min_reports: int = 1,
        schedule_attr: str = "schedule",
    ) -> None:
        if band < 0 or z < 0 or drop_uncertainty < 0 or noise < 0:
            raise ScaletuneError("curve pruner: band, z, drop_uncertainty and noise must be >= 0")
        if min_trials < 1 or min_reports < 1:
            raise ScaletuneError("curve pruner: min_trials and min_reports must be >= 1")
        self.fit_ = CurveFit.load(fit) if isinstance(fit, str) else fit
        self._given = self.fit_ is not None
        self.law, self.schedule, self.lr_param = law, schedule, lr_param
        self.band, self.z, self.drop_uncertainty, self.noise = band, z, drop_uncertainty, noise
        self.min_trials, self.min_reports, self.schedule_attr = min_trials, min_reports, schedule_attr
        self._fitted_on: tuple[int, ...] = ()
        if schedule is not None:
            read_schedule(schedule, steps=1, lr=1.0)  # a bad spec fails here, not inside a trial

    def trial_schedule(self, trial: optuna.trial.FrozenTrial) -> Schedule | None:
        """The trial's schedule, or None when neither the trial nor the options say it."""
        spec = trial.user_attrs.get(self.schedule_attr)
        if spec:
            return read_schedule(spec)
        if self.schedule is None:
            return None
        lr = trial.params.get(self.lr_param)
        return read_schedule(self.schedule, **({} if lr is None else {"lr": float(lr)}))

    def _curve(self, trial: optuna.trial.FrozenTrial, final: bool) -> Curve | None:
        sched = self.trial_schedule(trial)
        if sched is None:
            return None
        values = {int(k): float(v) for k, v in trial.intermediate_values.items() if math.isfinite(v)}
        if final and trial.value is not None and math.isfinite(trial.value):
            values[sched.steps] = float(trial.value)
        steps = np.array(sorted(values))
        steps = steps[(steps >= 1) & (steps <= sched.steps)]
        if len(steps) < 2:
            return None
        return curve_from_arrays(f"trial-{trial.number}", steps, [values[s] for s in steps], None, sched)

    def _reference(self, complete: list[optuna.trial.FrozenTrial]) -> CurveFit | None:
        if self._given:
            return self.fit_
        usable = tuple(sorted(t.number for t in complete))
        if len(usable) < self.min_trials:
            return None
        if usable != self._fitted_on:
            curves = [c for c in (self._curve(t, final=True) for t in complete) if c is not None]
            if len(curves) < self.min_trials:
                return None
            try:
                # one shape, a level per trial: trials at other learning rates sit at other levels
                self.fit_ = fit_curves(curves, law=self.law, bootstrap=0, n_starts=1, level_per_curve=True)
            except ScaletuneError:
                return self.fit_
            self._fitted_on = usable
        return self.fit_

    def predict_final(self, schedule: Schedule, steps: Any, losses: Any) -> tuple[float, float, float]:
        """(predicted final loss, low, high) of a run under ``schedule`` from its reports ``(steps, losses)``."""
        if self.fit_ is None:
            raise ScaletuneError("curve pruner: no fitted law yet")
        steps = np.asarray(steps, dtype=np.int64)
        losses = np.asarray(losses, dtype=float)
        law = self.fit_.predict(schedule, np.r_[steps, schedule.steps])
        offset = float(np.mean((losses - law[:-1])[-2:]))
        final = law[-1] + offset
        drop = law[-1] - law[len(steps) - 1]
        sigma = self.drop_uncertainty * abs(drop) + self.noise * final
        return final, final - self.z * sigma, final + self.z * sigma

    def prune(self, study: optuna.study.Study, trial: optuna.trial.FrozenTrial) -> bool:
        values = {s: v for s, v in trial.intermediate_values.items() if math.isfinite(v)}
        if len(values) < self.min_reports:
            return False
        complete = [
            t
            for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
            if t.value is not None and math.isfinite(t.value)
        ]
        if not complete or study.direction != optuna.study.StudyDirection.MINIMIZE:
            return False
        sched = self.trial_schedule(trial)
        if sched is None or self._reference(complete) is None:
            return False
        steps = np.array(sorted(values))
        if steps.max() >= sched.steps:
            return False
        best = min(float(t.value) for t in complete if t.value is not None)
        _, low, _ = self.predict_final(sched, steps, [values[s] for s in steps])
        return bool(low > best * (1 + self.band))

    def describe(self) -> dict[str, Any]:
        """The pruner's settings (recorded with study results)."""
        return {
            "law": self.fit_.law if self._given and self.fit_ is not None else self.law,
            "schedule": self.schedule,
            "band": self.band,
            "z": self.z,
            "drop_uncertainty": self.drop_uncertainty,
            "noise": self.noise,
            "min_trials": self.min_trials,
        }
