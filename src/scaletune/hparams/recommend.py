"""Recommendations at a target scale, from a sweep of proxies, beside what the published laws would say.

    from scaletune.hparams import recommend
    rec = recommend(runs, {"N": 1e6, "D": 2e6})      # runs: a run table (or a study's export)
    rec.lr.value, rec.lr.interval, rec.lr.extrapolation

Every number carries a 95% interval (two-level bootstrap, see `scaletune.hparams.laws`) and an
extrapolation factor (1.0 = inside the proxies' range; 8.0 = 8x beyond the largest proxy in some variable).
Under muP/CompleteP the learning rate is the base rate of the parameterisation (the proxies' ``lr``
column); hidden matrices get it scaled by base_width / width as the parameterisation prescribes. The
published laws (StepLaw, DeepSeek LLM) were fitted on standard-parameterised models: beside a muP
recommendation they show what a user copying them would set, not the same quantity.
"""

from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass, replace
from typing import Any, Mapping

import numpy as np
import numpy.typing as npt
import pandas as pd

from scaletune.errors import ScaletuneError
from scaletune.hparams.laws import HparamLaws, Method, TransferReport
from scaletune.hparams.optimum import DEFAULT_BAND, Optimum, find_optima
from scaletune.hparams.select import Fold, SweepAnalysis, _joint_rows, analyse_sweep, fit_batch, fit_lr, loss_interval
from scaletune.laws import FitResult
from scaletune.laws.published import deepseek_batch, deepseek_lr, steplaw_batch, steplaw_lr
from scaletune.results import Prediction, format_interval, format_scale, percentile_interval
from scaletune.runtable import ok_runs, require_columns, training_flops
from scaletune.schedules import Schedule


@dataclass(frozen=True)
class Recommendation:
    """What to use at ``target``: learning rate, batch size (tokens and sequences), warm-up (steps),
    schedule (spec), parameterisation and the predicted final loss (nats/token), each a `Prediction` whose
    ``method`` says which law or rule produced it (`scaletune.hparams.describe` says it in words)."""

    target: dict[str, float]
    lr: Prediction
    batch_size: Prediction  # tokens
    batch_sequences: Prediction | None  # batch_size / seq_len
    seq_len: int | None
    steps: int
    warmup: dict[str, Any]
    schedule: str
    param: str
    loss: Prediction | None
    published: dict[str, dict[str, Any]]
    optima: tuple[Optimum, ...]
    laws: HparamLaws
    notes: tuple[str, ...] = ()
    analysis: SweepAnalysis | None = None  # the sweep analysis it was computed from (candidates, landscape, folds)
    stability: dict[str, Any] | None = None  # recommended lr vs the predicted stability edge (`edge_margin`)

    @property
    def transfer(self) -> TransferReport | None:
        return self.laws.transfer

    def __repr__(self) -> str:
        at = format_scale(self.target, ("N", "D"))
        loss = "" if self.loss is None else f", loss {self.loss.value:.4g}"
        return (
            f"<Recommendation at {at}: lr {self.lr.value:.3g}, batch {self.batch_size.value:.4g} tokens{loss}, "
            f"x{self.lr.extrapolation:.1f} beyond the proxies>"
        )

    def summary(self) -> str:
        """The recommended values with their 95% intervals, extrapolation and method (a plain-text table)."""
        rows = [("learning rate", self.lr), ("batch (tokens)", self.batch_size)]
        if self.batch_sequences is not None:
            rows.append(("batch (sequences)", self.batch_sequences))
        if self.loss is not None:
            rows.append(("loss (nats/token)", self.loss))
        at = ", ".join(f"{k}={v:.4g}" for k, v in self.target.items())
        lines = [f"Recommendation at {at}", f"{'quantity':<18} {'value [95% interval]':<31} {'extrap.':>7}  method"]
        lines += [
            f"{name:<18} {format_interval(p.value, p.lo, p.hi):<31} {'x%.1f' % p.extrapolation:>7}  {p.method_name}" for name, p in rows
        ]
        if self.warmup.get("steps") is not None:
            lines.append(f"{'warm-up (steps)':<18} {self.warmup['steps']} of {self.steps} steps")
        lines.append(f"{'parameterisation':<18} {self.param}")
        lines.append(textwrap.fill(f"schedule: {self.schedule}", 80, subsequent_indent="  ", break_on_hyphens=False))
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "lr": self.lr.to_dict(),
            "batch_size_tokens": self.batch_size.to_dict(),
            "batch_size_sequences": None if self.batch_sequences is None else self.batch_sequences.to_dict(),
            "seq_len": self.seq_len,
            "steps": self.steps,
            "warmup": self.warmup,
            "schedule": self.schedule,
            "param": self.param,
            "loss_nats_per_token": None if self.loss is None else self.loss.to_dict(),
            "published": self.published,
            "optima": [o.to_dict() for o in self.optima],
            "laws": self.laws.to_dict(),
            "notes": list(self.notes),
            "selection": None if self.analysis is None else self.analysis.to_dict(),
            "stability": self.stability,
            "candidates": [] if self.analysis is None else [c.to_dict() for c in self.analysis.candidates],
        }


def _label(o: Optimum) -> str:
    return format_scale(o.scale, ("N", "D"))


def _mode(series: pd.Series) -> Any:
    values = series.dropna()
    return values.mode().iloc[0] if len(values) else None


def _proxy_fallback(optima: list[Optimum], target: Mapping[str, float]) -> Prediction | None:
    """The largest bracketed proxy's learning rate, copied (transfer assumed), when no law can be fitted."""
    use = [o for o in optima if o.usable("lr")]
    if not use:
        return None
    o = max(use, key=lambda o: (o.scale.get("N", 0), o.scale.get("D", 0)))
    extra = max([max(target[k] / o.scale[k], o.scale[k] / target[k]) for k in ("N", "D") if k in target and k in o.scale] or [1.0])
    scale = {k: v for k, v in o.scale.items() if k in ("N", "D")}
    return Prediction(
        o.lr_, o.lr_interval[0], o.lr_interval[1], extrapolation=extra, method=Method.LR_PROXY_COPIED, details={"scale": scale}
    )


def _nearest_sweep(optima: list[Optimum], target: Mapping[str, float]) -> tuple[Optimum, float] | None:
    """The scale with a 2-D (lr x batch size) sweep nearest the target in (ln N, ln D), with the largest factor
    in N or D between them (its extrapolation)."""

    def ratios(o: Optimum) -> list[float]:
        return [abs(math.log(target[k] / o.scale[k])) for k in ("N", "D") if k in target and o.scale.get(k, 0) > 0]

    swept = [o for o in optima if o.batch_bracketed is not None and o.best_batch_size]
    if not swept:
        return None
    o = min(swept, key=lambda o: math.hypot(*ratios(o)))
    return o, math.exp(max(ratios(o) or [0.0]))


def _batch_slices(runs: pd.DataFrame, *, band: float, bootstrap: int, seed: int) -> list[Optimum]:
    """The lr optimum of every (scale, batch size) slice of the sweep (1-D in lr), with bootstrap samples."""
    from scaletune.hparams.optimum import scale_columns

    cols = [c for c in scale_columns(runs) if c != "batch_size"] + ["batch_size"]
    return find_optima(runs, by=cols, band=band, bootstrap=max(bootstrap // 4, 50), seed=seed)


def _interp_weights(xs: np.ndarray, x: float) -> np.ndarray:
    """Weights w with sum(w * ys) = the value at x (inside xs, sorted) of the parabola through the three points
    nearest x (the loss is convex in ln batch; a straight line between 2x-spaced sizes overestimates it
    between them), or of the line through two points when there are only two."""
    w = np.zeros(len(xs))
    idx = np.sort(np.argsort(np.abs(xs - x), kind="stable")[: min(3, len(xs))])
    for j in idx:  # Lagrange basis
        others = [k for k in idx if k != j]
        w[j] = np.prod([(x - xs[k]) / (xs[j] - xs[k]) for k in others])
    return w


def _batch_loss_shift(
    slices: list[Optimum], target: Mapping[str, float], batch: float, reference: float, *, seed: int = 0, draws_per_slice: int = 200
) -> tuple[float, np.ndarray, float, str] | None:
    """L*(batch) - L*(reference) in nats at the target's D, from the scales whose batch sweep spans both sizes.

    The loss law is fitted on optima at the reference batch size; at another batch size the best loss
    differs. Per swept scale, the slices' minimum losses (lr optimised at each batch size) are interpolated
    in ln batch; across token budgets the difference is fitted linearly in ln D (or taken as is
    from one budget). The difference is added, not multiplied: a batch size off its optimum wastes tokens
    (fewer useful steps), a change of the data term of the loss law, which does not depend on N; and the
    batch optimum moves with D, hardly with N (StepLaw). Returns (point, bootstrap draws, extrapolation in D,
    note), or None.
    """
    by_scale: dict[tuple[float | None, float], list[Optimum]] = {}
    for o in slices:
        if o.scale.get("batch_size") and "D" in o.scale and math.isfinite(o.best_loss):
            by_scale.setdefault((o.scale.get("N"), o.scale["D"]), []).append(o)

    rng = np.random.default_rng(seed)

    def level(o: Optimum) -> tuple[float, np.ndarray]:
        # A slice whose lr optimum is bracketed has a fitted minimum and bootstrap draws of it (resampled to a
        # common count: the slices' bootstraps are independent, and some of their resamples find no vertex);
        # otherwise its best tested loss is an upper bound on the minimum (conservative for the recommended size).
        if o.lr_bracketed and o.samples is not None:
            finite = o.samples[np.isfinite(o.samples[:, 2]), 2]
            if len(finite) >= 10:
                return o.loss_, rng.choice(finite, draws_per_slice)
        value = o.loss_ if o.lr_bracketed else o.best_loss
        return value, np.full(draws_per_slice, value)

    Ds, points, draws = [], [], []
    for (_, D), group in sorted(by_scale.items(), key=lambda kv: kv[0][1]):
        group.sort(key=lambda o: o.scale["batch_size"])
        lb = np.log([o.scale["batch_size"] for o in group])
        if len(group) < 2 or not (lb[0] <= math.log(batch) <= lb[-1]) or not (lb[0] <= math.log(reference) <= lb[-1]):
            continue
        levels = [level(o) for o in group]
        w = _interp_weights(lb, math.log(batch)) - _interp_weights(lb, math.log(reference))
        Ds.append(D)
        points.append(float(w @ [v for v, _ in levels]))
        draws.append(np.column_stack([d for _, d in levels]) @ w)
    if not Ds:
        return None
    lnD, t = np.log(Ds), math.log(target["D"])
    R = np.column_stack(draws)  # (draws, scales)
    if len(set(Ds)) >= 2:
        X = np.column_stack([np.ones_like(lnD), lnD])
        w = np.linalg.lstsq(X, np.array(points), rcond=None)[0]
        value = float(w[0] + w[1] * t)
        boot = np.linalg.lstsq(X, R.T, rcond=None)[0].T @ np.array([1.0, t])
        how = f"fitted linearly in ln D on {len(Ds)} swept scales (D {min(Ds):.3g}..{max(Ds):.3g})"
    else:
        value = float(np.mean(points))
        boot = R.mean(axis=1)
        how = f"measured at D = {Ds[0]:.3g} only"
    extra = max(target["D"] / max(Ds), min(Ds) / target["D"], 1.0)
    note = (
        f"loss at batch {batch:.4g} tokens = the loss law's prediction at {reference:g} tokens {value:+.4f} nats "
        f"(best loss at {batch:.4g} minus at {reference:g} tokens on the proxies' batch sweep, {how}; "
        f"assumes the batch penalty depends on D, not N)"
    )
    return value, boot, extra, note


def deepseek_compute(target: Mapping[str, float]) -> tuple[float, str]:
    """DeepSeek's C = M D (M = non-embedding FLOPs/token incl. attention = 6 N_nonembed + 6 depth width seq_len)."""
    n = target.get("N_nonembed", target["N"])
    if all(k in target for k in ("depth", "width", "seq_len")):
        m = 6 * n + 6 * target["depth"] * target["width"] * target["seq_len"]
        how = "C = M D, M = 6 N_nonembed + 6 depth width seq_len"
    else:
        m = 6 * n
        how = "C ~ 6 N_nonembed D (attention FLOPs omitted: give width, depth, seq_len for M)"
    if "N_nonembed" not in target:
        how += "; N_nonembed not given, N used"
    return m * target["D"], how


def published_at(target: Mapping[str, float], seq_len: int | None = None) -> dict[str, dict[str, Any]]:
    """StepLaw and DeepSeek LLM at the target (N_nonembed if given, else N; D tokens)."""
    n = target.get("N_nonembed", target["N"])
    D = target["D"]
    t = dict(target)
    if seq_len and "seq_len" not in t:
        t["seq_len"] = seq_len
    C, how = deepseek_compute(t)
    n_note = "N_nonembed" if "N_nonembed" in target else "N (N_nonembed not given)"
    return {
        "steplaw": {
            "lr": float(steplaw_lr(n, D)),
            "batch_size": float(steplaw_batch(D)),
            "formula": "lr = 1.79 N^-0.713 D^0.307, B = 0.58 D^0.571 tokens (Li et al. 2025)",
            "inputs": f"{n_note} = {n:.4g}, D = {D:.4g} tokens",
        },
        "deepseek": {
            "lr": float(deepseek_lr(C)),
            "batch_size": float(deepseek_batch(C)),
            "formula": "lr = 0.3118 C^-0.125, B = 0.2920 C^0.3271 tokens (DeepSeek-AI 2024)",
            "inputs": f"C = {C:.4g} FLOPs ({how})",
        },
    }


def _interval(draws_ln: np.ndarray) -> tuple[float, float]:
    """The 95% interval of exp(draws), NaN with fewer than 10 finite draws."""
    d = np.asarray(draws_ln, float)
    if np.isfinite(d).sum() < 10:
        return (math.nan, math.nan)
    lo, hi = percentile_interval(d)
    return math.exp(lo), math.exp(hi)


def _full_fold(analysis: SweepAnalysis) -> Fold:
    """All of the sweep as one 'fold', the joint landscape already fitted (with its residual bootstrap)."""
    fold = Fold(
        runs=analysis.runs,
        optima=list(analysis.optima),
        slices=None if analysis.slices is None else list(analysis.slices),
        _laws=analysis.laws,
    )
    if analysis.landscape is not None:
        fold._joint["auto"] = fold._joint[analysis.landscape.batch_vars] = analysis.landscape
    return fold


def _joint_factor(analysis: SweepAnalysis, target: Mapping[str, float]) -> float:
    d = analysis.distance(target)
    return math.exp(d) if math.isfinite(d) else 1.0


def _score(analysis: SweepAnalysis, method: Method) -> dict[str, Any]:
    c = next((c for c in analysis.candidates if c.method == method), None)
    return {} if c is None else {"held_out_score_percent": c.score, "noise_percent": c.noise}


def choose_batch_size(analysis: SweepAnalysis, target: Mapping[str, float]) -> Prediction | None:
    """The batch size (tokens) at ``target``: the candidate the backtest chose, else (no held-out scale swept
    the batch size) B*(D), B*(C), the swept scale nearest the target, the proxies' batch size, in that order.
    None when the runs have no batch size at all."""
    runs, optima, laws = analysis.runs, list(analysis.optima), analysis.laws
    ok = ok_runs(runs)
    method = analysis.chosen("batch_size")
    if method is not None and method != Method.BATCH_NEAREST_SWEEP:
        pred = fit_batch(method, _full_fold(analysis), analysis.band, analysis.seed)
        if pred is not None:
            value, draws = pred(target)
            return Prediction(
                value,
                *_interval(draws),
                extrapolation=_joint_factor(analysis, target),
                method=method,
                details={"selection": "held_out", **_score(analysis, method)},
            )
    for name in ("batch_D", "batch_C") if method is None else ():
        if name in laws.laws:
            p = laws.laws[name].predict_interval({**target, "C": training_flops(target["N"], target["D"])})
            return replace(p, extrapolation=_joint_factor(analysis, target))
    near = _nearest_sweep(optima, target)
    if near is not None:
        # The sweep nearest the target carries the choice: B* moves with D (StepLaw) and, at small scales,
        # with N too, so a near sweep's optimum beats a far one's.
        o, extra = near
        details = {"scale": {k: o.scale[k] for k in ("N", "D") if k in o.scale}, **_score(analysis, Method.BATCH_NEAREST_SWEEP)}
        if o.usable("batch_size") and o.batch_size_ is not None and o.batch_size_interval is not None:
            return Prediction(
                float(o.batch_size_), *o.batch_size_interval, extrapolation=extra, method=Method.BATCH_NEAREST_SWEEP, details=details
            )
        return Prediction(
            float(o.best_batch_size or math.nan),
            math.nan,
            math.nan,
            extrapolation=extra,
            method=Method.BATCH_NEAREST_BOUND,
            details={**details, "at_edge": bool(o.next_batch_sizes)},
        )
    if "batch_size" in ok.columns and ok["batch_size"].nunique() == 1:
        return Prediction(float(ok["batch_size"].iloc[0]), math.nan, math.nan, method=Method.BATCH_AS_PROXIES)
    if laws.reference_batch is not None:
        return Prediction(laws.reference_batch, math.nan, math.nan, method=Method.BATCH_REFERENCE)
    if "batch_size" in ok.columns and ok["batch_size"].notna().any():
        return Prediction(float(_mode(ok["batch_size"])), math.nan, math.nan, method=Method.BATCH_MODE)
    return None


def choose_learning_rate(analysis: SweepAnalysis, target: Mapping[str, float], batch: Prediction) -> Prediction | None:
    """The learning rate at ``target`` and batch size ``batch``: the candidate the backtest chose, else
    lr*(N, D, B) at the batch size where the batch size was swept, else lr*(N, D), else lr*(C). None when
    no law can be fitted (`recommend` then copies the largest proxy's)."""
    method = analysis.chosen("lr")
    fold = _full_fold(analysis)
    factor = _joint_factor(analysis, target)
    if method is not None:
        pred = fit_lr(method, fold, analysis.band, analysis.seed)
        if pred is not None:
            value, draws = pred(target, batch.value)
            return Prediction(
                value,
                *_interval(draws),
                extrapolation=factor,
                method=method,
                details={"selection": "held_out", "batch_size": batch.value, **_score(analysis, method)},
            )
    swept = any(o.batch_bracketed is not None for o in analysis.optima)
    order = ([Method.LR_NDB] if swept and batch.method != Method.BATCH_AS_PROXIES else []) + [Method.LR_ND, Method.LR_C]
    for m in order:
        pred = fit_lr(m, fold, analysis.band, analysis.seed)
        if pred is None:
            continue
        value, draws = pred(target, batch.value)
        details = {"batch_size": batch.value} if m == Method.LR_NDB else {"law": "lr_ND" if m == Method.LR_ND else "lr_C"}
        return Prediction(value, *_interval(draws), extrapolation=factor, method=m, details=details)
    return None


def _loss_samples(fit_result: FitResult, point: Mapping[str, float]) -> npt.NDArray[np.float64]:
    if fit_result.bootstrap_params is None or not len(fit_result.bootstrap_params):
        return np.zeros(0)
    return np.asarray(fit_result.predict_samples(point)[:, 0], dtype=float)


def predict_loss(
    analysis: SweepAnalysis, target: Mapping[str, float], batch: Prediction, lr: Prediction, *, loss_bootstrap: int = 200
) -> tuple[Prediction | None, list[str]]:
    """The final loss (nats/token) at ``target`` trained at (lr, batch): the loss law the backtest chose,
    on per-scale vertex losses (moved to the recommended batch size) or on the joint landscape's optimum
    losses (plus the landscape's penalty at the recommended settings). The 95% interval is the bootstrap's,
    widened on the log scale by the backtest's error model at the target's joint distance (`loss_interval`).
    Returns (prediction, notes)."""
    from scaletune.laws import fit as fit_law

    laws, land = analysis.laws, analysis.landscape
    method = analysis.chosen("loss")
    notes: list[str] = []
    moved: dict[str, float] = {}  # where the loss law's batch size differs from the recommended one
    point = {"N": target["N"], "D": target["D"], "C": target.get("C", training_flops(target["N"], target["D"]))}
    res: FitResult | None = None
    joint = _joint_rows(land) if land is not None else None
    if method in (Method.LOSS_CHINCHILLA_JOINT, Method.LOSS_COMPUTE_JOINT) and land is not None and joint is not None:
        rows, w = joint
        law = "chinchilla" if method == Method.LOSS_CHINCHILLA_JOINT else "compute"
        res = fit_law(law, rows, weights=w, bootstrap=loss_bootstrap, seed=analysis.seed)
        value = float(res.predict(point)[0])
        samples = _loss_samples(res, point)
        bvar = batch.value if land.batch_vars is not None else None
        value += float(land.penalty(target, lr.value, bvar))
        th = land.draws(max(len(samples), 50), analysis.seed)
        pen = np.array([float(land.penalty(target, lr.value, bvar, t)) for t in th])
        samples = samples[: len(pen)] + pen[: len(samples)] if len(samples) else samples
    else:
        res = laws.loss
        want = {Method.LOSS_CHINCHILLA: "chinchilla", Method.LOSS_COMPUTE: "compute"}.get(method) if method else None
        if want is not None and (res is None or res.law != want) and len(laws.loss_optima) >= 4:
            rows = pd.DataFrame(
                {
                    "N": [o.scale["N"] for o in laws.loss_optima],
                    "D": [o.scale["D"] for o in laws.loss_optima],
                    "loss": [o.loss_ for o in laws.loss_optima],
                }
            )
            rows["C"] = training_flops(rows["N"], rows["D"])
            try:
                res = fit_law(want, rows, bootstrap=loss_bootstrap, seed=analysis.seed)
            except ScaletuneError:
                pass
        if res is None:
            return None, notes
        method = Method.LOSS_CHINCHILLA if res.law == "chinchilla" else Method.LOSS_COMPUTE
        value = float(res.predict(point)[0])
        samples = _loss_samples(res, point)
        ref = laws.loss_batch
        if ref is not None and ref != batch.value:
            # The law holds at the batch size its optima were fitted at: move it to the recommended batch size.
            slices = list(analysis.slices) if analysis.slices is not None else None
            shift = _batch_loss_shift(slices, target, batch.value, ref, seed=analysis.seed) if slices else None
            if shift is None:
                moved = {"fitted_at_batch": ref, "batch_size": batch.value}
            else:
                r, r_draws, _, r_note = shift
                value += r
                samples = samples[: len(r_draws)] + r_draws[: len(samples)]  # independent bootstraps: paired in order
                moved = {"fitted_at_batch": ref, "batch_size": batch.value, "batch_shift_nats": r}
                notes.append(r_note)
    d = analysis.distance(target)
    # The backtest's error model widens the bootstrap's interval with the distance beyond the ladder (log scale).
    value, lo, hi, widened = loss_interval(analysis, value, samples, d)
    details = {"distance_ln": d, **widened, **moved, **_score(analysis, method)}
    return Prediction(value, lo, hi, extrapolation=math.exp(d) if math.isfinite(d) else 1.0, method=method, details=details), notes


def _batch_notes(analysis: SweepAnalysis) -> list[str]:
    """What an unbracketed batch sweep means for the recommendation (advice, rendered from its fields)."""
    swept = [o for o in analysis.optima if o.batch_bracketed is False and o.best_batch_size]
    if not swept:
        return []
    o = max(swept, key=lambda o: (o.scale.get("D", 0), o.scale.get("N", 0)))
    edge = "smaller" if o.next_batch_sizes and max(o.next_batch_sizes) < (o.best_batch_size or math.nan) else "larger"
    seq = pd.to_numeric(pd.Series([o.extra.get("seq_len")]), errors="coerce").iloc[0]
    if not o.next_batch_sizes:
        advice = f"{o.message}: more seeds there would locate it"
    elif edge == "smaller" and seq > 0 and o.best_batch_size <= seq:
        advice = (
            f"at the edge; it is one sequence of {seq:g} tokens, the smallest batch at this sequence length: "
            f"the optimum is at or below it (shorter sequences on the proxies would bracket it)"
        )
    else:
        advice = f"at the edge; {edge} batch sizes may be better: sweep them on the proxies"
    return [f"batch size: the sweep at {_label(o)} did not bracket the optimum (best {o.best_batch_size:g} tokens); {advice}"]


def recommend(
    runs: pd.DataFrame,
    target: Mapping[str, float],
    *,
    band: float = DEFAULT_BAND,
    bootstrap: int = 400,
    loss_bootstrap: int = 200,
    seed: int = 0,
    optima: list[Optimum] | None = None,
    laws: HparamLaws | None = None,
    select: bool = True,
    analysis: SweepAnalysis | None = None,
) -> Recommendation:
    """Recommend hyperparameters at ``target`` (N parameters in the table's convention, D tokens; optional
    N_nonembed, width, depth, seq_len for the published laws) from a run table of proxy sweeps.

    Stages: `analyse_sweep` once (optima, laws, joint landscape, candidates scored by held-out scale; pass
    ``analysis`` to reuse one), then `choose_batch_size`, `choose_learning_rate`, `predict_loss`.
    ``select=False`` skips the backtest and uses the fixed fallback order."""
    target = {k: float(v) for k, v in target.items()}
    for key in ("N", "D"):
        if key not in target:
            raise ScaletuneError(
                f"target needs {key}", hint="give the target as N=1e6,D=2e7 (N parameters in the table's convention, D tokens)"
            )
        if not target[key] > 0:
            raise ScaletuneError(f"target {key}={target[key]!r} must be positive")
    require_columns(runs, ["lr", "loss"])
    if analysis is None:
        analysis = analyse_sweep(
            runs, band=band, bootstrap=bootstrap, loss_bootstrap=loss_bootstrap, seed=seed, optima=optima, laws=laws, select=select
        )
    optima, laws = list(analysis.optima), analysis.laws
    notes = list(laws.notes) + list(analysis.notes) + _batch_notes(analysis)
    ok = ok_runs(runs)

    batch = choose_batch_size(analysis, target)
    if batch is None:
        raise ScaletuneError(f"{runs.attrs.get('source', 'table')}: no batch_size column and no batch law")
    lr = choose_learning_rate(analysis, target, batch)
    if lr is None and batch.method in (Method.BATCH_NEAREST_SWEEP, Method.BATCH_NEAREST_BOUND) and laws.reference_batch is not None:
        # Keep the pair consistent: without an lr law at the swept size, use the size the lr law holds at.
        batch = Prediction(laws.reference_batch, math.nan, math.nan, method=Method.BATCH_REFERENCE)
        lr = choose_learning_rate(analysis, target, batch)
    if lr is None:
        lr = _proxy_fallback(optima, target)
        if lr is None:
            raise ScaletuneError(
                "no scale has a bracketed learning-rate optimum: nothing to recommend",
                hint="see each scale's message and the proposed next rates (find_optima)",
            )

    seq_len = int(target.get("seq_len") or (_mode(ok["seq_len"]) if "seq_len" in ok.columns else 0) or 0) or None
    seqs = None
    if seq_len:
        seqs = Prediction(
            batch.value / seq_len,
            batch.lo / seq_len,
            batch.hi / seq_len,
            extrapolation=batch.extrapolation,
            method=Method.SEQUENCES,
            details={"seq_len": seq_len},
        )
    steps = max(1, int(target["D"] // batch.value))

    # Warm-up: the proxies' warm-up as a fraction of their steps (run tables record it in steps), or nothing.
    warmup: dict[str, Any] = {"steps": None, "fraction": None, "method": Method.NOT_IN_RUNS.name, "source": Method.NOT_IN_RUNS.value}
    if "warmup" in ok.columns and "batch_size" in ok.columns and "D" in ok.columns:
        frac = pd.to_numeric(ok["warmup"], errors="coerce") / (
            pd.to_numeric(ok["D"], errors="coerce") / pd.to_numeric(ok["batch_size"], errors="coerce")
        )
        frac = frac[np.isfinite(frac)]
        if len(frac):
            f = float(frac.median())
            lo_steps = f * target["D"] / batch.interval[1] if math.isfinite(batch.interval[1]) else math.nan
            hi_steps = f * target["D"] / batch.interval[0] if math.isfinite(batch.interval[0]) else math.nan
            warmup = {
                "steps": int(round(f * steps)),
                "fraction": f,
                "steps_interval": [lo_steps, hi_steps],
                "method": Method.WARMUP_FRACTION.name,
                "source": "the proxies' warm-up fraction of their steps (not fitted; interval from the batch size)",
            }
            if frac.max() - frac.min() > 0.02:
                notes.append(f"the proxies used warm-up fractions from {frac.min():.3f} to {frac.max():.3f}: the median is recommended")

    # Schedule and parameterisation: carried over from the proxies (the laws hold for them only).
    schedule = Method.NOT_IN_RUNS.value
    if "schedule" in ok.columns and ok["schedule"].notna().any():
        spec = str(_mode(ok["schedule"]))
        if ok["schedule"].astype(str).str.partition(":")[0].nunique() > 1:
            notes.append("the proxies used several schedule kinds: the most common one is recommended")
        try:
            base = Schedule.parse(spec) if "steps=" in spec else Schedule.parse(spec, steps=steps, lr=lr.value)
            target_schedule: Any = replace(base, steps=steps, lr=lr.value)  # its kind's fields
            if warmup["steps"] is not None:
                target_schedule = replace(target_schedule, warmup=min(warmup["steps"], steps - 1))
            decay = getattr(base, "decay_start", None)
            if decay is not None:  # wsd/power: keep the cooldown as the same fraction of the run
                target_schedule = replace(target_schedule, decay_start=int(round(decay / base.steps * steps)))
            schedule = target_schedule.spec()
        except ScaletuneError:
            schedule = spec
    param = str(_mode(ok["param"])) if "param" in ok.columns and ok["param"].notna().any() else Method.NOT_IN_RUNS.value
    if "param" in ok.columns and ok["param"].nunique() > 1:
        notes.append(f"the runs mix parameterisations ({', '.join(map(str, ok['param'].unique()))}); fit one at a time")
    if param == "sp":
        notes.append(
            "standard parameterisation: the optimum moves with width, so the N exponent carries the transfer; "
            "muP proxies transfer more reliably"
        )

    loss, loss_notes = predict_loss(analysis, target, batch, lr, loss_bootstrap=loss_bootstrap)
    notes += loss_notes

    pub = published_at(target, seq_len)
    for entry in pub.values():
        entry["lr_ratio_to_recommended"] = entry["lr"] / lr.value
        entry["batch_ratio_to_recommended"] = entry["batch_size"] / batch.value
        entry["lr_inside_interval"] = bool(lr.interval[0] <= entry["lr"] <= lr.interval[1])
    if param in ("mup", "completep"):
        notes.append(
            f"under {param} the recommended lr is the base rate of the parameterisation; the published "
            "laws give a standard-parameterisation AdamW rate (compare with care)"
        )
    stability = _stability_margin(runs, target, lr.value, seed)
    if stability and stability["within"]:
        e = stability["edge"]
        notes.append(
            f"stability: the recommended lr {lr.value:.3g} lies within a factor {stability['factor']:g} of the "
            f"predicted stability edge {e['value']:.3g} [{e['interval'][0]:.3g}, {e['interval'][1]:.3g}] at the "
            "target: a lower rate is safer"
        )
    return Recommendation(
        target=target,
        lr=lr,
        batch_size=batch,
        batch_sequences=seqs,
        seq_len=seq_len,
        steps=steps,
        warmup=warmup,
        schedule=schedule,
        param=param,
        loss=loss,
        published=pub,
        optima=tuple(optima),
        laws=laws,
        notes=tuple(notes),
        analysis=analysis,
        stability=stability,
    )


def _stability_margin(runs: pd.DataFrame, target: Mapping[str, float], lr: float, seed: int) -> dict[str, Any] | None:
    """The recommended rate against the stable range's upper edge predicted at the target
    (`scaletune.stability.stability_edge`); None where the sweeps bracket the edge at fewer than two scales."""
    from scaletune.stability import edge_margin, stability_edge

    try:
        return edge_margin(lr, stability_edge(runs, target, bootstrap=200, seed=seed))
    except ScaletuneError:
        return None
