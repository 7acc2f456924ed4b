"""``dlrun check --data``: a model's data files checked against the model before any training.

Every file of the data block is opened with its format's reader (``formats.reader_for``) and
checked with the package's checks; nothing is converted, preprocessed or split. What is read:

``.npy`` / ``.npz`` inputs, IDX images   the array's header only (shape and dtype)
labels (an ``.npz``'s label array, a ``labels=`` file)   in full: the classes are checked
``.csv``                                   in full (the label column is in the text; a text
                                           column's texts are read, not tokenized)

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
from dlrun.runtime.data import load
from dlrun.runtime.data.checks import check_input_layout, check_label_count
from dlrun.runtime.data.formats import check_file, open_source, resolve_path
from dlrun.runtime.data.labels import check_class_count, class_names, encode_labels, task_for_loss


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
    task = task_for_loss(model.loss.name)
    problems: list[tuple[ir.Pos, str]] = []
    probes: list[_Probe] = []
    features = against = None  # CSV features are matched by name against the training file's
    for role in ("train", "validation", "test"):
        src = getattr(data, role)
        if not isinstance(src, ir.Source):
            continue
        try:
            probe = _probe(src, role, data, base_dir, features, against, input_shape)
            if role == "train" and probe.feature_names is not None:
                features, against = probe.feature_names, f"the training file {probe.source}"
            check_input_layout(probe.shape, probe.dtype, input_shape, probe.source, data.layout)
            if probe.y is not None:
                check_label_count(probe.shape[0], probe.y, probe.source, probe.y_source)
            probes.append(probe)
        except DataError as err:
            problems.append((_statement_pos(err, src, data), str(err)))
    if problems:
        return problems, {}
    try:
        names = class_names(probes, task)
    except DataError as err:  # its messages start with the file they are about
        about = [p.pos for p in probes if str(err).startswith(p.y_source + ":")]
        return [(about[0] if about else data.pos, str(err))], {}
    try:
        if names is not None:
            check_class_count(names, task, n_outputs, probes[0].y_source)
    except DataError as err:
        return [(probes[0].pos, str(err))], {}
    for probe in probes:
        if probe.y is None:
            continue
        try:
            encode_labels(probe.y, task=task, n_outputs=n_outputs, class_names=names, shown=probe.y_source,
                          where=probe.y_where)
        except DataError as err:
            problems.append((probe.pos, str(err)))
    return problems, {p.role: int(p.shape[0]) for p in probes}


def _statement_pos(err: DataError, src: ir.Source, data: ir.Data) -> ir.Pos:
    if getattr(err, "statement", None) == "label" and data.label_pos.line:
        return data.label_pos
    if getattr(err, "statement", None) == "text" and "text" in data.settings_pos:
        return data.settings_pos["text"]
    return src.pos


def _probe(src: ir.Source, role: str, data: ir.Data, base_dir, features=None, against=None,
           input_shape=None) -> _Probe:
    p = resolve_path(src.path, base_dir)
    shown, reader = open_source(p, src.path, role, data.audio)
    if data.text is not None:  # texts: one row of input_shape token ids each, once tokenized
        raw = load.read_source(src, base_dir, data.label, role, text=data.text)
        return _Probe(role, src.pos, (raw.x.shape[0],) + tuple(input_shape), np.dtype(np.float32), raw.y,
                      raw.source, raw.y_source, raw.y_where)
    header = reader.read_header(p, shown, src)  # None: the file is read in full below
    if header is not None:
        y, y_source, y_where = _labels(p, reader, src, role, data, base_dir)
        if y is not None:
            return _Probe(role, src.pos, header[0], header[1], y, shown, y_source, y_where)
    # as training reads it: the whole file, with the readers' own messages
    raw = load.read_source(src, base_dir, data.label, role, features=features, against=against or "",
                           input_shape=input_shape, resize=data.resize, audio=data.audio)
    return _Probe(role, src.pos, raw.x.shape, raw.x.dtype, raw.y, raw.source, raw.y_source, raw.y_where,
                  raw.feature_names)


def _labels(p, reader, src: ir.Source, role: str, data: ir.Data, base_dir):
    """``(y, y_source, y_where)``: the labels in full; y None when they cannot be read on
    their own (the caller then reads the file as training does, which says why)."""
    shown = str(p)
    if src.labels is not None:
        lp = resolve_path(src.labels, base_dir)
        y_source = check_file(lp, f"{role} labels")
        y, y_where = load.read_labels_file(lp, y_source, data.label)
        return y, y_source, y_where
    own = reader.read_own_labels(p, shown, src)
    if own is not None:
        return own[0], shown, own[1]
    return None, shown, (lambda i: f"sample {i}")
