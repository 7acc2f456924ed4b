# The nogil cores one kernel module runs out of another, as typed function pointers.
#
# kernels/chain.pyx runs a whole network in one call; for its results to be the bits the layers
# give, each op must run the very machine code the layer runs: an inline copy compiled into
# chain.pyx differs (that module is built with -ffp-contract=off for its input conversion, and
# even under the same flags inlining may contract a multiply-add differently). A cimport of a
# non-inline function would import the defining module by its source name (``conv``), not the
# installed one (``dlrun.kernels.conv``; see _common.pxd), so each module instead lists its
# cores in a ``CORES`` dict of capsules, each assigned from a pointer of the type below (a
# changed signature is a compile error in the exporting module), and the chain takes them out
# once, at import.
from cpython.pycapsule cimport PyCapsule_New, PyCapsule_GetPointer
from libc.stdint cimport int64_t

from conv cimport ConvGeom

# conv.pyx: y := f(conv(x, w) + b) over g.n samples, nb samples per GEMM (1: one GEMM each)
ctypedef void (*conv2d_forward_f32_t)(const ConvGeom* g, int act, const float* x, const float* w,
                                      const float* b, float* y, float* col, Py_ssize_t nb,
                                      float alpha) noexcept nogil
ctypedef void (*conv2d_forward_f64_t)(const ConvGeom* g, int act, const double* x,
                                      const double* w, const double* b, double* y, double* col,
                                      Py_ssize_t nb, double alpha) noexcept nogil
# pool.pyx: window maxima of g.n*g.c planes (indices into am); window means (or their adjoint)
ctypedef void (*maxpool_forward_t)(const ConvGeom* g, const void* x, void* y, int64_t* am,
                                   bint single) noexcept nogil
ctypedef void (*avgpool_f32_t)(const ConvGeom* g, const float* x, float* y, bint include_pad,
                               bint backward) noexcept nogil
ctypedef void (*avgpool_f64_t)(const ConvGeom* g, const double* x, double* y, bint include_pad,
                               bint backward) noexcept nogil
# batchnorm.pyx: inference form from the running statistics, (n, d) per feature (-1: no
# memory for its scale and shift) and NCHW per channel
ctypedef int (*batchnorm_eval_f32_t)(const float* x, Py_ssize_t n, Py_ssize_t d,
                                     const float* gamma, const float* beta, const float* mean,
                                     const float* var, double eps, float* y) noexcept nogil
ctypedef int (*batchnorm_eval_f64_t)(const double* x, Py_ssize_t n, Py_ssize_t d,
                                     const double* gamma, const double* beta, const double* mean,
                                     const double* var, double eps, double* y) noexcept nogil
ctypedef void (*batchnorm2d_eval_f32_t)(const float* x, Py_ssize_t n, Py_ssize_t c,
                                        Py_ssize_t hw, const float* gamma, const float* beta,
                                        const float* mean, const float* var, double eps,
                                        float* y) noexcept nogil
ctypedef void (*batchnorm2d_eval_f64_t)(const double* x, Py_ssize_t n, Py_ssize_t c,
                                        Py_ssize_t hw, const double* gamma, const double* beta,
                                        const double* mean, const double* var, double eps,
                                        double* y) noexcept nogil
# dense.pyx: y := f(x w + b), one GEMM (n, d_in) x (d_in, d_out)
ctypedef void (*dense_forward_f32_t)(int act, int n, int d_in, int d_out, const float* x,
                                     const float* w, const float* b, float* y,
                                     float alpha) noexcept nogil
ctypedef void (*dense_forward_f64_t)(int act, int n, int d_in, int d_out, const double* x,
                                     const double* w, const double* b, double* y,
                                     double alpha) noexcept nogil
# activations.pyx: y := f(x + bias) over (n, d) rows (softmax per row); y may be x
ctypedef void (*activation_rows_f32_t)(int act, float* y, const float* x, const float* bias,
                                       Py_ssize_t n, Py_ssize_t d, float alpha) noexcept nogil
ctypedef void (*activation_rows_f64_t)(int act, double* y, const double* x, const double* bias,
                                       Py_ssize_t n, Py_ssize_t d, double alpha) noexcept nogil


cdef inline object core_capsule(void* p):
    """A capsule of one core's address (the name only marks it as one of these)."""
    return PyCapsule_New(p, "dlrun.kernels.core", NULL)


cdef inline void* core_pointer(object module, str key) except NULL:
    """The address ``module.CORES[key]`` holds."""
    return PyCapsule_GetPointer(module.CORES[key], "dlrun.kernels.core")
