"""Scale-aware search: each larger rung of a ladder searches around what the smaller rungs predict.

The study stage (strategy ``scale-aware``) calls `narrow_space` before planning each rung. From the finished
ok runs of the smaller rungs it locates the optimum per rung (`find_optima`), fits the power law of the
optimum in the scale variables that vary (`fit_hparam_law`: lr* = k prod v^c_v, and the same for the batch
size), predicts the optimum at the new rung with its bootstrap interval, and returns that interval widened
by ``margin`` on each side (so the rung's own sweep can still bracket its minimum), at least ``min_ratio``
wide, clipped to the configured range. With too few rungs for a law it assumes transfer (muP) and centres on
the smaller rungs' optima. When a smaller rung's optimum escaped its range (unbracketed at an edge), that side
stays open up to the configured bound. It never widens beyond the configured range and returns it unchanged
when nothing is known.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np
import pandas as pd

from scaletune.errors import ScaletuneError
from scaletune.hparams.laws import _design_rank_ok, fit_hparam_law
from scaletune.hparams.optimum import Optimum, find_optima

SEARCHED = ("lr", "batch_size")


def _law_variables(optima: list[Optimum], rung: Mapping[str, float], response: str) -> list[str]:
    """Scale variables of the rung that vary over the bracketed optima, as many as they identify."""
    use = [o for o in optima if o.usable(response)]
    names = []
    for v in rung:
        values: list[Any] = [o.scale.get(v, o.extra.get(v)) for o in use]
        if all(isinstance(x, (int, float)) and x > 0 for x in values) and len({round(math.log(x), 9) for x in values}) >= 2:
            names.append(v)
    # Keep the variables that the rungs identify: more rungs than parameters and a full-rank design.
    while names:
        logs = np.log(np.array([[o.scale.get(v, o.extra.get(v)) for v in names] for o in use], dtype=float))
        if len(use) > len(names) + 1 and _design_rank_ok(logs):
            return names
        names.pop()  # drop the last-listed variable (ladders list the main axis, e.g. width, first)
    return []


def predict_range(optima: list[Optimum], rung: Mapping[str, float], response: str) -> tuple[float, float, float] | None:
    """(centre, low, high) of the optimum of ``response`` predicted at ``rung`` from ``optima``; None if unknown."""
    use = [o for o in optima if o.usable(response)]
    if not use:
        return None
    names = _law_variables(optima, rung, response)
    if names:
        law = fit_hparam_law(optima, response, names, bootstrap=200, holdout=False)
        pred = law.predict_interval({v: rung[v] for v in names})
        if math.isfinite(pred.lo) and math.isfinite(pred.hi):
            return pred.value, pred.lo, pred.hi
    # Too few rungs for a law: assume transfer; the spread of the optima and their intervals set the width.
    # usable(response): the batch size's optimum and interval exist
    values = [o.lr_ if response == "lr" else float(o.batch_size_ or math.nan) for o in use]
    ivs = [o.lr_interval if response == "lr" else o.batch_size_interval or (math.nan, math.nan) for o in use]
    lows = [lo for lo, _ in ivs if math.isfinite(lo)] + values
    highs = [hi for _, hi in ivs if math.isfinite(hi)] + values
    return float(np.exp(np.mean(np.log(values)))), min(lows), max(highs)


def narrow_space(
    ranges: dict[str, tuple[float, float]],
    rung: dict[str, float],
    runs: pd.DataFrame,
    *,
    margin: float = 2.0,
    min_ratio: float = 16.0,
) -> dict[str, tuple[float, float]]:
    """Narrow a rung's log-ranges of ``lr`` / ``batch_size`` around the optimum predicted from smaller rungs.

    ``ranges``: the rung's configured (low, high) per hyperparameter; ``rung``: its scale variables (e.g.
    width, depth, D tokens, N); ``runs``: finished ok rows of the smaller rungs (a run table). Returns the
    ranges with lr / batch_size replaced by [low / margin, high * margin] of the predicted interval, at least
    ``min_ratio`` wide (geometrically centred on the prediction), clipped to the configured range; other
    hyperparameters, and any whose prediction falls outside its configured range, are returned unchanged.
    """
    out = dict(ranges)
    if runs is None or runs.empty or not any(k in ranges for k in SEARCHED) or "lr" not in runs.columns:
        return out
    by = ["rung"] if "rung" in runs.columns else [v for v in rung if v in runs.columns]
    if not by:
        return out
    try:
        optima = find_optima(runs, by=by, bootstrap=100)
    except ScaletuneError:
        return out  # no smaller rung has a sweep that locates an optimum yet
    for key in SEARCHED:
        if key not in ranges:
            continue
        try:
            pred = predict_range(optima, rung, key)
        except ScaletuneError:
            pred = None
        if pred is None:
            continue
        centre, lo, hi = pred
        lo, hi = min(lo, centre) / margin, max(hi, centre) * margin
        if hi / lo < min_ratio:
            half = math.sqrt(min_ratio)
            lo, hi = min(lo, centre / half), max(hi, centre * half)
        c_lo, c_hi = (float(v) for v in ranges[key])
        # A smaller rung whose optimum escaped its range (unbracketed at an edge) says the law missed that
        # way: keep that side of the configured range open instead of narrowing it.
        for o in optima:
            if o.usable(key):
                continue
            nxt, best = (o.next_lrs, o.best_lr) if key == "lr" else (o.next_batch_sizes, o.best_batch_size)
            if nxt and best:
                if max(nxt) > best:
                    hi = c_hi
                else:
                    lo = c_lo
        new_lo, new_hi = max(lo, c_lo), min(hi, c_hi)
        if new_lo < new_hi:
            out[key] = (float(new_lo), float(new_hi))
    return out
