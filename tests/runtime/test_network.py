"""Network assembly from hand-built IR: flat parameters, loss heads, whole-network gradients."""
import numpy as np
import pytest

import irfactory as F

from dlrun.errors import UsageError
from dlrun.runtime.gradcheck import check_network
from dlrun.runtime.network import Network


def test_parameters_are_views_into_one_flat_buffer():
    m = F.model([F.input_(5), F.dense(7, "relu", l2=0.1), F.batchnorm(), F.dense(3, "softmax")], l2=0.01)
    net = Network(m)
    store = net.store
    seen = 0
    for layer, name, p in net.named_params():
        assert np.shares_memory(p, store.flat)
        assert np.shares_memory(layer.grads[name], store.grad)
        assert p.flags.c_contiguous
        assert (p.ctypes.data - store.flat.ctypes.data) % 64 == 0  # 64-byte aligned
        seen += p.size
    assert seen == store.count == 5 * 7 + 7 + 7 + 7 + 7 * 3 + 3
    # segments: the two weights (different l2) and the unpenalised rest, each contiguous
    segs = {(s.l1, s.l2, s.is_weight) for s in store.segments}
    assert segs == {(0.0, 0.1, True), (0.0, 0.01, True), (0.0, 0.0, False)}
    covered = sorted((s.start, s.stop) for s in store.segments)
    assert covered[0][0] == 0 and covered[-1][1] == store.size
    assert all(a[1] == b[0] for a, b in zip(covered, covered[1:]))


def test_same_seed_same_init_other_seed_other_init():
    m = F.mlp(6, (10,), 3, seed=5)
    a, b, c = Network(m), Network(m), Network(m, seed=6)
    np.testing.assert_array_equal(a.store.flat, b.store.flat)
    assert not np.array_equal(a.store.flat, c.store.flat)


@pytest.mark.parametrize("out,loss,fused,proba", [
    ("softmax", "cross_entropy", True, None),
    ("linear", "cross_entropy", False, "softmax"),
    ("sigmoid", "binary_cross_entropy", True, None),
    ("linear", "binary_cross_entropy", False, "sigmoid"),
    ("linear", "mse", False, None),
    ("sigmoid", "mae", False, None),
    ("softmax", "huber", False, None),
])
def test_loss_heads(out, loss, fused, proba):
    outputs = 1 if loss == "binary_cross_entropy" else 3
    net = Network(F.mlp(4, (6,), outputs, out=out, loss=loss))
    assert net.loss.fused is fused
    assert net.loss.proba_act == proba
    x = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    p = net.predict(x)
    assert p.shape == (5, outputs)
    if loss == "cross_entropy":
        np.testing.assert_allclose(p.sum(1), 1, rtol=1e-6)
    if loss == "binary_cross_entropy":
        assert np.all((p > 0) & (p < 1))


def test_standalone_softmax_layer_is_fused_into_the_loss():
    m = F.model([F.input_(4), F.dense(3), F.activation("softmax")])
    net = Network(m)
    assert net.loss.fused and net._tail is not None
    x = np.random.default_rng(1).standard_normal((2, 4)).astype(np.float32)
    logits = net.forward(x, False, logits=True).copy()
    probs = net.forward(x, False)
    e = np.exp(logits - logits.max(1, keepdims=True))
    np.testing.assert_allclose(probs, e / e.sum(1, keepdims=True), rtol=1e-5)


def test_cross_entropy_needs_softmax_or_linear_output():
    with pytest.raises(UsageError, match="'cross_entropy' needs softmax or linear outputs"):
        Network(F.mlp(4, (6,), 3, out="relu"))


def _softmax(z):
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


@pytest.mark.parametrize("layers,loss", [
    ([F.input_(4), F.dense(3, "softmax"), F.dropout(0.3)], "cross_entropy"),
    ([F.input_(4), F.dense(3, "softmax"), F.flatten()], "cross_entropy"),
    ([F.input_(4), F.dense(1, "sigmoid"), F.dropout(0.3)], "binary_cross_entropy"),
])
def test_layers_after_a_fused_output_activation_are_refused(layers, loss):
    # an unchecked IR goes through the checker's decision too (dsl/output.py), not a second one
    with pytest.raises(UsageError, match="must be the model's last layer"):
        Network(F.model(layers, loss=loss))


def _check(text):
    from dlrun.dsl import parse

    return parse("dlrun 1\nmodel m {\n" + text + "\n optimizer adam\n}\n")


@pytest.mark.parametrize("body,proba", [
    (" input 4\n dense 8 relu\n dropout 0.3\n dense 3 softmax\n loss cross_entropy", None),
    (" input 4\n dense 8 relu\n dense 3\n dropout 0.3\n loss cross_entropy", "softmax"),
    (" input 4\n dense 8 relu\n dense 3\n softmax\n loss cross_entropy", None),
])
def test_probabilities_are_one_softmax_of_the_logits(body, proba):
    m = _check(body)
    net = Network(m)
    assert net.loss.proba_act == proba
    x = np.random.default_rng(2).standard_normal((6, 4)).astype(np.float32)
    logits = net.forward(x, False, logits=True).copy()
    p = net.predict(x).copy()
    np.testing.assert_allclose(p.sum(1), 1, rtol=1e-6)
    np.testing.assert_allclose(p, _softmax(logits.astype(np.float64)), rtol=1e-5, atol=1e-7)
    # the inference chain (the API's predict path) computes the same single softmax
    chain = net.inference_chain()
    out = np.empty_like(p)
    chain.run(x, 1.0, 0.0, out)
    np.testing.assert_allclose(out, p, rtol=1e-5, atol=1e-7)


def test_a_regression_loss_reads_softmax_outputs_through_dropout_once():
    # mse on softmax probabilities (warned about, allowed): predict returns them, once
    m = _check(" input 4\n dense 3 softmax\n dropout 0.3\n loss mse")
    assert m.output.activation == "softmax" and not m.output.fused and m.output.proba is None
    net = Network(m)
    x = np.random.default_rng(3).standard_normal((5, 4)).astype(np.float32)
    p = net.predict(x)
    np.testing.assert_allclose(p.sum(1), 1, rtol=1e-6)


def test_the_network_reads_the_output_the_checker_recorded():
    m = _check(" input 4\n dense 3 softmax\n loss cross_entropy")
    assert m.output.fused and m.output.layer == 1 and m.output.task == "classification"
    net = Network(m)
    assert net.loss.fused and net._head_dense is net.layers[1]


def test_default_init_looks_past_batchnorm_to_the_activation():
    m = F.model([F.input_(4), F.dense(8), F.batchnorm(), F.activation("relu"), F.dense(3), F.dense(2, "softmax")])
    net = Network(m)
    assert net.layers[1].resolved_init() == "he_normal"
    assert net.layers[4].resolved_init() == "xavier_uniform"


GRADCHECK_MODELS = {
    "tanh-softmax": F.mlp(5, (7, 6), 3),
    "relu-bn-dropout": F.model([F.input_(6), F.dense(12, "relu"), F.batchnorm(), F.dropout(0.5),
                                F.dense(8, "elu", alpha=1.0), F.dense(4, "softmax")], loss_params={"label_smoothing": 0.1}),
    "gelu-swish-bce": F.model([F.input_(3), F.dense(8, "gelu"), F.dense(8, "swish"), F.dense(1, "sigmoid")],
                              loss="binary_cross_entropy"),
    "linear-logits": F.model([F.input_(2, 3), F.flatten(), F.dense(5, "softplus"), F.dense(3)]),
    "regression-huber": F.model([F.input_(4), F.dense(9, "leaky_relu", alpha=0.1), F.dense(2)], loss="huber"),
    "softmax-mse": F.model([F.input_(4), F.dense(6, "sigmoid"), F.dense(3, "softmax")], loss="mse"),
    "standalone-acts": F.model([F.input_(4), F.dense(6), F.activation("tanh"), F.dense(3, bias=False),
                                F.activation("softmax")]),
}


@pytest.mark.parametrize("label", list(GRADCHECK_MODELS))
def test_whole_network_gradients(label):
    results = check_network(GRADCHECK_MODELS[label], batch=5, seed=3)
    bad = [f"{r.layer} {r.name}: {r.rel_error:.2e}" for r in results if not r.ok]
    assert not bad, bad
    assert all(r.checked > 0 for r in results)


def test_short_batch_after_long_batch_gives_the_same_rows():
    m = F.model([F.input_(4), F.dense(8, "relu"), F.batchnorm(), F.dense(3, "softmax")])
    net = Network(m)
    rng = np.random.default_rng(0)
    big = rng.standard_normal((16, 4)).astype(np.float32)
    small = big[:3].copy()
    ref = Network(m).predict(small).copy()
    net.predict(big)
    np.testing.assert_array_equal(net.predict(small), ref)


def test_float64_network():
    net = Network(F.mlp(3, (4,), 2, dtype="float64"))
    assert net.store.flat.dtype == np.float64
    assert net.predict(np.ones((2, 3))).dtype == np.float64


@pytest.mark.parametrize("sabotage", ["scale-w", "zero-b", "one-entry"])
def test_gradcheck_catches_wrong_gradients(monkeypatch, sabotage):
    from dlrun.runtime.layers.dense import Dense

    original = Dense.backward

    def wrong(self, dy):
        dx = original(self, dy)
        if self.index == 1:
            if sabotage == "scale-w":
                self.grads["w"] *= 1.0001
            elif sabotage == "zero-b":
                self.grads["b"][...] = 0
            else:
                self.grads["w"].reshape(-1)[3] += 1e-6 * np.abs(self.grads["w"]).max()
        return dx

    monkeypatch.setattr(Dense, "backward", wrong)
    results = check_network(GRADCHECK_MODELS["tanh-softmax"], batch=5, seed=3, max_entries=0)
    failed = {(r.layer.split(" (")[0], r.name) for r in results if not r.ok}
    assert failed == {("layer 1", "b" if sabotage == "zero-b" else "w")}


def test_a_model_too_big_for_memory_is_refused_before_allocating():
    m = F.model([F.input_(64), F.dense(2_000_000_000, "relu"), F.dense(10, "softmax")])
    with pytest.raises(UsageError, match=r"more than this machine's memory.*1\.dense\.w with shape \(64, 2000000000\)"):
        Network(m)


def test_gradcheck_directions_cover_entries_that_are_not_sampled(monkeypatch):
    from dlrun.runtime.layers.dense import Dense

    original = Dense.backward

    def wrong(self, dy):
        dx = original(self, dy)
        if self.index == 2:  # one entry of the (7, 6) weights, 0.1 of the largest gradient off
            w = self.grads["w"].reshape(-1)
            w[17] += 0.1 * np.abs(w).max()
        return dx

    monkeypatch.setattr(Dense, "backward", wrong)
    results = check_network(GRADCHECK_MODELS["tanh-softmax"], batch=5, seed=3, max_entries=1, directions=3)
    failed = {(r.layer.split(" (")[0], r.name) for r in results if not r.ok}
    assert failed == {("layer 2", "w")}
    assert all(r.checked == 1 and r.directions == 3 for r in results if r.name == "w")


def test_gradcheck_refuses_a_batch_of_one_through_batchnorm():
    # issue 9, item 6: every gradient before a one-sample batch norm is 0, which "passed"
    m = F.model([F.input_(4), F.dense(5, "relu"), F.batchnorm(), F.dense(3, "softmax")])
    with pytest.raises(UsageError, match="batch of 1 sample through layer 2 \\(batchnorm\\)"):
        check_network(m, batch=1)
    assert all(r.ok for r in check_network(m, batch=2))
    assert all(r.ok for r in check_network(F.mlp(4, (5,), 3), batch=1))   # no batch norm: fine
