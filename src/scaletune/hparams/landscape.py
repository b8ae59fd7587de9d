"""One loss landscape across scales: the optima as power laws, fitted on every run at once.

Per run i at scale s (N, D), learning rate lr and batch size B (tokens):

    loss_i = L_s + c(u) u^2 + c_b v^2,   u = ln lr - ln lr*(s, B),   v = ln B - ln B*(s)
    ln lr*(s, B) = t_0 + sum_v t_v ln v + g v          (v over ``lr_vars``, e.g. N and D)
    ln B*(s)     = p_0 + sum_v p_v ln v                (v over ``batch_vars``, e.g. D, or N and D)
    c(u) = c_above for u > 0 (rates above the optimum), c_below otherwise

with relative Gaussian noise (the seed-to-seed scatter, estimated from the residuals). ``L_s`` is a free
optimum loss per scale, so the loss law downstream is fitted on the model's optimum, with its standard
error, not on the best of noisy runs (no winner's curse). A scale whose best run sits at the edge of its
sweep (per-scale: unbracketed) still enters with its runs: they bound its optimum on one side (censored
information); such scales are counted in ``censored``, never dropped. The batch terms exist only where
some scale swept 3+ batch sizes.

Runs enter inside a window around each (scale, batch size) slice's best rate (2 grid steps either side)
and within 2 grid steps of the scale's best batch size: a quadratic describes a landscape near its
optimum, not the divergent far side.

Uncertainty: the asymptotic normal of the least-squares fit (``draws(bootstrap=0)``) or a residual
bootstrap over the fixed design (each replicate adds resampled residuals to the fitted values and refits).
With one scale and no variables this is the local landscape of that scale, used to score predictions
held out at it (`scaletune.hparams.select`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy.optimize import least_squares

from scaletune.errors import ScaletuneError
from scaletune.runtable import ok_runs

_WINDOW_STEPS = 2.05  # grid steps either side of a slice's best rate (and of a scale's best batch size)


def _step(values: np.ndarray) -> float:
    u = np.unique(np.round(values, 9))
    return float(np.median(np.diff(u))) if len(u) > 1 else math.log(2)


def prepare_runs(runs: pd.DataFrame, scale_cols: Sequence[str] = ("N", "D")) -> pd.DataFrame:
    """The ok runs inside each scale's window (see module docstring), with ``scale`` (an index), ``ln_lr``,
    ``ln_b`` and ``edge`` (True on scales whose best configuration sits at the edge of a swept axis)."""
    # positions below index rows: a concatenated table repeats labels
    df = ok_runs(runs.reset_index(drop=True)).copy()
    if "batch_size" not in df.columns:
        df["batch_size"] = 1.0
    df["loss"] = df["loss"].astype(float)
    df["ln_lr"] = np.log(df["lr"].astype(float))
    df["ln_b"] = np.log(df["batch_size"].astype(float))
    cols = [c for c in scale_cols if c in df.columns]
    df["scale"] = df.groupby(cols, sort=True).ngroup() if cols else 0
    # numpy below (pandas per group costs more than the fits downstream): config means, then each slice's window
    cfg = df.groupby(["scale", "ln_b", "ln_lr"], sort=True)["loss"].mean().reset_index()
    c_s, c_b, c_l, c_m = (cfg[c].to_numpy() for c in ("scale", "ln_b", "ln_lr", "loss"))
    r_s, r_b, r_l = (df[c].to_numpy() for c in ("scale", "ln_b", "ln_lr"))
    keep, edge = np.zeros(len(df), bool), {}
    for s in np.unique(c_s):
        here = c_s == s
        k = np.flatnonzero(here)[np.argmin(c_m[here])]
        b_best = c_b[k]
        bs = np.unique(c_b[here])
        b_step = _step(bs)
        swept_b = len(bs) >= 3
        at_edge = swept_b and (b_best in (bs.min(), bs.max()))
        for b in bs:
            if swept_b and abs(b - b_best) > _WINDOW_STEPS * b_step:
                continue
            sl = here & (c_b == b)
            lrs = c_l[sl]
            best = lrs[np.argmin(c_m[sl])]
            if b == b_best and best in (lrs.min(), lrs.max()):
                at_edge = True
            keep |= (r_s == s) & (r_b == b) & (np.abs(r_l - best) <= _WINDOW_STEPS * _step(lrs))
        edge[int(s)] = bool(at_edge)
    df = df[keep].copy()
    df["edge"] = df["scale"].map(edge)
    return df


@dataclass(frozen=True)
class JointLandscape:
    """A fitted landscape (module docstring). ``params`` by ``names``; ``cov`` their covariance (asymptotic);
    ``scales``: one dict per scale (its variables, ``L`` with ``L_se``, ``edge``, ``swept_b``, ``batch`` the
    median batch size of its runs); ``batch_step``: the ln step of the swept batch sizes; ``sigma``: relative
    residual std (the seed-level noise); ``censored``: scales entered with a one-sided (edge) sweep."""

    lr_vars: tuple[str, ...]
    batch_vars: tuple[str, ...] | None
    names: tuple[str, ...]
    params: np.ndarray
    cov: np.ndarray
    scales: tuple[dict[str, Any], ...]
    sigma: float
    n_runs: int
    censored: int
    boot: np.ndarray | None = field(default=None, repr=False)  # residual-bootstrap parameter draws
    bootstrap_kind: str = "asymptotic normal"
    batch_step: float = math.log(2)

    def _p(self, theta: np.ndarray, name: str) -> float | np.ndarray:
        return theta[..., self.names.index(name)]

    def ln_batch_opt(self, point: Mapping[str, float], theta: np.ndarray | None = None) -> Any:
        """ln B* at ``point`` (one value, or one per row of ``theta`` draws)."""
        if self.batch_vars is None:
            raise ScaletuneError("the landscape has no batch-size terms (batch size not swept)")
        theta = self.params if theta is None else theta
        out = self._p(theta, "p_0")
        for v in self.batch_vars:
            out = out + self._p(theta, f"p_{v}") * math.log(point[v])
        return out

    def ln_lr_opt(self, point: Mapping[str, float], batch: float | None = None, theta: np.ndarray | None = None) -> Any:
        """ln lr* at ``point``, at batch size ``batch`` (tokens; default: the optimal one)."""
        theta = self.params if theta is None else theta
        out = self._p(theta, "t_0")
        for v in self.lr_vars:
            out = out + self._p(theta, f"t_{v}") * math.log(point[v])
        if batch is not None and self.batch_vars is not None:
            out = out + self._p(theta, "g") * (math.log(batch) - self.ln_batch_opt(point, theta))
        return out

    def penalty(self, point: Mapping[str, float], lr: float | None, batch: float | None, theta: np.ndarray | None = None) -> Any:
        """Loss above the optimum (nats) at (lr, batch); ``lr=None``: the lr optimised at that batch size;
        ``batch=None``: the optimal batch size."""
        theta = self.params if theta is None else theta
        pen = 0.0
        if batch is not None and self.batch_vars is not None:
            v = math.log(batch) - self.ln_batch_opt(point, theta)
            pen = pen + np.exp(self._p(theta, "ln_c_b")) * v**2
        if lr is not None:
            u = math.log(lr) - self.ln_lr_opt(point, batch, theta)
            c = np.where(u > 0, np.exp(self._p(theta, "ln_c_above")), np.exp(self._p(theta, "ln_c_below")))
            pen = pen + c * u**2
        return pen

    @property
    def asymmetry(self) -> float:
        """c_above / c_below: how much steeper the loss rises above the optimal rate than below it."""
        return float(np.exp(self._p(self.params, "ln_c_above") - self._p(self.params, "ln_c_below")))

    def draws(self, n: int = 200, seed: int = 0) -> np.ndarray:
        """Parameter draws: the residual bootstrap when it was run, else the asymptotic normal."""
        if self.boot is not None and len(self.boot):
            return self.boot
        rng = np.random.default_rng(seed)
        cov = 0.5 * (self.cov + self.cov.T)
        return np.asarray(rng.multivariate_normal(self.params, cov, size=n, method="svd"), float)

    def optimum_loss(self, s: int) -> tuple[float, float]:
        return self.scales[s]["L"], self.scales[s]["L_se"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "lr_vars": list(self.lr_vars),
            "batch_vars": None if self.batch_vars is None else list(self.batch_vars),
            "params": dict(zip(self.names, self.params.tolist())),
            "se": dict(zip(self.names, np.sqrt(np.clip(np.diag(self.cov), 0, None)).tolist())),
            "asymmetry_above_below": self.asymmetry,
            "sigma_relative": self.sigma,
            "runs": self.n_runs,
            "scales": list(self.scales),
            "censored": self.censored,
            "bootstrap": self.bootstrap_kind,
        }


def _identified(prep: pd.DataFrame, var: str, sub: pd.DataFrame | None = None) -> bool:
    d = prep if sub is None else sub
    return var in d.columns and d[var].nunique() >= 2


def fit_landscape(
    runs: pd.DataFrame,
    *,
    lr_vars: Sequence[str] | None = None,
    batch_vars: Sequence[str] | None | str = "auto",
    scale_cols: Sequence[str] = ("N", "D"),
    bootstrap: int = 0,
    seed: int = 0,
    prepared: pd.DataFrame | None = None,
) -> JointLandscape:
    """Fit the joint landscape to a run table (columns lr, loss, batch_size, N, D; status optional).

    ``lr_vars``: the variables of ln lr* (default: those of N, D that vary across scales); ``batch_vars``:
    those of ln B* ("auto": D where the swept scales vary it; None: no batch terms). ``bootstrap`` > 0 runs
    a residual bootstrap over the fixed design (``bootstrap`` refits); 0 leaves the asymptotic normal.
    """
    prep = prepare_runs(runs, scale_cols) if prepared is None else prepared
    if len(prep) < 4:
        raise ScaletuneError(f"landscape: {len(prep)} runs near the optima; need more")
    scales = sorted(prep["scale"].unique())
    S = len(scales)
    sidx = prep["scale"].map({s: k for k, s in enumerate(scales)}).to_numpy()
    swept = [s for s, g in prep.groupby("scale") if g["ln_b"].nunique() >= 3]
    has_b = bool(swept) and batch_vars is not None
    per_scale = prep.groupby("scale").first()
    if lr_vars is None:
        lr_vars = tuple(v for v in scale_cols if _identified(per_scale, v))
    lr_vars = tuple(lr_vars)
    bvars: tuple[str, ...] = ()
    if has_b:
        sw = per_scale.loc[swept]
        bvars = tuple(v for v in ("D",) if _identified(sw, v)) if batch_vars == "auto" else tuple(batch_vars or ())
        for v in bvars:
            if not _identified(sw, v):
                raise ScaletuneError(f"landscape: B*({', '.join(bvars)}) needs batch sweeps at 2+ values of {v}")
    names = [f"L_{k}" for k in range(S)] + ["t_0"] + [f"t_{v}" for v in lr_vars]
    if has_b:
        names += ["g", "p_0"] + [f"p_{v}" for v in bvars] + ["ln_c_b"]
    names += ["ln_c_below", "ln_c_above"]
    X = {v: np.log(prep[v].to_numpy(float)) for v in set(lr_vars) | set(bvars)}
    ln_lr, ln_b, y = prep["ln_lr"].to_numpy(float), prep["ln_b"].to_numpy(float), prep["loss"].to_numpy(float)
    ix = {n: i for i, n in enumerate(names)}

    def model(th: np.ndarray) -> np.ndarray:
        m_lr = th[ix["t_0"]] + sum(th[ix[f"t_{v}"]] * X[v] for v in lr_vars)
        pen = 0.0
        if has_b:
            m_b = th[ix["p_0"]] + sum(th[ix[f"p_{v}"]] * X[v] for v in bvars)
            vv = ln_b - m_b
            m_lr = m_lr + th[ix["g"]] * vv
            pen = np.exp(th[ix["ln_c_b"]]) * vv**2
        u = ln_lr - m_lr
        c = np.where(u > 0, np.exp(th[ix["ln_c_above"]]), np.exp(th[ix["ln_c_below"]]))
        return np.asarray(th[:S][sidx] + c * u**2 + pen, float)

    # Start: per-slice best rates regressed on the variables; curvature a fraction of the loss.
    x0 = np.zeros(len(names))
    best = prep.loc[prep.groupby(["scale", "ln_b"])["loss"].idxmin()]
    A = np.column_stack([np.ones(len(best))] + [np.log(best[v].to_numpy(float)) for v in lr_vars])
    x0[ix["t_0"] : ix["t_0"] + 1 + len(lr_vars)] = np.linalg.lstsq(A, best["ln_lr"].to_numpy(float), rcond=None)[0]
    x0[:S] = prep.groupby("scale")["loss"].min().to_numpy(float)
    c0 = math.log(0.01 * float(np.median(y)))
    x0[ix["ln_c_below"]] = x0[ix["ln_c_above"]] = c0
    if has_b:
        bb = prep.loc[prep[prep["scale"].isin(swept)].groupby("scale")["loss"].idxmin()]
        B = np.column_stack([np.ones(len(bb))] + [np.log(bb[v].to_numpy(float)) for v in bvars])
        x0[ix["p_0"] : ix["p_0"] + 1 + len(bvars)] = np.linalg.lstsq(B, bb["ln_b"].to_numpy(float), rcond=None)[0]
        x0[ix["ln_c_b"]] = c0 - math.log(2)
    lo = np.full(len(names), -np.inf)
    hi = np.full(len(names), np.inf)
    for name in ("ln_c_below", "ln_c_above", "ln_c_b"):
        if name in ix:
            lo[ix[name]], hi[ix[name]] = c0 - 12, c0 + 8

    def solve(target: np.ndarray, start: np.ndarray) -> Any:
        return least_squares(lambda th: (target - model(th)) / target, start, bounds=(lo, hi), x_scale="jac", method="trf")

    res = solve(y, x0)
    n, p = len(y), len(names)
    dof = max(n - p, 1)
    sigma = float(np.sqrt(np.sum(res.fun**2) / dof))
    J = res.jac
    cov = np.linalg.pinv(J.T @ J) * sigma**2
    fitted = model(res.x)
    boot, kind = None, "asymptotic normal"
    if bootstrap > 0:
        rng = np.random.default_rng(seed)
        rel = res.fun - res.fun.mean()
        boot = np.array([solve(fitted * (1 - rng.choice(rel, n)), res.x).x for _ in range(bootstrap)])
        kind = f"residual bootstrap over the fixed design ({bootstrap} refits)"
    se = np.sqrt(np.clip(np.diag(cov), 0, None))
    recs = []
    for k, s in enumerate(scales):
        row = per_scale.loc[s]
        rec = {v: float(row[v]) for v in scale_cols if v in per_scale.columns}
        L_se = float(np.std(boot[:, k])) if boot is not None else float(se[k])
        rec.update(
            L=float(res.x[k]),
            L_se=L_se,
            edge=bool(row["edge"]),
            runs=int((sidx == k).sum()),
            swept_b=bool(s in swept),
            batch=float(np.exp(np.median(ln_b[sidx == k]))),
        )
        recs.append(rec)
    return JointLandscape(
        lr_vars=lr_vars,
        batch_vars=bvars if has_b else None,
        names=tuple(names),
        params=res.x,
        cov=cov,
        scales=tuple(recs),
        sigma=sigma,
        n_runs=n,
        censored=sum(bool(r["edge"]) for r in recs),
        boot=boot,
        bootstrap_kind=kind,
        batch_step=_step(prep.loc[prep["scale"].isin(swept), "ln_b"].to_numpy(float)) if has_b else math.log(2),
    )
