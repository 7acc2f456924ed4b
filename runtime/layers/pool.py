"""``maxpool KxK`` / ``avgpool KxK``: window maxima / means of every channel of NCHW
batches (``kernels/pool.pyx``). Max pooling keeps the index of each window's maximum for
the backward pass; average pooling divides by the input pixels in the window (padding is
not data)."""
import numpy as np

from dlrun.kernels import pool as kpool

from dlrun.runtime.layers.base import Layer
from dlrun.runtime.layers.registry import register


class _Pool(Layer):
    keeps_init = False

    def __init__(self, node, in_shape, index=0):
        super().__init__(node, in_shape, index)
        p = node.params
        self.kernel = tuple(p["kernel"])
        self.stride = tuple(p["stride"] or p["kernel"])
        _, self.pads = self.spec.geometry(node, self.in_shape)

    def _onnx_window(self):
        top, bottom, left, right = self.pads
        return {"kernel_shape": list(self.kernel), "strides": list(self.stride), "pads": [top, left, bottom, right]}

    def _nchw(self, x, y):
        n = x.shape[0]
        return x.reshape((n,) + self.in_shape), y.reshape((n,) + self.out_shape)


@register("maxpool")
class MaxPool(_Pool):
    kind = "maxpool"

    def add_to_chain(self, chain):
        chain.add_maxpool(self.kernel, self.stride, self.pads)
        return True

    def to_onnx(self, g, ins):
        return g.node("MaxPool", ins, **self._onnx_window())

    def forward(self, x, training):
        n = x.shape[0]
        y = self.buffer("y", n, self.out_features)
        am = self.buffer("argmax", n, self.out_features, np.int64)
        x4, y4 = self._nchw(x, y)
        kpool.maxpool2d_forward(x4, y4, am.reshape(y4.shape), self.kernel, self.stride, self.pads)
        self._am = am
        return y

    def backward(self, dy):
        n = dy.shape[0]
        dx = self.buffer("dx", n, self.in_features)
        dx4, dy4 = self._nchw(dx, dy)
        kpool.maxpool2d_backward(dy4, self._am.reshape(dy4.shape), dx4)
        return dx


@register("avgpool")
class AvgPool(_Pool):
    kind = "avgpool"

    def add_to_chain(self, chain):
        chain.add_avgpool(self.kernel, self.stride, self.pads)
        return True

    def to_onnx(self, g, ins):   # the mean over the window's input pixels: padding is not data
        return g.node("AveragePool", ins, count_include_pad=0, **self._onnx_window())

    def forward(self, x, training):
        y = self.buffer("y", x.shape[0], self.out_features)
        x4, y4 = self._nchw(x, y)
        kpool.avgpool2d_forward(x4, y4, self.kernel, self.stride, self.pads)
        return y

    def backward(self, dy):
        dx = self.buffer("dx", dy.shape[0], self.in_features)
        dx4, dy4 = self._nchw(dx, dy)
        kpool.avgpool2d_backward(dy4, dx4, self.kernel, self.stride, self.pads)
        return dx
