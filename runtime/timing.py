"""``dlrun time``: where a training step's time goes, layer by layer (as ``caffe time``).

A network built from the model file (random initial weights, the file's dtype) trains on a
random batch (``Network.random_inputs``: what its input layer takes; random targets of the
loss's kind) for ``warmup`` steps, then ``rounds`` timed steps. Every layer's forward (in
training mode) and backward, the loss (its value and gradient) and the optimizer's step are
timed one by one with ``time.perf_counter``; each figure is the median over the rounds, and
its share is of the median whole step (timed around the same calls). The data pipeline
(reading, shuffling, preprocessing, augmentation) is not part of it.
"""
from __future__ import annotations

import statistics
import time

import numpy as np

from dlrun.errors import UsageError

#: the vocabulary an embedding that takes its size from the data is timed with (its cost
#: does not depend on it: forward copies rows, backward writes the rows the batch touches)
TIMING_VOCAB = 1000


def random_targets(net, rng, n):
    """Targets of the loss's kind for ``n`` samples: class indices, 0/1, or values."""
    if net.task == "classification":
        return rng.integers(0, net.output_features, n).astype(net.loss.target_dtype(net.dtype))
    if net.task == "binary":
        return rng.integers(0, 2, (n, 1)).astype(net.dtype)
    return rng.standard_normal((n, net.output_features)).astype(net.dtype)


class _Timed:
    """Wraps a layer's ``forward``/``backward`` on the instance, adding each call's seconds
    to ``times[key]`` (a list per step is kept by the caller)."""

    def __init__(self, layer, times):
        self.layer, self.times = layer, times
        fwd, bwd = layer.forward, layer.backward

        def forward(*a, **k):
            t0 = time.perf_counter()
            y = fwd(*a, **k)
            times[(layer.index, "forward")] += time.perf_counter() - t0
            return y

        def backward(*a, **k):
            t0 = time.perf_counter()
            dx = bwd(*a, **k)
            times[(layer.index, "backward")] += time.perf_counter() - t0
            return dx

        layer.forward, layer.backward = forward, backward


def time_model(model_ir, batch: int = 64, rounds: int = 20, warmup: int = 3, seed: int = 0) -> dict:
    """``{"batch", "dtype", "step_ms", "rows": [{"layer", "forward_ms", "backward_ms",
    "share"}], ...}`` with a row per layer, then ``loss`` and ``optimizer``."""
    from dlrun.dsl.layers import awaiting, settle
    from dlrun.runtime.network import Network, rng_for
    from dlrun.runtime.optimizers import Optimizer

    if batch < 1 or rounds < 1 or warmup < 0:
        raise UsageError(f"dlrun time: batch ({batch}) and rounds ({rounds}) must be >= 1, warmup >= 0")
    stand_in = bool(awaiting(model_ir))
    net = Network(settle(model_ir, TIMING_VOCAB) if stand_in else model_ir, seed=seed)
    if batch < 2 and any(l.spec.batch_statistics for l in net.compute):
        raise UsageError("dlrun time: batch norm needs a batch of >= 2 samples (--batch-size 2)")
    opt = Optimizer(model_ir.optimizer, net.store)
    rng = rng_for(seed, "timing")
    x = net.random_inputs(rng, batch).astype(net.dtype, copy=False)
    y = random_targets(net, rng, batch)
    net.loss.fit_class_weight(y, net.output_features)   # balanced: over the random targets
    grad = np.empty((batch, net.output_features), net.dtype)
    layers = list(net.compute)
    times = {}
    for layer in layers:
        times[(layer.index, "forward")] = 0.0
        times[(layer.index, "backward")] = 0.0
        _Timed(layer, times)
    per_step = []
    for r in range(warmup + rounds):
        for k in times:
            times[k] = 0.0
        t0 = time.perf_counter()
        out = net.forward(x, True, True)
        t1 = time.perf_counter()
        net.loss(out, y, grad)
        t2 = time.perf_counter()
        net.backward(grad)
        t3 = time.perf_counter()
        opt.step()
        t4 = time.perf_counter()
        if r >= warmup:
            per_step.append((dict(times), t2 - t1, t4 - t3, t4 - t0))
    step = statistics.median(s[3] for s in per_step)

    def med(values):
        return statistics.median(values) * 1e3

    rows = []
    for layer in layers:
        f = med([s[0][(layer.index, "forward")] for s in per_step])
        b = med([s[0][(layer.index, "backward")] for s in per_step])
        rows.append({"layer": layer.describe(), "forward_ms": f, "backward_ms": b, "share": (f + b) / (step * 1e3)})
    loss_ms, opt_ms = med([s[1] for s in per_step]), med([s[2] for s in per_step])
    rows.append({"layer": f"loss {net.loss.name}", "forward_ms": loss_ms, "backward_ms": 0.0,
                 "share": loss_ms / (step * 1e3)})
    rows.append({"layer": f"optimizer {model_ir.optimizer.name} ({net.store.flat.size:,} parameters)",
                 "forward_ms": 0.0, "backward_ms": opt_ms, "share": opt_ms / (step * 1e3)})
    return {"model": model_ir.name, "batch": batch, "rounds": rounds, "dtype": net.dtype.name,
            "step_ms": step * 1e3, "rows": rows,
            "vocab_stand_in": TIMING_VOCAB if stand_in else None,
            "note": "forward in training mode; the loss's row is its value and gradient, the optimizer's "
                    "its update (in the backward column); shares are of the median step"}


def format_timing(result: dict) -> str:
    """The table ``dlrun time`` prints."""
    rows = result["rows"]
    name_w = max(len(r["layer"]) for r in rows + [{"layer": "layer"}])
    lines = [f"model {result['model']}: batch {result['batch']}, {result['dtype']}, median of "
             f"{result['rounds']} steps: {result['step_ms']:.3f} ms per step"
             + (f" (the vocabulary the data would size: {result['vocab_stand_in']} ids here)"
                if result.get("vocab_stand_in") else "")
             + (f"; {result['blas_threads']} BLAS thread{'s' if result['blas_threads'] > 1 else ''} "
                f"({result['blas_threads_why']})" if result.get("blas_threads") else ""),
             f"{'layer'.ljust(name_w)}  forward ms  backward ms  share"]
    lines.append("-" * len(lines[-1]))
    for r in rows:
        lines.append(f"{r['layer'].ljust(name_w)}  {r['forward_ms']:10.3f}  {r['backward_ms']:11.3f}  "
                     f"{100 * r['share']:4.1f}%")
    total = sum(r["forward_ms"] + r["backward_ms"] for r in rows)
    lines.append("-" * len(lines[1]))
    lines.append(f"{'sum of the rows'.ljust(name_w)}  {total:23.3f}  {100 * total / result['step_ms']:4.1f}%"
                 f"  (the rest: Python between the calls)")
    return "\n".join(lines)
