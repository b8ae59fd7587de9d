"""IsoFLOP analysis (Chinchilla "Approach 2"): per-budget optimum, then N*(C) = k C^a and D*(C).

Per FLOP budget the loss-vs-log N curve is interpolated (Akima by default, or a cubic spline; a parabola
biases the optimum when the curve is asymmetric) and its minimum located. A budget is dropped, with a
warning, when it has fewer than 5 distinct sizes or its lowest observed loss sits at the edge of the grid
(the true optimum may lie outside). A bootstrap over the points of each budget gives the spread of log N*,
which weights the power-law fits (weighted least squares of ln N* on ln C, as in Porian et al. 2024) and,
refitted on every bootstrap replicate, the percentile intervals of the exponents.
D* is read off the budget's own (N, D) pairs at N* (interpolated in log space), so no FLOP formula is assumed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy.interpolate import Akima1DInterpolator, CubicSpline

from scaletune.errors import ScaletuneError
from scaletune.laws.catalogue import get_law
from scaletune.laws.fitting import BLAS, FitResult, _as_frame
from scaletune.runtable import require_columns, require_positive

MIN_POINTS = 5
_GRID = 801  # resolution of the minimum search between the neighbours of the lowest observed point


def curve_optimum(log_n: np.ndarray, loss: np.ndarray, interpolation: str = "akima") -> tuple[float, float] | None:
    """Minimum (log N*, loss*) of one isoFLOP curve, or None when it cannot be located inside the grid."""
    order = np.argsort(log_n, kind="stable")
    x, y = log_n[order], loss[order]
    ux, inv = np.unique(x, return_inverse=True)
    if len(ux) < len(x):  # repeated sizes (e.g. a bootstrap resample): average them
        y = np.bincount(inv, weights=y) / np.bincount(inv)
        x = ux
    if len(x) < 4:
        return None
    i = int(np.argmin(y))
    if i == 0 or i == len(x) - 1:
        return None
    f = Akima1DInterpolator(x, y) if interpolation == "akima" else CubicSpline(x, y)
    grid = np.linspace(x[i - 1], x[i + 1], _GRID)
    values = f(grid)
    j = int(np.argmin(values))
    return float(grid[j]), float(values[j])


@dataclass(frozen=True, eq=False)
class IsoflopResult:
    """Per-budget optima (``optima``: C, N_star, D_star, loss_star, intervals, log-std) and the fits
    N*(C) = k C^a (``n_fit``) and D*(C) (``d_fit``), both `FitResult` of ``powerlaw:C`` with bootstrap samples."""

    optima: pd.DataFrame
    dropped: list[dict[str, Any]]
    n_fit: FitResult
    d_fit: FitResult
    interpolation: str
    weighted: bool
    warnings: list[str] = field(default_factory=list)

    @property
    def a(self) -> float:
        """Exponent a of N* ~ C^a."""
        return self.n_fit.params_["c_C"]

    @property
    def b(self) -> float:
        """Exponent b of D* ~ C^b."""
        return self.d_fit.params_["c_C"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "interpolation": self.interpolation, "weighted": self.weighted,
            "a_N_exponent": self.a, "a_interval": self.n_fit.intervals.get("c_C"),
            "b_D_exponent": self.b, "b_interval": self.d_fit.intervals.get("c_C"),
            "N_star_coef": self.n_fit.derived_["k"], "D_star_coef": self.d_fit.derived_["k"],
            "optima": self.optima.to_dict(orient="records"), "dropped": self.dropped, "warnings": self.warnings,
            "n_fit": self.n_fit.to_dict(), "d_fit": self.d_fit.to_dict(),
        }


def _wls(log_c: np.ndarray, log_v: np.ndarray, w: np.ndarray) -> tuple[float, float]:
    """Weighted least squares of log_v = log_k + a log_c; returns (log_k, a)."""
    X = np.stack([np.ones_like(log_c), log_c], axis=1)
    sw = np.sqrt(w)
    coef, *_ = np.linalg.lstsq(X * sw[:, None], log_v * sw, rcond=None)
    return float(coef[0]), float(coef[1])


@BLAS.wrap(limits=1, user_api="blas")  # tiny problems: see scaletune.laws.fitting.fit
def isoflop(
    data: pd.DataFrame | dict,
    *,
    C: str = "C",
    N: str = "N",
    D: str = "D",
    y: str = "loss",
    interpolation: str = "akima",
    bootstrap: int = 200,
    seed: int = 0,
    weighted: bool = True,
    level: float = 0.95,
) -> IsoflopResult:
    """IsoFLOP analysis of ``data`` (one row per run: budget ``C`` in FLOPs, parameters ``N``, tokens ``D``, ``y``).

    ``interpolation``: akima (default) or cubic. ``bootstrap`` resamples the points of every budget
    (seeded); ``weighted`` weights each budget by 1 / var(ln N*) in the power-law fits.
    """
    if interpolation not in ("akima", "cubic"):
        raise ScaletuneError(f"unknown interpolation {interpolation!r} (akima or cubic)")
    df = _as_frame(data)
    require_columns(df, [C, N, D, y])
    require_positive(df, [C, N, D, y])
    rng = np.random.default_rng(seed)
    rows, dropped, warnings = [], [], []
    boot_n, boot_d = [], []
    for budget, grp in df.groupby(C, sort=True):
        log_n = np.log(pd.to_numeric(grp[N]).to_numpy(float))
        log_d = np.log(pd.to_numeric(grp[D]).to_numpy(float))
        loss = pd.to_numeric(grp[y]).to_numpy(float)
        if len(np.unique(log_n)) < MIN_POINTS:
            dropped.append({"C": float(budget), "reason": f"fewer than {MIN_POINTS} model sizes ({len(np.unique(log_n))})"})
            continue
        opt = curve_optimum(log_n, loss, interpolation)
        if opt is None:
            dropped.append({"C": float(budget), "reason": "lowest loss at the edge of the size grid"})
            continue
        order = np.argsort(log_n)
        d_at = lambda x: float(np.interp(x, log_n[order], log_d[order]))  # noqa: E731  (log D along the curve)
        bn, bd = np.full(bootstrap, np.nan), np.full(bootstrap, np.nan)
        for k in range(bootstrap):
            idx = rng.integers(0, len(loss), len(loss))
            o = curve_optimum(log_n[idx], loss[idx], interpolation)
            if o is not None:
                bn[k], bd[k] = o[0], d_at(o[0])
        boot_n.append(bn)
        boot_d.append(bd)
        tail = 50 * (1 - level)
        ok = np.isfinite(bn)
        rows.append({
            "C": float(budget), "N_star": float(np.exp(opt[0])), "D_star": float(np.exp(d_at(opt[0]))),
            "loss_star": opt[1], "tokens_per_param": float(np.exp(d_at(opt[0]) - opt[0])), "n_points": int(len(loss)),
            "N_star_lo": float(np.exp(np.percentile(bn[ok], tail))) if ok.any() else np.nan,
            "N_star_hi": float(np.exp(np.percentile(bn[ok], 100 - tail))) if ok.any() else np.nan,
            "log_N_star_std": float(np.std(bn[ok])) if ok.sum() > 1 else np.nan,
            "log_D_star_std": float(np.std(bd[ok])) if ok.sum() > 1 else np.nan,
            "bootstrap_failed": int((~ok).sum()),
        })
    for d in dropped:
        warnings.append(f"dropped budget C={d['C']:.3g}: {d['reason']}")
    if len(rows) < 3:
        raise ScaletuneError(f"isoFLOP analysis needs at least 3 usable budgets, found {len(rows)} "
                             f"({len(dropped)} dropped: {'; '.join(d['reason'] for d in dropped[:3])})")
    optima = pd.DataFrame(rows)
    log_c = np.log(optima["C"].to_numpy())
    fits = []
    for col, std_col, boot in (("N_star", "log_N_star_std", boot_n), ("D_star", "log_D_star_std", boot_d)):
        std = optima[std_col].to_numpy()
        fallback = np.nanmedian(std) if np.isfinite(std).any() and np.nanmedian(std) > 0 else 1.0
        # Floor at the median: with 6-9 points per budget the bootstrap spread of one budget can collapse
        # (every resample keeps the same bracket), and 1/std^2 would then hand it the whole fit.
        std = np.maximum(np.where(np.isfinite(std) & (std > 0), std, fallback), fallback)
        w = 1 / std**2 if weighted else np.ones(len(std))
        log_k, slope = _wls(log_c, np.log(optima[col].to_numpy()), w)
        B = np.stack(boot, axis=1)  # (bootstrap, budgets) of log optimum
        samples = []
        for row in B:
            ok = np.isfinite(row)
            samples.append(_wls(log_c[ok], row[ok], w[ok]) if ok.sum() >= 2 else (np.nan, np.nan))
        samples = np.array(samples).reshape(-1, 2)
        fits.append(_powerlaw_result(col, log_k, slope, samples, log_c, optima[col].to_numpy(), level, seed, weighted))
    return IsoflopResult(optima, dropped, fits[0], fits[1], interpolation, weighted, warnings)


def _powerlaw_result(y: str, log_k: float, slope: float, samples: np.ndarray, log_c: np.ndarray, values: np.ndarray,
                     level: float, seed: int, weighted: bool) -> FitResult:
    law = get_law("powerlaw:C")
    ok = np.all(np.isfinite(samples), axis=1)
    tail = 50 * (1 - level)
    intervals = {}
    if ok.any():
        named = {"log_k": samples[ok, 0], "c_C": samples[ok, 1]}
        named.update(law.derive(named))
        intervals = {k: (float(np.percentile(v, tail)), float(np.percentile(v, 100 - tail))) for k, v in named.items()}
    r = np.log(values) - (log_k + slope * log_c)
    return FitResult(
        law=law.spec, y=y, objective="weighted_least_squares_log" if weighted else "least_squares_log",
        params_={"log_k": log_k, "c_C": slope}, derived_={"k": float(np.exp(log_k))}, intervals=intervals,
        diagnostics={"converged": True, "n_points": int(len(values)), "residual_std_log": float(np.std(r)),
                     "bootstrap": {"samples": int(len(samples)), "failed": int((~ok).sum())}, "warnings": []},
        data_range={"C": (float(np.exp(log_c.min())), float(np.exp(log_c.max())))},
        bootstrap_params=samples, level=level, seed=seed,
        citation="Hoffmann et al. 2022 Approach 2; interpolation and weighting as in Porian et al. 2024",
    )
