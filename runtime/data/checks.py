"""Inputs checked against the model: numeric dtype, samples, the feature count of its
``input`` and how each sample's shape is read into it, finite values, the range of its dtype
after preprocessing, one label per sample.

``check_input_layout`` needs only a shape and a dtype, so it runs on a file's header
(``header_check``) before the values are read or decompressed, and for ``dlrun check --data``.

How a sample is read into the model's input (``input_reading``; the data block's ``layout``
decides between the two image orders when both fit)::

    input        per-sample shapes accepted
    F (rank 1)   any shape of F values, read row-major (as ``flatten`` would)
    AxB          (A, B), or flat rows of A*B values
    CxHxW        (C*H*W,) flat rows, read row-major (what ``flatten`` undoes)
                 (H, W) when C = 1
                 (C, H, W) channels first
                 (H, W, C) channels last (transposed to channels first)

Any other shape of the same size is refused, naming the shapes expected: reshaping a
channels-last image into channels first is a silent wrong answer.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from dlrun.errors import DataError
from dlrun.runtime.data.arrays import chunk_rows, first_nonfinite, sample_size
from dlrun.runtime.data.text import shape_text

if TYPE_CHECKING:
    from dlrun.runtime.data.preprocess import Preprocessor


def input_reading(sample: tuple, input_shape: tuple, layout: str | None, shown: str) -> str:
    """How samples of shape ``sample`` (as many values as ``input_shape``) are read into the
    model's input: ``'as is'``, ``'reshape'`` (row-major) or ``'channels_last'`` (``(H, W, C)``
    transposed to ``(C, H, W)``); a DataError for a shape that has no honest reading (see the
    module docstring). ``layout``: the data block's (None: not given)."""
    sample, input_shape = tuple(int(d) for d in sample), tuple(int(d) for d in input_shape)
    if len(input_shape) == 1 or len(sample) <= 1:
        return "as is" if sample == input_shape else "reshape"
    model = shape_text(input_shape)
    size = sample_size(input_shape)
    if len(input_shape) == 2:
        if sample == input_shape:
            return "as is"
        raise DataError(f"{shown}: samples of shape {shape_text(sample)}, but the model's input is {model}; "
                        f"expected samples of shape {model} or flat rows of {size} values")
    c, h, w = input_shape
    first, last = (c, h, w), (h, w, c)
    if c == 1 and sample in ((h, w), first, last):
        # one channel: every order holds the same values in the same order
        return "as is" if sample == first else "reshape"
    if sample == first == last:
        if layout is None:
            raise DataError(
                f"{shown}: samples of shape {shape_text(sample)} fit the model's input {model} both "
                f"channels first (C, H, W) and channels last (H, W, C); say which with "
                f"`layout channels_first` or `layout channels_last` in the data block")
        return "as is" if layout == "channels_first" else "channels_last"
    if sample == first and layout != "channels_last":
        return "as is"
    if sample == last and layout != "channels_first":
        return "channels_last"
    if layout is not None and sample in (first, last):
        want = first if layout == "channels_first" else last
        raise DataError(
            f"{shown}: samples of shape {shape_text(sample)}, but the data block says `layout {layout}`: "
            f"for the model's input {model} that is samples of shape {shape_text(want)}")
    one = f", {shape_text((h, w))} (one channel)" if c == 1 else ""
    raise DataError(
        f"{shown}: samples of shape {shape_text(sample)} do not match the model's input {model} "
        f"(channels x height x width): expected {shape_text(first)} (channels first), "
        f"{shape_text(last)} (channels last){one} or flat rows of {size} values")


def check_input_layout(shape: Sequence[int], dtype, input_shape: tuple, shown: str,
                       layout: str | None = None, reading: bool = True) -> None:
    """The checks of ``prepare_x`` that need only the inputs' shape and dtype (also used by
    ``dlrun check --data``, which reads no more than an array's header). ``reading`` False
    checks the size only (a reader's header check, which does not know the layout)."""
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
    if reading:
        input_reading(tuple(shape[1:]), input_shape, layout, shown)


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
            check_input_layout(shape, dtype, tuple(int(d) for d in input_shape), shown, reading=False)

    return check


def _kept_dtype(dtype) -> np.dtype:
    """uint8, float32 and float64 are kept; float16 becomes float32, other numbers float64."""
    dtype = np.dtype(dtype)
    if dtype in (np.dtype(np.uint8), np.dtype(np.float32), np.dtype(np.float64)):
        return dtype
    return np.dtype(np.float32) if dtype == np.float16 else np.dtype(np.float64)


def channels_first(x: np.ndarray, dtype) -> np.ndarray:
    """``(n, H, W, C)`` -> a new C-contiguous ``(n, C, H, W)`` array of ``dtype``, filled in
    chunks (no transposed copy of the whole set besides the result)."""
    n, h, w, c = x.shape
    out = np.empty((n, c, h, w), dtype)
    step = chunk_rows(h * w * c * 8)
    for s in range(0, n, step):
        out[s : s + step] = x[s : s + step].transpose(0, 3, 1, 2)
    return out


def prepare_x(x: np.ndarray, input_shape: tuple, shown: str, where: Callable[[int, int], str],
              layout: str | None = None) -> np.ndarray:
    """Check ``x`` against the model's input; returns it shaped ``(n, *input_shape)``, each
    sample read as ``input_reading`` says (``layout``: the data block's).

    uint8, float32 and float64 are kept; other numeric types become float64 (float16 float32).
    """
    x = np.asarray(x)
    input_shape = tuple(int(d) for d in input_shape)
    check_input_layout(x.shape, x.dtype, input_shape, shown, layout)
    n = int(x.shape[0])
    dtype = _kept_dtype(x.dtype)
    if input_reading(x.shape[1:], input_shape, layout, shown) == "channels_last":
        x = channels_first(x, dtype)
        where = _transposed_where(where, input_shape)
    else:
        if x.shape[1:] != input_shape:
            x = x.reshape((n,) + input_shape)
        if x.dtype != dtype:
            x = x.astype(dtype)
    if x.dtype.kind == "f":
        bad = first_nonfinite(x.reshape(n, -1))
        if bad is not None:
            i, j, v = bad
            raise DataError(f"{shown}: {where(i, j)}: non-finite value {v} (expected finite numbers)")
    return x


def _transposed_where(where, input_shape):
    """``where`` for feature ``j`` of a channels-first sample whose file holds it channels last."""
    c, h, w = input_shape

    def at(i, j):
        ch, rest = divmod(int(j), h * w)
        y, xx = divmod(rest, w)
        return where(i, (y * w + xx) * c + ch)

    return at


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
