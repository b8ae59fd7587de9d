"""Figures for loss curves under schedules: fitted and predicted curves with their bands, schedule comparisons.

Plots only draw what `scaletune.curves` computed; they never fit. Losses in nats, x axis in steps.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from scaletune.report import save_figure
from scaletune.results import percentile_interval


def _figure(rows: int = 1):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(
        rows, 1, figsize=(7, 3.2 * rows), squeeze=False, sharex=True, gridspec_kw={"height_ratios": [3] + [1] * (rows - 1)}
    )
    return plt, fig, axes[:, 0]


def plot_curves(path: str | Path, observed: Sequence = (), predictions: Sequence = (), title: str = "") -> Path:
    """Observed curves (points) and predicted curves (lines with their 95% band), plus each schedule below."""
    plt, fig, (ax, ax_lr) = _figure(2)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, c in enumerate(observed):
        ax.plot(c.steps, c.loss, ".", ms=2.5, color=colors[i % len(colors)], alpha=0.6, label=f"{c.name} (observed)")
        ax_lr.plot(np.arange(len(c.lrs)), c.lrs, color=colors[i % len(colors)], lw=1)
    for j, (label, p, lrs) in enumerate(predictions):
        col = colors[(len(observed) + j) % len(colors)] if not observed else colors[j % len(colors)]
        ax.plot(p.steps, p.value, "-", color=col, lw=1.2, label=f"{label} (law)")
        ax.fill_between(p.steps, p.lo, p.hi, color=col, alpha=0.2, lw=0)
        if lrs is not None and not observed:
            ax_lr.plot(np.arange(len(lrs)), lrs, color=col, lw=1)
    ax.set_ylabel("loss (nats)")
    ax.set_title(title)
    ax.legend(fontsize=7, ncol=2)
    ax_lr.set_xlabel("step")
    ax_lr.set_ylabel("learning rate")
    # the first steps after warm-up sit far above the rest: show up to the 90th percentile (the top of the central 80%)
    lows = [np.min(c.loss) for c in observed] + [np.min(p.value) for _, p, _ in predictions]
    highs = [percentile_interval(c.loss, 0.8)[1] for c in observed] + [percentile_interval(p.value, 0.8)[1] for _, p, _ in predictions]
    if lows:
        pad = 0.05 * (max(highs) - min(lows) + 1e-9)
        ax.set_ylim(min(lows) - pad, max(highs) + pad)
    return save_figure(fig, path, dpi=130)


def plot_candidates(path: str | Path, candidates: Sequence, title: str = "") -> Path:
    """Predicted final loss of each candidate schedule with its interval (horizontal bars, best on top)."""
    plt, fig, (ax,) = _figure(1)
    fig.set_size_inches(7, 0.35 * len(candidates) + 1.5)
    y = np.arange(len(candidates))[::-1]
    losses = np.array([c.final_loss for c in candidates])
    err = np.array([[c.final_loss - c.final_interval[0] for c in candidates], [c.final_interval[1] - c.final_loss for c in candidates]])
    ax.errorbar(losses, y, xerr=err, fmt="o", ms=4, capsize=3)
    ax.set_yticks(y)
    ax.set_yticklabels([c.spec if len(c.spec) < 60 else c.spec[:57] + "..." for c in candidates], fontsize=7)
    ax.set_xlabel("predicted final loss (nats)")
    ax.set_title(title)
    return save_figure(fig, path, dpi=130)
