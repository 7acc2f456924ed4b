"""The ``.net`` model language: text -> checked IR (``dlrun.dsl.ir``).

    >>> from dlrun.dsl import parse
    >>> m = parse('''dlrun 1
    ... model tiny {
    ...   input 4
    ...   dense 3 softmax
    ...   loss cross_entropy
    ...   optimizer sgd lr=0.1
    ... }''')
    >>> m.name, m.output_shape, m.optimizer.params["lr"]
    ('tiny', (3,), 0.1)

Public functions: ``parse``, ``load_file``, ``check``, ``model_warnings``,
``format_model``, ``format_source``, ``summarize``. Every input error is raised as
``dlrun.errors.DslError`` carrying the diagnostics (in source order). This package
imports neither numpy nor scipy nor the kernels, so checking a file is fast.
"""
from __future__ import annotations

from dlrun.errors import DslError

__all__ = ["parse", "load_file", "parse_syntax", "check", "model_warnings", "format_model",
           "format_source", "summarize", "DslError"]


def parse_syntax(text: str, path: str = "<string>"):
    """Text -> (normalised text, syntax tree) without meaning checks; raises DslError."""
    from dlrun.dsl.parser import check_text, parse_tree
    from dlrun.dsl.transform import to_syntax

    if not isinstance(text, str):
        raise TypeError(f"parse() takes the model text as str, got {type(text).__name__}")
    norm, diags = check_text(text, path)
    if diags:
        raise DslError(diags)
    tree, diags = parse_tree(norm, path)
    if diags:
        raise DslError(diags)
    try:
        return norm, to_syntax(tree)
    except RecursionError:
        raise _too_deep(path) from None


def _too_deep(path):
    from dlrun.dsl.diagnostics import Diagnostic

    return DslError([Diagnostic("error", "the model nests too deeply (parentheses, signs or "
                                "blocks hundreds of levels deep)", path)])


def parse(text: str, path: str = "<string>", warnings: list | None = None):
    """Parse and check model text; returns the checked ``ir.Model``.

    Raises ``DslError`` with every error found. Warnings (for example softmax feeding
    ``mse``) are appended to ``warnings`` when a list is given.
    """
    from dlrun.dsl.checker import check_program
    from dlrun.dsl.diagnostics import Reporter

    norm, program = parse_syntax(text, path)
    reporter = Reporter(norm, path)
    try:
        model = check_program(program, reporter, None if path == "<string>" else path)
    except RecursionError:
        raise _too_deep(path) from None
    if reporter.errors:
        raise DslError(reporter.errors)
    if warnings is not None:
        warnings.extend(reporter.warnings)
    return model


def read_source(path) -> str:
    """A model file's text (BOM, CRLF handled); DslError if it cannot be read as text."""
    import os

    from dlrun.dsl.diagnostics import Diagnostic
    from dlrun.dsl.parser import MAX_SOURCE_BYTES, decode_source

    from dlrun.fileopen import NotReadable, open_regular

    path = os.fspath(path)
    try:
        with open_regular(path) as f:
            data = f.read(MAX_SOURCE_BYTES + 1)  # more is refused: no need to read it
    except NotReadable as err:
        raise DslError([Diagnostic("error", err.reason("model file"), path)]) from None
    except OSError as err:
        raise DslError([Diagnostic("error", f"cannot read model file: {err.strerror or err}", path)]) from None
    text, diags = decode_source(data, path)
    if diags:
        raise DslError(diags)
    return text


def load_file(path, warnings: list | None = None):
    """Read and parse a ``.net`` file; ``Model.path`` is ``path`` as given."""
    import os

    path = os.fspath(path)
    return parse(read_source(path), path, warnings=warnings)


def check(model) -> list:
    """Validate an ``ir.Model`` (parameters, shapes, loss compatibility).

    Returns the warnings (a list of ``Diagnostic``); raises ``DslError`` on errors.
    """
    from dlrun.dsl.checker import check_model

    return check_model(model)[1]


def model_warnings(model) -> list:
    """The warnings of a checked model (same as ``check(model)``)."""
    return check(model)


def format_model(model) -> str:
    """The canonical ``.net`` text of a checked model (``repeat``/``let`` already expanded)."""
    from dlrun.dsl.fmt import format_model as _format_model

    return _format_model(model)


def format_source(text: str, path: str = "<string>") -> str:
    """The canonical form of model *text*, keeping comments, ``let`` and ``repeat``."""
    from dlrun.dsl.fmt import format_source as _format_source

    try:
        return _format_source(text, path)
    except RecursionError:
        raise _too_deep(path) from None


def summarize(model) -> str:
    """A table of layers: output shape, parameters, FLOPs per sample; totals and memory."""
    from dlrun.dsl.summary import summarize as _summarize

    return _summarize(model)
