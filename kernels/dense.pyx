# distutils: extra_compile_args = -fno-trapping-math
"""Fully connected layer kernels: Y := f(X W + b) and its backward pass.

GEMMs go through scipy's BLAS (row-major via blas.pxd); the bias and the activation are applied
in a single pass over Y right after the GEMM. Arrays are C-contiguous float32 or float64, one
dtype per call, outputs supplied by the caller; the GIL is released for the work.
"""
cimport numpy as cnp
from cython cimport floating

from _common cimport (check_float_array, check_same_dtype, check_shape, check_no_overlap,
                      check_blas_dim, check_finite_float, check_flag)
from blas cimport gemm_rm
from activations cimport act_code, act_forward_rows, ACT_LINEAR

cnp.import_array()


cdef void _forward(int act, int n, int d_in, int d_out, const floating* x, const floating* w,
                   const floating* b, floating* y, floating alpha) noexcept nogil:
    gemm_rm(False, False, n, d_out, d_in, <floating>1, x, w, <floating>0, y)
    if act != ACT_LINEAR or b != NULL:
        act_forward_rows(act, y, y, b, n, d_out, alpha)


cdef void _column_sums(const floating* dz, Py_ssize_t n, Py_ssize_t d, floating* db,
                       bint accumulate) noexcept nogil:
    """db[j] (+)= sum_i dz[i, j], walking dz row by row (contiguous, vectorised)."""
    cdef Py_ssize_t i, j
    cdef const floating* row
    if not accumulate:
        for j in range(d):
            db[j] = 0
    for i in range(n):
        row = dz + i * d
        for j in range(d):
            db[j] = db[j] + row[j]


cdef void _backward(int n, int d_in, int d_out, const floating* x, const floating* w,
                    const floating* dz, floating* dx, floating* dw, floating* db,
                    bint accumulate) noexcept nogil:
    if dx != NULL:
        # dX (n, in) := dZ (n, out) W^T
        gemm_rm(False, True, n, d_in, d_out, <floating>1, dz, w, <floating>0, dx)
    # dW (in, out) (+)= X^T (in, n) dZ (n, out)
    gemm_rm(True, False, d_in, d_out, n, <floating>1, x, dz,
            <floating>(1 if accumulate else 0), dw)
    if db != NULL:
        _column_sums(dz, n, d_out, db, accumulate)


def dense_forward(x, w, b, y, activation="linear", alpha=0.0):
    """Y := f(X W + b)   x (n, in), w (in, out), b (out,) or None, y (n, out); f is applied in
    the same pass as the bias (softmax row-wise). y must not overlap x, w or b."""
    fn = "dense_forward"
    cdef double al = check_finite_float(alpha, fn, "alpha")
    cdef int act = act_code(activation, fn, al)
    cdef cnp.ndarray X = check_float_array(x, fn, "x", 2, False)
    cdef cnp.ndarray W = check_float_array(w, fn, "w", 2, False)
    cdef cnp.ndarray Y = check_float_array(y, fn, "y", 2, True)
    cdef cnp.ndarray B = None
    check_same_dtype(W, X, fn, "w", "x")
    check_same_dtype(Y, X, fn, "y", "x")
    cdef Py_ssize_t n = X.shape[0], d_in = X.shape[1], d_out = W.shape[1]
    if W.shape[0] != d_in:
        raise ValueError(f"{fn}: argument 'w' has shape {(<object>W).shape}; expected "
                         f"({d_in}, out) to match x {(<object>X).shape}")
    check_shape(Y, (n, d_out), fn, "y", "(rows of x, columns of w)")
    check_no_overlap(Y, X, fn, "y", "x", False)
    check_no_overlap(Y, W, fn, "y", "w", False)
    if b is not None:
        B = check_float_array(b, fn, "b", 1, False)
        check_same_dtype(B, X, fn, "b", "x")
        check_shape(B, (d_out,), fn, "b", "(columns of w)")
        check_no_overlap(Y, B, fn, "y", "b", False)
    cdef int i_n = check_blas_dim(n, fn, "batch size"), i_in = check_blas_dim(d_in, fn, "in")
    cdef int i_out = check_blas_dim(d_out, fn, "out")
    cdef void* bp = cnp.PyArray_DATA(B) if B is not None else NULL
    if cnp.PyArray_TYPE(X) == cnp.NPY_FLOAT32:
        with nogil:
            _forward(act, i_n, i_in, i_out, <float*>cnp.PyArray_DATA(X),
                     <float*>cnp.PyArray_DATA(W), <float*>bp, <float*>cnp.PyArray_DATA(Y),
                     <float>al)
    else:
        with nogil:
            _forward(act, i_n, i_in, i_out, <double*>cnp.PyArray_DATA(X),
                     <double*>cnp.PyArray_DATA(W), <double*>bp, <double*>cnp.PyArray_DATA(Y),
                     al)
    return y


def dense_backward(x, w, dz, dx, dw, db, accumulate=False):
    """dX := dZ W^T (skipped when dx is None), dW (+)= X^T dZ, db (+)= sum_rows dZ (skipped when
    db is None)   x (n, in), w (in, out), dz (n, out) = gradient w.r.t. the pre-activation
    X W + b, dx (n, in), dw (in, out), db (out,); += when accumulate. Outputs must not overlap
    the inputs or each other."""
    fn = "dense_backward"
    cdef cnp.ndarray X = check_float_array(x, fn, "x", 2, False)
    cdef cnp.ndarray W = check_float_array(w, fn, "w", 2, False)
    cdef cnp.ndarray DZ = check_float_array(dz, fn, "dz", 2, False)
    cdef cnp.ndarray DW = check_float_array(dw, fn, "dw", 2, True)
    cdef cnp.ndarray DX = None, DB = None
    check_same_dtype(W, X, fn, "w", "x")
    check_same_dtype(DZ, X, fn, "dz", "x")
    check_same_dtype(DW, X, fn, "dw", "x")
    cdef Py_ssize_t n = X.shape[0], d_in = X.shape[1], d_out = W.shape[1]
    if W.shape[0] != d_in:
        raise ValueError(f"{fn}: argument 'w' has shape {(<object>W).shape}; expected "
                         f"({d_in}, out) to match x {(<object>X).shape}")
    check_shape(DZ, (n, d_out), fn, "dz", "(rows of x, columns of w)")
    check_shape(DW, (d_in, d_out), fn, "dw", "(the shape of w)")
    outputs = [("dw", DW)]
    if dx is not None:
        DX = check_float_array(dx, fn, "dx", 2, True)
        check_same_dtype(DX, X, fn, "dx", "x")
        check_shape(DX, (n, d_in), fn, "dx", "(the shape of x)")
        outputs.append(("dx", DX))
    if db is not None:
        DB = check_float_array(db, fn, "db", 1, True)
        check_same_dtype(DB, X, fn, "db", "x")
        check_shape(DB, (d_out,), fn, "db", "(columns of w)")
        outputs.append(("db", DB))
    for k, (oname, out) in enumerate(outputs):
        for iname, inp in (("x", X), ("w", W), ("dz", DZ)):
            check_no_overlap(out, inp, fn, oname, iname, False)
        for oname2, out2 in outputs[k + 1:]:
            check_no_overlap(out, out2, fn, oname, oname2, False)
    cdef int i_n = check_blas_dim(n, fn, "batch size"), i_in = check_blas_dim(d_in, fn, "in")
    cdef int i_out = check_blas_dim(d_out, fn, "out")
    cdef bint acc = check_flag(accumulate, fn, "accumulate")
    cdef void* dxp = cnp.PyArray_DATA(DX) if DX is not None else NULL
    cdef void* dbp = cnp.PyArray_DATA(DB) if DB is not None else NULL
    if cnp.PyArray_TYPE(X) == cnp.NPY_FLOAT32:
        with nogil:
            _backward(i_n, i_in, i_out, <float*>cnp.PyArray_DATA(X),
                      <float*>cnp.PyArray_DATA(W), <float*>cnp.PyArray_DATA(DZ), <float*>dxp,
                      <float*>cnp.PyArray_DATA(DW), <float*>dbp, acc)
    else:
        with nogil:
            _backward(i_n, i_in, i_out, <double*>cnp.PyArray_DATA(X),
                      <double*>cnp.PyArray_DATA(W), <double*>cnp.PyArray_DATA(DZ),
                      <double*>dxp, <double*>cnp.PyArray_DATA(DW), <double*>dbp, acc)
    return None
