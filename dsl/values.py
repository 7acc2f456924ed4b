"""Values of a ``.net`` file: constant expressions evaluated, each value checked against
its ``tables.Param`` (type, range, choices) and bound to a statement's parameters, with
"did you mean" for unknown names. ``Binder`` is the part of the elaborator that does it.
"""
from __future__ import annotations

import math

from dlrun.dsl import ir, tables as T
from dlrun.dsl.diagnostics import Reporter, suggest
from dlrun.dsl.ir import Pos
from dlrun.dsl.printing import expr_text, quote
from dlrun.dsl.transform import (Arg, BinOp, Call, ListLit, Num, Ref, ShapeLit, Str, Unary)


class _Bad(Exception):
    """A value was wrong; the diagnostic is already reported."""


class Word(str):
    """A bare name used as a value (``relu``, ``he``, ``true``), not a ``let`` constant."""


class Shape(tuple):
    """A shape literal such as 28x28."""


def show(value) -> str:
    """A value as the user would write it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Shape):
        return "x".join(str(d) for d in value)
    if isinstance(value, Word):
        return str(value)
    if isinstance(value, str):
        return quote(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(show(v) for v in value) + "]"
    return str(value)


def _expr_text(expr) -> str:
    """Short source-like text of an expression for messages."""
    return expr_text(expr, short=True)


def _kind_of(value) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, Shape):
        return "a shape"
    if isinstance(value, Word):
        return "a name"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "a value"


def span(a: Pos, b: Pos) -> Pos:
    return Pos(a.line, a.col, b.end_line, b.end_col)


class Binder:
    """Evaluates and binds values, reporting into ``self.r``; ``self.env`` holds the
    ``let`` constants. Internally a failed value raises ``_Bad`` after reporting."""

    def __init__(self, reporter: Reporter):
        self.r = reporter
        self.env: dict[str, object] = {}
        self.env_pos: dict[str, Pos] = {}
        self.later_lets: dict[str, Pos] = {}

    # ------------------------------------------------------------------ expressions
    def evaluate(self, expr, what: str):
        """Evaluate a constant expression. Bare names that are not constants stay ``Word``."""
        if isinstance(expr, Num):
            if isinstance(expr.value, float) and not math.isfinite(expr.value):
                self.r.error(expr.pos, f"number {expr.text} is too large for {what}")
                raise _Bad
            if expr.value == 0 and any(c in "123456789" for c in expr.text.split("e")[0].split("E")[0]):
                self.r.error(expr.pos, f"number {expr.text} is too small for {what}: it would be 0")
                raise _Bad
            return expr.value
        if isinstance(expr, Str):
            return expr.value
        if isinstance(expr, ShapeLit):
            return Shape(expr.dims)
        if isinstance(expr, Ref):
            if expr.name in self.env:
                return self.env[expr.name]
            return Word(expr.name)
        if isinstance(expr, ListLit):
            return [self.evaluate(item, what) for item in expr.items]
        if isinstance(expr, Call):
            self.r.error(expr.pos, f"'{expr.name}(...)' is not allowed in {what}; "
                         "parentheses after a name give parameters to an activation, loss or optimizer")
            raise _Bad
        if isinstance(expr, Unary):
            value = self.number(expr.operand, what)
            return -value if expr.op == "-" else value
        if isinstance(expr, BinOp):
            left = self.number(expr.left, what)
            right = self.number(expr.right, what)
            if expr.op == "+":
                result = left + right
            elif expr.op == "-":
                result = left - right
            elif expr.op == "*":
                result = left * right
            else:
                if right == 0:
                    self.r.error(expr.right.pos if hasattr(expr.right, "pos") else expr.pos,
                                 f"division by zero in {what}: '{_expr_text(expr)}'")
                    raise _Bad
                result = left / right
            if isinstance(result, float) and not math.isfinite(result):
                self.r.error(expr.pos, f"'{_expr_text(expr)}' is too large in {what}")
                raise _Bad
            if result == 0 and expr.op in "*/" and left != 0 and right != 0:
                self.r.error(expr.pos, f"'{_expr_text(expr)}' is too small in {what}: it would be 0")
                raise _Bad
            if isinstance(result, int) and abs(result) > 2**63:
                self.r.error(expr.pos, f"'{_expr_text(expr)}' is too large in {what}")
                raise _Bad
            return result
        self.r.error(getattr(expr, "pos", None), f"unexpected value in {what}")
        raise _Bad

    def unknown_constant(self, ref: Ref, what: str):
        name = ref.name
        if name in self.later_lets:
            self.r.error(ref.pos, f"'{name}' is used before its 'let' on line "
                         f"{self.later_lets[name].line}; define constants before using them")
        elif self.env:
            self.r.error(ref.pos, f"unknown constant '{name}' in {what}"
                         + suggest(name, sorted(self.env), show_known=True))
        else:
            self.r.error(ref.pos, f"expected a number for {what}, got the name '{name}' "
                         "(no 'let' constant has this name)")
        raise _Bad

    def number(self, expr, what: str):
        """A number (int or float) or report why not."""
        value = self.evaluate(expr, what)
        if isinstance(value, Word):
            self.unknown_constant(expr, what)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.r.error(expr.pos, f"expected a number for {what}, got {_kind_of(value)} "
                         f"'{_expr_text(expr)}'")
            raise _Bad
        return value

    # ------------------------------------------------------------------ parameters
    def coerce(self, param: T.Param, expr, what: str):
        """Check one value against its table entry; returns the Python value for the IR."""
        kind = param.type
        pos = expr.pos
        if kind in ("int", "float"):
            value = self.number(expr, what)
            if kind == "int":
                if isinstance(value, float):
                    if not value.is_integer():
                        self.r.error(pos, f"{what} must be a whole number, got {show(value)}")
                        raise _Bad
                    value = int(value)
            else:
                value = float(value)
            if not param.in_range(value):
                self.r.error(pos, f"{what} must be {param.range_text()}, got {show(value)}")
                raise _Bad
            return value
        if kind == "bool":
            value = self.evaluate(expr, what) if not isinstance(expr, Ref) else Word(expr.name)
            if isinstance(value, Word) and value in ("true", "false"):
                return value == "true"
            self.r.error(pos, f"{what} must be true or false, got '{_expr_text(expr)}'")
            raise _Bad
        if kind == "name":
            if isinstance(expr, Ref):
                value = expr.name
            elif isinstance(expr, Str):
                value = expr.value
            else:
                self.r.error(pos, f"{what} must be a name ({', '.join(param.choices or ())}), "
                             f"got '{_expr_text(expr)}'")
                raise _Bad
            if param.choices is not None and value not in param.choices:
                self.r.error(pos, f"unknown value '{value}' for {what}" + suggest(value, param.choices))
                raise _Bad
            return value
        if kind == "str":
            value = self.evaluate(expr, what)
            if isinstance(value, str) and not isinstance(value, Word):
                return value
            self.r.error(pos, f"{what} must be a string in double quotes, got {_kind_of(value)} "
                         f"'{_expr_text(expr)}'")
            raise _Bad
        if kind == "names":
            items = expr.items if isinstance(expr, ListLit) else (expr,)
            out = []
            bad = False
            for item in items:
                if not isinstance(item, Ref):
                    self.r.error(item.pos, f"{what} lists names such as [{', '.join(param.choices or ())}], "
                                 f"got '{_expr_text(item)}'")
                    bad = True
                    continue
                if param.choices is not None and item.name not in param.choices:
                    self.r.error(item.pos, f"unknown name '{item.name}' in {what}"
                                 + suggest(item.name, param.choices))
                    bad = True
                    continue
                if item.name in out:
                    self.r.error(item.pos, f"'{item.name}' is listed twice in {what}")
                    bad = True
                    continue
                out.append(item.name)
            if bad:
                raise _Bad
            return tuple(out)
        if kind == "ints":
            items = expr.items if isinstance(expr, ListLit) else (expr,)
            out = []
            for item in items:
                value = self.evaluate(item, what)
                if isinstance(value, bool) or not isinstance(value, (int, float)) \
                        or (isinstance(value, float) and not value.is_integer()):
                    self.r.error(item.pos, f"{what} lists whole numbers such as [30, 60], got "
                                 f"'{_expr_text(item)}'")
                    raise _Bad
                if not param.in_range(value):
                    self.r.error(item.pos, f"each value of {what} must be {param.range_text()}, got {show(value)}")
                    raise _Bad
                out.append(int(value))
            return tuple(out)
        if kind == "weights":
            return self.weights(param, expr, what)
        if kind == "activation":
            return self.activation(expr, what)
        if kind in ("pair", "padding"):
            return self.pair(param, expr, what)
        if kind == "shape":
            value = self.evaluate(expr, what)
            if isinstance(value, Word):
                self.unknown_constant(expr, what)
            if isinstance(value, Shape):
                dims = tuple(value)
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                if isinstance(value, float) and not value.is_integer():
                    self.r.error(pos, f"{what} must be a whole number of features, got {show(value)}")
                    raise _Bad
                dims = (int(value),)
            else:
                self.r.error(pos, f"{what} must be a feature count such as 64 or a shape such as "
                             f"28x28, got {_kind_of(value)} '{_expr_text(expr)}'")
                raise _Bad
            if any(d < 1 for d in dims):
                self.r.error(pos, f"every dimension of {what} must be >= 1, got {show(Shape(dims))}")
                raise _Bad
            size = 1
            for d in dims:
                size *= d
            if size > T.MAX_INT:
                self.r.error(pos, f"{what} {show(Shape(dims))} has {size} features; at most {T.MAX_INT} are supported")
                raise _Bad
            return dims
        raise AssertionError(kind)

    def pair(self, param: T.Param, expr, what: str):
        """A (height, width) pair from ``3`` or ``3x5``; a padding may also be ``same`` or
        ``valid``. Each extent at least ``param.lo`` (1 unless the table says otherwise)."""
        pos = expr.pos
        if param.type == "padding" and isinstance(expr, Ref) and expr.name not in self.env:
            if expr.name in ("same", "valid"):
                return expr.name
            self.r.error(pos, f"unknown value '{expr.name}' for {what}"
                         + suggest(expr.name, ("same", "valid")))
            raise _Bad
        value = self.evaluate(expr, what)
        if isinstance(value, Word):
            self.unknown_constant(expr, what)
        example = "same, valid, 1 or 1x2" if param.type == "padding" else "3 or 3x3"
        if isinstance(value, Shape):
            dims = tuple(value)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            if isinstance(value, float) and not value.is_integer():
                self.r.error(pos, f"{what} must be a whole number, got {show(value)}")
                raise _Bad
            dims = (int(value),) * 2
        else:
            self.r.error(pos, f"{what} must be {example}, got {_kind_of(value)} '{_expr_text(expr)}'")
            raise _Bad
        if len(dims) != 2:
            self.r.error(pos, f"{what} is a height x width pair such as {example.split(' or ')[-1]}, "
                         f"got {show(Shape(dims))}")
            raise _Bad
        lo = 1 if param.lo is None else int(param.lo)
        if any(d < lo or d > T.MAX_INT for d in dims):
            self.r.error(pos, f"every extent of {what} must be >= {lo}, got {show(Shape(dims))}")
            raise _Bad
        return dims

    def activation(self, expr, what: str) -> ir.Activation:
        if isinstance(expr, Ref):
            name, args, name_pos = expr.name, (), expr.pos
        elif isinstance(expr, Call):
            name, args, name_pos = expr.name, expr.args, expr.name_pos
        else:
            self.r.error(expr.pos, f"{what} must be an activation name such as relu, got "
                         f"'{_expr_text(expr)}'")
            raise _Bad
        if name not in T.ACTIVATIONS:
            self.r.error(name_pos, f"unknown activation '{name}'" + suggest(name, T.ACTIVATIONS))
            raise _Bad
        params = self.bind(f"activation '{name}'", T.ACTIVATIONS[name], args, npos=len(T.ACTIVATIONS[name]),
                           where=expr.pos)
        return ir.Activation(name, params, expr.pos)

    def weights(self, param: T.Param, expr, what: str):
        """A ``weights`` value: a word of ``param.choices`` (``balanced``), or a tuple of
        floats in the range, not all 0 (one per class: the count is checked with the shapes)."""
        words = ", ".join(param.choices or ())
        if isinstance(expr, Ref) and expr.name not in self.env:
            if expr.name in (param.choices or ()):
                return expr.name
            self.r.error(expr.pos, f"unknown value '{expr.name}' for {what}"
                         + suggest(expr.name, param.choices or (), show_known=False)
                         + f"; write {words} or a list of numbers, one per class")
            raise _Bad
        if not isinstance(expr, ListLit):
            self.r.error(expr.pos, f"{what} must be {words} or a list of numbers, one per class "
                         f"(e.g. [1, 2.5]), got '{_expr_text(expr)}'")
            raise _Bad
        if not expr.items:
            self.r.error(expr.pos, f"{what} is an empty list; give one weight per class")
            raise _Bad
        out = []
        for item in expr.items:
            value = self.number(item, f"each value of {what}")
            if not param.in_range(value):
                self.r.error(item.pos, f"each value of {what} must be {param.range_text()}, got {show(value)}")
                raise _Bad
            out.append(float(value))
        if not any(out):
            self.r.error(expr.pos, f"{what} is all zeros: no sample would count in the loss; give "
                         "at least one class a weight > 0")
            raise _Bad
        return tuple(out)

    def bind(self, owner: str, params, args, *, npos: int, where: Pos, flags: bool = False,
             given: dict | None = None, example: str = "") -> dict:
        """Bind positional and ``name=value`` args to ``params``; fill defaults.

        Reports unknown/duplicate/missing parameters and bad values, then raises _Bad if
        anything was wrong (after looking at every argument).
        """
        by_name = {p.name: p for p in params}
        values = dict(given or {})
        first: dict[str, Pos] = {}
        bad = False
        slot = 0
        for arg in args:
            if arg.key is None:
                if flags and isinstance(arg.value, Ref) and by_name.get(arg.value.name) is not None \
                        and by_name[arg.value.name].type == "bool":
                    key, expr = arg.value.name, Ref("true", arg.value.pos)
                elif slot < npos:
                    # positional values fill the first parameters in order, skipping the
                    # ones already given by name
                    while slot < npos and params[slot].name in first:
                        slot += 1
                    if slot >= npos:
                        self._too_many(owner, params, npos, arg)
                        bad = True
                        continue
                    key, expr = params[slot].name, arg.value
                    slot += 1
                else:
                    self._too_many(owner, params, npos, arg)
                    bad = True
                    continue
            else:
                key, expr = arg.key, arg.value
                if key not in by_name:
                    self.r.error(arg.key_pos, _unknown_parameter(owner, params, arg, args))
                    bad = True
                    continue
            if key in first:
                prev = first[key]
                self.r.error(arg.pos, f"{owner}: '{key}' is given twice (first on line {prev.line}, "
                             f"column {prev.col})")
                bad = True
                continue
            first[key] = arg.pos
            try:
                values[key] = self.coerce(by_name[key], expr, f"'{key}' of {owner}")
            except _Bad:
                bad = True
        for p in params:
            if p.name not in values and p.name not in first:
                if p.required:
                    if not bad:
                        self.r.error(where, f"{owner} needs '{p.name}' ({p.doc})"
                                     + (f", {example}" if example else ""))
                    bad = True
                elif p.type == "activation":
                    values[p.name] = ir.Activation(p.default, {q.name: q.default for q in T.ACTIVATIONS[p.default]}, where)
                else:
                    values[p.name] = p.default
        if bad:
            raise _Bad
        return {p.name: values[p.name] for p in params}

    def _too_many(self, owner, params, npos, arg):
        names = ", ".join(p.name for p in params[:npos])
        if npos == 0:
            hint = ", ".join(f"{p.name}=" for p in params)
            self.r.error(arg.pos, f"{owner} takes no positional values, got '{_expr_text(arg.value)}'"
                         + (f" (write its settings as name=value: {hint})" if hint else ""))
        else:
            self.r.error(arg.pos, f"too many values for {owner}: it takes at most {npos} "
                         f"({names}), then name=value settings; got '{_expr_text(arg.value)}'")


def _unknown_parameter(owner: str, params, arg: Arg, args) -> str:
    """The message for ``key=value`` that ``owner`` does not take, with the likeliest fix."""
    key, value = arg.key, _expr_text(arg.value)
    if not params:
        return f"{owner} takes no parameters, got '{key}='"
    names = [p.name for p in params]
    alias = T.PARAM_ALIASES.get(key)
    # an activation's parameter written after it: 'dense 8 leaky_relu alpha=0.1'
    for other in args:
        act = other.value
        if other is arg or not isinstance(act, Ref) or other.key not in (None, "activation"):
            continue
        act_names = [p.name for p in T.ACTIVATIONS.get(act.name, ())]
        spelled = key if key in act_names else alias if alias in act_names else None
        if spelled is not None:
            return (f"unknown parameter '{key}' for {owner}: it belongs to the activation; "
                    f"write '{act.name}({spelled}={value})'")
    if alias in names:
        return (f"unknown parameter '{key}' for {owner} (did you mean '{alias}'? dlrun spells it "
                f"{alias}={value}; known: {', '.join(names)})")
    return f"unknown parameter '{key}' for {owner}" + suggest(key, names)
