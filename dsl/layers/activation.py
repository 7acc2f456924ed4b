"""``relu``, ``leaky_relu(0.2)``, ... (or ``activation NAME``): a standalone activation,
``y := f(x)`` element-wise; ``softmax`` over the features of a flat input."""
from dlrun.dsl import tables as T
from dlrun.dsl.layers.base import LayerSpec, ShapeError, dims
from dlrun.dsl.printing import activation_text


def check_softmax_of_one(layer, shape, act):
    """ShapeError for a softmax over a single feature: it is the constant 1, with a zero
    gradient, wherever it stands."""
    if act.name != "softmax" or tuple(shape) != (1,):
        return
    what = "'dense 1 softmax'" if layer.kind == "dense" else "'softmax' over 1 feature"
    raise ShapeError(f"{what} always outputs 1 (a softmax over one unit), so nothing before it can "
                     "learn (its gradient is 0); for a yes/no output use 'dense 1 sigmoid' with "
                     "'binary_cross_entropy', or give the softmax at least 2 units",
                     act.pos if act.pos.line > 0 else None)


class Activation(LayerSpec):
    kind = "activation"
    params = (T.Param("activation", "activation",
                      doc="the activation (written as the keyword itself: 'relu', 'leaky_relu(0.2)')"),)
    positional = 1
    kernels = ("activations",)

    def keywords(self):
        # 'activation relu' or the activation's own name: 'relu', 'leaky_relu(0.2)'
        return ("activation",) + tuple(T.ACTIVATIONS)

    def bind(self, binder, stmt, args):
        from dlrun.dsl import ir
        from dlrun.dsl.values import _Bad

        kw = stmt.keyword
        if kw == "activation":
            if not binder.no_call(stmt):
                raise _Bad
            return binder.bind("'activation'", self.params, args, npos=1, where=stmt.keyword_pos)
        args = tuple(stmt.call_args or ()) + tuple(args)
        act_params = binder.bind(f"activation '{kw}'", T.ACTIVATIONS[kw], args,
                                 npos=len(T.ACTIVATIONS[kw]), where=stmt.keyword_pos)
        return {"activation": ir.Activation(kw, act_params, stmt.pos)}

    def infer(self, layer, in_shapes, sources):
        shape = tuple(in_shapes[0])
        act = layer.params["activation"]
        if act.name in T.VECTOR_ACTIVATIONS and len(shape) != 1:
            raise ShapeError(f"'{act.name}' needs a flat input but receives shape {dims(shape)}; "
                             "add 'flatten' before it")
        check_softmax_of_one(layer, shape, act)
        return shape

    def activation(self, layer):
        name = layer.params["activation"].name
        return None if name == "linear" else name

    def inert(self, layer):
        return layer.params["activation"].name == "linear"

    def cost(self, layer, in_shapes, out_shape):
        d = 1
        for x in out_shape:
            d *= x
        return 0, 0, d * T.ACTIVATION_FLOPS[layer.params["activation"].name]

    def label(self, layer):
        return layer.params["activation"].name

    def word(self, layer):
        return layer.params["activation"].name

    def text(self, layer):
        return activation_text(layer.params["activation"])
