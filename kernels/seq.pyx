# distutils: extra_compile_args = -fno-trapping-math
"""Sequence kernels, channels last: x (N, T, C) per sample a time x channels matrix.

    embedding_forward(ids, w, y, lengths)       y[n, t, :] := w[ids[n, t], :] (0 for id 0); lengths[n] :=
                                                1 + the last position whose id is not 0 (padding)
    embedding_backward(ids, dy, dw, mark, rows, n_stale) -> n_rows
                                                dw[id] := sum of dy over the positions of id, for
                                                the ids of the batch (id 0, padding, gets none);
                                                only rows touched are written: the rows listed by
                                                the last call (rows[:n_stale]) are zeroed first
    conv1d_forward(x, w, b, y, col, stride, pad_left, pad_right, dilation, activation, alpha)
                                                y := f(conv1d(x, w) + b), w (K, C, F), y (N, T', F),
                                                T' = (T + pads - dilation*(K-1) - 1) // stride + 1;
                                                one im2col of the whole batch, one GEMM
    conv1d_backward(x, w, dz, dx, dw, db, col, stride, pad_left, pad_right, dilation)
    embed_conv1d_forward(ids, e, w, b, y, table, stride, pad_left, pad_right, dilation, activation, alpha)
    embed_conv1d_backward(ids, e, w, dz, de, dw, db, table, stride, pad_left, pad_right, dilation)
                                                conv1d of embedding(ids, e) through a per-tap
                                                table (K, V, F) := e @ w[k]: a gather-add of
                                                table rows instead of the GEMM over the batch
                                                (backward: a scatter-add into the table's
                                                shape, then dw[k] := e^T G[k], de := sum G[k] w[k]^T);
                                                pays when V is small next to N*T'
    maxpool1d_forward / _backward, avgpool1d_forward / _backward   windows over time, per channel
    seq_global_max_forward / _backward, seq_global_avg_forward / _backward
                                                over the first lengths[n] positions of each sample
                                                (None: all); a sample of length 0 gives 0

Arrays are C-contiguous float32 or float64, one dtype per call (ids in the same float dtype, whole
numbers); lengths, argmax, rows int64; mark uint8. No allocation; the GIL is released for the work.
"""
cimport numpy as cnp
from cython cimport floating
from libc.stdint cimport int64_t, uint8_t
from libc.string cimport memset

from _common cimport (check_float_array, check_same_dtype, check_shape, check_no_overlap,
                      check_finite_float, check_layout, received, float_dispatch,
                      float_dispatch_ssize, is_float32, data, data_or_null)
from blas cimport gemm_rm
from activations cimport act_code, act_forward_rows, ACT_LINEAR, ACT_SOFTMAX

import numpy as np

cnp.import_array()


cdef cnp.ndarray _int64(object a, str fn, str name, int ndim, bint writable):
    if not isinstance(a, np.ndarray) or a.dtype != np.int64 or a.ndim != ndim:
        raise TypeError(f"{fn}: argument '{name}' must be a {ndim}-D int64 array, got {received(a)}")
    check_layout(<cnp.ndarray>a, fn, name, writable)
    return <cnp.ndarray>a


# ---------------------------------------------------------------------------------- embedding
cdef bint _in_range(cnp.ndarray A, int64_t lo, int64_t hi) noexcept:
    """Every element of the int64 array A in [lo, hi): one pass, without the GIL."""
    cdef const int64_t* a = <const int64_t*>data(A)
    cdef Py_ssize_t i, count = A.size
    cdef bint ok = True
    with nogil:
        for i in range(count):
            if a[i] < lo or a[i] >= hi:
                ok = False
                break
    return ok


cdef Py_ssize_t _bad_id(const floating* ids, Py_ssize_t count, Py_ssize_t v) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating f
    for i in range(count):
        f = ids[i]
        if not (f >= 0 and f < v) or f != <floating>(<Py_ssize_t>f):
            return i
    return -1


cdef Py_ssize_t _embed_fwd(Py_ssize_t n, Py_ssize_t t, Py_ssize_t v, Py_ssize_t d,
                           const floating* ids, const floating* w, floating* y,
                           int64_t* lengths) noexcept nogil:
    """Returns the flat position of the first bad id, or -1."""
    cdef Py_ssize_t s, p, j, last
    cdef floating f
    cdef Py_ssize_t k
    for s in range(n):
        last = 0
        for p in range(t):
            f = ids[s * t + p]
            if not (f >= 0 and f < v) or f != <floating>(<Py_ssize_t>f):
                return s * t + p
            k = <Py_ssize_t>f
            if k != 0:
                last = p + 1
                for j in range(d):
                    y[(s * t + p) * d + j] = w[k * d + j]
            else:   # padding: zeros, whatever row 0 holds (it gets no gradient)
                for j in range(d):
                    y[(s * t + p) * d + j] = 0
        lengths[s] = last
    return -1


cdef Py_ssize_t _embed_bwd(Py_ssize_t n, Py_ssize_t t, Py_ssize_t v, Py_ssize_t d, const floating* ids,
                           const floating* dy, floating* dw, uint8_t* mark, int64_t* rows,
                           Py_ssize_t n_stale) noexcept nogil:
    """Returns the number of rows written, or -1 - the flat position of the first bad id
    (then nothing is written)."""
    cdef Py_ssize_t i, j, s, k, count = 0
    s = _bad_id(ids, n * t, v)   # every id checked before any row is touched
    if s >= 0:
        return -1 - s
    for i in range(n_stale):
        k = rows[i]
        mark[k] = 0
        for j in range(d):
            dw[k * d + j] = 0
    for s in range(n * t):
        k = <Py_ssize_t>ids[s]
        if k == 0:
            continue
        if not mark[k]:
            mark[k] = 1
            rows[count] = k
            count += 1
            for j in range(d):
                dw[k * d + j] = 0
        for j in range(d):
            dw[k * d + j] += dy[s * d + j]
    return count


def embedding_forward(ids, w, y, lengths):
    """y (N, T, D) := rows of w (V, D) at ids (N, T) (whole numbers in [0, V), in the dtype of
    w); zeros at id 0 (padding); lengths (N,) int64 := 1 + the last position of a non-zero id (0: all padding)."""
    fn = "embedding_forward"
    cdef cnp.ndarray I = check_float_array(ids, fn, "ids", 2, False)
    cdef cnp.ndarray W = check_float_array(w, fn, "w", 2, False)
    cdef cnp.ndarray Y = check_float_array(y, fn, "y", 3, True)
    cdef cnp.ndarray L = _int64(lengths, fn, "lengths", 1, True)
    check_same_dtype(W, I, fn, "w", "ids")
    check_same_dtype(Y, I, fn, "y", "ids")
    cdef Py_ssize_t n = I.shape[0], t = I.shape[1], v = W.shape[0], d = W.shape[1]
    check_shape(Y, (n, t, d), fn, "y", "(N, T, embedding dim)")
    check_shape(L, (n,), fn, "lengths", "(N,)")
    check_no_overlap(Y, I, fn, "y", "ids", False)
    check_no_overlap(Y, W, fn, "y", "w", False)
    cdef Py_ssize_t bad
    with nogil:
        bad = float_dispatch_ssize(is_float32(I), _embed_fwd[float], _embed_fwd[double],
                                   n, t, v, d, data(I), data(W), data(Y), <int64_t*>data(L))
    if bad >= 0:
        _id_error(fn, ids, bad, v)
    return y


def embedding_backward(ids, dy, dw, mark, rows, n_stale):
    """dw rows of the batch's ids := sums of dy (N, T, D) over their positions (id 0 skipped);
    rows[:n_stale] (the last call's, int64) are zeroed first; mark (V,) uint8 is all 0 between
    calls. Returns the number of rows written, listed in rows[:count]."""
    fn = "embedding_backward"
    cdef cnp.ndarray I = check_float_array(ids, fn, "ids", 2, False)
    cdef cnp.ndarray DY = check_float_array(dy, fn, "dy", 3, False)
    cdef cnp.ndarray DW = check_float_array(dw, fn, "dw", 2, True)
    cdef cnp.ndarray R = _int64(rows, fn, "rows", 1, True)
    if not isinstance(mark, np.ndarray) or mark.dtype != np.uint8 or mark.ndim != 1:
        raise TypeError(f"{fn}: argument 'mark' must be a 1-D uint8 array, got {received(mark)}")
    check_layout(<cnp.ndarray>mark, fn, "mark", True)
    check_same_dtype(DY, I, fn, "dy", "ids")
    check_same_dtype(DW, I, fn, "dw", "ids")
    cdef Py_ssize_t n = I.shape[0], t = I.shape[1], v = DW.shape[0], d = DW.shape[1]
    check_shape(DY, (n, t, d), fn, "dy", "(N, T, embedding dim)")
    check_shape(<cnp.ndarray>mark, (v,), fn, "mark", "(vocabulary,)")
    check_shape(R, (v,), fn, "rows", "(vocabulary,)")
    cdef Py_ssize_t stale = n_stale
    if stale < 0 or stale > v:
        raise ValueError(f"{fn}: argument 'n_stale' = {n_stale!r} must be in [0, {v}]")
    cdef Py_ssize_t count
    with nogil:
        count = float_dispatch_ssize(is_float32(I), _embed_bwd[float], _embed_bwd[double],
                                     n, t, v, d, data(I), data(DY), data(DW),
                                     <uint8_t*>data(<cnp.ndarray>mark), <int64_t*>data(R), stale)
    if count < 0:
        _id_error(fn, ids, -1 - count, v)
    return count


# ---------------------------------------------------------------------------------- conv1d
ctypedef struct Geom1:
    Py_ssize_t n, t, c, f, k, to, stride, pl, pr, dil


cdef Geom1 _geom1(str fn, cnp.ndarray X, Py_ssize_t k, Py_ssize_t f, object stride, object pl,
                  object pr, object dilation) except *:
    cdef Geom1 g
    for name, value, lo in (("stride", stride, 1), ("pad_left", pl, 0), ("pad_right", pr, 0),
                            ("dilation", dilation, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < lo:
            raise ValueError(f"{fn}: argument '{name}' must be an int >= {lo}, got {value!r}")
    g.n, g.t, g.c = X.shape[0], X.shape[1], X.shape[2]
    g.k, g.f = k, f
    g.stride, g.pl, g.pr, g.dil = stride, pl, pr, dilation
    cdef Py_ssize_t span = g.dil * (g.k - 1) + 1
    if g.k < 1 or g.t + g.pl + g.pr < span:
        raise ValueError(f"{fn}: a window of {g.k} (dilation {g.dil}) does not fit {g.t} time "
                         f"steps padded by ({g.pl}, {g.pr})")
    g.to = (g.t + g.pl + g.pr - span) // g.stride + 1
    return g


cdef void _im2col1(const Geom1* g, const floating* x, floating* col) noexcept nogil:
    cdef Py_ssize_t s, o, j, src, i, kc = g.k * g.c
    cdef floating* row
    for s in range(g.n):
        for o in range(g.to):
            row = col + (s * g.to + o) * kc
            for j in range(g.k):
                src = o * g.stride + j * g.dil - g.pl
                if 0 <= src < g.t:
                    for i in range(g.c):
                        row[j * g.c + i] = x[(s * g.t + src) * g.c + i]
                else:
                    for i in range(g.c):
                        row[j * g.c + i] = 0


cdef void _col2im1(const Geom1* g, const floating* col, floating* dx) noexcept nogil:
    cdef Py_ssize_t s, o, j, src, i, kc = g.k * g.c
    cdef const floating* row
    for i in range(g.n * g.t * g.c):
        dx[i] = 0
    for s in range(g.n):
        for o in range(g.to):
            row = col + (s * g.to + o) * kc
            for j in range(g.k):
                src = o * g.stride + j * g.dil - g.pl
                if 0 <= src < g.t:
                    for i in range(g.c):
                        dx[(s * g.t + src) * g.c + i] += row[j * g.c + i]


cdef void _conv1_fwd(const Geom1* g, int act, const floating* x, const floating* w,
                     const floating* b, floating* y, floating* col, floating alpha) noexcept nogil:
    _im2col1(g, x, col)
    gemm_rm(False, False, <int>(g.n * g.to), <int>g.f, <int>(g.k * g.c), <floating>1, col, w,
            <floating>0, y)
    if b != NULL or act != ACT_LINEAR:
        act_forward_rows(act, y, y, b, g.n * g.to, g.f, alpha)


cdef void _conv1_bwd(const Geom1* g, const floating* x, const floating* w, const floating* dz,
                     floating* dx, floating* dw, floating* db, floating* col) noexcept nogil:
    cdef Py_ssize_t r, j, rows = g.n * g.to
    _im2col1(g, x, col)
    gemm_rm(True, False, <int>(g.k * g.c), <int>g.f, <int>rows, <floating>1, col, dz,
            <floating>0, dw)
    if db != NULL:
        for j in range(g.f):
            db[j] = 0
        for r in range(rows):
            for j in range(g.f):
                db[j] += dz[r * g.f + j]
    if dx != NULL:
        gemm_rm(False, True, <int>rows, <int>(g.k * g.c), <int>g.f, <floating>1, dz, w,
                <floating>0, col)
        _col2im1(g, col, dx)


# ------------------------------------------------------------- embedding, then conv1d
cdef void _lookup_fwd(const Geom1* g, Py_ssize_t v, int act, const floating* ids, const floating* e,
                      const floating* w, const floating* b, floating* y, floating* table,
                      floating alpha) noexcept nogil:
    cdef Py_ssize_t s, o, j, src, i, k, f = g.f, c = g.c
    cdef floating* row
    cdef const floating* tr
    for j in range(g.k):    # table[j] (V, F) := e (V, C) @ w[j] (C, F)
        gemm_rm(False, False, <int>v, <int>f, <int>c, <floating>1, e, w + j * c * f, <floating>0,
                table + j * v * f)
    for s in range(g.n):
        for o in range(g.to):
            row = y + (s * g.to + o) * f
            for i in range(f):
                row[i] = 0
            for j in range(g.k):
                src = o * g.stride + j * g.dil - g.pl
                if 0 <= src < g.t:
                    k = <Py_ssize_t>ids[s * g.t + src]
                    if k != 0:     # padding embeds as zeros
                        tr = table + (j * v + k) * f
                        for i in range(f):
                            row[i] += tr[i]
    if b != NULL or act != ACT_LINEAR:
        act_forward_rows(act, y, y, b, g.n * g.to, f, alpha)


cdef void _lookup_bwd(const Geom1* g, Py_ssize_t v, const floating* ids, const floating* e,
                      const floating* w, const floating* dz, floating* de, floating* dw,
                      floating* db, floating* table) noexcept nogil:
    cdef Py_ssize_t s, o, j, src, i, k, r, f = g.f, c = g.c
    cdef floating* tr
    cdef const floating* row
    memset(table, 0, g.k * v * f * sizeof(floating))
    for s in range(g.n):
        for o in range(g.to):
            row = dz + (s * g.to + o) * f
            for j in range(g.k):
                src = o * g.stride + j * g.dil - g.pl
                if 0 <= src < g.t:
                    k = <Py_ssize_t>ids[s * g.t + src]
                    if k != 0:
                        tr = table + (j * v + k) * f
                        for i in range(f):
                            tr[i] += row[i]
    for j in range(g.k):
        # dw[j] (C, F) := e^T (C, V) @ G[j] (V, F); de (V, C) += G[j] (V, F) @ w[j]^T (F, C)
        gemm_rm(True, False, <int>c, <int>f, <int>v, <floating>1, e, table + j * v * f, <floating>0,
                dw + j * c * f)
        gemm_rm(False, True, <int>v, <int>c, <int>f, <floating>1, table + j * v * f, w + j * c * f,
                <floating>(1 if j else 0), de)
    if db != NULL:
        for i in range(f):
            db[i] = 0
        for r in range(g.n * g.to):
            for i in range(f):
                db[i] += dz[r * f + i]


cdef Geom1 _lookup_args(str fn, cnp.ndarray I, cnp.ndarray E, cnp.ndarray W, object table,
                        object stride, object pl, object pr, object dilation) except *:
    """The checks the two lookup kernels share: ids (N, T), e (V, C), w (K, C, F), table (K, V, F)."""
    check_same_dtype(E, I, fn, "e", "ids")
    check_same_dtype(W, I, fn, "w", "ids")
    if W.shape[1] != E.shape[1]:
        raise ValueError(f"{fn}: argument 'w' has shape {(<object>W).shape}; expected (K, {E.shape[1]}, F) "
                         f"for an embedding of {E.shape[1]} dimensions")
    cdef Geom1 g = _geom1(fn, I.reshape(I.shape[0], I.shape[1], 1), W.shape[0], W.shape[2],
                          stride, pl, pr, dilation)
    g.c = E.shape[1]
    cdef cnp.ndarray T = check_float_array(table, fn, "table", 3, True)
    check_same_dtype(T, I, fn, "table", "ids")
    check_shape(T, (g.k, E.shape[0], g.f), fn, "table", "(K, vocabulary, filters)")
    for name, a in (("ids", I), ("e", E), ("w", W)):
        check_no_overlap(T, <cnp.ndarray>a, fn, "table", name, False)
    return g


def embed_conv1d_forward(ids, e, w, b, y, table, stride=1, pad_left=0, pad_right=0, dilation=1,
                         activation="linear", alpha=0.0):
    """y (N, T', F) := f(conv1d(embedding(ids (N, T), e (V, C)), w (K, C, F)) + b), what
    embedding_forward then conv1d_forward give (to rounding), through table (K, V, F)."""
    fn = "embed_conv1d_forward"
    cdef double al = check_finite_float(alpha, fn, "alpha")
    cdef int act = act_code(activation, fn, al)
    if act == ACT_SOFTMAX:
        raise ValueError(f"{fn}: activation 'softmax' is not fused into a convolution")
    cdef cnp.ndarray I = check_float_array(ids, fn, "ids", 2, False)
    cdef cnp.ndarray E = check_float_array(e, fn, "e", 2, False)
    cdef cnp.ndarray W = check_float_array(w, fn, "w", 3, False)
    cdef cnp.ndarray Y = check_float_array(y, fn, "y", 3, True)
    cdef cnp.ndarray B = None
    cdef Geom1 g = _lookup_args(fn, I, E, W, table, stride, pad_left, pad_right, dilation)
    check_same_dtype(Y, I, fn, "y", "ids")
    check_shape(Y, (g.n, g.to, g.f), fn, "y", "(N, out time steps, filters)")
    if b is not None:
        B = check_float_array(b, fn, "b", 1, False)
        check_same_dtype(B, I, fn, "b", "ids")
        check_shape(B, (g.f,), fn, "b", "(filters,)")
    for name, a in (("ids", I), ("e", E), ("w", W), ("table", table)):
        check_no_overlap(Y, <cnp.ndarray>a, fn, "y", name, False)
    cdef Py_ssize_t v = E.shape[0]
    _check_ids(fn, I, v)
    cdef void* bp = data_or_null(B)
    with nogil:
        float_dispatch(is_float32(I), _lookup_fwd[float], _lookup_fwd[double], &g, v, act, data(I),
                       data(E), data(W), bp, data(Y), data(<cnp.ndarray>table), al)
    return y


def embed_conv1d_backward(ids, e, w, dz, de, dw, db, table, stride=1, pad_left=0, pad_right=0,
                          dilation=1):
    """dw (K, C, F), db (F,) or None, de (V, C) := the gradients of embed_conv1d_forward for
    dz (N, T', F) (before the activation); de is written in every row (0 where the batch has
    no id; row 0, padding, gets 0); table (K, V, F) is the workspace."""
    fn = "embed_conv1d_backward"
    cdef cnp.ndarray I = check_float_array(ids, fn, "ids", 2, False)
    cdef cnp.ndarray E = check_float_array(e, fn, "e", 2, False)
    cdef cnp.ndarray W = check_float_array(w, fn, "w", 3, False)
    cdef cnp.ndarray DZ = check_float_array(dz, fn, "dz", 3, False)
    cdef cnp.ndarray DE = check_float_array(de, fn, "de", 2, True)
    cdef cnp.ndarray DW = check_float_array(dw, fn, "dw", 3, True)
    cdef cnp.ndarray DB = None
    cdef Geom1 g = _lookup_args(fn, I, E, W, table, stride, pad_left, pad_right, dilation)
    for name, a in (("dz", DZ), ("de", DE), ("dw", DW)):
        check_same_dtype(a, I, fn, name, "ids")
    check_shape(DZ, (g.n, g.to, g.f), fn, "dz", "(N, out time steps, filters)")
    check_shape(DE, (<object>E).shape, fn, "de", "(the shape of e)")
    check_shape(DW, (<object>W).shape, fn, "dw", "(the shape of w)")
    if db is not None:
        DB = check_float_array(db, fn, "db", 1, True)
        check_same_dtype(DB, I, fn, "db", "ids")
        check_shape(DB, (g.f,), fn, "db", "(filters,)")
    for name, a in (("ids", I), ("e", E), ("w", W), ("dz", DZ)):
        for oname, o in (("de", DE), ("dw", DW), ("db", DB)):
            if o is not None:
                check_no_overlap(<cnp.ndarray>o, <cnp.ndarray>a, fn, oname, name, False)
    check_no_overlap(DE, <cnp.ndarray>table, fn, "de", "table", False)
    check_no_overlap(DW, <cnp.ndarray>table, fn, "dw", "table", False)
    cdef Py_ssize_t v = E.shape[0]
    _check_ids(fn, I, v)
    cdef void* dbp = data_or_null(DB)
    with nogil:
        float_dispatch(is_float32(I), _lookup_bwd[float], _lookup_bwd[double], &g, v, data(I),
                       data(E), data(W), data(DZ), data(DE), data(DW), dbp, data(<cnp.ndarray>table))
    return de, dw, db


cdef _check_ids(str fn, cnp.ndarray I, Py_ssize_t v):
    cdef Py_ssize_t bad
    with nogil:
        bad = float_dispatch_ssize(is_float32(I), _bad_id[float], _bad_id[double], data(I),
                                   I.shape[0] * I.shape[1], v)
    if bad >= 0:
        _id_error(fn, I, bad, v)


cdef _id_error(str fn, object ids, Py_ssize_t bad, Py_ssize_t v):
    """The error for the id at flat position ``bad`` of ids (N, T): not a token id of [0, v)."""
    t = ids.shape[1]
    value = ids.reshape(-1)[bad]
    raise ValueError(f"{fn}: argument 'ids' holds {value!r} at row {bad // t}, position {bad % t}; "
                     f"expected a token id: a whole number in [0, {v})")


def conv1d_output_length(t, k, stride=1, pad_left=0, pad_right=0, dilation=1):
    """T' = (T + pads - dilation*(K-1) - 1) // stride + 1."""
    return (t + pad_left + pad_right - dilation * (k - 1) - 1) // stride + 1


cdef _check_col(str fn, object col, cnp.ndarray X, const Geom1* g):
    cdef cnp.ndarray C = check_float_array(col, fn, "col", -1, True)
    check_same_dtype(C, X, fn, "col", "x")
    cdef Py_ssize_t need = g.n * g.to * g.k * g.c
    if cnp.PyArray_SIZE(C) < need:
        raise ValueError(f"{fn}: argument 'col' has {cnp.PyArray_SIZE(C)} elements; the "
                         f"workspace needs N*T'*K*C = {need}")
    return C


def conv1d_forward(x, w, b, y, col, stride=1, pad_left=0, pad_right=0, dilation=1,
                   activation="linear", alpha=0.0):
    """y (N, T', F) := f(conv1d(x (N, T, C), w (K, C, F)) + b (F,) or None); col: workspace of
    at least N*T'*K*C elements. Any activation but softmax."""
    fn = "conv1d_forward"
    cdef double al = check_finite_float(alpha, fn, "alpha")
    cdef int act = act_code(activation, fn, al)
    if act == ACT_SOFTMAX:
        raise ValueError(f"{fn}: activation 'softmax' is not fused into a convolution")
    cdef cnp.ndarray X = check_float_array(x, fn, "x", 3, False)
    cdef cnp.ndarray W = check_float_array(w, fn, "w", 3, False)
    cdef cnp.ndarray Y = check_float_array(y, fn, "y", 3, True)
    cdef cnp.ndarray B = None
    check_same_dtype(W, X, fn, "w", "x")
    check_same_dtype(Y, X, fn, "y", "x")
    if W.shape[1] != X.shape[2]:
        raise ValueError(f"{fn}: argument 'w' has shape {(<object>W).shape}; expected (K, {X.shape[2]}, F) "
                         f"for x of {X.shape[2]} channels")
    cdef Geom1 g = _geom1(fn, X, W.shape[0], W.shape[2], stride, pad_left, pad_right, dilation)
    check_shape(Y, (g.n, g.to, g.f), fn, "y", "(N, out time steps, filters)")
    if b is not None:
        B = check_float_array(b, fn, "b", 1, False)
        check_same_dtype(B, X, fn, "b", "x")
        check_shape(B, (g.f,), fn, "b", "(filters,)")
    check_no_overlap(Y, X, fn, "y", "x", False)
    check_no_overlap(Y, W, fn, "y", "w", False)
    cdef cnp.ndarray C = _check_col(fn, col, X, &g)
    check_no_overlap(C, X, fn, "col", "x", False)
    check_no_overlap(C, Y, fn, "col", "y", False)
    cdef void* bp = data_or_null(B)
    with nogil:
        float_dispatch(is_float32(X), _conv1_fwd[float], _conv1_fwd[double], &g, act, data(X),
                       data(W), bp, data(Y), data(C), al)
    return y


def conv1d_backward(x, w, dz, dx, dw, db, col, stride=1, pad_left=0, pad_right=0, dilation=1):
    """dw := the gradient of conv1d w.r.t. w (K, C, F), db (F,) or None := sum of dz over (N, T'),
    dx (N, T, C) or None := w.r.t. x; dz (N, T', F) is the gradient before the activation."""
    fn = "conv1d_backward"
    cdef cnp.ndarray X = check_float_array(x, fn, "x", 3, False)
    cdef cnp.ndarray W = check_float_array(w, fn, "w", 3, False)
    cdef cnp.ndarray DZ = check_float_array(dz, fn, "dz", 3, False)
    cdef cnp.ndarray DW = check_float_array(dw, fn, "dw", 3, True)
    cdef cnp.ndarray DX = None, DB = None
    check_same_dtype(W, X, fn, "w", "x")
    check_same_dtype(DZ, X, fn, "dz", "x")
    check_same_dtype(DW, X, fn, "dw", "x")
    if W.shape[1] != X.shape[2]:
        raise ValueError(f"{fn}: argument 'w' has shape {(<object>W).shape}; expected (K, {X.shape[2]}, F)")
    cdef Geom1 g = _geom1(fn, X, W.shape[0], W.shape[2], stride, pad_left, pad_right, dilation)
    check_shape(DZ, (g.n, g.to, g.f), fn, "dz", "(N, out time steps, filters)")
    check_shape(DW, (<object>W).shape, fn, "dw", "(the shape of w)")
    if dx is not None:
        DX = check_float_array(dx, fn, "dx", 3, True)
        check_same_dtype(DX, X, fn, "dx", "x")
        check_shape(DX, (<object>X).shape, fn, "dx", "(the shape of x)")
    if db is not None:
        DB = check_float_array(db, fn, "db", 1, True)
        check_same_dtype(DB, X, fn, "db", "x")
        check_shape(DB, (g.f,), fn, "db", "(filters,)")
    cdef cnp.ndarray C = _check_col(fn, col, X, &g)
    for name, a in (("x", X), ("w", W), ("dz", DZ), ("dw", DW), ("dx", DX), ("db", DB)):
        if a is not None:
            check_no_overlap(C, <cnp.ndarray>a, fn, "col", name, False)
    cdef void* dxp = data_or_null(DX)
    cdef void* dbp = data_or_null(DB)
    with nogil:
        float_dispatch(is_float32(X), _conv1_bwd[float], _conv1_bwd[double], &g, data(X), data(W),
                       data(DZ), dxp, data(DW), dbp, data(C))
    return dx, dw, db


# ---------------------------------------------------------------------------------- pooling
cdef void _pool1(const Geom1* g, const floating* x, floating* y, int64_t* am, bint use_max,
                 bint backward, const floating* dy, floating* dx) noexcept nogil:
    """Forward (backward False): y := window max (am := time index) or mean over input steps.
    Backward: dx := the adjoint of dy (max through am)."""
    cdef Py_ssize_t s, o, j, i, src, lo, hi, best
    cdef floating m, v, acc
    if backward:
        for i in range(g.n * g.t * g.c):
            dx[i] = 0
    for s in range(g.n):
        for o in range(g.to):
            lo = o * g.stride - g.pl
            hi = lo + g.k
            if lo < 0:
                lo = 0
            if hi > g.t:
                hi = g.t
            for i in range(g.c):
                if use_max:
                    if backward:
                        best = am[(s * g.to + o) * g.c + i]
                        dx[(s * g.t + best) * g.c + i] += dy[(s * g.to + o) * g.c + i]
                        continue
                    best = lo
                    m = x[(s * g.t + lo) * g.c + i]
                    for src in range(lo + 1, hi):
                        v = x[(s * g.t + src) * g.c + i]
                        if v > m or (v != v and m == m):
                            m = v
                            best = src
                    y[(s * g.to + o) * g.c + i] = m
                    am[(s * g.to + o) * g.c + i] = best
                else:
                    if backward:
                        v = dy[(s * g.to + o) * g.c + i] / (hi - lo)
                        for src in range(lo, hi):
                            dx[(s * g.t + src) * g.c + i] += v
                        continue
                    acc = 0
                    for src in range(lo, hi):
                        acc = acc + x[(s * g.t + src) * g.c + i]
                    y[(s * g.to + o) * g.c + i] = acc / (hi - lo)


cdef Geom1 _pool_geom(str fn, cnp.ndarray X, object kernel, object stride, object pl, object pr) except *:
    if isinstance(kernel, bool) or not isinstance(kernel, int) or kernel < 1:
        raise ValueError(f"{fn}: argument 'kernel' must be an int >= 1, got {kernel!r}")
    if stride is None:
        stride = kernel
    cdef Geom1 g = _geom1(fn, X, kernel, X.shape[2], stride, pl, pr, 1)
    if max(pl, pr) >= kernel:
        raise ValueError(f"{fn}: padding ({pl}, {pr}) must be smaller than the window {kernel}")
    return g


def pool1d_output_length(t, k, stride=None, pad_left=0, pad_right=0):
    return (t + pad_left + pad_right - k) // (k if stride is None else stride) + 1


def maxpool1d_forward(x, y, argmax, kernel, stride=None, pad_left=0, pad_right=0):
    """y (N, T', C) := window maxima over time of x (N, T, C); argmax := their time indices."""
    fn = "maxpool1d_forward"
    cdef cnp.ndarray X = check_float_array(x, fn, "x", 3, False)
    cdef cnp.ndarray Y = check_float_array(y, fn, "y", 3, True)
    cdef cnp.ndarray A = _int64(argmax, fn, "argmax", 3, True)
    check_same_dtype(Y, X, fn, "y", "x")
    cdef Geom1 g = _pool_geom(fn, X, kernel, stride, pad_left, pad_right)
    check_shape(Y, (g.n, g.to, g.c), fn, "y", "(N, out time steps, C)")
    check_shape(A, (g.n, g.to, g.c), fn, "argmax", "(the shape of y)")
    check_no_overlap(Y, X, fn, "y", "x", False)
    with nogil:
        float_dispatch(is_float32(X), _pool1[float], _pool1[double], &g, data(X), data(Y),
                       <int64_t*>data(A), True, False, NULL, NULL)
    return y


def maxpool1d_backward(dy, argmax, dx, kernel, stride=None, pad_left=0, pad_right=0):
    """dx (N, T, C) := dy scattered to the saved time indices."""
    fn = "maxpool1d_backward"
    cdef cnp.ndarray DY = check_float_array(dy, fn, "dy", 3, False)
    cdef cnp.ndarray DX = check_float_array(dx, fn, "dx", 3, True)
    cdef cnp.ndarray A = _int64(argmax, fn, "argmax", 3, False)
    check_same_dtype(DX, DY, fn, "dx", "dy")
    cdef Geom1 g = _pool_geom(fn, DX, kernel, stride, pad_left, pad_right)
    check_shape(DY, (g.n, g.to, g.c), fn, "dy", "(N, out time steps, C)")
    check_shape(A, (g.n, g.to, g.c), fn, "argmax", "(the shape of dy)")
    if not _in_range(A, 0, g.t):
        raise ValueError(f"{fn}: argument 'argmax' holds a time index outside [0, {g.t})")
    check_no_overlap(DX, DY, fn, "dx", "dy", False)
    with nogil:
        float_dispatch(is_float32(DX), _pool1[float], _pool1[double], &g, NULL, NULL,
                       <int64_t*>data(A), True, True, data(DY), data(DX))
    return dx


def avgpool1d_forward(x, y, kernel, stride=None, pad_left=0, pad_right=0):
    """y (N, T', C) := window means over time of x (N, T, C), over the input steps in each window."""
    fn = "avgpool1d_forward"
    cdef cnp.ndarray X = check_float_array(x, fn, "x", 3, False)
    cdef cnp.ndarray Y = check_float_array(y, fn, "y", 3, True)
    check_same_dtype(Y, X, fn, "y", "x")
    cdef Geom1 g = _pool_geom(fn, X, kernel, stride, pad_left, pad_right)
    check_shape(Y, (g.n, g.to, g.c), fn, "y", "(N, out time steps, C)")
    check_no_overlap(Y, X, fn, "y", "x", False)
    with nogil:
        float_dispatch(is_float32(X), _pool1[float], _pool1[double], &g, data(X), data(Y), NULL,
                       False, False, NULL, NULL)
    return y


def avgpool1d_backward(dy, dx, kernel, stride=None, pad_left=0, pad_right=0):
    """dx (N, T, C) := the adjoint of avgpool1d_forward given dy (N, T', C)."""
    fn = "avgpool1d_backward"
    cdef cnp.ndarray DY = check_float_array(dy, fn, "dy", 3, False)
    cdef cnp.ndarray DX = check_float_array(dx, fn, "dx", 3, True)
    check_same_dtype(DX, DY, fn, "dx", "dy")
    cdef Geom1 g = _pool_geom(fn, DX, kernel, stride, pad_left, pad_right)
    check_shape(DY, (g.n, g.to, g.c), fn, "dy", "(N, out time steps, C)")
    check_no_overlap(DX, DY, fn, "dx", "dy", False)
    with nogil:
        float_dispatch(is_float32(DX), _pool1[float], _pool1[double], &g, NULL, NULL, NULL,
                       False, True, data(DY), data(DX))
    return dx


# ---------------------------------------------------------------------------------- over time
cdef void _global_seq(Py_ssize_t n, Py_ssize_t t, Py_ssize_t c, const int64_t* lengths,
                      const floating* x, floating* y, int64_t* am, bint use_max, bint backward,
                      const floating* dy, floating* dx) noexcept nogil:
    """Over the first lengths[s] steps of each sample, step by step with every channel of a
    step in the inner loop (contiguous rows; each channel's comparisons and sums still run
    in time order, so the result is the per-channel loop's bit for bit)."""
    cdef Py_ssize_t s, p, i, length, best
    cdef floating m, v
    cdef floating* yr
    cdef int64_t* ar
    cdef const floating* xr
    if backward:
        for i in range(n * t * c):
            dx[i] = 0
    for s in range(n):
        length = t if lengths == NULL else lengths[s]
        if length > t:
            length = t
        if backward:
            for i in range(c):
                if use_max:
                    best = am[s * c + i]
                    if best >= 0:
                        dx[(s * t + best) * c + i] += dy[s * c + i]
                elif length > 0:
                    v = dy[s * c + i] / length
                    for p in range(length):
                        dx[(s * t + p) * c + i] = v
            continue
        yr = y + s * c
        ar = am + s * c if use_max else NULL
        if length <= 0:
            for i in range(c):
                yr[i] = 0
                if use_max:
                    ar[i] = -1
            continue
        xr = x + s * t * c
        if use_max:
            for i in range(c):
                yr[i] = xr[i]
                ar[i] = 0
            for p in range(1, length):
                xr = x + (s * t + p) * c
                for i in range(c):
                    v = xr[i]
                    m = yr[i]
                    if v > m or (v != v and m == m):
                        yr[i] = v
                        ar[i] = p
        else:
            for i in range(c):
                yr[i] = 0
            for p in range(length):
                xr = x + (s * t + p) * c
                for i in range(c):
                    yr[i] = yr[i] + xr[i]
            for i in range(c):
                yr[i] = yr[i] / length


cdef cnp.ndarray _lengths(object lengths, str fn, Py_ssize_t n):
    if lengths is None:
        return None
    cdef cnp.ndarray L = _int64(lengths, fn, "lengths", 1, False)
    check_shape(L, (n,), fn, "lengths", "(N,)")
    if L.shape[0] and (<object>lengths).min() < 0:
        raise ValueError(f"{fn}: argument 'lengths' holds a negative length")
    return L


cdef int64_t* _lp(cnp.ndarray L) noexcept:
    return NULL if L is None else <int64_t*>cnp.PyArray_DATA(L)


def seq_global_max_forward(x, lengths, y, argmax):
    """y (N, C) := the maximum of each channel over the first lengths[n] steps of x (N, T, C)
    (lengths None: all T); argmax (N, C) int64 := its step (-1 and y 0 for a length of 0)."""
    fn = "seq_global_max_forward"
    cdef cnp.ndarray X = check_float_array(x, fn, "x", 3, False)
    cdef cnp.ndarray Y = check_float_array(y, fn, "y", 2, True)
    cdef cnp.ndarray A = _int64(argmax, fn, "argmax", 2, True)
    check_same_dtype(Y, X, fn, "y", "x")
    cdef Py_ssize_t n = X.shape[0], t = X.shape[1], c = X.shape[2]
    check_shape(Y, (n, c), fn, "y", "(N, C)")
    check_shape(A, (n, c), fn, "argmax", "(N, C)")
    check_no_overlap(Y, X, fn, "y", "x", False)
    cdef cnp.ndarray L = _lengths(lengths, fn, n)
    cdef int64_t* lp = _lp(L)
    with nogil:
        float_dispatch(is_float32(X), _global_seq[float], _global_seq[double], n, t, c, lp,
                       data(X), data(Y), <int64_t*>data(A), True, False, NULL, NULL)
    return y


def seq_global_max_backward(dy, argmax, dx):
    """dx (N, T, C) := dy (N, C) at the saved steps (none where argmax is -1)."""
    fn = "seq_global_max_backward"
    cdef cnp.ndarray DY = check_float_array(dy, fn, "dy", 2, False)
    cdef cnp.ndarray DX = check_float_array(dx, fn, "dx", 3, True)
    cdef cnp.ndarray A = _int64(argmax, fn, "argmax", 2, False)
    check_same_dtype(DX, DY, fn, "dx", "dy")
    cdef Py_ssize_t n = DX.shape[0], t = DX.shape[1], c = DX.shape[2]
    check_shape(DY, (n, c), fn, "dy", "(N, C)")
    check_shape(A, (n, c), fn, "argmax", "(N, C)")
    if not _in_range(A, -1, t):
        raise ValueError(f"{fn}: argument 'argmax' holds a step outside [-1, {t})")
    with nogil:
        float_dispatch(is_float32(DX), _global_seq[float], _global_seq[double], n, t, c, NULL,
                       NULL, NULL, <int64_t*>data(A), True, True, data(DY), data(DX))
    return dx


def seq_global_avg_forward(x, lengths, y):
    """y (N, C) := the mean of each channel over the first lengths[n] steps of x (N, T, C)
    (lengths None: all T; 0 for a length of 0)."""
    fn = "seq_global_avg_forward"
    cdef cnp.ndarray X = check_float_array(x, fn, "x", 3, False)
    cdef cnp.ndarray Y = check_float_array(y, fn, "y", 2, True)
    check_same_dtype(Y, X, fn, "y", "x")
    cdef Py_ssize_t n = X.shape[0], t = X.shape[1], c = X.shape[2]
    check_shape(Y, (n, c), fn, "y", "(N, C)")
    check_no_overlap(Y, X, fn, "y", "x", False)
    cdef cnp.ndarray L = _lengths(lengths, fn, n)
    cdef int64_t* lp = _lp(L)
    with nogil:
        float_dispatch(is_float32(X), _global_seq[float], _global_seq[double], n, t, c, lp,
                       data(X), data(Y), NULL, False, False, NULL, NULL)
    return y


def seq_global_avg_backward(dy, lengths, dx):
    """dx (N, T, C) := dy / length over the first lengths[n] steps, 0 after."""
    fn = "seq_global_avg_backward"
    cdef cnp.ndarray DY = check_float_array(dy, fn, "dy", 2, False)
    cdef cnp.ndarray DX = check_float_array(dx, fn, "dx", 3, True)
    check_same_dtype(DX, DY, fn, "dx", "dy")
    cdef Py_ssize_t n = DX.shape[0], t = DX.shape[1], c = DX.shape[2]
    check_shape(DY, (n, c), fn, "dy", "(N, C)")
    cdef cnp.ndarray L = _lengths(lengths, fn, n)
    cdef int64_t* lp = _lp(L)
    with nogil:
        float_dispatch(is_float32(DX), _global_seq[float], _global_seq[double], n, t, c, lp,
                       NULL, NULL, NULL, False, True, data(DY), data(DX))
    return dx
