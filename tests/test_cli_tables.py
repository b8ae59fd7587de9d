"""Terminal tables that fit: every command's tables rendered at 80 and 200 columns, no cell cut ('…'), every
number whole, no line longer than the width; --wide keeps each row on one line."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest
from rich.console import Console

from scaletune.cli import main
from scaletune.cli._tables import Col, FitTable, _plain, set_wide
from scaletune.hparams import Method, describe
from scaletune.results import Prediction

DATA = Path(__file__).parent / "data"
RUNS = DATA / "hparams-demo" / "runs.csv"
TARGET = "N=707360,N_nonembed=615200,D=524288,width=160,depth=2,seq_len=64"
NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:e[-+]?\d+)?%?")


def render(table: FitTable, width: int) -> str:
    console = Console(width=width, file=io.StringIO(), color_system=None)
    console.print(table, crop=False)
    return console.file.getvalue()


def assert_fits(table: FitTable, width: int) -> str:
    """No line wider than ``width``, no ellipsis, every number of every cell whole in the output."""
    text = render(table, width)
    assert max(len(line) for line in text.splitlines()) <= width, text
    assert "…" not in text
    for row in table.rows:
        for cell in row:
            for number in NUMBER.findall(_plain(cell)):
                assert number in text, (number, cell)
    return text


@pytest.fixture
def tables(monkeypatch):
    """The FitTables the commands print, recorded as they are rendered."""
    seen: list[FitTable] = []
    original = FitTable.__rich_console__

    def recording(self, console, options):
        seen.append(self)
        yield from original(self, console, options)

    monkeypatch.setattr(FitTable, "__rich_console__", recording)
    yield seen
    set_wide(False)


def run(capsys, monkeypatch, width: int, *argv) -> str:
    monkeypatch.setenv("COLUMNS", str(width))
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


def check_command(capsys, monkeypatch, tables, *argv, n_tables: int | None = None) -> dict[int, str]:
    """Run the command at 80 and 200 columns; every table it printed fits both widths."""
    outs = {}
    for width in (80, 200):
        tables.clear()
        outs[width] = run(capsys, monkeypatch, width, *argv)
        printed = list(tables)  # (rendering them again below records them again)
        assert len(printed) == n_tables if n_tables is not None else len(printed) > 0
        assert "…" not in outs[width]
        for t in printed:
            text = assert_fits(t, width)
            assert text in outs[width] or all(line.rstrip() in outs[width] for line in text.splitlines())
    return outs


def test_fit_table_moves_notes_to_footnotes_then_low_priority_columns_below():
    rows = [
        ["learning rate", "0.00176", "[0.000669, 0.006]", "x8.5", "fitted lr_ND: lr = k N^a D^b on 9 bracketed scales"],
        ["batch size (tokens)", "1024", "(none)", "x1.0", "as in the proxies (batch size not swept)"],
    ]
    cols = [
        Col("quantity", "left", wrap=True),
        Col("value"),
        Col("95% interval", priority=1),
        Col("extrapolation", priority=2),
        Col("source", "left", note=True),
    ]
    table = FitTable("recommendation", cols, rows)
    wide = assert_fits(table, 200)
    assert "[1]" not in wide and any("fitted lr_ND" in line and "0.00176" in line for line in wide.splitlines())
    mid = assert_fits(table, 90)  # the sources become footnotes [1], [2]; the rest stays on one line per row
    assert any(line.startswith("[1] fitted lr_ND") for line in mid.splitlines())
    assert any("0.00176" in line and "[0.000669, 0.006]" in line and "x8.5" in line for line in mid.splitlines())
    wrapped = assert_fits(table, 70)  # the quantity wraps at spaces; every column stays
    assert "x8.5 │" in wrapped and "[0.000669, 0.006] │" in wrapped
    narrow = assert_fits(table, 60)  # the lowest priority (extrapolation) moves below, one line per row
    assert "learning rate: extrapolation: x8.5" in narrow.splitlines() and "[0.000669, 0.006] │" in narrow
    narrower = assert_fits(table, 40)  # then the interval too
    assert any(line.startswith("learning rate: 95% interval: [0.000669,") for line in narrower.splitlines())
    set_wide(True)
    try:
        one_line = render(table, 40)
    finally:
        set_wide(False)
    assert any("0.00176" in line and "fitted lr_ND: lr = k N^a D^b on 9 bracketed scales" in line for line in one_line.splitlines())


def test_optimum_tables_fit_and_show_every_optimum(capsys, monkeypatch, tables):
    outs = check_command(capsys, monkeypatch, tables, "optimum", RUNS, "--bootstrap", "50", n_tables=1)
    doc = json.loads(run(capsys, monkeypatch, 80, "optimum", RUNS, "--bootstrap", "50", "--json"))
    for o in doc["optima"]:
        for out in outs.values():
            assert f"{o['lr_']:.3g} [{o['lr_interval'][0]:.3g}, {o['lr_interval'][1]:.3g}]" in out
            assert f"{o['loss_']:.4f}" in out


@pytest.mark.slow  # the recommendation's backtest and bootstraps, twice: ~20-60 s
def test_recommend_tables_fit_at_80_and_200_columns_and_wide_keeps_rows_on_one_line(capsys, monkeypatch, tables):
    args = ("recommend", RUNS, "--target", TARGET, "--bootstrap", "40")
    outs = check_command(capsys, monkeypatch, tables, *args)
    rec = json.loads(run(capsys, monkeypatch, 80, *args, "--json"))
    lr, loss = rec["lr"], rec["loss_nats_per_token"]
    for out in outs.values():
        assert f"{lr['value']:.3g}" in out and f"[{lr['interval'][0]:.3g}, {lr['interval'][1]:.3g}]" in out
        assert f"{loss['value']:.4g}" in out
        for p in rec["published"].values():
            assert f"{p['lr']:.3g}" in out
    wide = run(capsys, monkeypatch, 80, *args, "--wide")
    row = next(line for line in wide.splitlines() if "learning rate" in line)
    source = describe(Prediction.from_dict({**lr, "method": Method[lr["method"]]}))  # the words rendered from method + details
    assert len(row) > 80 and f"[{lr['interval'][0]:.3g}, {lr['interval'][1]:.3g}]" in row and source[:30] in row


def test_fit_tables_fit(capsys, monkeypatch, tables, tmp_path):
    outs = check_command(
        capsys,
        monkeypatch,
        tables,
        "fit",
        "--example",
        "porian",
        "--bootstrap",
        "10",
        "--holdout",
        "C>=1e19",
        "--out",
        tmp_path / "fit.json",
    )
    fit = json.loads((tmp_path / "fit.json").read_text())
    for name, value in fit["params_"].items():
        for out in outs.values():
            assert f"{value:.6g}" in out


def test_isoflop_tables_fit(capsys, monkeypatch, tables):
    args = (
        "isoflop",
        DATA / "porian-isoflop" / "DERIVED_isoflop_points.csv",
        "--map",
        "C=flops,N=n,D=t_tokens",
        "--where",
        "dataset=rw,hparams=tuned,warmup=short,decay=const,param_count=standard,val=val",
        "--bootstrap",
        "20",
    )
    outs = check_command(capsys, monkeypatch, tables, *args)
    doc = json.loads(run(capsys, monkeypatch, 80, *args, "--json"))
    for row in doc["optima"]:
        for out in outs.values():
            assert f"{row['N_star']:.6g}" in out


def test_laws_predict_and_allocate_tables_fit(capsys, monkeypatch, tables):
    outs = check_command(capsys, monkeypatch, tables, "laws", n_tables=1)
    from scaletune.laws import law_names
    from scaletune.laws.published import PUBLISHED

    for out in outs.values():
        assert all(name in out for name in law_names()) and all(f"published:{n}" in out for n in PUBLISHED)
    check_command(capsys, monkeypatch, tables, "predict", "published:hoffmann", "--at", "N=7e10,D=1.4e12", n_tables=1)
    check_command(capsys, monkeypatch, tables, "allocate", "published:hoffmann", "--compute", "1e21", n_tables=1)


def test_param_table_fits_and_keeps_every_parameter(capsys, monkeypatch, tables):
    outs = check_command(capsys, monkeypatch, tables, "param-table", "--model", "tiny", n_tables=1)
    rows = [json.loads(line) for line in run(capsys, monkeypatch, 80, "param-table", "--model", "tiny", "--json").splitlines()]
    for out in outs.values():
        assert all(r["name"] in out for r in rows)


@pytest.mark.slow  # trains the built-in LM twice (a few seconds each)
def test_train_table_fits(capsys, monkeypatch, tables):
    outs = check_command(
        capsys, monkeypatch, tables, "train", "--width", "16", "--depth", "1", "--tokens", "8192", "--lr", "0.01", n_tables=1
    )
    table = tables[0]
    loss = next(r[1] for r in table.rows if r[0] == "loss")
    assert all(loss in out for out in outs.values())


def test_study_status_and_slurm_tables_fit_and_keep_every_number():
    from scaletune.cli._progress import slurm_table, status_table
    from scaletune.study.results import RungStatus
    from scaletune.study.slurm import SlurmJobStatus

    scale = {"width": 1024.0, "depth": 24.0, "D": 2.0e10, "N": 3.02e8}
    rungs = [
        RungStatus(
            k,
            scale,
            12,
            {"ok": 9, "diverged": 1, "failed": 1, "pruned": 1},
            2.71828 + k,
            {"lr": 0.00123, "warmup": 200, "beta2": 0.95, "schedule": "cosine:final=0.1"},
        )
        for k in range(3)
    ] + [RungStatus(3, scale, None, {"pending": 4})]
    table = status_table(rungs, "big: 36/36 trials finished")
    for width in (80, 200):
        text = assert_fits(table, width)
        assert "12/12" in text and "0/?" in text and "cosine:final=0.1" in text and "1024 24 2e+10" in text
        assert all(f"{k}," in text or f"{k} " in text for k in ("9 ok", "1 diverged", "1 pruned"))
    jobs = [SlurmJobStatus(str(1000 + i), "RUNNING", 0.0, i, [f"big/r{i}/s{j}" for j in range(4)], "log") for i in range(3)]
    for width in (80, 200):
        text = assert_fits(slurm_table(jobs), width)
        assert all(f"big/r2/s{j}" in text for j in range(4))
    set_wide(True)
    try:
        rows = render(status_table(rungs, "big"), 80).splitlines()
    finally:
        set_wide(False)
    assert any("2.7183" in r and "lr=0.00123" in r and "cosine:final=0.1" in r and len(r) > 80 for r in rows)


def test_import_table_fits(capsys, monkeypatch, tables, tmp_path):
    import pandas as pd

    pd.DataFrame(
        {
            "run": ["a", "b"],
            "model.n_params_including_embeddings": [1e6, 2e6],
            "optimizer.peak_learning_rate": [1e-3, 2e-3],
            "eval/validation_loss_nats": [2.5, 2.4],
        }
    ).to_csv(tmp_path / "runs.csv", index=False)
    outs = check_command(
        capsys,
        monkeypatch,
        tables,
        "import",
        "csv",
        tmp_path / "runs.csv",
        "--out",
        tmp_path / "o.csv",
        "--map",
        "run_id=run,N=model.n_params_including_embeddings,lr=optimizer.peak_learning_rate,loss=eval/validation_loss_nats",
        n_tables=1,
    )
    for out in outs.values():  # one row per imported column, with the number of runs that have it
        assert {
            c for c in ("N", "lr", "loss", "run_id") if any(line.startswith(f"│ {c} ") and "│    2 │" in line for line in out.splitlines())
        } == {"N", "lr", "loss"}
