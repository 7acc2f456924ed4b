"""Data loading for dlrun: files named in a model's ``data`` block, arrays given to the API.

Formats, chosen by the file's name (``dsl/dataformats.py``), each read by its module here:

``.npz``   arrays ``x`` and ``y`` (or the names given by ``Source.x_key`` / ``Source.y_key``),
           read through ``runtime/npzio.py`` (no pickle; headers checked first)   ``npz.py``
``.npy``   inputs only; labels come from the ``labels=`` file                     ``npy.py``
``.csv``   a header row of column names; the label column is named by the data block's
           ``label``; every other column is a numeric feature. String labels become classes
           (sorted names kept as ``Splits.class_names``); numeric labels of a classifier must
           be integers in ``[0, classes)``                                          ``csv.py``
IDX        MNIST's format (``*-idx3-ubyte`` images, ``*-idx1-ubyte`` labels, optionally
           ``.gz``); images stay uint8                                             ``idx.py``
images     a folder of class subfolders (``"pets/train/"``: a trailing ``/``), or image
           files / folders to predict on; read with Pillow, uint8              ``images.py``
texts      a CSV's text column (``text COLUMN``), tokenized by the data block's ``tokens``
           into rows of token ids (``tokens.py``); ``.txt`` files of one text per line to
           predict on                                                            ``txt.py``

The other modules: ``reader`` (the contract every format's reader meets), ``formats`` (the
registry: format name -> reader), ``checks`` (inputs against the model), ``labels`` (tasks,
classes, label encodings), ``dataset`` (``Dataset``, ``Splits``, ``make_dataset``),
``split`` (held-out splits, ``DataRecord``, ``data_fingerprint``), ``preprocess``
(``Preprocessor``), ``load`` (``load_splits``, ``load_inputs``), ``check`` (``dlrun check
--data``), and the helpers ``text`` (numbers as text, quoting) and ``arrays`` (chunked passes).

Inputs are kept in their stored dtype (uint8 images stay uint8); ``Preprocessor.apply``
converts one batch at a time into the caller's float buffer.
"""
from __future__ import annotations

from dlrun.runtime.data.checks import check_input_layout, check_label_count, check_model_range
from dlrun.runtime.data.dataset import Dataset, Splits, make_dataset
from dlrun.runtime.data.formats import READERS, reader_for, resolve_path
from dlrun.runtime.data.labels import TASKS, class_names_of, task_for_loss
from dlrun.runtime.data.load import input_names, input_texts, load_inputs, load_splits
from dlrun.runtime.data.preprocess import PREPROCESS_KINDS, Preprocessor, preprocess_difference
from dlrun.runtime.data.split import SPLIT_CODES, DataRecord, data_fingerprint
from dlrun.runtime.data.text import quote

__all__ = [
    "TASKS", "PREPROCESS_KINDS", "SPLIT_CODES", "READERS",
    "Dataset", "Splits", "DataRecord", "Preprocessor",
    "load_splits", "load_inputs", "input_names", "input_texts", "make_dataset", "class_names_of", "task_for_loss",
    "check_input_layout", "check_label_count", "check_model_range",
    "data_fingerprint", "preprocess_difference", "reader_for", "resolve_path", "quote",
]

# ``doctest.testmod(dlrun.runtime.data)`` runs the examples of the names exported here
# (doctest looks only at objects defined in the module itself otherwise).
__test__ = {name: globals()[name] for name in __all__ if callable(globals()[name])}
