"""The proxy workload: train the built-in LM on the bundled corpus and return a run-table row.

`run_lm(config, report)` is the one interface the study stage calls. Losses are natural-log cross-entropy
per byte-token (nats/token = nats/byte); ``bits_per_byte = loss / ln 2``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, fields
from typing import Any, Callable, Mapping

import torch

from scaletune.errors import ScaletuneError
from scaletune.schedules import Schedule
from scaletune.train import data, signals
from scaletune.train.device import autocast_settings, check_device, configure, resolve_device
from scaletune.train.model import LMConfig, TransformerLM, count_params, flops_per_token
from scaletune.train.param import PARAMS, ParamPlan, parameterize
from scaletune.train.scheduler import torch_scheduler

DIVERGENCE_MARGIN = 1.5  # nats above max(first loss, ln vocab): "far above the start" ...
DIVERGENCE_PATIENCE = 8  # ... for this many consecutive steps (NaN/inf: at once)


@dataclass(frozen=True)
class RunConfig:
    """One training run of the built-in LM. Only width, depth, tokens and lr are required.

    Units: ``tokens`` = training tokens D; ``batch_size`` = tokens per optimizer step (sequences =
    batch_size / seq_len); ``warmup`` = steps if >= 1, else a fraction of the steps; ``eval_every`` =
    steps (0: eight evaluations per run); ``eval_tokens`` = size of the fixed validation set in tokens.
    ``schedule`` is a kind (``cosine``) or a spec without steps/lr (``wsd:cooldown=0.2,shape=1-sqrt``); steps
    = tokens // batch_size and lr come from this config. ``device`` ``auto`` = cuda, else mps, else cpu
    (or name one: cpu, cuda, cuda:N, mps). ``precision`` ``auto`` = bf16 autocast on CUDA, on CPU from width
    128 up (faster there), fp32 below and on MPS (see `scaletune.train.device.autocast_settings`).
    ``compile`` wraps the training forward/backward in ``torch.compile``. ``signals_every``: stability
    signals (`scaletune.train.signals`) at step 1, every that many steps and the last step; None (default) =
    at each evaluation; 0 = off.
    """

    width: int
    depth: int
    tokens: int
    lr: float
    # the model and its parameterisation
    heads: int | None = None
    param: str = "mup"
    base_width: int = 64
    base_depth: int = 2
    alpha: float = 1.0
    init_std: float = 0.02
    mlp: str = "gelu"
    tied: bool = False
    qk_norm: bool = False
    # the data and the learning-rate schedule
    batch_size: int = 2048
    seq_len: int = 128
    schedule: str = "cosine:final=0.1"
    warmup: float = 0.05
    # the optimiser
    optimizer: str = "adamw"
    weight_decay: float = 0.0
    eps: float = 1e-8
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0
    z_loss: float = 0.0
    # how it runs and what it records
    seed: int = 0
    threads: int = 1
    device: str = "auto"
    precision: str = "auto"
    compile: bool = False
    eval_every: int = 0
    eval_tokens: int = 16384
    signals_every: int | None = None

    @classmethod
    def from_dict(cls, config: Mapping[str, Any]) -> "RunConfig":
        """Validate and coerce plain (JSON or string) values; unknown keys are an error, not ignored."""
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(config) - set(known))
        if unknown:
            raise ScaletuneError(f"unknown run config key(s) {unknown} (known: {', '.join(known)})")
        for key in ("width", "depth", "tokens", "lr"):
            if config.get(key) is None:
                raise ScaletuneError(f"run config needs {key}")
        kwargs = {}
        for key, value in config.items():
            kind = known[key].type
            try:
                if value is None:
                    kwargs[key] = None
                elif "bool" in kind:
                    kwargs[key] = value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes")
                elif "int" in kind:
                    as_float = float(value)
                    if as_float != int(as_float):
                        raise ValueError
                    kwargs[key] = int(as_float)
                elif "float" in kind:
                    kwargs[key] = float(value)
                else:
                    kwargs[key] = str(value)
            except (TypeError, ValueError):
                raise ScaletuneError(f"run config {key}={value!r} is not a valid {kind}") from None
        cfg = cls(**kwargs)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        for key in ("width", "depth", "tokens", "batch_size", "seq_len", "base_width", "base_depth", "threads", "eval_tokens"):
            if getattr(self, key) <= 0:
                raise ScaletuneError(f"run config {key} must be positive (got {getattr(self, key)})")
        if not self.lr > 0 or not math.isfinite(self.lr):
            raise ScaletuneError(f"run config lr must be positive (got {self.lr})")
        if self.batch_size % self.seq_len:
            raise ScaletuneError(f"batch_size {self.batch_size} tokens is not a multiple of seq_len {self.seq_len}")
        if self.tokens < self.batch_size:
            raise ScaletuneError(f"tokens {self.tokens} is less than one batch ({self.batch_size} tokens)")
        if self.param not in PARAMS:
            raise ScaletuneError(f"unknown parameterisation param={self.param!r} (known: {', '.join(PARAMS)})")
        if self.param == "completep" and not 0.5 <= self.alpha <= 1.0:
            raise ScaletuneError(f"CompleteP alpha must be in [0.5, 1] (got {self.alpha})")
        if self.optimizer not in ("adamw", "sgd"):
            raise ScaletuneError(f"optimizer must be adamw or sgd (got {self.optimizer!r})")
        if self.precision not in ("auto", "fp32", "bf16"):
            raise ScaletuneError(f"precision must be auto, fp32 or bf16 (got {self.precision!r})")
        check_device(self.device)  # availability is checked where the run starts, not where it is planned
        if self.signals_every is not None and self.signals_every < 0:
            raise ScaletuneError(f"run config signals_every must be >= 0 (got {self.signals_every})")
        self.lm_config()  # shape errors (heads, mlp)
        self.make_schedule()

    @property
    def steps(self) -> int:
        return self.tokens // self.batch_size

    def warmup_steps(self) -> int:
        w = self.warmup * self.steps if self.warmup < 1 else self.warmup
        return int(round(min(w, self.steps - 1)))

    def make_schedule(self) -> Schedule:
        spec = self.schedule if ":" in self.schedule else self.schedule + ":"
        sched = Schedule.parse(spec, steps=self.steps, lr=self.lr, warmup=self.warmup_steps())
        if (sched.steps, sched.lr) != (self.steps, self.lr):
            raise ScaletuneError(
                f"schedule {self.schedule!r}: steps/lr come from the run (steps = tokens // "
                f"batch_size = {self.steps}, lr = {self.lr}); leave them out of the spec"
            )
        return sched

    def lm_config(self) -> LMConfig:
        mu = self.param in ("mup", "completep")
        heads = self.heads if self.heads else max(1, self.width // 32)
        head_dim = self.width / heads
        # muP's 1/d attention, normalised so that it equals 1/sqrt(d) at base width (heads held fixed).
        base_head_dim = self.base_width / heads if self.heads else min(32, head_dim)
        scale = math.sqrt(base_head_dim) / head_dim if mu else None
        return LMConfig(
            width=self.width,
            depth=self.depth,
            heads=heads,
            seq_len=self.seq_len,
            mlp=self.mlp,
            tied=self.tied,
            qk_norm=self.qk_norm,
            z_loss=self.z_loss,
            attn_scale=scale,
        )

    def autocast(self, device_type: str = "cpu") -> dict[str, Any]:
        """Keyword arguments of ``torch.autocast`` for this run on ``device_type``."""
        dtype, enabled = autocast_settings(device_type, self.precision, self.width)
        return {"device_type": device_type, "dtype": dtype, "enabled": enabled}


def build_lm(cfg: RunConfig) -> tuple[TransformerLM, ParamPlan]:
    """The seeded, parameterised model of a run (init depends only on ``seed`` and the shape)."""
    torch.manual_seed(cfg.seed)
    model = TransformerLM(cfg.lm_config())
    plan = parameterize(
        model,
        cfg.param,
        width=cfg.width,
        base_width=cfg.base_width,
        depth=cfg.depth,
        base_depth=cfg.base_depth,
        alpha=cfg.alpha,
        init_std=cfg.init_std,
        optimizer=cfg.optimizer,
    )
    return model, plan


def make_optimizer(cfg: RunConfig, model: torch.nn.Module, plan: ParamPlan) -> torch.optim.Optimizer:
    groups = plan.param_groups(model, cfg.lr, cfg.weight_decay, cfg.eps)
    if cfg.optimizer == "sgd":
        for g in groups:
            g.pop("eps")
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.beta1)
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), foreach=True)


@torch.no_grad()
def evaluate(model: TransformerLM, inputs: torch.Tensor, targets: torch.Tensor, autocast: Mapping[str, Any], chunk: int = 64) -> float:
    """Mean validation loss in nats/token over the fixed windows (``autocast``: `RunConfig.autocast`)."""
    model.eval()
    total = torch.zeros((), device=inputs.device)
    for i in range(0, len(inputs), chunk):
        with torch.autocast(**autocast):
            _, loss = model(inputs[i : i + chunk], targets[i : i + chunk])
        total += loss * len(inputs[i : i + chunk])
    model.train()
    return total.item() / len(inputs)


def signal_steps(cfg: RunConfig, eval_every: int) -> set[int]:
    """1-based steps at which `run_lm` records stability signals (see `RunConfig`)."""
    every = eval_every if cfg.signals_every is None else cfg.signals_every
    if every == 0:
        return set()
    return {1, cfg.steps, *range(every, cfg.steps + 1, every)}


def run_lm(
    config: Mapping[str, Any], report: Callable[[int, float], bool] | None = None, progress: Callable[[dict[str, Any]], None] | None = None
) -> dict[str, Any]:
    """Train the built-in LM per ``config`` (see `RunConfig`) and return a run-table row with its curve.

    ``report(step, val_loss)`` is called after every intermediate evaluation; returning True stops the run
    with status ``pruned``. ``progress`` (for a front end to render) receives after every evaluation a dict:
    step, steps, tokens, train_loss, val_loss, tokens_per_s. NaN/inf, or a training loss more than 1.5 nats above max(first loss, ln 256)
    for 8 consecutive steps, stops it with status ``diverged`` (loss NaN); a diverged run never raises.
    Row keys: N, N_nonembed (see `scaletune.train.model`), D (tokens trained), C = 6*N*D, C_exact (= flops_per_token * D, attention
    included), width, depth, heads, lr, batch_size (tokens), schedule (spec), warmup (steps), param, seed,
    loss (final validation nats/token), bits_per_byte, status, seconds, tokens_per_s, device, curve (list of
    {step, tokens, lr, train_loss, val_loss}; val_loss None where not evaluated), and the stability summary:
    spikes, max_spike, attn_logit_max, out_logit_max (None when signals are off). Curve points of signal
    steps also carry the signals named in `scaletune.train.signals`; they describe that step's forward and
    backward pass (the weights before its update) and its update.
    """
    cfg = RunConfig.from_dict(config)
    start = time.perf_counter()
    torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    configure(device)
    model, plan = build_lm(cfg)
    model.to(device)
    lm = model.cfg
    optimizer = make_optimizer(cfg, model, plan)
    schedule = cfg.make_schedule()
    scheduler = torch_scheduler(optimizer, schedule)
    step_model = torch.compile(model) if cfg.compile else model  # signals and evaluation use the eager model
    autocast = cfg.autocast(device.type)
    batches = data.Batches(cfg.batch_size // cfg.seq_len, cfg.seq_len, cfg.seed, device=device)
    val_x, val_y = (t.to(device) for t in data.val_windows(cfg.eval_tokens, cfg.seq_len))
    steps = cfg.steps
    eval_every = cfg.eval_every or max(1, steps // 8)
    log_every = max(1, steps // 1000)  # keep curves at most ~1000 points
    lrs = schedule.lrs()
    probe_steps = signal_steps(cfg, eval_every)
    step_signals = signals.StepSignals(model, plan, autocast)
    spikes = signals.SpikeCounter()

    curve: list[dict[str, Any]] = []
    status, first_loss, val_loss, train_time = "ok", None, float("nan"), 0.0
    limit, over = None, 0
    for step in range(steps):
        t0 = time.perf_counter()
        x, y = batches()
        with torch.autocast(**autocast):
            logits, loss = step_model(x, y)
        loss.backward()
        probe = step + 1 in probe_steps
        if probe:
            step_signals.measure(x, logits)
        del logits
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        point_signals = step_signals.finish() if probe else {}
        train_loss = loss.item()
        train_time += time.perf_counter() - t0
        spikes(train_loss)
        if first_loss is None:
            first_loss = train_loss
            limit = max(first_loss, math.log(lm.vocab_size)) + DIVERGENCE_MARGIN
        last = step == steps - 1
        evaluated = last or (step + 1) % eval_every == 0
        # a spike that recovers is not a divergence: "far above the start" must last DIVERGENCE_PATIENCE steps
        over = over + 1 if train_loss > limit else 0
        if not math.isfinite(train_loss) or over >= DIVERGENCE_PATIENCE:
            status = "diverged"
        elif evaluated:
            val_loss = evaluate(model, val_x, val_y, autocast)
            if not math.isfinite(val_loss):
                status = "diverged"
        if evaluated or probe or status != "ok" or step % log_every == 0:
            curve.append(
                {
                    "step": step + 1,
                    "tokens": (step + 1) * cfg.batch_size,
                    "lr": float(lrs[step]),
                    "train_loss": train_loss,
                    "val_loss": val_loss if evaluated and status == "ok" else None,
                    **point_signals,
                }
            )
        if status != "ok":
            val_loss = float("nan")
            break
        if evaluated and progress is not None:
            progress(
                {
                    "step": step + 1,
                    "steps": steps,
                    "tokens": (step + 1) * cfg.batch_size,
                    "train_loss": train_loss,
                    "val_loss": val_loss,
                    "tokens_per_s": (step + 1) * cfg.batch_size / train_time,
                }
            )
        if evaluated and not last and report is not None and report(step + 1, val_loss):
            status = "pruned"
            break
    done = curve[-1]["step"] if curve else 0
    counts = count_params(lm)
    tokens = done * cfg.batch_size
    return {
        **counts,
        "D": tokens,
        "C": 6.0 * counts["N"] * tokens,
        "C_exact": flops_per_token(lm) * tokens,
        "width": cfg.width,
        "depth": cfg.depth,
        "heads": lm.n_heads,
        "lr": cfg.lr,
        "batch_size": cfg.batch_size,
        "seq_len": cfg.seq_len,
        "schedule": schedule.spec(),
        "warmup": schedule.warmup,
        "param": cfg.param,
        "base_width": cfg.base_width,
        "base_depth": cfg.base_depth,
        "seed": cfg.seed,
        "loss": val_loss,
        "bits_per_byte": val_loss / math.log(2),
        "status": status,
        "seconds": time.perf_counter() - start,
        "tokens_per_s": tokens / train_time if train_time else 0.0,
        "device": device.type,
        **signal_summary(curve, spikes, bool(probe_steps)),
        "curve": curve,
    }


def signal_summary(curve: list[dict[str, Any]], spikes: signals.SpikeCounter, probed: bool) -> dict[str, Any]:
    """The run's stability summary: spike count and largest jump (from every step's training loss), and the
    largest attention and output logits over the signal steps (None when signals were off or NaN throughout)."""

    def peak(key: str) -> float | None:
        seen = [p[key] for p in curve if key in p and not math.isnan(p[key])]
        return max(seen) if probed and seen else None

    return {
        "spikes": spikes.count if probed else None,
        "max_spike": spikes.max_jump if probed else None,
        "attn_logit_max": peak("attn_logit_max"),
        "out_logit_max": peak("out_logit_max"),
    }
