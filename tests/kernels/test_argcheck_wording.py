"""One argument-check family for every kernel wrapper: the same mistake gets the same sentence,
whichever module it is made in (the losses and optimizers once had their own wording), and a
real-number argument follows one rule everywhere (numbers only: no strings, no bools)."""
import re

import numpy as np
import pytest

from dlrun.kernels import (activations, batchnorm, blas, conv, dense, dropout, losses, optim,
                           pool)


def f32(*shape):
    return np.ones(shape, np.float32)


# name -> (function, builder of valid keyword arguments, first float input, one output, a
# companion of the first input, a real-number scalar)
CALLS = {
    "gemm": (blas.gemm, lambda: dict(a=f32(2, 3), b=f32(3, 4), c=f32(2, 4)), "a", "c", "b",
             "alpha"),
    "activation_forward": (activations.activation_forward,
                           lambda: dict(name="relu", x=f32(2, 3), y=f32(2, 3)), "x", "y", "y",
                           "alpha"),
    "dense_forward": (dense.dense_forward,
                      lambda: dict(x=f32(2, 3), w=f32(3, 4), b=None, y=f32(2, 4)), "x", "y", "w",
                      "alpha"),
    "batchnorm_forward_eval": (
        batchnorm.batchnorm_forward_eval,
        lambda: dict(x=f32(2, 3), gamma=f32(3), beta=f32(3), running_mean=f32(3),
                     running_var=f32(3), eps=1e-5, y=f32(2, 3)), "x", "y", "gamma", "eps"),
    "dropout_forward": (dropout.dropout_forward,
                        lambda: dict(x=f32(2, 3), rate=0.5, seed=1, counter=0, y=f32(2, 3),
                                     mask=np.zeros((2, 3), np.uint8)), "x", "y", "y", "rate"),
    "conv2d_forward": (conv.conv2d_forward,
                       lambda: dict(x=f32(1, 1, 3, 3), w=f32(2, 1, 1, 1), b=None,
                                    y=f32(1, 2, 3, 3), col=f32(9)), "x", "y", "w", "alpha"),
    "avgpool2d_forward": (pool.avgpool2d_forward,
                          lambda: dict(x=f32(1, 1, 2, 2), y=f32(1, 1, 1, 1), kernel=2),
                          "x", "y", "y", None),
    "mse": (losses.mse, lambda: dict(pred=f32(2, 3), target=f32(2, 3), grad=f32(2, 3)),
            "pred", "grad", "target", None),
    "softmax_cross_entropy": (
        losses.softmax_cross_entropy,
        lambda: dict(logits=f32(2, 3), target=np.array([0, 1]), grad=f32(2, 3)), "logits", "grad",
        "grad", "label_smoothing"),
    "huber": (losses.huber, lambda: dict(pred=f32(2, 3), target=f32(2, 3), grad=f32(2, 3)),
              "pred", "grad", "target", "delta"),
    "adam_update": (optim.adam_update,
                    lambda: dict(p=f32(6), g=f32(6), m=f32(6), v=f32(6), lr=0.1, beta1=0.9,
                                 beta2=0.999, eps=1e-8, step=1), "p", "m", "g", "lr"),
    "sgd_update": (optim.sgd_update, lambda: dict(p=f32(6), g=f32(6), velocity=None, lr=0.1),
                   "p", "p", "g", "momentum"),
}


def _message(case, exc, **changes):
    fn, build, *_ = CALLS[case]
    kwargs = build()
    kwargs.update(changes)
    with pytest.raises(exc) as info:
        fn(**kwargs)
    return str(info.value)


@pytest.mark.parametrize("case", CALLS)
def test_valid_call_works(case):
    fn, build, *_ = CALLS[case]
    fn(**build())


@pytest.mark.parametrize("case", CALLS)
def test_not_an_array(case):
    first = CALLS[case][2]
    assert _message(case, TypeError, **{first: [[1.0]]}) == (
        f"{case}: argument '{first}' must be a numpy.ndarray of float32 or float64, got list")
    assert _message(case, TypeError, **{first: None}).endswith(", got None")


@pytest.mark.parametrize("case", CALLS)
def test_wrong_dtype(case):
    first = CALLS[case][2]
    good = CALLS[case][1]()[first]
    assert _message(case, TypeError, **{first: good.astype(np.int64)}) == (
        f"{case}: argument '{first}' has dtype int64; expected float32 or float64")


@pytest.mark.parametrize("case", CALLS)
def test_byte_swapped(case):
    first = CALLS[case][2]
    good = CALLS[case][1]()[first]
    assert _message(case, TypeError, **{first: good.astype(">f4")}) == (
        f"{case}: argument '{first}' has dtype >f4 (non-native byte order); expected float32 "
        f"or float64 in native byte order")


@pytest.mark.parametrize("case", CALLS)
def test_not_contiguous(case):
    first = CALLS[case][2]
    good = CALLS[case][1]()[first]
    wide = np.zeros(good.shape[:-1] + (2 * good.shape[-1],), good.dtype)[..., ::2]
    msg = _message(case, ValueError, **{first: wide})
    assert re.fullmatch(rf"{case}: argument '{first}' must be C-contiguous \(got strides "
                        rf"\(.*\) for shape \(.*\)\); pass numpy\.ascontiguousarray\({first}\)",
                        msg), msg


@pytest.mark.parametrize("case", CALLS)
def test_companion_of_another_dtype(case):
    first, companion = CALLS[case][2], CALLS[case][4]
    good = CALLS[case][1]()[companion]
    msg = _message(case, TypeError, **{companion: good.astype(np.float64)})
    assert msg.startswith(f"{case}: argument '{companion}' has dtype float64; expected float32 "
                          f"(the dtype of '"), msg
    assert msg.endswith("'); one call uses one dtype"), msg


@pytest.mark.parametrize("case", CALLS)
def test_read_only_output(case):
    out = CALLS[case][3]
    bad = CALLS[case][1]()[out]
    bad.flags.writeable = False
    assert _message(case, ValueError, **{out: bad}) == (
        f"{case}: output argument '{out}' is read-only; expected a writeable array")


@pytest.mark.parametrize("case", [c for c in CALLS if CALLS[c][5]])
@pytest.mark.parametrize("value,shown", [("0.5", "str '0.5'"), (True, "bool True"),
                                         (np.bool_(False), f"bool {np.bool_(False)!r}"), (None, "None")])
def test_real_number_argument(case, value, shown):
    # one rule (the one real-number helper): a string that parses, or a bool, is a wrong call
    scalar = CALLS[case][5]
    assert _message(case, TypeError, **{scalar: value}) == (
        f"{case}: argument '{scalar}' must be a real number, got {shown}")
