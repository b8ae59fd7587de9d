"""The two hooks other areas plug into studies: strategy = "scale-aware" with
scaletune.hparams.search.narrow_space, and pruner = "curve" (scaletune.curves.pruner.CurvePruner)."""

from __future__ import annotations

import math

import pytest

from scaletune.cli._progress import SweepProgress
from scaletune.study import export_curves, export_runs, load_study_config, run_study
from scaletune.study.results import open_stored_study


def study(tmp_path, **over):
    raw = {
        "name": "h",
        "workload": "study_workloads:bowl",
        "seeds": [0],
        "storage": {"url": "h.db", "heartbeat": 1, "grace": 10},
        "fixed": {"steps": 20},
        "ladder": {"width": [8], "D": [1e5]},
        "space": {"lr": {"log": [5e-4, 5.0], "points": 9}},
        "strategy": "grid",
    }
    return load_study_config(raw | over, base_dir=tmp_path)


@pytest.mark.slow  # a sweep: ~28 s
def test_curve_pruner_by_name_stops_hopeless_trials_and_keeps_the_best(tmp_path):
    pytest.importorskip("scaletune.curves.pruner")
    from scaletune.curves.pruner import CurvePruner

    config = study(tmp_path, pruner={"name": "curve", "schedule": "constant:steps=20", "min_trials": 2})
    assert isinstance(config.make_pruner(), CurvePruner)
    run_study(config, workers=1, progress=False)
    df = export_runs(config)
    steps = export_curves(config).groupby("run_id")["step"].max()
    assert len(df) == 9 and set(df["status"]) <= {"ok", "pruned"}
    pruned = df[df["status"] == "pruned"]
    assert len(pruned) >= 3 and (steps.loc[pruned["run_id"]] < 20).all()
    best = df.loc[df.loc[df["status"] == "ok", "loss"].idxmin()]
    assert best["lr"] == pytest.approx(0.5 / 8 / 1.25, rel=0.3)  # the grid point nearest the optimum 0.0625


@pytest.mark.slow  # a sweep: ~24 s
def test_scale_aware_with_the_hparams_narrow_space(tmp_path):
    pytest.importorskip("scaletune.hparams.search")
    config = study(
        tmp_path,
        ladder={"width": [8, 32], "D": [1e5]},
        fixed={"steps": 5},
        space={"lr": {"log": [1e-4, 1.0]}},
        strategy={"name": "scale-aware", "trials": 8},
    )
    run_study(config, workers=2, progress=False)
    df = export_runs(config)
    assert len(df) == 16 and set(df["status"]) == {"ok"}
    stored = open_stored_study(config)
    lo, hi = stored.storage.get_study_user_attrs(stored.storage.get_study_id_from_name("h/r1"))["ranges"]["lr"]
    assert 1e-4 <= lo < hi <= 1.0 and math.log(hi / lo) < math.log(1e4)  # narrowed from the configured range
    rung1 = df[df["rung"] == 1]
    assert rung1["lr"].between(lo, hi).all()


@pytest.mark.slow  # a sweep: ~12 s
def test_progress_without_a_terminal_prints_a_line_per_finished_trial(tmp_path, capsys):
    """In CI logs (stderr not a terminal) a live table would show only at the end: one line per trial instead."""
    config = study(tmp_path, space={"lr": {"log": [5e-4, 5.0], "points": 4}})
    with SweepProgress(config.name) as view:
        run_study(config, workers=1, progress=view)
    err = capsys.readouterr().err
    counts = [int(line.split(": ")[1].split("/")[0]) for line in err.splitlines() if line.startswith("h: ") and "trials" in line]
    assert counts == sorted(counts) and counts[0] < 4 and counts[-1] == 4
    assert "4 ok" in err  # the final per-rung table
