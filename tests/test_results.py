"""The shared results vocabulary (scaletune.results) and the foundation helpers every stage uses."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from scaletune._json import dumps, load_document, nan_from_null
from scaletune.errors import ScaletuneError
from scaletune.results import Prediction, format_interval, percentile_interval
from scaletune.runtable import ok_runs, training_flops


def test_percentile_interval_ignores_failed_samples_and_reports_an_empty_slice_as_nan():
    rng = np.random.default_rng(0)
    x = rng.normal(size=20_000)
    lo, hi = percentile_interval(np.append(x, [np.nan] * 50))  # failed replicates do not move the interval
    assert (lo, hi) == pytest.approx((-1.96, 1.96), abs=0.05)
    assert isinstance(lo, float)
    cols = np.column_stack([x, 2 * x, np.full(len(x), np.nan)])
    lo, hi = percentile_interval(cols, level=0.5)
    assert lo[:2] == pytest.approx([-0.674, -1.349], abs=0.03) and math.isnan(lo[2]) and math.isnan(hi[2])
    with pytest.raises(ValueError):
        percentile_interval(x, level=1.5)


def test_a_vector_prediction_indexes_to_points_and_round_trips_through_strict_json():
    p = Prediction(
        np.array([2.0, 3.0]),
        np.array([1.8, np.nan]),
        np.array([2.2, 3.5]),
        0.9,
        np.array([1.0, 4.0]),
        "calibrated",
        {"distance": np.array([0.0, math.log(4.0)])},
    )
    assert len(p) == 2
    second = p[1]
    assert (second.value, second.hi, second.extrapolation, second.level) == (3.0, 3.5, 4.0, 0.9)
    assert math.isnan(second.lo) and second.interval[1] == 3.5
    text = dumps(p.to_dict())
    doc = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))
    assert doc["lo"] == [1.8, None] and doc["method"] == "calibrated"
    back = Prediction.from_dict(doc)
    np.testing.assert_array_equal(back.value, p.value)
    np.testing.assert_array_equal(back.lo, p.lo)  # null read back as NaN
    assert back.level == 0.9


def test_a_point_prediction_prints_as_a_short_result():
    p = Prediction(2.0446, 1.72, 2.44, extrapolation=8.5, method="calibrated")
    assert str(p) == "2.045 [1.72, 2.44] (95%, x8.5 out, calibrated)"
    assert str(Prediction(1.0, 0.9, 1.1)) == "1 [0.9, 1.1] (95%)"
    assert format_interval(1.0, math.nan, 2.0) == "1 [-, 2]"


def test_one_definition_of_a_run_that_counts_and_of_training_compute():
    runs = pd.DataFrame({"status": ["ok", " OK ", "diverged", "ok"], "loss": [1.0, 2.0, 3.0, np.inf]})
    assert ok_runs(runs).index.tolist() == [0, 1]
    assert len(ok_runs(pd.DataFrame({"loss": [1.0, 2.0]}))) == 2  # no status column: every finished run counts
    assert training_flops(1e9, 2e10) == pytest.approx(1.2e20)
    np.testing.assert_allclose(training_flops(np.array([1.0, 2.0]), 3.0), [18.0, 36.0])


def test_saved_results_are_read_with_one_clear_error():
    assert load_document('{"law": "x", "params_": {}}', "a fit", ["law", "params_"], "FitResult.to_json()")["law"] == "x"
    with pytest.raises(ScaletuneError, match="not a fit .invalid JSON"):
        load_document("{", "a fit", ["law"], "FitResult.to_json()")
    with pytest.raises(ScaletuneError, match="expected the JSON written by FitResult.to_json"):
        load_document("[1]", "a fit", ["law"], "FitResult.to_json()")
    read = nan_from_null([1.0, None, [None]])
    assert read[0] == 1.0 and math.isnan(read[1]) and math.isnan(read[2][0])
