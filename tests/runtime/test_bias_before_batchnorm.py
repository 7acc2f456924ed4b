"""A bias that batch norm follows: its gradient is exactly 0 where it is 0 in exact arithmetic
(``WeightedLayer.flat_channels``), and as computed elsewhere.

Batch norm passes back a gradient that sums to 0 over the batch in every channel, so the bias
of a layer before it, with an activation whose derivative is one constant over the batch's
values of a channel, has a gradient of 0. Computed, it was rounding noise, which adam turned
into steps of the learning rate.
"""
import numpy as np
import pytest

import dlrun

DENSE = """dlrun 1
model t {{
  input 6
  dense 8 {act}
  {norm}
  dense 3 softmax
  loss cross_entropy
  optimizer adam
  train epochs=1 batch=16 seed=0 dtype={dtype}
}}
"""

CONV = """dlrun 1
model t {{
  input 2x6x6
  conv2d 4 3x3 padding=same
  batchnorm
  relu
  flatten
  dense 3 softmax
  loss cross_entropy
  optimizer adam
  train epochs=1 batch=16 seed=0 dtype={dtype}
}}
"""


def _gradients(model, x, y, exact=True):
    """The parameter gradients of one training step on (x, y), by name; ``exact=False``:
    with the bias gradients as the kernels sum them."""
    net = model.network
    if not exact:
        for layer in net.compute:
            if hasattr(layer, "centred"):
                layer.centred = False
    out = net.forward(x, True, True)
    grad = np.empty_like(out)
    net.loss(out, y, grad)
    net.store.grad.fill(0)
    net.backward(grad)
    return {f"{layer.key}.{name}": layer.grads[name].copy() for layer, name, _ in net.named_params()}


def _batch(dtype, features, n=16, seed=1):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, features)).astype(dtype), rng.integers(0, 3, n)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("act", ["relu", "leaky_relu(alpha=0.1)", "elu", "linear"])
def test_a_dense_bias_before_batch_norm_has_a_zero_gradient_where_f_prime_is_constant(dtype, act):
    text = DENSE.format(act=act, norm="batchnorm", dtype=dtype)
    model, reference = dlrun.loads(text), dlrun.loads(text)
    for m in (model, reference):
        b = m.network.layers[1].params["b"]
        b[:3] = 50.0    # every row above 0
        b[3:5] = -50.0  # every row below 0
    x, y = _batch(dtype, 6)
    g = _gradients(model, x, y)["1.dense.b"]
    ref = _gradients(reference, x, y, exact=False)["1.dense.b"]
    name = act.split("(")[0]
    flat = {"linear": range(8), "elu": range(3)}.get(name, range(5))
    scale = np.abs(ref).max() if name != "linear" else 1.0
    for j in range(8):
        if j in flat:
            assert g[j] == 0.0, (j, g)
            # what the sum gave: rounding noise
            assert abs(ref[j]) <= (1e-4 if dtype == "float32" else 1e-12) * scale, (j, ref)
        else:
            assert g[j] == ref[j], (j, g, ref)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_other_gradients_are_as_computed(dtype):
    # no batch norm after the layer: nothing changes; with it, only the flat channels' bias
    for norm in ("", "batchnorm"):
        text = DENSE.format(act="relu", norm=norm, dtype=dtype)
        model, reference = dlrun.loads(text), dlrun.loads(text)
        for m in (model, reference):
            m.network.layers[1].params["b"][:3] = 50.0
        x, y = _batch(dtype, 6)
        g, ref = _gradients(model, x, y), _gradients(reference, x, y, exact=False)
        for key in g:
            if key == "1.dense.b" and norm:
                assert np.array_equal(g[key][3:], ref[key][3:]) and not g[key][:3].any()
            else:
                assert np.array_equal(g[key], ref[key]), key


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_conv_bias_before_batch_norm_has_a_zero_gradient(dtype):
    model, reference = dlrun.loads(CONV.format(dtype=dtype)), dlrun.loads(CONV.format(dtype=dtype))
    x, y = _batch(dtype, 72)
    g, ref = _gradients(model, x, y), _gradients(reference, x, y, exact=False)
    assert not g["1.conv2d.b"].any()
    assert np.abs(ref["1.conv2d.b"]).max() <= (1e-5 if dtype == "float32" else 1e-13) * np.abs(ref["1.conv2d.w"]).max()
    assert all(np.array_equal(g[k], ref[k]) for k in g if k != "1.conv2d.b")
