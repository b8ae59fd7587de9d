"""Extrapolation distance, scale bins and the backtest error model behind calibrated intervals.

Distance. A prediction's extrapolation distance ``d`` is measured jointly, in the law's variables taken in
natural logs: the L-infinity distance from the point to the convex hull of the fitted points,

    d(x) = min over convex combinations h of the fitted points of  max_v |ln x_v - h_v|,

so ``exp(d)`` is the smallest factor f such that every variable lies within a factor f of one mixture of
fitted scales (1.0 = inside the data). On a full grid the hull is the box of the ranges and d is the old
per-variable factor; on an isoFLOP design or a fixed tokens-per-parameter ladder the hull is thin, so a point
at the largest N *and* the largest D, or at another D/N, lies outside it (d > 0).

Error model. A rolling-origin backtest on the fitted data (fit on scale bins 1..k, predict every point
beyond) gives log errors e_i = ln(observed / predicted) at distances d_i, with the fold's residual std s_i.
The model is  e_i ~ N(beta d_i, s_i^2 + tau^2 + kappa^2 d_i^2), tau the error of a new budget that the
in-sample residuals miss (errors shared within a budget are partly absorbed by the fit):
- beta (signed bias per unit of distance) is estimated per fold (least squares through the origin) and used
  only when there are at least 3 folds and every fold finds the same sign; the fold value of smallest size
  is then used (a bias that flips sign between folds is noise, not a property of the law);
- tau and kappa by maximum likelihood on the bias-corrected errors;
- the interval multiplier q is the conformal quantile of |z_i|, z_i = (e_i - beta d_i) / sqrt(s_i^2 +
  tau^2 + kappa^2 d_i^2), at the coverage level, never below the normal quantile.
A new observation at distance d then has log-interval
  ln y_hat + beta d +- q sqrt(v_boot + v_rev + s^2 + tau^2 + kappa^2 d^2),
v_boot the (cluster) bootstrap variance of ln y_hat there, v_rev the squared forecast revision (the change
of ln y_hat there when the largest scale bin was added to the fit: the last fold of the backtest against the
full fit; a misspecified law whose fit jumps with each new budget shows it, a stable one barely does) and s
the fit's residual std; the law's own interval (not an observation's) leaves out s^2 + tau^2.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy.optimize import linprog, minimize
from scipy.stats import norm

from scaletune.errors import ScaletuneError
from scaletune.results import percentile_interval
from scaletune.runtable import training_flops

MAX_BINS = 10  # scale bins of a table whose scale values do not repeat (equal width in ln scale)
MIN_FOLDS = 2  # a backtest with fewer folds does not estimate an error model


# --------------------------------------------------------------------------- joint extrapolation distance


def hull_points(x: Mapping[str, np.ndarray], variables: Sequence[str]) -> np.ndarray:
    """The fitted points in natural-log variables (unique rows), reduced to the convex hull's vertices when
    the hull has full dimension (a thin design, e.g. a ladder on one line, keeps all its points)."""
    P = np.unique(np.stack([np.log(np.asarray(x[v], float)) for v in variables], axis=1), axis=0)
    if P.shape[1] >= 2 and len(P) > P.shape[1] + 1:
        from scipy.spatial import ConvexHull, QhullError

        try:
            P = P[np.sort(ConvexHull(P).vertices)]
        except (QhullError, ValueError):
            pass
    return P


def hull_distance(points: np.ndarray, hull: np.ndarray) -> np.ndarray:
    """L-infinity distance (natural-log units) of each row of ``points`` (log variables) from the convex hull
    of the rows of ``hull``; 0 inside. One small linear programme per point (closed form in one variable)."""
    points = np.atleast_2d(np.asarray(points, float))
    hull = np.atleast_2d(np.asarray(hull, float))
    if hull.shape[1] == 1:
        lo, hi = hull.min(), hull.max()
        return np.asarray(np.maximum(0.0, np.maximum(lo - points[:, 0], points[:, 0] - hi)), float)
    m, k = hull.shape
    # variables: lambda (m, >= 0, sum 1) and t >= 0; minimise t subject to |hull.T lambda - p| <= t
    c = np.zeros(m + 1)
    c[-1] = 1.0
    A = np.block([[hull.T, -np.ones((k, 1))], [-hull.T, -np.ones((k, 1))]])
    A_eq = np.concatenate([np.ones(m), [0.0]])[None, :]
    out = np.empty(len(points))
    for i, p in enumerate(points):
        res = linprog(c, A_ub=A, b_ub=np.concatenate([p, -p]), A_eq=A_eq, b_eq=[1.0], bounds=[(0, None)] * (m + 1), method="highs")
        out[i] = max(0.0, float(res.fun)) if res.status == 0 else float(np.max(np.abs(hull - p).min(axis=0)))
    return np.where(out < 1e-9, 0.0, out)


# --------------------------------------------------------------------------- the scale axis and its bins


def scale_values(df: pd.DataFrame, variables: Sequence[str], by: str | None = None) -> tuple[str, np.ndarray]:
    """The scale of every row along which a backtest rolls and budgets are grouped: ``by`` (a column, or C, N,
    D derived from the law's variables), by default C = 6ND FLOPs when the law has N and D (or N and M = D/N),
    else a column C, else the law's first variable."""
    cols = set(df.columns)

    def num(col: str) -> np.ndarray:
        return np.asarray(pd.to_numeric(df[col], errors="coerce").to_numpy(float), float)

    derived_C: np.ndarray | None = None
    if "N" in cols and "D" in cols:
        derived_C = np.asarray(training_flops(num("N"), num("D")), float)
    elif "N" in cols and "M" in cols:
        derived_C = np.asarray(training_flops(num("N"), num("N") * num("M")), float)

    s: np.ndarray
    if by is None:
        if ({"N", "D"} <= set(variables) or {"N", "M"} <= set(variables)) and derived_C is not None:
            by, s = "C", derived_C
        elif "C" in cols:
            by, s = "C", num("C")
        else:
            by, s = variables[0], num(variables[0])
    elif by in cols:
        s = num(by)
    elif by == "C" and derived_C is not None:
        s = derived_C
    elif by == "D" and {"N", "M"} <= cols:
        s = num("N") * num("M")
    else:
        raise ScaletuneError(
            f"{df.attrs.get('source', 'table')}: no column {by!r} to order the backtest by (columns: {', '.join(map(str, df.columns))})"
        )
    if not np.all(np.isfinite(s) & (s > 0)):
        raise ScaletuneError(f"{df.attrs.get('source', 'table')}: the scale {by} must be positive and finite in every row")
    return by, s


def scale_bins(s: np.ndarray) -> tuple[np.ndarray, str]:
    """Bin index (0 = smallest) of every scale value and a description: the distinct values when they repeat
    (an isoFLOP or grid design: at most half as many values as rows), else ``MAX_BINS`` equal-width bins of ln s
    (empty bins skipped)."""
    ls = np.round(np.log(s), 6)
    distinct, inverse = np.unique(ls, return_inverse=True)
    if len(distinct) <= max(2, len(s) // 2):
        return inverse, f"{len(distinct)} distinct values"
    edges = np.linspace(ls.min(), ls.max(), MAX_BINS + 1)
    raw = np.clip(np.searchsorted(edges, ls, side="right") - 1, 0, MAX_BINS - 1)
    used, inverse = np.unique(raw, return_inverse=True)
    return inverse, f"{len(used)} equal-width bins of ln (one per {(edges[1] - edges[0]):.3g} nats)"


# --------------------------------------------------------------------------- the error model


@dataclass(frozen=True)
class Calibration:
    """How a fit's calibrated intervals are made (see the module docstring for the model).

    ``method``: ``backtest`` (error model estimated from the rolling-origin backtest) or ``bootstrap+noise``
    (too few scales for a backtest: bootstrap variance plus residual noise, no growth term; ``note`` says why).
    ``kappa``: std of the log error per nat of extrapolation distance; ``bias``: signed log bias per nat that
    is applied (0 unless the rule holds), ``fold_biases`` what each fold found; ``noise_std``: the std (log) of a
    new observation's error at distance 0: the fit's residual std combined with ``extra_noise``, the part of a
    new budget's error the in-sample residuals miss (estimated with kappa); ``z_abs``: the normalised backtest
    errors whose conformal quantile sets the multiplier.
    """

    method: str
    noise_std: float
    kappa: float = 0.0
    bias: float = 0.0
    fold_biases: list[float] = field(default_factory=list)
    bias_rule: str = "bias corrected only when >= 3 folds all find the same sign; then the smallest fold value"
    z_abs: list[float] = field(default_factory=list)
    by: str | None = None
    n_folds: int = 0
    n_points: int = 0
    grouping: str = "rows"
    extra_noise: float = 0.0
    revision_params: list[float] | None = None  # the fit without the largest bin (its forecast revision widens)
    note: str = ""

    def quantile(self, level: float) -> float:
        """Interval multiplier at ``level``: the conformal quantile of |z| (rank ceil((n+1) level), the largest
        when n is too small), never below the normal quantile."""
        gauss = float(norm.ppf(0.5 + level / 2))
        z = np.sort(np.asarray(self.z_abs, float))
        if len(z) == 0:
            return gauss
        k = math.ceil((len(z) + 1) * level)
        return max(gauss, float(z[min(k, len(z)) - 1]))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Calibration":
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})


def estimate_error_model(
    errors: np.ndarray, distances: np.ndarray, noise: np.ndarray, folds: np.ndarray, *, noise_std: float, by: str | None, grouping: str
) -> Calibration:
    """Fit the backtest error model (bias rule, kappa by maximum likelihood, normalised errors)."""
    e, d, s, f = (np.asarray(a, float) for a in (errors, distances, noise, folds))
    fold_ids = np.unique(f)
    fold_biases = []
    for k in fold_ids:
        m = (f == k) & (d > 0)
        fold_biases.append(float(np.sum(e[m] * d[m]) / np.sum(d[m] ** 2)) if m.any() else 0.0)
    signs = np.sign(fold_biases)
    bias = 0.0
    if len(fold_biases) >= 3 and (np.all(signs > 0) or np.all(signs < 0)):
        bias = float(min(fold_biases, key=abs))
    r = e - bias * d
    s2 = np.maximum(s, 1e-6) ** 2

    def nll(p: np.ndarray) -> float:
        v = s2 + p[0] ** 2 + p[1] ** 2 * d**2
        return float(np.sum(np.log(v) + r**2 / v))

    # tau: noise a new budget has beyond the in-sample residuals (errors shared within a budget are partly
    # absorbed by the fit); kappa: error growth per nat of distance. Both >= 0, by maximum likelihood.
    scale = float(max(1e-3, np.sqrt(np.mean(r**2))))
    starts = [np.array([a, b]) for a in (0.0, 0.5 * scale) for b in (0.0, scale / max(1e-3, float(np.mean(d))))]
    best = min((minimize(nll, p0, method="L-BFGS-B", bounds=[(0, None), (0, None)]) for p0 in starts), key=lambda o: o.fun)
    tau, kappa = (float(abs(v)) for v in best.x)
    z = np.abs(r) / np.sqrt(s2 + tau**2 + kappa**2 * d**2)
    return Calibration(
        method="backtest",
        noise_std=float(np.sqrt(noise_std**2 + tau**2)),
        kappa=kappa,
        bias=bias,
        fold_biases=fold_biases,
        z_abs=[float(v) for v in z],
        by=by,
        n_folds=int(len(fold_ids)),
        n_points=int(len(e)),
        grouping=grouping,
        extra_noise=tau,
    )


def calibrated_interval(
    log_pred: np.ndarray,
    log_boot: np.ndarray | None,
    distance: np.ndarray,
    cal: Calibration,
    level: float,
    observation: bool,
    log_revised: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(centre, lo, hi) on the response scale. ``log_boot`` (K, n) are the bootstrap log predictions; their spread
    enters as a robust variance (the 95% percentile half-width over 1.96, squared) so one bad replicate cannot
    blow it up. ``log_revised``: the prediction of the fit without the largest scale bin; the squared forecast
    revision enters the variance (a fit that jumps when one more budget arrives is not to be trusted far out)."""
    var = cal.kappa**2 * distance**2
    if log_boot is not None and len(log_boot):
        lo_b, hi_b = percentile_interval(log_boot, 0.95, axis=0)
        var = var + np.nan_to_num(((hi_b - lo_b) / (2 * 1.959964)) ** 2)
    if log_revised is not None:  # how much the prediction moved when the largest bin was added
        var = var + np.nan_to_num((log_revised - log_pred) ** 2)
    if observation:
        var = var + cal.noise_std**2
    centre = log_pred + cal.bias * distance
    half = cal.quantile(level) * np.sqrt(var)
    return np.exp(centre), np.exp(centre - half), np.exp(centre + half)
