"""Synthetic sweeps with a known optimum: for tests, documentation examples and the search-saving measurement.

The landscape is the shape measured in LR/batch sweeps of language models (StepLaw 2025, DeepSeek LLM 2024):
the final loss is convex in ln(lr) and ln(batch size) around an optimum that follows power laws,

    loss = E + A / N^alpha + B / D^beta + c_lr * (ln lr - ln lr*)^2 + c_b * (ln bs - ln bs*)^2
    (c_lr times ``asym`` above the optimal rate)
    lr*(N, D) = k_lr N^a D^b,    bs*(N, D) = k_b N^d D^c  (tokens; d = 0 as in StepLaw)

plus Gaussian noise with a relative standard deviation ``noise``; rates above ``diverge`` x lr* diverge.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np
import numpy.typing as npt
import pandas as pd
from numpy.typing import ArrayLike

from scaletune.runtable import training_flops

Array = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Landscape:
    """A known loss landscape over (N, D, lr, batch_size); defaults are StepLaw's published exponents."""

    # loss at the optimum: E + A / N^alpha + B / D^beta
    E: float = 1.8
    A: float = 400.0
    alpha: float = 0.34
    B: float = 400.0
    beta: float = 0.28
    # optimal learning rate: lr* = k_lr N^a D^b
    k_lr: float = 1.79
    a: float = -0.713
    b: float = 0.307
    # optimal batch size: bs* = k_b N^d D^c tokens, and how lr* moves off it (g)
    k_b: float = 0.58
    c: float = 0.571
    d: float = 0.0  # bs* ~ N^d: StepLaw finds none; small models (the built-in LM) show some
    g: float = 0.0  # lr* ~ (batch / B*(N, D))^g off the optimal batch size (0.5: square-root scaling)
    # the bowl around the optimum
    c_lr: float = 0.02  # curvature in ln(lr), nats per (ln unit)^2
    asym: float = 1.0  # curvature above the optimal rate = asym * c_lr (real LR curves: steeper above, asym > 1)
    c_b: float = 0.01  # curvature in ln(batch size)
    # what a real sweep adds: seed noise and divergence
    noise: float = 0.001  # relative std of the final loss (seed-to-seed)
    diverge: float = 8.0  # rates above diverge * lr* diverge

    def lr_opt(self, N: ArrayLike, D: ArrayLike, batch_size: ArrayLike | None = None) -> Array:
        """lr* at (N, D), at the optimal batch size B*(N, D) unless ``batch_size`` (tokens) is given."""
        lr = self.k_lr * np.asarray(N, float) ** self.a * np.asarray(D, float) ** self.b
        if batch_size is None or self.g == 0:
            return lr
        return lr * (np.asarray(batch_size, float) / self.batch_opt(D, N)) ** self.g

    def batch_opt(self, D: ArrayLike, N: ArrayLike = 1.0) -> Array:
        return self.k_b * np.asarray(N, float) ** self.d * np.asarray(D, float) ** self.c

    def loss_opt(self, N: ArrayLike, D: ArrayLike) -> Array:
        return self.E + self.A / np.asarray(N, float) ** self.alpha + self.B / np.asarray(D, float) ** self.beta

    def loss(self, N: ArrayLike, D: ArrayLike, lr: ArrayLike, batch_size: ArrayLike, rng: np.random.Generator | None = None) -> Array:
        dl = np.log(lr) - np.log(self.lr_opt(N, D, batch_size))
        db = np.log(batch_size) - np.log(self.batch_opt(D, N))
        clean: Array = self.loss_opt(N, D) + self.c_lr * np.where(dl > 0, self.asym, 1.0) * dl**2 + self.c_b * db**2
        if rng is None or self.noise == 0:
            return clean
        return clean * (1 + self.noise * rng.standard_normal(np.shape(clean)))

    def sweep(
        self,
        scales: Iterable[tuple[float, float]],
        lr_factors: Iterable[float] = (1 / 8, 1 / 4, 1 / 2, 1, 2, 4, 8),
        batch_factors: Iterable[float] = (1,),
        seeds: int = 1,
        seed: int = 0,
        shift: float = 1.0,
    ) -> pd.DataFrame:
        """A run table of a grid around the true optimum (``shift`` moves the grid centre by that factor)."""
        rng = np.random.default_rng(seed)
        rows = []
        for N, D in scales:
            lr0, b0 = float(self.lr_opt(N, D)) * shift, float(self.batch_opt(D, N))
            for fb in batch_factors:
                for fl in lr_factors:
                    for s in range(seeds):
                        lr, bs = lr0 * fl, b0 * fb
                        diverged = lr > self.diverge * float(self.lr_opt(N, D, bs))
                        loss = float("nan") if diverged else float(self.loss(N, D, lr, bs, rng))
                        rows.append(
                            dict(
                                N=N,
                                D=D,
                                C=training_flops(N, D),
                                lr=lr,
                                batch_size=bs,
                                seed=s,
                                loss=loss,
                                status="diverged" if diverged else "ok",
                            )
                        )
        return pd.DataFrame(rows)
