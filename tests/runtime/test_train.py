"""Training loop: loss falls, determinism, early stopping, metrics, optimizers, penalties."""
import numpy as np
import pytest

import irfactory as F

from dlrun.dsl import ir
from dlrun.errors import TrainingError
from dlrun.runtime.api import Model


def blobs(n=240, classes=3, features=4, seed=0, spread=0.7):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((classes, features)) * 2
    y = rng.integers(0, classes, n)
    x = centers[y] + spread * rng.standard_normal((n, features))
    return x.astype(np.float32), y


def regression(n=300, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, (n, 3))
    y = np.stack([np.sin(2 * x[:, 0]) + x[:, 1] * x[:, 2], x[:, 0] - x[:, 1]], axis=1)
    return x, y


def test_small_net_trains_and_loss_falls():
    x, y = blobs()
    model = Model(F.mlp(4, (16,), 3, epochs=15, batch_size=20, lr=0.01))
    h = model.fit(x, y)
    losses = h.metric("loss")
    assert len(losses) == 15
    assert losses[-1] < 0.5 * losses[0]
    assert h.final["accuracy"] > 0.9
    assert model.evaluate(x, y)["accuracy"] > 0.9


def _train_once(x, y, seed=7):
    m = F.model([F.input_(4), F.dense(16, "relu"), F.batchnorm(), F.dropout(0.3), F.dense(3, "softmax")],
                epochs=4, batch_size=17, seed=seed, lr=0.01)
    model = Model(m)
    model.fit(x, y)
    return model.network


def test_two_runs_are_bit_identical():
    x, y = blobs()
    a, b = _train_once(x, y), _train_once(x, y)
    np.testing.assert_array_equal(a.store.flat, b.store.flat)
    for (_, _, s1), (_, _, s2) in zip(a.named_state(), b.named_state()):
        np.testing.assert_array_equal(s1, s2)
    c = _train_once(x, y, seed=8)
    assert not np.array_equal(a.store.flat, c.store.flat)


def test_short_last_batch_is_trained_on():
    x, y = blobs(n=23)
    model = Model(F.mlp(4, (5,), 3, epochs=1, batch_size=10, shuffle=False, optimizer="sgd", lr=0.1))
    before = model.network.store.flat.copy()
    model.fit(x, y)
    # replay: the 3 steps by hand, the last on 3 rows
    ref = Model(F.mlp(4, (5,), 3, epochs=1, batch_size=10, shuffle=False, optimizer="sgd", lr=0.1))
    np.testing.assert_array_equal(ref.network.store.flat, before)
    net = ref.network
    for s in (0, 10, 20):
        xb, yb = x[s:s + 10], y[s:s + 10]
        out = net.forward(xb, True, True)
        g = np.empty_like(out)
        net.loss(out, yb, g)
        net.backward(g)
        net.store.flat -= np.float32(0.1) * net.store.grad
    np.testing.assert_allclose(model.network.store.flat, net.store.flat, rtol=1e-5, atol=1e-7)


def _bn_model(**kw):
    layers = [F.input_(4), F.dense(5, "relu"), F.batchnorm(momentum=0.0), F.dense(3, "softmax")]
    return Model(F.model(layers, epochs=1, shuffle=False, optimizer="sgd", lr=0.1, **kw))


def test_a_last_batch_of_one_row_joins_the_batch_before_it_with_batchnorm():
    # issue 9, item 6: a last batch of one row through batch norm set the running variance
    # to 0 (momentum 0 keeps the last batch's statistics) and had no gradient
    from dlrun.runtime.train import batch_plan

    assert batch_plan(21, 10, True) == (2, 11)
    assert batch_plan(21, 10, False) == (3, 10)    # without batch norm: unchanged
    assert batch_plan(22, 10, True) == (3, 10)
    assert batch_plan(1, 10, True) == (1, 10)
    x, y = blobs(n=21)
    model = _bn_model(batch_size=10)
    model.fit(x, y)
    assert model.history.epochs_run == 1
    running_var = model.network.layers[2].state["running_var"]
    assert running_var.max() > 1e-2, running_var   # a one-row batch made every entry 0
    # replay: two steps, on rows 0..9 and 10..20
    ref = _bn_model(batch_size=10)
    net = ref.network
    for a, b in ((0, 10), (10, 21)):
        out = net.forward(x[a:b], True, True)
        g = np.empty_like(out)
        net.loss(out, y[a:b], g)
        net.backward(g)
        net.store.flat -= np.float32(0.1) * net.store.grad
    np.testing.assert_allclose(model.network.store.flat, net.store.flat, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(running_var, net.layers[2].state["running_var"], rtol=1e-5)


def test_batch_size_one_with_batchnorm_is_refused():
    from dlrun.errors import UsageError

    x, y = blobs(n=20)
    with pytest.raises(UsageError, match="batch size 1 with layer 2 \\(batchnorm\\).*use a batch size >= 2"):
        _bn_model(batch_size=16).fit(x, y, batch_size=1)
    with pytest.raises(UsageError, match="the training set has 1 sample with layer 2"):
        _bn_model(batch_size=16).fit(x[:1], y[:1])
    _bn_model(batch_size=16).fit(x, y, batch_size=2)


def test_validation_and_early_stopping_restore_best():
    x, y = blobs(n=300, spread=2.5, seed=3)
    es = ir.EarlyStopping(monitor="val_loss", mode="min", patience=2, min_delta=0.0, restore_best=True)
    model = Model(F.mlp(4, (64, 64), 3, epochs=200, batch_size=16, lr=0.05, early_stopping=es))
    h = model.fit(x[:150], y[:150], validation_data=(x[150:], y[150:]))
    assert h.stopped_early and h.epochs_run < 200
    val = h.metric("val_loss")
    assert h.best_epoch == int(np.argmin(val)) + 1
    assert h.epochs_run == h.best_epoch + 2  # patience 2: stops after 2 epochs without improvement
    assert h.restored_best
    # the restored weights reproduce the best epoch's validation loss
    np.testing.assert_allclose(model.evaluate(x[150:], y[150:])["loss"], val[h.best_epoch - 1], rtol=1e-5)


def test_regression_metrics():
    x, y = regression()
    model = Model(F.model([F.input_(3), F.dense(32, "tanh"), F.dense(2)], loss="mse", epochs=60, batch_size=16,
                          lr=0.01, dtype="float64"))
    h = model.fit(x[:240], y[:240], validation_data=(x[240:], y[240:]))
    m = h.final
    assert set(m) >= {"loss", "mse", "mae", "r2", "val_loss", "val_mse", "val_mae", "val_r2"}
    ev = model.evaluate(x[240:], y[240:])
    assert ev["r2"] > 0.9
    pred = model.predict(x[240:])
    ref_mse = float(np.mean((pred - y[240:]) ** 2))
    ref_r2 = float(np.mean(1 - ((pred - y[240:]) ** 2).sum(0) / ((y[240:] - y[240:].mean(0)) ** 2).sum(0)))
    np.testing.assert_allclose(ev["mse"], ref_mse, rtol=1e-9)
    np.testing.assert_allclose(ev["loss"], ref_mse, rtol=1e-9)
    np.testing.assert_allclose(ev["r2"], ref_r2, rtol=1e-9)
    np.testing.assert_allclose(ev["mae"], np.abs(pred - y[240:]).mean(), rtol=1e-9)


@pytest.mark.parametrize("name,params", [
    ("sgd", {"lr": 0.1}), ("sgd", {"lr": 0.05, "momentum": 0.9}), ("sgd", {"lr": 0.05, "momentum": 0.9, "nesterov": True}),
    ("adam", {"lr": 0.01}), ("adamw", {"lr": 0.01, "weight_decay": 0.01}), ("rmsprop", {"lr": 0.005}),
    ("adagrad", {"lr": 0.1}), ("adam", {"lr": 0.01, "clip_norm": 0.5}),
])
def test_every_optimizer_trains(name, params):
    x, y = blobs()
    model = Model(F.mlp(4, (16,), 3, epochs=8, batch_size=16, optimizer=name, **params))
    h = model.fit(x, y)
    assert h.metric("loss")[-1] < 0.6 * h.metric("loss")[0], h.metric("loss")
    assert h.final["accuracy"] > 0.85


def test_penalty_is_reported_and_shrinks_weights():
    x, y = blobs()
    plain = Model(F.mlp(4, (16,), 3, epochs=10, batch_size=16, lr=0.01))
    reg = Model(F.mlp(4, (16,), 3, epochs=10, batch_size=16, lr=0.01, l2=0.05))
    hp, hr = plain.fit(x, y), reg.fit(x, y)
    assert "penalty" not in hp.final
    w = reg.network.layers[1].params["w"]
    w2 = reg.network.layers[2].params["w"]
    expected = 0.5 * 0.05 * (float((w.astype(np.float64) ** 2).sum()) + float((w2.astype(np.float64) ** 2).sum()))
    np.testing.assert_allclose(hr.final["penalty"], expected, rtol=1e-5)
    norm = lambda m: sum(float((p ** 2).sum()) for _, n, p in m.network.named_params() if n == "w")
    assert norm(reg) < norm(plain)


def test_per_layer_l1_overrides_global():
    x, y = blobs()
    m = F.model([F.input_(4), F.dense(16, "relu", l1=0.01), F.dense(3, "softmax")], l2=0.001, epochs=5, lr=0.01)
    model = Model(m)
    h = model.fit(x, y)
    net = model.network
    w1, w2 = net.layers[1].params["w"], net.layers[2].params["w"]
    # layer 1: its own l1 and the global l2 (its l2 is not overridden); layer 2: the global l2
    sq = lambda w: float((w.astype(np.float64) ** 2).sum())
    expected = 0.01 * float(np.abs(w1).sum()) + 0.5 * 0.001 * (sq(w1) + sq(w2))
    np.testing.assert_allclose(h.final["penalty"], expected, rtol=1e-5)


def test_non_finite_loss_stops_with_training_error():
    x, y = blobs()
    x = x * 1e3
    model = Model(F.mlp(4, (16,), 3, epochs=5, optimizer="sgd", lr=1e6, out="linear", loss="mse"))
    with pytest.raises(TrainingError, match=r"epoch \d+, batch \d+/\d+: the loss is"):
        model.fit(x, np.eye(3)[y])


def test_binary_classification_with_uint8_inputs():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (200, 6), dtype=np.uint8)
    y = (x[:, 0].astype(int) + x[:, 1] > 255).astype(int)
    m = F.model([F.input_(6), F.dense(16, "relu"), F.dense(1, "sigmoid")], loss="binary_cross_entropy",
                epochs=40, batch_size=16, lr=0.01,
                data=ir.Data(preprocess=(ir.Preprocess("scale", {"factor": 1 / 255}),)))
    model = Model(m)
    model.fit(x, y)
    assert model.evaluate(x, y)["accuracy"] > 0.9
    assert model.predict(x).shape == (200, 1)


def test_weight_decay_applies_to_weights_only_and_segments_merge():
    from dlrun.runtime.network import Network
    from dlrun.runtime.optimizers import Optimizer

    m = F.model([F.input_(4), F.dense(8, "relu"), F.batchnorm(), F.dense(3, "softmax")], optimizer="adamw",
                lr=0.1, weight_decay=0.5)
    net = Network(m)
    opt = Optimizer(m.optimizer, net.store)
    net.store.flat[...] = 1.0
    net.store.grad[...] = 0.0
    opt.step()
    for layer, name, p in net.named_params():
        expected = 1.0 - 0.1 * 0.5 if name == "w" else 1.0
        np.testing.assert_allclose(p, expected, rtol=1e-6, err_msg=f"{layer.describe()} {name}")
    # without decay or penalties the whole network is one update call
    plain = F.model([F.input_(4), F.dense(8, "relu"), F.batchnorm(), F.dense(3, "softmax")])
    assert len(Optimizer(plain.optimizer, Network(plain).store)._segments) == 1


@pytest.mark.parametrize("penalty", ["l2", "l1"])
def test_clip_norm_clips_the_data_gradient_and_the_penalty_is_added_after(penalty):
    # One weight and one bias, one sample, sgd: the documented order, worked by hand.
    # x = 2, t = 0, w = 1, b = 0.5: p = 2.5, mse = (p - t)^2, dL/dp = 2 (p - t) = 5,
    # data gradient (dw, db) = (10, 5), norm sqrt(125) = 11.18 > clip_norm 1, so it is
    # scaled by 1 / (norm + 1e-6) to (0.894427, 0.447214); then the penalty's gradient on w
    # (l2 * w = 0.5, or l1 * sign(w) = 0.5) is added, unclipped, as torch.optim's
    # weight_decay is after clip_grad_norm_: w = 1 - 0.1 (0.894427 + 0.5), b = 0.5 - 0.1 * 0.447214.
    # (Clipping the gradient of loss + penalty instead would give w = 0.909714, b = 0.457007.)
    from dlrun import dsl

    text = ("dlrun 1\nmodel one {\n  input 1\n  dense 1\n  loss mse\n"
            f"  regularize {penalty}=0.5\n  optimizer sgd lr=0.1 clip_norm=1\n}}\n")
    model = Model(dsl.parse(text, "<one>"), dtype=np.float64)
    params = {name: p for _, name, p in model.network.named_params()}
    params["w"][...] = 1.0
    params["b"][...] = 0.5
    model.fit(np.array([[2.0]]), np.array([[0.0]]), epochs=1, batch_size=1)
    norm = np.sqrt(10.0 ** 2 + 5.0 ** 2)
    scale = 1.0 / (norm + 1e-6)
    np.testing.assert_allclose(params["w"].ravel(), [1.0 - 0.1 * (10.0 * scale + 0.5)], rtol=1e-12)
    np.testing.assert_allclose(params["b"].ravel(), [0.5 - 0.1 * 5.0 * scale], rtol=1e-12)
    np.testing.assert_allclose([params["w"].item(), params["b"].item()], [0.860557, 0.455279], atol=1e-6)


def test_binary_accuracy_counts_as_predict_predicts():
    # a logit of 0 (P = 0.5) and one whose float32 sigmoid rounds to 0.5 are class 1 for
    # predict (P >= 0.5); the reported accuracy counts them the same way
    from dlrun.runtime.losses import class_indices
    from dlrun.runtime.metrics import Accumulator

    out = np.array([[0.0], [-1e-9], [-3.0], [2.0]], np.float32)
    y = np.array([[1.0], [1.0], [0.0], [0.0]], np.float32)
    acc = Accumulator("binary", 1)
    acc.update(out, y)
    p = 1 / (1 + np.exp(-out.astype(np.float32)))
    predicted = class_indices(p, "binary")
    assert list(predicted) == [1, 1, 0, 1]
    assert acc.result()["accuracy"] == np.mean(predicted == y[:, 0].astype(int))
