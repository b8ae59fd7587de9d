"""The curves package's shared vocabulary and extension points: registrable laws (fitted end to end, from
Python and from the CLI), CurvePrediction as a `Prediction`, the fit protocol, short repr and summary, JSON."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from scaletune._json import dumps
from scaletune.cli import main
from scaletune.curves import (
    CurveFit,
    CurveLaw,
    CurvePrediction,
    curve_from_arrays,
    curve_laws,
    fit_curves,
    get_curve_law,
    register_curve_law,
)
from scaletune.curves import laws as laws_module
from scaletune.curves.laws import prepare
from scaletune.errors import ScaletuneError
from scaletune.results import Fit, Prediction
from scaletune.schedules import read_schedule
from test_curves import DATA, SPECS, load

THETA = np.array([2.8, 0.9, 0.45])  # L0, A, alpha of the custom law's synthetic curves
SCHEDULES = ["constant:steps=2000,lr=1e-3,warmup=100", "cosine:steps=2000,lr=1e-3,warmup=100,final=0.1"]


def area_power(theta, prep, options, want_jac=True):
    """L0 + A S(t)^-alpha: a power law in the learning-rate area (3 parameters)."""
    L0, A, alpha = theta
    u = prep.area**-alpha
    jac = np.column_stack([np.ones_like(u), u, -A * u * np.log(prep.area)]) if want_jac else None
    return L0 + A * u, jac


AREA_POWER = CurveLaw(
    "test-area-power",
    ("L0", "A", "alpha"),
    ((0.0, 50.0), (1e-8, 1e4), (0.01, 3.0)),
    log_params=("A",),
    linear=("L0", "A"),
    start_grid={"alpha": (0.2, 0.5, 0.8)},
    formula="L0 + A*S(t)^-alpha",
    evaluator=area_power,
)


@pytest.fixture
def custom_law():
    register_curve_law(AREA_POWER)
    yield AREA_POWER
    laws_module._LAWS.pop(AREA_POWER.name)  # the registry as the other tests expect it


def synthetic(spec: str, seed: int, noise: float = 1e-3):
    sched = read_schedule(spec)
    steps = np.arange(sched.warmup, sched.steps + 1, 20)
    y = area_power(THETA, prepare(sched.lrs(), sched.warmup, steps), {}, want_jac=False)[0]
    y = y * (1 + noise * np.random.default_rng(seed).standard_normal(len(y)))
    return curve_from_arrays(spec.split(":")[0], steps, y, schedule=spec)


def test_a_registered_law_is_fitted_and_predicts_end_to_end(custom_law, tmp_path, capsys):
    assert curve_laws()[:3] == ("multipower", "annealing", "power") and curve_laws()[-1] == "test-area-power"
    curves = [synthetic(spec, seed) for seed, spec in enumerate(SCHEDULES)]
    fit = fit_curves(curves, law="test-area-power", bootstrap=20, seed=0)
    assert fit.diagnostics["method"] == "lbfgs" and fit.diagnostics["success"]
    np.testing.assert_allclose(fit.theta_, THETA, rtol=0.05)  # the law's own parameters come back
    assert fit.diagnostics["warnings"] == []  # no cooldown parameters declared: nothing to warn about
    for name, value in fit.params_.items():
        lo, hi = fit.intervals[name]
        assert lo <= value <= hi
    # a new schedule: point predictions, and the interval contains the noiseless truth
    wsd = "wsd:steps=3000,lr=1e-3,warmup=100,cooldown=0.2,shape=1-sqrt"
    p = fit.predict_interval(wsd, [3000])
    truth = area_power(THETA, prepare(read_schedule(wsd).lrs(), 100, [3000]), {}, want_jac=False)[0][0]
    assert p.method == "bootstrap+law-error" and p.lo[0] <= truth <= p.hi[0]
    assert p.extrapolation == pytest.approx(3000 / 2000)  # 1.5x the fitted steps (its area ratio is smaller)
    np.testing.assert_array_equal(fit.predict(wsd, [3000]), p.value)
    assert CurveFit.from_json(fit.to_json()) == fit
    # the CLI's --law choices are the registry's
    paths = [str(tmp_path / f"{c.name}.csv") for c in curves]
    for c, path in zip(curves, paths):
        pd.DataFrame({"step": c.steps, "loss": c.loss}).to_csv(path, index=False)
    schedules = [arg for spec in SCHEDULES for arg in ("--schedule", spec)]  # one per file, in order
    assert main(["curves", "fit", *paths, *schedules, "--law", "test-area-power", "--bootstrap", "0", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["law"] == "test-area-power" and out["params_"] == pytest.approx(fit.params_, rel=1e-6)


def test_the_cli_refuses_an_unregistered_law(capsys):
    assert "test-area-power" not in curve_laws()
    args = ["curves", "fit", str(DATA / "csv_25" / "wsdcon_9.csv"), "--schedule", SPECS["wsdcon_9"], "--law", "test-area-power"]
    assert main(args) == 2
    assert "test-area-power" in capsys.readouterr().err
    with pytest.raises(ScaletuneError, match="test-area-power"):
        get_curve_law("test-area-power")


@pytest.mark.parametrize(
    "change,needle",
    [
        ({"bounds": ((0.0, 50.0), (1e-8, 1e4))}, "bounds"),  # one bound short
        ({"linear": ("L0", "B")}, "B"),  # not a parameter
        ({"bounds": ((0.0, 50.0), (-1.0, 1e4), (0.01, 3.0))}, "log space"),  # A fitted in log space from below 0
        ({"bounds": ((1.0, 0.5), (1e-8, 1e4), (0.01, 3.0))}, "L0"),  # low above high
    ],
)
def test_a_bad_declaration_is_refused(change, needle):
    from dataclasses import replace

    with pytest.raises(ScaletuneError, match=needle):
        register_curve_law(replace(AREA_POWER, **change))
    assert "test-area-power" not in curve_laws()


def test_a_name_is_registered_once_unless_replaced(custom_law):
    with pytest.raises(ScaletuneError, match="already registered") as twice:
        register_curve_law(AREA_POWER)
    assert twice.value.hint
    assert register_curve_law(AREA_POWER, replace=True) is AREA_POWER


@pytest.fixture(scope="module")
def annealing_fit() -> CurveFit:
    return fit_curves(load("25", ["cosine_24000", "constant_24000", "wsdcon_9"]), law="annealing", bootstrap=5, seed=0, cv=False)


def test_curve_prediction_is_a_prediction_and_round_trips(annealing_fit):
    fit = annealing_fit
    assert isinstance(fit, Fit)
    p = fit.predict_interval(SPECS["cosine_72000"], [24000, 48000, 72000])
    assert isinstance(p, Prediction) and isinstance(p, CurvePrediction) and len(p) == 3
    assert p.level == 0.95 and p.method == "bootstrap+law-error" and p.details["law_error"]["method"] == "residuals"
    x = p.ratios
    assert p.extrapolation == pytest.approx(max(x["steps_ratio"], x["area_ratio"])) and x["steps_ratio"] == pytest.approx(72000 / 23936)
    assert np.all(p.lo <= p.lo_params) and np.all(p.lo_params <= p.value) and np.all(p.value <= p.hi_params) and np.all(p.hi_params <= p.hi)
    last = p[-1]  # one point: floats
    assert last.value == p.final_loss and (last.lo, last.hi) == p.final_interval
    assert "\n" not in repr(p) and len(repr(p)) < 200
    back = CurvePrediction.from_dict(json.loads(dumps(p.to_dict())))
    for key in ("value", "lo", "hi", "lo_params", "hi_params", "steps"):
        np.testing.assert_array_equal(getattr(back, key), getattr(p, key))
    assert (back.schedule, back.method, back.extrapolation, back.level) == (p.schedule, p.method, p.extrapolation, p.level)
    assert back.ratios == x and back.details["law_error"]["n"] == p.details["law_error"]["n"]
    # a narrower level gives a narrower interval around the same value
    narrow = fit.predict_interval(SPECS["cosine_72000"], [72000], level=0.5)
    assert p.lo[-1] < narrow.lo[0] < narrow.value[0] < narrow.hi[0] < p.hi[-1] and narrow.level == 0.5


def test_repr_is_one_line_and_summary_is_a_table(annealing_fit):
    fit = annealing_fit
    r = repr(fit)
    assert "\n" not in r and len(r) < 200 and str(len(fit.bootstrap_params)) in r  # never the samples themselves
    text = fit.summary()
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80
    rows = {line.split()[0]: line.split() for line in lines if line.split() and line.split()[0] in fit.params_}
    assert list(rows) == list(fit.params_)
    for name, cells in rows.items():  # value, then [lo, hi], as printed
        assert float(cells[1]) == pytest.approx(fit.params_[name], rel=1e-4)
        lo, hi = float(cells[2].strip("[,")), float(cells[3].strip("]"))
        assert (lo, hi) == pytest.approx(fit.intervals[name], rel=1e-3)


def test_fit_json_is_strict_and_reads_the_earlier_keys(annealing_fit, tmp_path):
    fit = annealing_fit
    d = json.loads(fit.to_json(), parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))
    assert set(d["params_"]) == set(fit.params_) and len(d["bootstrap_params"]) == 5 and d["diagnostics"]["bootstrap"] == 5
    d["params"], d["boot_params"] = d.pop("params_"), d.pop("bootstrap_params")  # a file written before the rename
    assert CurveFit.from_json(json.dumps(d)) == fit
    d["params"]["L0"] = math.nan  # NaN -> null on the way out, back to NaN on the way in
    back = CurveFit.from_json(dumps(d))
    assert math.isnan(back.params_["L0"])
