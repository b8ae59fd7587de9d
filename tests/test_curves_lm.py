"""Built-in LM check (small): fit on a constant-rate and a cosine run of `run_lm`, predict a WSD run's
final loss before running it, then run it and compare."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

from scaletune.curves import curve_from_arrays, fit_curves  # noqa: E402
from scaletune.schedules import Schedule  # noqa: E402
from scaletune.train.trainer import run_lm  # noqa: E402

STEPS = 160
BASE = {
    "width": 32,
    "depth": 1,
    "batch_size": 512,
    "seq_len": 64,
    "tokens": STEPS * 512,
    "lr": 1e-2,
    "warmup": 0.1,
    "eval_every": 10,
    "eval_tokens": 4096,
    "threads": 1,
    "seed": 0,
}


def lm_curve(schedule: str):
    row = run_lm({**BASE, "schedule": schedule})
    pts = [(c["step"], c["val_loss"]) for c in row["curve"] if c["val_loss"] is not None]
    steps, loss = zip(*pts)
    return row, curve_from_arrays(schedule, steps, loss, None, row["schedule"])


@pytest.mark.slow  # > 10 s
def test_fit_constant_and_cosine_predicts_wsd_final_loss():
    curves = [lm_curve("constant")[1], lm_curve("cosine:final=0.1")[1]]
    fit = fit_curves(curves, law="annealing", bootstrap=0)
    wsd, _ = lm_curve("wsd:cooldown=0.25,shape=linear")
    pred = fit.predict(Schedule.parse(wsd["schedule"]), [STEPS])[-1]
    assert wsd["status"] == "ok"
    # the WSD run ends below the constant run and the law says so before seeing it
    assert pred < curves[0].loss[-1]
    assert abs(pred - wsd["loss"]) / wsd["loss"] < 0.02
