"""``batchnorm``: normalisation over the batch, ``y := gamma * xhat + beta``: per feature of
a flat input (statistics over the batch axis), per channel of a sequence T x C (statistics
over batch and time: the flat kernels over the batch's n*T rows, as PyTorch's BatchNorm1d
over (N, C, T)), per channel of an image C x H x W (statistics over batch, height and width;
``kernels/batchnorm.pyx``'s NCHW kernels). Padding steps of a text sequence count in the
statistics like any other step (as in PyTorch); the layers after it ignore them as before.

Training uses the batch statistics and updates the running ones
(``running := momentum * running + (1 - momentum) * batch``); inference uses the running
statistics. gamma starts at 1, beta at 0, running mean 0, running variance 1.

Data-parallel training (``runtime/parallel.py``) synchronises the statistics: each rank
holds a shard of the global batch, and the per-feature sums (forward: the sum, then the sum
of squared deviations from the global mean; backward: ``sum dy`` and ``sum dy xhat``) are
summed over the ranks, so every rank normalises with the global batch's statistics and N
ranks compute what one process does (to rounding). That path runs in NumPy with float64
sums (``_SyncedStats``); the one-process path is the fused kernel.
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
        # a sequence T x C: statistics per channel over the n*T rows of the batch
        self.steps = self.in_shape[0] if len(self.in_shape) == 2 else 1
        self.d = self.spec.features(self.in_shape)
        self._xhat = self._inv_std = None
        self._world = None   # set in data-parallel training (``set_world``)

    def set_world(self, world):
        self._world = world if world is not None and world.parallel else None

    def _image(self, a):
        """``a`` as the kernels take it: (n, C, H, W) images, (n*T, C) sequences, (n, d) flat."""
        if self.channels:
            return a.reshape((a.shape[0],) + self.in_shape)
        return a.reshape(-1, self.d) if self.steps > 1 else a

    def add_to_chain(self, chain):
        p, st = self.params, self.state
        if self.channels:
            chain.add_batchnorm2d(p["gamma"], p["beta"], st["running_mean"], st["running_var"], self.eps)
        else:
            chain.add_batchnorm(p["gamma"], p["beta"], st["running_mean"], st["running_var"], self.eps,
                                steps=self.steps)
        return True

    def to_onnx(self, g, ins):
        # inference: one scale and shift per channel (feature) from the running statistics
        p, st = self.params, self.state
        scale = np.asarray(p["gamma"], np.float64) / np.sqrt(np.asarray(st["running_var"], np.float64) + self.eps)
        shift = np.asarray(p["beta"], np.float64) - np.asarray(st["running_mean"], np.float64) * scale
        return g.scale_shift(ins[0], scale, shift, self.in_shape, channels_last=self.steps > 1)

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
        if training and self._world is not None:
            self._xhat = self.buffer("xhat", n, d)
            _synced_forward(self, self._groups(x), self._groups(y), self._groups(self._xhat))
        elif training:
            xhat = self.buffer("xhat", n, d)
            train = kbn.batchnorm2d_forward_train if self.channels else kbn.batchnorm_forward_train
            train(im(x), p["gamma"], p["beta"], s["running_mean"], s["running_var"],
                  self.momentum, self.eps, im(y), im(xhat), self._inv_std)
            self._xhat = xhat
        else:
            infer = kbn.batchnorm2d_forward_eval if self.channels else kbn.batchnorm_forward_eval
            infer(im(x), p["gamma"], p["beta"], s["running_mean"], s["running_var"], self.eps, im(y))
        return y

    def _groups(self, a):
        """``a`` as (rows, features, values per feature): (n, d, 1) flat, (n*T, C, 1)
        sequences, (n, C, H*W) images."""
        if self.channels:
            return a.reshape(a.shape[0], self.d, -1)
        return a.reshape(-1, self.d, 1)

    def backward(self, dy):
        dx = self.buffer("dx", dy.shape[0], self.in_features)
        if self._world is not None:
            _synced_backward(self, self._groups(dy), self._groups(self._xhat), self._groups(dx))
            return dx
        back = kbn.batchnorm2d_backward if self.channels else kbn.batchnorm_backward
        im = self._image
        back(im(dy), im(self._xhat), self.params["gamma"], self._inv_std, im(dx), self.grads["gamma"],
             self.grads["beta"])
        return dx


def _synced_forward(layer, x, y, xhat):
    """Training forward over a batch split between ranks: x, y, xhat (n, d, k) views of this
    rank's shard; the statistics are those of the global batch (sums over every rank)."""
    world, dt = layer._world, layer.dtype
    p, s = layer.params, layer.state
    # two passes (mean, then squared deviations from it), as exact as the kernel's shifted
    # sums; the count of values per feature travels with the first
    first = world.sum(np.concatenate(([x.shape[0] * x.shape[2]], x.sum(axis=(0, 2), dtype=np.float64))))
    count = first[0]
    mean = first[1:] / count
    dev = x - mean.astype(dt)[None, :, None]
    var = world.sum(np.einsum("ijk,ijk->j", dev, dev, dtype=np.float64)) / count
    np.maximum(var, 0.0, out=var)
    inv_std = (1.0 / np.sqrt(var + layer.eps)).astype(dt)
    layer._inv_std[...] = inv_std
    m = layer.momentum
    s["running_mean"][...] = m * s["running_mean"] + (1 - m) * mean
    unbiased = var * count / (count - 1) if count > 1 else var
    s["running_var"][...] = m * s["running_var"] + (1 - m) * unbiased
    np.multiply(dev, inv_std[None, :, None], out=xhat)
    np.multiply(xhat, p["gamma"][None, :, None], out=y)
    np.add(y, p["beta"][None, :, None], out=y)


def _synced_backward(layer, dy, xhat, dx):
    """Backward over a batch split between ranks: dgamma, dbeta get this rank's sums (the
    gradient allreduce adds the others'); dx uses the global sums."""
    world, dt = layer._world, layer.dtype
    d = layer.d
    local = np.empty(2 * d + 1, np.float64)
    local[:d] = dy.sum(axis=(0, 2), dtype=np.float64)
    local[d:2 * d] = np.einsum("ijk,ijk->j", dy, xhat, dtype=np.float64)
    local[2 * d] = dy.shape[0] * dy.shape[2]
    layer.grads["beta"][...] = local[:d]
    layer.grads["gamma"][...] = local[d:2 * d]
    total = world.sum(local)
    count = total[2 * d]
    a = (layer.params["gamma"].astype(np.float64) * layer._inv_std).astype(dt)[None, :, None]
    mb = (total[:d] / count).astype(dt)[None, :, None]
    mg = (total[d:2 * d] / count).astype(dt)[None, :, None]
    np.multiply(xhat, mg, out=dx)
    np.subtract(dy, dx, out=dx)
    np.subtract(dx, mb, out=dx)
    np.multiply(dx, a, out=dx)
