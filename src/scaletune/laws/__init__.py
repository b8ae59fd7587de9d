"""Scaling laws: a catalogue declared as data, robust fits with bootstrap intervals, isoFLOP analysis,
compute-optimal allocation and published laws. numpy/scipy/pandas only (no torch).

    from scaletune.laws import fit
    result = fit("chinchilla", table, seed=0)   # table has N, D, loss; 200 bootstrap resamples by default
    result                           # one line; print(result.summary()) for the table
    result.params_, result.intervals, result.diagnostics
    result.predict({"N": 7e10, "D": 1.4e12})            # the law's values
    result.predict_interval({"N": 7e10, "D": 1.4e12})   # a Prediction: value, lo, hi, level, extrapolation, method
    backtest("chinchilla", table)    # rolling origin along C: errors against the extrapolation distance
    chain_predict(loss_fit, fit_downstream(runs, chance=0.75), {"N": 7e9, "M": 20})   # loss -> task error
"""

from scaletune.laws.allocation import Allocation, allocate, compute_for_loss
from scaletune.laws.backtest import BacktestResult, backtest
from scaletune.laws.catalogue import Law, Projection, get_law, law_names, register_law
from scaletune.laws.downstream import ChainedPrediction, chain_predict, fit_downstream
from scaletune.laws.fitting import FitResult, fit, holdout_mask, row_mask
from scaletune.laws.isoflop import IsoflopResult, isoflop
from scaletune.laws.published import load_fit, published

__all__ = [
    "Law",
    "Projection",
    "FitResult",
    "fit",
    "get_law",
    "law_names",
    "register_law",
    "holdout_mask",
    "row_mask",
    "backtest",
    "BacktestResult",
    "isoflop",
    "IsoflopResult",
    "allocate",
    "compute_for_loss",
    "Allocation",
    "published",
    "load_fit",
    "fit_downstream",
    "chain_predict",
    "ChainedPrediction",
]
