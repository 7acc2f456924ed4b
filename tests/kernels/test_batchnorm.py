"""batchnorm: training/eval forward against NumPy, backward against NumPy and finite
differences, constant columns without NaN, running statistics."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from dlrun.kernels.batchnorm import (batchnorm_backward, batchnorm_forward_eval,
                                     batchnorm_forward_train)
from helpers import DTYPES, assert_grad_close, numeric_grad, tol

SHAPES = [(1, 1), (1, 9), (2, 3), (7, 13), (128, 512), (1024, 1024)]


def _params(d, dtype, seed=0):
    rng = np.random.default_rng(seed)
    gamma = rng.uniform(0.5, 2.0, d).astype(dtype)
    beta = rng.standard_normal(d).astype(dtype)
    rmean = rng.standard_normal(d).astype(dtype)
    rvar = rng.uniform(0.5, 2.0, d).astype(dtype)
    return gamma, beta, rmean, rvar


def _train(x, gamma, beta, rmean, rvar, momentum=0.9, eps=1e-5):
    n, d = x.shape
    y, xhat = np.full_like(x, np.nan), np.full_like(x, np.nan)
    inv_std = np.full(d, np.nan, x.dtype)
    batchnorm_forward_train(x, gamma, beta, rmean, rvar, momentum, eps, y, xhat, inv_std)
    return y, xhat, inv_std


def _tol(dtype):
    t = tol(dtype)
    return {"rtol": t["rtol"] * 10, "atol": t["atol"] * 10}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_forward_train_matches_numpy(dtype, shape):
    n, d = shape
    rng = np.random.default_rng(n + d)
    x = (rng.standard_normal(shape) * 3 + 5).astype(dtype)
    gamma, beta, rmean, rvar = _params(d, dtype)
    rmean0, rvar0 = rmean.astype(np.float64), rvar.astype(np.float64)
    y, xhat, inv_std = _train(x, gamma, beta, rmean, rvar, momentum=0.9, eps=1e-3)
    x64 = x.astype(np.float64)
    mu, var = x64.mean(axis=0), x64.var(axis=0)
    ref_inv = 1 / np.sqrt(var + 1e-3)
    ref_xhat = (x64 - mu) * ref_inv
    np.testing.assert_allclose(inv_std, ref_inv, **_tol(dtype))
    np.testing.assert_allclose(xhat, ref_xhat, **_tol(dtype))
    np.testing.assert_allclose(y, gamma * ref_xhat + beta, **_tol(dtype))
    unbiased = var * n / (n - 1) if n > 1 else var
    np.testing.assert_allclose(rmean, 0.9 * rmean0 + 0.1 * mu, **_tol(dtype))
    np.testing.assert_allclose(rvar, 0.9 * rvar0 + 0.1 * unbiased, **_tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_forward_train_large_offset_keeps_precision(dtype):
    # a one-pass E[x^2] - E[x]^2 would lose all digits here; the shifted sums do not
    rng = np.random.default_rng(3)
    x = (1e4 + rng.standard_normal((300, 5))).astype(dtype)
    gamma, beta, rmean, rvar = _params(5, dtype)
    _, xhat, inv_std = _train(x, gamma, beta, rmean, rvar)
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(inv_std, 1 / np.sqrt(x64.var(axis=0) + 1e-5), rtol=1e-4)
    np.testing.assert_allclose(xhat.std(axis=0), 1, rtol=1e-3)


@pytest.mark.parametrize("dtype", DTYPES)
def test_constant_column_gives_beta_not_nan(dtype):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((16, 4)).astype(dtype)
    x[:, 2] = 7.25
    gamma, beta, rmean, rvar = _params(4, dtype)
    y, xhat, inv_std = _train(x, gamma, beta, rmean, rvar)
    assert np.all(np.isfinite(y)) and np.all(np.isfinite(xhat)) and np.all(np.isfinite(inv_std))
    np.testing.assert_array_equal(xhat[:, 2], 0)
    np.testing.assert_allclose(y[:, 2], beta[2], **tol(dtype))
    dx, dgamma, dbeta = np.empty_like(x), np.empty(4, dtype), np.empty(4, dtype)
    dy = rng.standard_normal(x.shape).astype(dtype)
    batchnorm_backward(dy, xhat, gamma, inv_std, dx, dgamma, dbeta)
    assert np.all(np.isfinite(dx))
    np.testing.assert_allclose(dx[:, 2], gamma[2] * inv_std[2] * (dy[:, 2] - dy[:, 2].mean()),
                               **_tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 4), (7, 13), (1024, 1024)])
def test_forward_eval_matches_numpy(dtype, shape):
    x = np.random.default_rng(1).standard_normal(shape).astype(dtype)
    gamma, beta, rmean, rvar = _params(shape[1], dtype)
    y = np.full_like(x, np.nan)
    batchnorm_forward_eval(x, gamma, beta, rmean, rvar, 1e-5, y)
    ref = gamma.astype(np.float64) * (x - rmean.astype(np.float64)) / np.sqrt(rvar + 1e-5) + beta
    np.testing.assert_allclose(y, ref, **_tol(dtype))
    batchnorm_forward_eval(x, gamma, beta, rmean, rvar, 1e-5, x)      # in place
    np.testing.assert_array_equal(x, y)


def _ref_backward(dy, xhat, gamma, inv_std):
    dy, xhat = dy.astype(np.float64), xhat.astype(np.float64)
    n = dy.shape[0]
    dbeta = dy.sum(axis=0)
    dgamma = (dy * xhat).sum(axis=0)
    dx = gamma * inv_std / n * (n * dy - dbeta - xhat * dgamma)
    return dx, dgamma, dbeta


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_backward_matches_numpy(dtype, shape):
    rng = np.random.default_rng(7)
    x = rng.standard_normal(shape).astype(dtype)
    gamma, beta, rmean, rvar = _params(shape[1], dtype)
    _, xhat, inv_std = _train(x, gamma, beta, rmean, rvar)
    dy = rng.standard_normal(shape).astype(dtype)
    dx, dgamma, dbeta = np.empty_like(x), np.empty(shape[1], dtype), np.empty(shape[1], dtype)
    batchnorm_backward(dy, xhat, gamma, inv_std, dx, dgamma, dbeta)
    rdx, rdg, rdb = _ref_backward(dy, xhat, gamma.astype(np.float64), inv_std.astype(np.float64))
    t = _tol(dtype)
    t["atol"] *= np.sqrt(shape[0])
    np.testing.assert_allclose(dgamma, rdg, **t)
    np.testing.assert_allclose(dbeta, rdb, **t)
    np.testing.assert_allclose(dx, rdx, **t)


@pytest.mark.parametrize("dtype", DTYPES)
def test_backward_accumulate_in_place_and_skip_dx(dtype):
    rng = np.random.default_rng(8)
    x = rng.standard_normal((9, 5)).astype(dtype)
    gamma, beta, rmean, rvar = _params(5, dtype)
    _, xhat, inv_std = _train(x, gamma, beta, rmean, rvar)
    dy = rng.standard_normal(x.shape).astype(dtype)
    rdx, rdg, rdb = _ref_backward(dy, xhat, gamma.astype(np.float64), inv_std.astype(np.float64))
    dgamma, dbeta = np.ones(5, dtype), np.ones(5, dtype)
    batchnorm_backward(dy, xhat, gamma, inv_std, None, dgamma, dbeta, accumulate=True)
    np.testing.assert_allclose(dgamma, 1 + rdg, **_tol(dtype))
    np.testing.assert_allclose(dbeta, 1 + rdb, **_tol(dtype))
    batchnorm_backward(dy, xhat, gamma, inv_std, dy, dgamma, dbeta)    # dx is dy
    np.testing.assert_allclose(dy, rdx, **_tol(dtype))


def test_gradients_finite_differences():
    rng = np.random.default_rng(9)
    x = rng.standard_normal((6, 4))
    gamma, beta, _, _ = _params(4, np.float64)
    r = rng.standard_normal(x.shape)

    def loss():
        y, _, _ = _train(x, gamma, beta, np.zeros(4), np.ones(4), eps=1e-3)
        return float((y * r).sum())

    _, xhat, inv_std = _train(x, gamma, beta, np.zeros(4), np.ones(4), eps=1e-3)
    dx, dgamma, dbeta = np.empty_like(x), np.empty(4), np.empty(4)
    batchnorm_backward(r, xhat, gamma, inv_std, dx, dgamma, dbeta)
    for name, param, grad in (("x", x, dx), ("gamma", gamma, dgamma), ("beta", beta, dbeta)):
        assert_grad_close(grad, numeric_grad(loss, param), tol=1e-7, what=f"batchnorm d{name}")


@settings(max_examples=30, deadline=None)
@given(n=st.integers(2, 80), d=st.integers(1, 40), f32=st.booleans(),
       seed=st.integers(0, 2 ** 16))
def test_random_shapes(n, d, f32, seed):
    dtype = np.float32 if f32 else np.float64
    x = np.random.default_rng(seed).standard_normal((n, d)).astype(dtype)
    gamma, beta, rmean, rvar = _params(d, dtype, seed)
    y, _, _ = _train(x, gamma, beta, rmean, rvar)
    x64 = x.astype(np.float64)
    ref = gamma * (x64 - x64.mean(axis=0)) / np.sqrt(x64.var(axis=0) + 1e-5) + beta
    np.testing.assert_allclose(y, ref, rtol=_tol(dtype)["rtol"], atol=_tol(dtype)["atol"] * 10)
