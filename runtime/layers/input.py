"""``input SHAPE``: declares the per-sample shape; passes data through unchanged."""
from dlrun.runtime.layers.base import Layer
from dlrun.runtime.layers.registry import register


@register("input")
class Input(Layer):
    kind = "input"

    def output_shape(self, in_shape):
        return tuple(int(d) for d in self.node.params["shape"])
