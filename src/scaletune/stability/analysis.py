"""A sweep's stability analysis: sensitivity and stable range per scale, trends in N, the prediction at the
target, intervention comparisons and the detectors' flags, as one structured report.

    from scaletune.stability import analyse_stability, stability_edge
    report = analyse_stability(runs, curves, target={"N": 1e9})   # runs: a run table (lr, loss, status, N, ...)
    report.arms[0].edge_trend.prediction                             # the stability edge at the target
    stability_edge(runs, {"N": 1e9})                                 # just that (for `recommend`)

Interventions: the columns qk_norm, z_loss, warmup, eps (Adam), weight_decay and param, where one takes
several values within a scale; each combination of their values is an *arm*, analysed on its own and
compared on the scales all arms share.
"""

from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from scaletune._json import fields_of
from scaletune.errors import ScaletuneError
from scaletune.results import LEVEL, Prediction, format_interval, percentile_interval
from scaletune.runtable import ok_runs, require_columns
from scaletune.stability.detectors import RunFlags, detect
from scaletune.stability.sensitivity import DEFAULT_TOLERANCE, ScaleSensitivity, Trend, fit_trend, scale_sensitivity

INTERVENTIONS = ("qk_norm", "z_loss", "warmup", "eps", "weight_decay", "param")
CURVE_SIGNALS = ("attn_logit_max", "out_logit_max", "out_logit_rms", "z_mean", "grad_norm", "update_ratio_*")
RUN_SIGNALS = ("spikes", "max_spike", "attn_logit_max", "out_logit_max")


@dataclass(frozen=True)
class Arm:
    """One intervention arm (``values`` of the varied columns; {} without interventions): its scales, the
    trends in N and their predictions at the target."""

    values: dict[str, Any]
    scales: tuple[ScaleSensitivity, ...]
    sensitivity_trend: Trend | None
    edge_trend: Trend | None
    mean_sensitivity: float  # over the scales every arm shares
    mean_sensitivity_interval: tuple[float, float]

    def to_dict(self) -> dict[str, Any]:
        return {
            "values": self.values,
            "scales": [s.to_dict() for s in self.scales],
            "sensitivity_trend": None if self.sensitivity_trend is None else self.sensitivity_trend.to_dict(),
            "edge_trend": None if self.edge_trend is None else self.edge_trend.to_dict(),
            "mean_sensitivity": self.mean_sensitivity,
            "mean_sensitivity_interval": list(self.mean_sensitivity_interval),
        }

    def __repr__(self) -> str:
        values = ", ".join(f"{k}={v}" for k, v in self.values.items()) or "no intervention"
        return f"<Arm {values}: {len(self.scales)} scales, mean sensitivity {self.mean_sensitivity:.4f}>"


@dataclass(frozen=True)
class StabilityReport:
    """Everything `scaletune stability` shows. ``l_ref`` caps losses (``l_ref_source`` says where it comes
    from); ``tolerance`` is the stable range's fraction of the best loss; ``interventions`` the varied
    columns; ``signals_present`` / ``signals_missing`` which stability signals the runs carry."""

    arms: tuple[Arm, ...]
    interventions: tuple[str, ...]
    scale_columns: tuple[str, ...]
    l_ref: float
    l_ref_source: str
    tolerance: float
    target: dict[str, float] | None
    flags: tuple[RunFlags, ...]
    signals_present: tuple[str, ...]
    signals_missing: tuple[str, ...]
    skipped: tuple[str, ...] = ()  # scales left out, with the reason
    level: float = LEVEL
    notes: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {
            **fields_of(self, "l_ref", "l_ref_source", "tolerance", "level", "target"),
            "interventions": list(self.interventions),
            "scale_columns": list(self.scale_columns),
            "arms": [a.to_dict() for a in self.arms],
            "flags": [f.to_dict() for f in self.flags],
            "n_flagged": sum(f.flagged for f in self.flags),
            "signals_present": list(self.signals_present),
            "signals_missing": list(self.signals_missing),
            "skipped": list(self.skipped),
            "notes": list(self.notes),
            "lr_units": "as in the run table (muP: base rate)",
            "loss_units": "nats/token",
        }

    def __repr__(self) -> str:
        scales = sum(len(a.scales) for a in self.arms)
        return (
            f"<StabilityReport: {len(self.arms)} arm(s), {scales} scale(s), "
            f"{sum(f.flagged for f in self.flags)}/{len(self.flags)} runs flagged, L_ref {self.l_ref:.4g}>"
        )

    def summary(self) -> str:
        """Per arm and scale: LR sensitivity and the stable range's upper edge with their intervals, then the
        trends' predictions at the target (a plain-text table, 80 columns)."""
        lines = [f"{'arm / scale':<26} {'sensitivity [95%]':<26} {'lr edge [95%]':<26}"]
        for arm in self.arms:
            name = ", ".join(f"{k}={v}" for k, v in arm.values.items())
            if name:
                lines.append(name)
            for s in arm.scales:
                label = ", ".join(f"{k}={v:.3g}" for k, v in s.scale.items() if k in ("N", "D", "batch_size"))
                edge = format_interval(s.edge, *s.edge_interval, digits=3) if s.edge_bracketed else f">={s.edge:.3g} (top)"
                lines.append(f"  {label:<24} {format_interval(s.sensitivity, *s.sensitivity_interval, digits=3):<26} {edge:<26}")
            for trend in (arm.sensitivity_trend, arm.edge_trend):
                if trend is not None and trend.prediction is not None:
                    p = trend.prediction
                    lines.append(
                        f"  {trend.quantity} at N={self.target['N'] if self.target else math.nan:.3g}: "
                        f"{format_interval(p.value, p.lo, p.hi, digits=3)}, x{p.extrapolation:.1f} beyond the scales"
                    )
        lines.append(
            textwrap.fill(
                f"L_ref {self.l_ref:.4g} nats ({self.l_ref_source}); tolerance {self.tolerance:.1%}; "
                f"{sum(f.flagged for f in self.flags)} of {len(self.flags)} runs flagged",
                80,
            )
        )
        return "\n".join(line.rstrip() for line in lines)


def _scale_columns(df: pd.DataFrame, by: Sequence[str] | None) -> list[str]:
    if by:
        require_columns(df, list(by))
        return list(by)
    if "rung" in df.columns:
        return ["rung"]
    cols = [c for c in ("N", "D") if c in df.columns]
    if not cols:
        require_columns(df, ["N"])
    return cols


def varied_interventions(runs: pd.DataFrame, scale_cols: Sequence[str]) -> list[str]:
    """The intervention columns that take several values within at least one scale."""
    out = []
    for col in INTERVENTIONS:
        if col in runs.columns and col not in scale_cols:
            if (runs.groupby(list(scale_cols))[col].nunique(dropna=False) > 1).any():
                out.append(col)
    return out


def signal_inventory(runs: pd.DataFrame, curves: pd.DataFrame | None) -> tuple[list[str], list[str]]:
    """(present, missing) stability signals: curve signals in ``curves``, run-summary fields in ``runs``."""

    def has(df: pd.DataFrame | None, name: str) -> bool:
        if df is None:
            return False
        cols = [c for c in df.columns if c.startswith(name[:-1])] if name.endswith("*") else [name] if name in df.columns else []
        return any(pd.to_numeric(df[c], errors="coerce").notna().any() for c in cols)

    present: list[str] = []
    missing: list[str] = []
    for name in CURVE_SIGNALS:
        (present if has(curves, name) else missing).append(f"curve:{name}")
    for name in RUN_SIGNALS:
        (present if has(runs, name) else missing).append(f"run:{name}")
    return present, missing


def reference_loss(runs: pd.DataFrame, curves: pd.DataFrame | None, l_ref: float | None) -> tuple[float, str]:
    """L_ref and where it comes from: given; else the median first-step training loss of the curves (the
    untrained model); else the largest finite loss of an ok run."""
    if l_ref is not None:
        return float(l_ref), "given"
    if curves is not None and {"run_id", "step", "train_loss"} <= set(curves.columns):
        first = curves.sort_values("step").groupby("run_id")["train_loss"].first()
        first = pd.to_numeric(first, errors="coerce").dropna()
        first = first[np.isfinite(first)]
        if len(first):
            return float(first.median()), "median first-step training loss of the curves (untrained model)"
    loss = pd.to_numeric(ok_runs(runs)["loss"], errors="coerce")
    if loss.empty:
        raise ScaletuneError(f"{runs.attrs.get('source', 'table')}: no run has a finite loss: nothing to analyse")
    return float(loss.max()), "largest finite loss in the sweep (no curves with a first-step loss; pass l_ref to set it)"


def _mean_over(scales: Sequence[ScaleSensitivity], keys: set) -> tuple[float, tuple[float, float], np.ndarray | None]:
    use = [s for s in scales if tuple(sorted(s.scale.items())) in keys]
    if not use:
        return math.nan, (math.nan, math.nan), None
    value = float(np.mean([s.sensitivity for s in use]))
    samples = [s.samples for s in use if s.samples is not None]
    if len(samples) < len(use):
        return value, (math.nan, math.nan), None
    K = min(len(a) for a in samples)
    draws = np.mean([a[:K, 0] for a in samples], axis=0)
    return value, percentile_interval(draws), draws


def analyse_stability(
    runs: pd.DataFrame,
    curves: pd.DataFrame | None = None,
    *,
    target: Mapping[str, float] | None = None,
    by: Sequence[str] | None = None,
    l_ref: float | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    bootstrap: int = 500,
    seed: int = 0,
    **thresholds: float,
) -> StabilityReport:
    """Analyse a sweep's stability (see the module doc); ``target`` needs N for the predictions."""
    require_columns(runs, ["lr", "loss"])
    scale_cols = _scale_columns(runs, by)
    if "batch_size" in runs.columns and "batch_size" not in scale_cols and (runs.groupby(scale_cols)["batch_size"].nunique() > 1).any():
        scale_cols.append("batch_size")  # a 2-D sweep: each batch size's lr slice is analysed on its own
    if target is not None and "N" not in target:
        raise ScaletuneError("target needs N (parameters, as the run table counts them)", hint="give the target as N=1e9,D=2e10")
    ref, ref_source = reference_loss(runs, curves, l_ref)
    interventions = varied_interventions(runs, scale_cols)
    arm_groups = (
        [({}, runs)]
        if not interventions
        else [
            (dict(zip(interventions, key if isinstance(key, tuple) else (key,))), g)
            for key, g in runs.groupby(interventions, sort=True, dropna=False)
        ]
    )

    per_arm: list[tuple[dict, list[ScaleSensitivity]]] = []
    skipped = []
    for a, (values, group) in enumerate(arm_groups):
        results = []
        for i, (key, g) in enumerate(group.groupby(scale_cols, sort=True)):
            key = key if isinstance(key, tuple) else (key,)
            scale = {c: float(v) for c, v in zip(scale_cols, key)}
            for c in ("N", "D"):
                if c not in scale and c in g.columns:
                    v = pd.to_numeric(g[c], errors="coerce")
                    if v.notna().any():
                        scale[c] = float(v.median())
            label = ", ".join(f"{k}={v:.3g}" for k, v in {**values, **scale}.items())
            if pd.to_numeric(g["lr"], errors="coerce").nunique() < 3:
                skipped.append(f"{label}: fewer than 3 tested learning rates")
                continue
            g.attrs.update(runs.attrs)
            results.append(
                scale_sensitivity(g, l_ref=ref, tolerance=tolerance, bootstrap=bootstrap, seed=seed + 1000 * a + i, scale=scale, arm=values)
            )
        per_arm.append((values, results))
    if not any(r for _, r in per_arm):
        raise ScaletuneError(f"{runs.attrs.get('source', 'table')}: no scale has 3 or more tested learning rates")

    shared = set.intersection(*[{tuple(sorted(s.scale.items())) for s in r} for _, r in per_arm if r])
    target_N = None if target is None else float(target["N"])
    arms = []
    for a, (values, results) in enumerate(per_arm):
        mean, iv, _ = _mean_over(results, shared)
        arms.append(
            Arm(
                values,
                tuple(results),
                fit_trend(results, "sensitivity", target_N, seed=seed + a),
                fit_trend(results, "edge", target_N, seed=seed + a),
                mean,
                iv,
            )
        )
    notes = []
    for arm in arms:
        ranges = {(min(s.lrs), max(s.lrs)) for s in arm.scales}
        if len(ranges) > 1:
            notes.append(
                "tested learning-rate ranges differ between scales"
                + (f" ({arm.values})" if arm.values else "")
                + ": sensitivities average over different ranges"
            )
    present, missing = signal_inventory(runs, curves)
    return StabilityReport(
        arms=tuple(arms),
        interventions=tuple(interventions),
        scale_columns=tuple(scale_cols),
        l_ref=ref,
        l_ref_source=ref_source,
        tolerance=tolerance,
        target=None if target is None else {k: float(v) for k, v in target.items()},
        flags=tuple(detect(runs, curves, **thresholds)),
        signals_present=tuple(present),
        signals_missing=tuple(missing),
        skipped=tuple(skipped),
        notes=tuple(notes),
    )


def stability_edge(
    runs: pd.DataFrame, target: Mapping[str, float], *, tolerance: float = DEFAULT_TOLERANCE, bootstrap: int = 300, seed: int = 0
) -> Prediction | None:
    """The predicted upper edge of the stable learning-rate range at ``target`` (needs N): the power law
    lr_edge = e^a N^b fitted on the scales whose edge the sweep brackets. None when fewer than two scales
    bracket it. With several intervention arms, the lowest (most cautious) arm's edge."""
    report = analyse_stability(runs, None, target=target, tolerance=tolerance, bootstrap=bootstrap, seed=seed)
    preds = [a.edge_trend.prediction for a in report.arms if a.edge_trend is not None and a.edge_trend.prediction is not None]
    return min(preds, key=lambda p: p.value) if preds else None


def edge_margin(lr: float, edge: Prediction | None, factor: float = 2.0) -> dict[str, Any] | None:
    """How close a learning rate lies to a predicted stability edge: ``ratio`` = edge / lr (below 1: past the
    edge), ``within`` = ratio < ``factor`` (the rate is within that factor of the edge, or beyond it), with
    the edge's prediction. None when there is no edge prediction."""
    if edge is None or not (lr > 0):
        return None
    ratio = edge.value / lr
    return {
        "lr": float(lr),
        "edge": edge.to_dict(),
        "ratio": float(ratio),
        "factor": factor,
        "within": bool(ratio < factor),
        "ratio_interval": [edge.interval[0] / lr, edge.interval[1] / lr],
    }
