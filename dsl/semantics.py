"""Checks on the whole model once its layers have shapes: the output and the loss (the
output and the fused loss are decided by ``output.decide_output`` and recorded in
``Model.output``), metrics, early stopping against the data, batch statistics.
"""
from __future__ import annotations

from dlrun.dsl import ir, tables as T
from dlrun.dsl.check_data import check_data_input
from dlrun.dsl.diagnostics import Reporter
from dlrun.dsl.ir import Pos
from dlrun.dsl.graph import build_graph
from dlrun.dsl.layers import spec
from dlrun.dsl.losses import CLASSIFICATION_LOSSES, LOSSES
from dlrun.dsl.output import decide_output, layer_label as _layer_label


def _check_monitor(r: Reporter, who: str, monitor: str, pos: Pos, train, data) -> None:
    """A monitored quantity (early stopping's, a plateau schedule's) must be one the run
    reports: its metric among the train metrics, a validation set for a ``val_`` one."""
    base = monitor[4:] if monitor.startswith("val_") else monitor
    if base != "loss" and base not in train.metrics:
        r.error(pos, f"{who} monitors '{monitor}', but '{base}' is not among "
                f"the train metrics; add 'metrics=[{base}]' to 'train'")
    if monitor.startswith("val_") and data is not None and data.validation is None:
        r.error(pos, f"{who} monitors '{monitor}', but the data block has no "
                "'validation' set (e.g. 'validation 0.15')")


def _check_class_weight(r: Reporter, loss, out_shape) -> None:
    """A ``class_weight=[...]`` list has one weight per class of the output."""
    weights = dict(loss.params).get("class_weight")
    if not isinstance(weights, (tuple, list)):
        return
    expected = LOSSES[loss.name].classes(out_shape)
    if expected is None:
        return
    classes, what = expected
    if len(weights) != classes:
        pos = dict(getattr(loss, "param_pos", {}) or {}).get("class_weight", loss.pos)
        r.error(pos, f"'class_weight' of loss '{loss.name}' lists {len(weights)} "
                f"weight{'s' if len(weights) != 1 else ''}; expected {classes} ({what})")


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


def check_semantics(model_parts: dict, r: Reporter, anchor: Pos, *, shapes: bool = True,
                    input_written: bool = False,
                    residual_at=frozenset()) -> tuple[list | None, ir.Output | None]:
    """Shapes, output/loss compatibility, metrics, early stopping vs data. Returns the
    layers with shapes and the model's ``ir.Output`` (None where they could not be made).

    ``shapes`` False skips shape inference (some layer already failed: its shape is
    unknown and every later shape message would be noise).
    """
    layers = model_parts["layers"]
    loss = model_parts.get("loss")
    train = model_parts.get("train") or ir.Train()
    es = model_parts.get("early_stopping")
    sched = model_parts.get("schedule")
    data = model_parts.get("data")

    if not any(spec(l.kind).inputs == 0 for l in layers):
        if not input_written:
            r.error(anchor, "the model has no 'input' layer (add e.g. 'input 64' as the first layer)")
        shapes = False
    typed = build_graph(layers, r, residual_at) if layers and shapes else None
    if not shapes:
        typed = None
    elif len(layers) == 1:
        r.error(_word(r, layers[0].pos), "the model has no layers after 'input'; add at least "
                "one 'dense' layer")
        typed = None
    elif not any(spec(l.kind).has_weights for l in layers):
        r.error(_word(r, layers[-1].pos), "the model has no trainable layer; add a 'dense' layer")
    output = None
    if loss is not None and typed:
        out_shape = typed[-1].shape
        output, problems = decide_output(typed, loss.name)
        act = output.activation
        last = _layer_label(typed[-1], len(typed) - 1)
        lpos = loss.pos
        shape_problem = LOSSES[loss.name].output_problem(out_shape, last)
        if shape_problem is not None:
            r.error(lpos, shape_problem)
        else:
            for index, message in problems:
                r.error(lpos if index is None else _word(r, typed[index].pos), message)
        _check_class_weight(r, loss, out_shape)
        if act == "softmax" and LOSSES[loss.name].fuses is None:
            r.warning(lpos, f"softmax output feeding '{loss.name}': probabilities compared by "
                      f"{loss.name} learn slowly; did you mean 'loss cross_entropy'?")
    if loss is not None:
        for m in train.metrics:
            if m in T.CLASSIFICATION_METRICS and loss.name not in CLASSIFICATION_LOSSES:
                # a regression run reports mse, mae and r2: an accuracy would never appear
                r.error(train.pos, f"metric '{m}' needs class labels, but the loss '{loss.name}' is "
                        f"a regression loss (a regression run reports mse, mae and r2); remove "
                        f"'{m}' from 'metrics' or use {' or '.join(CLASSIFICATION_LOSSES)}")
            if m in T.REGRESSION_METRICS and loss.name in CLASSIFICATION_LOSSES:
                r.error(train.pos, f"metric '{m}' scores regression outputs, but the loss '{loss.name}' "
                        f"trains a classifier (which reports {', '.join(T.CLASSIFICATION_METRICS)}); remove "
                        f"'{m}' from 'metrics' or use a regression loss")
    if loss is not None and data is not None and data.target is not None \
            and LOSSES[loss.name].task != "regression":
        r.error(_word(r, data.settings_pos.get("target", data.pos)),
                f"'target {data.target}' standardizes a regression model's targets, but the loss "
                f"'{loss.name}' trains a classifier (its labels are classes); remove it, or use a "
                f"regression loss ({', '.join(n for n, s in LOSSES.items() if s.task == 'regression')})")
    if es is not None:
        best = "max" if es.monitor in T.MAXIMIZED_MONITORS else "min"
        if es.mode != best:
            worse = "largest" if es.mode == "max" else "smallest"
            r.error(es.pos, f"early_stopping mode={es.mode} keeps the epoch with the {worse} "
                    f"'{es.monitor}', the worst one: '{es.monitor}' is better when "
                    f"{'larger' if best == 'max' else 'smaller'}; use mode={best} or leave mode "
                    "out (auto picks it)")
        _check_monitor(r, "early_stopping", es.monitor, es.pos, train, data)
    if sched is not None:
        from dlrun.dsl.schedules import SCHEDULES

        problem = SCHEDULES[sched.name].problem(dict(sched.params), train.epochs)
        if problem is not None:
            r.error(sched.pos, f"schedule {sched.name}: {problem}")
        if "monitor" in sched.params:
            _check_monitor(r, f"schedule {sched.name}", sched.params["monitor"], sched.pos, train, data)
    if data is not None and typed:
        check_data_input(data, next(l.shape for l in typed if spec(l.kind).inputs == 0), r)
        if data.text is None:
            # the data block reads no text: nothing gives what the layer leaves out
            for layer in typed:
                what = spec(layer.kind).awaits(layer)
                if what is not None:
                    r.error(_word(r, layer.pos), f"'{spec(layer.kind).word(layer)}' takes {what} from the "
                            "data's tokens, but the data block reads no text column; add 'text COLUMN' "
                            "(and 'tokens ...'), or write the size (e.g. 'vocab=N')")
    norms = [l for l in layers if spec(l.kind).batch_statistics]
    if norms and train.batch_size == 1:
        r.error(train.pos, f"batch=1 with '{norms[0].kind}' (line {norms[0].pos.line}): batch norm "
                "normalises every feature over the batch, and over one sample its output is "
                "beta and every gradient through it 0; use batch >= 2")
    return typed, output
