"""The contract of a data format's reader, and what reading one source file yields.

One ``Reader`` per format, in the format's own module (``npz.py``, ``npy.py``, ``csv.py``,
``idx.py``), registered in ``formats.py`` under its name in ``dsl/dataformats.py``. Only a
reader knows its format: everything else asks it. What a reader does, and the label forms
a format takes:

``read``             a data block's source: its inputs and the labels the file holds itself
                     (a CSV's ``label NAME`` column, an ``.npz``'s ``y=`` array; ``.npy`` and
                     IDX inputs hold none and need ``labels=``)
``read_labels``      the file as a ``labels=`` file (every format can be one)
``read_inputs``      inputs to predict on
``read_header``      ``dlrun check --data``: the inputs' ``(shape, dtype)`` from the header alone
``read_own_labels``  ``dlrun check --data``: the labels the file holds, without its inputs
``sample_names``     ``predict``: the name of each sample read (an image folder's files)
``with_audio``       the reader for a data block's ``audio`` settings (WAV readers)

Readers raise ``DataError`` naming the file (``shown``) and, where it applies, the line and
column or the array and sample.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from dlrun.dsl import ir


@dataclass
class Raw:
    """What one source file yields before it is checked against the model."""

    x: np.ndarray
    y: np.ndarray | None  # numbers, or str (class names / CSV cells to be interpreted)
    source: str  # file of x (messages)
    y_source: str  # file of y (messages)
    x_where: Callable[[int, int], str]  # location of feature j of sample i
    y_where: Callable[[int], str]  # location of the label of sample i
    prepared: bool = False  # x already checked and shaped by checks.prepare_x
    feature_names: list[str] | None = None  # CSV: the header names of x's columns


def sample_where(i: int) -> str:
    """Where label ``i`` is, for formats whose labels are one array."""
    return f"sample {i}"


def array_where(name: str) -> Callable[[int, int], str]:
    """Where feature ``j`` of sample ``i`` of the array ``name`` is."""
    return lambda i, j: f"array '{name}', sample {i}, feature {j}"


class Reader:
    """One data format. ``name``: its key in ``dsl.dataformats.FORMATS``; ``noun``: what its
    inputs are called in messages (``'.npy inputs'``)."""

    name: str = ""
    noun: str = ""

    def read(self, p: Path, shown: str, src: ir.Source, *, label: str | None, need_y: bool,
             features: Sequence[str] | None, against: str, input_shape, resize: str | None = None) -> Raw:
        """The inputs of ``src`` (file ``p``, ``shown`` in messages) and the labels the file
        holds itself (None when ``src.labels`` names a labels file, or the format holds
        none). ``label``: the data block's label column; ``need_y``: labels are required;
        ``features``: the feature columns to read, matched by name against those of
        ``against`` (a CSV's; None: all but the label); ``input_shape``: the model's input,
        checked against the file's header before the values are read (None: not checked);
        ``resize``: the data block's, for formats that hold images of any size."""
        raise NotImplementedError

    def read_labels(self, p: Path, shown: str, label: str | None):
        """The file as a ``labels=`` file: ``(labels, where)``, ``where(i)`` naming label ``i``."""
        raise NotImplementedError

    def read_inputs(self, p: Path, shown: str, *, label: str | None, feature_names: Sequence[str] | None,
                    against: str, input_shape: tuple, resize: str | None = None):
        """Inputs to predict on: ``(x, where)``, ``where(i, j)`` naming feature ``j`` of sample ``i``.
        A CSV drops its ``label`` column when present and matches ``feature_names`` by name."""
        raise NotImplementedError

    def read_header(self, p: Path, shown: str, src: ir.Source):
        """``(shape, dtype)`` of the inputs from the file's header, or None when the file must
        be read in full (then ``read`` says what is wrong, or reads it)."""
        return None

    def with_audio(self, audio) -> "Reader":
        """The reader for a data block with ``audio`` (``ir.Audio``): the WAV readers are built
        for its rate, duration and features; the others are themselves."""
        return self

    def sample_names(self, p: Path, shown: str) -> list[str] | None:
        """Names of the samples ``read_inputs`` reads, in its order, when the format has them
        (the files of an image folder), else None (``predict`` then numbers the rows)."""
        return None

    def read_own_labels(self, p: Path, shown: str, src: ir.Source):
        """``(labels, where)`` the file holds beside its inputs, read without the inputs, or
        None (none there, or they cannot be read on their own)."""
        return None
