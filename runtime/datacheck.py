"""``dlrun check --data``: a model's data files checked against the model before any training.

Every file of the data block is opened with ``runtime/data.py``'s readers and checked with its
checks; nothing is converted, preprocessed or split. What is read:

``.npy`` / ``.npz`` inputs, IDX images   the array's header only (shape and dtype)
labels (an ``.npz``'s label array, a ``labels=`` file)   in full: the classes are checked
``.csv``                                   in full (the label column is in the text)

Whenever a header cannot be read on its own (a damaged archive, an array the data block does
not name, ...), the file is read as training reads it, so the message is training's.

Reported: a missing or unreadable file, an unknown format, a label column the file lacks
(with "did you mean"), a feature count that differs from the model's ``input``, inputs and
labels of different lengths, labels that do not fit the output (class count, class indices
out of range, binary labels outside [0, 1], regression targets of the wrong width). Each
problem is given with the position of the data statement it is about: the file's own
statement (``train "..."``), the ``label`` statement, or the ``data`` block for problems
between files. Values are not scanned (NaN, overflow): training still checks them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from dlrun.dsl import ir
from dlrun.errors import DataError
from dlrun.runtime import data as D
from dlrun.fileopen import open_regular
from dlrun.runtime.idx import read_idx_header
from dlrun.runtime.npzio import read_npz_header


@dataclass
class _Probe:
    """What is known of one source after reading its headers (and its labels)."""

    role: str
    pos: ir.Pos
    shape: tuple  # inputs: (samples, ...)
    dtype: np.dtype
    y: np.ndarray | None
    source: str  # file of the inputs (messages)
    y_source: str  # file of the labels (messages)
    y_where: Callable[[int], str]
    feature_names: list[str] | None = None  # a CSV's feature columns


def check_data(model: ir.Model, base_dir) -> tuple[list[tuple[ir.Pos, str]], dict[str, int]]:
    """Check ``model``'s data files (paths relative to ``base_dir``) against the model.

    Returns ``(problems, samples)``: each problem a ``(pos, message)`` in the model file;
    ``samples`` the number of samples of each file's split (``{'train': 150}``).
    """
    data = model.data
    if data is None or data.train is None:
        return [], {}
    input_shape = tuple(int(d) for d in model.input_shape)
    n_outputs = int(np.prod(model.output_shape, dtype=np.int64))
    task = D.task_for_loss(model.loss.name)
    problems: list[tuple[ir.Pos, str]] = []
    probes: list[_Probe] = []
    features = against = None  # CSV features are matched by name against the training file's
    for role in ("train", "validation", "test"):
        src = getattr(data, role)
        if not isinstance(src, ir.Source):
            continue
        try:
            probe = _probe(src, role, data, base_dir, features, against)
            if role == "train" and probe.feature_names is not None:
                features, against = probe.feature_names, f"the training file {probe.source}"
            D.check_input_layout(probe.shape, probe.dtype, input_shape, probe.source)
            if probe.y is not None:
                D.check_label_count(probe.shape[0], probe.y, probe.source, probe.y_source)
            probes.append(probe)
        except DataError as err:
            problems.append((_statement_pos(err, src, data), str(err)))
    if problems:
        return problems, {}
    try:
        names = D._class_names(probes, task)
    except DataError as err:  # its messages start with the file they are about
        about = [p.pos for p in probes if str(err).startswith(p.y_source + ":")]
        return [(about[0] if about else data.pos, str(err))], {}
    try:
        if names is not None:
            D._check_class_count(names, task, n_outputs, probes[0].y_source)
    except DataError as err:
        return [(probes[0].pos, str(err))], {}
    for probe in probes:
        if probe.y is None:
            continue
        try:
            D._encode_y(probe.y, task=task, n_outputs=n_outputs, class_names=names, shown=probe.y_source,
                        where=probe.y_where)
        except DataError as err:
            problems.append((probe.pos, str(err)))
    return problems, {p.role: int(p.shape[0]) for p in probes}


def _statement_pos(err: DataError, src: ir.Source, data: ir.Data) -> ir.Pos:
    if getattr(err, "statement", None) == "label" and data.label_pos.line:
        return data.label_pos
    return src.pos


def _probe(src: ir.Source, role: str, data: ir.Data, base_dir, features=None, against=None) -> _Probe:
    p = D.resolve_path(src.path, base_dir)
    shown = D._check_file(p, role)
    fmt = D._format_of(p)
    header = None if fmt == "csv" else _input_header(p, fmt, src, shown)
    if header is not None:
        y, y_source, y_where = _labels(p, fmt, src, role, data, base_dir)
        if y is not None:
            return _Probe(role, src.pos, header[0], header[1], y, shown, y_source, y_where)
    # as training reads it: the whole file, with the readers' own messages
    raw = D._read_source(src, base_dir, data.label, role, features=features, against=against or "")
    return _Probe(role, src.pos, raw.x.shape, raw.x.dtype, raw.y, raw.source, raw.y_source, raw.y_where,
                  raw.feature_names)


def _input_header(p, fmt: str, src: ir.Source, shown: str):
    """``(shape, dtype)`` of the inputs from the file's header, or None (then read it whole)."""
    if fmt == "idx":
        return read_idx_header(p, shown)  # its errors are read_idx's
    if fmt == "npz":  # the one safe reader: headers checked, nothing else decompressed
        with open_regular(p) as f:
            return read_npz_header(f, shown, DataError, src.x_key)  # None: the full reader says why
    try:
        arr = np.load(p, mmap_mode="r", allow_pickle=False)  # .npy: maps the file, reads the header
        return tuple(arr.shape), arr.dtype
    except Exception:  # noqa: BLE001 - any failure: the full reader says what is wrong
        return None


def _labels(p, fmt: str, src: ir.Source, role: str, data: ir.Data, base_dir):
    """``(y, y_source, y_where)``: the labels in full; y None when they cannot be read on
    their own (the caller then reads the file as training does, which says why)."""
    shown = str(p)
    if src.labels is not None:
        lp = D.resolve_path(src.labels, base_dir)
        y_source = D._check_file(lp, f"{role} labels")
        y, y_where = D._read_labels_file(lp, y_source, data.label)
        return y, y_source, y_where
    if fmt == "npz":
        y = D._load_npz(p, shown, pick=lambda names: {src.y_key} & set(names)).get(src.y_key)
        if y is not None:
            return y, shown, (lambda i: f"array '{src.y_key}', sample {i}")
    return None, shown, (lambda i: f"sample {i}")
