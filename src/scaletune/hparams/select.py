"""The sweep analysis: candidate rules for the batch size, the learning rate and the loss, each scored by how
well it predicts a held-out larger scale, in loss terms.

Computed once per sweep (`analyse_sweep`); `scaletune.hparams.recommend` then takes small pure steps from it.

Folds (`fold_plan`): the scales at the largest compute C = 6ND are held out and the rules are fitted on the
smaller ones; where 6+ scales exist, a rolling origin adds the second-largest compute (fitted on the scales
below it); where D (or N) takes 3+ values, the scales at the largest D (N) are held out too, as a target
lies beyond the ladder in N and D. Each held-out scale gets its own landscape, fitted on its runs alone (`fit_landscape` on one scale:
vertex, asymmetric curvature in ln lr, curvature in ln B where it swept the batch size). A candidate's
*penalty* there is the expected loss above that scale's optimum at the settings it predicts, averaged over
the candidate's own bootstrap draws (so a term the data cannot pin down costs its variance), in % of the
optimum loss:

- batch size: the penalty of the predicted batch size with the rate re-optimised (held-out scales that
  swept the batch size only);
- learning rate: the penalty of the predicted rate at the batch size the chosen batch rule predicts there
  (or the scale's own batch size where it did not sweep it), beyond the best rate at that batch size;
- loss law: the absolute error of the predicted optimum loss.

The score is the mean penalty over the folds every eligible candidate (one scored on every compute fold)
was scored on. Every candidate within the noise of the best score ties with it, and among those the one
with the fewest fitted exponents wins, then a published form, then the better score (shrinkage toward the
simpler / published form). The noise: twice the standard deviation (from the median absolute deviation)
of the score difference over draws of the held-out landscapes (their fit uncertainty) for the settings (0 where a
held-out scale is scored on its measured runs because its own landscape fit is not sound), twice the
held-out optimum's standard error for the loss, or 0.75 x the best loss score / sqrt(folds) when larger (the
spread of a mean absolute error over few folds); L(C) never wins a tie against L(N, D), since folds on the
ladder's own split of C cannot show what ignoring the split costs off it. Significance tests of exponents only
describe (`HparamLaws.notes`).

The loss interval (`loss_interval`) comes from the chosen loss law's errors on every fold: log errors against
the held-out scales' joint distance from their fold's ladder, as `scaletune.laws._calibration` models them
(noise tau, growth kappa per unit of distance, a conformal multiplier), kappa capped at all of the error
ascribed to distance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from operator import itemgetter
from typing import Any, Callable, Mapping, Sequence, TypedDict, TypeVar

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy.optimize import nnls

from scaletune.errors import ScaletuneError
from scaletune.hparams.landscape import _WINDOW_STEPS as _WINDOW
from scaletune.hparams.landscape import JointLandscape, _step, fit_landscape, prepare_runs
from scaletune.hparams.laws import HparamLaw, HparamLaws, Method, fit_hparam_law, fit_hparam_laws
from scaletune.hparams.optimum import DEFAULT_BAND, Optimum, find_optima
from scaletune.laws._calibration import Calibration, calibrated_interval, estimate_error_model
from scaletune.laws import FitResult
from scaletune.runtable import ok_runs, training_flops

_DRAWS = 200  # candidate draws per prediction
_LAND_DRAWS = 40  # held-out landscape draws for the noise
# Preference orders (published / simpler first): a later candidate must beat an earlier one by more than noise.
BATCH_ORDER = (
    Method.BATCH_D,
    Method.BATCH_BAND_OLS,
    Method.BATCH_C,
    Method.BATCH_JOINT_D,
    Method.BATCH_NEAREST_SWEEP,
    Method.BATCH_ND,
    Method.BATCH_JOINT_ND,
)
LR_ORDER = (Method.LR_ND, Method.LR_BAND_OLS, Method.LR_C, Method.LR_JOINT, Method.LR_NDB)
LOSS_ORDER = (Method.LOSS_CHINCHILLA, Method.LOSS_CHINCHILLA_JOINT, Method.LOSS_COMPUTE, Method.LOSS_COMPUTE_JOINT)
FORMS = {
    Method.BATCH_D: "B* = k D^c on per-scale optima",
    Method.BATCH_ND: "B* = k N^d D^c on per-scale optima",
    Method.BATCH_C: "B* = k C^f on per-scale optima",
    Method.BATCH_BAND_OLS: "OLS ln B ~ ln D on runs within the band",
    Method.BATCH_JOINT_D: "B* = k D^c in one landscape over all runs",
    Method.BATCH_JOINT_ND: "B* = k N^d D^c in one landscape over all runs",
    Method.BATCH_NEAREST_SWEEP: "the optimum of the swept scale nearest in (ln N, ln D)",
    Method.LR_ND: "lr* = k N^a D^b on per-scale optima",
    Method.LR_NDB: "lr* = k N^a D^b B^g on (scale, batch) slices",
    Method.LR_C: "lr* = k C^e on per-scale optima",
    Method.LR_BAND_OLS: "OLS ln lr ~ ln N + ln D on runs within the band",
    Method.LR_JOINT: "lr* = k N^a D^b (B/B*)^g in one landscape over all runs",
    Method.LOSS_CHINCHILLA: "E + A/N^alpha + B/D^beta on per-scale vertex losses",
    Method.LOSS_COMPUTE: "E + A/C^gamma on per-scale vertex losses",
    Method.LOSS_CHINCHILLA_JOINT: "E + A/N^alpha + B/D^beta on the landscape's optimum losses (weighted by their SE)",
    Method.LOSS_COMPUTE_JOINT: "E + A/C^gamma on the landscape's optimum losses (weighted by their SE)",
}
# Fitted exponents (loss laws: parameters) of each form: the simpler of two candidates within noise is kept.
COMPLEXITY = {
    Method.BATCH_D: 1,
    Method.BATCH_BAND_OLS: 1,
    Method.BATCH_C: 1,
    Method.BATCH_JOINT_D: 1,
    Method.BATCH_NEAREST_SWEEP: 1,
    Method.BATCH_ND: 2,
    Method.BATCH_JOINT_ND: 2,
    Method.LR_ND: 2,
    Method.LR_BAND_OLS: 2,
    Method.LR_C: 1,
    Method.LR_JOINT: 3,
    Method.LR_NDB: 3,
    # L(C) cannot see how C is split between N and D, and held-out folds on the ladder's own split
    # cannot show what that costs at a target off it: it never wins a tie against L(N, D)
    Method.LOSS_CHINCHILLA: 5,
    Method.LOSS_CHINCHILLA_JOINT: 5,
    Method.LOSS_COMPUTE: 6,
    Method.LOSS_COMPUTE_JOINT: 6,
}
PUBLISHED = {Method.BATCH_D, Method.BATCH_C, Method.LR_ND, Method.LR_C, Method.LOSS_CHINCHILLA, Method.LOSS_COMPUTE}
ROLE = {**{m: "batch_size" for m in BATCH_ORDER}, **{m: "lr" for m in LR_ORDER}, **{m: "loss" for m in LOSS_ORDER}}

Draws = npt.NDArray[np.float64]  # ln-draws of a prediction, or penalties per landscape draw
Scale = Mapping[str, float]  # a point: N, D (and C, batch_size)
BatchPredictor = Callable[[Scale], tuple[float, Draws]]  # point -> (tokens, ln-draws)
LrPredictor = Callable[[Scale, "float | None"], tuple[float, Draws]]  # (point, batch tokens) -> (lr, ln-draws)
ScaleKey = tuple[float, float]  # (ln N, ln D) rounded (`_key`)
_P = TypeVar("_P")


@dataclass(frozen=True)
class Candidate:
    """One candidate rule with its held-out score: ``score`` the mean penalty over folds (% of the optimum
    loss), ``penalty`` per fold (None where it could not be fitted), ``noise`` what a difference must exceed
    to count (% ; two standard deviations against the best candidate), ``chosen``."""

    method: Method
    score: float | None
    penalty: tuple[float | None, ...]
    noise: float | None = None
    chosen: bool = False

    @property
    def role(self) -> str:
        return ROLE[self.method]

    def to_dict(self) -> dict[str, Any]:
        return {
            "role": self.role,
            "name": self.method.name,
            "method": self.method.value,
            "form": FORMS[self.method],
            "score": self.score,
            "penalty": list(self.penalty),
            "noise": self.noise,
            "chosen": self.chosen,
        }


class HeldScale(TypedDict):
    """A held-out scale of a fold: its point, loss surface, whether it swept the batch size (else ``batch``,
    its fixed one), edge, hull distance from the fold's ladder, and the chosen batch rule's prediction there."""

    point: dict[str, float]
    surface: _HeldOut
    swept: bool
    batch: float | None
    edge: bool
    distance: float
    batch_pred: float | None


@dataclass
class Fold:
    """Training data of one fold and its held-out scales."""

    runs: pd.DataFrame
    optima: list[Optimum]
    slices: list[Optimum] | None
    held: list[HeldScale] = field(default_factory=list)
    axis: str = "C"  # the variable whose largest value(s) the fold holds out (`fold_plan`)
    _laws: HparamLaws | None = None
    _joint: dict[str | tuple[str, ...] | None, JointLandscape | None] = field(default_factory=dict)  # by batch_vars
    _cache: dict[str, pd.DataFrame] = field(default_factory=dict)

    def laws(self) -> HparamLaws:
        if self._laws is None:
            self._laws = fit_hparam_laws(self.optima, bootstrap=200, loss_bootstrap=0, slices=self.slices, holdout=False)
        return self._laws

    def joint(self, batch_vars: str | tuple[str, ...] | None) -> JointLandscape | None:
        if batch_vars not in self._joint:
            try:
                if "prepared" not in self._cache:
                    self._cache["prepared"] = prepare_runs(self.runs)
                self._joint[batch_vars] = fit_landscape(self.runs, batch_vars=batch_vars, prepared=self._cache["prepared"])
            except (ScaletuneError, ValueError, np.linalg.LinAlgError):
                self._joint[batch_vars] = None
        return self._joint[batch_vars]


def _key(scale: Scale) -> ScaleKey:
    return (round(math.log(scale["N"]), 6), round(math.log(scale["D"]), 6))


def _C(p: Mapping[str, float]) -> float:
    return float(training_flops(p["N"], p["D"]))


def hull_distance(points: np.ndarray, target: np.ndarray) -> float:
    """Euclidean distance from ``target`` to the convex hull of ``points`` (rows), e.g. in (ln N, ln D):
    0 inside; beyond a corner, beyond an edge, or off a line of collinear points (a constant tokens per
    parameter ladder) it grows with the distance in every direction, not just per variable."""
    P = np.asarray(points, float)
    big = 1e3 * (1 + np.abs(P).max() + np.abs(target).max())
    A = np.vstack([P.T, big * np.ones(len(P))])
    b = np.concatenate([np.asarray(target, float), [big]])
    w, _ = nnls(A, b)
    dist = float(np.linalg.norm(P.T @ w - target))
    return dist if dist > 1e-9 * (1 + float(np.abs(target).max())) else 0.0  # inside: 0 up to round-off


# ---------------------------------------------------------------------------------------------- candidates
# Each fitter takes a Fold and returns a predictor, or None where the fold cannot fit it. Batch predictors
# map a point to (value, ln-draws); lr predictors map (point, batch) to (value, ln-draws).


def _law_draws(law: HparamLaw, x: Scale) -> tuple[float, Draws]:
    value = float(law.fit_.predict(x)[0])
    draws = np.log(law.fit_.predict_samples(x)[:, 0])
    draws = draws[np.isfinite(draws)]
    return value, draws if len(draws) else np.array([math.log(value)])


def _pt(point: Scale, batch: float | None = None) -> dict[str, float]:
    out = {"N": point["N"], "D": point["D"], "C": point.get("C", _C(point))}
    if batch is not None:
        out["batch_size"] = batch
    return out


def _band_table(runs: pd.DataFrame, band: float) -> pd.DataFrame:
    """Seed-mean configurations within ``band`` of each (N, D) scale's best (the plain protocol's rows)."""
    ok = ok_runs(runs)
    cols = ["N", "D", "lr"] + (["batch_size"] if "batch_size" in ok.columns else [])
    mean = ok.groupby(cols, as_index=False)["loss"].mean()
    best = mean.groupby(["N", "D"])["loss"].transform("min")
    out = mean[mean["loss"] <= best * (1 + band)].copy()
    out["n_b"] = out.groupby(["N", "D"])["N"].transform("size")
    out["swept_b"] = (
        out.set_index(["N", "D"]).index.map(ok.groupby(["N", "D"])["batch_size"].nunique() if "batch_size" in ok.columns else {}).to_numpy()
        >= 3
        if "batch_size" in ok.columns
        else False
    )
    return out


def _ols_boot(df: pd.DataFrame, y: str, xs: Sequence[str], seed: int) -> LrPredictor | None:
    """OLS of ln y on ln xs over rows of df, with a cluster bootstrap over (N, D) scales."""
    scales = df.groupby(["N", "D"]).ngroup().to_numpy()
    S = scales.max() + 1 if len(scales) else 0
    if S <= len(xs) + 1:
        return None
    X = np.column_stack([np.ones(len(df))] + [np.log(df[x].to_numpy(float)) for x in xs])
    Y = np.log(df[y].to_numpy(float))
    if np.linalg.matrix_rank(X) < X.shape[1]:
        return None
    coef = np.linalg.lstsq(X, Y, rcond=None)[0]
    rng = np.random.default_rng(seed)
    fits = []
    for _ in range(_DRAWS):
        pick = rng.integers(0, S, S)
        rows = np.concatenate([np.flatnonzero(scales == s) for s in pick])
        if np.linalg.matrix_rank(X[rows]) == X.shape[1]:
            fits.append(np.linalg.lstsq(X[rows], Y[rows], rcond=None)[0])
    boots = np.array(fits) if fits else coef[None]

    def predict(point: Scale, batch: float | None = None) -> tuple[float, Draws]:
        x = np.array([1.0] + [math.log(point[v]) for v in xs])
        return float(np.exp(coef @ x)), boots @ x

    return predict


def fit_batch(method: Method, fold: Fold, band: float = DEFAULT_BAND, seed: int = 0) -> BatchPredictor | None:
    """A batch-size predictor point -> (tokens, ln-draws) fitted on ``fold``, or None."""
    if method in (Method.BATCH_D, Method.BATCH_ND, Method.BATCH_C):
        variables = {Method.BATCH_D: ("D",), Method.BATCH_ND: ("N", "D"), Method.BATCH_C: ("C",)}[method]
        try:
            law = fit_hparam_law(fold.optima, "batch_size", variables, bootstrap=_DRAWS, seed=seed, holdout=False)
        except ScaletuneError:
            return None
        return lambda p: _law_draws(law, _pt(p))
    if method == Method.BATCH_BAND_OLS:
        t = _band_table(fold.runs, band)
        if "batch_size" not in t.columns:
            return None
        t = t[t["swept_b"]]
        if t["D"].nunique() < 2:
            return None
        f = _ols_boot(t, "batch_size", ("D",), seed)
        return None if f is None else (lambda p: f(p, None))
    if method in (Method.BATCH_JOINT_D, Method.BATCH_JOINT_ND):
        land = fold.joint(("D",) if method == Method.BATCH_JOINT_D else ("N", "D"))
        if land is None or land.batch_vars is None:
            return None
        th = land.draws(_DRAWS, seed)
        return lambda p: (float(np.exp(land.ln_batch_opt(p))), np.asarray(land.ln_batch_opt(p, th)))
    if method == Method.BATCH_NEAREST_SWEEP:
        swept = [
            (o, o.batch_size_)
            for o in fold.optima
            if o.usable("batch_size") and o.batch_size_ is not None and "N" in o.scale and "D" in o.scale
        ]
        if not swept:
            return None

        def nearest(p: Scale) -> tuple[float, Draws]:
            o, b = min(swept, key=lambda ob: math.hypot(math.log(p["N"] / ob[0].scale["N"]), math.log(p["D"] / ob[0].scale["D"])))
            d: Draws = o.samples[:, 1] if o.samples is not None else np.array([])
            d = d[np.isfinite(d)]
            return float(b), d if len(d) else np.array([math.log(b)])

        return nearest
    raise ValueError(method)


def _slice_law(fold: Fold, seed: int) -> HparamLaw | None:
    if not fold.slices:
        return None
    variables = tuple(v for v in ("N", "D") if len({round(s.scale.get(v, math.nan), 6) for s in fold.slices if s.usable("lr")}) > 1)
    try:
        return fit_hparam_law(fold.slices, "lr", variables + ("batch_size",), name="lr_NDB", bootstrap=_DRAWS, seed=seed + 7, holdout=False)
    except ScaletuneError:
        return None


def fit_lr(method: Method, fold: Fold, band: float = DEFAULT_BAND, seed: int = 0) -> LrPredictor | None:
    """A learning-rate predictor (point, batch tokens) -> (lr, ln-draws) fitted on ``fold``, or None."""
    if method in (Method.LR_ND, Method.LR_C):
        try:
            laws = fold.laws().laws
        except ScaletuneError:
            return None
        lr_law = laws.get("lr_ND" if method == Method.LR_ND else "lr_C")
        if lr_law is None:
            return None
        return lambda p, b: _law_draws(lr_law, _pt(p))
    if method == Method.LR_NDB:
        law = _slice_law(fold, seed)
        if law is None or "batch_size" not in law.variables:
            return None
        return lambda p, b: _law_draws(law, _pt(p, b))
    if method == Method.LR_BAND_OLS:
        t = _band_table(fold.runs, band)
        xs = tuple(v for v in ("N", "D") if t[v].nunique() >= 2)
        if not xs:
            return None
        f = _ols_boot(t, "lr", xs, seed)
        return None if f is None else f
    if method == Method.LR_JOINT:
        land = fold.joint("auto")
        if land is None or not land.lr_vars:
            return None
        th = land.draws(_DRAWS, seed)
        return lambda p, b: (float(np.exp(land.ln_lr_opt(p, b))), np.asarray(land.ln_lr_opt(p, b, th)))
    raise ValueError(method)


# ------------------------------------------------------------------------------------------------- scoring


class _HeldOut:
    """A held-out scale's loss surface: its own landscape (one scale; batch terms where it swept 3+ sizes)
    when that fit is sound (vertex within a grid step of the tested range, optimum loss not below the best
    run by more than 2%), else its measured runs (the seed-mean loss of the tested configuration nearest a
    prediction). Penalties are in % of the optimum loss, one per landscape draw (first: the point fit)."""

    def __init__(self, runs: pd.DataFrame, seed: int):
        prep = prepare_runs(runs)
        self.swept = prep["ln_b"].nunique() >= 3
        self.edge = bool(prep["edge"].iloc[0])
        self.batch = None if self.swept else float(np.exp(prep["ln_b"].mode().iloc[0]))
        self.cfg = prep.groupby(["ln_b", "ln_lr"])["loss"].agg(["mean", "std", "size"])
        self.best = float(self.cfg["mean"].min())
        self.land: JointLandscape | None = None
        try:
            land = fit_landscape(runs, lr_vars=(), batch_vars=() if self.swept else None, prepared=prep)
        except (ScaletuneError, ValueError, np.linalg.LinAlgError):
            land = None
        if land is not None and self._sound(land, prep):
            self.land = land
            self.th = np.vstack([land.params[None], land.draws(_LAND_DRAWS, seed)])
        self.kind = "landscape" if self.land is not None else "measured runs"

    @staticmethod
    def _sound(land: JointLandscape, prep: pd.DataFrame) -> bool:
        p = dict(zip(land.names, land.params))
        step = _step(prep["ln_lr"].to_numpy(float))
        ok = prep["ln_lr"].min() - step <= p["t_0"] <= prep["ln_lr"].max() + step
        ok &= 0.98 * prep["loss"].min() <= p["L_0"] <= prep["loss"].max()
        if "p_0" in p:
            bstep = _step(prep["ln_b"].to_numpy(float))
            ok &= prep["ln_b"].min() - bstep <= p["p_0"] <= prep["ln_b"].max() + bstep
        return bool(ok)

    def _theta(self, name: str) -> Draws:
        assert self.land is not None  # only read where the held-out landscape is sound
        column: Draws = self.th[:, self.land.names.index(name)][:, None]
        return column

    def _nearest(self, values: Draws, x: npt.ArrayLike) -> Draws:
        near: Draws = values[np.abs(values[None, :] - np.asarray(x)[:, None]).argmin(axis=1)]
        return near

    def _const(self, v: float) -> Draws:
        return np.full(_LAND_DRAWS + 1, v)

    def batch_opt(self) -> float:
        if self.land is not None:
            return float(np.exp(self.land.params[self.land.names.index("p_0")]))
        return float(np.exp(self.cfg["mean"].idxmin()[0]))

    def pen_b(self, ln_b: Draws) -> Draws:
        """Expected penalty of batch draws ``ln_b`` with the rate re-optimised."""
        if self.land is not None:
            pen = np.exp(self._theta("ln_c_b")) * (ln_b[None, :] - self._theta("p_0")) ** 2
            out: Draws = 100 * pen.mean(axis=1) / self.th[:, 0]
            return out
        per_b = self.cfg["mean"].groupby(level=0).min()
        near = self._nearest(per_b.index.to_numpy(float), ln_b)
        return self._const(100 * float(np.mean(per_b.loc[near].to_numpy() / self.best - 1)))

    def pen_lr(self, ln_lr: Draws, batch: float | None) -> Draws:
        """Expected penalty of rate draws ``ln_lr`` beyond the best rate at batch size ``batch``."""
        if self.land is not None:
            opt = self._theta("t_0")
            if self.land.batch_vars is not None and batch is not None:
                opt = opt + self._theta("g") * (math.log(batch) - self._theta("p_0"))
            u = ln_lr[None, :] - opt
            c = np.where(u > 0, np.exp(self._theta("ln_c_above")), np.exp(self._theta("ln_c_below")))
            out: Draws = 100 * (c * u**2).mean(axis=1) / self.th[:, 0]
            return out
        bs = self.cfg.index.get_level_values(0).unique().to_numpy(float)
        b = float(self._nearest(bs, [math.log(batch)])[0]) if batch is not None else float(self.cfg["mean"].idxmin()[0])
        sl = self.cfg.loc[b, "mean"]
        near = self._nearest(sl.index.to_numpy(float), ln_lr)
        return self._const(100 * float(np.mean(sl.loc[near].to_numpy() / sl.min() - 1)))

    def observed(self, batch: float | None) -> tuple[float, float]:
        """The optimum loss (at ``batch`` where given and swept) and its standard error (NaN if unknown)."""
        if self.land is not None:
            L = float(self.land.params[0])
            if batch is not None and self.land.batch_vars is not None:
                L += float(self.land.penalty({}, None, batch))
            return L, self.land.scales[0]["L_se"]
        cfg = self.cfg
        if batch is not None and self.swept:
            bs = cfg.index.get_level_values(0).unique().to_numpy(float)
            cfg = cfg.loc[[float(self._nearest(bs, [math.log(batch)])[0])]]
        row = cfg.loc[cfg["mean"].idxmin()]
        se = float(row["std"] / math.sqrt(row["size"])) if row["size"] > 1 else math.nan
        return float(row["mean"]), se


def _comparable(
    methods: Sequence[Method], points: dict[Method, list[float | None]], axes: Sequence[str] | None
) -> tuple[list[Method], list[int]]:
    """(eligible candidates, indices of the folds they are compared on): see `_choose`."""
    n_folds = max((len(v) for v in points.values()), default=0)
    axes = list(axes) if axes is not None else ["C"] * n_folds
    scored = [i for i in range(n_folds) if any(points.get(m) and points[m][i] is not None for m in methods)]
    primary = [i for i in scored if axes[i] == "C"] or scored
    eligible = [m for m in methods if primary and points.get(m) and all(points[m][i] is not None for i in primary)]
    return eligible, [i for i in scored if all(points[m][i] is not None for m in eligible)]


def _choose(
    methods: Sequence[Method],
    per_draw: dict[Method, list[np.ndarray | None]],
    points: dict[Method, list[float | None]],
    noise_fixed: float | None = None,
    axes: Sequence[str] | None = None,
) -> list[Candidate]:
    """Score and choose (module docstring). ``points[m]``: per fold, the penalty (None: not fitted there);
    ``per_draw[m]``: per fold, the penalty under each landscape draw (first entry: the point landscape);
    ``noise_fixed``: a noise level for roles without draws (loss); ``axes``: each fold's axis (`fold_plan`).

    Eligible: the candidates scored on every compute fold (where any candidate was). They are compared on the
    folds where all of them were scored (the compute folds, plus the D / N folds every eligible one could be
    fitted on), so no candidate gains or loses by a fold the others skipped."""
    n_folds = max((len(v) for v in points.values()), default=0)
    eligible, common = _comparable(methods, points, axes)
    scores = {m: float(np.mean([points[m][i] for i in common])) for m in eligible}
    out = {m: Candidate(m, scores.get(m), tuple(points.get(m) or [None] * n_folds)) for m in methods}
    if not eligible:
        return list(out.values())
    best = min(eligible, key=lambda m: scores[m])

    def noise(m: Method) -> float:
        if noise_fixed is not None or not per_draw.get(m):
            return float(noise_fixed or 0.0)
        with np.errstate(all="ignore"):
            pairs = [(per_draw[m][i], per_draw[best][i]) for i in common]  # both scored on every common fold
            diff = np.mean([a - b for a, b in pairs if a is not None and b is not None], axis=0)
        diff = diff[np.isfinite(diff)]
        if len(diff) < 2:
            return 0.0
        # twice the sd, from the median absolute deviation: held-out landscape draws with an extreme curvature
        # (the asymptotic normal of a one-sided small sweep) must not make every candidate tie
        return float(2 * 1.4826 * np.median(np.abs(diff - np.median(diff))))

    # Within noise of the best: the fewest fitted exponents, then a published form, then the better score.
    tied = [m for m in methods if m in scores and (m == best or scores[m] - scores[best] <= noise(m))]
    chosen = min(tied, key=lambda m: (COMPLEXITY[m], m not in PUBLISHED, scores[m]))
    return [Candidate(m, c.score, c.penalty, noise(m) if m in scores else None, m == chosen) for m, c in out.items()]


@dataclass(frozen=True)
class SweepAnalysis:
    """Everything computed once from a sweep: per-scale optima and slices, the laws on them, the joint
    landscape, the scored candidates and the folds they were scored on. Pure steps
    (`scaletune.hparams.recommend`) read it."""

    runs: pd.DataFrame
    optima: tuple[Optimum, ...]
    slices: tuple[Optimum, ...] | None
    laws: HparamLaws
    landscape: JointLandscape | None
    candidates: tuple[Candidate, ...]
    folds: tuple[dict[str, Any], ...]
    ladder: np.ndarray  # (scales, 2): ln N, ln D of the scales with a bracketed lr optimum
    loss_error_per_unit: float | None  # kappa: std of the log loss error per unit of hull distance (backtest)
    band: float = DEFAULT_BAND
    seed: int = 0
    notes: tuple[str, ...] = ()
    loss_error: Calibration | None = None  # the chosen loss law's backtest error model (`loss_interval`)

    def chosen(self, role: str) -> Method | None:
        return next((c.method for c in self.candidates if c.role == role and c.chosen), None)

    def distance(self, point: Scale) -> float:
        """Distance (natural-log units) from the ladder's hull in (ln N, ln D)."""
        if not len(self.ladder):
            return math.nan
        return hull_distance(self.ladder, np.log([point["N"], point["D"]]))

    def to_dict(self) -> dict[str, Any]:
        return {
            "candidates": [c.to_dict() for c in self.candidates],
            "folds": list(self.folds),
            "landscape": None if self.landscape is None else self.landscape.to_dict(),
            "censored_scales": None if self.landscape is None else self.landscape.censored,
            "loss_error_per_unit_distance": self.loss_error_per_unit,
            "loss_error_model": None if self.loss_error is None else self.loss_error.to_dict(),
            "joint_loss_optima": self._joint_optima(),
            "notes": list(self.notes),
        }

    def _joint_optima(self) -> dict[str, int] | None:
        """How many scales' optimum losses the joint landscape identifies for a loss law (`_joint_rows`)."""
        rows = None if self.landscape is None else _joint_rows(self.landscape)
        if rows is None:
            return None
        return {"used": len(rows[0]), "left_out": int(rows[0].attrs["left_out"])}


def _slices(runs: pd.DataFrame, band: float, bootstrap: int, seed: int) -> list[Optimum] | None:
    from scaletune.hparams.optimum import scale_columns

    if "batch_size" not in runs.columns:
        return None
    cols = [c for c in scale_columns(runs) if c != "batch_size"] + ["batch_size"]
    try:
        return find_optima(runs, by=cols, band=band, bootstrap=max(bootstrap // 4, 50), seed=seed)
    except ScaletuneError:
        return None


def _fold_runs(runs: pd.DataFrame, keys: set[ScaleKey]) -> pd.DataFrame:
    k = [(round(math.log(n), 6), round(math.log(d), 6)) for n, d in zip(runs["N"].astype(float), runs["D"].astype(float))]
    return runs[[x in keys for x in k]]


def analyse_sweep(
    runs: pd.DataFrame,
    *,
    band: float = DEFAULT_BAND,
    bootstrap: int = 400,
    loss_bootstrap: int = 200,
    seed: int = 0,
    optima: Sequence[Optimum] | None = None,
    laws: HparamLaws | None = None,
    select: bool = True,
) -> SweepAnalysis:
    """Optima, slices, laws, the joint landscape and the candidates scored by held-out scale (module
    docstring). ``select=False`` skips the backtest (every candidate unscored: `recommend` then uses its
    fixed fallback order)."""
    optima = list(optima) if optima is not None else find_optima(runs, band=band, bootstrap=max(bootstrap // 2, 100), seed=seed)
    swept_any = "batch_size" in runs.columns and any(o.batch_bracketed is not None for o in optima)
    slices = _slices(runs, band, bootstrap, seed) if swept_any else None
    if laws is None:
        laws = fit_hparam_laws(optima, bootstrap=bootstrap, loss_bootstrap=loss_bootstrap, seed=seed, slices=slices)
    notes: list[str] = []
    has_nd = "N" in runs.columns and "D" in runs.columns and all("N" in o.scale and "D" in o.scale for o in optima)
    ladder = np.array([[math.log(o.scale["N"]), math.log(o.scale["D"])] for o in optima if o.lr_bracketed]) if has_nd else np.zeros((0, 2))
    landscape = None
    if has_nd:
        try:
            landscape = fit_landscape(runs, seed=seed)
        except (ScaletuneError, ValueError, np.linalg.LinAlgError) as exc:
            notes.append(f"joint landscape: not fitted ({exc})")
    candidates: list[Candidate] = []
    folds_out: list[dict[str, Any]] = []
    loss_error = None
    if select and has_nd:
        candidates, folds_out, loss_error = _backtest(runs, optima, slices, landscape, band, seed)
    joint = {
        Method.BATCH_JOINT_D: ("D",),
        Method.BATCH_JOINT_ND: ("N", "D"),
        Method.LR_JOINT: "auto",
        Method.LOSS_CHINCHILLA_JOINT: "auto",
        Method.LOSS_COMPUTE_JOINT: "auto",
    }
    chosen_joint = [joint[c.method] for c in candidates if c.chosen and c.method in joint]
    if chosen_joint and landscape is not None:
        # A joint rule decides: its intervals come from a residual bootstrap over the fixed design (refits).
        batch_vars = next((v for v in chosen_joint if v != "auto"), "auto")
        try:
            landscape = fit_landscape(runs, batch_vars=batch_vars, bootstrap=max(min(bootstrap // 8, 50), 20), seed=seed)
        except (ScaletuneError, ValueError, np.linalg.LinAlgError) as exc:
            notes.append(f"joint landscape: bootstrap refit failed ({exc}); asymptotic normal intervals")
    return SweepAnalysis(
        runs=runs,
        optima=tuple(optima),
        slices=None if slices is None else tuple(slices),
        laws=laws,
        landscape=landscape,
        candidates=tuple(candidates),
        folds=tuple(folds_out),
        ladder=ladder,
        loss_error_per_unit=None if loss_error is None else loss_error.kappa,
        band=band,
        seed=seed,
        notes=tuple(notes),
        loss_error=loss_error,
    )


def _loss_law_fit(law: str, rows: pd.DataFrame, weights: Draws | None = None) -> FitResult | None:
    from scaletune.laws import fit

    try:
        return fit(law, rows, weights=weights, bootstrap=0)
    except ScaletuneError:
        return None


def fold_plan(scales: Sequence[Scale], min_train: int = 4) -> list[tuple[str, set[ScaleKey], list[Scale]]]:
    """The held-out folds over ``scales`` (dicts with N and D): (axis, training keys, held-out scales) each.

    Along compute, a rolling origin: the largest C held out, then (6+ scales) the second largest. Along each
    of D and N with 3+ values, the scales at its largest value held out: a target lies beyond the ladder in
    N and D, and a fold along C alone can hold out a scale whose D (or N) some training scale shares, where a
    rule that cannot extrapolate (the nearest sweep's optimum copied) looks perfect. Folds with fewer than
    ``min_train`` training scales, or holding out the same scales as an earlier fold, are skipped."""
    items = [(_key(s), s) for s in scales]
    plan: list[tuple[str, set[ScaleKey], list[Scale]]] = []

    def add(axis: str, value: Callable[[Scale], float], cut: float) -> None:
        train = {k for k, s in items if round(math.log(value(s)), 6) < cut}
        held = [s for k, s in items if round(math.log(value(s)), 6) == cut]
        if len(train) >= min_train and held and all({_key(h) for h in held} != {_key(h) for h in p[2]} for p in plan):
            plan.append((axis, train, held))

    Cs = sorted({round(math.log(_C(s)), 6) for _, s in items})
    for c in Cs[-2:][::-1] if len(items) >= 6 else Cs[-1:]:
        add("C", _C, c)
    for axis in ("D", "N"):
        values = sorted({round(math.log(s[axis]), 6) for _, s in items})
        if len(values) >= 3:
            add(axis, itemgetter(axis), values[-1])
    return plan


def _backtest(
    runs: pd.DataFrame,
    optima: Sequence[Optimum],
    slices: Sequence[Optimum] | None,
    landscape: JointLandscape | None,
    band: float,
    seed: int,
) -> tuple[list[Candidate], list[dict[str, Any]], Calibration | None]:
    """Held-out folds (`fold_plan`); returns (candidates, fold records, the chosen loss law's error model)."""
    scales = sorted({_key(o.scale): o.scale for o in optima}.items(), key=lambda kv: _C(kv[1]))
    folds: list[Fold] = []
    for axis, train, held in fold_plan([s for _, s in scales]):
        fold = Fold(
            runs=_fold_runs(runs, train),
            optima=[o for o in optima if _key(o.scale) in train],
            slices=None if slices is None else [s for s in slices if _key(s.scale) in train],
            axis=axis,
        )
        for s in held:
            try:
                ho = _HeldOut(_fold_runs(runs, {_key(s)}), seed)
            except (ScaletuneError, ValueError, KeyError):
                continue
            ladder = np.log([[o.scale["N"], o.scale["D"]] for o in fold.optima])
            fold.held.append(
                {
                    "point": {"N": s["N"], "D": s["D"]},
                    "surface": ho,
                    "swept": ho.swept,
                    "batch": ho.batch,
                    "edge": ho.edge,
                    "distance": hull_distance(ladder, np.log([s["N"], s["D"]])),
                    "batch_pred": None,
                }
            )
        if fold.held:
            folds.append(fold)
    if not folds:
        return [], [], None

    def run_role(
        methods: Sequence[Method],
        fitter: Callable[[Method, Fold, float, int], _P | None],
        evaluate: Callable[[_P, HeldScale], Draws | None],
        scorable: Callable[[HeldScale], bool] = lambda h: True,
    ) -> tuple[dict[Method, list[Draws | None]], dict[Method, list[float | None]], list[str]]:
        per_draw: dict[Method, list[Draws | None]] = {m: [] for m in methods}
        points: dict[Method, list[float | None]] = {m: [] for m in methods}
        axes: list[str] = []
        for fold in folds:
            if not any(scorable(h) for h in fold.held):
                continue  # e.g. no held-out scale of this fold swept the batch size
            axes.append(fold.axis)
            for m in methods:
                pred = fitter(m, fold, band, seed)
                scored = [] if pred is None else [evaluate(pred, h) for h in fold.held]
                vals = [v for v in scored if v is not None]
                if not vals:
                    points[m].append(None)
                    per_draw[m].append(None)
                    continue
                arr = np.mean(vals, axis=0)
                points[m].append(float(arr[0]))
                per_draw[m].append(arr)
        return per_draw, points, axes

    # Batch size: held-out scales that swept it.
    def eval_batch(pred: BatchPredictor, h: HeldScale) -> Draws | None:
        if not h["swept"]:
            return None
        _, draws = pred(h["point"])
        return h["surface"].pen_b(draws)

    batch_folds_exist = any(h["swept"] for f in folds for h in f.held)
    batch_c: list[Candidate] = []
    if batch_folds_exist:
        per_draw, points, axes = run_role(BATCH_ORDER, fit_batch, eval_batch, scorable=lambda h: h["swept"])
        batch_c = _choose(BATCH_ORDER, per_draw, points, axes=axes)
    chosen_b = next((c.method for c in batch_c if c.chosen), None)

    # Learning rate, at the batch size the chosen rule predicts at each held-out scale (its own where fixed).
    def eval_lr(pred: LrPredictor, h: HeldScale) -> Draws:
        batch = h["batch"]
        if h["swept"]:
            if chosen_b is None:
                batch = h["surface"].batch_opt()
            else:
                batch = h["batch_pred"]
        _, draws = pred(h["point"], batch)
        return h["surface"].pen_lr(draws, batch)

    for fold in folds:
        bp = fit_batch(chosen_b, fold, band, seed) if chosen_b is not None else None
        for h in fold.held:
            h["batch_pred"] = bp(h["point"])[0] if (bp is not None and h["swept"]) else None
            if h["swept"] and h["batch_pred"] is None:
                h["batch_pred"] = h["surface"].batch_opt()
    per_draw, points, axes = run_role(LR_ORDER, fit_lr, eval_lr)
    lr_c = _choose(LR_ORDER, per_draw, points, axes=axes)

    # Loss law: the optimum loss at each held-out scale (at its own batch size where it did not sweep it).
    loss_pts: dict[Method, list[float | None]] = {m: [] for m in LOSS_ORDER}
    se: list[float] = []
    errs: dict[Method, list[tuple[float, float, float, int]]] = {m: [] for m in LOSS_ORDER}
    for k, fold in enumerate(folds):
        laws = None
        try:
            laws = fold.laws()
        except ScaletuneError:
            pass
        joint = fold.joint("auto")
        fitted: dict[Method, tuple[FitResult | None, float | None, JointLandscape | None]] = {}
        if laws is not None:
            rows = _optima_rows(laws)
            for m, law in ((Method.LOSS_CHINCHILLA, "chinchilla"), (Method.LOSS_COMPUTE, "compute")):
                fitted[m] = (_loss_law_fit(law, rows) if rows is not None else None, laws.loss_batch, None)
        joint_rows = None if joint is None else _joint_rows(joint)
        if joint_rows is not None:
            for m, law in ((Method.LOSS_CHINCHILLA_JOINT, "chinchilla"), (Method.LOSS_COMPUTE_JOINT, "compute")):
                fitted[m] = (_loss_law_fit(law, *joint_rows), None, joint)
        for m in LOSS_ORDER:
            res, at_batch, jl = fitted.get(m, (None, None, None))
            if res is None:
                loss_pts[m].append(None)
                continue
            e = []
            for h in fold.held:
                pred = float(res.predict(_pt(h["point"]))[0])
                b = h["batch"] if not h["swept"] else at_batch
                obs, obs_se = h["surface"].observed(b)
                if jl is not None and b is not None and jl.batch_vars is not None:
                    pred += float(jl.penalty(h["point"], None, b))
                e.append(100 * abs(pred / obs - 1))
                if m == LOSS_ORDER[0] and math.isfinite(obs_se):
                    se.append(100 * obs_se / obs)
                errs[m].append((math.log(obs / pred), h["distance"], obs_se / obs if math.isfinite(obs_se) else 0.0, k))
            loss_pts[m].append(float(np.mean(e)))
    # Noise of a score that is a mean absolute error over few folds: |e| of a zero-mean normal error has a
    # standard deviation of 0.75 times its mean, so scores closer than 0.75 x best / sqrt(folds) are a tie
    # (one sd, not two: the candidates' errors on a fold are correlated); never below the held-out optima's noise.
    axes = [f.axis for f in folds]
    eligible, common = _comparable(LOSS_ORDER, loss_pts, axes)
    scored = [float(np.mean([loss_pts[m][i] for i in common])) for m in eligible]
    loss_noise = max(
        2 * float(np.sqrt(np.mean(np.square(se)))) if se else 0.0, 0.75 * min(scored) / math.sqrt(len(common)) if scored and common else 0.0
    )
    loss_c = _choose(LOSS_ORDER, {}, loss_pts, noise_fixed=loss_noise, axes=axes)
    # The chosen law's backtest error model: log errors against the joint distance over every fold (`loss_interval`).
    chosen_loss = next((c.method for c in loss_c if c.chosen), None)
    loss_error = _loss_error_model(np.array(errs[chosen_loss] if chosen_loss is not None else [], dtype=np.float64).reshape(-1, 4))
    records = [
        {
            "axis": f.axis,
            "held_out": [h["point"] for h in f.held],
            "train_scales": len(f.optima),
            "surface": [h["surface"].kind for h in f.held],
            "distance": [h["distance"] for h in f.held],
            "edge": [h["edge"] for h in f.held],
            "batch_swept": [h["swept"] for h in f.held],
        }
        for f in folds
    ]
    return batch_c + lr_c + loss_c, records, loss_error


def _loss_error_model(rows: np.ndarray) -> Calibration | None:
    """The backtest error model of the loss prediction (`scaletune.laws._calibration`: log errors ~ N(bias d,
    s^2 + tau^2 + kappa^2 d^2), s the held-out optimum's standard error, tau and kappa by maximum likelihood,
    bias only when 3+ folds agree in sign, a conformal multiplier), from (log error, distance, s, fold) rows.
    With 1-2 held-out scales noise and growth cannot be told apart: all of their error is ascribed to
    distance. None when no held-out scale lies beyond the ladder (kappa is not identified)."""
    if not len(rows) or not np.any(rows[:, 1] > 0.05):
        return None
    # Capped by what the folds support: never more growth per unit of distance than all of their error
    # ascribed to distance (a few folds near the ladder cannot pin a steeper slope).
    cap = float(np.sqrt(np.mean(rows[:, 0] ** 2)) / np.sqrt(np.mean(rows[:, 1] ** 2)))
    if len(rows) < 3:
        return Calibration(
            method="backtest",
            noise_std=0.0,
            kappa=cap,
            by="scale",
            n_folds=len(np.unique(rows[:, 3])),
            n_points=len(rows),
            grouping="held-out scales",
            note="fewer than 3 held-out scales: all of their error ascribed to distance",
        )
    cal = estimate_error_model(rows[:, 0], rows[:, 1], rows[:, 2], rows[:, 3], noise_std=0.0, by="scale", grouping="held-out scales")
    return replace(cal, kappa=min(cal.kappa, cap)) if cal.kappa > cap else cal


def loss_interval(
    analysis: "SweepAnalysis", value: float, samples: np.ndarray, distance: float, level: float = 0.95
) -> tuple[float, float, float, dict[str, Any]]:
    """(value, lo, hi, details) of a loss predicted ``distance`` (hull, ln units) beyond the ladder, from its
    point ``value`` and bootstrap ``samples``: on the log scale, the bootstrap's variance plus the backtest's
    tau^2 + kappa^2 d^2, times the conformal multiplier, centred on the bias-corrected value (`_loss_error_model`);
    without an error model, the bootstrap's variance alone. Log terms keep the interval positive, and the
    samples enter by their spread only, so the interval always holds the value (samples of a penalty
    extrapolated off the ladder can all lie on one side of it)."""
    samples = np.asarray(samples, float)
    samples = samples[np.isfinite(samples) & (samples > 0)]
    boot = np.log(samples)[:, None] if len(samples) >= 10 else None
    if analysis.loss_error is None and boot is None:
        return value, math.nan, math.nan, {"kappa_per_unit": None, "widening": 0.0}
    cal = analysis.loss_error or Calibration(method="bootstrap", noise_std=0.0)
    d = distance if math.isfinite(distance) else 0.0
    centre, lo, hi = calibrated_interval(np.array([math.log(value)]), boot, np.array([d]), cal, level, observation=True)
    q = cal.quantile(level)
    if analysis.loss_error is None:
        return value, float(lo[0]), float(hi[0]), {"kappa_per_unit": None, "widening": 0.0}
    return (
        float(centre[0]),
        float(lo[0]),
        float(hi[0]),
        {
            "kappa_per_unit": cal.kappa,
            "extra_noise_log": cal.extra_noise,
            "bias_per_unit": cal.bias,
            "multiplier": q,
            "widening": q * cal.kappa * d,
            "backtest_points": cal.n_points,
        },
    )


def _optima_rows(laws: HparamLaws) -> pd.DataFrame | None:
    """The per-scale vertex losses the per-scale loss law is fitted on (at the laws' batch size)."""
    use = list(laws.loss_optima)
    if len(use) < 4:
        return None
    return pd.DataFrame(
        {
            "N": [o.scale["N"] for o in use],
            "D": [o.scale["D"] for o in use],
            "C": [_C(o.scale) for o in use],
            "loss": [o.loss_ for o in use],
        }
    )


def _joint_rows(land: JointLandscape) -> tuple[pd.DataFrame, np.ndarray] | None:
    """The landscape's optimum losses as loss-law rows with weights 1/SE^2 (relative), at the scales where the
    landscape identifies them; ``rows.attrs["left_out"]`` counts the others. Identified: a positive optimum
    loss with a standard error under 10% of it, and, at a scale that did not sweep the batch size, a tested
    batch size within 2 swept grid steps of the landscape's B* there (farther, the optimum over the batch
    size is the quadratic extrapolated, not measured). None with fewer than 4 identified scales."""
    use = []
    for s in land.scales:
        ok = s["L"] > 0 and math.isfinite(s["L_se"]) and s["L_se"] < 0.1 * s["L"]
        if ok and land.batch_vars is not None and not s.get("swept_b", True):
            ok = abs(math.log(s["batch"]) - float(land.ln_batch_opt(s))) <= _WINDOW * land.batch_step
        if ok:
            use.append(s)
    if len(use) < 4:
        return None
    rows = pd.DataFrame({"N": [s["N"] for s in use], "D": [s["D"] for s in use], "loss": [s["L"] for s in use]})
    rows["C"] = training_flops(rows["N"], rows["D"])
    rows.attrs["left_out"] = len(land.scales) - len(use)
    se = np.array([max(s["L_se"], 1e-6 * s["L"]) / s["L"] for s in use])
    w = 1 / se**2
    return rows, w / w.mean()
