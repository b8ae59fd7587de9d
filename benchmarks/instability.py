"""Wortsman et al. 2023 ("Small-scale proxies for large-scale Transformer training instabilities") on the
built-in LM at CPU scale: do its qualitative findings hold for tiny byte-level models?

Arms (one intervention at a time against the baseline), each trained at every width x learning rate x seed:

    base      SP, no qk-norm, no z-loss, warm-up 5% of the steps, no weight decay (the paper's unstable setting)
    qknorm    base + qk-norm (RMSNorm on queries and keys per head)
    qknorm_z  qknorm + z-loss 1e-4 (coef * mean z^2 added to the loss, z = logsumexp of the output logits)
    warmup    base with warm-up 25% of the steps
    mup       base under muP (base width = the narrowest width; attention scale 1/head_dim)

Everything else is `run_lm`'s default (AdamW beta2 0.95, eps 1e-8, clipping at 1, cosine to 10%).

LR sensitivity (Wortsman et al., section 3.2): the mean over the tested log-spaced rates of
min(L(lr), L_ref) - L*, with L(lr) the final validation loss (nats/byte; a diverged run counts as L_ref),
L* the best final loss over the grid and L_ref = ln 256 = 5.545 nats, the loss of the uniform prediction,
which is the loss at initialisation of these byte-level models. Computed per seed; the table shows the
mean over seeds and the half range. The paper's rate range is 3e-4..3e-1; here it is --lrs (default 1e-3..1
in half-decades), wide enough to reach divergence at every width.

Findings checked, each printed with the numbers it rests on:
  1. without qk-norm the max attention logit grows with the rate and the width; qk-norm keeps it small;
  2. without qk-norm high-rate runs diverge (or end no better than L_ref) more often at larger widths;
  3. qk-norm lowers LR sensitivity;
  4. z-loss stops output-logit divergence (the log-partition z drifting far from its start, ln 256);
  5. a longer warm-up lowers LR sensitivity;
  6. muP lowers LR sensitivity.

Every run is cached in benchmarks/results/instability_runs.csv (re-read on the next call; only missing
runs are trained; --fresh retrains all). Runs go to single-thread worker processes.

    nice -n 10 .venv/bin/python benchmarks/instability.py --workers 2
    nice -n 10 .venv/bin/python benchmarks/instability.py --report-only    # re-read the CSV
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

RESULTS = Path(__file__).parent / "results"
L_REF = math.log(256)
ARMS = {
    "base": {},
    "qknorm": {"qk_norm": True},
    "qknorm_z": {"qk_norm": True, "z_loss": 1e-4},
    "warmup": {"warmup": 0.25},
    "mup": {"param": "mup"},
}
KEY = ["arm", "width", "lr", "seed", "steps"]  # the cache key: change other settings with a new --out


def one_run(job: tuple[str, dict]) -> dict:
    from scaletune.train import run_lm

    arm, config = job
    row = run_lm(config)
    signals = [p for p in row.pop("curve") if "z_mean" in p]
    z = np.array([p["z_mean"] for p in signals], dtype=float)
    attn = np.array([p["attn_logit_max"] for p in signals], dtype=float)
    return {
        "arm": arm,
        "width": config["width"],
        "lr": config["lr"],
        "seed": config["seed"],
        "param": config.get("param", "sp"),
        "qk_norm": config.get("qk_norm", False),
        "z_loss": config.get("z_loss", 0.0),
        "warmup": row["warmup"],
        "steps": config["tokens"] // config["batch_size"],
        "N": row["N"],
        "loss": row["loss"],
        "status": row["status"],
        "spikes": row["spikes"],
        "max_spike": row["max_spike"],
        "attn_logit_max": row["attn_logit_max"],
        "out_logit_max": row["out_logit_max"],
        # drift of the log-partition from its value at initialisation (ln 256): the output-logit divergence signal
        "z_drift_max": float(np.nanmax(np.abs(z - L_REF))) if np.isfinite(z).any() else float("nan"),
        "attn_final": float(attn[-1]) if len(attn) else float("nan"),
        "seconds": row["seconds"],
    }


def sensitivity(losses: pd.Series) -> float:
    """Wortsman et al.'s LR sensitivity of one (arm, width, seed) sweep: mean of min(L, L_ref) - L*."""
    capped = np.minimum(losses.fillna(L_REF).to_numpy(float), L_REF)
    return float(np.mean(capped - capped.min()))


def summarise(runs: pd.DataFrame) -> tuple[pd.DataFrame, list[tuple[str, bool | None, str]]]:
    """Per (arm, width): sensitivity (mean, half range over seeds), best loss, failures at high rates and
    signal peaks; and the six findings as (claim, holds, numbers)."""
    top = runs["lr"] >= 0.1 - 1e-12
    rows = []
    for (arm, width), g in runs.groupby(["arm", "width"], sort=False):
        sens = g.groupby("seed")["loss"].apply(sensitivity).to_numpy()
        hi = g[top.loc[g.index]]
        failed = ((hi["status"] == "diverged") | ~(hi["loss"] < L_REF)).mean()
        rows.append(
            {
                "arm": arm,
                "width": width,
                "sensitivity": sens.mean(),
                "half_range": (sens.max() - sens.min()) / 2,
                "best_loss": g.groupby("lr")["loss"].mean().min(),
                "failed_high_lr": failed,
                # the run's largest attention logit at lr 0.01 and 0.1 (geometric mean over seeds)
                "attn_lr_1e_2": _log_mean(g[np.isclose(g["lr"], 0.01)]["attn_logit_max"]),
                "attn_lr_1e_1": _log_mean(g[np.isclose(g["lr"], 0.1)]["attn_logit_max"]),
                "z_drift_hi": hi["z_drift_max"].median(),
            }
        )
    table = pd.DataFrame(rows)
    s = table.set_index(["arm", "width"])
    widths = sorted(runs["width"].unique())
    small, large = widths[0], widths[-1]

    def get(arm: str, w: int, col: str = "sensitivity") -> float:
        return float(s.loc[(arm, w), col]) if (arm, w) in s.index else float("nan")

    def finding(claim: str, holds: bool, numbers: list[float], text: str, trend: bool = False) -> tuple[str, bool | None, str]:
        # None: an arm or width that was not run, or a trend in width with one width
        missing = not numbers or np.isnan(numbers).any() or (trend and len(widths) < 2)
        return claim, None if missing else bool(holds), text

    def join(values: list[float], fmt: str) -> str:
        return " / ".join(format(v, fmt) for v in values)

    def lower_sensitivity(claim: str, arm: str) -> tuple[str, bool | None, str]:
        at = widths[1:] if arm == "mup" else widths  # muP is SP at its base width (the narrowest)
        mine, base = [get(arm, w) for w in at], [get("base", w) for w in at]
        return finding(
            claim,
            all(m < b for m, b in zip(mine, base)),
            mine + base,
            ", ".join(f"w{w}: {m:.3f} vs base {b:.3f}" for w, m, b in zip(at, mine, base)),
        )

    label = f"(widths {'/'.join(map(str, widths))})"
    a, q = [get("base", w, "attn_lr_1e_1") for w in widths], [get("qknorm", w, "attn_lr_1e_1") for w in widths]
    fb, fq = [get("base", w, "failed_high_lr") for w in widths], [get("qknorm", w, "failed_high_lr") for w in widths]
    zb, zz = [get("qknorm", w, "z_drift_hi") for w in widths], [get("qknorm_z", w, "z_drift_hi") for w in widths]
    findings = [
        finding(
            "1. no qk-norm: attention logits grow with width at lr 0.1; qk-norm keeps them small",
            a[-1] > a[0] and q[-1] < a[-1],
            a + q,
            f"max logit base {join(a, ',.0f')}; qk-norm {join(q, ',.1f')} {label}",
            trend=True,
        ),
        finding(
            "2. no qk-norm: high-rate runs (lr >= 0.1) fail more often at larger width",
            fb[-1] > fb[0],
            fb,
            f"failed fraction base {join(fb, '.2f')}; qk-norm {join(fq, '.2f')} {label}",
            trend=True,
        ),
        lower_sensitivity("3. qk-norm lowers LR sensitivity (every width)", "qknorm"),
        finding(
            "4. z-loss keeps the log-partition z near its start at lr >= 0.1 (median max |z - ln256|)",
            all(z2 < z1 for z1, z2 in zip(zb, zz)),
            zb + zz,
            f"qk-norm {join(zb, '.2f')}; + z-loss {join(zz, '.2f')} {label}",
        ),
        lower_sensitivity("5. a longer warm-up (25% vs 5%) lowers LR sensitivity (every width)", "warmup"),
        lower_sensitivity("6. muP lowers LR sensitivity (every width above its base)", "mup"),
        finding(
            f"   (context) baseline sensitivity grows from width {small} to {large}",
            get("base", large) > get("base", small),
            [get("base", small), get("base", large)],
            f"{get('base', small):.3f} -> {get('base', large):.3f}",
            trend=True,
        ),
    ]
    return table, findings


def _log_mean(values: pd.Series) -> float:
    v = values[np.isfinite(values) & (values > 0)]
    return float(10 ** np.log10(v).mean()) if len(v) else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--widths", default="32,64,128")
    ap.add_argument("--depth", type=int, default=2)
    ap.add_argument("--lrs", default="1e-3,3e-3,1e-2,3e-2,1e-1,3e-1,1", help="peak learning rates")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--batch-size", type=int, default=1024, help="tokens per step")
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--arms", default=",".join(ARMS))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--fresh", action="store_true", help="retrain every run instead of reusing the CSV")
    ap.add_argument("--report-only", action="store_true", help="only re-read the CSV")
    ap.add_argument("--out", default=str(RESULTS / "instability_runs.csv"))
    args = ap.parse_args()
    widths = [int(w) for w in args.widths.split(",")]
    lrs = [float(x) for x in args.lrs.split(",")]
    arms = args.arms.split(",")
    base = {
        "depth": args.depth,
        "tokens": args.steps * args.batch_size,
        "batch_size": args.batch_size,
        "seq_len": args.seq_len,
        "param": "sp",
        "base_width": min(widths),
        "base_depth": args.depth,
        "warmup": 0.05,
        "schedule": "cosine:final=0.1",
        "weight_decay": 0.0,
        "threads": 1,
        "eval_every": 10**9,
        "eval_tokens": 8192,
        "signals_every": 10,
    }
    # seed-major, so an interrupted benchmark holds complete seeds; widest first within a seed
    jobs = [
        (arm, {**base, "width": w, "lr": lr, "seed": seed, **ARMS[arm]})
        for seed in range(args.seeds)
        for w in sorted(widths, reverse=True)
        for arm in arms
        for lr in lrs
    ]
    out = Path(args.out)
    cached = pd.read_csv(out) if out.exists() and not args.fresh else pd.DataFrame(columns=KEY)
    done = {tuple(r) for r in cached[KEY].astype(object).itertuples(index=False)}
    todo = [j for j in jobs if (j[0], j[1]["width"], j[1]["lr"], j[1]["seed"], args.steps) not in done]
    start = time.perf_counter()
    if todo and not args.report_only:
        rows = []
        with ProcessPoolExecutor(args.workers, mp_context=mp.get_context("spawn")) as pool:
            for row in pool.map(one_run, todo):
                rows.append(row)
                # written after every run (atomically) so an interrupted benchmark keeps what it trained
                pd.concat([cached, pd.DataFrame(rows)], ignore_index=True).to_csv(out.with_suffix(".tmp"), index=False)
                out.with_suffix(".tmp").replace(out)
        cached = pd.read_csv(out)
    wanted = {(a, c["width"], c["lr"], c["seed"], args.steps) for a, c in jobs}
    runs = cached[[tuple(r) in wanted for r in cached[KEY].astype(object).itertuples(index=False)]]
    # only complete sweeps (every rate of the grid) enter the sensitivity: a partial one would understate it
    complete = runs.groupby(["arm", "width", "seed"])["lr"].transform("nunique") == len(lrs)
    runs = runs[complete].reset_index(drop=True)
    print(
        f"{len(runs)} runs ({len(todo) if not args.report_only else 0} trained now, "
        f"{time.perf_counter() - start:.0f} s wall now; {runs['seconds'].sum():.0f} s summed over the runs); "
        f"{args.steps} steps x {args.batch_size} tokens, depth {args.depth}, seq_len {args.seq_len}, "
        f"{args.seeds} seeds, lrs {lrs}"
    )
    table, findings = summarise(runs)
    print(f"L_ref = ln 256 = {L_REF:.3f}; sensitivity = mean over lrs of min(L, L_ref) - L* (mean over seeds +- half range)")
    print(f"{'arm':<9} {'width':>5} {'sensitivity':>14} {'best L':>7} {'fail@hi':>7} {'attn@0.01':>9} {'attn@0.1':>9} {'|z-ln256|@hi':>12}")
    for r in table.itertuples(index=False):
        print(
            f"{r.arm:<9} {r.width:>5} {r.sensitivity:>7.3f} +-{r.half_range:<5.3f} {r.best_loss:>7.3f} "
            f"{r.failed_high_lr:>7.2f} {r.attn_lr_1e_2:>9,.1f} {r.attn_lr_1e_1:>9,.1f} {r.z_drift_hi:>12.2f}"
        )
    print()
    for claim, holds, numbers in findings:
        print(f"{'n/a  ' if holds is None else 'holds' if holds else 'NOT  '}  {claim}\n       {numbers}")


if __name__ == "__main__":
    main()
