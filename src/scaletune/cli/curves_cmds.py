"""`scaletune curves fit|predict|evaluate` and `scaletune schedule compare|optimise`: loss curves under LR schedules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import numpy as np

from scaletune._json import dumps
from scaletune.cli._tables import choice_option
from scaletune.errors import ScaletuneError


def _fmt_interval(lo: float, hi: float) -> str:
    return f"[{lo:.4g}, {hi:.4g}]"


class LawChoice(click.Choice):
    """``--law``: the registered curve laws, read when the option is used (so laws registered later count)."""

    def __init__(self) -> None:
        super().__init__(())

    @property
    def choices(self) -> tuple[str, ...]:
        from scaletune.curves.laws import curve_laws

        return curve_laws()

    @choices.setter
    def choices(self, value: Any) -> None:  # click's constructor sets it; the registry is the source
        pass


def _load_curves(paths, schedules, schedule_file, runs, mapping, max_step):
    from scaletune.curves.data import read_curves
    from scaletune.runtable import read_table

    if schedules and len(schedules) not in (1, len(paths)):
        raise ScaletuneError(f"give one --schedule for all curve files or one per file ({len(paths)} files, {len(schedules)} schedules)")
    by_name = {}
    if schedule_file:
        table = read_table(schedule_file)
        for col in ("curve", "schedule"):
            if col not in table.columns:
                raise ScaletuneError(f"{schedule_file}: missing column {col!r} (a schedules file has columns curve, schedule)")
        by_name = {str(c): str(s) for c, s in zip(table["curve"], table["schedule"])}
    run_table = read_table(runs) if runs else None
    curves = []
    for i, path in enumerate(paths):
        sched = schedules[i if len(schedules) > 1 else 0] if schedules else None
        if sched is None and by_name:
            stem = Path(path).stem
            sched = {**by_name, "*": by_name[stem]} if stem in by_name else by_name
        curves += read_curves(path, sched, mapping=mapping, runs=run_table, max_step=max_step)
    return curves


@click.group("curves")
def curves_group() -> None:
    """Fit loss-curve laws under learning-rate schedules and predict new curves."""


@curves_group.command("fit")
@click.argument("curve_files", nargs=-1, required=True, type=click.Path())
@click.option("--law", type=LawChoice(), default="multipower", show_default=True, help="A registered curve law.")
@click.option("--schedule", "schedules", multiple=True, help="Schedule spec or step,lr CSV: once for all files or once per file, in order.")
@click.option("--schedules", "schedule_file", type=click.Path(), help="CSV with columns curve, schedule (curve = file stem or run_id).")
@click.option("--runs", type=click.Path(), help="Run table whose run_id/schedule columns give each curve's schedule spec.")
@click.option("--map", "mapping", help="Column mapping canonical=source, e.g. loss=train_loss,step=iter.")
@click.option("--max-step", type=int, help="Drop points at steps >= this (e.g. a log's final-step entry).")
@choice_option(
    "--method",
    ["auto", "luo2025", "lbfgs"],
    help="luo2025: the published early-stopped AdamW protocol (multipower's default under auto); lbfgs: converged multi-start L-BFGS-B.",
)
@click.option(
    "--bootstrap",
    "--boot",
    "bootstrap",
    type=int,
    default=200,
    show_default=True,
    help="Bootstrap draws of whole curves for the intervals (each distinct draw is fitted once).",
)
@choice_option(
    "--resample", ["curves", "blocks"], help="Bootstrap unit: whole curves, or blocks of points within each curve (the earlier default)."
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--cv/--no-cv",
    default=True,
    show_default=True,
    help="Refit leaving each curve out: the law error added to intervals, and the protocol choice under --method auto.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the fit as JSON.")
@click.option("--out", type=click.Path(), help="Write the fit JSON here (input of `curves predict`, `schedule ...`).")
@click.option("--plot", type=click.Path(), help="Write a figure of the curves and the fitted law (PNG/PDF/SVG).")
def fit_cmd(
    curve_files, law, schedules, schedule_file, runs, mapping, max_step, method, bootstrap, resample, seed, cv, as_json, out, plot
) -> None:
    """Fit LAW to CURVE_FILES (CSV/Parquet/JSONL with step, loss[, lr][, run_id])."""
    from scaletune.curves.fit import fit_curves

    if bootstrap < 0:
        raise ScaletuneError(f"--bootstrap must be >= 0 (got {bootstrap})")
    curves = _load_curves(curve_files, schedules, schedule_file, runs, mapping, max_step)
    fit = fit_curves(curves, law=law, bootstrap=bootstrap, seed=seed, cv=cv, method=method, resample=resample)
    if out:
        fit.save(out)
    if plot:
        from scaletune.report.curves_plots import plot_curves

        preds = [(c.name, fit.predict_interval(c.lrs, np.arange(max(c.warmup, 1), c.steps[-1] + 1)), None) for c in curves]
        plot_curves(plot, curves, preds, title=f"{law} fit")
    if as_json:
        click.echo(fit.to_json())
        return
    d = fit.diagnostics
    click.echo(f"law {law}: {get_formula(law)}")
    if fit.options:
        click.echo("chosen: " + ", ".join(f"{k}={v}" for k, v in fit.options.items()))
    click.echo(
        f"{d['n_curves']} curves, {d['n_points']} points; train R2 {d['train_r2']:.5f}, mean rel. error {100 * d['train_mean_rel_error']:.3f}%, "
        f"worst {100 * d['train_max_rel_error']:.3f}%"
    )
    unit = "whole-curve" if d["resample"] == "curves" else "block"
    click.echo(
        f"{'param':<8} {'value':>12}  95% interval ({bootstrap} {unit} bootstrap draws, seed {seed}; "
        f"{d['bootstrap_failed']} not converged, kept)"
    )
    for name, value in fit.params_.items():
        click.echo(f"{name:<8} {value:>12.5g}  {_fmt_interval(*fit.intervals[name])}")
    for held in d.get("cv", []):
        click.echo(
            f"left out {held['curve']}: predicted from the others with final-loss error {100 * held['final_rel_error']:+.2f}%, "
            f"mean |error| {100 * held['mean_rel_error']:.2f}%"
        )
    err = d["model_error"]
    click.echo(
        f"law error added to prediction intervals: relative sd {100 * err['rel_sd']:.3f}% ({err['method']}, n = {err['n']}"
        + (")" if err["method"] == "leave-one-curve-out" else "; in-sample, optimistic: --cv measures it on held-out curves)")
    )
    if "protocol" in d:
        p = d["protocol"]
        scores = ", ".join(f"{k} {100 * v:.3f}%" for k, v in p["candidates"].items())
        click.echo(f"protocol {p['chosen']}, chosen by {p['by']} ({scores}): {p['rule']}")
    for warning in d.get("warnings", []):
        click.echo("warning: " + _WARNINGS[warning])
    if out:
        click.echo(f"wrote {out}")


_WARNINGS = {
    "cooldown_unidentified": "no fitted curve has a sharp learning-rate decay, so nothing pins down the cooldown "
    "parameters: they sit near their start values and predicted decays are guesses",
    "degenerate_bootstrap": "every bootstrap replicate gave the same parameters: the intervals have zero width and "
    "say nothing (too few points or curves; try --resample blocks with more logged points)",
}


def get_formula(law: str) -> str:
    from scaletune.curves.laws import get_curve_law

    return get_curve_law(law).formula


@curves_group.command("predict")
@click.argument("fit_file", type=click.Path())
@click.option(
    "--schedule", "schedule", required=True, help="Schedule spec (missing steps/lr/warmup come from --steps and the fit) or step,lr CSV."
)
@click.option("--steps", type=int, help="Training length in steps when the spec has none (default: the longest fitted curve + 1).")
@click.option(
    "--every",
    type=int,
    default=500,
    show_default=True,
    help="Predict, print and write one point every this many optimizer steps (and the last).",
)
@click.option("--json", "as_json", is_flag=True)
@click.option("--out", type=click.Path(), help="Write the predicted curve as CSV (step, loss, lo, hi).")
@click.option("--plot", type=click.Path())
def predict_cmd(fit_file, schedule, steps, every, as_json, out, plot) -> None:
    """Predict the loss curve and final loss under a schedule, with 95% intervals."""
    from scaletune.curves.fit import CurveFit
    from scaletune.curves.search import complete_schedule

    fit = CurveFit.load(fit_file)
    if every < 1:
        raise ScaletuneError(f"--every must be >= 1 (got {every})")
    budget = steps or max(c["last_step"] for c in fit.curves) + 1
    sched = complete_schedule(fit, schedule, budget)
    lrs = sched.lrs()
    pred = fit.predict_interval(sched, np.unique(np.r_[np.arange(max(sched.warmup, 1), len(lrs) + 1, every), len(lrs)]))
    if out:
        import pandas as pd

        from scaletune.runtable import write_table

        write_table(
            pd.DataFrame(
                {
                    "step": pred.steps,
                    "lr": sched(pred.steps),
                    "loss": pred.value,
                    "lo": pred.lo,
                    "hi": pred.hi,
                    "lo_params": pred.lo_params,
                    "hi_params": pred.hi_params,
                }
            ),
            out,
        )
    if plot:
        from scaletune.report.curves_plots import plot_curves

        plot_curves(plot, (), [(sched.spec(), pred, sched.lrs())], title=f"{fit.law} prediction")
    if as_json:
        click.echo(dumps(pred.to_dict()))
        return
    x = pred.ratios
    click.echo(f"schedule {sched.spec()}")
    click.echo(
        f"final loss at step {x['last_step']}: {pred.final_loss:.4f} nats, 95% interval {_fmt_interval(*pred.final_interval)}, "
        f"parameters only {_fmt_interval(*pred.final_interval_params)}"
    )
    click.echo(f"interval: {pred.describe_interval()}")
    click.echo(
        f"extrapolation: {x['steps_ratio']:.2f}x the longest fitted curve's steps, {x['area_ratio']:.2f}x its learning-rate area"
        + (" (beyond the fitted curves)" if x["beyond_fitted"] else "")
    )
    click.echo(f"{'step':>8} {'loss':>8} {'95% interval':>20} {'parameters only':>20}")
    for i in range(len(pred.steps)):
        click.echo(
            f"{pred.steps[i]:>8} {pred.value[i]:>8.4f} {_fmt_interval(pred.lo[i], pred.hi[i]):>20} "
            f"{_fmt_interval(pred.lo_params[i], pred.hi_params[i]):>20}"
        )


@curves_group.command("evaluate")
@click.argument("fit_file", type=click.Path())
@click.argument("curve_files", nargs=-1, required=True, type=click.Path())
@click.option("--schedule", "schedules", multiple=True, help="Schedule spec or step,lr CSV: once for all files or once per file, in order.")
@click.option("--schedules", "schedule_file", type=click.Path(), help="CSV with columns curve, schedule (curve = file stem or run_id).")
@click.option("--runs", type=click.Path(), help="Run table whose run_id/schedule columns give each curve's schedule spec.")
@click.option("--map", "mapping", help="Column mapping canonical=source, e.g. loss=train_loss,step=iter.")
@click.option("--max-step", type=int, help="Drop points at steps >= this (e.g. a log's final-step entry).")
@click.option("--json", "as_json", is_flag=True)
def evaluate_cmd(fit_file, curve_files, schedules, schedule_file, runs, mapping, max_step, as_json) -> None:
    """Score a fit on held-out CURVE_FILES: R2, mean and worst relative error per curve and averaged over the
    curves (as Luo et al. 2025 score), pooled over all points, and whether each final loss lies in its 95%
    prediction interval."""
    from scaletune.curves.fit import CurveFit, evaluate_fit

    fit = CurveFit.load(fit_file)
    curves = _load_curves(curve_files, schedules, schedule_file, runs, mapping, max_step)
    m = evaluate_fit(fit, curves)
    if as_json:
        click.echo(dumps(m))
        return
    click.echo(f"{fit.law} fit from {fit_file} on {m['n_curves']} curves, {m['n_points']} points (relative error = |pred - obs| / obs)")
    click.echo(
        f"{'curve':<24} {'points':>6} {'R2':>8} {'mean err':>9} {'worst':>7}  {'final: measured':>15} {'predicted [95%]':>26} {'in':>3} {'steps x':>7}"
    )
    for r in m["per_curve"]:
        click.echo(
            f"{r['name'][:24]:<24} {r['n_points']:>6} {r['r2']:>8.5f} {100 * r['mean_rel_error']:>8.3f}% {100 * r['max_rel_error']:>6.2f}%  "
            f"{r['final_loss']:>15.4f} {r['predicted_final']:>8.4f} {_fmt_interval(*r['final_interval']):>17} "
            f"{'yes' if r['final_covered'] else 'no':>3} {r['steps_ratio']:>7.2f}"
        )
    pooled = m["pooled"]
    click.echo(
        f"{'average over curves':<24} {'':>6} {m['r2']:>8.5f} {100 * m['mean_rel_error']:>8.3f}% {100 * m['max_rel_error']:>6.2f}%  "
        f"final losses in their 95% interval: {sum(r['final_covered'] for r in m['per_curve'])}/{m['n_curves']}"
    )
    click.echo(
        f"{'pooled over points':<24} {pooled['n_points']:>6} {pooled['r2']:>8.5f} {100 * pooled['mean_rel_error']:>8.3f}% "
        f"{100 * pooled['max_rel_error']:>6.2f}%"
    )


@click.group("schedule")
def schedule_group() -> None:
    """Compare and optimise learning-rate schedules with a fitted curve law."""


def _print_candidates(cands, limit: int | None = None) -> None:
    click.echo(f"{'rank':>4} {'final loss':>10} {'95% interval':>20} {'steps x':>7} {'area x':>7}  schedule")
    for i, c in enumerate(cands[:limit] if limit else cands):
        x = c.prediction.ratios
        click.echo(
            f"{i + 1:>4} {c.final_loss:>10.4f} {_fmt_interval(*c.final_interval):>20} {x['steps_ratio']:>7.2f} "
            f"{x['area_ratio']:>7.2f}  {c.spec}"
        )


@schedule_group.command("compare")
@click.argument("fit_file", type=click.Path())
@click.option("--steps", type=int, required=True, help="Budget in optimizer steps, the same for every candidate.")
@click.option(
    "--candidates",
    "candidates",
    multiple=True,
    required=True,
    help="Schedule spec (repeat); steps/lr/warmup default to the budget and the fit.",
)
@click.option("--json", "as_json", is_flag=True)
@click.option("--out", type=click.Path(), help="Write the table as CSV.")
@click.option("--plot", type=click.Path(), help="One figure: predicted final loss of each candidate with its interval.")
def compare_cmd(fit_file, steps, candidates, as_json, out, plot) -> None:
    """Predicted final loss of each candidate schedule at the same budget, best first."""
    from scaletune.curves.fit import CurveFit
    from scaletune.curves.search import compare_schedules

    fit = CurveFit.load(fit_file)
    if steps <= 0:
        raise ScaletuneError(f"--steps must be positive (got {steps})")
    cands = compare_schedules(fit, list(candidates), steps)
    _write_outputs(cands, out, plot, f"{fit.law}: predicted final loss at {steps} steps")
    if as_json:
        click.echo(dumps({"law": fit.law, "steps": steps, "candidates": [c.to_dict() for c in cands]}))
        return
    _print_candidates(cands)


def _write_outputs(cands, out, plot, title) -> None:
    if out:
        import pandas as pd

        from scaletune.runtable import write_table

        write_table(
            pd.DataFrame(
                [
                    {
                        "schedule": c.spec,
                        "final_loss": c.final_loss,
                        "lo": c.final_interval[0],
                        "hi": c.final_interval[1],
                        "steps_ratio": c.prediction.ratios["steps_ratio"],
                        "area_ratio": c.prediction.ratios["area_ratio"],
                    }
                    for c in cands
                ]
            ),
            out,
        )
    if plot:
        from scaletune.report.curves_plots import plot_candidates

        plot_candidates(plot, cands, title=title)


@schedule_group.command("optimise")
@click.argument("fit_file", type=click.Path())
@click.option("--steps", type=int, required=True, help="Budget in optimizer steps.")
@choice_option("--family", ["wsd", "cosine", "free"])
@click.option("--final", type=float, default=0.0, show_default=True, help="WSD: last rate / peak.")
@click.option("--top", type=int, default=8, show_default=True, help="Rows of the table to print.")
@click.option("--json", "as_json", is_flag=True)
@click.option("--out", type=click.Path(), help="Write every evaluated candidate as CSV.")
@click.option("--table-out", type=click.Path(), help="free family: write the best schedule's per-step rates (step, lr CSV).")
@click.option("--plot", type=click.Path())
def optimise_cmd(fit_file, steps, family, final, top, as_json, out, table_out, plot) -> None:
    """The best member of a schedule family at a budget (e.g. WSD cooldown fraction and shape)."""
    from scaletune.curves.fit import CurveFit
    from scaletune.curves.search import optimise_schedule

    fit = CurveFit.load(fit_file)
    if steps <= 0:
        raise ScaletuneError(f"--steps must be positive (got {steps})")
    if not 0 <= final <= 1:
        raise ScaletuneError(f"--final must be in [0, 1] (got {final})")
    best, tried = optimise_schedule(fit, steps, family, final=final)
    if table_out:
        if best.rates is None:
            raise ScaletuneError("--table-out needs --family free (other families have a spec string)")
        import pandas as pd

        from scaletune.runtable import write_table

        write_table(pd.DataFrame({"step": np.arange(len(best.rates)), "lr": best.rates}), table_out)
    _write_outputs(tried, out, None, "")
    if plot:  # the best few only: a family search evaluates ~150 members
        from scaletune.report.curves_plots import plot_candidates

        plot_candidates(plot, tried[: max(top, 1)], title=f"{fit.law}: best {family} schedules at {steps} steps")
    if as_json:
        click.echo(
            dumps({"law": fit.law, "steps": steps, "family": family, "best": best.to_dict(), "evaluated": [c.to_dict() for c in tried]})
        )
        return
    click.echo(f"best {family} at {steps} steps: {best.spec}")
    click.echo(f"predicted final loss {best.final_loss:.4f} nats, 95% interval {_fmt_interval(*best.final_interval)}")
    _print_candidates(tried, top)


COMMANDS: list = [curves_group, schedule_group]
