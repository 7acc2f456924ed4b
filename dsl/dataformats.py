"""Data file formats as a model file names them: the one rule from a file's name to its format.

The checker needs a file's format before any data is loaded (which statements a file takes,
whether a ``label`` column can exist); ``runtime/data/formats.py`` keys its readers by the same
names. Pure Python (no numpy, nothing of ``runtime/``), so ``dlrun check`` stays light.

Adding a format: its name and listing here (``FORMATS``) and its suffix (``_SUFFIXES``, or a
name pattern like IDX's), then its reader in ``runtime/data/`` (see docs/architecture.md).

A path ending in ``/`` names a folder of images, one subfolder per class (``imagefolder``);
a ``.png``/``.jpg``/``.jpeg``/``.bmp``/``.gif`` file is one image (``image``: something to
predict on, not a data block's source); a ``.txt`` file holds texts, one per line, to predict
on with a model that reads texts (``txt``). A data block with ``audio`` and ``features``
reads its folders as folders of WAV clips instead (``runtime/data/formats.open_source`` is
told); a ``.wav`` file is one clip to predict on (``wav``).

>>> data_format("data/iris.csv"), data_format("train-images-idx3-ubyte.gz"), data_format("x.txt")
('csv', 'idx', 'txt')
>>> data_format("pets/train/"), data_format("cat.PNG"), data_format("7_a_0.wav")
('imagefolder', 'image', 'wav')
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
    "imagefolder": "an image folder (a path ending in /, one subfolder of images per class)",
    "image": "an image file (.png, .jpg, .jpeg, .bmp, .gif) to predict on",
    "txt": "a text file (.txt, one text per line) to predict on",
    "audiofolder": "a folder of WAV clips (a path ending in /, with 'audio' and 'features' in the data block)",
    "wav": "a WAV file (.wav) to predict on (a data block with 'audio' reads a folder of them)",
}

#: The formats as listed in messages.
DATA_FORMATS: tuple[str, ...] = tuple(FORMATS.values())

# file name suffix (lower case) -> format name
_SUFFIXES = {".npz": "npz", ".npy": "npy", ".csv": "csv", ".txt": "txt"}

#: suffixes of the image files read (lower case; Pillow reads them)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")

#: suffixes of sound files (lower case; read with Python's wave module)
WAV_SUFFIXES = (".wav",)

# MNIST's names (train-images-idx3-ubyte, t10k-labels.idx1-ubyte) and a plain .idx/.idx3
IDX_NAME = re.compile(r"idx[0-9]-?u?byte$|\.idx[0-9]?$", re.IGNORECASE)


def is_idx_name(name: str) -> bool:
    """True for ``train-images-idx3-ubyte``, ``t10k-labels.idx1-ubyte``, ``x.idx`` (``.gz`` too)."""
    name = str(name)
    if name.lower().endswith(".gz"):
        name = name[:-3]
    return bool(IDX_NAME.search(name))


def is_folder_name(path) -> bool:
    """True for a path written with a trailing ``/``: it names a folder."""
    text = str(path)
    return text.endswith("/") or (os.sep != "/" and text.endswith(os.sep))


def data_format(path) -> str | None:
    """The format name (a key of ``FORMATS``) of a data file named ``path``, else None."""
    if is_folder_name(path):
        return "imagefolder"
    name = os.path.basename(str(path)).lower()
    if name.endswith(IMAGE_SUFFIXES):
        return "image"
    if name.endswith(WAV_SUFFIXES):
        return "wav"
    for suffix, fmt in _SUFFIXES.items():
        if name.endswith(suffix):
            return fmt
    if is_idx_name(name):
        return "idx"
    return None
