"""batchnorm2d: per-channel batch norm of NCHW arrays -- training/eval forward against NumPy and
against the (rows, features) kernel on x transposed to (n*h*w, c), backward against NumPy and
4th-order finite differences, batch 1, a constant channel, bad calls."""
import numpy as np
import pytest

from dlrun.kernels.batchnorm import (batchnorm2d_backward, batchnorm2d_forward_eval,
                                     batchnorm2d_forward_train, batchnorm_backward,
                                     batchnorm_forward_eval, batchnorm_forward_train)
from helpers import DTYPES, assert_grad_close, numeric_grad, tol

SHAPES = [(1, 1, 1, 2), (1, 3, 5, 7), (2, 1, 1, 1), (4, 3, 5, 5), (7, 5, 3, 9), (16, 8, 6, 6)]


def _tol(dtype):
    t = tol(dtype)
    return {"rtol": t["rtol"] * 10, "atol": t["atol"] * 10}


def _params(c, dtype, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.uniform(0.5, 2.0, c).astype(dtype), rng.standard_normal(c).astype(dtype),
            rng.standard_normal(c).astype(dtype), rng.uniform(0.5, 2.0, c).astype(dtype))


def _train(x, gamma, beta, rmean, rvar, momentum=0.9, eps=1e-5):
    y, xhat = np.full_like(x, np.nan), np.full_like(x, np.nan)
    inv_std = np.full(x.shape[1], np.nan, x.dtype)
    batchnorm2d_forward_train(x, gamma, beta, rmean, rvar, momentum, eps, y, xhat, inv_std)
    return y, xhat, inv_std


def _rows(a):
    """(n, c, h, w) -> (n*h*w, c), contiguous"""
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1).reshape(-1, a.shape[1]))


def _data(shape, dtype, seed):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(shape) * 3 + 5).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_forward_train_matches_numpy(dtype, shape):
    n, c, h, w = shape
    x = _data(shape, dtype, sum(shape))
    gamma, beta, rmean, rvar = _params(c, dtype)
    rmean0, rvar0 = rmean.astype(np.float64), rvar.astype(np.float64)
    y, xhat, inv_std = _train(x, gamma, beta, rmean, rvar, eps=1e-3)
    x64 = x.astype(np.float64)
    mu, var = x64.mean(axis=(0, 2, 3)), x64.var(axis=(0, 2, 3))
    ref_inv = 1 / np.sqrt(var + 1e-3)
    ref_xhat = (x64 - mu[:, None, None]) * ref_inv[:, None, None]
    m = n * h * w
    np.testing.assert_allclose(inv_std, ref_inv, **_tol(dtype))
    np.testing.assert_allclose(xhat, ref_xhat, **_tol(dtype))
    np.testing.assert_allclose(y, gamma[:, None, None] * ref_xhat + beta[:, None, None],
                               **_tol(dtype))
    unbiased = var * m / (m - 1) if m > 1 else var
    np.testing.assert_allclose(rmean, 0.9 * rmean0 + 0.1 * mu, **_tol(dtype))
    np.testing.assert_allclose(rvar, 0.9 * rvar0 + 0.1 * unbiased, **_tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_equals_rows_kernel_on_transposed_x(dtype, shape):
    n, c, h, w = shape
    x = _data(shape, dtype, 11 + sum(shape))
    gamma, beta, rmean, rvar = _params(c, dtype)
    rm2, rv2 = rmean.copy(), rvar.copy()
    y, xhat, inv_std = _train(x, gamma, beta, rmean, rvar)
    xr = _rows(x)
    yr, xhr, isr = np.empty_like(xr), np.empty_like(xr), np.empty(c, dtype)
    batchnorm_forward_train(xr, gamma, beta, rm2, rv2, 0.9, 1e-5, yr, xhr, isr)
    for a, b in ((_rows(y), yr), (_rows(xhat), xhr), (inv_std, isr), (rmean, rm2), (rvar, rv2)):
        np.testing.assert_allclose(a, b, **tol(dtype))
    ye, yer = np.empty_like(x), np.empty_like(xr)
    batchnorm2d_forward_eval(x, gamma, beta, rmean, rvar, 1e-5, ye)
    batchnorm_forward_eval(xr, gamma, beta, rmean, rvar, 1e-5, yer)
    np.testing.assert_allclose(_rows(ye), yer, **tol(dtype))
    dy = _data(shape, dtype, 99).astype(dtype)
    dx, dg, db = np.empty_like(x), np.empty(c, dtype), np.empty(c, dtype)
    dxr, dgr, dbr = np.empty_like(xr), np.empty(c, dtype), np.empty(c, dtype)
    batchnorm2d_backward(dy, xhat, gamma, inv_std, dx, dg, db)
    batchnorm_backward(_rows(dy), xhr, gamma, isr, dxr, dgr, dbr)
    np.testing.assert_allclose(_rows(dx), dxr, **_tol(dtype))
    np.testing.assert_allclose(dg, dgr, **_tol(dtype))
    np.testing.assert_allclose(db, dbr, **_tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_forward_eval_matches_numpy_and_runs_in_place(dtype):
    x = _data((3, 4, 5, 3), dtype, 5)
    gamma, beta, rmean, rvar = _params(4, dtype)
    b = lambda v: v.astype(np.float64)[:, None, None]
    ref = b(gamma) * (x.astype(np.float64) - b(rmean)) / np.sqrt(b(rvar) + 1e-5) + b(beta)
    y = np.empty_like(x)
    batchnorm2d_forward_eval(x, gamma, beta, rmean, rvar, 1e-5, y)
    np.testing.assert_allclose(y, ref, **_tol(dtype))
    batchnorm2d_forward_eval(x, gamma, beta, rmean, rvar, 1e-5, x)
    np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("dtype", DTYPES)
def test_backward_matches_numpy_accumulate_and_in_place(dtype):
    rng = np.random.default_rng(8)
    x = _data((2, 3, 4, 5), dtype, 8)
    gamma, beta, rmean, rvar = _params(3, dtype)
    _, xhat, inv_std = _train(x, gamma, beta, rmean, rvar)
    dy = rng.standard_normal(x.shape).astype(dtype)
    d64, h64 = dy.astype(np.float64), xhat.astype(np.float64)
    m = 2 * 4 * 5
    rdb, rdg = d64.sum(axis=(0, 2, 3)), (d64 * h64).sum(axis=(0, 2, 3))
    a = (gamma.astype(np.float64) * inv_std)[:, None, None]
    rdx = a * (d64 - rdb[:, None, None] / m - h64 * rdg[:, None, None] / m)
    dgamma, dbeta = np.ones(3, dtype), np.ones(3, dtype)
    batchnorm2d_backward(dy, xhat, gamma, inv_std, None, dgamma, dbeta, accumulate=True)
    np.testing.assert_allclose(dgamma, 1 + rdg, **_tol(dtype))
    np.testing.assert_allclose(dbeta, 1 + rdb, **_tol(dtype))
    batchnorm2d_backward(dy, xhat, gamma, inv_std, dy, dgamma, dbeta)    # dx is dy
    np.testing.assert_allclose(dy, rdx, **_tol(dtype))
    np.testing.assert_allclose(dgamma, rdg, **_tol(dtype))


@pytest.mark.parametrize("shape", [(1, 2, 3, 3), (3, 2, 1, 5), (2, 3, 3, 2)])
def test_gradients_finite_differences(shape):
    rng = np.random.default_rng(9)
    c = shape[1]
    x = rng.standard_normal(shape)
    gamma, beta, _, _ = _params(c, np.float64)
    r = rng.standard_normal(shape)

    def loss():
        y, _, _ = _train(x, gamma, beta, np.zeros(c), np.ones(c), eps=1e-3)
        return float((y * r).sum())

    _, xhat, inv_std = _train(x, gamma, beta, np.zeros(c), np.ones(c), eps=1e-3)
    dx, dgamma, dbeta = np.empty_like(x), np.empty(c), np.empty(c)
    batchnorm2d_backward(r, xhat, gamma, inv_std, dx, dgamma, dbeta)
    for name, param, grad in (("x", x, dx), ("gamma", gamma, dgamma), ("beta", beta, dbeta)):
        assert_grad_close(grad, numeric_grad(loss, param), tol=1e-7, what=f"batchnorm2d d{name}")


@pytest.mark.parametrize("dtype", DTYPES)
def test_constant_channel_gives_beta_not_nan(dtype):
    x = _data((3, 4, 3, 5), dtype, 4)
    x[:, 2] = 7.25
    gamma, beta, rmean, rvar = _params(4, dtype)
    y, xhat, inv_std = _train(x, gamma, beta, rmean, rvar)
    assert np.all(np.isfinite(y)) and np.all(np.isfinite(inv_std))
    np.testing.assert_array_equal(xhat[:, 2], 0)
    np.testing.assert_allclose(y[:, 2], beta[2], **tol(dtype))
    dy = _data(x.shape, dtype, 5)
    dx, dg, db = np.empty_like(x), np.empty(4, dtype), np.empty(4, dtype)
    batchnorm2d_backward(dy, xhat, gamma, inv_std, dx, dg, db)
    assert np.all(np.isfinite(dx)) and dg[2] == 0


def test_large_offset_keeps_precision_float32():
    rng = np.random.default_rng(3)
    x = (1e4 + rng.standard_normal((8, 3, 10, 10))).astype(np.float32)
    gamma, beta, rmean, rvar = _params(3, np.float32)
    _, xhat, inv_std = _train(x, gamma, beta, rmean, rvar)
    var = x.astype(np.float64).var(axis=(0, 2, 3))
    np.testing.assert_allclose(inv_std, 1 / np.sqrt(var + 1e-5), rtol=1e-4)


def _ok(dtype=np.float64):
    x = _data((2, 3, 4, 4), dtype, 1)
    gamma, beta, rmean, rvar = _params(3, dtype)
    return x, gamma, beta, rmean, rvar


@pytest.mark.parametrize("change, exc, name", [
    (lambda a: a.update(x=a["x"].reshape(2, 3, 16)), ValueError, "x"),
    (lambda a: a.update(x=a["x"].tolist()), TypeError, "x"),
    (lambda a: a.update(x=a["x"].astype(np.int64)), TypeError, "x"),
    (lambda a: a.update(gamma=a["gamma"][:2].copy()), ValueError, "gamma"),
    (lambda a: a.update(beta=a["beta"].astype(np.float32)), TypeError, "beta"),
    (lambda a: a.update(y=np.empty((2, 3, 4, 5))), ValueError, "y"),
    (lambda a: a.update(xhat=a["x"]), ValueError, "xhat"),
    (lambda a: a.update(momentum=1.5), ValueError, "momentum"),
    (lambda a: a.update(eps=0.0), ValueError, "eps"),
    (lambda a: a.update(x=np.empty((0, 3, 4, 4)), y=np.empty((0, 3, 4, 4)),
                        xhat=np.empty((0, 3, 4, 4))), ValueError, "x"),
])
def test_bad_train_calls_name_the_argument(change, exc, name):
    x, gamma, beta, rmean, rvar = _ok()
    args = dict(x=x, gamma=gamma, beta=beta, running_mean=rmean, running_var=rvar,
                momentum=0.9, eps=1e-5, y=np.empty_like(x), xhat=np.empty_like(x),
                inv_std=np.empty(3))
    change(args)
    with pytest.raises(exc, match=f"batchnorm2d_forward_train: (argument|output) '{name}'"):
        batchnorm2d_forward_train(**args)


def test_bad_eval_and_backward_calls_name_the_argument():
    x, gamma, beta, rmean, rvar = _ok()
    with pytest.raises(ValueError, match="batchnorm2d_forward_eval: argument 'running_var'"):
        batchnorm2d_forward_eval(x, gamma, beta, rmean, -rvar, 1e-5, np.empty_like(x))
    with pytest.raises(ValueError, match="batchnorm2d_forward_eval: argument 'y'"):
        batchnorm2d_forward_eval(x, gamma, beta, rmean, rvar, 1e-5, np.empty((2, 3, 4, 3)))
    with pytest.raises(ValueError, match="batchnorm2d_backward: argument 'xhat'"):
        batchnorm2d_backward(x, x[:1].copy(), gamma, gamma, None, np.empty(3), np.empty(3))
    with pytest.raises(TypeError, match="batchnorm2d_backward: argument 'dgamma'"):
        batchnorm2d_backward(x, x, gamma, gamma, None, np.empty(3, np.float32), np.empty(3))
    with pytest.raises(ValueError, match="batchnorm2d_backward: argument 'dx'"):
        batchnorm2d_backward(x, x.copy(), gamma, gamma, x[:, :, :, ::-1].copy()[:1],
                             np.empty(3), np.empty(3))
