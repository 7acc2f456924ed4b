"""Validation and test splits held out of the training file, and what the weights keep of
the data they were trained on (``DataRecord``: feature names, the held-out rows, the seed,
``data_fingerprint`` of every split).

A split is drawn once, from the seed, stratified by class for classifiers; a model
evaluated on its weights uses the rows saved with them, and refuses data that no longer
match them (a test split holding training rows would report a wrong result).
"""
from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Mapping

import numpy as np

from dlrun.errors import DataError, DataWarning
from dlrun.runtime.data.arrays import chunk_rows
from dlrun.runtime.data.dataset import Dataset

if TYPE_CHECKING:
    from dlrun.runtime.data.tokens import Tokenizer

# held-out split -> its code in ``DataRecord.rows`` (0 = training)
SPLIT_CODES = {"validation": 1, "test": 2}
_ROLE_WORD = {"train": "training"}


@dataclass
class DataRecord:
    """What a weights file keeps of the data it was trained on (``weights.py`` stores it).

    ``feature_names``: the training CSV's feature columns, in the order the model reads them
    (None for other formats: their features are matched by position).
    ``files``: role -> ``(file, sha256)`` of every split read from a file, the sha256 being
    ``data_fingerprint`` of its inputs and labels as loaded; empty when nothing is known of
    the split (weights trained on arrays).
    ``fractions``: role -> fraction held out of the training file; ``split_seed`` the seed
    they were drawn with; ``rows``: one uint8 per row of the training file, 0 training,
    ``SPLIT_CODES[role]`` held out (None without fractions).
    ``origin``: where the record comes from, for messages (``'the weights W.npz'``).
    ``tokenizer``: a text model's ``tokens.Tokenizer`` (settings and vocabulary), else None;
    ``vocab_size`` its id count, the reserved ids 0 and 1 included.
    """

    feature_names: list[str] | None = None
    files: dict[str, tuple[str, str]] = field(default_factory=dict)
    fractions: dict[str, float] = field(default_factory=dict)
    split_seed: int | None = None
    rows: np.ndarray | None = None
    origin: str = "the weights"
    tokenizer: "Tokenizer | None" = None

    @property
    def vocab_size(self) -> int | None:
        return None if self.tokenizer is None else self.tokenizer.vocab_size


def data_fingerprint(*datasets) -> str:
    """sha256 of the inputs and targets of ``datasets`` (None entries skipped)."""
    h = hashlib.sha256()
    for ds in datasets:
        if ds is None:
            h.update(b"none")
            continue
        for a in (ds.x, ds.y):
            if a is None:
                h.update(b"none")
                continue
            a = np.ascontiguousarray(a)
            h.update(f"{a.dtype.str}{a.shape}".encode())
            h.update(memoryview(a).cast("B"))
    return h.hexdigest()


def split_positions(n: int, fractions: Mapping[str, float], strata: np.ndarray | None, seed: int):
    """Sorted row indices for each held-out split and for what stays in training.

    Rows are ordered by a permutation drawn from ``seed``; with ``strata`` (class codes) the
    fraction is taken within every class, so each split keeps the class proportions.
    """
    rng = np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFFFFFFFFFF, 0x5D17]))
    perm = rng.permutation(n)
    if strata is None:
        q = (np.arange(n) + 0.5) / n
    else:
        _, codes = np.unique(strata[perm], return_inverse=True)
        codes = codes.ravel()
        counts = np.bincount(codes)
        order = np.argsort(codes, kind="stable")
        starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
        rank = np.empty(n, dtype=np.int64)
        rank[order] = np.arange(n) - starts[codes[order]]
        q = (rank + 0.5) / counts[codes]
    # Held-out splits take the rows of lowest within-class quantile, in turn: exact totals
    # (round(f * n) rows each), class proportions kept to within one row per class.
    order = perm[np.lexsort((np.arange(n), q))]
    out = {}
    start = 0
    for role, f in fractions.items():
        k = int(np.floor(f * n + 0.5))
        out[role] = np.sort(order[start : start + k])
        start += k
    out["train"] = np.sort(order[start:])
    return out


def _compact_rows(x: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """``x[keep]`` for sorted ``keep``, built in place in ``x``'s own memory (no second copy).

    Row ``keep[k] >= k`` moves down to ``k``; a chunk's sources are gathered before its
    destinations are written, and earlier chunks only wrote below ``k``.
    """
    step = chunk_rows(x[0].nbytes)
    n = keep.shape[0]
    for s in range(0, n, step):
        e = min(s + step, n)
        x[s:e] = x[keep[s:e]]
    return x[:n]


def draw_split(ds: Dataset, fractions: Mapping[str, float], task: str, seed: int) -> dict[str, np.ndarray]:
    """``split_positions`` of ``ds``, stratified by its labels for a classifier."""
    n = len(ds)
    strata = None
    if ds.y is not None and task in ("classification", "binary"):
        strata = ds.y.reshape(n, -1)[:, 0]
    return split_positions(n, fractions, strata, seed)


def split_rows(pos: Mapping[str, np.ndarray], n: int) -> np.ndarray:
    """``DataRecord.rows`` of the positions ``split_positions`` returns."""
    rows = np.zeros(n, dtype=np.uint8)
    for role, code in SPLIT_CODES.items():
        if role in pos:
            rows[pos[role]] = code
    return rows


def saved_split(saved: DataRecord, fractions: Mapping[str, float]) -> dict[str, np.ndarray]:
    """The positions of a saved split (``DataRecord.rows``), as ``split_positions`` returns them."""
    rows = saved.rows
    out = {role: np.flatnonzero(rows == SPLIT_CODES[role]) for role in fractions}
    out["train"] = np.flatnonzero(rows == 0)
    return out


def _fractions_text(fractions: Mapping[str, float]) -> str:
    return ", ".join(f"{role} {fractions[role]:g}" for role in SPLIT_CODES if role in fractions) or "nothing"


def check_record(saved: DataRecord, files: Mapping[str, tuple[str, str]], fractions: Mapping[str, float],
                 n_train: int) -> bool:
    """Compare the data just loaded with the record of the weights; True when the saved
    split is to be used.

    The rows held out of the training file are only known for the data they were drawn
    from: other fractions, or a changed training file, are refused (a test split holding
    training rows would report a wrong result). A changed separate file is warned about.
    """
    if not saved.files:
        return False  # nothing known of the split (old weights, or trained on arrays)
    if dict(saved.fractions) != dict(fractions):
        raise DataError(
            f"{files['train'][0]}: the model file holds out {_fractions_text(fractions)} of the training "
            f"file, but {saved.origin} were trained holding out {_fractions_text(saved.fractions)}: "
            f"their validation/test split cannot be rebuilt (restore the data block, or train again)"
        )
    use = saved.rows is not None and bool(fractions)
    for role, (shown, sha) in files.items():
        if role not in saved.files:
            continue
        old_shown, old_sha = saved.files[role]
        if sha == old_sha:
            continue
        what = (f"the {_ROLE_WORD.get(role, role)} data differ from those {saved.origin} were trained on "
                f"(sha256 {sha[:16]} now, {old_sha[:16]} for {old_shown} then)")
        if role == "train" and use:
            raise DataError(f"{shown}: {what}: the validation/test rows held out of it cannot be rebuilt; "
                            f"evaluate on the data the weights were trained on, or train again")
        warnings.warn(f"{shown}: {what}", DataWarning, stacklevel=3)
    if use and saved.rows.shape != (n_train,):
        raise DataError(f"{files['train'][0]}: {n_train} samples, but the split saved in {saved.origin} "
                        f"covers {saved.rows.shape[0]}")
    return use


def split_off(ds: Dataset, pos: Mapping[str, np.ndarray], fractions: Mapping[str, float]) -> dict[str, Dataset]:
    """The held-out splits and what stays for training, at the positions ``pos``; the
    training inputs are compacted in place when they are writeable and contiguous."""
    n = len(ds)
    out = {}
    for role in fractions:
        idx = pos[role]
        if idx.shape[0] == 0:
            raise DataError(
                f"{ds.source}: {role} fraction {fractions[role]:g} of {n} samples leaves no {role} samples"
            )
        out[role] = Dataset(ds.x[idx], None if ds.y is None else ds.y[idx], f"{ds.source} ({role} split)")
    keep = pos["train"]
    if keep.shape[0] == 0:
        raise DataError(f"{ds.source}: no training samples left after the held-out fractions")
    x = ds.x
    if x.flags.writeable and x.flags.c_contiguous:
        x = _compact_rows(x, keep)
    else:
        x = x[keep]
    out["train"] = Dataset(x, None if ds.y is None else ds.y[keep], ds.source)
    return out
