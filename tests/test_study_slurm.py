"""The Slurm backend: worker jobs submitted through submitit to a real Slurm cluster (.ci/slurm.sh starts a
single-node one and sets SCALETUNE_TEST_SLURM=1), claiming trials from a journal file (or PostgreSQL when
SCALETUNE_TEST_POSTGRES_URL is set); the `[slurm]` table's validation; the refusals that need no cluster."""

from __future__ import annotations

import math
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from scaletune.errors import ScaletuneError
from scaletune.study import load_study_config
from scaletune.study.results import WORKER, open_stored_study, slot_records
from scaletune.study.slurm import JOB_PREFIX, slurm_jobs

pytest.importorskip("submitit")
TESTS = Path(__file__).parent
PG_URL = os.environ.get("SCALETUNE_TEST_POSTGRES_URL")
needs_slurm = pytest.mark.skipif(
    not os.environ.get("SCALETUNE_TEST_SLURM") or shutil.which("sinfo") is None,
    reason="needs a Slurm cluster: source .ci/slurm.sh (sets SCALETUNE_TEST_SLURM=1)",
)


# A training script of the command workload: 3 steps of 1.5 s, each reporting its validation loss as a JSON
# line to $SCALETUNE_METRICS (a bowl in log lr around 0.5 / width, plus a decaying term).
TRIAL_SCRIPT = """
import json, math, os, sys, time
lr, width = float(sys.argv[1]), float(sys.argv[2])
for step in (1, 2, 3):
    time.sleep(1.5)
    loss = 2.0 + 0.1 * math.log(lr * width / 0.5) ** 2 + 1.0 / step
    with open(os.environ["SCALETUNE_METRICS"], "a") as fh:
        fh.write(json.dumps({"step": step, "loss": loss}) + "\\n")
"""


def study_file(tmp_path: Path, storage: str, slurm: str = "", name: str | None = None, sleep: float = 1.0, command: bool = False) -> Path:
    """12 trials (2 widths x 6 learning rates): of the `bowl` workload, 3 steps of ``sleep`` seconds each,
    or with ``command`` of TRIAL_SCRIPT run as a command."""
    name = name or f"sl{uuid.uuid4().hex[:8]}"  # unique: PostgreSQL is shared between test runs
    path = tmp_path / "study.toml"
    (tmp_path / "trial.py").write_text(TRIAL_SCRIPT)
    workload = '[workload]\n        command = "{python} trial.py {lr} {width}"' if command else 'workload = "study_workloads:bowl"'
    path.write_text(
        textwrap.dedent(f"""
        name = "{name}"
        {workload}
        [storage]
        url = "{storage}"
        heartbeat = 1
        grace = 20
        [fixed]
        steps = 3
        sleep = {sleep}
        [ladder]
        width = [8, 16]
        D = [1e5]
        [space]
        lr = {{ log = ["0.05 / width", "5 / width"], points = 6 }}
        [strategy]
        name = "grid"
        [slurm]
        folder = "{tmp_path / "slurm"}"
        {slurm}
        """)
    )
    return path


def cli(*args: str, path_env: str | None = None, wait: bool = True, timeout: float = 150):
    """`scaletune ARGS` in a fresh process (as a user runs it), with tests/ importable by the jobs."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
    if path_env is not None:
        env["PATH"] = path_env
    cmd = [sys.executable, "-m", "scaletune", *args]
    if not wait:
        return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, check=False)


def one_error_line(proc) -> str:
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("scaletune: error: "), lines
    return lines[0]


@pytest.mark.parametrize(
    "table, field, value",
    [
        ("time = 90", "time", 90),
        ('time = "01:30:00"', "time", 90),
        ('time = "2-00:00:30"', "time", 2 * 24 * 60 + 1),
        ('mem = "16G"', "mem_mb", 16384),
        ('mem = "500M"', "mem_mb", 500),
        ("mem = 0.5", "mem_mb", 512),
        ("jobs = 8", "jobs", 8),
        ('setup = ["source venv/bin/activate", "module load cuda"]', "setup", ("source venv/bin/activate", "module load cuda")),
    ],
)
def test_slurm_table_values(tmp_path, table, field, value):
    spec = load_study_config(study_file(tmp_path, "j.log", table)).slurm
    assert getattr(spec, field) == value
    assert spec.folder == str(tmp_path / "slurm")


@pytest.mark.parametrize(
    "table, key",
    [
        ('partiton = "gpu"', "'partiton' (did you mean 'partition'?)"),
        ('time = "90 minutes"', "slurm.time"),
        ("time = 0", "slurm.time"),
        ('mem = "lots"', "slurm.mem"),
        ("jobs = 0", "slurm.jobs"),
        ("gpus_per_node = -1", "slurm.gpus_per_node"),
        ("setup = [1, 2]", "slurm.setup"),
    ],
)
def test_slurm_table_errors_name_the_key(tmp_path, table, key):
    with pytest.raises(ScaletuneError) as err:
        load_study_config(study_file(tmp_path, "j.log", table))
    assert key in str(err.value) and len(str(err.value).splitlines()) == 1


def test_a_job_asks_for_one_trials_resources_unless_the_table_says_otherwise(tmp_path):
    path = study_file(tmp_path, "j.log", "jobs = 2")
    path.write_text(path.read_text() + "[resources]\ngpus_per_trial = 2\ncpus_per_trial = 4\n")
    config = load_study_config(path)
    params = config.slurm.parameters(config)
    assert (params["gpus_per_node"], params["cpus_per_task"], params["time"]) == (2, 4, 60)
    path.write_text(path.read_text().replace("jobs = 2", "jobs = 2\ngpus_per_node = 8\ncpus_per_task = 32"))
    config = load_study_config(path)
    params = config.slurm.parameters(config)
    assert (params["gpus_per_node"], params["cpus_per_task"]) == (8, 32)
    plain = load_study_config(study_file(tmp_path, "j.log"))
    assert "gpus_per_node" not in plain.slurm.parameters(plain) and plain.slurm.parameters(plain)["cpus_per_task"] == 1


def test_slurm_table_does_not_change_the_plan(tmp_path):
    a = load_study_config(study_file(tmp_path, "j.log", "jobs = 2", name="same"))
    b = load_study_config(study_file(tmp_path, "j.log", 'jobs = 5\npartition = "gpu"\ntime = 600', name="same"))
    assert a.fingerprint == b.fingerprint and a.slurm != b.slurm


def test_sqlite_with_slurm_is_refused_before_anything_is_stored(tmp_path):
    proc = cli("sweep", str(study_file(tmp_path, "j.db")), "--backend", "slurm", "--no-progress")
    assert "sqlite:///" in one_error_line(proc)
    assert not (tmp_path / "j.db").exists()


def test_missing_sbatch_is_one_line_and_the_plan_is_kept(tmp_path):
    path = study_file(tmp_path, "j.log")
    proc = cli("sweep", str(path), "--backend", "slurm", "--no-progress", path_env=str(tmp_path / "empty"))
    assert "sbatch" in one_error_line(proc)
    stored = open_stored_study(load_study_config(path))
    assert [len(stored.rung_trials(k)[0]) for k in (0, 1)] == [6, 6]  # planned, waiting for a working backend


def storage_for(tmp_path: Path) -> str:
    return PG_URL or str(tmp_path / "trials.log")


@pytest.mark.slurm
@needs_slurm
def test_unknown_partition_is_one_line_and_submits_nothing(tmp_path):
    path = study_file(tmp_path, storage_for(tmp_path), 'partition = "no-such-partition"')
    proc = cli("sweep", str(path), "--backend", "slurm", "--no-progress")
    assert "partition" in one_error_line(proc)
    stored = open_stored_study(load_study_config(path))
    assert not [
        k for k in stored.storage.get_study_user_attrs(stored.storage.get_study_id_from_name(stored.name)) if k.startswith(JOB_PREFIX)
    ]


@pytest.mark.slow
@pytest.mark.slurm
@needs_slurm
def test_jobs_that_die_before_any_trial_stop_the_sweep_with_their_log_line(tmp_path):
    path = study_file(tmp_path, storage_for(tmp_path), 'setup = ["echo no such environment >&2", "exit 3"]')
    proc = cli("sweep", str(path), "--backend", "slurm", "--no-progress")
    line = one_error_line(proc)
    assert "(FAILED)" in line and line.endswith("_0_log.err: no such environment)")
    stored = open_stored_study(load_study_config(path))
    assert [len(stored.rung_trials(k)[0]) for k in (0, 1)] == [6, 6]
    assert all(t.state.name == "WAITING" for t in _trials(stored))  # nothing lost, nothing half-run


def _trials(stored) -> list:
    return [t for k in range(len(stored.rungs)) for t in stored.rung_trials(k)[0]]


@pytest.mark.slow
@pytest.mark.slurm
@needs_slurm
def test_twelve_command_trials_three_jobs_driver_killed_and_a_job_cancelled_then_resumed(tmp_path):
    path = study_file(tmp_path, storage_for(tmp_path), 'jobs = 3\ntime = 10\nmem = "256M"', command=True)
    config = load_study_config(path)
    driver = cli("sweep", str(path), "--backend", "slurm", "--no-progress", wait=False)
    deadline = time.monotonic() + 120
    victim = None
    while time.monotonic() < deadline and victim is None:
        time.sleep(0.5)
        try:
            stored = open_stored_study(config)
        except ScaletuneError:
            continue  # not created yet
        trials = _trials(stored)
        running = [t for t in trials if t.state.name == "RUNNING" and WORKER in t.system_attrs]
        done = sum(t.state.name == "COMPLETE" for t in trials)
        if done >= 3 and len(running) >= 2:
            victim = max(running, key=lambda t: t.datetime_start)  # started last: seconds of work left
    assert victim is not None, "the jobs did not get going within 2 minutes"
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    job = victim.system_attrs[WORKER].rpartition(":")[2].removeprefix("slurm")
    subprocess.run(["scancel", job], check=True)

    resumed = cli("sweep", str(path), "--backend", "slurm", "--no-progress")
    assert resumed.returncode == 0, resumed.stderr
    stored = open_stored_study(config)
    for k in (0, 1):
        trials, planned = stored.rung_trials(k)
        records = slot_records(trials, planned)
        assert planned == 6 and sorted(records) == list(range(6))
        # each planned slot: exactly one COMPLETE trial, nothing queued or running
        assert [sum(t.state.name == "COMPLETE" for t in r.attempts) for r in records.values()] == [1] * 6
        assert not any(r.live for r in records.values())
        for r in records.values():  # the loss the script reported at its last step
            t = r.final
            assert t.value == pytest.approx(2.0 + 0.1 * math.log(t.params["lr"] * 8 * 2**k / 0.5) ** 2 + 1 / 3)
    trials = _trials(stored)
    interrupted = [t for t in trials if t.state.name == "FAIL"]
    assert all("status" not in t.user_attrs for t in interrupted)  # given back, not failed outcomes
    # the cancelled job's trial was given back and ran again
    again = {(t.user_attrs["rung"], t.number): t for t in trials}[(victim.user_attrs["rung"], victim.number)]
    assert again.state.name == "FAIL" and "status" not in again.user_attrs
    assert [
        t.user_attrs["slot"]
        for t in trials
        if t.user_attrs.get("retry_of") == victim.number and t.user_attrs["rung"] == victim.user_attrs["rung"]
    ] == [victim.user_attrs["slot"]]

    jobs = {j.job_id: j for j in slurm_jobs(stored)}
    assert job in jobs and jobs[job].state == "CANCELLED" and jobs[job].running == []
    assert sum(j.done for j in jobs.values()) == 12  # every finished trial ran in a recorded job
    status = cli("status", str(path))
    assert status.returncode == 0 and job in status.stdout


def test_shared_storage_check(tmp_path):
    """PostgreSQL and journal files pass the shared-storage check; SQLite only with workers on this machine."""
    from scaletune.study.storage import require_shared

    for url in ("postgresql://u:p@db.example:5432/x", f"journal:///{tmp_path}/a.log"):
        require_shared(url, "slurm")
    with pytest.raises(ScaletuneError):
        require_shared(f"sqlite:///{tmp_path}/a.db", "ray", "ray://10.1.2.3:10001")
    require_shared(f"sqlite:///{tmp_path}/a.db", "ray", None)  # a local Ray instance shares this disk
