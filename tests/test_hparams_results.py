"""The results of the hparams and stability areas speak the shared vocabulary (`scaletune.results`): the fit
protocol of `HparamLaw`, `Prediction` fields with a `Method`, strict JSON, one-line reprs and 80-column
summaries."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from scaletune._json import dumps
from scaletune.hparams import Method, describe, find_optima, fit_hparam_law, recommend
from scaletune.hparams.laws import HparamLaw
from scaletune.hparams.synthetic import Landscape
from scaletune.results import Fit, Prediction
from scaletune.stability import TrendMethod, analyse_stability

LADDER = [(n, d) for n in (1e7, 3e7) for d in (1e9, 4e9, 1.6e10)]


def _strict(text: str) -> object:
    """json.loads that refuses NaN / Infinity (the one JSON policy writes them as null)."""

    def refuse(name: str) -> None:
        raise ValueError(f"non-strict JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture(scope="module")
def land_runs():
    land = Landscape(noise=0.001)
    return land, land.sweep(LADDER, seed=1)


@pytest.fixture(scope="module")
def optima(land_runs):
    return find_optima(land_runs[1], bootstrap=60)


def _short(text: str, width: int = 160) -> bool:
    return "\n" not in text and len(text) <= width


def test_hparam_law_implements_the_fit_protocol(land_runs, optima):
    land, _ = land_runs
    law = fit_hparam_law(optima, "lr", ("N", "D"), bootstrap=200)
    assert isinstance(law, Fit)
    point = {"N": 3e8, "D": 1.6e10}
    pred = law.predict_interval(point)
    assert isinstance(pred, Prediction) and pred.method == Method.LR_ND and pred.level == 0.95
    assert law.predict(point) == pred.value and pred.lo < pred.value < pred.hi
    assert pred.extrapolation == pytest.approx(10.0)  # 10x beyond the largest N of the ladder
    assert pred.lo <= float(land.lr_opt(*point.values())) <= pred.hi
    narrow = law.predict_interval(point, level=0.5)
    assert pred.lo < narrow.lo < narrow.hi < pred.hi
    # arrays in, arrays out: the same numbers point by point
    many = law.predict_interval({"N": np.array([1e7, 3e8]), "D": np.array([1e9, 1.6e10])})
    assert many.value.shape == (2,) and many[1].value == pytest.approx(pred.value) and many[1].hi == pytest.approx(pred.hi)
    assert law.predict({"N": np.array([1e7, 3e8]), "D": np.array([1e9, 1.6e10])}) == pytest.approx(many.value)
    # strict JSON that reads back to the same predictions
    back = HparamLaw.from_json(law.to_json())
    _strict(law.to_json())
    again = back.predict_interval(point)
    assert (again.value, again.lo, again.hi, again.extrapolation) == pytest.approx((pred.value, pred.lo, pred.hi, pred.extrapolation))
    assert back.exponents == law.exponents and back.method == Method.LR_ND


def test_results_print_like_results(land_runs, optima):
    law = fit_hparam_law(optima, "lr", ("N", "D"), bootstrap=100)
    assert _short(repr(law)) and _short(repr(optima[0]))
    (a, a_iv) = law.exponents["N"]
    table = law.summary().splitlines()
    assert max(map(len, table)) <= 80
    assert any(f"{a:.4g} [{a_iv[0]:.4g}, {a_iv[1]:.4g}]" in line for line in table)  # the exponent with its interval
    o = optima[-1]
    table = o.summary().splitlines()
    assert max(map(len, table)) <= 80 and any(f"{o.lr_:.4g} [{o.lr_interval[0]:.4g}, " in line for line in table)


def test_recommendation_predictions_carry_a_method_and_strict_json(land_runs):
    runs = land_runs[1].assign(batch_size=1024.0)  # one batch size for every run: not swept
    rec = recommend(runs, {"N": 3e8, "D": 1.6e10}, bootstrap=60, loss_bootstrap=0, select=False)
    for p in (rec.lr, rec.batch_size):
        assert isinstance(p, Prediction) and isinstance(p.method, Method) and p.level == 0.95
        text = describe(p)
        assert text and "\n" not in text
    assert rec.batch_size.method == Method.BATCH_AS_PROXIES and math.isnan(rec.batch_size.lo)  # batch not swept
    doc = _strict(dumps(rec.to_dict()))
    lr = doc["lr"]
    assert set(lr) == {"value", "lo", "hi", "interval", "level", "extrapolation", "method", "details"}
    assert lr["method"] == rec.lr.method.name and lr["interval"] == [lr["lo"], lr["hi"]]
    assert _short(repr(rec), 200)
    table = rec.summary().splitlines()
    assert max(map(len, table)) <= 80
    assert any(f"{rec.lr.value:.4g} [" in line and rec.lr.method.name in line for line in table)


def test_describe_renders_every_method_without_missing_fields():
    details = {"scale": {"N": 1e8, "D": 1e9}, "batch_size": 1024.0, "seq_len": 64, "at_edge": True}
    for m in Method:
        text = describe(Prediction(1.0, 0.5, 2.0, method=m, details=details))
        assert text and "\n" not in text, m
    # the held-out choice and a law's own prediction are rendered from their details
    chosen = describe(Prediction(1.0, 0.5, 2.0, method=Method.LR_C, details={"selection": "held_out"}))
    assert chosen != describe(Prediction(1.0, 0.5, 2.0, method=Method.LR_C, details={"law": "lr_C"}))


def test_stability_trend_predictions_are_predictions():
    land = Landscape(noise=0.001, asym=4.0)
    runs = land.sweep([(n, 20 * n) for n in (1e7, 2e7, 4e7, 8e7)], seed=6)
    report = analyse_stability(runs, target={"N": 3.2e8}, bootstrap=40)
    edge = report.arms[0].edge_trend.prediction
    assert isinstance(edge, Prediction) and edge.method == TrendMethod.EDGE and edge.details["scales"] >= 2
    assert edge.lo <= edge.value <= edge.hi and edge.extrapolation == pytest.approx(4.0)
    doc = report.to_dict()["arms"][0]["edge_trend"]["prediction"]
    assert doc["method"] == "EDGE" and doc["interval"] == [doc["lo"], doc["hi"]]
    assert _short(repr(report)) and all(_short(repr(s)) for s in report.arms[0].scales)
    table = report.summary().splitlines()
    assert max(map(len, table)) <= 80 and len(table) >= 1 + len(report.arms[0].scales)
