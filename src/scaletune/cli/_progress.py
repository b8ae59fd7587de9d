"""Rendering of a sweep's progress for the command line: the per-rung status table and the live view that
`run_study` feeds through its ``progress`` callback (the library itself never prints)."""

from __future__ import annotations

import time

from scaletune.study.results import RungStatus


def status_table(statuses: list[RungStatus], title: str):
    """A rich table of per-rung progress: done/planned, running, outcomes, best loss and where."""
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    names = " ".join(statuses[0].scale) if statuses else "scale"
    for col in ("rung", names, "done", "run", "outcomes", "best loss", "best at"):
        table.add_column(col, justify="left" if col in (names, "outcomes", "best at") else "right",
                         no_wrap=col != "best at", overflow="fold", min_width=10 if col == "best at" else None)
    for r in statuses:
        outcomes = ", ".join(f"{r.counts[k]} {k}" for k in ("ok", "diverged", "failed", "pruned") if r.counts.get(k))
        table.add_row(str(r.index), " ".join(f"{v:.3g}" for v in r.scale.values()),
                      f"{r.done}/{r.planned if r.planned is not None else '?'}", str(r.counts.get("running", 0)),
                      outcomes or "-", f"{r.best_loss:.4f}" if r.best_loss is not None else "-",
                      " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                               for k, v in (r.best_params or {}).items()))
    return table


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
        title = (f"{self.name}: {done}/{planned} trials, {elapsed:,.0f} s elapsed, ETA {eta}"
                 + (f"  [{note}]" if note else ""))
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
            self.console.print(status_table(*self.last))
