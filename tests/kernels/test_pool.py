"""Pooling kernels against NumPy loop references; backward passes against 4th-order central
finite differences in float64."""
import numpy as np
import pytest

from dlrun.kernels import pool
from helpers import DTYPES, numeric_grad, tol

# (N, C, H, W, kernel, stride, padding)
CASES = [
    (1, 1, 4, 4, 2, None, 0),
    (2, 3, 7, 5, 3, 2, 1),
    (1, 2, 5, 6, (2, 3), (1, 2), (1, 0, 0, 2)),
    (3, 1, 3, 3, 3, 1, (1, 1)),
]


def geom(case):
    n, c, h, w, k, s, p = case
    kh, kw = (k, k) if isinstance(k, int) else k
    s = k if s is None else s
    sh, sw = (s, s) if isinstance(s, int) else s
    p = (p,) * 4 if isinstance(p, int) else (p[0], p[0], p[1], p[1]) if len(p) == 2 else p
    return kh, kw, sh, sw, p


def windows(x, case):
    """(index list of (plane row, col) per output pixel), oh, ow."""
    n, c, h, w = x.shape
    kh, kw, sh, sw, (pt, pb, pl, pr) = geom(case)
    oh, ow = (h + pt + pb - kh) // sh + 1, (w + pl + pr - kw) // sw + 1
    out = {}
    for i in range(oh):
        for j in range(ow):
            out[i, j] = [(a, e) for a in range(i * sh - pt, i * sh - pt + kh)
                         for e in range(j * sw - pl, j * sw - pl + kw) if 0 <= a < h and 0 <= e < w]
    return out, oh, ow


def ref_pool(x, case, how, include_pad=False):
    kh, kw = geom(case)[:2]
    win, oh, ow = windows(x, case)
    y = np.zeros(x.shape[:2] + (oh, ow))
    for s in range(x.shape[0]):
        for c in range(x.shape[1]):
            for (i, j), px in win.items():
                vals = [float(x[s, c, a, e]) for a, e in px]
                y[s, c, i, j] = max(vals) if how == "max" else sum(vals) / (kh * kw if include_pad else len(vals))
    return y


def run(x, case, how, include_pad=False):
    _, _, _, _, k, s, p = case
    shape = pool.pool2d_output_shape(x.shape, k, s, p)
    y = np.full(shape, np.nan, x.dtype)
    if how == "max":
        am = np.empty(shape, np.int64)
        pool.maxpool2d_forward(x, y, am, k, s, p)
        return y, am
    pool.avgpool2d_forward(x, y, k, s, p, include_pad)
    return y, None


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CASES)
def test_forward_matches_reference(case, dtype):
    x = np.random.default_rng(0).normal(size=case[:4]).astype(dtype)
    y, am = run(x, case, "max")
    np.testing.assert_array_equal(y, ref_pool(x, case, "max").astype(dtype))
    flat = x.reshape(x.shape[0], x.shape[1], -1)
    np.testing.assert_array_equal(np.take_along_axis(flat, am.reshape(am.shape[0], am.shape[1], -1), 2).reshape(y.shape), y)
    for inc in (False, True):
        np.testing.assert_allclose(run(x, case, "avg", inc)[0], ref_pool(x, case, "avg", inc), **tol(dtype))
    gy = np.empty(case[:2], dtype)
    pool.global_avgpool_forward(x, gy)
    np.testing.assert_allclose(gy, x.astype(np.float64).mean(axis=(2, 3)), **tol(dtype))
    ga = np.empty(case[:2], np.int64)
    pool.global_maxpool_forward(x, gy, ga)
    np.testing.assert_array_equal(gy, x.max(axis=(2, 3)))
    np.testing.assert_array_equal(ga, flat.argmax(axis=2))


@pytest.mark.parametrize("case", CASES)
def test_backward_matches_finite_differences(case):
    rng = np.random.default_rng(1)
    x = rng.permutation(np.prod(case[:4])).reshape(case[:4]) * 0.01  # distinct values: max is smooth
    _, _, _, _, k, s, p = case
    y, am = run(x, case, "max")
    coef = rng.normal(size=y.shape)
    dx = np.empty_like(x)
    pool.maxpool2d_backward(coef, am, dx)
    np.testing.assert_allclose(dx, numeric_grad(lambda: (run(x, case, "max")[0] * coef).sum(), x, h=1e-4),
                               rtol=1e-6, atol=1e-8)
    for inc in (False, True):
        pool.avgpool2d_backward(coef, dx, k, s, p, inc)
        np.testing.assert_allclose(dx, numeric_grad(lambda: (run(x, case, "avg", inc)[0] * coef).sum(), x),
                                   rtol=1e-6, atol=1e-8)
    gc = rng.normal(size=case[:2])
    gy, ga = np.empty(case[:2]), np.empty(case[:2], np.int64)

    def gavg():
        pool.global_avgpool_forward(x, gy)
        return (gy * gc).sum()

    def gmax():
        pool.global_maxpool_forward(x, gy, ga)
        return (gy * gc).sum()

    pool.global_avgpool_backward(gc, dx)
    np.testing.assert_allclose(dx, numeric_grad(gavg, x), rtol=1e-6, atol=1e-8)
    gmax()
    pool.global_maxpool_backward(gc, ga, dx)
    np.testing.assert_allclose(dx, numeric_grad(gmax, x), rtol=1e-6, atol=1e-8)


def test_bad_calls_name_the_argument():
    x = np.zeros((1, 2, 4, 4), np.float32)
    y = np.empty((1, 2, 2, 2), np.float32)
    am = np.empty((1, 2, 2, 2), np.int64)
    with pytest.raises(TypeError, match="'argmax'"):
        pool.maxpool2d_forward(x, y, am.astype(np.int32), 2)
    with pytest.raises(ValueError, match="'y'"):
        pool.maxpool2d_forward(x, y[:, :1].copy(), am, 2)
    with pytest.raises(ValueError, match="'padding'"):
        pool.maxpool2d_forward(x, y, am, 2, 2, 2)
    with pytest.raises(TypeError, match="'y'"):
        pool.avgpool2d_forward(x, y.astype(np.float64), 2)
    with pytest.raises(ValueError, match="'x'.*C-contiguous"):
        pool.avgpool2d_forward(np.zeros((1, 2, 4, 8), np.float32)[..., ::2], y, 2)
    ro = y.copy()
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="'y'.*read-only"):
        pool.avgpool2d_forward(x, ro, 2)
    with pytest.raises(ValueError, match="overlaps"):
        pool.avgpool2d_forward(x, x.reshape(-1)[:8].reshape(1, 2, 2, 2), 2)
    bad = np.full((1, 2, 2, 2), 16, np.int64)
    with pytest.raises(ValueError, match="'argmax'"):
        pool.maxpool2d_backward(y, bad, np.empty_like(x))
    with pytest.raises(ValueError, match="'x'"):
        pool.global_avgpool_forward(np.zeros((1, 2, 0, 3), np.float32), np.empty((1, 2), np.float32))


def ref_argmax(x, case):
    """The saved index by the documented rule: the first maximum on ties, the first NaN wins."""
    win, oh, ow = windows(x, case)
    w = x.shape[3]
    am = np.zeros(x.shape[:2] + (oh, ow), np.int64)
    for s in range(x.shape[0]):
        for c in range(x.shape[1]):
            for (i, j), px in win.items():
                best = px[0]
                for a, e in px[1:]:
                    v, m = x[s, c, a, e], x[s, c, best[0], best[1]]
                    if v > m or (np.isnan(v) and not np.isnan(m)):
                        best = (a, e)
                am[s, c, i, j] = best[0] * w + best[1]
    return am


# 2x2 stride 2 unpadded (the fast path; odd sizes drop the last row / column) and general ones
TIE_CASES = [(2, 3, 6, 8, 2, None, 0), (1, 2, 5, 7, 2, 2, 0), (2, 2, 6, 6, 3, 2, 1),
             (1, 2, 6, 7, (2, 3), (1, 2), (1, 0, 0, 2)), (1, 1, 4, 4, 2, 1, 0)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", TIE_CASES)
def test_maxpool_ties_signed_zeros_and_nan_follow_the_rule(case, dtype):
    rng = np.random.default_rng(5)
    # few distinct values: many ties; signed zeros; NaN in some windows only
    x = rng.choice(np.array([-1.0, -0.0, 0.0, 0.5, 0.5, 1.0]), size=case[:4]).astype(dtype)
    flat = x.reshape(-1)
    flat[rng.choice(flat.size, size=flat.size // 9, replace=False)] = np.nan
    y, am = run(x, case, "max")
    want = ref_argmax(x, case)
    np.testing.assert_array_equal(am, want)
    planes = x.reshape(x.shape[0], x.shape[1], -1)
    picked = np.take_along_axis(planes, am.reshape(am.shape[0], am.shape[1], -1), 2).reshape(y.shape)
    # the value saved is the one at the index, sign of zero included
    np.testing.assert_array_equal(np.signbit(y), np.signbit(picked))
    np.testing.assert_array_equal(y, picked)
    # and without NaN (the branch-free path alone)
    x2 = np.nan_to_num(x, nan=0.5)
    y2, am2 = run(x2, case, "max")
    np.testing.assert_array_equal(am2, ref_argmax(x2, case))
