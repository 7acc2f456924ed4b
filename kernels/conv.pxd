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


cdef inline void col_span(const ConvGeom* g, Py_ssize_t j, Py_ssize_t* lo,
                          Py_ssize_t* hi) noexcept nogil:
    """The output columns xo in [lo, hi) whose input column xo*sw + j*dw - pl lies in [0, W)."""
    cdef Py_ssize_t a = g.pl - j * g.dw           # xo*sw >= a  and  xo*sw < W + a
    cdef Py_ssize_t b = g.w + a
    cdef Py_ssize_t l = 0 if a <= 0 else (a + g.sw - 1) // g.sw
    cdef Py_ssize_t h = 0 if b <= 0 else (b + g.sw - 1) // g.sw
    if h > g.ow:
        h = g.ow
    if l > h:
        l = h
    lo[0] = l
    hi[0] = h


cdef inline void im2col_ld(const floating* x, const ConvGeom* g, Py_ssize_t cg, floating* col,
                           Py_ssize_t ld) noexcept nogil:
    """col[r, :oh*ow] := the unrolled rows of x (cg, H, W), row r at col + r*ld (ld >= oh*ow: a
    block of samples side by side). Each output row is a zeroed head and tail around one
    contiguous (stride 1) or strided copy: no test per element."""
    cdef Py_ssize_t c, i, j, y, xo, iy, lo, hi, off, r = 0
    cdef Py_ssize_t ow = g.ow, oh = g.oh, W = g.w, H = g.h, sw = g.sw
    cdef floating* dst
    cdef const floating* src
    cdef const floating* row
    for c in range(cg):
        src = x + c * H * W
        for i in range(g.kh):
            for j in range(g.kw):
                col_span(g, j, &lo, &hi)
                off = j * g.dw - g.pl
                dst = col + r * ld
                r += 1
                for y in range(oh):
                    iy = y * g.sh + i * g.dh - g.pt
                    if iy < 0 or iy >= H:
                        for xo in range(ow):
                            dst[xo] = 0
                    else:
                        row = src + iy * W + off
                        for xo in range(lo):
                            dst[xo] = 0
                        if sw == 1:
                            for xo in range(lo, hi):
                                dst[xo] = row[xo]
                        else:
                            for xo in range(lo, hi):
                                dst[xo] = row[xo * sw]
                        for xo in range(hi, ow):
                            dst[xo] = 0
                    dst += ow


cdef inline void im2col(const floating* x, const ConvGeom* g, Py_ssize_t cg,
                        floating* col) noexcept nogil:
    """col (cg*kh*kw, oh*ow) := the unrolled x (cg, H, W) (see the top of this file)."""
    im2col_ld(x, g, cg, col, g.oh * g.ow)


cdef inline void col2im_add_ld(const floating* col, const ConvGeom* g, Py_ssize_t cg,
                               floating* x, Py_ssize_t ld) noexcept nogil:
    """x (cg, H, W) += the scatter of col's rows (row r at col + r*ld): the adjoint of
    im2col_ld, in the same order of additions as an element-by-element scatter."""
    cdef Py_ssize_t c, i, j, y, xo, iy, lo, hi, off, r = 0
    cdef Py_ssize_t ow = g.ow, oh = g.oh, W = g.w, H = g.h, sw = g.sw
    cdef const floating* src
    cdef floating* dst
    cdef floating* row
    for c in range(cg):
        dst = x + c * H * W
        for i in range(g.kh):
            for j in range(g.kw):
                col_span(g, j, &lo, &hi)
                off = j * g.dw - g.pl
                src = col + r * ld
                r += 1
                for y in range(oh):
                    iy = y * g.sh + i * g.dh - g.pt
                    if 0 <= iy < H:
                        row = dst + iy * W + off
                        if sw == 1:
                            for xo in range(lo, hi):
                                row[xo] += src[xo]
                        else:
                            for xo in range(lo, hi):
                                row[xo * sw] += src[xo]
                    src += ow


cdef inline void col2im_add(const floating* col, const ConvGeom* g, Py_ssize_t cg,
                            floating* x) noexcept nogil:
    """x (cg, H, W) += the scatter of col (the adjoint of im2col)."""
    col2im_add_ld(col, g, cg, x, g.oh * g.ow)


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
