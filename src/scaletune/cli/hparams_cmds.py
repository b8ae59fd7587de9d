"""`scaletune` commands of the hparams area: optimum, recommend, demo."""

from __future__ import annotations

import math
from pathlib import Path

import click

from scaletune._json import dumps
from scaletune.cli._tables import WIDE_OPTION, print_result


def fmt(x: float | None, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    return f"{x:.{digits}g}"


def fmt_iv(iv) -> str:
    if iv is None or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in iv):
        return "(none)"
    return f"[{fmt(iv[0])}, {fmt(iv[1])}]"


def load_runs(source: str, mapping: str | None = None, storage: str | None = None):
    """A run table from a data file (CSV, Parquet, JSON lines), a study file (.toml) or a study name + storage:
    `scaletune.api.load_runs`, the library's reader, so the commands and `st.load_runs` read alike."""
    from scaletune.api import load_runs as load

    return load(source, mapping, storage=storage)


def source_options(command):
    """--map and --storage: how SOURCE is read (the arguments of `load_runs`), the same in every command that reads runs."""
    command = click.option("--storage", help="Optuna storage URL when SOURCE is a study name.")(command)
    return click.option("--map", "mapping", help="Column mapping canonical=source, e.g. lr=learning_rate,loss=val_loss.")(command)


def optima_table(optima, title: str):
    from scaletune.cli._tables import Col, FitTable

    scale_keys = [k for k in optima[0].scale if k != "rung"] or list(optima[0].scale)
    columns = [Col(k + (" (tokens)" if k == "D" else "")) for k in scale_keys] + [
        Col("lr* [95%]"),
        Col("batch* tokens [95%]", priority=2),
        Col("loss* nats"),
        Col(f"band lr ({optima[0].band:.2%})", priority=3),
        Col("runs ok/excl", priority=4),
        Col("bracketed", "left", priority=1, note=True),
    ]
    rows = []
    for o in optima:
        band = f"{fmt(o.band_lr[0])}-{fmt(o.band_lr[1])}"
        b = (
            "-"
            if o.batch_size_ is None
            else f"{fmt(o.batch_size_)} {fmt_iv(o.batch_size_interval) if o.batch_size_interval else '(fixed)'}"
        )
        status = (
            "yes"
            if o.bracketed
            else f"NO: {o.message}"
            + (f"; try lr {', '.join(fmt(r) for r in o.next_lrs)}" if o.next_lrs else "")
            + (f"; try batch {', '.join(fmt(r) for r in o.next_batch_sizes)}" if o.next_batch_sizes else "")
        )
        rows.append(
            [
                *[fmt(o.scale[k]) for k in scale_keys],
                f"{fmt(o.lr_)} {fmt_iv(o.lr_interval)}",
                b,
                f"{o.loss_:.4f}",
                band,
                f"{o.n_ok}/{o.n_excluded}",
                status,
            ]
        )
    return FitTable(title, columns, rows, key=len(scale_keys))


def _sweep_options(bootstrap: int, bootstrap_help: str):
    """--band, --bootstrap and --seed: the same knobs of the sweep analysis in optimum and recommend (only the
    default number of bootstrap resamples, and what is resampled, differ)."""
    options = [
        click.option(
            "--band", type=float, default=0.0025, show_default=True, help="Near-optimal band: fraction of the best smoothed loss."
        ),
        click.option("--bootstrap", type=int, default=bootstrap, show_default=True, help=bootstrap_help),
        click.option("--seed", type=int, default=0, show_default=True),
    ]

    def apply(command):
        for option in reversed(options):  # click lists options in decorator order, top first
            command = option(command)
        return command

    return apply


@click.command("optimum")
@click.argument("source")
@source_options
@click.option("--by", help="Columns that define a scale (default: rung for a study export, else N,D).")
@_sweep_options(bootstrap=200, bootstrap_help="Bootstrap resamples of runs per scale.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document instead of the table.")
@click.option("--plot", type=click.Path(dir_okay=False), help="Write the loss-vs-lr figure (PNG/PDF/SVG).")
@WIDE_OPTION
def optimum_cmd(source, mapping, storage, by, band, bootstrap, seed, as_json, plot):
    """Optimal learning rate (and batch size) per scale of a sweep, with the near-optimal band,
    a bracketing check and bootstrap intervals. Diverged runs are shown, never fitted."""
    from scaletune.hparams.optimum import find_optima

    runs = load_runs(source, mapping, storage)
    optima = find_optima(runs, by=by.split(",") if by else None, band=band, bootstrap=bootstrap, seed=seed)
    if plot:
        from scaletune.report.hparams_plots import plot_sweeps
        from scaletune.stability import detect

        plot_sweeps(runs, optima, plot, flags=detect(runs))  # runs flagged by the instability detectors marked
    if as_json:
        click.echo(
            dumps(
                {
                    "band": band,
                    "lr_units": "as in the run table (muP: base rate)",
                    "batch_size_units": "tokens",
                    "loss_units": "nats/token",
                    "optima": [o.to_dict() for o in optima],
                }
            )
        )
        return
    from rich.console import Console

    from scaletune.cli._tables import show

    console = Console()
    show(console, optima_table(optima, f"Optimum per scale of {source} (lr*: vertex of a convex fit in ln lr; 95% bootstrap over runs)"))
    unbracketed = [o for o in optima if not o.bracketed]
    if unbracketed:
        console.print(
            f"[yellow]{len(unbracketed)} scale(s) not bracketed: their optimum is NOT used by the laws; run the proposed rates.[/]"
        )
    if plot:
        console.print(f"figure: {plot}")


def print_recommendation(rec, console, title: str = "Recommendation") -> None:
    from scaletune.cli._tables import Col, FitTable, show
    from scaletune.hparams.describe import describe
    from scaletune.report.html import law_rows

    t = rec.target
    head = ", ".join(f"{k}={fmt(v, 4)}" for k, v in t.items())
    rows: list[list] = []

    def row(name, p, digits=3):
        rows.append([name, fmt(p.value, digits), fmt_iv(p.interval), f"x{p.extrapolation:.1f}", describe(p)])

    row("learning rate" + (f" ({rec.param} base rate)" if rec.param in ("mup", "completep") else ""), rec.lr)
    row("batch size (tokens)", rec.batch_size)
    if rec.batch_sequences is not None:
        row(f"batch size (sequences of {rec.seq_len})", rec.batch_sequences)
    w = rec.warmup
    if w.get("steps") is None:  # the runs carry no warm-up: nothing is recommended, and 0 would read as advice
        rows.append(["warm-up (steps)", "not in the runs", "-", "-", "add a warmup column (steps) to recommend one"])
    else:
        rows.append(
            [
                "warm-up (steps)",
                str(w["steps"]),
                fmt_iv(w.get("steps_interval")),
                "-",
                f"{w['fraction']:.1%} of {rec.steps} steps; {w.get('source')}",
            ]
        )
    # The spec with a space after each comma (Schedule.parse accepts it): it wraps there, never inside a number.
    rows.append(["schedule", rec.schedule.replace(",", ", "), "-", "-", "-" if rec.schedule == "not in the runs" else "as in the proxies"])
    rows.append(["parameterisation", rec.param, "-", "-", "as in the proxies"])
    if rec.loss is not None:
        row("final loss (nats/token)", rec.loss, 4)
    else:
        rows.append(["final loss (nats/token)", "-", "-", "-", "no loss law (too few scales)"])
    show(
        console,
        FitTable(
            f"{title} at {head}",
            [
                Col("quantity", "left", wrap=True),
                Col("value", wrap=True),
                Col("95% interval", priority=1),
                Col("extrapolation", priority=2),
                Col("source", "left", note=True),
            ],
            rows,
        ),
    )

    pub = [
        [
            name,
            fmt(p["lr"]),
            f"x{p['lr_ratio_to_recommended']:.2f}",
            "yes" if p["lr_inside_interval"] else "no",
            fmt(p["batch_size"]),
            f"x{p['batch_ratio_to_recommended']:.2f}",
            p["inputs"],
        ]
        for name, p in rec.published.items()
    ]
    show(
        console,
        FitTable(
            "What the published laws would set at the same target",
            [
                Col("law", "left"),
                Col("lr"),
                Col("lr / recommended", priority=1),
                Col("in our interval", priority=2),
                Col("batch (tokens)"),
                Col("batch / recommended", priority=1),
                Col("inputs", "left", note=True),
            ],
            pub,
        ),
    )

    laws = [
        [r["law"], f"{fmt(r['k'])} {fmt_iv(r['k_interval'])}", r["exponents"], str(r["scales"]), r["check"]]
        for r in law_rows(
            rec.laws,
            fmt_iv,
            lambda p: (
                f"pred {fmt(p['predicted'])} vs {fmt(p['observed'])} (x{p['ratio']:.2f}, {'covered' if p['covered'] else 'NOT covered'})"
            ),
        )
    ]
    show(
        console,
        FitTable(
            "Laws fitted on the proxies' optima (95% intervals; check = largest scale held out)",
            [
                Col("law", "left"),
                Col("k", priority=2),
                Col("exponents", "left", wrap=True),
                Col("scales", priority=3),
                Col("held-out check", "left", note=True),
            ],
            laws,
        ),
    )
    print_selection(rec, console)
    tr = rec.transfer
    if tr is not None and tr.rows:
        console.print(("[green]" if tr.width_held else "[yellow]") + "transfer across width: " + tr.note + "[/]")
    if tr is not None and tr.depth_rows:
        console.print(("[green]" if tr.depth_held else "[yellow]") + "transfer across depth: " + tr.depth_note + "[/]")
    for note in rec.notes:
        console.print(f"note: {note}")


_ROLE_TITLE = {"batch_size": "batch size", "lr": "learning rate", "loss": "loss law"}


def print_selection(rec, console) -> None:
    """The candidates per role with their held-out scores, and the joint landscape's line."""
    from scaletune.cli._tables import Col, FitTable, show

    a = rec.analysis
    if a is None:
        return
    if a.candidates:
        held = "; ".join(", ".join(f"N={fmt(p['N'])} D={fmt(p['D'])}" for p in f["held_out"]) for f in a.folds)
        rows = [
            [
                _ROLE_TITLE[c.role],
                c.method.value,
                fmt(c.score, 2) if c.score is not None else "-",
                ", ".join(fmt(p, 2) if p is not None else "-" for p in c.penalty),
                fmt(c.noise, 2),
                "[bold]yes[/]" if c.chosen else "",
            ]
            for c in a.candidates
        ]
        show(
            console,
            FitTable(
                f"Candidates scored on held-out scales ({held}): expected loss penalty, % of the optimum "
                "(loss law: |error| %); within the noise of the best: fewest exponents, then published, then score",
                [
                    Col("role", "left", wrap=True),
                    Col("candidate", "left", wrap=True),
                    Col("score %"),
                    Col("per fold %", priority=1),
                    Col("noise %", priority=2),
                    Col("chosen", "left"),
                ],
                rows,
            ),
        )
    land = a.landscape
    if land is not None:
        exps = ", ".join(f"{n[2:]}^{land.params[land.names.index(n)]:+.3f}" for n in land.names if n.startswith("t_") and n != "t_0")
        bexp = ", ".join(f"{n[2:]}^{land.params[land.names.index(n)]:+.3f}" for n in land.names if n.startswith("p_") and n != "p_0")
        console.print(
            f"joint landscape ({land.n_runs} runs, {len(land.scales)} scales, {land.censored} entered censored "
            f"(optimum at the edge of their sweep)): lr* ~ {exps or 'const'}"
            + (f"; B* ~ {bexp or 'const'}" if land.batch_vars is not None else "")
            + f"; curvature above / below the optimal rate x{land.asymmetry:.2f}; seed noise {land.sigma:.2%}"
        )


@click.command("recommend")
@click.argument("source")
@click.option(
    "--target",
    required=True,
    help="Target scale, e.g. N=1e6,D=2e7 (N as the table counts it; D tokens; "
    "optional N_nonembed, width, depth, seq_len for the published laws).",
)
@source_options
@_sweep_options(bootstrap=400, bootstrap_help="Bootstrap replicates of the laws.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document with everything the tables show.")
@click.option("--out", type=click.Path(file_okay=False), help="Also write recommendation.json and figures into this folder.")
@WIDE_OPTION
def recommend_cmd(source, target, mapping, storage, band, bootstrap, seed, as_json, out):
    """Learning rate, batch size, warm-up, schedule, parameterisation and predicted loss at a target scale,
    from a sweep of proxies (a run table or a study), beside StepLaw and DeepSeek LLM."""
    from scaletune.hparams.recommend import recommend
    from scaletune.runtable import parse_point

    point = parse_point(target)
    runs = load_runs(source, mapping, storage)
    rec = recommend(runs, point, band=band, bootstrap=bootstrap, loss_bootstrap=min(bootstrap, 200), seed=seed)
    if out:
        out_dir = Path(out)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "recommendation.json").write_text(dumps(rec.to_dict()))
        from scaletune.report.hparams_plots import plot_laws, plot_sweeps
        from scaletune.stability import detect

        plot_sweeps(runs, list(rec.optima), out_dir / "sweeps.png", flags=detect(runs))
        plot_laws(rec, out_dir / "laws.png")
    print_result(rec, as_json, print_recommendation, f"written: {out}/recommendation.json, sweeps.png, laws.png" if out else None)


@click.command("demo")
@click.option("--out", type=click.Path(file_okay=False), default=None, help="Output folder (default: scaletune-out-demo-<time>).")
@click.option("--tiny", is_flag=True, help="A minute-long version of the whole loop (what CI runs).")
@click.option("--workers", type=int, default=None, help="Worker processes (default: CPU cores).")
@WIDE_OPTION
def demo_cmd(out, tiny, workers):
    """The whole loop on embedded defaults: a ladder of muP proxies swept on the bundled text (SQLite study,
    local runner), the fits, a recommendation for a target >= 8x the largest proxy, then the target trained
    with the recommended settings and neighbouring rates: predicted vs measured."""
    from scaletune.cli.demo import run_demo

    run_demo(out=out, tiny=tiny, workers=workers)


COMMANDS: list = [optimum_cmd, recommend_cmd, demo_cmd]
