"""``dlrun check --data`` (runtime/data/check.py): data problems found before training, each at
the line and column of the data statement it is about."""
import gzip
import shutil
import struct
import sys
from pathlib import Path

import numpy as np
import pytest

from dlrun.runtime.cli import main

MODELS = Path(__file__).resolve().parents[2] / "models"

IRIS = """dlrun 1
model iris {
  data {
    train "iris.csv"
    label species
    validation 0.2
  }
  input 4
  dense 8 tanh
  dense 3 softmax
  loss cross_entropy
  optimizer adam lr=0.01
}
"""


def check(capsys, *args):
    code = main(["check", "--data", *map(str, args)])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


@pytest.fixture
def iris(tmp_path):
    shutil.copy(MODELS / "data" / "iris.csv", tmp_path / "iris.csv")
    path = tmp_path / "iris.net"
    path.write_text(IRIS)
    return path


def test_good_data_is_reported_ok(capsys, iris):
    code, out, err = check(capsys, iris)
    assert code == 0, err
    assert out.strip().endswith("; data ok (train 150 samples, validation 0.2 of train)")


def test_without_data_flag_no_data_file_is_opened(capsys, iris):
    (iris.parent / "iris.csv").unlink()
    assert main(["check", str(iris)]) == 0
    assert "data ok" not in capsys.readouterr().out


def test_wrong_path_points_at_the_train_statement(capsys, iris):
    iris.write_text(IRIS.replace('"iris.csv"', '"irs.csv"'))
    code, out, err = check(capsys, iris)
    assert code == 2 and out == ""
    assert f"{iris}:4:5: error: {iris.parent / 'irs.csv'}: data file not found (train data)" in err
    assert '        train "irs.csv"\n        ^~~~~~~~~~~~~~~\n' in err
    assert f"{iris}: 1 data error" in err


def test_misspelled_label_column_points_at_the_label_statement(capsys, iris):
    iris.write_text(IRIS.replace("label species", "label specis"))
    code, _, err = check(capsys, iris)
    assert code == 2
    assert f"{iris}:5:5: error: " in err
    assert "no label column named 'specis' (did you mean 'species'?); columns: sepal_length" in err


def test_feature_count_differs_from_input(capsys, iris):
    iris.write_text(IRIS.replace("input 4", "input 5"))
    code, _, err = check(capsys, iris)
    assert code == 2
    assert f"{iris}:4:5: error: " in err and "4 features per sample" in err
    assert "the model's input is 5 (5 features)" in err


def test_class_count_differs_from_the_output(capsys, iris):
    iris.write_text(IRIS.replace("dense 3 softmax", "dense 4 softmax"))
    code, _, err = check(capsys, iris)
    assert code == 2
    assert f"{iris}:4:5: error: " in err
    assert "the labels name 3 classes (setosa, versicolor, virginica), but the model has 4 output classes" in err


DIGITS = """dlrun 1
model digits {
  data {
    train "d.npz"
    test "t.npz"
  }
  input 64
  dense 10 softmax
  loss cross_entropy
  optimizer sgd lr=0.1
}
"""


def test_npz_out_of_range_labels_and_each_file_its_own_line(capsys, tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x=rng.random((20, 64)), y=np.arange(20) % 11)  # label 10 of 10 classes
    np.savez(tmp_path / "t.npz", x=rng.random((5, 63)), y=np.zeros(5, int))
    path = tmp_path / "digits.net"
    path.write_text(DIGITS)
    code, _, err = check(capsys, path)
    assert code == 2
    assert f"{path}:5:5: error: {tmp_path / 't.npz'}: 63 features per sample" in err
    assert f"{path}: 1 data error" in err
    np.savez(tmp_path / "t.npz", x=rng.random((5, 64)), y=np.zeros(5, int))
    code, _, err = check(capsys, path)
    assert code == 2
    assert (f"{path}:4:5: error: {tmp_path / 'd.npz'}: array 'y', sample 10: label 10 is outside the "
            "model's 10 classes (expected an integer in 0..9)") in err


def test_npz_inputs_are_read_from_the_header_only(capsys, tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x=rng.random((20, 64)), y=np.arange(20) % 10)
    np.savez(tmp_path / "t.npz", x=rng.random((5, 64)), y=np.zeros(5, int))
    path = tmp_path / "digits.net"
    path.write_text(DIGITS)
    from dlrun.runtime.data import load

    def no_full_read(*a, **k):
        raise AssertionError("read for training")

    monkeypatch.setattr(load, "read_source", no_full_read)
    code, out, err = check(capsys, path)
    assert code == 0, err
    assert "data ok (train 20 samples, test 5 samples)" in out


def _idx(path, values, dtype_code=0x08):
    values = np.asarray(values, dtype=np.uint8)
    head = struct.pack(">BBBB", 0, 0, dtype_code, values.ndim) + struct.pack(">" + "I" * values.ndim, *values.shape)
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(head + values.tobytes())


MNIST = """dlrun 1
model m {
  data {
    train "train-images-idx3-ubyte" labels="train-labels-idx1-ubyte.gz"
  }
  input 4x4
  flatten
  dense 10 softmax
  loss cross_entropy
  optimizer sgd lr=0.1
}
"""


def test_idx_images_header_labels_length_and_truncation(capsys, tmp_path):
    path = tmp_path / "m.net"
    path.write_text(MNIST)
    _idx(tmp_path / "train-images-idx3-ubyte", np.zeros((6, 4, 4)))
    _idx(tmp_path / "train-labels-idx1-ubyte.gz", [0, 1, 2, 3, 4, 5])
    code, out, err = check(capsys, path)
    assert code == 0 and "data ok (train 6 samples)" in out, err
    _idx(tmp_path / "train-labels-idx1-ubyte.gz", [0, 1, 2, 3, 4])
    code, _, err = check(capsys, path)
    assert code == 2 and "4:5: error: " in err and ": 6 samples but 5 labels" in err
    with open(tmp_path / "train-images-idx3-ubyte", "r+b") as f:
        f.truncate(16 + 5 * 16)
    code, _, err = check(capsys, path)
    assert code == 2 and "truncated IDX file: the header declares 6x4x4 values (96 bytes)" in err


def test_check_data_imports_numpy_only_when_asked(tmp_path, iris):
    import subprocess

    code = ("import sys; from dlrun.runtime.cli import main; main(['check', sys.argv[1]]); "
            "print('numpy' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code, str(iris)], capture_output=True, text=True, timeout=120)
    assert r.stdout.strip().endswith("False"), r.stdout + r.stderr


def test_test_csv_columns_are_matched_by_name_against_the_training_file(capsys, iris, tmp_path):
    lines = (tmp_path / "iris.csv").read_text().splitlines()
    order = [4, 2, 0, 3, 1]
    text = "\n".join(",".join(line.split(",")[i] for i in order) for line in lines[:31]) + "\n"
    (tmp_path / "test.csv").write_text(text)
    iris.write_text(IRIS.replace("validation 0.2", 'test "test.csv"'))
    code, out, err = check(capsys, iris)
    assert code == 0 and err.startswith("warning: ") and "matched by header name" in err
    (tmp_path / "test.csv").write_text(text.replace("sepal_width", "sw", 1))
    code, out, err = check(capsys, iris)
    assert code == 2
    assert "iris.net:6:5: error: " in err and "test.csv: no column 'sepal_width' and unknown column 'sw'" in err
