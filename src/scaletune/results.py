"""The results vocabulary every stage shares: one prediction type, one interval helper, one fit protocol.

- `Prediction`: a value with its interval (``lo``, ``hi`` at ``level``), how far it extrapolates (a factor,
  1.0 = inside the fitted data) and the method that produced it. Fields are floats for one point or numpy
  arrays of one shape for many (a curve, a list of targets); ``p[i]`` is the i-th point.
- `percentile_interval`: the one percentile (bootstrap) interval computation, NaN-aware.
- `Fit`: the protocol every fit result implements (scaling laws, curve laws, hyperparameter laws, isoFLOP):
  ``predict`` (point values), ``predict_interval`` (a `Prediction`), ``to_json`` / ``from_json``, a short
  repr and ``summary()`` (a plain-text table).
- `format_interval`: how a value and its interval read in a table cell ("2.05 [1.98, 2.12]").

JSON policy (`to_json` everywhere): strict JSON, NaN and infinities written as ``null`` (see
`scaletune._json.dumps`).
"""

from __future__ import annotations

import enum
import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol, runtime_checkable

import numpy as np

LEVEL = 0.95  # the default interval level everywhere


def percentile_interval(samples: Any, level: float = LEVEL, axis: int = 0) -> tuple[Any, Any]:
    """The central ``level`` interval of ``samples`` along ``axis`` (NaN samples ignored: failed bootstrap
    replicates are counted by the caller, never silently part of the interval). Floats for 1-d samples,
    arrays otherwise; NaN where a slice has no finite sample."""
    a = np.asarray(samples, dtype=float)
    if not 0.0 < level < 1.0:
        raise ValueError(f"interval level must lie in (0, 1), got {level}")
    tail = 50.0 * (1.0 - level)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="All-NaN slice")  # such a slice is reported as NaN
        lo = np.nanpercentile(a, tail, axis=axis)
        hi = np.nanpercentile(a, 100.0 - tail, axis=axis)
    if np.ndim(lo) == 0:
        return float(lo), float(hi)
    return lo, hi


def _plain(v: Any) -> Any:
    if isinstance(v, enum.Enum):
        return v.name
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    return v


@dataclass(frozen=True)
class Prediction:
    """A predicted value and its interval.

    ``value``, ``lo``, ``hi`` and ``extrapolation`` are floats (one point) or numpy arrays of one shape
    (several points). ``level`` is the interval's coverage (0.95 = 95%); ``extrapolation`` a factor (1.0 =
    inside the fitted data, 8.0 = 8x beyond it in the fit's own joint distance; NaN when unknown, e.g. a
    published law); ``method`` which law or rule produced it (an enum member or a short string);
    ``details`` the numbers behind it (exponents, the scale copied, ...).
    """

    value: Any
    lo: Any
    hi: Any
    level: float = LEVEL
    extrapolation: Any = 1.0
    method: Any = ""
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def interval(self) -> tuple[Any, Any]:
        return self.lo, self.hi

    def __len__(self) -> int:
        return int(np.size(self.value)) if np.ndim(self.value) else 1

    def __getitem__(self, i: int) -> "Prediction":
        """The i-th point of a vector prediction (as floats)."""
        if not np.ndim(self.value):
            if i in (0, -1):
                return self
            raise IndexError(i)

        def pick(a: Any) -> Any:
            return float(np.asarray(a, float)[i]) if np.ndim(a) else a

        return Prediction(pick(self.value), pick(self.lo), pick(self.hi), self.level, pick(self.extrapolation), self.method, self.details)

    @property
    def method_name(self) -> str:
        return self.method.name if isinstance(self.method, enum.Enum) else str(self.method)

    def to_dict(self) -> dict[str, Any]:
        return {
            "value": _plain(self.value),
            "lo": _plain(self.lo),
            "hi": _plain(self.hi),
            "interval": [_plain(self.lo), _plain(self.hi)],
            "level": self.level,
            "extrapolation": _plain(self.extrapolation),
            "method": _plain(self.method),
            "details": {k: _plain(v) for k, v in self.details.items()},
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Prediction":
        def arr(v: Any) -> Any:
            if isinstance(v, list):
                return np.array([math.nan if x is None else x for x in v], dtype=float)
            return math.nan if v is None else v

        lo, hi = (d["lo"], d["hi"]) if "lo" in d else tuple(d["interval"])
        return cls(
            arr(d["value"]),
            arr(lo),
            arr(hi),
            d.get("level", LEVEL),
            arr(d.get("extrapolation", 1.0)),
            d.get("method", ""),
            dict(d.get("details", {})),
        )

    def __str__(self) -> str:
        if np.ndim(self.value):
            return f"Prediction({len(self)} points, {self.level:.0%}, method={self.method_name})"
        out = f"{format_interval(self.value, self.lo, self.hi)} ({self.level:.0%}"
        if math.isfinite(self.extrapolation) and self.extrapolation > 1.0 + 1e-9:
            out += f", x{self.extrapolation:.3g} out"
        return out + (f", {self.method_name})" if self.method_name else ")")

    def __repr__(self) -> str:
        return f"<{self}>"


def format_interval(value: float, lo: float, hi: float, digits: int = 4) -> str:
    """``value [lo, hi]`` with ``digits`` significant digits; "-" for a missing bound."""

    def num(x: Any) -> str:
        return "-" if x is None or not math.isfinite(float(x)) else f"{float(x):.{digits}g}"

    return f"{num(value)} [{num(lo)}, {num(hi)}]"


def format_scale(scale: Mapping[str, float], keys: tuple[str, ...] | None = None) -> str:
    """A scale as a label, ``N=1e+06, D=2e+07`` (3 significant digits), only ``keys`` when given; "" when empty."""
    return ", ".join(f"{k}={v:.3g}" for k, v in scale.items() if keys is None or k in keys)


@runtime_checkable
class Fit(Protocol):
    """What every fit result implements (`FitResult`, `CurveFit`, `HparamLaw`, `IsoflopResult`)."""

    def predict(self, x: Any) -> Any:
        """Point predictions at ``x`` (a mapping of variable -> values, or the fit's own input)."""

    def predict_interval(self, x: Any, level: float = LEVEL) -> Prediction:
        """A `Prediction` at ``x``: value, interval at ``level``, extrapolation and method."""

    def to_json(self) -> str:
        """Strict JSON (NaN -> null) that ``from_json`` reads back to an equal fit."""

    def summary(self) -> str:
        """A plain-text table of the fitted values and their intervals (80 columns)."""
