"""Transfer across depth: the shift of the optimal learning rate between depths and the fitted depth exponent."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from scaletune.cli.hparams_cmds import print_recommendation
from scaletune.hparams.laws import fit_hparam_laws, transfer_report
from scaletune.hparams.optimum import find_optima
from scaletune.hparams.recommend import recommend
from scaletune.hparams.synthetic import Landscape

LRS = 2.0 ** np.arange(-11, -2)  # a fixed 2x grid, as a real sweep: not centred on any optimum


def depth_sweep(exponent: float, depths=(1, 2, 4, 8), width=32, D=1e8, noise=0.001, seeds=2, seed=0) -> pd.DataFrame:
    """Runs of a depth sweep at fixed width and tokens with lr*(depth) = 0.01 depth^exponent.

    N grows with depth, as in a real model, so the default (N, D) grouping gives one scale per depth."""
    rng = np.random.default_rng(seed)
    rows = []
    for depth in depths:
        lr_opt = 0.01 * depth**exponent
        for lr in LRS:
            for s in range(seeds):
                clean = 3.0 - 0.05 * math.log(depth) + 0.02 * math.log(lr / lr_opt) ** 2
                rows.append(
                    dict(
                        N=1e5 * depth,
                        D=D,
                        width=width,
                        depth=depth,
                        lr=lr,
                        batch_size=512,
                        seed=s,
                        status="ok",
                        loss=clean * (1 + noise * rng.standard_normal()),
                    )
                )
    return pd.DataFrame(rows)


def test_depth_exponent_recovered_and_drift_reported():
    rep = transfer_report(find_optima(depth_sweep(-0.5), bootstrap=200))
    assert rep.rows == ()  # one width: nothing to say across width, and the depth sweep's N change is not one
    (row,) = rep.depth_rows
    assert row["depths"] == [1, 2, 4, 8] and row["width"] == 32
    lo, hi = row["exponent_interval"]
    assert lo < row["exponent"] < hi < 0 and hi - lo < 0.2
    assert row["exponent"] == pytest.approx(-0.5, abs=0.05)
    assert row["shift"] == pytest.approx(8**-0.5, rel=0.1)  # a factor 2.8: more than half a grid step
    assert row["shift_interval"][1] < 1
    assert not row["held"] and rep.depth_held is False and not rep.held and rep.width_held is None
    assert "did NOT hold" in rep.depth_note and "depth^-0.5" in rep.depth_note


def test_depth_exponent_interval_covers_the_truth():
    # a 95% interval: over 10 independent sweeps it should miss the true -0.5 about once (measured: 9/10)
    fits = [transfer_report(find_optima(depth_sweep(-0.5, seed=s), bootstrap=100)).depth_rows[0] for s in range(10)]
    covered = [r["exponent_interval"][0] <= -0.5 <= r["exponent_interval"][1] for r in fits]
    assert sum(covered) >= 8
    assert np.mean([r["exponent"] for r in fits]) == pytest.approx(-0.5, abs=0.02)


def test_flat_optimum_across_depth_holds():
    rep = transfer_report(find_optima(depth_sweep(0.0), bootstrap=200))
    (row,) = rep.depth_rows
    lo, hi = row["exponent_interval"]
    assert lo <= 0 <= hi and abs(row["exponent"]) < 0.1  # measured -0.057
    assert abs(math.log(row["shift"])) < 0.5 * math.log(2)
    assert row["held"] and rep.held and rep.depth_held
    d = rep.to_dict()
    assert d["depth_held"] is True and d["depth_rows"][0]["exponent"] == row["exponent"]
    assert d["rows"] == [] and d["width_held"] is None


def test_one_depth_gives_no_depth_rows_and_keeps_the_width_report():
    # A width sweep at one depth: the width rows as before, no depth rows.
    runs = Landscape(a=-0.713, noise=0.001).sweep([(n, 1e9) for n in (1e7, 3e7, 8e7)], seed=4)
    runs["depth"] = 4
    rep = transfer_report(find_optima(runs, bootstrap=60))
    assert rep.depth_rows == () and rep.depth_held is None and rep.depth_note == ""
    assert rep.rows[0]["depth"] == 4 and rep.rows[0]["shift"] == pytest.approx(8.0**-0.713, rel=0.2)
    assert not rep.held and rep.width_held is False
    assert transfer_report(find_optima(depth_sweep(-0.5, depths=(4,)), bootstrap=60)) is None


def test_width_and_depth_sweeps_in_one_table_are_kept_apart():
    # A width ladder at depth 2 and a depth ladder at width 32 sharing the (32, 2) point: each axis only
    # compares scales that differ in it (the depth ladder's N change is no width shift, and vice versa).
    depth_runs = depth_sweep(-0.5, depths=(2, 4, 8))
    width_runs = depth_sweep(-0.5, depths=(2,), seed=1)  # widths 64 and 128 at depth 2, same lr* as width 32
    wide = pd.concat([width_runs.assign(width=w, N=2.5e5 * (w / 32) ** 2) for w in (64, 128)])
    rep = transfer_report(find_optima(pd.concat([depth_runs, wide]), bootstrap=100))
    (wrow,) = rep.rows
    assert wrow["depth"] == 2 and wrow["N_ratio"] == pytest.approx(20) and wrow["held"]
    depth_rows = {r["width"]: r for r in rep.depth_rows}
    assert set(depth_rows) == {32}  # widths 64 and 128 have one depth each
    assert depth_rows[32]["depths"] == [2, 4, 8] and depth_rows[32]["exponent"] == pytest.approx(-0.5, abs=0.07)
    assert rep.width_held and not rep.depth_held and not rep.held


def test_unbracketed_depth_left_out_of_the_depth_fit():
    runs = depth_sweep(-0.5)
    # depth 8's sweep stops below its optimum (0.0035): the best rate is the top of the sweep
    runs = runs[(runs["depth"] != 8) | (runs["lr"] < 0.002)]
    rep = transfer_report(find_optima(runs, bootstrap=100))
    (row,) = rep.depth_rows
    assert row["depths"] == [1, 2, 4] and row["depth_deep"] == 4


def test_recommend_prints_the_depth_line():
    # fit_hparam_laws carries the depth report; the recommend text shows it next to the width line.
    optima = find_optima(depth_sweep(-0.5), bootstrap=100)
    laws = fit_hparam_laws(optima, bootstrap=100)
    assert laws.transfer.depth_rows
    assert any("the ladder varies depth" in n for n in laws.notes)  # N then mixes width and depth
    rec = recommend(depth_sweep(-0.5), {"N": 1e6, "D": 1e8}, bootstrap=100, loss_bootstrap=50)
    console = Console(record=True, width=400)
    print_recommendation(rec, console)
    text = console.export_text()
    assert "transfer across depth: optimal lr moved by x0.3" in text and "transfer across width" not in text
