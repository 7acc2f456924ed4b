"""runtime/losses.py: a kernel per loss of dsl/losses.py, keyed by name; and the one rule for
class predictions, used by ``Model.predict_classes`` and ``dlrun predict``."""
import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest

import dlrun
from dlrun.dsl import ir
from dlrun.dsl.losses import LOSSES
from dlrun.errors import UsageError
from dlrun.runtime import losses as rl
from dlrun.runtime.network import Network

from irfactory import mlp

MODELS = Path(__file__).resolve().parents[2] / "models"


def test_every_loss_has_a_kernel_and_nothing_else_does():
    assert list(rl.KERNELS) == list(LOSSES)


def test_unknown_loss_lists_the_known_ones():
    output = ir.Output()
    with pytest.raises(UsageError, match="unknown loss 'hinge' \\(known: mse, mae, huber, cross_entropy, "
                                         "binary_cross_entropy\\)"):
        rl.LossHead(ir.Loss("hinge", {}), output)


def test_unknown_loss_of_a_python_model_is_refused_when_the_network_is_built():
    m = mlp()
    with pytest.raises(UsageError, match="unknown loss 'hinge' \\(known: mse, mae"):
        Network(dataclasses.replace(m, loss=ir.Loss("hinge", {}), output=None))


@pytest.mark.parametrize("name", list(LOSSES))
def test_target_dtype_follows_the_label_rule(name):
    head = rl.LossHead(ir.Loss(name, {}), ir.Output(task=LOSSES[name].task))
    want = np.int64 if name == "cross_entropy" else np.float32
    assert head.target_dtype(np.float32) == np.dtype(want)
    assert head.target_dtype(np.float64) == np.dtype(np.int64 if name == "cross_entropy" else np.float64)


@pytest.mark.parametrize("name,params,call", [
    ("mse", {}, lambda o, t, g: rl.kloss.mse(o, t, g)),
    ("huber", {"delta": 0.5}, lambda o, t, g: rl.kloss.huber(o, t, g, 0.5)),
    ("huber", {}, lambda o, t, g: rl.kloss.huber(o, t, g, 1.0)),
    ("cross_entropy", {"label_smoothing": 0.1},
     lambda o, t, g: rl.kloss.softmax_cross_entropy(o, t, g, 0.1)),
])
def test_the_head_calls_the_kernel_with_the_spec_parameters(name, params, call):
    rng = np.random.default_rng(0)
    out = rng.standard_normal((5, 3))
    target = rng.integers(0, 3, 5) if name == "cross_entropy" else rng.standard_normal((5, 3))
    g1, g2 = np.empty_like(out), np.empty_like(out)
    head = rl.LossHead(ir.Loss(name, params), ir.Output(task=LOSSES[name].task))
    assert head(out.copy(), target, g1) == call(out.copy(), target, g2)
    np.testing.assert_array_equal(g1, g2)


def test_class_indices_rule():
    p = np.array([[0.2, 0.4, 0.4], [0.7, 0.2, 0.1]])
    idx = rl.class_indices(p, "classification")
    assert idx.dtype == np.int64 and idx.tolist() == [1, 0]  # a tie takes the first class
    b = rl.class_indices(np.array([[0.5], [0.49999], [0.9]]), "binary")
    assert b.dtype == np.int64 and b.tolist() == [1, 0, 1]
    with pytest.raises(UsageError, match="need a classifier"):
        rl.class_indices(p, "regression")


@pytest.mark.skipif(not (MODELS / "iris.net").exists(), reason="models/iris.net not present")
def test_api_and_cli_predict_classes_through_the_one_rule(tmp_path, monkeypatch, capsys):
    shutil.copytree(MODELS / "data", tmp_path / "data")
    shutil.copy(MODELS / "iris.net", tmp_path / "iris.net")
    model = dlrun.load(tmp_path / "iris.net")
    model.fit()
    weights = model.save(tmp_path / "iris.weights.npz")
    x = model.splits().test.x
    want = model.predict_classes(x)
    assert set(want) <= set(model.class_names)

    calls = []

    def always_last(proba, task):
        calls.append((proba.shape, task))
        return np.full(proba.shape[0], proba.shape[1] - 1, np.int64)

    monkeypatch.setattr(rl, "class_indices", always_last)
    assert set(model.predict_classes(x)) == {"virginica"}
    from dlrun.runtime import cli

    data = str(tmp_path / "data" / "iris.csv")
    assert cli.main(["predict", str(tmp_path / "iris.net"), "--weights", weights, "--input", data]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "label" and set(lines[1:]) == {"virginica"} and len(lines) == 151
    assert calls == [((len(x), 3), "classification"), ((150, 3), "classification")]


def test_the_data_package_takes_a_loss_task_from_its_spec(monkeypatch):
    from dlrun.dsl.losses import LossSpec
    from dlrun.runtime import data as D

    class Poisson(LossSpec):
        name = "poisson_test"

    class Hinge(LossSpec):
        name = "hinge_test"
        task = "binary"

    monkeypatch.setitem(LOSSES, "poisson_test", Poisson())
    monkeypatch.setitem(LOSSES, "hinge_test", Hinge())
    assert D.task_for_loss("poisson_test") == "regression"
    assert D.task_for_loss("hinge_test") == "binary"
    with pytest.raises(UsageError, match="unknown loss 'hinge' \\(known: mse, mae, huber, cross_entropy"):
        D.task_for_loss("hinge")
