"""kernels/seq.pyx against few-line NumPy references (explicit loops) and 4th-order finite
differences in float64: embeddings, conv1d (stride, padding, dilation), pooling over time,
global pooling over the first `lengths` steps."""
import numpy as np
import pytest

from helpers import numeric_grad, tol

from dlrun.kernels import seq as K

DTYPES = [np.float32, np.float64]


def conv1d_ref(x, w, b, stride, pl, pr, dil):
    n, t, c = x.shape
    k, _, f = w.shape
    xp = np.concatenate([np.zeros((n, pl, c)), x, np.zeros((n, pr, c))], axis=1)
    to = (t + pl + pr - dil * (k - 1) - 1) // stride + 1
    y = np.zeros((n, to, f))
    for o in range(to):
        for j in range(k):
            y[:, o, :] += xp[:, o * stride + j * dil, :] @ w[j]
    return y + (0 if b is None else b)


def pool_ref(x, k, stride, pl, pr, use_max):
    n, t, c = x.shape
    to = (t + pl + pr - k) // stride + 1
    y = np.zeros((n, to, c))
    for o in range(to):
        lo, hi = max(o * stride - pl, 0), min(o * stride - pl + k, t)
        win = x[:, lo:hi, :]
        y[:, o, :] = win.max(axis=1) if use_max else win.mean(axis=1)
    return y


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k,stride,pl,pr,dil", [(3, 1, 1, 1, 1), (5, 2, 2, 1, 1), (2, 1, 0, 0, 2), (1, 3, 0, 0, 1),
                                                (4, 1, 0, 3, 1)])
def test_conv1d_forward_matches_reference(dtype, k, stride, pl, pr, dil):
    rng = np.random.default_rng(0)
    n, t, c, f = 3, 11, 4, 5
    x = rng.standard_normal((n, t, c)).astype(dtype)
    w = rng.standard_normal((k, c, f)).astype(dtype)
    b = rng.standard_normal(f).astype(dtype)
    to = K.conv1d_output_length(t, k, stride, pl, pr, dil)
    y = np.empty((n, to, f), dtype)
    col = np.empty(n * to * k * c, dtype)
    K.conv1d_forward(x, w, b, y, col, stride, pl, pr, dil, "relu")
    ref = np.maximum(conv1d_ref(x.astype(np.float64), w.astype(np.float64), b, stride, pl, pr, dil), 0)
    np.testing.assert_allclose(y, ref, **tol(dtype))


@pytest.mark.parametrize("k,stride,pl,pr,dil", [(3, 1, 1, 1, 1), (3, 2, 1, 0, 2), (1, 1, 0, 0, 1)])
def test_conv1d_backward_matches_finite_differences(k, stride, pl, pr, dil):
    rng = np.random.default_rng(1)
    n, t, c, f = 2, 7, 3, 4
    x = rng.standard_normal((n, t, c))
    w = rng.standard_normal((k, c, f))
    b = rng.standard_normal(f)
    to = K.conv1d_output_length(t, k, stride, pl, pr, dil)
    r = rng.standard_normal((n, to, f))
    col = np.empty(n * to * k * c)

    def loss():
        y = np.empty((n, to, f))
        K.conv1d_forward(x, w, b, y, col, stride, pl, pr, dil)
        return float((y * r).sum())

    dx, dw, db = np.empty_like(x), np.empty_like(w), np.empty_like(b)
    K.conv1d_backward(x, w, r, dx, dw, db, col, stride, pl, pr, dil)
    for analytic, p in ((dx, x), (dw, w), (db, b)):
        np.testing.assert_allclose(analytic, numeric_grad(loss, p), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("dtype", DTYPES)
def test_embedding_forward_and_sparse_backward(dtype):
    rng = np.random.default_rng(2)
    v, d, n, t = 9, 4, 3, 6
    w = rng.standard_normal((v, d)).astype(dtype)
    ids = np.array([[3, 1, 4, 1, 0, 0], [2, 7, 2, 8, 8, 5], [0, 0, 0, 0, 0, 0]], dtype)
    y = np.empty((n, t, d), dtype)
    lengths = np.empty(n, np.int64)
    K.embedding_forward(ids, w, y, lengths)
    want = w[ids.astype(int)]
    want[ids == 0] = 0          # padding embeds to zeros whatever row 0 holds
    np.testing.assert_array_equal(y, want)
    assert list(lengths) == [4, 6, 0]
    dy = rng.standard_normal((n, t, d)).astype(dtype)
    dw = np.full((v, d), 7, dtype)          # stale values: only touched rows are written
    mark, rows = np.zeros(v, np.uint8), np.zeros(v, np.int64)
    count = K.embedding_backward(ids, dy, dw, mark, rows, 0)
    ref = np.zeros((v, d))
    for s in range(n):
        for p in range(t):
            if ids[s, p]:
                ref[int(ids[s, p])] += dy[s, p]
    touched = sorted(rows[:count])
    assert touched == [1, 2, 3, 4, 5, 7, 8]
    np.testing.assert_allclose(dw[touched], ref[touched], **tol(dtype))
    assert (dw[[0, 6]] == 7).all()
    # the next call zeroes the rows of the last one before writing its own
    ids2 = np.array([[6, 0, 0, 0, 0, 0]], dtype)
    count2 = K.embedding_backward(ids2, dy[:1], dw, mark, rows, count)
    assert count2 == 1 and rows[0] == 6
    np.testing.assert_allclose(dw[6], dy[0, 0], **tol(dtype))
    assert (dw[[1, 2, 3, 4, 5, 7, 8]] == 0).all()
    assert mark.sum() == 1


def test_embedding_refuses_ids_out_of_range_or_fractional():
    w = np.zeros((5, 2))
    y, lengths = np.empty((1, 2, 2)), np.empty(1, np.int64)
    for bad in (5.0, -1.0, 1.5, np.nan):
        with pytest.raises(ValueError, match="expected a token id"):
            K.embedding_forward(np.array([[1.0, bad]]), w, y, lengths)
    # backward checks every id before it writes a row: dw, mark and rows stay as they were
    dw, mark, rows = np.full((5, 2), 3.0), np.zeros(5, np.uint8), np.zeros(5, np.int64)
    rows[0] = 4
    for bad in (5.0, -1.0, 1.5, np.nan):
        with pytest.raises(ValueError, match=r"holds .* at row 0, position 1; expected a token id"):
            K.embedding_backward(np.array([[2.0, bad]]), np.ones((1, 2, 2)), dw, mark, rows, 1)
        assert (dw == 3).all() and not mark.any() and rows[0] == 4


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k,stride,pl,pr", [(2, None, 0, 0), (3, 2, 1, 1), (3, 1, 2, 0)])
def test_pool1d_forward_and_backward(dtype, k, stride, pl, pr):
    rng = np.random.default_rng(3)
    n, t, c = 2, 9, 3
    x = rng.standard_normal((n, t, c)).astype(dtype)
    s = k if stride is None else stride
    to = K.pool1d_output_length(t, k, stride, pl, pr)
    y, am = np.empty((n, to, c), dtype), np.empty((n, to, c), np.int64)
    K.maxpool1d_forward(x, y, am, k, stride, pl, pr)
    np.testing.assert_array_equal(y, pool_ref(x, k, s, pl, pr, True).astype(dtype))
    K.avgpool1d_forward(x, y, k, stride, pl, pr)
    np.testing.assert_allclose(y, pool_ref(x.astype(np.float64), k, s, pl, pr, False), **tol(dtype))
    # backward in float64 against finite differences
    xd = x.astype(np.float64)
    r = rng.standard_normal((n, to, c))
    for use_max in (True, False):
        def loss():
            out = np.empty((n, to, c))
            if use_max:
                K.maxpool1d_forward(xd, out, am, k, stride, pl, pr)
            else:
                K.avgpool1d_forward(xd, out, k, stride, pl, pr)
            return float((out * r).sum())
        loss()
        dx = np.empty_like(xd)
        if use_max:
            K.maxpool1d_backward(r, am, dx, k, stride, pl, pr)
        else:
            K.avgpool1d_backward(r, dx, k, stride, pl, pr)
        np.testing.assert_allclose(dx, numeric_grad(loss, xd), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("dtype", DTYPES)
def test_global_pooling_over_the_first_lengths_steps(dtype):
    rng = np.random.default_rng(4)
    n, t, c = 3, 5, 2
    x = rng.standard_normal((n, t, c)).astype(dtype)
    x[0, 3:] = 100   # padding positions: must not win the max or enter the mean
    lengths = np.array([3, 5, 0], np.int64)
    y, am = np.empty((n, c), dtype), np.empty((n, c), np.int64)
    K.seq_global_max_forward(x, lengths, y, am)
    np.testing.assert_array_equal(y[0], x[0, :3].max(axis=0))
    np.testing.assert_array_equal(y[1], x[1].max(axis=0))
    assert (y[2] == 0).all() and (am[2] == -1).all()
    K.seq_global_avg_forward(x, lengths, y)
    np.testing.assert_allclose(y[0], x[0, :3].astype(np.float64).mean(axis=0), **tol(dtype))
    assert (y[2] == 0).all()
    K.seq_global_avg_forward(x, None, y)
    np.testing.assert_allclose(y, x.astype(np.float64).mean(axis=1), **tol(dtype))
    # gradients in float64
    xd = x.astype(np.float64)
    r = rng.standard_normal((n, c))
    for use_max in (True, False):
        def loss():
            out = np.empty((n, c))
            if use_max:
                K.seq_global_max_forward(xd, lengths, out, am)
            else:
                K.seq_global_avg_forward(xd, lengths, out)
            return float((out * r).sum())
        loss()
        dx = np.empty_like(xd)
        if use_max:
            K.seq_global_max_backward(r, am, dx)
        else:
            K.seq_global_avg_backward(r, lengths, dx)
        np.testing.assert_allclose(dx, numeric_grad(loss, xd), rtol=1e-6, atol=1e-7)
        assert (dx[0, 3:] == 0).all()


def test_bad_calls_are_clear():
    x = np.zeros((2, 4, 3), np.float32)
    with pytest.raises(ValueError, match="does not fit"):
        K.conv1d_forward(x, np.zeros((5, 3, 2), np.float32), None, np.zeros((2, 1, 2), np.float32),
                         np.zeros(100, np.float32))
    with pytest.raises(TypeError, match="lengths"):
        K.seq_global_avg_forward(x, np.zeros(2, np.int32), np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match="smaller than the window"):
        K.avgpool1d_forward(x, np.zeros((2, 2, 3), np.float32), 2, None, 2, 0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k,stride,pl,pr,dil", [(3, 1, 1, 1, 1), (5, 2, 2, 1, 1), (2, 1, 0, 0, 2), (1, 3, 0, 0, 1)])
@pytest.mark.parametrize("act", ["linear", "relu", "tanh"])
def test_embed_conv1d_is_embedding_then_conv1d(dtype, k, stride, pl, pr, dil, act):
    # the lookup kernels against the explicit embedding + conv1d reference, forward and backward;
    # padding (id 0) embeds as zeros whatever row 0 holds, and gets no gradient
    rng = np.random.default_rng(k * 10 + stride)
    n, t, v, c, f = 3, 12, 9, 4, 6
    ids = rng.integers(0, v, (n, t)).astype(dtype)
    ids[:, -3:] = 0
    e = rng.standard_normal((v, c)).astype(dtype)
    e[0] = 7.0
    w = rng.standard_normal((k, c, f)).astype(dtype)
    b = rng.standard_normal(f).astype(dtype)
    x = np.where(ids[..., None] == 0, 0.0, e.astype(np.float64)[ids.astype(int)])
    z = conv1d_ref(x, w.astype(np.float64), b.astype(np.float64), stride, pl, pr, dil)
    to = z.shape[1]
    y = np.empty((n, to, f), dtype)
    table = np.empty((k, v, f), dtype)
    K.embed_conv1d_forward(ids, e, w, b, y, table, stride, pl, pr, dil, activation=act)
    want = {"linear": z, "relu": np.maximum(z, 0), "tanh": np.tanh(z)}[act]
    np.testing.assert_allclose(y, want, **tol(dtype))
    # backward of sum(y * g) with respect to z, e and w (the activation's gradient is the caller's)
    dz = rng.standard_normal((n, to, f)).astype(dtype)
    de, dw, db = np.full((v, c), 5, dtype), np.empty_like(w), np.empty_like(b)
    K.embed_conv1d_backward(ids, e, w, dz, de, dw, db, table, stride, pl, pr, dil)
    xp = np.zeros((n, t + pl + pr, c))
    dxp = np.zeros_like(xp)
    dw_ref = np.zeros((k, c, f))
    for o in range(to):
        for j in range(k):
            p = o * stride + j * dil
            dxp[:, p, :] += dz[:, o, :].astype(np.float64) @ w[j].T.astype(np.float64)
            xp[:, pl:pl + t, :] = x
            dw_ref[j] += xp[:, p, :].T @ dz[:, o, :].astype(np.float64)
    dx = dxp[:, pl:pl + t, :]
    de_ref = np.zeros((v, c))
    np.add.at(de_ref, ids.astype(int).reshape(-1), dx.reshape(-1, c))
    de_ref[0] = 0
    np.testing.assert_allclose(de, de_ref, **tol(dtype))
    np.testing.assert_allclose(dw, dw_ref, **tol(dtype))
    np.testing.assert_allclose(db, dz.astype(np.float64).sum((0, 1)), **tol(dtype))


def test_embed_conv1d_refuses_bad_ids_and_tables():
    e, w = np.ones((5, 2)), np.ones((3, 2, 4))
    y, table = np.empty((1, 2, 4)), np.empty((3, 5, 4))
    for bad in (5.0, -1.0, 1.5, np.nan):
        with pytest.raises(ValueError, match=r"holds .* at row 0, position 1; expected a token id"):
            K.embed_conv1d_forward(np.array([[1.0, bad, 1.0, 1.0]]), e, w, None, y, table)
    with pytest.raises(ValueError, match=r"'table' has shape \(3, 4, 4\)"):
        K.embed_conv1d_forward(np.ones((1, 4)), e, w, None, y, np.empty((3, 4, 4)))
    with pytest.raises(ValueError, match=r"'w' has shape \(3, 3, 4\); expected \(K, 2, F\)"):
        K.embed_conv1d_forward(np.ones((1, 4)), e, np.ones((3, 3, 4)), None, y, table)
    de = np.full((5, 2), 3.0)
    with pytest.raises(ValueError, match="expected a token id"):
        K.embed_conv1d_backward(np.array([[1.0, 9.0, 1.0, 1.0]]), e, w, np.ones((1, 2, 4)), de,
                                np.empty_like(w), None, table)
    assert (de == 3).all()
