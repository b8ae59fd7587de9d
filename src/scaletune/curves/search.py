"""Choose a schedule with a fitted curve law: compare candidates at one budget, optimise within a family.

Every candidate is completed from the fit when its spec leaves keys out: ``steps`` from the budget, ``lr``
(peak) and ``warmup`` from the fitted curves (the law was fitted at that peak rate; other peaks extrapolate).
Losses are the law's predicted final loss (nats) at the last step, with the prediction's 95% interval
(bootstrap + the law's error).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import minimize, minimize_scalar

from scaletune.curves.fit import CurveFit, CurvePrediction, ScheduleLike
from scaletune.curves.laws import FloatArray, get_curve_law
from scaletune.errors import ScaletuneError
from scaletune.schedules import WSD_SHAPES, Schedule, read_schedule

FAMILIES = ("wsd", "cosine", "free")


def _defaults(fit: CurveFit, steps: int) -> dict[str, Any]:
    ref = max(fit.curves, key=lambda c: c["last_step"])
    if steps <= ref["warmup"]:
        raise ScaletuneError(
            f"a budget of {steps} steps does not exceed the fitted warm-up of {ref['warmup']} steps",
            hint="give a budget (steps) longer than the warm-up",
        )
    return {"steps": int(steps), "lr": float(f"{ref['peak_lr']:.6g}"), "warmup": ref["warmup"]}


def complete_schedule(fit: CurveFit, spec: str, steps: int) -> Schedule:
    """Parse a candidate, filling steps/lr/warmup the spec leaves out from the budget and the fit."""
    return read_schedule(spec, **_defaults(fit, steps))


@dataclass(frozen=True)
class Candidate:
    """A schedule and its predicted final loss at the budget (``prediction``: one point, with its interval and
    extrapolation)."""

    spec: str
    prediction: CurvePrediction
    rates: FloatArray | None = None  # per-step rates of a free-form schedule

    @property
    def final_loss(self) -> float:
        return self.prediction.final_loss

    @property
    def final_interval(self) -> tuple[float, float]:
        return self.prediction.final_interval

    def to_dict(self) -> dict[str, Any]:
        """The candidate as `--json` writes it: schedule, final loss and interval, extrapolation (factor and ratios)."""
        p = self.prediction
        return {
            "schedule": self.spec,
            "final_loss": self.final_loss,
            "final_interval": list(self.final_interval),
            "level": p.level,
            "extrapolation": p.extrapolation,
            "method": p.method,
            "ratios": p.ratios,
        }


def _final(fit: CurveFit, schedule: ScheduleLike, steps: int, spec: str | None = None, rates: FloatArray | None = None) -> Candidate:
    pred = fit.predict_interval(schedule, [steps])
    return Candidate(spec or pred.schedule, pred, rates)


def compare_schedules(fit: CurveFit, specs: list[str], steps: int) -> list[Candidate]:
    """Predicted final loss of each candidate at the same budget, best first."""
    if not specs:
        raise ScaletuneError("no candidate schedule to compare", hint="give at least one schedule spec")
    out = []
    for spec in specs:
        sched = complete_schedule(fit, spec, steps)
        if sched.steps != steps:
            raise ScaletuneError(
                f"candidate {spec!r} has {sched.steps} steps, not the budget of {steps}",
                hint="leave steps out of the candidate's spec: it defaults to the budget",
            )
        out.append(_final(fit, sched, steps))
    return sorted(out, key=lambda c: c.final_loss)


def optimise_schedule(
    fit: CurveFit, steps: int, family: str = "wsd", final: float = 0.0, knots: int = 12
) -> tuple[Candidate, list[Candidate]]:
    """The best member of ``family`` at ``steps`` by predicted final loss; returns (best, all evaluated).

    - ``wsd``: cooldown fraction (0.02..0.6) for each shape (linear, 1-sqrt, cosine, exp); a grid, then a
      bounded 1-D refinement around the best. ``final`` is the last rate / peak (exp uses max(final, 0.01)).
    - ``cosine``: the final rate fraction in [0, 0.5].
    - ``free``: any non-increasing rate after warm-up, piecewise linear through ``knots`` equally spaced
      knots (laws whose gain from a decay is bounded, e.g. multipower: the annealing law rewards any
      decrease without limit). Its spec is ``free:STEP=RATE|...``; the best WSD is kept as a baseline.
    """
    if family not in FAMILIES:
        raise ScaletuneError(f"unknown schedule family {family!r} (known: {', '.join(FAMILIES)})")
    base = _defaults(fit, steps)
    tried: list[Candidate] = []

    def wsd(shape: str, frac: float) -> Candidate:
        f = max(final, 0.01) if shape == "exp" else final
        c = _final(fit, read_schedule(f"wsd:cooldown={round(float(frac), 3)},shape={shape},final={f}", **base), steps)
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
            tried.append(_final(fit, read_schedule(f"cosine:final={float(f)}", **base), steps))
    if family == "free":
        if not get_curve_law(fit.law).bounded_decay:
            raise ScaletuneError(
                f"a free-form schedule needs a law whose gain from a decay is bounded, such as multipower "
                f"(this fit is {fit.law}, which rewards any decrease without limit)"
            )
        free = _free_form(fit, base, knots, start=min(tried, key=lambda c: c.final_loss))
        return free, sorted({c.spec: c for c in [free, *tried]}.values(), key=lambda c: c.final_loss)
    tried_sorted = sorted({c.spec: c for c in tried}.values(), key=lambda c: c.final_loss)
    return tried_sorted[0], tried_sorted


def _free_form(fit: CurveFit, base: dict[str, Any], knots: int, start: Candidate) -> Candidate:
    """Non-increasing piecewise-linear rates after warm-up: knot j has rate peak * prod_{i<=j} (1 - d_i),
    started from the best WSD read at the knots; L-BFGS-B on the predicted final loss (finite differences)."""
    T, W, peak = base["steps"], base["warmup"], base["lr"]
    warm = read_schedule("constant", **base).lrs()[:W]
    start_lrs = read_schedule(start.spec).lrs()
    decay_step = int(getattr(read_schedule(start.spec), "decay_step"))  # the best WSD's first cooldown step
    # knots: end of warm-up, then evenly over twice the best WSD's cooldown, where a free shape can differ
    span = min(T - 1 - W, max(2 * (T - decay_step), T // 10))
    x = np.r_[W, np.linspace(T - 1 - span, T - 1, knots - 1)]
    steps = np.arange(W, T)

    def rates(d: FloatArray) -> FloatArray:
        levels = peak * np.cumprod(np.concatenate([[1.0], 1.0 - d]))
        return np.concatenate([warm, np.interp(steps, x, levels)])

    def loss(d: FloatArray) -> float:
        return float(fit.predict(rates(d), [T])[0])

    # start from the best WSD, read at the knots
    lv = np.maximum(start_lrs[x.astype(int)], 1e-6 * peak) / peak
    d0 = np.clip(1.0 - lv[1:] / lv[:-1], 0.0, 0.999)
    res = minimize(loss, d0, method="L-BFGS-B", bounds=[(0.0, 0.999)] * (knots - 1), options={"maxiter": 200})
    lrs = rates(res.x)
    levels = peak * np.cumprod(np.concatenate([[1.0], 1.0 - res.x]))
    spec = "free:" + "|".join(f"{int(round(s))}={v:.4g}" for s, v in zip(x, levels))
    return _final(fit, lrs, T, spec=spec, rates=lrs)
