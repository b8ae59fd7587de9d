"""Scaling laws: a catalogue declared as data, robust fits with bootstrap intervals, isoFLOP analysis,
compute-optimal allocation and published laws. numpy/scipy/pandas only (no torch)."""

from scaletune.laws.catalogue import Law, Projection, get_law, law_names, register_law
from scaletune.laws.fitting import FitResult, fit, holdout_mask

__all__ = ["Law", "Projection", "FitResult", "fit", "get_law", "law_names", "register_law", "holdout_mask"]
