"""dense: fused forward against NumPy, backward against NumPy and finite differences."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from dlrun.kernels.activations import activation_backward
from dlrun.kernels.dense import dense_backward, dense_forward
from helpers import DTYPES, assert_grad_close, numeric_grad, tol

SHAPES = [(1, 1, 1), (1, 784, 512), (5, 7, 3), (33, 17, 65), (128, 256, 10), (64, 1024, 1024)]


def _ref_act(name, z):
    if name == "linear":
        return z
    if name == "relu":
        return np.maximum(z, 0)
    if name == "tanh":
        return np.tanh(z)
    if name == "sigmoid":
        return 1 / (1 + np.exp(-z))
    if name == "softmax":
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    raise AssertionError(name)


def _problem(n, d_in, d_out, dtype, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d_in)).astype(dtype)
    w = (rng.standard_normal((d_in, d_out)) / np.sqrt(d_in)).astype(dtype)
    b = rng.standard_normal(d_out).astype(dtype)
    return x, w, b


def _tol(dtype, k):
    # float32 GEMM error grows with the inner dimension k
    t = tol(dtype)
    return {"rtol": t["rtol"] * 10, "atol": t["atol"] * 10 * np.sqrt(max(k, 1))}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,d_in,d_out", SHAPES)
@pytest.mark.parametrize("activation", ["linear", "relu", "tanh", "sigmoid", "softmax"])
def test_forward_matches_numpy(dtype, n, d_in, d_out, activation):
    x, w, b = _problem(n, d_in, d_out, dtype, seed=n + d_in)
    y = np.full((n, d_out), np.nan, dtype)
    dense_forward(x, w, b, y, activation)
    z = x.astype(np.float64) @ w + b
    np.testing.assert_allclose(y, _ref_act(activation, z), **_tol(dtype, d_in))


@pytest.mark.parametrize("dtype", DTYPES)
def test_forward_without_bias(dtype):
    x, w, _ = _problem(9, 20, 6, dtype)
    y = np.empty((9, 6), dtype)
    dense_forward(x, w, None, y, "relu")
    np.testing.assert_allclose(y, np.maximum(x.astype(np.float64) @ w, 0), **_tol(dtype, 20))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,d_in,d_out", SHAPES)
def test_backward_matches_numpy(dtype, n, d_in, d_out):
    x, w, _ = _problem(n, d_in, d_out, dtype, seed=3)
    dz = np.random.default_rng(9).standard_normal((n, d_out)).astype(dtype)
    dx = np.full((n, d_in), np.nan, dtype)
    dw = np.full((d_in, d_out), np.nan, dtype)
    db = np.full(d_out, np.nan, dtype)
    dense_backward(x, w, dz, dx, dw, db)
    x64, w64, dz64 = (a.astype(np.float64) for a in (x, w, dz))
    np.testing.assert_allclose(dx, dz64 @ w64.T, **_tol(dtype, d_out))
    np.testing.assert_allclose(dw, x64.T @ dz64, **_tol(dtype, n))
    np.testing.assert_allclose(db, dz64.sum(axis=0), **_tol(dtype, n))


@pytest.mark.parametrize("dtype", DTYPES)
def test_backward_accumulates_and_skips(dtype):
    x, w, _ = _problem(6, 5, 4, dtype)
    dz = np.random.default_rng(1).standard_normal((6, 4)).astype(dtype)
    dw = np.ones((5, 4), dtype)
    db = np.ones(4, dtype)
    dense_backward(x, w, dz, None, dw, db, accumulate=True)
    np.testing.assert_allclose(dw, 1 + x.astype(np.float64).T @ dz, **_tol(dtype, 6))
    np.testing.assert_allclose(db, 1 + dz.astype(np.float64).sum(axis=0), **_tol(dtype, 6))
    dw2 = np.full((5, 4), np.nan, dtype)
    dense_backward(x, w, dz, None, dw2, None)           # db skipped, dw overwritten
    np.testing.assert_allclose(dw2, x.astype(np.float64).T @ dz, **_tol(dtype, 6))


@pytest.mark.parametrize("activation", ["linear", "relu", "tanh", "sigmoid", "softmax"])
def test_gradients_finite_differences(activation):
    # keep every pre-activation at least 0.05 away from relu's kink, and every row and column
    # with an active unit (an exactly-zero gradient compares badly with finite-difference noise)
    seed = 0
    while True:
        x, w, b = _problem(3, 5, 4, np.float64, seed=seed)
        z = x @ w + b
        if (np.abs(z).min() > 0.05 and (z > 0).any(axis=0).all()
                and (z > 0).any(axis=1).all()):
            break
        seed += 1
    r = np.random.default_rng(2).standard_normal((3, 4))
    y = np.empty((3, 4))

    def loss():
        dense_forward(x, w, b, y, activation)
        return float((y * r).sum())

    loss()
    dz = np.empty_like(y)
    activation_backward(activation, y, r, dz)
    dx, dw, db = np.empty_like(x), np.empty_like(w), np.empty_like(b)
    dense_backward(x, w, dz, dx, dw, db)
    for name, param, grad in (("x", x, dx), ("w", w, dw), ("b", b, db)):
        assert_grad_close(grad, numeric_grad(loss, param), tol=1e-7,
                          what=f"dense {activation} d{name}")


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 20), d_in=st.integers(1, 20), d_out=st.integers(1, 20),
       f32=st.booleans())
def test_random_shapes(n, d_in, d_out, f32):
    dtype = np.float32 if f32 else np.float64
    x, w, b = _problem(n, d_in, d_out, dtype, seed=n * 400 + d_in * 20 + d_out)
    y = np.empty((n, d_out), dtype)
    dense_forward(x, w, b, y, "tanh")
    np.testing.assert_allclose(y, np.tanh(x.astype(np.float64) @ w + b), **_tol(dtype, d_in))
