"""``add A B ...``: ``y := x_1 + x_2 + ...`` of equal shapes; each input's gradient is ``dy``.

Backward hands ``dy`` itself to the first input and a copy to every other one: a layer
may overwrite the gradient it receives, so no array is given to two layers.
"""
import numpy as np

from dlrun.runtime.layers.base import Layer
from dlrun.runtime.layers.registry import register


@register("add")
class Add(Layer):
    kind = "add"
    joins = True

    def add_to_chain(self, chain, inputs=None):
        chain.add_add(inputs)
        return True

    def to_onnx(self, g, ins):
        y = ins[0]
        for x in ins[1:]:
            y = g.node("Add", [y, x])
        return y

    def forward(self, xs, training):
        y = self.buffer("y", xs[0].shape[0], self.out_features)
        np.add(xs[0], xs[1], out=y)
        for x in xs[2:]:
            np.add(y, x, out=y)
        return y

    def backward(self, dy):
        out = [dy]
        for k in range(1, len(self.in_shapes)):
            dx = self.buffer(f"dx{k}", dy.shape[0], self.out_features)
            np.copyto(dx, dy)
            out.append(dx)
        return out
