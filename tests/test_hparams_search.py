"""Scale-aware search: narrow_space centres each rung on the law fitted on the smaller rungs."""

import math

import numpy as np
import pandas as pd

from scaletune.hparams.search import narrow_space
from scaletune.hparams.synthetic import Landscape

RANGES = {"lr": (1e-5, 1.0), "batch_size": (1e3, 1e8), "warmup": (0.0, 0.1)}


def _runs(land, ladder, seed=0):
    df = land.sweep(ladder, lr_factors=2.0 ** np.arange(-3, 4), batch_factors=2.0 ** np.arange(-2, 3), seed=seed)
    df["rung"] = df.groupby(["N", "D"], sort=True).ngroup()
    return df[df.status == "ok"]


def test_narrowed_ranges_contain_the_true_optimum_and_are_narrower():
    land = Landscape(noise=0.001)
    ladder = [(n, d) for n in (1e7, 3e7) for d in (1e9, 4e9)] + [(1e8, 1e9)]
    target = {"N": 1e8, "D": 4e9}
    out = narrow_space(dict(RANGES), target, _runs(land, ladder))
    lo, hi = out["lr"]
    assert lo <= float(land.lr_opt(target["N"], target["D"])) <= hi
    assert hi / lo < 40 and (hi / lo) >= 4  # vs a configured span of 1e5
    blo, bhi = out["batch_size"]
    assert blo <= float(land.batch_opt(target["D"])) <= bhi and bhi / blo < 200
    assert out["warmup"] == RANGES["warmup"]  # not a searched law: untouched


def test_one_smaller_rung_assumes_transfer_and_never_widens():
    land = Landscape(k_lr=0.006, a=0.0, b=0.0, noise=0.001)  # muP-like: the optimum does not move
    runs = _runs(land, [(1e7, 1e9)])
    out = narrow_space({"lr": (1e-3, 3e-2)}, {"N": 3e7, "D": 1e9}, runs)
    lo, hi = out["lr"]
    assert 1e-3 <= lo < float(land.lr_opt(3e7, 1e9)) < hi <= 3e-2
    assert hi / lo >= 4


def test_nothing_known_returns_the_configured_ranges():
    assert narrow_space(dict(RANGES), {"N": 1e8}, pd.DataFrame()) == RANGES
    thin = pd.DataFrame(dict(rung=[0, 0], N=1e7, D=1e9, lr=[1e-3, 2e-3], batch_size=1e5, loss=[3.0, 2.9], status="ok"))
    assert narrow_space(dict(RANGES), {"N": 1e8, "D": 1e9}, thin) == RANGES


def test_prediction_outside_the_configured_range_leaves_it_unchanged():
    land = Landscape(noise=0.001)
    ladder = [(n, d) for n in (1e7, 3e7) for d in (1e9, 4e9)] + [(1e8, 1e9)]
    out = narrow_space({"lr": (0.5, 1.0)}, {"N": 1e8, "D": 4e9}, _runs(land, ladder))
    assert out["lr"] == (0.5, 1.0)
    assert math.isfinite(out["lr"][0])


def test_an_escaped_optimum_keeps_that_side_open():
    # Rung 0 is bracketed; rung 1 was swept too low (its best rate is the top of its range): the law from
    # rung 0 alone missed upwards, so rung 2 keeps the upper side of the configured range.
    land = Landscape(k_lr=0.006, a=0.0, b=0.0, noise=0.001)
    r0 = land.sweep([(1e7, 1e9)], seed=1)
    r1 = land.sweep([(3e7, 1e9)], lr_factors=2.0 ** np.arange(-7, -2), seed=2)
    r0["rung"], r1["rung"] = 0, 1
    configured = {"lr": (1e-5, 1.0)}
    out = narrow_space(dict(configured), {"N": 1e8, "D": 1e9}, pd.concat([r0, r1]))
    assert out["lr"][1] == 1.0 and out["lr"][0] > 1e-5
    only_r0 = narrow_space(dict(configured), {"N": 1e8, "D": 1e9}, r0)
    assert only_r0["lr"][1] < 1.0
