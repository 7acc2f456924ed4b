"""The check pass: syntax tree -> checked ``ir.Model``, reporting every problem.

Two stages, both reporting into one ``Reporter`` so that all errors come out together
in source order:

1. ``Elaborator`` gives the syntax tree its meaning: it evaluates ``let`` constants and
   constant arithmetic, expands ``repeat``, binds every statement's values to the
   parameters of its ``tables.py`` entry (unknown names get "did you mean"), checks
   types and ranges, fills in defaults and canonicalises aliases.
2. ``check_semantics`` works on IR nodes: layer order, shape inference through every
   layer, output/loss compatibility (the output and the fused loss are decided by
   ``output.decide_output`` and recorded in ``Model.output``), metrics, early stopping
   and data consistency.
   ``check(model)`` runs it (with a parameter re-validation) on any ``ir.Model``, for
   instance one built or modified in Python.
"""
from __future__ import annotations

import math
import os
import re

from dlrun.dsl import ir, tables as T
from dlrun.dsl.diagnostics import Reporter, suggest
from dlrun.dsl.ir import NOWHERE, Pos
from dlrun.dsl.output import decide_output, layer_label as _layer_label
from dlrun.dsl.transform import (Arg, BinOp, Call, ListLit, Let, Num, Program, Ref,
                                 ShapeLit, Statement, Str, Unary)


class _Bad(Exception):
    """A value was wrong; the diagnostic is already reported."""


class Word(str):
    """A bare name used as a value (``relu``, ``he``, ``true``), not a ``let`` constant."""


class Shape(tuple):
    """A shape literal such as 28x28."""


def quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


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
    if isinstance(expr, Num):
        return expr.text
    if isinstance(expr, Str):
        return show(expr.value)
    if isinstance(expr, ShapeLit):
        return "x".join(str(d) for d in expr.dims)
    if isinstance(expr, Ref):
        return expr.name
    if isinstance(expr, Call):
        return f"{expr.name}(...)"
    if isinstance(expr, ListLit):
        return "[...]"
    if isinstance(expr, BinOp):
        return f"{_expr_text(expr.left)} {expr.op} {_expr_text(expr.right)}"
    if isinstance(expr, Unary):
        return f"{expr.op}{_expr_text(expr.operand)}"
    return "?"


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


# =====================================================================================
# Stage 1: syntax tree -> IR

class Elaborator:
    """Syntax tree -> IR nodes, one statement at a time, reporting into ``reporter``.

    Internally a failed value raises ``_Bad`` after reporting, which abandons only the
    statement it belongs to: the next statement is still checked.
    """

    def __init__(self, program: Program, reporter: Reporter, path: str | None):
        self.program = program
        self.r = reporter
        self.path = path
        self.env: dict[str, object] = {}
        self.env_pos: dict[str, Pos] = {}
        self.later_lets: dict[str, Pos] = {}
        self.layer_names: dict[str, Pos] = {}
        self.n_layers = 0
        self.failed_layers = 0  # layers that did not elaborate: shapes are not inferred then
        self.duplicate_names: set[str] = set()  # 'as NAME' given twice (already reported)

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
        if kind == "activation":
            return self.activation(expr, what)
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

    def bind(self, owner: str, params, args, *, npos: int, where: Pos, flags: bool = False,
             given: dict | None = None) -> dict:
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
                        example = {"dense": "e.g. 'dense 128 relu'", "dropout": "e.g. 'dropout 0.2'",
                                   "input": "e.g. 'input 64' or 'input 28x28'"}.get(owner, "")
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

    # ------------------------------------------------------------------ statements
    def run(self):
        prog = self.program
        self.check_version(prog)
        for item in prog.body:
            if isinstance(item, Let):
                self.later_lets.setdefault(item.name, item.pos)
        layers: list = []
        settings: dict[str, tuple] = {}
        for item in prog.body:
            if isinstance(item, Let):
                self.let(item)
                continue
            kw = item.keyword
            if kw == "data":
                self.once(settings, item)
                settings["data"] = (item, self.data_block(item))
            elif kw == "repeat":
                layers.extend(self.repeat(item))
            elif kw in T.SETTINGS:
                self.once(settings, item)
                settings[kw] = (item, self.setting(item))
            elif self.is_layer(kw):
                layer = self.layer(item)
                if layer is not None:
                    layers.append(layer)
            else:
                self.unknown_statement(item, T.model_keywords())
        return layers, settings

    def check_version(self, prog: Program):
        try:
            value = self.evaluate(prog.version, "the format version")
        except _Bad:
            return
        if isinstance(value, bool) or not isinstance(value, int) or value != T.FORMAT_VERSION:
            self.r.error(prog.version.pos, f"unsupported format version {show(value)}: this dlrun "
                         f"reads 'dlrun {T.FORMAT_VERSION}'")

    def once(self, settings, stmt):
        if stmt.keyword in settings:
            prev = settings[stmt.keyword][0]
            self.r.error(stmt.keyword_pos, f"duplicate '{stmt.keyword}' (first given on line "
                         f"{prev.pos.line}); give it once")

    def is_layer(self, kw: str) -> bool:
        return kw in T.LAYERS or kw in T.ACTIVATIONS

    def unknown_statement(self, stmt: Statement, known):
        kw = stmt.keyword
        if kw in T.DATA and kw not in T.SETTINGS:
            self.r.error(stmt.keyword_pos, f"'{kw}' belongs inside the data {{ ... }} block")
        elif kw == "let":
            self.r.error(stmt.keyword_pos, "'let' is written 'let NAME = value'")
        else:
            self.r.error(stmt.keyword_pos, f"unknown statement '{kw}'" + suggest(kw, known))

    def no_block(self, stmt: Statement):
        if stmt.block is not None:
            self.r.error(stmt.block_pos, f"'{stmt.keyword}' takes no {{ ... }} block")

    def no_alias(self, stmt: Statement):
        if stmt.alias is not None:
            self.r.error(stmt.alias_pos, f"'as {stmt.alias}' names layers only, not '{stmt.keyword}'")

    def no_call(self, stmt: Statement):
        if stmt.call_args is not None:
            self.r.error(stmt.keyword_pos, f"'{stmt.keyword}(...)': parameters of '{stmt.keyword}' "
                         "are written without parentheses, as values and name=value settings")
            return False
        return True

    def let(self, item: Let):
        name = item.name
        if name in ("true", "false") or name in T.RESERVED_WORDS:
            self.r.error(item.name_pos, f"'{name}' is a reserved word and cannot be a constant")
            return
        if name in self.env:
            self.r.error(item.name_pos, f"constant '{name}' is already defined on line "
                         f"{self.env_pos[name].line}")
            return
        try:
            value = self.evaluate(item.value, f"constant '{name}'")
            if isinstance(value, Word):
                self.unknown_constant(item.value, f"constant '{name}'")
            if isinstance(value, list):
                self.r.error(item.value.pos, f"constant '{name}' must be a number, a string or a shape")
                raise _Bad
        except _Bad:
            self.later_lets.pop(name, None)
            self.env_pos[name] = item.pos
            return
        self.later_lets.pop(name, None)
        self.env[name] = value
        self.env_pos[name] = item.pos

    def repeat(self, stmt: Statement) -> list:
        self.no_alias(stmt)
        self.no_call(stmt)
        count = None
        pos_args = [a for a in stmt.args if a.key is None]
        for a in stmt.args:
            if a.key is not None:
                self.r.error(a.key_pos, f"'repeat' takes only a count, got '{a.key}='")
        if not pos_args:
            self.r.error(stmt.keyword_pos, "'repeat' needs a count, e.g. 'repeat 3 { ... }'")
        else:
            for extra in pos_args[1:]:
                self.r.error(extra.pos, f"'repeat' takes one count, got also '{_expr_text(extra.value)}'")
            try:
                count = self.coerce(T.Param("count", "int", lo=1, hi=T.MAX_REPEAT), pos_args[0].value,
                                    "the repeat count")
            except _Bad:
                count = None
        if stmt.block is None:
            self.r.error(stmt.pos, "'repeat' needs a { ... } block of layers after its count")
            return []
        body: list = []
        for item in stmt.block:
            if isinstance(item, Let):
                self.r.error(item.pos, "'let' is not allowed inside 'repeat'; define constants "
                             "at the model level")
                continue
            kw = item.keyword
            if kw == "repeat":
                body.append(("repeat", item))
            elif self.is_layer(kw):
                if kw == "input":
                    self.r.error(item.keyword_pos, "'input' cannot be inside 'repeat'")
                    continue
                body.append(("layer", item))
            elif kw in T.SETTINGS or kw == "data":
                self.r.error(item.keyword_pos, f"'{kw}' cannot be inside 'repeat' (only layers can)")
            else:
                self.unknown_statement(item, T.layer_keywords() + ("repeat",))
        # Elaborate the body once (its values do not depend on the iteration), then copy.
        protos = []
        for kind, item in body:
            if kind == "repeat":
                protos.append(("group", self.repeat(item)))
            else:
                layer = self.layer(item)
                if layer is not None:
                    protos.append(("layer", layer))
        if count is None:
            return []
        out = []
        total = sum(len(p[1]) if p[0] == "group" else 1 for p in protos) * count
        if self.n_layers + total > T.MAX_LAYERS:
            self.r.error(stmt.keyword_pos, f"'repeat' makes {total} layers; at most {T.MAX_LAYERS} "
                         "layers are supported")
            return []
        self.n_layers += total
        for i in range(1, count + 1):
            for kind, proto in protos:
                group = proto if kind == "group" else [proto]
                for layer in group:
                    if layer.name is not None:
                        layer = ir.Layer(layer.kind, layer.params, f"{layer.name}_{i}", None, layer.pos)
                    out.append(layer)
        return out

    def layer(self, stmt: Statement) -> ir.Layer | None:
        kw = stmt.keyword
        self.no_block(stmt)
        try:
            if kw == "input" and self._input_hint(stmt):
                raise _Bad
            if kw in T.ACTIVATIONS or kw == "activation":
                if kw == "activation":
                    if not self.no_call(stmt):
                        raise _Bad
                    params = self.bind("'activation'", T.LAYERS["activation"], stmt.args, npos=1,
                                       where=stmt.keyword_pos)
                else:
                    args = tuple(stmt.call_args or ()) + stmt.args
                    act_params = self.bind(f"activation '{kw}'", T.ACTIVATIONS[kw], args,
                                           npos=len(T.ACTIVATIONS[kw]), where=stmt.keyword_pos)
                    params = {"activation": ir.Activation(kw, act_params, stmt.pos)}
                kind = "activation"
            else:
                if not self.no_call(stmt):
                    raise _Bad
                kind = kw
                params = self.bind(f"'{kw}'", T.LAYERS[kw], stmt.args, npos=T.POSITIONAL[kw],
                                   where=stmt.keyword_pos, flags=True)
                if kw == "dense" and params["init"] is not None:
                    params["init"] = T.INIT_ALIASES.get(params["init"], params["init"])
        except _Bad:
            self.failed_layers += 1
            self.name_layer(stmt)
            return None
        name = self.name_layer(stmt)
        return ir.Layer(kind, params, name, None, stmt.pos)

    def _input_hint(self, stmt: Statement) -> bool:
        """'input 28 x 28' -> one clear error instead of 'too many values'."""
        vals = [a.value for a in stmt.args if a.key is None]
        if len(vals) >= 3 and all(isinstance(v, Ref) and v.name == "x" for v in vals[1::2]):
            text = "x".join(_expr_text(v) for v in vals[::2])
            self.r.error(span(stmt.args[0].pos, stmt.args[-1].pos),
                         f"write a shape without spaces, e.g. 'input {text}'")
            return True
        return False

    def name_layer(self, stmt: Statement) -> str | None:
        if stmt.alias is None:
            return None
        name = stmt.alias
        if name in T.RESERVED_WORDS:
            self.r.error(stmt.alias_pos, f"'{name}' is a reserved word and cannot name a layer")
            return name
        if name in self.layer_names:
            self.duplicate_names.add(name)
            self.r.error(stmt.alias_pos, f"layer name '{name}' is already used on line "
                         f"{self.layer_names[name].line}")
        else:
            self.layer_names[name] = stmt.alias_pos
        return name

    def setting(self, stmt: Statement):
        kw = stmt.keyword
        self.no_block(stmt)
        self.no_alias(stmt)
        try:
            if kw in ("loss", "optimizer"):
                if not self.no_call(stmt):
                    raise _Bad
                return self.named_setting(stmt)
            if not self.no_call(stmt):
                raise _Bad
            if kw == "regularize":
                return self.regularize(stmt)
            if kw == "train" and any(a.key is None and isinstance(a.value, Str) for a in stmt.args):
                self.r.error(stmt.keyword_pos, "'train \"FILE\"' names a data file: put it inside a "
                             "data { ... } block; at the model level 'train' takes settings such as "
                             "epochs=10 batch=32")
                raise _Bad
            if kw == "train":
                p = self.bind("'train'", T.TRAIN, stmt.args, npos=0, where=stmt.keyword_pos, flags=True)
                return ir.Train(p["epochs"], p["batch"], p["seed"], p["shuffle"], p["dtype"],
                                tuple(p["metrics"]), stmt.pos)
            if kw == "early_stopping":
                p = self.bind("'early_stopping'", T.EARLY_STOPPING, stmt.args, npos=0,
                              where=stmt.keyword_pos, flags=True)
                mode = p["mode"]
                if mode == "auto":
                    mode = "max" if p["monitor"] in T.MAXIMIZED_MONITORS else "min"
                return ir.EarlyStopping(p["monitor"], mode, p["patience"], p["min_delta"],
                                        p["restore_best"], stmt.pos)
        except _Bad:
            return None
        raise AssertionError(kw)

    def named_setting(self, stmt: Statement):
        kw = stmt.keyword
        table = T.LOSSES if kw == "loss" else T.OPTIMIZERS
        example = "loss cross_entropy" if kw == "loss" else "optimizer adam lr=1e-3"
        pos_args = [a for a in stmt.args if a.key is None]
        if not pos_args:
            self.r.error(stmt.keyword_pos, f"'{kw}' needs a name first, e.g. '{example}' "
                         f"(known: {', '.join(table)})")
            raise _Bad
        head = pos_args[0]
        if head is not stmt.args[0]:
            self.r.error(head.pos, f"the {kw} name comes first, right after '{kw}'")
            raise _Bad
        if isinstance(head.value, Ref):
            name, name_pos, call_args = head.value.name, head.value.pos, ()
        elif isinstance(head.value, Call):
            name, name_pos, call_args = head.value.name, head.value.name_pos, head.value.args
        else:
            self.r.error(head.pos, f"'{kw}' needs a name first, e.g. '{example}'; got "
                         f"'{_expr_text(head.value)}'")
            raise _Bad
        if name not in table:
            self.r.error(name_pos, f"unknown {kw} '{name}'" + suggest(name, table))
            raise _Bad
        # positional values inside the parentheses fill the parameters in table order
        named = []
        positional = [a for a in call_args if a.key is None]
        for i, a in enumerate(positional):
            if i >= len(table[name]):
                self._too_many(f"{kw} '{name}'", table[name], len(table[name]), a)
                raise _Bad
            named.append(Arg(table[name][i].name, a.value, a.pos, a.pos))
        named += [a for a in call_args if a.key is not None]
        params = self.bind(f"{kw} '{name}'", table[name], tuple(named) + stmt.args[1:],
                           npos=0, where=name_pos, flags=True)
        if kw == "loss":
            return ir.Loss(name, params, stmt.pos)
        if params.get("nesterov") and params.get("momentum", 0.0) == 0.0:
            self.r.error(name_pos, "nesterov=true needs momentum > 0 (e.g. momentum=0.9)")
            raise _Bad
        full = dict(T.OPTIMIZER_FILL)
        full.update(params)
        return ir.Optimizer(name, {k: full[k] for k in T.OPTIMIZER_PARAMS}, stmt.pos)

    def regularize(self, stmt: Statement):
        # accepts both 'regularize l2=1e-4 l1=1e-5' and 'regularize l2 1e-4 l1 1e-5'
        args = []
        i = 0
        items = list(stmt.args)
        bad = False
        while i < len(items):
            a = items[i]
            if a.key is None and isinstance(a.value, Ref) and a.value.name not in self.env:
                if i + 1 < len(items) and items[i + 1].key is None:
                    nxt = items[i + 1]
                    args.append(Arg(a.value.name, nxt.value, span(a.pos, nxt.pos), a.value.pos))
                    i += 2
                    continue
                self.r.error(a.pos, f"'regularize {a.value.name}' needs a value, e.g. "
                             f"'regularize {a.value.name}=1e-4'")
                bad = True
                i += 1
                continue
            if a.key is None:
                self.r.error(a.pos, "'regularize' takes l1=VALUE and/or l2=VALUE, got "
                             f"'{_expr_text(a.value)}'")
                bad = True
                i += 1
                continue
            args.append(a)
            i += 1
        if not args and not bad:
            self.r.error(stmt.keyword_pos, "'regularize' needs l1=VALUE and/or l2=VALUE, "
                         "e.g. 'regularize l2=1e-4'")
            raise _Bad
        p = self.bind("'regularize'", T.REGULARIZE, args, npos=0, where=stmt.keyword_pos)
        if bad:
            raise _Bad
        return ir.Regularize(p["l1"], p["l2"], stmt.pos)

    # ------------------------------------------------------------------ data
    def data_block(self, stmt: Statement):
        self.no_alias(stmt)
        self.no_call(stmt)
        for a in stmt.args:
            self.r.error(a.pos, "'data' takes only a { ... } block")
        if stmt.block is None:
            self.r.error(stmt.pos, "'data' needs a { ... } block, e.g. data { train \"train.npz\" }")
            return None
        seen: dict[str, Statement] = {}
        values: dict[str, object] = {}
        preprocess = []
        bad = False
        for item in stmt.block:
            if isinstance(item, Let):
                self.r.error(item.pos, "'let' is not allowed inside 'data'")
                bad = True
                continue
            kw = item.keyword
            if kw not in T.DATA:
                self.unknown_statement(item, tuple(T.DATA))
                bad = True
                continue
            self.no_block(item)
            self.no_alias(item)
            if not self.no_call(item):
                bad = True
                continue
            if kw in seen and kw not in T.PREPROCESS:
                self.r.error(item.keyword_pos, f"duplicate '{kw}' in data (first given on line "
                             f"{seen[kw].pos.line})")
                bad = True
                continue
            seen.setdefault(kw, item)
            try:
                if kw in ("train", "validation", "test"):
                    values[kw] = self.source(item, fraction_ok=(kw != "train"))
                elif kw == "label":
                    values[kw] = self.label(item)
                else:
                    p = self.bind(f"'{kw}'", T.DATA[kw], item.args, npos=len(T.DATA[kw]),
                                  where=item.keyword_pos)
                    if kw == "scale" and p["factor"] == 0.0:
                        self.r.error(item.args[0].pos, "'scale' by 0 would erase the data; "
                                     "expected a non-zero factor such as 1/255")
                        raise _Bad
                    preprocess.append(ir.Preprocess(kw, p, item.pos))
            except _Bad:
                bad = True
        if bad:
            return None
        data = ir.Data(values.get("train"), values.get("validation"), values.get("test"),
                       values.get("label"), tuple(preprocess), stmt.pos,
                       seen["label"].pos if "label" in seen else ir.NOWHERE)
        self.check_data(data, seen)
        return data

    def source(self, item: Statement, fraction_ok: bool):
        kw = item.keyword
        pos_args = [a for a in item.args if a.key is None]
        settings = [a for a in item.args if a.key in {p.name for p in T.TRAIN}]
        if kw == "train" and settings and not pos_args:
            self.r.error(settings[0].key_pos, "training settings such as "
                         f"'{settings[0].key}=' belong in a 'train' statement at the model level, "
                         "not inside data { ... }")
            raise _Bad
        if fraction_ok and pos_args and not isinstance(pos_args[0].value, Str):
            try:
                value = self.evaluate(pos_args[0].value, f"the {kw} fraction")
            except _Bad:
                raise
            if isinstance(value, (int, float)) and not isinstance(value, bool) \
                    and not isinstance(value, str):
                for extra in item.args[1:]:
                    self.r.error(extra.pos, f"'{kw}' given as a fraction takes nothing else")
                    raise _Bad
                if not 0 < value < 1:
                    self.r.error(pos_args[0].pos, f"the {kw} fraction must be in (0, 1), got {show(value)}")
                    raise _Bad
                return float(value)
            if not isinstance(value, str) or isinstance(value, Word):
                self.r.error(pos_args[0].pos, f"'{kw}' takes a file in double quotes or a fraction "
                             f"such as 0.15, got '{_expr_text(pos_args[0].value)}'")
                raise _Bad
        if not pos_args:
            hint = " or a fraction such as 0.15" if fraction_ok else ""
            self.r.error(item.keyword_pos, f"'{kw}' needs a data file in double quotes{hint}, "
                         f"e.g. {kw} \"data/{kw}.npz\"")
            raise _Bad
        p = self.bind(f"'{kw}'", T.SOURCE, item.args, npos=1, where=item.keyword_pos)
        path = p["path"]
        fmt = data_format(path)
        if not path.strip():
            self.r.error(pos_args[0].pos, f"the {kw} file name is empty")
            raise _Bad
        if fmt is None:
            self.r.error(pos_args[0].pos, f"unsupported data file '{path}': expected "
                         + ", ".join(T.DATA_FORMATS))
            raise _Bad
        for a in item.args:
            if a.key in ("x", "y") and fmt != "npz":
                self.r.error(a.key_pos, f"'{a.key}=' names an array inside an .npz file; "
                             f"'{path}' is not one")
                raise _Bad
            if a.key == "labels" and fmt == "csv":
                self.r.error(a.key_pos, "'labels=' is for .npy, .npz and IDX inputs; a CSV file "
                             "names its label column with 'label NAME' in the data block")
                raise _Bad
        if kw == "train" and fmt in ("npy", "idx") and p["labels"] is None:
            kind = "IDX images" if fmt == "idx" else ".npy inputs"
            self.r.error(pos_args[0].pos, f"{kind} need a label file: write "
                         f"train {quote(path)} labels=\"FILE\"")
            raise _Bad
        if p["labels"] is not None and data_format(p["labels"]) is None:
            self.r.error(next(a.value.pos for a in item.args if a.key == "labels"),
                         f"unsupported label file '{p['labels']}': expected " + ", ".join(T.DATA_FORMATS))
            raise _Bad
        return ir.Source(path, p["labels"], p["x"], p["y"], item.pos)

    def label(self, item: Statement):
        args = item.args
        if len(args) != 1 or args[0].key is not None:
            self.r.error(item.keyword_pos, "'label' takes one CSV column name, e.g. 'label species'")
            raise _Bad
        v = args[0].value
        if isinstance(v, Ref):
            return v.name
        if isinstance(v, Str) and v.value:
            return v.value
        self.r.error(v.pos, f"'label' takes a CSV column name, got '{_expr_text(v)}'")
        raise _Bad

    def check_data(self, data: ir.Data, seen):
        fractions = [(k, getattr(data, k)) for k in ("validation", "test")
                     if isinstance(getattr(data, k), float)]
        if fractions and data.train is None:
            k = fractions[0][0]
            self.r.error(seen[k].args[0].pos, f"'{k}' is a fraction of the training file, but the "
                         "data block has no 'train' file")
        if sum(f for _, f in fractions) >= 1.0:
            k = fractions[-1][0]
            self.r.error(seen[k].args[0].pos, "validation and test fractions together must leave "
                         f"training data: {' + '.join(show(f) for _, f in fractions)} >= 1")
        files = [s.path for s in (data.train, data.validation, data.test) if isinstance(s, ir.Source)]
        if data.label is not None:
            if files and not any(data_format(p) == "csv" for p in files):
                self.r.error(seen["label"].keyword_pos, "'label' names a CSV column, but no data file is .csv")
        elif data.train is not None and data_format(data.train.path) == "csv":
            self.r.error(seen["train"].args[0].pos, "which column of the CSV file holds the labels? "
                         "add 'label NAME' to the data block")


# The same names as runtime/idx.py's is_idx_name (which imports numpy, so it is not reused).
_IDX_NAME = re.compile(r"idx[0-9]-?u?byte$|\.idx[0-9]?$", re.IGNORECASE)


def data_format(path: str) -> str | None:
    """'npz' | 'npy' | 'csv' | 'idx' for a supported file name, else None."""
    name = os.path.basename(path).lower()
    for suffix in ("npz", "npy", "csv"):
        if name.endswith("." + suffix):
            return suffix
    if name.endswith(".gz"):
        name = name[:-3]
    if _IDX_NAME.search(name):
        return "idx"
    return None


# =====================================================================================
# Stage 2: checks on IR nodes (shared by parse() and check(model))

def _word(r: Reporter, pos: Pos) -> Pos:
    """The span of the word that starts at ``pos`` (a statement's keyword)."""
    if pos.line <= 0 or pos.line > len(r.lines):
        return pos
    text = r.lines[pos.line - 1]
    i = pos.col - 1
    j = i
    while j < len(text) and (text[j].isalnum() or text[j] == "_"):
        j += 1
    return Pos(pos.line, pos.col, pos.line, max(j + 1, pos.col + 1))


class _LazyWord:
    """The keyword span of a layer, computed only when a diagnostic needs it."""

    __slots__ = ("r", "pos")

    def __init__(self, r, pos):
        self.r, self.pos = r, pos


def _softmax_of_one(layer, shape, where, r: Reporter) -> bool:
    """False (and an error) for a softmax over a single feature: it is the constant 1, with a
    zero gradient, wherever it stands."""
    act = layer.params["activation"]
    if act.name != "softmax" or tuple(shape) != (1,):
        return True
    what = "'dense 1 softmax'" if layer.kind == "dense" else "'softmax' over 1 feature"
    r.error(act.pos if act.pos.line > 0 else where,
            f"{what} always outputs 1 (a softmax over one unit), so nothing before it can learn "
            "(its gradient is 0); for a yes/no output use 'dense 1 sigmoid' with "
            "'binary_cross_entropy', or give the softmax at least 2 units")
    return False


def infer_shapes(layers, r: Reporter) -> list | None:
    """Layers with ``shape`` set; reports shape errors. None if a shape could not be inferred."""
    if not layers:
        return None
    out = []
    ok = True
    shape = None
    for i, layer in enumerate(layers):
        where = _LazyWord(r, layer.pos)
        if i == 0:
            if layer.kind != "input":
                r.error(where, "the first layer must be 'input', e.g. 'input 64' or 'input 28x28'")
                return None
            shape = tuple(layer.params["shape"])
        elif layer.kind == "input":
            r.error(where, f"'input' must come first and only once (the model's input is on line "
                    f"{layers[0].pos.line})")
            ok = False
        elif layer.kind == "dense":
            if len(shape) != 1:
                dims = "x".join(map(str, shape))
                r.error(where, f"'dense' needs a flat input but receives shape {dims} from "
                        f"{_layer_label(layers[i - 1], i - 1)}; add 'flatten' before it")
                ok = False
            shape = (layer.params["units"],)
            ok = _softmax_of_one(layer, shape, where, r) and ok
        elif layer.kind == "flatten":
            if len(shape) == 1:
                r.warning(where, f"'flatten' does nothing here: its input is already flat ({shape[0]} features)")
            size = 1
            for d in shape:
                size *= d
            shape = (size,)
        elif layer.kind == "activation":
            act = layer.params["activation"].name
            if act in T.VECTOR_ACTIVATIONS and len(shape) != 1:
                r.error(where, f"'{act}' needs a flat input but receives shape "
                        f"{'x'.join(map(str, shape))}; add 'flatten' before it")
                ok = False
            else:
                ok = _softmax_of_one(layer, shape, where, r) and ok
        elif layer.kind in ("batchnorm", "dropout"):
            pass
        else:
            r.error(where, f"unknown layer kind '{layer.kind}'" + suggest(layer.kind, T.LAYERS))
            ok = False
        out.append(ir.Layer(layer.kind, layer.params, layer.name, tuple(shape), layer.pos))
    return out if ok else None


def check_semantics(model_parts: dict, r: Reporter, anchor: Pos, *, shapes: bool = True,
                    input_written: bool = False) -> tuple[list | None, ir.Output | None]:
    """Shapes, output/loss compatibility, metrics, early stopping vs data. Returns the
    layers with shapes and the model's ``ir.Output`` (None where they could not be made).

    ``shapes`` False skips shape inference (some layer already failed: its shape is
    unknown and every later shape message would be noise).
    """
    layers = model_parts["layers"]
    loss = model_parts.get("loss")
    train = model_parts.get("train") or ir.Train()
    es = model_parts.get("early_stopping")
    data = model_parts.get("data")

    if not any(l.kind == "input" for l in layers):
        if not input_written:
            r.error(anchor, "the model has no 'input' layer (add e.g. 'input 64' as the first layer)")
        shapes = False
    typed = infer_shapes(layers, r) if layers and shapes else None
    if not shapes:
        typed = None
    elif len(layers) == 1:
        r.error(_word(r, layers[0].pos), "the model has no layers after 'input'; add at least "
                "one 'dense' layer")
        typed = None
    elif not any(l.kind == "dense" for l in layers):
        r.error(_word(r, layers[-1].pos), "the model has no trainable layer; add a 'dense' layer")
    output = None
    if loss is not None and typed:
        out_shape = typed[-1].shape
        output, problems = decide_output(typed, loss.name)
        act = output.activation
        last = _layer_label(typed[-1], len(typed) - 1)
        lpos = loss.pos
        if loss.name in T.LOSS_FUSES and len(out_shape) != 1:
            r.error(lpos, f"'{loss.name}' needs a flat output, but {last} gives shape "
                    f"{'x'.join(map(str, out_shape))}")
        elif loss.name == "cross_entropy" and out_shape[0] < 2:
            r.error(lpos, f"'cross_entropy' needs at least 2 output units (one per class), but "
                    f"{last} has {out_shape[0]}; for a yes/no target use one sigmoid unit and "
                    "'binary_cross_entropy'")
        elif loss.name == "binary_cross_entropy" and out_shape[0] != 1:
            r.error(lpos, f"'binary_cross_entropy' needs exactly 1 output unit, but {last} has "
                    f"{out_shape[0]}; for {out_shape[0]} classes use softmax and 'cross_entropy'")
        else:
            for index, message in problems:
                r.error(lpos if index is None else _word(r, typed[index].pos), message)
        if act == "softmax" and loss.name not in T.LOSS_FUSES:
            r.warning(lpos, f"softmax output feeding '{loss.name}': probabilities compared by "
                      f"{loss.name} learn slowly; did you mean 'loss cross_entropy'?")
    if loss is not None:
        for m in train.metrics:
            if m in T.CLASSIFICATION_METRICS and loss.name not in T.CLASSIFICATION_LOSSES:
                # a regression run reports mse, mae and r2: an accuracy would never appear
                r.error(train.pos, f"metric '{m}' needs class labels, but the loss '{loss.name}' is "
                        f"a regression loss (a regression run reports mse, mae and r2); remove "
                        f"'{m}' from 'metrics' or use {' or '.join(T.CLASSIFICATION_LOSSES)}")
    if es is not None:
        best = "max" if es.monitor in T.MAXIMIZED_MONITORS else "min"
        if es.mode != best:
            worse = "largest" if es.mode == "max" else "smallest"
            r.error(es.pos, f"early_stopping mode={es.mode} keeps the epoch with the {worse} "
                    f"'{es.monitor}', the worst one: '{es.monitor}' is better when "
                    f"{'larger' if best == 'max' else 'smaller'}; use mode={best} or leave mode "
                    "out (auto picks it)")
        base = es.monitor[4:] if es.monitor.startswith("val_") else es.monitor
        if base != "loss" and base not in train.metrics:
            r.error(es.pos, f"early_stopping monitors '{es.monitor}', but '{base}' is not among "
                    f"the train metrics; add 'metrics=[{base}]' to 'train'")
        if es.monitor.startswith("val_") and data is not None and data.validation is None:
            r.error(es.pos, f"early_stopping monitors '{es.monitor}', but the data block has no "
                    "'validation' set (e.g. 'validation 0.15')")
    norms = [l for l in layers if l.kind == "batchnorm"]
    if norms and train.batch_size == 1:
        r.error(train.pos, f"batch=1 with 'batchnorm' (line {norms[0].pos.line}): batch norm "
                "normalises every feature over the batch, and over one sample its output is "
                "beta and every gradient through it 0; use batch >= 2")
    return typed, output


# =====================================================================================
# Entry points

def check_program(program: Program, r: Reporter, path: str | None) -> ir.Model | None:
    """Syntax tree -> checked Model (None if any error was reported into ``r``)."""
    el = Elaborator(program, r, path)
    if program.name in T.RESERVED_WORDS:
        r.error(program.name_pos, f"'{program.name}' is a reserved word and cannot name the model")
    layers, settings = el.run()
    parts = {"layers": layers}
    for key, (_stmt, value) in settings.items():
        parts[key] = value
    missing = []
    has_input = any(isinstance(i, Statement) and i.keyword == "input" for i in program.body)
    if "loss" not in settings:
        missing.append(("loss", "loss cross_entropy"))
    if "optimizer" not in settings:
        missing.append(("optimizer", "optimizer adam lr=1e-3"))
    for what, example in missing:
        r.error(program.name_pos, f"model '{program.name}' has no '{what}' statement "
                f"(add e.g. '{example}')")
    parts = {k: v for k, v in parts.items() if v is not None}
    seen_names: dict[str, ir.Layer] = {}
    for layer in layers:
        if layer.name is None or layer.name in el.duplicate_names:
            continue
        first = seen_names.setdefault(layer.name, layer)
        if first is not layer and first.pos != layer.pos:
            r.error(layer.pos, f"layer name '{layer.name}' is used twice (also on line {first.pos.line}); "
                    "'repeat' numbers its names: 'as h' becomes h_1, h_2, ...")
    typed, output = check_semantics(parts, r, program.name_pos, shapes=el.failed_layers == 0,
                                    input_written=has_input)
    if r.errors:
        return None
    return ir.Model(
        name=program.name,
        version=T.FORMAT_VERSION,
        layers=tuple(typed),
        loss=parts["loss"],
        optimizer=parts["optimizer"],
        regularize=parts.get("regularize") or ir.Regularize(),
        train=parts.get("train") or ir.Train(),
        early_stopping=parts.get("early_stopping"),
        data=parts.get("data"),
        path=path,
        pos=program.pos,
        output=output,
    )


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


def _validate_params(owner: str, table, params, r: Reporter, pos: Pos):
    by_name = {p.name: p for p in table}
    for key in params:
        if key not in by_name:
            r.error(pos, f"unknown parameter '{key}' for {owner}" + suggest(key, by_name))
    for p in table:
        if p.name not in params:
            r.error(pos, f"{owner} is missing parameter '{p.name}'")
            continue
        v = params[p.name]
        if v is None and p.nullable:
            continue
        if p.type in ("int", "float"):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or (p.type == "int" and not isinstance(v, int)) \
                    or not T.is_finite(v) or not p.in_range(v):
                r.error(pos, f"'{p.name}' of {owner} must be a {p.type} {p.range_text()}, got {v!r}")
        elif p.type == "bool" and not isinstance(v, bool):
            r.error(pos, f"'{p.name}' of {owner} must be true or false, got {v!r}")
        elif p.type == "name" and p.choices and v not in p.choices:
            r.error(pos, f"unknown {p.name} '{v}' for {owner}" + suggest(str(v), p.choices))


def check_model(model: ir.Model, text: str | None = None) -> tuple[ir.Model, list]:
    """Validate an ``ir.Model`` (from ``parse`` or built in Python): parameters against the
    tables, shapes (filled in when missing) and compatibility. Returns (model with shapes,
    warnings); raises ``DslError`` on errors."""
    from dataclasses import replace

    from dlrun.errors import DslError

    r = Reporter(text, model.path or "<model>")
    layers = list(model.layers)
    for layer in layers:
        if layer.kind in T.LAYERS:
            params = dict(layer.params)
            if layer.kind == "dense" and params.get("init") is not None and params["init"] not in T.INITS:
                r.error(layer.pos, f"dense init must be one of {', '.join(T.INITS)}, got {params['init']!r}")
                params["init"] = None
            acts = [params["activation"]] if "activation" in params else []
            for act in acts:
                if not isinstance(act, ir.Activation) or act.name not in T.ACTIVATIONS:
                    r.error(layer.pos, f"unknown activation {getattr(act, 'name', act)!r}"
                            + suggest(str(getattr(act, 'name', act)), T.ACTIVATIONS))
                else:
                    _validate_params(f"activation '{act.name}'", T.ACTIVATIONS[act.name], act.params, r, layer.pos)
            table = tuple(p for p in T.LAYERS[layer.kind] if p.type not in ("activation", "shape"))
            rest = {k: v for k, v in params.items() if k in {p.name for p in table}}
            extra = set(params) - {p.name for p in T.LAYERS[layer.kind]}
            for key in sorted(extra):
                r.error(layer.pos, f"unknown parameter '{key}' for '{layer.kind}'")
            if layer.kind == "dense":
                rest["init"] = None if params.get("init") in T.INITS else params.get("init")
            _validate_params(f"'{layer.kind}'", table, rest, r, layer.pos)
        else:
            r.error(layer.pos, f"unknown layer kind '{layer.kind}'" + suggest(layer.kind, T.LAYERS))
    if model.loss is None or model.loss.name not in T.LOSSES:
        r.error(model.pos, f"unknown loss {getattr(model.loss, 'name', None)!r}" + suggest(
            str(getattr(model.loss, "name", "")), T.LOSSES))
    else:
        _validate_params(f"loss '{model.loss.name}'", T.LOSSES[model.loss.name], model.loss.params, r, model.loss.pos)
    if model.optimizer is None or model.optimizer.name not in T.OPTIMIZERS:
        r.error(model.pos, f"unknown optimizer {getattr(model.optimizer, 'name', None)!r}"
                + suggest(str(getattr(model.optimizer, "name", "")), T.OPTIMIZERS))
    else:
        own = {p.name for p in T.OPTIMIZERS[model.optimizer.name]}
        _validate_params(f"optimizer '{model.optimizer.name}'", T.OPTIMIZERS[model.optimizer.name],
                         {k: v for k, v in model.optimizer.params.items() if k in own}, r, model.optimizer.pos)
    tr = model.train
    _validate_params("'train'", T.TRAIN, {"epochs": tr.epochs, "batch": tr.batch_size, "seed": tr.seed,
                                          "shuffle": tr.shuffle, "dtype": tr.dtype, "metrics": tuple(tr.metrics)},
                     r, tr.pos)
    for m in tr.metrics:
        if m not in T.METRICS:
            r.error(tr.pos, f"unknown metric {m!r}" + suggest(str(m), T.METRICS))
    es = model.early_stopping
    if es is not None:
        _validate_params("'early_stopping'", T.EARLY_STOPPING,
                         {"monitor": es.monitor, "mode": es.mode, "patience": es.patience,
                          "min_delta": es.min_delta, "restore_best": es.restore_best}, r, es.pos)
        if es.mode == "auto":
            r.error(es.pos, "early_stopping mode must be resolved to 'min' or 'max' in the IR")
    reg = model.regularize
    _validate_params("'regularize'", T.REGULARIZE, {"l1": reg.l1, "l2": reg.l2}, r, reg.pos)
    if r.errors:
        raise DslError(r.errors)
    parts = {"layers": layers, "loss": model.loss, "train": model.train,
             "early_stopping": model.early_stopping, "data": model.data}
    typed, output = check_semantics(parts, r, model.pos)
    if r.errors:
        raise DslError(r.errors)
    for old, new in zip(model.layers, typed):
        if old.shape is not None and tuple(old.shape) != new.shape:
            r.error(old.pos, f"layer shape {old.shape} does not match the inferred {new.shape}")
    if r.errors:
        raise DslError(r.errors)
    return replace(model, layers=tuple(typed), output=output), r.warnings
