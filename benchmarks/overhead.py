"""Per-trial orchestration overhead of `scaletune sweep` vs a bare Optuna `study.optimize` loop.

Both run the same no-op objective (one uniform float, returned as the loss) for the same number of trials
into the same storage (a fresh SQLite file opened the same way, or PostgreSQL with --postgres URL).
scaletune's number includes everything it adds: planning the trials into the storage, worker processes
(spawn), claiming, heartbeats, per-trial records (scale, seed, result, status) and the progress poll.

    .venv/bin/python benchmarks/overhead.py --trials 200 [--postgres postgresql://...]

Prints a table: wall seconds, ms per trial, and the ratio to bare Optuna, measured side by side.
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
    study = optuna.create_study(storage=storage, study_name=f"bare-{uuid.uuid4().hex[:8]}",
                                sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(lambda t: t.suggest_float("x", 0.0, 1.0), n_trials=trials)
    return time.perf_counter() - start


def scaletune_sweep(url: str, trials: int, workers: int) -> tuple[float, float]:
    """(wall seconds of run_study, seconds from the first trial's start to the last trial's end)."""
    from scaletune.study import load_study_config, run_study
    from scaletune.study.results import open_stored_study

    config = load_study_config({
        "name": f"st-{uuid.uuid4().hex[:8]}", "workload": "overhead:noop", "storage": url,
        "ladder": {"width": [1]}, "space": {"x": {"uniform": [0.0, 1.0]}},
        "strategy": {"name": "random", "trials": trials},
    })
    start = time.perf_counter()
    result = run_study(config, workers=workers, progress=False)
    wall = time.perf_counter() - start
    assert result.complete
    trials_ = open_stored_study(config).rung_trials(0)[0]
    span = (max(t.datetime_complete for t in trials_) - min(t.datetime_start for t in trials_)).total_seconds()
    return wall, span


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--postgres", default=None, help="also measure on this PostgreSQL URL")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).parent))  # workers import overhead:noop

    tmp = Path(tempfile.mkdtemp(prefix="scaletune-overhead-"))
    storages = [("sqlite", f"sqlite:///{tmp / 'bench.db'}")] + ([("postgresql", args.postgres)] if args.postgres else [])
    rows = []
    for label, url in storages:
        bare = bare_optuna(url, args.trials)
        rows.append((label, "optuna study.optimize (1 process)", bare, None, 1.0))
        for workers in (1, 2):
            wall, span = scaletune_sweep(url, args.trials, workers)
            rows.append((label, f"scaletune sweep, {workers} worker process{'es' if workers > 1 else ''}",
                         wall, span, wall / bare))
    print(f"no-op objective, {args.trials} trials per row; ms/trial = wall / trials")
    print(f"{'storage':<11} {'runner':<40} {'wall s':>8} {'ms/trial':>9} {'steady ms/trial':>16} {'x optuna':>9}")
    for label, runner, wall, span, ratio in rows:
        steady = f"{1000 * span / args.trials:.1f}" if span is not None else "-"
        print(f"{label:<11} {runner:<40} {wall:8.2f} {1000 * wall / args.trials:9.1f} {steady:>16} {ratio:9.2f}")
    print("steady ms/trial: first trial start to last trial end, i.e. without process start-up and planning")


if __name__ == "__main__":
    main()
