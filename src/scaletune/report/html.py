"""The HTML report of a study: one self-contained page, interactive figures, readable offline.

The report draws what the analyses computed; it never fits anything. A caller (the `scaletune report`
command, the demo) runs the analyses and hands their results over in a `ReportData`:

    from scaletune.report.html import ReportData, write_report
    data = ReportData(source="runs.csv", runs=runs, optima=optima, laws=rec.laws, recommendation=rec)
    write_report(data, "report.html")

Sections: sweeps, laws, recommendation, loss curves, isoFLOP, stability, provenance. A section whose inputs
are missing says what is missing (``ReportData.missing[key]``, else a generic line) and the rest is written.
plotly's JavaScript is embedded once in the page (no CDN): the file opens without a network.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any, Callable, Sequence

import pandas as pd

from scaletune.errors import ScaletuneError

SECTIONS = {
    "sweeps": "Sweeps: loss vs learning rate per scale",
    "laws": "Laws: lr*(N, D), B*, the loss law",
    "recommendation": "Recommendation at the target",
    "curves": "Loss curves",
    "isoflop": "IsoFLOP curves",
    "stability": "Stability",
    "provenance": "Provenance",
}


@dataclass
class ReportData:
    """Everything the report shows, already computed. ``missing`` maps a section key (see `SECTIONS`) to one
    line saying what that section lacks and why (shown in place of it); ``provenance`` maps a label to a value
    (versions, data hash, command)."""

    source: str
    runs: pd.DataFrame | None = None
    optima: Sequence = ()
    laws: Any = None  # scaletune.hparams.HparamLaws
    recommendation: Any = None  # scaletune.hparams.Recommendation
    curves: Sequence = ()  # scaletune.curves.Curve of one scale
    curve_scale: str = ""  # which scale the curves are, e.g. "N=8.3e+04, D=8.19e+03"
    curve_fit: Any = None  # scaletune.curves.CurveFit fitted on ``curves``
    curve_prediction: Any = None  # CurvePrediction under the target's schedule
    isoflop: Any = None  # scaletune.laws.IsoflopResult
    isoflop_data: pd.DataFrame | None = None  # the (C, N, D, loss) rows it was computed from
    stability: Any = None  # scaletune.stability.StabilityReport
    missing: dict[str, str] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)


@dataclass
class Section:
    """One section of the page: its figures (plotly), HTML tables and notes, or what is missing."""

    key: str
    title: str
    figures: list = field(default_factory=list)
    tables: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    missing: str | None = None


def fmt(x: Any, digits: int = 4) -> str:
    """A number with ``digits`` significant digits ('-' for None / NaN); anything else as text."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return str(x)
    return f"{x:.{digits}g}"


def table_html(columns: Sequence[str], rows: Sequence[Sequence[Any]], caption: str = "") -> str:
    """A plain HTML table; numbers formatted with `fmt` and right-aligned, text escaped."""
    head = "".join(f"<th>{escape(str(c))}</th>" for c in columns)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="{"num" if isinstance(v, (int, float)) and not isinstance(v, bool) else "txt"}">{escape(fmt(v))}</td>' for v in r
        )
        + "</tr>"
        for r in rows
    )
    cap = f"<caption>{escape(caption)}</caption>" if caption else ""
    return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


# --------------------------------------------------------------------------- the recommendation as data


def recommendation_rows(rec) -> list[dict[str, Any]]:
    """One dict per recommended quantity: value, 95% interval (lo, hi; NaN where none), extrapolation factor
    (None where it does not apply), method (what produced it) and its backtest score (held-out loss penalty
    in % of the optimum loss; NaN where no backtest chose it)."""
    rows = []

    def pred(quantity: str, p) -> None:
        from scaletune.hparams.describe import describe

        details = getattr(p, "details", None) or {}  # a backtest's score, where a candidate rule was chosen by one
        rows.append(
            {
                "quantity": quantity,
                "value": p.value,
                "lo": p.interval[0],
                "hi": p.interval[1],
                "extrapolation": p.extrapolation,
                "method": describe(p),
                "backtest_score_percent": details.get("held_out_score_percent", math.nan),
            }
        )

    pred("learning rate" + (f" ({rec.param} base rate)" if rec.param in ("mup", "completep") else ""), rec.lr)
    pred("batch size (tokens)", rec.batch_size)
    if rec.batch_sequences is not None:
        pred(f"batch size (sequences of {rec.seq_len} tokens)", rec.batch_sequences)
    w = rec.warmup
    lo, hi = (w.get("steps_interval") or [math.nan, math.nan])[:2]
    rows.append(
        {
            "quantity": "warm-up (steps)",
            "value": w.get("steps"),
            "lo": lo,
            "hi": hi,
            "extrapolation": None,
            "method": f"{w.get('fraction', 0):.1%} of {rec.steps} steps; {w.get('source')}",
            "backtest_score_percent": math.nan,
        }
    )
    rows.append(
        {
            "quantity": "schedule",
            "value": rec.schedule,
            "lo": math.nan,
            "hi": math.nan,
            "extrapolation": None,
            "method": "as in the proxies",
            "backtest_score_percent": math.nan,
        }
    )
    rows.append(
        {
            "quantity": "parameterisation",
            "value": rec.param,
            "lo": math.nan,
            "hi": math.nan,
            "extrapolation": None,
            "method": "as in the proxies",
            "backtest_score_percent": math.nan,
        }
    )
    if rec.loss is not None:
        pred("final loss (nats/token)", rec.loss)
    return rows


def law_rows(laws, interval: Callable[[Sequence[float]], str], point: Callable[[dict[str, Any]], str]) -> list[dict[str, Any]]:
    """One dict per fitted hparams law (shared by the report and ``scaletune recommend``): name, formula,
    coefficient k and its interval, the exponents with intervals as text (each interval written by
    ``interval``), scales used, and the extrapolation check as text (see `_holdout_check`)."""
    rows = []
    for name, law in laws.laws.items():
        k, kiv = law.coefficient
        rows.append(
            {
                "law": name,
                "formula": law.formula,
                "k": k,
                "k_interval": kiv,
                "scales": law.scales,
                "exponents": ", ".join(f"{v}: {e:+.3f} {interval(iv)}" for v, (e, iv) in law.exponents.items()),
                "check": _holdout_check(law, point),
            }
        )
    return rows


def _holdout_check(law, point: Callable[[dict[str, Any]], str]) -> str:
    """A fitted law's extrapolation check as one cell: its largest held-out scale written by ``point`` (which
    gets the held-out point's dict: predicted, observed, ratio, covered), why the check was skipped, or "-"."""
    if not law.holdout:
        return "-"
    if law.holdout.get("points"):
        return point(law.holdout["points"][0])
    return str(law.holdout.get("skipped", "-"))


def _records(items: Any) -> list[dict[str, Any]]:
    """Dataclasses / objects with to_dict / dicts as flat records of their scalar fields (for a table)."""
    out = []
    for item in items or ():
        d = item.to_dict() if hasattr(item, "to_dict") else dataclasses.asdict(item) if dataclasses.is_dataclass(item) else dict(item)
        out.append({k: v for k, v in d.items() if isinstance(v, (str, int, float, bool)) or v is None})
    return out


def _records_table(items: Any, caption: str) -> str:
    records = _records(items)
    columns = list(dict.fromkeys(k for r in records for k in r))
    return table_html(columns, [[r.get(c) for c in columns] for r in records], caption) if records else ""


# --------------------------------------------------------------------------- sections


# What each section needs (a test on the report data) and what it says when that is missing; the caller of
# `build_report` may record a better reason in ``data.missing``.
_NEEDS: dict[str, tuple[Callable[[ReportData], bool], str]] = {
    "sweeps": (lambda d: d.runs is not None and bool(d.optima), "no run table with learning-rate sweeps"),
    "laws": (lambda d: d.laws is not None, "no laws: they are fitted on the optima of a sweep"),
    "recommendation": (lambda d: d.recommendation is not None, "no target given (--target N=...,D=...)"),
    "curves": (lambda d: bool(d.curves), "no loss curves with this source"),
    "isoflop": (lambda d: d.isoflop is not None and d.isoflop_data is not None, "no isoFLOP analysis"),
    "stability": (lambda d: d.stability is not None, "no stability analysis"),
}


def _sweeps(data: ReportData, s: Section) -> None:
    from scaletune.report.plotly_figures import sweeps_figure

    s.figures.append(sweeps_figure(data.runs, data.optima))
    bad = [o for o in data.optima if not o.bracketed]
    s.notes += [f"{', '.join(f'{k}={v:.3g}' for k, v in o.scale.items())}: not bracketed ({o.message}); not used by the laws" for o in bad]


def _laws(data: ReportData, s: Section) -> None:
    from scaletune.report.plotly_figures import batch_law_figure, loss_law_figure, lr_law_figure

    rec = data.recommendation
    for make in (lr_law_figure, batch_law_figure, loss_law_figure):
        fig = make(list(data.optima), data.laws, rec)
        if fig is not None:
            s.figures.append(fig)
    laws = law_rows(
        data.laws,
        lambda iv: f"[{iv[0]:+.3f}, {iv[1]:+.3f}]",
        lambda p: f"predicted {p['predicted']:.4g} vs observed {p['observed']:.4g} ({'covered' if p['covered'] else 'NOT covered'})",
    )
    rows = [
        [r["law"], r["formula"], r["k"], f"[{fmt(r['k_interval'][0])}, {fmt(r['k_interval'][1])}]", r["exponents"], r["scales"], r["check"]]
        for r in laws
    ]
    if data.laws.loss is not None:
        f = data.laws.loss
        params = ", ".join(
            f"{p}: {v:.4g}" + (f" [{f.intervals[p][0]:.4g}, {f.intervals[p][1]:.4g}]" if p in f.intervals else "")
            for p, v in f.params_.items()
        )
        rows.append(["loss", f"{f.law}: {f.law_.formula}", math.nan, "", params, f.diagnostics.get("n_points", "-"), "-"])
    if rows:
        s.tables.append(
            table_html(
                ["law", "formula", "k", "k 95%", "exponents / parameters [95%]", "scales", "largest scale held out"],
                rows,
                "Laws fitted on the optima of the sweep (95% two-level bootstrap intervals)",
            )
        )
    s.notes += list(data.laws.notes)


def _recommendation(data: ReportData, s: Section) -> None:
    rec = data.recommendation
    head = ", ".join(f"{k}={fmt(v)}" for k, v in rec.target.items())
    s.tables.append(
        table_html(
            ["quantity", "value", "95% lo", "95% hi", "extrapolation x", "backtest score %", "method"],
            [
                [r["quantity"], r["value"], r["lo"], r["hi"], r["extrapolation"], r["backtest_score_percent"], r["method"]]
                for r in recommendation_rows(rec)
            ],
            f"Recommended at {head} (extrapolation x: the largest factor beyond the fitted range, 1 = inside)",
        )
    )
    s.tables.append(
        table_html(
            ["law", "lr", "lr / recommended", "inside our interval", "batch (tokens)", "batch / recommended", "formula", "inputs"],
            [
                [
                    name,
                    p["lr"],
                    p["lr_ratio_to_recommended"],
                    "yes" if p["lr_inside_interval"] else "no",
                    p["batch_size"],
                    p["batch_ratio_to_recommended"],
                    p["formula"],
                    p["inputs"],
                ]
                for name, p in rec.published.items()
            ],
            "What the published laws would set at the same target (fitted on standard-parameterised models)",
        )
    )
    candidates = getattr(getattr(rec, "analysis", None), "candidates", None)
    if candidates:
        s.tables.append(
            _records_table(
                candidates,
                "Candidate rules scored by backtest (score: mean held-out loss penalty, % of the optimum loss; chosen: used above)",
            )
        )
    s.notes += [n for n in rec.notes if n not in rec.laws.notes]  # the laws' own notes are under Laws


def _curves(data: ReportData, s: Section) -> None:
    from scaletune.report.plotly_figures import curves_figure

    rec = data.recommendation
    s.figures.append(
        curves_figure(
            data.curves, data.curve_fit, data.curve_prediction, None if rec is None else rec.loss, None if rec is None else rec.steps
        )
    )
    if data.curve_fit is not None:
        f = data.curve_fit
        s.notes.append(
            f"{f.law} law fitted on the {len(data.curves)} curves of {data.curve_scale} ("
            + ", ".join(f"{p} = {v:.4g}" for p, v in f.params_.items())
            + ")"
        )
    if data.curve_prediction is not None:
        p = data.curve_prediction
        s.notes.append(
            f"under the target's schedule {p.schedule}: final loss {p.final_loss:.4f} "
            f"[{p.final_interval[0]:.4f}, {p.final_interval[1]:.4f}] at this scale's parameters "
            f"({p.ratios['steps_ratio']:.2f}x the fitted steps; interval: {p.describe_interval()})"
        )
    if "curves" in data.missing:
        s.notes.append(data.missing["curves"])


def _isoflop(data: ReportData, s: Section) -> None:
    from scaletune.report.plotly_figures import isoflop_figure

    res = data.isoflop
    s.figures.append(isoflop_figure(res, data.isoflop_data))
    lo, hi = res.n_fit.intervals.get("c_C", (math.nan, math.nan))
    dlo, dhi = res.d_fit.intervals.get("c_C", (math.nan, math.nan))
    s.tables.append(
        table_html(
            ["quantity", "value", "95% lo", "95% hi"],
            [["a in N* = k C^a", res.a, lo, hi], ["b in D* = k' C^b", res.b, dlo, dhi]],
            f"{len(res.optima)} budgets used, {len(res.dropped)} dropped",
        )
    )
    s.notes += list(res.warnings)


def _stability(data: ReportData, s: Section) -> None:
    from scaletune.report.plotly_figures import stability_figure

    rep = data.stability
    s.figures.append(stability_figure(rep))
    rows = []
    for arm in rep.arms:
        tag = ", ".join(f"{k}={v}" for k, v in arm.values.items()) or "sweep"
        for sc in arm.scales:
            rows.append(
                [
                    tag,
                    ", ".join(f"{k}={v:.4g}" for k, v in sc.scale.items()),
                    sc.sensitivity,
                    sc.sensitivity_interval[0],
                    sc.sensitivity_interval[1],
                    sc.edge,
                    "yes" if sc.edge_bracketed else "no (a bound)",
                    sc.n_failed,
                ]
            )
        for trend in (arm.sensitivity_trend, arm.edge_trend):
            p = None if trend is None else trend.prediction
            if p is not None:
                rows.append(
                    [
                        tag,
                        f"target ({trend.quantity}, x{p.extrapolation:.1f} in N)",
                        p.value if trend.quantity == "sensitivity" else math.nan,
                        p.interval[0] if trend.quantity == "sensitivity" else math.nan,
                        p.interval[1] if trend.quantity == "sensitivity" else math.nan,
                        p.value if trend.quantity == "edge" else math.nan,
                        p.method,
                        "",
                    ]
                )
    s.tables.append(
        table_html(
            ["arm", "scale", "LR sensitivity (nats)", "95% lo", "95% hi", "stable-range edge lr", "edge bracketed / method", "failed runs"],
            rows,
            f"LR sensitivity (Wortsman et al. 2023; losses capped at L_ref = {rep.l_ref:.4g}, {rep.l_ref_source}) "
            f"and the stable range (within {rep.tolerance:.0%} of the best loss)",
        )
    )
    n_flagged = sum(f.flagged for f in rep.flags)
    s.notes.append(
        f"{n_flagged} of {len(rep.flags)} runs flagged by the attention-logit / output-logit detectors; signals "
        f"present: {', '.join(rep.signals_present) or 'none'}; missing: {', '.join(rep.signals_missing) or 'none'}"
    )
    s.notes += list(rep.skipped) + list(rep.notes)


def _provenance(data: ReportData, s: Section) -> None:
    s.tables.append(table_html(["", ""], [[k, str(v)] for k, v in data.provenance.items()]))


def build_sections(data: ReportData) -> list[Section]:
    """The report's sections, in page order, with their plotly figures (tests read the numbers from these)."""
    sections = []
    for key, fill in (
        ("sweeps", _sweeps),
        ("laws", _laws),
        ("recommendation", _recommendation),
        ("curves", _curves),
        ("isoflop", _isoflop),
        ("stability", _stability),
        ("provenance", _provenance),
    ):
        s = Section(key, SECTIONS[key])
        present, missing = _NEEDS.get(key, (lambda d: True, ""))
        if present(data):
            fill(data, s)
        else:
            s.missing = data.missing.get(key, missing)
        sections.append(s)
    return sections


# --------------------------------------------------------------------------- the page

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto; max-width: 1200px; padding: 0 1.5em 3em; color: #222; }
h1 { font-size: 1.5em; margin-top: 1em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
nav a { margin-right: 1em; } .missing { color: #8a4b00; background: #fff4e0; padding: .5em .8em; border-left: 3px solid #e09000; }
table { border-collapse: collapse; margin: 1em 0; font-size: .85em; } caption { text-align: left; font-weight: 600; padding: .3em 0; }
th, td { border-bottom: 1px solid #e4e4e4; padding: .25em .6em; vertical-align: top; } th { text-align: left; background: #f6f6f6; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; } ul.notes { font-size: .85em; color: #444; }
.figure { margin: 1em 0; }
"""


def render_html(data: ReportData, sections: list[Section] | None = None) -> str:
    """The whole page as one string (plotly's JavaScript inline)."""
    import plotly.io as pio
    from plotly.offline import get_plotlyjs

    sections = build_sections(data) if sections is None else sections
    parts = []
    for s in sections:
        body = [f'<section id="{s.key}"><h2>{escape(s.title)}</h2>']
        if s.missing is not None:
            body.append(f'<p class="missing" data-missing="{s.key}">{escape(s.missing)}</p>')
        for i, fig in enumerate(s.figures):
            div = pio.to_html(
                fig, full_html=False, include_plotlyjs=False, div_id=f"fig-{s.key}-{i}", config={"displaylogo": False, "responsive": True}
            )
            body.append(f'<div class="figure">{div}</div>')
        body += s.tables
        if s.notes:
            body.append('<ul class="notes">' + "".join(f"<li>{escape(n)}</li>" for n in s.notes) + "</ul>")
        parts.append("\n".join(body) + "</section>")
    nav = " ".join(f'<a href="#{s.key}">{escape(s.title.split(":")[0])}</a>' for s in sections)
    title = f"scaletune report: {data.source}"
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
        f'<style>{_CSS}</style><script type="text/javascript">{get_plotlyjs()}</script></head>'
        f"<body><h1>{escape(title)}</h1><nav>{nav}</nav>\n" + "\n".join(parts) + "\n</body></html>\n"
    )


def check_writable(path: str | Path) -> Path:
    """Raise a `ScaletuneError` naming ``path`` when a file cannot be written there (checked before the
    analyses run, so that a long analysis does not end in a lost report). Creates missing parent folders."""
    import tempfile

    path = Path(path)
    if path.is_dir():
        raise ScaletuneError(f"{path}: is a folder; give the report's file name, e.g. {path / 'report.html'}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=".scaletune-"):
            pass
    except OSError as exc:
        raise ScaletuneError(f"{path}: cannot write the report there ({exc.strerror or exc})") from None
    return path


def write_report(data: ReportData, path: str | Path, sections: list[Section] | None = None) -> Path:
    """Render the report (``sections``: already built from ``data``) and write it to ``path``, one
    self-contained HTML file; return the path."""
    path = check_writable(path)
    text = render_html(data, sections)
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ScaletuneError(f"{path}: cannot write the report ({exc.strerror or exc})") from None
    return path
