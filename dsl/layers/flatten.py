"""``flatten``: a per-sample shape such as 1x28x28 becomes 784 features (free at run time)."""
from dlrun.dsl.layers.base import LayerSpec, prod


class Flatten(LayerSpec):
    kind = "flatten"
    passthrough = True

    def infer(self, layer, in_shapes, sources):
        return (prod(in_shapes[0]),)

    def warning(self, layer, in_shapes):
        shape = tuple(in_shapes[0])
        if len(shape) == 1:
            return f"'flatten' does nothing here: its input is already flat ({shape[0]} features)"
        return None
