"""Rendering of a sweep's progress for the command line: the per-rung status table and the live view that
`run_study` feeds through its ``progress`` callback (the library itself never prints)."""

from __future__ import annotations

import time

from scaletune.cli._tables import Col, FitTable, show
from scaletune.runtable import STATUSES
from scaletune.study.results import RungStatus
from scaletune.study.slurm import SlurmJobStatus


def status_table(statuses: list[RungStatus], title: str):
    """A table of per-rung progress (fits 80 columns, `--wide` keeps each rung on one line): done/planned,
    running, outcomes, best loss and where."""
    names = " ".join(statuses[0].scale) if statuses else "scale"
    table = FitTable(
        title,
        [
            Col("rung"),
            Col(names, "left", wrap=True),
            Col("done"),
            Col("run"),
            Col("outcomes", "left", wrap=True, priority=1),
            Col("best loss"),
            Col("best at", "left", wrap=True, priority=2),
        ],
    )
    for r in statuses:
        outcomes = ", ".join(f"{r.counts[k]} {k}" for k in STATUSES if r.counts.get(k))
        table.add_row(
            str(r.index),
            " ".join(f"{v:g}" for v in r.scale.values()),
            f"{r.done}/{r.planned if r.planned is not None else '?'}",
            str(r.counts.get("running", 0)),
            outcomes or "-",
            f"{r.best_loss:.4f}" if r.best_loss is not None else "-",
            " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in (r.best_params or {}).items()) or "-",
        )
    return table


def slurm_table(jobs: list[SlurmJobStatus]):
    """A table of a study's Slurm jobs: id, state, trials finished, the runs they run now."""
    return FitTable(
        "Slurm jobs",
        [Col("job", "left"), Col("state", "left"), Col("done"), Col("running", "left", wrap=True)],
        [[j.job_id, j.state, str(j.done), " ".join(j.running) or "-"] for j in jobs],
    )


class SweepProgress:
    """The ``progress`` callback of `run_study` for the command line: a live table of done/planned per rung,
    running, outcomes, best loss so far, elapsed and ETA. When stderr is not a terminal (CI logs, `nohup`), a
    live table only shows when it stops, so a plain line is printed whenever another trial finishes instead.
    Use it as a context manager, so that the live table stops however the sweep ends."""

    def __init__(self, name: str, enabled: bool = True) -> None:
        self.name, self.live, self.console = name, None, None
        self.start, self.done0, self.last_done, self.last = time.monotonic(), None, None, None
        if enabled:
            from rich.console import Console
            from rich.live import Live

            self.console = Console(stderr=True)
            if self.console.is_terminal:
                self.live = Live(console=self.console, refresh_per_second=2, transient=False)
                self.live.start()

    def __enter__(self) -> "SweepProgress":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __call__(self, statuses: list[RungStatus], note: str = "") -> None:
        if self.console is None:
            return
        done = sum(r.done for r in statuses)
        planned = sum(r.planned or 0 for r in statuses)
        self.done0 = done if self.done0 is None else self.done0
        elapsed = time.monotonic() - self.start
        rate = (done - self.done0) / elapsed if elapsed > 0 else 0.0
        eta = f"{(planned - done) / rate:,.0f} s" if rate > 0 and planned > done else "-"
        title = f"{self.name}: {done}/{planned} trials, {elapsed:,.0f} s elapsed, ETA {eta}" + (f"  [{note}]" if note else "")
        self.last = (statuses, title)
        if self.live is not None:
            self.live.update(status_table(statuses, title), refresh=True)
        elif done != self.last_done:
            self.last_done = done
            self.console.print(title, highlight=False, soft_wrap=True)

    def close(self) -> None:
        if self.live is not None:
            self.live.stop()
        elif self.last is not None:  # the final table, as the live view leaves it on a terminal
            show(self.console, status_table(*self.last))
