"""Held-out coverage of 95% observation intervals at the largest scales: row bootstrap (before) vs calibrated (after).

Each data set is fitted on its smaller scales and the largest are held out; the protocols were fixed before
any result was seen, and the calibration uses only the fitted portion (its own rolling-origin backtest):
- porian-isoflop (Porian et al. 2024), each of the 15 configurations: Chinchilla law on (N, D, loss), every
  run of the top decade of compute held out (C >= C_max / 10: the 4 largest budgets);
- datablations (Muennighoff et al. 2023), the 182 runs of their fit: data-constrained law, C = 6ND >= C_max / 10;
- overtraining-c4 (Gadre et al. 2024), 34 models: over-trained law L(N, M) on loss_c4_val, the two largest N
  (1.4B at M = 20, 80 and 6.9B at M = 20) held out (the paper's protocol);
- synthetic isoFLOP ladders (`scaletune.laws.synthetic.isoflop_ladder`, seeds 100-119): 1% log error shared by
  every run of a budget, 0.5% per run, a curvature the Chinchilla form lacks; the largest budget held out.
"before" = `fit(..., intervals="bootstrap")` (rows resampled, percentile intervals: the old default);
"after" = `fit(...)` (budgets resampled, backtest error model). Reported: coverage of the held-out points,
median |relative error| of the law, median width ln(hi / lo) of the intervals.

    nice -n 10 .venv/bin/python benchmarks/backtest.py [--bootstrap 50] [--only porian,datablations,c4,synthetic]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

from scaletune.laws import fit
from scaletune.laws.synthetic import isoflop_ladder

DATA = Path("/work/shared/data")
CONFIG = ["source_file", "dataset", "hparams", "warmup", "decay", "param_count", "val"]


def porian() -> list[tuple[str, str, pd.DataFrame, str]]:
    points = pd.read_csv(DATA / "porian-isoflop" / "DERIVED_isoflop_points.csv")
    out = []
    for key, g in points.groupby(CONFIG):
        df = pd.DataFrame(
            {"N": g.n.to_numpy(float), "D": g.t_tokens.to_numpy(float), "C": g.flops.to_numpy(float), "loss": g.loss.to_numpy(float)}
        )
        out.append(("porian " + "/".join(map(str, key[1:])), "chinchilla", df, f"C>={df.C.max() / 10:.6g}"))
    return out


def datablations() -> list[tuple[str, str, pd.DataFrame, str]]:
    d = pd.read_csv(DATA / "datablations" / "DERIVED_parametric_fit_182_samples.csv")
    df = pd.DataFrame(
        {"N": d.N_params_billion * 1e9, "D": d.D_tokens_billion * 1e9, "U": d.U_unique_tokens_billion * 1e9, "loss": d.val_loss}
    )
    df["C"] = 6 * df.N * df.D
    return [("datablations", "data_constrained", df, f"C>={df.C.max() / 10:.6g}")]


def c4() -> list[tuple[str, str, pd.DataFrame, str]]:
    o = pd.read_csv(DATA / "overtraining-c4" / "DERIVED_c4_models.csv")
    df = pd.DataFrame({"N": o.N.to_numpy(float), "M": o.M.to_numpy(float), "loss": o.loss_c4_val.to_numpy(float)})
    return [("overtraining-c4", "overtrained", df, "largest(N,2)")]


def synthetic() -> list[tuple[str, str, pd.DataFrame, str]]:
    return [(f"synthetic seed {s}", "chinchilla", isoflop_ladder(seed=s), "largest(C,1)") for s in range(100, 120)]


def run(name: str, law: str, df: pd.DataFrame, holdout: str, bootstrap: int) -> dict:
    row = {"set": name, "law": law, "holdout": holdout}
    for label, method in (("before", "bootstrap"), ("after", "calibrated")):
        r = fit(law, df, bootstrap=bootstrap, seed=0, holdout=holdout, intervals=method)
        pts = r.holdout["points"]
        row[f"{label}_covered"] = int(sum(p["covered"] for p in pts))
        row[f"{label}_width"] = float(np.median([np.log(p["hi"] / p["lo"]) for p in pts]))
        row["n"] = len(pts)
        row["median_abs_err"] = float(np.median([abs(p["relative_error"]) for p in pts]))
        row["max_distance"] = float(max(p["distance"] for p in pts))
        if method == "calibrated":
            c = r.calibration
            row.update(method=c.method, kappa=c.kappa, bias=c.bias, extra_noise=c.extra_noise, q=c.quantile(0.95))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bootstrap", type=int, default=50)
    parser.add_argument("--only", default="porian,datablations,c4,synthetic")
    args = parser.parse_args()
    sets = {"porian": porian, "datablations": datablations, "c4": c4, "synthetic": synthetic}
    rows = []
    for key in args.only.split(","):
        for name, law, df, holdout in sets[key]():
            t = time.time()
            row = run(name, law, df, holdout, args.bootstrap)
            row["group"] = key
            rows.append(row)
            print(
                f"{name:45s} n={row['n']:3d} before {row['before_covered']:3d} after {row['after_covered']:3d} "
                f"|err| {row['median_abs_err']:.4f} width {row['before_width']:.4f} -> {row['after_width']:.4f} "
                f"d {row['max_distance']:.2f} [{row['method']}, kappa {row['kappa']:.3g}, tau {row['extra_noise']:.3g}, "
                f"bias {row['bias']:+.3g}, q {row['q']:.2f}] {time.time() - t:.0f}s",
                flush=True,
            )
    table = pd.DataFrame(rows)
    print("\nper data set (coverage of 95% observation intervals for held-out points at the largest scales)")
    print(f"{'set':16s} {'points':>6s} {'before':>7s} {'after':>7s} {'median |err|':>13s} {'width before':>13s} {'width after':>12s}")
    for key, g in table.groupby("group", sort=False):
        n = g.n.sum()
        print(
            f"{key:16s} {n:6d} {g.before_covered.sum() / n:7.1%} {g.after_covered.sum() / n:7.1%} "
            f"{np.median(g.median_abs_err):13.4f} {np.median(g.before_width):13.4f} {np.median(g.after_width):12.4f}"
        )


if __name__ == "__main__":
    main()
