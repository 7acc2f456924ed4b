"""runtime/npzio: the one .npz reader (headers checked before anything is decompressed)."""
import io
import zipfile

import numpy as np
import pytest

from dlrun.errors import DataError
from dlrun.runtime.npzio import read_npz, read_npz_header


def _npz(**arrays) -> io.BytesIO:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    buf.seek(0)
    return buf


def test_header_is_read_without_the_array():
    f = _npz(x=np.zeros((7, 3), np.float32), y=np.arange(7))
    assert read_npz_header(f, "a.npz", DataError, "x") == ((7, 3), np.dtype(np.float32))
    f.seek(0)
    assert read_npz_header(f, "a.npz", DataError, "missing") is None


def test_header_of_a_forged_shape_is_damaged_not_allocated():
    # a member whose .npy header declares 10**12 rows in a few hundred bytes
    head = io.BytesIO()
    np.lib.format.write_array_header_1_0(head, {"descr": "<f8", "fortran_order": False, "shape": (10**12, 8)})
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("x.npy", head.getvalue() + b"\0" * 64)
    for read in (lambda f: read_npz_header(f, "f.npz", DataError, "x"), lambda f: read_npz(f, "f.npz", DataError)):
        buf.seek(0)
        with pytest.raises(DataError, match="f.npz: damaged .npz file: array 'x' has a header declaring shape"):
            read(buf)


def test_only_the_named_arrays_are_read():
    f = _npz(x=np.ones(4), big=np.zeros(10))
    assert set(read_npz(f, "a.npz", DataError, names={"x"})) == {"x"}


def test_a_zip_needing_a_newer_version_is_refused_cleanly():
    # the central directory says "version 6.4 needed to extract": Python's zipfile raises
    # NotImplementedError, which must become the usual message
    buf = io.BytesIO()
    np.savez(buf, x=np.zeros(3))
    raw = bytearray(buf.getvalue())
    central = raw.index(b"PK\x01\x02")
    raw[central + 6:central + 8] = (64).to_bytes(2, "little")
    with pytest.raises(DataError, match="damaged or not a .npz file"):
        read_npz(io.BytesIO(bytes(raw)), "d.npz", DataError)
