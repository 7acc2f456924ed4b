"""``flatten``: (n, *shape) -> (n, prod(shape)).

Activations are already stored as ``(n, features)`` matrices inside the runtime, so this
layer only changes the recorded per-sample shape: forward and backward are free.
"""
import numpy as np

from dlrun.runtime.layers.base import Layer
from dlrun.runtime.layers.registry import register


@register("flatten")
class Flatten(Layer):
    kind = "flatten"

    def output_shape(self, in_shape):
        return (int(np.prod(in_shape, dtype=np.int64)),)
