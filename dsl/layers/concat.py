"""``concat A B ...``: outputs joined along the feature axis — the last axis of a flat or
sequence shape ``(F,)`` / ``(T, C)``, the channel axis (the first) of an image ``(C, H, W)``."""
from dlrun.dsl.layers.base import MANY, LayerSpec, ShapeError, dims


def feature_axis(shape) -> int:
    """The axis ``concat`` joins along, for a per-sample shape."""
    return 0 if len(shape) == 3 else len(shape) - 1


class Concat(LayerSpec):
    kind = "concat"
    example = "e.g. 'concat a b'"
    inputs = MANY

    def infer(self, layer, in_shapes, sources):
        first = tuple(in_shapes[0])
        axis = feature_axis(first)
        total = 0
        for shape, source in zip(in_shapes, sources):
            shape = tuple(shape)
            rest = shape[:axis] + shape[axis + 1:]
            if len(shape) != len(first) or rest != first[:axis] + first[axis + 1:]:
                what = "channels" if len(first) == 3 else "features"
                raise ShapeError(f"'concat' joins outputs that differ only in their {what}, but "
                                 f"{sources[0]} gives {dims(first)} and {source} gives {dims(shape)}")
            total += shape[axis]
        return first[:axis] + (total,) + first[axis + 1:]
