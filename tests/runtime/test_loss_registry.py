"""runtime/losses.py: a kernel per loss of dsl/losses.py, keyed by name."""
import dataclasses

import numpy as np
import pytest

from dlrun.dsl import ir
from dlrun.dsl.losses import LOSSES
from dlrun.errors import UsageError
from dlrun.runtime import losses as rl
from dlrun.runtime.network import Network

from irfactory import mlp


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

