"""`scaletune report`: one self-contained HTML page of a study, a demo's output folder or a run table.

The analyses run here (optimum per scale, laws, recommendation, curve law, isoFLOP, stability); the module
`scaletune.report.html` only draws their results. A section whose data is missing says what is missing; the
rest is still written.
"""

from __future__ import annotations

import hashlib
import json
import platform
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Sequence

import click
import numpy as np
import pandas as pd

from scaletune.errors import ScaletuneError

RUN_FILES = ("runs.csv", "runs.parquet", "runs.jsonl")
CURVE_FILES = ("curves.csv", "curves.parquet", "curves.jsonl")


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in ("scaletune", "numpy", "scipy", "pandas", "plotly", "optuna"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def table_hash(df: pd.DataFrame) -> str:
    """sha256 (first 16 hex digits) of the table as CSV: the same rows give the same hash."""
    return hashlib.sha256(df.to_csv(index=False).encode()).hexdigest()[:16]


def _study_curves(configs: Sequence) -> pd.DataFrame | None:
    from scaletune.study import export_curves

    parts = [export_curves(c) for c in configs]
    parts = [p for p in parts if len(p)]
    return pd.concat(parts, ignore_index=True) if parts else None


def load_source(
    source: str, mapping: str | None = None, curves: str | None = None
) -> tuple[pd.DataFrame | None, pd.DataFrame | None, dict | None, str | None]:
    """(run table, curve table, target recorded in the folder's fits.json, why there are no runs).

    SOURCE is a study file (.toml), an output folder (runs.csv / .parquet / .jsonl; curves from curves.csv or
    from the folder's study files whose studies made the runs; the target of its fits.json) or a run table.
    """
    from scaletune.cli.hparams_cmds import load_runs
    from scaletune.runtable import read_table

    path = Path(source)
    curve_table, target = None, None
    if path.is_dir():
        runs_file = next((path / n for n in RUN_FILES if (path / n).exists()), None)
        if runs_file is None:
            return None, None, None, f"{path}: no run table in this folder (looked for {', '.join(RUN_FILES)})"
        runs = read_table(runs_file, mapping)
        curves_file = next((path / n for n in CURVE_FILES if (path / n).exists()), None)
        if curves_file is not None:
            curve_table = read_table(curves_file)
        elif "study" in runs.columns:
            from scaletune.study import load_study_config

            configs = []
            for toml in sorted(path.glob("*.toml")):
                try:
                    config = load_study_config(toml)
                except ScaletuneError:
                    continue  # not a study file, or one that no longer loads: its curves are not shown
                if config.name in set(runs["study"].astype(str)):
                    configs.append(config)
            curve_table = _study_curves(configs)
        fits = path / "fits.json"
        if fits.exists():
            target = (json.loads(fits.read_text()).get("recommendation") or {}).get("target")
    else:
        try:
            runs = load_runs(source, mapping)
        except ScaletuneError as exc:
            if path.suffix.lower() != ".toml" or not path.exists():
                raise  # a file that is not there or not a table: a usage error, not an empty report
            return None, None, None, str(exc)
        if path.suffix.lower() == ".toml":
            from scaletune.study import load_study_config

            curve_table = _study_curves([load_study_config(path)])
    if curves:
        curve_table = read_table(curves)
    return runs, curve_table, target, None


def _scale_label(scale: dict) -> str:
    return ", ".join(f"{k}={v:.3g}" for k, v in scale.items())


def curves_of_largest_scale(runs: pd.DataFrame, curve_table: pd.DataFrame) -> tuple[list, str, list[str]]:
    """The loss curves of the ok runs at the largest scale (N, then D) that has curves, at its most common
    batch size: (curves, the scale's label, problems with individual curves)."""
    from scaletune.curves import curve_from_arrays
    from scaletune.runtable import ok_runs, require_columns

    require_columns(curve_table, ["run_id", "step", "loss"])
    require_columns(runs, ["run_id"])
    have = runs[runs["run_id"].astype(str).isin(set(curve_table["run_id"].astype(str)))]
    have = ok_runs(have)
    keys = [k for k in ("N", "D") if k in have.columns]
    if have.empty or not keys:
        raise ScaletuneError("no ok run has a loss curve" + ("" if keys else " and an N or D column"))
    scale = have.sort_values(keys).iloc[-1][keys]
    sel = have[np.all([np.isclose(have[k].astype(float), float(scale[k])) for k in keys], axis=0)]
    label = _scale_label({k: float(scale[k]) for k in keys})
    if "batch_size" in sel.columns and sel["batch_size"].nunique() > 1:
        b = sel["batch_size"].mode().iloc[0]
        sel = sel[sel["batch_size"] == b]
        label += f", batch {b:g}"
    curves, problems = [], []
    for _, run in sel.iterrows():
        g = curve_table[curve_table["run_id"].astype(str) == str(run["run_id"])].sort_values("step")
        steps = g["step"].to_numpy(float)
        loss = pd.to_numeric(g["loss"], errors="coerce").to_numpy(float)
        lr = pd.to_numeric(g["lr"], errors="coerce").to_numpy(float) if "lr" in g.columns else None
        spec = run.get("schedule")
        schedule = spec if isinstance(spec, str) and "steps=" in spec else None
        has = np.isfinite(loss) & (steps >= 1)
        name = f"lr={run['lr']:.3g}" if "lr" in run and pd.notna(run["lr"]) else str(run["run_id"])
        try:
            curves.append(
                curve_from_arrays(
                    name, steps[has], loss[has], lr=lr, lr_steps=None if lr is None else steps, schedule=schedule, source=str(run["run_id"])
                )
            )
        except ScaletuneError as exc:
            problems.append(str(exc))
    if not curves:
        raise ScaletuneError(f"no usable loss curve at {label}: " + "; ".join(problems[:2]))
    return curves, label, problems


def _isoflop_input(runs: pd.DataFrame, optima: Sequence) -> pd.DataFrame:
    """(C, N, D, loss) rows: the loss at each scale's optimum where the table is a sweep, else its ok runs."""
    if optima:
        from scaletune.report.plotly_figures import scale_compute

        use = [o for o in optima if o.lr_bracketed and "N" in o.scale and "D" in o.scale]
        return pd.DataFrame(
            {
                "C": [scale_compute(o) for o in use],
                "N": [o.scale["N"] for o in use],
                "D": [o.scale["D"] for o in use],
                "loss": [o.loss_ for o in use],
            }
        )
    from scaletune.runtable import ok_runs, require_columns, training_flops

    require_columns(runs, ["N", "D", "loss"])
    ok = ok_runs(runs)
    C = ok["C"] if "C" in ok.columns else training_flops(ok["N"].astype(float), ok["D"].astype(float))
    return pd.DataFrame({"C": C, "N": ok["N"], "D": ok["D"], "loss": ok["loss"]})


def analyse(
    runs: pd.DataFrame | None,
    target: dict | None = None,
    *,
    source: str = "",
    curve_table: pd.DataFrame | None = None,
    optima: Sequence | None = None,
    rec: Any = None,
    bootstrap: int = 200,
    seed: int = 0,
    command: str = "",
    no_runs: str | None = None,
):
    """Run every analysis the report shows (reusing ``optima`` / ``rec`` when the caller has them) and return
    a `scaletune.report.html.ReportData`; an analysis that cannot run leaves its reason in ``missing``."""
    from scaletune.report.html import ReportData

    data = ReportData(source=source, runs=runs)
    missing = data.missing
    if runs is None:
        missing["sweeps"] = no_runs or "no runs"
        for key in ("laws", "recommendation", "curves", "isoflop", "stability"):
            missing[key] = "no runs (see Sweeps)"
    else:
        from scaletune.hparams import find_optima, fit_hparam_laws, recommend

        try:
            data.optima = list(optima) if optima is not None else find_optima(runs, bootstrap=bootstrap, seed=seed)
        except ScaletuneError as exc:
            missing["sweeps"] = f"no optimum per scale: {exc}"
            missing["laws"] = missing["recommendation"] = "no optimum per scale (see Sweeps): nothing to fit"
        if data.optima:
            if rec is None and target:
                try:
                    rec = recommend(runs, target, optima=data.optima, bootstrap=bootstrap, loss_bootstrap=min(bootstrap, 200), seed=seed)
                except ScaletuneError as exc:
                    missing["recommendation"] = f"no recommendation: {exc}"
            elif rec is None:
                missing["recommendation"] = "no target: give --target N=...,D=... (N as the table counts it, D tokens)"
            data.recommendation = rec
            data.laws = None if rec is None else rec.laws
            if data.laws is None:
                try:
                    data.laws = fit_hparam_laws(data.optima, bootstrap=bootstrap, loss_bootstrap=min(bootstrap, 200), seed=seed)
                except ScaletuneError as exc:
                    missing["laws"] = f"no laws: {exc}"
        _analyse_isoflop(data, bootstrap, seed)
        _analyse_curves(data, curve_table, bootstrap, seed)
        _analyse_stability(data, curve_table, target, bootstrap, seed)
    data.provenance = _provenance(data, bootstrap, seed, command)
    return data


def _analyse_isoflop(data, bootstrap: int, seed: int) -> None:
    from scaletune.laws import isoflop

    try:
        table = _isoflop_input(data.runs, data.optima)
        data.isoflop = isoflop(table, bootstrap=bootstrap, seed=seed)
        data.isoflop_data = table
    except ScaletuneError as exc:
        data.missing["isoflop"] = f"{exc} (isoFLOP curves need 3+ FLOP budgets with 5+ model sizes each)"


def _analyse_curves(data, curve_table: pd.DataFrame | None, bootstrap: int, seed: int) -> None:
    from scaletune.curves import fit_curves
    from scaletune.schedules import Schedule

    if curve_table is None:
        data.missing["curves"] = "no loss curves with this source (a study records them; for a run table give --curves FILE)"
        return
    try:
        data.curves, data.curve_scale, problems = curves_of_largest_scale(data.runs, curve_table)
    except ScaletuneError as exc:
        data.missing["curves"] = f"no loss curves: {exc}"
        return
    notes = [f"{len(problems)} curve(s) left out ({problems[0]})"] if problems else []
    try:
        # The converged fit (not the slower published protocol: the report draws, `curves fit` chooses), with
        # leave-one-curve-out for the law's own error in the intervals; a twentieth of the fits' bootstrap.
        with np.errstate(all="ignore"):  # the optimiser probes outside the law's domain; those steps are rejected
            data.curve_fit = fit_curves(data.curves, law="multipower", method="lbfgs", cv=True, bootstrap=bootstrap // 20, seed=seed)
    except ScaletuneError as exc:
        notes.append(f"no curve law: {exc}")
    rec = data.recommendation
    if data.curve_fit is not None and rec is not None:
        try:
            with np.errstate(all="ignore"):
                data.curve_prediction = data.curve_fit.predict_interval(Schedule.parse(rec.schedule))
        except ScaletuneError as exc:
            notes.append(f"no predicted curve under the target's schedule {rec.schedule!r}: {exc}")
    elif data.curve_fit is not None:
        notes.append("no target: no predicted curve under its schedule")
    if notes:
        data.missing["curves"] = "; ".join(notes)


def _analyse_stability(data, curve_table: pd.DataFrame | None, target: dict | None, bootstrap: int, seed: int) -> None:
    from scaletune.stability import analyse_stability

    try:
        data.stability = analyse_stability(
            data.runs, curve_table, target=target if target and "N" in target else None, bootstrap=bootstrap, seed=seed
        )
    except ScaletuneError as exc:
        data.missing["stability"] = f"no stability analysis: {exc}"


def _provenance(data, bootstrap: int, seed: int, command: str) -> dict[str, Any]:
    prov: dict[str, Any] = {"source": data.source}
    if data.runs is not None:
        prov["runs"] = len(data.runs)
        prov["run table sha256 (CSV, first 16)"] = table_hash(data.runs)
    if data.laws is not None and data.laws.loss is not None:
        prov["loss law data hash"] = data.laws.loss.data_hash
    if data.curve_fit is not None:
        prov["curve fit data hash"] = data.curve_fit.data_hash
    prov.update({"bootstrap": bootstrap, "seed": seed, "command": command, "written": time.strftime("%Y-%m-%d %H:%M:%S %Z")})
    prov.update({f"{k} version": v for k, v in _versions().items()})
    return prov


def write_folder_report(folder: str | Path, *, optima: Sequence | None = None, rec: Any = None, command: str = "") -> Path:
    """The report of an output folder (the demo's) written into it as report.html, reusing computed results."""
    folder = Path(folder)
    runs, curve_table, target, no_runs = load_source(str(folder))
    data = analyse(runs, target, source=str(folder), curve_table=curve_table, optima=optima, rec=rec, command=command, no_runs=no_runs)
    from scaletune.report.html import write_report

    return write_report(data, folder / "report.html")


@click.command("report")
@click.argument("source")
@click.option("--target", help="Target scale for the recommendation, e.g. N=1e6,D=2e7 (default: the folder's fits.json).")
@click.option("--out", type=click.Path(dir_okay=False), default="report.html", show_default=True, help="HTML file to write.")
@click.option("--map", "mapping", help="Column mapping canonical=source, e.g. lr=learning_rate,loss=val_loss.")
@click.option("--curves", type=click.Path(dir_okay=False), help="Loss curves (run_id, step, lr, loss), e.g. from `export --curves`.")
@click.option(
    "--bootstrap",
    type=int,
    default=200,
    show_default=True,
    help="Bootstrap replicates of the fits (of the loss-curve law: a twentieth of it).",
)
@click.option("--seed", type=int, default=0, show_default=True)
def report_cmd(source, target, out, mapping, curves, bootstrap, seed):
    """Write one self-contained HTML page (interactive plotly figures, no network needed) of a study
    (STUDY.toml), an output folder (runs.csv) or a run table: sweeps, laws, recommendation, loss curves,
    isoFLOP curves, provenance. Sections without the data they need say what is missing."""
    from scaletune.report.html import build_sections, check_writable, write_report
    from scaletune.runtable import parse_point

    check_writable(out)  # before the analyses: an unwritable path fails in a second, not after them
    point = parse_point(target) if target else None
    runs, curve_table, folder_target, no_runs = load_source(source, mapping, curves)
    ctx = click.get_current_context()
    command = "scaletune report " + " ".join(
        [source] + [f"--{k.replace('_', '-')} {v}" for k, v in ctx.params.items() if k != "source" and v is not None]
    )
    data = analyse(
        runs,
        point or folder_target,
        source=source,
        curve_table=curve_table,
        bootstrap=bootstrap,
        seed=seed,
        command=command,
        no_runs=no_runs,
    )
    sections = build_sections(data)
    path = write_report(data, out, sections)
    drawn = [s.key for s in sections if s.missing is None]
    click.echo(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB): {', '.join(drawn)}")
    for s in sections:
        if s.missing is not None:
            click.echo(f"  {s.key}: {s.missing}")


COMMANDS: list = [report_cmd]
