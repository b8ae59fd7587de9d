"""Loss curves with their per-step learning rates, read from CSVs, run-table curve files or studies.

A `Curve` holds the logged (step, loss) points and the rate of *every* step from 0 to the last logged one,
because the laws sum over all steps. The rates come from, in this order:

1. the curve's own ``lr`` column when it lists every step 0..last;
2. a schedule: a spec string (``cosine:steps=24000,lr=3e-4,warmup=2160,final=0.1``) or a (step, lr) CSV,
   given per curve; when the curve also records sampled rates, they must agree with it (a wrong spec is
   caught instead of silently fitted).

A point at step ``s`` is the loss after ``s`` optimizer updates (as `scaletune.train.run_lm` logs it), so it
follows the rates ``lrs[0..s-1]`` of the schedule (0-indexed, `scaletune.schedules`). A recorded ``lr`` at
step ``s`` may be the rate of the update just done (``lrs[s-1]``, run_lm) or of the next one (``lrs[s]``,
the multipowerlaw logs): both are accepted. Losses are in nats.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from scaletune.errors import ScaletuneError
from scaletune.runtable import read_table, require_columns
from scaletune.schedules import Schedule, TableSchedule, read_schedule


@dataclass(frozen=True)
class Curve:
    """One training run's loss curve: ``loss[i]`` after ``steps[i]`` updates; ``lrs`` the rates of updates 0..steps[-1]-1."""

    name: str
    steps: np.ndarray  # logged steps (int, increasing)
    loss: np.ndarray  # loss at those steps (nats)
    lrs: np.ndarray  # learning rates of updates 0..steps[-1]-1
    warmup: int  # the rate first reaches its peak at step warmup - 1 (0: no warm-up)
    schedule: str = ""  # spec string or table file the rates came from ("recorded": the curve's own lr column)

    @property
    def area(self) -> float:
        """Total learning-rate area (sum of all rates) up to the last logged step."""
        return float(self.lrs.sum())

    def fitted_points(self) -> tuple[np.ndarray, np.ndarray]:
        """The (step, loss) points a law can use: those at or after the end of warm-up (and after step 0)."""
        keep = self.steps >= max(self.warmup, 1)
        return self.steps[keep], self.loss[keep]


def detect_warmup(lrs: np.ndarray) -> int:
    """Warm-up length of a rate sequence: 0 if it starts at its peak, else the first peak step + 1."""
    lrs = np.asarray(lrs, dtype=float)
    peak = lrs.max()
    return 0 if lrs[0] >= peak * (1 - 1e-9) else int(np.argmax(lrs >= peak * (1 - 1e-9))) + 1


def curve_from_arrays(
    name: str,
    steps: ArrayLike,
    loss: ArrayLike,
    lr: ArrayLike | None = None,
    schedule: "str | Schedule | TableSchedule | None" = None,
    source: str = "",
    lr_steps: ArrayLike | None = None,
) -> Curve:
    """Build a curve, taking per-step rates from ``lr`` (if it lists every step) or from ``schedule``.
    ``lr`` is given at ``steps``, or at ``lr_steps`` when the rates are logged at other steps than losses."""
    where = source or name
    steps = np.asarray(steps, dtype=float)
    loss = np.asarray(loss, dtype=float)
    if len(steps) == 0:
        raise ScaletuneError(f"{where}: curve {name!r} has no points")
    if not (np.all(np.isfinite(steps)) and np.all(steps >= 0) and np.all(steps == np.round(steps))):
        raise ScaletuneError(f"{where}: curve {name!r}: column 'step' must hold integers >= 0")
    bad = ~np.isfinite(loss) | (loss <= 0)
    if bad.any():
        raise ScaletuneError(
            f"{where}: curve {name!r}: column 'loss' has a missing or non-positive value at step {int(steps[np.argmax(bad)])}"
        )
    order = np.argsort(steps, kind="stable")
    steps, loss = steps[order].astype(np.int64), loss[order]
    if np.any(np.diff(steps) == 0):
        raise ScaletuneError(f"{where}: curve {name!r}: step {int(steps[np.argmax(np.diff(steps) == 0)])} appears twice")
    last = int(steps[-1])
    rec: np.ndarray[Any, Any] | None = None
    rec_steps = steps
    if lr is not None:
        rec = np.asarray(lr, dtype=float)
        rec_steps = steps if lr_steps is None else np.asarray(lr_steps, dtype=float).astype(np.int64)
        if lr_steps is None:
            rec = rec[order]
        if len(rec) != len(rec_steps):
            raise ScaletuneError(f"{where}: curve {name!r}: {len(rec)} rates for {len(rec_steps)} steps")
        if np.all(np.isnan(rec)):
            rec = None
        elif not np.all(np.isfinite(rec)):
            raise ScaletuneError(f"{where}: curve {name!r}: column 'lr' has a missing value")
        else:
            _, first = np.unique(rec_steps, return_index=True)
            rec, rec_steps = rec[first], rec_steps[first]
    if schedule is not None:
        sched = read_schedule(schedule)
        if sched.steps < last:
            raise ScaletuneError(f"{where}: curve {name!r} runs to step {last} but its schedule {sched.spec()!r} has {sched.steps} steps")
        lrs = sched.lrs(last)
        if rec is not None:
            tol = 1e-3 * sched.lr + 1e-12
            just_done, expected = sched(np.maximum(rec_steps - 1, 0)), sched(rec_steps)
            off = (np.abs(just_done - rec) > tol) & (np.abs(expected - rec) > tol)
            if off.any():
                i = int(np.argmax(off))
                raise ScaletuneError(
                    f"{where}: curve {name!r}: recorded lr {rec[i]:.6g} at step {rec_steps[i]} disagrees with schedule "
                    f"{sched.spec()!r} ({expected[i]:.6g})"
                )
        warmup = sched.warmup
        label = sched.spec()
    elif rec is not None and np.array_equal(rec_steps[(rec_steps >= 1) & (rec_steps <= last)], np.arange(1, last + 1)):
        rates = rec[(rec_steps >= 1) & (rec_steps <= last)]  # at step s the rate of the update just done, lrs[s-1]
        lrs, warmup, label = rates, detect_warmup(rates), "recorded"
    else:
        raise ScaletuneError(
            f"{where}: curve {name!r} records rates at {0 if rec is None else len(rec_steps)} of its {last} steps; "
            "the rate of every step must be known",
            hint="give its schedule: a spec string or a step,lr CSV",
        )
    if np.any(lrs < 0) or not np.all(np.isfinite(lrs)):
        raise ScaletuneError(f"{where}: curve {name!r}: learning rates must be finite and >= 0")
    curve = Curve(name=name, steps=steps, loss=loss, lrs=np.asarray(lrs, dtype=float), warmup=int(warmup), schedule=label)
    if len(curve.fitted_points()[0]) == 0:
        raise ScaletuneError(f"{where}: curve {name!r} has no point after its warm-up of {warmup} steps")
    return curve


def _schedule_for(name: str, schedules: "Mapping[str, object] | object | None") -> Any:
    if isinstance(schedules, Mapping):
        return schedules.get(name, schedules.get("*"))
    return schedules


def read_curves(
    path: str | Path,
    schedules: "Mapping[str, object] | str | Schedule | TableSchedule | None" = None,
    mapping: Mapping[str, str] | str | None = None,
    runs: pd.DataFrame | None = None,
    max_step: int | None = None,
) -> list[Curve]:
    """Read curves from a CSV/Parquet/JSONL with columns step, loss[, lr][, run_id][, tokens].

    Without ``run_id`` the file is one curve named after the file. ``schedules`` is one schedule for all
    curves, or a mapping run_id -> schedule (``"*"`` for the rest). ``runs`` (a run table with ``run_id``
    and ``schedule`` columns) supplies spec strings for curves that have none. Points at steps >=
    ``max_step`` are dropped (for logs that record the end of the schedule itself).
    """
    df = read_table(path, mapping)
    require_columns(df, ("step", "loss"))
    source = str(path)
    groups = [(Path(path).stem, df)] if "run_id" not in df.columns else [(str(k), g) for k, g in df.groupby("run_id", sort=False)]
    run_specs = {}
    if runs is not None and "run_id" in runs.columns and "schedule" in runs.columns:
        run_specs = {str(r): s for r, s in zip(runs["run_id"], runs["schedule"]) if isinstance(s, str) and s}
    curves = []
    for name, g in groups:
        steps = pd.to_numeric(g["step"], errors="coerce").to_numpy(float)
        loss = pd.to_numeric(g["loss"], errors="coerce").to_numpy(float)
        if np.isnan(steps).any():
            raise ScaletuneError(f"{source}: column 'step' has a non-numeric value in curve {name!r}")
        text = g["loss"].notna().to_numpy() & np.isnan(loss)  # a cell that is there but not a number
        if text.any():
            raise ScaletuneError(
                f"{source}: column 'loss' has a non-numeric value {g['loss'].iloc[int(np.argmax(text))]!r} in curve {name!r}"
            )
        lr = pd.to_numeric(g["lr"], errors="coerce").to_numpy(float) if "lr" in g.columns else None
        if max_step is not None:
            keep = steps < max_step
            steps, loss, lr = steps[keep], loss[keep], None if lr is None else lr[keep]
        # rows without a loss still give rates (a run table's curve file logs every step, evaluates some), and
        # rows without a rate (an evaluation at step 0, W&B logging losses and rates in separate calls) give
        # none: the rows that have one must still cover every step, which curve_from_arrays checks
        rates = None
        if lr is not None and np.isfinite(lr).any():
            fin = np.isfinite(lr)
            rates = (steps[fin], lr[fin])
        has = np.isfinite(loss)
        sched = _schedule_for(name, schedules) or run_specs.get(name)
        curves.append(
            curve_from_arrays(
                name,
                steps[has],
                loss[has],
                None if rates is None else rates[1],
                sched,
                source=source,
                lr_steps=None if rates is None else rates[0],
            )
        )
    return curves


def curves_from_study(study: Any, schedule_attr: str = "schedule", states: Sequence[str] = ("COMPLETE",)) -> list[Curve]:
    """Curves of an Optuna study's finished trials: the validation curve a scaletune sweep stores (user
    attribute ``curve``), else the reported intermediate values (step -> loss); the schedule spec from the
    user attribute ``schedule_attr`` or the stored run result's ``schedule``."""
    import optuna

    wanted = tuple(getattr(optuna.trial.TrialState, s) for s in states)
    curves = []
    for trial in study.get_trials(deepcopy=False, states=wanted):
        spec = trial.user_attrs.get(schedule_attr) or (trial.user_attrs.get("result") or {}).get("schedule")
        stored = trial.user_attrs.get("curve")
        if stored and "val_loss" in stored:
            steps = np.asarray(stored["step"], float)
            loss = np.asarray([np.nan if v is None else v for v in stored["val_loss"]], float)
        else:
            steps = np.asarray(list(trial.intermediate_values), float)
            loss = np.asarray(list(trial.intermediate_values.values()), float)
        if not spec or not np.isfinite(loss).any():
            continue
        has = np.isfinite(loss)
        curves.append(curve_from_arrays(f"trial-{trial.number}", steps[has], loss[has], None, spec, source=f"study {study.study_name}"))
    if not curves:
        raise ScaletuneError(
            f"study {study.study_name}: no finished trial has a loss curve and a schedule (user attribute {schedule_attr!r})"
        )
    return curves


def curves_hash(curves: Sequence[Curve]) -> str:
    """A short hash of the fitted data (names, points and rates), recorded in fit results."""
    h = hashlib.sha256()
    for c in curves:
        h.update(c.name.encode())
        for a in (c.steps, c.loss, c.lrs):
            h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]
