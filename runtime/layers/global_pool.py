"""``global_avgpool`` / ``global_maxpool``: each channel's mean / maximum over its whole
map, (n, C, H, W) -> (n, C) (``kernels/pool.pyx``), or over time, (n, T, C) -> (n, C), over
each sample's valid steps when the layers before it know them (an embedding's padding is
ignored; ``kernels/seq.pyx``)."""
import numpy as np

from dlrun.kernels import pool as kpool
from dlrun.kernels import seq as kseq

from dlrun.runtime.layers.base import Layer
from dlrun.runtime.layers.registry import register


def _image(layer, x):
    return x.reshape((x.shape[0],) + layer.in_shape)


class _GlobalPool(Layer):
    def __init__(self, node, in_shape, index=0):
        super().__init__(node, in_shape, index)
        self.over_time = len(self.in_shape) == 2

    def out_lengths(self):
        return None


@register("global_avgpool")
class GlobalAvgPool(_GlobalPool):
    kind = "global_avgpool"

    def add_to_chain(self, chain):
        if self.over_time:   # the valid steps of each sample are not the chain's to know
            return False
        chain.add_global_avgpool()
        return True

    def to_onnx(self, g, ins):
        return None if self.over_time else g.node("Flatten", [g.node("GlobalAveragePool", ins)], axis=1)

    def forward(self, x, training):
        y = self.buffer("y", x.shape[0], self.out_features)
        if self.over_time:
            self._lengths = self.in_lengths()
            kseq.seq_global_avg_forward(_image(self, x), self._lengths, y)
        else:
            kpool.global_avgpool_forward(_image(self, x), y)
        return y

    def backward(self, dy):
        dx = self.buffer("dx", dy.shape[0], self.in_features)
        if self.over_time:
            kseq.seq_global_avg_backward(dy, self._lengths, _image(self, dx))
        else:
            kpool.global_avgpool_backward(dy, _image(self, dx))
        return dx


@register("global_maxpool")
class GlobalMaxPool(_GlobalPool):
    kind = "global_maxpool"

    def add_to_chain(self, chain):
        if self.over_time:
            return False
        chain.add_global_maxpool()
        return True

    def to_onnx(self, g, ins):
        return None if self.over_time else g.node("Flatten", [g.node("GlobalMaxPool", ins)], axis=1)

    def forward(self, x, training):
        n = x.shape[0]
        y = self.buffer("y", n, self.out_features)
        self._am = self.buffer("argmax", n, self.out_features, np.int64)
        if self.over_time:
            kseq.seq_global_max_forward(_image(self, x), self.in_lengths(), y, self._am)
        else:
            kpool.global_maxpool_forward(_image(self, x), y, self._am)
        return y

    def backward(self, dy):
        dx = self.buffer("dx", dy.shape[0], self.in_features)
        if self.over_time:
            kseq.seq_global_max_backward(dy, self._am, _image(self, dx))
        else:
            kpool.global_maxpool_backward(dy, self._am, _image(self, dx))
        return dx
