"""Multi-scale studies: a ladder of scales x a search space, on Optuna storage, run locally or on Ray.

    >>> from scaletune.study import load_study_config, run_study, export_runs
    >>> config = load_study_config("examples/tiny_lm.toml")      # validated before anything runs
    >>> result = run_study(config, workers=2)                      # resumable: run it again after a crash
    >>> runs = export_runs(config)                                 # the run table `scaletune fit` reads

What a trial runs is a `scaletune.workloads.Workload`: the built-in LM (``workload = "lm"``), a Python
function (``"package.module:function"``) or a command template (a ``[workload]`` table; the script reports
through `scaletune.reporting`). A Python-function workload is
``fn(config: dict, report: Callable[[int, float], bool]) -> dict``: ``config`` holds the
rung's scale variables, the trial's hyperparameters, the study's ``[fixed]`` values, ``seed`` and
``threads``; ``report(step, val_loss)`` records an intermediate validation loss and returns True when
the trial must stop (pruned); the returned dict holds run-table columns (loss, status, N, D, C,
seconds, ...) and optionally ``curve``, a list of {step, tokens, lr, train_loss, val_loss}.
"""

from scaletune.study.config import StudyConfig, load_study_config
from scaletune.study.results import export_curves, export_runs, study_status
from scaletune.study.runner import SweepResult, run_study

__all__ = ["StudyConfig", "SweepResult", "export_curves", "export_runs", "load_study_config", "run_study", "study_status"]
