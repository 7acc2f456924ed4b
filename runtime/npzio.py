"""Reading ``.npz`` archives safely: every header checked before anything is decompressed.

``np.load`` allocates whatever shape a member's ``.npy`` header declares and decompresses
members in full, so a damaged or forged file asks for terabytes ("Unable to allocate 3.64
TiB") before any check can run. Here, for each member:

1. the zip entry's declared size is checked against the archive (a stored entry must fit in
   the file; a deflated one cannot expand more than deflate's ~1032:1);
2. the ``.npy`` header is read (magic, version 1.0/2.0, dtype, shape); object dtypes are
   refused (never unpickled);
3. the header's shape times the item size plus the header must equal the entry's declared
   size: a damaged shape is reported here, before any allocation;
4. only then is the array allocated and filled in pieces; reading to the end verifies the
   zip CRC.

``names`` restricts what is read: members nobody asked for are never decompressed.
"""
from __future__ import annotations

import math
import os
import zipfile
import zlib

import numpy as np

# deflate's best case is about 1032:1; anything declaring more is damaged or forged
_MAX_RATIO = 1040
_PIECE = 1 << 20


def read_npz(f, shown: str, error, what: str = ".npz file", names=None, check=None) -> dict:
    """The arrays of the ``.npz`` open as binary file ``f`` (name ``shown`` in messages).

    ``error``: the exception class raised for every problem (``DataError``, ``WeightsError``);
    ``names``: the array names to read (None: all), or a function from the names in the
    archive to those to read. ``check(name, shape, dtype)``: called with each header before
    its array is allocated (it raises to refuse, e.g. a shape that does not fit the model).
    """
    try:
        size = os.fstat(f.fileno()).st_size
    except (OSError, AttributeError, ValueError):
        size = None
    try:
        zf = zipfile.ZipFile(f)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError, OSError,
            NotImplementedError) as err:  # a zip feature (version, method) Python lacks
        raise error(f"{shown}: damaged or not a {what} ({type(err).__name__}: {_one_line(err)})") from None
    out = {}
    with zf:
        infos = [i for i in zf.infolist() if i.filename.endswith(".npy")]
        if callable(names):
            names = names([i.filename[: -len(".npy")] for i in infos])
        for info in infos:
            key = info.filename[: -len(".npy")]
            if names is not None and key not in names:
                continue
            out[key] = _member(zf, info, size, shown, error, what, check)
    return out


class _Header(Exception):
    """Carries a header out of ``read_npz`` before its array is allocated."""


def read_npz_header(f, shown: str, error, name: str, what: str = ".npz file"):
    """``(shape, dtype)`` of array ``name`` of the ``.npz`` open as ``f``, from its checked
    ``.npy`` header (nothing past the header is decompressed); None when there is no such
    array."""

    def stop(key, shape, dtype):
        raise _Header(shape, dtype)

    try:
        read_npz(f, shown, error, what, names={name}, check=stop)
    except _Header as got:
        return got.args
    return None


def _one_line(err) -> str:
    return " ".join(str(err).split())[:300]


def _damaged(shown, what, key, detail, error):
    return error(f"{shown}: damaged {what}: array '{key}' {detail}")


def _member(zf, info, size, shown, error, what, check=None):
    key = info.filename[: -len(".npy")]
    declared = info.file_size
    if info.compress_type == zipfile.ZIP_STORED:
        if declared != info.compress_size or (size is not None and info.header_offset + declared > size):
            raise _damaged(shown, what, key, f"declares {declared} bytes, more than the file holds", error)
    elif declared > info.compress_size * _MAX_RATIO + 1024:
        raise _damaged(shown, what, key, f"declares {declared} bytes from {info.compress_size} compressed", error)
    try:
        with zf.open(info) as m:
            version = np.lib.format.read_magic(m)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(m)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(m)
            else:
                raise ValueError(f"unsupported .npy version {version}")
            if dtype.hasobject:
                raise error(f"{shown}: holds a pickled object array ('{key}'); refused (dlrun never unpickles)")
            nbytes = math.prod(shape) * dtype.itemsize  # Python ints: no overflow
            header = m.tell()
            if header + nbytes != declared:
                shape_text = "x".join(map(str, shape)) or "scalar"
                raise _damaged(shown, what, key, f"has a header declaring shape {shape_text} ({nbytes} bytes) "
                               f"in a {declared}-byte entry", error)
            if check is not None:
                check(key, tuple(shape), dtype)
            arr = np.empty(shape[::-1] if fortran else shape, dtype=dtype)
            view = memoryview(arr.reshape(-1).view(np.uint8)) if nbytes else memoryview(b"")
            pos = 0
            while pos < nbytes:
                got = m.readinto(view[pos : min(pos + _PIECE, nbytes)])
                if not got:
                    raise EOFError("data ends early")
                pos += got
            m.read(1)  # at the end: the zip CRC is checked
    except error:
        raise
    except MemoryError:
        raise error(f"{shown}: not enough memory for array '{key}' ({declared} bytes)") from None
    except (zipfile.BadZipFile, zlib.error, EOFError, ValueError, OSError, NotImplementedError,
            SyntaxError, KeyError, TypeError) as err:
        raise error(f"{shown}: damaged or not a {what} ({type(err).__name__}: {_one_line(err)})") from None
    return arr.T if fortran else arr
