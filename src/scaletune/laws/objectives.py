"""Fitting objectives: a loss rho(r) summed over residuals, with its derivative for analytic gradients.

Residuals are taken in log space (r = log(pred) - log(obs), natural log) except for `mse_linear`
(r = pred - obs). Objectives are summed, never averaged: an averaged Huber loss is so flat that L-BFGS
stops early (the failure found in refits of Chinchilla's Approach 3).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scaletune.errors import ScaletuneError


@dataclass(frozen=True)
class Objective:
    """rho summed over residuals; ``log_space`` says whether residuals are log(pred) - log(obs)."""

    name: str
    log_space: bool = True
    delta: float = 1e-3  # Huber threshold (in log units: 1e-3 is a 0.1% relative error)
    under_weight: float = 1.0  # weight of residuals r < 0 (prediction below the observation)

    def residual(self, pred: np.ndarray, obs: np.ndarray) -> np.ndarray:
        r: np.ndarray = np.log(pred) - np.log(obs) if self.log_space else pred - obs
        return r

    def rho(self, r: np.ndarray) -> tuple[float, np.ndarray]:
        """Return (sum of rho(r), d rho / d r) for residuals ``r``."""
        value, grad = self.elementwise(r)
        return float(value.sum()), grad

    def elementwise(self, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """rho(r) and d rho / d r element by element (any shape: the fitter scores a whole grid at once)."""
        if self.name in ("huber", "lower_envelope"):
            a = np.abs(r)
            quad = a <= self.delta
            value = np.where(quad, 0.5 * r * r, self.delta * (a - 0.5 * self.delta))
            grad = np.where(quad, r, self.delta * np.sign(r))
        else:
            value, grad = 0.5 * r * r, r
        if self.under_weight != 1.0:
            w = np.where(r < 0, self.under_weight, 1.0)
            value, grad = value * w, grad * w
        return value, grad

    def __call__(self, pred: np.ndarray, obs: np.ndarray) -> float:
        return self.rho(self.residual(pred, obs))[0]


OBJECTIVES = {
    # Huber (delta 1e-3) on natural-log residuals: Hoffmann et al. 2022, Besiroglu et al. 2024.
    "huber": Objective("huber"),
    "mse_log": Objective("mse_log"),
    "mse_linear": Objective("mse_linear", log_space=False),
    # For ladders whose runs are not all well tuned: a point above the curve (an under-tuned run, r < 0)
    # costs a tenth of a point below it, so the law follows the lower envelope of the observations.
    "lower_envelope": Objective("lower_envelope", under_weight=0.1),
}


def get_objective(name: str | Objective) -> Objective:
    """Look up an objective by name (huber, mse_log, mse_linear, lower_envelope)."""
    if isinstance(name, Objective):
        return name
    try:
        return OBJECTIVES[name]
    except KeyError:
        raise ScaletuneError(f"unknown objective {name!r} (known: {', '.join(OBJECTIVES)})") from None
