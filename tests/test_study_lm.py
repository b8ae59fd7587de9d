"""One small real sweep of the built-in LM (scaletune.train.run_lm) through the study machinery."""

from __future__ import annotations

import math

import pytest

from scaletune.study import export_curves, export_runs, load_study_config, run_study

pytest.importorskip("torch")


@pytest.mark.slow  # trains the built-in LM in a sweep
def test_lm_sweep_records_rows_curves_and_costs(tmp_path):
    config = load_study_config(
        {
            "name": "lm",
            "workload": "lm",
            "seeds": [0],
            "fixed": {"batch_size": 1024, "seq_len": 64, "eval_tokens": 2048, "eval_every": 2, "param": "mup"},
            "ladder": {"width": [32], "depth": [2], "tokens": [8192]},
            "space": {"lr": {"log": [1e-3, 1e-2], "points": 2}},
            "strategy": "grid",
        },
        base_dir=tmp_path,
    )
    assert config.rungs[0].scale["N"] == 43168  # counted by the built-in LM (embeddings included)
    result = run_study(config, workers=1, progress=False)
    assert result.complete
    df = export_runs(config).sort_values("lr")
    assert list(df["status"]) == ["ok", "ok"] and list(df["lr"]) == pytest.approx([1e-3, 1e-2])
    assert (df["N"] == 43168).all() and (df["D"] == 8192).all() and (df["C"] == 6 * 43168 * 8192).all()
    assert df["loss"].between(2.0, math.log(256) + 1).all()  # byte-level vocabulary: below ln(256) + margin
    curves = export_curves(config)
    assert len(curves) == 2 * 8 and curves.groupby("run_id")["step"].max().tolist() == [8, 8]
    last = curves.dropna(subset=["loss"]).groupby("run_id")["loss"].last()
    assert last.loc[df["run_id"]].to_numpy() == pytest.approx(df["loss"].to_numpy())
