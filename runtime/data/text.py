"""Text in data files and in messages: numbers written as text (CSV cells, string labels),
and values quoted short enough for a message.

A number is what ``float()`` reads (surrounding whitespace, exponents, ``nan`` and ``inf``,
which the finite checks then refuse), except Python's own spellings: digit group underscores
(``1_000``) and non-ASCII digits are not numbers.
"""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np


def quote(value: str, limit: int = 200) -> str:
    """``'value'`` for a message, cut to ``limit`` characters (a 50 MB cell is not echoed)."""
    value = str(value)
    if len(value) <= limit:
        return f"'{value}'"
    return f"'{value[:limit]}...' ({len(value)} characters)"


def names_text(names: Sequence[str], limit: int = 20) -> str:
    """``a, b, c`` for a message: at most ``limit`` names, each quoted short (see ``quote``)."""
    text = ", ".join(n if len(n) <= 200 else quote(n) for n in names[:limit])
    return text + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")


def shape_text(shape: Sequence[int]) -> str:
    """``28x28`` for ``(28, 28)``."""
    return "x".join(str(int(d)) for d in shape)


def one_line(err) -> str:
    """An exception's text on one line, at most 300 characters."""
    return " ".join(str(err).split())[:300]


def is_number(text: str) -> bool:
    """Whether ``float()`` reads ``text`` (a CSV header of numbers is no header)."""
    try:
        float(text)
        return True
    except ValueError:
        return False


def csv_float(cell: str) -> float:
    """A number written as text, by the rule above; ValueError otherwise."""
    if "_" in cell or not cell.isascii():
        raise ValueError(cell)
    return float(cell)


def _all_plain(cells: Sequence[str]) -> bool:
    """No cell holds an underscore or a non-ASCII character (one pass in C)."""
    joined = "".join(cells)
    return "_" not in joined and joined.isascii()


def floats(cells: Sequence[str]) -> np.ndarray:
    """``cells`` as float64 by the ``csv_float`` rule; ValueError at a non-number."""
    if not _all_plain(cells):
        raise ValueError("not a CSV number")
    return np.fromiter(map(float, cells), dtype=np.float64, count=len(cells))


def first_unconvertible(cells: Iterable[str]) -> int:
    """Index of the first cell that ``csv_float`` rejects, or -1."""
    for i, cell in enumerate(cells):
        try:
            csv_float(cell)
        except ValueError:
            return i
    return -1


def str_to_float(values: np.ndarray) -> np.ndarray | None:
    """A str array as float64 (same shape), or None when a cell is not a number."""
    try:
        flat = floats(values.ravel().tolist())
    except ValueError:
        return None
    return flat.reshape(values.shape)
