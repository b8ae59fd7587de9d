"""Learning-rate schedules as pure, vectorised functions step -> learning rate (numpy only).

Convention: step ``s`` (0-indexed) is the s-th optimizer update and ``schedule(s)`` the rate it uses.
Warm-up is linear from ``lr/warmup`` at step 0 to the peak ``lr`` at step ``warmup-1``; every shape below
starts after warm-up. ``final`` is the end rate as a fraction of the peak, reached at step == steps (as
PyTorch's schedulers and the multi-power-law data do), so the last update, step steps-1, runs just above it.

A schedule is written as a spec string, ``KIND:key=value,...``, e.g.

    cosine:steps=24000,lr=3e-4,warmup=2160,final=0.1
    wsd:steps=24000,lr=3e-4,warmup=2160,cooldown=0.2,shape=1-sqrt,final=0
    wsd:steps=24000,lr=3e-4,decay_start=20000,shape=exp,final=0.1
    twostage:steps=16000,lr=3e-4,switch=8000,ratio=0.3
    step:steps=1000,lr=1e-3,milestones=500|750,gamma=0.1
    power:steps=10000,lr=0.02,a=4,b=0.51,tokens_per_step=4096,cooldown=0.1
    free:2160=0.0003|20000=0.0003|23999=3e-06
    table:0=0.001|500=0.0001|999=0.0001

Kinds: constant, cosine, linear, wsd (cooldown shape linear | 1-sqrt | cosine | exp), power (Shen et al.
2024: lr = min(peak, a * n^-b) with n tokens seen, then an optional exponential cooldown), rex (Chen et al.
2021), step (multiply by gamma at each milestone), twostage (peak, then ratio*peak from ``switch``), free
(piecewise linear through ``STEP=RATE`` knots after a warm-up to the first knot; what schedule optimisation
emits), table (each rate holds until the next listed step; also a path to a ``step,lr`` CSV).

Each kind is a small frozen dataclass, a subclass of `Schedule` with its own fields, registered under its
kind name with `register_schedule`; `parse_schedule` looks the kind up, and ``parse_schedule(s.spec()) == s``
for every schedule. A new kind takes a few lines:

    @register_schedule("invsqrt")
    @dataclass(frozen=True, kw_only=True)
    class InverseSqrt(Schedule):
        shift: float = 1.0  # its own keys, with defaults

        def rate(self, s):  # the rate after warm-up, for an array of steps
            return self.lr / np.sqrt(np.maximum(s - self.warmup, 0.0) / self.shift + 1.0)

    parse_schedule("invsqrt:steps=1000,lr=1e-3,warmup=100,shift=50")
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import numpy as np

from scaletune.errors import ScaletuneError

WSD_SHAPES = ("linear", "1-sqrt", "cosine", "exp")

Array = np.ndarray[Any, Any]
S = TypeVar("S", bound="Schedule")
_REGISTRY: dict[str, type[Schedule]] = {}
_KIND_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_-")


class _ScheduleType(type):
    """``Schedule(kind=..., **fields)`` builds the class registered for ``kind`` (the pre-registry API)."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        if cls is Schedule:
            if args or "kind" not in kwargs:
                raise TypeError("Schedule(kind=KIND, key=value, ...) takes keywords only, kind among them")
            kind = kwargs.pop("kind")
            return _build(schedule_class(kind), kwargs, f"schedule {kind}")
        return super().__call__(*args, **kwargs)


@dataclass(frozen=True, kw_only=True)
class Schedule(metaclass=_ScheduleType):
    """A learning-rate schedule of ``steps`` updates with peak rate ``lr``; call it with a step or an array.

    Subclasses (one per kind) add their own fields and implement `rate`, the rate after warm-up; warm-up is
    applied here, once for every kind. The default `spec` / `from_body` write and read ``key=value`` pairs of
    the dataclass fields (int, float, str, their optionals, ``|``-separated tuples of numbers).
    """

    kind: ClassVar[str] = ""
    steps: int
    lr: float
    warmup: int = 0

    if TYPE_CHECKING:  # what type checkers see of the metaclass's ``Schedule(kind=..., **fields)``

        def __init__(self, *, kind: str, **fields: Any) -> None: ...

    def __post_init__(self) -> None:
        if self.steps <= 0 or not self.lr > 0:
            raise ScaletuneError(f"schedule {self.kind}: steps and lr must be positive (got steps={self.steps}, lr={self.lr})")
        if not 0 <= self.warmup < self.steps:
            raise ScaletuneError(f"schedule {self.kind}: warmup={self.warmup} must be in [0, steps={self.steps})")

    def rate(self, s: Array) -> Array:
        """Rates at steps ``s`` (floats) ignoring warm-up; subclasses implement it."""
        raise NotImplementedError(f"{type(self).__name__} must implement rate(s)")

    def __call__(self, step: Any) -> Array:
        """Rates at ``step`` (a number or an array of steps), warm-up included."""
        s = np.asarray(step, dtype=float)
        out = self.rate(s)
        if self.warmup > 0:
            out = np.where(s < self.warmup, self.lr * (s + 1) / self.warmup, out)
        return out

    def lrs(self, n: int | None = None) -> Array:
        """Rates of steps 0 .. n-1 (default: the whole schedule)."""
        return self(np.arange(self.steps if n is None else n))

    def progress(self, s: Array) -> Array:
        """Fraction of the run after warm-up, 0 at the end of warm-up to 1 at step == steps."""
        return np.clip((s - self.warmup) / max(self.steps - self.warmup, 1), 0.0, 1.0)

    def spec(self) -> str:
        """The spec string that `parse_schedule` turns back into this schedule (``steps``, ``lr`` and the keys
        that differ from their defaults)."""
        parts = []
        for f in fields(self):
            value = getattr(self, f.name)
            default = f.default_factory() if f.default_factory is not MISSING else f.default
            if f.init and (f.name in ("steps", "lr") or value != default):
                parts.append(f"{f.name}={'|'.join(map(str, value)) if isinstance(value, tuple) else value}")
        return f"{self.kind}:{','.join(parts)}"

    @classmethod
    def from_body(cls: type[S], body: str, spec: str, **overrides: Any) -> S:
        """Build from the part of a spec after ``KIND:``; ``overrides`` fill the keys the body leaves out."""
        keys = _keys(cls)
        values: dict[str, Any] = dict(overrides)
        for part in filter(None, (p.strip() for p in body.split(","))):
            key, sep, value = part.partition("=")
            key = key.strip()
            if not sep or key not in keys:
                raise ScaletuneError(f"schedule {spec!r}: cannot use {part!r} (keys: {', '.join(keys)})")
            values[key] = value.strip()
        for key, value in values.items():
            if isinstance(value, str) and key in keys:
                try:
                    values[key] = keys[key](value)
                except ValueError:
                    raise ScaletuneError(f"schedule {spec!r}: {key}={value!r} is not a number") from None
        return _build(cls, values, f"schedule {spec!r}")

    @classmethod
    def parse(cls, spec: str, **overrides: Any) -> Schedule:
        """Same as `parse_schedule` (kept as a method: ``Schedule.parse(spec)``)."""
        sched = parse_schedule(spec, **overrides)
        if not isinstance(sched, cls):
            raise ScaletuneError(f"schedule {spec!r} is a {sched.kind} schedule, not {cls.kind}")
        return sched


def _converter(tp: Any) -> Callable[[str], Any]:
    """How a spec's text becomes a field of type ``tp``."""
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and len(args) == 1:
        return _converter(args[0])
    if typing.get_origin(tp) is tuple and len(args) == 2 and args[1] is Ellipsis:
        item = _converter(args[0])
        return lambda text: tuple(item(v) for v in text.split("|") if v)
    if tp is int:
        return lambda text: int(float(text))
    if tp in (float, str):
        return typing.cast(Callable[[str], Any], tp)
    raise TypeError(f"a schedule field of type {tp} cannot be written in a spec (int, float, str, tuple[int, ...])")


def _keys(cls: type[Schedule]) -> dict[str, Callable[[str], Any]]:
    """The spec keys of a kind and how each is read: its dataclass fields that ``__init__`` takes."""
    hints = typing.get_type_hints(cls)
    return {f.name: _converter(hints[f.name]) for f in fields(cls) if f.init}


def _build(cls: type[S], values: dict[str, Any], where: str) -> S:
    """``cls(**values)`` with unknown and missing keys reported as a ScaletuneError naming them."""
    known = {f.name: f for f in fields(cls) if f.init}
    unknown = [k for k in values if k not in known]
    if unknown:
        raise ScaletuneError(f"{where}: cannot use {', '.join(unknown)} (keys: {', '.join(known)})")
    required = [k for k, f in known.items() if f.default is MISSING and f.default_factory is MISSING]
    missing = [k + "=" for k in required if k not in values]
    if missing:
        raise ScaletuneError(
            f"{where}: needs {' and '.join(k + '=' for k in required)} (in the spec or from the caller; {', '.join(missing)} missing)"
        )
    return cls(**values)


@typing.overload
def register_schedule(kind: str, cls: None = None, *, replace: bool = False) -> Callable[[type[S]], type[S]]: ...


@typing.overload
def register_schedule(kind: str, cls: type[S], *, replace: bool = False) -> type[S]: ...


def register_schedule(kind: str, cls: type[S] | None = None, *, replace: bool = False) -> Any:
    """Register ``cls`` (a `Schedule` dataclass subclass) as the schedule ``kind``; usable as a decorator.

    ``kind`` is lowercase letters, digits, ``_`` and ``-``. Registering a kind that exists under another class
    needs ``replace=True`` (a class redefined under the same module and name replaces its earlier self).
    """

    def add(c: type[S]) -> type[S]:
        if not (isinstance(c, type) and issubclass(c, Schedule)):
            raise TypeError(f"schedule kind {kind!r}: {c!r} is not a subclass of Schedule")
        if not kind or not set(kind) <= _KIND_CHARS:
            raise ScaletuneError(f"schedule kind {kind!r}: use lowercase letters, digits, '_' and '-'")
        old = _REGISTRY.get(kind, c)
        redefined = (old.__module__, old.__qualname__) == (c.__module__, c.__qualname__)  # a re-run notebook cell
        if not (redefined or replace):
            raise ScaletuneError(
                f"schedule kind {kind!r} is registered already ({_REGISTRY[kind].__name__})",
                hint="pass replace=True to register another class under it",
            )
        if c.rate is Schedule.rate and c.__call__ is Schedule.__call__:
            raise TypeError(f"schedule kind {kind!r}: {c.__name__} must implement rate(s)")
        _keys(c)  # every field can be written in a spec (fails here, not when a spec is read)
        c.kind = kind
        _REGISTRY[kind] = c
        return c

    return add if cls is None else add(cls)


def schedule_kinds() -> tuple[str, ...]:
    """The registered schedule kinds, in registration order (built-ins first)."""
    return tuple(_REGISTRY)


def schedule_class(kind: str) -> type[Schedule]:
    """The class registered for ``kind``."""
    try:
        return _REGISTRY[kind]
    except KeyError:
        raise ScaletuneError(
            f"unknown schedule kind {kind!r} (known: {', '.join(_REGISTRY)})", hint="register_schedule adds a kind"
        ) from None


def parse_schedule(spec: str, **overrides: Any) -> Schedule:
    """A schedule from ``KIND:key=value,...`` (or a path to a ``step,lr`` CSV table).

    Keyword ``overrides`` fill keys the spec leaves out (``steps``, ``lr``, ``warmup`` from a run); a free or
    table schedule gives all three by its knots and ignores them.
    """
    text = spec.strip()
    kind, colon, body = text.partition(":")
    if not (colon and kind.strip() in _REGISTRY) and _is_table_file(text):
        return TableSchedule.read(text)
    return schedule_class(kind.strip()).from_body(body, spec, **overrides)


def read_schedule(text: str | Schedule, **overrides: Any) -> Schedule:
    """A schedule from a spec string or a path to a (step, lr) CSV table; a `Schedule` is returned as is."""
    return text if isinstance(text, Schedule) else parse_schedule(text, **overrides)


def _is_table_file(text: str) -> bool:
    try:
        if Path(text).is_file():
            return True
    except OSError:  # a long spec is no file name
        return False
    if Path(text).suffix.lower() in (".csv", ".txt"):
        raise ScaletuneError(f"{text}: no such schedule table")
    return False


@register_schedule("constant")
@dataclass(frozen=True, kw_only=True)
class ConstantSchedule(Schedule):
    """The peak rate throughout (after warm-up)."""

    def rate(self, s: Array) -> Array:
        return np.full_like(s, self.lr)


@dataclass(frozen=True, kw_only=True)
class _Decaying(Schedule):
    """A decay to ``final`` x peak at step == steps."""

    final: float = 0.0  # end rate / peak

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.final < 0 or self.final > 1:
            raise ScaletuneError(f"schedule {self.kind}: final={self.final} must be a fraction of the peak in [0, 1]")


@register_schedule("cosine")
@dataclass(frozen=True, kw_only=True)
class CosineSchedule(_Decaying):
    """Half a cosine from the peak to ``final`` x peak."""

    def rate(self, s: Array) -> Array:
        peak, lo = self.lr, self.final * self.lr
        return lo + (peak - lo) * 0.5 * (1 + np.cos(np.pi * self.progress(s)))


@register_schedule("linear")
@dataclass(frozen=True, kw_only=True)
class LinearSchedule(_Decaying):
    """A straight line from the peak to ``final`` x peak."""

    def rate(self, s: Array) -> Array:
        peak, lo = self.lr, self.final * self.lr
        return peak - (peak - lo) * self.progress(s)


@dataclass(frozen=True, kw_only=True)
class _Cooldown(_Decaying):
    """A stable phase, then a cooldown over the last ``cooldown`` of the run (or from ``decay_start``)."""

    cooldown: float = 0.2  # cooldown length, as a fraction of steps if < 1 else in steps
    decay_start: int | None = None  # absolute step where the cooldown starts (overrides cooldown)

    @property
    def decay_step(self) -> int:
        """First step of the cooldown."""
        if self.decay_start is not None:
            return int(self.decay_start)
        length = self.cooldown * self.steps if self.cooldown < 1 else self.cooldown
        return int(round(self.steps - length))

    def cooldown_progress(self, s: Array) -> Array:
        """Fraction of the cooldown done, 0 at `decay_step` to 1 at step == steps."""
        d = self.decay_step
        return np.clip((s - d) / max(self.steps - d, 1), 0.0, 1.0)


@register_schedule("wsd")
@dataclass(frozen=True, kw_only=True)
class WSDSchedule(_Cooldown):
    """Warm-up, stable at the peak, then a cooldown of ``shape`` to ``final`` x peak."""

    shape: str = "linear"  # cooldown shape: linear | 1-sqrt | cosine | exp

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.shape not in WSD_SHAPES:
            raise ScaletuneError(f"wsd shape {self.shape!r} unknown (known: {', '.join(WSD_SHAPES)})")
        if self.shape == "exp" and self.final <= 0:
            raise ScaletuneError("wsd shape exp needs final > 0 (a geometric decay never reaches 0)")
        if not self.warmup <= self.decay_step < self.steps:
            raise ScaletuneError(f"wsd: the cooldown start {self.decay_step} must be in [warmup, steps)")

    def rate(self, s: Array) -> Array:
        peak, lo, q = self.lr, self.final * self.lr, self.cooldown_progress(s)
        if self.shape == "linear":
            decayed = peak - (peak - lo) * q
        elif self.shape == "1-sqrt":
            decayed = lo + (peak - lo) * (1 - np.sqrt(q))
        elif self.shape == "cosine":
            decayed = lo + (peak - lo) * 0.5 * (1 + np.cos(np.pi * q))
        else:  # exp: geometric from the peak to final x peak
            decayed = peak * (lo / peak) ** q
        return np.where(s < self.decay_step, peak, decayed)


@register_schedule("power")
@dataclass(frozen=True, kw_only=True)
class PowerSchedule(_Cooldown):
    """Shen et al. 2024: min(peak, a n^-b), n = tokens seen = step x tokens_per_step, then an exponential
    cooldown to ``final`` x peak (1e-3 x peak when final is 0)."""

    a: float = 4.0
    b: float = 0.51
    tokens_per_step: float = 1.0

    def _stable(self, s: Any) -> Any:
        return np.minimum(self.lr, self.a * np.maximum(s * self.tokens_per_step, 1.0) ** (-self.b))

    def rate(self, s: Array) -> Array:
        peak, lo, d = self.lr, self.final * self.lr, self.decay_step
        end = lo if lo > 0 else 1e-3 * peak
        start = self._stable(d)
        decayed = start * (end / start) ** self.cooldown_progress(s)
        out: Array = np.where(s < d, self._stable(s), decayed)
        return out


@register_schedule("rex")
@dataclass(frozen=True, kw_only=True)
class RexSchedule(Schedule):
    """REX (Chen et al. 2021): (1 - p) / (0.5 + 0.5 (1 - p)) of the peak at progress p."""

    def rate(self, s: Array) -> Array:
        p = self.progress(s)
        return self.lr * (1 - p) / (0.5 + 0.5 * (1 - p))


@register_schedule("step")
@dataclass(frozen=True, kw_only=True)
class StepSchedule(Schedule):
    """The peak, multiplied by ``gamma`` at each milestone (absolute steps)."""

    milestones: tuple[int, ...] = ()
    gamma: float = 0.1

    def rate(self, s: Array) -> Array:
        return self.lr * self.gamma ** np.searchsorted(np.asarray(self.milestones, float), s, side="right")


@register_schedule("twostage")
@dataclass(frozen=True, kw_only=True)
class TwoStageSchedule(Schedule):
    """The peak until step ``switch``, then ``ratio`` x peak."""

    switch: int
    ratio: float = 0.1

    def rate(self, s: Array) -> Array:
        return np.where(s < self.switch, self.lr, self.ratio * self.lr)


def _read_knots(body: str, spec: str) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """``STEP=RATE|STEP=RATE|...`` -> (steps, rates)."""
    steps, rates = [], []
    for part in filter(None, (p.strip() for p in body.split("|"))):
        step, sep, rate = part.partition("=")
        try:
            if not sep:
                raise ValueError
            steps.append(int(float(step)))
            rates.append(float(rate))
        except ValueError:
            raise ScaletuneError(f"schedule {spec!r}: {part!r} is not STEP=RATE") from None
    return tuple(steps), tuple(rates)


def _write_knots(kind: str, steps: tuple[int, ...], rates: tuple[float, ...]) -> str:
    return f"{kind}:" + "|".join(f"{int(s)}={float(r)!r}" for s, r in zip(steps, rates))


def _derive(obj: Schedule, **derived: Any) -> None:
    """Set ``steps``, ``lr``, ``warmup`` of a schedule that knots define; values given must agree with them."""
    for name, value in derived.items():
        given = getattr(obj, name)
        if given not in (None, value):
            raise ScaletuneError(f"schedule {obj.kind}: {name}={given} disagrees with its knots ({name} = {value})")
        object.__setattr__(obj, name, value)


@register_schedule("free")
@dataclass(frozen=True, kw_only=True)
class FreeSchedule(Schedule):
    """Piecewise linear through ``knots`` (steps) at ``levels`` (rates), after a linear warm-up to the first
    knot; what schedule optimisation emits (``free:2160=0.0003|...|23999=3e-06``). ``steps`` is the last knot
    + 1, ``warmup`` the first knot and ``lr`` its rate (the peak of a decaying schedule)."""

    knots: tuple[int, ...]
    levels: tuple[float, ...]
    # follow from the knots (a value given must agree): the spec holds the knots only
    steps: int = field(default=None, kw_only=True)  # type: ignore[assignment]
    lr: float = field(default=None, kw_only=True)  # type: ignore[assignment]
    warmup: int = field(default=None, kw_only=True)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        k, v = np.asarray(self.knots), np.asarray(self.levels, dtype=float)
        if len(k) == 0 or len(k) != len(v):
            raise ScaletuneError("free schedule: give knots as STEP=RATE|STEP=RATE|..., at least one")
        if k[0] < 0 or np.any(np.diff(k) <= 0):
            raise ScaletuneError(f"free schedule: knot steps must be >= 0 and increase (got {', '.join(map(str, k))})")
        if not np.all(np.isfinite(v)) or np.any(v < 0) or not v[0] > 0:
            raise ScaletuneError("free schedule: knot rates must be finite and >= 0, the first > 0")
        _derive(self, steps=int(k[-1]) + 1, lr=float(v[0]), warmup=int(k[0]))
        super().__post_init__()

    def rate(self, s: Array) -> Array:
        out: Array = np.interp(s, np.asarray(self.knots, float), np.asarray(self.levels, float))
        return out

    def spec(self) -> str:
        return _write_knots(self.kind, self.knots, self.levels)

    @classmethod
    def from_body(cls, body: str, spec: str, **overrides: Any) -> FreeSchedule:
        """The knots give steps, lr and warmup: ``overrides`` are ignored."""
        knots, levels = _read_knots(body, spec)
        return cls(knots=knots, levels=levels)


@register_schedule("table")
@dataclass(frozen=True)
class TableSchedule(Schedule):
    """A schedule given as an explicit table of (step, lr): each rate holds until the next listed step.

    A dense table (every step listed) is used as is; a sparse one lists the steps where the rate changes and,
    as its last row, the last step. The table must start at step 0; it holds its own warm-up. ``source`` (a
    file name) is what `spec` returns; a table made in memory writes its rows (``table:0=0.001|...``).
    ``steps`` is the last step + 1, ``lr`` the largest rate, ``warmup`` the step after the rate first reaches it.
    """

    table_steps: tuple[int, ...]
    table_lrs: tuple[float, ...]
    source: str = "table"
    steps: int = field(default=None, kw_only=True)  # type: ignore[assignment]
    lr: float = field(default=None, kw_only=True)  # type: ignore[assignment]
    warmup: int = field(default=None, kw_only=True)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        s = np.asarray(self.table_steps)
        r = np.asarray(self.table_lrs, dtype=float)
        if len(s) == 0 or len(s) != len(r):
            raise ScaletuneError(f"{self.source}: a (step, lr) table needs equally many steps and rates, at least one")
        if s[0] != 0 or np.any(np.diff(s) <= 0):
            raise ScaletuneError(f"{self.source}: table steps must start at 0 and increase (got first {s[0]})")
        if not np.all(np.isfinite(r)) or np.any(r < 0) or not r.max() > 0:
            raise ScaletuneError(f"{self.source}: table rates must be finite and >= 0, one > 0")
        warmup = 0 if r[0] >= r.max() else int(s[int(np.argmax(r >= r.max()))]) + 1
        _derive(self, steps=int(s[-1]) + 1, lr=float(r.max()), warmup=min(warmup, int(s[-1])))
        super().__post_init__()

    def __call__(self, step: Any) -> Array:  # the table holds its warm-up: no ramp on top
        s = np.asarray(step, dtype=float)
        idx = np.searchsorted(np.asarray(self.table_steps, float), s, side="right") - 1
        return np.asarray(self.table_lrs, dtype=float)[np.clip(idx, 0, None)]

    def spec(self) -> str:
        return self.source if self.source != "table" else _write_knots(self.kind, self.table_steps, self.table_lrs)

    @classmethod
    def from_body(cls, body: str, spec: str, **overrides: Any) -> TableSchedule:
        """The rows give steps, lr and warmup: ``overrides`` are ignored."""
        return cls(*_read_knots(body, spec))

    @classmethod
    def read(cls, path: str) -> TableSchedule:
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
