"""``conv1d FILTERS K [ACTIVATION]``: a convolution over time of (n, T, C) batches, channels
last, W (K, C, F): one im2col of the batch and one GEMM (``kernels/seq.pyx``), bias and
activation fused into the output pass.

Reading an embedding (its only reader), the convolution of a batch is a lookup: each tap k
of W gives a table ``E @ W[k]`` (vocabulary x F), and an output step is the sum of the K
rows its tokens pick (``kseq.embed_conv1d_forward``); backward scatters dZ into the tables'
shape and takes dW and the embedding's gradient from it by GEMMs of the vocabulary's size.
It costs ``V*C*F*K`` multiply-adds for the tables and ``n*T'*K*F`` adds for the lookup,
against ``n*T'*K*C*F`` for the GEMM: ``lookup_pays`` chooses per batch. The two give the
same numbers to rounding.
"""
import numpy as np

from dlrun.kernels import seq as kseq

from dlrun.runtime.layers.init import WeightedLayer, init_weights
from dlrun.runtime.layers.registry import register


def shorter(lengths, out, stride, steps):
    """The valid lengths after a window layer: output step o counts while the input step it is
    aligned with, o * stride, is one of the input's valid steps: ceil(length / stride), at most
    the output's steps (a sample of length 0 stays 0)."""
    np.floor_divide(lengths + (stride - 1), stride, out=out)
    np.minimum(out, steps, out=out)
    out[lengths == 0] = 0
    return out


#: what one added row element of the lookup costs, counted in GEMM multiply-adds (measured
#: on the langid shapes: the gather runs at about an eighth of sgemm's rate per element)
LOOKUP_ADD_COST = 8


def lookup_pays(vocab, dim, rows):
    """Whether the lookup (``vocab`` x ``dim`` embedding; ``rows`` = n*T' output steps) is
    cheaper than the GEMM over the batch: V*C + g*rows < rows*C per tap and filter."""
    return vocab * dim + LOOKUP_ADD_COST * rows < rows * dim


@register("conv1d")
class Conv1D(WeightedLayer):
    kind = "conv1d"

    def __init__(self, node, in_shape, index=0):
        super().__init__(node, in_shape, index)
        p = node.params
        self.filters = int(p["filters"])
        self.k = int(p["kernel"])
        self.stride = int(p["stride"])
        self.dilation = int(p["dilation"])
        _, self.pads = self.spec.geometry(node, self.in_shape)
        self.w_shape = (self.k, self.in_shape[1], self.filters)
        self._x = self._y = self._z = None
        self._tokens = None   # (ids, table) of the embedding when the last forward looked up

    def param_specs(self, l1=0.0, l2=0.0):
        return self.weight_specs(self.w_shape, (self.filters,), l1, l2)

    def init_params(self, rng):
        k, c, f = self.w_shape
        init_weights(self.params["w"], self.resolved_init(), rng, fans=(k * c, k * f))
        if self.use_bias:
            self.params["b"][...] = 0

    def channels_view(self, a):
        return a.reshape(-1, self.filters, 1)   # (n, length, filters): channels last

    def _args(self):
        return self.stride, self.pads[0], self.pads[1], self.dilation

    def _col(self, n):
        return self.buffer("col", n, self.out_shape[0] * self.k * self.in_shape[1]).reshape(-1)

    def _lookup(self, x):
        """The embedding's (ids, table) when this batch is cheaper to look up, else None."""
        src = self.producers[0] if self.producers else None
        tokens = src.tokens_for(x) if src is not None and src.kind == "embedding" else None
        if tokens is None:
            return None
        ids, table = tokens
        return tokens if lookup_pays(table.shape[0], table.shape[1], x.shape[0] * self.out_shape[0]) else None

    def _table(self, vocab):
        return self.buffer("table", self.k * vocab, self.filters).reshape(self.k, vocab, self.filters)

    def forward(self, x, training):
        n = x.shape[0]
        w, b = self.params["w"], self.params.get("b")
        tokens = self._tokens = self._lookup(x)
        if tokens is not None:
            ids, e = tokens

            def conv(out, activation, alpha):
                kseq.embed_conv1d_forward(ids, e, w, b, out.reshape((n,) + self.out_shape),
                                          self._table(e.shape[0]), *self._args(),
                                          activation=activation, alpha=alpha)
        else:
            x3 = x.reshape((n,) + self.in_shape)
            col = self._col(n)

            def conv(out, activation, alpha):
                kseq.conv1d_forward(x3, w, b, out.reshape((n,) + self.out_shape), col, *self._args(),
                                    activation=activation, alpha=alpha)

        self._x = x
        return self.fused_forward(self.buffer("y", n, self.out_features), conv)

    def out_lengths(self):
        lengths = self.in_lengths()
        if lengths is None:
            return None
        out = self.buffer("lengths", lengths.shape[0], 1, np.int64).reshape(-1)
        return shorter(lengths, out, self.stride, self.out_shape[0])

    def backward(self, dy):
        n = dy.shape[0]
        self.activation_grad(dy)
        if self._tokens is not None:   # the embedding's gradient is written here, whole
            ids, e = self._tokens
            kseq.embed_conv1d_backward(ids, e, self.params["w"], dy.reshape((n,) + self.out_shape),
                                       self.producers[0].dense_gradient(), self.grads["w"],
                                       self.grads.get("b"), self._table(e.shape[0]), *self._args())
            return None
        dx = self.buffer("dx", n, self.in_features) if self.need_dx else None
        kseq.conv1d_backward(self._x.reshape((n,) + self.in_shape), self.params["w"],
                             dy.reshape((n,) + self.out_shape),
                             None if dx is None else dx.reshape((n,) + self.in_shape),
                             self.grads["w"], self.grads.get("b"), self._col(n), *self._args())
        self.drop_flat_bias_grad(self.act)
        return dx
