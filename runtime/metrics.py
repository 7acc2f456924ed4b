"""Per-epoch metrics accumulated batch by batch without per-batch allocation.

classification  accuracy (argmax of the logits == label)
binary          accuracy (probability >= 0.5, the rule of predict)
regression      mse, mae, r2 (coefficient of determination, averaged over outputs as
                scikit-learn's ``r2_score`` does; 1 - SSE/SST per output)

A classifier whose file asks for ``metrics=[mse]`` or ``[mae]`` also gets those, computed
between the predicted probabilities and the one-hot (binary: 0/1) targets, averaged over
all elements (the Brier score for ``mse``).

Sums are kept in float64.
"""
from __future__ import annotations

import numpy as np

from dlrun.kernels import activations as kact


def metric_names(task: str, requested=()) -> tuple[str, ...]:
    """The metrics reported besides the loss for ``task`` and the file's ``metrics=``."""
    if task in ("classification", "binary"):
        return ("accuracy",) + tuple(m for m in ("mse", "mae") if m in requested)
    return ("mse", "mae", "r2")


class Accumulator:
    """``reset()``, ``update(out, y)`` per batch, ``result() -> dict``."""

    def __init__(self, task: str, outputs: int, capacity: int = 0, requested=()):
        self.task = task
        self.outputs = outputs
        self.names = metric_names(task, requested)
        # classifiers asked for mse/mae: compare probabilities with one-hot targets
        self.proba_errors = task != "regression" and ("mse" in self.names or "mae" in self.names)
        self._cap = 0
        self._ensure(max(capacity, 1))
        self.reset()

    def _ensure(self, n):
        if n <= self._cap:
            return
        self._cap = n
        self._pred = np.empty(n, np.int64)
        self._hit = np.empty(n, np.bool_)
        self._diff = np.empty((n, self.outputs), np.float64)
        self._proba = None

    def reset(self):
        self.count = 0
        self.correct = 0
        self.sse = np.zeros(self.outputs)
        self.sae = np.zeros(self.outputs)
        self.sum_y = np.zeros(self.outputs)
        self.sum_y2 = np.zeros(self.outputs)

    def update(self, out, y):
        """``out``: logits or probabilities (classification: (n, k); binary: logits (n, 1)) or
        regression outputs (n, outputs); ``y``: the batch's targets."""
        n = out.shape[0]
        self._ensure(n)
        self.count += n
        if self.task == "classification":
            pred = self._pred[:n]
            np.argmax(out, axis=1, out=pred)
            hit = self._hit[:n]
            np.equal(pred, y, out=hit)
            self.correct += int(np.count_nonzero(hit))
            if self.proba_errors:
                p = self._probabilities(out, "softmax")
                p[np.arange(n), y] -= 1.0
                self._add_errors(p)
        elif self.task == "binary":
            # the rule predict uses (losses.class_indices: P(class 1) >= 0.5, on the
            # probability in the model's dtype), so a logit whose sigmoid rounds to 0.5 is
            # counted as it is predicted
            p = self._probabilities(out, "sigmoid")
            hit = self._hit[:n]
            np.greater_equal(p.reshape(n), 0.5, out=hit)
            np.equal(hit, y.reshape(n) > 0.5, out=hit)
            self.correct += int(np.count_nonzero(hit))
            if self.proba_errors:
                p -= y.reshape(n, 1)
                self._add_errors(p)
        else:
            d = self._diff[:n]
            np.subtract(out.reshape(n, -1), y.reshape(n, -1), out=d)
            self.sae += np.abs(d).sum(axis=0)
            np.multiply(d, d, out=d)
            self.sse += d.sum(axis=0)
            y2 = y.reshape(n, -1)
            self.sum_y += y2.sum(axis=0, dtype=np.float64)
            self.sum_y2 += np.square(y2, dtype=np.float64).sum(axis=0)

    def _probabilities(self, logits, act):
        n = logits.shape[0]
        buf = self._proba
        if buf is None or buf.shape[0] < n or buf.dtype != logits.dtype:
            buf = self._proba = np.empty((max(n, self._cap), logits.shape[1]), logits.dtype)
        p = buf[:n]
        kact.activation_forward(act, logits, p)
        return p

    def _add_errors(self, d):
        self.sae += np.abs(d).sum(axis=0, dtype=np.float64)
        self.sse += np.square(d).sum(axis=0, dtype=np.float64)

    def result(self) -> dict[str, float]:
        if self.count == 0:
            return {}
        if self.task in ("classification", "binary"):
            out = {"accuracy": self.correct / self.count}
            k = self.outputs
            if "mse" in self.names:
                out["mse"] = float(self.sse.sum() / (self.count * k))
            if "mae" in self.names:
                out["mae"] = float(self.sae.sum() / (self.count * k))
            return out
        n, k = self.count, self.outputs
        sst = self.sum_y2 - self.sum_y**2 / n
        with np.errstate(divide="ignore", invalid="ignore"):
            r2 = np.where(sst > 0, 1.0 - self.sse / np.where(sst > 0, sst, 1.0), 0.0)
        return {
            "mse": float(self.sse.sum() / (n * k)),
            "mae": float(self.sae.sum() / (n * k)),
            "r2": float(r2.mean()),
        }
