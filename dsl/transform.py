"""Parse tree -> syntax tree (the file as written, before any checking).

Nodes are NamedTuples (cheap to define: ``dlrun check`` starts fast). This Transformer only maps Lark's tree onto the small frozen dataclasses below and
records positions; it never raises for bad input (Lark would wrap the exception in a
``VisitError``). Meaning is given by ``checker.py``: it evaluates expressions and ``let``,
expands ``repeat``, validates names against ``tables.py`` and builds the ``ir.Model``.
The formatter (``fmt.py``) prints this tree back, so it keeps the source text of numbers.
"""
from __future__ import annotations

from typing import NamedTuple, Union

from dlrun.dsl.parser import import_lark

from dlrun.dsl.ir import NOWHERE, Pos


# --------------------------------------------------------------------------- expressions

class Num(NamedTuple):
    value: Union[int, float]
    text: str
    pos: Pos = NOWHERE


class Str(NamedTuple):
    value: str
    pos: Pos = NOWHERE


class ShapeLit(NamedTuple):
    dims: tuple
    pos: Pos = NOWHERE


class Ref(NamedTuple):
    """A bare name: a ``let`` constant, or a word such as ``relu``, ``he``, ``true``."""

    name: str
    pos: Pos = NOWHERE


class Call(NamedTuple):
    """``name(args)``: an activation, loss or optimizer with parameters."""

    name: str
    args: tuple  # of Arg
    pos: Pos = NOWHERE
    name_pos: Pos = NOWHERE


class ListLit(NamedTuple):
    items: tuple
    pos: Pos = NOWHERE


class BinOp(NamedTuple):
    op: str  # + - * /
    left: object
    right: object
    pos: Pos = NOWHERE
    op_pos: Pos = NOWHERE


class Unary(NamedTuple):
    op: str  # - +
    operand: object
    pos: Pos = NOWHERE


# --------------------------------------------------------------------------- statements

class Arg(NamedTuple):
    """A value: positional (``key`` None) or ``key=value``."""

    key: str | None
    value: object
    pos: Pos = NOWHERE
    key_pos: Pos = NOWHERE


class Statement(NamedTuple):
    """``keyword args... [as NAME] [{ block }]``; ``call_args`` for ``keyword(...)`` heads."""

    keyword: str
    args: tuple
    call_args: tuple | None = None
    alias: str | None = None
    alias_pos: Pos = NOWHERE
    block: tuple | None = None
    block_pos: Pos = NOWHERE
    pos: Pos = NOWHERE
    keyword_pos: Pos = NOWHERE


class Let(NamedTuple):
    name: str
    value: object
    pos: Pos = NOWHERE
    name_pos: Pos = NOWHERE


class Program(NamedTuple):
    version: object
    name: str
    body: tuple
    pos: Pos = NOWHERE
    version_pos: Pos = NOWHERE
    name_pos: Pos = NOWHERE
    body_pos: Pos = NOWHERE


class _Alias(NamedTuple):
    name: str
    pos: Pos


class _Block(NamedTuple):
    items: tuple
    pos: Pos


Expr = Union[Num, Str, ShapeLit, Ref, Call, ListLit, BinOp, Unary]


def meta_pos(meta) -> Pos:
    if getattr(meta, "empty", True):
        return NOWHERE
    return Pos(meta.line, meta.column, meta.end_line, meta.end_column)


def tok_pos(tok) -> Pos:
    return Pos(tok.line, tok.column, tok.end_line, tok.end_column)


def unquote(text: str) -> str:
    """The value of a STRING token: only \\" and \\\\ are escapes (paths keep other backslashes)."""
    body = text[1:-1]
    out = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body) and body[i + 1] in '"\\':
            out.append(body[i + 1])
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def number_value(text: str):
    """'128' -> 128, '1e-4' -> 0.0001, '0.5' -> 0.5 (ints stay ints)."""
    if any(c in text for c in ".eE"):
        return float(text)
    return int(text)


class ToSyntax:
    """Lark tree -> ``Program`` (pure: no validation, no exceptions for bad input).

    One method per grammar rule, called bottom-up with the rule's ``meta`` (positions)
    and its converted children, like a Lark ``Transformer`` with ``v_args(meta=True)``;
    the dispatch is written out here because Lark's per-call wrappers cost more than
    the rest of the conversion (see benchmarks/dsl.py).
    """

    def transform(self, tree):
        Tree = import_lark().Tree
        methods = {}

        def conv(node):
            if not isinstance(node, Tree):
                return node  # a Token, or None for an absent [optional] part
            rule = node.data
            fn = methods.get(rule)
            if fn is None:
                fn = methods[rule] = getattr(self, rule)
            return fn(node.meta, [conv(c) for c in node.children])

        return conv(tree)

    def start(self, meta, children):
        version, program = children[0], children[1]
        return Program(version[0], program.name, program.body, program.pos, version[1],
                       program.name_pos, program.body_pos)

    def version(self, meta, children):
        return (children[0], meta_pos(meta))

    def model(self, meta, children):
        name, block = children
        body, body_pos = block
        return Program(None, str(name), body, meta_pos(meta), NOWHERE, tok_pos(name), body_pos)

    def block(self, meta, children):
        return _Block(tuple(c for c in children if c is not None), meta_pos(meta))

    def let(self, meta, children):
        name, value = children
        return Let(str(name), value, meta_pos(meta), tok_pos(name))

    def statement(self, meta, children):
        head = children[0]
        keyword, keyword_pos, call_args = head
        args, alias, alias_pos, block, block_pos = [], None, NOWHERE, None, NOWHERE
        for child in children[1:]:
            if isinstance(child, Arg):
                args.append(child)
            elif isinstance(child, _Alias):
                alias, alias_pos = child.name, child.pos
            elif isinstance(child, _Block):
                block, block_pos = child.items, child.pos
        return Statement(keyword, tuple(args), call_args, alias, alias_pos, block, block_pos,
                         meta_pos(meta), keyword_pos)

    def head(self, meta, children):
        tok = children[0]
        return (str(tok), tok_pos(tok), None)

    def head_call(self, meta, children):
        tok = children[0]
        return (str(tok), tok_pos(tok), tuple(c for c in children[1:] if c is not None))

    def alias(self, meta, children):
        tok = children[0]
        return _Alias(str(tok), tok_pos(tok))

    def positional(self, meta, children):
        return Arg(None, children[0], meta_pos(meta))

    def keyword(self, meta, children):
        key, value = children
        return Arg(str(key), value, meta_pos(meta), tok_pos(key))

    def _binop(op):
        def rule(self, meta, children):
            left, right = children
            return BinOp(op, left, right, meta_pos(meta))
        return rule

    add = _binop("+")
    sub = _binop("-")
    mul = _binop("*")
    div = _binop("/")
    del _binop

    def neg(self, meta, children):
        return Unary("-", children[0], meta_pos(meta))

    def plus(self, meta, children):
        return Unary("+", children[0], meta_pos(meta))

    def number(self, meta, children):
        tok = children[0]
        return Num(number_value(str(tok)), str(tok), tok_pos(tok))

    def string(self, meta, children):
        tok = children[0]
        return Str(unquote(str(tok)), tok_pos(tok))

    def shape(self, meta, children):
        tok = children[0]
        return ShapeLit(tuple(int(d) for d in str(tok).split("x")), tok_pos(tok))

    def ref(self, meta, children):
        tok = children[0]
        return Ref(str(tok), tok_pos(tok))

    def call(self, meta, children):
        tok = children[0]
        return Call(str(tok), tuple(c for c in children[1:] if c is not None), meta_pos(meta),
                    tok_pos(tok))

    def list(self, meta, children):
        return ListLit(tuple(c for c in children if c is not None), meta_pos(meta))


_TRANSFORMER = ToSyntax()


def to_syntax(tree) -> Program:
    return _TRANSFORMER.transform(tree)
