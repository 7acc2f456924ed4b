"""``dropout RATE``: inverted dropout in training, identity at inference.

The mask comes from the kernel's counter-based generator: ``(seed, counter)`` fully
determines it, and the counter advances by the number of elements per call, so a run is
reproducible from the seed and can be resumed bit-exactly from a saved counter. In
data-parallel training a rank holding rows ``start:`` of a global batch starts at
``counter + start * features`` and advances by the global batch: the masks do not depend on
the number of ranks.
"""
import numpy as np

from dlrun.kernels import dropout as kdrop

from dlrun.runtime.layers.base import Layer
from dlrun.runtime.layers.registry import register


@register("dropout")
class Dropout(Layer):
    kind = "dropout"
    keeps_init = True

    def __init__(self, node, in_shape, index=0):
        super().__init__(node, in_shape, index)
        self.rate = float(node.params["rate"])
        self.seed = 0
        self.counter = 0
        self.enabled = True  # gradcheck turns dropout off
        self._mask = None
        self._shard = None   # (first row, rows of the global batch) in data-parallel training

    def seed_from(self, rng):
        self.seed = int(rng.integers(0, 2**63 - 1))
        self.counter = 0

    def random_state(self):
        return np.array([self.seed, self.counter], np.uint64)

    def set_random_state(self, state):
        self.seed, self.counter = int(state[0]), int(state[1])

    def set_randomness(self, enabled):
        self.enabled = bool(enabled)

    def set_shard(self, start, total):
        self._shard = (int(start), int(total)) if total else None

    def add_to_chain(self, chain):
        return True   # the identity at inference

    def to_onnx(self, g, ins):
        return ins[0]

    def forward(self, x, training):
        if not (training and self.enabled and self.rate > 0.0):
            self._mask = None
            return x
        n, d = x.shape[0], self.in_features
        y = self.buffer("y", n, d)
        mask = self.buffer("mask", n, d, np.uint8)
        start, total = self._shard if self._shard is not None else (0, n)
        # a shard of a global batch takes the mask rows one process would give those rows
        kdrop.dropout_forward(x, self.rate, self.seed, self.counter + start * d, y, mask)
        self.counter += total * d
        self._mask = mask
        return y

    def backward(self, dy):
        if self._mask is None:
            return dy
        dx = self.buffer("dx", dy.shape[0], self.in_features)
        kdrop.dropout_backward(dy, self._mask, self.rate, dx)
        return dx
