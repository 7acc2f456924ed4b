# distutils: extra_compile_args = -fno-trapping-math
"""Batch normalisation over the batch axis, x (n, d): training forward, eval forward, backward.

Two passes over the data for the training forward (shifted sums for mean/variance, then
normalise + scale/shift) and two for the backward (column sums, then dX) -- the minimum, as
every output element depends on whole-column statistics. A zero-variance column gives
xhat = 0 and y = beta (eps > 0 keeps 1/sqrt(var + eps) finite), never NaN.
"""
cimport numpy as cnp
from cython cimport floating
from libc.math cimport sqrt
from libc.stdlib cimport malloc, free

from _common cimport (check_float_array, check_same_dtype, check_shape, check_no_overlap,
                      check_finite_float, check_flag, float_dispatch, float_dispatch_int,
                      is_float32, data, data_or_null)

from batchnorm cimport (bn_shifted_sums_f32, bn_shifted_sums_f64, bn_normalise_f32,
                        bn_normalise_f64, bn_affine_f32, bn_affine_f64, bn_grad_sums_f32,
                        bn_grad_sums_f64, bn_dx_f32, bn_dx_f64)

cnp.import_array()



cdef int bn_forward_train(const floating* x, Py_ssize_t n, Py_ssize_t d,
                          const floating* gamma, const floating* beta,
                          floating* running_mean, floating* running_var,
                          double momentum, double eps, floating* y, floating* xhat,
                          floating* inv_std) noexcept nogil:
    """Returns -1 when out of memory (the (d,) scratch), else 0."""
    cdef Py_ssize_t j
    cdef double mean, var, m1
    # s1, s2: sums of (x - K) and (x - K)^2 with the shift K = the first row, which avoids the
    # cancellation of the plain E[x^2] - E[x]^2 in one pass. They are accumulated in the data
    # type over blocks of rows (t1, t2: full-width vector adds) and flushed into float64 after
    # each block, so float32 keeps float64-like accuracy for any batch size.
    # mu: the per-column mean in the data type, for the second pass.
    cdef double* s1 = <double*>malloc(2 * d * sizeof(double) + 3 * d * sizeof(floating) + 1)
    if s1 == NULL:
        return -1
    cdef double* s2 = s1 + d
    cdef floating* mu = <floating*>(s2 + d)
    cdef floating* t1 = mu + d
    cdef floating* t2 = t1 + d
    if floating is float:
        bn_shifted_sums_f32(x, n, d, t1, t2, s1, s2)
    else:
        bn_shifted_sums_f64(x, n, d, t1, t2, s1, s2)
    for j in range(d):
        m1 = s1[j] / n
        mean = <double>x[j] + m1
        var = s2[j] / n - m1 * m1
        if var < 0:      # rounding
            var = 0
        inv_std[j] = <floating>(1.0 / sqrt(var + eps))
        mu[j] = <floating>mean
        running_mean[j] = <floating>(momentum * running_mean[j] + (1 - momentum) * mean)
        # unbiased variance for the running value (biased when n == 1: nothing better exists)
        if n > 1:
            var = var * n / (n - 1)
        running_var[j] = <floating>(momentum * running_var[j] + (1 - momentum) * var)
    if floating is float:
        bn_normalise_f32(x, n, d, mu, inv_std, gamma, beta, xhat, y)
    else:
        bn_normalise_f64(x, n, d, mu, inv_std, gamma, beta, xhat, y)
    free(s1)
    return 0


cdef int bn_forward_eval(const floating* x, Py_ssize_t n, Py_ssize_t d,
                         const floating* gamma, const floating* beta,
                         const floating* running_mean, const floating* running_var,
                         double eps, floating* y) noexcept nogil:
    cdef Py_ssize_t j
    cdef double s
    cdef floating* sc = <floating*>malloc(2 * d * sizeof(floating) + 1)
    if sc == NULL:
        return -1
    cdef floating* sh = sc + d
    for j in range(d):
        s = gamma[j] / sqrt(<double>running_var[j] + eps)
        sc[j] = <floating>s
        sh[j] = <floating>(beta[j] - running_mean[j] * s)
    if floating is float:
        bn_affine_f32(x, n, d, sc, sh, y)
    else:
        bn_affine_f64(x, n, d, sc, sh, y)
    free(sc)
    return 0


cdef int bn_backward(const floating* dy, const floating* xhat, Py_ssize_t n, Py_ssize_t d,
                     const floating* gamma, const floating* inv_std, floating* dx,
                     floating* dgamma, floating* dbeta, bint accumulate) noexcept nogil:
    # dx = gamma inv_std / n (n dy - sum(dy) - xhat sum(dy xhat))
    cdef Py_ssize_t j
    # sb, sg: sums of dy and dy * xhat, accumulated in the data type over blocks of rows
    # (tb, tg) and flushed into float64 (see bn_forward_train)
    cdef double* sb = <double*>malloc(2 * d * sizeof(double) + 5 * d * sizeof(floating) + 1)
    if sb == NULL:
        return -1
    cdef double* sg = sb + d
    cdef floating* ca = <floating*>(sg + d)
    cdef floating* cb = ca + d
    cdef floating* cg = cb + d
    cdef floating* tb = cg + d
    cdef floating* tg = tb + d
    if floating is float:
        bn_grad_sums_f32(dy, xhat, n, d, tb, tg, sb, sg)
    else:
        bn_grad_sums_f64(dy, xhat, n, d, tb, tg, sb, sg)
    for j in range(d):
        # dx = a (dy - mean(dy) - xhat mean(dy xhat)), a = gamma inv_std: the factor is kept
        # outside so that dy - mean(dy) cancels exactly when all dy of a column are equal
        ca[j] = <floating>(<double>gamma[j] * inv_std[j])
        cb[j] = <floating>(sb[j] / n)
        cg[j] = <floating>(sg[j] / n)
        if accumulate:
            dgamma[j] = <floating>(dgamma[j] + sg[j])
            dbeta[j] = <floating>(dbeta[j] + sb[j])
        else:
            dgamma[j] = <floating>sg[j]
            dbeta[j] = <floating>sb[j]
    if dx != NULL:
        if floating is float:
            bn_dx_f32(dy, xhat, n, d, ca, cb, cg, dx)
        else:
            bn_dx_f64(dy, xhat, n, d, ca, cb, cg, dx)
    free(sb)
    return 0


cdef _vector(obj, str fn, str name, cnp.ndarray ref, Py_ssize_t d, bint writable):
    cdef cnp.ndarray a = check_float_array(obj, fn, name, 1, writable)
    check_same_dtype(a, ref, fn, name, "x" if fn != "batchnorm_backward" else "dy")
    check_shape(a, (d,), fn, name, "(one value per column)")
    return a


cdef _check_backward_overlaps(str fn, list outs, cnp.ndarray DY, cnp.ndarray XH, cnp.ndarray G,
                              cnp.ndarray IS):
    """Backward's outputs ``outs`` ((name, array): dgamma, dbeta, dx) must not overlap its
    inputs or each other; only dx may be written over dy or xhat (checked by the caller)."""
    for k, (oname, out) in enumerate(outs):
        for iname, inp in (("dy", DY), ("xhat", XH), ("gamma", G), ("inv_std", IS)):
            if not (oname == "dx" and iname in ("dy", "xhat")):
                check_no_overlap(out, inp, fn, oname, iname, False)
        for oname2, out2 in outs[k + 1:]:
            check_no_overlap(out, out2, fn, oname, oname2, False)


cdef double _check_eps(eps, str fn) except? -1.0:
    cdef double e = check_finite_float(eps, fn, "eps")
    if not e > 0:
        raise ValueError(f"{fn}: argument 'eps' must be > 0 (it keeps 1/sqrt(var + eps) finite "
                         f"for constant columns), got {e}")
    return e


def batchnorm_forward_train(x, gamma, beta, running_mean, running_var, momentum, eps, y, xhat,
                            inv_std):
    """mu, var := batch mean / variance of each column; xhat := (x - mu) / sqrt(var + eps);
    y := gamma * xhat + beta; inv_std := 1 / sqrt(var + eps); running := momentum * running +
    (1 - momentum) * batch (unbiased var)   x, y, xhat (n, d); gamma, beta, running_*, inv_std
    (d,). y and xhat must not overlap x or each other."""
    fn = "batchnorm_forward_train"
    cdef cnp.ndarray X = check_float_array(x, fn, "x", 2, False)
    cdef Py_ssize_t n = X.shape[0], d = X.shape[1]
    if n < 1:
        raise ValueError(f"{fn}: argument 'x' has shape {(<object>X).shape}; batch statistics "
                         f"need at least one row")
    cdef cnp.ndarray G = _vector(gamma, fn, "gamma", X, d, False)
    cdef cnp.ndarray Bt = _vector(beta, fn, "beta", X, d, False)
    cdef cnp.ndarray RM = _vector(running_mean, fn, "running_mean", X, d, True)
    cdef cnp.ndarray RV = _vector(running_var, fn, "running_var", X, d, True)
    cdef cnp.ndarray IS = _vector(inv_std, fn, "inv_std", X, d, True)
    cdef double mom = check_finite_float(momentum, fn, "momentum")
    if not 0 <= mom <= 1:
        raise ValueError(f"{fn}: argument 'momentum' must be in [0, 1], got {mom}")
    cdef double e = _check_eps(eps, fn)
    cdef cnp.ndarray Y = check_float_array(y, fn, "y", 2, True)
    cdef cnp.ndarray XH = check_float_array(xhat, fn, "xhat", 2, True)
    for name, arr in (("y", Y), ("xhat", XH)):
        check_same_dtype(arr, X, fn, name, "x")
        check_shape(arr, (<object>X).shape, fn, name, "(the shape of x)")
    outs = (("y", Y), ("xhat", XH), ("running_mean", RM), ("running_var", RV),
            ("inv_std", IS))
    ins = (("x", X), ("gamma", G), ("beta", Bt))
    for k, (oname, out) in enumerate(outs):
        for iname, inp in ins:
            check_no_overlap(out, inp, fn, oname, iname, False)
        for oname2, out2 in outs[k + 1:]:
            check_no_overlap(out, out2, fn, oname, oname2, False)
    cdef int rc
    with nogil:
        rc = float_dispatch_int(is_float32(X), bn_forward_train[float], bn_forward_train[double],
                                data(X), n, d, data(G), data(Bt), data(RM), data(RV), mom, e,
                                data(Y), data(XH), data(IS))
    if rc:
        raise MemoryError(f"{fn}: cannot allocate the per-column scratch for d = {d}")
    return y


def batchnorm_forward_eval(x, gamma, beta, running_mean, running_var, eps, y):
    """y := gamma * (x - running_mean) / sqrt(running_var + eps) + beta   x, y (n, d); the
    others (d,). y may be x (in place)."""
    fn = "batchnorm_forward_eval"
    cdef cnp.ndarray X = check_float_array(x, fn, "x", 2, False)
    cdef Py_ssize_t n = X.shape[0], d = X.shape[1]
    cdef cnp.ndarray G = _vector(gamma, fn, "gamma", X, d, False)
    cdef cnp.ndarray Bt = _vector(beta, fn, "beta", X, d, False)
    cdef cnp.ndarray RM = _vector(running_mean, fn, "running_mean", X, d, False)
    cdef cnp.ndarray RV = _vector(running_var, fn, "running_var", X, d, False)
    cdef double e = _check_eps(eps, fn)
    cdef cnp.ndarray Y = check_float_array(y, fn, "y", 2, True)
    check_same_dtype(Y, X, fn, "y", "x")
    check_shape(Y, (<object>X).shape, fn, "y", "(the shape of x)")
    check_no_overlap(Y, X, fn, "y", "x", True)
    for iname, inp in (("gamma", G), ("beta", Bt), ("running_mean", RM), ("running_var", RV)):
        check_no_overlap(Y, inp, fn, "y", iname, False)
    if bool((<object>RV < 0).any()):
        raise ValueError(f"{fn}: argument 'running_var' has negative entries (min "
                         f"{(<object>RV).min()}); a variance must be >= 0")
    cdef int rc
    with nogil:
        rc = float_dispatch_int(is_float32(X), bn_forward_eval[float], bn_forward_eval[double],
                                data(X), n, d, data(G), data(Bt), data(RM), data(RV), e, data(Y))
    if rc:
        raise MemoryError(f"{fn}: cannot allocate the per-column scratch for d = {d}")
    return y


def batchnorm_backward(dy, xhat, gamma, inv_std, dx, dgamma, dbeta, accumulate=False):
    """dgamma (+)= sum_rows dy * xhat; dbeta (+)= sum_rows dy;
    dx := gamma * inv_std / n * (n dy - sum_rows dy - xhat * sum_rows(dy * xhat))
    dy, xhat, dx (n, d); gamma, inv_std, dgamma, dbeta (d,). dx may be dy (in place) or None
    (skipped)."""
    fn = "batchnorm_backward"
    cdef cnp.ndarray DY = check_float_array(dy, fn, "dy", 2, False)
    cdef Py_ssize_t n = DY.shape[0], d = DY.shape[1]
    cdef cnp.ndarray XH = check_float_array(xhat, fn, "xhat", 2, False)
    check_same_dtype(XH, DY, fn, "xhat", "dy")
    check_shape(XH, (<object>DY).shape, fn, "xhat", "(the shape of dy)")
    cdef cnp.ndarray G = _vector(gamma, fn, "gamma", DY, d, False)
    cdef cnp.ndarray IS = _vector(inv_std, fn, "inv_std", DY, d, False)
    cdef cnp.ndarray DG = _vector(dgamma, fn, "dgamma", DY, d, True)
    cdef cnp.ndarray DB = _vector(dbeta, fn, "dbeta", DY, d, True)
    cdef cnp.ndarray DX = None
    outs = [("dgamma", DG), ("dbeta", DB)]
    if dx is not None:
        DX = check_float_array(dx, fn, "dx", 2, True)
        check_same_dtype(DX, DY, fn, "dx", "dy")
        check_shape(DX, (<object>DY).shape, fn, "dx", "(the shape of dy)")
        check_no_overlap(DX, DY, fn, "dx", "dy", True)
        check_no_overlap(DX, XH, fn, "dx", "xhat", True)
        outs.append(("dx", DX))
    _check_backward_overlaps(fn, outs, DY, XH, G, IS)
    cdef bint acc = check_flag(accumulate, fn, "accumulate")
    cdef void* dxp = data_or_null(DX)
    cdef int rc
    with nogil:
        rc = float_dispatch_int(is_float32(DY), bn_backward[float], bn_backward[double],
                                data(DY), data(XH), n, d, data(G), data(IS), dxp, data(DG),
                                data(DB), acc)
    if rc:
        raise MemoryError(f"{fn}: cannot allocate the per-column scratch for d = {d}")
    return dx


# ---- per-channel batch norm of NCHW arrays x (n, c, h, w) -----------------------------------
# Statistics of channel ch run over its n planes x[i, ch] of hw = h*w contiguous values; each
# channel is finished (sums, then the elementwise pass) before the next, so no (c,) scratch is
# needed and nothing is allocated. Sums are accumulated in float64 for both dtypes, shifted by
# the channel's first value as in bn_forward_train; the running statistics follow the same
# convention (momentum weighs the old value; unbiased variance over m = n*h*w values).
#
# The passes over a plane are C loops multi-versioned with DL_CLONES. A float64 sum written as
# one running total is a chain of dependent additions (4 cycles each) that the compiler may not
# reorder: the first version spent ~1.2 ms of the recipe's 64x16x28x28 forward there. The sums
# now run in 16 float64 lanes (two AVX-512 vectors), added together at the end of each plane:
# the same float64 precision, another order of summation (the last bits of mean and variance
# differ from a sequential sum).

cdef extern from *:
    """
    #define DL_BN2D_LANES 16
    #define DL_BN2D_PASSES(T, S)                                                              \
    /* s1 += sum (x[k] - K), s2 += sum (x[k] - K)^2 over k < m, in float64 lanes */          \
    DL_CLONES static void dl_bn2d_sums_##S(const T* __restrict x, Py_ssize_t m, double K,   \
            double* __restrict s1, double* __restrict s2) {                                   \
        double a1[DL_BN2D_LANES] = {0}, a2[DL_BN2D_LANES] = {0};                              \
        Py_ssize_t k = 0;                                                                     \
        for (; k + DL_BN2D_LANES <= m; k += DL_BN2D_LANES)                                    \
            for (int l = 0; l < DL_BN2D_LANES; l++) {                                         \
                double a = (double)x[k + l] - K;                                              \
                a1[l] += a;                                                                   \
                a2[l] += a * a;                                                               \
            }                                                                                 \
        double t1 = 0, t2 = 0;                                                                \
        for (int l = 0; l < DL_BN2D_LANES; l++) { t1 += a1[l]; t2 += a2[l]; }                 \
        for (; k < m; k++) { double a = (double)x[k] - K; t1 += a; t2 += a * a; }             \
        *s1 += t1;                                                                            \
        *s2 += t2;                                                                            \
    }                                                                                         \
    /* sb += sum dy[k], sg += sum dy[k] xhat[k] over k < m, in float64 lanes */              \
    DL_CLONES static void dl_bn2d_grad_sums_##S(const T* __restrict dy,                     \
            const T* __restrict xh, Py_ssize_t m, double* __restrict sb,                      \
            double* __restrict sg) {                                                          \
        double a1[DL_BN2D_LANES] = {0}, a2[DL_BN2D_LANES] = {0};                              \
        Py_ssize_t k = 0;                                                                     \
        for (; k + DL_BN2D_LANES <= m; k += DL_BN2D_LANES)                                    \
            for (int l = 0; l < DL_BN2D_LANES; l++) {                                         \
                double g = (double)dy[k + l];                                                 \
                a1[l] += g;                                                                   \
                a2[l] += g * (double)xh[k + l];                                               \
            }                                                                                 \
        double t1 = 0, t2 = 0;                                                                \
        for (int l = 0; l < DL_BN2D_LANES; l++) { t1 += a1[l]; t2 += a2[l]; }                 \
        for (; k < m; k++) { t1 += (double)dy[k]; t2 += (double)dy[k] * (double)xh[k]; }      \
        *sb += t1;                                                                            \
        *sg += t2;                                                                            \
    }                                                                                         \
    /* xhat := (x - mu) istd, y := xhat g + b over one plane */                               \
    DL_CLONES static void dl_bn2d_normalise_##S(const T* __restrict x, Py_ssize_t m, T mu,  \
            T istd, T g, T b, T* __restrict xh, T* __restrict y) {                            \
        for (Py_ssize_t k = 0; k < m; k++) {                                                  \
            T v = (x[k] - mu) * istd;                                                         \
            xh[k] = v;                                                                        \
            y[k] = v * g + b;                                                                 \
        }                                                                                     \
    }                                                                                         \
    /* y := x scale + shift over one plane; y may be x */                                     \
    DL_CLONES static void dl_bn2d_affine_##S(const T* x, Py_ssize_t m, T scale, T shift,     \
            T* y) {                                                                           \
        for (Py_ssize_t k = 0; k < m; k++) y[k] = x[k] * scale + shift;                       \
    }                                                                                         \
    /* dx := ca (dy - mb - xhat mg) over one plane; dx may be dy or xhat */                   \
    DL_CLONES static void dl_bn2d_dx_##S(const T* dy, const T* xh, Py_ssize_t m, T ca, T mb, \
            T mg, T* dx) {                                                                    \
        for (Py_ssize_t k = 0; k < m; k++) {                                                  \
            T gk = dy[k], hk = xh[k];                                                         \
            dx[k] = ca * (gk - mb - hk * mg);                                                 \
        }                                                                                     \
    }
    DL_BN2D_PASSES(float, f32)
    DL_BN2D_PASSES(double, f64)
    """
    void bn2d_sums_f32 "dl_bn2d_sums_f32"(const float* x, Py_ssize_t m, double K, double* s1,
                                          double* s2) nogil
    void bn2d_sums_f64 "dl_bn2d_sums_f64"(const double* x, Py_ssize_t m, double K, double* s1,
                                          double* s2) nogil
    void bn2d_grad_sums_f32 "dl_bn2d_grad_sums_f32"(const float* dy, const float* xh,
                                                    Py_ssize_t m, double* sb, double* sg) nogil
    void bn2d_grad_sums_f64 "dl_bn2d_grad_sums_f64"(const double* dy, const double* xh,
                                                    Py_ssize_t m, double* sb, double* sg) nogil
    void bn2d_normalise_f32 "dl_bn2d_normalise_f32"(const float* x, Py_ssize_t m, float mu,
        float istd, float g, float b, float* xh, float* y) nogil
    void bn2d_normalise_f64 "dl_bn2d_normalise_f64"(const double* x, Py_ssize_t m, double mu,
        double istd, double g, double b, double* xh, double* y) nogil
    void bn2d_affine_f32 "dl_bn2d_affine_f32"(const float* x, Py_ssize_t m, float scale,
                                              float shift, float* y) nogil
    void bn2d_affine_f64 "dl_bn2d_affine_f64"(const double* x, Py_ssize_t m, double scale,
                                              double shift, double* y) nogil
    void bn2d_dx_f32 "dl_bn2d_dx_f32"(const float* dy, const float* xh, Py_ssize_t m, float ca,
                                      float mb, float mg, float* dx) nogil
    void bn2d_dx_f64 "dl_bn2d_dx_f64"(const double* dy, const double* xh, Py_ssize_t m,
                                      double ca, double mb, double mg, double* dx) nogil


cdef void bn2d_forward_train(const floating* x, Py_ssize_t n, Py_ssize_t c, Py_ssize_t hw,
                             const floating* gamma, const floating* beta,
                             floating* running_mean, floating* running_var,
                             double momentum, double eps, floating* y, floating* xhat,
                             floating* inv_std) noexcept nogil:
    """m := n hw; mean, var (biased) per channel; xhat := (x - mean) inv_std; y := gamma xhat
    + beta; running := momentum running + (1 - momentum) batch (var unbiased when m > 1)."""
    cdef Py_ssize_t i, ch, off, m = n * hw
    cdef double s1, s2, mean, var, m1, K
    cdef floating mu, istd
    for ch in range(c):
        K = <double>x[ch * hw]
        s1 = 0
        s2 = 0
        for i in range(n):
            if floating is float:
                bn2d_sums_f32(x + (i * c + ch) * hw, hw, K, &s1, &s2)
            else:
                bn2d_sums_f64(x + (i * c + ch) * hw, hw, K, &s1, &s2)
        m1 = s1 / m
        mean = K + m1
        var = s2 / m - m1 * m1
        if var < 0:      # rounding
            var = 0
        istd = <floating>(1.0 / sqrt(var + eps))
        inv_std[ch] = istd
        running_mean[ch] = <floating>(momentum * running_mean[ch] + (1 - momentum) * mean)
        if m > 1:
            var = var * m / (m - 1)
        running_var[ch] = <floating>(momentum * running_var[ch] + (1 - momentum) * var)
        mu = <floating>mean
        for i in range(n):
            off = (i * c + ch) * hw
            if floating is float:
                bn2d_normalise_f32(x + off, hw, mu, istd, gamma[ch], beta[ch], xhat + off, y + off)
            else:
                bn2d_normalise_f64(x + off, hw, mu, istd, gamma[ch], beta[ch], xhat + off, y + off)


cdef void bn2d_forward_eval(const floating* x, Py_ssize_t n, Py_ssize_t c, Py_ssize_t hw,
                            const floating* gamma, const floating* beta,
                            const floating* running_mean, const floating* running_var,
                            double eps, floating* y) noexcept nogil:
    """y := x scale + shift per channel, scale = gamma / sqrt(running_var + eps), shift = beta -
    running_mean scale (computed in float64); y may be x."""
    cdef Py_ssize_t i, ch, off
    cdef double sc
    cdef floating scale, shift
    for ch in range(c):
        sc = <double>gamma[ch] / sqrt(<double>running_var[ch] + eps)
        scale = <floating>sc
        shift = <floating>(<double>beta[ch] - <double>running_mean[ch] * sc)
        for i in range(n):
            off = (i * c + ch) * hw
            if floating is float:
                bn2d_affine_f32(x + off, hw, scale, shift, y + off)
            else:
                bn2d_affine_f64(x + off, hw, scale, shift, y + off)


cdef void bn2d_backward(const floating* dy, const floating* xhat, Py_ssize_t n, Py_ssize_t c,
                        Py_ssize_t hw, const floating* gamma, const floating* inv_std,
                        floating* dx, floating* dgamma, floating* dbeta,
                        bint accumulate) noexcept nogil:
    """sb := sum dy, sg := sum dy xhat over (n, h, w) per channel; dgamma (+)= sg; dbeta (+)= sb;
    dx := gamma inv_std (dy - sb/m - xhat sg/m) (skipped when dx is NULL); dx may be dy or
    xhat."""
    cdef Py_ssize_t i, ch, off, m = n * hw
    cdef double sb, sg
    cdef floating ca, mb, mg
    for ch in range(c):
        sb = 0
        sg = 0
        for i in range(n):
            off = (i * c + ch) * hw
            if floating is float:
                bn2d_grad_sums_f32(dy + off, xhat + off, hw, &sb, &sg)
            else:
                bn2d_grad_sums_f64(dy + off, xhat + off, hw, &sb, &sg)
        if accumulate:
            dgamma[ch] = <floating>(dgamma[ch] + sg)
            dbeta[ch] = <floating>(dbeta[ch] + sb)
        else:
            dgamma[ch] = <floating>sg
            dbeta[ch] = <floating>sb
        if dx == NULL or m == 0:
            continue
        ca = <floating>(<double>gamma[ch] * <double>inv_std[ch])
        mb = <floating>(sb / m)
        mg = <floating>(sg / m)
        for i in range(n):
            off = (i * c + ch) * hw
            if floating is float:
                bn2d_dx_f32(dy + off, xhat + off, hw, ca, mb, mg, dx + off)
            else:
                bn2d_dx_f64(dy + off, xhat + off, hw, ca, mb, mg, dx + off)


cdef _channel_vector(obj, str fn, str name, cnp.ndarray ref, str refname, Py_ssize_t c,
                     bint writable):
    cdef cnp.ndarray a = check_float_array(obj, fn, name, 1, writable)
    check_same_dtype(a, ref, fn, name, refname)
    check_shape(a, (c,), fn, name, f"(one value per channel of {refname})")
    return a


cdef _nchw_like(obj, str fn, str name, cnp.ndarray ref, str refname, bint writable):
    cdef cnp.ndarray a = check_float_array(obj, fn, name, 4, writable)
    check_same_dtype(a, ref, fn, name, refname)
    check_shape(a, (<object>ref).shape, fn, name, f"(the shape of {refname})")
    return a


def batchnorm2d_forward_train(x, gamma, beta, running_mean, running_var, momentum, eps, y, xhat,
                              inv_std):
    """Per channel over (n, h, w): mu, var := batch mean / biased variance; xhat := (x - mu) /
    sqrt(var + eps); y := gamma * xhat + beta; inv_std := 1 / sqrt(var + eps); running :=
    momentum * running + (1 - momentum) * batch (unbiased var)   x, y, xhat (n, c, h, w);
    gamma, beta, running_*, inv_std (c,). y and xhat must not overlap x or each other."""
    fn = "batchnorm2d_forward_train"
    cdef cnp.ndarray X = check_float_array(x, fn, "x", 4, False)
    cdef Py_ssize_t n = X.shape[0], c = X.shape[1], hw = X.shape[2] * X.shape[3]
    if n * hw < 1:
        raise ValueError(f"{fn}: argument 'x' has shape {(<object>X).shape}; batch statistics "
                         f"need at least one value per channel (n, h and w >= 1)")
    cdef cnp.ndarray G = _channel_vector(gamma, fn, "gamma", X, "x", c, False)
    cdef cnp.ndarray Bt = _channel_vector(beta, fn, "beta", X, "x", c, False)
    cdef cnp.ndarray RM = _channel_vector(running_mean, fn, "running_mean", X, "x", c, True)
    cdef cnp.ndarray RV = _channel_vector(running_var, fn, "running_var", X, "x", c, True)
    cdef cnp.ndarray IS = _channel_vector(inv_std, fn, "inv_std", X, "x", c, True)
    cdef double mom = check_finite_float(momentum, fn, "momentum")
    if not 0 <= mom <= 1:
        raise ValueError(f"{fn}: argument 'momentum' must be in [0, 1], got {mom}")
    cdef double e = _check_eps(eps, fn)
    cdef cnp.ndarray Y = _nchw_like(y, fn, "y", X, "x", True)
    cdef cnp.ndarray XH = _nchw_like(xhat, fn, "xhat", X, "x", True)
    outs = (("y", Y), ("xhat", XH), ("running_mean", RM), ("running_var", RV),
            ("inv_std", IS))
    ins = (("x", X), ("gamma", G), ("beta", Bt))
    for k, (oname, out) in enumerate(outs):
        for iname, inp in ins:
            check_no_overlap(out, inp, fn, oname, iname, False)
        for oname2, out2 in outs[k + 1:]:
            check_no_overlap(out, out2, fn, oname, oname2, False)
    with nogil:
        float_dispatch(is_float32(X), bn2d_forward_train[float], bn2d_forward_train[double],
                       data(X), n, c, hw, data(G), data(Bt), data(RM), data(RV), mom, e,
                       data(Y), data(XH), data(IS))
    return y


def batchnorm2d_forward_eval(x, gamma, beta, running_mean, running_var, eps, y):
    """y := gamma * (x - running_mean) / sqrt(running_var + eps) + beta per channel   x, y
    (n, c, h, w); the others (c,). y may be x (in place)."""
    fn = "batchnorm2d_forward_eval"
    cdef cnp.ndarray X = check_float_array(x, fn, "x", 4, False)
    cdef Py_ssize_t n = X.shape[0], c = X.shape[1], hw = X.shape[2] * X.shape[3]
    cdef cnp.ndarray G = _channel_vector(gamma, fn, "gamma", X, "x", c, False)
    cdef cnp.ndarray Bt = _channel_vector(beta, fn, "beta", X, "x", c, False)
    cdef cnp.ndarray RM = _channel_vector(running_mean, fn, "running_mean", X, "x", c, False)
    cdef cnp.ndarray RV = _channel_vector(running_var, fn, "running_var", X, "x", c, False)
    cdef double e = _check_eps(eps, fn)
    cdef cnp.ndarray Y = _nchw_like(y, fn, "y", X, "x", True)
    check_no_overlap(Y, X, fn, "y", "x", True)
    for iname, inp in (("gamma", G), ("beta", Bt), ("running_mean", RM), ("running_var", RV)):
        check_no_overlap(Y, inp, fn, "y", iname, False)
    if bool((<object>RV < 0).any()):
        raise ValueError(f"{fn}: argument 'running_var' has negative entries (min "
                         f"{(<object>RV).min()}); a variance must be >= 0")
    with nogil:
        float_dispatch(is_float32(X), bn2d_forward_eval[float], bn2d_forward_eval[double],
                       data(X), n, c, hw, data(G), data(Bt), data(RM), data(RV), e, data(Y))
    return y


def batchnorm2d_backward(dy, xhat, gamma, inv_std, dx, dgamma, dbeta, accumulate=False):
    """Per channel, sums over (n, h, w), m = n*h*w: dgamma (+)= sum dy * xhat; dbeta (+)= sum
    dy; dx := gamma * inv_std / m * (m dy - sum dy - xhat * sum(dy * xhat))
    dy, xhat, dx (n, c, h, w); gamma, inv_std, dgamma, dbeta (c,). dx may be dy or xhat (in
    place) or None (skipped)."""
    fn = "batchnorm2d_backward"
    cdef cnp.ndarray DY = check_float_array(dy, fn, "dy", 4, False)
    cdef Py_ssize_t n = DY.shape[0], c = DY.shape[1], hw = DY.shape[2] * DY.shape[3]
    cdef cnp.ndarray XH = _nchw_like(xhat, fn, "xhat", DY, "dy", False)
    cdef cnp.ndarray G = _channel_vector(gamma, fn, "gamma", DY, "dy", c, False)
    cdef cnp.ndarray IS = _channel_vector(inv_std, fn, "inv_std", DY, "dy", c, False)
    cdef cnp.ndarray DG = _channel_vector(dgamma, fn, "dgamma", DY, "dy", c, True)
    cdef cnp.ndarray DB = _channel_vector(dbeta, fn, "dbeta", DY, "dy", c, True)
    cdef cnp.ndarray DX = None
    outs = [("dgamma", DG), ("dbeta", DB)]
    if dx is not None:
        DX = _nchw_like(dx, fn, "dx", DY, "dy", True)
        check_no_overlap(DX, DY, fn, "dx", "dy", True)
        check_no_overlap(DX, XH, fn, "dx", "xhat", True)
        outs.append(("dx", DX))
    _check_backward_overlaps(fn, outs, DY, XH, G, IS)
    cdef bint acc = check_flag(accumulate, fn, "accumulate")
    cdef void* dxp = data_or_null(DX)
    with nogil:
        float_dispatch(is_float32(DY), bn2d_backward[float], bn2d_backward[double],
                       data(DY), data(XH), n, c, hw, data(G), data(IS), dxp, data(DG), data(DB),
                       acc)
    return dx


# ---- the inference cores kernels/chain.pyx runs (see cores.pxd)
from cores cimport (batchnorm_eval_f32_t, batchnorm_eval_f64_t, batchnorm2d_eval_f32_t,
                    batchnorm2d_eval_f64_t, core_capsule)

cdef batchnorm_eval_f32_t _core_eval_f32 = bn_forward_eval[float]
cdef batchnorm_eval_f64_t _core_eval_f64 = bn_forward_eval[double]
cdef batchnorm2d_eval_f32_t _core_eval2d_f32 = bn2d_forward_eval[float]
cdef batchnorm2d_eval_f64_t _core_eval2d_f64 = bn2d_forward_eval[double]
CORES = {"batchnorm_eval_f32": core_capsule(<void*>_core_eval_f32),
         "batchnorm_eval_f64": core_capsule(<void*>_core_eval_f64),
         "batchnorm2d_eval_f32": core_capsule(<void*>_core_eval2d_f32),
         "batchnorm2d_eval_f64": core_capsule(<void*>_core_eval2d_f64)}
