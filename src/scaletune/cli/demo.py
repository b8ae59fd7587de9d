"""`scaletune demo`: the whole loop on embedded defaults, checked at the end against real training.

1. A ladder of muP proxies of the built-in LM on the bundled text (3 widths x 3 token budgets), each swept
   over 6 learning rates spaced by 2x, then a learning-rate x batch-size sweep of the largest proxy at the
   target's token budget: studies in an SQLite file, run by the local runner.
2. The optimum per scale, the learning-rate laws and the loss law, fitted on the proxies only.
3. A recommendation for a target with about 11x the non-embedding (8.4x the total) parameters of the
   largest proxy, beside StepLaw and DeepSeek LLM.
4. The target trained at the recommended settings and at neighbouring learning rates (a second study in
   the same storage): predicted vs measured loss, and whether the recommended rate landed in the measured
   near-optimal band.

Everything lands in one output folder: the study file and database, runs.csv, target_runs.csv, fits.json
(optima, laws, recommendation, check), and the figures.

It lives in the command-line layer: it is a script over the library (studies, fits, recommendation, report)
that renders each stage as it goes, as a command does.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from scaletune.errors import ScaletuneError


@dataclass(frozen=True)
class DemoConfig:
    """The embedded defaults. Tokens are training tokens D; batch sizes tokens per step (64-token sequences)."""

    widths: tuple[int, ...] = (24, 32, 48)
    tokens: tuple[int, ...] = (2**16, 2**17, 2**19)
    lrs: tuple[float, ...] = (6.25e-4, 1.25e-3, 2.5e-3, 5e-3, 1e-2, 2e-2)
    target_width: int = 160
    target_tokens: int = 2**19
    neighbours: tuple[float, ...] = (0.25, 0.5, 2.0, 4.0)  # target lrs = recommended x these factors
    depth: int = 2
    batch_size: int = 1024
    # Batch sizes (tokens) swept at the largest proxy at the target's token budget, with their rates. On this
    # LM the optimal batch grows with N (one sequence at width 24; 128-256 tokens at width 48 and at the
    # target), so the sweep nearest the target is the informative one (benchmarks/transfer.py
    # --near-sweep-only); the ladder's batch size is the sweep's fourth.
    batch_sweep: tuple[int, ...] = (64, 128, 256)
    batch_sweep_lrs: tuple[float, ...] = (3.125e-4, 6.25e-4, 1.25e-3, 2.5e-3)
    seq_len: int = 64
    fixed: dict = field(
        default_factory=lambda: {
            # QK-norm: without it these tiny-batch runs spike and get stopped as diverged well below the optimum.
            "param": "mup",
            "qk_norm": True,
            "eval_tokens": 8192,
            "schedule": "cosine:final=0.1",
            "warmup": 0.05,
        }
    )


# A minute-long version for CI: the same pipeline, too small for its numbers to mean much.
TINY = DemoConfig(
    widths=(16, 24),
    tokens=(2**12, 2**13),
    lrs=(2.5e-3, 5e-3, 1e-2, 2e-2, 4e-2),
    target_width=48,
    target_tokens=2**13,
    neighbours=(0.5, 2.0),
    batch_size=128,
    batch_sweep=(64, 256),
    batch_sweep_lrs=(1.25e-3, 2.5e-3, 5e-3, 1e-2),
    fixed={"param": "mup", "qk_norm": True, "eval_tokens": 2048, "schedule": "cosine:final=0.1", "warmup": 0.05},
)


def _study(name: str, out: Path, widths, tokens, lrs, demo: DemoConfig, batch_sizes) -> dict:
    """A grid study over the rates (and the batch sizes, if several) at every (width, tokens) of the ladder."""
    fixed = {**demo.fixed, "depth": demo.depth, "seq_len": demo.seq_len}
    space: dict[str, Any] = {"lr": {"choices": [float(x) for x in lrs]}}
    if len(batch_sizes) == 1:
        fixed["batch_size"] = int(batch_sizes[0])
    else:
        space["batch_size"] = {"choices": [int(b) for b in batch_sizes]}
    return {
        "name": name,
        "workload": "lm",  # the built-in LM (scaletune.train.run_lm); the ladder's tokens become its D
        "storage": f"sqlite:///{(out / 'demo.db').resolve()}",
        "seeds": [0],
        "threads": 1,
        "fixed": fixed,
        "ladder": {"width": list(widths), "tokens": list(tokens)},
        "space": space,
        "strategy": "grid",
    }


def _toml(study: dict) -> str:
    """The study as a TOML file (the same content `scaletune sweep` accepts)."""

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + " }"
        return repr(v)

    lines = []
    for k, v in study.items():
        if not isinstance(v, dict):
            lines.append(f"{k} = {value(v)}")
    for k, v in study.items():
        if isinstance(v, dict):
            lines += ["", f"[{k}]"] + [f"{kk} = {value(vv)}" for kk, vv in v.items()]
    return "\n".join(lines) + "\n"


def _params(width: int, demo: DemoConfig) -> dict[str, int]:
    from scaletune.train import count_params
    from scaletune.train.model import LMConfig

    return count_params(LMConfig(width=width, depth=demo.depth, seq_len=demo.seq_len))


def _round_batch(tokens: float, demo: DemoConfig, budget: int) -> int:
    """A batch size the trainer accepts: a power-of-two number of sequences that divides the budget."""
    seqs = 2 ** max(0, int(round(math.log2(max(tokens / demo.seq_len, 1)))))
    while budget % (seqs * demo.seq_len) and seqs > 1:
        seqs //= 2
    return seqs * demo.seq_len


def run_demo(
    out: str | Path | None = None, tiny: bool = False, workers: int | None = None, demo: DemoConfig | None = None
) -> dict[str, Any]:
    """Run the demo; returns the check (predicted vs measured) and writes everything into ``out``."""
    from rich.console import Console

    from scaletune.cli._progress import SweepProgress
    from scaletune.cli._tables import show
    from scaletune._json import dumps
    from scaletune.cli.hparams_cmds import optima_table, print_recommendation
    from scaletune.hparams.optimum import find_optima, find_optimum
    from scaletune.hparams.recommend import recommend
    from scaletune.runtable import ok_runs, write_table
    from scaletune.study import export_runs, load_study_config, run_study

    demo = demo or (TINY if tiny else DemoConfig())
    console = Console()
    out = Path(out or f"scaletune-out-demo-{time.strftime('%Y%m%d-%H%M%S')}")
    out.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    proxy_n = {w: _params(w, demo) for w in demo.widths}
    target_n = _params(demo.target_width, demo)
    largest = proxy_n[max(demo.widths)]
    console.rule("[bold]scaletune demo: sweep small muP proxies -> fit -> recommend -> check at the target")
    console.print(
        f"proxies: widths {list(demo.widths)} (depth {demo.depth}, N = {min(v['N'] for v in proxy_n.values()):,}"
        f"-{largest['N']:,} parameters, total), tokens {list(demo.tokens)}, {len(demo.lrs)} learning rates "
        f"{demo.lrs[0]:g}-{demo.lrs[-1]:g} (muP base rates), batch {demo.batch_size} tokens; then "
        f"width {max(demo.widths)} at D = {demo.target_tokens:,} over batch {list(demo.batch_sweep)} tokens x "
        f"{len(demo.batch_sweep_lrs)} rates"
    )
    console.print(
        f"target:  width {demo.target_width}, N = {target_n['N']:,} ({target_n['N'] / largest['N']:.1f}x total, "
        f"{target_n['N_nonembed'] / largest['N_nonembed']:.1f}x non-embedding parameters of the largest proxy), "
        f"D = {demo.target_tokens:,} tokens"
    )
    console.print(f"output:  {out}/")

    # 1. The proxy sweeps: studies in SQLite, run by the local runner (resumable: rerun the command).
    study = _study("demo-proxies", out, demo.widths, demo.tokens, demo.lrs, demo, (demo.batch_size,))
    bstudy = _study("demo-batch", out, (max(demo.widths),), (demo.target_tokens,), demo.batch_sweep_lrs, demo, demo.batch_sweep)
    console.rule("1. sweep of the proxies")
    parts = []
    for spec, toml in ((study, "demo_study.toml"), (bstudy, "demo_batch.toml")):
        (out / toml).write_text(_toml(spec))
        config = load_study_config(spec, base_dir=out)
        with SweepProgress(config.name) as view:
            run_study(config, workers=workers, progress=view)
        parts.append(export_runs(config))
    # One table; scales are (N, D): the two studies' rung numbers would collide.
    runs = pd.concat(parts, ignore_index=True).drop(columns=["rung"])
    runs.attrs["source"] = "demo proxies"
    write_table(runs, out / "runs.csv")

    # 2-3. Fits and recommendation from the proxies only.
    console.rule("2. optimum per scale and laws (proxies only)")
    with console.status("locating the optimum of each scale (convex fits, bootstrap over runs)"):
        optima = find_optima(runs, bootstrap=200)
    show(console, optima_table(optima, "Optimum per scale (vertex of a convex fit in ln lr, 95% bootstrap over runs)"))
    point = {
        "N": float(target_n["N"]),
        "D": float(demo.target_tokens),
        "N_nonembed": float(target_n["N_nonembed"]),
        "width": float(demo.target_width),
        "depth": float(demo.depth),
        "seq_len": float(demo.seq_len),
    }
    with console.status("fitting lr*(N, D), lr*(N, D, B), lr*(C) and the loss law (two-level bootstrap)"):
        rec = recommend(runs, point, optima=optima, bootstrap=400, loss_bootstrap=100)
    console.rule("3. recommendation at the target")
    print_recommendation(rec, console)

    # 4. Train the target at the recommended settings and neighbouring rates.
    console.rule("4. check: the target trained at the recommended and neighbouring learning rates")
    lr_rec = float(rec.lr.value)
    batch = _round_batch(rec.batch_size.value, demo, demo.target_tokens)
    target_lrs = sorted([lr_rec] + [lr_rec * f for f in demo.neighbours])
    tstudy = _study("demo-target", out, (demo.target_width,), (demo.target_tokens,), target_lrs, demo, (batch,))
    (out / "demo_target.toml").write_text(_toml(tstudy))
    tconfig = load_study_config(tstudy, base_dir=out)
    with SweepProgress(tconfig.name) as view:
        run_study(tconfig, workers=workers, progress=view)
    truns = export_runs(tconfig)
    write_table(truns, out / "target_runs.csv")

    ok = ok_runs(truns)
    at_rec = ok[np.isclose(ok["lr"], lr_rec)]
    measured = float(at_rec["loss"].mean()) if len(at_rec) else math.nan
    best = ok.loc[ok["loss"].idxmin()] if len(ok) else None
    check: dict[str, Any] = {
        "target": point,
        "recommended_lr": lr_rec,
        "recommended_lr_interval": list(rec.lr.interval),
        "batch_size_tokens": batch,
        "measured_loss_at_recommended": measured,
        "predicted_loss": None if rec.loss is None else rec.loss.value,
        "predicted_loss_interval": None if rec.loss is None else list(rec.loss.interval),
        "best_measured_lr": None if best is None else float(best["lr"]),
        "best_measured_loss": None if best is None else float(best["loss"]),
        "diverged": int((truns["status"] == "diverged").sum()),
    }
    try:
        tgt_opt = find_optimum(truns, bootstrap=200, scale={"N": point["N"], "D": point["D"]})
        check.update(
            measured_optimum=tgt_opt.to_dict(),
            band_lr=list(tgt_opt.band_lr),
            recommended_in_band=bool(tgt_opt.band_lr[0] * (1 - 1e-9) <= lr_rec <= tgt_opt.band_lr[1] * (1 + 1e-9)),
            measured_optimum_lr=tgt_opt.lr_,
            measured_optimum_bracketed=tgt_opt.bracketed,
        )
    except ScaletuneError as exc:
        check.update(measured_optimum=None, recommended_in_band=None, note=str(exc))
    if best is not None and math.isfinite(measured):
        check["gap_to_best_measured_percent"] = 100 * (measured / float(best["loss"]) - 1)
    if rec.loss is not None and math.isfinite(measured):
        check["loss_prediction_error_percent"] = 100 * (rec.loss.value / measured - 1)
        check["loss_prediction_covered"] = bool(rec.loss.interval[0] <= measured <= rec.loss.interval[1])

    from scaletune.cli._tables import Col, FitTable

    table = FitTable(
        "Predicted (from proxies) vs measured (at the target)",
        [Col("", "left", wrap=True), Col("predicted"), Col("measured", "left", wrap=True)],
    )
    from scaletune.cli.hparams_cmds import fmt, fmt_iv

    table.add_row(
        "learning rate (muP base)",
        f"{fmt(lr_rec)} {fmt_iv(rec.lr.interval)}",
        f"best {fmt(check['best_measured_lr'])}; vertex {fmt(check.get('measured_optimum_lr'))}; band {fmt_iv(check.get('band_lr'))}",
    )
    table.add_row(
        "loss at the recommended lr (nats/token)",
        "-" if rec.loss is None else f"{rec.loss.value:.4f} {fmt_iv(rec.loss.interval)}",
        f"{measured:.4f}",
    )
    table.add_row(
        "recommended lr in the measured 0.25% band",
        "",
        {True: "[green]yes[/]", False: "[red]no[/]", None: "-"}[check.get("recommended_in_band")],
    )
    if "gap_to_best_measured_percent" in check:
        table.add_row("loss gap to the best measured rate", "", f"{check['gap_to_best_measured_percent']:+.2f}%")
    show(console, table)

    # Records and figures.
    fits = {
        "optima": [o.to_dict() for o in optima],
        "laws": rec.laws.to_dict(),
        "recommendation": rec.to_dict(),
        "check": check,
        "demo_config": {k: getattr(demo, k) for k in demo.__dataclass_fields__},
        "seconds": time.monotonic() - start,
    }
    (out / "fits.json").write_text(dumps(fits))
    try:
        from scaletune.report.hparams_plots import plot_laws, plot_sweeps, plot_target_check

        plot_sweeps(runs, optima, out / "sweeps.png")
        plot_laws(rec, out / "laws.png", measured=check)
        plot_target_check(truns, rec, out / "target.png")
        figures = "sweeps.png, laws.png, target.png"
    except ImportError as exc:  # matplotlib missing: the numbers are still written
        figures = f"(no figures: {exc})"
    try:  # the HTML report of the whole folder, from the fits above (plotly: the report extra)
        from scaletune.cli.report_cmds import write_folder_report

        write_folder_report(out, optima=optima, rec=rec, command="scaletune demo")
        figures += ", report.html"
    except ImportError as exc:
        figures += f" (no report.html: {exc})"
    console.rule(f"done in {time.monotonic() - start:.0f} s")
    console.print(
        f"output folder: [bold]{out.resolve()}[/]\n  runs.csv, target_runs.csv, fits.json, {figures}, "
        f"demo_study.toml, demo_batch.toml, demo_target.toml, demo.db (Optuna storage)"
    )
    return check
