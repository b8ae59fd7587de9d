"""Report metrics from your own training script to a scaletune sweep (the command workload).

    from scaletune import reporting

    for step in range(steps):
        ...
        if step % 100 == 0:
            reporting.report(step, val_loss, tokens=step * batch_tokens, lr=lr)
    reporting.report_final(val_loss, N=n_params, N_nonembed=n_params - n_embed)

Each call appends one JSON line to the file named by ``$SCALETUNE_METRICS``, which the sweep tails while the
script runs (its pruner reads the losses; the run table and loss curves store them). Outside a sweep
(``$SCALETUNE_METRICS`` unset) and in processes whose ``$RANK`` is not 0 (torchrun's other ranks), both
functions do nothing, so the script runs unchanged on its own.

This module depends on the standard library only and imports nothing else from scaletune: copy the file
into a training environment where scaletune is not installed.
"""

from __future__ import annotations

import json
import os
from typing import Any

__all__ = ["report", "report_final"]


def _plain(value: Any) -> Any:
    """JSON-ready scalar: numpy / torch scalars through ``.item()``, NaN / inf as JSON's NaN / Infinity."""
    if hasattr(value, "item"):
        value = value.item()
    return value if isinstance(value, (int, float, str, bool)) or value is None else str(value)


def _write(record: dict) -> None:
    path = os.environ.get("SCALETUNE_METRICS")
    if not path or os.environ.get("RANK", "0") != "0":
        return
    line = json.dumps(record, allow_nan=True) + "\n"
    with open(path, "a", encoding="utf-8") as fh:  # one append per line: whole lines, even if the sweep reads now
        fh.write(line)


def report(step: int, loss: float, **metrics: Any) -> None:
    """Record the validation loss (nats per token) at ``step``; other metrics of the step as keywords,
    e.g. ``tokens`` (trained so far), ``lr``, ``train_loss``. A NaN / inf loss marks the trial diverged."""
    _write({"step": int(step), "loss": float(_plain(loss)), **{k: _plain(v) for k, v in metrics.items()}})


def report_final(loss: float, **metrics: Any) -> None:
    """Record the final validation loss and run-table columns, e.g. ``N``, ``N_nonembed``, ``D``.
    Without it, the last reported loss is the trial's loss."""
    _write({"final": {"loss": float(_plain(loss)), **{k: _plain(v) for k, v in metrics.items()}}})
