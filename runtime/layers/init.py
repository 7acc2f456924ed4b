"""The layers with a weight tensor (dense, conv2d): their shared settings (activation,
bias, init, per-layer l1/l2) and weight initialisation."""
import math

import numpy as np

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
        self.centred = False   # batch norm follows: see flat_channels
        self._world = None     # data-parallel training: the ranks holding the rest of the batch

    def see_followers(self, followers):
        # batch norm with batch statistics right after: the gradient it passes back sums to 0
        # over the batch in every channel (see flat_channels)
        self.centred = bool(followers) and followers[0].spec.batch_statistics
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

    def set_world(self, world):
        self._world = world if world is not None and world.parallel else None

    def channels_view(self, a):
        """``a`` (n, out_features) as (rows, channels, positions), the channels being those of
        the bias and of a batch norm after the layer (dense: one position per unit)."""
        return a.reshape(a.shape[0], -1, 1)

    def drop_flat_bias_grad(self, act):
        """After the kernels wrote the bias gradient: 0 exactly in the channels where it is 0
        in exact arithmetic (``flat_channels``)."""
        if self.centred and self.use_bias:
            flat = self.flat_channels(act)
            if flat is not None:
                np.copyto(self.grads["b"], 0, where=flat)

    def flat_channels(self, act):
        """The channels whose bias gradient is exactly 0 (a boolean mask), or None.

        Batch norm subtracts the batch mean, so the gradient G it passes back sums to 0 over
        the batch in every channel, and a bias b_j with f' one constant c on every value of
        channel j in the batch has the gradient sum G_j c = 0: always with no activation;
        with relu and leaky_relu when every value is on one side of 0; with elu when every
        value is above 0. Computed, that sum is rounding noise (~1e-9 in float32) of a sign
        set by the order of the additions, and adam, which divides by the gradient's own size,
        turned it into steps of the learning rate: the bias walked (4e-2 apart in 3 epochs of
        models/digits.net in float32 between 1 and 2 processes; the weights 2e-5). Under
        mpiexec the values are counted over every rank (one small allreduce)."""
        channels = self.grads["b"].shape[0]
        if act == "linear":
            return np.ones(channels, np.bool_)
        if act not in ("relu", "leaky_relu", "elu"):
            return None
        y = self.channels_view(self._y)
        on = self.channels_view(self.buffer("above", self._y.shape[0], self.out_features, np.bool_))
        np.greater(y, 0, out=on)
        counts = self.buffer("counts", 1, channels + 1, np.int64).reshape(-1)
        np.sum(on, axis=(0, 2), out=counts[:channels])
        counts[channels] = y.shape[0] * y.shape[2]
        if self._world is not None:
            counts = self._world.sum(counts)
        up, values = counts[:channels], counts[channels]
        return up == values if act == "elu" else (up == values) | (up == 0)

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
