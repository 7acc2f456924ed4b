# Activation cores as ``cdef inline`` functions: activations.pyx wraps them for Python and
# dense.pyx cimports them to fuse bias + activation into the pass after its GEMM (inline, so no
# run-time import between the extension modules is needed).
#
# Each element-wise loop has the activation chosen outside the loop, so the loop body is
# branch-free and GCC vectorises it. The float32 loops built on exp/tanh are C functions
# compiled for several instruction sets (DL_CLONES); the Cython loops serve the rest.
from cython cimport floating
from libc.math cimport INFINITY
from _common cimport f_exp, f_tanh, f_expm1, f_log1p_unit, f_abs

cdef extern from *:
    """
    /* activation codes, shared by the Cython and the C loops below */
    enum {
        DL_ACT_LINEAR, DL_ACT_RELU, DL_ACT_LEAKY_RELU, DL_ACT_ELU, DL_ACT_SIGMOID, DL_ACT_TANH,
        DL_ACT_SOFTPLUS, DL_ACT_GELU, DL_ACT_SWISH, DL_ACT_SOFTMAX
    };
    #define DL_GELU_C 0.7978845608028654
    #define DL_GELU_K 0.044715

    static inline float dl_sigmoidf(float v) { return 1.0f / (1.0f + dl_expf(-v)); }
    static inline float dl_geluf(float v) {
        return 0.5f * v * (1.0f + dl_tanhf((float)DL_GELU_C * (v + (float)DL_GELU_K * v * v * v)));
    }
    static inline float dl_gelu_gradf(float v) {
        float t = dl_tanhf((float)DL_GELU_C * (v + (float)DL_GELU_K * v * v * v));
        return 0.5f * (1.0f + t) + 0.5f * v * (1.0f - t * t) * (float)DL_GELU_C
               * (1.0f + 3.0f * (float)DL_GELU_K * v * v);
    }
    static inline float dl_swish_gradf(float v) {
        float s = dl_sigmoidf(v);
        return s * (1.0f + v * (1.0f - s));
    }

    /* The float32 loops of the activations built on exp/tanh, multi-versioned (DL_CLONES) so
       that they run 8 or 16 lanes wide where the CPU allows: these are compute-bound, unlike
       the other activations. Same maths as the Cython loops below, which serve float64 and
       the rest. y may be x. Returns 0 when `act` is not handled here. */
    #define DL_FWD_LOOP(F)                                                            \
        if (b == NULL) {                                                              \
            for (Py_ssize_t j = 0; j < n * d; j++) y[j] = F(x[j]);                    \
        } else {                                                                      \
            for (Py_ssize_t i = 0; i < n; i++) {                                      \
                const float* xr = x + i * d; float* yr = y + i * d;                   \
                for (Py_ssize_t j = 0; j < d; j++) yr[j] = F(xr[j] + b[j]);           \
            }                                                                         \
        }
    #define DL_SWISHF(v) ((v) * dl_sigmoidf(v))
    #define DL_SOFTPLUSF(v) (((v) > 0.0f ? (v) : 0.0f) + dl_log1pf01(dl_expf((v) > 0.0f ? -(v) : (v))))
    #define DL_ELUF(v) ((v) > 0.0f ? (v) : alpha * dl_expm1f(v))

    DL_CLONES static int dl_act_forward_f32(int act, float* y, const float* x, const float* b,
                                            Py_ssize_t n, Py_ssize_t d, float alpha) {
        switch (act) {
        case DL_ACT_ELU: DL_FWD_LOOP(DL_ELUF) return 1;
        case DL_ACT_SOFTPLUS: DL_FWD_LOOP(DL_SOFTPLUSF) return 1;
        case DL_ACT_SIGMOID: DL_FWD_LOOP(dl_sigmoidf) return 1;
        case DL_ACT_TANH: DL_FWD_LOOP(dl_tanhf) return 1;
        case DL_ACT_GELU: DL_FWD_LOOP(dl_geluf) return 1;
        case DL_ACT_SWISH: DL_FWD_LOOP(DL_SWISHF) return 1;
        default: return 0;
        }
    }

    /* dx := dy * f'(.) for float32: from x for gelu and swish, from y for the others. */
    DL_CLONES static int dl_act_backward_f32(int act, float* dx, const float* dy,
                                             const float* y, const float* x, Py_ssize_t m) {
        Py_ssize_t j;
        switch (act) {
        case DL_ACT_SIGMOID: for (j = 0; j < m; j++) dx[j] = dy[j] * y[j] * (1.0f - y[j]); return 1;
        case DL_ACT_TANH: for (j = 0; j < m; j++) dx[j] = dy[j] * (1.0f - y[j] * y[j]); return 1;
        case DL_ACT_SOFTPLUS: for (j = 0; j < m; j++) dx[j] = -dy[j] * dl_expm1f(-y[j]); return 1;
        case DL_ACT_GELU: for (j = 0; j < m; j++) dx[j] = dy[j] * dl_gelu_gradf(x[j]); return 1;
        case DL_ACT_SWISH: for (j = 0; j < m; j++) dx[j] = dy[j] * dl_swish_gradf(x[j]); return 1;
        default: return 0;
        }
    }
    """
    enum:
        ACT_LINEAR "DL_ACT_LINEAR"
        ACT_RELU "DL_ACT_RELU"
        ACT_LEAKY_RELU "DL_ACT_LEAKY_RELU"
        ACT_ELU "DL_ACT_ELU"
        ACT_SIGMOID "DL_ACT_SIGMOID"
        ACT_TANH "DL_ACT_TANH"
        ACT_SOFTPLUS "DL_ACT_SOFTPLUS"
        ACT_GELU "DL_ACT_GELU"
        ACT_SWISH "DL_ACT_SWISH"
        ACT_SOFTMAX "DL_ACT_SOFTMAX"
    double GELU_C "DL_GELU_C"
    double GELU_K "DL_GELU_K"
    int dl_act_forward_f32(int act, float* y, const float* x, const float* b, Py_ssize_t n,
                           Py_ssize_t d, float alpha) nogil
    int dl_act_backward_f32(int act, float* dx, const float* dy, const float* y,
                            const float* x, Py_ssize_t m) nogil


cdef inline int act_code(object name, str fn, double alpha) except -1:
    """The ACT_* code of an activation name; ValueError naming the known ones otherwise, or when
    alpha is out of range for leaky_relu / elu (alpha >= 0 keeps f monotone, which the
    backward pass needs to read f' from the saved output)."""
    # in the order of the DL_ACT_* codes (activations.pyx's ACTIVATIONS repeats it for Python)
    names = ("linear", "relu", "leaky_relu", "elu", "sigmoid", "tanh", "softplus", "gelu",
             "swish", "softmax")
    if not isinstance(name, str):
        raise TypeError(f"{fn}: argument 'activation' must be a str naming an activation, got "
                        f"{type(name).__name__} {name!r}")
    try:
        code = names.index(name)
    except ValueError:
        raise ValueError(f"{fn}: unknown activation {name!r}; known: "
                         f"{', '.join(names)}") from None
    if (code == ACT_LEAKY_RELU or code == ACT_ELU) and not alpha >= 0.0:
        raise ValueError(f"{fn}: {name} needs alpha >= 0, got alpha={alpha}")
    return code


cdef inline bint act_needs_input(int act) noexcept nogil:
    """True when f'(x) cannot be computed from the saved output y alone (gelu, swish)."""
    return act == ACT_GELU or act == ACT_SWISH


# f(v) per activation, inlined into the loops below (v already includes the bias)
cdef inline floating _relu(floating v) noexcept nogil:
    return v if v > 0 else 0

cdef inline floating _leaky_relu(floating v, floating alpha) noexcept nogil:
    return v if v > 0 else alpha * v

cdef inline floating _elu(floating v, floating alpha) noexcept nogil:
    # expm1 keeps full relative precision near 0
    return v if v > 0 else alpha * f_expm1(v)

cdef inline floating _sigmoid(floating v) noexcept nogil:
    # exp(-v) overflows to inf (float64) or clamps (float32) for v << 0: 1/(1+inf) = 0, never
    # NaN; no branch, so the loop vectorises
    return 1 / (1 + f_exp(-v))

cdef inline floating _softplus(floating v) noexcept nogil:
    # log(1 + e^v) = max(v, 0) + log1p(e^-|v|): no overflow for large |v|
    return (v if v > 0 else 0) + f_log1p_unit(f_exp(-f_abs(v)))

cdef inline floating _gelu(floating v) noexcept nogil:
    # tanh approximation: f(x) = x/2 (1 + tanh(c (x + k x^3))), c = sqrt(2/pi), k = 0.044715
    cdef floating c = <floating>GELU_C, k = <floating>GELU_K
    return <floating>0.5 * v * (1 + f_tanh(c * (v + k * v * v * v)))

cdef inline floating _swish(floating v) noexcept nogil:
    return v / (1 + f_exp(-v))


cdef inline void act_forward_span(int act, floating* y, const floating* x,
                                  const floating* bias, Py_ssize_t m,
                                  floating alpha) noexcept nogil:
    """y[j] := f(x[j] + bias[j]) for j < m (bias may be NULL); y may be x. Not softmax."""
    # one loop per (activation, bias or not): branch-free bodies that GCC vectorises
    cdef Py_ssize_t j
    if act == ACT_LINEAR:
        if bias == NULL:
            if y != x:
                for j in range(m):
                    y[j] = x[j]
        else:
            for j in range(m):
                y[j] = x[j] + bias[j]
    elif act == ACT_RELU:
        if bias == NULL:
            for j in range(m):
                y[j] = _relu(x[j])
        else:
            for j in range(m):
                y[j] = _relu(x[j] + bias[j])
    elif act == ACT_LEAKY_RELU:
        if bias == NULL:
            for j in range(m):
                y[j] = _leaky_relu(x[j], alpha)
        else:
            for j in range(m):
                y[j] = _leaky_relu(x[j] + bias[j], alpha)
    elif act == ACT_ELU:
        if bias == NULL:
            for j in range(m):
                y[j] = _elu(x[j], alpha)
        else:
            for j in range(m):
                y[j] = _elu(x[j] + bias[j], alpha)
    elif act == ACT_SIGMOID:
        if bias == NULL:
            for j in range(m):
                y[j] = _sigmoid(x[j])
        else:
            for j in range(m):
                y[j] = _sigmoid(x[j] + bias[j])
    elif act == ACT_TANH:
        if bias == NULL:
            for j in range(m):
                y[j] = f_tanh(x[j])
        else:
            for j in range(m):
                y[j] = f_tanh(x[j] + bias[j])
    elif act == ACT_SOFTPLUS:
        if bias == NULL:
            for j in range(m):
                y[j] = _softplus(x[j])
        else:
            for j in range(m):
                y[j] = _softplus(x[j] + bias[j])
    elif act == ACT_GELU:
        if bias == NULL:
            for j in range(m):
                y[j] = _gelu(x[j])
        else:
            for j in range(m):
                y[j] = _gelu(x[j] + bias[j])
    elif act == ACT_SWISH:
        if bias == NULL:
            for j in range(m):
                y[j] = _swish(x[j])
        else:
            for j in range(m):
                y[j] = _swish(x[j] + bias[j])


cdef inline void softmax_row(floating* y, const floating* x, const floating* bias,
                             Py_ssize_t d) noexcept nogil:
    """y[j] := exp(z[j] - max z) / sum_k exp(z[k] - max z), z = x + bias (bias may be NULL)."""
    cdef Py_ssize_t j
    cdef floating v, mx = -INFINITY
    cdef floating s = 0
    for j in range(d):
        v = x[j]
        if bias != NULL:
            v = v + bias[j]
        y[j] = v
        mx = v if v > mx else mx
    for j in range(d):
        y[j] = f_exp(y[j] - mx)
    for j in range(d):
        s = s + y[j]
    s = 1 / s
    for j in range(d):
        y[j] = y[j] * s


cdef inline void act_forward_rows(int act, floating* y, const floating* x,
                                  const floating* bias, Py_ssize_t n, Py_ssize_t d,
                                  floating alpha) noexcept nogil:
    """Y[i, j] := f(X[i, j] + bias[j]) over a row-major (n, d) block (bias (d,) or NULL);
    softmax is taken over each row. Y may be X."""
    cdef Py_ssize_t i
    if floating is float:
        if dl_act_forward_f32(act, y, x, bias, n, d, alpha):
            return
    if act == ACT_SOFTMAX:
        for i in range(n):
            softmax_row(y + i * d, x + i * d, bias, d)
    elif bias == NULL:
        act_forward_span(act, y, x, NULL, n * d, alpha)
    else:
        for i in range(n):
            act_forward_span(act, y + i * d, x + i * d, bias, d, alpha)


cdef inline void act_backward_span(int act, floating* dx, const floating* dy,
                                   const floating* y, const floating* x, Py_ssize_t m,
                                   floating alpha) noexcept nogil:
    """dx[j] := dy[j] f'(x[j]), f' read from the saved output y[j] (from x[j] for gelu and
    swish, where x must not be NULL). dx may be dy, y or x. Not softmax."""
    cdef Py_ssize_t j
    cdef floating v, s, t, u, g
    cdef floating c = <floating>GELU_C, k = <floating>GELU_K
    if act == ACT_LINEAR:
        for j in range(m):
            dx[j] = dy[j]
    # loads into temporaries first: a load inside one arm of a conditional blocks GCC's
    # if-conversion, and the loop then runs scalar with unpredictable branches
    elif act == ACT_RELU:
        for j in range(m):
            g = dy[j]
            dx[j] = g if y[j] > 0 else 0
    elif act == ACT_LEAKY_RELU:
        for j in range(m):
            g = dy[j]
            dx[j] = g if y[j] > 0 else alpha * g
    elif act == ACT_ELU:
        # x <= 0: y = alpha (e^x - 1), so f'(x) = alpha e^x = y + alpha
        for j in range(m):
            g = dy[j]
            u = y[j]
            dx[j] = g if u > 0 else g * (u + alpha)
    elif act == ACT_SIGMOID:
        for j in range(m):
            dx[j] = dy[j] * y[j] * (1 - y[j])
    elif act == ACT_TANH:
        for j in range(m):
            dx[j] = dy[j] * (1 - y[j] * y[j])
    elif act == ACT_SOFTPLUS:
        # f'(x) = sigmoid(x) = 1 - e^-y; -expm1(-y) keeps precision when y is tiny
        for j in range(m):
            dx[j] = -dy[j] * f_expm1(-y[j])
    elif act == ACT_GELU:
        for j in range(m):
            v = x[j]
            t = f_tanh(c * (v + k * v * v * v))
            u = <floating>0.5 * (1 + t) + <floating>0.5 * v * (1 - t * t) * c * (1 + 3 * k * v * v)
            dx[j] = dy[j] * u
    elif act == ACT_SWISH:
        # f = x s, f' = s + x s (1 - s) = s (1 + x (1 - s)), s = sigmoid(x)
        for j in range(m):
            v = x[j]
            s = 1 / (1 + f_exp(-v))
            dx[j] = dy[j] * s * (1 + v * (1 - s))


cdef inline void softmax_backward_row(floating* dx, const floating* dy, const floating* y,
                                      Py_ssize_t d) noexcept nogil:
    """dx[j] := y[j] (dy[j] - sum_k dy[k] y[k]) (the softmax Jacobian-vector product)."""
    cdef Py_ssize_t j
    cdef floating s = 0
    for j in range(d):
        s = s + dy[j] * y[j]
    for j in range(d):
        dx[j] = y[j] * (dy[j] - s)


cdef inline void act_backward_rows(int act, floating* dx, const floating* dy,
                                   const floating* y, const floating* x, Py_ssize_t n,
                                   Py_ssize_t d, floating alpha) noexcept nogil:
    """dX := dY * f'(.) over a row-major (n, d) block (row-wise Jacobian for softmax)."""
    cdef Py_ssize_t i
    if floating is float:
        if dl_act_backward_f32(act, dx, dy, y, x, n * d):
            return
    if act == ACT_SOFTMAX:
        for i in range(n):
            softmax_backward_row(dx + i * d, dy + i * d, y + i * d, d)
    else:
        act_backward_span(act, dx, dy, y, x, n * d, alpha)
