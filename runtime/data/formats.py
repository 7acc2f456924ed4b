"""The registry of data formats: format name -> its ``Reader``, and a data file -> its reader.

A file's format follows from its name by ``dsl/dataformats.py``'s rule, the one the checker
applies before any data is loaded; the readers are keyed by those names (a test holds the
two sets equal). Only a format's own module knows the format: callers ask ``reader_for``.
"""
from __future__ import annotations

import os
from pathlib import Path

from dlrun.dsl.dataformats import DATA_FORMATS, data_format, is_folder_name
from dlrun.errors import DataError
from dlrun.fileopen import NotReadable, check_regular
from dlrun.runtime.data import audio as sound, csv, idx, images, npy, npz, txt
from dlrun.runtime.data.reader import Reader

#: format name (a key of ``dsl.dataformats.FORMATS``) -> its reader
READERS: dict[str, Reader] = {r.name: r for r in (npz.READER, npy.READER, csv.READER, idx.READER,
                                                  images.FOLDER_READER, images.FILE_READER, txt.READER,
                                                  sound.FOLDER_READER, sound.FILE_READER)}


def reader_for(p: Path) -> Reader:
    """The reader of the data file ``p``, by its name; DataError for an unknown format."""
    fmt = data_format(p.name)
    if fmt is None:
        raise DataError(f"{p}: unknown data format (expected {', '.join(DATA_FORMATS)})")
    return READERS[fmt]


def resolve_path(path, base_dir=None) -> Path:
    """``path`` with ``~`` expanded; a relative path is taken relative to ``base_dir``."""
    p = Path(os.path.expanduser(str(path)))
    if not p.is_absolute() and base_dir is not None:
        p = Path(base_dir) / p
    return p


def open_source(p: Path, written, role: str | None = None, audio=None) -> tuple[str, Reader]:
    """``(shown, reader)`` of the data file or image folder ``p`` (``written``: the path as
    given; ``Path`` drops the trailing '/' that names a folder). A folder is an image folder
    when written with a trailing '/', or when its name names no file format (``predict
    --input pets/test``); any other path must be a readable, non-empty file (``check_file``).
    ``audio``: the data block's (``ir.Audio``); with it a folder is a folder of WAV clips, and
    the WAV readers are built for it."""
    if is_folder_name(written) or (p.is_dir() and data_format(p.name) is None):
        shown = os.path.normpath(str(p)) + "/"
        what = f" ({role} data)" if role else ""
        kind = "folder of clips" if audio is not None else "image folder"
        if not p.is_dir():
            raise DataError(f"{shown}: {kind} not found{what}" if not p.exists()
                            else f"{shown}: not a folder{what}; a path ending in '/' names an {kind}")
        if audio is not None:
            return shown, READERS["audiofolder"].with_audio(audio)
        return shown, READERS["imagefolder"]
    shown, reader = check_file(p, role), reader_for(p)
    return shown, (reader.with_audio(audio) if audio is not None else reader)


def check_file(p: Path, role: str | None = None) -> str:
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
