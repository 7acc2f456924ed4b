"""A careful hand-written NumPy MLP: the plain-NumPy reference of ``benchmarks/compare.py``.

Network (the MNIST benchmark's): for each hidden width d in ``hidden``
    z = a W                       (no dense bias: the batch norm's beta takes its place)
    y = gamma * (z - mu_B) / sqrt(var_B + eps) + beta        (batch statistics in training)
    a = relu(y) * keep / (1 - rate)                           (inverted dropout)
then logits = a W_out + b_out and the mean softmax cross-entropy. Adam (PyTorch's form:
``p -= lr / bc1 * m / (sqrt(v) / sqrt(bc2) + eps)``) over one flat parameter buffer.

What makes it careful rather than naive:
- float32 throughout; every activation, gradient and scratch array is allocated once per
  batch size and reused (a short last batch uses leading-row views of the same buffers);
- every GEMM writes into its destination with ``np.matmul(..., out=)``, transposed operands
  are passed as views (BLAS gets the transpose flag, no copy);
- parameters, gradients and both Adam moments each live in one flat buffer, so the
  optimizer is a handful of in-place passes over 0.5 M floats instead of a loop over tensors;
- ReLU and dropout share one multiplier array ``m = (y > 0) * keep / (1 - rate)``:
  forward ``a = y * m``, backward ``dy = da * m``;
- uint8 images stay uint8; each batch is gathered and scaled into a float32 buffer;
- inference folds the batch norm into the weights (``W' = W * s``, ``b' = beta - mu * s``).

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> x = rng.integers(0, 256, (256, 20), dtype=np.uint8); y = (x[:, 0] > 127).astype(np.uint8)
    >>> net = NumpyMLP(20, (16,), 2, seed=0)
    >>> losses = [net.train_epoch(x, y, 32) for _ in range(30)]
    >>> losses[-1] < losses[0] and net.evaluate(x, y)[1] > 0.9
    True
"""
from __future__ import annotations

import numpy as np

F32 = np.float32


class _Buffers:
    """Every array one training step needs at batch size ``n`` (allocated once)."""

    def __init__(self, n, n_in, hidden, n_out):
        self.x_u8 = np.empty((n, n_in), np.uint8)
        self.x = np.empty((n, n_in), F32)
        self.y = np.empty(n, np.intp)
        self.z, self.xhat, self.m, self.a, self.da = [], [], [], [], []
        for d in hidden:
            self.z.append(np.empty((n, d), F32))      # pre-activation, then scratch
            self.xhat.append(np.empty((n, d), F32))   # normalised z, kept for backward
            self.m.append(np.empty((n, d), F32))      # relu * dropout multiplier
            self.a.append(np.empty((n, d), F32))      # layer output
            self.da.append(np.empty((n, d), F32))     # gradient w.r.t. the output
        width = max(hidden)
        self.uniform = np.empty(n * width, F32)       # dropout's uniform draws
        self.keep = np.empty(n * width, np.bool_)
        self.pos = np.empty(n * width, np.bool_)
        self.logits = np.empty((n, n_out), F32)
        self.prob = np.empty((n, n_out), F32)         # softmax, then dL/dlogits
        self.row = np.empty((n, 1), F32)
        self.rows = np.arange(n)


class NumpyMLP:
    """MLP ``n_in -> hidden... -> n_out`` with batch norm, ReLU and dropout; Adam; float32.

    ``train_epoch(x_u8, y, batch_size)`` runs one epoch over a fresh permutation and returns
    the mean training loss; ``evaluate`` returns ``(loss, accuracy)`` in eval mode;
    ``predict(x)`` returns class probabilities (x float in [0, 1] or uint8 0..255).
    """

    def __init__(self, n_in=784, hidden=(512, 256), n_out=10, *, dropout=0.2, lr=1e-3,
                 betas=(0.9, 0.999), eps=1e-8, bn_momentum=0.1, bn_eps=1e-5, seed=0):
        self.n_in, self.hidden, self.n_out = n_in, tuple(hidden), n_out
        self.rate, self.lr, self.beta1, self.beta2, self.eps = dropout, lr, betas[0], betas[1], eps
        self.bn_momentum, self.bn_eps = bn_momentum, bn_eps
        self.rng = np.random.default_rng(seed)
        self.step = 0

        # One flat buffer per role; every parameter and gradient is a view into it.
        shapes = []
        fan_in = n_in
        for d in self.hidden:
            shapes += [(fan_in, d), (d,), (d,)]         # W, gamma, beta
            fan_in = d
        shapes += [(fan_in, n_out), (n_out,)]          # W_out, b_out
        size = sum(int(np.prod(s)) for s in shapes)
        self.flat = np.zeros(size, F32)
        self.grad = np.zeros(size, F32)
        self.adam_m = np.zeros(size, F32)
        self.adam_v = np.zeros(size, F32)
        self.scratch = np.empty(size, F32)
        self.params, self.grads = [], []
        offset = 0
        for s in shapes:
            k = int(np.prod(s))
            self.params.append(self.flat[offset:offset + k].reshape(s))
            self.grads.append(self.grad[offset:offset + k].reshape(s))
            offset += k

        # PyTorch's default Linear init, U(-1/sqrt(fan_in), 1/sqrt(fan_in)), so the two
        # references train the same recipe; gamma = 1, beta = 0.
        for i in range(len(self.hidden) + 1):
            w = self.params[3 * i] if i < len(self.hidden) else self.params[-2]
            bound = 1.0 / np.sqrt(w.shape[0])
            w[...] = self.rng.uniform(-bound, bound, w.shape)
            if i < len(self.hidden):
                self.params[3 * i + 1][...] = 1.0
        bound = 1.0 / np.sqrt(self.params[-2].shape[0])
        self.params[-1][...] = self.rng.uniform(-bound, bound, n_out)

        self.running_mean = [np.zeros(d, F32) for d in self.hidden]
        self.running_var = [np.ones(d, F32) for d in self.hidden]
        self.mu = [np.empty(d, F32) for d in self.hidden]
        self.var = [np.empty(d, F32) for d in self.hidden]
        self.inv_std = [np.empty(d, F32) for d in self.hidden]
        self.coef = [np.empty(d, F32) for d in self.hidden]
        self._buffers = {}
        self._infer_buffers = {}
        self._folded = None

    # -- parameters ------------------------------------------------------------------
    def layer(self, i):
        """``(W, gamma, beta)`` of hidden layer i, or ``(W_out, b_out)`` for i = len(hidden)."""
        if i < len(self.hidden):
            return tuple(self.params[3 * i:3 * i + 3])
        return self.params[-2], self.params[-1]

    def layer_grad(self, i):
        if i < len(self.hidden):
            return tuple(self.grads[3 * i:3 * i + 3])
        return self.grads[-2], self.grads[-1]

    def folded(self):
        """Inference weights with batch norm folded in: ``[(W', b'), ..., (W_out, b_out)]``."""
        if self._folded is None or self._folded[0] != self.step:
            layers = []
            for i in range(len(self.hidden)):
                w, gamma, beta = self.layer(i)
                s = gamma / np.sqrt(self.running_var[i] + F32(self.bn_eps))
                layers.append((np.ascontiguousarray(w * s, dtype=F32),
                               (beta - self.running_mean[i] * s).astype(F32)))
            w, b = self.layer(len(self.hidden))
            layers.append((w.copy(), b.copy()))
            self._folded = (self.step, layers)
        return self._folded[1]

    # -- training --------------------------------------------------------------------
    def _buf(self, n):
        b = self._buffers.get(n)
        if b is None:
            b = self._buffers[n] = _Buffers(n, self.n_in, self.hidden, self.n_out)
        return b

    def train_epoch(self, x_u8, y, batch_size):
        """One epoch over a fresh permutation of ``(x_u8, y)``; returns the mean loss."""
        n_total = x_u8.shape[0]
        y = np.asarray(y, dtype=np.intp)   # label indices (one small copy per epoch)
        buf = self._buf(batch_size)
        perm = self.rng.permutation(n_total)
        total = 0.0
        for start in range(0, n_total, batch_size):
            idx = perm[start:start + batch_size]
            n = idx.shape[0]
            xb_u8, xb, yb = buf.x_u8[:n], buf.x[:n], buf.y[:n]
            np.take(x_u8, idx, axis=0, out=xb_u8)
            np.multiply(xb_u8, F32(1.0 / 255.0), out=xb)
            np.take(y, idx, out=yb)
            total += self._train_step(buf, n, xb, yb) * n
        return total / n_total

    def _train_step(self, buf, n, x, y):
        nh = len(self.hidden)
        scale = F32(1.0 / (1.0 - self.rate))
        mom = F32(self.bn_momentum)
        # Forward.
        a_in = x
        for i in range(nh):
            w, gamma, beta = self.layer(i)
            d = w.shape[1]
            z, xhat, m, a = buf.z[i][:n], buf.xhat[i][:n], buf.m[i][:n], buf.a[i][:n]
            mu, var, inv_std = self.mu[i], self.var[i], self.inv_std[i]
            np.matmul(a_in, w, out=z)
            np.mean(z, axis=0, out=mu)
            np.subtract(z, mu, out=xhat)
            np.multiply(xhat, xhat, out=z)
            np.mean(z, axis=0, out=var)
            # running := (1 - momentum) running + momentum * batch (unbiased variance)
            rm, rv = self.running_mean[i], self.running_var[i]
            rm *= F32(1.0) - mom
            rm += mom * mu
            rv *= F32(1.0) - mom
            rv += (mom * F32(n / max(n - 1, 1))) * var
            np.add(var, F32(self.bn_eps), out=inv_std)
            np.sqrt(inv_std, out=inv_std)
            np.divide(F32(1.0), inv_std, out=inv_std)
            xhat *= inv_std
            np.multiply(xhat, gamma, out=z)
            z += beta
            # m = (y > 0) * keep / (1 - rate): relu and dropout in one multiplier.
            u = buf.uniform[:n * d].reshape(n, d)
            keep = buf.keep[:n * d].reshape(n, d)
            pos = buf.pos[:n * d].reshape(n, d)
            self.rng.random(out=u, dtype=F32)
            np.greater_equal(u, F32(self.rate), out=keep)
            np.greater(z, F32(0.0), out=pos)
            np.logical_and(keep, pos, out=keep)
            np.multiply(keep, scale, out=m)
            np.multiply(z, m, out=a)
            a_in = a
        w, b = self.layer(nh)
        logits, prob, row = buf.logits[:n], buf.prob[:n], buf.row[:n]
        np.matmul(a_in, w, out=logits)
        logits += b
        np.max(logits, axis=1, keepdims=True, out=row)
        logits -= row
        np.exp(logits, out=prob)
        np.sum(prob, axis=1, keepdims=True, out=row)
        rows = buf.rows[:n]
        # loss = mean(log(sum exp) - (z_y - max))
        loss = float(np.log(row).sum() - logits[rows, y].sum()) / n
        np.divide(prob, row, out=prob)
        # dL/dlogits = (softmax - onehot) / n, in place in prob.
        prob[rows, y] -= F32(1.0)
        prob *= F32(1.0 / n)

        # Backward.
        dw, db = self.layer_grad(nh)
        np.matmul(a_in.T, prob, out=dw)
        np.sum(prob, axis=0, out=db)
        dnext = buf.da[nh - 1][:n]
        np.matmul(prob, w.T, out=dnext)
        for i in range(nh - 1, -1, -1):
            w, gamma, _ = self.layer(i)
            gw, ggamma, gbeta = self.layer_grad(i)
            dy, xhat, m, z = buf.da[i][:n], buf.xhat[i][:n], buf.m[i][:n], buf.z[i][:n]
            dy *= m
            np.sum(dy, axis=0, out=gbeta)
            np.multiply(dy, xhat, out=z)
            np.sum(z, axis=0, out=ggamma)
            # dz = gamma * inv_std / n * (n dy - dbeta - xhat * dgamma), in place in dy.
            np.multiply(xhat, ggamma, out=z)
            z += gbeta
            dy *= F32(n)
            dy -= z
            coef = self.coef[i]
            np.multiply(gamma, self.inv_std[i], out=coef)
            coef *= F32(1.0 / n)
            dy *= coef
            a_prev = buf.a[i - 1][:n] if i > 0 else x
            np.matmul(a_prev.T, dy, out=gw)
            if i > 0:
                np.matmul(dy, w.T, out=buf.da[i - 1][:n])
        self._adam()
        return loss

    def _adam(self):
        """Adam over the flat buffers: 10 in-place passes, no allocation."""
        self.step += 1
        b1, b2 = self.beta1, self.beta2
        bc1 = 1.0 - b1 ** self.step
        bc2 = 1.0 - b2 ** self.step
        g, m, v, t = self.grad, self.adam_m, self.adam_v, self.scratch
        # m += (1 - b1)(g - m);  v += (1 - b2)(g^2 - v)
        np.subtract(g, m, out=t)
        t *= F32(1.0 - b1)
        m += t
        np.multiply(g, g, out=t)
        t -= v
        t *= F32(1.0 - b2)
        v += t
        # p -= lr/bc1 * m / (sqrt(v)/sqrt(bc2) + eps) = lr sqrt(bc2)/bc1 * m / (sqrt(v) + eps sqrt(bc2))
        np.sqrt(v, out=t)
        t += F32(self.eps * np.sqrt(bc2))
        np.divide(m, t, out=t)
        t *= F32(self.lr * np.sqrt(bc2) / bc1)
        self.flat -= t

    # -- inference -------------------------------------------------------------------
    def predict(self, x):
        """Class probabilities (n, n_out) in eval mode; x (n, n_in) float in [0, 1] or uint8."""
        x = np.asarray(x)
        n = x.shape[0]
        if x.ndim != 2 or x.shape[1] != self.n_in:
            raise ValueError(f"x has shape {x.shape}, expected (n, {self.n_in})")
        bufs = self._infer_buffers.get(n)
        if bufs is None:
            bufs = [np.empty((n, d), F32) for d in self.hidden + (self.n_out,)]
            bufs.append(np.empty((n, 1), F32))
            bufs.append(np.empty((n, self.n_in), F32))
            self._infer_buffers[n] = bufs
        if x.dtype == np.uint8:
            np.multiply(x, F32(1.0 / 255.0), out=bufs[-1])
            x = bufs[-1]
        elif x.dtype != F32:
            x = x.astype(F32)
        a = x
        layers = self.folded()
        for i, (w, b) in enumerate(layers):
            out = bufs[i]
            np.matmul(a, w, out=out)
            out += b
            if i < len(layers) - 1:
                np.maximum(out, F32(0.0), out=out)
            a = out
        row = bufs[-2]
        np.max(a, axis=1, keepdims=True, out=row)
        a -= row
        np.exp(a, out=a)
        np.sum(a, axis=1, keepdims=True, out=row)
        return a / row

    def evaluate(self, x, y, batch_size=1000):
        """``(mean cross-entropy, accuracy)`` in eval mode over ``(x, y)``."""
        loss, correct = 0.0, 0
        for start in range(0, x.shape[0], batch_size):
            p = self.predict(x[start:start + batch_size])
            t = np.asarray(y[start:start + batch_size], dtype=np.intp)
            loss -= float(np.log(np.maximum(p[np.arange(t.shape[0]), t], 1e-30)).sum())
            correct += int((p.argmax(axis=1) == t).sum())
        return loss / x.shape[0], correct / x.shape[0]

    def export(self):
        """Unfolded eval-mode parameters as a dict of float32 arrays (for the ONNX graph)."""
        out = {}
        for i in range(len(self.hidden)):
            w, gamma, beta = self.layer(i)
            out[f"w{i}"] = w.copy()
            out[f"b{i}"] = np.zeros(w.shape[1], F32)
            out[f"gamma{i}"] = gamma.copy()
            out[f"beta{i}"] = beta.copy()
            out[f"mean{i}"] = self.running_mean[i].copy()
            out[f"var{i}"] = self.running_var[i].copy()
        w, b = self.layer(len(self.hidden))
        out["w_out"], out["b_out"] = w.copy(), b.copy()
        out["bn_eps"] = np.array(self.bn_eps, F32)
        return out


def _main(argv=None):
    """Train on MNIST and print seconds per epoch and test accuracy (a standalone check)."""
    import argparse
    import os
    import sys
    import time

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from _compare_data import MnistMissing, load_mnist

    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(description=_main.__doc__)
    parser.add_argument("--mnist", default=os.path.join(here, "..", "..", "shared", "data", "mnist"))
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        x, y, xt, yt = load_mnist(args.mnist)
    except MnistMissing as e:
        print(f"numpy_mlp: {e}; pass --mnist DIR", file=sys.stderr)
        return 2
    net = NumpyMLP(seed=args.seed)
    for epoch in range(1, args.epochs + 1):
        t0 = time.perf_counter()
        loss = net.train_epoch(x, y, args.batch_size)
        dt = time.perf_counter() - t0
        _, acc = net.evaluate(xt, yt)
        print(f"epoch {epoch}: {dt:.3f} s, train loss {loss:.4f}, test accuracy {acc:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
