"""The curve pruner: predicted final losses from partial curves, and pruning in a real Optuna study."""

from __future__ import annotations

import numpy as np
import optuna
import pytest

from scaletune.curves import read_curves
from scaletune.curves.laws import get_curve_law, prepare
from scaletune.curves.pruner import CurvePruner
from scaletune.errors import ScaletuneError
from scaletune.schedules import Schedule
from test_curves import DATA, SPECS, published_fit

optuna.logging.set_verbosity(optuna.logging.WARNING)
SPEC = "cosine:steps=4000,warmup=200,final=0.1"
THETA = np.array([3.04045406, 0.52468604, 0.50786857, 363.78751622, 2.06560812, 0.58279013, 0.64142257])


def sweep_curve(lr: float, steps: np.ndarray, seed: int) -> np.ndarray:
    """An LR-sweep curve: the published 25M multipower law under the trial's cosine schedule, plus a
    penalty for a peak LR away from 3e-3 (the U-shape of an LR sweep) and evaluation noise."""
    sched = Schedule.parse(SPEC, lr=lr)
    law = get_curve_law("multipower").evaluate(THETA, prepare(sched.lrs(), sched.warmup, steps), {})[0]
    noise = np.random.default_rng(seed).normal(0, 0.002, len(steps))
    return law + 0.08 * np.log(lr / 3e-3) ** 2 + noise


def run_sweep(pruner) -> tuple[optuna.Study, dict, int]:
    lrs = [3e-3, 1e-4, 1e-3, 3e-4, 1e-2, 2e-3, 5e-3, 6e-4, 4e-3, 2e-4]
    study = optuna.create_study(pruner=pruner, sampler=optuna.samplers.RandomSampler(seed=0))
    for lr in lrs:
        study.enqueue_trial({"lr": lr})
    report_at = np.arange(500, 4001, 500)
    used = {"steps": 0}
    true_final = {}

    def objective(trial):
        lr = trial.suggest_float("lr", 1e-4, 1e-2, log=True)
        curve = sweep_curve(lr, report_at, trial.number)
        true_final[trial.number] = curve[-1]
        for step, value in zip(report_at[:-1], curve[:-1]):
            trial.report(float(value), int(step))
            if trial.should_prune():
                used["steps"] += int(step)
                raise optuna.TrialPruned()
        used["steps"] += 4000
        return float(curve[-1])

    study.optimize(objective, n_trials=len(lrs))
    return study, true_final, used["steps"]


@pytest.mark.slow  # > 10 s
def test_curve_pruner_saves_compute_and_keeps_the_best_trial():
    pruner = CurvePruner(schedule=SPEC, band=0.01, min_trials=2)
    study, true_final, steps = run_sweep(pruner)
    best_true = min(true_final.values())
    pruned = [t.number for t in study.trials if t.state == optuna.trial.TrialState.PRUNED]
    assert study.best_value == pytest.approx(best_true)  # the best trial ran to the end
    assert len(pruned) >= 3 and steps <= 0.75 * 4000 * len(true_final)
    for n in pruned:  # everything pruned was truly outside the near-optimal band
        assert true_final[n] > best_true * 1.01
    assert pruner.fit_ is not None and pruner.fit_.law == "annealing"


def test_nothing_is_pruned_before_enough_trials_complete():
    pruner = CurvePruner(schedule=SPEC, min_trials=20)
    study, _, steps = run_sweep(pruner)
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials) and steps == 40000


def test_predicted_final_loss_of_a_real_partial_curve():
    """cosine_72000 (25M) seen to one third: the final loss lies in the predicted interval."""
    pruner = CurvePruner(fit=published_fit("25"))
    curve = read_curves(DATA / "csv_25" / "cosine_72000.csv", SPECS["cosine_72000"])[0]
    seen = curve.steps <= 24000
    final, low, high = pruner.predict_final(Schedule.parse(SPECS["cosine_72000"]), curve.steps[seen], curve.loss[seen])
    observed = curve.loss[-1]
    assert low <= observed <= high and abs(final - observed) / observed < 0.01


def test_constructed_from_simple_options_and_bad_options_are_user_errors():
    CurvePruner(**{"schedule": "wsd:steps=1000,cooldown=0.2", "band": 0.02, "z": 1.5})
    with pytest.raises(ScaletuneError):
        CurvePruner(band=-1)
    with pytest.raises(ScaletuneError, match="shape"):
        CurvePruner(schedule="wsd:steps=1000,shape=zigzag")
    with pytest.raises(ScaletuneError, match="no such fit file"):
        CurvePruner(fit="missing.json")


@pytest.mark.slow  # > 10 s
def test_curves_from_a_study_fit_like_curves_from_files():
    from scaletune.curves import curves_from_study, fit_curves

    study = optuna.create_study()
    for lr in (1e-3, 3e-3):
        study.enqueue_trial({"lr": lr})
        trial = study.ask({"lr": optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True)})
        steps = np.arange(500, 4001, 250)
        for step, value in zip(steps, sweep_curve(trial.params["lr"], steps, 0)):
            trial.report(float(value), int(step))
        trial.set_user_attr("schedule", Schedule.parse(SPEC, lr=trial.params["lr"]).spec())
        study.tell(trial, float(value))
    curves = curves_from_study(study)
    assert len(curves) == 2 and len(curves[0].steps) == 15
    fit = fit_curves(curves, law="annealing", bootstrap=0, level_per_curve=True)
    assert fit.diagnostics["train_mean_rel_error"] < 0.01 and len(fit.diagnostics["L0_offsets"]) == 1
    with pytest.raises(ScaletuneError, match="no finished trial"):
        curves_from_study(optuna.create_study())
