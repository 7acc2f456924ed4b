"""``batchnorm``: normalisation over the batch, ``y := gamma * xhat + beta``: per feature of
a flat input (statistics over the batch axis), per channel of an image C x H x W (statistics
over batch, height and width; ``kernels/batchnorm.pyx``'s NCHW kernels).

Training uses the batch statistics and updates the running ones
(``running := momentum * running + (1 - momentum) * batch``); inference uses the running
statistics. gamma starts at 1, beta at 0, running mean 0, running variance 1.
"""
import numpy as np

from dlrun.kernels import batchnorm as kbn

from dlrun.runtime.layers.base import Layer, ParamSpec
from dlrun.runtime.layers.registry import register


@register("batchnorm")
class BatchNorm(Layer):
    kind = "batchnorm"
    keeps_init = True

    def __init__(self, node, in_shape, index=0):
        super().__init__(node, in_shape, index)
        self.momentum = float(node.params["momentum"])
        self.eps = float(node.params["eps"])
        self.channels = len(self.in_shape) == 3   # an image: statistics per channel
        self.d = self.spec.features(self.in_shape)
        self._xhat = self._inv_std = None

    def _image(self, a):
        return a.reshape((a.shape[0],) + self.in_shape) if self.channels else a

    def add_to_chain(self, chain):
        p, st = self.params, self.state
        add = chain.add_batchnorm2d if self.channels else chain.add_batchnorm
        add(p["gamma"], p["beta"], st["running_mean"], st["running_var"], self.eps)
        return True

    def to_onnx(self, g, ins):
        # inference: one scale and shift per channel (feature) from the running statistics
        p, st = self.params, self.state
        scale = np.asarray(p["gamma"], np.float64) / np.sqrt(np.asarray(st["running_var"], np.float64) + self.eps)
        shift = np.asarray(p["beta"], np.float64) - np.asarray(st["running_mean"], np.float64) * scale
        return g.scale_shift(ins[0], scale, shift, self.in_shape)

    def param_specs(self, l1=0.0, l2=0.0):
        d = self.d
        return [ParamSpec("gamma", (d,), "scale"), ParamSpec("beta", (d,), "shift")]

    def init_params(self, rng):
        self.params["gamma"][...] = 1
        self.params["beta"][...] = 0

    def init_state(self):
        d = self.d
        self.state = {"running_mean": np.zeros(d, self.dtype), "running_var": np.ones(d, self.dtype)}
        self._inv_std = np.empty(d, self.dtype)

    def forward(self, x, training):
        n, d = x.shape[0], self.in_features
        y = self.buffer("y", n, d)
        p, s = self.params, self.state
        im = self._image
        if training:
            xhat = self.buffer("xhat", n, d)
            train = kbn.batchnorm2d_forward_train if self.channels else kbn.batchnorm_forward_train
            train(im(x), p["gamma"], p["beta"], s["running_mean"], s["running_var"],
                  self.momentum, self.eps, im(y), im(xhat), self._inv_std)
            self._xhat = xhat
        else:
            infer = kbn.batchnorm2d_forward_eval if self.channels else kbn.batchnorm_forward_eval
            infer(im(x), p["gamma"], p["beta"], s["running_mean"], s["running_var"], self.eps, im(y))
        return y

    def backward(self, dy):
        dx = self.buffer("dx", dy.shape[0], self.in_features)
        back = kbn.batchnorm2d_backward if self.channels else kbn.batchnorm_backward
        im = self._image
        back(im(dy), im(self._xhat), self.params["gamma"], self._inv_std, im(dx), self.grads["gamma"],
             self.grads["beta"])
        return dx
