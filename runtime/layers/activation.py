"""``activation NAME``: a standalone activation, ``y := f(x)`` element-wise (softmax row-wise).

Backward goes through the kernel from the saved output ``y`` (and the saved input for
gelu/swish, whose derivative needs it) and overwrites ``dy`` in place, which the caller no
longer needs.
"""
from dlrun.kernels import activations as kact

from dlrun.runtime.layers.base import Layer
from dlrun.runtime.layers.registry import register

# activations whose derivative needs the input x, not only the output y
NEEDS_INPUT = frozenset({"gelu", "swish"})


def activation_args(act):
    """(name, alpha) of an ``ir.Activation`` (a bare name is accepted too)."""
    if isinstance(act, str):
        return act, 0.0
    return act.name, float(act.params.get("alpha", 0.0) or 0.0)


@register("activation")
class Activation(Layer):
    kind = "activation"

    def __init__(self, node, in_shape, index=0):
        super().__init__(node, in_shape, index)
        self.act, self.alpha = activation_args(node.params["activation"])
        self.standalone_activation = self.act
        self._x = self._y = None

    def add_to_chain(self, chain):
        chain.add_activation(self.act, self.alpha)
        return True

    def to_onnx(self, g, ins):
        return g.activation(self.act, self.alpha, ins[0])

    def forward(self, x, training):
        y = self.buffer("y", x.shape[0], self.out_features)
        kact.activation_forward(self.act, x, y, self.alpha)
        self._x, self._y = x, y
        return y

    def backward(self, dy):
        x = self._x if self.act in NEEDS_INPUT else None
        kact.activation_backward(self.act, self._y, dy, dy, self.alpha, x)
        return dy
