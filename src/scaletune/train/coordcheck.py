"""Coordinate check: train a few steps at several widths and record every layer's activation RMS per step.

Under a correct muP the RMS of each layer's output stays flat as width grows (log-log slope ~ 0); under SP
hidden and output activations grow with width once training moves the weights. A wrong or missing muP shows
up here before any sweep is wasted on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from scaletune.errors import ScaletuneError
from scaletune.train import data
from scaletune.train.model import Block
from scaletune.train.trainer import RunConfig, build_lm, make_optimizer


@dataclass
class CoordCheck:
    """Result of `coord_check`: ``table_`` has one row per (seed, width, depth, step, layer) with the RMS;
    ``axis`` is the swept dimension (width or depth)."""

    param: str
    values: list[int]
    table_: pd.DataFrame
    axis: str = "width"

    def slopes(self, step: int | None = None) -> pd.DataFrame:
        """Least-squares slope of log(RMS) vs log(axis) per layer at ``step`` (default: the last step).

        Layers present at only some values of the axis (deeper blocks in a depth sweep) are left out;
        for a depth sweep, compare kinds (`kind_slopes`) and the final residual stream (`blocks.-1`)."""
        t = self.table_
        step = int(t["step"].max()) if step is None else step
        sub = t[t["step"] == step].groupby(["layer", "kind", self.axis], as_index=False)["rms"].mean()
        rows = []
        for (layer, kind), g in sub.groupby(["layer", "kind"], sort=False):
            if len(g) < len(self.values):
                continue
            slope = np.polyfit(np.log(g[self.axis]), np.log(g["rms"]), 1)[0]
            rows.append({"layer": layer, "kind": kind, "step": step, "slope": float(slope)})
        return pd.DataFrame(rows)

    def kind_slopes(self, step: int | None = None) -> dict[str, float]:
        """Mean slope per kind of layer (input, hidden, residual, readout)."""
        s = self.slopes(step)
        return {k: float(v) for k, v in s.groupby("kind", sort=False)["slope"].mean().items()}


def _kinds(model: nn.Module, plan) -> dict[str, str]:
    """Modules to watch and their kind: embeddings (input), hidden Linear, block outputs (residual), readout."""
    kinds = {}
    for name, module in model.named_modules():
        if isinstance(module, nn.Embedding):
            kinds[name] = "input"
        elif isinstance(module, Block):
            kinds[name] = "residual"
        elif isinstance(module, nn.Linear):
            info = plan.params.get(f"{name}.weight")
            kinds[name] = "readout" if info is None or info.role in ("readout", "input") else info.role
    return kinds


def coord_check(
    widths: Sequence[int] = (32, 64, 128, 256),
    param: str = "mup",
    *,
    steps: int = 5,
    seeds: Iterable[int] = (0,),
    config: dict[str, Any] | None = None,
    axis: str = "width",
) -> CoordCheck:
    """Train ``steps`` Adam steps at each width and record output RMS of every watched module at each step.

    ``config`` holds other `RunConfig` keys (defaults: depth 2, lr 1e-2, seq_len 64, batch 1024 tokens,
    base_width = min(widths), constant LR, fp32). Step 0 is the initial model; step t is the forward pass
    before the t-th update. ``axis="depth"`` sweeps depth instead: ``widths`` are then the depths, width
    comes from ``config`` (default 64) and base_depth = min(depths) — the CompleteP check. The last block's
    output is also recorded as layer ``blocks.-1`` so that depths can be compared.
    """
    if axis not in ("width", "depth"):
        raise ScaletuneError(f"coord check axis must be width or depth (got {axis!r})")
    base = {
        "depth": 2,
        "width": 64,
        "lr": 1e-2,
        "seq_len": 64,
        "batch_size": 1024,
        "schedule": "constant",
        "warmup": 0,
        "base_width": min(widths) if axis == "width" else 64,
        "base_depth": min(widths) if axis == "depth" else 2,
        "precision": "fp32",
        "heads": 1,
        **(config or {}),
    }
    rows = []
    for seed in seeds:
        for value in widths:
            cfg = RunConfig.from_dict({**base, axis: value, "param": param, "seed": seed, "tokens": (steps + 1) * base["batch_size"]})
            torch.set_num_threads(cfg.threads)  # as run_lm: one thread unless the config says otherwise
            model, plan = build_lm(cfg)
            optimizer = make_optimizer(cfg, model, plan)
            batches = data.Batches(cfg.batch_size // cfg.seq_len, cfg.seq_len, seed)
            kinds = _kinds(model, plan)
            record: dict[str, float] = {}
            hooks = [
                m.register_forward_hook(
                    lambda mod, inp, out, name=name: record.__setitem__(name, out.detach().float().pow(2).mean().sqrt().item())
                )
                for name, m in model.named_modules()
                if name in kinds
            ]
            for step in range(steps + 1):
                x, y = batches()
                record.clear()
                _, loss = model(x, y)
                last = f"blocks.{cfg.depth - 1}"
                rows += [
                    {"seed": seed, "width": cfg.width, "depth": cfg.depth, "step": step, "layer": layer, "kind": kinds[n], "rms": r}
                    for n, r in record.items()
                    for layer in ([n, "blocks.-1"] if n == last and axis == "depth" else [n])
                ]
                if step == steps:
                    break
                loss.backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            for h in hooks:
                h.remove()
    return CoordCheck(param=param, values=list(widths), table_=pd.DataFrame(rows), axis=axis)
