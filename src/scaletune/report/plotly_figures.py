"""Interactive figures (plotly) of the HTML report, built from fit results; they never fit anything.

Every trace that carries a number of a fit is tagged with ``meta = {"kind": ..., ...}`` (optimum, band,
law, target, published, ...), so a program (and the tests) can find it and compare it with the fit.
Learning rates as in the run table (under muP: the base rate), batch sizes and D in tokens, N as the run
table counts it, C in FLOPs (6ND where the table has no C), losses in nats.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from scaletune.laws.published import deepseek_batch, deepseek_lr, published, steplaw_batch, steplaw_lr
from scaletune.results import format_scale

BAND_ALPHA = 0.18


def _go():
    import plotly.graph_objects as go

    return go


def _colors(n: int) -> list[str]:
    from plotly.colors import sample_colorscale

    return sample_colorscale("Viridis", list(np.linspace(0.0, 0.85, max(n, 1))))


def _rgba(color: str, alpha: float) -> str:
    """'rgb(r, g, b)' (what sample_colorscale returns) as 'rgba(r, g, b, alpha)'."""
    return color.replace("rgb(", "rgba(").replace(")", f", {alpha})")


def _finite(iv: Sequence[float] | None) -> bool:
    return iv is not None and all(v is not None and math.isfinite(v) for v in iv)


def _error(value: float, iv: Sequence[float] | None) -> dict | None:
    """An asymmetric error bar from an interval (None when the interval is missing)."""
    if not _finite(iv):
        return None
    return {"type": "data", "symmetric": False, "array": [iv[1] - value], "arrayminus": [value - iv[0]]}


def _error_bars(values: Sequence[float], intervals: Sequence[Sequence[float] | None]) -> dict:
    """Asymmetric error bars of many points from their intervals (no bar where an interval is missing)."""
    up = [max(iv[1] - v, 0) if _finite(iv) else 0 for v, iv in zip(values, intervals)]
    down = [max(v - iv[0], 0) if _finite(iv) else 0 for v, iv in zip(values, intervals)]
    return {"type": "data", "symmetric": False, "array": up, "arrayminus": down}


def _curve_marker(go, x: float, y: float, curve: str, what: str, marker: dict, meta: dict, **kw: Any):
    """One marked point of a curve (its optimum, best tested point, edge): named "curve: what", in the
    curve's legend group (it shows and hides with the curve) and not listed in the legend again."""
    return go.Scatter(
        x=[x], y=[y], mode="markers", name=f"{curve}: {what}", legendgroup=curve, showlegend=False, marker=marker, meta=meta, **kw
    )


def _optimum_star(go, x: float, y: float, interval: Sequence[float] | None, curve: str, color: str, meta: dict, **kw: Any):
    """A curve's optimum: a star with its 95% interval in x as a bar."""
    star = {"symbol": "star", "size": 14, "color": color, "line": {"width": 1, "color": "black"}}
    return _curve_marker(go, x, y, curve, "optimum", star, {**meta, "kind": "optimum"}, error_x=_error(x, interval), **kw)


def _scale_label(scale: Mapping[str, float]) -> str:
    return format_scale(scale, ("N", "D")) or format_scale(scale)


def _band_traces(go, x: np.ndarray, lo: np.ndarray, hi: np.ndarray, color: str, name: str, meta: dict, showlegend: bool = True) -> list:
    """A filled band between lo and hi (two traces: the upper edge, then the lower filled up to it)."""
    return [
        go.Scatter(
            x=x, y=hi, mode="lines", line={"width": 0}, showlegend=False, hoverinfo="skip", legendgroup=name, meta={**meta, "edge": "hi"}
        ),
        go.Scatter(
            x=x,
            y=lo,
            mode="lines",
            line={"width": 0},
            fill="tonexty",
            fillcolor=_rgba(color, BAND_ALPHA),
            name=name,
            legendgroup=name,
            hoverinfo="skip",
            showlegend=showlegend,
            meta={**meta, "edge": "lo"},
        ),
    ]


def _law_band(fit, point: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray] | None:
    if fit.bootstrap_params is None or not np.isfinite(fit.bootstrap_params).any():
        return None
    return fit.predict_interval(point, fit.level).interval


# --------------------------------------------------------------------------- sweeps


def runs_of(runs: pd.DataFrame, o) -> pd.DataFrame:
    """The runs of one optimum's scale (matched on the scale columns the table has)."""
    mask = np.ones(len(runs), bool)
    for k, v in o.scale.items():
        if k in runs.columns:
            mask &= np.isclose(pd.to_numeric(runs[k], errors="coerce").to_numpy(float), v)
    return runs[mask]


def sweep_panels(optima: Sequence) -> list[tuple[str, list]]:
    """Small multiples: one panel per token budget D (a line per N), else one panel per scale."""
    if optima and all("D" in o.scale for o in optima):
        Ds = sorted({o.scale["D"] for o in optima})
        return [(f"D = {D:.4g} tokens", sorted([o for o in optima if o.scale["D"] == D], key=lambda o: o.scale.get("N", 0))) for D in Ds]
    return [(_scale_label(o.scale), [o]) for o in optima]


def sweeps_figure(runs: pd.DataFrame, optima: Sequence):
    """Final loss vs learning rate, one panel per token budget: seed-averaged ok runs (a line per N),
    diverged / failed / pruned runs (x at the panel's top, never fitted), the vertex with its 95% interval
    (star; an open circle at the best tested rate where the sweep did not bracket it) and the near-optimal
    band (a thick segment over the tested rates within ``band`` of the best smoothed loss)."""
    go = _go()
    from plotly.subplots import make_subplots

    panels = sweep_panels(optima)
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig = make_subplots(
        rows=rows, cols=cols, subplot_titles=[t for t, _ in panels], horizontal_spacing=0.06, vertical_spacing=0.12 if rows > 1 else 0.1
    )
    status = runs["status"].astype(str).str.lower() if "status" in runs.columns else pd.Series("ok", index=runs.index)
    n_colors = max(len(group) for _, group in panels)
    for i, (_, group) in enumerate(panels):
        where = {"row": i // cols + 1, "col": i % cols + 1}
        ok_losses = []
        for o in group:
            g = runs_of(runs, o)
            ok_losses += list(pd.to_numeric(g.loc[status[g.index] == "ok", "loss"], errors="coerce").dropna())
        top = max(ok_losses) * 1.02 if ok_losses else 1.0
        for o, color in zip(group, _colors(n_colors)):
            g = runs_of(runs, o)
            ok, bad = g[status[g.index] == "ok"], g[status[g.index] != "ok"]
            label = _scale_label(o.scale)
            if o.batch_bracketed is not None and "batch_size" in ok.columns and o.best_batch_size:
                ok = ok[np.isclose(ok["batch_size"].astype(float), o.best_batch_size)]  # 2-D sweep: the best batch's slice
                label += f", batch {o.best_batch_size:g}"
            mean = ok.groupby("lr")["loss"].mean().sort_index()
            meta = {"scale": dict(o.scale)}
            fig.add_trace(
                go.Scatter(
                    x=mean.index.to_numpy(float),
                    y=mean.to_numpy(float),
                    mode="lines+markers",
                    name=label,
                    legendgroup=label,
                    line={"color": color, "width": 1.5},
                    marker={"size": 6},
                    meta={**meta, "kind": "runs"},
                    hovertemplate="lr %{x:.4g}<br>loss %{y:.4f}<extra>" + label + "</extra>",
                ),
                **where,
            )
            if len(bad):
                fig.add_trace(
                    go.Scatter(
                        x=bad["lr"].to_numpy(float),
                        y=np.full(len(bad), top),
                        mode="markers",
                        name=f"{label}: not ok",
                        legendgroup=label,
                        showlegend=False,
                        marker={"symbol": "x", "size": 9, "color": color},
                        text=bad["status"].astype(str).tolist() if "status" in bad.columns else None,
                        meta={**meta, "kind": "diverged"},
                        hovertemplate="lr %{x:.4g}: %{text} (not fitted)<extra></extra>",
                    ),
                    **where,
                )
            if o.lr_bracketed and _finite(o.lr_interval):
                hover = (
                    f"optimum lr {o.lr_:.4g} [{o.lr_interval[0]:.4g}, {o.lr_interval[1]:.4g}]<br>loss {o.loss_:.4f}<extra>{label}</extra>"
                )
                fig.add_trace(_optimum_star(go, o.lr_, o.loss_, o.lr_interval, label, color, meta, hovertemplate=hover), **where)
            else:
                circle = {"symbol": "circle-open", "size": 14, "color": color, "line": {"width": 2}}
                best = {**meta, "kind": "best-tested", "message": o.message}
                hover = f"best tested lr %{{x:.4g}} (not bracketed: {o.message})<extra></extra>"
                fig.add_trace(_curve_marker(go, o.best_lr, o.best_loss, label, "not bracketed", circle, best, hovertemplate=hover), **where)
            if _finite(o.band_lr):
                level = o.loss_ * (1 + o.band) if math.isfinite(o.loss_) else o.best_loss
                fig.add_trace(
                    go.Scatter(
                        x=list(o.band_lr),
                        y=[level, level],
                        mode="lines",
                        name=f"{label}: band",
                        legendgroup=label,
                        showlegend=False,
                        line={"color": color, "width": 7},
                        opacity=0.35,
                        meta={**meta, "kind": "band", "band": o.band},
                        hovertemplate=f"near-optimal band ({o.band:.2%}): lr %{{x:.4g}}<extra></extra>",
                    ),
                    **where,
                )
    fig.update_xaxes(type="log", title_text="learning rate")
    fig.update_yaxes(title_text="final loss (nats)", col=1)
    fig.update_layout(
        height=330 * rows + 80,
        margin={"t": 60, "b": 40},
        legend={"font": {"size": 10}},
        title={
            "text": "* optimum (vertex, 95% interval) · thick segment: near-optimal band · x: diverged / failed (not fitted)",
            "font": {"size": 12},
        },
    )
    return fig


# --------------------------------------------------------------------------- laws


def _grid(values: Sequence[float], pad: float = 1.3) -> np.ndarray:
    v = [float(x) for x in values if x is not None and math.isfinite(x) and x > 0]
    return np.geomspace(min(v) / pad, max(v) * pad, 80)


def scale_compute(o) -> float:
    """C of an optimum's scale: its run table's C column where constant, else 6ND."""
    c = pd.to_numeric(pd.Series([o.extra.get("C")]), errors="coerce").iloc[0]
    return float(c) if c > 0 else 6.0 * o.scale["N"] * o.scale["D"]


def _law_lines(go, fig, fit, name: str, xs: np.ndarray, lines: list[tuple[dict, dict, str]], meta: dict) -> None:
    """One line (and its bootstrap band) of ``fit`` per (held values, point, color): ``point`` maps every
    variable the law may need (N, D, C, ...) to arrays along ``xs``; ``held`` the variables held constant on
    the line (recorded in the traces' meta as ``at``)."""
    for held, point, color in lines:
        x = {v: point[v] for v in fit.law_.variables}
        label = ", ".join(f"{k} = {v:.3g}" for k, v in held.items()) or "all scales"
        m = {**meta, "kind": "law", "law": name, "at": held}
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=fit.predict(x),
                mode="lines",
                name=f"{name} fit, {label}",
                legendgroup=name + label,
                line={"color": color, "width": 2},
                meta=m,
            )
        )
        band = _law_band(fit, x)
        if band is not None:
            for t in _band_traces(go, xs, band[0], band[1], color, f"{name} 95% band, {label}", {**m, "kind": "band"}, showlegend=False):
                fig.add_trace(t)


def _optima_traces(
    go, optima: Sequence, response: str, x: str, names: tuple[str, str], meta: dict, color: str | None = None, labels: bool = False
) -> list:
    """Markers of the per-scale optima of ``response`` (lr | batch_size) against the scale variable ``x``:
    those a law may use at their optimum with its 95% bar (circles, kind "optimum"), the others at their
    best tested value (open triangles, kind "unbracketed": not fitted). ``names``: the two legend entries;
    ``labels``: each point's scale as its hover text."""
    traces = []
    for used in (True, False):
        sel = [o for o in optima if o.usable(response) == used]
        if not sel:
            continue
        if used:
            y = [getattr(o, response + "_") for o in sel]
            err = _error_bars(y, [getattr(o, response + "_interval") for o in sel])
        else:
            y, err = [getattr(o, "best_" + response) for o in sel], None
        traces.append(
            go.Scatter(
                x=[o.scale[x] for o in sel],
                y=y,
                mode="markers",
                error_y=err,
                text=[_scale_label(o.scale) for o in sel] if labels else None,
                name=names[0] if used else names[1],
                marker={"symbol": "circle" if used else "triangle-up-open", "size": 9, "color": color},
                meta={"kind": "optimum" if used else "unbracketed", **meta},
            )
        )
    return traces


def _target_trace(go, x: float, pred, name: str, meta: dict):
    from scaletune.hparams.describe import describe

    return go.Scatter(
        x=[x],
        y=[pred.value],
        mode="markers",
        name=name,
        error_y=_error(pred.value, pred.interval),
        marker={"symbol": "square", "size": 11, "color": "black"},
        meta={**meta, "kind": "target"},
        hovertemplate=(
            f"{pred.value:.4g} [{pred.interval[0]:.4g}, {pred.interval[1]:.4g}], "
            f"x{pred.extrapolation:.1f} extrapolation<br>{describe(pred)}<extra></extra>"
        ),
    )


def _law_axes(fig: Any, x: str, y: str, title: str, height: int) -> Any:
    """A law figure's log-log axes (titled ``x``, ``y``), its title and size."""
    fig.update_xaxes(type="log", title_text=x)
    fig.update_yaxes(type="log", title_text=y)
    fig.update_layout(title={"text": title, "font": {"size": 13}}, height=height, legend={"font": {"size": 10}})
    return fig


def lr_law_figure(optima: Sequence, laws, rec=None):
    """lr* vs N, one colour per token budget: the per-scale optima (95% bars; open triangles: not bracketed,
    not used), the fitted lr*(N, D) (or lr*(C)) with its 95% band, the recommendation at the target with its
    interval, and the published laws (StepLaw, DeepSeek LLM: fitted on standard-parameterised models)."""
    go = _go()
    fig = go.Figure()
    pts = [o for o in optima if "N" in o.scale and "D" in o.scale]
    target = rec.target if rec is not None else None
    Ds = sorted({o.scale["D"] for o in pts} | ({target["D"]} if target else set()))
    colors = dict(zip(Ds, _colors(len(Ds))))
    grid = _grid([o.scale["N"] for o in pts] + ([target["N"]] if target else []))
    for D in Ds:
        name = f"optimum per scale, D = {D:.3g}"
        group = [o for o in pts if o.scale["D"] == D]
        for t in _optima_traces(go, group, "lr", "N", (name, name + " (not bracketed: best tested, not fitted)"), {"D": D}, colors[D]):
            fig.add_trace(t)
    law = None if laws is None else (laws.laws.get("lr_ND") or laws.laws.get("lr_C"))
    if law is not None:
        lines = [({"D": D}, {"N": grid, "D": np.full_like(grid, D), "C": 6 * grid * D}, colors[D]) for D in Ds]
        if law.variables == ("N",):
            lines = lines[-1:]  # fitted in N only: one line
        _law_lines(go, fig, law.fit_, law.name, grid, lines, {"response": "lr"})
    D_pub = target["D"] if target else (max(Ds) if Ds else None)
    if D_pub is not None:
        for name, y in (
            ("StepLaw lr*(N, D) (published, SP)", steplaw_lr(grid, D_pub)),
            ("DeepSeek LLM lr*(C = 6ND) (published, SP)", deepseek_lr(6 * grid * D_pub)),
        ):
            fig.add_trace(
                go.Scatter(
                    x=grid,
                    y=y,
                    mode="lines",
                    name=f"{name}, D = {D_pub:.3g}",
                    line={"dash": "dash", "width": 1.2},
                    meta={"kind": "published", "law": name, "D": D_pub},
                )
            )
    if rec is not None:
        fig.add_trace(
            _target_trace(
                go, target["N"], rec.lr, f"recommended at the target (x{rec.lr.extrapolation:.1f} extrapolation)", {"response": "lr"}
            )
        )
        for name, p in rec.published.items():
            fig.add_trace(
                go.Scatter(
                    x=[target["N"]],
                    y=[p["lr"]],
                    mode="markers",
                    name=f"{name} at the target (published)",
                    marker={"symbol": "x", "size": 10},
                    meta={"kind": "published-target", "law": name},
                    hovertemplate=f"{name}: lr %{{y:.4g}}<br>{p['formula']}<br>{p['inputs']}<extra></extra>",
                )
            )
    return _law_axes(
        fig,
        "N (parameters, as the run table counts them)",
        "optimal learning rate",
        "lr*(N, D): optima per scale, fitted law with its 95% band, target, published laws",
        480,
    )


def batch_law_figure(optima: Sequence, laws, rec=None):
    """B* vs D (tokens): the optima of scales whose batch size was swept (95% bars; open: not bracketed), the
    fitted B*(D) / B*(N, D) / B*(C) with its band, the recommended batch size at the target and the published
    laws. None when there is nothing to draw (no batch sweep, no law, no target)."""
    go = _go()
    swept = [o for o in optima if o.batch_bracketed is not None and "D" in o.scale and o.best_batch_size]
    law = None if laws is None else next((laws.laws[k] for k in ("batch_ND", "batch_D", "batch_C") if k in laws.laws), None)
    if not swept and law is None and rec is None:
        return None
    fig = go.Figure()
    target = rec.target if rec is not None else None
    names = ("batch-size optimum per swept scale", "swept, not bracketed (best tested size)")
    for t in _optima_traces(go, swept, "batch_size", "D", names, {}, labels=True):
        fig.add_trace(t)
    grid = _grid([o.scale["D"] for o in swept] + ([target["D"]] if target else []))
    if law is not None:
        Ns = sorted({o.scale["N"] for o in swept if "N" in o.scale} | ({target["N"]} if target else set()))
        colors = _colors(len(Ns))
        lines = [({"N": N}, {"N": np.full_like(grid, N), "D": grid, "C": 6 * N * grid}, c) for N, c in zip(Ns, colors)]
        if law.variables == ("D",):
            lines = [({}, {"D": grid}, colors[-1])]
        _law_lines(go, fig, law.fit_, law.name, grid, lines, {"response": "batch_size"})
    fig.add_trace(
        go.Scatter(
            x=grid,
            y=steplaw_batch(grid),
            mode="lines",
            name="StepLaw B*(D) (published)",
            line={"dash": "dash", "width": 1.2},
            meta={"kind": "published", "law": "steplaw"},
        )
    )
    if target:
        fig.add_trace(
            go.Scatter(
                x=grid,
                y=deepseek_batch(6 * target["N"] * grid),
                mode="lines",
                name=f"DeepSeek LLM B*(C = 6ND) at N = {target['N']:.3g} (published)",
                line={"dash": "dot", "width": 1.2},
                meta={"kind": "published", "law": "deepseek"},
            )
        )
        fig.add_trace(
            _target_trace(
                go,
                target["D"],
                rec.batch_size,
                f"recommended at the target (x{rec.batch_size.extrapolation:.1f} extrapolation)",
                {"response": "batch_size"},
            )
        )
    return _law_axes(
        fig,
        "D (training tokens)",
        "optimal batch size (tokens)",
        "B*: optima of the batch sweeps, fitted law with its 95% band, target, published laws",
        440,
    )


def loss_law_figure(optima: Sequence, laws, rec=None):
    """The loss at each scale's optimum vs C, the fitted loss law (chinchilla: a line per token budget; compute:
    one line) with its 95% band, the predicted loss at the target, and Hoffmann et al.'s published law at the
    target (trained on other data: hidden until clicked in the legend). None without a loss law or optima."""
    go = _go()
    fit = None if laws is None else laws.loss
    pts = [o for o in optima if o.lr_bracketed and "N" in o.scale and "D" in o.scale and math.isfinite(o.loss_)]
    if fit is None and not pts:
        return None
    fig = go.Figure()
    target = rec.target if rec is not None else None
    Ds = sorted({o.scale["D"] for o in pts} | ({target["D"]} if target else set()))
    colors = dict(zip(Ds, _colors(len(Ds))))
    for D in Ds:
        sel = [o for o in pts if o.scale["D"] == D]
        if sel:
            fig.add_trace(
                go.Scatter(
                    x=[scale_compute(o) for o in sel],
                    y=[o.loss_ for o in sel],
                    mode="markers",
                    text=[_scale_label(o.scale) for o in sel],
                    error_y=_error_bars([o.loss_ for o in sel], [o.loss_interval for o in sel]),
                    name=f"loss at the optimum, D = {D:.3g}",
                    marker={"size": 9, "color": colors[D]},
                    meta={"kind": "optimum", "D": D},
                )
            )
    if fit is not None:
        if fit.law_.variables == ("C",):
            cs = _grid([scale_compute(o) for o in pts] + ([6 * target["N"] * target["D"]] if target else []))
            _law_lines(go, fig, fit, fit.law, cs, [({}, {"C": cs}, "rgb(60, 60, 60)")], {"response": "loss"})
        elif set(fit.law_.variables) <= {"N", "D"}:
            Ns = _grid([o.scale["N"] for o in pts] + ([target["N"]] if target else []))
            for D in Ds:
                _law_lines(
                    go, fig, fit, fit.law, 6 * Ns * D, [({"D": D}, {"N": Ns, "D": np.full_like(Ns, D)}, colors[D])], {"response": "loss"}
                )
    if rec is not None and rec.loss is not None:
        c_t = 6 * target["N"] * target["D"]
        fig.add_trace(
            _target_trace(go, c_t, rec.loss, f"predicted at the target (x{rec.loss.extrapolation:.1f} extrapolation)", {"response": "loss"})
        )
        hoffmann = published("hoffmann")
        fig.add_trace(
            go.Scatter(
                x=[c_t],
                y=hoffmann.predict({"N": target["N"], "D": target["D"]}),
                mode="markers",
                name="Hoffmann et al. 2022 at the target (MassiveText: other data)",
                visible="legendonly",
                marker={"symbol": "x", "size": 10},
                meta={"kind": "published-target", "law": "hoffmann"},
            )
        )
    law_name = "" if fit is None else f" ({fit.law})"
    return _law_axes(
        fig,
        "C (FLOPs, 6ND)",
        "final loss at the optimal learning rate (nats)",
        f"Loss law{law_name}: loss at each scale's optimum, fitted law with its 95% band, target",
        460,
    )


# --------------------------------------------------------------------------- loss curves, isoFLOP


def curves_figure(curves: Sequence, fit=None, prediction=None, target_loss=None, target_steps: int | None = None):
    """Top: observed loss curves (points), the fitted curve law on each (dotted) and the predicted curve under
    the target's schedule with its 95% band; the target's predicted final loss (loss law) at its last step.
    Bottom: the learning rate of every step (the schedules the law sums over)."""
    go = _go()
    from plotly.subplots import make_subplots

    from scaletune.schedules import read_schedule

    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.72, 0.28], vertical_spacing=0.05)
    for c, color in zip(curves, _colors(len(curves))):
        fig.add_trace(
            go.Scatter(
                x=c.steps,
                y=c.loss,
                mode="markers",
                marker={"size": 4, "color": color},
                name=c.name,
                legendgroup=c.name,
                meta={"kind": "observed", "curve": c.name},
            ),
            row=1,
            col=1,
        )
        if fit is not None:
            with np.errstate(all="ignore"):  # the law's terms at a rate of 0 (warm-up start): no point is lost
                p = fit.predict_interval(c.lrs, c.steps[c.steps >= 1])
            fig.add_trace(
                go.Scatter(
                    x=p.steps,
                    y=p.value,
                    mode="lines",
                    line={"color": color, "dash": "dot", "width": 1.5},
                    name=f"{c.name}: {fit.law} law",
                    legendgroup=c.name,
                    showlegend=False,
                    meta={"kind": "law", "curve": c.name},
                ),
                row=1,
                col=1,
            )
        fig.add_trace(
            go.Scatter(
                x=np.arange(len(c.lrs)),
                y=c.lrs,
                mode="lines",
                line={"color": color, "width": 1},
                legendgroup=c.name,
                showlegend=False,
                meta={"kind": "lr", "curve": c.name},
            ),
            row=2,
            col=1,
        )
    if prediction is not None:
        name = f"{fit.law} law under the target's schedule"
        for t in _band_traces(
            go, prediction.steps, prediction.lo, prediction.hi, "rgb(0, 0, 0)", f"{name}: 95% interval", {"kind": "prediction-band"}
        ):
            fig.add_trace(t, row=1, col=1)
        x = prediction.ratios
        fig.add_trace(
            go.Scatter(
                x=prediction.steps,
                y=prediction.value,
                mode="lines",
                line={"color": "black", "width": 2},
                name=f"{name} (x{x['steps_ratio']:.1f} steps, x{x['area_ratio']:.1f} lr area)",
                meta={"kind": "prediction", "schedule": prediction.schedule},
            ),
            row=1,
            col=1,
        )
        lrs = read_schedule(prediction.schedule).lrs()
        fig.add_trace(
            go.Scatter(
                x=np.arange(len(lrs)),
                y=lrs,
                mode="lines",
                line={"color": "black", "width": 1.5},
                name="target's schedule",
                showlegend=False,
                meta={"kind": "lr", "curve": "target"},
            ),
            row=2,
            col=1,
        )
    if target_loss is not None and target_steps:
        fig.add_trace(
            _target_trace(go, target_steps, target_loss, "target: predicted final loss (loss law, its own N)", {"response": "loss"}),
            row=1,
            col=1,
        )
    # The first steps after warm-up sit far above the rest: show from the lowest loss to the 90th percentile.
    lows = [np.min(c.loss) for c in curves] + ([np.min(prediction.lo)] if prediction is not None else [])
    highs = [np.quantile(c.loss, 0.9) for c in curves] + ([np.quantile(prediction.hi, 0.9)] if prediction is not None else [])
    if target_loss is not None and target_steps:
        lows.append(min(target_loss.value, *(v for v in target_loss.interval if math.isfinite(v))))
        highs.append(max(target_loss.value, *(v for v in target_loss.interval if math.isfinite(v))))
    pad = 0.05 * (max(highs) - min(lows) + 1e-9)
    fig.update_xaxes(title_text="step (optimizer updates)", row=2, col=1)
    fig.update_yaxes(title_text="validation loss (nats)", range=[min(lows) - pad, max(highs) + pad], row=1, col=1)
    fig.update_yaxes(title_text="learning rate", row=2, col=1)
    fig.update_layout(height=620, legend={"font": {"size": 10}})
    return fig


def _panel_axes(fig: Any, titles: Sequence[tuple[str, str]]) -> None:
    """A one-row figure of log-x panels: each panel's (x, y) axis titles, the shared height and legend."""
    fig.update_xaxes(type="log")
    for col, (x, y) in enumerate(titles, start=1):
        fig.update_xaxes(title_text=x, row=1, col=col)
        fig.update_yaxes(title_text=y, row=1, col=col)
    fig.update_layout(height=460, legend={"font": {"size": 10}})


def isoflop_figure(res, data: pd.DataFrame):
    """Left: loss vs N per FLOP budget with the interpolated optimum and its 95% interval. Right: N*(C) and
    D*(C) with their power-law fits and 95% bands."""
    go = _go()
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=["isoFLOP curves: loss vs N per budget", "compute-optimal allocation"])
    budgets = sorted(data["C"].unique())
    for budget, color in zip(budgets, _colors(len(budgets))):
        grp = data[data["C"] == budget].sort_values("N")
        name = f"C = {budget:.3g}"
        fig.add_trace(
            go.Scatter(
                x=grp["N"],
                y=grp["loss"],
                mode="lines+markers",
                marker={"size": 5, "color": color},
                line={"width": 1, "color": color},
                name=name,
                legendgroup=name,
                meta={"kind": "runs", "C": float(budget)},
            ),
            row=1,
            col=1,
        )
        row = res.optima[res.optima["C"] == budget]
        if len(row):
            r = row.iloc[0]
            star = _optimum_star(go, r.N_star, r.loss_star, (r.N_star_lo, r.N_star_hi), name, color, {"C": float(budget)})
            fig.add_trace(star, row=1, col=1)
    cs = np.geomspace(min(budgets), max(budgets) * 10, 80)
    for col, fit, color, what in (("N_star", res.n_fit, "rgb(31, 119, 180)", "N*"), ("D_star", res.d_fit, "rgb(255, 127, 14)", "D*")):
        fig.add_trace(
            go.Scatter(
                x=res.optima["C"],
                y=res.optima[col],
                mode="markers",
                marker={"color": color, "size": 8},
                name=f"{what} per budget",
                meta={"kind": "allocation", "quantity": col},
            ),
            row=1,
            col=2,
        )
        fig.add_trace(
            go.Scatter(
                x=cs,
                y=fit.predict({"C": cs}),
                mode="lines",
                line={"color": color},
                name=f"{what} = k C^{fit.params_['c_C']:.3f}",
                meta={"kind": "law", "quantity": col},
            ),
            row=1,
            col=2,
        )
        band = _law_band(fit, {"C": cs})
        if band is not None:
            for t in _band_traces(
                go, cs, band[0], band[1], color, f"{what}: 95% band", {"kind": "band", "quantity": col}, showlegend=False
            ):
                fig.add_trace(t, row=1, col=2)
    fig.update_yaxes(type="log", row=1, col=2)
    _panel_axes(fig, [("N (parameters)", "loss (nats)"), ("C (FLOPs)", "N* (parameters), D* (tokens)")])
    return fig


# --------------------------------------------------------------------------- stability


def stability_figure(report):
    """Left: min(final loss, L_ref) vs learning rate per scale (a line style per intervention arm), the stable
    range's edge of each scale (open diamond on the curve), runs the detectors flag (red). Middle: LR
    sensitivity vs N; right: the stable-range edge vs N; each with 95% intervals, the trend in ln N and its
    prediction at the target. Draws what `scaletune.stability.analyse_stability` computed."""
    go = _go()
    from plotly.subplots import make_subplots

    fig = make_subplots(
        rows=1,
        cols=3,
        horizontal_spacing=0.08,
        subplot_titles=[
            f"capped loss vs lr; diamond: stable-range edge ({report.tolerance:.0%})",
            "LR sensitivity vs N",
            "stable-range edge vs N",
        ],
    )
    dashes = ["solid", "dash", "dot", "dashdot"]
    n_scales = max(len(a.scales) for a in report.arms)
    for a, arm in enumerate(report.arms):
        tag = ", ".join(f"{k}={v}" for k, v in arm.values.items())
        for s, color in zip(arm.scales, _colors(n_scales)):
            name = _scale_label(s.scale) + (f" [{tag}]" if tag else "")
            meta = {"scale": dict(s.scale), "arm": dict(arm.values)}
            fig.add_trace(
                go.Scatter(
                    x=list(s.lrs),
                    y=list(s.capped),
                    mode="lines+markers",
                    name=name,
                    legendgroup=name,
                    line={"color": color, "dash": dashes[a % 4], "width": 1.5},
                    marker={"size": 5},
                    meta={**meta, "kind": "capped"},
                ),
                row=1,
                col=1,
            )
            y = float(np.interp(np.log(s.edge), np.log(s.lrs), s.capped))
            diamond = {"symbol": "diamond-open", "size": 12, "color": color, "line": {"width": 2}}
            edge = _curve_marker(go, s.edge, y, name, "edge", diamond, {**meta, "kind": "edge", "bracketed": s.edge_bracketed})
            fig.add_trace(edge, row=1, col=1)
        for col, key in ((2, "sensitivity"), (3, "edge")):
            use = [s for s in arm.scales if "N" in s.scale and (key == "sensitivity" or s.edge_bracketed)]
            if not use:
                continue
            color = f"rgb({60 + 80 * (a % 3)}, {90 + 50 * (a % 2)}, {170 - 60 * (a % 3)})"
            val = [s.sensitivity if key == "sensitivity" else s.edge for s in use]
            iv = [s.sensitivity_interval if key == "sensitivity" else s.edge_interval for s in use]
            fig.add_trace(
                go.Scatter(
                    x=[s.scale["N"] for s in use],
                    y=val,
                    mode="markers",
                    name=f"{key} per scale" + (f" [{tag}]" if tag else ""),
                    marker={"size": 9, "color": color},
                    meta={"kind": f"{key}-vs-N", "arm": dict(arm.values)},
                    error_y=_error_bars(val, iv),
                ),
                row=1,
                col=col,
            )
            trend = arm.sensitivity_trend if key == "sensitivity" else arm.edge_trend
            if trend is None:
                continue
            right = report.target["N"] if report.target else max(s.scale["N"] for s in use)
            grid = _grid([s.scale["N"] for s in use] + [right])
            line = trend.intercept + trend.slope * np.log(grid)
            fig.add_trace(
                go.Scatter(
                    x=grid,
                    y=line if key == "sensitivity" else np.exp(line),
                    mode="lines",
                    name=f"{key} trend: slope {trend.slope:+.3f} per ln N",
                    line={"color": color},
                    meta={"kind": f"{key}-trend", "arm": dict(arm.values)},
                ),
                row=1,
                col=col,
            )
            p = trend.prediction
            if p is not None:
                fig.add_trace(
                    go.Scatter(
                        x=[report.target["N"]],
                        y=[p.value],
                        mode="markers",
                        error_y=_error(p.value, p.interval),
                        name=f"{key} at the target (x{p.extrapolation:.1f} in N)",
                        marker={"symbol": "square-open", "size": 11, "color": color, "line": {"width": 2}},
                        meta={"kind": f"{key}-target", "arm": dict(arm.values)},
                    ),
                    row=1,
                    col=col,
                )
    flagged = [f for f in report.flags if f.flagged]
    if flagged:
        fig.add_trace(
            go.Scatter(
                x=[f.lr for f in flagged],
                y=[f.loss if math.isfinite(f.loss) else report.l_ref for f in flagged],
                mode="markers",
                name="flagged by a detector (attention / output logits)",
                text=[f.run_id for f in flagged],
                meta={"kind": "flagged"},
                marker={"symbol": "circle-open", "size": 13, "color": "red", "line": {"width": 2}},
            ),
            row=1,
            col=1,
        )
    fig.add_hline(y=report.l_ref, line={"dash": "dot", "color": "grey"}, row=1, col=1)
    fig.update_yaxes(type="log", row=1, col=3)
    _panel_axes(
        fig,
        [
            ("learning rate", "min(final loss, L_ref) (nats)"),
            ("N (parameters)", "LR sensitivity (nats)"),
            ("N (parameters)", "edge learning rate"),
        ],
    )
    return fig
