"""A convolutional network predicts in one chain call (``Network.inference_chain``), bit for
bit what the layers give one after another in eval mode, in float32 and float64, at batch 1,
an odd batch and a large one; the chain sees later training; threads with their own chains
agree with one thread."""
import threading
from pathlib import Path

import numpy as np
import pytest

import irfactory as F

import dlrun
from dlrun import dsl
from dlrun.runtime.network import Network

ROOT = Path(__file__).resolve().parents[2]
DTYPES = [np.float32, np.float64]
BATCHES = (1, 37, 300)


def _scramble(net, seed=0):
    """Parameters and running statistics far from their initial values (gamma 1, beta 0,
    mean 0, variance 1 would hide a batch norm that is skipped or misapplied)."""
    rng = np.random.default_rng(seed)
    for layer, name, p in net.named_params():
        p[...] = rng.normal(0, 0.4, p.shape) + (1.0 if name == "gamma" else 0.0)
    for layer, name, s in net.named_state():
        s[...] = rng.uniform(0.3, 2.0, s.shape) if name == "running_var" else rng.normal(0, 0.3, s.shape)


def _inputs(net, n, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, (n, net.input_features))
    x[rng.random(x.shape) < 0.3] = 0     # zeros, as in images with a background
    return x.astype(net.dtype)


def assert_chain_is_layer_path(net, batches=BATCHES):
    chain = net.inference_chain()
    assert chain is not None and chain.exact
    for n in batches:
        x = _inputs(net, n, seed=n)
        want = net.predict(x).copy()
        out = np.empty((n, net.output_features), net.dtype)
        chain.run(x, 1.0, 0.0, out)
        assert out.tobytes() == want.tobytes(), f"batch {n}: {np.abs(out - want).max()}"


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("name", ["digits_cnn", "mnist_cnn"])
def test_shipped_cnns_predict_bit_for_bit_through_the_chain(name, dtype):
    model = dsl.parse((ROOT / "models" / f"{name}.net").read_text(), str(ROOT / "models" / f"{name}.net"))
    net = Network(model, dtype=dtype)
    _scramble(net)
    assert_chain_is_layer_path(net)


IMAGE_CASES = [
    ("conv2d-relu-same", F.conv2d(3, 3, "relu", padding="same"), (2, 5, 5)),
    ("conv2d-stride-pad-dilation", F.conv2d(4, (2, 3), "tanh", stride=(2, 1), padding=(1, 0), dilation=2),
     (1, 7, 6)),
    ("conv2d-groups-nobias", F.conv2d(4, 3, "linear", groups=2, bias=False), (4, 4, 5)),
    ("conv2d-gelu", F.conv2d(2, 1, "gelu"), (3, 3, 3)),
    ("conv2d-swish", F.conv2d(3, 2, "swish", padding=1), (2, 4, 3)),
    ("conv2d-elu", F.conv2d(3, 3, "elu", alpha=0.3, padding="same"), (2, 4, 4)),
    ("conv2d-batch1-odd", F.conv2d(1, 3, "sigmoid", padding=1), (1, 3, 5)),
    ("maxpool-2x2", F.maxpool(2), (2, 4, 6)),
    ("maxpool-3-stride2-pad1", F.maxpool(3, stride=2, padding=1), (1, 5, 5)),
    ("avgpool-2x2", F.avgpool(2), (2, 4, 4)),
    ("avgpool-3-pad1", F.avgpool(3, stride=1, padding=1), (2, 3, 4)),
    ("global_avgpool", F.global_avgpool(), (3, 2, 5)),
    ("global_maxpool", F.global_maxpool(), (3, 4, 2)),
    ("batchnorm-channels", F.batchnorm(0.9, 1e-5), (3, 2, 2)),
    ("dropout-image", F.dropout(0.3), (2, 3, 3)),
    ("activation-tanh-image", F.activation("tanh"), (2, 3, 3)),
]


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("label,node,in_shape", IMAGE_CASES, ids=[c[0] for c in IMAGE_CASES])
def test_each_image_layer_in_the_chain_is_its_forward(label, node, in_shape, dtype):
    # the layer contract's image cases (tests/runtime/test_layers.py), each between the input
    # and a head; a conv first, so that the chain is exact whatever the layer
    layers = [F.input_(*in_shape), F.conv2d(in_shape[0], 1, "linear"), node]
    if node.kind not in ("global_avgpool", "global_maxpool"):
        layers.append(F.flatten())
    layers.append(F.dense(3, "softmax"))
    net = Network(F.model(layers, dtype=np.dtype(dtype).name))
    _scramble(net)
    assert_chain_is_layer_path(net)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_a_deep_stack_of_every_image_op_is_exact(dtype):
    layers = [
        F.input_(3, 11, 10),
        F.activation("swish"),
        F.conv2d(6, 3, "gelu", padding="same"),
        F.batchnorm(),
        F.activation("elu", alpha=0.7),
        F.avgpool(3, stride=2, padding=1),
        F.conv2d(8, 3, "tanh", stride=2, padding=1, groups=2),
        F.maxpool(2, stride=1),
        F.dropout(0.5),
        F.conv2d(4, 1, "softplus"),
        F.flatten(),
        F.dense(9, "swish"),
        F.batchnorm(),
        F.dense(7, "gelu"),
        F.dense(2, "linear"),
    ]
    net = Network(F.model(layers, loss="mse", dtype=np.dtype(dtype).name))
    _scramble(net, seed=3)
    assert_chain_is_layer_path(net)


CNN = """dlrun 1
model c {{
  data {{ scale 1/255 }}
  input 1x12x12
  conv2d 8 3x3 relu padding=same
  batchnorm
  maxpool 2x2
  conv2d 16 3x3 padding=same
  batchnorm
  relu
  global_avgpool
  dropout 0.2
  dense 4 softmax
  loss cross_entropy
  optimizer adam lr=1e-2
  train epochs=2 batch=16 seed=3 {dtype}
}}
"""


def _images(n, seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n)
    x = np.clip(rng.normal(60, 50, (n, 1, 12, 12)) + 40 * y[:, None, None, None], 0, 255)
    return x.astype(np.uint8), y


def _layer_path(model, x):
    net = model.network
    xin = model.preprocessor.transform(x.reshape(x.shape[0], -1), net.dtype)
    return net.predict(xin).copy()


@pytest.mark.parametrize("dtype", ["", "dtype=float64"])
def test_model_predict_runs_the_exact_chain(dtype):
    model = dlrun.loads(CNN.format(dtype=dtype))
    x, y = _images(120, 0)
    model.fit(x, y, progress=False)
    assert model.network.inference_chain() is not None
    want = _layer_path(model, x)
    for inputs in (x, x.astype(np.float32), x.reshape(120, -1)):
        assert model.predict(inputs).tobytes() == want.tobytes()
        assert model.predict(inputs, batch_size=7).tobytes() == want.tobytes()
        assert model.predict(inputs[5:6]).tobytes() == want[5:6].tobytes()
    # training afterwards shows through: the chain holds the arrays, not copies
    model.fit(x, y, epochs=1, progress=False)
    assert model.predict(x).tobytes() == _layer_path(model, x).tobytes()


def test_two_threads_with_their_own_chains_agree_with_one():
    model = dlrun.loads(CNN.format(dtype=""))
    x, y = _images(400, 1)
    model.fit(x, y, progress=False)
    parts = [x[:200], x[200:]]
    alone = [model.predict(p).copy() for p in parts]
    got = [None, None]
    barrier = threading.Barrier(2)

    def worker(i):
        barrier.wait()
        for _ in range(5):
            got[i] = model.predict(parts[i], batch_size=64 if i else 33).copy()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    for i in range(2):
        assert got[i].tobytes() == alone[i].tobytes()
    # and each thread had a chain of its own (Network.inference_copy per thread)
    nets = []

    def grab():
        nets.append(model._inference_network())

    for t in [threading.Thread(target=grab) for _ in range(2)]:
        t.start()
        t.join()
    assert nets[0].inference_chain() is not nets[1].inference_chain()


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_sequence_batchnorm_in_the_chain_is_per_channel(dtype):
    # a sequence T x C fed as numbers: the chain normalises each of the C channels over the
    # n*T rows, as the layer does
    m = F.model([F.input_(5, 3), F.batchnorm(), F.activation("tanh"), F.flatten(), F.dense(2, "softmax")],
                dtype=np.dtype(dtype).name)
    net = Network(m)
    _scramble(net)
    assert net.compute[0].params["gamma"].shape == (3,)
    assert_chain_is_layer_path(net)


def test_sequence_layers_keep_the_layer_path():
    # valid steps per sample (an embedding's padding) are not the chain's to know
    m = F.model([F.input_(6), F.embedding(4, 11), F.conv1d(3, 2, "relu"), F.global_maxpool(),
                 F.dense(2, "softmax")])
    assert Network(m).inference_chain() is None


# ---------------------------------------------------------------- graphs: one chain too
from test_cnn import CNN as GRAPH_CNN  # noqa: E402  (conv branches joined by concat)

SEQ_CONCAT = """dlrun 1
model s {
  input 3x4
  dropout 0.1 as x
  activation relu as a
  activation tanh from=x as b
  concat a b
  flatten
  dense 5 gelu as h
  dense 5 tanh from=h as g
  add h g
  dense 2 softmax
  loss cross_entropy
  optimizer adam
  train epochs=1 batch=8 seed=1
}
"""


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("which", ["digits_resnet", "cnn_concat", "sequence_concat_add"])
def test_graphs_predict_bit_for_bit_through_one_chain(which, dtype):
    if which == "digits_resnet":
        text, path = (ROOT / "models" / "digits_resnet.net").read_text(), str(ROOT / "models" / "digits_resnet.net")
    else:
        text, path = (GRAPH_CNN if which == "cnn_concat" else SEQ_CONCAT), "<string>"
    net = Network(dsl.parse(text, path), dtype=dtype)
    assert not net.is_chain
    _scramble(net, seed=5)
    assert_chain_is_layer_path(net)
