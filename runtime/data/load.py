"""A model's data, as its ``data`` block names it: every file read by its format's reader,
checked against the model, split, fingerprinted, and the preprocessing fitted; and inputs
to predict on.

Everything is checked before training starts: missing, empty, unreadable or damaged files,
ragged CSV rows, non-numeric cells, NaN/Inf, the feature count against the model's ``input``,
labels against the output's classes, and input/label lengths. Each problem is one
``DataError`` whose message names the file and, where it applies, the line and column (CSV) or
the array index.
"""
from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np

from dlrun.dsl import ir
from dlrun.errors import DataError, DataWarning
from dlrun.runtime.data.checks import check_model_range, prepare_x
from dlrun.runtime.data.dataset import Splits, prepare, to_dataset
from dlrun.runtime.data.formats import READERS, check_file, open_source, reader_for, resolve_path
from dlrun.runtime.data.labels import check_class_count, check_held_out_classes, check_task, class_names
from dlrun.runtime.data.preprocess import Preprocessor
from dlrun.runtime.data.reader import Raw
from dlrun.runtime.data.tokens import Tokenizer, read_text_source, read_texts
from dlrun.runtime.data.split import (DataRecord, check_record, data_fingerprint, draw_split, saved_split,
                                      split_off, split_rows)


def read_source(src: ir.Source, base_dir, label: str | None, role: str, need_y: bool = True,
                features: Sequence[str] | None = None, against: str = "", input_shape=None,
                resize: str | None = None, text: str | None = None, audio=None) -> Raw:
    """One data file's raw arrays (its inputs, and its labels or those of its ``labels=``
    file); a CSV's features are the columns named ``features`` (all but the label when
    None), matched by name against those of ``against`` (messages). ``resize``: the data
    block's (image folders). ``text``: the data block's text column: the inputs are then
    the column's texts, a str array (``tokens.read_text_source``). ``audio``: the data
    block's (folders of clips)."""
    p = resolve_path(src.path, base_dir)
    shown, reader = open_source(p, src.path, role, audio)
    if text is not None:
        if reader is not READERS["csv"]:
            raise DataError(f"{shown}: texts are read from a CSV file's text column '{text}'; got {reader.noun}")
        return read_text_source(p, shown, text, label, need_y)
    raw = reader.read(p, shown, src, label=label, need_y=need_y, features=features, against=against,
                      input_shape=input_shape, resize=resize)
    if src.labels is not None:
        lp = resolve_path(src.labels, base_dir)
        raw.y_source = check_file(lp, f"{role} labels")
        raw.y, raw.y_where = read_labels_file(lp, raw.y_source, label)
    elif raw.y is None and need_y:
        raise DataError(f'{shown}: {reader.noun} need a labels file: write {role} "{src.path}" labels="FILE"')
    return raw


def read_labels_file(p, shown: str, label: str | None):
    """Labels from a separate (``labels=``) file: ``(array, where)``."""
    return reader_for(p).read_labels(p, shown, label)


def load_splits(data: ir.Data | None, *, base_dir, input_shape: tuple, n_outputs: int, task: str,
                seed: int, saved: DataRecord | None = None, dtype=None) -> Splits:
    """Load train/validation/test as the data block says, check them, fit the preprocessing.

    Fractions are split off the training file with a permutation from ``seed``, stratified by
    class for classifiers. Relative paths resolve against ``base_dir``. CSV features are
    matched by header name against the training file's (or ``saved``'s) columns.

    ``saved``: the record of the weights being evaluated: its feature names are the ones
    read, its split is used instead of a new one, and the data are checked against its
    fingerprints (see ``split.check_record``). ``dtype``: the model's; every split is checked
    against its range after preprocessing (``check_model_range``).
    """
    check_task(task)
    if data is None or data.train is None:
        raise DataError('the model file names no training data (add `data { train "FILE" ... }`)')
    input_shape = tuple(int(d) for d in input_shape)
    features = saved.feature_names if saved is not None else None
    against = saved.origin if features is not None else ""
    text = data.text
    raws = {"train": read_source(data.train, base_dir, data.label, "train", features=features, against=against,
                                  input_shape=input_shape, resize=data.resize, text=text, audio=data.audio)}
    if features is None and raws["train"].feature_names is not None:
        features = raws["train"].feature_names
        against = f"the training file {raws['train'].source}"
    fractions: dict[str, float] = {}
    for role in ("validation", "test"):
        value = getattr(data, role)
        if isinstance(value, ir.Source):
            raws[role] = read_source(value, base_dir, data.label, role, features=features, against=against,
                                      input_shape=input_shape, resize=data.resize, text=text, audio=data.audio)
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
        prepare(raw, input_shape, data.layout)
    names = class_names(raws.values(), task)
    if names is not None:
        check_held_out_classes(raws, names, task, n_outputs)
        check_class_count(names, task, n_outputs, raws["train"].y_source)
    sets = {role: to_dataset(raw, input_shape=input_shape, n_outputs=n_outputs, task=task, class_names=names,
                             layout=data.layout)
            for role, raw in raws.items()}
    feature_names = raws["train"].feature_names
    wheres = {role: (raw.source, raw.x_where) for role, raw in raws.items()}
    del raws
    files = {role: (ds.source, data_fingerprint(ds)) for role, ds in sets.items()}
    n_train = len(sets["train"])
    record = DataRecord(feature_names, files, dict(fractions), int(seed) if fractions else None,
                        origin=f"the weights trained on {files['train'][0]}")
    if fractions:
        if saved is not None and check_record(saved, files, fractions, n_train):
            pos = saved_split(saved, fractions)
            record.split_seed = saved.split_seed
            if saved.split_seed is not None and int(seed) != saved.split_seed:
                warnings.warn(f"the validation/test split is the one saved with {saved.origin} (drawn with "
                              f"seed {saved.split_seed}); the model file's seed {int(seed)} does not "
                              f"re-draw it", DataWarning, stacklevel=3)
        else:
            pos = draw_split(sets["train"], fractions, task, seed)
        record.rows = split_rows(pos, n_train)
        sets.update(split_off(sets["train"], pos, fractions))
    elif saved is not None:
        check_record(saved, files, fractions, n_train)
    if text is not None:
        record.tokenizer = tokenize_splits(sets, data, input_shape, saved, dtype)
    pre = Preprocessor(data.preprocess, bands=band_groups(data, input_shape), target=data.target).fit(
        sets["train"].x, source=sets["train"].source).fit_targets(sets["train"].y, source=sets["train"].source)
    if dtype is not None:
        for role, ds in sets.items():
            shown, where = wheres.get(role, wheres["train"])
            check_model_range(ds.x, pre, dtype, shown, where, pos.get(role) if fractions else None)
    return Splits(sets["train"], sets.get("validation"), sets.get("test"), names, pre, record)


def tokenize_splits(sets: dict, data: ir.Data, input_shape, saved: DataRecord | None, dtype) -> Tokenizer:
    """Every split's texts as token ids, in place; the tokenizer (``saved``'s, or the data
    block's fitted on the training split). Each split reports once what was cut, left out of
    the vocabulary (not the training split's: those are the vocabulary's caps) or empty."""
    tok = saved.tokenizer if saved is not None and saved.tokenizer is not None else None
    if tok is None:
        tok = Tokenizer.from_ir(data.tokens, input_shape).fit(sets["train"].x)
    dt = np.dtype(dtype if dtype is not None else np.float32)
    for role, ds in sets.items():
        ds.x = tok.encode(ds.x, dt, source=ds.source, count_oov=role != "train")
        ds.vocab_size = tok.vocab_size
    return tok


def band_groups(data: ir.Data, input_shape):
    """The band of each input value when the data block reads audio features (``standardize
    per=band`` pools over them), else None."""
    if data.audio is None:
        return None
    from dlrun.dsl.audio import order_of
    from dlrun.runtime.data.features import Features

    order = order_of(data.audio, input_shape)
    return Features(data.audio).band_groups(order) if order is not None else None


def input_names(path, base_dir=None, audio=None) -> list[str] | None:
    """The names of the samples ``load_inputs(path)`` reads, in its order, when its format
    names them (an image file, the images of a folder, WAV clips), else None."""
    p = resolve_path(path, base_dir)
    shown, reader = open_source(p, path, "input", audio)
    return reader.sample_names(p, shown)


def input_texts(path, text: str | None, base_dir=None):
    """``(texts, shown)``: the texts a text model predicts on in ``path`` (a CSV's ``text``
    column or a ``.txt`` file's lines; see ``tokens.read_texts``)."""
    p = resolve_path(path, base_dir)
    shown, reader = open_source(p, path, "input")
    return read_texts(p, shown, reader, text), shown


def load_inputs(path, *, input_shape, label: str | None = None, base_dir=None,
                feature_names: Sequence[str] | None = None, against: str = "the training data",
                pre: "Preprocessor | None" = None, dtype=None, layout: str | None = None,
                resize: str | None = None, tokenizer: Tokenizer | None = None,
                text: str | None = None, audio=None) -> np.ndarray:
    """Inputs to predict on: ``.npz`` (array ``x`` or the only array), ``.npy``, ``.csv`` (header;
    the ``label`` column dropped if present), or IDX images; checked against ``input_shape``.

    ``feature_names``: the training columns (``DataRecord.feature_names``); a CSV's columns
    are then matched by name (see ``csv.columns_by_name``; ``against`` names their origin),
    otherwise by position. ``pre`` and ``dtype``: the fitted preprocessing and the model's
    dtype; the inputs are checked against its range after preprocessing (``check_model_range``).
    ``layout``: the data block's (how image samples are ordered; ``checks.input_reading``);
    ``resize``: the data block's (image files of another size). An image file is one
    sample; a folder, every image in it (``sample_names`` lists them in order).
    ``tokenizer``: a text model's (the inputs are then a CSV's ``text`` column or a ``.txt``
    file's lines, as token ids in ``dtype``). ``audio``: the data block's; a WAV file is
    then one clip, a folder every clip in it.
    """
    p = resolve_path(path, base_dir)
    shown, reader = open_source(p, path, "input", audio)
    if tokenizer is not None:
        texts = read_texts(p, shown, reader, text)
        return tokenizer.encode(texts, np.dtype(dtype if dtype is not None else np.float32), source=shown)
    input_shape = tuple(int(d) for d in input_shape)
    x, where = reader.read_inputs(p, shown, label=label, feature_names=feature_names, against=against,
                                  input_shape=input_shape, resize=resize)
    x = prepare_x(x, input_shape, shown, where, layout)
    if pre is not None and dtype is not None:
        check_model_range(x, pre, dtype, shown, where)
    return x
