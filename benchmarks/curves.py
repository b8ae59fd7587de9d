"""Benchmarks of scaletune.curves, each printing its numbers side by side in one run.

    .venv/bin/python benchmarks/curves.py protocol  # the published multipowerlaw protocol, both laws, 25M and 100M
    .venv/bin/python benchmarks/curves.py eval      # multipower evaluation time on a 72,000-step schedule
    .venv/bin/python benchmarks/curves.py intervals # coverage of held-out final losses: parameter-only vs with law error
    .venv/bin/python benchmarks/curves.py pruner    # curve pruner vs no pruning vs Optuna's median pruner
    .venv/bin/python benchmarks/curves.py lm        # built-in LM: predict a WSD run; optimise the cooldown

Training runs use `scaletune.train.run_lm` on CPU (1 thread, tiny models). Runs are deterministic for a
given config and seed, so the LR sweep trains each learning rate once to the end and *replays* its
reported validation losses through each pruner: a pruned trial costs the steps it ran before the pruner
stopped it, exactly what it would have cost live.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from scaletune.curves import curve_from_arrays, fit_curves
from scaletune.curves._multipower import loss_drop_exact
from scaletune.curves.laws import get_curve_law, prepare
from scaletune.curves.search import optimise_schedule
from scaletune.schedules import Schedule

THETA_25M = np.array([3.04045406, 0.52468604, 0.50786857, 363.78751622, 2.06560812, 0.58279013, 0.64142257])


def bench_protocol() -> None:
    """Fit the published protocol's 3 curves; score the 6 others as Luo et al. do (each metric per curve, then
    averaged over the curves; SOURCE.md: only the files ending at step 24,000 are cut, the 72,000-step curves
    are predicted to their end), and pooled over all test points."""
    from pathlib import Path

    import pandas as pd

    from scaletune.curves import CurveFit, evaluate_fit, read_curves
    from scaletune.curves.fit import _points, _Problem

    data = Path(__file__).resolve().parents[1] / "tests" / "data" / "multipowerlaw"
    specs = dict(pd.read_csv(data / "schedules.csv").values)
    train = ["cosine_24000", "constant_24000", "wsdcon_9"]
    test = ["constant_72000", "cosine_72000", "wsd_20000_24000", "wsdld_20000_24000", "wsdcon_3", "wsdcon_18"]
    # the paper's metrics as their repository's README gives them (R2, PredE, WorstE)
    published = {"25": (0.9988, 0.00110, 0.00409), "100": (0.9983, 0.00142, 0.00583)}
    params = {"25": THETA_25M, "100": np.array([2.6514477, 0.60115152, 0.45295811, 437.9464276, 2.13245612, 0.59785199, 0.65523644])}
    print("Fit on cosine_24000, constant_24000, wsdcon_9; scored on the 6 other schedules (the 72,000-step curves to their")
    print("end). Paper's scoring: R2, mean and worst relative error per curve, averaged over the 6 curves; pooled: over all")
    print("test points together. Training objective: summed Huber (delta 1e-3, natural-log residuals) on the 3 fitted curves.\n")
    print(
        "| model | law, fit | training objective | R2 | mean rel. error | worst | pooled: R2 | pooled: mean rel. error | pooled: worst | fit seconds |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for size in ("25", "100"):

        def load(names):
            out = []
            for n in names:
                path = data / f"csv_{size}" / f"{n}.csv"
                cut = pd.read_csv(path, usecols=["step"]).step.iloc[-1] == 24000
                out.append(read_curves(path, specs[n], max_step=24000 if cut else None)[0])
            return out

        tr, test_curves = load(train), load(test)
        problem = _Problem(get_curve_law("multipower"), _points(tr), {}, "huber")
        r2, mre, worst = published[size]
        print(
            f"| {size}M | multipower, published fit and metrics (Luo et al. 2025) | | {r2:.4f} | {100 * mre:.3f}% | {100 * worst:.2f}% | | | | |"
        )

        def row(label, fit, objective, sec=None):
            m = evaluate_fit(fit, test_curves)
            mp = m["pooled"]
            print(
                f"| {size}M | {label} | {objective:.3e} | {m['r2']:.5f} | {100 * m['mean_rel_error']:.3f}% | {100 * m['max_rel_error']:.2f}% "
                f"| {mp['r2']:.5f} | {100 * mp['mean_rel_error']:.3f}% | {100 * mp['max_rel_error']:.2f}% | {'' if sec is None else f'{sec:.1f}'} |"
            )
            return m

        theta = dict(zip(get_curve_law("multipower").params, params[size]))
        described = tuple({"last_step": int(c.steps[-1]), "area": c.area} for c in tr)  # for the extrapolation record
        pub = CurveFit("multipower", theta, {k: (v, v) for k, v in theta.items()}, {}, "huber", {}, described)
        m = row("multipower, published parameters, scored here", pub, problem.natural_value_and_grad(params[size])[0])
        for law, method, label in [
            ("multipower", "luo2025", "multipower, published protocol (scaletune default)"),
            ("multipower", "lbfgs", "multipower, converged L-BFGS-B"),
            ("annealing", "lbfgs", "annealing (scaletune)"),
        ]:
            t0 = time.perf_counter()
            fit = fit_curves(tr, law=law, bootstrap=0, method=method)
            row(label, fit, fit.diagnostics["objective_value"], time.perf_counter() - t0)
        print(f"| {size}M | test points: {m['n_points']} on {m['n_curves']} curves | | | | | | | | |")


def bench_intervals(bootstrap: int) -> None:
    """Fit the protocol's 3 curves; predict the 6 held-out curves' final losses (last logged step, up to
    71,920); count how many lie in the parameter-only interval and in the interval with the law's error,
    for the earlier default (block bootstrap over points, in-sample law error) and the current one (whole-curve
    bootstrap, leave-one-schedule-out law error growing with the step ratio, protocol chosen by it)."""
    from pathlib import Path

    import pandas as pd

    from scaletune.curves import read_curves

    data = Path(__file__).resolve().parents[1] / "tests" / "data" / "multipowerlaw"
    specs = dict(pd.read_csv(data / "schedules.csv").values)
    train = ["cosine_24000", "constant_24000", "wsdcon_9"]
    test = ["constant_72000", "cosine_72000", "wsd_20000_24000", "wsdld_20000_24000", "wsdcon_3", "wsdcon_18"]
    configs = {
        "blocks, in-sample law error (earlier default)": dict(resample="blocks", cv=False, bootstrap=20),
        "whole curves, held-out law error (default)": dict(resample="curves", cv=True, bootstrap=bootstrap),
    }
    print("95% intervals; held-out final losses: 6 per model size\n")
    print(
        "| model | law | intervals | protocol | law error (method: relative sd) | covered: parameters only | covered: with law error | mean width: parameters only | mean width: with law error |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for size in ("25", "100"):
        tr = [read_curves(data / f"csv_{size}" / f"{n}.csv", specs[n], max_step=24000)[0] for n in train]
        te = [read_curves(data / f"csv_{size}" / f"{n}.csv", specs[n])[0] for n in test]
        for law in ("multipower", "annealing"):
            for label, kw in configs.items():
                fit = fit_curves(tr, law=law, seed=0, **kw)
                err = fit.diagnostics["model_error"]
                rows = []
                for c in te:
                    p = fit.predict_interval(c.lrs, [int(c.steps[-1])])
                    y = c.loss[-1]
                    (lp, hp), (lo, hi) = p.final_interval_params, p.final_interval
                    rows.append((lp <= y <= hp, lo <= y <= hi, (hp - lp) / y, (hi - lo) / y))
                r = np.array(rows, dtype=float)
                print(
                    f"| {size}M | {law} | {label} | {fit.diagnostics['method']} | {err['method']}: {100 * err['rel_sd']:.2f}% (n = {err['n']}) "
                    f"| {int(r[:, 0].sum())}/6 | {int(r[:, 1].sum())}/6 | {100 * r[:, 2].mean():.2f}% | {100 * r[:, 3].mean():.2f}% |"
                )


# the grouped sum before every-step predictions took a hierarchical far field (second-order groups per point, one
# level of interpolated far field), evaluated beside the current one
OLD_LAWS_COMMIT = "db9b265"


def _old_laws():
    """src/scaletune/curves/laws.py at OLD_LAWS_COMMIT, imported from git history (None outside a git checkout)."""
    import importlib.util
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    try:
        text = subprocess.run(
            ["git", "show", f"{OLD_LAWS_COMMIT}:src/scaletune/curves/laws.py"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).resolve().parents[1],
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    path = Path(tempfile.mkdtemp()) / "old_curve_laws.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location("old_curve_laws", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["old_curve_laws"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _current():
    """The current evaluator behind the old module's names (LAWS, prepare, _loss_drop), to time both alike."""
    from types import SimpleNamespace

    from scaletune.curves import _multipower, laws

    return SimpleNamespace(LAWS={"multipower": laws.get_curve_law("multipower")}, prepare=laws.prepare, _loss_drop=_multipower.loss_drop)


def _best_of(fn, reps: int) -> float:
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def bench_eval() -> None:
    import os

    new = _current()

    sched = Schedule.parse("cosine:steps=72000,lr=3e-4,warmup=2160,final=0.1")
    lrs = sched.lrs()
    old = _old_laws()
    impls = [("current (hierarchical far field)", new)] + ([(f"previous ({OLD_LAWS_COMMIT}, one far-field level)", old)] if old else [])
    print(f"load average before: {os.getloadavg()[0]:.1f} (2 cores); times are the best of repeats\n")
    print(
        "| multipower on cosine_72000 (72,000 steps) | implementation | prediction: prepare + value | fit: prepare + value + Jacobian"
        " | fit, again (groups cached) | max error of the drop term vs term-by-term, nats (B = 364) |"
    )
    print("|---|---|---|---|---|---|")
    sub = np.r_[np.arange(2176, 72001, 128)[::27], np.arange(71981, 72001)]  # 21 logged points and the last 20 steps
    exact = loss_drop_exact(prepare(lrs, 2160, sub), *THETA_25M[4:])
    times = {}
    for label, steps in [
        ("547 logged points (every 128 steps)", np.arange(2176, 72001, 128)),
        ("every step (69,841 points)", np.arange(2160, 72001)),
    ]:
        at = np.searchsorted(steps, sub)
        for name, mod in impls:
            law = mod.LAWS["multipower"]
            reps = 5 if len(steps) < 1000 else (10 if mod is new else 3)
            value = _best_of(lambda: law.evaluate(THETA_25M, mod.prepare(lrs, 2160, steps), {}, jac=False), reps)
            first = _best_of(lambda: law.evaluate(THETA_25M, mod.prepare(lrs, 2160, steps), {}), reps)
            prep = mod.prepare(lrs, 2160, steps)
            law.evaluate(THETA_25M, prep, {})
            again = _best_of(lambda: law.evaluate(THETA_25M, prep, {}), reps)
            # the error of the prediction path (value only) at the reference steps: logged points, or every step's run
            points = sub if len(steps) < 1000 else steps
            drop = mod._loss_drop(mod.prepare(lrs, 2160, points), *THETA_25M[4:], grad=False)["value"]
            err = THETA_25M[3] * np.max(np.abs((drop if len(steps) < 1000 else drop[at]) - exact))
            times[label, mod is new] = value
            print(f"| {label} | {name} | {1e3 * value:.1f} ms | {1e3 * first:.1f} ms | {1e3 * again:.1f} ms | {err:.1e} |")
    logged = sub[:21]
    t_exact = _best_of(lambda: loss_drop_exact(prepare(lrs, 2160, logged), *THETA_25M[4:]), 1) * 547 / len(logged)
    print(f"| 547 logged points | term-by-term sum (extrapolated from {len(logged)} points) | {1e3 * t_exact:.0f} ms | | | 0 |")
    # what a fit evaluates: the protocol's 24,000-step training curves at their logged points (every 128 steps)
    print("\n| value + Jacobian, groups cached, 24,000-step curve at 171 logged points | " + " | ".join(n for n, _ in impls) + " |")
    print("|---|" + "---|" * len(impls))
    for spec in (
        "cosine:steps=24000,lr=3e-4,warmup=2160,final=0.1",
        "constant:steps=24000,lr=3e-4,warmup=2160",
        "wsd:steps=24000,lr=3e-4,warmup=2160,decay_start=20000,shape=exp,final=0.1",
    ):
        cells = []
        for _, mod in impls:
            prep = mod.prepare(Schedule.parse(spec).lrs(), 2160, np.arange(2176, 24000, 128))
            mod.LAWS["multipower"].evaluate(THETA_25M, prep, {})
            cells.append(f"{1e3 * _best_of(lambda: mod.LAWS['multipower'].evaluate(THETA_25M, prep, {}), 20):.2f} ms")
        print(f"| {spec.split(':')[0]} | " + " | ".join(cells) + " |")
    print(f"\nload average after: {os.getloadavg()[0]:.1f}")
    if old:
        for label in ("547 logged points (every 128 steps)", "every step (69,841 points)"):
            print(
                f"speed-up of the current over the previous grouped sum, {label}, prediction: {times[label, False] / times[label, True]:.0f}x"
            )


LM = {"width": 64, "depth": 2, "batch_size": 1024, "eval_tokens": 8192, "threads": 1}


def _train(steps: int, lr: float, schedule: str, seed: int = 0, eval_every: int = 10) -> dict:
    from scaletune.train.trainer import run_lm

    return run_lm(
        {**LM, "tokens": steps * LM["batch_size"], "lr": lr, "schedule": schedule, "warmup": 0.1, "eval_every": eval_every, "seed": seed}
    )


def _curve(row: dict, name: str):
    pts = [(c["step"], c["val_loss"]) for c in row["curve"] if c["val_loss"] is not None]
    steps, loss = zip(*pts)
    return curve_from_arrays(name, steps, loss, None, row["schedule"])


def bench_pruner(steps: int, lrs: list[float]) -> None:
    import optuna

    from scaletune.curves.pruner import CurvePruner

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    every = steps // 8
    recorded, seconds = {}, 0.0
    for lr in lrs:
        row = _train(steps, lr, "cosine:final=0.1", eval_every=every)
        seconds += row["seconds"]
        recorded[lr] = ({c["step"]: c["val_loss"] for c in row["curve"] if c["val_loss"] is not None}, row["loss"], row["status"])
        print(f"  lr {lr:.1e}: final val loss {row['loss']:.4f} ({row['status']}, {row['seconds']:.0f} s)", flush=True)
    spec = f"cosine:steps={steps},warmup={int(0.1 * steps)},final=0.1"
    pruners = {  # factories: a pruner may keep state (the curve pruner caches its fit)
        "none": optuna.pruners.NopPruner,
        "median (Optuna defaults)": optuna.pruners.MedianPruner,
        "median (n_startup_trials=2)": lambda: optuna.pruners.MedianPruner(n_startup_trials=2),
        "curve (scaletune, band 1%)": lambda: CurvePruner(schedule=spec, band=0.01),
    }
    best_all = min(v[1] for v in recorded.values() if np.isfinite(v[1]))
    print(
        f"\nLR sweep: {len(lrs)} learning rates, {steps} steps each, cosine to 10%, width {LM['width']} depth {LM['depth']}; "
        f"training the full sweep took {seconds:.0f} s\n"
    )
    orders = [list(lrs)] + [list(np.random.default_rng(k).permutation(lrs)) for k in range(1, 6)]
    print(f"each pruner replays the sweep in {len(orders)} trial orders (the given one, then 5 seeded shuffles)\n")
    print(
        "| pruner | steps used (mean of orders) | share of full sweep | trials pruned (mean) | best final loss found (given order) | true best found |"
    )
    print("|---|---|---|---|---|---|")
    for name, make in pruners.items():
        used_all, pruned_all, found, best_first = [], [], 0, None
        for order in orders:
            study = optuna.create_study(pruner=make(), sampler=optuna.samplers.RandomSampler(seed=0))
            for lr in order:
                study.enqueue_trial({"lr": lr})
            used = 0

            def objective(trial):
                nonlocal used
                lr = trial.suggest_float("lr", min(lrs), max(lrs), log=True)
                values, final, status = recorded[lr]
                for step in sorted(values):
                    if step >= steps:
                        break
                    trial.report(values[step], step)
                    if trial.should_prune():
                        used += step
                        raise optuna.TrialPruned()
                used += steps
                return final if status == "ok" else float("nan")

            study.optimize(objective, n_trials=len(order))
            used_all.append(used)
            pruned_all.append(sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials))
            found += study.best_value == best_all
            best_first = study.best_value if best_first is None else best_first
        mean_used = float(np.mean(used_all))
        print(
            f"| {name} | {mean_used:.0f} | {mean_used / (steps * len(lrs)):.0%} | {np.mean(pruned_all):.1f} | {best_first:.4f} | "
            f"{found} of {len(orders)} orders |"
        )


def bench_lm(steps: int, seeds: int) -> None:
    lr = 3e-3
    t0 = time.time()
    const = _train(steps, lr, "constant")
    cos = _train(steps, lr, "cosine:final=0.1")
    curves = [_curve(const, "constant"), _curve(cos, "cosine")]
    print(
        f"built-in LM, width {LM['width']} depth {LM['depth']}, {steps} steps of {LM['batch_size']} tokens, lr {lr}, warm-up 10%; "
        f"validation loss every 10 steps"
    )
    fits = {law: fit_curves(curves, law=law, bootstrap=20, seed=0) for law in ("multipower", "annealing")}
    wsd_spec = "wsd:cooldown=0.2,shape=1-sqrt"
    wsd_runs = [_train(steps, lr, wsd_spec, seed=s) for s in range(seeds)]
    measured = np.array([r["loss"] for r in wsd_runs])
    print(
        "\n| law | fit R2 (train) | predicted final loss, WSD 20% 1-sqrt | 95% interval | measured (mean of seeds) | seed spread (sd) | error |"
    )
    print("|---|---|---|---|---|---|---|")
    sched = Schedule.parse(wsd_runs[0]["schedule"])
    for law, fit in fits.items():
        p = fit.predict_interval(sched, [steps])
        lo, hi = p.final_interval
        print(
            f"| {law} | {fit.diagnostics['train_r2']:.4f} | {p.final_loss:.4f} | [{lo:.4f}, {hi:.4f}] | {measured.mean():.4f} | "
            f"{measured.std(ddof=1) if seeds > 1 else float('nan'):.4f} | {100 * (p.final_loss - measured.mean()) / measured.mean():+.2f}% |"
        )
    # optimise the cooldown fraction with the multipower fit, then measure a grid of cooldowns
    best, _ = optimise_schedule(fits["multipower"], steps, "wsd", final=0.0)
    chosen = Schedule.parse(best.spec)
    grid = [0.1, 0.2, 0.3, 0.5]
    print(f"\n`schedule optimise --family wsd` picks {best.spec.split(':', 1)[1]} (predicted {best.final_loss:.4f})\n")
    print("| WSD cooldown (shape) | predicted final loss | measured final loss per seed | mean |")
    print("|---|---|---|---|")
    results = {}
    for frac, shape in [(f, "1-sqrt") for f in grid] + [(chosen.cooldown, chosen.shape)]:
        spec = f"wsd:cooldown={frac},shape={shape}"
        runs = [_train(steps, lr, spec, seed=s) for s in range(seeds)] if (frac, shape) != (0.2, "1-sqrt") else wsd_runs
        vals = np.array([r["loss"] for r in runs])
        pred = float(fits["multipower"].predict(Schedule.parse(runs[0]["schedule"]), [steps])[-1])
        results[(frac, shape)] = vals
        print(
            f"| {frac:.3g} ({shape}){' = chosen' if (frac, shape) == (chosen.cooldown, chosen.shape) else ''} | {pred:.4f} | "
            f"{', '.join(f'{v:.4f}' for v in vals)} | {vals.mean():.4f} |"
        )
    grid_best = min((v.mean(), k) for k, v in results.items() if k != (chosen.cooldown, chosen.shape))
    spread = np.mean([v.std(ddof=1) for v in results.values()]) if seeds > 1 else float("nan")
    gap = results[(chosen.cooldown, chosen.shape)].mean() - grid_best[0]
    print(
        f"\nchosen - best of grid ({grid_best[1][0]} {grid_best[1][1]}): {gap:+.4f} nats; mean seed sd {spread:.4f}; "
        f"within seed spread: {'yes' if gap <= 2 * spread else 'no'}  (total {time.time() - t0:.0f} s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["protocol", "eval", "intervals", "pruner", "lm"])
    parser.add_argument("--steps", type=int, default=240)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--boot", type=int, default=200, help="bootstrap draws of the default configuration (intervals)")
    args = parser.parse_args()
    if args.what == "protocol":
        bench_protocol()
    elif args.what == "eval":
        bench_eval()
    elif args.what == "intervals":
        bench_intervals(args.boot)
    elif args.what == "pruner":
        bench_pruner(args.steps, [3e-4, 1e-2, 1e-3, 3e-2, 3e-3, 6e-4, 2e-3, 5e-3])
    else:
        bench_lm(args.steps, args.seeds)


if __name__ == "__main__":
    main()
