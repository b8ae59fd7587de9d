"""Learning-rate / batch-size laws on the optima of synthetic sweeps with known exponents."""

import json
import math

import numpy as np
import pandas as pd
import pytest

from scaletune.errors import ScaletuneError
from scaletune.hparams.laws import Method, fit_hparam_law, fit_hparam_laws, transfer_report
from scaletune.hparams.optimum import find_optima
from scaletune.hparams.synthetic import Landscape

LADDER = [(n, d) for n in (1e7, 3e7, 1e8) for d in (1e9, 4e9, 1.6e10)]


@pytest.fixture(scope="module")
def optima():
    land = Landscape(noise=0.001)
    runs = land.sweep(LADDER, lr_factors=2.0 ** np.arange(-3, 4), batch_factors=2.0 ** np.arange(-2, 3), seed=1)
    return land, find_optima(runs, bootstrap=100)


def test_steplaw_exponents_recovered_within_intervals(optima):
    land, opts = optima
    laws = fit_hparam_laws(opts, bootstrap=200, loss_bootstrap=40)
    lr = laws.laws["lr_ND"]
    (a, a_iv), (b, b_iv) = lr.exponents["N"], lr.exponents["D"]
    assert a_iv[0] <= land.a <= a_iv[1] and abs(a - land.a) < 0.06
    assert b_iv[0] <= land.b <= b_iv[1] and abs(b - land.b) < 0.06
    c, c_iv = laws.laws["batch_D"].exponents["D"]
    assert c_iv[0] <= land.c <= c_iv[1]
    # B* does not depend on N in this landscape: B*(N, D) is fitted and its N exponent described (interval
    # holding 0); issue 12: the choice between the forms is made by held-out loss (tests/test_hparams_select.py)
    d, (lo, hi) = laws.laws["batch_ND"].exponents["N"]
    assert lo <= 0 <= hi and abs(d) < 0.1
    # The extrapolation check: the largest scale held out is predicted inside its interval.
    assert lr.holdout["points"] and lr.holdout["coverage"] == 1.0
    # A 10x-beyond-the-ladder prediction carries its extrapolation factor and covers the truth.
    pred = lr.predict_interval({"N": 1e9, "D": 1.6e10})
    assert lr.predict({"N": 1e9, "D": 1.6e10}) == pred.value and pred.method == Method.LR_ND
    assert pred.extrapolation == pytest.approx(10.0)
    assert pred.interval[0] <= float(land.lr_opt(1e9, 1.6e10)) <= pred.interval[1]
    # Loss law from the same optima: chinchilla (9 scales, 3 N x 3 D); the optimal loss at a bigger scale.
    assert laws.loss is not None and laws.loss.law == "chinchilla"
    lo, hi = laws.loss.predict_interval({"N": 3e8, "D": 3e10}).interval
    assert abs(float(laws.loss.predict({"N": 3e8, "D": 3e10})[0]) / float(land.loss_opt(3e8, 3e10)) - 1) < 0.01
    json.dumps(laws.to_dict())  # every record is JSON-serialisable


def test_unbracketed_scales_are_excluded_not_fitted(optima):
    land, opts = optima
    # Re-sweep the smallest scale with rates that are all too small: it must be excluded, named.
    bad = Landscape(noise=0.001).sweep([LADDER[0]], lr_factors=2.0 ** np.arange(-8, -3), seed=2)
    bad_opt = find_optima(bad, bootstrap=20)[0]
    assert not bad_opt.bracketed
    law = fit_hparam_law([bad_opt] + opts[1:], "lr", ("N", "D"), bootstrap=50, holdout=False)
    assert law.scales == len(opts) - 1
    assert len(law.excluded) == 1 and "top of the sweep" in law.excluded[0]


def test_collinear_ladder_falls_back_to_one_variable():
    land = Landscape(noise=0.001)
    ladder = [(n, 20 * n) for n in (1e7, 2e7, 4e7, 8e7, 1.6e8)]  # D/N = 20 on every rung
    opts = find_optima(land.sweep(ladder, seed=3), bootstrap=50)
    with pytest.raises(ScaletuneError, match="collinear"):
        fit_hparam_law(opts, "lr", ("N", "D"), bootstrap=20)
    laws = fit_hparam_laws(opts, bootstrap=100, loss_bootstrap=0)
    assert laws.laws["lr_ND"].variables == ("N",)
    assert any("collinear" in n for n in laws.notes)
    # Along D = 20 N the true law is lr ~ N^(a+b): the single exponent absorbs both.
    c, iv = laws.laws["lr_ND"].exponents["N"]
    assert iv[0] <= land.a + land.b <= iv[1]


def test_transfer_report_under_mup_like_landscape():
    # A landscape whose optimum does not move with N (muP): transfer holds; StepLaw's SP exponent: it does not.
    mup = Landscape(a=0.0, noise=0.001)
    ladder = [(n, 1e9) for n in (1e7, 3e7, 8e7)]
    rep = transfer_report(find_optima(mup.sweep(ladder, seed=4), bootstrap=60))
    assert rep.held and abs(math.log(rep.rows[0]["shift"])) < math.log(1.3)
    sp = transfer_report(find_optima(Landscape(noise=0.001).sweep(ladder, seed=4), bootstrap=60))
    assert not sp.held and sp.rows[0]["shift"] == pytest.approx(8.0**-0.713, rel=0.2)


def test_too_few_scales_is_a_clear_error():
    opts = find_optima(Landscape().sweep([(1e7, 1e9), (3e7, 2e9), (1e8, 3e9)], seed=5), bootstrap=20)
    with pytest.raises(ScaletuneError, match="need more scales than parameters"):
        fit_hparam_law(opts, "lr", ("N", "D"))


def test_lr_is_recommended_at_the_recommended_batch_size():
    # lr* ~ sqrt(batch / B*): the batch size is swept at the smallest N only, the larger N are tuned at 4x B*.
    # An lr law across the per-scale optima would read the 2x lr shift as a scale effect; the recommendation
    # must fit lr*(N, D, B) on the (scale, batch size) slices and predict at the recommended batch size.
    from scaletune.hparams.recommend import recommend

    land = Landscape(noise=0.0005, g=0.5)
    swept = land.sweep([(1e7, d) for d in (1e9, 4e9, 1.6e10)], batch_factors=2.0 ** np.arange(-2, 3), seed=7)
    fixed = land.sweep(
        [(n, d) for n in (3e7, 1e8) for d in (1e9, 4e9, 1.6e10)], lr_factors=2.0 ** np.arange(-2, 5), batch_factors=(4,), seed=8
    )
    rec = recommend(pd.concat([swept, fixed], ignore_index=True), {"N": 3e8, "D": 3e10}, bootstrap=100, loss_bootstrap=0)
    true_b = float(land.batch_opt(3e10))
    assert abs(math.log(rec.batch_size.value / true_b)) < math.log(1.3)
    true_lr = float(land.lr_opt(3e8, 3e10, rec.batch_size.value))
    assert abs(math.log(rec.lr.value / true_lr)) < math.log(1.25)
    assert rec.lr.interval[0] <= true_lr <= rec.lr.interval[1]
    # a batch-aware rule (the slices' lr*(N, D, B) or the joint landscape), chosen by held-out loss
    assert rec.lr.method in (Method.LR_NDB, Method.LR_JOINT)


def test_batch_optimum_below_the_sweep_is_a_bound_with_the_lr_at_it():
    # The batch sweep starts at 2x B*: no batch law; the smallest tested size is recommended (said to be an
    # edge) with the learning rate predicted at that size, not at the ladder's batch size.
    from scaletune.hparams.recommend import recommend

    land = Landscape(noise=0.0005, g=0.5)
    swept = land.sweep([(1e7, d) for d in (1e9, 4e9, 1.6e10)], batch_factors=2.0 ** np.arange(1, 5), seed=9)
    fixed = land.sweep(
        [(n, d) for n in (3e7, 1e8) for d in (1e9, 4e9, 1.6e10)], lr_factors=2.0 ** np.arange(-2, 5), batch_factors=(4,), seed=10
    )
    # Held out along D, the joint landscape's B*(D) (the one-sided sweeps bound it) is scored, and chosen.
    rec = recommend(pd.concat([swept, fixed], ignore_index=True), {"N": 3e8, "D": 1.6e10}, bootstrap=100, loss_bootstrap=0)
    assert rec.batch_size.method == Method.BATCH_JOINT_D
    assert abs(math.log(rec.batch_size.value / float(land.batch_opt(1.6e10)))) < math.log(1.5)
    # Without the backtest (select=False): the fixed order, down to the bound.
    rec = recommend(pd.concat([swept, fixed], ignore_index=True), {"N": 3e8, "D": 1.6e10}, bootstrap=100, loss_bootstrap=0, select=False)
    assert "batch_D" not in rec.laws.laws
    assert rec.batch_size.value == pytest.approx(2 * float(land.batch_opt(1.6e10)))
    assert rec.batch_size.method == Method.BATCH_NEAREST_BOUND and rec.batch_size.details["at_edge"]
    assert any("smaller batch sizes may be better" in n for n in rec.notes)
    true_lr = float(land.lr_opt(3e8, 1.6e10, rec.batch_size.value))
    assert abs(math.log(rec.lr.value / true_lr)) < math.log(1.25)
    # when that smallest size is one sequence, sweeping smaller sizes is impossible: the note says so
    runs = pd.concat([swept, fixed], ignore_index=True)
    runs["seq_len"] = runs.groupby("D")["batch_size"].transform("min")  # one sequence = the smallest batch
    rec = recommend(runs, {"N": 3e8, "D": 1.6e10}, bootstrap=100, loss_bootstrap=0, select=False)
    assert any("the smallest batch at this sequence length" in n for n in rec.notes)
    assert not any("smaller batch sizes may be better" in n for n in rec.notes)


def test_without_a_batch_law_the_sweep_nearest_the_target_sets_the_batch_size():
    # B* grows with N as well as D (d = 0.4, as small models show): the batch size is swept at a small N and at
    # a larger N at the target's D, too few scales for a law. The nearer sweep's optimum is copied, not the
    # far one's, and the learning rate is predicted at that batch size.
    from scaletune.hparams.recommend import recommend

    land = Landscape(noise=0.0005, g=0.5, d=0.4)
    D = 1.6e10
    far = land.sweep([(1e7, D)], batch_factors=2.0 ** np.arange(1, 5), seed=11)  # optimum below this sweep
    near = land.sweep([(1e8, D)], batch_factors=2.0 ** np.arange(-2, 3), seed=12)
    fixed = land.sweep(
        [(n, d) for n in (1e7, 3e7, 1e8) for d in (1e9, 4e9)], lr_factors=2.0 ** np.arange(-2, 5), batch_factors=(4,), seed=13
    )
    rec = recommend(pd.concat([far, near, fixed], ignore_index=True), {"N": 3e8, "D": D}, bootstrap=100, loss_bootstrap=0)
    assert "batch_D" not in rec.laws.laws
    assert rec.batch_size.method in (Method.BATCH_NEAREST_SWEEP, Method.BATCH_NEAREST_BOUND)
    assert rec.batch_size.details["scale"]["N"] == pytest.approx(1e8)
    assert rec.batch_size.value == pytest.approx(float(land.batch_opt(D, 1e8)), rel=0.15)
    assert rec.batch_size.extrapolation == pytest.approx(3.0)
    true_b = float(land.batch_opt(D, 3e8))
    assert abs(math.log(rec.batch_size.value / true_b)) < 0.6 * abs(math.log(float(land.batch_opt(D, 1e7)) / true_b))
    true_lr = float(land.lr_opt(3e8, D, rec.batch_size.value))
    assert abs(math.log(rec.lr.value / true_lr)) < math.log(1.25)


def test_batch_optimum_growing_with_n_gets_an_n_term():
    # B* ~ N^0.4 D^c, swept at every scale: B*(N, D) is kept (its N exponent's interval covers 0.4, not 0) and
    # recommended; B*(D) alone would be off by (3e8 / N of the ladder)^0.4 at the target.
    from scaletune.hparams.recommend import recommend

    land = Landscape(noise=0.001, d=0.4, k_b=0.58 / 1e7**0.4)  # StepLaw's B* at the smallest N
    runs = land.sweep(LADDER, lr_factors=2.0 ** np.arange(-3, 4), batch_factors=2.0 ** np.arange(-2, 3), seed=3)
    rec = recommend(runs, {"N": 3e8, "D": 3e10}, bootstrap=200, loss_bootstrap=0)
    d, (lo, hi) = rec.laws.laws["batch_ND"].exponents["N"]
    assert lo <= 0.4 <= hi and lo > 0
    assert rec.batch_size.method in (Method.BATCH_ND, Method.BATCH_JOINT_ND)  # the N term kept by held-out loss
    true_b = float(land.batch_opt(3e10, 3e8))
    assert abs(math.log(rec.batch_size.value / true_b)) < math.log(1.3)
    assert rec.batch_size.interval[0] <= true_b <= rec.batch_size.interval[1]
    assert abs(math.log(rec.laws.laws["batch_D"].predict({"D": 3e10}) / true_b)) > math.log(1.5)
    assert abs(math.log(rec.lr.value / float(land.lr_opt(3e8, 3e10, rec.batch_size.value)))) < math.log(1.1)


def test_a_swept_scale_without_a_2d_optimum_enters_the_laws_with_its_slice():
    # The largest scale also sweeps the batch size, on a landscape flat in it: its 2-D fit is not convex (no
    # optimum, lr unbracketed there), but its slice at the ladder's batch size is. It must enter the lr and
    # loss laws with that slice, not drop out (the laws would lose their largest scale).
    from scaletune.hparams.recommend import _batch_slices

    land = Landscape(noise=0.001, c_b=0.0)
    ref, rng, rows = 2.0**20, np.random.default_rng(3), []
    sizes = [(n, d, ref) for n, d in LADDER] + [(*LADDER[-1], b) for b in (2.0**18, 2.0**19)]
    for n, d, b in sizes:
        lrs = float(land.lr_opt(n, d, b)) * 2.0 ** np.arange(-3, 4)
        rows += [dict(N=n, D=d, lr=lr, batch_size=b, loss=float(land.loss(n, d, lr, b, rng)), status="ok") for lr in lrs]
    runs = pd.DataFrame(rows)
    opts = find_optima(runs, bootstrap=100)
    largest = next(o for o in opts if (o.scale["N"], o.scale["D"]) == LADDER[-1])
    assert largest.lr_bracketed is False and "not convex" in largest.message
    laws = fit_hparam_laws(opts, bootstrap=100, loss_bootstrap=20, slices=_batch_slices(runs, band=0.0025, bootstrap=100, seed=0))
    assert laws.laws["lr_ND"].scales == 9 and laws.reference_batch == ref
    assert any("chinchilla on 9 bracketed scales" in n for n in laws.notes)
