"""`scaletune import tensorboard|wandb|csv PATH... --out runs.parquet [--curves curves.parquet]`: logs -> run table."""

from __future__ import annotations

import click

from scaletune._json import dumps
from scaletune.cli._tables import WIDE_OPTION

LABELS = {"tensorboard": "TensorBoard", "wandb": "W&B", "csv": "table"}
REASONS = {
    "no_loss": "no loss logged",
    "bad_value": "a non-numeric value",
    "missing_required": "a required column missing",
    "curve_without_run": "curve rows of an unknown run",
    "unreadable": "an unreadable log",
}


def _common(fn):
    options = [
        click.argument("paths", nargs=-1, required=True, type=click.Path()),
        click.option("--out", required=True, type=click.Path(dir_okay=False), help="Run table to write (.parquet, .csv or .jsonl)."),
        click.option(
            "--curves", "curves_out", type=click.Path(dir_okay=False), help="Also write the curves (run_id, step, tokens, lr, loss, ...)."
        ),
        click.option(
            "--map",
            "mapping",
            help="Logged names of canonical columns, canonical=logged: loss=val/loss,lr=learning_rate,N=n_params "
            "(also steps=max_iters for D = steps x batch_size; step=KEY for a W&B or CSV step axis).",
        ),
        click.option(
            "--seq-len",
            help="The logged batch size counts sequences of this many tokens (a number, or the config name "
            "that holds it); without it the batch size is taken as tokens.",
        ),
        click.option(
            "--require",
            default="loss",
            show_default=True,
            help="Columns every imported run must have (runs without them are skipped; a failed or diverged run needs no loss).",
        ),
        click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON document."),
        WIDE_OPTION,
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _run(kind: str, paths, out, curves_out, mapping, seq_len, require, as_json, **options) -> None:
    from scaletune.importers import import_logs
    from scaletune.runtable import write_table

    result = import_logs(
        kind, list(paths), mapping=mapping, seq_len=seq_len, require=[c.strip() for c in require.split(",") if c.strip()], **options
    )
    write_table(result.runs, out)
    if curves_out and len(result.curves):
        write_table(result.curves, curves_out)
    doc = result.to_dict() | {"out": str(out), "curves_out": str(curves_out) if curves_out and len(result.curves) else None}
    if as_json:
        click.echo(dumps(doc, indent=1))
        return
    _render(result, doc, kind)


def _render(result, doc: dict, kind: str) -> None:
    from rich.console import Console

    from scaletune.cli._tables import Col, FitTable, show

    console = Console()
    status = ", ".join(f"{n} {s}" for s, n in doc["status"].items())
    console.print(f"imported {doc['n_runs']} {LABELS[kind]} runs ({status}) -> {doc['out']}")
    table = FitTable("", [Col("column", "left"), Col("runs"), Col("from", "left", wrap=True)])
    for col, n in doc["columns"].items():
        if not n:
            continue
        sources = doc["sources"].get(col, {})
        first = next(iter(sources), "")
        more = f" (+{len(sources) - 1} other)" if len(sources) > 1 else ""
        table.add_row(col, str(n), first + more)
    show(console, table)
    missing = {c: n for c, n in doc["missing"].items() if n}
    if missing:
        console.print(
            "[yellow]missing: "
            + ", ".join(f"{c} in {n} run(s)" for c, n in missing.items())
            + " (map a logged name with --map COL=NAME)[/]"
        )
    notes = sum(len(r.notes) for r in result.reports)
    if notes:
        first = next(f"{r.run_id}: {n}" for r in result.reports for n in r.notes)
        console.print(f"notes: {notes} (first: {first}; all in --json)")
    if result.skipped:
        reasons = ", ".join(f"{n} {REASONS.get(r, r)}" for r, n in doc["skipped_by_reason"].items())
        console.print(
            f"[yellow]skipped {len(result.skipped)} run(s): {reasons}; first: {result.skipped[0].source}: {result.skipped[0].detail}[/]"
        )
    if doc["curves_out"]:
        console.print(f"curves: {doc['curves']['points']} loss points of {doc['curves']['runs']} runs -> {doc['curves_out']}")
    elif not len(result.curves):
        console.print("curves: none (no run logged its loss as a series)")


@click.group("import")
def import_group() -> None:
    """Turn existing logs (TensorBoard, W&B, CSV) into the run table and curves that fit, optimum, recommend
    and curves fit read."""


@import_group.command("tensorboard")
@_common
def tensorboard_cmd(paths, out, curves_out, mapping, seq_len, require, as_json) -> None:
    """Runs from TensorBoard event files: each folder under PATHS holding events.out.tfevents.* is a run (its
    sub-folders, such as the one add_hparams writes, belong to it). Hyperparameters from the hparams plugin
    and a config.json / hparams.yaml beside the events; final values are the last logged ones."""
    _run("tensorboard", paths, out, curves_out, mapping, seq_len, require, as_json)


@import_group.command("wandb")
@_common
def wandb_cmd(paths, out, curves_out, mapping, seq_len, require, as_json) -> None:
    """Runs from W&B run folders (wandb/offline-run-*, wandb/run-*), read offline from their .wandb logs with
    wandb's own reader: config, summary (final values), history (curves) and the run's exit state."""
    _run("wandb", paths, out, curves_out, mapping, seq_len, require, as_json)


@import_group.command("csv")
@_common
@click.option(
    "--curves-from", type=click.Path(dir_okay=False), help="Long table of curves: one row per run and step (run_id, step, loss, lr, ...)."
)
def csv_cmd(paths, out, curves_out, mapping, seq_len, require, as_json, curves_from) -> None:
    """Runs from tables (CSV, Parquet, JSON lines), one row per run; a W&B project export (columns Name, State,
    config and summary columns) is recognised: State finished -> ok, crashed/failed/killed -> failed."""
    _run("csv", paths, out, curves_out, mapping, seq_len, require, as_json, curves=curves_from)


COMMANDS: list = [import_group]
