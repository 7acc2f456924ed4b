"""Optimizer kernels against NumPy references over several steps, textbook cases and bad calls.

References follow PyTorch's optimizers (SGD, Adam, AdamW, RMSprop, Adagrad) written out in a few
lines of float64 NumPy, with the penalties g' = g + l1 sign(p) + l2 p.
"""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from dlrun.kernels import optim as O
from helpers import DTYPES, tol

# any shape: scalars-as-(1,), odd sizes, matrices, and one above the L2 cache (2.4 MB in float32)
SHAPES = [(1,), (7,), (3, 5), (64, 33), (2, 3, 4), (600_001,)]
STEPS = 5


def penalized(p, g, l1, l2):
    return g + l1 * np.sign(p) + l2 * p


def sgd_ref(p, g, vel, lr, momentum, nesterov, l1, l2):
    g = penalized(p, g, l1, l2)
    if momentum == 0:
        return p - lr * g, vel
    vel = momentum * vel + g
    return p - lr * (g + momentum * vel if nesterov else vel), vel


def adam_ref(p, g, m, v, lr, b1, b2, eps, t, l1, l2, wd):
    g = penalized(p, g, l1, l2)
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    mhat, vhat = m / (1 - b1**t), v / (1 - b2**t)
    return p * (1 - lr * wd) - lr * mhat / (np.sqrt(vhat) + eps), m, v


def rmsprop_ref(p, g, sq, lr, rho, eps, l1, l2):
    g = penalized(p, g, l1, l2)
    sq = rho * sq + (1 - rho) * g * g
    return p - lr * g / (np.sqrt(sq) + eps), sq


def adagrad_ref(p, g, acc, lr, eps, l1, l2):
    g = penalized(p, g, l1, l2)
    acc = acc + g * g
    return p - lr * g / (np.sqrt(acc) + eps), acc


def _close(actual, expected, dtype, what):
    np.testing.assert_allclose(actual, expected, **tol(dtype), err_msg=what)


def _setup(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    p = rng.standard_normal(shape).astype(dtype)
    grads = [rng.standard_normal(shape).astype(dtype) for _ in range(STEPS)]
    return p, grads


PENALTIES = [(0.0, 0.0), (1e-3, 1e-2)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("l1,l2", PENALTIES)
@pytest.mark.parametrize("momentum,nesterov", [(0.0, False), (0.9, False), (0.9, True)])
def test_sgd_matches_numpy(dtype, shape, l1, l2, momentum, nesterov):
    p, grads = _setup(shape, dtype)
    vel = np.zeros(shape, dtype) if momentum else None
    rp, rv = p.astype(np.float64), np.zeros(shape)
    for g in grads:
        O.sgd_update(p, g, vel, 0.05, momentum, nesterov, l1, l2)
        rp, rv = sgd_ref(rp, g.astype(np.float64), rv, 0.05, momentum, nesterov, l1, l2)
    _close(p, rp, dtype, "p")
    if momentum:
        _close(vel, rv, dtype, "velocity")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("l1,l2,wd", [(0.0, 0.0, 0.0), (1e-3, 1e-2, 0.0), (0.0, 0.0, 0.1), (1e-3, 1e-2, 0.1)])
def test_adam_matches_numpy(dtype, shape, l1, l2, wd):
    p, grads = _setup(shape, dtype)
    m, v = np.zeros(shape, dtype), np.zeros(shape, dtype)
    rp, rm, rv = p.astype(np.float64), np.zeros(shape), np.zeros(shape)
    for t, g in enumerate(grads, start=1):
        O.adam_update(p, g, m, v, 1e-2, 0.9, 0.999, 1e-8, t, l1=l1, l2=l2, weight_decay=wd)
        rp, rm, rv = adam_ref(rp, g.astype(np.float64), rm, rv, 1e-2, 0.9, 0.999, 1e-8, t, l1, l2, wd)
    _close(p, rp, dtype, "p")
    _close(m, rm, dtype, "m")
    _close(v, rv, dtype, "v")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("l1,l2", PENALTIES)
def test_rmsprop_matches_numpy(dtype, shape, l1, l2):
    p, grads = _setup(shape, dtype)
    sq = np.zeros(shape, dtype)
    rp, rsq = p.astype(np.float64), np.zeros(shape)
    for g in grads:
        O.rmsprop_update(p, g, sq, 1e-2, rho=0.9, eps=1e-7, l1=l1, l2=l2)
        rp, rsq = rmsprop_ref(rp, g.astype(np.float64), rsq, 1e-2, 0.9, 1e-7, l1, l2)
    _close(p, rp, dtype, "p")
    _close(sq, rsq, dtype, "sq")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("l1,l2", PENALTIES)
def test_adagrad_matches_numpy(dtype, shape, l1, l2):
    p, grads = _setup(shape, dtype)
    acc = np.full(shape, 0.1, dtype)             # PyTorch's initial_accumulator_value, set by the caller
    rp, racc = p.astype(np.float64), np.full(shape, 0.1)
    for g in grads:
        O.adagrad_update(p, g, acc, 1e-2, eps=1e-7, l1=l1, l2=l2)
        rp, racc = adagrad_ref(rp, g.astype(np.float64), racc, 1e-2, 1e-7, l1, l2)
    _close(p, rp, dtype, "p")
    _close(acc, racc, dtype, "acc")


@settings(max_examples=40, deadline=None)
@given(n=st.integers(0, 40), lr=st.floats(0, 1), b1=st.floats(0, 0.999), b2=st.floats(0, 0.9999),
       eps=st.sampled_from([0.0, 1e-8, 1e-3]), wd=st.floats(0, 0.5), l1=st.floats(0, 0.1),
       l2=st.floats(0, 0.1), t=st.integers(1, 10_000), seed=st.integers(0, 2**32 - 1))
def test_adam_property(n, lr, b1, b2, eps, wd, l1, l2, t, seed):
    rng = np.random.default_rng(seed)
    p = rng.standard_normal(n)
    g = rng.standard_normal(n) + 0.5          # keeps g' away from 0 so eps = 0 is safe
    m, v = rng.standard_normal(n), rng.uniform(0.1, 2, n)
    rp, rm, rv = adam_ref(p, g, m, v, lr, b1, b2, eps, t, l1, l2, wd)
    O.adam_update(p, g, m, v, lr, b1, b2, eps, t, l1=l1, l2=l2, weight_decay=wd)
    np.testing.assert_allclose(m, rm, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(v, rv, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(p, rp, rtol=1e-11, atol=1e-12)


# ---------------------------------------------------------------- textbook cases

@pytest.mark.parametrize("dtype", DTYPES)
def test_adam_first_step_is_lr_times_sign(dtype):
    # with m = v = 0 the bias-corrected first step is lr * g / (|g| + eps) ~ lr * sign(g)
    p = np.array([1.0, -2.0, 0.5], dtype)
    g = np.array([3.0, -0.25, 1e-3], dtype)
    m, v = np.zeros(3, dtype), np.zeros(3, dtype)
    O.adam_update(p, g, m, v, 0.1, 0.9, 0.999, 1e-8, 1)
    _close(p, np.array([1.0, -2.0, 0.5]) - 0.1 * g / (np.abs(g) + 1e-8), dtype, "p")
    _close(m, 0.1 * g, dtype, "m")
    _close(v, 0.001 * g.astype(np.float64) ** 2, dtype, "v")


def test_adam_constant_gradient_steps_are_lr():
    # a constant gradient gives mhat = g, vhat = g^2 at every step: each step moves lr * sign(g)
    p, g = np.zeros(4), np.array([2.0, -3.0, 0.5, -0.1])
    m, v = np.zeros(4), np.zeros(4)
    for t in range(1, 51):
        O.adam_update(p, g, m, v, 0.01, 0.9, 0.999, 0.0, t)
    np.testing.assert_allclose(p, -0.5 * np.sign(g), rtol=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
def test_adamw_decay_is_decoupled(dtype):
    # zero gradient and zero moments: AdamW only decays, p_t = (1 - lr wd)^t p_0
    p0 = np.array([1.0, -4.0, 0.0, 2.5], dtype)
    p, g = p0.copy(), np.zeros(4, dtype)
    m, v = np.zeros(4, dtype), np.zeros(4, dtype)
    for t in range(1, 11):
        O.adam_update(p, g, m, v, 0.1, 0.9, 0.999, 1e-8, t, weight_decay=0.5)
    _close(p, p0.astype(np.float64) * 0.95**10, dtype, "p")
    assert not m.any() and not v.any()
    # whereas an l2 penalty goes through the moments (coupled), and is normalised away by Adam
    p2, m2, v2 = p0.copy(), np.zeros(4, dtype), np.zeros(4, dtype)
    O.adam_update(p2, g, m2, v2, 0.1, 0.9, 0.999, 1e-8, 1, l2=0.5)
    _close(m2, 0.1 * 0.5 * p0.astype(np.float64), dtype, "m with l2")
    gp = 0.5 * p0.astype(np.float64)
    _close(p2, p0 - 0.1 * gp / (np.abs(gp) + 1e-8), dtype, "p with l2")


def test_sgd_momentum_constant_gradient_closed_form():
    # v_t = g (1 - mu^t) / (1 - mu);  p_T = p_0 - lr sum_t v_t
    mu, lr, T = 0.9, 0.1, 20
    g = np.array([1.0, -2.0])
    p, vel = np.zeros(2), np.zeros(2)
    for _ in range(T):
        O.sgd_update(p, g, vel, lr, momentum=mu)
    vts = [(1 - mu**t) / (1 - mu) for t in range(1, T + 1)]
    np.testing.assert_allclose(vel, g * vts[-1], rtol=1e-13)
    np.testing.assert_allclose(p, -lr * g * sum(vts), rtol=1e-13)


def test_sgd_nesterov_first_step():
    # v_1 = g; step = g + mu v_1 = (1 + mu) g
    p, vel, g = np.ones(3), np.zeros(3), np.array([1.0, 2.0, -1.0])
    O.sgd_update(p, g, vel, 0.1, momentum=0.5, nesterov=True)
    np.testing.assert_allclose(p, 1 - 0.1 * 1.5 * g, rtol=1e-15)


def test_sgd_penalties_and_sign_of_zero():
    # g' = g + l1 sign(p) + l2 p with sign(0) = 0
    p = np.array([2.0, -3.0, 0.0])
    g = np.zeros(3)
    O.sgd_update(p, g, None, 0.1, l1=0.5, l2=0.25)
    np.testing.assert_allclose(p, [2.0 - 0.1 * (0.5 + 0.5), -3.0 - 0.1 * (-0.5 - 0.75), 0.0], rtol=1e-15)


def test_sgd_without_momentum_ignores_velocity():
    p, g = np.ones(3), np.ones(3)
    vel = np.full(3, 5.0)
    O.sgd_update(p, g, vel, 0.5)
    np.testing.assert_array_equal(p, 0.5)
    np.testing.assert_array_equal(vel, 5.0)


def test_rmsprop_first_step_and_adagrad_constant_gradient():
    g = np.array([2.0, -0.5])
    p, sq = np.zeros(2), np.zeros(2)
    O.rmsprop_update(p, g, sq, 0.01, rho=0.9, eps=0.0)
    np.testing.assert_allclose(p, -0.01 * np.sign(g) / np.sqrt(0.1), rtol=1e-14)
    # AdaGrad with a constant gradient: acc_t = t g^2, the t-th step is lr sign(g) / sqrt(t)
    p, acc = np.zeros(2), np.zeros(2)
    for _ in range(4):
        O.adagrad_update(p, g, acc, 0.1, eps=0.0)
    np.testing.assert_allclose(acc, 4 * g * g, rtol=1e-15)
    np.testing.assert_allclose(p, -0.1 * np.sign(g) * sum(1 / np.sqrt(t) for t in range(1, 5)), rtol=1e-14)


def test_updates_are_in_place_on_views_of_a_flat_buffer():
    # the runtime keeps every parameter in one flat buffer and updates contiguous slices of it
    flat, grad = np.ones(10), np.full(10, 2.0)
    m, v = np.zeros(10), np.zeros(10)
    O.adam_update(flat[2:7], grad[2:7], m[2:7], v[2:7], 0.1, 0.9, 0.999, 1e-8, 1)
    np.testing.assert_allclose(flat, [1, 1, 0.9, 0.9, 0.9, 0.9, 0.9, 1, 1, 1], rtol=1e-7)
    assert not m[:2].any() and not m[7:].any()


def test_empty_arrays_are_a_no_op():
    e = np.zeros(0)
    O.sgd_update(e, e.copy(), np.zeros(0), 0.1, momentum=0.9)
    O.adam_update(e, np.zeros(0), np.zeros(0), np.zeros(0), 0.1, 0.9, 0.999, 1e-8, 1)
    O.rmsprop_update(e, np.zeros(0), np.zeros(0), 0.1)
    O.adagrad_update(e, np.zeros(0), np.zeros(0), 0.1)
    assert O.clip_grad_norm([e], 1.0) == 0.0


# ---------------------------------------------------------------- clip_grad_norm

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("sizes", [[1], [7, 3], [3001, 17, 1], [600_001]])
@pytest.mark.parametrize("max_norm", [0.5, 1e9])
def test_clip_grad_norm_matches_numpy(dtype, sizes, max_norm):
    rng = np.random.default_rng(3)
    grads = [rng.standard_normal(n).astype(dtype) for n in sizes]
    before = [g.astype(np.float64) for g in grads]
    norm = np.sqrt(sum((b * b).sum() for b in before))
    got = O.clip_grad_norm(grads, max_norm)
    assert isinstance(got, float)
    np.testing.assert_allclose(got, norm, rtol=1e-12)
    coef = max_norm / (norm + 1e-6) if norm > max_norm else 1.0
    for g, b in zip(grads, before):
        _close(g, b * coef, dtype, "clipped gradient")
    if norm > max_norm:
        np.testing.assert_allclose(np.sqrt(sum((g.astype(np.float64) ** 2).sum() for g in grads)),
                                   max_norm, rtol=1e-5)


def test_clip_grad_norm_textbook_and_shapes():
    a, b = np.array([[3.0]]), np.array([0.0, 4.0], np.float32)   # any shape; dtypes may differ
    assert O.clip_grad_norm((a, b), 1.0) == 5.0
    np.testing.assert_allclose(a, [[0.6]], rtol=1e-6)
    np.testing.assert_allclose(b, [0.0, 0.8], rtol=1e-6)
    single = np.array([0.3, 0.4])
    assert O.clip_grad_norm(single, 1.0) == pytest.approx(0.5)      # below the limit: untouched
    np.testing.assert_array_equal(single, [0.3, 0.4])
    assert O.clip_grad_norm([], 1.0) == 0.0
    big = np.full(4, 10.0)
    assert O.clip_grad_norm([big], float("inf")) == 20.0          # inf: measure only
    np.testing.assert_array_equal(big, 10.0)


def test_clip_grad_norm_float64_beyond_square_range():
    g = np.full(4, 1e200)
    assert O.clip_grad_norm([g], 1.0) == pytest.approx(2e200, rel=1e-14)
    np.testing.assert_allclose(g, 0.5, rtol=1e-12)
    f = np.full(3, 3e38, np.float32)                 # float32 squares are summed in double
    assert O.clip_grad_norm([f], 1.0) == pytest.approx(3e38 * np.sqrt(3), rel=1e-6)


@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan])
def test_clip_grad_norm_non_finite_is_reported_not_spread(bad):
    g = np.array([1.0, bad, 2.0])
    norm = O.clip_grad_norm([g], 1.0)
    assert not np.isfinite(norm)
    np.testing.assert_array_equal(g[[0, 2]], [1.0, 2.0])      # nothing scaled into NaN


# ---------------------------------------------------------------- bad calls

def _ro(a):
    a = a.copy()
    a.flags.writeable = False
    return a


def _misaligned(n):
    a = np.zeros(n * 8 + 1, np.uint8)[1:].view(np.float64)
    assert not a.flags.aligned
    return a


def _call(fn, **override):
    z = lambda: np.zeros(6)  # noqa: E731
    base = {
        "sgd_update": dict(p=z(), g=z(), velocity=z(), lr=0.1, momentum=0.9),
        "adam_update": dict(p=z(), g=z(), m=z(), v=z(), lr=0.1, beta1=0.9, beta2=0.999, eps=1e-8, step=1),
        "rmsprop_update": dict(p=z(), g=z(), sq=z(), lr=0.1),
        "adagrad_update": dict(p=z(), g=z(), acc=z(), lr=0.1),
    }[fn]
    base.update(override)
    return getattr(O, fn)(**base)


STATE = {"sgd_update": "velocity", "adam_update": "m", "rmsprop_update": "sq", "adagrad_update": "acc"}
FNS = list(STATE)

COMMON_BAD = [
    ("p", [0.0] * 6, TypeError, r"argument 'p' must be a numpy\.ndarray of float32 or float64, got list"),
    ("p", np.zeros(6, np.int64), TypeError, r"argument 'p' has dtype int64; expected float32 or float64"),
    ("p", np.zeros(6, ">f8"), TypeError, r"argument 'p' has dtype >f8 \(non-native byte order\); expected float32 or float64 in native byte order"),
    ("p", _ro(np.zeros(6)), ValueError, r"output argument 'p' is read-only"),
    ("p", np.zeros(12)[::2], ValueError, r"argument 'p' must be C-contiguous"),
    ("p", _misaligned(6), ValueError, r"argument 'p' is not aligned for its dtype"),
    ("g", np.zeros(6, np.float32), TypeError, r"argument 'g' has dtype float32; expected float64 \(the dtype of 'p'\)"),
    ("g", np.zeros(6, ">f8"), TypeError, r"argument 'g' has dtype >f8 \(non-native byte order\); expected float32 or float64 in native byte order"),
    ("g", np.zeros(5), ValueError, r"argument 'g' has shape \(5,\); expected \(6,\) \(the shape of 'p'\)"),
    ("g", np.zeros((2, 3)), ValueError, r"argument 'g' has shape \(2, 3\); expected \(6,\)"),
    ("g", np.zeros(12)[::2], ValueError, r"argument 'g' must be C-contiguous"),
    ("g", None, TypeError, r"argument 'g' must be a numpy\.ndarray of float32 or float64, got None"),
    ("state", np.zeros(7), ValueError, r"argument '{state}' has shape \(7,\); expected \(6,\)"),
    ("state", np.zeros(6, np.float32), TypeError, r"argument '{state}' has dtype float32; expected float64"),
    ("state", _ro(np.zeros(6)), ValueError, r"output argument '{state}' is read-only"),
    ("state", np.zeros(12)[::2], ValueError, r"argument '{state}' must be C-contiguous"),
    ("lr", -0.1, ValueError, r"argument 'lr' must be a finite number >= 0, got -0\.1"),
    ("lr", float("nan"), ValueError, r"argument 'lr' must be a finite number >= 0, got nan"),
    ("lr", float("inf"), ValueError, r"argument 'lr' must be a finite number >= 0, got inf"),
    ("lr", "fast", TypeError, r"argument 'lr' must be a real number, got str 'fast'"),
    ("lr", None, TypeError, r"argument 'lr' must be a real number, got None"),
]


@pytest.mark.parametrize("fn", FNS)
@pytest.mark.parametrize("arg,value,exc,pattern", COMMON_BAD, ids=[f"{c[0]}-{i}" for i, c in enumerate(COMMON_BAD)])
def test_common_bad_calls(fn, arg, value, exc, pattern):
    name = STATE[fn] if arg == "state" else arg
    with pytest.raises(exc, match=rf"{fn}: " + pattern.format(state=name)):
        _call(fn, **{name: value})


@pytest.mark.parametrize("fn", FNS)
def test_overlapping_arrays_rejected(fn):
    buf = np.zeros(6)
    state = STATE[fn]
    with pytest.raises(ValueError, match=rf"{fn}: output 'p' overlaps input '{state}'"):
        _call(fn, p=buf, **{state: buf})
    flat = np.zeros(10)
    with pytest.raises(ValueError, match=rf"{fn}: output 'p' overlaps input 'g'"):
        _call(fn, p=flat[:6], g=flat[4:10])
    with pytest.raises(ValueError, match=rf"{fn}: output 'g' overlaps input '{state}'"):
        _call(fn, g=flat[:6], **{state: flat[3:9]})


@pytest.mark.parametrize(
    "fn,override,exc,pattern",
    [
        ("sgd_update", dict(velocity=None), ValueError, r"argument 'velocity' is required when momentum > 0"),
        ("sgd_update", dict(momentum=0.0, nesterov=True), ValueError, r"argument 'nesterov' is True, which requires momentum > 0"),
        ("sgd_update", dict(nesterov="yes"), TypeError, r"argument 'nesterov' must be True or False, got str 'yes'"),
        ("sgd_update", dict(momentum=True), TypeError, r"argument 'momentum' must be a real number, got bool True"),
        ("sgd_update", dict(momentum=-0.5), ValueError, r"argument 'momentum' must be in \[0, 1\], got -0\.5"),
        ("sgd_update", dict(momentum=1.5), ValueError, r"argument 'momentum' must be in \[0, 1\]"),
        ("sgd_update", dict(momentum=float("nan")), ValueError, r"argument 'momentum' .*nan"),
        ("sgd_update", dict(l1=-1e-3), ValueError, r"argument 'l1' must be a finite number >= 0"),
        ("sgd_update", dict(l2=float("nan")), ValueError, r"argument 'l2' must be a finite number >= 0, got nan"),
        ("sgd_update", dict(velocity=[0.0] * 6), TypeError, r"argument 'velocity' must be a numpy\.ndarray"),
        ("adam_update", dict(beta1=1.0), ValueError, r"argument 'beta1' must be in \[0, 1\), got 1\.0"),
        ("adam_update", dict(beta1=-0.1), ValueError, r"argument 'beta1' must be in \[0, 1\)"),
        ("adam_update", dict(beta2=float("nan")), ValueError, r"argument 'beta2' must be in \[0, 1\), got nan"),
        ("adam_update", dict(eps=-1e-8), ValueError, r"argument 'eps' must be a finite number >= 0"),
        ("adam_update", dict(step=0), ValueError, r"argument 'step' must be an integer >= 1 .*got 0"),
        ("adam_update", dict(step=-3), ValueError, r"argument 'step' must be an integer >= 1"),
        ("adam_update", dict(step=1.5), TypeError, r"argument 'step' must be an integer >= 1, got float 1\.5"),
        ("adam_update", dict(step=True), TypeError, r"argument 'step' must be an integer >= 1, got bool True"),
        ("adam_update", dict(step="1"), TypeError, r"argument 'step' must be an integer >= 1, got str '1'"),
        ("adam_update", dict(weight_decay=-0.01), ValueError, r"argument 'weight_decay' must be a finite number >= 0"),
        ("adam_update", dict(l1=float("inf")), ValueError, r"argument 'l1' must be a finite number >= 0, got inf"),
        ("adam_update", dict(m=np.zeros(6), v=None), TypeError, r"argument 'v' must be a numpy\.ndarray of float32 or float64, got None"),
        ("adam_update", dict(lr=True), TypeError, r"argument 'lr' must be a real number, got bool True"),
        ("rmsprop_update", dict(rho=1.0), ValueError, r"argument 'rho' must be in \[0, 1\), got 1\.0"),
        ("rmsprop_update", dict(rho=-0.5), ValueError, r"argument 'rho' must be in \[0, 1\)"),
        ("rmsprop_update", dict(eps=float("nan")), ValueError, r"argument 'eps' must be a finite number >= 0, got nan"),
        ("adagrad_update", dict(eps=-1.0), ValueError, r"argument 'eps' must be a finite number >= 0"),
        ("adagrad_update", dict(l2=-1.0), ValueError, r"argument 'l2' must be a finite number >= 0"),
    ],
)
def test_hyperparameter_bad_calls(fn, override, exc, pattern):
    with pytest.raises(exc, match=rf"{fn}: " + pattern):
        _call(fn, **override)


@pytest.mark.parametrize("fn", FNS)
def test_read_only_gradient_is_accepted(fn):
    g = _ro(np.ones(6))
    p = np.zeros(6)
    _call(fn, p=p, g=g)
    assert np.all(p < 0)


def test_bad_call_leaves_arrays_untouched():
    p, g, m, v = np.ones(6), np.ones(6), np.zeros(6), np.zeros(6)
    with pytest.raises(ValueError):
        O.adam_update(p, g, m, v, 0.1, 0.9, 0.999, 1e-8, 0)
    assert np.all(p == 1) and not m.any() and not v.any()


@pytest.mark.parametrize(
    "grads,max_norm,exc,pattern",
    [
        ([np.zeros(3)], 0.0, ValueError, r"argument 'max_norm' must be > 0, got 0\.0"),
        ([np.zeros(3)], -1.0, ValueError, r"argument 'max_norm' must be > 0"),
        ([np.zeros(3)], float("nan"), ValueError, r"argument 'max_norm' must be > 0, got nan"),
        ([np.zeros(3)], "1", TypeError, r"argument 'max_norm' must be a real number, got str '1'"),
        ({"w": np.zeros(3)}, 1.0, TypeError, r"argument 'grads' must be a list or tuple of numpy arrays, got dict"),
        ([np.zeros(3), [1.0, 2.0]], 1.0, TypeError, r"argument 'grads\[1\]' must be a numpy\.ndarray"),
        ([np.zeros(3, np.int32)], 1.0, TypeError, r"argument 'grads\[0\]' has dtype int32; expected float32 or float64"),
        ([np.zeros(3), _ro(np.zeros(3))], 1.0, ValueError, r"output argument 'grads\[1\]' is read-only"),
        ([np.zeros(6)[::2]], 1.0, ValueError, r"argument 'grads\[0\]' must be C-contiguous"),
    ],
)
def test_clip_grad_norm_bad_calls(grads, max_norm, exc, pattern):
    with pytest.raises(exc, match=r"clip_grad_norm: " + pattern):
        O.clip_grad_norm(grads, max_norm)


def test_clip_grad_norm_rejects_the_same_array_twice():
    g = np.ones(4)
    with pytest.raises(ValueError, match=r"clip_grad_norm: output 'grads\[0\]' overlaps input 'grads\[1\]'"):
        O.clip_grad_norm([g, g], 1.0)
