"""Learning-rate schedules as pure, vectorised functions step -> learning rate (numpy only).

Convention: step ``s`` (0-indexed) is the s-th optimizer update and ``lr(s)`` the rate it uses.
Warm-up is linear from ``peak/warmup`` at step 0 to ``peak`` at step ``warmup-1``; every shape below
starts after warm-up. ``final`` is the end rate as a fraction of the peak, reached at step == steps (as
PyTorch's schedulers and the multi-power-law data do), so the last update, step steps-1, runs just above it.

A schedule is written as a spec string, ``KIND:key=value,...``, e.g.

    cosine:steps=24000,lr=3e-4,warmup=2160,final=0.1
    wsd:steps=24000,lr=3e-4,warmup=2160,cooldown=0.2,shape=1-sqrt,final=0
    wsd:steps=24000,lr=3e-4,decay_start=20000,shape=exp,final=0.1
    twostage:steps=16000,lr=3e-4,switch=8000,ratio=0.3
    step:steps=1000,lr=1e-3,milestones=500|750,gamma=0.1
    power:steps=10000,lr=0.02,a=4,b=0.51,tokens_per_step=4096,cooldown=0.1

Kinds: constant, cosine, linear, wsd (cooldown shape linear | 1-sqrt | cosine | exp), power (Shen et al.
2024: lr = min(peak, a * n^-b) with n tokens seen, then an optional exponential cooldown), rex (Chen et al.
2021), step (multiply by gamma at each milestone), twostage (peak, then ratio*peak from ``switch``).
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields
from typing import Any

import numpy as np

from scaletune.errors import ScaletuneError

KINDS = ("constant", "cosine", "linear", "wsd", "power", "rex", "step", "twostage")
WSD_SHAPES = ("linear", "1-sqrt", "cosine", "exp")


@dataclass(frozen=True)
class Schedule:
    """A learning-rate schedule; call it with a step or an array of steps."""

    kind: str
    steps: int
    lr: float
    warmup: int = 0
    final: float = 0.0  # end rate / peak, reached at step == steps (cosine, linear, wsd, power cooldown)
    cooldown: float = 0.2  # wsd/power: cooldown length, as a fraction of steps if < 1 else in steps
    decay_start: int | None = None  # wsd: absolute step where the cooldown starts (overrides cooldown)
    shape: str = "linear"  # wsd cooldown shape
    a: float = 4.0  # power scheduler coefficient
    b: float = 0.51  # power scheduler exponent
    tokens_per_step: float = 1.0  # power scheduler: n = tokens seen = step * tokens_per_step
    milestones: tuple[int, ...] = field(default_factory=tuple)  # step: absolute steps
    gamma: float = 0.1  # step: factor at each milestone
    switch: int | None = None  # twostage: step where the second stage starts
    ratio: float = 0.1  # twostage: second-stage rate / peak

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ScaletuneError(f"unknown schedule kind {self.kind!r} (known: {', '.join(KINDS)})")
        if self.steps <= 0 or not self.lr > 0:
            raise ScaletuneError(f"schedule {self.kind}: steps and lr must be positive (got steps={self.steps}, lr={self.lr})")
        if not 0 <= self.warmup < self.steps:
            raise ScaletuneError(f"schedule {self.kind}: warmup={self.warmup} must be in [0, steps={self.steps})")
        if self.final < 0 or self.final > 1:
            raise ScaletuneError(f"schedule {self.kind}: final={self.final} must be a fraction of the peak in [0, 1]")
        if self.kind == "wsd":
            if self.shape not in WSD_SHAPES:
                raise ScaletuneError(f"wsd shape {self.shape!r} unknown (known: {', '.join(WSD_SHAPES)})")
            if self.shape == "exp" and self.final <= 0:
                raise ScaletuneError("wsd shape exp needs final > 0 (a geometric decay never reaches 0)")
            if not self.warmup <= self.decay_step < self.steps:
                raise ScaletuneError(f"wsd: the cooldown start {self.decay_step} must be in [warmup, steps)")
        if self.kind == "twostage" and self.switch is None:
            raise ScaletuneError("twostage needs switch=STEP")

    @property
    def decay_step(self) -> int:
        """First step of the wsd/power cooldown."""
        if self.decay_start is not None:
            return int(self.decay_start)
        length = self.cooldown * self.steps if self.cooldown < 1 else self.cooldown
        return int(round(self.steps - length))

    def __call__(self, step: Any) -> np.ndarray:
        s = np.asarray(step, dtype=float)
        peak, w = self.lr, self.warmup
        main = self._main(s)
        if w > 0:
            main = np.where(s < w, peak * (s + 1) / w, main)
        return main

    def lrs(self, n: int | None = None) -> np.ndarray:
        """Rates of steps 0 .. n-1 (default: the whole schedule)."""
        return self(np.arange(self.steps if n is None else n))

    def _main(self, s: np.ndarray) -> np.ndarray:
        peak, w, T, lo = self.lr, self.warmup, self.steps, self.final * self.lr
        p = np.clip((s - w) / max(T - w, 1), 0.0, 1.0)  # progress after warm-up
        k = self.kind
        if k == "constant":
            return np.full_like(s, peak)
        if k == "cosine":
            return lo + (peak - lo) * 0.5 * (1 + np.cos(np.pi * p))
        if k == "linear":
            return peak - (peak - lo) * p
        if k == "rex":
            return peak * (1 - p) / (0.5 + 0.5 * (1 - p))
        if k == "step":
            return peak * self.gamma ** np.searchsorted(np.asarray(self.milestones, float), s, side="right")
        if k == "twostage":
            return np.where(s < self.switch, peak, self.ratio * peak)
        d = self.decay_step
        q = np.clip((s - d) / max(T - d, 1), 0.0, 1.0)  # cooldown progress
        if k == "wsd":
            stable = peak
        else:  # power: min(peak, a * n^-b), n = tokens seen
            n = np.maximum(s * self.tokens_per_step, 1.0)
            stable = np.minimum(peak, self.a * n ** (-self.b))
        shape = self.shape if k == "wsd" else "exp"
        if shape == "linear":
            decayed = stable - (stable - lo) * q
        elif shape == "1-sqrt":
            decayed = lo + (stable - lo) * (1 - np.sqrt(q))
        elif shape == "cosine":
            decayed = lo + (stable - lo) * 0.5 * (1 + np.cos(np.pi * q))
        else:
            end = lo if lo > 0 else 1e-3 * peak
            start = stable if k == "wsd" else np.minimum(peak, self.a * np.maximum(d * self.tokens_per_step, 1.0) ** (-self.b))
            decayed = start * (end / start) ** q
        return np.where(s < d, stable, decayed)

    def spec(self) -> str:
        """The spec string that `parse` turns back into this schedule (only non-default keys)."""
        parts = []
        for f in fields(self):
            value = getattr(self, f.name)
            default = f.default_factory() if f.default_factory is not MISSING else f.default
            if f.name == "kind" or (value == default and f.name not in ("steps", "lr")):
                continue
            parts.append(f"{f.name}={'|'.join(map(str, value)) if isinstance(value, tuple) else value}")
        return f"{self.kind}:{','.join(parts)}"

    @classmethod
    def parse(cls, spec: str, **overrides: Any) -> "Schedule":
        """Build from ``KIND:key=value,...``; keyword ``overrides`` fill keys the spec leaves out."""
        kind, _, rest = spec.strip().partition(":")
        kwargs: dict[str, Any] = dict(overrides)
        types = {f.name: f.type for f in fields(cls)}
        for part in filter(None, (p.strip() for p in rest.split(","))):
            key, sep, value = part.partition("=")
            key = key.strip()
            if not sep or key not in types or key == "kind":
                raise ScaletuneError(f"schedule {spec!r}: cannot use {part!r} (keys: {', '.join(k for k in types if k != 'kind')})")
            kwargs[key] = value.strip()
        for key, value in list(kwargs.items()):
            if not isinstance(value, str):
                continue
            try:
                if key == "shape":
                    kwargs[key] = value
                elif key == "milestones":
                    kwargs[key] = tuple(int(float(v)) for v in value.split("|") if v)
                elif key in ("steps", "warmup", "decay_start", "switch"):
                    kwargs[key] = int(float(value))
                else:
                    kwargs[key] = float(value)
            except ValueError:
                raise ScaletuneError(f"schedule {spec!r}: {key}={value!r} is not a number") from None
        if "steps" not in kwargs or "lr" not in kwargs:
            raise ScaletuneError(f"schedule {spec!r}: needs steps= and lr= (in the spec or from the caller)")
        return cls(kind=kind.strip(), **kwargs)


@dataclass(frozen=True)
class TableSchedule:
    """A schedule given as an explicit table of (step, lr): each rate holds until the next listed step.

    A dense table (every step listed) is used as is; a sparse one lists the steps where the rate changes and,
    as its last row, the last step. The table must start at step 0. ``source`` (a file name) is what `spec` returns.
    """

    table_steps: tuple[int, ...]
    table_lrs: tuple[float, ...]
    source: str = "table"

    def __post_init__(self) -> None:
        s = np.asarray(self.table_steps)
        r = np.asarray(self.table_lrs, dtype=float)
        if len(s) == 0 or len(s) != len(r):
            raise ScaletuneError(f"{self.source}: a (step, lr) table needs equally many steps and rates, at least one")
        if s[0] != 0 or np.any(np.diff(s) <= 0):
            raise ScaletuneError(f"{self.source}: table steps must start at 0 and increase (got first {s[0]})")
        if not np.all(np.isfinite(r)) or np.any(r < 0):
            raise ScaletuneError(f"{self.source}: table rates must be finite and >= 0")

    @property
    def steps(self) -> int:
        return int(self.table_steps[-1]) + 1

    @property
    def lr(self) -> float:
        return float(max(self.table_lrs))

    @property
    def warmup(self) -> int:
        """As for `Schedule`: the rate first reaches its peak at step ``warmup - 1`` (0: it starts there)."""
        r = np.asarray(self.table_lrs, dtype=float)
        return 0 if r[0] >= r.max() else int(self.table_steps[int(np.argmax(r >= r.max()))]) + 1

    def __call__(self, step: Any) -> np.ndarray:
        s = np.asarray(step, dtype=float)
        idx = np.searchsorted(np.asarray(self.table_steps, float), s, side="right") - 1
        return np.asarray(self.table_lrs, dtype=float)[np.clip(idx, 0, None)]

    def lrs(self, n: int | None = None) -> np.ndarray:
        return self(np.arange(self.steps if n is None else n))

    def spec(self) -> str:
        return self.source

    @classmethod
    def read(cls, path: str) -> "TableSchedule":
        """Read a CSV with columns ``step`` and ``lr``."""
        import pandas as pd

        try:
            df = pd.read_csv(path)
        except Exception as exc:  # malformed CSVs raise many pandas error types
            raise ScaletuneError(f"{path}: cannot read as a (step, lr) CSV ({type(exc).__name__})") from None
        for col in ("step", "lr"):
            if col not in df.columns:
                raise ScaletuneError(f"{path}: missing column {col!r} (a schedule table needs columns step, lr)")
        step = pd.to_numeric(df["step"], errors="coerce").to_numpy(float)
        lr = pd.to_numeric(df["lr"], errors="coerce").to_numpy(float)
        if not (np.all(np.isfinite(step)) and np.all(np.isfinite(lr))):
            raise ScaletuneError(f"{path}: non-numeric value in column step or lr")
        order = np.argsort(step, kind="stable")
        return cls(tuple(int(v) for v in step[order]), tuple(float(v) for v in lr[order]), source=str(path))


def read_schedule(text: str | Schedule | TableSchedule, **overrides: Any) -> Schedule | TableSchedule:
    """A schedule from a spec string, or from a path to a (step, lr) CSV table."""
    if isinstance(text, (Schedule, TableSchedule)):
        return text
    from pathlib import Path

    if Path(text).suffix.lower() in (".csv", ".txt") or Path(text).is_file():
        if not Path(text).is_file():
            raise ScaletuneError(f"{text}: no such schedule table")
        return TableSchedule.read(text)
    return Schedule.parse(text, **overrides)
