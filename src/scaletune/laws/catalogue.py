"""The law catalogue: every law declared once, as data.

A `Law` holds its formula (for people), parameter names, bounds, start grid, a vectorised model in log
space with its analytic Jacobian (for L-BFGS-B), an optional variable projection (which parameters enter
linearly, so that a dense grid over the others costs one non-negative least squares each), and derived
quantities. The fitter, the bootstrap, the CLI and the plots work from this declaration only.

Conventions: logs are natural logs; ``N`` parameters, ``D`` tokens, ``C`` FLOPs (6ND unless the data
says otherwise), ``M`` tokens per parameter (D/N), ``U`` unique tokens, ``loss`` in nats per token.

Adding a law takes a few lines::

    from scaletune.laws import Law, register_law
    register_law(Law(
        name="linear_decay", variables=("N",), params=("E", "A", "alpha"),
        formula="L = E + A * N^-alpha",
        model=lambda p, x: p["E"] + p["A"] * x["N"] ** -p["alpha"],
        bounds={"E": (0, 10), "A": (0, 1e6), "alpha": (0, 3)},
        start={"E": [1, 2], "A": [10, 100, 1000], "alpha": [0.1, 0.3, 0.6]},
    ))

A law given only ``model`` (a function of parameter and variable dicts) is fitted by multi-start
L-BFGS-B over its start grid with finite-difference gradients.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from scaletune.errors import ScaletuneError
from scaletune.runtable import FLOPS_PER_PARAM_TOKEN

Arrays = Mapping[str, np.ndarray]
LogOut = tuple[np.ndarray, "np.ndarray | None"]  # log y and its Jacobian (None: no analytic gradient)
LogModel = Callable[[np.ndarray, Arrays], LogOut]
Form = tuple[Any, Any, Any, Any, Any]  # (E, A, alpha, B, beta) of a Chinchilla-form law: floats or sample arrays
Derived = Callable[[Mapping[str, Any]], Any]  # a derived quantity of a parameter dict (floats or sample arrays)


@dataclass(frozen=True)
class Projection:
    """Variable projection: with the ``grid`` parameters fixed, the prediction is ``basis @ c`` with c >= 0.

    ``basis(g, x)`` takes grid values ``g`` (name -> array of G values) and returns an array (G, k, n)
    (one row per linear coefficient, so the fitter's products run over contiguous memory);
    ``to_params(g, c)`` maps grid values and linear coefficients c (G, k) to all parameters (name -> (G,)).
    """

    grid: Mapping[str, np.ndarray]
    basis: Callable[[Arrays, Arrays], np.ndarray]
    to_params: Callable[[Arrays, np.ndarray], dict[str, np.ndarray]]


@dataclass(frozen=True, eq=False)
class Law:
    """A scaling law: ``y = f(variables; params)``, declared once and used everywhere.

    Give either ``log_model(theta, x) -> (log y, d log y / d theta or None)`` (vectorised, fast) or
    ``model(params: dict, x: dict) -> y`` (simple, for user laws). ``start`` is the multi-start grid,
    ``derived`` maps names to functions of a parameter dict (arrays, so bootstrap samples vectorise).
    """

    name: str
    variables: tuple[str, ...]
    params: tuple[str, ...]
    formula: str
    bounds: Mapping[str, tuple[float, float]]
    start: Mapping[str, Sequence[float]]
    log_model: LogModel | None = None
    model: Callable[[Mapping[str, np.ndarray], Arrays], np.ndarray] | None = None
    projection: Projection | None = None
    derived: Mapping[str, Derived] = field(default_factory=dict)
    response: str = "loss"
    citation: str = ""
    # which derived names give the Chinchilla form E + A/N^alpha + B/D^beta (for allocation)
    chinchilla_form: Callable[[Mapping[str, Any]], Form] | None = None
    spec: str = ""  # how get_law() names it, e.g. "powerlaw:N,D"; defaults to name
    log_linear: bool = False  # log y is linear in the parameters (least squares in log space is exact)

    def __post_init__(self) -> None:
        if self.log_model is None and self.model is None:
            raise ScaletuneError(f"law {self.name!r}: give log_model or model")
        missing = [p for p in self.params if p not in self.bounds]
        if missing:
            raise ScaletuneError(f"law {self.name!r}: no bounds for parameter {missing[0]!r}")
        if not self.spec:
            object.__setattr__(self, "spec", self.name)

    def log_predict(self, theta: np.ndarray, x: Arrays) -> tuple[np.ndarray, np.ndarray | None]:
        """Natural log of the prediction and its Jacobian (n, P) or None when the law has no gradient."""
        if self.log_model is not None:
            return self.log_model(np.asarray(theta, dtype=float), x)
        assert self.model is not None  # __post_init__ requires one of the two
        with np.errstate(all="ignore"):
            y = np.asarray(self.model(dict(zip(self.params, theta)), x), dtype=float)
            return np.log(y), None

    def predict(self, params: Mapping[str, float], x: Arrays) -> np.ndarray:
        theta = np.array([params[p] for p in self.params], dtype=float)
        with np.errstate(all="ignore"):
            out: np.ndarray = np.exp(self.log_predict(theta, x)[0])
        return out

    def derive(self, params: Mapping[str, Any]) -> dict[str, np.ndarray]:
        with np.errstate(all="ignore"):
            return {name: np.asarray(fn(params), dtype=float) for name, fn in self.derived.items()}

    def start_points(self) -> np.ndarray:
        """The Cartesian start grid, shape (S, P)."""
        axes = [np.asarray(self.start.get(p, [np.mean(np.clip(self.bounds[p], -1e3, 1e3))]), float) for p in self.params]
        return np.array(list(itertools.product(*axes)), dtype=float)


# --------------------------------------------------------------------------- helpers for the built-ins


def _lse(terms: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """log(sum exp(terms)) and the softmax weights (the derivative w.r.t. each term)."""
    t = np.stack(terms)
    m = t.max(axis=0)
    e = np.exp(t - m)
    s = e.sum(axis=0)
    return m + np.log(s), e / s


def _safe_log(c: np.ndarray) -> np.ndarray:
    # A coefficient NNLS set to zero becomes a very small positive one, so its log-parameter stays finite.
    out: np.ndarray = np.log(np.maximum(c, 1e-30))
    return out


EXPONENT_GRID = np.linspace(0.02, 1.5, 25)


# --------------------------------------------------------------------------- chinchilla


def _chinchilla_log_model(theta: np.ndarray, x: Arrays) -> LogOut:
    a, b, e, alpha, beta = theta
    lnN, lnD = np.log(x["N"]), np.log(x["D"])
    out, w = _lse([a - alpha * lnN, b - beta * lnD, np.full_like(lnN, e)])
    jac = np.stack([w[0], w[1], w[2], -w[0] * lnN, -w[1] * lnD], axis=1)
    return out, jac


def _chinchilla_to_params(g: Arrays, c: np.ndarray) -> dict[str, np.ndarray]:
    return {"a": _safe_log(c[:, 0]), "b": _safe_log(c[:, 1]), "e": _safe_log(c[:, 2]), "alpha": g["alpha"], "beta": g["beta"]}


def _chinchilla_form(p: Mapping[str, Any]) -> Form:
    return np.exp(p["e"]), np.exp(p["a"]), p["alpha"], np.exp(p["b"]), p["beta"]


def _alloc_derived(form: Callable[[Mapping[str, Any]], Form]) -> dict[str, Derived]:
    def G(p: Mapping[str, Any]) -> Any:
        E, A, alpha, B, beta = form(p)
        return (alpha * A / (beta * B)) ** (1.0 / (alpha + beta))

    def a_N(p: Mapping[str, Any]) -> Any:
        _, _, alpha, _, beta = form(p)
        return beta / (alpha + beta)

    def a_D(p: Mapping[str, Any]) -> Any:
        _, _, alpha, _, beta = form(p)
        return alpha / (alpha + beta)

    return {"G": G, "a_N": a_N, "a_D": a_D}


def _grid_product(axes: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    names = list(axes)
    mesh = np.meshgrid(*[np.asarray(axes[n], float) for n in names], indexing="ij")
    return {n: m.ravel() for n, m in zip(names, mesh)}


def _chinchilla() -> Law:
    def basis(g: Arrays, x: Arrays) -> np.ndarray:
        lnN, lnD = np.log(x["N"]), np.log(x["D"])
        colN = np.exp(-np.outer(g["alpha"], lnN))
        colD = np.exp(-np.outer(g["beta"], lnD))
        return np.stack([colN, colD, np.ones_like(colN)], axis=1)

    derived = {"A": lambda p: np.exp(p["a"]), "B": lambda p: np.exp(p["b"]), "E": lambda p: np.exp(p["e"])}
    derived.update(_alloc_derived(_chinchilla_form))
    return Law(
        name="chinchilla",
        variables=("N", "D"),
        params=("a", "b", "e", "alpha", "beta"),
        formula="L = E + A/N^alpha + B/D^beta, fitted as log L = LSE(a - alpha log N, b - beta log D, e); A=e^a, B=e^b, E=e^e",
        bounds={"a": (-30.0, 60.0), "b": (-30.0, 60.0), "e": (-10.0, 5.0), "alpha": (0.0, 3.0), "beta": (0.0, 3.0)},
        start={
            "a": [0, 5, 10, 15, 20, 25],
            "b": [0, 5, 10, 15, 20, 25],
            "e": [-1, -0.5, 0, 0.5, 1],
            "alpha": [0, 0.5, 1, 1.5, 2],
            "beta": [0, 0.5, 1, 1.5, 2],
        },
        log_model=_chinchilla_log_model,
        projection=Projection(_grid_product({"alpha": EXPONENT_GRID, "beta": EXPONENT_GRID}), basis, _chinchilla_to_params),
        derived=derived,
        chinchilla_form=_chinchilla_form,
        citation="Hoffmann et al. 2022 (Approach 3); LSE form and summed Huber as in Besiroglu et al. 2024",
    )


# --------------------------------------------------------------------------- one-variable power law with offset


def _offset_powerlaw(var: str, name: str) -> Law:
    def log_model(theta: np.ndarray, x: Arrays) -> LogOut:
        a, e, alpha = theta
        lnx = np.log(x[var])
        out, w = _lse([a - alpha * lnx, np.full_like(lnx, e)])
        return out, np.stack([w[0], w[1], -w[0] * lnx], axis=1)

    def basis(g: Arrays, x: Arrays) -> np.ndarray:
        col = np.exp(-np.outer(g["alpha"], np.log(x[var])))
        return np.stack([col, np.ones_like(col)], axis=1)

    def to_params(g: Arrays, c: np.ndarray) -> dict[str, np.ndarray]:
        return {"a": _safe_log(c[:, 0]), "e": _safe_log(c[:, 1]), "alpha": g["alpha"]}

    return Law(
        name=name,
        variables=(var,),
        params=("a", "e", "alpha"),
        formula=f"y = E + A*{var}^-alpha, fitted as log y = LSE(a - alpha log {var}, e); A=e^a, E=e^e",
        bounds={"a": (-30.0, 80.0), "e": (-10.0, 5.0), "alpha": (0.0, 3.0)},
        start={"a": [0, 5, 10, 20, 40], "e": [-1, 0, 1], "alpha": [0.05, 0.2, 0.5, 1.0]},
        log_model=log_model,
        projection=Projection({"alpha": np.linspace(0.005, 1.5, 300)}, basis, to_params),
        derived={"A": lambda p: np.exp(p["a"]), "E": lambda p: np.exp(p["e"])},
        citation="Kaplan et al. 2020 L(C); Hoffmann et al. 2022",
        spec=name if name == "compute" else f"offset_powerlaw:{var}",
    )


# --------------------------------------------------------------------------- log-linear power law


def _powerlaw(variables: tuple[str, ...], response: str = "y") -> Law:
    params = ("log_k",) + tuple(f"c_{v}" for v in variables)

    def log_model(theta: np.ndarray, x: Arrays) -> LogOut:
        logs = np.stack([np.log(np.asarray(x[v], float)) for v in variables], axis=1)
        out = theta[0] + logs @ theta[1:]
        return out, np.concatenate([np.ones((len(out), 1)), logs], axis=1)

    bounds = {"log_k": (-200.0, 200.0)}
    bounds.update({f"c_{v}": (-10.0, 10.0) for v in variables})
    return Law(
        name="powerlaw",
        variables=variables,
        params=params,
        formula="y = k * " + " * ".join(f"{v}^c_{v}" for v in variables) + " (log k natural log)",
        bounds=bounds,
        start={"log_k": [0.0], **{f"c_{v}": [0.0] for v in variables}},
        log_model=log_model,
        derived={"k": lambda p: np.exp(p["log_k"])},
        response=response,
        log_linear=True,
        citation="form of optimal-LR / batch-size laws (e.g. DeepSeek-AI 2024, Li et al. 2025 StepLaw)",
        spec="powerlaw:" + ",".join(variables),
    )


# --------------------------------------------------------------------------- data-constrained (Muennighoff et al. 2023)


def data_constrained_terms(p: Mapping[str, np.ndarray], x: Arrays) -> tuple[np.ndarray, np.ndarray]:
    """Effective N' and D' of Muennighoff et al. 2023 (repeated tokens and excess parameters decay)."""
    A, B = np.exp(p["a"]), np.exp(p["b"])
    alpha, beta = p["alpha"], p["beta"]
    N, D, U = x["N"], x["D"], x["U"]
    G = ((alpha * A) / (beta * B)) ** (1 / (alpha + beta))
    n_opt_for_U = (U * G) ** (beta / alpha) * G  # compute-optimal N for D = U (Chinchilla form, 6ND)
    R_D = np.maximum(D / U - 1, 0)
    U_N = np.minimum(N, n_opt_for_U)
    R_N = np.maximum(N / U_N - 1, 0)
    D_eff = U + U * p["R_D"] * (1 - np.exp(-R_D / p["R_D"]))
    N_eff = U_N + U_N * p["R_N"] * (1 - np.exp(-R_N / p["R_N"]))
    return N_eff, D_eff


def _data_constrained() -> Law:
    names = ("a", "b", "e", "alpha", "beta", "R_D", "R_N")

    def log_model(theta: np.ndarray, x: Arrays) -> LogOut:
        p = dict(zip(names, theta))
        with np.errstate(all="ignore"):
            N_eff, D_eff = data_constrained_terms(p, x)
            out, _ = _lse([p["a"] - p["alpha"] * np.log(N_eff), p["b"] - p["beta"] * np.log(D_eff), np.full(len(N_eff), p["e"])])
        return out, None

    derived = {"A": lambda p: np.exp(p["a"]), "B": lambda p: np.exp(p["b"]), "E": lambda p: np.exp(p["e"])}
    derived.update(_alloc_derived(_chinchilla_form))
    return Law(
        name="data_constrained",
        variables=("N", "D", "U"),
        params=names,
        formula="L = E + A/N'^alpha + B/D'^beta, D' = U + U R_D (1 - exp(-(D/U-1)/R_D)), "
        "N' = U_N + U_N R_N (1 - exp(-(N/U_N-1)/R_N)), U_N = min(N, N_opt(D=U)); A=e^a, B=e^b, E=e^e",
        bounds={
            "a": (-30.0, 60.0),
            "b": (-30.0, 60.0),
            "e": (-10.0, 5.0),
            "alpha": (0.01, 3.0),
            "beta": (0.01, 3.0),
            "R_D": (0.1, 1000.0),
            "R_N": (0.1, 1000.0),
        },
        start={
            "a": [5.0, 10.0],
            "b": [5.0, 10.0],
            "e": [0.0, 0.5],
            "alpha": [0.3, 0.6],
            "beta": [0.3, 0.6],
            "R_D": [2.0, 5.0, 10.0, 20.0, 50.0],
            "R_N": [2.0, 5.0, 10.0, 20.0, 50.0],
        },
        log_model=log_model,
        derived=derived,
        chinchilla_form=_chinchilla_form,
        citation="Muennighoff et al. 2023, Scaling Data-Constrained Language Models (github.com/huggingface/datablations)",
    )


# --------------------------------------------------------------------------- over-trained (Gadre et al. 2024)


def _overtrained() -> Law:
    # L(N, M) = a N^b + c 6^(b/2) (M N)^b + E with b < 0, M = D/N tokens per parameter: the Chinchilla form
    # with one exponent (b = -eta) written so that L(C, M) = E + (a M^(-b/2)... ) C^(b/2) stays simple
    # (the 6 is C = 6ND's).
    def log_model(theta: np.ndarray, x: Arrays) -> LogOut:
        a, b, c, E = theta
        N, M = x["N"], x["M"]
        t1 = N**b
        t2 = FLOPS_PER_PARAM_TOKEN ** (b / 2) * (M * N) ** b
        y = a * t1 + c * t2 + E
        dt2 = t2 * (0.5 * np.log(FLOPS_PER_PARAM_TOKEN) + np.log(M * N))
        jac = np.stack([t1, a * t1 * np.log(N) + c * dt2, t2, np.ones_like(y)], axis=1) / y[:, None]
        return np.log(y), jac

    def basis(g: Arrays, x: Arrays) -> np.ndarray:
        lnN, lnMN = np.log(x["N"]), np.log(x["M"] * x["N"])
        b = g["b"][:, None]
        return np.stack(
            [np.exp(b * lnN), np.exp(b * (0.5 * np.log(FLOPS_PER_PARAM_TOKEN) + lnMN)), np.ones((len(g["b"]), len(lnN)))], axis=1
        )

    def to_params(g: Arrays, c: np.ndarray) -> dict[str, np.ndarray]:
        return {"a": c[:, 0], "b": g["b"], "c": c[:, 1], "E": c[:, 2]}

    return Law(
        name="overtrained",
        variables=("N", "M"),
        params=("a", "b", "c", "E"),
        formula="L = a N^b + c 6^(b/2) (M N)^b + E, M = D/N tokens per parameter, b < 0",
        bounds={"a": (0.0, 1e12), "b": (-3.0, 0.0), "c": (0.0, 1e12), "E": (0.0, 100.0)},
        start={"a": [10.0, 100.0, 1000.0], "b": [-0.1, -0.3, -0.6], "c": [10.0, 100.0, 1000.0], "E": [1.0, 2.0]},
        log_model=log_model,
        projection=Projection({"b": -np.linspace(0.005, 1.5, 300)}, basis, to_params),
        derived={"eta": lambda p: -p["b"]},
        citation="Gadre et al. 2024, Language models scale reliably with over-training and on downstream tasks",
    )


# --------------------------------------------------------------------------- critical batch size (Kaplan et al. 2020)


def _critical_batch() -> Law:
    def log_model(theta: np.ndarray, x: Arrays) -> LogOut:
        log_B, alpha_B = theta
        lnL = np.log(x["loss"])
        out = log_B - lnL / alpha_B
        return out, np.stack([np.ones_like(lnL), lnL / alpha_B**2], axis=1)

    return Law(
        name="critical_batch",
        variables=("loss",),
        params=("log_B", "alpha_B"),
        formula="B_crit(L) = B* / L^(1/alpha_B), B* = e^log_B (tokens), L in nats/token",
        bounds={"log_B": (-50.0, 100.0), "alpha_B": (0.01, 10.0)},
        start={"log_B": [5.0, 10.0, 20.0], "alpha_B": [0.1, 0.2, 0.5, 1.0]},
        log_model=log_model,
        derived={"B_star": lambda p: np.exp(p["log_B"])},
        response="batch_size",
        citation="Kaplan et al. 2020, Scaling Laws for Neural Language Models (B* ~ 2e8 tokens, alpha_B ~ 0.21)",
    )


# --------------------------------------------------------------------------- downstream error (Gadre et al. 2024)


def _downstream_error() -> Law:
    # Err(L) = eps - k exp(-gamma L): the error falls from its plateau eps (a random model's error, at most
    # the task's chance level) as the loss falls; k is fitted as log k (it spans many decades). With gamma
    # fixed, eps and k enter linearly with the basis (1, -exp(-gamma L)): a dense gamma grid costs one NNLS each.
    def log_model(theta: np.ndarray, x: Arrays) -> LogOut:
        eps, log_k, gamma = theta
        L = x["loss"]
        t = np.exp(log_k - gamma * L)  # k exp(-gamma L)
        y = eps - t
        with np.errstate(all="ignore"):
            jac = np.stack([np.ones_like(L), -t, L * t], axis=1) / y[:, None]
            return np.log(y), jac

    def basis(g: Arrays, x: Arrays) -> np.ndarray:
        t = np.exp(-np.outer(g["gamma"], x["loss"]))
        return np.stack([np.ones_like(t), -t], axis=1)

    def to_params(g: Arrays, c: np.ndarray) -> dict[str, np.ndarray]:
        return {"eps": c[:, 0], "log_k": _safe_log(c[:, 1]), "gamma": g["gamma"]}

    return Law(
        name="downstream_error",
        variables=("loss",),
        params=("eps", "log_k", "gamma"),
        formula="Err = eps - k exp(-gamma L), k = e^log_k, L loss in nats/token, Err in [0, 1]; eps <= chance-level error when given",
        bounds={"eps": (1e-6, 1.0), "log_k": (-30.0, 60.0), "gamma": (1e-3, 20.0)},
        start={"eps": [0.5, 0.8, 1.0], "log_k": [0.0, 2.0, 5.0], "gamma": [0.3, 1.0, 3.0]},
        log_model=log_model,
        projection=Projection({"gamma": np.linspace(0.01, 10.0, 500)}, basis, to_params),
        derived={"k": lambda p: np.exp(p["log_k"])},
        response="error",
        citation="Gadre et al. 2024, Language models scale reliably with over-training and on downstream tasks (eq. 5)",
    )


# --------------------------------------------------------------------------- registry

_BUILTIN: dict[str, Callable[..., Law]] = {
    "chinchilla": lambda: _chinchilla(),
    "compute": lambda: _offset_powerlaw("C", "compute"),
    "data_constrained": lambda: _data_constrained(),
    "overtrained": lambda: _overtrained(),
    "critical_batch": lambda: _critical_batch(),
    "downstream_error": lambda: _downstream_error(),
}
_PARAMETRISED = {"powerlaw": "N,D", "offset_powerlaw": "x"}
_USER: dict[str, Law] = {}
_CACHE: dict[str, Law] = {}


def register_law(law: Law, *, replace: bool = False) -> Law:
    """Add a user law to the catalogue so that `get_law`, `fit` and the CLI find it by name."""
    if not replace and (law.name in _BUILTIN or law.name in _PARAMETRISED or law.name in _USER):
        raise ScaletuneError(f"a law named {law.name!r} already exists (pass replace=True to overwrite)")
    _USER[law.name] = law
    _CACHE.pop(law.name, None)
    return law


def law_names() -> list[str]:
    return [*_BUILTIN, *(f"{k}:VARS" for k in _PARAMETRISED), *_USER]


def get_law(spec: str | Law, variables: Sequence[str] | None = None) -> Law:
    """Look a law up by name; ``powerlaw:N,D`` (or ``variables=``) picks the variables of parametrised laws."""
    if isinstance(spec, Law):
        return spec
    name, _, vars_text = str(spec).partition(":")
    name = name.strip()
    if variables is not None:
        vars_text = ",".join(variables)
    if name in _USER:
        return _USER[name]
    if name in _PARAMETRISED:
        vars_text = vars_text or _PARAMETRISED[name]
        names = tuple(v.strip() for v in vars_text.split(",") if v.strip())
        if not names or (name == "offset_powerlaw" and len(names) != 1):
            raise ScaletuneError(f"law {spec!r}: expected {name}:VAR" + ("[,VAR...]" if name == "powerlaw" else ""))
        key = f"{name}:{','.join(names)}"
        if key not in _CACHE:
            _CACHE[key] = _powerlaw(names) if name == "powerlaw" else _offset_powerlaw(names[0], "offset_powerlaw")
        return _CACHE[key]
    if name in _BUILTIN:
        if name not in _CACHE:
            _CACHE[name] = _BUILTIN[name]()
        return _CACHE[name]
    raise ScaletuneError(f"unknown law {spec!r} (known: {', '.join(law_names())}; or published:NAME)")
