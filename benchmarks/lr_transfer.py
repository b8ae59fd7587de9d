"""Learning-rate transfer across width: SP vs muP on the built-in LM (the classic muTransfer figure).

For each parameterisation, width (8x span) and seed, train the same number of tokens at 7 peak learning
rates spaced by 2x, all else equal; report the best rate per width (mean final validation loss over seeds)
and how many grid steps it moves from the narrowest to the widest model. Expected: under muP the optimum
moves by at most one grid step across 8x width; under SP it drifts (to smaller rates as width grows).
muP and SP are the same model at the base width (the narrowest).

Runs go to a pool of single-thread worker processes (two 1-thread processes beat one 2-thread process on
these machines). Writes benchmarks/results/lr_transfer.csv (every run) and lr_transfer.png.

    nice -n 10 .venv/bin/python benchmarks/lr_transfer.py --workers 2
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

RESULTS = Path(__file__).parent / "results"


def one_run(config: dict) -> dict:
    from scaletune.train import run_lm

    row = run_lm(config)
    row.pop("curve")
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--widths", default="32,64,128,256")
    ap.add_argument("--depth", type=int, default=2)
    ap.add_argument("--log2-lrs", default="-11,-10,-9,-8,-7,-6,-5", help="peak LRs as powers of 2")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--tokens", type=int, default=65536, help="training tokens per run (same for every run)")
    ap.add_argument("--batch-size", type=int, default=512, help="tokens per step")
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", default=str(RESULTS / "lr_transfer"))
    args = ap.parse_args()
    widths = [int(w) for w in args.widths.split(",")]
    lrs = [2.0 ** int(e) for e in args.log2_lrs.split(",")]
    configs = [
        {
            "width": w,
            "depth": args.depth,
            "tokens": args.tokens,
            "lr": lr,
            "batch_size": args.batch_size,
            "seq_len": args.seq_len,
            "param": param,
            "base_width": min(widths),
            "base_depth": args.depth,
            "seed": seed,
            "threads": 1,
            "eval_every": 10**9,
            "eval_tokens": 8192,
            "schedule": "cosine:final=0.1",
            "warmup": 0.05,
        }
        for w in sorted(widths, reverse=True)  # longest runs first keeps both workers busy to the end
        for param in ("sp", "mup")
        for seed in range(args.seeds)
        for lr in lrs
    ]
    start = time.perf_counter()
    with ProcessPoolExecutor(args.workers, mp_context=mp.get_context("spawn")) as pool:
        rows = list(pool.map(one_run, configs))
    runs = pd.DataFrame(rows)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    runs.to_csv(out.with_suffix(".csv"), index=False)

    from scaletune.report.train_plots import plot_lr_transfer

    plot_lr_transfer(runs, out.with_suffix(".png"))
    print(
        f"{len(runs)} runs in {time.perf_counter() - start:.0f} s ({args.workers} workers); "
        f"{args.tokens} tokens/run, depth {args.depth}, loss = final validation nats/byte, mean of {args.seeds} seeds"
    )
    print(f"{'param':>5} {'width':>5} " + " ".join(f"{'2^' + e:>8}" for e in args.log2_lrs.split(",")) + "   best lr   diverged")
    table = runs.assign(loss=runs["loss"].where(runs["status"] == "ok"))
    summary = []
    for param in ("sp", "mup"):
        for w in widths:
            sub = table[(table["param"] == param) & (table["width"] == w)]
            # a rate where any seed diverged counts as diverged (NaN), not as the mean of the survivors
            mean = sub.groupby("lr")["loss"].apply(lambda v: v.mean(skipna=False)).reindex(lrs)
            best = float(mean.idxmin())
            summary.append({"param": param, "width": w, "best_lr": best, "best_loss": float(mean.min())})
            cells = " ".join(f"{v:8.4f}" if np.isfinite(v) else f"{'div':>8}" for v in mean)
            print(f"{param:>5} {w:>5} {cells}   2^{int(np.log2(best)):<4}   {int((sub['status'] != 'ok').sum())}")
    summ = pd.DataFrame(summary)
    for param in ("sp", "mup"):
        s = summ[summ["param"] == param].set_index("width")["best_lr"]
        shift = np.log2(s[max(widths)] / s[min(widths)])
        span = np.ptp(np.log2(s.to_numpy()))
        print(
            f"{param}: optimum moves {shift:+.0f} grid steps from width {min(widths)} to {max(widths)} "
            f"(range over widths: {span:.0f} steps)"
        )


if __name__ == "__main__":
    main()
