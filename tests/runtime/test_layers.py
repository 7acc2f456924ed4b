"""The contract every runtime layer passes (one shared test, parametrised over layers).

- the inferred output shape equals the shape of what ``forward`` returns;
- in float64, ``backward`` agrees with central finite differences for the input and every
  parameter (the loss is a fixed random projection of the output, so every output element
  matters), in training mode;
- training and evaluation modes both run; layers without train/eval differences give the
  same result in both; buffers are reused across batches and a short batch works.
"""
import numpy as np
import pytest

import irfactory as F
from helpers import numeric_grad

from dlrun.dsl.layers.concat import feature_axis
from dlrun.runtime.gradcheck import relative_error
from dlrun.runtime.layers import LAYERS, make_layer


def assert_grad_close(analytic, numeric, what):
    err = relative_error(analytic, numeric)
    assert err <= 1e-6, f"{what}: relative error {err:.3e} > 1e-6"

ACTS = ["linear", "relu", "leaky_relu", "elu", "sigmoid", "tanh", "softplus", "gelu", "swish", "softmax"]

CASES = (
    [("dense", F.dense(5, a, **({"alpha": 0.1} if a in ("leaky_relu", "elu") else {})), (4,)) for a in ACTS]
    + [("dense-nobias", F.dense(3, "tanh", bias=False), (6,))]
    + [("activation-" + a, F.activation(a, **({"alpha": 0.2} if a in ("leaky_relu", "elu") else {})), (5,))
       for a in ACTS]
    + [
        ("batchnorm", F.batchnorm(0.9, 1e-5), (4,)),
        ("dropout", F.dropout(0.4), (6,)),
        ("dropout-zero", F.dropout(0.0), (3,)),
        ("flatten", F.flatten(), (2, 3)),
        ("input", F.input_(3), (3,)),
        # images: C x H x W
        ("conv2d-relu-same", F.conv2d(3, 3, "relu", padding="same"), (2, 5, 5)),
        ("conv2d-stride-pad-dilation", F.conv2d(4, (2, 3), "tanh", stride=(2, 1), padding=(1, 0), dilation=2),
         (1, 7, 6)),
        ("conv2d-groups-nobias", F.conv2d(4, 3, "linear", groups=2, bias=False), (4, 4, 5)),
        ("conv2d-gelu", F.conv2d(2, 1, "gelu"), (3, 3, 3)),
        ("conv2d-batch1-odd", F.conv2d(1, 3, "sigmoid", padding=1), (1, 3, 5)),
        ("maxpool-2x2", F.maxpool(2), (2, 4, 6)),
        ("maxpool-3-stride2-pad1", F.maxpool(3, stride=2, padding=1), (1, 5, 5)),
        ("avgpool-2x2", F.avgpool(2), (2, 4, 4)),
        ("avgpool-3-pad1", F.avgpool(3, stride=1, padding=1), (2, 3, 4)),
        ("global_avgpool", F.global_avgpool(), (3, 2, 5)),
        ("global_maxpool", F.global_maxpool(), (3, 4, 2)),
        ("batchnorm-channels", F.batchnorm(0.9, 1e-5), (3, 2, 2)),
        ("dropout-image", F.dropout(0.3), (2, 3, 3)),
        # sequences: time x channels (token ids for an embedding)
        ("embedding", F.embedding(4, 11), (6,)),
        ("conv1d-relu-same", F.conv1d(5, 3, "relu", padding="same"), (7, 3)),
        ("conv1d-stride-dilation-pad", F.conv1d(4, 2, "tanh", stride=2, padding=(1, 2), dilation=2), (9, 2)),
        ("conv1d-swish-nobias", F.conv1d(3, 1, "swish", bias=False), (4, 5)),
        ("maxpool1d-2", F.maxpool1d(2), (8, 3)),
        ("maxpool1d-3-stride1-pad1", F.maxpool1d(3, stride=1, padding=1), (5, 2)),
        ("avgpool1d-2", F.avgpool1d(2), (7, 3)),
        ("avgpool1d-3-pad1", F.avgpool1d(3, stride=2, padding=1), (6, 2)),
        ("global_avgpool-time", F.global_avgpool(), (5, 3)),
        ("global_maxpool-time", F.global_maxpool(), (4, 2)),
        ("batchnorm-sequence", F.batchnorm(0.9, 1e-5), (5, 3)),
        # layers joining several outputs take a list of shapes
        ("add-2", F.add(), [(4,), (4,)]),
        ("add-3-image", F.add(), [(2, 2, 3), (2, 2, 3), (2, 2, 3)]),
        ("concat-flat", F.concat(), [(3,), (2,), (4,)]),
        ("concat-channels", F.concat(), [(2, 2, 3), (1, 2, 3)]),
        ("concat-sequence", F.concat(), [(3, 2), (3, 4)]),
    ]
)


def _build(node, in_shape, dtype=np.float64, seed=0):
    layer = make_layer(node, in_shape, 1)
    layer.build(dtype, np.random.default_rng(seed))
    return layer


def _one_input(rng, n, features):
    # keep away from the kinks of relu-like activations: |x| >= 0.1
    x = rng.uniform(0.1, 1.5, (n, features)) * rng.choice([-1.0, 1.0], (n, features))
    return np.ascontiguousarray(x)


def _inputs(layer, n, seed=1):
    """One input batch, or a list of them for a layer that joins several (token ids for a
    layer that reads ids)."""
    rng = np.random.default_rng(seed)
    ids = layer.random_input(rng, n)
    if ids is not None:
        return ids
    if layer.joins:
        return [_one_input(rng, n, int(np.prod(s))) for s in layer.in_shapes]
    return _one_input(rng, n, layer.in_features)


def _as_list(xs):
    return xs if isinstance(xs, list) else [xs]


def _cast(xs, dtype):
    return [x.astype(dtype) for x in xs] if isinstance(xs, list) else xs.astype(dtype)


def test_every_registered_layer_is_covered():
    assert set(LAYERS) == {c[1].kind for c in CASES}


@pytest.mark.parametrize("label,node,in_shape", CASES, ids=[c[0] for c in CASES])
def test_shape_inference_matches_forward(label, node, in_shape):
    layer = _build(node, in_shape, np.float32)
    out_shape = layer.output_shape(in_shape)
    assert out_shape == layer.out_shape
    features = int(np.prod(out_shape))
    for training in (True, False):
        for n in (7, 3, 1):  # growing then shrinking batches: buffers are reused
            y = layer.forward(_cast(_inputs(layer, n), np.float32), training)
            assert y.shape == (n, features)
            assert y.dtype == np.float32
            assert y.flags.c_contiguous


@pytest.mark.parametrize("label,node,in_shape", CASES, ids=[c[0] for c in CASES])
def test_gradients_match_finite_differences(label, node, in_shape):
    layer = _build(node, in_shape)
    n = 4
    x = _inputs(layer, n)
    r = np.random.default_rng(2).standard_normal((n, layer.out_features))

    def loss():
        if hasattr(layer, "counter"):
            layer.counter = 0  # the same dropout mask for every evaluation
        return float((layer.forward(x, True) * r).sum())

    loss()
    dy = r.copy()
    dx = layer.backward(dy)
    dxs = [None if d is None else d.copy() for d in _as_list(dx)]
    analytic = {name: g.copy() for name, g in layer.grads.items()}
    reads_ids = layer.random_input(np.random.default_rng(0), 1) is not None
    for k, (d, xk) in enumerate(zip(dxs, _as_list(x))):
        if reads_ids:       # token ids have no gradient
            assert d is None
            continue
        assert_grad_close(d, numeric_grad(loss, xk), what=f"{label} dx{k}")
    for name, p in layer.params.items():
        assert_grad_close(analytic[name], numeric_grad(loss, p), what=f"{label} d{name}")


@pytest.mark.parametrize("label,node,in_shape", CASES, ids=[c[0] for c in CASES])
def test_train_and_eval_modes(label, node, in_shape):
    layer = _build(node, in_shape)
    x = _inputs(layer, 6)
    y_train = layer.forward(x, True).copy()
    y_eval = layer.forward(x, False).copy()
    assert np.all(np.isfinite(y_train)) and np.all(np.isfinite(y_eval))
    if node.kind == "dropout" and node.params["rate"] > 0:
        assert not np.array_equal(y_train, y_eval)
        np.testing.assert_array_equal(y_eval, x)  # identity at inference
        kept = y_train != 0
        np.testing.assert_allclose(y_train[kept], x[kept] / (1 - node.params["rate"]))
    elif node.kind == "batchnorm" and len(in_shape) == 3:
        c = in_shape[0]
        per_channel = y_train.reshape((6, c, -1)).transpose(1, 0, 2).reshape(c, -1)
        np.testing.assert_allclose(per_channel.mean(1), 0, atol=1e-12)
        x_ch = x.reshape((6, c, -1)).transpose(1, 0, 2).reshape(c, -1)
        np.testing.assert_allclose(layer.state["running_mean"], 0.1 * x_ch.mean(1))
    elif node.kind == "batchnorm" and len(in_shape) == 2:
        # a sequence T x C: per channel over batch and time (PyTorch's BatchNorm1d on (N, C, T))
        t, c = in_shape
        assert layer.params["gamma"].shape == (c,)
        rows = x.reshape(6 * t, c)
        np.testing.assert_allclose(y_train.reshape(6 * t, c).mean(0), 0, atol=1e-12)
        np.testing.assert_allclose(y_train.reshape(6 * t, c).std(0), 1, atol=1e-4)
        rm, rv = layer.state["running_mean"], layer.state["running_var"]
        np.testing.assert_allclose(rm, 0.1 * rows.mean(0))
        np.testing.assert_allclose(rv, 0.9 + 0.1 * rows.var(0, ddof=1))
        np.testing.assert_allclose(y_eval.reshape(6 * t, c), (rows - rm) / np.sqrt(rv + 1e-5))
    elif node.kind == "batchnorm":
        # training normalises with the batch statistics ...
        np.testing.assert_allclose(y_train.mean(0), 0, atol=1e-12)
        # ... and moved the running statistics toward them; inference uses the running ones
        rm, rv = layer.state["running_mean"], layer.state["running_var"]
        np.testing.assert_allclose(rm, 0.1 * x.mean(0))
        np.testing.assert_allclose(rv, 0.9 + 0.1 * x.var(0, ddof=1))
        np.testing.assert_allclose(y_eval, (x - rm) / np.sqrt(rv + 1e-5))
    else:
        np.testing.assert_array_equal(y_train, y_eval)
    if node.kind == "add":
        np.testing.assert_array_equal(y_eval, sum(x))
    elif node.kind == "concat":
        n = x[0].shape[0]
        axis = 1 + feature_axis(layer.out_shape)
        parts = [xk.reshape((n,) + s) for xk, s in zip(x, layer.in_shapes)]
        np.testing.assert_array_equal(y_eval.reshape((n,) + layer.out_shape), np.concatenate(parts, axis))


def test_dropout_mask_depends_on_seed_and_counter():
    layer = _build(F.dropout(0.5), (50,))
    x = np.ones((8, 50))
    layer.seed, layer.counter = 123, 0
    a = layer.forward(x, True).copy()
    assert layer.counter == x.size
    b = layer.forward(x, True).copy()
    layer.counter = 0
    c = layer.forward(x, True).copy()
    np.testing.assert_array_equal(a, c)
    assert not np.array_equal(a, b)
    assert 0.3 < (a == 0).mean() < 0.7


@pytest.mark.parametrize("init,expect_std", [
    ("he_normal", np.sqrt(2 / 400)), ("he_uniform", np.sqrt(2 / 400)),
    ("xavier_normal", np.sqrt(2 / 600)), ("xavier_uniform", np.sqrt(2 / 600)),
])
def test_dense_initialisation(init, expect_std):
    layer = _build(F.dense(200, "relu", init=init), (400,))
    w = layer.params["w"]
    assert abs(w.std() / expect_std - 1) < 0.03
    assert abs(w.mean()) < 0.1 * expect_std
    if init.endswith("uniform"):
        assert np.abs(w).max() <= np.sqrt(3) * expect_std
    np.testing.assert_array_equal(layer.params["b"], 0)


def test_dense_default_init_follows_activation():
    assert _build(F.dense(4, "relu"), (3,)).resolved_init() == "he_normal"
    assert _build(F.dense(4, "tanh"), (3,)).resolved_init() == "xavier_uniform"
    assert _build(F.dense(4, "tanh", init="he_uniform"), (3,)).resolved_init() == "he_uniform"


def test_unknown_layer_kind_lists_known_ones():
    from dlrun.dsl import ir
    from dlrun.errors import UsageError

    with pytest.raises(UsageError, match="known: activation, add, avgpool, avgpool1d, batchnorm, concat, conv1d, conv2d, dense"):
        make_layer(ir.Layer("conv", {}), (3,), 2)
