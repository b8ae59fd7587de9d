"""The study file (TOML): workload, ladder of scales, search space, strategy, pruner, seeds, budget, storage.

Everything is checked when the file is loaded, before any trial runs: unknown keys (with the closest known
one), wrong types, empty or inverted ranges at any rung, formulas that do not evaluate, unknown strategies,
pruners or workloads. Each problem is one `ScaletuneError` naming the key (and the rung where it matters).

Scale variables of a rung: the ladder's keys (e.g. ``width``, ``depth``), ``D`` (training tokens, not
sequences) and, when the ladder gives a formula for it, ``N`` (parameters; convention: whatever the
formula counts, state it in the study file).

What a trial runs is a `scaletune.workloads.Workload`: ``workload = "lm"`` (the built-in LM),
``"package.module:function"``, or a ``[workload]`` table with a ``command`` template; ``[resources]`` says
what one trial needs (CPUs, GPUs).
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import hashlib
import itertools
import json
import math
import re
import tomllib
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Mapping, overload

import numpy as np

from scaletune.errors import ScaletuneError
from scaletune.study._expr import evaluate, parse_formula
from scaletune.workloads import CommandWorkload, FunctionWorkload, LMWorkload, Resources, Workload, import_function

STRATEGIES = ("grid", "random", "qmc", "tpe", "gp", "scale-aware")
ADAPTIVE = ("tpe", "gp")  # sample each trial from the results so far, so their values cannot be planned ahead
SAMPLERS = ("random", "qmc", "tpe", "gp")  # the sampler names `StudyConfig.with_optuna` accepts
PRUNERS = ("none", "median", "sha", "hyperband", "curve")
KINDS = ("log", "uniform", "int", "choices", "fixed")
DEFAULT_NARROW = "scaletune.hparams.search:narrow_space"

_TOP_KEYS = (
    "name",
    "workload",
    "seeds",
    "threads",
    "storage",
    "fixed",
    "ladder",
    "space",
    "strategy",
    "pruner",
    "budget",
    "resources",
    "slurm",
)
_COMMAND_KEYS = ("command", "metrics", "timeout", "kill_grace", "workdir")
# May change between sweep calls of one study: they do not change which trials are planned.
_RUNTIME_KEYS = ("threads", "budget", "storage", "resources", "slurm")
_RUNTIME_COMMAND_KEYS = ("timeout", "kill_grace", "workdir")


def _check_keys(table: Mapping[str, Any], allowed: tuple[str, ...], where: str) -> None:
    for key in table:
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(allowed)})"
            raise ScaletuneError(f"{where}: unknown key {key!r}{hint}")


@overload
def _number(value: Any, where: str, positive: bool = ..., integer: Literal[False] = ...) -> float: ...
@overload
def _number(value: Any, where: str, positive: bool = ..., *, integer: Literal[True]) -> int: ...
def _number(value: Any, where: str, positive: bool = False, integer: bool = False) -> float:
    """A finite number from the study file (an int with ``integer``); errors name ``where``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ScaletuneError(f"{where}: expected a number, got {value!r}")
    if integer and int(value) != value:
        raise ScaletuneError(f"{where}: expected an integer, got {value!r}")
    if positive and value <= 0:
        raise ScaletuneError(f"{where}: must be positive, got {value!r}")
    return int(value) if integer else float(value)


@dataclass(frozen=True)
class Dimension:
    """One hyperparameter of the search space.

    ``kind`` is log (log-uniform float), uniform (float), int, choices or fixed. Bounds may be numbers or
    formulas of the scale variables (a scale-dependent range); ``points`` is the number of grid points.
    """

    name: str
    kind: str
    low: Any = None
    high: Any = None
    log: bool = False
    points: int | None = None
    choices: tuple = ()
    value: Any = None

    @property
    def numeric(self) -> bool:
        return self.kind in ("log", "uniform", "int")

    def bounds(self, scale: Mapping[str, float], rung_label: str = "") -> tuple[float, float]:
        """The range at a rung, evaluated and checked (non-empty, positive for log scales)."""
        scale_dependent = not all(isinstance(b, (int, float)) for b in (self.low, self.high))
        where = f"space.{self.name}" + (f" at {rung_label}" if rung_label and scale_dependent else "")
        lo, hi = (evaluate(b, scale, where) if not isinstance(b, (int, float)) else float(b) for b in (self.low, self.high))
        if not lo < hi:
            raise ScaletuneError(f"{where}: empty or inverted range [{lo:g}, {hi:g}]")
        if (self.kind == "log" or self.log) and lo <= 0:
            raise ScaletuneError(f"{where}: a log range needs positive bounds, got [{lo:g}, {hi:g}]")
        if self.kind == "int":
            lo, hi = math.ceil(lo), math.floor(hi)
            if lo > hi:
                raise ScaletuneError(f"{where}: integer range contains no integer")
        return lo, hi

    def distribution(self, lo: float | None = None, hi: float | None = None):
        """The Optuna distribution for this dimension within [lo, hi] (None for fixed values)."""
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        if self.kind == "choices":
            return CategoricalDistribution(self.choices)
        if not self.numeric:
            return None
        assert lo is not None and hi is not None  # numeric dimensions always get their range
        if self.kind == "int":
            return IntDistribution(int(lo), int(hi), log=self.log)
        return FloatDistribution(lo, hi, log=self.kind == "log")

    def grid(self, lo: float | None, hi: float | None) -> list:
        """Grid values: log-spaced for log ranges, evenly spaced otherwise, all choices, or the fixed value."""
        if self.kind == "choices":
            return list(self.choices)
        if self.kind == "fixed":
            return [self.value]
        assert lo is not None and hi is not None and self.points is not None  # a numeric grid dimension
        if self.kind == "log" or (self.kind == "int" and self.log):
            values = np.geomspace(lo, hi, self.points)
        else:
            values = np.linspace(lo, hi, self.points)
        if self.kind == "int":
            return sorted({int(round(v)) for v in values})
        return [float(min(max(v, lo), hi)) for v in values]


def _parse_dimension(name: str, spec: Any, strategy: str) -> Dimension:
    where = f"space.{name}"
    if not isinstance(spec, dict):
        return Dimension(name, "fixed", value=spec)  # a bare value means fixed
    kinds = [k for k in KINDS if k in spec]
    if len(kinds) != 1:
        raise ScaletuneError(f"{where}: give exactly one of {', '.join(KINDS)} (e.g. {{ log = [1e-4, 1e-1] }})")
    kind = kinds[0]
    _check_keys(spec, (kind, "points", "log"), where)
    points = spec.get("points")
    if points is not None:
        points = _number(points, f"{where}.points", positive=True, integer=True)
    if kind == "fixed":
        return Dimension(name, kind, value=spec[kind])
    if kind == "choices":
        choices = spec[kind]
        if not isinstance(choices, list) or not choices:
            raise ScaletuneError(f"{where}.choices: expected a non-empty list")
        if len(set(map(repr, choices))) != len(choices):
            raise ScaletuneError(f"{where}.choices: repeated value in {choices!r}")
        return Dimension(name, kind, choices=tuple(choices))
    bounds = spec[kind]
    if not isinstance(bounds, list) or len(bounds) != 2:
        raise ScaletuneError(f"{where}.{kind}: expected [low, high], got {bounds!r}")
    parsed: list[Any] = []  # numbers or parsed formulas
    for i, b in enumerate(bounds):
        if isinstance(b, str):
            parsed.append(parse_formula(b, f"{where}.{kind}[{i}]"))
        else:
            parsed.append(_number(b, f"{where}.{kind}[{i}]"))
    if strategy == "grid" and points is None:
        raise ScaletuneError(f"{where}: the grid strategy needs the number of grid points (points = K)")
    log = bool(spec.get("log", False))
    return Dimension(name, kind, low=parsed[0], high=parsed[1], log=log, points=points)


@dataclass(frozen=True)
class Rung:
    """One scale of the ladder: its index (ladder order, smallest first) and scale variables."""

    index: int
    scale: dict[str, float]

    @property
    def label(self) -> str:
        return f"rung {self.index} (" + ", ".join(f"{k}={v:g}" for k, v in self.scale.items()) + ")"


@dataclass(frozen=True)
class Strategy:
    name: str = "random"
    trials: int = 8
    seed: int = 0
    sampler: str = "qmc"  # scale-aware: how to sample inside the narrowed ranges (random | qmc)
    narrow: str = DEFAULT_NARROW  # scale-aware: "module:function" narrowing a rung's ranges


@dataclass(frozen=True)
class Budget:
    """Caps: trials (planned set), FLOPs (C = 6*N*D summed over finished trials), wall seconds per sweep call."""

    trials: int | None = None
    flops: float | None = None
    seconds: float | None = None


@dataclass(frozen=True)
class StorageSpec:
    """Where trials live: an Optuna storage URL (sqlite:///, postgresql://, journal:///path.log).

    ``heartbeat``: seconds between a running trial's heartbeats; a RUNNING trial silent for ``grace``
    seconds is stale (its process is gone): it is marked failed and re-queued.
    """

    url: str
    heartbeat: float = 10.0
    grace: float = 30.0


@dataclass(frozen=True)
class StudyConfig:
    """A validated study file. Build with `load_study_config`."""

    name: str
    workload: Workload
    rungs: tuple[Rung, ...]
    space: tuple[Dimension, ...]
    strategy: Strategy
    storage: StorageSpec
    pruner: Any = "none"  # a name of PRUNERS, or an Optuna pruner object (given in Python)
    pruner_options: dict = field(default_factory=dict)
    sampler: Any = None  # an Optuna sampler object (given in Python) that draws each trial when it starts
    seeds: tuple[int, ...] = (0,)
    threads: int = 1
    fixed: dict = field(default_factory=dict)
    budget: Budget = Budget()
    slurm: Any = None  # scaletune.study.slurm.SlurmSpec: the [slurm] table (its defaults when absent)
    source: str = "<dict>"
    raw: dict = field(default_factory=dict, repr=False)

    @property
    def fingerprint(self) -> str:
        """Hash of what defines the planned trials (not threads, budget, storage, resources, slurm, or a
        command's timeout, kill grace and folder, which may change on resume)."""
        plan = {k: v for k, v in self.raw.items() if k not in _RUNTIME_KEYS}
        if isinstance(plan["workload"], dict):
            plan["workload"] = {k: v for k, v in plan["workload"].items() if k not in _RUNTIME_COMMAND_KEYS}
        return hashlib.sha256(json.dumps(plan, sort_keys=True, default=str).encode()).hexdigest()[:16]

    @property
    def adaptive(self) -> bool:
        """Whether trials get their values when they start (TPE, GP, a sampler object) rather than planned."""
        return self.strategy.name in ADAPTIVE or self.sampler is not None

    def with_optuna(self, sampler: Any = None, pruner: Any = None) -> "StudyConfig":
        """This study with an Optuna sampler and / or pruner in place of the file's: a name (``sampler``: one
        of `SAMPLERS`, as the strategy, or for scale-aware as its sampler; ``pruner``: one of `PRUNERS`, with
        default options) or an object such as ``optuna.samplers.TPESampler(seed=3)``. A sampler object
        draws each trial's values when it starts, from the rung's results so far (``trials`` in all per
        rung, seeds taken in turn, as for TPE); each rung and each worker gets its own copy, so the object
        must pickle. The sampler is part of what plans the trials (the study's fingerprint); None keeps
        the file's choice."""
        raw, config = dict(self.raw), self
        if sampler is not None:
            strat = raw.get("strategy", {})
            strat = dict({"name": strat} if isinstance(strat, str) else strat)
            if isinstance(sampler, str):
                if sampler not in SAMPLERS:
                    raise ScaletuneError(
                        f"sampler: unknown sampler {sampler!r} (known: {', '.join(SAMPLERS)}, or an Optuna sampler object)"
                    )
                key = "sampler" if self.strategy.name == "scale-aware" else "name"
                if key == "sampler" and sampler not in ("random", "qmc"):
                    raise ScaletuneError(
                        f"sampler: the scale-aware strategy plans each rung ahead with 'random' or 'qmc', got {sampler!r}",
                        hint="pass an Optuna sampler object to sample inside the narrowed ranges as trials start",
                    )
                strat[key] = sampler
                strategy = (
                    dataclasses.replace(self.strategy, sampler=sampler)
                    if key == "sampler"
                    else dataclasses.replace(self.strategy, name=sampler)
                )
                config = dataclasses.replace(config, sampler=None, strategy=strategy)
            else:
                _require_optuna_object(sampler, "sampler")
                if self.strategy.name == "grid":
                    raise ScaletuneError(
                        "sampler: the grid strategy runs every grid point, it samples nothing",
                        hint="use strategy random, tpe or scale-aware with a sampler object",
                    )
                strat["sampler_object"] = type(sampler).__name__
                config = dataclasses.replace(config, sampler=sampler)
            raw["strategy"] = strat
        if pruner is not None:
            if isinstance(pruner, str):
                if pruner not in PRUNERS:
                    raise ScaletuneError(f"pruner: unknown pruner {pruner!r} (known: {', '.join(PRUNERS)}, or an Optuna pruner object)")
                raw["pruner"] = {"name": pruner}
            else:
                _require_optuna_object(pruner, "pruner")
                raw["pruner"] = {"object": type(pruner).__name__}
            config = dataclasses.replace(config, pruner=pruner, pruner_options={})
        config = dataclasses.replace(config, raw=raw)
        _check_plan(config)
        return config

    def ranges(self, rung: Rung) -> dict[str, tuple[float, float]]:
        """Configured (unnarrowed) ranges of the numeric hyperparameters at a rung."""
        return {d.name: d.bounds(rung.scale, rung.label) for d in self.space if d.numeric}

    def trial_config(self, rung: Rung, params: Mapping[str, Any], seed: int) -> dict:
        """The config a trial's workload receives: the [fixed] values, the rung's scale variables, the
        space's fixed values, the trial's hyperparameters, ``seed`` and ``threads``."""
        return {
            **self.fixed,
            **rung.scale,
            **{d.name: d.value for d in self.space if d.kind == "fixed"},
            **params,
            "seed": seed,
            "threads": self.threads,
        }

    def make_pruner(self):
        """The Optuna pruner named in the file (``curve`` is scaletune.curves.pruner.CurvePruner)."""
        import optuna

        if not isinstance(self.pruner, str):  # an object: a fresh copy per rung study, as each worker has its own
            return copy.deepcopy(self.pruner)
        if self.pruner == "none":
            return optuna.pruners.NopPruner()
        if self.pruner == "curve":
            try:
                from scaletune.curves.pruner import CurvePruner
            except ImportError as exc:
                raise ScaletuneError(f"pruner 'curve' is not available: {exc}", hint=getattr(exc, "hint", None)) from None
            cls = CurvePruner
        else:
            cls = {
                "median": optuna.pruners.MedianPruner,
                "sha": optuna.pruners.SuccessiveHalvingPruner,
                "hyperband": optuna.pruners.HyperbandPruner,
            }[self.pruner]
        try:
            return cls(**self.pruner_options)
        except (TypeError, ValueError, ScaletuneError) as exc:
            raise ScaletuneError(
                f"pruner {self.pruner!r}: bad options {self.pruner_options}: {exc}", hint=getattr(exc, "hint", None)
            ) from None

    def make_sampler(self, rung: Rung):
        """The Optuna sampler that samples trials at run time (TPE, GP, a sampler object) or plans them
        (random, QMC). A sampler object is copied, so that every rung starts from its seed."""
        import optuna

        if self.sampler is not None:
            return copy.deepcopy(self.sampler)

        name = self.strategy.sampler if self.strategy.name == "scale-aware" else self.strategy.name
        seed = self.strategy.seed + 1000 * rung.index  # a different but reproducible stream per rung
        if name == "grid":
            return optuna.samplers.RandomSampler(seed=seed)  # never asked: grid trials are fully planned
        if name == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        if name == "qmc":
            with warnings.catch_warnings():  # "experimental" since Optuna 3.0; the interface we use is stable
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.samplers.QMCSampler(qmc_type="sobol", scramble=True, seed=seed, warn_independent_sampling=False)
        if name == "tpe":
            return optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(10, max(2, self.strategy.trials // 3)))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.GPSampler(seed=seed, n_startup_trials=min(10, max(2, self.strategy.trials // 3)))


def _parse_resources(value: Any, threads: int) -> Resources:
    if not isinstance(value, dict):
        raise ScaletuneError(f"resources: expected a table, e.g. [resources] gpus_per_trial = 1, got {value!r}")
    _check_keys(value, ("cpus_per_trial", "gpus_per_trial", "devices"), "resources")
    cpus = _number(value.get("cpus_per_trial", threads), "resources.cpus_per_trial", positive=True, integer=True)
    gpus = _number(value.get("gpus_per_trial", 0), "resources.gpus_per_trial", integer=True)
    if gpus < 0:
        raise ScaletuneError(f"resources.gpus_per_trial: must be 0 or more, got {gpus}")
    devices = value.get("devices")
    if devices is not None:
        if not isinstance(devices, list) or not all(isinstance(d, (int, str)) and not isinstance(d, bool) for d in devices):
            raise ScaletuneError(f"resources.devices: expected a list of GPU ids, e.g. [0, 1], got {devices!r}")
        devices = tuple(str(d) for d in devices)
        if len(set(devices)) != len(devices):
            raise ScaletuneError(f"resources.devices: repeated GPU id in {list(devices)}")
    return Resources(cpus=cpus, gpus=gpus, devices=devices)


def _parse_workload(value: Any, base: Path, name: str, resources: Resources) -> Workload:
    if value == "lm":
        return LMWorkload(resources)
    if isinstance(value, str):
        return FunctionWorkload(value, resources)
    if not isinstance(value, dict):
        raise ScaletuneError(f"workload: expected 'lm', 'package.module:function' or a table with command = \"...\", got {value!r}")
    _check_keys(value, _COMMAND_KEYS, "workload")
    command = value.get("command")
    if not isinstance(command, str):
        raise ScaletuneError(f'workload.command: expected a command template string, e.g. "python train.py --lr={{lr}}", got {command!r}')
    metrics = value.get("metrics", "jsonl")
    if isinstance(metrics, dict):
        _check_keys(metrics, ("regex",), "workload.metrics")
        try:
            metrics = re.compile(metrics.get("regex", ""))
        except (re.error, TypeError) as exc:
            raise ScaletuneError(f"workload.metrics.regex: not a regular expression ({exc})") from None
        if not {"step", "loss"} <= set(metrics.groupindex):
            raise ScaletuneError("workload.metrics.regex: needs the named groups (?P<step>...) and (?P<loss>...)")
    elif metrics != "jsonl":
        raise ScaletuneError(f"workload.metrics: expected \"jsonl\" or {{ regex = '...' }}, got {metrics!r}")
    timeout = _number(value["timeout"], "workload.timeout", positive=True) if "timeout" in value else None
    grace = _number(value.get("kill_grace", 10.0), "workload.kill_grace", positive=True)
    workdir = value.get("workdir", f"{name}-runs")
    if not isinstance(workdir, str) or not workdir:
        raise ScaletuneError(f"workload.workdir: expected a folder path, got {workdir!r}")
    return CommandWorkload(command, metrics, timeout, grace, base / workdir, base, resources)


def _parse_ladder(ladder: Any, count: Callable[[dict], float | None] | None = None) -> tuple[Rung, ...]:
    """Rungs in ladder order (smallest first). ``count(scale) -> N or None`` is the workload's own parameter
    count (the built-in LM's), used when the ladder gives no ``params`` formula."""
    if not isinstance(ladder, dict) or not ladder:
        raise ScaletuneError("ladder: expected a table, e.g. [ladder] width = [32, 64], depth = [2], tokens = [1e6]")
    params = ladder.get("params")
    params_tree = parse_formula(params, "ladder.params") if isinstance(params, str) else None
    if params is not None and params_tree is None:
        raise ScaletuneError(f"ladder.params: expected a formula string for N, got {params!r}")
    ratio = ladder.get("tokens_per_param")
    if ratio is not None:
        ratio = _number(ratio, "ladder.tokens_per_param", positive=True)

    if "rungs" in ladder:
        _check_keys(ladder, ("rungs", "params", "tokens_per_param"), "ladder")
        rows = ladder["rungs"]
        if not isinstance(rows, list) or not rows or not all(isinstance(r, dict) for r in rows):
            raise ScaletuneError("ladder.rungs: expected a non-empty list of tables ([[ladder.rungs]])")
    else:
        axes = {k: v for k, v in ladder.items() if k not in ("params", "tokens_per_param")}
        if not axes:
            raise ScaletuneError("ladder: no scale variables (give lists such as width = [32, 64] or [[ladder.rungs]])")
        for key, values in axes.items():
            if not isinstance(values, list) or not values:
                raise ScaletuneError(f"ladder.{key}: expected a non-empty list of values")
        rows = [dict(zip(axes, combo)) for combo in itertools.product(*axes.values())]

    rungs = []
    for i, row in enumerate(rows):
        scale: dict[str, float] = {}
        for key, value in row.items():
            name = "D" if key == "tokens" else key
            if name in scale:
                raise ScaletuneError(f"ladder: rung {i} gives the token budget twice (tokens and D)")
            scale[name] = _number(value, f"ladder.{key} (rung {i})", positive=True)
        if params_tree is not None:
            scale["N"] = evaluate(params_tree, scale, f"ladder.params (rung {i})")
            if scale["N"] <= 0:
                raise ScaletuneError(f"ladder.params: N = {scale['N']:g} is not positive at rung {i}")
        elif count is not None and (n := count(scale)) is not None:
            scale["N"] = float(n)
        if ratio is not None and "N" not in scale:
            raise ScaletuneError(
                "ladder.tokens_per_param needs ladder.params, a formula for N in the scale "
                'variables (e.g. params = "12 * depth * width**2")'
            )
        if ratio is not None:
            if "D" in scale:
                raise ScaletuneError("ladder: give either tokens (D) or tokens_per_param, not both")
            scale["D"] = float(round(ratio * scale["N"]))
        rungs.append(scale)
    # Ladder order is smallest first (by N when known, else by the product of the scale variables), so
    # rung k only ever learns from rungs < k.
    order = sorted(range(len(rungs)), key=lambda j: (rungs[j].get("N", math.prod(rungs[j].values())), j))
    seen = set()
    out = []
    for k, j in enumerate(order):
        key = tuple(sorted(rungs[j].items()))
        if key in seen:
            raise ScaletuneError(f"ladder: rung {rungs[j]} appears twice")
        seen.add(key)
        out.append(Rung(k, rungs[j]))
    return tuple(out)


def _parse_storage(value: Any, base_dir: Path, name: str) -> StorageSpec:
    if value is None:
        return StorageSpec(f"sqlite:///{(base_dir / f'{name}.db').resolve()}")
    if isinstance(value, str):
        value = {"url": value}
    if not isinstance(value, dict):
        raise ScaletuneError(f"storage: expected a URL string or a table, got {value!r}")
    _check_keys(value, ("url", "heartbeat", "grace"), "storage")
    url = value.get("url")
    if not isinstance(url, str) or not url:
        raise ScaletuneError("storage.url: expected a storage URL (sqlite:///FILE, postgresql://..., journal:///FILE)")
    heartbeat = _number(value.get("heartbeat", 10.0), "storage.heartbeat", positive=True)
    grace = _number(value.get("grace", 3 * heartbeat), "storage.grace", positive=True)
    if grace <= heartbeat:
        raise ScaletuneError(f"storage.grace ({grace:g} s) must exceed storage.heartbeat ({heartbeat:g} s)")
    return StorageSpec(resolve_storage_url(url, base_dir), heartbeat, grace)


def resolve_storage_url(url: str, base_dir: Path | None = None) -> str:
    """Make relative sqlite / journal file paths absolute (relative to ``base_dir``, the study file's folder).

    A bare file path (``runs/study.db``, ``runs/study.log``) is accepted as sqlite / journal storage.
    """
    base_dir = base_dir or Path.cwd()
    scheme, sep, rest = url.partition("://")
    if not sep:  # a bare path
        scheme, rest = ("journal", "/" + url) if url.endswith((".log", ".jsonl")) else ("sqlite", "/" + url)
    if scheme in ("sqlite", "journal"):
        if not rest.startswith("/") or rest in ("/", "/:memory:"):
            raise ScaletuneError(f"storage: expected {scheme}:///PATH, got {url!r}")
        path = Path(rest[1:])
        return f"{scheme}:///{(path if path.is_absolute() else base_dir / path).resolve()}"
    if scheme.split("+")[0] in ("postgresql", "postgres", "mysql"):
        return url
    raise ScaletuneError(f"storage: unsupported URL {url!r} (use sqlite:///FILE, postgresql://USER@HOST/DB or journal:///FILE)")


def study_location(path: str | Path) -> tuple[str, str]:
    """(name, storage URL) of a study file, read without validating the rest: reading a stored study needs
    neither its workload nor its search space."""
    path = Path(path)
    if not path.is_file():
        raise ScaletuneError(f"{path}: no such study file")
    try:
        raw = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ScaletuneError(f"{path}: not valid TOML ({exc})") from None
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise ScaletuneError(f"{path}: missing required key 'name'")
    try:
        return name, _parse_storage(raw.get("storage"), path.parent, name).url
    except ScaletuneError as exc:
        raise ScaletuneError(f"{path}: {exc}", hint=exc.hint) from None


def load_study_config(source: str | Path | Mapping[str, Any], base_dir: str | Path | None = None) -> StudyConfig:
    """Read and validate a study file (a TOML path) or the same content as a dict.

    Relative storage paths are resolved against the study file's folder (or ``base_dir`` / the current
    folder for a dict). Raises `ScaletuneError` naming the first problem; never runs a trial.
    """
    if isinstance(source, Mapping):
        raw, where = dict(source), "<dict>"
        base = Path(base_dir) if base_dir else Path.cwd()
    else:
        path = Path(source)
        if not path.is_file():
            raise ScaletuneError(f"{path}: no such study file")
        try:
            raw = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ScaletuneError(f"{path}: not valid TOML ({exc})") from None
        except UnicodeDecodeError:
            raise ScaletuneError(f"{path}: not a text file") from None
        where = str(path)
        base = Path(base_dir) if base_dir else path.parent
    try:
        return _validate(raw, base, where)
    except ScaletuneError as exc:
        raise ScaletuneError(f"{where}: {exc}", hint=exc.hint) from None


def _validate(raw: dict, base: Path, where: str) -> StudyConfig:
    from scaletune.study.slurm import parse_slurm  # imports this module

    # Optuna objects (a dict built in Python): set aside, then applied as `StudyConfig.with_optuna` does
    objects: dict[str, Any] = {}
    if isinstance(raw.get("strategy"), dict) and not isinstance(raw["strategy"].get("sampler", ""), str):
        objects["sampler"] = raw["strategy"]["sampler"]
        raw = {**raw, "strategy": {k: v for k, v in raw["strategy"].items() if k != "sampler"}}
    if not isinstance(raw.get("pruner", ""), (str, dict)):
        objects["pruner"] = raw["pruner"]
        raw = {k: v for k, v in raw.items() if k != "pruner"}
    _check_keys(raw, _TOP_KEYS, "study")
    for key in ("name", "workload", "ladder", "space"):
        if key not in raw:
            raise ScaletuneError(f"missing required key {key!r}")
    name = raw["name"]
    if not isinstance(name, str) or not name.strip() or "/" in name:
        raise ScaletuneError(f"name: expected a non-empty string without '/', got {name!r}")
    threads = _number(raw.get("threads", 1), "threads", positive=True, integer=True)
    workload = _parse_workload(raw["workload"], base, name, _parse_resources(raw.get("resources", {}), threads))

    strat = raw.get("strategy", {})
    if isinstance(strat, str):
        strat = {"name": strat}
    if not isinstance(strat, dict):
        raise ScaletuneError(f"strategy: expected a table or a name, got {strat!r}")
    _check_keys(strat, ("name", "trials", "seed", "sampler", "narrow"), "strategy")
    sname = strat.get("name", "random")
    if sname not in STRATEGIES:
        raise ScaletuneError(f"strategy.name: unknown strategy {sname!r} (known: {', '.join(STRATEGIES)})")
    sampler = strat.get("sampler", "qmc")
    if sampler not in ("random", "qmc"):
        raise ScaletuneError(f"strategy.sampler: expected 'random' or 'qmc', got {sampler!r}")
    if sname != "scale-aware" and ("sampler" in strat or "narrow" in strat):
        raise ScaletuneError("strategy.sampler and strategy.narrow apply only to the scale-aware strategy")
    if sname == "grid" and "trials" in strat:
        raise ScaletuneError("strategy.trials: the grid strategy runs every grid point; remove 'trials'")
    strategy = Strategy(
        name=sname,
        trials=_number(strat.get("trials", 8), "strategy.trials", positive=True, integer=True),
        seed=_number(strat.get("seed", 0), "strategy.seed", integer=True),
        sampler=sampler,
        narrow=strat.get("narrow", DEFAULT_NARROW),
    )

    space_raw = raw["space"]
    if not isinstance(space_raw, dict) or not space_raw:
        raise ScaletuneError("space: expected a table of hyperparameters, e.g. lr = { log = [1e-4, 1e-1] }")
    space = tuple(_parse_dimension(k, v, sname) for k, v in space_raw.items())
    if not any(d.kind != "fixed" for d in space):
        raise ScaletuneError("space: nothing to search (every hyperparameter is fixed)")

    fixed = raw.get("fixed", {})
    if not isinstance(fixed, dict):
        raise ScaletuneError(f"fixed: expected a table of values passed to every trial, got {fixed!r}")
    rungs = _parse_ladder(raw["ladder"], _counter(workload, fixed))
    clash = {d.name for d in space} & set().union(*(r.scale for r in rungs))
    if clash:
        raise ScaletuneError(f"space.{sorted(clash)[0]}: is also a scale variable of the ladder")
    clash = set(fixed) & ({d.name for d in space} | set().union(*(r.scale for r in rungs)) | {"seed", "threads"})
    if clash:
        raise ScaletuneError(
            f"fixed.{sorted(clash)[0]}: is also set by the space, the ladder or the study (seed, threads); give each value in one place"
        )

    seeds = raw.get("seeds", [0])
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        seeds = list(range(seeds)) if seeds > 0 else seeds
    if not isinstance(seeds, list) or not seeds:
        raise ScaletuneError(f"seeds: expected a non-empty list of integers or a count, got {seeds!r}")
    seeds = tuple(_number(s, "seeds", integer=True) for s in seeds)
    if len(set(seeds)) != len(seeds):
        raise ScaletuneError(f"seeds: repeated seed in {list(seeds)}")

    pr = raw.get("pruner", {"name": "none"})
    if isinstance(pr, str):
        pr = {"name": pr}
    if not isinstance(pr, dict):
        raise ScaletuneError(f"pruner: expected a table or a name, got {pr!r}")
    pname = pr.get("name", "none")
    if pname not in PRUNERS:
        raise ScaletuneError(f"pruner.name: unknown pruner {pname!r} (known: {', '.join(PRUNERS)})")

    bud = raw.get("budget", {})
    if not isinstance(bud, dict):
        raise ScaletuneError(f"budget: expected a table, got {bud!r}")
    _check_keys(bud, ("trials", "flops", "seconds"), "budget")
    budget = Budget(
        trials=_number(bud["trials"], "budget.trials", positive=True, integer=True) if "trials" in bud else None,
        flops=_number(bud["flops"], "budget.flops", positive=True) if "flops" in bud else None,
        seconds=_number(bud["seconds"], "budget.seconds", positive=True) if "seconds" in bud else None,
    )
    config = StudyConfig(
        name=name,
        workload=workload,
        rungs=rungs,
        space=space,
        strategy=strategy,
        storage=_parse_storage(raw.get("storage"), base, name),
        pruner=pname,
        pruner_options={k: v for k, v in pr.items() if k != "name"},
        seeds=seeds,
        threads=threads,
        fixed=dict(fixed),
        budget=budget,
        slurm=parse_slurm(raw.get("slurm"), base, name),
        source=where,
        raw=raw,
    )
    for rung in rungs:  # every range at every rung, before anything runs
        config.ranges(rung)
    _check_workload(config)
    if sname == "scale-aware":
        import_function(strategy.narrow, "strategy.narrow")
    if objects:
        return config.with_optuna(**objects)
    _check_plan(config)
    return config


def _require_optuna_object(value: Any, what: str) -> None:
    import optuna

    base = optuna.samplers.BaseSampler if what == "sampler" else optuna.pruners.BasePruner
    if not isinstance(value, base):
        raise ScaletuneError(
            f"{what}: expected a name or an Optuna {what} object (optuna.{what}s.{base.__name__}), got {type(value).__name__}"
        )


def _check_plan(config: StudyConfig) -> None:
    """The pruner can be built and the plan fits ``budget.trials``."""
    config.make_pruner()
    planned = sum(n_planned(config, r) for r in config.rungs)
    if config.budget.trials is not None and planned > config.budget.trials:
        raise ScaletuneError(
            f"budget.trials: the plan has {planned} trials ({len(config.rungs)} rungs), more than the cap of {config.budget.trials}",
            hint="lower strategy.trials, the grid points or the seeds",
        )


def _counter(workload: Workload, fixed: dict) -> Callable[[dict], float | None]:
    """The workload's own parameter count at a rung (the built-in LM's total N; None when it has none)."""

    def count(scale: dict) -> float | None:
        try:
            return workload.count_params({**fixed, **scale})
        except ScaletuneError as exc:
            raise ScaletuneError(f"workload {workload} at {scale}: {exc}", hint=exc.hint) from None

    return count


def _check_workload(config: StudyConfig) -> None:
    """Every config the workload can receive (each range end and each choice, at each rung, first seed) is
    one it accepts: for the built-in LM a valid run config, for a command a template it can fill."""
    for rung in config.rungs:
        ranges = config.ranges(rung)
        base = {d.name: d.choices[0] if d.kind == "choices" else ranges[d.name][0] for d in config.space if d.kind != "fixed"}
        variants = [base] + [
            {**base, d.name: v} for d in config.space for v in (d.choices if d.kind == "choices" else ranges.get(d.name, ()))
        ]
        try:
            config.workload.validate(config.trial_config(rung, v, config.seeds[0]) for v in variants)
        except ScaletuneError as exc:
            raise ScaletuneError(f"workload {config.workload} at {rung.label}: {exc}", hint=exc.hint) from None


def n_planned(config: StudyConfig, rung: Rung) -> int:
    """Number of trials planned at a rung: grid points x seeds, or trials x seeds (trials for TPE / GP and a
    sampler object)."""
    if config.strategy.name == "grid":
        ranges = config.ranges(rung)
        return math.prod(len(d.grid(*ranges.get(d.name, (None, None)))) for d in config.space) * len(config.seeds)
    if config.adaptive:
        return config.strategy.trials
    return config.strategy.trials * len(config.seeds)
