"""Detectors of the two instabilities Wortsman et al. 2023 reproduce in small Transformers.

Attention-logit growth (Dehghani et al. 2023): without qk-layernorm, pre-softmax attention logits grow
until attention is one-hot (near-zero entropy) and the loss diverges; ViT-22B's logits exceeded ~1e4.
Output-logit divergence (Chowdhery et al. 2022): the log-partition z = log sum exp(output logits) drifts far
below 0 late in training (z-loss keeps it near 0), and the loss diverges when logits lose precision.

A run is flagged on either of two criteria, both stated and configurable:

- threshold: the signal reaches an absolute level: max attention logit >= ``attn_threshold`` (default
  1e4, the magnitude reported at divergence in large models); mean log-partition z <= ``z_threshold``
  (default -20 nats: far below the 0 that z-loss holds; bf16 resolves numbers of magnitude 16-32 only to
  0.125 nats); largest absolute output logit >= ``out_threshold`` (default 64: bf16 spacing 0.5 nats there).
- growth (needs the curve: 4 or more recorded points): the signal keeps growing through the run. The
  reference is the value recorded nearest a quarter of the way through the recorded steps (past the
  initial transient); attention: the largest value in the last quarter is >= ``attn_growth`` (default
  10) times the reference; output logits: z falls >= ``z_drift`` (default 10 nats) below the reference
  in the last quarter.

Runs without the signals are not an error: the flag says ``source = "missing"``.
Signal names are those of `scaletune.train.signals`: curve columns attn_logit_max, z_mean, out_logit_max,
and the run-summary fields attn_logit_max, out_logit_max.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from scaletune._json import fields_of

ATTN_THRESHOLD = 1e4
ATTN_GROWTH = 10.0
Z_THRESHOLD = -20.0
Z_DRIFT = 10.0
OUT_THRESHOLD = 64.0


@dataclass(frozen=True)
class Flag:
    """One detector's verdict on one run: ``flagged``, the criteria met (threshold, growth), the extreme
    value of the signal (max attention logit; min z), its growth (attention: last-quarter max / reference;
    output: reference z - last-quarter min z, nats) and the source (curve | summary | missing)."""

    detector: str
    flagged: bool
    criteria: tuple[str, ...]
    value: float | None
    growth: float | None
    source: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RunFlags:
    """Both detectors' verdicts on one run, with the run's id, rate, status, final loss (NaN if none) and N."""

    run_id: str
    lr: float
    status: str
    attention: Flag
    output: Flag
    loss: float = math.nan
    N: float | None = None

    @property
    def flagged(self) -> bool:
        return self.attention.flagged or self.output.flagged

    def to_dict(self) -> dict[str, Any]:
        return {
            **fields_of(self, "run_id", "lr", "status", "loss", "N"),
            "attention_logit_growth": self.attention.to_dict(),
            "output_logit_divergence": self.output.to_dict(),
        }


def _series(curve: pd.DataFrame | None, col: str) -> tuple[np.ndarray, np.ndarray]:
    if curve is None or col not in curve.columns:
        return np.zeros(0), np.zeros(0)
    step = pd.to_numeric(curve["step"], errors="coerce").to_numpy(float) if "step" in curve.columns else np.arange(len(curve), dtype=float)
    v = pd.to_numeric(curve[col], errors="coerce").to_numpy(float)
    keep = np.isfinite(step) & np.isfinite(v)
    order = np.argsort(step[keep], kind="stable")
    return step[keep][order], v[keep][order]


def _reference_and_tail(step: np.ndarray, v: np.ndarray) -> tuple[float, np.ndarray]:
    """The value recorded nearest a quarter of the way through the steps, and the values of the last quarter."""
    lo, hi = step[0], step[-1]
    ref = v[int(np.argmin(np.abs(step - (lo + 0.25 * (hi - lo)))))]
    return float(ref), v[step >= lo + 0.75 * (hi - lo)]


def _summary(run: pd.Series | None, col: str) -> float | None:
    if run is None or col not in run.index:
        return None
    value = pd.to_numeric(pd.Series([run[col]]), errors="coerce").iloc[0]
    return float(value) if math.isfinite(value) else None


def attention_logit_growth(
    curve: pd.DataFrame | None, run: pd.Series | None = None, *, threshold: float = ATTN_THRESHOLD, growth: float = ATTN_GROWTH
) -> Flag:
    """Flag attention-logit growth from a run's curve (column attn_logit_max) or its summary field."""
    step, v = _series(curve, "attn_logit_max")
    if len(v):
        criteria, g = [], None
        if v.max() >= threshold:
            criteria.append("threshold")
        if len(v) >= 4:
            ref, tail = _reference_and_tail(step, v)
            g = float(tail.max() / ref) if ref > 0 else None
            if g is not None and g >= growth:
                criteria.append("growth")
        return Flag("attention_logit_growth", bool(criteria), tuple(criteria), float(v.max()), g, "curve")
    value = _summary(run, "attn_logit_max")
    if value is None:
        return Flag("attention_logit_growth", False, (), None, None, "missing")
    hit = value >= threshold
    return Flag("attention_logit_growth", hit, ("threshold",) if hit else (), value, None, "summary")


def output_logit_divergence(
    curve: pd.DataFrame | None,
    run: pd.Series | None = None,
    *,
    z_threshold: float = Z_THRESHOLD,
    z_drift: float = Z_DRIFT,
    out_threshold: float = OUT_THRESHOLD,
) -> Flag:
    """Flag output-logit divergence from a run's curve (z_mean, out_logit_max) or its summary out_logit_max."""
    step, z = _series(curve, "z_mean")
    _, out = _series(curve, "out_logit_max")
    if len(z) or len(out):
        criteria, g, value = [], None, None
        if len(z):
            value = float(z.min())
            if z.min() <= z_threshold:
                criteria.append("threshold")
            if len(z) >= 4:
                ref, tail = _reference_and_tail(step, z)
                g = float(ref - tail.min())
                if g >= z_drift:
                    criteria.append("growth")
        if len(out) and out.max() >= out_threshold and "threshold" not in criteria:
            criteria.append("threshold")
        return Flag("output_logit_divergence", bool(criteria), tuple(criteria), value, g, "curve")
    value = _summary(run, "out_logit_max")
    if value is None:
        return Flag("output_logit_divergence", False, (), None, None, "missing")
    hit = value >= out_threshold
    return Flag("output_logit_divergence", hit, ("threshold",) if hit else (), value, None, "summary")


def detect(runs: pd.DataFrame, curves: pd.DataFrame | None = None, **thresholds: float) -> list[RunFlags]:
    """Both detectors on every run of ``runs``; ``curves`` (run_id, step, signals...) are matched by run_id.

    ``thresholds``: attn_threshold, attn_growth, z_threshold, z_drift, out_threshold (see the module doc).
    """
    attn_kw = {k: thresholds[f"attn_{k}"] for k in ("threshold", "growth") if f"attn_{k}" in thresholds}
    out_kw = {k: thresholds[k] for k in ("z_threshold", "z_drift", "out_threshold") if k in thresholds}
    by_run = {}
    if curves is not None and "run_id" in curves.columns:
        by_run = {str(k): g for k, g in curves.groupby(curves["run_id"].astype(str), sort=False)}
    out = []
    for i, (_, run) in enumerate(runs.iterrows()):
        run_id = str(run["run_id"]) if "run_id" in runs.columns else str(i)
        curve = by_run.get(run_id)
        lr, loss, N = pd.to_numeric(pd.Series([run.get("lr"), run.get("loss"), run.get("N")]), errors="coerce")
        out.append(
            RunFlags(
                run_id,
                float(lr),
                str(run.get("status", "ok")),
                attention_logit_growth(curve, run, **attn_kw),
                output_logit_divergence(curve, run, **out_kw),
                float(loss),
                None if not math.isfinite(N) else float(N),
            )
        )
    return out
