# distutils: extra_compile_args = -fno-trapping-math
"""Fully connected layer kernels: Y := f(X W + b) and its backward pass.

GEMMs go through scipy's BLAS (row-major via blas.pxd); the bias and the activation are applied
in a single pass over Y right after the GEMM. Arrays are C-contiguous float32 or float64, one
dtype per call, outputs supplied by the caller; the GIL is released for the work.
"""
cimport numpy as cnp
from cython cimport floating

from _common cimport (check_float_array, check_same_dtype, check_shape, check_no_overlap,
                      check_blas_dim, check_finite_float, check_flag, float_dispatch,
                      float_dispatch_ssize, is_float32, data, data_or_null)
from blas cimport gemm_rm
from dense cimport nonzero_columns, gather_columns
from activations cimport act_code, act_forward_rows, ACT_LINEAR

import numpy as np

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
    cdef void* bp = data_or_null(B)
    with nogil:
        float_dispatch(is_float32(X), _forward[float], _forward[double],
                       act, i_n, i_in, i_out, data(X), data(W), bp, data(Y), al)
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
    cdef void* dxp = data_or_null(DX)
    cdef void* dbp = data_or_null(DB)
    with nogil:
        float_dispatch(is_float32(X), _backward[float], _backward[double],
                       i_n, i_in, i_out, data(X), data(W), data(DZ), dxp, data(DW), dbp, acc)
    return None


# ---------------------------------------------------------------- inputs with zero columns
#
# A batch of sparse inputs (images with a blank background, one-hot or bag-of-words rows)
# often has whole columns of zeros. Those columns add nothing to X W and their rows of
# dW = X^T dZ are exactly 0, so the layer can run on the k non-zero columns only: X' (n, k)
# and the matching rows W' (k, out) -- GEMMs k/in the size -- at the cost of gathering X', W'
# and scattering dW' back. Exact maths; the summation order inside BLAS differs from the full
# product only by the zero terms left out.
#
# The gathers and the scatter cost about as much as COMPACT_ROWS rows of the product (measured
# with 2 OpenBLAS threads on 784 x 512: at 32 rows with 42 % zero columns compaction was no
# faster, at 128 rows with 31 % it saved 25 %), so a batch is compacted only when the product
# it saves, rows * (in - k), is at least COMPACT_ROWS * in.
cdef Py_ssize_t COMPACT_ROWS = 24

cdef void _compact_forward(int act, Py_ssize_t n, Py_ssize_t d_in, Py_ssize_t d_out,
                           const floating* x, const floating* w, const floating* b,
                           floating* y, floating alpha, const long long* cols, Py_ssize_t k,
                           floating* xc, floating* wc) noexcept nogil:
    gather_columns(x, n, d_in, d_out, w, cols, k, xc, wc)
    gemm_rm(False, False, <int>n, <int>d_out, <int>k, <floating>1, xc, wc, <floating>0, y)
    if act != ACT_LINEAR or b != NULL:
        act_forward_rows(act, y, y, b, n, d_out, alpha)


cdef void _compact_backward(Py_ssize_t n, Py_ssize_t d_in, Py_ssize_t d_out,
                            const floating* xc, const long long* cols, Py_ssize_t k,
                            const floating* dz, floating* dw, floating* db,
                            floating* scratch) noexcept nogil:
    cdef Py_ssize_t r, j, row = 0
    cdef floating* dst
    cdef const floating* src
    # dW' (k, out) := X'^T dZ into the scratch, then scattered into the rows of dW
    gemm_rm(True, False, <int>k, <int>d_out, <int>n, <floating>1, xc, dz, <floating>0, scratch)
    for r in range(k):
        while row < cols[r]:
            dst = dw + row * d_out
            for j in range(d_out):
                dst[j] = 0
            row += 1
        dst = dw + row * d_out
        src = scratch + r * d_out
        for j in range(d_out):
            dst[j] = src[j]
        row += 1
    while row < d_in:
        dst = dw + row * d_out
        for j in range(d_out):
            dst[j] = 0
        row += 1
    if db != NULL:
        _column_sums(dz, n, d_out, db, False)


cdef inline bint _worth(Py_ssize_t k, Py_ssize_t n, Py_ssize_t d_in, double frac) noexcept nogil:
    return k > 0 and k <= frac * d_in and n * (d_in - k) >= COMPACT_ROWS * d_in


def dense_forward_compact(x, w, b, y, activation, alpha, cols, xc, wc, max_fraction=0.9):
    """Y := f(X W + b) computed on the non-zero columns of X only, when there are at most
    ``max_fraction * in`` of them: cols[:k] := those columns, xc[:n*k] := X' (n, k),
    wc[:k*out] := W' (k, out). Returns k, or 0 when the batch is too dense (then nothing
    is computed: call dense_forward), as it is when the saving would not pay for the
    gathers (rows * (in - k) < 24 * in). x (n, in), w (in, out), b (out,) or None, y (n, out);
    scratch: cols (in,) int64, xc (n*in,), wc (in*out,) of x's dtype."""
    fn = "dense_forward_compact"
    cdef double al = check_finite_float(alpha, fn, "alpha")
    cdef int act = act_code(activation, fn, al)
    cdef cnp.ndarray X = check_float_array(x, fn, "x", 2, False)
    cdef cnp.ndarray W = check_float_array(w, fn, "w", 2, False)
    cdef cnp.ndarray Y = check_float_array(y, fn, "y", 2, True)
    cdef cnp.ndarray XC = check_float_array(xc, fn, "xc", 1, True)
    cdef cnp.ndarray WC = check_float_array(wc, fn, "wc", 1, True)
    cdef cnp.ndarray B = None
    for name, arr in (("w", W), ("y", Y), ("xc", XC), ("wc", WC)):
        check_same_dtype(arr, X, fn, name, "x")
    cdef Py_ssize_t n = X.shape[0], d_in = X.shape[1], d_out = W.shape[1]
    if W.shape[0] != d_in:
        raise ValueError(f"{fn}: argument 'w' has shape {(<object>W).shape}; expected "
                         f"({d_in}, out) to match x {(<object>X).shape}")
    check_shape(Y, (n, d_out), fn, "y", "(rows of x, columns of w)")
    # wc first holds the (in,) column sums, then W' (k, out): max(in, in * out) entries
    if XC.shape[0] < n * d_in or WC.shape[0] < max(d_in, d_in * d_out):
        raise ValueError(f"{fn}: scratch 'xc' needs {n * d_in} and 'wc' {max(d_in, d_in * d_out)} entries, "
                         f"got {XC.shape[0]} and {WC.shape[0]}")
    if not isinstance(cols, cnp.ndarray) or cols.dtype != np.int64 or cols.ndim != 1 \
            or cols.shape[0] < d_in or not cols.flags.c_contiguous or not cols.flags.writeable:
        raise TypeError(f"{fn}: argument 'cols' must be a writeable 1-D int64 array of at least "
                        f"{d_in} entries")
    if b is not None:
        B = check_float_array(b, fn, "b", 1, False)
        check_same_dtype(B, X, fn, "b", "x")
        check_shape(B, (d_out,), fn, "b", "(columns of w)")
    outs = (("y", Y), ("xc", XC), ("wc", WC))
    for k_, (oname, out) in enumerate(outs):
        for iname, inp in (("x", X), ("w", W)) + ((("b", B),) if B is not None else ()):
            check_no_overlap(out, inp, fn, oname, iname, False)
        for oname2, out2 in outs[k_ + 1:]:
            check_no_overlap(out, out2, fn, oname, oname2, False)
    check_blas_dim(n, fn, "batch size")
    check_blas_dim(d_in, fn, "in")
    check_blas_dim(d_out, fn, "out")
    cdef double frac = check_finite_float(max_fraction, fn, "max_fraction")
    cdef long long* pc = <long long*>cnp.PyArray_DATA(cols)
    cdef void* bp = data_or_null(B)
    cdef Py_ssize_t k
    cdef bint single = is_float32(X)
    with nogil:
        # the (in,) sums go in wc, overwritten later
        k = float_dispatch_ssize(single, nonzero_columns[float], nonzero_columns[double],
                                 data(X), n, d_in, data(WC), pc)
        if _worth(k, n, d_in, frac):
            float_dispatch(single, _compact_forward[float], _compact_forward[double],
                           act, n, d_in, d_out, data(X), data(W), bp, data(Y), al, pc, k,
                           data(XC), data(WC))
    return k if _worth(k, n, d_in, frac) else 0


def dense_backward_compact(xc, cols, k, dz, dw, db, scratch):
    """After dense_forward_compact returned k > 0: dW := X^T dZ with the rows of the zero
    columns set to 0 (dW' = X'^T dZ scattered to rows cols[:k]), db := sum_rows dZ (skipped
    when db is None). No input gradient (the layer's input is data). xc, cols as left by the
    forward; dz (n, out), dw (in, out), db (out,), scratch (k*out,) (the forward's wc may be
    reused)."""
    fn = "dense_backward_compact"
    cdef cnp.ndarray DZ = check_float_array(dz, fn, "dz", 2, False)
    cdef cnp.ndarray DW = check_float_array(dw, fn, "dw", 2, True)
    cdef cnp.ndarray XC = check_float_array(xc, fn, "xc", 1, False)
    cdef cnp.ndarray S = check_float_array(scratch, fn, "scratch", 1, True)
    cdef cnp.ndarray DB = None
    for name, arr in (("dw", DW), ("xc", XC), ("scratch", S)):
        check_same_dtype(arr, DZ, fn, name, "dz")
    cdef Py_ssize_t n = DZ.shape[0], d_out = DZ.shape[1], d_in = DW.shape[0]
    cdef Py_ssize_t kk = k
    check_shape(DW, (d_in, d_out), fn, "dw", "((in, columns of dz))")
    if not 0 < kk <= d_in:
        raise ValueError(f"{fn}: argument 'k' must be in [1, {d_in}], got {k}")
    if XC.shape[0] < n * kk or S.shape[0] < kk * d_out:
        raise ValueError(f"{fn}: 'xc' needs {n * kk} and 'scratch' {kk * d_out} entries, got "
                         f"{XC.shape[0]} and {S.shape[0]}")
    if not isinstance(cols, cnp.ndarray) or cols.dtype != np.int64 or cols.ndim != 1 \
            or cols.shape[0] < kk or not cols.flags.c_contiguous:
        raise TypeError(f"{fn}: argument 'cols' must be a 1-D int64 array of at least {kk} "
                        f"entries")
    cdef long long* pc = <long long*>cnp.PyArray_DATA(cols)
    cdef Py_ssize_t r
    for r in range(kk):
        if not (0 <= pc[r] < d_in) or (r > 0 and pc[r] <= pc[r - 1]):
            raise ValueError(f"{fn}: 'cols' must hold ascending columns in [0, {d_in}); "
                             f"cols[{r}] = {pc[r]}")
    if db is not None:
        DB = check_float_array(db, fn, "db", 1, True)
        check_same_dtype(DB, DZ, fn, "db", "dz")
        check_shape(DB, (d_out,), fn, "db", "(columns of dz)")
    outs = [("dw", DW), ("scratch", S)] + ([("db", DB)] if DB is not None else [])
    for k_, (oname, out) in enumerate(outs):
        for iname, inp in (("dz", DZ), ("xc", XC)):
            check_no_overlap(out, inp, fn, oname, iname, False)
        for oname2, out2 in outs[k_ + 1:]:
            check_no_overlap(out, out2, fn, oname, oname2, False)
    cdef void* dbp = data_or_null(DB)
    with nogil:
        float_dispatch(is_float32(DZ), _compact_backward[float], _compact_backward[double],
                       n, d_in, d_out, data(XC), pc, kk, data(DZ), data(DW), dbp, data(S))
    return None


# ---- the forward core kernels/chain.pyx runs (see cores.pxd)
from cores cimport dense_forward_f32_t, dense_forward_f64_t, core_capsule

cdef dense_forward_f32_t _core_f32 = _forward[float]
cdef dense_forward_f64_t _core_f64 = _forward[double]
CORES = {"dense_forward_f32": core_capsule(<void*>_core_f32),
         "dense_forward_f64": core_capsule(<void*>_core_f64)}
