"""The multipower law's evaluator (Luo et al. 2025), fast: a prediction at every step of a 72,000-step run
takes about 20 ms instead of the seconds of the term-by-term sum, and a fit's value and Jacobian at its logged
points a few milliseconds.

The law's drop term sums, for every evaluation step t, over every earlier rate drop k:
``sum_k (lrs[k-1] - lrs[k]) G(lrs[k]^-gamma S_k(t))`` with ``G(x) = 1 - (C x + 1)^-beta``, O(t) terms per
step and O(T^2) for a whole curve. Why this module is fast, in three steps:

1. **Groups with prefix sums.** ``G`` is smooth in the log of its argument, so drops far from t can be
   grouped: a group contributes its mass times ``G`` at its drop-weighted mean argument plus the second-order
   term ``G'' x variance / 2``. Means and variances are differences of prefix sums over k (one cumulative sum
   per curve and parameter value), so a group costs O(1) whatever its width. Seen from t, groups widen
   geometrically with the distance t - k: O(log t) groups per point (about 45 at t = 70,000) instead of
   O(t) terms. The error falls as (width / distance)^4.
2. **A shared far field.** Points that lie close together (every step of a predicted curve) see the drops
   far behind them as a smooth function of the learning-rate area S(t): it is evaluated at 8 Chebyshev nodes
   per block of steps and interpolated, and each point only sums its near drops.
3. **A hierarchy of blocks** (like a one-dimensional fast multipole method): blocks of 64 steps, 8x wider
   at each coarser level; a block's far field is its parent's, interpolated, plus a thin band of drops; near
   drops are read at fixed distances back from every step, as slices of the prefix sums.

`loss_drop_exact` is the term-by-term reference that the tests compare with (within 1e-6 nats on the
benchmark schedule; a rate that rises again after decaying is the hardest case, ~1e-3 of the drop term).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any, Mapping, NamedTuple

import numpy as np

if TYPE_CHECKING:  # laws.py registers the evaluator; only the type is needed here
    from scaletune.curves.laws import Prepared

Array = np.ndarray[Any, Any]

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
# Every step of a long stretch (a predicted curve) takes a hierarchy of such far fields, like a one-dimensional fast
# multipole method: blocks of LEAF steps, then LEVEL_RATIO times wider at each coarser level. A block's far field at
# its nodes is its parent's, interpolated, plus the band of drops between the parent's cut and its own (a few groups:
# its nodes lie a block past its cut); each step sums only its near drops (LEAF to 2 LEAF - 1 back) in groups at
# fixed distances, so their sums are slices of the prefix sums rather than per-point gathers.
LEAF = 64
LEVEL_RATIO = 8
NODE_CHUNK = 2048  # node rows per block (a node's band has ~6 groups)
NEAR_CHUNK = 16000  # steps per block of the near groups: their sums and temporaries stay in cache
DENSE_MIN_STEP = 4 * LEAF  # from this step on, the near drops lie past the warm-up's fixed cuts (at most t / 2)
DENSE_MIN_RUN = 16 * LEAF  # shorter runs of steps: the per-point groups are as fast


def _geometric(n: int, ratio: float, start: int = 0) -> Array:
    """start, start + 1, ... widening by ``ratio`` (never by more than ratio - 1 of the start), up to >= n."""
    d = [start]
    while d[-1] < n:
        d.append(max(d[-1] + 1, int(d[-1] * ratio)))
    return np.asarray(d, dtype=np.int64)


def _group_edges(t: Array, warmup: int, floor: Array, gap: int = 0) -> Array:
    """Per evaluation row, descending group edges: group i holds the drops k in (E[:, i+1], E[:, i]], all > floor.

    A row evaluated at least ``gap`` steps after its step t (a far-field node: t is its block's cut) sees the
    drops from t + gap, so its groups start ``gap`` wide instead of one drop wide."""
    a = np.maximum(np.minimum(warmup, t // 2) if warmup > 1 else 0, floor)
    near = np.maximum(t[:, None] + gap - _geometric(int((t - floor).max()) + gap, RATIO, gap)[None, :], a[:, None])
    if warmup <= 1 or not np.any(a > floor):
        return np.asarray(near)
    cuts = _geometric(warmup, RATIO)[::-1]
    return np.concatenate([near, np.clip(np.minimum(cuts, warmup)[None, :], floor[:, None], a[:, None])], axis=1)


def multipower(theta: Array, prep: Prepared, options: Mapping[str, float], want_jac: bool = True) -> tuple[Array, Array | None]:
    """L0 + A S(t)^-alpha - B drop(t) and (if ``want_jac``) its Jacobian in (L0, A, alpha, B, C, beta, gamma)."""
    L0, A, alpha, B, C, beta, gamma = theta
    u = prep.area
    drop = loss_drop(prep, C, beta, gamma, grad=want_jac)
    if not want_jac:  # a prediction: no logarithms for the Jacobian
        return L0 + A * u ** (-alpha) - B * drop["value"], None
    upow = u ** (-alpha)
    jac = np.empty((len(u), 7))
    jac[:, 0] = 1.0
    jac[:, 1] = upow
    jac[:, 2] = -A * upow * np.log(u)
    jac[:, 3] = -drop["value"]
    jac[:, 4] = -B * drop["dC"]
    jac[:, 5] = -B * drop["dbeta"]
    jac[:, 6] = -B * drop["dgamma"]
    return L0 + A * upow - B * drop["value"], jac


def loss_drop(prep: Prepared, C: float, beta: float, gamma: float, grad: bool = True) -> dict[str, Array]:
    """sum_k (eta_{k-1} - eta_k) G(eta_k^-gamma S_k(t)) and (if ``grad``) its derivatives in C, beta, gamma.

    Vectorised with prefix sums over k: for a group of drops k in (lo, hi], the drop mass and the
    drop-weighted sums of eta_k^-gamma and eta_k^-gamma S1(k-1) are differences of cumulative sums, read
    for all points and groups of a block of points at once. A value at every step of a long stretch (a
    predicted curve) takes `_dense_drop`, which reads those sums along slices instead.
    """
    if not grad:
        if "dense" not in prep.cache:
            prep.cache["dense"] = _dense_plan(prep)
        if prep.cache["dense"] is not None:
            return {"value": _dense_drop(prep, prep.cache["dense"], C, beta, gamma)}
    return _grouped_drop(prep, C, beta, gamma, grad)


def _grouped_drop(prep: Prepared, C: float, beta: float, gamma: float, grad: bool) -> dict[str, Array]:
    """The drop sum at any points: per point its groups of drops, dense points with a shared far field."""
    eta, t = prep.eta, prep.t
    if "groups" not in prep.cache:
        prep.cache["groups"] = _drop_groups(prep)
    groups = prep.cache["groups"]
    if not groups:
        return {k: np.zeros(len(t)) for k in ("value", "dC", "dbeta", "dgamma")}
    s1_all = groups["s1"]  # S(t) of each point, then the far-field nodes
    out = {k: np.zeros(len(s1_all)) for k in ("value", "dC", "dbeta", "dgamma")}
    w = eta[1:] ** (-gamma)
    for (k0, k1), part, blocks in groups["parts"]:
        _row_sums(blocks, _moment_sums(prep, w, part, k0, k1, grad), s1_all, C, beta, out, grad)
    points, nodes, weights = groups["far"]  # add the interpolated far field to the points that have one
    for key, v in out.items():
        if grad or key == "value":
            v[points] += np.einsum("ij,ij->i", weights, v[nodes])
        out[key] = v[: len(t)]
    return out


def _moment_sums(prep: Prepared, w: Array, part: Array, k0: int, k1: int, grad: bool) -> Array:
    """Prefix sums over the drops k0 + 1 .. k1 that hold this part (the warm-up's rises: a short stretch) of
    part_k w_k S1(k-1)^i (i = 0, 1) and part_k w_k^2 S1(k-1)^i (i = 0, 1, 2), w_k = eta_k^-gamma (``w[k-1]``);
    with grad also their gamma-derivatives. Entry e of a row sums the drops k <= k0 + e."""
    wk, pk = w[k0:k1], prep.cache["partial"][k0:k1]  # S1(k-1) = partial[k-1]
    sums = np.empty((10 if grad else 5, k1 - k0 + 1))
    sums[:, 0] = 0.0
    cols = sums[:, 1:]  # the terms, summed in place below (fresh temporaries of this size cost page faults)
    np.multiply(part, wk, out=cols[0])
    np.multiply(cols[0], pk, out=cols[1])
    np.multiply(cols[0], wk, out=cols[2])
    np.multiply(cols[2], pk, out=cols[3])
    np.multiply(cols[3], pk, out=cols[4])
    if grad:
        minus_log_eta = -np.log(prep.eta[k0 + 1 : k1 + 1])  # d(eta^-gamma)/dgamma = -log(eta) eta^-gamma
        for i in range(5):
            np.multiply(cols[i] if i < 2 else 2.0 * cols[i], minus_log_eta, out=cols[5 + i])
    for row in cols:
        np.cumsum(row, out=row)
    return sums


def _row_sums(blocks: list[Any], sums: Array, s1_all: Array, C: float, beta: float, out: dict[str, Any], grad: bool) -> None:
    """Add one part's grouped drop sum (and with grad its derivatives) to ``out`` at every row of ``blocks``."""
    b = 0.5 * beta * (beta + 1.0)
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


_CHEB = np.cos((2 * np.arange(NODES) + 1) * np.pi / (2 * NODES))  # Chebyshev nodes of the first kind on [-1, 1]
_CHEB_LAMBDA = (-1.0) ** np.arange(NODES) * np.sin((2 * np.arange(NODES) + 1) * np.pi / (2 * NODES))  # their barycentric weights


_VANDER_INV = np.linalg.inv(np.vander(_CHEB, NODES, increasing=True))  # node values -> monomial coefficients


def _polynomial(values: Array, u: Array) -> Array:
    """Row i: at positions ``u[i]`` in [-1, 1], the polynomial through node ``values[i]``: Horner's rule on its
    monomial coefficients, a few operations per point and no per-point weights."""
    coef = values @ _VANDER_INV.T  # column k: the coefficients of u^k
    out = np.empty_like(u)
    out[:] = coef[:, -1:]
    for k in range(NODES - 2, -1, -1):
        out *= u
        out += coef[:, k : k + 1]
    return out


def _interpolation_weights(u: Array) -> Array:
    """Barycentric weights (..., NODES) of the Chebyshev nodes for positions ``u`` in [-1, 1]."""
    diff = u[..., None] - _CHEB
    diff[diff == 0] = 1e-300  # a point on a node takes that node's value
    bary = _CHEB_LAMBDA / diff
    out: Array = bary / bary.sum(axis=-1, keepdims=True)
    return out


def _far_field(t: Array, partial: Array) -> tuple[Array, ...]:
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
        return (
            floor,
            np.zeros(0),
            np.zeros(0, dtype=np.int64),
            np.zeros(0, dtype=np.int64),
            np.zeros((0, NODES), dtype=np.int64),
            np.zeros((0, NODES)),
        )
    j = np.arange(NODES)
    mid, half = (s_lo + s_hi)[far] / 2, (s_hi - s_lo)[far] / 2
    node_s = (mid[:, None] + half[:, None] * _CHEB[None, :]).ravel()
    node_t = np.repeat(cut[far], NODES)
    block_of = np.repeat(np.arange(len(blocks)), counts)  # per sorted point
    far_index = np.cumsum(far) - 1  # per block: its index among the far blocks
    sel = far[block_of]
    points = order[sel]
    floor[points] = cut[block_of[sel]]
    fb = far_index[block_of[sel]]
    weights = _interpolation_weights((partial[t[points]] - mid[fb]) / half[fb])
    return floor, node_s, node_t, points, fb[:, None] * NODES + j[None, :], weights


def _drop_parts(eta: Array) -> list[tuple[tuple[int, int], Array]]:
    """Drops and rises (negative drops, e.g. the warm-up) apart, so that no group mixes signs: per sign the
    span k0 + 1 .. k1 of steps that holds one, ((k0, k1), part[k0:k1]) with part[i] the drop at step k0 + i + 1."""
    delta = eta[:-1] - eta[1:]  # drop at k = 1..n-1
    out = []
    for holds, clip in ((delta > 0, np.maximum), (delta < 0, np.minimum)):
        k0 = int(holds.argmax())
        if holds[k0]:
            k1 = len(delta) - int(holds[::-1].argmax())
            out.append(((k0, k1), clip(delta[k0:k1], 0.0)))
    return out


def _row_blocks(k0: int, k1: int, P0: Array, row_t: Array, row_floor: Array, chunks: list[Any], edges: list[Any]) -> list[Any]:
    """Per block of rows, one part's group edges and masses (``P0``: the part's prefix sums), cut to the span of
    groups that hold a drop for some row of the block (a constant or step schedule has drops in few groups)."""
    blocks = []
    for rows, E in zip(chunks, edges):
        reach = (row_floor[rows] < k1) & (row_t[rows] > k0)  # rows with drops of this part in their range (floor, t]
        if not reach.any():
            continue
        if not reach.all():
            rows, E = rows[reach], E[reach]
        E = np.clip(E - k0, 0, k1 - k0)  # prefix sums over part[k0:k1]: edges shift by k0 and clip
        at = P0[E]
        mass = at[:, :-1] - at[:, 1:]
        nonzero = mass != 0
        used = np.flatnonzero(np.any(nonzero, axis=0))
        if not len(used):
            continue
        keep = np.any(nonzero, axis=1)  # rows with a drop of this part (e.g. the few whose range reaches the warm-up)
        if not keep.all():
            rows, E, mass = rows[keep], E[keep], mass[keep]
        mass = np.ascontiguousarray(mass[:, used[0] : used[-1] + 1])
        inv_mass = np.divide(1.0, mass, out=np.zeros_like(mass), where=mass != 0)
        blocks.append((rows, np.ascontiguousarray(E[:, used[0] : used[-1] + 2]), mass, inv_mass, mass.sum(axis=1)))
    return blocks


def _drop_groups(prep: Prepared) -> dict[str, Any] | None:
    """Parameter-free parts of the drop sum: the far-field interpolation, and per sign of the drops and per
    block of rows (points, then far-field nodes) the group edges and masses."""
    eta, t, partial = prep.eta, prep.t, prep.cache["partial"]
    if len(t) == 0 or not np.any(eta[:-1] != eta[1:]):
        return None
    floor, node_s, node_t, points, nodes, weights = _far_field(t, partial)
    # rows: the points (drops k > floor), then the nodes (drops k <= their block's cut, seen from the cut)
    row_t = np.concatenate([t, node_t])
    row_floor = np.concatenate([floor, np.zeros(len(node_t), dtype=np.int64)])
    # sorted points, then sorted nodes: neighbouring rows share their empty groups (a node has ~3x a point's groups)
    order = np.concatenate([np.argsort(t, kind="stable"), len(t) + np.argsort(node_t, kind="stable")])
    chunks = [order[r : r + CHUNK] for r in range(0, len(row_t), CHUNK)]
    edges = [_group_edges(row_t[rows], prep.warmup, row_floor[rows]) for rows in chunks]
    parts = [
        ((k0, k1), part, _row_blocks(k0, k1, np.concatenate([[0.0], np.cumsum(part)]), row_t, row_floor, chunks, edges))
        for (k0, k1), part in _drop_parts(eta)
    ]
    s1 = np.concatenate([partial[t], node_s])
    return {"parts": parts, "s1": s1, "far": (points, len(t) + nodes, weights)}


def _dense_plan(prep: Prepared) -> dict[str, Any] | None:
    """Parameter-free parts of `_dense_drop`, or None unless the points hold every step of a long stretch.

    The steps from DENSE_MIN_STEP on must form one run without gaps; steps before it, and those of leaf
    blocks whose far field cannot be interpolated (the area over the block exceeds its distance to the far
    drops: a rate that jumps up), are left to the per-point groups."""
    eta, partial, t = prep.eta, prep.cache["partial"], prep.t
    n = len(eta)
    if len(t) > 1 and np.all(t[1:] > t[:-1]):  # already sorted and distinct (a predicted curve): no sort
        steps, inverse = t, None
    else:
        steps, inverse = np.unique(t, return_inverse=True)
    start = int(np.searchsorted(steps, DENSE_MIN_STEP))
    run = steps[start:]
    if len(run) < DENSE_MIN_RUN or run[-1] - run[0] + 1 != len(run) or not np.any(eta[:-1] != eta[1:]):
        return None
    ta, tb = int(run[0]), int(run[-1])
    # the blocks of each level, leaves first: block j holds steps j b .. j b + b - 1 and its far field the drops
    # k <= cut = (j - 1) b; as in `_far_field`, it is interpolated only where the area over the block is at most
    # the area between the block and its cut (G's singularity >= 3 half-spans from the interval)
    levels, b, js = [], LEAF, np.arange(ta // LEAF, tb // LEAF + 1)
    while True:
        cut = (js - 1) * b
        s_lo, s_hi = partial[js * b], partial[np.minimum(js * b + b, n) - 1]
        valid = (cut >= 1) & (s_hi > s_lo) & (s_hi - s_lo <= s_lo - partial[np.maximum(cut, 0)])
        levels.append({"size": b, "j": js, "cut": cut, "valid": valid, "mid": (s_lo + s_hi) / 2, "half": (s_hi - s_lo) / 2})
        if tb // (b * LEVEL_RATIO) < 2:  # a coarser level's blocks would all lie within one block of step 0
            break
        b, js = b * LEVEL_RATIO, np.unique(js // LEVEL_RATIO)
    # node rows, coarsest level first: a node of a block whose parent is valid sums the band of drops between the
    # parent's cut and its own (its floor) and adds the parent's far field, interpolated; other nodes sum all drops
    row_t: list[Array] = []
    row_floor: list[Array] = []
    row_s: list[Array] = []
    chunks: list[tuple[Array, int]] = []
    parent: dict[str, Any] | None = None
    for lev in reversed(levels):
        blocks = np.flatnonzero(lev["valid"])
        lev["index"] = np.full(len(lev["j"]), -1)
        lev["index"][blocks] = np.arange(len(blocks))
        node_s = lev["mid"][blocks, None] + lev["half"][blocks, None] * _CHEB
        floor = np.zeros(len(blocks), dtype=np.int64)
        if parent is not None:
            up = lev["j"][blocks] // LEVEL_RATIO - parent["j"][0]
            has = parent["index"][up] >= 0
            floor[has] = parent["cut"][up[has]]
            u = (node_s[has] - parent["mid"][up[has], None]) / parent["half"][up[has], None]
            lev["from_parent"] = (np.flatnonzero(has), parent["index"][up[has]], u)
        first = sum(len(r) for r in row_t)
        lev["rows"] = first + np.arange(len(blocks) * NODES)
        # rows with a parent see their band from a block past the cut (~6 groups); the others (the coarsest level,
        # and below a parent that a rising rate made invalid) sum all drops in the finer groups of the points
        for rows, gap in ((lev["rows"][np.repeat(floor > 0, NODES)], lev["size"]), (lev["rows"][np.repeat(floor == 0, NODES)], 0)):
            chunks += [(rows[r : r + NODE_CHUNK], gap) for r in range(0, len(rows), NODE_CHUNK)]
        row_t.append(np.repeat(lev["cut"][blocks], NODES))
        row_floor.append(np.repeat(floor, NODES))
        row_s.append(node_s.ravel())
        parent = lev
    all_t, all_floor = np.concatenate(row_t), np.concatenate(row_floor)
    edges = [_group_edges(all_t[rows], prep.warmup, all_floor[rows], gap) for rows, gap in chunks]
    row_chunks = [rows for rows, _ in chunks]
    parts = []
    for (k0, k1), part in _drop_parts(eta):
        P0 = np.empty(len(part) + 1)
        P0[0] = 0.0
        np.cumsum(part, out=P0[1:])
        parts.append(((k0, k1), part, P0, _row_blocks(k0, k1, P0, all_t, all_floor, row_chunks, edges)))
    # the steps of the run on a grid of whole leaves (rows): each row's far field is one polynomial in its area
    leaves = levels[0]
    first = leaves["j"][0] * LEAF
    u = np.empty((len(leaves["j"]), LEAF))  # the area at each step, then its position in its leaf's span (in place)
    area = partial[first : first + u.size]
    u.ravel()[: len(area)], u.ravel()[len(area) :] = area, partial[-1]
    u -= np.where(leaves["valid"], leaves["mid"], 0.0)[:, None]
    u /= np.where(leaves["valid"], leaves["half"], 1.0)[:, None]
    bad = [np.arange(max(j * LEAF, ta), min(j * LEAF + LEAF - 1, tb) + 1) - ta + start for j in leaves["j"][~leaves["valid"]]]
    rest = np.concatenate([np.arange(start)] + bad).astype(np.int64)  # indices into steps of the per-point groups' steps
    m = int(steps[rest].max()) + 1 if len(rest) else 1
    rest_prep = replace(prep, t=steps[rest], eta=eta[:m], area=partial[steps[rest]] + eta[0], cache={"partial": partial[:m]})
    return {
        "run": (ta, tb),
        "levels": levels,
        "row_s": np.concatenate(row_s),
        "parts": parts,
        "grid": (ta - first, u),
        "rest": (rest, rest_prep),
        "start": start,
        "n_steps": len(steps),
        "inverse": inverse,
    }


def _dense_drop(prep: Prepared, plan: dict[str, Any], C: float, beta: float, gamma: float) -> Array:
    """The drop sum's value at every step of a run (`_dense_plan`): interpolated far field plus near groups."""
    w = prep.eta[1:] ** (-gamma)
    ta, tb = plan["run"]
    nodes = {"value": np.zeros(len(plan["row_s"]))}
    near = np.zeros(tb - ta + 1)
    for (k0, k1), part, P0, blocks in plan["parts"]:
        sums = _moment_sums(prep, w, part, k0, k1, grad=False)
        _row_sums(blocks, sums, plan["row_s"], C, beta, nodes, grad=False)
        _near_drop(_NearPart(prep, w, (k0, k1), part, P0, sums, C, beta), near, ta, tb)
    # downward pass: each level's node values plus its parent's far field at those nodes
    far = np.zeros((0, NODES))
    for lev in reversed(plan["levels"]):  # coarsest first: a level with a parent follows it
        values = nodes["value"][lev["rows"]].reshape(-1, NODES)
        if "from_parent" in lev:
            child, up, u = lev["from_parent"]
            values[child] += _polynomial(far[up], u)
        far = values
    leaves = plan["levels"][0]
    values = np.zeros((len(leaves["j"]), NODES))
    values[leaves["valid"]] = far
    first, u = plan["grid"]
    out = np.empty(plan["n_steps"])
    out[plan["start"] :] = near + _polynomial(values, u).ravel()[first : first + len(near)]
    rest, rest_prep = plan["rest"]
    if len(rest):
        out[rest] = _grouped_drop(rest_prep, C, beta, gamma, grad=False)["value"]
    return out if plan["inverse"] is None else out[plan["inverse"]]


class _NearPart(NamedTuple):
    """One part of a run's drops as its near groups read them: the weights ``w`` (w[k-1] = eta_k^-gamma), the
    part's drop steps ``span`` = (k0, k1) and drops ``part``, its prefix sums ``P0``, ``sums`` (mass,
    `_moment_sums`), and the law's C and beta."""

    prep: Prepared
    w: Array
    span: tuple[int, int]
    part: Array
    P0: Array
    sums: Array
    C: float
    beta: float


def _near_drop(p: _NearPart, out: Array, ta: int, tb: int) -> None:
    """Add one part's near drops to ``out`` (steps ta .. tb): for step t the drops k in (cut, t], cut = the
    far-field cut of t's leaf block (LEAF to 2 LEAF - 1 steps back), in second-order groups at the same distances
    back from every t (a drop alone where a group would be one step wide).

    At fixed distances a group's edges move with t, so its sums are differences of two slices of the prefix
    sums; the groups that reach past LEAF steps end at the leaf's cut, read once per step."""
    prep, w, (k0, k1), C = p.prep, p.w, p.span, p.C
    first_t, last_t = max(ta, k0 + 1), min(tb, k1 + 2 * LEAF - 1)  # steps with a drop of this part among their near ones
    if first_t > last_t:
        return
    # G(C w_k (S(t) - S1(k-1))) at d = t - k steps back is about G(C w_k eta (d + 1)): singular at d = -1 - 1 / (C w_k eta),
    # so groups widen geometrically with the distance to that point; 1 / (C w eta) is taken at its smallest over the
    # part's drops (w_k eta_k = eta_k^(1 - gamma)), which keeps groups no wider than the rates anywhere would allow
    offset = 1.0 + 1.0 / (C * np.max(w[k0:k1] * prep.eta[k0 + 1 : k1 + 1]))
    d = [0]
    while d[-1] < 2 * LEAF - 1:
        d.append(max(d[-1] + 1, int((d[-1] + offset) * RATIO - offset)))
    size = min(NEAR_CHUNK, last_t - first_t + 1)
    buffers = np.empty((6, size + 2 * LEAF)), np.empty((16, size))  # reused: fresh ones would cost page faults
    for lo_t in range(first_t, last_t + 1, NEAR_CHUNK):  # the chunk's sums and temporaries stay in cache
        hi_t = min(lo_t + NEAR_CHUNK - 1, last_t)
        out[lo_t - ta : hi_t - ta + 1] += _near_chunk(p, d, lo_t, hi_t, buffers)


def _near_chunk(p: _NearPart, d: list[int], lo_t: int, hi_t: int, buffers: tuple[Array, Array]) -> Array:
    """`_near_drop` at the steps lo_t .. hi_t (in place into a few buffers: these loops are the dense path's cost)."""
    prep, w, (k0, k1), part, P0, sums, C, beta = p
    rises = part[0] < 0
    partial = prep.cache["partial"]
    t = np.arange(lo_t, hi_t + 1)
    s = partial[lo_t : hi_t + 1]
    cut = (t // LEAF - 1) * LEAF
    near = t - cut  # near drops of each step: LEAF .. 2 LEAF - 1
    e0 = lo_t - 2 * LEAF  # drop steps e0 (below every cut: cut >= t - 2 LEAF + 1) .. hi_t are column e - e0 below
    Q = buffers[0][:, : hi_t - e0 + 1]  # Q[:, e - e0] sums the drops k <= e: mass, then mass C y and mass (C y)^2 terms
    if k0 <= e0 and hi_t <= k1:  # inside the part's span: a slice of its sums
        Q[0], Q[1:] = P0[e0 - k0 : hi_t - k0 + 1], sums[:, e0 - k0 : hi_t - k0 + 1]
    else:
        cols = np.clip(np.arange(e0, hi_t + 1) - k0, 0, k1 - k0)
        np.take(P0, cols, out=Q[0], mode="clip")  # (indices in range; "clip" writes out unbuffered)
        np.take(sums, cols, axis=1, out=Q[1:], mode="clip")
    Q[1:3] *= C  # scaled so that x = C y + 1 costs one addition
    Q[3:] *= C * C * np.array([[1.0], [2.0], [1.0]])
    work = buffers[1][:, : len(t)]
    m, at_cut, first, second, x, e = work[:6], work[6:12], work[12], work[13], work[14], work[15]
    np.take(Q, cut - e0, axis=1, out=at_cut, mode="clip")  # the sums up to each step's cut (one column per leaf)

    def at(d: int) -> slice:  # the columns of drop steps t - d
        return slice(lo_t - d - e0, hi_t - d - e0 + 1)

    acc = Q[0, at(0)] - at_cut[0]  # the near drops' mass; minus sum mass (C y + 1)^-beta (1 + b q) below
    b = 0.5 * beta * (beta + 1.0)
    tiny = -1e-300 if rises else 1e-300  # a group without drops: mass 0 and sums 0, so y = 0
    clip = np.minimum if rises else np.maximum
    for lo, hi in zip(d[:-1], d[1:]):
        if hi == lo + 1:  # one drop k = t - lo, exactly: C y + 1 = C w_k (S(t) - S1(k-1)) + 1 (w[k-1] = eta_k^-gamma)
            k = np.arange(lo_t - lo, hi_t - lo + 1)
            np.subtract(s, partial[k - 1], out=x)
            x *= C * w[k - 1]
            x += 1.0
            np.log(x, out=e)
            e *= -beta
            np.exp(e, out=e)
            e *= np.where((k > k0) & (k <= k1), part[np.clip(k - k0 - 1, 0, len(part) - 1)], 0.0)  # the part's drop at k
            acc -= e
            continue
        if hi <= LEAF:  # always whole (cut <= t - LEAF)
            np.subtract(Q[:, at(lo)], Q[:, at(hi)], out=m)
        else:  # cut at the cut: drops k in (max(t - hi, cut), t - lo], none where t - lo <= cut
            np.subtract(Q[:, at(lo)], at_cut, out=m)
            if hi < 2 * LEAF:  # whole where it ends past the cut
                np.subtract(Q[:, at(lo)], Q[:, at(hi)], out=m, where=near >= hi)
            if lo >= LEAF:  # empty where it starts at or before the cut
                m *= near > lo
        np.multiply(s, m[1], out=first)  # sum of mass C y
        first -= m[2]
        np.multiply(s, m[3], out=second)  # sum of mass (C y)^2
        second -= m[4]
        second *= s
        second += m[5]
        np.add(m[0], tiny, out=x)
        np.divide(first, x, out=x)  # C y
        first *= x
        second -= first  # C^2 mass var(y): >= 0 for drops, <= 0 for rises, but for rounding
        clip(second, 0.0, out=second)
        x += 1.0
        np.log(x, out=e)
        e *= -beta
        np.exp(e, out=e)
        x *= x
        second *= b
        second /= x
        second += m[0]
        second *= e
        acc -= second
    out: Array = acc
    return out


def loss_drop_exact(prep: Prepared, C: float, beta: float, gamma: float) -> Array:
    """The multipower loss-drop sum term by term (O(t) per point): the reference for tests."""
    eta, area = prep.eta, prep.cache["partial"]
    out = np.zeros(len(prep.t))
    for i, t in enumerate(prep.t):
        k = np.arange(1, t + 1)
        out[i] = np.sum((eta[k - 1] - eta[k]) * (1 - (1 + C * eta[k] ** (-gamma) * (area[t] - area[k - 1])) ** (-beta)))
    return out
