# distutils: extra_compile_args = -fno-trapping-math
# (FP operations are assumed not to trap, so GCC may if-convert the selects in the exp/sigmoid
# loops and vectorise them; results are unchanged: no reassociation, NaN and inf kept.)
"""Loss kernels: each returns the mean loss and writes its gradient in the same pass.

All float arrays of one call share one dtype (float32 or float64, that of the first argument),
are C-contiguous and aligned; ``grad`` is caller-supplied and writeable. Losses are accumulated
in double precision whatever the dtype. ``grad`` may be the prediction/logits array itself
(in-place: every element is read before its gradient is written; for the element-wise losses
it may also be the target), never a partly overlapping view.

    softmax_cross_entropy(logits, target, grad, label_smoothing=0.0, class_weight=None) -> float
    sigmoid_binary_cross_entropy(logits, target, grad, class_weight=None) -> float
    mse(pred, target, grad) -> float
    mae(pred, target, grad) -> float
    huber(pred, target, grad, delta=1.0) -> float
"""
cimport numpy as cnp
import numpy as np

from cython cimport floating
from libc.math cimport log, fabs, fabsf, isfinite
from libc.stdint cimport int32_t, int64_t, uint32_t, uint64_t

from _common cimport (check_float_dtype, check_float_array, check_layout, check_like,
                      check_shape, check_no_overlap, check_real, received,
                      float_dispatch, float_dispatch_double, is_float32, data)

cnp.import_array()

# Labels come as int32 or int64; one fused body serves both (see _xent_labels).
ctypedef fused label_t:
    int32_t
    int64_t


# ---------------------------------------------------------------- scalar helpers (nogil)

cdef union _bits32:
    float f
    uint32_t u


cdef union _bits64:
    double f
    uint64_t u


cdef inline floating _exp_nonpos(floating x) noexcept nogil:
    # e^x for x <= 0 (every exponent in these kernels is z - max z or -|z|), written branch-free
    # so that the loops calling it vectorise; libm's exp is an opaque scalar call and made
    # softmax cross-entropy several times slower than NumPy's SIMD exp for k >= 100.
    # Cody-Waite reduction x = n ln2 + r, |r| <= ln2/2, with n = round(x/ln2) by the
    # 1.5*2^(mantissa bits) rounding trick; e^r by Cephes' minimax polynomial (float, ~1 ulp) or
    # the Taylor series to r^13 (double, remainder < 3e-16 relative), both evaluated in Estrin's
    # scheme (independent pieces, a short dependency chain); 2^n is assembled directly
    # in the exponent bits (the low bits of the rounded value hold n). Below the normal range
    # (x < -87 / -708) the result is 0; NaN stays NaN.
    cdef _bits32 t32, s32
    cdef _bits64 t64, s64
    cdef floating xc, n, r, r2, r4, r8, q
    if floating is float:
        xc = <float>-87.0 if x < <float>-87.0 else x
        t32.f = xc * <float>1.44269504088896341 + <float>12582912.0
        n = t32.f - <float>12582912.0
        r = (xc - n * <float>0.693359375) - n * <float>-2.12194440e-4
        r2 = r * r
        r4 = r2 * r2
        q = ((<float>5.0000001201e-1 + <float>1.6666665459e-1 * r)
             + r2 * (<float>4.1665795894e-2 + <float>8.3334519073e-3 * r)
             + r4 * (<float>1.3981999507e-3 + <float>1.9875691500e-4 * r))
        q = q * r2 + r + <float>1.0
        s32.u = (t32.u << 23) + <uint32_t>0x3F800000
        # multiply first, select after: a multiplication inside the branch would not be
        # if-converted (it may trap), and the loop would stay scalar
        q = q * s32.f
        return <float>0.0 if x < <float>-87.0 else q
    else:
        xc = -708.0 if x < -708.0 else x
        t64.f = xc * 1.4426950408889634074 + 6755399441055744.0
        n = t64.f - 6755399441055744.0
        r = (xc - n * 6.93145751953125e-1) - n * 1.42860682030941723212e-6
        r2 = r * r
        r4 = r2 * r2
        r8 = r4 * r4
        # 1 is added last: the rounding of 1 + (small) then dominates the error (<= 1 ulp)
        q = ((r + r2 * (0.5 + r * (1.0 / 6.0)))
             + r4 * ((1.0 / 24.0 + r * (1.0 / 120.0)) + r2 * (1.0 / 720.0 + r * (1.0 / 5040.0)))
             + r8 * (((1.0 / 40320.0 + r * (1.0 / 362880.0)) + r2 * (1.0 / 3628800.0 + r * (1.0 / 39916800.0)))
                     + r4 * (1.0 / 479001600.0 + r * (1.0 / 6227020800.0))))
        q = 1.0 + q
        s64.u = (t64.u << 52) + (<uint64_t>1023 << 52)
        q = q * s64.f
        return 0.0 if x < -708.0 else q


cdef void _exp_map(const floating* x, floating* out, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        out[i] = _exp_nonpos(x[i])


def _exp_nonpos_check(x):
    """e^x by the kernels' own exponential, element-wise over a float32/float64 array
    (for the accuracy tests; the kernels call it inline)."""
    check_float_dtype(x, "_exp_nonpos_check", "x")
    cdef cnp.ndarray a = np.ascontiguousarray(x)
    cdef cnp.ndarray out = np.empty_like(a)
    with nogil:
        float_dispatch(is_float32(a), _exp_map[float], _exp_map[double], data(a), data(out),
                       cnp.PyArray_SIZE(a))
    return out


cdef inline floating _abs(floating x) noexcept nogil:
    if floating is float:
        return fabsf(x)
    else:
        return fabs(x)


# ---------------------------------------------------------------- softmax cross-entropy

cdef double softmax_xent_labels32(const floating* z, const int32_t* y, floating* grad,
                                  Py_ssize_t n, Py_ssize_t k, double smoothing,
                                  const double* cw) noexcept nogil:
    return _xent_labels(z, y, grad, n, k, smoothing, cw)


cdef double softmax_xent_labels64(const floating* z, const int64_t* y, floating* grad,
                                  Py_ssize_t n, Py_ssize_t k, double smoothing,
                                  const double* cw) noexcept nogil:
    return _xent_labels(z, y, grad, n, k, smoothing, cw)


cdef inline floating _row_max(const floating* z, Py_ssize_t k) noexcept nogil:
    # eight independent running maxima (a single one is a serial chain of max latencies, which
    # was a third of the softmax time at k = 1000); NaNs are skipped here and surface in exp
    cdef Py_ssize_t j, end8 = k - k % 8
    cdef floating m0 = z[0], m1 = z[0], m2 = z[0], m3 = z[0]
    cdef floating m4 = z[0], m5 = z[0], m6 = z[0], m7 = z[0]
    for j in range(0, end8, 8):
        m0 = z[j] if z[j] > m0 else m0
        m1 = z[j + 1] if z[j + 1] > m1 else m1
        m2 = z[j + 2] if z[j + 2] > m2 else m2
        m3 = z[j + 3] if z[j + 3] > m3 else m3
        m4 = z[j + 4] if z[j + 4] > m4 else m4
        m5 = z[j + 5] if z[j + 5] > m5 else m5
        m6 = z[j + 6] if z[j + 6] > m6 else m6
        m7 = z[j + 7] if z[j + 7] > m7 else m7
    for j in range(end8, k):
        m0 = z[j] if z[j] > m0 else m0
    m0 = m1 if m1 > m0 else m0
    m2 = m3 if m3 > m2 else m2
    m4 = m5 if m5 > m4 else m4
    m6 = m7 if m7 > m6 else m6
    m0 = m2 if m2 > m0 else m0
    m4 = m6 if m6 > m4 else m4
    return m4 if m4 > m0 else m0


cdef inline void _row_exp(const floating* z, floating* e, Py_ssize_t k, floating m) noexcept nogil:
    # e_j := exp(z_j - m): a pure map, vectorised (e may be z itself)
    cdef Py_ssize_t j
    for j in range(k):
        e[j] = _exp_nonpos(z[j] - m)


cdef inline double _row_sum(const floating* x, Py_ssize_t k) noexcept nogil:
    # double-precision sum with four accumulators (no single serial chain of additions)
    cdef Py_ssize_t j, end4 = k - k % 4
    cdef double a0 = 0.0, a1 = 0.0, a2 = 0.0, a3 = 0.0
    for j in range(0, end4, 4):
        a0 += <double>x[j]
        a1 += <double>x[j + 1]
        a2 += <double>x[j + 2]
        a3 += <double>x[j + 3]
    for j in range(end4, k):
        a0 += <double>x[j]
    return (a0 + a1) + (a2 + a3)


cdef inline void _row_grad(floating* e, Py_ssize_t k, floating scale, floating shift) noexcept nogil:
    # e_j := e_j * scale - shift  (vectorised)
    cdef Py_ssize_t j
    for j in range(k):
        e[j] = e[j] * scale - shift


cdef inline double _xent_labels(const floating* z, const label_t* y, floating* grad,
                                Py_ssize_t n, Py_ssize_t k, double smoothing,
                                const double* cw) noexcept nogil:
    # Per row, with m = max_j z_j:
    #   loss = log(sum_j exp(z_j - m)) + (1-ls)(m - z_y) + ls/k sum_j (m - z_j)
    # which is lse - sum_j t'_j z_j written with differences from m: finite for logits of
    # +-1000 and free of the cancellation of lse - z_y in float32.
    # Four short passes over a row that sits in L1: max; exp into grad (vectorised); sum;
    # scale into the gradient (vectorised). z is read before grad (which may alias it) is written.
    # Class weights (cw, k doubles; NULL: none) scale row i's loss and gradient by w = cw[y_i].
    # Without them w is 1.0 and every product with it below is exact: the unweighted numbers
    # are those of the kernel before class weights existed, bit for bit.
    cdef Py_ssize_t i, off, yi
    cdef floating m
    cdef double s, w = 1.0, loss = 0.0
    cdef double keep = 1.0 - smoothing, share = smoothing / <double>k, inv_n = 1.0 / <double>n
    cdef floating smooth_g = <floating>(share * inv_n), label_g = <floating>(keep * inv_n)
    for i in range(n):
        off = i * k
        yi = <Py_ssize_t>y[i]
        if cw != NULL:
            w = cw[yi]
            smooth_g = <floating>((w * share) * inv_n)
            label_g = <floating>((w * keep) * inv_n)
        m = _row_max(z + off, k)
        loss += (w * keep) * (<double>m - <double>z[off + yi])
        if smoothing != 0.0:
            loss += (w * share) * (<double>k * <double>m - _row_sum(z + off, k))
        _row_exp(z + off, grad + off, k, m)
        s = _row_sum(grad + off, k)
        loss += w * log(s)
        _row_grad(grad + off, k, <floating>((w * inv_n) / s), smooth_g)
        grad[off + yi] -= label_g
    return loss


cdef double softmax_xent_probs(const floating* z, const floating* t, floating* grad,
                               Py_ssize_t n, Py_ssize_t k, double smoothing,
                               const double* cw) noexcept nogil:
    # loss_i = sum_j t'_j (m - z_j) + T log(sum_j exp(z_j - m)), T = sum_j t'_j; its exact gradient
    # is (T softmax(z) - t')/n, which is the usual (softmax - t')/n when rows of t sum to 1.
    # sum_j t'_j (m - z_j) = m T - sum_j t'_j z_j is accumulated in double before grad (which may
    # alias z) is written; products of two floats are exact in double.
    # Class weights (cw, k doubles; NULL: none) scale row i by w_i = sum_j cw_j t_ij, the expected
    # class weight of the row (cw[y] for a one-hot row); without them w is 1.0 and every product
    # with it is exact (the unweighted numbers are unchanged, bit for bit).
    cdef Py_ssize_t i, j, off
    cdef floating m, tj, zj, scale, w_inv_f
    cdef double tsum, tz, s, w = 1.0, loss = 0.0
    cdef double keep = 1.0 - smoothing, share = smoothing / <double>k, inv_n = 1.0 / <double>n
    cdef floating keep_f = <floating>keep, share_f = <floating>share
    w_inv_f = <floating>inv_n
    for i in range(n):
        off = i * k
        m = _row_max(z + off, k)
        tsum = 0.0
        tz = 0.0
        if cw != NULL:
            w = 0.0
            for j in range(k):
                w += cw[j] * <double>t[off + j]
            w_inv_f = <floating>(w * inv_n)
        for j in range(k):
            tj = keep_f * t[off + j] + share_f
            zj = z[off + j]
            tsum += <double>tj
            # a zero target contributes nothing, even against a -inf logit
            if tj != 0:
                tz += <double>tj * <double>zj
        _row_exp(z + off, grad + off, k, m)
        s = _row_sum(grad + off, k)
        loss += w * ((<double>m * tsum - tz) + tsum * log(s))
        scale = <floating>(((w * tsum) * inv_n) / s)
        for j in range(k):
            grad[off + j] = grad[off + j] * scale - (keep_f * t[off + j] + share_f) * w_inv_f
    return loss


# ---------------------------------------------------------------- element-wise losses
# Four independent accumulators break the dependency chain of the double-precision sum
# (a float reduction is not vectorised without -ffast-math); they also shorten the error chain.

cdef inline floating _log1p_unit(floating e) noexcept nogil:
    # log(1 + e) for 0 <= e <= 1, branch-free (vectorised, unlike libm's log1p):
    # log1p(e) = 2 atanh(s), s = e / (2 + e) in [0, 1/3], atanh(s) = s sum_k s^2k / (2k+1);
    # relative accuracy holds down to e -> 0 (s ~ e/2), where the loss term can be all there is.
    # (constants cast to floating: a bare 2 becomes the C double 2.0 and drags float32 math
    # into double)
    cdef floating s = e / (<floating>2 + e)
    cdef floating u = s * s
    cdef floating u2 = u * u
    cdef floating u4 = u2 * u2
    cdef floating u8, q
    # sum_k u^k / (2k+1), in Estrin's scheme (Horner's serial chain made this latency-bound)
    if floating is float:
        # (1/9)^8 / 17 < 2e-9: eight terms
        q = (((<float>1.0 + u * <float>(1.0 / 3.0)) + u2 * (<float>(1.0 / 5.0) + u * <float>(1.0 / 7.0)))
             + u4 * ((<float>(1.0 / 9.0) + u * <float>(1.0 / 11.0))
                     + u2 * (<float>(1.0 / 13.0) + u * <float>(1.0 / 15.0))))
    else:
        # (1/9)^17 / 35 < 2e-18: seventeen terms
        u8 = u4 * u4
        q = ((((1.0 + u * (1.0 / 3.0)) + u2 * (1.0 / 5.0 + u * (1.0 / 7.0)))
              + u4 * ((1.0 / 9.0 + u * (1.0 / 11.0)) + u2 * (1.0 / 13.0 + u * (1.0 / 15.0))))
             + u8 * (((1.0 / 17.0 + u * (1.0 / 19.0)) + u2 * (1.0 / 21.0 + u * (1.0 / 23.0)))
                     + u4 * ((1.0 / 25.0 + u * (1.0 / 27.0)) + u2 * (1.0 / 29.0 + u * (1.0 / 31.0)))
                     + u8 * (1.0 / 33.0)))
    return <floating>2 * s * q


cdef inline void _bce_block(const floating* z, const floating* t, floating* grad, floating* terms,
                            Py_ssize_t cnt, floating inv) noexcept nogil:
    # terms_j := max(z,0) - z t + log1p(exp(-|z|)), grad_j := (sigmoid(z) - t) * inv: one
    # vectorised pass (z_j and t_j are read before grad_j, which may alias z, is written)
    cdef Py_ssize_t j
    cdef floating zj, tj, e
    for j in range(cnt):
        zj = z[j]
        tj = t[j]
        e = _exp_nonpos(-_abs(zj))
        terms[j] = (zj if zj > 0 else <floating>0) - zj * tj + _log1p_unit(e)
        grad[j] = ((<floating>1 if zj >= 0 else e) / (<floating>1 + e) - tj) * inv


cdef inline void _bce_block_weighted(const floating* z, const floating* t, floating* grad,
                                     floating* terms, Py_ssize_t cnt, floating inv, floating w_neg,
                                     floating w_pos) noexcept nogil:
    # _bce_block with each element weighted by w = w_neg (1 - t) + w_pos t (exactly w_neg at
    # t = 0 and w_pos at t = 1): terms_j *= w, grad_j := (sigmoid(z) - t) * (w * inv)
    cdef Py_ssize_t j
    cdef floating zj, tj, e, w
    for j in range(cnt):
        zj = z[j]
        tj = t[j]
        w = w_neg * (<floating>1 - tj) + w_pos * tj
        e = _exp_nonpos(-_abs(zj))
        terms[j] = w * ((zj if zj > 0 else <floating>0) - zj * tj + _log1p_unit(e))
        grad[j] = ((<floating>1 if zj >= 0 else e) / (<floating>1 + e) - tj) * (w * inv)


cdef double sigmoid_bce(const floating* z, const floating* t, floating* grad,
                        Py_ssize_t size, const double* cw) noexcept nogil:
    # loss = max(z,0) - z t + log1p(exp(-|z|)) never overflows; sigmoid reuses e = exp(-|z|).
    # Blocks of 256 elements: the per-element terms go to a stack buffer in a vectorised pass,
    # then are summed in double. Class weights cw = [w_neg, w_pos] (NULL: none) run a block of
    # their own, so the unweighted pass is unchanged.
    cdef floating terms[256]
    cdef Py_ssize_t start, cnt
    cdef floating inv = <floating>(1.0 / <double>size)
    cdef double acc = 0.0
    for start in range(0, size, 256):
        cnt = size - start if size - start < 256 else 256
        if cw == NULL:
            _bce_block(z + start, t + start, grad + start, terms, cnt, inv)
        else:
            _bce_block_weighted(z + start, t + start, grad + start, terms, cnt, inv,
                                <floating>cw[0], <floating>cw[1])
        acc += _row_sum(terms, cnt)
    return acc


cdef double mse_core(const floating* p, const floating* t, floating* grad,
                     Py_ssize_t size) noexcept nogil:
    cdef Py_ssize_t i, end4 = size - size % 4
    cdef floating r0, r1, r2, r3, c = <floating>(2.0 / <double>size)
    cdef double a0 = 0.0, a1 = 0.0, a2 = 0.0, a3 = 0.0
    for i in range(0, end4, 4):
        r0 = p[i] - t[i]
        r1 = p[i + 1] - t[i + 1]
        r2 = p[i + 2] - t[i + 2]
        r3 = p[i + 3] - t[i + 3]
        a0 += <double>r0 * r0
        a1 += <double>r1 * r1
        a2 += <double>r2 * r2
        a3 += <double>r3 * r3
        grad[i] = c * r0
        grad[i + 1] = c * r1
        grad[i + 2] = c * r2
        grad[i + 3] = c * r3
    for i in range(end4, size):
        r0 = p[i] - t[i]
        a0 += <double>r0 * r0
        grad[i] = c * r0
    return (a0 + a1) + (a2 + a3)


cdef inline floating _sign_scaled(floating r, floating c) noexcept nogil:
    if r > 0:
        return c
    if r < 0:
        return -c
    return 0


cdef double mae_core(const floating* p, const floating* t, floating* grad,
                     Py_ssize_t size) noexcept nogil:
    # d|r|/dr is taken as 0 at r = 0 (the subgradient every framework uses)
    cdef Py_ssize_t i, end4 = size - size % 4
    cdef floating r0, r1, r2, r3, c = <floating>(1.0 / <double>size)
    cdef double a0 = 0.0, a1 = 0.0, a2 = 0.0, a3 = 0.0
    for i in range(0, end4, 4):
        r0 = p[i] - t[i]
        r1 = p[i + 1] - t[i + 1]
        r2 = p[i + 2] - t[i + 2]
        r3 = p[i + 3] - t[i + 3]
        a0 += <double>_abs(r0)
        a1 += <double>_abs(r1)
        a2 += <double>_abs(r2)
        a3 += <double>_abs(r3)
        grad[i] = _sign_scaled(r0, c)
        grad[i + 1] = _sign_scaled(r1, c)
        grad[i + 2] = _sign_scaled(r2, c)
        grad[i + 3] = _sign_scaled(r3, c)
    for i in range(end4, size):
        r0 = p[i] - t[i]
        a0 += <double>_abs(r0)
        grad[i] = _sign_scaled(r0, c)
    return (a0 + a1) + (a2 + a3)


cdef double huber_core(const floating* p, const floating* t, floating* grad,
                       Py_ssize_t size, double delta) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating r, a, d = <floating>delta, c = <floating>(1.0 / <double>size)
    cdef double acc0 = 0.0, acc1 = 0.0
    for i in range(size):
        r = p[i] - t[i]
        a = _abs(r)
        if a <= d:
            if i & 1:
                acc1 += 0.5 * <double>r * <double>r
            else:
                acc0 += 0.5 * <double>r * <double>r
            grad[i] = r * c
        else:
            if i & 1:
                acc1 += delta * (<double>a - 0.5 * delta)
            else:
                acc0 += delta * (<double>a - 0.5 * delta)
            grad[i] = d * c if r > 0 else -d * c
    return acc0 + acc1


cdef Py_ssize_t _first_bad_label(const label_t* y, Py_ssize_t n, Py_ssize_t k) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        if y[i] < 0 or y[i] >= k:
            return i
    return -1


# ---------------------------------------------------------------- argument checks (Python level)

# The shared checks (check_float_array, check_like, check_no_overlap, ...) are in _common.pxd.

cdef int _nonempty(str fn, str name, cnp.ndarray a) except -1:
    if cnp.PyArray_SIZE(a) == 0:
        raise ValueError(f"{fn}: argument '{name}' is empty (shape {(<object>a).shape}); the "
                         f"mean loss over no elements is undefined")
    return 0


cdef cnp.ndarray _class_weights(str fn, object class_weight, Py_ssize_t k, str what):
    """``class_weight`` as a C-contiguous float64 (k,) array of finite values >= 0 (a copy
    when it is not one already), or None."""
    if class_weight is None:
        return None
    try:
        w = np.ascontiguousarray(class_weight, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{fn}: argument 'class_weight' must be None or {k} real numbers "
                        f"({what}), got {received(class_weight)}") from None
    if w.shape != (k,):
        raise ValueError(f"{fn}: argument 'class_weight' has shape {w.shape}; expected ({k},) "
                         f"({what})")
    if not (np.isfinite(w).all() and (w >= 0).all()):
        raise ValueError(f"{fn}: argument 'class_weight' must hold finite numbers >= 0, got "
                         f"{w.tolist()}")
    return w


cdef inline const double* _weights_or_null(cnp.ndarray w) noexcept:
    return NULL if w is None else <const double*>cnp.PyArray_DATA(w)


# ---------------------------------------------------------------- def wrappers

def softmax_cross_entropy(logits, target, grad, label_smoothing=0.0, class_weight=None):
    """Mean softmax cross-entropy from logits; grad := (softmax(z) - t') / n.   z, grad (n, k)

    ``target``: integer labels (n,) int32/int64 in [0, k), or probabilities (n, k) of the logits'
    dtype. With label smoothing ``ls`` in [0, 1] the target is t' = (1 - ls) t + ls / k.
    Loss: mean_i [ logsumexp(z_i) - sum_j t'_ij z_ij ] (log-sum-exp with the row max subtracted,
    finite for logits of +-1000). For probability rows that do not sum to 1 the gradient written
    is the exact one, (sum_j t'_ij softmax(z_i) - t'_i) / n. ``grad`` may be ``logits`` (in place);
    it must not overlap ``target``.

    ``class_weight`` (k,) finite >= 0, or None: row i's loss and gradient are multiplied by
    w_i = class_weight[y_i] (for probability rows w_i = sum_j class_weight_j t_ij), and the sum
    is still divided by n (Keras' class_weight, not PyTorch's division by sum_i w_i):
    mean_i w_i loss_i; grad := w_i (softmax(z_i) - t'_i) / n.
    """
    fn = "softmax_cross_entropy"
    cdef cnp.ndarray z = check_float_array(logits, fn, "logits", 2, False)
    _nonempty(fn, "logits", z)
    cdef Py_ssize_t n = z.shape[0], k = z.shape[1]
    cdef cnp.ndarray g = check_like(grad, fn, "grad", z, "logits", True)
    cdef double ls = check_real(label_smoothing, fn, "label_smoothing")
    if not (0.0 <= ls <= 1.0):
        raise ValueError(f"{fn}: argument 'label_smoothing' must be in [0, 1], got {ls}")
    cdef cnp.ndarray cw = _class_weights(fn, class_weight, k, "one per class, a column of 'logits'")
    cdef const double* pw = _weights_or_null(cw)
    if not isinstance(target, np.ndarray):
        raise TypeError(f"{fn}: argument 'target' must be a numpy.ndarray (int32/int64 labels "
                        f"(n,) or {z.dtype} probabilities (n, k)), got {received(target)}")
    cdef cnp.ndarray t = <cnp.ndarray>target
    cdef double loss
    cdef Py_ssize_t bad
    cdef bint wide, single = is_float32(z)
    cdef void* pt = cnp.PyArray_DATA(t)
    check_no_overlap(g, z, fn, "grad", "logits", True)
    if t.ndim == 1:
        if t.dtype.kind != "i" or t.dtype.itemsize not in (4, 8) or not t.dtype.isnative:
            got = t.dtype.str if not t.dtype.isnative else t.dtype
            raise TypeError(f"{fn}: argument 'target' has dtype {got}; expected int32 or int64 "
                            f"(1-D targets are integer labels; probability targets have shape "
                            f"(n, k))")
        if t.shape[0] != n:
            check_shape(t, (n,), fn, "target", "(one label per row of 'logits')")
        check_layout(t, fn, "target", False)
        check_no_overlap(g, t, fn, "grad", "target", False)
        if t.dtype.itemsize == 4:
            bad = _first_bad_label(<const int32_t*>pt, n, k)
        else:
            bad = _first_bad_label(<const int64_t*>pt, n, k)
        if bad >= 0:
            raise ValueError(f"{fn}: argument 'target' holds label {t[bad]} at index {bad}; "
                             f"expected labels in [0, {k}) ('logits' has {k} classes)")
        wide = t.dtype.itemsize == 8
        with nogil:
            # the labels' width is the other axis of the dispatch
            if not wide:
                loss = float_dispatch_double(single, softmax_xent_labels32[float],
                                             softmax_xent_labels32[double],
                                             data(z), <const int32_t*>pt, data(g), n, k, ls, pw)
            else:
                loss = float_dispatch_double(single, softmax_xent_labels64[float],
                                             softmax_xent_labels64[double],
                                             data(z), <const int64_t*>pt, data(g), n, k, ls, pw)
    elif t.ndim == 2:
        check_like(t, fn, "target", z, "logits", False)
        check_no_overlap(g, t, fn, "grad", "target", False)
        with nogil:
            loss = float_dispatch_double(single, softmax_xent_probs[float],
                                         softmax_xent_probs[double], data(z), pt, data(g), n, k,
                                         ls, pw)
    else:
        raise ValueError(f"{fn}: argument 'target' has shape {(<object>t).shape}; expected "
                         f"labels (n,) or probabilities (n, k)")
    return loss / <double>n


cdef tuple _elementwise_args(str fn, str first, object a, object target, object grad):
    """Check (a, target, grad) of an element-wise loss: same dtype, same shape, non-empty."""
    cdef cnp.ndarray x = check_float_dtype(a, fn, first)
    check_layout(x, fn, first, False)
    _nonempty(fn, first, x)
    cdef cnp.ndarray t = check_like(target, fn, "target", x, first, False)
    cdef cnp.ndarray g = check_like(grad, fn, "grad", x, first, True)
    check_no_overlap(g, x, fn, "grad", first, True)
    check_no_overlap(g, t, fn, "grad", "target", True)
    return x, t, g


cdef enum:
    # which core _elementwise_loss runs
    _MSE
    _MAE


cdef inline double _elementwise_core(int which, bint single, void* px, void* pt, void* pg,
                                     Py_ssize_t size) noexcept nogil:
    if which == _MSE:
        return float_dispatch_double(single, mse_core[float], mse_core[double], px, pt, pg, size)
    else:
        return float_dispatch_double(single, mae_core[float], mae_core[double], px, pt, pg, size)


cdef object _elementwise_loss(int which, str fn, str first, object a, object target,
                              object grad):
    """The def wrapper of an element-wise loss without parameters: check, run the core, mean."""
    cdef cnp.ndarray x, t, g
    x, t, g = _elementwise_args(fn, first, a, target, grad)
    cdef Py_ssize_t size = cnp.PyArray_SIZE(x)
    cdef double acc
    with nogil:
        acc = _elementwise_core(which, is_float32(x), data(x), data(t), data(g), size)
    return acc / <double>size


def sigmoid_binary_cross_entropy(logits, target, grad, class_weight=None):
    """Mean binary cross-entropy of sigmoid(z) against t; grad := (sigmoid(z) - t) / size.

    logits, target, grad of one shape: (n, 1) or (n,) (any shape is accepted; the mean is over
    all elements, as for multi-label targets). Per element max(z, 0) - z t + log1p(exp(-|z|)),
    stable for any |z|. Targets are expected in [0, 1] (soft labels allowed).

    ``class_weight`` [w_neg, w_pos] finite >= 0, or None: each element's loss and gradient are
    multiplied by w = w_neg (1 - t) + w_pos t (w_neg for t = 0, w_pos for t = 1), the sum still
    divided by size (Keras' class_weight): mean w loss; grad := w (sigmoid(z) - t) / size.
    """
    fn = "sigmoid_binary_cross_entropy"
    cdef cnp.ndarray cw = _class_weights(fn, class_weight, 2, "[w_neg, w_pos]")
    cdef cnp.ndarray x, t, g
    x, t, g = _elementwise_args(fn, "logits", logits, target, grad)
    cdef Py_ssize_t size = cnp.PyArray_SIZE(x)
    cdef const double* pw = _weights_or_null(cw)
    cdef double acc
    with nogil:
        acc = float_dispatch_double(is_float32(x), sigmoid_bce[float], sigmoid_bce[double],
                                    data(x), data(t), data(g), size, pw)
    return acc / <double>size


def mse(pred, target, grad):
    """Mean squared error mean((p - t)^2); grad := 2 (p - t) / size.   any shape, all equal"""
    return _elementwise_loss(_MSE, "mse", "pred", pred, target, grad)


def mae(pred, target, grad):
    """Mean absolute error mean(|p - t|); grad := sign(p - t) / size (0 where p == t).   any shape"""
    return _elementwise_loss(_MAE, "mae", "pred", pred, target, grad)


def huber(pred, target, grad, delta=1.0):
    """Mean Huber loss, r = p - t: r^2/2 if |r| <= delta else delta (|r| - delta/2);
    grad := clip(r, -delta, delta) / size.   any shape; delta > 0 (PyTorch's HuberLoss)
    """
    fn = "huber"
    cdef double d = check_real(delta, fn, "delta")
    if not (d > 0.0 and isfinite(d)):
        raise ValueError(f"{fn}: argument 'delta' must be a finite number > 0, got {d}")
    cdef cnp.ndarray x, t, g
    x, t, g = _elementwise_args(fn, "pred", pred, target, grad)
    cdef Py_ssize_t size = cnp.PyArray_SIZE(x)
    cdef double acc
    with nogil:
        acc = float_dispatch_double(is_float32(x), huber_core[float], huber_core[double],
                                    data(x), data(t), data(g), size, d)
    return acc / <double>size
