"""The check pass: syntax tree -> checked ``ir.Model``, reporting every problem.

Two stages, both reporting into one ``Reporter`` so that all errors come out together
in source order:

1. ``elaborate.Elaborator`` gives the syntax tree its meaning: it evaluates ``let``
   constants and constant arithmetic (``values.py``), expands ``repeat`` and ``residual``,
   binds every statement's values to the parameters of its layer spec (``layers/``) or
   table (``tables.py``) with "did you mean" for unknown names, checks types and ranges,
   fills in defaults, and checks the data block (``check_data.py``).
2. ``semantics.check_semantics`` works on IR nodes: the graph of layers (``graph.py``:
   references, order, every shape), output/loss compatibility (decided by
   ``output.decide_output`` and recorded in ``Model.output``), metrics, early stopping
   and data consistency.
   ``validate.check_model`` runs it (with a parameter re-validation) on any ``ir.Model``,
   for instance one built or modified in Python.
"""
from __future__ import annotations

from dlrun.dsl import ir, tables as T
from dlrun.dsl.diagnostics import Reporter
from dlrun.dsl.elaborate import Elaborator
from dlrun.dsl.semantics import check_semantics
from dlrun.dsl.transform import Program, Statement
from dlrun.dsl.validate import check_model  # noqa: F401  (dlrun.dsl.check reads it from here)


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
                                    input_written=has_input, residual_at=frozenset(el.residual_at))
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
        schedule=parts.get("schedule"),
        data=parts.get("data"),
        path=path,
        pos=program.pos,
        output=output,
    )
