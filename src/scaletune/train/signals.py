"""Stability signals of a training run (Wortsman et al. 2023, "Small-scale proxies for large-scale
Transformer training instabilities"), cheap enough to leave on.

Names (the keys `run_lm` writes into its curve points, and that command workloads may report too):

    attn_logit_max_l{i}   largest pre-softmax attention logit of layer i (scale included, causal positions),
                          over the first `PROBE_SEQUENCES` sequences of the step's batch
    attn_logit_max        the largest of them over the layers
    out_logit_rms         root mean square of the output logits over the whole batch
    out_logit_max         largest absolute output logit over the batch
    z_mean                mean log-partition, mean over tokens of logsumexp(logits) (nats)
    grad_norm             global L2 norm of the gradient, before clipping
    update_ratio_{role}   RMS of this step's update / RMS of the parameters before it, pooled over the
                          parameters of one role of `scaletune.train.param` (input, hidden, readout, vector)

Loss spikes (run summary ``spikes``, ``max_spike``): a step's training loss is a spike when it exceeds
(1 + `SPIKE_THRESHOLD`) x the median of the previous `SPIKE_WINDOW` training losses; consecutive spiking
steps count once. ``max_spike`` is the largest relative jump loss / median - 1 over all steps with a full
window (negative when the loss only fell).
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from scaletune.train.model import Attention
from scaletune.train.param import ParamPlan, canonical_name

SPIKE_THRESHOLD = 0.1  # 10% above the running median: several times the batch-to-batch noise of the proxies
SPIKE_WINDOW = 20  # steps in the running median
PROBE_SEQUENCES = 2  # sequences on which attention logits are recomputed explicitly


@torch.no_grad()
def attention_logit_max(model: nn.Module, idx: torch.Tensor) -> torch.Tensor:
    """Per-layer largest pre-softmax attention logit (a 1-D tensor, one value per `Attention` module, in
    module order) of a forward pass of ``idx``, computed by hooks that redo q k^T on each layer's input."""
    found: list[torch.Tensor] = []
    hooks = [
        m.register_forward_hook(lambda mod, args, out: found.append(mod.logit_max(args[0])))
        for m in model.modules()
        if isinstance(m, Attention)
    ]
    try:
        model(idx)
    finally:
        for h in hooks:
            h.remove()
    return torch.stack(found) if found else torch.empty(0)


@torch.no_grad()
def output_stats(logits: torch.Tensor) -> dict[str, torch.Tensor]:
    """out_logit_rms, out_logit_max (absolute) and z_mean of output logits (..., vocab), as 0-d tensors."""
    z = logits.detach().float()
    return {"out_logit_rms": z.pow(2).mean().sqrt(), "out_logit_max": z.abs().amax(), "z_mean": torch.logsumexp(z, dim=-1).mean()}


@torch.no_grad()
def grad_norm(params: Iterable[torch.Tensor]) -> torch.Tensor:
    """Global L2 norm of the gradients of ``params`` (those without a gradient are skipped)."""
    norms = [torch.linalg.vector_norm(p.grad.detach().float()) for p in params if p.grad is not None]
    return torch.linalg.vector_norm(torch.stack(norms)) if norms else torch.zeros(())


class UpdateRatios:
    """Update-to-parameter RMS ratio per role: `snapshot()` before the optimizer step, `ratios()` after."""

    def __init__(self, model: nn.Module, plan: ParamPlan):
        self.groups: dict[str, list[torch.Tensor]] = {}
        for name, p in model.named_parameters():
            info = plan.params.get(canonical_name(name))
            if info is not None and p.requires_grad:
                self.groups.setdefault(info.role, []).append(p)
        self.before: dict[str, list[torch.Tensor]] = {}

    @torch.no_grad()
    def snapshot(self) -> None:
        self.before = {role: [p.detach().clone() for p in ps] for role, ps in self.groups.items()}

    @torch.no_grad()
    def ratios(self) -> dict[str, torch.Tensor]:
        """{"update_ratio_<role>": ||after - before|| / ||before||} (pooled RMS ratio, 0-d tensors)."""
        out = {}
        for role, ps in self.groups.items():
            delta = sum((p.float() - b.float()).pow(2).sum() for p, b in zip(ps, self.before[role]))
            base = sum(b.float().pow(2).sum() for b in self.before[role])
            out[f"update_ratio_{role}"] = (delta / base).sqrt()
        self.before = {}
        return out


class StepSignals:
    """All curve signals of one training step: `measure` after the backward pass (before clipping and the
    optimizer step), `finish` after the step; it returns the named values with one device sync."""

    def __init__(self, model: nn.Module, plan: ParamPlan, autocast: dict[str, Any]):
        self.model, self.autocast = model, autocast
        self.updates = UpdateRatios(model, plan)
        self.attn = torch.empty(0)
        self.measured: dict[str, torch.Tensor] = {}

    def measure(self, x: torch.Tensor, logits: torch.Tensor) -> None:
        with torch.autocast(**self.autocast):  # the logits as the training step computes them
            self.attn = attention_logit_max(self.model, x[:PROBE_SEQUENCES])
        self.measured = {"attn_logit_max": self.attn.max(), **output_stats(logits), "grad_norm": grad_norm(self.model.parameters())}
        self.updates.snapshot()

    def finish(self) -> dict[str, float]:
        self.measured.update(self.updates.ratios())
        values = torch.stack([*self.attn, *self.measured.values()]).tolist()
        out = {f"attn_logit_max_l{i}": v for i, v in enumerate(values[: len(self.attn)])}
        out.update(zip(self.measured, values[len(self.attn) :]))
        return out


class SpikeCounter:
    """Counts loss spikes online (see the module doc); feed every step's training loss in order."""

    def __init__(self, threshold: float = SPIKE_THRESHOLD, window: int = SPIKE_WINDOW):
        self.threshold = threshold
        self.recent: deque[float] = deque(maxlen=window)
        self.count = 0
        self.max_jump: float | None = None
        self._inside = False

    def __call__(self, loss: float) -> None:
        if not math.isfinite(loss):  # NaN/inf end the run as diverged; they are not a spike size
            return
        if len(self.recent) == self.recent.maxlen:
            jump = loss / statistics.median(self.recent) - 1.0
            self.max_jump = jump if self.max_jump is None else max(self.max_jump, jump)
            spiking = jump > self.threshold
            self.count += spiking and not self._inside
            self._inside = spiking
        self.recent.append(loss)


def loss_spikes(losses: Iterable[float], threshold: float = SPIKE_THRESHOLD, window: int = SPIKE_WINDOW) -> tuple[int, float | None]:
    """(spike count, largest relative jump) of a training-loss sequence, one value per step."""
    counter = SpikeCounter(threshold, window)
    for loss in losses:
        counter(float(loss))
    return counter.count, counter.max_jump
