"""conv2d kernels against a NumPy reference with explicit loops, and their backward passes
against 4th-order central finite differences in float64."""
import numpy as np
import pytest

from dlrun.kernels import conv
from helpers import DTYPES, numeric_grad, tol

# (N, C, H, W, F, kh, kw, stride, padding, dilation, groups)
CASES = [
    (1, 1, 5, 5, 2, 3, 3, 1, 1, 1, 1),
    (2, 3, 7, 6, 4, 3, 2, (2, 1), (1, 0, 2, 1), 1, 1),
    (1, 4, 6, 7, 6, 3, 3, 1, (2, 1), (2, 1), 2),
    (3, 2, 5, 5, 2, 1, 1, 2, 0, 1, 2),
    (2, 6, 5, 4, 3, 2, 3, (1, 2), 1, (1, 2), 3),
]


def assert_grad(analytic, numeric):
    # relative where the gradient is not ~0; pixels no window reaches have an exact 0 analytic
    # gradient and finite-difference rounding noise (~1e-12)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)


def pads(padding):
    if isinstance(padding, int):
        return (padding,) * 4
    if len(padding) == 2:
        return (padding[0], padding[0], padding[1], padding[1])
    return padding


def pair(v):
    return (v, v) if isinstance(v, int) else v


def ref_conv(x, w, b, stride, padding, dilation, groups):
    n, c, h, wd = x.shape
    f, cg, kh, kw = w.shape
    pt, pb, pl, pr = pads(padding)
    sh, sw = pair(stride)
    dh, dw = pair(dilation)
    xp = np.zeros((n, c, h + pt + pb, wd + pl + pr))
    xp[:, :, pt:pt + h, pl:pl + wd] = x
    oh = (h + pt + pb - dh * (kh - 1) - 1) // sh + 1
    ow = (wd + pl + pr - dw * (kw - 1) - 1) // sw + 1
    fg = f // groups
    y = np.zeros((n, f, oh, ow))
    for s in range(n):
        for o in range(f):
            g = o // fg
            for i in range(oh):
                for j in range(ow):
                    acc = 0.0 if b is None else float(b[o])
                    for ci in range(cg):
                        for a in range(kh):
                            for e in range(kw):
                                acc += float(w[o, ci, a, e]) * xp[s, g * cg + ci, i * sh + a * dh, j * sw + e * dw]
                    y[s, o, i, j] = acc
    return y


def run_forward(x, w, b, case, activation="linear"):
    *_, stride, padding, dilation, groups = case
    shape = conv.conv2d_output_shape(x.shape, w.shape, stride, padding, dilation)
    y = np.full(shape, np.nan, x.dtype)
    col = np.empty(conv.conv2d_workspace_size(x.shape, w.shape, stride, padding, dilation, groups), x.dtype)
    conv.conv2d_forward(x, w, b, y, col, stride, padding, dilation, groups, activation)
    return y


def make(case, dtype, seed=0):
    n, c, h, wd, f, kh, kw, *_, groups = case
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, c, h, wd)).astype(dtype)
    w = rng.normal(size=(f, c // groups, kh, kw)).astype(dtype)
    b = rng.normal(size=(f,)).astype(dtype)
    return x, w, b


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CASES)
def test_forward_matches_reference(case, dtype):
    x, w, b = make(case, dtype)
    want = ref_conv(x, w, b, *case[7:])
    np.testing.assert_allclose(run_forward(x, w, b, case), want, **tol(dtype) if dtype == np.float64 else
                               {"rtol": 1e-4, "atol": 1e-4})
    np.testing.assert_allclose(run_forward(x, w, None, case), want - b[None, :, None, None],
                               **{"rtol": 1e-4, "atol": 1e-4})
    np.testing.assert_allclose(run_forward(x, w, b, case, "relu"), np.maximum(want, 0), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(run_forward(x, w, b, case, "tanh"), np.tanh(want), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("case", CASES)
def test_backward_matches_finite_differences(case):
    x, w, b = make(case, np.float64, seed=1)
    rng = np.random.default_rng(2)
    *_, stride, padding, dilation, groups = case
    ycoef = rng.normal(size=run_forward(x, w, b, case).shape)

    def loss():
        return float((run_forward(x, w, b, case) * ycoef).sum())

    dx, dw, db = np.empty_like(x), np.empty_like(w), np.empty_like(b)
    col = np.empty(conv.conv2d_workspace_size(x.shape, w.shape, stride, padding, dilation, groups))
    conv.conv2d_backward(x, w, ycoef, dx, dw, db, col, stride, padding, dilation, groups)
    assert_grad(dx, numeric_grad(loss, x))
    assert_grad(dw, numeric_grad(loss, w))
    assert_grad(db, numeric_grad(loss, b))
    # accumulate adds; dx=None, db=None skip those gradients
    dw2 = dw.copy()
    conv.conv2d_backward(x, w, ycoef, None, dw2, None, col, stride, padding, dilation, groups, accumulate=True)
    np.testing.assert_allclose(dw2, 2 * dw, rtol=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
def test_backward_float32_matches_float64(dtype):
    case = CASES[2]
    x, w, b = make(case, np.float64, seed=3)
    dz = np.random.default_rng(4).normal(size=run_forward(x, w, b, case).shape)
    outs = {}
    for dt in (np.float64, dtype):
        X, W, DZ = x.astype(dt), w.astype(dt), dz.astype(dt)
        dx, dw, db = np.empty_like(X), np.empty_like(W), np.empty(W.shape[0], dt)
        col = np.empty(conv.conv2d_workspace_size(X.shape, W.shape, *case[7:]), dt)
        conv.conv2d_backward(X, W, DZ, dx, dw, db, col, *case[7:])
        outs[dt] = (dx, dw, db)
    for a, e in zip(outs[dtype], outs[np.float64]):
        np.testing.assert_allclose(a, e, rtol=1e-4, atol=1e-4)


def test_bad_calls_name_the_argument():
    x, w, b = make(CASES[0], np.float32)
    y = np.empty((1, 2, 5, 5), np.float32)
    col = np.empty(conv.conv2d_workspace_size(x.shape, w.shape, 1, 1), np.float32)
    conv.conv2d_forward(x, w, b, y, col, 1, 1)
    with pytest.raises(TypeError, match="'w'"):
        conv.conv2d_forward(x, w.astype(np.float64), b, y, col, 1, 1)
    with pytest.raises(ValueError, match="'y'"):
        conv.conv2d_forward(x, w, b, np.empty((1, 2, 4, 4), np.float32), col, 1, 1)
    with pytest.raises(ValueError, match="'col'"):
        conv.conv2d_forward(x, w, b, y, col[:-1], 1, 1)
    with pytest.raises(ValueError, match="'x'.*C-contiguous"):
        conv.conv2d_forward(np.empty((1, 1, 5, 10), np.float32)[..., ::2], w, b, y, col, 1, 1)
    ro = y.copy()
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="'y'.*read-only"):
        conv.conv2d_forward(x, w, b, ro, col, 1, 1)
    with pytest.raises(ValueError, match="overlaps"):
        big = np.empty(300, np.float32)
        conv.conv2d_forward(x, w, b, big[:50].reshape(1, 2, 5, 5), big, 1, 1)
    with pytest.raises(ValueError, match="'groups'"):
        conv.conv2d_forward(x, w, b, y, col, 1, 1, 1, 2)
    with pytest.raises(ValueError, match="'stride'"):
        conv.conv2d_forward(x, w, b, y, col, 0, 1)
    with pytest.raises(ValueError, match="window"):
        conv.conv2d_forward(x, np.empty((2, 1, 9, 9), np.float32), b, y, col, 1, 1)
    with pytest.raises(ValueError, match="softmax"):
        conv.conv2d_forward(x, w, b, y, col, 1, 1, activation="softmax")
    with pytest.raises(ValueError, match="'dz'"):
        conv.conv2d_backward(x, w, y[:, :, :4], None, np.empty_like(w), None, col, 1, 1)


# a workspace for batch_block samples runs that many per GEMM (the last block may be shorter)
BLOCK_CASES = [c for c in CASES if c[0] > 1] + [(5, 3, 6, 5, 4, 3, 3, 1, 1, 1, 1),
                                                (4, 4, 5, 6, 4, 2, 2, 2, (1, 0, 0, 1), (1, 2), 2)]


def workspace(x, w, case, block):
    *_, stride, padding, dilation, groups = case
    return np.empty(conv.conv2d_workspace_size(x.shape, w.shape, stride, padding, dilation, groups,
                                               batch_block=block), x.dtype)


@pytest.mark.parametrize("block", [2, 3, 64])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", BLOCK_CASES)
def test_blocked_workspace_forward_matches_reference(case, dtype, block):
    x, w, b = make(case, dtype, seed=6)
    *_, stride, padding, dilation, groups = case
    want = ref_conv(x, w, b, stride, padding, dilation, groups)
    y = np.full(want.shape, np.nan, dtype)
    col = workspace(x, w, case, block)
    assert col.size > conv.conv2d_workspace_size(x.shape, w.shape, stride, padding, dilation, groups)
    conv.conv2d_forward(x, w, b, y, col, stride, padding, dilation, groups, "relu")
    np.testing.assert_allclose(y, np.maximum(want, 0), **tol(dtype) if dtype == np.float64 else
                               {"rtol": 1e-4, "atol": 1e-4})
    conv.conv2d_forward(x, w, None, y, col, stride, padding, dilation, groups)
    np.testing.assert_allclose(y, want - b[None, :, None, None], **tol(dtype) if dtype == np.float64 else
                               {"rtol": 1e-4, "atol": 1e-4})


@pytest.mark.parametrize("block", [2, 3])
@pytest.mark.parametrize("case", BLOCK_CASES)
def test_blocked_workspace_backward_matches_finite_differences(case, block):
    x, w, b = make(case, np.float64, seed=7)
    *_, stride, padding, dilation, groups = case
    ycoef = np.random.default_rng(8).normal(size=run_forward(x, w, b, case).shape)

    def loss():
        return float((run_forward(x, w, b, case) * ycoef).sum())

    col = workspace(x, w, case, block)
    dx, dw, db = np.empty_like(x), np.empty_like(w), np.empty_like(b)
    conv.conv2d_backward(x, w, ycoef, dx, dw, db, col, stride, padding, dilation, groups)
    assert_grad(dx, numeric_grad(loss, x))
    assert_grad(dw, numeric_grad(loss, w))
    assert_grad(db, numeric_grad(loss, b))
    # the same as one GEMM per sample (up to the order of the dW sums); accumulate adds
    dx1, dw1, db1 = np.empty_like(x), np.empty_like(w), np.empty_like(b)
    col1 = workspace(x, w, case, 1)
    conv.conv2d_backward(x, w, ycoef, dx1, dw1, db1, col1, stride, padding, dilation, groups)
    np.testing.assert_array_equal(dx, dx1)
    np.testing.assert_array_equal(db, db1)
    np.testing.assert_allclose(dw, dw1, rtol=1e-12, atol=1e-12)
    dw2 = dw.copy()
    conv.conv2d_backward(x, w, ycoef, None, dw2, None, col, stride, padding, dilation, groups, accumulate=True)
    np.testing.assert_allclose(dw2, 2 * dw, rtol=1e-12)


def test_workspace_size_batch_block():
    xs, ws = (8, 4, 6, 6), (6, 2, 3, 3)
    one = conv.conv2d_workspace_size(xs, ws, 1, 1, 1, 2)
    assert one == 2 * 9 * 36
    assert conv.conv2d_workspace_size(xs, ws, 1, 1, 1, 2, batch_block=1) == one
    assert conv.conv2d_workspace_size(xs, ws, 1, 1, 1, 2, batch_block=4) == 4 * 36 * (2 * 9 + 3)
    for bad in (0, -1, 1.5, True, 2**21):
        with pytest.raises(ValueError, match="'batch_block'"):
            conv.conv2d_workspace_size(xs, ws, 1, 1, 1, 2, batch_block=bad)


def test_bias_gradient_float32_plane_sum_keeps_small_terms():
    """db sums each output plane in 16 float32 lanes, not one running total: after a first
    value of 1, a running float32 total drops every later 2**-25 (half an ulp of 1 rounds to
    even), losing all 2**20 of them (db = 1 instead of 1 + 2**-5); the lanes lose the 1/16
    that share the lane of the 1."""
    p = 2**20
    dz = np.full((1, 1, 1, p), 2.0**-25, np.float32)
    dz[0, 0, 0, 0] = 1
    x = np.zeros((1, 1, 1, p), np.float32)
    w = np.zeros((1, 1, 1, 1), np.float32)
    dw, db = np.empty_like(w), np.empty(1, np.float32)
    col = np.empty(conv.conv2d_workspace_size(x.shape, w.shape), np.float32)
    conv.conv2d_backward(x, w, dz, None, dw, db, col)
    exact = dz.astype(np.float64).sum()
    assert abs(db[0] - exact) / exact < 2.5e-3, (db[0], exact)
