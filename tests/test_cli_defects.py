"""Defects of issue 14 in the command line: `export` overwriting an earlier export, a missing optional extra
ending in a traceback, and `allocate published:deepseek` labelling M* (FLOPs per token) as N*."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest

from scaletune.cli import main
from test_study_run import toml_file


@pytest.mark.slow  # runs a sweep (spawned workers): ~12 s
def test_export_refuses_to_overwrite_default_file(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    study = toml_file(
        tmp_path, "keep", "keep.db", seeds="[0]", widths="[8]", space='lr = { log = ["0.05 / width", "5 / width"], points = 2 }'
    )
    assert main(["sweep", str(study), "--workers", "1", "--no-progress"]) == 0
    assert main(["export", str(study)]) == 0
    assert len(pd.read_csv(tmp_path / "keep.csv")) == 2
    (tmp_path / "keep.csv").write_text("mine\n1\n")  # an earlier export the user edited
    capsys.readouterr()
    assert main(["export", str(study)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "keep.csv" in err and "Traceback" not in err
    assert (tmp_path / "keep.csv").read_text() == "mine\n1\n"  # untouched
    assert main(["export", str(study), "--out", str(tmp_path / "other.csv")]) == 0  # an explicit path is the user's choice
    assert main(["export", str(study), "--force"]) == 0
    assert len(pd.read_csv(tmp_path / "keep.csv")) == 2


def test_allocate_deepseek_reports_flops_per_token(capsys):
    assert main(["allocate", "published:deepseek", "--compute", "1e21", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)["allocations"][0]
    assert doc["N_star"] == pytest.approx(0.1715 * 1e21**0.5243, rel=1e-9)  # M*, FLOPs per token
    assert doc["D_star"] == pytest.approx(5.8316 * 1e21**0.4757, rel=1e-9)
    assert doc["tokens_per_param"] is None  # D*/M* is not tokens per parameter
    assert main(["allocate", "published:deepseek", "--compute", "1e21"]) == 0
    rows = {line.split("│")[1].strip() for line in capsys.readouterr().out.splitlines() if line.count("│") >= 3}
    assert "M* (FLOPs/token)" in rows and "N*" not in rows and "D*/N*" not in rows
    assert main(["allocate", "published:hoffmann", "--compute", "5.76e23"]) == 0  # a parameter allocation keeps N*, D*/N*
    rows = {line.split("│")[1].strip() for line in capsys.readouterr().out.splitlines() if line.count("│") >= 3}
    assert {"N*", "D*/N*"} <= rows


# torch is present in the test venv: a user without the `train` extra is simulated by an import hook that
# answers as a missing package does (sys.modules["torch"] = None would also break scipy's array-API probe)
WITHOUT_TORCH = """
import sys

class NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] == "torch":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)

sys.meta_path.insert(0, NoTorch())
from scaletune.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize(
    "args",
    [
        ["train", "--width", "32", "--depth", "1", "--tokens", "2e4", "--lr", "4e-3"],
        ["coord-check", "--steps", "1"],
        ["param-table", "--model", "micro"],
        ["demo", "--tiny"],
    ],
)
def test_missing_torch_is_one_line_and_exit_2(args, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-c", WITHOUT_TORCH, *args], capture_output=True, text=True, cwd=tmp_path, timeout=120, check=False
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert "scaletune[train]" in proc.stderr and "torch" in proc.stderr


def test_fitting_works_without_torch():
    proc = subprocess.run(
        [sys.executable, "-c", WITHOUT_TORCH, "predict", "published:hoffmann", "--at", "N=7e10,D=1.4e12", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count('"loss": 1.9174') == 1  # Hoffmann et al.'s law at Chinchilla's (N, D)
