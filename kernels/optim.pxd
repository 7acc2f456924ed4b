# cdef API of dlrun.kernels.optim: nogil in-place updates over flat C-contiguous buffers of n
# elements. Hyperparameters arrive checked (and, for Adam, with the bias corrections folded in
# by the caller); every core makes one pass and allocates nothing. Penalties are fused into the
# gradient: g' = g + l1 sign(p) + l2 p (sign(0) = 0).
from cython cimport floating

# v := momentum v + g';  p -= lr (g' + momentum v if nesterov else v)   (momentum > 0)
# p -= lr g'                                                             (momentum == 0, vel unused)
cdef void sgd_core(floating* p, const floating* g, floating* vel, Py_ssize_t n, double lr,
                   double momentum, bint nesterov, double l1, double l2) noexcept nogil

# m := b1 m + (1-b1) g';  v := b2 v + (1-b2) g'^2;
# p := decay p - step_size m / (sqrt(v) inv_sqrt_bc2 + eps)
# with step_size = lr / (1 - b1^t), inv_sqrt_bc2 = 1 / sqrt(1 - b2^t), decay = 1 - lr wd (AdamW)
cdef void adam_core(floating* p, const floating* g, floating* m, floating* v, Py_ssize_t n,
                    double step_size, double beta1, double beta2, double inv_sqrt_bc2,
                    double eps, double l1, double l2, double decay) noexcept nogil

# sq := rho sq + (1-rho) g'^2;  p -= lr g' / (sqrt(sq) + eps)
cdef void rmsprop_core(floating* p, const floating* g, floating* sq, Py_ssize_t n, double lr,
                       double rho, double eps, double l1, double l2) noexcept nogil

# acc += g'^2;  p -= lr g' / (sqrt(acc) + eps)
cdef void adagrad_core(floating* p, const floating* g, floating* acc, Py_ssize_t n, double lr,
                       double eps, double l1, double l2) noexcept nogil

# sum x^2 in double precision
cdef double sumsq_core(const floating* x, Py_ssize_t n) noexcept nogil

# x *= s
cdef void scale_core(floating* x, Py_ssize_t n, double s) noexcept nogil
