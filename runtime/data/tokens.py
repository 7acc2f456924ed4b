"""Texts as token ids: the data block's ``text COLUMN`` and ``tokens ...`` statements.

A text becomes one row of ``max_length`` token ids (the model's ``input`` size), stored in the
model's float dtype (ids are exact in float32 up to 2**24):

* id 0 is padding (after the last token, and all of an empty text), id 1 a token out of the
  vocabulary, the vocabulary's tokens from id 2, most frequent first (ties by the token's
  code points), so ``vocab_size`` = tokens kept + 2;
* a token is one character (``chars``: spaces and punctuation too) or one word (``words``: a
  run of letters, digits and ``_``, or one other non-space character), after lower-casing
  with ``lowercase``;
* the vocabulary is counted on the training split only (after the validation/test fractions
  are held out), keeps tokens seen ``min_count`` times or more and at most ``vocab`` of them;
* longer texts are cut to ``max_length`` tokens; the texts cut, the tokens out of the
  vocabulary (validation, test, predict) and the empty texts are counted and reported once
  per source (one ``DataWarning``), never per row.

The tokenizer's settings and vocabulary are part of the ``DataRecord`` saved with the weights
(``data.tokenizer``, ``data.vocab``, ``data.vocab_size``), so ``eval``, ``predict`` and the API
tokenize with the vocabulary the weights were trained with, and a data block whose settings
differ is refused (``tokenizer_difference``).

Texts come from a CSV's text column (``read_text_source``, ``read_texts``) or, to predict on,
a ``.txt`` file of one text per line (``txt.py``).
"""
from __future__ import annotations

import json
import re
import warnings
from collections import Counter
from typing import Iterable, Sequence

import numpy as np

from dlrun.dsl import ir
from dlrun.errors import DataError, DataWarning, WeightsError
from dlrun.runtime.data.reader import Raw, sample_where

PAD, OOV = 0, 1
#: ids below this are reserved (padding, out of vocabulary)
RESERVED = 2
#: the settings a data block's ``tokens`` gives, compared with the saved ones
SETTINGS = ("unit", "lowercase", "max_length", "vocab", "min_count")

_WORD = re.compile(r"\w+|[^\w\s]")


class Tokenizer:
    """Settings (``unit``, ``lowercase``, ``max_length``, ``vocab``, ``min_count``) and, once
    ``fit``, the vocabulary (``tokens``, id 2 onwards).

    >>> t = Tokenizer("chars", True, 5).fit(["abba", "Cab"])
    >>> t.tokens, t.vocab_size
    (['a', 'b', 'c'], 5)
    >>> t.encode(["ABx", "", "abcabc"], np.float32, report=False).tolist()
    [[2.0, 3.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0, 0.0], [2.0, 3.0, 4.0, 2.0, 3.0]]
    """

    def __init__(self, unit: str = "chars", lowercase: bool = False, max_length: int = 1,
                 vocab: int | None = None, min_count: int = 1, tokens: Sequence[str] | None = None):
        if unit not in ("chars", "words"):
            raise DataError(f"unknown token unit {unit!r}; expected chars or words")
        self.unit = unit
        self.lowercase = bool(lowercase)
        self.max_length = int(max_length)
        self.vocab = None if vocab is None else int(vocab)
        self.min_count = int(min_count)
        self.tokens: list[str] | None = None
        self.index: dict[str, int] = {}
        if tokens is not None:
            self._set(tokens)

    @classmethod
    def from_ir(cls, tokens: ir.Tokens | None, input_shape) -> "Tokenizer":
        """The data block's ``tokens`` for a model whose input is ``input_shape`` (its size
        is ``max_length`` when the block leaves it out)."""
        t = tokens or ir.Tokens()
        length = int(np.prod(tuple(input_shape))) if t.max_length is None else t.max_length
        return cls(t.unit, t.lowercase, length, t.vocab, t.min_count)

    def _set(self, tokens: Sequence[str]) -> None:
        self.tokens = [str(s) for s in tokens]
        self.index = {s: i + RESERVED for i, s in enumerate(self.tokens)}

    @property
    def fitted(self) -> bool:
        return self.tokens is not None

    @property
    def vocab_size(self) -> int | None:
        """Ids in use, the two reserved ones included (an embedding's row count); None unfitted."""
        return None if self.tokens is None else len(self.tokens) + RESERVED

    def settings(self) -> dict:
        return {"unit": self.unit, "lowercase": self.lowercase, "max_length": self.max_length,
                "vocab": self.vocab, "min_count": self.min_count}

    def describe(self) -> str:
        """The settings as a data block writes them: ``tokens chars lowercase max_length=200``."""
        parts = ["tokens", self.unit] + (["lowercase"] if self.lowercase else [])
        parts.append(f"max_length={self.max_length}")
        if self.vocab is not None:
            parts.append(f"vocab={self.vocab}")
        if self.min_count != 1:
            parts.append(f"min_count={self.min_count}")
        return " ".join(parts)

    # -- tokens -------------------------------------------------------------------------
    def split(self, text: str) -> list[str]:
        """The tokens of one text, all of them (before truncation)."""
        if self.lowercase:
            text = text.lower()
        if self.unit == "chars":
            return list(text)
        return _WORD.findall(text)

    def fit(self, texts: Iterable[str]) -> "Tokenizer":
        """Count the tokens of ``texts`` (the training split) and keep the vocabulary."""
        counts: Counter = Counter()
        for text in texts:
            counts.update(self.split(str(text)))
        kept = sorted((c for c in counts.items() if c[1] >= self.min_count), key=lambda c: (-c[1], c[0]))
        if self.vocab is not None:
            kept = kept[: self.vocab]
        self._set([s for s, _ in kept])
        return self

    def encode(self, texts: Sequence[str], dtype, *, source: str = "texts", report: bool = True,
               count_oov: bool = True) -> np.ndarray:
        """``(len(texts), max_length)`` ids in ``dtype``; one ``DataWarning`` for ``source``
        (when ``report``) counting the texts cut, the tokens out of the vocabulary (when
        ``count_oov``: not for the training split, whose left-out tokens are the vocabulary's
        caps at work) and the empty texts."""
        if self.tokens is None:
            raise DataError("the tokenizer has no vocabulary yet (fit it on the training texts)")
        n, length = len(texts), self.max_length
        out = np.zeros((n, length), dtype=dtype)
        get = self.index.get
        cut = empty = oov = total = longest = 0
        for i, text in enumerate(texts):
            toks = self.split(str(text))
            if not toks:
                empty += 1
                continue
            if len(toks) > length:
                cut += 1
                longest = max(longest, len(toks))
                toks = toks[:length]
            ids = [get(s, OOV) for s in toks]
            total += len(ids)
            out[i, : len(ids)] = ids
            if count_oov:
                oov += ids.count(OOV)
        if report:
            notes = []
            if cut:
                notes.append(f"{cut} of {n} texts have more than {length} tokens and were cut to "
                             f"{length} (the longest has {longest})")
            if oov:
                notes.append(f"{oov} of {total} tokens ({100.0 * oov / total:.2g}%) are not in the "
                             f"vocabulary and read as id {OOV} (out of vocabulary)")
            if empty:
                notes.append(f"{empty} of {n} texts are empty (all padding)")
            if notes:
                warnings.warn(f"{source}: " + "; ".join(notes), DataWarning, stacklevel=2)
        return out

    # -- saved with the weights ---------------------------------------------------------
    def arrays(self) -> dict:
        """The ``data.*`` arrays of the weights file (``weights.data_arrays``)."""
        return {
            "data.tokenizer": np.array(json.dumps(self.settings(), sort_keys=True)),
            "data.vocab": np.array(self.tokens or [], dtype=np.str_),
            "data.vocab_size": np.array(self.vocab_size or RESERVED, dtype=np.int64),
        }

    @classmethod
    def from_arrays(cls, arrays, path) -> "Tokenizer | None":
        """The tokenizer saved in a weights file's arrays (None when it has none)."""
        a = arrays.get("data.tokenizer")
        if a is None:
            return None
        vocab, size = arrays.get("data.vocab"), arrays.get("data.vocab_size")
        try:
            if a.dtype.kind != "U" or a.ndim != 0 or vocab is None or size is None:
                raise ValueError
            s = json.loads(str(a))
            if not isinstance(s, dict) or set(s) != set(SETTINGS):
                raise ValueError
            t = cls(s["unit"], s["lowercase"], s["max_length"], s["vocab"], s["min_count"])
            if vocab.ndim != 1 or (vocab.dtype.kind != "U" and vocab.shape[0] > 0) \
                    or len(set(vocab.tolist())) != vocab.shape[0] or int(size) != vocab.shape[0] + RESERVED:
                raise ValueError
            t._set(vocab.tolist())
        except (ValueError, TypeError, KeyError, DataError):
            raise WeightsError(f"{path}: damaged data.tokenizer / data.vocab") from None
        return t


def tokenizer_difference(saved: Tokenizer, tokens: ir.Tokens | None, input_shape) -> str | None:
    """How the data block's ``tokens`` differ from the saved tokenizer's settings (the first
    difference), or None.

    >>> saved = Tokenizer("chars", True, 200)
    >>> tokenizer_difference(saved, ir.Tokens("words", True), (200,))
    "unit: 'chars' in the weights, 'words' in the data block"
    """
    now = Tokenizer.from_ir(tokens, input_shape).settings()
    for key, old in saved.settings().items():
        if now[key] != old:
            return f"{key}: {_show(old)} in the weights, {_show(now[key])} in the data block"
    return None


def _show(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "none (no cap)"
    return repr(v) if isinstance(v, str) else str(v)


# -- reading texts -------------------------------------------------------------------------
def read_text_source(p, shown: str, text: str, label: str | None, need_y: bool) -> Raw:
    """A CSV source's texts (column ``text``, as written) and labels (column ``label``):
    a ``Raw`` whose ``x`` is a str array ``(n,)``, tokenized after the split."""
    from dlrun.runtime.data.csv import read_csv
    from dlrun.runtime.data.text import names_text

    table = read_csv(p, shown)
    j = table.column(text, "text")
    y, y_where = None, sample_where
    if label is not None:
        k = table.column(label, "label")
        y = table.text(k)
        y_where = lambda i: table.where(i, k)  # noqa: E731
    elif need_y:
        raise DataError(f"{shown}: which column holds the labels? add `label NAME` to the data block "
                        f"(columns: {names_text(table.header)})")
    x = np.array(table.columns[j], dtype=np.str_)
    return Raw(x, y, shown, shown, lambda i, _k: table.where(i, j), y_where, prepared=True)


def read_texts(p, shown: str, reader, text: str | None) -> np.ndarray:
    """Texts to predict on: a CSV's ``text`` column (other columns, a label among them, are
    ignored) or a ``.txt`` file's lines; a str array ``(n,)``."""
    from dlrun.runtime.data import csv, txt

    if reader is txt.READER:
        return txt.read_lines(p, shown)
    if reader is csv.READER:
        if text is None:
            raise DataError(f"{shown}: the model reads texts, but its data block names no text column "
                            f"(add 'text COLUMN')")
        table = csv.read_csv(p, shown)
        return np.array(table.columns[table.column(text, "text")], dtype=np.str_)
    raise DataError(f"{shown}: the model reads texts: expected a CSV file with the text column "
                    f"'{text}' or a .txt file of one text per line, got {reader.noun}")


def as_texts(x) -> list[str] | None:
    """``x`` as a list of texts when it is a list/tuple of str or a str array, else None (a
    str alone is a file's path, as for every model)."""
    if isinstance(x, np.ndarray) and x.dtype.kind == "U" and x.ndim == 1:
        return x.tolist()
    if isinstance(x, (list, tuple)) and x and all(isinstance(s, str) for s in x):
        return list(x)
    return None


def short(text: str, limit: int = 60) -> str:
    """A text for one row of ``predict``'s output: one line, at most ``limit`` characters."""
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."
