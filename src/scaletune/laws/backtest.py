"""Backtests of a law: a rolling origin along a scale axis, with errors against the extrapolation distance.

The rows are ordered by a scale (``by``: C = 6ND by default for laws of N and D, or N, D, or any column) and
cut into bins: the distinct values when they repeat (isoFLOP budgets, a grid), else 10 equal-width bins of
ln scale. Fold k fits the law on bins 1..k and predicts the rows beyond (``horizon="all"``, the default) or
the next bin only (``horizon="next"``). The first fold keeps at least half of the bins and at least 3.
Each held-out point reports its prediction, interval, observation, relative error and the joint
extrapolation distance (natural-log units, L-infinity distance from the convex hull of the fold's fitted
points in log variables; see `scaletune.laws._calibration`).

    from scaletune.laws import backtest
    bt = backtest("chinchilla", table, by="C")       # table has N, D, loss
    bt.points()                                      # one row per fold and held-out point
    bt.summary()                                     # per fold: median |error|, coverage, largest distance

The same rolling origin, with point fits only, sets the error model of `fit`'s calibrated intervals.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd

from scaletune._json import fields_of
from scaletune.errors import ScaletuneError
from scaletune.laws._calibration import MIN_FOLDS, Calibration, estimate_error_model, scale_bins, scale_values
from scaletune.laws.catalogue import Law, get_law
from scaletune.laws.fitting import Data, FitResult, _as_frame, _design, fit, records as prediction_records
from scaletune.laws.objectives import Objective
from scaletune.runtable import require_columns, require_positive


def _folds(
    law: Law, df: pd.DataFrame, y: str, by: str | None, horizon: str, n_free: int
) -> tuple[str, str, list[tuple[int, np.ndarray, np.ndarray]]]:
    """(axis, bin description, [(k, train mask, test mask)]) of the rolling origin; folds whose training part
    cannot identify the law (too few points or a single value of a variable) are skipped."""
    if horizon not in ("all", "next"):
        raise ScaletuneError(f"unknown backtest horizon {horizon!r} (all or next)")
    axis, s = scale_values(df, law.variables, by)
    bins, how = scale_bins(s)
    m = int(bins.max()) + 1
    folds = []
    for k in range(max(3, math.ceil(m / 2)), m):
        train = bins < k
        test = bins >= k if horizon == "all" else bins == k
        if train.sum() <= n_free or any(df.loc[train, v].nunique() < 2 for v in law.variables):
            continue
        folds.append((k, train, test))
    return axis, f"{m} bins of {axis}: {how}", folds


def _fold_fits(
    law: Law, df: pd.DataFrame, y: str, folds: list[tuple[int, np.ndarray, np.ndarray]], per_row: Mapping[str, Any], **options: Any
) -> Iterator[tuple[int, np.ndarray, np.ndarray, FitResult | ScaletuneError]]:
    """Each fold (k, train, test) with the `fit` of its training rows, or the ScaletuneError that stopped it:
    ``options`` go to `fit` as they are, the arrays in ``per_row`` (a value a row: weights, groups) cut to the
    training rows."""
    for k, train, test in folds:
        cut = {name: v[train] if isinstance(v, np.ndarray) else v for name, v in per_row.items()}
        try:
            r: FitResult | ScaletuneError = fit(law, df[train], y=y, **cut, **options)
        except ScaletuneError as exc:
            r = exc
        yield k, train, test, r


@dataclass
class RollingErrors:
    """Log errors of point fits on a rolling origin (what calibration needs): per held-out point the fold, the
    error ln(observed / predicted), the distance and the fold's residual std."""

    by: str
    bins: str
    fold: np.ndarray
    error: np.ndarray
    distance: np.ndarray
    noise: np.ndarray
    skipped: int = 0
    last_params: list[float] | None = None  # parameters of the last fold's fit (all but the largest bin)

    def calibration(self, noise_std: float, grouping: str) -> Calibration:
        n_folds = len(np.unique(self.fold))
        if n_folds < MIN_FOLDS:
            return Calibration(
                method="bootstrap+noise",
                noise_std=noise_std,
                by=self.by,
                n_folds=n_folds,
                n_points=int(len(self.error)),
                grouping=grouping,
                note=f"too few scales for a backtest ({self.bins}; {n_folds} usable folds, need {MIN_FOLDS})",
            )
        cal = estimate_error_model(self.error, self.distance, self.noise, self.fold, noise_std=noise_std, by=self.by, grouping=grouping)
        return dataclasses.replace(cal, revision_params=self.last_params)

    def summary(self) -> dict[str, Any]:
        folds = []
        for k in np.unique(self.fold):
            m = self.fold == k
            rel = np.expm1(-self.error[m])  # predicted / observed - 1
            folds.append(
                {
                    "fold": int(k),
                    "n_test": int(m.sum()),
                    "median_abs_rel_error": float(np.median(np.abs(rel))),
                    "mean_rel_error": float(np.mean(rel)),
                    "max_distance": float(np.max(self.distance[m])),
                }
            )
        return {"by": self.by, "bins": self.bins, "folds": folds, "skipped_folds": self.skipped, "n_points": int(len(self.error))}


def _noise(result: FitResult, n_free: int) -> float:
    r = np.asarray(result.residuals_log, float)
    return float(np.sqrt(np.sum(r**2) / max(1, len(r) - n_free)))


def rolling_errors(
    law: str | Law,
    data: pd.DataFrame,
    y: str,
    *,
    by: str | None = None,
    horizon: str = "all",
    objective: str | Objective = "huber",
    fixed: Mapping[str, float] | None = None,
    weights: np.ndarray | None = None,
    n_starts: int = 5,
) -> RollingErrors:
    """Point fits on a rolling origin along ``by``; ``data`` must already be checked (as `fit` does)."""
    law = get_law(law)
    fixed = dict(fixed or {})
    n_free = len(law.params) - len(fixed)
    axis, how, folds = _folds(law, data, y, by, horizon, n_free)
    fold_id, err, dist, noise, skipped, last = [], [], [], [], 0, None
    fits = _fold_fits(
        law, data, y, folds, {"weights": weights}, objective=objective, fixed=fixed, n_starts=n_starts, intervals="bootstrap", bootstrap=0
    )
    for k, train, test, r in fits:
        if isinstance(r, ScaletuneError):
            skipped += 1
            continue
        xs = _design(law, data[test])
        obs = pd.to_numeric(data.loc[test, y]).to_numpy(float)
        with np.errstate(all="ignore"):
            e = np.log(obs) - np.log(r.predict(xs))
        ok = np.isfinite(e)
        fold_id += [k] * int(ok.sum())
        err += list(e[ok])
        dist += list(r.extrapolation_distance(xs)[ok])
        noise += [_noise(r, n_free)] * int(ok.sum())
        last = [r.params_[p] for p in law.params] if k == folds[-1][0] else None
    return RollingErrors(axis, how, np.array(fold_id, int), np.array(err), np.array(dist), np.array(noise), skipped, last)


# --------------------------------------------------------------------------- the public backtest


@dataclass(frozen=True)
class BacktestResult:
    """A rolling-origin backtest: ``folds`` (one dict per fold: k, the largest fitted scale, sizes) and
    ``records`` (one dict per fold and held-out point: the law's variables, ``scale`` (the value of ``by``),
    observed, predicted (the law), value (calibrated centre), lo, hi, rel_error (predicted / observed - 1),
    distance, extrapolation, covered)."""

    law: str
    y: str
    by: str
    bins: str
    horizon: str
    intervals: str
    level: float
    folds: list[dict[str, Any]]
    records: list[dict[str, Any]]
    notes: list[str] = field(default_factory=list)

    def __repr__(self) -> str:
        """One line (the records stay out of it: `points` has them)."""
        cov = self.coverage()
        return (
            f"BacktestResult({self.law} along {self.by}, {len(self.folds)} folds, {len(self.records)} held-out points, "
            f"{self.intervals} intervals" + ("" if cov is None else f", {self.level:.0%} coverage {cov:.0%}") + ")"
        )

    def points(self) -> pd.DataFrame:
        """One row per fold and held-out point."""
        return pd.DataFrame(self.records)

    def summary(self) -> list[dict[str, Any]]:
        """Per fold: held-out count, median and mean relative error, coverage of the intervals, largest distance."""
        out = []
        for f in self.folds:
            recs = [r for r in self.records if r["fold"] == f["fold"]]
            if not recs:
                continue
            rel = np.array([r["rel_error"] for r in recs])
            cov = [r["covered"] for r in recs if r["covered"] is not None]
            out.append(
                {
                    **f,
                    "median_abs_rel_error": float(np.median(np.abs(rel))),
                    "mean_rel_error": float(np.mean(rel)),
                    "coverage": float(np.mean(cov)) if cov else None,
                    "max_distance": float(max(r["distance"] for r in recs)),
                }
            )
        return out

    def coverage(self) -> float | None:
        cov = [r["covered"] for r in self.records if r["covered"] is not None]
        return float(np.mean(cov)) if cov else None

    def to_dict(self) -> dict[str, Any]:
        return {
            **fields_of(self, "law", "y", "by", "bins", "horizon", "intervals", "level"),
            "coverage": self.coverage(),
            "summary": self.summary(),
            **fields_of(self, "records", "notes"),
        }


def backtest(
    law: str | Law,
    data: Data,
    *,
    y: str | None = None,
    by: str | None = None,
    horizon: str = "all",
    intervals: str = "calibrated",
    bootstrap: int = 100,
    level: float = 0.95,
    seed: int = 0,
    objective: str | Objective = "huber",
    fixed: Mapping[str, float] | None = None,
    groups: str | Sequence[Any] | None = None,
    n_starts: int = 5,
    workers: int | None = None,
) -> BacktestResult:
    """Rolling-origin backtest of ``law`` on ``data`` along the scale ``by`` (see the module docstring).

    Every fold is a full `fit` on its training part with ``intervals`` (``calibrated``: its own nested backtest
    sets the error model, so the fold's intervals are what `fit` would have reported; ``bootstrap``: plain
    percentile bootstrap; ``none``: point predictions only) and ``bootstrap`` resamples; intervals are for a new
    observation at ``level``.
    """
    if intervals not in ("calibrated", "bootstrap", "none"):
        raise ScaletuneError(f"unknown intervals {intervals!r} (calibrated, bootstrap or none)")
    law = get_law(law)
    y = y or law.response
    df = _as_frame(data)
    require_columns(df, [*law.variables, y])
    require_positive(df, [*law.variables, y])
    df = df.reset_index(drop=True)
    n_free = len(law.params) - len(fixed or {})
    axis, how, folds = _folds(law, df, y, by, horizon, n_free)
    if not folds:
        raise ScaletuneError(
            f"{df.attrs.get('source', 'table')}: too few scales for a backtest of {law.spec!r} along "
            f"{axis} ({how}): need at least 4 bins with enough points below each origin"
        )
    _, s = scale_values(df, law.variables, by)
    fold_rows, records, notes = [], [], []
    fits = _fold_fits(
        law,
        df,
        y,
        folds,
        {"groups": groups if groups is None or isinstance(groups, str) else np.asarray(groups)},
        objective=objective,
        fixed=fixed,
        n_starts=n_starts,
        seed=seed,
        bootstrap=0 if intervals == "none" else bootstrap,
        intervals="bootstrap" if intervals == "none" else intervals,
        by=by,
        workers=workers,
    )
    for k, train, test, r in fits:
        if isinstance(r, ScaletuneError):
            notes.append(f"fold {k} skipped: {r}")
            continue
        fold_rows.append(
            {
                "fold": int(k),
                "train_max_scale": float(s[train].max()),
                "n_train": int(train.sum()),
                "n_test": int(test.sum()),
                "method": (r.calibration.method if r.calibration else ("bootstrap" if r.bootstrap_params is not None else "point")),
            }
        )
        xs = _design(law, df[test])
        obs = pd.to_numeric(df.loc[test, y]).to_numpy(float)
        pred = r.predict(xs)
        for rec, o, p, sc in zip(prediction_records(r.predict_interval(xs, level, observation=True), xs), obs, pred, s[test]):
            covered = None if rec["method"] == "point" else bool(rec["lo"] <= o <= rec["hi"])
            records.append(
                {
                    "fold": int(k),
                    **{v: rec[v] for v in law.variables},
                    "scale": float(sc),
                    "observed": float(o),
                    "predicted": float(p),
                    "value": rec["value"],
                    "lo": rec["lo"],
                    "hi": rec["hi"],
                    "rel_error": float(p / o - 1),
                    "distance": rec["distance"],
                    "extrapolation": rec["extrapolation"],
                    "covered": covered,
                    "method": rec["method"],
                }
            )
    return BacktestResult(law.spec, y, axis, how, horizon, intervals, level, fold_rows, records, notes)
