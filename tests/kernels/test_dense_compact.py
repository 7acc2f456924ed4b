"""dense on the non-zero columns of its input: forward and backward equal the full ones (NumPy
reference and finite differences), and dense batches are left to the full kernels."""
import numpy as np
import pytest

from dlrun.kernels.dense import dense_backward_compact, dense_forward_compact
from helpers import DTYPES, assert_grad_close, numeric_grad, tol


def _problem(n, d_in, d_out, dtype, zero_cols, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d_in)).astype(dtype)
    x[:, zero_cols] = 0
    w = (rng.standard_normal((d_in, d_out)) / np.sqrt(d_in)).astype(dtype)
    b = rng.standard_normal(d_out).astype(dtype)
    return x, w, b


def _scratch(n, d_in, d_out, dtype):
    return np.empty(d_in, np.int64), np.empty(n * d_in, dtype), np.empty(d_in * d_out, dtype)


def _tol(dtype, k):
    t = tol(dtype)
    return {"rtol": t["rtol"] * 10, "atol": t["atol"] * 10 * np.sqrt(k)}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", ["linear", "relu", "tanh", "softmax"])
@pytest.mark.parametrize("pattern", ["edges", "scattered", "first_last"])
def test_compact_matches_full(dtype, act, pattern):
    n, d_in, d_out = 96, 50, 9
    zero = {"edges": list(range(12)) + list(range(40, 50)),
            "scattered": list(range(0, 50, 3)),
            "first_last": [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 49, 48, 47, 46, 45, 44]}[pattern]
    x, w, b = _problem(n, d_in, d_out, dtype, zero)
    cols, xc, wc = _scratch(n, d_in, d_out, dtype)
    y = np.empty((n, d_out), dtype)
    k = dense_forward_compact(x, w, b, y, act, 0.0, cols, xc, wc)
    nz = sorted(set(range(d_in)) - set(zero))
    assert k == len(nz) and cols[:k].tolist() == nz
    z = x.astype(np.float64) @ w + b
    ref = {"linear": z, "relu": np.maximum(z, 0), "tanh": np.tanh(z),
           "softmax": np.exp(z - z.max(1, keepdims=True)) / np.exp(z - z.max(1, keepdims=True)).sum(1, keepdims=True)}[act]
    np.testing.assert_allclose(y, ref, **_tol(dtype, d_in))
    rng = np.random.default_rng(1)
    dz = rng.standard_normal((n, d_out)).astype(dtype)
    dw = np.full((d_in, d_out), np.nan, dtype)     # every entry must be written
    db = np.full(d_out, np.nan, dtype)
    dense_backward_compact(xc, cols, k, dz, dw, db, wc)
    np.testing.assert_allclose(dw, x.T.astype(np.float64) @ dz, **_tol(dtype, n))
    assert not dw[zero].any()
    np.testing.assert_allclose(db, dz.sum(0, dtype=np.float64), **_tol(dtype, n))
    dense_backward_compact(xc, cols, k, dz, dw, None, wc)     # db skipped


def test_dense_or_small_batches_are_not_compacted():
    x, w, b = _problem(64, 50, 9, np.float32, [0, 1])        # 2 zero columns: not worth it
    cols, xc, wc = _scratch(64, 50, 9, np.float32)
    y = np.full((64, 9), 7, np.float32)
    assert dense_forward_compact(x, w, b, y, "relu", 0.0, cols, xc, wc) == 0
    assert (y == 7).all()                                    # nothing computed
    x, w, b = _problem(4, 50, 9, np.float32, list(range(25)))  # too few rows to pay off
    cols, xc, wc = _scratch(4, 50, 9, np.float32)
    assert dense_forward_compact(x, w, b, np.empty((4, 9), np.float32), "relu", 0.0, cols, xc, wc) == 0
    x, w, b = _problem(64, 50, 9, np.float32, list(range(50)))  # all zero: k = 0
    cols, xc, wc = _scratch(64, 50, 9, np.float32)
    assert dense_forward_compact(x, w, b, np.empty((64, 9), np.float32), "linear", 0.0, cols, xc, wc) == 0


def test_compact_gradient_matches_finite_differences():
    n, d_in, d_out = 60, 12, 3
    x, w, b = _problem(n, d_in, d_out, np.float64, [0, 1, 2, 3, 10, 11], seed=3)
    cols, xc, wc = _scratch(n, d_in, d_out, np.float64)
    y = np.empty((n, d_out))
    t = np.random.default_rng(5).standard_normal((n, d_out))

    def loss():
        assert dense_forward_compact(x, w, b, y, "tanh", 0.0, cols, xc, wc) > 0
        return float((y * t).sum())

    loss()
    dz = t * (1 - y ** 2)
    dw, db = np.empty_like(w), np.empty_like(b)
    k = dense_forward_compact(x, w, b, y, "tanh", 0.0, cols, xc, wc)
    dense_backward_compact(xc, cols, k, dz, dw, db, wc)
    num = numeric_grad(loss, w)
    nz = cols[:k]
    assert_grad_close(dw[nz], num[nz], 1e-7, "dW")
    # rows of the zero columns: exactly 0, and the finite difference is rounding noise
    zero = np.setdiff1d(np.arange(d_in), nz)
    assert not dw[zero].any() and np.abs(num[zero]).max() < 1e-9
    assert_grad_close(db, numeric_grad(loss, b), 1e-7, "db")


def test_compact_bad_calls():
    x, w, b = _problem(64, 50, 9, np.float32, list(range(20)))
    cols, xc, wc = _scratch(64, 50, 9, np.float32)
    y = np.empty((64, 9), np.float32)
    with pytest.raises(ValueError, match="scratch 'xc' needs 3200"):
        dense_forward_compact(x, w, b, y, "relu", 0.0, cols, xc[:10], wc)
    with pytest.raises(TypeError, match="'cols' must be a writeable 1-D int64"):
        dense_forward_compact(x, w, b, y, "relu", 0.0, cols.astype(np.int32), xc, wc)
    with pytest.raises(ValueError, match="overlaps"):
        dense_forward_compact(x, w, b, y, "relu", 0.0, cols, xc, xc)
    k = dense_forward_compact(x, w, b, y, "relu", 0.0, cols, xc, wc)
    dz, dw = np.ones((64, 9), np.float32), np.empty((50, 9), np.float32)
    with pytest.raises(ValueError, match=r"'k' must be in \[1, 50\]"):
        dense_backward_compact(xc, cols, 0, dz, dw, None, wc)
    bad = cols.copy()
    bad[1] = bad[0]
    with pytest.raises(ValueError, match="ascending"):
        dense_backward_compact(xc, bad, k, dz, dw, None, wc)
