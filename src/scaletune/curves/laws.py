"""Loss-curve laws under learning-rate schedules, vectorised over steps (numpy only).

A curve has the rate of every update, ``lrs[0..]`` (0-indexed as in `scaletune.schedules`), and a warm-up of
``W`` steps. A loss logged at step ``s`` follows ``s`` completed updates (`scaletune.train.run_lm` logs so;
tokens = s * batch size), i.e. the rates ``lrs[0..s-1]``; with ``t = s - 1`` it is predicted from

- the learning-rate area   ``S(t) = sum_{tau=0..t} lrs[tau]``  (the paper's ``S1(t) + S_W``);
- the area from step k     ``S_k(t) = sum_{tau=k..t} lrs[tau]``.

Laws (losses in nats per token, natural log everywhere):

- ``multipower`` (Luo et al. 2025, arXiv 2503.12811):
  ``L(t) = L0 + A S(t)^-alpha - B sum_{k=1..t} (lrs[k-1] - lrs[k]) G(lrs[k]^-gamma S_k(t))``,
  ``G(x) = 1 - (C x + 1)^-beta``. The sum runs over the warm-up too, where the rising rate counts as a
  negative drop: that is the convention of the published fits (with it, the published 25M parameters give
  R2 0.9988 on the published test curves; summing only after warm-up shifts every loss by about 0.1).
- ``annealing`` (Tissue et al. 2024, arXiv 2408.11029): ``L = L0 + A S(t)^-alpha - C S2(t)`` with
  ``S2(t) = sum_{tau<=t} m_tau``, ``m_tau = lam m_{tau-1} + (lrs[tau-1] - lrs[tau])`` over the steps after
  warm-up (Tissue et al. count warm-up at the peak rate, so it adds no annealing). ``lam`` (about 0.999)
  is chosen from a grid by the fitter, not by gradient.
- ``power``: ``L = L0 + A s^-alpha`` in steps ``s`` (>= 1); for constant-rate curves, it ignores the schedule.

Each law maps natural parameters to predictions *and* their Jacobian, so fits use exact gradients.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.signal import lfilter

from scaletune.errors import ScaletuneError

# Groups of rate drops in the multipower sum. Seen from an evaluation step t, the NEAR newest drops are
# summed one by one (exactly); older ones in groups whose width grows geometrically by RATIO, each replaced
# by its drop-weighted mean argument. G is smooth in log-distance, so this costs O(log t) per point instead
# of O(t). Within the warm-up the rate itself changes by orders of magnitude, so warm-up groups are also cut
# at steps growing geometrically (by WARMUP_RATIO) from step 1. Tests
# compare with the term-by-term sum: the difference is below 3e-5 nats of loss.
NEAR = 16
RATIO = 1.15
WARMUP_RATIO = 1.15
CHUNK = 1024  # evaluation points per block


def _geometric(n: int, start: int, ratio: float) -> np.ndarray:
    d = [float(i) for i in range(start + 1)]
    while d[-1] < n:
        d.append(max(d[-1] + 1, np.ceil(d[-1] * ratio)))
    return np.asarray(d, dtype=np.int64)


def _group_edges(t: np.ndarray, warmup: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per evaluation point, the bounds (lo, hi] of each group of drops k (descending, covering 1..t)."""
    edges = np.clip(t[:, None] - _geometric(n, NEAR, RATIO)[None, :], 0, None)
    if warmup > 1:
        cuts = _geometric(warmup, 1, WARMUP_RATIO)
        edges = np.concatenate([edges, np.minimum(cuts[cuts <= warmup][None, :], t[:, None])], axis=1)
    edges = -np.sort(-edges, axis=1)
    return edges[:, 1:], edges[:, :-1]


@dataclass
class Prepared:
    """Per-curve quantities that do not depend on the law's parameters (computed once per fit)."""

    t: np.ndarray  # index of the last update before each evaluation point (steps - 1), shape (M,)
    eta: np.ndarray  # per-step rates 0 .. n-1 (floored at a tiny positive value: eta^-gamma stays finite)
    warmup: int
    area: np.ndarray  # S(t) at the evaluation points
    cache: dict = field(default_factory=dict)


def prepare(lrs: np.ndarray, warmup: int, steps: np.ndarray) -> Prepared:
    """Precompute the schedule areas for evaluating a law after ``steps`` updates (1 <= steps <= len(lrs))."""
    lrs = np.asarray(lrs, dtype=float)
    steps = np.asarray(steps, dtype=np.int64) - 1
    if steps.size and (steps.min() < 0 or steps.max() >= len(lrs)):
        raise ScaletuneError(f"curve steps must lie in [1, {len(lrs)} scheduled steps] (got {steps.min() + 1}..{steps.max() + 1})")
    eta = np.maximum(lrs, 1e-12 * max(lrs.max(), 1e-30))
    partial = np.concatenate([[0.0], np.cumsum(eta[1:])])  # sum_{tau=1..t}: S_k(t) = partial[t] - partial[k-1]
    return Prepared(t=steps, eta=eta, warmup=int(warmup), area=partial[steps] + eta[0], cache={"partial": partial})


@dataclass(frozen=True)
class CurveLaw:
    """A loss-curve law: parameter names, bounds, which are fitted in log space, and its evaluator."""

    name: str
    params: tuple[str, ...]
    bounds: tuple[tuple[float, float], ...]  # natural units
    log_params: tuple[str, ...]  # fitted as log(value): positive scales
    linear: tuple[str, ...]  # enter the prediction linearly (solved exactly for start points)
    start_grid: dict[str, tuple[float, ...]]  # values tried for the non-linear parameters
    formula: str

    def evaluate(self, theta: np.ndarray, prep: Prepared, options: dict, jac: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
        """Prediction (M,) and its Jacobian (M, P) with respect to the natural parameters (None if not ``jac``)."""
        return _EVALUATORS[self.name](np.asarray(theta, dtype=float), prep, options, jac)

    def basis(self, theta: np.ndarray, prep: Prepared, options: dict) -> np.ndarray:
        """Columns multiplying the linear parameters (in `linear` order) at fixed non-linear ones."""
        pred, jac = self.evaluate(theta, prep, options)
        return jac[:, [self.params.index(p) for p in self.linear]]


def _power_term(A: float, alpha: float, u: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    upow = u ** (-alpha)
    return A * upow, upow, -A * upow * np.log(u)


def _multipower(theta: np.ndarray, prep: Prepared, options: dict, want_jac: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    L0, A, alpha, B, C, beta, gamma = theta
    u = prep.area
    term, d_A, d_alpha = _power_term(A, alpha, u)
    drop = _loss_drop(prep, C, beta, gamma, grad=want_jac)
    if not want_jac:
        return L0 + term - B * drop["value"], None
    jac = np.empty((len(u), 7))
    jac[:, 0] = 1.0
    jac[:, 1] = d_A
    jac[:, 2] = d_alpha
    jac[:, 3] = -drop["value"]
    jac[:, 4] = -B * drop["dC"]
    jac[:, 5] = -B * drop["dbeta"]
    jac[:, 6] = -B * drop["dgamma"]
    return L0 + term - B * drop["value"], jac


def _loss_drop(prep: Prepared, C: float, beta: float, gamma: float, grad: bool = True) -> dict[str, np.ndarray]:
    """sum_k (eta_{k-1} - eta_k) G(eta_k^-gamma S_k(t)) and (if ``grad``) its derivatives in C, beta, gamma.

    Vectorised with prefix sums over k: for a group of drops k in (lo, hi], the drop mass and the
    drop-weighted sums of eta_k^-gamma and eta_k^-gamma S1(k-1) are differences of cumulative sums.
    """
    eta, t = prep.eta, prep.t
    M = len(t)
    out = {k: np.zeros(M) for k in ("value", "dC", "dbeta", "dgamma")}
    if "groups" not in prep.cache:
        prep.cache["groups"] = _drop_groups(prep)
    if not prep.cache["groups"]:
        return out
    partial = prep.cache["partial"]
    s1_t = partial[t][:, None]
    w = eta[1:] ** (-gamma)
    for part, lo, hi, mass, inv_mass in prep.cache["groups"]:
        pw = part * w
        cols = [pw, pw * partial[:-1]]  # S1(k-1) = partial[k-1]
        if grad:
            pwl = -pw * np.log(eta[1:])
            cols += [pwl, pwl * partial[:-1]]
        sums = [np.concatenate([[0.0], np.cumsum(v)]) for v in cols]
        for r in range(0, M, CHUNK):  # row blocks keep the (rows, groups) temporaries in cache
            rows = slice(r, r + CHUNK)
            lo_, hi_, m_, inv_, s1_ = lo[rows], hi[rows], mass[rows], inv_mass[rows], s1_t[rows]
            D = [c[hi_] - c[lo_] for c in sums]  # prefix sums read at the group bounds
            y = (s1_ * D[0] - D[1]) * inv_  # drop-weighted mean of eta_k^-gamma S_k(t)
            x1 = C * y + 1.0
            pow_ = x1 ** (-beta)
            out["value"][rows] += (m_ * (1.0 - pow_)).sum(axis=1)
            if grad:
                dG_dx = m_ * beta * pow_ / x1
                out["dC"][rows] += (dG_dx * y).sum(axis=1)
                out["dbeta"][rows] += (m_ * pow_ * np.log(x1)).sum(axis=1)
                out["dgamma"][rows] += (dG_dx * C * (s1_ * D[2] - D[3]) * inv_).sum(axis=1)
    return out


def _drop_groups(prep: Prepared) -> list:
    """Parameter-free parts of the drop sum: for decreases and (apart) increases, each group's bounds and mass."""
    eta, t = prep.eta, prep.t
    delta = eta[:-1] - eta[1:]  # drop at k = 1..n-1
    if len(t) == 0 or not np.any(delta):
        return []
    lo, hi = _group_edges(t, prep.warmup, len(eta))
    groups = []
    # Rises (negative drops, e.g. the warm-up) are grouped apart from decreases so no group mixes signs.
    for part in (np.clip(delta, 0, None), np.clip(delta, None, 0)):
        if not np.any(part):
            continue
        P0 = np.concatenate([[0.0], np.cumsum(part)])
        mass = P0[hi] - P0[lo]
        keep = np.abs(mass) > 0
        # keep only groups holding a drop: move them to the front of each row and cut the empty tail
        # (a constant or step schedule has drops in few groups)
        width = max(int(keep.sum(axis=1).max()), 1)
        lo_p, hi_p = lo, hi
        if width < 0.7 * keep.shape[1]:  # worth it (a decaying schedule fills most groups: skip the sort)
            order = np.argsort(~keep, axis=1, kind="stable")[:, :width]
            lo_p, hi_p, mass, keep = (np.take_along_axis(a, order, axis=1) for a in (lo, hi, mass, keep))
        groups.append((part, lo_p, hi_p, np.where(keep, mass, 0.0), np.where(keep, 1.0 / np.where(keep, mass, 1.0), 0.0)))
    return groups


def loss_drop_exact(prep: Prepared, C: float, beta: float, gamma: float) -> np.ndarray:
    """The multipower loss-drop sum term by term (O(t) per point): the reference for tests."""
    eta, area = prep.eta, prep.cache["partial"]
    out = np.zeros(len(prep.t))
    for i, t in enumerate(prep.t):
        k = np.arange(1, t + 1)
        out[i] = np.sum((eta[k - 1] - eta[k]) * (1 - (1 + C * eta[k] ** (-gamma) * (area[t] - area[k - 1])) ** (-beta)))
    return out


def annealing_area(prep: Prepared, lam: float) -> np.ndarray:
    """S2(t) = sum_{tau<=t} m_tau with m_tau = lam m_{tau-1} + (eta_{tau-1} - eta_tau) (a linear filter)."""
    key = ("s2", lam)
    if key not in prep.cache:
        delta = np.concatenate([[0.0], prep.eta[:-1] - prep.eta[1:]])
        delta[: prep.warmup + 1] = 0.0  # no annealing from the warm-up's rising rate
        momentum = lfilter([1.0], [1.0, -lam], delta)
        prep.cache[key] = np.cumsum(momentum)[prep.t]
    return prep.cache[key]


def _annealing(theta: np.ndarray, prep: Prepared, options: dict, want_jac: bool = True) -> tuple[np.ndarray, np.ndarray]:
    L0, A, alpha, C = theta
    u = prep.area
    term, d_A, d_alpha = _power_term(A, alpha, u)
    s2 = annealing_area(prep, float(options.get("lam", 0.999)))
    jac = np.column_stack([np.ones_like(u), d_A, d_alpha, -s2])
    return L0 + term - C * s2, jac


def _power(theta: np.ndarray, prep: Prepared, options: dict, want_jac: bool = True) -> tuple[np.ndarray, np.ndarray]:
    L0, A, alpha = theta
    s = prep.t + 1.0  # completed updates
    term, d_A, d_alpha = _power_term(A, alpha, s)
    return L0 + term, np.column_stack([np.ones_like(s), d_A, d_alpha])


_EVALUATORS = {"multipower": _multipower, "annealing": _annealing, "power": _power}

LAWS: dict[str, CurveLaw] = {
    "multipower": CurveLaw(
        name="multipower",
        params=("L0", "A", "alpha", "B", "C", "beta", "gamma"),
        bounds=((0.0, 50.0), (1e-8, 1e4), (0.01, 3.0), (1e-4, 1e6), (1e-4, 1e4), (0.01, 5.0), (0.0, 2.0)),
        log_params=("A", "B", "C"),
        linear=("L0", "A", "B"),
        start_grid={"alpha": (0.3, 0.6), "C": (0.5, 2.0, 8.0), "beta": (0.3, 0.6), "gamma": (0.3, 0.6)},
        formula="L0 + A*S(t)^-alpha - B*sum_k (lr[k-1]-lr[k])*(1-(C*lr[k]^-gamma*S_k(t)+1)^-beta), S = sum of rates",
    ),
    "annealing": CurveLaw(
        name="annealing",
        params=("L0", "A", "alpha", "C"),
        bounds=((0.0, 50.0), (1e-8, 1e4), (0.01, 3.0), (0.0, 1e6)),
        log_params=("A",),
        linear=("L0", "A", "C"),
        start_grid={"alpha": (0.2, 0.4, 0.6, 0.9)},
        formula="L0 + A*S(t)^-alpha - C*S2(t), S2 = sum of m_t = lam*m_{t-1} + (lr[t-1]-lr[t]) after warm-up",
    ),
    "power": CurveLaw(
        name="power",
        params=("L0", "A", "alpha"),
        bounds=((0.0, 50.0), (1e-8, 1e6), (0.01, 3.0)),
        log_params=("A",),
        linear=("L0", "A"),
        start_grid={"alpha": (0.1, 0.3, 0.5, 0.8)},
        formula="L0 + A*step^-alpha (steps, constant-rate curves)",
    ),
}

# The annealing momentum lam is picked from this grid by the fitter (Tissue et al. use 0.999).
ANNEALING_LAMBDAS = (0.99, 0.995, 0.998, 0.999, 0.9995)


def get_law(name: str) -> CurveLaw:
    try:
        return LAWS[name]
    except KeyError:
        raise ScaletuneError(f"unknown curve law {name!r} (known: {', '.join(LAWS)})") from None
