"""Damaged data files of every format give a DataError (or load), never another exception."""
import gzip
import io
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dlrun.dsl import ir
from dlrun.errors import DataError
from dlrun.runtime import data as D

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _npz_bytes():
    buf = io.BytesIO()
    np.savez(buf, x=np.arange(24, dtype=np.float32).reshape(6, 4), y=np.array([0, 1, 2, 0, 1, 2]))
    return buf.getvalue()


def _npz_compressed_bytes():
    buf = io.BytesIO()
    np.savez_compressed(buf, x=np.arange(24, dtype=np.float64).reshape(6, 4),
                        y=np.array(["cat", "dog", "emu", "cat", "dog", "emu"]))
    return buf.getvalue()


def _npy_bytes():
    buf = io.BytesIO()
    np.save(buf, np.arange(24, dtype=np.float64).reshape(6, 4))
    return buf.getvalue()


def _idx_bytes(gz):
    images = np.arange(6 * 4, dtype=np.uint8).reshape(6, 2, 2)
    raw = struct.pack(">BBBBIII", 0, 0, 8, 3, 6, 2, 2) + images.tobytes()
    return gzip.compress(raw) if gz else raw


CSV = b"a,b,c,d,species\n1,2,3,4,cat\n2,3,4,5,dog\n3,4,5,6,emu\n4,5,6,7,cat\n"
SEEDS = {
    "d.csv": CSV,
    "d.npz": _npz_bytes(),
    "c.npz": _npz_compressed_bytes(),
    "x.npy": _npy_bytes(),
    "im-idx3-ubyte": _idx_bytes(False),
    "im-idx3-ubyte.gz": _idx_bytes(True),
}


def _mutate(data, edits, cut):
    b = bytearray(data)
    for pos, value in edits:
        if b:
            b[pos % len(b)] = value
    return bytes(b[: max(0, len(b) - cut)])


def _try_load(tmp_path, name, blob):
    p = tmp_path / name
    p.write_bytes(blob)
    labels = None
    if "idx" in name:
        labels = tmp_path / "lb-idx1-ubyte"
        labels.write_bytes(struct.pack(">BBBBI", 0, 0, 8, 1, 6) + bytes([0, 1, 2, 0, 1, 2]))
    elif name.endswith(".npy"):
        labels = tmp_path / "labels.npy"
        np.save(labels, np.array([0, 1, 2, 0, 1, 2]))
    data = ir.Data(train=ir.Source(str(p), labels=None if labels is None else str(labels)),
                   validation=0.34, label="species", preprocess=(ir.Preprocess("standardize"),))
    try:
        s = D.load_splits(data, base_dir=None, input_shape=(4,), n_outputs=3, task="classification", seed=0)
    except DataError as err:
        assert "\n" not in str(err) and name in str(err), str(err)
        return
    assert s.train.x.shape[1:] == (4,)
    assert np.isfinite(s.preprocessor.transform(s.train.x, np.float64)).all()


@pytest.mark.parametrize("name", list(SEEDS))
@SETTINGS
@given(edits=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=6),
       cut=st.integers(0, 40))
def test_mutated_files_fail_cleanly(tmp_path, name, edits, cut):
    _try_load(tmp_path, name, _mutate(SEEDS[name], edits, cut))


@SETTINGS
@given(text=st.text(alphabet=st.sampled_from(list("0123456789.,-e \n\"abnif")), max_size=200))
def test_random_csv_text_fails_cleanly(tmp_path, text):
    _try_load(tmp_path, "r.csv", ("a,b,c,d,species\n" + text).encode())
