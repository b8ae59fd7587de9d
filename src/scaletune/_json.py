"""Plain JSON values from numpy-laden records (shared by fit results and command output).

The one JSON policy: everything scaletune writes (`--json`, `--out`, ``to_json``) is strict JSON with NaN and
infinities written as ``null``; readers turn a ``null`` where a number belongs back into NaN (`nan_from_null`).
"""

from __future__ import annotations

import json
import math
from typing import Any, Iterable

import numpy as np

from scaletune.errors import ScaletuneError


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


def dumps(obj: Any, indent: int | None = 1) -> str:
    """Strict JSON of ``obj`` (numpy unpacked, NaN / inf -> null): the one policy for everything written."""
    return json.dumps(to_plain(obj, nan_to_null=True), indent=indent, allow_nan=False)


def nan_from_null(values: Any) -> Any:
    """A list (nested) of numbers read from JSON with ``null`` for NaN, as floats with NaN."""
    if isinstance(values, list):
        return [nan_from_null(v) for v in values]
    return math.nan if values is None else values


def load_document(text: str, what: str, keys: Iterable[str], writer: str) -> dict[str, Any]:
    """The JSON object a result's ``to_json`` wrote, or one `ScaletuneError` saying the text is not ``what`` (not
    JSON, or without ``keys``) and that ``writer`` writes such files."""
    try:
        d = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ScaletuneError(f"not {what} (invalid JSON: {exc})") from None
    if not isinstance(d, dict) or not set(keys) <= set(d):
        raise ScaletuneError(f"not {what}: expected the JSON written by {writer}")
    return d


def fields_of(obj: Any, *names: str) -> dict[str, Any]:
    """``{name: obj.name}`` for ``names``, in order: the fields a ``to_dict`` passes through unchanged."""
    return {name: getattr(obj, name) for name in names}
