# 2-D convolution, NCHW: im2col / col2im cores, inline so that a later layer or chain module can
# cimport them without a run-time import between extensions (see _common.pxd).
#
# One sample's group of channels x (cg, H, W) unrolls into col (cg*kh*kw, oh*ow): row
# (c, i, j) holds x[c, i*dh + y*sh - pt, j*dw + x*sw - pl] for the output pixel (y, x), 0 where
# that falls in the padding. A convolution is then one GEMM per (sample, group).
from cython cimport floating


ctypedef struct ConvGeom:
    Py_ssize_t n, c, h, w          # input (N, C, H, W)
    Py_ssize_t f, kh, kw           # weights (F, C/groups, kh, kw)
    Py_ssize_t oh, ow              # output (N, F, oh, ow)
    Py_ssize_t sh, sw, dh, dw      # stride, dilation
    Py_ssize_t pt, pb, pl, pr      # padding top, bottom, left, right
    Py_ssize_t groups


cdef inline void im2col(const floating* x, const ConvGeom* g, Py_ssize_t cg,
                        floating* col) noexcept nogil:
    cdef Py_ssize_t c, i, j, y, xo, iy, ix, r = 0
    cdef Py_ssize_t p = g.oh * g.ow
    cdef floating* dst
    cdef const floating* src
    for c in range(cg):
        src = x + c * g.h * g.w
        for i in range(g.kh):
            for j in range(g.kw):
                dst = col + r * p
                r += 1
                for y in range(g.oh):
                    iy = y * g.sh + i * g.dh - g.pt
                    if iy < 0 or iy >= g.h:
                        for xo in range(g.ow):
                            dst[y * g.ow + xo] = 0
                        continue
                    if g.sw == 1:
                        for xo in range(g.ow):
                            ix = xo + j * g.dw - g.pl
                            dst[y * g.ow + xo] = src[iy * g.w + ix] if 0 <= ix < g.w else 0
                    else:
                        for xo in range(g.ow):
                            ix = xo * g.sw + j * g.dw - g.pl
                            dst[y * g.ow + xo] = src[iy * g.w + ix] if 0 <= ix < g.w else 0


cdef inline void col2im_add(const floating* col, const ConvGeom* g, Py_ssize_t cg,
                            floating* x) noexcept nogil:
    """x (cg, H, W) += the scatter of col (the adjoint of im2col)."""
    cdef Py_ssize_t c, i, j, y, xo, iy, ix, r = 0
    cdef Py_ssize_t p = g.oh * g.ow
    cdef const floating* src
    cdef floating* dst
    for c in range(cg):
        dst = x + c * g.h * g.w
        for i in range(g.kh):
            for j in range(g.kw):
                src = col + r * p
                r += 1
                for y in range(g.oh):
                    iy = y * g.sh + i * g.dh - g.pt
                    if iy < 0 or iy >= g.h:
                        continue
                    for xo in range(g.ow):
                        ix = xo * g.sw + j * g.dw - g.pl
                        if 0 <= ix < g.w:
                            dst[iy * g.w + ix] += src[y * g.ow + xo]


# Geometry arguments, shared by conv.pyx and pool.pyx (with the GIL, once per call).
cdef inline tuple parse_pair(object v, str fn, str name, Py_ssize_t low):
    """An int or a pair of ints (vertical, horizontal), each >= low."""
    items = (v, v) if not isinstance(v, (tuple, list)) else tuple(v)
    if len(items) != 2:
        raise ValueError(f"{fn}: argument '{name}' must be an int or a pair of ints, got {v!r}")
    for e in items:
        if isinstance(e, bool) or not isinstance(e, int):
            raise TypeError(f"{fn}: argument '{name}' must be an int or a pair of ints, got {v!r}")
        if e < low or e > 1 << 30:
            raise ValueError(f"{fn}: argument '{name}' must be in [{low}, 2**30], got {v!r}")
    return items


cdef inline tuple parse_padding(object v, str fn):
    """padding: an int, (vertical, horizontal) or (top, bottom, left, right), each >= 0."""
    if isinstance(v, (tuple, list)) and len(v) == 4:
        t, b = parse_pair((v[0], v[1]), fn, "padding", 0)
        l, r = parse_pair((v[2], v[3]), fn, "padding", 0)
        return (t, b, l, r)
    ph, pw = parse_pair(v, fn, "padding", 0)
    return (ph, ph, pw, pw)


cdef inline Py_ssize_t out_size(Py_ssize_t size, Py_ssize_t pad, Py_ssize_t k, Py_ssize_t stride,
                                Py_ssize_t dil, str fn, str what) except -1:
    """Output extent of a window k (dilation dil) sliding with ``stride`` over size + pad."""
    cdef Py_ssize_t span = dil * (k - 1) + 1
    if size + pad < span:
        raise ValueError(f"{fn}: the {what} window ({span} with dilation) is larger than the padded "
                         f"input ({size} + padding {pad}); no output position")
    return (size + pad - span) // stride + 1
