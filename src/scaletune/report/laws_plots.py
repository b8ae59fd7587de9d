"""Figures of the laws area: a fitted law over its data (with the bootstrap band and held-out points), and
isoFLOP curves with their optima and the N*(C), D*(C) fits. Plots only: every number comes from the fit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from scaletune.laws.fitting import FitResult, holdout_mask
from scaletune.laws.isoflop import IsoflopResult
from scaletune.report import save_figure


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _band(ax, fit: FitResult, x: dict, xs: np.ndarray, color) -> None:
    if fit.has_samples:
        band = fit.predict_interval(x)
        ax.fill_between(xs, band.lo, band.hi, color=color, alpha=0.2, lw=0)


def plot_fit(fit: FitResult, data: pd.DataFrame, path: str | Path) -> Path:
    """Left: the response against the law's first variable, one fitted curve (with its bootstrap band) per
    level of the other variables when there are few, held-out points in red. Right: observed vs predicted."""
    plt = _pyplot()
    law = fit.law_
    df = data.copy()
    held = holdout_mask(df, fit.holdout["expression"]) if fit.holdout and fit.holdout["expression"] != "mask" else np.zeros(len(df), bool)
    x0 = law.variables[0]
    others = list(law.variables[1:])
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 4.8))
    cmap = plt.get_cmap("viridis")
    if others and df.groupby(others).ngroups <= 8:
        groups = list(df.groupby(others))
    elif len(others) == 1:
        # many distinct values of the other variable: five log-spaced bins, one curve at each bin's centre
        v = np.log(df[others[0]].to_numpy(float))
        bins = np.minimum(((v - v.min()) / max(np.ptp(v), 1e-12) * 5).astype(int), 4)
        groups = [((float(np.exp(v[bins == b].mean())),), df[bins == b]) for b in range(5) if (bins == b).any()]
    else:
        groups = [((), df)]
    n_groups = len(groups)
    for i, (key, grp) in enumerate(groups):
        color = cmap(i / max(n_groups - 1, 1))
        key = key if isinstance(key, tuple) else (key,)
        label = ", ".join(f"{o}~{k:.3g}" for o, k in zip(others, key)) or None
        g_held = held[df.index.get_indexer(grp.index)]
        ax.scatter(grp[x0][~g_held], grp[fit.y][~g_held], s=14, color=color, label=label)
        if g_held.any():
            ax.scatter(grp[x0][g_held], grp[fit.y][g_held], s=40, marker="x", color="red")
        if others and not key:
            continue  # too many combinations of the other variables to draw one curve each
        xs = np.logspace(np.log10(df[x0].min()), np.log10(df[x0].max()) + 0.3, 120)
        point = {x0: xs, **{o: np.full_like(xs, k) for o, k in zip(others, key)}}
        ax.plot(xs, fit.predict(point), color=color, lw=1.2)
        _band(ax, fit, point, xs, color)
    ax.set(xscale="log", yscale="log", xlabel=x0, ylabel=fit.y, title=f"{fit.law} fit" + (" (red x: held out)" if held.any() else ""))
    if n_groups > 1:
        ax.legend(fontsize=7)
    pred = fit.predict({v: df[v].to_numpy(float) for v in law.variables})
    obs = df[fit.y].to_numpy(float)
    ax2.scatter(pred[~held], obs[~held], s=12, label="fitted")
    if held.any():
        ax2.scatter(pred[held], obs[held], s=40, marker="x", color="red", label="held out")
    lims = [min(pred.min(), obs.min()), max(pred.max(), obs.max())]
    ax2.plot(lims, lims, color="gray", lw=1)
    wide = lims[1] / lims[0] > 10  # log axes only when the values span more than a decade
    ax2.set(
        xscale="log" if wide else "linear",
        yscale="log" if wide else "linear",
        xlabel=f"predicted {fit.y}",
        ylabel=f"observed {fit.y}",
        title="observed vs predicted",
    )
    ax2.legend(fontsize=8)
    return save_figure(fig, path, dpi=120)


def plot_isoflop(res: IsoflopResult, data: pd.DataFrame, path: str | Path, C: str = "C", N: str = "N", y: str = "loss") -> Path:
    """Left: loss vs N per budget with the interpolated optimum and its bootstrap interval. Right: N*(C) and
    D*(C) with their power-law fits and bands."""
    plt = _pyplot()
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 4.8))
    cmap = plt.get_cmap("plasma")
    budgets = sorted(data[C].unique())
    for i, budget in enumerate(budgets):
        grp = data[data[C] == budget].sort_values(N)
        color = cmap(i / max(len(budgets) - 1, 1))
        ax.plot(grp[N], grp[y], "o-", ms=3, lw=0.8, color=color, alpha=0.8)
        row = res.optima[res.optima["C"] == budget]
        if len(row):
            r = row.iloc[0]
            ax.errorbar(
                [r.N_star],
                [r.loss_star],
                xerr=[[r.N_star - r.N_star_lo], [r.N_star_hi - r.N_star]],
                fmt="*",
                ms=11,
                color=color,
                mec="black",
            )
    ax.set(xscale="log", xlabel="N (parameters)", ylabel=y, title="isoFLOP curves (stars: optimum, bars: 95% bootstrap)")
    cs = np.logspace(np.log10(min(budgets)), np.log10(max(budgets)) + 1, 100)
    for col, fit, color in (("N_star", res.n_fit, "C0"), ("D_star", res.d_fit, "C1")):
        ax2.scatter(res.optima["C"], res.optima[col], color=color, s=18)
        ax2.plot(cs, fit.predict({"C": cs}), color=color, label=f"{col} ~ C^{fit.params_['c_C']:.3f}")
        _band(ax2, fit, {"C": cs}, cs, color)
    ax2.set(xscale="log", yscale="log", xlabel="C (FLOPs)", ylabel="N* (parameters), D* (tokens)", title="compute-optimal allocation")
    ax2.legend()
    return save_figure(fig, path, dpi=120)
