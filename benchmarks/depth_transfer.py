"""Learning-rate transfer across depth: muP vs CompleteP on the built-in LM.

Width fixed, depth varied; for each parameterisation, depth and seed, train the same number of tokens at
peak learning rates spaced by 2x, all else equal. The optimum per depth comes from `find_optima` (convex
fit around the best rate, bootstrap interval, bracketing check) and the shift across depth and the fitted
depth exponent (lr* ~ depth^e) from `transfer_report`, the same code `scaletune recommend` uses.
Expected (Dey et al. 2025, "Don't be lazy: CompleteP enables compute-efficient deep transformers"): under
muP, which scales with width only, the optimum drifts with depth; under CompleteP (alpha = 1: residual
branches times 1/l, block learning rates unchanged, l = depth / base_depth) it stays.

muP runs use base_depth = depth: the muP rules do not depend on depth, but `parameterize` applies the
CompleteP learning-rate factor l^(alpha-1) with alpha = 0 (i.e. 1/l) to in-block parameters under sp and mup
too, so any base_depth other than depth would not be plain muP. At l = 1 every rule is the identity, so this
is plain muP whether or not that is changed. At the base depth the two parameterisations are the same model.

Every run is cached in benchmarks/results/depth_transfer.csv (keyed by its configuration), so a rerun, or
one with more seeds, trains only what is missing; the report goes to depth_transfer.json.

    nice -n 10 .venv/bin/python benchmarks/depth_transfer.py --workers 2
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np
import pandas as pd

RESULTS = Path(__file__).parent / "results"
KEY = ["param", "width", "depth", "base_width", "base_depth", "lr", "seed", "tokens", "batch_size", "seq_len"]


def one_run(config: dict) -> dict:
    from scaletune.train import run_lm

    row = run_lm(config)
    row.pop("curve")
    row["tokens"] = config["tokens"]  # requested budget: the cache key (D is what was trained)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--depths", default="1,2,4,8")
    ap.add_argument("--base-depth", type=int, default=1, help="CompleteP's base depth (l = depth / base_depth)")
    ap.add_argument("--params", default="mup,completep")
    ap.add_argument("--log2-lrs", default="-9,-8,-7,-6,-5,-4,-3", help="peak LRs as powers of 2")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--tokens", type=int, default=262144, help="training tokens per run (same for every run)")
    ap.add_argument("--batch-size", type=int, default=512, help="tokens per step")
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--bootstrap", type=int, default=400, help="bootstrap resamples per depth's optimum")
    ap.add_argument("--out", default=str(RESULTS / "depth_transfer"))
    args = ap.parse_args()
    depths = [int(d) for d in args.depths.split(",")]
    params = args.params.split(",")
    lrs = [2.0 ** int(e) for e in args.log2_lrs.split(",")]
    configs = [
        {
            "width": args.width,
            "depth": d,
            "tokens": args.tokens,
            "lr": lr,
            "batch_size": args.batch_size,
            "seq_len": args.seq_len,
            "param": param,
            "base_width": args.width,
            "base_depth": d if param == "mup" else args.base_depth,  # see the module docstring
            "seed": seed,
            "threads": 1,
            "eval_every": 10**9,
            "eval_tokens": 8192,
            "schedule": "cosine:final=0.1",
            "warmup": 0.05,
        }
        for d in sorted(depths, reverse=True)  # longest runs first keeps both workers busy to the end
        for param in params
        for seed in range(args.seeds)
        for lr in lrs
    ]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    cache_path = out.with_suffix(".csv")
    cache = pd.read_csv(cache_path) if cache_path.exists() else pd.DataFrame(columns=KEY)
    done = {tuple(r) for r in cache[KEY].itertuples(index=False)}
    todo = [c for c in configs if tuple(c[k] for k in KEY) not in done]
    start = time.perf_counter()
    if todo:
        with ProcessPoolExecutor(args.workers, mp_context=mp.get_context("spawn")) as pool:
            for future in as_completed([pool.submit(one_run, c) for c in todo]):
                # appended one at a time: an interrupted benchmark keeps every finished run
                row = pd.DataFrame([future.result()])
                row.to_csv(cache_path, mode="a", header=not cache_path.exists(), index=False)
    elapsed = time.perf_counter() - start
    runs = pd.read_csv(cache_path)
    wanted = pd.DataFrame([{k: c[k] for k in KEY} for c in configs]).drop_duplicates()
    runs = runs.merge(wanted, on=KEY)  # this configuration only, even if the cache holds others

    from scaletune.hparams.laws import transfer_report
    from scaletune.hparams.optimum import find_optima

    print(
        f"{len(todo)} runs trained in {elapsed:.0f} s ({args.workers} workers), {len(runs) - len(todo)} from the cache; "
        f"width {args.width}, {args.tokens} tokens/run, loss = final validation nats/byte, mean of {args.seeds} seed(s)"
    )
    report = {"config": vars(args), "params": {}}
    for param in params:
        sub = runs[runs["param"] == param]
        print(f"\n{param}" + (f" (base depth {args.base_depth}, alpha 1)" if param == "completep" else " (width-only rules)"))
        print(
            f"{'depth':>5} "
            + " ".join(f"{'2^' + e:>7}" for e in args.log2_lrs.split(","))
            + "   best tested   fitted lr* [95% interval]   bracketed"
        )
        # default grouping (N, D): at fixed width N grows with depth, so every depth is its own scale
        optima = find_optima(sub, bootstrap=args.bootstrap, seed=0)
        by_depth = {o.extra["depth"]: o for o in optima}
        ok = sub.assign(loss=sub["loss"].where(sub["status"] == "ok"))
        for d in depths:
            # a rate where any seed diverged shows as diverged, not as the mean of the survivors
            mean = ok[ok["depth"] == d].groupby("lr")["loss"].apply(lambda v: v.mean(skipna=False)).reindex(lrs)
            cells = " ".join(f"{v:7.4f}" if np.isfinite(v) else f"{'div':>7}" for v in mean)
            o = by_depth.get(d)
            fitted = (
                f"{o.lr_:.3g} [{o.lr_interval[0]:.3g}, {o.lr_interval[1]:.3g}]   {'yes' if o.lr_bracketed else 'NO: ' + o.message}"
                if o is not None
                else "no optimum (fewer than 3 ok rates)"
            )
            print(f"{d:>5} {cells}   2^{int(np.log2(mean.idxmin())):<10}  {fitted}")
        per_seed = ok.groupby(["seed", "depth"])["loss"].idxmin()
        best = ok.loc[per_seed.dropna().astype(int)].pivot(index="seed", columns="depth", values="lr")
        print(
            "best tested rate per seed (log2), depths "
            + ", ".join(str(d) for d in depths)
            + ": "
            + "; ".join(f"seed {s}: " + " ".join(f"{np.log2(v):+.0f}" for v in best.loc[s, depths]) for s in best.index)
        )
        rep = transfer_report(optima)
        rows = rep.depth_rows if rep is not None else ()
        for r in rows:
            (lo, hi), (elo, ehi) = r["shift_interval"], r["exponent_interval"]
            print(
                f"depth {r['depth_shallow']:g} -> {r['depth_deep']:g}: lr* x{r['shift']:.2f} [{lo:.2f}, {hi:.2f}] "
                f"({math.log2(r['shift']):+.2f} grid steps); lr* ~ depth^{r['exponent']:+.3f} [{elo:+.3f}, {ehi:+.3f}] "
                f"over {len(r['depths'])} depths; transfer {'held' if r['held'] else 'did NOT hold'}"
            )
        if not rows:
            print("fewer than 2 bracketed depths: no depth transfer to report")
        report["params"][param] = {
            "optima": [o.to_dict() for o in optima],
            "depth_rows": list(rows),
            "depth_note": rep.depth_note if rep is not None else "",
        }
    out.with_suffix(".json").write_text(json.dumps(report, indent=1, default=float))


if __name__ == "__main__":
    main()
