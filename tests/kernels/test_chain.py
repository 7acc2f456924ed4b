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
    for steps in (0, 1.5, True):
        with pytest.raises(ValueError, match="'steps' must be an int >= 1"):
            chain.add_batchnorm(*[np.ones(1, np.float32)] * 4, 1e-5, steps=steps)
    with pytest.raises(ValueError, match=r"'steps' \(3\) does not divide the 2 features"):
        chain.add_batchnorm(*[np.ones(1, np.float32)] * 4, 1e-5, steps=3)
    with pytest.raises(ValueError, match=r"'gamma' has shape \(2,\)"):
        chain.add_batchnorm(*[np.ones(2, np.float32)] * 4, 1e-5, steps=2)
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


# ---------------------------------------------------------------- image ops, exact chains
from dlrun.kernels import activations as KA, batchnorm as KB, conv as KC, dense as KD, pool as KP  # noqa: E402


def _bn_params(rng, c, dtype):
    return (rng.uniform(0.5, 1.5, c).astype(dtype), rng.normal(0, 0.5, c).astype(dtype),
            rng.normal(0, 0.5, c).astype(dtype), rng.uniform(0.2, 2.0, c).astype(dtype))


CONVS = [  # (C, H, W), filters, kernel, stride, padding, dilation, groups, activation
    ((3, 9, 8), 4, (3, 3), 1, 1, 1, 1, "relu"),
    ((4, 7, 10), 6, (2, 3), (2, 1), (1, 0, 2, 1), 2, 2, "tanh"),
    ((2, 6, 6), 4, (1, 1), 1, 0, 1, 2, "gelu"),
    ((1, 5, 7), 3, (3, 2), 2, (2, 1), (1, 2), 1, "swish"),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", range(len(CONVS)))
def test_image_ops_are_the_kernels_bit_for_bit(dtype, case):
    (c, h, w), f, k, stride, padding, dilation, groups, act = CONVS[case]
    rng = np.random.default_rng(case)
    n = 5
    x = rng.normal(0, 1, (n, c, h, w)).astype(dtype)
    wt = rng.normal(0, 0.5, (f, c // groups) + k).astype(dtype)
    b = rng.normal(0, 0.5, f).astype(dtype)
    bn = _bn_params(rng, f, dtype)
    chain = C.Chain(dtype, (c, h, w))
    assert not chain.exact
    chain.add_conv2d(wt, b, stride, padding, dilation, groups, act)
    assert chain.exact
    # the layers' way: conv2d_forward (gelu and swish after the linear convolution)
    ys = KC.conv2d_output_shape(x.shape, wt.shape, stride, padding, dilation)
    assert chain.shape == ys[1:]
    y = np.empty(ys, dtype)
    col = np.empty(KC.conv2d_workspace_size(x.shape, wt.shape, stride, padding, dilation, groups), dtype)
    fused = act not in ("gelu", "swish")
    KC.conv2d_forward(x, wt, b, y, col, stride, padding, dilation, groups, act if fused else "linear")
    if not fused:
        KA.activation_forward(act, y.reshape(n, -1), y.reshape(n, -1))
    chain.add_batchnorm2d(*bn, 1e-3)
    KB.batchnorm2d_forward_eval(y, *bn, 1e-3, y)
    chain.add_maxpool(2, 1, 0)
    m = np.empty(KP.pool2d_output_shape(y.shape, 2, 1, 0), dtype)
    KP.maxpool2d_forward(y, m, np.empty(m.shape, np.int64), 2, 1, 0)
    chain.add_avgpool(2, 1, 1)
    a = np.empty(KP.pool2d_output_shape(m.shape, 2, 1, 1), dtype)
    KP.avgpool2d_forward(m, a, 2, 1, 1)
    chain.add_activation("sigmoid")
    KA.activation_forward("sigmoid", a.reshape(n, -1), a.reshape(n, -1))
    assert chain.shape == a.shape[1:]
    chain.add_global_maxpool()
    g = np.empty((n, f), dtype)
    KP.global_maxpool_forward(a, g, np.empty((n, f), np.int64))
    assert chain.shape == (f,)
    out = np.empty((n, f), dtype)
    chain.run(x.reshape(n, -1), 1.0, 0.0, out)
    assert out.tobytes() == g.tobytes()
    # global average pooling, flatten and a dense op after it
    chain2 = C.Chain(dtype, (c, h, w))
    chain2.add_conv2d(wt, None, stride, padding, dilation, groups, "elu", 0.5)
    chain2.add_global_avgpool()
    chain2.add_flatten()
    wd = rng.normal(0, 0.5, (f, 3)).astype(dtype)
    chain2.add_dense(wd, None, "softmax")
    KC.conv2d_forward(x, wt, None, y, col, stride, padding, dilation, groups, "elu", 0.5)
    KP.global_avgpool_forward(y, g)
    want = np.empty((n, 3), dtype)
    KD.dense_forward(g, wd, None, want, "softmax")
    out2 = np.empty((n, 3), dtype)
    chain2.run(x.reshape(n, -1), 1.0, 0.0, out2)
    assert out2.tobytes() == want.tobytes()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", ["tanh", "gelu", "swish", "softmax", "elu"])
def test_an_exact_chain_of_row_ops_is_the_layer_kernels(dtype, act):
    # the row ops' own loops in this module round differently from the kernels (it is
    # compiled with -ffp-contract=off); an exact chain runs the kernels' code
    rng = np.random.default_rng(4)
    x = rng.normal(0, 2, (9, 20)).astype(dtype)
    x[:, :12] = 0      # a one-row product would skip these zeros
    w = rng.normal(0, 0.5, (20, 16)).astype(dtype)
    b = rng.normal(0, 0.5, 16).astype(dtype)
    bn = _bn_params(rng, 16, dtype)
    for n in (1, 9):
        chain = C.Chain(dtype, 20, exact=True)
        chain.add_dense(w, b, act, 0.3)
        chain.add_batchnorm(*bn, 1e-5)
        chain.add_activation(act, 0.3)
        z = np.empty((n, 16), dtype)
        if act in ("gelu", "swish"):
            KD.dense_forward(x[:n], w, b, z, "linear")
            KA.activation_forward(act, z, z)
        else:
            KD.dense_forward(x[:n], w, b, z, act, 0.3)
        KB.batchnorm_forward_eval(z, *bn, 1e-5, z)
        KA.activation_forward(act, z, z, 0.3)
        out = np.empty((n, 16), dtype)
        chain.run(x[:n], 1.0, 0.0, out)
        assert out.tobytes() == z.tobytes()


def test_image_chain_reuses_its_buffers_once_warm():
    import tracemalloc

    rng = np.random.default_rng(0)
    chain = C.Chain(np.float32, (2, 16, 16))
    chain.add_conv2d(rng.normal(0, 1, (8, 2, 3, 3)).astype(np.float32), None, 1, 1)
    chain.add_maxpool(2)
    chain.add_flatten()
    chain.add_dense(rng.normal(0, 1, (512, 4)).astype(np.float32))
    x = rng.normal(0, 1, (64, 512)).astype(np.float32)
    out = np.empty((64, 4), np.float32)
    chain.run(x, 1.0, 0.0, out)             # grows the buffers to 64 rows
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for n in (64, 1, 17, 64):
            chain.run(x[:n], 1.0, 0.0, out[:n])
        grown = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    # one 64-row buffer of the widest stage alone is 64 * 2048 * 4 bytes = 512 KiB
    assert grown < 16 * 1024, grown


def test_image_chain_bad_calls():
    f32 = np.float32
    with pytest.raises(ValueError, match=r"in_shape must be an int >= 1 or a tuple"):
        C.Chain(f32, (2, 0, 3))
    flat = C.Chain(f32, 12)
    with pytest.raises(ValueError, match=r"Chain.add_conv2d: needs images C x H x W; the chain's samples "
                                         r"have shape \(12,\)"):
        flat.add_conv2d(np.zeros((1, 1, 1, 1), f32))
    with pytest.raises(ValueError, match="Chain.add_maxpool: needs images"):
        flat.add_maxpool(2)
    with pytest.raises(ValueError, match="Chain.add_global_avgpool: needs images"):
        flat.add_global_avgpool()
    with pytest.raises(ValueError, match="Chain.add_batchnorm2d: needs images"):
        flat.add_batchnorm2d(*[np.ones(12, f32)] * 4, 1e-5)
    im = C.Chain(f32, (4, 5, 5))
    with pytest.raises(ValueError, match="'softmax' is not fused into a convolution"):
        im.add_conv2d(np.zeros((2, 4, 3, 3), f32), None, activation="softmax")
    with pytest.raises(ValueError, match=r"'w' has shape \(3, 2, 3, 3\); expected \(filters, 4 // groups"):
        im.add_conv2d(np.zeros((3, 2, 3, 3), f32), None, groups=2)
    with pytest.raises(ValueError, match="'groups' must be an int >= 1"):
        im.add_conv2d(np.zeros((2, 4, 3, 3), f32), None, groups=0)
    with pytest.raises(ValueError, match="window .* is larger than the padded input"):
        im.add_conv2d(np.zeros((2, 4, 6, 6), f32))
    with pytest.raises(TypeError, match="expected the chain's float32"):
        im.add_conv2d(np.zeros((2, 4, 3, 3)))
    with pytest.raises(ValueError, match="'padding' .* must be smaller than the kernel"):
        im.add_maxpool(2, 1, 2)
    with pytest.raises(ValueError, match=r"argument 'gamma' has shape \(5,\)"):
        im.add_batchnorm2d(*[np.ones(5, f32)] * 4, 1e-5)
    assert len(im) == 0 and im.shape == (4, 5, 5)      # nothing was added by a refused call
    im.add_batchnorm2d(np.ones(4, f32), np.zeros(4, f32), np.zeros(4, f32),
                       np.array([1, 1, np.nan, 1], f32), 1e-5)
    with pytest.raises(ValueError, match=r"op 0 \(batch norm\) has a negative or NaN running variance"):
        im.run(np.ones((2, 100), f32), 1.0, 0.0, np.empty((2, 100), f32))


@pytest.mark.parametrize("dtype", DTYPES)
def test_graph_values_add_concat_and_use(dtype):
    rng = np.random.default_rng(7)
    x = rng.normal(0, 1, (6, 2 * 3 * 4)).astype(dtype)
    w1 = rng.normal(0, 0.5, (2, 2, 1, 1)).astype(dtype)
    w2 = rng.normal(0, 0.5, (3, 2, 3, 3)).astype(dtype)
    chain = C.Chain(dtype, (2, 3, 4))
    v0 = chain.value
    chain.add_activation("tanh")                 # not over the input: the concat reads it
    t = chain.value
    chain.add_conv2d(w1)
    a = chain.value
    chain.use(t)
    chain.add_conv2d(w2, None, 1, 1)
    b = chain.value
    chain.add_add([a, a, t])                     # a value twice
    s = chain.value
    chain.add_concat([s, b, v0], 0)
    assert chain.shape == (7, 3, 4) and chain.exact
    chain.add_flatten()
    f = chain.value
    chain.add_activation("relu")
    chain.use(f)                                 # the result is an earlier value
    # the same with the kernels
    n = x.shape[0]
    x4 = x.reshape(n, 2, 3, 4)
    tt = np.empty_like(x4)
    KA.activation_forward("tanh", x4.reshape(n, -1), tt.reshape(n, -1))
    aa = np.empty((n, 2, 3, 4), dtype)
    KC.conv2d_forward(tt, w1, None, aa, np.empty(24 * 4, dtype))
    bb = np.empty((n, 3, 3, 4), dtype)
    KC.conv2d_forward(tt, w2, None, bb, np.empty(18 * 12, dtype), 1, 1)
    ss = aa + aa + tt
    want = np.concatenate([ss, bb, x4], axis=1).reshape(n, -1)
    out = np.empty((n, 84), dtype)
    for rows in (n, 1, n):
        chain.run(x[:rows], 1.0, 0.0, out[:rows])
        assert out[:rows].tobytes() == want[:rows].tobytes()


def test_graph_bad_calls():
    f32 = np.float32
    chain = C.Chain(f32, (2, 3))
    v = chain.value
    chain.add_activation("relu")
    with pytest.raises(ValueError, match="Chain.use: .* is not a value of this chain"):
        chain.use((5, (2, 3)))
    with pytest.raises(ValueError, match="Chain.use: .* is not a value of this chain"):
        chain.use("a")
    with pytest.raises(ValueError, match="needs at least two values"):
        chain.add_add([v])
    with pytest.raises(ValueError, match=r"an addition needs one shape"):
        chain.add_add([v, (1, (3, 2))])
    with pytest.raises(ValueError, match="must agree on every axis but 1"):
        chain.add_concat([v, (1, (3, 2))], 1)
    with pytest.raises(ValueError, match="'axis' must be an axis of the sample shape"):
        chain.add_concat([v, chain.value], 2)
    assert len(chain) == 1
    chain.add_concat([v, chain.value], 1)
    assert chain.shape == (2, 6)
