"""Choose a schedule with a fitted curve law: compare candidates at one budget, optimise within a family.

Every candidate is completed from the fit when its spec leaves keys out: ``steps`` from the budget, ``lr``
(peak) and ``warmup`` from the fitted curves (the law was fitted at that peak rate; other peaks extrapolate).
Losses are the law's predicted final loss (nats) at the last step, with the prediction's 95% interval (bootstrap + the law's error).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize, minimize_scalar

from scaletune.curves.fit import CurveFit, CurvePrediction
from scaletune.errors import ScaletuneError
from scaletune.schedules import WSD_SHAPES, Schedule, read_schedule

FAMILIES = ("wsd", "cosine", "free")


def _defaults(fit: CurveFit, steps: int) -> dict:
    ref = max(fit.curves, key=lambda c: c["last_step"])
    if steps <= ref["warmup"]:
        raise ScaletuneError(f"--steps {steps} must exceed the fitted warm-up of {ref['warmup']} steps")
    return {"steps": int(steps), "lr": float(f"{ref['peak_lr']:.6g}"), "warmup": ref["warmup"]}


def complete_schedule(fit: CurveFit, spec: str, steps: int):
    """Parse a candidate, filling steps/lr/warmup the spec leaves out from the budget and the fit."""
    return read_schedule(spec, **_defaults(fit, steps))


@dataclass(frozen=True)
class Candidate:
    spec: str
    final_loss: float
    lo: float
    hi: float
    extrapolation: dict
    rates: np.ndarray | None = None  # per-step rates of a free-form schedule (its spec only names the knots)


def _final(fit: CurveFit, schedule) -> Candidate:
    pred: CurvePrediction = fit.predict(schedule, [schedule.steps])
    lo, hi = pred.final_interval
    return Candidate(schedule.spec(), pred.final_loss, lo, hi, pred.extrapolation)


def compare_schedules(fit: CurveFit, specs: list[str], steps: int) -> list[Candidate]:
    """Predicted final loss of each candidate at the same budget, best first."""
    if not specs:
        raise ScaletuneError("give at least one --candidates schedule")
    out = []
    for spec in specs:
        sched = complete_schedule(fit, spec, steps)
        if sched.steps != steps:
            raise ScaletuneError(f"candidate {spec!r} has {sched.steps} steps, not the budget --steps {steps}")
        out.append(_final(fit, sched))
    return sorted(out, key=lambda c: c.final_loss)


def optimise_schedule(fit: CurveFit, steps: int, family: str = "wsd", final: float = 0.0, knots: int = 12) -> tuple[Candidate, list[Candidate]]:
    """The best member of ``family`` at ``steps`` by predicted final loss; returns (best, all evaluated).

    - ``wsd``: cooldown fraction (0.02..0.6) for each shape (linear, 1-sqrt, cosine, exp); a grid, then a
      bounded 1-D refinement around the best. ``final`` is the last rate / peak (exp uses max(final, 0.01)).
    - ``cosine``: the final rate fraction in [0, 0.5].
    - ``free``: any non-increasing rate after warm-up, piecewise linear through ``knots`` equally spaced
      knots (multipower only: the annealing law rewards any decrease without limit). Returned as a
      (step, lr) table written next to the spec as ``free:...``; the best WSD is kept as a baseline.
    """
    if family not in FAMILIES:
        raise ScaletuneError(f"unknown schedule family {family!r} (known: {', '.join(FAMILIES)})")
    base = _defaults(fit, steps)
    tried: list[Candidate] = []

    def wsd(shape: str, frac: float) -> Candidate:
        f = max(final, 0.01) if shape == "exp" else final
        c = _final(fit, Schedule(kind="wsd", cooldown=round(float(frac), 3), shape=shape, final=f, **base))
        tried.append(c)
        return c

    if family in ("wsd", "free"):
        grid = np.linspace(0.02, 0.6, 30)
        for shape in WSD_SHAPES:
            losses = [wsd(shape, fr).final_loss for fr in grid]
            i = int(np.argmin(losses))
            a, b = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
            res = minimize_scalar(lambda fr: wsd(shape, fr).final_loss, bounds=(a, b), method="bounded", options={"xatol": 1e-3})
            wsd(shape, float(res.x))
    if family == "cosine":
        for f in np.linspace(0.0, 0.5, 26):
            tried.append(_final(fit, Schedule(kind="cosine", final=float(f), **base)))
    if family == "free":
        if fit.law != "multipower":
            raise ScaletuneError(f"a free-form schedule needs the multipower law (this fit is {fit.law})")
        free = _free_form(fit, base, knots, start=min(tried, key=lambda c: c.final_loss))
        return free, sorted({c.spec: c for c in [free, *tried]}.values(), key=lambda c: c.final_loss)
    tried_sorted = sorted({c.spec: c for c in tried}.values(), key=lambda c: c.final_loss)
    return tried_sorted[0], tried_sorted


def _free_form(fit: CurveFit, base: dict, knots: int, start: Candidate) -> Candidate:
    """Non-increasing piecewise-linear rates after warm-up: knot j has rate peak * prod_{i<=j} (1 - d_i),
    started from the best WSD read at the knots; L-BFGS-B on the predicted final loss (finite differences)."""
    T, W, peak = base["steps"], base["warmup"], base["lr"]
    warm = Schedule(kind="constant", **base).lrs()[:W]
    start_sched = read_schedule(start.spec)
    start_lrs = start_sched.lrs()
    # knots: end of warm-up, then evenly over twice the best WSD's cooldown, where a free shape can differ
    span = min(T - 1 - W, max(2 * (T - start_sched.decay_step), T // 10))
    x = np.r_[W, np.linspace(T - 1 - span, T - 1, knots - 1)]
    steps = np.arange(W, T)

    def rates(d: np.ndarray) -> np.ndarray:
        levels = peak * np.cumprod(np.concatenate([[1.0], 1.0 - d]))
        return np.concatenate([warm, np.interp(steps, x, levels)])

    def loss(d: np.ndarray) -> float:
        return float(fit.predict(rates(d), [T]).loss[0])

    # start from the best WSD, read at the knots
    lv = np.maximum(start_lrs[x.astype(int)], 1e-6 * peak) / peak
    d0 = np.clip(1.0 - lv[1:] / lv[:-1], 0.0, 0.999)
    res = minimize(loss, d0, method="L-BFGS-B", bounds=[(0.0, 0.999)] * (knots - 1), options={"maxiter": 200})
    lrs = rates(res.x)
    pred = fit.predict(lrs, [T])
    levels = peak * np.cumprod(np.concatenate([[1.0], 1.0 - res.x]))
    spec = "free:" + "|".join(f"{int(round(s))}={v:.4g}" for s, v in zip(x, levels))
    return Candidate(spec, pred.final_loss, *pred.final_interval, pred.extrapolation, rates=lrs)
