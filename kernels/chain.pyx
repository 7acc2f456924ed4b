# distutils: extra_compile_args = -fno-trapping-math -ffp-contract=off
"""Raw inputs to model rows, and inference of a whole chain of row-wise ops in one call.

    take_affine(x, idx, a, b, out)      out[i, :] := x[idx[i], :] * a + b   (idx None: x[i])
    chain = Chain(dtype, in_features)
    chain.add_dense(w, b, activation="linear", alpha=0.0)     y := f(x W + b)
    chain.add_batchnorm(gamma, beta, mean, var, eps)          y := gamma (x - mean) / sqrt(var + eps) + beta
    chain.add_activation(name, alpha=0.0)                     y := f(x)  (softmax row-wise)
    chain.run(x, a, b, out)             out := ops(x * a + b)

``x`` is uint8, float32 or float64 (n, in_features); ``a`` and ``b`` are the preprocessing's
per-feature (or scalar) scale and shift, float64. The conversion computes ``x * a + b`` in
float64 (a product, then a sum, each rounded to float64) and rounds once to the output dtype,
bit for bit what ``Preprocessor.apply`` gives; ``a == 1, b == 0`` is a plain conversion.

A ``Chain`` runs the whole network with the GIL released and no Python between the layers:
GEMV for a single row, GEMM otherwise, bias + activation fused after each product, batch norm
in inference mode as a per-column scale and shift computed from the running statistics at each
call (so later training or loaded weights show through: the chain holds the arrays, not
copies). Its buffers grow to the largest batch seen; one chain per thread.
"""
cimport numpy as cnp
from cython cimport floating
from libc.stdint cimport uint8_t, int64_t
from libc.math cimport sqrt
from libc.stdlib cimport realloc, free

from _common cimport (check_float_array, check_same_dtype, check_shape, check_finite_float,
                      check_layout, received, float_dispatch_int, is_float32, data)
from blas cimport gemm_rm, gemv_rm
from dense cimport nonzero_columns, gather_columns
from activations cimport act_code, act_forward_rows, ACT_LINEAR, ACT_SOFTMAX

import numpy as np

cnp.import_array()

cdef extern from *:
    """
    #if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 11 && defined(__x86_64__) \
        && defined(__linux__)
    #define DL_CHAIN_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
    #else
    #define DL_CHAIN_CLONES
    #endif
    /* y := x W for one row x (d_in) and a row-major W (d_in, d_out), skipping the zero entries
       of x: y = sum over i with x_i != 0 of x_i W[i, :] (rows of W added in order i). Only
       the rows of W that matter are read: an image with a blank background, a one-hot or
       bag-of-words row reads a fraction of W. (A zero x_i skips its row even when that row
       holds inf or NaN, where x W would give NaN.) */
    #define DL_SPARSE_GEMV(T, SUFFIX)                                                       \
    DL_CHAIN_CLONES static void dl_sparse_gemv_##SUFFIX(                                   \
            const T* x, Py_ssize_t d_in, Py_ssize_t d_out, const T* w, T* y) {             \
        for (Py_ssize_t j = 0; j < d_out; j++) y[j] = (T)0;                                \
        for (Py_ssize_t i = 0; i < d_in; i++) {                                            \
            T xi = x[i];                                                                   \
            if (xi == (T)0) continue;                                                      \
            const T* wr = w + i * d_out;                                                   \
            for (Py_ssize_t j = 0; j < d_out; j++) y[j] += xi * wr[j];                     \
        }                                                                                  \
    }
    DL_SPARSE_GEMV(float, f32)
    DL_SPARSE_GEMV(double, f64)

    /* one row of the input conversion, out := (D)((double)x * a + b), both steps in double
       and the only rounding to D the last (Preprocessor.apply does the same in NumPy: a
       float64 multiply, a float64 add, then the cast). Rounding x * a to a float32 output
       before adding b would lose the cancellation standardize relies on: a constant 1e20
       gave 2e12, not 0. The file is compiled with -ffp-contract=off so that no clone fuses
       the two steps into an FMA (one rounding, not NumPy's two). Multi-versioned: the
       uint8 -> float conversion runs 16 lanes wide on AVX-512. */
    #define DL_AFFINE_LOOP(D, AJ, BJ)                                                       \
        for (Py_ssize_t j = 0; j < d; j++) {                                               \
            double t = (double)x[j] * (AJ);                                                \
            out[j] = (D)(t + (BJ));                                                        \
        }
    #define DL_AFFINE_ROW(S, D, SUFFIX)                                                     \
    DL_CHAIN_CLONES static void dl_affine_row_##SUFFIX(                                    \
            const S* x, Py_ssize_t d, const double* a, int a_vec, const double* b,         \
            int b_vec, int has_b, int identity, D* out) {                                  \
        if (identity) {                                                                    \
            for (Py_ssize_t j = 0; j < d; j++) out[j] = (D)x[j];                           \
            return;                                                                        \
        }                                                                                  \
        double a0 = a[0], b0 = has_b ? b[0] : 0.0;                                         \
        if (!has_b) {                                                                      \
            if (a_vec) {                                                                   \
                for (Py_ssize_t j = 0; j < d; j++) out[j] = (D)((double)x[j] * a[j]);      \
            } else {                                                                       \
                for (Py_ssize_t j = 0; j < d; j++) out[j] = (D)((double)x[j] * a0);        \
            }                                                                              \
        } else if (a_vec && b_vec) {                                                       \
            DL_AFFINE_LOOP(D, a[j], b[j])                                                  \
        } else if (a_vec) {                                                                \
            DL_AFFINE_LOOP(D, a[j], b0)                                                    \
        } else if (b_vec) {                                                                \
            DL_AFFINE_LOOP(D, a0, b[j])                                                    \
        } else {                                                                           \
            DL_AFFINE_LOOP(D, a0, b0)                                                      \
        }                                                                                  \
    }
    DL_AFFINE_ROW(uint8_t, float, u8_f32)
    DL_AFFINE_ROW(uint8_t, double, u8_f64)
    DL_AFFINE_ROW(float, float, f32_f32)
    DL_AFFINE_ROW(float, double, f32_f64)
    DL_AFFINE_ROW(double, float, f64_f32)
    DL_AFFINE_ROW(double, double, f64_f64)

    /* ask for the cache lines of `bytes` bytes at p (a row gathered a few rows later) */
    static inline void dl_prefetch_span(const void* p, Py_ssize_t bytes) {
        const char* c = (const char*)p;
        for (Py_ssize_t o = 0; o < bytes; o += 64) __builtin_prefetch(c + o, 0, 0);
        __builtin_prefetch(c + bytes - 1, 0, 0);
    }
    """
    void dl_prefetch_span(const void* p, Py_ssize_t bytes) nogil
    void dl_sparse_gemv_f32(const float* x, Py_ssize_t d_in, Py_ssize_t d_out, const float* w,
                            float* y) nogil
    void dl_sparse_gemv_f64(const double* x, Py_ssize_t d_in, Py_ssize_t d_out,
                            const double* w, double* y) nogil
    void dl_affine_row_u8_f32(const uint8_t* x, Py_ssize_t d, const double* a, int a_vec,
                            const double* b, int b_vec, int has_b, int identity,
                            float* out) nogil
    void dl_affine_row_u8_f64(const uint8_t* x, Py_ssize_t d, const double* a, int a_vec,
                            const double* b, int b_vec, int has_b, int identity,
                            double* out) nogil
    void dl_affine_row_f32_f32(const float* x, Py_ssize_t d, const double* a, int a_vec,
                            const double* b, int b_vec, int has_b, int identity,
                            float* out) nogil
    void dl_affine_row_f32_f64(const float* x, Py_ssize_t d, const double* a, int a_vec,
                            const double* b, int b_vec, int has_b, int identity,
                            double* out) nogil
    void dl_affine_row_f64_f32(const double* x, Py_ssize_t d, const double* a, int a_vec,
                            const double* b, int b_vec, int has_b, int identity,
                            float* out) nogil
    void dl_affine_row_f64_f64(const double* x, Py_ssize_t d, const double* a, int a_vec,
                            const double* b, int b_vec, int has_b, int identity,
                            double* out) nogil

# a single row with at most this fraction of non-zeros takes the zero-skipping product
cdef double SPARSE_DENSITY = 0.5
# several rows entering a first dense op run on their non-zero columns only (X' W', see
# dense.pyx) when rows * (zero columns) >= COMPACT_ROWS * in: gathering X' and W' costs about
# as much as this many rows of the product (no scatter of a gradient here, unlike training)
cdef Py_ssize_t COMPACT_ROWS = 12


# rows requested ahead of the one being converted by take_affine
cdef Py_ssize_t PREFETCH_ROWS = 8


ctypedef fused src_t:
    uint8_t
    float
    double


# ---------------------------------------------------------------- nogil cores

cdef int affine_rows(const src_t* x, Py_ssize_t rows, Py_ssize_t d, const int64_t* idx,
                     Py_ssize_t n, const double* a, bint a_vec, const double* b, bint b_vec,
                     bint has_b, bint identity, floating* out) noexcept nogil:
    """out[i] := x[idx[i]] * a + b (in float64, then rounded to the output); -1 - i when idx[i]
    is out of range, else 0."""
    cdef Py_ssize_t i, r, ahead
    cdef const src_t* row
    cdef floating* orow
    for i in range(n):
        r = i if idx == NULL else idx[i]
        if r < 0 or r >= rows:
            return -1 - <int>i
        if idx != NULL and i + PREFETCH_ROWS < n:
            # gathered rows are scattered over a large array: the memory latency of each row,
            # not the conversion, bounds the loop unless later rows are requested early
            ahead = idx[i + PREFETCH_ROWS]
            if 0 <= ahead < rows:
                dl_prefetch_span(x + ahead * d, d * sizeof(src_t))
        row = x + r * d
        orow = out + i * d
        if src_t is uint8_t:
            if floating is float:
                dl_affine_row_u8_f32(row, d, a, a_vec, b, b_vec, has_b, identity, orow)
            else:
                dl_affine_row_u8_f64(row, d, a, a_vec, b, b_vec, has_b, identity, orow)
        elif src_t is float:
            if floating is float:
                dl_affine_row_f32_f32(row, d, a, a_vec, b, b_vec, has_b, identity, orow)
            else:
                dl_affine_row_f32_f64(row, d, a, a_vec, b, b_vec, has_b, identity, orow)
        else:
            if floating is float:
                dl_affine_row_f64_f32(row, d, a, a_vec, b, b_vec, has_b, identity, orow)
            else:
                dl_affine_row_f64_f64(row, d, a, a_vec, b, b_vec, has_b, identity, orow)
    return 0


cdef enum:
    OP_DENSE = 0
    OP_BATCHNORM = 1
    OP_ACTIVATION = 2


cdef struct Op:
    int kind
    int act
    double alpha
    double eps
    Py_ssize_t d_in
    Py_ssize_t d_out
    void* w          # dense: (d_in, d_out); batchnorm: gamma
    void* b          # dense: bias or NULL; batchnorm: beta
    void* mean
    void* var


cdef int run_ops(const Op* ops, int n_ops, Py_ssize_t n, floating* x, floating* buf0,
                 floating* buf1, floating* scratch, floating* out, floating* wc,
                 long long* cols) noexcept nogil:
    """Apply ops to x (n, d_in of the first op) -> out; x is overwritten (it is the chain's own
    input buffer). Returns -1 - k when op k (a batch norm) has a negative running variance."""
    cdef int k
    cdef Py_ssize_t i, j, d, nnz, kc
    cdef const Op* op
    cdef floating* cur = x
    cdef floating* dst
    cdef floating* row
    cdef const floating* g
    cdef const floating* bt
    cdef const floating* mu
    cdef const floating* var
    cdef floating* sc
    cdef floating* sh
    cdef double s
    for k in range(n_ops):
        op = &ops[k]
        if op.kind == OP_DENSE:
            if k == n_ops - 1:
                dst = out
            else:
                dst = buf0 if cur != buf0 else buf1
            if n == 1:
                nnz = 0
                for j in range(op.d_in):
                    nnz += cur[j] != 0
                if nnz <= SPARSE_DENSITY * op.d_in:
                    if floating is float:
                        dl_sparse_gemv_f32(cur, op.d_in, op.d_out, <float*>op.w, dst)
                    else:
                        dl_sparse_gemv_f64(cur, op.d_in, op.d_out, <double*>op.w, dst)
                else:
                    gemv_rm(True, <int>op.d_in, <int>op.d_out, <floating>1, <floating*>op.w,
                            cur, <floating>0, dst)
            else:
                kc = 0
                if k == 0 and wc != NULL:
                    # the input rows: compact their zero columns away when it pays (xc = buf1,
                    # free until the second op; the column sums go in the scratch)
                    kc = nonzero_columns(cur, n, op.d_in, scratch, cols)
                    if kc == 0 or n * (op.d_in - kc) < COMPACT_ROWS * op.d_in:
                        kc = 0
                if kc:
                    gather_columns(cur, n, op.d_in, op.d_out, <floating*>op.w, cols, kc, buf1,
                                   wc)
                    gemm_rm(False, False, <int>n, <int>op.d_out, <int>kc, <floating>1, buf1,
                            wc, <floating>0, dst)
                else:
                    gemm_rm(False, False, <int>n, <int>op.d_out, <int>op.d_in, <floating>1,
                            cur, <floating*>op.w, <floating>0, dst)
            if op.act != ACT_LINEAR or op.b != NULL:
                act_forward_rows(op.act, dst, dst, <floating*>op.b, n, op.d_out,
                                 <floating>op.alpha)
            cur = dst
        else:
            dst = out if k == n_ops - 1 else cur     # element-wise: in place, or into out
            d = op.d_out
            if op.kind == OP_ACTIVATION:
                act_forward_rows(op.act, dst, cur, <floating*>NULL, n, d, <floating>op.alpha)
            else:
                # y := x sc + sh, sc = gamma / sqrt(var + eps), sh = beta - mean sc (in double,
                # as batchnorm_forward_eval)
                g = <floating*>op.w
                bt = <floating*>op.b
                mu = <floating*>op.mean
                var = <floating*>op.var
                sc = scratch
                sh = scratch + d
                for j in range(d):
                    if not var[j] >= 0:
                        return -1 - k
                    s = g[j] / sqrt(<double>var[j] + op.eps)
                    sc[j] = <floating>s
                    sh[j] = <floating>(bt[j] - mu[j] * s)
                for i in range(n):
                    row = cur + i * d
                    for j in range(d):
                        dst[i * d + j] = row[j] * sc[j] + sh[j]
            cur = dst
    return 0


# ---------------------------------------------------------------- Python wrappers

cdef tuple _affine_args(object a, object b, Py_ssize_t d, str fn):
    """(A, B, a_vec, b_vec, has_b, identity) from the scalar or per-feature scale and shift."""
    # np.asarray keeps a 0-d array 0-d (ascontiguousarray would make it (1,))
    cdef cnp.ndarray A = np.asarray(a, dtype=np.float64)
    cdef cnp.ndarray B = np.asarray(b, dtype=np.float64)
    if not A.flags.c_contiguous:
        A = np.ascontiguousarray(A)
    if not B.flags.c_contiguous:
        B = np.ascontiguousarray(B)
    for name, arr in (("a", A), ("b", B)):
        shape = (<object>arr).shape
        if not (len(shape) == 0 or shape == (d,)):
            raise ValueError(f"{fn}: argument '{name}' has shape {shape}; expected a scalar "
                             f"or ({d},) (one value per feature)")
    a_vec = A.ndim == 1
    b_vec = B.ndim == 1
    has_b = b_vec or float(B) != 0.0
    identity = not a_vec and not has_b and float(A) == 1.0
    return A, B, a_vec, b_vec, has_b, identity


cdef cnp.ndarray _raw_array(object x, str fn, str name):
    if not isinstance(x, cnp.ndarray):
        raise TypeError(f"{fn}: argument '{name}' must be a numpy.ndarray of uint8, float32 or "
                        f"float64, got {received(x)}")
    cdef cnp.ndarray X = <cnp.ndarray>x
    cdef int t = cnp.PyArray_TYPE(X)
    if t != cnp.NPY_UINT8 and t != cnp.NPY_FLOAT32 and t != cnp.NPY_FLOAT64:
        raise TypeError(f"{fn}: argument '{name}' has dtype {X.dtype}; expected uint8, float32 or "
                        f"float64")
    if not cnp.PyArray_ISNOTSWAPPED(X):
        raise TypeError(f"{fn}: argument '{name}' has dtype {X.dtype.str} (non-native byte "
                        f"order); expected uint8, float32 or float64 in native byte order")
    if cnp.PyArray_NDIM(X) != 2:
        raise ValueError(f"{fn}: argument '{name}' must be 2-D (rows, features), got shape "
                         f"{(<object>X).shape}")
    check_layout(X, fn, name, False)
    return X


cdef int _affine(cnp.ndarray X, const int64_t* idx, Py_ssize_t n, cnp.ndarray A, cnp.ndarray B,
                 bint a_vec, bint b_vec, bint has_b, bint identity, cnp.ndarray OUT):
    cdef Py_ssize_t rows = X.shape[0], d = X.shape[1]
    cdef int rc = 0
    cdef const double* pa = <double*>cnp.PyArray_DATA(A)
    cdef const double* pb = <double*>cnp.PyArray_DATA(B)
    cdef bint f32 = is_float32(OUT)
    with nogil:
        # the raw input's dtype (uint8, float32, float64) is the other axis of the dispatch
        if cnp.PyArray_TYPE(X) == cnp.NPY_UINT8:
            rc = float_dispatch_int(f32, affine_rows[uint8_t, float], affine_rows[uint8_t, double],
                                    data(X), rows, d, idx, n, pa, a_vec, pb, b_vec,
                                    has_b, identity, data(OUT))
        elif is_float32(X):
            rc = float_dispatch_int(f32, affine_rows[float, float], affine_rows[float, double],
                                    data(X), rows, d, idx, n, pa, a_vec, pb, b_vec,
                                    has_b, identity, data(OUT))
        else:
            rc = float_dispatch_int(f32, affine_rows[double, float], affine_rows[double, double],
                                    data(X), rows, d, idx, n, pa, a_vec, pb, b_vec,
                                    has_b, identity, data(OUT))
    return rc


def take_affine(x, idx, a, b, out):
    """out[i, :] := x[idx[i], :] * a + b (x[i] when idx is None)   x (rows, d) uint8, float32 or
    float64; idx (n,) int64 in [0, rows); a, b float64 scalars or (d,); out (n, d) float32 or
    float64. Computed in float64 and rounded once to ``out``'s dtype (as Preprocessor.apply)."""
    fn = "take_affine"
    cdef cnp.ndarray X = _raw_array(x, fn, "x")
    cdef cnp.ndarray OUT = check_float_array(out, fn, "out", 2, True)
    cdef Py_ssize_t d = X.shape[1], n
    cdef cnp.ndarray I = None
    cdef const int64_t* pidx = NULL
    if idx is None:
        n = X.shape[0]
    else:
        if not isinstance(idx, cnp.ndarray) or (<cnp.ndarray>idx).dtype != np.int64 \
                or (<cnp.ndarray>idx).ndim != 1 or not (<cnp.ndarray>idx).flags.c_contiguous:
            raise TypeError(f"{fn}: argument 'idx' must be a 1-D C-contiguous int64 array, got "
                            f"{type(idx).__name__} {getattr(idx, 'dtype', '')}")
        I = <cnp.ndarray>idx
        n = I.shape[0]
        pidx = <int64_t*>cnp.PyArray_DATA(I)
    check_shape(OUT, (n, d), fn, "out", "(rows taken, features of x)")
    if np.shares_memory(OUT, X):
        raise ValueError(f"{fn}: argument 'out' overlaps 'x'")
    A, B, a_vec, b_vec, has_b, identity = _affine_args(a, b, d, fn)
    cdef int rc = _affine(X, pidx, n, A, B, a_vec, b_vec, has_b, identity, OUT)
    if rc:
        raise IndexError(f"{fn}: idx[{-1 - rc}] = {int(I[-1 - rc])} is out of range for x with "
                         f"{X.shape[0]} rows")
    return out


cdef class Chain:
    """A chain of dense / batch norm / activation ops run in one call (see the module doc)."""

    cdef Op* ops
    cdef int n_ops
    cdef readonly object dtype
    cdef readonly Py_ssize_t in_features
    cdef readonly Py_ssize_t out_features
    cdef Py_ssize_t width          # widest row of any stage
    cdef Py_ssize_t capacity       # rows the buffers hold
    cdef list keep                 # the arrays the ops point into
    cdef cnp.ndarray xbuf, buf0, buf1, scratch
    cdef cnp.ndarray wc, cols     # the first dense op's compacted weights, non-zero columns

    def __cinit__(self):
        self.ops = NULL
        self.n_ops = 0

    def __dealloc__(self):
        free(self.ops)

    def __init__(self, dtype, in_features):
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise TypeError(f"Chain: dtype must be float32 or float64, got {self.dtype}")
        if int(in_features) < 1:
            raise ValueError(f"Chain: in_features must be >= 1, got {in_features}")
        self.in_features = self.out_features = self.width = int(in_features)
        self.capacity = 0
        self.keep = []

    cdef Op* _push(self, int kind, Py_ssize_t d_out) except NULL:
        cdef Op* grown = <Op*>realloc(self.ops, (self.n_ops + 1) * sizeof(Op))
        if grown == NULL:
            raise MemoryError("Chain: cannot grow the op list")
        self.ops = grown
        cdef Op* op = &self.ops[self.n_ops]
        op.kind = kind
        op.act = ACT_LINEAR
        op.alpha = 0.0
        op.eps = 0.0
        op.d_in = self.out_features
        op.d_out = d_out
        op.w = op.b = op.mean = op.var = NULL
        self.n_ops += 1
        self.out_features = d_out
        if d_out > self.width:
            self.width = d_out
        self.capacity = 0          # buffers are re-made for the new widths
        return op

    cdef cnp.ndarray _param(self, obj, str fn, str name, tuple shape):
        cdef cnp.ndarray a = check_float_array(obj, fn, name, len(shape), False)
        if a.dtype != self.dtype:
            raise TypeError(f"{fn}: argument '{name}' has dtype {a.dtype}; expected the chain's "
                            f"{self.dtype}")
        check_shape(a, shape, fn, name, "")
        self.keep.append(a)
        return a

    def add_dense(self, w, b=None, activation="linear", alpha=0.0):
        """y := f(x W + b)   w (features so far, out), b (out,) or None."""
        fn = "Chain.add_dense"
        cdef double al = check_finite_float(alpha, fn, "alpha")
        cdef int act = act_code(activation, fn, al)
        cdef Py_ssize_t d_in = self.out_features
        cdef cnp.ndarray W = check_float_array(w, fn, "w", 2, False)
        if W.shape[0] != d_in:
            raise ValueError(f"{fn}: argument 'w' has shape {(<object>W).shape}; expected "
                             f"({d_in}, out)")
        W = self._param(w, fn, "w", (d_in, W.shape[1]))
        cdef cnp.ndarray B = self._param(b, fn, "b", (W.shape[1],)) if b is not None else None
        cdef Op* op = self._push(OP_DENSE, W.shape[1])
        op.act = act
        op.alpha = al
        op.w = cnp.PyArray_DATA(W)
        op.b = cnp.PyArray_DATA(B) if B is not None else NULL

    def add_batchnorm(self, gamma, beta, mean, var, eps):
        """y := gamma (x - mean) / sqrt(var + eps) + beta   (inference mode; all (features,))."""
        fn = "Chain.add_batchnorm"
        cdef Py_ssize_t d = self.out_features
        cdef double e = check_finite_float(eps, fn, "eps")
        if not e > 0:
            raise ValueError(f"{fn}: argument 'eps' must be > 0, got {e}")
        arrays = [self._param(a, fn, name, (d,)) for a, name in
                  ((gamma, "gamma"), (beta, "beta"), (mean, "mean"), (var, "var"))]
        cdef Op* op = self._push(OP_BATCHNORM, d)
        op.eps = e
        op.w = cnp.PyArray_DATA(arrays[0])
        op.b = cnp.PyArray_DATA(arrays[1])
        op.mean = cnp.PyArray_DATA(arrays[2])
        op.var = cnp.PyArray_DATA(arrays[3])

    def add_activation(self, name, alpha=0.0):
        """y := f(x) element-wise (softmax over each row)."""
        fn = "Chain.add_activation"
        cdef double al = check_finite_float(alpha, fn, "alpha")
        cdef int act = act_code(name, fn, al)
        cdef Op* op = self._push(OP_ACTIVATION, self.out_features)
        op.act = act
        op.alpha = al

    def __len__(self):
        return self.n_ops

    cdef _grow(self, Py_ssize_t n):
        self.xbuf = np.empty((n, self.in_features), self.dtype)
        self.buf0 = np.empty(n * self.width, self.dtype)
        self.buf1 = np.empty(n * self.width, self.dtype)
        self.scratch = np.empty(2 * self.width, self.dtype)
        self.wc = self.cols = None
        if n > 1 and self.n_ops and self.ops[0].kind == OP_DENSE:
            self.wc = np.empty(self.ops[0].d_in * self.ops[0].d_out, self.dtype)
            self.cols = np.empty(self.ops[0].d_in, np.int64)
        self.capacity = n

    def run(self, x, a, b, out):
        """out := ops(x * a + b)   x (n, in_features) uint8/float32/float64; a, b float64
        scalars or (in_features,); out (n, out_features) in the chain's dtype. Returns out."""
        fn = "Chain.run"
        cdef cnp.ndarray X = _raw_array(x, fn, "x")
        cdef cnp.ndarray OUT = check_float_array(out, fn, "out", 2, True)
        cdef Py_ssize_t n = X.shape[0]
        if X.shape[1] != self.in_features:
            raise ValueError(f"{fn}: argument 'x' has shape {(<object>X).shape}; expected "
                             f"(rows, {self.in_features})")
        if OUT.dtype != self.dtype:
            raise TypeError(f"{fn}: argument 'out' has dtype {OUT.dtype}; expected the chain's "
                            f"{self.dtype}")
        check_shape(OUT, (n, self.out_features), fn, "out", "(rows of x, outputs of the chain)")
        if n == 0:
            return out
        if n > self.capacity:
            self._grow(n)
        A, B, a_vec, b_vec, has_b, identity = _affine_args(a, b, self.in_features, fn)
        # no ops: the conversion writes the result itself
        if self.n_ops == 0 and np.shares_memory(OUT, X):
            raise ValueError(f"{fn}: argument 'out' overlaps 'x'")
        cdef cnp.ndarray first = OUT if self.n_ops == 0 else self.xbuf
        _affine(X, NULL, n, A, B, a_vec, b_vec, has_b, identity, first)
        if self.n_ops == 0:
            return out
        cdef int rc
        cdef void* px = cnp.PyArray_DATA(self.xbuf)
        cdef void* p0 = cnp.PyArray_DATA(self.buf0)
        cdef void* p1 = cnp.PyArray_DATA(self.buf1)
        cdef void* ps = cnp.PyArray_DATA(self.scratch)
        cdef void* pw = cnp.PyArray_DATA(self.wc) if self.wc is not None else NULL
        cdef long long* pc = <long long*>cnp.PyArray_DATA(self.cols) if self.cols is not None else NULL
        with nogil:
            rc = float_dispatch_int(is_float32(OUT), run_ops[float], run_ops[double],
                                    self.ops, self.n_ops, n, px, p0, p1, ps, data(OUT), pw, pc)
        if rc:
            raise ValueError(f"{fn}: op {-1 - rc} (batch norm) has a negative or NaN running "
                             f"variance; a variance must be >= 0")
        return out
