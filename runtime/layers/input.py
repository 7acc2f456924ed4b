"""``input SHAPE``: declares the per-sample shape; passes data through unchanged."""
from dlrun.runtime.layers.base import Layer
from dlrun.runtime.layers.registry import register


@register("input")
class Input(Layer):
    kind = "input"

    def add_to_chain(self, chain):
        return True
