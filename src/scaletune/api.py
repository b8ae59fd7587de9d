"""The top-level API: a dozen verbs, each taking the data first, re-exported as ``import scaletune as st``.

Each verb is a thin door into the library module that does the work (named in its docstring); it accepts a
file path wherever a table is expected and uses the command line's defaults (200 bootstrap resamples for
fits), so ``st.fit(path)`` and ``scaletune fit path`` give the same result. The subpackages are imported
inside the verbs: ``import scaletune`` stays light and never imports torch.

    >>> import scaletune as st
    >>> runs = st.load_runs(st.example("porian"))     # 121 isoFLOP runs of Porian et al. 2024
    >>> len(runs), sorted(runs.columns)
    (121, ['C', 'D', 'N', 'loss', 'tokens_per_param'])
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from scaletune.errors import ScaletuneError

if TYPE_CHECKING:  # the subpackages are imported by the verbs themselves
    import pandas as pd

    from scaletune.curves import Curve, CurveFit
    from scaletune.hparams import Optimum, Recommendation
    from scaletune.importers import ImportResult
    from scaletune.laws import Allocation, BacktestResult, FitResult, IsoflopResult
    from scaletune.results import Prediction
    from scaletune.stability import StabilityReport
    from scaletune.study import StudyConfig, SweepResult

__all__ = [
    "allocate",
    "analyse_stability",
    "backtest",
    "example",
    "fit",
    "fit_curves",
    "import_runs",
    "isoflop",
    "load_curves",
    "load_runs",
    "optimum",
    "predict",
    "recommend",
    "run_study",
]

# Real data bundled with the package (sources and licences in each folder's SOURCE.md).
EXAMPLES = {
    "porian": "laws/porian_rw_tuned.csv",  # Porian et al. 2024: 121 isoFLOP runs (C, N, D, loss)
    "datablations": "laws/datablations_182.csv",  # Muennighoff et al. 2023: 182 runs (N, D, U, loss)
    "overtraining": "laws/overtraining_c4/DERIVED_c4_models.csv",  # Gadre et al. 2024: C4 models, loss and task error
    "lm-sweep": "sweeps/lm_demo_runs.csv",  # a 54-run lr sweep of the built-in muP LM at 9 scales
    "curves": "curves/luo2025_25m.csv",  # Luo et al. 2025: three 25M-model loss curves under three schedules
}

# The schedules of the bundled curves (see data/curves/SOURCE.md).
EXAMPLE_SCHEDULES = {
    "cosine_24000": "cosine:steps=24000,lr=3e-4,warmup=2160,final=0.1",
    "constant_24000": "constant:steps=24000,lr=3e-4,warmup=2160",
    "wsdcon_9": "twostage:steps=16000,lr=3e-4,warmup=2160,switch=8000,ratio=0.3",
}


def example(name: str) -> Path:
    """Path of a real data set bundled with the package: ``porian``, ``datablations``, ``overtraining``,
    ``lm-sweep`` or ``curves``.

        >>> example("lm-sweep").name
        'lm_demo_runs.csv'
    """
    if name not in EXAMPLES:
        raise ScaletuneError(f"unknown example {name!r} (one of {', '.join(EXAMPLES)})")
    return Path(str(resources.files("scaletune") / "data" / EXAMPLES[name]))


def load_runs(source: str | Path, mapping: Mapping[str, str] | str | None = None, *, storage: str | None = None) -> pd.DataFrame:
    """A run table from a data file (CSV, Parquet, JSON lines), a study file (``.toml``) or a study name in
    ``storage``; ``mapping`` renames foreign columns (``"loss=val_loss,N=params"``, canonical=source).

        >>> runs = load_runs(example("lm-sweep"))
        >>> len(runs), runs["width"].unique().tolist()
        (54, [24, 32, 48])
    """
    from scaletune.runtable import parse_assignments, read_table

    path = Path(source)
    if path.suffix.lower() != ".toml" and not (storage and not path.exists()):
        return read_table(path, mapping)
    try:
        from scaletune.study import export_runs, load_study_config
    except ImportError as exc:  # the study's dependencies (optuna) are missing
        raise ScaletuneError(f"reading a study needs optuna: {exc}") from None
    study = load_study_config(path) if path.suffix.lower() == ".toml" else str(source)
    runs = export_runs(study, storage)
    if runs.empty:
        raise ScaletuneError(f"study {source}: no finished trials yet")
    if mapping:
        if isinstance(mapping, str):
            mapping = parse_assignments(mapping, "column mapping")
        runs = runs.rename(columns={src: dst for dst, src in mapping.items()})
    runs.attrs["source"] = f"study {source}"
    return runs


def _table(data: Any) -> Any:
    """A path becomes its run table; a DataFrame or dict of arrays passes through."""
    return load_runs(data) if isinstance(data, (str, Path)) else data


def fit(data: Any, law: str = "chinchilla", *, bootstrap: int = 200, **options: Any) -> FitResult:
    """Fit a scaling law (`scaletune.laws.fit`; ``law`` from `scaletune.laws.law_names`) to a run table, with
    ``bootstrap`` resamples for the intervals (200, as ``scaletune fit``). ``options``: ``y``, ``holdout``,
    ``groups``, ``weights``, ``fixed``, ``objective``, ``seed``, ``level``, ``intervals``, ...

        >>> runs = load_runs(example("porian"))
        >>> r = fit(runs[runs["tokens_per_param"] >= 5], "chinchilla", bootstrap=0)
        >>> round(r.params_["alpha"], 2), round(r.derived_["a_N"], 2)   # a_N: N* ~ C^a_N
        (0.3, 0.44)
    """
    from scaletune.laws import fit as fit_law

    return fit_law(law, _table(data), bootstrap=bootstrap, **options)


def predict(
    fit: FitResult | str | Path, at: Mapping[str, Any] | pd.DataFrame, *, level: float | None = None, observation: bool = False
) -> Prediction:
    """Predictions of a fit (a `FitResult`, a fit JSON file or ``"published:NAME"``) at the points ``at``
    (variable -> value or values), a `scaletune.results.Prediction`: value, lo, hi at ``level``, extrapolation
    (factor; 1 = inside the fitted data) and method (``calibrated``, ``bootstrap`` or ``point``); floats for one
    point given as numbers, arrays for arrays. ``observation=True`` gives the interval of a new measurement
    instead of the law's.

        >>> p = predict("published:hoffmann", {"N": 7e10, "D": 1.4e12})   # Chinchilla's own size
        >>> round(p.value, 4), p.method
        (1.9174, 'point')
    """
    import numpy as np

    from scaletune.laws import load_fit

    fitted = fit if not isinstance(fit, (str, Path)) else load_fit(fit)
    p = fitted.predict_interval(at, level=level, observation=observation)
    one = isinstance(at, Mapping) and all(np.ndim(v) == 0 for v in at.values())
    return p[0] if one else p


def backtest(data: Any, law: str = "chinchilla", **options: Any) -> BacktestResult:
    """Rolling-origin backtest (`scaletune.laws.backtest`): fit on the scales up to each origin, predict the
    larger ones; errors and interval coverage against the extrapolation distance.

        >>> runs = load_runs(example("porian"))
        >>> b = backtest(runs[runs["tokens_per_param"] >= 5], intervals="none")   # point predictions only
        >>> [(f["n_test"], round(f["median_abs_rel_error"], 3)) for f in b.summary()]   # error shrinks with the gap
        [(36, 0.067), (29, 0.052), (23, 0.039), (18, 0.021), (12, 0.016), (6, 0.011)]
    """
    from scaletune.laws import backtest as run_backtest

    return run_backtest(law, _table(data), **options)


def isoflop(data: Any, **options: Any) -> IsoflopResult:
    """IsoFLOP analysis, Chinchilla's Approach 2 (`scaletune.laws.isoflop`): the optimum N* per compute budget,
    then N*(C) = k C^a and D*(C) with intervals. ``options``: column names ``C``, ``N``, ``D``, ``y``,
    ``bootstrap`` (200), ``interpolation``, ``seed``, ...

        >>> iso = isoflop(example("porian"), bootstrap=20)
        >>> round(iso.a, 3)      # Porian et al. report 0.497 (0.491-0.505)
        0.497
    """
    from scaletune.laws import isoflop as run_isoflop

    return run_isoflop(_table(data), **options)


def allocate(fit: FitResult | str | Path, compute: float) -> Allocation:
    """Compute-optimal N*, D* and loss at ``compute`` FLOPs (C = 6ND) from a Chinchilla-form fit, a fit file
    or ``"published:NAME"`` (`scaletune.laws.allocate`).

        >>> a = allocate("published:hoffmann", 5.76e23)     # Gopher's budget
        >>> round(a.N_star / 1e9, 1)                        # billion parameters, as Hoffmann et al.'s Table 3
        40.3
    """
    from scaletune.laws import allocate as run_allocate, load_fit
    from scaletune.laws.published import ALLOCATION_ONLY

    if isinstance(fit, Path) or (isinstance(fit, str) and fit.removeprefix("published:") not in ALLOCATION_ONLY):
        fit = load_fit(fit)
    return run_allocate(fit, compute)


def optimum(runs: Any, **options: Any) -> list[Optimum]:
    """The optimal learning rate (and batch size) per scale of a sweep (`scaletune.hparams.find_optima`): a
    convex fit around the best runs, the near-optimal band, bracketing, bootstrap intervals.

        >>> optima = optimum(example("lm-sweep"), bootstrap=20)
        >>> len(optima), sum(o.bracketed for o in optima)
        (9, 9)
        >>> optima[-1]                    # print(optima[-1].summary()) for the table
        <Optimum rung=8, N=8.34e+04, D=5.24e+05: lr* 0.00213 [0.00196, 0.0028], batch 1024 tokens, loss 2.2515, bracketed>
    """
    from scaletune.hparams import find_optima

    return find_optima(_table(runs), **options)


def recommend(runs: Any, target: Mapping[str, float], **options: Any) -> Recommendation:
    """Learning rate, batch size, warm-up, schedule and loss at ``target`` (N parameters in the table's
    convention, D tokens) from a sweep of proxies (`scaletune.hparams.recommend`), each a `Prediction` with
    an interval and its extrapolation.

        >>> rec = recommend(example("lm-sweep"), {"N": 707360, "D": 524288}, bootstrap=50, loss_bootstrap=20)
        >>> rec.lr.extrapolation > 8      # 8.5x the parameters of the largest proxy
        True
    """
    from scaletune.hparams import recommend as run_recommend

    return run_recommend(_table(runs), target, **options)


def load_curves(source: str | Path, schedules: Any = None, **options: Any) -> list[Curve]:
    """Loss curves (columns step and loss, optionally lr and run_id) from a file, each with its learning-rate schedule: one spec for
    all curves or a mapping run_id -> spec (`scaletune.curves.read_curves`).

        >>> curves = load_curves(example("curves"), EXAMPLE_SCHEDULES)
        >>> [(c.name, len(c.steps)) for c in curves]
        [('cosine_24000', 171), ('constant_24000', 171), ('wsdcon_9', 95)]
    """
    from scaletune.curves import read_curves

    return read_curves(source, schedules, **options)


def fit_curves(curves: Sequence[Curve], law: str = "multipower", *, bootstrap: int = 200, **options: Any) -> CurveFit:
    """Fit a loss-curve law (``multipower``, ``annealing``, ``power``) to curves under their schedules
    (`scaletune.curves.fit_curves`) with ``bootstrap`` resamples of whole curves; predict any other schedule.

        >>> curves = load_curves(example("curves"), EXAMPLE_SCHEDULES)
        >>> fitted = fit_curves(curves, "annealing", bootstrap=0, cv=False)
        >>> pred = fitted.predict_interval("cosine:steps=72000,lr=3e-4,warmup=2160,final=0.1")   # 3x longer
        >>> round(pred.final_loss, 2), round(pred.extrapolation, 2)     # measured by Luo et al.: 3.2038
        (3.2, 3.01)
    """
    from scaletune.curves import fit_curves as run_fit_curves

    return run_fit_curves(curves, law, bootstrap=bootstrap, **options)


def run_study(study: str | Path | Mapping[str, Any] | StudyConfig, **options: Any) -> SweepResult:
    """Run or resume a multi-scale sweep (`scaletune.study.run_study`) from a study file, a dict with the
    same content or a loaded config. ``options``: ``workers``, ``backend`` (local | ray | slurm),
    ``storage``, ``progress``, ``sampler`` and ``pruner`` (a name, or an Optuna object such as
    ``optuna.samplers.TPESampler(seed=3)`` / ``optuna.pruners.HyperbandPruner()``, pickled to every
    worker), ... A script that calls it must guard the call with
    ``if __name__ == "__main__":``: local workers are spawned processes that import the script again."""
    from scaletune.study import StudyConfig, load_study_config, run_study as run

    config = study if isinstance(study, StudyConfig) else load_study_config(study)
    return run(config, **options)


def import_runs(kind: str, paths: str | Path | Sequence[str | Path], **options: Any) -> ImportResult:
    """Runs you already have (``kind``: tensorboard, wandb or csv) as a run table and curves
    (`scaletune.importers.import_logs`); ``options``: ``mapping``, ``seq_len``, ``curves`` (csv), ..."""
    from scaletune.importers import import_logs

    return import_logs(kind, [paths] if isinstance(paths, (str, Path)) else list(paths), **options)


def analyse_stability(runs: Any, curves: Any = None, **options: Any) -> StabilityReport:
    """LR sensitivity, the stable learning-rate range and its trend in N, logit-growth detectors
    (`scaletune.stability.analyse_stability`); ``target={"N": ...}`` adds predictions there.

        >>> report = analyse_stability(example("lm-sweep"), target={"N": 707360}, bootstrap=20)
        >>> report                        # print(report.summary()) for the table
        <StabilityReport: 1 arm(s), 9 scale(s), 0/54 runs flagged, L_ref 3.737>
        >>> edge = report.arms[0].edge_trend.prediction    # a Prediction: value, lo, hi, extrapolation, method
        >>> edge.method.name, round(edge.value, 5), round(edge.extrapolation, 1)
        ('EDGE', 0.00295, 8.5)
    """
    from scaletune.stability import analyse_stability as run_analysis

    return run_analysis(_table(runs), None if curves is None else _table(curves), **options)
