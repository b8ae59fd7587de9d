"""Optimum per scale: known convex landscapes with noise, bracketing, diverged runs, the band."""

import math

import numpy as np
import pandas as pd
import pytest

from scaletune.errors import ScaletuneError
from scaletune.hparams.optimum import find_optima, find_optimum, optima_frame
from scaletune.hparams.synthetic import Landscape

GRID = 2.0 ** np.arange(-3, 4)  # 7 rates spaced by 2x around the true optimum
SCALE = (3e7, 3e9)


def test_vertex_recovers_the_true_optimum_between_grid_points():
    land = Landscape(noise=0.001)
    # Shift the grid by 2^0.4 so the optimum is between grid points: the argmin would be 32% off.
    runs = land.sweep([SCALE], lr_factors=GRID, seeds=2, seed=3, shift=2**0.4)
    opt = find_optimum(runs, bootstrap=200, seed=0)
    true = float(land.lr_opt(*SCALE))
    assert opt.bracketed and opt.message == "bracketed"
    assert abs(math.log(opt.lr_ / true)) < math.log(1.12)
    assert abs(math.log(opt.best_lr / true)) > math.log(1.25)  # the coarse argmin is worse
    assert opt.lr_interval[0] <= true <= opt.lr_interval[1]
    assert opt.lr_interval[1] / opt.lr_interval[0] < 1.6
    assert opt.loss_interval[0] <= opt.loss_ <= opt.loss_interval[1]
    assert abs(opt.loss_ - float(land.loss_opt(*SCALE))) < 0.01


def test_interval_coverage_over_simulated_sweeps():
    land = Landscape(noise=0.002)
    true = float(land.lr_opt(*SCALE))
    covered = 0
    for rep in range(30):
        runs = land.sweep([SCALE], lr_factors=GRID, seeds=2, seed=100 + rep, shift=2 ** (rep % 5 / 5 - 0.4))
        opt = find_optimum(runs, bootstrap=150, seed=rep)
        covered += opt.lr_interval[0] <= true <= opt.lr_interval[1]
    assert covered >= 24  # nominal 95%; at least 80% of 30


def test_two_dimensional_fit_recovers_lr_and_batch():
    land = Landscape(noise=0.0005)
    runs = land.sweep([SCALE], lr_factors=GRID, batch_factors=2.0 ** np.arange(-2, 3), seed=1, shift=1.3)
    opt = find_optimum(runs, bootstrap=100)
    assert opt.bracketed
    assert abs(math.log(opt.lr_ / float(land.lr_opt(*SCALE)))) < math.log(1.15)
    assert abs(math.log(opt.batch_size_ / float(land.batch_opt(SCALE[1])))) < math.log(1.3)
    lo, hi = opt.batch_size_interval
    assert lo <= opt.batch_size_ <= hi


def test_unbracketed_minimum_is_reported_with_next_rates():
    land = Landscape(noise=0.0005)
    runs = land.sweep([SCALE], lr_factors=2.0 ** np.arange(-7, -1), seed=2)  # every rate too small
    opt = find_optimum(runs, bootstrap=50)
    top = runs["lr"].max()
    assert not opt.bracketed
    assert "top of the sweep" in opt.message
    assert opt.lr_ == pytest.approx(top)  # the flagged fallback is the best tested rate, not an extrapolated vertex
    assert len(opt.next_lrs) == 3 and opt.next_lrs[0] == pytest.approx(2 * top)
    low = find_optimum(Landscape(diverge=1e9).sweep([SCALE], lr_factors=2.0 ** np.arange(2, 8), seed=2), bootstrap=0)
    assert not low.bracketed and "bottom" in low.message and max(low.next_lrs) < low.best_lr


def test_stability_edge_proposes_rates_towards_the_first_diverged_one():
    land = Landscape(noise=0.0005, diverge=1.5)
    runs = land.sweep([SCALE], lr_factors=2.0 ** np.arange(-4, 3), seed=1, shift=2)
    opt = find_optimum(runs, bootstrap=0)
    assert not opt.bracketed and "stability edge" in opt.message
    first_bad = runs.loc[runs.status == "diverged", "lr"].min()
    assert all(opt.best_lr < r < first_bad for r in opt.next_lrs)
    assert opt.n_excluded == (runs.status == "diverged").sum()


def test_diverged_and_failed_runs_are_never_fitted():
    land = Landscape(noise=0.001)
    runs = land.sweep([SCALE], lr_factors=GRID, seeds=2, seed=5)
    clean = find_optimum(runs, bootstrap=50, seed=1)
    junk = runs.iloc[:4].copy()
    junk["loss"] = [50.0, 0.01, np.nan, 7.0]
    junk["status"] = ["diverged", "failed", "diverged", "pruned"]
    dirty = find_optimum(pd.concat([runs, junk]), bootstrap=50, seed=1)
    assert dirty.lr_ == pytest.approx(clean.lr_) and dirty.loss_ == pytest.approx(clean.loss_)
    assert dirty.lr_interval == pytest.approx(clean.lr_interval)
    assert dirty.n_excluded == 4 and dirty.n_ok == clean.n_ok


def test_near_optimal_band_widens_with_the_tolerance():
    land = Landscape(noise=0.0)
    runs = land.sweep([SCALE], lr_factors=2.0 ** np.arange(-3, 3.5, 0.5), seed=0)
    narrow = find_optimum(runs, band=0.0, bootstrap=0)
    wide = find_optimum(runs, band=0.0025, bootstrap=0)
    wider = find_optimum(runs, band=0.01, bootstrap=0)
    true = float(land.lr_opt(*SCALE))
    assert narrow.band_lr[0] == narrow.band_lr[1] == pytest.approx(true)
    assert wide.band_lr[0] < true < wide.band_lr[1]
    assert wider.band_lr[0] < wide.band_lr[0] and wider.band_lr[1] > wide.band_lr[1]
    # On a noiseless quadratic every point within 0.25% is in the band: ln ratio^2 * c <= 0.0025 * loss.
    half = math.sqrt(0.0025 * narrow.loss_ / land.c_lr)
    assert math.log(wide.band_lr[1] / true) <= half + 1e-9


def test_find_optima_groups_by_scale_and_skips_thin_scales():
    land = Landscape(noise=0.001)
    scales = [(1e7, 1e9), (3e7, 3e9), (1e8, 1e10)]
    runs = land.sweep(scales, lr_factors=GRID, seed=4)
    thin = pd.DataFrame(dict(N=[5e8, 5e8], D=[5e10, 5e10], lr=[1e-3, 2e-3], batch_size=1e5, loss=[3.0, 3.1], status="ok"))
    optima = find_optima(pd.concat([runs, thin]), bootstrap=40)
    assert [o.scale["N"] for o in optima] == [1e7, 3e7, 1e8]
    frame = optima_frame(optima)
    assert list(frame["N"]) == [1e7, 3e7, 1e8]
    truth = land.lr_opt(frame["N"], frame["D"])
    assert np.all(np.abs(np.log(frame["lr"] / truth)) < math.log(1.2))
    assert (frame["lr_lo"] <= frame["lr"]).all() and (frame["lr"] <= frame["lr_hi"]).all()


def test_bad_input_names_the_problem():
    with pytest.raises(ScaletuneError, match="3 or more distinct learning rates"):
        find_optimum(pd.DataFrame(dict(lr=[1e-3, 2e-3], loss=[3.0, 2.9], status="ok")))
    with pytest.raises(ScaletuneError, match="missing column 'loss'"):
        find_optimum(pd.DataFrame(dict(lr=[1e-3, 2e-3, 4e-3])))
    with pytest.raises(ScaletuneError, match="non-positive or missing value"):
        find_optimum(pd.DataFrame(dict(lr=[1e-3, -2e-3, 4e-3], loss=[3.0, 2.9, 3.1])))
    with pytest.raises(ScaletuneError, match="band"):
        find_optimum(pd.DataFrame(dict(lr=[1e-3, 2e-3, 4e-3], loss=[3.0, 2.9, 3.1])), band=2)


def test_scattered_samples_like_a_qmc_study():
    # Random (lr, batch) samples instead of a grid, as the random / QMC / scale-aware strategies produce.
    land = Landscape(noise=0.001)
    rng = np.random.default_rng(0)
    hits = 0
    for _ in range(10):
        lr = float(land.lr_opt(*SCALE)) * np.exp(rng.uniform(np.log(1 / 8), np.log(8), 32))
        bs = float(land.batch_opt(SCALE[1])) * np.exp(rng.uniform(np.log(1 / 4), np.log(4), 32))
        runs = pd.DataFrame(dict(lr=lr, batch_size=bs, loss=land.loss(*SCALE, lr, bs, rng), status="ok"))
        opt = find_optimum(runs, bootstrap=60)
        hits += opt.bracketed and abs(math.log(opt.lr_ / float(land.lr_opt(*SCALE)))) < math.log(1.15)
    assert hits >= 8


def test_batch_swept_too_narrowly_keeps_the_lr_optimum_usable():
    land = Landscape(noise=0.0005)
    # Batch sizes 4x..16x above the optimum: the batch axis is open at the bottom, the lr axis is not.
    runs = land.sweep([SCALE], lr_factors=GRID, batch_factors=(4.0, 8.0, 16.0), seed=2)
    opt = find_optimum(runs, bootstrap=60)
    assert not opt.bracketed and opt.batch_bracketed is False and opt.lr_bracketed
    assert opt.usable("lr") and not opt.usable("batch_size")
    assert opt.best_batch_size == pytest.approx(4 * float(land.batch_opt(SCALE[1])))
    assert max(opt.next_batch_sizes) < opt.best_batch_size
    # The lr comes from the 1-D fit at the best batch size: near the truth (the landscape is separable).
    assert abs(math.log(opt.lr_ / float(land.lr_opt(*SCALE)))) < math.log(1.15)
    assert opt.lr_interval[0] <= opt.lr_ <= opt.lr_interval[1]
