"""``embedding DIM``: ``y[n, t] := W[ids[n, t]]``, W (vocabulary, DIM) (``kernels/seq.pyx``).

The row of id 0 (padding) stays zero and gets no gradient; the gradient is written only in
the rows of the batch's ids (the rows written by the step before are zeroed first), so a
large vocabulary costs what the batch touches. ``out_lengths`` (1 + the last non-padding
position of each sample) lets the layers that pool over time ignore the padding.

When a ``conv1d`` is the embedding's only reader (``single_reader``), the convolution may
read the token ids and the table itself (``runtime/layers/conv1d.py``: a lookup of
``W[id] @ w[k]`` rows instead of a GEMM over the batch, where it pays) and then writes this
layer's whole gradient (``dense_gradient``) instead of handing it an input gradient.
"""
import numpy as np

from dlrun.errors import UsageError
from dlrun.kernels import seq as kseq

from dlrun.runtime.layers.base import Layer, ParamSpec
from dlrun.runtime.layers.registry import register


@register("embedding")
class Embedding(Layer):
    kind = "embedding"

    def __init__(self, node, in_shape, index=0):
        super().__init__(node, in_shape, index)
        self.dim = int(node.params["dim"])
        vocab = node.params.get("vocab")
        if vocab is None:
            raise UsageError(f"{self.describe()}: the embedding needs its vocabulary size: write "
                             f"'embedding {self.dim} vocab=N' (N counts the ids 0 for padding and 1 "
                             "for unknown tokens)")
        self.vocab = int(vocab)
        self._ids = None
        self._lengths = None
        self._y = None
        self._stale = 0
        self._dense = False          # the last gradient was written in every row
        self.single_reader = False   # set by the network: one layer reads the output

    def see_followers(self, followers):
        self.single_reader = bool(followers)

    def tokens_for(self, x):
        """(ids, table) of the forward that produced ``x``, for the single reader that
        computes from them; None when ``x`` is not this layer's latest output."""
        if not self.single_reader or x is not self._y:
            return None
        return self._ids, self.params["w"]

    def dense_gradient(self):
        """The gradient array, for the single reader to write in every row (the rows the
        next sparse step does not touch are zeroed then)."""
        self._mark[self._rows[:self._stale]] = 0
        self._stale = 0
        self._dense = True
        return self.grads["w"]

    def param_specs(self, l1=0.0, l2=0.0):
        return [ParamSpec("w", (self.vocab, self.dim), "weight", 0.0, 0.0)]

    def init_params(self, rng):
        w = self.params["w"]
        w[...] = rng.standard_normal(w.shape)   # N(0, 1), as PyTorch
        w[0] = 0                                # padding
        self._mark = np.zeros(self.vocab, np.uint8)
        self._rows = np.zeros(self.vocab, np.int64)
        self._stale = 0

    def random_input(self, rng, n):
        ids = rng.integers(0, self.vocab, (n, self.in_features))
        ids[:, -2:] = 0   # padding at the end
        return ids.astype(np.float64)

    def forward(self, x, training):
        n = x.shape[0]
        y = self.buffer("y", n, self.out_features)
        lengths = self.buffer("lengths", n, 1, np.int64).reshape(n)
        kseq.embedding_forward(x, self.params["w"], y.reshape((n,) + self.out_shape), lengths)
        self._ids, self._lengths, self._y = x, lengths, y
        return y

    def out_lengths(self):
        return self._lengths

    def backward(self, dy):
        if dy is None:   # the reader wrote the gradient (dense_gradient)
            return None
        if self._dense:
            self.grads["w"][...] = 0
            self._dense = False
        n = dy.shape[0]
        self._stale = kseq.embedding_backward(self._ids, dy.reshape((n,) + self.out_shape),
                                              self.grads["w"], self._mark, self._rows, self._stale)
        return None
