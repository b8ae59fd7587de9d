"""Loss-curve laws under LR schedules: exactness of the vectorised sums, the published multipowerlaw
protocol (Luo et al. 2025), JSON round trips, schedule search and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scaletune.cli import main
from scaletune.curves import CurveFit, curve_from_arrays, evaluate_fit, fit_curves, read_curves
from scaletune.curves.fit import describe_curve
from scaletune.curves._multipower import loss_drop, loss_drop_exact
from scaletune.curves.laws import get_curve_law, prepare
from scaletune.curves.search import compare_schedules, optimise_schedule
from scaletune.errors import ScaletuneError
from scaletune.schedules import Schedule, TableSchedule

DATA = Path(__file__).parent / "data" / "multipowerlaw"
SPECS = dict(pd.read_csv(DATA / "schedules.csv").values)
TRAIN = ["cosine_24000", "constant_24000", "wsdcon_9"]
TEST = ["constant_72000", "cosine_72000", "wsd_20000_24000", "wsdld_20000_24000", "wsdcon_3", "wsdcon_18"]
# Published fits (SOURCE.md) and the paper's test metrics: R2, mean and worst relative error, each per test curve
# and averaged over the 6 curves, as the authors' repository scores them (`evaluate_mpl`).
PUBLISHED = {
    "25": ([3.04045406, 0.52468604, 0.50786857, 363.78751622, 2.06560812, 0.58279013, 0.64142257], 0.9988, 0.00110, 0.00409),
    "100": ([2.6514477, 0.60115152, 0.45295811, 437.9464276, 2.13245612, 0.59785199, 0.65523644], 0.9983, 0.00142, 0.00583),
}


def load(size: str, names: list[str]):
    """The curves as SOURCE.md says: files whose last step is 24,000 are cut to steps < 24,000 (that logged
    point is the end of the schedule); the 72,000-step curves are kept whole."""
    out = []
    for n in names:
        path = DATA / f"csv_{size}" / f"{n}.csv"
        cut = pd.read_csv(path, usecols=["step"]).step.iloc[-1] == 24000
        out.append(read_curves(path, SPECS[n], max_step=24000 if cut else None)[0])
    return out


def published_fit(size: str) -> CurveFit:
    params = dict(zip(get_curve_law("multipower").params, PUBLISHED[size][0]))
    curves = tuple(describe_curve(c) for c in load(size, TRAIN))
    return CurveFit("multipower", params, {k: (v, v) for k, v in params.items()}, {}, "huber", {}, curves)


@pytest.mark.parametrize(
    "spec",
    [
        "wsd:steps=3000,lr=3e-4,warmup=300,decay_start=2000,shape=exp,final=0.1",
        "twostage:steps=3000,lr=3e-4,warmup=300,switch=1500,ratio=0.3",
        "cosine:steps=3000,lr=1e-3,final=0.0",
        "step:steps=3000,lr=1e-3,warmup=50,milestones=1000|2000,gamma=0.3",
    ],
)
def test_grouped_drop_sum_matches_term_by_term_sum(spec):
    sched = Schedule.parse(spec)
    steps = np.r_[np.arange(max(sched.warmup, 1), 3000, 37), 3000]
    prep = prepare(sched.lrs(), sched.warmup, steps)
    fast = loss_drop(prep, 2.0, 0.6, 0.65)["value"]
    exact = loss_drop_exact(prep, 2.0, 0.6, 0.65)
    # relative error of the drop term below 3e-4: with B ~ 400, under 1e-4 nats of loss (a tenth of the law's own error)
    assert np.max(np.abs(fast - exact)) <= 3e-4 * np.max(np.abs(exact))
    assert np.max(np.abs(exact)) > 1e-6  # the sum is not trivially zero


@pytest.mark.parametrize(
    "spec",
    [
        "wsd:steps=3000,lr=3e-4,warmup=300,cooldown=0.2,shape=1-sqrt,final=0.0",
        "cosine:steps=3000,lr=1e-3,final=0.0",
        "step:steps=3000,lr=1e-3,warmup=50,milestones=1000|2000,gamma=0.3",
    ],
)
def test_every_step_evaluation_matches_term_by_term_sum(spec):
    """Dense points take the interpolated far field; shuffled steps give the same values."""
    sched = Schedule.parse(spec)
    steps = np.arange(max(sched.warmup, 1), 3001)
    dense = loss_drop(prepare(sched.lrs(), sched.warmup, steps), 2.0, 0.6, 0.65)["value"]
    idx = np.r_[np.arange(0, len(steps), 41), len(steps) - 1]
    exact = loss_drop_exact(prepare(sched.lrs(), sched.warmup, steps[idx]), 2.0, 0.6, 0.65)
    assert np.max(np.abs(dense[idx] - exact)) <= 3e-4 * np.max(np.abs(exact))
    perm = np.random.default_rng(0).permutation(len(steps))
    shuffled = loss_drop(prepare(sched.lrs(), sched.warmup, steps[perm]), 2.0, 0.6, 0.65)["value"]
    np.testing.assert_allclose(shuffled, dense[perm], rtol=1e-12, atol=1e-15)


def _cosine(steps: int, final: float) -> np.ndarray:
    return Schedule.parse(f"cosine:steps={steps},lr=1e-3,final={final}").lrs()


# per-step rates: decay, re-warm, decay again (continual pre-training); a triangular cycle between 1/3 and 1 of the
# peak; a rate that jumps up 10x (its far field cannot be interpolated there: those leaves take per-point groups)
REWARM = np.r_[np.linspace(1e-5, 1e-3, 200), _cosine(2800, 0.1), np.linspace(1e-4, 1e-3, 300), _cosine(2700, 0.1)]
CYCLIC = np.r_[np.linspace(1e-5, 1e-3, 100), 1e-3 - 6.7e-4 * np.abs((np.arange(6000) / 1000.0) % 2 - 1)]
JUMP_UP = np.r_[np.full(2000, 1e-4), np.full(3000, 1e-3), np.full(1000, 3e-4)]


@pytest.mark.parametrize("lrs,warmup,tol", [(REWARM, 200, 1e-3), (CYCLIC, 100, 3e-4), (JUMP_UP, 0, 1e-6)])
def test_every_step_of_rewarming_and_cyclic_schedules(lrs, warmup, tol):
    """The dense path (every step of a run: hierarchical far field, near groups at fixed distances) is as close to
    the term-by-term sum as the per-point groups. A re-warm from 10% to the peak is the hardest case for both: the
    rate, so eta^-gamma, changes 4.5x within the groups that hold the re-warm (relative error ~6e-4 of the drop term,
    ~2e-4 nats at B = 364)."""
    steps = np.arange(max(warmup, 1), len(lrs) + 1)
    prep = prepare(lrs, warmup, steps)
    dense = loss_drop(prep, 2.0, 0.6, 0.65, grad=False)["value"]
    assert prep.cache["dense"] is not None  # the dense path ran
    per_point = loss_drop(prepare(lrs, warmup, steps), 2.0, 0.6, 0.65)["value"]  # with grad: the per-point groups
    idx = np.r_[np.arange(0, len(steps), 13), np.arange(len(steps) - 40, len(steps))]
    exact = loss_drop_exact(prepare(lrs, warmup, steps[idx]), 2.0, 0.6, 0.65)
    scale = np.max(np.abs(exact))
    err_dense, err_groups = np.max(np.abs(dense[idx] - exact)), np.max(np.abs(per_point[idx] - exact))
    assert err_dense <= tol * scale
    assert err_dense <= 1.5 * err_groups + 1e-7 * scale  # (1e-7: rounding in the prefix sums)


def test_every_step_of_a_72000_step_cosine_within_2e_6_nats():
    """The benchmark's curve (benchmarks/curves.py eval): every step, against the term-by-term sum at 120 steps."""
    C, beta, gamma = PUBLISHED["25"][0][4:]
    lrs = Schedule.parse("cosine:steps=72000,lr=3e-4,warmup=2160,final=0.1").lrs()
    steps = np.arange(2160, 72001)
    dense = loss_drop(prepare(lrs, 2160, steps), C, beta, gamma, grad=False)["value"]
    idx = np.r_[np.arange(0, len(steps), 701), np.arange(len(steps) - 20, len(steps))]
    exact = loss_drop_exact(prepare(lrs, 2160, steps[idx]), C, beta, gamma)
    assert PUBLISHED["25"][0][3] * np.max(np.abs(dense[idx] - exact)) <= 2e-6  # B times the drop term: nats


@pytest.mark.parametrize(
    "law,theta,options",
    [
        ("multipower", [3.0, 0.5, 0.5, 400.0, 2.0, 0.6, 0.65], {}),
        ("annealing", [3.1, 0.5, 0.5, 0.8], {"lam": 0.999}),
        ("power", [3.0, 2.0, 0.3], {}),
    ],
)
@pytest.mark.parametrize("every", [150, 1])  # sparse points, and dense ones (interpolated far field)
def test_jacobian_matches_finite_differences(law, theta, options, every):
    sched = Schedule.parse("wsd:steps=4000,lr=3e-4,warmup=200,cooldown=0.3,shape=1-sqrt,final=0.05")
    prep = prepare(sched.lrs(), 200, np.arange(200, 4000, every))
    theta = np.array(theta)
    _, jac = get_curve_law(law).evaluate(theta, prep, options)
    for i in range(len(theta)):
        h = 1e-5 * max(abs(theta[i]), 1e-3)  # at 1e-6, rounding in the variance sums (~1e-13 of the loss) shows
        up, down = theta.copy(), theta.copy()
        up[i] += h
        down[i] -= h
        fd = (get_curve_law(law).evaluate(up, prep, options)[0] - get_curve_law(law).evaluate(down, prep, options)[0]) / (2 * h)
        np.testing.assert_allclose(jac[:, i], fd, rtol=2e-4, atol=1e-9)


@pytest.mark.parametrize("size", ["25", "100"])
def test_published_parameters_reproduce_published_test_metrics(size):
    """Our convention (drop sum over every step, warm-up included) and scoring (per curve, averaged over the
    curves; the 72,000-step curves to their end) are the paper's: the published parameters give the published
    numbers (measured 25M 0.99880 / 0.111% / 0.40%, 100M 0.99829 / 0.143% / 0.58%)."""
    m = evaluate_fit(published_fit(size), load(size, TEST))
    assert m["n_points"] > 1600 and m["n_curves"] == 6  # the 72,000-step curves in full
    _, r2, mre, worst = PUBLISHED[size]
    assert abs(m["r2"] - r2) < 1e-4 and abs(m["mean_rel_error"] - mre) < 2e-5 and abs(m["max_rel_error"] - worst) < 1e-4, m
    # pooled over all points the long curves weigh more and score worse (25M 0.123%, 100M 0.173%)
    assert m["pooled"]["mean_rel_error"] > m["mean_rel_error"]


@pytest.mark.slow  # > 10 s
@pytest.mark.parametrize("size", ["25", "100"])
def test_multipower_fit_reaches_published_test_metrics(size):
    """Done when: fit on cosine_24000, constant_24000, wsdcon_9; predict the 6 others (the 72,000-step curves
    to their end); reach at least the paper's R2 / mean / worst relative error (measured 25M 0.99909 / 0.095% /
    0.35% vs 0.9988 / 0.110% / 0.41%; 100M 0.99844 / 0.133% / 0.57% vs 0.9983 / 0.142% / 0.58%)."""
    train, test = load(size, TRAIN), load(size, TEST)
    fit = fit_curves(train, law="multipower", bootstrap=0, cv=False)
    assert fit.diagnostics["method"] == "luo2025"
    # the published protocol reproduces the published parameters (measured: 25M C 2.3% off, the rest within
    # 1.4%; 100M within 0.5%)
    np.testing.assert_allclose(fit.theta_, PUBLISHED[size][0], rtol=0.025)
    _, r2_paper, mre_paper, worst_paper = PUBLISHED[size]
    m = evaluate_fit(fit, test)
    assert m["r2"] >= r2_paper and m["mean_rel_error"] <= mre_paper and m["max_rel_error"] <= worst_paper, m
    # annealing law reported beside it: fitted on the same curves and scored on the same test points
    # (measured 25M 0.99827 / 0.130%, 100M 0.99795 / 0.145%)
    ann = fit_curves(train, law="annealing", bootstrap=0, cv=False)
    ma = evaluate_fit(ann, test)
    assert ann.options["lam"] in (0.99, 0.995, 0.998, 0.999, 0.9995)
    assert ma["r2"] > 0.997 and ma["mean_rel_error"] < 0.0016


@pytest.mark.slow  # > 10 s
def test_converged_fit_fits_better_but_extrapolates_worse():
    """Why the published (early-stopped) protocol is the default: the converged L-BFGS-B fit reaches half the
    Huber loss on the three fitted curves but predicts the full 72,000-step curves worse (measured, 25M:
    objective 1.38e-4 vs 2.76e-4; test R2 0.99761 / 0.138% vs 0.99909 / 0.095%)."""
    train, test = load("25", TRAIN), load("25", TEST)
    early = fit_curves(train, law="multipower", bootstrap=0, cv=False)
    converged = fit_curves(train, law="multipower", bootstrap=0, method="lbfgs")
    assert converged.diagnostics["objective_value"] < 0.6 * early.diagnostics["objective_value"]
    m_early, m_conv = evaluate_fit(early, test), evaluate_fit(converged, test)
    assert m_conv["r2"] < m_early["r2"] - 0.001 and m_conv["mean_rel_error"] > m_early["mean_rel_error"] + 3e-4
    with pytest.raises(ScaletuneError, match="published multipower protocol"):
        fit_curves(train, law="annealing", method="luo2025")
    with pytest.raises(ScaletuneError, match="unknown fitting method"):
        fit_curves(train, method="adam")


def _synthetic(theta, spec, noise, seed):
    sched = Schedule.parse(spec)
    steps = np.arange(sched.warmup, sched.steps + 1, 10)
    y = get_curve_law("multipower").evaluate(np.array(theta), prepare(sched.lrs(), sched.warmup, steps), {}, jac=False)[0]
    return curve_from_arrays(spec, steps, y * (1 + noise * np.random.default_rng(seed).standard_normal(len(y))), schedule=spec)


@pytest.mark.slow  # > 10 s
def test_both_methods_on_a_well_specified_synthetic_law():
    """Curves drawn from the law itself (0.1% noise, peak rate 1e-3, 2,400 steps): here the converged fit is
    the better one (measured: final-loss error of a WSD run 0.07% vs 0.67%): the published protocol's fixed
    AdamW step sizes stop it after ~40 steps with C, beta, gamma still near their start (1, 0.5, 0.5)."""
    theta = np.array([3.0, 0.5, 0.5, 40.0, 2.0, 0.6, 0.6])

    train = [
        _synthetic(theta, "constant:steps=2400,lr=1e-3,warmup=240", 1e-3, 0),
        _synthetic(theta, "cosine:steps=2400,lr=1e-3,warmup=240,final=0.1", 1e-3, 1),
    ]
    wsd = _synthetic(theta, "wsd:steps=2400,lr=1e-3,warmup=240,cooldown=0.2,shape=1-sqrt", 0.0, 2)
    errors = {}
    for method in ("lbfgs", "luo2025"):
        fit = fit_curves(train, law="multipower", bootstrap=0, method=method)
        errors[method] = abs(fit.predict(wsd.lrs, wsd.steps[-1:])[-1] / wsd.loss[-1] - 1)
    assert errors["lbfgs"] < 0.002 and errors["luo2025"] < 0.01, errors


@pytest.mark.slow  # > 10 s
def test_default_falls_back_to_converged_fit_where_the_protocol_leaves_the_domain():
    """Parameters far from the protocol's calibration (A ~ 0.01 below its AdamW step 5e-2, as on the built-in
    LM's 240-step curves): a step makes A < 0; the default then uses the converged fit and says so."""
    theta = [2.5, 0.0123, 1.4, 36.0, 0.01, 1.0, 1.0]
    train = [
        _synthetic(theta, "constant:steps=240,lr=3e-3,warmup=24", 3e-3, 0),
        _synthetic(theta, "cosine:steps=240,lr=3e-3,warmup=24,final=0.1", 3e-3, 1),
    ]
    forced = fit_curves(train, law="multipower", bootstrap=0, method="luo2025")
    assert not forced.diagnostics["success"] and "left the law's domain" in forced.diagnostics["message"]
    fit = fit_curves(train, law="multipower", bootstrap=0, cv=False)
    assert fit.diagnostics["method"] == "lbfgs" and "published protocol left" in fit.diagnostics["message"]
    assert fit.diagnostics["train_r2"] > 0.999 > forced.diagnostics["train_r2"]  # measured 0.9995 vs 0.9875


def test_bootstrap_is_seeded_and_json_round_trips(tmp_path):
    curves = load("25", TRAIN)
    fit = fit_curves(curves, law="annealing", bootstrap=3, seed=7, cv=False)
    again = fit_curves(curves, law="annealing", bootstrap=3, seed=7, cv=False)
    assert fit.bootstrap_params == again.bootstrap_params and len(fit.bootstrap_params) == 3
    for name, value in fit.params_.items():
        lo, hi = fit.intervals[name]
        assert lo <= value <= hi
    loaded = CurveFit.load(fit.save(tmp_path / "fit.json"))
    assert loaded == fit
    spec = SPECS["wsd_20000_24000"]
    a, b = fit.predict_interval(spec), loaded.predict_interval(spec)
    np.testing.assert_array_equal(a.value, b.value)
    np.testing.assert_array_equal(fit.predict(spec), a.value)  # point predictions: the interval's value
    # without --cv the law's error is the in-sample residual spread, added to the bootstrap band
    err = fit.diagnostics["model_error"]
    assert err["method"] == "residuals" and 1e-4 < err["rel_sd"] < 5e-3 and err["n"] == fit.diagnostics["n_points"]
    assert a.method == "bootstrap+law-error" and a.details["law_error"]["method"] == "residuals"
    assert np.all(a.lo <= a.lo_params) and np.all(a.hi >= a.hi_params)
    np.testing.assert_array_equal(a.hi, b.hi)
    assert a.lo[-1] <= a.final_loss <= a.hi[-1]


def test_prediction_reports_extrapolation():
    fit = published_fit("25")
    long = fit.predict_interval(SPECS["cosine_72000"], steps=[72000])
    x = long.ratios
    assert x["beyond_fitted"] and x["steps_ratio"] == pytest.approx(72000 / 23936)
    assert x["area_ratio"] == pytest.approx(Schedule.parse(SPECS["cosine_72000"]).lrs(72000).sum() / load("25", ["constant_24000"])[0].area)
    assert long.extrapolation == max(x["steps_ratio"], x["area_ratio"])  # the factor: the larger ratio
    inside = fit.predict_interval(SPECS["wsdcon_3"], steps=[14000])
    assert not inside.ratios["beyond_fitted"] and inside.extrapolation == 1.0


def test_power_law_fits_constant_curve():
    fit = fit_curves(load("25", ["constant_24000"]), law="power", bootstrap=0)
    assert fit.diagnostics["train_mean_rel_error"] < 0.003
    assert 0 < fit.params_["alpha"] < 3 and fit.params_["L0"] < 3.35


def test_schedule_from_step_lr_table(tmp_path):
    sched = Schedule.parse(SPECS["wsdcon_9"])
    path = tmp_path / "sched.csv"
    # a sparse table: the rate holds until the next listed step
    rates = sched.lrs()
    change = np.r_[0, np.flatnonzero(np.diff(rates)) + 1, len(rates) - 1]  # the last row marks the last step
    pd.DataFrame({"step": change, "lr": rates[change]}).to_csv(path, index=False)
    table = TableSchedule.read(str(path))
    np.testing.assert_allclose(table.lrs(), rates)
    assert table.warmup == sched.warmup
    fit = published_fit("25")
    np.testing.assert_allclose(fit.predict(str(path), [14000]), fit.predict(sched, [14000]))


def test_wrong_schedule_for_recorded_rates_is_caught():
    with pytest.raises(ScaletuneError, match="disagrees with schedule"):
        read_curves(DATA / "csv_25" / "cosine_24000.csv", SPECS["constant_24000"], max_step=24000)
    with pytest.raises(ScaletuneError, match="'cosine_24000'") as missing:  # rates at a few steps only: no schedule
        read_curves(DATA / "csv_25" / "cosine_24000.csv")
    assert missing.value.hint  # what to give instead, in the library's words


def test_dense_recorded_rates_need_no_schedule(tmp_path):
    sched = Schedule.parse("cosine:steps=600,lr=1e-3,warmup=60,final=0.1")
    steps = np.arange(1, 601)  # run_lm's convention: loss after `step` updates, lr of the update just done
    loss = 3 + 2 * (sched.lrs().cumsum() + 1e-3) ** -0.3
    df = pd.DataFrame({"run_id": "a", "step": steps, "lr": sched.lrs(), "loss": loss})
    df = pd.concat([df, df.assign(run_id="b", loss=loss + 0.01)])
    df.to_csv(tmp_path / "curves.csv", index=False)
    curves = read_curves(tmp_path / "curves.csv")
    assert [c.name for c in curves] == ["a", "b"]
    assert curves[0].warmup == 60 and curves[0].schedule == "recorded"


def test_optimise_and_compare_with_published_fit():
    fit = published_fit("25")
    best, tried = optimise_schedule(fit, 24000, "wsd")
    assert best.final_loss == min(c.final_loss for c in tried)
    cooldown = Schedule.parse(best.spec).cooldown
    assert 0.05 < cooldown < 0.6
    ranked = compare_schedules(fit, ["constant", "cosine:final=0.1", best.spec], 24000)
    assert ranked[0].spec == best.spec and ranked[-1].spec.startswith("constant")
    free, _ = optimise_schedule(fit, 24000, "free", knots=10)
    assert free.spec.startswith("free:") and free.final_loss <= best.final_loss + 2e-4
    assert np.all(np.diff(free.rates[2160:]) <= 1e-15)  # non-increasing after warm-up


def _write_published(tmp_path) -> str:
    return str(published_fit("25").save(tmp_path / "pub.json"))


def _annealing_fit_25(*options: str) -> list[str]:
    """`scaletune curves fit` of the annealing law on the three 25M training curves (cut at 24,000 steps)."""
    files = [str(DATA / "csv_25" / f"{n}.csv") for n in TRAIN]
    return ["curves", "fit", *files, "--law", "annealing", "--schedules", str(DATA / "schedules.csv"), "--max-step", "24000", *options]


@pytest.mark.slow  # > 10 s
def test_cli_fit_predict_compare_optimise(tmp_path, capsys):
    out = tmp_path / "fit.json"
    rc = main(_annealing_fit_25("--boot", "2", "--out", str(out), "--plot", str(tmp_path / "fit.png")))
    assert rc == 0 and out.exists() and (tmp_path / "fit.png").stat().st_size > 10000
    capsys.readouterr()
    fit = CurveFit.load(out)  # what --out wrote: the chosen lam, the held-out law error, 2 bootstrap draws (the old --boot)
    assert fit.options["lam"] in (0.99, 0.995, 0.998, 0.999, 0.9995) and len(fit.bootstrap_params) == 2
    assert fit.diagnostics["model_error"]["method"] == "leave-one-curve-out" and fit.diagnostics["model_error"]["n"] == 3
    rc = main(["curves", "predict", str(out), "--schedule", "cosine:final=0.1", "--steps", "24000", "--every", "5000"])
    assert rc == 0 and capsys.readouterr().out.count("\n") == 5 + 6  # schedule, final loss, interval, extrapolation, header; 6 steps
    rc = main(["curves", "predict", str(out), "--schedule", "cosine:final=0.1", "--steps", "24000", "--every", "5000", "--json"])
    pred = json.loads(capsys.readouterr().out)
    expect = fit.predict_interval(SPECS["cosine_24000"], pred["steps"])
    assert rc == 0 and pred["steps"] == [2160, 7160, 12160, 17160, 22160, 24000] and pred["method"] == "bootstrap+law-error"
    np.testing.assert_allclose(pred["value"], expect.value)
    np.testing.assert_allclose(pred["hi"], expect.hi)
    assert pred["details"]["law_error"]["method"] == "leave-one-curve-out"
    assert pred["extrapolation"] == pytest.approx(24000 / 23936)  # one step past the fitted curves' last logged step
    pub = _write_published(tmp_path)
    rc = main(["curves", "predict", pub, "--schedule", "wsd:decay_start=20000,shape=exp,final=0.1", "--steps", "24000", "--json"])
    pred = json.loads(capsys.readouterr().out)
    assert rc == 0 and 3.2 < pred["final_loss"] < 3.35
    assert pred["method"] == "point" and pred["final_interval"] == pred["final_interval_params"]  # no bootstrap, no law error recorded
    observed = pd.read_csv(DATA / "csv_25" / "wsd_20000_24000.csv")
    assert abs(pred["final_loss"] - observed.loss.iloc[-2]) / observed.loss.iloc[-2] < 0.005
    rc = main(
        [
            "schedule",
            "compare",
            pub,
            "--steps",
            "24000",
            "--candidates",
            "constant",
            "--candidates",
            "cosine:final=0.1",
            "--json",
            "--plot",
            str(tmp_path / "cmp.png"),
        ]
    )
    cmp = json.loads(capsys.readouterr().out)
    assert rc == 0 and cmp["candidates"][0]["schedule"].startswith("cosine") and (tmp_path / "cmp.png").exists()
    rc = main(["schedule", "optimise", pub, "--steps", "24000", "--json"])
    assert rc == 0 and json.loads(capsys.readouterr().out)["best"]["schedule"].startswith("wsd")


def test_cli_evaluate_scores_held_out_curves_as_the_paper(tmp_path, capsys):
    """`curves evaluate`: the paper's per-curve-averaged metrics (the same numbers as `evaluate_fit`), pooled
    ones, and each final loss against its 95% prediction interval."""
    pub = _write_published(tmp_path)
    names = ["wsd_20000_24000", "wsdld_20000_24000", "wsdcon_3", "wsdcon_18"]
    files = [str(DATA / "csv_25" / f"{n}.csv") for n in names]
    rc = main(["curves", "evaluate", pub, *files, "--schedules", str(DATA / "schedules.csv"), "--max-step", "24000", "--json"])
    m = json.loads(capsys.readouterr().out)
    ref = evaluate_fit(published_fit("25"), load("25", names))
    assert rc == 0 and m["n_curves"] == 4 and m["n_points"] == ref["n_points"]
    assert m["mean_rel_error"] == pytest.approx(ref["mean_rel_error"]) and m["r2"] == pytest.approx(ref["r2"])
    assert m["pooled"]["mean_rel_error"] == pytest.approx(ref["pooled"]["mean_rel_error"])
    for row, c in zip(m["per_curve"], load("25", names)):  # the published fit has no bootstrap: its interval is a point
        assert (
            row["final_step"] == c.fitted_points()[0][-1] and row["final_interval"][0] == row["final_interval"][1] == row["predicted_final"]
        )
        assert abs(row["final_rel_error"]) < 0.005 and row["final_covered"] is False
    rc = main(["curves", "evaluate", pub, *files[:1], "--schedules", str(DATA / "schedules.csv"), "--max-step", "24000"])
    text = capsys.readouterr().out
    assert rc == 0 and "average over curves" in text and "final losses in their 95% interval: 0/1" in text


@pytest.mark.parametrize(
    "args,needle",
    [
        (["curves", "fit", "missing.csv", "--schedule", "constant:steps=10,lr=1"], "no such file"),
        (["curves", "fit", str(DATA / "csv_25" / "cosine_24000.csv")], "give its schedule"),
        (["curves", "fit", str(DATA / "csv_25" / "cosine_24000.csv"), "--schedule", "cosine:steps=100,lr=3e-4"], "has 100 steps"),
        (["curves", "fit", str(DATA / "csv_25" / "cosine_24000.csv"), "--schedule", "cosine:lr=3e-4"], "needs steps="),
        (["curves", "fit", str(DATA / "schedules.csv"), "--schedule", "constant:steps=10,lr=1"], "missing column 'step'"),
        (["curves", "predict", str(DATA / "schedules.csv"), "--schedule", "constant"], "not a curve-fit JSON"),
        (["schedule", "optimise", "nofit.json", "--steps", "100"], "no such fit file"),
        (["curves", "evaluate", "nofit.json", str(DATA / "csv_25" / "wsdcon_3.csv"), "--schedule", "constant"], "no such fit file"),
    ],
)
def test_cli_bad_input_is_one_line_exit_2(args, needle, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1 and "Traceback" not in err


def test_cli_bad_schedule_and_budget(tmp_path, capsys):
    pub = _write_published(tmp_path)
    assert main(["curves", "predict", pub, "--schedule", "wsd:shape=zigzag", "--steps", "10000"]) == 2
    assert "zigzag" in capsys.readouterr().err
    assert main(["schedule", "compare", pub, "--steps", "1000", "--candidates", "constant"]) == 2
    assert "warm-up" in capsys.readouterr().err
    bad = tmp_path / "bad.csv"
    bad.write_text("step,loss\n0,3.0\n10,-1\n")
    assert main(["curves", "fit", str(bad), "--schedule", "constant:steps=20,lr=1e-3"]) == 2
    assert "non-positive value at step 10" in capsys.readouterr().err


def test_run_table_curve_file_with_schedules_from_the_run_table(tmp_path, capsys):
    """The study export format: run_id, step, tokens, lr, loss (validation, empty where not evaluated),
    train_loss; schedules from the run table's `schedule` column."""
    fit = published_fit("25")
    frames, runs = [], []
    for run_id, spec in [
        ("s/r0/s0", "constant:steps=12000,lr=3e-4,warmup=2160"),
        ("s/r0/s1", "cosine:steps=12000,lr=3e-4,warmup=2160,final=0.1"),
    ]:
        sched = Schedule.parse(spec)
        steps = np.arange(1, 12001)
        val = np.full(len(steps), np.nan)
        evaluated = steps % 100 == 0
        val[evaluated] = fit.predict(sched, steps[evaluated]) * (1 + 0.001 * np.sin(steps[evaluated]))
        frames.append(
            pd.DataFrame({"run_id": run_id, "step": steps, "tokens": steps * 1024, "lr": sched.lrs(), "loss": val, "train_loss": 4.0})
        )
        runs.append({"run_id": run_id, "schedule": spec, "loss": val[-1]})
    pd.concat(frames).to_csv(tmp_path / "curves.csv", index=False)
    pd.DataFrame(runs).to_csv(tmp_path / "runs.csv", index=False)
    curves = read_curves(tmp_path / "curves.csv", runs=pd.read_csv(tmp_path / "runs.csv"))
    assert [len(c.steps) for c in curves] == [120, 120] and curves[1].schedule.startswith("cosine")
    rc = main(
        ["curves", "fit", str(tmp_path / "curves.csv"), "--runs", str(tmp_path / "runs.csv"), "--law", "annealing", "--boot", "0", "--json"]
    )
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["diagnostics"]["n_curves"] == 2 and out["diagnostics"]["train_mean_rel_error"] < 0.003


def test_cosine_family_and_free_form_needs_multipower(tmp_path, capsys):
    fit = published_fit("25")
    best, tried = optimise_schedule(fit, 24000, "cosine")
    assert best.spec.startswith("cosine") and len(tried) == 26
    assert 0.0 < Schedule.parse(best.spec).final < 0.5  # an interior optimum: area traded against annealing
    ann = fit_curves(load("25", ["cosine_24000", "constant_24000"]), law="annealing", bootstrap=0)
    path = ann.save(tmp_path / "ann.json")
    assert main(["schedule", "optimise", str(path), "--steps", "24000", "--family", "free"]) == 2
    err = capsys.readouterr().err  # the annealing law rewards any decrease without limit: no free-form search
    assert err.count("\n") == 1 and "annealing" in err
    assert (
        main(
            [
                "curves",
                "predict",
                str(path),
                "--schedule",
                "cosine:final=0.1",
                "--out",
                str(tmp_path / "p.csv"),
                "--plot",
                str(tmp_path / "p.png"),
            ]
        )
        == 0
    )
    table = pd.read_csv(tmp_path / "p.csv")
    assert list(table.columns) == ["step", "lr", "loss", "lo", "hi", "lo_params", "hi_params"] and table.step.iloc[-1] == 23937
    # no bootstrap: the parameter band collapses to the prediction; the residual law error still widens it
    assert np.allclose(table.lo_params, table.loss) and np.all(table.lo < table.loss) and np.all(table.hi > table.loss)
    assert (tmp_path / "p.png").exists()


def test_leave_one_curve_out_reports_the_law_error(capsys):
    rc = main(_annealing_fit_25("--boot", "0", "--cv", "--json"))
    fit = CurveFit.from_json(capsys.readouterr().out)
    held = {h["curve"]: h for h in fit.diagnostics["cv"]}
    assert rc == 0 and set(held) == set(TRAIN)
    # a constant curve cannot teach annealing: leaving out the cosine run loses most of the cooldown benefit
    assert abs(held["cosine_24000"]["final_rel_error"]) > abs(held["constant_24000"]["final_rel_error"])
    assert all(abs(h["final_rel_error"]) < 0.05 for h in held.values())


@pytest.mark.slow  # > 10 s
def test_law_error_widens_intervals_to_cover_held_out_final_losses():
    """Parameter-only (bootstrap) intervals miss most held-out final losses; adding the leave-one-curve-out
    law error (Student t, 3 held-out curves) covers most. Annealing keeps it cheap; 25M and 100M, 12 finals."""
    covered = {"params": 0, "total": 0}
    for size in ("25", "100"):
        fit = fit_curves(load(size, TRAIN), law="annealing", bootstrap=10, seed=0, cv=True, resample="blocks")
        err = fit.diagnostics["model_error"]
        assert err["method"] == "leave-one-curve-out" and err["n"] == 3
        assert err["rel_sd"] == pytest.approx(np.sqrt(np.mean([h["final_rel_error"] ** 2 for h in fit.diagnostics["cv"]])))
        for name in TEST:  # the whole held-out curve: its final loss is the last logged step (up to 71,920)
            curve = read_curves(DATA / f"csv_{size}" / f"{name}.csv", SPECS[name])[0]
            pred = fit.predict_interval(curve.lrs, [int(curve.steps[-1])])
            (lo_p, hi_p), (lo, hi), y = pred.final_interval_params, pred.final_interval, curve.loss[-1]
            assert lo <= lo_p <= pred.final_loss <= hi_p <= hi
            # the law error is ~0.1-0.2% relative, the bootstrap band ~0.05%: the total is several times wider
            assert (hi - lo) > 2 * (hi_p - lo_p)
            covered["params"] += lo_p <= y <= hi_p
            covered["total"] += lo <= y <= hi
    assert covered["params"] <= 3, covered  # measured: 2 of 12
    assert covered["total"] >= 9, covered  # measured: 10 of 12


def test_whole_curve_bootstrap_fits_each_distinct_draw_once_and_covers_held_out_finals():
    """The bootstrap resamples whole curves (the independent units): 200 draws of 3 curves are at most 10
    distinct multisets, each fitted once. Its band covers the held-out final losses that the block bootstrap
    over points misses (annealing, 25M and 100M, 12 finals; measured: total interval 10 of 12)."""
    covered, draws = 0, set()
    for size in ("25", "100"):
        fit = fit_curves(load(size, TRAIN), law="annealing", seed=0)
        d = fit.diagnostics
        assert d["resample"] == "curves" and d["bootstrap"] == 200 and len(fit.bootstrap_params) == 200
        assert len(set(fit.bootstrap_params)) <= 10 and d["bootstrap_failed"] == 0
        assert d["cooldown_curves"] == ["wsdcon_9"] and d["warnings"] == []
        draws |= set(fit.bootstrap_params)
        for name in TEST:
            curve = read_curves(DATA / f"csv_{size}" / f"{name}.csv", SPECS[name])[0]
            lo, hi = fit.predict_interval(curve.lrs, [int(curve.steps[-1])]).final_interval
            covered += lo <= curve.loss[-1] <= hi
    assert covered >= 10, covered


def test_law_error_grows_with_the_step_ratio():
    """Beyond the longest fitted curve the law's error is scaled by 1 + ln(step ratio)."""
    fit = fit_curves(load("25", ["constant_24000", "cosine_24000"]), law="annealing", bootstrap=0)
    pred = fit.predict_interval(SPECS["constant_72000"], steps=[23936, 71808])
    half = (pred.hi - pred.lo) / 2 / pred.value
    assert half[1] / half[0] == pytest.approx(1 + np.log(71808 / 23936), rel=1e-6)


def test_without_a_sharp_decay_the_fit_says_the_cooldown_is_unidentified():
    fit = fit_curves(load("25", ["constant_24000", "cosine_24000"]), law="annealing", bootstrap=0, cv=False)
    assert fit.diagnostics["cooldown_curves"] == [] and "cooldown_unidentified" in fit.diagnostics["warnings"]


def test_short_curve_bootstrap_is_flagged_degenerate():
    """One curve of 4 logged points: every block-bootstrap replicate is the curve itself, so the interval has
    zero width; the fit says so instead of reporting [x, x] silently."""
    spec = "constant:steps=2000,lr=1e-3,warmup=100"
    curve = curve_from_arrays(spec, np.array([500, 1000, 1500, 2000]), np.array([3.2, 3.0, 2.9, 2.85]), schedule=spec)
    fit = fit_curves([curve], law="power", bootstrap=5)
    assert fit.diagnostics["resample"] == "blocks" and "degenerate_bootstrap" in fit.diagnostics["warnings"]


def test_protocol_choice_keeps_the_default_unless_clearly_beaten():
    from scaletune.curves.fit import _choose_protocol

    def held(*errors):
        return [{"mean_rel_error": e} for e in errors]

    # wins two of three folds, by less than two standard errors of the paired differences: default kept
    assert (
        _choose_protocol({"luo2025": held(0.00073, 0.00098, 0.00181), "lbfgs": held(0.00076, 0.00024, 0.0009)}, "luo2025")[0] == "luo2025"
    )
    # wins every fold by a consistent margin: switched
    assert _choose_protocol({"luo2025": held(0.002, 0.003, 0.0025), "lbfgs": held(0.001, 0.0019, 0.0016)}, "luo2025")[0] == "lbfgs"


def test_cli_predict_every_counts_optimizer_steps(tmp_path, capsys):
    fit = published_fit("25")
    path = fit.save(tmp_path / "fit.json")
    out = tmp_path / "pred.csv"
    assert main(["curves", "predict", str(path), "--schedule", SPECS["cosine_72000"], "--every", "5000", "--out", str(out)]) == 0
    steps = pd.read_csv(out).step.to_numpy()
    assert steps[0] == 2160 and steps[-1] == 72000 and np.all(np.diff(steps)[:-1] == 5000)
