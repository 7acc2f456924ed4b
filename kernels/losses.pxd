# cdef API of dlrun.kernels.losses: nogil cores over raw C-contiguous buffers.
#
# Each core returns the *sum* of the per-element (or per-row) losses in double precision and
# writes the gradient of the *mean* loss into ``grad``; the def wrappers divide by the count.
# ``grad`` may alias the prediction/logits buffer (every core reads an element before it
# writes the gradient at the same place); it must not alias the target of the
# probability-target softmax core.
from cython cimport floating
from libc.stdint cimport int32_t, int64_t

# Class weights ``cw`` (NULL: none) weight each row's (element's) loss and gradient; the
# gradient stays that of the loss summed over rows and divided by their count n (not by the
# sum of the weights).

# sum_i w_i [ lse(z_i) - sum_j t'_ij z_ij ],  t' = (1-ls) onehot(y_i) + ls/k, w_i = cw[y_i] (1 without);
# grad := w_i (softmax(z) - t')/n.  labels y (n,) int32 / int64, each in [0, k) (checked by the caller)
cdef double softmax_xent_labels32(const floating* z, const int32_t* y, floating* grad,
                                  Py_ssize_t n, Py_ssize_t k, double smoothing,
                                  const double* cw) noexcept nogil
cdef double softmax_xent_labels64(const floating* z, const int64_t* y, floating* grad,
                                  Py_ssize_t n, Py_ssize_t k, double smoothing,
                                  const double* cw) noexcept nogil

# sum_i w_i sum_j t'_ij (lse(z_i) - z_ij),  t' = (1-ls) t + ls/k, w_i = sum_j cw_j t_ij (1 without);
# grad := w_i (sum_j t'_ij softmax(z_i) - t'_i)/n
cdef double softmax_xent_probs(const floating* z, const floating* t, floating* grad,
                               Py_ssize_t n, Py_ssize_t k, double smoothing,
                               const double* cw) noexcept nogil

# sum w (max(z,0) - z t + log1p(exp(-|z|))), w = cw[0] (1-t) + cw[1] t (1 without);
# grad := w (sigmoid(z) - t)/size
cdef double sigmoid_bce(const floating* z, const floating* t, floating* grad,
                        Py_ssize_t size, const double* cw) noexcept nogil

# sum (p-t)^2;  grad := 2 (p-t)/size
cdef double mse_core(const floating* p, const floating* t, floating* grad,
                     Py_ssize_t size) noexcept nogil

# sum |p-t|;  grad := sign(p-t)/size
cdef double mae_core(const floating* p, const floating* t, floating* grad,
                     Py_ssize_t size) noexcept nogil

# sum h(p-t), h(r) = r^2/2 if |r| <= delta else delta (|r| - delta/2);  grad := clip(r, +-delta)/size
cdef double huber_core(const floating* p, const floating* t, floating* grad,
                       Py_ssize_t size, double delta) noexcept nogil
