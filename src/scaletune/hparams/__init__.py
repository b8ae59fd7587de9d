"""Hyperparameters at scale: the optimum per scale, learning-rate / batch-size laws, muP transfer checks,
recommendations at a target with intervals, and the scale-aware search used by studies.

    from scaletune.hparams import find_optima, fit_hparam_laws, recommend
    optima = find_optima(runs)                    # one Optimum per (N, D): vertex, band, bracketing, intervals
    laws = fit_hparam_laws(optima)                # lr*(N, D), B*(D), lr*(C), B*(C), the loss law, transfer
    rec = recommend(runs, {"N": 1e6, "D": 2e6})   # lr, batch, warm-up, schedule, loss: values, intervals, extrapolation

numpy/scipy/pandas only (no torch).
"""

from scaletune.hparams.laws import HparamLaw, HparamLaws, Prediction, TransferReport, fit_hparam_law, fit_hparam_laws
from scaletune.hparams.optimum import DEFAULT_BAND, Optimum, find_optima, find_optimum, optima_frame
from scaletune.hparams.recommend import Recommendation, published_at, recommend
from scaletune.hparams.search import narrow_space

__all__ = [
    "DEFAULT_BAND", "HparamLaw", "HparamLaws", "Optimum", "Prediction", "Recommendation", "TransferReport",
    "find_optima", "find_optimum", "fit_hparam_law", "fit_hparam_laws", "narrow_space", "optima_frame",
    "published_at", "recommend",
]
