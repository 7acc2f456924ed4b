"""``.npz`` archives: inputs and labels as named arrays (``x`` and ``y``, or the names given
by ``x=`` / ``y=``), read through ``runtime/npzio.py`` (headers checked before anything is
decompressed; only the arrays asked for are read).

As a source: inputs ``x=``, labels ``y=`` unless a ``labels=`` file is given. As a labels
file: the array ``y``, or the only array. To predict on: the array ``x``, or the only array.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from dlrun.errors import DataError
from dlrun.fileopen import NotReadable, open_regular
from dlrun.runtime import npzio
from dlrun.runtime.data.checks import header_check
from dlrun.runtime.data.npy import numpy_load, starts_like
from dlrun.runtime.data.reader import Raw, Reader, array_where, sample_where
from dlrun.runtime.data.text import names_text


def load_npz(p: Path, shown: str, pick=None, check=None) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` file, without pickle, through ``npzio`` (headers checked
    before anything is decompressed). ``pick(names)``: the names to read of those in the
    archive (default all); the others are never decompressed. Returns ``{name: array or
    None}``: every name in the archive, None for those not read. ``check(name, shape,
    dtype)``: see ``npzio.read_npz``."""
    if starts_like(p, (b"PK",)):
        listing: list[str] = []

        def chosen(names):
            listing.extend(names)
            return set(names) if pick is None else set(pick(names))

        try:
            with open_regular(p) as f:
                read = npzio.read_npz(f, shown, DataError, ".npz file", chosen, check)
        except NotReadable as err:
            raise DataError(f"{shown}: {err.reason('data file')}") from None
        if not listing:
            raise DataError(f"{shown}: contains no arrays (an empty .npz archive)")
        return {name: read.get(name) for name in listing}
    arrays = numpy_load(p, shown, ".npz")
    if not isinstance(arrays, dict):
        raise DataError(f"{shown}: not an .npz archive (a single .npy array?)")
    if not arrays:
        raise DataError(f"{shown}: contains no arrays (an empty .npz archive)")
    return arrays


def _named_or_only(name: str):
    """``pick`` for ``load_npz``: the array ``name``, else the only array, else nothing."""
    return lambda names: [name] if name in names else names[:1] if len(names) == 1 else []


def _key(arrays, name: str):
    """``name`` when the archive holds it, else its only array's name, else None."""
    return name if name in arrays else (next(iter(arrays)) if len(arrays) == 1 else None)


class NpzReader(Reader):
    """``.npz``: inputs and labels as arrays of one archive, or a labels file."""

    name = "npz"
    noun = ".npz inputs"

    def read(self, p, shown, src, *, label, need_y, features, against, input_shape, resize=None):
        own_labels = src.labels is None
        arrays = load_npz(p, shown, lambda names: [src.x_key] + ([src.y_key] if own_labels else []),
                          header_check(input_shape, shown, {src.x_key}))
        if src.x_key not in arrays:
            raise DataError(
                f"{shown}: no array '{src.x_key}' (arrays in the file: {names_text(list(arrays)) or 'none'}); "
                f"name the inputs with `x=NAME`"
            )
        y = None
        y_where = sample_where
        if own_labels:
            if src.y_key in arrays:
                y = arrays[src.y_key]
                y_where = lambda i: f"array '{src.y_key}', sample {i}"
            elif need_y:
                raise DataError(
                    f"{shown}: no label array '{src.y_key}' (arrays in the file: {names_text(list(arrays))}); "
                    f"name it with `y=NAME` or give labels=\"FILE\""
                )
        return Raw(arrays[src.x_key], y, shown, shown, array_where(src.x_key), y_where)

    def read_labels(self, p, shown, label):
        arrays = load_npz(p, shown, _named_or_only("y"))
        key = _key(arrays, "y")
        if key is None:
            raise DataError(
                f"{shown}: no array 'y' in this labels file (arrays: {names_text(list(arrays)) or 'none'})"
            )
        return arrays[key], (lambda i, k=key: f"array '{k}', sample {i}")

    def read_inputs(self, p, shown, *, label, feature_names, against, input_shape, resize=None):
        arrays = load_npz(p, shown, _named_or_only("x"), header_check(input_shape, shown))
        key = _key(arrays, "x")
        if key is None:
            raise DataError(
                f"{shown}: no array 'x' and more than one array ({names_text(list(arrays))}); "
                f"expected the inputs as 'x'"
            )
        return arrays[key], array_where(key)

    def read_header(self, p, shown, src):
        # the one safe reader: headers checked, nothing else decompressed
        with open_regular(p) as f:
            return npzio.read_npz_header(f, shown, DataError, src.x_key)  # None: the full reader says why

    def read_own_labels(self, p, shown, src):
        if src.labels is not None:
            return None
        y = load_npz(p, shown, pick=lambda names: {src.y_key} & set(names)).get(src.y_key)
        if y is None:
            return None
        return y, (lambda i: f"array '{src.y_key}', sample {i}")


READER = NpzReader()
