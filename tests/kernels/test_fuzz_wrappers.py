"""Hypothesis-driven calls into every kernel wrapper with random shapes, dtypes, strides,
layouts, read-only, zero-size, aliased and non-array arguments, and hostile scalars.

Whatever the arguments, a call returns or raises TypeError/ValueError/OverflowError (IndexError
for an index out of range); it never
crashes the interpreter, never writes outside the arrays it was given (every array sits
between guard bytes, and the gaps of a strided array are checked too) and never changes a
read-only array.

A crash would kill pytest, so each kernel module is fuzzed in a subprocess (this file run as
a script); the parent reports the exit status and the last call made.
``DLRUN_KERNEL_FUZZ_EXAMPLES`` sets the examples per function (default 150).
"""
from __future__ import annotations

import faulthandler
import importlib
import math
import os
import subprocess
import sys

import numpy as np

EXAMPLES = int(os.environ.get("DLRUN_KERNEL_FUZZ_EXAMPLES", "150"))
MODULES = ["blas", "activations", "dense", "batchnorm", "dropout", "losses", "optim", "chain", "conv", "pool",
           "seq"]
ACTS = ["linear", "relu", "leaky_relu", "elu", "sigmoid", "tanh", "softplus", "gelu", "swish", "softmax"]

# argument kinds: ("f", dims) float array; ("f?", dims) float array or None; ("i", dims) int labels;
# ("u8", dims) mask; ("t", dims) labels (n,) or probabilities (n, k); ("s", values) scalar;
# ("name", values); ("b",) flag; ("int", values); ("grads",) list of arrays; ("cols", dims) ascending
# int64 column indices; ("idx", dims) int64 row indices; ("ab", dims) float64 scalar or vector;
# ("dtype",) a dtype; ("dim", name) the value of a dimension; ("shape", dims) a tuple of dimensions. Dims: n, d, k, o in
# [0, 5]; nd = n*d, dk = d*k, dko = d*k*o, one = 1.
F = {
    "blas": {
        "gemm": [("a", "f", ("n", "d")), ("b", "f", ("d", "k")), ("c", "f", ("n", "k")), ("trans_a", "b"),
                 ("trans_b", "b"), ("alpha", "s"), ("beta", "s")],
        "gemv": [("a", "f", ("n", "d")), ("x", "f", ("d",)), ("y", "f", ("n",)), ("trans", "b"), ("alpha", "s"),
                 ("beta", "s")],
    },
    "activations": {
        "activation_forward": [("name", "name"), ("x", "f", ("n", "d")), ("y", "f", ("n", "d")), ("alpha", "s"),
                               ("bias", "f?", ("d",))],
        "activation_backward": [("name", "name"), ("y", "f", ("n", "d")), ("dy", "f", ("n", "d")),
                                ("dx", "f", ("n", "d")), ("alpha", "s"), ("x", "f?", ("n", "d"))],
    },
    "dense": {
        "dense_forward": [("x", "f", ("n", "d")), ("w", "f", ("d", "k")), ("b", "f?", ("k",)),
                          ("y", "f", ("n", "k")), ("activation", "name"), ("alpha", "s")],
        "dense_backward": [("x", "f", ("n", "d")), ("w", "f", ("d", "k")), ("dz", "f", ("n", "k")),
                           ("dx", "f?", ("n", "d")), ("dw", "f", ("d", "k")), ("db", "f?", ("k",)),
                           ("accumulate", "b")],
        "dense_forward_compact": [("x", "f", ("n", "d")), ("w", "f", ("d", "k")), ("b", "f?", ("k",)),
                                  ("y", "f", ("n", "k")), ("activation", "name"), ("alpha", "s"),
                                  ("cols", "cols", ("d",)), ("xc", "f", ("nd",)), ("wc", "f", ("dk",)),
                                  ("max_fraction", "s")],
        "dense_backward_compact": [("xc", "f", ("nd",)), ("cols", "cols", ("d",)), ("k", "int"),
                                   ("dz", "f", ("n", "k")), ("dw", "f", ("d", "k")), ("db", "f?", ("k",)),
                                   ("scratch", "f", ("dk",))],
    },
    "batchnorm": {
        "batchnorm_forward_train": [("x", "f", ("n", "d")), ("gamma", "f", ("d",)), ("beta", "f", ("d",)),
                                    ("running_mean", "f", ("d",)), ("running_var", "f", ("d",)),
                                    ("momentum", "s"), ("eps", "s"), ("y", "f", ("n", "d")),
                                    ("xhat", "f", ("n", "d")), ("inv_std", "f", ("d",))],
        "batchnorm_forward_eval": [("x", "f", ("n", "d")), ("gamma", "f", ("d",)), ("beta", "f", ("d",)),
                                   ("running_mean", "f", ("d",)), ("running_var", "f", ("d",)), ("eps", "s"),
                                   ("y", "f", ("n", "d"))],
        "batchnorm_backward": [("dy", "f", ("n", "d")), ("xhat", "f", ("n", "d")), ("gamma", "f", ("d",)),
                               ("inv_std", "f", ("d",)), ("dx", "f?", ("n", "d")), ("dgamma", "f", ("d",)),
                               ("dbeta", "f", ("d",)), ("accumulate", "b")],
        "batchnorm2d_forward_train": [("x", "f", ("n", "d", "k", "o")), ("gamma", "f", ("d",)),
                                      ("beta", "f", ("d",)), ("running_mean", "f", ("d",)),
                                      ("running_var", "f", ("d",)), ("momentum", "s"), ("eps", "s"),
                                      ("y", "f", ("n", "d", "k", "o")), ("xhat", "f", ("n", "d", "k", "o")),
                                      ("inv_std", "f", ("d",))],
        "batchnorm2d_forward_eval": [("x", "f", ("n", "d", "k", "o")), ("gamma", "f", ("d",)),
                                     ("beta", "f", ("d",)), ("running_mean", "f", ("d",)),
                                     ("running_var", "f", ("d",)), ("eps", "s"),
                                     ("y", "f", ("n", "d", "k", "o"))],
        "batchnorm2d_backward": [("dy", "f", ("n", "d", "k", "o")), ("xhat", "f", ("n", "d", "k", "o")),
                                 ("gamma", "f", ("d",)), ("inv_std", "f", ("d",)),
                                 ("dx", "f?", ("n", "d", "k", "o")), ("dgamma", "f", ("d",)),
                                 ("dbeta", "f", ("d",)), ("accumulate", "b")],
    },
    "dropout": {
        "dropout_forward": [("x", "f", ("n", "d")), ("rate", "s"), ("seed", "int"), ("counter", "int"),
                            ("y", "f", ("n", "d")), ("mask", "u8", ("n", "d"))],
        "dropout_backward": [("dy", "f", ("n", "d")), ("mask", "u8", ("n", "d")), ("rate", "s"),
                             ("dx", "f", ("n", "d"))],
    },
    "losses": {
        "softmax_cross_entropy": [("logits", "f", ("n", "k")), ("target", "t", ("n", "k")),
                                  ("grad", "f", ("n", "k")), ("label_smoothing", "s")],
        "sigmoid_binary_cross_entropy": [("logits", "f", ("n", "o")), ("target", "f", ("n", "o")),
                                         ("grad", "f", ("n", "o"))],
        "mse": [("pred", "f", ("n", "o")), ("target", "f", ("n", "o")), ("grad", "f", ("n", "o"))],
        "mae": [("pred", "f", ("n", "o")), ("target", "f", ("n", "o")), ("grad", "f", ("n", "o"))],
        "huber": [("pred", "f", ("n", "o")), ("target", "f", ("n", "o")), ("grad", "f", ("n", "o")),
                  ("delta", "s")],
        "_exp_nonpos_check": [("x", "f", ("n",))],
    },
    "optim": {
        "sgd_update": [("p", "f", ("n",)), ("g", "f", ("n",)), ("velocity", "f?", ("n",)), ("lr", "s"),
                       ("momentum", "s"), ("nesterov", "b"), ("l1", "s"), ("l2", "s")],
        "adam_update": [("p", "f", ("n",)), ("g", "f", ("n",)), ("m", "f", ("n",)), ("v", "f", ("n",)),
                        ("lr", "s"), ("beta1", "s"), ("beta2", "s"), ("eps", "s"), ("step", "int"), ("l1", "s"),
                        ("l2", "s"), ("weight_decay", "s")],
        "rmsprop_update": [("p", "f", ("n",)), ("g", "f", ("n",)), ("sq", "f", ("n",)), ("lr", "s"),
                           ("rho", "s"), ("eps", "s"), ("l1", "s"), ("l2", "s")],
        "adagrad_update": [("p", "f", ("n",)), ("g", "f", ("n",)), ("acc", "f", ("n",)), ("lr", "s"),
                           ("eps", "s"), ("l1", "s"), ("l2", "s")],
        "clip_grad_norm": [("grads", "grads"), ("max_norm", "s")],
    },
    "conv": {
        "conv2d_output_shape": [("x_shape", "shape", ("n", "d", "k", "o")), ("w_shape", "shape", ("k", "d", "o", "o")),
                                ("stride", "int"), ("padding", "int"), ("dilation", "int")],
        "conv2d_workspace_size": [("x_shape", "shape", ("n", "d", "k", "o")),
                                  ("w_shape", "shape", ("k", "d", "o", "o")), ("stride", "int"), ("padding", "int"),
                                  ("dilation", "int"), ("groups", "int"), ("batch_block", "int")],
        "conv2d_forward": [("x", "f", ("n", "d", "k", "o")), ("w", "f", ("k", "d", "one", "one")), ("b", "f?", ("k",)),
                           ("y", "f", ("n", "k", "k", "o")), ("col", "f", ("dko",)), ("stride", "int"),
                           ("padding", "int"), ("dilation", "int"), ("groups", "int"), ("activation", "name"),
                           ("alpha", "s")],
        "conv2d_backward": [("x", "f", ("n", "d", "k", "o")), ("w", "f", ("k", "d", "one", "one")),
                            ("dz", "f", ("n", "k", "k", "o")), ("dx", "f?", ("n", "d", "k", "o")),
                            ("dw", "f", ("k", "d", "one", "one")), ("db", "f?", ("k",)), ("col", "f", ("dko",)),
                            ("stride", "int"), ("padding", "int"), ("dilation", "int"), ("groups", "int"),
                            ("accumulate", "b")],
    },
    "pool": {
        "pool2d_output_shape": [("x_shape", "shape", ("n", "d", "k", "o")), ("kernel", "int"), ("stride", "int"),
                                ("padding", "int")],
        "maxpool2d_forward": [("x", "f", ("n", "d", "k", "o")), ("y", "f", ("n", "d", "k", "o")),
                              ("argmax", "idx", ("n", "d", "k", "o")), ("kernel", "int"), ("stride", "int"),
                              ("padding", "int")],
        "maxpool2d_backward": [("dy", "f", ("n", "d", "k", "o")), ("argmax", "idx", ("n", "d", "k", "o")),
                               ("dx", "f", ("n", "d", "k", "o"))],
        "avgpool2d_forward": [("x", "f", ("n", "d", "k", "o")), ("y", "f", ("n", "d", "k", "o")), ("kernel", "int"),
                              ("stride", "int"), ("padding", "int"), ("count_include_pad", "b")],
        "avgpool2d_backward": [("dy", "f", ("n", "d", "k", "o")), ("dx", "f", ("n", "d", "k", "o")),
                               ("kernel", "int"), ("stride", "int"), ("padding", "int"), ("count_include_pad", "b")],
        "global_avgpool_forward": [("x", "f", ("n", "d", "k", "o")), ("y", "f", ("n", "d"))],
        "global_avgpool_backward": [("dy", "f", ("n", "d")), ("dx", "f", ("n", "d", "k", "o"))],
        "global_maxpool_forward": [("x", "f", ("n", "d", "k", "o")), ("y", "f", ("n", "d")),
                                   ("argmax", "idx", ("n", "d"))],
        "global_maxpool_backward": [("dy", "f", ("n", "d")), ("argmax", "idx", ("n", "d")),
                                    ("dx", "f", ("n", "d", "k", "o"))],
    },
    "seq": {
        "embedding_forward": [("ids", "f", ("n", "d")), ("w", "f", ("k", "o")), ("y", "f", ("n", "d", "o")),
                              ("lengths", "idx", ("n",))],
        "embedding_backward": [("ids", "f", ("n", "d")), ("dy", "f", ("n", "d", "o")), ("dw", "f", ("k", "o")),
                               ("mark", "u8", ("k",)), ("rows", "idx", ("k",)), ("n_stale", "int")],
        "conv1d_output_length": [("t", "int"), ("k", "int"), ("stride", "int"), ("pad_left", "int"),
                                 ("pad_right", "int"), ("dilation", "int")],
        "conv1d_forward": [("x", "f", ("n", "d", "k")), ("w", "f", ("o", "k", "d")), ("b", "f?", ("d",)),
                           ("y", "f", ("n", "d", "d")), ("col", "f", ("dko",)), ("stride", "int"),
                           ("pad_left", "int"), ("pad_right", "int"), ("dilation", "int"),
                           ("activation", "name"), ("alpha", "s")],
        "conv1d_backward": [("x", "f", ("n", "d", "k")), ("w", "f", ("o", "k", "d")), ("dz", "f", ("n", "d", "d")),
                            ("dx", "f?", ("n", "d", "k")), ("dw", "f", ("o", "k", "d")), ("db", "f?", ("d",)),
                            ("col", "f", ("dko",)), ("stride", "int"), ("pad_left", "int"), ("pad_right", "int"),
                            ("dilation", "int")],
        # ids (N, T), e (V, C), w (K, C, F), y (N, T', F), table (K, V, F)
        "embed_conv1d_forward": [("ids", "f", ("n", "d")), ("e", "f", ("k", "o")), ("w", "f", ("o", "o", "d")),
                                 ("b", "f?", ("d",)), ("y", "f", ("n", "d", "d")), ("table", "f", ("o", "k", "d")),
                                 ("stride", "int"), ("pad_left", "int"), ("pad_right", "int"), ("dilation", "int"),
                                 ("activation", "name"), ("alpha", "s")],
        "embed_conv1d_backward": [("ids", "f", ("n", "d")), ("e", "f", ("k", "o")), ("w", "f", ("o", "o", "d")),
                                  ("dz", "f", ("n", "d", "d")), ("de", "f", ("k", "o")), ("dw", "f", ("o", "o", "d")),
                                  ("db", "f?", ("d",)), ("table", "f", ("o", "k", "d")), ("stride", "int"),
                                  ("pad_left", "int"), ("pad_right", "int"), ("dilation", "int")],
        "pool1d_output_length": [("t", "int"), ("k", "int"), ("stride", "int"), ("pad_left", "int"),
                                 ("pad_right", "int")],
        "maxpool1d_forward": [("x", "f", ("n", "d", "k")), ("y", "f", ("n", "o", "k")),
                              ("argmax", "idx", ("n", "o", "k")), ("kernel", "int"), ("stride", "int"),
                              ("pad_left", "int"), ("pad_right", "int")],
        "maxpool1d_backward": [("dy", "f", ("n", "o", "k")), ("argmax", "idx", ("n", "o", "k")),
                               ("dx", "f", ("n", "d", "k")), ("kernel", "int"), ("stride", "int"),
                               ("pad_left", "int"), ("pad_right", "int")],
        "avgpool1d_forward": [("x", "f", ("n", "d", "k")), ("y", "f", ("n", "o", "k")), ("kernel", "int"),
                              ("stride", "int"), ("pad_left", "int"), ("pad_right", "int")],
        "avgpool1d_backward": [("dy", "f", ("n", "o", "k")), ("dx", "f", ("n", "d", "k")), ("kernel", "int"),
                               ("stride", "int"), ("pad_left", "int"), ("pad_right", "int")],
        "seq_global_max_forward": [("x", "f", ("n", "d", "k")), ("lengths", "idx", ("n",)), ("y", "f", ("n", "k")),
                                   ("argmax", "idx", ("n", "k"))],
        "seq_global_max_backward": [("dy", "f", ("n", "k")), ("argmax", "idx", ("n", "k")),
                                    ("dx", "f", ("n", "d", "k"))],
        "seq_global_avg_forward": [("x", "f", ("n", "d", "k")), ("lengths", "idx", ("n",)), ("y", "f", ("n", "k"))],
        "seq_global_avg_backward": [("dy", "f", ("n", "k")), ("lengths", "idx", ("n",)),
                                    ("dx", "f", ("n", "d", "k"))],
    },
    "chain": {
        "take_affine": [("x", "f", ("n", "d")), ("idx", "idx", ("k",)), ("a", "ab", ("d",)), ("b", "ab", ("d",)),
                        ("out", "f", ("k", "d"))],
        # a Chain built from these arguments, then run (see chain_call)
        "Chain": [("dtype", "dtype"), ("in_features", "dim", "d"), ("w", "f", ("d", "k")), ("b", "f?", ("k",)),
                  ("activation", "name"), ("alpha", "s"), ("gamma", "f", ("k",)), ("beta", "f", ("k",)),
                  ("mean", "f", ("k",)), ("var", "f", ("k",)), ("eps", "s"), ("last", "name"),
                  ("x", "f", ("n", "d")), ("a", "ab", ("d",)), ("bb", "ab", ("d",)), ("out", "f", ("n", "k"))],
        # an image Chain (C, H, W) = (d, k, o): every image op, then run (see chain_image_call)
        "ChainImage": [("dtype", "dtype"), ("c", "dim", "d"), ("h", "dim", "k"), ("w_", "dim", "o"),
                       ("w", "f", ("k", "d", "one", "one")), ("b", "f?", ("k",)), ("stride", "int"),
                       ("padding", "int"), ("dilation", "int"), ("groups", "int"), ("activation", "name"),
                       ("alpha", "s"), ("gamma", "f", ("k",)), ("beta", "f", ("k",)), ("mean", "f", ("k",)),
                       ("var", "f", ("k",)), ("eps", "s"), ("kernel", "int"), ("pool_stride", "int"),
                       ("x", "f", ("n", "dko")), ("a", "ab", ("dko",)), ("bb", "ab", ("dko",)),
                       ("out", "f", ("n", "k"))],
    },
}


def chain_call(mod):
    """``Chain(dtype, in_features)``, then dense, batch norm, activation, and ``run``."""

    def call(dtype, in_features, w, b, activation, alpha, gamma, beta, mean, var, eps, last, x, a, bb, out):
        chain = mod.Chain(dtype, in_features)
        chain.add_dense(w, b, activation, alpha)
        chain.add_batchnorm(gamma, beta, mean, var, eps)
        chain.add_activation(last)
        return chain.run(x, a, bb, out)

    return call

def chain_image_call(mod):
    """``Chain(dtype, (c, h, w))``, then conv2d, batch norm per channel, an addition and a
    concatenation of values (a graph), max and average pooling, global max pooling, flatten,
    and ``run``."""

    def call(dtype, c, h, w_, w, b, stride, padding, dilation, groups, activation, alpha, gamma, beta,
             mean, var, eps, kernel, pool_stride, x, a, bb, out):
        chain = mod.Chain(dtype, (c, h, w_))
        chain.add_conv2d(w, b, stride, padding, dilation, groups, activation, alpha)
        v = chain.value
        chain.add_batchnorm2d(gamma, beta, mean, var, eps)
        chain.add_add([v, chain.value, v])
        s = chain.value
        chain.add_concat([v, s], 0)
        chain.use(s)
        chain.add_maxpool(kernel, pool_stride, 0)
        chain.add_avgpool(kernel, pool_stride, padding)
        chain.add_global_maxpool()
        chain.add_flatten()
        return chain.run(x, a, bb, out)

    return call


GOOD_SCALARS = [0.0, 0.1, 0.5, 0.9, 1.0, 1e-5]
# valid values of the scalars whose range is narrower than GOOD_SCALARS
GOOD_BY_NAME = {"eps": [1e-8, 1e-5, 1e-3], "delta": [0.5, 1.0, 2.0], "rate": [0.0, 0.2, 0.5, 0.9],
                "beta1": [0.0, 0.5, 0.9], "beta2": [0.0, 0.9, 0.999], "rho": [0.0, 0.9, 0.99],
                "max_norm": [0.5, 1.0, 1e3, math.inf], "step": [1, 2, 100, 2**40],
                "max_fraction": [0.5, 0.9, 1.0], "k": [1, 2, 3], "stride": [1, 1, 2], "padding": [0, 0, 1],
                "dilation": [1, 1, 2], "groups": [1, 1, 2], "kernel": [1, 1, 2]}
BAD_SCALARS = [-1.0, 2.0, 1e-300, 1e300, math.nan, math.inf, -math.inf, 2**64, -2**70, True, None, "0.5", 3,
               np.float32(0.5), np.float64(-0.0), [0.5], 1 + 2j]
GOOD_INTS = [0, 1, 2, 7, 2**32, 2**63 - 1]
BAD_INTS = [-1, 2**63, 2**64 - 1, 2**64, 2**70, -2**63, 1.5, True, None, "3", np.int64(5), np.uint64(2**64 - 1)]
BAD_NAMES = ["", "RELU", "relu ", "bogus", None, 3, b"relu", "soft\x00max", "é"]
BAD_FLAGS = [0, 1, None, "yes", 2.0, np.bool_(True)]
OTHER_DTYPES = [np.int32, np.int64, np.uint8, np.float16, np.bool_, np.complex64, np.int8, object,
                np.dtype(">f4"), np.dtype(">f8")]
# arrays whose valid values are >= 0 (variances, accumulators of squares)
POSITIVE = {"var", "running_var", "v", "sq", "acc", "inv_std"}
GUARD = 64
# what Cython says by itself about a typed or fused argument: a wrapper says it in its own words
CYTHON_RAW = ["No matching signature", "Buffer dtype mismatch", "Buffer has wrong number of dimensions",
              "ndarray is not C-contiguous", "has incorrect type", "Expected ndarray, got"]
SENTINEL = 0xA5


class Arr:
    """An array placed between guard bytes (and, when strided, with gaps to check)."""

    def __init__(self, shape, dtype, layout, values, rng):
        dtype = np.dtype(dtype)
        shape = tuple(shape)
        full = shape
        if layout == "strided" and shape:
            full = shape[:-1] + (shape[-1] * 2,)
        elif layout == "fortran":
            full = shape[::-1]
        count = int(np.prod(full, dtype=np.int64))
        nbytes = count * dtype.itemsize
        self.raw = np.full(nbytes + 2 * GUARD, SENTINEL, np.uint8)
        self.nbytes = nbytes
        body = self.raw[GUARD:GUARD + nbytes]
        if dtype == object:
            self.body = None
            arr = np.empty(full, dtype=object)
            arr.flat[:] = [float(v) for v in rng.normal(0, 1, count)] if count else []
        else:
            self.body = body.view(dtype).reshape(full)
            self.body[...] = values(full, dtype)
            arr = self.body
        if layout == "strided" and shape:
            arr = arr[..., ::2]
        elif layout == "fortran":
            arr = arr.T
        if layout == "readonly":
            arr.flags.writeable = False
        self.arr = arr
        self.readonly = layout == "readonly"
        self.before = None if self.body is None else self.body.tobytes()
        self.strided = layout == "strided" and bool(shape)

    def check(self, where):
        if self.body is None:
            return
        guard = np.concatenate([self.raw[:GUARD], self.raw[GUARD + self.nbytes:]])
        assert (guard == SENTINEL).all(), f"{where}: bytes written outside the array"
        if self.strided:
            gaps = self.body[..., 1::2].tobytes()
            old = np.frombuffer(self.before, np.uint8).view(self.body.dtype).reshape(self.body.shape)[..., 1::2]
            assert gaps == old.tobytes(), f"{where}: the gaps of a strided array were written"
        if self.readonly:
            assert self.body.tobytes() == self.before, f"{where}: a read-only array was modified"


def _values(draw, st, rng, kind, dims):
    hostile = draw(st.sampled_from(["normal", "normal", "normal", "nan", "inf", "huge", "zero", "zero-columns"]))
    scramble = draw(st.integers(0, 3)) == 0  # index arrays: out of range or out of order

    def make(shape, dtype):
        if kind in ("cols", "idx") and dtype.kind in "iu":
            count = int(np.prod(shape, dtype=np.int64))
            if kind == "cols":
                v = np.arange(count)  # ascending columns: valid for any k <= count
            else:
                v = rng.integers(0, max(1, dims["n"]), count)
            if scramble and count:
                v = rng.integers(-3, count + 3, count)
            return v.reshape(shape).astype(dtype)
        if dtype.kind in "iu":
            if kind == "i":
                return rng.integers(-2, 8, shape) if dtype.kind == "i" else rng.integers(0, 8, shape)
            return rng.integers(0, 2, shape)
        if dtype.kind == "b":
            return rng.integers(0, 2, shape).astype(bool)
        v = rng.normal(0, 1, shape)
        if hostile == "nan" and v.size:
            v.flat[rng.integers(0, v.size)] = np.nan
        elif hostile == "inf" and v.size:
            v.flat[rng.integers(0, v.size)] = -np.inf
        elif hostile == "huge":
            v = v * 1e38
        elif hostile == "zero":
            v = v * 0
        elif hostile == "zero-columns" and v.ndim == 2 and v.shape[1]:
            v[:, rng.random(v.shape[1]) < 0.6] = 0  # the compact (sparse-column) paths
        if kind == "t":  # probabilities
            v = np.abs(v)
        return v.astype(dtype) if dtype.kind != "c" else v.astype(dtype)
    return make


def build_call(draw, st, spec):
    """Arguments for one call (and the Arr objects to check afterwards)."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    dims = {k: draw(st.integers(0, 5)) for k in ("n", "d", "k", "o")}
    if draw(st.booleans()):  # mostly non-empty shapes, so the maths runs
        dims = {k: max(1, v) for k, v in dims.items()}
    dims["nd"], dims["dk"] = dims["n"] * dims["d"], dims["d"] * dims["k"]
    dims["one"], dims["dko"] = 1, dims["d"] * dims["k"] * dims["o"]
    ftype = draw(st.sampled_from([np.float32, np.float64]))
    args, arrs, made = [], [], []
    # a third of the calls are valid, a third have one thing wrong, a third many
    mode = draw(st.sampled_from(["valid", "one", "many"]))
    wrong = draw(st.integers(0, len(spec) - 1)) if mode == "one" else None
    for i_arg, entry in enumerate(spec):
        name, kind = entry[0], entry[1]
        perturb = i_arg == wrong if mode != "many" else draw(st.integers(0, 9)) < 3
        if kind == "ab" and draw(st.booleans()):
            args.append(draw(st.sampled_from(BAD_SCALARS if perturb else [1.0, 0.5, 0.0, 1 / 255])))
            continue
        if kind == "idx" and not perturb and draw(st.integers(0, 4)) == 0:
            args.append(None)
            continue
        if kind in ("f", "f?", "i", "u8", "t", "cols", "idx", "ab"):
            shape = tuple(dims[d] for d in entry[2])
            dtype = {"f": ftype, "f?": ftype, "i": np.int64, "u8": np.uint8, "t": ftype, "cols": np.int64,
                     "idx": np.int64, "ab": np.float64}[kind]
            if kind == "f" and name == "x" and draw(st.integers(0, 3)) == 0:
                dtype = np.uint8  # raw inputs (take_affine, Chain.run)
            if kind == "t" and draw(st.booleans()):  # labels instead of probabilities
                shape, dtype, kind = shape[:1], draw(st.sampled_from([np.int64, np.int32])), "i"
            layout = "c"
            if kind == "f?" and draw(st.integers(0, 3)) == 0:
                args.append(None)
                continue
            if perturb:
                how = draw(st.sampled_from(["dtype", "strided", "fortran", "readonly", "shape", "ndim", "zero",
                                            "alias", "overlap", "none", "list", "scalar", "other-float"]))
                if how == "dtype":
                    dtype = draw(st.sampled_from(OTHER_DTYPES))
                elif how == "other-float":
                    dtype = np.float64 if ftype == np.float32 else np.float32
                elif how in ("strided", "fortran", "readonly"):
                    layout = how
                elif how == "shape" and shape:
                    i = draw(st.integers(0, len(shape) - 1))
                    shape = shape[:i] + (shape[i] + draw(st.sampled_from([1, -1, 3])),) + shape[i + 1:]
                    shape = tuple(max(0, s) for s in shape)
                elif how == "ndim":
                    shape = draw(st.sampled_from([(), shape + (2,), shape[1:], (1,) + shape]))
                elif how == "zero" and shape:
                    i = draw(st.integers(0, len(shape) - 1))
                    shape = shape[:i] + (0,) + shape[i + 1:]
                elif how == "alias" and made:
                    args.append(draw(st.sampled_from(made)).arr)
                    continue
                elif how == "overlap" and made:
                    other = draw(st.sampled_from(made)).arr
                    args.append(other.reshape(-1)[1:] if other.size > 1 and other.ndim else other)
                    continue
                elif how == "none":
                    args.append(None)
                    continue
                elif how == "list":
                    args.append([[1.0, 2.0], [3.0, 4.0]])
                    continue
                elif how == "scalar":
                    args.append(draw(st.sampled_from([1.0, 0, "x"])))
                    continue
            values = _values(draw, st, rng, kind, dims)
            if name in POSITIVE and np.dtype(dtype).kind == "f":
                values = (lambda make: lambda shp, dt: np.abs(make(shp, dt)))(values)
            a = Arr(shape, dtype, layout, values, rng)
            made.append(a)
            arrs.append(a)
            args.append(a.arr)
        elif kind == "shape":
            args.append(draw(st.sampled_from([(1, 2), None, (-1, 2, 3, 4), (2**62, 2**62, 2**62, 2**62), "abcd"]))
                        if perturb else tuple(dims[d] for d in entry[2]))
        elif kind == "dim":
            args.append(draw(st.sampled_from(BAD_INTS)) if perturb else dims[entry[2]])
        elif kind == "dtype":
            args.append(draw(st.sampled_from(OTHER_DTYPES + ["float32", None])) if perturb else ftype)
        elif kind == "s":
            args.append(draw(st.sampled_from(BAD_SCALARS if perturb else GOOD_BY_NAME.get(name, GOOD_SCALARS))))
        elif kind == "int":
            args.append(draw(st.sampled_from(BAD_INTS if perturb else GOOD_BY_NAME.get(name, GOOD_INTS))))
        elif kind == "b":
            args.append(draw(st.sampled_from(BAD_FLAGS)) if perturb else draw(st.booleans()))
        elif kind == "name":
            args.append(draw(st.sampled_from(BAD_NAMES if perturb else ACTS)))
        elif kind == "grads":
            k = draw(st.integers(0, 3))
            items = []
            for _ in range(k):
                shape = tuple(draw(st.integers(0, 4)) for _ in range(draw(st.integers(1, 2))))
                layout = draw(st.sampled_from(["c", "c", "strided", "readonly", "fortran"]))
                dtype = draw(st.sampled_from([np.float32, np.float64, np.float64, np.int32]))
                a = Arr(shape, dtype, layout, _values(draw, st, rng, "f", dims), rng)
                arrs.append(a)
                items.append(a.arr)
            form = draw(st.sampled_from(["list", "tuple", "one", "with-none", "not-a-list"]))
            if form == "tuple":
                args.append(tuple(items))
            elif form == "one" and items:
                args.append(items[0])
            elif form == "with-none":
                args.append(items + [None])
            elif form == "not-a-list":
                args.append("grads")
            else:
                args.append(items)
    return args, arrs


def describe(fn_name, args):
    parts = []
    for a in args:
        if isinstance(a, np.ndarray):
            flags = ("" if a.flags.c_contiguous else " non-contiguous") + ("" if a.flags.writeable else " read-only")
            parts.append(f"array{a.shape} {a.dtype}{flags}")
        else:
            parts.append(repr(a)[:40])
    return f"{fn_name}({', '.join(parts)})"


def fuzz_module(module_name, examples, log_path):
    """Run the hypothesis search over every function of one kernel module (in this process)."""
    from hypothesis import HealthCheck, given, settings, strategies as st

    mod = importlib.import_module(f"dlrun.kernels.{module_name}")
    log = open(log_path, "w", buffering=1)
    stats = {}
    for fn_name, spec in F[module_name].items():
        fn = {"Chain": chain_call, "ChainImage": chain_image_call}.get(fn_name, lambda m: getattr(m, fn_name))(mod)
        counts = {"ok": 0, "refused": 0}

        @settings(max_examples=examples, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        @given(st.data())
        def run(data):
            args, arrs = build_call(data.draw, st, spec)
            where = describe(fn_name, args)
            log.write(where + "\n")
            try:
                with np.errstate(all="ignore"):
                    fn(*args)
                counts["ok"] += 1
            except (TypeError, ValueError, OverflowError, IndexError) as err:  # IndexError: take_affine's idx
                assert str(err), f"{where}: {type(err).__name__} without a message"
                raw = [m for m in CYTHON_RAW if m in str(err)]
                assert not raw, f"{where}: Cython's own message leaked: {err}"
                counts["refused"] += 1
            for a in arrs:
                a.check(where)

        run()
        stats[fn_name] = counts
    log.close()
    return stats


def test_every_wrapper_is_fuzzed():
    """A new kernel wrapper must be added to ``F`` above."""
    missing = []
    for module_name in MODULES:
        mod = importlib.import_module(f"dlrun.kernels.{module_name}")
        public = [n for n, v in vars(mod).items() if callable(v) and not n.startswith("__")
                  and getattr(v, "__module__", mod.__name__) == mod.__name__]
        missing += [f"{module_name}.{n}" for n in public if n not in F[module_name]]
    assert not missing, f"kernel wrappers not fuzzed: {missing}"


def test_kernel_wrappers_never_crash(tmp_path):
    import pytest

    failures = []
    for module_name in MODULES:
        log = tmp_path / f"{module_name}.log"
        p = subprocess.run([sys.executable, __file__, module_name, str(EXAMPLES), str(log)],
                           capture_output=True, text=True, timeout=900)
        last = log.read_text().strip().splitlines()[-1:] if log.exists() else []
        if p.returncode != 0:
            failures.append(f"{module_name}: exit {p.returncode}; last call: {last}\n{p.stdout[-3000:]}\n"
                            f"{p.stderr[-3000:]}")
        else:
            print(p.stdout.strip())
    if failures:
        pytest.fail("\n\n".join(failures))


if __name__ == "__main__":
    faulthandler.enable()
    name, examples, log_path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    result = fuzz_module(name, examples, log_path)
    for fn_name, counts in result.items():
        print(f"{name}.{fn_name}: {counts['ok']} calls ran, {counts['refused']} refused")
