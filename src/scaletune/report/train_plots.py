"""Figures of the train area: coordinate check, learning-rate schedules, loss vs LR per width."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from scaletune.report import save_figure
from scaletune.runtable import ok_runs


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_coord_check(tables: Mapping[str, pd.DataFrame], path: str | Path, axis: str = "width") -> Path:
    """One row of panels per parameterisation, one panel per layer kind: RMS vs width (or depth), a line
    per step. ``tables`` maps a parameterisation name to a `CoordCheck.table_` (columns width, depth,
    step, kind, rms); for a depth sweep the residual panel shows the last block's output only.
    """
    plt = _plt()
    kinds = ["input", "hidden", "residual", "readout"]
    fig, axes = plt.subplots(len(tables), len(kinds), figsize=(3.2 * len(kinds), 2.8 * len(tables)), squeeze=False)
    for row, (param, table) in enumerate(tables.items()):
        steps = sorted(table["step"].unique())
        colors = plt.cm.viridis(np.linspace(0, 0.9, len(steps)))
        for col, kind in enumerate(kinds):
            ax = axes[row][col]
            rows = table[table["kind"] == kind]
            if axis == "depth":  # blocks differ in number across depths: compare common layers only
                rows = rows[rows["layer"] == "blocks.-1"] if kind == "residual" else rows[~rows["layer"].str.startswith("blocks.")]
                if kind == "hidden":
                    rows = table[(table["kind"] == kind) & table["layer"].str.startswith("blocks.0.")]
            sub = rows.groupby(["step", axis], as_index=False)["rms"].mean()
            for color, step in zip(colors, steps):
                s = sub[sub["step"] == step]
                ax.plot(s[axis], s["rms"], "o-", color=color, ms=3, label=f"step {step}")
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_title(f"{param}: {kind}", fontsize=9)
            ax.set_xlabel(axis)
            if col == 0:
                ax.set_ylabel("activation RMS (mean over layers)")
        axes[row][-1].legend(fontsize=7)
    return save_figure(fig, path, dpi=110)


def plot_schedules(schedules: Sequence, path: str | Path) -> Path:
    """Learning rate vs step for `scaletune.schedules.Schedule` objects, labelled by their spec."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 3.8))
    for sched in schedules:
        ax.plot(np.arange(sched.steps), sched.lrs(), label=sched.spec(), lw=1.4)
    ax.set_xlabel("step (optimizer update, 0-indexed)")
    ax.set_ylabel("learning rate")
    ax.legend(fontsize=7)
    return save_figure(fig, path, dpi=110)


def plot_lr_transfer(runs: pd.DataFrame, path: str | Path) -> Path:
    """The classic muTransfer figure: final validation loss vs learning rate, a line per width, a panel
    per parameterisation (mean over seeds; diverged runs left out; the minimum of each line marked)."""
    plt = _plt()
    params = list(dict.fromkeys(runs["param"]))
    fig, axes = plt.subplots(1, len(params), figsize=(5 * len(params), 4), squeeze=False, sharey=True)
    ok = ok_runs(runs)
    widths = sorted(runs["width"].unique())
    colors = plt.cm.plasma(np.linspace(0, 0.85, len(widths)))
    for ax, param in zip(axes[0], params):
        sub = ok[ok["param"] == param].groupby(["width", "lr"], as_index=False)["loss"].mean()
        for color, width in zip(colors, widths):
            s = sub[sub["width"] == width].sort_values("lr")
            if s.empty:
                continue
            ax.plot(s["lr"], s["loss"], "o-", color=color, ms=3, label=f"width {width}")
            best = s.loc[s["loss"].idxmin()]
            ax.plot(best["lr"], best["loss"], "*", color=color, ms=12)
        ax.set_xscale("log", base=2)
        ax.set_title(param)
        ax.set_xlabel("peak learning rate (base LR)")
        ax.legend(fontsize=8)
    axes[0][0].set_ylabel("final validation loss (nats/byte)")
    return save_figure(fig, path, dpi=110)
