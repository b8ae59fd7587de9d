"""`scaletune optimum` and `scaletune recommend` on run tables: numbers, JSON, and bad input (exit code 2)."""

import json
import math

import numpy as np
import pandas as pd
import pytest

from scaletune.cli import main
from scaletune.hparams.synthetic import Landscape

LADDER = [(n, d) for n in (1e7, 3e7, 1e8) for d in (1e9, 4e9)]


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    land = Landscape(noise=0.001)
    df = land.sweep(LADDER, lr_factors=2.0 ** np.arange(-3, 4), batch_factors=2.0 ** np.arange(-2, 3), seed=1)
    df["warmup"] = (0.05 * df.D / df.batch_size).round()
    df["schedule"] = "wsd:steps=1000,lr=0.001,warmup=50,cooldown=0.2,shape=1-sqrt"
    df["param"] = "sp"
    df["seq_len"] = 2048
    path = tmp_path_factory.mktemp("hp") / "runs.csv"
    df.to_csv(path, index=False)
    return land, path


def test_recommend_json_has_every_quantity_with_interval_and_extrapolation(table, capsys):
    land, path = table
    assert main(["recommend", str(path), "--target", "N=1e9,D=2e10", "--bootstrap", "200", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    lr = doc["lr"]
    assert lr["interval"][0] <= float(land.lr_opt(1e9, 2e10)) <= lr["interval"][1]
    # issue 12: the distance from the ladder is joint in (ln N, ln D): 10x in N and 5x in D beyond its corner
    assert lr["extrapolation"] == pytest.approx(math.exp(math.hypot(math.log(10), math.log(5))), rel=1e-6)
    b = doc["batch_size_tokens"]
    assert b["interval"][0] <= float(land.batch_opt(2e10)) <= b["interval"][1]
    assert doc["batch_size_sequences"]["value"] == pytest.approx(b["value"] / 2048)
    assert doc["steps"] == int(2e10 // b["value"])
    assert doc["warmup"]["fraction"] == pytest.approx(0.05, abs=0.002)
    assert doc["schedule"].startswith(f"wsd:steps={doc['steps']},lr=") and "shape=1-sqrt" in doc["schedule"]
    assert doc["param"] == "sp"
    loss = doc["loss_nats_per_token"]
    assert loss["interval"][0] <= loss["value"] <= loss["interval"][1] and loss["extrapolation"] > 1
    # The synthetic landscape uses StepLaw's exponents, so StepLaw's own numbers must agree with ours.
    assert doc["published"]["steplaw"]["lr"] == pytest.approx(1.79 * 1e9**-0.713 * 2e10**0.307)
    assert doc["published"]["steplaw"]["lr_inside_interval"]
    assert set(doc["laws"]["laws"]) >= {"lr_ND", "batch_D", "lr_C"}


def test_recommend_table_output_and_files(table, tmp_path, capsys):
    _, path = table
    assert main(["recommend", str(path), "--target", "N=1e9,D=2e10", "--bootstrap", "100", "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert "learning rate" in out and "steplaw" in out and "deepseek" in out and "held-out check" in out
    rec = json.loads((tmp_path / "o" / "recommendation.json").read_text())
    assert math.isfinite(rec["lr"]["value"])
    assert (tmp_path / "o" / "sweeps.png").stat().st_size > 10_000
    assert (tmp_path / "o" / "laws.png").stat().st_size > 10_000


def test_optimum_command_reports_unbracketed_scales(tmp_path, capsys):
    land = Landscape(noise=0.0005)
    df = land.sweep([(1e7, 1e9)], lr_factors=2.0 ** np.arange(-3, 4), seed=0)
    low = land.sweep([(3e7, 1e9)], lr_factors=2.0 ** np.arange(-8, -2), seed=0)  # every rate too small
    path = tmp_path / "r.csv"
    pd.concat([df, low]).to_csv(path, index=False)
    assert main(["optimum", str(path), "--bootstrap", "50", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    first, second = doc["optima"]
    assert first["bracketed"] and not second["bracketed"]
    assert second["next_lrs"][0] == pytest.approx(2 * low["lr"].max())
    assert main(["optimum", str(path), "--bootstrap", "20"]) == 0
    assert "not bracketed" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args, words",
    [
        (["--target", "N=1e9"], "target needs D"),
        (["--target", "N=1e9,D=-5"], "must be positive"),
        (["--target", "N=1e9,D=abc"], "not a number"),
    ],
)
def test_recommend_bad_target(table, capsys, args, words):
    _, path = table
    assert main(["recommend", str(path), *args]) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1


def test_bad_tables_name_the_problem(tmp_path, capsys):
    missing = tmp_path / "m.csv"
    missing.write_text("N,D,lr\n1,2,3\n")
    assert main(["optimum", str(missing)]) == 2
    assert "missing column 'loss'" in capsys.readouterr().err
    neg = tmp_path / "n.csv"
    neg.write_text("N,D,lr,loss,status\n" + "".join(f"1e6,1e7,{lr},3.0,ok\n" for lr in (1e-3, -2e-3, 4e-3)))
    assert main(["optimum", str(neg)]) == 2
    assert "'lr' has a non-positive" in capsys.readouterr().err
    assert main(["recommend", str(tmp_path / "nope.csv"), "--target", "N=1,D=1"]) == 2
    assert "no such file" in capsys.readouterr().err
    two = tmp_path / "t.csv"
    two.write_text("N,D,lr,loss\n1e6,1e7,1e-3,3.0\n1e6,1e7,2e-3,2.9\n")
    assert main(["recommend", str(two), "--target", "N=1e7,D=1e8"]) == 2
    assert "3+ distinct learning rates" in capsys.readouterr().err
