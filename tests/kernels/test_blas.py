"""blas: row-major gemm/gemv against NumPy's matmul in both dtypes."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from dlrun.kernels.blas import gemm, gemv
from helpers import DTYPES, tol

SHAPES = [(1, 1, 1), (1, 784, 512), (3, 5, 7), (17, 1, 9), (128, 784, 512), (4, 0, 3)]


def _op(a, t):
    return a.T if t else a


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m,k,n", SHAPES)
@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
def test_gemm_matches_numpy(dtype, m, k, n, trans_a, trans_b):
    rng = np.random.default_rng(m * 1000 + k * 10 + n)
    a = rng.standard_normal((k, m) if trans_a else (m, k)).astype(dtype)
    b = rng.standard_normal((n, k) if trans_b else (k, n)).astype(dtype)
    c = rng.standard_normal((m, n)).astype(dtype)
    expected = 0.5 * (_op(a, trans_a).astype(np.float64) @ _op(b, trans_b)) + 2.0 * c
    gemm(a, b, c, trans_a=trans_a, trans_b=trans_b, alpha=0.5, beta=2.0)
    # float32 sums of k products: the error grows like sqrt(k) eps
    rtol, atol = tol(dtype)["rtol"], tol(dtype)["atol"]
    np.testing.assert_allclose(c, expected, rtol=rtol * 10, atol=atol * max(k, 1) * 10)


@pytest.mark.parametrize("dtype", DTYPES)
def test_gemm_larger_than_l2(dtype):
    # 1024 x 1024 operands (4-8 MB each) do not fit the L2 cache
    rng = np.random.default_rng(1)
    a = rng.standard_normal((1024, 1024)).astype(dtype)
    b = rng.standard_normal((1024, 1024)).astype(dtype)
    c = np.empty((1024, 1024), dtype)
    gemm(a, b, c, trans_b=True)
    expected = a.astype(np.float64) @ b.T.astype(np.float64)
    scale = np.sqrt(1024.0)
    np.testing.assert_allclose(c, expected, rtol=0, atol=scale * (1e-4 if dtype == np.float32 else 1e-12))


@pytest.mark.parametrize("dtype", DTYPES)
def test_gemm_beta_zero_ignores_nan_in_c(dtype):
    # beta = 0 means C is write-only (BLAS semantics): garbage in c must not leak into the result
    a = np.ones((2, 3), dtype)
    b = np.ones((3, 4), dtype)
    c = np.full((2, 4), np.nan, dtype)
    gemm(a, b, c)
    np.testing.assert_array_equal(c, np.full((2, 4), 3, dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m,n", [(1, 1), (5, 3), (1, 17), (300, 1), (1000, 700)])
@pytest.mark.parametrize("trans", [False, True])
def test_gemv_matches_numpy(dtype, m, n, trans):
    rng = np.random.default_rng(m + 7 * n)
    a = rng.standard_normal((m, n)).astype(dtype)
    x = rng.standard_normal(m if trans else n).astype(dtype)
    y = rng.standard_normal(n if trans else m).astype(dtype)
    expected = 1.5 * (_op(a, trans).astype(np.float64) @ x) - 0.5 * y
    gemv(a, x, y, trans=trans, alpha=1.5, beta=-0.5)
    rtol, atol = tol(dtype)["rtol"], tol(dtype)["atol"]
    np.testing.assert_allclose(y, expected, rtol=rtol * 10, atol=atol * max(m, n) * 10)


@settings(max_examples=40, deadline=None)
@given(m=st.integers(1, 40), k=st.integers(1, 40), n=st.integers(1, 40),
       trans_a=st.booleans(), trans_b=st.booleans(), f32=st.booleans())
def test_gemm_random_shapes(m, k, n, trans_a, trans_b, f32):
    dtype = np.float32 if f32 else np.float64
    rng = np.random.default_rng(m * 41 * 41 + k * 41 + n)
    a = rng.standard_normal((k, m) if trans_a else (m, k)).astype(dtype)
    b = rng.standard_normal((n, k) if trans_b else (k, n)).astype(dtype)
    c = np.empty((m, n), dtype)
    gemm(a, b, c, trans_a, trans_b)
    np.testing.assert_allclose(c, _op(a, trans_a).astype(np.float64) @ _op(b, trans_b),
                               rtol=tol(dtype)["rtol"] * 10, atol=tol(dtype)["atol"] * k * 10)
