"""Model selection by held-out loss, the joint landscape (asymmetry, censoring), and the recommendation's
stages: known landscapes where the truth is known."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from scaletune.hparams import recommend
from scaletune.hparams.landscape import fit_landscape
from scaletune.hparams.laws import Method
from scaletune.hparams.select import analyse_sweep, hull_distance
from scaletune.hparams.synthetic import Landscape

LADDER = [(n, d) for n in (1e7, 3e7, 1e8) for d in (1e9, 4e9, 1.6e10)]
N_FORMS = (Method.BATCH_ND, Method.BATCH_JOINT_ND)


@pytest.mark.parametrize("d", [0.0, 0.4])
def test_an_n_term_of_the_batch_optimum_is_kept_only_when_real(d):
    # B* ~ N^d D^c swept at every scale (one seed, 0.1% noise): with d = 0 any N exponent is noise-made and
    # must lose (or tie and be dropped for the simpler form) on the held-out largest scales; with d = 0.4 it
    # must win.
    land = Landscape(noise=0.001, d=d, k_b=0.58 / 1e7**d, g=0.3)
    runs = land.sweep(LADDER, lr_factors=2.0 ** np.arange(-3, 4), batch_factors=2.0 ** np.arange(-2, 3), seed=2)
    a = analyse_sweep(runs, bootstrap=100, loss_bootstrap=0)
    chosen = a.chosen("batch_size")
    assert (chosen in N_FORMS) == (d > 0), chosen
    scores = {c.method: c.score for c in a.candidates if c.role == "batch_size"}
    if d > 0:  # the N-free forms pay for the missing term in loss
        assert min(scores[Method.BATCH_ND], scores[Method.BATCH_JOINT_ND]) < scores[Method.BATCH_D]
    # two folds: the largest compute held out, then the second largest (rolling origin)
    assert len(a.folds) == 2 and a.folds[0]["train_scales"] == 8 and a.folds[1]["train_scales"] < 8


def test_selection_output_structure_and_warmup_not_in_the_runs():
    land = Landscape(noise=0.001)
    runs = land.sweep(LADDER[:6] + [(1e8, 1e9)], lr_factors=2.0 ** np.arange(-3, 4), seed=3)
    runs["batch_size"] = 2.0**20  # one batch size, not swept
    rec = recommend(runs, {"N": 3e8, "D": 4e9}, bootstrap=100, loss_bootstrap=40)
    doc = json.loads(json.dumps(rec.to_dict(), default=str))
    cands = doc["candidates"]
    assert {c["role"] for c in cands} == {"lr", "loss"}  # no held-out scale swept the batch size
    for c in cands:
        assert set(c) >= {"role", "name", "form", "score", "penalty", "chosen"}
        assert len(c["penalty"]) == len(doc["selection"]["folds"])
    for role in ("lr", "loss"):
        assert sum(c["chosen"] for c in cands if c["role"] == role) == 1
    assert rec.lr.method.name == next(c["name"] for c in cands if c["role"] == "lr" and c["chosen"])
    assert rec.batch_size.method == Method.BATCH_AS_PROXIES
    # no warmup / schedule columns: not recommended, said to be absent (not "0 steps")
    assert rec.warmup["steps"] is None and rec.warmup["method"] == Method.NOT_IN_RUNS.name
    assert rec.schedule == Method.NOT_IN_RUNS.value


def test_joint_landscape_recovers_asymmetry_and_counts_censored_scales():
    # Curvature 3x steeper above the optimal rate, and two scales of the largest N swept with rates all below
    # their optimum (the per-scale fit calls them unbracketed): they enter censored, counted, not dropped.
    land = Landscape(noise=0.001, asym=3.0)
    runs = land.sweep(LADDER[:6] + LADDER[7:8], lr_factors=2.0 ** np.arange(-3, 4), seed=4)
    edge = land.sweep([LADDER[6], LADDER[8]], lr_factors=2.0 ** np.arange(-6, 0), seed=5)  # optimum above the top
    import pandas as pd

    fit = fit_landscape(pd.concat([runs, edge], ignore_index=True))
    assert len(fit.scales) == 9 and fit.censored == 2
    assert {(s["N"], s["D"]) for s in fit.scales if s["edge"]} == {LADDER[6], LADDER[8]}
    t = dict(zip(fit.names, fit.params))
    assert abs(t["t_N"] - land.a) < 0.03 and abs(t["t_D"] - land.b) < 0.03
    assert 2.2 < fit.asymmetry < 4.0
    # the optimum losses carry standard errors and sit on the true ones (no winner's curse: within 3 SE)
    for s in fit.scales:
        assert abs(s["L"] - float(land.loss_opt(s["N"], s["D"]))) < 3 * s["L_se"] + 1e-4


def test_a_target_off_the_ladders_tokens_per_parameter_is_an_extrapolation():
    # A 20-tokens-per-parameter ladder, target at 2 tokens per parameter inside the ladder's N and D ranges:
    # per variable it is "inside" (factor 1); jointly it is ln(10)/sqrt(2) away from the ladder's line.
    ladder = np.log([[n, 20 * n] for n in (1e7, 2e7, 4e7, 8e7, 1.6e8)])
    t = np.log([1.6e8, 3.2e8])
    assert hull_distance(ladder, t) == pytest.approx(math.log(10) / math.sqrt(2), rel=1e-6)
    assert hull_distance(ladder, ladder[2]) == pytest.approx(0, abs=1e-9)
    grid = np.log([[n, d] for n, d in LADDER])
    assert hull_distance(grid, np.log([1e9, 1.6e10])) == pytest.approx(math.log(10), rel=1e-6)
    land = Landscape(noise=0.001)
    runs = land.sweep([(n, 20 * n) for n in (1e7, 2e7, 4e7, 8e7, 1.6e8)], seed=6)
    rec = recommend(runs, {"N": 1.6e8, "D": 3.2e8}, bootstrap=100, loss_bootstrap=60)
    assert rec.lr.extrapolation == pytest.approx(10 ** (1 / math.sqrt(2)), rel=1e-6)
    assert rec.loss.extrapolation == pytest.approx(rec.lr.extrapolation)
    # the loss interval is widened by the backtest's error per unit distance, times this distance
    assert rec.loss.details["widening"] > 0
    on = recommend(runs, {"N": 1.6e8, "D": 3.2e9}, bootstrap=100, loss_bootstrap=60, analysis=rec.analysis)
    assert on.loss.details["widening"] == 0 and on.lr.extrapolation == pytest.approx(1.0)
    assert rec.loss.interval[1] - rec.loss.interval[0] > on.loss.interval[1] - on.loss.interval[0]
