"""Bad calls into the blas, dense, activations, batchnorm and dropout kernels: every wrong dtype,
shape, layout, read-only output, aliasing or bad scalar raises TypeError/ValueError naming the
argument (and never crashes the interpreter)."""
import numpy as np
import pytest

from dlrun.kernels.activations import activation_backward, activation_forward
from dlrun.kernels.batchnorm import (batchnorm_backward, batchnorm_forward_eval,
                                     batchnorm_forward_train)
from dlrun.kernels.blas import gemm, gemv
from dlrun.kernels.dense import dense_backward, dense_forward
from dlrun.kernels.dropout import dropout_backward, dropout_forward

N, DIN, DOUT = 4, 6, 3


def _a(*shape, dtype=np.float32):
    return np.random.default_rng(sum(shape)).uniform(0.5, 1.5, shape).astype(dtype)


# name -> (function, argument names in call order, builder of valid arguments, output names)
CASES = {
    "gemm": (gemm, ["a", "b", "c", "trans_a", "trans_b", "alpha", "beta"],
             lambda: dict(a=_a(N, DIN), b=_a(DIN, DOUT), c=_a(N, DOUT), trans_a=False,
                          trans_b=False, alpha=1.0, beta=0.0), {"c"}),
    "gemv": (gemv, ["a", "x", "y", "trans", "alpha", "beta"],
             lambda: dict(a=_a(N, DIN), x=_a(DIN), y=_a(N), trans=False, alpha=1.0, beta=0.0),
             {"y"}),
    "activation_forward": (
        activation_forward, ["name", "x", "y", "alpha", "bias"],
        lambda: dict(name="tanh", x=_a(N, DIN), y=_a(N, DIN), alpha=0.0, bias=_a(DIN)), {"y"}),
    "activation_backward": (
        activation_backward, ["name", "y", "dy", "dx", "alpha", "x"],
        lambda: dict(name="gelu", y=_a(N, DIN), dy=_a(N, DIN), dx=_a(N, DIN), alpha=0.0,
                     x=_a(N, DIN)), {"dx"}),
    "dense_forward": (
        dense_forward, ["x", "w", "b", "y", "activation", "alpha"],
        lambda: dict(x=_a(N, DIN), w=_a(DIN, DOUT), b=_a(DOUT), y=_a(N, DOUT),
                     activation="relu", alpha=0.0), {"y"}),
    "dense_backward": (
        dense_backward, ["x", "w", "dz", "dx", "dw", "db"],
        lambda: dict(x=_a(N, DIN), w=_a(DIN, DOUT), dz=_a(N, DOUT), dx=_a(N, DIN),
                     dw=_a(DIN, DOUT), db=_a(DOUT)), {"dx", "dw", "db"}),
    "batchnorm_forward_train": (
        batchnorm_forward_train,
        ["x", "gamma", "beta", "running_mean", "running_var", "momentum", "eps", "y", "xhat",
         "inv_std"],
        lambda: dict(x=_a(N, DIN), gamma=_a(DIN), beta=_a(DIN), running_mean=_a(DIN),
                     running_var=_a(DIN), momentum=0.9, eps=1e-5, y=_a(N, DIN),
                     xhat=_a(N, DIN), inv_std=_a(DIN)),
        {"y", "xhat", "inv_std", "running_mean", "running_var"}),
    "batchnorm_forward_eval": (
        batchnorm_forward_eval,
        ["x", "gamma", "beta", "running_mean", "running_var", "eps", "y"],
        lambda: dict(x=_a(N, DIN), gamma=_a(DIN), beta=_a(DIN), running_mean=_a(DIN),
                     running_var=_a(DIN), eps=1e-5, y=_a(N, DIN)), {"y"}),
    "batchnorm_backward": (
        batchnorm_backward, ["dy", "xhat", "gamma", "inv_std", "dx", "dgamma", "dbeta"],
        lambda: dict(dy=_a(N, DIN), xhat=_a(N, DIN), gamma=_a(DIN), inv_std=_a(DIN),
                     dx=_a(N, DIN), dgamma=_a(DIN), dbeta=_a(DIN)), {"dx", "dgamma", "dbeta"}),
    "dropout_forward": (
        dropout_forward, ["x", "rate", "seed", "counter", "y", "mask"],
        lambda: dict(x=_a(N, DIN), rate=0.5, seed=1, counter=0, y=_a(N, DIN),
                     mask=np.ones((N, DIN), np.uint8)), {"y", "mask"}),
    "dropout_backward": (
        dropout_backward, ["dy", "mask", "rate", "dx"],
        lambda: dict(dy=_a(N, DIN), mask=np.ones((N, DIN), np.uint8), rate=0.5,
                     dx=_a(N, DIN)), {"dx"}),
}


def _call(case, **changes):
    fn, order, build, _ = CASES[case]
    kwargs = build()
    kwargs.update(changes)
    return fn(*[kwargs[k] for k in order])


def _array_args(case):
    _, order, build, outs = CASES[case]
    valid = build()
    return [(case, k, k in outs) for k in order if isinstance(valid[k], np.ndarray)]


ARRAY_ARGS = [item for case in CASES for item in _array_args(case)]
IDS = [f"{c}-{k}" for c, k, _ in ARRAY_ARGS]


def _raises(case, exc, name, **changes):
    with pytest.raises(exc) as info:
        _call(case, **changes)
    msg = str(info.value)
    assert msg.startswith(case + ":"), msg
    assert f"'{name}'" in msg, f"message does not name '{name}': {msg}"
    return msg


@pytest.mark.parametrize("case", CASES)
def test_valid_call_works(case):
    _call(case)
    arrays = CASES[case][2]()
    arrays = {k: v.astype(np.float64) if isinstance(v, np.ndarray) and v.dtype == np.float32
              else v for k, v in arrays.items()}
    _call(case, **arrays)      # float64 throughout works too


@pytest.mark.parametrize("case,name,is_out", ARRAY_ARGS, ids=IDS)
def test_wrong_dtype(case, name, is_out):
    good = CASES[case][2]()[name]
    bad = good.astype(np.float32 if good.dtype == np.uint8 else np.int64)
    msg = _raises(case, TypeError, name, **{name: bad})
    assert "dtype" in msg


@pytest.mark.parametrize("case,name,is_out", ARRAY_ARGS, ids=IDS)
def test_mixed_float_dtypes(case, name, is_out):
    good = CASES[case][2]()[name]
    if good.dtype == np.uint8:
        pytest.skip("the mask is always uint8")
    with pytest.raises(TypeError, match="dtype") as info:
        _call(case, **{name: good.astype(np.float64)})
    assert f"'{name}'" in str(info.value) or "the dtype of" in str(info.value)


@pytest.mark.parametrize("case,name,is_out", ARRAY_ARGS, ids=IDS)
def test_not_an_array(case, name, is_out):
    good = CASES[case][2]()[name]
    _raises(case, TypeError, name, **{name: good.tolist()})


@pytest.mark.parametrize("case,name,is_out", ARRAY_ARGS, ids=IDS)
def test_non_contiguous(case, name, is_out):
    good = CASES[case][2]()[name]
    wide = np.zeros(good.shape[:-1] + (2 * good.shape[-1],), good.dtype)
    bad = wide[..., ::2]
    bad[...] = good
    msg = _raises(case, ValueError, name, **{name: bad})
    assert "contiguous" in msg


@pytest.mark.parametrize("case,name,is_out", ARRAY_ARGS, ids=IDS)
def test_fortran_order(case, name, is_out):
    good = CASES[case][2]()[name]
    if good.ndim < 2:
        pytest.skip("1-D arrays are both C and Fortran contiguous")
    _raises(case, ValueError, name, **{name: np.asfortranarray(good)})


@pytest.mark.parametrize("case,name,is_out", ARRAY_ARGS, ids=IDS)
def test_wrong_shape(case, name, is_out):
    good = CASES[case][2]()[name]
    bad = np.concatenate([good, good[..., :1]], axis=-1)     # one extra column
    with pytest.raises(ValueError, match="shape") as info:
        _call(case, **{name: bad})
    assert str(info.value).startswith(case + ":")


@pytest.mark.parametrize("case,name,is_out", ARRAY_ARGS, ids=IDS)
def test_wrong_ndim_or_byte_order(case, name, is_out):
    good = CASES[case][2]()[name]
    if good.dtype != np.uint8:
        # a byte-swapped float array has the wrong dtype (">f4" is not float32): a TypeError,
        # as in every kernel family since the argument checks were unified
        msg = _raises(case, TypeError, name, **{name: good.astype(good.dtype.newbyteorder())})
        assert "native byte order" in msg
    if case.startswith(("activation", "dropout")):
        return          # element-wise kernels accept any number of dimensions
    bad = good[None]
    _raises(case, ValueError, name, **{name: bad})


@pytest.mark.parametrize("case,name,is_out", [a for a in ARRAY_ARGS if a[2]],
                         ids=[i for i, a in zip(IDS, ARRAY_ARGS) if a[2]])
def test_read_only_output(case, name, is_out):
    bad = CASES[case][2]()[name]
    bad.setflags(write=False)
    msg = _raises(case, ValueError, name, **{name: bad})
    assert "read-only" in msg


@pytest.mark.parametrize("case,name,is_out", [a for a in ARRAY_ARGS if a[2]],
                         ids=[i for i, a in zip(IDS, ARRAY_ARGS) if a[2]])
def test_output_partially_overlapping_an_input(case, name, is_out):
    fn, order, build, outs = CASES[case]
    kwargs = build()
    out = kwargs[name]
    other = [k for k in order if isinstance(kwargs[k], np.ndarray) and k != name
             and k not in outs][0]
    # one raw buffer holding an input, with the output starting 8 bytes into it
    src = kwargs[other]
    raw = np.zeros(src.nbytes + out.nbytes + 8, np.uint8)
    kwargs[other] = raw[:src.nbytes].view(src.dtype).reshape(src.shape)
    kwargs[other][...] = src
    kwargs[name] = raw[8:8 + out.nbytes].view(out.dtype).reshape(out.shape)
    with pytest.raises(ValueError, match="overlaps") as info:
        fn(*[kwargs[k] for k in order])
    assert f"'{name}'" in str(info.value)


def test_none_for_required_arrays():
    _raises("gemm", TypeError, "a", a=None)
    _raises("dense_forward", TypeError, "w", w=None)
    _raises("dense_backward", TypeError, "dw", dw=None)
    _raises("batchnorm_forward_train", TypeError, "gamma", gamma=None)
    _raises("dropout_forward", TypeError, "mask", mask=None)


def test_zero_dimensional_array():
    _raises("activation_forward", ValueError, "x", x=np.ones((), np.float32))


@pytest.mark.parametrize("case,changes,exc,name", [
    ("gemm", dict(alpha="2"), TypeError, "alpha"),
    ("gemm", dict(beta=float("nan")), ValueError, "beta"),
    ("gemm", dict(b=_a(DIN + 1, DOUT)), ValueError, "a"),
    ("gemv", dict(alpha=None), TypeError, "alpha"),
    ("gemm", dict(trans_a="yes"), TypeError, "trans_a"),
    ("gemv", dict(trans=2), TypeError, "trans"),
    ("activation_forward", dict(name="relux"), ValueError, "relux"),
    ("activation_forward", dict(name=3), TypeError, "'name'"),
    ("dense_forward", dict(activation=None), TypeError, "'activation'"),
    ("activation_forward", dict(name="leaky_relu", alpha=-0.1), ValueError, "alpha"),
    ("activation_forward", dict(alpha=float("inf")), ValueError, "alpha"),
    ("activation_backward", dict(x=None), ValueError, "x"),
    ("activation_forward", dict(bias=_a(DIN + 1)), ValueError, "bias"),
    ("activation_forward", dict(bias=_a(DIN, dtype=np.float64)), TypeError, "bias"),
    ("activation_forward", dict(bias=_a(1, DIN)), ValueError, "bias"),
    ("dense_forward", dict(activation="softmaxx"), ValueError, "softmaxx"),
    ("dense_forward", dict(w=_a(DIN + 1, DOUT)), ValueError, "w"),
    ("dense_backward", dict(w=_a(DIN + 1, DOUT)), ValueError, "w"),
    ("batchnorm_forward_train", dict(eps=0.0), ValueError, "eps"),
    ("batchnorm_forward_train", dict(momentum=1.5), ValueError, "momentum"),
    ("batchnorm_forward_train", dict(x=_a(0, DIN), y=_a(0, DIN), xhat=_a(0, DIN)),
     ValueError, "x"),
    ("batchnorm_forward_eval", dict(eps=-1.0), ValueError, "eps"),
    ("batchnorm_forward_eval", dict(running_var=-_a(DIN)), ValueError, "running_var"),
    ("dropout_forward", dict(rate=1.0), ValueError, "rate"),
    ("dropout_forward", dict(rate=-0.1), ValueError, "rate"),
    ("dropout_forward", dict(seed=-1), ValueError, "seed"),
    ("dropout_forward", dict(seed=2 ** 64), ValueError, "seed"),
    ("dropout_forward", dict(seed=1.5), TypeError, "seed"),
    ("dropout_forward", dict(counter="0"), TypeError, "counter"),
    ("dropout_backward", dict(rate=float("nan")), ValueError, "rate"),
])
def test_bad_scalars_and_mismatches(case, changes, exc, name):
    with pytest.raises(exc) as info:
        _call(case, **changes)
    msg = str(info.value)
    assert msg.startswith(case + ":") and name in msg, msg


def test_accumulate_flag_must_be_boolean():
    kw = CASES["dense_backward"][2]()
    with pytest.raises(TypeError, match="'accumulate'"):
        dense_backward(*[kw[k] for k in CASES["dense_backward"][1]], accumulate="no")
    kw = CASES["batchnorm_backward"][2]()
    with pytest.raises(TypeError, match="'accumulate'"):
        batchnorm_backward(*[kw[k] for k in CASES["batchnorm_backward"][1]], accumulate=None)
    kw = CASES["dense_backward"][2]()
    dense_backward(*[kw[k] for k in CASES["dense_backward"][1]], accumulate=np.bool_(True))


def test_unknown_activation_lists_the_known_ones():
    with pytest.raises(ValueError, match="known: linear, relu, leaky_relu, elu, sigmoid, tanh"):
        _call("activation_forward", name="Relu")


def test_exact_aliasing_allowed_where_documented():
    x = _a(N, DIN)
    activation_forward("relu", x, x)                       # y is x
    dy = _a(N, DIN)
    activation_backward("tanh", _a(N, DIN), dy, dy)        # dx is dy
    with pytest.raises(ValueError, match="overlaps"):
        gemm(x, _a(DIN, DIN), x)                           # c is a: BLAS would read its output
    w = _a(DIN, DIN)
    with pytest.raises(ValueError, match="'y' overlaps input 'x'"):
        dense_forward(x, w, None, x)
