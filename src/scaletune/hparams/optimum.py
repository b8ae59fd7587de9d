"""The optimal learning rate (and batch size) at one scale, estimated robustly from a sweep.

Not the argmin of a coarse grid. At each scale (by default each distinct (N, D)):

1. Runs of the same configuration (lr, batch size) are averaged over seeds.
2. A convex quadratic in x = ln(lr) (and y = ln(batch_size) when the sweep has at least three batch
   sizes) is fitted to the runs near the best configuration: the k configurations nearest to it in
   log space (k = 5 in 1-D, i.e. two grid steps either side, and 9 in 2-D, a 3x3 block; half the
   configurations on finer or scattered sweeps). The vertex is
   the optimum; the fitted curve evaluated at the tested configurations is the *smoothed* loss.
3. The near-optimal band: tested configurations whose smoothed loss is within ``band`` (default 0.25%,
   as in DeepSeek LLM 2024 and StepLaw 2025) of the best smoothed loss.
4. Bracketing check: the optimum is only trusted when the fit window holds ok runs on both sides of the
   best configuration along every swept axis and the fitted curve is convex with its vertex inside them.
   Otherwise the estimate is flagged (``bracketed = False``), never silently used by the laws, and the
   next rates to try are proposed (continuing the sweep's geometric spacing beyond the open edge, or
   bisecting the gap towards the lowest diverged rate when the optimum sits at the stability edge).
5. Intervals: percentile bootstrap over runs (resampled with replacement within the scale).

Diverged / failed / pruned runs are counted and shown, never fitted. Losses are natural-log nats per token
(whatever the run table holds), learning rates as the run table gives them (under muP: the base rate),
batch sizes in tokens.
"""

from __future__ import annotations

import math
import textwrap
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import numpy.typing as npt
import pandas as pd

from scaletune.errors import ScaletuneError
from scaletune.results import format_interval, format_scale, percentile_interval
from scaletune.runtable import ok_runs, require_columns

DEFAULT_BAND = 0.0025  # 0.25%: DeepSeek LLM (2024) and StepLaw (Li et al. 2025)
SCALE_COLUMNS = ("N", "D")


@dataclass(frozen=True)
class Optimum:
    """Optimal hyperparameters at one scale. Learned values end in ``_``; intervals are 95% bootstrap.

    ``lr_``/``batch_size_`` are the vertex of the convex fit (batch size in tokens; ``None`` when the
    sweep did not vary it), ``loss_`` the fitted loss there (nats/token). ``bracketed`` is False when the
    sweep does not enclose the minimum; then ``message`` says why and ``next_lrs``/``next_batch_sizes``
    propose what to run next.
    """

    scale: dict[str, float]
    lr_: float
    lr_interval: tuple[float, float]
    loss_: float
    loss_interval: tuple[float, float]
    batch_size_: float | None = None
    batch_size_interval: tuple[float, float] | None = None
    band_lr: tuple[float, float] = (math.nan, math.nan)  # tested rates inside the near-optimal band
    band_batch_size: tuple[float, float] | None = None
    band: float = DEFAULT_BAND
    best_lr: float = math.nan  # best tested configuration (seed-averaged)
    best_batch_size: float | None = None
    best_loss: float = math.nan
    bracketed: bool = True
    message: str = ""
    next_lrs: tuple[float, ...] = ()
    next_batch_sizes: tuple[float, ...] = ()
    n_runs: int = 0
    n_ok: int = 0
    n_excluded: int = 0  # diverged / failed / pruned: shown, not fitted
    n_fitted: int = 0  # runs inside the fit window
    bootstrap: int = 0
    bootstrap_failed: float = 0.0  # fraction of resamples without a convex vertex
    # Per axis: an lr optimum can be trusted while the batch size was swept too narrowly (its lr then
    # comes from the 1-D fit at the best batch size); laws of each quantity use the scales bracketed in it.
    lr_bracketed: bool = True
    batch_bracketed: bool | None = None  # None: batch size not swept in 2-D
    extra: dict[str, Any] = field(default_factory=dict)  # other constant columns of the scale (param, schedule, ...)
    # Bootstrap vertices (ln lr, ln batch, loss) per resample, NaN where a resample failed; the law fits
    # draw from them so that the sweep's noise propagates into the laws' intervals.
    samples: np.ndarray | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("samples")
        return d

    def __repr__(self) -> str:
        batch = "" if self.batch_size_ is None else f", batch {self.batch_size_:.4g} tokens"
        return (
            f"<Optimum {format_scale(self.scale) or 'one scale'}: lr* {format_interval(self.lr_, *self.lr_interval, digits=3)}{batch}, "
            f"loss {self.loss_:.4f}, {'bracketed' if self.bracketed else 'NOT bracketed'}>"
        )

    def summary(self) -> str:
        """The optimum with its 95% bootstrap intervals, the near-optimal band and the bracketing check."""
        rows = [
            ("lr*", format_interval(self.lr_, *self.lr_interval)),
            ("loss* (nats/token)", format_interval(self.loss_, *self.loss_interval)),
        ]
        if self.batch_size_ is not None:
            iv = self.batch_size_interval
            rows.append(
                ("batch* (tokens)", f"{self.batch_size_:.4g} (not swept)" if iv is None else format_interval(self.batch_size_, *iv))
            )
        rows += [
            (f"band lr ({self.band:.2%})", f"{self.band_lr[0]:.4g} - {self.band_lr[1]:.4g}"),
            ("runs ok / excluded", f"{self.n_ok} / {self.n_excluded} ({self.n_fitted} in the fit window)"),
            ("bootstrap", f"{self.bootstrap} resamples, {self.bootstrap_failed:.0%} without a vertex"),
            ("bracketed", "yes" if self.bracketed else "no"),
        ]
        scale = ", ".join(f"{k}={v:.4g}" for k, v in self.scale.items())
        lines = [f"Optimum at {scale or 'one scale'} (95% intervals)"] + [f"{k:<22} {v}" for k, v in rows]
        if not self.bracketed:
            lines.append(textwrap.fill(f"why: {self.message}", 80))
            if self.next_lrs:
                lines.append("next rates to try: " + ", ".join(f"{r:.3g}" for r in self.next_lrs))
        return "\n".join(lines)

    def usable(self, response: str) -> bool:
        """Whether this scale's optimum of ``response`` (lr | batch_size) may enter a law."""
        if response == "lr":
            return self.lr_bracketed
        return bool(self.batch_bracketed) and self.batch_size_interval is not None


@dataclass
class _Fit:
    x0: float  # vertex in ln(lr)
    y0: float | None  # vertex in ln(batch) (2-D only)
    loss0: float
    convex: bool
    inside: bool  # vertex inside the tested range
    n: int
    predict: Callable[..., Any]  # (x, y) -> smoothed loss (y: None in 1-D)


def _ok_mask(df: pd.DataFrame) -> npt.NDArray[np.bool_]:
    """Which rows are runs that count (`scaletune.runtable.ok_runs`), by position."""
    ok = np.zeros(len(df), bool)
    ok[ok_runs(df.reset_index(drop=True)).index] = True
    return ok


def _window(pts: np.ndarray, best: int, k: int) -> np.ndarray:
    """Indices of the k configurations (rows of ``pts``, log coordinates) nearest the best one.

    Each axis is measured in units of its typical grid step, so that a 2x step in lr and in batch size
    weigh the same; ties at the k-th distance are kept (a grid's 3x3 block stays whole).
    """
    steps = []
    for j in range(pts.shape[1]):
        u = np.unique(np.round(pts[:, j], 9))
        steps.append(np.median(np.diff(u)) if len(u) > 1 else 1.0)
    d = np.sqrt((((pts - pts[best]) / np.asarray(steps)) ** 2).sum(axis=1))
    kth = np.sort(d)[min(k, len(d)) - 1]
    return np.flatnonzero(d <= kth + 1e-9)


def _quadratic(x: np.ndarray, y: np.ndarray | None, loss: np.ndarray) -> _Fit | None:
    """Least-squares quadratic in (x[, y]); None when under-determined."""
    if y is None:
        if len(np.unique(np.round(x, 9))) < 3:
            return None
        A = np.column_stack([np.ones_like(x), x, x * x])
        c, *_ = np.linalg.lstsq(A, loss, rcond=None)
        convex = c[2] > 0
        x0 = -c[1] / (2 * c[2]) if convex else x[np.argmin(loss)]

        def f1(xx: Any, yy: Any = None) -> Any:
            return c[0] + c[1] * xx + c[2] * xx * xx

        return _Fit(x0, None, float(f1(x0)), bool(convex), bool(x.min() <= x0 <= x.max()), len(x), f1)
    if len(np.unique(np.round(x, 9))) < 3 or len(np.unique(np.round(y, 9))) < 3 or len(x) < 6:
        return None
    A = np.column_stack([np.ones_like(x), x, y, x * x, y * y, x * y])
    c, *_ = np.linalg.lstsq(A, loss, rcond=None)
    H = np.array([[2 * c[3], c[5]], [c[5], 2 * c[4]]])

    def f(xx: Any, yy: Any) -> Any:
        return c[0] + c[1] * xx + c[2] * yy + c[3] * xx * xx + c[4] * yy * yy + c[5] * xx * yy

    convex = bool(np.all(np.linalg.eigvalsh(H) > 0))
    if convex:
        x0, y0 = np.linalg.solve(H, -np.array([c[1], c[2]]))
    else:
        i = int(np.argmin(loss))
        x0, y0 = x[i], y[i]
    inside = bool(x.min() <= x0 <= x.max() and y.min() <= y0 <= y.max())
    return _Fit(float(x0), float(y0), float(f(x0, y0)), convex, inside, len(x), f)


def _configs(pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct configurations of runs (rows of log coordinates) and each run's configuration index."""
    uniq, inv = np.unique(np.round(pts, 9), axis=0, return_inverse=True)
    return uniq, inv.ravel()


def _fit_scale(pts: np.ndarray, loss: np.ndarray, k: int | None) -> tuple[_Fit | None, np.ndarray, np.ndarray, np.ndarray]:
    """Fit one scale's ok runs (``pts`` = ln lr[, ln batch] per run).

    Returns (fit, configurations, their seed-averaged loss, boolean mask of configurations in the window).
    """
    cfg, inv = _configs(pts)
    mean = np.bincount(inv, loss, len(cfg)) / np.bincount(inv, None, len(cfg))
    win = np.zeros(len(cfg), bool)
    win[_window(cfg, int(np.argmin(mean)), k or max(9 if pts.shape[1] == 2 else 5, -(-len(cfg) // 2)))] = True
    rows = win[inv]
    y = pts[rows, 1] if pts.shape[1] == 2 else None
    return _quadratic(pts[rows, 0], y, loss[rows]), cfg, mean, win


def _geometric_step(values: np.ndarray) -> float:
    u = np.unique(values)
    return float(np.exp(np.median(np.diff(np.log(u))))) if len(u) > 1 else 2.0


def _propose(values: np.ndarray, best: float, bad_above: float | None, side: str, n: int = 3) -> tuple[str, tuple[float, ...]]:
    """Next values for an axis whose minimum is not enclosed on ``side`` (above | below) of the best value."""
    r = _geometric_step(np.unique(values))
    if side == "above":
        if bad_above is not None and bad_above > best:
            # The optimum is at the stability edge: bisect (geometrically) towards the first diverged value.
            ratio = bad_above / best
            return "above", tuple(float(best * ratio ** (i / (n + 1))) for i in range(1, n + 1))
        return "above", tuple(float(best * r**i) for i in range(1, n + 1))
    return "below", tuple(float(best / r**i) for i in range(1, n + 1))


def find_optimum(
    runs: pd.DataFrame,
    *,
    band: float = DEFAULT_BAND,
    bootstrap: int = 200,
    seed: int = 0,
    window: int | None = None,
    scale: dict[str, float] | None = None,
) -> Optimum:
    """Estimate the optimum of one scale's sweep (columns ``lr``, ``loss``; optional ``batch_size``, ``status``).

    ``band`` is the near-optimal tolerance as a fraction of the best smoothed loss (0.0025 = 0.25%);
    ``bootstrap`` the number of resamples of runs for the intervals; ``window`` the number of configurations
    around the best used by the quadratic (default 5 in 1-D and 9 in 2-D, or half the configurations when
    the sweep has more than twice that).
    """
    require_columns(runs, ["lr", "loss"])
    if not 0 <= band < 1:
        raise ScaletuneError(f"near-optimal band {band!r} must be a fraction in [0, 1) (0.0025 = 0.25%)")
    runs = runs.reset_index(drop=True)
    ok_mask = _ok_mask(runs)
    for col in ("lr", "batch_size"):
        if col in runs.columns:
            v = pd.to_numeric(runs[col], errors="coerce").to_numpy(float)
            bad = ok_mask & ~(np.isfinite(v) & (v > 0))
            if bad.any():
                i = int(np.argmax(bad))
                raise ScaletuneError(
                    f"{runs.attrs.get('source', 'table')}: column {col!r} has a non-positive or missing value {runs[col].iloc[i]!r} in a run with status ok"
                )
    ok = runs[ok_mask].copy()
    ok["lr"] = ok["lr"].astype(float)
    ok["loss"] = ok["loss"].astype(float)
    has_batch = "batch_size" in ok.columns and ok["batch_size"].nunique() > 1
    if has_batch:
        ok["batch_size"] = ok["batch_size"].astype(float)
    two_d = has_batch and ok["batch_size"].nunique() >= 3
    scale = dict(scale or {})
    n_excl = int((~ok_mask).sum())
    label = format_scale(scale) or "this scale"
    if ok["lr"].nunique() < 3:
        raise ScaletuneError(
            f"{label}: need ok runs at 3 or more distinct learning rates to locate an optimum "
            f"(have {ok['lr'].nunique()} ok, {n_excl} diverged/failed)"
        )
    if has_batch and not two_d:
        # Two batch sizes: fit lr at the better one (a quadratic in batch needs three).
        per_b = ok.groupby("batch_size")["loss"].min()
        ok = ok[ok["batch_size"] == per_b.idxmin()]
        if ok["lr"].nunique() < 3:
            raise ScaletuneError(f"{label}: the best batch size has fewer than 3 learning rates")

    pts = np.log(ok[["lr", "batch_size"] if two_d else ["lr"]].to_numpy(float))
    loss = ok["loss"].to_numpy(float)
    fit, cfg_pts, mean, win = _fit_scale(pts, loss, window)
    # The tested values exactly as the table has them (not exp(log(.))), so that band and best compare equal.
    _, inv = _configs(pts)
    first = np.full(len(cfg_pts), len(inv))
    np.minimum.at(first, inv, np.arange(len(inv)))
    cfg_lr = ok["lr"].to_numpy(float)[first]
    cfg_b = ok["batch_size"].to_numpy(float)[first] if two_d else None
    ibest = int(np.argmin(mean))
    best_lr = float(cfg_lr[ibest])
    best_b = float(cfg_b[ibest]) if cfg_b is not None else None
    if not two_d and "batch_size" in ok.columns and ok["batch_size"].nunique() == 1:
        best_b = float(ok["batch_size"].iloc[0])

    # Smoothed loss: the fitted curve at configurations inside the window, the seed mean elsewhere.
    smooth = mean.copy()
    if fit is not None:
        smooth = np.where(win, fit.predict(cfg_pts[:, 0], cfg_pts[:, 1] if two_d else None), mean)
    in_band = smooth <= smooth.min() * (1 + band)
    band_lr = (float(cfg_lr[in_band].min()), float(cfg_lr[in_band].max()))
    band_b = (float(cfg_b[in_band].min()), float(cfg_b[in_band].max())) if cfg_b is not None else None

    # Bracketing, per axis.
    problems: list[str] = []
    next_lrs: tuple[float, ...] = ()
    next_bs: tuple[float, ...] = ()
    bad_lrs = pd.to_numeric(runs.loc[~ok_mask, "lr"], errors="coerce").to_numpy(float)
    bad_lrs = bad_lrs[bad_lrs > best_lr]
    first_bad = float(bad_lrs.min()) if len(bad_lrs) else None

    # An axis is bracketed when the fit window holds tested values on both sides of the best one (on a
    # grid: its neighbours; for scattered samples, e.g. QMC, the nearest configurations).
    def open_side(j: int) -> str | None:
        vals, best = cfg_pts[win, j], cfg_pts[ibest, j]
        if not (vals < best - 1e-9).any():
            return "below"
        if not (vals > best + 1e-9).any():
            return "above"
        return None

    side = open_side(0)
    lr_open = side is not None
    if side is not None:
        _, next_lrs = _propose(cfg_lr, best_lr, first_bad if side == "above" else None, side)
        if side == "above" and first_bad is not None:
            problems.append(
                f"best lr {best_lr:.3g} is the largest stable rate (next, {first_bad:.3g}, diverged): optimum at the stability edge"
            )
        else:
            problems.append(f"best lr {best_lr:.3g} is at the {'top' if side == 'above' else 'bottom'} of the sweep")
    batch_open = False
    if cfg_b is not None and best_b is not None:  # two_d
        side = open_side(1)
        batch_open = side is not None
        if side is not None:
            _, next_bs = _propose(cfg_b, best_b, None, side)
            problems.append(f"best batch size {best_b:.3g} tokens is at the {'top' if side == 'above' else 'bottom'} of the sweep")
    if fit is None:
        problems.append("too few distinct values near the best configuration for a quadratic fit")
    elif not fit.convex:
        problems.append("the loss is not convex around the best configuration (flat or noisy)")
    elif not fit.inside:
        problems.append("the fitted vertex lies outside the tested range")
    bracketed = not problems
    lr_bracketed = bracketed
    batch_bracketed = bracketed if two_d else None

    if fit is not None and fit.convex and fit.inside:
        lr0, b0, loss0 = math.exp(fit.x0), (math.exp(fit.y0) if fit.y0 is not None else best_b), fit.loss0
    else:  # fall back to the best tested configuration, flagged as unbracketed
        lr0, b0, loss0 = best_lr, best_b, float(mean[ibest])
    sub = None
    if best_b is not None and two_d and batch_open and not lr_open:
        # The batch size escaped its sweep but the lr did not: the lr optimum of the 1-D sweep at the best
        # batch size is still usable (flagged per axis), the 2-D vertex is not.
        at_best = ok[np.isclose(ok["batch_size"].to_numpy(float), best_b)]
        if at_best["lr"].nunique() >= 3:
            sub = find_optimum(at_best, band=band, bootstrap=bootstrap, seed=seed, window=window, scale=scale)
            lr_bracketed = sub.bracketed
            lr0, loss0, b0 = sub.lr_, sub.loss_, best_b

    # Bootstrap over runs: resample ok runs with replacement, redo window + fit.
    rng = np.random.default_rng(seed)
    boot_arr = np.full((bootstrap, 3), np.nan)
    for i in range(bootstrap):
        idx = rng.integers(0, len(loss), len(loss))
        bf = _fit_scale(pts[idx], loss[idx], window)[0]
        if bf is not None and bf.convex and bf.inside:
            boot_arr[i] = (bf.x0, bf.y0 if two_d else np.nan, bf.loss0)
    good = np.isfinite(boot_arr[:, 0])
    failed = float(1 - good.mean()) if bootstrap else 0.0

    def interval(col: int, center: float, log: bool) -> tuple[float, float]:
        if not bootstrap or good.sum() < 10:
            return (math.nan, math.nan)
        lo, hi = percentile_interval(boot_arr[good, col])
        lo, hi = (math.exp(lo), math.exp(hi)) if log else (lo, hi)
        return (float(min(lo, center)), float(max(hi, center)))

    message = "; ".join(problems) if problems else "bracketed"
    if bootstrap and failed > 0.2 and bracketed:  # still bracketed, but the interval rests on fewer resamples
        message += f" (warning: {failed:.0%} of bootstrap resamples have no convex vertex inside the sweep)"
    extra = {}
    for col in ("param", "schedule", "warmup", "seq_len", "width", "depth", "N_nonembed", "C"):
        if col in ok.columns and ok[col].nunique(dropna=False) == 1:
            v = ok[col].iloc[0]
            extra[col] = v.item() if hasattr(v, "item") else v
    return Optimum(
        scale=scale,
        lr_=float(lr0),
        lr_interval=sub.lr_interval if sub is not None else interval(0, lr0, True),
        loss_=float(loss0),
        loss_interval=sub.loss_interval if sub is not None else interval(2, loss0, False),
        batch_size_=None if b0 is None else float(b0),
        batch_size_interval=interval(1, b0, True) if two_d and b0 is not None else None,
        band_lr=band_lr,
        band_batch_size=band_b,
        band=band,
        best_lr=best_lr,
        best_batch_size=best_b,
        best_loss=float(mean[ibest]),
        bracketed=bracketed,
        message=message,
        next_lrs=tuple(next_lrs),
        next_batch_sizes=tuple(next_bs),
        n_runs=len(runs),
        n_ok=int(ok_mask.sum()),
        n_excluded=n_excl,
        n_fitted=fit.n if fit is not None else 0,
        bootstrap=bootstrap,
        bootstrap_failed=failed,
        extra=extra,
        samples=sub.samples if sub is not None else boot_arr,
        lr_bracketed=lr_bracketed,
        batch_bracketed=batch_bracketed,
    )


def scale_columns(df: pd.DataFrame, by: Iterable[str] | None = None) -> list[str]:
    """The columns that define a scale: ``by`` if given, else ``rung`` for a study's export (its runs may
    differ slightly in D when the batch size does not divide the token budget), else whichever of N, D exist."""
    if by is not None:
        cols = list(by)
        require_columns(df, cols)
        return cols
    if "rung" in df.columns:
        return ["rung"]
    cols = [c for c in SCALE_COLUMNS if c in df.columns]
    if not cols:
        require_columns(df, ["N"])
    return cols


def find_optima(
    df: pd.DataFrame,
    *,
    by: Iterable[str] | None = None,
    band: float = DEFAULT_BAND,
    bootstrap: int = 200,
    seed: int = 0,
    window: int | None = None,
    min_lrs: int = 3,
) -> list[Optimum]:
    """One `Optimum` per scale (distinct values of ``by``; see `scale_columns`), in the table's scale order.

    The scale of each optimum holds the grouping columns plus the median of N, D (and C) over its runs
    where the table has them. Scales with fewer than ``min_lrs`` distinct ok learning rates are skipped
    (they cannot locate an optimum); an empty result raises.
    """
    require_columns(df, ["lr", "loss"])
    cols = scale_columns(df, by)
    out = []
    for i, (key, group) in enumerate(df.groupby(cols, sort=True)):
        key = key if isinstance(key, tuple) else (key,)
        scale = {c: float(v) for c, v in zip(cols, key)}
        for c in SCALE_COLUMNS:
            if c not in scale and c in group.columns:
                values = pd.to_numeric(group[c], errors="coerce")
                if values.notna().any():
                    scale[c] = float(values.median())
        if group[_ok_mask(group)]["lr"].nunique() < min_lrs:
            continue
        group.attrs.update(df.attrs)
        out.append(find_optimum(group, band=band, bootstrap=bootstrap, seed=seed + i, window=window, scale=scale))
    if not out:
        raise ScaletuneError(
            f"{df.attrs.get('source', 'table')}: no scale has ok runs at {min_lrs}+ distinct learning rates (scales by {', '.join(cols)})"
        )
    return out


def optima_frame(optima: Sequence[Optimum]) -> pd.DataFrame:
    """A table of optima, one row per scale (intervals as ``*_lo``/``*_hi``), for printing and law fits."""
    rows = []
    for o in optima:
        row: dict[str, Any] = {**o.scale, **o.extra}
        for name, value, iv in (
            ("lr", o.lr_, o.lr_interval),
            ("batch_size", o.batch_size_, o.batch_size_interval),
            ("loss", o.loss_, o.loss_interval),
        ):
            lo, hi = iv or (math.nan, math.nan)  # no interval: a batch size that was not swept
            row.update({name: value, f"{name}_lo": lo, f"{name}_hi": hi})
        row.update(band_lr_lo=o.band_lr[0], band_lr_hi=o.band_lr[1])
        row.update({k: getattr(o, k) for k in ("best_lr", "best_loss", "bracketed", "message", "n_ok", "n_excluded")})
        rows.append(row)
    return pd.DataFrame(rows)
