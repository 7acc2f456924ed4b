"""MNIST for the benchmarks: IDX files (optionally ``.gz``) read straight into uint8 arrays.

    images (n, 784) uint8, 0 = background, 255 = ink;  labels (n,) uint8 in 0..9

The bytes are decompressed into a preallocated array (``readinto``), so loading costs the
uint8 size once and no temporary copy: every tool starts from the same resident data.
"""
from __future__ import annotations

import gzip
import os
import struct

import numpy as np

FILES = {
    "train_x": "train-images-idx3-ubyte",
    "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte",
    "test_y": "t10k-labels-idx1-ubyte",
}


class MnistMissing(Exception):
    """The MNIST folder or one of its four IDX files is absent."""


def find_file(folder: str, stem: str) -> str:
    """Path of ``stem`` or ``stem.gz`` in ``folder``; raises ``MnistMissing`` naming both."""
    for name in (stem, stem + ".gz"):
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            return path
    raise MnistMissing(f"{os.path.join(folder, stem)}[.gz] not found")


def check_folder(folder: str) -> None:
    """Raise ``MnistMissing`` unless all four IDX files are in ``folder``."""
    if not os.path.isdir(folder):
        raise MnistMissing(f"MNIST folder {folder} does not exist")
    for stem in FILES.values():
        find_file(folder, stem)


def read_idx(path: str) -> np.ndarray:
    """One IDX file as a uint8 array: images flattened to (n, rows*cols), labels (n,)."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        head = f.read(4)
        if len(head) != 4 or head[0] != 0 or head[1] != 0 or head[2] != 0x08:
            raise ValueError(f"{path}: not an unsigned-byte IDX file (magic {head.hex()})")
        ndim = head[3]
        dims = struct.unpack(">" + "I" * ndim, f.read(4 * ndim))
        shape = (dims[0], int(np.prod(dims[1:]))) if ndim > 1 else (dims[0],)
        out = np.empty(shape, dtype=np.uint8)
        view = memoryview(out.reshape(-1))
        got = 0
        while got < out.size:
            n = f.readinto(view[got:])
            if not n:
                raise ValueError(f"{path}: truncated, {got} of {out.size} data bytes")
            got += n
    return out


def load_mnist(folder: str, limit: int | None = None):
    """``(x_train, y_train, x_test, y_test)`` as uint8; ``limit`` keeps the first training rows."""
    check_folder(folder)
    data = [read_idx(find_file(folder, FILES[k])) for k in ("train_x", "train_y", "test_x", "test_y")]
    x_tr, y_tr, x_te, y_te = data
    if x_tr.shape[0] != y_tr.shape[0] or x_te.shape[0] != y_te.shape[0]:
        raise ValueError(f"{folder}: image and label counts differ")
    if limit is not None and limit < x_tr.shape[0]:
        x_tr = np.ascontiguousarray(x_tr[:limit])
        y_tr = np.ascontiguousarray(y_tr[:limit])
    return x_tr, y_tr, x_te, y_te
