"""Static checks: ruff with the rule set of pyproject.toml ([tool.ruff]) over src and tests, ruff's formatter
(the code is formatted: `ruff format src tests benchmarks examples`), and mypy on the modules [tool.mypy]
lists."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RUFF = Path(sys.executable).with_name("ruff")


def _passes(*command: str, timeout: int = 300) -> None:
    """Run a checker in the repository root; its own report is the failure message."""
    proc = subprocess.run(list(command), cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]


@pytest.mark.skipif(not RUFF.exists(), reason="ruff is not installed (the dev extra)")
def test_ruff_check():
    _passes(str(RUFF), "check", "--no-cache", "--output-format", "concise", "src", "tests")


@pytest.mark.skipif(not RUFF.exists(), reason="ruff is not installed (the dev extra)")
def test_ruff_format():
    _passes(str(RUFF), "format", "--check", "--no-cache", "src", "tests", "benchmarks", "examples")


MYPY = Path(sys.executable).with_name("mypy")


@pytest.mark.slow  # about 40 s of CPU without mypy's cache
@pytest.mark.skipif(not MYPY.exists(), reason="mypy is not installed (the dev extra)")
def test_mypy():
    _passes(str(MYPY), timeout=600)  # files: [tool.mypy]
