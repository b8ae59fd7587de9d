"""Plain JSON values from numpy-laden records (shared by fit results and command output)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def to_plain(obj: Any, nan_to_null: bool = False) -> Any:
    """Unpack numpy scalars and arrays, recursively; with ``nan_to_null`` NaN / inf become None (strict JSON)."""
    if isinstance(obj, dict):
        return {str(k): to_plain(v, nan_to_null) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v, nan_to_null) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_plain(obj.tolist(), nan_to_null)
    if isinstance(obj, (np.floating, np.integer, np.bool_)):
        obj = obj.item()
    if nan_to_null and isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj
