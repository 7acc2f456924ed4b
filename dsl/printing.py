"""The printers shared by the checker's messages, the formatter (``fmt.py``) and the layer
specs (``dsl/layers/``): ``expr_text`` prints a syntax-tree expression as written; the IR
value printer prints a checked value as the user would write it (``relu``,
``leaky_relu(alpha=0.2)``, ``1e-05``, ``[accuracy, mae]``), and the ``name=value`` settings
that differ from a table's defaults (the layer specs print their canonical line with them).
"""
from __future__ import annotations

from dlrun.dsl import ir, tables as T
from dlrun.dsl.transform import BinOp, Call, ListLit, Num, Ref, ShapeLit, Str, Unary


def quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


# ------------------------------------------------------------------------ expressions
_PREC = {"+": 1, "-": 1, "*": 2, "/": 2}


def _prec(expr) -> int:
    if isinstance(expr, BinOp):
        return _PREC[expr.op]
    if isinstance(expr, Unary):
        return 3
    return 4


def expr_text(expr, short: bool = False) -> str:
    """The source text of a syntax-tree expression, with minimal parentheses. ``short``
    (for messages): calls and lists abbreviated (``leaky_relu(...)``, ``[...]``) and every
    operator spaced (``128 / 0``)."""
    if isinstance(expr, Num):
        return expr.text
    if isinstance(expr, Str):
        return quote(expr.value)
    if isinstance(expr, ShapeLit):
        return "x".join(str(d) for d in expr.dims)
    if isinstance(expr, Ref):
        return expr.name
    if isinstance(expr, Call):
        if short:
            return f"{expr.name}(...)"
        return f"{expr.name}({', '.join(arg_text(a) for a in expr.args)})"
    if isinstance(expr, ListLit):
        if short:
            return "[...]"
        return "[" + ", ".join(expr_text(i) for i in expr.items) + "]"
    if isinstance(expr, Unary):
        inner = expr_text(expr.operand, short)
        if _prec(expr.operand) < 3:
            inner = f"({inner})"
        return f"{expr.op}{inner}"
    if isinstance(expr, BinOp):
        p = _PREC[expr.op]
        left = expr_text(expr.left, short)
        if _prec(expr.left) < p:
            left = f"({left})"
        right = expr_text(expr.right, short)
        # the tree is kept exactly: an equal-precedence right operand keeps its parentheses
        if _prec(expr.right) <= p:
            right = f"({right})"
        # '*' and '/' bind tighter and are written tight: 'width*2', '1/16', 'a + b*c'
        return f"{left}{expr.op}{right}" if p == 2 and not short else f"{left} {expr.op} {right}"
    if short:
        return "?"
    raise TypeError(f"not an expression: {expr!r}")


def arg_text(arg) -> str:
    value = expr_text(arg.value)
    return f"{arg.key}={value}" if arg.key is not None else value


# ------------------------------------------------------------------------ IR values
def value_text(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, ir.Activation):
        return activation_text(value)
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(value_text(v) for v in value) + "]"
    if isinstance(value, str):
        return value
    raise TypeError(f"cannot print {value!r}")


def pair_text(value, short: bool = True) -> str:
    """A (height, width) pair as written: ``3x5``; ``3`` for equal extents when ``short``;
    a padding may be a word (``same``)."""
    if isinstance(value, str):
        return value
    a, b = value
    return str(a) if short and a == b else f"{a}x{b}"


def non_default(table, params, skip=()) -> list[str]:
    out = []
    for p in table:
        if p.name in skip or p.name not in params:
            continue
        value = params[p.name]
        if not p.required and value == p.default and type(value) is type(p.default):
            continue
        if value is None:
            continue
        text = pair_text(value) if p.type in ("pair", "padding") else value_text(value)
        out.append(f"{p.name}={text}")
    return out


def activation_text(act: ir.Activation) -> str:
    args = non_default(T.ACTIVATIONS[act.name], act.params)
    return f"{act.name}({', '.join(args)})" if args else act.name
