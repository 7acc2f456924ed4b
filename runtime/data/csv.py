"""CSV files: a header row of column names, then one sample per row (comma-separated,
UTF-8; blank lines skipped; ragged rows refused).

As a source: the label column is named by the data block's ``label``; every other column is
a numeric feature, matched by header name against the training file's. A CSV never takes a
``labels=`` file. As a labels file: its one column, or the ``label`` column. To predict on:
every column but ``label``. Cells are numbers by ``text.csv_float``'s rule.
"""
from __future__ import annotations

import csv
import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from dlrun.dsl.diagnostics import suggest
from dlrun.errors import DataError, DataWarning
from dlrun.fileopen import NotReadable, open_regular
from dlrun.runtime.data.reader import Raw, Reader, sample_where
from dlrun.runtime.data.text import first_unconvertible, floats, is_number, names_text, quote


@dataclass
class Table:
    """A CSV file as read: ``header`` names, ``columns`` of cells, each row's file line."""

    header: list[str]
    columns: list[tuple[str, ...]]  # cells by column, as read
    lines: np.ndarray  # file line number of each row
    shown: str
    index: dict[str, int]  # column name -> column

    def text(self, col: int) -> np.ndarray:
        """Column ``col`` as a str array, surrounding whitespace stripped."""
        return np.char.strip(np.array(self.columns[col], dtype=str))

    def where(self, row: int, col: int) -> str:
        return f"line {int(self.lines[row])}, column {col + 1} {quote(self.header[col])}"

    def column(self, name: str, what: str) -> int:
        if name not in self.index:
            hint = ""
            if all(is_number(h) for h in self.header):
                hint = " (the first line must be a header of column names)"
            elif _delimiter_hint(self.header):
                hint = _delimiter_hint(self.header)
            elif len(self.header) <= 2000:  # difflib over a very wide header would take seconds
                hint = suggest(name, self.header, show_known=False)
            raise DataError(
                f"{self.shown}: no {what} column named '{name}'{hint}; columns: {names_text(self.header)}",
                statement=what,
            )
        return self.index[name]


def _delimiter_hint(header: Sequence[str]) -> str:
    """A hint when a one-column header looks separated by another character than ','."""
    if len(header) == 1:
        for sep, name in ((";", "';'"), ("\t", "tab"), ("|", "'|'")):
            if sep in header[0]:
                return f" (the file seems to be {name}-separated; dlrun reads comma-separated CSV)"
    return ""


def _name_list(names: Sequence[str], limit: int = 8) -> str:
    shown = ", ".join(f"'{n}'" for n in names[:limit])
    return shown + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")


def columns_by_name(table: Table, names: Sequence[str], label: str | None, against: str) -> list[int]:
    """The columns of ``table`` holding the features ``names``, in that order.

    Features are matched by header name: a missing or an unknown column (a renamed header
    is both) is refused, naming them; columns in another order are reordered, with a warning.
    """
    missing = [n for n in names if n not in table.index]
    wanted = set(names)
    unknown = [h for h in table.header if h != label and h not in wanted]
    if missing or unknown:
        parts = []
        if missing:
            parts.append(f"no column{'s' if len(missing) > 1 else ''} {_name_list(missing)}")
        if unknown:
            parts.append(f"unknown column{'s' if len(unknown) > 1 else ''} {_name_list(unknown)}")
        raise DataError(
            f"{table.shown}: {' and '.join(parts)}; the features of {against} are the columns "
            f"{_name_list(names)} (matched by header name)"
        )
    cols = [table.index[n] for n in names]
    if any(a > b for a, b in zip(cols, cols[1:])):
        warnings.warn(f"{table.shown}: the feature columns are in another order than in {against}; "
                      f"matched by header name", DataWarning, stacklevel=2)
    return cols


def read_csv(p: Path, shown: str) -> Table:
    """Header and cells of a CSV file; blank lines skipped; ragged rows rejected."""
    header: list[str] | None = None
    header_line = 0
    rows: list[list[str]] = []
    lines: list[int] = []
    reader = None
    try:
        with io.TextIOWrapper(open_regular(p), encoding="utf-8-sig", newline="") as f:
            reader = csv.reader(f)
            for row in reader:
                joined = "".join(row)
                if not joined or joined.isspace():
                    continue
                if "\x00" in joined:
                    raise DataError(f"{shown}: line {reader.line_num}: contains a NUL byte; expected CSV text")
                if header is None:
                    header = [c.strip() for c in row]
                    header_line = reader.line_num
                    continue
                if len(row) != len(header):
                    raise DataError(
                        f"{shown}: line {reader.line_num}: {len(row)} cells, but the header "
                        f"(line {header_line}) has {len(header)} columns"
                    )
                rows.append(row)
                lines.append(reader.line_num)
    except UnicodeDecodeError:
        raise DataError(f"{shown}: {_utf8_where(p)}not UTF-8 text; expected a CSV file with a header row") from None
    except csv.Error as err:
        line = reader.line_num if reader is not None else 1
        raise DataError(f"{shown}: line {line}: malformed CSV ({err})") from None
    except NotReadable as err:
        raise DataError(f"{shown}: {err.reason('data file')}") from None
    except OSError as err:
        raise DataError(f"{shown}: cannot read: {err.strerror or err}") from None
    if header is None:
        raise DataError(f"{shown}: data file is empty (expected a header row and data rows)")
    first: dict[str, int] = {}  # name -> its column: one pass (header.index per column was quadratic)
    for j, name in enumerate(header):
        if not name:
            raise DataError(f"{shown}: line {header_line}: column {j + 1} of the header has no name")
        k = first.setdefault(name, j)
        if k != j:
            raise DataError(
                f"{shown}: line {header_line}: column name '{name}' appears twice "
                f"(columns {k + 1} and {j + 1})"
            )
    if not rows:
        raise DataError(f"{shown}: has a header but no data rows")
    columns = list(zip(*rows))
    return Table(header, columns, np.asarray(lines, dtype=np.int64), shown, first)


def _utf8_where(p: Path) -> str:
    """``'line L, column C: '`` of the first byte of ``p`` that is not UTF-8 ('' if not found)."""
    from dlrun.runtime.data.txt import utf8_where

    try:
        with open_regular(p) as f:
            data = f.read()
        data.decode("utf-8")
    except UnicodeDecodeError as err:
        return utf8_where(data, err) + ": "
    except (OSError, NotReadable):
        pass
    return ""


def csv_numbers(table: Table, cols: Sequence[int]) -> np.ndarray:
    """The given columns as float64 ``(rows, len(cols))``; DataError at the first non-number."""
    n = table.lines.shape[0]
    out = np.empty((n, len(cols)), dtype=np.float64)
    first = None  # (row, k) of the first bad cell in row-major order
    for k, j in enumerate(cols):
        try:
            out[:, k] = floats(table.columns[j])
        except ValueError:
            i = first_unconvertible(table.columns[j])
            if first is None or (i, k) < first:
                first = (i, k)
    if first is None:
        return out
    i, k = first
    value = table.columns[cols[k]][i].strip()
    got = "an empty cell" if value == "" else quote(value)
    raise DataError(f"{table.shown}: {table.where(i, cols[k])}: expected a number, got {got}")


class CsvReader(Reader):
    """CSV: features and a ``label NAME`` column in one table, or a labels file."""

    name = "csv"
    noun = "CSV inputs"

    def read(self, p, shown, src, *, label, need_y, features, against, input_shape, resize=None):
        if src.labels is not None:
            raise DataError(
                f"{shown}: labels= is for .npy, .npz and IDX inputs; a CSV file names its label "
                f"column with `label NAME` in the data block"
            )
        table = read_csv(p, shown)
        y = None
        y_where = sample_where
        if label is None:
            if need_y:
                raise DataError(
                    f"{shown}: which column holds the labels? add `label NAME` to the data block "
                    f"(columns: {names_text(table.header)})"
                )
            cols = list(range(len(table.header)))
        else:
            j = table.column(label, "label")
            cols = [k for k in range(len(table.header)) if k != j]
            y = table.text(j)
            y_where = lambda i: table.where(i, j)
        if not cols:
            raise DataError(f"{shown}: no feature columns besides the label column '{label}'")
        if features is not None:
            cols = columns_by_name(table, features, label, against)
        x = csv_numbers(table, cols)
        x_where = lambda i, k: table.where(i, cols[k])
        return Raw(x, y, shown, shown, x_where, y_where, feature_names=[table.header[k] for k in cols])

    def read_labels(self, p, shown, label):
        table = read_csv(p, shown)
        if len(table.header) == 1:
            j = 0
            if is_number(table.header[0]):
                warnings.warn(f"{shown}: line 1 ({quote(table.header[0])}) was taken as the header of this "
                              f"labels file, not as a label; add a header line (a column name) if it is a label",
                              DataWarning, stacklevel=3)
        elif label is None:
            raise DataError(
                f"{shown}: a labels file with {len(table.header)} columns; name the label column with "
                f"`label NAME` in the data block (columns: {names_text(table.header)})"
            )
        else:
            j = table.column(label, "label")
        return table.text(j), (lambda i: table.where(i, j))

    def read_inputs(self, p, shown, *, label, feature_names, against, input_shape, resize=None):
        table = read_csv(p, shown)
        cols = [k for k, name in enumerate(table.header) if name != label]
        if not cols:
            raise DataError(f"{shown}: no feature columns")
        if feature_names is not None:
            cols = columns_by_name(table, feature_names, label, against)
        x = csv_numbers(table, cols)
        return x, (lambda i, k: table.where(i, cols[k]))


READER = CsvReader()
