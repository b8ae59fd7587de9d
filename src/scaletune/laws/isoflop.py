"""IsoFLOP analysis (Chinchilla "Approach 2"): per-budget optimum, then N*(C) = k C^a and D*(C).

Per FLOP budget the loss-vs-log N curve is interpolated (Akima by default, or a cubic spline; a parabola
biases the optimum when the curve is asymmetric) and its minimum located. A budget is dropped, with a
warning, when it has fewer than 5 distinct sizes or its lowest observed loss sits at the edge of the grid
(the true optimum may lie outside).

Uncertainty: a residual bootstrap over the fixed design. The noise of one run's loss is estimated from the
residuals of a quadratic through the 5 sizes nearest each budget's minimum, pooled over budgets
(degrees-of-freedom corrected). A replicate adds residuals drawn from that pool to the observed losses at
the *same* sizes and locates the minimum as above. A replicate whose minimum moves to the edge of the grid is
kept as *censored*: its optimum is known only to lie beyond that edge (the open side stays open), it is
counted (``edge_replicates``), and the replicate's power-law fit treats it as a one-sided constraint (a
squared penalty only when the fitted line falls on the wrong side of the edge). No replicate is dropped. The
replicates' spread of ln N* weights each budget in the power-law fits (weighted least squares of ln N* on
ln C, as in Porian et al. 2024), and refitting every replicate gives the exponents' percentile intervals.
D* is read off the budget's own (N, D) pairs at N* (interpolated in log space), so no FLOP formula is assumed.

``cross_check`` adds Approach 3 on the same points: a Chinchilla fit (`scaletune.laws.fit`, budgets
resampled together) whose implied allocation exponents a_N = beta/(alpha+beta) and a_D = alpha/(alpha+beta)
are set beside Approach 2's a and b.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy.interpolate import Akima1DInterpolator, CubicSpline

from scaletune._json import dumps, load_document
from scaletune.errors import ScaletuneError
from scaletune.laws.catalogue import get_law
from scaletune.laws.fitting import FitResult, FloatArray, _as_frame, single_threaded_blas
from scaletune.results import Prediction, percentile_interval
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
    """Per-budget optima (``optima``: C, N_star, D_star, loss_star, intervals, log-std, edge_replicates) and the fits
    N*(C) = k C^a (``n_fit``) and D*(C) (``d_fit``), both `FitResult` of ``powerlaw:C`` with bootstrap samples.

    Implements the `scaletune.results.Fit` protocol: ``predict(C)`` is N*(C); ``predict_interval(C)`` a
    `Prediction` of N* whose ``details`` carry D*(C) and its interval (``D_star``, ``D_star_lo``, ``D_star_hi``).
    """

    optima: pd.DataFrame
    dropped: list[dict[str, Any]]
    n_fit: FitResult
    d_fit: FitResult
    interpolation: str
    weighted: bool
    warnings: list[str] = field(default_factory=list)
    edge_replicates: int = 0  # bootstrap optima censored at a grid edge (kept, see the module docstring)
    approach3: dict[str, Any] | None = None  # Chinchilla-fit cross-check of the allocation exponents

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
            "interpolation": self.interpolation,
            "weighted": self.weighted,
            "a_N_exponent": self.a,
            "a_interval": self.n_fit.intervals.get("c_C"),
            "b_D_exponent": self.b,
            "b_interval": self.d_fit.intervals.get("c_C"),
            "N_star_coef": self.n_fit.derived_["k"],
            "D_star_coef": self.d_fit.derived_["k"],
            "optima": self.optima.to_dict(orient="records"),
            "dropped": self.dropped,
            "warnings": self.warnings,
            "edge_replicates": self.edge_replicates,
            "approach3": self.approach3,
            "n_fit": self.n_fit.to_dict(),
            "d_fit": self.d_fit.to_dict(),
        }

    def predict(self, C: Any) -> FloatArray:
        """N*(C) = k C^a at compute ``C`` (FLOPs: a number, an array, or a mapping with ``"C"``)."""
        return self.n_fit.predict({"C": _budgets(C)})

    def predict_interval(self, C: Any, level: float | None = None) -> Prediction:
        """N*(C) with its bootstrap interval at ``level`` (default: the fit's) and how far ``C`` lies outside the
        budgets used; ``details``: D*(C) (``D_star``, ``D_star_lo``, ``D_star_hi``) and ``distance``."""
        c = {"C": _budgets(C)}
        n, d = self.n_fit.predict_interval(c, level), self.d_fit.predict_interval(c, level)
        return Prediction(
            n.value,
            n.lo,
            n.hi,
            n.level,
            n.extrapolation,
            n.method,
            {"D_star": d.value, "D_star_lo": d.lo, "D_star_hi": d.hi, "distance": n.details["distance"]},
        )

    def to_json(self) -> str:
        """Strict JSON (NaN as null) of `to_dict`, the two fits' bootstrap samples included."""
        return dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str) -> "IsoflopResult":
        d = load_document(text, "an isoFLOP result", ["optima", "n_fit", "d_fit"], "IsoflopResult.to_json()")
        optima = pd.DataFrame(d["optima"])
        optima = optima.apply(lambda col: pd.to_numeric(col, errors="coerce")) if len(optima) else optima
        return cls(
            optima,
            list(d.get("dropped", [])),
            FitResult.from_dict(d["n_fit"]),
            FitResult.from_dict(d["d_fit"]),
            d["interpolation"],
            bool(d["weighted"]),
            list(d.get("warnings", [])),
            int(d.get("edge_replicates", 0)),
            d.get("approach3"),
        )

    def __repr__(self) -> str:
        def cell(name: str, value: float, iv: tuple[float, float] | None) -> str:
            return f"{name}={value:.3g}" + ("" if iv is None else f" [{iv[0]:.3g}, {iv[1]:.3g}]")

        return (
            f"IsoflopResult({len(self.optima)} budgets, {len(self.dropped)} dropped: "
            f"{cell('a', self.a, self.n_fit.intervals.get('c_C'))}, {cell('b', self.b, self.d_fit.intervals.get('c_C'))})"
        )

    def summary(self) -> str:
        """A plain-text table (80 columns): the exponents and coefficients with intervals, then the optimum of
        every budget."""
        pct = f"{self.n_fit.level:.0%}"

        def num(v: float) -> str:
            return "-" if not np.isfinite(v) else f"{v:.4g}"

        def iv(i: tuple[float, float] | None) -> str:
            return "-" if i is None else f"[{num(i[0])}, {num(i[1])}]"

        rule = "-" * 64
        boot = self.n_fit.diagnostics.get("bootstrap", {})
        lines = textwrap.wrap(
            f"isoFLOP analysis (Approach 2): {len(self.optima)} budgets, {len(self.dropped)} dropped; "
            f"{self.interpolation} interpolation, {'weighted' if self.weighted else 'unweighted'}",
            80,
        )
        lines += [rule, f"{'quantity':<22}{'value':>12}   {pct} interval", rule]
        for name, coef, fit in (("a in N* = k C^a", "k", self.n_fit), ("b in D* = k' C^b", "k'", self.d_fit)):
            lines.append(f"{name:<22}{num(fit.params_['c_C']):>12}   {iv(fit.intervals.get('c_C'))}")
            lines.append(f"{coef:<22}{num(fit.derived_['k']):>12}   {iv(fit.intervals.get('k'))}")
        lines += [rule, f"{'C (FLOPs)':>10}{'N*':>11}  {pct + ' interval of N*':<24}{'D* (tokens)':>12}{'loss*':>9}", rule]
        for r in self.optima.itertuples():
            lines.append(f"{num(r.C):>10}{num(r.N_star):>11}  {iv((r.N_star_lo, r.N_star_hi)):<24}{num(r.D_star):>12}{num(r.loss_star):>9}")
        lines.append(rule)
        lines.append(f"bootstrap: {boot.get('samples', 0)} replicates per budget, {self.edge_replicates} censored at a grid edge")
        for w in self.warnings:
            lines += textwrap.wrap(f"warning: {w}", 80, subsequent_indent="  ")
        return "\n".join(lines)


def _budgets(C: Any) -> FloatArray:
    """Compute budgets as a 1-d array of floats from a number, an array or a mapping / table with a C."""
    if isinstance(C, (Mapping, pd.DataFrame)):
        C = C["C"]
    return np.atleast_1d(np.asarray(C, float))


def _wls(log_c: np.ndarray, log_v: np.ndarray, w: np.ndarray) -> tuple[float, float]:
    """Weighted least squares of log_v = log_k + a log_c; returns (log_k, a)."""
    X = np.stack([np.ones_like(log_c), log_c], axis=1)
    sw = np.sqrt(w)
    coef, *_ = np.linalg.lstsq(X * sw[:, None], log_v * sw, rcond=None)
    return float(coef[0]), float(coef[1])


@single_threaded_blas  # tiny problems: see scaletune.laws.fitting
def isoflop(
    data: pd.DataFrame | Mapping[str, Any],
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
    cross_check: bool = False,
) -> IsoflopResult:
    """IsoFLOP analysis of ``data`` (one row per run: budget ``C`` in FLOPs, parameters ``N``, tokens ``D``, ``y``).

    ``interpolation``: akima (default) or cubic. ``bootstrap`` residual-bootstrap replicates (seeded; see the
    module docstring: edge replicates are censored and counted, never dropped); ``weighted`` weights each
    budget by 1 / var(ln N*) in the power-law fits; ``cross_check`` adds Approach 3 (a Chinchilla fit on the
    same points) for comparison of the allocation exponents.
    """
    if interpolation not in ("akima", "cubic"):
        raise ScaletuneError(f"unknown interpolation {interpolation!r} (akima or cubic)")
    df = _as_frame(data)
    require_columns(df, [C, N, D, y])
    require_positive(df, [C, N, D, y])
    rng = np.random.default_rng(seed)
    rows: list[dict[str, Any]] = []
    dropped: list[dict[str, Any]] = []
    warnings: list[str] = []
    curves = []  # (budget, log_n, log_d, loss, optimum) of the budgets used
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
        order = np.argsort(log_n, kind="stable")
        curves.append((float(budget), log_n[order], log_d[order], loss[order], opt))
    for d in dropped:
        warnings.append(f"dropped budget C={d['C']:.3g}: {d['reason']}")
    if len(curves) < 3:
        raise ScaletuneError(
            f"isoFLOP analysis needs at least 3 usable budgets, found {len(curves)} "
            f"({len(dropped)} dropped: {'; '.join(d['reason'] for d in dropped[:3])})"
        )

    # noise of one run's loss: residuals of a quadratic through the 5 sizes nearest each budget's minimum,
    # pooled over budgets (a global polynomial would count the curves' asymmetry far from the minimum as noise)
    resid, dof = [], 0
    for _, x, _, loss, _ in curves:
        i = int(np.argmin(loss))
        lo = max(0, min(i - 2, len(x) - 5))
        xs, ys = x[lo : lo + 5], loss[lo : lo + 5]
        resid.append(ys - np.polyval(np.polyfit(xs - xs.mean(), ys, 2), xs - xs.mean()))
        dof += len(xs) - 3
    pooled = np.concatenate(resid)
    pooled = (pooled - pooled.mean()) * np.sqrt(len(pooled) / max(1, dof))  # variance of a new error, not of a residual

    boot_n, boot_d, side_n = [], [], []
    for budget, x, ld, loss, opt in curves:

        def d_at(v: float, x: FloatArray = x, ld: FloatArray = ld) -> float:
            return float(np.interp(v, x, ld))  # log D along the curve

        bn, bd, side = np.empty(bootstrap), np.empty(bootstrap), np.zeros(bootstrap)
        for k in range(bootstrap):
            # the observed curve plus a fresh error at every (fixed) size: the spread of the replicates' minima
            # comes from the added errors only, so the observed curve's own noise does not count twice
            values = loss + rng.choice(pooled, len(x))
            i = int(np.argmin(values))
            if i in (0, len(x) - 1):  # the replicate's minimum sits at the grid edge: censored there, not dropped
                side[k] = -1.0 if i == 0 else 1.0
                at = x[i]
            else:
                inner = curve_optimum(x, values, interpolation)
                assert inner is not None  # an interior minimum of >= 5 sizes is always located
                at = inner[0]
            bn[k], bd[k] = at, d_at(at)
        boot_n.append(bn)
        boot_d.append(bd)
        side_n.append(side)
        edge = int((side != 0).sum())
        n_lo, n_hi = percentile_interval(bn, level) if bootstrap else (np.nan, np.nan)
        rows.append(
            {
                "C": budget,
                "N_star": float(np.exp(opt[0])),
                "D_star": float(np.exp(d_at(opt[0]))),
                "loss_star": opt[1],
                "tokens_per_param": float(np.exp(d_at(opt[0]) - opt[0])),
                "n_points": int(len(loss)),
                "N_star_lo": float(np.exp(n_lo)),
                "N_star_hi": float(np.exp(n_hi)),
                "log_N_star_std": float(np.std(bn)) if bootstrap > 1 else np.nan,
                "log_D_star_std": float(np.std(bd)) if bootstrap > 1 else np.nan,
                "edge_replicates": edge,
            }
        )
    optima = pd.DataFrame(rows)
    n_edge = int(optima["edge_replicates"].sum())
    log_c = np.log(optima["C"].to_numpy())
    fits = []
    for col, std_col, boot, sign in (("N_star", "log_N_star_std", boot_n, 1.0), ("D_star", "log_D_star_std", boot_d, -1.0)):
        std = optima[std_col].to_numpy()
        fallback = np.nanmedian(std) if np.isfinite(std).any() and np.nanmedian(std) > 0 else 1.0
        # Floor at the median: with 6-9 points per budget the bootstrap spread of one budget can collapse
        # (every replicate keeps the same bracket), and 1/std^2 would then hand it the whole fit.
        std = np.maximum(np.where(np.isfinite(std) & (std > 0), std, fallback), fallback)
        w = 1 / std**2 if weighted else np.ones(len(std))
        log_k, slope = _wls(log_c, np.log(optima[col].to_numpy()), w)
        B = np.stack(boot, axis=1) if bootstrap else np.empty((0, len(rows)))  # (bootstrap, budgets) of log optimum
        S = np.stack(side_n, axis=1) * sign if bootstrap else B  # D* is censored on the other side of N*'s edge
        samples = np.array([_wls_censored(log_c, B[i], w, S[i]) for i in range(len(B))]).reshape(-1, 2)
        fits.append(_powerlaw_result(col, log_k, slope, samples, log_c, optima[col].to_numpy(), level, seed, weighted))
        fits[-1].diagnostics["bootstrap"].update(kind="residual bootstrap over the fixed design", censored=n_edge)
    approach3 = _approach3(df, C, N, D, y, curves, fits[0], bootstrap, seed, level) if cross_check else None
    return IsoflopResult(optima, dropped, fits[0], fits[1], interpolation, weighted, warnings, n_edge, approach3)


def _wls_censored(log_c: np.ndarray, v: np.ndarray, w: np.ndarray, side: np.ndarray) -> tuple[float, float]:
    """Weighted least squares of v on log_c where ``side`` -1 / +1 marks a value known only to be <= / >= v
    (censored at a grid edge): such a point costs w (fit - v)^2 only when the fitted line is on its wrong side.
    Solved by an active set (refit on the exact points and the violated bounds until the set is stable)."""
    exact = side == 0
    if exact.sum() < 2:  # too few exact points to place a line: the bounds enter as values
        return _wls(log_c, v, w)
    active = exact.copy()
    for _ in range(50):
        coef = _wls(log_c[active], v[active], w[active])
        f = coef[0] + coef[1] * log_c
        new = exact | (~exact & (-side * (f - v) > 0))  # exact points and bounds the line crosses
        if np.array_equal(new, active):
            break
        active = new
    return coef


def _approach3(
    df: pd.DataFrame,
    C: str,
    N: str,
    D: str,
    y: str,
    curves: Sequence[tuple[Any, ...]],
    n_fit: FitResult,
    bootstrap: int,
    seed: int,
    level: float,
) -> dict[str, Any]:
    """Approach 3 on the budgets Approach 2 used: a Chinchilla fit, budgets resampled together."""
    from scaletune.laws.fitting import fit

    used = df[df[C].astype(float).isin([c[0] for c in curves])]
    table = pd.DataFrame(
        {
            "N": pd.to_numeric(used[N]).to_numpy(float),
            "D": pd.to_numeric(used[D]).to_numpy(float),
            "loss": pd.to_numeric(used[y]).to_numpy(float),
            "budget": used[C].to_numpy(),
        }
    )
    try:
        r = fit("chinchilla", table, bootstrap=min(bootstrap, 100), seed=seed, groups="budget", intervals="bootstrap", level=level)
    except ScaletuneError as exc:
        return {"error": str(exc)}
    out: dict[str, Any] = {
        "a_N": r.derived_["a_N"],
        "a_N_interval": r.intervals.get("a_N"),
        "a_D": r.derived_["a_D"],
        "a_D_interval": r.intervals.get("a_D"),
        "n_points": r.diagnostics["n_points"],
        "bootstrap": r.diagnostics.get("bootstrap"),
        "params": r.params_,
    }
    a2 = n_fit.intervals.get("c_C")
    a3 = out["a_N_interval"]
    out["intervals_overlap"] = None if not (a2 and a3) else bool(a2[0] <= a3[1] and a3[0] <= a2[1])
    return out


def _powerlaw_result(
    y: str, log_k: float, slope: float, samples: np.ndarray, log_c: np.ndarray, values: np.ndarray, level: float, seed: int, weighted: bool
) -> FitResult:
    law = get_law("powerlaw:C")
    ok = np.all(np.isfinite(samples), axis=1)
    intervals = {}
    if ok.any():
        named = {"log_k": samples[ok, 0], "c_C": samples[ok, 1]}
        named.update(law.derive(named))
        intervals = {k: percentile_interval(v, level) for k, v in named.items()}
    r = np.log(values) - (log_k + slope * log_c)
    return FitResult(
        law=law.spec,
        y=y,
        objective="weighted_least_squares_log" if weighted else "least_squares_log",
        params_={"log_k": log_k, "c_C": slope},
        derived_={"k": float(np.exp(log_k))},
        intervals=intervals,
        diagnostics={
            "converged": True,
            "n_points": int(len(values)),
            "residual_std_log": float(np.std(r)),
            "bootstrap": {"samples": int(len(samples)), "failed": int((~ok).sum())},
            "warnings": [],
        },
        data_range={"C": (float(np.exp(log_c.min())), float(np.exp(log_c.max())))},
        bootstrap_params=samples,
        level=level,
        seed=seed,
        citation="Hoffmann et al. 2022 Approach 2; interpolation and weighting as in Porian et al. 2024",
    )
