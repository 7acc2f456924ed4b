"""``dropout RATE``: inverted dropout in training, the identity at inference; any shape."""
from dlrun.dsl import tables as T
from dlrun.dsl.layers.base import LayerSpec, prod
from dlrun.dsl.printing import value_text


class Dropout(LayerSpec):
    kind = "dropout"
    params = (T.Param("rate", "float", lo=0.0, hi=1.0, hi_open=True,
                      doc="fraction of inputs set to zero in training"),)
    positional = 1
    example = "e.g. 'dropout 0.2'"
    training_only = frozenset({"rate"})
    passthrough = True
    kernels = ("dropout",)

    def cost(self, layer, in_shapes, out_shape):
        return 0, 0, prod(out_shape)

    def label(self, layer):
        return f"dropout {layer.params['rate']:g}"

    def text(self, layer):
        return f"dropout {value_text(layer.params['rate'])}"
