"""Figures of the hparams area: sweeps per scale, lr laws with their target prediction, the target check.

Plots only draw what `scaletune.hparams` computed; they never fit anything themselves.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from scaletune.report import save_figure
from scaletune.results import format_scale
from scaletune.runtable import ok_runs


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _split(runs: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(ok runs, the others: diverged, failed, pruned), by position (an index may repeat)."""
    ok = np.zeros(len(runs), bool)
    ok[ok_runs(runs.reset_index(drop=True)).index] = True
    return runs[ok], runs[~ok]


def _err(value: float, lo: float | None, hi: float | None) -> list[list[float]] | None:
    """Matplotlib's asymmetric error bar around ``value`` for the interval [lo, hi]; None (no bar) when
    the interval is missing or NaN (no bootstrap)."""
    if lo is None or hi is None or not math.isfinite(lo):
        return None
    return [[value - lo], [hi - value]]


def _finish(fig, ax, path: str | Path, xlabel: str, ylabel: str, title: str | None = None, title_size: int = 8, ylog: bool = False) -> Path:
    """What every figure here shares: a log learning-rate or N axis, labels, small legend, saved at 120 dpi."""
    ax.set_xscale("log")
    if ylog:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=title_size)
    ax.legend(fontsize=7)
    return save_figure(fig, path, dpi=120)


def _groups(runs: pd.DataFrame, optima) -> list[tuple[Any, pd.DataFrame]]:
    cols = [c for c in optima[0].scale if c in runs.columns and c in ("rung",)] or [c for c in ("N", "D") if c in runs.columns]
    out = []
    for o in optima:
        mask = np.ones(len(runs), bool)
        for c in cols:
            mask &= np.isclose(pd.to_numeric(runs[c], errors="coerce").to_numpy(float), o.scale[c])
        out.append((o, runs[mask]))
    return out


def plot_sweeps(runs: pd.DataFrame, optima: Sequence, path: str | Path, flags: Sequence | None = None) -> Path:
    """Final loss vs learning rate per scale: ok runs (dots), diverged/failed (x at the top, never fitted),
    the vertex with its 95% interval, the near-optimal band (shaded); with ``flags`` (from
    `scaletune.stability.detect`), red open markers on runs with attention-logit growth or output-logit divergence."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 5))
    colors = plt.cm.viridis(np.linspace(0, 0.9, len(optima)))
    top = float(pd.to_numeric(ok_runs(runs)["loss"], errors="coerce").max())
    for (o, g), color in zip(_groups(runs, optima), colors):
        ok, bad = _split(g)
        label = format_scale(o.scale, ("N", "D"))
        if o.batch_bracketed is not None and "batch_size" in ok.columns:  # swept in 2-D: its best batch size's slice
            ok = ok[np.isclose(ok["batch_size"].astype(float), o.best_batch_size)]
            label += f", batch {o.best_batch_size:g}"
        mean = ok.groupby("lr")["loss"].mean()
        ax.plot(mean.index, mean.values, "o-", color=color, ms=4, lw=1, label=label + ("" if o.bracketed else " (not bracketed)"))
        if len(bad):
            ax.plot(bad["lr"], np.full(len(bad), top * 1.01), "x", color=color, ms=6)
        xerr = _err(o.lr_, *o.lr_interval)
        if xerr is not None:
            ax.errorbar([o.lr_], [o.loss_], xerr=xerr, fmt="*", color=color, ms=10, capsize=3)
        ax.axvspan(o.band_lr[0], o.band_lr[1], color=color, alpha=0.08)
    if flags:
        from scaletune.report.stability_plots import flag_markers

        flag_markers(ax, flags, top * 1.01)
    return _finish(
        fig,
        ax,
        path,
        "learning rate (as in the run table; muP: base rate)",
        "final validation loss (nats/token)",
        "Sweeps per scale: * vertex with 95% interval, shaded = near-optimal band, x = diverged (not fitted)",
    )


def plot_laws(rec, path: str | Path, measured: dict | None = None) -> Path:
    """Optimal lr per scale vs N (one colour per D), the fitted lr*(N, D) lines with their 95% band, the
    recommendation at the target with its interval, the published laws, and the measured target optimum."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 5))
    optima = [o for o in rec.optima if "N" in o.scale and "D" in o.scale]
    Ds = sorted({o.scale["D"] for o in optima})
    colors = plt.cm.plasma(np.linspace(0, 0.8, max(len(Ds), 1)))
    law = rec.laws.laws.get("lr_ND")
    n_max = max([o.scale["N"] for o in optima] + [rec.target["N"]])
    n_min = min(o.scale["N"] for o in optima) if optima else rec.target["N"] / 10
    grid = np.geomspace(n_min / 1.2, n_max * 1.2, 60)
    for D, color in zip(Ds, colors):
        group = [o for o in optima if o.scale["D"] == D]
        for o in group:
            marker = "o" if o.bracketed else "^"
            ax.errorbar(
                [o.scale["N"]],
                [o.lr_],
                yerr=_err(o.lr_, *o.lr_interval),
                fmt=marker,
                color=color,
                capsize=3,
                mfc="none" if not o.bracketed else color,
            )
        if law is not None:
            x = {"N": grid, "D": np.full_like(grid, D)}
            x = {v: x[v] for v in law.variables}
            ax.plot(grid, law.fit_.predict(x), "-", color=color, lw=1, label=f"D = {D:.3g} tokens")
            band = law.predict_interval(x)
            ax.fill_between(grid, band.lo, band.hi, color=color, alpha=0.12)  # NaN (nothing drawn) without a bootstrap
    ax.errorbar(
        [rec.target["N"]],
        [rec.lr.value],
        yerr=_err(rec.lr.value, *rec.lr.interval),
        fmt="s",
        color="k",
        capsize=4,
        label=f"recommended at target (x{rec.lr.extrapolation:.1f} extrapolation)",
    )
    if measured and measured.get("measured_optimum"):
        m = measured["measured_optimum"]
        ax.errorbar(
            [rec.target["N"] * 1.06],
            [m["lr_"]],
            yerr=_err(m["lr_"], *m["lr_interval"]),
            fmt="D",
            color="g",
            capsize=4,
            label="measured at the target (vertex, 95%)",
        )
    for name, p in rec.published.items():
        ax.plot([rec.target["N"]], [p["lr"]], "x", ms=8, label=f"{name} (published, SP)")
    return _finish(
        fig,
        ax,
        path,
        "N (parameters, as counted in the run table)",
        "optimal learning rate",
        "lr*(N, D): per-scale optima (95%), fitted law and 95% band, target",
        title_size=9,
        ylog=True,
    )


def plot_target_check(target_runs: pd.DataFrame, rec, path: str | Path) -> Path:
    """Loss vs lr measured at the target, the recommended lr (with interval) and the predicted loss band."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    ok, bad = _split(target_runs)
    ax.plot(ok["lr"], ok["loss"], "o-", color="C0", label="measured at the target")
    if len(bad):
        ax.plot(bad["lr"], np.full(len(bad), ok["loss"].max() * 1.01 if len(ok) else 1.0), "x", color="C3", label="diverged")
    lo, hi = rec.lr.interval
    if math.isfinite(lo):
        ax.axvspan(lo, hi, color="k", alpha=0.08, label="recommended lr, 95% interval")
    ax.axvline(rec.lr.value, color="k", lw=1)
    if rec.loss is not None:
        a, b = rec.loss.interval
        if math.isfinite(a):
            ax.axhspan(a, b, color="C1", alpha=0.15, label="predicted loss, 95% interval")
        ax.axhline(rec.loss.value, color="C1", lw=1)
    return _finish(fig, ax, path, "learning rate (muP base rate)", "final validation loss (nats/token)")
