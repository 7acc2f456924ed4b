# distutils: extra_compile_args = -fno-trapping-math
"""2-D convolution kernels, NCHW, im2col + GEMM: Y := f(conv(X, W) + b) and its backward pass.

x (N, C, H, W), w (F, C/groups, kh, kw), b (F,) or None, y (N, F, oh, ow) with
oh = (H + pt + pb - dh*(kh-1) - 1) // sh + 1 (likewise ow). Per (sample, group) the input is
unrolled into the caller's workspace ``col`` (conv2d_workspace_size elements) and multiplied by
the group's weights through blas.pxd; the bias and the activation are applied in the same pass
over each freshly computed output block. No allocation per call; the GIL is released for the work.
Arrays are C-contiguous float32 or float64, one dtype per call.

A workspace sized with ``batch_block=B`` > 1 runs B samples per GEMM (col (k, B*oh*ow), the
weight gradient summed over the block in one GEMM; dW then differs from the per-sample sums in
the last bits). Measured on this machine (OpenBLAS 0.3.31 SkylakeX kernels, one thread, the
MNIST recipe's 16->32 3x3 convolution on 14x14 maps, batch 64) it does not pay: OpenBLAS's
small-matrix kernels run the per-sample 32x196x144 sgemm at ~99 GFLOP/s (the core's peak), the
blocked 32x3136x144 at ~84, so the runtime uses B = 1. The option stays for BLAS builds and
shapes where one wide GEMM wins.
"""
cimport numpy as cnp
from cython cimport floating

from _common cimport (check_float_array, check_same_dtype, check_shape, check_no_overlap,
                      check_blas_dim, check_finite_float, check_flag, float_dispatch,
                      is_float32, data, data_or_null)
from blas cimport gemm_rm
from activations cimport act_code, act_forward_span, ACT_LINEAR, ACT_SOFTMAX
from conv cimport (ConvGeom, im2col, im2col_ld, col2im_add, col2im_add_ld, parse_pair,
                   parse_padding, out_size)

cnp.import_array()


cdef extern from *:
    """
    /* sum of a[0..n) in 16 lanes (the bias gradient's sums over each output plane): one running
       total is a chain of dependent additions the compiler may not reorder, ~4 cycles per
       value; it took ~1 ms of the recipe's first convolution backward (64x16x28x28). */
    #define DL_CONV_SUM(T, S)                                                                 \
    DL_CLONES_AVX2 static T dl_conv_sum_##S(const T* __restrict a, Py_ssize_t n) {            \
        T acc[16] = {0};                                                                      \
        Py_ssize_t k = 0;                                                                     \
        for (; k + 16 <= n; k += 16)                                                          \
            for (int l = 0; l < 16; l++) acc[l] += a[k + l];                                  \
        for (int l = 0; k < n; k++, l++) acc[l] += a[k];                                      \
        for (int h = 8; h >= 1; h /= 2)                                                       \
            for (int l = 0; l < h; l++) acc[l] += acc[l + h];                                 \
        return acc[0];                                                                        \
    }
    DL_CONV_SUM(float, f32)
    DL_CONV_SUM(double, f64)
    """
    float conv_sum_f32 "dl_conv_sum_f32"(const float* a, Py_ssize_t n) nogil
    double conv_sum_f64 "dl_conv_sum_f64"(const double* a, Py_ssize_t n) nogil


cdef inline floating plane_sum(const floating* a, Py_ssize_t n) noexcept nogil:
    if floating is float:
        return conv_sum_f32(a, n)
    else:
        return conv_sum_f64(a, n)


cdef void _forward(const ConvGeom* g, int act, const floating* x, const floating* w,
                   const floating* b, floating* y, floating* col, Py_ssize_t nb,
                   floating alpha) noexcept nogil:
    """nb == 1: one GEMM per (sample, group) straight into y. nb > 1: per block of nb samples
    and group, col (k, m*p) holds the block's samples side by side and one GEMM writes out
    (fg, m*p) after it in the workspace; the bias + activation pass moves each row into y."""
    cdef Py_ssize_t cg = g.c // g.groups, fg = g.f // g.groups
    cdef Py_ssize_t k = cg * g.kh * g.kw, p = g.oh * g.ow
    cdef Py_ssize_t s, s0, m, gi, ch, j
    cdef floating* yb
    cdef floating* out
    cdef const floating* src
    cdef floating bv
    if nb <= 1:
        for s in range(g.n):
            for gi in range(g.groups):
                im2col(x + (s * g.c + gi * cg) * g.h * g.w, g, cg, col)
                yb = y + (s * g.f + gi * fg) * p
                gemm_rm(False, False, <int>fg, <int>p, <int>k, <floating>1, w + gi * fg * k, col,
                        <floating>0, yb)
                # bias + activation while the block is still in cache
                for ch in range(fg):
                    if b != NULL:
                        bv = b[gi * fg + ch]
                        for j in range(p):
                            yb[ch * p + j] += bv
                    if act != ACT_LINEAR:
                        act_forward_span(act, yb + ch * p, yb + ch * p, <floating*>NULL, p, alpha)
        return
    out = col + k * nb * p
    s0 = 0
    while s0 < g.n:
        m = min(nb, g.n - s0)
        for gi in range(g.groups):
            for s in range(m):
                im2col_ld(x + ((s0 + s) * g.c + gi * cg) * g.h * g.w, g, cg, col + s * p, m * p)
            gemm_rm(False, False, <int>fg, <int>(m * p), <int>k, <floating>1, w + gi * fg * k,
                    col, <floating>0, out)
            for ch in range(fg):
                bv = b[gi * fg + ch] if b != NULL else 0
                for s in range(m):
                    src = out + (ch * m + s) * p
                    yb = y + ((s0 + s) * g.f + gi * fg + ch) * p
                    for j in range(p):
                        yb[j] = src[j] + bv
                    if act != ACT_LINEAR:
                        act_forward_span(act, yb, yb, <floating*>NULL, p, alpha)
        s0 += m


cdef void _backward(const ConvGeom* g, const floating* x, const floating* w, const floating* dz,
                    floating* dx, floating* dw, floating* db, floating* col, Py_ssize_t nb,
                    bint accumulate) noexcept nogil:
    """nb == 1: per (sample, group) GEMMs. nb > 1: per block of nb samples and group, dz's
    rows are gathered into dzb (fg, m*p) (db summed on the way), the block's im2col (k, m*p)
    gives dW_g += dzb col^T in one GEMM of inner size m*p, and dcol = W_g^T dzb in one GEMM,
    scattered back per sample."""
    cdef Py_ssize_t cg = g.c // g.groups, fg = g.f // g.groups
    cdef Py_ssize_t k = cg * g.kh * g.kw, p = g.oh * g.ow
    cdef Py_ssize_t s, s0, m, gi, ch, j
    cdef const floating* zb
    cdef floating* dzb
    cdef floating* dst
    if not accumulate:
        for j in range(g.f * k):
            dw[j] = 0
        if db != NULL:
            for j in range(g.f):
                db[j] = 0
    if dx != NULL:
        for j in range(g.n * g.c * g.h * g.w):
            dx[j] = 0
    if nb <= 1:
        for s in range(g.n):
            for gi in range(g.groups):
                zb = dz + (s * g.f + gi * fg) * p
                if db != NULL:
                    for ch in range(fg):
                        db[gi * fg + ch] += plane_sum(zb + ch * p, p)
                im2col(x + (s * g.c + gi * cg) * g.h * g.w, g, cg, col)
                # dW_g (fg, k) += dZ_g (fg, p) col^T (p, k)
                gemm_rm(False, True, <int>fg, <int>k, <int>p, <floating>1, zb, col, <floating>1,
                        dw + gi * fg * k)
                if dx != NULL:
                    # dcol (k, p) = W_g^T (k, fg) dZ_g (fg, p), scattered back into dx
                    gemm_rm(True, False, <int>k, <int>p, <int>fg, <floating>1, w + gi * fg * k,
                            zb, <floating>0, col)
                    col2im_add(col, g, cg, dx + (s * g.c + gi * cg) * g.h * g.w)
        return
    dzb = col + k * nb * p
    s0 = 0
    while s0 < g.n:
        m = min(nb, g.n - s0)
        for gi in range(g.groups):
            for ch in range(fg):
                for s in range(m):
                    zb = dz + ((s0 + s) * g.f + gi * fg + ch) * p
                    dst = dzb + (ch * m + s) * p
                    for j in range(p):
                        dst[j] = zb[j]
                    if db != NULL:
                        db[gi * fg + ch] += plane_sum(zb, p)
            for s in range(m):
                im2col_ld(x + ((s0 + s) * g.c + gi * cg) * g.h * g.w, g, cg, col + s * p, m * p)
            # dW_g (fg, k) += dzb (fg, m*p) col^T (m*p, k)
            gemm_rm(False, True, <int>fg, <int>k, <int>(m * p), <floating>1, dzb, col,
                    <floating>1, dw + gi * fg * k)
            if dx != NULL:
                # dcol (k, m*p) = W_g^T (k, fg) dzb (fg, m*p), scattered back sample by sample
                gemm_rm(True, False, <int>k, <int>(m * p), <int>fg, <floating>1, w + gi * fg * k,
                        dzb, <floating>0, col)
                for s in range(m):
                    col2im_add_ld(col + s * p, g, cg, dx + ((s0 + s) * g.c + gi * cg) * g.h * g.w,
                                  m * p)
        s0 += m


cdef ConvGeom _geom(str fn, cnp.ndarray X, cnp.ndarray W, object stride, object padding,
                    object dilation, object groups) except *:
    cdef ConvGeom g
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
        raise TypeError(f"{fn}: argument 'groups' must be an int >= 1, got {groups!r}") \
            if not isinstance(groups, int) or isinstance(groups, bool) else \
            ValueError(f"{fn}: argument 'groups' must be an int >= 1, got {groups!r}")
    g.sh, g.sw = parse_pair(stride, fn, "stride", 1)
    g.dh, g.dw = parse_pair(dilation, fn, "dilation", 1)
    g.pt, g.pb, g.pl, g.pr = parse_padding(padding, fn)
    g.n, g.c, g.h, g.w = X.shape[0], X.shape[1], X.shape[2], X.shape[3]
    g.f, g.kh, g.kw = W.shape[0], W.shape[2], W.shape[3]
    if groups > max(g.c, 1):
        raise ValueError(f"{fn}: argument 'groups' = {groups} exceeds the {g.c} input channels")
    g.groups = groups
    if g.c % g.groups or g.f % g.groups:
        raise ValueError(f"{fn}: argument 'groups' = {groups} must divide the input channels "
                         f"({g.c}) and the filters ({g.f})")
    if W.shape[1] != g.c // g.groups:
        raise ValueError(f"{fn}: argument 'w' has shape {(<object>W).shape}; expected "
                         f"({g.f}, {g.c // g.groups}, kh, kw): input channels / groups")
    if g.kh < 1 or g.kw < 1 or g.f < 1:
        raise ValueError(f"{fn}: argument 'w' has shape {(<object>W).shape}; filters and kernel "
                         f"extents must be >= 1")
    g.oh = out_size(g.h, g.pt + g.pb, g.kh, g.sh, g.dh, fn, "vertical")
    g.ow = out_size(g.w, g.pl + g.pr, g.kw, g.sw, g.dw, fn, "horizontal")
    check_blas_dim(g.oh * g.ow, fn, "output pixels")
    check_blas_dim(g.c // g.groups * g.kh * g.kw, fn, "patch size")
    return g


cdef tuple _dims(object shape, str fn, str name):
    """A 4-tuple of ints in [0, 2**31) (an array shape)."""
    if not isinstance(shape, tuple) or len(shape) != 4:
        raise TypeError(f"{fn}: argument '{name}' must be a tuple of 4 ints, got {shape!r}")
    for v in shape:
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < 2**31:
            raise ValueError(f"{fn}: argument '{name}' must hold 4 ints in [0, 2**31), got {shape!r}")
    return shape


def conv2d_output_shape(x_shape, w_shape, stride=1, padding=0, dilation=1):
    """(N, F, oh, ow) for an input of x_shape (N, C, H, W) and weights w_shape (F, Cg, kh, kw)."""
    fn = "conv2d_output_shape"
    n, c, h, w = _dims(x_shape, fn, "x_shape")
    f, cg, kh, kw = _dims(w_shape, fn, "w_shape")
    if kh < 1 or kw < 1:
        raise ValueError(f"{fn}: argument 'w_shape' = {w_shape!r}: kernel extents must be >= 1")
    sh, sw = parse_pair(stride, fn, "stride", 1)
    dh, dw = parse_pair(dilation, fn, "dilation", 1)
    pt, pb, pl, pr = parse_padding(padding, fn)
    return (n, f, out_size(h, pt + pb, kh, sh, dh, fn, "vertical"),
            out_size(w, pl + pr, kw, sw, dw, fn, "horizontal"))


def conv2d_workspace_size(x_shape, w_shape, stride=1, padding=0, dilation=1, groups=1,
                          batch_block=1):
    """Elements of the ``col`` workspace conv2d_forward/backward need to run ``batch_block``
    samples per GEMM: (C/groups)*kh*kw*oh*ow for 1 (a GEMM per sample), batch_block*oh*ow*
    ((C/groups)*kh*kw + F/groups) above (the block's unrolled input and its GEMM output)."""
    fn = "conv2d_workspace_size"
    n, f, oh, ow = conv2d_output_shape(x_shape, w_shape, stride, padding, dilation)
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
        raise ValueError(f"{fn}: argument 'groups' must be an int >= 1, got {groups!r}")
    if isinstance(batch_block, bool) or not isinstance(batch_block, int) or not 1 <= batch_block <= 2**20:
        raise ValueError(f"{fn}: argument 'batch_block' must be an int in [1, 2**20], got "
                         f"{batch_block!r}")
    k = x_shape[1] // groups * w_shape[2] * w_shape[3]
    if batch_block == 1:
        return k * oh * ow
    return batch_block * oh * ow * (k + f // groups)


cdef _check_col(str fn, object col, cnp.ndarray X, const ConvGeom* g, list others,
                Py_ssize_t* nb):
    """The workspace, and in nb the samples per GEMM it holds (see conv2d_workspace_size):
    as many as fit, at most N; 1 when it holds fewer than two."""
    cdef cnp.ndarray C = check_float_array(col, fn, "col", -1, True)
    check_same_dtype(C, X, fn, "col", "x")
    cdef Py_ssize_t k = g.c // g.groups * g.kh * g.kw, p = g.oh * g.ow
    cdef Py_ssize_t need = k * p, size = cnp.PyArray_SIZE(C)
    if size < need:
        raise ValueError(f"{fn}: argument 'col' has {size} elements; the "
                         f"workspace needs {need} (conv2d_workspace_size)")
    for name, arr in others:
        if arr is not None:
            check_no_overlap(C, <cnp.ndarray>arr, fn, "col", name, False)
    cdef Py_ssize_t per = p * (k + g.f // g.groups)
    nb[0] = 1
    if per > 0 and g.n > 1 and size // per >= 2:
        nb[0] = min(g.n, size // per)
        check_blas_dim(nb[0] * p, fn, "block columns (batch_block * output pixels)")
    return C


def conv2d_forward(x, w, b, y, col, stride=1, padding=0, dilation=1, groups=1,
                   activation="linear", alpha=0.0):
    """y := f(conv2d(x, w) + b); see the module docstring for shapes. padding: int,
    (vertical, horizontal) or (top, bottom, left, right). Any activation but softmax.
    col: workspace of at least conv2d_workspace_size(...) elements, any shape."""
    fn = "conv2d_forward"
    cdef double al = check_finite_float(alpha, fn, "alpha")
    cdef int act = act_code(activation, fn, al)
    if act == ACT_SOFTMAX:
        raise ValueError(f"{fn}: activation 'softmax' is not fused into a convolution; apply it "
                         f"with activation_forward on the output")
    cdef cnp.ndarray X = check_float_array(x, fn, "x", 4, False)
    cdef cnp.ndarray W = check_float_array(w, fn, "w", 4, False)
    cdef cnp.ndarray Y = check_float_array(y, fn, "y", 4, True)
    cdef cnp.ndarray B = None
    check_same_dtype(W, X, fn, "w", "x")
    check_same_dtype(Y, X, fn, "y", "x")
    cdef ConvGeom g = _geom(fn, X, W, stride, padding, dilation, groups)
    check_shape(Y, (g.n, g.f, g.oh, g.ow), fn, "y", "(N, filters, out height, out width)")
    if b is not None:
        B = check_float_array(b, fn, "b", 1, False)
        check_same_dtype(B, X, fn, "b", "x")
        check_shape(B, (g.f,), fn, "b", "(filters,)")
        check_no_overlap(Y, B, fn, "y", "b", False)
    check_no_overlap(Y, X, fn, "y", "x", False)
    check_no_overlap(Y, W, fn, "y", "w", False)
    cdef Py_ssize_t nb
    cdef cnp.ndarray C = _check_col(fn, col, X, &g, [("x", X), ("w", W), ("b", B), ("y", Y)], &nb)
    cdef void* bp = data_or_null(B)
    if g.n == 0:
        return y
    with nogil:
        float_dispatch(is_float32(X), _forward[float], _forward[double],
                       &g, act, data(X), data(W), bp, data(Y), data(C), nb, al)
    return y


def conv2d_backward(x, w, dz, dx, dw, db, col, stride=1, padding=0, dilation=1, groups=1,
                    accumulate=False):
    """Gradients of y = conv2d(x, w) + b given dz = dL/dy (before the activation: apply
    activation_backward first). dx (shape of x) or None is overwritten; dw (shape of w) and
    db (F,) or None are overwritten, or added to when ``accumulate``."""
    fn = "conv2d_backward"
    cdef bint acc = check_flag(accumulate, fn, "accumulate")
    cdef cnp.ndarray X = check_float_array(x, fn, "x", 4, False)
    cdef cnp.ndarray W = check_float_array(w, fn, "w", 4, False)
    cdef cnp.ndarray DZ = check_float_array(dz, fn, "dz", 4, False)
    cdef cnp.ndarray DW = check_float_array(dw, fn, "dw", 4, True)
    cdef cnp.ndarray DX = None, DB = None
    check_same_dtype(W, X, fn, "w", "x")
    check_same_dtype(DZ, X, fn, "dz", "x")
    check_same_dtype(DW, X, fn, "dw", "x")
    cdef ConvGeom g = _geom(fn, X, W, stride, padding, dilation, groups)
    check_shape(DZ, (g.n, g.f, g.oh, g.ow), fn, "dz", "(N, filters, out height, out width)")
    check_shape(DW, (<object>W).shape, fn, "dw", "(the shape of w)")
    outs = [("dw", DW)]
    if dx is not None:
        DX = check_float_array(dx, fn, "dx", 4, True)
        check_same_dtype(DX, X, fn, "dx", "x")
        check_shape(DX, (<object>X).shape, fn, "dx", "(the shape of x)")
        outs.append(("dx", DX))
    if db is not None:
        DB = check_float_array(db, fn, "db", 1, True)
        check_same_dtype(DB, X, fn, "db", "x")
        check_shape(DB, (g.f,), fn, "db", "(filters,)")
        outs.append(("db", DB))
    ins = [("x", X), ("w", W), ("dz", DZ)]
    for i, (oname, o) in enumerate(outs):
        for iname, a in ins + outs[:i]:
            check_no_overlap(<cnp.ndarray>o, <cnp.ndarray>a, fn, oname, iname, False)
    cdef Py_ssize_t nb
    cdef cnp.ndarray C = _check_col(fn, col, X, &g, ins + outs, &nb)
    cdef void* dxp = data_or_null(DX)
    cdef void* dbp = data_or_null(DB)
    with nogil:
        float_dispatch(is_float32(X), _backward[float], _backward[double],
                       &g, data(X), data(W), data(DZ), dxp, data(DW), dbp, data(C), nb, acc)
    return dx, dw, db


# ---- the forward core kernels/chain.pyx runs (see cores.pxd)
from cores cimport conv2d_forward_f32_t, conv2d_forward_f64_t, core_capsule

cdef conv2d_forward_f32_t _core_f32 = _forward[float]
cdef conv2d_forward_f64_t _core_f64 = _forward[double]
CORES = {"conv2d_forward_f32": core_capsule(<void*>_core_f32),
         "conv2d_forward_f64": core_capsule(<void*>_core_f64)}
