"""``maxpool1d K`` / ``avgpool1d K``: window maxima / means over time of (n, T, C) batches
(``kernels/seq.pyx``)."""
import numpy as np

from dlrun.kernels import seq as kseq

from dlrun.runtime.layers.base import Layer
from dlrun.runtime.layers.conv1d import shorter
from dlrun.runtime.layers.registry import register


class _Pool1D(Layer):
    def __init__(self, node, in_shape, index=0):
        super().__init__(node, in_shape, index)
        self.k = int(node.params["kernel"])
        self.stride = int(node.params["stride"] or self.k)
        _, self.pads = self.spec.geometry(node, self.in_shape)

    def _args(self):
        return self.k, self.stride, self.pads[0], self.pads[1]

    def _3d(self, a, shape):
        return a.reshape((a.shape[0],) + shape)

    def out_lengths(self):
        lengths = self.in_lengths()
        if lengths is None:
            return None
        out = self.buffer("lengths", lengths.shape[0], 1, np.int64).reshape(-1)
        return shorter(lengths, out, self.stride, self.out_shape[0])


@register("maxpool1d")
class MaxPool1D(_Pool1D):
    kind = "maxpool1d"

    def forward(self, x, training):
        n = x.shape[0]
        y = self.buffer("y", n, self.out_features)
        self._am = self.buffer("argmax", n, self.out_features, np.int64)
        kseq.maxpool1d_forward(self._3d(x, self.in_shape), self._3d(y, self.out_shape),
                               self._3d(self._am, self.out_shape), *self._args())
        return y

    def backward(self, dy):
        dx = self.buffer("dx", dy.shape[0], self.in_features)
        kseq.maxpool1d_backward(self._3d(dy, self.out_shape), self._3d(self._am, self.out_shape),
                                self._3d(dx, self.in_shape), *self._args())
        return dx


@register("avgpool1d")
class AvgPool1D(_Pool1D):
    kind = "avgpool1d"

    def forward(self, x, training):
        y = self.buffer("y", x.shape[0], self.out_features)
        kseq.avgpool1d_forward(self._3d(x, self.in_shape), self._3d(y, self.out_shape), *self._args())
        return y

    def backward(self, dy):
        dx = self.buffer("dx", dy.shape[0], self.in_features)
        kseq.avgpool1d_backward(self._3d(dy, self.out_shape), self._3d(dx, self.in_shape), *self._args())
        return dx
