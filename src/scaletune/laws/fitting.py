"""Robust fitting of a law: variable projection over a dense exponent grid, L-BFGS-B polish, bootstrap.

Why this shape: a multi-start L-BFGS-B over the literature's 4,500-point grid costs thousands of local
optimisations per fit, which makes a 1,000-sample bootstrap unaffordable. With the exponents fixed, the
coefficients of a sum of power laws enter linearly, so every point of a dense exponent grid is scored with
one non-negative least squares (in relative error, a close proxy for log error), and only the best few
grid points are polished with L-BFGS-B on the real objective and analytic gradients.
"""

from __future__ import annotations

import hashlib
import itertools
import multiprocessing
import os
import re
import textwrap
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Mapping, Sequence, TypeAlias, TypeVar

import numpy as np
import numpy.typing as npt
import pandas as pd
import scipy
from scipy.optimize import OptimizeResult, minimize
from threadpoolctl import ThreadpoolController

from scaletune import __version__
from scaletune._json import dumps, load_document, nan_from_null
from scaletune.errors import ScaletuneError
from scaletune.laws._calibration import Calibration, calibrated_interval, hull_distance, hull_points, scale_bins, scale_values
from scaletune.laws.catalogue import Law, get_law
from scaletune.laws.objectives import Objective, get_objective
from scaletune.results import LEVEL, Prediction, percentile_interval
from scaletune.runtable import require_columns, require_positive

Data: TypeAlias = "pd.DataFrame | Mapping[str, Any]"
FloatArray = npt.NDArray[np.float64]
_BAD = 1e30  # objective value of a parameter vector whose prediction is not finite and positive
# Found once: scanning the loaded BLAS libraries on every call would cost milliseconds per fit.
BLAS = ThreadpoolController()
F = TypeVar("F", bound=Callable[..., Any])


def single_threaded_blas(func: F) -> F:
    """Run ``func`` with single-threaded BLAS: the problems are tiny, and a threaded BLAS on a loaded machine
    turns each L-BFGS-B step from microseconds into milliseconds (measured: ~100x on 2 busy cores)."""
    wrapped: F = BLAS.wrap(limits=1, user_api="blas")(func)
    return wrapped


# --------------------------------------------------------------------------- batched non-negative least squares


def batched_nnls(M: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Solve min ||M[g].T c - t||^2 subject to c >= 0 for every g at once; M is (G, k, n), t is (n,).

    For the few columns a law has (k <= 4), the NNLS optimum is the least-squares solution of the feasible
    column subset with the smallest residual, so enumerating the 2^k - 1 subsets vectorises over the grid.
    Returns (c (G, k), residual sum of squares (G,)).
    """
    G_, k, n = M.shape
    gram = M @ M.transpose(0, 2, 1)  # (G, k, k); BLAS is single-threaded inside fit()
    rhs = M @ t
    tt = float(t @ t)
    best_rss = np.full(G_, tt)
    best_c = np.zeros((G_, k))
    ridge = 1e-12 * np.trace(gram, axis1=1, axis2=2)[:, None, None]
    for size in range(1, k + 1):
        for subset in itertools.combinations(range(k), size):
            s = list(subset)
            A = gram[:, s][:, :, s] + ridge * np.eye(size)
            try:
                c_s = np.linalg.solve(A, rhs[:, s][..., None])[..., 0]
            except np.linalg.LinAlgError:
                c_s = np.einsum("gij,gj->gi", np.linalg.pinv(A), rhs[:, s])
            rss = tt - np.einsum("gi,gi->g", c_s, rhs[:, s])
            better = np.all(c_s >= 0, axis=1) & (rss < best_rss)
            best_rss = np.where(better, rss, best_rss)
            best_c[better] = 0.0
            best_c[np.ix_(better, s)] = c_s[better]
    return best_c, best_rss


# --------------------------------------------------------------------------- the problem: law + data + objective


@dataclass
class _Problem:
    law: Law
    x: dict[str, np.ndarray]
    y: np.ndarray
    objective: Objective
    fixed: dict[str, float]
    has_jac: bool | None = None  # whether the law gives an analytic Jacobian (else finite differences); probed if None
    weights: np.ndarray | None = None  # per-point weights of the objective (None: all 1)

    def __post_init__(self) -> None:
        if self.has_jac is None:
            probe = self.law.start_points()[0]
            self.has_jac = self.law.log_predict(probe, {k: v[:1] for k, v in self.x.items()})[1] is not None

    @property
    def free(self) -> list[int]:
        return [i for i, p in enumerate(self.law.params) if p not in self.fixed]

    def full(self, theta_free: np.ndarray) -> np.ndarray:
        theta = np.array([self.fixed.get(p, np.nan) for p in self.law.params], dtype=float)
        theta[self.free] = theta_free
        return theta

    def value_and_grad(self, theta_free: np.ndarray) -> tuple[float, np.ndarray | None]:
        with np.errstate(all="ignore"):
            logp, jac = self.law.log_predict(self.full(theta_free), self.x)
            if self.objective.log_space:
                r = logp - np.log(self.y)
                dr = jac
            else:
                pred = np.exp(logp)
                r = pred - self.y
                dr = None if jac is None else jac * pred[:, None]
            if not np.all(np.isfinite(r)):
                return _BAD, (np.zeros(len(theta_free)) if jac is not None else None)
            rho, g = self.objective.elementwise(r)
            if self.weights is not None:
                rho, g = rho * self.weights, g * self.weights
            value = float(rho.sum())
        if dr is None:
            return value, None
        grad: np.ndarray = (dr[:, self.free] * g[:, None]).sum(axis=0)
        return value, grad

    def value(self, theta_free: np.ndarray) -> float:
        return self.value_and_grad(theta_free)[0]

    def starts(self, n_best: int, thin: int = 1) -> np.ndarray:
        """The best ``n_best`` starting points (free parameters): by variable projection when the law has one,
        scoring every ``thin``-th point of the flattened grid."""
        law, free_names = self.law, [self.law.params[i] for i in self.free]
        proj = law.projection
        if proj is not None and not self.fixed:
            g = {k: np.asarray(v, float)[::thin] for k, v in proj.grid.items()}
            size = len(next(iter(g.values())))
            chunk = max(1, 4_000_000 // (4 * len(self.y)))  # bound memory: ~4M numbers per array for big tables
            parts = [self._score_grid({k: v[i : i + chunk] for k, v in g.items()}) for i in range(0, size, chunk)]
            c = np.concatenate([p[0] for p in parts])
            scores = np.concatenate([p[1] for p in parts])
            order = np.argsort(scores, kind="stable")[:n_best]
            params = proj.to_params({k: v[order] for k, v in g.items()}, c[order])
            pts = np.stack([params[p] for p in free_names], axis=1)
        else:
            grid = law.start_points()[:, self.free]
            scores = np.array([self.value(p) for p in grid])
            pts = grid[np.argsort(scores, kind="stable")[:n_best]]
        lo, hi = self.bounds_array().T
        out: np.ndarray = np.clip(pts, lo, hi)
        return out

    def _score_grid(self, g: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """NNLS coefficients (G, k) and objective values (G,) at grid points ``g`` of the projection."""
        assert self.law.projection is not None
        with np.errstate(all="ignore"):
            phi = self.law.projection.basis(g, self.x)  # (G, k, n)
            if self.objective.log_space:
                # relative residuals (pred - y) / y approximate log residuals near a good fit
                c, _ = batched_nnls(phi / self.y, np.ones(len(self.y)))
                r = np.log((c[:, None, :] @ phi)[:, 0, :]) - np.log(self.y)
            else:
                c, _ = batched_nnls(phi, self.y)
                r = (c[:, None, :] @ phi)[:, 0, :] - self.y
            rho = self.objective.elementwise(r)[0]
            scores = (rho if self.weights is None else rho * self.weights[None, :]).sum(axis=1)
        scores[~np.isfinite(scores)] = np.inf
        return c, scores

    def bounds_array(self) -> np.ndarray:
        return np.array([self.law.bounds[self.law.params[i]] for i in self.free], dtype=float)

    def polish(self, start: np.ndarray) -> OptimizeResult:
        fun = self.value_and_grad if self.has_jac else self.value
        return minimize(
            fun,
            start,
            jac=self.has_jac,
            method="L-BFGS-B",
            bounds=self.bounds_array(),
            options={"maxiter": 5000, "maxfun": 20000, "ftol": 1e-13, "gtol": 1e-10},
        )

    def least_squares_log(self) -> np.ndarray:
        """Weighted least squares of log y on the design of a log-linear law (free parameters)."""
        theta0 = np.array([self.fixed.get(p, 0.0) for p in self.law.params])
        logp, J = self.law.log_predict(theta0, self.x)
        assert J is not None  # a log-linear law has its design as Jacobian
        target = np.log(self.y) - (logp - J @ theta0)  # move the fixed parameters' contribution to the target
        sw = np.ones(len(self.y)) if self.weights is None else np.sqrt(self.weights)
        coef: np.ndarray = np.linalg.lstsq(J[:, self.free] * sw[:, None], target * sw, rcond=None)[0]
        return coef

    def solve(self, n_starts: int, warm: np.ndarray | None = None, thin: int = 1) -> tuple[np.ndarray, float, OptimizeResult]:
        """Polish the best ``n_starts`` grid starts; return (theta (all params), objective value, scipy result).

        With ``warm`` (all parameters: a bootstrap refit starting from the full-data optimum), the warm start
        is polished first and a grid start (from every ``thin``-th grid point) only when it already scores
        better than that.
        """
        if self.law.log_linear:
            coef = self.least_squares_log()
            lo, hi = self.bounds_array().T
            if self.objective.name == "mse_log" and np.all((coef > lo) & (coef < hi)):
                value = self.value(coef)  # exact optimum: no iterations needed
                return self.full(coef), value, OptimizeResult(x=coef, fun=value, success=True, message="exact least squares in log space")
            res = self.polish(np.clip(coef, lo, hi))  # robust objectives start from the least-squares solution
            return self.full(res.x), float(res.fun), res
        best = None if warm is None else self.polish(np.asarray(warm, float)[self.free])
        for start in self.starts(n_starts, thin):
            if warm is not None and best is not None and self.value(start) >= best.fun:
                continue  # a grid start already worse than the polished warm start: skip (bootstrap speed)
            res = self.polish(start)
            if best is None or res.fun < best.fun:
                best = res
        assert best is not None  # starts() returns at least one point
        return self.full(best.x), float(best.fun), best


# --------------------------------------------------------------------------- input checking


def _as_frame(data: Data) -> pd.DataFrame:
    if isinstance(data, pd.DataFrame):
        return data
    try:
        return pd.DataFrame({k: np.atleast_1d(np.asarray(v)) for k, v in dict(data).items()})
    except ValueError as exc:
        raise ScaletuneError(f"cannot make a table of the data: {exc}") from None


def plain(value: Any) -> str:
    """A value for an error message: numbers as plain numbers (``1e+20``, not ``np.float64(1e+20)``)."""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, float, np.number)):
        return f"{float(value):.6g}"
    return repr(value)


def _check(law: Law, df: pd.DataFrame, y: str, n_free: int) -> None:
    require_columns(df, [*law.variables, y])
    require_positive(df, [*law.variables, y])
    source = df.attrs.get("source", "table")
    if len(df) <= n_free:
        raise ScaletuneError(
            f"{source}: {len(df)} points for law {law.spec!r} with {n_free} free parameters: need more points than parameters"
        )
    for v in law.variables:
        if df[v].nunique() < 2:
            raise ScaletuneError(
                f"{source}: column {v!r} has one single value ({plain(df[v].iloc[0])}): law {law.spec!r} needs at least two scales"
            )


_COMPARE = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*(>=|<=|==|!=|>|<)\s*([-+0-9.eE]+)\s*$")
_RANK = re.compile(r"^\s*(largest|smallest)\s*\(\s*([A-Za-z_][\w.]*)\s*,\s*(\d+)\s*\)\s*$")


def row_mask(df: pd.DataFrame, expression: str, what: str = "row selection") -> np.ndarray:
    """Rows matching ``COL OP NUMBER`` (OP in >= > <= < == !=) or ``largest(COL, K)`` / ``smallest(COL, K)``
    (every row whose COL is among the K largest / smallest distinct values); conditions join with ``and``."""
    mask = np.ones(len(df), dtype=bool)
    for part in re.split(r"\s+and\s+|\s*&\s*", expression.strip()):
        m, r = _COMPARE.match(part), _RANK.match(part)
        if m:
            col, op, num = m.groups()
            try:
                value = float(num)
            except ValueError:
                raise ScaletuneError(f"{what} {expression!r}: {num!r} is not a number") from None
        elif r:
            kind, col, k = r.groups()
        else:
            raise ScaletuneError(f"cannot parse {what} {expression!r}: expected e.g. 'C>=1e21' or 'largest(N,2)'")
        if col not in df.columns:
            raise ScaletuneError(f"{what} {expression!r}: no column {col!r} (columns: {', '.join(map(str, df.columns))})")
        values = pd.to_numeric(df[col], errors="coerce").to_numpy(float)
        if m:
            ops = {">=": np.greater_equal, "<=": np.less_equal, "==": np.equal, "!=": np.not_equal, ">": np.greater, "<": np.less}
            mask &= ops[op](values, value)
        else:
            distinct = np.unique(values[np.isfinite(values)])
            keep = distinct[-int(k) :] if kind == "largest" else distinct[: int(k)]
            mask &= np.isin(values, keep)
    return mask


def holdout_mask(df: pd.DataFrame, expression: str) -> np.ndarray:
    """Rows to hold out (see `row_mask` for the grammar): must select some rows but not all."""
    mask = row_mask(df, expression, "holdout expression")
    if not mask.any():
        raise ScaletuneError(f"holdout expression {expression!r} selects no rows")
    if mask.all():
        raise ScaletuneError(f"holdout expression {expression!r} selects every row: nothing left to fit")
    return mask


# --------------------------------------------------------------------------- the result


@dataclass(frozen=True, eq=False)
class FitResult:
    """A fitted law: everything needed to reproduce it and to predict, round-tripping through JSON.

    ``params_`` are the fitted parameters (natural-log coefficients where the law says so), ``derived_``
    the derived quantities, ``intervals`` percentile bootstrap intervals (at ``level``) for both;
    ``bootstrap_params`` holds the bootstrap samples (K, P) that ``predict_interval`` uses.
    Implements the `scaletune.results.Fit` protocol: ``predict``, ``predict_interval`` (a `Prediction`),
    ``to_json`` / ``from_json``, a one-line repr and ``summary()``.
    """

    law: str
    y: str
    objective: str
    params_: dict[str, float]
    derived_: dict[str, float]
    intervals: dict[str, tuple[float, float]]
    diagnostics: dict[str, Any]
    data_range: dict[str, tuple[float, float]]
    fixed: dict[str, float] = field(default_factory=dict)
    bootstrap_params: FloatArray | None = None
    level: float = LEVEL
    seed: int = 0
    holdout: dict[str, Any] | None = None
    data_hash: str = ""
    provenance: dict[str, Any] = field(default_factory=dict)
    citation: str = ""
    residuals_log: FloatArray | None = None  # log(observed) - log(fitted) of the fitted points
    data_hull: list[list[float]] | None = None  # fitted points in log variables (hull vertices): the distance's reference
    calibration: Calibration | None = None  # the error model of calibrated intervals (None: percentile bootstrap)
    backtest: dict[str, Any] | None = None  # summary of the rolling-origin backtest on the fitted data

    @property
    def law_(self) -> Law:
        return get_law(self.law)

    def _x(self, x: Mapping[str, Any] | pd.DataFrame) -> dict[str, FloatArray]:
        out = {}
        for v in self.law_.variables:
            if v not in x:
                raise ScaletuneError(f"law {self.law!r} needs {v!r} to predict (given: {', '.join(map(str, x.keys()))})")
            out[v] = np.atleast_1d(np.asarray(x[v], dtype=float))
        n = max(len(a) for a in out.values())
        return {k: np.broadcast_to(a, (n,)) if len(a) == 1 else a for k, a in out.items()}

    def predict(self, x: Mapping[str, Any] | pd.DataFrame) -> FloatArray:
        """The law at ``x`` (variable name -> values), in the units of the fitted response ``y``."""
        return self.law_.predict(self.params_, self._x(x))

    def predict_samples(self, x: Mapping[str, Any] | pd.DataFrame) -> FloatArray:
        """Predictions of every bootstrap sample, shape (K, n)."""
        if not self.has_samples:
            raise ScaletuneError(f"fit of {self.law!r} has no bootstrap samples", hint="refit with bootstrap > 0 for intervals")
        assert self.bootstrap_params is not None
        xs, law = self._x(x), self.law_
        n = len(next(iter(xs.values())))
        with np.errstate(all="ignore"):
            return np.array(
                [
                    np.exp(law.log_predict(theta, xs)[0]) if np.all(np.isfinite(theta)) else np.full(n, np.nan)
                    for theta in self.bootstrap_params
                ]
            )

    @property
    def has_samples(self) -> bool:
        """Whether the fit carries bootstrap samples (a published law or a ``bootstrap=0`` fit does not)."""
        return self.bootstrap_params is not None and len(self.bootstrap_params) > 0

    def predict_interval(self, x: Mapping[str, Any] | pd.DataFrame, level: float | None = None, observation: bool = False) -> Prediction:
        """The prediction at ``x`` with its interval at ``level`` (default: the fit's) of the law or, with
        ``observation``, of a new measurement there; one entry per point (vector fields).

        ``method``: ``calibrated`` (the default of `fit`: ln prediction + bias d +- q sqrt(bootstrap variance +
        kappa^2 d^2 [+ residual variance for an observation]), d the extrapolation distance, see
        `scaletune.laws._calibration`; ``value`` is then the bias-corrected centre), ``bootstrap`` (percentile
        interval of the bootstrap predictions, an observation's being each bootstrap prediction times exp(a
        residual of the fit drawn at random); ``value`` is `predict`) or ``point`` (no bootstrap samples: lo and
        hi are NaN). ``extrapolation`` is the joint factor outside the fitted points (`extrapolation`);
        ``details["distance"]`` its natural log.
        """
        level = self.level if level is None else level
        xs = self._x(x)
        dist = self.extrapolation_distance(xs)
        value = self.predict(xs)
        lo = hi = np.full(len(value), np.nan)
        method = "point"
        if self.calibration is not None:
            value, lo, hi = self._calibrated(xs, level, observation)
            method = "calibrated"
        elif self.has_samples:
            samples = self.predict_samples(xs)
            if observation:
                if self.residuals_log is None or len(self.residuals_log) == 0:
                    raise ScaletuneError(f"fit of {self.law!r} has no residuals for an observation interval")
                rng = np.random.default_rng(self.seed)
                samples = samples * np.exp(rng.choice(np.asarray(self.residuals_log), size=samples.shape))
            lo, hi = percentile_interval(samples, level, axis=0)
            method = "bootstrap"
        return Prediction(
            np.asarray(value, float),
            np.asarray(lo, float),
            np.asarray(hi, float),
            level,
            np.exp(dist),
            method,
            {"distance": dist, "observation": observation},
        )

    def _calibrated(self, x: Mapping[str, FloatArray], level: float, observation: bool) -> tuple[FloatArray, FloatArray, FloatArray]:
        assert self.calibration is not None
        xs = self._x(x)
        with np.errstate(all="ignore"):
            log_boot = np.log(self.predict_samples(xs)) if self.has_samples else None
        revised = None
        if self.calibration.revision_params is not None:
            with np.errstate(all="ignore"):
                revised = self.law_.log_predict(np.asarray(self.calibration.revision_params, float), xs)[0]
        return calibrated_interval(
            np.log(self.predict(xs)), log_boot, self.extrapolation_distance(xs), self.calibration, level, observation, revised
        )

    def extrapolation_distance(self, x: Mapping[str, Any] | pd.DataFrame) -> FloatArray:
        """Joint extrapolation distance of each point, in natural-log units: the L-infinity distance of its log
        variables from the convex hull of the fitted points (0 = inside; NaN for a published law, whose data
        are not known). See `scaletune.laws._calibration`."""
        xs = self._x(x)
        n = len(next(iter(xs.values())))
        variables = self.law_.variables
        if self.data_hull is not None:
            hull = np.asarray(self.data_hull, float)
        elif all(v in self.data_range for v in variables):  # a fit saved before hulls: the box of the ranges
            hull = np.array(list(itertools.product(*[np.log(self.data_range[v]) for v in variables])))
        else:
            return np.full(n, np.nan)
        with np.errstate(all="ignore"):
            pts = np.stack([np.log(xs[v]) for v in variables], axis=1)
        return hull_distance(pts, hull)

    def extrapolation(self, x: Mapping[str, Any] | pd.DataFrame) -> FloatArray:
        """How far each point lies outside the fitted data, as a factor: exp(`extrapolation_distance`), the
        smallest f such that every variable lies within a factor f of one convex mixture (in log space) of fitted
        points. 1.0 = inside; on a full grid it is the largest factor by which a variable leaves its range."""
        return np.exp(self.extrapolation_distance(x))

    # ----------------------------------------------------------------------- reading it

    def _method(self) -> str:
        if self.calibration is not None:
            return f"calibrated ({self.calibration.method})"
        return "bootstrap" if self.has_samples else "point (no bootstrap)"

    def __repr__(self) -> str:
        """One line: the law, the points, the objective and the fitted parameters with their intervals."""
        n = self.diagnostics.get("n_points")
        head = f"FitResult({self.law}, " + (f"{n} points, " if n is not None else "") + f"{self.objective}: "
        parts = [_cell(k, v, self.intervals.get(k), 3) for k, v in self.params_.items()]
        body = ""
        for i, part in enumerate(parts):
            if len(head) + len(body) + len(part) > 110:
                body += f"... +{len(parts) - i} more"
                break
            body += part + ("; " if i < len(parts) - 1 else "")
        return head + body + ")"

    def summary(self) -> str:
        """A plain-text table (80 columns): every parameter and derived quantity with its interval, then the
        data, objective, bootstrap and interval method."""
        pct = f"{self.level:.0%}"
        lines = textwrap.wrap(f"{self.law} fit of {self.y}: {self.law_.formula}", 80, subsequent_indent="  ")
        rule = "-" * 62
        lines += [rule, f"{'parameter':<22}{'value':>12}   {pct} interval", rule]

        def row(name: str, value: float) -> str:
            iv = self.intervals.get(name)
            interval = "(fixed)" if name in self.fixed else ("-" if iv is None else f"[{_num(iv[0])}, {_num(iv[1])}]")
            return f"{name[:22]:<22}{_num(value):>12}   {interval}"

        lines += [row(k, v) for k, v in self.params_.items()]
        if self.derived_:
            lines += ["derived", *(row(k, v) for k, v in self.derived_.items())]
        lines.append(rule)
        d = self.diagnostics
        boot = d.get("bootstrap") or {}
        notes = [
            f"points {d.get('n_points', '?')}; objective {self.objective}"
            + (f" = {d['objective_value']:.6g}" if isinstance(d.get("objective_value"), float) else "")
            + f"; converged {d.get('converged', '-')}",
            f"bootstrap {boot.get('samples', 0)} resamples, {boot.get('failed', 0)} failed"
            + (f" ({boot['grouping']})" if boot.get("grouping") else "")
            + f"; intervals: {self._method()}",
        ]
        if self.holdout:
            h = self.holdout
            notes.append(
                f"held out ({h['expression']}): {h['n']} points, mean |rel. error| "
                f"{h['mean_abs_relative_error']:.3g}"
                + (f", {pct} observation-interval coverage {h['coverage']:.0%}" if "coverage" in h else "")
            )
        notes += [f"warning: {w}" for w in d.get("warnings", [])]
        for note in notes:
            lines += textwrap.wrap(note, 80, subsequent_indent="  ")
        return "\n".join(lines)

    # ----------------------------------------------------------------------- JSON

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["bootstrap_params"] = None if self.bootstrap_params is None else self.bootstrap_params.tolist()
        d["residuals_log"] = None if self.residuals_log is None else np.asarray(self.residuals_log).tolist()
        d["intervals"] = {k: list(v) for k, v in self.intervals.items()}
        d["data_range"] = {k: list(v) for k, v in self.data_range.items()}
        d["calibration"] = None if self.calibration is None else self.calibration.to_dict()
        d["params_order"] = list(self.law_.params)
        return d

    def to_json(self, indent: int | None = 1) -> str:
        """Strict JSON (NaN and infinities as ``null``, see `scaletune._json`), bootstrap samples included."""
        return dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_json(cls, text: str) -> "FitResult":
        """Read `to_json`'s output (or the older files that wrote NaN) back to an equal fit."""
        return cls.from_dict(load_document(text, "a fit result", ["law", "params_"], "FitResult.to_json() or fit --out"))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "FitResult":
        """The inverse of `to_dict` (``null`` read back as NaN where a number belongs)."""
        d = dict(d)
        d.pop("params_order", None)

        def floats(m: Mapping[str, Any] | None) -> dict[str, Any]:
            return {k: nan_from_null(v) for k, v in (m or {}).items()}

        def array(v: Any) -> FloatArray | None:
            return None if v is None else np.array(nan_from_null(v), dtype=float)

        bp = array(d.get("bootstrap_params"))
        d["bootstrap_params"] = None if bp is None else bp.reshape(len(bp), -1)
        d["residuals_log"] = array(d.get("residuals_log"))
        d["params_"], d["derived_"], d["fixed"] = (floats(d.get(k)) for k in ("params_", "derived_", "fixed"))
        d["intervals"] = {k: (float(v[0]), float(v[1])) for k, v in floats(d.get("intervals")).items()}
        d["data_range"] = {k: (float(v[0]), float(v[1])) for k, v in floats(d.get("data_range")).items()}
        diag = dict(d.get("diagnostics") or {})
        for k in _FLOAT_DIAGNOSTICS:
            if k in diag:
                diag[k] = nan_from_null(diag[k])
        d["diagnostics"] = diag
        if d.get("calibration") is not None:
            cal = dict(d["calibration"])
            for k in ("noise_std", "kappa", "bias", "fold_biases", "z_abs", "extra_noise", "revision_params"):
                if cal.get(k) is not None:
                    cal[k] = nan_from_null(cal[k])
            d["calibration"] = Calibration.from_dict(cal)
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})


# diagnostics that are numbers (NaN when undefined; written as null)
_FLOAT_DIAGNOSTICS = ("objective_value", "residual_std_log", "residual_max_abs_log", "points_per_parameter")


def _num(v: float | None) -> str:
    return "-" if v is None or not np.isfinite(v) else f"{v:.4g}"


def _cell(name: str, value: float, iv: tuple[float, float] | None, digits: int) -> str:
    """``name=value [lo, hi]`` for a repr (the interval only when there is one)."""
    text = f"{name}={value:.{digits}g}"
    return text if iv is None else f"{text} [{iv[0]:.{digits}g}, {iv[1]:.{digits}g}]"


# --------------------------------------------------------------------------- bootstrap (all cores, seeded)

_WORK: dict[str, Any] = {}  # the bootstrap's shared inputs, inherited by forked workers (no pickling of the law)


def _refit_chunk(rows: list[np.ndarray]) -> np.ndarray:
    with BLAS.limit(limits=1, user_api="blas"):
        return _refit_rows(rows)


def _refit_rows(rows: list[np.ndarray]) -> np.ndarray:
    prob: _Problem = _WORK["problem"]
    out = np.full((len(rows), len(prob.law.params)), np.nan)
    for i, idx in enumerate(rows):
        w = None if prob.weights is None else prob.weights[idx]
        sub = _Problem(prob.law, {k: v[idx] for k, v in prob.x.items()}, prob.y[idx], prob.objective, prob.fixed, prob.has_jac, w)
        if any(len(np.unique(v)) < 2 for v in sub.x.values()):
            continue  # a resample with a single scale cannot identify the law: counted as failed
        try:
            theta, value, res = sub.solve(_WORK["n_starts"], _WORK["warm"], thin=4)
        except (ValueError, np.linalg.LinAlgError):
            continue
        if value < _BAD:
            out[i] = theta
    return out


def _bootstrap(
    problem: _Problem, groups: np.ndarray, k: int, seed: int, n_starts: int, workers: int | None, warm: np.ndarray
) -> np.ndarray:
    """Refit on ``k`` resamples of whole groups (all rows of a group together); returns (k, P), NaN rows failed.

    Each refit polishes the full-data optimum ``warm`` and, when it scores better, the best point of a
    thinned grid: a replicate that lands in a worse local minimum than the main fit would widen (and shift)
    the intervals for no reason, and thousands of refits must cost less than one brute-force fit.
    """
    labels, inverse = np.unique(groups, return_inverse=True)
    members = [np.flatnonzero(inverse == g) for g in range(len(labels))]
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(labels), size=(k, len(labels)))  # drawn up front: results do not depend on workers
    rows = [np.concatenate([members[g] for g in draw]) for draw in draws]
    _WORK.update(problem=problem, n_starts=n_starts, warm=warm)
    workers = workers or os.cpu_count() or 1
    try:
        # fork: workers inherit the problem (user laws with lambdas cannot be pickled); a daemonic process
        # (e.g. a pool worker that calls fit) may not have children, so it refits serially
        parallel = workers > 1 and k >= 20 and not multiprocessing.current_process().daemon
        if parallel and "fork" in multiprocessing.get_all_start_methods():
            chunks = [rows[i :: workers * 4] for i in range(workers * 4)]
            with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
                parts = list(pool.map(_refit_chunk, chunks))
            out = np.empty((k, len(problem.law.params)))
            for i, part in enumerate(parts):
                out[i :: workers * 4] = part
            return out
        return _refit_chunk(rows)
    finally:
        _WORK.clear()


# --------------------------------------------------------------------------- fit


def _design(law: Law, df: pd.DataFrame) -> dict[str, np.ndarray]:
    return {v: pd.to_numeric(df[v]).to_numpy(dtype=float) for v in law.variables}


def _diagnostics(problem: _Problem, theta: np.ndarray, value: float, res: OptimizeResult, n_starts: int) -> dict[str, Any]:
    law = problem.law
    logp, _ = law.log_predict(theta, problem.x)
    r = logp - np.log(problem.y)
    at_bound = []
    for name, t in zip(law.params, theta):
        if name in problem.fixed:
            continue
        lo, hi = law.bounds[name]
        span = hi - lo
        if abs(t - lo) <= 1e-6 * span or abs(t - hi) <= 1e-6 * span:
            at_bound.append(name)
    params = dict(zip(law.params, theta))
    derived = law.derive(params)
    floor: Any = derived.get("E", params.get("E"))
    warnings = []
    if not res.success:
        warnings.append(f"optimiser did not converge: {res.message}")
    if at_bound:
        warnings.append(f"parameters at a bound: {', '.join(at_bound)}")
    n_free = len(problem.free)
    per_param = len(problem.y) / max(1, n_free)
    if law.response == "loss" and per_param < 3:
        # a 5-parameter law on 6-12 points extrapolates erratically: say so (refit with --fix of the exponents
        # from a larger fit, or a simpler law)
        warnings.append(
            f"only {len(problem.y)} points for {n_free} free parameters ({per_param:.1f} per parameter, "
            f"fewer than 3): extrapolation is poorly constrained; fix exponents or use a simpler law"
        )
    e_above = bool(floor is not None and float(floor) > problem.y.min())
    if e_above:
        warnings.append(f"irreducible term E = {float(floor):.4g} lies above the lowest observed {float(problem.y.min()):.4g}")
    return {
        "converged": bool(res.success),
        "message": str(res.message),
        "objective_value": value,
        "at_bound": at_bound,
        "E_above_min_observed": e_above,
        "residual_std_log": float(np.std(r)),
        "residual_max_abs_log": float(np.max(np.abs(r))),
        "n_points": int(len(problem.y)),
        "points_per_parameter": float(per_param),
        "n_scales": {v: int(len(np.unique(a))) for v, a in problem.x.items()},
        "n_starts_polished": n_starts,
        "warnings": warnings,
    }


@single_threaded_blas
def fit(
    law: str | Law,
    data: Data,
    *,
    y: str | None = None,
    objective: str | Objective = "huber",
    bootstrap: int = 200,
    seed: int = 0,
    groups: str | Sequence[Any] | np.ndarray | None = None,
    holdout: str | np.ndarray | None = None,
    fixed: Mapping[str, float] | None = None,
    weights: str | Sequence[float] | np.ndarray | None = None,
    level: float = LEVEL,
    n_starts: int = 5,
    workers: int | None = None,
    intervals: str = "calibrated",
    by: str | None = None,
    backtest: bool = False,
) -> FitResult:
    """Fit ``law`` to ``data`` (a DataFrame or dict of arrays with the law's variables and ``y``).

    ``y`` defaults to the law's response (``loss`` for loss laws). ``objective``: huber (default, delta 1e-3
    on natural-log residuals, summed), mse_log, mse_linear, lower_envelope. ``holdout`` (an expression such as
    ``"C>=1e21"`` or ``"largest(N,2)"``, or a boolean mask) is left out of the fit and reported.
    ``fixed`` freezes parameters at given values; ``weights`` (a column name or one value per row)
    multiplies each point's term of the objective.

    Intervals (``bootstrap`` resamples, 200 by default as on the command line, seeded, on all cores; percentile
    intervals of the parameters at ``level``; ``bootstrap=0`` gives a point fit, whose predictions have method
    ``point`` and no interval). ``intervals="calibrated"`` (default): the bootstrap resamples whole budgets (``groups`` or, by
    default, bins of the scale ``by``, C = 6ND for laws of N and D), and prediction intervals come from the error
    model of a rolling-origin backtest along ``by`` on the fitted data (see `scaletune.laws._calibration`), or
    from bootstrap + residual noise when there are too few scales (``calibration.method`` says which).
    ``intervals="bootstrap"``: the plain bootstrap, resampling rows (or ``groups``) and percentile prediction
    intervals. ``backtest`` attaches the backtest summary also to a plain-bootstrap fit.
    """
    if intervals not in ("calibrated", "bootstrap"):
        raise ScaletuneError(f"unknown intervals {intervals!r} (calibrated or bootstrap)")
    law = get_law(law)
    y = y or law.response
    obj = get_objective(objective)
    fixed = {k: float(v) for k, v in (fixed or {}).items()}
    unknown = [k for k in fixed if k not in law.params]
    if unknown:
        raise ScaletuneError(f"law {law.spec!r} has no parameter {unknown[0]!r} to fix (parameters: {', '.join(law.params)})")
    df = _as_frame(data)
    n_free = len(law.params) - len(fixed)
    require_columns(df, [*law.variables, y])
    mask = np.zeros(len(df), dtype=bool)
    if holdout is not None:
        mask = holdout_mask(df, holdout) if isinstance(holdout, str) else np.asarray(holdout, dtype=bool)
    train = df[~mask]
    train.attrs.update(df.attrs)
    _check(law, train, y, n_free)
    if mask.any():
        require_positive(df[mask], [*law.variables, y])
    if isinstance(groups, str):
        require_columns(df, [groups])
        group_labels, grouping = df[groups].to_numpy()[~mask], f"column {groups}"
    elif groups is not None:
        group_labels = np.asarray(groups)
        if len(group_labels) != len(df):
            raise ScaletuneError(f"groups has {len(group_labels)} labels for {len(df)} rows")
        group_labels, grouping = group_labels[~mask], "given labels"
    elif intervals == "calibrated":
        # runs of one budget share errors (same data order, same tuning): they are resampled together
        axis, values = scale_values(train, law.variables, by)
        group_labels, how = scale_bins(values)
        grouping = f"{axis} budgets ({how})"
    else:
        group_labels, grouping = np.arange(len(train)), "rows"

    x = _design(law, train)
    yv = pd.to_numeric(train[y]).to_numpy(dtype=float)
    w = None
    if weights is not None:
        if isinstance(weights, str):
            require_columns(df, [weights])
            require_positive(df, [weights])
            w = pd.to_numeric(df[weights]).to_numpy(float)
        else:
            w = np.asarray(weights, dtype=float)
            if len(w) != len(df) or not np.all(np.isfinite(w) & (w > 0)):
                raise ScaletuneError(f"weights must be {len(df)} positive finite values, one per row")
        w = w[~mask]
    problem = _Problem(law, x, yv, obj, fixed, weights=w)
    theta, value, res = problem.solve(n_starts)
    params = {p: float(t) for p, t in zip(law.params, theta)}
    derived = {k: float(v) for k, v in law.derive(params).items()}
    diagnostics = _diagnostics(problem, theta, value, res, n_starts)
    residuals = np.log(yv) - law.log_predict(theta, x)[0]

    samples, ranges = None, {}
    if bootstrap > 0:
        samples = _bootstrap(problem, group_labels, bootstrap, seed, 1, workers, theta)
        ok = np.all(np.isfinite(samples), axis=1)
        diagnostics["bootstrap"] = {
            "samples": int(bootstrap),
            "failed": int((~ok).sum()),
            "groups": int(len(np.unique(group_labels))),
            "grouping": grouping,
        }
        if ok.any():
            named = {p: samples[ok, i] for i, p in enumerate(law.params)}
            named.update(law.derive(named))
            for name, vals in named.items():
                if name in fixed:
                    continue
                lo, hi = percentile_interval(vals, level)
                if lo != hi:  # a quantity of fixed parameters only has no interval
                    ranges[name] = (lo, hi)

    calibration, summary = None, None
    if (intervals == "calibrated" and bootstrap > 0) or backtest:
        from scaletune.laws.backtest import rolling_errors

        rolled = rolling_errors(law, train, y, by=by, objective=obj, fixed=fixed, weights=w, n_starts=n_starts)
        summary = rolled.summary()
        if intervals == "calibrated" and bootstrap > 0:
            noise = float(np.sqrt(np.sum(residuals**2) / max(1, len(yv) - n_free)))
            calibration = rolled.calibration(noise, grouping)

    digest = hashlib.sha256()
    for v in law.variables:
        digest.update(x[v].tobytes())
    digest.update(yv.tobytes())

    result = FitResult(
        law=law.spec,
        y=y,
        objective=obj.name,
        params_=params,
        derived_=derived,
        intervals=ranges,
        diagnostics=diagnostics,
        data_range={v: (float(a.min()), float(a.max())) for v, a in x.items()},
        fixed=fixed,
        bootstrap_params=samples,
        level=level,
        seed=seed,
        data_hash=digest.hexdigest()[:16],
        provenance={
            "scaletune": __version__,
            "numpy": np.__version__,
            "scipy": scipy.__version__,
            "source": str(df.attrs.get("source", "in-memory data")),
        },
        citation=law.citation,
        residuals_log=residuals,
        data_hull=hull_points(x, law.variables).tolist(),
        calibration=calibration,
        backtest=summary,
    )
    if mask.any():
        result = _with_holdout(result, df[mask], holdout if isinstance(holdout, str) else "mask", level)
    return result


def records(prediction: Prediction, x: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One plain record per point of a `FitResult.predict_interval` result (the JSON rows of ``predict``,
    holdouts and backtests): the point's variables, value, lo, hi, level, observation, extrapolation, distance
    and method."""
    out = []
    for i in range(len(prediction)):
        p = prediction[i]
        out.append(
            {
                **{v: float(np.broadcast_to(np.asarray(a, float), (len(prediction),))[i]) for v, a in x.items()},
                "value": p.value,
                "lo": p.lo,
                "hi": p.hi,
                "level": p.level,
                "observation": bool(prediction.details.get("observation", False)),
                "extrapolation": p.extrapolation,
                "distance": float(np.asarray(prediction.details["distance"])[i]),
                "method": p.method_name,
            }
        )
    return out


def _with_holdout(result: FitResult, held: pd.DataFrame, expression: str, level: float) -> FitResult:
    law = result.law_
    xs = _design(law, held)
    obs = pd.to_numeric(held[result.y]).to_numpy(dtype=float)
    prediction = result.predict_interval(xs, level, observation=True)  # a held-out point is a new measurement
    method = prediction.method
    pred = result.predict(xs)
    points = []
    for rec, o, p in zip(records(prediction, xs), obs, pred):
        point = {v: rec[v] for v in law.variables}
        point.update(
            observed=float(o),
            predicted=float(p),
            relative_error=float(p / o - 1),
            extrapolation=rec["extrapolation"],
            distance=rec["distance"],
        )
        if method != "point":
            point.update(value=rec["value"], lo=rec["lo"], hi=rec["hi"], covered=bool(rec["lo"] <= o <= rec["hi"]))
        points.append(point)
    summary = {
        "expression": expression,
        "n": len(points),
        "points": points,
        "method": method,
        "interval": f"observation ({'calibrated error model' if method == 'calibrated' else 'law + residual'})",
        "mean_abs_relative_error": float(np.mean(np.abs(pred / obs - 1))),
        "median_abs_relative_error": float(np.median(np.abs(pred / obs - 1))),
    }
    if method != "point":
        summary["coverage"] = float(np.mean([p["covered"] for p in points]))
    return FitResult(**{**{f: getattr(result, f) for f in result.__dataclass_fields__}, "holdout": summary})
