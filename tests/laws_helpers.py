"""Shared helpers of the laws tests: synthetic data from known laws, CLI runner, real-data paths."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from scaletune.cli import main
from scaletune.laws import get_law

DATA = Path(__file__).parent / "data"
PORIAN = DATA / "porian-isoflop"
DATABLATIONS = DATA / "datablations"
PORIAN_CONFIG = ["source_file", "dataset", "hparams", "warmup", "decay", "param_count", "val"]

# Hoffmann et al. 2022 (unrounded) as the truth of synthetic Chinchilla data
CHINCHILLA_TRUE = {"a": float(np.log(406.4)), "b": float(np.log(410.7)), "e": float(np.log(1.69)), "alpha": 0.3392, "beta": 0.2849}


def chinchilla_data(seed: int, noise: float = 0.01, n_sizes: int = 8, n_tokens: int = 8) -> pd.DataFrame:
    """A grid of (N, D) runs with multiplicative log-normal noise of std ``noise`` on the loss."""
    rng = np.random.default_rng(seed)
    N, D = np.meshgrid(np.logspace(7, 10, n_sizes), np.logspace(9, 12, n_tokens), indexing="ij")
    N, D = N.ravel(), D.ravel()
    loss = get_law("chinchilla").predict(CHINCHILLA_TRUE, {"N": N, "D": D}) * np.exp(rng.normal(0, noise, N.size))
    return pd.DataFrame({"N": N, "D": D, "C": 6 * N * D, "loss": loss})


def load_porian_config(points: pd.DataFrame, ref_row: pd.Series) -> pd.DataFrame:
    sub = points
    for c in PORIAN_CONFIG:
        sub = sub[sub[c] == ref_row[c]]
    return sub


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    """Run `scaletune ARGS` in-process; return (exit code, stdout, stderr)."""
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def _no_constant(name: str) -> None:
    raise ValueError(f"not strict JSON: {name}")


def run_json(capsys, *args: str) -> dict:
    """`scaletune ARGS --json`, parsed as strict JSON (a NaN or Infinity literal fails: the one JSON policy)."""
    code, out, err = run_cli(capsys, *args, "--json")
    assert code == 0, err
    return json.loads(out, parse_constant=_no_constant)
