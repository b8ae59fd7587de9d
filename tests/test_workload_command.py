"""The command workload end to end: real scripts, real sweeps on SQLite with the local runner (and Ray for
resource requests). Substitution, environment, JSON config, metrics (JSON lines, regex), pruning, timeout,
failure, divergence, GPU sets, SIGKILL of the sweep, and bad input before any trial."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest

from scaletune.cli import main
from scaletune.errors import ScaletuneError
from scaletune.study import export_curves, export_runs, load_study_config, run_study
from scaletune.study.results import open_stored_study

TESTS = Path(__file__).parent


def script(tmp_path: Path, body: str, name: str = "train.py") -> Path:
    path = tmp_path / name
    path.write_text("import json, math, os, signal, subprocess, sys, time\nfrom scaletune import reporting\n" + textwrap.dedent(body))
    return path


def study(tmp_path: Path, command: str, **over) -> dict:
    raw = {
        "name": "cmd",
        "workload": {"command": command, "kill_grace": 0.5},
        "storage": "cmd.db",
        "seeds": [0],
        "ladder": {"width": [8], "D": [1e5]},
        "space": {"lr": {"log": [1e-3, 1e-2], "points": 2}},
        "strategy": "grid",
    }
    for key, value in over.items():
        raw[key] = {**raw[key], **value} if isinstance(value, dict) and isinstance(raw.get(key), dict) else value
    return raw


def sweep(tmp_path: Path, raw: dict, workers: int = 1):
    config = load_study_config(raw, base_dir=tmp_path)
    result = run_study(config, workers=workers, progress=False)
    assert result.complete
    return config, export_runs(config).sort_values("lr").reset_index(drop=True)


def trials(config) -> list:
    return sorted(open_stored_study(config).rung_trials(0)[0], key=lambda t: t.params.get("lr", 0))


def alive(pid: int) -> bool:
    """A process that exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False


def wait_dead(pids: list[int], seconds: float = 10.0) -> list[int]:
    """The pids still alive after waiting up to ``seconds`` for them to go."""
    deadline = time.monotonic() + seconds
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return [p for p in pids if alive(p)]


PY = "{python} train.py"


@pytest.mark.slow  # a sweep of commands: ~13 s
def test_values_reach_the_command_line_the_environment_and_the_json_config(tmp_path):
    script(
        tmp_path,
        """
        seen = {"argv": sys.argv[1:], "config": json.load(open(os.environ["SCALETUNE_CONFIG"])),
                "env": {k: v for k, v in os.environ.items() if k.startswith("SCALETUNE_")}, "cwd": os.getcwd()}
        json.dump(seen, open(os.path.join(os.environ["SCALETUNE_TRIAL_DIR"], "seen.json"), "w"))
        print("hello from the script")
        for step in (1, 2, 3):
            reporting.report(step, 5.0 - step, tokens=step * 1000, lr=float(sys.argv[1].split("=")[1]))
        reporting.report_final(1.5, N=1234, N_nonembed=1000)
    """,
    )
    raw = study(
        tmp_path, PY + " --lr={lr} --width={width} --tokens={D} --seed={seed} --gpus={gpus} --tag={tag}", fixed={"tag": "a b'c; rm -rf x"}
    )
    config, df = sweep(tmp_path, raw)
    assert list(df["status"]) == ["ok", "ok"] and list(df["loss"]) == [1.5, 1.5]
    assert list(df["N"]) == [1234, 1234] and list(df["N_nonembed"]) == [1000, 1000]
    assert list(df["bad_metric_lines"]) == [0, 0] and list(df["exit_code"]) == [0, 0]
    for row in df.itertuples():
        trial_dir = Path(row.workdir)
        assert trial_dir.parent == tmp_path / "cmd-runs"  # default workdir: NAME-runs next to the study file
        seen = json.loads((trial_dir / "seen.json").read_text())
        assert seen["argv"] == [f"--lr={row.lr}", "--width=8", "--tokens=100000", "--seed=0", "--gpus=0", "--tag=a b'c; rm -rf x"]
        assert seen["cwd"] == str(tmp_path)
        assert seen["config"] == {"width": 8, "D": 100000, "lr": row.lr, "seed": 0, "threads": 1, "tag": "a b'c; rm -rf x", "gpus": 0}
        env = seen["env"]
        assert (
            env["SCALETUNE_LR"],
            env["SCALETUNE_WIDTH"],
            env["SCALETUNE_D"],
            env["SCALETUNE_SEED"],
            env["SCALETUNE_GPUS"],
            env["SCALETUNE_TAG"],
        ) == (str(row.lr), "8", "100000", "0", "0", "a b'c; rm -rf x")
        assert env["SCALETUNE_METRICS"] == str(trial_dir / "metrics.jsonl")
        assert (trial_dir / "stdout.log").read_text() == "hello from the script\n"
    curves = export_curves(config)
    assert list(curves["step"]) == [1, 2, 3, 1, 2, 3] and list(curves["loss"]) == [4.0, 3.0, 2.0] * 2
    assert list(curves["tokens"]) == [1000, 2000, 3000] * 2
    assert sorted(set(curves["lr"])) == pytest.approx(sorted(df["lr"]))
    for t in trials(config):  # the losses reached Optuna as intermediate values (the pruners' input)
        assert t.intermediate_values == {1: 4.0, 2: 3.0, 3: 2.0}


def test_malformed_metric_lines_are_counted_and_never_fatal(tmp_path):
    script(
        tmp_path,
        """
        with open(os.environ["SCALETUNE_METRICS"], "a") as fh:
            fh.write('{"step": 1, "loss": 3.0}\\n' 'garbage\\n' '[1, 2]\\n' '{"step": 2}\\n'
                     '{"step": "x", "loss": 1}\\n' '\\n' '{"step": 2, "loss": 2.5}\\n' '{"final": 7}\\n'
                     '{"final": {"loss": "x"}}\\n' '{"final": {"N": 5, "status": "diverged", "error": "mine"}}\\n')
    """,
    )
    _, df = sweep(tmp_path, study(tmp_path, PY))
    assert list(df["status"]) == ["ok", "ok"] and list(df["loss"]) == [2.5, 2.5] and list(df["N"]) == [5, 5]
    assert list(df["bad_metric_lines"]) == [6, 6] and df["error"].isna().all()  # the sweep's keys are its own


@pytest.mark.slow  # a sweep of commands: ~12 s
def test_regex_metrics_over_stdout(tmp_path):
    script(
        tmp_path,
        """
        print("loading data...")
        for step in (10, 20, 30):
            print(f"iter {step} | lr 0.001 | loss {4 - step / 10:.2f}", flush=True)
        print("iter 40 | lr 0.001 | loss oops")
        print("done")
    """,
    )
    raw = study(tmp_path, PY, workload={"metrics": {"regex": r"iter (?P<step>\d+) \| lr (?P<lr>\S+) \| loss (?P<loss>\S+)"}})
    config, df = sweep(tmp_path, raw)
    assert list(df["status"]) == ["ok", "ok"] and list(df["loss"]) == [1.0, 1.0]
    assert list(df["bad_metric_lines"]) == [1, 1]  # "loss oops"; unmatched lines are not metrics
    curves = export_curves(config)
    assert list(curves["step"]) == [10, 20, 30] * 2 and list(curves["lr"]) == [0.001] * 6


def test_pruning_kills_the_whole_process_group(tmp_path):
    """The pruned script and the child it spawned both ignore SIGTERM: SIGKILL after kill_grace ends both."""
    script(
        tmp_path,
        """
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
        json.dump([os.getpid(), child.pid], open(os.path.join(os.environ["SCALETUNE_TRIAL_DIR"], "pids.json"), "w"))
        lr = float(os.environ["SCALETUNE_LR"])
        good = lr < 0.005
        for step in range(1, 4 if good else 600):
            reporting.report(step, 1.0 if good else 5.0)
            time.sleep(0.02 if good else 0.2)
        child.kill()
        reporting.report_final(1.0 if good else 5.0)
    """,
    )
    raw = study(tmp_path, PY, pruner={"name": "median", "n_startup_trials": 1, "n_warmup_steps": 0})
    config, df = sweep(tmp_path, raw)
    assert list(df["status"]) == ["ok", "pruned"] and df["loss"][1] == 5.0
    pids = json.loads((Path(df["workdir"][1]) / "pids.json").read_text())
    assert wait_dead(pids, 5.0) == []
    assert "exit_code" not in df or math.isnan(df["exit_code"][1])  # stopped by the sweep, not by itself
    assert max(trials(config)[1].intermediate_values) < 600


@pytest.mark.slow  # a sweep of commands: ~12 s
def test_timeout_failure_and_divergence(tmp_path):
    script(
        tmp_path,
        """
        kind = os.environ["SCALETUNE_KIND"]
        json.dump(os.getpid(), open(os.path.join(os.environ["SCALETUNE_TRIAL_DIR"], "pid.json"), "w"))
        reporting.report(1, 3.0)
        if kind == "hang":
            time.sleep(120)
        if kind == "fail":
            for i in range(30):
                print(f"line {i}", file=sys.stderr)
            sys.exit(3)
        if kind == "nan":
            reporting.report(2, float("nan"))
            time.sleep(120)
    """,
    )
    raw = study(tmp_path, PY, workload={"timeout": 1}, space={"lr": {"fixed": 0.01}, "kind": {"choices": ["hang", "fail", "nan"]}})
    config, df = sweep(tmp_path, raw)
    rows = {row.kind: row for row in df.itertuples()}
    attrs = {t.params["kind"]: t.user_attrs for t in trials(config)}
    pids = [json.loads((Path(row.workdir) / "pid.json").read_text()) for row in rows.values()]
    assert wait_dead(pids, 5.0) == []
    assert (rows["hang"].status, rows["hang"].error) == ("failed", "timeout after 1 s")
    assert (rows["fail"].status, rows["fail"].exit_code, rows["fail"].error) == ("failed", 3, "exit code 3: line 29")
    assert attrs["fail"]["stderr_tail"].splitlines() == [f"line {i}" for i in range(10, 30)]
    assert rows["nan"].status == "diverged" and pd.isna(rows["nan"].loss)
    assert attrs["nan"]["curve"]["val_loss"] == [3.0, None]  # NaN stored as null


@pytest.mark.slow  # a sweep of commands: ~19 s
def test_gpu_sets_are_disjoint_between_concurrent_workers(tmp_path):
    script(
        tmp_path,
        """
        t0 = time.time()
        time.sleep(0.3)
        reporting.report_final(1.0, cuda=os.environ.get("CUDA_VISIBLE_DEVICES"), gpus=int(sys.argv[1]),
                               t0=t0, t1=time.time())
    """,
    )
    raw = study(
        tmp_path, PY + " {gpus}", resources={"gpus_per_trial": 2, "devices": [0, 1, 2, 3]}, space={"lr": {"log": [1e-3, 1e-2], "points": 4}}
    )
    config, df = sweep(tmp_path, raw, workers=4)  # only 2 fit: 4 devices / 2 per trial
    assert list(df["status"]) == ["ok"] * 4 and set(df["gpus"]) == {2}
    assert list(df["cuda"]) == list(df["devices"])  # what the script saw is what was recorded
    assert set(df["devices"]) <= {"0,1", "2,3"}
    workers = {t.system_attrs["scaletune:worker"] for t in trials(config)}
    assert len(workers) <= 2
    rows = list(df.itertuples())
    for a in rows:  # trials that ran at the same time never shared a GPU
        for b in rows:
            if a.trial != b.trial and a.t0 < b.t1 and b.t0 < a.t1:
                assert a.devices != b.devices


def test_gpu_detection_honours_cuda_visible_devices(monkeypatch):
    from scaletune.workloads import Resources, detect_devices, device_groups

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,1,-1,0")
    assert detect_devices() == ["3", "1"]  # CUDA stops at the first invalid id
    assert device_groups(Resources(gpus=1)) == [("3",), ("1",)]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert detect_devices() == [] and device_groups(Resources(gpus=0)) is None
    with pytest.raises(ScaletuneError, match="gpus_per_trial = 1"):
        device_groups(Resources(gpus=1))
    assert detect_devices(["7"]) == ["7"]


@pytest.mark.slow
def test_sigkill_of_the_sweep_leaves_no_training_process_and_resume_finishes(tmp_path):
    log, hold = tmp_path / "pids.jsonl", tmp_path / "hold"
    hold.write_text("")
    script(
        tmp_path,
        f"""
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
        with open({str(log)!r}, "a") as fh:
            fh.write(json.dumps([os.getpid(), child.pid]) + "\\n")
        while os.path.exists({str(hold)!r}):
            time.sleep(0.05)
        child.kill()
        reporting.report_final(float(os.environ["SCALETUNE_LR"]))
    """,
    )
    path = tmp_path / "kill.toml"
    path.write_text(
        textwrap.dedent(f"""
        name = "kill"
        storage = "kill.db"
        [workload]
        command = "{PY}"
        [ladder]
        width = [8]
        [space]
        lr = {{ log = [1e-3, 1e-2], points = 4 }}
        [strategy]
        name = "grid"
    """)
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "scaletune", "sweep", str(path), "--workers", "2", "--no-progress"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while (not log.exists() or len(log.read_text().splitlines()) < 2) and time.monotonic() < deadline:
        time.sleep(0.1)
    pids = [p for line in log.read_text().splitlines() for p in json.loads(line)]
    assert len(pids) == 4 and all(alive(p) for p in pids)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert wait_dead(pids) == []  # scripts and the children they spawned went with the sweep

    hold.unlink()
    config = load_study_config(path)
    assert run_study(config, workers=2, progress=False).complete
    df = export_runs(config)
    assert sorted(df["slot"]) == [0, 1, 2, 3] and set(df["status"]) == {"ok"}
    assert list(df["loss"]) == pytest.approx(list(df["lr"]))


@pytest.mark.parametrize(
    "edit, key",
    [
        ({"workload": {"command": PY + " --lr={lrr}"}}, "{lrr}"),
        ({"workload": {"command": "no-such-program-xyz --lr={lr}"}}, "no-such-program-xyz"),
        ({"workload": {"command": "./missing.sh {lr}"}}, "./missing.sh"),
        ({"workload": {"metrics": {"regex": r"step (?P<step>\d+)"}}}, "workload.metrics.regex"),
        ({"workload": {"timeout": -1}}, "workload.timeout"),
        ({"workload": {"comand": "x"}}, "'command'"),
        ({"resources": {"gpus_per_trial": 2, "devices": [0]}}, "gpus_per_trial = 2"),
        ({"resources": {"cpus_per_trial": 100_000}}, "cpus_per_trial = 100000"),
    ],
)
def test_bad_input_is_one_line_exit_2_before_any_trial(tmp_path, capsys, edit, key):
    script(tmp_path, "open(os.path.join(os.path.dirname(os.environ['SCALETUNE_TRIAL_DIR']), 'ran'), 'w')\n")
    raw = study(tmp_path, PY + " --lr={lr}", **edit)
    lines = ["name = 'bad'", "storage = 'bad.db'", "seeds = [0]"]
    workload = raw["workload"]
    lines += ["[workload]"] + [
        f"{k} = {json.dumps(v)}" if not isinstance(v, dict) else f"{k} = {{ regex = {json.dumps(v['regex'])} }}"
        for k, v in workload.items()
    ]
    if "resources" in raw:
        lines += ["[resources]"] + [f"{k} = {json.dumps(v)}" for k, v in raw["resources"].items()]
    lines += ["[ladder]", "width = [8]", "[space]", "lr = { log = [1e-3, 1e-2], points = 2 }", "[strategy]", "name = 'grid'"]
    path = tmp_path / "bad.toml"
    path.write_text("\n".join(lines) + "\n")
    assert main(["sweep", str(path), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("scaletune: error: ") and key in err[0], err
    assert not (tmp_path / "bad.db").exists() and not (tmp_path / "bad-runs").exists()


def test_timeout_and_folder_may_change_on_resume_but_the_command_may_not(tmp_path):
    raw = study(tmp_path, "true {lr}")
    base = load_study_config(raw, base_dir=tmp_path).fingerprint
    changed = study(tmp_path, "true {lr}", workload={"timeout": 5, "workdir": "elsewhere"}, resources={"cpus_per_trial": 1})
    assert load_study_config(changed, base_dir=tmp_path).fingerprint == base
    assert load_study_config(study(tmp_path, "true --x {lr}"), base_dir=tmp_path).fingerprint != base


def test_reporting_imports_only_the_standard_library_and_is_a_no_op_outside_a_sweep(tmp_path, monkeypatch):
    code = (
        "import json, sys; import scaletune.reporting as r; r.report(1, 2.0); r.report_final(2.0); print(json.dumps(sorted(sys.modules)))"
    )
    env = {k: v for k, v in os.environ.items() if k != "SCALETUNE_METRICS"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    modules = set(json.loads(out))
    assert {m for m in modules if m.split(".")[0] == "scaletune"} == {"scaletune", "scaletune.errors", "scaletune.reporting"}
    assert not modules & {"torch", "numpy", "pandas", "optuna"}

    from scaletune import reporting

    metrics = tmp_path / "m.jsonl"
    monkeypatch.setenv("SCALETUNE_METRICS", str(metrics))
    monkeypatch.setenv("RANK", "1")  # torchrun's other ranks write nothing
    reporting.report(1, 2.0)
    assert not metrics.exists()
    monkeypatch.setenv("RANK", "0")
    reporting.report(1, 2.0, tokens=10, lr=1e-3)
    reporting.report_final(1.5, N=3)
    assert [json.loads(x) for x in metrics.read_text().splitlines()] == [
        {"step": 1, "loss": 2.0, "tokens": 10, "lr": 1e-3},
        {"final": {"loss": 1.5, "N": 3}},
    ]


# -- Ray: trials request cpus_per_trial / gpus_per_trial from the cluster ----------------------------------

ray = None


@pytest.fixture
def local_ray():
    global ray
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, num_gpus=0, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": {"PYTHONPATH": str(TESTS)}})
    yield
    ray.shutdown()


@pytest.mark.slow
def test_ray_tasks_request_the_trial_resources(tmp_path, local_ray):
    raw = {
        "name": "ray",
        "workload": "workload_probes:probe",
        "storage": "ray.db",
        "resources": {"gpus_per_trial": 1},
        "ladder": {"width": [8]},
        "space": {"lr": {"log": [1e-3, 1e-2], "points": 2}},
        "strategy": "grid",
    }
    with pytest.raises(ScaletuneError, match="gpus_per_trial"):  # no node has a GPU
        run_study(load_study_config(raw, base_dir=tmp_path), backend="ray", progress=False)
    assert not (tmp_path / "ray.db").exists()

    raw["resources"] = {"cpus_per_trial": 2}
    config = load_study_config(raw, base_dir=tmp_path)
    assert run_study(config, backend="ray", progress=False).complete
    df = export_runs(config)
    assert list(df["ray_CPU"]) == [2.0, 2.0] and "ray_GPU" not in df
    assert len({t.system_attrs["scaletune:worker"] for t in trials(config)}) == 1  # 2 CPUs fit one trial


@pytest.mark.slow
def test_the_own_script_example_sweeps_a_plain_pytorch_script(tmp_path):
    """examples/own_script, made smaller: 1 width x 2 learning rates at 20k tokens."""
    pytest.importorskip("torch")
    example = TESTS.parent / "examples" / "own_script"
    (tmp_path / "train.py").write_text((example / "train.py").read_text())
    text = (example / "own_script.toml").read_text()
    text = text.replace("width = [32, 64, 128]", "width = [32]").replace("tokens = [100_000]", "tokens = [20_000]")
    text = text.replace("lr = { log = [1e-3, 1e-1], points = 5 }", "lr = { log = [3e-3, 3e-2], points = 2 }")
    (tmp_path / "own_script.toml").write_text(text)
    config = load_study_config(tmp_path / "own_script.toml")
    assert run_study(config, workers=2, progress=False).complete
    df = export_runs(config)
    n = 256 * 16 + (16 * 16 * 32 + 32) + (32 * 32 + 32) + (32 * 256 + 256)  # embeddings + three linear layers
    assert list(df["status"]) == ["ok", "ok"] and set(df["N"]) == {n} and set(df["N_nonembed"]) == {n - 256 * 16}
    assert set(df["D"]) == {20_000 // 256 * 256}  # whole batches: what the script trained, not the ladder's D
    assert df["loss"].between(1.0, math.log(256)).all()  # below a uniform guess over bytes
    curves = export_curves(config)
    assert curves.groupby("run_id")["step"].max().tolist() == [78, 78]
    assert (curves.groupby("run_id")["tokens"].max() == 78 * 256).all()
