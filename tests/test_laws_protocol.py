"""The fit protocol of `scaletune.results` on the laws area's other results: `IsoflopResult` and `Allocation`
(predict, predict_interval, strict JSON round trip, one-line repr, summary table), and strict JSON from the CLI."""

import dataclasses
import json

import numpy as np
import pytest

from laws_helpers import chinchilla_data, run_cli
from scaletune.errors import ScaletuneError
from scaletune.laws import Allocation, IsoflopResult, allocate, compute_for_loss, fit, isoflop, published
from scaletune.laws.downstream import chain_predict
from scaletune.laws.synthetic import isoflop_ladder
from scaletune.results import Fit, Prediction


def _strict(text: str):
    def no_constants(name):
        raise ValueError(f"non-strict JSON constant {name}")

    return json.loads(text, parse_constant=no_constants)


def _table_rows(summary: str) -> dict[str, list[str]]:
    return {line[:22].strip(): line[22:].split() for line in summary.splitlines() if len(line) > 22}


@pytest.fixture(scope="module")
def iso():
    return isoflop(isoflop_ladder(seed=0, budgets=6), bootstrap=20, seed=0)


def test_isoflop_result_predicts_n_star_with_d_star_in_details(iso):
    assert isinstance(iso, Fit)
    C = np.array([1e20, 1e22])
    np.testing.assert_allclose(iso.predict(C), iso.n_fit.derived_["k"] * C**iso.a, rtol=1e-10)
    p = iso.predict_interval(C)
    assert isinstance(p, Prediction) and p.method == "bootstrap" and p.level == 0.95
    assert np.all((p.lo < p.value) & (p.value < p.hi))
    np.testing.assert_allclose(p.details["D_star"], iso.d_fit.predict({"C": C}), rtol=1e-12)
    assert np.all((p.details["D_star_lo"] < p.details["D_star"]) & (p.details["D_star"] < p.details["D_star_hi"]))
    c_max = iso.optima["C"].max()
    np.testing.assert_allclose(p.extrapolation, np.maximum(1.0, C / c_max), rtol=1e-9)
    assert iso.predict_interval({"C": 1e21}).value[0] == pytest.approx(iso.predict(1e21)[0])


def test_isoflop_result_json_round_trip_repr_and_summary(iso):
    back = IsoflopResult.from_json(iso.to_json())
    _strict(iso.to_json())
    np.testing.assert_allclose(back.predict_interval(1e21).interval, iso.predict_interval(1e21).interval, rtol=1e-12)
    assert back.a == iso.a and back.b == iso.b and back.edge_replicates == iso.edge_replicates
    np.testing.assert_allclose(back.optima[["C", "N_star", "N_star_lo"]], iso.optima[["C", "N_star", "N_star_lo"]])
    text = repr(iso)
    lo, hi = iso.n_fit.intervals["c_C"]
    assert "\n" not in text and len(text) < 120 and f"a={iso.a:.3g} [{lo:.3g}, {hi:.3g}]" in text
    summary = iso.summary()
    assert max(len(line) for line in summary.splitlines()) <= 80
    row = _table_rows(summary)["a in N* = k C^a"]
    assert float(row[0]) == pytest.approx(iso.a, rel=1e-3) and row[1:] == [f"[{lo:.4g},", f"{hi:.4g}]"]
    assert sum(line.strip().startswith(f"{c:.4g}") for line in summary.splitlines() for c in iso.optima["C"]) == 6
    with pytest.raises(ScaletuneError, match="not an isoFLOP result"):
        IsoflopResult.from_json('{"a": 1}')


@pytest.fixture(scope="module")
def fitted():
    return fit("chinchilla", chinchilla_data(seed=3, noise=0.005), bootstrap=30, seed=0, intervals="bootstrap", workers=1)


def test_allocation_predicts_along_the_frontier(fitted):
    a = allocate(fitted, 1e21)
    assert isinstance(a, Fit)
    assert a.predict(1e21)[0] == pytest.approx(a.N_star, rel=1e-12)
    p = a.predict_interval([1e21, 1e23])
    assert p.method == "bootstrap" and (p.lo[0], p.hi[0]) == pytest.approx(a.intervals["N_star"], rel=1e-12)
    assert p.details["D_star"][0] == pytest.approx(a.D_star, rel=1e-12)
    assert p.details["loss"][0] == pytest.approx(a.loss, rel=1e-12)
    far = allocate(fitted, 1e23)
    assert 6 * p.value[1] * p.details["D_star"][1] == pytest.approx(1e23, rel=1e-9)
    assert p.value[1] == pytest.approx(far.N_star) and p.extrapolation[1] == pytest.approx(far.extrapolation)
    deepseek = allocate("published:deepseek", 1e24)
    assert deepseek.predict(1e24)[0] == pytest.approx(0.1715 * 1e24**0.5243)
    assert deepseek.predict_interval(1e24).method == "point"
    with pytest.raises(ScaletuneError, match="positive"):
        a.predict(-1.0)


def test_allocation_json_round_trip_repr_and_summary(fitted):
    a = allocate(fitted, 1e21)
    back = Allocation.from_json(a.to_json())
    assert back == a and back.predict(3e21)[0] == pytest.approx(a.predict(3e21)[0], rel=1e-12)
    assert Allocation.from_json(allocate("published:deepseek", 1e24).to_json()).predict(1e24)[0] == pytest.approx(0.1715 * 1e24**0.5243)
    text = repr(a)
    assert "\n" not in text and text.startswith(f"Allocation(C=1e+21: N*={a.N_star:.3g} [")
    summary = a.summary()
    assert max(len(line) for line in summary.splitlines()) <= 80
    row = _table_rows(summary)["N* (parameters)"]
    lo, hi = a.intervals["N_star"]
    assert float(row[0]) == pytest.approx(a.N_star, rel=1e-3) and row[1:] == [f"[{lo:.4g},", f"{hi:.4g}]"]


def _unreachable_fit():
    """Hoffmann's law with bootstrap samples whose floor E spreads around 1.69 (some above a 1.72 target)."""
    hoffmann = published("hoffmann")
    rng = np.random.default_rng(0)
    theta = np.array([hoffmann.params_[p] for p in hoffmann.law_.params])
    samples = np.tile(theta, (200, 1))
    samples[:, 2] = np.log(1.69 * np.exp(rng.normal(0, 0.02, 200)))
    return dataclasses.replace(hoffmann, bootstrap_params=samples)


def test_infinite_interval_ends_are_null_in_strict_json(capsys, tmp_path):
    fitted = _unreachable_fit()
    res = compute_for_loss(fitted, 1.72)
    assert res.intervals["C"][1] == np.inf
    assert _strict(res.to_json())["intervals"]["C"][1] is None
    path = tmp_path / "fit.json"
    path.write_text(fitted.to_json())
    code, out, err = run_cli(capsys, "allocate", path, "--loss", "1.72", "--json")
    assert code == 0, err
    doc = _strict(out)["allocations"][0]
    assert doc["intervals"]["C"][1] is None and doc["intervals"]["C"][0] == pytest.approx(res.intervals["C"][0])


def test_chained_prediction_needs_bootstrap_samples_and_says_so_in_library_words():
    df = chinchilla_data(seed=0)
    point_fit = fit("chinchilla", df, bootstrap=0)
    errors = {"loss": np.linspace(2.3, 5.5, 12), "error": np.linspace(0.75, 0.3, 12)}
    from scaletune.laws import fit_downstream

    err_fit = fit_downstream(errors, bootstrap=0)
    with pytest.raises(ScaletuneError) as exc:
        chain_predict(point_fit, err_fit, {"N": 1e9, "D": 2e10})
    assert exc.value.hint and "--" not in str(exc.value) and "--" not in exc.value.hint
