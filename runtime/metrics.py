"""Per-epoch metrics accumulated batch by batch without per-batch allocation.

classification  accuracy (argmax of logits or probabilities == label)
binary          accuracy (logit > 0, i.e. probability > 0.5)
regression      mse, mae, r2 (coefficient of determination, averaged over outputs as
                scikit-learn's ``r2_score`` does; 1 - SSE/SST per output)

Sums are kept in float64.
"""
from __future__ import annotations

import numpy as np


def metric_names(task: str) -> tuple[str, ...]:
    return ("accuracy",) if task in ("classification", "binary") else ("mse", "mae", "r2")


class Accumulator:
    """``reset()``, ``update(out, y)`` per batch, ``result() -> dict``."""

    def __init__(self, task: str, outputs: int, capacity: int = 0):
        self.task = task
        self.outputs = outputs
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
        elif self.task == "binary":
            hit = self._hit[:n]
            np.greater(out.reshape(n), 0.0, out=hit)
            np.equal(hit, y.reshape(n) > 0.5, out=hit)
            self.correct += int(np.count_nonzero(hit))
        else:
            d = self._diff[:n]
            np.subtract(out.reshape(n, -1), y.reshape(n, -1), out=d)
            self.sae += np.abs(d).sum(axis=0)
            np.multiply(d, d, out=d)
            self.sse += d.sum(axis=0)
            y2 = y.reshape(n, -1)
            self.sum_y += y2.sum(axis=0, dtype=np.float64)
            self.sum_y2 += np.square(y2, dtype=np.float64).sum(axis=0)

    def result(self) -> dict[str, float]:
        if self.count == 0:
            return {}
        if self.task in ("classification", "binary"):
            return {"accuracy": self.correct / self.count}
        n, k = self.count, self.outputs
        sst = self.sum_y2 - self.sum_y**2 / n
        with np.errstate(divide="ignore", invalid="ignore"):
            r2 = np.where(sst > 0, 1.0 - self.sse / np.where(sst > 0, sst, 1.0), 0.0)
        return {
            "mse": float(self.sse.sum() / (n * k)),
            "mae": float(self.sae.sum() / (n * k)),
            "r2": float(r2.mean()),
        }
