"""Passes over whole data sets, in chunks: a uint8 image set is never copied as floats.

``CHUNK_BYTES`` is the one chunk size of the data package (finite checks, range checks,
the in-place split, the preprocessing statistics and transform); ``chunk_rows`` turns it
into rows.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

# rows per chunk when a pass over a whole data set is needed: about this many float64 bytes
CHUNK_BYTES = 8 << 20


def chunk_rows(row_bytes: int) -> int:
    """Rows per chunk for rows of ``row_bytes`` bytes (at least 1)."""
    return max(1, CHUNK_BYTES // max(1, row_bytes))


def sample_size(shape: Sequence[int]) -> int:
    """Values per sample of a per-sample ``shape`` (1 for a scalar)."""
    return int(np.prod(shape, dtype=np.int64)) if len(shape) else 1


def first_nonfinite(x2: np.ndarray):
    """(row, column, value) of the first NaN/Inf in a 2-D float array, or None (chunked)."""
    step = chunk_rows(x2.shape[1] * 8)
    for s in range(0, x2.shape[0], step):
        ok = np.isfinite(x2[s : s + step])
        if not ok.all():
            r, c = np.argwhere(~ok)[0]
            return s + int(r), int(c), x2[s + int(r), int(c)]
    return None
