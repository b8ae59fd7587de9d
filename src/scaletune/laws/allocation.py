"""Compute-optimal allocation from a fitted law of the Chinchilla form L = E + A/N^alpha + B/D^beta.

Under C = 6 N D (FLOPs; N parameters as counted by the fitted data, D tokens), minimising L gives
    N*(C) = G (C/6)^(beta/(alpha+beta)),  D*(C) = G^-1 (C/6)^(alpha/(alpha+beta)),  G = (alpha A / (beta B))^(1/(alpha+beta)),
and on that frontier alpha A N*^-alpha = beta B D*^-beta, so the compute that reaches a loss L > E is
    N = (A (1 + alpha/beta) / (L - E))^(1/alpha),  D = (B (1 + beta/alpha) / (L - E))^(1/beta),  C = 6 N D.
Every bootstrap sample of the fit gives one allocation: the intervals are their percentiles.
For ``data_constrained`` the allocation assumes unique tokens are not the limit (U >= D, no repetition).
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from scaletune._json import dumps, load_document, nan_from_null
from scaletune.errors import ScaletuneError
from scaletune.laws.fitting import FitResult, FloatArray, plain
from scaletune.laws.published import ALLOCATION_ONLY
from scaletune.results import Prediction, percentile_interval
from scaletune.runtable import FLOPS_PER_PARAM_TOKEN, training_flops

Form = tuple[Any, Any, Any, Any, Any]  # (E, A, alpha, B, beta): floats, or arrays of bootstrap samples


@dataclass(frozen=True)
class Allocation:
    """Compute-optimal N*, D* at compute C (FLOPs, C = 6ND), the loss there, and percentile intervals.

    Implements the `scaletune.results.Fit` protocol along the law's compute-optimal frontier: ``predict(C)``
    gives N*(C) at other budgets, ``predict_interval(C)`` a `Prediction` of N* whose ``details`` hold D*, its
    interval and the loss there. ``fit`` is the law it came from (a `FitResult`, or ``"published:deepseek"``
    for DeepSeek's power-law allocation, where N* is M*, non-embedding FLOPs per token).
    """

    C: float
    N_star: float
    D_star: float
    tokens_per_param: float
    loss: float | None
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)
    extrapolation: float | None = None
    convention: str = "C = 6 N D FLOPs; N parameters as counted in the fitted data; D tokens"
    source: str = ""
    notes: list[str] = field(default_factory=list)
    fit: FitResult | str | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """The allocation's numbers (the ``allocate --json`` document; the law is left out)."""
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "fit"}
        d["intervals"] = {k: list(v) for k, v in self.intervals.items()}
        d["notes"] = list(self.notes)
        return d

    def to_json(self) -> str:
        """Strict JSON (NaN and infinities as null), the law included so that `from_json` can predict."""
        return dumps({**self.to_dict(), "fit": self.fit.to_dict() if isinstance(self.fit, FitResult) else self.fit})

    @classmethod
    def from_json(cls, text: str) -> "Allocation":
        d = load_document(text, "an allocation", ["N_star"], "Allocation.to_json()")
        law = d.get("fit")
        d["fit"] = FitResult.from_dict(law) if isinstance(law, dict) else law
        d["intervals"] = {k: (float(nan_from_null(v[0])), float(nan_from_null(v[1]))) for k, v in d.get("intervals", {}).items()}
        for k in ("C", "N_star", "D_star", "tokens_per_param", "extrapolation"):
            d[k] = nan_from_null(d.get(k))
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    # ----------------------------------------------------------------------- the frontier as a fit

    def _law(self) -> FitResult | str:
        if self.fit is None:
            raise ScaletuneError(
                "this allocation carries no law to predict with", hint="make it with scaletune.laws.allocate(fit, compute)"
            )
        return self.fit

    def predict(self, C: Any) -> FloatArray:
        """N* at compute ``C`` (FLOPs; a number or an array) along the law's compute-optimal frontier."""
        return np.asarray(self.predict_interval(C).value, float)

    def predict_interval(self, C: Any, level: float | None = None) -> Prediction:
        """N* at compute ``C`` with its bootstrap interval at ``level`` (default: the fit's); ``details``:
        ``D_star`` (with ``D_star_lo``, ``D_star_hi``) and ``loss`` at the optimum. Method ``bootstrap``, or
        ``point`` without bootstrap samples (a published law: NaN bounds, NaN extrapolation)."""
        law = self._law()
        c = np.atleast_1d(np.asarray(C, float))
        if not np.all(np.isfinite(c) & (c > 0)):
            raise ScaletuneError(f"compute must be positive numbers of FLOPs, got {plain(c[~(np.isfinite(c) & (c > 0))][0])}")
        nan = np.full(len(c), np.nan)
        if isinstance(law, str):
            func, _ = ALLOCATION_ONLY[law.removeprefix("published:")]
            M, D = func(c)
            return Prediction(M, nan, nan, self.level, nan, "point", {"D_star": D, "D_star_lo": nan, "D_star_hi": nan})
        N, D, L = _frontier(_form(law, law.params_), c)
        level = law.level if level is None else level
        n_iv = d_iv = (nan, nan)
        samples = _samples(law)
        if samples is not None:
            n, d, _ = _frontier(_form(law, samples), c[:, None])  # (budgets, samples)
            n_iv, d_iv = percentile_interval(n, level, axis=1), percentile_interval(d, level, axis=1)
        return Prediction(
            N,
            n_iv[0],
            n_iv[1],
            level,
            _extrapolation(law, N, D),
            "bootstrap" if samples is not None else "point",
            {"D_star": D, "D_star_lo": d_iv[0], "D_star_hi": d_iv[1], "loss": L},
        )

    @property
    def level(self) -> float:
        return self.fit.level if isinstance(self.fit, FitResult) else 0.95

    def __repr__(self) -> str:
        def cell(name: str, key: str, value: float | None) -> str:
            iv = self.intervals.get(key)
            if value is None:
                return f"{name}=-"
            return f"{name}={value:.3g}" + ("" if iv is None else f" [{iv[0]:.3g}, {iv[1]:.3g}]")

        star = "M*" if isinstance(self.fit, str) else "N*"
        return (
            f"Allocation(C={self.C:.3g}: {cell(star, 'N_star', self.N_star)}, {cell('D*', 'D_star', self.D_star)}, "
            f"{cell('loss', 'loss', self.loss)})"
        )

    def summary(self) -> str:
        """A plain-text table (80 columns) of the allocation with its intervals, convention and source."""
        pct = f"{self.level:.0%}"
        star = "M* (FLOPs/token)" if isinstance(self.fit, str) else "N* (parameters)"
        rows: list[tuple[str, str, float | None]] = [
            ("C (FLOPs)", "C", self.C),
            (star, "N_star", self.N_star),
            ("D* (tokens)", "D_star", self.D_star),
        ]
        if not isinstance(self.fit, str):
            rows.append(("D*/N*", "tokens_per_param", self.tokens_per_param))
        rows += [("loss", "loss", self.loss), ("extrapolation x", "", self.extrapolation)]
        rule = "-" * 62
        lines = [rule, f"{'quantity':<22}{'value':>12}   {pct + ' interval'}", rule]
        for name, key, value in rows:
            iv = self.intervals.get(key)
            lines.append(f"{name:<22}{_num(value):>12}   " + ("-" if iv is None else f"[{_num(iv[0])}, {_num(iv[1])}]"))
        lines.append(rule)
        for text in (self.convention, f"source: {self.source}", *self.notes):
            lines += textwrap.wrap(text, 80, subsequent_indent="  ")
        return "\n".join(lines)


def _num(v: float | None) -> str:
    if v is None or np.isnan(v):
        return "-"
    return ("inf" if v > 0 else "-inf") if np.isinf(v) else f"{v:.4g}"


def _form(fit: FitResult, params: Any) -> Form:
    law = fit.law_
    if law.chinchilla_form is None:
        raise ScaletuneError(
            f"law {fit.law!r} has no compute-optimal allocation", hint="fit the 'chinchilla' law, or use published:hoffmann"
        )
    E, A, alpha, B, beta = law.chinchilla_form(params)
    return E, A, alpha, B, beta


def _frontier(form: Form, C: Any) -> tuple[Any, Any, Any]:
    E, A, alpha, B, beta = form
    G = (alpha * A / (beta * B)) ** (1 / (alpha + beta))
    nd = C / FLOPS_PER_PARAM_TOKEN  # N D, parameters x tokens, at compute C
    N = G * nd ** (beta / (alpha + beta))
    D = nd ** (alpha / (alpha + beta)) / G
    return N, D, E + A * N**-alpha + B * D**-beta


def _inverse(form: Form, L: float) -> tuple[Any, Any, Any]:
    E, A, alpha, B, beta = form
    with np.errstate(all="ignore"):
        N = (A * (1 + alpha / beta) / (L - E)) ** (1 / alpha)
        D = (B * (1 + beta / alpha) / (L - E)) ** (1 / beta)
    return N, D, training_flops(N, D)


def _samples(fit: FitResult) -> dict[str, FloatArray] | None:
    if fit.bootstrap_params is None or len(fit.bootstrap_params) == 0:
        return None
    ok = np.all(np.isfinite(fit.bootstrap_params), axis=1)
    return {p: fit.bootstrap_params[ok, i] for i, p in enumerate(fit.law_.params)}


def _extrapolation(fit: FitResult, N: Any, D: Any) -> FloatArray:
    """The law's joint extrapolation factor at the optimum (N*, D*) (a law of N and M = D/N gets M from them)."""
    values = {"N": N, "D": D, "M": np.asarray(D) / np.asarray(N)}
    return fit.extrapolation({v: values.get(v, D) for v in fit.law_.variables})


def _interval(v: FloatArray, level: float) -> tuple[float, float]:
    """`percentile_interval` of samples where +inf (a target that sample never reaches) counts as larger than
    every finite sample: a bound that falls among the infinite samples is inf rather than biased low."""
    inf = np.isposinf(v)
    if not inf.any():
        lo, hi = percentile_interval(v, level)
        return float(lo), float(hi)
    top = float(v[~inf].max()) if (~inf).any() else 0.0
    lo, hi = percentile_interval(np.where(inf, 2 * abs(top) + 1, v), level)
    return (lo if lo <= top else np.inf), (hi if hi <= top else np.inf)


def _intervals(values: dict[str, FloatArray], level: float) -> dict[str, tuple[float, float]]:
    """Percentile intervals; NaN samples are undefined and left out, +inf ones count as infinitely large."""
    out = {}
    for k, v in values.items():
        v = v[~np.isnan(v)]
        if len(v):
            out[k] = _interval(v, level)
    return out


def allocate(fit: FitResult | str, compute: float) -> Allocation:
    """Compute-optimal N*, D*, D*/N* and loss at ``compute`` FLOPs, with bootstrap intervals.

    ``fit`` is a `FitResult` of a Chinchilla-form law, or ``"published:deepseek"`` (DeepSeek LLM's power-law
    allocation, where N* is non-embedding FLOPs per token M*, not parameters).
    """
    if not np.isfinite(compute) or compute <= 0:
        raise ScaletuneError(f"compute must be a positive number of FLOPs, got {plain(compute)}")
    if isinstance(fit, str):
        key = fit.removeprefix("published:")
        if key not in ALLOCATION_ONLY:
            from scaletune.laws.published import load_fit

            fit = load_fit(fit)
        else:
            func, cite = ALLOCATION_ONLY[key]
            M, D = func(compute)
            return Allocation(
                float(compute),
                float(M),
                float(D),
                float(D / M),
                None,
                convention="C = M D FLOPs; N_star is M*, non-embedding FLOPs per token (DeepSeek convention); D tokens",
                source=cite,
                fit=f"published:{key}",
            )
    N, D, L = _frontier(_form(fit, fit.params_), compute)
    intervals = {}
    samples = _samples(fit)
    if samples is not None:
        n, d, l = _frontier(_form(fit, samples), compute)
        intervals = _intervals({"N_star": n, "D_star": d, "tokens_per_param": d / n, "loss": l}, fit.level)
    return _on_frontier(fit, compute, N, D, L, intervals)


def compute_for_loss(fit: FitResult | str, loss: float) -> Allocation:
    """The inverse: the least compute (C = 6ND FLOPs) that reaches ``loss``, with its N*, D* and intervals."""
    if isinstance(fit, str):
        from scaletune.laws.published import load_fit

        fit = load_fit(fit)
    form = _form(fit, fit.params_)
    E = float(form[0])
    if not np.isfinite(loss) or loss <= E:
        raise ScaletuneError(f"target loss {plain(loss)} is not above the fitted irreducible loss E = {E:.4g}: no compute reaches it")
    N, D, C = _inverse(form, loss)
    intervals, notes = {}, []
    samples = _samples(fit)
    if samples is not None:
        form_s = _form(fit, samples)
        n, d, c = _inverse(form_s, loss)
        never = np.asarray(form_s[0]) >= loss  # this sample's floor E lies above the target: no compute reaches it
        n, d, c = (np.where(never, np.inf, a) for a in (n, d, c))
        with np.errstate(invalid="ignore"):
            ratio = np.where(never, np.nan, d / n)  # undefined where the target is unreachable
        intervals = _intervals({"C": c, "N_star": n, "D_star": d, "tokens_per_param": ratio}, fit.level)
        unreachable = int(never.sum())
        if unreachable:
            notes.append(
                f"{unreachable} of {len(c)} bootstrap samples have E >= {plain(loss)}: counted as needing "
                "infinite compute (the target may be unreachable)"
            )
    return _on_frontier(fit, C, N, D, loss, intervals, notes)


def _on_frontier(
    fit: FitResult, C: float, N: float, D: float, L: float, intervals: dict[str, tuple[float, float]], notes: list[str] | None = None
) -> Allocation:
    """The point (C, N*, D*, loss) of ``fit``'s frontier as an `Allocation`, with how far it extrapolates."""
    return Allocation(
        float(C),
        float(N),
        float(D),
        float(D / N),
        float(L),
        intervals,
        float(_extrapolation(fit, N, D)[0]),
        source=fit.citation or fit.law,
        notes=notes or [],
        fit=fit,
    )
