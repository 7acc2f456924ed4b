"""``dense UNITS [ACTIVATION]``: ``y := f(x W + b)`` on a flat input, W (in, units)."""
from dlrun.dsl import tables as T
from dlrun.dsl.layers.activation import check_softmax_of_one
from dlrun.dsl.layers.base import WEIGHT_SETTINGS, LayerSpec, ShapeError, dims, prod
from dlrun.dsl.printing import activation_text, non_default


class Dense(LayerSpec):
    kind = "dense"
    params = (
        T.Param("units", "int", lo=1, hi=T.MAX_INT, doc="number of output features"),
        T.Param("activation", "activation", "linear", doc="activation applied to the output"),
    ) + WEIGHT_SETTINGS
    positional = 2
    example = "e.g. 'dense 128 relu'"
    training_only = frozenset({"init", "l1", "l2"})
    has_weights = True
    kernels = ("dense", "activations")

    def infer(self, layer, in_shapes, sources):
        shape = tuple(in_shapes[0])
        if len(shape) != 1:
            raise ShapeError(f"'dense' needs a flat input but receives shape {dims(shape)} from "
                             f"{sources[0]}; add 'flatten' before it")
        out = (layer.params["units"],)
        check_softmax_of_one(layer, out, layer.params["activation"])
        return out

    def activation(self, layer):
        return layer.params["activation"].name

    def cost(self, layer, in_shapes, out_shape):
        fan_in = prod(in_shapes[0])
        units = layer.params["units"]
        bias = units if layer.params.get("bias", True) else 0
        act = layer.params["activation"].name
        return (fan_in * units + bias, 0,
                2 * fan_in * units + bias + units * T.ACTIVATION_FLOPS[act])

    def label(self, layer):
        act = layer.params["activation"].name
        return f"dense {act}" if act != "linear" else "dense"

    def text(self, layer):
        p = layer.params
        parts = ["dense", str(p["units"])]
        if p["activation"].name != "linear" or p["activation"].params:
            parts.append(activation_text(p["activation"]))
        return " ".join(parts + non_default(self.params, p, skip=("units", "activation")))
