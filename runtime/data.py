"""Data loading for dlrun: files named in a model's ``data`` block, arrays given to the API.

Formats, chosen by extension:

``.npz``   arrays ``x`` and ``y`` (or the names given by ``Source.x_key`` / ``Source.y_key``),
           read with ``allow_pickle=False``.
``.npy``   inputs only; labels come from the ``labels=`` file.
``.csv``   a header row of column names; the label column is named by the data block's
           ``label``; every other column is a numeric feature. String labels become classes
           (sorted names kept as ``Splits.class_names``); numeric labels of a classifier must
           be integers in ``[0, classes)``.
IDX        MNIST's format (``*-idx3-ubyte`` images, ``*-idx1-ubyte`` labels, optionally
           ``.gz``); images stay uint8.

Everything is checked before training starts: missing, empty, unreadable or damaged files,
ragged CSV rows, non-numeric cells, NaN/Inf, the feature count against the model's ``input``,
labels against the output's classes, and input/label lengths. Each problem is one
``DataError`` whose message names the file and, where it applies, the line and column (CSV) or
the array index.

Inputs are kept in their stored dtype (uint8 images stay uint8); ``Preprocessor.apply``
converts one batch at a time into the caller's float buffer.
"""
from __future__ import annotations

import csv
import io
import hashlib
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np

from dlrun.dsl import ir
from dlrun.dsl.diagnostics import suggest
from dlrun.errors import DataError, DataWarning, UsageError, WeightsError
from dlrun.fileopen import NotReadable, check_regular, open_regular
from dlrun.runtime import npzio
from dlrun.runtime.idx import is_idx_name, read_idx

TASKS = ("classification", "binary", "regression")

# loss name -> task; the loss decides how labels are encoded
_LOSS_TASK = {
    "cross_entropy": "classification",
    "binary_cross_entropy": "binary",
    "mse": "regression",
    "mae": "regression",
    "huber": "regression",
}

PREPROCESS_KINDS = ("scale", "standardize", "minmax")

# rows per chunk when a pass over a whole data set is needed: about this many float64 bytes
_CHUNK_BYTES = 8 << 20


def task_for_loss(loss_name: str) -> str:
    """The learning task a loss implies: ``'classification'``, ``'binary'`` or ``'regression'``.

    >>> task_for_loss("cross_entropy"), task_for_loss("huber")
    ('classification', 'regression')
    """
    try:
        return _LOSS_TASK[loss_name]
    except KeyError:
        raise UsageError(f"unknown loss {loss_name!r} (known: {', '.join(_LOSS_TASK)})") from None


@dataclass
class Dataset:
    """Inputs and labels of one split.

    ``x``: ``(n, *input_shape)``, uint8 kept as uint8, other inputs float32 or float64.
    ``y``: classification: int64 class indices ``(n,)``; binary: float64 ``(n, 1)`` in [0, 1];
    regression: float64 ``(n, outputs)``; None when there are no labels.
    ``source``: where the data came from (a path, for messages).
    """

    x: np.ndarray
    y: np.ndarray | None
    source: str

    def __len__(self) -> int:
        return int(self.x.shape[0])


@dataclass
class Splits:
    """The training, validation and test splits of a model's data, ready for training.

    ``class_names``: sorted class names when the labels were strings, else None.
    ``preprocessor``: fitted on ``train`` only.
    ``record``: what the weights keep of this data (feature names, the split, fingerprints).
    """

    train: Dataset
    validation: Dataset | None
    test: Dataset | None
    class_names: list[str] | None
    preprocessor: "Preprocessor"
    record: "DataRecord | None" = None

    @property
    def feature_names(self) -> list[str] | None:
        return None if self.record is None else self.record.feature_names


# held-out split -> its code in ``DataRecord.rows`` (0 = training)
SPLIT_CODES = {"validation": 1, "test": 2}
_ROLE_WORD = {"train": "training"}


@dataclass
class DataRecord:
    """What a weights file keeps of the data it was trained on (``weights.py`` stores it).

    ``feature_names``: the training CSV's feature columns, in the order the model reads them
    (None for other formats: their features are matched by position).
    ``files``: role -> ``(file, sha256)`` of every split read from a file, the sha256 being
    ``data_fingerprint`` of its inputs and labels as loaded; empty when nothing is known of
    the split (weights trained on arrays).
    ``fractions``: role -> fraction held out of the training file; ``split_seed`` the seed
    they were drawn with; ``rows``: one uint8 per row of the training file, 0 training,
    ``SPLIT_CODES[role]`` held out (None without fractions).
    ``origin``: where the record comes from, for messages (``'the weights W.npz'``).
    """

    feature_names: list[str] | None = None
    files: dict[str, tuple[str, str]] = field(default_factory=dict)
    fractions: dict[str, float] = field(default_factory=dict)
    split_seed: int | None = None
    rows: np.ndarray | None = None
    origin: str = "the weights"


def data_fingerprint(*datasets) -> str:
    """sha256 of the inputs and targets of ``datasets`` (None entries skipped)."""
    h = hashlib.sha256()
    for ds in datasets:
        if ds is None:
            h.update(b"none")
            continue
        for a in (ds.x, ds.y):
            if a is None:
                h.update(b"none")
                continue
            a = np.ascontiguousarray(a)
            h.update(f"{a.dtype.str}{a.shape}".encode())
            h.update(memoryview(a).cast("B"))
    return h.hexdigest()


# --------------------------------------------------------------------------------------------
# small helpers


def _shape_text(shape: Sequence[int]) -> str:
    return "x".join(str(int(d)) for d in shape)


def _features(shape: Sequence[int]) -> int:
    return int(np.prod(shape, dtype=np.int64)) if len(shape) else 1


def resolve_path(path, base_dir=None) -> Path:
    """``path`` with ``~`` expanded; a relative path is taken relative to ``base_dir``."""
    p = Path(os.path.expanduser(str(path)))
    if not p.is_absolute() and base_dir is not None:
        p = Path(base_dir) / p
    return p


def _check_file(p: Path, role: str | None = None) -> str:
    """Fail with a DataError unless ``p`` is a readable, non-empty file; returns its display name."""
    shown = os.path.normpath(str(p))  # shown without 'a/../' or './' (the file opened is p itself)
    what = f" ({role} data)" if role else ""
    try:
        size = check_regular(p)
    except NotReadable as err:
        if err.kind == "missing":
            raise DataError(f"{shown}: data file not found{what}") from None
        raise DataError(f"{shown}: {err.reason('data file')}{what}") from None
    if size == 0:
        raise DataError(f"{shown}: data file is empty{what}")
    return shown


def _format_of(p: Path) -> str:
    name = p.name.lower()
    if name.endswith(".npz"):
        return "npz"
    if name.endswith(".npy"):
        return "npy"
    if name.endswith(".csv"):
        return "csv"
    if is_idx_name(name):
        return "idx"
    raise DataError(
        f"{p}: unknown data format (expected .npz, .npy, .csv, or IDX files named "
        f"*-idx3-ubyte / *-idx1-ubyte, optionally .gz)"
    )


# --------------------------------------------------------------------------------------------
# readers


def _one_line(err) -> str:
    return " ".join(str(err).split())[:300]


def _numpy_load(p: Path, shown: str, kind: str):
    """``np.load`` without pickle; every failure to parse the bytes becomes a DataError."""
    try:
        with open_regular(p) as f:
            loaded = np.load(f, allow_pickle=False)
            if isinstance(loaded, np.lib.npyio.NpzFile):
                with loaded as z:
                    return {k: z[k] for k in z.files}  # members are read (and CRC-checked) here
            return loaded
    except ValueError as err:
        if "allow_pickle" in str(err) and not _starts_like(p, (b"PK", b"\x93NUMPY", b"\x80")):
            # np.load tries pickle for any file that is neither a zip nor an .npy
            raise DataError(f"{shown}: not an {kind} file (neither a zip archive nor an .npy array)") from None
        if "allow_pickle" in str(err) or "Object arrays" in str(err):
            raise DataError(
                f"{shown}: holds a pickled object array, which dlrun refuses to load "
                f"(save plain numeric or string arrays)"
            ) from None
        raise DataError(f"{shown}: cannot read as {kind}: {_one_line(err)}") from None
    except MemoryError:
        raise DataError(f"{shown}: not enough memory to load this file (damaged header?)") from None
    except NotReadable as err:
        raise DataError(f"{shown}: {err.reason('data file')}") from None
    except PermissionError:
        raise DataError(f"{shown}: cannot read: permission denied") from None
    except Exception as err:  # noqa: BLE001
        # numpy and zipfile parse untrusted bytes and fail in many ways (BadZipFile, zlib.error,
        # EOFError, tokenize/SyntaxError in a damaged header, NotImplementedError for an odd
        # zip version, ...): all mean the same thing to the user.
        raise DataError(f"{shown}: damaged or truncated {kind} file ({type(err).__name__}: {_one_line(err)})") from None


def _starts_like(p: Path, magics) -> bool:
    """Whether the file starts with one of ``magics`` (zip, .npy, or a pickle's PROTO opcode)."""
    try:
        with open_regular(p) as f:
            head = f.read(8)
    except (OSError, NotReadable):
        return True
    return head.startswith(tuple(magics))


def _load_npz(p: Path, shown: str, pick=None, check=None) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` file, without pickle, through ``npzio`` (headers checked
    before anything is decompressed). ``pick(names)``: the names to read of those in the
    archive (default all); the others are never decompressed. Returns ``{name: array or
    None}``: every name in the archive, None for those not read. ``check(name, shape,
    dtype)``: see ``npzio.read_npz``."""
    if _starts_like(p, (b"PK",)):
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
    arrays = _numpy_load(p, shown, ".npz")
    if not isinstance(arrays, dict):
        raise DataError(f"{shown}: not an .npz archive (a single .npy array?)")
    if not arrays:
        raise DataError(f"{shown}: contains no arrays (an empty .npz archive)")
    return arrays


def _load_npy(p: Path, shown: str) -> np.ndarray:
    arr = _numpy_load(p, shown, ".npy")
    if not isinstance(arr, np.ndarray):
        raise DataError(f"{shown}: expected one array in a .npy file")
    return arr


@dataclass
class _Csv:
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
            if all(_is_number(h) for h in self.header):
                hint = " (the first line must be a header of column names)"
            elif _delimiter_hint(self.header):
                hint = _delimiter_hint(self.header)
            elif len(self.header) <= 2000:  # difflib over a very wide header would take seconds
                hint = suggest(name, self.header, show_known=False)
            raise DataError(
                f"{self.shown}: no {what} column named '{name}'{hint}; columns: {_names_text(self.header)}",
                statement=what,
            )
        return self.index[name]


def _names_text(names: Sequence[str], limit: int = 20) -> str:
    """``a, b, c`` for a message: at most ``limit`` names, each quoted short (see ``quote``)."""
    text = ", ".join(n if len(n) <= 200 else quote(n) for n in names[:limit])
    return text + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")


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


def _columns_by_name(table: _Csv, names: Sequence[str], label: str | None, against: str) -> list[int]:
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


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _read_csv(p: Path, shown: str) -> _Csv:
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
        raise DataError(f"{shown}: not UTF-8 text; expected a CSV file with a header row") from None
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
    return _Csv(header, columns, np.asarray(lines, dtype=np.int64), shown, first)


def _csv_float(cell: str) -> float:
    """A CSV number: what ``float()`` reads (surrounding whitespace, exponents, ``nan`` and
    ``inf``, which the finite check then refuses), except Python's own spellings: digit
    group underscores (``1_000``) and non-ASCII digits are ValueError."""
    if "_" in cell or not cell.isascii():
        raise ValueError(cell)
    return float(cell)


def _all_plain(cells: Sequence[str]) -> bool:
    """No cell holds an underscore or a non-ASCII character (one pass in C)."""
    joined = "".join(cells)
    return "_" not in joined and joined.isascii()


def _floats(cells: Sequence[str]) -> np.ndarray:
    """``cells`` as float64 by the ``_csv_float`` rule; ValueError at a non-number."""
    if not _all_plain(cells):
        raise ValueError("not a CSV number")
    return np.fromiter(map(float, cells), dtype=np.float64, count=len(cells))


def _first_unconvertible(cells: Iterable[str]) -> int:
    """Index of the first cell that ``_csv_float`` rejects, or -1."""
    for i, cell in enumerate(cells):
        try:
            _csv_float(cell)
        except ValueError:
            return i
    return -1


def quote(value: str, limit: int = 200) -> str:
    """``'value'`` for a message, cut to ``limit`` characters (a 50 MB cell is not echoed)."""
    value = str(value)
    if len(value) <= limit:
        return f"'{value}'"
    return f"'{value[:limit]}...' ({len(value)} characters)"


def _csv_numbers(table: _Csv, cols: Sequence[int]) -> np.ndarray:
    """The given columns as float64 ``(rows, len(cols))``; DataError at the first non-number."""
    n = table.lines.shape[0]
    out = np.empty((n, len(cols)), dtype=np.float64)
    first = None  # (row, k) of the first bad cell in row-major order
    for k, j in enumerate(cols):
        try:
            out[:, k] = _floats(table.columns[j])
        except ValueError:
            i = _first_unconvertible(table.columns[j])
            if first is None or (i, k) < first:
                first = (i, k)
    if first is None:
        return out
    i, k = first
    value = table.columns[cols[k]][i].strip()
    got = "an empty cell" if value == "" else quote(value)
    raise DataError(f"{table.shown}: {table.where(i, cols[k])}: expected a number, got {got}")


def _str_to_float(values: np.ndarray) -> np.ndarray | None:
    """A str array as float64 (same shape), or None when a cell is not a number."""
    try:
        flat = _floats(values.ravel().tolist())
    except ValueError:
        return None
    return flat.reshape(values.shape)


# --------------------------------------------------------------------------------------------
# one source -> raw arrays


@dataclass
class _Raw:
    """What one source file yields before it is checked against the model."""

    x: np.ndarray
    y: np.ndarray | None  # numbers, or str (class names / CSV cells to be interpreted)
    source: str  # file of x (messages)
    y_source: str  # file of y (messages)
    x_where: Callable[[int, int], str]  # location of feature j of sample i
    y_where: Callable[[int], str]  # location of the label of sample i
    prepared: bool = False  # x already checked and shaped by _prepare_x
    feature_names: list[str] | None = None  # CSV: the header names of x's columns


def _header_check(input_shape, shown: str, names=None):
    """A check of an inputs array's declared ``(shape, dtype)`` against the model's input,
    run on the file's header before the array is read (None without ``input_shape``)."""
    if input_shape is None:
        return None

    def check(*args):
        name, shape, dtype = args if len(args) == 3 else (None, *args)
        if names is None or name in names:
            check_input_layout(shape, dtype, tuple(int(d) for d in input_shape), shown)

    return check


def _array_where(name: str) -> Callable[[int, int], str]:
    return lambda i, j: f"array '{name}', sample {i}, feature {j}"


def _read_labels_file(p: Path, shown: str, label: str | None):
    """Labels from a separate file: (array, where)."""
    fmt = _format_of(p)
    if fmt == "npy":
        return _load_npy(p, shown), (lambda i: f"sample {i}")
    if fmt == "idx":
        return read_idx(p, shown), (lambda i: f"sample {i}")
    if fmt == "npz":
        arrays = _load_npz(p, shown, lambda names: ["y"] if "y" in names else names[:1] if len(names) == 1 else [])
        key = "y" if "y" in arrays else (next(iter(arrays)) if len(arrays) == 1 else None)
        if key is None:
            raise DataError(
                f"{shown}: no array 'y' in this labels file (arrays: {_names_text(list(arrays)) or 'none'})"
            )
        return arrays[key], (lambda i, k=key: f"array '{k}', sample {i}")
    table = _read_csv(p, shown)
    if len(table.header) == 1:
        j = 0
        if _is_number(table.header[0]):
            warnings.warn(f"{shown}: line 1 ({quote(table.header[0])}) was taken as the header of this "
                          f"labels file, not as a label; add a header line (a column name) if it is a label",
                          DataWarning, stacklevel=2)
    elif label is None:
        raise DataError(
            f"{shown}: a labels file with {len(table.header)} columns; name the label column with "
            f"`label NAME` in the data block (columns: {_names_text(table.header)})"
        )
    else:
        j = table.column(label, "label")
    return table.text(j), (lambda i: table.where(i, j))


def _read_source(src: ir.Source, base_dir, label: str | None, role: str, need_y: bool = True,
                 features: Sequence[str] | None = None, against: str = "", input_shape=None) -> _Raw:
    """One data file's raw arrays; a CSV's features are the columns named ``features`` (all
    but the label when None), matched by name against those of ``against`` (messages)."""
    p = resolve_path(src.path, base_dir)
    shown = _check_file(p, role)
    fmt = _format_of(p)
    y = None
    y_where: Callable[[int], str] = lambda i: f"sample {i}"
    y_source = shown
    if fmt == "csv":
        if src.labels is not None:
            raise DataError(
                f"{shown}: labels= is for .npy, .npz and IDX inputs; a CSV file names its label "
                f"column with `label NAME` in the data block"
            )
        table = _read_csv(p, shown)
        if label is None:
            if need_y:
                raise DataError(
                    f"{shown}: which column holds the labels? add `label NAME` to the data block "
                    f"(columns: {_names_text(table.header)})"
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
            cols = _columns_by_name(table, features, label, against)
        x = _csv_numbers(table, cols)
        x_where = lambda i, k: table.where(i, cols[k])
        return _Raw(x, y, shown, shown, x_where, y_where, feature_names=[table.header[k] for k in cols])

    if fmt == "npz":
        arrays = _load_npz(p, shown, lambda names: [src.x_key] + ([src.y_key] if src.labels is None else []),
                           _header_check(input_shape, shown, {src.x_key}))
        if src.x_key not in arrays:
            raise DataError(
                f"{shown}: no array '{src.x_key}' (arrays in the file: {_names_text(list(arrays)) or 'none'}); "
                f"name the inputs with `x=NAME`"
            )
        x = arrays[src.x_key]
        x_where = _array_where(src.x_key)
        if src.labels is None:
            if src.y_key in arrays:
                y = arrays[src.y_key]
                y_where = lambda i: f"array '{src.y_key}', sample {i}"
            elif need_y:
                raise DataError(
                    f"{shown}: no label array '{src.y_key}' (arrays in the file: {_names_text(list(arrays))}); "
                    f"name it with `y=NAME` or give labels=\"FILE\""
                )
    elif fmt == "npy":
        x = _load_npy(p, shown)
        x_where = _array_where("x")
    else:  # idx
        x = read_idx(p, shown, check=_header_check(input_shape, shown))
        x_where = lambda i, j: f"image {i}, value {j}"

    if src.labels is not None:
        lp = resolve_path(src.labels, base_dir)
        y_source = _check_file(lp, f"{role} labels")
        y, y_where = _read_labels_file(lp, y_source, label)
    elif y is None and need_y:
        kind = "IDX images" if fmt == "idx" else ".npy inputs"
        raise DataError(f'{shown}: {kind} need a labels file: write {role} "{src.path}" labels="FILE"')
    return _Raw(x, y, shown, y_source, x_where, y_where)


# --------------------------------------------------------------------------------------------
# checks against the model


def check_input_layout(shape: Sequence[int], dtype, input_shape: tuple, shown: str) -> None:
    """The checks of ``_prepare_x`` that need only the inputs' shape and dtype (also used by
    ``dlrun check --data``, which reads no more than an array's header)."""
    dtype = np.dtype(dtype)
    if dtype.kind not in "biuf":
        raise DataError(f"{shown}: inputs have dtype {dtype}; expected numbers")
    if len(shape) == 0:
        raise DataError(f"{shown}: inputs are a single number; expected an array of samples")
    if int(shape[0]) == 0:
        raise DataError(f"{shown}: no samples (the input array has 0 rows)")
    got, want = _features(shape[1:]), _features(input_shape)
    if got != want:
        raise DataError(
            f"{shown}: {got} features per sample (shape {_shape_text(shape[1:]) or 'scalar'}), "
            f"but the model's input is {_shape_text(input_shape)} ({want} features)"
        )


def _prepare_x(x: np.ndarray, input_shape: tuple, shown: str, where: Callable[[int, int], str]) -> np.ndarray:
    """Check ``x`` against the model's input; returns it shaped ``(n, *input_shape)``.

    uint8, float32 and float64 are kept; other numeric types become float64 (float16 float32).
    """
    x = np.asarray(x)
    input_shape = tuple(int(d) for d in input_shape)
    check_input_layout(x.shape, x.dtype, input_shape, shown)
    n = int(x.shape[0])
    if x.shape[1:] != input_shape:
        x = x.reshape((n,) + input_shape)
    if x.dtype == np.uint8 or x.dtype == np.float32 or x.dtype == np.float64:
        pass
    elif x.dtype == np.float16:
        x = x.astype(np.float32)
    else:
        x = x.astype(np.float64)
    if x.dtype.kind == "f":
        bad = _first_nonfinite(x.reshape(n, -1))
        if bad is not None:
            i, j, v = bad
            raise DataError(f"{shown}: {where(i, j)}: non-finite value {v} (expected finite numbers)")
    return x


def _first_nonfinite(x2: np.ndarray):
    """(row, column, value) of the first NaN/Inf in a 2-D float array, or None (chunked)."""
    step = max(1, _CHUNK_BYTES // max(1, x2.shape[1] * 8))
    for s in range(0, x2.shape[0], step):
        ok = np.isfinite(x2[s : s + step])
        if not ok.all():
            r, c = np.argwhere(~ok)[0]
            return s + int(r), int(c), x2[s + int(r), int(c)]
    return None


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
    step = max(1, _CHUNK_BYTES // max(1, x2.shape[1] * 8))
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


def _is_text(y) -> bool:
    return y is not None and y.dtype.kind in "US"


def _as_text(y: np.ndarray) -> np.ndarray:
    return np.char.strip(y.astype(str)) if y.dtype.kind == "S" else np.char.strip(y)


def _encode_y(y: np.ndarray, *, task: str, n_outputs: int, class_names: list[str] | None,
              shown: str, where: Callable[[int], str]) -> np.ndarray:
    """Labels in the encoding the task's loss wants (see ``Dataset``)."""
    if y.ndim == 0:
        raise DataError(f"{shown}: labels are a single value; expected one per sample")
    n = y.shape[0]
    if _is_text(y):
        y = _as_text(y)
        if task == "regression" or class_names is None:
            numbers = _str_to_float(y)
            if numbers is None:
                flat = y.reshape(-1)
                k = _first_unconvertible(flat.tolist())
                i = k // max(1, flat.shape[0] // n)
                value = flat[k]
                got = "an empty cell" if value == "" else quote(value)
                expected = "a number" if task == "regression" else "a number or class name"
                raise DataError(f"{shown}: {where(i)}: expected {expected}, got {got}")
            y = numbers.reshape(y.shape)
        else:
            if y.ndim != 1:
                raise DataError(f"{shown}: class-name labels must be one per sample, got shape {y.shape}")
            _check_no_empty_label(y, shown, where)
            index = {name: k for k, name in enumerate(class_names)}
            codes = np.empty(n, dtype=np.int64)
            for i, name in enumerate(y.tolist()):
                k = index.get(name)
                if k is None:
                    raise DataError(
                        f"{shown}: {where(i)}: unknown class {quote(name)} (classes: {', '.join(class_names)})"
                    )
                codes[i] = k
            if task == "binary":
                return codes.astype(np.float64).reshape(n, 1)
            return codes
    if y.dtype.kind not in "biuf":
        raise DataError(f"{shown}: labels have dtype {y.dtype}; expected numbers or class names")

    if task == "classification":
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        elif y.ndim == 2 and y.shape[1] == n_outputs and n_outputs > 1:
            # one-hot rows -> class indices
            yf = y.astype(np.float64)
            onehot = np.isin(yf, (0.0, 1.0)).all(axis=1) & (yf.sum(axis=1) == 1.0)
            if not onehot.all():
                i = int(np.argmin(onehot))
                raise DataError(
                    f"{shown}: {where(i)}: a label row of {n_outputs} values must be one-hot "
                    f"(one 1, the rest 0); got {y[i].tolist()} (cross_entropy takes class labels, "
                    f"not probabilities)"
                )
            return np.argmax(yf, axis=1).astype(np.int64)
        if y.ndim != 1:
            raise DataError(
                f"{shown}: labels of shape {_shape_text(y.shape)}; a classifier with {n_outputs} classes "
                f"expects one class index per sample ({n}) or one-hot rows ({n}x{n_outputs})"
            )
        if y.dtype.kind == "f":
            ok = np.isfinite(y) & (y == np.round(y))
            if not ok.all():
                i = int(np.argmin(ok))
                raise DataError(f"{shown}: {where(i)}: label {y[i]} is not an integer class index")
        ok = (y >= 0) & (y < n_outputs)
        if not ok.all():
            i = int(np.argmin(ok))
            v = y[i].item()
            v = int(v) if float(v).is_integer() else v
            raise DataError(
                f"{shown}: {where(i)}: label {v} is outside the model's {n_outputs} classes "
                f"(expected an integer in 0..{n_outputs - 1})"
            )
        return y.astype(np.int64)

    if task == "binary":
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.ndim != 1:
            raise DataError(
                f"{shown}: labels of shape {_shape_text(y.shape)}; a binary classifier expects one "
                f"label per sample, 0 or 1"
            )
        yf = y.astype(np.float64)
        ok = np.isfinite(yf) & (yf >= 0.0) & (yf <= 1.0)
        if not ok.all():
            i = int(np.argmin(ok))
            raise DataError(f"{shown}: {where(i)}: label {y[i].item()} is outside [0, 1] (binary labels)")
        return yf.reshape(n, 1)

    # regression
    yf = y.astype(np.float64)
    if yf.ndim == 1:
        yf = yf.reshape(n, 1)
    if yf.ndim != 2 or yf.shape[1] != n_outputs:
        raise DataError(
            f"{shown}: targets of shape {_shape_text(y.shape)}, but the model has {n_outputs} "
            f"output{'s' if n_outputs != 1 else ''} (expected {n}x{n_outputs})"
        )
    bad = _first_nonfinite(yf)
    if bad is not None:
        raise DataError(f"{shown}: {where(bad[0])}: non-finite target {bad[2]} (expected finite numbers)")
    return yf


def _class_names(raws: Iterable[_Raw], task: str) -> list[str] | None:
    """Sorted class names when any split's labels are names (not all numbers), else None."""
    if task == "regression":
        return None
    raws = [r for r in raws if r.y is not None]
    texts = [r for r in raws if _is_text(r.y)]
    named = [r for r in texts if _str_to_float(_as_text(r.y)) is None]
    if not named:
        return None
    for r in raws:
        if not _is_text(r.y):
            raise DataError(
                f"{r.y_source}: labels are numbers here but class names in {named[0].y_source}; "
                f"use one kind of label in every split"
            )
    for r in raws:
        _check_no_empty_label(_as_text(r.y), r.y_source, r.y_where)
    names = sorted(set().union(*(set(_as_text(r.y).ravel().tolist()) for r in raws)))
    return names


def _check_no_empty_label(text: np.ndarray, shown: str, where: Callable[[int], str]) -> None:
    empty = text.reshape(text.shape[0], -1) == ""
    if empty.any():
        i = int(np.argmax(empty.any(axis=1)))
        raise DataError(f"{shown}: {where(i)}: empty label (expected a class name)")


def _check_held_out_classes(raws: Mapping[str, _Raw], names: list[str], task: str, n_outputs: int) -> None:
    """When the classes are too many for the model, blame the file and line where a class
    the training file lacks appears (not the training file)."""
    want = 2 if task == "binary" else n_outputs
    train = raws["train"]
    if len(names) <= want or train.y is None or not _is_text(train.y):
        return
    known = set(_as_text(train.y).ravel().tolist())
    for role, raw in raws.items():
        if role == "train" or raw.y is None or not _is_text(raw.y):
            continue
        text = _as_text(raw.y).reshape(raw.y.shape[0], -1)[:, 0].tolist()
        for i, name in enumerate(text):
            if name not in known:
                raise DataError(
                    f"{raw.y_source}: {raw.y_where(i)}: class {quote(name)} is not among the "
                    f"{len(known)} classes of the training file {train.y_source} "
                    f"({_names_text(sorted(known))})")


def _check_class_count(names: list[str], task: str, n_outputs: int, shown: str) -> None:
    want = 2 if task == "binary" else n_outputs
    if len(names) != want:
        listed = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
        unit = "a binary output (2 classes)" if task == "binary" else f"{n_outputs} output classes"
        raise DataError(
            f"{shown}: the labels name {len(names)} classes ({listed}), but the model has {unit}"
        )


def _prepare(raw: _Raw, input_shape) -> None:
    if not raw.prepared:
        raw.x = _prepare_x(raw.x, input_shape, raw.source, raw.x_where)
        raw.prepared = True


def check_label_count(n: int, y: np.ndarray, source: str, y_source: str) -> None:
    """One label per input sample (``n`` of them)."""
    if y.ndim == 0 or y.shape[0] != n:
        ny = 1 if y.ndim == 0 else y.shape[0]
        files = source if y_source == source else f"{source} / {y_source}"
        raise DataError(f"{files}: {n} samples but {ny} labels")


def _dataset(raw: _Raw, *, input_shape, n_outputs, task, class_names) -> Dataset:
    _prepare(raw, input_shape)
    x = raw.x
    y = None
    if raw.y is not None:
        y = np.asarray(raw.y)
        check_label_count(x.shape[0], y, raw.source, raw.y_source)
        y = _encode_y(y, task=task, n_outputs=n_outputs, class_names=class_names,
                      shown=raw.y_source, where=raw.y_where)
    source = raw.source if raw.y_source == raw.source else f"{raw.source} + {raw.y_source}"
    return Dataset(x, y, source)


def class_names_of(y) -> list[str] | None:
    """Sorted distinct names when ``y`` holds strings that are not all numbers, else None.

    For labels given through the API: ``make_dataset(..., class_names=class_names_of(y))``.

    >>> class_names_of(["b", "a", "b"]), class_names_of([0, 1])
    (['a', 'b'], None)
    """
    y = np.asarray(y)
    if not _is_text(y):
        return None
    text = _as_text(y)
    if _str_to_float(text) is not None:
        return None
    return sorted(set(text.ravel().tolist()))


def make_dataset(x, y=None, *, input_shape, n_outputs: int, task: str, class_names=None,
                 source: str = "<array>") -> Dataset:
    """Check arrays given through the Python API the way files are checked.

    ``y`` may hold class names when ``class_names`` is given (they are mapped to indices).

    >>> ds = make_dataset(np.zeros((3, 2)), [0, 1, 1], input_shape=(2,), n_outputs=2,
    ...                   task="classification")
    >>> ds.x.shape, ds.y.dtype.name
    ((3, 2), 'int64')
    """
    if task not in TASKS:
        raise UsageError(f"unknown task {task!r} (expected one of {', '.join(TASKS)})")
    try:
        xa = np.asarray(x)
    except (ValueError, TypeError) as err:
        raise DataError(f"{source}: inputs are not a rectangular numeric array ({err})") from None
    ya = None
    if y is not None:
        try:
            ya = np.asarray(y)
        except (ValueError, TypeError) as err:
            raise DataError(f"{source}: labels are not a rectangular array ({err})") from None
        if ya.dtype.kind == "O":
            raise DataError(f"{source}: labels must be numbers or strings, got Python objects")
    names = list(class_names) if class_names is not None else None
    if names is not None and task != "regression":
        _check_class_count(names, task, n_outputs, source)
    elif _is_text(ya) and task != "regression" and class_names_of(ya) is not None:
        raise DataError(f"{source}: labels are class names; pass class_names (sorted names of the classes)")
    raw = _Raw(xa, ya, source, source, lambda i, j: f"x[{i}], feature {j}", lambda i: f"y[{i}]")
    return _dataset(raw, input_shape=input_shape, n_outputs=n_outputs, task=task, class_names=names)


# --------------------------------------------------------------------------------------------
# splitting


def _split_positions(n: int, fractions: Mapping[str, float], strata: np.ndarray | None, seed: int):
    """Sorted row indices for each held-out split and for what stays in training.

    Rows are ordered by a permutation drawn from ``seed``; with ``strata`` (class codes) the
    fraction is taken within every class, so each split keeps the class proportions.
    """
    rng = np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFFFFFFFFFF, 0x5D17]))
    perm = rng.permutation(n)
    if strata is None:
        q = (np.arange(n) + 0.5) / n
    else:
        _, codes = np.unique(strata[perm], return_inverse=True)
        codes = codes.ravel()
        counts = np.bincount(codes)
        order = np.argsort(codes, kind="stable")
        starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
        rank = np.empty(n, dtype=np.int64)
        rank[order] = np.arange(n) - starts[codes[order]]
        q = (rank + 0.5) / counts[codes]
    # Held-out splits take the rows of lowest within-class quantile, in turn: exact totals
    # (round(f * n) rows each), class proportions kept to within one row per class.
    order = perm[np.lexsort((np.arange(n), q))]
    out = {}
    start = 0
    for role, f in fractions.items():
        k = int(np.floor(f * n + 0.5))
        out[role] = np.sort(order[start : start + k])
        start += k
    out["train"] = np.sort(order[start:])
    return out


def _compact_rows(x: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """``x[keep]`` for sorted ``keep``, built in place in ``x``'s own memory (no second copy).

    Row ``keep[k] >= k`` moves down to ``k``; a chunk's sources are gathered before its
    destinations are written, and earlier chunks only wrote below ``k``.
    """
    step = max(1, _CHUNK_BYTES // max(1, x[0].nbytes))
    n = keep.shape[0]
    for s in range(0, n, step):
        e = min(s + step, n)
        x[s:e] = x[keep[s:e]]
    return x[:n]


def _draw_split(ds: Dataset, fractions: Mapping[str, float], task: str, seed: int) -> dict[str, np.ndarray]:
    n = len(ds)
    strata = None
    if ds.y is not None and task in ("classification", "binary"):
        strata = ds.y.reshape(n, -1)[:, 0]
    return _split_positions(n, fractions, strata, seed)


def _split_rows(pos: Mapping[str, np.ndarray], n: int) -> np.ndarray:
    """``DataRecord.rows`` of the positions ``_split_positions`` returns."""
    rows = np.zeros(n, dtype=np.uint8)
    for role, code in SPLIT_CODES.items():
        if role in pos:
            rows[pos[role]] = code
    return rows


def _saved_split(saved: DataRecord, fractions: Mapping[str, float]) -> dict[str, np.ndarray]:
    """The positions of a saved split (``DataRecord.rows``), as ``_split_positions`` returns them."""
    rows = saved.rows
    out = {role: np.flatnonzero(rows == SPLIT_CODES[role]) for role in fractions}
    out["train"] = np.flatnonzero(rows == 0)
    return out


def _fractions_text(fractions: Mapping[str, float]) -> str:
    return ", ".join(f"{role} {fractions[role]:g}" for role in SPLIT_CODES if role in fractions) or "nothing"


def _check_record(saved: DataRecord, files: Mapping[str, tuple[str, str]], fractions: Mapping[str, float],
                  n_train: int) -> bool:
    """Compare the data just loaded with the record of the weights; True when the saved
    split is to be used.

    The rows held out of the training file are only known for the data they were drawn
    from: other fractions, or a changed training file, are refused (a test split holding
    training rows would report a wrong result). A changed separate file is warned about.
    """
    if not saved.files:
        return False  # nothing known of the split (old weights, or trained on arrays)
    if dict(saved.fractions) != dict(fractions):
        raise DataError(
            f"{files['train'][0]}: the model file holds out {_fractions_text(fractions)} of the training "
            f"file, but {saved.origin} were trained holding out {_fractions_text(saved.fractions)}: "
            f"their validation/test split cannot be rebuilt (restore the data block, or train again)"
        )
    use = saved.rows is not None and bool(fractions)
    for role, (shown, sha) in files.items():
        if role not in saved.files:
            continue
        old_shown, old_sha = saved.files[role]
        if sha == old_sha:
            continue
        what = (f"the {_ROLE_WORD.get(role, role)} data differ from those {saved.origin} were trained on "
                f"(sha256 {sha[:16]} now, {old_sha[:16]} for {old_shown} then)")
        if role == "train" and use:
            raise DataError(f"{shown}: {what}: the validation/test rows held out of it cannot be rebuilt; "
                            f"evaluate on the data the weights were trained on, or train again")
        warnings.warn(f"{shown}: {what}", DataWarning, stacklevel=3)
    if use and saved.rows.shape != (n_train,):
        raise DataError(f"{files['train'][0]}: {n_train} samples, but the split saved in {saved.origin} "
                        f"covers {saved.rows.shape[0]}")
    return use


def _split_off(ds: Dataset, pos: Mapping[str, np.ndarray], fractions: Mapping[str, float]) -> dict[str, Dataset]:
    n = len(ds)
    out = {}
    for role in fractions:
        idx = pos[role]
        if idx.shape[0] == 0:
            raise DataError(
                f"{ds.source}: {role} fraction {fractions[role]:g} of {n} samples leaves no {role} samples"
            )
        out[role] = Dataset(ds.x[idx], None if ds.y is None else ds.y[idx], f"{ds.source} ({role} split)")
    keep = pos["train"]
    if keep.shape[0] == 0:
        raise DataError(f"{ds.source}: no training samples left after the held-out fractions")
    x = ds.x
    if x.flags.writeable and x.flags.c_contiguous:
        x = _compact_rows(x, keep)
    else:
        x = x[keep]
    out["train"] = Dataset(x, None if ds.y is None else ds.y[keep], ds.source)
    return out


def load_splits(data: ir.Data | None, *, base_dir, input_shape: tuple, n_outputs: int, task: str,
                seed: int, saved: DataRecord | None = None, dtype=None) -> Splits:
    """Load train/validation/test as the data block says, check them, fit the preprocessing.

    Fractions are split off the training file with a permutation from ``seed``, stratified by
    class for classifiers. Relative paths resolve against ``base_dir``. CSV features are
    matched by header name against the training file's (or ``saved``'s) columns.

    ``saved``: the record of the weights being evaluated: its feature names are the ones
    read, its split is used instead of a new one, and the data are checked against its
    fingerprints (see ``_check_record``). ``dtype``: the model's; every split is checked
    against its range after preprocessing (``check_model_range``).
    """
    if task not in TASKS:
        raise UsageError(f"unknown task {task!r} (expected one of {', '.join(TASKS)})")
    if data is None or data.train is None:
        raise DataError('the model file names no training data (add `data { train "FILE" ... }`)')
    input_shape = tuple(int(d) for d in input_shape)
    features = saved.feature_names if saved is not None else None
    against = saved.origin if features is not None else ""
    raws = {"train": _read_source(data.train, base_dir, data.label, "train", features=features, against=against,
                                  input_shape=input_shape)}
    if features is None and raws["train"].feature_names is not None:
        features = raws["train"].feature_names
        against = f"the training file {raws['train'].source}"
    fractions: dict[str, float] = {}
    for role in ("validation", "test"):
        value = getattr(data, role)
        if isinstance(value, ir.Source):
            raws[role] = _read_source(value, base_dir, data.label, role, features=features, against=against,
                                      input_shape=input_shape)
        elif value is not None:
            f = float(value)
            if not 0.0 < f < 1.0:
                raise DataError(f"{role} fraction {f:g} must be between 0 and 1")
            fractions[role] = f
    if sum(fractions.values()) >= 1.0:
        raise DataError(
            f"validation and test fractions add up to {sum(fractions.values()):g}; "
            f"they must leave part of {raws['train'].source} for training"
        )
    for raw in raws.values():  # inputs first: a wrong feature count is the more basic mistake
        _prepare(raw, input_shape)
    names = _class_names(raws.values(), task)
    if names is not None:
        _check_held_out_classes(raws, names, task, n_outputs)
        _check_class_count(names, task, n_outputs, raws["train"].y_source)
    sets = {role: _dataset(raw, input_shape=input_shape, n_outputs=n_outputs, task=task, class_names=names)
            for role, raw in raws.items()}
    feature_names = raws["train"].feature_names
    wheres = {role: (raw.source, raw.x_where) for role, raw in raws.items()}
    del raws
    files = {role: (ds.source, data_fingerprint(ds)) for role, ds in sets.items()}
    n_train = len(sets["train"])
    record = DataRecord(feature_names, files, dict(fractions), int(seed) if fractions else None,
                        origin=f"the weights trained on {files['train'][0]}")
    if fractions:
        if saved is not None and _check_record(saved, files, fractions, n_train):
            pos = _saved_split(saved, fractions)
            record.split_seed = saved.split_seed
            if saved.split_seed is not None and int(seed) != saved.split_seed:
                warnings.warn(f"the validation/test split is the one saved with {saved.origin} (drawn with "
                              f"seed {saved.split_seed}); the model file's seed {int(seed)} does not "
                              f"re-draw it", DataWarning, stacklevel=3)
        else:
            pos = _draw_split(sets["train"], fractions, task, seed)
        record.rows = _split_rows(pos, n_train)
        sets.update(_split_off(sets["train"], pos, fractions))
    elif saved is not None:
        _check_record(saved, files, fractions, n_train)
    pre = Preprocessor(data.preprocess).fit(sets["train"].x, source=sets["train"].source)
    if dtype is not None:
        for role, ds in sets.items():
            shown, where = wheres.get(role, wheres["train"])
            check_model_range(ds.x, pre, dtype, shown, where, pos.get(role) if fractions else None)
    return Splits(sets["train"], sets.get("validation"), sets.get("test"), names, pre, record)


def load_inputs(path, *, input_shape, label: str | None = None, base_dir=None,
                feature_names: Sequence[str] | None = None, against: str = "the training data",
                pre: "Preprocessor | None" = None, dtype=None) -> np.ndarray:
    """Inputs to predict on: ``.npz`` (array ``x`` or the only array), ``.npy``, ``.csv`` (header;
    the ``label`` column dropped if present), or IDX images; checked against ``input_shape``.

    ``feature_names``: the training columns (``DataRecord.feature_names``); a CSV's columns
    are then matched by name (see ``_columns_by_name``; ``against`` names their origin),
    otherwise by position. ``pre`` and ``dtype``: the fitted preprocessing and the model's
    dtype; the inputs are checked against its range after preprocessing (``check_model_range``).
    """

    def checked(x, where):
        x = _prepare_x(x, input_shape, shown, where)
        if pre is not None and dtype is not None:
            check_model_range(x, pre, dtype, shown, where)
        return x

    p = resolve_path(path, base_dir)
    shown = _check_file(p, "input")
    fmt = _format_of(p)
    input_shape = tuple(int(d) for d in input_shape)
    if fmt == "csv":
        table = _read_csv(p, shown)
        cols = [k for k, name in enumerate(table.header) if name != label]
        if not cols:
            raise DataError(f"{shown}: no feature columns")
        if feature_names is not None:
            cols = _columns_by_name(table, feature_names, label, against)
        x = _csv_numbers(table, cols)
        return checked(x, lambda i, k: table.where(i, cols[k]))
    if fmt == "npz":
        arrays = _load_npz(p, shown, lambda names: ["x"] if "x" in names else names[:1] if len(names) == 1 else [],
                           _header_check(input_shape, shown))
        key = "x" if "x" in arrays else (next(iter(arrays)) if len(arrays) == 1 else None)
        if key is None:
            raise DataError(
                f"{shown}: no array 'x' and more than one array ({_names_text(list(arrays))}); "
                f"expected the inputs as 'x'"
            )
        return checked(arrays[key], _array_where(key))
    if fmt == "npy":
        return checked(_load_npy(p, shown), _array_where("x"))
    return checked(read_idx(p, shown, check=_header_check(input_shape, shown)), lambda i, j: f"image {i}, value {j}")


# --------------------------------------------------------------------------------------------
# preprocessing


def _step_kind(step) -> str:
    kind = step.kind if hasattr(step, "kind") else str(step)
    if kind not in PREPROCESS_KINDS:
        raise UsageError(f"unknown preprocessing step {kind!r} (known: {', '.join(PREPROCESS_KINDS)})")
    return kind


def _step_factor(step) -> float:
    params = getattr(step, "params", {}) or {}
    if "factor" not in params:
        raise UsageError("a scale step needs its factor")
    return float(params["factor"])


_STATS = {"standardize": ("mean", "std"), "minmax": ("min", "range")}


class Preprocessor:
    """The data block's preprocessing, in order: ``scale`` (factor), ``standardize``, ``minmax``.

    Every step is affine per feature, so the whole chain is one ``out = x * a + b``. The
    statistics of ``standardize`` (mean, std) and ``minmax`` (min, max - min) are those of the
    data *as it reaches the step* and are fitted on the training split only, in float64, in
    chunks (a uint8 image set is never copied as floats). Features with no spread get a unit
    divisor (they map to 0).

    >>> steps = [ir.Preprocess("scale", {"factor": 0.5}), ir.Preprocess("standardize")]
    >>> pre = Preprocessor(steps).fit(np.array([[0, 10], [4, 10]], dtype=np.uint8))
    >>> pre.transform(np.array([[0, 10], [4, 10]], dtype=np.uint8), np.float64).tolist()
    [[-1.0, 0.0], [1.0, 0.0]]
    """

    def __init__(self, steps: Iterable = ()):
        self.steps = tuple(steps)
        self.kinds = tuple(_step_kind(s) for s in self.steps)
        self.factors = tuple(_step_factor(s) if k == "scale" else None for s, k in zip(self.steps, self.kinds))
        self.stats: list[dict[str, np.ndarray]] = [{} for _ in self.steps]
        self.n_features: int | None = None
        self._a: np.ndarray | float = 1.0
        self._b: np.ndarray | float = 0.0
        self.fitted = not self.needs_fit
        self._set(self.stats)

    @property
    def needs_fit(self) -> bool:
        """True when a step has statistics to learn from training data."""
        return any(k in _STATS for k in self.kinds)

    # -- fitting ------------------------------------------------------------------------------
    def fit(self, x: np.ndarray, source: str = "training data") -> "Preprocessor":
        """Learn the statistics from training inputs ``x`` ``(n, ...)``; returns self.

        ``source`` names the data in messages (values too large for the statistics).
        """
        x = np.asarray(x)
        n = int(x.shape[0]) if x.ndim else 0
        if n == 0:
            raise DataError("cannot fit preprocessing on an empty training set")
        x2 = x.reshape(n, -1)
        features = x2.shape[1]
        if not self.needs_fit:
            self.n_features = features
            self.fitted = True
            return self
        stats = self._statistics(x2)
        for kind, st in zip(self.kinds, stats):
            for name, values in st.items():
                bad = ~np.isfinite(values)
                if bad.any():
                    j = int(np.argmax(bad))
                    raise DataError(
                        f"{source}: feature {j}: values too large to {kind} (the {name} overflows "
                        f"float64; largest magnitude {np.abs(x2[:, j]).max():.3g})"
                    )
        self._set(stats)
        self.n_features = features
        self.fitted = True
        return self

    @np.errstate(over="ignore", invalid="ignore")
    def _statistics(self, x2: np.ndarray) -> list[dict[str, np.ndarray]]:
        """Per-step statistics of ``x2`` ``(n, features)`` in one chunked float64 pass.

        Overflow (values near the float64 limit) leaves non-finite statistics, which
        ``fit`` reports.
        """
        n, features = x2.shape
        need_moments = "standardize" in self.kinds
        need_range = "minmax" in self.kinds
        mean = np.zeros(features)
        m2 = np.zeros(features)
        lo = np.full(features, np.inf)
        hi = np.full(features, -np.inf)
        count = 0
        step = max(1, _CHUNK_BYTES // max(1, features * 8))
        for s in range(0, n, step):
            chunk = x2[s : s + step].astype(np.float64)
            k = chunk.shape[0]
            if need_moments:
                # Chan et al.: merge the chunk's mean and sum of squared deviations
                c_mean = chunk.mean(axis=0)
                c_m2 = ((chunk - c_mean) ** 2).sum(axis=0)
                delta = c_mean - mean
                total = count + k
                mean += delta * (k / total)
                m2 += c_m2 + delta**2 * (count * k / total)
            if need_range:
                np.minimum(lo, chunk.min(axis=0), out=lo)
                np.maximum(hi, chunk.max(axis=0), out=hi)
            count += k
        std = np.sqrt(m2 / count)
        # walk the chain: statistics of the data as each step sees it
        a = np.ones(features)
        b = np.zeros(features)
        stats: list[dict[str, np.ndarray]] = []
        for kind, factor in zip(self.kinds, self.factors):
            if kind == "scale":
                a, b = a * factor, b * factor
                stats.append({})
            elif kind == "standardize":
                m = a * mean + b
                sd = np.abs(a) * std
                sd = np.where(sd <= 1e-12 * np.abs(m), 1.0, sd)
                stats.append({"mean": m, "std": sd})
                a, b = a / sd, (b - m) / sd
            else:
                t_lo = np.where(a >= 0, a * lo + b, a * hi + b)
                t_hi = np.where(a >= 0, a * hi + b, a * lo + b)
                rng = t_hi - t_lo
                rng = np.where(rng <= 1e-12 * np.maximum(np.abs(t_lo), np.abs(t_hi)), 1.0, rng)
                stats.append({"min": t_lo, "range": rng})
                a, b = a / rng, (b - t_lo) / rng
        return stats

    def _set(self, stats: list[dict[str, np.ndarray]]) -> None:
        """Compose the chain from per-step statistics (the one path for fit and from_state)."""
        a: np.ndarray | float = 1.0
        b: np.ndarray | float = 0.0
        for kind, factor, st in zip(self.kinds, self.factors, stats):
            if kind == "scale":
                a, b = a * factor, b * factor
            elif kind == "standardize" and st:
                a, b = a / st["std"], (b - st["mean"]) / st["std"]
            elif kind == "minmax" and st:
                a, b = a / st["range"], (b - st["min"]) / st["range"]
        self.stats = stats
        self._a = np.asarray(a, dtype=np.float64)
        self._b = np.asarray(b, dtype=np.float64)

    # -- applying -----------------------------------------------------------------------------
    @property
    def affine(self) -> tuple[np.ndarray, np.ndarray]:
        """``(a, b)``, float64 scalars or per-feature ``(features,)``: ``apply`` computes
        ``x * a + b`` (for kernels that convert raw batches themselves)."""
        return self._a, self._b

    def apply(self, x_batch: np.ndarray, out: np.ndarray) -> np.ndarray:
        """``out := x_batch * a + b``, flattened per sample; ``out`` float32/float64 ``(b, features)``.

        Computed in float64 (a product, then a sum) and rounded once to ``out``'s dtype.

        ``x_batch`` may be uint8 (converted on the fly, no float copy of it is made).
        """
        if not self.fitted:
            raise UsageError("preprocessing statistics are not fitted: train the model or load its weights")
        x_batch = np.asarray(x_batch)
        b = x_batch.shape[0]
        x2 = x_batch.reshape(b, -1)
        if out.shape != x2.shape:
            raise UsageError(f"preprocess output buffer has shape {out.shape}, expected {x2.shape}")
        if self.n_features is not None and x2.shape[1] != self.n_features:
            raise DataError(
                f"inputs have {x2.shape[1]} features per sample; the preprocessing was fitted on "
                f"{self.n_features}"
            )
        if self._a.ndim == 0 and self._a == 1.0 and self._b.ndim == 0 and self._b == 0.0:
            np.copyto(out, x2, casting="same_kind")
            return out
        has_b = self._b.ndim or self._b != 0.0
        if out.dtype == np.float64 or not has_b:
            np.multiply(x2, self._a, out=out, dtype=np.float64, casting="same_kind")
            if has_b:
                np.add(out, self._b, out=out)
            return out
        # x * a + b in float64, rounded once to out's dtype: rounding x * a first loses the
        # cancellation standardize relies on (a constant 1e20 became 2e12, not 0).
        # kernels/chain.pyx's take_affine computes the same, bit for bit.
        step = max(1, _CHUNK_BYTES // max(1, x2.shape[1] * 8))
        tmp = np.empty((min(step, b), x2.shape[1]), np.float64)
        for s in range(0, b, step):
            t = tmp[: min(step, b - s)]
            np.multiply(x2[s : s + step], self._a, out=t, dtype=np.float64)
            np.add(t, self._b, out=t)
            np.copyto(out[s : s + step], t, casting="same_kind")
        return out

    def transform(self, x: np.ndarray, dtype=np.float32) -> np.ndarray:
        """A new ``(n, features)`` array of ``dtype`` holding the preprocessed ``x``."""
        x = np.asarray(x)
        n = x.shape[0]
        out = np.empty((n, _features(x.shape[1:])), dtype=dtype)
        return self.apply(x, out)

    # -- saving -------------------------------------------------------------------------------
    def spec(self) -> list[dict]:
        """The steps as saved with the weights: ``[{"kind": "scale", "factor": 0.0625}, {"kind": "standardize"}]``."""
        return [{"kind": k, "factor": f} if k == "scale" else {"kind": k} for k, f in zip(self.kinds, self.factors)]

    def state(self) -> dict[str, np.ndarray]:
        """The fitted statistics as named float64 arrays (keys ``step{i}.{kind}.{stat}``)."""
        if not self.fitted:
            raise UsageError("preprocessing statistics are not fitted")
        out = {}
        for i, (kind, st) in enumerate(zip(self.kinds, self.stats)):
            for name in _STATS.get(kind, ()):
                out[f"step{i}.{kind}.{name}"] = np.array(st[name], dtype=np.float64)
        return out

    @classmethod
    def from_state(cls, steps: Iterable, state: Mapping[str, np.ndarray]) -> "Preprocessor":
        """A preprocessor for ``steps`` with statistics from ``state()``; exactly the fitted transform."""
        pre = cls(steps)
        expected = {f"step{i}.{k}.{s}" for i, k in enumerate(pre.kinds) for s in _STATS.get(k, ())}
        extra = sorted(set(state) - expected)
        if extra:
            raise WeightsError(
                f"preprocessing statistics {', '.join(extra)} do not match the model's preprocessing "
                f"({', '.join(pre.kinds) or 'none'})"
            )
        stats: list[dict[str, np.ndarray]] = []
        features = None
        for i, kind in enumerate(pre.kinds):
            st = {}
            for name in _STATS.get(kind, ()):
                key = f"step{i}.{kind}.{name}"
                if key not in state:
                    raise WeightsError(f"missing preprocessing statistics '{key}' ({kind} step {i + 1})")
                arr = np.asarray(state[key])
                if arr.ndim != 1 or arr.dtype.kind != "f" or (features is not None and arr.shape[0] != features):
                    raise WeightsError(
                        f"preprocessing statistics '{key}' have shape {arr.shape} and dtype {arr.dtype}; "
                        f"expected one float per feature"
                    )
                if not np.isfinite(arr).all() or (name in ("std", "range") and not (arr > 0).all()):
                    raise WeightsError(f"preprocessing statistics '{key}' hold invalid values")
                features = arr.shape[0]
                st[name] = arr.astype(np.float64)
            stats.append(st)
        pre._set(stats)
        pre.n_features = features
        pre.fitted = True
        return pre


def _step_text(step: Mapping) -> str:
    return f"scale {step['factor']!r}" if step.get("kind") == "scale" else str(step.get("kind"))


def preprocess_difference(saved: Sequence[Mapping], steps: Sequence) -> str | None:
    """How the data block's preprocessing ``steps`` differ from ``saved`` (the ``spec()`` the
    weights were trained with), or None when they are the same steps in the same order with
    the same factors.

    >>> preprocess_difference([{"kind": "scale", "factor": 0.0625}], [ir.Preprocess("scale", {"factor": 1 / 255})])
    'step 1 is scale 0.00392156862745098 in the model file, scale 0.0625 in the weights'
    """
    now = Preprocessor(steps).spec()
    saved = [dict(s) for s in saved]

    def line(i):
        pos = getattr(steps[i], "pos", None)
        return f" (line {pos.line})" if pos is not None and pos.line else ""

    for i, (old, new) in enumerate(zip(saved, now)):
        if old != new:
            return f"step {i + 1} is {_step_text(new)}{line(i)} in the model file, {_step_text(old)} in the weights"
    if len(now) > len(saved):
        i = len(saved)
        return f"the model file adds step {i + 1}, {_step_text(now[i])}{line(i)}, which the weights were not trained with"
    if len(saved) > len(now):
        i = len(now)
        return f"the weights were trained with a step {i + 1}, {_step_text(saved[i])}, which the model file lacks"
    return None
