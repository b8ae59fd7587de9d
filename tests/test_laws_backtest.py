"""Backtests and the joint extrapolation distance: rolling origin along a scale, errors against distance."""

import numpy as np
import pytest

from laws_helpers import chinchilla_data, run_cli, run_json
from scaletune.errors import ScaletuneError
from scaletune.laws import backtest, fit
from scaletune.laws._calibration import hull_distance, scale_bins
from scaletune.laws.synthetic import isoflop_ladder


def test_point_at_largest_N_and_largest_D_is_outside_an_isoflop_design():
    df = isoflop_ladder(seed=0, budgets=6)
    r = fit("chinchilla", df, bootstrap=0)
    corner = {"N": df.N.max(), "D": df.D.max()}  # each variable inside its own range, C far beyond the data
    for v in ("N", "D"):
        assert r.data_range[v][0] <= corner[v] <= r.data_range[v][1]
    assert r.extrapolation(corner)[0] > 1.0 and r.extrapolation_distance(corner)[0] > 0.5
    assert r.extrapolation({"N": df.N.iloc[3], "D": df.D.iloc[3]})[0] == pytest.approx(1.0)  # a fitted point
    p = r.predict_interval(corner)
    assert p.details["distance"][0] == pytest.approx(np.log(p.extrapolation[0])) and p.method == "point"


def test_distance_off_a_tokens_per_parameter_ladder():
    N = np.logspace(7, 9, 6)
    hull = np.stack([np.log(N), np.log(20 * N)], axis=1)
    # a target at 2 tokens per parameter inside the N range: L-inf distance ln(20/2)/2 from the ladder's line
    d = hull_distance(np.array([[np.log(1e8), np.log(2e8)]]), hull)
    assert d[0] == pytest.approx(np.log(10) / 2, rel=1e-6)
    assert hull_distance(np.array([[np.log(1e8), np.log(2e9)]]), hull)[0] == pytest.approx(0.0, abs=1e-9)


def test_distance_on_a_full_grid_is_the_per_variable_factor():
    r = fit("chinchilla", chinchilla_data(seed=0), bootstrap=0)  # N 1e7..1e10 x D 1e9..1e12: the hull is the box
    np.testing.assert_allclose(r.extrapolation({"N": [7e10, 1e9, 1e6], "D": [1.4e12, 2e10, 5e8]}), [7.0, 1.0, 10.0])


def test_scale_bins_use_repeated_budgets_or_equal_width_bins():
    bins, how = scale_bins(np.repeat([1e18, 2e18, 4e18], 5))
    assert bins.tolist() == [0] * 5 + [1] * 5 + [2] * 5 and how.startswith("3 distinct")
    bins, _ = scale_bins(np.logspace(17, 22, 40))  # all distinct: 10 equal-width bins of ln C
    assert bins.max() == 9 and np.all(np.diff(bins) >= 0)


def test_backtest_records_every_fold_and_point():
    df = isoflop_ladder(seed=1, budgets=8)
    bt = backtest("chinchilla", df, intervals="bootstrap", bootstrap=15, seed=0)
    assert bt.by == "C" and [f["fold"] for f in bt.folds] == [4, 5, 6, 7]  # first origin keeps half of the 8 budgets
    pts = bt.points()
    assert len(pts) == sum(8 - f["fold"] for f in bt.folds) * 7  # horizon "all": every budget beyond the origin
    np.testing.assert_allclose(pts.rel_error, pts.predicted / pts.observed - 1)
    assert np.all(pts.distance > 0) and np.all((pts.lo < pts.value) & (pts.value < pts.hi))
    assert set(pts.covered) <= {True, False}
    # errors are reported against the distance: farther budgets of one fold are farther out
    first = pts[pts.fold == 4].groupby("scale").distance.mean()
    assert np.all(np.diff(first.to_numpy()) > 0)
    assert repr(bt) == (
        f"BacktestResult(chinchilla along C, 4 folds, {len(pts)} held-out points, bootstrap intervals, 95% coverage {bt.coverage():.0%})"
    )
    nxt = backtest("chinchilla", df, intervals="none", horizon="next")
    assert len(nxt.points()) == 4 * 7 and nxt.coverage() is None
    assert {s["fold"] for s in nxt.summary()} == {4, 5, 6, 7}


def test_backtest_errors():
    df = isoflop_ladder(seed=0, budgets=3)
    with pytest.raises(ScaletuneError, match="too few scales for a backtest"):
        backtest("chinchilla", df)
    with pytest.raises(ScaletuneError, match="no column 'Q'"):
        backtest("chinchilla", isoflop_ladder(seed=0), by="Q")
    with pytest.raises(ScaletuneError, match="unknown backtest horizon"):
        backtest("chinchilla", isoflop_ladder(seed=0), horizon="later")


def test_backtest_command_and_fit_backtest(capsys, tmp_path):
    path = tmp_path / "ladder.csv"
    isoflop_ladder(seed=2, budgets=7).to_csv(path, index=False)
    doc = run_json(capsys, "backtest", path, "--law", "chinchilla", "--intervals", "none")
    assert doc["by"] == "C" and doc["coverage"] is None
    assert [s["fold"] for s in doc["summary"]] == [4, 5, 6]
    assert all(r["distance"] > 0 and r["extrapolation"] > 1 for r in doc["records"])
    code, out, err = run_cli(capsys, "backtest", path, "--law", "chinchilla", "--by", "N", "--bootstrap", "10", "--intervals", "bootstrap")
    assert code == 0, err and "per fold" in out
    doc = run_json(capsys, "fit", path, "--law", "chinchilla", "--bootstrap", "10", "--intervals", "bootstrap", "--backtest")
    assert doc["backtest"]["by"] == "C" and len(doc["backtest"]["folds"]) == 3 and doc["calibration"] is None
    code, _, err = run_cli(capsys, "backtest", path, "--law", "chinchilla", "--by", "Q")
    assert code == 2 and "no column 'Q'" in err and len(err.strip().splitlines()) == 1
