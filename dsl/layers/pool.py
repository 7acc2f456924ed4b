"""``maxpool KxK`` and ``avgpool KxK``: the maximum / mean of each window of every channel
(``stride=`` defaults to the window; padding is never data: a max ignores it, a mean divides
by the input pixels in the window)."""
from dlrun.dsl import tables as T
from dlrun.dsl.layers.base import LayerSpec, ShapeError, prod
from dlrun.dsl.layers.conv2d import fits, image_input, window_geometry
from dlrun.dsl.printing import non_default, pair_text


class _Pool(LayerSpec):
    params = (
        T.Param("kernel", "pair", doc="window height x width: 2x2 (2 means 2x2)"),
        T.Param("stride", "pair", None, nullable=True, doc="step between windows (default: the window)"),
        T.Param("padding", "padding", (0, 0), lo=0,
                doc="zeros around the input, per side: 1 or 1x0, or same / valid; smaller than the window"),
    )
    positional = 1
    kernels = ("pool",)

    def geometry(self, layer, in_shape):
        p = layer.params
        stride = p["stride"] or p["kernel"]
        return window_geometry(in_shape, p["kernel"], stride, p["padding"])

    def infer(self, layer, in_shapes, sources):
        shape = tuple(in_shapes[0])
        image_input(self.kind, shape, sources[0], "pool before 'flatten'")
        out, pads = self.geometry(layer, shape)
        k = layer.params["kernel"]
        if max(pads[:2]) >= k[0] or max(pads[2:]) >= k[1]:
            raise ShapeError(f"'{self.kind}' padding must be smaller than its {k[0]}x{k[1]} window on "
                             f"every side (a window of padding only holds no input)")
        fits(self.kind, f"{k[0]}x{k[1]}", shape, out, sources[0], layer.params["padding"])
        return (shape[0],) + out

    def cost(self, layer, in_shapes, out_shape):
        k = layer.params["kernel"]
        return 0, 0, prod(out_shape) * k[0] * k[1]

    def label(self, layer):
        k = layer.params["kernel"]
        return f"{self.kind} {k[0]}x{k[1]}"

    def text(self, layer):
        p = layer.params
        return " ".join([self.kind, pair_text(p["kernel"], short=False)]
                        + non_default(self.params, p, skip=("kernel",)))


class MaxPool(_Pool):
    kind = "maxpool"
    example = "e.g. 'maxpool 2x2'"


class AvgPool(_Pool):
    kind = "avgpool"
    example = "e.g. 'avgpool 2x2'"
