"""Graphs of layers at run time: gradients through add/concat/residual (summed where an
output feeds several layers), training, save/load/predict, checkpoint and bit-exact resume,
and the residual digits example."""
from pathlib import Path

import numpy as np
import pytest

import dlrun
from dlrun import dsl
from dlrun.runtime.checkpoint import list_checkpoints
from dlrun.runtime.gradcheck import check_network

ROOT = Path(__file__).resolve().parents[2]

GRAPH = """dlrun 1
model g {
  input 2x3x3 as x
  relu as a
  tanh from=x as b
  concat a b
  flatten as flat
  dense 16 relu as h
  dense 16 tanh from=flat as k
  add h k as sum
  residual as r {
    dense 16 relu
    batchnorm
    dropout 0.2
    dense 16
  }
  dense 8 sigmoid as side
  dense 16 as up
  add sum up
  dense 3 softmax
  loss cross_entropy
  optimizer adam lr=1e-2
  train epochs=6 batch=16 seed=5
}
"""


def _data(n=120, seed=1):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = rng.normal(0, 1, (n, 2, 3, 3)) + y[:, None, None, None] * 0.7
    return x.reshape(n, -1).astype(np.float32), y


def test_graph_gradients_match_finite_differences():
    results = check_network(dsl.parse(GRAPH))
    bad = [f"{r.layer} {r.name}: {r.rel_error:.2e}" for r in results if not r.ok]
    assert results and not bad, bad
    # every dense of every branch was checked
    assert len({r.layer for r in results if r.name == "w"}) == 7


def test_gradients_of_a_shared_output_are_summed():
    # 'h' feeds two layers; its gradient is the sum of both paths
    text = GRAPH.replace("  dense 16 tanh from=flat as k\n  add h k as sum\n",
                         "  dense 16 tanh as k\n  add h k as sum\n")
    results = check_network(dsl.parse(text))
    assert results and all(r.ok for r in results)


def test_graph_trains_saves_loads_and_predicts(tmp_path):
    x, y = _data()
    model = dlrun.loads(GRAPH)
    history = model.fit(x[:100], y[:100], progress=False)
    assert history.final["loss"] < history.epochs[0]["loss"]
    p = model.predict(x[100:]).copy()
    np.testing.assert_allclose(p.sum(axis=1), 1, rtol=1e-5)
    path = model.save(tmp_path / "g.npz")
    again = dlrun.loads(GRAPH, weights=path)
    np.testing.assert_array_equal(again.predict(x[100:]), p)
    # the file knows the wiring: the same layers and shapes wired otherwise do not load it
    other = GRAPH.replace("add sum up", "add r up")
    with pytest.raises(dlrun.WeightsError):
        dlrun.loads(other, weights=path)


def test_graph_checkpoint_resumes_bit_exactly(tmp_path):
    x, y = _data()
    full = dlrun.loads(GRAPH)
    full.fit(x, y, progress=False)
    first = dlrun.loads(GRAPH)
    first.fit(x, y, epochs=3, progress=False, checkpoint=tmp_path / "ck")
    assert list_checkpoints(tmp_path / "ck")
    second = dlrun.loads(GRAPH)
    second.fit(x, y, epochs=6, progress=False, checkpoint=tmp_path / "ck", resume=True)
    assert second.network.store.flat.tobytes() == full.network.store.flat.tobytes()
    for (_, _, a), (_, _, b) in zip(second.network.named_state(), full.network.named_state()):
        assert a.tobytes() == b.tobytes()


def test_a_graph_predicts_the_same_from_many_threads():
    from concurrent.futures import ThreadPoolExecutor

    x, y = _data()
    model = dlrun.loads(GRAPH)
    model.fit(x, y, epochs=1, progress=False)
    want = model.predict(x).copy()
    with ThreadPoolExecutor(4) as pool:
        for got in pool.map(lambda _: model.predict(x).copy(), range(8)):
            np.testing.assert_array_equal(got, want)


def test_digits_resnet_reaches_its_accuracy():
    model = dlrun.load(str(ROOT / "models" / "digits_resnet.net"))
    model.fit(progress=False)
    assert model.evaluate()["accuracy"] >= 0.975
