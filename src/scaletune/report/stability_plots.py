"""Figure of `scaletune stability`: capped loss vs learning rate per scale with the stable-range edges and the
detectors' flags, LR sensitivity vs N and the stable-range edge vs N, each with its trend and the target.

Draws only what `scaletune.stability.analyse_stability` computed.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from scaletune.report import save_figure
from scaletune.results import format_scale

FLAG_MARKERS = {"attention": ("s", "attention-logit growth"), "output": ("^", "output-logit divergence")}


def flag_markers(ax, flags, top: float) -> None:
    """Mark flagged runs at (lr, final loss), or at ``top`` when the run has no finite loss (diverged)."""
    for key, (marker, label) in FLAG_MARKERS.items():
        pts = [(f.lr, f.loss if math.isfinite(f.loss) else top) for f in flags if getattr(f, key).flagged]
        if pts:
            x, y = zip(*pts)
            ax.plot(x, y, marker, mfc="none", mec="red", ms=9, mew=1.5, ls="none", label=label)


def plot_stability(report, path: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6))
    styles = ["-", "--", ":", "-."]
    n_scales = max(len(a.scales) for a in report.arms)
    colors = plt.cm.viridis(np.linspace(0, 0.9, max(n_scales, 1)))
    ax = axes[0]
    for a, arm in enumerate(report.arms):
        tag = ", ".join(f"{k}={v}" for k, v in arm.values.items())
        for s, color in zip(arm.scales, colors):
            label = format_scale(s.scale, ("N",)) + (f" [{tag}]" if tag else "")
            ax.plot(s.lrs, s.capped, styles[a % 4], marker="o", ms=3, color=color, label=label)
            ax.axvline(s.edge, color=color, ls=styles[a % 4], lw=0.6, alpha=0.6)
    ax.axhline(report.l_ref, color="grey", ls=":", lw=1, label="L_ref (cap)")
    flag_markers(ax, report.flags, report.l_ref)
    ax.set_xscale("log")
    ax.set_xlabel("learning rate (as in the run table)")
    ax.set_ylabel("min(final loss, L_ref), seed mean (nats/token)")
    ax.set_title(f"loss vs lr; vertical lines: stable-range edge ({report.tolerance:.0%})", fontsize=9)
    ax.legend(fontsize=6)

    for ax, key, ylabel in ((axes[1], "sensitivity", "LR sensitivity (nats)"), (axes[2], "edge", "stable-range edge lr")):
        for a, arm in enumerate(report.arms):
            tag = ", ".join(f"{k}={v}" for k, v in arm.values.items()) or "sweep"
            color = f"C{a}"
            use = [s for s in arm.scales if "N" in s.scale and (key == "sensitivity" or s.edge_bracketed)]
            if not use:
                continue
            N = np.array([s.scale["N"] for s in use])
            val = np.array([s.sensitivity if key == "sensitivity" else s.edge for s in use])
            iv = np.array([s.sensitivity_interval if key == "sensitivity" else s.edge_interval for s in use], float)
            yerr = np.abs(np.vstack([val - iv[:, 0], iv[:, 1] - val]))
            ax.errorbar(N, val, yerr=np.nan_to_num(yerr), fmt="o", color=color, capsize=3, label=tag)
            trend = arm.sensitivity_trend if key == "sensitivity" else arm.edge_trend
            if trend is None:
                continue
            right = report.target["N"] if report.target else N.max()
            grid = np.geomspace(min(N.min(), right) / 1.3, max(N.max(), right) * 1.3, 50)
            line = trend.intercept + trend.slope * np.log(grid)
            ax.plot(grid, line if key == "sensitivity" else np.exp(line), "-", color=color, lw=1)
            p = trend.prediction
            if p is not None:
                ax.errorbar(
                    [report.target["N"]],
                    [p.value],
                    yerr=[[p.value - p.interval[0]], [p.interval[1] - p.value]],
                    fmt="s",
                    color=color,
                    capsize=4,
                    mfc="none",
                    label=f"target (x{p.extrapolation:.1f} in N)",
                )
        ax.set_xscale("log")
        if key == "edge":
            ax.set_yscale("log")
        ax.set_xlabel("N (parameters, as in the run table)")
        ax.set_ylabel(ylabel)
        ax.set_title(f"{ylabel} vs N: 95% intervals, trend, target", fontsize=9)
        ax.legend(fontsize=6)
    return save_figure(fig, path, dpi=110)
