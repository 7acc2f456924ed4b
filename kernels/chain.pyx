# distutils: extra_compile_args = -fno-trapping-math -ffp-contract=off
"""Raw inputs to model rows, and inference of a whole network in one call.

    take_affine(x, idx, a, b, out)      out[i, :] := x[idx[i], :] * a + b   (idx None: x[i])
    chain = Chain(dtype, in_shape)      in_shape: features, or (C, H, W) for images
    chain.add_dense(w, b, activation="linear", alpha=0.0)     y := f(x W + b)
    chain.add_batchnorm(gamma, beta, mean, var, eps, steps=1)  y := gamma (x - mean) / sqrt(var + eps) + beta
                                                          (per channel of T x C samples: steps=T)
    chain.add_batchnorm2d(gamma, beta, mean, var, eps)        the same per channel of C x H x W
    chain.add_activation(name, alpha=0.0)                     y := f(x)  (softmax over each sample)
    chain.add_conv2d(w, b, stride, padding, dilation, groups, activation, alpha)
    chain.add_maxpool(kernel, stride, padding), chain.add_avgpool(kernel, stride, padding)
    chain.add_global_maxpool(), chain.add_global_avgpool()   (C, H, W) -> (C,)
    chain.add_flatten()                                       (C, H, W) -> (C*H*W,): no work
    v = chain.value; chain.use(v)       graphs: a handle of the current value; read it again
    chain.add_add([v1, v2, ...]), chain.add_concat([v1, v2, ...], axis)
    chain.run(x, a, b, out)             out := ops(x * a + b)

``x`` is uint8, float32 or float64 (n, in_features); ``a`` and ``b`` are the preprocessing's
per-feature (or scalar) scale and shift, float64. The conversion computes ``x * a + b`` in
float64 (a product, then a sum, each rounded to float64) and rounds once to the output dtype,
bit for bit what ``Preprocessor.apply`` gives; ``a == 1, b == 0`` is a plain conversion.

A ``Chain`` runs the whole network with the GIL released and no Python between the layers.
Each op knows the per-sample shape it reads and writes (``chain.shape`` is the last one);
every sample is a contiguous row of the buffers (NCHW for images), so flatten costs nothing.
Parameters and running statistics are the caller's arrays, read at each call (later training
or loaded weights show through). Its buffers grow to the largest batch seen and are reused:
no allocation per call once warm. One chain per thread (the buffers are its own).

Two ways to run the ops:
- a chain of row ops only (dense, batch norm per feature, activations: an MLP) takes the
  shortcuts measured for it: a zero-skipping product or GEMV for a single row, the input's zero
  columns compacted away for the first product; bias, activation and batch norm run in this
  module's loops. Equal to the layers' forward to rounding (not bit for bit).
- ``exact`` (set by the constructor, and by adding any image op: conv2d, pooling, batch norm
  per channel of an image or a sequence, or a graph: ``use`` of an earlier value, add, concat) runs every op through the very core the layer's kernel runs (conv.pyx,
  pool.pyx, batchnorm.pyx, dense.pyx, activations.pyx, taken by pointer: see cores.pxd), with
  the layers' order of operations (gelu and swish after a linear product), so the result is
  bit for bit the layer-by-layer forward in eval mode. (An inline copy here would not be: this
  file is compiled with -ffp-contract=off for the conversion, the kernels without.)
"""
cimport numpy as cnp
from cython cimport floating
from libc.stdint cimport uint8_t, int64_t
from libc.math cimport sqrt
from libc.stdlib cimport calloc, realloc, free

from _common cimport (check_float_array, check_same_dtype, check_shape, check_finite_float,
                      check_layout, check_blas_dim, received, float_dispatch_int, is_float32,
                      data)
from blas cimport gemm_rm, gemv_rm
from dense cimport nonzero_columns, gather_columns
from activations cimport act_code, act_forward_rows, act_needs_input, ACT_LINEAR, ACT_SOFTMAX
from conv cimport ConvGeom, parse_pair, parse_padding
from cores cimport (core_pointer, conv2d_forward_f32_t, conv2d_forward_f64_t, maxpool_forward_t,
                    avgpool_f32_t, avgpool_f64_t, batchnorm_eval_f32_t, batchnorm_eval_f64_t,
                    batchnorm2d_eval_f32_t, batchnorm2d_eval_f64_t, dense_forward_f32_t,
                    dense_forward_f64_t, activation_rows_f32_t, activation_rows_f64_t)

import numpy as np

from dlrun.kernels import activations as _activations, batchnorm as _batchnorm
from dlrun.kernels import conv as _conv, dense as _dense, pool as _pool

cnp.import_array()

# the layers' own cores (see cores.pxd), taken once
cdef conv2d_forward_f32_t conv_f32 = <conv2d_forward_f32_t>core_pointer(_conv, "conv2d_forward_f32")
cdef conv2d_forward_f64_t conv_f64 = <conv2d_forward_f64_t>core_pointer(_conv, "conv2d_forward_f64")
cdef maxpool_forward_t maxpool_core = <maxpool_forward_t>core_pointer(_pool, "maxpool_forward")
cdef avgpool_f32_t avgpool_f32 = <avgpool_f32_t>core_pointer(_pool, "avgpool_f32")
cdef avgpool_f64_t avgpool_f64 = <avgpool_f64_t>core_pointer(_pool, "avgpool_f64")
cdef batchnorm_eval_f32_t bn_f32 = <batchnorm_eval_f32_t>core_pointer(_batchnorm, "batchnorm_eval_f32")
cdef batchnorm_eval_f64_t bn_f64 = <batchnorm_eval_f64_t>core_pointer(_batchnorm, "batchnorm_eval_f64")
cdef batchnorm2d_eval_f32_t bn2d_f32 = <batchnorm2d_eval_f32_t>core_pointer(
    _batchnorm, "batchnorm2d_eval_f32")
cdef batchnorm2d_eval_f64_t bn2d_f64 = <batchnorm2d_eval_f64_t>core_pointer(
    _batchnorm, "batchnorm2d_eval_f64")
cdef dense_forward_f32_t dense_f32 = <dense_forward_f32_t>core_pointer(_dense, "dense_forward_f32")
cdef dense_forward_f64_t dense_f64 = <dense_forward_f64_t>core_pointer(_dense, "dense_forward_f64")
cdef activation_rows_f32_t act_f32 = <activation_rows_f32_t>core_pointer(
    _activations, "activation_rows_f32")
cdef activation_rows_f64_t act_f64 = <activation_rows_f64_t>core_pointer(
    _activations, "activation_rows_f64")

cdef extern from *:
    """
    /* y := x W for one row x (d_in) and a row-major W (d_in, d_out), skipping the zero entries
       of x: y = sum over i with x_i != 0 of x_i W[i, :] (rows of W added in order i). Only
       the rows of W that matter are read: an image with a blank background, a one-hot or
       bag-of-words row reads a fraction of W. (A zero x_i skips its row even when that row
       holds inf or NaN, where x W would give NaN.) */
    #define DL_SPARSE_GEMV(T, SUFFIX)                                                       \
    DL_CLONES_AVX2 static void dl_sparse_gemv_##SUFFIX(                                    \
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
    DL_CLONES static void dl_affine_row_##SUFFIX(                                          \
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
    OP_CONV2D = 3
    OP_MAXPOOL = 4       # windows, or a whole map (global)
    OP_AVGPOOL = 5
    OP_BATCHNORM2D = 6
    OP_ADD = 7           # the sum of several values (in the order given)
    OP_CONCAT = 8        # several values side by side along an axis of the sample


cdef struct Op:
    int kind
    int act
    bint act_after   # exact: f applied after a linear op, as the layer does for gelu / swish
    double alpha
    double eps
    Py_ssize_t d_in  # features of one sample in and out
    Py_ssize_t d_out
    void* w          # dense: (d_in, d_out); conv2d: (F, C/groups, kh, kw); batchnorm: gamma
    void* b          # dense, conv2d: bias or NULL; batchnorm: beta
    void* mean
    void* var
    ConvGeom g       # conv2d, pooling: per-sample geometry (g.n is set at each call)
    # exact chains: the buffers (slots, planned by Chain._plan) the op reads and writes
    int src          # slot of the input (0: the converted input)
    int dst          # slot of the output; -1: the caller's out
    int n_src        # add, concat: the inputs, their slots in srcs
    int* srcs
    Py_ssize_t outer     # concat: sample = outer blocks, each the inputs' inner[i] values
    Py_ssize_t* inner


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


cdef inline void act_rows(int act, floating* y, const floating* x, Py_ssize_t n, Py_ssize_t d,
                          double alpha) noexcept nogil:
    if floating is float:
        act_f32(act, y, x, NULL, n, d, <float>alpha)
    else:
        act_f64(act, y, x, NULL, n, d, alpha)


cdef int variance_ok(const floating* var, Py_ssize_t d) noexcept nogil:
    cdef Py_ssize_t j
    for j in range(d):
        if not var[j] >= 0:
            return 0
    return 1


cdef void join_ops(const Op* op, Py_ssize_t n, floating** slots, floating* dst) noexcept nogil:
    """add: dst := ((v0 + v1) + v2) + ... element by element (np.add's order); concat: each
    sample's outer blocks, the inputs' inner values side by side."""
    cdef Py_ssize_t i, s, o, j, m
    cdef const floating* a
    cdef const floating* b
    cdef const floating* src
    cdef floating* row
    if op.kind == OP_ADD:
        m = n * op.d_out
        a = slots[op.srcs[0]]
        for j in range(1, op.n_src):
            b = slots[op.srcs[j]]
            for i in range(m):
                dst[i] = a[i] + b[i]
            a = dst
        return
    for s in range(n):
        row = dst + s * op.d_out
        for o in range(op.outer):
            for j in range(op.n_src):
                m = op.inner[j]
                src = slots[op.srcs[j]] + (s * op.outer + o) * m
                for i in range(m):
                    row[i] = src[i]
                row += m


cdef int run_exact(const Op* ops, int n_ops, Py_ssize_t n, floating** slots, floating* out,
                   int final, Py_ssize_t final_d, floating* col, int64_t* am,
                   int* why) noexcept nogil:
    """Apply ops to slots[0] (n, the chain's input features) -> out through the layers' own
    cores (see the module doc), each op reading and writing the slots planned for it (the
    last one out; ``final`` >= 0: copy that slot, final_d values a sample, to out at the end). Returns -1 - k when op k
    fails: why = 1, a negative or NaN running variance; 2, no memory for batch norm's scale
    and shift."""
    cdef int k, act
    cdef Py_ssize_t s
    cdef const Op* op
    cdef ConvGeom g
    cdef floating* cur
    cdef floating* dst
    cdef bint single = floating is float
    for k in range(n_ops):
        op = &ops[k]
        act = ACT_LINEAR if op.act_after else op.act
        cur = slots[op.src]
        dst = out if op.dst < 0 else slots[op.dst]
        if op.kind == OP_ADD or op.kind == OP_CONCAT:
            join_ops(op, n, slots, dst)
        elif op.kind == OP_DENSE:
            if floating is float:
                dense_f32(act, <int>n, <int>op.d_in, <int>op.d_out, cur, <float*>op.w,
                          <float*>op.b, dst, <float>op.alpha)
            else:
                dense_f64(act, <int>n, <int>op.d_in, <int>op.d_out, cur, <double*>op.w,
                          <double*>op.b, dst, op.alpha)
        elif op.kind == OP_CONV2D:
            g = op.g
            g.n = n
            # nb = 1: one GEMM per (sample, group), what the layer's workspace gives
            if floating is float:
                conv_f32(&g, act, cur, <float*>op.w, <float*>op.b, dst, col, 1, <float>op.alpha)
            else:
                conv_f64(&g, act, cur, <double*>op.w, <double*>op.b, dst, col, 1, op.alpha)
        elif op.kind == OP_MAXPOOL:
            # sample by sample: the window indices (not needed here) fill one sample's scratch
            g = op.g
            g.n = 1
            for s in range(n):
                maxpool_core(&g, cur + s * op.d_in, dst + s * op.d_out, am, single)
        elif op.kind == OP_AVGPOOL:
            g = op.g
            g.n = n
            if floating is float:
                avgpool_f32(&g, cur, dst, False, False)
            else:
                avgpool_f64(&g, cur, dst, False, False)
        elif op.kind == OP_BATCHNORM or op.kind == OP_BATCHNORM2D:
            s = op.d_out // op.g.h if op.kind == OP_BATCHNORM else op.g.c
            if not variance_ok(<floating*>op.var, s):
                why[0] = 1
                return -1 - k
            if op.kind == OP_BATCHNORM2D:
                if floating is float:
                    bn2d_f32(cur, n, op.g.c, op.g.h * op.g.w, <float*>op.w, <float*>op.b,
                             <float*>op.mean, <float*>op.var, op.eps, dst)
                else:
                    bn2d_f64(cur, n, op.g.c, op.g.h * op.g.w, <double*>op.w, <double*>op.b,
                             <double*>op.mean, <double*>op.var, op.eps, dst)
            else:
                # a sequence's n samples of T x C are n*T rows of C channels (g.h = T)
                if floating is float:
                    s = bn_f32(cur, n * op.g.h, op.d_out // op.g.h, <float*>op.w, <float*>op.b,
                               <float*>op.mean, <float*>op.var, op.eps, dst)
                else:
                    s = bn_f64(cur, n * op.g.h, op.d_out // op.g.h, <double*>op.w, <double*>op.b,
                               <double*>op.mean, <double*>op.var, op.eps, dst)
                if s != 0:
                    why[0] = 2
                    return -1 - k
        else:
            act_rows(op.act, dst, cur, n, op.d_out, op.alpha)
        if op.act_after:
            act_rows(op.act, dst, dst, n, op.d_out, op.alpha)
    if final >= 0:
        cur = slots[final]
        for s in range(n * final_d):
            out[s] = cur[s]
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


cdef tuple _in_shape(object shape):
    """A per-sample shape: an int (features) or a tuple of ints, each >= 1."""
    items = (shape,) if not isinstance(shape, (tuple, list)) else tuple(shape)
    if not items or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1
                        for v in items):
        raise ValueError(f"Chain: in_shape must be an int >= 1 or a tuple of them (C, H, W), got "
                         f"{shape!r}")
    return tuple(int(v) for v in items)


cdef class Chain:
    """A network's inference ops run in one call (see the module doc)."""

    cdef Op* ops
    cdef int n_ops
    cdef readonly object dtype
    cdef readonly Py_ssize_t in_features
    cdef readonly Py_ssize_t out_features
    cdef readonly tuple in_shape
    cdef readonly tuple shape      # per-sample shape after the last op
    cdef readonly bint exact       # every op through the layers' own cores (module doc)
    cdef Py_ssize_t width          # widest row of any stage
    cdef Py_ssize_t col_size       # the largest convolution workspace (one sample)
    cdef Py_ssize_t am_size        # the largest max-pool output of one sample (its indices)
    cdef Py_ssize_t capacity       # rows the buffers hold
    cdef list keep                 # the arrays the ops point into
    # values: 0 is the converted input, k + 1 the output of op k; ``current`` is the one the
    # next op reads (``use`` picks another: a graph); inputs[k] are the values op k reads
    cdef int current
    cdef list inputs
    cdef list shapes               # per value
    cdef int final_slot            # exact: the slot copied to out at the end (-1: none)
    cdef cnp.ndarray xbuf, buf0, buf1, scratch, col, am, arena, slots
    cdef cnp.ndarray wc, cols     # the first dense op's compacted weights, non-zero columns

    def __cinit__(self):
        self.ops = NULL
        self.n_ops = 0

    def __dealloc__(self):
        cdef int k
        if self.ops != NULL:
            for k in range(self.n_ops):
                free(self.ops[k].srcs)
                free(self.ops[k].inner)
        free(self.ops)

    def __init__(self, dtype, in_shape, exact=False):
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise TypeError(f"Chain: dtype must be float32 or float64, got {self.dtype}")
        if not isinstance(exact, (bool, np.bool_)):
            raise TypeError(f"Chain: exact must be True or False, got {received(exact)}")
        self.in_shape = self.shape = _in_shape(in_shape)
        self.in_features = self.out_features = self.width = int(np.prod(self.in_shape))
        self.exact = bool(exact)
        self.col_size = self.am_size = 0
        self.capacity = 0
        self.keep = []
        self.current = 0
        self.inputs = []
        self.shapes = [self.in_shape]
        self.final_slot = -1

    cdef Op* _push(self, int kind, tuple shape) except NULL:
        cdef Py_ssize_t d_out = int(np.prod(shape))
        cdef Op* grown = <Op*>realloc(self.ops, (self.n_ops + 1) * sizeof(Op))
        if grown == NULL:
            raise MemoryError("Chain: cannot grow the op list")
        self.ops = grown
        cdef Op* op = &self.ops[self.n_ops]
        op.kind = kind
        op.act = ACT_LINEAR
        op.act_after = False
        op.alpha = 0.0
        op.eps = 0.0
        op.d_in = self.out_features
        op.d_out = d_out
        op.w = op.b = op.mean = op.var = NULL
        op.g.n = op.g.c = op.g.h = op.g.w = op.g.f = op.g.kh = op.g.kw = 0
        op.g.oh = op.g.ow = op.g.pt = op.g.pb = op.g.pl = op.g.pr = 0
        op.g.sh = op.g.sw = op.g.dh = op.g.dw = op.g.groups = 1
        op.src = op.dst = op.n_src = 0
        op.srcs = NULL
        op.inner = NULL
        op.outer = 1
        self.n_ops += 1
        self.inputs.append([self.current])
        self.shapes.append(shape)
        self.current = self.n_ops
        self.out_features = d_out
        self.shape = shape
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

    cdef tuple _image(self, str fn):
        """(C, H, W): the per-sample shape an image op needs."""
        if len(self.shape) != 3:
            raise ValueError(f"{fn}: needs images C x H x W; the chain's samples have shape "
                             f"{self.shape}")
        return self.shape

    cdef _activation(self, Op* op, activation, double alpha, str fn, bint fused):
        """The op's activation; ``fused``: applied in the op's output pass, except gelu and
        swish, which an exact chain applies after the linear op as the layers do."""
        op.act = act_code(activation, fn, alpha)
        op.alpha = alpha
        op.act_after = fused and act_needs_input(op.act)

    def add_dense(self, w, b=None, activation="linear", alpha=0.0):
        """y := f(x W + b)   w (features so far, out), b (out,) or None."""
        fn = "Chain.add_dense"
        cdef double al = check_finite_float(alpha, fn, "alpha")
        act_code(activation, fn, al)
        cdef Py_ssize_t d_in = self.out_features
        cdef cnp.ndarray W = check_float_array(w, fn, "w", 2, False)
        if W.shape[0] != d_in:
            raise ValueError(f"{fn}: argument 'w' has shape {(<object>W).shape}; expected "
                             f"({d_in}, out)")
        check_blas_dim(W.shape[1], fn, "out")
        check_blas_dim(d_in, fn, "in")
        W = self._param(w, fn, "w", (d_in, W.shape[1]))
        cdef cnp.ndarray B = self._param(b, fn, "b", (W.shape[1],)) if b is not None else None
        cdef Op* op = self._push(OP_DENSE, (int(W.shape[1]),))
        self._activation(op, activation, al, fn, True)
        op.w = cnp.PyArray_DATA(W)
        op.b = cnp.PyArray_DATA(B) if B is not None else NULL

    cdef _batchnorm(self, str fn, int kind, Py_ssize_t d, gamma, beta, mean, var, eps,
                    Py_ssize_t steps=1):
        cdef double e = check_finite_float(eps, fn, "eps")
        if not e > 0:
            raise ValueError(f"{fn}: argument 'eps' must be > 0, got {e}")
        arrays = [self._param(a, fn, name, (d,)) for a, name in
                  ((gamma, "gamma"), (beta, "beta"), (mean, "mean"), (var, "var"))]
        cdef tuple shape = self.shape
        cdef Op* op = self._push(kind, shape)
        if kind == OP_BATCHNORM2D:
            op.g.c, op.g.h, op.g.w = shape
        else:
            op.g.h = steps
        op.eps = e
        op.w = cnp.PyArray_DATA(arrays[0])
        op.b = cnp.PyArray_DATA(arrays[1])
        op.mean = cnp.PyArray_DATA(arrays[2])
        op.var = cnp.PyArray_DATA(arrays[3])

    def add_batchnorm(self, gamma, beta, mean, var, eps, steps=1):
        """y := gamma (x - mean) / sqrt(var + eps) + beta   (inference mode; all (features,)),
        or with ``steps=T`` per channel of samples T x C (all (C,), features = T*C)."""
        fn = "Chain.add_batchnorm"
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"{fn}: argument 'steps' must be an int >= 1, got {steps!r}")
        cdef Py_ssize_t t = steps
        if self.out_features % t:
            raise ValueError(f"{fn}: argument 'steps' ({t}) does not divide the {self.out_features} "
                             "features of the chain's value")
        self._batchnorm(fn, OP_BATCHNORM, self.out_features // t, gamma, beta, mean, var, eps, t)
        if t > 1:
            self.exact = True      # the per-channel rows are the layer's own core's (run_exact)

    def add_batchnorm2d(self, gamma, beta, mean, var, eps):
        """The same per channel of C x H x W samples (inference mode; all (C,))."""
        fn = "Chain.add_batchnorm2d"
        c = self._image(fn)[0]
        self._batchnorm(fn, OP_BATCHNORM2D, c, gamma, beta, mean, var, eps)
        self.exact = True

    def add_activation(self, name, alpha=0.0):
        """y := f(x) element-wise (softmax over each sample's features)."""
        fn = "Chain.add_activation"
        cdef double al = check_finite_float(alpha, fn, "alpha")
        act_code(name, fn, al)
        cdef Op* op = self._push(OP_ACTIVATION, self.shape)
        self._activation(op, name, al, fn, False)

    def add_conv2d(self, w, b=None, stride=1, padding=0, dilation=1, groups=1,
                   activation="linear", alpha=0.0):
        """y := f(conv(x, w) + b)   x (C, H, W) per sample, w (F, C/groups, kh, kw), b (F,) or
        None; stride, padding, dilation as conv2d_forward takes them. Any activation but
        softmax."""
        fn = "Chain.add_conv2d"
        cdef double al = check_finite_float(alpha, fn, "alpha")
        if act_code(activation, fn, al) == ACT_SOFTMAX:
            raise ValueError(f"{fn}: activation 'softmax' is not fused into a convolution; add "
                             f"it with add_activation")
        c, h, wd = self._image(fn)
        cdef cnp.ndarray W = check_float_array(w, fn, "w", 4, False)
        f, cg, kh, kw = (<object>W).shape
        if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
            raise ValueError(f"{fn}: argument 'groups' must be an int >= 1, got {groups!r}")
        if c % groups or f % groups or cg != c // groups or f < 1 or kh < 1 or kw < 1:
            raise ValueError(f"{fn}: argument 'w' has shape {(<object>W).shape}; expected "
                             f"(filters, {c} // groups, kh, kw), each >= 1, with groups = {groups} "
                             f"dividing the {c} input channels and the filters")
        # the kernel's own shape rule (and its messages)
        _, _, oh, ow = _conv.conv2d_output_shape((1, c, h, wd), (f, cg, kh, kw), stride, padding,
                                                 dilation)
        check_blas_dim(oh * ow, fn, "output pixels")
        check_blas_dim(cg * kh * kw, fn, "patch size")
        W = self._param(w, fn, "w", (f, cg, kh, kw))
        cdef cnp.ndarray B = self._param(b, fn, "b", (f,)) if b is not None else None
        cdef Op* op = self._push(OP_CONV2D, (f, oh, ow))
        op.g.c, op.g.h, op.g.w, op.g.f, op.g.kh, op.g.kw = c, h, wd, f, kh, kw
        op.g.oh, op.g.ow, op.g.groups = oh, ow, groups
        op.g.sh, op.g.sw = parse_pair(stride, fn, "stride", 1)
        op.g.dh, op.g.dw = parse_pair(dilation, fn, "dilation", 1)
        op.g.pt, op.g.pb, op.g.pl, op.g.pr = parse_padding(padding, fn)
        self._activation(op, activation, al, fn, True)
        op.w = cnp.PyArray_DATA(W)
        op.b = cnp.PyArray_DATA(B) if B is not None else NULL
        self.col_size = max(self.col_size, cg * kh * kw * oh * ow)
        self.exact = True

    cdef _pool(self, str fn, int kind, kernel, stride, padding):
        c, h, w = self._image(fn)
        # the kernel's own shape rule (and its messages)
        _, _, oh, ow = _pool.pool2d_output_shape((1, c, h, w), kernel, stride, padding)
        cdef Op* op = self._push(kind, (c, oh, ow))
        op.g.c, op.g.h, op.g.w, op.g.f, op.g.oh, op.g.ow = c, h, w, c, oh, ow
        op.g.kh, op.g.kw = parse_pair(kernel, fn, "kernel", 1)
        op.g.sh, op.g.sw = parse_pair(kernel if stride is None else stride, fn, "stride", 1)
        op.g.pt, op.g.pb, op.g.pl, op.g.pr = parse_padding(padding, fn)
        if kind == OP_MAXPOOL:
            self.am_size = max(self.am_size, c * oh * ow)
        self.exact = True

    def add_maxpool(self, kernel, stride=None, padding=0):
        """Window maxima of each channel (maxpool2d_forward's geometry)."""
        self._pool("Chain.add_maxpool", OP_MAXPOOL, kernel, stride, padding)

    def add_avgpool(self, kernel, stride=None, padding=0):
        """Window means of each channel over the input pixels in the window (padding is not
        data: avgpool2d_forward with count_include_pad=False)."""
        self._pool("Chain.add_avgpool", OP_AVGPOOL, kernel, stride, padding)

    cdef _global(self, str fn, int kind):
        c, h, w = self._image(fn)
        cdef Op* op = self._push(kind, (c,))
        # one window over the whole map (pool.pyx's global geometry)
        op.g.c, op.g.h, op.g.w, op.g.f, op.g.kh, op.g.kw, op.g.oh, op.g.ow = c, h, w, c, h, w, 1, 1
        if kind == OP_MAXPOOL:
            self.am_size = max(self.am_size, c)
        self.exact = True

    def add_global_maxpool(self):
        """(C, H, W) -> (C,): each channel's maximum."""
        self._global("Chain.add_global_maxpool", OP_MAXPOOL)

    def add_global_avgpool(self):
        """(C, H, W) -> (C,): each channel's mean."""
        self._global("Chain.add_global_avgpool", OP_AVGPOOL)

    def add_flatten(self):
        """(C, H, W) -> (C*H*W,): the samples are contiguous rows already; no op, no work."""
        self.shape = (self.out_features,)

    # -- graphs: values other than the last one ------------------------------------------
    @property
    def value(self):
        """A handle of the current value (what the next op reads): pass it to ``use``,
        ``add_add`` or ``add_concat`` later."""
        return (self.current, self.shape)

    cdef int _value(self, object handle, str fn) except -1:
        if not (isinstance(handle, tuple) and len(handle) == 2 and isinstance(handle[0], int)
                and 0 <= handle[0] <= self.n_ops and isinstance(handle[1], tuple)
                and int(np.prod(handle[1])) == int(np.prod(self.shapes[handle[0]]))):
            raise ValueError(f"{fn}: {handle!r} is not a value of this chain (take one from "
                             f"chain.value)")
        return handle[0]

    def use(self, handle):
        """Make an earlier value the one the next op reads (a branch of a graph)."""
        cdef int v = self._value(handle, "Chain.use")
        if v != self.current:
            self.exact = True        # the planned slots run graphs; the shortcuts do not
        self.current = v
        self.shape = tuple(handle[1])
        self.out_features = int(np.prod(self.shape))

    cdef Op* _join(self, str fn, int kind, list handles, tuple shape) except NULL:
        cdef list ids = [self._value(h, fn) for h in handles]
        cdef Op* op = self._push(kind, shape)
        self.inputs[len(self.inputs) - 1] = ids
        op.n_src = len(ids)
        op.srcs = <int*>calloc(len(ids), sizeof(int))
        op.inner = <Py_ssize_t*>calloc(len(ids), sizeof(Py_ssize_t))
        if op.srcs == NULL or op.inner == NULL:
            raise MemoryError(f"{fn}: no memory for the op's inputs")
        op.d_in = op.d_out
        self.exact = True
        self.capacity = 0
        return op

    def add_add(self, handles):
        """y := v0 + v1 + ... (in that order) of values of one shape (``chain.value``
        handles); the result is the current value."""
        fn = "Chain.add_add"
        handles = list(handles)
        if len(handles) < 2:
            raise ValueError(f"{fn}: needs at least two values, got {len(handles)}")
        shapes = [tuple(h[1]) if isinstance(h, tuple) and len(h) == 2 else None for h in handles]
        if any(sh != shapes[0] for sh in shapes):
            raise ValueError(f"{fn}: the values have shapes {shapes}; an addition needs one shape")
        self._join(fn, OP_ADD, handles, shapes[0])

    def add_concat(self, handles, axis):
        """The values side by side along ``axis`` of the sample shape (the channels of an
        image: 0); every other extent equal."""
        fn = "Chain.add_concat"
        handles = list(handles)
        if len(handles) < 2:
            raise ValueError(f"{fn}: needs at least two values, got {len(handles)}")
        shapes = [tuple(h[1]) if isinstance(h, tuple) and len(h) == 2 else () for h in handles]
        rank = len(shapes[0])
        if isinstance(axis, bool) or not isinstance(axis, int) or not 0 <= axis < max(rank, 1):
            raise ValueError(f"{fn}: argument 'axis' must be an axis of the sample shape "
                             f"{shapes[0]}, got {axis!r}")
        if any(len(sh) != rank or sh[:axis] != shapes[0][:axis] or sh[axis + 1:] != shapes[0][axis + 1:]
               for sh in shapes):
            raise ValueError(f"{fn}: the values have shapes {shapes}; they must agree on every "
                             f"axis but {axis}")
        out = shapes[0][:axis] + (sum(sh[axis] for sh in shapes),) + shapes[0][axis + 1:]
        cdef Op* op = self._join(fn, OP_CONCAT, handles, out)
        op.outer = int(np.prod(out[:axis], dtype=np.int64))
        for j, sh in enumerate(shapes):
            op.inner[j] = int(np.prod(sh[axis:], dtype=np.int64))

    cdef _plan(self):
        """Give every value of an exact chain a buffer (slot) until its last reader has run:
        slot 0 is the converted input, the others hold ``width`` values a sample; an
        element-wise op writes over its input when nothing reads that input later; the last
        op writes the caller's out (or, when the final value is an earlier one, that slot is
        copied there)."""
        cdef int k, j, v, dst, n_slots = 1
        cdef Op* op
        cdef int final = self.current
        last = [-1] * (self.n_ops + 1)
        for k, ins in enumerate(self.inputs):
            for v in ins:
                last[v] = k
        last[final] = self.n_ops          # kept to the end
        slot = {0: 0}
        free_slots = []
        for k in range(self.n_ops):
            op = &self.ops[k]
            ins = self.inputs[k]
            if k == self.n_ops - 1 and final == k + 1:
                dst = -1
            elif (op.kind == OP_ACTIVATION or op.kind == OP_BATCHNORM
                  or op.kind == OP_BATCHNORM2D) and last[ins[0]] == k:
                dst = slot[ins[0]]
            elif free_slots:
                dst = free_slots.pop()
            else:
                dst = n_slots
                n_slots += 1
            op.src = slot[ins[0]]
            for j in range(op.n_src):
                op.srcs[j] = slot[ins[j]]
            op.dst = dst
            for v in set(ins):
                if last[v] == k and slot[v] != dst and slot[v] != 0:
                    free_slots.append(slot[v])
            slot[k + 1] = dst
            if last[k + 1] < 0 and dst > 0:      # read by nothing
                free_slots.append(dst)
        self.final_slot = -1 if (self.n_ops and final == self.n_ops) else slot[final]
        return n_slots

    def __len__(self):
        return self.n_ops

    cdef _grow(self, Py_ssize_t n):
        cdef Py_ssize_t i, n_slots
        self.xbuf = np.empty((n, self.in_features), self.dtype)
        if self.exact:
            n_slots = self._plan()
            self.arena = np.empty(max(n_slots - 1, 1) * n * self.width, self.dtype)
            self.slots = np.empty(n_slots, np.intp)
            self.slots[0] = self.xbuf.ctypes.data
            for i in range(1, n_slots):
                self.slots[i] = self.arena.ctypes.data + (i - 1) * n * self.width * self.dtype.itemsize
            self.buf0 = self.buf1 = None
        else:
            self.buf0 = np.empty(n * self.width, self.dtype)
            self.buf1 = np.empty(n * self.width, self.dtype)
        self.scratch = np.empty(2 * self.width, self.dtype)
        self.col = np.empty(max(self.col_size, 1), self.dtype)
        self.am = np.empty(max(self.am_size, 1), np.int64)
        self.wc = self.cols = None
        if not self.exact and n > 1 and self.n_ops and self.ops[0].kind == OP_DENSE:
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
        check_blas_dim(n, fn, "rows")
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
        cdef int rc, why = 1
        cdef void* px = cnp.PyArray_DATA(self.xbuf)
        cdef void* p0 = cnp.PyArray_DATA(self.buf0) if self.buf0 is not None else NULL
        cdef void* p1 = cnp.PyArray_DATA(self.buf1) if self.buf1 is not None else NULL
        cdef void** pslots = <void**>cnp.PyArray_DATA(self.slots) if self.exact else NULL
        cdef int final = self.final_slot
        cdef Py_ssize_t final_d = self.out_features
        cdef void* ps = cnp.PyArray_DATA(self.scratch)
        cdef void* pcol = cnp.PyArray_DATA(self.col)
        cdef int64_t* pam = <int64_t*>cnp.PyArray_DATA(self.am)
        cdef void* pw = cnp.PyArray_DATA(self.wc) if self.wc is not None else NULL
        cdef long long* pc = <long long*>cnp.PyArray_DATA(self.cols) if self.cols is not None else NULL
        with nogil:
            if self.exact:
                rc = float_dispatch_int(is_float32(OUT), run_exact[float], run_exact[double],
                                        self.ops, self.n_ops, n, pslots, data(OUT), final,
                                        final_d, pcol, pam, &why)
            else:
                rc = float_dispatch_int(is_float32(OUT), run_ops[float], run_ops[double],
                                        self.ops, self.n_ops, n, px, p0, p1, ps, data(OUT), pw,
                                        pc)
        if rc:
            if why == 2:
                raise MemoryError(f"{fn}: op {-1 - rc} (batch norm): no memory for its scale and "
                                  f"shift")
            raise ValueError(f"{fn}: op {-1 - rc} (batch norm) has a negative or NaN running "
                             f"variance; a variance must be >= 0")
        return out
