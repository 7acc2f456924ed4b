"""``input SHAPE``: the per-sample shape of the data, ``64`` features or ``1x28x28``."""
from dlrun.dsl import tables as T
from dlrun.dsl.layers.base import LayerSpec, dims


class Input(LayerSpec):
    kind = "input"
    params = (T.Param("shape", "shape", doc="features per sample: 64, or a shape 28x28 / 1x28x28"),)
    positional = 1
    example = "e.g. 'input 64' or 'input 28x28'"
    inputs = 0

    def infer(self, layer, in_shapes, sources):
        return tuple(layer.params["shape"])

    def text(self, layer):
        shape = tuple(layer.params["shape"])
        return "input " + (dims(shape) if len(shape) > 1 else str(shape[0]))
