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

# Groups of rate drops in the multipower sum. G is smooth in the log of its argument, so a group of drops narrow
# compared with its distance to the evaluation step t is replaced by its mass times G at the group's drop-weighted
# mean argument plus the second-order term G'' x variance / 2 (mean and variance come from prefix sums). The error
# then falls as (width / distance)^4, so groups can widen fast: seen from t, groups of drops k widen geometrically
# (by RATIO) with distance t - k, the newest ones summed one by one. Within the warm-up the rate itself changes by
# orders of magnitude, so there the groups also widen geometrically from step 1: drops k <= a(t) = min(warm-up, t/2)
# (nearer to step 1 than to t) use those fixed cuts, newer ones the cuts seen from t. That is O(log t) groups per
# point (about 45 at t = 70,000) instead of O(t) terms; tests compare with the term-by-term sum.
RATIO = 1.6
CHUNK = 512  # evaluation points per block: the (rows, groups) temporaries stay in cache
# Dense points (many per FAR_BLOCK steps, e.g. every step of a curve) split the sum: drops at least FAR_BLOCK
# steps before a block of steps are a smooth (analytic) function of the area S(t) over the block, evaluated at
# NODES Chebyshev nodes and interpolated; each point sums only its near drops (at most 2 FAR_BLOCK steps back).
FAR_BLOCK = 128
NODES = 8


def _geometric(n: int, ratio: float) -> np.ndarray:
    """0, 1, 2, ... then widening by ``ratio`` (never by more than ratio - 1 of the start), up to >= n."""
    d = [0]
    while d[-1] < n:
        d.append(max(d[-1] + 1, int(d[-1] * ratio)))
    return np.asarray(d, dtype=np.int64)


def _group_edges(t: np.ndarray, warmup: int, floor: np.ndarray) -> np.ndarray:
    """Per evaluation point, descending group edges: group i holds the drops k in (E[:, i+1], E[:, i]], all > floor."""
    a = np.maximum(np.minimum(warmup, t // 2) if warmup > 1 else 0, floor)
    near = np.maximum(t[:, None] - _geometric(int((t - floor).max()), RATIO)[None, :], a[:, None])
    if warmup <= 1 or not np.any(a > floor):
        return near
    cuts = _geometric(warmup, RATIO)[::-1]
    return np.concatenate([near, np.clip(np.minimum(cuts, warmup)[None, :], floor[:, None], a[:, None])], axis=1)


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
    drop-weighted sums of eta_k^-gamma and eta_k^-gamma S1(k-1) are differences of cumulative sums, read
    for all points and groups of a block of points at once.
    """
    eta, t = prep.eta, prep.t
    if "groups" not in prep.cache:
        prep.cache["groups"] = _drop_groups(prep)
    groups = prep.cache["groups"]
    if not groups:
        return {k: np.zeros(len(t)) for k in ("value", "dC", "dbeta", "dgamma")}
    s1_all = groups["s1"]  # S(t) of each point, then the far-field nodes
    out = {k: np.zeros(len(s1_all)) for k in ("value", "dC", "dbeta", "dgamma")}
    partial = prep.cache["partial"]
    p = partial[:-1]  # S1(k-1) = partial[k-1]
    w = eta[1:] ** (-gamma)
    minus_log_eta = -np.log(eta[1:])  # d(eta^-gamma)/dgamma = -log(eta) eta^-gamma
    b = 0.5 * beta * (beta + 1.0)
    for (k0, k1), part, blocks in groups["parts"]:
        # drop-weighted sums of w S1^i (i = 0, 1) and w^2 S1^i (i = 0, 1, 2); with grad also their gamma-derivatives,
        # over the drops k0 + 1 .. k1 that hold this part (the warm-up's rises: a short stretch)
        wk, pk = w[k0:k1], p[k0:k1]
        pw, pw2 = part * wk, part * wk * wk
        cols = [pw, pw * pk, pw2, pw2 * pk, pw2 * pk * pk]
        if grad:
            cols += [c * minus_log_eta[k0:k1] for c in cols[:2]] + [2.0 * c * minus_log_eta[k0:k1] for c in cols[2:]]
        sums = np.zeros((len(cols), k1 - k0 + 1))
        for row, c in zip(sums, cols):
            np.cumsum(c, out=row[1:])
        for rows, edges, mass, inv_mass, mass_sum in blocks:
            s1 = s1_all[rows][:, None]
            # at each group edge e, the sums over k <= e of part_k w_k (s1 - S1(k-1)) and of part_k w_k^2 (s1 - S1(k-1))^2:
            # differences of neighbouring edges give each group's mean and variance of y_k = w_k (s1 - S1(k-1))
            at = [c[edges] for c in sums]
            first = s1 * at[0] - at[1]
            second = (s1 * at[2] - 2.0 * at[3]) * s1 + at[4]
            y = (first[:, :-1] - first[:, 1:]) * inv_mass
            var = (second[:, :-1] - second[:, 1:]) * inv_mass - y * y
            var[var < 0] = 0.0  # rounding (a group of one drop has none)
            x1 = C * y + 1.0
            log_x = np.log(x1)
            mp = np.exp(-beta * log_x)
            mp *= mass  # mass (C y + 1)^-beta
            q = var / (x1 * x1)
            q *= C * C
            # E G(y) ~ G(mean) + G''(mean) var / 2 = 1 - (Cy+1)^-beta (1 + b q): second order, so groups can be wide
            corr = b * q
            corr += 1.0
            out["value"][rows] += mass_sum - np.einsum("ij,ij->i", mp, corr)
            if grad:  # the value term is mass - mp corr: minus the derivatives of mp corr
                first = s1 * at[5] - at[6]
                second = (s1 * at[7] - 2.0 * at[8]) * s1 + at[9]
                dy_dg = (first[:, :-1] - first[:, 1:]) * inv_mass
                dvar_dg = (second[:, :-1] - second[:, 1:]) * inv_mass - 2.0 * y * dy_dg
                dvar_dg[var == 0] = 0.0
                dq_dg = C * C * dvar_dg / (x1 * x1) - 2.0 * q * C * dy_dg / x1
                out["dC"][rows] -= np.einsum("ij,ij->i", mp, (-beta * y * corr + 2.0 * b * q / C) / x1)
                out["dbeta"][rows] -= np.einsum("ij,ij->i", mp, -log_x * corr + (beta + 0.5) * q)
                out["dgamma"][rows] -= np.einsum("ij,ij->i", mp, -beta * C * dy_dg / x1 * corr + b * dq_dg)
    points, nodes, weights = groups["far"]  # add the interpolated far field to the points that have one
    for key, v in out.items():
        if grad or key == "value":
            v[points] += np.einsum("ij,ij->i", weights, v[nodes])
        out[key] = v[: len(t)]
    return out


def _far_field(t: np.ndarray, partial: np.ndarray) -> tuple[np.ndarray, ...]:
    """For points dense enough to share a far field: each point's floor of near drops (drops k > floor are
    near), the far-field nodes (their S value and the step their groups are seen from), and per such point
    the node rows and interpolation weights (barycentric, Chebyshev nodes of the first kind)."""
    order = np.argsort(t, kind="stable")
    ts = t[order]
    blocks, first, counts = np.unique(ts // FAR_BLOCK, return_index=True, return_counts=True)
    cut = (blocks - 1) * FAR_BLOCK  # drops k <= cut are at least FAR_BLOCK steps before every point of the block
    s_lo, s_hi = partial[ts[first]], partial[ts[first + counts - 1]]
    # interpolate only where the block's area span is at most its distance to the far drops: G's singularity
    # then lies >= 3 half-spans from the interval, and 8 Chebyshev nodes are accurate to ~1e-6 of the far field
    far = (counts >= 2 * NODES) & (cut >= 1) & (s_hi > s_lo) & (s_hi - s_lo <= s_lo - partial[np.maximum(cut, 0)])
    floor = np.zeros(len(t), dtype=np.int64)
    if not far.any():
        return floor, np.zeros(0), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros((0, NODES), dtype=np.int64), np.zeros((0, NODES))
    j = np.arange(NODES)
    x = np.cos((2 * j + 1) * np.pi / (2 * NODES))
    lam = (-1.0) ** j * np.sin((2 * j + 1) * np.pi / (2 * NODES))
    mid, half = (s_lo + s_hi)[far] / 2, (s_hi - s_lo)[far] / 2
    node_s = (mid[:, None] + half[:, None] * x[None, :]).ravel()
    node_t = np.repeat(cut[far], NODES)
    block_of = np.repeat(np.arange(len(blocks)), counts)  # per sorted point
    far_index = np.cumsum(far) - 1  # per block: its index among the far blocks
    sel = far[block_of]
    points = order[sel]
    floor[points] = cut[block_of[sel]]
    fb = far_index[block_of[sel]]
    u = (partial[t[points]] - mid[fb]) / half[fb]
    diff = u[:, None] - x[None, :]
    diff[diff == 0] = 1e-300  # a point on a node takes that node's value
    bary = lam / diff
    weights = bary / bary.sum(axis=1, keepdims=True)
    return floor, node_s, node_t, points, fb[:, None] * NODES + j[None, :], weights


def _drop_groups(prep: Prepared) -> dict | None:
    """Parameter-free parts of the drop sum: the far-field interpolation, and per sign of the drops and per
    block of rows (points, then far-field nodes) the group edges and masses, cut to the span of groups that
    hold a drop for some row of the block (a constant or step schedule has drops in few groups)."""
    eta, t, partial = prep.eta, prep.t, prep.cache["partial"]
    delta = eta[:-1] - eta[1:]  # drop at k = 1..n-1
    if len(t) == 0 or not np.any(delta):
        return None
    floor, node_s, node_t, points, nodes, weights = _far_field(t, partial)
    # rows: the points (drops k > floor), then the nodes (drops k <= their block's cut, seen from the cut)
    row_t = np.concatenate([t, node_t])
    row_floor = np.concatenate([floor, np.zeros(len(node_t), dtype=np.int64)])
    # sorted points, then sorted nodes: neighbouring rows share their empty groups (a node has ~3x a point's groups)
    order = np.concatenate([np.argsort(t, kind="stable"), len(t) + np.argsort(node_t, kind="stable")])
    chunks = [order[r : r + CHUNK] for r in range(0, len(row_t), CHUNK)]
    edges = [_group_edges(row_t[rows], prep.warmup, row_floor[rows]) for rows in chunks]
    parts = []
    # Rises (negative drops, e.g. the warm-up) are grouped apart from decreases so no group mixes signs.
    for part in (np.clip(delta, 0, None), np.clip(delta, None, 0)):
        if not np.any(part):
            continue
        k0, k1 = np.flatnonzero(part)[[0, -1]] + [0, 1]  # prefix sums over part[k0:k1]: edges shift by k0 and clip
        part = part[k0:k1]
        P0 = np.concatenate([[0.0], np.cumsum(part)])
        blocks = []
        for rows, E in zip(chunks, edges):
            if row_floor[rows].min() >= k1 or row_t[rows].max() <= k0:
                continue  # no drop of this part lies in any row's range (floor, t]
            E = np.clip(E - k0, 0, k1 - k0)
            at = P0[E]
            mass = at[:, :-1] - at[:, 1:]
            used = np.flatnonzero(np.any(mass != 0, axis=0))
            if not len(used):
                continue
            mass = np.ascontiguousarray(mass[:, used[0] : used[-1] + 1])
            inv_mass = np.divide(1.0, mass, out=np.zeros_like(mass), where=mass != 0)
            blocks.append((rows, np.ascontiguousarray(E[:, used[0] : used[-1] + 2]), mass, inv_mass, mass.sum(axis=1)))
        parts.append(((k0, k1), part, blocks))
    s1 = np.concatenate([partial[t], node_s])
    return {"parts": parts, "s1": s1, "far": (points, len(t) + nodes, weights)}


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
