"""``.npy`` files: one array, read with ``np.load`` without pickle.

As a source it holds inputs only (its labels come from a ``labels=`` file); as a labels file,
the labels. ``numpy_load`` is also the fallback of ``npz.py`` for a file that is no zip.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from dlrun.errors import DataError
from dlrun.fileopen import NotReadable, open_regular
from dlrun.runtime.data.reader import Raw, Reader, array_where, sample_where
from dlrun.runtime.data.text import one_line


def starts_like(p: Path, magics) -> bool:
    """Whether the file starts with one of ``magics`` (zip, .npy, or a pickle's PROTO opcode)."""
    try:
        with open_regular(p) as f:
            head = f.read(8)
    except (OSError, NotReadable):
        return True
    return head.startswith(tuple(magics))


def numpy_load(p: Path, shown: str, kind: str):
    """``np.load`` without pickle; every failure to parse the bytes becomes a DataError."""
    try:
        with open_regular(p) as f:
            loaded = np.load(f, allow_pickle=False)
            if isinstance(loaded, np.lib.npyio.NpzFile):
                with loaded as z:
                    return {k: z[k] for k in z.files}  # members are read (and CRC-checked) here
            return loaded
    except ValueError as err:
        if "allow_pickle" in str(err) and not starts_like(p, (b"PK", b"\x93NUMPY", b"\x80")):
            # np.load tries pickle for any file that is neither a zip nor an .npy
            raise DataError(f"{shown}: not an {kind} file (neither a zip archive nor an .npy array)") from None
        if "allow_pickle" in str(err) or "Object arrays" in str(err):
            raise DataError(
                f"{shown}: holds a pickled object array, which dlrun refuses to load "
                f"(save plain numeric or string arrays)"
            ) from None
        raise DataError(f"{shown}: cannot read as {kind}: {one_line(err)}") from None
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
        raise DataError(f"{shown}: damaged or truncated {kind} file ({type(err).__name__}: {one_line(err)})") from None


def load_npy(p: Path, shown: str) -> np.ndarray:
    """The array of an ``.npy`` file."""
    arr = numpy_load(p, shown, ".npy")
    if not isinstance(arr, np.ndarray):
        raise DataError(f"{shown}: expected one array in a .npy file")
    return arr


class NpyReader(Reader):
    """``.npy``: inputs only (labels from ``labels=``), or a labels file."""

    name = "npy"
    noun = ".npy inputs"

    def read(self, p, shown, src, *, label, need_y, features, against, input_shape, resize=None):
        return Raw(load_npy(p, shown), None, shown, shown, array_where("x"), sample_where)

    def read_labels(self, p, shown, label):
        return load_npy(p, shown), sample_where

    def read_inputs(self, p, shown, *, label, feature_names, against, input_shape, resize=None):
        return load_npy(p, shown), array_where("x")

    def read_header(self, p, shown, src):
        try:
            arr = np.load(p, mmap_mode="r", allow_pickle=False)  # maps the file, reads the header
            return tuple(arr.shape), arr.dtype
        except Exception:  # noqa: BLE001 - any failure: the full reader says what is wrong
            return None


READER = NpyReader()
