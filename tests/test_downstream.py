"""Loss -> downstream error (Gadre et al. 2024): the law recovers known parameters, the chance bound, the chained
prediction's joint intervals cover in a synthetic test, the paper's protocol on the bundled C4 runs, the CLI."""

import json
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import curve_fit

from scaletune.cli import main
from scaletune.errors import ScaletuneError
from scaletune.laws import fit, get_law
from scaletune.laws.downstream import chain_predict, check_chance, complete_point, fit_downstream

C4 = Path(str(resources.files("scaletune") / "data" / "laws" / "overtraining_c4" / "DERIVED_c4_models.csv"))
TRUE = {"eps": 0.78, "log_k": float(np.log(4.0)), "gamma": 0.9}
LOSS_TRUE = {"a": 120.0, "b": -0.24, "c": 190.0, "E": 1.5}  # overtrained law, near the C4 fit


def _errors(loss, rng, noise=0.01):
    return get_law("downstream_error").predict(TRUE, {"loss": np.asarray(loss, float)}) * np.exp(rng.normal(0, noise, len(loss)))


def test_downstream_law_recovers_known_parameters():
    rng = np.random.default_rng(0)
    loss = np.linspace(2.3, 5.5, 30)
    r = fit_downstream({"loss": loss, "error": _errors(loss, rng)}, bootstrap=100, seed=0)
    assert r.params_["eps"] == pytest.approx(TRUE["eps"], abs=0.02)
    assert r.derived_["k"] == pytest.approx(4.0, rel=0.25)
    assert r.params_["gamma"] == pytest.approx(TRUE["gamma"], abs=0.1)
    lo, hi = r.intervals["gamma"]
    assert lo <= TRUE["gamma"] <= hi
    assert r.predict({"loss": [3.0]})[0] == pytest.approx(0.78 - 4.0 * np.exp(-2.7), abs=0.01)


def test_chance_level_bounds_eps_and_is_recorded():
    rng = np.random.default_rng(1)
    loss = np.linspace(2.3, 5.5, 20)
    r = fit_downstream(pd.DataFrame({"loss": loss, "error": _errors(loss, rng), "chance": 0.7}), chance="chance", bootstrap=0)
    assert r.params_["eps"] <= 0.7 + 1e-12 and r.diagnostics["chance"] == 0.7
    assert "eps" in r.diagnostics["at_bound"]  # the data's plateau (0.78) lies above this chance level
    with pytest.raises(ScaletuneError):
        check_chance(r, 0.5)  # below the fitted eps


def test_complete_point_converts_tokens_per_parameter():
    p = complete_point({"N": 1e9, "M": 20}, ("N", "D"))
    assert p["D"] == 2e10 and p["C"] == 6 * 1e9 * 2e10
    assert complete_point({"N": 1e9, "D": 4e10}, ("N", "M"))["M"] == 40
    with pytest.raises(ScaletuneError):
        complete_point({"D": 1e9}, ("N", "M"))


def _ladder(rng, loss_noise=0.01, err_noise=0.01):
    N = np.repeat([1e7, 3e7, 8e7, 2e8, 5e8], 3)
    M = np.tile([10.0, 20.0, 80.0], 5)
    law = get_law("overtrained")
    loss = law.predict(LOSS_TRUE, {"N": N, "M": M}) * np.exp(rng.normal(0, loss_noise, len(N)))
    return pd.DataFrame({"N": N, "M": M, "D": M * N, "loss": loss, "error": _errors(loss, rng, err_noise)})


def _truth(rng, point, loss_noise=0.01, err_noise=0.01):
    loss = get_law("overtrained").predict(LOSS_TRUE, {k: np.array([v]) for k, v in point.items()})[0] * np.exp(rng.normal(0, loss_noise))
    return loss, _errors([loss], rng, err_noise)[0]


@pytest.mark.slow
def test_chained_intervals_cover_in_a_synthetic_ladder():
    rng = np.random.default_rng(0)
    point = {"N": 1.5e9, "M": 20.0}  # 3x beyond the largest fitted N
    hits_loss, hits_err, reps = 0, 0, 10
    for rep in range(reps):
        data = _ladder(rng)
        lf = fit("overtrained", data, bootstrap=40, seed=rep)
        ef = fit_downstream(data, bootstrap=40, seed=rep)
        p = chain_predict(lf, ef, point, seed=rep)
        true_loss, true_err = _truth(rng, point)
        hits_loss += p.loss.interval[0] <= true_loss <= p.loss.interval[1]
        hits_err += p.error.interval[0] <= true_err <= p.error.interval[1]
        assert p.error.interval[0] <= p.error.value <= p.error.interval[1]
    print(f"coverage of 95% chained intervals over {reps} ladders: loss {hits_loss}/{reps}, error {hits_err}/{reps}")
    assert hits_loss / reps >= 0.8 and hits_err / reps >= 0.8, (hits_loss, hits_err)


def test_chained_error_interval_is_wider_than_the_error_law_alone():
    rng = np.random.default_rng(3)
    data = _ladder(rng)
    lf = fit("overtrained", data, bootstrap=60, seed=0)
    ef = fit_downstream(data, bootstrap=60, seed=0)
    p = chain_predict(lf, ef, {"N": 1.5e9, "M": 20})
    lo, hi = ef.predict_interval({"loss": [p.loss.value]}, observation=True).interval
    assert p.error.interval[1] - p.error.interval[0] > hi[0] - lo[0]
    assert p.loss.extrapolation == pytest.approx(3.0, rel=0.05)


def _c4():
    return pd.read_csv(C4).rename(columns={"loss_c4_val": "loss", "err_avg17": "error"})


def test_c4_reference_protocol_reproduces_the_issue_numbers():
    """Gadre et al.'s protocol with two scipy curve_fit calls: loss law on the four small M=20 runs and the
    smallest at M=320, error law on those plus 1.4B M=20; predict 1.4B M=80 and 6.9B M=20."""
    df = _c4()
    small = df[((df.N < 1e9) & (df.M == 20)) | ((df.N == df.N.min()) & (df.M == 320))]
    err_set = pd.concat([small, df[(df.N > 1e9) & (df.N < 2e9) & (df.M == 20)]])

    def loss_law(X, a, b, c, E):
        return a * X[0] ** b + c * 6 ** (b / 2) * (X[1] * X[0]) ** b + E

    p, _ = curve_fit(loss_law, (small.N.values, small.M.values), small.loss.values, p0=[100, -0.2, 100, 1.5], maxfev=100000)
    q, _ = curve_fit(lambda L, e, k, g: e - k * np.exp(-g * L), err_set.loss.values, err_set.error.values, p0=[0.8, 10, 1], maxfev=100000)
    got = []
    for N, M in ((1439795200, 80), (6889410560, 20)):
        row = df[(df.N == N) & (df.M == M)].iloc[0]
        lp = loss_law((N, M), *p)
        ep = q[0] - q[1] * np.exp(-q[2] * lp)
        got.append((100 * abs(lp / row.loss - 1), 100 * abs(ep / row.error - 1)))
    assert got[0] == pytest.approx((1.50, 9.58), abs=0.01)
    assert got[1] == pytest.approx((4.30, 0.14), abs=0.01)


def test_c4_chained_prediction_covers_the_held_out_models(tmp_path, capsys):
    """scaletune's method on the same protocol (Huber fits, eps bounded by the 17-task chance level): the
    joint intervals contain both held-out models' measured loss and error."""
    df = _c4()
    small = df[((df.N < 1e9) & (df.M == 20)) | ((df.N == df.N.min()) & (df.M == 320))]
    err_set = pd.concat([small, df[(df.N > 1e9) & (df.N < 2e9) & (df.M == 20)]])
    lf = fit("overtrained", small, bootstrap=200, seed=0)
    ef = fit_downstream(err_set, chance="err_avg17_chance", bootstrap=200, seed=0)
    assert ef.params_["eps"] <= df.err_avg17_chance.iloc[0] + 1e-12
    for N, M in ((1439795200, 80), (6889410560, 20)):
        row = df[(df.N == N) & (df.M == M)].iloc[0]
        p = chain_predict(lf, ef, {"N": N, "M": M})
        assert p.loss.interval[0] <= row.loss <= p.loss.interval[1]
        assert p.error.interval[0] <= row.error <= p.error.interval[1]
        assert abs(p.loss.value / row.loss - 1) < 0.06 and abs(p.error.value / row.error - 1) < 0.12
        assert p.loss.extrapolation > 3


def test_cli_fit_predict_chain_and_bad_input(tmp_path, capsys):
    data = tmp_path / "c4.csv"
    _c4().assign(C=lambda d: 6.0 * d.N.astype(float) * d.D.astype(float)).to_csv(data, index=False)
    loss_json, err_json = tmp_path / "loss.json", tmp_path / "err.json"
    assert main(["fit", str(data), "--law", "overtrained", "--where", "N<1e9", "--bootstrap", "60", "--out", str(loss_json)]) == 0
    assert (
        main(
            [
                "fit",
                str(data),
                "--law",
                "downstream_error",
                "--where",
                "N<2e9 and M==20",
                "--chance",
                "0.8088",
                "--bootstrap",
                "60",
                "--out",
                str(err_json),
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert main(["predict", str(loss_json), "--then", str(err_json), "--at", "N=6.89e9,M=20", "--at", "N=1.44e9,D=1.152e11", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    first, second = doc["predictions"]
    assert first["point"]["D"] == pytest.approx(6.89e9 * 20)
    assert second["point"]["M"] == pytest.approx(80)
    for p in (first, second):
        assert p["loss"]["interval"][0] <= p["loss"]["value"] <= p["loss"]["interval"][1]
        assert [p["loss"]["lo"], p["loss"]["hi"]] == p["loss"]["interval"] and p["loss"]["law"] == "overtrained"
        assert p["error"]["method"] == "chained" and p["error"]["name"] == "error" and p["loss"]["level"] == 0.95
        assert 0 <= p["error"]["interval"][0] <= p["error"]["value"] <= p["error"]["interval"][1] <= 1
        assert p["loss"]["extrapolation"] > 1
    assert main(["predict", str(err_json), "--at", "loss=2.5", "--json"]) == 0
    assert 0.3 < json.loads(capsys.readouterr().out)["predictions"][0]["error"] < 0.8
    # bad input: one line on stderr, exit code 2
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"loss": [3.0, 2.8, 2.6, 2.5], "error": [0.8, 75.0, 0.6, 0.5]}).to_csv(bad, index=False)
    for args in (
        ["fit", str(bad), "--law", "downstream_error"],
        ["fit", str(data), "--law", "downstream_error", "--chance", "0.5", "--fix", "eps=0.7"],
        ["predict", str(loss_json), "--then", str(err_json), "--at", "N=1e9,M=20", "--chance", "0.3"],
        ["predict", str(loss_json), "--then", str(err_json), "--at", "D=1e9"],
    ):
        assert main(args) == 2, args
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("scaletune: error:")
