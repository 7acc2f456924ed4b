# Batch normalisation over the batch axis of a row-major (n, d) array. All passes walk the data
# row by row (contiguous) and keep per-column state in small (d,) buffers, so the inner loops
# are unit-stride and vectorise. Statistics are accumulated in float64 for both dtypes.
#
# The passes over the (n, d) data are C loops multi-versioned with DL_CLONES (AVX-512, AVX2,
# baseline); the per-column arithmetic around them is Cython (batchnorm.pyx).
from cython cimport floating
from _common cimport check_finite_float     # orders _common's C (DL_CLONES) first


cdef extern from *:
    """
    /* __restrict: the wrappers check that outputs do not overlap inputs (except y / dx over
       x / dy / xhat exactly, which the affine and dx loops allow: no __restrict there) */

    /* rows summed in the data type before flushing into the float64 column sums */
    #define DL_BN_BLOCK 32

    #define DL_BN_PASSES(T, S)                                                                \
    /* s1[j] += sum_i (x[i, j] - x[0, j]), s2[j] += sum_i (x[i, j] - x[0, j])^2: shifted      \
       sums, accumulated in T over blocks of DL_BN_BLOCK rows (t1, t2), two rows per sweep,   \
       flushed into float64 after each block */                                               \
    DL_CLONES static void dl_bn_shifted_sums_##S(const T* __restrict x, Py_ssize_t n,           \
            Py_ssize_t d, T* __restrict t1, T* __restrict t2, double* __restrict s1,          \
            double* __restrict s2) {                                                          \
        Py_ssize_t i, j, i0, i1;                                                              \
        for (j = 0; j < d; j++) { s1[j] = 0; s2[j] = 0; }                                     \
        for (i0 = 1; i0 < n; i0 = i1) {                                                       \
            i1 = i0 + DL_BN_BLOCK < n ? i0 + DL_BN_BLOCK : n;                                 \
            for (j = 0; j < d; j++) { t1[j] = 0; t2[j] = 0; }                                 \
            for (i = i0; i + 2 <= i1; i += 2) {                                               \
                const T* r = x + i * d;                                                       \
                for (j = 0; j < d; j++) {                                                     \
                    T a = r[j] - x[j], b = r[j + d] - x[j];                                   \
                    t1[j] += a + b;                                                           \
                    t2[j] += a * a + b * b;                                                   \
                }                                                                             \
            }                                                                                 \
            if (i < i1) {                                                                     \
                const T* r = x + i * d;                                                       \
                for (j = 0; j < d; j++) { T a = r[j] - x[j]; t1[j] += a; t2[j] += a * a; }    \
            }                                                                                 \
            for (j = 0; j < d; j++) { s1[j] += t1[j]; s2[j] += t2[j]; }                       \
        }                                                                                     \
    }                                                                                         \
    /* xhat := (x - mu) inv_std, y := gamma xhat + beta */                                    \
    DL_CLONES static void dl_bn_normalise_##S(const T* __restrict x, Py_ssize_t n,            \
            Py_ssize_t d, const T* __restrict mu, const T* __restrict inv_std,                \
            const T* __restrict gamma, const T* __restrict beta, T* __restrict xhat,          \
            T* __restrict y) {                                                                \
        for (Py_ssize_t i = 0; i < n; i++) {                                                  \
            const T* r = x + i * d; T* h = xhat + i * d; T* o = y + i * d;                    \
            for (Py_ssize_t j = 0; j < d; j++) {                                              \
                T v = (r[j] - mu[j]) * inv_std[j];                                            \
                h[j] = v;                                                                     \
                o[j] = v * gamma[j] + beta[j];                                                \
            }                                                                                 \
        }                                                                                     \
    }                                                                                         \
    /* y := x scale + shift (eval); y may be x */                                             \
    DL_CLONES static void dl_bn_affine_##S(const T* x, Py_ssize_t n, Py_ssize_t d,            \
            const T* __restrict scale, const T* __restrict shift, T* y) {                     \
        for (Py_ssize_t i = 0; i < n; i++) {                                                  \
            const T* r = x + i * d; T* o = y + i * d;                                         \
            for (Py_ssize_t j = 0; j < d; j++) o[j] = r[j] * scale[j] + shift[j];             \
        }                                                                                     \
    }                                                                                         \
    /* sb[j] := sum_i dy[i, j], sg[j] := sum_i dy[i, j] xhat[i, j] (blocked as above) */      \
    DL_CLONES static void dl_bn_grad_sums_##S(const T* __restrict dy,                         \
            const T* __restrict xhat, Py_ssize_t n, Py_ssize_t d, T* __restrict tb,           \
            T* __restrict tg, double* __restrict sb, double* __restrict sg) {                 \
        Py_ssize_t i, j, i0, i1;                                                              \
        for (j = 0; j < d; j++) { sb[j] = 0; sg[j] = 0; }                                     \
        for (i0 = 0; i0 < n; i0 = i1) {                                                       \
            i1 = i0 + DL_BN_BLOCK < n ? i0 + DL_BN_BLOCK : n;                                 \
            for (j = 0; j < d; j++) { tb[j] = 0; tg[j] = 0; }                                 \
            for (i = i0; i + 2 <= i1; i += 2) {                                               \
                const T* g = dy + i * d; const T* h = xhat + i * d;                           \
                for (j = 0; j < d; j++) {                                                     \
                    tb[j] += g[j] + g[j + d];                                                 \
                    tg[j] += g[j] * h[j] + g[j + d] * h[j + d];                               \
                }                                                                             \
            }                                                                                 \
            if (i < i1) {                                                                     \
                const T* g = dy + i * d; const T* h = xhat + i * d;                           \
                for (j = 0; j < d; j++) { tb[j] += g[j]; tg[j] += g[j] * h[j]; }              \
            }                                                                                 \
            for (j = 0; j < d; j++) { sb[j] += tb[j]; sg[j] += tg[j]; }                       \
        }                                                                                     \
    }                                                                                         \
    /* dx := a (dy - mb - xhat mg); dx may be dy or xhat */                                   \
    DL_CLONES static void dl_bn_dx_##S(const T* dy, const T* xhat, Py_ssize_t n,              \
            Py_ssize_t d, const T* __restrict a, const T* __restrict mb,                      \
            const T* __restrict mg, T* dx) {                                                  \
        for (Py_ssize_t i = 0; i < n; i++) {                                                  \
            const T* g = dy + i * d; const T* h = xhat + i * d; T* o = dx + i * d;            \
            for (Py_ssize_t j = 0; j < d; j++) {                                              \
                T gj = g[j], hj = h[j];                                                       \
                o[j] = a[j] * (gj - mb[j] - hj * mg[j]);                                      \
            }                                                                                 \
        }                                                                                     \
    }
    DL_BN_PASSES(float, f32)
    DL_BN_PASSES(double, f64)
    """
    void bn_shifted_sums_f32 "dl_bn_shifted_sums_f32"(const float* x, Py_ssize_t n, Py_ssize_t d,
        float* t1, float* t2, double* s1, double* s2) nogil
    void bn_shifted_sums_f64 "dl_bn_shifted_sums_f64"(const double* x, Py_ssize_t n,
        Py_ssize_t d, double* t1, double* t2, double* s1, double* s2) nogil
    void bn_normalise_f32 "dl_bn_normalise_f32"(const float* x, Py_ssize_t n, Py_ssize_t d,
        const float* mu, const float* inv_std, const float* gamma, const float* beta,
        float* xhat, float* y) nogil
    void bn_normalise_f64 "dl_bn_normalise_f64"(const double* x, Py_ssize_t n, Py_ssize_t d,
        const double* mu, const double* inv_std, const double* gamma, const double* beta,
        double* xhat, double* y) nogil
    void bn_affine_f32 "dl_bn_affine_f32"(const float* x, Py_ssize_t n, Py_ssize_t d,
        const float* scale, const float* shift, float* y) nogil
    void bn_affine_f64 "dl_bn_affine_f64"(const double* x, Py_ssize_t n, Py_ssize_t d,
        const double* scale, const double* shift, double* y) nogil
    void bn_grad_sums_f32 "dl_bn_grad_sums_f32"(const float* dy, const float* xhat,
        Py_ssize_t n, Py_ssize_t d, float* tb, float* tg, double* sb, double* sg) nogil
    void bn_grad_sums_f64 "dl_bn_grad_sums_f64"(const double* dy, const double* xhat,
        Py_ssize_t n, Py_ssize_t d, double* tb, double* tg, double* sb, double* sg) nogil
    void bn_dx_f32 "dl_bn_dx_f32"(const float* dy, const float* xhat, Py_ssize_t n,
        Py_ssize_t d, const float* a, const float* mb, const float* mg, float* dx) nogil
    void bn_dx_f64 "dl_bn_dx_f64"(const double* dy, const double* xhat, Py_ssize_t n,
        Py_ssize_t d, const double* a, const double* mb, const double* mg, double* dx) nogil


cdef int bn_forward_train(const floating* x, Py_ssize_t n, Py_ssize_t d,
                          const floating* gamma, const floating* beta,
                          floating* running_mean, floating* running_var,
                          double momentum, double eps, floating* y, floating* xhat,
                          floating* inv_std) noexcept nogil

cdef int bn_forward_eval(const floating* x, Py_ssize_t n, Py_ssize_t d,
                         const floating* gamma, const floating* beta,
                         const floating* running_mean, const floating* running_var,
                         double eps, floating* y) noexcept nogil

cdef int bn_backward(const floating* dy, const floating* xhat, Py_ssize_t n, Py_ssize_t d,
                     const floating* gamma, const floating* inv_std, floating* dx,
                     floating* dgamma, floating* dbeta, bint accumulate) noexcept nogil


# Per-channel batch norm of NCHW arrays x (n, c, h, w): statistics over (n, h, w) for each
# channel. Each channel's n planes of h*w contiguous values are walked twice per direction
# (sums, then the elementwise pass); no scratch, statistics in float64.
cdef void bn2d_forward_train(const floating* x, Py_ssize_t n, Py_ssize_t c, Py_ssize_t hw,
                             const floating* gamma, const floating* beta,
                             floating* running_mean, floating* running_var,
                             double momentum, double eps, floating* y, floating* xhat,
                             floating* inv_std) noexcept nogil

cdef void bn2d_forward_eval(const floating* x, Py_ssize_t n, Py_ssize_t c, Py_ssize_t hw,
                            const floating* gamma, const floating* beta,
                            const floating* running_mean, const floating* running_var,
                            double eps, floating* y) noexcept nogil

cdef void bn2d_backward(const floating* dy, const floating* xhat, Py_ssize_t n, Py_ssize_t c,
                        Py_ssize_t hw, const floating* gamma, const floating* inv_std,
                        floating* dx, floating* dgamma, floating* dbeta,
                        bint accumulate) noexcept nogil
