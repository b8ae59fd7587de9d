"""A workload for the resource tests: records what the runner gave the trial (Ray's assigned resources,
CUDA_VISIBLE_DEVICES) in its run-table row."""

from __future__ import annotations

import os


def probe(config: dict, report) -> dict:
    row = {"loss": float(config["lr"]), "cuda": os.environ.get("CUDA_VISIBLE_DEVICES")}
    try:
        import ray

        if ray.is_initialized():
            assigned = ray.get_runtime_context().get_assigned_resources()
            row.update({f"ray_{k}": float(v) for k, v in assigned.items()})
    except ImportError:
        pass
    return row
