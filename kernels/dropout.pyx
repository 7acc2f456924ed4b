# distutils: extra_compile_args = -fno-trapping-math
"""Inverted dropout: y := x * mask / (1 - rate), mask[i] = (u(seed, counter + i) >= rate).

u is a counter-based uniform in [0, 1) with 2^-32 resolution (splitmix64 of the seed's key and
the element's index), so the mask depends only on (seed, counter) and on nothing else: the
caller advances ``counter`` by ``x.size`` after each call.
"""
cimport numpy as cnp
from libc.stdint cimport uint64_t, uint8_t
from libc.math cimport ceil

from _common cimport (check_float_array, check_uint8_array, check_same_dtype, check_shape,
                      check_no_overlap, check_finite_float, float_dispatch, is_float32, data)
from dropout cimport (dropout_key, dropout_forward_f32, dropout_forward_f64,
                     dropout_backward_f32, dropout_backward_f64)

cnp.import_array()

cdef object U64 = 2 ** 64


cdef double _check_rate(rate, str fn) except? -1.0:
    cdef double r = check_finite_float(rate, fn, "rate")
    if not 0 <= r < 1:
        raise ValueError(f"{fn}: argument 'rate' must be in [0, 1), got {r}")
    return r


cdef uint64_t _check_u64(value, str fn, str name) except? 0:
    import numbers
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{fn}: argument '{name}' must be an int, got "
                        f"{type(value).__name__} {value!r}")
    v = int(value)
    if not 0 <= v < U64:
        raise ValueError(f"{fn}: argument '{name}' must be in [0, 2**64), got {v}")
    return <uint64_t>v


def dropout_forward(x, rate, seed, counter, y, mask):
    """mask[i] := u(seed, counter + i) >= rate; y := x * mask / (1 - rate)   x, y, mask (uint8)
    same shape (any); seed, counter ints in [0, 2**64). y may be x (in place)."""
    fn = "dropout_forward"
    cdef cnp.ndarray X = check_float_array(x, fn, "x", -1, False)
    cdef double r = _check_rate(rate, fn)
    cdef uint64_t s = _check_u64(seed, fn, "seed")
    cdef uint64_t c = _check_u64(counter, fn, "counter")
    cdef cnp.ndarray Y = check_float_array(y, fn, "y", -1, True)
    cdef cnp.ndarray M = check_uint8_array(mask, fn, "mask", True)
    shape = (<object>X).shape
    check_same_dtype(Y, X, fn, "y", "x")
    check_shape(Y, shape, fn, "y", "(the shape of x)")
    check_shape(M, shape, fn, "mask", "(the shape of x)")
    check_no_overlap(Y, X, fn, "y", "x", True)
    check_no_overlap(M, X, fn, "mask", "x", False)
    check_no_overlap(M, Y, fn, "mask", "y", False)
    cdef Py_ssize_t m = X.size
    # keep iff top32 >= ceil(rate * 2^32): exactly u >= rate for u = top32 / 2^32
    cdef uint64_t threshold = <uint64_t>ceil(r * 4294967296.0)
    cdef uint64_t key = dropout_key(s)
    cdef double scale = 1.0 / (1.0 - r)
    with nogil:
        float_dispatch(is_float32(X), dropout_forward_f32, dropout_forward_f64,
                       data(X), m, key, c, threshold, scale, data(Y), <uint8_t*>data(M))
    return y


def dropout_backward(dy, mask, rate, dx):
    """dx := dy * mask / (1 - rate)   dy, dx, mask (uint8, from dropout_forward) same shape.
    dx may be dy (in place)."""
    fn = "dropout_backward"
    cdef cnp.ndarray DY = check_float_array(dy, fn, "dy", -1, False)
    cdef cnp.ndarray M = check_uint8_array(mask, fn, "mask", False)
    cdef double r = _check_rate(rate, fn)
    cdef cnp.ndarray DX = check_float_array(dx, fn, "dx", -1, True)
    shape = (<object>DY).shape
    check_same_dtype(DX, DY, fn, "dx", "dy")
    check_shape(M, shape, fn, "mask", "(the shape of dy)")
    check_shape(DX, shape, fn, "dx", "(the shape of dy)")
    check_no_overlap(DX, DY, fn, "dx", "dy", True)
    check_no_overlap(DX, M, fn, "dx", "mask", False)
    cdef Py_ssize_t m = DY.size
    cdef double scale = 1.0 / (1.0 - r)
    with nogil:
        float_dispatch(is_float32(DY), dropout_backward_f32, dropout_backward_f64,
                       data(DY), <uint8_t*>data(M), m, scale, data(DX))
    return dx
