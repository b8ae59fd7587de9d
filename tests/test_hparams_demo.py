"""The demo's whole pipeline at a tiny size (real training, real SQLite study, real fits): what CI runs."""

import json
import math

import pandas as pd
import pytest

from scaletune.cli import main


@pytest.mark.slow
def test_tiny_demo_runs_the_whole_loop(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--tiny", "--out", str(out), "--workers", "2"]) == 0
    printed = capsys.readouterr().out
    assert "Predicted (from proxies) vs measured" in printed and str(out.resolve()) in printed.replace("\n", "")
    runs = pd.read_csv(out / "runs.csv")
    assert len(runs) == 2 * 2 * 5 + 2 * 4 and set(runs["status"]) <= {"ok", "diverged"}
    # the batch sweep: the largest proxy at the target's token budget, beside the ladder's batch size
    swept = runs[(runs["width"] == 24) & (runs["D"] == 2**13)]
    assert sorted(swept["batch_size"].unique()) == [64, 128, 256]
    assert (runs["param"] == "mup").all() and runs["loss"][runs["status"] == "ok"].between(1.0, 6.0).all()
    target = pd.read_csv(out / "target_runs.csv")
    assert len(target) == 3 and (target["width"] == 48).all()
    fits = json.loads((out / "fits.json").read_text())
    check = fits["check"]
    rec = fits["recommendation"]
    assert math.isfinite(rec["lr"]["value"]) and rec["lr"]["value"] > 0
    assert check["recommended_lr"] == rec["lr"]["value"]
    # the batch size from the sweep nearest the target (or, if no lr law at it can be fitted on these tiny
    # noisy sweeps, the lr law's own batch size), and the target trained at it
    assert rec["batch_size_tokens"]["method"] in ("BATCH_NEAREST_SWEEP", "BATCH_NEAREST_BOUND", "BATCH_REFERENCE")
    assert (target["batch_size"] == check["batch_size_tokens"]).all()
    assert sorted(target["lr"]) == sorted([check["recommended_lr"] * f for f in (0.5, 1.0, 2.0)])
    assert math.isfinite(check["measured_loss_at_recommended"])
    assert check["best_measured_loss"] <= check["measured_loss_at_recommended"]
    for fig in ("sweeps.png", "laws.png", "target.png"):
        assert (out / fig).stat().st_size > 5_000
