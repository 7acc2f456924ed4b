"""A careful hand-written NumPy MLP: the plain-NumPy reference of ``benchmarks/compare.py``.

Network (the MNIST benchmark's, in the order of ``models/mnist_mlp.net``): for each hidden
width d in ``hidden``
    r = relu(a W + b)
    y = gamma * (r - mu_B) / sqrt(var_B + eps) + beta        (batch statistics in training)
    a = y * keep / (1 - rate)                                 (inverted dropout)
then logits = a W_out + b_out and the mean softmax cross-entropy. Initialisation as the
model file's: He normal for the hidden weights, Xavier uniform for the output, zero biases.
Adam (PyTorch's form: ``p -= lr / bc1 * m / (sqrt(v) / sqrt(bc2) + eps)``) over one flat
parameter buffer. Batch-norm running statistics: ``running := 0.9 running + 0.1 batch``
(unbiased variance), eps 1e-5.

What makes it careful rather than naive:
- float32 throughout; every activation, gradient and scratch array is allocated once per
  batch size and reused (a short last batch uses leading-row views of the same buffers);
- every GEMM writes into its destination with ``np.matmul(..., out=)``, transposed operands
  are passed as views (BLAS gets the transpose flag, no copy);
- parameters, gradients and both Adam moments each live in one flat buffer, so the
  optimizer is a handful of in-place passes over 0.5 M floats instead of a loop over tensors;
- the dropout mask is one float multiplier ``m = keep / (1 - rate)``: forward ``a = y * m``,
  backward ``dy = da * m``; ReLU runs in place and its mask is read back from its output;
- uint8 images stay uint8; each batch is gathered and scaled into a float32 buffer;
- inference folds each batch norm into the next layer's weights
  (``W' = s W``, ``b' = b + (beta - mu s) W`` with ``s = gamma / sqrt(var + eps)``).

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> x = rng.integers(0, 256, (256, 20), dtype=np.uint8); y = (x[:, 0] > 127).astype(np.uint8)
    >>> net = NumpyMLP(20, (32, 16), 2, dropout=0.1, seed=0)
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
            self.z.append(np.empty((n, d), F32))      # relu output r
            self.xhat.append(np.empty((n, d), F32))   # normalised z, kept for backward
            self.m.append(np.empty((n, d), F32))      # dropout multiplier keep / (1 - rate)
            self.a.append(np.empty((n, d), F32))      # layer output
            self.da.append(np.empty((n, d), F32))     # gradient w.r.t. the output
        width = max(hidden)
        self.tmp = np.empty(n * width, F32)           # scratch
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
                 betas=(0.9, 0.999), eps=1e-8, bn_momentum=0.1, bn_eps=1e-5, label_smoothing=0.0,
                 seed=0):
        self.n_in, self.hidden, self.n_out = n_in, tuple(hidden), n_out
        self.rate, self.lr, self.beta1, self.beta2, self.eps = dropout, lr, betas[0], betas[1], eps
        self.bn_momentum, self.bn_eps = bn_momentum, bn_eps
        self.label_smoothing = float(label_smoothing)
        self.rng = np.random.default_rng(seed)
        self.step = 0

        # One flat buffer per role; every parameter and gradient is a view into it.
        shapes = []
        fan_in = n_in
        for d in self.hidden:
            shapes += [(fan_in, d), (d,), (d,), (d,)]   # W, b, gamma, beta
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

        # The model file's initialisation: He normal before ReLU, Xavier uniform before the
        # softmax, biases 0; batch norm gamma 1, beta 0.
        for i in range(len(self.hidden)):
            w, _, gamma, _ = self.layer(i)
            w[...] = self.rng.standard_normal(w.shape) * np.sqrt(2.0 / w.shape[0])
            gamma[...] = 1.0
        w = self.params[-2]
        bound = np.sqrt(6.0 / (w.shape[0] + w.shape[1]))
        w[...] = self.rng.uniform(-bound, bound, w.shape)

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
        """``(W, b, gamma, beta)`` of hidden layer i, or ``(W_out, b_out)`` for i = len(hidden)."""
        if i < len(self.hidden):
            return tuple(self.params[4 * i:4 * i + 4])
        return self.params[-2], self.params[-1]

    def layer_grad(self, i):
        if i < len(self.hidden):
            return tuple(self.grads[4 * i:4 * i + 4])
        return self.grads[-2], self.grads[-1]

    def folded(self):
        """Inference weights, each batch norm folded into the next dense: ``[(W', b'), ...]``.

        The batch norm after layer i is ``y = s r + t`` (``s = gamma / sqrt(var + eps)``,
        ``t = beta - mu s``), so the next dense ``y W + b = r (s W) + (t W + b)``.
        """
        if self._folded is None or self._folded[0] != self.step:
            layers = []
            s = t = None
            for i in range(len(self.hidden) + 1):
                w, b = self.layer(i)[:2]
                w = w.astype(np.float64)
                b = b.astype(np.float64)
                if s is not None:
                    b = b + t @ w
                    w = s[:, None] * w
                layers.append((np.ascontiguousarray(w, dtype=F32), b.astype(F32)))
                if i < len(self.hidden):
                    gamma, beta = self.layer(i)[2:]
                    s = gamma.astype(np.float64) / np.sqrt(self.running_var[i].astype(np.float64)
                                                           + self.bn_eps)
                    t = beta - self.running_mean[i] * s
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
            w, b, gamma, beta = self.layer(i)
            d = w.shape[1]
            r, xhat, m, a = buf.z[i][:n], buf.xhat[i][:n], buf.m[i][:n], buf.a[i][:n]
            mu, var, inv_std = self.mu[i], self.var[i], self.inv_std[i]
            np.matmul(a_in, w, out=r)
            r += b
            np.maximum(r, F32(0.0), out=r)
            np.mean(r, axis=0, out=mu)
            np.subtract(r, mu, out=xhat)
            sq = buf.tmp[:n * d].reshape(n, d)
            np.multiply(xhat, xhat, out=sq)
            np.mean(sq, axis=0, out=var)
            # running := (1 - momentum) running + momentum * batch (unbiased variance)
            rm, rv, c = self.running_mean[i], self.running_var[i], self.coef[i]
            rm *= F32(1.0) - mom
            np.multiply(mu, mom, out=c)
            rm += c
            rv *= F32(1.0) - mom
            np.multiply(var, mom * F32(n / max(n - 1, 1)), out=c)
            rv += c
            np.add(var, F32(self.bn_eps), out=inv_std)
            np.sqrt(inv_std, out=inv_std)
            np.divide(F32(1.0), inv_std, out=inv_std)
            xhat *= inv_std
            # a = (gamma xhat + beta) * keep / (1 - rate)
            u = buf.uniform[:n * d].reshape(n, d)
            keep = buf.keep[:n * d].reshape(n, d)
            self.rng.random(out=u, dtype=F32)
            np.greater_equal(u, F32(self.rate), out=keep)
            np.multiply(keep, scale, out=m)
            np.multiply(xhat, gamma, out=a)
            a += beta
            a *= m
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
        # Target t = (1 - eps) onehot + eps / K (label smoothing eps; 0 = plain one-hot).
        # loss = mean(-sum_k t_k log p_k) with log p_k = s_k - log(sum exp), s = z - max:
        #      = mean(log(sum exp) - (1 - eps) s_y - eps / K sum_k s_k)
        ls, k = self.label_smoothing, self.n_out
        loss = float(np.log(row).sum()) - (1.0 - ls) * float(logits[rows, y].sum())
        if ls:
            loss -= ls / k * float(logits.sum())
        loss /= n
        np.divide(prob, row, out=prob)
        # dL/dlogits = (softmax - t) / n, in place in prob.
        prob[rows, y] -= F32(1.0 - ls)
        if ls:
            prob -= F32(ls / k)
        prob *= F32(1.0 / n)

        # Backward.
        dw, db = self.layer_grad(nh)
        np.matmul(a_in.T, prob, out=dw)
        np.sum(prob, axis=0, out=db)
        np.matmul(prob, w.T, out=buf.da[nh - 1][:n])
        for i in range(nh - 1, -1, -1):
            w, _, gamma, _ = self.layer(i)
            gw, gb, ggamma, gbeta = self.layer_grad(i)
            d = w.shape[1]
            dy, xhat, m, r = buf.da[i][:n], buf.xhat[i][:n], buf.m[i][:n], buf.z[i][:n]
            tmp = buf.tmp[:n * d].reshape(n, d)
            pos = buf.pos[:n * d].reshape(n, d)
            dy *= m
            np.sum(dy, axis=0, out=gbeta)
            np.multiply(dy, xhat, out=tmp)
            np.sum(tmp, axis=0, out=ggamma)
            # dr = gamma * inv_std / n * (n dy - dbeta - xhat * dgamma), in place in dy
            np.multiply(xhat, ggamma, out=tmp)
            tmp += gbeta
            dy *= F32(n)
            dy -= tmp
            coef = self.coef[i]
            np.multiply(gamma, self.inv_std[i], out=coef)
            coef *= F32(1.0 / n)
            dy *= coef
            # through the ReLU: dz = dr where r > 0
            np.greater(r, F32(0.0), out=pos)
            dy *= pos
            np.sum(dy, axis=0, out=gb)
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
        """Eval-mode parameters as a dict of float32 arrays (for the ONNX graph): per hidden
        layer ``w{i} b{i} gamma{i} beta{i} mean{i} var{i}``, then ``w_out b_out bn_eps``, and
        the inference weights with the batch norms folded in, ``folded_w{i} folded_b{i}``."""
        out = {}
        for i in range(len(self.hidden)):
            w, b, gamma, beta = self.layer(i)
            out[f"w{i}"] = w.copy()
            out[f"b{i}"] = b.copy()
            out[f"gamma{i}"] = gamma.copy()
            out[f"beta{i}"] = beta.copy()
            out[f"mean{i}"] = self.running_mean[i].copy()
            out[f"var{i}"] = self.running_var[i].copy()
        w, b = self.layer(len(self.hidden))
        out["w_out"], out["b_out"] = w.copy(), b.copy()
        out["bn_eps"] = np.array(self.bn_eps, F32)
        for i, (w, b) in enumerate(self.folded()):      # batch norms folded (see folded())
            out[f"folded_w{i}"], out[f"folded_b{i}"] = w.copy(), b.copy()
        return out


def check_against_torch(seed=0, label_smoothing=0.0):
    """Max relative differences of NumpyMLP (float32, dropout off) from PyTorch (float64).

    From the same weights and the same batch: the loss, every gradient, the Adam update (on
    the elements whose gradient is not at float32 rounding level, where Adam's m/sqrt(v) is
    a coin toss in either precision), the running statistics and the eval-mode
    probabilities after the step. Returns ``{name: max |a - b| / max |b|}``.
    """
    import torch

    from _compare_tools import torch_model

    rng = np.random.default_rng(seed)
    n = 300
    x = rng.integers(0, 256, (n, 784), dtype=np.uint8)
    y = rng.integers(0, 10, n).astype(np.uint8)
    net = NumpyMLP(dropout=0.0, label_smoothing=label_smoothing, seed=seed)
    tm = torch_model(torch, 0.0).double()
    lin = [m for m in tm if isinstance(m, torch.nn.Linear)]
    bns = [m for m in tm if isinstance(m, torch.nn.BatchNorm1d)]
    t64 = lambda a: torch.from_numpy(np.asarray(a, np.float64))  # noqa: E731
    with torch.no_grad():
        for i in range(len(net.hidden) + 1):
            p = net.layer(i)
            lin[i].weight.copy_(t64(p[0].T))
            lin[i].bias.copy_(t64(p[1]))
            if i < len(net.hidden):
                bns[i].weight.copy_(t64(p[2]))
                bns[i].bias.copy_(t64(p[3]))
    torch_params = []
    for i in range(len(net.hidden) + 1):
        torch_params += [lin[i].weight, lin[i].bias]
        if i < len(net.hidden):
            torch_params += [bns[i].weight, bns[i].bias]
    opt = torch.optim.Adam(tm.parameters(), lr=net.lr)

    # One step: train_epoch with the batch size = n draws the permutation from net.rng.
    state = np.random.default_rng(1000)
    net.rng = np.random.default_rng(1000)
    perm = state.permutation(n)
    before = net.flat.copy()
    adam, net._adam = net._adam, (lambda: None)
    loss_np = net.train_epoch(x, y, n)
    net._adam = adam
    grads_np = [g.copy() for g in net.grads]
    net._adam()
    tm.train()
    opt.zero_grad()
    loss = torch.nn.functional.cross_entropy(tm(t64(x[perm] / 255.0)),
                                            torch.from_numpy(y[perm].astype(np.int64)),
                                            label_smoothing=label_smoothing)
    loss.backward()
    grads_t = [p.grad.detach().numpy().copy() for p in torch_params]
    before_t = [p.detach().numpy().copy() for p in torch_params]
    opt.step()

    def t_layout(a, k):   # PyTorch keeps Linear weights as (out, in)
        return a.T if a.ndim == 2 else a

    def rel(a, b):
        return float(np.abs(a - b).max() / np.abs(b).max())

    names = []
    for i in range(len(net.hidden)):
        names += [f"W{i}", f"b{i}", f"gamma{i}", f"beta{i}"]
    names += [f"W{len(net.hidden)}", f"b{len(net.hidden)}"]
    err = {"loss": abs(loss_np - float(loss.detach())) / abs(float(loss.detach()))}
    offset = 0
    for k, name in enumerate(names):
        g_np, g_t = grads_np[k], t_layout(grads_t[k], k)
        err[f"d{name}"] = rel(g_np, g_t)
        size = g_np.size
        step_np = (net.flat[offset:offset + size] - before[offset:offset + size]).reshape(g_np.shape)
        step_t = t_layout(torch_params[k].detach().numpy() - before_t[k], k)
        signal = np.abs(g_t) > 1e-4 * np.abs(g_t).max()
        err[f"Adam step {name}"] = rel(step_np[signal], step_t[signal])
        offset += size
    for i in range(len(net.hidden)):
        err[f"running_mean{i}"] = rel(net.running_mean[i], bns[i].running_mean.numpy())
        err[f"running_var{i}"] = rel(net.running_var[i], bns[i].running_var.numpy())
    tm.eval()
    with torch.no_grad():
        p_t = torch.softmax(tm(t64(x[:64] / 255.0)), 1).numpy()
    err["predict"] = rel(net.predict(x[:64]), p_t)
    return err


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
    parser.add_argument("--check", action="store_true",
                        help="compare gradients, Adam steps and predictions with PyTorch, then exit")
    args = parser.parse_args(argv)
    if args.check:
        err = {}
        for ls in (0.0, 0.1):
            e = check_against_torch(seed=args.seed, label_smoothing=ls)
            err.update({f"{k} (ls={ls:g})": v for k, v in e.items()})
        # float32 against float64: 1e-3 relative is float32 rounding (sums over 300 rows,
        # Adam's m / sqrt(v) on small gradients); a wrong formula is off by O(1).
        bad = {k: v for k, v in err.items() if not v <= 1e-3}
        for k, v in err.items():
            print(f"{k:>26}: {v:.2e}{'  <-- too large' if k in bad else ''}")
        print("numpy_mlp agrees with PyTorch" if not bad else "numpy_mlp DISAGREES with PyTorch")
        return 1 if bad else 0
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
