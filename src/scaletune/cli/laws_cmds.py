"""`scaletune` commands of the laws area: fit, backtest, predict, allocate, isoflop.

Thin: parse, call `scaletune.laws`, print a table (rich) or one JSON document (--json). Matplotlib is
imported only when --plot is given.
"""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path

import click
import numpy as np
import pandas as pd

from scaletune._json import dumps
from scaletune.cli._tables import WIDE_OPTION, Col, FitTable, choice_option, show
from scaletune.errors import ScaletuneError
from scaletune.runtable import parse_assignments, parse_point, read_table

EXAMPLES = {
    # name (a bundled data set, `scaletune.api.example`): default law
    "porian": "chinchilla",
    "datablations": "data_constrained",
    "overtraining": "overtrained",  # --map loss=loss_c4_val[,error=err_avg17]
}


_COMPARISON = re.compile(r"(>=|<=|!=|==|>|<|largest\(|smallest\()")


def example_path(name: str) -> Path:
    """Path of a bundled real data set (see scaletune/data/laws/SOURCE.md)."""
    from scaletune.api import example

    return example(name)


def _law_and_data(
    laws_from: str | None, data: str | None, example: str | None, mapping: str | None, where: str | None, law_name: str | None
) -> tuple[pd.DataFrame, str]:
    """The run table and the law of `fit` / `backtest`: an example names its own law unless --law says otherwise."""
    _import_laws(laws_from)
    df = _load(data, example, mapping, where)
    if law_name is None:
        if example is None:
            raise ScaletuneError("missing --law (e.g. --law chinchilla); known laws: see `scaletune laws`")
        law_name = EXAMPLES[example]
    return df, law_name


def _load(data: str | None, example: str | None, mapping: str | None, where: str | None) -> pd.DataFrame:
    if (data is None) == (example is None):
        raise ScaletuneError("give a data file (CSV, Parquet or JSON lines) or --example NAME, not both or neither")
    df = read_table(data if data else example_path(example), mapping)
    if where:
        source = df.attrs.get("source")
        if _COMPARISON.search(where):  # 'D>=1e9 and tokens_per_param>=5': the holdout grammar
            from scaletune.laws import row_mask

            keep = row_mask(df, where, "--where filter")
            if not keep.any():
                raise ScaletuneError(f"{source}: --where {where!r} selects no rows")
            df = df[keep]
            df.attrs["source"] = f"{source} [{where}]"
            return df
        for col, value in parse_assignments(where, "--where filter").items():
            if col not in df.columns:
                raise ScaletuneError(f"{source}: --where column {col!r} not found (columns: {', '.join(map(str, df.columns))})")
            keep = df[col].astype(str) == value
            if not keep.any():
                raise ScaletuneError(f"{source}: no row has {col} == {value!r} (values: {', '.join(map(str, df[col].unique()[:10]))})")
            df = df[keep]
        df.attrs["source"] = f"{source} [{where}]"
    return df


def _import_laws(path: str | None) -> None:
    """Run a Python file that registers user laws (``register_law(Law(...))``) before the command uses them."""
    if not path:
        return
    import runpy

    if not Path(path).is_file():
        raise ScaletuneError(f"{path}: no such law file (--laws-from expects a .py file calling register_law)")
    try:
        runpy.run_path(path, run_name="scaletune_user_laws")
    except ScaletuneError:
        raise
    except Exception as exc:  # a user's file: report its error in one line
        raise ScaletuneError(f"{path}: error while loading user laws: {type(exc).__name__}: {exc}") from None


LAWS_FROM = click.option(
    "--laws-from", type=click.Path(dir_okay=False), help="Python file that registers user laws with scaletune.laws.register_law."
)


def _fmt(v) -> str:
    if isinstance(v, float) and math.isinf(v):
        return "inf" if v > 0 else "-inf"
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    if isinstance(v, (int, np.integer)):
        return str(v)
    return f"{v:.6g}"


def _span(iv) -> str:
    return "-" if not iv else f"[{iv[0]:.4g}, {iv[1]:.4g}]"


def _echo_json(doc) -> None:
    """One JSON document on stdout, by the one JSON policy (strict JSON, NaN and infinities as null)."""
    click.echo(dumps(doc))


def _table(title: str, columns: list[str], rows: list[list]) -> None:
    from rich.console import Console

    # At the terminal's width: the first four columns stay, the others move below the table when it is too wide.
    cols = [
        Col(c, "left" if c in ("name", "quantity", "check") else "right", priority=max(0, i - 3), wrap=c == "check")
        for i, c in enumerate(columns)
    ]
    show(Console(), FitTable(title, cols, [[r if isinstance(r, str) else _fmt(r) for r in row] for row in rows]))


def _fit_doc(result) -> dict:
    doc = result.to_dict()
    doc.pop("bootstrap_params")  # thousands of numbers: in --out, not on the screen
    return doc


def _print_fit(result, law) -> None:
    click.echo(f"law {result.law}: {law.formula}")
    click.echo(
        f"fitted to {result.diagnostics['n_points']} points of {result.provenance.get('source')} "
        f"(y = {result.y}; objective {result.objective}; natural logs)"
    )
    level = int(round(result.level * 100))
    rows = [
        [f"{k} (fixed)" if k in result.fixed else k, v, *result.intervals.get(k, (None, None))]
        for k, v in {**result.params_, **result.derived_}.items()
    ]
    _table("parameters and derived quantities", ["name", "value", f"{level}% lo", f"{level}% hi"], rows)
    d = result.diagnostics
    boot = d.get("bootstrap")
    click.echo(
        f"converged: {d['converged']}; objective {d['objective_value']:.8g}; residual std (log) "
        f"{d['residual_std_log']:.4g}, max |log residual| {d['residual_max_abs_log']:.4g}; distinct scales "
        + ", ".join(f"{k}: {v}" for k, v in d["n_scales"].items())
    )
    if boot:
        click.echo(
            f"bootstrap: {boot['samples']} resamples of {boot['groups']} groups ({boot.get('grouping', 'rows')}; "
            f"seed {result.seed}), {boot['failed']} failed"
        )
    else:
        click.echo("no bootstrap: no intervals (use --bootstrap K)")
    cal = result.calibration
    if cal is not None and cal.method == "backtest":
        click.echo(
            f"calibrated intervals: backtest along {cal.by}, {cal.n_folds} folds, {cal.n_points} held-out points; "
            f"log error std {cal.kappa:.3g} per nat of extrapolation distance, bias {cal.bias:+.3g} per nat "
            f"({'applied' if cal.bias else 'not applied'}: fold biases "
            + ", ".join(f"{b:+.2g}" for b in cal.fold_biases)
            + f"), multiplier {cal.quantile(result.level):.3g} "
            f"at {level}%, residual std {cal.noise_std:.3g}"
        )
    elif cal is not None:
        click.echo(f"intervals: bootstrap + residual noise ({cal.note})")
    for w in d.get("warnings", []):
        click.echo(f"warning: {w}")
    if result.backtest and result.backtest["folds"]:
        bt = result.backtest
        rows = [[f["fold"], f["n_test"], f["median_abs_rel_error"], f["mean_rel_error"], f["max_distance"]] for f in bt["folds"]]
        _table(
            f"backtest along {bt['by']} ({bt['bins']}): fit on the bins below each fold, predict all beyond",
            ["fold", "held out", "median |rel. err|", "mean rel. err", "max distance"],
            rows,
        )
    if result.holdout:
        h = result.holdout
        cols = [*law.variables, "observed", "predicted", "rel. error", "lo", "hi", "covered", "extrapolation x"]
        # extrapolation x: exp of the joint distance from the fitted points (1 = inside; see `scaletune backtest`)
        rows = [
            [
                *(p[v] for v in law.variables),
                p["observed"],
                p["predicted"],
                p["relative_error"],
                p.get("lo"),
                p.get("hi"),
                str(p.get("covered", "-")),
                p["extrapolation"],
            ]
            for p in h["points"]
        ]
        _table(
            f"held out ({h['expression']}): {h['n']} points, mean |rel. error| {h['mean_abs_relative_error']:.4g}"
            + (f", {level}% observation-interval coverage {h['coverage']:.0%}" if "coverage" in h else ""),
            cols,
            rows,
        )


def _data_options(command):
    """The data arguments that `fit` and `backtest` share: DATA or --example, the law, --map, --y, --where."""
    for option in reversed(
        [
            click.argument("data", required=False),
            click.option("--example", type=click.Choice(sorted(EXAMPLES)), help="Use a bundled real data set instead of DATA."),
            click.option("--law", "law_name", help="Law name (chinchilla, compute, powerlaw:N,D, data_constrained, ...)."),
            click.option("--map", "mapping", help="Rename columns: canonical=yours, e.g. N=params,D=tokens,loss=val_loss."),
            click.option("--y", "y", help="Response column (default: the law's, usually loss)."),
            click.option("--where", help="Keep rows: COL=VALUE[,COL=VALUE...] or comparisons 'D>=1e9 and tokens_per_param>=5'."),
        ]
    ):
        command = option(command)
    return command


@click.command("fit")
@_data_options
@click.option("--holdout", help="Hold out rows and report how well they are predicted: 'C>=1e21', 'largest(N,2)'.")
@click.option("--bootstrap", default=200, show_default=True, type=click.IntRange(min=0), help="Bootstrap resamples.")
@click.option(
    "--groups",
    "--group",
    "groups",
    help="Column whose values are resampled together (default: budgets of --by for calibrated intervals, rows for --intervals bootstrap).",
)
@choice_option(
    "--intervals",
    ["calibrated", "bootstrap"],
    help="calibrated: budget bootstrap + backtest error model; bootstrap: row bootstrap, percentile intervals.",
)
@click.option("--by", help="Scale axis of budgets and backtest: C (6ND, default), N, D or a column.")
@click.option("--backtest", "with_backtest", is_flag=True, help="Print the rolling-origin backtest summary.")
@click.option("--weights", help="Column of per-point weights of the objective.")
@click.option("--chance", help="downstream_error: the task's chance-level error (number or column); bounds eps.")
@click.option("--fix", help="Freeze parameters: NAME=VALUE[,...].")
@click.option("--objective", default="huber", show_default=True, help="huber | mse_log | mse_linear | lower_envelope.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--out", type=click.Path(dir_okay=False), help="Write the fit (with bootstrap samples) as JSON.")
@click.option("--plot", type=click.Path(dir_okay=False), help="Write a figure (PNG, PDF or SVG).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document instead of tables.")
@LAWS_FROM
@WIDE_OPTION
def fit_cmd(
    data,
    example,
    law_name,
    mapping,
    y,
    where,
    holdout,
    bootstrap,
    groups,
    intervals,
    by,
    with_backtest,
    weights,
    fix,
    objective,
    seed,
    out,
    plot,
    as_json,
    laws_from,
    chance,
):
    """Fit a scaling law to a run table (CSV, Parquet, JSON lines) with bootstrap intervals."""
    from scaletune.laws import fit, get_law

    df, law_name = _law_and_data(laws_from, data, example, mapping, where, law_name)
    law = get_law(law_name)
    fixed = parse_point(fix) if fix else None
    if law.name == "downstream_error":  # errors checked to lie in [0, 1]; eps bounded by the chance level
        from scaletune.laws.downstream import prepare_law

        law, chance = prepare_law(df, chance, y or law.response, fixed)
    elif chance is not None:
        raise ScaletuneError("--chance applies to --law downstream_error only")
    result = fit(
        law,
        df,
        y=y,
        objective=objective,
        bootstrap=bootstrap,
        seed=seed,
        groups=groups,
        holdout=holdout,
        fixed=fixed,
        weights=weights,
        intervals=intervals,
        by=by,
        backtest=with_backtest,
    )
    if law.name == "downstream_error":
        result = dataclasses.replace(result, diagnostics={**result.diagnostics, "chance": chance})
    options = {k: v for k, v in click.get_current_context().params.items() if v is not None and v is not False}
    result = dataclasses.replace(result, provenance={**result.provenance, "command": "scaletune fit", "options": options})
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(result.to_json())
    if plot:
        from scaletune.report.laws_plots import plot_fit

        plot_fit(result, df, plot)
    if as_json:
        _echo_json(_fit_doc(result))
        return
    _print_fit(result, law)
    for what, path in (("fit", out), ("figure", plot)):
        if path:
            click.echo(f"{what} written to {path}")


@click.command("backtest")
@_data_options
@click.option("--by", help="Scale axis of the rolling origin: C (6ND, default for laws of N and D), N, D or a column.")
@choice_option("--horizon", ["all", "next"], help="Predict every bin beyond the origin, or only the next one.")
@choice_option(
    "--intervals", ["calibrated", "bootstrap", "none"], help="Intervals of each fold's fit (calibrated: with its own nested backtest)."
)
@click.option("--bootstrap", default=100, show_default=True, type=click.IntRange(min=0), help="Bootstrap resamples per fold.")
@click.option("--groups", "--group", "groups", help="Column whose values are resampled together.")
@click.option("--fix", help="Freeze parameters: NAME=VALUE[,...].")
@click.option("--objective", default="huber", show_default=True, help="huber | mse_log | mse_linear | lower_envelope.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document (every fold and held-out point).")
@LAWS_FROM
@WIDE_OPTION
def backtest_cmd(
    data, example, law_name, mapping, y, where, by, horizon, intervals, bootstrap, groups, fix, objective, seed, as_json, laws_from
):
    """Rolling-origin backtest: fit on the scales up to each origin, predict the larger ones, errors vs distance."""
    from scaletune.laws import backtest

    df, law_name = _law_and_data(laws_from, data, example, mapping, where, law_name)
    res = backtest(
        law_name,
        df,
        y=y,
        by=by,
        horizon=horizon,
        intervals=intervals,
        bootstrap=bootstrap,
        seed=seed,
        objective=objective,
        fixed=parse_point(fix) if fix else None,
        groups=groups,
    )
    if as_json:
        _echo_json(res.to_dict())
        return
    level = int(round(res.level * 100))
    click.echo(
        f"backtest of {res.law} on {df.attrs.get('source')}: rolling origin along {res.by} ({res.bins}); "
        f"horizon {res.horizon}; {res.intervals} intervals ({bootstrap} resamples per fold, seed {seed})"
    )
    click.echo(
        "distance: L-infinity distance of a point's ln variables from the convex hull of the fold's fitted "
        "points (nats; 0.69 = a factor 2 outside)"
    )
    rows = [
        [
            f["fold"],
            f["train_max_scale"],
            f["n_train"],
            f["n_test"],
            f["median_abs_rel_error"],
            f["mean_rel_error"],
            "-" if f["coverage"] is None else f"{f['coverage']:.0%}",
            f["max_distance"],
        ]
        for f in res.summary()
    ]
    _table(
        "per fold",
        ["fold", f"max fitted {res.by}", "fitted", "held out", "median |rel. err|", "mean rel. err", f"{level}% coverage", "max distance"],
        rows,
    )
    pts = res.points()
    edges = [0.0, 0.5, 1.0, 2.0, 4.0, np.inf]
    rows = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = pts[(pts.distance >= lo) & (pts.distance < hi)]
        if len(sel):
            cov = sel.covered.dropna()
            rows.append(
                [
                    f"{lo:g}-{hi:g}",
                    len(sel),
                    float(np.median(np.abs(sel.rel_error))),
                    float(np.mean(sel.rel_error)),
                    "-" if cov.empty else f"{cov.astype(bool).mean():.0%}",
                ]
            )
    _table(
        "errors against the extrapolation distance (nats)",
        ["distance", "points", "median |rel. err|", "mean rel. err", f"{level}% coverage"],
        rows,
    )
    cov = res.coverage()
    if cov is not None:
        click.echo(f"overall {level}% observation-interval coverage: {cov:.1%} of {len(pts)} held-out predictions")
    for note in res.notes:
        click.echo(f"note: {note}")


@click.command("laws")
@LAWS_FROM
@WIDE_OPTION
def laws_cmd(laws_from):
    """List the law catalogue and the published laws."""
    from scaletune.laws import get_law, law_names
    from scaletune.laws.published import ALLOCATION_ONLY, PUBLISHED

    _import_laws(laws_from)
    rows = [[name, get_law(name.replace(":VARS", "")).formula, "-"] for name in law_names()]
    rows += [[f"published:{name}", f"{pub.law} ({pub.convention})", pub.citation] for name, pub in PUBLISHED.items()]
    rows += [[f"published:{name}", "allocation only", cite] for name, (_, cite) in ALLOCATION_ONLY.items()]
    from rich.console import Console

    show(
        Console(),
        FitTable(
            "law catalogue and published laws",
            [Col("name", "left"), Col("formula / law (convention)", "left", wrap=True), Col("source", "left", note=True)],
            rows,
        ),
    )


@click.command("predict")
@click.argument("fit_spec", metavar="(FIT.json | published:NAME)")
@click.option("--at", "points", multiple=True, required=True, help="Point NAME=VALUE[,...], e.g. N=7e10,D=1.4e12 (repeatable).")
@click.option("--level", default=0.95, show_default=True, type=click.FloatRange(0.5, 0.999))
@click.option("--json", "as_json", is_flag=True)
@click.option(
    "--then",
    type=click.Path(dir_okay=False),
    help="A downstream_error fit: chain loss -> task error (--at N=...,M=... with M = D/N tokens per parameter, or N=...,D=...).",
)
@click.option("--chance", type=float, help="Check a downstream fit against this chance-level error.")
@click.option(
    "--law-interval",
    is_flag=True,
    help="Show the interval of the law (where its mean lies) instead of "
    "a new observation's (what one run there will measure, the default); --json carries both.",
)
@LAWS_FROM
@WIDE_OPTION
def predict_cmd(fit_spec, points, level, as_json, laws_from, then, chance, law_interval):
    """Predict with a fitted or published law, with the interval of a new observation there (or of the
    law, --law-interval) and how far it extrapolates."""
    from scaletune.laws import load_fit
    from scaletune.laws.fitting import records

    _import_laws(laws_from)
    result = load_fit(fit_spec)
    if chance is not None:  # a chance level below a downstream fit's plateau eps is a contradiction
        from scaletune.laws.downstream import check_chance

        check_chance(load_fit(then) if then else result, chance)
    if then:
        from scaletune.cli._chain import predict_chain

        return predict_chain(result, fit_spec, then, points, level, as_json)
    law = result.law_
    rows = []
    for text in points:
        point = parse_point(text)
        extra = [k for k in point if k not in law.variables]
        if extra:
            raise ScaletuneError(f"--at {text!r}: law {result.law!r} has no variable {extra[0]!r} (variables: {', '.join(law.variables)})")
        for k, v in point.items():
            if not (v > 0 and math.isfinite(v)):
                raise ScaletuneError(f"--at {text!r}: {k} must be positive, got {v!r}")
        [rec] = records(result.predict_interval(point, level), point)
        lo, hi = (None, None) if rec["method"] == "point" else (rec["lo"], rec["hi"])
        try:  # a new measurement there: the law's interval plus the noise of one run (and a new budget's)
            [obs] = records(result.predict_interval(point, level, observation=True), point)
            obs_lo, obs_hi = (None, None) if obs["method"] == "point" else (obs["lo"], obs["hi"])
        except ScaletuneError:  # no residuals to draw an observation's noise from
            obs_lo, obs_hi = None, None
        rows.append(
            {
                **point,
                result.y: rec["value"],
                "lo": lo,
                "hi": hi,
                "observation_lo": obs_lo,
                "observation_hi": obs_hi,
                "level": level,
                "extrapolation": rec["extrapolation"],
                "distance": rec["distance"],
                "method": rec["method"],
            }
        )
    if as_json:
        _echo_json({"law": result.law, "source": fit_spec, "y": result.y, "citation": result.citation, "predictions": rows})
        return
    click.echo(f"{fit_spec}: {result.law} ({law.formula})")
    cols = [*law.variables, result.y, f"{int(level * 100)}% lo", f"{int(level * 100)}% hi", "extrapolation x"]
    lo_key, hi_key = ("lo", "hi") if law_interval else ("observation_lo", "observation_hi")
    what = "the law's interval" if law_interval else "interval of a new run's measurement"
    _table(
        f"predictions ({what}; extrapolation x: joint factor outside the fitted points, 1 = inside)",
        cols,
        [[*(r[v] for v in law.variables), r[result.y], r[lo_key], r[hi_key], r["extrapolation"]] for r in rows],
    )
    if not result.has_samples:
        click.echo("no interval: this law carries no bootstrap samples" + (" (published)" if result.diagnostics.get("published") else ""))


@click.command("allocate")
@click.argument("fit_spec", metavar="(FIT.json | published:NAME)")
@click.option("--compute", "computes", multiple=True, type=float, help="Compute budget C in FLOPs (C = 6ND); repeatable.")
@click.option("--loss", "losses", multiple=True, type=float, help="Target loss: the compute needed to reach it; repeatable.")
@click.option("--json", "as_json", is_flag=True)
@WIDE_OPTION
def allocate_cmd(fit_spec, computes, losses, as_json):
    """Compute-optimal N*, D* (and the loss there) for a budget, or the compute that reaches a loss."""
    from scaletune.laws import allocate, compute_for_loss, load_fit
    from scaletune.laws.published import ALLOCATION_ONLY

    if not computes and not losses:
        raise ScaletuneError("give --compute FLOPS or --loss TARGET")
    fit_obj = fit_spec if fit_spec.removeprefix("published:") in ALLOCATION_ONLY else load_fit(fit_spec)
    results = [allocate(fit_obj, c) for c in computes] + [compute_for_loss(fit_obj, l) for l in losses]
    # DeepSeek's allocation gives M* (non-embedding FLOPs per token), not parameters: D*/M* is no tokens per parameter
    flops_per_token = isinstance(fit_obj, str)
    if as_json:
        docs = [r.to_dict() | ({"tokens_per_param": None} if flops_per_token else {}) for r in results]
        _echo_json({"source": fit_spec, "allocations": docs})
        return
    click.echo(f"{fit_spec}: {results[0].convention}")
    names = (
        ("C (FLOPs)", "C"),
        ("M* (FLOPs/token)", "N_star") if flops_per_token else ("N*", "N_star"),
        ("D* (tokens)", "D_star"),
        *(() if flops_per_token else [("D*/N*", "tokens_per_param")]),
        ("loss", "loss"),
    )
    for i, r in enumerate(results):
        title = f"compute-optimal allocation at C = {r.C:.4g} FLOPs" if i < len(computes) else f"least compute reaching loss {r.loss:.4g}"
        rows = [[q, getattr(r, key), *r.intervals.get(key, (None, None))] for q, key in names]
        rows.append(["extrapolation x", r.extrapolation, None, None])
        _table(title, ["quantity", "value", "95% lo", "95% hi"], rows)
    for r in results:
        for note in r.notes:
            click.echo(f"note: {note}")
    if not results[0].intervals:
        click.echo("no intervals: this law carries no bootstrap samples")


@click.command("isoflop")
@click.argument("data", required=False)
@click.option("--example", type=click.Choice(["porian"]), help="Use the bundled Porian et al. isoFLOP sweep.")
@click.option("--map", "mapping", help="Rename columns: C=flops,N=params,D=tokens,loss=val_loss.")
@click.option("--where", help="Keep rows where COL=VALUE[,COL=VALUE...].")
@choice_option("--interpolation", ["akima", "cubic"])
@click.option("--bootstrap", default=200, show_default=True, type=click.IntRange(min=0))
@click.option("--unweighted", is_flag=True, help="Fit N*(C) without weighting budgets by 1/var(ln N*).")
@click.option("--no-cross-check", "no_cross_check", is_flag=True, help="Skip the Approach 3 (Chinchilla fit) cross-check.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--out", type=click.Path(dir_okay=False), help="Write the N*(C) fit as JSON (usable by `predict`).")
@click.option("--plot", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True)
@WIDE_OPTION
def isoflop_cmd(data, example, mapping, where, interpolation, bootstrap, unweighted, no_cross_check, seed, out, plot, as_json):
    """IsoFLOP analysis (Chinchilla Approach 2): optimum per budget, then N*(C) = k C^a and D*(C) = k' C^b."""
    from scaletune.laws import isoflop

    df = _load(data, example, mapping, where)
    res = isoflop(df, interpolation=interpolation, bootstrap=bootstrap, seed=seed, weighted=not unweighted, cross_check=not no_cross_check)
    if out:
        Path(out).write_text(res.n_fit.to_json())
    if plot:
        from scaletune.report.laws_plots import plot_isoflop

        plot_isoflop(res, df, plot)
    if as_json:
        doc = res.to_dict()
        for k in ("n_fit", "d_fit"):
            doc[k].pop("bootstrap_params")
        _echo_json(doc)
        return
    click.echo(
        f"isoFLOP analysis of {df.attrs.get('source')}: {len(res.optima)} budgets used, {len(res.dropped)} dropped; "
        f"{interpolation} interpolation of loss vs ln N; {bootstrap} residual-bootstrap replicates per budget (seed {seed}), "
        f"{res.edge_replicates} with the minimum on the grid edge (kept as censored)"
    )
    rows = [
        [r.C, r.N_star, r.N_star_lo, r.N_star_hi, r.D_star, r.tokens_per_param, r.loss_star, r.n_points] for r in res.optima.itertuples()
    ]
    _table("per-budget optimum", ["C (FLOPs)", "N*", "N* 95% lo", "N* 95% hi", "D* (tokens)", "D*/N*", "loss*", "points"], rows)
    lo, hi = res.n_fit.intervals.get("c_C", (None, None))
    dlo, dhi = res.d_fit.intervals.get("c_C", (None, None))
    _table(
        ("weighted" if not unweighted else "unweighted") + " power-law fits (ln-space least squares)",
        ["quantity", "value", "95% lo", "95% hi"],
        [
            ["a in N* = k C^a", res.a, lo, hi],
            ["k", res.n_fit.derived_["k"], *res.n_fit.intervals.get("k", (None, None))],
            ["b in D* = k' C^b", res.b, dlo, dhi],
            ["k'", res.d_fit.derived_["k"], *res.d_fit.intervals.get("k", (None, None))],
        ],
    )
    a3 = res.approach3
    if a3 and "error" not in a3:
        _table(
            f"cross-check: Approach 2 (isoFLOP minima) vs Approach 3 (Chinchilla fit on the same {a3['n_points']} points)",
            ["quantity", "Approach 2", "95% interval", "Approach 3", "95% interval "],
            [
                ["N* exponent", res.a, _span(res.n_fit.intervals.get("c_C")), a3["a_N"], _span(a3["a_N_interval"])],
                ["D* exponent", res.b, _span(res.d_fit.intervals.get("c_C")), a3["a_D"], _span(a3["a_D_interval"])],
            ],
        )
        if a3["intervals_overlap"] is not None:
            click.echo(
                "the two N* exponents' intervals "
                + (
                    "overlap"
                    if a3["intervals_overlap"]
                    else "do NOT overlap: the Chinchilla form and the isoFLOP minima disagree on this data"
                )
            )
    elif a3:
        click.echo(f"cross-check with Approach 3 failed: {a3['error']}")
    for w in res.warnings:
        click.echo(f"warning: {w}")
    for what, path in (("N*(C) fit", out), ("figure", plot)):
        if path:
            click.echo(f"{what} written to {path}")


COMMANDS = [fit_cmd, backtest_cmd, predict_cmd, allocate_cmd, isoflop_cmd, laws_cmd]
