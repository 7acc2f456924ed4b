"""``dense UNITS [ACTIVATION]``: ``Y := f(X W + b)``, W (in, out), b (out,).

Forward is one fused kernel call (GEMM, bias and activation). For gelu and swish, whose
derivative needs the pre-activation, the pre-activation ``Z`` is kept in its own buffer.

When the network trains this layer as the logits of a fused loss (softmax + cross-entropy,
sigmoid + binary cross-entropy), it calls ``forward(x, training, logits=True)``: the
activation is skipped and ``backward`` receives the gradient with respect to the logits.
"""
import numpy as np

from dlrun.kernels import activations as kact
from dlrun.kernels import dense as kdense

from dlrun.runtime.layers.activation import NEEDS_INPUT
from dlrun.runtime.layers.init import WeightedLayer, init_weights
from dlrun.runtime.layers.registry import register


@register("dense")
class Dense(WeightedLayer):
    kind = "dense"
    activation_inside = True

    def __init__(self, node, in_shape, index=0):
        super().__init__(node, in_shape, index)
        self.units = int(node.params["units"])
        self._x = self._y = self._z = None
        self._act_used = "linear"
        self._k = 0               # > 0: the last forward ran on k non-zero input columns
        self._xc = self._wc = self._cols = None

    def add_to_chain(self, chain):
        chain.add_dense(self.params["w"], self.params.get("b"), self.act, self.alpha)
        return True

    def to_onnx(self, g, ins):
        x = ins[0] if len(self.in_shape) == 1 else g.node("Flatten", [ins[0]], axis=1)
        w, b = self.params["w"], self.params.get("b")
        y = g.node("Gemm", [x, g.const(w, "w")] + ([g.const(b, "b")] if b is not None else []))
        return g.activation(self.act, self.alpha, y)

    def param_specs(self, l1=0.0, l2=0.0):
        return self.weight_specs((self.in_features, self.units), (self.units,), l1, l2)

    def init_params(self, rng):
        init_weights(self.params["w"], self.resolved_init(), rng)
        if self.use_bias:
            self.params["b"][...] = 0

    def forward(self, x, training, logits=False):
        n = x.shape[0]
        act = "linear" if logits else self.act
        y = self.buffer("y", n, self.units)
        w, b = self.params["w"], self.params.get("b")
        self._k = 0
        if not self.need_dx and n > 1 and act not in NEEDS_INPUT:
            # the input is data (no input gradient wanted): a batch with whole columns of
            # zeros runs on its non-zero columns only (see kernels/dense.pyx)
            d_in = self.in_features
            xc = self.buffer("xc", n, d_in).reshape(-1)
            wc = self.buffer("wc", d_in, self.units).reshape(-1)
            cols = self.buffer("cols", 1, d_in, np.int64).reshape(-1)
            k = kdense.dense_forward_compact(x, w, b, y, act, self.alpha, cols, xc, wc)
            if k:
                self._k, self._xc, self._wc, self._cols = k, xc, wc, cols
                self._x, self._y, self._act_used = x, y, act
                return y
        if act in NEEDS_INPUT:
            z = self.buffer("z", n, self.units)
            kdense.dense_forward(x, w, b, z, "linear")
            kact.activation_forward(act, z, y, self.alpha)
            self._z = z
        else:
            kdense.dense_forward(x, w, b, y, act, self.alpha)
        self._x, self._y, self._act_used = x, y, act
        return y

    def backward(self, dy):
        act = self._act_used
        if act != "linear":
            # dZ := dY * f'(.) written over dY (the caller is done with it)
            z = self._z if act in NEEDS_INPUT else None
            kact.activation_backward(act, self._y, dy, dy, self.alpha, z)
        if self._k:
            kdense.dense_backward_compact(self._xc, self._cols, self._k, dy, self.grads["w"],
                                          self.grads.get("b"), self._wc)
            dx = None
        else:
            dx = self.buffer("dx", dy.shape[0], self.in_features) if self.need_dx else None
            kdense.dense_backward(self._x, self.params["w"], dy, dx, self.grads["w"], self.grads.get("b"))
        self.drop_flat_bias_grad(act)
        return dx
