"""The loss interval of `recommend` far beyond the ladder: coverage of the true loss, and width.

Synthetic ladders (`scaletune.hparams.synthetic.Landscape`, StepLaw's optima): 3 N x 3 D scales
(N 1e7..1e8, D 1e9..1.6e10), one batch size, the rate swept 2x apart (7 rates), one seed per run. Variants:

  right    the loss law is the truth, 0.3% seed-to-seed noise
  shared   plus a 1% error shared by all runs of a scale (a budget's data order, an eval quirk)
  curved   plus a curvature the Chinchilla form lacks: the loss x (1 + 0.001 (ln C - ln C_0)^2), C_0 the
           ladder's centre: 0.1-0.7% inside the ladder, 5% at the target

Target N = 1e9, D = 1.6e11 (10x beyond the ladder in N and D: joint distance 3.26 ln-units). The truth is the
noise-free loss at the recommended (lr, batch size). Printed per variant: coverage of the 95% interval,
median width ln(hi / lo), median |error| of the point prediction. Then the bundled demo sweep
(tests/data/hparams-demo) at its target, whose runs were measured (tests/data/hparams-demo/target_runs.csv).

    nice -n 10 .venv/bin/python benchmarks/loss_interval.py [--seeds 10]
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
LADDER = [(n, d) for n in (1e7, 3e7, 1e8) for d in (1e9, 4e9, 1.6e10)]
TARGET = {"N": 1e9, "D": 1.6e11}
C0 = 6 * 3e7 * 4e9  # the ladder's centre


@dataclass(frozen=True)
class Variant:
    shared: float = 0.0  # relative error shared by the runs of one scale
    curve: float = 0.0  # relative curvature in ln C the loss law lacks


VARIANTS = {"right": Variant(), "shared": Variant(shared=0.01), "curved": Variant(curve=0.001)}


def true_loss(land, v: Variant, N, D, lr, batch):
    return land.loss(N, D, lr, batch) * (1 + v.curve * (math.log(6 * N * D) - math.log(C0)) ** 2)


def ladder_runs(land, v: Variant, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    runs = land.sweep(LADDER, lr_factors=2.0 ** np.arange(-3, 4), seed=seed)
    runs["batch_size"] = float(land.batch_opt(4e9))
    shared = {s: 1 + v.shared * rng.standard_normal() for s in LADDER}
    clean = np.array([true_loss(land, v, n, d, lr, b) for n, d, lr, b in zip(runs.N, runs.D, runs.lr, runs.batch_size)])
    noise = 1 + land.noise * rng.standard_normal(len(runs))
    runs["loss"] = clean * noise * np.array([shared[(n, d)] for n, d in zip(runs.N, runs.D)])
    return runs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    args = ap.parse_args()

    from scaletune.hparams import recommend
    from scaletune.hparams.synthetic import Landscape

    t0 = time.time()
    land = Landscape(noise=0.003)
    print("| variant | seeds | coverage | median width ln(hi/lo) | median abs. error | median kappa |")
    print("|---|---|---|---|---|---|")
    for name in args.variants.split(","):
        v = VARIANTS[name]
        hits, widths, errors, kappas = [], [], [], []
        for seed in range(args.seeds):
            rec = recommend(ladder_runs(land, v, 100 + seed), TARGET, bootstrap=100, loss_bootstrap=100, seed=seed)
            p, (lo, hi) = rec.loss, rec.loss.interval
            truth = true_loss(land, v, TARGET["N"], TARGET["D"], rec.lr.value, rec.batch_size.value)
            hits.append(lo <= truth <= hi)
            widths.append(math.log(hi / lo) if lo > 0 else math.inf)
            errors.append(abs(p.value / truth - 1))
            kappas.append(p.details.get("kappa_per_unit") or 0.0)
        print(
            f"| {name} | {args.seeds} | {np.mean(hits):.0%} | {np.median(widths):.3f} | {np.median(errors):.2%} | "
            f"{np.median(kappas):.3f} |",
            flush=True,
        )

    runs = pd.read_csv(ROOT / "tests/data/hparams-demo/runs.csv")
    target_runs = pd.read_csv(ROOT / "tests/data/hparams-demo/target_runs.csv")
    target = {"N": 707360.0, "N_nonembed": 615200.0, "D": 524288.0, "width": 160.0, "depth": 2.0, "seq_len": 64.0}
    rec = recommend(runs, target)
    p, (lo, hi) = rec.loss, rec.loss.interval
    measured = float(target_runs["loss"].min())
    print(
        f"\ndemo (tests/data/hparams-demo, target N=707360, D=524288, x{p.extrapolation:.1f}): loss {p.value:.4f} "
        f"[{lo:.4f}, {hi:.4f}] (ln(hi/lo) {math.log(hi / lo) if lo > 0 else math.inf:.3f}), measured best of "
        f"the target's rates {measured:.4f}: {'inside' if lo <= measured <= hi else 'OUTSIDE'}; "
        f"details {{{', '.join(f'{k}: {v:.4g}' for k, v in p.details.items() if isinstance(v, float))}}}"
    )
    print(f"wall time: {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
