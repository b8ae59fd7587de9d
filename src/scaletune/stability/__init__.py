"""Training stability across scales: LR sensitivity, the stable learning-rate range and its trend in N,
detectors of attention-logit growth and output-logit divergence (Wortsman et al. 2023).
numpy/scipy/pandas only (no torch): the signals come from the run table and its curves.

    from scaletune.stability import analyse_stability
    report = analyse_stability(runs, curves, target={"N": 1e9})
"""

from scaletune.stability.analysis import (
    INTERVENTIONS,
    Arm,
    StabilityReport,
    analyse_stability,
    edge_margin,
    signal_inventory,
    stability_edge,
    varied_interventions,
)
from scaletune.stability.detectors import Flag, RunFlags, attention_logit_growth, detect, output_logit_divergence
from scaletune.stability.sensitivity import ScaleSensitivity, Trend, TrendMethod, fit_trend, scale_sensitivity

__all__ = [
    "analyse_stability",
    "stability_edge",
    "edge_margin",
    "StabilityReport",
    "Arm",
    "INTERVENTIONS",
    "signal_inventory",
    "varied_interventions",
    "scale_sensitivity",
    "ScaleSensitivity",
    "Trend",
    "TrendMethod",
    "fit_trend",
    "detect",
    "attention_logit_growth",
    "output_logit_divergence",
    "Flag",
    "RunFlags",
]
