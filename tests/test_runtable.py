"""The run table readers and validators: every malformed input names the file, column or row."""

import numpy as np
import pandas as pd
import pytest

from scaletune.errors import ScaletuneError
from scaletune.runtable import parse_point, read_table, require_columns, require_positive, write_table


@pytest.fixture
def table():
    return pd.DataFrame({"params": [1e6, 2e6, 4e6], "tokens": [2e7, 4e7, 8e7], "loss": [3.5, 3.2, 3.0]})


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".jsonl"])
def test_round_trip_and_mapping(tmp_path, table, suffix):
    path = write_table(table, tmp_path / f"runs{suffix}")
    df = read_table(path, "N=params,D=tokens")
    assert list(df.columns) == ["N", "D", "loss"]
    np.testing.assert_allclose(df["N"], table["params"])
    assert df.attrs["source"] == str(path)


def test_mapping_to_missing_column(tmp_path, table):
    path = write_table(table, tmp_path / "runs.csv")
    with pytest.raises(ScaletuneError, match="mapped column 'n_params' not found"):
        read_table(path, {"N": "n_params"})


def test_missing_file_and_malformed_file(tmp_path):
    with pytest.raises(ScaletuneError, match="no such file"):
        read_table(tmp_path / "absent.csv")
    bad = tmp_path / "bad.parquet"
    bad.write_text("this is not parquet")
    with pytest.raises(ScaletuneError, match="cannot read as a table"):
        read_table(bad)


def test_missing_column_names_it(tmp_path, table):
    df = read_table(write_table(table, tmp_path / "runs.csv"))
    with pytest.raises(ScaletuneError, match=r"missing column 'N'.*--map N=YOUR_COLUMN"):
        require_columns(df, ["N", "loss"])


@pytest.mark.parametrize(
    "value, kind", [(0.0, "non-positive"), (-1.0, "non-positive"), (np.nan, "missing or non-numeric"), ("abc", "missing or non-numeric")]
)
def test_non_positive_values_name_row(value, kind, table):
    table = table.astype(object)
    table.loc[1, "loss"] = value
    with pytest.raises(ScaletuneError, match=f"column 'loss' has a {kind} value .* at row 2"):
        require_positive(table, ["loss"])


def test_parse_point():
    assert parse_point("N=1e9, D=2e10") == {"N": 1e9, "D": 2e10}
    with pytest.raises(ScaletuneError, match="value of D is not a number"):
        parse_point("N=1e9,D=lots")
    with pytest.raises(ScaletuneError, match="expected NAME=VALUE"):
        parse_point("N")
