"""dropout: determinism in (seed, counter), keep rate, scaling, backward, statistics."""
import numpy as np
import pytest

from dlrun.kernels.dropout import dropout_backward, dropout_forward
from helpers import DTYPES, assert_grad_close, numeric_grad, tol


def _forward(x, rate, seed, counter):
    y = np.empty_like(x)
    mask = np.empty(x.shape, np.uint8)
    dropout_forward(x, rate, seed, counter, y, mask)
    return y, mask


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (13, 17), (1024, 1024)])
@pytest.mark.parametrize("rate", [0.0, 0.1, 0.5, 0.9])
def test_forward_scales_kept_and_zeroes_dropped(dtype, shape, rate):
    x = np.random.default_rng(0).standard_normal(shape).astype(dtype)
    y, mask = _forward(x, rate, seed=123, counter=0)
    assert set(np.unique(mask)) <= {0, 1}
    expected = np.where(mask == 1, x.astype(np.float64) / (1 - rate), 0)
    np.testing.assert_allclose(y, expected, **tol(dtype))
    if rate == 0:
        assert mask.all()
    if x.size >= 10 ** 6:
        # binomial: the keep fraction is within 6 standard deviations of 1 - rate
        sd = np.sqrt(rate * (1 - rate) / x.size)
        assert abs(mask.mean() - (1 - rate)) < 6 * sd + 1e-12


def test_same_seed_and_counter_same_mask_in_both_dtypes():
    x = np.ones((50, 40))
    _, m1 = _forward(x, 0.3, seed=7, counter=1000)
    _, m2 = _forward(x.astype(np.float32), 0.3, seed=7, counter=1000)
    np.testing.assert_array_equal(m1, m2)


def test_mask_is_a_function_of_the_element_counter():
    # one call over 2 x 500 elements equals two calls of 500 with the counter advanced by 500:
    # what makes a resumed run bit-exact
    x = np.ones(1000)
    _, whole = _forward(x, 0.5, seed=99, counter=10)
    _, first = _forward(x[:500].copy(), 0.5, seed=99, counter=10)
    _, second = _forward(x[500:].copy(), 0.5, seed=99, counter=510)
    np.testing.assert_array_equal(whole, np.concatenate([first, second]))


def test_different_seeds_and_counters_give_different_masks():
    x = np.ones(4096)
    _, a = _forward(x, 0.5, seed=1, counter=0)
    _, b = _forward(x, 0.5, seed=2, counter=0)
    _, c = _forward(x, 0.5, seed=1, counter=4096)
    for other in (b, c):
        agree = (a == other).mean()
        assert 0.45 < agree < 0.55, agree
    # seeds 0 and 2**64 - 1 are both valid
    _forward(x, 0.5, seed=0, counter=0)
    _forward(x, 0.5, seed=2 ** 64 - 1, counter=2 ** 64 - 4096)


def test_mask_statistics_look_uniform():
    x = np.ones(200_000)
    _, m = _forward(x, 0.25, seed=5, counter=0)
    # neighbouring elements are independent: P(keep, keep) = 0.75^2
    both = (m[1:] & m[:-1]).mean()
    assert abs(both - 0.5625) < 0.01, both
    # no period-2 or period-4 structure
    assert abs(m[::2].mean() - m[1::2].mean()) < 0.01


@pytest.mark.parametrize("dtype", DTYPES)
def test_in_place_forward_and_backward(dtype):
    x = np.random.default_rng(1).standard_normal((9, 11)).astype(dtype)
    y, mask = _forward(x, 0.4, seed=3, counter=0)
    x2 = x.copy()
    mask2 = np.empty_like(mask)
    dropout_forward(x2, 0.4, 3, 0, x2, mask2)
    np.testing.assert_array_equal(x2, y)
    dy = np.random.default_rng(2).standard_normal(x.shape).astype(dtype)
    expected = np.where(mask == 1, dy.astype(np.float64) / 0.6, 0)
    dx = np.empty_like(dy)
    dropout_backward(dy, mask, 0.4, dx)
    np.testing.assert_allclose(dx, expected, **tol(dtype))
    dropout_backward(dy, mask, 0.4, dy)
    np.testing.assert_array_equal(dy, dx)


def test_backward_finite_differences():
    x = np.random.default_rng(4).standard_normal((5, 6))
    r = np.random.default_rng(5).standard_normal(x.shape)
    y = np.empty_like(x)
    mask = np.empty(x.shape, np.uint8)

    def loss():
        dropout_forward(x, 0.3, 11, 0, y, mask)     # same (seed, counter): same mask
        return float((y * r).sum())

    numeric = numeric_grad(loss, x)
    dx = np.empty_like(x)
    dropout_backward(r, mask, 0.3, dx)
    kept = mask == 1
    assert 0 < kept.sum() < kept.size
    assert_grad_close(dx[kept], numeric[kept], tol=1e-8, what="dropout dx (kept)")
    # dropped elements: exactly zero, and the finite difference is zero up to rounding noise
    assert np.all(dx[~kept] == 0)
    assert np.abs(numeric[~kept]).max() < 1e-9


def _splitmix64(z):
    m = (1 << 64) - 1
    z &= m
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & m
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & m
    return z ^ (z >> 31)


@pytest.mark.parametrize("seed,counter,rate", [(0, 0, 0.5), (12345, 2 ** 40, 0.2),
                                               (2 ** 64 - 1, 7, 0.9)])
def test_mask_matches_the_documented_generator(seed, counter, rate):
    # u(seed, i) = top 32 bits of splitmix64(key + i * golden) / 2^32,
    # key = splitmix64(seed ^ 0x6A09E667F3BCC909); keep iff u >= rate
    key = _splitmix64(seed ^ 0x6A09E667F3BCC909)
    n = 300
    expected = np.array([
        (_splitmix64(key + ((counter + i) * 0x9E3779B97F4A7C15)) >> 32) / 2 ** 32 >= rate
        for i in range(n)], np.uint8)
    for dtype in DTYPES:
        _, mask = _forward(np.ones(n, dtype), rate, seed, counter)
        np.testing.assert_array_equal(mask, expected)
