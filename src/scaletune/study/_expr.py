"""Arithmetic formulas of scale variables, e.g. ``"3e-3 * (N / 1e6) ** -0.5"`` or ``"12 * depth * width**2"``.

A study file may give a range bound, the parameter count or the token budget as a formula; it is parsed once
(so a typo is reported before any trial runs) and evaluated per rung. Only numbers, names, + - * / ** and
a few math functions are allowed: a study file is data, never code.
"""

from __future__ import annotations

import ast
import math
from typing import Callable, Mapping

from scaletune.errors import ScaletuneError

_FUNCTIONS: dict[str, Callable[..., float]] = {
    "log": math.log,
    "log10": math.log10,
    "log2": math.log2,
    "exp": math.exp,
    "sqrt": math.sqrt,
    "min": min,
    "max": max,
    "round": round,
    "abs": abs,
}
_BINARY = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
    ast.Pow: lambda a, b: a**b,
    ast.FloorDiv: lambda a, b: a // b,
}


def parse_formula(text: str, where: str) -> ast.Expression:
    """Parse and check a formula; ``where`` names the study-file key for the error message."""
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError:
        raise ScaletuneError(f"{where}: cannot parse formula {text!r}") from None
    for node in ast.walk(tree):
        ok = isinstance(
            node, (ast.Expression, ast.BinOp, ast.UnaryOp, ast.USub, ast.UAdd, ast.Name, ast.Load, ast.Call, ast.Constant) + tuple(_BINARY)
        )
        if not ok or (isinstance(node, ast.Constant) and not isinstance(node.value, (int, float))):
            raise ScaletuneError(f"{where}: formula {text!r} may use only numbers, scale variables, + - * / ** and {', '.join(_FUNCTIONS)}")
        if isinstance(node, ast.Call) and not (isinstance(node.func, ast.Name) and node.func.id in _FUNCTIONS):
            raise ScaletuneError(f"{where}: formula {text!r} calls an unknown function (known: {', '.join(_FUNCTIONS)})")
    return tree


def formula_names(tree: ast.Expression) -> set[str]:
    """Variable names a formula reads (function names excluded)."""
    calls = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and id(n) not in calls}


def evaluate(tree: ast.Expression, variables: Mapping[str, float], where: str) -> float:
    """Evaluate a parsed formula with the given variables; errors name ``where``."""

    def ev(node: ast.AST) -> float:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant):
            return node.value  # type: ignore[no-any-return,return-value]  # parse_formula admits numbers only
        if isinstance(node, ast.Name):
            if node.id not in variables:
                raise ScaletuneError(
                    f"{where}: unknown variable {node.id!r} in formula (scale variables here: {', '.join(sorted(variables)) or 'none'})"
                )
            return variables[node.id]
        if isinstance(node, ast.UnaryOp):
            return -ev(node.operand) if isinstance(node.op, ast.USub) else ev(node.operand)
        if isinstance(node, ast.BinOp):
            return _BINARY[type(node.op)](ev(node.left), ev(node.right))
        assert isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
        return _FUNCTIONS[node.func.id](*(ev(a) for a in node.args))

    try:
        value = float(ev(tree))
    except (ArithmeticError, ValueError, TypeError) as exc:
        raise ScaletuneError(f"{where}: formula {ast.unparse(tree)!r} fails for {dict(variables)}: {exc}") from None
    if not math.isfinite(value):
        raise ScaletuneError(f"{where}: formula {ast.unparse(tree)!r} is not finite for {dict(variables)}")
    return value
