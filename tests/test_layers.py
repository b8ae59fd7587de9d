"""The layering holds: the import contract of pyproject.toml (import-linter: layers, and no torch / ray / submitit /
plotly in the analysis packages, directly or through anything they import), and heavy optional packages are
imported inside functions everywhere but in `scaletune.train`."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "scaletune"
HEAVY = {"torch", "ray", "submitit", "plotly", "wandb", "tensorboard", "matplotlib"}


def _lint_imports() -> str | None:
    found = shutil.which("lint-imports") or str(Path(sys.executable).with_name("lint-imports"))
    return found if Path(found).exists() else None


@pytest.mark.skipif(_lint_imports() is None, reason="import-linter is not installed (the dev extra)")
def test_import_contract():
    proc = subprocess.run(
        [_lint_imports(), "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "2 kept, 0 broken" in proc.stdout


def _module_level_imports(tree: ast.Module):
    """Imports executed when the module is imported: top-level statements, also inside if / try / with blocks,
    but not inside functions or classes (and not under ``if TYPE_CHECKING:``)."""
    stack = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Import):
            yield node.lineno, [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, [node.module]
        elif isinstance(node, ast.If):
            if not (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"):
                stack.extend(node.body)
            stack.extend(node.orelse)
        elif isinstance(node, (ast.Try, ast.With)):
            stack.extend(node.body)
            stack.extend(getattr(node, "orelse", []))
            stack.extend(getattr(node, "finalbody", []))
            for handler in getattr(node, "handlers", []):
                stack.extend(handler.body)


def test_heavy_packages_are_imported_inside_functions():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        if relative.startswith("train/"):  # the torch side: imports torch by design
            continue
        for line, names in _module_level_imports(ast.parse(path.read_text(), str(path))):
            heavy = sorted({n.partition(".")[0] for n in names} & HEAVY)
            if heavy:
                offenders.append(f"{relative}:{line} imports {', '.join(heavy)}")
    assert offenders == []


def test_no_library_module_imports_the_cli():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        if relative.startswith("cli/") or relative == "__main__.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom) and node.level == 0
                else []
            )
            if any(n == "scaletune.cli" or n.startswith("scaletune.cli.") for n in names):
                offenders.append(f"{relative}:{node.lineno}")
    assert offenders == []
