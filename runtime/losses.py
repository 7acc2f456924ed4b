"""The loss at the end of a network, mapped onto the fused loss kernels; and the one rule
that turns predicted probabilities into classes.

``cross_entropy`` is computed from logits by ``softmax_cross_entropy`` and
``binary_cross_entropy`` by ``sigmoid_binary_cross_entropy``: when the model's output
activation is softmax (resp. sigmoid) the network is trained on its pre-activation (the
logits), which is both faster and numerically stable; when it is linear its outputs *are*
the logits, and prediction applies softmax (resp. sigmoid) to return probabilities.
``mse``, ``mae`` and ``huber`` apply to the outputs and backpropagate through whatever
activation the last layer has. Which of these holds is decided by the checker
(``dsl/output.py``) and recorded in ``ir.Model.output``; this module only reads it.

What a loss is (parameters, task, fused activation, label rule) is its spec in
``dsl/losses.py``; here each loss name maps to its kernel (``KERNELS``).
"""
from __future__ import annotations

import numpy as np

from dlrun.dsl.losses import LOSSES
from dlrun.errors import UsageError
from dlrun.kernels import losses as kloss

#: loss name -> kernel ``(out, target, grad, *params) -> mean loss``: it writes dLoss/dout
#: into ``grad`` and takes the loss's parameters in the order of its spec's ``params``.
KERNELS = {
    "mse": kloss.mse,
    "mae": kloss.mae,
    "huber": kloss.huber,
    "cross_entropy": kloss.softmax_cross_entropy,
    "binary_cross_entropy": kloss.sigmoid_binary_cross_entropy,
}

_CASTS = {"float": float, "int": int, "bool": bool}


def target_dtype(spec, dtype) -> np.dtype:
    """The dtype of a loss's targets: int64 class indices for a loss taking class indices,
    every other target in the model's dtype ``dtype``."""
    return np.dtype(np.int64) if spec.labels == "class indices" else np.dtype(dtype)


class LossHead:
    """Computes the mean loss of a batch and writes its gradient into ``grad``.

    ``output`` is the model's ``ir.Output``. ``fused`` is True when the network's final
    activation is part of the loss (training and evaluation then run the network up to
    the logits); ``proba_act`` names the activation predict must apply to the network's
    outputs (softmax/sigmoid on logits of a linear output layer), or None.
    """

    def __init__(self, loss, output):
        if loss.name not in KERNELS or loss.name not in LOSSES:
            known = [n for n in LOSSES if n in KERNELS]
            raise UsageError(f"unknown loss {loss.name!r} (known: {', '.join(known)})")
        self.name = loss.name
        self.spec = LOSSES[loss.name]
        self.params = dict(loss.params)
        self.task = output.task
        self.fused = output.fused
        self.proba_act = output.proba
        self._kernel = KERNELS[loss.name]
        # a parameter left out (an IR built in Python) takes its spec's default
        self._args = tuple(
            _CASTS[p.type](p.default if self.params.get(p.name) is None else self.params[p.name])
            for p in self.spec.params)

    def target_dtype(self, dtype):
        """Labels stay int64 for cross-entropy; every other target is in the model's dtype."""
        return target_dtype(self.spec, dtype)

    def __call__(self, out, target, grad) -> float:
        return self._kernel(out, target, grad, *self._args)


def class_indices(proba: np.ndarray, task: str) -> np.ndarray:
    """The predicted class of each row of ``proba`` (what ``predict`` returns), int64 ``(n,)``:
    classification, the most probable class (the first on a tie); binary, 1 when
    P(class 1) >= 0.5. The one rule for class predictions (``Model.predict_classes`` and
    ``dlrun predict``)."""
    if task == "classification":
        return proba.argmax(axis=1).astype(np.int64)
    if task == "binary":
        return (proba[:, 0] >= 0.5).astype(np.int64)
    raise UsageError(f"class predictions need a classifier; a {task} model predicts values")
