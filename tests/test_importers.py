"""`scaletune import`: logs written by the real libraries (PyTorch's SummaryWriter, TensorBoard's own writer,
wandb in offline mode) become the run table and curves that fit, optimum, recommend and curves fit read.

The values logged are drawn from known laws (`scaletune.hparams.synthetic.Landscape`, the multipower curve
law), so the commands run on the imported files must find those laws again.
"""

import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest

from scaletune.cli import main
from scaletune.curves.data import read_curves
from scaletune.curves.laws import get_curve_law, prepare
from scaletune.errors import ScaletuneError
from scaletune.hparams.synthetic import Landscape
from scaletune.importers import import_csv, import_tensorboard, import_wandb
from scaletune.schedules import Schedule

LADDER = [(n, d) for n in (1e7, 3e7, 1e8) for d in (1e9, 3e9, 1e10)]
LR_MULTS = (0.25, 0.5, 1.0, 2.0, 4.0)
SEQ = 256
LAND = Landscape(noise=0.001)
THETA = np.array([3.0, 0.5, 0.5, 40.0, 2.0, 0.6, 0.6])  # multipower: L0, A, alpha, B, C, beta, gamma
SWEEP_MAP = "loss=val/loss,N=n_params,steps=max_steps"


def _sweep():
    """One row per run: a learning-rate sweep at each (N, D), batch size in sequences of SEQ tokens."""
    rng = np.random.default_rng(0)
    rows = []
    for n, d in LADDER:
        seqs = max(1, round(float(LAND.batch_opt(d)) / SEQ))
        steps = round(d / (seqs * SEQ))
        tokens = steps * seqs * SEQ
        for m in LR_MULTS:
            lr = float(LAND.lr_opt(n, tokens)) * m
            loss = float(LAND.loss(n, tokens, lr, seqs * SEQ, rng))
            rows.append(
                {"N": n, "D": tokens, "steps": steps, "seqs": seqs, "lr": lr, "mult": m, "loss": loss, "run": f"n{n:.0e}_d{d:.0e}/lr{m:g}"}
            )
    return rows


@pytest.fixture(scope="module")
def tb_sweep(tmp_path_factory):
    """45 TensorBoard runs. Hyperparameters: add_hparams (N = 1e8), a config.json (N = 1e7) or an
    hparams.yaml (N = 3e7) beside the events; the validation loss at 4 evaluations, the last at max_steps."""
    tb = pytest.importorskip("torch.utils.tensorboard")
    import yaml

    root = tmp_path_factory.mktemp("tb") / "sweep"
    rows = _sweep()
    for r in rows:
        folder = root / r["run"]
        writer = tb.SummaryWriter(str(folder))
        for k in (1, 2, 3, 4):
            step = r["steps"] * k // 4
            writer.add_scalar("val/loss", r["loss"] * (1 + 0.2 * (4 / k - 1)), step)
            writer.add_scalar("train/loss", r["loss"] * (0.99 + 0.2 * (4 / k - 1)), step)
        hparams = {"n_params": r["N"], "lr": r["lr"], "batch_size": r["seqs"], "max_steps": r["steps"], "lr_mult": r["mult"]}
        if r["N"] == 1e8:
            writer.add_hparams(hparams, {"hparam/val_loss": r["loss"]})  # into a time-stamped sub-folder
        elif r["N"] == 1e7:
            (folder / "config.json").write_text(json.dumps(hparams))
        else:
            (folder / "hparams.yaml").write_text(yaml.safe_dump(hparams))
        writer.close()
    return root, rows


@pytest.fixture(scope="module")
def tb_schedules(tmp_path_factory):
    """3 TensorBoard runs of 600 steps under constant, cosine and WSD schedules: the rate at every step
    (step s = the rate of the update just done, as scaletune's trainer logs it), the loss every 10 steps,
    drawn from the multipower law with parameters THETA."""
    tb = pytest.importorskip("torch.utils.tensorboard")
    root = tmp_path_factory.mktemp("tbs") / "schedules"
    specs = {
        "constant": "constant:steps=600,lr=1e-3,warmup=60",
        "cosine": "cosine:steps=600,lr=1e-3,warmup=60,final=0.1",
        "wsd": "wsd:steps=600,lr=1e-3,warmup=60,cooldown=0.2,shape=1-sqrt",
    }
    for name, spec in specs.items():
        sched = Schedule.parse(spec)
        lrs = sched.lrs()
        steps = np.arange(60, 601, 10)
        loss = get_curve_law("multipower").evaluate(THETA, prepare(lrs, sched.warmup, steps), {}, jac=False)[0]
        writer = tb.SummaryWriter(str(root / name))
        for s in range(1, 601):
            writer.add_scalar("lr", lrs[s - 1], s)
        for s, v in zip(steps, loss):
            writer.add_scalar("loss", v, int(s))
        writer.add_hparams({"lr": 1e-3, "batch_size": 4096, "schedule": spec}, {}, run_name=".")
        writer.close()
    return root, specs


def test_tensorboard_import_reads_hparams_configs_and_derives_tokens(tb_sweep):
    root, rows = tb_sweep
    res = import_tensorboard([root], mapping=SWEEP_MAP, seq_len=SEQ)
    runs = res.runs.set_index("run_id")
    assert len(runs) == 45 and not res.skipped
    for r in rows:
        got = runs.loc[r["run"]]
        assert got["N"] == r["N"] and got["lr"] == r["lr"] and got["lr_mult"] == r["mult"]
        assert got["batch_size_sequences"] == r["seqs"] and got["batch_size"] == r["seqs"] * SEQ
        assert got["D"] == r["D"] == r["steps"] * r["seqs"] * SEQ  # tokens, never sequences
        assert got["C"] == 6 * r["N"] * r["D"] and got["C_convention"] == "6ND"
        assert got["loss"] == np.float32(r["loss"])  # TensorBoard stores scalars as float32
        assert got["status"] == "ok"
    reports = {r.run_id: r for r in res.reports}
    rep = reports["n1e+08_d1e+09/lr1"]
    assert rep.sources["D"] == "derived:steps*batch_size (steps: config:max_steps)"
    assert rep.sources["loss"] == "series:val/loss" and rep.sources["batch_size_sequences"] == "config:batch_size"
    assert rep.missing == ()
    # curves: every evaluation, tokens = step x batch size (tokens)
    curves = res.curves
    assert curves["run_id"].nunique() == 45 and curves["loss"].notna().sum() == 45 * 4
    one = curves[curves["run_id"] == "n1e+07_d1e+10/lr0.5"]
    r = next(r for r in rows if r["run"] == "n1e+07_d1e+10/lr0.5")
    assert list(one["step"]) == [r["steps"] * k // 4 for k in (1, 2, 3, 4)]
    assert np.array_equal(one["tokens"], one["step"] * r["seqs"] * SEQ)
    assert one["loss"].iloc[-1] == np.float32(r["loss"]) and "train/loss" in one.columns
    # add_hparams' metric is a final value (a run-table column), not a curve with a point at step 0
    big = runs[runs["N"] == 1e8]
    assert np.array_equal(big["hparam/val_loss"], big["loss"]) and "hparam/val_loss" not in curves.columns


def test_without_seq_len_or_steps_the_report_says_what_is_missing(tb_sweep):
    root, _ = tb_sweep
    res = import_tensorboard([root / "n1e+07_d1e+09"], mapping="loss=val/loss")
    assert len(res.runs) == 5
    assert set(res.runs["batch_size"]) == {res.runs["batch_size"].iloc[0]}  # taken as tokens, as documented
    # D from the last logged step of the loss when no steps are mapped; N is named n_params, so missing
    rep = res.reports[0]
    assert rep.sources["D"] == "derived:steps*batch_size (steps: series:last step of val/loss)"
    assert rep.missing == ("N",) and "N" not in res.runs.columns
    assert res.to_dict()["missing"] == {"N": 5}


@pytest.mark.slow  # recommend and fit with bootstraps: ~20 s
def test_imported_tensorboard_runs_feed_optimum_recommend_and_fit(tb_sweep, tmp_path, capsys):
    root, _ = tb_sweep
    out, curves = tmp_path / "runs.parquet", tmp_path / "curves.parquet"
    assert (
        main(
            [
                "import",
                "tensorboard",
                str(root),
                "--out",
                str(out),
                "--curves",
                str(curves),
                "--map",
                SWEEP_MAP,
                "--seq-len",
                str(SEQ),
                "--json",
            ]
        )
        == 0
    )
    doc = json.loads(capsys.readouterr().out)
    assert doc["n_runs"] == 45 and doc["status"] == {"ok": 45} and doc["columns"]["D"] == 45
    assert doc["curves"] == {"runs": 45, "points": 180}

    assert main(["optimum", str(out), "--bootstrap", "50", "--json"]) == 0
    optima = json.loads(capsys.readouterr().out)["optima"]
    assert len(optima) == 9 and all(o["bracketed"] for o in optima)
    for o in optima:  # the optimum of each scale's sweep, against the landscape's
        truth = float(LAND.lr_opt(o["scale"]["N"], o["scale"]["D"]))
        assert abs(np.log(o["lr_"] / truth)) < np.log(1.5), (o["scale"], o["lr_"], truth)

    assert main(["recommend", str(out), "--target", "N=1e9,D=2e10", "--bootstrap", "50", "--json"]) == 0
    rec = json.loads(capsys.readouterr().out)
    lo, hi = rec["lr"]["interval"]
    assert lo <= float(LAND.lr_opt(1e9, 2e10)) <= hi

    assert main(["fit", str(out), "--law", "chinchilla", "--where", "lr_mult==1", "--bootstrap", "50", "--json"]) == 0
    fit = json.loads(capsys.readouterr().out)
    assert fit["diagnostics"]["n_points"] == 9
    for name, truth in (("alpha", LAND.alpha), ("beta", LAND.beta)):
        assert fit["intervals"][name][0] <= truth <= fit["intervals"][name][1], (name, fit["intervals"][name])


@pytest.mark.slow  # fits the multipower law to imported curves: ~20 s
def test_imported_curves_feed_curves_fit(tb_schedules, tmp_path, capsys):
    root, specs = tb_schedules
    out, curves = tmp_path / "runs.csv", tmp_path / "curves.parquet"
    assert main(["import", "tensorboard", str(root), "--out", str(out), "--curves", str(curves)]) == 0
    runs = pd.read_csv(out).set_index("run_id")
    assert runs["lr"].to_dict() == {"constant": 1e-3, "cosine": 1e-3, "wsd": 1e-3}  # the config's, not the last rate
    assert runs.loc["wsd", "schedule"] == specs["wsd"] and runs.loc["wsd", "D"] == 600 * 4096
    capsys.readouterr()
    parsed = read_curves(curves)
    assert [c.name for c in parsed] == ["constant", "cosine", "wsd"]
    assert all(c.schedule == "recorded" and c.warmup == 60 and len(c.lrs) == 600 for c in parsed)
    fit_file = tmp_path / "fit.json"
    assert (
        main(["curves", "fit", str(curves), "--law", "multipower", "--method", "lbfgs", "--boot", "0", "--out", str(fit_file), "--json"])
        == 0
    )
    fit = json.loads(fit_file.read_text())
    assert fit["diagnostics"]["n_curves"] == 3 and fit["diagnostics"]["train_r2"] > 0.9999
    assert fit["params_"]["L0"] == pytest.approx(THETA[0], rel=0.01)
    # the same curves through the run table's schedule column agree with the recorded rates
    assert main(["curves", "fit", str(curves), "--runs", str(out), "--law", "power", "--boot", "0", "--json"]) == 0


WANDB_SCRIPT = textwrap.dedent("""
    import math, sys, wandb
    runs = [("ok-small", 1e6, 1e-3, 0), ("ok-large", 4e6, 1e-3, 0), ("diverged", 1e6, 3e-1, 0), ("crashed", 1e6, 3e-3, 1)]
    for name, n, lr, code in runs:
        run = wandb.init(project="imp", name=name, config={"model": {"n_params": n, "width": 64}, "optim": {"lr": lr},
                                                           "batch_size": 8192})
        for s in range(1, 31):
            loss = float("nan") if name == "diverged" and s > 20 else 2 + 10 * (n * s) ** -0.3
            run.log({"trainer/step": 10 * s, "train/loss": loss, "lr": lr * min(1, s / 5)})
        if name == "diverged":
            run.log({"trainer/step": 300, "val_loss": loss})  # logged NaN (a NaN set in the summary is dropped)
        elif name != "crashed":
            run.summary["val_loss"] = loss + 0.01
        run.finish(exit_code=code)
""")


@pytest.fixture(scope="module")
def wandb_runs(tmp_path_factory):
    """4 offline W&B runs written by wandb itself in a child process that cannot reach any network."""
    pytest.importorskip("wandb")
    root = tmp_path_factory.mktemp("wb")
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(
        WANDB_MODE="offline",
        WANDB_DIR=str(root),
        WANDB_SILENT="true",
        WANDB_DISABLE_GIT="true",
        WANDB_DISABLE_CODE="true",
        WANDB_ERROR_REPORTING="false",
        WANDB_CONSOLE="off",
        WANDB_CONFIG_DIR=str(root / "cfg"),
        WANDB_CACHE_DIR=str(root / "cache"),
        WANDB_DATA_DIR=str(root / "data"),
        HTTP_PROXY="http://127.0.0.1:9",
        HTTPS_PROXY="http://127.0.0.1:9",
        NO_PROXY="",
    )
    subprocess.run([sys.executable, "-c", WANDB_SCRIPT], env=env, check=True, timeout=300)
    return root / "wandb"


def test_wandb_offline_runs_config_summary_history_and_state(wandb_runs):
    res = import_wandb([wandb_runs], mapping="N=model.n_params,lr=optim.lr,loss=val_loss,step=trainer/step")
    runs = res.runs.set_index("name")
    assert not res.skipped  # the crashed run logged no val_loss: kept, without a loss, as failed
    assert runs["status"].to_dict() == {"ok-small": "ok", "ok-large": "ok", "diverged": "diverged", "crashed": "failed"}
    assert np.isnan(runs.loc["crashed", "loss"]) and np.isnan(runs.loc["diverged", "loss"])
    assert runs.loc["ok-large", "N"] == 4e6 and runs.loc["ok-small", "lr"] == 1e-3 and runs.loc["ok-small", "model.width"] == 64
    want = 2 + 10 * (4e6 * 30) ** -0.3 + 0.01
    assert runs.loc["ok-large", "loss"] == pytest.approx(want, rel=1e-12)  # from the summary, float64
    assert runs.loc["ok-small", "state"] == "finished" and runs["seconds"].ge(0).all()
    assert list(res.curves["run_id"].unique()) == [runs.loc["diverged", "run_id"]]  # the others: summary only
    res = import_wandb([wandb_runs], mapping="N=model.n_params,lr=optim.lr,loss=train/loss,step=trainer/step")
    assert len(res.runs) == 4 and not res.skipped
    status = res.runs.set_index("name")["status"].to_dict()
    assert status == {"ok-small": "ok", "ok-large": "ok", "diverged": "diverged", "crashed": "failed"}
    assert res.runs.set_index("name").loc["crashed", "state"] == "failed"
    # D: the last step on the mapped step axis (trainer/step, not wandb's _step) x batch size (tokens)
    assert res.runs.set_index("name").loc["ok-small", "D"] == 300 * 8192
    curve = res.curves[res.curves["run_id"] == res.runs.set_index("name").loc["ok-small", "run_id"]]
    assert list(curve["step"]) == list(range(10, 301, 10)) and curve["lr"].iloc[0] == pytest.approx(2e-4)
    assert curve["tokens"].iloc[-1] == 300 * 8192 and curve["loss"].iloc[-1] == pytest.approx(2 + 10 * (1e6 * 30) ** -0.3)


def test_wandb_cli_json_summary_and_an_unreadable_log(wandb_runs, tmp_path, capsys):
    folder = tmp_path / "wandb"
    shutil.copytree(wandb_runs, folder, symlinks=True)
    (folder / "offline-run-20240101_000000-broken").mkdir()
    (folder / "offline-run-20240101_000000-broken" / "run-broken.wandb").write_bytes(b"not a transaction log" * 10)
    out = tmp_path / "runs.csv"
    assert (
        main(
            [
                "import",
                "wandb",
                str(folder),
                "--out",
                str(out),
                "--map",
                "N=model.n_params,lr=optim.lr,loss=train/loss",
                "--require",
                "loss,N",
                "--json",
            ]
        )
        == 0
    )
    doc = json.loads(capsys.readouterr().out)
    assert doc["n_runs"] == 4 and doc["status"] == {"ok": 2, "diverged": 1, "failed": 1}
    assert doc["skipped_by_reason"] == {"unreadable": 1} and doc["skipped"][0]["source"].endswith("-broken")
    assert doc["sources"]["lr"] == {"config:optim.lr": 4} and doc["sources"]["seconds"] == {"summary:_runtime": 4}
    assert len(pd.read_csv(out)) == 4


def test_wandb_project_export_csv_feeds_optimum(tmp_path, capsys):
    """A W&B UI export (columns Name, State, Notes, User, Tags, Created, Runtime, Sweep, then config and
    summary columns): states finished -> ok, crashed -> failed; Runtime -> seconds."""
    sweep = LAND.sweep([(1e7, 1e9)], lr_factors=2.0 ** np.arange(-3, 4), seed=3)
    export = pd.DataFrame(
        {
            "Name": [f"run-{i}" for i in range(len(sweep))] + ["run-x"],
            "State": ["finished"] * len(sweep) + ["crashed"],
            "Notes": "-",
            "User": "me",
            "Tags": "",
            "Created": "2024-05-01T10:00:00.000Z",
            "Runtime": np.arange(len(sweep) + 1) + 100,
            "Sweep": "",
            "learning_rate": list(sweep["lr"]) + [1.0],
            "params": 1e7,
            "tokens": 1e9,
            "batch_size": list(sweep["batch_size"]) + [1024.0],
            "eval/loss": list(sweep["loss"]) + [np.nan],
        }
    )
    path = tmp_path / "wandb_export.csv"
    export.to_csv(path, index=False)
    out = tmp_path / "runs.parquet"
    assert (
        main(["import", "csv", str(path), "--out", str(out), "--map", "lr=learning_rate,N=params,D=tokens,loss=eval/loss", "--json"]) == 0
    )
    doc = json.loads(capsys.readouterr().out)
    assert doc["n_runs"] == len(sweep) + 1 and doc["n_skipped"] == 0 and doc["status"] == {"ok": len(sweep), "failed": 1}
    runs = pd.read_parquet(out)
    assert list(runs["run_id"]) == list(export["Name"]) and list(runs["seconds"]) == list(export["Runtime"])
    assert list(runs["state"]) == list(export["State"]) and np.isnan(runs["loss"].iloc[-1])
    assert main(["optimum", str(out), "--bootstrap", "50", "--json"]) == 0
    (opt,) = json.loads(capsys.readouterr().out)["optima"]
    assert opt["bracketed"] and abs(np.log(opt["lr_"] / float(LAND.lr_opt(1e7, 1e9)))) < np.log(1.5)


def test_csv_with_long_curves_and_a_status_column(tmp_path):
    runs = pd.DataFrame(
        {
            "id": ["a", "b", "c"],
            "n": [1e6, 2e6, 1e6],
            "peak_lr": [1e-3, 1e-3, 1e-1],
            "bs": [16, 16, 16],
            "result": ["completed", "completed", "diverged"],
            "val": [2.45, 2.4, np.nan],
        }
    )
    runs.to_csv(tmp_path / "runs.csv", index=False)
    steps = np.arange(0, 101, 10)
    curves = pd.concat([pd.DataFrame({"id": rid, "iter": steps, "val": 3 - 0.005 * steps, "rate": 1e-3}) for rid in ("a", "b", "zz")])
    curves.to_csv(tmp_path / "curves.csv", index=False)
    res = import_csv(
        [tmp_path / "runs.csv"],
        curves=tmp_path / "curves.csv",
        seq_len=128,
        mapping="run_id=id,step=iter,N=n,lr=peak_lr,batch_size=bs,loss=val,status=result",
    )
    got = res.runs.set_index("run_id")
    assert got["status"].to_dict() == {"a": "ok", "b": "ok", "c": "diverged"}
    assert got.loc["a", "loss"] == 2.45  # the row's final value, not the curve's last point (2.5)
    assert got.loc["a", "batch_size"] == 16 * 128 and got.loc["a", "D"] == 100 * 16 * 128
    assert [(s.reason, s.source.endswith("run zz")) for s in res.skipped] == [("curve_without_run", True)]
    a = res.curves[res.curves["run_id"] == "a"]
    assert list(a["step"]) == list(steps) and a["loss"].iloc[-1] == 2.5 and "rate" in a.columns


def test_tensorflow_style_tensor_scalars_and_python_tagged_hparams_yaml(tmp_path):
    """TF2 / tensorboard.summary.Writer log scalars as tensors; a config.json beside them gives the rest. An
    hparams.yaml written with yaml.dump (as Lightning does) carries Python tags: read as plain values."""
    import argparse

    import yaml

    Writer = pytest.importorskip("tensorboard.summary").Writer
    for i, lr in enumerate((1e-3, 2e-3)):
        writer = Writer(str(tmp_path / f"r{i}"))
        for s in range(1, 6):
            writer.add_scalar("loss", 3.0 - 0.1 * s - i, step=s)
        writer.close()
        (tmp_path / f"r{i}" / "config.json").write_text(json.dumps({"optimizer": {"lr": lr}, "tokens_per_step": 64}))
    (tmp_path / "r1" / "hparams.yaml").write_text(yaml.dump({"model": argparse.Namespace(width=128, depth=4), "sizes": (1, 2)}))
    res = import_tensorboard([tmp_path], mapping="lr=optimizer.lr,batch_size=tokens_per_step,width=model.width")
    got = res.runs.set_index("run_id")
    assert got["loss"].to_dict() == pytest.approx({"r0": 2.5, "r1": 1.5})
    assert got["lr"].to_dict() == {"r0": 1e-3, "r1": 2e-3} and got.loc["r0", "D"] == 5 * 64
    assert got.loc["r1", "width"] == 128 and got.loc["r1", "model.depth"] == 4 and np.isnan(got.loc["r0", "width"])
    assert {r.run_id: r.missing for r in res.reports} == {"r0": ("N",), "r1": ("N",)}


@pytest.mark.parametrize(
    "kind, make, args, names",
    [
        ("tensorboard", lambda p: p.mkdir(), [], "no TensorBoard event files"),
        ("wandb", lambda p: p.mkdir(), [], "no W&B runs"),
        ("csv", lambda p: p.write_text("lr,loss\n1e-3,2.5\n1e-3,2.5,7,8\n"), [], "cannot read as a table"),
        ("csv", lambda p: p.write_text("lr,loss\n1e-3,2.5\n"), ["--map", "N=params"], "'params' (for N)"),
        ("csv", lambda p: p.write_text("lr,loss\n1e-3,2.5\n"), ["--require", "loss,N"], "no value for N"),
        ("csv", lambda p: p.write_text("lr,loss\n1e-3,2.5\n"), ["--seq-len", "-4"], "'-4'"),
        ("csv", lambda p: p.write_text("lr,loss\nabc,2.5\n"), [], "lr = 'abc'"),
        ("tensorboard", lambda p: None, [], "no such file"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(kind, make, args, names, tmp_path, capsys):
    path = tmp_path / "input"
    make(path)
    assert main(["import", kind, str(path), "--out", str(tmp_path / "o.csv"), *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and names in err and (str(path) in err or "--seq-len" in args)
    assert not (tmp_path / "o.csv").exists()


def test_library_raises_scaletune_error_for_a_curves_table_without_its_columns(tmp_path):
    pd.DataFrame({"run_id": ["a"], "loss": [2.0]}).to_csv(tmp_path / "runs.csv", index=False)
    pd.DataFrame({"run": ["a"], "step": [1], "loss": [2.0]}).to_csv(tmp_path / "curves.csv", index=False)
    with pytest.raises(ScaletuneError, match="missing column 'run_id'") as info:
        import_csv([tmp_path / "runs.csv"], curves=tmp_path / "curves.csv")
    assert info.value.hint == "name yours in the mapping: run_id=COLUMN" and "--" not in str(info.value)
    with pytest.raises(ScaletuneError, match=r"^seq_len: expected a positive whole number of tokens") as info:
        import_csv([tmp_path / "runs.csv"], seq_len=-4)


def test_every_logged_state_maps_onto_a_run_table_status():
    from scaletune.importers._core import STATUS
    from scaletune.runtable import STATUSES

    assert set(STATUS.values()) == set(STATUSES)
