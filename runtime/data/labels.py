"""Labels: the task a loss implies, class names, and labels encoded as the task's loss wants.

Encodings (``encode_labels``): classification, int64 class indices ``(n,)`` (from indices,
one-hot rows or class names); binary, float64 ``(n, 1)`` in [0, 1]; regression, float64
``(n, outputs)``. String labels that are not all numbers are class names: sorted, they are
the classes (``class_names``), the same in every split.
"""
from __future__ import annotations

from typing import Callable, Iterable, Mapping

import numpy as np

from dlrun.dsl import losses as _losses
from dlrun.errors import DataError, UsageError
from dlrun.runtime.data.arrays import first_nonfinite
from dlrun.runtime.data.text import first_unconvertible, names_text, quote, shape_text, str_to_float

TASKS = tuple(_losses.TASKS)


def task_for_loss(loss_name: str) -> str:
    """The learning task a loss implies (its spec in ``dsl/losses.py``): ``'classification'``,
    ``'binary'`` or ``'regression'``.

    >>> task_for_loss("cross_entropy"), task_for_loss("huber")
    ('classification', 'regression')
    """
    spec = _losses.LOSSES.get(loss_name)
    if spec is None:
        raise UsageError(f"unknown loss {loss_name!r} (known: {_losses.known()})")
    return spec.task


def check_task(task: str) -> None:
    """Refuse a task that is not one of ``TASKS``."""
    if task not in TASKS:
        raise UsageError(f"unknown task {task!r} (expected one of {', '.join(TASKS)})")


def is_text(y) -> bool:
    return y is not None and y.dtype.kind in "US"


def as_text(y: np.ndarray) -> np.ndarray:
    return np.char.strip(y.astype(str)) if y.dtype.kind == "S" else np.char.strip(y)


def encode_labels(y: np.ndarray, *, task: str, n_outputs: int, class_names: list[str] | None,
                  shown: str, where: Callable[[int], str]) -> np.ndarray:
    """Labels in the encoding the task's loss wants (see the module docstring)."""
    if y.ndim == 0:
        raise DataError(f"{shown}: labels are a single value; expected one per sample")
    n = y.shape[0]
    if is_text(y):
        y = as_text(y)
        if task == "regression" or class_names is None:
            numbers = str_to_float(y)
            if numbers is None:
                flat = y.reshape(-1)
                k = first_unconvertible(flat.tolist())
                i = k // max(1, flat.shape[0] // n)
                value = flat[k]
                got = "an empty cell" if value == "" else quote(value)
                expected = "a number" if task == "regression" else "a number or class name"
                raise DataError(f"{shown}: {where(i)}: expected {expected}, got {got}")
            y = numbers.reshape(y.shape)
        else:
            if y.ndim != 1:
                raise DataError(f"{shown}: class-name labels must be one per sample, got shape {y.shape}")
            _check_no_empty_label(y, shown, where)
            index = {name: k for k, name in enumerate(class_names)}
            codes = np.empty(n, dtype=np.int64)
            for i, name in enumerate(y.tolist()):
                k = index.get(name)
                if k is None:
                    raise DataError(
                        f"{shown}: {where(i)}: unknown class {quote(name)} (classes: {', '.join(class_names)})"
                    )
                codes[i] = k
            if task == "binary":
                return codes.astype(np.float64).reshape(n, 1)
            return codes
    if y.dtype.kind not in "biuf":
        raise DataError(f"{shown}: labels have dtype {y.dtype}; expected numbers or class names")

    if task == "classification":
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        elif y.ndim == 2 and y.shape[1] == n_outputs and n_outputs > 1:
            # one-hot rows -> class indices
            yf = y.astype(np.float64)
            onehot = np.isin(yf, (0.0, 1.0)).all(axis=1) & (yf.sum(axis=1) == 1.0)
            if not onehot.all():
                i = int(np.argmin(onehot))
                raise DataError(
                    f"{shown}: {where(i)}: a label row of {n_outputs} values must be one-hot "
                    f"(one 1, the rest 0); got {y[i].tolist()} (cross_entropy takes class labels, "
                    f"not probabilities)"
                )
            return np.argmax(yf, axis=1).astype(np.int64)
        if y.ndim != 1:
            raise DataError(
                f"{shown}: labels of shape {shape_text(y.shape)}; a classifier with {n_outputs} classes "
                f"expects one class index per sample ({n}) or one-hot rows ({n}x{n_outputs})"
            )
        if y.dtype.kind == "f":
            ok = np.isfinite(y) & (y == np.round(y))
            if not ok.all():
                i = int(np.argmin(ok))
                raise DataError(f"{shown}: {where(i)}: label {y[i]} is not an integer class index")
        ok = (y >= 0) & (y < n_outputs)
        if not ok.all():
            i = int(np.argmin(ok))
            v = y[i].item()
            v = int(v) if float(v).is_integer() else v
            raise DataError(
                f"{shown}: {where(i)}: label {v} is outside the model's {n_outputs} classes "
                f"(expected an integer in 0..{n_outputs - 1})"
            )
        return y.astype(np.int64)

    if task == "binary":
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.ndim != 1:
            raise DataError(
                f"{shown}: labels of shape {shape_text(y.shape)}; a binary classifier expects one "
                f"label per sample, 0 or 1"
            )
        yf = y.astype(np.float64)
        ok = np.isfinite(yf) & (yf >= 0.0) & (yf <= 1.0)
        if not ok.all():
            i = int(np.argmin(ok))
            raise DataError(f"{shown}: {where(i)}: label {y[i].item()} is outside [0, 1] (binary labels)")
        return yf.reshape(n, 1)

    # regression
    yf = y.astype(np.float64)
    if yf.ndim == 1:
        yf = yf.reshape(n, 1)
    if yf.ndim != 2 or yf.shape[1] != n_outputs:
        raise DataError(
            f"{shown}: targets of shape {shape_text(y.shape)}, but the model has {n_outputs} "
            f"output{'s' if n_outputs != 1 else ''} (expected {n}x{n_outputs})"
        )
    bad = first_nonfinite(yf)
    if bad is not None:
        raise DataError(f"{shown}: {where(bad[0])}: non-finite target {bad[2]} (expected finite numbers)")
    return yf


def class_names(raws: Iterable, task: str) -> list[str] | None:
    """Sorted class names when any split's labels are names (not all numbers), else None.

    ``raws``: what the splits' files yielded (``reader.Raw``, or anything with ``y``,
    ``y_source`` and ``y_where``)."""
    if task == "regression":
        return None
    raws = [r for r in raws if r.y is not None]
    texts = [r for r in raws if is_text(r.y)]
    named = [r for r in texts if str_to_float(as_text(r.y)) is None]
    if not named:
        return None
    for r in raws:
        if not is_text(r.y):
            raise DataError(
                f"{r.y_source}: labels are numbers here but class names in {named[0].y_source}; "
                f"use one kind of label in every split"
            )
    for r in raws:
        _check_no_empty_label(as_text(r.y), r.y_source, r.y_where)
    names = sorted(set().union(*(set(as_text(r.y).ravel().tolist()) for r in raws)))
    return names


def _check_no_empty_label(text: np.ndarray, shown: str, where: Callable[[int], str]) -> None:
    empty = text.reshape(text.shape[0], -1) == ""
    if empty.any():
        i = int(np.argmax(empty.any(axis=1)))
        raise DataError(f"{shown}: {where(i)}: empty label (expected a class name)")


def check_held_out_classes(raws: Mapping, names: list[str], task: str, n_outputs: int) -> None:
    """When the classes are too many for the model, blame the file and line where a class
    the training file lacks appears (not the training file)."""
    want = 2 if task == "binary" else n_outputs
    train = raws["train"]
    if len(names) <= want or train.y is None or not is_text(train.y):
        return
    known = set(as_text(train.y).ravel().tolist())
    for role, raw in raws.items():
        if role == "train" or raw.y is None or not is_text(raw.y):
            continue
        text = as_text(raw.y).reshape(raw.y.shape[0], -1)[:, 0].tolist()
        for i, name in enumerate(text):
            if name not in known:
                raise DataError(
                    f"{raw.y_source}: {raw.y_where(i)}: class {quote(name)} is not among the "
                    f"{len(known)} classes of the training file {train.y_source} "
                    f"({names_text(sorted(known))})")


def check_class_count(names: list[str], task: str, n_outputs: int, shown: str) -> None:
    """As many class names as the model's output has classes."""
    want = 2 if task == "binary" else n_outputs
    if len(names) != want:
        listed = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
        unit = "a binary output (2 classes)" if task == "binary" else f"{n_outputs} output classes"
        raise DataError(
            f"{shown}: the labels name {len(names)} classes ({listed}), but the model has {unit}"
        )


def class_names_of(y) -> list[str] | None:
    """Sorted distinct names when ``y`` holds strings that are not all numbers, else None.

    For labels given through the API: ``make_dataset(..., class_names=class_names_of(y))``.

    >>> class_names_of(["b", "a", "b"]), class_names_of([0, 1])
    (['a', 'b'], None)
    """
    y = np.asarray(y)
    if not is_text(y):
        return None
    text = as_text(y)
    if str_to_float(text) is not None:
        return None
    return sorted(set(text.ravel().tolist()))
