"""scaletune: predictable scaling of neural-network training.

Parameterise (SP, muP, CompleteP) -> sweep small proxies -> fit scaling laws with honest uncertainty
-> recommend hyperparameters and predict loss at the target -> check the prediction.

The top-level verbs (`scaletune.api`) take the data first and are imported on first use, so
``import scaletune`` stays light and never imports torch:

    >>> import scaletune as st
    >>> p = st.predict("published:hoffmann", {"N": 7e10, "D": 1.4e12})
    >>> round(p.value, 3)
    1.917

Fitting and analysis (`scaletune.laws`, `scaletune.hparams`, `scaletune.curves`, `scaletune.stability`) need
only numpy/scipy/pandas; `scaletune.train` and the built-in LM workload need the `train` extra (PyTorch).
"""

import importlib

from scaletune.errors import ScaletuneError

__version__ = "0.1.0"

_VERBS = (
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
)
__all__ = ["ScaletuneError", "__version__", *_VERBS]


def __getattr__(name: str):
    if name in _VERBS:
        # by name, not `from scaletune import api`: modules that import the package for __version__ must not
        # appear to depend on every layer the verbs reach (the import contract in pyproject.toml)
        return getattr(importlib.import_module("scaletune.api"), name)
    raise AttributeError(f"module 'scaletune' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_VERBS})
