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
    """x * a + b in float64 (a product, then a sum), rounded once to the output dtype."""
    return (x.astype(np.float64) * np.asarray(a, np.float64) + np.asarray(b, np.float64)).astype(dtype)


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


def _hostile(src):
    """Columns that punish any rounding between x * a and + b: huge constants, 1e8 +- 10,
    tiny values, zeros, both signs, values near float32's limit."""
    rng = np.random.default_rng(7)
    if src == np.uint8:
        return rng.integers(0, 256, (64, 5)).astype(np.uint8)
    cols = [np.full(64, 1e20), 1e8 + rng.uniform(-10, 10, 64), rng.uniform(-1e-30, 1e-30, 64),
            np.zeros(64), rng.choice([-3e38, 3e38, -1.0, 1.0], 64), rng.standard_normal(64) * 1e6 - 5e7]
    return np.ascontiguousarray(np.stack(cols, axis=1).astype(src))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("src", SOURCES)
@pytest.mark.parametrize("steps", [("standardize",), ("minmax",), ("scale", "standardize"), ("standardize", "scale")])
def test_take_affine_and_preprocessor_apply_agree_bit_for_bit(dtype, src, steps):
    # the two paths that turn raw batches into model inputs (training's gather, predict's
    # chain, and Preprocessor.apply for everything else) give the same bits on hostile data
    from dlrun.dsl import ir
    from dlrun.runtime.data import Preprocessor

    x = _hostile(src)
    pre = Preprocessor([ir.Preprocess(k, {"factor": 0.37} if k == "scale" else {}) for k in steps])
    with np.errstate(over="ignore", invalid="ignore"):
        pre.fit(x)
    a, b = pre.affine
    ref = np.empty(x.shape, dtype)
    with np.errstate(over="ignore"):
        pre.apply(x, ref)
    out = np.empty(x.shape, dtype)
    C.take_affine(x, None, a, b, out)
    np.testing.assert_array_equal(out, ref)
    with np.errstate(over="ignore"):
        np.testing.assert_array_equal(ref, affine_ref(x, a, b, dtype))
    idx = np.arange(63, -1, -3, dtype=np.int64)
    out2 = np.empty((idx.shape[0], x.shape[1]), dtype)
    C.take_affine(x, idx, a, b, out2)
    np.testing.assert_array_equal(out2, ref[idx])
    chain = C.Chain(dtype, x.shape[1])
    out3 = np.empty(x.shape, dtype)
    chain.run(x, a, b, out3)
    np.testing.assert_array_equal(out3, ref)


@pytest.mark.parametrize("dtype", DTYPES)
def test_standardize_keeps_its_precision_in_float32(dtype):
    # x * a rounded to float32 before + b made a constant 1e20 come out as 2.0e12, and put
    # 1e8 +- 10 off by up to half a standard deviation
    from dlrun.dsl import ir
    from dlrun.runtime.data import Preprocessor

    x = np.empty((5, 2))
    x[:, 0] = 1e20
    x[:, 1] = 1e8 + np.array([-20.0, -10.0, 0.0, 10.0, 20.0])
    pre = Preprocessor([ir.Preprocess("standardize", {})]).fit(x)
    want = np.stack([np.zeros(5), np.array([-2, -1, 0, 1, 2]) / np.sqrt(2)], axis=1)
    a, b = pre.affine
    for out in (pre.transform(x, dtype), C.take_affine(x, None, a, b, np.empty((5, 2), dtype))):
        np.testing.assert_array_equal(out[:, 0], 0)
        np.testing.assert_allclose(out[:, 1], want[:, 1], rtol=1e-6 if dtype == np.float32 else 1e-9)


@pytest.mark.parametrize("dtype", DTYPES)
def test_chain_passes_nan_on(dtype):
    # relu(NaN) is NaN in the inference chain too (dense + relu, then a standalone relu)
    rng = np.random.default_rng(3)
    chain = C.Chain(dtype, 4)
    chain.add_dense(np.eye(4, dtype=dtype), np.zeros(4, dtype), "relu")
    chain.add_activation("relu")
    x = rng.uniform(-1, 1, (3, 4)).astype(dtype)
    x[1, 2] = np.nan
    out = np.empty((3, 4), dtype)
    chain.run(x, 1.0, 0.0, out)
    # x W with a NaN in row 1 is NaN across that row (NaN * 0 is NaN), and stays NaN
    assert np.isnan(out[1]).all()
    assert np.isfinite(out[[0, 2]]).all()
    one = np.empty((1, 4), dtype)
    chain.run(x[1:2].copy(), 1.0, 0.0, one)       # the single-row (GEMV) path
    assert np.isnan(one).all()
