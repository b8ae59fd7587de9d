"""Stability analysis on synthetic sweeps with hand-computable answers: LR sensitivity (Wortsman et al. 2023),
the stable range and its trend in N, the detectors, interventions, the CLI."""

import json
import math

import numpy as np
import pandas as pd
import pytest

from scaletune.cli import main
from scaletune.stability import (
    analyse_stability,
    attention_logit_growth,
    detect,
    output_logit_divergence,
    scale_sensitivity,
    stability_edge,
)


def _sweep(losses, lrs=(1e-3, 2e-3, 4e-3, 8e-3), seeds=1):
    rows = []
    for lr, loss in zip(lrs, losses):
        for s in range(seeds):
            ok = loss is not None
            rows.append({"lr": lr, "loss": loss if ok else np.nan, "status": "ok" if ok else "diverged", "seed": s})
    return pd.DataFrame(rows)


def test_sensitivity_is_the_mean_capped_excess_over_the_best_loss():
    # losses 3.0, 2.5, 2.6 and one diverged rate; L_ref = 4: capped 3.0, 2.5, 2.6, 4.0; L* = 2.5
    r = scale_sensitivity(_sweep([3.0, 2.5, 2.6, None]), l_ref=4.0, bootstrap=0)
    assert r.best_loss == 2.5 and r.best_lr == 2e-3
    assert r.sensitivity == pytest.approx((0.5 + 0 + 0.1 + 1.5) / 4)
    assert r.n_failed == 1


def test_l_ref_caps_hopeless_runs():
    # a loss above L_ref counts as L_ref: capped 3.0 (not 5.0), 2.0, 2.0
    r = scale_sensitivity(_sweep([5.0, 2.0, 2.0], lrs=(1e-3, 2e-3, 4e-3)), l_ref=3.0, bootstrap=0)
    assert r.sensitivity == pytest.approx(1.0 / 3)


def test_stable_range_edge_interpolates_the_tolerance_crossing_in_ln_lr():
    # best 2.0 at 2e-3; 1% tolerance -> threshold 2.02; 4e-3 has 2.01 (inside), 8e-3 has 2.05 (outside):
    # crossing at fraction (2.02 - 2.01) / (2.05 - 2.01) = 0.25 of the ln step from 4e-3 to 8e-3
    r = scale_sensitivity(_sweep([2.1, 2.0, 2.01, 2.05]), l_ref=4.0, tolerance=0.01, bootstrap=0)
    assert r.edge_bracketed
    assert r.edge == pytest.approx(4e-3 * 2**0.25)
    assert r.edge_tested == 4e-3 and r.range_low == 2e-3


def test_edge_at_the_top_of_the_sweep_is_a_lower_bound_left_out_of_the_trend():
    r = scale_sensitivity(_sweep([2.3, 2.1, 2.0, 2.0]), l_ref=4.0, bootstrap=0)
    assert not r.edge_bracketed and r.edge == 8e-3


def test_seed_bootstrap_interval_contains_the_estimate_and_shrinks_with_seeds():
    rng = np.random.default_rng(0)

    def noisy(seeds):
        df = _sweep([3.0, 2.5, 2.6, 2.9], seeds=seeds)
        df["loss"] += rng.normal(0, 0.02, len(df))
        return scale_sensitivity(df, l_ref=4.0, bootstrap=300, seed=1)

    few, many = noisy(2), noisy(16)
    for r in (few, many):
        lo, hi = r.sensitivity_interval
        assert lo <= r.sensitivity <= hi and r.bootstrap_method == "seeds"
    assert many.sensitivity_interval[1] - many.sensitivity_interval[0] < few.sensitivity_interval[1] - few.sensitivity_interval[0]


def _ladder(edge_exponent=-0.5, qk_factor=None, seeds=2, noise=0.002):
    """Three scales; loss quadratic in ln lr, diverged above edge(N) = 0.1 (N/1e6)^exponent."""
    rng = np.random.default_rng(0)
    rows = []
    for N in (1e6, 4e6, 1.6e7):
        for qk in [False] if qk_factor is None else [False, True]:
            edge = 0.1 * (N / 1e6) ** edge_exponent * (qk_factor if qk else 1)
            for lr in 2.0 ** np.arange(-12, -1):
                for s in range(seeds):
                    loss = 3 - 0.1 * np.log(N / 1e6) + 0.02 * np.log(lr / 0.025) ** 2 + rng.normal(0, noise)
                    ok = lr < edge
                    rows.append(
                        {
                            "run_id": f"{N:g}/{qk}/{lr:g}/{s}",
                            "N": N,
                            "D": 20 * N,
                            "lr": lr,
                            "seed": s,
                            "loss": loss if ok else np.nan,
                            "status": "ok" if ok else "diverged",
                            "qk_norm": qk,
                        }
                    )
    return pd.DataFrame(rows)


def test_edge_trend_recovers_the_power_law_of_the_divergence_edge():
    rep = analyse_stability(_ladder(-0.5), target={"N": 1e8}, l_ref=4.0, bootstrap=100)
    trend = rep.arms[0].edge_trend
    assert trend.scales == 3
    assert trend.slope == pytest.approx(-0.5, abs=0.05)
    p = trend.prediction
    assert p.extrapolation == pytest.approx(1e8 / 1.6e7)
    assert p.interval[0] <= p.value <= p.interval[1]
    # the divergence edge at the target is 0.1 * 100^-0.5 = 0.01; the 1% edge lies below it, within one 2x step
    assert 0.005 < p.value < 0.01
    assert stability_edge(_ladder(-0.5), {"N": 1e8}).value == pytest.approx(p.value, rel=0.02)


def test_interventions_are_arms_and_a_wider_stable_range_lowers_sensitivity():
    rep = analyse_stability(_ladder(-0.5, qk_factor=4.0), target={"N": 1e8}, l_ref=4.0, bootstrap=100)
    assert rep.interventions == ("qk_norm",)
    base, qk = (a for a in rep.arms if a.values["qk_norm"] is False), (a for a in rep.arms if a.values["qk_norm"] is True)
    base, qk = next(base), next(qk)
    assert qk.mean_sensitivity < base.mean_sensitivity
    assert qk.mean_sensitivity_interval[1] < base.mean_sensitivity_interval[0]
    assert qk.edge_trend.prediction.value > base.edge_trend.prediction.value


def test_sensitivity_trend_is_linear_in_ln_N():
    rep = analyse_stability(_ladder(-0.5, seeds=1, noise=0.0), target={"N": 1e8}, l_ref=4.0, bootstrap=50)
    s = [x.sensitivity for x in rep.arms[0].scales]
    x = np.log([1e6, 4e6, 1.6e7])
    slope = np.polyfit(x, s, 1)[0]
    assert rep.arms[0].sensitivity_trend.slope == pytest.approx(slope)
    assert rep.arms[0].scales[0].bootstrap_method == "rates"  # one seed per rate


def _curve(attn, z, steps=None):
    steps = steps or list(range(1, len(attn) + 1))
    return pd.DataFrame({"step": steps, "attn_logit_max": attn, "z_mean": z})


def test_attention_detector_threshold_and_growth():
    quiet = attention_logit_growth(_curve([2, 4, 5, 5, 6, 6, 6, 6], [0] * 8))
    assert not quiet.flagged and quiet.source == "curve"
    # reference: the value nearest a quarter of steps 1..9 (step 3: 5); last quarter (steps >= 7) max 80: growth 16
    growing = attention_logit_growth(_curve([2, 4, 5, 8, 12, 20, 40, 60, 80], [0] * 9))
    assert growing.criteria == ("growth",) and growing.growth == pytest.approx(16.0)
    big = attention_logit_growth(_curve([2, 3, 3, 2e4], [0] * 4))
    assert "threshold" in big.criteria and big.value == 2e4


def test_output_logit_detector_threshold_and_drift():
    assert not output_logit_divergence(_curve([1] * 8, [5, 3, 2, 1, 1, 0.5, 0.5, 0.5])).flagged
    # reference z at step 3 = 2; last-quarter min -9: drift 11 nats >= 10
    drift = output_logit_divergence(_curve([1] * 9, [5, 3, 2, 0, -2, -4, -6, -8, -9]))
    assert drift.criteria == ("growth",) and drift.growth == pytest.approx(11.0)
    assert output_logit_divergence(_curve([1] * 4, [5, 0, -10, -25])).criteria[0] == "threshold"


def test_detect_matches_curves_by_run_id_and_falls_back_to_summaries():
    runs = pd.DataFrame(
        {
            "run_id": ["a", "b", "c"],
            "lr": [1e-3, 1e-2, 1e-1],
            "loss": [3.0, 3.1, np.nan],
            "status": ["ok", "ok", "diverged"],
            "attn_logit_max": [np.nan, np.nan, 5e4],
        }
    )
    curves = _curve([2, 4, 5, 8, 12, 20, 40, 60, 80], [0] * 9).assign(run_id="b")
    flags = {f.run_id: f for f in detect(runs, curves)}
    assert flags["a"].attention.source == "missing" and not flags["a"].flagged
    assert flags["b"].attention.flagged and flags["b"].attention.source == "curve"
    assert flags["c"].attention.flagged and flags["c"].attention.source == "summary"


def test_missing_signals_are_reported_not_an_error():
    rep = analyse_stability(_ladder(), bootstrap=20)
    assert "curve:attn_logit_max" in rep.signals_missing and "run:spikes" in rep.signals_missing
    assert rep.signals_present == ()
    assert rep.l_ref == pytest.approx(pd.to_numeric(_ladder()["loss"]).max())


def test_cli_json_plot_and_bad_input(tmp_path, capsys):
    path = tmp_path / "sweep.csv"
    _ladder(qk_factor=4.0).to_csv(path, index=False)
    code = main(["stability", str(path), "--target", "N=1e8,D=2e9", "--json", "--bootstrap", "50", "--plot", str(tmp_path / "s.png")])
    out = capsys.readouterr()
    assert code == 0, out.err
    doc = json.loads(out.out)
    assert doc["interventions"] == ["qk_norm"] and len(doc["arms"]) == 2
    assert doc["arms"][0]["edge_trend"]["prediction"]["extrapolation"] == pytest.approx(1e8 / 1.6e7)
    assert "curve:z_mean" in doc["signals_missing"]
    assert (tmp_path / "s.png").stat().st_size > 10_000
    assert main(["stability", str(path), "--tolerance", "2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "tolerance" in err
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"lr": [1e-3], "N": [1e6]}).to_csv(bad, index=False)
    assert main(["stability", str(bad)]) == 2
    assert "loss" in capsys.readouterr().err
    assert math.isfinite(doc["l_ref"])


def test_edge_margin_flags_a_rate_within_a_factor_two_of_the_edge():
    from scaletune.results import Prediction
    from scaletune.stability import edge_margin

    edge = Prediction(0.01, 0.008, 0.012, extrapolation=4.0)
    assert edge_margin(0.006, edge)["within"] and edge_margin(0.006, edge)["ratio"] == pytest.approx(0.01 / 0.006)
    assert not edge_margin(0.004, edge)["within"]
    assert edge_margin(0.02, edge)["ratio"] < 1  # past the edge
    assert edge_margin(0.004, None) is None


def test_batch_size_slices_of_a_2d_sweep_are_analysed_separately():
    a, b = _ladder(seeds=1).assign(batch_size=1024), _ladder(seeds=1).assign(batch_size=4096)
    b["loss"] += 0.05
    rep = analyse_stability(pd.concat([a, b]), l_ref=4.0, bootstrap=20)
    assert "batch_size" in rep.scale_columns and len(rep.arms[0].scales) == 6


def test_sweep_plot_marks_flagged_runs(tmp_path):
    from scaletune.hparams.optimum import find_optima
    from scaletune.report.hparams_plots import plot_sweeps

    runs = _ladder(seeds=1)
    runs["attn_logit_max"] = np.where(runs["status"] == "ok", 20.0, 2e4)
    flags = detect(runs)
    assert sum(f.attention.flagged for f in flags) == int((runs["status"] != "ok").sum())
    path = plot_sweeps(runs, find_optima(runs, bootstrap=20), tmp_path / "sweeps.png", flags=flags)
    assert path.stat().st_size > 10_000
