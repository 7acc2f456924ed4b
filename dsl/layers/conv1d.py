"""``conv1d FILTERS K [ACTIVATION]``: a convolution over time of a time x channels input,
``y[t] := f(sum_k x[t*stride + k*dilation - pad] W[k] + b)``, W (K, channels, filters); the
output is T' x filters."""
from dlrun.dsl import tables as T
from dlrun.dsl.layers.base import WEIGHT_SETTINGS, LayerSpec, ShapeError, dims
from dlrun.dsl.layers.conv2d import window_padding
from dlrun.dsl.printing import activation_text, non_default


def sequence_input(kind, shape, source):
    if len(shape) != 2:
        raise ShapeError(f"'{kind}' needs a time x channels input (e.g. from 'embedding') but "
                         f"receives shape {dims(shape)} from {source}")


def time_geometry(length, kernel, stride, padding, dilation=1):
    """(T', (left, right)) of a window over ``length`` steps."""
    if isinstance(padding, str):
        pads = window_padding(padding, length, kernel, stride, dilation)
    else:
        pads = tuple(padding)
    span = dilation * (kernel - 1) + 1
    return (length + pads[0] + pads[1] - span) // stride + 1, pads


class Conv1D(LayerSpec):
    kind = "conv1d"
    params = (
        T.Param("filters", "int", lo=1, hi=T.MAX_INT, doc="number of output channels"),
        T.Param("kernel", "int", lo=1, hi=T.MAX_INT, doc="window length in time steps"),
        T.Param("activation", "activation", "linear", doc="activation applied to the output"),
        T.Param("stride", "int", 1, lo=1, hi=T.MAX_INT, doc="step between windows"),
        T.Param("padding", "padding", "valid",
                doc="zeros around the sequence: valid, same (T' = T / stride rounded up), or a "
                    "count per side: 2, or 1x3 (before x after)"),
        T.Param("dilation", "int", 1, lo=1, hi=T.MAX_INT, doc="spacing between the window's taps"),
    ) + WEIGHT_SETTINGS
    positional = 3
    example = "e.g. 'conv1d 128 5 relu padding=same'"
    training_only = frozenset({"init", "l1", "l2"})
    has_weights = True
    kernels = ("seq", "activations")

    def geometry(self, layer, in_shape):
        p = layer.params
        return time_geometry(in_shape[0], p["kernel"], p["stride"], p["padding"], p["dilation"])

    def infer(self, layer, in_shapes, sources):
        shape = tuple(in_shapes[0])
        sequence_input("conv1d", shape, sources[0])
        act = layer.params["activation"]
        if act.name in T.VECTOR_ACTIVATIONS:
            raise ShapeError(f"'{act.name}' needs a flat input; apply it after a global pooling and "
                             "'dense'", act.pos if act.pos.line > 0 else None)
        out, _ = self.geometry(layer, shape)
        if out < 1:
            raise ShapeError(f"a window of {layer.params['kernel']} does not fit the {shape[0]} time "
                             f"steps from {sources[0]}: pad it (padding=same) or use a smaller window")
        return (out, layer.params["filters"])

    def activation(self, layer):
        return layer.params["activation"].name

    def cost(self, layer, in_shapes, out_shape):
        p = layer.params
        taps = p["kernel"] * in_shapes[0][1]
        f = p["filters"]
        bias = f if p.get("bias", True) else 0
        act = p["activation"].name
        return (taps * f + bias, 0, out_shape[0] * (2 * taps * f + (f if bias else 0)
                                                    + f * T.ACTIVATION_FLOPS[act]))

    def label(self, layer):
        act = layer.params["activation"].name
        return f"conv1d {layer.params['kernel']}" + (f" {act}" if act != "linear" else "")

    def text(self, layer):
        p = layer.params
        parts = ["conv1d", str(p["filters"]), str(p["kernel"])]
        if p["activation"].name != "linear" or p["activation"].params:
            parts.append(activation_text(p["activation"]))
        return " ".join(parts + non_default(self.params, p, skip=("filters", "kernel", "activation")))
