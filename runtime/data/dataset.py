"""Checked data ready for training: a ``Dataset`` per split, ``Splits`` for a model, and
``make_dataset`` for arrays given through the Python API (checked the way files are)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from dlrun.errors import DataError
from dlrun.runtime.data.checks import check_label_count, prepare_x
from dlrun.runtime.data.labels import check_class_count, check_task, class_names_of, encode_labels, is_text
from dlrun.runtime.data.reader import Raw

if TYPE_CHECKING:
    from dlrun.runtime.data.preprocess import Preprocessor
    from dlrun.runtime.data.split import DataRecord


@dataclass
class Dataset:
    """Inputs and labels of one split.

    ``x``: ``(n, *input_shape)``, uint8 kept as uint8, other inputs float32 or float64.
    ``y``: classification: int64 class indices ``(n,)``; binary: float64 ``(n, 1)`` in [0, 1];
    regression: float64 ``(n, outputs)``; None when there are no labels.
    ``source``: where the data came from (a path, for messages).
    ``vocab_size``: for token ids (a text column), the ids in use, reserved ids included.
    """

    x: np.ndarray
    y: np.ndarray | None
    source: str
    vocab_size: int | None = None

    def __len__(self) -> int:
        return int(self.x.shape[0])


@dataclass
class Splits:
    """The training, validation and test splits of a model's data, ready for training.

    ``class_names``: sorted class names when the labels were strings, else None.
    ``preprocessor``: fitted on ``train`` only.
    ``record``: what the weights keep of this data (feature names, the split, fingerprints).
    """

    train: Dataset
    validation: Dataset | None
    test: Dataset | None
    class_names: list[str] | None
    preprocessor: "Preprocessor"
    record: "DataRecord | None" = None

    @property
    def feature_names(self) -> list[str] | None:
        return None if self.record is None else self.record.feature_names

    @property
    def vocab_size(self) -> int | None:
        """A text model's token id count (the reserved ids 0 and 1 included), else None."""
        return None if self.record is None else self.record.vocab_size

    @property
    def tokenizer(self):
        """A text model's ``tokens.Tokenizer`` (fitted on ``train``), else None."""
        return None if self.record is None else self.record.tokenizer


def prepare(raw: Raw, input_shape, layout: str | None = None) -> None:
    """Check and shape ``raw``'s inputs against the model's input (once); ``layout``: the
    data block's (see ``checks.input_reading``)."""
    if not raw.prepared:
        raw.x = prepare_x(raw.x, input_shape, raw.source, raw.x_where, layout)
        raw.prepared = True


def to_dataset(raw: Raw, *, input_shape, n_outputs, task, class_names, layout=None) -> Dataset:
    """``raw`` checked against the model: inputs shaped, labels counted and encoded."""
    prepare(raw, input_shape, layout)
    x = raw.x
    y = None
    if raw.y is not None:
        y = np.asarray(raw.y)
        check_label_count(x.shape[0], y, raw.source, raw.y_source)
        y = encode_labels(y, task=task, n_outputs=n_outputs, class_names=class_names,
                          shown=raw.y_source, where=raw.y_where)
    source = raw.source if raw.y_source == raw.source else f"{raw.source} + {raw.y_source}"
    return Dataset(x, y, source)


def make_dataset(x, y=None, *, input_shape, n_outputs: int, task: str, class_names=None,
                 source: str = "<array>", layout: str | None = None) -> Dataset:
    """Check arrays given through the Python API the way files are checked.

    ``y`` may hold class names when ``class_names`` is given (they are mapped to indices).
    ``layout``: how image samples are ordered when both orders fit (``checks.input_reading``).

    >>> import numpy as np
    >>> ds = make_dataset(np.zeros((3, 2)), [0, 1, 1], input_shape=(2,), n_outputs=2,
    ...                   task="classification")
    >>> ds.x.shape, ds.y.dtype.name
    ((3, 2), 'int64')
    """
    check_task(task)
    try:
        xa = np.asarray(x)
    except (ValueError, TypeError) as err:
        raise DataError(f"{source}: inputs are not a rectangular numeric array ({err})") from None
    ya = None
    if y is not None:
        try:
            ya = np.asarray(y)
        except (ValueError, TypeError) as err:
            raise DataError(f"{source}: labels are not a rectangular array ({err})") from None
        if ya.dtype.kind == "O":
            raise DataError(f"{source}: labels must be numbers or strings, got Python objects")
    names = list(class_names) if class_names is not None else None
    if names is not None and task != "regression":
        check_class_count(names, task, n_outputs, source)
    elif is_text(ya) and task != "regression" and class_names_of(ya) is not None:
        raise DataError(f"{source}: labels are class names; pass class_names (sorted names of the classes)")
    raw = Raw(xa, ya, source, source, lambda i, j: f"x[{i}], feature {j}", lambda i: f"y[{i}]")
    return to_dataset(raw, input_shape=input_shape, n_outputs=n_outputs, task=task, class_names=names,
                      layout=layout)
