"""Running studies for real: worker processes on SQLite / PostgreSQL / journal storage, outcomes, pruning,
samplers, scale-aware rungs, SIGKILL and resume with exact accounting, concurrent sweeps."""

from __future__ import annotations

import collections
import json
import math
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pandas as pd
import pytest

from scaletune.cli import main
from scaletune.errors import ScaletuneError
from scaletune.runtable import read_table
from scaletune.study import export_curves, export_runs, load_study_config, run_study, study_status
from scaletune.study.results import open_stored_study, slot_records

TESTS = Path(__file__).parent
PG_URL = os.environ.get("SCALETUNE_TEST_POSTGRES_URL")
needs_pg = pytest.mark.skipif(not PG_URL, reason="SCALETUNE_TEST_POSTGRES_URL is not set (source .ci/postgres.sh)")


def bowl_loss(width: float, lr: float, seed: int) -> float:
    """Final loss of study_workloads.bowl (its last reported value)."""
    return 2.0 + 0.3 / math.log(width) + (0.1 + 3 * math.exp(-4)) * math.log(lr * width / 0.5) ** 2 + 0.001 * seed


def toml_file(
    tmp_path: Path,
    name: str,
    storage: str,
    *,
    fixed: str = "",
    strategy: str = 'name = "grid"',
    space: str = 'lr = { log = ["0.05 / width", "5 / width"], points = 3 }',
    seeds: str = "[0, 1]",
    widths: str = "[8, 16]",
    extra: str = "",
    steps: int = 5,
) -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(f"""
name = "{name}"
workload = "study_workloads:bowl"
seeds = {seeds}
[storage]
url = "{storage}"
heartbeat = 1
grace = 10
[fixed]
steps = {steps}
{fixed}
[ladder]
width = {widths}
depth = [2]
tokens = [1e5]
params = "12 * depth * width**2"
[space]
{space}
[strategy]
{strategy}
{extra}
""")
    return path


def assert_exact(config, storage: str | None = None) -> pd.DataFrame:
    """Every planned slot of every rung has exactly one finished trial and nothing queued or running."""
    stored = open_stored_study(config, storage)
    for rung in range(len(stored.rungs)):
        trials, planned = stored.rung_trials(rung)
        records = slot_records(trials, planned)
        assert planned is not None and sorted(records) == list(range(planned))
        assert [r.done_count for r in records.values()] == [1] * planned
        assert not any(r.live for r in records.values())
    return export_runs(config, storage)


def executions(log: Path) -> collections.Counter:
    lines = [json.loads(x) for x in log.read_text().splitlines()] if log.exists() else []
    return collections.Counter((r["width"], round(r["lr"], 12), r["seed"]) for r in lines)


def sweep_process(path: Path, *args: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
    return subprocess.Popen(
        [sys.executable, "-m", "scaletune", "sweep", str(path), "--no-progress", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.mark.slow  # a sweep, ~36 s
def test_grid_sweep_cli_export_and_status(tmp_path, capsys):
    log = tmp_path / "runs.jsonl"
    path = toml_file(tmp_path, "grid", "grid.db", fixed=f'log = "{log}"')
    assert main(["sweep", str(path), "--workers", "2", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "study grid: 12/12 trials finished (12 ok)" in out
    config = load_study_config(path)
    df = assert_exact(config)
    assert len(df) == 12 and set(df["status"]) == {"ok"} and df["error"].isna().all()
    assert sorted(executions(log).values()) == [1] * 12  # every planned trial ran exactly once
    assert {json.loads(x)["threads"] for x in log.read_text().splitlines()} == {1}  # threads per trial
    expected = [bowl_loss(w, lr, s) for w, lr, s in zip(df["width"], df["lr"], df["seed"])]
    assert df["loss"].to_numpy() == pytest.approx(expected)
    assert (df["N"] == 12 * 2 * df["width"] ** 2).all() and (df["C"] == 6 * df["N"] * df["D"]).all()
    assert set(df.groupby("width")["lr"].nunique()) == {3}
    # export -> the run table `scaletune fit` reads
    assert (
        main(
            ["export", str(path), "--format", "parquet", "--out", str(tmp_path / "runs.parquet"), "--curves", str(tmp_path / "curves.csv")]
        )
        == 0
    )
    table = read_table(tmp_path / "runs.parquet")
    assert len(table) == 12 and {"N", "D", "C", "loss", "status", "lr", "seed", "run_id"} <= set(table.columns)
    curves = pd.read_csv(tmp_path / "curves.csv")
    assert len(curves) == 12 * 5 and set(curves.columns) >= {"run_id", "step", "tokens", "lr", "loss", "train_loss"}
    last = curves.groupby("run_id")["loss"].last()
    assert last.loc[df["run_id"]].to_numpy() == pytest.approx(df["loss"].to_numpy())
    assert main(["export", "grid", "--storage", str(tmp_path / "grid.db"), "--out", str(tmp_path / "r.csv")]) == 0
    assert len(pd.read_csv(tmp_path / "r.csv")) == 12
    capsys.readouterr()
    assert main(["status", str(path), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert [(r["planned"], r["done"], r["counts"]) for r in status] == [(6, 6, {"ok": 6})] * 2
    assert status[0]["best_params"]["lr"] == pytest.approx(0.5 / 8)  # the bowl's optimum, on the grid
    assert main(["status", str(path)]) == 0  # the table: a row per rung with its counts and best loss
    rows = [line for line in capsys.readouterr().out.splitlines() if "6/6" in line]
    assert len(rows) == 2 and all("6 ok" in r and f"{s['best_loss']:.4f}" in r for r, s in zip(rows, status))
    # running it again finds nothing to do and runs nothing
    assert main(["sweep", str(path), "--workers", "1", "--no-progress"]) == 0
    assert sum(executions(log).values()) == 12


@pytest.mark.slow  # a sweep, ~34 s
def test_outcomes_crash_failure_divergence_are_recorded_and_the_study_goes_on(tmp_path):
    config = load_study_config(
        toml_file(
            tmp_path,
            "outcomes",
            "outcomes.db",
            seeds="[0]",
            widths="[8]",
            fixed="crash_lr = 0.5\nfail_lr = 0.2\ndiverge_lr = 0.1",
            space="lr = { log = [0.01, 1.0], points = 5 }",
        )
    )  # 0.01, 0.0316, 0.1, 0.316, 1.0
    result = run_study(config, workers=2, progress=False)
    assert result.complete
    df = assert_exact(config).sort_values("lr")
    assert list(df["status"]) == ["ok", "ok", "ok", "failed", "failed"]  # 0.1 is not above diverge_lr
    assert df["error"].iloc[3] == "ValueError: learning rate 0.316228 too large for this test"
    assert df["error"].iloc[4] == "worker process died (signal 9)"
    config2 = load_study_config(
        toml_file(
            tmp_path,
            "diverge",
            "outcomes.db",
            seeds="[0]",
            widths="[8]",
            fixed="diverge_lr = 0.05",
            space="lr = { log = [0.01, 1.0], points = 3 }",
        )
    )
    run_study(config2, workers=1, progress=False)
    df2 = assert_exact(config2).sort_values("lr")
    assert list(df2["status"]) == ["ok", "diverged", "diverged"] and df2["loss"].iloc[1:].isna().all()


@pytest.mark.slow  # a sweep, ~15 s
def test_median_pruner_stops_bad_trials_early(tmp_path):
    config = load_study_config(
        toml_file(
            tmp_path,
            "prune",
            "prune.db",
            seeds="[0]",
            widths="[8]",
            steps=8,
            space="lr = { log = [0.0005, 5.0], points = 9 }",
            extra='[pruner]\nname = "median"\nn_startup_trials = 3\nn_warmup_steps = 2',
        )
    )
    run_study(config, workers=1, progress=False)
    df = assert_exact(config)
    curves = export_curves(config)
    steps = curves.groupby("run_id")["step"].max()
    pruned = df[df["status"] == "pruned"]
    assert len(pruned) >= 2 and (steps.loc[pruned["run_id"]] < 8).all()
    assert (steps.loc[df.loc[df["status"] == "ok", "run_id"]] == 8).all()
    best = df.loc[df["loss"].idxmin()]
    assert best["status"] == "ok" and best["lr"] == pytest.approx(0.5 / 8, rel=0.5)
    assert pruned["loss"].notna().all()  # a pruned run's loss is its last reported validation loss


@pytest.mark.slow  # a sweep, ~20 s
def test_tpe_strategy_samples_inside_scale_dependent_ranges(tmp_path):
    config = load_study_config(
        toml_file(
            tmp_path,
            "tpe",
            "tpe.db",
            seeds="[0]",
            strategy='name = "tpe"\ntrials = 6\nseed = 1',
            space='lr = { log = ["0.05 / width", "5 / width"] }\nwarmup = { int = [0, 4] }\nopt = { choices = ["a", "b"] }',
        )
    )
    run_study(config, workers=2, progress=False)
    df = assert_exact(config)
    assert len(df) == 12 and set(df["status"]) == {"ok"}
    assert ((df["lr"] >= 0.05 / df["width"]) & (df["lr"] <= 5 / df["width"])).all()
    assert set(df["warmup"]) <= set(range(5)) and set(df["opt"]) <= {"a", "b"}
    # the two workers reseed their copies of the seeded sampler: no two trials drew the same rate
    assert df.groupby("rung")["lr"].nunique().tolist() == [6, 6]


@pytest.mark.slow  # a sweep, two sweeps: ~20 s
def test_sampler_and_pruner_objects_reach_the_worker_processes(tmp_path):
    import optuna
    from optuna.distributions import FloatDistribution

    runs = []
    for k in range(2):  # the same study twice, each in its own storage
        config = load_study_config(
            toml_file(
                tmp_path,
                "objects",
                f"objects{k}.db",
                seeds="[0]",
                widths="[8]",
                steps=9,
                strategy='name = "random"\ntrials = 8',
                space="lr = { log = [0.0005, 5.0] }",
            )
        )
        result = run_study(
            config,
            workers=1,
            progress=None,
            poll=0.2,
            sampler=optuna.samplers.TPESampler(seed=3, n_startup_trials=3),
            pruner=optuna.pruners.HyperbandPruner(min_resource=1, max_resource=9, reduction_factor=3),
        )
        assert result.complete
        runs.append(assert_exact(config).sort_values("trial"))
    first, second = runs
    assert len(first) == 8 and first["lr"].tolist() == second["lr"].tolist()  # the seed reproduces every trial
    assert first["status"].tolist() == second["status"].tolist()
    assert (first["status"] == "pruned").sum() > 0 and (first["status"] == "ok").sum() > 0
    # the trials were drawn by that sampler when they started: its first (random) draws, in trial order
    scratch = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=3, n_startup_trials=3))
    draws = [scratch.ask({"lr": FloatDistribution(0.0005, 5.0, log=True)}).params["lr"] for _ in range(3)]
    assert first["lr"].tolist()[:3] == pytest.approx(draws, rel=1e-12)
    stored = open_stored_study(config)
    assert stored.meta["config"]["strategy"]["sampler_object"] == "TPESampler"
    assert stored.meta["config"]["pruner"] == {"object": "HyperbandPruner"}
    # a sweep without the objects plans other trials: refused rather than mixed into this study
    with pytest.raises(ScaletuneError, match="planned from a different study file"):
        run_study(load_study_config(config.source), workers=1, progress=None)


def test_a_sampler_object_that_does_not_pickle_is_refused_before_anything_runs(tmp_path):
    import optuna

    config = load_study_config(
        toml_file(
            tmp_path,
            "nopickle",
            "nopickle.db",
            seeds="[0]",
            widths="[8]",
            strategy='name = "random"\ntrials = 2',
            space="lr = { log = [0.01, 1.0] }",
        )
    )

    class LocalSampler(optuna.samplers.RandomSampler):  # a class defined in a function: pickle cannot find it
        pass

    with pytest.raises(ScaletuneError, match=r"^sampler LocalSampler cannot be pickled") as info:
        run_study(config, workers=1, progress=None, sampler=LocalSampler(seed=0))
    assert info.value.hint is not None and "--" not in info.value.hint
    assert not (tmp_path / "nopickle.db").exists()  # nothing planned, no storage created


@pytest.mark.slow  # a sweep, ~14 s
def test_scale_aware_rungs_run_in_order_inside_narrowed_ranges(tmp_path):
    config = load_study_config(
        toml_file(
            tmp_path,
            "aware",
            "aware.db",
            seeds="[0]",
            widths="[8, 32]",
            strategy='name = "scale-aware"\ntrials = 4\nnarrow = "study_workloads:narrow_around_best"',
            space="lr = { log = [0.0001, 1.0] }",
        )
    )
    run_study(config, workers=2, progress=False)
    df = assert_exact(config)
    stored = open_stored_study(config)
    r0, r1 = (stored.rung_trials(k)[0] for k in (0, 1))
    assert min(t.datetime_start for t in r1) >= max(t.datetime_complete for t in r0)
    best0 = df[df["rung"] == 0].sort_values("loss").iloc[0]
    centre = best0["lr"] * 8 / 32
    ranges = stored.storage.get_study_user_attrs(stored.storage.get_study_id_from_name("aware/r1"))["ranges"]
    assert ranges["lr"] == pytest.approx([centre / math.sqrt(10), centre * math.sqrt(10)])
    lrs = df.loc[df["rung"] == 1, "lr"]
    assert ((lrs >= ranges["lr"][0]) & (lrs <= ranges["lr"][1])).all() and len(lrs) == 4


def test_changed_study_file_under_the_same_name_is_refused(tmp_path, capsys):
    path = toml_file(tmp_path, "same", "same.db", seeds="[0]", widths="[8]")
    assert main(["sweep", str(path), "--workers", "1", "--no-progress"]) == 0
    path.write_text(path.read_text().replace("points = 3", "points = 4"))
    assert main(["sweep", str(path), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "study 'same' in sqlite:///" in err[0] and "was planned from a different study file" in err[0]
    # reading a stored study needs only the file's name and storage, not an importable workload
    path.write_text(path.read_text().replace("study_workloads:bowl", "gone_module:fn"))
    assert main(["export", str(path), "--out", str(tmp_path / "same.csv")]) == 0
    assert len(pd.read_csv(tmp_path / "same.csv")) == 3
    assert main(["status", "nope", "--storage", str(tmp_path / "same.db")]) == 2
    assert "no study 'nope' in storage" in capsys.readouterr().err
    assert main(["status", "same", "--storage", str(tmp_path / "missing.db")]) == 2
    assert "no such file" in capsys.readouterr().err
    with pytest.raises(ScaletuneError, match="study 'same': no storage to look for it in") as info:
        study_status("same")
    assert "storage=" in info.value.hint and "--" not in str(info.value) + info.value.hint  # library words
    assert main(["status", "same"]) == 2  # the command line names its own flag
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("scaletune: error: same: no such study file") and "(hint: " in err[0]
    assert "--storage URL" in err[0]


@pytest.mark.slow
def test_sigkill_mid_sweep_then_resume_keeps_finished_and_reruns_only_unfinished(tmp_path):
    log = tmp_path / "runs.jsonl"
    path = toml_file(
        tmp_path, "kill", "kill.db", fixed=f'log = "{log}"\nsleep = 0.08', space='lr = { log = ["0.05 / width", "5 / width"], points = 4 }'
    )  # 16 trials of ~0.4 s
    config = load_study_config(path)
    proc = sweep_process(path, "--workers", "2")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        time.sleep(0.2)
        try:
            done = sum(r.done for r in study_status(config))
        except ScaletuneError:
            continue  # not created yet
        if done >= 4:
            break
    assert proc.poll() is None, proc.stdout.read()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    time.sleep(1.0)  # the workers die with their parent (PR_SET_PDEATHSIG)
    n_logged = sum(executions(log).values())
    time.sleep(1.0)
    assert sum(executions(log).values()) == n_logged, "orphan workers kept running trials"

    stored = open_stored_study(config)
    before = {}
    running = 0
    for k in range(2):
        trials, _ = stored.rung_trials(k)
        for rec in slot_records(trials, 8).values():
            if rec.final is not None:
                before[(k, rec.slot)] = (rec.final.number, rec.final.value)
        running += sum(t.state.name == "RUNNING" for t in trials)
    assert 4 <= len(before) < 16  # (almost always some trials were running too: they must be re-queued)

    result = run_study(config, workers=2, progress=False)
    assert result.complete
    df = assert_exact(config)
    after = {(r.rung, r.slot): (r.trial, r.loss) for r in df.itertuples()}
    assert len(after) == 16
    for key, (number, value) in before.items():  # finished trials kept as they were
        assert after[key][0] == number and after[key][1] == pytest.approx(value)
    interrupted = 0
    for k in range(2):
        trials, _ = stored.rung_trials(k)
        interrupted += sum(t.state.name == "FAIL" and "status" not in t.user_attrs for t in trials)
    assert interrupted == running  # exactly the trials left running were marked and re-queued
    counts = executions(log)
    finished_before = {(df.set_index(["rung", "slot"]).loc[key, "width"],) for key in before}
    assert len(finished_before) >= 1
    for row in df.itertuples():  # nothing finished was run twice; interrupted ones at most twice
        n = counts[(row.width, round(row.lr, 12), row.seed)]
        assert n == 1 if (row.rung, row.slot) in before else 1 <= n <= 2
    assert sum(counts.values()) <= 16 + running


def _concurrent_sweeps(tmp_path: Path, storage: str, name: str) -> None:
    log = tmp_path / f"{name}.jsonl"
    path = toml_file(
        tmp_path, name, storage, fixed=f'log = "{log}"\nsleep = 0.02', space='lr = { log = ["0.05 / width", "5 / width"], points = 4 }'
    )  # 16 trials
    procs = [sweep_process(path, "--workers", "2") for _ in range(2)]
    outs = [p.communicate(timeout=240)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    config = load_study_config(path)
    df = assert_exact(config)
    assert len(df) == 16 and set(df["status"]) == {"ok"}
    assert sorted(executions(log).values()) == [1] * 16, "a trial was lost or run twice"
    pids = {json.loads(x)["pid"] for x in log.read_text().splitlines()}
    assert len(pids) >= 2  # the work was really shared


@pytest.mark.slow
def test_two_sweeps_with_two_workers_each_on_sqlite(tmp_path):
    _concurrent_sweeps(tmp_path, "shared.db", "sq")


@pytest.mark.slow
@pytest.mark.postgres
@needs_pg
def test_two_sweeps_with_two_workers_each_on_postgresql(tmp_path):
    _concurrent_sweeps(tmp_path, PG_URL, f"pg{uuid.uuid4().hex[:8]}")


def test_journal_file_storage_with_live_progress(tmp_path, capsys):
    config = load_study_config(toml_file(tmp_path, "jr", "journal.log", seeds="[0]"))
    assert config.storage.url.startswith("journal:///")
    from scaletune.cli._progress import SweepProgress

    with SweepProgress(config.name) as view:
        run_study(config, workers=2, progress=view)
    assert len(assert_exact(config)) == 6
    err = capsys.readouterr().err
    assert "jr: 6/6 trials" in err and "3 ok" in err  # the live table's last frame


@pytest.mark.slow  # a sweep, ~22 s
def test_budget_caps_stop_claiming_and_a_later_call_finishes_the_plan(tmp_path):
    # 1 rung x 6 trials; each trial's C = 6 N D = 6 * 1536 * 1e5 = 9.216e8 FLOPs
    path = toml_file(
        tmp_path,
        "budget",
        "budget.db",
        widths="[8]",
        fixed="sleep = 0.3",  # 1.5 s per trial
        extra="[budget]\nflops = 2.5e9",
    )
    config = load_study_config(path)
    result = run_study(config, workers=1, progress=False)
    done = sum(r.done for r in result.rungs)
    assert result.stopped == "FLOPs budget of 2.5e+09 reached" and 3 <= done < 6
    assert result.rungs[0].flops == pytest.approx(done * 9.216e8)
    path.write_text(path.read_text().replace("flops = 2.5e9", "seconds = 600"))
    result = run_study(load_study_config(path), workers=2, progress=False)
    assert result.stopped is None and result.complete
    assert len(assert_exact(config)) == 6


@pytest.mark.slow  # a sweep, ~16 s
def test_retry_failed_reruns_only_failed_slots_and_supersedes_them(tmp_path):
    flag = tmp_path / "down"
    flag.touch()
    path = toml_file(tmp_path, "retry", "retry.db", seeds="[0]", widths="[8]", fixed=f'fail_while = "{flag}"')
    config = load_study_config(path)
    run_study(config, workers=1, progress=False)
    first = assert_exact(config)
    assert list(first["status"]) == ["failed"] * 3 and set(first["error"]) == {"RuntimeError: transient failure"}
    run_study(config, workers=1, progress=False)  # without --retry-failed a failed outcome is final
    assert list(assert_exact(config)["trial"]) == list(first["trial"])
    flag.unlink()
    run_study(config, workers=1, progress=False, retry_failed=True)
    df = assert_exact(config)
    assert list(df["status"]) == ["ok"] * 3 and df["error"].isna().all()
    assert set(df["trial"]).isdisjoint(first["trial"])
    stored = open_stored_study(config)
    retries = {t.user_attrs.get("retry_of") for t in stored.rung_trials(0)[0]} - {None}
    assert retries == set(first["trial"])


def test_trial_of_a_silent_worker_on_another_host_is_requeued_after_the_grace_period(tmp_path):
    import optuna
    from optuna.trial import TrialState

    from scaletune.study.results import HEARTBEAT, WORKER
    from scaletune.study.runner import _fail_running, _init_study, _is_stale, _plan
    from scaletune.study.storage import open_storage

    config = load_study_config(toml_file(tmp_path, "stale", "stale.db", seeds="[0]", widths="[8]"))
    st = open_storage(config.storage.url)
    stored = _init_study(config, st)
    _plan(config, stored, config.rungs[0])
    trials, _ = stored.rung_trials(0)
    # two trials claimed by workers on another machine: one silent for 100 s (> grace 10 s), one beating
    for t, age in zip(trials[:2], (100.0, 1.0)):
        assert st.set_trial_state_values(t._trial_id, TrialState.RUNNING)
        st.set_trial_system_attr(t._trial_id, WORKER, f"elsewhere:{t.number + 1}:x")
        st.set_trial_system_attr(t._trial_id, HEARTBEAT, time.time() - age)
    study = optuna.load_study(study_name="stale/r0", storage=st)
    assert _fail_running(study, st, lambda t: _is_stale(t, config.storage.grace, time.time()), None) == 1
    trials, _ = stored.rung_trials(0)
    assert [t.state.name for t in trials[:3]] == ["FAIL", "RUNNING", "WAITING"]
    study.tell(trials[1].number, 2.5)  # the live worker finishes its trial
    assert run_study(config, workers=1, progress=False).complete
    trials, _ = stored.rung_trials(0)
    assert trials[0].state.name == "FAIL" and "status" not in trials[0].user_attrs
    retry = [t for t in trials if t.user_attrs.get("retry_of") == trials[0].number]
    assert len(retry) == 1 and retry[0].state.name == "COMPLETE"
    assert retry[0].params == trials[0].system_attrs["fixed_params"]  # the same planned hyperparameters
    assert trials[1].value == 2.5
    assert len(assert_exact(config)) == 3
