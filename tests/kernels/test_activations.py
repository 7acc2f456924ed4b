"""activations: forward against NumPy references, backward against analytic derivatives and
central finite differences, saturation at extreme inputs."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from dlrun.kernels.activations import ACTIVATIONS, activation_backward, activation_forward
from helpers import DTYPES, assert_grad_close, max_rel_error, numeric_grad, tol

ALPHA = {"leaky_relu": 0.1, "elu": 1.3}
GELU_C = np.sqrt(2 / np.pi)


def _sigmoid(x):
    return np.exp(-np.logaddexp(0, -x))


def reference(name, x, alpha):
    """f(x) in float64 with NumPy."""
    x = x.astype(np.float64)
    if name == "linear":
        return x
    if name == "relu":
        return np.maximum(x, 0)
    if name == "leaky_relu":
        return np.where(x > 0, x, alpha * x)
    if name == "elu":
        return np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0)))
    if name == "sigmoid":
        return _sigmoid(x)
    if name == "tanh":
        return np.tanh(x)
    if name == "softplus":
        return np.logaddexp(0, x)
    if name == "gelu":
        return 0.5 * x * (1 + np.tanh(GELU_C * (x + 0.044715 * x ** 3)))
    if name == "swish":
        return x * _sigmoid(x)
    if name == "softmax":
        e = np.exp(x - x.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)
    raise AssertionError(name)


def reference_grad(name, x, dy, alpha):
    """dy * f'(x) in float64, written independently of the kernel's formulas."""
    x, dy = x.astype(np.float64), dy.astype(np.float64)
    if name == "linear":
        return dy
    if name == "relu":
        return dy * (x > 0)
    if name == "leaky_relu":
        return dy * np.where(x > 0, 1, alpha)
    if name == "elu":
        return dy * np.where(x > 0, 1, alpha * np.exp(np.minimum(x, 0)))
    if name == "sigmoid":
        s = _sigmoid(x)
        return dy * s * (1 - s)
    if name == "tanh":
        return dy / np.cosh(x) ** 2
    if name == "softplus":
        return dy * _sigmoid(x)
    if name == "gelu":
        u = GELU_C * (x + 0.044715 * x ** 3)
        du = GELU_C * (1 + 3 * 0.044715 * x ** 2)
        return dy * (0.5 * (1 + np.tanh(u)) + 0.5 * x * du / np.cosh(u) ** 2)
    if name == "swish":
        s = _sigmoid(x)
        return dy * (s + x * s * (1 - s))
    if name == "softmax":
        y = reference(name, x, alpha)
        return y * (dy - (dy * y).sum(axis=-1, keepdims=True))
    raise AssertionError(name)


def _inputs(shape, dtype, seed, scale=3.0):
    """Random inputs kept at least 0.05 away from 0 (the kink of relu, leaky_relu and elu)."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-scale, scale, shape)
    x = np.where(np.abs(x) < 0.05, 0.05 + np.abs(x), x)
    return x.astype(dtype)


def _run_backward(name, x, dy, alpha, dx=None):
    y = np.empty_like(x)
    activation_forward(name, x, y, alpha)
    dx = np.empty_like(x) if dx is None else dx
    activation_backward(name, y, dy, dx, alpha, x=x)
    return dx


SHAPES = [(1, 1), (1, 10), (7, 13), (128, 512), (1024, 1024)]


def test_names_listed():
    assert ACTIVATIONS == ("linear", "relu", "leaky_relu", "elu", "sigmoid", "tanh",
                           "softplus", "gelu", "swish", "softmax")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ACTIVATIONS)
@pytest.mark.parametrize("shape", SHAPES)
def test_forward_matches_numpy(dtype, name, shape):
    alpha = ALPHA.get(name, 0.0)
    x = _inputs(shape, dtype, seed=sum(shape))
    y = np.full_like(x, np.nan)
    activation_forward(name, x, y, alpha)
    np.testing.assert_allclose(y, reference(name, x, alpha), **tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ACTIVATIONS)
def test_forward_in_place(dtype, name):
    alpha = ALPHA.get(name, 0.0)
    x = _inputs((9, 31), dtype, seed=3)
    expected = reference(name, x, alpha)
    activation_forward(name, x, x, alpha)
    np.testing.assert_allclose(x, expected, **tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ACTIVATIONS)
@pytest.mark.parametrize("shape", [(1, 1), (7, 13), (300, 257)])
def test_backward_matches_analytic(dtype, name, shape):
    alpha = ALPHA.get(name, 0.0)
    x = _inputs(shape, dtype, seed=11 + sum(shape))
    dy = np.random.default_rng(5).standard_normal(shape).astype(dtype)
    dx = _run_backward(name, x, dy, alpha)
    rtol, atol = tol(dtype)["rtol"], tol(dtype)["atol"]
    # float32: f' computed from the rounded output y carries a few ulp of y's error
    if dtype == np.float32:
        rtol, atol = rtol * 10, atol * 10
    np.testing.assert_allclose(dx, reference_grad(name, x, dy, alpha), rtol=rtol, atol=atol)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ACTIVATIONS)
def test_backward_in_place_on_dy(dtype, name):
    alpha = ALPHA.get(name, 0.0)
    x = _inputs((6, 11), dtype, seed=8)
    dy = np.random.default_rng(2).standard_normal(x.shape).astype(dtype)
    expected = _run_backward(name, x, dy.copy(), alpha)
    _run_backward(name, x, dy, alpha, dx=dy)
    np.testing.assert_array_equal(dy, expected)


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_backward_finite_differences(name):
    alpha = ALPHA.get(name, 0.0)
    x = _inputs((4, 6), np.float64, seed=21)
    r = np.random.default_rng(4).standard_normal(x.shape)
    y = np.empty_like(x)

    def loss():
        activation_forward(name, x, y, alpha)
        return float((y * r).sum())

    numeric = numeric_grad(loss, x, h=1e-4)
    analytic = _run_backward(name, x, r, alpha)
    assert_grad_close(analytic, numeric, tol=1e-7, what=f"{name} dx")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["sigmoid", "tanh", "softplus", "gelu", "swish", "elu",
                                  "softmax", "leaky_relu", "relu"])
def test_extremes_saturate_without_nan(dtype, name):
    alpha = ALPHA.get(name, 0.0)
    x = np.array([[-1e4, -1000.0, -100.0, -30.0, 0.0, 30.0, 100.0, 1000.0, 1e4]], dtype)
    y = np.empty_like(x)
    with np.errstate(over="ignore", under="ignore"):
        ref = reference(name, x, alpha)
    activation_forward(name, x, y, alpha)
    assert np.all(np.isfinite(y)), f"{name} forward gave {y}"
    np.testing.assert_allclose(y, ref, **tol(dtype))
    if name == "sigmoid":
        assert y[0, 0] <= 1e-30 and y[0, -1] == 1
    if name == "tanh":
        assert y[0, 0] == -1 and y[0, -1] == 1
    dx = np.empty_like(x)
    activation_backward(name, y, np.ones_like(x), dx, alpha, x=x)
    assert np.all(np.isfinite(dx)), f"{name} backward gave {dx}"


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_rows_sum_to_one_for_huge_logits(dtype):
    x = np.array([[1000.0, -1000.0, 999.0], [-1e4, -1e4, -1e4], [0, 0, 0]], dtype)
    y = np.empty_like(x)
    activation_forward("softmax", x, y)
    assert np.all(np.isfinite(y))
    np.testing.assert_allclose(y.sum(axis=1), 1, **tol(dtype))
    np.testing.assert_allclose(y, reference("softmax", x, 0), **tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_any_ndim_elementwise_and_softmax_over_last_axis(dtype):
    x = _inputs((2, 3, 5), dtype, seed=1)
    for name in ("tanh", "softmax"):
        y = np.empty_like(x)
        activation_forward(name, x, y)
        np.testing.assert_allclose(y, reference(name, x, 0), **tol(dtype))


def test_max_rel_error_is_reported_in_message():
    # the gradient checks report the max relative error; make sure the helper fails loudly
    with pytest.raises(AssertionError, match="max relative error"):
        assert_grad_close(np.array([1.0]), np.array([1.1]), tol=1e-6)
    assert max_rel_error(np.array([2.0]), np.array([2.0])) == 0.0


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 30), d=st.integers(1, 70), name=st.sampled_from(ACTIVATIONS),
       f32=st.booleans(), seed=st.integers(0, 2 ** 16))
def test_forward_random_shapes(n, d, name, f32, seed):
    dtype = np.float32 if f32 else np.float64
    alpha = ALPHA.get(name, 0.0)
    x = _inputs((n, d), dtype, seed)
    y = np.empty_like(x)
    activation_forward(name, x, y, alpha)
    np.testing.assert_allclose(y, reference(name, x, alpha), **tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ACTIVATIONS)
@pytest.mark.parametrize("shape", [(1, 1), (5, 9), (128, 512)])
def test_forward_with_bias(dtype, name, shape):
    # the fused y := f(x + bias) used after a GEMM
    alpha = ALPHA.get(name, 0.0)
    x = _inputs(shape, dtype, seed=31)
    bias = np.random.default_rng(6).uniform(-1, 1, shape[1]).astype(dtype)
    y = np.empty_like(x)
    activation_forward(name, x, y, alpha, bias=bias)
    # the reference adds the bias in the data type, as the kernel does
    np.testing.assert_allclose(y, reference(name, x + bias, alpha), **tol(dtype))
    activation_forward(name, x, x, alpha, bias=bias)      # in place
    np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ACTIVATIONS)
@pytest.mark.parametrize("bias", [False, True])
def test_nan_propagates_forward_and_backward(dtype, name, bias):
    # A NaN input gives a NaN output and a NaN gradient, never a quiet 0 (relu was
    # "v if v > 0 else 0", which sends NaN to 0, so a float32 model fed 1e39 predicted 0).
    # Width 40 runs both the vector body and the tail of each loop.
    alpha = ALPHA.get(name, 0.0)
    x = _inputs((3, 40), dtype, seed=5)
    nan_at = [(0, 0), (1, 17), (2, 39)]
    for i, j in nan_at:
        x[i, j] = np.nan
    b = np.random.default_rng(2).uniform(-1, 1, 40).astype(dtype) if bias else None
    y = np.empty_like(x)
    activation_forward(name, x, y, alpha, bias=b)
    for i, j in nan_at:
        if name == "softmax":
            assert np.isnan(y[i]).all(), f"softmax row {i} with a NaN gave {y[i]}"
        else:
            assert np.isnan(y[i, j]), f"{name}(NaN) gave {y[i, j]}"
    finite = np.isfinite(x)
    if name != "softmax":
        xin = x + b if bias else x
        with np.errstate(invalid="ignore"):
            ref = reference(name, xin, alpha)
        np.testing.assert_allclose(y[finite], ref[finite], **tol(dtype))
    dx = np.empty_like(x)
    xin = (x + b).astype(dtype) if bias else x
    activation_backward(name, y, np.ones_like(x), dx, alpha, x=xin)
    if name == "linear":
        return  # f' = 1 whatever x is: dx = dy
    for i, j in nan_at:
        assert np.isnan(dx[i, j]), f"{name}'(NaN) gave {dx[i, j]}"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["relu", "leaky_relu"])
def test_relu_family_at_zero_and_below(dtype, name):
    # the NaN-keeping forms still send -0.0 and negatives where they belong
    alpha = ALPHA.get(name, 0.0)
    x = np.array([[-0.0, 0.0, -2.0, 3.0, -np.inf, np.inf]], dtype)
    y = np.empty_like(x)
    activation_forward(name, x, y, alpha)
    want = [0.0, 0.0, -2.0 * alpha, 3.0, -np.inf if alpha else 0.0, np.inf]
    np.testing.assert_array_equal(y[0], np.array(want, dtype))
    dx = np.empty_like(x)
    activation_backward(name, y, np.full_like(x, 2.0), dx, alpha)
    np.testing.assert_array_equal(dx[0], np.array([2 * alpha, 2 * alpha, 2 * alpha, 2, 2 * alpha, 2], dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_gelu_is_the_tanh_form(dtype):
    # gelu is the tanh approximation x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), PyTorch's
    # gelu(approximate='tanh'), as docs/language.md says; the exact x Phi(x) differs by up to ~5e-4
    from math import erf, sqrt
    x = np.linspace(-6, 6, 2401).astype(dtype)
    y = np.empty_like(x)
    activation_forward("gelu", x, y)
    xd = x.astype(np.float64)
    tanh_form = 0.5 * xd * (1 + np.tanh(sqrt(2 / np.pi) * (xd + 0.044715 * xd ** 3)))
    exact = np.array([v * 0.5 * (1 + erf(v / sqrt(2))) for v in xd])
    np.testing.assert_allclose(y, tanh_form, **tol(dtype))
    assert 4e-4 < np.abs(tanh_form - exact).max() < 5e-4
