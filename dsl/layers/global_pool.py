"""``global_avgpool`` / ``global_maxpool``: the mean / maximum of every channel over the
whole map, channels x height x width -> channels."""
from dlrun.dsl.layers.base import LayerSpec, prod
from dlrun.dsl.layers.conv2d import image_input


class _GlobalPool(LayerSpec):
    kernels = ("pool",)

    def infer(self, layer, in_shapes, sources):
        shape = tuple(in_shapes[0])
        image_input(self.kind, shape, sources[0], "it pools each channel of an image")
        return (shape[0],)

    def cost(self, layer, in_shapes, out_shape):
        return 0, 0, prod(in_shapes[0])


class GlobalAvgPool(_GlobalPool):
    kind = "global_avgpool"


class GlobalMaxPool(_GlobalPool):
    kind = "global_maxpool"
