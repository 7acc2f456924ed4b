"""Plain text files (``.txt``): one text per line, UTF-8, to predict on with a text model.

Every line is one text (an empty line is an empty text: all padding ids); the line end after
the last line starts no text. Not a data block's source (texts to train on come with their
labels, in a CSV's text column) and no input for numeric models.
"""
from __future__ import annotations

import numpy as np

from dlrun.errors import DataError
from dlrun.fileopen import NotReadable, open_regular
from dlrun.runtime.data.reader import Reader


def read_lines(p, shown: str) -> np.ndarray:
    """The lines of ``p`` as a str array (``\\n``, ``\\r\\n`` or ``\\r`` ends a line); invalid
    UTF-8 and NUL bytes are errors naming the line."""
    try:
        with open_regular(p) as f:
            data = f.read()
    except NotReadable as err:
        raise DataError(f"{shown}: {err.reason('text file')}") from None
    except OSError as err:
        raise DataError(f"{shown}: cannot read: {err.strerror or err}") from None
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DataError(f"{shown}: {utf8_where(data, err)}: not valid UTF-8 "
                        f"(byte 0x{data[err.start]:02x}); expected UTF-8 text") from None
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if "\x00" in line:
            raise DataError(f"{shown}: line {i + 1}: contains a NUL byte; expected text")
    return np.array(lines, dtype=np.str_)


def utf8_where(data: bytes, err: UnicodeDecodeError) -> str:
    """``'line L, column C'`` of the first byte ``err`` could not decode in ``data``."""
    head = data[: err.start]
    line = head.count(b"\n") + 1
    start = head.rfind(b"\n") + 1
    col = len(head[start:].decode("utf-8", errors="replace")) + 1
    return f"line {line}, column {col}"


class TextFileReader(Reader):
    """``.txt``: texts to predict on, one per line."""

    name = "txt"
    noun = "text files"

    def _refuse(self, shown):
        raise DataError(f"{shown}: a .txt file holds texts without labels, to predict on with a model that "
                        f"reads texts; a data block reads its texts and labels from a CSV file "
                        f"('text COLUMN' and 'label COLUMN')")

    def read(self, p, shown, src, *, label, need_y, features, against, input_shape, resize=None):
        self._refuse(shown)

    def read_labels(self, p, shown, label):
        self._refuse(shown)

    def read_inputs(self, p, shown, *, label, feature_names, against, input_shape, resize=None):
        raise DataError(f"{shown}: a .txt file holds texts, but the model reads numbers (its data block "
                        f"names no text column); expected {', '.join(('.npz', '.npy', '.csv', 'IDX'))}")


READER = TextFileReader()
