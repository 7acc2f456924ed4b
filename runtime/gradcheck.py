"""Finite-difference check of every gradient of a whole network (``dlrun gradcheck``).

The network is built in float64 with dropout off (batch norm keeps its training-mode
batch statistics, the path whose backward is least trivial), fed a small random batch of
the declared input shape with random targets of the right kind (a loss with
``class_weight=balanced`` weighs them by their own class counts), and for every trainable
tensor the analytic gradient of the mean loss is compared with a 4th-order central
difference ``(-f(p+2h) + 8f(p+h) - 8f(p-h) + f(p-2h)) / 12h`` in two ways:

- entry by entry, at up to ``max_entries`` random entries per tensor (all of them for
  small tensors, or with ``max_entries=0``);
- along ``directions`` random unit directions ``v`` spanning the whole tensor: the
  derivative of ``f(p + t v)`` at 0 must equal ``g . v``, so every entry of every tensor
  takes part in the check even when the tensor is too large to visit entry by entry.

Relative error of a tensor::

    max_i |a_i - n_i| / max(|a_i|, |n_i|, 1e-3 * max_j |a_j|, 1e-4 * G, 1e-12)

where ``G`` is the largest gradient magnitude of the whole network (for a direction,
``a = g . v`` and the tensor's scale is ``||g||_2``). Finite differences
carry a round-off error (about ``eps * |loss| / h``, more where batch norm subtracts
nearly equal numbers) that would make exact zeros look wrong: a dead ReLU's weight, or
the bias of a dense layer followed by batch norm, whose gradient is exactly zero. So an
element is judged against a floor of 1e-3 of its tensor's largest gradient and 1e-4 of the
network's: a wrong gradient still shows up as soon as its error exceeds about 1e-9 of the
tensor's scale (1e-10 of the network's).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dlrun.errors import UsageError

TOLERANCE = 1e-6


def relative_error(analytic, numeric, scale=None, global_scale=0.0) -> float:
    """The per-tensor figure described in the module docstring (0.0 for empty tensors).

    ``scale``: the tensor's largest gradient magnitude when only some entries are compared
    (default: the largest among those given)."""
    a = np.asarray(analytic, np.float64).ravel()
    n = np.asarray(numeric, np.float64).ravel()
    if a.size == 0:
        return 0.0
    mag = np.maximum(np.abs(a), np.abs(n))
    top = float(mag.max()) if scale is None else max(float(scale), float(mag.max()))
    floor = max(1e-3 * top, 1e-4 * float(global_scale), 1e-12)
    return float(np.max(np.abs(a - n) / np.maximum(mag, floor)))


def directional_difference(f, x, v, h):
    """4th-order central difference of scalar ``f()`` along ``v``: d/dt f(x + t v) at t = 0."""
    orig = x.copy()
    vals = []
    for step in (2 * h, h, -h, -2 * h):
        np.add(orig, step * v, out=x)
        vals.append(float(f()))
    x[...] = orig
    return (-vals[0] + 8 * vals[1] - 8 * vals[2] + vals[3]) / (12 * h)


def central_difference(f, x, index, h):
    """4th-order central difference of scalar ``f()`` with respect to ``x.flat[index]``."""
    flat = x.reshape(-1)
    orig = flat[index]
    vals = []
    for step in (2 * h, h, -h, -2 * h):
        flat[index] = orig + step
        vals.append(float(f()))
    flat[index] = orig
    return (-vals[0] + 8 * vals[1] - 8 * vals[2] + vals[3]) / (12 * h)


@dataclass
class TensorCheck:
    layer: str
    name: str
    shape: tuple
    checked: int
    max_abs_grad: float
    rel_error: float
    directions: int = 0

    @property
    def ok(self) -> bool:
        return self.rel_error <= TOLERANCE


STEPS = (1e-3, 1e-4, 1e-5, 1e-6)

#: the vocabulary an embedding that takes its size from the data is checked with
GRADCHECK_VOCAB = 50


def _targets(net, n, rng):
    task = net.task
    k = net.output_features
    if task == "classification":
        return rng.integers(0, k, n).astype(np.int64)
    if task == "binary":
        return rng.integers(0, 2, (n, 1)).astype(np.float64)
    return rng.standard_normal((n, k))


def _best_of_steps(estimate, analytic, scale, global_scale):
    """Smallest relative error over ``STEPS`` (stopping once one agrees to 1e-8)."""
    best = None
    for h in STEPS:
        err = relative_error([analytic], [estimate(h)], scale, global_scale)
        best = err if best is None else min(best, err)
        if best <= 1e-2 * TOLERANCE:  # clearly fine: no need for other steps
            break
    return best


def check_network(model_ir, batch: int = 4, seed: int = 0, max_entries: int = 24, directions: int = 3):
    """Compare analytic and numerical gradients of every parameter tensor of the model
    (``max_entries`` random entries per tensor; 0 or None compares every entry).

    Biases are moved off 0 first (by 0.05-0.2 either way), so that a relu fed by an exact 0
    (padding, a blank pixel) is not checked on its kink.

    Returns a list of ``TensorCheck``. Each compared entry tries the steps ``STEPS`` in
    turn until one agrees to 1e-8 and keeps the smallest error (a smaller step steps back
    from a ReLU kink that a larger one straddles; a larger one has less round-off); the
    tensor's figure is the worst entry's.
    """
    from dlrun.dsl.layers import awaiting, settle
    from dlrun.runtime.network import Network, rng_for

    # a size the file leaves to the data (an embedding's vocabulary) is not read for a
    # gradient check: a small stand-in vocabulary checks the same gradients
    net = Network(settle(model_ir, GRADCHECK_VOCAB) if awaiting(model_ir) else model_ir, dtype=np.float64, seed=seed)
    norms = [l for l in net.compute if l.spec.batch_statistics]
    if norms and int(batch) < 2:
        # over one sample batch norm outputs beta whatever its input: every gradient before
        # it is exactly 0, and a check of zeros against zeros would report "ok"
        raise UsageError(f"gradcheck with a batch of {int(batch)} sample through {norms[0].describe()}: "
                         "batch norm over one sample makes every gradient before it 0, so nothing "
                         "would be checked; use a batch of >= 2 samples (--batch-size 2)")
    for layer in net.compute:
        layer.set_randomness(False)
    rng = rng_for(seed, "gradcheck")
    # biases start at 0: where an input is exactly 0 (padding, a blank pixel) a relu would then
    # sit on its kink, where no finite difference agrees; check at a point off the kinks
    for layer in net.compute:
        for spec in layer.param_specs():
            if spec.role == "bias":
                b = layer.params[spec.name]
                b += rng.uniform(0.05, 0.2, b.shape) * rng.choice([-1.0, 1.0], b.shape)
    x = net.random_inputs(rng, batch)
    y = _targets(net, batch, rng)
    # class_weight=balanced: weights of the random targets (a list is the file's), so the
    # weighted loss's gradient is what is checked
    net.loss.fit_class_weight(y, net.output_features)
    grad = np.empty((batch, net.output_features))

    def loss():
        return net.loss(net.forward(x, True, True), y, grad)

    loss()
    net.backward(grad)
    analytic = net.store.grad.copy()
    global_scale = float(np.abs(analytic).max()) if analytic.size else 0.0
    results = []
    for layer, name, p in net.named_params():
        pflat = p.reshape(-1)
        entry = net.store.entries[(layer.key, name)]
        a_all = analytic[entry.offset:entry.offset + entry.size]
        scale = float(np.abs(a_all).max()) if a_all.size else 0.0
        if not max_entries or pflat.size <= max_entries:
            picks = np.arange(pflat.size)
        else:
            picks = np.sort(rng.choice(pflat.size, max_entries, replace=False))
        worst = 0.0
        for i in picks:
            i = int(i)
            worst = max(worst, _best_of_steps(lambda h: central_difference(loss, p, i, h),
                                              a_all[i], scale, global_scale))
        g = a_all.reshape(p.shape)
        norm = float(np.sqrt(np.sum(g * g)))
        for _ in range(directions if p.size > picks.size else 0):
            v = rng.standard_normal(p.shape)
            v /= np.sqrt(np.sum(v * v))
            worst = max(worst, _best_of_steps(lambda h: directional_difference(loss, p, v, h),
                                              float(np.sum(g * v)), norm, global_scale))
        results.append(TensorCheck(layer.describe(), name, tuple(p.shape), int(picks.size), scale, worst,
                                   directions if p.size > picks.size else 0))
    return results


def format_table(results) -> str:
    """The table ``dlrun gradcheck`` prints."""
    rows = [("layer", "tensor", "shape", "entries", "directions", "max |grad|", "rel. error", "")]
    for r in results:
        rows.append((r.layer, r.name, "x".join(map(str, r.shape)), str(r.checked), str(r.directions),
                     f"{r.max_abs_grad:.3e}", f"{r.rel_error:.2e}", "ok" if r.ok else "FAIL"))
    widths = [max(len(row[c]) for row in rows) for c in range(len(rows[0]))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in rows)
