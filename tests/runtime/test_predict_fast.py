"""Model.predict's one-call inference chain gives what the layer-by-layer path gives."""
import numpy as np
import pytest

import dlrun

NET = """dlrun 1
model m {{
  data {{ {pre} }}
  input 12
  dense 16 relu
  batchnorm
  dropout 0.3
  dense 8 {act}
  activation tanh
  dense 3 {out}
  loss cross_entropy
  optimizer adam lr=0.01
  train epochs=3 batch=16 seed=2 {dtype}
}}
"""


def layer_path(model, x):
    """Preprocess with Preprocessor.apply, then Network.predict layer by layer."""
    net = model.network
    xin = model.preprocessor.transform(x.reshape(x.shape[0], -1), net.dtype)
    return net.predict(xin).copy()


@pytest.mark.parametrize("pre", ["scale 1/255", "standardize", "scale 0.5\n minmax"])
@pytest.mark.parametrize("act,out", [("relu", "softmax"), ("gelu", "linear")])
@pytest.mark.parametrize("dtype", ["", "dtype=float64"])
def test_predict_matches_layer_path(pre, act, out, dtype):
    text = NET.format(pre=pre, act=act, out=out, dtype=dtype)
    model = dlrun.loads(text)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (100, 12)).astype(np.uint8)
    x[:, :7] = 0          # mostly-zero rows take the zero-skipping product at batch 1
    y = rng.integers(0, 3, 100)
    model.fit(x, y)
    assert model.network.inference_chain() is not None
    want = layer_path(model, x)
    rt = dict(rtol=2e-5, atol=2e-6) if not dtype else dict(rtol=1e-12, atol=1e-13)
    for inputs in (x, x.astype(np.float32), x.astype(np.float64), x.astype(np.int32)):
        np.testing.assert_allclose(model.predict(inputs), want, **rt)
        np.testing.assert_allclose(model.predict(inputs, batch_size=7), want, **rt)
        for i in (0, 5):
            np.testing.assert_allclose(model.predict(inputs[i:i + 1]), want[i:i + 1], **rt)
    # a non-contiguous input
    xt = np.asfortranarray(x)
    np.testing.assert_allclose(model.predict(xt), want, **rt)
    # training afterwards shows through (the chain holds the arrays, not copies)
    model.fit(x, y, epochs=1)
    np.testing.assert_allclose(model.predict(x), layer_path(model, x), **rt)
