"""Learning-rate and batch-size laws fitted on the optima of a sweep, and the loss law of the same runs.

Forms (the ones a user would otherwise copy from a paper, fitted here on their own runs):

    lr_ND     lr*(N, D) = k N^a D^b        StepLaw (Li et al. 2025)
    batch_D   B*(D)     = k D^c            StepLaw; B in tokens
    batch_ND  B*(N, D)  = k N^d D^c        StepLaw's with an N term (whether d's interval excludes 0 is only
                                           described: `scaletune.hparams.select` chooses by held-out loss)
    lr_C      lr*(C)    = k C^e            DeepSeek LLM (2024)
    batch_C   B*(C)     = k C^f            DeepSeek LLM; B in tokens

N is whatever the run table's N column counts (say which in the table; StepLaw uses non-embedding
parameters), D tokens, C FLOPs from the C column, else 6*N*D. Fits are least squares in natural-log space
(the `powerlaw` law of `scaletune.laws`, objective mse_log). Intervals come from a two-level bootstrap:
each replicate resamples the scales *and* draws each scale's optimum from its own bootstrap over runs, so
both the scatter between scales and the noise of each sweep widen the interval. Only bracketed optima are
fitted; the others are listed in ``excluded``. The extrapolation check holds the largest scale out, refits
and reports whether the held-out optimum falls in the predicted interval.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any, Mapping, Sequence

import numpy as np
import numpy.typing as npt
import pandas as pd

from scaletune._json import dumps
from scaletune.errors import ScaletuneError
from scaletune.hparams.optimum import Optimum
from scaletune.laws import FitResult, fit
from scaletune.results import LEVEL, Prediction, format_interval, format_scale, percentile_interval
from scaletune.runtable import training_flops

FORMS = {
    "lr_ND": ("lr", ("N", "D"), "lr*(N, D) = k N^a D^b (StepLaw form)"),
    "batch_D": ("batch_size", ("D",), "B*(D) = k D^c tokens (StepLaw form)"),
    "batch_ND": ("batch_size", ("N", "D"), "B*(N, D) = k N^d D^c tokens (StepLaw form with an N term)"),
    "lr_C": ("lr", ("C",), "lr*(C) = k C^e (DeepSeek LLM form)"),
    "batch_C": ("batch_size", ("C",), "B*(C) = k C^f tokens (DeepSeek LLM form)"),
}
_COLUMN = {"lr": 0, "batch_size": 1}  # column of Optimum.samples holding ln(response)


@dataclass(frozen=True)
class HparamLaw:
    """One fitted hyperparameter law (implements `scaletune.results.Fit`). ``fit_`` is the `scaletune.laws`
    FitResult whose bootstrap samples are the two-level bootstrap described in the module docstring;
    ``holdout`` the extrapolation check."""

    name: str
    response: str
    variables: tuple[str, ...]
    formula: str
    fit_: FitResult
    scales: int
    excluded: tuple[str, ...] = ()
    holdout: dict[str, Any] | None = None
    note: str = ""

    @property
    def exponents(self) -> dict[str, tuple[float, tuple[float, float]]]:
        """Exponent per variable with its interval, e.g. {"N": (a, (lo, hi))}."""
        out = {}
        for v in self.variables:
            p = f"c_{v}"
            out[v] = (self.fit_.params_[p], self.fit_.intervals.get(p, (math.nan, math.nan)))
        return out

    @property
    def coefficient(self) -> tuple[float, tuple[float, float]]:
        return self.fit_.derived_["k"], self.fit_.intervals.get("k", (math.nan, math.nan))

    @property
    def method(self) -> Method | str:
        """The `Method` of this law's predictions (its name for a law outside the standard forms)."""
        return _LAW_METHOD.get(self.name, self.name)

    def _x(self, point: Mapping[str, Any]) -> dict[str, npt.NDArray[np.float64]]:
        missing = [v for v in self.variables if v not in point]
        if missing:
            raise ScaletuneError(f"{self.name}: the point has no {', '.join(missing)} (the law's variables: {', '.join(self.variables)})")
        return {v: np.atleast_1d(np.asarray(point[v], dtype=float)) for v in self.variables}

    def predict(self, point: Mapping[str, Any]) -> Any:
        """The law at ``point`` (variable -> value, or arrays of values): a float, or an array for arrays."""
        value = self.fit_.predict(self._x(point))
        return float(value[0]) if all(np.ndim(point[v]) == 0 for v in self.variables) else value

    def predict_interval(self, point: Mapping[str, Any], level: float = LEVEL) -> Prediction:
        """A `Prediction` at ``point``: the law's value, the two-level bootstrap interval at ``level`` (NaN
        without bootstrap samples), how far the point lies outside the fitted scales (a factor, jointly in
        the law's variables: `FitResult.extrapolation`) and the law's `Method`. Floats for one point,
        arrays for arrays."""
        x = self._x(point)
        value = self.fit_.predict(x)
        lo = hi = np.full(len(value), math.nan)
        boot = self.fit_.bootstrap_params
        if boot is not None and np.isfinite(boot).any():
            lo, hi = percentile_interval(self.fit_.predict_samples(x), level, axis=0)
        extra = self.fit_.extrapolation(x)
        details = {"law": self.name, "formula": self.formula}
        if all(np.ndim(point[v]) == 0 for v in self.variables):
            return Prediction(float(value[0]), float(np.ravel(lo)[0]), float(np.ravel(hi)[0]), level, float(extra[0]), self.method, details)
        return Prediction(value, np.asarray(lo), np.asarray(hi), level, extra, self.method, details)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "response": self.response,
            "variables": list(self.variables),
            "formula": self.formula,
            "coefficient_k": self.coefficient[0],
            "coefficient_k_interval": list(self.coefficient[1]),
            "exponents": {v: {"value": e, "interval": list(i)} for v, (e, i) in self.exponents.items()},
            "scales": self.scales,
            "excluded": list(self.excluded),
            "holdout": self.holdout,
            "note": self.note,
            "fit": self.fit_.to_dict(),
        }

    def to_json(self) -> str:
        """Strict JSON (NaN -> null) that `from_json` reads back to a law with the same predictions."""
        return dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str) -> "HparamLaw":
        try:
            d = json.loads(text)
            fit_text = dumps(d["fit"])
            return cls(
                name=d["name"],
                response=d["response"],
                variables=tuple(d["variables"]),
                formula=d["formula"],
                fit_=FitResult.from_json(fit_text),
                scales=int(d["scales"]),
                excluded=tuple(d["excluded"]),
                holdout=d.get("holdout"),
                note=d.get("note", ""),
            )
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ScaletuneError(
                f"not a hyperparameter law ({type(exc).__name__}: {exc}): expected the JSON written by HparamLaw.to_json()"
            ) from None

    def __repr__(self) -> str:
        k, _ = self.coefficient
        exps = " ".join(f"{v}^{e:+.3f}" for v, (e, _) in self.exponents.items())
        return f"<HparamLaw {self.name}: {self.response} = {k:.3g} {exps} ({self.scales} scales)>"

    def summary(self) -> str:
        """The coefficient and exponents with their 95% intervals, the scales and the held-out check."""
        k, kiv = self.coefficient
        rows = [("k", k, kiv)] + [(f"exponent of {v}", e, iv) for v, (e, iv) in self.exponents.items()]
        lines = [f"{self.name}: {self.formula}", f"{'parameter':<16} value [95% interval]"]
        lines += [f"{name:<16} {format_interval(value, *iv)}" for name, value, iv in rows]
        boot = self.fit_.diagnostics.get("bootstrap", {})
        lines.append(
            f"scales fitted: {self.scales}, left out (unbracketed): {len(self.excluded)}, bootstrap: "
            f"{boot.get('samples', 0)} ({boot.get('failed', 0)} failed)"
        )
        for p in (self.holdout or {}).get("points", []):
            lines.append(
                f"largest scale held out: predicted {p['predicted']:.4g}, observed {p['observed']:.4g} "
                f"(x{p['ratio']:.2f}, {'covered' if p['covered'] else 'not covered'})"
            )
        if self.note:
            lines.append(f"note: {self.note}")
        return "\n".join(lines)


class Method(str, Enum):
    """Which law or rule produced a `Prediction` (the decision; English notes are rendered from it)."""

    LR_ND = "lr*(N, D)"
    LR_NDB = "lr*(N, D, B)"
    LR_C = "lr*(C)"
    LR_BAND_OLS = "lr: OLS on near-optimal runs"
    LR_JOINT = "lr*: joint landscape"
    LR_PROXY_COPIED = "lr: largest proxy copied"
    BATCH_D = "B*(D)"
    BATCH_ND = "B*(N, D)"
    BATCH_C = "B*(C)"
    BATCH_BAND_OLS = "B: OLS on near-optimal runs"
    BATCH_JOINT_D = "B*(D): joint landscape"
    BATCH_JOINT_ND = "B*(N, D): joint landscape"
    BATCH_NEAREST_SWEEP = "B: nearest sweep's optimum"
    BATCH_NEAREST_BOUND = "B: nearest sweep's best tested size (a bound)"
    BATCH_AS_PROXIES = "B: the proxies' (not swept)"
    BATCH_REFERENCE = "B: the lr law's batch size"
    BATCH_MODE = "B: the proxies' most common"
    LOSS_CHINCHILLA = "L(N, D) chinchilla on per-scale optima"
    LOSS_COMPUTE = "L(C) compute on per-scale optima"
    LOSS_CHINCHILLA_JOINT = "L(N, D) chinchilla on joint optima"
    LOSS_COMPUTE_JOINT = "L(C) compute on joint optima"
    WARMUP_FRACTION = "the proxies' warm-up fraction"
    NOT_IN_RUNS = "not in the runs"
    SEQUENCES = "batch size / seq_len"


_LAW_METHOD = {
    "lr_ND": Method.LR_ND,
    "lr_NDB": Method.LR_NDB,
    "lr_C": Method.LR_C,
    "batch_D": Method.BATCH_D,
    "batch_ND": Method.BATCH_ND,
    "batch_C": Method.BATCH_C,
}


def _label(o: Optimum) -> str:
    return format_scale(o.scale)


def _value(o: Optimum, var: str) -> float:
    if var in o.scale:
        return o.scale[var]
    if var in o.extra:
        return float(o.extra[var])
    if var == "C" and "N" in o.scale and "D" in o.scale:
        return float(training_flops(o.scale["N"], o.scale["D"]))
    raise ScaletuneError(f"optimum at {_label(o)} has no {var!r} (scale columns: {', '.join(o.scale)})")


def _design_rank_ok(logs: np.ndarray) -> bool:
    A = np.column_stack([np.ones(len(logs)), logs])
    return bool(np.linalg.matrix_rank(A, tol=1e-6 * max(1.0, np.abs(A).max())) == A.shape[1])


def fit_hparam_law(
    optima: Sequence[Optimum],
    response: str,
    variables: Sequence[str],
    *,
    name: str | None = None,
    bootstrap: int = 400,
    seed: int = 0,
    holdout: bool = True,
) -> HparamLaw:
    """Fit ``response = k * prod(v^c_v)`` (response ``lr`` or ``batch_size``) on the bracketed optima."""
    if response not in _COLUMN:
        raise ScaletuneError(f"unknown response {response!r} (lr or batch_size)")
    variables = tuple(variables)
    use, excluded = [], []
    for o in optima:
        if o.usable(response):
            use.append(o)
        else:
            excluded.append(f"{_label(o)}: {o.message if not o.bracketed else 'batch size not swept'}")
    what = f"{response} law in {', '.join(variables)}"
    if len(use) <= len(variables) + 1:
        raise ScaletuneError(
            f"{what}: {len(use)} bracketed scales for {len(variables) + 1} parameters; need more scales "
            f"than parameters" + (f" (excluded: {'; '.join(excluded)})" if excluded else "")
        )
    table = pd.DataFrame({v: [_value(o, v) for o in use] for v in variables})
    table[response] = [o.lr_ if response == "lr" else o.batch_size_ for o in use]
    logs = np.log(table[list(variables)].to_numpy(float))
    for j, v in enumerate(variables):
        if len(np.unique(np.round(logs[:, j], 9))) < 2:
            raise ScaletuneError(f"{what}: {v} has one single value among the bracketed scales; the {v} exponent cannot be fitted")
    if not _design_rank_ok(logs):
        raise ScaletuneError(
            f"{what}: the scales' {' and '.join(variables)} are collinear (e.g. D/N constant over the ladder); the exponents cannot be separated"
        )
    table.attrs["source"] = f"optima ({response})"
    # bootstrap=0: the intervals come from the two-level bootstrap below, not from the fitter's own
    point = fit(f"powerlaw:{','.join(variables)}", table, y=response, objective="mse_log", bootstrap=0)

    # Two-level bootstrap (see module docstring), solved in closed form: mse_log on a log-linear law is
    # ordinary least squares in log space.
    rng = np.random.default_rng(seed)
    col = _COLUMN[response]
    y_samples = None
    own = [o.samples for o in use if o.samples is not None and len(o.samples)]
    if len(own) == len(use):
        # independent bootstraps per scale, possibly of different sizes: draws paired in order, up to the fewest
        n = min(len(a) for a in own)
        y_samples = np.stack([a[:n, col] for a in own], axis=0)
    A = np.column_stack([np.ones(len(use)), logs])
    y0 = np.log(table[response].to_numpy(float))
    thetas = np.full((bootstrap, A.shape[1]), np.nan)
    for i in range(bootstrap):
        idx = rng.integers(0, len(use), len(use))
        if len(np.unique(idx)) <= A.shape[1] - 1 or not _design_rank_ok(logs[idx]):
            continue
        y = y0[idx].copy()
        if y_samples is not None:
            draws = y_samples[idx, rng.integers(0, y_samples.shape[1], len(idx))]
            y = np.where(np.isfinite(draws), draws, y)  # a failed resample of a scale keeps its point estimate
        thetas[i] = np.linalg.lstsq(A[idx], y, rcond=None)[0]
    ok = np.all(np.isfinite(thetas), axis=1)
    intervals = {}
    if ok.sum() >= 20:
        named = {p: thetas[ok, j] for j, p in enumerate(point.law_.params)}
        named.update(point.law_.derive(named))
        intervals = {k: percentile_interval(v) for k, v in named.items()}
    diagnostics = dict(point.diagnostics)
    diagnostics["bootstrap"] = {
        "samples": bootstrap,
        "failed": int((~ok).sum()),
        "groups": len(use),
        "kind": "scales resampled + each scale's optimum drawn from its bootstrap over runs",
    }
    result = replace(point, bootstrap_params=thetas, intervals=intervals, diagnostics=diagnostics, seed=seed)

    check = None
    if holdout:
        check = _holdout_largest(use, response, variables, bootstrap, seed)
    return HparamLaw(
        name=name or f"{response}_{''.join(variables)}",
        response=response,
        variables=variables,
        formula=f"{response} = k * " + " * ".join(f"{v}^c_{v}" for v in variables),
        fit_=result,
        scales=len(use),
        excluded=tuple(excluded),
        holdout=check,
    )


def _holdout_largest(use: Sequence[Optimum], response: str, variables: tuple[str, ...], bootstrap: int, seed: int) -> dict[str, Any] | None:
    """Refit without the largest scale (by compute, else by the first variable) and predict it."""
    by = "C" if all(("N" in o.scale and "D" in o.scale) or "C" in o.extra for o in use) else variables[0]

    def key(o: Optimum) -> float:
        return _value(o, by)

    largest = max(key(o) for o in use)
    held = [o for o in use if key(o) == largest]
    rest = [o for o in use if key(o) != largest]
    try:
        law = fit_hparam_law(rest, response, variables, bootstrap=bootstrap, seed=seed + 1, holdout=False)
    except ScaletuneError as exc:
        return {"skipped": str(exc)}
    points = []
    for o in held:
        pred = law.predict_interval({v: _value(o, v) for v in variables})
        obs = o.lr_ if response == "lr" else float(o.batch_size_ or math.nan)
        obs_iv = o.lr_interval if response == "lr" else o.batch_size_interval or (math.nan, math.nan)
        points.append(
            {
                "scale": dict(o.scale),
                "observed": obs,
                "observed_interval": list(obs_iv),
                "predicted": pred.value,
                "interval": list(pred.interval),
                "ratio": pred.value / obs,
                "extrapolation": pred.extrapolation,
                "covered": bool(pred.interval[0] <= obs <= pred.interval[1]),
            }
        )
    return {"held_out": "largest scale (by compute C)", "points": points, "coverage": float(np.mean([p["covered"] for p in points]))}


@dataclass(frozen=True)
class TransferReport:
    """How far the optimal learning rate moved across width (N) and across depth, at fixed tokens.

    ``rows`` (width): per token budget D and depth, lr*(largest N) / lr*(smallest N) with its bootstrap
    interval. ``depth_rows``: per token budget D and width, lr*(deepest) / lr*(shallowest) with its interval
    and the depth exponent e of lr* ~ depth^e fitted over every bracketed depth (the depth correction a
    transfer needs). A shift holds when it is within half a 2x grid step (a factor sqrt 2) or its interval
    contains 1. ``held`` is True when every row, width and depth, held; ``note`` describes width,
    ``depth_note`` depth ("" where that axis was not swept).
    """

    rows: tuple[dict[str, Any], ...]
    held: bool
    note: str
    depth_rows: tuple[dict[str, Any], ...] = ()
    depth_note: str = ""

    @property
    def width_held(self) -> bool | None:
        return all(r["held"] for r in self.rows) if self.rows else None

    @property
    def depth_held(self) -> bool | None:
        return all(r["held"] for r in self.depth_rows) if self.depth_rows else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": list(self.rows),
            "held": self.held,
            "note": self.note,
            "width_held": self.width_held,
            "depth_rows": list(self.depth_rows),
            "depth_held": self.depth_held,
            "depth_note": self.depth_note,
        }

    def __repr__(self) -> str:
        return (
            f"<TransferReport: {len(self.rows)} width row(s), {len(self.depth_rows)} depth row(s), "
            f"{'held' if self.held else 'did NOT hold'}>"
        )


_HALF_STEP = 0.5 * math.log(2)  # half a 2x grid step in ln(lr): a smaller move is within the sweep's resolution


def _axis(o: Optimum, name: str) -> float | None:
    """Width or depth of an optimum's scale (a grouping column, else a constant column of its runs)."""
    raw: Any = o.scale.get(name, o.extra.get(name))
    try:
        v = float(raw)
    except (TypeError, ValueError):  # missing, or not a number
        return None
    return v if math.isfinite(v) and v > 0 else None


def _ln_lr_draws(group: Sequence[Optimum]) -> np.ndarray | None:
    """(draws, scales) matrix of bootstrap ln lr*, or None when fewer than 10 draws per scale exist.

    The scales' bootstraps are independent (one per sweep), so draw i of every scale together is one draw
    of the joint distribution."""
    cols = []
    for o in group:
        if o.samples is None:
            return None
        x = o.samples[:, 0]
        cols.append(x[np.isfinite(x)])
    n = min(len(c) for c in cols)
    return np.column_stack([c[:n] for c in cols]) if n >= 10 else None


def _transfer_row(
    D: float, lo_o: Optimum, hi_o: Optimum, draws: np.ndarray | None, columns: dict[str, Any], fixed: str, value: float | None
) -> dict[str, Any]:
    """A transfer row at token budget ``D``: the ``columns`` it compares, lr*(hi) / lr*(lo) with its interval
    (from paired draws: column 0 = lo, -1 = hi) and whether it held, and the axis held ``fixed`` at ``value``
    (where the table names it)."""
    shift = hi_o.lr_ / lo_o.lr_
    interval = (math.nan, math.nan)
    if draws is not None:
        lo, hi = percentile_interval(draws[:, -1] - draws[:, 0])
        interval = (math.exp(lo), math.exp(hi))
    held = abs(math.log(shift)) <= _HALF_STEP or (interval[0] <= 1 <= interval[1])
    row = {"D": D, **columns, "shift": shift, "shift_interval": list(interval), "held": bool(held)}
    if value is not None:
        row[fixed] = value
    return row


def _width_rows(optima: Sequence[Optimum]) -> list[dict[str, Any]]:
    # Same D and same depth (when known): a depth sweep at fixed width also changes N, and is not a width shift.
    groups: dict[tuple[float, float | None], list[Optimum]] = {}
    for o in optima:
        if o.lr_bracketed and "N" in o.scale and "D" in o.scale:
            groups.setdefault((o.scale["D"], _axis(o, "depth")), []).append(o)
    rows = []
    for (D, depth), group in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1] or 0.0)):
        if len({o.scale["N"] for o in group}) < 2:
            continue
        lo_o, hi_o = min(group, key=lambda o: o.scale["N"]), max(group, key=lambda o: o.scale["N"])
        N_lo, N_hi = lo_o.scale["N"], hi_o.scale["N"]
        columns = {"N_small": N_lo, "N_large": N_hi, "N_ratio": N_hi / N_lo, "lr_small": lo_o.lr_, "lr_large": hi_o.lr_}
        rows.append(_transfer_row(D, lo_o, hi_o, _ln_lr_draws([lo_o, hi_o]), columns, "depth", depth))
    return rows


def _depth_rows(optima: Sequence[Optimum]) -> list[dict[str, Any]]:
    groups: dict[tuple[float, float | None], list[Optimum]] = {}
    for o in optima:
        depth = _axis(o, "depth")
        if o.lr_bracketed and depth is not None and "D" in o.scale:
            groups.setdefault((o.scale["D"], _axis(o, "width")), []).append(o)
    rows = []
    for (D, width), group in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1] or 0.0)):
        group = sorted(group, key=lambda o: _axis(o, "depth") or 0.0)  # every depth is known here
        depths = np.array([_axis(o, "depth") for o in group])
        if len(depths) < 2 or len(np.unique(depths)) != len(depths):
            # One depth twice: the scales differ in something else (a width the table does not name), so
            # their shift is not a depth shift.
            continue
        # lr* ~ depth^e: least squares in log space, on the point optima and on each joint bootstrap draw.
        x = np.log(depths)
        xc = (x - x.mean()) / ((x - x.mean()) ** 2).sum()
        exponent = float(np.log([o.lr_ for o in group]) @ xc)
        draws = _ln_lr_draws(group)
        exp_iv = percentile_interval(draws @ xc) if draws is not None else (math.nan, math.nan)
        columns = {
            "depth_shallow": float(depths[0]),
            "depth_deep": float(depths[-1]),
            "depth_ratio": float(depths[-1] / depths[0]),
            "depths": depths.tolist(),
            "lr": [o.lr_ for o in group],
            "lr_shallow": group[0].lr_,
            "lr_deep": group[-1].lr_,
            "exponent": exponent,
            "exponent_interval": list(exp_iv),
        }
        rows.append(_transfer_row(D, group[0], group[-1], draws, columns, "width", width))
    return rows


def transfer_report(optima: Sequence[Optimum]) -> TransferReport | None:
    """The learning-rate shift across width per token budget D (and depth) with 2+ bracketed widths, and
    across depth per D (and width) with 2+ bracketed depths; None when neither axis has two."""
    rows, depth_rows = _width_rows(optima), _depth_rows(optima)
    if not rows and not depth_rows:
        return None
    note = depth_note = ""
    if rows:
        held = all(r["held"] for r in rows)
        worst = max(rows, key=lambda r: abs(math.log(r["shift"])))
        note = f"optimal lr moved by x{worst['shift']:.2f} across {worst['N_ratio']:.1f}x parameters at D={worst['D']:.3g}: " + (
            "transfer held (within half a 2x grid step or within the interval)"
            if held
            else "transfer did NOT hold: use the fitted N exponent"
        )
    if depth_rows:
        held = all(r["held"] for r in depth_rows)
        worst = max(depth_rows, key=lambda r: abs(math.log(r["shift"])))
        e, (lo, hi) = worst["exponent"], worst["exponent_interval"]
        depth_note = (
            f"optimal lr moved by x{worst['shift']:.2f} across {worst['depth_ratio']:.1f}x depth at D={worst['D']:.3g}"
            + (f", width {worst['width']:g}" if "width" in worst else "")
            + ": "
            + ("transfer held (within half a 2x grid step or within the interval)" if held else "transfer did NOT hold")
            + f"; depth correction lr* ~ depth^{e:+.3f} [{lo:+.3f}, {hi:+.3f}]"
        )
    return TransferReport(tuple(rows), all(r["held"] for r in rows + depth_rows), note, tuple(depth_rows), depth_note)


@dataclass(frozen=True)
class HparamLaws:
    """Every law fitted on one sweep: lr/batch laws (where the ladder identifies them), the loss law,
    the muP transfer report, and notes on what could not be fitted and why."""

    laws: dict[str, HparamLaw] = field(default_factory=dict)
    loss: FitResult | None = None
    transfer: TransferReport | None = None
    notes: tuple[str, ...] = ()
    reference_batch: float | None = None  # batch size (tokens) the lr / loss laws hold at, when no batch law
    loss_batch: float | None = None  # batch size (tokens) the loss law holds at (None: each scale's optimal one)
    loss_optima: tuple[Optimum, ...] = field(default=(), repr=False)  # the optima the loss law was fitted on

    def __repr__(self) -> str:
        loss = "no loss law" if self.loss is None else f"loss law {self.loss.law}"
        transfer = "" if self.transfer is None else f", transfer {'held' if self.transfer.held else 'did NOT hold'}"
        return f"<HparamLaws: {', '.join(self.laws) or 'no lr/batch law'}; {loss}{transfer}; {len(self.notes)} notes>"

    def summary(self) -> str:
        """Every law's coefficient and exponents with their 95% intervals, the loss law, the transfer check."""
        lines = [f"{'law':<9} {'exponent':<10} value [95% interval]"]
        for name, law in self.laws.items():
            k, kiv = law.coefficient
            lines.append(f"{name:<9} {'k':<10} {format_interval(k, *kiv)}")
            lines += [f"{'':<9} {v:<10} {format_interval(e, *iv)}" for v, (e, iv) in law.exponents.items()]
        if self.loss is not None:
            lines.append(f"loss law: {self.loss.law} on {len(self.loss_optima)} scales' optimum losses")
        if self.transfer is not None:
            lines.append(f"transfer: {'held' if self.transfer.held else 'did NOT hold'}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "laws": {k: v.to_dict() for k, v in self.laws.items()},
            "loss_law": None if self.loss is None else self.loss.to_dict(),
            "transfer": None if self.transfer is None else self.transfer.to_dict(),
            "notes": list(self.notes),
            "reference_batch_tokens": self.reference_batch,
            "loss_batch_tokens": self.loss_batch,
        }


def _varies(optima: Sequence[Optimum], var: str) -> bool:
    try:
        return len({round(math.log(_value(o, var)), 9) for o in optima if o.lr_bracketed}) >= 2
    except ScaletuneError:
        return False


def fit_loss_law(optima: Sequence[Optimum], *, bootstrap: int = 200, seed: int = 0) -> tuple[FitResult | None, str]:
    """The loss at the optimum per scale, fitted with `chinchilla` (L(N, D)) when the ladder has 6+ bracketed
    scales with 2+ values of both N and D (its 5 parameters need more points), else `compute` (L(C), C = 6ND
    unless given) with 4+ scales; L(C) ignores the split between N and D, so it is the weaker fallback."""
    use = [o for o in optima if o.lr_bracketed]
    rows = pd.DataFrame(
        {
            "N": [o.scale.get("N", math.nan) for o in use],
            "D": [o.scale.get("D", math.nan) for o in use],
            "C": [(_value(o, "C") if ("C" in o.extra or {"N", "D"} <= set(o.scale)) else math.nan) for o in use],
            "loss": [o.loss_ for o in use],
        }
    )
    rows.attrs["source"] = "optima (loss at the optimal learning rate)"
    candidates = []
    if len(use) >= 6 and rows["N"].nunique() >= 2 and rows["D"].nunique() >= 2 and rows[["N", "D"]].notna().all().all():
        candidates.append("chinchilla")
    if len(use) >= 4 and rows["C"].notna().all() and rows["C"].nunique() >= 4:
        candidates.append("compute")
    if not candidates:
        return None, f"loss law: {len(use)} bracketed scales; need 4+ distinct compute values (compute law) or 6+ scales (chinchilla)"
    for law in candidates:
        try:
            result = fit(law, rows, bootstrap=bootstrap, seed=seed)
        except ScaletuneError as exc:
            last = str(exc)
            continue
        return result, f"loss law: {law} on {len(use)} bracketed scales"
    return None, f"loss law: no fit ({last})"


def _at_batch(o: Optimum, batch: float, slices: Sequence[Optimum]) -> Optimum | None:
    """The lr optimum of scale ``o`` at one batch size, from the per-(scale, batch size) ``slices``."""
    for s in slices:
        if (
            s.lr_bracketed
            and s.scale.get("batch_size") == batch
            and all(s.scale.get(k) == o.scale.get(k) for k in o.scale if k != "batch_size")
        ):
            return s
    return None


def _to_batch(optima: Sequence[Optimum], batch: float, slices: Sequence[Optimum] | None) -> tuple[list[Optimum], int, int]:
    """The optima at one batch size: a scale optimised at another, or swept in 2-D (its optimum then sits
    between sizes, or is unbracketed while its slice at ``batch`` is not), is replaced by its slice at
    ``batch`` when ``slices`` has it; one optimised at another size without it is left out. Returns
    (optima, left out, replaced)."""
    out, left_out, moved = [], 0, 0
    for o in optima:
        if o.best_batch_size and (o.best_batch_size != batch or o.batch_bracketed is not None):
            s = _at_batch(o, batch, slices or ())
            if s is not None:
                out.append(s)
                moved += 1
                continue
            if o.best_batch_size != batch:
                left_out += 1
                continue
        out.append(o)
    return out, left_out, moved


def fit_hparam_laws(
    optima: Sequence[Optimum],
    *,
    bootstrap: int = 400,
    loss_bootstrap: int = 200,
    seed: int = 0,
    slices: Sequence[Optimum] | None = None,
    holdout: bool = True,
) -> HparamLaws:
    """Fit every law the ladder identifies; the reasons for the ones it does not go into ``notes``.

    ``bootstrap`` replicates for the lr / batch laws (cheap, closed form), ``loss_bootstrap`` for the loss law.
    ``slices``: the lr optima per (scale, batch size) (`find_optima` grouped by the scale and ``batch_size``);
    when the lr / loss laws are fitted at one batch size, a scale whose batch was swept enters them with its
    slice at that size instead of being left out.
    """
    laws: dict[str, HparamLaw] = {}
    notes = []
    all_optima = list(optima)
    has_batch = sum(o.usable("batch_size") for o in optima) >= 3
    reference_batch = None
    batches = [o.best_batch_size for o in optima if o.best_batch_size]
    partly_swept = any(o.batch_bracketed is not None for o in optima)
    if not has_batch and partly_swept and len(set(batches)) > 1:
        # Without a batch-size law, an lr law across scales optimised at different batch sizes would mistake
        # the batch effect for a scale effect: fit the lr (and loss) laws at the most common batch size.
        counts = pd.Series(batches).value_counts()
        reference_batch = float(counts.index[0])
        optima, left_out, moved = _to_batch(optima, reference_batch, slices)
        notes.append(
            f"lr and loss laws fitted at batch size {reference_batch:g} tokens, the one most scales used "
            f"(no batch-size law to reconcile others); {moved} swept scale(s) enter with their lr optimum at "
            f"that size, {left_out} scale(s) left out"
        )
    elif not has_batch and len(set(batches)) == 1:
        reference_batch = float(batches[0])
    if len({_axis(o, "depth") for o in optima if o.lr_bracketed} - {None}) > 1:
        notes.append(
            "the ladder varies depth: N in the lr / loss laws mixes width and depth (their exponents "
            "assume one shape family); the depth correction is the transfer report's depth exponent"
        )
    lr_vars = tuple(v for v in ("N", "D") if _varies(optima, v))
    plans = [("lr_ND", "lr", lr_vars)]
    if lr_vars == ("N", "D"):
        logs = np.log([[_value(o, "N"), _value(o, "D")] for o in optima if o.lr_bracketed])
        if not _design_rank_ok(logs):
            plans = [("lr_ND", "lr", ("N",))]
            notes.append(
                "N and D are collinear over the ladder (constant D/N): lr law fitted in N only; "
                "the prediction is valid only at the ladder's tokens per parameter"
            )
    batch_use = [o for o in all_optima if o.usable("batch_size")]
    if has_batch and len({o.scale.get("D") for o in batch_use}) >= 2:
        plans.append(("batch_D", "batch_size", ("D",)))
        if len({_value(o, "N") for o in batch_use}) >= 2 and len(batch_use) >= 4:
            # StepLaw finds B* independent of N, but small models need not follow (the built-in LM's grows
            # with N): where the sweeps span N, test it.
            plans.append(("batch_ND", "batch_size", ("N", "D")))
    elif not has_batch:
        notes.append("batch size not swept (or fewer than 3 bracketed scales with a batch sweep): no batch-size law")
    if _varies(optima, "C"):
        plans.append(("lr_C", "lr", ("C",)))
        if has_batch:
            plans.append(("batch_C", "batch_size", ("C",)))
    for i, (name, response, variables) in enumerate(plans):
        if not variables:
            notes.append(f"{name}: the ladder varies neither N nor D")
            continue
        try:
            pool = all_optima if response == "batch_size" else optima
            law = fit_hparam_law(pool, response, variables, name=name, bootstrap=bootstrap, seed=seed + 10 * i, holdout=holdout)
        except ScaletuneError as exc:
            notes.append(f"{name}: not fitted ({exc})")
            continue
        if variables != FORMS[name][1]:
            law = replace(law, note=f"fitted in {', '.join(variables)} only ({FORMS[name][2]} needs both)")
        laws[name] = law
    nd = laws.get("batch_ND")
    if nd is not None:
        # Described, not decided: an interval that excludes 0 in-sample can still lose out of sample
        # (`scaletune.hparams.select` chooses between B*(D) and B*(N, D) by held-out loss).
        d, (lo, hi) = nd.exponents["N"]
        notes.append(
            f"batch size: B* ~ N^{d:+.3f} [{lo:+.3f}, {hi:+.3f}] in B*(N, D) (interval "
            f"{'contains' if lo <= 0 <= hi else 'excludes'} 0; the choice is made by held-out loss)"
        )
    loss_optima, loss_batch = optima, reference_batch
    fixed = [o for o in optima if o.lr_bracketed and o.batch_bracketed is None and o.best_batch_size]
    if has_batch and fixed and len(fixed) < len([o for o in optima if o.lr_bracketed]):
        # A batch law exists, but only some scales swept the batch size: their optima sit at their best batch
        # size, the others' at the ladder's. A loss law across both would read the batch penalty as a scale
        # effect: fit it on the ladder's batch size (recommend moves it to the recommended one).
        common = float(pd.Series([o.best_batch_size for o in fixed]).value_counts().index[0])
        at_common, left_out, moved = _to_batch(optima, common, slices)
        at_common = [o for o in at_common if o.lr_bracketed]
        if len(at_common) >= 4:
            loss_optima, loss_batch = at_common, common
            notes.append(
                f"loss law fitted at batch size {common:g} tokens, the ladder's ({moved} swept scale(s) enter "
                f"with their optimum at that size, {left_out} left out)"
            )
        else:
            notes.append(
                "loss law fitted across scales at different batch sizes (too few at one batch size): "
                "the batch effect is read as a scale effect"
            )
    loss, loss_note = fit_loss_law(loss_optima, bootstrap=loss_bootstrap, seed=seed)
    notes.append(loss_note)
    transfer = transfer_report(optima)
    lr_law = laws.get("lr_ND")
    if transfer is not None and transfer.rows and lr_law is not None:
        # The corrections the transfer needs, from the fitted exponents: width (N) and tokens (D).
        parts = [f"lr* ~ {v}^{e:+.3f} [{iv[0]:+.3f}, {iv[1]:+.3f}]" for v, (e, iv) in lr_law.exponents.items()]
        transfer = replace(transfer, note=transfer.note + "; corrections: " + ", ".join(parts))
    return HparamLaws(
        laws=laws,
        loss=loss,
        transfer=transfer,
        notes=tuple(notes),
        reference_batch=reference_batch,
        loss_batch=loss_batch,
        loss_optima=tuple(o for o in loss_optima if o.lr_bracketed),
    )
