"""Loss curves under learning-rate schedules: fit a law on a few curves, predict any schedule, choose one.

    >>> from scaletune.curves import read_curves, fit_curves
    >>> curves = read_curves("cosine.csv", "cosine:steps=24000,lr=3e-4,warmup=2160,final=0.1")   # doctest: +SKIP
    >>> fit = fit_curves(curves, law="multipower")                                              # doctest: +SKIP
    >>> fit.predict_interval("wsd:steps=24000,lr=3e-4,warmup=2160,cooldown=0.2").final_loss     # doctest: +SKIP

Laws: ``multipower`` (Luo et al. 2025), ``annealing`` (Tissue et al. 2024), ``power`` (constant rate), and
any law added with `register_curve_law`. Losses in nats; steps are optimizer updates; learning-rate areas
are sums of per-step rates.
"""

from scaletune.curves.data import Curve, curve_from_arrays, curves_from_study, read_curves
from scaletune.curves.fit import CurveFit, CurvePrediction, curve_metrics, evaluate_fit, fit_curves
from scaletune.curves.laws import CurveLaw, Prepared, curve_laws, get_curve_law, register_curve_law
from scaletune.curves.search import Candidate, compare_schedules, optimise_schedule

__all__ = [
    "Candidate",
    "Curve",
    "CurveFit",
    "CurveLaw",
    "CurvePrediction",
    "Prepared",
    "compare_schedules",
    "curve_from_arrays",
    "curve_laws",
    "curve_metrics",
    "curves_from_study",
    "evaluate_fit",
    "fit_curves",
    "get_curve_law",
    "optimise_schedule",
    "read_curves",
    "register_curve_law",
]
