"""Sequence layers end to end: embedding, conv1d, pooling over time and global pooling that
ignores padding — gradients, training, save/load/predict, bit-exact resume."""
import numpy as np

import dlrun
from dlrun import dsl
from dlrun.runtime.gradcheck import check_network

TEXT = """dlrun 1
model t {
  input 16
  embedding 8 vocab=30
  conv1d 12 3 relu padding=same
  maxpool1d 2
  conv1d 12 3 tanh padding=same as c
  global_maxpool from=c as peak
  global_avgpool from=c as mean
  concat peak mean
  dropout 0.1
  dense 3 softmax
  loss cross_entropy
  optimizer adam lr=5e-3
  train epochs=6 batch=16 seed=2
}
"""


def _ids(n=96, seed=0):
    """Class k: sequences made mostly of tokens 2+10k..11+10k, padded at the end to 16."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = np.zeros((n, 16), np.float32)
    for i in range(n):
        length = rng.integers(3, 17)
        x[i, :length] = rng.integers(2 + 9 * y[i], 11 + 9 * y[i], length)
    return x, y


def test_sequence_network_gradients_match_finite_differences():
    results = check_network(dsl.parse(TEXT), batch=4)
    bad = [f"{r.layer} {r.name}: {r.rel_error:.2e}" for r in results if not r.ok]
    assert results and not bad, bad


def test_sequence_network_learns_saves_loads_and_resumes(tmp_path):
    x, y = _ids()
    m = dlrun.loads(TEXT)
    h = m.fit(x, y, progress=False)
    assert h.final["accuracy"] > 0.9
    p = m.predict(x[:8]).copy()
    path = m.save(tmp_path / "t.npz")
    np.testing.assert_array_equal(dlrun.loads(TEXT, weights=path).predict(x[:8]), p)
    first = dlrun.loads(TEXT)
    first.fit(x, y, epochs=3, progress=False, checkpoint=tmp_path / "ck")
    second = dlrun.loads(TEXT)
    second.fit(x, y, epochs=6, progress=False, checkpoint=tmp_path / "ck", resume=True)
    assert second.network.store.flat.tobytes() == m.network.store.flat.tobytes()


def test_global_pooling_ignores_the_padding_after_the_last_token():
    # the same tokens, once with nothing after them and once followed by padding: the pooled
    # features see only the tokens, so a sample's prediction does not depend on how much
    # padding follows (conv1d 'same' sees zeros past the end in both cases)
    text = TEXT.replace("  maxpool1d 2\n", "")
    m = dlrun.loads(text)
    x, y = _ids()
    m.fit(x, y, epochs=1, progress=False)
    net = m.network
    a = np.zeros((1, 16), np.float32)
    a[0, :5] = [3, 4, 5, 6, 7]
    out = net.forward(a.astype(net.dtype), training=False).copy()
    pool = next(l for l in net.layers if l.kind == "global_avgpool")
    assert list(pool.in_lengths()) == [5]
    # the mean over 5 steps, not 16: recomputed from the conv output by hand
    conv = next(l for l in net.layers if l.node.name == "c")
    c_out = conv._y.reshape(1, 16, 12)
    np.testing.assert_allclose(pool.buffer("y", 1, 12)[0], c_out[0, :5].mean(axis=0), rtol=1e-5)
    assert np.isfinite(out).all()


def test_an_embedding_sized_by_the_data_needs_data_with_token_ids():
    import pytest

    m = dlrun.loads(TEXT.replace("embedding 8 vocab=30", "embedding 8"))
    assert m.input_shape == (16,) and m.output_shape == (3,)   # the outline answers shapes
    with pytest.raises(dlrun.UsageError, match="'embedding' takes its vocabulary size from the data, so the "
                                               r"network exists once fit\(\) or load_weights\(\) has read it"):
        m.network
    with pytest.raises(dlrun.UsageError, match="takes its vocabulary size"):
        m.predict(_ids(4)[0])
    x, y = _ids()
    with pytest.raises(dlrun.DataError, match="these data have no token ids.*write 'embedding 8 vocab=N'"):
        m.fit(x, y)
    table = m.summary()
    assert "sized by the data's vocabulary" in table and "  ?  " in table


LOOKUP = """dlrun 1
model t {
  input 16
  embedding 32 vocab=30
  conv1d 12 3 relu padding=same
  global_maxpool
  dense 3 softmax
  loss cross_entropy
  optimizer adam lr=5e-3
  train epochs=3 batch=16 seed=2 dtype=float64
}
"""


def test_a_conv1d_reading_an_embedding_looks_its_batch_up():
    # 30 ids x 32 dims: the lookup pays from 41 output steps (batch 3 of 16 steps) up
    from dlrun.runtime.layers.conv1d import lookup_pays

    assert lookup_pays(30, 32, 48) and not lookup_pays(30, 32, 32)
    results = check_network(dsl.parse(LOOKUP), batch=4)
    assert results and all(r.ok for r in results), [r for r in results if not r.ok]
    m = dlrun.loads(LOOKUP)
    x, _ = _ids(8)
    m.network.forward(x.astype(np.float64))
    assert m.network.compute[1]._tokens is not None
    m.network.forward(x[:2].astype(np.float64))
    assert m.network.compute[1]._tokens is None


def test_the_lookup_trains_as_the_gemm_does(monkeypatch):
    # 98 rows in batches of 16: the last batch (2 rows, 32 steps) takes the GEMM and the
    # embedding's sparse gradient right after the lookup's dense one
    x, y = _ids(98, seed=3)
    looked_up = dlrun.loads(LOOKUP)
    looked_up.fit(x, y)
    from dlrun.runtime.layers import conv1d

    monkeypatch.setattr(conv1d, "lookup_pays", lambda vocab, dim, rows: False)
    gemm = dlrun.loads(LOOKUP)
    gemm.fit(x, y)
    a, b = looked_up.network.store.flat, gemm.network.store.flat
    assert np.abs(a - b).max() <= 1e-10 * np.abs(b).max()
    np.testing.assert_allclose(looked_up.predict(x), gemm.predict(x), rtol=1e-10, atol=1e-12)
