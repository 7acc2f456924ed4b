# Activation cores as ``cdef inline`` functions: activations.pyx wraps them for Python and
# dense.pyx cimports them to fuse bias + activation into the pass after its GEMM (inline, so no
# run-time import between the extension modules is needed).
#
# Each element-wise loop has the activation chosen outside the loop, so the loop body is
# branch-free and GCC vectorises it. The loops built on exp/tanh are C functions compiled for
# several instruction sets (DL_CLONES); the Cython loops serve the rest.
from cython cimport floating
from _common cimport f_exp, f_tanh, f_expm1, f_log1p_unit, f_abs

cdef extern from *:
    """
    #include <math.h>

    /* activation codes, shared by the Cython and the C loops below */
    enum {
        DL_ACT_LINEAR, DL_ACT_RELU, DL_ACT_LEAKY_RELU, DL_ACT_ELU, DL_ACT_SIGMOID, DL_ACT_TANH,
        DL_ACT_SOFTPLUS, DL_ACT_GELU, DL_ACT_SWISH, DL_ACT_SOFTMAX
    };
    #define DL_GELU_C 0.7978845608028654
    #define DL_GELU_K 0.044715

    /* f and f' of the activations built on exp / tanh, per type (S = f: float, S = d: double) */
    #define DL_ACT_SCALARS(T, S, EXP, TANH)                                                 \
    static inline T dl_sigmoid_##S(T v) { return (T)1 / ((T)1 + EXP(-v)); }                 \
    static inline T dl_swish_##S(T v) { return v * dl_sigmoid_##S(v); }                     \
    static inline T dl_gelu_##S(T v) {                                                      \
        return (T)0.5 * v * ((T)1 + TANH((T)DL_GELU_C * (v + (T)DL_GELU_K * v * v * v)));   \
    }                                                                                       \
    static inline T dl_gelu_grad_##S(T v) {                                                 \
        T t = TANH((T)DL_GELU_C * (v + (T)DL_GELU_K * v * v * v));                          \
        return (T)0.5 * ((T)1 + t) + (T)0.5 * v * ((T)1 - t * t) * (T)DL_GELU_C             \
               * ((T)1 + (T)3 * (T)DL_GELU_K * v * v);                                      \
    }                                                                                       \
    static inline T dl_swish_grad_##S(T v) {                                                \
        T s = dl_sigmoid_##S(v);                                                            \
        return s * ((T)1 + v * ((T)1 - s));                                                 \
    }
    DL_ACT_SCALARS(float, f, dl_expf, dl_tanhf)
    DL_ACT_SCALARS(double, d, dl_exp, dl_tanh)
    #define DL_SOFTPLUS_f(v) (((v) > 0.0f ? (v) : 0.0f) + dl_log1pf01(dl_expf((v) > 0.0f ? -(v) : (v))))
    #define DL_ELU_f(v) ((v) > 0.0f ? (v) : alpha * dl_expm1f(v))

    /* The loops of the activations built on exp / tanh, multi-versioned (DL_CLONES) so that
       they run 4 to 16 lanes wide where the CPU allows: these are compute-bound, unlike the
       other activations. Same maths as the Cython loops below, which serve the rest (and
       float64 elu / softplus, through libm). y may be x. They return 0 when `act` is not
       handled here. */
    #define DL_FWD_LOOP(T, F)                                                              \
        if (b == NULL) {                                                                   \
            for (Py_ssize_t j = 0; j < n * d; j++) y[j] = F(x[j]);                         \
        } else {                                                                           \
            for (Py_ssize_t i = 0; i < n; i++) {                                           \
                const T* xr = x + i * d; T* yr = y + i * d;                                \
                for (Py_ssize_t j = 0; j < d; j++) yr[j] = F(xr[j] + b[j]);                \
            }                                                                              \
        }

    DL_CLONES static int dl_act_forward_f32(int act, float* y, const float* x, const float* b,
                                            Py_ssize_t n, Py_ssize_t d, float alpha) {
        switch (act) {
        case DL_ACT_ELU: DL_FWD_LOOP(float, DL_ELU_f) return 1;
        case DL_ACT_SOFTPLUS: DL_FWD_LOOP(float, DL_SOFTPLUS_f) return 1;
        case DL_ACT_SIGMOID: DL_FWD_LOOP(float, dl_sigmoid_f) return 1;
        case DL_ACT_TANH: DL_FWD_LOOP(float, dl_tanhf) return 1;
        case DL_ACT_GELU: DL_FWD_LOOP(float, dl_gelu_f) return 1;
        case DL_ACT_SWISH: DL_FWD_LOOP(float, dl_swish_f) return 1;
        default: return 0;
        }
    }

    DL_CLONES static int dl_act_forward_f64(int act, double* y, const double* x,
                                            const double* b, Py_ssize_t n, Py_ssize_t d,
                                            double alpha) {
        (void)alpha;
        switch (act) {
        case DL_ACT_SIGMOID: DL_FWD_LOOP(double, dl_sigmoid_d) return 1;
        case DL_ACT_TANH: DL_FWD_LOOP(double, dl_tanh) return 1;
        case DL_ACT_GELU: DL_FWD_LOOP(double, dl_gelu_d) return 1;
        case DL_ACT_SWISH: DL_FWD_LOOP(double, dl_swish_d) return 1;
        default: return 0;
        }
    }

    /* Row-wise softmax: y[i, :] := exp(z - max z) / sum exp(z - max z), z = x[i, :] + b.
       The max and the sum run over DL_LANES partial accumulators (a fixed order, so results
       do not depend on the instruction set), which GCC vectorises; a plain running sum or max
       is a serial dependency chain that no compiler may reorder. */
    #define DL_LANES 16
    #define DL_SOFTMAX_ROWS(T, S, EXP, NEG_INF)                                             \
    DL_CLONES static void dl_softmax_rows_##S(T* y, const T* x, const T* b, Py_ssize_t n,   \
                                              Py_ssize_t d) {                               \
        for (Py_ssize_t i = 0; i < n; i++) {                                                \
            const T* xr = x + i * d;                                                        \
            T* yr = y + i * d;                                                              \
            T acc[DL_LANES];                                                                \
            Py_ssize_t j, k, d0 = d - d % DL_LANES;                                         \
            for (j = 0; j < d; j++) yr[j] = xr[j] + (b ? b[j] : (T)0);                      \
            for (k = 0; k < DL_LANES; k++) acc[k] = NEG_INF;                                \
            for (j = 0; j < d0; j += DL_LANES)                                              \
                for (k = 0; k < DL_LANES; k++) acc[k] = yr[j + k] > acc[k] ? yr[j + k] : acc[k]; \
            T mx = NEG_INF;                                                                 \
            for (k = 0; k < DL_LANES; k++) mx = acc[k] > mx ? acc[k] : mx;                  \
            for (j = d0; j < d; j++) mx = yr[j] > mx ? yr[j] : mx;                          \
            for (j = 0; j < d; j++) yr[j] = EXP(yr[j] - mx);                                \
            for (k = 0; k < DL_LANES; k++) acc[k] = 0;                                      \
            for (j = 0; j < d0; j += DL_LANES)                                              \
                for (k = 0; k < DL_LANES; k++) acc[k] += yr[j + k];                         \
            T s = 0;                                                                        \
            for (k = 0; k < DL_LANES; k++) s += acc[k];                                     \
            for (j = d0; j < d; j++) s += yr[j];                                            \
            s = (T)1 / s;                                                                   \
            for (j = 0; j < d; j++) yr[j] *= s;                                             \
        }                                                                                   \
    }                                                                                       \
    /* dx[i, :] := y (dy - sum(dy y)) per row; dx may be dy or y */                         \
    DL_CLONES static void dl_softmax_backward_rows_##S(T* dx, const T* dy, const T* y,      \
                                                       Py_ssize_t n, Py_ssize_t d) {        \
        for (Py_ssize_t i = 0; i < n; i++) {                                                \
            const T* gr = dy + i * d;                                                       \
            const T* yr = y + i * d;                                                        \
            T* xr = dx + i * d;                                                             \
            T acc[DL_LANES];                                                                \
            Py_ssize_t j, k, d0 = d - d % DL_LANES;                                         \
            for (k = 0; k < DL_LANES; k++) acc[k] = 0;                                      \
            for (j = 0; j < d0; j += DL_LANES)                                              \
                for (k = 0; k < DL_LANES; k++) acc[k] += gr[j + k] * yr[j + k];             \
            T s = 0;                                                                        \
            for (k = 0; k < DL_LANES; k++) s += acc[k];                                     \
            for (j = d0; j < d; j++) s += gr[j] * yr[j];                                    \
            for (j = 0; j < d; j++) { T g = gr[j], v = yr[j]; xr[j] = v * (g - s); }       \
        }                                                                                   \
    }
    DL_SOFTMAX_ROWS(float, f32, dl_expf, -INFINITY)
    DL_SOFTMAX_ROWS(double, f64, dl_exp, -INFINITY)

    /* dx := dy * f'(.): from x for gelu and swish, from y for the others. */
    #define DL_BWD_CASES(T, S)                                                                 \
        case DL_ACT_SIGMOID: for (j = 0; j < m; j++) dx[j] = dy[j] * y[j] * ((T)1 - y[j]); return 1; \
        case DL_ACT_TANH: for (j = 0; j < m; j++) dx[j] = dy[j] * ((T)1 - y[j] * y[j]); return 1;    \
        case DL_ACT_GELU: for (j = 0; j < m; j++) dx[j] = dy[j] * dl_gelu_grad_##S(x[j]); return 1;  \
        case DL_ACT_SWISH: for (j = 0; j < m; j++) dx[j] = dy[j] * dl_swish_grad_##S(x[j]); return 1;

    DL_CLONES static int dl_act_backward_f32(int act, float* dx, const float* dy,
                                             const float* y, const float* x, Py_ssize_t m) {
        Py_ssize_t j;
        switch (act) {
        DL_BWD_CASES(float, f)
        case DL_ACT_SOFTPLUS: for (j = 0; j < m; j++) dx[j] = -dy[j] * dl_expm1f(-y[j]); return 1;
        default: return 0;
        }
    }

    DL_CLONES static int dl_act_backward_f64(int act, double* dx, const double* dy,
                                             const double* y, const double* x, Py_ssize_t m) {
        Py_ssize_t j;
        switch (act) {
        DL_BWD_CASES(double, d)
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
    void dl_softmax_rows_f32(float* y, const float* x, const float* b, Py_ssize_t n,
                             Py_ssize_t d) nogil
    void dl_softmax_rows_f64(double* y, const double* x, const double* b, Py_ssize_t n,
                             Py_ssize_t d) nogil
    void dl_softmax_backward_rows_f32(float* dx, const float* dy, const float* y, Py_ssize_t n,
                                      Py_ssize_t d) nogil
    void dl_softmax_backward_rows_f64(double* dx, const double* dy, const double* y,
                                      Py_ssize_t n, Py_ssize_t d) nogil
    int dl_act_forward_f64(int act, double* y, const double* x, const double* b,
                           Py_ssize_t n, Py_ssize_t d, double alpha) nogil
    int dl_act_backward_f64(int act, double* dx, const double* dy, const double* y,
                            const double* x, Py_ssize_t m) nogil


cdef inline int act_code(object name, str fn, double alpha, str argname='activation') except -1:
    """The ACT_* code of an activation name; ValueError naming the known ones otherwise, or when
    alpha is out of range for leaky_relu / elu (alpha >= 0 keeps f monotone, which the
    backward pass needs to read f' from the saved output)."""
    # in the order of the DL_ACT_* codes (activations.pyx's ACTIVATIONS repeats it for Python)
    names = ("linear", "relu", "leaky_relu", "elu", "sigmoid", "tanh", "softplus", "gelu",
             "swish", "softmax")
    if not isinstance(name, str):
        raise TypeError(f"{fn}: argument '{argname}' must be a str naming an activation, got "
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
    # written "0 if v <= 0" rather than "v if v > 0": NaN fails both comparisons, and this
    # form passes it on (relu(NaN) = NaN, as in PyTorch) instead of turning it into 0
    return 0 if v <= 0 else v

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


cdef inline void act_forward_rows(int act, floating* y, const floating* x,
                                  const floating* bias, Py_ssize_t n, Py_ssize_t d,
                                  floating alpha) noexcept nogil:
    """Y[i, j] := f(X[i, j] + bias[j]) over a row-major (n, d) block (bias (d,) or NULL);
    softmax is taken over each row. Y may be X."""
    cdef Py_ssize_t i
    if floating is float:
        if dl_act_forward_f32(act, y, x, bias, n, d, alpha):
            return
    else:
        if dl_act_forward_f64(act, y, x, bias, n, d, alpha):
            return
    if act == ACT_SOFTMAX:
        if floating is float:
            dl_softmax_rows_f32(y, x, bias, n, d)
        else:
            dl_softmax_rows_f64(y, x, bias, n, d)
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
    # A NaN output (from a NaN input) gives a NaN gradient: f'(NaN) is NaN, and a gradient
    # of dy or 0 there would hide it. (relu: y is never < 0, so y <= 0 means y == 0.)
    elif act == ACT_RELU:
        for j in range(m):
            g = dy[j]
            u = y[j]
            dx[j] = g if u > 0 else (0 if u <= 0 else u)
    elif act == ACT_LEAKY_RELU:
        for j in range(m):
            g = dy[j]
            u = y[j]
            dx[j] = g if u > 0 else (alpha * g if u <= 0 else u)
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


cdef inline void act_backward_rows(int act, floating* dx, const floating* dy,
                                   const floating* y, const floating* x, Py_ssize_t n,
                                   Py_ssize_t d, floating alpha) noexcept nogil:
    """dX := dY * f'(.) over a row-major (n, d) block (row-wise Jacobian for softmax)."""
    cdef Py_ssize_t i
    if floating is float:
        if dl_act_backward_f32(act, dx, dy, y, x, n * d):
            return
    else:
        if dl_act_backward_f64(act, dx, dy, y, x, n * d):
            return
    if act == ACT_SOFTMAX:
        if floating is float:
            dl_softmax_backward_rows_f32(dx, dy, y, n, d)
        else:
            dl_softmax_backward_rows_f64(dx, dy, y, n, d)
    else:
        act_backward_span(act, dx, dy, y, x, n * d, alpha)
