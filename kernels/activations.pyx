# distutils: extra_compile_args = -fno-trapping-math
"""Activation functions, forward and backward, on C-contiguous float32/float64 arrays.

The backward pass reads f' from the saved output y where the maths allows; gelu and swish also
need the forward input x. Softmax is taken over the last axis (row-wise for (n, d)).
"""
cimport numpy as cnp
from cython cimport floating

from _common cimport (check_float_array, check_same_dtype, check_shape, check_no_overlap,
                      check_finite_float, float_dispatch, is_float32, data, data_or_null)
from activations cimport (act_code, act_needs_input, act_forward_rows, act_backward_rows,
                          ACT_SOFTMAX)

cnp.import_array()

cdef void _rows(int act, floating* y, const floating* x, const floating* bias, Py_ssize_t n,
                Py_ssize_t d, floating alpha) noexcept nogil:
    """Y := f(X + bias) over (n, d) rows: activation_forward's core, compiled once here (and
    run by kernels/chain.pyx through a pointer, so both give the same bits)."""
    act_forward_rows(act, y, x, bias, n, d, alpha)


ACTIVATIONS = ("linear", "relu", "leaky_relu", "elu", "sigmoid", "tanh", "softplus", "gelu",
               "swish", "softmax")


def activation_forward(name, x, y, alpha=0.0, bias=None):
    """y := f(x + bias)   x, y same shape (n, d) (any shape for element-wise f; softmax over the
    last axis); bias (d,) broadcast over rows, or None; y may be x (in place). alpha: slope of
    leaky_relu, scale of elu."""
    fn = "activation_forward"
    cdef double al = check_finite_float(alpha, fn, "alpha")
    cdef int act = act_code(name, fn, al, "name")
    cdef cnp.ndarray X = check_float_array(x, fn, "x", -1, False)
    cdef cnp.ndarray Y = check_float_array(y, fn, "y", -1, True)
    cdef cnp.ndarray B = None
    check_same_dtype(Y, X, fn, "y", "x")
    check_shape(Y, (<object>X).shape, fn, "y", "(the shape of x)")
    check_no_overlap(Y, X, fn, "y", "x", True)
    cdef Py_ssize_t d = X.shape[X.ndim - 1]
    cdef Py_ssize_t n = (X.size // d) if d else 0
    if bias is not None:
        B = check_float_array(bias, fn, "bias", 1, False)
        check_same_dtype(B, X, fn, "bias", "x")
        check_shape(B, (d,), fn, "bias", "(the last dimension of x)")
        check_no_overlap(Y, B, fn, "y", "bias", False)
    cdef void* bp = data_or_null(B)
    with nogil:
        float_dispatch(is_float32(X), _rows[float], _rows[double], act, data(Y), data(X), bp, n,
                       d, al)
    return y


def activation_backward(name, y, dy, dx, alpha=0.0, x=None):
    """dx := dy * f'(x)   y (saved output), dy, dx (and x) same shape; f' from y, or from x for
    gelu and swish (x required there); softmax: dx := y (dy - sum(dy y, last axis)).
    dx may be dy (in place)."""
    fn = "activation_backward"
    cdef double al = check_finite_float(alpha, fn, "alpha")
    cdef int act = act_code(name, fn, al, "name")
    cdef cnp.ndarray Yv = check_float_array(y, fn, "y", -1, False)
    cdef cnp.ndarray DY = check_float_array(dy, fn, "dy", -1, False)
    cdef cnp.ndarray DX = check_float_array(dx, fn, "dx", -1, True)
    shape = (<object>Yv).shape
    check_same_dtype(DY, Yv, fn, "dy", "y")
    check_same_dtype(DX, Yv, fn, "dx", "y")
    check_shape(DY, shape, fn, "dy", "(the shape of y)")
    check_shape(DX, shape, fn, "dx", "(the shape of y)")
    cdef cnp.ndarray X = None
    if x is not None:
        X = check_float_array(x, fn, "x", -1, False)
        check_same_dtype(X, Yv, fn, "x", "y")
        check_shape(X, shape, fn, "x", "(the shape of y)")
    elif act_needs_input(act):
        raise ValueError(f"{fn}: {name} needs the forward input: pass x= (the array given to "
                         f"activation_forward)")
    check_no_overlap(DX, DY, fn, "dx", "dy", True)
    check_no_overlap(DX, Yv, fn, "dx", "y", True)
    if X is not None:
        check_no_overlap(DX, X, fn, "dx", "x", True)
    cdef Py_ssize_t d = Yv.shape[Yv.ndim - 1]
    cdef Py_ssize_t n = (Yv.size // d) if d else 0
    cdef void* xp = data_or_null(X)
    with nogil:
        float_dispatch(is_float32(Yv), act_backward_rows[float], act_backward_rows[double],
                       act, data(DX), data(DY), data(Yv), xp, n, d, al)
    return dx


# ---- the forward core kernels/chain.pyx runs (see cores.pxd)
from cores cimport activation_rows_f32_t, activation_rows_f64_t, core_capsule

cdef activation_rows_f32_t _core_f32 = _rows[float]
cdef activation_rows_f64_t _core_f64 = _rows[double]
CORES = {"activation_rows_f32": core_capsule(<void*>_core_f32),
         "activation_rows_f64": core_capsule(<void*>_core_f64)}
