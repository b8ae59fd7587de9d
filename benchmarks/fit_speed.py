"""Speed of scaletune's chinchilla fit against the usual multi-start fit, side by side in one run.

scaletune: variable projection over a 25 x 25 exponent grid (NNLS per point) + L-BFGS-B polish of the best
starts, then a 1,000-sample bootstrap (each refit: grid + polish of its best start and of the full-data
optimum) on all cores.
Reference ("the usual way", Hoffmann et al. 2022 / Besiroglu et al. 2024): L-BFGS-B from every point of the
4,500-start grid a, b in {0, 5, ..., 25}, e in {-1, -0.5, ..., 1}, alpha, beta in {0, 0.5, ..., 2}, keeping
the best. Same objective (Huber, delta 1e-3, on natural-log residuals, summed), same analytic gradient and
single-threaded BLAS for both, so the ratio measures the method, not the plumbing.

Data: 240 synthetic runs (12 model sizes 1e7..1e10 x 20 token counts 1e9..1e12) from Hoffmann et al.'s
unrounded law with 2% log-normal noise, seed 0 (or --data CSV with N, D, loss columns).

    nice -n 10 .venv/bin/python benchmarks/fit_speed.py [--bootstrap 1000] [--data runs.csv]
"""

from __future__ import annotations

import argparse
import itertools
import os
import time

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from threadpoolctl import threadpool_limits

from scaletune.laws import fit, get_law
from scaletune.laws.fitting import _Problem
from scaletune.laws.objectives import get_objective

TRUE = {"a": np.log(406.4), "b": np.log(410.7), "e": np.log(1.69), "alpha": 0.3392, "beta": 0.2849}


def synthetic(seed: int = 0, noise: float = 0.02) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    N, D = np.meshgrid(np.logspace(7, 10, 12), np.logspace(9, 12, 20), indexing="ij")
    N, D = N.ravel(), D.ravel()
    loss = get_law("chinchilla").predict(TRUE, {"N": N, "D": D}) * np.exp(rng.normal(0, noise, N.size))
    return pd.DataFrame({"N": N, "D": D, "loss": loss})


def reference_fit(df: pd.DataFrame) -> tuple[float, np.ndarray]:
    law = get_law("chinchilla")
    prob = _Problem(law, {"N": df.N.to_numpy(float), "D": df.D.to_numpy(float)}, df.loss.to_numpy(float), get_objective("huber"), {})
    grid = itertools.product(
        np.arange(0, 30, 5), np.arange(0, 30, 5), np.arange(-1, 1.5, 0.5), np.arange(0, 2.5, 0.5), np.arange(0, 2.5, 0.5)
    )
    best = None
    with threadpool_limits(1, user_api="blas"):
        for start in grid:
            res = minimize(prob.value_and_grad, np.array(start, float), jac=True, method="L-BFGS-B")
            if best is None or res.fun < best.fun:
                best = res
    return float(best.fun), best.x


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--data", help="CSV with N, D, loss (default: 240 synthetic runs)")
    args = parser.parse_args()
    df = pd.read_csv(args.data) if args.data else synthetic()
    print(f"data: {len(df)} runs; cores: {os.cpu_count()}; bootstrap: {args.bootstrap}")

    t0 = time.perf_counter()
    main_fit = fit("chinchilla", df, bootstrap=0)  # the point fit alone
    t_main = time.perf_counter() - t0
    t0 = time.perf_counter()
    boot_fit = fit("chinchilla", df, bootstrap=args.bootstrap, seed=0)
    t_boot = time.perf_counter() - t0
    t0 = time.perf_counter()
    ref_value, ref_x = reference_fit(df)
    t_ref = time.perf_counter() - t0

    ours = main_fit.diagnostics["objective_value"]
    rel = (ours - ref_value) / ref_value
    rows = [
        ("scaletune main fit (projection + polish)", t_main, ours),
        (f"scaletune fit + {args.bootstrap} bootstrap refits", t_boot, boot_fit.diagnostics["objective_value"]),
        ("reference: L-BFGS-B from 4,500 starts", t_ref, ref_value),
    ]
    print(f"{'what':48s} {'seconds':>9s} {'objective':>14s}")
    for name, t, v in rows:
        print(f"{name:48s} {t:9.2f} {v:14.10f}")
    print(f"reference time / scaletune main fit time:            {t_ref / t_main:8.1f}x")
    print(f"reference time / scaletune fit + bootstrap time:     {t_ref / t_boot:8.2f}x")
    print(f"objective: scaletune - reference, relative:          {rel:+.2e}")
    print("parameters (scaletune | reference):")
    for i, p in enumerate(get_law("chinchilla").params):
        print(f"  {p:6s} {main_fit.params_[p]:12.6f} | {ref_x[i]:12.6f}")
    failed = boot_fit.diagnostics["bootstrap"]["failed"]
    print(f"bootstrap: {failed} failed refits; 95% interval of alpha {boot_fit.intervals['alpha']}, beta {boot_fit.intervals['beta']}")


if __name__ == "__main__":
    main()
