"""Per-trial orchestration overhead of `scaletune sweep` vs a bare Optuna `study.optimize` loop.

Both run the same no-op objective (one uniform float, returned as the loss) for the same number of trials
into the same storage (a fresh SQLite file opened the same way, or PostgreSQL with --postgres URL).
scaletune's number includes everything it adds: planning the trials into the storage, worker processes
(spawn), claiming, heartbeats, per-trial records (scale, seed, result, status) and the progress poll.

    .venv/bin/python benchmarks/overhead.py --trials 200 [--postgres postgresql://...]

Prints a table: wall seconds, ms per trial, and the ratio to bare Optuna, measured side by side.

``--command``: the command workload's overhead instead. The same small script (imports scaletune.reporting,
reports 10 losses and a final one) runs N times bare (``subprocess.run``, one after another) and as N
trials of a command-workload sweep with one worker on SQLite; the difference per trial is what the sweep
adds (supervisor process, trial folder and files, metrics tailing, pruner reports, storage records).

    .venv/bin/python benchmarks/overhead.py --command --trials 40
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from pathlib import Path


def noop(config: dict, report) -> dict:
    """The no-op workload: the loss is the sampled value."""
    return {"loss": float(config["x"])}


def bare_optuna(url: str, trials: int) -> float:
    import optuna

    from scaletune.study.storage import open_storage

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    storage = open_storage(url)
    start = time.perf_counter()
    study = optuna.create_study(storage=storage, study_name=f"bare-{uuid.uuid4().hex[:8]}", sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(lambda t: t.suggest_float("x", 0.0, 1.0), n_trials=trials)
    return time.perf_counter() - start


def scaletune_sweep(url: str, trials: int, workers: int) -> tuple[float, float]:
    """(wall seconds of run_study, seconds from the first trial's start to the last trial's end)."""
    from scaletune.study import load_study_config, run_study
    from scaletune.study.results import open_stored_study

    config = load_study_config(
        {
            "name": f"st-{uuid.uuid4().hex[:8]}",
            "workload": "overhead:noop",
            "storage": url,
            "ladder": {"width": [1]},
            "space": {"x": {"uniform": [0.0, 1.0]}},
            "strategy": {"name": "random", "trials": trials},
        }
    )
    start = time.perf_counter()
    result = run_study(config, workers=workers, progress=False)
    wall = time.perf_counter() - start
    assert result.complete
    trials_ = open_stored_study(config).rung_trials(0)[0]
    span = (max(t.datetime_complete for t in trials_) - min(t.datetime_start for t in trials_)).total_seconds()
    return wall, span


SCRIPT = """\
import sys
from scaletune import reporting
lr = float(sys.argv[1].split("=")[1])
for step in range(1, 11):
    reporting.report(step, 3.0 - 0.1 * step + lr, tokens=step * 1000, lr=lr)
reporting.report_final(2.0 + lr, N=1000)
"""


def command_overhead(trials: int) -> None:
    """Bare subprocess runs vs the same script as command-workload trials, side by side."""
    import subprocess

    from scaletune.study import load_study_config, run_study
    from scaletune.study.results import open_stored_study

    tmp = Path(tempfile.mkdtemp(prefix="scaletune-overhead-"))
    (tmp / "script.py").write_text(SCRIPT)
    lrs = [10 ** (-3 + 2 * i / max(1, trials - 1)) for i in range(trials)]

    def run_bare() -> float:
        """What the sweep runs, without the sweep: same interpreter, folder and arguments."""
        start = time.perf_counter()
        for lr in lrs:
            subprocess.run([sys.executable, "script.py", f"--lr={lr}"], cwd=tmp, check=True, capture_output=True)
        return time.perf_counter() - start

    before = run_bare()

    config = load_study_config(
        {
            "name": "cmd",
            "storage": "bench.db",
            "workload": {"command": "{python} script.py --lr={lr}"},
            "ladder": {"width": [1]},
            "space": {"lr": {"log": [lrs[0], lrs[-1]], "points": trials}},
            "strategy": "grid",
        },
        base_dir=tmp,
    )
    start = time.perf_counter()
    result = run_study(config, workers=1, progress=False)
    wall = time.perf_counter() - start
    assert result.complete and result.rungs[0].counts == {"ok": trials}, result.rungs[0].counts
    done = open_stored_study(config).rung_trials(0)[0]
    span = (max(t.datetime_complete for t in done) - min(t.datetime_start for t in done)).total_seconds()
    inside = sum(t.user_attrs["result"]["seconds"] for t in done)  # the workload's own time per trial
    bare = (before + run_bare()) / 2  # bare runs before and after the sweep: a busy machine's load drifts

    print(f"command workload, {trials} trials of the same script (10 reports + final); ms/trial = time / trials")
    print(f"{'runner':<46} {'wall s':>8} {'ms/trial':>9} {'overhead ms/trial':>18}")
    print(f"{'bare subprocess.run (mean of before and after)':<46} {bare:8.2f} {1000 * bare / trials:9.1f} {'-':>18}")
    print(
        f"{'scaletune sweep, command workload, 1 worker':<46} {wall:8.2f} {1000 * wall / trials:9.1f} {1000 * (wall - bare) / trials:18.1f}"
    )
    print(
        f"{'  steady: first trial start to last trial end':<46} {span:8.2f} {1000 * span / trials:9.1f} "
        f"{1000 * (span - bare) / trials:18.1f}"
    )
    print(
        f"{'  inside the workload (process + tailing)':<46} {inside:8.2f} {1000 * inside / trials:9.1f} "
        f"{1000 * (inside - bare) / trials:18.1f}"
    )
    print("goal: steady overhead <= 500 ms per trial")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--postgres", default=None, help="also measure on this PostgreSQL URL")
    parser.add_argument("--command", action="store_true", help="measure the command workload instead")
    args = parser.parse_args()
    if args.command:
        command_overhead(args.trials)
        return
    sys.path.insert(0, str(Path(__file__).parent))  # workers import overhead:noop

    tmp = Path(tempfile.mkdtemp(prefix="scaletune-overhead-"))
    storages = [("sqlite", f"sqlite:///{tmp / 'bench.db'}")] + ([("postgresql", args.postgres)] if args.postgres else [])
    rows = []
    for label, url in storages:
        bare = bare_optuna(url, args.trials)
        rows.append((label, "optuna study.optimize (1 process)", bare, None, 1.0))
        for workers in (1, 2):
            wall, span = scaletune_sweep(url, args.trials, workers)
            rows.append((label, f"scaletune sweep, {workers} worker process{'es' if workers > 1 else ''}", wall, span, wall / bare))
    print(f"no-op objective, {args.trials} trials per row; ms/trial = wall / trials")
    print(f"{'storage':<11} {'runner':<40} {'wall s':>8} {'ms/trial':>9} {'steady ms/trial':>16} {'x optuna':>9}")
    for label, runner, wall, span, ratio in rows:
        steady = f"{1000 * span / args.trials:.1f}" if span is not None else "-"
        print(f"{label:<11} {runner:<40} {wall:8.2f} {1000 * wall / args.trials:9.1f} {steady:>16} {ratio:9.2f}")
    print("steady ms/trial: first trial start to last trial end, i.e. without process start-up and planning")


if __name__ == "__main__":
    main()
