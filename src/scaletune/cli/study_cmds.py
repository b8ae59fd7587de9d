"""`scaletune` commands of the study area: sweep, status, export.

STUDY is a study file (TOML) or, with --storage, the name of a study in that storage.
Optuna, Ray and torch are imported inside the commands.
"""

from __future__ import annotations

from pathlib import Path

import click

from scaletune.cli._tables import WIDE_OPTION, choice_option
from scaletune.errors import ScaletuneError


def _resolve(study: str, storage: str | None) -> tuple[str, str | None]:
    """(study name, storage URL) from a study file (--storage overrides its storage) or a name."""
    from scaletune.study.config import study_location

    if study.endswith(".toml") or Path(study).is_file():
        name, url = study_location(study)
        return name, storage or url
    if storage is None:
        raise ScaletuneError(
            f"{study}: no such study file, and no storage to look for a study of that name in",
            hint="pass the study file, or the name with --storage URL",
        )
    return study, storage


@click.command()
@click.argument("study_file", metavar="STUDY.toml")
@click.option("--workers", type=int, default=None, help="Parallel trials (default: cores // threads per trial; slurm: [slurm] jobs).")
@choice_option(
    "--backend", ["local", "ray", "slurm"], help="local worker processes, tasks on a Ray cluster, or Slurm jobs (the [slurm] table)."
)
@click.option("--address", default=None, help="Ray cluster address (default: start a local Ray instance).")
@click.option("--storage", default=None, help="Optuna storage URL overriding the study file's.")
@click.option("--retry-failed", is_flag=True, help="Also re-run trials whose outcome was 'failed'.")
@click.option("--dry-run", is_flag=True, help="Validate, check the storage and print the plan; run nothing.")
@click.option("--no-progress", is_flag=True, help="No live progress table.")
@WIDE_OPTION
def sweep(
    study_file: str,
    workers: int | None,
    backend: str,
    address: str | None,
    storage: str | None,
    retry_failed: bool,
    dry_run: bool,
    no_progress: bool,
) -> None:
    """Run (or resume) the multi-scale sweep of STUDY.toml until every planned trial has finished.

    Safe to kill at any moment and run again: finished trials are kept, unfinished ones re-run.
    """
    import dataclasses

    from scaletune.study import load_study_config, run_study
    from scaletune.study.config import n_planned, resolve_storage_url
    from scaletune.study.storage import check_storage, mask_url

    config = load_study_config(study_file)
    if storage:
        config = dataclasses.replace(config, storage=dataclasses.replace(config.storage, url=resolve_storage_url(storage)))
    if dry_run:
        check_storage(config.storage.url)
        click.echo(
            f"study {config.name}: workload {config.workload}, strategy {config.strategy.name}, "
            f"pruner {config.pruner}, storage {mask_url(config.storage.url)}"
        )
        for rung in config.rungs:
            ranges = ", ".join(f"{k} in [{lo:.3g}, {hi:.3g}]" for k, (lo, hi) in config.ranges(rung).items())
            click.echo(f"  {rung.label}: {n_planned(config, rung)} trials; {ranges}")
        return
    from scaletune.cli._progress import SweepProgress

    with SweepProgress(config.name, enabled=not no_progress) as view:
        result = run_study(config, workers=workers, backend=backend, address=address, progress=view, retry_failed=retry_failed)
    done = sum(r.done for r in result.rungs)
    planned = sum(r.planned or 0 for r in result.rungs)
    counts: dict[str, int] = {}
    for r in result.rungs:
        for k, v in r.counts.items():
            counts[k] = counts.get(k, 0) + v
    detail = ", ".join(f"{v} {k}" for k, v in counts.items())
    click.echo(
        f"study {config.name}: {done}/{planned} trials finished ({detail}) in {result.seconds:.1f} s"
        + (f"; stopped: {result.stopped}" if result.stopped else "")
    )
    click.echo(f"run table: scaletune export {study_file} --format csv --out {config.name}.csv")


@click.command()
@click.argument("study")
@click.option("--storage", default=None, help="Optuna storage URL (needed when STUDY is a name).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@WIDE_OPTION
def status(study: str, storage: str | None, as_json: bool) -> None:
    """Summarise a study: per rung, trials done/planned, outcomes, best loss and its hyperparameters."""
    import dataclasses

    from rich.console import Console

    from scaletune._json import dumps
    from scaletune.cli._progress import slurm_table, status_table
    from scaletune.cli._tables import show
    from scaletune.study import study_status
    from scaletune.study.results import open_stored_study
    from scaletune.study.slurm import slurm_jobs

    name, url = _resolve(study, storage)
    rungs = study_status(name, url)
    if as_json:
        click.echo(dumps([dataclasses.asdict(r) | {"done": r.done} for r in rungs], indent=2))
        return
    done, planned = sum(r.done for r in rungs), sum(r.planned or 0 for r in rungs)
    console = Console()
    show(console, status_table(rungs, f"{name}: {done}/{planned} trials finished"))
    jobs = slurm_jobs(open_stored_study(name, url))
    if jobs:
        show(console, slurm_table(jobs))


@click.command("export")
@click.argument("study")
@choice_option("--format", ["csv", "parquet"], dest="fmt")
@click.option("--out", default=None, help="Run table path (default: STUDY_NAME.csv / .parquet).")
@click.option("--curves", default=None, help="Also write the loss curves (run_id, step, tokens, lr, loss) here.")
@click.option("--storage", default=None, help="Optuna storage URL (needed when STUDY is a name).")
@click.option("--force", is_flag=True, help="Overwrite the default STUDY_NAME.csv / .parquet when it exists.")
def export(study: str, fmt: str, out: str | None, curves: str | None, storage: str | None, force: bool) -> None:
    """Write the run table of a study (one row per finished trial), the input of `scaletune fit`."""
    from scaletune.study import export_curves, export_runs
    from scaletune.study.results import write_export

    name, url = _resolve(study, storage)
    # an explicit --out is the user's choice; the default name must not silently replace an earlier export
    if out is None and Path(f"{name}.{fmt}").exists() and not force:
        raise ScaletuneError(f"{name}.{fmt} exists: pass --out PATH, or --force to overwrite it")
    df = export_runs(name, url)
    path = write_export(df, out or f"{name}.{fmt}", fmt)
    click.echo(f"wrote {len(df)} runs to {path}")
    if curves:
        cdf = export_curves(name, url)
        cpath = write_export(cdf, curves, "parquet" if curves.endswith((".parquet", ".pq")) else "csv")
        click.echo(f"wrote {len(cdf)} curve points to {cpath}")


COMMANDS: list = [sweep, status, export]
