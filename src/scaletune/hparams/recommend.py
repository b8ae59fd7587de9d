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
from dataclasses import dataclass, replace
from typing import Any, Mapping

import numpy as np
import pandas as pd

from scaletune.errors import ScaletuneError
from scaletune.hparams.laws import HparamLaws, Prediction, TransferReport, fit_hparam_laws
from scaletune.hparams.optimum import DEFAULT_BAND, Optimum, find_optima
from scaletune.laws.published import deepseek_batch, deepseek_lr, steplaw_batch, steplaw_lr
from scaletune.runtable import require_columns
from scaletune.schedules import Schedule


@dataclass(frozen=True)
class Recommendation:
    """What to use at ``target``: learning rate, batch size (tokens and sequences), warm-up (steps),
    schedule (spec), parameterisation and the predicted final loss (nats/token), each with its source."""

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

    @property
    def transfer(self) -> TransferReport | None:
        return self.laws.transfer

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
        }


def _label(o: Optimum) -> str:
    return ", ".join(f"{k}={v:.3g}" for k, v in o.scale.items() if k in ("N", "D"))


def _mode(series: pd.Series) -> Any:
    values = series.dropna()
    return values.mode().iloc[0] if len(values) else None


def _proxy_fallback(optima: list[Optimum], target: Mapping[str, float]) -> Prediction | None:
    """The largest bracketed proxy's learning rate, copied (transfer assumed), when no law can be fitted."""
    use = [o for o in optima if o.usable("lr")]
    if not use:
        return None
    o = max(use, key=lambda o: (o.scale.get("N", 0), o.scale.get("D", 0)))
    value, iv = o.lr_, o.lr_interval
    extra = max([max(target[k] / o.scale[k], o.scale[k] / target[k]) for k in ("N", "D") if k in target and k in o.scale] or [1.0])
    label = ", ".join(f"{k}={v:.3g}" for k, v in o.scale.items() if k in ("N", "D"))
    return Prediction(value, tuple(iv), extra, source=f"copied from the largest proxy ({label}); transfer assumed, no law")


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


def _lr_at_batch(slices: list[Optimum], target: Mapping[str, float], batch: float, *,
                 bootstrap: int, seed: int) -> tuple[Prediction | None, str]:
    """lr*(N, D, B) = k N^a D^b B^g fitted on the lr optimum of every (scale, batch size) slice of the sweep.

    The per-scale optima sit at different batch sizes (the 2-D optimum where the batch size was swept, the
    fixed batch size elsewhere); an lr law across them would read the batch effect as a scale effect, so the
    batch size enters the law as a variable and the prediction is made at the recommended batch size.
    """
    from scaletune.hparams.laws import fit_hparam_law

    try:
        variables = tuple(v for v in ("N", "D") if len({round(s.scale.get(v, math.nan), 6) for s in slices if s.usable("lr")}) > 1)
        law = fit_hparam_law(slices, "lr", variables + ("batch_size",), name="lr_NDB", bootstrap=bootstrap, seed=seed + 7)
    except ScaletuneError as exc:
        return None, f"learning rate: no lr law with the batch size as a variable ({exc}); lr law fitted across scales instead"
    point = {**target, "batch_size": batch}
    point.setdefault("C", 6 * target["N"] * target["D"])
    pred = law.predict(point)
    expo = ", ".join(f"{v}^{e:+.3f} [{iv[0]:+.3f}, {iv[1]:+.3f}]" for v, (e, iv) in law.exponents.items())
    return pred, (f"learning rate at the recommended batch size {batch:.4g} tokens from lr* ~ {expo}, fitted on "
                  f"{law.scales} bracketed (scale, batch size) slices ({len(law.excluded)} unbracketed left out)")


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


def _batch_loss_shift(slices: list[Optimum], target: Mapping[str, float], batch: float, reference: float, *,
                      seed: int = 0, draws_per_slice: int = 200) -> tuple[float, np.ndarray, float, str] | None:
    """L*(batch) - L*(reference) in nats at the target's D, from the scales whose batch sweep spans both sizes.

    The loss law is fitted on optima at the reference batch size; at another batch size the best loss
    differs. Per swept scale, the slices' minimum losses (lr optimised at each batch size) are interpolated
    in ln batch; across token budgets the difference is fitted linearly in ln D (or taken as is
    from one budget). The difference is added, not multiplied: a batch size off its optimum wastes tokens
    (fewer useful steps), a change of the data term of the loss law, which does not depend on N; and the
    batch optimum moves with D, hardly with N (StepLaw). Returns (point, bootstrap draws, extrapolation in D,
    note), or None.
    """
    by_scale: dict[tuple, list[Optimum]] = {}
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
    note = (f"loss at batch {batch:.4g} tokens = the loss law's prediction at {reference:g} tokens {value:+.4f} nats "
            f"(best loss at {batch:.4g} minus at {reference:g} tokens on the proxies' batch sweep, {how}; "
            f"assumes the batch penalty depends on D, not N)")
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
        "steplaw": {"lr": float(steplaw_lr(n, D)), "batch_size": float(steplaw_batch(D)),
                    "formula": "lr = 1.79 N^-0.713 D^0.307, B = 0.58 D^0.571 tokens (Li et al. 2025)",
                    "inputs": f"{n_note} = {n:.4g}, D = {D:.4g} tokens"},
        "deepseek": {"lr": float(deepseek_lr(C)), "batch_size": float(deepseek_batch(C)),
                     "formula": "lr = 0.3118 C^-0.125, B = 0.2920 C^0.3271 tokens (DeepSeek-AI 2024)",
                     "inputs": f"C = {C:.4g} FLOPs ({how})"},
    }


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
) -> Recommendation:
    """Recommend hyperparameters at ``target`` (N parameters in the table's convention, D tokens; optional
    N_nonembed, width, depth, seq_len for the published laws) from a run table of proxy sweeps."""
    target = {k: float(v) for k, v in target.items()}
    for key in ("N", "D"):
        if key not in target:
            raise ScaletuneError(f"target needs {key} (e.g. --target N=1e6,D=2e7; N in the table's convention, D tokens)")
        if not target[key] > 0:
            raise ScaletuneError(f"target {key}={target[key]!r} must be positive")
    require_columns(runs, ["lr", "loss"])
    if optima is None:
        optima = find_optima(runs, band=band, bootstrap=max(bootstrap // 2, 100), seed=seed)
    # Where the batch size was swept at some scales, the per-(scale, batch size) optima: the laws fitted at one
    # batch size take those scales' slice at it, and the lr and loss are moved to the recommended size.
    slices = (_batch_slices(runs, band=band, bootstrap=bootstrap, seed=seed)
              if "batch_size" in runs.columns and any(o.batch_bracketed is not None for o in optima) else None)
    if laws is None:
        laws = fit_hparam_laws(optima, bootstrap=bootstrap, loss_bootstrap=loss_bootstrap, seed=seed, slices=slices)
    notes = list(laws.notes)
    ok = runs[runs["status"].astype(str).eq("ok")] if "status" in runs.columns else runs

    # Batch size (tokens): B*(N, D) or B*(D) law, else B*(C), else the batch sweep nearest the target.
    batch = None
    if "batch_ND" in laws.laws:
        batch = laws.laws["batch_ND"].predict(target)
    elif "batch_D" in laws.laws:
        batch = laws.laws["batch_D"].predict(target)
    elif "batch_C" in laws.laws:
        batch = laws.laws["batch_C"].predict({"C": 6 * target["N"] * target["D"]})
    swept = [o for o in optima if o.batch_bracketed is False and o.best_batch_size]
    if swept:
        o = max(swept, key=lambda o: (o.scale.get("D", 0), o.scale.get("N", 0)))
        edge = "smaller" if o.next_batch_sizes and max(o.next_batch_sizes) < o.best_batch_size else "larger"
        seq = pd.to_numeric(pd.Series([o.extra.get("seq_len")]), errors="coerce").iloc[0]  # that scale's sequence length
        if not o.next_batch_sizes:  # inside the sweep, but the landscape is too flat or noisy for a vertex
            advice = f"{o.message}: more seeds there would locate it"
        elif edge == "smaller" and seq > 0 and o.best_batch_size <= seq:
            # One sequence is the smallest batch there is: "sweep smaller sizes" cannot be followed as such.
            advice = (f"at the edge; it is one sequence of {seq:g} tokens, the smallest batch at this sequence length: "
                      f"the optimum is at or below it (shorter sequences on the proxies would bracket it)")
        else:
            advice = f"at the edge; {edge} batch sizes may be better: sweep them on the proxies"
        notes.append(f"batch size: the sweep at {_label(o)} did not bracket the optimum (best {o.best_batch_size:g} tokens); {advice}")
    from_sweep = False
    near = _nearest_sweep(optima, target)
    if batch is None and near is not None:
        # No batch-size law: the sweep nearest the target carries the choice. B* moves with D (StepLaw) and,
        # at small scales, with N too (the built-in LM: one sequence at width 24, 128-256 tokens at width 48
        # and at 8x its parameters), so a near sweep's optimum beats a far one's. Its best tested size where
        # the optimum is not bracketed (at the edge: closer to the optimum than any fixed ladder size).
        o, extra = near
        if o.usable("batch_size"):
            batch = Prediction(float(o.batch_size_), tuple(o.batch_size_interval), extra,
                               source=f"the batch-size optimum at {_label(o)}, the swept scale nearest the target, "
                                      f"copied (no batch-size law)")
        else:
            batch = Prediction(float(o.best_batch_size), (math.nan, math.nan), extra,
                               source=f"best tested batch size at {_label(o)}, the swept scale nearest the target; "
                                      + ("at the edge of the sweep: a bound" if o.next_batch_sizes else
                                         "no convex optimum there (flat or noisy)")
                                      + ", not a fitted optimum (no batch-size law)")
        from_sweep = True
    if batch is None and "batch_size" in ok.columns and ok["batch_size"].nunique() == 1:
        batch = Prediction(float(ok["batch_size"].iloc[0]), (math.nan, math.nan), 1.0,
                           source="as in the proxies (batch size not swept)")
    if batch is None and laws.reference_batch is not None:
        # Keep the pair consistent: the batch size the lr law was fitted at.
        batch = Prediction(laws.reference_batch, (math.nan, math.nan), 1.0,
                           source="the batch size the lr law was fitted at (no batch-size law)")
    if batch is None and "batch_size" in ok.columns and ok["batch_size"].notna().any():
        batch = Prediction(float(_mode(ok["batch_size"])), (math.nan, math.nan), 1.0,
                           source="the proxies' most common batch size (no batch-size law)")
    if batch is None:
        raise ScaletuneError(f"{runs.attrs.get('source', 'table')}: no batch_size column and no batch law")

    # Learning rate: with a batch-size law, lr*(N, D, B) at the recommended batch size; else the StepLaw
    # form, else the DeepSeek form, else the largest proxy copied.
    lr = None
    if any(name in laws.laws for name in ("batch_ND", "batch_D", "batch_C")) or from_sweep:
        if slices is None:
            slices = _batch_slices(runs, band=band, bootstrap=bootstrap, seed=seed)
        lr, note = _lr_at_batch(slices, target, batch.value, bootstrap=bootstrap, seed=seed)
        notes.append(note)
        if lr is None and from_sweep and laws.reference_batch is not None:
            # Keep the pair consistent: the lr law below holds at the batch size it was fitted at.
            batch = Prediction(laws.reference_batch, (math.nan, math.nan), 1.0,
                               source="the batch size the lr law was fitted at (no batch-size law)")
    for name in ("lr_ND", "lr_C"):
        law = laws.laws.get(name)
        if law is not None and lr is None:
            point = dict(target)
            point.setdefault("C", 6 * target["N"] * target["D"])
            lr = law.predict(point)
            break
    if lr is None:
        lr = _proxy_fallback(optima, target)
        if lr is None:
            raise ScaletuneError("no scale has a bracketed learning-rate optimum: nothing to recommend "
                                 "(see each scale's message and the proposed next rates with `scaletune optimum`)")
        notes.append("learning rate: no law could be fitted; copied from the largest proxy")

    seq_len = int(target.get("seq_len") or (_mode(ok["seq_len"]) if "seq_len" in ok.columns else 0) or 0) or None
    seqs = None
    if seq_len:
        seqs = Prediction(batch.value / seq_len, tuple(v / seq_len for v in batch.interval), batch.extrapolation,
                          source=f"batch_size / seq_len ({seq_len} tokens per sequence)")
    steps = max(1, int(target["D"] // batch.value))

    # Warm-up: the proxies' warm-up as a fraction of their steps (run tables record it in steps).
    warmup: dict[str, Any] = {"steps": 0, "fraction": 0.0, "source": "no warmup column in the runs"}
    if "warmup" in ok.columns and "batch_size" in ok.columns and "D" in ok.columns:
        frac = pd.to_numeric(ok["warmup"], errors="coerce") / (pd.to_numeric(ok["D"], errors="coerce") / pd.to_numeric(ok["batch_size"], errors="coerce"))
        frac = frac[np.isfinite(frac)]
        if len(frac):
            f = float(frac.median())
            lo_steps = f * target["D"] / batch.interval[1] if math.isfinite(batch.interval[1]) else math.nan
            hi_steps = f * target["D"] / batch.interval[0] if math.isfinite(batch.interval[0]) else math.nan
            warmup = {"steps": int(round(f * steps)), "fraction": f, "steps_interval": [lo_steps, hi_steps],
                      "source": "the proxies' warm-up fraction of their steps (not fitted; interval from the batch size)"}
            if frac.max() - frac.min() > 0.02:
                notes.append(f"the proxies used warm-up fractions from {frac.min():.3f} to {frac.max():.3f}: the median is recommended")

    # Schedule and parameterisation: carried over from the proxies (the laws hold for them only).
    schedule = "unknown (no schedule column)"
    if "schedule" in ok.columns and ok["schedule"].notna().any():
        spec = str(_mode(ok["schedule"]))
        if ok["schedule"].astype(str).str.partition(":")[0].nunique() > 1:
            notes.append("the proxies used several schedule kinds: the most common one is recommended")
        try:
            base = Schedule.parse(spec) if "steps=" in spec else Schedule.parse(spec, steps=steps, lr=lr.value)
            target_schedule = replace(base, steps=steps, lr=lr.value, warmup=min(warmup["steps"], steps - 1))
            if base.decay_start is not None:  # keep the cooldown as the same fraction of the run
                target_schedule = replace(target_schedule, decay_start=int(round(base.decay_start / base.steps * steps)))
            schedule = target_schedule.spec()
        except ScaletuneError:
            schedule = spec
    param = str(_mode(ok["param"])) if "param" in ok.columns and ok["param"].notna().any() else "unknown"
    if "param" in ok.columns and ok["param"].nunique() > 1:
        notes.append(f"the runs mix parameterisations ({', '.join(map(str, ok['param'].unique()))}); fit one at a time")
    if param == "sp":
        notes.append("standard parameterisation: the optimum moves with width, so the N exponent carries the transfer; "
                     "muP proxies transfer more reliably")

    loss = None
    if laws.loss is not None:
        point = {"N": target["N"], "D": target["D"], "C": target.get("C", 6 * target["N"] * target["D"])}
        value = float(laws.loss.predict(point)[0])
        has_boot = laws.loss.bootstrap_params is not None and len(laws.loss.bootstrap_params) > 0
        samples = laws.loss.predict_samples(point)[:, 0] if has_boot else np.zeros(0)
        extra = float(laws.loss.extrapolation(point)[0])
        source = f"{laws.loss.law} law fitted on the optimal loss per scale"
        ref = laws.loss_batch
        if ref is not None and ref != batch.value:
            # The law holds at the batch size its optima were fitted at: move it to the recommended batch size.
            if slices is None:
                slices = _batch_slices(runs, band=band, bootstrap=bootstrap, seed=seed)
            shift = _batch_loss_shift(slices, target, batch.value, ref, seed=seed)
            if shift is None:
                source += f" (at batch {ref:g} tokens, the one it was fitted at; no batch sweep spans {batch.value:.4g} tokens to correct it)"
            else:
                r, r_draws, r_extra, r_note = shift
                value += r
                samples = samples[: len(r_draws)] + r_draws[: len(samples)]  # independent bootstraps: paired in order
                extra = max(extra, r_extra)
                source += ", moved to the recommended batch size"
                notes.append(r_note)
        samples = samples[np.isfinite(samples)]
        iv = (math.nan, math.nan)
        if len(samples) >= 10:
            iv = (float(np.percentile(samples, 2.5)), float(np.percentile(samples, 97.5)))
        loss = Prediction(value, iv, extra, source=source)

    pub = published_at(target, seq_len)
    for entry in pub.values():
        entry["lr_ratio_to_recommended"] = entry["lr"] / lr.value
        entry["batch_ratio_to_recommended"] = entry["batch_size"] / batch.value
        entry["lr_inside_interval"] = bool(lr.interval[0] <= entry["lr"] <= lr.interval[1])
    if param in ("mup", "completep"):
        notes.append(f"under {param} the recommended lr is the base rate of the parameterisation; the published "
                     "laws give a standard-parameterisation AdamW rate (compare with care)")
    return Recommendation(
        target=target, lr=lr, batch_size=batch, batch_sequences=seqs, seq_len=seq_len, steps=steps, warmup=warmup,
        schedule=schedule, param=param, loss=loss, published=pub, optima=tuple(optima), laws=laws, notes=tuple(notes),
    )

