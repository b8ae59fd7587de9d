"""Compute-optimal allocation from a fitted law of the Chinchilla form L = E + A/N^alpha + B/D^beta.

Under C = 6 N D (FLOPs; N parameters as counted by the fitted data, D tokens), minimising L gives
    N*(C) = G (C/6)^(beta/(alpha+beta)),  D*(C) = G^-1 (C/6)^(alpha/(alpha+beta)),  G = (alpha A / (beta B))^(1/(alpha+beta)),
and on that frontier alpha A N*^-alpha = beta B D*^-beta, so the compute that reaches a loss L > E is
    N = (A (1 + alpha/beta) / (L - E))^(1/alpha),  D = (B (1 + beta/alpha) / (L - E))^(1/beta),  C = 6 N D.
Every bootstrap sample of the fit gives one allocation: the intervals are their percentiles.
For ``data_constrained`` the allocation assumes unique tokens are not the limit (U >= D, no repetition).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from scaletune.errors import ScaletuneError
from scaletune.laws.fitting import FitResult, plain
from scaletune.laws.published import ALLOCATION_ONLY


@dataclass(frozen=True)
class Allocation:
    """Compute-optimal N*, D* at compute C (FLOPs, C = 6ND), the loss there, and percentile intervals."""

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

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["intervals"] = {k: list(v) for k, v in self.intervals.items()}
        return d


def _form(fit: FitResult, params: dict[str, np.ndarray]):
    law = fit.law_
    if law.chinchilla_form is None:
        raise ScaletuneError(f"law {fit.law!r} has no compute-optimal allocation: fit 'chinchilla' (or use published:hoffmann)")
    return law.chinchilla_form(params)


def _frontier(form, C):
    E, A, alpha, B, beta = form
    G = (alpha * A / (beta * B)) ** (1 / (alpha + beta))
    N = G * (C / 6) ** (beta / (alpha + beta))
    D = (C / 6) ** (alpha / (alpha + beta)) / G
    return N, D, E + A * N**-alpha + B * D**-beta


def _inverse(form, L):
    E, A, alpha, B, beta = form
    with np.errstate(all="ignore"):
        N = (A * (1 + alpha / beta) / (L - E)) ** (1 / alpha)
        D = (B * (1 + beta / alpha) / (L - E)) ** (1 / beta)
    return N, D, 6 * N * D


def _samples(fit: FitResult) -> dict[str, np.ndarray] | None:
    if fit.bootstrap_params is None or len(fit.bootstrap_params) == 0:
        return None
    ok = np.all(np.isfinite(fit.bootstrap_params), axis=1)
    return {p: fit.bootstrap_params[ok, i] for i, p in enumerate(fit.law_.params)}


def _intervals(values: dict[str, np.ndarray], level: float) -> dict[str, tuple[float, float]]:
    """Percentile intervals; NaN samples are undefined and left out, +inf ones (a target some samples never
    reach) count as infinitely large, so the upper end becomes inf rather than being biased low."""
    tail = 50 * (1 - level)
    out = {}
    for k, v in values.items():
        v = v[~np.isnan(v)]
        if not len(v):
            continue
        if np.isinf(v).any():
            lo, hi = np.percentile(v, tail, method="lower"), np.percentile(v, 100 - tail, method="higher")
        else:
            lo, hi = np.percentile(v, tail), np.percentile(v, 100 - tail)
        out[k] = (float(lo), float(hi))
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
            return Allocation(float(compute), float(M), float(D), float(D / M), None,
                              convention="C = M D FLOPs; N_star is M*, non-embedding FLOPs per token (DeepSeek convention); D tokens",
                              source=cite)
    N, D, L = _frontier(_form(fit, fit.params_), compute)
    intervals = {}
    samples = _samples(fit)
    if samples is not None:
        n, d, l = _frontier(_form(fit, samples), compute)
        intervals = _intervals({"N_star": n, "D_star": d, "tokens_per_param": d / n, "loss": l}, fit.level)
    return Allocation(float(compute), float(N), float(D), float(D / N), float(L), intervals,
                      float(fit.extrapolation({v: {"N": N, "D": D}.get(v, D) for v in fit.law_.variables})[0]),
                      source=fit.citation or fit.law)


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
            notes.append(f"{unreachable} of {len(c)} bootstrap samples have E >= {plain(loss)}: counted as needing "
                         "infinite compute (the target may be unreachable)")
    return Allocation(float(C), float(N), float(D), float(D / N), float(loss), intervals,
                      float(fit.extrapolation({v: {"N": N, "D": D}.get(v, D) for v in fit.law_.variables})[0]),
                      source=fit.citation or fit.law, notes=notes)
