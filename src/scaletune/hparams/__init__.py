"""Hyperparameters at scale: the optimum per scale, learning-rate / batch-size laws, muP transfer checks,
recommendations at a target with intervals, and the scale-aware search used by studies.

    from scaletune.hparams import find_optima, fit_hparam_laws, recommend
    optima = find_optima(runs)                    # one Optimum per (N, D): vertex, band, bracketing, intervals
    laws = fit_hparam_laws(optima)                # lr*(N, D), B*(D), lr*(C), B*(C), the loss law, transfer
    rec = recommend(runs, {"N": 1e6, "D": 2e6})   # lr, batch, warm-up, schedule, loss: values, intervals, extrapolation

    # the same as stages: one analysis (optima, laws, joint landscape, candidates scored on held-out scales),
    # then small pure steps, each returning a Prediction whose ``method`` (an Enum) says which rule decided
    # (`describe(prediction)` says it in words)
    analysis = analyse_sweep(runs)
    batch = choose_batch_size(analysis, target)
    lr = choose_learning_rate(analysis, target, batch)
    loss, notes = predict_loss(analysis, target, batch, lr)

numpy/scipy/pandas only (no torch).
"""

from scaletune.hparams.landscape import JointLandscape, fit_landscape
from scaletune.hparams.describe import describe
from scaletune.hparams.laws import HparamLaw, HparamLaws, Method, TransferReport, fit_hparam_law, fit_hparam_laws
from scaletune.hparams.optimum import DEFAULT_BAND, Optimum, find_optima, find_optimum, optima_frame
from scaletune.hparams.recommend import (
    Recommendation,
    choose_batch_size,
    choose_learning_rate,
    predict_loss,
    published_at,
    recommend,
)
from scaletune.hparams.search import narrow_space
from scaletune.hparams.select import Candidate, SweepAnalysis, analyse_sweep
from scaletune.results import Prediction

__all__ = [
    "DEFAULT_BAND",
    "Candidate",
    "HparamLaw",
    "HparamLaws",
    "JointLandscape",
    "Method",
    "Optimum",
    "Prediction",
    "Recommendation",
    "SweepAnalysis",
    "TransferReport",
    "analyse_sweep",
    "choose_batch_size",
    "choose_learning_rate",
    "describe",
    "find_optima",
    "find_optimum",
    "fit_hparam_law",
    "fit_hparam_laws",
    "fit_landscape",
    "narrow_space",
    "optima_frame",
    "predict_loss",
    "published_at",
    "recommend",
]
