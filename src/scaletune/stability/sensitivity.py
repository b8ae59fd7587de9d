"""LR sensitivity and the stable range of learning rates per scale, and their trends in N.

LR sensitivity (Wortsman et al. 2023, "Small-scale proxies for large-scale Transformer training
instabilities", section 2): over the tested learning rates of one scale (a grid spaced in ln lr),

    sensitivity = mean over tested lr of  min(L(lr), L_ref) - L*,   L* = min over lr of L(lr),

where L(lr) is the final loss averaged over seeds, a diverged or failed run counts as L_ref, and L_ref caps
runs that learnt nothing useful. The paper takes L_ref = the loss at initialisation; here ``l_ref`` is a
parameter, by default the median first-step training loss of the curves when they are given (the loss of
the untrained model), else the largest finite loss in the sweep (stated in ``l_ref_source``). A flat curve
has sensitivity 0; every diverged rate adds (L_ref - L*) / (number of rates).

Stable range: the rates, contiguous around the best one, whose seed-mean loss stays within ``tolerance``
(a fraction of L*, default 1%) of L*. Its upper edge is interpolated in ln lr between the last rate inside
and the first rate outside (a diverged rate counting as L_ref), so that edges vary smoothly across scales
instead of jumping between grid points; an edge with no tested rate above it is a lower bound
(``edge_bracketed = False``) and does not enter the trend.

Intervals (95%): percentile bootstrap. With seeds (some rate has 2+ runs) runs are resampled within each
rate ("seeds"); with one run per rate the rates are resampled ("rates": the uncertainty of the average over
the grid). Trends: sensitivity linear in ln N, and ln(edge) linear in ln N (a power law), fitted by least
squares; their intervals refit on per-scale bootstrap draws, plus the residual scatter (t-scaled) when three
or more scales leave residual degrees of freedom.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy.stats import t as student_t

from scaletune.errors import ScaletuneError
from scaletune.results import LEVEL, Prediction, format_interval, format_scale, percentile_interval
from scaletune.runtable import ok_runs, require_columns

DEFAULT_TOLERANCE = 0.01  # stable range: within 1% of the best loss


class TrendMethod(str, Enum):
    """Which trend produced a stability `Prediction` (``details["scales"]``: how many scales it was fitted on)."""

    SENSITIVITY = "sensitivity = a + b ln N"
    EDGE = "lr_edge = e^a N^b"


@dataclass(frozen=True)
class ScaleSensitivity:
    """LR sensitivity and stable range of one scale (one arm of an intervention study).

    ``lrs`` are the tested rates (ascending), ``capped`` the seed-mean of min(loss, L_ref) per rate (diverged
    = L_ref), ``best_loss`` L*. ``sensitivity`` with ``sensitivity_interval``; the stable range
    [``range_low``, ``edge``] with the edge's interval; ``edge_tested`` the largest tested rate inside it.
    """

    scale: dict[str, float]
    arm: dict[str, Any]
    lrs: tuple[float, ...]
    capped: tuple[float, ...]
    best_lr: float
    best_loss: float
    l_ref: float
    sensitivity: float
    sensitivity_interval: tuple[float, float]
    tolerance: float
    range_low: float
    edge: float
    edge_interval: tuple[float, float]
    edge_tested: float
    edge_bracketed: bool
    n_runs: int
    n_failed: int  # diverged / failed / pruned or non-finite loss: counted as L_ref
    bootstrap: int
    bootstrap_method: str  # seeds | rates | none
    samples: np.ndarray | None = field(default=None, repr=False, compare=False)  # (bootstrap, 2): sensitivity, ln edge

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("samples")
        return d

    def __repr__(self) -> str:
        edge = f"{self.edge:.3g}" if self.edge_bracketed else f">={self.edge:.3g}"
        return (
            f"<ScaleSensitivity {format_scale(self.scale) or 'one scale'}: sensitivity {self.sensitivity:.4f}, lr edge {edge}, "
            f"{self.n_failed}/{self.n_runs} failed>"
        )


def _capped_runs(runs: pd.DataFrame, l_ref: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(lr, capped loss, ok mask) per run: a run that is not ok, or whose loss is not finite, counts as L_ref."""
    lr = pd.to_numeric(runs["lr"], errors="coerce").to_numpy(float)
    loss = pd.to_numeric(runs["loss"], errors="coerce").to_numpy(float)
    ok = np.zeros(len(runs), bool)
    ok[ok_runs(runs.reset_index(drop=True)).index] = True
    capped = np.where(ok, np.minimum(loss, l_ref), l_ref)
    return lr, capped, ok


def _curve_stats(lrs: np.ndarray, capped: np.ndarray, tolerance: float) -> tuple[float, float, float, float, float, bool, float]:
    """(sensitivity, L*, best lr, range low, edge, edge bracketed, largest tested rate inside) of seed-mean
    capped losses at ascending rates."""
    best = int(np.argmin(capped))
    star = float(capped[best])
    sens = float(np.mean(capped) - star)
    threshold = star * (1 + tolerance)
    j = best
    while j + 1 < len(lrs) and capped[j + 1] <= threshold:
        j += 1
    i = best
    while i - 1 >= 0 and capped[i - 1] <= threshold:
        i -= 1
    x = np.log(lrs)
    if j + 1 < len(lrs):
        # linear in ln lr between the last rate inside and the first outside: where the loss crosses the threshold
        frac = (threshold - capped[j]) / (capped[j + 1] - capped[j])
        edge, bracketed = float(np.exp(x[j] + frac * (x[j + 1] - x[j]))), True
    else:
        edge, bracketed = float(lrs[j]), False
    return sens, star, float(lrs[best]), float(lrs[i]), edge, bracketed, float(lrs[j])


def _per_rate(lr: np.ndarray, capped: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    rates, inv = np.unique(lr, return_inverse=True)
    return rates, np.bincount(inv, capped) / np.bincount(inv)


def scale_sensitivity(
    runs: pd.DataFrame,
    *,
    l_ref: float,
    tolerance: float = DEFAULT_TOLERANCE,
    bootstrap: int = 500,
    seed: int = 0,
    scale: Mapping[str, float] | None = None,
    arm: Mapping[str, Any] | None = None,
) -> ScaleSensitivity:
    """LR sensitivity and stable range of one scale's sweep (columns ``lr``, ``loss``, optional ``status``).

    ``l_ref`` caps every loss (diverged runs count as it); ``tolerance`` is the stable range's fraction of
    the best loss; ``bootstrap`` resamples for the intervals (see the module doc).
    """
    require_columns(runs, ["lr", "loss"])
    if not (l_ref > 0 and math.isfinite(l_ref)):
        raise ScaletuneError(f"reference loss L_ref {l_ref!r} must be positive and finite")
    if not 0 < tolerance < 1:
        raise ScaletuneError(f"stable-range tolerance {tolerance!r} must be a fraction in (0, 1) (0.01 = 1%)")
    lr, capped, ok = _capped_runs(runs, l_ref)
    good = np.isfinite(lr) & (lr > 0)
    if not good.all():
        i = int(np.argmax(~good))
        raise ScaletuneError(f"{runs.attrs.get('source', 'table')}: column 'lr' has a non-positive or missing value {runs['lr'].iloc[i]!r}")
    rates, mean = _per_rate(lr, capped)
    label = format_scale(scale or {}) or "this scale"
    if len(rates) < 3:
        raise ScaletuneError(f"{label}: LR sensitivity needs 3 or more tested learning rates (have {len(rates)})")
    sens, star, best_lr, low, edge, bracketed, edge_tested = _curve_stats(rates, mean, tolerance)

    rng = np.random.default_rng(seed)
    counts = np.array([(lr == r).sum() for r in rates])
    method = "seeds" if counts.max() > 1 else "rates"
    draws = np.full((bootstrap, 2), np.nan)
    groups = [np.flatnonzero(lr == r) for r in rates]
    for b in range(bootstrap):
        if method == "seeds":
            m = np.array([capped[rng.choice(g, len(g))].mean() for g in groups])
            r_b = rates
        else:  # resample the rates of the grid (keeping each one's loss)
            pick = np.sort(rng.integers(0, len(rates), len(rates)))
            r_b, m = rates[pick], mean[pick]
        s_b, _, _, _, e_b, bracketed_b, _ = _curve_stats(r_b, m, tolerance)
        draws[b] = (s_b, math.log(e_b) if bracketed_b else np.nan)

    def interval(col: int, centre: float, log: bool = False) -> tuple[float, float]:
        v = draws[:, col]
        v = v[np.isfinite(v)]
        if len(v) < max(10, bootstrap // 4):
            return (math.nan, math.nan)
        lo, hi = percentile_interval(v, LEVEL)
        lo, hi = (math.exp(lo), math.exp(hi)) if log else (lo, hi)
        return (float(min(lo, centre)), float(max(hi, centre)))

    return ScaleSensitivity(
        scale=dict(scale or {}),
        arm=dict(arm or {}),
        lrs=tuple(map(float, rates)),
        capped=tuple(map(float, mean)),
        best_lr=best_lr,
        best_loss=star,
        l_ref=float(l_ref),
        sensitivity=sens,
        sensitivity_interval=interval(0, sens) if bootstrap else (math.nan, math.nan),
        tolerance=tolerance,
        range_low=low,
        edge=edge,
        edge_interval=interval(1, edge, log=True) if bootstrap and bracketed else (math.nan, math.nan),
        edge_tested=edge_tested,
        edge_bracketed=bracketed,
        n_runs=len(runs),
        n_failed=int((~ok).sum()),
        bootstrap=bootstrap,
        bootstrap_method=method if bootstrap else "none",
        samples=draws if bootstrap else None,
    )


# --------------------------------------------------------------------------- trends in N


@dataclass(frozen=True)
class Trend:
    """y = a + b ln N fitted across scales (y = sensitivity, or ln of the stable-range edge), with the
    prediction at the target. ``slope_interval`` from refits on per-scale bootstrap draws."""

    quantity: str  # sensitivity | edge
    form: str
    intercept: float
    slope: float
    slope_interval: tuple[float, float]
    scales: int
    excluded: int  # scales left out (an unbracketed edge is a lower bound)
    N_range: tuple[float, float]
    prediction: Prediction | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["prediction"] = None if self.prediction is None else self.prediction.to_dict()
        return d

    def __repr__(self) -> str:
        at = "" if self.prediction is None else f"; at the target {self.prediction}"
        return (
            f"<Trend {self.quantity}: slope {format_interval(self.slope, *self.slope_interval, digits=3)} per ln N "
            f"over {self.scales} scales{at}>"
        )


def fit_trend(results: Sequence[ScaleSensitivity], quantity: str, target_N: float | None = None, seed: int = 0) -> Trend | None:
    """Fit ``quantity`` (sensitivity: linear in ln N; edge: ln edge linear in ln N, a power law) across the
    scales of ``results`` (each needs ``scale['N']``); None when fewer than two distinct N are usable."""
    col = 0 if quantity == "sensitivity" else 1
    use = [r for r in results if "N" in r.scale and (quantity == "sensitivity" or r.edge_bracketed)]
    if len({r.scale["N"] for r in use}) < 2:
        return None
    x = np.log([r.scale["N"] for r in use])
    y = np.array([r.sensitivity if col == 0 else math.log(r.edge) for r in use])
    A = np.column_stack([np.ones_like(x), x])
    coef, *_ = np.linalg.lstsq(A, y, rcond=None)
    dof = len(y) - 2
    resid_sd = float(np.sqrt(np.sum((y - A @ coef) ** 2) / dof)) if dof > 0 else 0.0

    rng = np.random.default_rng(seed)
    draws = [r.samples[:, col] if r.samples is not None else np.array([y[i]]) for i, r in enumerate(use)]
    K = max(len(d) for d in draws)
    Y = np.column_stack([rng.choice(d[np.isfinite(d)] if np.isfinite(d).any() else np.array([y[i]]), K) for i, d in enumerate(draws)])
    B = np.linalg.lstsq(A, Y.T, rcond=None)[0]  # (2, K)
    slope_iv = percentile_interval(B[1])
    pred = None
    if target_N is not None:
        xt = math.log(target_N)
        samples = B[0] + B[1] * xt
        if dof > 0:  # scatter of the scales around the line beyond their own noise
            samples = samples + resid_sd * student_t.rvs(dof, size=K, random_state=rng)
        lo, hi = percentile_interval(samples)
        value = float(coef[0] + coef[1] * xt)
        n_lo, n_hi = float(np.exp(x.min())), float(np.exp(x.max()))
        extra = max(1.0, target_N / n_hi, n_lo / target_N)
        if quantity == "edge":
            value, lo, hi = math.exp(value), math.exp(lo), math.exp(hi)
        else:  # a sensitivity is a mean excess loss: never negative
            value, lo, hi = max(value, 0.0), max(lo, 0.0), max(hi, 0.0)
        pred = Prediction(
            value,
            float(min(lo, value)),
            float(max(hi, value)),
            extrapolation=extra,
            method=TrendMethod.SENSITIVITY if col == 0 else TrendMethod.EDGE,
            details={"scales": len(use)},
        )
    return Trend(
        quantity=quantity,
        form="sensitivity = a + b ln N" if col == 0 else "ln lr_edge = a + b ln N (power law)",
        intercept=float(coef[0]),
        slope=float(coef[1]),
        slope_interval=slope_iv,
        scales=len(use),
        excluded=len(results) - len(use),
        N_range=(float(np.exp(x.min())), float(np.exp(x.max()))),
        prediction=pred,
    )
