"""Cheap workloads with the study contract ``fn(config, report) -> dict``, for the study tests.

`bowl` is a synthetic training run: the final loss is a bowl in log learning rate whose optimum moves
with width as under SP (lr* ~ 1 / width), plus a seed-dependent wiggle; it reports a decaying loss curve.
Options come from the study's [fixed] table: ``sleep`` (seconds per step), ``log`` (a file where every
execution appends one JSON line), ``crash_lr`` (SIGKILL itself above it), ``fail_lr`` (raise above it),
``diverge_lr`` (NaN loss above it), ``fail_while`` (raise while this file exists).
"""

from __future__ import annotations

import json
import math
import os
import signal
import time


def bowl(config: dict, report) -> dict:
    width, lr, seed = config["width"], config["lr"], config["seed"]
    if config.get("log"):
        with open(config["log"], "a") as fh:
            fh.write(json.dumps({"width": width, "lr": lr, "seed": seed, "pid": os.getpid(), "threads": config["threads"]}) + "\n")
    if lr > config.get("crash_lr", math.inf):
        os.kill(os.getpid(), signal.SIGKILL)
    if lr > config.get("fail_lr", math.inf):
        raise ValueError(f"learning rate {lr:g} too large for this test")
    if config.get("fail_while") and os.path.exists(config["fail_while"]):
        raise RuntimeError("transient failure")
    best = 0.5 / width
    final = 2.0 + 0.3 * math.log(width) ** -1 + 0.1 * math.log(lr / best) ** 2 + 0.001 * seed
    steps = int(config.get("steps", 10))
    curve = []
    for step in range(1, steps + 1):
        val = final + 3.0 * math.exp(-4.0 * step / steps) * (1 + math.log(lr / best) ** 2) - 3.0 * math.exp(-4.0)
        curve.append({"step": step, "tokens": step * 1000, "lr": lr, "train_loss": val + 0.01, "val_loss": val})
        if config.get("sleep"):
            time.sleep(config["sleep"])
        if report(step, val):
            return {"loss": val, "status": "pruned", "curve": curve}
    if lr > config.get("diverge_lr", math.inf):
        return {"loss": math.nan, "status": "ok", "curve": curve}
    n = 12 * config.get("depth", 2) * width**2
    return {"loss": curve[-1]["val_loss"], "N": n, "D": config["D"], "curve": curve}


def noop(config: dict, report) -> dict:
    """Does nothing: the benchmark of orchestration overhead."""
    return {"loss": float(config.get("x", 0.0))}


def narrow_around_best(ranges: dict, rung: dict, runs) -> dict:
    """A stand-in for scaletune.hparams.search.narrow_space: a range of one decade around the best learning
    rate of the smaller rungs, moved by the SP rule lr* ~ 1/width."""
    best = runs.loc[runs["loss"].idxmin()]
    centre = best["lr"] * best["width"] / rung["width"]
    return {"lr": (centre / math.sqrt(10), centre * math.sqrt(10))}
