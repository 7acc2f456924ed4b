"""Data file formats as a model file names them: the one rule from a file's name to its format.

The checker needs a file's format before any data is loaded (which statements a file takes,
whether a ``label`` column can exist); ``runtime/data/formats.py`` keys its readers by the same
names. Pure Python (no numpy, nothing of ``runtime/``), so ``dlrun check`` stays light.

Adding a format: its name and listing here (``FORMATS``) and its suffix (``_SUFFIXES``, or a
name pattern like IDX's), then its reader in ``runtime/data/`` (see docs/architecture.md).

>>> data_format("data/iris.csv"), data_format("train-images-idx3-ubyte.gz"), data_format("x.txt")
('csv', 'idx', None)
"""
from __future__ import annotations

import os
import re

#: format name -> how it is listed in messages ("expected .npz, .npy, ..."), in listing order.
FORMATS: dict[str, str] = {
    "npz": ".npz",
    "npy": ".npy",
    "csv": ".csv",
    "idx": "IDX (*-idx3-ubyte, *-idx1-ubyte, *.idx; optionally .gz)",
}

#: The formats as listed in messages.
DATA_FORMATS: tuple[str, ...] = tuple(FORMATS.values())

# file name suffix (lower case) -> format name
_SUFFIXES = {".npz": "npz", ".npy": "npy", ".csv": "csv"}

# MNIST's names (train-images-idx3-ubyte, t10k-labels.idx1-ubyte) and a plain .idx/.idx3
IDX_NAME = re.compile(r"idx[0-9]-?u?byte$|\.idx[0-9]?$", re.IGNORECASE)


def is_idx_name(name: str) -> bool:
    """True for ``train-images-idx3-ubyte``, ``t10k-labels.idx1-ubyte``, ``x.idx`` (``.gz`` too)."""
    name = str(name)
    if name.lower().endswith(".gz"):
        name = name[:-3]
    return bool(IDX_NAME.search(name))


def data_format(path) -> str | None:
    """The format name (a key of ``FORMATS``) of a data file named ``path``, else None."""
    name = os.path.basename(str(path)).lower()
    for suffix, fmt in _SUFFIXES.items():
        if name.endswith(suffix):
            return fmt
    if is_idx_name(name):
        return "idx"
    return None
