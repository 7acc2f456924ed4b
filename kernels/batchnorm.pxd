# Batch normalisation over the batch axis of a row-major (n, d) array. All passes walk the data
# row by row (contiguous) and keep per-column state in small (d,) buffers, so the inner loops
# are unit-stride and vectorise. Statistics are accumulated in float64 for both dtypes.
from cython cimport floating


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
