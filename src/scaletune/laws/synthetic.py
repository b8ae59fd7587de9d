"""Synthetic scaling ladders with known truth, for testing fits, backtests and interval coverage.

`isoflop_ladder` draws an isoFLOP design (budgets C = 6ND, several model sizes per budget around the
compute-optimal one) from Hoffmann et al.'s law, with the two things that break a row bootstrap on real
data: errors shared by every run of a budget (``budget_noise``) and a mild curvature the Chinchilla form
lacks (``curvature``: ln L gains curvature * (ln N - ln 1e8)^2).

    from scaletune.laws.synthetic import isoflop_ladder
    table = isoflop_ladder(seed=0)                       # columns C, N, D, loss, budget
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from scaletune.laws.catalogue import get_law
from scaletune.runtable import FLOPS_PER_PARAM_TOKEN, training_flops

HOFFMANN = {"a": float(np.log(406.4)), "b": float(np.log(410.7)), "e": float(np.log(1.69)), "alpha": 0.3392, "beta": 0.2849}


def isoflop_ladder(
    seed: int = 0,
    *,
    budgets: int = 8,
    sizes: int = 7,
    c_min: float = 1e17,
    step: float = 4.0,
    spread: float = 1.5,
    noise: float = 0.005,
    budget_noise: float = 0.01,
    curvature: float = 5e-4,
) -> pd.DataFrame:
    """A ladder of ``budgets`` FLOP budgets (c_min * step^k) with ``sizes`` model sizes each, log-spaced over
    +-``spread`` nats around the compute-optimal N; loss = truth * exp(budget error + run error), with std
    ``budget_noise`` shared within a budget and ``noise`` per run (natural-log units)."""
    rng = np.random.default_rng(seed)
    law = get_law("chinchilla")
    assert law.chinchilla_form is not None
    E, A, alpha, B, beta = law.chinchilla_form(HOFFMANN)
    G = (alpha * A / (beta * B)) ** (1 / (alpha + beta))
    rows = []
    for k in range(budgets):
        C = c_min * step**k
        n_opt = G * (C / FLOPS_PER_PARAM_TOKEN) ** (beta / (alpha + beta))
        N = n_opt * np.exp(np.linspace(-spread, spread, sizes))
        D = C / training_flops(N, 1.0)  # tokens at compute C (C = 6ND)
        truth = law.predict(HOFFMANN, {"N": N, "D": D}) * np.exp(curvature * np.log(N / 1e8) ** 2)
        shared = rng.normal(0, budget_noise)
        loss = truth * np.exp(shared + rng.normal(0, noise, sizes))
        rows.append(pd.DataFrame({"C": C, "N": N, "D": D, "loss": loss, "truth": truth, "budget": k}))
    return pd.concat(rows, ignore_index=True)
