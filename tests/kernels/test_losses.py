"""Loss kernels against few-line NumPy references, central finite differences and extremes.

Each kernel returns the mean loss and writes the gradient of that mean into ``grad``.
References are computed in float64 from the same inputs; float32 results are compared with the
float32 tolerance of ``helpers.tol``.
"""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from scipy.special import expit, log_softmax, softmax

from dlrun.kernels import losses as K
from helpers import DTYPES, assert_grad_close, numeric_grad, tol

# (n, k): batch 1, odd sizes, the MNIST head, and one of ~4.9 MB in float64 (> the 1-2 MB L2)
XENT_SHAPES = [(1, 10), (1, 1), (7, 3), (128, 10), (33, 17), (2048, 300)]
ELEM_SHAPES = [(1,), (1, 1), (7,), (13, 5), (128, 1), (3, 5, 7), (700_001,)]


# ---------------------------------------------------------------- NumPy references (float64)

def xent_ref(z, t, ls=0.0):
    """t: labels (n,) or probabilities (n, k). Returns (mean loss, grad of the mean)."""
    z = np.asarray(z, np.float64)
    n, k = z.shape
    if t.ndim == 1:
        t = np.eye(k)[t]
    t = (1 - ls) * np.asarray(t, np.float64) + ls / k
    loss = -(t * log_softmax(z, axis=1)).sum(axis=1)
    grad = (t.sum(axis=1, keepdims=True) * softmax(z, axis=1) - t) / n
    return loss.mean(), grad


def bce_ref(z, t):
    z, t = np.asarray(z, np.float64), np.asarray(t, np.float64)
    return (np.logaddexp(0.0, z) - z * t).mean(), (expit(z) - t) / z.size


def mse_ref(p, t):
    r = np.asarray(p, np.float64) - t
    return (r * r).mean(), 2 * r / r.size


def mae_ref(p, t):
    r = np.asarray(p, np.float64) - t
    return np.abs(r).mean(), np.sign(r) / r.size


def huber_ref(p, t, delta=1.0):
    r = np.asarray(p, np.float64) - t
    a = np.abs(r)
    loss = np.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta))
    return loss.mean(), np.clip(r, -delta, delta) / r.size


def _check_xent(loss, grad, ref_loss, ref_grad, dtype):
    n = grad.shape[0]
    assert isinstance(loss, float)
    np.testing.assert_allclose(loss, ref_loss, **tol(dtype))
    np.testing.assert_allclose(grad * n, ref_grad * n, **tol(dtype))


def _check_elem(loss, grad, ref_loss, ref_grad, dtype):
    assert isinstance(loss, float)
    np.testing.assert_allclose(loss, ref_loss, **tol(dtype))
    np.testing.assert_allclose(grad * grad.size, ref_grad * grad.size, **tol(dtype))


# ---------------------------------------------------------------- softmax cross-entropy

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", XENT_SHAPES)
@pytest.mark.parametrize("label_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("ls", [0.0, 0.1])
def test_softmax_xent_labels_matches_numpy(dtype, shape, label_dtype, ls):
    rng = np.random.default_rng(1)
    n, k = shape
    z = (3 * rng.standard_normal(shape)).astype(dtype)
    y = rng.integers(0, k, n).astype(label_dtype)
    grad = np.full(shape, np.nan, dtype)
    loss = K.softmax_cross_entropy(z, y, grad, label_smoothing=ls)
    assert grad.dtype == dtype
    _check_xent(loss, grad, *xent_ref(z, y, ls), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", XENT_SHAPES)
@pytest.mark.parametrize("ls", [0.0, 0.2])
def test_softmax_xent_probabilities_matches_numpy(dtype, shape, ls):
    rng = np.random.default_rng(2)
    z = (3 * rng.standard_normal(shape)).astype(dtype)
    t = softmax(rng.standard_normal(shape), axis=1).astype(dtype)
    grad = np.empty(shape, dtype)
    loss = K.softmax_cross_entropy(z, t, grad, ls)
    _check_xent(loss, grad, *xent_ref(z, t, ls), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_xent_one_hot_equals_labels(dtype):
    rng = np.random.default_rng(3)
    z = rng.standard_normal((9, 4)).astype(dtype)
    y = rng.integers(0, 4, 9)
    g1, g2 = np.empty_like(z), np.empty_like(z)
    l1 = K.softmax_cross_entropy(z, y, g1, 0.1)
    l2 = K.softmax_cross_entropy(z, np.eye(4, dtype=dtype)[y], g2, 0.1)
    np.testing.assert_allclose(l1, l2, **tol(dtype))
    np.testing.assert_allclose(g1 * 9, g2 * 9, **tol(dtype))


def test_softmax_xent_textbook_uniform_logits():
    # equal logits: softmax is uniform, the loss is log(k) whatever the label
    z = np.zeros((3, 5))
    grad = np.empty_like(z)
    loss = K.softmax_cross_entropy(z, np.array([0, 2, 4]), grad)
    assert loss == pytest.approx(np.log(5), rel=1e-15)
    expected = np.full((3, 5), 0.2 / 3)
    expected[[0, 1, 2], [0, 2, 4]] -= 1 / 3
    np.testing.assert_allclose(grad, expected, rtol=1e-14, atol=1e-16)


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_xent_in_place_grad(dtype):
    rng = np.random.default_rng(4)
    z = rng.standard_normal((6, 5)).astype(dtype)
    y = rng.integers(0, 5, 6)
    t = softmax(rng.standard_normal((6, 5)), axis=1).astype(dtype)
    for target in (y, t):
        ref_grad = np.empty_like(z)
        ref_loss = K.softmax_cross_entropy(z, target, ref_grad, 0.1)
        zz = z.copy()
        loss = K.softmax_cross_entropy(zz, target, zz, 0.1)   # grad written over the logits
        assert loss == ref_loss
        np.testing.assert_array_equal(zz, ref_grad)


@pytest.mark.parametrize("target_kind", ["labels", "probs"])
@pytest.mark.parametrize("ls", [0.0, 0.15])
@pytest.mark.parametrize("shape", [(1, 4), (5, 3), (4, 7)])
def test_softmax_xent_gradient_finite_differences(target_kind, ls, shape):
    rng = np.random.default_rng(5)
    n, k = shape
    z = 2 * rng.standard_normal(shape)
    if target_kind == "labels":
        t = rng.integers(0, k, n)
    else:
        t = softmax(rng.standard_normal(shape), axis=1)
    grad, scratch = np.empty_like(z), np.empty_like(z)
    K.softmax_cross_entropy(z, t, grad, ls)
    num = numeric_grad(lambda: K.softmax_cross_entropy(z, t, scratch, ls), z)
    assert_grad_close(grad, num, tol=1e-8, what=f"softmax_cross_entropy {target_kind} ls={ls}")


def test_softmax_xent_gradient_unnormalised_targets():
    # rows of t not summing to 1: the gradient written is still the exact one of the loss
    rng = np.random.default_rng(6)
    z = rng.standard_normal((3, 4))
    t = rng.uniform(0, 1, (3, 4))
    grad, scratch = np.empty_like(z), np.empty_like(z)
    loss = K.softmax_cross_entropy(z, t, grad)
    _check_xent(loss, grad, *xent_ref(z, t), np.float64)
    num = numeric_grad(lambda: K.softmax_cross_entropy(z, t, scratch), z)
    assert_grad_close(grad, num, tol=1e-8, what="softmax_cross_entropy, unnormalised targets")


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_xent_extreme_logits(dtype):
    z = np.array([[1000, -1000, 0], [-1000, 1000, 1000], [1000, 1000, 1000]], dtype)
    y = np.array([0, 0, 2])
    grad = np.empty_like(z)
    loss = K.softmax_cross_entropy(z, y, grad)
    assert np.isfinite(loss) and np.all(np.isfinite(grad))
    # row 0: confident and right (0); row 1: wrong by 2000 - log(1/2)... exactly 2000 + log 2;
    # row 2: uniform, log 3
    assert loss == pytest.approx((0 + 2000 + np.log(2) + np.log(3)) / 3, rel=1e-6)
    expected = np.array([[0, 0, 0], [-1, 0.5, 0.5], [1 / 3, 1 / 3, -2 / 3]]) / 3
    np.testing.assert_allclose(grad, expected, rtol=1e-6, atol=1e-7)
    ls_grad = np.empty_like(z)
    ls_loss = K.softmax_cross_entropy(z, y, ls_grad, label_smoothing=0.1)
    assert np.isfinite(ls_loss) and np.all(np.isfinite(ls_grad))
    _check_xent(ls_loss, ls_grad, *xent_ref(z, y, 0.1), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", [7, 8, 19])
def test_softmax_xent_huge_logit_at_every_position(dtype, k):
    # the row max must be found wherever it sits (unrolled body and tail), or exp overflows
    z = np.full((k, k), -1000.0, dtype)
    np.fill_diagonal(z, 1000.0)
    y = (np.arange(k) + 1) % k                  # every row wrong by 2000
    grad = np.empty_like(z)
    loss = K.softmax_cross_entropy(z, y, grad)
    assert np.isfinite(loss) and np.all(np.isfinite(grad))
    assert loss == pytest.approx(2000.0, rel=1e-6)
    expected = np.eye(k)
    expected[np.arange(k), y] = -1.0
    np.testing.assert_allclose(grad, expected / k, atol=1e-7)


def test_softmax_xent_float32_logits_near_overflow():
    # m - z_y = 6e38 does not fit float32: the loss is formed in double
    z = np.array([[3e38, -3e38]], np.float32)
    for target in (np.array([1]), np.array([[0.0, 1.0]], np.float32)):
        grad = np.empty_like(z)
        loss = K.softmax_cross_entropy(z, target, grad)
        assert loss == pytest.approx(6e38, rel=1e-6)
        np.testing.assert_array_equal(grad, [[1.0, -1.0]])


def test_softmax_xent_minus_inf_logit_off_target():
    # a -inf logit off the target contributes probability 0 and no NaN
    z = np.array([[0.0, -np.inf, 1.0]])
    t = np.array([[0.25, 0.0, 0.75]])
    for target in (np.array([2]), t):
        grad = np.empty_like(z)
        loss = K.softmax_cross_entropy(z, target, grad)
        assert np.isfinite(loss) and np.all(np.isfinite(grad))
        assert grad[0, 1] == 0.0


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 12), k=st.integers(1, 12), scale=st.sampled_from([0.1, 5.0, 300.0]),
       ls=st.floats(0.0, 1.0), seed=st.integers(0, 2**32 - 1), double=st.booleans())
def test_softmax_xent_property(n, k, scale, ls, seed, double):
    dtype = np.float64 if double else np.float32
    rng = np.random.default_rng(seed)
    z = (scale * rng.standard_normal((n, k))).astype(dtype)
    y = rng.integers(0, k, n)
    grad = np.empty_like(z)
    loss = K.softmax_cross_entropy(z, y, grad, ls)
    ref_loss, ref_grad = xent_ref(z, y, ls)
    # the loss is >= 0, rows of the gradient sum to 0 (targets sum to 1), and both match NumPy
    assert loss >= -1e-6 and np.isfinite(loss)
    np.testing.assert_allclose(grad.sum(axis=1), 0, atol=20 * np.finfo(dtype).eps / n)
    np.testing.assert_allclose(loss, ref_loss, rtol=tol(dtype)["rtol"], atol=1e-5 if not double else 1e-12)
    np.testing.assert_allclose(grad * n, ref_grad * n, **tol(dtype))


# ---------------------------------------------------------------- the kernels' own exponential

@pytest.mark.parametrize("dtype", DTYPES)
def test_own_exp_within_one_ulp(dtype):
    # the softmax and sigmoid kernels use a branch-free exp for x <= 0 (so their loops vectorise)
    lo = -87.0 if dtype == np.float32 else -708.0
    rng = np.random.default_rng(12)
    x = -np.concatenate([np.linspace(0, 1, 20001), np.linspace(0, -lo, 200001),
                         rng.exponential(5.0, 50000), [0.0, 1e-30, 5e-8, 0.5 * np.log(2)]]).astype(dtype)
    x = x[x >= lo]
    got = K._exp_nonpos_check(x)
    assert got.dtype == dtype
    ref = np.exp(x.astype(np.float64))
    ulps = np.abs(got - ref) / np.spacing(ref.astype(dtype)).astype(np.float64)
    assert ulps.max() <= 1.5, f"max error {ulps.max():.2f} ulp at x = {x[np.argmax(ulps)]!r}"


@pytest.mark.parametrize("dtype", DTYPES)
def test_own_exp_special_values(dtype):
    x = np.array([0.0, -0.0, -np.inf, np.nan, -1e4, -750.0, -100.0], dtype)
    got = K._exp_nonpos_check(x)
    assert got[0] == 1.0 and got[1] == 1.0 and got[2] == 0.0 and np.isnan(got[3])
    assert got[4] == 0.0 and got[5] == 0.0
    if dtype == np.float32:
        assert got[6] == 0.0          # below float32's normal range: flushed to 0
    else:
        assert got[6] == pytest.approx(np.exp(-100.0), rel=1e-15)


@pytest.mark.parametrize("dtype", DTYPES)
def test_bce_tiny_losses_keep_relative_accuracy(dtype):
    # confident and right: the whole loss is log1p(exp(-|z|)), which must not round to 0
    z = np.array([5.0, 20.0, 60.0, -30.0], dtype)
    t = np.array([1.0, 1.0, 1.0, 0.0], dtype)
    for i in range(z.size):
        g = np.empty(1, dtype)
        loss = K.sigmoid_binary_cross_entropy(z[i:i + 1], t[i:i + 1], g)
        ref = np.log1p(np.exp(-abs(float(z[i]))))
        assert loss == pytest.approx(ref, rel=4 * float(np.finfo(dtype).eps)), (z[i], loss, ref)


# ---------------------------------------------------------------- element-wise losses

ELEMENTWISE = {
    "sigmoid_binary_cross_entropy": (K.sigmoid_binary_cross_entropy, bce_ref),
    "mse": (K.mse, mse_ref),
    "mae": (K.mae, mae_ref),
    "huber": (K.huber, huber_ref),
}


def _inputs(name, shape, dtype, rng):
    if name == "sigmoid_binary_cross_entropy":
        z = 4 * rng.standard_normal(shape)
        t = rng.uniform(0, 1, shape)
        t[: t.size // 2] = np.round(t[: t.size // 2])   # hard labels and soft labels
        return z.astype(dtype), t.astype(dtype)
    p = rng.standard_normal(shape)
    # keep |p - t| away from 0 (MAE kink) and from delta = 1 (Huber kink)
    r = rng.choice([-1, 1], shape) * rng.uniform(0.05, 3, shape)
    r[np.abs(np.abs(r) - 1) < 0.05] = 0.5
    return p.astype(dtype), (p - r).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", ELEM_SHAPES)
@pytest.mark.parametrize("name", list(ELEMENTWISE))
def test_elementwise_loss_matches_numpy(name, shape, dtype):
    kernel, ref = ELEMENTWISE[name]
    x, t = _inputs(name, shape, dtype, np.random.default_rng(7))
    grad = np.full(shape, np.nan, dtype)
    loss = kernel(x, t, grad)
    _check_elem(loss, grad, *ref(x, t), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("delta", [0.3, 1.0, 2.5])
def test_huber_delta_matches_numpy(dtype, delta):
    rng = np.random.default_rng(8)
    p = (2 * rng.standard_normal(1001)).astype(dtype)
    t = (2 * rng.standard_normal(1001)).astype(dtype)
    grad = np.empty_like(p)
    loss = K.huber(p, t, grad, delta=delta)
    _check_elem(loss, grad, *huber_ref(p, t, delta), dtype)


@pytest.mark.parametrize("name", list(ELEMENTWISE))
@pytest.mark.parametrize("shape", [(1,), (5, 1), (3, 4)])
def test_elementwise_gradient_finite_differences(name, shape):
    kernel, _ = ELEMENTWISE[name]
    x, t = _inputs(name, shape, np.float64, np.random.default_rng(9))
    grad, scratch = np.empty_like(x), np.empty_like(x)
    kernel(x, t, grad)
    num = numeric_grad(lambda: kernel(x, t, scratch), x)
    assert_grad_close(grad, num, tol=1e-8, what=name)


@pytest.mark.parametrize("delta", [0.5, 2.0])
def test_huber_gradient_finite_differences_both_regions(delta):
    rng = np.random.default_rng(10)
    r = np.array([-3.1, -1.3, -0.4, 0.2, 0.9, 1.7, 4.0]) * delta
    t = rng.standard_normal(r.size)
    p = t + r
    grad, scratch = np.empty_like(p), np.empty_like(p)
    K.huber(p, t, grad, delta)
    num = numeric_grad(lambda: K.huber(p, t, scratch, delta), p)
    assert_grad_close(grad, num, tol=1e-8, what=f"huber delta={delta}")


def test_elementwise_textbook_values():
    p = np.array([1.0, -2.0, 3.0, 0.5])
    t = np.array([0.0, 0.0, 3.0, 2.5])
    g = np.empty(4)
    assert K.mse(p, t, g) == pytest.approx((1 + 4 + 0 + 4) / 4)
    np.testing.assert_allclose(g, [0.5, -1.0, 0.0, -1.0])
    assert K.mae(p, t, g) == pytest.approx((1 + 2 + 0 + 2) / 4)
    np.testing.assert_allclose(g, [0.25, -0.25, 0.0, -0.25])     # sign(0) = 0
    assert K.huber(p, t, g, delta=1.0) == pytest.approx((0.5 + 1.5 + 0 + 1.5) / 4)
    np.testing.assert_allclose(g, [0.25, -0.25, 0.0, -0.25])
    z = np.array([0.0, 0.0])
    assert K.sigmoid_binary_cross_entropy(z, np.array([1.0, 0.0]), g[:2]) == pytest.approx(np.log(2))
    np.testing.assert_allclose(g[:2], [-0.25, 0.25])


@pytest.mark.parametrize("dtype", DTYPES)
def test_bce_extreme_logits(dtype):
    z = np.array([1e3, -1e3, 1e3, -1e3, 150.0, -150.0], dtype).reshape(-1, 1)
    t = np.array([1, 0, 0, 1, 0, 1], dtype).reshape(-1, 1)
    grad = np.empty_like(z)
    loss = K.sigmoid_binary_cross_entropy(z, t, grad)
    assert np.isfinite(loss) and np.all(np.isfinite(grad))
    assert loss == pytest.approx((0 + 0 + 1000 + 1000 + 150 + 150) / 6, rel=1e-6)
    np.testing.assert_allclose(grad.ravel() * 6, [0, 0, 1, -1, 1, -1], atol=1e-7)


@pytest.mark.parametrize("name", list(ELEMENTWISE))
@pytest.mark.parametrize("dtype", DTYPES)
def test_elementwise_in_place_grad(name, dtype):
    kernel, ref = ELEMENTWISE[name]
    x, t = _inputs(name, (37,), dtype, np.random.default_rng(11))
    ref_grad = np.empty_like(x)
    ref_loss = kernel(x, t, ref_grad)
    loss = kernel(x, t, x)                 # gradient written over the prediction
    assert loss == ref_loss
    np.testing.assert_array_equal(x, ref_grad)


# ---------------------------------------------------------------- bad calls

def _ro(a):
    a = a.copy()
    a.flags.writeable = False
    return a


def _misaligned(shape, dtype):
    buf = np.zeros(int(np.prod(shape)) * np.dtype(dtype).itemsize + 1, np.uint8)
    a = buf[1:].view(dtype).reshape(shape)
    assert not a.flags.aligned
    return a


Z = np.zeros((4, 3))
Y = np.array([0, 1, 2, 1])
G = np.zeros((4, 3))
P = np.zeros((4, 3))

BAD_XENT = [
    # (description, kwargs override, exception, message pattern)
    ("list logits", dict(logits=[[0.0, 1.0]]), TypeError, r"argument 'logits' must be a numpy\.ndarray"),
    ("int logits", dict(logits=np.zeros((4, 3), np.int64)),
     TypeError, r"argument 'logits' has dtype int64; expected float32 or float64"),
    ("float16 logits", dict(logits=np.zeros((4, 3), np.float16)), TypeError, r"argument 'logits' has dtype float16"),
    ("byte-swapped logits", dict(logits=np.zeros((4, 3), ">f8")), TypeError, r"argument 'logits' has dtype >f8 .*native byte order"),
    ("1-D logits", dict(logits=np.zeros(3), grad=np.zeros(3)), ValueError, r"argument 'logits' must be 2-D, got shape \(3,\)"),
    ("3-D logits", dict(logits=np.zeros((4, 3, 1)), grad=np.zeros((4, 3, 1))),
     ValueError, r"argument 'logits' must be 2-D"),
    ("empty batch", dict(logits=np.zeros((0, 3)), target=np.zeros(0, np.int64), grad=np.zeros((0, 3))),
     ValueError, r"argument 'logits' is empty"),
    ("no classes", dict(logits=np.zeros((4, 0)), grad=np.zeros((4, 0))), ValueError, r"argument 'logits' is empty"),
    ("strided logits", dict(logits=np.zeros((4, 6))[:, ::2]),
     ValueError, r"argument 'logits' must be C-contiguous"),
    ("Fortran logits", dict(logits=np.asfortranarray(np.zeros((4, 3)))),
     ValueError, r"argument 'logits' must be C-contiguous"),
    ("misaligned logits", dict(logits=_misaligned((4, 3), np.float64)), ValueError, r"argument 'logits' is not aligned"),
    ("grad dtype", dict(grad=np.zeros((4, 3), np.float32)),
     TypeError, r"argument 'grad' has dtype float32; expected float64 \(the dtype of 'logits'\)"),
    ("grad shape", dict(grad=np.zeros((4, 2))), ValueError, r"argument 'grad' has shape \(4, 2\); expected \(4, 3\)"),
    ("grad read-only", dict(grad=_ro(G)), ValueError, r"output argument 'grad' is read-only"),
    ("grad strided", dict(grad=np.zeros((8, 3))[::2]), ValueError, r"argument 'grad' must be C-contiguous"),
    ("grad None", dict(grad=None), TypeError, r"argument 'grad' must be a numpy\.ndarray"),
    ("float labels", dict(target=np.array([0.0, 1, 2, 1])),
     TypeError, r"argument 'target' has dtype float64; expected int32 or int64 \(1-D targets are integer labels"),
    ("uint8 labels", dict(target=Y.astype(np.uint8)), TypeError, r"argument 'target' has dtype uint8; expected int32 or int64"),
    ("byte-swapped labels", dict(target=Y.astype(">i8")), TypeError, r"argument 'target' has dtype >i8; expected int32 or int64"),
    ("misaligned labels", dict(target=np.zeros(33, np.uint8)[1:].view(np.int64)), ValueError,
     r"argument 'target' is not aligned"),
    ("label too big", dict(target=np.array([0, 1, 3, 1])),
     ValueError, r"argument 'target' holds label 3 at index 2; expected labels in \[0, 3\)"),
    ("negative label", dict(target=np.array([0, -1, 2, 1], np.int32)),
     ValueError, r"argument 'target' holds label -1 at index 1"),
    ("huge label", dict(target=np.array([0, 1, 2**40, 1])),
     ValueError, r"argument 'target' holds label 1099511627776 at index 2"),
    ("label count", dict(target=np.array([0, 1, 2])), ValueError, r"argument 'target' has shape \(3,\); expected \(4,\) \(one label per row"),
    ("strided labels", dict(target=np.array([0, 0, 1, 0, 2, 0, 1, 0])[::2]),
     ValueError, r"argument 'target' must be C-contiguous"),
    ("probs shape", dict(target=np.zeros((4, 2))), ValueError, r"argument 'target' has shape \(4, 2\); expected \(4, 3\)"),
    ("probs dtype", dict(target=np.zeros((4, 3), np.float32)), TypeError, r"argument 'target' has dtype float32; expected float64"),
    ("3-D target", dict(target=np.zeros((4, 3, 1))),
     ValueError, r"argument 'target' has shape \(4, 3, 1\); expected labels \(n,\) or probabilities"),
    ("list target", dict(target=[0, 1, 2, 1]), TypeError, r"argument 'target' must be a numpy\.ndarray"),
    ("ls negative", dict(label_smoothing=-0.1),
     ValueError, r"argument 'label_smoothing' must be in \[0, 1\], got -0\.1"),
    ("ls > 1", dict(label_smoothing=1.5), ValueError, r"argument 'label_smoothing' must be in \[0, 1\]"),
    ("ls NaN", dict(label_smoothing=float("nan")), ValueError, r"argument 'label_smoothing' .*nan"),
    ("ls string", dict(label_smoothing="0.1"),
     TypeError, r"argument 'label_smoothing' must be a real number, got str '0\.1'"),
    ("ls bool", dict(label_smoothing=True), TypeError, r"argument 'label_smoothing' must be a real number, got bool True"),
]


@pytest.mark.parametrize("desc,override,exc,pattern", BAD_XENT, ids=[b[0] for b in BAD_XENT])
def test_softmax_xent_bad_calls(desc, override, exc, pattern):
    args = dict(logits=Z.copy(), target=Y.copy(), grad=G.copy(), label_smoothing=0.0)
    args.update(override)
    with pytest.raises(exc, match=r"softmax_cross_entropy: " + pattern):
        K.softmax_cross_entropy(**args)


def test_softmax_xent_grad_overlapping_target_rejected():
    t = np.full((4, 3), 1 / 3)
    with pytest.raises(ValueError, match=r"output 'grad' overlaps input 'target'"):
        K.softmax_cross_entropy(Z.copy(), t, t)


def test_grad_partly_overlapping_an_input_rejected():
    buf = np.zeros(13)
    with pytest.raises(ValueError, match=r"softmax_cross_entropy: output 'grad' overlaps input 'logits'; it may be the very same array"):
        K.softmax_cross_entropy(buf[:12].reshape(4, 3), Y, buf[1:].reshape(4, 3))
    for name, (kernel, _) in ELEMENTWISE.items():
        first = "logits" if name.startswith("sigmoid") else "pred"
        with pytest.raises(ValueError, match=rf"{name}: output 'grad' overlaps input '{first}'; it may be the very same array"):
            kernel(buf[:12], np.zeros(12), buf[1:])
        with pytest.raises(ValueError, match=rf"{name}: output 'grad' overlaps input 'target'; it may be the very same array"):
            kernel(np.zeros(12), buf[1:], buf[:12])


@pytest.mark.parametrize("name", list(ELEMENTWISE))
def test_elementwise_grad_over_target(name):
    kernel, ref = ELEMENTWISE[name]
    x, t = _inputs(name, (9,), np.float64, np.random.default_rng(13))
    ref_grad = np.empty_like(x)
    ref_loss = kernel(x, t, ref_grad)
    loss = kernel(x, t, t)                 # gradient written over the target
    assert loss == ref_loss
    np.testing.assert_array_equal(t, ref_grad)


def test_read_only_inputs_are_accepted():
    # only grad is written: read-only logits, labels, probabilities and targets are fine
    z, y, t = _ro(Z + 0.5), _ro(Y), _ro(np.full((4, 3), 1 / 3))
    assert np.isfinite(K.softmax_cross_entropy(z, y, G.copy()))
    assert np.isfinite(K.softmax_cross_entropy(z, t, G.copy()))
    for kernel, _ in ELEMENTWISE.values():
        assert np.isfinite(kernel(z, _ro(P), P.copy()))


def test_bad_label_leaves_grad_untouched():
    grad = np.full((4, 3), 7.0)
    with pytest.raises(ValueError):
        K.softmax_cross_entropy(Z, np.array([0, 1, 5, 1]), grad)
    assert np.all(grad == 7.0)


@pytest.mark.parametrize("name", list(ELEMENTWISE))
@pytest.mark.parametrize(
    "which,value,exc,pattern",
    [
        ("x", [[0.0]], TypeError, r"argument '(pred|logits)' must be a numpy\.ndarray"),
        ("x", np.zeros((4, 3), np.int32), TypeError, r"argument '(pred|logits)' has dtype int32; expected float32 or float64"),
        ("x", np.zeros((4, 6))[:, ::2], ValueError, r"argument '(pred|logits)' must be C-contiguous"),
        ("x", np.zeros((0, 3)), ValueError, r"argument '(pred|logits)' is empty"),
        ("target", np.zeros((4, 2)),
         ValueError, r"argument 'target' has shape \(4, 2\); expected \(4, 3\) \(the shape of '(pred|logits)'\)"),
        ("target", np.zeros(12), ValueError, r"argument 'target' has shape \(12,\); expected \(4, 3\)"),
        ("target", np.zeros((4, 3), np.float32), TypeError, r"argument 'target' has dtype float32; expected float64"),
        ("target", np.zeros((4, 6))[:, ::2], ValueError, r"argument 'target' must be C-contiguous"),
        ("target", None, TypeError, r"argument 'target' must be a numpy\.ndarray"),
        ("grad", np.zeros((3, 4)), ValueError, r"argument 'grad' has shape \(3, 4\); expected \(4, 3\)"),
        ("grad", np.zeros((4, 3), np.float32), TypeError, r"argument 'grad' has dtype float32; expected float64"),
        ("grad", _ro(P), ValueError, r"output argument 'grad' is read-only"),
        ("grad", np.zeros((4, 6))[:, ::2], ValueError, r"argument 'grad' must be C-contiguous"),
        ("grad", _misaligned((4, 3), np.float64), ValueError, r"argument 'grad' is not aligned"),
    ],
)
def test_elementwise_bad_calls(name, which, value, exc, pattern):
    kernel, _ = ELEMENTWISE[name]
    args = {"x": P.copy(), "target": P.copy(), "grad": P.copy()}
    args[which] = value
    with pytest.raises(exc, match=rf"{name}: {pattern}"):
        kernel(args["x"], args["target"], args["grad"])


@pytest.mark.parametrize("delta", [0.0, -1.0, float("nan"), float("inf")])
def test_huber_bad_delta(delta):
    with pytest.raises(ValueError, match=r"huber: argument 'delta' must be a finite number > 0"):
        K.huber(P.copy(), P.copy(), P.copy(), delta=delta)


def test_huber_delta_not_a_number():
    with pytest.raises(TypeError, match=r"huber: argument 'delta' must be a real number, got str 'x'"):
        K.huber(P.copy(), P.copy(), P.copy(), delta="x")


def test_float32_call_rejects_float64_companions():
    z = np.zeros((2, 3), np.float32)
    with pytest.raises(TypeError, match=r"argument 'grad' has dtype float64; expected float32 \(the dtype of 'logits'\)"):
        K.softmax_cross_entropy(z, np.array([0, 1]), np.zeros((2, 3)))
    with pytest.raises(TypeError, match=r"mse: argument 'target' has dtype float64; expected float32 \(the dtype of 'pred'\)"):
        K.mse(z, np.zeros((2, 3)), np.zeros((2, 3), np.float32))


# ---------------------------------------------------------------- class weights
# Each row's (element's) loss and gradient are multiplied by its class's weight and the sum is
# divided by the row (element) count, as Keras' class_weight does (PyTorch's weight= divides by
# the sum of the batch's weights instead).

def weighted_xent_ref(z, t, w, ls=0.0):
    """NumPy: row i weighted by w[y_i] (probability rows: sum_j w_j t_ij), sum / n."""
    z = np.asarray(z, np.float64)
    n, k = z.shape
    onehot = np.eye(k)[t] if t.ndim == 1 else np.asarray(t, np.float64)
    row_w = onehot @ np.asarray(w, np.float64)
    ts = (1 - ls) * onehot + ls / k
    loss = -(ts * log_softmax(z, axis=1)).sum(axis=1)
    grad = (ts.sum(axis=1, keepdims=True) * softmax(z, axis=1) - ts) / n
    return (row_w * loss).sum() / n, row_w[:, None] * grad


def weighted_bce_ref(z, t, w):
    z, t = np.asarray(z, np.float64), np.asarray(t, np.float64)
    we = w[0] * (1 - t) + w[1] * t
    return (we * (np.logaddexp(0.0, z) - z * t)).sum() / z.size, we * (expit(z) - t) / z.size


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", XENT_SHAPES)
@pytest.mark.parametrize("label_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("ls", [0.0, 0.1])
def test_softmax_xent_class_weight_labels_matches_numpy(dtype, shape, label_dtype, ls):
    rng = np.random.default_rng(11)
    n, k = shape
    z = (3 * rng.standard_normal(shape)).astype(dtype)
    y = rng.integers(0, k, n).astype(label_dtype)
    w = rng.uniform(0.0, 3.0, k)
    grad = np.full(shape, np.nan, dtype)
    loss = K.softmax_cross_entropy(z, y, grad, ls, class_weight=w)
    _check_xent(loss, grad, *weighted_xent_ref(z, y, w, ls), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ls", [0.0, 0.2])
def test_softmax_xent_class_weight_probabilities_matches_numpy(dtype, ls):
    rng = np.random.default_rng(12)
    z = (2 * rng.standard_normal((33, 17))).astype(dtype)
    t = softmax(rng.standard_normal((33, 17)), axis=1).astype(dtype)
    w = rng.uniform(0.1, 2.0, 17)
    grad = np.empty_like(z)
    loss = K.softmax_cross_entropy(z, t, grad, ls, class_weight=w)
    _check_xent(loss, grad, *weighted_xent_ref(z, t, w, ls), dtype)
    # a one-hot row weighs as its label
    grad2 = np.empty_like(z)
    y = rng.integers(0, 17, 33)
    assert K.softmax_cross_entropy(z, np.eye(17, dtype=dtype)[y], grad2, class_weight=w) == \
        pytest.approx(K.softmax_cross_entropy(z, y, grad, class_weight=w), rel=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
def test_class_weight_of_ones_is_bit_identical_to_none(dtype):
    # weights of 1 multiply exactly: the weighted path gives the unweighted numbers bit for bit
    # (probability rows weigh sum_j t_ij, which need not round to exactly 1)
    rng = np.random.default_rng(13)
    z = (3 * rng.standard_normal((128, 10))).astype(dtype)
    t = rng.integers(0, 10, 128)
    for ls in (0.0, 0.1):
        g0, g1 = np.empty_like(z), np.empty_like(z)
        a = K.softmax_cross_entropy(z, t, g0, ls)
        b = K.softmax_cross_entropy(z, t, g1, ls, class_weight=np.ones(10))
        assert a == b and np.array_equal(g0, g1)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1), (7, 1), (300, 1), (13, 5)])
def test_bce_class_weight_matches_numpy(dtype, shape):
    rng = np.random.default_rng(14)
    z = (3 * rng.standard_normal(shape)).astype(dtype)
    t = rng.integers(0, 2, shape).astype(dtype)
    t.flat[0] = 0.3  # a soft label weighs in between
    w = np.array([0.4, 2.5])
    grad = np.full(shape, np.nan, dtype)
    loss = K.sigmoid_binary_cross_entropy(z, t, grad, class_weight=w)
    _check_elem(loss, grad, *weighted_bce_ref(z, t, w), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_bce_class_weight_hard_labels_take_their_class_weight_exactly(dtype):
    rng = np.random.default_rng(15)
    z = rng.standard_normal((64, 1)).astype(dtype)
    t = rng.integers(0, 2, (64, 1)).astype(dtype)
    g, gw = np.empty_like(z), np.empty_like(z)
    K.sigmoid_binary_cross_entropy(z, t, g)
    K.sigmoid_binary_cross_entropy(z, t, gw, class_weight=[1.0, 1.0])
    assert np.array_equal(g, gw)
    K.sigmoid_binary_cross_entropy(z, t, gw, class_weight=[0.0, 1.0])
    assert np.array_equal(gw[t == 0], np.zeros_like(gw[t == 0]))


@pytest.mark.parametrize("target_kind", ["labels", "probs"])
@pytest.mark.parametrize("ls", [0.0, 0.15])
def test_softmax_xent_class_weight_finite_differences(target_kind, ls):
    rng = np.random.default_rng(16)
    z = 2 * rng.standard_normal((5, 3))
    t = rng.integers(0, 3, 5) if target_kind == "labels" else softmax(rng.standard_normal((5, 3)), axis=1)
    w = np.array([0.5, 2.0, 1.3])
    grad, scratch = np.empty_like(z), np.empty_like(z)
    K.softmax_cross_entropy(z, t, grad, ls, class_weight=w)
    num = numeric_grad(lambda: K.softmax_cross_entropy(z, t, scratch, ls, class_weight=w), z)
    assert_grad_close(grad, num, tol=1e-8, what=f"weighted softmax_cross_entropy {target_kind}")


def test_bce_class_weight_finite_differences():
    rng = np.random.default_rng(17)
    z = 2 * rng.standard_normal((6, 1))
    t = np.array([[0.0], [1.0], [1.0], [0.0], [0.25], [1.0]])
    grad, scratch = np.empty_like(z), np.empty_like(z)
    K.sigmoid_binary_cross_entropy(z, t, grad, class_weight=[0.3, 1.7])
    num = numeric_grad(lambda: K.sigmoid_binary_cross_entropy(z, t, scratch, class_weight=[0.3, 1.7]), z)
    assert_grad_close(grad, num, tol=1e-8, what="weighted sigmoid_binary_cross_entropy")


@pytest.mark.parametrize("bad, message", [
    ([1.0, 2.0], r"shape \(2,\); expected \(3,\)"),
    ([1.0, -1.0, 1.0], "finite numbers >= 0"),
    ([1.0, np.nan, 1.0], "finite numbers >= 0"),
    ("abc", "must be None or 3 real numbers"),
])
def test_class_weight_bad_arguments(bad, message):
    z = np.zeros((2, 3))
    with pytest.raises((ValueError, TypeError), match=message):
        K.softmax_cross_entropy(z, np.array([0, 1]), np.empty_like(z), class_weight=bad)
    with pytest.raises(ValueError, match=r"expected \(2,\)"):
        K.sigmoid_binary_cross_entropy(np.zeros((2, 1)), np.zeros((2, 1)), np.empty((2, 1)),
                                       class_weight=[1.0])
