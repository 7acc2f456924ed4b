"""Per-epoch metrics accumulated batch by batch without per-batch allocation.

classification  accuracy (argmax of the logits == label); asked for: precision, recall, f1
                (macro: the mean over the classes of each class's figure, a class never
                predicted has precision 0, one never present recall 0, as scikit-learn's
                ``zero_division=0``), from the confusion matrix (rows: true class, columns:
                predicted), which ``class_report`` turns into per-class figures
binary          as classification over the two classes (probability >= 0.5, the rule of predict)
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


_CLASS_SCORES = ("precision", "recall", "f1")


def metric_names(task: str, requested=()) -> tuple[str, ...]:
    """The metrics reported besides the loss for ``task`` and the file's ``metrics=``."""
    if task in ("classification", "binary"):
        return ("accuracy",) + tuple(m for m in _CLASS_SCORES + ("mse", "mae") if m in requested)
    return ("mse", "mae", "r2")


def class_scores(confusion) -> dict[str, np.ndarray]:
    """Per class (the rows of ``confusion``: true class; columns: predicted): ``precision``,
    ``recall``, ``f1`` (0 where undefined) and ``support`` (the class's samples)."""
    c = np.asarray(confusion, np.float64)
    tp = np.diag(c)
    predicted, support = c.sum(axis=0), c.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(support > 0, tp / support, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support.astype(np.int64)}


def class_report(confusion, class_names) -> dict:
    """``{"classes", "confusion", "per_class": {name: {precision, recall, f1, support}}}``
    (JSON-ready) of a confusion matrix."""
    s = class_scores(confusion)
    names = [str(n) for n in class_names]
    return {"classes": names, "confusion": np.asarray(confusion).tolist(),
            "per_class": {n: {"precision": float(s["precision"][i]), "recall": float(s["recall"][i]),
                              "f1": float(s["f1"][i]), "support": int(s["support"][i])}
                          for i, n in enumerate(names)}}


class Accumulator:
    """``reset()``, ``update(out, y)`` per batch, ``result() -> dict``."""

    def __init__(self, task: str, outputs: int, capacity: int = 0, requested=(), confusion: bool = False,
                 target_std=None):
        """``confusion``: keep the confusion matrix (a classifier's; kept anyway when
        precision, recall or f1 are requested). ``target_std``: regression outputs and
        targets are standardized (``target standardize``) with these per-output stds: the
        sums are kept in standardized units and ``result`` reports mse and mae in the
        targets' units (errors scale by std; r2, a ratio of two such sums, does not change)."""
        self.target_std = None if target_std is None else np.asarray(target_std, np.float64)
        self.task = task
        self.outputs = outputs
        self.names = metric_names(task, requested)
        # classifiers asked for mse/mae: compare probabilities with one-hot targets
        self.proba_errors = task != "regression" and ("mse" in self.names or "mae" in self.names)
        self.classes = 0 if task == "regression" else (2 if task == "binary" else outputs)
        self.track = self.classes > 0 and (confusion or any(m in self.names for m in _CLASS_SCORES))
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
        # rows: true class, columns: predicted (classifiers)
        self.confusion = np.zeros((self.classes, self.classes), np.int64)

    def sums(self) -> np.ndarray:
        """Every running sum as one float64 vector (to add the sums of several processes)."""
        return np.concatenate(([self.count, self.correct], self.sse, self.sae, self.sum_y, self.sum_y2,
                               self.confusion.ravel()))

    def set_sums(self, v) -> None:
        """The inverse of ``sums``."""
        k = self.outputs
        self.count, self.correct = int(round(v[0])), int(round(v[1]))
        for i, name in enumerate(("sse", "sae", "sum_y", "sum_y2")):
            getattr(self, name)[...] = v[2 + i * k: 2 + (i + 1) * k]
        self.confusion[...] = np.rint(v[2 + 4 * k:]).reshape(self.confusion.shape)

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
            self._confuse(y, pred)
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
            truth = y.reshape(n) > 0.5
            self._confuse(truth, hit)
            np.equal(hit, truth, out=hit)
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

    def _confuse(self, truth, pred):
        if not self.track:
            return
        k = self.classes
        self.confusion += np.bincount(truth.astype(np.int64) * k + pred, minlength=k * k).reshape(k, k)

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
            if any(m in self.names for m in _CLASS_SCORES):
                s = class_scores(self.confusion)
                out.update({m: float(s[m].mean()) for m in _CLASS_SCORES if m in self.names})
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
        sse, sae = self.sse, self.sae
        if self.target_std is not None:
            sse, sae = sse * self.target_std**2, sae * self.target_std
        return {
            "mse": float(sse.sum() / (n * k)),
            "mae": float(sae.sum() / (n * k)),
            "r2": float(r2.mean()),
        }
