"""Data loading: every format, path resolution, splits, preprocessing, and every bad-data case."""
import gzip
import os
import struct
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from dlrun.dsl import ir
from dlrun.errors import DataError, UsageError, WeightsError
from dlrun.runtime import data as D
from dlrun.dsl.dataformats import is_idx_name
from dlrun.runtime.data.idx import read_idx

MNIST = Path(__file__).parents[2].parent / "shared/data/mnist"
MODELS = Path(__file__).parents[2] / "models"


# ---------------------------------------------------------------------------------------------
# helpers


def write_idx(path, arr, compress=None):
    arr = np.asarray(arr)
    code = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09, np.dtype(np.int16): 0x0B,
            np.dtype(np.int32): 0x0C, np.dtype(np.float32): 0x0D, np.dtype(np.float64): 0x0E}[arr.dtype]
    head = bytes([0, 0, code, arr.ndim]) + struct.pack(">" + "I" * arr.ndim, *arr.shape)
    payload = head + arr.astype(arr.dtype.newbyteorder(">")).tobytes()
    compress = str(path).endswith(".gz") if compress is None else compress
    Path(path).write_bytes(gzip.compress(payload) if compress else payload)
    return Path(path)


def write_csv(path, text):
    Path(path).write_text(text)
    return Path(path)


def src(path, **kw):
    return ir.Source(str(path), **kw)


def load(train, *, input_shape=(4,), n_outputs=3, task="classification", seed=0, base_dir=None,
         validation=None, test=None, label=None, preprocess=()):
    data = ir.Data(train=train if isinstance(train, ir.Source) else src(train), validation=validation,
                   test=test, label=label, preprocess=tuple(preprocess))
    return D.load_splits(data, base_dir=base_dir, input_shape=input_shape, n_outputs=n_outputs,
                         task=task, seed=seed)


def data_error(fn, *fragments):
    """Run fn, expect a one-line DataError containing every fragment; return the message."""
    with pytest.raises(DataError) as info:
        fn()
    msg = str(info.value)
    assert "\n" not in msg, msg
    for frag in fragments:
        assert frag in msg, f"{frag!r} not in {msg!r}"
    return msg


IRIS_LIKE = (
    "a,b,c,d,species\n"
    "1,2,3,4,cat\n"
    "2,3,4,5,dog\n"
    "3,4,5,6,cat\n"
    "4,5,6,7,emu\n"
)


# ---------------------------------------------------------------------------------------------
# formats


def test_task_for_loss():
    assert D.task_for_loss("cross_entropy") == "classification"
    assert D.task_for_loss("binary_cross_entropy") == "binary"
    for name in ("mse", "mae", "huber"):
        assert D.task_for_loss(name) == "regression"
    with pytest.raises(UsageError, match="known: "):
        D.task_for_loss("hinge")


def test_npz_loads_x_and_y(tmp_path):
    x = np.arange(24, dtype=np.float32).reshape(6, 4)
    y = np.array([0, 1, 2, 0, 1, 2], dtype=np.uint8)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    s = load(tmp_path / "d.npz")
    assert s.train.x.dtype == np.float32 and s.train.x.shape == (6, 4)
    np.testing.assert_array_equal(s.train.x, x)
    assert s.train.y.dtype == np.int64
    np.testing.assert_array_equal(s.train.y, y)
    assert s.validation is None and s.test is None and s.class_names is None
    assert str(tmp_path / "d.npz") in s.train.source


def test_npz_named_keys_and_shape_reshape(tmp_path):
    # images stored 2x2 per sample, model input 4 -> flattened; int inputs become float64
    np.savez(tmp_path / "d.npz", images=np.arange(12).reshape(3, 2, 2), targets=np.array([[1], [0], [2]]))
    s = load(src(tmp_path / "d.npz", x_key="images", y_key="targets"))
    assert s.train.x.shape == (3, 4) and s.train.x.dtype == np.float64
    assert s.train.y.tolist() == [1, 0, 2]
    # and the other way round: flat features reshaped to a 2x2 input
    s = load(src(tmp_path / "d.npz", x_key="images", y_key="targets"), input_shape=(2, 2))
    assert s.train.x.shape == (3, 2, 2)


def test_npz_one_hot_labels(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.zeros((3, 4)), y=np.eye(3)[[2, 0, 1]])
    assert load(tmp_path / "d.npz").train.y.tolist() == [2, 0, 1]


def test_cross_entropy_refuses_probability_targets(tmp_path):
    # docs/language.md: cross_entropy takes class labels (indices, one-hot rows, names); soft
    # rows are refused naming the row; binary_cross_entropy takes probabilities in [0, 1]
    np.savez(tmp_path / "d.npz", x=np.zeros((3, 4)), y=[[0, 0, 1], [0.2, 0.3, 0.5], [1, 0, 0]])
    data_error(lambda: load(tmp_path / "d.npz"), "d.npz", "sample 1", "must be one-hot",
               "[0.2, 0.3, 0.5]", "class labels, not probabilities")
    np.savez(tmp_path / "b.npz", x=np.zeros((3, 4)), y=[0.0, 0.25, 1.0])
    s = load(tmp_path / "b.npz", n_outputs=1, task="binary")
    assert s.train.y.ravel().tolist() == [0.0, 0.25, 1.0]


def test_digits_npz_stays_uint8():
    s = load(src("data/digits.npz"), base_dir=MODELS, input_shape=(64,), n_outputs=10)
    assert s.train.x.dtype == np.uint8 and s.train.x.shape == (1797, 64)
    assert s.train.y.dtype == np.int64 and sorted(set(s.train.y.tolist())) == list(range(10))


def test_npy_with_labels_file(tmp_path):
    x = np.random.default_rng(0).normal(size=(5, 4))
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", np.array([0, 1, 2, 1, 0]))
    s = load(src("x.npy", labels="y.npy"), base_dir=tmp_path)
    np.testing.assert_array_equal(s.train.x, x)
    assert s.train.y.tolist() == [0, 1, 2, 1, 0]


def test_csv_string_labels_become_sorted_classes(tmp_path):
    write_csv(tmp_path / "t.csv", IRIS_LIKE)
    s = load(tmp_path / "t.csv", label="species")
    assert s.class_names == ["cat", "dog", "emu"]
    assert s.train.y.tolist() == [0, 1, 0, 2]
    assert s.train.x.dtype == np.float64
    np.testing.assert_array_equal(s.train.x[1], [2, 3, 4, 5])


def test_csv_label_column_anywhere_bom_crlf_blank_lines(tmp_path):
    text = "\ufeffy , a,b\r\n1, 0.5 ,2\r\n\r\n0,1e3,-4\r\n\r\n"
    (tmp_path / "t.csv").write_bytes(text.encode("utf-8"))
    s = load(tmp_path / "t.csv", label="y", input_shape=(2,), n_outputs=2)
    assert s.class_names is None
    assert s.train.y.tolist() == [1, 0]
    np.testing.assert_array_equal(s.train.x, [[0.5, 2], [1000, -4]])


def test_csv_regression_and_binary(tmp_path):
    write_csv(tmp_path / "r.csv", "a,t\n1,0.5\n2,1.5\n3,2.5\n")
    s = load(tmp_path / "r.csv", label="t", input_shape=(1,), n_outputs=1, task="regression")
    assert s.train.y.shape == (3, 1) and s.train.y.dtype == np.float64
    assert s.train.y[:, 0].tolist() == [0.5, 1.5, 2.5]
    write_csv(tmp_path / "b.csv", "a,t\n1,yes\n2,no\n3,yes\n")
    s = load(tmp_path / "b.csv", label="t", input_shape=(1,), n_outputs=1, task="binary")
    assert s.class_names == ["no", "yes"] and s.train.y[:, 0].tolist() == [1.0, 0.0, 1.0]
    write_csv(tmp_path / "b2.csv", "a,t\n1,1\n2,0\n")
    s = load(tmp_path / "b2.csv", label="t", input_shape=(1,), n_outputs=1, task="binary")
    assert s.class_names is None and s.train.y.shape == (2, 1)


@pytest.mark.parametrize("gz", [False, True])
def test_idx_images_and_labels(tmp_path, gz):
    ext = ".gz" if gz else ""
    images = np.random.default_rng(1).integers(0, 256, size=(7, 3, 2), dtype=np.uint8)
    labels = np.array([0, 1, 2, 3, 4, 0, 1], dtype=np.uint8)
    write_idx(tmp_path / f"im-idx3-ubyte{ext}", images)
    write_idx(tmp_path / f"lb-idx1-ubyte{ext}", labels)
    s = load(src(f"im-idx3-ubyte{ext}", labels=f"lb-idx1-ubyte{ext}"), base_dir=tmp_path,
             input_shape=(6,), n_outputs=5)
    assert s.train.x.dtype == np.uint8  # images stay uint8
    np.testing.assert_array_equal(s.train.x, images.reshape(7, 6))
    assert s.train.y.tolist() == labels.tolist()
    s = load(src(f"im-idx3-ubyte{ext}", labels=f"lb-idx1-ubyte{ext}"), base_dir=tmp_path,
             input_shape=(3, 2), n_outputs=5)
    np.testing.assert_array_equal(s.train.x, images)


def test_idx_other_types_big_endian(tmp_path):
    a = np.arange(-6, 6, dtype=np.int16).reshape(3, 4)
    write_idx(tmp_path / "a.idx", a)
    got = read_idx(tmp_path / "a.idx")
    assert got.dtype == np.int16 and got.dtype.isnative
    np.testing.assert_array_equal(got, a)
    f = np.linspace(0, 1, 6).reshape(2, 3)
    write_idx(tmp_path / "f-idx2-ubyte.gz", f)
    np.testing.assert_array_equal(read_idx(tmp_path / "f-idx2-ubyte.gz"), f)


def test_idx_names():
    for name in ("train-images-idx3-ubyte", "t10k-labels-idx1-ubyte.gz", "t10k-labels.idx1-ubyte", "x.idx"):
        assert is_idx_name(name), name
    for name in ("x.npz", "idx.csv", "ubyte.txt"):
        assert not is_idx_name(name), name


# ---------------------------------------------------------------------------------------------
# paths and splits


def test_relative_paths_resolve_against_base_dir(tmp_path, monkeypatch):
    sub = tmp_path / "models" / "data"
    sub.mkdir(parents=True)
    write_csv(sub / "t.csv", IRIS_LIKE)
    monkeypatch.chdir(tmp_path)
    s = load("data/t.csv", base_dir=tmp_path / "models", label="species")
    assert len(s.train) == 4
    # without the base the relative path is looked up in the working directory: not there
    data_error(lambda: load("data/t.csv", label="species"), "data/t.csv", "not found")
    # an absolute path ignores the base
    assert len(load(sub / "t.csv", base_dir="/nonexistent", label="species").train) == 4
    # a separate test file resolves against the same base
    s = load("data/t.csv", base_dir=tmp_path / "models", label="species", test=src("data/t.csv"))
    assert len(s.test) == 4 and s.test.y.tolist() == [0, 1, 0, 2]


def _labelled(n, classes, features=3, seed=0):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(classes), n // classes)
    rng.shuffle(y)
    x = np.column_stack([np.arange(len(y), dtype=np.float64)] + [rng.normal(size=len(y))] * (features - 1))
    return x, y


def test_fraction_splits_disjoint_stratified_deterministic(tmp_path):
    x, y = _labelled(300, 3)
    np.savez(tmp_path / "d.npz", x=x, y=y)

    def split(seed):
        return load(tmp_path / "d.npz", input_shape=(3,), validation=0.2, test=0.1, seed=seed)

    s = split(7)
    assert (len(s.train), len(s.validation), len(s.test)) == (210, 60, 30)
    ids = [d.x[:, 0].astype(int) for d in (s.train, s.validation, s.test)]
    joined = np.concatenate(ids)
    assert sorted(joined.tolist()) == list(range(300))  # disjoint and complete
    for d in (s.train, s.validation, s.test):
        np.testing.assert_array_equal(d.y, y[d.x[:, 0].astype(int)])  # rows stay with labels
    assert np.bincount(s.validation.y).tolist() == [20, 20, 20]  # stratified
    assert np.bincount(s.test.y).tolist() == [10, 10, 10]
    again = split(7)
    for a, b in zip((s.train, s.validation, s.test), (again.train, again.validation, again.test)):
        np.testing.assert_array_equal(a.x, b.x)
    assert not np.array_equal(split(8).test.x, s.test.x)


def test_regression_fraction_split(tmp_path):
    x = np.arange(40, dtype=np.float64).reshape(20, 2)
    np.savez(tmp_path / "r.npz", x=x, y=x.sum(1))
    s = load(tmp_path / "r.npz", input_shape=(2,), n_outputs=1, task="regression", test=0.25)
    assert (len(s.train), len(s.test)) == (15, 5)
    np.testing.assert_array_equal(s.test.y[:, 0], s.test.x.sum(1))


def test_fraction_leaving_no_samples(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.zeros((4, 4)), y=[0, 1, 2, 0])
    data_error(lambda: load(tmp_path / "d.npz", validation=0.01), "d.npz", "validation", "no validation samples")


def test_class_names_are_the_union_of_all_files(tmp_path):
    write_csv(tmp_path / "train.csv", "a,b,c,d,s\n1,2,3,4,cat\n2,3,4,5,dog\n")
    write_csv(tmp_path / "test.csv", "a,b,c,d,s\n1,2,3,4,emu\n")
    s = load(tmp_path / "train.csv", label="s", test=src(tmp_path / "test.csv"))
    assert s.class_names == ["cat", "dog", "emu"]
    assert s.train.y.tolist() == [0, 1] and s.test.y.tolist() == [2]


# ---------------------------------------------------------------------------------------------
# preprocessing


def test_preprocessing_is_fitted_on_the_training_split_only(tmp_path):
    x, y = _labelled(300, 3)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    s = load(tmp_path / "d.npz", input_shape=(3,), validation=0.2, test=0.2,
             preprocess=[ir.Preprocess("standardize")])
    st = s.preprocessor.state()
    np.testing.assert_allclose(st["step0.standardize.mean"], s.train.x.mean(0), rtol=1e-12)
    np.testing.assert_allclose(st["step0.standardize.std"], s.train.x.std(0), rtol=1e-12)
    assert not np.allclose(st["step0.standardize.mean"], x.mean(0), rtol=1e-6)
    z = s.preprocessor.transform(s.train.x, np.float64)
    np.testing.assert_allclose(z.mean(0), 0, atol=1e-12)
    np.testing.assert_allclose(z.std(0), 1, rtol=1e-12)


def test_preprocess_chain_uint8_constant_feature_and_exact_restore():
    rng = np.random.default_rng(3)
    x = rng.integers(0, 256, size=(1000, 5), dtype=np.uint8)
    x[:, 2] = 7  # constant feature: unit divisor, maps to 0
    steps = [ir.Preprocess("scale", {"factor": 1 / 255}), ir.Preprocess("standardize"), ir.Preprocess("minmax")]
    pre = D.Preprocessor(steps).fit(x)
    ref = x.astype(np.float64) / 255
    ref = (ref - ref.mean(0)) / np.where(ref.std(0) > 1e-9, ref.std(0), 1)
    ref = (ref - ref.min(0)) / np.where(np.ptp(ref, 0) > 0, np.ptp(ref, 0), 1)
    got64 = pre.transform(x, np.float64)
    np.testing.assert_allclose(got64, ref, atol=1e-12)
    assert (got64[:, 2] == 0).all()
    out = np.empty((10, 5), np.float32)
    assert pre.apply(x[:10], out) is out
    np.testing.assert_allclose(out, ref[:10], atol=1e-6)
    state = pre.state()
    assert all(v.dtype == np.float64 for v in state.values())
    # a save/load round trip through .npz reproduces the transform bit for bit
    restored = D.Preprocessor.from_state(steps, dict(state))
    np.testing.assert_array_equal(restored.transform(x, np.float32), pre.transform(x, np.float32))
    np.testing.assert_array_equal(restored.transform(x, np.float64), got64)


def test_preprocess_fit_is_chunked_and_matches_numpy(monkeypatch):
    monkeypatch.setattr(D.arrays, "CHUNK_BYTES", 8 * 7 * 3)  # 3 rows per chunk
    x = np.random.default_rng(4).normal(5, 3, size=(31, 7))
    pre = D.Preprocessor([ir.Preprocess("standardize")]).fit(x)
    np.testing.assert_allclose(pre.stats[0]["mean"], x.mean(0), rtol=1e-13)
    np.testing.assert_allclose(pre.stats[0]["std"], x.std(0), rtol=1e-12)


def test_values_too_large_for_the_statistics(tmp_path):
    x = np.ones((4, 4))
    x[:, 2] = [1e300, -1e300, 1e300, -1e300]
    np.savez(tmp_path / "big.npz", x=x, y=[0, 1, 2, 0])
    data_error(lambda: load(tmp_path / "big.npz", preprocess=[ir.Preprocess("standardize")]), "big.npz",
               "feature 2", "too large to standardize", "1e+300")
    # a scale step that overflows before minmax is caught the same way
    data_error(lambda: load(tmp_path / "big.npz", preprocess=[ir.Preprocess("scale", {"factor": 1e10}),
                                                              ir.Preprocess("minmax")]), "feature 2", "minmax")


def test_scale_only_needs_no_statistics():
    pre = D.Preprocessor([ir.Preprocess("scale", {"factor": 0.25})])
    assert pre.state() == {}
    x = np.array([[4, 8]], dtype=np.uint8)
    assert pre.transform(x, np.float64).tolist() == [[1.0, 2.0]]
    assert D.Preprocessor([]).transform(x, np.float32).tolist() == [[4.0, 8.0]]


def test_preprocess_state_mismatch_and_unfitted():
    steps = [ir.Preprocess("standardize")]
    with pytest.raises(UsageError, match="not fitted"):
        D.Preprocessor(steps).transform(np.zeros((2, 3)))
    with pytest.raises(WeightsError, match="missing preprocessing statistics 'step0.standardize.std'"):
        D.Preprocessor.from_state(steps, {"step0.standardize.mean": np.zeros(3)})
    with pytest.raises(WeightsError, match="do not match"):
        D.Preprocessor.from_state([], {"step0.standardize.mean": np.zeros(3)})
    with pytest.raises(WeightsError, match="invalid values"):
        D.Preprocessor.from_state(steps, {"step0.standardize.mean": np.zeros(3),
                                          "step0.standardize.std": np.zeros(3)})
    pre = D.Preprocessor(steps).fit(np.ones((4, 3)))
    with pytest.raises(DataError, match="fitted on 3"):
        pre.transform(np.ones((2, 4)))


# ---------------------------------------------------------------------------------------------
# prediction inputs and API arrays


def test_load_inputs_every_format(tmp_path):
    x = np.arange(12, dtype=np.float64).reshape(3, 4)
    np.savez(tmp_path / "a.npz", x=x, y=[0, 1, 2])
    np.savez(tmp_path / "b.npz", whatever=x)
    np.save(tmp_path / "c.npy", x)
    write_csv(tmp_path / "d.csv", "a,b,species,c,d\n0,1,cat,2,3\n4,5,dog,6,7\n8,9,cat,10,11\n")
    write_csv(tmp_path / "e.csv", "a,b,c,d\n0,1,2,3\n4,5,6,7\n8,9,10,11\n")
    write_idx(tmp_path / "f-idx3-ubyte.gz", x.astype(np.uint8).reshape(3, 2, 2))
    for name in ("a.npz", "b.npz", "c.npy", "d.csv", "e.csv"):
        got = D.load_inputs(name, input_shape=(4,), label="species", base_dir=tmp_path)
        np.testing.assert_array_equal(got, x, err_msg=name)
    got = D.load_inputs(tmp_path / "f-idx3-ubyte.gz", input_shape=(4,))
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, x)
    data_error(lambda: D.load_inputs(tmp_path / "d.csv", input_shape=(4,)), "d.csv", "line 2, column 3 'species'", "'cat'")
    data_error(lambda: D.load_inputs(tmp_path / "e.csv", input_shape=(5,)), "e.csv", "4 features", "input is 5")
    np.savez(tmp_path / "two.npz", p=x, q=x)
    data_error(lambda: D.load_inputs(tmp_path / "two.npz", input_shape=(4,)), "two.npz", "no array 'x'", "p, q")


def test_make_dataset():
    ds = D.make_dataset([[1, 2], [3, 4]], [1, 0], input_shape=(2,), n_outputs=2, task="classification")
    assert ds.x.dtype == np.float64 and ds.y.tolist() == [1, 0] and ds.source == "<array>"
    names = D.class_names_of(["b", "a", "b"])
    assert names == ["a", "b"]
    ds = D.make_dataset(np.zeros((3, 2), np.float32), ["b", "a", "b"], input_shape=(2,), n_outputs=2,
                        task="classification", class_names=names)
    assert ds.x.dtype == np.float32 and ds.y.tolist() == [1, 0, 1]
    assert D.make_dataset(np.zeros((2, 2)), None, input_shape=(2,), n_outputs=2, task="regression").y is None
    ds = D.make_dataset(np.zeros((2, 2)), [[1.0, 2.0], [3.0, 4.0]], input_shape=(2,), n_outputs=2, task="regression")
    assert ds.y.shape == (2, 2)
    data_error(lambda: D.make_dataset(np.zeros((3, 2)), [0, 1], input_shape=(2,), n_outputs=2,
                                      task="classification"), "<array>", "3 samples but 2 labels")
    data_error(lambda: D.make_dataset(np.zeros((2, 2)), [0, 5], input_shape=(2,), n_outputs=2,
                                      task="classification"), "y[1]", "label 5", "0..1")
    data_error(lambda: D.make_dataset(np.zeros((2, 3)), [0, 1], input_shape=(2,), n_outputs=2,
                                      task="classification"), "3 features", "input is 2")
    data_error(lambda: D.make_dataset([[0.0, np.nan]], [0], input_shape=(2,), n_outputs=2,
                                      task="classification"), "x[0], feature 1", "nan")
    data_error(lambda: D.make_dataset(np.zeros((2, 2)), ["a", "c"], input_shape=(2,), n_outputs=2,
                                      task="classification", class_names=["a", "b"]), "y[1]", "unknown class 'c'")
    data_error(lambda: D.make_dataset(np.zeros((2, 2)), ["a", "c"], input_shape=(2,), n_outputs=2,
                                      task="classification"), "pass class_names")


# ---------------------------------------------------------------------------------------------
# bad data: every case a one-line DataError naming the file (and row/column where it applies)


def test_missing_file_and_directory(tmp_path):
    data_error(lambda: load("nope.npz", base_dir=tmp_path), str(tmp_path / "nope.npz"), "not found", "train")
    (tmp_path / "dir.csv").mkdir()
    data_error(lambda: load(tmp_path / "dir.csv", label="s"), "dir.csv", "is a directory")
    np.savez(tmp_path / "d.npz", x=np.zeros((2, 4)), y=[0, 1])
    data_error(lambda: load(tmp_path / "d.npz", test=src(tmp_path / "gone.npz")), "gone.npz", "test data")
    np.save(tmp_path / "x.npy", np.zeros((2, 4)))
    data_error(lambda: load(src(tmp_path / "x.npy", labels="missing-idx1-ubyte"), base_dir=tmp_path),
               "missing-idx1-ubyte", "train labels")


def test_unreadable_file(tmp_path, monkeypatch):
    p = write_csv(tmp_path / "t.csv", IRIS_LIKE)
    real_open = os.open  # every reader opens through dlrun.fileopen.open_regular

    def deny(file, *args, **kw):
        if str(file) == str(p):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kw)

    monkeypatch.setattr(os, "open", deny)
    data_error(lambda: load(p, label="species"), "t.csv", "permission denied")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file_by_mode(tmp_path):
    p = write_csv(tmp_path / "t.csv", IRIS_LIKE)
    p.chmod(0)
    try:
        data_error(lambda: load(p, label="species"), "t.csv", "permission denied")
    finally:
        p.chmod(0o644)


@pytest.mark.parametrize("name", ["e.csv", "e.npz", "e.npy", "e-idx3-ubyte", "e-idx3-ubyte.gz"])
def test_empty_file(tmp_path, name):
    (tmp_path / name).write_bytes(b"")
    data_error(lambda: load(tmp_path / name, label="s"), name, "is empty")


def test_csv_only_blank_lines_or_header(tmp_path):
    write_csv(tmp_path / "b.csv", "\n\n  \n")
    data_error(lambda: load(tmp_path / "b.csv", label="s"), "b.csv", "empty")
    write_csv(tmp_path / "h.csv", "a,b,c,d,s\n")
    data_error(lambda: load(tmp_path / "h.csv", label="s"), "h.csv", "no data rows")


def test_unknown_extension(tmp_path):
    (tmp_path / "d.json").write_text("1 2 3")
    data_error(lambda: load(tmp_path / "d.json"), "d.json", "unknown data format", ".npz, .npy, .csv")


def test_truncated_npz(tmp_path):
    np.savez_compressed(tmp_path / "d.npz", x=np.random.default_rng(0).normal(size=(200, 4)), y=np.zeros(200))
    raw = (tmp_path / "d.npz").read_bytes()
    (tmp_path / "d.npz").write_bytes(raw[: len(raw) // 2])
    data_error(lambda: load(tmp_path / "d.npz"), "d.npz", "npz")
    (tmp_path / "junk.npz").write_bytes(b"this is not a zip file at all")
    data_error(lambda: load(tmp_path / "junk.npz"), "junk.npz")


def test_npz_corrupted_member(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.arange(400, dtype=np.float64).reshape(100, 4), y=np.zeros(100))
    raw = bytearray((tmp_path / "d.npz").read_bytes())
    raw[300] ^= 0xFF  # inside x's data: the zip CRC no longer matches
    (tmp_path / "d.npz").write_bytes(bytes(raw))
    data_error(lambda: load(tmp_path / "d.npz"), "d.npz")


def test_truncated_npy(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((50, 4)))
    raw = (tmp_path / "x.npy").read_bytes()
    (tmp_path / "x.npy").write_bytes(raw[:300])
    np.save(tmp_path / "y.npy", np.zeros(50))
    data_error(lambda: load(src(tmp_path / "x.npy", labels=str(tmp_path / "y.npy"))), "x.npy")


def test_pickled_npz_is_refused(tmp_path):
    np.savez(tmp_path / "p.npz", x=np.array([{"a": 1}, None], dtype=object), y=np.array([0, 1]))
    data_error(lambda: load(tmp_path / "p.npz"), "p.npz", "pickled object array")
    np.save(tmp_path / "p.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    data_error(lambda: D.load_inputs(tmp_path / "p.npy", input_shape=(4,)), "p.npy", "pickled")


def test_npz_missing_arrays(tmp_path):
    np.savez(tmp_path / "d.npz", a=np.zeros((2, 4)), b=[0, 1])
    data_error(lambda: load(tmp_path / "d.npz"), "d.npz", "no array 'x'", "a, b", "`x=NAME`")
    np.savez(tmp_path / "d2.npz", x=np.zeros((2, 4)))
    data_error(lambda: load(tmp_path / "d2.npz"), "d2.npz", "no label array 'y'", "`y=NAME`")


def test_npz_non_numeric_inputs(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.array([["a", "b", "c", "d"]]), y=[0])
    data_error(lambda: load(tmp_path / "d.npz"), "d.npz", "expected numbers")


def test_gz_truncated_and_corrupted(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, size=(50, 4, 4), dtype=np.uint8)
    write_idx(tmp_path / "lb-idx1-ubyte", np.zeros(50, np.uint8))
    p = write_idx(tmp_path / "im-idx3-ubyte.gz", images)
    raw = p.read_bytes()
    p.write_bytes(raw[: len(raw) - 30])
    data_error(lambda: load(src(p, labels=str(tmp_path / "lb-idx1-ubyte")), input_shape=(16,), n_outputs=10),
               "im-idx3-ubyte.gz", "truncated")
    p.write_bytes(b"\x1f\x8b" + raw[2:10] + bytes(b ^ 0x55 for b in raw[10:]))
    data_error(lambda: load(src(p, labels=str(tmp_path / "lb-idx1-ubyte")), input_shape=(16,), n_outputs=10),
               "im-idx3-ubyte.gz")
    p.write_bytes(b"plain text, not gzip")
    data_error(lambda: load(src(p, labels=str(tmp_path / "lb-idx1-ubyte")), input_shape=(16,), n_outputs=10),
               "im-idx3-ubyte.gz", "gzip")


def test_idx_bad_magic_short_read_and_extra_bytes(tmp_path):
    lb = write_idx(tmp_path / "lb-idx1-ubyte", np.zeros(4, np.uint8))
    p = tmp_path / "im-idx3-ubyte"
    p.write_bytes(b"\x12\x34\x08\x03" + b"\x00" * 40)
    data_error(lambda: load(src(p, labels=str(lb)), input_shape=(4,)), "im-idx3-ubyte", "magic number 12340803")
    p.write_bytes(b"\x00\x00\x08")
    data_error(lambda: load(src(p, labels=str(lb)), input_shape=(4,)), "im-idx3-ubyte", "not an IDX file")
    good = struct.pack(">BBBBIII", 0, 0, 8, 3, 4, 2, 2)
    p.write_bytes(good[:10])
    data_error(lambda: load(src(p, labels=str(lb)), input_shape=(4,)), "truncated IDX header")
    p.write_bytes(good + bytes(15))  # 16 declared
    data_error(lambda: load(src(p, labels=str(lb)), input_shape=(4,)), "im-idx3-ubyte",
               "truncated", "4x2x2", "after 15 bytes")
    p.write_bytes(good + bytes(17))
    data_error(lambda: load(src(p, labels=str(lb)), input_shape=(4,)), "im-idx3-ubyte", "longer than its header")


@pytest.mark.parametrize("name", ["huge-idx3-ubyte", "huge-idx3-ubyte.gz"])
def test_idx_header_declaring_more_than_the_file_holds(tmp_path, name):
    # sizes whose product overflows int64: refused before any allocation
    head = struct.pack(">BBBBIII", 0, 0, 8, 3, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFF) + bytes(64)
    p = tmp_path / name
    p.write_bytes(gzip.compress(head) if name.endswith(".gz") else head)
    data_error(lambda: read_idx(p), name, "truncated", "4294967295x4294967295x65535")


def test_idx_images_need_labels_and_matching_counts(tmp_path):
    im = write_idx(tmp_path / "im-idx3-ubyte", np.zeros((5, 2, 2), np.uint8))
    data_error(lambda: load(src(im), input_shape=(4,)), "im-idx3-ubyte", "labels file", 'labels="FILE"')
    lb = write_idx(tmp_path / "lb-idx1-ubyte", np.zeros(4, np.uint8))
    data_error(lambda: load(src(im, labels=str(lb)), input_shape=(4,)), "im-idx3-ubyte", "lb-idx1-ubyte",
               "5 samples but 4 labels")
    lb = write_idx(tmp_path / "lb2-idx1-ubyte", np.array([0, 1, 2, 1, 9], np.uint8))
    data_error(lambda: load(src(im, labels=str(lb)), input_shape=(4,)), "lb2-idx1-ubyte", "sample 4",
               "label 9 is outside the model's 3 classes")


def test_ragged_csv_row(tmp_path):
    write_csv(tmp_path / "r.csv", "a,b,c,d,s\n1,2,3,4,cat\n1,2,3,cat\n")
    data_error(lambda: load(tmp_path / "r.csv", label="s"), "r.csv", "line 3", "4 cells", "5 columns")


def test_non_numeric_cell_names_line_column_and_value(tmp_path):
    write_csv(tmp_path / "n.csv", "a,b,c,d,s\n1,2,3,4,cat\n1,2,3,4,dog\n1,2,x3,4,cat\n1,oops,3,4,cat\n")
    data_error(lambda: load(tmp_path / "n.csv", label="s"), "n.csv", "line 4, column 3 'c'",
               "expected a number, got 'x3'")
    write_csv(tmp_path / "e.csv", "a,b,c,d,s\n1,2,,4,cat\n")
    data_error(lambda: load(tmp_path / "e.csv", label="s"), "e.csv", "line 2, column 3 'c'", "empty cell")


def test_non_finite_values(tmp_path):
    write_csv(tmp_path / "n.csv", "a,b,c,d,s\n1,2,3,4,cat\n1,2,3,nan,dog\n1,inf,3,4,emu\n")
    data_error(lambda: load(tmp_path / "n.csv", label="s"), "n.csv", "line 3, column 4 'd'", "non-finite value nan")
    x = np.zeros((5, 4))
    x[3, 1] = np.inf
    x[4, 0] = np.nan
    np.savez(tmp_path / "d.npz", x=x, y=[0, 1, 2, 0, 1])
    data_error(lambda: load(tmp_path / "d.npz"), "d.npz", "array 'x', sample 3, feature 1", "inf")
    write_csv(tmp_path / "r.csv", "a,t\n1,2\n2,inf\n")
    data_error(lambda: load(tmp_path / "r.csv", label="t", input_shape=(1,), n_outputs=1, task="regression"),
               "r.csv", "line 3, column 2 't'", "non-finite target")


def test_feature_count_against_input(tmp_path):
    write_csv(tmp_path / "t.csv", IRIS_LIKE)
    data_error(lambda: load(tmp_path / "t.csv", label="species", input_shape=(5,)), "t.csv", "4 features",
               "input is 5 (5 features)")
    np.savez(tmp_path / "d.npz", x=np.zeros((2, 28, 28)), y=[0, 1])
    data_error(lambda: load(tmp_path / "d.npz", input_shape=(1, 28, 27)), "d.npz", "784 features", "1x28x27")


def test_labels_outside_classes(tmp_path):
    write_csv(tmp_path / "t.csv", "a,b,c,d,y\n1,2,3,4,0\n1,2,3,4,2\n1,2,3,4,3\n")
    data_error(lambda: load(tmp_path / "t.csv", label="y"), "t.csv", "line 4, column 5 'y'",
               "label 3 is outside the model's 3 classes", "0..2")
    write_csv(tmp_path / "neg.csv", "a,b,c,d,y\n1,2,3,4,-1\n")
    data_error(lambda: load(tmp_path / "neg.csv", label="y"), "neg.csv", "line 2", "label -1")
    write_csv(tmp_path / "f.csv", "a,b,c,d,y\n1,2,3,4,1.5\n")
    data_error(lambda: load(tmp_path / "f.csv", label="y"), "f.csv", "line 2", "not an integer class index")
    np.savez(tmp_path / "d.npz", x=np.zeros((3, 4)), y=[0, 1, 7])
    data_error(lambda: load(tmp_path / "d.npz"), "d.npz", "array 'y', sample 2", "label 7")
    write_csv(tmp_path / "b.csv", "a,y\n1,0\n2,2\n")
    data_error(lambda: load(tmp_path / "b.csv", label="y", input_shape=(1,), n_outputs=1, task="binary"),
               "b.csv", "line 3", "outside [0, 1]")


def test_class_name_count_must_match_outputs(tmp_path):
    write_csv(tmp_path / "t.csv", IRIS_LIKE)
    data_error(lambda: load(tmp_path / "t.csv", label="species", n_outputs=4), "t.csv",
               "name 3 classes (cat, dog, emu)", "4 output classes")
    data_error(lambda: load(tmp_path / "t.csv", label="species", n_outputs=1, task="binary"), "t.csv",
               "3 classes", "binary")


def test_csv_label_column_problems(tmp_path):
    write_csv(tmp_path / "t.csv", IRIS_LIKE)
    data_error(lambda: load(tmp_path / "t.csv", label="kind"), "t.csv", "no label column named 'kind'",
               "a, b, c, d, species")
    data_error(lambda: load(tmp_path / "t.csv", label="specis"), "t.csv",
               "no label column named 'specis' (did you mean 'species'?)")
    data_error(lambda: load(tmp_path / "t.csv"), "t.csv", "add `label NAME`")
    write_csv(tmp_path / "nh.csv", "1,2,3,4,0\n1,2,3,4,1\n")
    data_error(lambda: load(tmp_path / "nh.csv", label="y"), "nh.csv", "header of column names")
    write_csv(tmp_path / "dup.csv", "a,a,c,d,y\n1,2,3,4,0\n")
    data_error(lambda: load(tmp_path / "dup.csv", label="y"), "dup.csv", "line 1", "'a' appears twice")
    write_csv(tmp_path / "r.csv", "a,t\n1,2\n2,high\n")
    data_error(lambda: load(tmp_path / "r.csv", label="t", input_shape=(1,), n_outputs=1, task="regression"),
               "r.csv", "line 3, column 2 't'", "expected a number, got 'high'")


def test_empty_label_cell(tmp_path):
    write_csv(tmp_path / "t.csv", IRIS_LIKE + "5,6,7,8,\n")
    data_error(lambda: load(tmp_path / "t.csv", label="species"), "t.csv", "line 6, column 5 'species'", "empty label")
    write_csv(tmp_path / "n.csv", "a,b,c,d,y\n1,2,3,4,0\n1,2,3,4,\n")
    data_error(lambda: load(tmp_path / "n.csv", label="y"), "n.csv", "line 3, column 5 'y'", "empty")


def test_mixed_label_kinds_across_files(tmp_path):
    write_csv(tmp_path / "t.csv", IRIS_LIKE)
    np.savez(tmp_path / "v.npz", x=np.zeros((2, 4)), y=[0, 1])
    data_error(lambda: load(tmp_path / "t.csv", label="species", validation=src(tmp_path / "v.npz")),
               "v.npz", "numbers here but class names")


def test_not_utf8_and_binary_csv(tmp_path):
    (tmp_path / "b.csv").write_bytes(b"a,b\n\xff\xfe\x00\x01,2\n")
    data_error(lambda: load(tmp_path / "b.csv", label="b", input_shape=(1,), n_outputs=3), "b.csv")
    (tmp_path / "z.csv").write_bytes(b"a,b\n1\x00,2\n")
    data_error(lambda: load(tmp_path / "z.csv", label="b", input_shape=(1,), n_outputs=3), "z.csv", "line 2")


def test_npy_with_csv_labels_file(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((3, 4)))
    write_csv(tmp_path / "one.csv", "kind\ncat\ndog\nemu\n")
    s = load(src(tmp_path / "x.npy", labels=str(tmp_path / "one.csv")))
    assert s.class_names == ["cat", "dog", "emu"] and s.train.y.tolist() == [0, 1, 2]
    write_csv(tmp_path / "two.csv", "id,kind\n1,cat\n2,dog\n3,emu\n")
    s = load(src(tmp_path / "x.npy", labels=str(tmp_path / "two.csv")), label="kind")
    assert s.train.y.tolist() == [0, 1, 2]
    data_error(lambda: load(src(tmp_path / "x.npy", labels=str(tmp_path / "two.csv"))), "two.csv",
               "2 columns", "`label NAME`")


def test_length_mismatch_npy_labels(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((5, 4)))
    np.save(tmp_path / "y.npy", np.zeros(6, np.int64))
    data_error(lambda: load(src(tmp_path / "x.npy", labels=str(tmp_path / "y.npy"))), "x.npy", "y.npy",
               "5 samples but 6 labels")


def test_no_training_source():
    with pytest.raises(DataError, match="no training data"):
        D.load_splits(None, base_dir=".", input_shape=(4,), n_outputs=3, task="classification", seed=0)


# ---------------------------------------------------------------------------------------------
# MNIST (the real files, when present)


@pytest.mark.skipif(not MNIST.is_dir(), reason=f"MNIST not found at {MNIST}")
def test_mnist_loads_as_uint8_within_memory_budget():
    data = ir.Data(
        train=src("mnist/train-images-idx3-ubyte.gz", labels="mnist/train-labels-idx1-ubyte.gz"),
        test=src("mnist/t10k-images-idx3-ubyte.gz", labels="mnist/t10k-labels-idx1-ubyte.gz"),
        validation=1 / 12,
        preprocess=(ir.Preprocess("scale", {"factor": 1 / 255}), ir.Preprocess("standardize")),
    )
    tracemalloc.start()
    try:
        s = D.load_splits(data, base_dir=MNIST.parent, input_shape=(784,), n_outputs=10,
                          task="classification", seed=0)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    uint8_size = (60000 + 10000) * 784
    assert peak <= 1.5 * uint8_size, f"peak {peak / 1e6:.1f} MB for {uint8_size / 1e6:.1f} MB of images"
    assert s.train.x.dtype == np.uint8 and s.test.x.dtype == np.uint8
    assert s.train.x.shape == (55000, 784) and s.validation.x.shape == (5000, 784)
    assert s.test.x.shape == (10000, 784)
    counts = np.bincount(s.train.y, minlength=10) + np.bincount(s.validation.y, minlength=10)
    assert counts.tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert np.bincount(s.test.y).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    np.testing.assert_allclose(s.preprocessor.stats[1]["mean"].mean(), 0.1307, atol=5e-4)


@pytest.mark.skipif(not MNIST.is_dir(), reason=f"MNIST not found at {MNIST}")
def test_mnist_whole_training_file():
    data = ir.Data(train=src(MNIST / "train-images-idx3-ubyte.gz", labels=str(MNIST / "train-labels-idx1-ubyte.gz")))
    s = D.load_splits(data, base_dir=None, input_shape=(28, 28), n_outputs=10, task="classification", seed=0)
    assert s.train.x.shape == (60000, 28, 28) and s.train.x.dtype == np.uint8
    assert np.bincount(s.train.y)[0] == 5923


def test_docstring_examples_run():
    import doctest

    result = doctest.testmod(D, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 4 and result.failed == 0


def test_wide_csv_header_is_checked_in_linear_time(tmp_path):
    # 100k columns: the duplicate-name check used header.index per column (minutes here)
    n = 100_000
    names = [f"f{j}" for j in range(n)]
    row = ",".join("1" for _ in range(n))
    path = write_csv(tmp_path / "wide.csv", ",".join(names + ["y"]) + "\n" + row + ",0\n" + row + ",1\n")
    sp = load(path, input_shape=(n,), n_outputs=2, label="y")
    assert sp.train.x.shape == (2, n)
    x = D.load_inputs(path, input_shape=(n,), label="y")
    assert x.shape == (2, n)
    dup = write_csv(tmp_path / "dup.csv", ",".join(names + ["f5"]) + "\n" + row + ",1\n")
    data_error(lambda: D.load_inputs(dup, input_shape=(n + 1,)), "'f5' appears twice", "columns 6 and 100001")


# ---------------------------------------------------------------------------------------------
# values that overflow the model's dtype (1e39 is finite in float64, inf in float32)


def _load_typed(train, dtype, **kw):
    data = ir.Data(train=src(train), label="y", validation=kw.pop("validation", None),
                   test=kw.pop("test", None), preprocess=tuple(kw.pop("preprocess", ())))
    return D.load_splits(data, base_dir=None, input_shape=(2,), n_outputs=2, task="classification",
                         seed=kw.pop("seed", 0), dtype=dtype)


def test_value_overflowing_float32_is_refused_naming_file_line_column(tmp_path):
    rows = [f"{i},{i + 1},{i % 2}" for i in range(10)]
    rows[6] = "6,1e39,0"
    write_csv(tmp_path / "t.csv", "a,b,y\n" + "\n".join(rows) + "\n")
    data_error(lambda: _load_typed(tmp_path / "t.csv", np.float32), "t.csv", "line 8, column 2 'b'",
               "value 1e+39", "overflows the model's float32", "3.403e+38")
    assert len(_load_typed(tmp_path / "t.csv", np.float64).train) == 10   # fits in float64
    # a held-out fraction names the row of the file, whichever split it lands in
    for seed in range(4):
        data_error(lambda: _load_typed(tmp_path / "t.csv", np.float32, test=0.3, seed=seed),
                   "t.csv", "line 8, column 2 'b'", "overflows")


def test_range_is_checked_after_preprocessing(tmp_path):
    # large raw values that standardize maps into range are accepted; a scale that pushes
    # in-range values beyond float32 is refused with the value it would have reached
    rows = [f"{i}e38,{i},{i % 2}" for i in range(1, 9)]
    write_csv(tmp_path / "big.csv", "a,b,y\n" + "\n".join(rows).replace("8e38", "8e39") + "\n")
    s = _load_typed(tmp_path / "big.csv", np.float32, preprocess=[ir.Preprocess("standardize")])
    assert np.isfinite(s.preprocessor.transform(s.train.x, np.float32)).all()
    write_csv(tmp_path / "s.csv", "a,b,y\n1,2,0\n3e37,4,1\n")
    data_error(lambda: _load_typed(tmp_path / "s.csv", np.float32,
                                   preprocess=[ir.Preprocess("scale", {"factor": 100.0})]),
               "s.csv", "line 3, column 1 'a'", "value 3e+37 (3e+39 after preprocessing)", "float32")


def test_predict_inputs_overflowing_the_model_are_refused(tmp_path):
    import dlrun

    model = dlrun.loads("dlrun 1\nmodel m {\n  input 2\n  dense 2 softmax\n  loss cross_entropy\n"
                        "  optimizer sgd\n}\n")
    x = np.array([[0.0, 1.0], [1e39, 0.0]])
    model.fit(x[:1].repeat(4, axis=0), np.array([0, 1, 0, 1]), epochs=1)
    data_error(lambda: model.predict(x), "x[1], feature 0", "value 1e+39", "overflows the model's float32")
    data_error(lambda: model.evaluate(x, np.array([0, 1])), "x[1], feature 0", "overflows")
    data_error(lambda: model.fit(x, np.array([0, 1]), epochs=1), "x[1], feature 0", "overflows")
    write_csv(tmp_path / "p.csv", "a,b\n1,2\n3,-2e39\n")
    data_error(lambda: model.predict(str(tmp_path / "p.csv")), "p.csv", "line 3, column 2 'b'", "-2e+39")
    assert np.isfinite(model.predict(x[:1])).all()
