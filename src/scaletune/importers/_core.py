"""From what a logger stored (a run's config, summary and logged series) to run-table rows and curve points.

Every importer reads its format into `RawRun` records; `assemble` turns them into the run table and the
curves with one set of rules, so TensorBoard, W&B and CSV imports name, derive and flag things alike.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from scaletune.errors import ScaletuneError
from scaletune.runtable import RUN_COLUMNS, parse_assignments, training_flops

# Canonical columns read as numbers; a value that is not one skips the run (it would poison every fit).
NUMERIC = ("N", "N_nonembed", "D", "C", "width", "depth", "lr", "batch_size", "warmup", "seed", "loss", "seconds")
# Columns the commands downstream use; a run without them gets a note (fit needs N, D; optimum lr; ...).
WANTED = ("N", "D", "lr", "batch_size")
STATUS = {  # a logger's run states -> the run table's statuses (scaletune.runtable.STATUSES)
    "ok": "ok",
    "finished": "ok",
    "complete": "ok",
    "completed": "ok",
    "success": "ok",
    "succeeded": "ok",
    "done": "ok",
    "diverged": "diverged",
    "nan": "diverged",
    "pruned": "pruned",
    "failed": "failed",
    "fail": "failed",
    "crashed": "failed",
    "killed": "failed",
    "error": "failed",
    "running": "failed",
    "preempted": "failed",
    "interrupted": "failed",
}


@dataclass
class RawRun:
    """One run as its logger stored it. ``config``: hyperparameters (flattened with '.'); ``summary``: final
    values the logger recorded as such (W&B summary, a CSV row); ``series``: name -> (steps, values)."""

    run_id: str
    source: str
    config: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    series: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    state: str | None = None  # the logger's own run state (W&B: finished, failed, crashed, ...)
    seconds: float | None = None
    seconds_from: str = ""  # where seconds came from, when the logger has no explicit value
    notes: list[str] = field(default_factory=list)

    def names(self) -> set[str]:
        return set(self.config) | set(self.summary) | set(self.series)


@dataclass(frozen=True)
class SkippedRun:
    """A run left out of the table: ``reason`` is a code (no_loss, bad_value, missing_required, ...)."""

    source: str
    reason: str
    detail: str


@dataclass(frozen=True)
class RunReport:
    """Where each column of one imported run came from (``sources``: column -> 'config:NAME',
    'summary:NAME', 'series:NAME' or 'derived:RULE'), the wanted columns it lacks, and notes."""

    run_id: str
    source: str
    sources: dict[str, str]
    missing: tuple[str, ...]
    notes: tuple[str, ...]


@dataclass(frozen=True)
class ImportResult:
    """The run table and curves read from existing logs, with what was derived, missing or skipped."""

    kind: str  # tensorboard | wandb | csv
    runs: pd.DataFrame
    curves: pd.DataFrame  # run_id, step, tokens, lr, loss and the other logged series (empty: none logged)
    reports: tuple[RunReport, ...]
    skipped: tuple[SkippedRun, ...]
    mapping: dict[str, str]

    def column_counts(self) -> dict[str, int]:
        """For each canonical column: the number of imported runs that have a value."""
        return {c: int(self.runs[c].notna().sum()) if c in self.runs.columns else 0 for c in RUN_COLUMNS}

    def to_dict(self) -> dict:
        sources: dict[str, Counter] = {}
        for r in self.reports:
            for col, src in r.sources.items():
                sources.setdefault(col, Counter())[src] += 1
        status = self.runs["status"].value_counts().to_dict() if len(self.runs) else {}
        return {
            "kind": self.kind,
            "n_runs": len(self.runs),
            "n_skipped": len(self.skipped),
            "skipped_by_reason": dict(Counter(s.reason for s in self.skipped)),
            "skipped": [vars(s) for s in self.skipped],
            "status": {str(k): int(v) for k, v in status.items()},
            "columns": self.column_counts(),
            "sources": {c: dict(cnt.most_common()) for c, cnt in sources.items()},
            "missing": dict(Counter(m for r in self.reports for m in r.missing)),
            "curves": {
                "runs": int(self.curves["run_id"].nunique()) if len(self.curves) else 0,
                "points": int(self.curves["loss"].notna().sum()) if "loss" in self.curves.columns else 0,
            },
            "mapping": self.mapping,
            "units": {
                "D": "tokens",
                "batch_size": "tokens per optimizer step",
                "C": "FLOPs (6ND where derived)",
                "loss": "as logged (scaletune assumes nats per token)",
            },
            "runs": [vars(r) | {"missing": list(r.missing), "notes": list(r.notes)} for r in self.reports],
        }


def parse_mapping(mapping: Mapping[str, str] | str | None) -> dict[str, str]:
    """``"loss=val/loss,N=n_params"`` (the same syntax as ``fit --map``) or a dict, canonical -> logged name."""
    if not mapping:
        return {}
    return parse_assignments(mapping, "column mapping") if isinstance(mapping, str) else dict(mapping)


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested config dicts as dotted keys (``model.width``); W&B media values (dicts with ``_type``) are dropped."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            if "_type" not in v:
                out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def number(value: Any) -> float | None:
    """A float from a logged value (numbers, bools, numeric strings such as '1e-3', 'NaN', 'Infinity'), else None."""
    if isinstance(value, (bool, np.bool_)):
        return float(value)
    if isinstance(value, (int, float, np.integer, np.floating)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


def series_from_points(points: Iterable[tuple[float, float]]) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) sorted by step; where a step was logged twice (a restart) the later value wins."""
    arr = np.array(list(points), dtype=float).reshape(-1, 2)
    order = np.argsort(arr[:, 0], kind="stable")
    steps, values = arr[order, 0], arr[order, 1]
    last = np.r_[steps[1:] != steps[:-1], True] if len(steps) else np.zeros(0, bool)
    return steps[last].astype(np.int64), values[last]


def _seq_len(value: str | float | None) -> float | str | None:
    if value is None or isinstance(value, (int, float)):
        return value
    as_number = number(value)
    return as_number if as_number is not None else str(value)


class _Assembler:
    def __init__(self, mapping: dict[str, str], seq_len, require: Sequence[str]):
        self.mapping = mapping
        self.seq_len = _seq_len(seq_len)
        if isinstance(self.seq_len, (int, float)) and not (self.seq_len > 0 and self.seq_len == round(self.seq_len)):
            raise ScaletuneError(f"seq_len: expected a positive whole number of tokens or a config name, got {seq_len!r}")
        self.require = tuple(require)

    def src(self, col: str) -> str:
        return self.mapping.get(col, col)

    @staticmethod
    def lookup(run: RawRun, name: str, col: str = "") -> tuple[Any, str]:
        """A value and where it came from. The loss prefers the summary, then the last logged value; the
        learning rate the config, then the largest logged rate (the peak: the last one of a decayed schedule
        is not the run's rate, nor is W&B's summary, which keeps the last); anything else the config."""
        series = run.series
        if col == "lr":
            order = (("config", run.config), ("series", {k: v[1].max() for k, v in series.items() if len(v[1])}), ("summary", run.summary))
        else:
            last = {k: v[1][-1] for k, v in series.items() if len(v[1])}
            order = (
                (("summary", run.summary), ("series", last), ("config", run.config))
                if col == "loss"
                else (("config", run.config), ("summary", run.summary), ("series", last))
            )
        for where, values in order:
            if name in values and values[name] is not None:
                return values[name], f"{where}:{name}" if not (where == "series" and col == "lr") else f"series:max of {name}"
        return None, ""

    def row(self, run: RawRun) -> tuple[dict[str, Any], RunReport] | SkippedRun:
        """The run-table row of ``run`` and where its values came from, or why it is skipped."""
        row: dict[str, Any] = {"run_id": run.run_id}
        sources: dict[str, str] = {}
        notes = list(run.notes)
        used: set[str] = set()  # logged names that became canonical columns (not repeated as extra columns)
        columns = list(dict.fromkeys([*RUN_COLUMNS, *self.mapping]))
        for col in columns:
            if col in ("step", "run_id"):
                continue  # the importers read these themselves
            value, where = self.lookup(run, self.src(col), col)
            if value is None:
                continue
            if col in NUMERIC:
                as_number = number(value)
                if as_number is None:
                    return SkippedRun(run.source, "bad_value", f"{col} = {value!r} ({where}) is not a number")
                value = as_number
            row[col], sources[col] = value, where
            used.add(self.src(col))
        # batch_size in tokens: with --seq-len the logged batch size counts sequences.
        if self.seq_len is not None and "batch_size" in row:
            seq_where = "seq_len"
            if isinstance(self.seq_len, str):
                raw, seq_where = self.lookup(run, self.seq_len)
                seq = number(raw)
            else:
                seq = float(self.seq_len)
            row["batch_size_sequences"] = row.pop("batch_size")
            sources["batch_size_sequences"] = sources.pop("batch_size")
            if seq is not None and seq > 0:
                row["seq_len"] = seq
                row["batch_size"] = row["batch_size_sequences"] * seq
                sources["batch_size"] = f"derived:batch_size_sequences*seq_len ({seq_where})"
            else:
                notes.append(f"no sequence length {self.seq_len!r}: batch_size (sequences) not converted to tokens")

        # D in tokens from steps x batch size (tokens) when the run does not log it.
        if "D" not in row and row.get("batch_size") is not None:
            steps, where = self.lookup(run, self.src("steps"))
            steps = number(steps)
            if steps is None and self.src("loss") in run.series:
                steps, where = float(run.series[self.src("loss")][0][-1]), f"series:last step of {self.src('loss')}"
            if steps is not None and steps > 0:
                row["D"] = steps * row["batch_size"]
                sources["D"] = f"derived:steps*batch_size (steps: {where})"
        if "C" not in row and row.get("N") is not None and row.get("D") is not None:
            row["C"] = training_flops(row["N"], row["D"])
            row["C_convention"] = "6ND"
            sources["C"] = "derived:6*N*D"
        if "seconds" not in row and run.seconds is not None:
            row["seconds"] = float(run.seconds)
            sources["seconds"] = run.seconds_from or "logger"

        # status: the table's own column, else the logger's state; a non-finite loss is a divergence. A run
        # that did not finish is kept without a loss (optimum shows where rates diverge); an ok run needs one.
        raw_status = row.get("status", run.state)
        if run.state is not None:
            row["state"] = run.state
        status = "ok" if raw_status is None else STATUS.get(str(raw_status).strip().lower())
        if status is None:
            notes.append(f"status {raw_status!r} read as failed")
            status = "failed"
        if "loss" not in row:
            if status == "ok":
                return SkippedRun(
                    run.source,
                    "no_loss",
                    f"no value named {self.src('loss')!r}"
                    + ("" if "loss" in self.mapping else " (give its logged name in the mapping: loss=NAME)"),
                )
            row["loss"] = math.nan
        if status == "ok" and not math.isfinite(row["loss"]):
            status = "diverged"
            sources["status"] = "derived:non-finite loss"
        else:
            sources["status"] = sources.get("status", "logger:state" if raw_status is not None else "default:ok (no run state logged)")
        row["status"] = status

        lacking = [c for c in self.require if row.get(c) is None]  # a logged NaN is a value (a diverged run's loss)
        if lacking:
            return SkippedRun(run.source, "missing_required", f"no value for {lacking[0]} (looked for {self.src(lacking[0])!r})")

        extras = {}  # every other hyperparameter and final metric, under its logged name
        for values in (run.config, run.summary, {k: v[1][-1] for k, v in run.series.items() if len(v[1])}):
            for k, v in values.items():
                if k in used or k in row or k in extras or k.startswith("_"):
                    continue
                extras[k] = v
        row.update(extras)
        missing = tuple(c for c in WANTED if row.get(c) is None)
        return row, RunReport(run.run_id, run.source, sources, missing, tuple(notes))

    def curve(self, run: RawRun, row: dict[str, Any]) -> pd.DataFrame | None:
        loss_src = self.src("loss")
        if loss_src not in run.series:
            return None
        renames = {loss_src: "loss"}
        # the per-step rate: the mapped lr when it is logged per step, else a series named lr (the mapped
        # name may be a config key holding the peak rate)
        lr_src = self.src("lr") if self.src("lr") in run.series else "lr"
        renames.setdefault(lr_src, "lr")
        cols = {}
        for name, (steps, values) in run.series.items():
            if name.startswith("_") or (name not in renames and name in renames.values()):
                continue  # W&B internals (_runtime, _timestamp); a logged 'loss' shadowed by the mapped one
            cols[renames.get(name, name)] = pd.Series(values, index=steps)
        frame = pd.concat(cols, axis=1).sort_index()
        frame.index.name = "step"
        frame = frame.reset_index()
        frame.insert(0, "run_id", run.run_id)
        if row.get("batch_size") is not None:
            frame.insert(2, "tokens", frame["step"] * row["batch_size"])  # step = updates done, as scaletune logs it
        return frame


def tidy(df: pd.DataFrame) -> pd.DataFrame:
    """Columns that every writer accepts: lists / dicts as JSON text, a column of numbers and text as text."""
    for col in df.columns:
        if df[col].dtype != object:
            continue
        values = df[col]
        if values.map(lambda v: isinstance(v, (list, tuple, dict))).any():
            values = values.map(lambda v: json.dumps(v) if isinstance(v, (list, tuple, dict)) else v)
        kinds = {type(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))}
        if kinds and kinds <= {int, float, bool, np.int64, np.float64, np.bool_}:
            values = pd.to_numeric(values.map(lambda v: float(v) if v is not None else np.nan))
        elif kinds - {str}:
            values = values.map(lambda v: v if v is None or isinstance(v, str) or (isinstance(v, float) and math.isnan(v)) else str(v))
        df[col] = values
    return df


def assemble(
    kind: str,
    runs: Sequence[RawRun],
    mapping: Mapping[str, str] | str | None,
    seq_len: float | str | None,
    require: Sequence[str],
    skipped: Sequence[SkippedRun] = (),
    where: str = "",
) -> ImportResult:
    """The run table and curves of ``runs`` (see the module docstring of `scaletune.importers`)."""
    mapping = parse_mapping(mapping)
    seen = set().union(*(r.names() for r in runs)) if runs else set()
    for col, src in mapping.items():
        if col not in ("step", "run_id") and src not in seen:
            names = ", ".join(sorted(seen)[:30]) + (" ..." if len(seen) > 30 else "")
            raise ScaletuneError(f"{where}: mapped name {src!r} (for {col}) is in no run (names: {names})")
    asm = _Assembler(mapping, seq_len, require)
    rows: list[dict[str, Any]] = []
    reports: list[RunReport] = []
    curves: list[pd.DataFrame] = []
    skip = list(skipped)
    ids = Counter(r.run_id for r in runs)
    for run in runs:
        if ids[run.run_id] > 1:
            run.run_id = f"{run.run_id}@{run.source}"
        result = asm.row(run)
        if isinstance(result, SkippedRun):
            skip.append(result)
            continue
        row, report = result
        rows.append(row)
        reports.append(report)
        frame = asm.curve(run, row)
        if frame is not None:
            curves.append(frame)
    if not rows:
        reasons = "; ".join(f"{s.source}: {s.detail}" for s in skip[:2])
        raise ScaletuneError(f"{where}: no run could be imported ({len(skip)} skipped: {reasons})")
    table = tidy(pd.DataFrame(rows))
    front = ["run_id", *[c for c in RUN_COLUMNS if c in table.columns]]
    table = table[front + [c for c in table.columns if c not in front]]
    curve_table = tidy(pd.concat(curves, ignore_index=True)) if curves else pd.DataFrame(columns=["run_id", "step", "loss"])
    return ImportResult(kind, table, curve_table, tuple(reports), tuple(skip), mapping)
