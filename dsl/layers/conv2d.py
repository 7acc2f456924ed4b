"""``conv2d FILTERS KxK [ACTIVATION]``: a 2-D convolution of a channels x height x width
input, ``y := f(conv(x, W) + b)``, W (filters, channels/groups, kh, kw); the output is
filters x oh x ow."""
from dlrun.dsl import tables as T
from dlrun.dsl.layers.base import WEIGHT_SETTINGS, LayerSpec, ShapeError, dims, prod
from dlrun.dsl.printing import activation_text, non_default, pair_text


def window_padding(padding, size: int, kernel: int, stride: int, dilation: int = 1) -> tuple:
    """(before, after) zeros on one axis of ``size`` for ``padding`` ('valid', 'same' or a
    count per side): 'same' gives ceil(size / stride) outputs, the extra zero after."""
    if padding == "valid":
        return 0, 0
    if padding == "same":
        out = -(-size // stride)
        total = max((out - 1) * stride + dilation * (kernel - 1) + 1 - size, 0)
        return total // 2, total - total // 2
    return padding, padding


def window_geometry(in_shape, kernel, stride, padding, dilation=(1, 1)):
    """((oh, ow), (top, bottom, left, right)) of a window sliding over (C, H, W); an extent
    is < 1 when the window does not fit."""
    _, h, w = in_shape
    pads = []
    out = []
    for axis, size in ((0, h), (1, w)):
        p = padding if isinstance(padding, str) else padding[axis]
        before, after = window_padding(p, size, kernel[axis], stride[axis], dilation[axis])
        pads += [before, after]
        span = dilation[axis] * (kernel[axis] - 1) + 1
        out.append((size + before + after - span) // stride[axis] + 1)
    return tuple(out), tuple(pads)


def image_input(kind, shape, source, example):
    """ShapeError unless ``shape`` is channels x height x width."""
    if len(shape) != 3:
        raise ShapeError(f"'{kind}' needs a channels x height x width input (e.g. 'input 1x28x28') "
                         f"but receives shape {dims(shape)} from {source}; {example}")


def fits(kind, what, in_shape, out, source, padding):
    if min(out) < 1:
        pad = padding if isinstance(padding, str) else f"padding={pair_text(padding)}"
        raise ShapeError(f"a {what} {kind} ({pad}) does not fit the {in_shape[1]}x{in_shape[2]} map "
                         f"from {source}: its output would be {out[0]}x{out[1]}; pad it "
                         "(padding=same), use a smaller window or stride, or remove a pooling before it")


class Conv2D(LayerSpec):
    kind = "conv2d"
    params = (
        T.Param("filters", "int", lo=1, hi=T.MAX_INT, doc="number of output channels"),
        T.Param("kernel", "pair", doc="window height x width: 3x3 (3 means 3x3)"),
        T.Param("activation", "activation", "linear", doc="activation applied to the output"),
        T.Param("stride", "pair", (1, 1), doc="step between windows: 2 or 2x1"),
        T.Param("padding", "padding", "valid",
                doc="zeros around the input: valid (none), same (output = input size / stride, "
                    "rounded up; the odd zero after), or a count per side: 1 or 1x2"),
        T.Param("dilation", "pair", (1, 1), doc="spacing between the window's taps: 2 or 2x1"),
        T.Param("groups", "int", 1, lo=1, hi=T.MAX_INT,
                doc="independent convolutions over equal channel groups (channels and filters "
                    "divisible by it)"),
    ) + WEIGHT_SETTINGS
    positional = 3
    example = "e.g. 'conv2d 32 3x3 relu padding=same'"
    training_only = frozenset({"init", "l1", "l2"})
    has_weights = True
    kernels = ("conv", "activations")

    def geometry(self, layer, in_shape):
        p = layer.params
        return window_geometry(in_shape, p["kernel"], p["stride"], p["padding"], p["dilation"])

    def infer(self, layer, in_shapes, sources):
        shape = tuple(in_shapes[0])
        p = layer.params
        image_input("conv2d", shape, sources[0], "add 'input CxHxW' or remove 'flatten' before it")
        act = p["activation"]
        if act.name in T.VECTOR_ACTIVATIONS:
            raise ShapeError(f"'{act.name}' needs a flat input; a convolution's output is "
                             "channels x height x width: apply it after 'flatten' and 'dense'",
                             act.pos if act.pos.line > 0 else None)
        g = p["groups"]
        if shape[0] % g or p["filters"] % g:
            raise ShapeError(f"'conv2d' groups={g} must divide both its {shape[0]} input channels "
                             f"(from {sources[0]}) and its {p['filters']} filters")
        out, _ = self.geometry(layer, shape)
        k = p["kernel"]
        fits("convolution", f"{k[0]}x{k[1]}", shape, out, sources[0], p["padding"])
        return (p["filters"],) + out

    def activation(self, layer):
        return layer.params["activation"].name

    def cost(self, layer, in_shapes, out_shape):
        p = layer.params
        c = in_shapes[0][0]
        taps = c // p["groups"] * p["kernel"][0] * p["kernel"][1]
        f = p["filters"]
        bias = f if p.get("bias", True) else 0
        pixels = out_shape[1] * out_shape[2]
        act = p["activation"].name
        return (f * taps + bias, 0,
                pixels * (2 * f * taps + (f if bias else 0) + f * T.ACTIVATION_FLOPS[act]))

    def label(self, layer):
        p = layer.params
        k = p["kernel"]
        act = p["activation"].name
        return f"conv2d {k[0]}x{k[1]}" + (f" {act}" if act != "linear" else "")

    def text(self, layer):
        p = layer.params
        parts = ["conv2d", str(p["filters"]), pair_text(p["kernel"], short=False)]
        if p["activation"].name != "linear" or p["activation"].params:
            parts.append(activation_text(p["activation"]))
        return " ".join(parts + non_default(self.params, p, skip=("filters", "kernel", "activation")))

    def bind(self, binder, stmt, args):
        params = super().bind(binder, stmt, args)
        return params
