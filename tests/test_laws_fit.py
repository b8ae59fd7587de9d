"""Fitting engine: recovery of known laws, agreement with brute force, bootstrap, holdout, JSON, user laws."""

import dataclasses
import itertools
import json

import numpy as np
import pytest
from scipy.optimize import minimize
from threadpoolctl import threadpool_limits

from laws_helpers import CHINCHILLA_TRUE, chinchilla_data
from scaletune.errors import ScaletuneError
from scaletune.laws import FitResult, Law, fit, get_law, register_law
from scaletune.laws.fitting import _Problem, batched_nnls
from scaletune.laws.objectives import get_objective
from scaletune.results import Fit, Prediction


def test_batched_nnls_matches_scipy_nnls():
    from scipy.optimize import nnls

    rng = np.random.default_rng(0)
    M = rng.normal(size=(50, 3, 30))
    t = rng.normal(size=30)
    c, rss = batched_nnls(M, t)
    for g in range(50):
        ref, rnorm = nnls(M[g].T, t)
        np.testing.assert_allclose(c[g], ref, atol=1e-8)
        np.testing.assert_allclose(rss[g], rnorm**2, rtol=1e-7, atol=1e-10)


def test_chinchilla_recovery_within_intervals():
    df = chinchilla_data(seed=3, noise=0.005)
    r = fit("chinchilla", df, bootstrap=100, seed=0)
    assert r.diagnostics["converged"] and not r.diagnostics["at_bound"]
    for name, true in CHINCHILLA_TRUE.items():
        lo, hi = r.intervals[name]
        assert lo <= true <= hi, (name, true, lo, hi)
    # derived quantities carry intervals too: the allocation exponent a = beta / (alpha + beta)
    a_true = 0.2849 / (0.3392 + 0.2849)
    assert r.intervals["a_N"][0] <= a_true <= r.intervals["a_N"][1]
    assert abs(r.derived_["a_N"] - a_true) < 0.02


def test_projection_fit_matches_brute_force_multistart():
    """The main fit reaches the optimum of L-BFGS-B started from every point of a literature-style grid."""
    df = chinchilla_data(seed=5, noise=0.02)
    r = fit("chinchilla", df, bootstrap=0)
    law = get_law("chinchilla")
    prob = _Problem(law, {"N": df.N.to_numpy(), "D": df.D.to_numpy()}, df.loss.to_numpy(), get_objective("huber"), {})
    grid = itertools.product([0, 10, 20], [0, 10, 20], [-1, 0, 1], [0, 0.5, 1, 1.5], [0, 0.5, 1, 1.5])
    with threadpool_limits(1, user_api="blas"):
        best = min(
            minimize(prob.value_and_grad, np.array(s, float), jac=True, method="L-BFGS-B", bounds=prob.bounds_array()).fun for s in grid
        )
    assert r.diagnostics["objective_value"] <= best * (1 + 1e-6)


def test_bootstrap_is_seeded_and_independent_of_workers():
    df = chinchilla_data(seed=1, n_sizes=5, n_tokens=6)
    a = fit("chinchilla", df, bootstrap=24, seed=7, workers=1)
    b = fit("chinchilla", df, bootstrap=24, seed=7, workers=2)
    c = fit("chinchilla", df, bootstrap=24, seed=8, workers=1)
    np.testing.assert_allclose(a.bootstrap_params, b.bootstrap_params, rtol=1e-9)
    assert a.intervals == b.intervals
    assert not np.allclose(a.bootstrap_params, c.bootstrap_params)


def test_grouped_bootstrap_resamples_whole_groups():
    df = chinchilla_data(seed=2, n_sizes=6, n_tokens=5)
    r = fit("chinchilla", df, bootstrap=30, seed=0, groups="N", workers=1)
    assert r.diagnostics["bootstrap"]["groups"] == 6
    # resampling 6 model sizes loses sizes: some resamples have a single size and are counted as failed or
    # the intervals widen compared with resampling 30 rows
    per_row = fit("chinchilla", df, bootstrap=30, seed=0, workers=1)
    width = lambda res: res.intervals["alpha"][1] - res.intervals["alpha"][0]  # noqa: E731
    assert width(r) > width(per_row)


@pytest.mark.parametrize(
    "spec,truth,variables",
    [
        ("compute", {"a": np.log(2e3), "e": np.log(1.8), "alpha": 0.15}, {"C": np.logspace(17, 22, 30)}),
        ("offset_powerlaw:steps", {"a": np.log(30.0), "e": np.log(2.5), "alpha": 0.4}, {"steps": np.logspace(2, 5, 30)}),
        ("critical_batch", {"log_B": np.log(2e8), "alpha_B": 0.21}, {"loss": np.linspace(2.0, 5.0, 30)}),
        (
            "overtrained",
            {"a": 400.0, "b": -0.3, "c": 900.0, "E": 1.8},
            {"N": np.repeat(np.logspace(7, 9, 6), 5), "M": np.tile([5.0, 10, 20, 80, 320], 6)},
        ),
        (
            "powerlaw:N,D",
            {"log_k": np.log(1.79), "c_N": -0.713, "c_D": 0.307},
            {"N": np.repeat(np.logspace(7, 9, 6), 5), "D": np.tile(np.logspace(9, 11, 5), 6)},
        ),
    ],
)
def test_catalogue_laws_recover_noise_free_parameters(spec, truth, variables):
    law = get_law(spec)
    y = law.predict(truth, variables)
    r = fit(law, {**variables, law.response: y}, bootstrap=0)
    for name, value in truth.items():
        assert r.params_[name] == pytest.approx(value, rel=1e-3, abs=1e-4), name


def test_powerlaw_any_variables_with_intervals():
    rng = np.random.default_rng(4)
    D = np.logspace(9, 12, 40)
    B = 0.58 * D**0.571 * np.exp(rng.normal(0, 0.05, D.size))
    r = fit("powerlaw:D", {"D": D, "batch_size": B}, y="batch_size", bootstrap=200, seed=0)
    lo, hi = r.intervals["c_D"]
    assert lo < 0.571 < hi and hi - lo < 0.05
    assert r.predict({"D": 1e13})[0] == pytest.approx(r.derived_["k"] * 1e13 ** r.params_["c_D"], rel=1e-12)
    assert get_law("powerlaw", variables=["lr", "C"]).params == ("log_k", "c_lr", "c_C")


def test_weights_change_the_fit_towards_heavy_points():
    x = np.logspace(0, 3, 20)
    y = 2.0 * x**0.5
    y[-1] *= 1.5  # one outlier
    w = np.ones(20)
    w[-1] = 1e4
    plain = fit("powerlaw:x", {"x": x, "y": y}, y="y", objective="mse_log", bootstrap=0)
    heavy = fit("powerlaw:x", {"x": x, "y": y}, y="y", objective="mse_log", weights=w, bootstrap=0)
    assert abs(heavy.predict({"x": x[-1]})[0] / y[-1] - 1) < abs(plain.predict({"x": x[-1]})[0] / y[-1] - 1) / 5


def test_lower_envelope_objective_follows_the_best_runs():
    rng = np.random.default_rng(0)
    C = np.repeat(np.logspace(18, 21, 10), 4)
    best = get_law("compute").predict({"a": np.log(2e3), "e": np.log(1.8), "alpha": 0.15}, {"C": C})
    loss = best * np.exp(np.abs(rng.normal(0, 0.03, C.size)))  # badly tuned runs only ever lose
    loss[::4] = best[::4]
    envelope = fit("compute", {"C": C, "loss": loss}, objective="lower_envelope", bootstrap=0)
    huber = fit("compute", {"C": C, "loss": loss}, bootstrap=0)
    err = lambda r: np.abs(np.log(r.predict({"C": C}) / best)).mean()  # noqa: E731
    assert err(envelope) < err(huber)


def test_holdout_reports_each_point_and_coverage():
    df = chinchilla_data(seed=9, noise=0.005)
    r = fit("chinchilla", df, bootstrap=60, seed=0, holdout="largest(N,1)", workers=1)
    h = r.holdout
    assert h["n"] == 8 and r.diagnostics["n_points"] == 56
    assert all(p["extrapolation"] > 1 for p in h["points"])  # N beyond the fitted range
    assert h["mean_abs_relative_error"] < 0.03
    assert 0.0 <= h["coverage"] <= 1.0 and all("covered" in p for p in h["points"])
    r2 = fit("chinchilla", df, holdout="C>=1e21 and N<1e10", bootstrap=0)
    assert r2.holdout["n"] == int(((df.C >= 1e21) & (df.N < 1e10)).sum())


def test_prediction_interval_extrapolation_and_json_round_trip():
    df = chinchilla_data(seed=11)
    r = fit("chinchilla", df, bootstrap=40, seed=0, intervals="bootstrap")
    x = {"N": [1e9, 7e10], "D": [2e10, 1.4e12]}
    p = r.predict_interval(x)
    pred = r.predict(x)
    assert isinstance(r, Fit) and isinstance(p, Prediction) and p.method == "bootstrap" and p.level == 0.95 and len(p) == 2
    np.testing.assert_array_equal(p.value, pred)  # a bootstrap interval's value is the law itself
    assert np.all(p.lo <= pred) and np.all(pred <= p.hi) and np.all(p.hi - p.lo > 0)
    np.testing.assert_allclose(r.extrapolation(x), [1.0, 7.0])
    np.testing.assert_allclose(p.extrapolation, [1.0, 7.0])
    np.testing.assert_allclose(p.details["distance"], np.log([1.0, 7.0]), atol=1e-12)
    assert p[1].lo == pytest.approx(float(p.lo[1])) and r.predict_interval(x, level=0.5).level == 0.5
    back = FitResult.from_json(r.to_json())
    np.testing.assert_allclose(back.predict(x), pred, rtol=1e-12)
    np.testing.assert_allclose(back.predict_interval(x).interval, p.interval, rtol=1e-12)
    assert back.intervals == r.intervals and back.data_hash == r.data_hash


def test_point_fit_predicts_without_an_interval():
    r = fit("chinchilla", chinchilla_data(seed=0), bootstrap=0)
    p = r.predict_interval({"N": [1e9], "D": [2e10]})
    assert p.method == "point" and np.isnan(p.lo[0]) and np.isnan(p.hi[0]) and p.value[0] == r.predict({"N": 1e9, "D": 2e10})[0]
    with pytest.raises(ScaletuneError) as exc:
        r.predict_samples({"N": 1e9, "D": 2e10})
    assert exc.value.hint and "--" not in str(exc.value)  # a library message names no command-line flag


def test_default_fit_has_bootstrap_intervals():
    r = fit(
        "powerlaw:N,D",
        {"N": np.repeat(np.logspace(7, 9, 5), 4), "D": np.tile(np.logspace(9, 11, 4), 5), "lr": np.linspace(1e-3, 2e-3, 20)},
        y="lr",
        objective="mse_log",
        intervals="bootstrap",
    )
    assert r.diagnostics["bootstrap"]["samples"] == 200 and len(r.bootstrap_params) == 200
    assert r.predict_interval({"N": 1e8, "D": 1e10}).method == "bootstrap"


def test_repr_is_one_short_line_and_summary_is_a_table():
    r = fit(
        "chinchilla", chinchilla_data(seed=3, noise=0.005), bootstrap=30, seed=0, intervals="bootstrap", workers=1, holdout="largest(N,1)"
    )
    text = repr(r)
    assert "\n" not in text and len(text) <= 140 and text.startswith("FitResult(chinchilla, 56 points, huber")
    lo, hi = r.intervals["a"]
    assert f"a={r.params_['a']:.3g} [{lo:.3g}, {hi:.3g}]" in text
    table = r.summary().splitlines()
    assert max(len(line) for line in table) <= 80
    rows = {line.split()[0]: line.split()[1:] for line in table if line.split() and line.split()[0] in {*r.params_, *r.derived_}}
    assert set(rows) == {*r.params_, *r.derived_}
    for name, cells in rows.items():
        assert float(cells[0]) == pytest.approx(r.params_.get(name, r.derived_.get(name)), rel=1e-3)
        lo, hi = r.intervals[name]
        assert cells[1:] == [f"[{lo:.4g},", f"{hi:.4g}]"]
    held = [line for line in table if line.startswith("held out (largest(N,1)): 8 points")]
    assert len(held) == 1 and f"{r.holdout['mean_abs_relative_error']:.3g}" in held[0]


def test_json_is_strict_and_nan_round_trips_as_nan():
    r = fit(
        "compute",
        {"C": np.logspace(18, 21, 12), "loss": 2.0 + np.logspace(1, 0, 12)},
        bootstrap=5,
        seed=0,
        intervals="bootstrap",
        workers=1,
    )
    diagnostics = {**r.diagnostics, "residual_std_log": float("nan")}
    samples = r.bootstrap_params.copy()
    samples[0, 1] = np.nan  # a failed replicate
    r = dataclasses.replace(r, diagnostics=diagnostics, bootstrap_params=samples)

    def no_constants(name):
        raise ValueError(name)

    doc = json.loads(r.to_json(), parse_constant=no_constants)  # strict JSON: no NaN / Infinity literals
    assert doc["diagnostics"]["residual_std_log"] is None and doc["bootstrap_params"][0][1] is None
    back = FitResult.from_json(r.to_json())
    assert np.isnan(back.diagnostics["residual_std_log"]) and np.isnan(back.bootstrap_params[0, 1])
    np.testing.assert_array_equal(back.bootstrap_params[1:], samples[1:])
    # files written before the strict policy (NaN literals) still load
    old = json.dumps(r.to_dict() | {"bootstrap_params": samples.tolist(), "diagnostics": diagnostics}, allow_nan=True)
    assert "NaN" in old and np.isnan(FitResult.from_json(old).bootstrap_params[0, 1])


def test_diagnostics_flag_irreducible_loss_above_data():
    C = np.logspace(18, 21, 30)
    loss = get_law("compute").predict({"a": np.log(2e3), "e": np.log(2.0), "alpha": 0.15}, {"C": C})
    loss[10] = 1.5  # one run below the floor the others imply: the robust (Huber) fit keeps E near 2
    d = fit("compute", {"C": C, "loss": loss}, bootstrap=0).diagnostics
    assert d["E_above_min_observed"] and any("irreducible" in w for w in d["warnings"])
    assert d["converged"] and d["n_points"] == 30 and d["n_scales"] == {"C": 30}
    assert d["residual_max_abs_log"] > np.log(2.0 / 1.5)


def test_user_registered_law_without_gradient():
    law = Law(
        name="test_saturating",
        variables=("x",),
        params=("E", "A", "alpha"),
        formula="y = E + A x^-alpha",
        model=lambda p, x: p["E"] + p["A"] * x["x"] ** -p["alpha"],
        bounds={"E": (0.0, 10.0), "A": (0.0, 1e4), "alpha": (0.0, 3.0)},
        start={"E": [1.0, 2.0], "A": [10.0, 100.0], "alpha": [0.2, 0.6]},
    )
    register_law(law, replace=True)
    x = np.logspace(0, 4, 25)
    r = fit("test_saturating", {"x": x, "loss": 1.5 + 40 * x**-0.5}, bootstrap=0)
    assert r.params_["alpha"] == pytest.approx(0.5, rel=1e-3)
    with pytest.raises(ScaletuneError, match="already exists"):
        register_law(law)


def test_fixed_parameters_and_fit_errors():
    df = chinchilla_data(seed=0)
    r = fit("chinchilla", df, fixed={"alpha": 0.3392, "beta": 0.2849}, bootstrap=0)
    assert r.params_["alpha"] == 0.3392 and "alpha" not in r.intervals
    with pytest.raises(ScaletuneError, match="no parameter 'gamma'"):
        fit("chinchilla", df, fixed={"gamma": 1.0})
    with pytest.raises(ScaletuneError, match="unknown law"):
        fit("chinchila", df)
    with pytest.raises(ScaletuneError, match="missing column 'D'"):
        fit("chinchilla", df.drop(columns="D"))
    with pytest.raises(ScaletuneError, match="need more points than parameters"):
        fit("chinchilla", df.iloc[:5])
    with pytest.raises(ScaletuneError, match="one single value"):
        fit("chinchilla", df[df.N == df.N.iloc[0]])
    bad = df.copy()
    bad.loc[3, "loss"] = np.nan
    with pytest.raises(ScaletuneError, match="column 'loss' has a missing or non-numeric value"):
        fit("chinchilla", bad)
    with pytest.raises(ScaletuneError, match="cannot parse holdout"):
        fit("chinchilla", df, holdout="N >> 3")


def test_observation_interval_adds_the_residual_spread():
    df = chinchilla_data(seed=12, noise=0.02)
    r = fit("chinchilla", df, bootstrap=40, seed=0, workers=1)
    x = {"N": [3e8], "D": [3e10]}
    lo, hi = r.predict_interval(x).interval
    olo, ohi = r.predict_interval(x, observation=True).interval
    assert olo[0] < lo[0] and ohi[0] > hi[0]
    # a new measurement with 2% noise: the observation interval spans roughly +-2 sigma
    assert 0.05 < np.log(ohi[0] / olo[0]) < 0.12
    assert FitResult.from_json(r.to_json()).predict_interval(x, observation=True).lo[0] == pytest.approx(olo[0])
