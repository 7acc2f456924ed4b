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

Class weights (``class_weight=`` of the cross-entropy losses) are passed to the fused kernel,
which multiplies each sample's loss and gradient by its class's weight and divides the sum
by the batch's sample count (Keras' normalisation: the loss stays a mean over samples, so a
batch split between processes, or an evaluation run batch by batch, adds up as before).
A list is the file's; ``balanced`` is computed from the training split's labels when
training starts (``LossHead.fit_class_weight``) and saved with the weights
(``loss.class_weight``), so evaluation and resumed training use the same numbers.
"""
from __future__ import annotations

import numpy as np

from dlrun.dsl.losses import BALANCED, LOSSES
from dlrun.errors import UsageError
from dlrun.kernels import losses as kloss

#: loss name -> kernel ``(out, target, grad, *params) -> mean loss``: it writes dLoss/dout
#: into ``grad`` and takes the loss's numeric parameters in the order of its spec's ``params``
#: (``class_weight`` by name, as a float64 array).
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
            for p in self.spec.params if p.type in _CASTS)
        # class weights: the file's list, or (balanced) None until fit_class_weight / a load
        self.class_weight_rule = self.params.get("class_weight")
        self.class_weight = None
        if isinstance(self.class_weight_rule, (tuple, list)):
            self.class_weight = np.array(self.class_weight_rule, dtype=np.float64)
        self._extra = {}
        self._set_extra()

    def _set_extra(self):
        if self.class_weight is not None:
            self._extra = {"class_weight": self.class_weight}

    @property
    def balanced(self) -> bool:
        """True when the class weights are computed from the training labels."""
        return self.class_weight_rule == BALANCED

    def fit_class_weight(self, y, classes: int) -> None:
        """``balanced``: the weights n / (classes * count_c) of the training labels ``y``
        (class indices, or 0-1 targets of a binary loss: a soft target t counts t towards
        class 1 and 1 - t towards class 0). A class absent from ``y`` gets weight 0 (it has
        no samples to weigh). Computed once: a head that has its weights keeps them."""
        if not self.balanced or self.class_weight is not None:
            return
        y = np.asarray(y)
        n = y.shape[0]
        if n == 0:
            raise UsageError("class_weight=balanced needs training labels; the training set is empty")
        if self.task == "classification":
            counts = np.bincount(y.reshape(n).astype(np.int64), minlength=classes).astype(np.float64)
        else:
            pos = float(np.asarray(y, np.float64).sum())
            counts = np.array([n - pos, pos])
            classes = 2
        with np.errstate(divide="ignore"):
            w = np.where(counts > 0, n / (classes * counts), 0.0)
        self.set_class_weight(w)

    def set_class_weight(self, w) -> None:
        """Use the class weights ``w`` (float64, one per class; from the weights file)."""
        self.class_weight = np.ascontiguousarray(w, dtype=np.float64)
        self._set_extra()

    def target_dtype(self, dtype):
        """Labels stay int64 for cross-entropy; every other target is in the model's dtype."""
        return target_dtype(self.spec, dtype)

    def __call__(self, out, target, grad) -> float:
        if self.balanced and self.class_weight is None:
            raise UsageError(
                f"loss {self.name} class_weight=balanced: the class weights are computed from the "
                "training split when training starts, and these weights were loaded from a file "
                "that holds none (trained without class_weight=balanced); train the model again, "
                "or write the weights as a list")
        return self._kernel(out, target, grad, *self._args, **self._extra)


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
