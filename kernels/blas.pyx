"""Row-major GEMM and GEMV through scipy's BLAS (``scipy.linalg.cython_blas``).

Arrays are C-contiguous float32 or float64, one dtype per call; results are written into the
caller's ``c`` / ``y``. The GIL is released while BLAS runs.
"""
cimport numpy as cnp
from cython cimport floating

from _common cimport (check_float_array, check_same_dtype, check_shape, check_no_overlap,
                      check_blas_dim, check_finite_float, check_flag, float_dispatch,
                      is_float32, data)
from blas cimport gemm_rm, gemv_rm

cnp.import_array()


def gemm(a, b, c, trans_a=False, trans_b=False, alpha=1.0, beta=0.0):
    """C := alpha op(A) op(B) + beta C   op(A) (m, k), op(B) (k, n), C (m, n); op = transpose
    when trans_a / trans_b. ``c`` must not overlap ``a`` or ``b``."""
    fn = "gemm"
    cdef cnp.ndarray A = check_float_array(a, fn, "a", 2, False)
    cdef cnp.ndarray B = check_float_array(b, fn, "b", 2, False)
    cdef cnp.ndarray C = check_float_array(c, fn, "c", 2, True)
    check_same_dtype(B, A, fn, "b", "a")
    check_same_dtype(C, A, fn, "c", "a")
    cdef bint ta = check_flag(trans_a, fn, "trans_a")
    cdef bint tb = check_flag(trans_b, fn, "trans_b")
    cdef Py_ssize_t m = A.shape[1] if ta else A.shape[0]
    cdef Py_ssize_t k = A.shape[0] if ta else A.shape[1]
    cdef Py_ssize_t kb = B.shape[1] if tb else B.shape[0]
    cdef Py_ssize_t n = B.shape[0] if tb else B.shape[1]
    if kb != k:
        raise ValueError(f"gemm: arguments 'a' and 'b' have shapes whose inner dimensions "
                         f"differ: op(a) has shape ({m}, {k}) (a {(<object>A).shape}, "
                         f"trans_a={ta}), op(b) has shape ({kb}, {n}) (b {(<object>B).shape}, "
                         f"trans_b={tb}); expected op(b) with {k} rows")
    check_shape(C, (m, n), fn, "c", "(rows of op(a), columns of op(b))")
    check_no_overlap(C, A, fn, "c", "a", False)
    check_no_overlap(C, B, fn, "c", "b", False)
    cdef int im = check_blas_dim(m, fn, "m"), ik = check_blas_dim(k, fn, "k")
    cdef int jn = check_blas_dim(n, fn, "n")
    cdef double al = check_finite_float(alpha, fn, "alpha")
    cdef double be = check_finite_float(beta, fn, "beta")
    with nogil:
        float_dispatch(is_float32(A), gemm_rm[float], gemm_rm[double],
                       ta, tb, im, jn, ik, al, data(A), data(B), be, data(C))
    return c


def gemv(a, x, y, trans=False, alpha=1.0, beta=0.0):
    """y := alpha op(A) x + beta y   A (m, n); op(A) = A: x (n,), y (m,); op(A) = A^T: x (m,),
    y (n,). ``y`` must not overlap ``a`` or ``x``."""
    fn = "gemv"
    cdef cnp.ndarray A = check_float_array(a, fn, "a", 2, False)
    cdef cnp.ndarray X = check_float_array(x, fn, "x", 1, False)
    cdef cnp.ndarray Y = check_float_array(y, fn, "y", 1, True)
    check_same_dtype(X, A, fn, "x", "a")
    check_same_dtype(Y, A, fn, "y", "a")
    cdef bint t = check_flag(trans, fn, "trans")
    cdef Py_ssize_t m = A.shape[0], n = A.shape[1]
    check_shape(X, ((m,) if t else (n,)), fn, "x",
                f"(a has shape {(<object>A).shape}, trans={t})")
    check_shape(Y, ((n,) if t else (m,)), fn, "y",
                f"(a has shape {(<object>A).shape}, trans={t})")
    check_no_overlap(Y, A, fn, "y", "a", False)
    check_no_overlap(Y, X, fn, "y", "x", False)
    cdef int im = check_blas_dim(m, fn, "m"), jn = check_blas_dim(n, fn, "n")
    cdef double al = check_finite_float(alpha, fn, "alpha")
    cdef double be = check_finite_float(beta, fn, "beta")
    with nogil:
        float_dispatch(is_float32(A), gemv_rm[float], gemv_rm[double],
                       t, im, jn, al, data(A), data(X), be, data(Y))
    return y
