"""``flatten``: (n, *shape) -> (n, prod(shape)).

Activations are already stored as ``(n, features)`` matrices inside the runtime, so this
layer only changes the recorded per-sample shape: forward and backward are free.
"""
from dlrun.runtime.layers.base import Layer
from dlrun.runtime.layers.registry import register


@register("flatten")
class Flatten(Layer):
    kind = "flatten"
    keeps_init = True

    def add_to_chain(self, chain):
        chain.add_flatten()
        return True

    def to_onnx(self, g, ins):
        return g.node("Flatten", [ins[0]], axis=1)
