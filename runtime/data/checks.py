"""Inputs checked against the model: numeric dtype, samples, the feature count of its
``input``, finite values, the range of its dtype after preprocessing, one label per sample.

``check_input_layout`` needs only a shape and a dtype, so it runs on a file's header
(``header_check``) before the values are read or decompressed, and for ``dlrun check --data``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from dlrun.errors import DataError
from dlrun.runtime.data.arrays import chunk_rows, first_nonfinite, sample_size
from dlrun.runtime.data.text import shape_text

if TYPE_CHECKING:
    from dlrun.runtime.data.preprocess import Preprocessor


def check_input_layout(shape: Sequence[int], dtype, input_shape: tuple, shown: str) -> None:
    """The checks of ``prepare_x`` that need only the inputs' shape and dtype (also used by
    ``dlrun check --data``, which reads no more than an array's header)."""
    dtype = np.dtype(dtype)
    if dtype.kind not in "biuf":
        raise DataError(f"{shown}: inputs have dtype {dtype}; expected numbers")
    if len(shape) == 0:
        raise DataError(f"{shown}: inputs are a single number; expected an array of samples")
    if int(shape[0]) == 0:
        raise DataError(f"{shown}: no samples (the input array has 0 rows)")
    got, want = sample_size(shape[1:]), sample_size(input_shape)
    if got != want:
        raise DataError(
            f"{shown}: {got} features per sample (shape {shape_text(shape[1:]) or 'scalar'}), "
            f"but the model's input is {shape_text(input_shape)} ({want} features)"
        )


def header_check(input_shape, shown: str, names=None):
    """A check of an inputs array's declared ``(shape, dtype)`` against the model's input,
    run on the file's header before the array is read (None without ``input_shape``).
    Called as ``check(shape, dtype)`` (IDX) or ``check(name, shape, dtype)`` (``.npz``
    members: only those in ``names`` are checked, all when None)."""
    if input_shape is None:
        return None

    def check(*args):
        name, shape, dtype = args if len(args) == 3 else (None, *args)
        if names is None or name in names:
            check_input_layout(shape, dtype, tuple(int(d) for d in input_shape), shown)

    return check


def prepare_x(x: np.ndarray, input_shape: tuple, shown: str, where: Callable[[int, int], str]) -> np.ndarray:
    """Check ``x`` against the model's input; returns it shaped ``(n, *input_shape)``.

    uint8, float32 and float64 are kept; other numeric types become float64 (float16 float32).
    """
    x = np.asarray(x)
    input_shape = tuple(int(d) for d in input_shape)
    check_input_layout(x.shape, x.dtype, input_shape, shown)
    n = int(x.shape[0])
    if x.shape[1:] != input_shape:
        x = x.reshape((n,) + input_shape)
    if x.dtype == np.uint8 or x.dtype == np.float32 or x.dtype == np.float64:
        pass
    elif x.dtype == np.float16:
        x = x.astype(np.float32)
    else:
        x = x.astype(np.float64)
    if x.dtype.kind == "f":
        bad = first_nonfinite(x.reshape(n, -1))
        if bad is not None:
            i, j, v = bad
            raise DataError(f"{shown}: {where(i, j)}: non-finite value {v} (expected finite numbers)")
    return x


def check_model_range(x: np.ndarray, pre: "Preprocessor", dtype, shown: str,
                      where: Callable[[int, int], str], rows: np.ndarray | None = None) -> None:
    """Refuse an input whose value as the model receives it, ``x * a + b`` (the fitted
    preprocessing, in float64), overflows the model's ``dtype``: 1e39 is finite in float64,
    so the finite check passes it, but it becomes inf in a float32 model. ``where(row,
    feature)`` names the place in the file; ``rows`` maps the rows of ``x`` to the file's
    (the positions of a split)."""
    dtype = np.dtype(dtype)
    if dtype.kind != "f" or not pre.fitted or x.size == 0:
        return
    n = int(x.shape[0])
    x2 = x.reshape(n, -1)
    a, b = pre.affine
    limit = float(np.finfo(dtype).max)
    if x2.dtype == np.uint8 and float(np.max(np.abs(a) * 255.0 + np.abs(b))) <= limit:
        return
    identity = a.ndim == 0 and a == 1.0 and b.ndim == 0 and b == 0.0
    if identity and x2.dtype.kind == "f" and x2.dtype.itemsize <= dtype.itemsize:
        return  # finite values (the finite check ran) of a float no wider than dtype fit
    step = chunk_rows(x2.shape[1] * 8)
    with np.errstate(over="ignore", invalid="ignore"):
        for s in range(0, n, step):
            v = np.multiply(x2[s : s + step], a, dtype=np.float64)
            v += b
            bad = ~(np.abs(v) <= limit)
            if bad.any():
                r, c = (int(k) for k in np.argwhere(bad)[0])
                i = s + r
                after = "" if identity else f" ({v[r, c]:.4g} after preprocessing)"
                raise DataError(
                    f"{shown}: {where(int(rows[i]) if rows is not None else i, c)}: value "
                    f"{float(x2[i, c]):.6g}{after} overflows the model's {dtype.name} (largest "
                    f"magnitude {limit:.4g}); rescale the data (`scale`, `standardize`) or train in float64 "
                    f"(`train dtype=float64`)"
                )


def check_label_count(n: int, y: np.ndarray, source: str, y_source: str) -> None:
    """One label per input sample (``n`` of them)."""
    if y.ndim == 0 or y.shape[0] != n:
        ny = 1 if y.ndim == 0 else y.shape[0]
        files = source if y_source == source else f"{source} / {y_source}"
        raise DataError(f"{files}: {n} samples but {ny} labels")
