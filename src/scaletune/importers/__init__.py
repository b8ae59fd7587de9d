"""Runs you already have: TensorBoard event files, W&B run folders and CSV tables -> the run table and curves.

Each importer returns an `ImportResult`: ``runs`` (one row per run, canonical columns as in
`scaletune.runtable`, then every other hyperparameter and final metric), ``curves`` (run_id, step, tokens,
lr, loss and the other logged series), per-run `RunReport` (where each column came from, which wanted
columns are missing, notes) and the `SkippedRun` list with reasons. Rules shared by all formats:

- ``mapping`` (``"loss=val/loss,lr=learning_rate,N=n_params"``, the syntax of ``fit --map``) says which
  logged name holds each canonical column; without it the canonical name itself is looked up. Nested
  configs are flattened with dots (``--map width=model.width``).
- Hyperparameters are looked up in the config first, then the summary, then the last logged value; the
  loss the other way round (summary, last logged value, config). A run without a loss is skipped.
- ``batch_size`` is tokens per optimizer step. When the logs count sequences, pass ``seq_len`` (a number, or
  the config name that holds it): batch_size = sequences x seq_len, and the sequences are kept as
  ``batch_size_sequences``. Without ``seq_len`` the logged batch size is taken as tokens.
- ``D`` (tokens), when not logged: steps x batch_size (tokens), with steps from the config (``steps``, or
  ``--map steps=max_iters``) else the last logged step of the loss; ``C``, when not logged: 6ND
  (``C_convention = "6ND"``). Each derivation is recorded in the run's report.
- ``status``: the table's own status column, else the logger's run state (W&B finished -> ok; failed,
  crashed, killed, running -> failed, the state kept in ``state``); a non-finite final loss -> diverged.
  TensorBoard has no run state: a finite loss is ok.

Example::

    from scaletune.importers import import_tensorboard
    result = import_tensorboard(["runs/"], mapping="loss=val/loss,N=n_params", seq_len=1024)
    result.runs.to_parquet("runs.parquet"); result.curves.to_parquet("curves.parquet")
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from scaletune.errors import ScaletuneError
from scaletune.importers._core import (
    ImportResult,
    RunReport,
    SkippedRun,
    assemble,
    parse_mapping,
)

__all__ = ["ImportResult", "RunReport", "SkippedRun", "import_csv", "import_logs", "import_tensorboard", "import_wandb"]

KINDS = ("tensorboard", "wandb", "csv")
Paths = Sequence["str | Path"]


def _where(paths: Paths) -> str:
    return ", ".join(map(str, paths))


def import_tensorboard(
    paths: Paths, *, mapping: Mapping[str, str] | str | None = None, seq_len: float | str | None = None, require: Sequence[str] = ("loss",)
) -> ImportResult:
    """Runs from TensorBoard logs: every folder under ``paths`` holding event files (scalars, hparams plugin
    data written by ``SummaryWriter.add_hparams``, a ``config.json`` / ``hparams.yaml`` beside them)."""
    from scaletune.importers import _tensorboard

    mapping = parse_mapping(mapping)
    return assemble("tensorboard", _tensorboard.read_runs(paths, mapping), mapping, seq_len, require, where=_where(paths))


def import_wandb(
    paths: Paths, *, mapping: Mapping[str, str] | str | None = None, seq_len: float | str | None = None, require: Sequence[str] = ("loss",)
) -> ImportResult:
    """Runs from W&B run folders (``wandb/offline-run-*``, ``wandb/run-*``) read offline from their ``.wandb``
    logs: config, summary, history (``--map step=KEY`` for a custom step axis) and exit state."""
    from scaletune.importers import _wandb

    mapping = parse_mapping(mapping)
    runs, skipped = _wandb.read_runs(paths, mapping)
    return assemble("wandb", runs, mapping, seq_len, require, skipped=skipped, where=_where(paths))


def import_csv(
    paths: Paths,
    *,
    curves: str | Path | None = None,
    mapping: Mapping[str, str] | str | None = None,
    seq_len: float | str | None = None,
    require: Sequence[str] = ("loss",),
) -> ImportResult:
    """Runs from tables (CSV, Parquet, JSON lines; one row per run; a W&B UI export is recognised by its
    ``Name``/``State`` columns) and optionally their curves from a long table (run id, step, loss, lr, ...)."""
    from scaletune.importers import _csv

    mapping = parse_mapping(mapping)
    runs, skipped = _csv.read_runs(paths, mapping, curves)
    return assemble("csv", runs, mapping, seq_len, require, skipped=skipped, where=_where(paths))


def import_logs(kind: str, paths: Paths, **options) -> ImportResult:
    """Dispatch on ``kind`` (tensorboard | wandb | csv); ``options`` as the importer takes them."""
    if not paths:
        raise ScaletuneError("give at least one PATH to import")
    if kind == "tensorboard":
        return import_tensorboard(paths, **options)
    if kind == "wandb":
        return import_wandb(paths, **options)
    if kind == "csv":
        return import_csv(paths, **options)
    raise ScaletuneError(f"unknown log format {kind!r} (one of {', '.join(KINDS)})")
