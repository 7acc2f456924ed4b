"""An update split between two threads gives bit for bit what one thread gives."""
import numpy as np
import pytest

import dlrun
from dlrun.runtime import optimizers

NET = """dlrun 1
model m {{
  input 300
  dense 200 relu l1=1e-5
  batchnorm
  dense 64 relu
  dense 4 softmax
  loss cross_entropy
  {reg}
  optimizer {opt}
  train epochs=2 batch=32 seed=3
}}
"""


@pytest.mark.parametrize("opt", ["adam lr=0.01", "adamw lr=0.01 weight_decay=0.05",
                                 "sgd lr=0.05 momentum=0.9 nesterov=true", "rmsprop lr=0.001",
                                 "adagrad lr=0.05", "adam lr=0.01 clip_norm=0.5"])
@pytest.mark.parametrize("reg", ["", "regularize l2=1e-3"])
def test_split_update_is_bit_identical(opt, reg):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 300)).astype(np.float32)
    y = rng.integers(0, 4, 200)
    flats = []
    for threads in (1, 2):
        model = dlrun.loads(NET.format(opt=opt, reg=reg))
        assert model.network.param_count >= optimizers.SPLIT_MIN
        model.fit(x[:32], y[:32], epochs=1)
        model.optimizer.threads = threads
        halves = model.optimizer._halves
        assert sum(p.size for p, *_ in halves[0] + halves[1]) == \
            sum(p.size for p, *_ in model.optimizer._segments)
        model.fit(x, y)
        flats.append((model.network.store.flat.copy(),
                      {k: v.copy() for k, v in model.optimizer.state.items()}))
    np.testing.assert_array_equal(flats[0][0], flats[1][0])
    for k in flats[0][1]:
        np.testing.assert_array_equal(flats[0][1][k], flats[1][1][k])


def test_helper_errors_reach_the_caller():
    helper = optimizers._Helper.get()
    import queue

    def boom():
        raise ValueError("from the helper")

    with pytest.raises(ValueError, match="from the helper"):
        helper.run_beside(boom, (), lambda: None, queue.SimpleQueue())
    # the helper survives and keeps working
    out = []
    helper.run_beside(out.append, (1,), lambda: out.append(2), queue.SimpleQueue())
    assert sorted(out) == [1, 2]
