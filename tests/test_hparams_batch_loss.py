"""The loss predicted at the recommended batch size, when the loss law was fitted at another one."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from scaletune.hparams import recommend
from scaletune.hparams.synthetic import Landscape

LAND = Landscape(noise=0.0005, c_b=0.05)
REF_BATCH = 2.0**19  # tokens: the ladder's fixed batch size, 3-7x above the optimum B*(D) at these D


def _sweep() -> pd.DataFrame:
    """An lr sweep of every (N, D) at REF_BATCH, plus lr x batch sweeps of the smallest model at both D."""
    rng = np.random.default_rng(0)
    rows = []

    def add(N, D, batch):
        lr0 = float(LAND.lr_opt(N, D, batch))
        for f in (1 / 8, 1 / 4, 1 / 2, 1, 2, 4, 8):
            rows.append(dict(N=N, D=D, lr=lr0 * f, batch_size=batch, loss=float(LAND.loss(N, D, lr0 * f, batch, rng)), status="ok"))

    for N in (1e7, 2e7, 4e7, 1e8):
        for D in (1e9, 2e9, 4e9):
            add(N, D, REF_BATCH)
    for D in (1e9, 4e9):
        for b in 2.0 ** np.arange(15, 19):
            add(1e7, D, b)
    return pd.DataFrame(rows)


def test_loss_is_moved_to_the_recommended_batch_size():
    runs = _sweep()
    target = {"N": 3e8, "D": 4e9}
    rec = recommend(runs, target, bootstrap=200, loss_bootstrap=100)
    assert rec.laws.reference_batch == REF_BATCH  # lr and loss laws hold at the ladder's batch size
    # the two swept scales enter those laws with their lr optimum at REF_BATCH instead of being left out
    assert any("2 swept scale(s) enter with their lr optimum at that size, 0 scale(s) left out" in n for n in rec.notes)
    assert "loss law: chinchilla on 12 bracketed scales" in rec.notes
    assert rec.batch_size.value < REF_BATCH / 2  # the batch sweep found a smaller optimum
    assert rec.loss.details["fitted_at_batch"] == REF_BATCH and rec.loss.details["batch_size"] == rec.batch_size.value
    assert any(n.startswith(f"loss at batch {rec.batch_size.value:.4g} tokens") for n in rec.notes)
    truth = float(LAND.loss(target["N"], target["D"], rec.lr.value, rec.batch_size.value))
    at_ref = float(rec.laws.loss.predict({**target, "C": 6 * target["N"] * target["D"]})[0])
    # without the correction the law predicts the loss at REF_BATCH, ~0.06 nats too high; with it, within 0.5%
    assert at_ref - truth > 0.03
    assert abs(rec.loss.value / truth - 1) < 0.005, (rec.loss.value, truth)
    lo, hi = rec.loss.interval
    assert lo <= truth <= hi and lo < rec.loss.value < hi


def test_no_correction_without_a_batch_sweep_spanning_the_recommended_size():
    """A batch size the sweep does not span is not extrapolated to: the source says the law's batch size."""
    from scaletune.hparams.recommend import _batch_loss_shift, _batch_slices

    runs = _sweep()
    slices = _batch_slices(runs, band=0.0025, bootstrap=100, seed=0)
    assert _batch_loss_shift(slices, {"N": 3e8, "D": 4e9}, 2.0**14, REF_BATCH) is None  # below the sweep
    value, draws, extra, note = _batch_loss_shift(slices, {"N": 3e8, "D": 1.6e10}, 2.0**16, REF_BATCH)
    assert extra == 4.0  # the ratio is extrapolated 4x in D beyond the swept budgets
    # at D = 1.6e10 the optimum B* is ~3.9e5 tokens: 2^16 is far below it, 2^19 near it (the landscape's
    # penalty is 0.05 (ln B - ln B*)^2, independent of N)
    b_opt = float(LAND.batch_opt(1.6e10))
    truth = LAND.c_b * (np.log(2.0**16 / b_opt) ** 2 - np.log(REF_BATCH / b_opt) ** 2)
    assert abs(value - truth) < 0.01, (value, truth)
    assert len(draws) == 200 and np.all(np.isfinite(draws)) and np.percentile(draws, 2.5) < value < np.percentile(draws, 97.5)


def test_with_a_batch_law_the_loss_law_is_fitted_at_the_ladders_batch_size_and_moved():
    """Batch swept at 3 token budgets: a B*(D) law is fitted and recommended; the loss law must not mix the
    swept scales' optima (at their best batch size) with the ladder's (at REF_BATCH)."""
    rng = np.random.default_rng(1)
    runs = [_sweep()]
    for b in 2.0 ** np.arange(15, 20):  # the third budget's batch sweep
        lr0 = float(LAND.lr_opt(1e7, 2e9, b))
        lrs = lr0 * np.array([1 / 8, 1 / 4, 1 / 2, 1, 2, 4, 8])
        runs.append(pd.DataFrame(dict(N=1e7, D=2e9, lr=lrs, batch_size=b, loss=LAND.loss(1e7, 2e9, lrs, b, rng), status="ok")))
    runs = pd.concat(runs, ignore_index=True)
    target = {"N": 3e8, "D": 4e9}
    rec = recommend(runs, target, bootstrap=200, loss_bootstrap=100)
    assert "batch_D" in rec.laws.laws and rec.laws.reference_batch is None
    assert rec.laws.loss_batch == REF_BATCH
    assert abs(rec.batch_size.value / float(LAND.batch_opt(4e9)) - 1) < 0.15
    truth = float(LAND.loss(target["N"], target["D"], rec.lr.value, rec.batch_size.value))
    assert rec.loss.details["fitted_at_batch"] == REF_BATCH
    assert abs(rec.loss.value / truth - 1) < 0.005, (rec.loss.value, truth)
    # the move itself (recommended minus ladder batch size) is the landscape's, within 0.003 nats
    at_ref = float(rec.laws.loss.predict({**target, "C": 6 * target["N"] * target["D"]})[0])
    true_move = truth - float(LAND.loss(target["N"], target["D"], LAND.lr_opt(3e8, 4e9, REF_BATCH), REF_BATCH))
    assert true_move < -0.04 and abs((rec.loss.value - at_ref) - true_move) < 0.003
    assert rec.loss.details["batch_shift_nats"] == pytest.approx(rec.loss.value - at_ref)
