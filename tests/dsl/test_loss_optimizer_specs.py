"""dsl/losses.py and dsl/optimizers.py: one spec per loss and per optimizer, read by the
parser, the checker, ``check(model)`` and the formatter (a spec added to the registry is
accepted by all of them with nothing else changed)."""
import dataclasses

import pytest

from dlrun.dsl import check, format_model, ir, parse, tables
from dlrun.dsl.losses import CLASSIFICATION_LOSSES, LOSSES, TASKS, LossSpec
from dlrun.dsl.optimizers import FILL, IR_PARAMS, OPTIMIZERS, OptimizerSpec
from dlrun.errors import DslError


def text(loss="cross_entropy", optimizer="adam", out="dense 3 softmax"):
    return f"dlrun 1\nmodel m {{\n  input 4\n  {out}\n  loss {loss}\n  optimizer {optimizer}\n}}\n"


def test_loss_specs_are_well_formed():
    for name, s in LOSSES.items():
        assert s.name == name and isinstance(s, LossSpec)
        assert s.task in TASKS and s.labels == TASKS[s.task]
        assert s.fuses is None or s.fuses in tables.ACTIVATIONS, name
        assert len({p.name for p in s.params}) == len(s.params)
    assert [(n, LOSSES[n].task, LOSSES[n].fuses, LOSSES[n].labels) for n in LOSSES] == [
        ("mse", "regression", None, "real targets"),
        ("mae", "regression", None, "real targets"),
        ("huber", "regression", None, "real targets"),
        ("cross_entropy", "classification", "softmax", "class indices"),
        ("binary_cross_entropy", "binary", "sigmoid", "0-1 targets"),
    ]
    assert CLASSIFICATION_LOSSES == ("cross_entropy", "binary_cross_entropy")


def test_optimizer_specs_are_well_formed():
    assert IR_PARAMS == ("lr", "momentum", "nesterov", "beta1", "beta2", "eps", "rho", "weight_decay",
                         "clip_norm")
    for name, s in OPTIMIZERS.items():
        assert s.name == name and isinstance(s, OptimizerSpec)
        assert {p.name for p in s.params} <= set(FILL), name
        assert s.params[0].name == "lr" and s.params[-1].name == "clip_norm"


def test_loss_output_rules_come_from_the_spec():
    ce, bce = LOSSES["cross_entropy"], LOSSES["binary_cross_entropy"]
    assert ce.output_problem((3,), "L") is None and bce.output_problem((1,), "L") is None
    assert "at least 2 output units" in ce.output_problem((1,), "L")
    assert "exactly 1 output unit" in bce.output_problem((2,), "L")
    assert ce.output_problem((2, 3), "L") == "'cross_entropy' needs a flat output, but L gives shape 2x3"
    assert LOSSES["mse"].output_problem((2, 3), "L") is None


class Hinge(LossSpec):
    name = "hinge_test"
    params = (tables.Param("margin", "float", 1.0, lo=0.0, lo_open=True, doc="margin"),)
    task = "binary"
    fuses = "sigmoid"

    def output_problem(self, out_shape, last):
        return super().output_problem(out_shape, last) or (
            None if out_shape == (1,) else f"'hinge_test' needs 1 unit, {last} has {out_shape[0]}")


def test_a_loss_is_its_spec(monkeypatch):
    monkeypatch.setitem(LOSSES, "hinge_test", Hinge())
    m = parse(text("hinge_test margin=2", out="dense 1 sigmoid"))
    assert m.loss == ir.Loss("hinge_test", {"margin": 2.0}, m.loss.pos)
    assert m.output.task == "binary" and m.output.fused
    assert "loss hinge_test margin=2" in format_model(m)
    assert check(m) == []
    with pytest.raises(DslError, match="'hinge_test' needs 1 unit, layer 1 \\(dense\\) has 3"):
        parse(text("hinge_test", out="dense 3"))
    with pytest.raises(DslError, match="'margin' of loss 'hinge_test' must be a float > 0"):
        check(dataclasses.replace(m, loss=ir.Loss("hinge_test", {"margin": 0.0})))


class Lion(OptimizerSpec):
    name = "lion_test"
    params = (tables.Param("lr", "float", 1e-4, lo=0.0, lo_open=True, doc="learning rate"),
              tables.Param("beta1", "float", 0.9, lo=0.0, hi=1.0, hi_open=True, doc="b1"))

    def problem(self, params):
        return "lion_test wants beta1 >= 0.5" if params["beta1"] < 0.5 else None


def test_an_optimizer_is_its_spec(monkeypatch):
    monkeypatch.setitem(OPTIMIZERS, "lion_test", Lion())
    m = parse(text(optimizer="lion_test beta1=0.8"))
    assert list(m.optimizer.params) == list(IR_PARAMS)
    assert m.optimizer.params["lr"] == 1e-4 and m.optimizer.params["beta1"] == 0.8
    assert m.optimizer.params["rho"] == FILL["rho"]
    assert "optimizer lion_test beta1=0.8" in format_model(m)
    assert check(m) == []
    with pytest.raises(DslError, match="lion_test wants beta1 >= 0.5"):
        parse(text(optimizer="lion_test(1e-3, 0.2)"))
    with pytest.raises(DslError, match="unknown optimizer 'lion'.*did you mean 'lion_test'"):
        parse(text(optimizer="lion"))


def test_check_applies_the_optimizer_rule_to_an_ir_built_in_python():
    m = parse(text(optimizer="sgd momentum=0.9 nesterov=true"))
    assert check(m) == []
    params = dict(m.optimizer.params, momentum=0.0)
    with pytest.raises(DslError, match="nesterov=true needs momentum > 0"):
        check(dataclasses.replace(m, optimizer=ir.Optimizer("sgd", params)))


def test_the_loss_table_of_the_reference_follows_the_specs():
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "language.md").read_text(encoding="utf-8")
    rows = {line.split("|")[1].strip().strip("`"): line for line in doc.splitlines()
            if line.startswith("| `") and line.split("|")[1].strip().strip("`") in LOSSES}
    assert list(rows) == list(LOSSES)
    for name, s in LOSSES.items():
        for p in s.params:
            assert f"`{p.name}`" in rows[name], (name, p.name)
        if s.fuses is None:
            assert "any output" in rows[name], name
        else:
            assert f"`{s.fuses}` or `linear`" in rows[name], name
