"""The loss at the end of a network, mapped onto the fused loss kernels.

``cross_entropy`` is computed from logits by ``softmax_cross_entropy`` and
``binary_cross_entropy`` by ``sigmoid_binary_cross_entropy``: when the model's output
activation is softmax (resp. sigmoid) the network is trained on its pre-activation (the
logits), which is both faster and numerically stable; when it is linear its outputs *are*
the logits, and prediction applies softmax (resp. sigmoid) to return probabilities.
``mse``, ``mae`` and ``huber`` apply to the outputs and backpropagate through whatever
activation the last layer has. Which of these holds is decided by the checker
(``dsl/output.py``) and recorded in ``ir.Model.output``; this module only reads it.
"""
from __future__ import annotations

import numpy as np

from dlrun.errors import UsageError
from dlrun.kernels import losses as kloss


class LossHead:
    """Computes the mean loss of a batch and writes its gradient into ``grad``.

    ``output`` is the model's ``ir.Output``. ``fused`` is True when the network's final
    activation is part of the loss (training and evaluation then run the network up to
    the logits); ``proba_act`` names the activation predict must apply to the network's
    outputs (softmax/sigmoid on logits of a linear output layer), or None.
    """

    def __init__(self, loss, output):
        self.name = loss.name
        self.params = dict(loss.params)
        self.task = output.task
        self.fused = output.fused
        self.proba_act = output.proba
        self.label_smoothing = float(self.params.get("label_smoothing", 0.0) or 0.0)
        self.delta = float(self.params.get("delta", 1.0) or 1.0)

    def target_dtype(self, dtype):
        """Labels stay int64 for cross-entropy; every other target is in the model's dtype."""
        return np.dtype(np.int64) if self.task == "classification" else np.dtype(dtype)

    def __call__(self, out, target, grad) -> float:
        name = self.name
        if name == "cross_entropy":
            return kloss.softmax_cross_entropy(out, target, grad, self.label_smoothing)
        if name == "binary_cross_entropy":
            return kloss.sigmoid_binary_cross_entropy(out, target, grad)
        if name == "mse":
            return kloss.mse(out, target, grad)
        if name == "mae":
            return kloss.mae(out, target, grad)
        if name == "huber":
            return kloss.huber(out, target, grad, self.delta)
        raise UsageError(f"loss {name!r} is not supported by the runtime")
