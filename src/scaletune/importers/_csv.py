"""Run tables kept as CSV / Parquet / JSON lines (generic, or exported from the W&B UI) -> `RawRun` records.

A W&B project export is recognised by its ``Name`` and ``State`` columns: the run id is ``ID`` when the export
has it, else ``Name``; ``State`` (finished, crashed, failed, killed, running) gives the status and ``Runtime``
the seconds. Other rows need a ``run_id`` column (or ``--map run_id=COL``), else they are numbered.
Curves come from a long table (one row per run and step: run id, step, loss, lr, ...), mapped alike.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from scaletune.errors import ScaletuneError
from scaletune.importers._core import RawRun, SkippedRun, number, series_from_points
from scaletune.runtable import read_table

WANDB_EXPORT = ("Name", "State")


def _present(value) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def read_runs(paths, mapping: dict[str, str], curves: str | Path | None = None) -> tuple[list[RawRun], list[SkippedRun]]:
    """Each row of each table in ``paths`` as a `RawRun` (its cells as both config and summary); with
    ``curves``, each run's curve rows as series."""
    runs: list[RawRun] = []
    for path in map(Path, paths):
        df = read_table(path)
        wandb_export = all(c in df.columns for c in WANDB_EXPORT)
        id_col = mapping.get("run_id") or ("ID" if wandb_export and "ID" in df.columns else "Name" if wandb_export else "run_id")
        if "run_id" in mapping and id_col not in df.columns:
            raise ScaletuneError(f"{path}: mapped column {id_col!r} (for run_id) not found (columns: {', '.join(map(str, df.columns))})")
        for i, record in enumerate(df.to_dict("records")):
            cells = {str(k): v for k, v in record.items() if _present(v)}
            run_id = str(cells.pop(id_col)) if id_col in cells else f"{path.stem}/{i + 1}"
            run = RawRun(run_id=run_id, source=f"{path}:{i + 2}", config=cells, summary=cells)  # line i + 2 (header)
            if wandb_export:
                run.state = str(cells.pop("State")) if "State" in cells else None
                if "Name" in cells and id_col != "Name":
                    cells["name"] = cells.pop("Name")
                runtime = number(cells.pop("Runtime", None))
                if runtime is not None:
                    run.seconds, run.seconds_from = runtime, "summary:Runtime"
            runs.append(run)
    skipped: list[SkippedRun] = []
    if curves is not None:
        skipped = _attach_curves(runs, Path(curves), mapping)
    return runs, skipped


def _attach_curves(runs: list[RawRun], path: Path, mapping: dict[str, str]) -> list[SkippedRun]:
    df = read_table(path)
    cols = {c: mapping.get(c, c) for c in ("run_id", "step")}
    for canonical, col in cols.items():
        if col not in df.columns:
            raise ScaletuneError(
                f"{path}: missing column {col!r} (a curves table has one row per run and step: run_id, step, loss, lr)",
                hint=f"name yours in the mapping: {canonical}=COLUMN",
            )
    step = pd.to_numeric(df[cols["step"]], errors="coerce")
    if step.isna().any():
        row = int(np.argmax(step.isna().to_numpy()))
        raise ScaletuneError(
            f"{path}: column {cols['step']!r} has a missing or non-numeric value {df[cols['step']].iloc[row]!r} at row {row + 1}"
        )
    df = df.assign(**{cols["step"]: step})
    by_id = {r.run_id: r for r in runs}
    skipped = []
    for run_id, group in df.groupby(cols["run_id"], sort=False):
        run = by_id.get(str(run_id))
        if run is None:
            skipped.append(SkippedRun(f"{path} run {run_id}", "curve_without_run", f"no row of the run table has run id {run_id!r}"))
            continue
        for col in group.columns:
            if col in cols.values():
                continue
            values = pd.to_numeric(group[col], errors="coerce")
            keep = values.notna().to_numpy()
            if keep.any():
                run.series[str(col)] = series_from_points(zip(group[cols["step"]].to_numpy()[keep], values.to_numpy()[keep]))
    return skipped
