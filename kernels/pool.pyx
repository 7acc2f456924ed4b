# distutils: extra_compile_args = -fno-trapping-math
"""2-D pooling kernels, NCHW: max, average and global max/average, forward and backward.

x (N, C, H, W) -> y (N, C, oh, ow), oh = (H + pt + pb - kh) // sh + 1 (likewise ow); stride
defaults to the kernel size. Each padding must be smaller than the kernel extent, so every window
holds at least one input pixel. Max pooling ignores the padding and saves, per output pixel, the
index (int64, in the (H, W) plane, i*W + j) of the maximum it took (the first one on ties; NaN
wins) for the backward pass. Average pooling divides by the number of INPUT pixels in the window
(count_include_pad=False, the default: padding is not data), or by kh*kw when count_include_pad.
Arrays are C-contiguous, float32 or float64, one dtype per call; outputs supplied by the caller.
"""
cimport numpy as cnp
from cython cimport floating
from libc.stdint cimport int64_t

from _common cimport (check_float_array, check_same_dtype, check_shape, check_no_overlap,
                      check_flag, check_layout, received, float_dispatch,
                      float_dispatch_ssize, is_float32, data)
from conv cimport ConvGeom, parse_pair, parse_padding, out_size

cnp.import_array()


cdef ConvGeom _geom(str fn, cnp.ndarray X, object kernel, object stride, object padding) except *:
    cdef ConvGeom g
    g.kh, g.kw = parse_pair(kernel, fn, "kernel", 1)
    g.sh, g.sw = parse_pair(kernel if stride is None else stride, fn, "stride", 1)
    g.pt, g.pb, g.pl, g.pr = parse_padding(padding, fn)
    if max(g.pt, g.pb) >= g.kh or max(g.pl, g.pr) >= g.kw:
        raise ValueError(f"{fn}: argument 'padding' = {padding!r} must be smaller than the kernel "
                         f"({g.kh}, {g.kw}) on every side")
    g.dh = g.dw = 1
    g.groups = 1
    g.n, g.c, g.h, g.w = X.shape[0], X.shape[1], X.shape[2], X.shape[3]
    g.f = g.c
    g.oh = out_size(g.h, g.pt + g.pb, g.kh, g.sh, 1, fn, "vertical")
    g.ow = out_size(g.w, g.pl + g.pr, g.kw, g.sw, 1, fn, "horizontal")
    return g


def pool2d_output_shape(x_shape, kernel, stride=None, padding=0):
    """(N, C, oh, ow) of a max/avg pooling of an input of shape x_shape (N, C, H, W)."""
    fn = "pool2d_output_shape"
    if not isinstance(x_shape, tuple) or len(x_shape) != 4 or not all(
            isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**31 for v in x_shape):
        raise ValueError(f"{fn}: argument 'x_shape' must be a tuple of 4 ints in [0, 2**31), "
                         f"got {x_shape!r}")
    kh, kw = parse_pair(kernel, fn, "kernel", 1)
    sh, sw = parse_pair(kernel if stride is None else stride, fn, "stride", 1)
    pt, pb, pl, pr = parse_padding(padding, fn)
    if max(pt, pb) >= kh or max(pl, pr) >= kw:
        raise ValueError(f"{fn}: argument 'padding' = {padding!r} must be smaller than the kernel "
                         f"({kh}, {kw}) on every side")
    return (x_shape[0], x_shape[1], out_size(x_shape[2], pt + pb, kh, sh, 1, fn, "vertical"),
            out_size(x_shape[3], pl + pr, kw, sw, 1, fn, "horizontal"))


cdef extern from *:
    """
    /* Window maxima of planes of (h, w) values, the index (a*w + e in the plane) of each
       maximum saved: the first on ties, the first NaN wins (v > m, or v NaN while m is not).

       Written so that nothing branches on the data (a branch per comparison mispredicts on
       about half the windows of real activations: the first version ran 2x2 pooling of
       64x16x28x28 in 2.8 ms, 14 ns per window). The maximum is taken with compare-selects
       that keep the earlier value on ties, so it is the first maximum; the general path then
       finds its index as the first position holding a value equal to it. NaN breaks both
       steps, so each row (2x2 path) or window (general path) also ORs an is-NaN flag and,
       when set, is redone by the exact scalar rule. */
    #define DL_MAX_TAKES(v, m) (((v) > (m)) | (((v) != (v)) & ((m) == (m))))
    #define DL_MAXPOOL(T, S)                                                                  \
    /* exact rule for one window [y0, y1) x [x0, x1) of src (the NaN fallback) */             \
    static inline T dl_maxwin_exact_##S(const T* src, Py_ssize_t w, Py_ssize_t y0,           \
            Py_ssize_t y1, Py_ssize_t x0, Py_ssize_t x1, int64_t* at) {                      \
        Py_ssize_t best = y0 * w + x0;                                                       \
        T m = src[best];                                                                     \
        for (Py_ssize_t a = y0; a < y1; a++)                                                 \
            for (Py_ssize_t e = x0; e < x1; e++) {                                           \
                T v = src[a * w + e];                                                        \
                if (DL_MAX_TAKES(v, m)) { m = v; best = a * w + e; }                         \
            }                                                                                \
        *at = best;                                                                          \
        return m;                                                                            \
    }                                                                                        \
    /* 2x2 windows of stride 2 of one output row: input rows r0, r1 (= r0 + w) of the plane,  \
       r0 at plane index k0; returns nonzero when a NaN was read (results then invalid) */     \
    static inline int dl_maxrow2_##S(const T* __restrict r0, const T* __restrict r1,         \
            Py_ssize_t ow, int64_t k0, int64_t w, T* __restrict yo, int64_t* __restrict ao) { \
        int nan = 0;                                                                         \
        for (Py_ssize_t j = 0; j < ow; j++) {                                                \
            T v0 = r0[2 * j], v1 = r0[2 * j + 1], v2 = r1[2 * j], v3 = r1[2 * j + 1];        \
            /* compare-selects keep the earlier value on ties; the index is built from     \
               the comparison bits (a select on it compiles to a mispredicting branch) */    \
            int64_t c01 = v1 > v0, c23 = v3 > v2;                                            \
            T m01 = v1 > v0 ? v1 : v0;                                                       \
            T m23 = v3 > v2 ? v3 : v2;                                                       \
            int64_t c = m23 > m01;                                                           \
            yo[j] = m23 > m01 ? m23 : m01;                                                   \
            ao[j] = k0 + 2 * j + c01 + c * (w + c23 - c01);                                  \
            nan |= (v0 != v0) | (v1 != v1) | (v2 != v2) | (v3 != v3);                        \
        }                                                                                    \
        return nan;                                                                          \
    }                                                                                        \
    DL_CLONES_AVX2 static void dl_maxpool_##S(const T* __restrict x, Py_ssize_t planes,       \
            Py_ssize_t h, Py_ssize_t w, Py_ssize_t oh, Py_ssize_t ow, Py_ssize_t kh,          \
            Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t pt, Py_ssize_t pl,        \
            T* __restrict y, int64_t* __restrict am) {                                        \
        Py_ssize_t p, i, j, a, e;                                                            \
        if (kh == 2 && kw == 2 && sh == 2 && sw == 2 && pt == 0 && pl == 0) {                \
            for (p = 0; p < planes; p++) {                                                   \
                const T* src = x + p * h * w;                                                \
                for (i = 0; i < oh; i++) {                                                   \
                    T* yo = y + (p * oh + i) * ow;                                           \
                    int64_t* ao = am + (p * oh + i) * ow;                                    \
                    if (dl_maxrow2_##S(src + 2 * i * w, src + (2 * i + 1) * w, ow, 2 * i * w, \
                                       w, yo, ao))                                           \
                        for (j = 0; j < ow; j++)                                             \
                            yo[j] = dl_maxwin_exact_##S(src, w, 2 * i, 2 * i + 2, 2 * j,     \
                                                        2 * j + 2, ao + j);                  \
                }                                                                            \
            }                                                                                \
            return;                                                                          \
        }                                                                                    \
        for (p = 0; p < planes; p++) {                                                       \
            const T* src = x + p * h * w;                                                    \
            T* yo = y + p * oh * ow;                                                         \
            int64_t* ao = am + p * oh * ow;                                                  \
            for (i = 0; i < oh; i++) {                                                       \
                Py_ssize_t y0 = i * sh - pt, y1 = y0 + kh;                                   \
                y1 = y1 < h ? y1 : h;                                                        \
                y0 = y0 > 0 ? y0 : 0;                                                        \
                for (j = 0; j < ow; j++) {                                                   \
                    Py_ssize_t x0 = j * sw - pl, x1 = x0 + kw;                               \
                    x1 = x1 < w ? x1 : w;                                                    \
                    x0 = x0 > 0 ? x0 : 0;                                                    \
                    T m = src[y0 * w + x0];                                                  \
                    int nan = 0;                                                             \
                    for (a = y0; a < y1; a++) {                                              \
                        const T* r = src + a * w;                                            \
                        for (e = x0; e < x1; e++) {                                          \
                            T v = r[e];                                                      \
                            m = v > m ? v : m;                                               \
                            nan |= v != v;                                                   \
                        }                                                                    \
                    }                                                                        \
                    int64_t best = -1;                                                       \
                    if (nan) {                                                               \
                        m = dl_maxwin_exact_##S(src, w, y0, y1, x0, x1, &best);              \
                    } else {                                                                 \
                        for (a = y0; a < y1 && best < 0; a++) {                              \
                            const T* r = src + a * w;                                        \
                            for (e = x0; e < x1; e++)                                        \
                                if (r[e] == m) { best = a * w + e; break; }                  \
                        }                                                                    \
                    }                                                                        \
                    yo[i * ow + j] = m;                                                      \
                    ao[i * ow + j] = best;                                                   \
                }                                                                            \
            }                                                                                \
        }                                                                                    \
    }
    DL_MAXPOOL(float, f32)
    DL_MAXPOOL(double, f64)
    """
    void maxpool_f32 "dl_maxpool_f32"(const float* x, Py_ssize_t planes, Py_ssize_t h,
        Py_ssize_t w, Py_ssize_t oh, Py_ssize_t ow, Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh,
        Py_ssize_t sw, Py_ssize_t pt, Py_ssize_t pl, float* y, int64_t* am) nogil
    void maxpool_f64 "dl_maxpool_f64"(const double* x, Py_ssize_t planes, Py_ssize_t h,
        Py_ssize_t w, Py_ssize_t oh, Py_ssize_t ow, Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh,
        Py_ssize_t sw, Py_ssize_t pt, Py_ssize_t pl, double* y, int64_t* am) nogil


cdef void _max_fwd(const ConvGeom* g, const void* x, void* y, int64_t* am,
                   bint single) noexcept nogil:
    float_dispatch(single, maxpool_f32, maxpool_f64, x, g.n * g.c, g.h, g.w, g.oh, g.ow,
                   g.kh, g.kw, g.sh, g.sw, g.pt, g.pl, y, am)


cdef Py_ssize_t _max_bwd(Py_ssize_t planes, Py_ssize_t p_out, Py_ssize_t p_in,
                         const floating* dy, const int64_t* am, floating* dx) noexcept nogil:
    """dx := scatter of dy at the saved indices; returns the first bad index's position or -1."""
    cdef Py_ssize_t pl, k
    cdef int64_t idx
    for k in range(planes * p_in):
        dx[k] = 0
    for pl in range(planes):
        for k in range(p_out):
            idx = am[pl * p_out + k]
            if idx < 0 or idx >= p_in:
                return pl * p_out + k
            dx[pl * p_in + idx] += dy[pl * p_out + k]
    return -1


cdef void _avg(const ConvGeom* g, const floating* x, floating* y, bint include_pad,
               bint backward) noexcept nogil:
    """forward: y := window means of x; backward (x is dy, y is dx): dx := the adjoint."""
    cdef Py_ssize_t pl, i, j, a, e, y0, x0, y1, x1
    cdef Py_ssize_t p_in = g.h * g.w, p_out = g.oh * g.ow
    cdef floating s, inv
    if backward:
        for a in range(g.n * g.c * p_in):
            y[a] = 0
    for pl in range(g.n * g.c):
        for i in range(g.oh):
            y0 = i * g.sh - g.pt
            y1 = min(y0 + g.kh, g.h)
            y0 = max(y0, 0)
            for j in range(g.ow):
                x0 = j * g.sw - g.pl
                x1 = min(x0 + g.kw, g.w)
                x0 = max(x0, 0)
                inv = <floating>1 / <floating>(g.kh * g.kw if include_pad else (y1 - y0) * (x1 - x0))
                if backward:
                    s = x[pl * p_out + i * g.ow + j] * inv
                    for a in range(y0, y1):
                        for e in range(x0, x1):
                            y[pl * p_in + a * g.w + e] += s
                else:
                    s = 0
                    for a in range(y0, y1):
                        for e in range(x0, x1):
                            s = s + x[pl * p_in + a * g.w + e]
                    y[pl * p_out + i * g.ow + j] = s * inv


cdef cnp.ndarray _index_array(object a, str fn, str name, tuple shape, bint writable):
    if not isinstance(a, cnp.ndarray):
        raise TypeError(f"{fn}: argument '{name}' must be a numpy.ndarray of int64, got "
                        f"{received(a)}")
    cdef cnp.ndarray A = <cnp.ndarray>a
    if cnp.PyArray_TYPE(A) != cnp.NPY_INT64 or not cnp.PyArray_ISNOTSWAPPED(A):
        raise TypeError(f"{fn}: argument '{name}' has dtype {A.dtype.str}; expected int64 "
                        f"(native byte order)")
    check_layout(A, fn, name, writable)
    check_shape(A, shape, fn, name, "(the shape of the pooled output)")
    return A


def maxpool2d_forward(x, y, argmax, kernel, stride=None, padding=0):
    """y := window maxima of x (N, C, H, W); argmax (int64, shape of y) := their plane indices."""
    fn = "maxpool2d_forward"
    cdef cnp.ndarray X = check_float_array(x, fn, "x", 4, False)
    cdef cnp.ndarray Y = check_float_array(y, fn, "y", 4, True)
    check_same_dtype(Y, X, fn, "y", "x")
    cdef ConvGeom g = _geom(fn, X, kernel, stride, padding)
    check_shape(Y, (g.n, g.c, g.oh, g.ow), fn, "y", "(N, C, out height, out width)")
    cdef cnp.ndarray A = _index_array(argmax, fn, "argmax", (g.n, g.c, g.oh, g.ow), True)
    check_no_overlap(Y, X, fn, "y", "x", False)
    check_no_overlap(A, X, fn, "argmax", "x", False)
    check_no_overlap(A, Y, fn, "argmax", "y", False)
    cdef int64_t* ap = <int64_t*>cnp.PyArray_DATA(A)
    if g.h * g.w == 0:
        return y
    with nogil:
        _max_fwd(&g, data(X), data(Y), ap, is_float32(X))
    return y


cdef _max_backward(str fn, object dy, object argmax, object dx, bint global_):
    cdef cnp.ndarray DY = check_float_array(dy, fn, "dy", 2 if global_ else 4, False)
    cdef cnp.ndarray DX = check_float_array(dx, fn, "dx", 4, True)
    check_same_dtype(DX, DY, fn, "dx", "dy")
    cdef cnp.ndarray A = _index_array(argmax, fn, "argmax", (<object>DY).shape, False)
    if DX.shape[0] != DY.shape[0] or DX.shape[1] != DY.shape[1]:
        raise ValueError(f"{fn}: argument 'dx' has shape {(<object>DX).shape}; expected "
                         f"(N, C, H, W) with N, C those of dy {(<object>DY).shape}")
    check_no_overlap(DX, DY, fn, "dx", "dy", False)
    check_no_overlap(DX, A, fn, "dx", "argmax", False)
    cdef Py_ssize_t planes = DX.shape[0] * DX.shape[1], p_in = DX.shape[2] * DX.shape[3]
    cdef Py_ssize_t p_out = 1 if global_ else DY.shape[2] * DY.shape[3]
    cdef int64_t* ap = <int64_t*>cnp.PyArray_DATA(A)
    cdef Py_ssize_t bad
    with nogil:
        bad = float_dispatch_ssize(is_float32(DY), _max_bwd[float], _max_bwd[double],
                                   planes, p_out, p_in, data(DY), ap, data(DX))
    if bad >= 0:
        raise ValueError(f"{fn}: argument 'argmax' holds {ap[bad]} at flat position {bad}; expected "
                         f"an index in [0, {p_in}) (H*W of dx); dx is left partly written")
    return dx


def maxpool2d_backward(dy, argmax, dx):
    """dx (N, C, H, W) := dy (N, C, oh, ow) routed to the maxima saved by maxpool2d_forward."""
    return _max_backward("maxpool2d_backward", dy, argmax, dx, False)


def avgpool2d_forward(x, y, kernel, stride=None, padding=0, count_include_pad=False):
    """y := window means of x (see the module docstring for count_include_pad)."""
    fn = "avgpool2d_forward"
    cdef bint inc = check_flag(count_include_pad, fn, "count_include_pad")
    cdef cnp.ndarray X = check_float_array(x, fn, "x", 4, False)
    cdef cnp.ndarray Y = check_float_array(y, fn, "y", 4, True)
    check_same_dtype(Y, X, fn, "y", "x")
    cdef ConvGeom g = _geom(fn, X, kernel, stride, padding)
    check_shape(Y, (g.n, g.c, g.oh, g.ow), fn, "y", "(N, C, out height, out width)")
    check_no_overlap(Y, X, fn, "y", "x", False)
    _run_avg(&g, X, Y, inc, False)
    return y


def avgpool2d_backward(dy, dx, kernel, stride=None, padding=0, count_include_pad=False):
    """dx (N, C, H, W) := the gradient of avgpool2d_forward given dy (N, C, oh, ow)."""
    fn = "avgpool2d_backward"
    cdef bint inc = check_flag(count_include_pad, fn, "count_include_pad")
    cdef cnp.ndarray DY = check_float_array(dy, fn, "dy", 4, False)
    cdef cnp.ndarray DX = check_float_array(dx, fn, "dx", 4, True)
    check_same_dtype(DX, DY, fn, "dx", "dy")
    cdef ConvGeom g = _geom(fn, DX, kernel, stride, padding)
    check_shape(DY, (g.n, g.c, g.oh, g.ow), fn, "dy", "(the pooled shape of dx)")
    check_no_overlap(DX, DY, fn, "dx", "dy", False)
    _run_avg(&g, DY, DX, inc, True)
    return dx


cdef _run_avg(const ConvGeom* g, cnp.ndarray src, cnp.ndarray dst, bint inc, bint backward):
    if g.h * g.w == 0:
        return
    with nogil:
        float_dispatch(is_float32(src), _avg[float], _avg[double], g, data(src), data(dst), inc,
                       backward)


cdef ConvGeom _global_geom(str fn, cnp.ndarray X) except *:
    cdef ConvGeom g
    g.n, g.c, g.h, g.w = X.shape[0], X.shape[1], X.shape[2], X.shape[3]
    if g.h * g.w == 0:
        raise ValueError(f"{fn}: argument 'x' has shape {(<object>X).shape}; a global pool needs "
                         f"H, W >= 1")
    g.kh, g.kw, g.sh, g.sw, g.dh, g.dw = g.h, g.w, 1, 1, 1, 1
    g.pt = g.pb = g.pl = g.pr = 0
    g.oh = g.ow = 1
    g.f, g.groups = g.c, 1
    return g


def global_avgpool_forward(x, y):
    """y (N, C) := the mean of each (H, W) plane of x (N, C, H, W)."""
    fn = "global_avgpool_forward"
    cdef cnp.ndarray X = check_float_array(x, fn, "x", 4, False)
    cdef cnp.ndarray Y = check_float_array(y, fn, "y", 2, True)
    check_same_dtype(Y, X, fn, "y", "x")
    cdef ConvGeom g = _global_geom(fn, X)
    check_shape(Y, (g.n, g.c), fn, "y", "(N, C)")
    check_no_overlap(Y, X, fn, "y", "x", False)
    _run_avg(&g, X, Y, False, False)
    return y


def global_avgpool_backward(dy, dx):
    """dx (N, C, H, W) := dy (N, C) / (H*W) spread over each plane."""
    fn = "global_avgpool_backward"
    cdef cnp.ndarray DY = check_float_array(dy, fn, "dy", 2, False)
    cdef cnp.ndarray DX = check_float_array(dx, fn, "dx", 4, True)
    check_same_dtype(DX, DY, fn, "dx", "dy")
    cdef ConvGeom g = _global_geom(fn, DX)
    check_shape(DY, (g.n, g.c), fn, "dy", "(N, C) of dx")
    check_no_overlap(DX, DY, fn, "dx", "dy", False)
    _run_avg(&g, DY, DX, False, True)
    return dx


def global_maxpool_forward(x, y, argmax):
    """y (N, C) := the maximum of each (H, W) plane of x; argmax (N, C) int64 := its index."""
    fn = "global_maxpool_forward"
    cdef cnp.ndarray X = check_float_array(x, fn, "x", 4, False)
    cdef cnp.ndarray Y = check_float_array(y, fn, "y", 2, True)
    check_same_dtype(Y, X, fn, "y", "x")
    cdef ConvGeom g = _global_geom(fn, X)
    check_shape(Y, (g.n, g.c), fn, "y", "(N, C)")
    cdef cnp.ndarray A = _index_array(argmax, fn, "argmax", (g.n, g.c), True)
    check_no_overlap(Y, X, fn, "y", "x", False)
    check_no_overlap(A, X, fn, "argmax", "x", False)
    check_no_overlap(A, Y, fn, "argmax", "y", False)
    cdef int64_t* ap = <int64_t*>cnp.PyArray_DATA(A)
    with nogil:
        _max_fwd(&g, data(X), data(Y), ap, is_float32(X))
    return y


def global_maxpool_backward(dy, argmax, dx):
    """dx (N, C, H, W) := dy (N, C) at the maxima saved by global_maxpool_forward, 0 elsewhere."""
    return _max_backward("global_maxpool_backward", dy, argmax, dx, True)


# ---- the forward cores kernels/chain.pyx runs (see cores.pxd)
from cores cimport maxpool_forward_t, avgpool_f32_t, avgpool_f64_t, core_capsule

cdef maxpool_forward_t _core_max = _max_fwd
cdef avgpool_f32_t _core_avg_f32 = _avg[float]
cdef avgpool_f64_t _core_avg_f64 = _avg[double]
CORES = {"maxpool_forward": core_capsule(<void*>_core_max),
         "avgpool_f32": core_capsule(<void*>_core_avg_f32),
         "avgpool_f64": core_capsule(<void*>_core_avg_f64)}
