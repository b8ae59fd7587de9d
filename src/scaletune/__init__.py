"""scaletune: predictable scaling of neural-network training.

Parameterise (SP, muP, CompleteP) -> sweep small proxies -> fit scaling laws with honest uncertainty
-> recommend hyperparameters and predict loss at the target -> check the prediction.

Fitting and analysis (`scaletune.laws`, `scaletune.hparams`, `scaletune.curves`) need only
numpy/scipy/pandas; `scaletune.train` and `scaletune.study` need the `train` extra (PyTorch).
"""

from scaletune.errors import ScaletuneError

__version__ = "0.1.0"
__all__ = ["ScaletuneError", "__version__"]
