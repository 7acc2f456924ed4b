"""IDX files (the format MNIST ships in), plain or gzip-compressed: ``*-idx3-ubyte`` images,
``*-idx1-ubyte`` labels, ``*.idx`` (names: ``dsl/dataformats.py``). Images stay uint8.

As a source an IDX file holds inputs only (labels come from ``labels=``, usually the
``*-idx1-ubyte`` file); as a labels file, the labels.

Layout, big-endian: two zero bytes, a type code, the number of dimensions ``d``, then ``d``
uint32 sizes, then the values in row-major order::

    train-images-idx3-ubyte   00 00 08 03 | 60000 | 28 | 28 | 60000*28*28 uint8
    train-labels-idx1-ubyte   00 00 08 01 | 60000 | 60000 uint8

The values are read straight into one preallocated array in fixed-size pieces, so a
gzip-compressed file needs its uncompressed size in memory plus one piece, never two
copies of the data.
"""
from __future__ import annotations

import contextlib
import gzip
import math
import os
import struct
import zlib

import numpy as np

from dlrun.errors import DataError
from dlrun.fileopen import NotReadable, open_regular
from dlrun.runtime.data.checks import header_check
from dlrun.runtime.data.reader import Raw, Reader, sample_where

# type code -> numpy dtype of the stored values (big-endian)
_TYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

# decompress in pieces of this many bytes (keeps the transient copy small)
_PIECE = 1 << 20


@contextlib.contextmanager
def _open(path, compressed: bool, shown: str):
    """The file (a regular one only: see ``dlrun.fileopen``), decompressed when ``.gz``."""
    try:
        f = open_regular(path)
    except NotReadable as err:
        raise DataError(f"{shown}: {err.reason('data file')}") from None
    with f:
        if compressed:
            with gzip.GzipFile(fileobj=f, mode="rb") as g:
                yield g
        else:
            yield f


def _read_exact(f, n: int) -> bytes:
    out = bytearray()
    while len(out) < n:
        piece = f.read(n - len(out))
        if not piece:
            break
        out += piece
    return bytes(out)


def read_idx(path, shown: str | None = None, check=None) -> np.ndarray:
    """The array stored in the IDX file ``path``, shape as in its header, native byte order.

    uint8 data stays uint8. ``shown`` is the name used in error messages (default: ``path``).
    Raises ``DataError`` for a bad header, a truncated or over-long file, or broken gzip data.
    ``check(shape, dtype)`` is called with the header's declared shape before any value is
    read or decompressed (it raises to refuse, e.g. a shape that does not fit the model).
    """
    shown = str(path) if shown is None else shown
    compressed = str(path).lower().endswith(".gz")
    try:
        size = os.stat(path).st_size
        # the most bytes the data can hold: the file itself, or deflate's ~1032:1 ratio
        limit = size * 1040 + 1024 if compressed else size
        with _open(path, compressed, shown) as f:
            return _read_idx_stream(f, shown, limit, compressed, check)
    except DataError:
        raise
    except (EOFError, gzip.BadGzipFile, zlib.error) as err:
        raise DataError(f"{shown}: damaged or truncated gzip data ({' '.join(str(err).split())})") from None
    except MemoryError:
        raise DataError(f"{shown}: not enough memory to load this IDX file") from None
    except OSError as err:
        raise DataError(f"{shown}: cannot read file ({err.strerror or err})") from None


def read_idx_header(path, shown: str | None = None) -> tuple[tuple[int, ...], np.dtype]:
    """``(shape, dtype)`` from an IDX file's header, without reading its values.

    An uncompressed file's size is checked against the header too; a ``.gz`` file's data
    is only checked when it is read (``read_idx``). Raises ``DataError`` like ``read_idx``.
    """
    shown = str(path) if shown is None else shown
    compressed = str(path).lower().endswith(".gz")
    try:
        size = os.stat(path).st_size
        with _open(path, compressed, shown) as f:
            dtype, dims = _read_header(f, shown)
    except DataError:
        raise
    except (EOFError, gzip.BadGzipFile, zlib.error) as err:
        raise DataError(f"{shown}: damaged or truncated gzip data ({' '.join(str(err).split())})") from None
    except OSError as err:
        raise DataError(f"{shown}: cannot read file ({err.strerror or err})") from None
    header, nbytes = 4 + 4 * len(dims), math.prod(dims) * dtype.itemsize
    if not compressed and header + nbytes != size:  # the same messages as _read_idx_stream's
        shape = "x".join(map(str, dims))
        if header + nbytes > size:
            raise DataError(f"{shown}: truncated IDX file: the header declares {shape} values ({nbytes} bytes) "
                            f"but the data ends after {max(0, size - header)} bytes")
        raise DataError(f"{shown}: IDX file is longer than its header declares ({shape} values); damaged file?")
    return dims, dtype.newbyteorder("=")


def _read_header(f, shown: str):
    """``(dtype, dims)`` of the stream's IDX header (the stream is left at the values)."""
    head = _read_exact(f, 4)
    if len(head) < 4:
        raise DataError(f"{shown}: not an IDX file (only {len(head)} bytes; expected a 4-byte magic number)")
    if head[0] != 0 or head[1] != 0 or head[2] not in _TYPES or head[3] == 0:
        raise DataError(
            f"{shown}: not an IDX file (magic number {head.hex()}; expected 000008dd, e.g. "
            f"00000803 for images or 00000801 for labels)"
        )
    dtype, ndim = _TYPES[head[2]], head[3]
    raw = _read_exact(f, 4 * ndim)
    if len(raw) < 4 * ndim:
        raise DataError(f"{shown}: truncated IDX header (expected {ndim} dimension sizes)")
    return dtype, struct.unpack(">" + "I" * ndim, raw)


def _read_idx_stream(f, shown: str, limit: int, compressed: bool, check=None) -> np.ndarray:
    dtype, dims = _read_header(f, shown)
    if check is not None:
        check(tuple(dims), dtype.newbyteorder("="))
    ndim = len(dims)
    nbytes = math.prod(dims) * dtype.itemsize  # Python ints: no overflow
    header = 4 + 4 * ndim
    if header + nbytes > limit:
        shape = "x".join(map(str, dims))
        if compressed:
            raise DataError(
                f"{shown}: truncated or damaged IDX file: the header declares {shape} values "
                f"({nbytes} bytes), more than the compressed file can hold"
            )
        raise DataError(
            f"{shown}: truncated IDX file: the header declares {shape} values ({nbytes} bytes) "
            f"but the data ends after {max(0, limit - header)} bytes"
        )
    buf = np.empty(nbytes, dtype=np.uint8)
    view = memoryview(buf)
    pos = 0
    while pos < nbytes:
        got = f.readinto(view[pos : min(pos + _PIECE, nbytes)])
        if not got:
            break
        pos += got
    if pos < nbytes:
        shape = "x".join(map(str, dims))
        raise DataError(
            f"{shown}: truncated IDX file: the header declares {shape} values ({nbytes} bytes) "
            f"but the data ends after {pos} bytes"
        )
    if f.read(1):
        shape = "x".join(map(str, dims))
        raise DataError(f"{shown}: IDX file is longer than its header declares ({shape} values); damaged file?")
    arr = buf.view(dtype).reshape(dims)
    if not dtype.isnative and dtype.itemsize > 1:
        arr = arr.astype(dtype.newbyteorder("="))
    return arr


def _image_where(i: int, j: int) -> str:
    return f"image {i}, value {j}"


class IdxReader(Reader):
    """IDX: images as inputs (labels from ``labels=``), or a labels file."""

    name = "idx"
    noun = "IDX images"

    def read(self, p, shown, src, *, label, need_y, features, against, input_shape, resize=None):
        x = read_idx(p, shown, check=header_check(input_shape, shown))
        return Raw(x, None, shown, shown, _image_where, sample_where)

    def read_labels(self, p, shown, label):
        return read_idx(p, shown), sample_where

    def read_inputs(self, p, shown, *, label, feature_names, against, input_shape, resize=None):
        return read_idx(p, shown, check=header_check(input_shape, shown)), _image_where

    def read_header(self, p, shown, src):
        return read_idx_header(p, shown)  # its errors are read_idx's


READER = IdxReader()
