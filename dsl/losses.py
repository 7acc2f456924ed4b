"""Every loss of the ``.net`` language, one spec per loss, registered by name: what the
checker, ``dlrun fmt``, the language reference and the runtime read about it. Pure Python.

A spec says, for its name:

    params        its parameters (``tables.Param``), in the order a call ``huber(2)`` fills them
    task          'classification' | 'binary' | 'regression': what the model predicts, which
                  metrics it reports and how its labels are encoded (``TASKS``)
    labels        its label rule, which its task implies (``TASKS``): 'class indices',
                  '0-1 targets' or 'real targets'; the runtime gives class indices as int64,
                  every other target in the model's dtype
    fuses         the output activation it computes itself from the logits (None: none);
                  which layer applies it is decided in ``dsl/output.py``
    output_problem()  its rule on the output shape (a message, or None)
    classes()     how many class weights ``class_weight=[...]`` lists for an output shape, and
                  their form in words (None: the loss takes no class weights)

The runtime keys its kernels by the same names (``runtime/losses.py``; a test holds the two
to one list). Adding a loss: docs/architecture.md, "Adding a loss".
"""
from __future__ import annotations

from dlrun.dsl import tables as T

#: task -> its label rule (``runtime/data/labels.py`` encodes labels by the task):
#:   class indices  one int64 index 0..classes-1 per sample (written as indices, one-hot rows
#:                  or class names)
#:   0-1 targets    one value in [0, 1] per sample (0/1, a probability, or one of two class names)
#:   real targets   finite real numbers, one per output
TASKS = {"classification": "class indices", "binary": "0-1 targets", "regression": "real targets"}


class LossSpec:
    """Base of every loss spec; a loss overrides what differs."""

    name = ""
    params: tuple = ()
    task = "regression"
    fuses: str | None = None

    @property
    def labels(self) -> str:
        return TASKS[self.task]

    def output_problem(self, out_shape, last: str) -> str | None:
        """Why the output (per-sample shape ``out_shape``, produced by the layer messages
        call ``last``) cannot feed this loss, or None. A fused activation needs a flat output."""
        if self.fuses is not None and len(out_shape) != 1:
            return (f"'{self.name}' needs a flat output, but {last} gives shape "
                    f"{'x'.join(map(str, out_shape))}")
        return None

    def classes(self, out_shape) -> tuple[int, str] | None:
        """``(count, form)``: the number of weights a ``class_weight=[...]`` list must have for
        a model whose output has per-sample shape ``out_shape``, and what they are in words;
        None when the loss takes no class weights."""
        return None

    def activation_problem(self, final: str, last: str) -> str:
        """The message for an output activation ``final`` (of ``last``) that is neither the
        fused activation nor linear."""
        return f"'{self.name}' needs a {self.fuses} or linear output, but {last} uses '{final}'"


class MSE(LossSpec):
    name = "mse"


class MAE(LossSpec):
    name = "mae"


class Huber(LossSpec):
    name = "huber"
    params = (T.Param("delta", "float", 1.0, lo=0.0, lo_open=True,
                      doc="quadratic below |error| = delta, linear above"),)


#: ``class_weight``: each training sample's loss (and gradient) is multiplied by the weight of
#: its class, and the sum divided by the batch's sample count, as Keras' class_weight does
#: (PyTorch's CrossEntropyLoss(weight=) divides by the sum of the batch's weights instead).
#: ``balanced`` gives class c the weight n / (classes * count_c) over the training split
#: (scikit-learn's rule), computed once when training starts and saved with the weights.
BALANCED = "balanced"


def _class_weight(doc: str) -> T.Param:
    return T.Param("class_weight", "weights", None, lo=0.0, choices=(BALANCED,), nullable=True, doc=doc)


class CrossEntropy(LossSpec):
    name = "cross_entropy"
    params = (T.Param("label_smoothing", "float", 0.0, lo=0.0, hi=1.0, hi_open=True,
                      doc="mix the one-hot target with a uniform distribution"),
              _class_weight("weight of each class's samples: balanced, or a list of one number "
                            ">= 0 per class"))
    task = "classification"
    fuses = "softmax"

    def classes(self, out_shape):
        return int(out_shape[0]), f"one per class: the output has {int(out_shape[0])} units"

    def output_problem(self, out_shape, last):
        flat = super().output_problem(out_shape, last)
        if flat is None and out_shape[0] < 2:
            return (f"'cross_entropy' needs at least 2 output units (one per class), but {last} "
                    f"has {out_shape[0]}; for a yes/no target use one sigmoid unit and "
                    "'binary_cross_entropy'")
        return flat

    def activation_problem(self, final, last):
        return f"'cross_entropy' needs softmax or linear outputs, but {last} uses '{final}'"


class BinaryCrossEntropy(LossSpec):
    name = "binary_cross_entropy"
    params = (_class_weight("weight of the samples of class 0 and of class 1: balanced, or "
                            "[w_neg, w_pos]"),)
    task = "binary"
    fuses = "sigmoid"

    def classes(self, out_shape):
        return 2, "[w_neg, w_pos]: the weights of class 0 and of class 1"

    def output_problem(self, out_shape, last):
        flat = super().output_problem(out_shape, last)
        if flat is None and out_shape[0] != 1:
            return (f"'binary_cross_entropy' needs exactly 1 output unit, but {last} has "
                    f"{out_shape[0]}; for {out_shape[0]} classes use softmax and 'cross_entropy'")
        return flat


#: name -> spec, in the order the reference documents them.
LOSSES: dict[str, LossSpec] = {s.name: s for s in (
    MSE(), MAE(), Huber(), CrossEntropy(), BinaryCrossEntropy())}

#: Losses whose targets are class labels (accuracy makes sense), in documented order.
CLASSIFICATION_LOSSES = tuple(n for n, s in LOSSES.items() if s.task != "regression")


def loss(name: str) -> LossSpec:
    return LOSSES[name]


def known() -> str:
    """'mse, mae, huber, ...' for messages."""
    return ", ".join(LOSSES)
