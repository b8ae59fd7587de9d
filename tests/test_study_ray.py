"""The Ray backend: a small sweep on a local Ray instance started by the test, into the same storage."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from scaletune.study import export_runs, load_study_config, run_study
from scaletune.study.results import open_stored_study, slot_records

ray = pytest.importorskip("ray")
TESTS = Path(__file__).parent


@pytest.fixture
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": {"PYTHONPATH": str(TESTS)}})
    yield
    ray.shutdown()


@pytest.mark.slow  # starts Ray: ~55 s
def test_ray_backend_runs_the_planned_set_once_into_the_same_storage(tmp_path, local_ray):
    log = tmp_path / "runs.jsonl"
    config = load_study_config(
        {
            "name": "ray",
            "workload": "study_workloads:bowl",
            "seeds": [0],
            "storage": {"url": "ray.db", "heartbeat": 1, "grace": 10},
            "fixed": {"steps": 3, "log": str(log)},
            "ladder": {"width": [8, 16], "D": [1e5]},
            "space": {"lr": {"log": ["0.05 / width", "5 / width"], "points": 3}},
            "strategy": "grid",
        },
        base_dir=tmp_path,
    )
    result = run_study(config, workers=2, backend="ray", progress=False)
    assert result.complete
    df = export_runs(config)
    assert len(df) == 6 and set(df["status"]) == {"ok"}
    stored = open_stored_study(config)
    for k in (0, 1):
        trials, planned = stored.rung_trials(k)
        assert [r.done_count for r in slot_records(trials, planned).values()] == [1] * 3
    runs = [json.loads(x) for x in log.read_text().splitlines()]
    assert len(runs) == 6 and len({(r["width"], r["lr"]) for r in runs}) == 6
    assert all(r["pid"] != os.getpid() for r in runs)  # ran in Ray workers, not in this process
    workers = {t.system_attrs["scaletune:worker"] for k in (0, 1) for t in stored.rung_trials(k)[0]}
    assert 1 <= len(workers) <= 2
