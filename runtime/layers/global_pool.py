"""``global_avgpool`` / ``global_maxpool``: each channel's mean / maximum over its whole
map, (n, C, H, W) -> (n, C) (``kernels/pool.pyx``)."""
import numpy as np

from dlrun.kernels import pool as kpool

from dlrun.runtime.layers.base import Layer
from dlrun.runtime.layers.registry import register


def _image(layer, x):
    return x.reshape((x.shape[0],) + layer.in_shape)


@register("global_avgpool")
class GlobalAvgPool(Layer):
    kind = "global_avgpool"

    def forward(self, x, training):
        y = self.buffer("y", x.shape[0], self.out_features)
        kpool.global_avgpool_forward(_image(self, x), y)
        return y

    def backward(self, dy):
        dx = self.buffer("dx", dy.shape[0], self.in_features)
        kpool.global_avgpool_backward(dy, _image(self, dx))
        return dx


@register("global_maxpool")
class GlobalMaxPool(Layer):
    kind = "global_maxpool"

    def forward(self, x, training):
        n = x.shape[0]
        y = self.buffer("y", n, self.out_features)
        self._am = self.buffer("argmax", n, self.out_features, np.int64)
        kpool.global_maxpool_forward(_image(self, x), y, self._am)
        return y

    def backward(self, dy):
        dx = self.buffer("dx", dy.shape[0], self.in_features)
        kpool.global_maxpool_backward(dy, self._am, _image(self, dx))
        return dx
