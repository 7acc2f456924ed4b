"""``add A B ...``: the element-wise sum of two or more outputs of equal shape."""
from dlrun.dsl.layers.base import MANY, LayerSpec, ShapeError, dims, prod


class Add(LayerSpec):
    kind = "add"
    example = "e.g. 'add a b'"
    inputs = MANY

    def infer(self, layer, in_shapes, sources):
        first = tuple(in_shapes[0])
        for shape, source in zip(in_shapes[1:], sources[1:]):
            if tuple(shape) != first:
                raise ShapeError(f"'add' sums outputs of equal shape, but {sources[0]} gives "
                                 f"{dims(first)} and {source} gives {dims(shape)}")
        return first

    def cost(self, layer, in_shapes, out_shape):
        return 0, 0, prod(out_shape) * (len(in_shapes) - 1)
