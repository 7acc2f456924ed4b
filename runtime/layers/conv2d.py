"""``conv2d FILTERS KxK [ACTIVATION]``: ``Y := f(conv(X, W) + b)`` on NCHW batches (the
runtime's ``(n, C*H*W)`` rows are NCHW), W (filters, C/groups, kh, kw), b (filters,).

Forward is one kernel call (im2col + GEMM with bias and activation fused into the output
pass, ``kernels/conv.pyx``); gelu and swish, whose derivative needs the pre-activation, keep
it in a buffer of their own. The im2col workspace is a buffer of the layer, allocated once.
"""
from dlrun.kernels import conv as kconv

from dlrun.runtime.layers.init import WeightedLayer, init_weights
from dlrun.runtime.layers.registry import register


@register("conv2d")
class Conv2D(WeightedLayer):
    kind = "conv2d"

    def __init__(self, node, in_shape, index=0):
        super().__init__(node, in_shape, index)
        p = node.params
        self.filters = int(p["filters"])
        self.stride = tuple(p["stride"])
        self.dilation = tuple(p["dilation"])
        self.groups = int(p["groups"])
        _, self.pads = self.spec.geometry(node, self.in_shape)
        c = self.in_shape[0]
        self.w_shape = (self.filters, c // self.groups) + tuple(p["kernel"])
        self.col_size = kconv.conv2d_workspace_size((1,) + self.in_shape, self.w_shape, self.stride,
                                                    self.pads, self.dilation, self.groups)
        self._x = self._y = self._z = None

    def add_to_chain(self, chain):
        chain.add_conv2d(self.params["w"], self.params.get("b"), *self._conv_args(), self.act,
                         self.alpha)
        return True

    def to_onnx(self, g, ins):
        top, bottom, left, right = self.pads
        w, b = self.params["w"], self.params.get("b")
        y = g.node("Conv", [ins[0], g.const(w, "w")] + ([g.const(b, "b")] if b is not None else []),
                   kernel_shape=list(self.w_shape[2:]), strides=list(self.stride), pads=[top, left, bottom, right],
                   dilations=list(self.dilation), group=self.groups)
        return g.activation(self.act, self.alpha, y)

    def param_specs(self, l1=0.0, l2=0.0):
        return self.weight_specs(self.w_shape, (self.filters,), l1, l2)

    def init_params(self, rng):
        _, cg, kh, kw = self.w_shape
        # fans as PyTorch counts them: inputs and outputs of one window position
        init_weights(self.params["w"], self.resolved_init(), rng, fans=(cg * kh * kw, self.filters * kh * kw))
        if self.use_bias:
            self.params["b"][...] = 0

    def channels_view(self, a):
        return a.reshape(a.shape[0], self.filters, -1)   # NCHW

    def _conv_args(self):
        return self.stride, self.pads, self.dilation, self.groups

    def forward(self, x, training):
        n = x.shape[0]
        col = self.buffer("col", 1, self.col_size)
        x4 = x.reshape((n,) + self.in_shape)
        w, b = self.params["w"], self.params.get("b")

        def conv(out, activation, alpha):
            kconv.conv2d_forward(x4, w, b, out.reshape((n,) + self.out_shape), col, *self._conv_args(),
                                 activation=activation, alpha=alpha)

        self._x = x
        return self.fused_forward(self.buffer("y", n, self.out_features), conv)

    def backward(self, dy):
        n = dy.shape[0]
        self.activation_grad(dy)
        dx = self.buffer("dx", n, self.in_features) if self.need_dx else None
        col = self.buffer("col", 1, self.col_size)
        kconv.conv2d_backward(self._x.reshape((n,) + self.in_shape), self.params["w"],
                              dy.reshape((n,) + self.out_shape),
                              None if dx is None else dx.reshape((n,) + self.in_shape),
                              self.grads["w"], self.grads.get("b"), col, *self._conv_args())
        self.drop_flat_bias_grad(self.act)
        return dx
