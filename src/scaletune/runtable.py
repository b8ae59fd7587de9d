"""The run table: one row per training run, the hand-off between every stage.

Canonical columns (any subset; user columns are kept as they are):

    N           parameters (total, including embeddings, unless the producer records otherwise)
    N_nonembed  non-embedding parameters
    D           training tokens (tokens, not sequences)
    C           training FLOPs (6*N*D unless the producer records otherwise)
    width, depth, lr, batch_size (tokens), schedule, warmup (steps), param (sp | mup | completep),
    seed, loss (final validation loss, natural log / nats per token),
    status (ok | diverged | failed | pruned), seconds

Loss curves live beside it as (run_id, step, tokens, lr, loss).
Readers accept CSV, Parquet and JSON lines, with a column mapping for foreign files.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd

from scaletune.errors import ScaletuneError

RUN_COLUMNS = (
    "N",
    "N_nonembed",
    "D",
    "C",
    "width",
    "depth",
    "lr",
    "batch_size",
    "schedule",
    "warmup",
    "param",
    "seed",
    "loss",
    "status",
    "seconds",
)
CURVE_COLUMNS = ("run_id", "step", "tokens", "lr", "loss")
STATUSES = ("ok", "diverged", "failed", "pruned")  # a run "counts" only when ok: finished with a finite loss
FLOPS_PER_PARAM_TOKEN = 6.0  # C = 6 N D: forward + backward, N parameters as the table counts them, D tokens


def training_flops(N: Any, D: Any) -> Any:
    """Training compute C = 6 N D in FLOPs (Kaplan et al. 2020's convention: attention and embeddings' extra
    FLOPs left out; N as the table counts it, D tokens). Floats or arrays."""
    return FLOPS_PER_PARAM_TOKEN * N * D


def ok_runs(df: pd.DataFrame) -> pd.DataFrame:
    """The runs that count: status ok (any case; a table without a status column counts every run) and a
    finite loss when the table has one."""
    keep = pd.Series(True, index=df.index)
    if "status" in df.columns:
        keep &= df["status"].astype(str).str.strip().str.lower() == "ok"
    if "loss" in df.columns:
        keep &= np.isfinite(pd.to_numeric(df["loss"], errors="coerce").to_numpy(float))
    return df[keep]


def parse_assignments(text: str, what: str = "assignment") -> dict[str, str]:
    """Parse ``"N=col,D=col"`` (or ``"N=1e9,D=2e10"``) into an ordered dict of strings."""
    out: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ScaletuneError(f"cannot parse {what} {part!r}: expected NAME=VALUE")
        out[key.strip()] = value.strip()
    if not out:
        raise ScaletuneError(f"empty {what}: expected NAME=VALUE[,NAME=VALUE...]")
    return out


def parse_point(text: str) -> dict[str, float]:
    """Parse ``"N=1e9,D=2e10"`` into floats, naming any value that is not a number."""
    out = {}
    for key, value in parse_assignments(text, "point").items():
        try:
            out[key] = float(value)
        except ValueError:
            raise ScaletuneError(f"value of {key} is not a number: {value!r}") from None
    return out


def read_table(path: str | Path, mapping: Mapping[str, str] | str | None = None) -> pd.DataFrame:
    """Read a run table (CSV, Parquet, JSON lines); ``mapping`` renames columns ``canonical=source``."""
    path = Path(path)
    if not path.exists():
        raise ScaletuneError(f"{path}: no such file")
    suffix = "".join(path.suffixes[-2:]).lower() if path.suffix == ".gz" else path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            df = pd.read_parquet(path)
        elif suffix in (".jsonl", ".ndjson", ".json", ".jsonl.gz"):
            df = pd.read_json(path, lines=True)
        else:
            df = pd.read_csv(path)
    except Exception as exc:  # pandas/pyarrow raise many types for malformed files
        raise ScaletuneError(
            f"{path}: cannot read as a table ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
        ) from None
    if df.empty:
        raise ScaletuneError(f"{path}: the table has no rows")
    if mapping:
        if isinstance(mapping, str):
            mapping = parse_assignments(mapping, "column mapping")
        missing = [src for src in mapping.values() if src not in df.columns]
        if missing:
            raise ScaletuneError(f"{path}: mapped column {missing[0]!r} not found (columns: {', '.join(map(str, df.columns))})")
        df = df.rename(columns={src: dst for dst, src in mapping.items()})
    df.attrs["source"] = str(path)
    return df


def write_table(df: pd.DataFrame, path: str | Path) -> Path:
    """Write a run table; the format follows the suffix (.csv, .parquet, .jsonl)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        df.to_parquet(path, index=False)
    elif suffix in (".jsonl", ".ndjson", ".json"):
        df.to_json(path, orient="records", lines=True)
    else:
        df.to_csv(path, index=False)
    return path


def require_columns(df: pd.DataFrame, columns: Iterable[str]) -> None:
    """Raise naming the first missing column and the ones that exist."""
    source = df.attrs.get("source", "table")
    for col in columns:
        if col not in df.columns:
            raise ScaletuneError(
                f"{source}: missing column {col!r} (columns: {', '.join(map(str, df.columns))}; "
                f"map a foreign name with --map {col}=YOUR_COLUMN)"
            )


def require_positive(df: pd.DataFrame, columns: Iterable[str]) -> None:
    """Raise naming the column and row of the first non-numeric, NaN/inf or non-positive value."""
    source = df.attrs.get("source", "table")
    for col in columns:
        values = pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=float)
        bad = ~np.isfinite(values) | (values <= 0)
        if bad.any():
            i = int(np.argmax(bad))
            raw = df[col].iloc[i]
            kind = "non-positive" if isinstance(raw, (int, float, np.number)) and math.isfinite(float(raw)) else "missing or non-numeric"
            shown = f"{float(raw):g}" if isinstance(raw, (int, float, np.number)) else repr(raw)  # not np.float64(...)
            raise ScaletuneError(f"{source}: column {col!r} has a {kind} value {shown} at row {i + 1}")
