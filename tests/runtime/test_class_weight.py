"""class_weight= of the cross-entropy losses at run time: the weights trained with (a list,
or ``balanced`` from the training split), saved with the weights and used again by
evaluation and resumed training; the weighted loss against a NumPy reference; gradcheck."""
import numpy as np
import pytest
from scipy.special import log_softmax

import dlrun
from dlrun.errors import UsageError
from dlrun.runtime import gradcheck
from dlrun.runtime.weights import BALANCED_KEY, read_npz


def _net_text(loss="cross_entropy", extra="", out="dense 3 softmax", epochs=3):
    return (f"dlrun 1\nmodel m {{\n input 4\n dense 8 tanh\n {out}\n loss {loss}{extra}\n"
            f" optimizer adam lr=0.01\n train epochs={epochs} batch=16 seed=3\n}}\n")


def _data(n=120, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 4)).astype(np.float32)
    y = np.where(x[:, 0] > 0.8, 2, np.where(x[:, 1] > 0.5, 1, 0)).astype(np.int64)
    return x, y


def test_balanced_weights_are_the_training_splits_and_saved(tmp_path):
    x, y = _data()
    xv, yv = _data(40, seed=1)
    m = dlrun.loads(_net_text(extra=" class_weight=balanced"))
    m.fit(x, y, validation_data=(xv, yv))
    counts = np.bincount(y, minlength=3)
    want = len(y) / (3 * counts)   # sklearn's rule, over the training split only
    np.testing.assert_allclose(m.network.loss.class_weight, want, rtol=0, atol=0)
    path = m.save(tmp_path / "w.npz")
    assert np.array_equal(read_npz(path)[BALANCED_KEY], want)
    loaded = dlrun.loads(_net_text(extra=" class_weight=balanced"), weights=path)
    assert np.array_equal(loaded.network.loss.class_weight, want)
    assert loaded.evaluate(xv, yv) == m.evaluate(xv, yv)


def test_evaluated_loss_is_the_weighted_mean_over_samples():
    # Keras' normalisation: sum_i w[y_i] loss_i / n (not divided by sum_i w[y_i])
    x, y = _data()
    w = np.array([0.5, 2.0, 4.0])
    m = dlrun.loads(_net_text(extra=" class_weight=[0.5, 2, 4]"))
    m.fit(x, y)
    net = m.network
    logits = net.forward(m.preprocessor.transform(x, net.dtype), training=False, logits=True).astype(np.float64)
    per_sample = -log_softmax(logits, axis=1)[np.arange(len(y)), y]
    want = float((w[y] * per_sample).sum() / len(y))
    assert m.evaluate(x, y, batch_size=7)["loss"] == pytest.approx(want, rel=1e-5)
    # accuracy is never weighted
    assert m.evaluate(x, y)["accuracy"] == pytest.approx(float((m.predict_classes(x) == y).mean()))


def test_binary_balanced_counts_both_classes():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((100, 4)).astype(np.float32)
    y = (x[:, 0] > 1.0).astype(np.float64)
    m = dlrun.loads(_net_text("binary_cross_entropy", " class_weight=balanced", out="dense 1 sigmoid"))
    m.fit(x, y)
    pos = y.sum()
    np.testing.assert_allclose(m.network.loss.class_weight, [100 / (2 * (100 - pos)), 100 / (2 * pos)])


def test_class_weights_change_training_and_ones_do_not():
    x, y = _data()
    runs = {}
    for name, extra in (("none", ""), ("ones", " class_weight=[1, 1, 1]"), ("list", " class_weight=[1, 3, 9]")):
        m = dlrun.loads(_net_text(extra=extra))
        m.fit(x, y)
        runs[name] = m.network.store.flat.copy()
    assert np.array_equal(runs["none"], runs["ones"])   # weights of 1 multiply exactly
    assert not np.array_equal(runs["none"], runs["list"])


def test_balanced_weights_missing_from_the_file_are_refused_at_evaluation_only(tmp_path):
    x, y = _data()
    plain = dlrun.loads(_net_text())
    plain.fit(x, y)
    path = plain.save(tmp_path / "plain.npz")
    m = dlrun.loads(_net_text(extra=" class_weight=balanced"), weights=path)
    assert np.array_equal(m.predict(x), plain.predict(x))   # predicting needs no class weights
    with pytest.raises(UsageError, match="class_weight=balanced: the class weights are computed from the "
                                         "training split.*holds none"):
        m.evaluate(x, y)


def test_a_list_in_the_model_file_wins_over_saved_balanced_weights(tmp_path):
    x, y = _data()
    m = dlrun.loads(_net_text(extra=" class_weight=balanced"))
    m.fit(x, y)
    path = m.save(tmp_path / "w.npz")
    listed = dlrun.loads(_net_text(extra=" class_weight=[1, 2, 3]"), weights=path)
    assert listed.network.loss.class_weight.tolist() == [1.0, 2.0, 3.0]


def test_resume_with_balanced_weights_is_bit_exact(tmp_path):
    x, y = _data()
    text = _net_text(extra=" class_weight=balanced", epochs=4)
    straight = dlrun.loads(text)
    straight.fit(x, y)
    first = dlrun.loads(text)
    first.fit(x, y, epochs=2, checkpoint=str(tmp_path / "ck"))
    resumed = dlrun.loads(text)
    resumed.fit(x, y, epochs=4, checkpoint=str(tmp_path / "ck"), resume=True)
    assert np.array_equal(resumed.network.store.flat, straight.network.store.flat)
    assert np.array_equal(resumed.network.loss.class_weight, straight.network.loss.class_weight)


@pytest.mark.parametrize("loss, extra, out", [
    ("cross_entropy", " class_weight=[0.5, 2, 4]", "dense 3 softmax"),
    ("cross_entropy", " class_weight=balanced label_smoothing=0.1", "dense 3"),
    ("binary_cross_entropy", " class_weight=[0.3, 3]", "dense 1 sigmoid"),
    ("binary_cross_entropy", " class_weight=balanced", "dense 1"),
])
def test_gradcheck_covers_the_weighted_loss(loss, extra, out):
    model = dlrun.loads(_net_text(loss, extra, out=out)).ir
    results = gradcheck.check_network(model, batch=6)
    assert results and all(r.ok for r in results), gradcheck.format_table(results)
    # and the gradient checked is the weighted one: it differs from the unweighted network's
    plain = gradcheck.check_network(dlrun.loads(_net_text(loss, "", out=out)).ir, batch=6)
    assert [r.max_abs_grad for r in results] != [r.max_abs_grad for r in plain]


def test_onnx_export_is_unaffected_by_class_weights(tmp_path):
    pytest.importorskip("onnx")
    from dlrun.runtime.export import export_onnx

    x, y = _data()
    weighted = dlrun.loads(_net_text(extra=" class_weight=balanced"))
    weighted.fit(x, y)
    path = weighted.save(tmp_path / "w.npz")
    plain = dlrun.loads(_net_text(), weights=path)
    a = export_onnx(weighted, tmp_path / "a.onnx")
    b = export_onnx(plain, tmp_path / "b.onnx")
    assert open(a, "rb").read() == open(b, "rb").read()
