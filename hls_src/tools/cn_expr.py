"""Safe integer expressions over named parameters (``CN_PA*CN_PE``, ``ceil_div(CN_MAX_C, 16)``).

Used by the resource budget (expressions in resources.json) and the lint (pragma factors such
as ``factor=CN_PA``).  Only integer arithmetic is allowed; ``/`` is integer division.
"""

from __future__ import annotations

import ast
import operator
from typing import Callable, Dict, Mapping, Union

__all__ = ["ExprError", "eval_int"]


class ExprError(ValueError):
    """An expression that is not a valid integer expression over known names."""


_BIN: Dict[type, Callable[[int, int], int]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.FloorDiv: operator.floordiv,
    ast.Div: operator.floordiv, ast.Mod: operator.mod, ast.LShift: operator.lshift, ast.RShift: operator.rshift,
    ast.Pow: operator.pow, ast.BitOr: operator.or_, ast.BitAnd: operator.and_,
}
_FUNCS: Dict[str, Callable[..., int]] = {
    "min": min, "max": max, "ceil_div": lambda a, b: -(-a // b),
    "log2": lambda a: max(int(a) - 1, 0).bit_length(),  # ceil(log2(a))
}


def eval_int(expr: Union[str, int], names: Mapping[str, int]) -> int:
    """Evaluate an integer expression; names must be in ``names`` (raises ExprError otherwise)."""
    if isinstance(expr, bool):
        raise ExprError(f"expected an integer expression, got {expr!r}")
    if isinstance(expr, int):
        return expr
    if not isinstance(expr, str) or not expr.strip():
        raise ExprError(f"expected an integer expression, got {expr!r}")
    try:
        tree = ast.parse(expr.strip(), mode="eval")
    except SyntaxError as exc:
        raise ExprError(f"cannot parse {expr!r} ({exc.msg})") from None

    def ev(node: ast.AST) -> int:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, int) and not isinstance(node.value, bool):
            return node.value
        if isinstance(node, ast.Name):
            if node.id not in names:
                raise ExprError(f"unknown name {node.id!r} in {expr!r}")
            return int(names[node.id])
        if isinstance(node, ast.BinOp) and type(node.op) in _BIN:
            b = ev(node.right)
            if isinstance(node.op, (ast.Div, ast.FloorDiv, ast.Mod)) and b == 0:
                raise ExprError(f"division by zero in {expr!r}")
            return _BIN[type(node.op)](ev(node.left), b)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            v = ev(node.operand)
            return -v if isinstance(node.op, ast.USub) else v
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCS \
                and not node.keywords:
            return int(_FUNCS[node.func.id](*[ev(a) for a in node.args]))
        raise ExprError(f"unsupported syntax in {expr!r} (integers, names, + - * / % << >> and "
                        f"{', '.join(sorted(_FUNCS))} only)")

    return ev(tree)
