"""``input SHAPE``: the per-sample shape of the data, ``64`` features or ``1x28x28``."""
from dlrun.dsl import tables as T
from dlrun.dsl.ir import Pos
from dlrun.dsl.layers.base import LayerSpec, dims


class Input(LayerSpec):
    kind = "input"
    params = (T.Param("shape", "shape", doc="features per sample: 64, or a shape 28x28 / 1x28x28"),)
    positional = 1
    example = "e.g. 'input 64' or 'input 28x28'"
    inputs = 0

    def infer(self, layer, in_shapes, sources):
        return tuple(layer.params["shape"])

    def hint(self, stmt):
        """'input 28 x 28' -> one clear error instead of 'too many values'."""
        from dlrun.dsl.printing import expr_text
        from dlrun.dsl.transform import Ref

        vals = [a.value for a in stmt.args if a.key is None]
        if len(vals) >= 3 and all(isinstance(v, Ref) and v.name == "x" for v in vals[1::2]):
            text = "x".join(expr_text(v, short=True) for v in vals[::2])
            first, last = stmt.args[0].pos, stmt.args[-1].pos
            return (Pos(first.line, first.col, last.end_line, last.end_col),
                    f"write a shape without spaces, e.g. 'input {text}'")
        return None

    def text(self, layer):
        shape = tuple(layer.params["shape"])
        return "input " + (dims(shape) if len(shape) > 1 else str(shape[0]))
