"""Loss -> downstream task error, and the chained prediction compute and size -> loss -> error.

    from scaletune.laws import fit, fit_downstream, chain_predict
    loss_fit = fit("overtrained", runs, bootstrap=400)                 # runs: N, M (or D), loss
    err_fit = fit_downstream(runs, chance=0.8088, bootstrap=400)       # runs: loss, error (top-1, in [0, 1])
    p = chain_predict(loss_fit, err_fit, {"N": 6.9e9, "M": 20})
    p.loss.value, p.loss.interval, p.error.value, p.error.interval, p.error.extrapolation

The error law is Gadre et al. 2024's Err(L) = eps - k exp(-gamma L) (`downstream_error` in the catalogue):
the error falls from a plateau eps, the error of a model that has learnt nothing useful for the task, which
cannot lie above the task's chance-level error; given a chance level, eps is bounded by it.

The chained interval is drawn jointly: a new model's loss from the loss fit's observation interval at the
point (bootstrap or backtest-calibrated, whatever the fit carries), then its error from the error fit's
observation interval at that drawn loss. A new model's loss scatters around its law, and its error
scatters around the error law at the loss it actually reached: both stages' uncertainty enter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Mapping

import numpy as np
import pandas as pd
from scipy.stats import norm

from scaletune.errors import ScaletuneError
from scaletune.laws.catalogue import Law, get_law
from scaletune.laws.fitting import Data, FitResult, FloatArray, _as_frame, fit
from scaletune.results import Prediction, percentile_interval
from scaletune.runtable import require_columns, training_flops

LAW = "downstream_error"


def check_errors(df: pd.DataFrame, column: str = "error") -> None:
    """Raise naming the row of the first error value that is missing or outside [0, 1] (errors are fractions)."""
    require_columns(df, [column])
    values = pd.to_numeric(df[column], errors="coerce").to_numpy(float)
    bad = ~np.isfinite(values) | (values < 0) | (values > 1)
    if bad.any():
        i = int(np.argmax(bad))
        raise ScaletuneError(
            f"{df.attrs.get('source', 'table')}: column {column!r} has {df[column].iloc[i]!r} at row {i + 1}: "
            "errors are fractions in [0, 1] (top-1 error, not accuracy in percent)"
        )


def chance_level(df: pd.DataFrame, chance: float | str | None) -> float | None:
    """The chance-level error: a number in (0, 1], or the single value of a column of ``df``."""
    if chance is None:
        return None
    if isinstance(chance, str):
        column = chance
        try:
            chance = float(column)
        except ValueError:
            require_columns(df, [column])
            values = pd.to_numeric(df[column], errors="coerce").dropna().unique()
            if len(values) != 1:
                raise ScaletuneError(
                    f"{df.attrs.get('source', 'table')}: chance column {column!r} holds {len(values)} distinct "
                    "values: fit one task (or one task average) at a time"
                ) from None
            chance = float(values[0])
    if not (0 < chance <= 1):
        raise ScaletuneError(f"chance-level error {chance!r} must lie in (0, 1] (e.g. 0.75 for 4-way multiple choice)")
    return float(chance)


def check_chance(result: FitResult, chance: float) -> None:
    """Raise when a chance level lies below a downstream fit's eps (the fitted plateau would sit above chance)."""
    if not 0 < chance <= 1:
        raise ScaletuneError(f"chance-level error {chance!r} must lie in (0, 1] (e.g. 0.75 for 4-way multiple choice)")
    if result.law != LAW:
        raise ScaletuneError(f"a chance level applies to a {LAW} fit, not to {result.law!r}")
    eps = result.params_.get("eps")
    if eps is not None and chance < eps - 1e-12:
        raise ScaletuneError(
            f"chance-level error {chance:.4g} lies below the fitted eps = {eps:.4g}: the error plateau cannot be worse than chance",
            hint=f"refit with the chance level {chance:.4g}",
        )


def fit_downstream(data: Data, *, chance: float | str | None = None, y: str = "error", **kwargs: Any) -> FitResult:
    """Fit Err(L) = eps - k exp(-gamma L) to (loss, error) pairs, with eps <= ``chance`` when given.

    ``data`` has columns ``loss`` (nats/token) and ``y`` (error, a fraction in [0, 1]); ``chance`` is the
    task's chance-level error (a number or a column with one value). Other keywords go to `fit` (bootstrap,
    seed, objective, holdout, fixed, ...). The chance level is recorded in ``diagnostics["chance"]``.
    """
    df = _as_frame(data)
    law, bound = prepare_law(df, chance, y, kwargs.get("fixed"))
    result = fit(law, df, y=y, **kwargs)
    diagnostics = {**result.diagnostics, "chance": bound}
    return replace(result, diagnostics=diagnostics)


# --------------------------------------------------------------------------- the chained prediction


def _stage(p: Prediction) -> dict[str, Any]:
    """A stage's JSON: its name and law first (the keys of earlier versions), then the `Prediction`'s fields."""
    return {"name": p.details["name"], "law": p.details["law"], **p.to_dict()}


@dataclass(frozen=True)
class ChainedPrediction:
    """Loss and task error at ``point``, each a `Prediction` (floats) with its joint interval at ``level``.

    ``loss.extrapolation`` is the loss law's factor outside its fitted points; ``error.extrapolation`` the error
    law's, in loss (the predicted loss against the fitted losses). ``details`` of each name the stage and law.
    """

    point: dict[str, float]
    loss: Prediction
    error: Prediction
    level: float
    samples: int
    method: str = "joint draws: loss from the loss fit's observation interval, then error from the error fit's at that loss"
    notes: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {
            "point": self.point,
            "loss": _stage(self.loss),
            "error": _stage(self.error),
            "level": self.level,
            "samples": self.samples,
            "method": self.method,
            "notes": list(self.notes),
        }


def complete_point(point: Mapping[str, float], variables: tuple[str, ...]) -> dict[str, float]:
    """Fill in the variables a loss law needs from the ones given: D = M N, M = D / N, C = 6 N D (FLOPs)."""
    p = {k: float(v) for k, v in point.items()}
    for k, v in p.items():
        if not (v > 0 and math.isfinite(v)):
            raise ScaletuneError(f"point: {k} must be positive, got {v!r}")
    if "D" not in p and "N" in p and "M" in p:
        p["D"] = p["M"] * p["N"]
    if "M" not in p and "N" in p and "D" in p:
        p["M"] = p["D"] / p["N"]
    if "C" not in p and "N" in p and "D" in p:
        p["C"] = float(training_flops(p["N"], p["D"]))
    missing = [v for v in variables if v not in p]
    if missing:
        raise ScaletuneError(
            f"point needs {missing[0]!r} for the loss law (variables {', '.join(variables)}; "
            "give N with M tokens per parameter, or N with D tokens)"
        )
    return p


def _split_normal(result: FitResult, x: Mapping[str, Any], level: float) -> tuple[FloatArray, FloatArray, FloatArray, str]:
    """(centre, lower and upper scale) in ln y of a split normal whose `level` quantiles are the fit's
    observation interval at ``x`` (its centre includes a calibrated fit's bias correction): it keeps the
    interval's asymmetry (a bootstrap's skew, a calibrated bias); and the interval's method."""
    z = float(norm.ppf(0.5 + level / 2))
    p = result.predict_interval(x, level, observation=True)
    with np.errstate(all="ignore"):
        centre = np.log(p.value)
        s_lo = np.maximum(centre - np.log(p.lo), 0.0) / z
        s_hi = np.maximum(np.log(p.hi) - centre, 0.0) / z
    return centre, s_lo, s_hi, p.method_name


def _draw(centre: Any, s_lo: Any, s_hi: Any, z: FloatArray) -> FloatArray:
    out: FloatArray = np.exp(centre + np.where(z < 0, s_lo, s_hi) * z)
    return out


def chain_predict(
    loss_fit: FitResult, error_fit: FitResult, point: Mapping[str, float], *, level: float = 0.95, samples: int = 4000, seed: int = 0
) -> ChainedPrediction:
    """Predict the loss at ``point`` with ``loss_fit``, then the task error at that loss with ``error_fit``.

    ``point`` holds the loss law's variables (N with M = D/N or D, ...; see `complete_point`). Both intervals
    are for a new model's measured loss and error (observation intervals), drawn jointly: ``samples`` losses
    from the loss fit's interval at ``point`` (a split normal in ln loss matching it), then for each loss an
    error from the error fit's interval at that loss. The error interval therefore carries the loss stage's
    uncertainty, widened wherever the error law is steep, plus the error stage's own.
    """
    if error_fit.law != LAW:
        raise ScaletuneError(f"the second fit must be a {LAW} fit (got {error_fit.law!r})")
    if loss_fit.law == LAW:
        raise ScaletuneError("the first fit must predict the loss from size and data (got a downstream_error fit)")
    for name, r in (("loss", loss_fit), ("error", error_fit)):
        if not r.has_samples:
            raise ScaletuneError(
                f"the {name} fit has no bootstrap samples, so the chained prediction has no interval", hint="refit it with bootstrap > 0"
            )
    variables = get_law(loss_fit.law).variables
    p = complete_point(point, variables)
    x = {v: np.array([p[v]]) for v in variables}
    rng = np.random.default_rng(seed)

    centre, s_lo, s_hi, loss_method = _split_normal(loss_fit, x, level)
    c1, lo1, hi1 = float(centre[0]), float(s_lo[0]), float(s_hi[0])
    loss = float(np.exp(c1))
    l_draws = _draw(c1, lo1, hi1, rng.standard_normal(samples))
    # The error stage's interval at every drawn loss, interpolated from a grid over the drawn range (in ln loss).
    grid = np.unique(np.quantile(l_draws, np.linspace(0, 1, 65)))
    c2, lo2, hi2, _ = _split_normal(error_fit, {"loss": grid}, level)
    # Where the law predicts no error at all (eps <= k exp(-gamma L) at a very low drawn loss) the error is 0.
    value2 = np.where(np.isfinite(c2), np.exp(c2), 0.0)
    lo2, hi2 = (np.where(np.isfinite(a), a, 0.0) for a in (lo2, hi2))
    v, a, b = (np.interp(np.log(l_draws), np.log(grid), arr) for arr in (value2, lo2, hi2))
    z2 = rng.standard_normal(samples)
    e_draws = np.clip(v * np.exp(np.where(z2 < 0, a, b) * z2), 0.0, 1.0)  # an error is a fraction
    error = float(error_fit.predict_interval({"loss": np.array([loss])}, level, observation=True).value[0])

    notes = []
    chance = error_fit.diagnostics.get("chance")
    if chance is not None and error > chance:
        notes.append(f"predicted error {error:.4g} is above the chance level {chance:.4g}")
    e_lo, e_hi = percentile_interval(e_draws, level)
    z = float(norm.ppf(0.5 + level / 2))
    return ChainedPrediction(
        point=p,
        loss=Prediction(
            loss,
            float(np.exp(c1 - lo1 * z)),
            float(np.exp(c1 + hi1 * z)),
            level,
            float(loss_fit.extrapolation(x)[0]),
            loss_method,
            {"name": "loss", "law": loss_fit.law},
        ),
        error=Prediction(
            error,
            e_lo,
            e_hi,
            level,
            float(error_fit.extrapolation({"loss": np.array([loss])})[0]),
            "chained",
            {"name": error_fit.y, "law": error_fit.law},
        ),
        level=level,
        samples=samples,
        notes=tuple(notes),
    )


def prepare_law(
    df: pd.DataFrame, chance: float | str | None, y: str = "error", fixed: Mapping[str, float] | None = None
) -> tuple[Law, float | None]:
    """The `downstream_error` law ready to fit ``df``: errors checked to lie in [0, 1], eps bounded by the chance
    level when given (returned as the second value, None otherwise)."""
    check_errors(df, y)
    bound = chance_level(df, chance)
    law = get_law(LAW)
    if bound is None:
        return law, None
    fixed_eps = (fixed or {}).get("eps")
    if fixed_eps is not None and bound < fixed_eps:
        raise ScaletuneError(f"chance-level error {bound:.4g} lies below the fixed eps = {fixed_eps:.4g}")
    return replace(law, bounds={**law.bounds, "eps": (law.bounds["eps"][0], bound)}), bound
