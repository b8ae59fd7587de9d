"""`scaletune stability`: LR sensitivity, stable range, trends in N, interventions and instability flags."""

from __future__ import annotations

import click

from scaletune.cli._tables import print_result
from scaletune.cli.hparams_cmds import fmt, load_runs, source_options


def _curves(source: str, curves: str | None, storage: str | None):
    """The loss curves (with the stability signals): --curves FILE, else a study's stored curves, else None."""
    from pathlib import Path

    if curves:
        from scaletune.runtable import read_table

        return read_table(curves)
    if Path(source).suffix.lower() == ".toml" or (storage and not Path(source).exists()):
        from scaletune.study import export_curves, load_study_config

        study = load_study_config(source) if Path(source).suffix.lower() == ".toml" else source
        df = export_curves(study, storage)
        return None if df.empty else df
    return None


def _iv(iv) -> str:
    """A compact interval (two significant digits) for 80-column tables."""
    return f"[{fmt(iv[0], 2)}, {fmt(iv[1], 2)}]" if all(v == v for v in iv) else "-"


def _label(d: dict) -> str:
    return ", ".join(f"{k}={fmt(v) if isinstance(v, float) else v}" for k, v in d.items())


def print_report(report, console) -> None:
    from rich.table import Table

    for arm in report.arms:
        head = f" ({_label(arm.values)})" if arm.values else ""
        table = Table(title=f"LR sensitivity and stable range per scale{head}", title_justify="left")
        for col in ("scale", "sensitivity", "95%", "lr edge", "95%", "failed"):
            table.add_column(col, justify="left" if col == "scale" else "right")
        for s in arm.scales:
            shown = {k: v for k, v in s.scale.items() if k == "N"} or s.scale
            table.add_row(
                _label(shown),
                f"{s.sensitivity:.4f}",
                _iv(s.sensitivity_interval),
                fmt(s.edge) if s.edge_bracketed else f">={fmt(s.edge)}",
                _iv(s.edge_interval) if s.edge_bracketed else "top",
                f"{s.n_failed}/{s.n_runs}",
            )
        console.print(table)
        used = [t for t in (arm.sensitivity_trend, arm.edge_trend) if t is not None]
        counts = ", ".join(f"{t.quantity}: {t.scales} scales" + (f" (+{t.excluded} open)" if t.excluded else "") for t in used)
        trends = Table(
            title=f"Trends in ln N{head}"
            + (f", at N={fmt(report.target['N'])}" if report.target else "")
            + (f" ({counts})" if counts else ""),
            title_justify="left",
        )
        for col in ("quantity", "slope", "95%", "at target", "95%", "extrap."):
            trends.add_column(col, justify="left" if col == "quantity" else "right")
        for name, tr in (("sensitivity", arm.sensitivity_trend), ("lr edge", arm.edge_trend)):
            if tr is None:
                trends.add_row(name, "-", "-", "-", "-", "-")
                continue
            p = tr.prediction
            trends.add_row(
                name,
                f"{tr.slope:+.3f}",
                _iv(tr.slope_interval),
                "-" if p is None else fmt(p.value),
                "-" if p is None else _iv(p.interval),
                "-" if p is None else f"x{p.extrapolation:.1f}",
            )
        console.print(trends)
    if report.interventions:
        comp = Table(title=f"Interventions ({', '.join(report.interventions)}): mean sensitivity on shared scales", title_justify="left")
        for col in ("arm", "mean sens.", "95%", "at target", "95%"):
            comp.add_column(col, justify="left" if col == "arm" else "right")
        for arm in report.arms:
            p = arm.sensitivity_trend.prediction if arm.sensitivity_trend else None
            comp.add_row(
                _label(arm.values),
                f"{arm.mean_sensitivity:.4f}",
                _iv(arm.mean_sensitivity_interval),
                "-" if p is None else f"{p.value:.4f}",
                "-" if p is None else _iv(p.interval),
            )
        console.print(comp)
    flagged = [f for f in report.flags if f.flagged]
    n_attn = sum(f.attention.flagged for f in report.flags)
    n_out = sum(f.output.flagged for f in report.flags)
    console.print(f"detectors: {n_attn} run(s) with attention-logit growth, {n_out} with output-logit divergence (of {len(report.flags)})")
    for f in flagged[:10]:
        what = [
            f"attention {'+'.join(f.attention.criteria)} (max {fmt(f.attention.value)})" if f.attention.flagged else "",
            f"output {'+'.join(f.output.criteria)} (min z {fmt(f.output.value)})" if f.output.flagged else "",
        ]
        console.print(f"  {f.run_id} lr {fmt(f.lr)} {f.status}: " + "; ".join(w for w in what if w))
    console.print(f"L_ref = {report.l_ref:.4f} nats ({report.l_ref_source}); stable range within {report.tolerance:.1%} of the best loss")
    if report.signals_missing:
        console.print(
            "missing signals: "
            + ", ".join(report.signals_missing)
            + (" (the detectors need curve:attn_logit_max / curve:z_mean or the run fields)" if not report.signals_present else "")
        )
    for s in report.skipped:
        console.print(f"skipped: {s}")
    for n in report.notes:
        console.print(f"note: {n}")


@click.command("stability")
@click.argument("source", metavar="(STUDY.toml | DATA)")
@click.option("--target", help="Target scale, e.g. N=1e9,D=2e10 (N as the table counts it): trends predicted there.")
@click.option("--curves", type=click.Path(dir_okay=False), help="Curves file (run_id, step, signals...) for DATA.")
@source_options
@click.option("--by", help="Columns that define a scale (default: rung for a study export, else N,D).")
@click.option(
    "--l-ref",
    "l_ref",
    type=float,
    help="Reference loss capping diverged runs (default: untrained loss from the curves, else the largest finite loss).",
)
@click.option("--tolerance", type=float, default=0.01, show_default=True, help="Stable range: fraction of the best loss.")
@click.option("--bootstrap", type=int, default=500, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document instead of tables.")
@click.option("--plot", type=click.Path(dir_okay=False), help="Write the figure (PNG/PDF/SVG).")
def stability_cmd(source, target, curves, mapping, storage, by, l_ref, tolerance, bootstrap, seed, as_json, plot):
    """LR sensitivity (Wortsman et al. 2023) and the stable learning-rate range per scale, their trends in N and
    the prediction at a target, intervention comparisons (qk_norm, z_loss, warmup, eps, weight_decay, param)
    and attention-logit / output-logit instability flags."""
    from scaletune.runtable import parse_point
    from scaletune.stability import analyse_stability

    runs = load_runs(source, mapping, storage)
    curve_df = _curves(source, curves, storage)
    report = analyse_stability(
        runs,
        curve_df,
        target=parse_point(target) if target else None,
        by=by.split(",") if by else None,
        l_ref=l_ref,
        tolerance=tolerance,
        bootstrap=bootstrap,
        seed=seed,
    )
    if plot:
        from scaletune.report.stability_plots import plot_stability

        plot_stability(report, plot)
    print_result(report, as_json, print_report, f"figure: {plot}" if plot else None)


COMMANDS: list = [stability_cmd]
