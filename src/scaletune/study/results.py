"""Read a study back from its storage: per-slot accounting, the run table, the loss curves, a status summary.

A slot is *done* when one of its trials finished with a recorded outcome: COMPLETE (ok), PRUNED, or FAIL
with status ``failed`` / ``diverged`` written by the worker. A FAIL trial without such a status is a
stale or interrupted attempt: it stays in the storage as history and the slot is re-queued. A trial that
another trial names in ``retry_of`` has been superseded (``--retry-failed``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from scaletune.errors import ScaletuneError
from scaletune.runtable import RUN_COLUMNS, STATUSES, training_flops
from scaletune.study.config import StudyConfig, resolve_storage_url
from scaletune.study.plan import rung_study_name
from scaletune.study.storage import mask_url, open_storage

META_KEY = "scaletune"  # user attribute of the study NAME: the study file and the ladder
HEARTBEAT = "scaletune:heartbeat"  # system attribute of a running trial: time.time() of its last heartbeat
WORKER = "scaletune:worker"  # system attribute of a running trial: token of the worker running it
DONE_FAIL = ("failed", "diverged")


def _state(trial) -> str:
    return trial.state.name


def is_done(trial) -> bool:
    """Whether a trial finished with a recorded outcome (see the module docstring)."""
    return _state(trial) in ("COMPLETE", "PRUNED") or (_state(trial) == "FAIL" and trial.user_attrs.get("status") in DONE_FAIL)


def trial_status(trial) -> str:
    """ok | diverged | failed | pruned for a done trial; running | waiting | interrupted otherwise."""
    if _state(trial) == "COMPLETE":
        return "ok"
    if _state(trial) == "PRUNED":
        return "pruned"
    if _state(trial) == "FAIL":
        return trial.user_attrs.get("status") if is_done(trial) else "interrupted"
    return _state(trial).lower()


@dataclass
class SlotRecord:
    """The trials of one planned slot: the final done trial (if any), whether one is queued or running,
    and how many done trials are not superseded (exactly 1 for a finished slot; more means a duplicate)."""

    slot: int
    final: Any = None
    live: bool = False
    done_count: int = 0
    attempts: list = field(default_factory=list)


def slot_records(trials: list, planned: int | None = None) -> dict[int, SlotRecord]:
    """Group the trials of a rung by slot (0..planned-1 present even without trials)."""
    records = {i: SlotRecord(i) for i in range(planned or 0)}
    superseded = {t.user_attrs["retry_of"] for t in trials if "retry_of" in t.user_attrs}
    for t in sorted(trials, key=lambda t: t.number):
        if "slot" not in t.user_attrs:
            continue  # not a planned trial (e.g. added by hand in the dashboard)
        rec = records.setdefault(t.user_attrs["slot"], SlotRecord(t.user_attrs["slot"]))
        rec.attempts.append(t)
        if _state(t) in ("WAITING", "RUNNING"):
            rec.live = True
        elif is_done(t) and t.number not in superseded:
            rec.final = t
            rec.done_count += 1
    return records


@dataclass(frozen=True)
class StoredStudy:
    """A study as found in a storage: its name, storage, the study file (as a dict) and the ladder."""

    name: str
    url: str
    storage: Any
    meta: dict

    @property
    def rungs(self) -> list[dict]:
        return self.meta["rungs"]

    def rung_trials(self, rung: int) -> tuple[list, int | None]:
        """All trials of a rung and its planned count (None while the rung is not planned yet)."""
        try:
            study_id = self.storage.get_study_id_from_name(rung_study_name(self.name, rung))
        except KeyError:
            return [], None
        planned = self.storage.get_study_user_attrs(study_id).get("planned")
        return self.storage.get_all_trials(study_id, deepcopy=False), planned


def open_stored_study(study: str | StudyConfig, storage: str | None = None) -> StoredStudy:
    """Find a study by its config (name and storage from the study file) or by name and a storage URL."""
    if isinstance(study, StudyConfig):
        name, url = study.name, resolve_storage_url(storage) if storage else study.storage.url
    else:
        name = study
        if storage is None:
            raise ScaletuneError(
                f"study {name!r}: no storage to look for it in", hint="pass its storage URL (storage=...) or its StudyConfig"
            )
        url = resolve_storage_url(storage)
    st = open_storage(url, must_exist=True)
    try:
        study_id = st.get_study_id_from_name(name)
    except KeyError:
        names = sorted(s.study_name for s in st.get_all_studies() if "/" not in s.study_name)
        raise ScaletuneError(f"no study {name!r} in storage {mask_url(url)} (studies there: {', '.join(names) or 'none'})") from None
    meta = st.get_study_user_attrs(study_id).get(META_KEY)
    if meta is None:
        raise ScaletuneError(f"study {name!r} in {mask_url(url)} was not created by scaletune sweep")
    return StoredStudy(name, url, st, meta)


def _row(stored: StoredStudy, rung: int, trial) -> dict:
    result = dict(trial.user_attrs.get("result") or {})
    row: dict[str, Any] = {
        "run_id": f"{stored.name}/r{rung}/s{trial.user_attrs['slot']}",
        "study": stored.name,
        "rung": rung,
        "slot": trial.user_attrs["slot"],
        "trial": trial.number,
    }
    row.update(stored.rungs[rung])
    row.update(stored.meta.get("fixed", {}))  # the study's [fixed] values, then the space's fixed ones
    row.update(stored.meta.get("fixed_params", {}))
    row.update(trial.params)
    row["seed"] = trial.user_attrs.get("seed")
    row.update({k: v for k, v in result.items() if k not in ("curve", "status")})
    if "loss" not in row and trial.intermediate_values and trial_status(trial) == "pruned":
        row["loss"] = trial.intermediate_values[max(trial.intermediate_values)]  # its last validation loss
    if "C" not in row and "N" in row and "D" in row:
        row["C"] = training_flops(float(row["N"]), float(row["D"]))
        row["C_convention"] = "6ND"
    row["status"] = trial_status(trial)
    row["error"] = trial.user_attrs.get("error")
    return row


def export_runs(study: str | StudyConfig, storage: str | None = None) -> pd.DataFrame:
    """The run table of a study: one row per finished planned trial (ok, diverged, failed, pruned).

    Columns: run_id, study, rung, slot, trial, the scale variables (N, D, width, ...), the study's fixed
    values, the hyperparameters, seed, then what the workload returned (loss = final validation loss in nats per token, N, D, C,
    seconds, ...), status and error. C is the workload's FLOPs when it reports them, else 6*N*D
    (C_convention = "6ND").
    """
    stored = open_stored_study(study, storage)
    rows = []
    for rung in range(len(stored.rungs)):
        trials, planned = stored.rung_trials(rung)
        for rec in sorted(slot_records(trials, planned).values(), key=lambda r: r.slot):
            if rec.final is not None:
                rows.append(_row(stored, rung, rec.final))
    df = pd.DataFrame(rows)
    if df.empty:
        return pd.DataFrame(columns=["run_id", "study", "rung", "slot", "trial", *RUN_COLUMNS, "error"])
    head = ["run_id", "study", "rung", "slot", "trial"] + [c for c in RUN_COLUMNS if c in df.columns]
    df = df[head + [c for c in df.columns if c not in head]]
    df.attrs["source"] = f"study {stored.name}"
    return df


def export_curves(study: str | StudyConfig, storage: str | None = None) -> pd.DataFrame:
    """Loss curves of the finished trials: run_id, step, tokens, lr, loss (validation, nats per token),
    train_loss, as recorded by the workload; where it recorded none, the reported intermediate values."""
    stored = open_stored_study(study, storage)
    frames = []
    for rung in range(len(stored.rungs)):
        trials, planned = stored.rung_trials(rung)
        for rec in slot_records(trials, planned).values():
            t = rec.final
            if t is None:
                continue
            run_id = f"{stored.name}/r{rung}/s{rec.slot}"
            curve = t.user_attrs.get("curve")
            if curve:
                df = pd.DataFrame(curve).rename(columns={"val_loss": "loss"})
            elif t.intermediate_values:
                df = pd.DataFrame({"step": list(t.intermediate_values), "loss": list(t.intermediate_values.values())})
            else:
                continue
            df.insert(0, "run_id", run_id)
            frames.append(df)
    if not frames:
        return pd.DataFrame(columns=["run_id", "step", "tokens", "lr", "loss"])
    return pd.concat(frames, ignore_index=True)


@dataclass
class RungStatus:
    """Counts of one rung; ``best`` holds the best ok trial's loss and hyperparameters."""

    index: int
    scale: dict
    planned: int | None
    counts: dict[str, int]
    best_loss: float | None = None
    best_params: dict | None = None
    duplicates: int = 0
    flops: float = 0.0
    seconds: float = 0.0

    @property
    def done(self) -> int:
        return sum(self.counts.get(k, 0) for k in STATUSES)


def rung_status(stored: StoredStudy, rung: int) -> RungStatus:
    trials, planned = stored.rung_trials(rung)
    counts: dict[str, int] = {}
    best = None
    dup = 0
    flops = seconds = 0.0
    for rec in slot_records(trials, planned).values():
        dup += max(0, rec.done_count - 1)
        if rec.final is not None:
            status = trial_status(rec.final)
            result = rec.final.user_attrs.get("result") or {}
            seconds += float(result.get("seconds") or 0.0)
            scale = stored.rungs[rung]
            n, d = result.get("N", scale.get("N")), result.get("D", scale.get("D"))
            c = result.get("C", training_flops(n, d) if n and d else 0.0)
            flops += float(c or 0.0)
            if status == "ok" and rec.final.value is not None and (best is None or rec.final.value < best.value):
                best = rec.final
        elif rec.live:
            status = "running" if any(_state(t) == "RUNNING" for t in rec.attempts) else "waiting"
        else:
            status = "pending"
        counts[status] = counts.get(status, 0) + 1
    return RungStatus(
        rung, stored.rungs[rung], planned, counts, best.value if best else None, dict(best.params) if best else None, dup, flops, seconds
    )


def study_status(study: str | StudyConfig, storage: str | None = None) -> list[RungStatus]:
    """Per-rung progress of a study: planned, counts by status, best ok loss and its hyperparameters."""
    stored = open_stored_study(study, storage)
    return [rung_status(stored, k) for k in range(len(stored.rungs))]


def write_export(df: pd.DataFrame, out: str | Path, fmt: str) -> Path:
    """Write a run table as csv or parquet (the format `scaletune fit` reads)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "parquet":
        df.to_parquet(out, index=False)
    else:
        df.to_csv(out, index=False)
    return out


def finite_or_none(value: Any) -> Any:
    """JSON-safe scalar: numpy numbers to Python, NaN / inf to None."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
