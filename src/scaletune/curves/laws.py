"""Loss-curve laws under learning-rate schedules, vectorised over steps (numpy only), and their registry.

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
  R2 0.9988 on the published test curves; summing only after warm-up shifts every loss by about 0.1). Its
  fast evaluator lives in `scaletune.curves._multipower`.
- ``annealing`` (Tissue et al. 2024, arXiv 2408.11029): ``L = L0 + A S(t)^-alpha - C S2(t)`` with
  ``S2(t) = sum_{tau<=t} m_tau``, ``m_tau = lam m_{tau-1} + (lrs[tau-1] - lrs[tau])`` over the steps after
  warm-up (Tissue et al. count warm-up at the peak rate, so it adds no annealing). ``lam`` (about 0.999)
  is chosen from a grid by the fitter, not by gradient.
- ``power``: ``L = L0 + A s^-alpha`` in steps ``s`` (>= 1); for constant-rate curves, it ignores the schedule.

Each law maps natural parameters to predictions *and* their Jacobian, so fits use exact gradients.

A law is data: a `CurveLaw` declares its parameters, bounds, start grid and evaluator, and
`register_curve_law` makes it available to the fitter, the predictions, the schedule search and the CLI's
``--law``. For example the power law in the learning-rate area, ``L0 + A S(t)^-alpha``::

    def area_power(theta, prep, options, want_jac=True):
        L0, A, alpha = theta
        u = prep.area ** -alpha
        jac = np.column_stack([np.ones_like(u), u, -A * u * np.log(prep.area)]) if want_jac else None
        return L0 + A * u, jac

    register_curve_law(CurveLaw("area-power", ("L0", "A", "alpha"), ((0, 50), (1e-8, 1e4), (0.01, 3)),
                                log_params=("A",), linear=("L0", "A"), start_grid={"alpha": (0.2, 0.5)},
                                formula="L0 + A*S(t)^-alpha", evaluator=area_power))
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol

import numpy as np
from scipy.signal import lfilter

from scaletune.errors import ScaletuneError

FloatArray = np.ndarray[Any, Any]  # float arrays (numpy's dtype-precise types do not follow arithmetic)


@dataclass
class Prepared:
    """Per-curve quantities that do not depend on the law's parameters (computed once per fit): what an
    evaluator reads."""

    t: np.ndarray[Any, Any]  # index of the last update before each evaluation point (steps - 1), shape (M,)
    eta: FloatArray  # per-step rates 0 .. n-1 (floored at a tiny positive value: eta^-gamma stays finite)
    warmup: int
    area: FloatArray  # S(t) at the evaluation points
    cache: dict[Any, Any] = field(default_factory=dict)  # evaluators keep their parameter-free work here


def prepare(lrs: Any, warmup: int, steps: Any) -> Prepared:
    """Precompute the schedule areas for evaluating a law after ``steps`` updates (1 <= steps <= len(lrs))."""
    rates = np.asarray(lrs, dtype=float)
    t = np.asarray(steps, dtype=np.int64) - 1
    if t.size and (t.min() < 0 or t.max() >= len(rates)):
        raise ScaletuneError(f"curve steps must lie in [1, {len(rates)} scheduled steps] (got {t.min() + 1}..{t.max() + 1})")
    eta = np.maximum(rates, 1e-12 * max(float(rates.max()), 1e-30))
    partial = np.concatenate([[0.0], np.cumsum(eta[1:])])  # sum_{tau=1..t}: S_k(t) = partial[t] - partial[k-1]
    return Prepared(t=t, eta=eta, warmup=int(warmup), area=partial[t] + eta[0], cache={"partial": partial})


class Evaluator(Protocol):
    """``(theta, prepared, options, want_jac) -> (prediction (M,), Jacobian (M, P) or None)``: the law at the
    prepared points for natural parameters ``theta``; the Jacobian (in the natural parameters) is required
    when ``want_jac``, since fits use exact gradients."""

    def __call__(
        self, theta: FloatArray, prep: Prepared, options: Mapping[str, float], want_jac: bool = True
    ) -> tuple[FloatArray, FloatArray | None]: ...


@dataclass(frozen=True)
class CurveLaw:
    """A loss-curve law: parameter names, bounds, which are fitted in log space, and its evaluator.

    ``option_grid``: options the fitter chooses from a grid by the objective, not by gradient (annealing's
    ``lam``). ``cooldown_params``: parameters that only a sharp rate decay pins down (a fit without such a
    curve warns ``cooldown_unidentified``). ``bounded_decay``: what a rate decrease can gain saturates, so a
    free-form schedule search is meaningful (the annealing law rewards any decrease without limit).
    ``log_product``: a pair (B, beta) fitted as log(B * beta), which straightens a long valley of the fit.
    """

    name: str
    params: tuple[str, ...]
    bounds: tuple[tuple[float, float], ...]  # natural units
    log_params: tuple[str, ...]  # fitted as log(value): positive scales
    linear: tuple[str, ...]  # enter the prediction linearly (solved exactly for start points)
    start_grid: Mapping[str, tuple[float, ...]]  # values tried for the non-linear parameters
    formula: str
    evaluator: Evaluator = field(repr=False, compare=False)
    option_grid: Mapping[str, tuple[float, ...]] = field(default_factory=dict)
    cooldown_params: tuple[str, ...] = ()
    bounded_decay: bool = False
    log_product: tuple[str, str] | None = None

    def evaluate(self, theta: Any, prep: Prepared, options: Mapping[str, float], jac: bool = True) -> tuple[FloatArray, FloatArray | None]:
        """Prediction (M,) and its Jacobian (M, P) with respect to the natural parameters (None if not ``jac``)."""
        return self.evaluator(np.asarray(theta, dtype=float), prep, options, jac)

    def jacobian(self, theta: Any, prep: Prepared, options: Mapping[str, float]) -> tuple[FloatArray, FloatArray]:
        """Prediction and Jacobian (both required)."""
        pred, jac = self.evaluate(theta, prep, options, jac=True)
        if jac is None:
            raise ScaletuneError(f"curve law {self.name!r}: its evaluator returned no Jacobian")
        return pred, jac

    def basis(self, theta: Any, prep: Prepared, options: Mapping[str, float]) -> FloatArray:
        """Columns multiplying the linear parameters (in `linear` order) at fixed non-linear ones."""
        return self.jacobian(theta, prep, options)[1][:, [self.params.index(p) for p in self.linear]]


_LAWS: dict[str, CurveLaw] = {}


def register_curve_law(law: CurveLaw, replace: bool = False) -> CurveLaw:
    """Make ``law`` available by name to `fit_curves`, predictions, the schedule search and ``--law``.

    The declaration is checked: one bound per parameter (low < high), and the log-space, linear, start-grid,
    cooldown and product names among the parameters. A second law of the same name needs ``replace``."""
    where = f"curve law {law.name!r}"
    if not law.name or law.name != law.name.strip():
        raise ScaletuneError(f"curve law name {law.name!r} must be a non-empty word")
    if law.name in _LAWS and not replace:
        raise ScaletuneError(f"{where} is already registered", hint="pass replace=True to replace it")
    if len(set(law.params)) != len(law.params) or len(law.bounds) != len(law.params):
        raise ScaletuneError(f"{where}: {len(law.params)} distinct parameters need as many bounds (got {len(law.bounds)})")
    for name, (lo, hi) in zip(law.params, law.bounds):
        if not lo < hi or math.isnan(lo) or math.isnan(hi):
            raise ScaletuneError(f"{where}: bound of {name} must be low < high (got {lo}, {hi})")
        if name in law.log_params and not lo >= 0:
            raise ScaletuneError(f"{where}: {name} is fitted in log space, so its lower bound must be >= 0 (got {lo})")
    named = (*law.log_params, *law.linear, *law.start_grid, *law.cooldown_params, *(law.log_product or ()))
    unknown = sorted(set(named) - set(law.params))
    if unknown:
        raise ScaletuneError(f"{where}: {', '.join(unknown)} not among its parameters ({', '.join(law.params)})")
    _LAWS[law.name] = law
    return law


def get_curve_law(name: str) -> CurveLaw:
    """The registered law called ``name``."""
    try:
        return _LAWS[name]
    except KeyError:
        raise ScaletuneError(f"unknown curve law {name!r} (known: {', '.join(_LAWS)})") from None


def curve_laws() -> tuple[str, ...]:
    """Names of the registered curve laws, built-in ones first."""
    return tuple(_LAWS)


def _power_term(A: float, alpha: float, u: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
    upow = u ** (-alpha)
    return A * upow, upow, -A * upow * np.log(u)


def annealing_area(prep: Prepared, lam: float) -> FloatArray:
    """S2(t) = sum_{tau<=t} m_tau with m_tau = lam m_{tau-1} + (eta_{tau-1} - eta_tau) (a linear filter)."""
    key = ("s2", lam)
    if key not in prep.cache:
        delta = np.concatenate([[0.0], prep.eta[:-1] - prep.eta[1:]])
        delta[: prep.warmup + 1] = 0.0  # no annealing from the warm-up's rising rate
        momentum = lfilter([1.0], [1.0, -lam], delta)
        prep.cache[key] = np.cumsum(momentum)[prep.t]
    out: FloatArray = prep.cache[key]
    return out


def _annealing(theta: FloatArray, prep: Prepared, options: Mapping[str, float], want_jac: bool = True) -> tuple[FloatArray, FloatArray]:
    L0, A, alpha, C = theta
    u = prep.area
    term, d_A, d_alpha = _power_term(A, alpha, u)
    s2 = annealing_area(prep, float(options.get("lam", 0.999)))
    jac = np.column_stack([np.ones_like(u), d_A, d_alpha, -s2])
    return L0 + term - C * s2, jac


def _power(theta: FloatArray, prep: Prepared, options: Mapping[str, float], want_jac: bool = True) -> tuple[FloatArray, FloatArray]:
    L0, A, alpha = theta
    s = prep.t + 1.0  # completed updates
    term, d_A, d_alpha = _power_term(A, alpha, s)
    return L0 + term, np.column_stack([np.ones_like(s), d_A, d_alpha])


# The annealing momentum lam is picked from this grid by the fitter (Tissue et al. use 0.999).
ANNEALING_LAMBDAS = (0.99, 0.995, 0.998, 0.999, 0.9995)


def _register_builtins() -> None:
    from scaletune.curves._multipower import multipower

    register_curve_law(
        CurveLaw(
            name="multipower",
            params=("L0", "A", "alpha", "B", "C", "beta", "gamma"),
            bounds=((0.0, 50.0), (1e-8, 1e4), (0.01, 3.0), (1e-4, 1e6), (1e-4, 1e4), (0.01, 5.0), (0.0, 2.0)),
            log_params=("A", "B", "C"),
            linear=("L0", "A", "B"),
            start_grid={"alpha": (0.3, 0.6), "C": (0.5, 2.0, 8.0), "beta": (0.3, 0.6), "gamma": (0.3, 0.6)},
            formula="L0 + A*S(t)^-alpha - B*sum_k (lr[k-1]-lr[k])*(1-(C*lr[k]^-gamma*S_k(t)+1)^-beta), S = sum of rates",
            evaluator=multipower,
            cooldown_params=("B", "C", "beta", "gamma"),
            bounded_decay=True,
            # when beta -> 0 the drop term tends to B*beta*log(1 + C x), so B alone runs along a long valley
            log_product=("B", "beta"),
        )
    )
    register_curve_law(
        CurveLaw(
            name="annealing",
            params=("L0", "A", "alpha", "C"),
            bounds=((0.0, 50.0), (1e-8, 1e4), (0.01, 3.0), (0.0, 1e6)),
            log_params=("A",),
            linear=("L0", "A", "C"),
            start_grid={"alpha": (0.2, 0.4, 0.6, 0.9)},
            formula="L0 + A*S(t)^-alpha - C*S2(t), S2 = sum of m_t = lam*m_{t-1} + (lr[t-1]-lr[t]) after warm-up",
            evaluator=_annealing,
            option_grid={"lam": ANNEALING_LAMBDAS},
            cooldown_params=("C",),
        )
    )
    register_curve_law(
        CurveLaw(
            name="power",
            params=("L0", "A", "alpha"),
            bounds=((0.0, 50.0), (1e-8, 1e6), (0.01, 3.0)),
            log_params=("A",),
            linear=("L0", "A"),
            start_grid={"alpha": (0.1, 0.3, 0.5, 0.8)},
            formula="L0 + A*step^-alpha (steps, constant-rate curves)",
            evaluator=_power,
        )
    )


_register_builtins()
