"""kernels/chain: raw-batch conversion (take_affine) and the one-call inference chain, against
NumPy references written layer by layer."""
import numpy as np
import pytest

from dlrun.kernels import chain as C
from helpers import DTYPES, tol

SOURCES = [np.uint8, np.float32, np.float64]


def _raw(rng, shape, src):
    if src == np.uint8:
        x = rng.integers(0, 256, shape).astype(np.uint8)
        x[:, : shape[1] // 2] = 0          # a blank half, as an image background
        return x
    return rng.standard_normal(shape).astype(src)


def affine_ref(x, a, b, dtype):
    """What Preprocessor.apply does: multiply then add, each into the output dtype."""
    out = np.empty(x.shape, dtype)
    np.multiply(x, np.asarray(a, np.float64), out=out, casting="same_kind")
    if np.ndim(b) or b != 0.0:
        np.add(out, np.asarray(b, np.float64), out=out, casting="same_kind")
    return out


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("src", SOURCES)
@pytest.mark.parametrize("vector", [False, True])
def test_take_affine_matches_numpy_bit_for_bit(dtype, src, vector):
    rng = np.random.default_rng(1)
    x = _raw(rng, (50, 13), src)
    idx = rng.integers(0, 50, 17).astype(np.int64)
    a = rng.uniform(0.1, 2, 13) if vector else 1 / 255
    b = rng.uniform(-1, 1, 13) if vector else -0.25
    out = np.empty((17, 13), dtype)
    C.take_affine(x, idx, a, b, out)
    np.testing.assert_array_equal(out, affine_ref(x[idx], a, b, dtype))
    # identity (a plain conversion) and idx None (every row in order)
    out2 = np.empty((50, 13), dtype)
    C.take_affine(x, None, 1.0, 0.0, out2)
    np.testing.assert_array_equal(out2, x.astype(dtype))


def test_take_affine_bad_calls():
    x = np.zeros((4, 3), np.uint8)
    out = np.empty((2, 3), np.float32)
    with pytest.raises(IndexError, match=r"idx\[1\] = 4 is out of range for x with 4 rows"):
        C.take_affine(x, np.array([0, 4], np.int64), 1.0, 0.0, out)
    with pytest.raises(TypeError, match="idx"):
        C.take_affine(x, np.array([0, 1], np.int32), 1.0, 0.0, out)
    with pytest.raises(ValueError, match=r"'a' has shape \(2,\)"):
        C.take_affine(x, np.array([0, 1], np.int64), np.ones(2), 0.0, out)
    with pytest.raises(ValueError, match="'out' has shape"):
        C.take_affine(x, np.array([0], np.int64), 1.0, 0.0, out)
    with pytest.raises(TypeError, match="uint8, float32 or float64"):
        C.take_affine(x.astype(np.int16), None, 1.0, 0.0, np.empty((4, 3), np.float32))


# -- the chain ----------------------------------------------------------------------------

def relu(z):
    return np.maximum(z, 0)


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def make_net(rng, dtype, d_in=30):
    p = {
        "w1": rng.standard_normal((d_in, 16)) * 0.3, "b1": rng.standard_normal(16) * 0.1,
        "g": rng.uniform(0.5, 1.5, 16), "be": rng.standard_normal(16) * 0.1,
        "mu": rng.standard_normal(16) * 0.2, "var": rng.uniform(0.2, 2, 16),
        "w2": rng.standard_normal((16, 5)) * 0.3, "b2": rng.standard_normal(5) * 0.1,
    }
    p = {k: v.astype(dtype) for k, v in p.items()}
    chain = C.Chain(dtype, d_in)
    chain.add_dense(p["w1"], p["b1"], "relu")
    chain.add_batchnorm(p["g"], p["be"], p["mu"], p["var"], 1e-5)
    chain.add_activation("tanh")
    chain.add_dense(p["w2"], p["b2"], "linear")
    chain.add_activation("softmax")
    return chain, p


def net_ref(x, p):
    x = x.astype(np.float64)
    h = relu(x @ p["w1"] + p["b1"])
    h = p["g"] * (h - p["mu"]) / np.sqrt(p["var"].astype(np.float64) + 1e-5) + p["be"]
    h = np.tanh(h)
    return softmax(h @ p["w2"] + p["b2"])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 2, 7, 64])
@pytest.mark.parametrize("src", SOURCES)
def test_chain_matches_numpy(dtype, n, src):
    rng = np.random.default_rng(n)
    chain, p = make_net(rng, dtype)
    assert len(chain) == 5 and chain.in_features == 30 and chain.out_features == 5
    x = _raw(rng, (n, 30), src)
    a, b = rng.uniform(0.001, 0.01, 30), 0.1
    out = np.empty((n, 5), dtype)
    assert chain.run(x, a, b, out) is out
    want = net_ref(affine_ref(x, a, b, dtype), p)
    np.testing.assert_allclose(out, want, rtol=5e-5 if dtype == np.float32 else 1e-10,
                               atol=5e-6 if dtype == np.float32 else 1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("zeros", [0, 10, 29, 30])
def test_single_row_product_with_zero_inputs(dtype, zeros):
    # a single row with many zeros takes the zero-skipping product; any count gives x W + b
    rng = np.random.default_rng(zeros)
    w = rng.standard_normal((30, 9)).astype(dtype)
    bias = rng.standard_normal(9).astype(dtype)
    x = rng.standard_normal((1, 30)).astype(dtype)
    x[0, rng.permutation(30)[:zeros]] = 0
    chain = C.Chain(dtype, 30)
    chain.add_dense(w, bias, "linear")
    out = np.empty((1, 9), dtype)
    chain.run(x, 1.0, 0.0, out)
    np.testing.assert_allclose(out, x.astype(np.float64) @ w + bias, **tol(dtype))


def test_chain_sees_later_changes_of_its_arrays():
    rng = np.random.default_rng(3)
    chain, p = make_net(rng, np.float64)
    x = rng.standard_normal((3, 30))
    out = np.empty((3, 5))
    chain.run(x, 1.0, 0.0, out)
    p["w2"][...] *= 2          # in place, as training and load_weights do
    p["var"][...] += 1
    chain.run(x, 1.0, 0.0, out)
    np.testing.assert_allclose(out, net_ref(x, p), rtol=1e-10, atol=1e-12)


def test_chain_buffers_grow_and_shrink():
    rng = np.random.default_rng(4)
    chain, p = make_net(rng, np.float32)
    for n in (1, 40, 3, 40, 1):
        x = rng.standard_normal((n, 30)).astype(np.float32)
        out = np.empty((n, 5), np.float32)
        chain.run(x, 1.0, 0.0, out)
        np.testing.assert_allclose(out, net_ref(x, p), rtol=5e-5, atol=5e-6)


def test_chain_without_ops_is_the_conversion():
    chain = C.Chain(np.float32, 4)
    x = np.arange(8, dtype=np.uint8).reshape(2, 4)
    out = np.empty((2, 4), np.float32)
    chain.run(x, 0.5, 1.0, out)
    np.testing.assert_array_equal(out, affine_ref(x, 0.5, 1.0, np.float32))


def test_chain_bad_calls():
    chain = C.Chain(np.float32, 3)
    with pytest.raises(ValueError, match=r"'w' has shape \(4, 2\); expected \(3, out\)"):
        chain.add_dense(np.zeros((4, 2), np.float32))
    with pytest.raises(TypeError, match="expected the chain's float32"):
        chain.add_dense(np.zeros((3, 2)))
    with pytest.raises(ValueError, match="unknown activation|relux"):
        chain.add_dense(np.zeros((3, 2), np.float32), None, "relux")
    chain.add_dense(np.ones((3, 2), np.float32), None, "relu")
    with pytest.raises(ValueError, match="'eps' must be > 0"):
        chain.add_batchnorm(*[np.ones(2, np.float32)] * 4, 0.0)
    chain.add_batchnorm(np.ones(2, np.float32), np.zeros(2, np.float32), np.zeros(2, np.float32),
                        np.array([1, -1], np.float32), 1e-5)
    out = np.empty((1, 2), np.float32)
    with pytest.raises(ValueError, match="op 1 \\(batch norm\\) has a negative or NaN running variance"):
        chain.run(np.ones((1, 3), np.float32), 1.0, 0.0, out)
    with pytest.raises(ValueError, match=r"'x' has shape \(1, 4\); expected \(rows, 3\)"):
        chain.run(np.ones((1, 4), np.float32), 1.0, 0.0, out)
    with pytest.raises(ValueError, match="'out' has shape"):
        chain.run(np.ones((2, 3), np.float32), 1.0, 0.0, out)
    with pytest.raises(TypeError, match="'out' has dtype float64"):
        chain.run(np.ones((1, 3), np.float32), 1.0, 0.0, np.empty((1, 2)))
    with pytest.raises(ValueError, match="C-contiguous"):
        chain.run(np.ones((3, 2), np.float32).T, 1.0, 0.0, out)
    with pytest.raises(TypeError, match="dtype must be float32 or float64"):
        C.Chain(np.int32, 3)
