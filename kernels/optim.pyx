# distutils: extra_compile_args = -fno-trapping-math
# (FP operations are assumed not to trap, so GCC may if-convert the sign(p) selects of the
# penalised loops and vectorise them; results are unchanged: no reassociation, NaN and inf kept.)
"""Optimizer kernels: one in-place pass over a parameter, its gradient and its state.

Arrays are C-contiguous numpy arrays of any shape, float32 or float64 (that of ``p``); ``g`` and
every state array have the dtype and shape of ``p``; ``p`` and the state arrays are updated in
place and must not overlap each other or ``g``. The maths follows PyTorch's optimizers
(torch.optim.SGD, Adam, AdamW, RMSprop, Adagrad), with L1/L2 penalties fused into the gradient:

    g' = g + l1 * sign(p) + l2 * p        (l2 is PyTorch's coupled ``weight_decay``)

    sgd_update(p, g, velocity, lr, momentum=0.0, nesterov=False, l1=0.0, l2=0.0)
    adam_update(p, g, m, v, lr, beta1, beta2, eps, step, l1=0.0, l2=0.0, weight_decay=0.0)
    rmsprop_update(p, g, sq, lr, rho=0.9, eps=1e-7, l1=0.0, l2=0.0)
    adagrad_update(p, g, acc, lr, eps=1e-7, l1=0.0, l2=0.0)
    clip_grad_norm(grads, max_norm) -> float
"""
cimport numpy as cnp
import operator

import numpy as np

from cython cimport floating
from libc.math cimport sqrt, sqrtf, fabs, isfinite, isinf, pow

from _common cimport (check_float_array, check_float_dtype, check_layout, check_like,
                      check_no_overlap, check_real, check_flag, received, shown,
                      float_dispatch, float_dispatch_double, is_float32, data)

cnp.import_array()


# ---------------------------------------------------------------- nogil cores

cdef inline floating _sqrt(floating x) noexcept nogil:
    if floating is float:
        return sqrtf(x)
    else:
        return sqrt(x)


cdef inline floating _penalized(floating g, floating p, floating l1, floating l2) noexcept nogil:
    # g + l1 sign(p) + l2 p (sign(0) = 0). Written as selects between floats, which the compiler
    # turns into vector blends; an int sign converted to double kept the float64 loops scalar.
    cdef floating s = 0
    if p > 0:
        s = l1
    elif p < 0:
        s = -l1
    return g + l2 * p + s


cdef void sgd_core(floating* p, const floating* g, floating* vel, Py_ssize_t n, double lr,
                   double momentum, bint nesterov, double l1, double l2) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating gi, vi
    cdef floating lr_ = <floating>lr, mu = <floating>momentum
    cdef floating l1_ = <floating>l1, l2_ = <floating>l2
    cdef bint penalized = l1 != 0.0 or l2 != 0.0
    # separate loops per variant: each is one simple pass the compiler vectorises
    if momentum == 0.0:
        if penalized:
            for i in range(n):
                p[i] = p[i] - lr_ * _penalized(g[i], p[i], l1_, l2_)
        else:
            for i in range(n):
                p[i] = p[i] - lr_ * g[i]
    elif nesterov:
        for i in range(n):
            gi = _penalized(g[i], p[i], l1_, l2_) if penalized else g[i]
            vi = mu * vel[i] + gi
            vel[i] = vi
            p[i] = p[i] - lr_ * (gi + mu * vi)
    else:
        for i in range(n):
            gi = _penalized(g[i], p[i], l1_, l2_) if penalized else g[i]
            vi = mu * vel[i] + gi
            vel[i] = vi
            p[i] = p[i] - lr_ * vi


cdef extern from *:
    """
    /* Adam's loops in C, multi-versioned (DL_CLONES_AVX2 from _common.pxd): compiled for
       x86-64-v3 (AVX2 + FMA) and the baseline, the best picked at load time (GCC, Linux
       x86-64). The update is compute-bound (a square root and a division per element): the
       baseline SSE2 loop ran at ~3x the time of its memory traffic on 535k float32
       parameters (2.2x the v3 clone's time). An AVX-512 clone ran at the v3 one's speed
       (1.01x), so there is none. Same maths as the Cython cores around them. */
    #define DL_ADAM_LOOPS(T, SUFFIX, SQRT)                                                  \
    DL_CLONES_AVX2 static void dl_adam_##SUFFIX(                                          \
            T* p, const T* g, T* m, T* v, Py_ssize_t n, T a, T b1, T b2, T c1, T c2,      \
            T s2, T eps, T l1, T l2, T dec, int plain) {                                  \
        if (plain) {                                                                      \
            for (Py_ssize_t i = 0; i < n; i++) {                                          \
                T gi = g[i];                                                              \
                T mi = b1 * m[i] + c1 * gi;                                               \
                T vi = b2 * v[i] + c2 * gi * gi;                                          \
                m[i] = mi;                                                                \
                v[i] = vi;                                                                \
                p[i] = p[i] - a * mi / (SQRT(vi) * s2 + eps);                             \
            }                                                                             \
        } else {                                                                          \
            for (Py_ssize_t i = 0; i < n; i++) {                                          \
                T pi = p[i];                                                              \
                T s = pi > 0 ? l1 : (pi < 0 ? -l1 : (T)0);                                \
                T gi = g[i] + l2 * pi + s;                                                \
                T mi = b1 * m[i] + c1 * gi;                                               \
                T vi = b2 * v[i] + c2 * gi * gi;                                          \
                m[i] = mi;                                                                \
                v[i] = vi;                                                                \
                /* AdamW (PyTorch order): decay with the old p, then the Adam step */     \
                p[i] = dec * pi - a * mi / (SQRT(vi) * s2 + eps);                         \
            }                                                                             \
        }                                                                                 \
    }
    DL_ADAM_LOOPS(float, f32, sqrtf)
    DL_ADAM_LOOPS(double, f64, sqrt)
    """
    void dl_adam_f32(float* p, const float* g, float* m, float* v, Py_ssize_t n, float a,
                     float b1, float b2, float c1, float c2, float s2, float eps, float l1,
                     float l2, float dec, int plain) nogil
    void dl_adam_f64(double* p, const double* g, double* m, double* v, Py_ssize_t n, double a,
                     double b1, double b2, double c1, double c2, double s2, double eps,
                     double l1, double l2, double dec, int plain) nogil


cdef void adam_core(floating* p, const floating* g, floating* m, floating* v, Py_ssize_t n,
                    double step_size, double beta1, double beta2, double inv_sqrt_bc2,
                    double eps, double l1, double l2, double decay) noexcept nogil:
    # the common case (plain Adam) is one fused pass: 4 loads, 3 stores, 1 sqrt, 1 division
    cdef int plain = l1 == 0.0 and l2 == 0.0 and decay == 1.0
    if floating is float:
        dl_adam_f32(p, g, m, v, n, <float>step_size, <float>beta1, <float>beta2,
                    <float>(1.0 - beta1), <float>(1.0 - beta2), <float>inv_sqrt_bc2, <float>eps,
                    <float>l1, <float>l2, <float>decay, plain)
    else:
        dl_adam_f64(p, g, m, v, n, step_size, beta1, beta2, 1.0 - beta1, 1.0 - beta2,
                    inv_sqrt_bc2, eps, l1, l2, decay, plain)


cdef void rmsprop_core(floating* p, const floating* g, floating* sq, Py_ssize_t n, double lr,
                       double rho, double eps, double l1, double l2) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating gi, si
    cdef floating lr_ = <floating>lr, r = <floating>rho, c = <floating>(1.0 - rho)
    cdef floating eps_ = <floating>eps, l1_ = <floating>l1, l2_ = <floating>l2
    cdef bint penalized = l1 != 0.0 or l2 != 0.0
    for i in range(n):
        gi = _penalized(g[i], p[i], l1_, l2_) if penalized else g[i]
        si = r * sq[i] + c * gi * gi
        sq[i] = si
        p[i] = p[i] - lr_ * gi / (_sqrt(si) + eps_)


cdef void adagrad_core(floating* p, const floating* g, floating* acc, Py_ssize_t n, double lr,
                       double eps, double l1, double l2) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating gi, ai
    cdef floating lr_ = <floating>lr, eps_ = <floating>eps
    cdef floating l1_ = <floating>l1, l2_ = <floating>l2
    cdef bint penalized = l1 != 0.0 or l2 != 0.0
    for i in range(n):
        gi = _penalized(g[i], p[i], l1_, l2_) if penalized else g[i]
        ai = acc[i] + gi * gi
        acc[i] = ai
        p[i] = p[i] - lr_ * gi / (_sqrt(ai) + eps_)


cdef double sumsq_core(const floating* x, Py_ssize_t n) noexcept nogil:
    # eight double accumulators: no overflow for float32, and no single long dependency chain.
    # Not BLAS ddot: OpenBLAS threads it, and on this busy 2-core machine a 0.5M-element ddot
    # was measured at 5-19 ms against 0.12 ms for this loop (dsdot was fast, but unthreaded
    # only by the grace of the current OpenBLAS build).
    cdef Py_ssize_t i, end8 = n - n % 8
    cdef double a0 = 0.0, a1 = 0.0, a2 = 0.0, a3 = 0.0, a4 = 0.0, a5 = 0.0, a6 = 0.0, a7 = 0.0
    for i in range(0, end8, 8):
        a0 += <double>x[i] * <double>x[i]
        a1 += <double>x[i + 1] * <double>x[i + 1]
        a2 += <double>x[i + 2] * <double>x[i + 2]
        a3 += <double>x[i + 3] * <double>x[i + 3]
        a4 += <double>x[i + 4] * <double>x[i + 4]
        a5 += <double>x[i + 5] * <double>x[i + 5]
        a6 += <double>x[i + 6] * <double>x[i + 6]
        a7 += <double>x[i + 7] * <double>x[i + 7]
    for i in range(end8, n):
        a0 += <double>x[i] * <double>x[i]
    return ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7))


cdef double _sumsq_scaled(const floating* x, Py_ssize_t n, double inv_scale) noexcept nogil:
    # sum (x / scale)^2: the overflow-free fallback when sum x^2 exceeds the double range
    cdef Py_ssize_t i
    cdef double acc = 0.0, t
    for i in range(n):
        t = <double>x[i] * inv_scale
        acc += t * t
    return acc


cdef double _maxabs(const floating* x, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    cdef double a, best = 0.0
    for i in range(n):
        a = fabs(<double>x[i])
        if a > best:
            best = a
    return best


cdef void scale_core(floating* x, Py_ssize_t n, double s) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating s_ = <floating>s
    for i in range(n):
        x[i] = x[i] * s_


# ---------------------------------------------------------------- argument checks (Python level)

# The shared checks (check_float_array, check_like, check_real, ...) are in _common.pxd.

cdef cnp.ndarray _like_p(str fn, str name, object a, cnp.ndarray p, bint out):
    """``a`` has the dtype and shape of ``p`` and is contiguous (and writeable when ``out``)."""
    return check_like(a, fn, name, p, "p", out)


cdef int _check_disjoint(str fn, list names, list arrays) except -1:
    """No two of ``arrays`` share memory (each is read, and all but the gradient written)."""
    cdef Py_ssize_t i, j
    for i in range(len(arrays)):
        for j in range(i + 1, len(arrays)):
            check_no_overlap(<cnp.ndarray>arrays[i], <cnp.ndarray>arrays[j], fn, names[i],
                             names[j], False)
    return 0


cdef double _nonneg(str fn, str name, object value) except? -1.0:
    """A finite hyperparameter >= 0 (lr, eps, l1, l2, weight_decay)."""
    cdef double x = check_real(value, fn, name)
    if not (isfinite(x) and x >= 0.0):
        raise ValueError(f"{fn}: argument '{name}' must be a finite number >= 0, got {x}")
    return x


cdef double _unit(str fn, str name, object value, bint one_ok) except? -1.0:
    """A hyperparameter in [0, 1) (or [0, 1] when ``one_ok``): momentum, betas, rho."""
    cdef double x = check_real(value, fn, name)
    if not (x >= 0.0 and (x <= 1.0 if one_ok else x < 1.0)):
        raise ValueError(f"{fn}: argument '{name}' must be in [0, 1{']' if one_ok else ')'}, "
                         f"got {x}")
    return x


# ---------------------------------------------------------------- def wrappers

def sgd_update(p, g, velocity, lr, momentum=0.0, nesterov=False, l1=0.0, l2=0.0):
    """SGD in place (torch.optim.SGD, dampening 0). g' = g + l1 sign(p) + l2 p;
    momentum > 0: v := momentum v + g';  p -= lr (g' + momentum v if nesterov else v);
    momentum == 0: p -= lr g' (``velocity`` may be None and is not touched).
    p, g, velocity: same shape and dtype.
    """
    fn = "sgd_update"
    cdef cnp.ndarray P = check_float_dtype(p, fn, "p")
    check_layout(P, fn, "p", True)
    cdef cnp.ndarray G = _like_p(fn, "g", g, P, False)
    cdef double lr_ = _nonneg(fn, "lr", lr)
    cdef double mu = _unit(fn, "momentum", momentum, True)
    cdef double l1_ = _nonneg(fn, "l1", l1), l2_ = _nonneg(fn, "l2", l2)
    cdef bint nest = check_flag(nesterov, fn, "nesterov")
    if nest and mu == 0.0:
        raise ValueError(f"{fn}: argument 'nesterov' is True, which requires momentum > 0; got "
                         f"momentum={mu}")
    cdef cnp.ndarray V = P   # unused when momentum == 0
    if mu > 0.0:
        if velocity is None:
            raise ValueError(f"{fn}: argument 'velocity' is required when momentum > 0 "
                             f"(momentum={mu}); pass a zero-initialised array like 'p'")
        V = _like_p(fn, "velocity", velocity, P, True)
        _check_disjoint(fn, ["p", "g", "velocity"], [P, G, V])
    else:
        _check_disjoint(fn, ["p", "g"], [P, G])
    cdef Py_ssize_t n = cnp.PyArray_SIZE(P)
    with nogil:
        float_dispatch(is_float32(P), sgd_core[float], sgd_core[double],
                       data(P), data(G), data(V), n, lr_, mu, nest, l1_, l2_)


def adam_update(p, g, m, v, lr, beta1, beta2, eps, step, l1=0.0, l2=0.0, weight_decay=0.0):
    """Adam / AdamW in place (torch.optim.Adam / AdamW), t = ``step`` >= 1:
    g' = g + l1 sign(p) + l2 p;  m := b1 m + (1-b1) g';  v := b2 v + (1-b2) g'^2;
    p := (1 - lr wd) p - lr mhat / (sqrt(vhat) + eps),  mhat = m/(1-b1^t), vhat = v/(1-b2^t).
    ``weight_decay`` (wd) > 0 is AdamW's decoupled decay. p, g, m, v: same shape and dtype.
    """
    fn = "adam_update"
    cdef cnp.ndarray P = check_float_dtype(p, fn, "p")
    check_layout(P, fn, "p", True)
    cdef cnp.ndarray G = _like_p(fn, "g", g, P, False)
    cdef cnp.ndarray M = _like_p(fn, "m", m, P, True)
    cdef cnp.ndarray V = _like_p(fn, "v", v, P, True)
    _check_disjoint(fn, ["p", "g", "m", "v"], [P, G, M, V])
    cdef double lr_ = _nonneg(fn, "lr", lr)
    cdef double b1 = _unit(fn, "beta1", beta1, False), b2 = _unit(fn, "beta2", beta2, False)
    cdef double eps_ = _nonneg(fn, "eps", eps)
    cdef double l1_ = _nonneg(fn, "l1", l1), l2_ = _nonneg(fn, "l2", l2)
    cdef double wd = _nonneg(fn, "weight_decay", weight_decay)
    if isinstance(step, (bool, np.bool_)):
        raise TypeError(f"{fn}: argument 'step' must be an integer >= 1, got {shown(step)}")
    try:
        t = operator.index(step)
    except TypeError:
        raise TypeError(f"{fn}: argument 'step' must be an integer >= 1, got "
                        f"{shown(step)}") from None
    if t < 1:
        raise ValueError(f"{fn}: argument 'step' must be an integer >= 1 (the 1-based count "
                         f"of updates), got {t}")
    # bias corrections once per call, outside the loop (b^t underflows to 0 harmlessly)
    cdef double bc1 = 1.0 - pow(b1, <double>t), bc2 = 1.0 - pow(b2, <double>t)
    cdef double step_size = lr_ / bc1, inv_sqrt_bc2 = 1.0 / sqrt(bc2), decay = 1.0 - lr_ * wd
    cdef Py_ssize_t n = cnp.PyArray_SIZE(P)
    with nogil:
        float_dispatch(is_float32(P), adam_core[float], adam_core[double],
                       data(P), data(G), data(M), data(V), n, step_size, b1, b2, inv_sqrt_bc2,
                       eps_, l1_, l2_, decay)


def rmsprop_update(p, g, sq, lr, rho=0.9, eps=1e-7, l1=0.0, l2=0.0):
    """RMSProp in place (torch.optim.RMSprop, alpha = rho, not centered, no momentum):
    g' = g + l1 sign(p) + l2 p;  sq := rho sq + (1-rho) g'^2;  p -= lr g' / (sqrt(sq) + eps).
    p, g, sq: same shape and dtype.
    """
    fn = "rmsprop_update"
    cdef cnp.ndarray P = check_float_dtype(p, fn, "p")
    check_layout(P, fn, "p", True)
    cdef cnp.ndarray G = _like_p(fn, "g", g, P, False)
    cdef cnp.ndarray S = _like_p(fn, "sq", sq, P, True)
    _check_disjoint(fn, ["p", "g", "sq"], [P, G, S])
    cdef double lr_ = _nonneg(fn, "lr", lr), rho_ = _unit(fn, "rho", rho, False)
    cdef double eps_ = _nonneg(fn, "eps", eps)
    cdef double l1_ = _nonneg(fn, "l1", l1), l2_ = _nonneg(fn, "l2", l2)
    cdef Py_ssize_t n = cnp.PyArray_SIZE(P)
    with nogil:
        float_dispatch(is_float32(P), rmsprop_core[float], rmsprop_core[double],
                       data(P), data(G), data(S), n, lr_, rho_, eps_, l1_, l2_)


def adagrad_update(p, g, acc, lr, eps=1e-7, l1=0.0, l2=0.0):
    """AdaGrad in place (torch.optim.Adagrad, no lr decay; the caller fills ``acc`` with the
    initial accumulator value): g' = g + l1 sign(p) + l2 p;  acc += g'^2;
    p -= lr g' / (sqrt(acc) + eps).   p, g, acc: same shape and dtype.
    """
    fn = "adagrad_update"
    cdef cnp.ndarray P = check_float_dtype(p, fn, "p")
    check_layout(P, fn, "p", True)
    cdef cnp.ndarray G = _like_p(fn, "g", g, P, False)
    cdef cnp.ndarray A = _like_p(fn, "acc", acc, P, True)
    _check_disjoint(fn, ["p", "g", "acc"], [P, G, A])
    cdef double lr_ = _nonneg(fn, "lr", lr), eps_ = _nonneg(fn, "eps", eps)
    cdef double l1_ = _nonneg(fn, "l1", l1), l2_ = _nonneg(fn, "l2", l2)
    cdef Py_ssize_t n = cnp.PyArray_SIZE(P)
    with nogil:
        float_dispatch(is_float32(P), adagrad_core[float], adagrad_core[double],
                       data(P), data(G), data(A), n, lr_, eps_, l1_, l2_)


def clip_grad_norm(grads, max_norm):
    """Global-norm clipping in place (torch.nn.utils.clip_grad_norm_): N = sqrt(sum_i |g_i|^2)
    over every array of ``grads`` (a list/tuple of arrays, or one array); when N > max_norm every
    array is scaled by max_norm / (N + 1e-6). Returns N (before clipping) as a float.
    A non-finite N (inf/NaN gradients) is returned as is and nothing is scaled, so the caller
    can detect and report it. ``max_norm`` > 0 (inf disables clipping).
    """
    fn = "clip_grad_norm"
    cdef double limit = check_real(max_norm, fn, "max_norm")
    if not (limit > 0.0):
        raise ValueError(f"{fn}: argument 'max_norm' must be > 0, got {limit}")
    if isinstance(grads, np.ndarray):
        grads = [grads]
    elif not isinstance(grads, (list, tuple)):
        raise TypeError(f"{fn}: argument 'grads' must be a list or tuple of numpy arrays, "
                        f"got {received(grads)}")
    cdef list arrays = []
    cdef list names = []
    cdef Py_ssize_t i
    cdef cnp.ndarray a
    for i in range(len(grads)):
        name = f"grads[{i}]"
        a = check_float_dtype(grads[i], fn, name)
        check_layout(a, fn, name, True)
        arrays.append(a)
        names.append(name)
    _check_disjoint(fn, names, arrays)

    cdef double total = 0.0, top = 0.0, s, coef
    for a in arrays:
        total += _sumsq(a)
    if isinf(total):
        # sum of squares overflowed the double range (float64 gradients beyond ~1e154):
        # redo it scaled by the largest magnitude, if that one is finite
        for a in arrays:
            top = max(top, _amax(a))
        if isfinite(top):
            total = 0.0
            for a in arrays:
                total += _sumsq_by(a, 1.0 / top)
            total = top * sqrt(total)
        else:
            total = top
    else:
        total = sqrt(total)
    if isfinite(total) and total > limit:
        coef = limit / (total + 1e-6)
        for a in arrays:
            _scale(a, coef)
    return total


cdef double _sumsq(cnp.ndarray a):
    cdef double s
    with nogil:
        s = float_dispatch_double(is_float32(a), sumsq_core[float], sumsq_core[double], data(a),
                                  cnp.PyArray_SIZE(a))
    return s


cdef double _sumsq_by(cnp.ndarray a, double inv_scale):
    cdef double s
    with nogil:
        s = float_dispatch_double(is_float32(a), _sumsq_scaled[float], _sumsq_scaled[double],
                                  data(a), cnp.PyArray_SIZE(a), inv_scale)
    return s


cdef double _amax(cnp.ndarray a):
    cdef double s
    with nogil:
        s = float_dispatch_double(is_float32(a), _maxabs[float], _maxabs[double], data(a),
                                  cnp.PyArray_SIZE(a))
    return s


cdef void _scale(cnp.ndarray a, double coef):
    with nogil:
        float_dispatch(is_float32(a), scale_core[float], scale_core[double], data(a),
                       cnp.PyArray_SIZE(a), coef)
