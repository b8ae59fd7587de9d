"""`recommend` on a small stored real study (tests/data/hparams-demo): proxies of the built-in LM and the
target trained afterwards at the recommended and neighbouring rates."""

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from scaletune.cli import main
from scaletune.hparams import Method, find_optima, find_optimum, recommend
from scaletune.runtable import read_table

DATA = Path(__file__).parent / "data" / "hparams-demo"
TARGET = {"N": 707360.0, "N_nonembed": 615200.0, "D": 524288.0, "width": 160.0, "depth": 2.0, "seq_len": 64.0}


@pytest.fixture(scope="module")
def rec():
    runs = read_table(DATA / "runs.csv")
    return recommend(runs, TARGET, bootstrap=300, loss_bootstrap=60)


def test_every_scale_of_the_stored_sweep_is_bracketed():
    optima = find_optima(read_table(DATA / "runs.csv"), bootstrap=100)
    assert len(optima) == 9 and all(o.bracketed for o in optima)
    assert all(1e-3 < o.lr_ < 6e-3 for o in optima)


def test_recommendation_matches_what_the_target_measured(rec):
    measured = find_optimum(read_table(DATA / "target_runs.csv"), bootstrap=200)
    assert measured.bracketed
    # The measured optimum at the target lies inside the recommended interval (8.5x extrapolation in N).
    assert rec.lr.interval[0] <= measured.lr_ <= rec.lr.interval[1]
    assert rec.lr.extrapolation == pytest.approx(707360 / 83184, rel=0.01)
    # And the recommended rate is within one 2x grid step of the measured optimum. (Before issue 12 the
    # recommendation was lr*(N, D), the rate the demo trained these five runs around, and the test asked
    # for it to be the best of them; the held-out selection now keeps a simpler rule within noise of it.)
    target = pd.read_csv(DATA / "target_runs.csv")
    assert abs(math.log(rec.lr.value / measured.lr_)) < math.log(2)
    assert rec.lr.method in (Method.LR_ND, Method.LR_C, Method.LR_BAND_OLS, Method.LR_JOINT)
    # The loss predicted from the proxies' chinchilla fit covers the measured loss at the recommended rate.
    assert rec.loss is not None and rec.loss.interval[0] <= float(target["loss"].min()) <= rec.loss.interval[1]
    assert abs(rec.loss.value / float(target["loss"].min()) - 1) < 0.03


def test_batch_size_is_carried_over_when_not_swept(rec):
    assert rec.batch_size.value == 1024 and rec.batch_size.method == Method.BATCH_AS_PROXIES
    assert rec.batch_sequences.value == 16
    assert rec.param == "mup" and rec.schedule.startswith("cosine:steps=512,")
    assert rec.warmup["steps"] == round(rec.warmup["fraction"] * 512)


def test_recommend_command_on_the_stored_study(capsys):
    args = [
        "recommend",
        str(DATA / "runs.csv"),
        "--target",
        ",".join(f"{k}={v:g}" for k, v in TARGET.items()),
        "--bootstrap",
        "100",
        "--json",
    ]
    assert main(args) == 0
    doc = json.loads(capsys.readouterr().out)
    assert math.isclose(doc["target"]["N"], TARGET["N"])
    assert doc["published"]["steplaw"]["lr"] == pytest.approx(1.79 * 615200**-0.713 * 524288**0.307)
    assert doc["laws"]["transfer"]["rows"], "muP transfer across widths is reported per token budget"
