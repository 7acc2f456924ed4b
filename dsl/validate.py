"""``check(model)``: an ``ir.Model`` built or changed in Python is validated as a parsed
file is — every parameter against its spec or table, then shapes and compatibility.
"""
from __future__ import annotations

from dlrun.dsl import ir, tables as T
from dlrun.dsl.diagnostics import Reporter, suggest
from dlrun.dsl.ir import Pos
from dlrun.dsl.layers import SPECS
from dlrun.dsl.losses import LOSSES
from dlrun.dsl.optimizers import OPTIMIZERS
from dlrun.dsl.schedules import SCHEDULES
from dlrun.dsl.semantics import check_semantics


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
        elif p.type == "ints" and (not isinstance(v, (tuple, list)) or any(
                isinstance(i, bool) or not isinstance(i, int) or not p.in_range(i) for i in v)):
            r.error(pos, f"'{p.name}' of {owner} must be a list of ints {p.range_text()}, got {v!r}")
        elif p.type == "weights" and not (
                (isinstance(v, str) and v in (p.choices or ())) or (
                    isinstance(v, (tuple, list)) and v and any(v) and all(
                        not isinstance(i, bool) and isinstance(i, (int, float)) and T.is_finite(i)
                        and p.in_range(i) for i in v))):
            r.error(pos, f"'{p.name}' of {owner} must be {', '.join(p.choices or ())} or a list of "
                    f"numbers {p.range_text()}, not all 0, got {v!r}")
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
        if layer.kind in SPECS:
            s = SPECS[layer.kind]
            params = dict(layer.params)
            if params.get("init") is not None and params["init"] not in T.INITS:
                r.error(layer.pos, f"{layer.kind} init must be one of {', '.join(T.INITS)}, got {params['init']!r}")
                params["init"] = None
            acts = [params["activation"]] if "activation" in params else []
            for act in acts:
                if not isinstance(act, ir.Activation) or act.name not in T.ACTIVATIONS:
                    r.error(layer.pos, f"unknown activation {getattr(act, 'name', act)!r}"
                            + suggest(str(getattr(act, 'name', act)), T.ACTIVATIONS))
                else:
                    _validate_params(f"activation '{act.name}'", T.ACTIVATIONS[act.name], act.params, r, layer.pos)
            table = tuple(p for p in s.params if p.type not in ("activation", "shape", "pair", "padding"))
            rest = {k: v for k, v in params.items() if k in {p.name for p in table}}
            extra = set(params) - {p.name for p in s.params}
            for key in sorted(extra):
                r.error(layer.pos, f"unknown parameter '{key}' for '{layer.kind}'")
            if "init" in rest:
                rest["init"] = None if params.get("init") in T.INITS else params.get("init")
            _validate_params(f"'{layer.kind}'", table, rest, r, layer.pos)
        else:
            r.error(layer.pos, f"unknown layer kind '{layer.kind}'" + suggest(layer.kind, SPECS))
    if model.loss is None or model.loss.name not in LOSSES:
        r.error(model.pos, f"unknown loss {getattr(model.loss, 'name', None)!r}" + suggest(
            str(getattr(model.loss, "name", "")), LOSSES))
    else:
        table = LOSSES[model.loss.name].params
        # a setting that is off unless given (class_weight) may be left out of a Python-built IR
        off = {p.name: None for p in table if p.nullable and p.default is None}
        _validate_params(f"loss '{model.loss.name}'", table, {**off, **dict(model.loss.params)},
                         r, model.loss.pos)
    if model.optimizer is None or model.optimizer.name not in OPTIMIZERS:
        r.error(model.pos, f"unknown optimizer {getattr(model.optimizer, 'name', None)!r}"
                + suggest(str(getattr(model.optimizer, "name", "")), OPTIMIZERS))
    else:
        table = OPTIMIZERS[model.optimizer.name].params
        own = {p.name for p in table}
        bound = {k: v for k, v in model.optimizer.params.items() if k in own}
        n_errors = len(r.errors)
        _validate_params(f"optimizer '{model.optimizer.name}'", table, bound, r, model.optimizer.pos)
        problem = OPTIMIZERS[model.optimizer.name].problem(bound) if len(r.errors) == n_errors else None
        if problem is not None:
            r.error(model.optimizer.pos, problem)
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
    sched = model.schedule
    if sched is not None:
        if sched.name not in SCHEDULES:
            r.error(sched.pos, f"unknown schedule {sched.name!r}" + suggest(sched.name, SCHEDULES))
        else:
            _validate_params(f"schedule '{sched.name}'", SCHEDULES[sched.name].params, dict(sched.params), r,
                             sched.pos)
    reg = model.regularize
    _validate_params("'regularize'", T.REGULARIZE, {"l1": reg.l1, "l2": reg.l2}, r, reg.pos)
    if r.errors:
        raise DslError(r.errors)
    parts = {"layers": layers, "loss": model.loss, "train": model.train,
             "early_stopping": model.early_stopping, "schedule": model.schedule, "data": model.data}
    typed, output = check_semantics(parts, r, model.pos)
    if r.errors:
        raise DslError(r.errors)
    for old, new in zip(model.layers, typed):
        if old.shape is not None and tuple(old.shape) != new.shape:
            r.error(old.pos, f"layer shape {old.shape} does not match the inferred {new.shape}")
    if r.errors:
        raise DslError(r.errors)
    return replace(model, layers=tuple(typed), output=output), r.warnings
