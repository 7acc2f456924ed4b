"""``concat A B ...``: outputs joined along the feature axis (``dsl/layers/concat.py``
says which: the channels of an image, the last axis otherwise); backward splits ``dy``
back into one contiguous gradient per input."""
import numpy as np

from dlrun.dsl.layers.concat import feature_axis
from dlrun.runtime.layers.base import Layer
from dlrun.runtime.layers.registry import register


@register("concat")
class Concat(Layer):
    kind = "concat"
    joins = True

    def __init__(self, node, in_shapes, index=0):
        super().__init__(node, in_shapes, index)
        self.axis = 1 + feature_axis(self.out_shape)   # in the (n, *shape) view

    def add_to_chain(self, chain, inputs=None):
        chain.add_concat(inputs, self.axis - 1)
        return True

    def to_onnx(self, g, ins):
        return g.node("Concat", ins, axis=self.axis)

    def forward(self, xs, training):
        n = xs[0].shape[0]
        y = self.buffer("y", n, self.out_features)
        parts = [x.reshape((n,) + s) for x, s in zip(xs, self.in_shapes)]
        np.concatenate(parts, axis=self.axis, out=y.reshape((n,) + self.out_shape))
        return y

    def backward(self, dy):
        n = dy.shape[0]
        full = dy.reshape((n,) + self.out_shape)
        out, start = [], 0
        for k, s in enumerate(self.in_shapes):
            width = s[self.axis - 1]
            dx = self.buffer(f"dx{k}", n, int(np.prod(s, dtype=np.int64)))
            index = [slice(None)] * full.ndim
            index[self.axis] = slice(start, start + width)
            np.copyto(dx.reshape((n,) + s), full[tuple(index)])
            out.append(dx)
            start += width
        return out
