"""The train area's commands through `scaletune.cli.main`: outputs, files, and one-line errors (exit 2)."""

import json

import pandas as pd
import pytest

from scaletune.cli import main


def test_train_writes_row_and_curve(tmp_path, capsys):
    out = tmp_path / "run.json"
    rc = main(
        [
            "train",
            "--width",
            "32",
            "--depth",
            "1",
            "--tokens",
            "4096",
            "--lr",
            "0.01",
            "--schedule",
            "wsd:cooldown=0.5,shape=1-sqrt",
            "--set",
            "batch_size=1024,seq_len=64,eval_tokens=2048",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    row = json.loads(out.read_text())
    assert row["status"] == "ok" and row["D"] == 4096 and len(row["curve"]) == 4
    assert row["schedule"] == "wsd:steps=4,lr=0.01,cooldown=0.5,shape=1-sqrt"
    assert row["loss"] < 5.6
    assert "run-table row" in capsys.readouterr().out


def test_param_table_json_for_builtin_and_user_model(tmp_path, capsys):
    assert main(["param-table", "--model", "micro", "--width", "128", "--base-width", "32", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    hidden = next(r for r in rows if r["name"] == "blocks.0.mlp.up.weight")
    assert hidden["role"] == "hidden" and hidden["lr"] == pytest.approx(0.01 / 4)
    src = tmp_path / "mymodel.py"
    src.write_text(
        "import torch.nn as nn\n"
        "def build():\n"
        "    return nn.Sequential(nn.Linear(5, 48), nn.Tanh(), nn.Linear(48, 48), nn.Tanh(), nn.Linear(48, 2))\n"
    )
    assert main(["param-table", "--model", f"{src}:build", "--width", "48", "--base-width", "12", "--json"]) == 0
    roles = {json.loads(line)["name"]: json.loads(line)["role"] for line in capsys.readouterr().out.splitlines()}
    assert roles["0.weight"] == "input" and roles["2.weight"] == "hidden" and roles["4.weight"] == "readout"


def test_coord_check_writes_table_and_plot(tmp_path, capsys):
    rc = main(
        ["coord-check", "--param", "mup", "--widths", "32,64", "--steps", "1", "--out", str(tmp_path), "--set", "batch_size=256,seq_len=32"]
    )
    assert rc == 0
    table = pd.read_csv(tmp_path / "coord_check.csv")
    assert set(table["width"]) == {32, 64} and set(table["step"]) == {0, 1} and (table["rms"] > 0).all()
    assert (tmp_path / "coord_check.png").stat().st_size > 1000
    assert "slope_hidden" in capsys.readouterr().out


def test_schedule_plot(tmp_path, capsys):
    out = tmp_path / "s.png"
    assert (
        main(["schedule-plot", "cosine:final=0.1", "wsd:warmup=10,shape=1-sqrt", "--steps", "100", "--lr", "1e-3", "--out", str(out)]) == 0
    )
    assert out.stat().st_size > 1000
    assert "cosine:steps=100,lr=0.001,final=0.1" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, word",
    [
        (["train", "--width", "32", "--depth", "2", "--tokens", "1e4", "--lr", "-1"], "lr must be positive"),
        (["train", "--width", "32", "--depth", "2", "--tokens", "1e4", "--lr", "1e-3", "--set", "bogus=1"], "bogus"),
        (["param-table", "--model", "nope.module:build", "--width", "8"], "cannot load"),
        (["param-table", "--model", "missing.py:build", "--width", "8"], "no such file"),
        (["param-table", "--model", "tiny", "--param", "completep", "--alpha", "2"], "alpha"),
        (["coord-check", "--widths", "32"], "two positive widths"),
        (["schedule-plot", "cosine"], "needs steps= and lr="),
    ],
)
def test_user_mistakes_are_one_line_exit_2(argv, word, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert word in err and len(err.splitlines()) == 1
