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
from types import ModuleType
from typing import Any

from scaletune.errors import ScaletuneError as ScaletuneError  # re-exported (see __getattr__ for __all__)

__version__ = "0.1.0"


def _api() -> ModuleType:
    # by name, not `from scaletune import api`: modules that import the package for __version__ must not appear
    # to depend on every layer the verbs reach (the import contract in pyproject.toml); scaletune.api itself is
    # light (its verbs import their packages), and its __all__ is the one list of the verbs
    return importlib.import_module("scaletune.api")


def __getattr__(name: str) -> Any:
    if name == "__all__":
        return ["ScaletuneError", "__version__", *_api().__all__]
    if name in _api().__all__:
        return getattr(_api(), name)
    raise AttributeError(f"module 'scaletune' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_api().__all__})
