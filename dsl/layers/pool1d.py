"""``maxpool1d K`` / ``avgpool1d K``: the maximum / mean of each window of time steps, per
channel (``stride=`` defaults to the window; a mean divides by the steps in the window)."""
from dlrun.dsl import tables as T
from dlrun.dsl.layers.base import LayerSpec, ShapeError, prod
from dlrun.dsl.layers.conv1d import sequence_input, time_geometry


class _Pool1D(LayerSpec):
    params = (
        T.Param("kernel", "int", lo=1, hi=T.MAX_INT, doc="window length in time steps"),
        T.Param("stride", "int", None, lo=1, hi=T.MAX_INT, nullable=True,
                doc="step between windows (default: the window)"),
        T.Param("padding", "padding", (0, 0), lo=0,
                doc="zeros per side: 1 or 1x0 (before x after), or same / valid; smaller than the window"),
    )
    positional = 1
    kernels = ("seq",)

    def geometry(self, layer, in_shape):
        p = layer.params
        return time_geometry(in_shape[0], p["kernel"], p["stride"] or p["kernel"], p["padding"])

    def infer(self, layer, in_shapes, sources):
        shape = tuple(in_shapes[0])
        sequence_input(self.kind, shape, sources[0])
        out, pads = self.geometry(layer, shape)
        k = layer.params["kernel"]
        if max(pads) >= k:
            raise ShapeError(f"'{self.kind}' padding must be smaller than its window of {k}")
        if out < 1:
            raise ShapeError(f"a window of {k} does not fit the {shape[0]} time steps from {sources[0]}")
        return (out, shape[1])

    def cost(self, layer, in_shapes, out_shape):
        return 0, 0, prod(out_shape) * layer.params["kernel"]

    def label(self, layer):
        return f"{self.kind} {layer.params['kernel']}"


class MaxPool1D(_Pool1D):
    kind = "maxpool1d"
    example = "e.g. 'maxpool1d 2'"


class AvgPool1D(_Pool1D):
    kind = "avgpool1d"
    example = "e.g. 'avgpool1d 2'"
