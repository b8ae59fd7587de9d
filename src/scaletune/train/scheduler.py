"""PyTorch adapter for `scaletune.schedules.Schedule` (the numpy step -> lr functions)."""

from __future__ import annotations

import torch

from scaletune.schedules import Schedule


def torch_scheduler(optimizer: torch.optim.Optimizer, schedule: Schedule) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` giving every param group ``initial_lr * schedule(step) / schedule.lr``.

    Groups keep their own ratios (muP's per-role rates) and all follow the schedule's shape; after ``k``
    calls of ``.step()`` the optimizer uses the rate of step ``k`` (0-indexed, as `Schedule`).
    Steps past the schedule's end keep its last rate.
    """
    table = schedule.lrs() / schedule.lr  # precomputed: LambdaLR calls the lambda once per group per step
    last = len(table) - 1
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: float(table[min(step, last)]))
