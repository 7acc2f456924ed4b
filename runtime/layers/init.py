"""The layers with a weight tensor (dense, conv2d): their shared settings (activation,
bias, init, per-layer l1/l2) and weight initialisation."""
import math

from dlrun.kernels import activations as kact

from dlrun.runtime.layers.activation import NEEDS_INPUT, activation_args
from dlrun.runtime.layers.base import Layer, ParamSpec

RELU_FAMILY = frozenset({"relu", "leaky_relu", "elu", "gelu", "swish"})

INITS = ("he_normal", "he_uniform", "xavier_normal", "xavier_uniform")


def default_init(activation: str) -> str:
    """He for the relu family, Xavier/Glorot otherwise."""
    return "he_normal" if activation in RELU_FAMILY else "xavier_uniform"


def init_weights(w, kind, rng, fans=None):
    """Fill ``w`` in place: He (relu family) or Xavier/Glorot, normal or uniform. ``fans``
    (fan_in, fan_out) default to ``w.shape`` (a dense layer's (in, out))."""
    fan_in, fan_out = w.shape if fans is None else fans
    if kind == "he_normal":
        w[...] = rng.standard_normal(w.shape) * math.sqrt(2.0 / fan_in)
    elif kind == "he_uniform":
        limit = math.sqrt(6.0 / fan_in)
        w[...] = rng.uniform(-limit, limit, w.shape)
    elif kind == "xavier_normal":
        w[...] = rng.standard_normal(w.shape) * math.sqrt(2.0 / (fan_in + fan_out))
    elif kind == "xavier_uniform":
        limit = math.sqrt(6.0 / (fan_in + fan_out))
        w[...] = rng.uniform(-limit, limit, w.shape)
    else:
        raise ValueError(f"unknown initialisation {kind!r} (expected one of {', '.join(INITS)})")




class WeightedLayer(Layer):
    """A layer ``y := f(op(x, W) + b)`` whose default init follows its activation."""

    def __init__(self, node, in_shape, index=0):
        super().__init__(node, in_shape, index)
        p = node.params
        self.act, self.alpha = activation_args(p["activation"])
        self.use_bias = bool(p.get("bias", True))
        self.init = p.get("init")
        # the activation that decides the default init; the network may point it at a
        # standalone activation layer that follows (dense -> batchnorm -> activation relu)
        self.init_activation = self.act
        self.l1 = p.get("l1")
        self.l2 = p.get("l2")

    def see_followers(self, followers):
        # a linear layer takes its default init from the activation layer that follows it
        # (dense -> batchnorm -> dropout -> relu)
        if self.act != "linear":
            return
        for nxt in followers:
            if nxt.standalone_activation is not None:
                self.init_activation = nxt.standalone_activation
                return
            if not nxt.keeps_init:
                return

    def resolved_init(self):
        return self.init or default_init(self.init_activation)

    def weight_specs(self, w_shape, b_shape, l1, l2):
        """ParamSpecs of "w" and "b": per-layer l1/l2 override the global value (None = use
        the global one)."""
        l1 = float(self.l1) if self.l1 is not None else l1
        l2 = float(self.l2) if self.l2 is not None else l2
        specs = [ParamSpec("w", tuple(w_shape), "weight", l1, l2)]
        if self.use_bias:
            specs.append(ParamSpec("b", tuple(b_shape), "bias"))
        return specs

    # -- the activation fused into the layer's operation ---------------------------------
    def fused_forward(self, y, op):
        """``y := f(op)``: ``op(out, activation, alpha)`` writes the operation into ``out``
        with the activation fused; gelu and swish, whose derivative needs the
        pre-activation, keep it in a buffer of its own."""
        if self.act in NEEDS_INPUT:
            z = self.buffer("z", y.shape[0], self.out_features)
            op(z, "linear", 0.0)
            kact.activation_forward(self.act, z, y, self.alpha)
            self._z = z
        else:
            op(y, self.act, self.alpha)
        self._y = y
        return y

    def activation_grad(self, dy):
        """dZ := dY * f'(.) written over dY (the caller is done with it)."""
        if self.act != "linear":
            z = self._z if self.act in NEEDS_INPUT else None
            kact.activation_backward(self.act, self._y, dy, dy, self.alpha, z)
        return dy
