"""runtime/optimizers.py: an update rule per optimizer of dsl/optimizers.py, keyed by name,
holding its update kernel call and its state arrays (whose names are checkpoint keys)."""
import numpy as np
import pytest

from dlrun.dsl import ir
from dlrun.dsl.optimizers import FILL, OPTIMIZERS
from dlrun.errors import UsageError
from dlrun.runtime import optimizers as ro
from dlrun.runtime.network import Network

import irfactory as F


def test_every_optimizer_has_a_rule_and_nothing_else_does():
    assert list(ro.RULES) == list(OPTIMIZERS)
    for name, rule in ro.RULES.items():
        assert rule.name == name and issubclass(rule, ro.Rule)


def test_unknown_optimizer_lists_the_known_ones():
    net = Network(F.mlp())
    with pytest.raises(UsageError, match="unknown optimizer 'lion' \\(known: sgd, adam, adamw, rmsprop, adagrad\\)"):
        ro.Optimizer(ir.Optimizer("lion", dict(FILL)), net.store)


# the state arrays are saved in checkpoints as ckpt.optim.NAME: their names and meaning are
# part of the checkpoint format (an old checkpoint must keep resuming)
@pytest.mark.parametrize("name,params,state", [
    ("sgd", {}, ()),
    ("sgd", {"momentum": 0.9}, ("velocity",)),
    ("adam", {}, ("m", "v")),
    ("adamw", {}, ("m", "v")),
    ("rmsprop", {}, ("sq",)),
    ("adagrad", {}, ("acc",)),
])
def test_state_arrays_are_the_checkpoint_keys(name, params, state):
    m = F.model([F.input_(4), F.dense(8, "relu"), F.dense(3, "softmax")], optimizer=name, **params)
    net = Network(m)
    opt = ro.Optimizer(m.optimizer, net.store)
    sd = opt.state_dict()
    assert tuple(k for k in sd if k != "steps") == state
    for k in state:
        assert sd[k].shape == (net.store.size,) and sd[k].dtype == net.store.dtype
    net.store.grad[...] = 0.5
    opt.step()
    sd = opt.state_dict()
    again = ro.Optimizer(m.optimizer, Network(m).store)
    again.load_state_dict(sd)
    assert again.steps == 1
    for k in state:
        np.testing.assert_array_equal(again.state[k], sd[k])


def test_a_step_is_the_rule_kernel_on_every_segment():
    m = F.model([F.input_(4), F.dense(8, "relu"), F.dense(3, "softmax")], optimizer="rmsprop",
                lr=0.1, rho=0.8, eps=1e-6)
    net = Network(m)
    opt = ro.Optimizer(m.optimizer, net.store)
    rng = np.random.default_rng(1)
    net.store.grad[...] = rng.standard_normal(net.store.size)
    before = net.store.flat.copy()
    sq = np.zeros_like(before)
    ro.kopt.rmsprop_update(before, net.store.grad.copy(), sq, 0.1, 0.8, 1e-6, 0.0, 0.0)
    opt.step()
    np.testing.assert_array_equal(net.store.flat, before)
    np.testing.assert_array_equal(opt.state["sq"], sq)
