"""``global_avgpool`` / ``global_maxpool``: the mean / maximum of every channel over the
whole map (channels x height x width -> channels) or over time (time x channels -> channels,
over a sample's steps up to its last token: padding positions are ignored)."""
from dlrun.dsl.layers.base import LayerSpec, ShapeError, dims, prod


class _GlobalPool(LayerSpec):
    kernels = ("pool",)

    def infer(self, layer, in_shapes, sources):
        shape = tuple(in_shapes[0])
        if len(shape) == 3:
            return (shape[0],)       # an image: per channel over height and width
        if len(shape) == 2:
            return (shape[1],)       # a sequence: per channel over time
        raise ShapeError(f"'{self.kind}' needs a channels x height x width (e.g. 'input 1x28x28') or "
                         f"a time x channels input but receives shape {dims(shape)} from {sources[0]}; "
                         "it pools each channel of an image or a sequence")

    def cost(self, layer, in_shapes, out_shape):
        return 0, 0, prod(in_shapes[0])


class GlobalAvgPool(_GlobalPool):
    kind = "global_avgpool"


class GlobalMaxPool(_GlobalPool):
    kind = "global_maxpool"
